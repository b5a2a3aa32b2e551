"""Video files -> sampled frames: the ``VideoClip`` type, frame sampling and PyAV decoding.

* ``read_video``: decodes a file the way the backbone's video processor would, for the processor inputs
  (``video_input.prepare_video``). Files are decoded with PyAV: the same frames as
  ``transformers.video_utils.load_video(..., backend="pyav")`` for the same indices, except that display rotation
  (phone videos) is applied, as decord does. Frames come out uint8 RGB, channels-last ``[T, H, W, 3]``.
* ``VideoClip``, ``load_video``, ``sample_frame_indices``: the library's own uint8 RGB clips and uniform sampling
  rule, for code that has no backbone processor at hand (datasets, demos, the synthetic task).

Unknown frame rate of a library clip: raw arrays carry no fps. Then ``VideoClip.fps`` is ``None`` and
``timestamps`` use ``ASSUMED_FPS_WHEN_UNKNOWN`` (24.0), transformers' own default
(``VideoMetadata.sampled_fps``); ``to_metadata()`` still reports ``fps=None`` so the backbone applies its default.

Every public name here is also importable from ``video_input``.

This file ships to the Hub with ``trust_remote_code``: it imports only the
stdlib, torch and transformers at module level; PyAV is imported lazily when a file is decoded.
"""

from __future__ import annotations

import math
import operator
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from transformers.video_utils import VideoMetadata

__all__ = [
    "ASSUMED_FPS_WHEN_UNKNOWN",
    "VideoClip",
    "load_video",
    "read_video",
    "sample_frame_indices",
]

ASSUMED_FPS_WHEN_UNKNOWN = 24.0
"""Frame rate used for timestamps when the source fps is unknown (matches transformers)."""

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

