"""The ResAdapt resize operator as pure functions: scales -> per-chunk sizes -> visual tokens -> retention.

A *unit* is what gets one resolution: a temporal chunk of ``temporal_patch_size`` frames of a video, or one
image. Every unit has a base size (what the backbone's own processor produces at scale 1, already a multiple of
``factor = patch_size * merge_size``) and the number of visual tokens a size costs is
``(height // factor) * (width // factor)`` (one LLM token per merged patch, one temporal patch per unit).

Sizes follow ``round(base * s / factor) * factor`` per side, which is monotone in ``s``, equals the base size at
``s = 1`` and lets ``s > 1`` really add pixels (no cap at the backbone's ``max_pixels``: the upper bound is
``s_max`` itself). A unit never drops below ``min(min_visual_tokens, tokens at scale 1)`` tokens: below that the
size is held at the first size on the unit's own rounded scaling path that has enough tokens (per-side rounding
can make that size squarer than the base, e.g. 168x252 -> 56x56 at 4 tokens).

This file ships flat next to the weights on the Hub: stdlib only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

DEFAULT_MIN_SCALE = 0.2
DEFAULT_MAX_SCALE = 1.8
DEFAULT_MIN_VISUAL_TOKENS = 4
DEFAULT_BUDGET_TOLERANCE = 0.02
MAX_ASPECT_RATIO = 200  # the Qwen smart_resize limit; larger ratios are rejected by the backbone itself

_BISECTION_STEPS = 60


@dataclass(frozen=True)
class UnitSpec:
    """One resizing unit (a video chunk or an image).

    Args:
        base_height, base_width: size at scale 1, multiples of ``factor``.
        factor: ``patch_size * merge_size`` of the backbone sub-processor that encodes this unit.
        min_visual_tokens: lower bound on the unit's tokens (capped at its scale-1 token count).
    """

    base_height: int
    base_width: int
    factor: int
    min_visual_tokens: int = DEFAULT_MIN_VISUAL_TOKENS

    def __post_init__(self):
        if self.factor <= 0:
            raise ValueError(f"factor must be a positive integer, got {self.factor}")
        if self.base_height % self.factor or self.base_width % self.factor or min(self.base_height, self.base_width) <= 0:
            raise ValueError(
                f"base size ({self.base_height}, {self.base_width}) must be positive multiples of factor {self.factor}"
            )
        if self.min_visual_tokens < 1:
            raise ValueError(f"min_visual_tokens must be >= 1, got {self.min_visual_tokens}")

    @property
    def base_tokens(self) -> int:
        return visual_tokens(self.base_height, self.base_width, self.factor)


def visual_tokens(height: int, width: int, factor: int) -> int:
    """LLM visual tokens of one temporal patch (or image) of ``height x width`` pixels."""
    return (height // factor) * (width // factor)


def _grid_size(base_height: int, base_width: int, scale: float, factor: int) -> tuple[int, int]:
    # round() per side keeps s = 1 exact (base is on the grid) and is monotone in s.
    height = max(1, round(base_height * scale / factor)) * factor
    width = max(1, round(base_width * scale / factor)) * factor
    return height, width


@lru_cache(maxsize=4096)
def floor_scale(unit: UnitSpec) -> float:
    """Smallest scale whose grid size has at least ``min(min_visual_tokens, base_tokens)`` tokens (<= 1)."""
    needed = min(unit.min_visual_tokens, unit.base_tokens)
    lo, hi = 0.0, 1.0
    if visual_tokens(*_grid_size(unit.base_height, unit.base_width, lo, unit.factor), unit.factor) >= needed:
        return 0.0
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        if visual_tokens(*_grid_size(unit.base_height, unit.base_width, mid, unit.factor), unit.factor) >= needed:
            hi = mid
        else:
            lo = mid
    return hi


def unit_size(unit: UnitSpec, scale: float) -> tuple[int, int]:
    """(height, width) in pixels of ``unit`` at ``scale``; monotone non-decreasing in ``scale``."""
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite positive number, got {scale}")
    return _grid_size(unit.base_height, unit.base_width, max(scale, floor_scale(unit)), unit.factor)


def unit_tokens(unit: UnitSpec, scale: float) -> int:
    return visual_tokens(*unit_size(unit, scale), unit.factor)


def constant_size_interval(unit: UnitSpec, scale: float, max_scale: float) -> tuple[float, float]:
    """The interval ``[lo, hi]`` (within ``(0, max_scale]``) of scales that give the same size as ``scale``."""
    size = unit_size(unit, scale)
    lo, probe = 0.0, scale
    for _ in range(_BISECTION_STEPS):
        mid = (lo + probe) / 2
        if mid > 0 and unit_size(unit, mid) == size:
            probe = mid
        else:
            lo = mid
    lower = probe
    probe, hi = scale, max(max_scale, scale)
    if unit_size(unit, hi) == size:
        return lower, hi
    for _ in range(_BISECTION_STEPS):
        mid = (probe + hi) / 2
        if unit_size(unit, mid) == size:
            probe = mid
        else:
            hi = mid
    return lower, probe


def check_scale_range(min_scale: float, max_scale: float) -> tuple[float, float]:
    """The allowed per-frame scale range: ``0 < min_scale <= 1 <= max_scale < inf`` (scale 1 is always allowed)."""
    low, high = _real("min_scale", min_scale), _real("max_scale", max_scale)
    if not (0 < low <= 1 <= high) or not math.isfinite(high):
        raise ValueError(
            f"min_scale/max_scale must satisfy 0 < min_scale <= 1 <= max_scale < inf, got [{min_scale}, {max_scale}]"
        )
    return low, high


def check_budget(budget, max_visual_tokens, *, max_scale: float) -> tuple[float | None, int | None]:
    """The one check of a retention ``budget`` (None or a real in ``(0, max_scale**2]``) and a token cap
    (None or an int >= 1); returns them normalised."""
    if budget is not None:
        limit = max_scale**2
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget):
            raise ValueError(f"budget must be a number in (0, {limit:g}] (max_scale**2), got {budget!r}")
        if not 0 < budget <= limit + 1e-9:
            raise ValueError(
                f"budget is a target retention ratio and must be in (0, {limit:g}] (max_scale**2), got {budget}"
            )
        budget = float(budget)
    if max_visual_tokens is not None and (
        isinstance(max_visual_tokens, bool) or not isinstance(max_visual_tokens, int) or max_visual_tokens < 1
    ):
        raise ValueError(f"max_visual_tokens must be a positive integer (>= 1), got {max_visual_tokens!r}")
    return budget, max_visual_tokens


def _real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def validate_scales(scales: Sequence[float], *, expected: int, min_scale: float, max_scale: float) -> list[float]:
    """Check a per-frame scale vector: right length, finite, inside ``[min_scale, max_scale]``."""
    try:
        values = [float(s) for s in scales]
    except (TypeError, ValueError):
        raise TypeError(f"scales: expected {expected} real numbers (one per frame/image), got {scales!r}") from None
    if len(values) != expected:
        raise ValueError(f"scales: expected {expected} values (one per frame/image), got {len(values)}")
    for s in values:
        if not math.isfinite(s) or s < min_scale - 1e-6 or s > max_scale + 1e-6:
            raise ValueError(f"scales must be finite and within [{min_scale}, {max_scale}], got {s}")
    return [min(max(s, min_scale), max_scale) for s in values]


def _as_list(value):
    """Tensors and arrays become (nested) lists; everything else is returned as is."""
    return value.tolist() if hasattr(value, "tolist") and not isinstance(value, (int, float)) else value


def normalize_scales(spec, frame_counts: Sequence[int], *, min_scale: float, max_scale: float) -> list[list[float]]:
    """One prompt's scales -> one validated per-frame list per media item (images count as one frame).

    ``spec`` is one of:

    * a real number: every frame of every media item;
    * a flat sequence (list, tuple, 1-D tensor) of ``sum(frame_counts)`` per-frame scales, media in prompt order;
    * one sequence per media item (what an allocator's ``predict_scales`` returns), each of its frame count.
    """
    spec = _as_list(spec)
    counts = [int(n) for n in frame_counts]
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return [validate_scales([spec] * n, expected=n, min_scale=min_scale, max_scale=max_scale) for n in counts]
    if not isinstance(spec, (list, tuple)):
        raise TypeError(
            "scales must be a number, a flat per-frame sequence or one sequence per media item, "
            f"got {type(spec).__name__}"
        )
    per_media = len(spec) == len(counts) and any(isinstance(_as_list(s), (list, tuple)) for s in spec)
    if per_media:
        return [
            validate_scales(_as_list(s), expected=n, min_scale=min_scale, max_scale=max_scale)
            for s, n in zip(spec, counts)
        ]
    flat = validate_scales(spec, expected=sum(counts), min_scale=min_scale, max_scale=max_scale)
    out, start = [], 0
    for n in counts:
        out.append(flat[start : start + n])
        start += n
    return out


def chunk_scales(frame_scales: Sequence[float], chunk_lengths: Sequence[int]) -> list[float]:
    """Mean scale of each chunk (``chunk_lengths`` frames each, in order)."""
    if sum(chunk_lengths) != len(frame_scales):
        raise ValueError(f"chunk lengths {list(chunk_lengths)} do not cover {len(frame_scales)} frame scales")
    out, start = [], 0
    for length in chunk_lengths:
        out.append(sum(frame_scales[start : start + length]) / length)
        start += length
    return out


@dataclass
class BudgetSolution:
    """Result of :func:`solve_budget`.

    Attributes:
        frame_scales: per-frame scales after projection (same layout as the input), in ``[min_scale, max_scale]``.
        sizes: per-unit (height, width).
        visual_tokens, baseline_visual_tokens: totals over all units.
        multiplier: the common factor applied to the input scales before clipping.
        reachable: False when the target lies outside what ``[min_scale, max_scale]`` can reach; the closest
            feasible retention is returned then.
    """

    frame_scales: list[float]
    sizes: list[tuple[int, int]]
    visual_tokens: int
    baseline_visual_tokens: int
    multiplier: float
    reachable: bool

    @property
    def retention(self) -> float:
        return self.visual_tokens / self.baseline_visual_tokens


def plan_sizes(units: Sequence[UnitSpec], unit_scales: Sequence[float]) -> list[tuple[int, int]]:
    return [unit_size(u, s) for u, s in zip(units, unit_scales, strict=True)]


def total_tokens(units: Sequence[UnitSpec], sizes: Sequence[tuple[int, int]]) -> int:
    return sum(visual_tokens(h, w, u.factor) for u, (h, w) in zip(units, sizes, strict=True))


def solve_budget(
    units: Sequence[UnitSpec],
    frame_scales: Sequence[float],
    unit_frames: Sequence[int],
    *,
    budget: float | None = None,
    max_visual_tokens: int | None = None,
    min_scale: float = DEFAULT_MIN_SCALE,
    max_scale: float = DEFAULT_MAX_SCALE,
    tolerance: float = DEFAULT_BUDGET_TOLERANCE,
) -> BudgetSolution:
    """Rescale ``frame_scales`` by one common multiplier (then clip) so retention lands on ``budget``.

    The relative shape of the allocation is kept: every frame is multiplied by the same ``m`` and clipped to
    ``[min_scale, max_scale]``. Retention is a step function of ``m``; the jump that crosses the target is found
    by bisection, and when no single ``m`` lands within ``tolerance`` units are raised one at a time to their next
    grid size (those closest to their next step first) until it does; if every single raise would overshoot, one
    unit is raised a step and another lowered a step. ``max_visual_tokens`` is a hard cap that is never exceeded.

    Args:
        units: the resizing units of one sample, in order.
        frame_scales: per-frame scales (frames of unit ``i`` are the next ``unit_frames[i]`` entries), > 0.
        unit_frames: number of frames per unit (2 for a video chunk, 1 for an image or a padded single frame).
        budget: target retention ``rho`` in ``(0, max_scale**2]``, or None.
        max_visual_tokens: hard cap on the sample's total visual tokens, or None.
        tolerance: accepted ``|rho - budget|``.
    """
    if budget is None and max_visual_tokens is None:
        raise ValueError("solve_budget needs a budget or max_visual_tokens")
    budget, max_visual_tokens = check_budget(budget, max_visual_tokens, max_scale=max_scale)
    scales = [float(s) for s in frame_scales]
    if any(not math.isfinite(s) or s <= 0 for s in scales):
        raise ValueError("frame scales must be finite and > 0 before budget projection")
    baseline = sum(u.base_tokens for u in units)

    def project(m: float) -> list[float]:
        return [min(max(m * s, min_scale), max_scale) for s in scales]

    def sizes_for(frame_values: Sequence[float]) -> list[tuple[int, int]]:
        return plan_sizes(units, chunk_scales(frame_values, unit_frames))

    def tokens_at(m: float) -> int:
        return total_tokens(units, sizes_for(project(m)))

    m_low, m_high = min_scale / max(scales), max_scale / min(scales)
    floor_tokens, ceil_tokens = tokens_at(m_low), tokens_at(m_high)
    hard_cap = int(max_visual_tokens) if max_visual_tokens is not None else None
    if hard_cap is not None and floor_tokens > hard_cap:
        raise ValueError(
            f"max_visual_tokens={hard_cap} is below the minimum reachable {floor_tokens} tokens "
            f"(every frame at min_scale={min_scale}); accepted range is >= {floor_tokens}"
        )
    target = budget * baseline if budget is not None else float(hard_cap)
    upper = target + tolerance * baseline if budget is not None else float(hard_cap)
    if hard_cap is not None:
        target, upper = min(target, hard_cap), min(upper, hard_cap)
    lower = target - tolerance * baseline if budget is not None else -math.inf

    reachable = floor_tokens <= upper and ceil_tokens >= lower
    if tokens_at(m_high) <= target:
        m = m_high
    else:
        lo, hi = m_low, m_high  # invariant: tokens(lo) <= target < tokens(hi), or lo is the floor
        for _ in range(_BISECTION_STEPS):
            mid = math.sqrt(lo * hi)
            if tokens_at(mid) <= target:
                lo = mid
            else:
                hi = mid
        m = lo
        # the step right above the jump may be closer and still allowed
        if tokens_at(lo) < lower and tokens_at(hi) <= upper:
            m = hi
    values = project(m)
    sizes = sizes_for(values)
    tokens = total_tokens(units, sizes)
    if tokens < lower:
        values, sizes, tokens = _raise_units_greedily(
            units, values, unit_frames, sizes, tokens, lower, upper, min_scale, max_scale
        )
    if tokens < lower:  # every single raise overshoots: raise one unit and lower another
        values, sizes, tokens = _swap_unit_pair(
            units, values, unit_frames, sizes, tokens, lower, upper, min_scale, max_scale
        )
    values = _away_from_size_edges(units, values, unit_frames, min_scale, max_scale)
    return BudgetSolution(
        frame_scales=values,
        sizes=sizes,
        visual_tokens=tokens,
        baseline_visual_tokens=baseline,
        multiplier=m,
        reachable=reachable and lower <= tokens <= upper,
    )


def _unit_bounds(unit_frames: Sequence[int]) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for n in unit_frames:
        bounds.append((start, start + n))
        start += n
    return bounds


def _raise_units_greedily(units, values, unit_frames, sizes, tokens, lower, upper, min_scale, max_scale):
    values, sizes = list(values), list(sizes)
    bounds = _unit_bounds(unit_frames)
    while tokens < lower:
        best = None
        for i, (unit, (a, b)) in enumerate(zip(units, bounds)):
            current = sum(values[a:b]) / (b - a)
            step = _next_size(unit, current, sizes[i], True, min_scale, max_scale)
            if step is None:
                continue
            step_scale, new_size = step
            extra = visual_tokens(*new_size, unit.factor) - visual_tokens(*sizes[i], unit.factor)
            if tokens + extra > upper:
                continue
            gap = step_scale / current  # relative push needed: smallest first keeps the allocation's shape
            if best is None or gap < best[0]:
                best = (gap, i, step_scale, new_size, extra)
        if best is None:
            break
        _, i, step_scale, new_size, extra = best
        a, b = bounds[i]
        values[a:b] = _with_mean(values[a:b], step_scale, min_scale, max_scale)
        sizes[i] = new_size
        tokens += extra
    return values, sizes, tokens


def _next_size(unit: UnitSpec, mean: float, size, up: bool, min_scale: float, max_scale: float):
    """(scale, size) one grid step above (``up``) or below ``mean``'s constant-size interval, or None."""
    lo, hi = constant_size_interval(unit, mean, max_scale)
    scale = min(hi * (1 + 1e-9) + 1e-12, max_scale) if up else lo * (1 - 1e-7)
    if not min_scale <= scale <= max_scale:
        return None
    new_size = unit_size(unit, scale)
    return None if new_size == size else (scale, new_size)


def _swap_unit_pair(units, values, unit_frames, sizes, tokens, lower, upper, min_scale, max_scale):
    """Raise one unit a grid step and lower another one step so that the total lands in ``[lower, upper]``.

    Coarse token grids (a few tokens per chunk) can leave every single raise above ``upper`` while the total is
    still below ``lower``; a raise paired with a smaller cut elsewhere then fits. Among the pairs that fit, the one
    with the smallest relative moves keeps the allocation's shape best.
    """
    bounds = _unit_bounds(unit_frames)
    means = [sum(values[a:b]) / (b - a) for a, b in bounds]
    steps = [
        (_next_size(u, m, z, True, min_scale, max_scale), _next_size(u, m, z, False, min_scale, max_scale))
        for u, m, z in zip(units, means, sizes)
    ]
    best = None
    for i, (up, _) in enumerate(steps):
        for j, (_, down) in enumerate(steps):
            if i == j or up is None or down is None:
                continue
            extra = (visual_tokens(*up[1], units[i].factor) - visual_tokens(*sizes[i], units[i].factor)
                     + visual_tokens(*down[1], units[j].factor) - visual_tokens(*sizes[j], units[j].factor))
            if not lower <= tokens + extra <= upper:
                continue
            distortion = up[0] / means[i] * means[j] / down[0]
            if best is None or distortion < best[0]:
                best = (distortion, i, j, extra)
    if best is None:
        return values, sizes, tokens
    _, i, j, extra = best
    values, sizes = list(values), list(sizes)
    for unit_index, (scale, size) in ((i, steps[i][0]), (j, steps[j][1])):
        a, b = bounds[unit_index]
        values[a:b] = _with_mean(values[a:b], scale, min_scale, max_scale)
        sizes[unit_index] = size
    return values, sizes, tokens + extra


def _away_from_size_edges(units, values, unit_frames, min_scale, max_scale, margin: float = 1e-4):
    """Nudge each unit's mean scale off the edges of its constant-size interval.

    A scale sitting exactly on a step (as bisection leaves them) would flip size after a float32 round trip;
    moving it ``margin`` (relative) inside its interval keeps the reported scales reproducible.
    """
    values = list(values)
    for unit, (a, b) in zip(units, _unit_bounds(unit_frames)):
        mean = sum(values[a:b]) / (b - a)
        lo, hi = constant_size_interval(unit, mean, max_scale)
        width = hi - lo
        pad = min(margin * max(mean, 1e-6), width / 2)
        target = min(max(mean, lo + pad), hi - pad) if hi < max_scale else max(mean, lo + pad)
        if target != mean:
            values[a:b] = _with_mean(values[a:b], target, min_scale, max_scale)
    return values


def _with_mean(values: Sequence[float], mean: float, low: float, high: float) -> list[float]:
    """Shift ``values`` additively (clipping to ``[low, high]`` and re-spreading what clipping ate) to ``mean``."""
    out = list(values)
    for _ in range(len(out) + 1):
        gap = mean - sum(out) / len(out)
        free = [i for i, v in enumerate(out) if (gap > 0 and v < high) or (gap < 0 and v > low)]
        if abs(gap) < 1e-12 or not free:
            break
        step = gap * len(out) / len(free)
        for i in free:
            out[i] = min(max(out[i] + step, low), high)
    return out
