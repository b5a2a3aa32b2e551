"""End-to-end cost of ResAdapt versus the vanilla backbone: FLOPs at real size, wall-clock on CPU at mid size.

**1. FLOPs** (Qwen2.5-VL-7B real-size config on the meta device; counting reuses ``allocator_flops.py``):

* Base (the paper's setting, see ``allocator_flops.py``): frames at 672x896, i.e. 768 LLM tokens per 2-frame
  temporal chunk (Qwen's per-frame video cap of 602,112 px; reproduces Table 3's vanilla column within 1.1%). A
  448x448 base (256 tokens per chunk) is reported too. The prompt has 64 text tokens around the video.
* Vanilla = vision tower on every chunk at the base size + 28-layer LLM prefill over visual + text tokens, LM head on
  the last position (``allocator_flops.vanilla_flops``).
* ResAdapt at retention r = the Allocator + the same prefill on resized chunks. The per-chunk sizes come from the
  project's own resize operator: every frame gets scale 1, ``resize_plan.solve_budget`` projects the scales onto
  ``budget=r`` (tolerance 0.001, tighter than the processor's default 0.02 so that the reached retention sits
  on r; it is reported), exactly what ``ResAdaptProcessor(..., budget=r)`` does with a flat allocator. The
  vision tower is counted per resized chunk (``allocator_flops.qwen_vision_per_chunk``, partial edge windows
  included) and the LLM over the reduced token count (``allocator_flops.qwen_llm``). A content-adaptive
  allocation (the ``prior`` allocator's scales on the 32-frame demo clip, projected on the same budgets) is counted
  too at 32 frames, to show that the mix of chunk sizes barely matters at equal retention.
* Allocator = ``allocator_flops.allocator_flops``: preset ``default`` (SmolVLM2-256M encoder at 512 px) and
  ``fast`` (256 px), both with the default D=1024 predictor and a 64-token question.
* Units: FLOPs = 2 x multiply-adds (``FlopCounterMode``). Two conventions, both sides always in the same one:
  **all** = weight matmuls + attention products (what the hardware executes; the headline) and **weights** = weight
  matmuls only (the convention that reproduces the paper's vanilla column). Elementwise work (norms, softmax,
  resizing) is not counted. Saved % = 1 - (Allocator + ResAdapt prefill) / vanilla prefill; at r = 1 it is minus
  the Allocator's share.
* Paper: Table 3 of arXiv 2603.28610v2 (transcribed from the table image ``latency.png`` on the project
  page, https://xnhyacinth.github.io/projects/ResAdapt). It reports TFLOPs *and* milliseconds; its "Scale
  TFLOPs" (Allocator) column is in multiply-adds, while its "Total TFLOPs" = "Inf. TFLOPs" + 2 x "Scale
  TFLOPs" (checked below), i.e. the total counts the Allocator in FLOPs.
* Method check: the piecewise count (one decoder layer x L, one vision block x depth, per chunk) is compared with
  ``FlopCounterMode`` over a real full forward (SDPA math backend, so attention is counted) of the mid-size
  model below, on a ResAdapt input with mixed chunk sizes and on the vanilla input.

**2. Wall-clock** on CPU: a mid-size random Qwen2.5-VL (~16M parameters, float32, built from a config: 6-layer
LLM of width 384, 4-block vision tower of width 128, whose vision:LLM FLOP ratio is close to the 7B model's), a
16-frame 360x640 clip in memory (``sample_clips.make_demo_frames``; decoding is shared by both paths and left
out), the backbone processor at ``max_pixels = 128 * 28 * 28`` per frame (120 tokens per chunk).

* vanilla  = backbone processor (resize + patchify + tokenise) + one prefill forward;
* ResAdapt = Allocator ``predict_scales`` + ResAdaptProcessor (budget solver, resize, patchify, tokenise) + one
  prefill forward of the same weights after ``prepare_backbone``; Allocator = ``prior`` (weight-free) and
  ``tiny-statistics`` (learned architecture: statistics encoder + D=64 predictor, random weights).

A prefill is a single ``model(**inputs, logits_to_keep=1)`` under ``torch.inference_mode`` (no generation). Torch
runs on ONE thread by default (``--threads``): on a shared, oversubscribed CPU two OpenMP threads made the same
forward 3-5x slower and far noisier than one (measured while writing this). One
untimed warm-up per path, then repetitions that run every path once in a rotating order; the ratio
ResAdapt / vanilla is the median over repetitions of the per-repetition ratio (each ResAdapt run against the
vanilla run of the same repetition, which cancels slow phases of the shared machine); the ratio of medians is
reported too.

Goals: (1) >= 70% FLOPs saved at r = 0.28 and 32 frames, Allocator included (headline: default Allocator, paper
base, all FLOPs; every other setting is reported); (2) ResAdapt no slower than vanilla at 16 frames and r <= 0.75
(the paper is 9.2% slower end-to-end at 16 frames, R = 76.3%), for each allocator.

Findings (torch 2.14.1, transformers 5.23.0, shared 2-core CPU): at 32 frames and r = 0.28 (reached 0.2795) the
default Allocator + ResAdapt prefill saves 73.9% of all FLOPs (goal met) but 69.2% of weight FLOPs, the paper's
convention, in which the paper itself reports 69.8%; the fast Allocator saves 75.8% / 71.1%. On the 448x448 base the
default Allocator is 8.5% of vanilla and the saving at r = 0.28 drops to 64.6%. The piecewise count equals
FlopCounterMode over a real forward exactly. Wall-clock at 16 frames: ResAdapt / vanilla = 0.88 (prior) and 0.89
(tiny-statistics) at r = 0.75, 0.59-0.64 at 0.5, 0.41-0.44 at 0.28, and 1.16 at r = 1 (pure overhead).

Run ``python benchmarks/e2e_cost.py`` (a few minutes on 2 cores); writes ``benchmarks/results/e2e_cost.json``.
``--quick`` is a smoke run (FLOPs at 32 frames on the paper base, no content-adaptive variant; tiny backbone,
8 frames of 90x160, 1 repetition).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling benchmark modules

import torch  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import allocator_flops as af  # noqa: E402
from processor_speed import machine_info, output_path  # noqa: E402
from resadapt_hf import PriorAllocator, ResAdaptProcessor  # noqa: E402
from resadapt_hf.allocators import build_allocator  # noqa: E402
from resadapt_hf.processing.resize_plan import UnitSpec, solve_budget  # noqa: E402
from resadapt_hf.sample_clips import make_demo_frames  # noqa: E402
from resadapt_hf.tiny import build_tiny_backbone, build_tiny_processor  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "e2e_cost.json"

# -- FLOPs settings ------------------------------------------------------------------------------------------------
FLOP_RETENTIONS = (1.0, 0.75, 0.5, 0.28, 0.1)
PRIMARY_BASE = "672x896 (768 tok/chunk)"  # af.BASES key: the paper's setting
ALLOCATOR_PRESETS = {"default": 512, "fast": 256}  # preset -> encoder_image_size (resadapt_hf.allocators)
HEADLINE_PRESET = "default"
FLOP_TOLERANCE = 0.001
TEMPORAL_PATCH = 2
GOAL_FLOPS = {"frames": 32, "retention": 0.28, "saved_pct": 70.0}

# -- wall-clock settings -------------------------------------------------------------------------------------------
TIME_RETENTIONS = (1.0, 0.75, 0.5, 0.28)
TIME_ALLOCATORS = ("prior", "tiny-statistics")
GOAL_TIME = {"frames": 16, "max_retention": 0.75, "max_ratio": 1.0}
QUESTION = "What happens in the video?"
CLIP_FPS = 2.0
FULL = dict(frames=16, height=360, width=640, max_pixels=128 * 28 * 28, reps=11, model="mid")
QUICK = dict(frames=8, height=90, width=160, max_pixels=None, reps=1, model="tiny")
MID_TEXT = dict(hidden_size=384, intermediate_size=1664, num_hidden_layers=6, num_attention_heads=8,
                num_key_value_heads=2)
MID_VISION = dict(depth=4, hidden_size=128, intermediate_size=512, num_heads=4, out_hidden_size=384, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1, 3],
                  tokens_per_second=2)

# Table 3 of arXiv 2603.28610v2 (from the project page's latency.png). Times in ms, TFLOPs as printed.
# Vanilla: (inf_tflops, ttft_ms, gen_ms, total_tflops, e2e_ms); ResAdapt rows: columns below.
PAPER_COLUMNS = ("retention_pct", "scale_tflops", "text_enc_ms", "visual_enc_ms", "scale_pred_ms", "scale_apply_ms",
                 "scale_time_ms", "inf_tflops", "ttft_ms", "gen_time_ms", "total_tflops", "e2e_ms")
PAPER_TABLE3 = {
    16: {"vanilla": (111.4, 378.9, 527.9, 111.4, 527.9), "resadapt": [
        (76.3, 1.5, 19.8, 94.1, 85.6, 6.3, 205.8, 77.2, 272.5, 370.7, 80.1, 576.5),
        (52.8, 1.5, 19.9, 102.9, 94.5, 8.4, 225.7, 51.5, 261.5, 313.1, 54.4, 538.8),
        (28.9, 1.5, 20.4, 103.4, 92.2, 9.0, 225.0, 31.0, 227.2, 237.9, 33.9, 462.9)]},
    32: {"vanilla": (222.5, 723.3, 881.9, 222.5, 881.9), "resadapt": [
        (74.4, 2.9, 19.9, 204.1, 97.4, 14.4, 335.9, 153.9, 589.4, 627.6, 159.7, 963.5),
        (51.5, 2.9, 20.0, 193.2, 92.0, 16.2, 321.4, 102.4, 505.0, 467.1, 108.2, 788.5),
        (28.2, 2.9, 20.3, 190.4, 90.3, 17.3, 318.3, 61.4, 451.8, 332.6, 67.2, 650.9)]},
    64: {"vanilla": (444.6, 1457.5, 2059.6, 444.6, 2059.6), "resadapt": [
        (73.2, 5.8, 19.8, 389.5, 95.8, 26.4, 531.5, 307.3, 1093.1, 1327.0, 318.9, 1858.5),
        (50.7, 5.8, 20.1, 382.1, 94.9, 29.9, 527.0, 204.3, 991.8, 740.5, 215.9, 1267.5),
        (27.8, 5.8, 20.0, 371.6, 90.2, 34.8, 516.6, 122.2, 899.2, 511.4, 133.8, 1028.0)]},
    128: {"vanilla": (888.9, 2936.3, 4877.0, 888.9, 4877.0), "resadapt": [
        (74.2, 11.6, 20.1, 766.3, 95.0, 53.1, 934.5, 614.1, 2286.6, 2323.6, 637.3, 3258.1),
        (51.4, 11.6, 20.2, 755.3, 93.8, 59.4, 928.7, 408.0, 2071.0, 1496.0, 431.2, 2424.7),
        (28.2, 11.6, 20.4, 734.5, 92.0, 68.6, 915.5, 243.9, 1766.7, 1061.8, 267.1, 1977.3)]},
}
PAPER_CITATION = ("ResAdapt, arXiv 2603.28610v2, Table 3 (Qwen2.5-VL-7B; single-GPU Allocator + 4-GPU vLLM; "
                  "ms averaged over 200 runs), transcribed from https://xnhyacinth.github.io/projects/ResAdapt")


def tera(flops: float) -> float:
    return round(flops / 1e12, 4)


def pct_saved(cost: float, baseline: float) -> float:
    return round(100.0 * (1.0 - cost / baseline), 2)


def both(parts: dict[str, int]) -> int:
    return parts["weights"] + parts["attention"]


# -- FLOPs ---------------------------------------------------------------------------------------------------------


class PrefillCounter:
    """Backbone prefill FLOPs for any list of per-chunk sizes, counted piecewise with ``allocator_flops`` (cached
    per chunk size and per token count)."""

    def __init__(self, model, prompt_tokens: int = af.PROMPT_TOKENS):
        self.model, self.prompt_tokens = model, prompt_tokens
        vc = model.config.vision_config
        self.factor = vc.patch_size * vc.spatial_merge_size
        self._vision: dict[tuple[int, int], dict[str, int]] = {}
        self._llm: dict[int, dict[str, int]] = {}

    def vision(self, height: int, width: int) -> dict[str, int]:
        if (height, width) not in self._vision:
            self._vision[height, width] = af.qwen_vision_per_chunk(self.model, height, width)
        return self._vision[height, width]

    def llm(self, tokens: int) -> dict[str, int]:
        if tokens not in self._llm:
            self._llm[tokens] = af.qwen_llm(self.model, tokens)
        return self._llm[tokens]

    def prefill(self, sizes, text_tokens: int | None = None) -> dict:
        visual = sum((h // self.factor) * (w // self.factor) for h, w in sizes)
        vision = af.add(*(self.vision(h, w) for h, w in sizes))
        llm = self.llm(visual + (self.prompt_tokens if text_tokens is None else text_tokens))
        return {"vision": vision, "llm": llm, "total": af.add(vision, llm), "visual_tokens": visual}


def plan_chunks(base: tuple[int, int], frames: int, retention: float, scales=None, factor: int = 28):
    """Per-chunk sizes that ``ResAdaptProcessor(budget=retention)`` would use for ``scales`` (default: all 1)."""
    chunks = frames // TEMPORAL_PATCH
    units = [UnitSpec(base[0], base[1], factor)] * chunks
    solution = solve_budget(units, scales or [1.0] * frames, [TEMPORAL_PATCH] * chunks, budget=retention,
                            tolerance=FLOP_TOLERANCE)
    return solution.sizes, solution.retention


def size_summary(sizes) -> dict[str, int]:
    out: dict[str, int] = {}
    for h, w in sizes:
        out[f"{h}x{w}"] = out.get(f"{h}x{w}", 0) + 1
    return out


def cost_entry(prefill: dict, allocators: dict, vanilla: dict) -> dict:
    entry = {
        "backbone_tflops": tera(both(prefill["total"])),
        "backbone_tflops_weights": tera(prefill["total"]["weights"]),
        "backbone_vision_tflops": tera(both(prefill["vision"])),
        "backbone_llm_tflops": tera(both(prefill["llm"])),
        "backbone_saved_pct": pct_saved(both(prefill["total"]), both(vanilla["total"])),
        "backbone_saved_pct_weights": pct_saved(prefill["total"]["weights"], vanilla["total"]["weights"]),
        "with_allocator": {},
    }
    for preset, alloc in allocators.items():
        total_all = both(prefill["total"]) + both(alloc["total"])
        total_w = prefill["total"]["weights"] + alloc["total"]["weights"]
        entry["with_allocator"][preset] = {
            "tflops": tera(total_all), "tflops_weights": tera(total_w),
            "saved_pct": pct_saved(total_all, both(vanilla["total"])),
            "saved_pct_weights": pct_saved(total_w, vanilla["total"]["weights"]),
        }
    return entry


def paper_rows(frames: int) -> dict:
    table = PAPER_TABLE3[frames]
    inf, ttft, gen, total, e2e = table["vanilla"]
    rows = []
    for values in table["resadapt"]:
        row = dict(zip(PAPER_COLUMNS, values))
        row["total_saved_pct"] = pct_saved(row["total_tflops"], total)
        row["inf_saved_pct"] = pct_saved(row["inf_tflops"], inf)
        row["e2e_ratio"] = round(row["e2e_ms"] / e2e, 4)
        # time to first token including the Allocator, the paper's analogue of what part 2 times
        row["scale_plus_ttft_ratio"] = round((row["scale_time_ms"] + row["ttft_ms"]) / ttft, 4)
        row["total_minus_inf_over_scale"] = round((row["total_tflops"] - row["inf_tflops"]) / row["scale_tflops"], 3)
        rows.append(row)
    return {"vanilla": dict(zip(("inf_tflops", "ttft_ms", "gen_time_ms", "total_tflops", "e2e_ms"), table["vanilla"])),
            "resadapt": rows}


def nearest_paper_row(frames: int, retention: float):
    if frames not in PAPER_TABLE3 or retention >= 1.0:
        return None
    row = min(paper_rows(frames)["resadapt"], key=lambda r: abs(r["retention_pct"] / 100 - retention))
    return row if abs(row["retention_pct"] / 100 - retention) < 0.05 else None


def flops_section(frame_counts, base_names, log, content_adaptive: bool = True) -> dict:
    qwen = af.build_qwen()
    counter = PrefillCounter(qwen)
    factor = counter.factor
    allocators = {preset: {frames: af.allocator_flops(size, frames) for frames in frame_counts}
                  for preset, size in ALLOCATOR_PRESETS.items()}
    log(f"  allocator counted ({', '.join(ALLOCATOR_PRESETS)})")
    mixed_frames = 32 if 32 in frame_counts else frame_counts[-1]
    demo = torch.from_numpy(make_demo_frames(num_frames=mixed_frames, height=90, width=160))
    mixed_scales = PriorAllocator().predict_scales([demo])[0]

    bases = {}
    for name in base_names:
        base = af.BASES[name]
        rows = []
        for frames in frame_counts:
            chunks = frames // TEMPORAL_PATCH
            vanilla = counter.prefill([base] * chunks)
            reference = af.vanilla_flops(qwen, base, frames)  # allocator_flops' own vanilla: must agree
            assert vanilla["total"] == reference["total"], (vanilla["total"], reference["total"])
            allocs = {preset: allocators[preset][frames] for preset in ALLOCATOR_PRESETS}
            row = {
                "frames": frames,
                "vanilla": {"tflops": tera(both(vanilla["total"])), "tflops_weights": tera(vanilla["total"]["weights"]),
                            "vision_tflops": tera(both(vanilla["vision"])), "llm_tflops": tera(both(vanilla["llm"])),
                            "visual_tokens": vanilla["visual_tokens"]},
                "allocator": {preset: {"tflops": tera(both(a["total"])), "tflops_weights": tera(a["total"]["weights"]),
                                       "tmacs_weights": tera(a["total"]["weights"] / 2),
                                       "share_of_vanilla_pct": round(100 * both(a["total"]) / both(vanilla["total"]), 3)}
                              for preset, a in allocs.items()},
                "resadapt": [],
            }
            for retention in FLOP_RETENTIONS:
                sizes, reached = plan_chunks(base, frames, retention, factor=factor)
                prefill = counter.prefill(sizes)
                entry = {"retention_target": retention, "retention": round(reached, 4),
                         "visual_tokens": prefill["visual_tokens"], "chunk_sizes": size_summary(sizes),
                         **cost_entry(prefill, allocs, vanilla)}
                if content_adaptive and name == PRIMARY_BASE and frames == mixed_frames:
                    m_sizes, m_reached = plan_chunks(base, frames, retention, scales=mixed_scales, factor=factor)
                    m_prefill = counter.prefill(m_sizes)
                    entry["content_adaptive"] = {
                        "retention": round(m_reached, 4), "visual_tokens": m_prefill["visual_tokens"],
                        "chunk_sizes": size_summary(m_sizes), **cost_entry(m_prefill, allocs, vanilla)}
                paper = nearest_paper_row(frames, retention) if name == PRIMARY_BASE else None
                if paper is not None:
                    entry["paper"] = paper
                row["resadapt"].append(entry)
            rows.append(row)
        bases[name] = {"frame_size": list(base), "tokens_per_chunk": (base[0] // factor) * (base[1] // factor),
                       "rows": rows}
        log(f"  counted base {name}")

    paper = {frames: paper_rows(frames) for frames in PAPER_TABLE3}
    ratios = [r["total_minus_inf_over_scale"] for p in paper.values() for r in p["resadapt"]]
    return {
        "units": "TFLOPs = 1e12 x 2 x multiply-adds (torch FlopCounterMode)",
        "conventions": {"all": "weight matmuls + attention products (q.k, attn.v; causal counted at full S^2)",
                        "weights": "weight matmuls only (mm/addmm/convolution): the paper's vanilla convention"},
        "not_counted": "elementwise ops (norms, activations, softmax, rotary), resizing, tokenisation",
        "backbone": "Qwen2.5-VL-7B (meta device): vision tower per 2-frame chunk (32 blocks, 28 windowed incl. "
                    f"partial edge windows, 4 full) + 28-layer LLM over visual + {af.PROMPT_TOKENS} text tokens, "
                    "LM head on the last position",
        "allocator": {preset: f"SmolVLM2-256M encoder at {size}px + D=1024 predictor, {af.QUERY_TOKENS}-token question"
                      for preset, size in ALLOCATOR_PRESETS.items()},
        "resize_plan": f"all frame scales 1, projected with resize_plan.solve_budget(budget=r, tolerance={FLOP_TOLERANCE})",
        "content_adaptive": None if not content_adaptive else f"PriorAllocator scales of make_demo_frames({mixed_frames} frames) projected on the same "
                            f"budgets, {PRIMARY_BASE}, {mixed_frames} frames",
        "primary_base": PRIMARY_BASE,
        "headline_allocator": HEADLINE_PRESET,
        "bases": bases,
        "paper_table3": {"citation": PAPER_CITATION, "columns_note":
                         "scale_tflops (Allocator) is in multiply-adds; total_tflops = inf_tflops + "
                         "total_minus_inf_over_scale x scale_tflops", "total_minus_inf_over_scale_range":
                         [min(ratios), max(ratios)], "rows": paper},
    }


# -- wall-clock ----------------------------------------------------------------------------------------------------


class TimedAllocator:
    """Wraps an allocator's ``predict_scales`` and remembers how long the last call took."""

    def __init__(self, inner):
        self.inner, self.last = inner, 0.0

    def predict_scales(self, media, text=None):
        start = time.perf_counter()
        out = self.inner.predict_scales(media, text)
        self.last = time.perf_counter() - start
        return out


def build_timing_backbone(settings: dict):
    if settings["model"] == "tiny":
        return build_tiny_backbone("qwen2_5_vl", seed=0)
    processor = build_tiny_processor("qwen2_5_vl", min_pixels=16 * 28 * 28, max_pixels=settings["max_pixels"])
    tok = processor.tokenizer
    text = dict(vocab_size=len(tok), max_position_embeddings=8192, bos_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [6, 9, 9]}, **MID_TEXT)
    return build_tiny_backbone("qwen2_5_vl", seed=0, processor=processor, text_config=text, vision_config=MID_VISION)


def grid_chunk_sizes(grid_thw, patch_size: int) -> list[tuple[int, int]]:
    return [(int(h) * patch_size, int(w) * patch_size) for t, h, w in grid_thw.tolist() for _ in range(int(t))]


def check_flop_method(model, inputs) -> dict:
    """FlopCounterMode over a real full forward versus the piecewise count used for the 7B tables."""
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(**inputs, logits_to_keep=1)
    measured = af.split(counter)
    vc = model.config.vision_config
    sizes = grid_chunk_sizes(inputs["video_grid_thw"], vc.patch_size)
    tokens = int(inputs["input_ids"].shape[1])
    visual = sum((h // (vc.patch_size * vc.spatial_merge_size)) * (w // (vc.patch_size * vc.spatial_merge_size))
                 for h, w in sizes)
    with torch.device("meta"):  # the piecewise count runs on fake tensors: a weightless copy of the model
        shadow = type(model)(model.config)
    predicted = PrefillCounter(shadow).prefill(sizes, text_tokens=tokens - visual)
    return {
        "chunk_sizes": size_summary(sizes), "input_tokens": tokens,
        "measured_gflops": {k: round(v / 1e9, 4) for k, v in measured.items()},
        "piecewise_gflops": {k: round(v / 1e9, 4) for k, v in predicted["total"].items()},
        "piecewise_vision_gflops": round(both(predicted["vision"]) / 1e9, 4),
        "piecewise_llm_gflops": round(both(predicted["llm"]) / 1e9, 4),
        "rel_diff_weights": round(predicted["total"]["weights"] / measured["weights"] - 1, 6),
        "rel_diff_all": round(both(predicted["total"]) / both(measured) - 1, 6),
    }


def wallclock_section(settings: dict, log) -> dict:
    torch.manual_seed(0)
    model, backbone = build_timing_backbone(settings)
    n = settings["frames"]
    frames = make_demo_frames(num_frames=n, height=settings["height"], width=settings["width"])
    metadata = [{"fps": CLIP_FPS, "total_num_frames": n, "frames_indices": list(range(n))}]
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]
    text = backbone.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    timed = {name: TimedAllocator(build_allocator(name)) for name in TIME_ALLOCATORS}
    processors = {name: ResAdaptProcessor.from_backbone(backbone, allocator=alloc) for name, alloc in timed.items()}
    prepared = processors[TIME_ALLOCATORS[0]].prepare_backbone(copy.deepcopy(model))  # vanilla keeps the stock model

    def vanilla():
        t0 = time.perf_counter()
        inputs = backbone(text=[text], videos=[frames], video_metadata=metadata, do_sample_frames=False,
                          return_tensors="pt")
        t1 = time.perf_counter()
        model(**inputs, logits_to_keep=1)
        t2 = time.perf_counter()
        return {"processor": t1 - t0, "prefill": t2 - t1, "total": t2 - t0}, inputs

    def resadapt(name, retention):
        def run():
            t0 = time.perf_counter()
            inputs = processors[name](text=[text], videos=[frames], video_metadata=metadata, budget=retention,
                                      return_tensors="pt")
            t1 = time.perf_counter()
            prepared(**inputs, logits_to_keep=1)
            t2 = time.perf_counter()
            allocator = timed[name].last
            return {"allocator": allocator, "processor": t1 - t0 - allocator, "prefill": t2 - t1,
                    "total": t2 - t0}, inputs
        return run

    runners = {"vanilla": vanilla}
    for name in TIME_ALLOCATORS:
        for retention in TIME_RETENTIONS:
            runners[f"{name}@{retention:g}"] = resadapt(name, retention)
    paths = list(runners)

    produced = {}
    with torch.inference_mode():
        for path in paths:  # warm-up, untimed; also records what each path feeds the backbone
            _, inputs = runners[path]()
            produced[path] = {"input_tokens": int(inputs["input_ids"].shape[1]),
                              "visual_tokens": int((inputs["input_ids"] == backbone.video_token_id).sum()),
                              "video_grid_thw": inputs["video_grid_thw"].tolist()}
        log(f"  warm-up done ({len(paths)} paths)")
        times = {path: [] for path in paths}
        for rep in range(settings["reps"]):
            shift = (rep * 2) % len(paths)
            for path in paths[shift:] + paths[:shift]:
                stages, _ = runners[path]()
                times[path].append(stages)
            log(f"  repetition {rep + 1}/{settings['reps']}: vanilla {times['vanilla'][-1]['total']:.3f} s")

    baseline_tokens = produced["vanilla"]["visual_tokens"]
    for path in paths:
        produced[path]["retention"] = round(produced[path]["visual_tokens"] / baseline_tokens, 4)

    vanilla_totals = [t["total"] for t in times["vanilla"]]
    results = {}
    for path in paths:
        stages = {k: [round(t[k], 5) for t in times[path]] for k in times[path][0]}
        medians = {k: round(statistics.median(v), 5) for k, v in stages.items()}
        paired = [t["total"] / v for t, v in zip(times[path], vanilla_totals)]
        results[path] = {
            "times_s": stages, "median_s": medians,
            "ratio_vs_vanilla": round(statistics.median(paired), 4),
            "ratio_of_medians": round(medians["total"] / statistics.median(vanilla_totals), 4),
            "ratio_min_max": [round(min(paired), 4), round(max(paired), 4)],
            **produced[path],
        }

    # method check of the FLOP counting on this model: mixed chunk sizes (prior @ 0.5) and the vanilla input
    with torch.inference_mode():
        _, mixed = runners[f"{TIME_ALLOCATORS[0]}@0.5"]()
        _, plain = runners["vanilla"]()
    method_check = {f"{TIME_ALLOCATORS[0]}@0.5 (prepared model)": check_flop_method(prepared, mixed),
                    "vanilla (stock model)": check_flop_method(model, plain)}

    params = sum(p.numel() for p in model.parameters())
    vision_params = sum(p.numel() for p in model.model.visual.parameters())
    return {
        "settings": {
            **{k: v for k, v in settings.items()},
            "clip": f"sample_clips.make_demo_frames, uint8 in memory, {n} x {settings['height']}x{settings['width']}",
            "fps": CLIP_FPS, "question": QUESTION, "retentions": list(TIME_RETENTIONS),
            "allocators": {name: repr(t.inner) if name == "prior" else f"build_allocator({name!r}), "
                           f"{sum(p.numel() for p in t.inner.parameters()):,} parameters, random weights"
                           for name, t in timed.items()},
            "backbone_params": params, "backbone_vision_params": vision_params,
            "backbone_text_config": MID_TEXT if settings["model"] == "mid" else "tiny.py default",
            "backbone_vision_config": MID_VISION if settings["model"] == "mid" else "tiny.py default",
            "dtype": "float32", "torch_threads": torch.get_num_threads(),
            "prefill": "model(**processor_output, logits_to_keep=1) under torch.inference_mode",
            "order": "one untimed warm-up per path, then every path once per repetition, order rotated by 2",
            "ratio": "median over repetitions of total(path) / total(vanilla in the same repetition)",
        },
        "paths": results,
        "flop_method_check": method_check,
    }


# -- report --------------------------------------------------------------------------------------------------------


def flops_goal(flops: dict) -> dict:
    settings = []
    for name, base in flops["bases"].items():
        for row in base["rows"]:
            if row["frames"] != GOAL_FLOPS["frames"]:
                continue
            entry = next(e for e in row["resadapt"] if e["retention_target"] == GOAL_FLOPS["retention"])
            for preset, cost in entry["with_allocator"].items():
                for convention, key in (("all", "saved_pct"), ("weights", "saved_pct_weights")):
                    settings.append({"base": name, "allocator": preset, "convention": convention,
                                     "retention": entry["retention"], "saved_pct": cost[key],
                                     "met": cost[key] >= GOAL_FLOPS["saved_pct"]})
    headline = next((s for s in settings if s["base"] == PRIMARY_BASE and s["allocator"] == HEADLINE_PRESET
                     and s["convention"] == "all"), None)
    return {"statement": f">= {GOAL_FLOPS['saved_pct']:g}% FLOPs saved at retention {GOAL_FLOPS['retention']} and "
                         f"{GOAL_FLOPS['frames']} frames, Allocator included",
            "headline": f"{HEADLINE_PRESET} Allocator, {PRIMARY_BASE}, all FLOPs",
            "met": bool(headline and headline["met"]), "headline_saved_pct": headline and headline["saved_pct"],
            "met_in_every_setting": all(s["met"] for s in settings), "settings": settings}


def time_goal(wall: dict) -> dict:
    per = {}
    for name in TIME_ALLOCATORS:
        keys = [f"{r:g}" for r in TIME_RETENTIONS if r <= GOAL_TIME["max_retention"]]
        ratios = {k: wall["paths"][f"{name}@{k}"]["ratio_vs_vanilla"] for k in keys}
        of_medians = {k: wall["paths"][f"{name}@{k}"]["ratio_of_medians"] for k in keys}
        per[name] = {"ratios": ratios, "ratios_of_medians": of_medians, "worst": max(ratios.values()),
                     "met": max(ratios.values()) <= GOAL_TIME["max_ratio"],
                     "met_by_both_estimators": max(max(ratios.values()), max(of_medians.values()))
                     <= GOAL_TIME["max_ratio"]}
    return {"statement": f"ResAdapt (Allocator + processor + prefill) no slower than vanilla at "
                         f"{wall['settings']['frames']} frames and retention <= {GOAL_TIME['max_retention']}",
            "judged_on": "median of per-repetition paired ratios (ratio of medians reported as a second estimator)",
            "frames": wall["settings"]["frames"], "per_allocator": per, "met": all(p["met"] for p in per.values()),
            "met_by_both_estimators": all(p["met_by_both_estimators"] for p in per.values())}


def print_flops(flops: dict) -> None:
    print("\n== FLOPs (TFLOPs; all = weights + attention, w = weights only; Allocator included in 'total') ==")
    print(f"Allocators: default = SmolVLM2-256M @512px, fast = @256px. Paper = {PAPER_CITATION}.")
    print("Paper columns: R, Inf. TFLOPs (backbone), Total TFLOPs (+ Allocator), Total saved %, E2E latency change.")
    for name, base in flops["bases"].items():
        primary = name == PRIMARY_BASE
        print(f"\n-- base {name} (frames {base['frame_size'][0]}x{base['frame_size'][1]}) --")
        header = (f"{'frames':>6} {'r':>5} {'reached':>7} {'vis.tok':>7} | {'vanilla':>7} {'backbone':>8} | "
                  f"{'+default':>8} {'saved%':>6} {'w:saved%':>8} | {'+fast':>7} {'saved%':>6} {'w:saved%':>8}")
        if primary:
            header += f" | {'paper R':>7} {'Inf':>6} {'Total':>6} {'saved%':>6} {'E2E':>6}"
        print(header)
        print("-" * len(header))
        for row in base["rows"]:
            for e in row["resadapt"]:
                d, f = e["with_allocator"]["default"], e["with_allocator"]["fast"]
                line = (f"{row['frames']:>6} {e['retention_target']:>5.2f} {e['retention']:>7.4f} "
                        f"{e['visual_tokens']:>7} | {row['vanilla']['tflops']:>7.1f} {e['backbone_tflops']:>8.1f} | "
                        f"{d['tflops']:>8.1f} {d['saved_pct']:>6.1f} {d['saved_pct_weights']:>8.1f} | "
                        f"{f['tflops']:>7.1f} {f['saved_pct']:>6.1f} {f['saved_pct_weights']:>8.1f}")
                if primary:
                    p = e.get("paper")
                    line += (f" | {p['retention_pct']:>6.1f}% {p['inf_tflops']:>6.1f} {p['total_tflops']:>6.1f} "
                             f"{p['total_saved_pct']:>6.1f} {100 * (p['e2e_ratio'] - 1):>+5.1f}%" if p else
                             (f" | {'vanilla':>7} {PAPER_TABLE3[row['frames']]['vanilla'][0]:>6.1f}"
                              if e["retention_target"] == 1.0 and row["frames"] in PAPER_TABLE3 else " |"))
                print(line)
    for name, base in flops["bases"].items():
        for row in base["rows"]:
            mixed = [e for e in row["resadapt"] if "content_adaptive" in e]
            if not mixed:
                continue
            print(f"\nContent-adaptive allocation ({name}, {row['frames']} frames, prior scales on the demo clip), "
                  "default Allocator, all FLOPs:")
            for e in mixed:
                c = e["content_adaptive"]
                print(f"  r={e['retention_target']:.2f}: reached {c['retention']:.4f}, {len(c['chunk_sizes'])} chunk "
                      f"sizes, total {c['with_allocator']['default']['tflops']:.1f} TFLOPs "
                      f"(saved {c['with_allocator']['default']['saved_pct']:.1f}%) vs uniform "
                      f"{e['with_allocator']['default']['tflops']:.1f} ({e['with_allocator']['default']['saved_pct']:.1f}%)")
    rng = flops["paper_table3"]["total_minus_inf_over_scale_range"]
    print(f"\nPaper check: (Total - Inf) / Scale TFLOPs = {rng[0]:.2f} .. {rng[1]:.2f} in every ResAdapt row of "
          "Table 3, i.e. Total counts the Allocator at 2 x its 'Scale TFLOPs' (multiply-adds) column.")


def print_wallclock(wall: dict) -> None:
    s = wall["settings"]
    print(f"\n== Wall-clock, CPU ({s['torch_threads']} threads), {s['model']} Qwen2.5-VL "
          f"({s['backbone_params'] / 1e6:.1f}M params, float32), {s['frames']} frames "
          f"{s['height']}x{s['width']}, {s['reps']} repetitions (median) ==")
    header = (f"{'path':<22} {'tokens':>6} {'reached':>7} | {'alloc s':>7} {'proc s':>7} {'prefill s':>9} "
              f"{'total s':>8} | {'ratio':>6} {'(min..max)':>13} {'ratio of medians':>16}")
    print(header)
    print("-" * len(header))
    for path, r in wall["paths"].items():
        m = r["median_s"]
        print(f"{path:<22} {r['visual_tokens']:>6} {r['retention']:>7.3f} | {m.get('allocator', 0):>7.3f} "
              f"{m['processor']:>7.3f} {m['prefill']:>9.3f} {m['total']:>8.3f} | {r['ratio_vs_vanilla']:>6.3f} "
              f"{r['ratio_min_max'][0]:>6.3f}..{r['ratio_min_max'][1]:<6.3f} {r['ratio_of_medians']:>16.3f}")
    paper = paper_rows(16)["resadapt"]
    print("Paper, Table 3 at 16 frames (GPU; E2E = Allocator + full generation; TTFT excludes the Allocator): "
          + "; ".join(f"R={p['retention_pct']}%: E2E x{p['e2e_ratio']:.3f}, (Scale Time + TTFT) / vanilla TTFT "
                      f"x{p['scale_plus_ttft_ratio']:.3f}" for p in paper))
    print("\nFLOP-count method check (piecewise count vs FlopCounterMode over the real forward):")
    for name, c in wall["flop_method_check"].items():
        print(f"  {name}: {len(c['chunk_sizes'])} chunk sizes, {c['input_tokens']} tokens: measured "
              f"{c['measured_gflops']['weights']:.3f} + {c['measured_gflops']['attention']:.3f} GFLOPs, piecewise "
              f"{c['piecewise_gflops']['weights']:.3f} + {c['piecewise_gflops']['attention']:.3f} "
              f"(rel. diff weights {c['rel_diff_weights']:+.2e}, all {c['rel_diff_all']:+.2e})")


def print_goals(goals: dict) -> None:
    g = goals["flops"]
    print(f"\nGoal 1: {g['statement']}. Headline ({g['headline']}): {g['headline_saved_pct']}% -> "
          f"{'MET' if g['met'] else 'NOT met'}")
    for s in g["settings"]:
        print(f"  {s['allocator']:>7} Allocator, {s['base']}, {s['convention']:>7}: r={s['retention']:.4f} "
              f"saved {s['saved_pct']:.2f}% -> {'met' if s['met'] else 'not met'}")
    t = goals["time"]
    print(f"Goal 2: {t['statement']} -> {'MET' if t['met'] else 'NOT met'}")
    for name, p in t["per_allocator"].items():
        print(f"  {name}: paired ratios {p['ratios']} (worst {p['worst']:.3f}) -> {'met' if p['met'] else 'not met'}; "
              f"ratios of medians {p['ratios_of_medians']} -> "
              f"{'also met' if p['met_by_both_estimators'] else 'not met by this estimator'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: FLOPs at 32 frames on the paper base; tiny backbone, 8 frames, 1 repetition")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per path (default 11; quick: 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the wall-clock part (default 1)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="JSON file, or a folder for e2e_cost.json")
    args = parser.parse_args(argv)
    settings = dict(QUICK if args.quick else FULL)
    if args.reps is not None:
        if args.reps < 1:
            parser.error("--reps must be >= 1")
        settings["reps"] = args.reps
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    load_before = os.getloadavg()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f} s] {message}", flush=True)

    frame_counts = (32,) if args.quick else af.FRAMES
    base_names = (PRIMARY_BASE,) if args.quick else tuple(af.BASES)
    log("FLOPs ...")
    flops = flops_section(frame_counts, base_names, log, content_adaptive=not args.quick)
    flops_seconds = time.perf_counter() - start
    log("wall-clock ...")
    wall = wallclock_section(settings, log)
    goals = {"flops": flops_goal(flops), "time": time_goal(wall)}
    seconds = time.perf_counter() - start

    print_flops(flops)
    print_wallclock(wall)
    print_goals(goals)
    result = {
        "benchmark": "e2e_cost",
        "quick": args.quick,
        "machine": {**machine_info(), "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "goals": goals,
        "flops": flops,
        "wallclock": wall,
        "seconds": {"flops": round(flops_seconds, 1), "total": round(seconds, 1)},
    }
    path = output_path(args.out, "e2e_cost.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n({seconds:.0f} s) wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
