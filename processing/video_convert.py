"""Arrays and PIL images -> library clips and images (``to_video_clip``, ``to_rgb_image``).

Library clip conventions (all frames are RGB ``uint8`` in 0..255, channels-last):

* video clip frames: ``[T, H, W, 3]``
* single image:      ``[H, W, 3]``

Accepted library inputs (see ``to_video_clip`` / ``to_rgb_image``):

* channels-last ``[..., H, W, C]`` or channels-first ``[..., C, H, W]`` with
  ``C`` in (1, 3, 4); channels-first is assumed only when the leading
  candidate axis is in (1, 3, 4) and the last axis is not.
* ``C == 1`` (grayscale) is replicated to RGB.
* ``C == 4`` (RGBA) keeps RGB and **drops alpha** (no compositing onto a
  background): cheap, lossless for opaque video, and what PIL's
  ``.convert("RGB")`` does as well, so arrays and PIL images agree.
* dtype ``uint8`` is used as is; floating point must be finite and in [0, 1]
  and is mapped with ``round(x * 255)``. Anything else (int16, int64, bool, ...)
  is a ``TypeError``: guessing a value range for integers is how silent
  0-65535 / 0-1 bugs happen.

Raw arrays carry no fps: see ``video_decode`` for the unknown-frame-rate rule. Every public name here is also
importable from ``video_input``.

This file ships to the Hub with ``trust_remote_code``: it imports only the
stdlib, torch and same-folder siblings at module level; PIL is never imported (PIL images are
detected through ``sys.modules``).
"""

from __future__ import annotations

import operator
import os
import sys
from typing import Any, Sequence

import torch

from .video_decode import (
    VideoClip,
    _check_rate,
    _check_sampling_args,
    _timestamps,
    load_video,
    sample_frame_indices,
)

__all__ = [
    "to_rgb_image",
    "to_video_clip",
]

_CHANNEL_SIZES = (1, 3, 4)
_ACCEPTED_DTYPES = "uint8 (0..255) or floating point in [0, 1]"


# --------------------------------------------------------------- array conversion


def _is_pil_image(obj: Any) -> bool:
    # If PIL was never imported, obj cannot be a PIL image: no import needed.
    pil_image = sys.modules.get("PIL.Image")
    return pil_image is not None and isinstance(obj, pil_image.Image)


def _is_numpy_array(obj: Any) -> bool:
    return any(cls.__module__ == "numpy" and cls.__name__ == "ndarray" for cls in type(obj).__mro__)


def _pil_to_tensor(image: Any, name: str) -> torch.Tensor:
    """PIL image (any mode) -> uint8 ``[H, W, 3]``.

    ``.convert("RGB")`` handles every mode (L, P, CMYK, ...); for RGBA/LA it
    drops alpha, matching the array rule.
    """
    rgb = image.convert("RGB")
    width, height = rgb.size
    if width < 1 or height < 1:
        raise ValueError(f"`{name}`: image has zero height or width ({height}x{width})")
    # bytearray: torch.frombuffer wants a writable buffer.
    return torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(height, width, 3)


def _as_tensor(obj: Any, name: str) -> torch.Tensor:
    """torch.Tensor / numpy array -> CPU tensor sharing memory when possible.

    Sharing means a contiguous uint8 RGB input is not copied (videos are big);
    read-only arrays are copied because torch cannot wrap them safely.
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if not obj.flags.writeable:
        obj = obj.copy()
    try:
        return torch.from_numpy(obj)
    except TypeError:
        raise TypeError(f"`{name}`: unsupported dtype {obj.dtype}; accepted: {_ACCEPTED_DTYPES}") from None
    except ValueError:
        # Negative strides (e.g. arr[::-1]) cannot be shared; copy instead.
        return torch.from_numpy(obj.copy())


def _to_rgb_channels(pixels: torch.Tensor) -> torch.Tensor:
    """``[..., C]`` with C in (1, 3, 4) -> ``[..., 3]``: replicate gray, drop alpha."""
    channels = pixels.shape[-1]
    if channels == 1:
        return pixels.expand(*pixels.shape[:-1], 3)
    if channels == 4:
        return pixels[..., :3]
    return pixels


def _to_uint8(pixels: torch.Tensor, name: str) -> torch.Tensor:
    """uint8 as is; finite float in [0, 1] -> ``round(x * 255)``; anything else -> TypeError."""
    if pixels.dtype == torch.uint8:
        return pixels
    if not pixels.is_floating_point():
        raise TypeError(f"`{name}`: unsupported dtype {pixels.dtype}; accepted: {_ACCEPTED_DTYPES}")
    if pixels.dtype in (torch.float16, torch.bfloat16):
        pixels = pixels.float()  # half precision would round x * 255 badly
    if not bool(torch.isfinite(pixels).all()):
        raise ValueError(f"`{name}`: floating-point pixels contain NaN or inf; accepted: finite values in [0, 1]")
    low, high = (float(v) for v in torch.aminmax(pixels))
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"`{name}`: floating-point pixels must lie in [0, 1], got values in [{low:g}, {high:g}]; "
            "convert 0..255 data to uint8 first"
        )
    return (pixels * 255.0).round_().to(torch.uint8)


def _check_spatial(height: int, width: int, name: str) -> None:
    if height < 1 or width < 1:
        raise ValueError(f"`{name}`: frames must have height and width >= 1, got {height}x{width}")


def _channels_last(pixels: torch.Tensor, name: str, accepted: str) -> torch.Tensor:
    """``[..., H, W, C]`` from channels-last or channels-first pixels (C in 1/3/4); a clear error otherwise."""
    if pixels.shape[-1] not in _CHANNEL_SIZES:
        if pixels.shape[-3] not in _CHANNEL_SIZES:
            raise ValueError(f"`{name}`: cannot find the channel axis in shape {list(pixels.shape)}; accepted: {accepted}")
        pixels = pixels.movedim(-3, -1)
    return pixels


def _image_to_tensor(image: Any, name: str) -> torch.Tensor:
    """One image (PIL, ``[H, W, C]``, ``[C, H, W]``, ``[H, W]``) -> uint8 ``[H, W, 3]``."""
    if _is_pil_image(image):
        return _pil_to_tensor(image, name)
    if not (isinstance(image, torch.Tensor) or _is_numpy_array(image)):
        raise TypeError(
            f"`{name}`: unsupported type {type(image).__name__}; accepted: PIL image, torch.Tensor or numpy array"
        )
    pixels = _as_tensor(image, name)
    if pixels.ndim == 2:  # grayscale [H, W]
        pixels = pixels.unsqueeze(-1)
    elif pixels.ndim == 3:
        pixels = _channels_last(pixels, name, "[H, W, C] or [C, H, W] with C in (1, 3, 4), or [H, W] grayscale")
    else:
        raise ValueError(
            f"`{name}`: expected a 2-D or 3-D image, got shape {list(pixels.shape)}; accepted: "
            "[H, W, C] or [C, H, W] with C in (1, 3, 4), or [H, W] grayscale"
        )
    _check_spatial(pixels.shape[0], pixels.shape[1], name)
    return _to_uint8(_to_rgb_channels(pixels), name).contiguous()


def to_rgb_image(image: Any) -> torch.Tensor:
    """Normalise one image to RGB uint8.

    Args:
        image: PIL image (any mode), or torch tensor / numpy array shaped
            ``[H, W, C]``, ``[C, H, W]`` (C in 1, 3, 4) or ``[H, W]``;
            dtype uint8, or float in [0, 1].

    Returns:
        uint8 tensor ``[H, W, 3]`` (contiguous, CPU).

    Raises:
        TypeError: unsupported type or dtype.
        ValueError: bad shape, empty image, or float values outside [0, 1] / non-finite.
    """
    return _image_to_tensor(image, "images")


def _video_array_to_tensor(video: Any) -> torch.Tensor:
    """``[T, H, W, C]`` / ``[T, C, H, W]`` / ``[T, H, W]`` array -> uint8 ``[T, H, W, 3]``."""
    pixels = _as_tensor(video, "videos")
    accepted = "[T, H, W, C] or [T, C, H, W] with C in (1, 3, 4), or [T, H, W] grayscale"
    if pixels.ndim == 3:
        if pixels.shape[-1] in (3, 4):
            # Far more likely one [H, W, C] image than a grayscale video 3 pixels wide.
            raise ValueError(
                f"`videos`: a 3-D input is read as a grayscale video [T, H, W], but shape "
                f"{list(pixels.shape)} looks like a single [H, W, C] image; pass [image] or add a frame axis"
            )
        pixels = pixels.unsqueeze(-1)
    elif pixels.ndim == 4:
        pixels = _channels_last(pixels, "videos", accepted)
    else:
        raise ValueError(f"`videos`: expected a 3-D or 4-D array, got shape {list(pixels.shape)}; accepted: {accepted}")
    if pixels.shape[0] < 1:
        raise ValueError("`videos`: the video has zero frames; at least 1 frame is required")
    _check_spatial(pixels.shape[1], pixels.shape[2], "videos")
    return _to_uint8(_to_rgb_channels(pixels), "videos").contiguous()


def _frame_list_to_tensor(frames: Sequence[Any]) -> torch.Tensor:
    """List of images -> uint8 ``[T, H, W, 3]``; all frames must share one size."""
    if len(frames) == 0:
        raise ValueError("`videos`: the video has zero frames; at least 1 frame is required")
    converted = [_image_to_tensor(frame, f"videos[{i}]") for i, frame in enumerate(frames)]
    sizes = sorted({tuple(frame.shape[:2]) for frame in converted})
    if len(sizes) > 1:
        listed = ", ".join(f"{h}x{w}" for h, w in sizes)
        raise ValueError(f"`videos`: all frames must have the same size (HxW), got {listed}")
    return torch.stack(converted)


def _check_frame_indices(frame_indices: Any, num_frames: int) -> list[int]:
    try:
        indices = [operator.index(i) for i in frame_indices]
    except TypeError:
        raise ValueError("`frame_indices` must be a sequence of ints") from None
    if len(indices) != num_frames:
        raise ValueError(f"`frame_indices` must have one entry per frame ({num_frames}), got {len(indices)}")
    if indices[0] < 0 or any(b <= a for a, b in zip(indices, indices[1:])):
        raise ValueError(f"`frame_indices` must be >= 0 and strictly increasing, got {indices}")
    return indices


def _resample(clip: VideoClip, num_frames: int | None, fps: float | None) -> VideoClip:
    """Keep a uniform subset of an existing clip's frames (never invents frames).

    With ``fps`` the target count is what ``sample_frame_indices`` would give
    on the full source, capped at the clip's ``T``.
    """
    if num_frames is None and fps is None:
        return clip
    if fps is not None:
        if clip.fps is None:
            raise ValueError(
                f"`videos`: cannot sample with `fps`={fps}: the video's frame rate is unknown; "
                "pass `video_fps` or use `num_frames`"
            )
        num_frames = len(sample_frame_indices(clip.total_num_frames, fps=fps, video_fps=clip.fps))
    positions = sample_frame_indices(clip.num_frames, num_frames=num_frames)
    indices = [clip.frame_indices[p] for p in positions]
    return VideoClip(
        frames=clip.frames[positions],
        frame_indices=indices,
        timestamps=[clip.timestamps[p] for p in positions],
        fps=clip.fps,
        total_num_frames=clip.total_num_frames,
    )


def to_video_clip(
    video: Any,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    video_fps: float | None = None,
    frame_indices: Sequence[int] | None = None,
) -> VideoClip:
    """Normalise any supported video input to a sampled ``VideoClip``.

    Args:
        video: one of
            * a path (``str`` / ``os.PathLike``): decoded by ``load_video``;
            * a ``VideoClip``: returned as is, or re-sampled (a subset of its
              frames) if ``num_frames``/``fps`` is given;
            * a torch tensor or numpy array ``[T, H, W, C]``, ``[T, C, H, W]``
              (C in 1, 3, 4) or ``[T, H, W]`` (grayscale);
            * a list/tuple of frames: PIL images or ``[H, W, C]`` /
              ``[C, H, W]`` / ``[H, W]`` arrays, all the same size.
            Pixels: uint8, or float in [0, 1]; RGBA drops alpha.
        num_frames: keep this many frames (int >= 1, capped at T), uniformly.
        fps: keep this many frames per second (finite > 0); needs the frame rate.
        video_fps: frame rate of an array/list input; ``None`` = unknown
            (``clip.fps`` is ``None``; timestamps use ``ASSUMED_FPS_WHEN_UNKNOWN``).
        frame_indices: source index of each given array/list frame (``len T``,
            strictly increasing); default ``0..T-1``. ``total_num_frames`` is
            then ``frame_indices[-1] + 1``.

    Returns:
        ``VideoClip`` with frames uint8 ``[T', H, W, 3]``. A contiguous
        uint8 ``[T, H, W, 3]`` tensor/array that needs no sampling is wrapped
        without a copy, so the clip shares its memory.

    Raises:
        TypeError: unsupported input type or pixel dtype.
        ValueError: bad shape, zero frames/size, mixed frame sizes, float
            values outside [0, 1], bad sampling arguments, undecodable file.
    """
    num_frames, fps = _check_sampling_args(num_frames, fps)
    if isinstance(video, (VideoClip, str, os.PathLike)) and (video_fps is not None or frame_indices is not None):
        raise ValueError(
            "`video_fps` and `frame_indices` only apply to array/list inputs; a path or VideoClip "
            "carries its own frame rate and indices"
        )
    if isinstance(video, VideoClip):
        return _resample(video, num_frames, fps)
    if isinstance(video, (str, os.PathLike)):
        return load_video(video, num_frames=num_frames, fps=fps)

    if isinstance(video, torch.Tensor) or _is_numpy_array(video):
        frames = _video_array_to_tensor(video)
    elif isinstance(video, (list, tuple)):
        frames = _frame_list_to_tensor(video)
    else:
        kind = "a single PIL image; wrap it in a list" if _is_pil_image(video) else type(video).__name__
        raise TypeError(
            f"`videos`: unsupported input ({kind}); accepted: a video path, a VideoClip, a torch.Tensor or "
            "numpy array [T, H, W, C] / [T, C, H, W] / [T, H, W], or a list of PIL images / [H, W, C] arrays"
        )

    rate = None if video_fps is None else _check_rate("video_fps", video_fps)
    count = int(frames.shape[0])
    indices = list(range(count)) if frame_indices is None else _check_frame_indices(frame_indices, count)
    clip = VideoClip(
        frames=frames,
        frame_indices=indices,
        timestamps=_timestamps(indices, rate),
        fps=rate,
        total_num_frames=indices[-1] + 1,
    )
    return _resample(clip, num_frames, fps)

