"""save_pretrained -> AutoProcessor.from_pretrained(trust_remote_code=True) in a clean process without resadapt_hf."""

import json
import os
import textwrap

import torch

from conftest import chat_text, random_video, run_without_package, tiny_backbone
from resadapt_hf import ResAdaptProcessor

CLEAN_LOADER = textwrap.dedent(
    """
    import sys
    import numpy as np, torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    repo = sys.argv[1]
    processor = AutoProcessor.from_pretrained(repo, trust_remote_code=True)
    model = processor.prepare_backbone(AutoModelForImageTextToText.from_pretrained(repo))
    video = np.random.default_rng(0).integers(0, 256, (8, 90, 120, 3), dtype=np.uint8)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], videos=[video], scales=[0.3, 0.5, 1.0, 1.0, 1.8, 1.6, 0.6, 0.6], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    budgeted = processor.allocate(text=text, videos=video)
    print("RESULT", type(processor).__module__, inputs["video_grid_thw"].tolist(), out[0, -3:].tolist(),
          round(budgeted.retention, 4), processor.budget)
    """
)


def test_remote_code_round_trip(tmp_path):
    model, backbone = tiny_backbone("qwen2_5_vl")
    processor = ResAdaptProcessor.from_backbone(backbone, budget=0.5, resample="bicubic")
    processor.prepare_backbone(model)
    repo = tmp_path / "repo"
    processor.save_pretrained(repo)
    model.save_pretrained(repo)
    files = set(os.listdir(repo))
    assert {"processing_resadapt.py", "resize_plan.py", "video_input.py", "backbones.py", "processor_config.json"} <= files
    config = json.loads((repo / "processor_config.json").read_text())
    assert config["auto_map"]["AutoProcessor"] == "processing_resadapt.ResAdaptProcessor"
    assert config["budget"] == 0.5 and config["resample"] == "bicubic" and config["max_scale"] == 1.8
    # the backbone processor we wrapped was copied, not rewritten to point at ResAdapt
    assert getattr(backbone.video_processor, "auto_map", None) is None
    for name in files:  # Hub files import only torch/transformers/stdlib and siblings
        if name.endswith(".py"):
            source = (repo / name).read_text()
            assert "import numpy" not in source and "resadapt_hf" not in source.replace("resadapt_hf.processing", "")

    result = run_without_package(CLEAN_LOADER, repo, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(l for l in result.stdout.splitlines() if l.startswith("RESULT"))
    assert "transformers_modules" in line

    # same inputs and tokens in this process, through the installed package
    text = chat_text(backbone, "video")
    video = random_video(8)
    inputs = processor(text=[text], videos=[video], scales=[0.3, 0.5, 1.0, 1.0, 1.8, 1.6, 0.6, 0.6], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert str(inputs["video_grid_thw"].tolist()) in line
    assert str(out[0, -3:].tolist()) in line
    assert line.split()[-1] == "0.5"


LEARNED_LOADER = CLEAN_LOADER.replace(
    "inputs = processor(text=[text], videos=[video], scales=[0.3, 0.5, 1.0, 1.0, 1.8, 1.6, 0.6, 0.6], return_tensors=\"pt\")",
    "inputs = processor(text=[text], videos=[video], return_tensors=\"pt\")\n"
    "plan = processor.allocate(text=text, videos=video, budget=None)\n"
    "print('SCALES', type(processor.allocator).__module__, [round(s, 6) for s in plan.scales])",
)


def test_learned_allocator_repo_round_trip(tmp_path):
    from resadapt_hf.allocators import build_allocator, save_resadapt

    model, backbone = tiny_backbone("qwen2_5_vl")
    allocator = build_allocator("tiny")
    with torch.no_grad():  # make the policy non-trivial so that a wrong reload cannot pass by accident
        for p in allocator.predictor.parameters():
            p.add_(0.05 * torch.randn_like(p))
    repo = save_resadapt(tmp_path / "repo", allocator, backbone)
    model.save_pretrained(repo)
    assert (repo / "allocator" / "model.safetensors").exists() and not any(repo.rglob("*.bin"))
    result = run_without_package(LEARNED_LOADER, repo, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    scales_line = next(l for l in result.stdout.splitlines() if l.startswith("SCALES"))
    assert "transformers_modules" in scales_line
    processor = ResAdaptProcessor.from_backbone(backbone, allocator=allocator)
    plan = processor.allocate(text=chat_text(backbone, "video"), videos=random_video(8))
    expected = [round(s, 6) for s in plan.scales]
    assert len(set(expected)) > 1  # content- and weight-dependent, not a constant
    assert scales_line.endswith(str(expected))
    assert any(l.startswith("RESULT") for l in result.stdout.splitlines())
