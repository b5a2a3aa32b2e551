"""The demo (``python -m resadapt_hf.demo``) and the processor speed benchmark run end to end and write their files."""

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run_demo(tmp_path):
    from resadapt_hf.demo import main

    assert main(["--out", str(tmp_path), "--budgets", "0.5", "0.25", "--num-videos", "4"]) == 0
    return tmp_path


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    return _run_demo(tmp_path_factory.mktemp("demo_out"))


def test_demo_answers_with_the_trained_reader(demo_out):
    summary = json.loads((demo_out / "summary.json").read_text())
    assert summary["backbone"]["name"] == "tiny-reader"
    assert summary["budgets"] == [0.5, 0.25] and len(summary["videos"]) == 4
    assert summary["vanilla_accuracy"] >= 0.75  # the reader answers held-out videos at scale 1
    for video in summary["videos"]:
        assert video["vanilla"]["visual_tokens"] == 144
        for per_budget in video["budgets"]:
            for name in ("learned", "prior", "fixed"):
                run = per_budget[name]
                assert run["answer"] in {"A", "B", "C", "D", None}
                assert isinstance(run["correct"], bool)
                assert abs(run["retention"] - per_budget["budget"]) <= 0.1
    rows = {row["budget"]: row for row in summary["accuracy"]}
    assert set(rows) == {0.5, 0.25} and set(rows[0.25]) >= {"learned", "prior", "fixed"}
    # the point of the demo: at a quarter of the tokens the shipped Allocator keeps the needle chunk readable and
    # FixedScale does not (measured on these 4 videos: 4 right against 1)
    assert rows[0.25]["learned"]["accuracy"] >= rows[0.25]["fixed"]["accuracy"] + 0.5, rows[0.25]


def test_demo_writes_parseable_allocations(demo_out):
    for budget in ("0.5", "0.25"):
        data = json.loads((demo_out / f"allocation_{budget}.json").read_text())
        assert data["budget"] == float(budget)
        video = data["media"][0]
        assert len(video["scales"]) == 8 and len(video["chunk_sizes"]) == 4
        assert data["visual_tokens"] == sum(m["visual_tokens"] for m in data["media"])
        assert data["retention"] == pytest.approx(data["visual_tokens"] / data["baseline_visual_tokens"])
        assert abs(data["retention"] - float(budget)) <= 0.1


def test_demo_contact_sheet(demo_out):
    from PIL import Image

    with Image.open(demo_out / "contact_sheet.png") as sheet:
        sheet.load()
        width, height = sheet.size
        assert sheet.format == "PNG"
    # 8 frames side by side; a scale-1 row plus learned and fixed rows for 2 budgets (each at least 56 px tall)
    assert 8 * 56 <= width <= 20000
    assert 5 * 56 <= height <= 5000
    assert json.loads((demo_out / "summary.json").read_text())["files"]["contact_sheet_size"] == [width, height]


def test_processor_speed_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("processor_speed", REPO / "benchmarks" / "processor_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "speed.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert {"machine", "settings", "times_s", "median_s", "ratio_vs_native", "target", "checks"} <= set(data)
    assert {"platform", "torch_threads", "torch", "transformers"} <= set(data["machine"])
    settings = data["settings"]
    assert (settings["reps"], settings["num_frames"], settings["width"], settings["height"]) == (2, 8, 320, 180)
    paths = {"native", "resadapt_mixed", "resadapt_scale1", "resadapt_budget"}
    assert paths <= set(data["median_s"]) and paths <= set(data["ratio_vs_native"])
    assert all(len(data["times_s"][p]) == 2 for p in paths)
    assert data["ratio_vs_native"]["native"] == pytest.approx(1.0)
    assert data["target"]["resadapt_over_native_max"] == 1.5
    assert data["checks"]["scale1_bit_identical_to_native"] is True


def test_synthetic_capo_benchmark_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("synthetic_capo", REPO / "benchmarks" / "synthetic_capo.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "synthetic.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert set(payload["results"]) >= {"none", "direct", "capo", "fixed_scale@capo", "prior@capo"}
    assert abs(payload["results"]["fixed_scale@capo"]["retention"] - payload["results"]["capo"]["retention"]) <= 0.05
    assert (tmp_path / "synthetic.png").exists()
