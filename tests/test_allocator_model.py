"""The learned Allocator (`modeling/modeling_resadapt.py`): Beta policy, masking, one encoder pass per forward,
remote-code round trip, parameter count, frozen encoder, dtypes and input checks. Tiny random encoders, offline."""

import os
import re
import textwrap

import pytest
import torch

from conftest import chat_text, random_video, run_without_package, tiny_backbone
from resadapt_hf.modeling.configuration_resadapt import ResAdaptConfig
from resadapt_hf.modeling.modeling_resadapt import AllocatorPolicy, ResAdaptAllocator
from resadapt_hf.tiny import build_tiny_backbone, build_tiny_tokenizer

QUESTION = "What happens in the video?"
TINY = dict(hidden_size=32, num_heads=2, head_dim=16, temporal_heads=2, num_layers=2, max_query_tokens=16)


def tiny_smolvlm_config(**overrides) -> ResAdaptConfig:
    encoder_config = build_tiny_backbone("smolvlm")[0].config.to_dict()
    # the tiny encoder sees 64 px tiles cut into 16 px patches, pixel-shuffled by 2: 4 tokens per frame
    return ResAdaptConfig(**{"encoder_config": encoder_config, "encoder_image_size": 64, **TINY, **overrides})


def build(config: ResAdaptConfig, seed: int = 0) -> ResAdaptAllocator:
    torch.manual_seed(seed)
    model = ResAdaptAllocator(config).eval()
    if config.encoder_type == "smolvlm":
        model.query_tokenizer = build_tiny_tokenizer("smolvlm")
    return model


def randomise_head(model: ResAdaptAllocator, seed: int = 1) -> ResAdaptAllocator:
    """Give the zero-initialised last layer random weights, so frames get different distributions."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        out = model.predictor.head.out
        out.weight.copy_(torch.randn(out.weight.shape, generator=g) * 2.0)
    return model


def frames(num: int = 8, height: int = 40, width: int = 56, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (num, height, width, 3), generator=g, dtype=torch.uint8)


@pytest.fixture(scope="module")
def smol():
    return build(tiny_smolvlm_config())


@pytest.fixture(scope="module")
def smol_random_head():
    return randomise_head(build(tiny_smolvlm_config()))


def test_forward_shapes_and_initial_distribution(smol):
    policy = smol([frames(8)], QUESTION)
    assert isinstance(policy, AllocatorPolicy)
    assert policy.alpha.shape == policy.beta.shape == (1, 8)
    assert policy.alpha.dtype == policy.beta.dtype == torch.float32
    assert bool((policy.alpha > 1).all() and (policy.beta > 1).all())
    assert policy.frame_features.shape == (1, 8, 32)
    assert policy.frame_mask.dtype == torch.bool and bool(policy.frame_mask.all())
    scales = policy.deterministic_scales()
    assert bool(((scales >= 0.2) & (scales <= 1.8)).all())
    # zero-initialised head: Beta(2, 2) everywhere, i.e. mean scale init_mean_scale = 1.0 and concentration 4
    assert torch.allclose(scales, torch.ones_like(scales), atol=1e-5)
    assert torch.allclose(policy.concentration, torch.full_like(scales, 4.0), atol=1e-5)
    assert torch.allclose(policy.entropy(), torch.distributions.Beta(2.0, 2.0).entropy().expand(1, 8), atol=1e-5)


def test_initial_mean_and_concentration_follow_config():
    model = build(tiny_smolvlm_config(init_mean_scale=0.6, init_concentration=10.0))
    policy = model([frames(3)], QUESTION)
    assert torch.allclose(policy.deterministic_scales(), torch.full((1, 3), 0.6), atol=1e-5)
    assert torch.allclose(policy.concentration, torch.full((1, 3), 10.0), atol=1e-4)


def test_sampled_log_prob_matches_torch_beta(smol_random_head):
    policy = smol_random_head([frames(8)], QUESTION)
    assert policy.alpha.std() > 0  # frames really get different distributions
    actions, scales = policy.sample(16, generator=torch.Generator().manual_seed(0))
    assert actions.shape == scales.shape == (16, 1, 8)
    assert bool(((actions >= 1e-6) & (actions <= 1 - 1e-6)).all())
    assert torch.allclose(scales, 0.2 + actions * 1.6)
    assert torch.allclose(policy.to_scales(actions), scales)
    expected = torch.distributions.Beta(policy.alpha, policy.beta).log_prob(actions)
    assert torch.allclose(policy.log_prob(actions), expected, atol=1e-5)
    assert torch.allclose(policy.entropy(), torch.distributions.Beta(policy.alpha, policy.beta).entropy(), atol=1e-5)
    # same generator seed, same draw; different seed, different draw
    again, _ = policy.sample(16, generator=torch.Generator().manual_seed(0))
    other, _ = policy.sample(16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(actions, again) and not torch.equal(actions, other)
    # deterministic action is the Beta mean
    mean = policy.alpha / (policy.alpha + policy.beta)
    assert torch.allclose(policy.deterministic_scales(), 0.2 + 1.6 * mean)


def test_sixteen_samples_cost_one_encoder_pass(smol):
    calls = {"vision": 0, "text": 0}
    encoder = smol.encoder.model
    hooks = [
        encoder.vision_model.register_forward_hook(lambda *_: calls.__setitem__("vision", calls["vision"] + 1)),
        encoder.text_model.register_forward_hook(lambda *_: calls.__setitem__("text", calls["text"] + 1)),
    ]
    try:
        policy = smol([frames(8)], QUESTION)
        actions, _ = policy.sample(16)
        policy.log_prob(actions)
        policy.entropy()
        policy.deterministic_scales()
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == {"vision": 1, "text": 1}


def test_variable_frame_counts_are_padded_and_masked(smol_random_head):
    model = smol_random_head
    long, short = frames(8, 40, 56, seed=1), frames(5, 32, 32, seed=2)
    other_question = "Count the objects."
    with torch.no_grad():
        batch = model([long, short], [QUESTION, other_question])
        alone_long = model([long], QUESTION)
        alone_short = model([short], other_question)
    assert batch.frame_mask.tolist() == [[True] * 8, [True] * 5 + [False] * 3]
    assert batch.num_frames.tolist() == [8, 5]
    for row, alone, n in ((0, alone_long, 8), (1, alone_short, 5)):
        for name in ("alpha", "beta", "frame_features"):
            assert torch.allclose(getattr(batch, name)[row, :n], getattr(alone, name)[0], atol=1e-5), name
    # padded frames: Uniform(0, 1) placeholder, zero log-prob and entropy, scale 1.0, zero features
    actions, scales = batch.sample(4)
    assert torch.equal(batch.log_prob(actions)[:, 1, 5:], torch.zeros(4, 3))
    assert torch.equal(batch.entropy()[1, 5:], torch.zeros(3))
    assert torch.allclose(scales[:, 1, 5:], torch.ones(4, 3))
    assert torch.allclose(batch.deterministic_scales()[1, 5:], torch.ones(3))
    assert torch.equal(batch.frame_features[1, 5:], torch.zeros(3, 32))
    # a padded [B, T, H, W, 3] tensor + frame_mask: padding content is never looked at
    padded = torch.zeros(2, 8, 32, 32, 3, dtype=torch.uint8)
    padded[0], padded[1, :5] = frames(8, 32, 32, seed=3), short
    mask = torch.tensor([[True] * 8, [True] * 5 + [False] * 3])
    with torch.no_grad():
        first = model(padded, QUESTION, frame_mask=mask)
        padded[1, 5:] = 255
        second = model(padded, QUESTION, frame_mask=mask)
    assert torch.equal(first.alpha, second.alpha) and torch.equal(first.beta, second.beta)


def test_statistics_encoder_variant():
    config = ResAdaptConfig(encoder_type="statistics", query_buckets=64, statistics_grid=4, **TINY)
    model = randomise_head(build(config))
    policy = model([frames(6), frames(3, 24, 24)], "Read the digit on the sign")
    assert policy.alpha.shape == (2, 6) and policy.num_frames.tolist() == [6, 3]
    assert bool((policy.alpha[policy.frame_mask] > 1).all())
    scales = model.predict_scales([frames(6)], "Read the digit on the sign")
    assert len(scales) == 1 and len(scales[0]) == 6 and all(0.2 <= s <= 1.8 for s in scales[0])
    # the question matters (hashed words -> trainable embedding), and gradients reach that embedding
    other = model.predict_scales([frames(6)], "completely different words here")
    assert scales != other
    actions, _ = policy.sample(2)
    policy.log_prob(actions).sum().backward()
    assert model.encoder.query_embedding.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="text"):
        model.predict_scales([frames(2)], "   ")
    with pytest.raises(ValueError, match="no word"):
        model.predict_scales([frames(2)], "?! ...")


CLEAN_LOADER = textwrap.dedent(
    """
    import sys
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    video = torch.randint(0, 256, (8, 40, 56, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with torch.no_grad():
        policy = model([video], "What happens in the video?")
    print("MODULE", type(model).__module__)
    print("ALPHA", policy.alpha[0].tolist())
    print("BETA", policy.beta[0].tolist())
    print("SCALES", model.predict_scales([video], "What happens in the video?")[0])
    """
)


def test_remote_code_round_trip_is_bit_identical(smol_random_head, tmp_path):
    model = smol_random_head
    repo = tmp_path / "allocator"
    model.save_pretrained(repo)
    files = set(os.listdir(repo))
    assert {"config.json", "model.safetensors", "modeling_resadapt.py", "configuration_resadapt.py"} <= files
    assert "frame_statistics.py" in files and "tokenizer_config.json" in os.listdir(repo / "query_tokenizer")
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)  # safetensors only
    for name in files:  # Hub files import only torch/transformers/stdlib and siblings
        if name.endswith(".py"):
            source = (repo / name).read_text()
            assert "import numpy" not in source and "resadapt_hf" not in source and "PIL" not in source

    result = run_without_package(CLEAN_LOADER, repo, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trust_remote_code" not in result.stdout + result.stderr  # nothing asks twice
    keys = ("MODULE", "ALPHA", "BETA", "SCALES")
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if line.split(" ")[0] in keys)
    assert set(lines) == set(keys), result.stdout[-2000:]
    assert "transformers_modules" in lines["MODULE"]

    video = frames(8, 40, 56, seed=0)
    with torch.no_grad():
        policy = model([video], QUESTION)
    print("here  alpha", policy.alpha[0].tolist(), "\nthere alpha", lines["ALPHA"])
    assert lines["ALPHA"] == str(policy.alpha[0].tolist())
    assert lines["BETA"] == str(policy.beta[0].tolist())
    assert lines["SCALES"] == str(model.predict_scales([video], QUESTION)[0])


def documented_parameter_count(pattern: str) -> int:
    match = re.search(pattern, ResAdaptConfig.__doc__)
    assert match, pattern
    return int(match.group(1).replace(",", ""))


def test_default_parameter_count_on_meta_device():
    # The default config needs no download: the SmolVLM2 encoder is fetched only by load_encoder()/first forward.
    with torch.device("meta"):
        model = ResAdaptAllocator(ResAdaptConfig())
        statistics = ResAdaptAllocator(ResAdaptConfig(encoder_type="statistics"))
    assert model.encoder.model is None
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == documented_parameter_count(r"default configuration[^*]*\*\*([\d,]+)\*\*")
    assert trainable == sum(p.numel() for p in model.predictor.parameters())
    statistics_trainable = sum(p.numel() for p in statistics.parameters() if p.requires_grad)
    assert statistics_trainable == documented_parameter_count(r"there are\s+([\d,]+) trainable")


def test_gradients_reach_only_the_predictor(smol_random_head):
    model = smol_random_head
    model.zero_grad(set_to_none=True)
    model.train()
    try:
        assert not model.encoder.model.training  # the frozen encoder stays in eval mode
        policy = model([frames(4)], QUESTION)
        actions, _ = policy.sample(3, generator=torch.Generator().manual_seed(0))
        loss = -policy.log_prob(actions).sum() - policy.entropy().sum() + policy.frame_features.pow(2).mean()
        loss.backward()
    finally:
        model.eval()
    for name, param in model.encoder.named_parameters():
        assert not param.requires_grad and param.grad is None, name
    missing = [n for n, p in model.predictor.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing  # every predictor weight (incl. the cross-attention gate) gets a gradient
    model.zero_grad(set_to_none=True)


def test_bfloat16_forward():
    model = randomise_head(build(tiny_smolvlm_config())).to(torch.bfloat16)
    assert model.dtype == torch.bfloat16
    policy = model([frames(4)], QUESTION)
    assert policy.alpha.dtype == torch.float32 and bool(torch.isfinite(policy.alpha).all())
    assert policy.frame_features.dtype == torch.bfloat16
    actions, _ = policy.sample(2)
    assert bool(torch.isfinite(policy.log_prob(actions)).all())
    scales = model.predict_scales([frames(4), frames(1)], QUESTION)
    assert [len(s) for s in scales] == [4, 1] and all(isinstance(v, float) for s in scales for v in s)


def test_non_finite_weights_are_rejected_at_load(smol, tmp_path):
    from safetensors.torch import load_file, save_file

    smol.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    name = next(k for k in weights if k.startswith("predictor.blocks.0.ffn"))
    weights[name][0, 0] = float("nan")
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"NaN.*corrupt|corrupt"):
        ResAdaptAllocator.from_pretrained(tmp_path)
    # the untouched checkpoint loads, with the encoder frozen and the tokenizer picked up from the folder
    smol.save_pretrained(tmp_path / "ok")
    loaded = ResAdaptAllocator.from_pretrained(tmp_path / "ok")
    assert loaded.query_tokenizer is not None
    assert not any(p.requires_grad for p in loaded.encoder.parameters())


@pytest.mark.parametrize("question", ["", "   \n", None])
def test_empty_question_is_rejected(smol, question):
    with pytest.raises(ValueError, match=r"^text:"):
        smol.predict_scales([frames(2)], question)
    with pytest.raises(ValueError, match=r"^query"):
        smol([frames(2)], question)


def test_mismatched_or_malformed_media_are_rejected(smol):
    mixed = [frames(1, 32, 32)[0], frames(1, 40, 32)[0]]
    with pytest.raises(ValueError, match="same size"):
        smol.predict_scales([mixed], QUESTION)
    with pytest.raises(ValueError, match="same size"):
        smol([mixed], QUESTION)
    with pytest.raises(ValueError, match="uint8"):
        smol.predict_scales([frames(2).float()], QUESTION)
    with pytest.raises(ValueError, match="uint8"):
        smol.predict_scales([frames(2)[..., :2]], QUESTION)
    with pytest.raises(ValueError, match="media"):
        smol.predict_scales([], QUESTION)
    with pytest.raises(ValueError, match="frame_mask"):
        smol(torch.zeros(1, 3, 32, 32, 3, dtype=torch.uint8), QUESTION, frame_mask=torch.tensor([[True, False, True]]))
    with pytest.raises(ValueError, match="one question per video"):
        smol([frames(2), frames(2)], [QUESTION])


@pytest.mark.parametrize(
    "field, value",
    [
        ("encoder_type", "clip"),
        ("hidden_size", 0),
        ("head_dim", 30),
        ("min_scale", 0.0),
        ("max_scale", 0.1),
        ("init_mean_scale", 1.8),
        ("init_concentration", 2.0),
        ("init_concentration", float("nan")),
        ("query_buckets", 0),
        ("encoder_image_size", -1),
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ResAdaptConfig(**{field: value})


def test_config_rejects_narrow_initial_beta_and_bad_encoder_config():
    # mean action 0.9 needs alpha + beta > 10 for beta > 1
    with pytest.raises(ValueError, match="init_concentration"):
        ResAdaptConfig(init_mean_scale=1.64, init_concentration=6.0)
    with pytest.raises(ValueError, match="encoder_config"):
        ResAdaptConfig(encoder_config={"model_type": "qwen2_vl"})
    with pytest.raises(ValueError, match="encoder_hidden_size"):
        tiny_smolvlm_config(encoder_hidden_size=576)
    with pytest.raises(ValueError, match="encoder_image_size"):
        build(tiny_smolvlm_config(encoder_image_size=48))  # not a multiple of patch 16 x shuffle 2


def test_processor_calls_the_allocator_hook(smol_random_head):
    from resadapt_hf import ResAdaptProcessor

    _, backbone = tiny_backbone("qwen2_5_vl")
    calls = []

    class Spy:
        def predict_scales(self, media, text):
            calls.append((media, text))
            result = smol_random_head.predict_scales(media, text)
            calls.append(result)
            return result

    processor = ResAdaptProcessor.from_backbone(backbone, allocator=Spy())
    video = random_video(8)
    allocation = processor.allocate(text=chat_text(backbone, "video", question=QUESTION), videos=video)
    (media, text), result = calls
    assert len(media) == 1 and media[0].dtype == torch.uint8 and tuple(media[0].shape) == video.shape
    assert QUESTION in text
    assert allocation.media[0].scales == pytest.approx(result[0])
    assert len(set(result[0])) > 1  # the (randomised) Allocator really varies across frames


def test_processor_saves_and_reloads_the_allocator(smol_random_head, tmp_path):
    from resadapt_hf import ResAdaptProcessor

    _, backbone = tiny_backbone("qwen2_5_vl")
    processor = ResAdaptProcessor.from_backbone(backbone, allocator=smol_random_head)
    processor.save_pretrained(tmp_path)
    assert "model.safetensors" in os.listdir(tmp_path / "allocator")
    reloaded = ResAdaptProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(reloaded.allocator).__name__ == "ResAdaptAllocator" and reloaded.allocator.query_tokenizer is not None
    text, video = chat_text(backbone, "video", question=QUESTION), random_video(8)
    assert reloaded.allocate(text=text, videos=video).scales == processor.allocate(text=text, videos=video).scales
