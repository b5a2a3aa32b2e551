"""Does the reader use the per-chunk temporal positions that ``prepare_backbone`` gives it? The measured argument.

    python benchmarks/reader_positions.py            # about 25 min on 2 cores (600 steps)

A copy of the shipped tiny reader is fine-tuned (deterministically, from ``--seed``) on a mix of the reader task's
two questions about the same videos: "which way do the stripes run?" and "in which quarter of the video do they
appear?" (``reader_task``, ``question="when"``), through ``ResAdaptProcessor`` with mixed per-chunk scales and the
prepared backbone, exactly like the reader's own training, but as clips at 2 frames per second (``FRAME_RATE``)
so that their chunks have distinct temporal ids. Nothing is saved; the shipped reader is not changed.

It is then evaluated (teacher-forced answer letter, ``--videos`` held-out test videos) with the positions the
prepared backbone computes, and with the same inputs but deliberately wrong temporal positions:

* ``correct``: every chunk's native temporal id (what ``prepare_backbone`` installs; at a uniform scale it is
  bit for bit transformers' own ``get_rope_index``);
* ``equal``: every chunk of a video at the first chunk's temporal id (the time axis of M-RoPE erased, as when the
  chunks are fed as separate images that all start at time 0);
* ``reversed``: chunk ``k`` of ``n`` gets chunk ``n - 1 - k``'s temporal id. A reader that takes time from the
  positions then names the mirrored quarter, which is counted too (``follows_positions``).

An unprepared model cannot be measured on mixed per-chunk sizes at all: transformers' ``get_rope_index`` raises
on them. The token order (and so the sequence index) is the same in every condition: only the positions change.
Prints a table and writes ``benchmarks/results/reader_positions/results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from resadapt_hf.loading import load_backbone
from resadapt_hf.processing.processing_resadapt import ResAdaptProcessor
from resadapt_hf.processing.video_convert import to_video_clip
from resadapt_hf.reader_task import LETTERS, SPLIT_SEEDS, reader_records, reader_sample
from resadapt_hf.reader_training import ReaderBatches, draw_scales, predicted_letters
from resadapt_hf.rewards import SYSTEM_PROMPT
from resadapt_hf.rollout import BackboneRollout

# training-split indices of this fine-tuning, apart from those the reader was trained on
FINETUNE_OFFSET = 20_000_000
MODES = ("correct", "equal", "reversed")
# The reader's videos are raw frames: with no frame rate, Qwen2.5-VL's processor assumes 24 fps, at which 8 frames
# (4 chunks) all get temporal id 0. Here they are clips at 2 fps (the rate Qwen's own video sampling uses by
# default), so consecutive chunks are 2 temporal ids apart.
FRAME_RATE = 2.0


def with_frame_rate(records: list[dict]) -> list[dict]:
    return [{**r, "clip": to_video_clip(r["frames"], video_fps=FRAME_RATE)} for r in records]


@contextlib.contextmanager
def temporal_positions(model, mode: str):
    """Within the block, the prepared backbone's positions with the temporal ids of video tokens rewritten per
    ``mode`` (see the module docstring). Height, width and text positions are untouched."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    inner = model.model
    prepared = inner.get_rope_index

    def rewritten(input_ids, *args, **kwargs):
        position_ids, deltas = prepared(input_ids, *args, **kwargs)
        if mode == "correct":
            return position_ids, deltas
        token_types = kwargs["mm_token_type_ids"]
        position_ids = position_ids.clone()
        for row in range(input_ids.shape[0]):
            video = token_types[row] == 2
            temporal = position_ids[0, row, video]
            levels = torch.unique(temporal)  # sorted: one temporal id per chunk
            if mode == "equal":
                position_ids[0, row, video] = levels[0]
            else:
                position_ids[0, row, video] = levels.flip(0)[torch.searchsorted(levels, temporal)]
        return position_ids, deltas

    inner.get_rope_index = rewritten
    try:
        yield
    finally:
        inner.get_rope_index = prepared


def mirrored(letter: str) -> str:
    return LETTERS[len(LETTERS) - 1 - LETTERS.index(letter)]


def finetune(model, batches: ReaderBatches, args) -> list[dict]:
    rng = np.random.default_rng(args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.0)
    validation = with_frame_rate(reader_records(64, seed=SPLIT_SEEDS["validation"], question="when"))
    curve, started = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        factor = min(1.0, step / 20) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in optimizer.param_groups:
            group["lr"] = args.learning_rate * factor
        first = FINETUNE_OFFSET + (step - 1) * args.batch_size
        kinds = ["when" if rng.random() < args.when_share else "which_way" for _ in range(args.batch_size)]
        records = with_frame_rate([reader_sample(first + i, SPLIT_SEEDS["train"], question=kind)
                                   for i, kind in enumerate(kinds)])
        if step <= args.scale1_steps:
            scales = [[1.0] * r["frames"].shape[0] for r in records]
        else:
            scales = [draw_scales(rng, r["needle_frames"][0], r["frames"].shape[0]) for r in records]
        loss, predicted, truth = batches.train_step(model, optimizer, records, scales)
        row = {"step": step, "loss": round(loss.item(), 4), "seconds": round(time.perf_counter() - started, 1)}
        if step % args.eval_every == 0 or step == args.steps:
            letters, _ = predicted_letters(model, batches, validation, [[1.0] * 8] * len(validation), batch_size=25)
            row["val_when_accuracy"] = sum(a == r["answer"] for a, r in zip(letters, validation)) / len(validation)
            print(json.dumps(row), flush=True)
        curve.append(row)
    return curve


def evaluate(model, batches: ReaderBatches, args) -> dict:
    rng = np.random.default_rng(args.seed + 1)
    rows = {}
    for question in ("when", "which_way"):
        records = with_frame_rate(reader_records(args.videos, seed=SPLIT_SEEDS["test"], question=question))
        allocations = {
            "scale 1": [[1.0] * 8 for _ in records],
            "mixed per-chunk scales": [draw_scales(rng, r["needle_frames"][0], 8) for r in records],
        }
        for allocation, scales in allocations.items():
            for mode in MODES:
                with temporal_positions(model, mode):
                    letters, _ = predicted_letters(model, batches, records, scales, batch_size=25)
                row = {"question": question, "allocation": allocation, "positions": mode,
                       "accuracy": sum(a == r["answer"] for a, r in zip(letters, records)) / len(records)}
                if question == "when" and mode == "reversed":
                    mirror = sum(a == mirrored(r["answer"]) for a, r in zip(letters, records))
                    row["follows_positions"] = mirror / len(records)
                rows[f"{question} | {allocation} | {mode}"] = row
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=600, help="fine-tuning steps")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--scale1_steps", type=int, default=0, help="first steps at scale 1 only (curriculum)")
    parser.add_argument("--when_share", type=float, default=0.5, help="share of 'when' questions while fine-tuning")
    parser.add_argument("--eval_every", type=int, default=50)
    parser.add_argument("--videos", type=int, default=200, help="held-out test videos per condition")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/reader_positions/results.json")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.videos < 1 or not 0 <= args.when_share <= 1:
        parser.error("--steps and --videos must be >= 1 and --when_share in [0, 1]")
    warnings.filterwarnings("ignore", message=".*fps.*")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, backbone_processor = load_backbone("tiny-reader", device="cpu")
    processor = ResAdaptProcessor.from_backbone(backbone_processor)
    rollout = BackboneRollout(model, processor, system_prompt=SYSTEM_PROMPT)  # prepares the backbone
    model.train().requires_grad_(True)
    batches = ReaderBatches(rollout, processor)
    started = time.perf_counter()
    curve = finetune(model, batches, args)
    rows = evaluate(model, batches, args)
    print(f"{'question':<10} {'allocation':<24} {'positions':<9} {'accuracy':>8} {'follows positions':>18}")
    for row in rows.values():
        follows = f"{row['follows_positions']:.3f}" if "follows_positions" in row else ""
        print(f"{row['question']:<10} {row['allocation']:<24} {row['positions']:<9} {row['accuracy']:>8.3f} "
              f"{follows:>18}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "reader_positions", "arguments": vars(args), "split_seed": SPLIT_SEEDS["test"],
               "seconds": round(time.perf_counter() - started, 1), "curve": curve, "rows": rows}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
