"""Export a complete, checked ResAdapt repo folder and push it to the Hugging Face Hub.

* :func:`export_folder`: ``processor.save_pretrained`` (remote-code ``.py`` files flat at the root,
  ``processor_config.json`` with ``auto_map.AutoProcessor``, tokenizer/chat template, and a learned allocator in
  ``allocator/``: ``config.json`` with ``auto_map`` AutoConfig/AutoModel + ``model.safetensors``), the model card
  ``README.md`` (:func:`resadapt_hf.hub_card.render_card`), and the evaluation plots when an eval is given.
* :func:`validate_folder`: the pre-upload checks (every ``auto_map`` target resolves to a file and a class,
  parsed with ``ast``; safetensors weights load; the allocator loads; no pickle files; a README with front matter).
* :func:`push_folder`: validate, then ``create_repo(exist_ok=True)`` (+ ``create_branch`` for a non-main revision)
  and ``upload_folder``. :func:`push_to_hub`: export to a temporary folder, then push.
* :func:`add_push_arguments` / :func:`run_push`: the ``resadapt push`` command.

The ``huggingface_hub`` functions are looked up on the module at call time (``huggingface_hub.create_repo``...), so
tests patch them there.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .hub_card import check_eval_results, find_placeholders, render_card, training_summary
from .processing.processing_resadapt import ALLOCATOR_SUBFOLDER

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
EVAL_FORMAT_PREFIX = "resadapt-eval/"
DEFAULT_COMMIT_MESSAGE = "Upload ResAdapt processor"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg", ".webp")
UPLOAD_IGNORE_PATTERNS = ["__pycache__/*", "**/__pycache__/*", "*.pyc", "**/*.pyc"]


# ---------------------------------------------------------------------------------------------------------------
# evaluation results
def load_eval_results(path: str | os.PathLike) -> tuple[dict, Path]:
    """Read a ``resadapt eval`` result: a JSON file, or a folder holding exactly one ``resadapt-eval/*`` JSON.

    Returns:
        (the checked result, the folder its plot paths are relative to).

    Raises:
        FileNotFoundError, ValueError: no file, no or several result files in the folder, or an invalid file.
    """
    path = Path(path)
    if path.is_dir():
        candidates = []
        for file in sorted(path.glob("*.json")):
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and str(data.get("format", "")).startswith(EVAL_FORMAT_PREFIX):
                candidates.append((file, data))
        if not candidates:
            raise ValueError(f"eval: no {EVAL_FORMAT_PREFIX}* JSON file in {path} (expected `resadapt eval` output)")
        if len(candidates) > 1:
            raise ValueError(
                f"eval: several result files in {path} ({[f.name for f, _ in candidates]}); pass the JSON file itself"
            )
        file, data = candidates[0]
    elif path.is_file():
        file = path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise ValueError(f"eval: {path} is not valid JSON: {error}") from None
    else:
        raise FileNotFoundError(f"eval: {path} does not exist")
    try:
        return check_eval_results(data), file.parent
    except ValueError as error:
        raise ValueError(f"eval: {file}: {error}") from None


def _copy_plot(eval_results: dict, key: str, source_dir: Path, folder: Path) -> str | None:
    name = eval_results.get(key)
    if not name:
        return None
    source = (source_dir / name).resolve()
    if source.parent != source_dir.resolve() or source.suffix.lower() not in IMAGE_SUFFIXES:
        warnings.warn(f"eval: {key} {name!r} is not an image file inside {source_dir}; not copied", stacklevel=3)
        return None
    if not source.is_file():
        warnings.warn(f"eval: {key} {name!r} not found in {source_dir}; the card will not show it", stacklevel=3)
        return None
    target = folder / source.name
    shutil.copyfile(source, target)
    return source.name


# ---------------------------------------------------------------------------------------------------------------
# export
def export_folder(
    processor,
    folder: str | os.PathLike,
    *,
    eval_dir: str | os.PathLike | None = None,
    training_args: Any = None,
    repo_id: str | None = None,
    revision: str = "main",
    license: str = "apache-2.0",
    datasets: Iterable[str] | None = None,
    backbone: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Assemble a complete Hub repo folder for ``processor`` (a ``ResAdaptProcessor``).

    Args:
        processor: the processor to export (its allocator, if learned, goes to ``allocator/``).
        folder: target folder; must be empty or absent (``overwrite=True`` deletes it first).
        eval_dir: ``resadapt eval`` output (folder or JSON file): results table, frontier and heatmap plots.
        training_args: ``CAPOConfig`` or a mapping; only the fields the card lists are used.
        repo_id: the Hub repo the card's quick start loads from; None: the local folder path (re-export with the
            repo id before pushing: :func:`push_folder` checks it).
        revision: branch/tag/commit the card pins.
        license, datasets: card metadata (``datasets``: Hub dataset ids).
        backbone: backbone Hub id or path; default ``processor.backbone_name_or_path``. When neither is known the
            card has no ``base_model`` and no runnable quick start (a warning says so).
        overwrite: delete ``folder`` first when it is not empty.

    Returns:
        The folder.
    """
    folder = Path(folder)
    eval_results, eval_source = (None, None) if eval_dir is None else load_eval_results(eval_dir)
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise ValueError(f"folder: {folder} is not empty; export into a new folder (or pass overwrite=True)")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)

    processor.save_pretrained(folder)
    processor_config = json.loads((folder / "processor_config.json").read_text(encoding="utf-8"))
    allocator_config, num_parameters = None, None
    allocator = (processor_config.get("allocator_config") or {})
    if allocator.get("type") == "model":
        sub = folder / allocator.get("subfolder", ALLOCATOR_SUBFOLDER)
        if (sub / "config.json").is_file():
            allocator_config = json.loads((sub / "config.json").read_text(encoding="utf-8"))
        num_parameters = _count_parameters(sub)

    frontier = heatmap = None
    if eval_results is not None:
        frontier = _copy_plot(eval_results, "frontier_png", eval_source, folder)
        heatmap = _copy_plot(eval_results, "heatmap_png", eval_source, folder)

    backbone = backbone or getattr(processor, "backbone_name_or_path", None) or None
    if backbone is None:
        warnings.warn(
            "backbone: not recorded on the processor and not given; the model card will have no base_model and no "
            "runnable quick start (pass backbone=...)", stacklevel=2,
        )
    card = render_card(
        repo_id=repo_id or str(folder.resolve()), backbone=backbone, revision=revision, eval_results=eval_results,
        training_args=training_summary(training_args), license=license, datasets=datasets, frontier_png=frontier,
        heatmap_png=heatmap, processor_config=processor_config, allocator_config=allocator_config,
        allocator_num_parameters=num_parameters,
    )
    (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


def _count_parameters(folder: Path) -> int | None:
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                count = 1
                for dim in handle.get_slice(key).get_shape():
                    count *= int(dim)
                total += count
    return total


# ---------------------------------------------------------------------------------------------------------------
# validation
def _auto_map_targets(auto_map: Mapping) -> list[tuple[str, str]]:
    targets = []
    for auto_class, value in auto_map.items():
        for reference in value if isinstance(value, (list, tuple)) else [value]:
            if reference is not None:
                targets.append((auto_class, reference))
    return targets


def _defined_names(path: Path) -> set[str] | None:
    """Top-level names a module defines (classes, assignments, imports); None if it does not parse."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return None
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _check_auto_map(folder: Path, config_path: Path, problems: list[str]) -> None:
    rel = config_path.relative_to(folder).as_posix()
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except ValueError as error:
        problems.append(f"{rel}: not valid JSON ({error})")
        return
    # transformers resolves auto_map against the repo root (also for subfolder configs); loading the subfolder
    # itself as a local folder resolves it there: both must hold the module
    roots = [folder] if config_path.parent == folder else [folder, config_path.parent]
    for key_path, auto_map in _find_auto_maps(config):
        if not isinstance(auto_map, dict):
            problems.append(f"{rel}: {key_path} must be an object, got {type(auto_map).__name__}")
            continue
        _check_targets(folder, rel, roots, auto_map, problems)


def _find_auto_maps(value, path: str = "") -> list[tuple[str, Any]]:
    """Every ``auto_map`` in a JSON document, nested ones included (e.g. a sub-config's), with its key path."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else key
            if key == "auto_map":
                found.append((here, item))
            else:
                found.extend(_find_auto_maps(item, here))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(_find_auto_maps(item, f"{path}[{i}]"))
    return found


def _check_targets(folder: Path, rel: str, roots: list[Path], auto_map: dict, problems: list[str]) -> None:
    for auto_class, reference in _auto_map_targets(auto_map):
        if not isinstance(reference, str) or "." not in reference:
            problems.append(f"{rel}: auto_map[{auto_class!r}] = {reference!r} is not 'module.ClassName'")
            continue
        if "--" in reference:  # code in another repo ("owner/repo--module.Class"): not checkable offline
            continue
        module, class_name = reference.rsplit(".", 1)
        for root in roots:
            module_file = root / (module.replace(".", "/") + ".py")
            where = module_file.relative_to(folder).as_posix()
            if not module_file.is_file():
                problems.append(f"{rel}: auto_map[{auto_class!r}] = {reference!r} needs {where}, which is missing")
                continue
            names = _defined_names(module_file)
            if names is None:
                problems.append(f"{where}: does not parse as Python")
            elif class_name not in names:
                problems.append(
                    f"{rel}: auto_map[{auto_class!r}] = {reference!r}: {where} defines no {class_name!r}"
                )


def _check_readme(folder: Path, problems: list[str]) -> None:
    readme = folder / "README.md"
    if not readme.is_file():
        problems.append("README.md is missing (the model card)")
        return
    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---" not in text[4:]:
        problems.append("README.md has no YAML front matter (--- ... ---)")
        return
    end = text.index("\n---", 4)
    try:
        meta = yaml.safe_load(text[4:end])
    except yaml.YAMLError as error:
        problems.append(f"README.md: front matter is not valid YAML ({error})")
        return
    if not isinstance(meta, dict):
        problems.append("README.md: front matter is not a mapping")
        return
    for key in ("library_name", "pipeline_tag", "license", "tags"):
        if not meta.get(key):
            problems.append(f"README.md: front matter lacks {key!r}")
    leftovers = find_placeholders(text, markers=False)  # template slots only: names may contain "xx" or "todo"
    if leftovers:
        problems.append(f"README.md: placeholder text left: {leftovers}")
    for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text):
        if "://" not in target and not (folder / target).is_file():
            problems.append(f"README.md shows {target}, which is not in the folder")


def _check_weights(folder: Path, problems: list[str], load_allocator: bool) -> None:
    from safetensors.torch import load_file

    for file in sorted(folder.rglob("*.safetensors")):
        try:
            load_file(str(file))
        except Exception as error:  # noqa: BLE001 - every failure is a reason to refuse the upload
            problems.append(f"{file.relative_to(folder).as_posix()}: cannot be read as safetensors ({error})")
    processor_config = folder / "processor_config.json"
    if not processor_config.is_file():
        return
    try:
        allocator = json.loads(processor_config.read_text(encoding="utf-8")).get("allocator_config") or {}
    except ValueError:
        return
    if allocator.get("type") != "model":
        return
    sub = folder / allocator.get("subfolder", ALLOCATOR_SUBFOLDER)
    if not (sub / "config.json").is_file():
        problems.append(f"processor_config.json names a learned allocator in {sub.name}/, which has no config.json")
        return
    if not any(sub.glob("*.safetensors")):
        problems.append(f"{sub.name}/ holds no safetensors weights")
        return
    if load_allocator:
        try:
            from transformers import AutoModel

            _, info = AutoModel.from_pretrained(str(sub), trust_remote_code=True, output_loading_info=True)
        except Exception as error:  # noqa: BLE001
            problems.append(f"{sub.name}/: AutoModel.from_pretrained(trust_remote_code=True) failed: {error}")
            return
        for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
            if info.get(kind):
                problems.append(f"{sub.name}/: weights do not match the model ({kind}: {sorted(info[kind])[:5]})")


def validate_folder(folder: str | os.PathLike, *, load_allocator: bool = True) -> Path:
    """Check a repo folder before upload; raise ``ValueError`` listing every problem.

    Checks: ``processor_config.json`` exists; every ``auto_map`` entry of every ``*.json`` config names a module
    file present in the folder (at the root, and next to a subfolder config) that defines the class (parsed with
    ``ast``, never imported); every ``*.safetensors`` file loads; a learned allocator has its config and weights
    and (``load_allocator``) loads with ``AutoModel.from_pretrained(trust_remote_code=True)`` without missing or
    unexpected keys; no pickle files (``*.bin``, ``*.pt``, ``*.pth``, ``*.pkl``, ``*.pickle``, ``*.ckpt``); a
    ``README.md`` with YAML front matter (``library_name``, ``pipeline_tag``, ``license``, ``tags``), no
    placeholder text, and its images present.

    Returns:
        The folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder: {folder} is not a directory")
    problems: list[str] = []
    if not (folder / "processor_config.json").is_file():
        problems.append("processor_config.json is missing (not a saved ResAdaptProcessor)")
    pickles = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                     if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        problems.append(f"pickle files are not allowed on the Hub repo (use safetensors): {pickles}")
    for config_path in sorted(folder.rglob("*.json")):
        if ".cache" not in config_path.relative_to(folder).parts:
            _check_auto_map(folder, config_path, problems)
    _check_weights(folder, problems, load_allocator)
    _check_readme(folder, problems)
    if problems:
        raise ValueError(f"{folder} is not ready to upload:\n- " + "\n- ".join(problems))
    return folder


def _check_card_target(folder: Path, repo_id: str, revision: str) -> None:
    readme = folder / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    marker = "AutoProcessor.from_pretrained("
    if marker not in text:  # no quick start (backbone unknown): nothing to compare
        return
    problems = []
    if f'{marker}"{repo_id}"' not in text:
        problems.append(f"the README quick start does not load {repo_id!r}")
    if f'revision="{revision}"' not in text:
        problems.append(f"the README quick start does not pin revision {revision!r}")
    if problems:
        raise ValueError(
            f"{folder}: " + "; ".join(problems) + f". Re-export with repo_id={repo_id!r}, revision={revision!r}."
        )


# ---------------------------------------------------------------------------------------------------------------
# push
def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = False,
    revision: str | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    token: str | None = None,
    load_allocator: bool = True,
):
    """Validate ``folder`` (:func:`validate_folder`, and that its card loads ``repo_id`` at ``revision``), then
    ``create_repo(exist_ok=True)``, ``create_branch`` when ``revision`` is a branch other than ``main``, and
    ``upload_folder``.

    Returns:
        The ``CommitInfo`` of the upload (``.commit_url``, ``.oid``).
    """
    import huggingface_hub

    folder = Path(folder)
    if not repo_id or repo_id.count("/") != 1:
        raise ValueError(f"repo_id: expected 'owner/name', got {repo_id!r}")
    validate_folder(folder, load_allocator=load_allocator)
    _check_card_target(folder, repo_id, revision or "main")
    url = huggingface_hub.create_repo(repo_id, private=private, token=token, exist_ok=True)
    repo_id = getattr(url, "repo_id", None) or repo_id
    if revision not in (None, "main"):
        huggingface_hub.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
    return huggingface_hub.upload_folder(
        repo_id=repo_id, folder_path=folder, commit_message=commit_message, token=token, revision=revision,
        ignore_patterns=UPLOAD_IGNORE_PATTERNS,
    )


def push_to_hub(
    processor,
    repo_id: str,
    *,
    private: bool | None = False,
    revision: str | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    token: str | None = None,
    **export_kwargs,
):
    """:func:`export_folder` into a temporary folder, then :func:`push_folder`. ``export_kwargs``: ``eval_dir``,
    ``training_args``, ``license``, ``datasets``, ``backbone``. Returns the upload's ``CommitInfo``."""
    with tempfile.TemporaryDirectory(prefix="resadapt-push-") as tmp:
        folder = export_folder(processor, Path(tmp) / "repo", repo_id=repo_id, revision=revision or "main",
                               **export_kwargs)
        return push_folder(folder, repo_id, private=private, revision=revision, commit_message=commit_message,
                           token=token)


# ---------------------------------------------------------------------------------------------------------------
# command line
def add_push_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``resadapt push``."""
    parser.add_argument("source", metavar="FOLDER_OR_TRAINED_OUTPUT",
                        help="a saved ResAdaptProcessor folder (e.g. the output_dir of `resadapt train`)")
    parser.add_argument("--repo-id", required=True, help="target Hub repo, owner/name")
    parser.add_argument("--private", action="store_true", help="create the repo private (no effect if it exists)")
    parser.add_argument("--revision", default=None, help="branch to push to (created if missing; default: main)")
    parser.add_argument("--commit-message", default=DEFAULT_COMMIT_MESSAGE)
    parser.add_argument("--eval", dest="eval_dir", default=None,
                        help="`resadapt eval` output (folder or JSON): results table and plots on the card")
    parser.add_argument("--training-args", default=None,
                        help="JSON/YAML mapping of CAPOConfig values for the card (e.g. the `resadapt train` config)")
    parser.add_argument("--backbone", default=None,
                        help="backbone Hub id for the card (default: the one recorded in processor_config.json)")
    parser.add_argument("--license", default="apache-2.0")
    parser.add_argument("--dataset", dest="datasets", action="append", default=None,
                        help="Hub dataset id for the card metadata (repeatable)")
    parser.add_argument("--output-dir", default=None,
                        help="export here (must be empty or absent); default: a temporary folder")
    parser.add_argument("--token", default=None, help="Hub token (default: the logged-in one)")
    parser.add_argument("--dry-run", action="store_true", help="export and validate only; upload nothing")
    return parser


def _read_mapping(path: str) -> dict:
    text = Path(path).read_text(encoding="utf-8")
    values = yaml.safe_load(text)
    if not isinstance(values, dict):
        raise ValueError(f"--training-args: {path} must hold a mapping of CAPOConfig values")
    return values


def run_push(args: argparse.Namespace) -> int:
    """``resadapt push``: load the saved processor, export a clean repo folder (card included), validate, and
    upload it (unless ``--dry-run``). Returns the exit code (0 ok, 2 refused)."""
    from .processing.processing_resadapt import ResAdaptProcessor

    source = Path(args.source)
    try:
        if not (source / "processor_config.json").is_file():
            raise ValueError(f"{source}: no processor_config.json (expected a saved ResAdaptProcessor folder)")
        processor = ResAdaptProcessor.from_pretrained(str(source))
        backbone = args.backbone or processor.backbone_name_or_path
        if not backbone:
            raise ValueError("--backbone: the processor does not record its backbone; pass its Hub id")
        training_args = _read_mapping(args.training_args) if args.training_args else None
        temporary = args.output_dir is None
        folder = Path(args.output_dir) if args.output_dir else Path(tempfile.mkdtemp(prefix="resadapt-push-")) / "repo"
        revision = args.revision or "main"
        export_folder(processor, folder, eval_dir=args.eval_dir, training_args=training_args, repo_id=args.repo_id,
                      revision=revision, license=args.license, datasets=args.datasets, backbone=backbone)
        if args.dry_run:
            validate_folder(folder)
            _check_card_target(folder, args.repo_id, revision)
            files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
            print(f"dry run: {folder} is ready to upload to {args.repo_id} ({revision}); {len(files)} files:")
            for name in files:
                print("  " + name)
            return 0
        try:
            info = push_folder(folder, args.repo_id, private=args.private, revision=args.revision,
                               commit_message=args.commit_message, token=args.token)
        finally:
            if temporary:
                shutil.rmtree(folder.parent, ignore_errors=True)
        print(f"pushed to {args.repo_id} ({revision}): {getattr(info, 'commit_url', None) or info}")
        return 0
    except (ValueError, FileNotFoundError) as error:
        print(f"resadapt push: error: {error}", file=sys.stderr)
        return 2
