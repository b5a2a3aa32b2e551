"""The two figures of an evaluation, drawn with :mod:`resadapt_hf.plots` and written atomically.

* ``frontier.png``: mean task score vs mean achieved retention, one line per allocator (learned first in the
  legend), vanilla as a point at R = 1 and a dashed reference line.
* ``scale_heatmap.png``: per-frame scales, one row per sample (the first 24), for the most adaptive allocator
  evaluated (learned, else prior, else random, else fixed) at the tightest budget, where where-the-pixels-go
  matters most; frames holding the answer (synthetic task: the needle frames) are outlined in red.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..plots import heatmap, line_chart
from .config import ALLOCATOR_NAMES
from .records import record_key, temporary_sibling

__all__ = ["plot_frontier", "plot_heatmap"]

# Heatmap: which allocator shows the allocation best (most adaptive first), and how many sample rows.
HEATMAP_PREFERENCE = ("learned", "prior", "random", "fixed")
HEATMAP_ROWS = 24


def _draw_atomic(path: Path, draw: Callable[[Path], object]):
    """``draw(temporary .png in the same folder)`` then ``os.replace`` onto ``path`` (PIL picks the format from the
    suffix, so the temporary name ends in ``.png``)."""
    temporary = temporary_sibling(path, suffix=".tmp.png")
    try:
        draw(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def plot_frontier(results: dict, path) -> Path:
    """Write the score-vs-achieved-retention chart of ``results`` (a ``results.json`` dict) to ``path``."""
    path = Path(path)
    series, references = {}, {}
    # the legend lists (and the chart draws on top) learned first, then the baselines, whatever the run order
    order = sorted(results["aggregate"], key=lambda e: ALLOCATOR_NAMES.index(e["allocator"]))
    for entry in order:
        series.setdefault(entry["allocator"], []).append((entry["retention"], entry["score"]))
        if entry["allocator"] == "vanilla":
            references[f"vanilla (R = {entry['retention']:.2f})"] = entry["score"]
    scores = [y for pts in series.values() for _, y in pts]
    retentions = [x for pts in series.values() for x, _ in pts]
    _draw_atomic(path, lambda target: line_chart(
        series, target, title=f"Score vs achieved retention: {results['backbone']} on {results['dataset']}",
        xlabel="achieved visual-token retention R (mean over samples)", ylabel="mean task score",
        references=references, xlim=(0.0, max(1.05, max(retentions, default=1.0) * 1.05)),
        ylim=(0.0, max(1.0, max(scores, default=1.0) * 1.05)),
    ))
    return path


def plot_heatmap(done: Mapping[tuple, dict], names: Sequence[str], budgets: Sequence[float], min_scale: float,
                 ids: Sequence[str], rows: Sequence[dict], path) -> Path:
    """Write the per-frame scale heatmap to ``path``.

    Args:
        done: ``{record key: record}`` holding every (allocator, budget, sample) of the run.
        names, budgets: the run's allocators and budgets.
        min_scale: the colour ramp's low end.
        ids, rows: the samples (rows give the answer frames, ``needle_frames``).
    """
    path = Path(path)
    name = next((n for n in HEATMAP_PREFERENCE if n in names), "vanilla")
    budget = None if name == "vanilla" else min(budgets)
    shown = list(zip(ids, rows))[:HEATMAP_ROWS]
    scales = [done[record_key(name, budget, sample_id)]["scales"] for sample_id, _ in shown]
    marks = [list(row.get("needle_frames") or []) for _, row in shown]
    label = "no budget" if budget is None else f"budget {budget:g}"
    _draw_atomic(path, lambda target: heatmap(
        scales, target, row_labels=[sample_id for sample_id, _ in shown], vmin=min_scale,
        vmax=max(1.0, max((s for row in scales for s in row), default=1.0)),
        title=f"Per-frame scales: {name} @ {label} (rows = samples)",
        xlabel="frame (red outline: frames that hold the answer)" if any(marks) else "frame",
        colorbar_label="scale", highlights=marks if any(marks) else None,
    ))
    return path
