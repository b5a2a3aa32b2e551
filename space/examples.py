"""The Space's examples, generated at startup (a few hundred KB, deterministic), headline first:

* the **pattern clip**: sample ``READER_EXAMPLE_INDEX`` of the reader task's held-out TEST split
  (``resadapt_hf.reader_task``, seed ``SPLIT_SEEDS["test"]``: 8 frames of 168 x 168 px, one frame carries a 56 px
  patch of fine stripes), with the exact question text ``tiny-reader`` was trained on (the question
  and its four options, one per line) and its known answer, at budget 0.25. ``tiny-reader``, the CPU default,
  answers it;
* the **needle clip**: sample ``NEEDLE_INDEX`` of the synthetic needle task (``resadapt_hf.synthetic``, default
  ``NeedleTaskConfig``: 8 frames of 128 x 128 px, one shows a digit), with its multiple-choice question and known
  answer, at budget 0.25 and at the tighter 0.15 (on CPU these examples switch the answerer to ``needle-reader``
  and the allocator to the prior);
* a 2 s **texture and text clip** (``resadapt_hf.sample_clips``) with a free question and no known answer.

Why needle sample 8: on it, at budget 0.25, the needle reader is right with the prior allocator, with FixedScale (the
prior's scales are nearly uniform on this task, so both get the same chunk sizes) and at native scale 1; at 0.15
both budgeted runs are wrong and native is still right, so the side by side shows right and wrong answers. Over the
first 256 samples (uncompressed frames) the reader is right on 64% at 0.25 with either allocator and on 95% at
native scale.

Choosing ``READER_EXAMPLE_INDEX``: ``python space/examples.py --n 64`` (:func:`candidate_examples`) runs the Space's
own answerer path (the encoded and decoded clip, ``tiny-reader``, the page's default allocator) over test-split
samples and lists those where the reader is right at scale 1 and at budget 0.25 with the default allocator while
FixedScale at 0.25 is wrong.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch
from PIL import Image

from answerers import NEEDLE_READER, TINY_READER, KnownAnswer, frames_digest, reader_prompt
from resadapt_hf import load_video
from resadapt_hf.reader_task import SPLIT_SEEDS, reader_sample
from resadapt_hf.synthetic import NeedleTaskConfig, make_needle_sample

READER_EXAMPLE_INDEX = 3
"""The headline example: this sample of the reader task's held-out test split (seed ``SPLIT_SEEDS["test"]``, never
seen in training or model selection), chosen with ``python space/examples.py`` (:func:`candidate_examples`) through
the Space's own path (the H.264 clip decoded, the trained ``tiny-reader``, the page's default allocator): the reader
is right at native scale 1 and, with the learned allocator, at budgets 0.25 and 0.35, while FixedScale is wrong at
both and the prior at 0.25. It is typical, measured on the first 80 test samples: at 0.35 the learned allocator is
right on 80 (FixedScale 38, prior 68), at 0.25 on 68 (FixedScale 27, prior 56). At 0.25 the needle chunk cannot
keep its full 168 px (the other chunks keep their 4-token floor), so the finest stripes are lost whatever the
allocation. Re-check after every new set of weights."""
READER_SPLIT = "test"
READER_FPS = 24  # the frame rate transformers assumes for raw frames, which the reader was trained on: same M-RoPE times
# H.264 at CRF 4 (High profile, yuv420p: plays in every browser). The pattern is luma only (+-70 on every RGB
# channel), which yuv420p keeps at full resolution; decoded, every pixel is within a few levels of the original
READER_CRF = 4
NEEDLE_INDEX = 8
NEEDLE_FPS = 4  # 8 frames = a 2 s clip
# H.264 at CRF 10 (High profile, yuv420p): plays in every browser and keeps the digit; the reader is calibrated on
# uncompressed frames and reads the decoded ones (it is right on the same samples either way, checked at 0.25)
NEEDLE_CRF = 10
THUMB_HEIGHT = 56


@dataclass(frozen=True)
class Example:
    """One example: what it fills in, and its known answer (None when it has none)."""

    key: str
    title: str
    video: str | None
    image: str | None
    question: str
    budget: float
    num_frames: int
    known: KnownAnswer | None
    backbone: str | None = None  # the answerer that reads it on a CPU page (None: whichever is chosen)
    allocator: str | None = None  # the allocator it is shown with on a CPU page: "default" (the page's), "prior", ...

    def fields(self) -> list:
        """Values for the inputs (video, image, question, budget, frames sampled)."""
        return [self.video, self.image, self.question, self.budget, self.num_frames]


def write_clip(path: Path, frames: torch.Tensor, fps: int, crf: int) -> Path:
    """Encode uint8 [T, H, W, 3] frames as H.264 (libx264, yuv420p; one thread, so the file is byte-identical on
    every machine)."""
    import av

    height, width = frames.shape[1:3]
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"crf": str(crf), "preset": "medium", "threads": "1"}
        for t in range(frames.shape[0]):
            frame = av.VideoFrame.from_ndarray(frames[t].numpy(), format="rgb24")
            frame.pts = t
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def contact_sheet(frames: torch.Tensor, per_chunk: int = 2, height: int = THUMB_HEIGHT,
                  highlight: int | None = None) -> Image.Image:
    """The frames side by side at ``height`` px, with a wider gap between 2-frame chunks; frame ``highlight`` (if
    given) gets an orange underline."""
    pictures = [Image.fromarray(f.numpy()).resize((round(f.shape[1] * height / f.shape[0]), height), Image.BILINEAR)
                for f in frames]
    gaps = [0] + [8 if i % per_chunk == 0 else 2 for i in range(1, len(pictures))]
    mark = 4 if highlight is not None else 0
    sheet = Image.new("RGB", (sum(p.width for p in pictures) + sum(gaps), height + mark), "white")
    x = 0
    for t, (gap, picture) in enumerate(zip(gaps, pictures)):
        x += gap
        sheet.paste(picture, (x, 0))
        if t == highlight:
            sheet.paste((245, 158, 11), (x, height + 1, x + picture.width, height + mark))
        x += picture.width
    return sheet


def _png_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def reader_record(index: int = READER_EXAMPLE_INDEX) -> dict:
    """The reader-task record of a test-split sample (what the pattern example shows)."""
    return reader_sample(index, SPLIT_SEEDS[READER_SPLIT])


def write_reader_clip(path: Path, index: int = READER_EXAMPLE_INDEX) -> tuple[Path, dict, torch.Tensor]:
    """Encode test-split sample ``index`` as the Space's example clip: ``(path, record, decoded frames)``."""
    record = reader_record(index)
    path = write_clip(Path(path), record["frames"], READER_FPS, READER_CRF)
    return path, record, load_video(path).frames


def reader_known_answer(record: dict, decoded: torch.Tensor) -> KnownAnswer:
    """The known answer of a reader clip: its letter and option text, for exactly these decoded frames."""
    option = next(o for o in record["options"] if o.startswith(f"{record['answer']}."))
    return KnownAnswer(frames_digest(decoded), reader_prompt(), record["answer"], option)


def write_examples(folder: Path) -> tuple[list[Example], str]:
    """Write the example clips into ``folder``: ``(examples, HTML of the example card)``; the first example is the
    page's headline."""
    from resadapt_hf.sample_clips import write_demo_clip

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pattern_clip, record, pattern_frames = write_reader_clip(folder / "pattern_clip.mp4")
    pattern_known = reader_known_answer(record, pattern_frames)

    config = NeedleTaskConfig()
    sample = make_needle_sample(config, NEEDLE_INDEX)
    needle = write_clip(folder / "needle_clip.mp4", sample.frames, NEEDLE_FPS, NEEDLE_CRF)
    decoded = load_video(needle).frames
    question = f"{sample.question} " + "  ".join(sample.options)
    truth = f"{sample.answer}. {sample.glyph}"
    known = KnownAnswer(frames_digest(decoded), question, sample.answer, truth)
    texture = write_demo_clip(folder / "texture_text_clip.mp4", num_frames=16, height=240, width=320, fps=8)
    frames = config.num_frames
    reader_frames = pattern_frames.shape[0]
    examples = [
        Example("reader", "Pattern clip, budget 0.25", str(pattern_clip), None, reader_prompt(), 0.25, reader_frames,
                pattern_known, TINY_READER, "default"),
        Example("reader-035", "Pattern clip, budget 0.35", str(pattern_clip), None, reader_prompt(), 0.35,
                reader_frames, pattern_known, TINY_READER, "default"),
        Example("needle", "Needle clip, budget 0.25", str(needle), None, question, 0.25, frames, known, NEEDLE_READER,
                "prior"),
        Example("needle-tight", "Needle clip, budget 0.15", str(needle), None, question, 0.15, frames, known,
                NEEDLE_READER, "prior"),
        Example("texture", "Texture & text clip", str(texture), None,
                "What moves across the frames?", 0.25, 16, None),
    ]
    height, width = pattern_frames.shape[1:3]
    needle_frame = record["needle_frames"][0]
    sheet = contact_sheet(pattern_frames, highlight=needle_frame)
    card = (
        f'<div class="ra-example"><img class="ra-thumb" src="{_png_uri(sheet)}" '
        f'alt="the {reader_frames} frames of the pattern example clip; frame {needle_frame} is underlined">'
        '<div class="ra-example-text"><b>Example: a held-out pattern clip</b>. Which way do the fine stripes run? Known '
        f"answer: <b>{html.escape(pattern_known.text)}</b>. "
        f'<span class="ra-more">{reader_frames} frames of {width}×{height} px (test split, sample '
        f"{READER_EXAMPLE_INDEX}); frame {needle_frame} (underlined) holds a 56 px patch of "
        f"{html.escape(record['pattern'])} ({1 / record['frequency']:.1f} px per period), lost if that frame is shrunk "
        "too far. On CPU <b>tiny-reader</b> (a "
        "1.2M-parameter Qwen2.5-VL trained on this task) answers.</span></div></div>"
    )
    return examples, card


def candidate_examples(n: int = 64, start: int = 0, budget: float = 0.25, allocator: str | None = None, app=None,
                       verbose: bool = False) -> list[dict]:
    """Which test-split samples make a good headline example (for :data:`READER_EXAMPLE_INDEX`).

    Every sample ``start .. start + n - 1`` goes through the Space's own answerer path: encoded and decoded as the
    example clip, answered by ``tiny-reader`` at native scale 1 and at ``budget`` with the page's default allocator,
    with FixedScale and with the prior. Returns one dict per sample (index, pattern, frequency, needle frame, the letter
    each run named and whether it is right); ``candidate`` is True where native and the default allocator are right
    and FixedScale is wrong.

    Args:
        allocator: the allocator to check (``prior``, ``fixed`` or a learned repo / folder / preset); default: the
            page's default (``RESADAPT_ALLOCATOR``, else with ``tiny-reader``: ``tiny-reader-allocator``, the shipped
            learned one).
        app: a ``ResAdaptApp`` (default: a new one with the CPU defaults and ``tiny-reader``).
    """
    import tempfile

    if app is None:  # the CPU page's settings (RESADAPT_ALLOCATOR, if set, as on the page)
        import os

        import app as space_app

        app = space_app.ResAdaptApp(space_app.AppConfig(
            backbone=TINY_READER, device="cpu", preload=False, allocator=os.environ.get("RESADAPT_ALLOCATOR", "")))
    config = app.config
    allocator = allocator or config.allocator
    kind = allocator if allocator in ("prior", "fixed") else "learned"
    repo = "" if kind != "learned" else allocator
    rows = []
    with tempfile.TemporaryDirectory(prefix="resadapt-candidates-") as folder:
        for index in range(start, start + n):
            path, record, _ = write_reader_clip(Path(folder) / f"pattern_{index}.mp4", index)
            common = dict(image=None, question=reader_prompt(), max_visual_tokens=0, num_frames=record["frames"].shape[0],
                          backbone=TINY_READER, max_new_tokens=config.max_new_tokens, answer=True)
            result, _ = app.run(str(path), budget=budget, allocator=kind, allocator_repo=repo, compare=True, **common)
            runs = {run.key: run.reply.choice if run.reply else None for run in result.runs}
            if kind in ("prior", "fixed"):  # the chosen allocator is one of the baselines
                runs[kind] = runs["allocator"]
            if kind != "prior":
                prior, _ = app.run(str(path), budget=budget, allocator="prior", allocator_repo="", compare=False,
                                   **common)
                runs["prior"] = prior.main.reply.choice if prior.main.reply else None
            truth = record["answer"]
            row = {"index": index, "answer": truth, "pattern": record["pattern"],
                   "frequency": round(record["frequency"], 3),
                   "needle_frame": record["needle_frames"][0], "default_allocator": result.main.allocator,
                   **{f"{key}_choice": choice for key, choice in runs.items()},
                   **{f"{key}_right": choice == truth for key, choice in runs.items()}}
            row["candidate"] = row["native_right"] and row["allocator_right"] and not row["fixed_right"]
            rows.append(row)
            if verbose:
                print(_candidate_line(row), flush=True)
    return rows


def _candidate_line(row: dict) -> str:
    def mark(key: str) -> str:
        return f"{row.get(key + '_choice') or '-'}{'+' if row.get(key + '_right') else 'x'}"

    return (f"{row['index']:>5}  {row['answer']}  {row['pattern']:<24} f={row['frequency']:.2f}  frame {row['needle_frame']}  "
            f"native {mark('native')}  allocator {mark('allocator')}  prior {mark('prior')}  fixed {mark('fixed')}"
            f"{'   <- candidate' if row['candidate'] else ''}")


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="List test-split samples that make a good headline pattern example "
                                                 "(READER_EXAMPLE_INDEX): right at scale 1 and at the budget with the "
                                                 "default allocator, wrong with FixedScale.")
    parser.add_argument("--n", type=int, default=64, help="samples to check")
    parser.add_argument("--start", type=int, default=0, help="first sample index")
    parser.add_argument("--budget", type=float, default=0.25, help="budget (target retention)")
    parser.add_argument("--allocator", default=None,
                        help="prior | fixed | a learned repo / folder / preset (default: the page's default, "
                             "tiny-reader-allocator)")
    args = parser.parse_args(argv)
    print("index, truth, pattern, frequency, needle frame; the letter each run named (+ right, x wrong): native scale 1, "
          f"then at budget {args.budget:g} the allocator checked, the prior and FixedScale")
    rows = candidate_examples(args.n, args.start, args.budget, args.allocator, verbose=True)
    found = [r["index"] for r in rows if r["candidate"]]
    print(f"allocator checked: {rows[0]['default_allocator']}")
    for key in ("native", "allocator", "prior", "fixed"):
        if f"{key}_right" in rows[0]:
            print(f"  {key:<9} right on {sum(r[key + '_right'] for r in rows)}/{len(rows)}")
    print(f"candidates for READER_EXAMPLE_INDEX (now {READER_EXAMPLE_INDEX}): {found or 'none'}")
    return 0


__all__ = ["Example", "NEEDLE_INDEX", "READER_EXAMPLE_INDEX", "candidate_examples", "contact_sheet", "reader_record",
           "write_clip", "write_examples", "write_reader_clip"]


if __name__ == "__main__":  # python space/examples.py [--n 64] [--start 0] [--budget 0.25]
    raise SystemExit(main())
