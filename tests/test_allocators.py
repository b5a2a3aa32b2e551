"""Allocator presets, repo export, and the allocator inside processors of different backbones."""

import pytest
import torch

from conftest import chat_text, random_video, tiny_backbone
from resadapt_hf import PriorAllocator, ResAdaptProcessor
from resadapt_hf.allocators import PRESETS, build_allocator, save_resadapt
from resadapt_hf.modeling.configuration_resadapt import ResAdaptConfig
from resadapt_hf.modeling.modeling_resadapt import ResAdaptAllocator


def test_presets_build_offline():
    tiny = build_allocator("tiny")
    assert isinstance(tiny, ResAdaptAllocator) and tiny.config.encoder_type == "smolvlm"
    assert not any(p.requires_grad for p in tiny.encoder.parameters())
    statistics = build_allocator("tiny-statistics", hidden_size=32, num_heads=2, head_dim=16)
    assert statistics.config.encoder_type == "statistics" and statistics.config.hidden_size == 32
    assert isinstance(build_allocator("prior", strength=0.3), PriorAllocator)
    with pytest.raises(ValueError, match="config_or_preset"):
        build_allocator("huge")
    assert {"default", "fast"} <= set(PRESETS)


def test_default_presets_configs_without_download():
    # the paper configuration and the 256 px option are plain configs; building their weights needs the encoder
    assert ResAdaptConfig().encoder_image_size == 512 and ResAdaptConfig().hidden_size == 1024
    assert ResAdaptConfig(encoder_image_size=256).encoder_image_size == 256


def test_one_allocator_in_front_of_different_backbones():
    """Nothing in the Allocator depends on the backbone: the same object serves Qwen2.5-VL and Qwen3-VL."""
    allocator = build_allocator("tiny-statistics")
    video = random_video(8, 96, 128)
    plans = []
    for family in ("qwen2_5_vl", "qwen3_vl"):
        model, backbone = tiny_backbone(family)
        processor = ResAdaptProcessor.from_backbone(backbone, allocator=allocator)
        processor.prepare_backbone(model)
        text = chat_text(backbone, "image", "video", question="Which digit is shown?")
        image = random_video(1, 60, 80, seed=3)[0]
        plan = processor.allocate(text=text, images=[image], videos=[video])
        plans.append(plan.scales)
        inputs = processor(text=[text], images=[image], videos=[video], allocation=plan, return_tensors="pt")
        with torch.no_grad():
            model.generate(**inputs, max_new_tokens=2)
    assert plans[0] == plans[1] and len(plans[0]) == 9  # one scale per image + one per frame, same question


def test_allocator_returning_the_wrong_frame_count_is_rejected():
    _, backbone = tiny_backbone("qwen2_5_vl")

    class Broken:
        def predict_scales(self, media, text):
            return [[1.0] * (m.shape[0] - 1) for m in media]

    processor = ResAdaptProcessor.from_backbone(backbone, allocator=Broken())
    with pytest.raises(ValueError, match="scales: expected 8"):
        processor.allocate(text=chat_text(backbone, "video"), videos=random_video(8))


def test_save_resadapt_writes_a_complete_folder(tmp_path):
    _, backbone = tiny_backbone("qwen3_vl")
    repo = save_resadapt(tmp_path / "repo", build_allocator("tiny-statistics"), backbone, budget=0.3)
    names = {p.name for p in repo.iterdir()}
    assert {"processor_config.json", "processing_resadapt.py", "modeling_resadapt.py", "allocator"} <= names
    assert {"config.json", "model.safetensors"} <= {p.name for p in (repo / "allocator").iterdir()}
    loaded = ResAdaptProcessor.from_pretrained(repo)
    assert loaded.budget == 0.3 and loaded.backbone_processor_class == "Qwen3VLProcessor"
    assert loaded.allocator.config.encoder_type == "statistics"


def test_processor_config_records_the_backbone(tmp_path):
    import json

    _, backbone = tiny_backbone("qwen2_5_vl")
    processor = ResAdaptProcessor.from_backbone(backbone, backbone_name_or_path="Qwen/Qwen2.5-VL-7B-Instruct")
    processor.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "processor_config.json").read_text())
    assert config["backbone_name_or_path"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert config["backbone_processor_class"] == "Qwen2_5_VLProcessor"


def test_load_allocator_from_folders_without_running_remote_code(tmp_path):
    from resadapt_hf.loading import load_allocator

    _, backbone = tiny_backbone("qwen2_5_vl")
    allocator = build_allocator("tiny-statistics")
    save_resadapt(tmp_path / "repo", allocator, backbone)  # complete repo: allocator/ subfolder
    allocator.save_pretrained(tmp_path / "bare")  # bare Allocator folder
    save_resadapt(tmp_path / "prior_repo", build_allocator("prior"), backbone)
    for folder in ("repo", "bare"):
        loaded = load_allocator(tmp_path / folder)
        assert type(loaded) is ResAdaptAllocator  # the package's class, not a dynamic remote-code module
        for (name, a), (_, b) in zip(allocator.state_dict().items(), loaded.state_dict().items()):
            assert torch.equal(a, b), name
    assert type(load_allocator(tmp_path / "prior_repo")).__name__ == "PriorAllocator"
    with pytest.raises(ValueError, match="holds no allocator"):
        load_allocator(tmp_path)
