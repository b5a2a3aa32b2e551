"""The Hub model card: front matter, results parsed back from the table, no placeholders, no invented numbers."""

import math
import re

import pytest
import yaml

from resadapt_hf.hub_card import (
    NOT_EVALUATED,
    RESULTS_HEADER,
    check_eval_results,
    choose_pipeline_tag,
    find_placeholders,
    render_card,
)

BACKBONE = "Qwen/Qwen2.5-VL-7B-Instruct"
PROCESSOR_CONFIG = {
    "backbone_processor_class": "Qwen2_5_VLProcessor", "min_scale": 0.2, "max_scale": 1.8, "budget": 0.25,
    "max_visual_tokens": None, "allocator_config": {"type": "model", "subfolder": "allocator"},
}
ALLOCATOR_CONFIG = {"encoder_type": "smolvlm", "encoder_name_or_path": "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
                    "hidden_size": 1024, "num_layers": 2}
TRAINING = {
    "cost_mode": "capo", "num_generations": 16, "num_rollouts": 1, "learning_rate": 2e-5, "max_steps": 500,
    "epsilon": 0.2, "epsilon_high": 0.28, "kappa_mix": 0.5, "tau_fix": 0.4, "lambda_capo": 0.25,
    "lambda_sim": 1e-3, "lambda_con": 5e-4, "hub_token": "hf_secret_value", "output_dir": "/private/run",
}


def eval_results():
    def per_task(acc, n):
        return {"multiple_choice": {"score": acc, "accuracy": acc, "num_samples": n},
                "open_ended": {"score": acc / 2, "accuracy": acc / 3, "num_samples": n}}

    return {
        "format": "resadapt-eval/1", "backbone": BACKBONE, "dataset": "data/eval.jsonl", "task": "dataset",
        "seed": 3, "num_samples": 40, "budgets": [0.25, 0.1], "allocators": ["model", "fixed", "vanilla"],
        "aggregate": [
            {"allocator": "model", "budget": 0.25, "retention": 0.23812, "retention_std": 0.01049,
             "visual_tokens": 1234.56, "score": 0.61234, "accuracy": 0.6, "num_samples": 40,
             "per_task": per_task(0.6, 20)},
            {"allocator": "fixed", "budget": 0.1, "retention": 0.1234567, "retention_std": 0.0,
             "visual_tokens": 640.04, "score": 0.5555, "accuracy": 0.525, "num_samples": 40,
             "per_task": per_task(0.525, 20)},
            {"allocator": "vanilla", "budget": None, "retention": 1.0, "retention_std": 0.0,
             "visual_tokens": 5120.0, "score": 0.70001, "accuracy": 0.7, "num_samples": 40,
             "per_task": per_task(0.7, 20)},
        ],
        "frontier_png": "frontier.png", "heatmap_png": "scale_heatmap.png",
    }


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card[4:card.index("\n---", 4)])


def section(card: str, title: str) -> str:
    start = card.index(f"## {title}\n")
    end = card.find("\n## ", start + 1)
    return card[start:end if end >= 0 else None]


def parse_results_table(card: str) -> list[dict]:
    """An independent reader of the results table: header row, separator, then one row per line."""
    lines = section(card, "Results").splitlines()
    start = lines.index("| " + " | ".join(RESULTS_HEADER) + " |")
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append(dict(zip(RESULTS_HEADER, cells)))
    return rows


def render(**overrides):
    values = dict(repo_id="me/resadapt-smol", backbone=BACKBONE, revision="v1.0", processor_config=PROCESSOR_CONFIG,
                  allocator_config=ALLOCATOR_CONFIG, allocator_num_parameters=43_676_164)
    values.update(overrides)
    return render_card(**values)


def test_front_matter_has_the_hub_keys():
    card = render(eval_results=eval_results(), training_args=TRAINING, datasets=["me/videos"], license="mit")
    meta = front_matter(card)
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "video-text-to-text"
    assert meta["base_model"] == BACKBONE
    assert meta["license"] == "mit"
    assert meta["datasets"] == ["me/videos"]
    assert {"resadapt", "capo", "adaptive-resolution", "video-understanding"} <= set(meta["tags"])
    no_datasets = front_matter(render())
    assert "datasets" not in no_datasets and no_datasets["license"] == "apache-2.0"


def test_results_table_parses_back_to_the_json():
    results = eval_results()
    card = render(eval_results=results, frontier_png="frontier.png", heatmap_png="scale_heatmap.png")
    rows = parse_results_table(card)
    assert len(rows) == len(results["aggregate"])
    for row, entry in zip(rows, results["aggregate"]):
        assert row["Allocator"] == entry["allocator"]
        assert (row["Budget"] == "none") if entry["budget"] is None else float(row["Budget"]) == round(entry["budget"], 3)
        for column, key in (("Retention", "retention"), ("Retention std", "retention_std"),
                            ("Accuracy", "accuracy"), ("Score", "score")):
            assert re.fullmatch(r"\d+\.\d{3}", row[column]), row[column]  # documented: 3 decimals
            assert math.isclose(float(row[column]), entry[key], abs_tol=0.0005 + 1e-12), (column, entry)
        assert re.fullmatch(r"\d+\.\d", row["Visual tokens"])  # documented: 1 decimal
        assert math.isclose(float(row["Visual tokens"]), entry["visual_tokens"], abs_tol=0.05 + 1e-9)
        assert int(row["Samples"]) == entry["num_samples"]
    results_section = section(card, "Results")
    assert "rounded to 3 decimals" in results_section and "1 decimal" in results_section
    assert "![" in results_section and "(frontier.png)" in results_section and "(scale_heatmap.png)" in results_section
    assert "| multiple_choice |" in results_section  # the per-task breakdown


def test_no_placeholders_in_any_variant():
    variants = [
        render(),
        render(eval_results=eval_results(), training_args=TRAINING),
        render(backbone=None, processor_config={"allocator_config": {"type": "prior"}}),
        render(processor_config=None, allocator_config=None, revision="main"),
        render_card(repo_id="me/x", backbone="/local/qwen"),
    ]
    for card in variants:
        assert find_placeholders(card) == []
        assert "$" not in card
        for marker in ("TODO", "TBD", "xx", "XX", "FIXME"):
            assert marker not in card
        assert not re.search(r"\{[a-z_]+\}", card)
    # the detector itself
    assert find_placeholders("a $repo_id b ${x} {backbone} {{ name }} TODO tbd xx") == sorted(
        ["$repo_id", "${x}", "{backbone}", "{{ name }}", "TODO", "tbd", "xx"])
    assert find_placeholders("@article{key, title = {ResAdapt}, archivePrefix = {arXiv}, year = {2026}}") == []


def test_without_eval_there_are_no_numbers():
    card = render(training_args=TRAINING)
    results_section = section(card, "Results")
    assert NOT_EVALUATED in results_section
    assert "not been evaluated" in results_section
    assert "|" not in results_section and "![" not in card
    assert not re.search(r"\d", results_section)
    # plots are never shown without the evaluation they come from
    assert "frontier.png" not in render(frontier_png="frontier.png")


def test_pipeline_tag_choice():
    assert choose_pipeline_tag(eval_results(), None) == "video-text-to-text"
    assert choose_pipeline_tag(None, {"num_generations": 8}) == "video-text-to-text"
    assert choose_pipeline_tag(None, None) == "image-text-to-text"
    assert choose_pipeline_tag({**eval_results(), "modality": "image"}, None) == "image-text-to-text"
    assert front_matter(render())["pipeline_tag"] == "image-text-to-text"
    assert front_matter(render(training_args=TRAINING))["pipeline_tag"] == "video-text-to-text"
    assert front_matter(render(pipeline_tag="video-text-to-text"))["pipeline_tag"] == "video-text-to-text"


def test_quick_start_and_knobs():
    card = render()
    quick = section(card, "Quick start")
    assert 'AutoProcessor.from_pretrained("me/resadapt-smol", trust_remote_code=True, revision="v1.0")' in quick
    assert f'AutoModelForImageTextToText.from_pretrained("{BACKBONE}"' in quick
    assert "processor.prepare_backbone(model)" in quick and "budget=0.5" in quick and "model.generate(" in quick
    knobs = section(card, "Budget knobs")
    for knob in ("`budget`", "`max_visual_tokens`", "`scales`", "`min_scale`, `max_scale`", "`return_allocation`"):
        assert knob in knobs
    assert "[0.2, 1.8]" in card and "retention 0.25" in card and "43,676,164 parameters" in card
    # an unknown backbone: no base_model, and no code that would load a made-up checkpoint
    unknown = render(backbone=None)
    assert "base_model" not in front_matter(unknown) and "```python" not in unknown
    # a local path is not a Hub id
    assert "base_model" not in front_matter(render(backbone="/models/qwen"))


def test_training_section_shows_only_capo_fields():
    card = render(training_args=TRAINING)
    training = section(card, "Training procedure")
    for field, value in (("cost_mode", "capo"), ("num_generations", "16"), ("num_rollouts", "1"),
                         ("learning_rate", "2e-05"), ("max_steps", "500"), ("epsilon_high", "0.28"),
                         ("kappa_mix", "0.5"), ("lambda_sim", "0.001")):
        assert f"| `{field}` | {value} |" in training
    assert "hf_secret_value" not in card and "/private/run" not in card and "hub_token" not in card
    assert "Nothing was trained" in section(render(processor_config={**PROCESSOR_CONFIG, "allocator_config": {"type": "prior"}}),
                                            "Training procedure")


def test_limitations_and_citation():
    card = render()
    limitations = section(card, "Limitations")
    for phrase in ("overhead", "small text", "resiz", "open-loop", "not lossless"):
        assert phrase.lower() in limitations.lower(), phrase
    citation = section(card, "Citation")
    assert "@article{liao2026resadapt," in citation and "2603.28610" in citation
    assert "ResAdapt: Adaptive Resolution for Efficient Multimodal Reasoning" in citation
    assert "Liao, Huanxuan" in citation and "Liu, Kang" in citation


def test_invalid_eval_results_are_refused():
    bad = eval_results()
    bad["format"] = "something-else"
    del bad["aggregate"][0]["retention"]
    bad["aggregate"][1]["accuracy"] = "high"
    with pytest.raises(ValueError) as info:
        check_eval_results(bad)
    message = str(info.value)
    assert "format" in message and "aggregate[0] is missing ['retention']" in message and "aggregate[1].accuracy" in message
    with pytest.raises(ValueError):
        render(eval_results={"format": "resadapt-eval/1"})


def test_eval_backbone_mismatch_is_stated():
    other = {**eval_results(), "backbone": "Qwen/Qwen3-VL-8B-Instruct"}
    with pytest.warns(UserWarning, match="backbone"):
        card = render(eval_results=other)
    assert "the evaluation used backbone `Qwen/Qwen3-VL-8B-Instruct`" in card
    synthetic = render(eval_results={**eval_results(), "task": "synthetic"})
    assert "not a video-understanding benchmark" in synthetic


def test_local_eval_paths_are_not_published():
    card = render(eval_results={**eval_results(), "dataset": "/home/alice/private/eval.jsonl"})
    assert "/home/alice" not in card and "`eval.jsonl`" in card


def test_user_names_are_not_mistaken_for_placeholders():
    card = render(repo_id="me/model-xx", eval_results={**eval_results(), "dataset": "todo-videos"})
    assert "me/model-xx" in card and "todo-videos" in card
