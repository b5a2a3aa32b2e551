"""CAPOTrainer: a real (tiny) backbone in the loop, only the Allocator learns, checkpoint/resume is exact."""

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from conftest import tiny_backbone
from resadapt_hf import ResAdaptProcessor
from resadapt_hf.allocators import build_allocator
from resadapt_hf.trainer import BackboneRollout, CAPOConfig, CAPOTrainer


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
        max_steps=2, learning_rate=1e-2, logging_steps=1, save_steps=2, report_to=[], use_cpu=True, seed=0,
        save_strategy="steps", disable_tqdm=True,
    )
    values.update(overrides)
    return CAPOConfig(**values)


class ScriptedRollout:
    """Answers B when the mean scale is above 1, else A: cost and correctness pull against each other."""

    def __call__(self, record, frames, frame_scales, num_rollouts):
        answers = ["B" if s.mean() > 1.0 else "A" for s in frame_scales]
        completions = [[f"<think>look</think><answer>\\boxed{{{a}}}</answer>"] * num_rollouts for a in answers]
        return completions, (frame_scales**2).mean(-1)


def test_two_steps_with_a_frozen_tiny_backbone(tmp_path):
    model, backbone = tiny_backbone("qwen2_5_vl")
    processor = ResAdaptProcessor.from_backbone(backbone)
    rollout = BackboneRollout(model, processor, max_new_tokens=3)
    allocator = build_allocator("tiny-statistics")
    before_backbone = {k: v.clone() for k, v in model.state_dict().items()}
    before = {k: v.clone() for k, v in allocator.predictor.state_dict().items()}
    trainer = CAPOTrainer(allocator, rollout, _config(tmp_path), _dataset(), processor=processor)
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
    with pytest.raises(NotImplementedError):
        _config(tmp_path, train_backbone=True)
    assert _config(tmp_path).epsilon_high == 0.28


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
        def __call__(self, record, frames, frame_scales, num_rollouts):
            seen.append((tuple(frames.shape), frame_scales.shape))
            return super().__call__(record, frames, frame_scales, num_rollouts)

    data = [{"video": str(path), "question": "Which letter?", "answer": "B", "problem_type": "multiple_choice",
             "options": ["A. x", "B. y"]}]
    CAPOTrainer(build_allocator("tiny-statistics"), Recording(), _config(tmp_path, max_steps=1, video_num_frames=6),
                data).train()
    assert seen == [((6, 120, 160, 3), torch.Size([2, 6]))]


def test_backbone_rollout_keeps_the_video_frame_rate(tmp_path, monkeypatch):
    # Qwen2.5-VL's temporal positions use seconds per chunk = temporal_patch_size / fps of the file
    from resadapt_hf.data import decode_record
    from resadapt_hf.sample_clips import write_demo_clip

    model, backbone = tiny_backbone("qwen2_5_vl")
    path = write_demo_clip(tmp_path / "clip.mp4", num_frames=8, fps=4)
    record = decode_record({"video": str(path), "question": "What moves?", "answer": "A",
                            "problem_type": "multiple_choice", "options": ["A. a", "B. b"]})
    assert record["clip"].fps == 4 and record["clip"].frames is record["frames"]
    seen = []
    original = model.generate

    def spy(**inputs):
        seen.append(inputs["second_per_grid_ts"].tolist())
        return original(**inputs)

    monkeypatch.setattr(model, "generate", spy, raising=False)
    rollout = BackboneRollout(model, ResAdaptProcessor.from_backbone(backbone), max_new_tokens=2, do_sample=False)
    rollout(record, record["frames"], torch.ones(1, 8), num_rollouts=1)
    assert seen == [[0.5]]  # 2 frames per chunk at 4 fps, not the rate assumed for raw frames
