"""What a run evaluates: its rows and their ids, the backbone (built on first use) and the names written into
``results.json`` / ``config.json``. Every process of a sharded run resolves the same inputs from the same
settings."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..data import load_records
from ..loading import load_backbone
from .backends import HFBackend, NeedleBackend, hf_backend
from .config import READER_DATASET, SYNTHETIC_BACKBONE, SYNTHETIC_DATASET, EvalConfig

READER_TEST_SAMPLES = 200  # task 'reader': held-out videos evaluated when num_samples is not given

__all__ = ["Lazy", "RunInputs", "describe_allocator", "load_dataset_rows", "resolve_inputs", "sample_ids"]

_SYNTHETIC_DEFAULT_SAMPLES = 64


class Lazy:
    """``factory()``, called once, on first use: a fully resumed run (or a process whose shard is empty) loads no
    model."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory, self._value = factory, None

    def __call__(self):
        if self._factory is not None:
            self._value, self._factory = self._factory(), None
        return self._value


@dataclass
class RunInputs:
    """The resolved inputs of a run.

    Attributes:
        rows: the evaluated records (``resadapt_hf.data`` schema).
        ids: their sample ids (unique).
        backend: the :class:`EvalBackend`, built on first call.
        dataset_name, backbone_name: how ``results.json`` and ``config.json`` name them.
    """

    rows: list[dict]
    ids: list[str]
    backend: Lazy
    dataset_name: str
    backbone_name: str


def load_dataset_rows(spec: str, split: str) -> list[dict]:
    """Records from a ``.json``/``.jsonl`` file, a ``datasets`` ``save_to_disk`` folder or a Hub dataset name."""
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


def sample_ids(rows: Sequence[dict]) -> list[str]:
    """The id of each row (its ``id`` / ``sample_id``, else its index); ids must be unique to resume."""
    ids, seen = [], set()
    for i, row in enumerate(rows):
        sample_id = str(row.get("id", row.get("sample_id", i)))
        if sample_id in seen:
            raise ValueError(f"dataset: sample id {sample_id!r} appears twice; ids must be unique to resume")
        seen.add(sample_id)
        ids.append(sample_id)
    return ids


def describe_allocator(learned) -> str | None:
    """How ``config.json`` names the learned allocator (a spec as given, an object by class and source)."""
    if learned is None or isinstance(learned, (str, os.PathLike)):
        return None if learned is None else str(learned)
    name = getattr(getattr(learned, "config", None), "_name_or_path", None) or getattr(learned, "name_or_path", None)
    return f"{type(learned).__name__}({name})" if name else type(learned).__name__


def resolve_inputs(config: EvalConfig, records=None, backbone=None) -> RunInputs:
    """The rows, ids and backend of a run (see :func:`resadapt_hf.evaluate.evaluate` for ``records`` and
    ``backbone``); raises ``ValueError`` / ``TypeError`` naming the argument when one is missing or mismatched."""
    if config.task == "synthetic":
        return _synthetic_inputs(config, records, backbone)
    if config.task == "reader":
        if records is not None:
            raise ValueError("records: task 'reader' makes its own records; use task='dataset' for yours")
        from ..reader_task import reader_records

        records = reader_records(config.num_samples or READER_TEST_SAMPLES)
    if records is None and config.dataset is None:
        raise ValueError("dataset: task 'dataset' needs a dataset (.json/.jsonl file, datasets folder or Hub "
                         "name) or records=")
    rows = load_records(records) if records is not None else load_dataset_rows(config.dataset, config.split)
    if config.num_samples is not None:
        rows = rows[: config.num_samples]
    if not rows:
        raise ValueError("dataset: no records to evaluate")
    ids = sample_ids(rows)
    dataset_name = READER_DATASET if config.task == "reader" else config.dataset or "<records>"
    if backbone is None:
        if config.backbone is None:
            raise ValueError(
                "backbone: task 'dataset' needs a backbone (Hub id, local path, tiny-reader or tiny-<family>)"
            )
        # load_backbone places the model (one device per process under a multi-process launch)
        factory = lambda: hf_backend(load_backbone(config.backbone), config)  # noqa: E731
        return RunInputs(rows, ids, Lazy(factory), dataset_name, config.backbone)
    if isinstance(backbone, tuple):
        backbone = hf_backend(backbone, config)
        return RunInputs(rows, ids, Lazy(lambda: backbone), dataset_name, backbone.name)
    if isinstance(backbone, HFBackend):
        ours = {k: getattr(backbone.processor, k) for k in ("min_scale", "max_scale", "budget_tolerance")}
        wanted = {k: getattr(config, k) for k in ours}
        if ours != wanted:
            raise ValueError(f"backbone: the HFBackend's processor settings {ours} differ from this run's {wanted}")
    for attr in ("prepare", "allocate", "generate"):
        if not callable(getattr(backbone, attr, None)):
            raise TypeError(f"backbone must be an EvalBackend or a (model, processor) pair; missing {attr}()")
    name = getattr(backbone, "name", None) or type(backbone).__name__
    return RunInputs(rows, ids, Lazy(lambda: backbone), dataset_name, name)


def _synthetic_inputs(config: EvalConfig, records, backbone) -> RunInputs:
    from ..synthetic import make_needle_dataset

    needle = config.needle_config()
    if records is not None:
        raise ValueError("records: the synthetic task makes its own records; use task='dataset' for yours")
    count = config.num_samples or _SYNTHETIC_DEFAULT_SAMPLES
    rows = make_needle_dataset(needle, count, start=config.synthetic_start)
    ids = [f"needle-{config.synthetic_start + i}" for i in range(count)]
    if backbone is None:
        factory = lambda: NeedleBackend(needle, budget_tolerance=config.budget_tolerance)  # noqa: E731
        return RunInputs(rows, ids, Lazy(factory), SYNTHETIC_DATASET, SYNTHETIC_BACKBONE)
    if not isinstance(backbone, NeedleBackend):
        raise TypeError(f"backbone: the synthetic task needs a NeedleBackend, got {type(backbone).__name__}")
    if backbone.config != needle:
        raise ValueError(f"backbone: the NeedleBackend's task config {backbone.config} differs from this run's "
                         f"{needle} (synthetic fields, min_scale/max_scale)")
    return RunInputs(rows, ids, Lazy(lambda: backbone), SYNTHETIC_DATASET, SYNTHETIC_BACKBONE)
