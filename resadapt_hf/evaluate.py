"""Budget-controlled evaluation: score a backbone under target retentions with several allocators (PAPER.md §6).

For every sample, allocator and budget (target retention) the loop

1. gets per-frame scales from the allocator, which sees the frames and the question (the same query the CAPO
   trainer gives it):

   * ``learned``: a trained Allocator (a saved folder, a Hub repo id or a ``resadapt_hf.allocators`` preset),
     deterministic (Beta-mean) scales through its ``predict_scales`` hook;
   * ``prior``: the training-free :class:`PriorAllocator`;
   * ``fixed``: FixedScale, the same scale for every frame;
   * ``random``: i.i.d. uniform scales in ``[min_scale, max_scale]``, seeded per (seed, sample id), so every
     budget of a sample gets the same random shape;
   * ``vanilla``: scale 1 everywhere, no budget (evaluated once, retention 1.0);

2. projects those scales onto the budget BY CONSTRUCTION with the processor's own solver
   (``ResAdaptProcessor.allocate(..., scales=..., budget=b)`` for a real backbone, ``resize_plan.solve_budget`` on
   the task's ``UnitSpec`` for the synthetic task) and records the ACHIEVED retention of the resulting
   :class:`Allocation` (its visual tokens over the scale-1 tokens), never the requested one;
3. runs the backbone on exactly that allocation: a Hugging Face VLM (greedy ``generate`` on the processor's
   resized input, chat prompt with ``rewards.SYSTEM_PROMPT`` as in training), or the synthetic needle reader on
   the frames the resize operator produced;
4. grades the completion with ``resadapt_hf.rewards`` (task score, correctness bit, extracted answer; tIoU for
   temporal grounding).

Output folder (``out``):

* ``records.jsonl``: one line per (allocator, budget, sample), appended as soon as it is computed. A re-run with
  the same folder RESUMES: keys already present are read back, not recomputed (more budgets, allocators or
  samples extend a run). ``config.json`` holds the settings a run depends on; resuming with different ones is
  refused.
* ``results.json``: the aggregate per (allocator, budget) and per task type (format ``resadapt-eval/1``, see
  :func:`build_results`).
* ``frontier.png``: mean task score vs mean achieved retention, one line per allocator, vanilla as a point at
  R = 1 and a dashed reference line.
* ``scale_heatmap.png``: per-frame scales, one row per sample (the first 24), for the most adaptive allocator
  evaluated (learned, else prior, else random, else fixed) at the tightest budget, where where-the-pixels-go
  matters most; frames holding the answer (synthetic task: the needle frames) are outlined in red.

Python: ``evaluate(EvalConfig(...))`` or ``evaluate(task="synthetic", allocators=[...], budgets=[...])``; CLI:
``resadapt eval`` (:func:`add_eval_arguments` / :func:`run_eval`).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import statistics
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

import numpy as np
import torch

from .data import decode_record, load_records
from .loading import load_allocator, load_backbone
from .processing.allocation import Allocation, FixedScale, MediaAllocation
from .processing.prior_allocator import PriorAllocator
from .processing.resize_plan import (
    DEFAULT_BUDGET_TOLERANCE,
    DEFAULT_MAX_SCALE,
    DEFAULT_MIN_SCALE,
    chunk_scales,
    plan_sizes,
    solve_budget,
    total_tokens,
    validate_scales,
)
from .processing.video_input import VideoClip, to_video_clip
from .rewards import SYSTEM_PROMPT, extract_answer, is_correct, task_reward

logger = logging.getLogger(__name__)

__all__ = [
    "ALLOCATOR_NAMES",
    "EvalBackend",
    "EvalConfig",
    "EvalSample",
    "HFBackend",
    "NeedleBackend",
    "RESULTS_FORMAT",
    "add_eval_arguments",
    "aggregate_records",
    "build_results",
    "evaluate",
    "grounding_iou",
    "grounding_metrics",
    "random_scales",
    "read_records",
    "run_eval",
]

RESULTS_FORMAT = "resadapt-eval/1"
ALLOCATOR_NAMES = ("learned", "prior", "fixed", "random", "vanilla")
DEFAULT_ALLOCATORS = ("prior", "fixed", "random", "vanilla")
TASKS = ("dataset", "synthetic")
GROUNDING_TYPES = ("temporal_grounding", "grounded_qa")
RECALL_THRESHOLDS = (0.3, 0.5, 0.7)
RESAMPLE_CHOICES = ("bilinear", "bicubic")
RECORDS_FILE, RESULTS_FILE, CONFIG_FILE = "records.jsonl", "results.json", "config.json"
FRONTIER_FILE, HEATMAP_FILE = "frontier.png", "scale_heatmap.png"
SYNTHETIC_BACKBONE, SYNTHETIC_DATASET = "needle-reader", "synthetic-needle"
# Heatmap: which allocator shows the allocation best (most adaptive first), and how many sample rows.
_HEATMAP_PREFERENCE = ("learned", "prior", "random", "fixed")
_HEATMAP_ROWS = 24
# Fields that change what a record means; a run in an existing folder must agree on them to resume.
_RESUME_FIELDS = (
    "task", "dataset", "split", "backbone", "learned", "num_frames", "fps", "max_new_tokens", "min_scale",
    "max_scale", "budget_tolerance", "resample", "system_prompt", "seed", "synthetic", "synthetic_start",
)


# --------------------------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass
class EvalConfig:
    """Settings of one evaluation run (every field has a default; ``__post_init__`` validates them).

    Args:
        out: output folder (``records.jsonl``, ``results.json``, ``frontier.png``, ``scale_heatmap.png``,
            ``config.json``). An existing folder is resumed.
        task: ``"dataset"`` (a backbone answers the records of ``dataset``) or ``"synthetic"`` (the needle task
            of ``resadapt_hf.synthetic``; its calibrated reader plays the backbone, CPU only).
        dataset: records in the ``resadapt_hf.data`` schema: a ``.json``/``.jsonl`` file, a ``datasets``
            ``save_to_disk`` folder or a Hub dataset name (task ``"dataset"``; ``evaluate(records=...)`` also takes
            rows in memory).
        split: split of a ``datasets`` dataset dict / Hub dataset.
        backbone: Hub id or local path of a Qwen-VL checkpoint (bf16 + ``device_map="auto"`` on GPU, fp32 on
            CPU), or ``"tiny-<family>"`` (e.g. ``"tiny-qwen2_5_vl"``) for a tiny random model (task
            ``"dataset"``).
        allocators: names from ``ALLOCATOR_NAMES`` (``learned``, ``prior``, ``fixed``, ``random``,
            ``vanilla``), in report order. None: ``learned`` (when ``learned`` is set) + prior, fixed, random,
            vanilla.
        learned: the ``learned`` allocator: a saved Allocator folder, a complete ResAdapt repo folder (allocator in
            ``allocator/``), a Hub repo id, or a preset of ``resadapt_hf.allocators.PRESETS``.
        budgets: target retention ratios, each in ``(0, max_scale**2]``; every allocator except ``vanilla`` is
            evaluated at each.
        num_samples: evaluate the first N records (None: all; synthetic task: 64).
        num_frames: frames sampled uniformly from every video (paper: 32); None with ``fps`` None keeps all.
        fps: sample videos at this rate instead of ``num_frames``.
        max_new_tokens: generation length of the backbone (paper: 256 for standard evaluation).
        min_scale, max_scale: the scale range of allocators and budget projection (paper: [0.2, 1.8]).
        budget_tolerance: accepted ``|achieved retention - budget|`` of the solver (in (0, 1)).
        resample: resize operator of the processor, ``"bilinear"`` (paper) or ``"bicubic"``.
        system_prompt: put ``rewards.SYSTEM_PROMPT`` (think/answer/boxed format) in the chat prompt, as in CAPO
            training.
        seed: seeds torch and the ``random`` allocator (decoding is greedy).
        synthetic: ``NeedleTaskConfig`` fields of the synthetic task (e.g. ``{"num_frames": 8}``); its
            ``min_scale``/``max_scale`` come from this config.
        synthetic_start: index of the first synthetic sample; the default keeps evaluation videos apart from the
            training videos (``make_needle_dataset`` starts at 0).
        progress: show a tqdm progress bar.
        plots: write ``frontier.png`` and ``scale_heatmap.png``.
    """

    out: str = "eval_out"
    task: str = "dataset"
    dataset: str | None = None
    split: str = "test"
    backbone: str | None = None
    allocators: list[str] | None = None
    learned: str | None = None
    budgets: list[float] = field(default_factory=lambda: [0.75, 0.5, 0.25])
    num_samples: int | None = None
    num_frames: int | None = 32
    fps: float | None = None
    max_new_tokens: int = 256
    min_scale: float = DEFAULT_MIN_SCALE
    max_scale: float = DEFAULT_MAX_SCALE
    budget_tolerance: float = DEFAULT_BUDGET_TOLERANCE
    resample: str = "bilinear"
    system_prompt: bool = True
    seed: int = 0
    synthetic: dict = field(default_factory=dict)
    synthetic_start: int = 100_000
    progress: bool = True
    plots: bool = True

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
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not _is_int(self.synthetic_start) or self.synthetic_start < 0:
            raise ValueError(f"synthetic_start must be an integer >= 0, got {self.synthetic_start!r}")
        if not isinstance(self.synthetic, dict):
            raise TypeError(f"synthetic must be a dict of NeedleTaskConfig fields, got {type(self.synthetic).__name__}")
        self.synthetic = dict(self.synthetic)
        if self.task == "synthetic":
            self.needle_config()  # validates the fields

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
        from .synthetic import NeedleTaskConfig

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


# --------------------------------------------------------------------------------------------------------------
# backends: the backbone side of the loop
# --------------------------------------------------------------------------------------------------------------


@dataclass
class EvalSample:
    """One decoded sample, shared by every allocator and budget.

    Attributes:
        sample_id: stable id (the record's ``id``/``sample_id``, else its index; synthetic: ``needle-<index>``).
        record: the dataset record (schema of ``resadapt_hf.data``).
        frames: uint8 [T, H, W, 3], the frames the allocator sees and the backbone receives (resized).
        question: the question as the allocator reads it (as in CAPO training).
        payload: backend data (the decoded clip and chat prompt).
    """

    sample_id: str
    record: dict
    frames: torch.Tensor
    question: str
    payload: Any = None


class EvalBackend(Protocol):
    """The backbone side of :func:`evaluate`. ``calls`` counts :meth:`generate` calls (resume tests)."""

    name: str
    calls: int

    def prepare(self, record: dict, sample_id: str) -> EvalSample: ...

    def allocate(self, sample: EvalSample, scales: list[float], budget: float | None) -> Allocation: ...

    def generate(self, sample: EvalSample, allocation: Allocation) -> str: ...


def _clip_of(record: dict, num_frames: int | None, fps: float | None) -> VideoClip:
    """The record's sampled video as a ``VideoClip`` (frame indices and, for files, the real frame rate, which the
    backbone uses for temporal positions / timestamps)."""
    return decode_record(record, num_frames=num_frames, fps=fps)["clip"]


class HFBackend:
    """A Hugging Face Qwen-VL backbone behind a ``ResAdaptProcessor``: budget projection with
    ``processor.allocate`` and greedy ``generate`` on exactly that allocation.

    Args:
        model: the backbone (e.g. ``Qwen2_5_VLForConditionalGeneration``); prepared for per-chunk sizes, kept
            frozen.
        backbone_processor: its own processor (``AutoProcessor.from_pretrained(...)``).
        name: the backbone's name in the results (default: the processor's ``name_or_path``).
        max_new_tokens: generation length (greedy decoding).
        num_frames, fps: frame sampling of video files / frame arrays.
        system_prompt: the system message of the chat prompt (None: none).
        processor_settings: ``ResAdaptProcessor`` settings (``min_scale``, ``max_scale``, ``budget_tolerance``,
            ``resample``, ...).
    """

    def __init__(self, model, backbone_processor, *, name: str | None = None, max_new_tokens: int = 256,
                 num_frames: int | None = 32, fps: float | None = None, system_prompt: str | None = SYSTEM_PROMPT,
                 **processor_settings):
        from .processing.processing_resadapt import ResAdaptProcessor
        from .trainer import BackboneRollout

        self.processor = ResAdaptProcessor.from_backbone(backbone_processor, **processor_settings)
        # the training rollout's prompt builder and backbone preparation (prepare_backbone, eval, frozen)
        self.rollout = BackboneRollout(model, self.processor, system_prompt=system_prompt,
                                       max_new_tokens=max_new_tokens, do_sample=False)
        self.model = self.rollout.backbone
        self.name = name or self.processor.backbone_name_or_path or type(model).__name__
        self.num_frames, self.fps = num_frames, fps
        self.calls = 0
        generation = copy.deepcopy(self.model.generation_config)
        generation.do_sample, generation.num_beams, generation.max_new_tokens = False, 1, int(max_new_tokens)
        generation.temperature = generation.top_p = generation.top_k = None  # greedy: no sampling knobs
        self.generation_config = generation
        tokenizer, backbone = self.processor.tokenizer, self.processor.backbone_processor
        self._video_token_id = tokenizer.convert_tokens_to_ids(backbone.video_token)

    def prepare(self, record: dict, sample_id: str) -> EvalSample:
        clip = _clip_of(record, self.num_frames, self.fps)
        prompt = self.rollout.prompt(record)
        return EvalSample(sample_id, record, clip.frames, record["question"], payload=(clip, prompt))

    def allocate(self, sample: EvalSample, scales: list[float], budget: float | None) -> Allocation:
        clip, prompt = sample.payload
        return self.processor.allocate(prompt, videos=[clip], scales=scales, budget=budget)

    @torch.no_grad()
    def generate(self, sample: EvalSample, allocation: Allocation) -> str:
        self.calls += 1
        clip, prompt = sample.payload
        inputs = self.processor(text=[prompt], videos=[clip], allocation=allocation, return_tensors="pt")
        seen = int((inputs["input_ids"] == self._video_token_id).sum())
        if seen != allocation.visual_tokens:
            raise RuntimeError(
                f"sample {sample.sample_id}: the backbone input holds {seen} video tokens but the allocation "
                f"planned {allocation.visual_tokens}; the recorded retention would be wrong"
            )
        inputs = inputs.to(self.model.device)
        out = self.model.generate(**inputs, generation_config=self.generation_config)
        return self.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]


class NeedleBackend:
    """The synthetic needle task: budget projection with ``solve_budget`` on the task's ``UnitSpec`` (the
    processor's own solver and grid), answers from the calibrated reader on the frames the resize operator
    produced (``resize_frames`` at the allocation's scales, checked against the planned sizes).

    Args:
        config: the ``NeedleTaskConfig`` the records were made with.
        reader: a calibrated ``NeedleReader`` (default: ``NeedleReader.calibrate(config)``).
        budget_tolerance: accepted ``|achieved - budget|`` of the solver.
    """

    def __init__(self, config=None, reader=None, *, budget_tolerance: float = DEFAULT_BUDGET_TOLERANCE):
        from .synthetic import NeedleReader, NeedleTaskConfig

        self.config = config or NeedleTaskConfig()
        self.reader = reader or NeedleReader.calibrate(self.config)
        self.budget_tolerance = float(budget_tolerance)
        self.name = SYNTHETIC_BACKBONE
        self.calls = 0

    def prepare(self, record: dict, sample_id: str) -> EvalSample:
        frames = record["frames"]
        frames = torch.as_tensor(np.asarray(frames, dtype=np.uint8)) if not isinstance(frames, torch.Tensor) else frames
        clip = to_video_clip(frames)
        return EvalSample(sample_id, record, clip.frames, record["question"], payload=clip)

    def allocate(self, sample: EvalSample, scales: list[float], budget: float | None) -> Allocation:
        from .synthetic import chunk_lengths

        config, clip = self.config, sample.payload
        scales = validate_scales(scales, expected=clip.num_frames, min_scale=config.min_scale,
                                 max_scale=config.max_scale)
        lengths = chunk_lengths(clip.num_frames, config.temporal_patch_size)
        units = [config.unit] * len(lengths)
        reached = None
        if budget is None:
            sizes = plan_sizes(units, chunk_scales(scales, lengths))
        else:
            solution = solve_budget(units, scales, lengths, budget=budget, min_scale=config.min_scale,
                                    max_scale=config.max_scale, tolerance=self.budget_tolerance)
            scales, sizes, reached = solution.frame_scales, solution.sizes, solution.reachable
        media = MediaAllocation(
            kind="video", scales=[float(s) for s in scales], chunk_sizes=[tuple(s) for s in sizes],
            base_size=(config.height, config.width), visual_tokens=total_tokens(units, sizes),
            baseline_visual_tokens=sum(u.base_tokens for u in units), frame_indices=list(clip.frame_indices),
            timestamps=list(clip.timestamps),
        )
        return Allocation(media=[media], requested_budget=budget, budget_reached=reached)

    def generate(self, sample: EvalSample, allocation: Allocation) -> str:
        from .synthetic import resize_frames

        self.calls += 1
        chunks = resize_frames(sample.frames, allocation.scales, self.config)
        received = [tuple(c.shape[1:3]) for c in chunks]
        if received != [tuple(s) for s in allocation.chunk_sizes]:
            raise RuntimeError(
                f"sample {sample.sample_id}: operator sizes {received} != planned {allocation.chunk_sizes}"
            )
        return self.reader.answer(chunks, sample.record["options"])


# --------------------------------------------------------------------------------------------------------------
# loaders
# --------------------------------------------------------------------------------------------------------------


def _load_dataset(spec: str, split: str) -> list[dict]:
    path = Path(spec)
    if path.is_file():
        return load_records(path)
    if path.is_dir():
        from datasets import load_from_disk

        return load_records(load_from_disk(str(path)), split=split)
    if path.suffix in (".json", ".jsonl"):
        raise FileNotFoundError(f"dataset: no such file {spec}")
    from datasets import load_dataset

    return load_records(load_dataset(spec, split=split))


def random_scales(seed: int, sample_id: str, num_frames: int, min_scale: float, max_scale: float) -> list[float]:
    """The ``random`` allocator: i.i.d. uniform per-frame scales in ``[min_scale, max_scale]``, a pure function of
    ``(seed, sample_id)`` (the same for every budget and every run; the budget projection then rescales them)."""
    key = zlib.crc32(str(sample_id).encode("utf-8"))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), key]))
    return rng.uniform(min_scale, max_scale, int(num_frames)).tolist()


# --------------------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------------------


def grounding_iou(completion: str, record: dict) -> float | None:
    """tIoU of a completion's predicted segment(s) with the record's ground truth (max over pairs, as the reward),
    for grounding types; None for other types. ``grounded_qa``: the grounding part alone (its task score adds the
    QA part)."""
    problem_type = record["problem_type"]
    if problem_type == "temporal_grounding":
        return task_reward(completion, record["answer"], "temporal_grounding", segments=record.get("segments"))
    if problem_type == "grounded_qa":
        return task_reward(completion, record["segments"], "temporal_grounding", segments=record["segments"])
    return None


def grounding_metrics(ious: Sequence[float], thresholds: Sequence[float] = RECALL_THRESHOLDS) -> dict[str, float]:
    """``{"miou": mean tIoU, "r@0.3": fraction with tIoU >= 0.3, ...}`` over samples (Charades-STA convention)."""
    values = [float(v) for v in ious]
    if not values:
        raise ValueError("ious must hold at least one value")
    if any(not math.isfinite(v) or v < 0 or v > 1 + 1e-9 for v in values):
        raise ValueError(f"ious must be tIoU values in [0, 1], got {values}")
    out = {"miou": sum(values) / len(values)}
    for k in thresholds:
        out[f"r@{k:g}"] = sum(v >= k for v in values) / len(values)
    return out


def _score(record: dict, completion: str) -> dict:
    problem_type = record["problem_type"]
    options = record.get("options")
    score = task_reward(completion, record["answer"], problem_type, options=options if options else None,
                        segments=record.get("segments"))
    out = {"extracted_answer": extract_answer(completion), "score": float(score),
           "correct": bool(is_correct(score, problem_type))}
    iou = grounding_iou(completion, record)
    if iou is not None:
        out["iou"] = float(iou)
    return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def aggregate_records(records: Sequence[dict], allocators: Sequence[str], budgets: Sequence[float]) -> list[dict]:
    """The ``aggregate`` list of ``results.json``: one entry per (allocator, budget) that has records (vanilla once,
    ``budget`` None), in allocator then budget order: means over samples of achieved retention (and its population
    std), visual tokens, task score and correctness, plus the same per ``problem_type`` (with mIoU and R@k for
    grounding types)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["allocator"], r["budget"]), []).append(r)
    out = []
    for name in allocators:
        for budget in ([None] if name == "vanilla" else budgets):
            rows = groups.get((name, None if budget is None else float(budget)))
            if not rows:
                continue
            retention = [r["retention"] for r in rows]
            per_task = {}
            for problem_type in sorted({r["problem_type"] for r in rows}):
                task_rows = [r for r in rows if r["problem_type"] == problem_type]
                entry = {"score": _mean([r["score"] for r in task_rows]),
                         "accuracy": _mean([float(r["correct"]) for r in task_rows]), "num_samples": len(task_rows)}
                if problem_type in GROUNDING_TYPES:
                    entry.update(grounding_metrics([r["iou"] for r in task_rows]))
                per_task[problem_type] = entry
            out.append({
                "allocator": name,
                "budget": None if budget is None else float(budget),
                "retention": _mean(retention),
                "retention_std": statistics.pstdev(retention),
                "visual_tokens": _mean([float(r["visual_tokens"]) for r in rows]),
                "score": _mean([r["score"] for r in rows]),
                "accuracy": _mean([float(r["correct"]) for r in rows]),
                "num_samples": len(rows),
                "per_task": per_task,
            })
    return out


def build_results(records: Sequence[dict], *, backbone: str, dataset: str, task: str, seed: int, num_samples: int,
                  budgets: Sequence[float], allocators: Sequence[str]) -> dict:
    """The ``results.json`` dict (format ``resadapt-eval/1``)::

        {"format", "backbone", "dataset", "task", "seed", "num_samples", "budgets", "allocators",
         "aggregate": [see aggregate_records], "frontier_png": "frontier.png", "heatmap_png": "scale_heatmap.png"}
    """
    return {
        "format": RESULTS_FORMAT,
        "backbone": backbone,
        "dataset": dataset,
        "task": task,
        "seed": int(seed),
        "num_samples": int(num_samples),
        "budgets": [float(b) for b in budgets],
        "allocators": list(allocators),
        "aggregate": aggregate_records(records, allocators, budgets),
        "frontier_png": FRONTIER_FILE,
        "heatmap_png": HEATMAP_FILE,
    }


# --------------------------------------------------------------------------------------------------------------
# records file (resume)
# --------------------------------------------------------------------------------------------------------------


def _key(allocator: str, budget: float | None, sample_id: str) -> tuple:
    return allocator, None if budget is None else float(budget), str(sample_id)


def read_records(path) -> list[dict]:
    """The records of a ``records.jsonl``. A last line cut off by an interrupted run is dropped (and removed from
    the file, so appends start on a fresh line); a malformed line elsewhere is an error."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1 and not text.endswith("\n"):
                logger.warning("%s: dropping a truncated last line (interrupted run); it will be recomputed", path)
                path.write_text("".join(f"{json.dumps(r)}\n" for r in records))
                return records
            raise ValueError(f"{path}: line {i + 1} is not valid JSON; fix or delete the file to start over")
    if text and not text.endswith("\n"):
        with path.open("a") as f:
            f.write("\n")
    return records


def _check_resume(out: Path, settings: dict):
    path = out / CONFIG_FILE
    if path.exists():
        previous = json.loads(path.read_text())
        # a run without the learned allocator may be extended by one with it (and the other way round)
        if previous.get("learned") is None or settings.get("learned") is None:
            settings = {**settings, "learned": settings.get("learned") or previous.get("learned")}
        diff = {k: (previous[k], settings[k]) for k in settings if k in previous and previous[k] != settings[k]}
        if diff:
            detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise ValueError(
                f"out: {out} holds a run with different settings ({detail}); use another output folder or delete it"
            )
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------------------------


def _sample_ids(rows: Sequence[dict]) -> list[str]:
    ids, seen = [], set()
    for i, row in enumerate(rows):
        sample_id = str(row.get("id", row.get("sample_id", i)))
        if sample_id in seen:
            raise ValueError(f"dataset: sample id {sample_id!r} appears twice; ids must be unique to resume")
        seen.add(sample_id)
        ids.append(sample_id)
    return ids


def _allocator_objects(names: Sequence[str], learned, config: EvalConfig) -> dict[str, Any]:
    objects: dict[str, Any] = {}
    for name in names:
        if name == "learned":
            objects[name] = load_allocator(learned)
        elif name == "prior":
            objects[name] = PriorAllocator(min_scale=config.min_scale, max_scale=config.max_scale)
        elif name == "fixed":
            objects[name] = FixedScale(1.0)  # uniform; the budget projection sets the common scale
    return objects


def _raw_scales(name: str, allocator, sample: EvalSample, config: EvalConfig) -> list[float]:
    num_frames = int(sample.frames.shape[0])
    if name == "vanilla":
        return [1.0] * num_frames
    if name == "random":
        return random_scales(config.seed, sample.sample_id, num_frames, config.min_scale, config.max_scale)
    scales = allocator.predict_scales([sample.frames], sample.question)
    return [float(s) for s in (scales[0].tolist() if isinstance(scales[0], torch.Tensor) else scales[0])]


def _record(sample: EvalSample, name: str, budget, allocation: Allocation, completion: str,
            allocator_seconds: float, backbone_seconds: float) -> dict:
    row = sample.record
    return {
        "sample_id": sample.sample_id,
        "allocator": name,
        "budget": budget,
        "problem_type": row["problem_type"],
        "scales": [float(s) for s in allocation.scales],
        "chunk_sizes": [list(s) for s in allocation.chunk_sizes],
        "visual_tokens": int(allocation.visual_tokens),
        "baseline_visual_tokens": int(allocation.baseline_visual_tokens),
        "retention": float(allocation.retention),
        "budget_reached": allocation.budget_reached,
        "prediction": completion,
        "answer": _jsonable(row["answer"]),
        **_score(row, completion),
        "allocator_seconds": allocator_seconds,
        "backbone_seconds": backbone_seconds,
    }


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def evaluate(config: EvalConfig | None = None, *, records=None, backbone=None, learned=None, **overrides) -> dict:
    """Run the budget-controlled evaluation and write the output folder; returns the ``results.json`` dict.

    Args:
        config: an :class:`EvalConfig`; or give its fields as keyword ``overrides`` (``evaluate(task="synthetic",
            budgets=[0.5])``), which also replace fields of ``config``.
        records: rows in memory (list of dicts or a ``datasets.Dataset``) instead of ``config.dataset``.
        backbone: an :class:`EvalBackend` (``HFBackend``, ``NeedleBackend``) or a ``(model, processor)`` pair,
            instead of loading ``config.backbone`` (a string here is ``config.backbone``).
        learned: the ``learned`` allocator as an object (anything with ``predict_scales``) or a spec, instead of
            ``config.learned``.

    Returns:
        The results dict (also written to ``<out>/results.json``).
    """
    if isinstance(backbone, (str, os.PathLike)):  # a name is the config field, not a backend object
        overrides["backbone"], backbone = str(backbone), None
    if config is None:
        config = EvalConfig(**overrides)
    elif overrides:
        config = EvalConfig(**{**asdict(config), **overrides})
    elif not isinstance(config, EvalConfig):
        raise TypeError(f"config must be an EvalConfig, got {type(config).__name__}")
    learned = learned if learned is not None else config.learned
    names = config.resolved_allocators(has_learned=learned is not None)
    if "learned" in names and learned is None:
        raise ValueError("learned: the 'learned' allocator needs learned= (a folder, Hub repo id or preset)")
    torch.manual_seed(config.seed)

    # data; the backend and allocators are built on first use (a fully resumed run loads no model)
    if config.task == "synthetic":
        from .synthetic import make_needle_dataset

        needle = config.needle_config()
        if records is not None:
            raise ValueError("records: the synthetic task makes its own records; use task='dataset' for yours")
        count = config.num_samples or 64
        rows = make_needle_dataset(needle, count, start=config.synthetic_start)
        ids = [f"needle-{config.synthetic_start + i}" for i in range(count)]
        dataset_name, backbone_name = SYNTHETIC_DATASET, SYNTHETIC_BACKBONE
        if backbone is None:
            factory = lambda: NeedleBackend(needle, budget_tolerance=config.budget_tolerance)  # noqa: E731
        elif not isinstance(backbone, NeedleBackend):
            raise TypeError(f"backbone: the synthetic task needs a NeedleBackend, got {type(backbone).__name__}")
        elif backbone.config != needle:
            raise ValueError(f"backbone: the NeedleBackend's task config {backbone.config} differs from this run's "
                             f"{needle} (synthetic fields, min_scale/max_scale)")
    else:
        if records is None and config.dataset is None:
            raise ValueError("dataset: task 'dataset' needs a dataset (.json/.jsonl file, datasets folder or Hub "
                             "name) or records=")
        rows = load_records(records) if records is not None else _load_dataset(config.dataset, config.split)
        if config.num_samples is not None:
            rows = rows[: config.num_samples]
        if not rows:
            raise ValueError("dataset: no records to evaluate")
        ids = _sample_ids(rows)
        dataset_name = config.dataset or "<records>"
        if backbone is None:
            if config.backbone is None:
                raise ValueError("backbone: task 'dataset' needs a backbone (Hub id, local path or tiny-<family>)")
            backbone_name = config.backbone
            factory = lambda: _hf_backend(load_backbone(config.backbone), config)  # noqa: E731
        elif isinstance(backbone, tuple):
            backbone = _hf_backend(backbone, config)
            backbone_name = backbone.name
        else:
            if isinstance(backbone, HFBackend):
                ours = {k: getattr(backbone.processor, k) for k in ("min_scale", "max_scale", "budget_tolerance")}
                wanted = {k: getattr(config, k) for k in ours}
                if ours != wanted:
                    raise ValueError(f"backbone: the HFBackend's processor settings {ours} differ from this run's "
                                     f"{wanted}")
            for attr in ("prepare", "allocate", "generate"):
                if not callable(getattr(backbone, attr, None)):
                    raise TypeError(f"backbone must be an EvalBackend or a (model, processor) pair; missing {attr}()")
            backbone_name = getattr(backbone, "name", None) or type(backbone).__name__
    backend = _Lazy(factory if backbone is None else (lambda: backbone))
    allocators = _Lazy(lambda: _allocator_objects(names, learned, config))

    # resume
    out = Path(config.out)
    settings = {k: getattr(config, k) for k in _RESUME_FIELDS}
    settings.update(backbone=backbone_name, dataset=dataset_name,
                    learned=_describe(learned) if "learned" in names else None)
    _check_resume(out, settings)
    records_path = out / RECORDS_FILE
    done = {_key(r["allocator"], r["budget"], r["sample_id"]): r for r in read_records(records_path)}
    jobs = [(name, None) if name == "vanilla" else (name, b) for name in names
            for b in ([None] if name == "vanilla" else config.budgets)]

    from tqdm.auto import tqdm

    missed = 0
    with tqdm(total=len(jobs) * len(rows), desc="resadapt eval", disable=not config.progress, unit="run") as bar, \
            records_path.open("a") as sink:
        for sample_id, row in zip(ids, rows):
            pending = [(n, b) for n, b in jobs if _key(n, b, sample_id) not in done]
            bar.update(len(jobs) - len(pending))
            if not pending:
                continue
            sample = backend().prepare(row, sample_id)
            predicted: dict[str, tuple[list[float], float]] = {}
            for name, budget in pending:
                bar.set_postfix_str(f"{name}@{'-' if budget is None else f'{budget:g}'}")
                if name not in predicted:  # the allocator runs once per sample; every budget projects its output
                    allocator = allocators().get(name)  # loaded on first use, outside the timing
                    started = time.perf_counter()
                    scales = _raw_scales(name, allocator, sample, config)
                    predicted[name] = (scales, time.perf_counter() - started)
                scales, predict_seconds = predicted[name]
                started = time.perf_counter()
                allocation = backend().allocate(sample, scales, budget)
                allocator_seconds = predict_seconds + time.perf_counter() - started
                started = time.perf_counter()
                completion = backend().generate(sample, allocation)
                backbone_seconds = time.perf_counter() - started
                record = _record(sample, name, budget, allocation, completion, allocator_seconds, backbone_seconds)
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                done[_key(name, budget, sample_id)] = record
                missed += allocation.budget_reached is False
                bar.update(1)
    if missed:
        logger.warning("%d run(s) could not reach their budget within %g; their achieved retention is recorded",
                       missed, config.budget_tolerance)

    selected = [done[_key(n, b, s)] for n, b in jobs for s in ids]
    results = build_results(selected, backbone=backbone_name, dataset=dataset_name, task=config.task,
                            seed=config.seed, num_samples=len(ids), budgets=config.budgets, allocators=names)
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    if config.plots:
        _plot_frontier(results, out / FRONTIER_FILE)
        _plot_heatmap(done, names, config, ids, rows, out / HEATMAP_FILE)
    return results


class _Lazy:
    """``factory()``, called once, on first use."""

    def __init__(self, factory):
        self._factory, self._value = factory, None

    def __call__(self):
        if self._factory is not None:
            self._value, self._factory = self._factory(), None
        return self._value


def _hf_backend(pair, config: EvalConfig) -> HFBackend:
    model, processor = pair
    return HFBackend(
        model, processor, name=config.backbone, max_new_tokens=config.max_new_tokens, num_frames=config.num_frames,
        fps=config.fps, system_prompt=SYSTEM_PROMPT if config.system_prompt else None, min_scale=config.min_scale,
        max_scale=config.max_scale, budget_tolerance=config.budget_tolerance, resample=config.resample,
    )


def _describe(learned) -> str | None:
    if learned is None or isinstance(learned, (str, os.PathLike)):
        return None if learned is None else str(learned)
    name = getattr(getattr(learned, "config", None), "_name_or_path", None) or getattr(learned, "name_or_path", None)
    return f"{type(learned).__name__}({name})" if name else type(learned).__name__


# --------------------------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------------------------


def _plot_frontier(results: dict, path: Path):
    from .plots import line_chart

    series, references = {}, {}
    # the legend lists (and the chart draws on top) learned first, then the baselines, whatever the run order
    order = sorted(results["aggregate"], key=lambda e: ALLOCATOR_NAMES.index(e["allocator"]))
    for entry in order:
        series.setdefault(entry["allocator"], []).append((entry["retention"], entry["score"]))
        if entry["allocator"] == "vanilla":
            references[f"vanilla (R = {entry['retention']:.2f})"] = entry["score"]
    scores = [y for pts in series.values() for _, y in pts]
    retentions = [x for pts in series.values() for x, _ in pts]
    line_chart(
        series, path, title=f"Score vs achieved retention: {results['backbone']} on {results['dataset']}",
        xlabel="achieved visual-token retention R (mean over samples)", ylabel="mean task score",
        references=references, xlim=(0.0, max(1.05, max(retentions, default=1.0) * 1.05)),
        ylim=(0.0, max(1.0, max(scores, default=1.0) * 1.05)),
    )


def _plot_heatmap(done: dict, names: Sequence[str], config: EvalConfig, ids: Sequence[str], rows: Sequence[dict],
                  path: Path):
    from .plots import heatmap

    name = next((n for n in _HEATMAP_PREFERENCE if n in names), "vanilla")
    budget = None if name == "vanilla" else min(config.budgets)
    shown = list(zip(ids, rows))[:_HEATMAP_ROWS]
    scales = [done[_key(name, budget, sample_id)]["scales"] for sample_id, _ in shown]
    marks = [list(row.get("needle_frames") or []) for _, row in shown]
    label = "no budget" if budget is None else f"budget {budget:g}"
    heatmap(
        scales, path, row_labels=[sample_id for sample_id, _ in shown], vmin=config.min_scale,
        vmax=max(1.0, max((s for row in scales for s in row), default=1.0)),
        title=f"Per-frame scales: {name} @ {label} (rows = samples)",
        xlabel="frame (red outline: frames that hold the answer)" if any(marks) else "frame",
        colorbar_label="scale", highlights=marks if any(marks) else None,
    )


# --------------------------------------------------------------------------------------------------------------
# CLI glue: `resadapt eval`
# --------------------------------------------------------------------------------------------------------------


def _key_value(text: str) -> tuple[str, Any]:
    import yaml

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def add_eval_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``resadapt eval`` options to ``parser`` (see :class:`EvalConfig` for their meaning)."""
    defaults = EvalConfig()
    parser.add_argument("--task", choices=TASKS, default=defaults.task,
                        help="'dataset' (a backbone answers --dataset) or 'synthetic' (the needle task, CPU)")
    parser.add_argument("--dataset", help=".json/.jsonl file (resadapt_hf.data schema), datasets folder or Hub name")
    parser.add_argument("--split", default=defaults.split, help="split of a datasets dataset (default: %(default)s)")
    parser.add_argument("--backbone", help="Hub id / path of a Qwen-VL checkpoint, or tiny-<family> (random, tiny)")
    parser.add_argument("--allocators", nargs="+", choices=ALLOCATOR_NAMES, metavar="NAME",
                        help=f"allocators to compare, from {', '.join(ALLOCATOR_NAMES)} (default: learned if "
                             f"--learned is given, then {' '.join(DEFAULT_ALLOCATORS)})")
    parser.add_argument("--learned", help="the learned allocator: saved folder, ResAdapt repo, Hub id or preset")
    parser.add_argument("--budgets", nargs="+", type=float, default=defaults.budgets, metavar="R",
                        help="target retentions in (0, max_scale^2] (default: %(default)s)")
    parser.add_argument("--num-samples", type=int, help="first N records (default: all; synthetic: 64)")
    parser.add_argument("--num-frames", type=int, default=defaults.num_frames,
                        help="frames sampled per video (default: %(default)s)")
    parser.add_argument("--fps", type=float, help="sample videos at this rate instead of --num-frames")
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens,
                        help="greedy generation length (default: %(default)s)")
    parser.add_argument("--min-scale", type=float, default=defaults.min_scale, help="(default: %(default)s)")
    parser.add_argument("--max-scale", type=float, default=defaults.max_scale, help="(default: %(default)s)")
    parser.add_argument("--budget-tolerance", type=float, default=defaults.budget_tolerance,
                        help="accepted |achieved - budget| (default: %(default)s)")
    parser.add_argument("--resample", choices=RESAMPLE_CHOICES, default=defaults.resample)
    parser.add_argument("--no-system-prompt", action="store_true", help="leave out rewards.SYSTEM_PROMPT")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="(default: %(default)s)")
    parser.add_argument("--synthetic", nargs="+", type=_key_value, default=[], metavar="KEY=VALUE",
                        help="NeedleTaskConfig fields of the synthetic task, e.g. num_frames=8")
    parser.add_argument("--synthetic-start", type=int, default=defaults.synthetic_start,
                        help="first synthetic sample index (default: %(default)s, apart from training samples)")
    parser.add_argument("--out", default=defaults.out, help="output folder; an existing one is resumed "
                                                            "(default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-plots", action="store_true", help="skip frontier.png and scale_heatmap.png")
    return parser


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The :class:`EvalConfig` of parsed ``resadapt eval`` arguments."""
    num_frames, fps = args.num_frames, args.fps
    if fps is not None and num_frames == EvalConfig.num_frames:
        num_frames = None  # --fps replaces the default frame count
    return EvalConfig(
        out=args.out, task=args.task, dataset=args.dataset, split=args.split, backbone=args.backbone,
        allocators=args.allocators, learned=args.learned, budgets=args.budgets, num_samples=args.num_samples,
        num_frames=num_frames, fps=fps, max_new_tokens=args.max_new_tokens, min_scale=args.min_scale,
        max_scale=args.max_scale, budget_tolerance=args.budget_tolerance, resample=args.resample,
        system_prompt=not args.no_system_prompt, seed=args.seed, synthetic=dict(args.synthetic),
        synthetic_start=args.synthetic_start, progress=not args.no_progress, plots=not args.no_plots,
    )


def format_table(results: dict) -> str:
    """A plain-text summary of ``results['aggregate']``."""
    lines = [f"{'allocator':<10} {'budget':>7} {'retention':>14} {'tokens':>9} {'score':>7} {'accuracy':>8} {'n':>5}"]
    for e in results["aggregate"]:
        budget = "-" if e["budget"] is None else f"{e['budget']:.3f}"
        retention = f"{e['retention']:.3f}±{e['retention_std']:.3f}"
        lines.append(f"{e['allocator']:<10} {budget:>7} {retention:>14} {e['visual_tokens']:>9.1f} "
                     f"{e['score']:>7.3f} {e['accuracy']:>8.3f} {e['num_samples']:>5}")
    return "\n".join(lines)


def run_eval(args: argparse.Namespace) -> int:
    """``resadapt eval``: evaluate, print the summary table; 0 on success, 2 on a bad argument (message on
    stderr)."""
    try:
        results = evaluate(config_from_args(args))
    except (ValueError, FileNotFoundError) as error:
        print(f"resadapt eval: error: {error}", file=sys.stderr)
        return 2
    print(format_table(results))
    print(f"wrote {Path(args.out) / RESULTS_FILE}, {RECORDS_FILE}, {FRONTIER_FILE}, {HEATMAP_FILE}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m resadapt_hf.evaluate ...`` (same options as ``resadapt eval``)."""
    parser = add_eval_arguments(argparse.ArgumentParser(prog="resadapt eval", description=__doc__.split("\n")[0]))
    return run_eval(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
