"""Video and image inputs -> frames the backbone's own processor would see, plus one shared frame-index list.

Two layers:

* **Processor inputs** (``prepare_video``, ``read_video``): exactly the steps the backbone's video processor runs
  before resizing (decode, sample with its own ``sample_frames``, channel layout, ``convert_to_rgb``, device), so
  that scale 1 reproduces the native processor bit for bit. Files are decoded with PyAV (``video_decode``).
  Pixels keep their dtype and range (uint8, or floats as given, e.g. qwen-vl-utils' 0..255 floats): the backbone
  rescales them itself.
* **Library clips** (``VideoClip``, ``load_video``, ``to_video_clip``, ``to_rgb_image``): uint8 RGB clips for code
  that has no backbone processor at hand (datasets, demos, the synthetic task).

Modules:

* ``video_decode``: the ``VideoClip`` type, frame sampling, PyAV decoding (``read_video``, ``load_video``).
* ``video_convert``: arrays and PIL images -> library clips and images (``to_video_clip``, ``to_rgb_image``).
* this module: the processor's input rules (``prepare_video``, ``check_processor_pixels``, ``check_device``,
  ``per_video``, ``flatten_videos``, ...). Every public name of the three is importable from here.

This file ships to the Hub with ``trust_remote_code``: it imports only the
stdlib, torch, transformers and same-folder siblings at module level; PIL is never imported (PIL images are
detected through ``sys.modules``).
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable

import torch
from transformers.image_utils import ChannelDimension, infer_channel_dimension_format
from transformers.video_utils import VideoMetadata

from .video_convert import (
    _CHANNEL_SIZES,
    _as_tensor,
    _is_numpy_array,
    _is_pil_image,
    to_rgb_image,
    to_video_clip,
)
from .video_decode import (
    ASSUMED_FPS_WHEN_UNKNOWN,
    IndexFunction,
    VideoClip,
    _check_rate,
    _indices_from,
    load_video,
    read_video,
    sample_frame_indices,
)

__all__ = [
    "ASSUMED_FPS_WHEN_UNKNOWN",
    "VideoClip",
    "load_video",
    "check_device",
    "check_processor_pixels",
    "flatten_images",
    "flatten_videos",
    "frame_rate_of_given_frames",
    "per_video",
    "per_video_metadata",
    "prepare_video",
    "read_video",
    "sample_frame_indices",
    "to_rgb_image",
    "to_video_clip",
]


# ----------------------------------------------------------- processor inputs (the backbone's own rules)


_PROCESSOR_DTYPES = "uint8, or floating point in the range the backbone rescales (0..255 by default)"


def _frame_as_stacked(frame: Any, name: str) -> torch.Tensor:
    """One frame of a frame list as transformers stacks it (``np.array(frame)``): RGB/RGBA PIL images and arrays
    keep their channels and dtype. Other PIL modes (L, P, CMYK, ...) have no channel axis or hold palette indices
    there, which the native processor cannot use, so they are converted to RGB (RGBA when they carry alpha)."""
    if _is_pil_image(frame):
        if frame.mode not in ("RGB", "RGBA"):
            has_alpha = "A" in frame.mode or "transparency" in frame.info
            frame = frame.convert("RGBA" if has_alpha else "RGB")
        width, height = frame.size
        channels = len(frame.mode)
        return torch.frombuffer(bytearray(frame.tobytes()), dtype=torch.uint8).view(height, width, channels)
    if isinstance(frame, torch.Tensor) or _is_numpy_array(frame):
        pixels = _as_tensor(frame, name)
        if pixels.ndim not in (2, 3):
            raise ValueError(f"`{name}`: a frame must be 2-D or 3-D, got shape {list(pixels.shape)}")
        return pixels
    raise TypeError(f"`{name}`: unsupported frame type {type(frame).__name__}; accepted: PIL images, arrays, tensors")


def _raw_video(video: Any, name: str) -> torch.Tensor:
    """An array/tensor video or a list of frames as one tensor in its own layout (3-D or 4-D), no copy if possible."""
    if isinstance(video, torch.Tensor) or _is_numpy_array(video):
        pixels = _as_tensor(video, name)
    elif isinstance(video, (list, tuple)):
        if not video:
            raise ValueError(f"`{name}`: the video has zero frames; at least 1 frame is required")
        frames = [_frame_as_stacked(frame, f"{name}[{i}]") for i, frame in enumerate(video)]
        shapes = sorted({tuple(f.shape) for f in frames})
        if len(shapes) > 1:
            raise ValueError(f"`{name}`: all frames must have the same size, got shapes {[list(s) for s in shapes]}")
        pixels = torch.stack(frames)
    else:
        raise TypeError(
            f"`{name}`: unsupported input {type(video).__name__}; accepted: a video path, a VideoClip, an array or "
            "tensor [T, H, W, C] / [T, C, H, W] / [T, H, W], or a list of frames (PIL images or arrays)"
        )
    if pixels.ndim == 3 and _channel_axis_of_frame(pixels):
        pixels = pixels[None]  # one [H, W, C] / [C, H, W] frame is a one-frame video, as transformers reads it
    if pixels.ndim in (3, 4) and pixels.shape[0] < 1:
        raise ValueError(f"`{name}`: the video has zero frames; at least 1 frame is required")
    if pixels.ndim not in (3, 4) or min(pixels.shape) < 1:
        raise ValueError(
            f"`{name}`: expected a non-empty [T, H, W, C], [T, C, H, W] or [T, H, W] video, got shape "
            f"{list(pixels.shape)}"
        )
    return pixels


def _channel_axis_of_frame(frame: torch.Tensor) -> bool:
    return frame.shape[-1] in _CHANNEL_SIZES or frame.shape[0] in _CHANNEL_SIZES


def _channels_first(pixels: torch.Tensor, input_data_format: Any, name: str) -> torch.Tensor:
    """``[T, ...]`` -> ``[T, C, H, W]``: the layout rule of transformers' video processors (channels inferred
    from C in (1, 3)), extended to RGBA (C = 4) and to grayscale ``[T, H, W]`` where transformers cannot tell."""
    if pixels.ndim == 3:  # [T, H, W] grayscale
        return pixels.unsqueeze(1)
    layout = input_data_format
    if layout is None:
        try:
            layout = infer_channel_dimension_format(pixels)
        except ValueError:
            try:
                layout = infer_channel_dimension_format(pixels, num_channels=_CHANNEL_SIZES)
            except ValueError:
                raise ValueError(
                    f"`{name}`: cannot find the channel axis in shape {list(pixels.shape)}; accepted: [T, H, W, C] or "
                    "[T, C, H, W] with C in (1, 3, 4), or [T, H, W] grayscale (or pass input_data_format)"
                ) from None
    if ChannelDimension(layout) == ChannelDimension.LAST:
        pixels = pixels.permute(0, 3, 1, 2)
    return pixels.contiguous()


def check_processor_pixels(pixels: torch.Tensor, name: str) -> None:
    if pixels.dtype == torch.uint8:
        return
    if not pixels.is_floating_point():
        raise TypeError(f"`{name}`: unsupported dtype {pixels.dtype}; accepted: {_PROCESSOR_DTYPES}")
    if not bool(torch.isfinite(pixels).all()):
        raise ValueError(f"`{name}`: floating-point pixels contain NaN or inf; accepted: finite values")


def _metadata_for(num_frames: int, metadata: Any, name: str) -> VideoMetadata:
    """The metadata of an array video: a copy of the caller's, or transformers' defaults (all frames, fps None)."""
    if metadata is None:
        return VideoMetadata(total_num_frames=num_frames, fps=None, frames_indices=list(range(num_frames)))
    if isinstance(metadata, VideoMetadata):
        fields = {key: metadata[key] for key in metadata}
    elif isinstance(metadata, dict):
        fields = dict(metadata)
    else:
        raise TypeError(f"`{name}`: expected a dict or VideoMetadata, got {type(metadata).__name__}")
    try:
        meta = VideoMetadata(**fields)
    except TypeError as err:
        raise ValueError(f"`{name}`: {err}; accepted keys: total_num_frames, fps, width, height, duration, "
                         "video_backend, frames_indices") from None
    total = meta.total_num_frames
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ValueError(f"`{name}['total_num_frames']` must be an int >= 1, got {total!r}")
    if meta.fps is not None:
        meta.fps = _check_rate(f"{name}['fps']", meta.fps)
    if meta.frames_indices is not None:
        raw = meta.frames_indices
        meta.frames_indices = [int(i) for i in (raw.tolist() if hasattr(raw, "tolist") else raw)]
    return meta


def prepare_video(
    video: Any,
    *,
    metadata: Any = None,
    sample_indices_fn: IndexFunction | None = None,
    input_data_format: Any = None,
    convert_to_rgb: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: Any = None,
    name: str = "videos",
) -> tuple[torch.Tensor, VideoMetadata]:
    """One video as the backbone's video processor has it right before resizing, with its metadata.

    The steps and their order are transformers' (``BaseVideoProcessor``): decode (files, with PyAV as
    :func:`read_video`), sample (``sample_indices_fn`` on the metadata, then ``video[indices]``), channels first,
    ``convert_to_rgb`` (grayscale replicated, alpha blended on white), move to ``device``. Pixel values keep their
    dtype and range, so the backbone rescales exactly what it would have rescaled.

    Args:
        video: a path, a ``VideoClip`` (already sampled: never sampled again), an array/tensor
            ``[T, H, W, C]`` / ``[T, C, H, W]`` (C in 1, 3, 4) / ``[T, H, W]`` (grayscale), one frame
            ``[H, W, C]`` / ``[C, H, W]`` (a one-frame video), or a list of frames (PIL images or arrays).
        metadata: for arrays, a dict or ``VideoMetadata`` (``fps``, ``total_num_frames``, ``frames_indices``);
            None: transformers' defaults (every frame given is the whole video, frame rate unknown). Ignored
            for files and clips, which carry their own.
        sample_indices_fn: ``fn(metadata=...) -> indices`` (the backbone's ``sample_frames`` with its arguments
            bound), or None to keep every frame given (``do_sample_frames=False``).
        input_data_format: ``"channels_first"``/``"channels_last"`` for arrays, None to infer.
        convert_to_rgb: the backbone video processor's ``convert_to_rgb``; None skips it (``do_convert_rgb=False``).
        device: where the prepared frames go (resizing then runs there).
        name: the argument name used in error messages.

    Returns:
        (frames ``[T, C, H, W]`` contiguous, ``VideoMetadata``). For arrays whose metadata lists no
        ``frames_indices``, they are ``0..T-1`` when the array holds the whole video (``T == total_num_frames``)
        and stay None otherwise.

    Raises:
        TypeError: unsupported input or pixel dtype (accepted: uint8 or floating point).
        ValueError: empty or mis-shaped input, non-finite pixels, bad metadata, sampling a pre-sampled array
            (``total_num_frames`` != T), undecodable file.
    """
    if isinstance(video, (str, os.PathLike)):
        frames, meta = read_video(video, sample_indices_fn)
        frames = frames.permute(0, 3, 1, 2).contiguous()
    elif isinstance(video, VideoClip):
        frames, meta = video.frames.permute(0, 3, 1, 2).contiguous(), video.to_metadata()
    else:
        pixels = _raw_video(video, name)
        count = int(pixels.shape[0])
        meta = _metadata_for(count, metadata, f"video_metadata for {name}")
        if sample_indices_fn is not None:
            if meta.total_num_frames != count:
                raise ValueError(
                    f"`{name}`: its video_metadata describes {meta.total_num_frames} source frames but the array "
                    f"holds {count}: frames that are already sampled need do_sample_frames=False"
                )
            indices = _indices_from(sample_indices_fn, meta, f"`{name}`")
            meta.frames_indices = indices
            pixels = pixels[torch.tensor(indices)]
        elif meta.frames_indices is None and meta.total_num_frames == count:
            meta.frames_indices = list(range(count))  # the array is the whole video: no other reading exists
        if meta.frames_indices is not None and len(meta.frames_indices) != int(pixels.shape[0]):
            raise ValueError(
                f"`{name}`: video_metadata['frames_indices'] has {len(meta.frames_indices)} entries for "
                f"{int(pixels.shape[0])} frames; accepted: one index per frame"
            )
        frames = _channels_first(pixels, input_data_format, name)
    check_processor_pixels(frames, name)
    if convert_to_rgb is not None:
        frames = convert_to_rgb(frames)
    if device is not None:
        frames = frames.to(device)
    return frames, meta


# ------------------------------------------------------------- call arguments of the processor


def check_device(device) -> None:
    """``device`` as the fast processors take it, refused early when this machine does not have it."""
    if device is None:
        return
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device: {device!r} is not a device; accepted: 'cpu', 'cuda', 'cuda:N', ... ({err})") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available on this machine; accepted: 'cpu'")
    try:
        torch.empty(0, device=target)
    except (RuntimeError, AssertionError) as err:
        raise ValueError(f"device={device!r} is not available on this machine ({err}); accepted: 'cpu'") from None


def per_video(name: str, value, count: int) -> list:
    """A per-video argument: one value for every video, or a list with one entry per video."""
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(f"{name}: expected one value per video ({count}), got {len(value)}")
        return list(value)
    return [value] * count


def per_video_metadata(metadata, count: int) -> list:
    if metadata is None:
        return [None] * count
    if isinstance(metadata, (dict, VideoMetadata)):
        metadata = [metadata]
    flat = [m for entry in metadata for m in (entry if isinstance(entry, (list, tuple)) else [entry])]
    if len(flat) != count:
        raise ValueError(f"video_metadata: expected one entry per video ({count}), got {len(flat)}")
    return flat


def frame_rate_of_given_frames(known: float | None, stated, index: int) -> float | None:
    """qwen-vl-utils' per-video ``fps`` list (with sampling off): the rate of the frames as given."""
    if stated is None:
        return known
    if isinstance(stated, bool) or not isinstance(stated, (int, float)) or not 0 < stated < math.inf:
        raise ValueError(f"fps[{index}] must be a finite number > 0 (frames per second), got {stated!r}")
    if known is not None and not math.isclose(known, stated, rel_tol=1e-6):
        raise ValueError(f"fps[{index}]={stated} contradicts the video's own frame rate {known}; pass one of them")
    return float(stated)


def _is_frame(x) -> bool:
    # a 3-D array is a frame only with a channel axis ([H, W, C] or [C, H, W], C in 1/3/4); otherwise it is a
    # grayscale video [T, H, W] (pass [T, H, W, 1] to make a 1/3/4-frame grayscale video unambiguous)
    if _is_pil_image(x):
        return True
    if not hasattr(x, "ndim"):
        return False
    return x.ndim == 2 or (x.ndim == 3 and (x.shape[-1] in (1, 3, 4) or x.shape[0] in (1, 3, 4)))


def _is_video(x) -> bool:
    if isinstance(x, (str, os.PathLike, VideoClip)):
        return True
    if hasattr(x, "ndim") and not isinstance(x, (list, tuple)):
        return x.ndim in (3, 4)  # [T, H, W, C] / [T, C, H, W], [T, H, W] grayscale or one [H, W, C] frame
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(_is_frame(f) for f in x)


def flatten_videos(videos) -> list:
    """Videos as a flat list: one video, a list of videos, per-prompt lists of videos, or a 5-D batch."""
    if hasattr(videos, "ndim") and videos.ndim == 5:
        return list(videos)
    if _is_video(videos):
        return [videos]
    if isinstance(videos, (list, tuple)):
        return [v for item in videos for v in flatten_videos(item)]
    raise TypeError(
        "videos: expected a path, an array/tensor [T, H, W, C], a list of frames, a VideoClip, or lists of "
        f"those; got {type(videos).__name__}"
    )


def flatten_images(images) -> list:
    """Images as a flat list: one image, a list, per-prompt lists (``apply_chat_template`` nests), a 4-D batch."""
    if isinstance(images, (list, tuple)):
        return [i for item in images for i in flatten_images(item)]
    if hasattr(images, "ndim") and images.ndim == 4:
        return list(images)
    return [images]
