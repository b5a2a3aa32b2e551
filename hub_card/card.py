"""The Hub model card (README.md) of an exported ResAdapt processor repo.

:func:`render_card` fills ``template.md`` (``string.Template``; every placeholder is substituted, a missing one is
an error, never a leftover) with:

* YAML front matter (Hub model-card metadata): ``library_name``, ``pipeline_tag``, ``tags``, ``base_model`` (only
  when the backbone is a Hub id), ``license``, ``datasets`` (when given);
* what the repo is, a quick start pinned to a ``revision``, the budget knobs;
* results built **only** from a ``resadapt eval`` JSON (format ``resadapt-eval/1``); without one the card says the
  checkpoint has not been evaluated and shows no numbers;
* the training procedure (the :class:`CAPOConfig` values that matter), the paper's limitations and the citation.

Results table rounding (documented in the card too): ``Budget``, ``Retention``, ``Retention std``, ``Accuracy``
and ``Score`` are fractions printed with 3 decimals (Python ``format(x, ".3f")``); ``Visual tokens`` (mean per
sample) with 1 decimal; ``Samples`` as an integer; a budget of ``null`` prints as ``none``; a missing or non-finite
number prints as ``n/a``. One row per ``aggregate`` entry, in the JSON's order.

Imports stdlib + PyYAML/huggingface_hub only (no torch), so cards render anywhere.
"""

from __future__ import annotations

import math
import re
import string
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

EVAL_FORMAT_PREFIX = "resadapt-eval/"
TEMPLATE_PATH = Path(__file__).with_name("template.md")
BASE_TAGS = ("resadapt", "capo", "adaptive-resolution", "video-understanding", "efficient-inference")
RESULTS_HEADER = ("Allocator", "Budget", "Retention", "Retention std", "Visual tokens", "Accuracy", "Score", "Samples")
PER_TASK_HEADER = ("Allocator", "Budget", "Task type", "Accuracy", "Score", "Samples")
ROUNDING_NOTE = (
    "Budget, retention, retention std, accuracy and score are fractions rounded to 3 decimals; visual tokens are "
    "the mean per sample rounded to 1 decimal (Python formatting, ties to even); a budget of `none` means no budget "
    "was requested (the allocator's scales as they are; `vanilla` keeps every frame at scale 1); `n/a` marks a "
    "value the evaluation did not produce."
)
NOT_EVALUATED = (
    "This checkpoint has not been evaluated yet, so this card reports no results. Run `resadapt eval` on it and "
    "re-export with `resadapt push ... --eval EVAL_DIR` to add the results table and the accuracy-retention frontier."
)
_AGGREGATE_KEYS = ("allocator", "budget", "retention", "retention_std", "visual_tokens", "score", "accuracy",
                   "num_samples")
_FAMILIES = {
    "Qwen2VLProcessor": ("Qwen2-VL", "qwen2_vl"),
    "Qwen2_5_VLProcessor": ("Qwen2.5-VL", "qwen2_5_vl"),
    "Qwen3VLProcessor": ("Qwen3-VL", "qwen3_vl"),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
# "$name"/"${name}" (string.Template), "{name}"/"{{ name }}" (format/jinja: lower-case identifiers, so BibTeX's
# "{arXiv}" is not one), and the usual to-do markers in any case
_PLACEHOLDER = re.compile(r"\$\{?[A-Za-z_]\w*\}?|\{\{?\s*[a-z_][a-z0-9_]*\s*\}?\}")
_TODO_MARKER = re.compile(r"\b(?:TODO|TBD|FIXME|xx+)\b", re.I)

# (CAPOConfig field, meaning) in the order the card lists them, per group.
TRAINING_FIELDS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Rollouts", (
        ("num_generations", "M allocations sampled per prompt"),
        ("num_rollouts", "N backbone rollouts per allocation"),
        ("max_completion_length", "max new tokens per rollout"),
        ("temperature", "rollout sampling temperature"),
        ("num_iterations", "PPO updates per rollout batch"),
        ("video_num_frames", "frames sampled per video"),
        ("video_fps", "frame sampling rate (instead of a frame count)"),
    )),
    ("Optimisation", (
        ("learning_rate", "Allocator learning rate"),
        ("optim", "optimiser"),
        ("max_steps", "optimiser steps"),
        ("num_train_epochs", "epochs"),
        ("global_step", "steps completed"),
        ("per_device_train_batch_size", "allocations per device and step (prompts x M)"),
        ("gradient_accumulation_steps", "gradient accumulation"),
        ("weight_decay", "weight decay"),
        ("max_grad_norm", "gradient clipping"),
        ("lr_scheduler_type", "learning-rate schedule"),
        ("epsilon", "lower PPO clip"),
        ("epsilon_high", "upper PPO clip (DAPO-style)"),
        ("seed", "seed"),
    )),
    ("CAPO advantage (paper Eq. 14-17)", (
        ("cost_mode", "advantage mode (`capo`; `direct`, `none`, `capo_centered` are ablations)"),
        ("kappa_mix", "weight of the group mean cost in the pivot (Eq. 14)"),
        ("tau_fix", "fixed cost target of the pivot (Eq. 14)"),
        ("tau_s", "sigmoid temperature of the shaping (Eq. 15)"),
        ("lambda_pos", "bonus scale for correct rollouts (Eq. 15)"),
        ("lambda_neg", "penalty scale for wrong rollouts (Eq. 15)"),
        ("lambda_capo", "weight of the shaping term (Eq. 16)"),
        ("cost_gamma", "residual linear cost pressure (Eq. 16)"),
        ("eps_pos", "positive floor for correct rollouts (Eq. 17)"),
        ("direct_cost_weight", "penalty weight of `cost_mode=direct`"),
        ("reward_weights", "weights of the reward functions (default: accuracy 1.0, format 0.2)"),
    )),
    ("Regularisers (paper Eq. 18-20)", (
        ("lambda_sim", "weight of the temporal-similarity loss"),
        ("tau_sim", "similarity threshold"),
        ("gamma_sim", "similarity temperature"),
        ("eta_sim", "hinge offset"),
        ("lambda_con", "weight of the concentration loss"),
        ("kappa_max", "concentration cap alpha + beta"),
    )),
)
TRAINING_FIELD_NAMES = tuple(name for _, fields in TRAINING_FIELDS for name, _ in fields)


# ---------------------------------------------------------------------------------------------------------------
# inputs
def check_eval_results(results: Mapping[str, Any]) -> dict:
    """Validate a ``resadapt eval`` result (format ``resadapt-eval/1``); return it as a dict.

    Raises:
        ValueError: naming every missing or mistyped field.
    """
    if not isinstance(results, Mapping):
        raise ValueError(f"eval results: expected a JSON object, got {type(results).__name__}")
    problems = []
    fmt = results.get("format")
    if not isinstance(fmt, str) or not fmt.startswith(EVAL_FORMAT_PREFIX):
        problems.append(f"'format' must start with {EVAL_FORMAT_PREFIX!r}, got {fmt!r}")
    for key in ("backbone", "dataset"):
        if not isinstance(results.get(key), str) or not results.get(key):
            problems.append(f"{key!r} must be a non-empty string")
    aggregate = results.get("aggregate")
    if not isinstance(aggregate, list) or not aggregate:
        problems.append("'aggregate' must be a non-empty list")
        aggregate = []
    for i, row in enumerate(aggregate):
        if not isinstance(row, Mapping):
            problems.append(f"aggregate[{i}] must be an object")
            continue
        missing = [k for k in _AGGREGATE_KEYS if k not in row]
        if missing:
            problems.append(f"aggregate[{i}] is missing {missing}")
        for key in _AGGREGATE_KEYS[1:]:
            value = row.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                problems.append(f"aggregate[{i}].{key} must be a number or null, got {value!r}")
        if "per_task" in row and not isinstance(row["per_task"], Mapping):
            problems.append(f"aggregate[{i}].per_task must be an object")
    if problems:
        raise ValueError("eval results are not a valid resadapt-eval/1 file:\n- " + "\n- ".join(problems))
    return dict(results)


def training_summary(args: Any) -> dict:
    """The :data:`TRAINING_FIELD_NAMES` values of a ``CAPOConfig`` (or any ``TrainingArguments``, dataclass or
    mapping); nothing else (tokens and paths never reach the card)."""
    if args is None:
        return {}
    if isinstance(args, Mapping):
        values = dict(args)
    elif callable(getattr(args, "to_dict", None)):
        values = args.to_dict()
    else:
        values = dict(vars(args))
    return {k: values[k] for k in TRAINING_FIELD_NAMES if values.get(k) is not None}


def is_hub_id(name: str | None) -> bool:
    """True for ``owner/name`` Hub repo ids (not local paths)."""
    return bool(name) and bool(_HUB_ID.match(name)) and "--" not in name and ".." not in name


def find_placeholders(text: str, *, markers: bool = True, ignore: Iterable[str] = ()) -> list[str]:
    """Template leftovers in ``text``: ``$name``/``${name}``/``{name}``/``{{ name }}`` slots and, with ``markers``,
    TODO/TBD/FIXME/xx. Strings in ``ignore`` (user-given names such as a repo id) are skipped."""
    for value in sorted({v for v in ignore if v}, key=len, reverse=True):
        text = text.replace(value, " ")
    found = {m.group(0) for m in _PLACEHOLDER.finditer(text)}
    if markers:
        found |= {m.group(0) for m in _TODO_MARKER.finditer(text)}
    return sorted(found)


# ---------------------------------------------------------------------------------------------------------------
# formatting
def _ratio(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(float(value), ".3f")


def _tokens(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(float(value), ".1f")


def _count(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else str(int(value))


def _budget(value) -> str:
    return "none" if value is None else _ratio(value)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


# ---------------------------------------------------------------------------------------------------------------
# sections
def _front_matter(*, backbone, license, datasets, pipeline_tag, tags) -> str:
    from huggingface_hub import ModelCardData

    data = ModelCardData(
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=list(tags),
        base_model=backbone if is_hub_id(backbone) else None,
        license=license,
        datasets=list(datasets) if datasets else None,
    )
    return "---\n" + data.to_yaml() + "\n---\n"


def _what_it_is(*, backbone, family, processor_config, allocator_config, allocator_num_parameters) -> str:
    pc = processor_config or {}
    lines = [
        "**ResAdapt** ([arXiv 2603.28610](https://arxiv.org/abs/2603.28610)) chooses a resolution for every frame of "
        "a video before an unchanged vision-language backbone sees it. An Allocator looks at the whole clip at low "
        "resolution together with the question and predicts one scale per frame; frames are resized (bilinear, per "
        "temporal chunk) and the backbone answers from fewer visual tokens, or from more for the frames that matter.",
        "",
        "This repository is a `transformers` processor with remote code: "
        "`AutoProcessor.from_pretrained(..., trust_remote_code=True)` returns a `ResAdaptProcessor` that wraps the "
        "backbone's own processor and is called like it. It holds no backbone weights.",
        "",
    ]
    if backbone:
        lines.append(f"- **Backbone:** `{backbone}` ({family}), loaded from its own repository and left unchanged.")
    else:
        lines.append(
            f"- **Backbone:** a {family} model. The checkpoint name was not recorded when this repository was "
            "exported; use the model whose processor this one was built from."
        )
    lines.append(f"- **Allocator:** {_allocator_text(pc.get('allocator_config'), allocator_config, allocator_num_parameters)}")
    if "min_scale" in pc and "max_scale" in pc:
        lines.append(
            f"- **Scale range:** [{_value(float(pc['min_scale']))}, {_value(float(pc['max_scale']))}] per frame "
            "(1 = the backbone's own size; above 1 upscales)."
        )
    if pc:
        budget = pc.get("budget")
        cap = pc.get("max_visual_tokens")
        lines.append(
            "- **Default budget:** "
            + (f"retention {_value(float(budget))}" if budget is not None else "none (scales are used as predicted)")
            + (f", at most {int(cap)} visual tokens per prompt" if cap is not None else "")
            + "; override per call (see Budget knobs)."
        )
    return "\n".join(lines)


def _allocator_text(processor_allocator: dict | None, allocator_config: dict | None, num_parameters: int | None) -> str:
    kind = (processor_allocator or {}).get("type")
    if kind == "prior":
        return ("the training-free prior (more pixels for frames with fine detail, fewer for frames that repeat "
                "their neighbours); no weights.")
    if kind == "fixed":
        return f"a fixed uniform scale of {_value(float(processor_allocator['scale']))} (the FixedScale baseline)."
    if kind == "model":
        sub = processor_allocator.get("subfolder", "allocator")
        text = f"a learned Allocator in `{sub}/` (config and safetensors weights, loaded with `AutoModel`)"
        cfg = allocator_config or {}
        if cfg.get("encoder_type") == "statistics":
            text += ", reading weight-free frame statistics and a hashed-word query embedding"
        elif cfg.get("encoder_type") == "smolvlm":
            encoder = cfg.get("encoder_config")
            if isinstance(encoder, Mapping):  # built from the stored config; its weights are in the checkpoint
                name = encoder.get("_name_or_path")
                text += (", reading frames and question with a frozen SmolVLM encoder"
                         + (f" (`{name}`)" if is_hub_id(name) else "") + " whose weights are stored with it")
            else:  # fetched by name on load
                name = cfg.get("encoder_name_or_path")
                text += ", reading frames and question with a frozen SmolVLM encoder" + (
                    f" (`{name}`, downloaded on first use)" if name else "")
        if cfg.get("hidden_size") and cfg.get("num_layers"):
            text += f"; predictor width {int(cfg['hidden_size'])}, {int(cfg['num_layers'])} blocks"
        if num_parameters:
            text += f"; {int(num_parameters):,} parameters stored"
        return text + ". It predicts a Beta distribution per frame; inference uses its mean."
    return "none: frames keep the processor's default scale unless you pass `scales` or a `budget`."


def _quick_start(*, repo_id, backbone, family, revision) -> str:
    if not backbone:
        return (
            "Load the processor with `AutoProcessor.from_pretrained(" + f'"{repo_id}"'
            + f', trust_remote_code=True, revision="{revision}")`, load the {family} checkpoint it was built from with '
            "`AutoModelForImageTextToText.from_pretrained`, call `processor.prepare_backbone(model)` once, then "
            "`processor(text=..., videos=..., budget=0.5, return_tensors=\"pt\")` and `model.generate(**inputs)`."
        )
    pin = (
        f'`revision="{revision}"` pins the remote code and configuration you load.'
        if revision != "main"
        else '`revision="main"` follows the latest upload; replace it with a commit hash of this repository to pin '
             "the remote code you reviewed."
    )
    code = f'''```python
from transformers import AutoModelForImageTextToText, AutoProcessor

processor = AutoProcessor.from_pretrained("{repo_id}", trust_remote_code=True, revision="{revision}")
model = AutoModelForImageTextToText.from_pretrained("{backbone}", dtype="auto", device_map="auto")
model = processor.prepare_backbone(model)  # reads per-chunk sizes; no weights change

video = "clip.mp4"  # any local video file
messages = [{{"role": "user", "content": [{{"type": "video"}}, {{"type": "text", "text": "What happens in this video?"}}]}}]
text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
inputs = processor(text=[text], videos=[video], do_sample_frames=True, num_frames=32, budget=0.5, return_allocation=True,
                   return_tensors="pt")
allocation = inputs.pop("allocation")[0]
print("retention:", round(allocation.retention, 3), "visual tokens:", allocation.visual_tokens)
inputs = inputs.to(model.device)
out = model.generate(**inputs, max_new_tokens=64)
print(processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0])
```'''
    return code + "\n\n" + pin + " Pass the same `revision` to every `from_pretrained` call of this repository."


def _budget_knobs(processor_config: dict | None) -> str:
    pc = processor_config or {}
    rows = [
        ("`budget`", "call, `processor_config.json`",
         "target retention ratio: visual tokens kept / tokens at scale 1, in (0, max_scale squared]; the "
         "allocator's per-frame scales are projected onto it"),
        ("`max_visual_tokens`", "call, `processor_config.json`", "hard cap on visual tokens per prompt"),
        ("`scales`", "call", "explicit scales (one number, one per frame, or one list per video/image); bypasses "
         "the allocator"),
        ("`min_scale`, `max_scale`", "`processor_config.json`",
         "allowed scale range per frame" + (
             f" (here [{_value(float(pc['min_scale']))}, {_value(float(pc['max_scale']))}])"
             if "min_scale" in pc and "max_scale" in pc else "")),
        ("`return_allocation`", "call", "adds `allocation`: one `Allocation` per prompt with per-frame `scales`, "
         "`chunk_sizes`, `visual_tokens` and `retention`; pop it before `generate`"),
    ]
    text = _table(("Argument", "Where", "Meaning"), rows)
    return text + (
        "\n\nCall arguments override the values stored in `processor_config.json`. `processor.allocate(text=..., "
        "videos=..., budget=...)` plans an allocation without producing pixels, and `processor(..., "
        "allocation=plan)` applies a plan as is. With neither `budget` nor `max_visual_tokens`, the allocator's "
        "scales are used unchanged."
    )


def _results(eval_results: dict | None, *, backbone, frontier_png, heatmap_png) -> str:
    if eval_results is None:
        return NOT_EVALUATED
    ev = eval_results
    task = ev.get("task")
    dataset = ev["dataset"]
    if re.match(r"^(/|~|[A-Za-z]:[\\/])", dataset):  # an absolute local path: publish its name only
        dataset = re.split(r"[\\/]", dataset.rstrip("/\\"))[-1]
    intro = [
        f"Measured by `resadapt eval` (`{ev['format']}`) on `{dataset}`"
        + (f", task `{task}`" if task else "")
        + (f", {int(ev['num_samples'])} samples" if isinstance(ev.get("num_samples"), (int, float)) else "")
        + (f", seed {int(ev['seed'])}" if isinstance(ev.get("seed"), (int, float)) else "")
        + f", backbone `{ev['backbone']}`. These are the only numbers on this card; they come from that file.",
    ]
    if backbone and ev["backbone"] != backbone:
        intro.append(
            f"\nNote: the evaluation used backbone `{ev['backbone']}`, not `{backbone}` (the backbone named above)."
        )
    if task == "synthetic":
        intro.append(
            "\nThe `synthetic` task is this package's needle task (a resolution-sensitive reader on generated "
            "clips, runnable on CPU). It checks that allocation works; it is not a video-understanding benchmark."
        )
    rows = [
        (row["allocator"], _budget(row.get("budget")), _ratio(row.get("retention")), _ratio(row.get("retention_std")),
         _tokens(row.get("visual_tokens")), _ratio(row.get("accuracy")), _ratio(row.get("score")),
         _count(row.get("num_samples")))
        for row in ev["aggregate"]
    ]
    parts = [
        "\n".join(intro),
        "Retention is the achieved ratio of visual tokens to the backbone's tokens at scale 1 (mean over samples); "
        "budget is the requested retention. " + ROUNDING_NOTE,
        _table(RESULTS_HEADER, rows),
    ]
    task_rows = [
        (row["allocator"], _budget(row.get("budget")), name, _ratio(v.get("accuracy")), _ratio(v.get("score")),
         _count(v.get("num_samples")))
        for row in ev["aggregate"] for name, v in sorted((row.get("per_task") or {}).items())
        if isinstance(v, Mapping)
    ]
    if task_rows:
        parts.append("Per task type:\n\n" + _table(PER_TASK_HEADER, task_rows))
    if frontier_png:
        parts.append(f"![Task score against achieved retention, per allocator]({frontier_png})")
    if heatmap_png:
        parts.append(f"![Per-frame scales chosen by each allocator]({heatmap_png})")
    return "\n\n".join(parts)


def _training(training_args: dict | None, processor_config: dict | None) -> str:
    kind = ((processor_config or {}).get("allocator_config") or {}).get("type")
    if not training_args:
        if kind in ("prior", "fixed", None) and processor_config:
            return "Nothing was trained: this processor's allocator has no weights."
        return "No training configuration was recorded with this export."
    values = dict(training_args)
    if values.get("max_steps") is not None and values["max_steps"] <= 0:
        values.pop("max_steps")
    elif values.get("max_steps") is not None:
        values.pop("num_train_epochs", None)  # max_steps overrides epochs
    if values.get("cost_mode") != "direct":
        values.pop("direct_cost_weight", None)
    if values.get("video_fps") is not None:
        values.pop("video_num_frames", None)
    parts = [
        "Trained with `CAPOTrainer` (`resadapt_hf`, built on TRL): Cost-Aware Policy Optimization of the Allocator "
        "(paper Algorithm 1) against the frozen backbone; only the Allocator receives gradients. Values from the "
        "training configuration (`CAPOConfig`, a `trl.GRPOConfig`):"
    ]
    for group, fields in TRAINING_FIELDS:
        rows = [(f"`{name}`", _value(values[name]), meaning) for name, meaning in fields if name in values]
        if rows:
            parts.append(f"**{group}**\n\n" + _table(("Field", "Value", "Meaning"), rows))
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------------------------------
def choose_pipeline_tag(eval_results: dict | None, training_args: dict | None) -> str:
    """``video-text-to-text`` when evaluated or trained on video, else ``image-text-to-text``.

    Every ``resadapt eval`` task and every training record of this package is a video (``resadapt_hf.data``); an
    eval file may say otherwise with ``"modality": "image"``.
    """
    if eval_results is not None:
        return "image-text-to-text" if eval_results.get("modality") == "image" else "video-text-to-text"
    if training_args:
        return "video-text-to-text"
    return "image-text-to-text"


def render_card(
    *,
    repo_id: str,
    backbone: str | None,
    revision: str = "main",
    eval_results: Mapping[str, Any] | None = None,
    training_args: Mapping[str, Any] | Any | None = None,
    license: str = "apache-2.0",
    datasets: Iterable[str] | None = None,
    frontier_png: str | None = None,
    heatmap_png: str | None = None,
    processor_config: Mapping[str, Any] | None = None,
    allocator_config: Mapping[str, Any] | None = None,
    allocator_num_parameters: int | None = None,
    pipeline_tag: str | None = None,
    extra_tags: Iterable[str] = (),
) -> str:
    """The README.md of a ResAdapt processor repo.

    Args:
        repo_id: the Hub repo the card loads from (``owner/name``; a local path works for local folders).
        backbone: Hub id (or path) of the backbone model; None when unknown (no ``base_model``, no runnable quick
            start).
        revision: branch, tag or commit the quick start pins.
        eval_results: a ``resadapt eval`` JSON object (see :func:`check_eval_results`); None: "not evaluated".
        training_args: ``CAPOConfig`` (or its dict); only :data:`TRAINING_FIELD_NAMES` are shown.
        license, datasets: card metadata (``datasets``: Hub dataset ids).
        frontier_png, heatmap_png: repo-relative paths of the evaluation's plots (embedded only with
            ``eval_results``).
        processor_config: the saved ``processor_config.json`` (scale range, budget defaults, allocator kind).
        allocator_config: the saved ``allocator/config.json`` (learned allocators).
        allocator_num_parameters: number of stored allocator parameters.
        pipeline_tag: override :func:`choose_pipeline_tag`.
        extra_tags: added after the base tags.

    Raises:
        ValueError: malformed ``eval_results``, or (a bug) a placeholder left in the output.
    """
    if not repo_id:
        raise ValueError("repo_id: the repo the card's quick start loads from is required")
    if eval_results is not None:
        eval_results = check_eval_results(eval_results)
        if backbone and eval_results["backbone"] != backbone:
            warnings.warn(
                f"eval results were measured with backbone {eval_results['backbone']!r}, the card names {backbone!r}",
                stacklevel=2,
            )
    else:
        frontier_png = heatmap_png = None
    training = training_summary(training_args)
    pc = dict(processor_config or {})
    family, family_tag = _FAMILIES.get(pc.get("backbone_processor_class"), ("Qwen-VL", None))
    tag = pipeline_tag or choose_pipeline_tag(eval_results, training)
    tags = list(dict.fromkeys([*BASE_TAGS, *([family_tag] if family_tag else []), *(["trl"] if training else []),
                               *extra_tags]))
    name = repo_id.rstrip("/").split("/")[-1]
    fields = dict(
        front_matter=_front_matter(backbone=backbone, license=license, datasets=datasets, pipeline_tag=tag, tags=tags),
        title=f"{name}: ResAdapt adaptive per-frame resolution for {family}",
        what_it_is=_what_it_is(backbone=backbone, family=family, processor_config=pc,
                               allocator_config=dict(allocator_config or {}),
                               allocator_num_parameters=allocator_num_parameters),
        quick_start=_quick_start(repo_id=repo_id, backbone=backbone, family=family, revision=revision),
        budget_knobs=_budget_knobs(pc),
        results=_results(eval_results, backbone=backbone, frontier_png=frontier_png, heatmap_png=heatmap_png),
        training=_training(training, pc),
    )
    card = string.Template(TEMPLATE_PATH.read_text(encoding="utf-8")).substitute(fields)
    user_values = [repo_id, name, backbone, revision, license, *(datasets or ())]
    if eval_results is not None:
        user_values += [str(eval_results.get(k, "")) for k in ("dataset", "backbone", "task")]
        user_values += [str(row.get("allocator", "")) for row in eval_results["aggregate"]]
        user_values += [str(t) for row in eval_results["aggregate"] for t in (row.get("per_task") or {})]
    leftovers = find_placeholders(card, ignore=[str(v) for v in user_values if v])
    if leftovers:
        raise ValueError(f"model card: placeholders left in the output: {leftovers}")
    return card
