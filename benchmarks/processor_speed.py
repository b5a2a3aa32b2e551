"""Processor speed: ResAdaptProcessor (explicit scales, or the training-free prior) vs the native Qwen2.5-VL processor.

Every path starts from the same decoded frames (one ``VideoClip`` per frame count, decoded once; decoding is the
same for every path and is timed on its own as ``decode_only``) and ends with model-ready tensors:

* ``native``            the backbone processor at its own sizes;
* ``resadapt_scale1``   ResAdaptProcessor at scale 1 (the native sizes; checked bit-identical to ``native``);
* ``resadapt_mixed``    explicit mixed per-frame scales in [0.2, 1.8], no budget;
* ``resadapt_budget``   the same explicit scales projected onto budget 0.25 (includes the budget solver);
* ``resadapt_budget_1`` the same explicit scales projected onto budget 1.0;
* ``prior_budget``      the training-free ``PriorAllocator`` + processor at budget 0.25 (the prior's statistics,
                        the budget solver and the resize: what a user of ``allocator=PriorAllocator()`` pays);
* ``prior_budget_1``    the same at budget 1.0;
* ``prior_only``        ``PriorAllocator.predict_scales`` alone on the decoded frames (its share of ``prior_*``);
* ``decode_only``       ``load_video`` of the clip file, for reference.

Cases: every combination of frame count (default 16 and 32, 1280x720, the synthetic demo clip written to a
temporary mp4; ``--video`` samples a real file instead), backbone pixel range and torch thread count (default:
torch's default count, then 1 thread).
Pixel ranges (``--pixels``) are real Qwen2.5-VL-7B video-processor settings, built from config values around the
tiny offline tokenizer (no download; tokenisation is a small part of the cost, pixel work dominates):

* ``qwen-vl-utils``:  ``min_pixels = 128*28*28``, ``max_pixels = 768*28*28`` per frame: the transformers
  ``Qwen2VLVideoProcessor`` class defaults and qwen-vl-utils' video defaults, i.e. the 768-tokens-per-chunk base
  ResAdapt's paper evaluates at (1280x720 -> 560x1008, 720 tokens per chunk);
* ``qwen2.5-vl-7b``: ``min_pixels = 3136`` (4*28*28), ``max_pixels = 12845056`` (16384*28*28): the values in the
  ``Qwen/Qwen2.5-VL-7B-Instruct`` processor config, what ``AutoProcessor.from_pretrained`` of that checkpoint gives
  its video processor (1280x720 -> 728x1288, 1196 tokens per chunk).

Timing: one untimed warm-up per path and case, then ``--reps`` repetitions; each repetition runs every case, and
within a case every path once in an order that rotates per repetition, so load from other processes spreads over
all paths. Reported per path: median and best (minimum) time, and the ratios to ``native`` of the medians and of
the best runs. Targets: explicit-scale paths / native <= 1.5 (median), and prior + processor at budget 0.25 /
native <= 1.10 (median) in every case at the default thread count.

Run ``python benchmarks/processor_speed.py`` (``make bench``); ``--quick`` is a smoke run (2 reps, 8 frames,
320x180, one pixel range, default threads). Results go to ``benchmarks/results/processor_speed.json`` unless
``--out`` says otherwise. The top-level ``times_s``/``median_s``/``ratio_vs_native``/``produced``/``checks`` are
those of the headline case (most frames, first pixel range, default threads); ``cases`` holds every case.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402

from resadapt_hf import PriorAllocator, ResAdaptProcessor, load_video  # noqa: E402
from resadapt_hf.sample_clips import write_demo_clip  # noqa: E402
from resadapt_hf.tiny import build_tiny_processor  # noqa: E402

TARGET_RATIO = 1.5  # explicit scales vs native
PRIOR_TARGET_RATIO = 1.10  # prior + processor at PRIOR_TARGET_BUDGET vs native, default threads
PRIOR_TARGET_BUDGET = 0.25
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "processor_speed.json"
PIXEL_RANGES = {
    # name: (min_pixels, max_pixels) per frame, i.e. size = {"shortest_edge": min, "longest_edge": max}
    "qwen-vl-utils": (128 * 28 * 28, 768 * 28 * 28),
    "qwen2.5-vl-7b": (4 * 28 * 28, 16384 * 28 * 28),
}
SCALE_PATTERN = (0.3, 0.5, 0.8, 1.0, 1.3, 1.8, 1.1, 0.6)  # repeated over the frames; chunk means vary
BUDGETS = {"resadapt_budget": 0.25, "resadapt_budget_1": 1.0, "prior_budget": 0.25, "prior_budget_1": 1.0}
PATHS = (
    "native", "resadapt_scale1", "resadapt_mixed", "resadapt_budget", "resadapt_budget_1", "prior_budget",
    "prior_budget_1", "prior_only", "decode_only",
)
RESADAPT_PATHS = ("resadapt_mixed", "resadapt_scale1", "resadapt_budget", "resadapt_budget_1")
PROCESSOR_PATHS = PATHS[:-2]  # the paths that produce model inputs


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per path (default 7; quick: 2)")
    parser.add_argument("--frames", type=int, nargs="+", default=None,
                        help="frame counts, one clip each (default 16 32; quick: 8)")
    parser.add_argument("--width", type=int, default=None, help="clip width (default 1280; quick: 320)")
    parser.add_argument("--height", type=int, default=None, help="clip height (default 720; quick: 180)")
    parser.add_argument("--video", default=None,
                        help="a real video file to sample the frames from instead of the synthetic demo clip "
                             "(--width/--height are then the file's)")
    parser.add_argument("--pixels", nargs="+", choices=sorted(PIXEL_RANGES), default=None,
                        help="backbone pixel ranges (default: qwen-vl-utils qwen2.5-vl-7b; quick: qwen-vl-utils)")
    parser.add_argument("--threads", nargs="+", default=None,
                        help="torch thread counts: 'default' or an integer >= 1 (default: default 1; quick: default)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 reps, 8 frames, 320x180")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="JSON file, or a folder for processor_speed.json")
    parser.add_argument("--profile", action="store_true", help="also cProfile one prior_budget call (top 25)")
    args = parser.parse_args(argv)
    quick = dict(reps=2, frames=[8], width=320, height=180, pixels=["qwen-vl-utils"], threads=["default"])
    full = dict(reps=7, frames=[16, 32], width=1280, height=720, pixels=["qwen-vl-utils", "qwen2.5-vl-7b"],
                threads=["default", "1"])
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.reps < 1 or min(args.frames) < 1:
        parser.error("--reps and --frames must be >= 1")
    args.threads = _thread_counts(parser, args.threads)
    return args


def _thread_counts(parser, values) -> list[int]:
    """'default' -> torch's default thread count; duplicates dropped, order kept."""
    counts = []
    for value in values:
        if value == "default":
            count = torch.get_num_threads()
        else:
            try:
                count = int(value)
            except ValueError:
                count = 0
            if count < 1:
                parser.error(f"--threads: expected 'default' or an integer >= 1, got {value!r}")
        if count not in counts:
            counts.append(count)
    return counts


def machine_info(default_threads: int | None = None) -> dict:
    """Versions and machine facts recorded with every benchmark result (shared by the benchmarks)."""
    import av
    import numpy

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": default_threads if default_threads is not None else torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "transformers": transformers.__version__,
        "av": av.__version__,
        "numpy": numpy.__version__,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def output_path(out: str, default_name: str = "processor_speed.json") -> Path:
    """``out`` if it names a .json file, else ``out/default_name``; parent folders created."""
    path = Path(out)
    if path.suffix != ".json":
        path = path / default_name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def summarise(times: dict[str, list[float]]) -> dict:
    """Median and best (minimum) seconds per path and their ratios to ``native``."""
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    best = {name: min(ts) for name, ts in times.items()}
    return {
        "median_s": medians,
        "best_s": best,
        "ratio_vs_native": {name: medians[name] / medians["native"] for name in times},
        "best_ratio_vs_native": {name: best[name] / best["native"] for name in times},
    }


class _Case:
    """One (frame count, pixel range, thread count) combination: its processors, clip and path runners."""

    def __init__(self, clip, video: str, pixels: str, threads: int):
        self.clip, self.pixels, self.threads = clip, pixels, threads
        self.num_frames = int(clip.frames.shape[0])
        min_pixels, max_pixels = PIXEL_RANGES[pixels]
        self.backbone = build_tiny_processor("qwen2_5_vl", min_pixels=min_pixels, max_pixels=max_pixels)
        explicit = ResAdaptProcessor.from_backbone(self.backbone)
        self.prior = PriorAllocator()
        with_prior = ResAdaptProcessor.from_backbone(self.backbone, allocator=self.prior)
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
        text = self.backbone.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        self.scales = [SCALE_PATTERN[i % len(SCALE_PATTERN)] for i in range(self.num_frames)]
        frames_np, metadata = clip.frames.numpy(), clip.to_metadata()

        def native():
            return self.backbone(text=[text], videos=[frames_np], video_metadata=[metadata], do_sample_frames=False,
                                 return_tensors="pt")

        def run(processor, **extra):
            return lambda: processor(text=[text], videos=[clip], return_tensors="pt", **extra)

        self.runners = {
            "native": native,
            "resadapt_scale1": run(explicit, scales=1.0),
            "resadapt_mixed": run(explicit, scales=self.scales),
            "resadapt_budget": run(explicit, scales=self.scales, budget=BUDGETS["resadapt_budget"]),
            "resadapt_budget_1": run(explicit, scales=self.scales, budget=BUDGETS["resadapt_budget_1"]),
            "prior_budget": run(with_prior, budget=BUDGETS["prior_budget"]),
            "prior_budget_1": run(with_prior, budget=BUDGETS["prior_budget_1"]),
            "prior_only": lambda: self.prior.predict_scales([clip.frames], None),
            "decode_only": lambda: load_video(video, num_frames=self.num_frames),
        }
        self.allocations = {
            name: (explicit if name.startswith("resadapt") else with_prior).allocate(
                text=text, videos=clip, scales=self.scales if name.startswith("resadapt") else None, budget=budget)
            for name, budget in BUDGETS.items()
        }
        self.times = {name: [] for name in PATHS}

    @property
    def label(self) -> str:
        return f"{self.num_frames} frames, {self.pixels}, {self.threads} thread{'s' * (self.threads != 1)}"

    def warm_up(self) -> tuple[dict, dict]:
        """Run every path once (untimed); return what the processor paths produce and the checks."""
        outputs = {name: self.runners[name]() for name in PATHS}
        native, scale1 = outputs["native"], outputs["resadapt_scale1"]
        checks = {
            "scale1_bit_identical_to_native": sorted(native.keys()) == sorted(scale1.keys())
            and all(torch.equal(native[k], scale1[k]) for k in native.keys()),
            "budgets_reached": {name: bool(a.budget_reached) for name, a in self.allocations.items()},
        }
        video_token = self.backbone.video_token_id
        produced = {
            name: {
                "pixel_values_videos": list(outputs[name]["pixel_values_videos"].shape),
                "video_grid_thw_rows": len(outputs[name]["video_grid_thw"]),
                "visual_tokens": int((outputs[name]["input_ids"] == video_token).sum()),
                "input_tokens": int(outputs[name]["input_ids"].shape[1]),
            }
            for name in PROCESSOR_PATHS
        }
        for name, allocation in self.allocations.items():
            produced[name].update(retention=allocation.retention, chunk_sizes=[list(s) for s in allocation.chunk_sizes])
        return produced, checks

    def time_once(self, rep: int) -> None:
        shift = rep % len(PATHS)
        for name in PATHS[shift:] + PATHS[:shift]:  # rotate the order: no path always runs first/last
            t0 = time.perf_counter()
            self.runners[name]()
            self.times[name].append(time.perf_counter() - t0)


def main(argv=None) -> int:
    args = _parse_args(argv)
    default_threads = torch.get_num_threads()
    machine = machine_info(default_threads)
    cases: list[_Case] = []
    results = []
    with tempfile.TemporaryDirectory(prefix="resadapt-bench-") as tmp:
        video_bytes = {}
        for n in args.frames:
            if args.video is None:
                video = str(write_demo_clip(Path(tmp) / f"clip{n}.mp4", num_frames=n, height=args.height,
                                            width=args.width))
            else:
                video = args.video
            clip = load_video(video, num_frames=n)
            args.height, args.width = int(clip.frames.shape[1]), int(clip.frames.shape[2])
            video_bytes[n] = os.path.getsize(video)
            for threads in args.threads:
                for pixels in args.pixels:
                    cases.append(_Case(clip, video, pixels, threads))
        warm = []
        for case in cases:
            torch.set_num_threads(case.threads)
            warm.append(case.warm_up())
        for rep in range(args.reps):
            for case in cases:
                torch.set_num_threads(case.threads)
                case.time_once(rep)
        profile_top = None
        if args.profile:
            import cProfile
            import io
            import pstats

            torch.set_num_threads(default_threads)
            profiler = cProfile.Profile()
            profiler.runcall(cases[0].runners["prior_budget"])
            stream = io.StringIO()
            pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(25)
            profile_top = stream.getvalue()
    torch.set_num_threads(default_threads)

    for case, (produced, checks) in zip(cases, warm):
        results.append({
            "num_frames": case.num_frames, "pixels": case.pixels, "min_pixels": PIXEL_RANGES[case.pixels][0],
            "max_pixels": PIXEL_RANGES[case.pixels][1], "torch_threads": case.threads,
            "default_threads": case.threads == default_threads, "checks": checks, "produced": produced,
            "times_s": case.times, **summarise(case.times),
        })
    default_cases = [r for r in results if r["default_threads"]]
    headline = max(default_cases, key=lambda r: (r["num_frames"], -args.pixels.index(r["pixels"])))
    worst = max(r["ratio_vs_native"][name] for r in default_cases for name in RESADAPT_PATHS)
    prior_worst = max(r["ratio_vs_native"]["prior_budget"] for r in default_cases)
    prior_best_worst = max(r["best_ratio_vs_native"]["prior_budget"] for r in default_cases)
    result = {
        "benchmark": "processor_speed",
        "target": {
            "resadapt_over_native_max": TARGET_RATIO, "met": worst <= TARGET_RATIO, "worst_ratio": worst,
            "prior_budget": PRIOR_TARGET_BUDGET, "prior_over_native_max": PRIOR_TARGET_RATIO,
            "prior_met": prior_worst <= PRIOR_TARGET_RATIO, "prior_worst_median_ratio": prior_worst,
            "prior_worst_best_ratio": prior_best_worst,
            "scope": "median ratios over every case at the default thread count",
        },
        "machine": machine,
        "settings": {
            "quick": args.quick,
            "reps": args.reps,
            "warmup_runs_per_path": 1,
            "order": "interleaved: each repetition runs every case, paths in an order rotating per repetition",
            "inputs": "decoded frames (one VideoClip per frame count); decoding timed separately as decode_only",
            "num_frames": headline["num_frames"],
            "frame_counts": list(args.frames),
            "height": args.height,
            "width": args.width,
            "video_bytes": video_bytes,
            "video": args.video or "sample_clips.write_demo_clip (libx264 yuv420p, crf 28), temporary mp4",
            "backbone_processor": type(cases[0].backbone).__name__,
            "pixel_ranges": {name: PIXEL_RANGES[name] for name in args.pixels},
            "min_pixels": headline["min_pixels"],
            "max_pixels": headline["max_pixels"],
            "thread_counts": args.threads,
            "mixed_scales": cases[0].scales if len(args.frames) == 1 else "SCALE_PATTERN repeated over the frames",
            "scale_pattern": list(SCALE_PATTERN),
            "budgets": BUDGETS,
            "prior": cases[0].prior.to_dict(),
            "resample": ResAdaptProcessor.from_backbone(cases[0].backbone).resample,
        },
        "checks": headline["checks"],
        "produced": headline["produced"],
        "times_s": headline["times_s"],
        "median_s": headline["median_s"],
        "best_s": headline["best_s"],
        "ratio_vs_native": headline["ratio_vs_native"],
        "best_ratio_vs_native": headline["best_ratio_vs_native"],
        "cases": results,
    }
    if profile_top is not None:
        result["profile_prior_budget"] = profile_top

    print(f"processor speed: {args.width}x{args.height}, {args.reps} interleaved reps, default torch threads "
          f"{default_threads}, {platform.machine()}, {os.cpu_count()} CPUs")
    for r in results:
        print(f"\n[{r['num_frames']} frames, {r['pixels']} (min/max pixels {r['min_pixels']}/{r['max_pixels']}), "
              f"{r['torch_threads']} thread(s)]")
        print(f"{'path':<18} {'median s':>9} {'best s':>8} {'median x':>9} {'best x':>7}  visual tokens")
        for name in PATHS:
            tokens = r["produced"].get(name, {}).get("visual_tokens", "")
            print(f"{name:<18} {r['median_s'][name]:>9.4f} {r['best_s'][name]:>8.4f} "
                  f"{r['ratio_vs_native'][name]:>8.2f}x {r['best_ratio_vs_native'][name]:>6.2f}x  {tokens}")
    print("\nsummary, ratio to native (median / best run):")
    header = ("frames", "pixels", "threads", "prior@0.25", "explicit@0.25", "prior@1", "explicit@1", "prior alone")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in results:
        cells = [f"{r['ratio_vs_native'][p]:.2f} / {r['best_ratio_vs_native'][p]:.2f}"
                 for p in ("prior_budget", "resadapt_budget", "prior_budget_1", "resadapt_budget_1", "prior_only")]
        print(f"| {r['num_frames']} | {r['pixels']} | {r['torch_threads']} | " + " | ".join(cells) + " |")
    verdict = "met" if worst <= TARGET_RATIO else "NOT met"
    prior_verdict = "met" if prior_worst <= PRIOR_TARGET_RATIO else "NOT met"
    print(f"\ntarget: explicit scales / native <= {TARGET_RATIO} -> {verdict} (worst median {worst:.2f}x)")
    print(f"target: prior + processor at budget {PRIOR_TARGET_BUDGET} / native <= {PRIOR_TARGET_RATIO} at the default "
          f"thread count -> {prior_verdict} (worst median {prior_worst:.2f}x, worst best-run {prior_best_worst:.2f}x)")
    print("scale 1 bit-identical to native in every case: "
          f"{all(r['checks']['scale1_bit_identical_to_native'] for r in results)}")
    if profile_top is not None:
        print(profile_top)
    path = output_path(args.out)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
