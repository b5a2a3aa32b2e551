"""Budget-controlled evaluation (``resadapt eval``): score a backbone under target retentions with several
allocators, in one process or sharded over ``torchrun`` / ``accelerate launch``.

For every sample, allocator and budget (target retention) the loop

1. gets per-frame scales from the allocator (``learned``, ``prior``, ``fixed``, ``random``, ``vanilla``; see
   :mod:`.scales`), which sees the frames and the question, as in CAPO training;
2. projects them onto the budget BY CONSTRUCTION with the processor's own solver (:mod:`.backends`) and records
   the ACHIEVED retention of the resulting allocation (its visual tokens over the scale-1 tokens), never the
   requested one;
3. runs the backbone on exactly that allocation (greedy ``generate``, or the synthetic needle reader);
4. grades the completion with ``resadapt_hf.rewards`` (:mod:`.metrics`).

Output folder: ``records.jsonl`` (one line per allocator, budget and sample; a re-run resumes from it),
``results.json`` (format ``resadapt-eval/1``), ``frontier.png``, ``scale_heatmap.png`` and ``config.json`` (the
settings a resume must match). See ``docs/evaluation.md``.

Modules: :mod:`.config` (:class:`EvalConfig`), :mod:`.backends`, :mod:`.scales`, :mod:`.metrics`,
:mod:`.records` (folder I/O, part files, resume), :mod:`.jobs` (job list, sharding), :mod:`.inputs`,
:mod:`.runner` (:func:`evaluate`), :mod:`.plots`, :mod:`.cli` (:func:`main`).

Python: ``evaluate(EvalConfig(...))`` or ``evaluate(task="synthetic", allocators=[...], budgets=[...])``;
command line: ``python -m resadapt_hf.evaluate --help``.
"""

from .backends import EvalBackend, EvalSample, HFBackend, NeedleBackend
from .cli import build_parser, main, parse_args
from .config import (
    ALLOCATOR_NAMES,
    CONFIG_FILE,
    DEFAULT_ALLOCATORS,
    FRONTIER_FILE,
    HEATMAP_FILE,
    RECORDS_FILE,
    RESAMPLE_CHOICES,
    RESULTS_FILE,
    RESULTS_FORMAT,
    SYNTHETIC_BACKBONE,
    SYNTHETIC_DATASET,
    TASKS,
    EvalConfig,
)
from .jobs import Job, build_jobs, shard_jobs
from .metrics import (
    GROUNDING_TYPES,
    RECALL_THRESHOLDS,
    aggregate_records,
    build_results,
    format_table,
    grounding_iou,
    grounding_metrics,
)
from .records import merge_parts, read_records
from .runner import evaluate
from .scales import random_scales

__all__ = [
    "ALLOCATOR_NAMES",
    "CONFIG_FILE",
    "DEFAULT_ALLOCATORS",
    "EvalBackend",
    "EvalConfig",
    "EvalSample",
    "FRONTIER_FILE",
    "GROUNDING_TYPES",
    "HEATMAP_FILE",
    "HFBackend",
    "Job",
    "NeedleBackend",
    "RECALL_THRESHOLDS",
    "RECORDS_FILE",
    "RESAMPLE_CHOICES",
    "RESULTS_FILE",
    "RESULTS_FORMAT",
    "SYNTHETIC_BACKBONE",
    "SYNTHETIC_DATASET",
    "TASKS",
    "aggregate_records",
    "build_jobs",
    "build_parser",
    "build_results",
    "evaluate",
    "format_table",
    "grounding_iou",
    "grounding_metrics",
    "main",
    "merge_parts",
    "parse_args",
    "random_scales",
    "read_records",
    "shard_jobs",
]
