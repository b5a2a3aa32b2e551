"""The dataset schema for CAPO training and evaluation, with a loader and row validation.

One record (a row of a HF ``datasets.Dataset``, a JSON/JSONL line, or a dict):

=================  ==========================================================================================
``video``          path of a video file (decoded once with PyAV), **or**
``frames``         uint8 frames ``[T, H, W, 3]`` (array, tensor or nested lists)
``question``       the question (str, non-empty)
``answer``         the reference answer (str; an option letter for multiple choice)
``problem_type``   one of ``rewards.PROBLEM_TYPES``
``options``        optional list of options (``["A. cat", "B. dog", ...]``), required for multiple choice
``segments``       optional ground-truth segments ``[[start, end], ...]`` in seconds (grounding tasks)
=================  ==========================================================================================

:func:`decode_record` turns ``video`` into ``frames`` (+ ``frame_indices``/``timestamps``) once, so the Allocator
and the backbone read the very same frames.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import torch

from .processing.video_input import load_video, to_video_clip
from .rewards import PROBLEM_TYPES

REQUIRED = ("question", "answer", "problem_type")


def validate_record(row: dict, index: int) -> dict:
    """Check one record against the schema; raise ValueError naming the row and the field."""
    if not isinstance(row, dict):
        raise ValueError(f"row {index}: expected a dict record, got {type(row).__name__}")
    for key in REQUIRED:
        if row.get(key) in (None, ""):
            raise ValueError(f"row {index}: missing required field {key!r} (schema: {REQUIRED} + video or frames)")
    if (row.get("video") is None) == (row.get("frames") is None):
        raise ValueError(f"row {index}: exactly one of 'video' (a path) or 'frames' ([T, H, W, 3] uint8) is needed")
    if row["problem_type"] not in PROBLEM_TYPES:
        raise ValueError(f"row {index}: problem_type must be one of {PROBLEM_TYPES}, got {row['problem_type']!r}")
    if row["problem_type"] == "multiple_choice" and not row.get("options"):
        raise ValueError(f"row {index}: multiple_choice rows need 'options'")
    if row["problem_type"] == "grounded_qa" and row.get("segments") is None:
        raise ValueError(f"row {index}: grounded_qa rows need 'segments' (temporal_grounding reads them from 'answer')")
    if row.get("video") is not None and not isinstance(row["video"], (str, os.PathLike)):
        raise ValueError(f"row {index}: 'video' must be a file path, got {type(row['video']).__name__}")
    return row


def load_records(source, *, split: str = "train") -> list[dict]:
    """Records from a list of dicts, a ``datasets.Dataset``/``DatasetDict``, or a ``.json``/``.jsonl`` file;
    every row is validated (the error names the bad row)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"source: no such dataset file {path}")
        text = path.read_text()
        rows = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" \
            else json.loads(text)
        base = path.parent
        for row in rows:  # relative video paths are relative to the dataset file
            if isinstance(row, dict) and isinstance(row.get("video"), str) and not os.path.isabs(row["video"]):
                row["video"] = str(base / row["video"])
    elif _is_dataset_dict(source):
        if split not in source:
            raise ValueError(f"split: {split!r} not in the dataset's splits {list(source)}")
        rows = list(source[split])
    else:
        rows = list(source)
    return [validate_record(dict(row), i) for i, row in enumerate(rows)]


def _is_dataset_dict(source) -> bool:
    try:
        from datasets import DatasetDict
    except ImportError:  # datasets comes with the [train] extra
        return False
    return isinstance(source, DatasetDict)


def decode_record(row: dict, *, num_frames: int | None = None, fps: float | None = None) -> dict:
    """The record with ``frames`` uint8 [T, H, W, 3] (decoded from ``video`` once), ``frame_indices``,
    ``timestamps`` and ``clip`` (the :class:`VideoClip` itself, which keeps a file's frame rate: the backbone's
    temporal positions / timestamps need it, raw frames would fall back to an assumed rate)."""
    if row.get("video") is not None:
        clip = load_video(row["video"], num_frames=num_frames, fps=fps)
    else:
        frames = row["frames"]
        if isinstance(frames, (list, tuple)):  # JSON / datasets store frames as nested lists of 0..255 ints
            frames = torch.as_tensor(frames, dtype=torch.uint8)
        clip = to_video_clip(frames, num_frames=num_frames, fps=fps)
    return {**row, "frames": clip.frames, "frame_indices": clip.frame_indices, "timestamps": clip.timestamps,
            "clip": clip}


def decode_records(rows: Iterable[dict], **sampling) -> list[dict]:
    return [decode_record(r, **sampling) for r in rows]


def to_jsonable(row: dict) -> dict[str, Any]:
    """A record with tensors turned into lists (for writing JSONL)."""
    return {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in row.items()}
