"""resadapt eval: budgets matched by construction, achieved retention per record, resume, metrics, plots, CLI."""

import json
import math
import shutil
import statistics

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_backbone
from resadapt_hf.allocators import build_allocator
from resadapt_hf.evaluate import (
    ALLOCATOR_NAMES,
    EvalConfig,
    HFBackend,
    NeedleBackend,
    aggregate_records,
    evaluate,
    grounding_iou,
    grounding_metrics,
    main,
    parse_args,
    random_scales,
    read_records,
)
from resadapt_hf.plots import heatmap, line_chart
from resadapt_hf.synthetic import NeedleReader

# Reachable within the 0.02 tolerance on the default needle geometry (64 x 64 frames, 8 px grid, 4 chunks of 64
# tokens): the solver can land on 128 +- 5 and 64 +- 5 tokens for every allocation shape used here.
BUDGETS = [0.5, 0.25]
ALLOCATORS = ["learned", "prior", "fixed", "random", "vanilla"]
NUM_SAMPLES = 2
RESULT_KEYS = {"format", "backbone", "dataset", "task", "seed", "num_samples", "budgets", "allocators", "aggregate",
               "frontier_png", "heatmap_png"}
AGGREGATE_KEYS = {"allocator", "budget", "retention", "retention_std", "visual_tokens", "score", "accuracy",
                  "num_samples", "per_task"}


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def needle():
    config = EvalConfig(task="synthetic").needle_config()
    return config, NeedleReader.calibrate(config, num_videos=1)  # 7 distractor frames: enough here


@pytest.fixture(scope="module")
def learned():
    torch.manual_seed(0)
    return build_allocator("tiny-statistics")


def _synthetic_config(out, **overrides):
    values = dict(out=str(out), task="synthetic", allocators=ALLOCATORS, budgets=BUDGETS, num_samples=NUM_SAMPLES,
                  progress=False)
    values.update(overrides)
    return EvalConfig(**values)


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory, needle, learned):
    out = tmp_path_factory.mktemp("synthetic_eval")
    backend = NeedleBackend(*needle)
    results = evaluate(_synthetic_config(out), backbone=backend, learned=learned)
    return out, results, backend


# synthetic task -------------------------------------------------------------------------------------------------
def test_synthetic_run_writes_records_results_and_plots(synthetic_run):
    out, results, backend = synthetic_run
    runs_per_sample = (len(ALLOCATORS) - 1) * len(BUDGETS) + 1  # vanilla once
    assert backend.calls == NUM_SAMPLES * runs_per_sample
    records = _lines(out / "records.jsonl")
    assert len(records) == NUM_SAMPLES * runs_per_sample
    for key in ("sample_id", "allocator", "budget", "problem_type", "scales", "chunk_sizes", "visual_tokens",
                "baseline_visual_tokens", "retention", "prediction", "extracted_answer", "score", "correct",
                "allocator_seconds", "backbone_seconds"):
        assert all(key in r for r in records), key
    assert all(len(r["scales"]) == 8 and len(r["chunk_sizes"]) == 4 for r in records)
    assert all(r["extracted_answer"] in "ABCD" and r["score"] in (0.0, 1.0) for r in records)

    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == results
    assert set(results) == RESULT_KEYS
    assert results["format"] == "resadapt-eval/1" and results["task"] == "synthetic"
    assert results["backbone"] == "needle-reader" and results["dataset"] == "synthetic-needle"
    assert results["budgets"] == BUDGETS and results["allocators"] == ALLOCATORS
    assert results["num_samples"] == NUM_SAMPLES and results["seed"] == 0
    assert [(e["allocator"], e["budget"]) for e in results["aggregate"]] == [
        (a, b) for a in ALLOCATORS[:-1] for b in BUDGETS] + [("vanilla", None)]
    assert all(set(e) == AGGREGATE_KEYS for e in results["aggregate"])
    for name in (results["frontier_png"], results["heatmap_png"]):
        with Image.open(out / name) as image:
            image.load()
            assert image.width >= 300 and image.height >= 200
            assert len(image.convert("RGB").getcolors(1 << 16) or []) > 20  # axes, lines, text: not blank


def test_every_record_meets_its_budget_and_reports_what_it_achieved(synthetic_run):
    out, _, backend = synthetic_run
    factor = backend.config.factor
    checked = 0
    for r in _lines(out / "records.jsonl"):
        # achieved retention is the allocation's: tokens of the planned chunk sizes over the scale-1 tokens
        tokens = sum((h // factor) * (w // factor) for h, w in r["chunk_sizes"])
        assert tokens == r["visual_tokens"] and r["baseline_visual_tokens"] == 4 * 64
        assert r["retention"] == r["visual_tokens"] / r["baseline_visual_tokens"]
        if r["allocator"] == "vanilla":
            assert r["budget"] is None and r["retention"] == 1.0 and r["scales"] == [1.0] * 8
            continue
        assert r["budget"] in BUDGETS
        assert abs(r["retention"] - r["budget"]) <= 0.02, r
        assert r["budget_reached"] is True
        checked += 1
    assert checked == NUM_SAMPLES * (len(ALLOCATORS) - 1) * len(BUDGETS)


def test_aggregate_is_the_mean_over_records(synthetic_run):
    out, results, _ = synthetic_run
    records = _lines(out / "records.jsonl")
    for entry in results["aggregate"]:
        rows = [r for r in records if r["allocator"] == entry["allocator"] and r["budget"] == entry["budget"]]
        assert entry["num_samples"] == len(rows) == NUM_SAMPLES
        assert entry["retention"] == pytest.approx(statistics.mean(r["retention"] for r in rows))
        assert entry["retention_std"] == pytest.approx(statistics.pstdev([r["retention"] for r in rows]))
        assert entry["visual_tokens"] == pytest.approx(statistics.mean(r["visual_tokens"] for r in rows))
        assert entry["score"] == pytest.approx(statistics.mean(r["score"] for r in rows))
        assert entry["accuracy"] == pytest.approx(statistics.mean(float(r["correct"]) for r in rows))
        task = entry["per_task"]["multiple_choice"]
        assert task == {"score": pytest.approx(entry["score"]), "accuracy": pytest.approx(entry["accuracy"]),
                        "num_samples": NUM_SAMPLES}


def test_fixed_and_random_baselines_are_what_they_claim(synthetic_run):
    out, _, _ = synthetic_run
    records = _lines(out / "records.jsonl")
    for r in records:
        if r["allocator"] == "fixed":  # uniform before projection: one chunk size, up to one grid step
            assert len({tuple(s) for s in r["chunk_sizes"]}) <= 2
    first = [r for r in records if r["allocator"] == "random" and r["sample_id"] == "needle-100000"]
    raw = random_scales(0, "needle-100000", 8, 0.2, 1.8)
    assert raw == random_scales(0, "needle-100000", 8, 0.2, 1.8) != random_scales(1, "needle-100000", 8, 0.2, 1.8)
    assert all(0.2 <= s <= 1.8 for s in raw) and len(first) == len(BUDGETS)


def test_rerun_resumes_without_recomputing(synthetic_run, needle, learned):
    out, results, _ = synthetic_run
    before = (out / "records.jsonl").read_text()
    backend = NeedleBackend(*needle)
    again = evaluate(_synthetic_config(out), backbone=backend, learned=learned)
    assert backend.calls == 0
    assert again == results
    assert (out / "records.jsonl").read_text() == before


def test_interrupted_run_recomputes_only_the_missing_records(synthetic_run, needle, learned, tmp_path):
    out, results, _ = synthetic_run
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)
    lines = (partial / "records.jsonl").read_text().splitlines(keepends=True)
    kept = len(lines) - 3
    # the last three records are lost, and the process died while writing the next line
    (partial / "records.jsonl").write_text("".join(lines[:kept]) + lines[kept][:40])
    backend = NeedleBackend(*needle)
    again = evaluate(_synthetic_config(partial), backbone=backend, learned=learned)
    assert backend.calls == 3
    assert again == results  # deterministic: the recomputed records aggregate to the same numbers
    assert len(read_records(partial / "records.jsonl")) == len(lines)


def test_resume_refuses_a_folder_with_other_settings(synthetic_run, needle, learned):
    out, _, _ = synthetic_run
    with pytest.raises(ValueError, match="out: .*seed"):
        evaluate(_synthetic_config(out, seed=1), backbone=NeedleBackend(*needle), learned=learned)


# real (tiny) HF backbone ----------------------------------------------------------------------------------------
def test_tiny_qwen_backbone_end_to_end_from_a_jsonl_dataset(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        {"id": "mc", "frames": rng.integers(0, 256, (4, 112, 112, 3)).tolist(), "question": "Which animal?",
         "options": ["A. cat", "B. dog"], "answer": "A", "problem_type": "multiple_choice"},
        {"id": "tg", "frames": rng.integers(0, 256, (4, 112, 112, 3)).tolist(), "question": "When does it jump?",
         "answer": "[1.0, 2.0]", "segments": [[1.0, 2.0]], "problem_type": "temporal_grounding"},
    ]
    dataset = tmp_path / "data.jsonl"
    dataset.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    model, processor = tiny_backbone("qwen2_5_vl")
    backend = HFBackend(model, processor, name="tiny-qwen2_5_vl", max_new_tokens=3, num_frames=None)
    config = EvalConfig(out=str(tmp_path / "out"), dataset=str(dataset), allocators=["prior", "fixed", "random",
                        "vanilla"], budgets=[0.25], num_frames=None, max_new_tokens=3, progress=False)
    results = evaluate(config, backbone=backend)
    records = _lines(tmp_path / "out" / "records.jsonl")
    assert backend.calls == len(records) == 2 * 4
    for r in records:
        # 4 frames of 112 x 112 at the tiny processor's base: 2 chunks of 4 x 4 merged tokens
        assert r["baseline_visual_tokens"] == 32 and len(r["scales"]) == 4 and len(r["chunk_sizes"]) == 2
        assert r["retention"] == r["visual_tokens"] / 32
        if r["allocator"] == "vanilla":
            assert r["retention"] == 1.0 and r["budget"] is None
        else:
            assert r["budget"] == 0.25 and abs(r["retention"] - 0.25) <= 0.02 and r["budget_reached"] is True
        assert isinstance(r["prediction"], str)
        assert ("iou" in r) == (r["problem_type"] == "temporal_grounding")
    assert results["dataset"] == str(dataset) and results["backbone"] == "tiny-qwen2_5_vl"
    vanilla = results["aggregate"][-1]
    assert vanilla["allocator"] == "vanilla" and vanilla["visual_tokens"] == 32.0
    grounding = results["aggregate"][0]["per_task"]["temporal_grounding"]
    assert set(grounding) == {"score", "accuracy", "num_samples", "miou", "r@0.3", "r@0.5", "r@0.7"}


# metrics ---------------------------------------------------------------------------------------------------------
def test_grounding_metrics_match_hand_computed_values():
    metrics = grounding_metrics([0.0, 0.25, 0.5, 0.8])
    assert metrics == pytest.approx({"miou": 0.3875, "r@0.3": 0.5, "r@0.5": 0.5, "r@0.7": 0.25})
    with pytest.raises(ValueError, match="ious"):
        grounding_metrics([])
    with pytest.raises(ValueError, match="ious"):
        grounding_metrics([1.5])


def test_grounding_iou_reads_the_answer_and_separates_grounded_qa():
    tg = {"problem_type": "temporal_grounding", "answer": "[2, 6]", "segments": [[2, 6]]}
    # [3, 7] vs [2, 6]: overlap 3, union 5
    assert grounding_iou("<think>x</think><answer>\\boxed{[3, 7]}</answer>", tg) == pytest.approx(0.6)
    gqa = {"problem_type": "grounded_qa", "answer": "B", "options": ["A. x", "B. y"], "segments": [[2, 6]]}
    # [0, 4] vs [2, 6]: overlap 2, union 6; the QA part is not in the IoU
    assert grounding_iou("<think>x</think><answer>\\boxed{B <> [0, 4]}</answer>", gqa) == pytest.approx(1 / 3)
    assert grounding_iou("anything", {"problem_type": "multiple_choice", "answer": "A"}) is None


def test_aggregate_records_per_task_grounding_entries():
    def rec(problem_type, score, correct, iou=None, retention=0.5):
        r = {"allocator": "prior", "budget": 0.5, "problem_type": problem_type, "score": score, "correct": correct,
             "retention": retention, "visual_tokens": 10}
        return r if iou is None else {**r, "iou": iou}

    records = [rec("temporal_grounding", 0.6, True, 0.6), rec("temporal_grounding", 0.2, False, 0.2),
               rec("temporal_grounding", 1.0, True, 1.0), rec("multiple_choice", 1.0, True, retention=0.3)]
    (entry,) = aggregate_records(records, ["prior", "vanilla"], [0.5, 0.25])
    assert entry["num_samples"] == 4 and entry["accuracy"] == 0.75
    assert entry["retention"] == pytest.approx(0.45) and entry["retention_std"] == pytest.approx(math.sqrt(0.0075))
    grounding = entry["per_task"]["temporal_grounding"]
    assert grounding == pytest.approx({"score": 0.6, "accuracy": 2 / 3, "num_samples": 3, "miou": 0.6,
                                       "r@0.3": 2 / 3, "r@0.5": 2 / 3, "r@0.7": 1 / 3})
    assert set(entry["per_task"]["multiple_choice"]) == {"score", "accuracy", "num_samples"}


# validation ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fields, match", [
    ({"budgets": [0.0]}, r"budgets: .*\(0, 3\.24\]"),
    ({"budgets": [3.5]}, r"budgets: .*\(0, 3\.24\]"),
    ({"budgets": [float("nan")]}, "budgets"),
    ({"budgets": []}, "budgets"),
    ({"budgets": [0.5, 0.5]}, "budgets: 0.5 is listed twice"),
    ({"budgets": "0.5"}, "budgets"),
    ({"allocators": ["prior", "oracle"]}, "allocators: unknown allocator 'oracle'"),
    ({"task": "video"}, "task must be one of"),
    ({"num_samples": 0}, "num_samples"),
    ({"num_frames": 8, "fps": 2.0}, "num_frames and fps"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"min_scale": 0.0}, "min_scale/max_scale"),
    ({"budget_tolerance": 1.5}, "budget_tolerance"),
    ({"resample": "nearest"}, "resample"),
    ({"seed": -1}, "seed"),
    ({"task": "synthetic", "synthetic": {"frames": 8}}, "synthetic: unknown NeedleTaskConfig field"),
    ({"task": "synthetic", "synthetic": {"num_frames": 0}}, "num_frames"),
    ({"task": "reader", "dataset": "x.jsonl"}, "dataset: task 'reader' makes its own records"),
    ({"task": "reader", "synthetic": {"num_frames": 8}}, "synthetic: the needle-task settings do not apply"),
])
def test_bad_settings_name_the_argument(fields, match):
    with pytest.raises(ValueError, match=match):
        EvalConfig(**fields)


def test_missing_inputs_name_the_argument(tmp_path, needle):
    with pytest.raises(ValueError, match="dataset: task 'dataset' needs"):
        evaluate(out=str(tmp_path / "a"), progress=False)
    with pytest.raises(ValueError, match="learned: the 'learned' allocator needs"):
        evaluate(out=str(tmp_path / "b"), task="synthetic", allocators=["learned"], backbone=NeedleBackend(*needle))
    with pytest.raises(FileNotFoundError, match="dataset"):
        evaluate(out=str(tmp_path / "c"), dataset=str(tmp_path / "missing.jsonl"), backbone="x")
    with pytest.raises(TypeError, match="learned"):
        EvalConfig(learned=object())


def test_cli_parses_the_documented_commands(tmp_path):
    config = parse_args(["--task", "synthetic", "--allocators", "learned", "prior", "fixed", "random", "vanilla",
                         "--learned", "capo-run", "--budgets", "0.75", "0.5", "0.28", "--num-samples", "64",
                         "--out", str(tmp_path)])
    assert config.task == "synthetic" and config.budgets == [0.75, 0.5, 0.28] and config.num_samples == 64
    assert config.allocators == ["learned", "prior", "fixed", "random", "vanilla"]
    assert config.learned == "capo-run" and config.out == str(tmp_path) and config.synthetic == {}
    config = parse_args(["--dataset", "data.jsonl", "--backbone", "Qwen/Qwen2.5-VL-7B-Instruct", "--learned",
                         "you/resadapt-repo", "--budgets", "0.5", "0.25", "0.11", "--num-frames", "32",
                         "--max-new-tokens", "256", "--out", "eval_qwen"])
    assert (config.task, config.dataset, config.backbone) == ("dataset", "data.jsonl", "Qwen/Qwen2.5-VL-7B-Instruct")
    assert config.budgets == [0.5, 0.25, 0.11] and config.num_frames == 32 and config.max_new_tokens == 256
    assert config.allocators is None and config.resolved_allocators(True)[0] == "learned"
    # underscores as well as dashes; booleans as --no-x or --x false; the synthetic fields as a JSON/YAML mapping
    config = parse_args(["--task", "synthetic", "--num_samples", "3", "--no-progress", "--plots", "false",
                         "--no_system_prompt", "--synthetic", '{"num_frames": 8, "height": 48}'])
    assert config.num_samples == 3 and config.progress is False and config.plots is False
    assert config.system_prompt is False and config.synthetic == {"num_frames": 8, "height": 48}
    assert parse_args(["--task", "synthetic", "--synthetic", "{num_frames: 4}"]).synthetic == {"num_frames": 4}
    # --fps alone replaces the default frame count; both given explicitly are refused
    fps = parse_args(["--dataset", "d.jsonl", "--fps", "2"])
    assert fps.fps == 2.0 and fps.num_frames is None
    with pytest.raises(ValueError, match="num_frames and fps"):
        parse_args(["--dataset", "d.jsonl", "--fps", "2", "--num-frames", "32"])
    assert parse_args([]) == EvalConfig()
    assert set(ALLOCATOR_NAMES) == {"learned", "prior", "fixed", "random", "vanilla"}


def test_every_config_field_is_an_option_with_help():
    from dataclasses import fields

    from resadapt_hf.evaluate import build_parser

    actions = {a.dest: a for a in build_parser()._actions}
    for f in fields(EvalConfig):
        assert f.metadata.get("help"), f.name
        assert f.name in actions and actions[f.name].help, f.name


def test_cli_reads_a_config_file_and_options_override_it(tmp_path):
    (tmp_path / "eval.yaml").write_text("task: synthetic\nbudgets: [0.5, 0.25]\nnum_samples: 8\nseed: 3\n"
                                        "synthetic: {num_frames: 4}\n")
    config = parse_args(["--config", str(tmp_path / "eval.yaml"), "--seed", "5", "--budgets", "0.3"])
    assert config.task == "synthetic" and config.num_samples == 8 and config.synthetic == {"num_frames": 4}
    assert config.seed == 5 and config.budgets == [0.3]  # the options win over the file
    # TRL style: the file alone; JSON as well as YAML
    (tmp_path / "eval.json").write_text(json.dumps({"dataset": "d.jsonl", "fps": 1.5, "allocators": ["prior"]}))
    config = parse_args([str(tmp_path / "eval.json")])
    assert config.dataset == "d.jsonl" and config.fps == 1.5 and config.num_frames is None
    assert config.allocators == ["prior"]
    (tmp_path / "bad.yaml").write_text("task: synthetic\nnum_sample: 8\n")
    with pytest.raises(ValueError, match=r"config: .*unknown field\(s\) \['num_sample'\]"):
        parse_args([str(tmp_path / "bad.yaml")])
    with pytest.raises(FileNotFoundError, match="config"):
        parse_args(["--config", str(tmp_path / "missing.yaml")])


def test_cli_runs_and_reports_bad_arguments(tmp_path, capsys):
    assert main(["--task", "synthetic", "--budgets", "5", "--out", str(tmp_path)]) == 2
    assert "budgets" in capsys.readouterr().err
    assert main(["--task", "video"]) == 2  # argparse: not a choice
    assert "invalid choice" in capsys.readouterr().err
    assert main(["--num-samples", "x"]) == 2
    assert main([str(tmp_path / "missing.yaml")]) == 2
    assert "config: no such file" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "--num-samples" in capsys.readouterr().out
    out = tmp_path / "run"
    assert main(["--task", "synthetic", "--allocators", "fixed", "vanilla", "--budgets", "0.5", "--num-samples", "2",
                 "--synthetic", "{num_frames: 4}", "--out", str(out), "--no-progress", "--no-plots"]) == 0
    table = capsys.readouterr().out
    assert "fixed" in table and "vanilla" in table and f"wrote {out / 'results.json'}" in table
    assert len(read_records(out / "records.jsonl")) == 2 * 2 and not (out / "frontier.png").exists()


# plots -----------------------------------------------------------------------------------------------------------
def _ink(path):
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    return (pixels.shape[1], pixels.shape[0]), int((pixels != 255).any(-1).sum())


def test_line_chart_draws_axes_series_and_references(tmp_path):
    series = {"learned": [(0.25, 0.6), (0.5, 0.8)], "fixed": [(0.25, 0.3), (0.5, 0.6)], "vanilla": [(1.0, 0.9)],
              "empty": []}
    path = line_chart(series, tmp_path / "sub" / "chart.png", title="t", xlabel="retention", ylabel="score",
                      references={"vanilla": 0.9}, size=(640, 400))
    size, ink = _ink(path)
    assert size == (640, 400) and ink > 2000
    with pytest.raises(ValueError, match="size"):
        line_chart(series, tmp_path / "x.png", size=(50, 400))
    with pytest.raises(ValueError, match="series"):
        line_chart({"a": [(1, 2, 3)]}, tmp_path / "x.png")


def test_heatmap_draws_cells_colour_bar_and_highlights(tmp_path):
    rows = [[0.2, 0.5, 1.0, 1.8], [1.0, 1.0], [float("nan"), 0.3, 0.4, 0.5]]
    path = heatmap(rows, tmp_path / "heat.png", row_labels=["a", "b", "c"], title="scales", vmin=0.2, vmax=1.8,
                   highlights=[[2], [], [0]], size=(500, 300))
    size, ink = _ink(path)
    assert size == (500, 300) and ink > 20000
    with Image.open(heatmap(rows, tmp_path / "auto.png")) as image:
        assert image.width >= 300 and image.height >= 200
    with pytest.raises(ValueError, match="row_labels"):
        heatmap(rows, tmp_path / "x.png", row_labels=["a"])
    with pytest.raises(ValueError, match="rows"):
        heatmap([], tmp_path / "x.png")


def test_reader_task_end_to_end_with_the_trained_reader(tmp_path):
    """task 'reader': the held-out split, answered by the shipped tiny reader through the HF backend (the real path);
    vanilla reads it, and every budgeted record reports the retention it achieved."""
    results = evaluate(task="reader", out=str(tmp_path / "r"), num_samples=6, budgets=[0.35],
                       allocators=["fixed", "vanilla"], num_frames=None, max_new_tokens=48, progress=False,
                       plots=False)
    assert results["backbone"] == "tiny-reader" and results["dataset"] == "reader-task"
    entries = {(e["allocator"], e["budget"]): e for e in results["aggregate"]}
    assert entries[("vanilla", None)]["accuracy"] >= 0.8
    assert entries[("vanilla", None)]["num_samples"] == 6
    assert abs(entries[("fixed", 0.35)]["retention"] - 0.35) <= 0.1
    with pytest.raises(ValueError, match="records: task 'reader' makes its own records"):
        evaluate(task="reader", out=str(tmp_path / "s"), records=[{"question": "q"}], progress=False)
