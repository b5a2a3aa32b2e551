"""Small deterministic demo clips for examples, tests and smoke runs.

The clip is built so that a content-adaptive allocator has something to react
to: its detail changes over time (nearly flat frames, then fine texture, then
text-like glyphs, then flat again) and a small object moves across every frame.

``make_demo_frames`` returns the frames in memory; ``write_demo_clip`` encodes
the very same frames as a few-KB H.264 mp4 (lossy, so decoded pixels differ
slightly from the in-memory ones, but the structure is identical).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

# Segment kinds, in temporal order; frame t belongs to segment (t * 4) // T.
SEGMENTS = ("flat", "texture", "glyphs", "flat")

_GLYPH_ROWS, _GLYPH_COLS = 7, 5  # classic 5x7 bitmap-font cell


def _check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
    return value


def _flat_background(height: int, width: int, t: int) -> np.ndarray:
    """A very smooth, low-contrast gradient: almost no detail.

    Returns:
        uint8 [H, W, 3]
    """
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    base = 110.0 + 12.0 * ys + 8.0 * xs + 2.0 * t  # a slight drift keeps frames distinct
    rgb = np.stack([base, base + 10.0, base + 25.0], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _fine_texture(height: int, width: int) -> np.ndarray:
    """High-frequency stripes times a checkerboard: lots of fine detail.

    Deterministic and static (no noise) so consecutive frames compress well in
    H.264; the moving object supplies the motion.

    Returns:
        uint8 [H, W, 3]
    """
    ys = np.arange(height)[:, None]
    xs = np.arange(width)[None, :]
    stripes = np.sin(2.0 * np.pi * (xs + ys) / 4.0) * 0.5 + 0.5
    checker = ((xs // 4 + ys // 4) % 2).astype(np.float32)
    value = 40.0 + 180.0 * (0.6 * stripes + 0.4 * checker)
    # Gray: the detail lives in luma, which yuv420p keeps at full resolution.
    rgb = np.repeat(value[:, :, None], 3, axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _glyph_page(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Dark "text" on a light page: a few lines of random 5x7 bitmap glyphs.

    Text covers the upper part of the page only, so these frames also have
    spatially uneven detail (dense lines above, blank margin below).

    Returns:
        uint8 [H, W, 3]
    """
    page = np.full((height, width), 235, dtype=np.uint8)
    cell_h, cell_w = _GLYPH_ROWS + 5, _GLYPH_COLS + 2  # glyph plus line/letter spacing
    for top in range(6, max(7, height // 2 - cell_h), cell_h):
        for left in range(6, width - 6 - cell_w, cell_w):
            if rng.random() < 0.2:  # word gaps
                continue
            glyph = rng.random((_GLYPH_ROWS, _GLYPH_COLS)) < 0.4
            page[top : top + _GLYPH_ROWS, left : left + _GLYPH_COLS][glyph] = 20
    return np.repeat(page[:, :, None], 3, axis=-1)


def _draw_moving_object(frame: np.ndarray, t: int, num_frames: int) -> None:
    """Paint a small red square that travels left-to-right over the clip (in place)."""
    height, width = frame.shape[:2]
    size = max(2, min(height, width) // 6)
    progress = t / max(1, num_frames - 1)
    left = int(round(progress * (width - size)))
    top = (height - size) // 2
    frame[top : top + size, left : left + size] = (230, 30, 30)


def make_demo_frames(
    *, num_frames: int = 16, height: int = 120, width: int = 160, seed: int = 0
) -> np.ndarray:
    """Build the demo clip's frames in memory.

    Segments (frame t is in segment ``(4 * t) // num_frames``): nearly flat
    gradient -> fine texture -> text-like glyphs -> nearly flat; a red square
    moves left-to-right over all frames.

    Args:
        num_frames: T, >= 1.
        height, width: frame size in pixels, >= 1.
        seed: seeds the glyph layout; the same seed gives identical frames.

    Returns:
        uint8 array [T, H, W, 3], RGB.
    """
    _check_positive_int("num_frames", num_frames)
    _check_positive_int("height", height)
    _check_positive_int("width", width)
    rng = np.random.default_rng(seed)
    # One glyph page per clip: text that stays put is what real slides/subtitles look like.
    glyphs = _glyph_page(height, width, rng)
    texture = _fine_texture(height, width)

    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        kind = SEGMENTS[(4 * t) // num_frames]
        if kind == "flat":
            frame = _flat_background(height, width, t)
        elif kind == "texture":
            # Texture on the right half only: detail that is uneven in space too.
            frame = _flat_background(height, width, t)
            frame[:, width // 2 :] = texture[:, width // 2 :]
        else:
            frame = glyphs.copy()
        _draw_moving_object(frame, t, num_frames)
        frames[t] = frame
    return frames


def write_demo_clip(
    path: str | os.PathLike,
    *,
    num_frames: int = 16,
    height: int = 120,
    width: int = 160,
    fps: int = 8,
    seed: int = 0,
) -> Path:
    """Encode ``make_demo_frames(...)`` as an H.264 (libx264, yuv420p) video.

    Args:
        path: output file; parent folders must exist. Overwritten if present.
            The container follows the suffix (``.mp4``, ``.mkv``, ...); no
            suffix means mp4.
        num_frames: T, >= 1.
        height, width: even sizes >= 2 (yuv420p subsamples chroma by 2).
        fps: frame rate, an int >= 1 (stored exactly as the stream rate).
        seed: see ``make_demo_frames``.

    Returns:
        The path written, as a ``Path``.
    """
    import av  # library side: PyAV is a hard dependency of the demo helpers

    _check_positive_int("fps", fps)
    for name, value in (("height", height), ("width", width)):
        _check_positive_int(name, value)
        if value % 2:
            raise ValueError(f"`{name}` must be even for yuv420p H.264, got {value}")
    frames = make_demo_frames(num_frames=num_frames, height=height, width=width, seed=seed)

    path = Path(path)
    container_format = None if path.suffix else "mp4"  # else FFmpeg picks from the suffix
    with av.open(str(path), mode="w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # Single-threaded x264 keeps the bitstream byte-identical across machines/runs.
        stream.codec_context.options = {"crf": "28", "preset": "medium", "threads": "1"}
        for t in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frames[t], format="rgb24")
            frame.pts = t  # stream time base is 1/fps, so pts counts frames
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))  # flush delayed (B-)frames
    return path
