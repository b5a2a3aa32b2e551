"""A synthetic "needle" video task with a resolution-sensitive reader: a real environment for ResAdapt's RL on CPU.

This is **not a mock of an MLLM**. It is a small, fully specified task whose difficulty really depends on the
pixels the Allocator grants each frame:

* :func:`make_needle_sample` renders a short video (default 8 frames) of a smooth-noise texture shared by all
  frames plus per-frame pixel noise; one frame (the *needle*, optionally two identical adjacent ones) carries a
  small digit glyph (about 12 x 9 px at scale 1), the others (distractors) do not. The question asks which digit
  appears, with 4 options.
* :class:`NeedleReader` plays the frozen backbone. It never sees the sample's ground truth: it receives the
  frames **actually resized** by the ResAdapt operator (:func:`resize_frames`: per-chunk mean scale, grid-step
  sizes from :func:`resadapt_hf.processing.resize_plan.unit_size`, bilinear antialiased resize by the processor's own
  ``processing_resadapt.resize_operator``) and answers from them by normalised cross-correlation with digit templates
  shrunk by the same factor. It is right at high resolution and degrades when the needle frame is downscaled,
  so accuracy vs. visual tokens is a real trade-off and adaptive allocation (needle high, distractors low) pays.

Design choices (each one measured on this task):

* **Source resolution.** Frames are rendered at ``source_factor`` (default 2) times the scale-1 size
  ``height x width`` (default 64 x 64, so samples are 128 x 128), like a real video larger than the backbone's
  pixel budget: a scale above 1 (up to ``max_scale`` = 1.8) really adds pixels instead of only upsampling.
* **Grid.** ``factor`` = 8 px plays ``patch_size * merge_size``: a 64 x 64 frame at scale 1 is an 8 x 8 grid of
  64 visual tokens and sizes move in 8 px steps (16 px = 4 tokens is the floor, ``min_visual_tokens`` = 4).
  ``temporal_patch_size`` = 2 frames share one size, as in Qwen-VL.
* **Calibration.** Raw template scores let low-resolution distractors produce false matches. The reader
  z-normalises each digit's score per received size against distractor frames of calibration videos drawn from a
  separate random stream (:meth:`NeedleReader.calibrate`), for every grid size a chunk can get with scales in
  ``[min_scale, max_scale]`` (for the default 64 x 64 frames: the 13 sizes 16, 24, ..., 112 px of the scale levels
  0.2, 0.3, ..., 1.8).
* **Speed.** :meth:`NeedleReader.precompute` scores every frame at every distinct grid size once
  (:class:`ScoreTable`); after that the reader's answer for any per-frame scale vector is an exact table lookup
  (chunk scale -> the size the operator would produce -> stored calibrated scores), vectorised over a batch of
  scale vectors (about 0.3 ms for 8 rollouts of one prompt on a CPU core, vs. about 8 ms for resizing and
  reading), so an RL step takes milliseconds. Because the stored sizes are the operator's own sizes, the lookup
  gives the same answer as :meth:`NeedleReader.answer` on :func:`resize_frames` output (barring exact float ties).

Records from :func:`make_needle_dataset` / :meth:`NeedleSample.to_record` follow the dataset schema
``{"frames", "question", "options", "answer", "problem_type", "needle_frames"}``. The frame statistics that the
training-free prior and the Allocator's ``statistics`` encoder use (``frame_detail_and_change``) see the needle:
its detail is the highest of the video for nearly every sample (tested), which the notes found necessary for RL
to separate needle from distractors.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .processing.allocation import Allocation, MediaSpec, PlanSettings, plan_allocation
from .processing.processing_resadapt import resize_operator
from .processing.resize_plan import DEFAULT_BUDGET_TOLERANCE, UnitSpec, floor_scale, unit_size
from .rollout import GenerationSettings, RolloutRequest, RolloutResult, check_rollout_call

__all__ = [
    "DIGIT_BITMAPS",
    "NeedleReader",
    "NeedleRollout",
    "NeedleSample",
    "NeedleTaskConfig",
    "QUESTION",
    "SCALE_LEVELS",
    "ScoreTable",
    "chunk_lengths",
    "distinct_sizes",
    "make_needle_dataset",
    "make_needle_sample",
    "parse_choice",
    "plan_needle",
    "reader_accuracy_curve",
    "render_digit_mask",
    "resize_frames",
]

QUESTION = "Which digit appears in the video?"
PROBLEM_TYPE = "multiple_choice"
LETTERS = "ABCDEFGHIJ"
# Scale levels of the accuracy curve (0.2, 0.3, ..., 1.8).
SCALE_LEVELS = tuple(round(0.2 + 0.1 * i, 1) for i in range(17))
_CALIBRATION_STREAM = 1  # random stream of calibration videos (samples use stream 0)
_ANSWER_PATTERN = re.compile(r"<answer>\s*\\boxed\{([A-Z])\}\s*</answer>")

# A 5 x 7 bitmap font for the digits 0-9 (1 = ink); rendered at any size by exact area coverage.
DIGIT_BITMAPS = {
    0: ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    1: ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    2: ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    3: ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
    4: ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    5: ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    6: ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    7: ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    8: ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    9: ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
}
NUM_DIGITS = 10


@dataclass(frozen=True)
class NeedleTaskConfig:
    """Parameters of the synthetic needle task (all sizes in pixels at scale 1 unless said otherwise).

    Args:
        num_frames: frames per video.
        height: frame height at scale 1 (the backbone's base size); a multiple of ``factor``.
        width: frame width at scale 1; a multiple of ``factor``.
        source_factor: frames are rendered at ``source_factor * (height, width)`` so that scales above 1 add real
            pixels (1 = render at the scale-1 size; then s > 1 only upsamples).
        num_needles: frames carrying the glyph, 1 or 2 (two = the same digit at the same place in two adjacent
            frames, independent pixel noise).
        glyph_height: digit height at scale 1.
        glyph_width: digit width at scale 1.
        glyph_alpha: opacity of the (white) digit ink over the texture, in (0, 1].
        num_options: answer options (distinct digits, one of them right), 2 to 10.
        noise_std: per-frame Gaussian pixel noise, in 8-bit units at the source resolution.
        texture_cells: smooth-noise control points per side of the coarsest texture octave.
        texture_octaves: number of texture octaves (each doubles the cells and halves the amplitude).
        texture_contrast: amplitude (std, in [0, 1] intensity units) of the coarsest texture octave.
        factor: pixels per visual-token side (``patch_size * merge_size`` of the simulated backbone).
        temporal_patch_size: frames per chunk sharing one size (the backbone's temporal patch).
        min_visual_tokens: floor on a chunk's tokens (as in the processor).
        min_scale: smallest scale the Allocator may output.
        max_scale: largest scale the Allocator may output.
        seed: dataset seed; sample ``index`` of seed ``seed`` is always the same video.
    """

    num_frames: int = 8
    height: int = 64
    width: int = 64
    source_factor: int = 2
    num_needles: int = 1
    glyph_height: float = 12.0
    glyph_width: float = 9.0
    glyph_alpha: float = 0.6
    num_options: int = 4
    noise_std: float = 16.0
    texture_cells: int = 6
    texture_octaves: int = 3
    texture_contrast: float = 0.12
    factor: int = 8
    temporal_patch_size: int = 2
    min_visual_tokens: int = 4
    min_scale: float = 0.2
    max_scale: float = 1.8
    seed: int = 0

    def __post_init__(self):
        def integer(name, low):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

        for name, low in (
            ("num_frames", 1), ("height", 1), ("width", 1), ("source_factor", 1), ("num_needles", 1),
            ("num_options", 2), ("texture_cells", 1), ("texture_octaves", 1), ("factor", 1),
            ("temporal_patch_size", 1), ("min_visual_tokens", 1), ("seed", 0),
        ):
            integer(name, low)
        if self.height % self.factor or self.width % self.factor:
            raise ValueError(f"height and width ({self.height}, {self.width}) must be multiples of factor {self.factor}")
        if self.num_needles not in (1, 2):
            raise ValueError(f"num_needles must be 1 or 2, got {self.num_needles}")
        if self.num_needles > self.num_frames:
            raise ValueError(f"num_needles ({self.num_needles}) must not exceed num_frames ({self.num_frames})")
        if self.num_options > NUM_DIGITS:
            raise ValueError(f"num_options must be between 2 and {NUM_DIGITS}, got {self.num_options}")
        for name in ("glyph_height", "glyph_width", "glyph_alpha", "noise_std", "texture_contrast", "min_scale", "max_scale"):
            if not math.isfinite(float(getattr(self, name))):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")
        if not (2 <= self.glyph_height <= self.height - 2 and 2 <= self.glyph_width <= self.width - 2):
            raise ValueError(
                f"glyph size ({self.glyph_height}, {self.glyph_width}) must be >= 2 px and leave a 1 px margin in the "
                f"{self.height} x {self.width} frame"
            )
        if not (0 < self.glyph_alpha <= 1):
            raise ValueError(f"glyph_alpha must be in (0, 1], got {self.glyph_alpha}")
        if self.noise_std < 0 or self.texture_contrast < 0:
            raise ValueError(f"noise_std and texture_contrast must be >= 0, got {self.noise_std}, {self.texture_contrast}")
        if not (0 < self.min_scale <= 1 <= self.max_scale):
            raise ValueError(f"need 0 < min_scale <= 1 <= max_scale, got {self.min_scale}, {self.max_scale}")

    @property
    def source_size(self) -> tuple[int, int]:
        """(height, width) of the rendered frames."""
        return self.height * self.source_factor, self.width * self.source_factor

    @property
    def unit(self) -> UnitSpec:
        """The resizing unit (one chunk) of every video of this task."""
        return UnitSpec(self.height, self.width, factor=self.factor, min_visual_tokens=self.min_visual_tokens)

    @property
    def letters(self) -> str:
        return LETTERS[: self.num_options]


@dataclass
class NeedleSample:
    """One video of the needle task.

    Attributes:
        frames: uint8 [T, H, W, 3] at the source resolution (``config.source_size``).
        needle_frames: indices of the frames that carry the digit.
        answer: the right option's letter.
        options: option strings, ``"A. 3"`` style.
        question: the question text.
        glyph: the digit shown (0-9).
        option_digits: the digit of each option, in option order.
        glyph_box: (top, left, height, width) of the digit at the source resolution.
        index: sample index within its seed.
    """

    frames: torch.Tensor
    needle_frames: list[int]
    answer: str
    options: list[str]
    question: str
    glyph: int
    option_digits: list[int]
    glyph_box: tuple[int, int, int, int]
    index: int = 0

    @property
    def answer_index(self) -> int:
        return LETTERS.index(self.answer)

    def to_record(self) -> dict:
        """The dataset record: ``{"frames", "question", "options", "answer", "problem_type", "needle_frames"}``."""
        return {
            "frames": self.frames,
            "question": self.question,
            "options": list(self.options),
            "answer": self.answer,
            "problem_type": PROBLEM_TYPE,
            "needle_frames": list(self.needle_frames),
        }


# rendering ------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=256)
def _digit_mask_cached(digit: int, height: int, width: int) -> torch.Tensor:
    bitmap = torch.tensor([[float(c) for c in row] for row in DIGIT_BITMAPS[digit]])  # [7, 5]
    rows, cols = bitmap.shape
    # nearest-upsample to a common multiple, then average: exact area coverage of each output pixel
    fine = bitmap.repeat_interleave(height, 0).repeat_interleave(width, 1)  # [7 * height, 5 * width]
    return F.avg_pool2d(fine[None, None], kernel_size=(rows, cols))[0, 0]  # [height, width]


def render_digit_mask(digit: int, height: int, width: int) -> torch.Tensor:
    """Ink coverage in [0, 1] of ``digit`` drawn in a ``height x width`` box (float32 [height, width])."""
    if digit not in DIGIT_BITMAPS:
        raise ValueError(f"digit must be 0-9, got {digit!r}")
    if height < 1 or width < 1:
        raise ValueError(f"glyph box must be at least 1 x 1, got {height} x {width}")
    return _digit_mask_cached(int(digit), int(height), int(width)).clone()


def _rng(config: NeedleTaskConfig, index: int, stream: int) -> np.random.Generator:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be a non-negative integer, got {index!r}")
    return np.random.default_rng(np.random.SeedSequence([int(config.seed), int(index), stream]))


def _texture(config: NeedleTaskConfig, rng: np.random.Generator) -> torch.Tensor:
    """Smooth multi-octave colour noise, float32 [3, H, W] in [0, 1]."""
    height, width = config.source_size
    image = torch.tensor(rng.uniform(0.25, 0.5, 3), dtype=torch.float32).view(3, 1, 1).expand(3, height, width).clone()
    for octave in range(config.texture_octaves):
        cells = config.texture_cells * 2**octave
        amplitude = config.texture_contrast / 2**octave
        luma = rng.standard_normal((1, cells + 1, cells + 1))
        chroma = 0.35 * rng.standard_normal((3, cells + 1, cells + 1))
        coarse = torch.tensor(luma + chroma, dtype=torch.float32)[None]
        image += amplitude * F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)[0]
    return image.clamp_(0, 1)


def _glyph_box(config: NeedleTaskConfig) -> tuple[int, int]:
    return (max(2, round(config.glyph_height * config.source_factor)), max(2, round(config.glyph_width * config.source_factor)))


def make_needle_sample(config: NeedleTaskConfig | None = None, index: int = 0, *, _stream: int = 0) -> NeedleSample:
    """Sample ``index`` of the task (deterministic in ``(config.seed, index)``).

    All frames share one smooth-noise texture; every frame gets its own Gaussian pixel noise; the needle frame(s)
    additionally carry a white digit (opacity ``glyph_alpha``) at a random position. The options are
    ``num_options`` distinct digits in random order, one of them the digit shown.
    """
    config = config or NeedleTaskConfig()
    rng = _rng(config, index, _stream)
    height, width = config.source_size
    digit = int(rng.integers(NUM_DIGITS))
    others = [d for d in range(NUM_DIGITS) if d != digit]
    option_digits = [digit] + [int(d) for d in rng.choice(others, size=config.num_options - 1, replace=False)]
    option_digits = [option_digits[i] for i in rng.permutation(config.num_options)]
    answer = LETTERS[option_digits.index(digit)]
    first = int(rng.integers(config.num_frames - config.num_needles + 1))
    needle_frames = list(range(first, first + config.num_needles))
    glyph_h, glyph_w = _glyph_box(config)
    margin = config.source_factor
    top = int(rng.integers(margin, height - glyph_h - margin + 1))
    left = int(rng.integers(margin, width - glyph_w - margin + 1))

    background = _texture(config, rng)
    frames = background.unsqueeze(0).repeat(config.num_frames, 1, 1, 1)  # [T, 3, H, W]
    ink = config.glyph_alpha * render_digit_mask(digit, glyph_h, glyph_w)
    for t in needle_frames:
        region = frames[t, :, top : top + glyph_h, left : left + glyph_w]
        frames[t, :, top : top + glyph_h, left : left + glyph_w] = region * (1 - ink) + ink
    noise = torch.tensor(rng.standard_normal(frames.shape), dtype=torch.float32) * (config.noise_std / 255.0)
    frames = ((frames + noise).clamp_(0, 1) * 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return NeedleSample(
        frames=frames,
        needle_frames=needle_frames,
        answer=answer,
        options=[f"{LETTERS[i]}. {d}" for i, d in enumerate(option_digits)],
        question=QUESTION,
        glyph=digit,
        option_digits=option_digits,
        glyph_box=(top, left, glyph_h, glyph_w),
        index=int(index),
    )


def make_needle_dataset(config: NeedleTaskConfig | None = None, num_samples: int = 64, start: int = 0) -> list[dict]:
    """Records (see :meth:`NeedleSample.to_record`) of samples ``start .. start + num_samples - 1``."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
        raise ValueError(f"num_samples must be a non-negative integer, got {num_samples!r}")
    config = config or NeedleTaskConfig()
    return [make_needle_sample(config, start + i).to_record() for i in range(num_samples)]


# the resize operator ----------------------------------------------------------------------------------------------
def chunk_lengths(num_frames: int, temporal_patch_size: int) -> list[int]:
    """Frames per chunk: full temporal patches, then a trailing single-frame unit padded by repetition (as the
    processor does)."""
    full, rest = divmod(num_frames, temporal_patch_size)
    return [temporal_patch_size] * full + ([rest] if rest else [])


def distinct_sizes(config: NeedleTaskConfig) -> list[tuple[int, int]]:
    """Every grid size the operator can produce for a chunk with scales in ``[min_scale, max_scale]``, ascending
    (for the default square 64 px frames: 16, 24, ..., 112 px, the sizes of the levels 0.2, 0.3, ..., 1.8)."""
    unit, low, high = config.unit, config.min_scale, config.max_scale
    # sizes only change where one side's round() flips: probe every such point, just around it, and between them
    edges = {low, high, max(low, min(high, floor_scale(unit)))}
    for base in (config.height, config.width):
        k = 0
        while (edge := (k + 0.5) * config.factor / base) <= high:
            if edge >= low:
                edges.add(edge)
            k += 1
    points = sorted(edges)
    probes = [*points, *((a + b) / 2 for a, b in zip(points, points[1:]))]
    probes += [p * (1 + d) for p in points for d in (-1e-9, 1e-9)]
    return sorted({unit_size(unit, min(max(p, low), high)) for p in probes})


def plan_needle(
    config: NeedleTaskConfig, frame_scales: Sequence[float], *, budget: float | None = None,
    max_visual_tokens: int | None = None, budget_tolerance: float = DEFAULT_BUDGET_TOLERANCE,
    frame_indices: Sequence[int] | None = None,
    timestamps: Sequence[float] = (),
) -> Allocation:
    """The processor's own plan (:func:`~resadapt_hf.processing.allocation.plan_allocation`) for one video of the
    task: per-frame scales -> per-chunk sizes on the task's grid (-> the budget projection when ``budget`` is
    given, and the ``max_visual_tokens`` cap) -> an ``Allocation`` with visual tokens and retention. Scales outside ``[min_scale, max_scale]`` are
    refused, as by the processor."""
    media = MediaSpec(
        "video", len(frame_scales), (config.height, config.width), config.factor, config.temporal_patch_size,
        frame_indices=tuple(frame_indices) if frame_indices is not None else None, timestamps=tuple(timestamps),
    )
    settings = PlanSettings(config.min_scale, config.max_scale, config.min_visual_tokens, budget_tolerance)
    return plan_allocation([media], [[float(s) for s in frame_scales]], budget=budget,
                           max_visual_tokens=max_visual_tokens, settings=settings)


def _resize(frames_nchw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # the processor's own operator (processing_resadapt.resize_operator: bilinear, antialiased, uint8 in/out)
    if tuple(frames_nchw.shape[-2:]) == tuple(size):
        return frames_nchw
    return resize_operator(frames_nchw, size, "bilinear")


def resize_frames(
    frames: torch.Tensor, frame_scales: Sequence[float] | torch.Tensor, config: NeedleTaskConfig | None = None
) -> list[torch.Tensor]:
    """Apply the ResAdapt resize operator to one video.

    Frames are grouped into chunks of ``config.temporal_patch_size`` (a trailing odd frame is padded by repeating
    it, as the backbone does); a chunk's scale is the mean of its frames' scales and its size
    ``unit_size(config.unit, scale)``, i.e. ``round(base * s / factor) * factor`` per side with the token floor, as
    planned by the processor's own :func:`plan_needle`.

    Args:
        frames: uint8 [T, H, W, 3] (any source size; normally ``config.source_size``).
        frame_scales: T per-frame scales within ``[min_scale, max_scale]``.

    Returns:
        one uint8 tensor [temporal_patch_size, h, w, 3] per chunk.
    """
    config = config or NeedleTaskConfig()
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {tuple(frames.shape)} {frames.dtype}")
    scales = [float(s) for s in (frame_scales.tolist() if isinstance(frame_scales, torch.Tensor) else frame_scales)]
    if len(scales) != frames.shape[0]:
        raise ValueError(f"frame_scales: expected {frames.shape[0]} values, got {len(scales)}")
    lengths = chunk_lengths(frames.shape[0], config.temporal_patch_size)
    sizes = plan_needle(config, scales).chunk_sizes
    chunks, start = [], 0
    for length, size in zip(lengths, sizes):
        chunk = frames[start : start + length].permute(0, 3, 1, 2)
        if length < config.temporal_patch_size:
            chunk = torch.cat([chunk, chunk[-1:].expand(config.temporal_patch_size - length, -1, -1, -1)])
        chunks.append(_resize(chunk.contiguous(), size).permute(0, 2, 3, 1).contiguous())
        start += length
    return chunks


# the reader -------------------------------------------------------------------------------------------------------
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def _luma(frames_nhwc: torch.Tensor) -> torch.Tensor:
    """uint8 [N, h, w, 3] -> float32 [N, 1, h, w] in [0, 1]."""
    return (frames_nhwc.float() @ _LUMA).div_(255.0).unsqueeze(1)


@dataclass
class ScoreTable:
    """Calibrated reader scores of one sample at every distinct grid size, for instant answers.

    Attributes:
        scores: float32 [T, S, 10]: calibrated score of each digit in each frame received at ``sizes[s]``.
        sizes: the S distinct (height, width) sizes, ascending.
        option_digits: digit of each option.
        answer_index: index of the right option (ground truth, used by :meth:`rewards` only).
        config: the task config (for the resize operator).
    """

    scores: torch.Tensor
    sizes: list[tuple[int, int]]
    option_digits: list[int]
    answer_index: int
    config: NeedleTaskConfig

    def __post_init__(self):
        self._lengths = chunk_lengths(self.scores.shape[0], self.config.temporal_patch_size)
        self._frame_chunk = torch.repeat_interleave(torch.arange(len(self._lengths)), torch.tensor(self._lengths))
        self._option_scores = self.scores[..., self.option_digits]  # [T, S, K]
        factor = self.config.factor
        grid = torch.full((max(h for h, _ in self.sizes) // factor + 1, max(w for _, w in self.sizes) // factor + 1), -1)
        for i, (h, w) in enumerate(self.sizes):
            grid[h // factor, w // factor] = i
        self._grid_lookup = grid  # (rows, cols) in tokens -> index into sizes, -1 where absent

    def size_indices(self, frame_scales: torch.Tensor) -> torch.Tensor:
        """Index into ``sizes`` of every chunk, long [N, C], for frame scales [N, T] (the operator's own sizes)."""
        unit, lengths = self.config.unit, self._lengths
        starts = np.cumsum([0, *lengths[:-1]]).tolist()
        chunk_means = torch.stack([frame_scales[:, s : s + n].mean(1) for s, n in zip(starts, lengths)], 1)
        if not torch.isfinite(chunk_means).all() or (chunk_means <= 0).any():
            raise ValueError("frame_scales must be finite and > 0")
        # unit_size, vectorised (same float64 arithmetic, round-half-even like Python's round)
        scale = chunk_means.clamp_min(floor_scale(unit))
        rows = torch.round(unit.base_height * scale / unit.factor).clamp_min(1).long()
        cols = torch.round(unit.base_width * scale / unit.factor).clamp_min(1).long()
        grid = self._grid_lookup
        inside = (rows < grid.shape[0]) & (cols < grid.shape[1])
        index = torch.where(inside, grid[rows.clamp_max(grid.shape[0] - 1), cols.clamp_max(grid.shape[1] - 1)], -1)
        if (index < 0).any():
            bad = float(chunk_means[index < 0][0])
            raise ValueError(f"scale {bad:.4g} gives size {unit_size(unit, bad)}, outside the table's sizes {self.sizes}")
        return index

    def option_scores(self, frame_scales: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """Best calibrated score of each option over the frames, float32 [N, K] (or [K] for one scale vector)."""
        scales = torch.as_tensor(frame_scales, dtype=torch.float64)
        single = scales.ndim == 1
        scales = scales.reshape(-1, self.scores.shape[0])
        size_idx = self.size_indices(scales)[:, self._frame_chunk]  # [N, T]
        frame_idx = torch.arange(self.scores.shape[0]).expand_as(size_idx)
        best = self._option_scores[frame_idx, size_idx].amax(1)  # [N, K]
        return best[0] if single else best

    def predict_indices(self, frame_scales: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """The reader's chosen option index, long [N] (or a 0-d tensor for one scale vector)."""
        return self.option_scores(frame_scales).argmax(-1)

    def predict(self, frame_scales: Sequence[float]) -> str:
        """The reader's chosen letter for one per-frame scale vector."""
        return LETTERS[int(self.predict_indices(frame_scales))]

    def rewards(self, frame_scales: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """1.0 where the reader is right, else 0.0: float32 [N] (or 0-d)."""
        return (self.predict_indices(frame_scales) == self.answer_index).float()


class NeedleReader:
    """The frozen, resolution-sensitive reader (plays the backbone MLLM).

    For every received frame of size ``h x w`` it correlates the luma with the ten digit templates rendered at the
    size the glyph has in that frame (``glyph size * h / base height``; normalised cross-correlation via
    ``conv2d``, max over positions), z-normalises each digit's score with calibration statistics for that size
    (mean and std over distractor frames), takes for each option the best calibrated score over all frames and
    answers the option with the highest one.

    Build with :meth:`calibrate`. Sizes without calibration statistics (only reachable by calling
    :meth:`answer` on frames the operator would not produce) use the calibrated size nearest in area.
    """

    def __init__(self, config: NeedleTaskConfig, statistics: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]]):
        if not statistics:
            raise ValueError("statistics must hold at least one calibrated size")
        self.config = config
        self.statistics = dict(statistics)
        self.sizes = sorted(self.statistics)

    # construction -------------------------------------------------------------------------------------------
    @classmethod
    def calibrate(cls, config: NeedleTaskConfig | None = None, num_videos: int = 16) -> "NeedleReader":
        """Calibrate on the distractor frames of ``num_videos`` videos from a separate random stream (never the
        dataset's samples), at every size in :func:`distinct_sizes`. Deterministic; about a second for the
        defaults."""
        config = config or NeedleTaskConfig()
        if isinstance(num_videos, bool) or not isinstance(num_videos, int) or num_videos < 1:
            raise ValueError(f"num_videos must be a positive integer, got {num_videos!r}")
        distractors = []
        for i in range(num_videos):
            sample = make_needle_sample(config, i, _stream=_CALIBRATION_STREAM)
            keep = [t for t in range(config.num_frames) if t not in sample.needle_frames]
            distractors.append(sample.frames[keep])
        frames = torch.cat(distractors)
        if frames.shape[0] < 2:
            raise ValueError("calibration needs at least 2 distractor frames: raise num_videos or num_frames")
        reader = cls(config, {size: (torch.zeros(NUM_DIGITS), torch.ones(NUM_DIGITS)) for size in distinct_sizes(config)})
        statistics = {}
        for size in reader.sizes:
            raw = reader.raw_scores(_resize(frames.permute(0, 3, 1, 2), size).permute(0, 2, 3, 1))
            statistics[size] = (raw.mean(0), raw.std(0).clamp_min(1e-3))
        return cls(config, statistics)

    # scoring ------------------------------------------------------------------------------------------------
    def templates(self, size: tuple[int, int]) -> torch.Tensor:
        """Zero-mean, unit-norm digit templates for frames received at ``size``, float32 [10, 1, th, tw]."""
        return _templates(self.config, tuple(size))

    def raw_scores(self, frames: torch.Tensor) -> torch.Tensor:
        """Max normalised cross-correlation of each digit template over each frame, float32 [N, 10].

        Args:
            frames: uint8 [N, h, w, 3], all received at one size.
        """
        size = tuple(frames.shape[1:3])
        templates = self.templates(size)
        th, tw = templates.shape[-2:]
        luma = _luma(frames)
        if luma.shape[-2] < th or luma.shape[-1] < tw:
            return torch.zeros(frames.shape[0], NUM_DIGITS)
        h, w = luma.shape[-2:]
        # local energy of every th x tw window from integral images
        local_sum, local_sq = _window_sums(luma, th, tw), _window_sums(luma * luma, th, tw)
        energy = (local_sq - local_sum * local_sum / (th * tw)).clamp_min(0).sqrt().clamp_min(1e-3)
        # correlation with the (zero-mean) templates via FFT: circular correlation equals the valid one at the
        # offsets kept below, and costs O(h w log(h w)) instead of O(h w th tw)
        spectrum = torch.fft.rfft2(luma[:, 0], s=(h, w))  # [N, h, w/2+1]
        kernels = torch.fft.rfft2(templates[:, 0], s=(h, w)).conj()  # [10, h, w/2+1]
        correlation = torch.fft.irfft2(spectrum[:, None] * kernels[None], s=(h, w))[..., : h - th + 1, : w - tw + 1]
        return (correlation / energy).flatten(2).amax(-1)  # [N, 10]

    def _calibration_for(self, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        if size in self.statistics:
            return self.statistics[size]
        nearest = min(self.sizes, key=lambda s: abs(math.log(s[0] * s[1]) - math.log(size[0] * size[1])))
        return self.statistics[nearest]

    def frame_scores(self, frames: torch.Tensor) -> torch.Tensor:
        """Calibrated (z-normalised per size and digit) scores, float32 [N, 10], of frames received at one size
        (uint8 [N, h, w, 3])."""
        mean, std = self._calibration_for(tuple(frames.shape[1:3]))
        return (self.raw_scores(frames) - mean) / std

    # answering ----------------------------------------------------------------------------------------------
    def answer(self, chunks: Sequence[torch.Tensor], options: Sequence[str]) -> str:
        """Answer from the frames as received (one uint8 [n, h, w, 3] tensor per chunk, e.g. from
        :func:`resize_frames`, or one [h, w, 3] per frame).

        Returns:
            ``"<think>...</think><answer>\\boxed{X}</answer>"``.
        """
        digits = _option_digits(options)
        best = None  # (score, option, frame, size)
        frame_offset = 0
        for chunk in chunks:
            chunk = chunk.unsqueeze(0) if chunk.ndim == 3 else chunk
            if chunk.dtype != torch.uint8 or chunk.ndim != 4 or chunk.shape[-1] != 3:
                raise ValueError(f"each chunk must be uint8 [n, h, w, 3], got {tuple(chunk.shape)} {chunk.dtype}")
            scores = self.frame_scores(chunk)[:, digits]  # [n, K]
            value, flat = scores.flatten().max(0)
            frame, option = divmod(int(flat), len(digits))
            if best is None or float(value) > best[0]:
                best = (float(value), option, frame_offset + frame, tuple(chunk.shape[1:3]))
            frame_offset += chunk.shape[0]
        if best is None:
            raise ValueError("answer needs at least one chunk")
        score, option, frame, (h, w) = best
        letter = LETTERS[option]
        think = (
            f"I compared every frame, at the resolution I received it, with digit templates. The strongest match "
            f"is the digit {digits[option]} in frame {frame} ({h}x{w} px, calibrated score {score:.2f}), "
            f"which is option {letter}."
        )
        return f"<think>{think}</think><answer>\\boxed{{{letter}}}</answer>"

    def answer_sample(self, sample: NeedleSample, frame_scales: Sequence[float]) -> str:
        """Resize ``sample`` with the operator at ``frame_scales`` and answer (the slow, literal path)."""
        return self.answer(resize_frames(sample.frames, frame_scales, self.config), sample.options)

    def precompute(self, sample: NeedleSample) -> ScoreTable:
        """Score every frame of ``sample`` at every calibrated size (about 40 ms for the defaults on CPU)."""
        frames = sample.frames.permute(0, 3, 1, 2).contiguous()
        scores = torch.stack(
            [self.frame_scores(_resize(frames, size).permute(0, 2, 3, 1)) for size in self.sizes], 1
        )  # [T, S, 10]
        return ScoreTable(
            scores=scores, sizes=list(self.sizes), option_digits=list(sample.option_digits),
            answer_index=sample.answer_index, config=self.config,
        )

    def accuracy_at(
        self, samples: Union[NeedleSample, ScoreTable, Sequence[Union[NeedleSample, ScoreTable]]],
        frame_scales: Sequence[float] | torch.Tensor,
    ) -> float:
        """Mean correctness over ``samples`` (samples or precomputed tables) with per-frame scales ``[T]`` (the
        same for every sample) or ``[N, T]`` (one row per sample)."""
        items = [samples] if isinstance(samples, (NeedleSample, ScoreTable)) else list(samples)
        if not items:
            raise ValueError("accuracy_at needs at least one sample")
        tables = [item if isinstance(item, ScoreTable) else self.precompute(item) for item in items]
        scales = torch.as_tensor(frame_scales, dtype=torch.float64)
        if scales.ndim == 1:
            scales = scales.expand(len(tables), -1)
        if scales.shape[0] != len(tables):
            raise ValueError(f"frame_scales has {scales.shape[0]} rows for {len(tables)} samples")
        return float(sum(float(t.rewards(s)) for t, s in zip(tables, scales)) / len(tables))


def _window_sums(x: torch.Tensor, th: int, tw: int) -> torch.Tensor:
    """Sum of every th x tw window of ``x`` [N, 1, h, w] (valid positions), [N, 1, h - th + 1, w - tw + 1]."""
    integral = F.pad(x.double().cumsum(-1).cumsum(-2), (1, 0, 1, 0))
    sums = integral[..., th:, tw:] - integral[..., :-th, tw:] - integral[..., th:, :-tw] + integral[..., :-th, :-tw]
    return sums.float()


@lru_cache(maxsize=256)
def _templates(config: NeedleTaskConfig, size: tuple[int, int]) -> torch.Tensor:
    source_h, source_w = config.source_size
    glyph_h, glyph_w = _glyph_box(config)
    th = max(2, round(glyph_h * size[0] / source_h))
    tw = max(2, round(glyph_w * size[1] / source_w))
    masks = torch.stack([render_digit_mask(d, glyph_h, glyph_w) for d in range(NUM_DIGITS)])[:, None]
    if (th, tw) != (glyph_h, glyph_w):
        masks = TF.resize(masks, [th, tw], interpolation=InterpolationMode.BILINEAR, antialias=True)
    masks = masks - masks.mean(dim=(-2, -1), keepdim=True)
    norm = masks.flatten(1).norm(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
    return (masks / norm).contiguous()


def _option_digits(options: Sequence[str]) -> list[int]:
    digits = []
    for option in options:
        match = re.fullmatch(r"\s*[A-J][.)]\s*(\d)\s*", str(option))
        if not match:
            raise ValueError(f"options must look like 'A. 3', got {option!r}")
        digits.append(int(match.group(1)))
    if len(digits) < 2:
        raise ValueError(f"need at least 2 options, got {len(digits)}")
    return digits


def parse_choice(text: str) -> str | None:
    """The letter in ``<answer>\\boxed{X}</answer>``, or None when the output does not have that form."""
    match = _ANSWER_PATTERN.search(text)
    return match.group(1) if match else None


# calibration check ------------------------------------------------------------------------------------------------
def reader_accuracy_curve(
    config: NeedleTaskConfig | None = None,
    scales: Sequence[float] = SCALE_LEVELS,
    num_videos: int = 64,
    reader: NeedleReader | None = None,
    start: int = 0,
) -> dict[float, float]:
    """Reader accuracy with ALL frames at one scale, for each scale in ``scales`` (samples ``start ..
    start + num_videos - 1``). The calibration check: near chance at 0.2-0.3, high from about 1.2.

    Measured with the defaults on 256 videos (seed 0 / seed 1): 0.2-0.3: 0.27 / 0.24 (chance 0.25), 0.4: 0.35 /
    0.36, 0.5-0.6: 0.62-0.64 / 0.57-0.63, 0.7-0.8: 0.86 / 0.85, 0.9-1.0: 0.95-0.96 / 0.93-0.94, 1.1: 0.98,
    1.2-1.8: 0.98-1.00.
    """
    config = config or NeedleTaskConfig()
    reader = reader or NeedleReader.calibrate(config)
    tables = [reader.precompute(make_needle_sample(config, start + i)) for i in range(num_videos)]
    return {float(s): reader.accuracy_at(tables, [float(s)] * config.num_frames) for s in scales}


class NeedleRollout:
    """The needle task as a ``CAPOTrainer`` rollout (the :class:`resadapt_hf.rollout.Rollout` protocol): the
    reader plays the frozen backbone.

    For each request and each of its M scale vectors it resizes the record's frames with the ResAdapt operator
    (:func:`resize_frames`), reads them (:meth:`NeedleReader.answer`) and returns the answer N times (the reader is
    deterministic), with the retention of the sizes it produced.

    ``generates_text`` is False: the reader is a deterministic, calibrated function of the pixels, not a language
    model, so ``generation`` (a :class:`~resadapt_hf.rollout.GenerationSettings`) is accepted and ignored: no
    temperature, token limit or sampling changes its answer (the trainer refuses non-default settings for it).

    Args:
        config: the task config the records were made with.
        reader: a calibrated reader (default: ``NeedleReader.calibrate(config)``).
    """

    generates_text = False

    def __init__(self, config: NeedleTaskConfig | None = None, reader: "NeedleReader | None" = None):
        self.config = config or NeedleTaskConfig()
        self.reader = reader or NeedleReader.calibrate(self.config)

    def __call__(self, requests: Sequence[RolloutRequest], *, num_rollouts: int,
                 generation: GenerationSettings) -> list[RolloutResult]:
        requests = check_rollout_call(requests, num_rollouts, generation)
        return [self._read(request, num_rollouts) for request in requests]

    def _read(self, request: RolloutRequest, num_rollouts: int) -> RolloutResult:
        completions, retention = [], []
        for scales in request.frame_scales.tolist():
            chunks = resize_frames(request.frames, scales, self.config)
            completions.append([self.reader.answer(chunks, request.record["options"])] * num_rollouts)
            retention.append(plan_needle(self.config, scales).retention)
        return RolloutResult(completions, torch.tensor(retention))
