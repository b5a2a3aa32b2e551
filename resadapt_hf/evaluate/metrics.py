"""Scoring and aggregation: a completion's task score (``resadapt_hf.rewards``), temporal-grounding tIoU, and
the ``results.json`` dict (format ``resadapt-eval/1``) built from the records."""

from __future__ import annotations

import math
import statistics
from typing import Sequence

from ..rewards import extract_answer, is_correct, task_reward
from .config import FRONTIER_FILE, HEATMAP_FILE, RESULTS_FORMAT

__all__ = ["aggregate_records", "build_results", "format_table", "grounding_iou", "grounding_metrics",
           "score_completion"]

GROUNDING_TYPES = ("temporal_grounding", "grounded_qa")
RECALL_THRESHOLDS = (0.3, 0.5, 0.7)


def grounding_iou(completion: str, record: dict) -> float | None:
    """tIoU of a completion's predicted segment(s) with the record's ground truth (max over pairs, as the reward),
    for grounding types; None for other types. ``grounded_qa``: the grounding part alone (its task score adds the
    QA part)."""
    problem_type = record["problem_type"]
    if problem_type == "temporal_grounding":
        return task_reward(completion, record["answer"], "temporal_grounding", segments=record.get("segments"))
    if problem_type == "grounded_qa":
        return task_reward(completion, record["segments"], "temporal_grounding", segments=record["segments"])
    return None


def grounding_metrics(ious: Sequence[float], thresholds: Sequence[float] = RECALL_THRESHOLDS) -> dict[str, float]:
    """``{"miou": mean tIoU, "r@0.3": fraction with tIoU >= 0.3, ...}`` over samples (Charades-STA convention)."""
    values = [float(v) for v in ious]
    if not values:
        raise ValueError("ious must hold at least one value")
    if any(not math.isfinite(v) or v < 0 or v > 1 + 1e-9 for v in values):
        raise ValueError(f"ious must be tIoU values in [0, 1], got {values}")
    out = {"miou": sum(values) / len(values)}
    for k in thresholds:
        out[f"r@{k:g}"] = sum(v >= k for v in values) / len(values)
    return out


def score_completion(record: dict, completion: str) -> dict:
    """The graded fields of a record: ``extracted_answer``, task ``score``, ``correct`` bit (``rewards``), and
    ``iou`` for grounding types."""
    problem_type = record["problem_type"]
    options = record.get("options")
    score = task_reward(completion, record["answer"], problem_type, options=options if options else None,
                        segments=record.get("segments"))
    out = {"extracted_answer": extract_answer(completion), "score": float(score),
           "correct": bool(is_correct(score, problem_type))}
    iou = grounding_iou(completion, record)
    if iou is not None:
        out["iou"] = float(iou)
    return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def aggregate_records(records: Sequence[dict], allocators: Sequence[str], budgets: Sequence[float]) -> list[dict]:
    """The ``aggregate`` list of ``results.json``: one entry per (allocator, budget) that has records (vanilla once,
    ``budget`` None), in allocator then budget order: means over samples of achieved retention (and its population
    std), visual tokens, task score and correctness, plus the same per ``problem_type`` (with mIoU and R@k for
    grounding types)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["allocator"], r["budget"]), []).append(r)
    out = []
    for name in allocators:
        for budget in ([None] if name == "vanilla" else budgets):
            rows = groups.get((name, None if budget is None else float(budget)))
            if not rows:
                continue
            retention = [r["retention"] for r in rows]
            per_task = {}
            for problem_type in sorted({r["problem_type"] for r in rows}):
                task_rows = [r for r in rows if r["problem_type"] == problem_type]
                entry = {"score": _mean([r["score"] for r in task_rows]),
                         "accuracy": _mean([float(r["correct"]) for r in task_rows]), "num_samples": len(task_rows)}
                if problem_type in GROUNDING_TYPES:
                    entry.update(grounding_metrics([r["iou"] for r in task_rows]))
                per_task[problem_type] = entry
            out.append({
                "allocator": name,
                "budget": None if budget is None else float(budget),
                "retention": _mean(retention),
                "retention_std": statistics.pstdev(retention),
                "visual_tokens": _mean([float(r["visual_tokens"]) for r in rows]),
                "score": _mean([r["score"] for r in rows]),
                "accuracy": _mean([float(r["correct"]) for r in rows]),
                "num_samples": len(rows),
                "per_task": per_task,
            })
    return out


def build_results(records: Sequence[dict], *, backbone: str, dataset: str, task: str, seed: int, num_samples: int,
                  budgets: Sequence[float], allocators: Sequence[str]) -> dict:
    """The ``results.json`` dict (format ``resadapt-eval/1``)::

        {"format", "backbone", "dataset", "task", "seed", "num_samples", "budgets", "allocators",
         "aggregate": [see aggregate_records], "frontier_png": "frontier.png", "heatmap_png": "scale_heatmap.png"}
    """
    return {
        "format": RESULTS_FORMAT,
        "backbone": backbone,
        "dataset": dataset,
        "task": task,
        "seed": int(seed),
        "num_samples": int(num_samples),
        "budgets": [float(b) for b in budgets],
        "allocators": list(allocators),
        "aggregate": aggregate_records(records, allocators, budgets),
        "frontier_png": FRONTIER_FILE,
        "heatmap_png": HEATMAP_FILE,
    }


def format_table(results: dict) -> str:
    """A plain-text summary of ``results['aggregate']``."""
    lines = [f"{'allocator':<10} {'budget':>7} {'retention':>14} {'tokens':>9} {'score':>7} {'accuracy':>8} {'n':>5}"]
    for e in results["aggregate"]:
        budget = "-" if e["budget"] is None else f"{e['budget']:.3f}"
        retention = f"{e['retention']:.3f}±{e['retention_std']:.3f}"
        lines.append(f"{e['allocator']:<10} {budget:>7} {retention:>14} {e['visual_tokens']:>9.1f} "
                     f"{e['score']:>7.3f} {e['accuracy']:>8.3f} {e['num_samples']:>5}")
    return "\n".join(lines)
