"""Accuracy of the shipped tiny reader on the held-out reader videos, per allocation, through the real path.

Each video is answered by ``BackboneRollout`` (the trainer's own prompt with ``rewards.SYSTEM_PROMPT``, frames resized
per chunk by ``ResAdaptProcessor``, the backbone prepared for per-chunk grids, greedy ``generate``) and graded by the
project's graders (``evaluate.metrics.score_completion``). Allocations: every chunk at one scale (0.2 ... 1.8), and
"needle only" (the needle frame's chunk at 1, every other chunk at 0.2). Reported per cell size too (1-px patterns need
the full resolution, 2-px ones about half).

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
from resadapt_hf.reader_task import SPLIT_SEEDS, needle_only_scales, reader_records
from resadapt_hf.rewards import SYSTEM_PROMPT, format_ok
from resadapt_hf.rollout import BackboneRollout, GenerationSettings, RolloutRequest

SCALES = (0.2, 0.35, 0.5, 0.6, 0.75, 0.9, 1.0, 1.25, 1.5, 1.8)


def answer_all(rollout, records, scale_fn, batch: int) -> dict:
    settings = GenerationSettings(max_new_tokens=48, do_sample=False, prompts_per_call=batch)
    requests = [RolloutRequest(r, r["frames"], torch.tensor([scale_fn(r)], dtype=torch.float32)) for r in records]
    results = rollout(requests, num_rollouts=1, generation=settings)
    completions = [res.completions[0][0] for res in results]
    correct = [score_completion(r, c)["correct"] for r, c in zip(records, completions)]
    by_cell = {}
    for record, ok in zip(records, correct):
        by_cell.setdefault(str(record["cell"]), []).append(ok)
    return {
        "accuracy": sum(correct) / len(correct),
        "accuracy_by_cell": {cell: sum(v) / len(v) for cell, v in sorted(by_cell.items())},
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
    rows["needle only"] = answer_all(rollout, records, needle_only_scales, args.batch)
    print(f"{'allocation':<14} {'accuracy':>8} {'1-px':>6} {'2-px':>6} {'retention':>9} {'format':>6}")
    for name, row in rows.items():
        cells = row["accuracy_by_cell"]
        print(f"{name:<14} {row['accuracy']:>8.3f} {cells.get('1', float('nan')):>6.3f} "
              f"{cells.get('2', float('nan')):>6.3f} {row['retention']:>9.3f} {row['format_ok']:>6.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "reader_accuracy", "videos": args.videos, "split_seed": SPLIT_SEEDS["test"],
               "seconds": round(time.perf_counter() - started, 1), "rows": rows}
    out.write_text(json.dumps(payload, indent=1))
    uniform = [(row["scale"], row) for row in rows.values() if "scale" in row]
    line_chart({"all videos": [(s, r["accuracy"]) for s, r in uniform],
                "1-px patterns": [(s, r["accuracy_by_cell"].get("1", float("nan"))) for s, r in uniform],
                "2-px patterns": [(s, r["accuracy_by_cell"].get("2", float("nan"))) for s, r in uniform]},
               out.with_suffix(".png"), title=f"tiny reader on {args.videos} held-out videos (uniform scale)",
               xlabel="scale of every chunk", ylabel="accuracy",
               references={"chance": 0.25, f"needle chunk 1, rest 0.2: {rows['needle only']['accuracy']:.2f}":
                           rows["needle only"]["accuracy"]}, ylim=(0, 1.02))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
