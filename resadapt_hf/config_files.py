"""Config files for the command lines (``resadapt train``, ``resadapt eval``), TRL-script style.

``--config FILE`` (YAML or JSON; or the file alone as the only argument) supplies field values and options given on
the command line override them. The file's values are turned into ``--field value`` tokens and parsed by the same
``HfArgumentParser`` as the options, so they are converted and checked exactly alike (YAML 1.1 reads ``3e-4`` as a
string and an unquoted ``no`` as false; the parser types the first, and false is given back as ``no`` to a field
that is not boolean, e.g. ``save_strategy: no``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path
from typing import Sequence

import yaml

__all__ = ["CONFIG_SUFFIXES", "config_file_argv", "given_values"]

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
_UNSET = object()  # an option the command line did not give


def _field_types(dataclass_types) -> dict[str, typing.Any]:
    types = {}
    for cls in dataclass_types:
        hints = typing.get_type_hints(cls)
        types.update({f.name: hints[f.name] for f in dataclasses.fields(cls)})
    return types


def config_file_argv(path, dataclass_types) -> tuple[list[str], list[str]]:
    """``(tokens, nulls)`` of a YAML/JSON file of field values: ``--field value`` tokens for the parser (mappings
    as JSON, lists as several values, ``report_to: []`` as ``none``) and the names set to ``null``, which the parser
    cannot take as a value (they are set to None after parsing). Unknown keys are refused, naming them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config: no such file {path}")
    values = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ValueError(f"config: {path} must hold a mapping of settings, got {type(values).__name__}")
    types = _field_types(dataclass_types)
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ValueError(f"config: {path} has unknown field(s) {unknown}; accepted: {sorted(types)}")
    tokens, nulls = [], []
    for key, value in values.items():
        if value is None:
            nulls.append(key)
            continue
        if isinstance(value, bool) and types[key] not in (bool, bool | None):
            value = "no" if value is False else "yes"
        if isinstance(value, dict):
            values_of_key = [json.dumps(value)]
        elif isinstance(value, (list, tuple)):
            if not value and key != "report_to":
                continue  # argparse cannot take an empty list: the default stands
            values_of_key = ["none"] if not value else [json.dumps(v) if isinstance(v, dict) else str(v) for v in value]
        else:
            values_of_key = [str(value)]
        tokens += [f"--{key}", *values_of_key]
    return tokens, nulls


def given_values(parser: argparse.ArgumentParser, dataclass_types, argv: Sequence[str]) -> dict:
    """The field values a command line gives: the config file's (``--config FILE``, or the file alone as the only
    argument), then the options, typed by ``parser``. Fields given nowhere are absent, so the caller can tell a
    default from an explicit value."""
    argv = list(argv)
    if len(argv) == 1 and not argv[0].startswith("-") and argv[0].lower().endswith(CONFIG_SUFFIXES):
        argv = ["--config", argv[0]]
    nulls: list[str] = []
    if "--config" in argv:
        at = argv.index("--config")
        if at + 1 >= len(argv):
            raise ValueError("--config needs a YAML or JSON file path")
        tokens, nulls = config_file_argv(argv[at + 1], dataclass_types)
        argv = tokens + argv[:at] + argv[at + 2:]  # argparse keeps the last occurrence: the options win
    names = set(_field_types(dataclass_types))
    namespace = argparse.Namespace(**{name: _UNSET for name in names})
    parser.parse_args(argv, namespace=namespace)
    given = {name: None for name in nulls}
    given.update({name: value for name, value in vars(namespace).items() if value is not _UNSET and name in names})
    return given
