"""The reader task: short videos whose answer needs fine detail in one frame, for a real (trained) VLM in the loop.

Each video has ``num_frames`` frames (default 8) of ``size x size`` pixels (default 168, a 6 x 6 grid of Qwen-VL
visual tokens at scale 1). Every frame is a smooth random texture (a base colour, a low-frequency noise field of
its own, pixel noise). ONE frame, the *needle*, also carries a small ``block x block`` patch (default 28 px, one
merged visual token at scale 1, aligned to that grid) of a fine pattern with 1- or 2-pixel cells (``cells``,
drawn per video):

    A. checkerboard   B. horizontal stripes   C. vertical stripes   D. diagonal stripes

The question asks which pattern is in the video, with the four options in this fixed order (the answer is a class
label, so a tiny model trained from scratch can map what it sees to a letter without learning to copy from the
prompt). Why the task is resolution-sensitive: the pattern's period is ``2 * cell`` px, so an antialiased resize
(what the processor does) to less than ``1 / cell`` of the frame's size loses it: 1-px patterns need the full
168 px, 2-px patterns survive down to about half. A uniform downscale therefore loses the 1-px half of the videos
first and everything below half size, while the needle frame's detail stays visible to the Allocator's statistics
and the training-free prior at coarse resolution (the frames are small enough that their working size is the frame
itself). An allocation that keeps the needle frame's chunk at full resolution and shrinks the other chunks to the
floor answers as well as scale 1 with a third of the tokens.

Records follow the project's data schema (``resadapt_hf.data``): ``frames`` (uint8 ``[T, H, W, 3]``),
``question``, ``options``, ``answer`` (a letter), ``problem_type`` ``"multiple_choice"``, plus ``needle_frames``,
``needle_box`` (top, left, side in pixels), ``pattern`` and ``cell``. A sample is a pure function of
``(seed, index)``: different seeds give disjoint random streams, which is how training, validation and held-out test
splits are kept apart (:data:`SPLIT_SEEDS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "LETTERS",
    "OPTIONS",
    "PATTERNS",
    "QUESTION",
    "SPLIT_SEEDS",
    "ReaderTaskConfig",
    "needle_only_scales",
    "pattern_tile",
    "reader_records",
    "reader_sample",
]

PATTERNS = ("checkerboard", "horizontal stripes", "vertical stripes", "diagonal stripes")
LETTERS = "ABCD"
QUESTION = "Which pattern is in the video?"
OPTIONS = tuple(f"{letter}. {name}" for letter, name in zip(LETTERS, PATTERNS))
# The random streams of the shipped reader's data: it was trained on seed 0 and selected on seed 1; seed 2 is the
# held-out test split that no training step or choice saw.
SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2}


@dataclass(frozen=True)
class ReaderTaskConfig:
    """How reader videos are drawn.

    Attributes:
        num_frames: frames per video, even (Qwen-VL encodes frames in pairs).
        size: frame height and width in pixels, a multiple of ``block``.
        block: side of the pattern patch in pixels; patches are placed on the ``block`` grid.
        cells: the sides of one pattern cell in pixels a video may get (drawn uniformly; the period is
            ``2 * cell``).
        amplitude: luma swing of the pattern around the background, in [1, 127].
        pixel_noise: standard deviation of the per-pixel noise.
    """

    num_frames: int = 8
    size: int = 168
    block: int = 28
    cells: tuple[int, ...] = (1, 2)
    amplitude: float = 70.0
    pixel_noise: float = 6.0

    def __post_init__(self):
        if not isinstance(self.num_frames, int) or self.num_frames < 2 or self.num_frames % 2:
            raise ValueError(f"num_frames must be an even int >= 2, got {self.num_frames!r}")
        if not isinstance(self.block, int) or self.block < 4:
            raise ValueError(f"block must be an int >= 4, got {self.block!r}")
        if not isinstance(self.size, int) or self.size < self.block or self.size % self.block:
            raise ValueError(f"size must be a positive multiple of block ({self.block}), got {self.size!r}")
        if not self.cells or any(not isinstance(c, int) or not 1 <= c <= self.block // 2 for c in self.cells):
            raise ValueError(f"cells must be ints in [1, block // 2 = {self.block // 2}], got {self.cells!r}")
        if not 1 <= self.amplitude <= 127:
            raise ValueError(f"amplitude must be in [1, 127], got {self.amplitude!r}")
        if not 0 <= self.pixel_noise <= 50:
            raise ValueError(f"pixel_noise must be in [0, 50], got {self.pixel_noise!r}")


def pattern_tile(pattern: int, size: int, cell: int) -> np.ndarray:
    """``[size, size]`` float32 in {-1, 1} of pattern ``pattern`` (an index of :data:`PATTERNS`)."""
    if pattern not in range(len(PATTERNS)):
        raise ValueError(f"pattern must be in [0, {len(PATTERNS) - 1}], got {pattern!r}")
    y, x = np.mgrid[0:size, 0:size]
    u, v = x // cell, y // cell
    # diagonal: stripes that step one cell sideways every two cells down (not 45 degrees: a 45-degree stripe of
    # 1-px cells IS the 1-px checkerboard); every pattern is zero-mean with cell-sized detail along x or y
    tile = ((u + v) % 2, v % 2, u % 2, (u + v // 2) % 2)[pattern]
    return tile.astype(np.float32) * 2 - 1


def _background(config: ReaderTaskConfig, rng: np.random.Generator) -> np.ndarray:
    """``[T, S, S, 3]`` float: one base colour per video, a smooth luma field per frame, pixel noise."""
    t, s = config.num_frames, config.size
    base = rng.uniform(70, 180, size=3)
    coarse = torch.from_numpy(rng.normal(0, 25, size=(t, 1, 4, 4)))
    smooth = F.interpolate(coarse, size=(s, s), mode="bicubic", align_corners=False)[:, 0].numpy()
    noise = rng.normal(0, config.pixel_noise, size=(t, s, s, 1))
    return base + smooth[..., None] + noise


def reader_sample(index: int, seed: int = 0, config: ReaderTaskConfig | None = None) -> dict:
    """One record (see the module docstring) drawn from the random stream ``(seed, index)``."""
    config = config or ReaderTaskConfig()
    if not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be an int >= 0, got {index!r}")
    rng = np.random.default_rng([int(seed), int(index)])
    frames = _background(config, rng)
    pattern = int(rng.integers(len(PATTERNS)))
    cell = int(config.cells[int(rng.integers(len(config.cells)))])
    needle = int(rng.integers(config.num_frames))
    # on the block grid: the pattern's phase against the patch grid is the same in every video, which a from-scratch
    # patch embedding learns in a few dozen steps (at random pixel offsets it had not started after 80)
    cells = config.size // config.block
    y0, x0 = (int(v) * config.block for v in rng.integers(0, cells, size=2))
    tile = pattern_tile(pattern, config.block, cell) * config.amplitude
    frames[needle, y0 : y0 + config.block, x0 : x0 + config.block, :] += tile[..., None]
    return {
        "frames": torch.from_numpy(np.clip(np.rint(frames), 0, 255).astype(np.uint8)),
        "question": QUESTION,
        "options": list(OPTIONS),
        "answer": LETTERS[pattern],
        "problem_type": "multiple_choice",
        "needle_frames": [needle],
        "needle_box": [y0, x0, config.block],  # top, left, side in pixels
        "pattern": PATTERNS[pattern],
        "cell": cell,
        "index": int(index),
        "seed": int(seed),
    }


def reader_records(num_samples: int, seed: int = SPLIT_SEEDS["test"], config: ReaderTaskConfig | None = None,
                   start: int = 0) -> list[dict]:
    """``num_samples`` records of the stream ``seed`` (indices ``start``, ``start + 1``, ...).

    The default seed is the held-out test split (:data:`SPLIT_SEEDS`).
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    return [reader_sample(start + i, seed, config) for i in range(num_samples)]


def needle_only_scales(record: dict, high: float = 1.0, low: float = 0.2) -> list[float]:
    """Per-frame scales of the "needle only" allocation: ``high`` for both frames of the needle frame's 2-frame chunk,
    ``low`` for every other frame (at the defaults, 48 of 144 tokens for a default video)."""
    chunk = record["needle_frames"][0] // 2
    return [high if t // 2 == chunk else low for t in range(record["frames"].shape[0])]
