"""The demo (``python -m resadapt_hf.demo``) and the processor speed benchmark run end to end and write their files."""

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run_demo(tmp_path):
    from resadapt_hf.demo import main

    assert main(["--out", str(tmp_path), "--budgets", "1.0", "0.25"]) == 0
    return tmp_path


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    return _run_demo(tmp_path_factory.mktemp("demo_out"))


def test_demo_writes_parseable_allocations(demo_out):
    for budget in ("1.0", "0.25"):
        data = json.loads((demo_out / f"allocation_{budget}.json").read_text())
        assert data["budget"] == float(budget)
        for key in ("media", "scales", "chunk_sizes", "visual_tokens", "baseline_visual_tokens", "retention"):
            assert key in data or key in data["media"][0], key
        video = data["media"][0]
        assert len(video["scales"]) == 16 and len(video["chunk_sizes"]) == 8
        assert data["visual_tokens"] == sum(m["visual_tokens"] for m in data["media"])
        assert data["retention"] == pytest.approx(data["visual_tokens"] / data["baseline_visual_tokens"])

    low = json.loads((demo_out / "allocation_0.25.json").read_text())
    # The default clip's scale-1 size is 168x252 (54 tokens per chunk) and its reachable retention spans about
    # [0.07, 3.3], so 0.25 is reachable: the solver must land within its tolerance (0.02).
    assert low["budget_reached"] is True
    assert abs(low["retention"] - 0.25) <= 0.02


def test_demo_summary_and_generation(demo_out):
    summary = json.loads((demo_out / "summary.json").read_text())
    assert summary["budgets"] == [1.0, 0.25]
    assert {r["allocator"] for r in summary["rows"]} == {"prior", "fixed"}
    assert len(summary["rows"]) == 4
    assert "random" in summary["backbone"]["weights"]
    for generation in summary["generations"]:
        assert len(generation["generated_ids"]) >= 1  # the backbone consumed the inputs and produced tokens
        row = next(r for r in summary["rows"] if r["budget"] == generation["budget"] and r["allocator"] == "prior")
        assert generation["video_tokens"] == row["visual_tokens"]
    # the content-aware plan is not uniform: the clip's flat frames get less than its textured/glyph frames
    detail = next(r for r in summary["rows"] if r["budget"] == 1.0 and r["allocator"] == "prior")
    assert len({tuple(s) for s in detail["chunk_sizes_hw"]}) > 1


def test_demo_contact_sheet(demo_out):
    from PIL import Image

    with Image.open(demo_out / "contact_sheet.png") as sheet:
        sheet.load()
        width, height = sheet.size
        assert sheet.format == "PNG"
    # 16 frames side by side (each at least 56 px wide), header + 2 budget rows (each at least 56 px tall)
    assert 16 * 56 <= width <= 20000
    assert 2 * 56 <= height <= 5000
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
