"""The output folder on disk: ``records.jsonl`` (read, repaired, extended), the per-process part files of a
sharded run and their merge, the resume check against ``config.json``, and atomic file writes.

Why part files: under ``torchrun`` / ``accelerate launch`` every process streams its records to its own
``records.part-<rank>.jsonl`` (no two processes ever append to one file); the main process alone merges the parts
into ``records.jsonl``, in the job-list order, so the file does not depend on the number of processes. A part left
by an interrupted run is merged by the next run before it computes anything, so its records are not recomputed.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Callable, Iterable, Mapping

from .config import CONFIG_FILE, RECORDS_FILE

logger = logging.getLogger(__name__)

__all__ = ["PART_GLOB", "check_resume", "index_records", "key_of", "merge_parts", "part_path", "read_records",
           "record_key", "temporary_sibling", "write_atomic", "write_json_atomic"]

PART_GLOB = "records.part-*.jsonl"


def record_key(allocator: str, budget: float | None, sample_id) -> tuple:
    """The identity of a record: ``(allocator, budget or None, sample id)``; a folder holds each key once."""
    return allocator, None if budget is None else float(budget), str(sample_id)


def key_of(record: Mapping) -> tuple:
    """:func:`record_key` of a record dict."""
    return record_key(record["allocator"], record["budget"], record["sample_id"])


def part_path(out, rank: int) -> Path:
    """The part file process ``rank`` writes its records to."""
    return Path(out) / f"records.part-{int(rank):05d}.jsonl"


def read_records(path, *, repair: bool = True) -> list[dict]:
    """The records of a ``records.jsonl`` (or part file). A last line cut off by an interrupted run is dropped: with
    ``repair`` it is also removed from the file (and a missing final newline added) so appends start on a fresh
    line; a malformed line elsewhere is an error."""
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
                if repair:
                    write_atomic(path, "".join(f"{json.dumps(r)}\n" for r in records))
                return records
            raise ValueError(f"{path}: line {i + 1} is not valid JSON; fix or delete the file to start over")
    if repair and text and not text.endswith("\n"):
        with path.open("a") as f:
            f.write("\n")
    return records


def merge_parts(out, order: Callable[[tuple], int | None]) -> list[dict]:
    """Move the records of every part file in ``out`` into ``records.jsonl`` (main process only); returns the
    records added.

    Each key is kept once: a record already in ``records.jsonl`` (or earlier in the parts) wins over a copy, which
    can only come from a run interrupted between appending and removing its parts. The added records are appended
    in job-list order (``order(key)``: the key's index in the job list, None for a key outside it, e.g. a budget
    this run no longer asks for; those follow, sorted by key), so the file is the same whatever the number of
    processes that computed them. The parts are removed once the append is on disk.
    """
    out = Path(out)
    parts = sorted(out.glob(PART_GLOB))
    if not parts:
        return []
    records_path = out / RECORDS_FILE
    seen = {key_of(r) for r in read_records(records_path)}
    added = {}
    for part in parts:
        for record in read_records(part, repair=False):
            key = key_of(record)
            if key not in seen and key not in added:
                added[key] = record

    def position(key: tuple) -> tuple:
        index = order(key)
        return (0, index, "") if index is not None else (1, 0, json.dumps(key))

    new = [added[key] for key in sorted(added, key=position)]
    if new:
        with records_path.open("a") as sink:
            sink.writelines(json.dumps(record) + "\n" for record in new)
            sink.flush()
            os.fsync(sink.fileno())
    for part in parts:
        part.unlink()
    return new


def temporary_sibling(path, suffix: str = ".tmp") -> Path:
    """A fresh hidden name next to ``path`` (same folder, hence same file system, so ``os.replace`` is atomic),
    unique per process and call. Files created under it get the usual permissions (umask), unlike ``mkstemp``'s
    owner-only ones."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}{suffix}")


def write_atomic(path, text: str):
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``: a reader (another
    process, the hub card generator) sees the old file or the new one, never half of one."""
    temporary = temporary_sibling(path)
    try:
        with temporary.open("x") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_json_atomic(path, data):
    """:func:`write_atomic` of ``data`` as indented JSON."""
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def check_resume(out, settings: dict, *, write: bool = True):
    """Refuse an output folder whose ``config.json`` holds other settings (``ValueError`` naming them); with
    ``write``, create the folder and (re)write ``config.json`` atomically.

    Every process of a sharded run calls this with ``write`` only on the main one: all of them check (so a refused
    folder stops every process before any waits for the others), one writes.
    """
    out = Path(out)
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
    if write:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")


def index_records(records: Iterable[dict]) -> dict[tuple, dict]:
    """``{key: record}``; the first record of a key wins."""
    done: dict[tuple, dict] = {}
    for record in records:
        done.setdefault(key_of(record), record)
    return done
