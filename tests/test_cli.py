"""The ``resadapt`` command line: typed flags and YAML config files (TRL-script style) for ``resadapt train``."""

import json

import numpy as np
import pytest
import yaml

from resadapt_hf.cli import main, parse_train_args
from resadapt_hf.config_files import config_file_argv


def test_train_on_a_dataset_with_a_tiny_backbone(tmp_path):
    rows = [{"frames": np.random.default_rng(i).integers(0, 256, (4, 48, 64, 3)).astype(np.uint8).tolist(),
             "question": "Which letter?", "answer": "A", "problem_type": "multiple_choice",
             "options": ["A. one", "B. two"]} for i in range(2)]
    (tmp_path / "train.json").write_text(json.dumps(rows))
    config = {
        "task": "dataset", "dataset": str(tmp_path / "train.json"), "backbone": "tiny-qwen2_5_vl",
        "allocator": "tiny-statistics", "max_completion_length": 2, "output_dir": str(tmp_path / "out"),
        "num_generations": 2, "per_device_train_batch_size": 2, "max_steps": 1, "report_to": [], "budget": 0.5,
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(tmp_path / "train.yaml"), "--learning_rate", "0.01"]) == 0
    out = tmp_path / "out"
    assert (out / "processor_config.json").exists() and (out / "allocator" / "model.safetensors").exists()
    assert json.loads((out / "processor_config.json").read_text())["budget"] == 0.5


def test_config_file_values_are_typed_and_flags_override_them(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "num_generations: 4\ncost_mode: capo\nlearning_rate: 3e-4\nsave_strategy: no\nreport_to: []\n"
        "task: synthetic\nsynthetic: {num_samples: 8, num_frames: 4}\nallocator: tiny-statistics\n"
        "per_device_train_batch_size: 8\n"
    )
    script, config = parse_train_args(["--config", str(tmp_path / "c.yaml"), "--cost_mode", "direct",
                                       "--output_dir", str(tmp_path / "o")])
    assert config.cost_mode == "direct" and config.num_generations == 4
    assert config.learning_rate == 3e-4  # YAML 1.1 reads "3e-4" as a string; the parser types it
    assert config.save_strategy == "no"  # YAML reads `no` as false; given back as "no" for a string field
    assert script.synthetic_settings == {"num_samples": 8, "num_frames": 4}
    # null sets None (the parser cannot take it as a value); a flag still overrides it
    (tmp_path / "n.yaml").write_text("task: synthetic\nvideo_num_frames: null\nbudget: null\n")
    _, config = parse_train_args(["--config", str(tmp_path / "n.yaml"), "--output_dir", str(tmp_path / "o")])
    assert config.video_num_frames is None
    _, config = parse_train_args(["--config", str(tmp_path / "n.yaml"), "--video_num_frames", "8",
                                  "--output_dir", str(tmp_path / "o")])
    assert config.video_num_frames == 8
    with pytest.raises(ValueError, match="not_a_field"):
        config_file_argv(_write(tmp_path / "bad.yaml", "not_a_field: 1\n"), ())


def _write(path, text):
    path.write_text(text)
    return path


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        parse_train_args(["--task", "poetry"])
    with pytest.raises(ValueError, match="dataset"):
        parse_train_args(["--task", "dataset", "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="use_vllm"):
        parse_train_args(["--task", "synthetic", "--use_vllm", "true", "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="synthetic"):
        parse_train_args(["--task", "synthetic", "--synthetic", "[1]", "--output_dir", str(tmp_path)])


def test_train_on_the_synthetic_needle_task(tmp_path):
    config = {
        "task": "synthetic", "allocator": "tiny-statistics", "output_dir": str(tmp_path / "out"),
        "num_generations": 4, "per_device_train_batch_size": 4, "max_steps": 2, "report_to": [],
        "logging_steps": 1, "synthetic": {"num_samples": 4},
    }
    (tmp_path / "synthetic.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(tmp_path / "synthetic.yaml")]) == 0
    assert (tmp_path / "out" / "model.safetensors").exists()
    state = json.loads((tmp_path / "out" / "checkpoint-2" / "trainer_state.json").read_text())
    logged = [h for h in state["log_history"] if "retention" in h]
    assert logged and all(0 < h["retention"] <= 1.8**2 for h in logged)


def test_train_on_the_reader_task_with_the_trained_reader(tmp_path):
    """task=reader: the real path on CPU (the shipped tiny reader answers through BackboneRollout)."""
    out = tmp_path / "out"
    assert main(["train", "--task", "reader", "--reader_samples", "4", "--allocator", "tiny-statistics",
                 "--max_completion_length", "48", "--num_generations", "2", "--per_device_train_batch_size", "4",
                 "--max_steps", "1", "--report_to", "none", "--output_dir", str(out), "--video_num_frames", "8"]) == 0
    assert json.loads((out / "processor_config.json").read_text())["backbone_name_or_path"] == "tiny-reader"
    assert (out / "allocator" / "model.safetensors").exists()
    script, _ = parse_train_args(["--task", "reader", "--output_dir", str(tmp_path / "o")])
    assert script.backbone == "tiny-reader"
    with pytest.raises(ValueError, match="task=reader makes its own records"):
        parse_train_args(["--task", "reader", "--dataset", "x.json", "--output_dir", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="reader_samples must be an int >= 1"):
        parse_train_args(["--task", "reader", "--reader_samples", "0", "--output_dir", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="reader_samples applies to task=reader only"):
        parse_train_args(["--task", "synthetic", "--reader_samples", "8", "--output_dir", str(tmp_path / "o")])
    script, _ = parse_train_args(["--task", "reader", "--output_dir", str(tmp_path / "o")])
    assert script.reader_samples == 256


def test_the_shipped_reader_capo_config_parses(tmp_path):
    """scripts/reader_capo.yaml (the README's CAPO-on-the-reader command) holds valid, typed settings."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "reader_capo.yaml"
    script, config = parse_train_args(["--config", str(path), "--output_dir", str(tmp_path / "o")])
    assert script.task == "reader" and script.backbone == "tiny-reader"
    assert (config.max_steps, config.num_generations, config.learning_rate) == (120, 8, 2e-3)
    assert (config.tau_fix, config.lambda_capo, config.cost_gamma, config.video_num_frames) == (0.1, 1.0, 0.2, 8)
    assert config.save_strategy == "no" and config.report_to == []
