"""Batched rollouts: all M x N rollouts of a prompt in one generate call, identical to one call per allocation."""

import dataclasses

import numpy as np
import pytest
import torch

from conftest import tiny_backbone
from resadapt_hf import ResAdaptProcessor
from resadapt_hf.data import decode_record
from resadapt_hf.rollout import (
    BackboneRollout,
    GenerationSettings,
    Rollout,
    RolloutRequest,
    RolloutResult,
    group_completions,
    request_batches,
)

GREEDY = GenerationSettings(max_new_tokens=6, do_sample=False)
# scales per family: every row gives the clip different chunk sizes (checked), so a row mix-up changes the answer
SCALES = {
    "qwen2_5_vl": [[0.3] * 6, [1.0] * 6, [1.8, 1.8, 0.5, 0.5, 1.2, 1.2], [0.6, 0.6, 1.4, 1.4, 0.2, 0.2]],
    "qwen3_vl": [[1.0] * 6, [1.8] * 6, [1.8, 1.8, 1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.8, 1.8]],
}


def _record(seed=0, num_frames=6, height=64, width=80, question="Which animal is shown?"):
    frames = np.random.default_rng(seed).integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)
    return decode_record({"frames": frames, "question": question, "options": ["A. cat", "B. dog", "C. fish"],
                          "answer": "B", "problem_type": "multiple_choice"})


def _request(record, scales):
    return RolloutRequest(record, record["frames"], torch.tensor(scales, dtype=torch.float32))


class GenerateSpy:
    """Wraps ``model.generate``: records every call's kwargs, batch rows and new tokens."""

    def __init__(self, model, monkeypatch):
        self.calls = []
        original = model.generate

        def spy(**kwargs):
            out = original(**kwargs)
            length = kwargs["input_ids"].shape[1]
            self.calls.append({"kwargs": kwargs, "rows": kwargs["input_ids"].shape[0], "new": out[:, length:]})
            return out

        monkeypatch.setattr(model, "generate", spy, raising=False)

    def tokens(self, call, eos_id):
        """New tokens of each output row, up to and including the first EOS (a batch pads the rest)."""
        rows = []
        for row in self.calls[call]["new"].tolist():
            rows.append(row[: row.index(eos_id) + 1] if eos_id in row else row)
        return rows


def _setup(family):
    model, backbone = tiny_backbone(family)
    processor = ResAdaptProcessor.from_backbone(backbone)
    return model, processor, BackboneRollout(model, processor)


def _per_allocation(rollout, spy, request, eos_id):
    """The old behaviour: one batch-1 generate call per allocation. Returns (completions, new tokens)."""
    texts, tokens = [], []
    for m in range(request.num_allocations):
        single = RolloutRequest(request.record, request.frames, request.frame_scales[m : m + 1])
        [result] = rollout([single], num_rollouts=1, generation=GREEDY)
        texts.append(result.completions[0][0])
        tokens.append(spy.tokens(-1, eos_id)[0])
    return texts, tokens


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_batched_greedy_equals_one_call_per_allocation(family, monkeypatch):
    model, processor, rollout = _setup(family)
    eos = model.generation_config.eos_token_id
    request = _request(_record(), SCALES[family])
    plans = [processor.allocate(rollout.prompt(request.record), videos=[rollout.video(request)], scales=[row])
             for row in SCALES[family]]
    assert len({tuple(p.chunk_sizes) for p in plans}) == len(plans)  # every allocation has its own chunk sizes
    assert processor.tokenizer.padding_side == "right"
    spy = GenerateSpy(model, monkeypatch)
    [batched] = rollout([request], num_rollouts=2, generation=GREEDY)
    assert len(spy.calls) == 1 and spy.calls[0]["rows"] == len(plans)  # greedy: one row per allocation
    batched_tokens = spy.tokens(0, eos)
    texts, tokens = _per_allocation(rollout, spy, request, eos)
    assert batched_tokens == tokens
    assert batched.completions == [[t, t] for t in texts]
    assert len(set(texts)) > 1  # the allocations really answer differently, so a row mix-up would show
    assert batched.retention.tolist() == pytest.approx([p.retention for p in plans])
    assert processor.tokenizer.padding_side == "right"  # left padding was asked per call, not set on the caller's


def test_prompts_per_call_packs_prompts_and_matches_single_calls(monkeypatch):
    model, processor, rollout = _setup("qwen2_5_vl")
    eos = model.generation_config.eos_token_id
    requests = [
        _request(_record(0), SCALES["qwen2_5_vl"][:3]),
        _request(_record(1, num_frames=4, height=90, width=60, question="What colour dominates?"),
                 [[1.2] * 4, [0.4, 0.4, 1.6, 1.6], [0.8] * 4]),
    ]
    spy = GenerateSpy(model, monkeypatch)
    packed = rollout(requests, num_rollouts=1, generation=dataclasses.replace(GREEDY, prompts_per_call=2))
    assert len(spy.calls) == 1 and spy.calls[0]["rows"] == 6
    packed_tokens = spy.tokens(0, eos)
    for i, request in enumerate(requests):
        texts, tokens = _per_allocation(rollout, spy, request, eos)
        assert packed_tokens[3 * i : 3 * i + 3] == tokens
        assert packed[i].completions == [[t] for t in texts]
    assert packed[0].completions != packed[1].completions


def test_one_generate_call_per_prompt_for_all_m_by_n_rollouts(monkeypatch):
    model, processor, rollout = _setup("qwen2_5_vl")
    eos = model.generation_config.eos_token_id
    requests = [_request(_record(seed), SCALES["qwen2_5_vl"][:3]) for seed in range(3)]
    spy = GenerateSpy(model, monkeypatch)
    # sampling restricted to the most likely token: N real sampled sequences per row, yet reproducible, so the
    # grouping of num_return_sequences (each row repeated N times, consecutively) can be checked against greedy
    argmax = GenerationSettings(max_new_tokens=6, top_k=1)
    results = rollout(requests, num_rollouts=3, generation=argmax)
    # one call per prompt: M input rows, M x N output sequences
    assert [(c["rows"], len(c["new"])) for c in spy.calls] == [(3, 9)] * 3
    assert all(c["kwargs"]["num_return_sequences"] == 3 for c in spy.calls)
    sampled = [spy.tokens(i, eos) for i in range(3)]
    for request, result, tokens in zip(requests, results, sampled):
        texts, reference = _per_allocation(rollout, spy, request, eos)
        assert tokens == [t for t in reference for _ in range(3)]
        assert result.completions == [[t] * 3 for t in texts]
    spy.calls.clear()
    rollout(requests, num_rollouts=2, generation=GenerationSettings(max_new_tokens=2, prompts_per_call=0))
    assert [(c["rows"], len(c["new"])) for c in spy.calls] == [(9, 18)]  # 0: every request in one call
    spy.calls.clear()
    results = rollout(requests, num_rollouts=2, generation=GenerationSettings(max_new_tokens=2, prompts_per_call=2))
    assert [(c["rows"], len(c["new"])) for c in spy.calls] == [(6, 12), (3, 6)]
    assert [(len(r.completions), r.num_rollouts) for r in results] == [(3, 2)] * 3


def test_generation_settings_reach_generate(monkeypatch):
    model, processor, rollout = _setup("qwen2_5_vl")
    spy = GenerateSpy(model, monkeypatch)
    settings = GenerationSettings(
        max_new_tokens=3, temperature=0.7, top_p=0.9, top_k=5, min_p=0.05, repetition_penalty=1.3,
        generation_kwargs={"min_new_tokens": 3, "no_repeat_ngram_size": 2},
    )
    rollout([_request(_record(), SCALES["qwen2_5_vl"][:2])], num_rollouts=2, generation=settings)
    kwargs = spy.calls[0]["kwargs"]
    expected = dict(max_new_tokens=3, do_sample=True, temperature=0.7, top_p=0.9, top_k=5, min_p=0.05,
                    repetition_penalty=1.3, min_new_tokens=3, no_repeat_ngram_size=2, num_return_sequences=2)
    assert {k: kwargs.get(k) for k in expected} == expected
    assert spy.calls[0]["new"].shape == (4, 3)  # 2 allocations x 2 sequences, exactly 3 new tokens
    spy.calls.clear()
    greedy = GenerationSettings(max_new_tokens=2, do_sample=False, temperature=0.5, top_k=4,
                                generation_kwargs={"max_new_tokens": 1})  # generation_kwargs win
    rollout([_request(_record(), SCALES["qwen2_5_vl"][:2])], num_rollouts=3, generation=greedy)
    kwargs = spy.calls[0]["kwargs"]
    assert kwargs["max_new_tokens"] == 1 and kwargs["do_sample"] is False and kwargs["num_return_sequences"] == 1
    assert not {"temperature", "top_p", "top_k", "min_p"} & set(kwargs)
    assert GenerationSettings().generate_kwargs() == dict(
        max_new_tokens=256, do_sample=True, repetition_penalty=1.0, temperature=1.0, top_p=1.0, top_k=0, min_p=None)


@pytest.mark.parametrize("name, value, accepted", [
    ("max_new_tokens", 0, ">= 1"), ("max_new_tokens", 2.0, ">= 1"), ("do_sample", 1, "True or False"),
    ("temperature", 0.0, "> 0"), ("temperature", float("nan"), "> 0"), ("top_p", 0.0, r"\(0, 1\]"),
    ("top_p", 1.5, r"\(0, 1\]"), ("top_k", -1, ">= 0"), ("min_p", 1.2, r"\[0, 1\]"),
    ("repetition_penalty", -1.0, "> 0"), ("generation_kwargs", [("min_new_tokens", 1)], "dict"),
    ("prompts_per_call", -1, ">= 0"),
])
def test_generation_settings_validation_names_the_field(name, value, accepted):
    with pytest.raises(ValueError, match=name) as error:
        GenerationSettings(**{name: value})
    assert error.match(accepted) and f"got {value!r}" in str(error.value)  # the accepted range and the value


def test_generation_kwargs_may_not_set_what_the_rollout_owns():
    for key in ("num_return_sequences", "generation_config", "pixel_values_videos"):
        with pytest.raises(ValueError, match=f"generation_kwargs must not set \\['{key}'\\]"):
            GenerationSettings(generation_kwargs={key: 1})


def test_generation_settings_from_grpo_config(tmp_path):
    from trl import GRPOConfig

    config = GRPOConfig(output_dir=str(tmp_path), max_completion_length=32, temperature=0.8, top_p=0.95, top_k=20,
                        min_p=0.1, repetition_penalty=1.1, generation_kwargs={"min_new_tokens": 2}, report_to=[],
                        use_cpu=True)
    settings = GenerationSettings.from_grpo_config(config, prompts_per_call=0)
    assert settings == GenerationSettings(max_new_tokens=32, temperature=0.8, top_p=0.95, top_k=20, min_p=0.1,
                                          repetition_penalty=1.1, generation_kwargs={"min_new_tokens": 2},
                                          prompts_per_call=0)
    assert GenerationSettings().is_default and not settings.is_default


def test_backbone_rollout_keeps_the_video_frame_rate(tmp_path, monkeypatch):
    # Qwen2.5-VL's temporal positions use seconds per chunk = temporal_patch_size / fps of the file
    from resadapt_hf.sample_clips import write_demo_clip

    model, processor, rollout = _setup("qwen2_5_vl")
    path = write_demo_clip(tmp_path / "clip.mp4", num_frames=8, fps=4)
    record = decode_record({"video": str(path), "question": "What moves?", "answer": "A",
                            "problem_type": "multiple_choice", "options": ["A. a", "B. b"]})
    assert record["clip"].fps == 4 and record["clip"].frames is record["frames"]
    spy = GenerateSpy(model, monkeypatch)
    generation = GenerationSettings(max_new_tokens=2, do_sample=False)
    rollout([RolloutRequest(record, record["frames"], torch.ones(2, 8))], num_rollouts=1, generation=generation)
    assert spy.calls[0]["kwargs"]["second_per_grid_ts"].tolist() == [0.5, 0.5]  # not the assumed raw-frame rate
    copy = record["frames"].clone()  # other frames than the clip's: the clip's rate must not be claimed for them
    rollout([RolloutRequest(record, copy, torch.ones(1, 8))], num_rollouts=1, generation=generation)
    assert spy.calls[1]["kwargs"]["second_per_grid_ts"].tolist() != [0.5]


def test_group_completions_and_request_batches():
    texts = [f"r{r}s{s}" for r in range(5) for s in range(2)]  # 5 rows, 2 sequences each, consecutive per row
    assert group_completions(texts, [2, 3], 2, 2) == [
        [["r0s0", "r0s1"], ["r1s0", "r1s1"]],
        [["r2s0", "r2s1"], ["r3s0", "r3s1"], ["r4s0", "r4s1"]],
    ]
    assert group_completions(["a", "b", "c"], [1, 2], 1, 3) == [[["a"] * 3], [["b"] * 3, ["c"] * 3]]
    with pytest.raises(ValueError, match="outputs"):
        group_completions(texts, [2, 2], 2, 2)
    assert request_batches(5, 2) == [range(0, 2), range(2, 4), range(4, 5)]
    assert request_batches(5, 0) == [range(0, 5)] and request_batches(2, 8) == [range(0, 2)]
    assert request_batches(0, 0) == [] and request_batches(0, 3) == []


def test_requests_results_and_call_arguments_are_validated():
    record = _record()
    with pytest.raises(TypeError, match="frames"):
        RolloutRequest(record, record["frames"].float(), torch.ones(1, 6))
    with pytest.raises(ValueError, match=r"frame_scales must have shape \[M>=1, T=6\]"):
        RolloutRequest(record, record["frames"], torch.ones(2, 5))
    with pytest.raises(ValueError, match="finite"):
        RolloutRequest(record, record["frames"], torch.full((1, 6), float("nan")))
    with pytest.raises(ValueError, match="same N"):
        RolloutResult([["a", "b"], ["c"]], torch.ones(2))
    with pytest.raises(ValueError, match=r"shape \[M=2\]"):
        RolloutResult([["a"], ["c"]], torch.ones(3))
    result = RolloutResult([["a"], ["c"]], torch.tensor([0.5, 1.0]))
    assert result == RolloutResult([["a"], ["c"]], torch.tensor([0.5, 1.0]))
    assert result != RolloutResult([["a"], ["c"]], torch.tensor([0.5, 0.9]))
    assert result != RolloutResult([["c"], ["a"]], torch.tensor([0.5, 1.0]))
    model, processor, rollout = _setup("qwen2_5_vl")
    assert isinstance(rollout, Rollout) and rollout.generates_text
    request = _request(record, [[1.0] * 6])
    with pytest.raises(ValueError, match="num_rollouts"):
        rollout([request], num_rollouts=0, generation=GREEDY)
    with pytest.raises(TypeError, match="GenerationSettings"):
        rollout([request], num_rollouts=1, generation={"max_new_tokens": 2})
    with pytest.raises(TypeError, match="sequence of RolloutRequest"):
        rollout(request, num_rollouts=1, generation=GREEDY)
    assert rollout([], num_rollouts=1, generation=GREEDY) == []
