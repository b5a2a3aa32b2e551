"""ResAdaptProcessor on tiny random Qwen2-VL / Qwen2.5-VL / Qwen3-VL backbones: exactness, positions, generate."""

import re

import numpy as np
import pytest
import torch

from conftest import chat_text, random_video, tiny_backbone
from resadapt_hf import FixedScale, ResAdaptProcessor
from resadapt_hf.processing.resize_plan import UnitSpec, chunk_scales, unit_size
from resadapt_hf.tiny import build_tiny_backbone


def _native_rope(model, inputs):
    inner = model.model
    return type(inner).get_rope_index(inner, **_rope_args(inputs))[0]


def _rope_args(inputs):
    keys = ("input_ids", "mm_token_type_ids", "image_grid_thw", "video_grid_thw", "second_per_grid_ts", "attention_mask")
    return {k: inputs[k] for k in keys if k in inputs}


def _meta(num_frames, fps=4.0):
    return [{"fps": fps, "total_num_frames": num_frames, "frames_indices": list(range(num_frames))}]


@pytest.mark.parametrize("num_frames", [8, 5])
def test_scale_one_is_bit_identical_to_native(family, num_frames):
    model, backbone = tiny_backbone(family)
    processor = ResAdaptProcessor.from_backbone(backbone)
    text = chat_text(backbone, "image", "video")
    video, image = random_video(num_frames), random_video(1, 50, 70, seed=1)[0]
    kwargs = dict(text=[text], images=[image], videos=[video], video_metadata=_meta(num_frames), return_tensors="pt")
    native = backbone(**kwargs, do_sample_frames=False)
    ours = processor(**kwargs)
    assert sorted(native.keys()) == sorted(ours.keys())
    for key in native.keys():
        assert torch.equal(native[key], ours[key]), key
    assert torch.equal(_native_rope(model, native), _native_rope(model, ours))
    with torch.no_grad():
        difference = (model(**native).logits - model(**ours).logits).abs().max()
    assert difference <= 1e-5


def test_scale_one_images_only(family):
    model, backbone = tiny_backbone(family)
    processor = ResAdaptProcessor.from_backbone(backbone)
    text = chat_text(backbone, "image", "image")
    images = [random_video(1, 64, 96, seed=2)[0], random_video(1, 130, 40, seed=3)[0]]
    native = backbone(text=[text], images=images, return_tensors="pt")
    ours = processor(text=[text], images=images, return_tensors="pt")
    for key in native.keys():
        assert torch.equal(native[key], ours[key]), key


def test_one_frame_video_is_padded_like_the_backbone(family):
    model, backbone = tiny_backbone(family)
    processor = ResAdaptProcessor.from_backbone(backbone)
    text = chat_text(backbone, "video")
    frame = random_video(1)
    ours = processor(text=[text], videos=[frame], video_metadata=_meta(1), return_tensors="pt")
    assert ours["video_grid_thw"].tolist()[0][0] == 1
    if family == "qwen3_vl":  # native Qwen3-VL rejects < 2 frames: compare with the padded clip
        native = backbone(
            text=[text], videos=[np.concatenate([frame, frame])], return_tensors="pt", do_sample_frames=False,
            video_metadata=[{"fps": 4.0, "total_num_frames": 1, "frames_indices": [0, 0]}],
        )
    else:
        native = backbone(text=[text], videos=[frame], video_metadata=_meta(1), return_tensors="pt", do_sample_frames=False)
    assert torch.equal(native["pixel_values_videos"], ours["pixel_values_videos"])
    assert torch.equal(native["input_ids"], ours["input_ids"])


MIXED = [0.3, 0.5, 1.0, 1.0, 1.8, 1.6, 0.6, 0.6]


def test_mixed_scales_grids_follow_the_plan(family):
    model, backbone = tiny_backbone(family)
    processor = ResAdaptProcessor.from_backbone(backbone)
    text = chat_text(backbone, "video")
    allocation = processor.allocate(text=text, videos=random_video(8), scales=MIXED)
    adapter = processor._adapter
    base = adapter.video_base_size(8, 90, 120)
    unit = UnitSpec(*base, adapter.video_factor)
    expected = [unit_size(unit, s) for s in chunk_scales(MIXED, [2, 2, 2, 2])]
    assert allocation.chunk_sizes == expected
    assert allocation.baseline_visual_tokens == 4 * unit.base_tokens
    assert allocation.retention == pytest.approx(allocation.visual_tokens / allocation.baseline_visual_tokens)
    inputs = processor(text=[text], videos=[random_video(8)], scales=MIXED, return_tensors="pt")
    patch = adapter.video_processor.patch_size
    rows = [[1, h // patch, w // patch] for h, w in expected]
    # consecutive equal sizes share a row (here chunks 0 and 3 differ from their neighbours)
    assert inputs["video_grid_thw"].tolist() == rows
    assert (inputs["input_ids"] == backbone.video_token_id).sum() == allocation.visual_tokens


def _expected_positions(input_ids, token_types, grids, merge, temporal_step, image_rows=()):
    """Hand-written reference: text +1 per token; a run of vision tokens reads its grid rows as one video whose
    chunk k gets temporal id start + int(k * temporal_step); text then resumes at start + max spatial extent."""
    positions, current, i, video_rows, image_rows = [], 0, 0, list(grids), list(image_rows)
    n = len(input_ids)
    while i < n:
        if token_types[i] == 0:
            positions.append((current, current, current))
            current += 1
            i += 1
            continue
        j = i
        while j < n and token_types[j] == token_types[i]:
            j += 1
        rows, covered, source = [], 0, video_rows if token_types[i] == 2 else image_rows
        while covered < j - i:
            t, h, w = source.pop(0)
            rows.append((t, h // merge, w // merge))
            covered += t * (h // merge) * (w // merge)
        k, extent = 0, 0
        for t, h, w in rows:
            for dt in range(t):
                temporal = current + (int((k + dt) * temporal_step) if token_types[i] == 2 else 0)
                for y in range(h):
                    for x in range(w):
                        positions.append((temporal, current + y, current + x))
            k += t
            extent = max(extent, h, w)
        current += extent
        i = j
    return torch.tensor(positions).T


@pytest.mark.parametrize("fps", [2.0, 3.0])
def test_mixed_scale_positions_are_one_continuous_video(family, fps):
    model, backbone = tiny_backbone(family)
    processor = ResAdaptProcessor.from_backbone(backbone)
    processor.prepare_backbone(model)
    text = chat_text(backbone, "image", "video")
    video, image = random_video(8), random_video(1, 60, 60, seed=4)[0]
    scales = [0.7] + MIXED
    inputs = processor(text=[text], images=[image], videos=[video], scales=scales, video_metadata=_meta(8, fps), return_tensors="pt")
    positions = model.model.get_rope_index(**_rope_args(inputs))[0][:, 0]
    merge = model.config.vision_config.spatial_merge_size
    grids = inputs["video_grid_thw"].tolist()
    if family == "qwen3_vl":  # one block per chunk, each a 1-frame grid
        grids = [[1, h, w] for t, h, w in grids for _ in range(t)]
        step = 0.0
    elif family == "qwen2_5_vl":
        step = model.config.vision_config.tokens_per_second * 2 / fps
    else:
        step = 1.0
    if family == "qwen2_5_vl" and fps == 3.0:
        # non-integer steps: compare temporal ids with the native scale-1 video instead of float rounding by hand
        native = backbone(text=[text], images=[image], videos=[video], video_metadata=_meta(8, fps), return_tensors="pt", do_sample_frames=False)
        native_pos = _native_rope(model, native)[:, 0]
        video_mask, native_mask = inputs["mm_token_type_ids"][0] == 2, native["mm_token_type_ids"][0] == 2
        ours_t = sorted(set((positions[0][video_mask] - positions[0][video_mask].min()).tolist()))
        native_t = sorted(set((native_pos[0][native_mask] - native_pos[0][native_mask].min()).tolist()))
        assert ours_t == native_t
        return
    expected = _expected_positions(
        inputs["input_ids"][0].tolist(), inputs["mm_token_type_ids"][0].tolist(), grids, merge, step,
        image_rows=inputs["image_grid_thw"].tolist(),
    )
    assert torch.equal(positions, expected)


def test_qwen3_chunk_timestamps_are_native():
    model, backbone = tiny_backbone("qwen3_vl")
    processor = ResAdaptProcessor.from_backbone(backbone)
    text = chat_text(backbone, "video")
    video = random_video(8)
    native = backbone(text=[text], videos=[video], video_metadata=_meta(8, 3.0), return_tensors="pt", do_sample_frames=False)
    ours = processor(text=[text], videos=[video], video_metadata=_meta(8, 3.0), scales=MIXED, return_tensors="pt")
    stamps = lambda ids: re.findall(r"<[\d.]+ seconds>", backbone.tokenizer.decode(ids[0]))
    assert stamps(ours["input_ids"]) == stamps(native["input_ids"]) and len(stamps(ours["input_ids"])) == 4


def test_generate_and_batched_left_padding_match_single(family):
    model, backbone = tiny_backbone(family)
    processor = ResAdaptProcessor.from_backbone(backbone)
    processor.prepare_backbone(model)
    texts = [chat_text(backbone, "video", question="Describe."), chat_text(backbone, "video", question="Is there a cat?")]
    videos = [random_video(8, seed=5), random_video(6, 70, 50, seed=6)]
    scales = [MIXED, [1.2, 1.2, 0.3, 0.3, 0.9, 0.9]]
    batch = processor(text=texts, videos=videos, scales=scales, padding=True, padding_side="left", return_tensors="pt")
    with torch.no_grad():
        batch_logits = model(**batch).logits
        batch_out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    for i in range(2):
        single = processor(text=[texts[i]], videos=[videos[i]], scales=[scales[i]], return_tensors="pt")
        length = single["input_ids"].shape[1]
        with torch.no_grad():
            logits = model(**single).logits
            out = model.generate(**single, max_new_tokens=4, do_sample=False)
        assert (batch_logits[i, -length:] - logits[0]).abs().max() <= 1e-4
        assert torch.equal(batch_out[i, -4:], out[0, -4:])


def test_unprepared_qwen2_5_rejects_mixed_scales_loudly():
    model, backbone = build_tiny_backbone("qwen2_5_vl")
    processor = ResAdaptProcessor.from_backbone(backbone)
    inputs = processor(text=[chat_text(backbone, "video")], videos=[random_video(8)], scales=MIXED, return_tensors="pt")
    with pytest.raises(Exception):
        with torch.no_grad():
            model(**inputs)
    same = processor.prepare_backbone(model)
    assert same is model and processor.prepare_backbone(model) is model  # idempotent, same object
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model(**inputs)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_prepared_model_survives_deepcopy():
    import copy

    model, backbone = build_tiny_backbone("qwen2_5_vl")
    processor = ResAdaptProcessor.from_backbone(backbone)
    clone = copy.deepcopy(processor.prepare_backbone(model))
    inputs = processor(text=[chat_text(backbone, "video")], videos=[random_video(8)], scales=MIXED, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, clone(**inputs).logits)


@pytest.mark.parametrize("budget", [0.1, 0.5, 1.0, 2.0])
def test_budget_through_the_processor(family, budget):
    model, backbone = tiny_backbone(family)
    processor = ResAdaptProcessor.from_backbone(backbone)
    video = random_video(16, 224, 384, seed=7)
    allocation = processor.allocate(text=chat_text(backbone, "video"), videos=video, scales=FixedScale(1.0), budget=budget)
    floor = processor.allocate(text=chat_text(backbone, "video"), videos=video, scales=0.2)
    if allocation.budget_reached:
        assert abs(allocation.retention - budget) <= 0.02
    else:
        assert budget < floor.retention + 0.02 or budget > 1.5
    capped = processor.allocate(text=chat_text(backbone, "video"), videos=video, max_visual_tokens=40, budget=budget)
    assert capped.visual_tokens <= 40


def test_edge_frames(family):
    model, backbone = tiny_backbone(family)
    processor = ResAdaptProcessor.from_backbone(backbone)
    processor.prepare_backbone(model)
    text = chat_text(backbone, "video")
    for video in (random_video(4, 10, 8), random_video(4, 20, 2400), random_video(3, 2000, 24)):
        inputs = processor(text=[text], videos=[video], scales=0.5, return_tensors="pt")
        with torch.no_grad():
            model.generate(**inputs, max_new_tokens=2)
    # RGBA: alpha is blended onto white, as the backbone's convert_to_rgb does (it needs the layout spelled out)
    rgba = np.concatenate([random_video(4), np.full((4, 90, 120, 1), 7, np.uint8)], axis=-1)
    native = backbone(text=[text], videos=[rgba], input_data_format="channels_last", return_tensors="pt")
    ours = processor(text=[text], videos=[rgba], return_tensors="pt")
    assert torch.equal(native["pixel_values_videos"], ours["pixel_values_videos"])
    assert not torch.equal(ours["pixel_values_videos"], processor(text=[text], videos=[rgba[..., :3]], return_tensors="pt")["pixel_values_videos"])
    gray = random_video(6)[..., 0]  # [T, H, W] grayscale video (T of 1/3/4 would read as one CHW frame)
    assert torch.equal(
        processor(text=[text], videos=[gray], return_tensors="pt")["pixel_values_videos"],
        processor(text=[text], videos=[np.repeat(gray[..., None], 3, -1)], return_tensors="pt")["pixel_values_videos"],
    )


def test_allocation_round_trip_reuses_the_plan():
    model, backbone = tiny_backbone("qwen2_5_vl")
    processor = ResAdaptProcessor.from_backbone(backbone)
    text, video = chat_text(backbone, "video"), random_video(8)
    allocation = processor.allocate(text=text, videos=video, scales=MIXED, budget=0.4)
    a = processor(text=text, videos=video, allocation=allocation, return_tensors="pt")
    b = processor(text=text, videos=video, scales=allocation.scales, return_tensors="pt")
    assert torch.equal(a["video_grid_thw"], b["video_grid_thw"])
    assert allocation.frame_indices == list(range(8)) and len(allocation.timestamps) == 8
    assert abs(allocation.retention - 0.4) <= 0.02 or not allocation.budget_reached


def test_apply_chat_template_tokenize(family):
    model, backbone = tiny_backbone(family)
    processor = ResAdaptProcessor.from_backbone(backbone)
    video = random_video(8)
    messages = [{"role": "user", "content": [{"type": "video", "video": video}, {"type": "text", "text": "What?"}]}]
    ours = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
    native = backbone.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
    assert torch.equal(ours["input_ids"], native["input_ids"])
    assert torch.equal(ours["pixel_values_videos"], native["pixel_values_videos"])


def test_allocator_hook_sees_the_shared_frames_and_the_question():
    model, backbone = tiny_backbone("qwen2_5_vl")
    seen = {}

    class Recorder:
        def predict_scales(self, media, text):
            seen["shapes"], seen["text"] = [tuple(m.shape) for m in media], text
            return [[0.5] * m.shape[0] for m in media]

    processor = ResAdaptProcessor.from_backbone(backbone, allocator=Recorder())
    text = chat_text(backbone, "image", "video", question="Which digit is shown?")
    allocation = processor.allocate(
        text=text, images=[random_video(1, 50, 70)[0]], videos=[random_video(9, 64, 64)], num_frames=5,
        do_sample_frames=True,
    )
    # Qwen2-VL's sample_frames rounds 5 to the temporal patch (4) and takes arange(0, 9, 9 / 4)
    assert seen["shapes"] == [(1, 50, 70, 3), (4, 64, 64, 3)]  # the sampled frames the backbone gets
    assert seen["text"] == "Which digit is shown?"
    assert allocation.scales == [0.5] * 5 and allocation.media[1].frame_indices == [0, 2, 4, 6]


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_allocator_reads_the_last_user_turn_only(family):
    # what CAPOTrainer trains on (the question), not the system prompt, earlier turns or role names
    _, backbone = tiny_backbone(family)
    seen = []

    class Recorder:
        def predict_scales(self, media, text):
            seen.append(text)
            return [[1.0] * m.shape[0] for m in media]

    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Think step by step."}]},
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Which digit is shown?"}]},
    ]
    text = backbone.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    processor = ResAdaptProcessor.from_backbone(backbone, allocator=Recorder())
    processor.allocate(text=text, videos=[random_video(4, 64, 64)])
    bare = "Which digit is shown? <|vision_start|><|video_pad|><|vision_end|>"
    processor.allocate(text=bare, videos=[random_video(4, 64, 64)])
    assert seen == ["Which digit is shown?", "Which digit is shown?"]  # no chat template: the whole text


def test_video_files_sample_like_the_backbone(tmp_path):
    from resadapt_hf.sample_clips import write_demo_clip

    path = str(write_demo_clip(tmp_path / "clip.mp4", num_frames=16, fps=8))  # 2 seconds
    _, qwen3 = tiny_backbone("qwen3_vl")  # the tiny processors set do_sample_frames=False
    processor = ResAdaptProcessor.from_backbone(qwen3)
    text = chat_text(qwen3, "video")
    assert processor.allocate(text=text, videos=path).frame_indices == list(range(16))
    # Qwen3-VL's own default fps=2: int(16 / 8 * 2) = 4 frames at round(linspace(0, 15, 4))
    plan = processor.allocate(text=text, videos=path, do_sample_frames=True)
    assert plan.frame_indices == [0, 5, 10, 15] and plan.timestamps == pytest.approx([0, 5 / 8, 10 / 8, 15 / 8])
    _, qwen25 = tiny_backbone("qwen2_5_vl")
    processor = ResAdaptProcessor.from_backbone(qwen25)
    plan = processor.allocate(text=chat_text(qwen25, "video"), videos=path, fps=4, do_sample_frames=True)
    # Qwen2-VL's rule: 16 / 8 * 4 = 8 frames (a multiple of the temporal patch), at arange(0, 16, 16 / 8)
    assert plan.frame_indices == [0, 2, 4, 6, 8, 10, 12, 14]
    assert plan.timestamps[1] == pytest.approx(2 / 8)
