"""``make demo``: the trained tiny reader answers held-out reader-task videos at several budgets, each allocated by
the learned Allocator, the training-free prior and FixedScale; writes ``demo_out/``.

Run ``python -m resadapt_hf.demo --out demo_out`` (this is ``make demo``). Everything is the real path, on CPU and
offline:

1. the backbone is the tiny reader shipped in the package (``load_backbone("tiny-reader")``: a 1.2M-parameter
   Qwen2.5-VL trained from scratch on the reader task, ``resadapt_hf.tiny_reader``);
2. the videos are the reader task's held-out split (``reader_task.reader_records``): 8 frames of 168 x 168 px, a
   patch of fine stripes in one frame, "Which way do the fine stripes in the video run?" with four options;
3. per video: the answer at scale 1 (vanilla), then per budget and allocator (``learned``: the Allocator trained with
   CAPO against this reader, shipped next to it; ``prior``; ``fixed``) the budget-projected allocation, the
   reader's ``generate`` on exactly those resized inputs, graded by ``rewards``;
4. prints the answers, whether each is right, tokens and retention, a per-allocator accuracy summary, and writes
   ``summary.json``, ``allocation_<budget>.json`` (the learned plans of the first video) and ``contact_sheet.png``
   (one video's frames drawn at their allocated sizes, learned vs FixedScale per budget).

A real checkpoint (e.g. ``Qwen/Qwen2.5-VL-3B-Instruct``) and your own clips go through the same processor and
``resadapt eval``; see the README.
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
from .processing.video_input import VideoClip

DEFAULT_BUDGETS = (0.5, 0.35, 0.25)
ALLOCATORS = ("learned", "prior", "fixed")
MAX_NEW_TOKENS = 48  # the reader's completion is 36 tokens


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


def write_contact_sheet(
    path: Path, clip: VideoClip, plans: list[tuple[str, Allocation]], token_factor: int, title: str
) -> tuple[int, int]:
    """PNG with a header row and one row per ``(label, allocation)``; every frame is drawn at its allocated chunk
    size.

    Frame ``t`` belongs to chunk ``t // 2``; it is resized to that chunk's (h, w) with PIL bilinear and labelled
    with its scale and the chunk's visual tokens. Returns the sheet's (width, height).
    """
    from PIL import Image, ImageDraw

    pad, label_w, label_h, header_h, min_col_w = 6, 150, 44, 56, 84
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
    for (label, allocation), rh in zip(plans, row_h):
        draw.line([(0, y - 3), (width, y - 3)], fill=(200, 200, 200))
        reached = "" if allocation.budget_reached in (None, True) else " (not reached)"
        draw.text((pad, y), f"{label}{reached}", fill=(0, 0, 0), font=small)
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


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m resadapt_hf.demo",
        description="The trained tiny reader answers held-out reader-task videos at several budgets: learned "
                    "Allocator vs prior vs FixedScale.",
    )
    parser.add_argument("--out", default="demo_out", help="output folder (created if missing)")
    parser.add_argument("--budgets", type=float, nargs="+", default=list(DEFAULT_BUDGETS), help="target retentions")
    parser.add_argument("--num-videos", type=int, default=8, help="held-out reader videos to answer (>= 1)")
    parser.add_argument("--learned", default=None,
                        help="Allocator folder for 'learned' (default: the one shipped with the tiny reader)")
    args = parser.parse_args(argv)
    if args.num_videos < 1:
        parser.error(f"--num-videos must be >= 1, got {args.num_videos}")
    return args


def _answer(backend, sample, allocation: Allocation) -> dict:
    from .evaluate.metrics import score_completion

    completion = backend.generate(sample, allocation)
    graded = score_completion(sample.record, completion)
    return {"answer": graded["extracted_answer"], "correct": graded["correct"], "completion": completion,
            "visual_tokens": allocation.visual_tokens, "retention": round(allocation.retention, 4),
            "scales": [round(s, 3) for s in allocation.scales], "chunk_sizes_hw": [list(c) for c in allocation.chunk_sizes]}


def _mark(row: dict) -> str:
    return f"{row['answer'] or '?'} {'right' if row['correct'] else 'WRONG'}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from .evaluate.backends import HFBackend
    from .loading import load_allocator, load_backbone
    from .processing.prior_allocator import PriorAllocator
    from .reader_task import SPLIT_SEEDS, reader_records
    from .rewards import SYSTEM_PROMPT
    from .tiny_reader import READER_ALLOCATOR_DIR

    model, backbone_processor = load_backbone("tiny-reader", device="cpu")
    backend = HFBackend(model, backbone_processor, name="tiny-reader", max_new_tokens=MAX_NEW_TOKENS, num_frames=None,
                        system_prompt=SYSTEM_PROMPT)
    processor = backend.processor
    learned_path = args.learned or str(READER_ALLOCATOR_DIR)
    allocators = {"learned": load_allocator(learned_path),
                  "prior": PriorAllocator(min_scale=processor.min_scale, max_scale=processor.max_scale),
                  "fixed": FixedScale(1.0)}
    records = reader_records(args.num_videos, seed=SPLIT_SEEDS["test"])
    token_factor = backbone_processor.video_processor.patch_size * backbone_processor.video_processor.merge_size

    print("ResAdapt demo: the trained tiny reader (a 1.2M-parameter Qwen2.5-VL, CPU) answers held-out videos")
    print(f"  question : {records[0]['question']} {' '.join(records[0]['options'])}")
    print(f"  videos   : {args.num_videos} held-out reader-task videos, 8 frames of 168x168, fine stripes in one frame")
    print(f"  learned  : Allocator trained with CAPO against this reader ({learned_path})")
    print("  prior    : training-free (frame detail + change statistics); fixed: FixedScale, the same scale everywhere")
    print()

    videos, plans = [], []  # plans[i]: the allocations video i was answered on, by (budget, allocator name)
    for index, record in enumerate(records):
        sample = backend.prepare(record, str(index))
        native = backend.allocate(sample, [1.0] * sample.frames.shape[0], None)
        plans.append({"vanilla": native})
        vanilla = _answer(backend, sample, native)
        entry = {"index": index, "answer": record["answer"], "pattern": record["pattern"],
                 "needle_frame": record["needle_frames"][0], "vanilla": vanilla, "budgets": []}
        print(f"video {index}: truth {record['answer']} ({record['pattern']}, frame {entry['needle_frame']}); "
              f"scale 1: {_mark(vanilla)} with {vanilla['visual_tokens']} tokens")
        for budget in args.budgets:
            per = {"budget": float(budget)}
            for name, allocator in allocators.items():
                raw = [1.0] * sample.frames.shape[0] if name == "fixed" else \
                    [float(s) for s in allocator.predict_scales([sample.frames], record["question"])[0]]
                allocation = backend.allocate(sample, raw, budget)
                plans[index][(float(budget), name)] = allocation
                per[name] = _answer(backend, sample, allocation)
                if index == 0 and name == "learned":
                    payload = {"budget": float(budget), "allocator": learned_path, **allocation.to_dict()}
                    (out / f"allocation_{_budget_name(budget)}.json").write_text(json.dumps(payload, indent=2))
            entry["budgets"].append(per)
            cells = "   ".join(f"{name} {_mark(per[name])} ({per[name]['visual_tokens']} tok, "
                               f"r={per[name]['retention']:.2f})" for name in allocators)
            print(f"  budget {budget:<4g}  {cells}")
        videos.append(entry)

    print()
    print(f"accuracy over {len(videos)} videos (vanilla = scale 1: "
          f"{sum(v['vanilla']['correct'] for v in videos) / len(videos):.2f} at {videos[0]['vanilla']['visual_tokens']} tokens)")
    summary_rows = []
    for k, budget in enumerate(args.budgets):
        row = {"budget": float(budget)}
        for name in allocators:
            cells = [v["budgets"][k][name] for v in videos]
            row[name] = {"accuracy": sum(c["correct"] for c in cells) / len(cells),
                         "retention": sum(c["retention"] for c in cells) / len(cells)}
        summary_rows.append(row)
        print(f"  budget {budget:<4g}  " + "   ".join(
            f"{name} {row[name]['accuracy']:.2f} (r={row[name]['retention']:.2f})" for name in allocators))
    print("  (the learned Allocator keeps the needle's chunk at full size and the others at the floor, retention 1/3; "
          "below that the needle chunk itself must shrink, and the finest stripes are lost)")

    # the contact sheet shows a video where the learned allocation and FixedScale disagree at the lowest budget
    lowest = len(args.budgets) - 1
    shown = next((v for v in videos if v["budgets"][lowest]["learned"]["correct"]
                  and not v["budgets"][lowest]["fixed"]["correct"]), videos[0])
    clip = backend.prepare(records[shown["index"]], str(shown["index"])).payload[0]
    answered = plans[shown["index"]]
    rows = [(f"scale 1: {_mark(shown['vanilla'])}", answered["vanilla"])]
    for k, budget in enumerate(args.budgets):
        for name in ("learned", "fixed"):
            rows.append((f"{budget:g} {name}: {_mark(shown['budgets'][k][name])}", answered[(float(budget), name)]))
    title = (f"video {shown['index']}: truth {shown['answer']} ({shown['pattern']}, frame {shown['needle_frame']}); "
             f"frames drawn at their allocated chunk sizes")
    sheet_size = write_contact_sheet(out / "contact_sheet.png", clip, rows, token_factor, title)

    summary = {
        "backbone": {"name": "tiny-reader", "model_class": type(model).__name__,
                     "parameters": sum(p.numel() for p in model.parameters())},
        "learned_allocator": learned_path,
        "split_seed": SPLIT_SEEDS["test"],
        "budgets": [float(b) for b in args.budgets],
        "videos": videos,
        "accuracy": summary_rows,
        "vanilla_accuracy": sum(v["vanilla"]["correct"] for v in videos) / len(videos),
        "contact_sheet_video": shown["index"],
        "processor_settings": {"min_scale": processor.min_scale, "max_scale": processor.max_scale,
                               "min_visual_tokens": processor.min_visual_tokens, "resample": processor.resample,
                               "budget_tolerance": processor.budget_tolerance},
        "files": {"allocations": [f"allocation_{_budget_name(b)}.json" for b in args.budgets],
                  "contact_sheet": "contact_sheet.png", "contact_sheet_size": list(sheet_size)},
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "transformers": __import__("transformers").__version__},
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {out}/: summary.json, contact_sheet.png ({sheet_size[0]}x{sheet_size[1]}, video {shown['index']}), "
          f"{len(args.budgets)} allocation_<budget>.json ({summary['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
