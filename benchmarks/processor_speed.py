"""Processor speed: ResAdaptProcessor vs the native Qwen2.5-VL processor on the same decoded clip.

Times, interleaved in one process (each repetition runs every path once, in a rotating order, after one untimed
warm-up per path), the wall time from a video file to model-ready tensors:

* ``native``          decode (``load_video``) + the backbone processor at its own sizes;
* ``resadapt_mixed``  ResAdaptProcessor with explicit mixed per-frame scales in [0.2, 1.8] (decode included);
* ``resadapt_scale1`` ResAdaptProcessor at scale 1 (the native sizes; checked bit-identical to ``native``);
* ``resadapt_budget`` mixed scales projected onto ``budget=0.25`` (includes the budget solver);
* ``decode_only``     ``load_video`` alone, for reference (shared by every path).

The clip is the synthetic demo clip (``sample_clips.write_demo_clip``) at 1280x720, 32 frames, written to a
temporary mp4. The processor is a Qwen2.5-VL processor with realistic pixel limits
(``min_pixels=128*28*28``, ``max_pixels=768*28*28``) around the tiny offline tokenizer: tokenisation is a small
part of the cost, pixel work dominates. Target: ResAdapt / native <= 1.5 (median over repetitions).

Run ``python benchmarks/processor_speed.py`` (``make bench``); ``--quick`` is a smoke run (2 reps, 8 frames,
320x180). Results go to ``benchmarks/results/processor_speed.json`` unless ``--out`` says otherwise.
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

from resadapt_hf import ResAdaptProcessor, load_video  # noqa: E402
from resadapt_hf.sample_clips import write_demo_clip  # noqa: E402
from resadapt_hf.tiny import build_tiny_processor  # noqa: E402

TARGET_RATIO = 1.5
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "processor_speed.json"
MIN_PIXELS, MAX_PIXELS = 128 * 28 * 28, 768 * 28 * 28
SCALE_PATTERN = (0.3, 0.5, 0.8, 1.0, 1.3, 1.8, 1.1, 0.6)  # repeated over the frames; chunk means vary
BUDGET = 0.25
PATHS = ("native", "resadapt_mixed", "resadapt_scale1", "resadapt_budget", "decode_only")
RESADAPT_PATHS = ("resadapt_mixed", "resadapt_scale1", "resadapt_budget")


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per path (default 5; quick: 2)")
    parser.add_argument("--frames", type=int, default=None, help="frames in the clip and sampled (default 32; quick: 8)")
    parser.add_argument("--width", type=int, default=None, help="clip width (default 1280; quick: 320)")
    parser.add_argument("--height", type=int, default=None, help="clip height (default 720; quick: 180)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 reps, 8 frames, 320x180")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="JSON file, or a folder for processor_speed.json")
    parser.add_argument("--profile", action="store_true", help="also cProfile one resadapt_mixed call (top 25)")
    args = parser.parse_args(argv)
    quick = dict(reps=2, frames=8, width=320, height=180)
    full = dict(reps=5, frames=32, width=1280, height=720)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.reps < 1 or args.frames < 1:
        parser.error("--reps and --frames must be >= 1")
    return args


def _machine() -> dict:
    import av
    import numpy

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "transformers": transformers.__version__,
        "av": av.__version__,
        "numpy": numpy.__version__,
    }


def output_path(out: str, default_name: str = "processor_speed.json") -> Path:
    """``out`` if it names a .json file, else ``out/default_name``; parent folders created."""
    path = Path(out)
    if path.suffix != ".json":
        path = path / default_name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def main(argv=None) -> int:
    args = _parse_args(argv)
    backbone = build_tiny_processor("qwen2_5_vl", min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    rp = ResAdaptProcessor.from_backbone(backbone)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    text = backbone.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    n = args.frames
    scales = [SCALE_PATTERN[i % len(SCALE_PATTERN)] for i in range(n)]

    with tempfile.TemporaryDirectory(prefix="resadapt-bench-") as tmp:
        video = str(write_demo_clip(Path(tmp) / "clip.mp4", num_frames=n, height=args.height, width=args.width))
        size_bytes = os.path.getsize(video)

        def native():
            clip = load_video(video, num_frames=n)
            return backbone(
                text=[text], videos=[clip.frames.numpy()], video_metadata=[clip.to_metadata()],
                do_sample_frames=False, return_tensors="pt",
            )

        def resadapt(**extra):
            return lambda: rp(text=[text], videos=[video], num_frames=n, return_tensors="pt", **extra)

        runners = {
            "native": native,
            "resadapt_mixed": resadapt(scales=scales),
            "resadapt_scale1": resadapt(scales=1.0),
            "resadapt_budget": resadapt(scales=scales, budget=BUDGET),
            "decode_only": lambda: load_video(video, num_frames=n),
        }

        # warm-up (untimed) + what each path produces
        outputs = {name: runners[name]() for name in PATHS}
        checks = {
            "scale1_bit_identical_to_native": all(
                torch.equal(outputs["native"][k], outputs["resadapt_scale1"][k]) for k in outputs["native"].keys()
            )
            and sorted(outputs["native"].keys()) == sorted(outputs["resadapt_scale1"].keys()),
        }
        produced = {}
        for name in PATHS[:-1]:
            feats = outputs[name]
            produced[name] = {
                "pixel_values_videos": list(feats["pixel_values_videos"].shape),
                "video_grid_thw_rows": len(feats["video_grid_thw"]),
                "visual_tokens": int((feats["input_ids"] == backbone.video_token_id).sum()),
                "input_tokens": int(feats["input_ids"].shape[1]),
            }
        allocation = rp.allocate(text=text, videos=video, num_frames=n, scales=scales, budget=BUDGET)
        del outputs

        times = {name: [] for name in PATHS}
        for rep in range(args.reps):
            shift = rep % len(PATHS)
            for name in PATHS[shift:] + PATHS[:shift]:  # rotate the order: no path always runs first/last
                t0 = time.perf_counter()
                runners[name]()
                times[name].append(time.perf_counter() - t0)

        profile_top = None
        if args.profile:
            import cProfile
            import io
            import pstats

            profiler = cProfile.Profile()
            profiler.runcall(runners["resadapt_mixed"])
            stream = io.StringIO()
            pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(25)
            profile_top = stream.getvalue()

    medians = {name: statistics.median(ts) for name, ts in times.items()}
    ratios = {name: medians[name] / medians["native"] for name in PATHS}
    worst = max(ratios[name] for name in RESADAPT_PATHS)
    result = {
        "benchmark": "processor_speed",
        "target": {"resadapt_over_native_max": TARGET_RATIO, "met": worst <= TARGET_RATIO, "worst_ratio": worst},
        "machine": _machine(),
        "settings": {
            "quick": args.quick,
            "reps": args.reps,
            "warmup_runs_per_path": 1,
            "order": "interleaved, rotating per repetition",
            "num_frames": n,
            "height": args.height,
            "width": args.width,
            "video_bytes": size_bytes,
            "video": "sample_clips.write_demo_clip (libx264 yuv420p, crf 28), temporary mp4",
            "backbone_processor": type(backbone).__name__,
            "min_pixels": MIN_PIXELS,
            "max_pixels": MAX_PIXELS,
            "mixed_scales": scales,
            "budget": BUDGET,
            "budget_retention": allocation.retention,
            "budget_reached": allocation.budget_reached,
            "resample": rp.resample,
        },
        "checks": checks,
        "produced": produced,
        "times_s": times,
        "median_s": medians,
        "ratio_vs_native": ratios,
    }
    if profile_top is not None:
        result["profile_resadapt_mixed"] = profile_top

    print(f"processor speed: {n} frames {args.width}x{args.height}, {args.reps} reps (median), "
          f"torch threads {torch.get_num_threads()}, {platform.machine()}")
    print(f"{'path':<17} {'median s':>9} {'vs native':>9}  visual tokens")
    for name in PATHS:
        tokens = produced.get(name, {}).get("visual_tokens", "")
        print(f"{name:<17} {medians[name]:>9.4f} {ratios[name]:>8.2f}x  {tokens}")
    verdict = "met" if worst <= TARGET_RATIO else "NOT met"
    print(f"target: ResAdapt / native <= {TARGET_RATIO} -> {verdict} (worst {worst:.2f}x); "
          f"scale 1 bit-identical to native: {checks['scale1_bit_identical_to_native']}")
    if profile_top is not None:
        print(profile_top)
    path = output_path(args.out)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
