"""End-to-end demo: decode a clip, allocate it at several budgets, feed a tiny Qwen2.5-VL, write ``demo_out/``.

Run ``python -m resadapt_hf.demo --out demo_out`` (this is ``make demo``). Steps:

1. write the bundled demo clip (``sample_clips.write_demo_clip``) into the out folder, or use ``--video PATH``;
2. decode ``--num-frames`` frames with :func:`resadapt_hf.load_video`;
3. build a tiny *random-weight* Qwen2.5-VL (``tiny.build_tiny_backbone``) and a :class:`ResAdaptProcessor`
   around its processor;
4. per budget, allocate with the training-free :class:`PriorAllocator` (detail and change statistics, no
   weights) and, for comparison, with ``FixedScale`` at the same budget; run the processor and ``model.generate``
   once on the content-aware plan to show the unchanged backbone consumes the resized inputs;
5. print a table and write ``allocation_<budget>.json``, ``summary.json`` and ``contact_sheet.png``.

The weights are random, so generated answers are meaningless; a real checkpoint
(e.g. ``Qwen/Qwen2.5-VL-3B-Instruct``) loads by name on a machine with the weights, ideally with a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Sequence

import torch

from .plots import font
from .processing.allocation import Allocation, FixedScale
from .processing.prior_allocator import PriorAllocator
from .processing.processing_resadapt import ResAdaptProcessor
from .processing.video_input import VideoClip, load_video

DEFAULT_BUDGETS = (1.0, 0.5, 0.25, 0.1)
FAMILY = "qwen2_5_vl"
QUESTION = "What happens?"
# default size of the written demo clip: big enough that the budgets differ visibly (the tiny processor caps a
# frame at 64 tokens, so the scale-1 size is 168x252 here) and small enough to stay well under 30 s on a CPU
DEFAULT_HEIGHT, DEFAULT_WIDTH = 240, 320


# -------------------------------------------------------------------------------------------------- helpers


def _budget_name(budget: float) -> str:
    return str(float(budget))  # 1.0 -> "1.0", 0.25 -> "0.25"


def _sizes_compact(sizes: Sequence[Sequence[int]], limit: int = 4) -> str:
    """``(h, w)`` chunk sizes as ``WxH`` runs: ``252x168*3,448x308,...`` (first ``limit`` runs, then ``+N``)."""
    runs: list[list] = []
    for h, w in sizes:
        if runs and runs[-1][0] == (h, w):
            runs[-1][1] += 1
        else:
            runs.append([(h, w), 1])
    parts = [f"{w}x{h}" + (f"*{n}" if n > 1 else "") for (h, w), n in runs[:limit]]
    if len(runs) > limit:
        parts.append(f"+{sum(n for _, n in runs[limit:])}")
    return ",".join(parts)


def _row(budget: float, name: str, allocation: Allocation) -> dict:
    return {
        "budget": float(budget),
        "allocator": name,
        "frames": len(allocation.scales),
        "chunk_sizes_hw": [list(s) for s in allocation.chunk_sizes],
        "scales": [round(s, 4) for s in allocation.scales],
        "visual_tokens": allocation.visual_tokens,
        "baseline_visual_tokens": allocation.baseline_visual_tokens,
        "retention": allocation.retention,
        "budget_reached": allocation.budget_reached,
    }


def _print_table(rows: list[dict]) -> None:
    header = ("budget", "allocator", "frames", "chunks WxH (runs)", "tokens", "baseline", "retention", "reached")
    lines = [
        (
            f"{r['budget']:g}", r["allocator"], str(r["frames"]), _sizes_compact(r["chunk_sizes_hw"]),
            str(r["visual_tokens"]), str(r["baseline_visual_tokens"]), f"{r['retention']:.3f}",
            str(r["budget_reached"]),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*header))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print(fmt.format(*line))


def write_contact_sheet(
    path: Path, clip: VideoClip, plans: list[tuple[float, Allocation]], token_factor: int, title: str
) -> tuple[int, int]:
    """PNG with a header row and one row per budget; every frame is drawn at its allocated chunk size.

    Frame ``t`` belongs to chunk ``t // 2``; it is resized to that chunk's (h, w) with PIL bilinear and labelled
    with its scale and the chunk's visual tokens. Returns the sheet's (width, height).
    """
    from PIL import Image, ImageDraw

    pad, label_w, label_h, header_h, min_col_w = 6, 130, 44, 56, 84
    frames = clip.frames.numpy()
    n = frames.shape[0]
    chunk_len = 2
    # column width: the widest drawing of that frame over all rows; row height: the tallest frame of the row
    # (at least min_col_w so that the labels of tiny frames stay readable)
    col_w = [max(min_col_w, *(a.chunk_sizes[t // chunk_len][1] for _, a in plans)) for t in range(n)]
    row_h = [max(h for h, _ in a.chunk_sizes) for _, a in plans]
    width = label_w + sum(w + pad for w in col_w) + pad
    height = header_h + sum(h + label_h + pad for h in row_h) + pad
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    big, small = font(14), font(11)

    draw.text((pad, 4), title, fill=(0, 0, 0), font=big)
    x = label_w
    for t in range(n):
        draw.text((x, 24), f"frame #{clip.frame_indices[t]}\nt={clip.timestamps[t]:.2f}s", fill=(60, 60, 60), font=small)
        x += col_w[t] + pad

    images = [Image.fromarray(frames[t]) for t in range(n)]
    y = header_h
    for (budget, allocation), rh in zip(plans, row_h):
        draw.line([(0, y - 3), (width, y - 3)], fill=(200, 200, 200))
        reached = "" if allocation.budget_reached in (None, True) else " (not reached)"
        draw.text((pad, y), f"budget {budget:g}{reached}", fill=(0, 0, 0), font=big)
        draw.text(
            (pad, y + 20),
            f"{allocation.visual_tokens}/{allocation.baseline_visual_tokens} tok\nretention {allocation.retention:.3f}",
            fill=(60, 60, 60), font=small,
        )
        x = label_w
        for t in range(n):
            h, w = allocation.chunk_sizes[t // chunk_len]
            sheet.paste(images[t].resize((w, h), Image.BILINEAR), (x, y))
            tokens = (h // token_factor) * (w // token_factor)
            draw.text(
                (x, y + h + 2), f"s={allocation.scales[t]:.2f}\n{w}x{h}\n{tokens} tok/chunk", fill=(0, 0, 0), font=small
            )
            x += col_w[t] + pad
        y += rh + label_h + pad
    sheet.save(path)
    return width, height


# ----------------------------------------------------------------------------------------------------- main


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m resadapt_hf.demo",
        description="Allocate a clip at several budgets, run a tiny random Qwen2.5-VL, write JSON + a contact sheet.",
    )
    parser.add_argument("--out", default="demo_out", help="output folder (created if missing)")
    parser.add_argument("--video", default=None, help="video file to use instead of the bundled demo clip")
    parser.add_argument("--budgets", type=float, nargs="+", default=list(DEFAULT_BUDGETS), help="target retentions")
    parser.add_argument("--num-frames", type=int, default=16, help="frames sampled from the video")
    parser.add_argument("--height", type=int, default=DEFAULT_HEIGHT, help="bundled clip height (even)")
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="bundled clip width (even)")
    parser.add_argument("--max-new-tokens", type=int, default=4, help="tokens generated per budget")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tiny random backbone")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from .sample_clips import write_demo_clip
    from .tiny import build_tiny_backbone

    if args.video is None:
        video_path = write_demo_clip(out / "demo_clip.mp4", num_frames=max(args.num_frames, 16), height=args.height, width=args.width)
        source = "bundled demo clip (resadapt_hf.sample_clips.write_demo_clip)"
    else:
        video_path = Path(args.video)
        source = "user video"
    clip = load_video(video_path, num_frames=args.num_frames)

    model, backbone = build_tiny_backbone(FAMILY, seed=args.seed)
    processor = ResAdaptProcessor.from_backbone(backbone)
    processor.prepare_backbone(model)
    token_factor = backbone.video_processor.patch_size * backbone.video_processor.merge_size
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]
    text = backbone.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    print("ResAdapt demo")
    print(f"  video    : {video_path} ({source}), {clip.num_frames} frames {clip.width}x{clip.height}, fps {clip.fps}")
    print("  backbone : tiny Qwen2.5-VL with RANDOM weights (resadapt_hf.tiny) - generated answers are meaningless;")
    print("             real checkpoints (e.g. Qwen/Qwen2.5-VL-3B-Instruct) load by name on a GPU machine")
    print("  allocator: training-free prior (frame detail + change statistics, query-agnostic, no weights);")
    print("             'fixed' = FixedScale (same scale everywhere) projected onto the same budget")

    prior = PriorAllocator(min_scale=processor.min_scale, max_scale=processor.max_scale)
    detail_scales = prior.predict_scales([clip.frames], QUESTION)[0]
    # reachable retention range of this clip: every frame at min_scale / at max_scale
    floor = processor.allocate(text=text, videos=clip, scales=processor.min_scale).retention
    ceiling = processor.allocate(text=text, videos=clip, scales=processor.max_scale).retention
    base_h, base_w = processor.allocate(text=text, videos=clip).media[0].base_size
    print(f"  scale 1  : {base_w}x{base_h} per 2-frame chunk (the backbone's own size); "
          f"reachable retention [{floor:.3f}, {ceiling:.3f}]")
    print()

    rows, plans, generations, notes = [], [], [], []
    for budget in args.budgets:
        learned = processor.allocate(text=text, videos=clip, scales=detail_scales, budget=budget)
        fixed = processor.allocate(text=text, videos=clip, scales=FixedScale(1.0), budget=budget)
        rows += [_row(budget, "prior", learned), _row(budget, "fixed", fixed)]
        plans.append((budget, learned))
        if learned.budget_reached is False:
            notes.append(
                f"budget {budget:g}: not reachable, retention {learned.retention:.3f} used instead (this clip spans "
                f"[{floor:.3f}, {ceiling:.3f}]: scales are clipped to [{processor.min_scale:g}, {processor.max_scale:g}] "
                f"and every chunk keeps >= {processor.min_visual_tokens} visual tokens)"
            )

        inputs = processor(text=[text], videos=[clip], allocation=learned, return_tensors="pt")
        video_tokens = int((inputs["input_ids"] == backbone.video_token_id).sum())
        if video_tokens != learned.visual_tokens:
            raise RuntimeError(f"processor produced {video_tokens} video tokens, the plan said {learned.visual_tokens}")
        t0 = time.perf_counter()
        with torch.no_grad():
            generated = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False)
        new_tokens = generated[0, inputs["input_ids"].shape[1] :]
        generations.append(
            {
                "budget": float(budget),
                "input_tokens": int(inputs["input_ids"].shape[1]),
                "video_tokens": video_tokens,
                "video_grid_thw": inputs["video_grid_thw"].tolist(),
                "pixel_values_videos_shape": list(inputs["pixel_values_videos"].shape),
                "generated_ids": new_tokens.tolist(),
                "generated_text": backbone.tokenizer.decode(new_tokens, skip_special_tokens=False),
                "generate_seconds": round(time.perf_counter() - t0, 3),
            }
        )
        payload = {"budget": float(budget), "allocator": repr(prior), **learned.to_dict()}
        (out / f"allocation_{_budget_name(budget)}.json").write_text(json.dumps(payload, indent=2))

    _print_table(rows)
    print()
    for g in generations:
        print(
            f"budget {g['budget']:g}: generate() read {g['input_tokens']} tokens ({g['video_tokens']} visual, "
            f"grid rows {len(g['video_grid_thw'])}) -> {g['generated_ids']} (random weights)"
        )
    for note in notes:
        print("note:", note)

    title = (
        f"ResAdapt demo - {clip.num_frames} frames, prior allocator; each frame drawn at its chunk size "
        f"(scale-1 size {base_w}x{base_h})"
    )
    sheet_size = write_contact_sheet(out / "contact_sheet.png", clip, plans, token_factor, title)

    summary = {
        "video": str(video_path),
        "video_source": source,
        "clip": {
            "num_frames": clip.num_frames, "height": clip.height, "width": clip.width, "fps": clip.fps,
            "total_num_frames": clip.total_num_frames, "frame_indices": clip.frame_indices,
            "timestamps": clip.timestamps,
        },
        "backbone": {
            "family": FAMILY, "model_class": type(model).__name__, "weights": "random (resadapt_hf.tiny)",
            "note": "outputs are meaningless; real checkpoints load by name on a GPU machine",
        },
        "allocator": prior.to_dict(),
        "prior_scales": [round(s, 4) for s in detail_scales],
        "processor_settings": {
            "min_scale": processor.min_scale, "max_scale": processor.max_scale,
            "min_visual_tokens": processor.min_visual_tokens, "resample": processor.resample,
            "budget_tolerance": processor.budget_tolerance,
        },
        "reachable_retention": [floor, ceiling],
        "budgets": [float(b) for b in args.budgets],
        "rows": rows,
        "generations": generations,
        "notes": notes,
        "files": {
            "allocations": [f"allocation_{_budget_name(b)}.json" for b in args.budgets],
            "contact_sheet": "contact_sheet.png",
            "contact_sheet_size": list(sheet_size),
        },
        "environment": {
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
        },
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {out}/: summary.json, contact_sheet.png ({sheet_size[0]}x{sheet_size[1]}), "
          f"{len(args.budgets)} allocation_<budget>.json ({summary['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
