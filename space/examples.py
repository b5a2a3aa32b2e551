"""The Space's examples, generated at startup (a few hundred KB, deterministic):

* the **needle clip**: sample ``NEEDLE_INDEX`` of the synthetic needle task (``resadapt_hf.synthetic``, default
  ``NeedleTaskConfig``: 8 frames of 128 x 128 px, one shows a digit), with its multiple-choice question and known
  answer, at budget 0.25 and at the tighter 0.15;
* a 2 s **texture and text clip** (``resadapt_hf.sample_clips``) with a free question and no known answer.

Why sample 8: on it, at budget 0.25, the reader is right with the prior allocator, with FixedScale (the prior's
scales are nearly uniform on this task, so both get the same chunk sizes) and at native scale 1; at 0.15 both
budgeted runs are wrong and native is still right, so the side by side shows right and wrong answers. Over the
first 256 samples (uncompressed frames) the reader is right on 64% at 0.25 with either allocator and on 95% at
native scale.
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

from answerers import KnownAnswer, frames_digest
from resadapt_hf import load_video
from resadapt_hf.synthetic import NeedleTaskConfig, make_needle_sample

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


def contact_sheet(frames: torch.Tensor, per_chunk: int = 2, height: int = THUMB_HEIGHT) -> Image.Image:
    """The frames side by side at ``height`` px, with a wider gap between 2-frame chunks."""
    pictures = [Image.fromarray(f.numpy()).resize((round(f.shape[1] * height / f.shape[0]), height), Image.BILINEAR)
                for f in frames]
    gaps = [0] + [8 if i % per_chunk == 0 else 2 for i in range(1, len(pictures))]
    sheet = Image.new("RGB", (sum(p.width for p in pictures) + sum(gaps), height), "white")
    x = 0
    for gap, picture in zip(gaps, pictures):
        x += gap
        sheet.paste(picture, (x, 0))
        x += picture.width
    return sheet


def _png_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def write_examples(folder: Path) -> tuple[list[Example], str]:
    """Write the example clips into ``folder``: ``(examples, HTML of the example card)``; the first example is the
    page's headline."""
    from resadapt_hf.sample_clips import write_demo_clip

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = NeedleTaskConfig()
    sample = make_needle_sample(config, NEEDLE_INDEX)
    needle = write_clip(folder / "needle_clip.mp4", sample.frames, NEEDLE_FPS, NEEDLE_CRF)
    decoded = load_video(needle).frames
    question = f"{sample.question} " + "  ".join(sample.options)
    truth = f"{sample.answer}. {sample.glyph}"
    known = KnownAnswer(frames_digest(decoded), question, sample.answer, truth)
    texture = write_demo_clip(folder / "texture_text_clip.mp4", num_frames=16, height=240, width=320, fps=8)
    frames = config.num_frames
    examples = [
        Example("needle", "Needle clip, budget 0.25", str(needle), None, question, 0.25, frames, known),
        Example("needle-tight", "Needle clip, budget 0.15", str(needle), None, question, 0.15, frames, known),
        Example("texture", "Texture & text clip", str(texture), None,
                "What moves across the frames?", 0.25, 16, None),
    ]
    height, width = config.source_size
    card = (
        f'<div class="ra-example"><img class="ra-thumb" src="{_png_uri(contact_sheet(decoded))}" '
        f'alt="the {frames} frames of the needle example clip"><div class="ra-example-text"><b>Example: a generated '
        f"needle clip</b>. Which digit appears? Known answer: <b>{html.escape(truth)}</b>. "
        f'<span class="ra-more">{frames} frames of {width}×{height} px, frame {sample.needle_frames[0]} shows the digit; '
        "on CPU the <b>calibrated needle reader, not a language model</b>, answers from the pixels the ResAdapt "
        "resize produced.</span></div></div>"
    )
    return examples, card


__all__ = ["Example", "NEEDLE_INDEX", "contact_sheet", "write_clip", "write_examples"]
