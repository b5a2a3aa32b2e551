"""The ``resadapt`` command line."""

import json

import numpy as np
import pytest
import yaml

from resadapt_hf.cli import load_train_config, main


def test_train_on_a_dataset_with_a_tiny_backbone(tmp_path):
    rows = [{"frames": np.random.default_rng(i).integers(0, 256, (4, 48, 64, 3)).astype(np.uint8).tolist(),
             "question": "Which letter?", "answer": "A", "problem_type": "multiple_choice",
             "options": ["A. one", "B. two"]} for i in range(2)]
    (tmp_path / "train.json").write_text(json.dumps(rows))
    config = {
        "task": "dataset", "dataset": str(tmp_path / "train.json"), "backbone": "tiny-qwen2_5_vl",
        "allocator": "tiny-statistics", "max_new_tokens": 2, "output_dir": str(tmp_path / "out"),
        "num_generations": 2, "per_device_train_batch_size": 2, "max_steps": 1, "use_cpu": True, "report_to": [],
        "processor": {"budget": 0.5},
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(tmp_path / "train.yaml"), "--set", "learning_rate=0.01"]) == 0
    out = tmp_path / "out"
    assert (out / "processor_config.json").exists() and (out / "allocator" / "model.safetensors").exists()
    assert json.loads((out / "processor_config.json").read_text())["budget"] == 0.5


def test_config_overrides_and_errors(tmp_path):
    (tmp_path / "c.yaml").write_text("num_generations: 4\ncost_mode: capo\n")
    values = load_train_config(str(tmp_path / "c.yaml"), ["cost_mode=direct", "learning_rate=3e-4", "x=[1, 2]"])
    assert values == {"num_generations": 4, "cost_mode": "direct", "learning_rate": 3e-4, "x": [1, 2]}
    with pytest.raises(ValueError, match="--set"):
        load_train_config(None, ["novalue"])
    with pytest.raises(ValueError, match="task"):
        main(["train", "--set", "task=poetry", "--set", f"output_dir={tmp_path}", "--set", "use_cpu=true",
              "--set", "allocator=tiny-statistics"])


def test_train_on_the_synthetic_needle_task(tmp_path):
    config = {
        "task": "synthetic", "allocator": "tiny-statistics", "output_dir": str(tmp_path / "out"),
        "num_generations": 4, "per_device_train_batch_size": 4, "max_steps": 2, "use_cpu": True, "report_to": [],
        "logging_steps": 1, "synthetic": {"num_samples": 4},
    }
    (tmp_path / "synthetic.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(tmp_path / "synthetic.yaml")]) == 0
    assert (tmp_path / "out" / "model.safetensors").exists()
    state = json.loads((tmp_path / "out" / "checkpoint-2" / "trainer_state.json").read_text())
    logged = [h for h in state["log_history"] if "retention" in h]
    assert logged and all(0 < h["retention"] <= 1.8**2 for h in logged)
