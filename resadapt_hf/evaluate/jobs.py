"""The job list of a run and its split over processes.

A job is one (sample, allocator, budget) run; ``vanilla`` has one job per sample (no budget). The full list is a
pure function of the settings, in sample-major order (sample, then allocator, then budget: the order a single
process runs them and ``records.jsonl`` lists them), so every process of a ``torchrun`` / ``accelerate launch``
builds the same list without talking to the others.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

from .records import record_key

__all__ = ["Job", "build_jobs", "shard_jobs"]


class Job(NamedTuple):
    """One run of the loop.

    Attributes:
        index: position in the full job list (the single-process order).
        sample_index: position of the sample in the evaluated rows.
        sample_id: the sample's id.
        allocator: a name of ``ALLOCATOR_NAMES``.
        budget: the target retention, None for ``vanilla``.
    """

    index: int
    sample_index: int
    sample_id: str
    allocator: str
    budget: float | None

    @property
    def key(self) -> tuple:
        """The record key of this job (``records.record_key``)."""
        return record_key(self.allocator, self.budget, self.sample_id)


def build_jobs(sample_ids: Sequence[str], allocators: Sequence[str], budgets: Sequence[float]) -> list[Job]:
    """Every job of a run, in sample-major order; ``vanilla`` once per sample, every other allocator at each
    budget."""
    jobs = []
    for sample_index, sample_id in enumerate(sample_ids):
        for name in allocators:
            for budget in ([None] if name == "vanilla" else budgets):
                jobs.append(Job(len(jobs), sample_index, str(sample_id), name,
                                None if budget is None else float(budget)))
    return jobs


def shard_jobs(jobs: Iterable[Job], rank: int, world_size: int) -> list[Job]:
    """The jobs process ``rank`` of ``world_size`` runs: whole samples, dealt round-robin.

    The jobs are put in job-list order first (so the shards do not depend on the order they are given in), then
    grouped by sample and the ``i``-th group goes to process ``i % world_size``: the shards are disjoint, together
    they are every job, and their sizes differ by at most one sample's jobs. A sample is never split, because its
    jobs share work: the video is decoded once and each allocator predicts once, every budget then projects that
    prediction.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an integer in [0, {world_size - 1}] (world_size {world_size}), got {rank!r}")
    groups: dict[int, list[Job]] = {}
    for job in sorted(jobs, key=lambda j: j.index):
        groups.setdefault(job.sample_index, []).append(job)
    # dicts keep insertion order: the groups are in sample order
    return [job for i, group in enumerate(groups.values()) if i % world_size == rank for job in group]
