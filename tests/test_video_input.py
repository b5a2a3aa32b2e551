"""Tests for processing/video_input.py (imported as resadapt_hf.processing.video_input)."""

from __future__ import annotations

import ast
import math
import sys
import warnings
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resadapt_hf.processing import video_convert, video_decode, video_input
from resadapt_hf.processing.video_input import (
    ASSUMED_FPS_WHEN_UNKNOWN,
    VideoClip,
    load_video,
    prepare_video,
    read_video,
    sample_frame_indices,
    to_rgb_image,
    to_video_clip,
)
from resadapt_hf.sample_clips import make_demo_frames, write_demo_clip

DEMO_T, DEMO_H, DEMO_W, DEMO_FPS = 16, 120, 160, 8


# ----------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def demo_mp4(clip_dir) -> Path:
    return write_demo_clip(clip_dir / "demo.mp4", num_frames=DEMO_T, height=DEMO_H, width=DEMO_W, fps=DEMO_FPS)


@pytest.fixture(scope="module")
def demo_full(demo_mp4) -> VideoClip:
    return load_video(demo_mp4)


def _rng_frames(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


# ----------------------------------------------------------------------- sampling


def _reference_uniform(total: int, count: int) -> list[int]:
    """round-half-up(linspace(0, total - 1, count)) in float, as an independent oracle."""
    if count == 1:
        return [0]
    return [math.floor(x + 0.5) for x in np.linspace(0, total - 1, count)]


def test_sample_num_frames_uniform():
    assert sample_frame_indices(16, num_frames=4) == [0, 5, 10, 15]
    assert sample_frame_indices(16, num_frames=1) == [0]
    assert sample_frame_indices(16, num_frames=2) == [0, 15]
    assert sample_frame_indices(6, num_frames=3) == [0, 3, 5]  # 2.5 rounds half up


def test_sample_num_frames_capped_at_total():
    assert sample_frame_indices(5, num_frames=100) == [0, 1, 2, 3, 4]
    assert sample_frame_indices(1, num_frames=8) == [0]


@pytest.mark.parametrize("total", [1, 2, 3, 7, 16, 31, 100, 997])
def test_sample_properties(total):
    for count in range(1, min(total, 40) + 1):
        idx = sample_frame_indices(total, num_frames=count)
        assert len(idx) == count
        assert idx == sorted(set(idx))
        assert idx[0] == 0 and 0 <= idx[-1] <= total - 1
        if count > 1:
            assert idx[-1] == total - 1
        # Float oracle may disagree only on exact .5 ties that float linspace misses.
        ref = _reference_uniform(total, count)
        assert max(abs(a - b) for a, b in zip(idx, ref)) <= 1


def test_sample_deterministic():
    assert sample_frame_indices(1000, num_frames=37) == sample_frame_indices(1000, num_frames=37)


def test_sample_fps():
    # 16 frames at 8 fps = 2 s; 2 fps -> 4 frames.
    assert sample_frame_indices(16, fps=2, video_fps=8) == [0, 5, 10, 15]
    assert sample_frame_indices(16, fps=8, video_fps=8) == list(range(16))
    assert sample_frame_indices(16, fps=30, video_fps=8) == list(range(16))  # capped
    assert sample_frame_indices(16, fps=0.01, video_fps=8) == [0]  # at least one
    # float noise: 30 / 7 * 0.7 == 2.9999999999999996 must still mean 3 frames
    assert len(sample_frame_indices(30, fps=0.7, video_fps=7)) == 3


def test_sample_all_by_default():
    assert sample_frame_indices(7) == list(range(7))


def test_sample_errors():
    with pytest.raises(ValueError, match="num_frames.*fps"):
        sample_frame_indices(16, num_frames=4, fps=2, video_fps=8)
    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(ValueError, match=r"`num_frames` must be an int >= 1"):
            sample_frame_indices(16, num_frames=bad)
    for bad in (0, -2.0, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match=r"`fps` must be a finite number > 0"):
            sample_frame_indices(16, fps=bad, video_fps=8)
    with pytest.raises(ValueError, match="video_fps"):
        sample_frame_indices(16, fps=2)
    with pytest.raises(ValueError, match="video_fps"):
        sample_frame_indices(16, fps=2, video_fps=float("nan"))
    for bad in (0, -3, 2.0):
        with pytest.raises(ValueError, match="total_num_frames"):
            sample_frame_indices(bad)


# ---------------------------------------------------------------------- load_video


def test_load_video_full(demo_full):
    clip = demo_full
    assert clip.frames.dtype == torch.uint8
    assert tuple(clip.frames.shape) == (DEMO_T, DEMO_H, DEMO_W, 3)
    assert (clip.num_frames, clip.height, clip.width) == (DEMO_T, DEMO_H, DEMO_W)
    assert clip.frame_indices == list(range(DEMO_T))
    assert clip.total_num_frames == DEMO_T
    assert clip.fps == pytest.approx(DEMO_FPS)
    assert clip.timestamps == pytest.approx([i / DEMO_FPS for i in range(DEMO_T)])
    assert clip.duration == pytest.approx(DEMO_T / DEMO_FPS)
    # Lossy H.264, but it must be the same picture, in RGB order (the moving square is red).
    reference = make_demo_frames(num_frames=DEMO_T, height=DEMO_H, width=DEMO_W)
    error = np.abs(clip.frames.numpy().astype(np.int16) - reference).mean()
    assert error < 6
    red_pixels = clip.frames[0].reshape(-1, 3).float()
    assert ((red_pixels[:, 0] > 180) & (red_pixels[:, 1] < 80) & (red_pixels[:, 2] < 80)).sum() > 50


@pytest.mark.parametrize("num_frames", [1, 5, 8, 16, 100])
def test_load_video_num_frames(demo_mp4, demo_full, num_frames):
    clip = load_video(demo_mp4, num_frames=num_frames)
    expected = sample_frame_indices(DEMO_T, num_frames=num_frames)
    assert clip.frame_indices == expected
    assert clip.num_frames == len(expected)
    assert clip.timestamps == pytest.approx([i / DEMO_FPS for i in expected])
    assert clip.total_num_frames == DEMO_T
    assert torch.equal(clip.frames, demo_full.frames[expected])  # same decoded pixels


@pytest.mark.parametrize("fps", [1, 2, 2.5, 8, 30])
def test_load_video_fps(demo_mp4, demo_full, fps):
    clip = load_video(demo_mp4, fps=fps)
    expected = sample_frame_indices(DEMO_T, fps=fps, video_fps=DEMO_FPS)
    assert clip.frame_indices == expected
    assert torch.equal(clip.frames, demo_full.frames[expected])


def test_load_video_pathlike_and_str(demo_mp4):
    assert load_video(str(demo_mp4), num_frames=3).frame_indices == load_video(demo_mp4, num_frames=3).frame_indices


def test_load_video_one_frame(clip_dir):
    path = write_demo_clip(clip_dir / "one.mp4", num_frames=1)
    clip = load_video(path)
    assert clip.num_frames == 1 and clip.frame_indices == [0] and clip.timestamps == [0.0]
    assert clip.total_num_frames == 1
    assert load_video(path, num_frames=4).frame_indices == [0]
    assert load_video(path, fps=1).frame_indices == [0]


def test_load_video_mkv_without_frame_count(clip_dir, demo_full):
    # Matroska stores no frame count (stream.frames == 0): counted by demuxing.
    path = write_demo_clip(clip_dir / "demo.mkv", num_frames=DEMO_T, height=DEMO_H, width=DEMO_W, fps=DEMO_FPS)
    clip = load_video(path, num_frames=5)
    assert clip.total_num_frames == DEMO_T
    assert clip.frame_indices == sample_frame_indices(DEMO_T, num_frames=5)
    assert clip.fps == pytest.approx(DEMO_FPS)


@pytest.mark.parametrize("wrong_estimate", [0, 10, 25])
def test_load_video_wrong_container_count(monkeypatch, demo_mp4, demo_full, wrong_estimate):
    # A container index that lies must not change the result: the decoder's count wins.
    real_probe = video_decode._probe
    monkeypatch.setattr(video_decode, "_probe", lambda av, path: (real_probe(av, path)[0], wrong_estimate))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clip = load_video(demo_mp4, num_frames=5)
    # Fewer decoded frames than listed smells like truncation and is reported.
    assert any("truncated" in str(w.message) for w in caught) == (wrong_estimate > DEMO_T)
    expected = sample_frame_indices(DEMO_T, num_frames=5)
    assert clip.total_num_frames == DEMO_T
    assert clip.frame_indices == expected
    assert torch.equal(clip.frames, demo_full.frames[expected])


def test_decode_keeps_only_selected_frames(demo_mp4):
    # Memory bound: only the sampled frames are converted and held.
    import av

    kept, count = video_decode._decode_selected(av, str(demo_mp4), {1, 3})
    assert count == DEMO_T and sorted(kept) == [1, 3]


def _assert_decode_error(path):
    with pytest.raises(ValueError, match="could not decode") as info:
        load_video(path)
    assert str(path) in str(info.value)
    return info


def test_load_video_random_bytes(tmp_path):
    path = tmp_path / "random.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    info = _assert_decode_error(path)
    assert info.value.__cause__ is not None  # PyAV's error is chained


def test_load_video_truncated_header(tmp_path, demo_mp4):
    path = tmp_path / "truncated.mp4"
    path.write_bytes(demo_mp4.read_bytes()[:300])
    _assert_decode_error(path)


def test_load_video_truncated_data(tmp_path, demo_mp4):
    # moov first (faststart), then cut the frame data: opens fine, fails while decoding.
    import av

    faststart = tmp_path / "faststart.mp4"
    with av.open(str(demo_mp4)) as src, av.open(str(faststart), "w", options={"movflags": "faststart"}) as dst:
        in_stream = src.streams.video[0]
        out_stream = dst.add_stream_from_template(in_stream)
        for packet in src.demux(in_stream):
            if packet.dts is not None:
                packet.stream = out_stream
                dst.mux(packet)
    data = faststart.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: int(len(data) * 0.6)])
    # FFmpeg either errors out or (threaded decode) returns the intact prefix; both are handled.
    try:
        with pytest.warns(UserWarning, match="truncated"):
            clip = load_video(path)
    except ValueError as err:
        assert "could not decode" in str(err) and str(path) in str(err)
    else:  # the partial clip must describe what really decoded
        assert 1 <= clip.total_num_frames < DEMO_T
        assert clip.frame_indices == list(range(clip.total_num_frames))


def test_load_video_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    _assert_decode_error(path)


def test_load_video_audio_only(tmp_path):
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x00\x01" * 800)
    with pytest.raises(ValueError, match="no video stream"):
        load_video(path)


def test_load_video_missing_path(tmp_path):
    path = tmp_path / "does_not_exist.mp4"
    with pytest.raises(FileNotFoundError, match="does_not_exist.mp4"):
        load_video(path)


def test_load_video_directory(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        load_video(tmp_path)


def test_load_video_bad_sampling_args(demo_mp4):
    with pytest.raises(ValueError, match="num_frames.*fps"):
        load_video(demo_mp4, num_frames=2, fps=2)
    with pytest.raises(ValueError, match="num_frames"):
        load_video(demo_mp4, num_frames=0)
    with pytest.raises(ValueError, match="fps"):
        load_video(demo_mp4, fps=float("nan"))


def test_load_video_without_pyav(monkeypatch, demo_mp4):
    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` fail
    with pytest.raises(ImportError, match="pip install av"):
        load_video(demo_mp4)


# ------------------------------------------------------------------ to_video_clip


def test_to_video_clip_path(demo_mp4, demo_full):
    clip = to_video_clip(str(demo_mp4), num_frames=4)
    assert clip.frame_indices == [0, 5, 10, 15]
    assert torch.equal(clip.frames, demo_full.frames[[0, 5, 10, 15]])
    with pytest.raises(ValueError, match="video_fps"):
        to_video_clip(demo_mp4, video_fps=30)


def test_to_video_clip_videoclip_passthrough_and_resample(demo_full):
    assert to_video_clip(demo_full) is demo_full
    sub = to_video_clip(demo_full, num_frames=4)
    assert sub.frame_indices == [0, 5, 10, 15]
    assert sub.timestamps == pytest.approx([0, 5 / 8, 10 / 8, 15 / 8])
    assert torch.equal(sub.frames, demo_full.frames[[0, 5, 10, 15]])
    assert sub.total_num_frames == DEMO_T and sub.fps == demo_full.fps
    by_fps = to_video_clip(demo_full, fps=2)
    assert by_fps.frame_indices == sample_frame_indices(DEMO_T, fps=2, video_fps=DEMO_FPS)
    # Re-sampling a sub-clip picks from its frames and keeps source indices.
    assert to_video_clip(sub, num_frames=2).frame_indices == [0, 15]
    with pytest.raises(ValueError, match="frame_indices"):
        to_video_clip(demo_full, frame_indices=[0])


@pytest.mark.parametrize("as_tensor", [False, True])
def test_to_video_clip_channels_last(as_tensor):
    frames = _rng_frames((5, 6, 7, 3))
    video = torch.from_numpy(frames) if as_tensor else frames
    clip = to_video_clip(video)
    assert clip.frames.dtype == torch.uint8 and tuple(clip.frames.shape) == (5, 6, 7, 3)
    assert np.array_equal(clip.frames.numpy(), frames)
    assert clip.frame_indices == [0, 1, 2, 3, 4]
    assert clip.fps is None
    assert clip.timestamps == pytest.approx([i / ASSUMED_FPS_WHEN_UNKNOWN for i in range(5)])
    assert clip.total_num_frames == 5


def test_to_video_clip_channels_first():
    frames = _rng_frames((4, 3, 10, 12))
    clip = to_video_clip(torch.from_numpy(frames))
    assert tuple(clip.frames.shape) == (4, 10, 12, 3)
    assert np.array_equal(clip.frames.numpy(), frames.transpose(0, 2, 3, 1))
    assert clip.frames.is_contiguous()


def test_to_video_clip_grayscale():
    gray = _rng_frames((3, 8, 9))
    for video in (gray, gray[..., None], gray[:, None]):  # [T,H,W], [T,H,W,1], [T,1,H,W]
        clip = to_video_clip(video)
        assert tuple(clip.frames.shape) == (3, 8, 9, 3)
        for c in range(3):
            assert np.array_equal(clip.frames[..., c].numpy(), gray)


def test_to_video_clip_rgba_drops_alpha():
    rgba = _rng_frames((2, 5, 6, 4))
    clip = to_video_clip(rgba)
    assert np.array_equal(clip.frames.numpy(), rgba[..., :3])
    clip_first = to_video_clip(np.ascontiguousarray(rgba.transpose(0, 3, 1, 2)))
    assert np.array_equal(clip_first.frames.numpy(), rgba[..., :3])


def test_to_video_clip_float_unit_range():
    values = np.array([0.0, 0.25, 0.5, 1.0, 1 / 255, 254.6 / 255], dtype=np.float32)
    video = np.broadcast_to(values[None, :, None, None], (2, 6, 4, 3)).copy()
    clip = to_video_clip(video)
    expected = np.round(values.astype(np.float64) * 255).astype(np.uint8)
    assert np.array_equal(clip.frames[0, :, 0, 0].numpy(), expected)
    half = to_video_clip(torch.from_numpy(video).half())
    assert torch.equal(half.frames, clip.frames)
    double = to_video_clip(video.astype(np.float64))
    assert torch.equal(double.frames, clip.frames)


@pytest.mark.parametrize("bad", [1.5, -0.1, 255.0])
def test_to_video_clip_float_out_of_range(bad):
    video = np.zeros((2, 4, 4, 3), dtype=np.float32)
    video[1, 2, 2, 1] = bad
    with pytest.raises(ValueError, match=r"`videos`.*\[0, 1\]"):
        to_video_clip(video)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_to_video_clip_float_non_finite(bad):
    video = torch.zeros(2, 4, 4, 3)
    video[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match="`videos`.*NaN or inf"):
        to_video_clip(video)


@pytest.mark.parametrize("dtype", [np.int64, np.int16, np.uint16, np.bool_, np.int8])
def test_to_video_clip_bad_dtype(dtype):
    with pytest.raises(TypeError, match="`videos`.*uint8"):
        to_video_clip(np.zeros((2, 4, 4, 3), dtype=dtype))


def test_to_video_clip_object_dtype():
    video = np.empty((2, 4, 4, 3), dtype=object)
    with pytest.raises(TypeError, match="`videos`.*uint8"):
        to_video_clip(video)


def test_to_video_clip_zero_frames():
    with pytest.raises(ValueError, match="zero frames"):
        to_video_clip(np.zeros((0, 4, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="zero frames"):
        to_video_clip([])


def test_to_video_clip_zero_size():
    with pytest.raises(ValueError, match="height and width"):
        to_video_clip(np.zeros((2, 0, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="height and width"):
        to_video_clip([np.zeros((4, 0, 3), dtype=np.uint8)])


def test_to_video_clip_bad_ndim():
    for shape in [(4, 4), (1, 2, 4, 4, 3), (5,)]:
        with pytest.raises(ValueError, match=r"`videos`.*\[T, H, W, C\]"):
            to_video_clip(np.zeros(shape, dtype=np.uint8))
    with pytest.raises(ValueError, match="channel axis"):
        to_video_clip(np.zeros((2, 5, 6, 7), dtype=np.uint8))
    with pytest.raises(ValueError, match="single"):  # one [H, W, 3] image passed as a video
        to_video_clip(np.zeros((8, 9, 3), dtype=np.uint8))


def test_to_video_clip_list_of_frames():
    frames = _rng_frames((3, 6, 8, 3))
    pil = [Image.fromarray(f) for f in frames]
    for video in (list(frames), tuple(frames), pil, [torch.from_numpy(f).permute(2, 0, 1) for f in frames]):
        clip = to_video_clip(video)
        assert np.array_equal(clip.frames.numpy(), frames)
        assert clip.frame_indices == [0, 1, 2]
    rgba = [Image.fromarray(np.dstack([f, np.full(f.shape[:2], 7, np.uint8)]), "RGBA") for f in frames]
    assert np.array_equal(to_video_clip(rgba).frames.numpy(), frames)
    gray = [Image.fromarray(f[..., 0], "L") for f in frames]
    assert np.array_equal(to_video_clip(gray).frames[..., 2].numpy(), frames[..., 0])
    palette = [Image.fromarray(f).convert("P") for f in frames]
    assert tuple(to_video_clip(palette).frames.shape) == (3, 6, 8, 3)


def test_to_video_clip_list_different_sizes():
    frames = [np.zeros((6, 8, 3), np.uint8), np.zeros((6, 8, 3), np.uint8), np.zeros((5, 8, 3), np.uint8)]
    with pytest.raises(ValueError, match=r"`videos`.*5x8.*6x8"):
        to_video_clip(frames)


def test_to_video_clip_list_bad_element():
    with pytest.raises(TypeError, match=r"videos\[1\]"):
        to_video_clip([np.zeros((4, 4, 3), np.uint8), "frame.png"])
    with pytest.raises(TypeError, match=r"videos\[0\].*uint8"):
        to_video_clip([np.zeros((4, 4, 3), np.int64)])


def test_to_video_clip_unsupported_types():
    with pytest.raises(TypeError, match="wrap it in a list"):
        to_video_clip(Image.new("RGB", (4, 4)))
    with pytest.raises(TypeError, match="`videos`"):
        to_video_clip(42)


def test_to_video_clip_one_frame():
    clip = to_video_clip(_rng_frames((1, 4, 5, 3)), num_frames=8, video_fps=30)
    assert clip.frame_indices == [0] and clip.timestamps == [0.0] and clip.num_frames == 1


def test_to_video_clip_video_fps_and_sampling():
    frames = _rng_frames((16, 4, 4, 3))
    clip = to_video_clip(frames, video_fps=8)
    assert clip.fps == 8.0 and clip.timestamps == pytest.approx([i / 8 for i in range(16)])
    by_fps = to_video_clip(frames, fps=2, video_fps=8)
    assert by_fps.frame_indices == sample_frame_indices(16, fps=2, video_fps=8)
    assert np.array_equal(by_fps.frames.numpy(), frames[by_fps.frame_indices])
    by_count = to_video_clip(frames, num_frames=5)
    assert by_count.frame_indices == sample_frame_indices(16, num_frames=5)
    with pytest.raises(ValueError, match="frame rate is unknown"):
        to_video_clip(frames, fps=2)
    with pytest.raises(ValueError, match="video_fps"):
        to_video_clip(frames, video_fps=0)
    with pytest.raises(ValueError, match="num_frames.*fps"):
        to_video_clip(frames, num_frames=2, fps=2, video_fps=8)


def test_to_video_clip_frame_indices():
    frames = _rng_frames((3, 4, 4, 3))
    clip = to_video_clip(frames, frame_indices=[10, 20, 30], video_fps=10)
    assert clip.frame_indices == [10, 20, 30]
    assert clip.timestamps == pytest.approx([1.0, 2.0, 3.0])
    assert clip.total_num_frames == 31
    assert to_video_clip(frames, frame_indices=[10, 20, 30], num_frames=2).frame_indices == [10, 30]
    with pytest.raises(ValueError, match="frame_indices"):
        to_video_clip(frames, frame_indices=[0, 1])
    with pytest.raises(ValueError, match="frame_indices"):
        to_video_clip(frames, frame_indices=[0, 2, 2])
    with pytest.raises(ValueError, match="frame_indices"):
        to_video_clip(frames, frame_indices=[-1, 0, 1])


def test_to_video_clip_negative_strides():
    frames = _rng_frames((4, 5, 6, 3))
    reversed_frames = frames[::-1]
    assert np.array_equal(to_video_clip(reversed_frames).frames.numpy(), reversed_frames)


def test_to_video_clip_rgba_output_contiguous():
    rgba = torch.from_numpy(_rng_frames((2, 3, 3, 4)))
    clip = to_video_clip(rgba)
    assert clip.frames.is_contiguous() and clip.frames.shape[-1] == 3


def test_to_video_clip_read_only_array():
    frame = _rng_frames((1, 4, 5, 3))
    video = np.broadcast_to(frame, (3, 4, 5, 3))  # read-only view with a zero stride
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when wrapping non-writable arrays
        clip = to_video_clip(video)
    assert np.array_equal(clip.frames.numpy(), video)


# -------------------------------------------------------------------- to_rgb_image


def test_to_rgb_image_inputs():
    image = _rng_frames((6, 7, 3))
    candidates = [
        image,
        torch.from_numpy(image),
        torch.from_numpy(image).permute(2, 0, 1),
        Image.fromarray(image),
        Image.fromarray(image).convert("RGBA"),
        image.astype(np.float32) / 255.0,
    ]
    for candidate in candidates:
        out = to_rgb_image(candidate)
        assert out.dtype == torch.uint8 and tuple(out.shape) == (6, 7, 3)
        assert np.array_equal(out.numpy(), image)
    gray = image[..., 0]
    for candidate in (gray, gray[..., None], gray[None], Image.fromarray(gray, "L")):
        out = to_rgb_image(candidate)
        assert tuple(out.shape) == (6, 7, 3) and np.array_equal(out[..., 1].numpy(), gray)


def test_to_rgb_image_errors():
    with pytest.raises(TypeError, match="`images`.*uint8"):
        to_rgb_image(np.zeros((4, 4, 3), np.int64))
    with pytest.raises(ValueError, match=r"`images`.*\[H, W, C\]"):
        to_rgb_image(np.zeros((1, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="`images`.*channel axis"):
        to_rgb_image(np.zeros((5, 6, 7), np.uint8))
    with pytest.raises(ValueError, match=r"`images`.*\[0, 1\]"):
        to_rgb_image(np.full((4, 4, 3), 2.0, np.float32))
    with pytest.raises(ValueError, match="`images`.*NaN"):
        to_rgb_image(np.full((4, 4, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="`images`.*height and width"):
        to_rgb_image(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(TypeError, match="`images`"):
        to_rgb_image("image.png")


# ------------------------------------------------------------------ clip & metadata


def test_to_metadata(demo_mp4):
    clip = load_video(demo_mp4, num_frames=4)
    meta = clip.to_metadata()
    assert meta.total_num_frames == DEMO_T
    assert meta.fps == pytest.approx(DEMO_FPS)
    assert (meta.width, meta.height) == (DEMO_W, DEMO_H)
    assert meta.duration == pytest.approx(DEMO_T / DEMO_FPS)
    assert meta.video_backend == "resadapt"
    assert meta.frames_indices == [0, 5, 10, 15]
    assert meta.timestamps == pytest.approx(clip.timestamps)
    unknown = to_video_clip(_rng_frames((2, 4, 4, 3))).to_metadata()
    assert unknown.fps is None and unknown.duration is None


def test_videoclip_validation():
    frames = torch.zeros(2, 4, 4, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="frame_indices"):
        VideoClip(frames=frames, frame_indices=[0], timestamps=[0.0], fps=None, total_num_frames=2)
    with pytest.raises(TypeError, match="uint8"):
        VideoClip(frames=frames.float(), frame_indices=[0, 1], timestamps=[0.0, 1.0], fps=None, total_num_frames=2)
    with pytest.raises(ValueError, match="shape"):
        VideoClip(frames=frames[..., :2], frame_indices=[0, 1], timestamps=[0.0, 1.0], fps=None, total_num_frames=2)


# --------------------------------------------------------------------- demo clips


def test_make_demo_frames_deterministic_and_varied():
    a = make_demo_frames(num_frames=16, height=120, width=160, seed=0)
    assert a.dtype == np.uint8 and a.shape == (16, 120, 160, 3)
    assert np.array_equal(a, make_demo_frames(num_frames=16, height=120, width=160, seed=0))
    assert not np.array_equal(a, make_demo_frames(num_frames=16, height=120, width=160, seed=1))
    detail = np.abs(np.diff(a.astype(np.float32), axis=2)).mean(axis=(1, 2, 3))
    flat, texture, glyphs = detail[:4], detail[4:8], detail[8:12]
    assert flat.max() * 10 < texture.min() and flat.max() * 10 < glyphs.min()
    # The object moves: frames differ even inside the static segments.
    assert not np.array_equal(a[0], a[1])


def test_write_demo_clip_small(clip_dir, demo_mp4):
    assert demo_mp4.stat().st_size < 20_000
    with pytest.raises(ValueError, match="even"):
        write_demo_clip(clip_dir / "odd.mp4", height=121)


# ------------------------------------------------------------- processor inputs


def test_read_video_gives_transformers_pyav_frames(demo_mp4):
    from transformers.video_utils import load_video as transformers_load_video

    pick = lambda metadata, **_: np.array([0, 5, 9, 15])  # noqa: E731
    expected, expected_meta = transformers_load_video(str(demo_mp4), backend="pyav", sample_indices_fn=pick)
    frames, meta = read_video(demo_mp4, pick)
    assert np.array_equal(frames.numpy(), expected)
    assert (meta.total_num_frames, meta.fps, meta.frames_indices) == (DEMO_T, DEMO_FPS, [0, 5, 9, 15])
    assert (meta.total_num_frames, meta.fps) == (expected_meta.total_num_frames, expected_meta.fps)
    everything, meta = read_video(demo_mp4)  # no function: every frame, as do_sample_frames=False
    assert meta.frames_indices == list(range(DEMO_T)) and everything.shape[0] == DEMO_T
    repeated, _ = read_video(demo_mp4, lambda metadata: [3, 3, 4])  # repeats stay (transformers' array path)
    assert torch.equal(repeated[0], repeated[1])
    with pytest.raises(ValueError, match=r"outside \[0, 15\]"):
        read_video(demo_mp4, lambda metadata: [0, 16])


def _write_rotated(path, degrees):
    """A 32x48 (HxW) clip whose top-left 8x8 corner is white, stored with a display rotation."""
    import av
    from fractions import Fraction

    frame = np.zeros((32, 48, 3), np.uint8)
    frame[:8, :8] = 255
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(8))
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.set_display_rotation(degrees)
        for t in range(2):
            out = av.VideoFrame.from_ndarray(frame, format="rgb24")
            out.pts = t
            container.mux(stream.encode(out))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize(("degrees", "corner"), [(90, (slice(40, 48), slice(0, 8))), (-90, (slice(0, 8), slice(24, 32)))])
def test_display_rotation_is_applied(tmp_path, degrees, corner):
    # 90 degrees counter-clockwise moves the stored top-left corner to the bottom-left, -90 to the top-right
    frames, meta = read_video(_write_rotated(tmp_path / "rotated.mp4", degrees))
    assert tuple(frames.shape) == (2, 48, 32, 3) and (meta.height, meta.width) == (48, 32)
    luma = frames[0].float().mean(-1)
    assert luma[corner].mean() > 200
    assert luma.sum() - luma[corner].sum() < 0.1 * luma.sum()  # nothing white anywhere else
    assert tuple(load_video(tmp_path / "rotated.mp4").frames.shape) == (2, 48, 32, 3)


def test_prepare_video_follows_the_backbone_rules():
    frames = _rng_frames((6, 10, 12, 3))
    prepared, meta = prepare_video(frames)
    assert tuple(prepared.shape) == (6, 3, 10, 12) and prepared.is_contiguous()
    assert torch.equal(prepared, torch.from_numpy(frames).permute(0, 3, 1, 2))
    assert meta.fps is None and meta.total_num_frames == 6 and meta.frames_indices == list(range(6))
    one, meta = prepare_video(frames[0])  # one [H, W, C] frame is a one-frame video
    assert tuple(one.shape) == (1, 3, 10, 12) and meta.total_num_frames == 1
    gray, _ = prepare_video(frames[..., 0], convert_to_rgb=lambda v: v.expand(-1, 3, -1, -1))
    assert tuple(gray.shape) == (6, 3, 10, 12)
    floats, _ = prepare_video(frames.astype(np.float32) * 0.9)  # floats keep their values: the backbone rescales
    assert floats.dtype == torch.float32 and float(floats.max()) > 1
    picked, meta = prepare_video(frames, metadata={"fps": 3.0, "total_num_frames": 6},
                                 sample_indices_fn=lambda metadata: [1, 4])
    assert torch.equal(picked, prepared[[1, 4]]) and meta.frames_indices == [1, 4] and meta.fps == 3.0
    partial, meta = prepare_video(frames, metadata={"fps": 3.0, "total_num_frames": 60})
    assert meta.frames_indices is None  # a pre-sampled array without indices: nothing is made up
    with pytest.raises(ValueError, match="do_sample_frames=False"):
        prepare_video(frames, metadata={"fps": 3.0, "total_num_frames": 60}, sample_indices_fn=lambda metadata: [0])
    with pytest.raises(ValueError, match="frames_indices"):
        prepare_video(frames, metadata={"total_num_frames": 6, "frames_indices": [0, 1]})
    with pytest.raises(ValueError, match="accepted keys"):
        prepare_video(frames, metadata={"total_num_frames": 6, "speed": 2})
    with pytest.raises(TypeError, match="uint8"):
        prepare_video(frames.astype(np.int32))


# --------------------------------------------------------------------- hub hygiene


@pytest.mark.parametrize(
    "module", [video_decode, video_convert, video_input], ids=lambda m: m.__name__.rsplit(".", 1)[-1]
)
def test_module_imports_are_hub_safe(module):
    """processing/ ships to the Hub: module level may import only stdlib, torch, transformers, safetensors."""
    source = Path(module.__file__).read_text()
    tree = ast.parse(source)
    allowed = {"torch", "transformers", "safetensors", "__future__"}  # numpy only through transformers
    stdlib = set(sys.stdlib_module_names)
    for node in tree.body:  # module level only; lazy imports inside functions are fine
        if isinstance(node, ast.Import):
            roots = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative sibling import
                continue
            roots = [node.module.split(".")[0]]
        else:
            continue
        for root in roots:
            assert root in allowed or root in stdlib, f"forbidden top-level import: {root}"
    assert "import numpy" not in source and "import PIL" not in source and "from PIL" not in source
