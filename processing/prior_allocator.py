"""The training-free ResAdapt allocator ("prior"): content-aware, query-agnostic scales from frame statistics.

Frames with more fine detail (text, glyphs, texture: what downscaling destroys) get larger scales; frames that
barely differ from their neighbours (redundant) get smaller ones. No weights, no download: it is the zero-setup
allocator of ``make demo`` and an evaluation baseline. Combine it with a ``budget`` to fix the spend; the prior
only decides where the pixels go.

Per frame t, with detail d_t and change c_t from ``frame_statistics.prior_detail_and_change`` (measured on a
uint8 antialiased downsample to ``work_size`` pixels on the long side, so the cost hardly depends on the source
resolution and stays a few percent of the backbone processor's own time):

    score_t = (log(d_t + eps) - mean) + novelty_weight * (log(c_t + eps) - mean),   eps = 0.01
    s_t     = clip(exp(strength * score_t) / mean_t' exp(strength * score_t'), min_scale, max_scale)

so ``s_t`` is proportional to ``d_t ** strength * c_t ** (strength * novelty_weight)`` before the clip: a
monotone function of the statistics, which is all the ranking needs. See ``docs/prior.md``.

Ships flat next to the weights on the Hub: torch/stdlib and same-folder siblings only.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .frame_statistics import prior_detail_and_change
from .resize_plan import DEFAULT_MAX_SCALE, DEFAULT_MIN_SCALE

# floor of the statistics in log space: differences below ~1% intensity are noise, not content
_EPS = 1e-2


def prior_scores(detail: torch.Tensor, change: torch.Tensor, novelty_weight: float) -> torch.Tensor:
    """Per-frame log-space score: centred log detail plus ``novelty_weight`` x centred log change.

    Centred, not standardised: frames with nearly equal statistics must get nearly equal scores (dividing by the
    spread would blow tiny differences up to full range).

    Args:
        detail, change: [T] non-negative frame statistics.
    Returns:
        [T] zero-mean scores (zeros when the frames are indistinguishable).
    """

    def centred(v: torch.Tensor) -> torch.Tensor:
        v = torch.log(v.double() + _EPS)
        return v - v.mean()

    return centred(detail) + novelty_weight * centred(change)


def scores_to_scales(scores: torch.Tensor, strength: float, min_scale: float, max_scale: float) -> list[float]:
    """Map zero-mean scores to scales ``exp(strength * score)``, renormalised to a mean scale of 1 and clipped."""
    raw = torch.exp(strength * scores)
    raw = raw / raw.mean()
    return [float(min(max(v, min_scale), max_scale)) for v in raw.tolist()]


class PriorAllocator:
    """Training-free allocator with the processor's ``predict_scales`` interface.

    Args:
        strength: how strongly scales follow the statistics (0 = uniform scale 1).
        novelty_weight: weight of temporal change relative to detail.
        min_scale, max_scale: clip range of the returned scales.
        grid: patches per side for the detail statistic (detail = mean of the busiest quarter of patches).
        work_size: long side, in pixels, the statistics are measured at (frames are downsampled to it first).
    """

    def __init__(
        self,
        strength: float = 0.5,
        novelty_weight: float = 0.5,
        min_scale: float = DEFAULT_MIN_SCALE,
        max_scale: float = DEFAULT_MAX_SCALE,
        grid: int = 8,
        work_size: int = 256,
    ):
        for name, value in (("strength", strength), ("novelty_weight", novelty_weight)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not 0 < min_scale <= 1 <= max_scale:
            raise ValueError(f"min_scale/max_scale must satisfy 0 < min_scale <= 1 <= max_scale, got [{min_scale}, {max_scale}]")
        self.strength, self.novelty_weight = float(strength), float(novelty_weight)
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        for name, value in (("grid", grid), ("work_size", work_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.grid, self.work_size = grid, work_size

    def to_dict(self) -> dict:
        """Settings, as stored in ``processor_config.json`` (``allocator_config``)."""
        return {
            "type": "prior", "strength": self.strength, "novelty_weight": self.novelty_weight,
            "min_scale": self.min_scale, "max_scale": self.max_scale, "grid": self.grid, "work_size": self.work_size,
        }

    @torch.no_grad()
    def predict_scales(self, media: Sequence[torch.Tensor], text: str | None = None) -> list[list[float]]:
        """One list of per-frame scales per media item (``media[i]``: uint8 [T, H, W, 3]); images get 1.0."""
        out = []
        for frames in media:
            if frames.shape[0] < 2:
                out.append([1.0] * int(frames.shape[0]))
                continue
            detail, change = prior_detail_and_change(frames, grid=self.grid, work_size=self.work_size)
            scores = prior_scores(detail, change, self.novelty_weight)
            out.append(scores_to_scales(scores, self.strength, self.min_scale, self.max_scale))
        return out

    def __repr__(self) -> str:
        return f"PriorAllocator(strength={self.strength:g}, novelty_weight={self.novelty_weight:g})"
