"""The trained tiny reader shipped in the package: it loads offline by name, and on held-out reader videos it
answers through the real path (ResAdaptProcessor + prepare_backbone + generate, the trainer's own prompt, the
project's graders): right at scale 1, near chance at the floor, more often right with every step of resolution of
the needle chunk, and right when only the needle chunk is kept."""

import json
from pathlib import Path

import pytest
import torch

from resadapt_hf.evaluate.metrics import score_completion
from resadapt_hf.loading import load_backbone
from resadapt_hf.processing.processing_resadapt import ResAdaptProcessor
from resadapt_hf.reader_task import SPLIT_SEEDS, needle_only_scales, reader_records
from resadapt_hf.rewards import SYSTEM_PROMPT, format_ok
from resadapt_hf.rollout import BackboneRollout, GenerationSettings, RolloutRequest
from resadapt_hf.tiny_reader import READER_ALLOCATOR_DIR, READER_DIR, reader_completion

REPO = Path(__file__).resolve().parents[1]
NUM_VIDEOS = 48


@pytest.fixture(scope="module")
def reader():
    model, backbone_processor = load_backbone("tiny-reader", device="cpu")
    processor = ResAdaptProcessor.from_backbone(backbone_processor)
    return model, processor, BackboneRollout(model, processor, system_prompt=SYSTEM_PROMPT)


def test_shipped_files_are_small_and_complete():
    names = {p.name for p in READER_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "processor_config.json"} <= names
    assert (READER_DIR / "model.safetensors").stat().st_size <= 10 * 2**20
    assert (READER_ALLOCATOR_DIR / "model.safetensors").stat().st_size <= 10 * 2**20
    assert json.loads((READER_DIR / "config.json").read_text())["model_type"] == "qwen2_5_vl"


def test_loads_by_name_offline(reader):
    model, processor, _ = reader
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert not model.training and next(model.parameters()).dtype == torch.float32
    assert type(processor.backbone_processor).__name__ == "Qwen2_5_VLProcessor"


def _answers(rollout, records, scale_rows):
    requests = [RolloutRequest(r, r["frames"], torch.tensor([rows], dtype=torch.float32))
                for r, rows in zip(records, scale_rows)]
    settings = GenerationSettings(max_new_tokens=48, do_sample=False, prompts_per_call=8)
    results = rollout(requests, num_rollouts=1, generation=settings)
    completions = [res.completions[0][0] for res in results]
    correct = [score_completion(r, c)["correct"] for r, c in zip(records, completions)]
    tokens = [float(res.retention[0]) for res in results]
    return completions, sum(correct) / len(correct), sum(tokens) / len(tokens)


def test_reads_at_scale_1_and_not_at_the_floor(reader):
    _, _, rollout = reader
    records = reader_records(NUM_VIDEOS, seed=SPLIT_SEEDS["test"])
    completions, full, _ = _answers(rollout, records, [[1.0] * 8 for _ in records])
    assert all(format_ok(c) for c in completions), completions[:3]
    assert completions[0] in {reader_completion(letter) for letter in "ABCD"}
    assert full >= 0.85, full
    _, floor, retention = _answers(rollout, records, [[0.2] * 8 for _ in records])
    assert floor <= 0.5, floor
    assert retention < 0.2


def test_needle_chunk_alone_is_enough(reader):
    _, _, rollout = reader
    records = reader_records(NUM_VIDEOS, seed=SPLIT_SEEDS["test"])
    _, needle_only, retention = _answers(rollout, records, [needle_only_scales(r) for r in records])
    assert needle_only >= 0.8, needle_only
    assert retention < 0.4, retention


def test_accuracy_rises_with_the_needle_chunk_size(reader):
    """The monotone curve an Allocator can climb: the needle chunk at 84, 112 and 168 px (the others at the floor)."""
    _, _, rollout = reader
    records = reader_records(NUM_VIDEOS, seed=SPLIT_SEEDS["test"])
    accuracy = {scale: _answers(rollout, records, [needle_only_scales(r, high=scale) for r in records])[1]
                for scale in (0.5, 0.75, 1.0)}
    assert accuracy[0.5] + 0.1 <= accuracy[0.75] and accuracy[0.75] + 0.1 <= accuracy[1.0], accuracy


def test_training_script_smoke(tmp_path):
    """scripts/train_reader.py runs all its stages and writes a model that loads back."""
    import subprocess
    import sys

    out, results = tmp_path / "model", tmp_path / "results"
    cmd = [sys.executable, str(REPO / "scripts" / "train_reader.py"), "--vision_steps", "2", "--steps", "3",
           "--scale1_steps", "1", "--freeze_vision_steps", "1", "--batch_size", "4", "--eval_every", "2",
           "--eval_samples", "4", "--threads", "1", "--out", str(out), "--results", str(results)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    report = json.loads((results / "training.json").read_text())
    assert [row["step"] for row in report["curve"]] == [1, 2, 3]
    assert len(report["vision_pretraining_curve"]) == 2
    assert set(report["validation_teacher_forced"]) >= {"1.0", "0.2", "needle_only"}
    assert (results / "training_curve.png").stat().st_size > 1000
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(out)
    assert model.config.vision_config.depth == 2
