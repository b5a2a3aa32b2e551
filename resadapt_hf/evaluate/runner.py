"""The evaluation loop, :func:`evaluate`, in one process or sharded over a ``torchrun`` / ``accelerate launch``.

For every job (sample, allocator, budget) the loop gets the allocator's raw per-frame scales (:mod:`.scales`),
projects them onto the budget BY CONSTRUCTION with the backend's solver, runs the backbone on exactly that
allocation (:mod:`.backends`), grades the completion (:mod:`.metrics`) and records the ACHIEVED retention.

Multi-process (``accelerate.PartialState`` gives the rank, the world size and the barrier; one process is the
same code with a world of one):

1. every process builds the same full job list and checks the output folder (the main process writes
   ``config.json``, and merges the part files an interrupted run left behind);
2. barrier; every process reads ``records.jsonl``, drops the finished jobs and takes its shard of the rest
   (:func:`.jobs.shard_jobs`: whole samples, round-robin), streaming its records to its own part file;
3. barrier; the main process merges the parts into ``records.jsonl`` in job-list order, aggregates, writes
   ``results.json`` and the plots (atomically);
4. barrier; the other processes read ``results.json`` back, so every process returns the same dict.

Nothing depends on the rank: the ``random`` allocator is seeded per (seed, sample id), a preset ``learned``
allocator is built right after seeding, decoding is greedy; the results equal a single-process run's.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from itertools import groupby
from pathlib import Path
from typing import Sequence

import torch

from ..processing.allocation import Allocation
from .backends import EvalSample
from .config import FRONTIER_FILE, HEATMAP_FILE, RECORDS_FILE, RESULTS_FILE, RESUME_FIELDS, EvalConfig
from .inputs import Lazy, RunInputs, describe_allocator, resolve_inputs
from .jobs import Job, build_jobs, shard_jobs
from .metrics import build_results, score_completion
from .plots import plot_frontier, plot_heatmap
from .records import check_resume, index_records, merge_parts, part_path, read_records, write_json_atomic
from .scales import allocator_objects, raw_scales

logger = logging.getLogger(__name__)

__all__ = ["distributed_state", "evaluate", "release_distributed"]


def distributed_state():
    """This process's ``accelerate.PartialState`` (rank, world size, barrier; a world of one outside a launcher).

    Under a launcher, accelerate uses the CPU backend (gloo) only when told ``cpu=True``; this says so when
    ``accelerate launch --cpu`` asked for it (``ACCELERATE_USE_CPU``) or the machine has no accelerator. A state
    that already exists in this process (e.g. a trainer's) is returned as it is.
    """
    from accelerate import PartialState

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return PartialState()
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "false").lower() in ("1", "true", "yes")
    return PartialState(cpu=use_cpu or not torch.accelerator.is_available())


def release_distributed():
    """Destroy the process group of a multi-process launch; the command line calls it before exiting, as torch asks
    of every process that initialised one. A no-op in a single process, where a group (if any) is not ours."""
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if launched and torch.distributed.is_available() and torch.distributed.is_initialized():
        from accelerate import PartialState

        PartialState().destroy_process_group()


def _resolve_config(config, backbone, overrides: dict) -> tuple[EvalConfig, object]:
    if isinstance(backbone, (str, os.PathLike)):  # a name is the config field, not a backend object
        overrides["backbone"], backbone = str(backbone), None
    if config is None:
        return EvalConfig(**overrides), backbone
    if not isinstance(config, EvalConfig):
        raise TypeError(f"config must be an EvalConfig, got {type(config).__name__}")
    return (EvalConfig(**{**asdict(config), **overrides}) if overrides else config), backbone


def evaluate(config: EvalConfig | None = None, *, records=None, backbone=None, learned=None, **overrides) -> dict:
    """Run the budget-controlled evaluation and write the output folder; returns the ``results.json`` dict.

    Under ``torchrun`` / ``accelerate launch`` every process calls this with the same arguments; the jobs are
    sharded, the main process writes the folder, and every process returns the same dict.

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
    config, backbone = _resolve_config(config, backbone, overrides)
    learned = learned if learned is not None else config.learned
    names = config.resolved_allocators(has_learned=learned is not None)
    if "learned" in names and learned is None:
        raise ValueError("learned: the 'learned' allocator needs learned= (a folder, Hub repo id or preset)")
    torch.manual_seed(config.seed)
    inputs = resolve_inputs(config, records, backbone)
    allocators = Lazy(lambda: allocator_objects(names, learned, config))

    state = distributed_state()
    main = state.is_main_process
    out = Path(config.out)
    settings = {k: getattr(config, k) for k in RESUME_FIELDS}
    settings.update(backbone=inputs.backbone_name, dataset=inputs.dataset_name,
                    learned=describe_allocator(learned) if "learned" in names else None)
    check_resume(out, settings, write=main)  # every process checks, so a refusal stops all of them
    jobs = build_jobs(inputs.ids, names, config.budgets)
    order = {job.key: job.index for job in jobs}.get
    if main:  # only the main process writes records.jsonl: merge what an interrupted run left, repair a cut line
        if merge_parts(out, order):
            logger.info("%s: merged the records an interrupted run left in part files", out)
        read_records(out / RECORDS_FILE)
    state.wait_for_everyone()

    done = index_records(read_records(out / RECORDS_FILE, repair=False))
    pending = [job for job in jobs if job.key not in done]
    mine = shard_jobs(pending, state.process_index, state.num_processes)
    desc = "resadapt eval" if state.num_processes == 1 else f"resadapt eval (shard 1 of {state.num_processes})"
    _run_shard(mine, inputs, allocators, config, part_path(out, state.process_index),
               progress=config.progress and main, desc=desc)
    state.wait_for_everyone()

    if main:
        results = _finish(out, order, jobs, inputs, names, config)
    state.wait_for_everyone()
    if not main:
        results = json.loads((out / RESULTS_FILE).read_text())
    return results


def _run_shard(jobs: Sequence[Job], inputs: RunInputs, allocators: Lazy, config: EvalConfig, sink_path: Path, *,
               progress: bool, desc: str):
    """Run ``jobs`` (whole samples, in job-list order) and append each record to ``sink_path`` as it is made."""
    if not jobs:
        return
    from tqdm.auto import tqdm

    with tqdm(total=len(jobs), desc=desc, disable=not progress, unit="run") as bar, sink_path.open("a") as sink:
        for sample_index, group in groupby(jobs, key=lambda job: job.sample_index):
            group = list(group)
            sample = inputs.backend().prepare(inputs.rows[sample_index], group[0].sample_id)
            predicted: dict[str, tuple[list[float], float]] = {}
            for job in group:
                bar.set_postfix_str(f"{job.allocator}@{'-' if job.budget is None else f'{job.budget:g}'}")
                if job.allocator not in predicted:  # an allocator runs once per sample; each budget projects it
                    allocator = allocators().get(job.allocator)  # loaded on first use, outside the timing
                    started = time.perf_counter()
                    scales = raw_scales(job.allocator, allocator, sample, config)
                    predicted[job.allocator] = (scales, time.perf_counter() - started)
                scales, predict_seconds = predicted[job.allocator]
                started = time.perf_counter()
                allocation = inputs.backend().allocate(sample, scales, job.budget)
                allocator_seconds = predict_seconds + time.perf_counter() - started
                started = time.perf_counter()
                completion = inputs.backend().generate(sample, allocation)
                backbone_seconds = time.perf_counter() - started
                record = make_record(sample, job.allocator, job.budget, allocation, completion, allocator_seconds,
                                     backbone_seconds)
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                bar.update(1)


def _finish(out: Path, order, jobs: Sequence[Job], inputs: RunInputs, names: Sequence[str],
            config: EvalConfig) -> dict:
    """Main process, after every shard is done: merge the parts, aggregate, write ``results.json`` and plots."""
    new = merge_parts(out, order)
    missed = sum(record.get("budget_reached") is False for record in new)
    if missed:
        logger.warning("%d run(s) could not reach their budget within %g; their achieved retention is recorded",
                       missed, config.budget_tolerance)
    done = index_records(read_records(out / RECORDS_FILE))
    absent = [job.key for job in jobs if job.key not in done]
    if absent:  # a process lost its part file: refuse to aggregate an incomplete run
        raise RuntimeError(f"out: {len(absent)} record(s) missing from {out / RECORDS_FILE} after the merge, "
                           f"e.g. {absent[0]}; run again to compute them")
    results = build_results([done[job.key] for job in jobs], backbone=inputs.backbone_name,
                            dataset=inputs.dataset_name, task=config.task, seed=config.seed,
                            num_samples=len(inputs.ids), budgets=config.budgets, allocators=names)
    write_json_atomic(out / RESULTS_FILE, results)
    if config.plots:
        plot_frontier(results, out / FRONTIER_FILE)
        plot_heatmap(done, names, config.budgets, config.min_scale, inputs.ids, inputs.rows, out / HEATMAP_FILE)
    return results


def make_record(sample: EvalSample, name: str, budget, allocation: Allocation, completion: str,
                allocator_seconds: float, backbone_seconds: float) -> dict:
    """One line of ``records.jsonl``: the allocation as planned (scales, chunk sizes, tokens, ACHIEVED retention),
    the completion and its grades, and the timings (the only fields that differ between two identical runs)."""
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
        **score_completion(row, completion),
        "allocator_seconds": allocator_seconds,
        "backbone_seconds": backbone_seconds,
    }


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
