"""What the Space shows for one request, as pure functions of a :class:`Result`: the JSON of the API, the headline,
the side-by-side table, plain-words notes and the allocation view (a per-chunk scale chart and every frame drawn at
its true relative size, grouped by 2-frame chunk).

Everything here is HTML/CSS the page renders as is (no plotting library): it reflows on a phone, its text is real
text (searchable, testable), and user text is escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from answerers import KnownAnswer, Reply
from resadapt_hf import Allocation
from resadapt_hf.processing.allocation import MediaAllocation

MAX_FRAME_PX = 140  # widest frame on the page: two frames of a chunk side by side fit a 390 px phone
MAX_ZOOM = 3.0  # small frames (the needle task's 16-112 px) are enlarged by at most this, pixels kept visible
ASPECT_TOLERANCE = 1.1  # grid rounding that changes a frame's width/height ratio by more than 10% gets a note
RIGHT, WRONG, NONE = "✓ right", "✗ wrong", "—"
# longest answer text shown in the headline / a side-by-side cell (the Answer box and the JSON hold all of it): a
# language model's free text must not push the table and the Answer box below the fold (on a wide screen a cell
# also keeps to one line, cut with an ellipsis; the whole answer shows on hover)
HEADLINE_ANSWER_CHARS, TABLE_ANSWER_CHARS = 80, 48


@dataclass
class Run:
    """One allocation of the side-by-side (and its answer, when answers were generated)."""

    key: str  # "allocator" (the chosen one), "fixed" or "native"
    label: str  # shown in the table
    allocator: str  # the allocator's description
    allocation: Allocation
    reply: Reply | None = None
    correct: bool | None = None


@dataclass
class Result:
    """One request's outcome: the chosen allocator's run first, then the baselines."""

    backbone: str
    description: str  # what the answerer is ("1.2M-parameter Qwen2.5-VL trained on the pattern task...", ...)
    question: str
    budget: float
    cap: int | None
    runs: list[Run]
    source_sizes: list[tuple[int, int]]  # (height, width) of each input medium as decoded
    min_scale: float
    max_scale: float
    known: KnownAnswer | None = None
    notes: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def main(self) -> Run:
        return self.runs[0]

    def run(self, key: str) -> Run | None:
        return next((r for r in self.runs if r.key == key), None)


# ------------------------------------------------------------------------------------------------ chunk geometry


def chunk_frames(media: MediaAllocation, first_frame: int = 0) -> list[list[int]]:
    """Frame numbers (into the flat frame list, from ``first_frame``) of each chunk of one medium. A video's
    chunks hold ``ceil(frames / chunks)`` frames (the last one may hold fewer: the backbone repeats its last frame)."""
    frames, chunks = len(media.scales), len(media.chunk_sizes)
    per_chunk = max(1, math.ceil(frames / chunks))
    return [list(range(first_frame + c * per_chunk, first_frame + min(frames, (c + 1) * per_chunk)))
            for c in range(chunks)]


def chunk_table(allocation: Allocation) -> list[dict]:
    """One row per chunk over all media in prompt order: medium, frames, mean (operator) scale, size, tokens and
    the effective scale the grid gave (sqrt of its area over the scale-1 area)."""
    rows, first = [], 0
    for m, media in enumerate(allocation.media):
        tokens_per_pixel = media.baseline_visual_tokens / (len(media.chunk_sizes) * media.base_size[0] * media.base_size[1])
        for frames, (height, width) in zip(chunk_frames(media, first), media.chunk_sizes):
            scales = [allocation.scales[f] for f in frames]
            rows.append(dict(
                media=m, kind=media.kind, frames=frames, scale=sum(scales) / len(scales), height=height, width=width,
                visual_tokens=round(height * width * tokens_per_pixel),
                effective_scale=math.sqrt(height * width / (media.base_size[0] * media.base_size[1])),
                base_size=tuple(media.base_size),
                timestamps=[allocation.timestamps[f] if f < len(allocation.timestamps) else None for f in frames],
                source_frames=[allocation.frame_indices[f] for f in frames],
            ))
        first += len(media.scales)
    return rows


# ---------------------------------------------------------------------------------------------------------- JSON


def _run_json(run: Run, budget: float | None) -> dict:
    a = run.allocation
    answered = run.reply is not None and run.reply.answered
    return {
        "run": run.label, "allocator": run.allocator, "requested_retention": budget,
        "achieved_retention": a.retention, "visual_tokens": a.visual_tokens,
        "chunk_sizes": [list(s) for s in a.chunk_sizes],
        "answer": run.reply.text if answered else None, "correct": run.correct,
    }


def result_json(result: Result) -> dict:
    """The API's JSON: one key per fact (schema in ``space/README.md``)."""
    main, a = result.main, result.main.allocation
    rows = chunk_table(a)
    answered = main.reply is not None and main.reply.answered
    return {
        "backbone": result.backbone,
        "answerer": result.description,
        "allocator": main.allocator,
        "question": result.question,
        "requested_retention": result.budget,
        "achieved_retention": a.retention,
        "budget_reached": a.budget_reached,
        "max_visual_tokens": result.cap,
        "visual_tokens": a.visual_tokens,
        "baseline_visual_tokens": a.baseline_visual_tokens,
        "scales": list(a.scales),
        "frame_indices": list(a.frame_indices),
        "timestamps": list(a.timestamps),
        "chunk_frames": [r["frames"] for r in rows],
        "chunk_scales": [r["scale"] for r in rows],
        "chunk_sizes": [[r["height"], r["width"]] for r in rows],
        "chunk_visual_tokens": [r["visual_tokens"] for r in rows],
        "media": [
            {"kind": m.kind, "source_size": list(size), "base_size": list(m.base_size), "num_frames": len(m.scales),
             "num_chunks": len(m.chunk_sizes)}
            for m, size in zip(a.media, result.source_sizes)
        ],
        "answer": main.reply.text if answered else None,
        "answer_explanation": main.reply.explanation if answered else None,
        "correct": main.correct,
        "known_answer": result.known.text if result.known else None,
        "comparison": [_run_json(r, None if r.key == "native" else result.budget) for r in result.runs[1:]],
        "notes": list(result.notes),
        "timings_ms": {k: round(v, 2) for k, v in result.timings_ms.items()},
    }


# ------------------------------------------------------------------------------------------------------- notes


def budget_note(result: Result, reachable: tuple[float, float]) -> str | None:
    """Plain words for a budget the allocation could not meet (None when it was met)."""
    a = result.main.allocation
    if a.budget_reached is not False:
        return None
    low, high = reachable
    budget, achieved = result.budget, a.retention
    if low >= 1 - 1e-9:
        return (f"Budget {budget:g} is out of reach: at scale 1 this input is already at the backbone's smallest "
                f"size, so no scale down to {result.min_scale:g} removes a token (retention stays {achieved:.3f}). "
                "Shrinking frames saves nothing here.")
    if budget < low:
        return (f"Budget {budget:g} is out of reach: even with every frame at the smallest scale "
                f"({result.min_scale:g}) this input keeps {low:.3f} of its tokens (every chunk keeps a minimum "
                f"number of tokens). The closest value, {achieved:.3f}, was used.")
    if budget > high:
        return (f"Budget {budget:g} is out of reach: with every frame at the largest scale ({result.max_scale:g}) "
                f"this input uses at most {high:.3f} of its native tokens. The closest value, {achieved:.3f}, was used.")
    if result.cap is not None and a.visual_tokens <= result.cap < budget * a.baseline_visual_tokens:
        return f"The cap of {result.cap} visual tokens holds this input to a retention of {achieved:.3f}."
    return (f"Budget {budget:g} falls between two chunk sizes (sizes move in whole patches), so {achieved:.3f} is the "
            "closest this input allows.")


def aspect_notes(result: Result) -> list[str]:
    """A note per medium whose chunks lose their shape to grid rounding (e.g. 480×270 frames drawn 56×56)."""
    notes = []
    rows = chunk_table(result.main.allocation)
    for m, (height, width) in enumerate(result.source_sizes):
        changed: dict[tuple[int, int], list[int]] = {}
        for c, row in enumerate(rows):
            ratio = (row["width"] / row["height"]) / (width / height)
            if row["media"] == m and abs(math.log(ratio)) > math.log(ASPECT_TOLERANCE):
                changed.setdefault((row["width"], row["height"]), []).append(c)
        for (w, h), chunks in changed.items():
            shape = "wider" if w / h > width / height else "narrower"
            where = "every chunk" if len(chunks) == len([r for r in rows if r["media"] == m]) else (
                "chunk " + ", ".join(str(c) for c in chunks))
            notes.append(f"Grid rounding changes the shape: the {width}×{height} px frames become {w}×{h} px in "
                         f"{where} (sizes are whole patches of the backbone's grid), so they look {shape} than "
                         "the clip.")
    return notes


def same_as_fixed_note(result: Result) -> str | None:
    fixed = result.run("fixed")
    if fixed is None or result.main.key == "fixed" or fixed.allocation.chunk_sizes != result.main.allocation.chunk_sizes:
        return None
    return (f"The {result.main.label.lower()} and FixedScale give every chunk the same size here (the allocator's "
            "scales are nearly uniform on this input), so both read the same pixels.")


# ------------------------------------------------------------------------------------------------------ HTML parts


def clip_text(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis when longer."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def breakable_html(text: str, longest: int = 12) -> str:
    """``text`` escaped for HTML, with zero-width spaces (line-break opportunities that, unlike ``<wbr>``, a
    one-line ``white-space: nowrap`` cell ignores) inside words longer than ``longest`` characters: a narrow table
    column wraps such noise instead of widening, and ordinary words stay whole."""
    words = []
    for word in str(text).split(" "):
        if len(word) <= longest:
            words.append(html.escape(word))
        else:
            words.append("&#8203;".join(html.escape(word[i : i + 8]) for i in range(0, len(word), 8)))
    return " ".join(words)


def _verdict(correct: bool | None) -> str:
    return RIGHT if correct else (WRONG if correct is False else NONE)


def saved_text(kept: int, baseline: int) -> str:
    """``"kept 120 of 480 visual tokens (75% saved)"``, or how many more a budget above 1 used."""
    if baseline <= 0:
        return f"used {kept} visual tokens"
    if kept <= baseline:
        return f"kept {kept} of {baseline} visual tokens ({(1 - kept / baseline) * 100:.0f}% saved)"
    return f"used {kept} visual tokens, {(kept / baseline - 1) * 100:.0f}% more than the {baseline} at native size"


def headline_html(result: Result) -> str:
    main, a = result.main, result.main.allocation
    big = saved_text(a.visual_tokens, a.baseline_visual_tokens)
    sub = (f"Budget {result.budget:g} → achieved {a.retention:.3f} · {html.escape(main.label)} · answered by "
           f"<b>{html.escape(result.backbone)}</b> ({html.escape(result.description)})")
    reply = main.reply
    if reply is None:
        answer = '<div class="ra-verdict">Allocation only: no answer generated.</div>'
    elif not reply.answered:
        answer = f'<div class="ra-verdict">{html.escape(reply.text)}</div>'
    else:
        known = f" (known answer {html.escape(result.known.text)})" if result.known and main.correct is False else ""
        css = {True: "ra-right", False: "ra-wrong"}.get(main.correct, "")
        mark = f" <span class='{css}'>{_verdict(main.correct)}</span>" if main.correct is not None else ""
        answer = (f'<div class="ra-verdict">Answer: <b>{html.escape(clip_text(reply.text, HEADLINE_ANSWER_CHARS))}'
                  f'</b>{mark}{known}</div>')
    return (f'<div class="ra-headline"><div class="ra-big">{big[0].upper() + big[1:]}</div>'
            f'<div class="ra-sub">{sub}</div>{answer}</div>')


def side_by_side_html(result: Result) -> str:
    """The same input and budget through the chosen allocator, FixedScale and native scale 1, in a table that
    scrolls sideways inside its own box on a narrow screen."""
    rows = []
    for run in result.runs:
        a = run.allocation
        reply = run.reply
        answered = reply is not None and reply.answered
        answer = NONE if reply is None else (
            breakable_html(clip_text(reply.text, TABLE_ANSWER_CHARS)) if answered else "no answer")
        cut = answered and clip_text(reply.text, TABLE_ANSWER_CHARS) != reply.text
        full = f" title='{html.escape(reply.text, quote=True)}'" if cut else ""  # the whole answer on hover
        css = {True: "ra-right", False: "ra-wrong"}.get(run.correct, "")
        rows.append(
            f"<tr class='ra-run-{run.key}'><th scope='row'>{html.escape(run.label)}</th>"
            f"<td>{a.visual_tokens} / {a.baseline_visual_tokens} ({a.retention * 100:.0f}%)</td>"
            f"<td class='ra-answer'{full}><span>{answer}</span></td><td class='{css}'>{_verdict(run.correct)}</td></tr>"
        )
    if result.known is not None:
        caption = f"Same clip and budget; graded against the example's known answer, {html.escape(result.known.text)}."
    else:
        caption = "Same input and budget. No known answer for this input (the pattern and needle examples have one)."
    return (
        f'<div class="ra-scroll"><table class="ra-table"><caption>{caption}</caption><thead><tr><th scope="col">Run'
        '</th><th scope="col">Visual tokens</th><th scope="col">Answer</th><th scope="col">Right?</th></tr>'
        f'</thead><tbody>{"".join(rows)}</tbody></table></div>'
    )


def notes_html(result: Result) -> str:
    runs = f" ({len(result.runs)} runs)" if len(result.runs) > 1 else ""
    timing = " · ".join(f"{name}{runs if name == 'answers' else ''} {ms:.0f} ms" for name, ms in result.timings_ms.items())
    items = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    notes = f'<ul class="ra-notes">{items}</ul>' if items else ""
    return f'{notes}<div class="ra-timing">{html.escape(timing)}</div>'


def _data_uri(picture: np.ndarray) -> str:
    image = Image.fromarray(picture)
    buffer = io.BytesIO()
    if picture.shape[0] * picture.shape[1] <= 160 * 160:
        image.save(buffer, format="PNG")  # small frames: exact pixels
        kind = "png"
    else:
        image.save(buffer, format="JPEG", quality=85)
        kind = "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def chunk_pictures(sources: Sequence[torch.Tensor], allocation: Allocation) -> list[list[np.ndarray]]:
    """Every frame at its chunk's allocated size, one list per chunk (media in prompt order).

    ``sources`` holds each medium's decoded frames, uint8 [T, H, W, 3]. The resize is the ResAdapt operator's
    (torchvision bilinear, antialiased, as ``resadapt_hf.synthetic.resize_frames`` and the processor use), so
    the needle reader's chunks are drawn with exactly the pixels it read."""
    pictures = []
    for frames, media in zip(sources, allocation.media):
        for members, size in zip(chunk_frames(media), media.chunk_sizes):
            chunk = frames[members[0] : members[-1] + 1].permute(0, 3, 1, 2)
            if tuple(chunk.shape[-2:]) != tuple(size):
                chunk = TF.resize(chunk.contiguous(), list(size), interpolation=InterpolationMode.BILINEAR,
                                  antialias=True)
            pictures.append([f.permute(1, 2, 0).contiguous().numpy() for f in chunk])
    return pictures


def display_zoom(rows: list[dict]) -> float:
    """One zoom for every frame (so relative sizes stay true): the widest frame or scale-1 box fits MAX_FRAME_PX."""
    widest = max(max(r["width"], r["base_size"][1]) for r in rows)
    tallest = max(max(r["height"], r["base_size"][0]) for r in rows)
    return min(MAX_ZOOM, MAX_FRAME_PX / widest, MAX_FRAME_PX / tallest)


def _frames_text(frames: list[int]) -> str:
    return f"frame {frames[0]}" if len(frames) == 1 else f"frames {frames[0]}–{frames[-1]}"


def chart_html(result: Result) -> str:
    """Horizontal bars: the effective scale of every chunk (resizing is per chunk), with lines at scale 1 and at
    the budget spread evenly over the frames (scale sqrt(budget))."""
    rows = chunk_table(result.main.allocation)
    top = max(result.max_scale, max(r["effective_scale"] for r in rows), math.sqrt(result.budget))

    def pos(value: float) -> str:
        return f"{min(value / top, 1.0) * 100:.2f}%"

    even = math.sqrt(result.budget)
    lines = (f'<i class="ra-ref ra-ref-one" style="left:{pos(1.0)}"></i>'
             f'<i class="ra-ref ra-ref-budget" style="left:{pos(even)}"></i>')
    bars = []
    for c, r in enumerate(rows):
        label = "image" if r["kind"] == "image" else f"c{c} · f{r['frames'][0]}" + (
            f"–{r['frames'][-1]}" if len(r["frames"]) > 1 else "")
        bars.append(
            f'<div class="ra-row"><span class="ra-rlab">{label}</span><div class="ra-track">'
            f'<div class="ra-bar" style="width:{pos(r["effective_scale"])}"></div>{lines}</div>'
            f'<span class="ra-val">{r["effective_scale"]:.2f}</span></div>'
        )
    ticks = "".join(f'<span style="left:{pos(t)}">{t:g}</span>' for t in (0, 0.5, 1.0, 1.5, 2.0, 2.5) if t <= top)
    return (
        '<figure class="ra-chart" aria-label="Effective scale per chunk">'
        '<figcaption class="ra-chart-title">Effective scale per chunk (frames are resized per 2-frame chunk)'
        '</figcaption><div class="ra-row ra-head"><span class="ra-rlab">chunk · frames</span><span></span>'
        f'<span class="ra-val">scale</span></div>{"".join(bars)}'
        f'<div class="ra-row ra-axis"><span></span><div class="ra-ticks">{ticks}</div><span></span></div>'
        '<div class="ra-axis-title">scale of each side (1 = the backbone\'s own size)</div>'
        '<div class="ra-legend"><span class="ra-key ra-key-one"></span>scale 1 (native) '
        f'<span class="ra-key ra-key-budget"></span>budget {result.budget:g} spread evenly (scale {even:.2f})</div>'
        "</figure>"
    )


def frames_html(result: Result, pictures: list[list[np.ndarray]]) -> str:
    """Frames grouped by chunk, each drawn at its true relative size in a dashed box of its scale-1 size, with a
    caption per chunk (size, tokens, scale) and per frame (source frame, time, scale)."""
    a = result.main.allocation
    rows = chunk_table(a)
    zoom = display_zoom(rows)
    figures = []
    for c, (r, chunk) in enumerate(zip(rows, pictures)):
        base_h, base_w = r["base_size"]
        frames = []
        for k, (f, picture) in enumerate(zip(r["frames"], chunk)):
            box_w, box_h = max(r["width"], base_w) * zoom, max(r["height"], base_h) * zoom
            time_text = "" if r["timestamps"][k] is None or r["kind"] == "image" else f" · {r['timestamps'][k]:.2f} s"
            frames.append(
                f'<div class="ra-frame"><div class="ra-box" style="width:{box_w:.0f}px;height:{box_h:.0f}px">'
                f'<span class="ra-native" style="width:{base_w * zoom:.0f}px;height:{base_h * zoom:.0f}px"></span>'
                f'<img src="{_data_uri(picture)}" width="{r["width"] * zoom:.0f}" height="{r["height"] * zoom:.0f}" '
                f'alt="frame {f} at {r["width"]}×{r["height"]} px"></div>'
                f'<div class="ra-fcap">frame {f} · source #{r["source_frames"][k]}{time_text} · '
                f's={a.scales[f]:.2f}</div></div>'
            )
        if r["kind"] == "video" and len(chunk) == 1:
            frames.append('<div class="ra-fcap">(last frame repeated by the backbone)</div>')
        title = "Image" if r["kind"] == "image" else f"Chunk {c} · {_frames_text(r['frames'])}"
        figures.append(
            f'<figure class="ra-chunk" data-chunk="{c}"><figcaption><b>{title}</b> · {r["width"]}×{r["height"]} px · '
            f'{r["visual_tokens"]} tokens · scale {r["effective_scale"]:.2f} (asked {r["scale"]:.2f})</figcaption>'
            f'<div class="ra-frames">{"".join(frames)}</div></figure>'
        )
    legend = (f"Every frame at its true relative size (all ×{zoom:.2g} on screen); the dashed box is its scale-1 "
              "size. Both frames of a chunk share one size.")
    return f'<div class="ra-legend-top">{legend}</div><div class="ra-chunks">{"".join(figures)}</div>'


def allocation_html(result: Result, pictures: list[list[np.ndarray]]) -> str:
    return f'<div class="ra-alloc">{chart_html(result)}{frames_html(result, pictures)}</div>'


# The page's styles (passed to launch(css=...)); class names start with ra- to stay clear of Gradio's.
CSS = """
.ra-header h1 { font-size: clamp(1.3rem, 4.5vw, 1.9rem); margin: 0 0 4px 0; }
.ra-header .ra-lead { font-size: 0.95rem; }
.ra-links a { margin-left: 0.8em; white-space: nowrap; }
.ra-example { display: flex; flex-direction: column; gap: 4px; margin-top: 10px; }
.ra-thumb { max-width: 100%; height: auto; align-self: flex-start; }
.ra-example-text { font-size: 0.88rem; }
.ra-headline { padding: 2px 2px 6px 2px; }
.ra-big { font-size: 1.45rem; font-weight: 700; line-height: 1.25; }
.ra-sub { font-size: 0.88rem; opacity: 0.8; margin-top: 2px; overflow-wrap: anywhere; }
.ra-verdict { font-size: 1.1rem; margin-top: 6px; overflow-wrap: anywhere; }
.ra-right { color: #15803d; font-weight: 700; white-space: nowrap; }
.ra-wrong { color: #b91c1c; font-weight: 700; white-space: nowrap; }
.ra-scroll { overflow-x: auto; max-width: 100%; }
#side-by-side .ra-table { border-collapse: collapse; width: 100%; font-size: 0.92rem; margin: 0; border: none; }
#side-by-side .ra-table caption { caption-side: bottom; text-align: left; font-size: 0.8rem; opacity: 0.75;
  padding-top: 4px; }
#side-by-side .ra-table th, #side-by-side .ra-table td { padding: 4px 8px; border: none;
  border-bottom: 1px solid rgba(128,128,128,0.3); text-align: left; white-space: nowrap; }
#side-by-side .ra-table td.ra-answer { white-space: normal; min-width: 3em; overflow-wrap: break-word; }
#side-by-side .ra-table, #side-by-side .ra-table thead, #side-by-side .ra-table tbody,
#side-by-side .ra-table tr { border: none !important; }
#side-by-side .ra-table td:last-child { white-space: nowrap !important; }
.ra-run-allocator th, .ra-run-allocator td { font-weight: 700; }
.ra-notes { margin: 4px 0 0 1.1em; padding: 0; font-size: 0.88rem; }
.ra-timing { font-size: 0.78rem; opacity: 0.65; margin-top: 4px; }
.ra-chart { margin: 0 0 12px 0; font-size: 0.85rem; }
.ra-chart-title { font-weight: 600; margin-bottom: 4px; }
.ra-row { display: grid; grid-template-columns: 6.8em minmax(0, 1fr) 3em; align-items: center; gap: 6px;
  min-height: 20px; }
.ra-head { font-size: 0.78rem; opacity: 0.75; }
.ra-track { position: relative; height: 14px; background: rgba(128,128,128,0.12); }
.ra-bar { position: absolute; left: 0; top: 0; bottom: 0; background: #4f46e5; }
.ra-ref { position: absolute; top: -3px; bottom: -3px; width: 0; }
.ra-ref-one { border-left: 2px solid #111827; }
.ra-ref-budget { border-left: 2px dashed #f59e0b; }
.ra-ticks { position: relative; height: 1.2em; font-size: 0.75rem; }
.ra-ticks span { position: absolute; transform: translateX(-50%); }
.ra-axis-title { text-align: center; font-size: 0.8rem; opacity: 0.8; }
.ra-legend, .ra-legend-top { font-size: 0.78rem; opacity: 0.8; margin: 4px 0; }
.ra-key { display: inline-block; width: 14px; height: 0; vertical-align: middle; margin: 0 4px 0 8px; }
.ra-key-one { border-top: 2px solid #111827; }
.ra-key-budget { border-top: 2px dashed #f59e0b; }
.ra-chunks { display: flex; flex-wrap: wrap; gap: 10px; }
.ra-chunk { margin: 0; padding: 6px; border: 1px solid rgba(128,128,128,0.35); border-radius: 6px; max-width: 100%; }
.ra-chunk figcaption { font-size: 0.78rem; margin-bottom: 4px; max-width: 300px; }
.ra-frames { display: flex; flex-wrap: wrap; gap: 6px; align-items: flex-start; }
.ra-frame { display: flex; flex-direction: column; }
.ra-box { position: relative; }
.ra-native { position: absolute; left: 0; top: 0; border: 1px dashed rgba(128,128,128,0.9); box-sizing: border-box; }
.ra-box img { position: absolute; left: 0; top: 0; image-rendering: pixelated; max-width: none; }
.ra-fcap { font-size: 0.72rem; opacity: 0.8; max-width: 140px; }
#inputs-col { min-width: min(300px, 100%) !important; }
#results-col { min-width: min(340px, 100%) !important; }
@media (min-width: 768px) {
  #inputs-col { order: -1; }
  #side-by-side .ra-table td.ra-answer span { display: block; max-width: 13em; white-space: nowrap; overflow: hidden;
    text-overflow: ellipsis; }
}
@media (max-width: 767px) {
  .ra-more, #examples-title { display: none; }
  #side-by-side .ra-table th, #side-by-side .ra-table td { white-space: normal; padding: 4px 4px; }
  #example-buttons { flex-direction: row !important; flex-wrap: wrap; gap: 6px; }
  #example-buttons button { flex: 1 1 40%; min-width: 0; }
}
"""

# Raw <head> styles: Gradio scopes launch(css=...) under its content column, so the page padding outside it (32 px a
# side, a sixth of a phone's width) can only be narrowed from here.
HEAD = """<style>
@media (max-width: 767px) { .gradio-container .main.app { padding-left: 6px !important; padding-right: 6px !important; } }
</style>"""
