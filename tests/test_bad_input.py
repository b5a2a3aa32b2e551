"""Bad input fails early with a ValueError/TypeError that names the argument and what is accepted."""

import numpy as np
import pytest
import torch

from conftest import chat_text, random_video, tiny_backbone
from resadapt_hf import ResAdaptProcessor
from resadapt_hf.tiny import build_tiny_processor


@pytest.fixture(scope="module")
def setup():
    _, backbone = tiny_backbone("qwen2_5_vl")
    return ResAdaptProcessor.from_backbone(backbone), chat_text(backbone, "video")


def test_corrupt_truncated_and_empty_files(setup, tmp_path):
    processor, text = setup
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    from resadapt_hf.sample_clips import write_demo_clip

    real = write_demo_clip(tmp_path / "real.mp4")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(real.read_bytes()[:300])
    for path in (corrupt, empty, truncated):
        with pytest.raises(ValueError, match="video"):
            processor(text=[text], videos=[str(path)], return_tensors="pt")
    with pytest.raises((ValueError, FileNotFoundError), match="video|No such"):
        processor(text=[text], videos=[str(tmp_path / "missing.mp4")], return_tensors="pt")


def test_zero_frames_and_mixed_sizes(setup):
    processor, text = setup
    with pytest.raises(ValueError, match="zero frames"):
        processor(text=[text], videos=[np.zeros((0, 32, 32, 3), np.uint8)], return_tensors="pt")
    frames = [np.zeros((32, 32, 3), np.uint8), np.zeros((40, 32, 3), np.uint8)]
    with pytest.raises(ValueError, match="size"):
        processor(text=[text], videos=[frames], return_tensors="pt")


@pytest.mark.parametrize("bad", [float("nan"), -0.5, float("inf"), 0.0, 2.5])
def test_bad_scale_values(setup, bad):
    processor, text = setup
    scales = [1.0] * 7 + [bad]
    with pytest.raises(ValueError, match=r"scales.*\[0.2, 1.8\]"):
        processor(text=[text], videos=[random_video(8)], scales=scales, return_tensors="pt")


def test_wrong_number_of_scales(setup):
    processor, text = setup
    with pytest.raises(ValueError, match="scales: expected 8"):
        processor(text=[text], videos=[random_video(8)], scales=[1.0] * 5, return_tensors="pt")
    with pytest.raises(TypeError, match="scales"):
        processor(text=[text], videos=[random_video(8)], scales="big", return_tensors="pt")


@pytest.mark.parametrize("budget", [0.0, -0.1, 3.3, float("nan")])
def test_budget_out_of_range(setup, budget):
    processor, text = setup
    with pytest.raises(ValueError, match=r"budget.*\(0, 3.24\]"):
        processor(text=[text], videos=[random_video(8)], budget=budget, return_tensors="pt")


def test_max_visual_tokens(setup):
    processor, text = setup
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="max_visual_tokens"):
            processor.allocate(text=text, videos=random_video(8), max_visual_tokens=bad)
    with pytest.raises(ValueError, match="max_visual_tokens=5 is below the minimum reachable"):
        processor.allocate(text=text, videos=random_video(8), max_visual_tokens=5)


def test_wrong_dtype(setup):
    processor, text = setup
    with pytest.raises(TypeError, match=r"videos\[0\].*uint8"):
        processor(text=[text], videos=[random_video(4).astype(np.int64)], return_tensors="pt")
    nan = random_video(4).astype(np.float32)
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"videos\[0\].*NaN"):
        processor(text=[text], videos=[nan], return_tensors="pt")
    with pytest.raises(TypeError, match=r"images\[0\]"):
        processor(text=[chat_text(processor, "image")], images=[object()], return_tensors="pt")


def test_float_pixels_are_the_backbones_business(setup):
    # 0..255 floats (qwen-vl-utils' output) go to the backbone as they are: it rescales them itself
    processor, text = setup
    video = random_video(4).astype(np.float32) * 0.7
    native = processor.backbone_processor(text=[text], videos=[video], return_tensors="pt")
    assert torch.equal(native["pixel_values_videos"], processor(text=[text], videos=[video], return_tensors="pt")["pixel_values_videos"])


def test_placeholder_media_mismatch(setup):
    processor, text = setup
    with pytest.raises(ValueError, match="videos: the prompts have 1"):
        processor(text=[text], videos=[random_video(4), random_video(4)], return_tensors="pt")
    with pytest.raises(ValueError, match="images"):
        processor(text=[text], videos=[random_video(4)], images=[random_video(1)[0]], return_tensors="pt")


def test_unknown_backbone_and_settings():
    with pytest.raises(TypeError, match="backbone_processor"):
        ResAdaptProcessor.from_backbone(build_tiny_processor("smolvlm"))
    _, backbone = tiny_backbone("qwen2_5_vl")
    with pytest.raises(ValueError, match="resample"):
        ResAdaptProcessor.from_backbone(backbone, resample="lanczos")
    with pytest.raises(ValueError, match="min_scale/max_scale"):
        ResAdaptProcessor.from_backbone(backbone, min_scale=1.2)
    with pytest.raises(TypeError, match="allocator"):
        ResAdaptProcessor.from_backbone(backbone, allocator=object())
    qwen3_model, _ = tiny_backbone("qwen3_vl")
    with pytest.raises(TypeError, match="model"):
        ResAdaptProcessor.from_backbone(backbone).prepare_backbone(qwen3_model)


def test_allocation_mismatch(setup):
    processor, text = setup
    allocation = processor.allocate(text=text, videos=random_video(8))
    with pytest.raises(ValueError, match="allocation"):
        processor(text=[text], videos=[random_video(6)], allocation=allocation, return_tensors="pt")


def test_allocator_sees_float_frames_as_the_backbone_reads_them(setup):
    _, text = setup
    seen = []

    class Recorder:
        def predict_scales(self, media, text):
            seen.extend(media)
            return [[1.0] * m.shape[0] for m in media]

    _, backbone = tiny_backbone("qwen2_5_vl")
    processor = ResAdaptProcessor.from_backbone(backbone, allocator=Recorder())
    video = random_video(4).astype(np.float32) * 0.5 + 0.3  # 0..255 floats, as qwen-vl-utils returns them
    processor.allocate(text=text, videos=[video])
    assert seen[0].dtype == torch.uint8 and torch.equal(seen[0], torch.from_numpy(video).round().to(torch.uint8))


def test_a_videoclip_is_not_sampled_again(setup):
    from resadapt_hf import to_video_clip

    processor, text = setup
    clip = to_video_clip(random_video(8), video_fps=4)
    with pytest.raises(ValueError, match="VideoClip is already sampled"):
        processor(text=[text], videos=[clip], num_frames=4, do_sample_frames=True)
    assert processor.allocate(text=text, videos=[clip], do_sample_frames=True).frame_indices == list(range(8))
