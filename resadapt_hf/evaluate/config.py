"""The settings of one evaluation run (:class:`EvalConfig`), the output-folder layout and the fixed vocabularies.

Every field carries ``metadata["help"]``: :class:`transformers.HfArgumentParser` turns the dataclass into the
``resadapt eval`` command line (see :mod:`.cli`), so the field list IS the CLI.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Iterable, Literal

import numpy as np

from ..processing.resize_plan import DEFAULT_BUDGET_TOLERANCE, DEFAULT_MAX_SCALE, DEFAULT_MIN_SCALE

__all__ = [
    "ALLOCATOR_NAMES",
    "CONFIG_FILE",
    "DEFAULT_ALLOCATORS",
    "EvalConfig",
    "FRONTIER_FILE",
    "HEATMAP_FILE",
    "RECORDS_FILE",
    "RESAMPLE_CHOICES",
    "RESULTS_FILE",
    "RESULTS_FORMAT",
    "RESUME_FIELDS",
    "SYNTHETIC_BACKBONE",
    "SYNTHETIC_DATASET",
    "TASKS",
]

RESULTS_FORMAT = "resadapt-eval/1"
ALLOCATOR_NAMES = ("learned", "prior", "fixed", "random", "vanilla")
DEFAULT_ALLOCATORS = ("prior", "fixed", "random", "vanilla")
TASKS = ("dataset", "synthetic", "reader")
RESAMPLE_CHOICES = ("bilinear", "bicubic")
# output folder layout (the hub card generator reads results.json and the two plots)
RECORDS_FILE, RESULTS_FILE, CONFIG_FILE = "records.jsonl", "results.json", "config.json"
FRONTIER_FILE, HEATMAP_FILE = "frontier.png", "scale_heatmap.png"
SYNTHETIC_BACKBONE, SYNTHETIC_DATASET = "needle-reader", "synthetic-needle"
READER_DATASET = "reader-task"
# Fields that change what a record means; a run in an existing folder must agree on them to resume.
RESUME_FIELDS = (
    "task", "dataset", "split", "backbone", "learned", "num_frames", "fps", "max_new_tokens", "min_scale",
    "max_scale", "budget_tolerance", "resample", "system_prompt", "seed", "synthetic", "synthetic_start",
)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _help(text: str, **extra) -> dict:
    return {"help": text, **extra}


@dataclass
class EvalConfig:
    """Settings of one evaluation run. Every field has a default and a ``help`` text (shown by ``resadapt eval
    --help``); ``__post_init__`` validates them and raises ``ValueError`` naming the field and its accepted range."""

    out: str = field(default="eval_out", metadata=_help(
        "output folder (records.jsonl, results.json, frontier.png, scale_heatmap.png, config.json); an existing "
        "folder is resumed"))
    task: Literal["dataset", "synthetic", "reader"] = field(default="dataset", metadata=_help(
        "'dataset': a backbone answers the records of --dataset; 'synthetic': the needle task of "
        "resadapt_hf.synthetic, whose calibrated reader plays the backbone (CPU only); 'reader': the held-out "
        "split of the reader task (resadapt_hf.reader_task, 200 videos unless --num-samples), answered by "
        "--backbone (default tiny-reader, the trained tiny reader)"))
    dataset: str | None = field(default=None, metadata=_help(
        "records in the resadapt_hf.data schema: a .json/.jsonl file, a datasets save_to_disk folder or a Hub "
        "dataset name (task 'dataset')"))
    split: str = field(default="test", metadata=_help("split of a datasets dataset dict / Hub dataset"))
    backbone: str | None = field(default=None, metadata=_help(
        "Hub id or local path of a Qwen-VL checkpoint (placed by resadapt_hf.loading.load_backbone: bf16 on GPU, "
        "fp32 on CPU), tiny-reader for the trained tiny reader (CPU, the reader task), or tiny-<family> (e.g. "
        "tiny-qwen2_5_vl) for a tiny random model (task 'dataset')"))
    allocators: list[str] | None = field(default=None, metadata=_help(
        "allocators to compare, in report order, from " + ", ".join(ALLOCATOR_NAMES) + "; default: learned "
        "(when --learned is given), then " + " ".join(DEFAULT_ALLOCATORS), choices=ALLOCATOR_NAMES, metavar="NAME"))
    learned: str | None = field(default=None, metadata=_help(
        "the 'learned' allocator: a saved Allocator folder, a ResAdapt repo folder (allocator in allocator/), a "
        "Hub repo id or a resadapt_hf.allocators preset"))
    budgets: list[float] = field(default_factory=lambda: [0.75, 0.5, 0.25], metadata=_help(
        "target retention ratios, each in (0, max_scale**2]; every allocator except vanilla is evaluated at each",
        metavar="R"))
    num_samples: int | None = field(default=None, metadata=_help(
        "evaluate the first N records; None: all of them (the synthetic task makes 64)"))
    num_frames: int | None = field(default=32, metadata=_help(
        "frames sampled uniformly from every video (the paper uses 32); giving --fps alone drops this default"))
    fps: float | None = field(default=None, metadata=_help("sample videos at this rate instead of --num-frames"))
    max_new_tokens: int = field(default=256, metadata=_help(
        "greedy generation length of the backbone (the paper uses 256 for standard evaluation)"))
    min_scale: float = field(default=DEFAULT_MIN_SCALE, metadata=_help(
        "smallest per-frame scale of the allocators and the budget projection, in (0, 1]"))
    max_scale: float = field(default=DEFAULT_MAX_SCALE, metadata=_help(
        "largest per-frame scale of the allocators and the budget projection, >= 1"))
    budget_tolerance: float = field(default=DEFAULT_BUDGET_TOLERANCE, metadata=_help(
        "accepted |achieved retention - budget| of the budget solver, in (0, 1)"))
    resample: Literal["bilinear", "bicubic"] = field(default="bilinear", metadata=_help(
        "resize operator of the processor (the paper uses bilinear)"))
    system_prompt: bool = field(default=True, metadata=_help(
        "put rewards.SYSTEM_PROMPT (think/answer/boxed format) in the chat prompt, as in CAPO training "
        "(--no-system-prompt leaves it out)"))
    seed: int = field(default=0, metadata=_help("seeds torch and the random allocator (decoding is greedy)"))
    synthetic: dict | str | None = field(default_factory=dict, metadata=_help(
        "NeedleTaskConfig fields of the synthetic task as a JSON/YAML mapping, e.g. '{\"num_frames\": 8}'; its "
        "min_scale/max_scale come from this config"))
    synthetic_start: int = field(default=100_000, metadata=_help(
        "index of the first synthetic sample; the default keeps evaluation videos apart from the training videos "
        "(make_needle_dataset starts at 0)"))
    progress: bool = field(default=True, metadata=_help(
        "show a progress bar on the main process (--no-progress hides it)"))
    plots: bool = field(default=True, metadata=_help(
        "write frontier.png and scale_heatmap.png (--no-plots skips them)"))

    def __post_init__(self):
        if not isinstance(self.out, (str, os.PathLike)) or not str(self.out):
            raise ValueError(f"out must be a folder path, got {self.out!r}")
        self.out = str(self.out)
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        for name in ("dataset", "backbone", "learned"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (str, os.PathLike)) or not str(value)):
                raise TypeError(
                    f"{name} must be a non-empty string (path or Hub id) or None, got {type(value).__name__}; pass "
                    f"objects to evaluate({name}=...) instead"
                )
            if value is not None:
                setattr(self, name, str(value))
        if not isinstance(self.split, str) or not self.split:
            raise ValueError(f"split must be a non-empty string, got {self.split!r}")
        for name in ("min_scale", "max_scale"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            setattr(self, name, float(value))
        if not (0 < self.min_scale <= 1 <= self.max_scale):
            raise ValueError(
                f"min_scale/max_scale must satisfy 0 < min_scale <= 1 <= max_scale, got [{self.min_scale}, "
                f"{self.max_scale}]"
            )
        self.budgets = self._check_budgets(self.budgets)
        self.allocators = self._check_allocators(self.allocators)
        if self.num_samples is not None and (not _is_int(self.num_samples) or self.num_samples < 1):
            raise ValueError(f"num_samples must be a positive integer or None (all), got {self.num_samples!r}")
        if self.num_frames is not None and (not _is_int(self.num_frames) or self.num_frames < 1):
            raise ValueError(f"num_frames must be a positive integer or None, got {self.num_frames!r}")
        if self.fps is not None:
            if not _is_number(self.fps) or not math.isfinite(self.fps) or self.fps <= 0:
                raise ValueError(f"fps must be a finite number > 0 or None, got {self.fps!r}")
            if self.num_frames is not None:
                raise ValueError("num_frames and fps: give one frame-sampling rule, set the other to None")
            self.fps = float(self.fps)
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if not _is_number(self.budget_tolerance) or not (0 < self.budget_tolerance < 1):
            raise ValueError(f"budget_tolerance must be a number in (0, 1), got {self.budget_tolerance!r}")
        self.budget_tolerance = float(self.budget_tolerance)
        if self.resample not in RESAMPLE_CHOICES:
            raise ValueError(f"resample must be one of {RESAMPLE_CHOICES}, got {self.resample!r}")
        for name in ("system_prompt", "progress", "plots"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not _is_int(self.synthetic_start) or self.synthetic_start < 0:
            raise ValueError(f"synthetic_start must be an integer >= 0, got {self.synthetic_start!r}")
        self.synthetic = _check_synthetic(self.synthetic)
        if self.task == "synthetic":
            self.needle_config()  # validates the fields
        if self.task == "reader":
            if self.dataset is not None:
                raise ValueError(f"dataset: task 'reader' makes its own records; got dataset={self.dataset!r}")
            if self.synthetic:
                raise ValueError(f"synthetic: the needle-task settings do not apply to task 'reader', got "
                                 f"{self.synthetic!r}")
            if self.backbone is None:
                self.backbone = "tiny-reader"

    def _check_budgets(self, budgets) -> list[float]:
        high = self.max_scale**2
        if isinstance(budgets, (str, bytes)) or not isinstance(budgets, Iterable):
            raise ValueError(f"budgets must be a list of target retentions in (0, {high:g}], got {budgets!r}")
        out = []
        for b in budgets:
            if not _is_number(b) or not math.isfinite(b) or not (0 < b <= high + 1e-9):
                raise ValueError(
                    f"budgets: every budget is a target retention ratio in (0, {high:g}] (max_scale**2), got {b!r}"
                )
            if float(b) in out:
                raise ValueError(f"budgets: {b} is listed twice")
            out.append(float(b))
        if not out:
            raise ValueError(f"budgets must hold at least one target retention in (0, {high:g}]")
        return out

    def _check_allocators(self, allocators) -> list[str] | None:
        if allocators is None:
            return None
        if isinstance(allocators, str) or not isinstance(allocators, Iterable):
            raise ValueError(f"allocators must be a list of names from {ALLOCATOR_NAMES}, got {allocators!r}")
        out = []
        for name in allocators:
            if name not in ALLOCATOR_NAMES:
                raise ValueError(f"allocators: unknown allocator {name!r}; accepted: {ALLOCATOR_NAMES}")
            if name in out:
                raise ValueError(f"allocators: {name!r} is listed twice")
            out.append(name)
        if not out:
            raise ValueError(f"allocators must name at least one of {ALLOCATOR_NAMES}")
        return out

    def needle_config(self):
        """The ``NeedleTaskConfig`` of the synthetic task (scale range from this config)."""
        from ..synthetic import NeedleTaskConfig

        names = {f.name for f in fields(NeedleTaskConfig)} - {"min_scale", "max_scale"}
        unknown = sorted(set(self.synthetic) - names)
        if unknown:
            raise ValueError(
                f"synthetic: unknown NeedleTaskConfig field(s) {unknown}; accepted: {sorted(names)} (the scale range "
                f"comes from min_scale/max_scale)"
            )
        return NeedleTaskConfig(**self.synthetic, min_scale=self.min_scale, max_scale=self.max_scale)

    def resolved_allocators(self, has_learned: bool) -> list[str]:
        """The allocators to run: the configured list, or the default set (``learned`` first when available)."""
        if self.allocators is not None:
            return list(self.allocators)
        return (["learned"] if has_learned else []) + list(DEFAULT_ALLOCATORS)


def _check_synthetic(value) -> dict:
    """``synthetic`` as a dict: a dict is copied, a string is read as a JSON/YAML mapping (the CLI form), None is
    empty."""
    if value is None:
        return {}
    if isinstance(value, str):
        import yaml

        try:
            parsed = yaml.safe_load(value) if value.strip() else {}
        except yaml.YAMLError as error:
            raise ValueError(f"synthetic must be a JSON/YAML mapping of NeedleTaskConfig fields, got {value!r} "
                             f"({error.__class__.__name__})") from None
        value = {} if parsed is None else parsed
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(
            f"synthetic must be a mapping of NeedleTaskConfig field names to values (e.g. {{\"num_frames\": 8}}), "
            f"got {value!r}"
        )
    return dict(value)
