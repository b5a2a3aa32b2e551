"""Video and image inputs -> frames the backbone's own processor would see, plus one shared frame-index list.

Two layers:

* **Processor inputs** (``prepare_video``, ``read_video``): exactly the steps the backbone's video processor runs
  before resizing (decode, sample with its own ``sample_frames``, channel layout, ``convert_to_rgb``, device), so
  that scale 1 reproduces the native processor bit for bit. Files are decoded with PyAV: the same frames as
  ``transformers.video_utils.load_video(..., backend="pyav")`` for the same indices, except that display rotation
  (phone videos) is applied, as decord does. Pixels keep their dtype and range (uint8, or floats as given, e.g.
  qwen-vl-utils' 0..255 floats): the backbone rescales them itself.
* **Library clips** (``VideoClip``, ``load_video``, ``to_video_clip``, ``to_rgb_image``): uint8 RGB clips for code
  that has no backbone processor at hand (datasets, demos, the synthetic task).

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

Unknown frame rate of a library clip: raw arrays carry no fps. Then ``VideoClip.fps`` is ``None`` and
``timestamps`` use ``ASSUMED_FPS_WHEN_UNKNOWN`` (24.0), transformers' own default
(``VideoMetadata.sampled_fps``); ``to_metadata()`` still reports ``fps=None`` so the backbone applies its default.

This file ships to the Hub with ``trust_remote_code``: it imports only the
stdlib, torch and transformers at module level; PIL is never imported (PIL images are
detected through ``sys.modules``) and PyAV is imported lazily when a file is decoded.
"""

from __future__ import annotations

import math
import operator
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from transformers.image_utils import ChannelDimension, infer_channel_dimension_format
from transformers.video_utils import VideoMetadata

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

ASSUMED_FPS_WHEN_UNKNOWN = 24.0
"""Frame rate used for timestamps when the source fps is unknown (matches transformers)."""

_CHANNEL_SIZES = (1, 3, 4)
_ACCEPTED_DTYPES = "uint8 (0..255) or floating point in [0, 1]"
_AV_INSTALL_HINT = "Decoding video files needs PyAV: `pip install av`."


# --------------------------------------------------------------------------- clip


@dataclass
class VideoClip:
    """One sampled video: the ONE frame-index list every later stage (allocator, backbone, reports) uses.

    Attributes:
        frames: uint8 ``[T, H, W, 3]``, RGB, ``T >= 1``.
        frame_indices: index of each sampled frame in the source, strictly
            increasing, ``len == T``.
        timestamps: seconds of each sampled frame, ``index / fps`` (``fps``
            unknown -> ``index / ASSUMED_FPS_WHEN_UNKNOWN``), ``len == T``.
        fps: source frame rate, ``None`` if unknown (e.g. raw arrays).
        total_num_frames: frames in the source before sampling.
    """

    frames: torch.Tensor = field(repr=False)
    frame_indices: list[int]
    timestamps: list[float]
    fps: float | None
    total_num_frames: int

    def __post_init__(self) -> None:
        # Catch construction bugs here rather than as shape errors deep in a model.
        frames = self.frames
        if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8:
            raise TypeError("VideoClip.frames must be a uint8 torch.Tensor [T, H, W, 3]")
        if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape) < 1:
            raise ValueError(f"VideoClip.frames must have shape [T>=1, H>=1, W>=1, 3], got {list(frames.shape)}")
        num = frames.shape[0]
        if len(self.frame_indices) != num or len(self.timestamps) != num:
            raise ValueError(
                f"VideoClip: frame_indices ({len(self.frame_indices)}) and timestamps ({len(self.timestamps)}) "
                f"must both have one entry per frame (T={num})"
            )
        if self.total_num_frames < num:
            raise ValueError(f"VideoClip: total_num_frames={self.total_num_frames} is smaller than T={num}")

    @property
    def num_frames(self) -> int:
        """T, the number of sampled frames."""
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        """H in pixels."""
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        """W in pixels."""
        return int(self.frames.shape[2])

    @property
    def duration(self) -> float | None:
        """Source duration in seconds (``total_num_frames / fps``), ``None`` if fps is unknown."""
        return self.total_num_frames / self.fps if self.fps else None

    def to_metadata(self) -> VideoMetadata:
        """The clip as ``transformers.video_utils.VideoMetadata`` (``video_backend="resadapt"``).

        ``fps``/``duration`` stay ``None`` when unknown so the backbone's own
        default applies instead of our assumed rate.
        """
        return VideoMetadata(
            total_num_frames=self.total_num_frames,
            fps=self.fps,
            width=self.width,
            height=self.height,
            duration=self.duration,
            video_backend="resadapt",
            frames_indices=list(self.frame_indices),
        )


# ----------------------------------------------------------------- argument checks


def _check_num_frames(num_frames: Any) -> int:
    if isinstance(num_frames, bool):
        raise ValueError(f"`num_frames` must be an int >= 1 (or None for all frames), got {num_frames!r}")
    try:
        value = operator.index(num_frames)
    except TypeError:
        raise ValueError(
            f"`num_frames` must be an int >= 1 (or None for all frames), got {num_frames!r}"
        ) from None
    if value < 1:
        raise ValueError(f"`num_frames` must be an int >= 1 (or None for all frames), got {value}")
    return value


def _check_rate(name: str, value: Any) -> float:
    """A frame rate: a finite real number > 0 (bools rejected, they are ints by accident)."""
    if isinstance(value, bool):
        raise ValueError(f"`{name}` must be a finite number > 0 (frames per second), got {value!r}")
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a finite number > 0 (frames per second), got {value!r}") from None
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0 (frames per second), got {value!r}")
    return rate


def _check_sampling_args(num_frames: Any, fps: Any) -> tuple[int | None, float | None]:
    """Validate the (mutually exclusive) sampling knobs; returns them normalised."""
    if num_frames is not None and fps is not None:
        raise ValueError(
            f"pass either `num_frames` or `fps`, not both (got num_frames={num_frames!r}, fps={fps!r})"
        )
    return (
        None if num_frames is None else _check_num_frames(num_frames),
        None if fps is None else _check_rate("fps", fps),
    )


# ------------------------------------------------------------------------ sampling


def _uniform_indices(total: int, count: int) -> list[int]:
    """``count`` indices spread over ``0..total-1``, first and last included.

    Equals ``round(linspace(0, total - 1, count))`` with round-half-up, computed
    in exact integer arithmetic so the result never depends on float rounding.
    Requires ``1 <= count <= total``; then the step is >= 1, so the indices are
    strictly increasing (sorted and unique).
    """
    if count == 1:
        return [0]
    span, gaps = total - 1, count - 1
    return [(2 * i * span + gaps) // (2 * gaps) for i in range(count)]


def sample_frame_indices(
    total_num_frames: int,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    video_fps: float | None = None,
) -> list[int]:
    """Pick which source frames to keep. Deterministic; sorted; unique.

    Modes (``num_frames`` and ``fps`` are mutually exclusive):

    * ``num_frames=n``: ``n`` frames uniformly over the whole video,
      ``round(linspace(0, total - 1, n))`` (first and last frame included).
      ``n`` is capped at ``total_num_frames``: a short video yields all its
      frames, never duplicates or invented frames.
    * ``fps=r``: ``n = max(1, floor(total / video_fps * r))`` frames (also
      capped at ``total_num_frames``), spread like ``num_frames=n``. Needs
      ``video_fps``.
    * neither: all frames ``[0, 1, ..., total - 1]``.

    Args:
        total_num_frames: frames in the source, an int >= 1.
        num_frames: frames wanted, an int >= 1.
        fps: sampling rate in frames per second, finite and > 0.
        video_fps: the source frame rate, finite and > 0 (only used with ``fps``).

    Returns:
        list[int] of length ``n`` with values in ``[0, total_num_frames)``.
    """
    if isinstance(total_num_frames, bool) or not isinstance(total_num_frames, int) or total_num_frames < 1:
        raise ValueError(f"`total_num_frames` must be an int >= 1, got {total_num_frames!r}")
    num_frames, fps = _check_sampling_args(num_frames, fps)
    if fps is not None:
        if video_fps is None:
            raise ValueError(
                f"sampling with `fps`={fps} needs the source frame rate `video_fps`, which is unknown; "
                "pass `video_fps` or use `num_frames` instead"
            )
        video_fps = _check_rate("video_fps", video_fps)
        # The epsilon absorbs float noise such as 10 / 7 * 0.7 == 0.9999999999999999.
        num_frames = max(1, math.floor(total_num_frames / video_fps * fps + 1e-6))
    if num_frames is None:
        return list(range(total_num_frames))
    return _uniform_indices(total_num_frames, min(num_frames, total_num_frames))


def _timestamps(frame_indices: Sequence[int], fps: float | None) -> list[float]:
    rate = fps if fps else ASSUMED_FPS_WHEN_UNKNOWN
    return [index / rate for index in frame_indices]


# ------------------------------------------------------------------------ decoding


def _import_av():
    try:
        import av
    except ImportError as err:
        raise ImportError(_AV_INSTALL_HINT) from err
    return av


def _stream_fps(stream: Any) -> float | None:
    """Source frame rate from the container (average, else FFmpeg's guess); ``None`` if absent."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return None


def _probe(av: Any, path: str) -> tuple[float | None, int]:
    """Open once to read fps and a frame-count estimate.

    ``stream.frames`` comes from the container index and is 0 for many
    formats (mkv/webm, raw streams); then the packets are counted, which only
    demuxes (no decoding). Either number is just a first guess: the decode
    pass counts the frames that really decode.

    Returns:
        (fps or None, estimated frame count, possibly 0)
    """
    with av.open(path, mode="r") as container:
        if not container.streams.video:
            raise ValueError(f"video {path!r}: could not decode: the file has no video stream")
        stream = container.streams.video[0]
        fps = _stream_fps(stream)
        if stream.frames > 0:
            return fps, int(stream.frames)
        # Flush packets have size 0 and carry no frame.
        return fps, sum(1 for packet in container.demux(stream) if packet.size)


def _upright(array: Any, rotation: int) -> torch.Tensor:
    """``[H, W, 3]`` frame as stored -> as displayed: ``rotation`` is PyAV's ``VideoFrame.rotation``, the display
    matrix's counter-clockwise angle in degrees (phone videos store 90/-90/180 and leave turning to the player)."""
    frame = torch.from_numpy(array)
    turns = round(rotation / 90) % 4
    return torch.rot90(frame, turns, dims=(0, 1)).contiguous() if turns else frame


def _decode_selected(av: Any, path: str, wanted: set[int]) -> tuple[dict[int, torch.Tensor], int]:
    """Decode the whole stream in order, converting only frames in ``wanted``.

    Only the selected frames are kept, so memory is O(len(wanted)), not
    O(video). Frames are converted exactly as transformers' ``pyav`` backend
    converts them (``to_ndarray(format="rgb24")``), then turned upright by the
    display rotation. Later frames are resized to the first frame's size should
    the stream change resolution mid-way (rare, but it would break stacking).

    Returns:
        ({index: uint8 [H, W, 3]}, number of frames decoded)
    """
    kept: dict[int, torch.Tensor] = {}
    count = 0
    size: tuple[int, int] | None = None
    with av.open(path, mode="r") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame+slice threads: decode is the bottleneck; output is bit-identical
        for frame in container.decode(stream):
            if size is None:
                size = (frame.width, frame.height)
            if count in wanted:
                same_size = (frame.width, frame.height) == size
                array = (
                    frame.to_ndarray(format="rgb24")
                    if same_size
                    else frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
                )
                kept[count] = _upright(array, frame.rotation)
            count += 1
    return kept, count


IndexFunction = Callable[..., Any]
"""``fn(metadata=VideoMetadata) -> indices``: transformers' ``sample_indices_fn`` convention (e.g. a partial of
the backbone video processor's ``sample_frames``)."""


def _indices_from(sample_indices_fn: IndexFunction | None, metadata: VideoMetadata, source: str) -> list[int]:
    """Frame indices for ``metadata``'s video: all frames without a function, else the function's (validated)."""
    total = metadata.total_num_frames
    if sample_indices_fn is None:
        return list(range(total))
    raw = sample_indices_fn(metadata=metadata)
    indices = [int(i) for i in (raw.tolist() if hasattr(raw, "tolist") else raw)]
    if not indices:
        raise ValueError(f"{source}: frame sampling selected no frame (the video has {total})")
    bad = [i for i in indices if not 0 <= i < total]
    if bad:
        raise ValueError(
            f"{source}: frame sampling asked for frames {bad[:5]} outside [0, {total - 1}] (the video has {total})"
        )
    return indices


def read_video(
    path: str | os.PathLike, sample_indices_fn: IndexFunction | None = None
) -> tuple[torch.Tensor, VideoMetadata]:
    """Decode a video file with PyAV the way transformers' ``pyav`` loader does, plus display rotation.

    The frame count and rate come from the container (``stream.frames``, ``average_rate``) as in
    ``transformers.video_utils.read_video_pyav``; when the decoder disagrees with the container's count (mkv/webm
    store none, truncated files list more), the decoder's count wins and the indices are chosen again.

    Args:
        path: video file (anything FFmpeg reads).
        sample_indices_fn: ``fn(metadata=VideoMetadata) -> indices`` (e.g. the backbone video processor's
            ``sample_frames`` with its arguments bound); None keeps every frame. Indices may repeat (a frame is
            then returned several times, as transformers' array path does).

    Returns:
        (frames uint8 ``[T, H, W, 3]`` upright, ``VideoMetadata`` with ``total_num_frames``, ``fps``, ``duration``,
        ``width``/``height`` as displayed, ``frames_indices``, ``video_backend="pyav"``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a decodable video (corrupt, truncated, no video stream, zero frames; the PyAV error is
            chained), or the sampling function picks frames outside the video.
        ImportError: PyAV is not installed.
    """
    path = os.fsdecode(os.fspath(path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"video {path!r}: file not found")
    if os.path.isdir(path):
        raise ValueError(f"video {path!r}: is a directory, expected a video file")
    av = _import_av()
    source = f"video {path!r}"

    def metadata_for(total: int) -> VideoMetadata:
        return VideoMetadata(
            total_num_frames=total, fps=video_fps, duration=total / video_fps if video_fps else None,
            video_backend="pyav",
        )

    try:
        video_fps, estimate = _probe(av, path)
        metadata = metadata_for(estimate)
        wanted = _indices_from(sample_indices_fn, metadata, source) if estimate else []
        kept, total = _decode_selected(av, path, set(wanted))
        if total == 0:
            raise ValueError(f"{source}: could not decode any frame")
        if total < estimate:
            # Decoders skip what they cannot read instead of failing; say so rather than stay silent.
            warnings.warn(
                f"{source}: the container lists {estimate} frames but only {total} decoded; "
                "the file may be truncated or corrupt",
                stacklevel=3,
            )
        if total != estimate:
            # The index lied (edit lists, truncation, missing count): sample again on the true length.
            metadata = metadata_for(total)
            wanted = _indices_from(sample_indices_fn, metadata, source)
            if not all(index in kept for index in wanted):
                kept, recount = _decode_selected(av, path, set(wanted))
                if recount != total:
                    raise ValueError(f"{source}: could not decode reliably: {total} then {recount} frames")
    except av.error.FFmpegError as err:
        raise ValueError(f"{source}: could not decode: {err}") from err

    frames = torch.stack([kept[index] for index in wanted])
    metadata.frames_indices = list(wanted)
    metadata.height, metadata.width = int(frames.shape[1]), int(frames.shape[2])
    return frames, metadata


def load_video(
    path: str | os.PathLike,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
) -> VideoClip:
    """Decode a video file with PyAV into a library ``VideoClip``, keeping only uniformly sampled frames.

    Sampling follows ``sample_frame_indices`` (``round(linspace)``, first and last frame included) on the number
    of frames that actually decode. This is the library's own rule for code without a backbone processor; a path
    given to ``ResAdaptProcessor`` is sampled by the backbone's own ``sample_frames`` instead. Display rotation is
    applied.

    Args:
        path: video file (anything FFmpeg reads: mp4, mkv, webm, avi, ...).
        num_frames: frames to keep, int >= 1; capped at the video length.
        fps: frames per second to keep, finite > 0; needs the file's frame rate.

    Returns:
        ``VideoClip`` with frames uint8 ``[T, H, W, 3]`` and
        ``timestamps = frame_indices / fps``.

    Warns:
        UserWarning: fewer frames decode than the container lists (typically
            a truncated file whose intact part still decodes).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: bad sampling arguments, or the file is not a decodable
            video (corrupt, truncated, no video stream, zero frames); the
            PyAV error is chained as ``__cause__``.
        ImportError: PyAV is not installed.
    """
    num_frames, fps = _check_sampling_args(num_frames, fps)

    def uniform(metadata: VideoMetadata) -> list[int]:
        if fps is not None and metadata.fps is None:
            raise ValueError(
                f"video {os.fspath(path)!r}: cannot sample with `fps`={fps}: the file has no frame rate; "
                "use `num_frames`"
            )
        return sample_frame_indices(metadata.total_num_frames, num_frames=num_frames, fps=fps, video_fps=metadata.fps)

    frames, metadata = read_video(path, uniform)
    return VideoClip(
        frames=frames,
        frame_indices=list(metadata.frames_indices),
        timestamps=_timestamps(metadata.frames_indices, metadata.fps),
        fps=metadata.fps,
        total_num_frames=metadata.total_num_frames,
    )


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
        if pixels.shape[-1] not in _CHANNEL_SIZES:
            if pixels.shape[0] not in _CHANNEL_SIZES:
                raise ValueError(
                    f"`{name}`: cannot find the channel axis in shape {list(pixels.shape)}; accepted: "
                    "[H, W, C] or [C, H, W] with C in (1, 3, 4), or [H, W] grayscale"
                )
            pixels = pixels.permute(1, 2, 0)
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
        if pixels.shape[-1] not in _CHANNEL_SIZES:
            if pixels.shape[1] not in _CHANNEL_SIZES:
                raise ValueError(
                    f"`videos`: cannot find the channel axis in shape {list(pixels.shape)}; accepted: {accepted}"
                )
            pixels = pixels.permute(0, 2, 3, 1)
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
