"""Smoke test of benchmarks/e2e_cost.py: ``--quick`` runs in a subprocess and writes a sane JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "e2e_cost.py"


def test_e2e_cost_quick(tmp_path):
    out = tmp_path / "e2e.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["benchmark"] == "e2e_cost" and result["quick"] is True
    assert {"machine", "goals", "flops", "wallclock", "seconds"} <= set(result)

    # FLOPs: monotone in retention, saved % in [0, 100] below retention 1 (at 1 it is minus the Allocator's share)
    flops = result["flops"]
    assert flops["primary_base"] in flops["bases"]
    for base in flops["bases"].values():
        for row in base["rows"]:
            entries = sorted(row["resadapt"], key=lambda e: -e["retention_target"])
            assert [e["retention_target"] for e in entries][0] == 1.0 and len(entries) >= 4
            backbone = [e["backbone_tflops"] for e in entries]
            assert all(a > b for a, b in zip(backbone, backbone[1:])), backbone
            assert abs(entries[0]["backbone_tflops"] - row["vanilla"]["tflops"]) < 1e-6
            for preset, alloc in row["allocator"].items():
                assert alloc["tflops"] > 0
                totals = [e["with_allocator"][preset]["tflops"] for e in entries]
                assert all(a > b for a, b in zip(totals, totals[1:])), totals
                first = entries[0]["with_allocator"][preset]
                assert abs(first["saved_pct"] + alloc["share_of_vanilla_pct"]) < 0.02
                for e in entries[1:]:
                    cost = e["with_allocator"][preset]
                    assert 0 <= cost["saved_pct"] <= 100 and 0 <= cost["saved_pct_weights"] <= 100
                    assert abs(e["retention"] - e["retention_target"]) < 0.06
    goal = result["goals"]["flops"]
    assert isinstance(goal["met"], bool) and goal["settings"]

    # wall-clock: positive times and ratios, every allocator x retention present, vanilla ratio 1
    wall = result["wallclock"]
    paths = wall["paths"]
    assert paths["vanilla"]["ratio_vs_vanilla"] == 1.0
    for name in ("prior", "tiny-statistics"):
        for r in ("1", "0.75", "0.5", "0.28"):
            path = paths[f"{name}@{r}"]
            assert path["ratio_vs_vanilla"] > 0 and path["ratio_of_medians"] > 0
            assert path["median_s"]["total"] > 0 and path["median_s"]["allocator"] > 0
            assert path["visual_tokens"] <= paths["vanilla"]["visual_tokens"] * 1.05
    assert paths["prior@0.28"]["visual_tokens"] < paths["prior@1"]["visual_tokens"]
    for check in wall["flop_method_check"].values():
        assert abs(check["rel_diff_all"]) < 0.01
    assert isinstance(result["goals"]["time"]["met"], bool)
