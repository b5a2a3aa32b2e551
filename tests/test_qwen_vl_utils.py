"""The model cards' qwen-vl-utils flows run through ResAdapt unchanged: scale 1 == native, budgets still apply.

qwen-vl-utils (dev extra) reads the file with decord, samples at 2 fps, resizes with its own limits and returns
float 0..255 frames; the processor is then called with ``do_sample_frames=False`` (and, for the Qwen2.5-VL card, a
per-video ``fps`` list that transformers 5.23 refuses, so its native reference states the same rate as metadata).
"""

import pytest
import torch

from conftest import chat_text, random_video, tiny_backbone
from resadapt_hf import ResAdaptProcessor
from test_native_sampling import _assert_same, _sample_clip

qwen_vl_utils = pytest.importorskip("qwen_vl_utils", reason="qwen-vl-utils is a dev extra")
pytest.importorskip("decord", reason="qwen-vl-utils reads files with decord here (torchvision 0.29 cannot)")


def _messages(clip, image, factor, tokens):
    limits = {"min_pixels": factor * factor * 4, "max_pixels": factor * factor * tokens}
    return [{"role": "user", "content": [
        {"type": "image", "image": image, **limits},
        {"type": "video", "video": clip, "fps": 2.0, **limits},
        {"type": "text", "text": "What happens?"},
    ]}]


@pytest.fixture(scope="module")
def image():
    from PIL import Image

    return Image.fromarray(random_video(1, 90, 120, seed=5)[0])


def test_qwen2_5_vl_card_flow(image):
    _, backbone = tiny_backbone("qwen2_5_vl")
    processor = ResAdaptProcessor.from_backbone(backbone)
    messages = _messages(_sample_clip(), image, 28, 32)
    text = backbone.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    images, videos, video_kwargs = qwen_vl_utils.process_vision_info(messages, return_video_kwargs=True)
    assert video_kwargs == {"do_sample_frames": False, "fps": [2.0]}
    assert videos[0].dtype == torch.float32 and float(videos[0].max()) > 1  # 0..255 floats
    ours = processor(text=[text], images=images, videos=videos, padding=True, return_tensors="pt", **video_kwargs)
    frames = videos[0].shape[0]
    native = backbone(text=[text], images=images, videos=videos, padding=True, return_tensors="pt",
                      do_sample_frames=False,
                      video_metadata=[{"fps": 2.0, "total_num_frames": frames, "frames_indices": list(range(frames))}])
    _assert_same(native, ours)
    assert ours["second_per_grid_ts"].tolist() == [1.0]  # 2 frames per temporal patch at 2 fps, not 2 / 24
    budgeted = processor(text=[text], images=images, videos=videos, budget=0.3, return_allocation=True,
                         return_tensors="pt", **video_kwargs)
    allocation = budgeted["allocation"][0]
    assert allocation.budget_reached and abs(allocation.retention - 0.3) <= 0.02
    assert (budgeted["input_ids"] == backbone.video_token_id).sum() + (
        budgeted["input_ids"] == backbone.image_token_id).sum() == allocation.visual_tokens


def test_qwen3_vl_card_flow(image):
    _, backbone = tiny_backbone("qwen3_vl")
    processor = ResAdaptProcessor.from_backbone(backbone)
    messages = _messages(_sample_clip(), image, 32, 32)
    text = backbone.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    images, videos, video_kwargs = qwen_vl_utils.process_vision_info(
        messages, image_patch_size=16, return_video_kwargs=True, return_video_metadata=True
    )
    videos, metadata = map(list, zip(*videos))
    call = dict(text=text, images=images, videos=videos, video_metadata=metadata, return_tensors="pt",
                do_resize=False, **video_kwargs)
    _assert_same(backbone(**call), processor(**call))
    budgeted = processor(**call, budget=0.3, return_allocation=True)
    allocation = budgeted["allocation"][0]
    assert allocation.budget_reached and abs(allocation.retention - 0.3) <= 0.02
    # the frames are qwen-vl-utils' (2 fps over 10 s), timed by their source indices
    assert allocation.media[1].frame_indices == metadata[0]["frames_indices"]


def test_fps_list_contradicting_the_metadata_is_refused():
    _, backbone = tiny_backbone("qwen2_5_vl")
    processor = ResAdaptProcessor.from_backbone(backbone)
    with pytest.raises(ValueError, match=r"fps\[0\]=2.0 contradicts"):
        processor(text=[chat_text(backbone, "video")], videos=[random_video(4)], do_sample_frames=False, fps=[2.0],
                  video_metadata=[{"fps": 25.0, "total_num_frames": 4}])
