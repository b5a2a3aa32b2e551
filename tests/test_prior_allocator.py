"""The training-free prior allocator and frame statistics: content-aware scales with no weights."""

import numpy as np
import pytest
import torch

from conftest import chat_text, tiny_backbone
from resadapt_hf import ResAdaptProcessor
from resadapt_hf.processing.frame_statistics import (
    FRAME_STATISTIC_CHANNELS,
    frame_detail_and_change,
    frame_statistic_tokens,
    standardised_statistic_tokens,
)
from resadapt_hf.processing.prior_allocator import PriorAllocator, prior_scores, scores_to_scales


def _flat(value=100, size=(64, 64)):
    return np.full((*size, 3), value, np.uint8)


def _textured(seed, size=(64, 64)):
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def test_statistic_tokens_shape_and_hand_values():
    frames = torch.from_numpy(np.stack([_flat(0), _flat(255)]))
    tokens = frame_statistic_tokens(frames, grid=4)
    assert tokens.shape == (2, 16, FRAME_STATISTIC_CHANNELS)
    assert torch.allclose(tokens[:, :, :3], torch.zeros(2, 16, 3))  # flat frames: no detail
    assert torch.allclose(tokens[0, :, 3], torch.zeros(16)) and torch.allclose(tokens[1, :, 3], torch.ones(16), atol=1e-5)
    assert torch.allclose(tokens[:, :, 6], torch.ones(2, 16), atol=1e-5)  # black -> white: change 1 both ways


def test_standardised_tokens_hand_values():
    # one channel, 2 frames x 2 patches: values 0, 0, 0, 4 -> mean 1, population std sqrt(3)
    tokens = torch.tensor([[[0.0], [0.0]], [[0.0], [4.0]]])
    out = standardised_statistic_tokens(tokens, floor=1e-3, clip=8.0)
    assert out.shape == (2, 2, 3)
    z = 3 ** -0.5
    assert torch.allclose(out[..., 0], torch.tensor([[-z, -z], [-z, 3 * z]]), atol=1e-6)
    assert torch.allclose(out[..., 1], torch.tensor([[-z, -z], [3 * z, 3 * z]]), atol=1e-6)  # frame max, per patch
    assert torch.allclose(out[..., 2], torch.log10(tokens[..., 0] + 1e-3))
    constant = standardised_statistic_tokens(torch.full((3, 4, 2), 0.5))
    assert torch.all(constant[..., :4] == 0)  # nothing stands out: z = 0, not NaN
    with pytest.raises(ValueError, match="tokens"):
        standardised_statistic_tokens(torch.zeros(4, 2))


def test_standardised_tokens_make_the_needle_glyph_stand_out():
    # the Allocator's statistics encoder must see a small glyph (IMPLEMENTATION_NOTES, synthetic needle task)
    from resadapt_hf.synthetic import NeedleTaskConfig, make_needle_sample

    sample = make_needle_sample(NeedleTaskConfig(), 3)
    z = standardised_statistic_tokens(frame_statistic_tokens(sample.frames))[..., 1]  # downscale-loss z-scores
    peak = z.amax(dim=1)  # [T]
    needle = sample.needle_frames[0]
    others = [t for t in range(len(peak)) if t not in sample.needle_frames]
    assert peak[needle] > 3.0 and peak[needle] > peak[others].max() + 1.0


def test_textured_frames_get_larger_scales_than_flat_ones():
    frames = np.stack([_flat(), _textured(1), _flat(120), _textured(2), _flat(90), _textured(3)])
    scales = PriorAllocator().predict_scales([torch.from_numpy(frames)])[0]
    assert min(scales[1], scales[3], scales[5]) > max(scales[0], scales[2], scales[4])


def test_redundant_neighbours_get_less_than_a_changing_scene():
    texture = _textured(7)
    static = np.stack([texture] * 4)  # near-duplicates
    changing = np.stack([_textured(10 + i) for i in range(4)])  # same detail level, every frame new
    frames = torch.from_numpy(np.concatenate([static, changing]))
    scales = PriorAllocator(novelty_weight=1.0).predict_scales([frames])[0]
    assert max(scales[:4]) < min(scales[4:])


def test_scores_and_scales_hand_computed():
    assert torch.equal(prior_scores(torch.ones(3), torch.ones(3), 0.5), torch.zeros(3, dtype=torch.float64))
    scales = scores_to_scales(torch.tensor([-1.0, 1.0]), 1.0, 0.2, 1.8)
    e = np.exp(1.0)
    assert scales == pytest.approx([2 / (1 + e**2), min(2 * e**2 / (1 + e**2), 1.8)])
    assert PriorAllocator(strength=0).predict_scales([torch.from_numpy(np.stack([_flat(), _textured(0)]))]) == [[1.0, 1.0]]


def test_bad_settings():
    for kwargs in ({"strength": -1}, {"novelty_weight": float("nan")}, {"min_scale": 1.5}):
        with pytest.raises(ValueError):
            PriorAllocator(**kwargs)
    with pytest.raises(ValueError, match="frames"):
        frame_statistic_tokens(torch.zeros(2, 8, 8, 3))  # float frames


def test_prior_inside_the_processor_with_a_budget():
    model, backbone = tiny_backbone("qwen2_5_vl")
    processor = ResAdaptProcessor.from_backbone(backbone, allocator=PriorAllocator(), budget=0.5)
    frames = np.stack([_flat(size=(112, 140)), _textured(1, (112, 140))] * 4)
    allocation = processor.allocate(text=chat_text(backbone, "video"), videos=frames)
    assert abs(allocation.retention - 0.5) <= 0.02
    sizes = allocation.chunk_sizes  # chunk = (flat, textured) pairs: uniform content, so similar sizes
    assert len(sizes) == 4
    assert processor.allocator_config["type"] == "prior"


def test_prior_and_fixed_survive_save_and_load(tmp_path):
    _, backbone = tiny_backbone("qwen2_5_vl")
    for allocator, kind in ((PriorAllocator(strength=0.9), "prior"), (None, None)):
        processor = ResAdaptProcessor.from_backbone(backbone, allocator=allocator)
        processor.save_pretrained(tmp_path / str(kind))
        loaded = ResAdaptProcessor.from_pretrained(tmp_path / str(kind))
        if kind is None:
            assert loaded.allocator is None
        else:
            assert isinstance(loaded.allocator, PriorAllocator) and loaded.allocator.strength == 0.9


def test_push_to_hub_uploads_the_whole_folder(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo_id, **kw: calls.append(("create", repo_id, kw)))
    monkeypatch.setattr(huggingface_hub, "upload_folder", lambda **kw: calls.append(("upload", kw)))
    _, backbone = tiny_backbone("qwen2_5_vl")
    processor = ResAdaptProcessor.from_backbone(backbone, allocator=PriorAllocator())
    processor.save_pretrained(tmp_path / "out", push_to_hub=True, repo_id="me/resadapt-test", private=True)
    assert calls[0][:2] == ("create", "me/resadapt-test") and calls[0][2]["private"] is True
    assert calls[1][0] == "upload" and calls[1][1]["folder_path"] == tmp_path / "out"
