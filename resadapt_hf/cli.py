"""``resadapt`` command line: ``resadapt train``, ``resadapt eval`` (budget-controlled evaluation,
:mod:`resadapt_hf.evaluate`), ``resadapt push`` (export, validate and upload a Hub repo, :mod:`resadapt_hf.hub`) and
``resadapt demo``.

``resadapt train`` is typed the way TRL's scripts are: every :class:`TrainScriptArguments` and
:class:`~resadapt_hf.capo_config.CAPOConfig` field is a ``--field value`` flag (``transformers.HfArgumentParser``),
and ``--config file.yaml`` supplies values that flags override::

    resadapt train --config train.yaml --learning_rate 1e-4 --max_steps 200
    torchrun --nproc_per_node 8 -m resadapt_hf.cli train --config train.yaml

    # train.yaml
    task: dataset              # "dataset" (a backbone answers) or "synthetic" (the needle task, CPU)
    dataset: data/train.jsonl  # the resadapt_hf.data schema
    backbone: Qwen/Qwen2.5-VL-7B-Instruct
    allocator: default
    budget: 0.25
    num_generations: 8
    per_device_train_batch_size: 16
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Sequence

from transformers import HfArgumentParser, set_seed

from .config_files import given_values

__all__ = ["TrainScriptArguments", "main", "parse_train_args", "train"]

TASKS = ("dataset", "synthetic", "reader")
READER_SAMPLES = 256  # task=reader: training videos when --reader_samples is not given
RESAMPLE = ("bilinear", "bicubic")


@dataclass
class TrainScriptArguments:
    """What ``resadapt train`` trains against (the optimisation settings are :class:`CAPOConfig` fields)."""

    task: str = field(default="dataset", metadata={
        "help": "'dataset': a HF backbone answers the records of --dataset; 'synthetic': the needle task with its "
                "calibrated reader (CPU); 'reader': the reader task's training split answered by --backbone "
                "(default tiny-reader, the trained tiny VLM: the whole real path on CPU).",
        "choices": list(TASKS)})
    dataset: str | None = field(default=None, metadata={
        "help": "Records in the resadapt_hf.data schema: .json/.jsonl, a datasets folder or a Hub dataset."})
    backbone: str | None = field(default=None, metadata={
        "help": "Hub id or path of a Qwen-VL checkpoint, tiny-reader (the trained tiny reader, CPU), or "
                "tiny-qwen2_vl / tiny-qwen2_5_vl / tiny-qwen3_vl (random weights)."})
    allocator: str = field(default="default", metadata={
        "help": "Allocator to train: a resadapt_hf.allocators preset (default, fast, tiny-statistics, ...) or a "
                "saved Allocator folder / repo."})
    budget: float | None = field(default=None, metadata={
        "help": "Retention budget saved in the exported processor (the Allocator is trained without one)."})
    max_visual_tokens: int | None = field(default=None, metadata={
        "help": "Hard visual-token cap saved in the exported processor."})
    resample: str = field(default="bilinear", metadata={
        "help": "Resize operator of the processor.", "choices": list(RESAMPLE)})
    reader_samples: int | None = field(default=None, metadata={
        "help": "task=reader: training videos (resadapt_hf.reader_task, training split; default 256)."})
    synthetic: str = field(default="{}", metadata={
        "help": "task=synthetic: JSON object of NeedleTaskConfig fields plus num_samples (default 256), e.g. "
                "'{\"num_samples\": 64, \"num_frames\": 8}'."})

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.task == "dataset" and (not self.dataset or not self.backbone):
            raise ValueError("task=dataset needs --dataset and --backbone")
        if self.task == "reader":
            if self.dataset is not None:
                raise ValueError(f"task=reader makes its own records; got --dataset {self.dataset!r}")
            self.backbone = self.backbone or "tiny-reader"
            self.reader_samples = READER_SAMPLES if self.reader_samples is None else self.reader_samples
            if not isinstance(self.reader_samples, int) or self.reader_samples < 1:
                raise ValueError(f"reader_samples must be an int >= 1, got {self.reader_samples!r}")
        elif self.reader_samples is not None:
            raise ValueError(f"reader_samples applies to task=reader only, got it with task={self.task}")
        if self.resample not in RESAMPLE:
            raise ValueError(f"resample must be one of {RESAMPLE}, got {self.resample!r}")
        settings = json.loads(self.synthetic) if isinstance(self.synthetic, str) else self.synthetic
        if not isinstance(settings, dict):
            raise ValueError(f"synthetic must be a JSON object of NeedleTaskConfig fields, got {self.synthetic!r}")
        self.synthetic = json.dumps(settings)

    @property
    def synthetic_settings(self) -> dict:
        return json.loads(self.synthetic)


def parse_train_args(argv: Sequence[str]):
    """``(TrainScriptArguments, CAPOConfig)`` from ``[--config FILE] [--field value ...]`` (options override the
    file; see :mod:`resadapt_hf.config_files`)."""
    from .capo_config import CAPOConfig

    types = (TrainScriptArguments, CAPOConfig)
    parser = HfArgumentParser(types, prog="resadapt train", description="Train a ResAdapt Allocator with CAPO.")
    parser.add_argument("--config", metavar="FILE", help="YAML/JSON file of settings; options override its values")
    script, config = parser.parse_dict(given_values(parser, types, argv))
    return script, config


def train(script: TrainScriptArguments, config) -> int:
    """Build the rollout, Allocator and data of ``script``, train with CAPO, save (and push) the ResAdapt repo."""
    from .data import load_records
    from .loading import load_allocator, load_backbone
    from .processing.processing_resadapt import ResAdaptProcessor
    from .rewards import SYSTEM_PROMPT
    from .rollout import BackboneRollout
    from .trainer import CAPOTrainer

    set_seed(config.seed)  # the Allocator's initial weights: the same in every process and every run of this seed
    allocator = load_allocator(script.allocator)
    if script.task == "synthetic":
        from .synthetic import NeedleRollout, NeedleTaskConfig, make_needle_dataset

        settings = script.synthetic_settings
        num_samples = int(settings.pop("num_samples", 256))
        needle = NeedleTaskConfig(**settings)
        records, rollout, processor = make_needle_dataset(needle, num_samples), NeedleRollout(needle), None
    else:
        model, backbone_processor = load_backbone(script.backbone)
        processor = ResAdaptProcessor.from_backbone(
            backbone_processor, backbone_name_or_path=script.backbone, budget=script.budget,
            max_visual_tokens=script.max_visual_tokens, resample=script.resample,
        )
        rollout = BackboneRollout(model, processor, system_prompt=SYSTEM_PROMPT)
        if script.task == "reader":
            from .reader_task import SPLIT_SEEDS, reader_records

            records = reader_records(script.reader_samples, seed=SPLIT_SEEDS["train"])
        else:
            records = load_records(script.dataset)
    trainer = CAPOTrainer(allocator, rollout, config, records, processor=processor)
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model(config.output_dir)
    if processor is not None:
        trainer.save_resadapt(config.output_dir)
        if config.push_to_hub:
            trainer.push_to_hub()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "train": "train an Allocator with CAPO (--config FILE.yaml and/or --field value flags; --help lists them)",
        "eval": "evaluate allocators against a backbone at matched budgets",
        "push": "export, validate and upload a ResAdapt repo to the Hub",
        "demo": "the processor demo (make demo)",
    }
    if not argv or argv[0] not in commands:
        parser = argparse.ArgumentParser(prog="resadapt", description="ResAdapt: adaptive per-frame resolution for Qwen-VL.")
        sub = parser.add_subparsers(dest="command", required=True)
        for name, help_text in commands.items():
            sub.add_parser(name, help=help_text, add_help=False)
        parser.parse_args(argv)  # prints usage / the unknown-command error and exits
        return 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        return train(*parse_train_args(rest))
    if command == "eval":
        from .evaluate import main as eval_main

        return eval_main(rest)
    if command == "push":
        from .hub import add_push_arguments, run_push

        return run_push(add_push_arguments(argparse.ArgumentParser(prog="resadapt push")).parse_args(rest))
    from .demo import main as demo_main

    return demo_main(rest)


if __name__ == "__main__":
    sys.exit(main())
