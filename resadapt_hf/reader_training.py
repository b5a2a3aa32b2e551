"""Training glue for the tiny reader (``resadapt_hf.tiny_reader``): tokenised prompt + completion batches through the
ResAdapt processor, teacher-forced letter accuracy, and the per-chunk scale draws the reader is trained on. Used by
``scripts/train_reader.py`` and ``benchmarks/reader_positions.py``."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .processing.processing_resadapt import ResAdaptProcessor
from .reader_task import LETTERS, ReaderTaskConfig
from .rollout import BackboneRollout
from .tiny_reader import reader_completion

__all__ = [
    "ReaderBatches",
    "chunk_scales",
    "chunk_token_grids",
    "draw_scales",
    "predicted_letters",
    "teacher_forced_accuracy",
    "token_labels",
]


def chunk_scales(values: list[float], num_frames: int) -> list[float]:
    """Per-frame scales from one value per 2-frame chunk."""
    return [float(values[i // 2]) for i in range(num_frames)]


def draw_scales(rng: np.random.Generator, needle: int, num_frames: int) -> list[float]:
    """A training allocation (one value per 2-frame chunk, in [0.2, 1.8] like an Allocator's): everything at scale 1
    (25%), the needle chunk anywhere in [0.5, 1.8] with the others in [0.2, 1] (35%), one uniform scale (20%), or
    independent per chunk (20%). The needle chunk's size is spread over every size that keeps the stripes of some
    videos, so the reader learns to read whatever survives a resize (and guesses when nothing does)."""
    chunks = num_frames // 2
    kind = rng.random()
    if kind < 0.25:
        values = [1.0] * chunks
    elif kind < 0.6:
        values = [float(v) for v in rng.uniform(0.2, 1.0, chunks)]
        values[needle // 2] = float(rng.uniform(0.5, 1.8))
    elif kind < 0.8:
        values = [float(rng.uniform(0.2, 1.8))] * chunks
    else:
        values = [float(v) for v in rng.uniform(0.2, 1.8, chunks)]
    return chunk_scales(values, num_frames)


class ReaderBatches:
    """Tokenised training batches: prompt + completion through the ResAdapt processor, labels on the completion."""

    def __init__(self, rollout: BackboneRollout, processor: ResAdaptProcessor):
        self.rollout, self.processor = rollout, processor
        tok = processor.tokenizer
        self.end_id = tok.convert_tokens_to_ids("<|im_end|>")
        self.completions = {
            letter: tok(reader_completion(letter), add_special_tokens=False)["input_ids"] + [self.end_id]
            for letter in LETTERS
        }
        lengths = {len(ids) for ids in self.completions.values()}
        if len(lengths) != 1:
            raise RuntimeError(f"completions must have one length for left-padded batches, got {lengths}")
        self.completion_length = lengths.pop()
        self.letter_offset = self.completions["A"].index(tok.convert_tokens_to_ids("A"))

    def encode(self, records: list[dict], scales: list[list[float]]):
        prompts = [self.rollout.prompt(r) for r in records]
        # a record's decoded clip (which carries a frame rate, hence temporal positions) when it has one
        videos = [r["clip"] if r.get("clip") is not None else r["frames"] for r in records]
        inputs = self.processor(text=prompts, videos=videos, scales=scales, padding=True,
                                padding_side="left", return_tensors="pt")
        target = torch.tensor([self.completions[r["answer"]] for r in records])
        # append the completion after the left-padded prompts (every row ends at the same position)
        length = inputs["input_ids"].shape[1]
        extra = {"input_ids": target, "attention_mask": torch.ones_like(target),
                 "mm_token_type_ids": torch.zeros_like(target)}
        for key, value in extra.items():
            if key in inputs:
                if inputs[key].shape[1] != length:
                    raise RuntimeError(f"{key} has {inputs[key].shape[1]} positions, input_ids {length}")
                inputs[key] = torch.cat([inputs[key], value], 1)
        return inputs, target

    def loss_and_letters(self, model, inputs, target):
        """Summed completion cross-entropy per video (mean over videos), and the predicted letter token ids."""
        logits = model(**inputs).logits[:, -self.completion_length - 1 : -1]
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="sum") / target.shape[0]
        return loss, logits[:, self.letter_offset].argmax(-1), target[:, self.letter_offset]

    def train_step(self, model, optimizer, records: list[dict], scales: list[list[float]], max_grad_norm: float = 1.0):
        """One optimiser step on ``records`` at ``scales`` (gradient norm clipped); returns ``loss_and_letters``."""
        inputs, target = self.encode(records, scales)
        loss, predicted, truth = self.loss_and_letters(model, inputs, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        return loss, predicted, truth


@torch.no_grad()
def predicted_letters(model, batches: ReaderBatches, records, scales, batch_size: int = 32) -> tuple[list[str], int]:
    """Teacher-forced: the answer letter the model gives each record at its ``scales`` row, and the visual tokens
    all of them used."""
    model.eval()
    letters, tokens = [], 0
    video_id = model.config.video_token_id
    for start in range(0, len(records), batch_size):
        inputs, target = batches.encode(records[start : start + batch_size], scales[start : start + batch_size])
        tokens += int((inputs["input_ids"] == video_id).sum())
        _, predicted, _ = batches.loss_and_letters(model, inputs, target)
        letters += batches.processor.tokenizer.convert_ids_to_tokens(predicted.tolist())
    model.train()
    return letters, tokens


def teacher_forced_accuracy(model, batches: ReaderBatches, records, scale_fn, batch_size=32) -> tuple[float, float]:
    """Teacher-forced letter accuracy and mean visual tokens of ``records`` at ``scale_fn(record)``."""
    letters, tokens = predicted_letters(model, batches, records, [scale_fn(r) for r in records], batch_size)
    return sum(a == r["answer"] for a, r in zip(letters, records)) / len(records), tokens / len(records)


def chunk_token_grids(video_grid_thw: torch.Tensor, chunks_per_video: int, merge: int) -> list[list[tuple]]:
    """Per video, the ``(rows, cols)`` of merged visual tokens of each 2-frame chunk, from the processor's
    ``video_grid_thw`` (one row per run of equal-size chunks, sizes in patches)."""
    chunks = [(h // merge, w // merge) for t, h, w in video_grid_thw.tolist() for _ in range(t)]
    return [chunks[i : i + chunks_per_video] for i in range(0, len(chunks), chunks_per_video)]


def token_labels(record: dict, task: ReaderTaskConfig, grids: list[tuple], token_side: int) -> torch.Tensor:
    """Per merged visual token of a video (chunk-major, row-major; ``grids`` is each chunk's ``(rows, cols)``): the
    pattern's class on the tokens at least half covered by the (resized) stripes patch, -100 (ignored) on tokens it
    covers less, ``len(LETTERS)`` ("no pattern") elsewhere."""
    top, left, side = record["needle_box"]
    needle_chunk = record["needle_frames"][0] // 2
    labels = []
    for chunk, (rows, cols) in enumerate(grids):
        chunk_labels = torch.full((rows, cols), len(LETTERS))
        if chunk == needle_chunk:
            fy, fx = rows * token_side / task.size, cols * token_side / task.size  # resize factor per axis
            edges_y = torch.arange(rows + 1) * token_side
            edges_x = torch.arange(cols + 1) * token_side
            over_y = (torch.minimum(edges_y[1:], torch.tensor((top + side) * fy))
                      - torch.maximum(edges_y[:-1], torch.tensor(top * fy))).clamp(min=0)
            over_x = (torch.minimum(edges_x[1:], torch.tensor((left + side) * fx))
                      - torch.maximum(edges_x[:-1], torch.tensor(left * fx))).clamp(min=0)
            covered = over_y[:, None] * over_x[None, :] / token_side**2
            chunk_labels[covered > 0] = -100
            chunk_labels[covered >= 0.5] = LETTERS.index(record["answer"])
        labels.append(chunk_labels.flatten())
    return torch.cat(labels)
