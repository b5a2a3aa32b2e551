"""CAPOTrainer: a real (tiny) backbone in the loop, only the Allocator learns, checkpoint/resume is exact, TRL's
knobs are honoured or refused, rollouts are batched per prompt, the PPO clip acts with num_iterations > 1."""

import dataclasses
import typing

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from conftest import tiny_backbone
from resadapt_hf import ResAdaptProcessor
from resadapt_hf.allocators import build_allocator
from resadapt_hf.capo_config import HONOURED_GRPO_FIELDS, REFUSED_TRAINING_FIELDS, grpo_only_fields
from resadapt_hf.rollout import BackboneRollout, RolloutResult
from resadapt_hf.trainer import (
    CAPOConfig,
    CAPOTrainer,
    PromptSampler,
    allocation_seed,
    beta_kl,
    write_folder_atomically,
)


def _dataset(n=4):
    rng = np.random.default_rng(0)
    return [
        {
            "frames": rng.integers(0, 256, (6, 64, 80, 3), dtype=np.uint8),
            "question": f"Which letter is shown? ({i})",
            "options": ["A. cat", "B. dog", "C. fish", "D. bird"],
            "answer": "B",
            "problem_type": "multiple_choice",
        }
        for i in range(n)
    ]


def _config(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path), num_generations=2, per_device_train_batch_size=2, num_rollouts=2,
        max_steps=2, learning_rate=1e-2, logging_steps=1, save_steps=2, report_to=[], seed=0,
        save_strategy="steps", disable_tqdm=True,
    )
    values.update(overrides)
    return CAPOConfig(**values)


class ScriptedRollout:
    """Answers B when the mean scale is above 1, else A: cost and correctness pull against each other."""

    generates_text = False

    def __call__(self, requests, *, num_rollouts, generation):
        results = []
        for request in requests:
            answers = ["B" if s.mean() > 1.0 else "A" for s in request.frame_scales]
            completions = [[f"<think>look</think><answer>\\boxed{{{a}}}</answer>"] * num_rollouts for a in answers]
            results.append(RolloutResult(completions, (request.frame_scales**2).mean(-1)))
        return results


def test_two_steps_with_a_frozen_tiny_backbone(tmp_path):
    model, backbone = tiny_backbone("qwen2_5_vl")
    processor = ResAdaptProcessor.from_backbone(backbone)
    rollout = BackboneRollout(model, processor)
    allocator = build_allocator("tiny-statistics")
    before_backbone = {k: v.clone() for k, v in model.state_dict().items()}
    before = {k: v.clone() for k, v in allocator.predictor.state_dict().items()}
    trainer = CAPOTrainer(allocator, rollout, _config(tmp_path, max_completion_length=3), _dataset(),
                          processor=processor)
    trainer.train()
    assert all(torch.equal(before_backbone[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in allocator.predictor.state_dict().items())
    logged = [h for h in trainer.state.log_history if "mean_scale" in h]
    for key in ("reward", "accuracy", "mean_scale", "retention", "cost", "tau_dyn", "clip_fraction", "l_sim",
                "l_con", "grad_norm"):
        assert key in logged[0], key
    assert not any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    data = _dataset(8)

    def fresh():
        torch.manual_seed(0)  # the same initial allocator for all three runs
        return build_allocator("tiny-statistics")

    straight = fresh()
    CAPOTrainer(straight, ScriptedRollout(), _config(tmp_path / "a", max_steps=4, save_steps=2), data).train()

    class StopAfterTwo(TrainerCallback):  # an interruption: same schedule (max_steps=4), killed after step 2
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step >= 2

    first = fresh()
    CAPOTrainer(first, ScriptedRollout(), _config(tmp_path / "b", max_steps=4, save_steps=2), data,
                callbacks=[StopAfterTwo()]).train()
    resumed = fresh()
    trainer = CAPOTrainer(resumed, ScriptedRollout(), _config(tmp_path / "b", max_steps=4, save_steps=2), data)
    trainer.train(resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-2"))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="cost_mode"):
        _config(tmp_path, cost_mode="cheap")
    with pytest.raises(ValueError, match="num_generations"):
        _config(tmp_path, per_device_train_batch_size=3)
    with pytest.raises(ValueError, match="steps_per_generation"):
        _config(tmp_path, steps_per_generation=2)
    with pytest.raises(ValueError, match="rollout_prompts_per_call"):
        _config(tmp_path, rollout_prompts_per_call=-1)
    with pytest.raises(NotImplementedError):
        _config(tmp_path, train_backbone=True)
    config = _config(tmp_path)
    assert config.epsilon_high == 0.28 and config.bf16 is False  # no GPU here: fp32 without any flag
    assert config.use_cpu  # CPU-only machine: multi-process runs use gloo without a flag


def test_vllm_is_refused_and_beta_is_checked_by_name(tmp_path):
    with pytest.raises(ValueError, match="use_vllm"):
        _config(tmp_path, use_vllm=True)
    with pytest.raises(ValueError, match="beta"):
        _config(tmp_path, beta=-0.1)


def test_beta_kl_matches_the_closed_form():
    from types import SimpleNamespace

    def policy(a, b):
        return SimpleNamespace(alpha=torch.tensor([[a]]), beta=torch.tensor([[b]]), frame_mask=torch.tensor([[True]]))

    assert beta_kl(policy(2.0, 2.0), policy(2.0, 2.0)).item() == 0.0
    # KL(U(0,1) || Beta(2,2)) = -E_U[log 6x(1-x)] = 2 - log 6
    assert beta_kl(policy(1.0, 1.0), policy(2.0, 2.0)).item() == pytest.approx(2 - np.log(6), abs=1e-5)


def test_beta_adds_a_kl_to_the_initial_allocator(tmp_path):
    torch.manual_seed(0)
    allocator = build_allocator("tiny-statistics")
    config = _config(tmp_path, max_steps=3, beta=0.5, learning_rate=3e-2, save_strategy="no",
                     num_generations=4, per_device_train_batch_size=4)
    trainer = CAPOTrainer(allocator, ScriptedRollout(), config, _dataset(4))
    initial = {k: v.clone() for k, v in trainer.ref_model.state_dict().items()}
    trainer.train()
    kl = [h["kl"] for h in trainer.state.log_history if "kl" in h]
    assert kl[0] == 0.0 and kl[-1] > 0.0  # the policy starts at the anchor and moves away from it
    assert all(torch.equal(initial[k], v) for k, v in trainer.ref_model.state_dict().items())  # the anchor is frozen


def _non_default(f: dataclasses.Field, annotation):
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    kinds = set(typing.get_args(annotation)) or {annotation}
    if isinstance(default, bool) or bool in kinds:
        return not default
    if isinstance(default, (int, float)):
        return default + 3
    if int in kinds:
        return 3
    if float in kinds:
        return 0.5
    if dict in kinds or typing.get_origin(annotation) is dict or any(typing.get_origin(k) is dict for k in kinds):
        return {"x": 1}
    if list in kinds or any(typing.get_origin(k) is list for k in kinds):
        return ["x"]
    return "not-a-default"


@pytest.mark.parametrize("grpo_field", [f for f in grpo_only_fields() if f.name not in HONOURED_GRPO_FIELDS],
                         ids=lambda f: f.name)
def test_every_unused_grpo_field_is_refused_by_name(tmp_path, grpo_field):
    # walks dataclasses.fields(GRPOConfig): a field a future TRL adds is refused, never silently ignored
    hints = typing.get_type_hints(CAPOConfig)
    value = _non_default(grpo_field, hints[grpo_field.name])
    with pytest.raises(ValueError, match=grpo_field.name):
        _config(tmp_path, **{grpo_field.name: value})


def test_refused_training_arguments_name_themselves(tmp_path):
    hints = typing.get_type_hints(CAPOConfig)
    fields = {f.name: f for f in dataclasses.fields(CAPOConfig)}
    assert set(REFUSED_TRAINING_FIELDS) <= set(fields)
    for name in ("label_smoothing_factor", "neftune_noise_alpha", "eval_strategy", "remove_unused_columns",
                 "gradient_checkpointing"):
        value = "steps" if name == "eval_strategy" else _non_default(fields[name], hints[name])
        with pytest.raises(ValueError, match=name):
            _config(tmp_path, **{name: value})


def test_honoured_grpo_fields_are_real_fields():
    assert set(HONOURED_GRPO_FIELDS) <= {f.name for f in grpo_only_fields()}


def test_generation_settings_reach_generate_in_one_call_per_prompt(tmp_path, monkeypatch):
    model, backbone = tiny_backbone("qwen2_5_vl")
    processor = ResAdaptProcessor.from_backbone(backbone)
    calls = []
    original = model.generate

    def spy(**kwargs):
        calls.append({k: kwargs.get(k) for k in ("temperature", "top_p", "top_k", "max_new_tokens",
                                                   "repetition_penalty", "num_return_sequences")}
                     | {"rows": kwargs["input_ids"].shape[0]})
        return original(**kwargs)

    monkeypatch.setattr(model, "generate", spy, raising=False)
    config = _config(tmp_path, max_steps=1, per_device_train_batch_size=6, num_generations=3, num_rollouts=2,
                     temperature=0.7, top_p=0.9, top_k=5, max_completion_length=3, repetition_penalty=1.1,
                     save_strategy="no")
    CAPOTrainer(build_allocator("tiny-statistics"), BackboneRollout(model, processor), config, _dataset(2)).train()
    # 2 prompts x M=3 allocations x N=2 rollouts: one generate call per prompt, 3 rows x 2 sequences each
    assert calls == [{"temperature": 0.7, "top_p": 0.9, "top_k": 5, "max_new_tokens": 3, "repetition_penalty": 1.1,
                      "num_return_sequences": 2, "rows": 3}] * 2
    calls.clear()
    config = _config(tmp_path, max_steps=1, per_device_train_batch_size=6, num_generations=3, save_strategy="no",
                     rollout_prompts_per_call=0, max_completion_length=2)
    CAPOTrainer(build_allocator("tiny-statistics"), BackboneRollout(model, processor), config, _dataset(2)).train()
    assert len(calls) == 1 and calls[0]["rows"] == 6


def test_generation_settings_are_refused_for_a_reader_that_does_not_generate(tmp_path):
    with pytest.raises(ValueError, match="temperature"):
        CAPOTrainer(build_allocator("tiny-statistics"), ScriptedRollout(), _config(tmp_path, temperature=0.5),
                    _dataset(2))


def test_reward_funcs_list_with_weights(tmp_path):
    def always_one(prompts, completions, **kwargs):
        return [1.0] * len(completions)

    def half_missing(prompts, completions, answer, trainer_state, **kwargs):
        assert answer[0] == "B" and trainer_state is not None  # dataset columns and the state, as in TRL
        return [None if i % 2 else 2.0 for i in range(len(completions))]

    config = _config(tmp_path, max_steps=1, reward_weights=[0.5, 0.25], save_strategy="no")
    trainer = CAPOTrainer(build_allocator("tiny-statistics"), ScriptedRollout(), config, _dataset(2),
                          reward_funcs=[always_one, half_missing])
    trainer.train()
    logged = [h for h in trainer.state.log_history if "reward" in h][0]
    # per completion 0.5 * 1 + 0.25 * (2 or missing): mean over the N = 2 rollouts of each allocation = 0.75
    assert logged["reward"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="reward_weights"):
        CAPOTrainer(build_allocator("tiny-statistics"), ScriptedRollout(), config, _dataset(2),
                    reward_funcs=[always_one])
    with pytest.raises(TypeError, match=r"reward_funcs\[0\]"):
        CAPOTrainer(build_allocator("tiny-statistics"), ScriptedRollout(), _config(tmp_path), _dataset(2),
                    reward_funcs=["some/reward-model"])


def test_num_iterations_reuses_rollouts_and_the_clip_acts(tmp_path):
    calls = []

    class Counting(ScriptedRollout):
        def __call__(self, requests, **kwargs):
            calls.append([r.record["question"] for r in requests])
            return super().__call__(requests, **kwargs)

    torch.manual_seed(0)
    config = _config(tmp_path, max_steps=4, num_iterations=2, learning_rate=3e-2, save_strategy="no",
                     num_generations=4, per_device_train_batch_size=4)
    trainer = CAPOTrainer(build_allocator("tiny-statistics"), Counting(), config, _dataset(4))
    trainer.train()
    # 4 optimiser steps, rollouts made every other step and reused once (the same prompt twice in a row)
    assert len(calls) == 2
    clip = [h["clip_fraction"] for h in trainer.state.log_history if "clip_fraction" in h]
    assert clip[0] == 0.0 and max(clip[1::2]) > 0.0  # ratio 1 on fresh rollouts, clipped when reused


def test_prompt_sampler_is_independent_of_the_split():
    def global_batches(processes, prompts, **kw):
        sampler = PromptSampler(12, prompts_per_process=prompts, num_processes=processes, steps_per_generation=1,
                                num_iterations=kw.get("num_iterations", 1), shuffle=True, seed=3)
        order = list(sampler)
        assert len(order) == len(sampler)
        size = processes * prompts
        return [sorted(order[i:i + size]) for i in range(0, len(order), size)]

    assert global_batches(2, 1) == global_batches(1, 2)
    assert global_batches(4, 1) == global_batches(2, 2) == global_batches(1, 4)
    repeated = global_batches(1, 4, num_iterations=2)
    assert repeated[0] == repeated[1] != repeated[2] == repeated[3]
    sampler = PromptSampler(12, prompts_per_process=2, num_processes=1, steps_per_generation=1, num_iterations=1,
                            shuffle=True, seed=3)
    first = list(sampler)
    sampler.set_epoch(1)
    assert sorted(first) == sorted(sampler) and first != list(sampler)
    with pytest.raises(ValueError, match="train_dataset"):
        PromptSampler(3, prompts_per_process=2, num_processes=2, steps_per_generation=1, num_iterations=1,
                      shuffle=False, seed=0)


def test_allocation_seed_depends_on_seed_step_and_index_only():
    seeds = {allocation_seed(s, t, i) for s in range(3) for t in range(3) for i in range(3)}
    assert len(seeds) == 27 and allocation_seed(1, 2, 3) == allocation_seed(1, 2, 3)
    with pytest.raises(ValueError, match="index"):
        allocation_seed(0, 0, -1)


def test_save_resadapt_replaces_the_repo_and_keeps_checkpoints(tmp_path):
    _, backbone = tiny_backbone("qwen2_5_vl")
    processor = ResAdaptProcessor.from_backbone(backbone, budget=0.4)
    out = tmp_path / "out"
    (out / "checkpoint-1").mkdir(parents=True)
    (out / "allocator").mkdir()
    (out / "allocator" / "stale.bin").write_text("old")
    trainer = CAPOTrainer(build_allocator("tiny-statistics"), ScriptedRollout(), _config(out), _dataset(2),
                          processor=processor)
    trainer.save_resadapt()
    assert (out / "checkpoint-1").is_dir() and not (out / "allocator" / "stale.bin").exists()
    assert (out / "allocator" / "model.safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    assert ResAdaptProcessor.from_pretrained(out).budget == 0.4

    def broken(folder):
        (folder / "half.json").write_text("{")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_folder_atomically(broken, out)
    assert not (out / "half.json").exists()


def test_push_to_hub_uploads_the_complete_repo(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo_id, **kw: calls.append(repo_id))
    monkeypatch.setattr(huggingface_hub, "upload_folder", lambda **kw: calls.append(kw))
    _, backbone = tiny_backbone("qwen2_5_vl")
    processor = ResAdaptProcessor.from_backbone(backbone, budget=0.4)
    trainer = CAPOTrainer(build_allocator("tiny-statistics"), ScriptedRollout(),
                          _config(tmp_path, hub_model_id="me/capo-test"), _dataset(2), processor=processor)
    trainer.push_to_hub()
    assert calls[0] == "me/capo-test"
    folder = calls[1]["folder_path"]
    names = {p.name for p in folder.iterdir()}
    assert {"processor_config.json", "processing_resadapt.py", "allocator", "README.md"} <= names
    loaded = ResAdaptProcessor.from_pretrained(folder)
    assert loaded.budget == 0.4 and loaded.allocator is not None
    # checkpoints (with their training_args.bin pickle) are never uploaded: only the validated export above
    calls.clear()
    trainer.save_model(str(tmp_path / "checkpoint-1"))
    assert trainer._push_from_checkpoint(str(tmp_path / "checkpoint-1")) is None and calls == []


def test_video_records_are_decoded_once_per_step(tmp_path):
    from resadapt_hf.sample_clips import write_demo_clip

    path = write_demo_clip(tmp_path / "clip.mp4", num_frames=12)
    seen = []

    class Recording(ScriptedRollout):
        def __call__(self, requests, **kwargs):
            seen.extend((tuple(r.frames.shape), r.frame_scales.shape) for r in requests)
            return super().__call__(requests, **kwargs)

    data = [{"video": str(path), "question": "Which letter?", "answer": "B", "problem_type": "multiple_choice",
             "options": ["A. x", "B. y"]}]
    CAPOTrainer(build_allocator("tiny-statistics"), Recording(), _config(tmp_path, max_steps=1, video_num_frames=6),
                data).train()
    assert seen == [((6, 120, 160, 3), torch.Size([2, 6]))]
