"""Tests for resadapt_hf.tiny: tiny random VLM backbones built offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from resadapt_hf import tiny

QWEN_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")

NUM_FRAMES, HEIGHT, WIDTH = 8, 64, 80
# Frames are passed pre-sampled (do_sample_frames=False); the metadata gives
# the timestamps Qwen3-VL and SmolVLM write into the prompt (without it they
# warn and assume 24 fps) and Qwen2.5-VL's seconds-per-temporal-patch.
VIDEO_METADATA = {"fps": 4.0, "total_num_frames": NUM_FRAMES, "frames_indices": list(range(NUM_FRAMES))}


def _video() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (NUM_FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)


def _prompt(processor, kind: str) -> str:
    messages = [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": f"Describe this {kind}."}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def _video_inputs(processor):
    return processor(
        text=[_prompt(processor, "video")],
        videos=[_video()],
        video_metadata=[dict(VIDEO_METADATA)],
        return_tensors="pt",
    )


def _image_inputs(processor):
    return processor(text=[_prompt(processor, "image")], images=[_video()[0]], return_tensors="pt")


@pytest.fixture(scope="module", params=tiny.FAMILIES)
def backbone(request):
    """(family, model, processor), built once per family for this module."""
    model, processor = tiny.build_tiny_backbone(request.param)
    return request.param, model, processor


def test_build_returns_eval_float32_model(backbone):
    family, model, processor = backbone
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.config.model_type == family
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    assert sum(p.numel() for p in model.parameters()) < 2_000_000  # really tiny


def test_video_forward_and_generate(backbone):
    family, model, processor = backbone
    inputs = _video_inputs(processor)
    ids = inputs["input_ids"][0]
    if family == "smolvlm":
        # every frame becomes one tile of image_seq_len <image> tokens
        assert "pixel_values" in inputs
        n_image = int((ids == model.config.image_token_id).sum())
        assert n_image == NUM_FRAMES * tiny.SMOLVLM_IMAGE_SEQ_LEN
    else:
        # one <|video_pad|> per merged 2x2 patch of each temporal patch
        n_video = int((ids == model.config.video_token_id).sum())
        assert n_video == int(inputs["video_grid_thw"].prod()) // 4
        assert int(inputs["video_grid_thw"][0, 0]) == NUM_FRAMES // 2  # temporal_patch_size 2, no sampling
    if family == "qwen2_5_vl":
        assert inputs["second_per_grid_ts"].tolist() == [pytest.approx(2 / VIDEO_METADATA["fps"])]
    if family == "qwen3_vl":
        assert "seconds>" in processor.tokenizer.decode(ids)  # per-frame timestamps

    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, ids.shape[0], len(processor.tokenizer))
    assert torch.isfinite(logits).all()

    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[0] == 1 and ids.shape[0] < out.shape[1] <= ids.shape[0] + 3
    assert isinstance(processor.batch_decode(out[:, ids.shape[0] :])[0], str)


def test_image_forward(backbone):
    family, model, processor = backbone
    inputs = _image_inputs(processor)
    with torch.no_grad():
        logits = model(**inputs).logits
    assert torch.isfinite(logits).all()
    n_image = int((inputs["input_ids"] == model.config.image_token_id).sum())
    if family == "smolvlm":
        # image split into tiles of image_seq_len tokens each, plus the global view
        assert n_image % tiny.SMOLVLM_IMAGE_SEQ_LEN == 0 and n_image > tiny.SMOLVLM_IMAGE_SEQ_LEN
    else:
        assert n_image == int(inputs["image_grid_thw"].prod()) // 4


def test_save_and_reload_offline(backbone, tmp_path):
    family, model, processor = backbone
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)

    processor2 = AutoProcessor.from_pretrained(tmp_path)
    model2 = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert type(processor2) is type(processor)
    assert type(model2) is type(model)
    assert processor2.chat_template == processor.chat_template

    inputs, inputs2 = _video_inputs(processor), _video_inputs(processor2)
    assert inputs.keys() == inputs2.keys()
    for key in inputs:
        assert torch.equal(torch.as_tensor(inputs[key]), torch.as_tensor(inputs2[key])), key
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, model2(**inputs2).logits)


@pytest.mark.parametrize("family", tiny.FAMILIES)
def test_same_seed_same_weights(family):
    processor = tiny.build_tiny_processor(family)  # reused: only the weights are compared
    a, _ = tiny.build_tiny_backbone(family, seed=3, processor=processor)
    b, proc_b = tiny.build_tiny_backbone(family, seed=3, processor=processor)
    c, _ = tiny.build_tiny_backbone(family, seed=4, processor=processor)
    assert proc_b is processor
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("family", tiny.FAMILIES)
def test_tokenizer_is_deterministic_and_has_special_tokens(family):
    tok, tok2 = tiny.build_tiny_tokenizer(family), tiny.build_tiny_tokenizer(family)
    assert tok.backend_tokenizer.to_str() == tok2.backend_tokenizer.to_str()
    assert 400 <= len(tok) <= 600
    text = "<1.5 seconds> Describe this video, please!"
    assert tok.decode(tok(text)["input_ids"]) == text
    if family == "smolvlm":
        names = ("image_token", "video_token", "fake_image_token", "global_image_token", "end_of_utterance_token")
        specials = [getattr(tok, name) for name in names] + ["<row_6_col_6>"]
    else:
        specials = [tok.image_token, tok.video_token, tok.vision_bos_token, tok.vision_eos_token]
        assert tok.eos_token == "<|im_end|>"
    # each special token is a single id
    for token in specials + [tok.eos_token, tok.pad_token]:
        assert len(tok(token, add_special_tokens=False)["input_ids"]) == 1, token


def test_qwen_chat_template():
    tok = tiny.build_tiny_tokenizer("qwen2_5_vl")
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Yes"}]},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
        "<|vision_start|><|video_pad|><|vision_end|>Hi<|im_end|>\n"
        "<|im_start|>assistant\nYes<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_smolvlm_chat_template():
    tok = tiny.build_tiny_tokenizer("smolvlm")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>User:<image>Hi<end_of_utterance>\nAssistant:"


@pytest.mark.parametrize("family", QWEN_FAMILIES)
def test_processor_pixel_budgets(family):
    default_min, default_max = tiny.DEFAULT_PIXELS[family]
    processor = tiny.build_tiny_processor(family)
    assert processor.image_processor.size["shortest_edge"] == default_min
    assert processor.video_processor.size["longest_edge"] == default_max

    factor = tiny.QWEN3_FACTOR if family == "qwen3_vl" else tiny.QWEN2_FACTOR
    bigger = tiny.build_tiny_processor(family, min_pixels=factor * factor * 16, max_pixels=factor * factor * 256)
    small, big = _image_inputs(processor), _image_inputs(bigger)
    # 64 x 80 is below the raised minimum, so the image is upscaled to >= 16 merged tokens
    assert int(big["image_grid_thw"].prod()) // 4 >= 16 > int(small["image_grid_thw"].prod()) // 4


def test_smolvlm_rejects_pixel_budgets():
    with pytest.raises(ValueError, match="min_pixels"):
        tiny.build_tiny_processor("smolvlm", max_pixels=1000)


def test_config_overrides_reach_the_config():
    model, _ = tiny.build_tiny_backbone("qwen2_5_vl", tie_word_embeddings=True)
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


@pytest.mark.parametrize(
    "build", [tiny.build_tiny_tokenizer, tiny.build_tiny_processor, tiny.build_tiny_backbone]
)
def test_unknown_family_raises(build):
    with pytest.raises(ValueError, match="`family`") as info:
        build("llava")
    assert all(family in str(info.value) for family in tiny.FAMILIES)
