"""What an allocation is: per-frame scales, the per-chunk sizes they became, and what that costs in tokens.

Ships flat next to the weights on the Hub: stdlib only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence


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
