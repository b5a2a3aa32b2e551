"""Accuracy of the shipped tiny reader on the held-out reader videos, per allocation, through the real path.

Each video is answered by ``BackboneRollout`` (the trainer's own prompt with ``rewards.SYSTEM_PROMPT``, frames resized
per chunk by ``ResAdaptProcessor``, the backbone prepared for per-chunk grids, greedy ``generate``) and graded by the
project's graders (``evaluate.metrics.score_completion``). Allocations: every chunk at one scale (0.2 ... 1.8), and
"needle chunk at s" (the needle frame's chunk at ``s``, every other chunk at the 0.2 floor: what an Allocator that
found the needle chooses between). Reported per third of the stripes' frequency range too (the finest stripes need
the most resolution).

    python benchmarks/reader_accuracy.py [--videos 200]

Writes ``benchmarks/results/tiny_reader/accuracy.json`` and ``accuracy.png``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

from resadapt_hf.evaluate.metrics import score_completion
from resadapt_hf.loading import load_backbone
from resadapt_hf.plots import line_chart
from resadapt_hf.processing.processing_resadapt import ResAdaptProcessor
from resadapt_hf.reader_task import SPLIT_SEEDS, ReaderTaskConfig, needle_only_scales, reader_records
from resadapt_hf.rewards import SYSTEM_PROMPT, format_ok
from resadapt_hf.rollout import BackboneRollout, GenerationSettings, RolloutRequest

SCALES = (0.2, 0.35, 0.5, 0.6, 0.75, 0.9, 1.0, 1.25, 1.5, 1.8)
NEEDLE_SCALES = (0.5, 0.75, 0.9, 1.0, 1.25, 1.5)
BANDS = ("coarse", "middle", "fine")  # thirds of the task's frequency range


def band(frequency: float) -> str:
    low, high = ReaderTaskConfig().frequencies
    return BANDS[min(2, int(3 * (frequency - low) / (high - low)))]


def answer_all(rollout, records, scale_fn, batch: int) -> dict:
    settings = GenerationSettings(max_new_tokens=48, do_sample=False, prompts_per_call=batch)
    requests = [RolloutRequest(r, r["frames"], torch.tensor([scale_fn(r)], dtype=torch.float32)) for r in records]
    results = rollout(requests, num_rollouts=1, generation=settings)
    completions = [res.completions[0][0] for res in results]
    correct = [score_completion(r, c)["correct"] for r, c in zip(records, completions)]
    by_band = {name: [] for name in BANDS}
    for record, ok in zip(records, correct):
        by_band[band(record["frequency"])].append(ok)
    return {
        "accuracy": sum(correct) / len(correct),
        "accuracy_by_band": {name: sum(v) / len(v) for name, v in by_band.items() if v},
        "retention": sum(float(res.retention[0]) for res in results) / len(results),
        "format_ok": sum(format_ok(c) for c in completions) / len(completions),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--batch", type=int, default=25, help="prompts per generate call")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/tiny_reader/accuracy.json")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*fps.*")
    torch.set_num_threads(args.threads)
    model, backbone_processor = load_backbone("tiny-reader", device="cpu")
    rollout = BackboneRollout(model, ResAdaptProcessor.from_backbone(backbone_processor), system_prompt=SYSTEM_PROMPT)
    records = reader_records(args.videos, seed=SPLIT_SEEDS["test"])
    started = time.perf_counter()
    rows = {}
    for scale in SCALES:
        rows[f"uniform {scale:g}"] = {"scale": scale, **answer_all(rollout, records, lambda r, s=scale: [s] * 8,
                                                                    args.batch)}
    for scale in NEEDLE_SCALES:
        rows[f"needle chunk {scale:g}"] = {
            "needle_scale": scale,
            **answer_all(rollout, records, lambda r, s=scale: needle_only_scales(r, high=s), args.batch)}
    bands = " ".join(f"{b:>7}" for b in BANDS)
    print(f"{'allocation':<18} {'accuracy':>8} {bands} {'retention':>9} {'format':>6}")
    for name, row in rows.items():
        bands = " ".join(f"{row['accuracy_by_band'].get(b, float('nan')):>7.3f}" for b in BANDS)
        print(f"{name:<18} {row['accuracy']:>8.3f} {bands} {row['retention']:>9.3f} {row['format_ok']:>6.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "reader_accuracy", "videos": args.videos, "split_seed": SPLIT_SEEDS["test"],
               "seconds": round(time.perf_counter() - started, 1), "rows": rows}
    out.write_text(json.dumps(payload, indent=1))
    uniform = [(row["scale"], row) for row in rows.values() if "scale" in row]
    needle = [(row["needle_scale"], row["accuracy"]) for row in rows.values() if "needle_scale" in row]
    curves = {"every chunk at the scale": [(s, r["accuracy"]) for s, r in uniform],
              "needle chunk at the scale, the rest at 0.2": needle}
    curves.update({f"every chunk, {b} stripes": [(s, r["accuracy_by_band"].get(b, float("nan"))) for s, r in uniform]
                   for b in BANDS})
    line_chart(curves, out.with_suffix(".png"), title=f"tiny reader on {args.videos} held-out videos",
               xlabel="scale", ylabel="accuracy", references={"chance": 0.25}, ylim=(0, 1.02))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
