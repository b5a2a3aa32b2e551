"""``resadapt`` command line: ``resadapt train --config file.yaml [--set key=value ...]``, ``resadapt eval ...``
(budget-controlled evaluation, :mod:`resadapt_hf.evaluate`), ``resadapt push ...`` (export, validate and upload a
Hub repo, :mod:`resadapt_hf.hub`) and ``resadapt demo``.

Training config (YAML; every key except the ones below is a :class:`CAPOConfig` field, e.g. ``num_generations``,
``learning_rate``, ``max_steps``, ``cost_mode``, ``output_dir``, ``push_to_hub``):

    task: dataset            # "dataset" (a backbone answers) or "synthetic" (the needle task, CPU)
    dataset: data/train.jsonl  # the resadapt_hf.data schema (task: dataset)
    backbone: Qwen/Qwen2.5-VL-7B-Instruct   # a Hub id / path, or "tiny-qwen2_5_vl" etc. for random tiny models
    allocator: default       # a preset of resadapt_hf.allocators or a saved allocator folder
    processor: {budget: null, resample: bilinear}   # ResAdaptProcessor settings
    max_new_tokens: 256
    synthetic: {num_samples: 256}   # NeedleTaskConfig fields + num_samples (task: synthetic)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Sequence

import yaml

_EXPONENT_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
_OWN_KEYS = ("task", "dataset", "backbone", "allocator", "processor", "max_new_tokens", "synthetic")


def _coerce(value):
    # YAML 1.1 reads "3e-4" (no dot) as a string; every CAPOConfig number should be a number
    if isinstance(value, str) and _EXPONENT_NUMBER.match(value):
        return float(value)
    if isinstance(value, dict):
        return {k: _coerce(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce(v) for v in value]
    return value


def _parse_value(text: str):
    return _coerce(yaml.safe_load(text))


def load_train_config(path: str | None, overrides: Sequence[str]) -> dict:
    """The YAML file (optional) with ``key=value`` overrides applied (values parsed as YAML)."""
    values = yaml.safe_load(Path(path).read_text()) if path else {}
    if not isinstance(values, dict):
        raise ValueError(f"--config: {path} must hold a mapping of settings")
    values = _coerce(values)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set: expected key=value, got {item!r}")
        key, value = item.split("=", 1)
        values[key.strip()] = _parse_value(value)
    return values


def train(values: dict) -> int:
    from .data import load_records
    from .loading import load_allocator, load_backbone
    from .processing.processing_resadapt import ResAdaptProcessor
    from .rewards import SYSTEM_PROMPT
    from .trainer import BackboneRollout, CAPOConfig, CAPOTrainer

    task = values.get("task", "dataset")
    config = CAPOConfig(**{k: v for k, v in values.items() if k not in _OWN_KEYS})
    allocator = load_allocator(values.get("allocator", "default"))
    if task == "synthetic":
        from .synthetic import NeedleRollout, NeedleTaskConfig, make_needle_dataset

        settings = dict(values.get("synthetic") or {})
        num_samples = int(settings.pop("num_samples", 256))
        needle = NeedleTaskConfig(**settings)
        records, rollout, processor = make_needle_dataset(needle, num_samples), NeedleRollout(needle), None
    elif task == "dataset":
        if not values.get("dataset") or not values.get("backbone"):
            raise ValueError("task: dataset needs 'dataset' and 'backbone'")
        model, backbone_processor = load_backbone(values["backbone"])
        settings = {"backbone_name_or_path": values["backbone"], **(values.get("processor") or {})}
        processor = ResAdaptProcessor.from_backbone(backbone_processor, **settings)
        rollout = BackboneRollout(model, processor, system_prompt=SYSTEM_PROMPT,
                                  max_new_tokens=int(values.get("max_new_tokens", 256)))
        records = load_records(values["dataset"])
    else:
        raise ValueError(f"task must be 'dataset' or 'synthetic', got {task!r}")
    trainer = CAPOTrainer(allocator, rollout, config, records, processor=processor)
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model(config.output_dir)
    if processor is not None:
        trainer.save_resadapt(config.output_dir)
        if config.push_to_hub:
            trainer.push_to_hub()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="resadapt", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train", help="train an Allocator with CAPO")
    train_cmd.add_argument("--config", help="YAML file of settings")
    train_cmd.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    from .evaluate import add_eval_arguments, run_eval
    from .hub import add_push_arguments, run_push

    add_eval_arguments(commands.add_parser("eval", help="evaluate allocators against a backbone at matched budgets"))
    add_push_arguments(commands.add_parser("push", help="export, validate and upload a ResAdapt repo to the Hub"))
    demo_cmd = commands.add_parser("demo", help="the processor demo (make demo)")
    demo_cmd.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "train":
        return train(load_train_config(args.config, args.set))
    if args.command == "eval":
        return run_eval(args)
    if args.command == "push":
        return run_push(args)
    from .demo import main as demo_main

    return demo_main(args.rest)


if __name__ == "__main__":
    sys.exit(main())
