"""The allocator side of the loop: the raw per-frame scales each allocator proposes for a sample, before the
backend projects them onto the budget.

* ``learned``: a trained Allocator (a saved folder, a Hub repo id or a ``resadapt_hf.allocators`` preset),
  deterministic (Beta-mean) scales through its ``predict_scales`` hook;
* ``prior``: the training-free :class:`PriorAllocator`;
* ``fixed``: FixedScale, the same scale for every frame (the projection sets the common value);
* ``random``: i.i.d. uniform scales in ``[min_scale, max_scale]``, seeded per (seed, sample id), so every budget,
  every run and every process of a sharded run gets the same random shape for a sample;
* ``vanilla``: scale 1 everywhere, no budget.
"""

from __future__ import annotations

import zlib
from typing import Any, Sequence

import numpy as np
import torch

from ..loading import load_allocator
from ..processing.allocation import FixedScale
from ..processing.prior_allocator import PriorAllocator
from .backends import EvalSample
from .config import EvalConfig

__all__ = ["allocator_objects", "random_scales", "raw_scales"]


def random_scales(seed: int, sample_id: str, num_frames: int, min_scale: float, max_scale: float) -> list[float]:
    """The ``random`` allocator: i.i.d. uniform per-frame scales in ``[min_scale, max_scale]``, a pure function of
    ``(seed, sample_id)`` (the same for every budget, run and process; the budget projection then rescales them)."""
    key = zlib.crc32(str(sample_id).encode("utf-8"))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), key]))
    return rng.uniform(min_scale, max_scale, int(num_frames)).tolist()


def allocator_objects(names: Sequence[str], learned, config: EvalConfig) -> dict[str, Any]:
    """The allocator objects of ``names`` (``random`` and ``vanilla`` need none)."""
    objects: dict[str, Any] = {}
    for name in names:
        if name == "learned":
            # a preset is built with random weights: seed right here so they depend on the seed alone, not on what
            # this process happened to run before (another process of a sharded run builds the same weights)
            torch.manual_seed(config.seed)
            objects[name] = load_allocator(learned)
        elif name == "prior":
            objects[name] = PriorAllocator(min_scale=config.min_scale, max_scale=config.max_scale)
        elif name == "fixed":
            objects[name] = FixedScale(1.0)  # uniform; the budget projection sets the common scale
    return objects


def raw_scales(name: str, allocator, sample: EvalSample, config: EvalConfig) -> list[float]:
    """The per-frame scales allocator ``name`` proposes for ``sample`` (one per frame, before the budget)."""
    num_frames = int(sample.frames.shape[0])
    if name == "vanilla":
        return [1.0] * num_frames
    if name == "random":
        return random_scales(config.seed, sample.sample_id, num_frames, config.min_scale, config.max_scale)
    scales = allocator.predict_scales([sample.frames], sample.question)
    return [float(s) for s in (scales[0].tolist() if isinstance(scales[0], torch.Tensor) else scales[0])]
