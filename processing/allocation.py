"""What an allocation is (per-frame scales, the per-chunk sizes they became, what that costs in tokens) and the
one pure function that makes one: :func:`plan_allocation` (scales -> chunk sizes -> budget projection).

Ships flat next to the weights on the Hub: stdlib and same-folder siblings only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

from .resize_plan import (
    DEFAULT_BUDGET_TOLERANCE,
    DEFAULT_MAX_SCALE,
    DEFAULT_MIN_SCALE,
    DEFAULT_MIN_VISUAL_TOKENS,
    UnitSpec,
    check_budget,
    check_scale_range,
    chunk_scales,
    normalize_scales,
    plan_sizes,
    solve_budget,
    total_tokens,
)


@dataclass
class MediaAllocation:
    """The allocation of one video or image of a prompt.

    Attributes:
        kind: ``"video"`` or ``"image"``.
        scales: per-frame scales (videos: one per sampled frame; images: one value).
        chunk_sizes: (height, width) in pixels per temporal chunk (videos) or ``[size]`` (images).
        base_size: (height, width) the backbone's own processor gives at scale 1.
        visual_tokens: LLM visual tokens after resizing; ``baseline_visual_tokens`` the same at scale 1.
        frame_indices: index of each sampled frame in the source video (images: ``[0]``).
        timestamps: seconds of each sampled frame (images: ``[0.0]``).
    """

    kind: str
    scales: list[float]
    chunk_sizes: list[tuple[int, int]]
    base_size: tuple[int, int]
    visual_tokens: int
    baseline_visual_tokens: int
    frame_indices: list[int]
    timestamps: list[float]

    @property
    def retention(self) -> float:
        return self.visual_tokens / self.baseline_visual_tokens


@dataclass
class Allocation:
    """The allocation of one prompt (sample): its media in prompt order, plus budget bookkeeping.

    The flat views (``scales``, ``chunk_sizes``, ``frame_indices``, ``timestamps``) concatenate the media in
    prompt order; for the common one-video prompt they are simply that video's lists.

    Attributes:
        media: one :class:`MediaAllocation` per image/video placeholder, in prompt order.
        requested_budget: target retention asked for (None if none).
        max_visual_tokens: hard cap asked for (None if none).
        budget_reached: whether the achieved retention is within tolerance of ``requested_budget`` and under the
            cap (None when no budget or cap was requested). False means the closest reachable value was used.
    """

    media: list[MediaAllocation]
    requested_budget: float | None = None
    max_visual_tokens: int | None = None
    budget_reached: bool | None = None
    extra: dict = field(default_factory=dict)

    @property
    def scales(self) -> list[float]:
        return [s for m in self.media for s in m.scales]

    @property
    def chunk_sizes(self) -> list[tuple[int, int]]:
        return [c for m in self.media for c in m.chunk_sizes]

    @property
    def frame_indices(self) -> list[int]:
        return [i for m in self.media for i in m.frame_indices]

    @property
    def timestamps(self) -> list[float]:
        return [t for m in self.media for t in m.timestamps]

    @property
    def visual_tokens(self) -> int:
        return sum(m.visual_tokens for m in self.media)

    @property
    def baseline_visual_tokens(self) -> int:
        return sum(m.baseline_visual_tokens for m in self.media)

    @property
    def retention(self) -> float:
        baseline = self.baseline_visual_tokens
        return self.visual_tokens / baseline if baseline else 1.0

    def to_dict(self) -> dict:
        """JSON-ready dict, including the derived totals."""
        out = asdict(self)
        out.update(
            visual_tokens=self.visual_tokens,
            baseline_visual_tokens=self.baseline_visual_tokens,
            retention=self.retention,
        )
        return out


class FixedScale:
    """The FixedScale baseline: the same scale for every frame and image (``FixedScale(0.5)``)."""

    def __init__(self, scale: float):
        self.scale = float(scale)

    def predict_scales(self, media: Sequence, text: str | None = None) -> list[list[float]]:
        """One list of per-frame scales per media item (``media[i]`` is a uint8 tensor [T, H, W, 3])."""
        return [[self.scale] * int(m.shape[0]) for m in media]

    def __repr__(self) -> str:
        return f"FixedScale({self.scale:g})"


# ----------------------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class PlanSettings:
    """The scale range and budget tolerance an allocation is planned with (a processor's settings).

    Attributes:
        min_scale, max_scale: allowed per-frame scales, ``0 < min_scale <= 1 <= max_scale < inf``.
        min_visual_tokens: lower bound of tokens per chunk/image (capped at its scale-1 count), >= 1.
        budget_tolerance: accepted ``|retention - budget|``, in (0, 1).
    """

    min_scale: float = DEFAULT_MIN_SCALE
    max_scale: float = DEFAULT_MAX_SCALE
    min_visual_tokens: int = DEFAULT_MIN_VISUAL_TOKENS
    budget_tolerance: float = DEFAULT_BUDGET_TOLERANCE

    def __post_init__(self):
        check_scale_range(self.min_scale, self.max_scale)
        if isinstance(self.min_visual_tokens, bool) or not isinstance(self.min_visual_tokens, int) or self.min_visual_tokens < 1:
            raise ValueError(f"min_visual_tokens must be an int >= 1, got {self.min_visual_tokens!r}")
        if not 0 < self.budget_tolerance < 1:
            raise ValueError(f"budget_tolerance must be in (0, 1), got {self.budget_tolerance}")


@dataclass(frozen=True)
class MediaSpec:
    """What planning needs to know about one video or image of a prompt.

    Attributes:
        kind: ``"video"`` or ``"image"``.
        num_frames: sampled frames (an image is one frame).
        base_size: (height, width) at scale 1, a multiple of ``factor`` (what the backbone's processor gives).
        factor: ``patch_size * merge_size`` of the sub-processor that encodes it.
        frames_per_chunk: frames that share one size: the video's ``temporal_patch_size`` (images: 1).
        frame_indices, timestamps: reported in the allocation (default ``0..T-1`` and ``[]``).
    """

    kind: str
    num_frames: int
    base_size: tuple[int, int]
    factor: int
    frames_per_chunk: int = 1
    frame_indices: tuple[int, ...] | None = None
    timestamps: tuple[float, ...] = ()

    def __post_init__(self):
        if self.kind not in ("video", "image"):
            raise ValueError(f"kind must be 'video' or 'image', got {self.kind!r}")
        if self.num_frames < 1 or (self.kind == "image" and self.num_frames != 1):
            raise ValueError(f"num_frames must be >= 1 (1 for an image), got {self.num_frames}")
        if self.frames_per_chunk < 1:
            raise ValueError(f"frames_per_chunk must be >= 1, got {self.frames_per_chunk}")

    @property
    def num_chunks(self) -> int:
        """Chunks after padding the last one by repeating the last frame (as the backbone pads)."""
        return -(-self.num_frames // self.frames_per_chunk)


def plan_allocation(
    media: Sequence[MediaSpec],
    scales=1.0,
    *,
    budget: float | None = None,
    max_visual_tokens: int | None = None,
    settings: PlanSettings = PlanSettings(),
) -> "Allocation":
    """Plan one prompt: per-frame scales -> per-chunk sizes -> (optional) budget projection -> :class:`Allocation`.

    Pure (no pixels, no backbone): the processor, the evaluation and the synthetic task all plan with it.
    A chunk's size is its mean scale times the base size on the ``factor`` grid (:func:`resize_plan.unit_size`);
    a padded last chunk repeats the last frame's scale. With ``budget`` (a retention in ``(0, max_scale**2]``) and/or
    ``max_visual_tokens``, the scales are rescaled by one common factor (:func:`resize_plan.solve_budget`).

    Args:
        media: the prompt's videos and images in prompt order.
        scales: a number (or ``FixedScale``) for every frame, a flat per-frame sequence over the media in order,
            or one sequence per media item (images count as one frame).
        budget, max_visual_tokens: the budget and hard cap, or None.
        settings: scale range, token floor and tolerance.

    Returns:
        An :class:`Allocation` with one :class:`MediaAllocation` per media item.
    """
    budget, max_visual_tokens = check_budget(budget, max_visual_tokens, max_scale=settings.max_scale)
    if not media:
        return Allocation(media=[], requested_budget=budget, max_visual_tokens=max_visual_tokens)
    if isinstance(scales, FixedScale):
        scales = scales.scale
    per_media = normalize_scales(
        scales, [m.num_frames for m in media], min_scale=settings.min_scale, max_scale=settings.max_scale
    )
    units, unit_frames, frame_scales = [], [], []
    for item, item_scales in zip(media, per_media):
        unit = UnitSpec(item.base_size[0], item.base_size[1], item.factor, settings.min_visual_tokens)
        units += [unit] * item.num_chunks
        unit_frames += [item.frames_per_chunk] * item.num_chunks
        padding = item.num_chunks * item.frames_per_chunk - item.num_frames
        frame_scales += item_scales + [item_scales[-1]] * padding  # padded frames repeat the last frame
    reached = None
    if budget is not None or max_visual_tokens is not None:
        solution = solve_budget(
            units, frame_scales, unit_frames, budget=budget, max_visual_tokens=max_visual_tokens,
            min_scale=settings.min_scale, max_scale=settings.max_scale, tolerance=settings.budget_tolerance,
        )
        frame_scales, sizes, reached = solution.frame_scales, solution.sizes, solution.reachable
    else:
        sizes = plan_sizes(units, chunk_scales(frame_scales, unit_frames))
    out, unit_start, frame_start = [], 0, 0
    for item in media:
        item_units = units[unit_start : unit_start + item.num_chunks]
        item_sizes = [tuple(size) for size in sizes[unit_start : unit_start + item.num_chunks]]
        out.append(
            MediaAllocation(
                kind=item.kind,
                scales=[float(s) for s in frame_scales[frame_start : frame_start + item.num_frames]],
                chunk_sizes=item_sizes,
                base_size=tuple(item.base_size),
                visual_tokens=total_tokens(item_units, item_sizes),
                baseline_visual_tokens=sum(u.base_tokens for u in item_units),
                frame_indices=list(item.frame_indices) if item.frame_indices is not None else list(range(item.num_frames)),
                timestamps=list(item.timestamps),
            )
        )
        unit_start += item.num_chunks
        frame_start += item.num_chunks * item.frames_per_chunk
    return Allocation(media=out, requested_budget=budget, max_visual_tokens=max_visual_tokens, budget_reached=reached)
