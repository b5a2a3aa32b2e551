"""Train the tiny reader (``resadapt_hf.tiny_reader``) from scratch on CPU, deterministically from a seed.

    python scripts/train_reader.py                     # the shipped reader (about 40 min on 2 cores)
    python scripts/train_reader.py --steps 4 --scale1_steps 2 --out /tmp/reader --eval_samples 8   # a smoke run

What the model reads is exactly what CAPO and evaluation give it: the trainer's own prompt
(``BackboneRollout(...).prompt(record)`` with ``rewards.SYSTEM_PROMPT``), frames resized per 2-frame chunk by
``ResAdaptProcessor`` with the backbone prepared for per-chunk grids (``prepare_backbone``), left padding. The loss
is the summed cross-entropy of the completion tokens (``tiny_reader.reader_completion`` + ``<|im_end|>``).

Curriculum (each part measured while building it; docs/reader.md):

0. ``vision_steps`` steps of the vision tower alone, as a per-token pattern classifier (a linear head on every
   merged visual token; the tokens the stripes patch covers have the pattern's class, the others "no pattern"),
   half of the videos at scale 1 and half with mixed per-chunk scales (``reader_training.token_labels`` follows the
   patch into the resized chunk): the needle's tokens get a distinctive feature, which the from-scratch text side
   then finds by attention. Without it the text side stayed at chance for 300 steps.
1. ``scale1_steps`` steps at scale 1 only, the vision tower frozen for the first ``freeze_vision_steps``: the
   from-scratch text side first learns the answer format and to map pooled visual features to the class letter.
   Mixing scales from step 1 learned nothing in the same number of steps.
2. the rest with mixed per-chunk scales (``reader_training.draw_scales``), so the reader answers from the resized
   inputs an Allocator will give it, and guesses when the stripes are gone.

Writes the weights, config and processor files to ``--out`` (default: the package's ``tiny_reader_weights``),
``training.json`` (curve, accuracy per scale on the validation split) and ``training_curve.png`` to
``--results`` (default ``benchmarks/results/tiny_reader``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import HfArgumentParser

from resadapt_hf.plots import line_chart
from resadapt_hf.processing.processing_resadapt import ResAdaptProcessor
from resadapt_hf.reader_task import LETTERS, SPLIT_SEEDS, ReaderTaskConfig, needle_only_scales, reader_sample
from resadapt_hf.rewards import SYSTEM_PROMPT
from resadapt_hf.rollout import BackboneRollout
from resadapt_hf.reader_training import (
    ReaderBatches,
    chunk_scales,
    chunk_token_grids,
    draw_scales,
    teacher_forced_accuracy,
    token_labels,
)
from resadapt_hf.tiny_reader import READER_DIR, build_reader_backbone

ROOT = Path(__file__).resolve().parents[1]
EVAL_SCALES = (0.2, 0.35, 0.5, 0.75, 1.0, 1.25, 1.5, 1.8)
VISION_PRETRAIN_OFFSET = 10_000_000  # training-split indices of the vision pretraining (apart from the main loop's)


@dataclass
class ReaderTrainingArguments:
    seed: int = field(default=0, metadata={"help": "seeds the weights, the scale draws and the data order"})
    vision_steps: int = field(default=250, metadata={"help": "vision-tower pretraining steps (per-token classifier)"})
    vision_learning_rate: float = field(default=2e-3, metadata={"help": "learning rate of the vision pretraining"})
    steps: int = field(default=900, metadata={"help": "optimiser steps of the whole model"})
    scale1_steps: int = field(default=250, metadata={"help": "first steps at scale 1 only (curriculum)"})
    freeze_vision_steps: int = field(default=150, metadata={"help": "first steps with the vision tower frozen"})
    batch_size: int = field(default=32, metadata={"help": "videos per step"})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW peak learning rate (cosine decay)"})
    warmup_steps: int = field(default=20, metadata={"help": "linear warm-up steps"})
    vision_lr_scale: float = field(default=0.1, metadata={"help": "vision tower learning rate / peak rate"})
    eval_every: int = field(default=100, metadata={"help": "steps between validation measurements"})
    eval_samples: int = field(default=128, metadata={"help": "validation videos per measurement"})
    threads: int = field(default=2, metadata={"help": "torch CPU threads"})
    out: str = field(default=str(READER_DIR), metadata={"help": "folder for the trained model + processor"})
    results: str = field(default=str(ROOT / "benchmarks" / "results" / "tiny_reader"),
                         metadata={"help": "folder for training.json and training_curve.png"})

    def __post_init__(self):
        if self.vision_steps < 0:
            raise ValueError(f"vision_steps must be >= 0, got {self.vision_steps!r}")
        for name in ("steps", "batch_size", "eval_every", "eval_samples", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("scale1_steps", "freeze_vision_steps"):
            if not 0 <= getattr(self, name) <= self.steps:
                raise ValueError(f"{name} must be in [0, steps={self.steps}], got {getattr(self, name)!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate must be in (0, 1), got {self.learning_rate!r}")


def lr_factor(step: int, args: ReaderTrainingArguments) -> float:
    warm = min(1.0, step / max(1, args.warmup_steps))
    return warm * 0.5 * (1 + math.cos(math.pi * step / args.steps))


def pretraining_scales(rng: np.random.Generator, needle: int, num_frames: int) -> list[float]:
    """Vision pretraining allocations: everything at scale 1 (half), else the needle chunk in [0.5, 1.8] and the
    others in [0.2, 1.8]."""
    chunks = num_frames // 2
    if rng.random() < 0.5:
        return [1.0] * num_frames
    values = [float(v) for v in rng.uniform(0.2, 1.8, chunks)]
    values[needle // 2] = float(rng.uniform(0.5, 1.8))
    return chunk_scales(values, num_frames)


def pretrain_vision(model, batches: ReaderBatches, args: ReaderTrainingArguments, task: ReaderTaskConfig,
                    rng: np.random.Generator) -> list:
    """The vision tower as a per-token pattern classifier (curriculum step 0); returns the loss curve.

    Per-token labels (the patch is on the token grid) give every token a target; pooling the tokens' scores into
    one per-video answer instead (log-sum-exp) had not started learning after 80 steps."""
    visual = model.model.visual
    head = torch.nn.Linear(visual.merger.mlp[-1].out_features, len(LETTERS) + 1)
    optimizer = torch.optim.AdamW([*visual.parameters(), *head.parameters()], lr=args.vision_learning_rate)
    token_side = visual.spatial_merge_size * visual.config.patch_size
    # "no pattern" tokens outnumber the needle's tokens about 35 to 1; weigh them down so the classes are learnt
    weight = torch.tensor([1.0] * len(LETTERS) + [0.05])
    curve = []
    for step in range(1, args.vision_steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = args.vision_learning_rate * min(1.0, step / 10)
        first = VISION_PRETRAIN_OFFSET + (step - 1) * args.batch_size
        records = [reader_sample(first + i, SPLIT_SEEDS["train"], task) for i in range(args.batch_size)]
        scales = [pretraining_scales(rng, r["needle_frames"][0], task.num_frames) for r in records]
        inputs, _ = batches.encode(records, scales)
        tokens = model.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"]).pooler_output
        logits = head(torch.cat(tokens))
        grids = chunk_token_grids(inputs["video_grid_thw"], task.num_frames // 2, visual.spatial_merge_size)
        per_video = [token_labels(r, task, g, token_side) for r, g in zip(records, grids)]
        labels = torch.cat(per_video)
        if logits.shape[0] != labels.shape[0]:
            raise RuntimeError(f"{logits.shape[0]} visual tokens, {labels.shape[0]} labels")
        loss = F.cross_entropy(logits, labels, weight=weight, ignore_index=-100)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        needle = (labels >= 0) & (labels < len(LETTERS))
        native = torch.cat([torch.full((len(v),), set(sc) == {1.0}) for v, sc in zip(per_video, scales)])
        right = logits.argmax(-1) == labels
        curve.append({"step": step, "loss": round(loss.item(), 4),
                      "needle_token_accuracy_scale_1": round(float(right[needle & native].float().mean()), 4),
                      "needle_token_accuracy_resized": round(float(right[needle & ~native].float().mean()), 4)})
        if step % 10 == 0 or step == args.vision_steps:
            print(json.dumps({"vision_pretraining": curve[-1]}), flush=True)
    return curve


def train(args: ReaderTrainingArguments) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    task = ReaderTaskConfig()
    model, backbone_processor = build_reader_backbone(seed=args.seed)
    processor = ResAdaptProcessor.from_backbone(backbone_processor)
    rollout = BackboneRollout(model, processor, system_prompt=SYSTEM_PROMPT)  # prepares the backbone
    model.train().requires_grad_(True)
    batches = ReaderBatches(rollout, processor)
    rng = np.random.default_rng(args.seed)
    validation = [reader_sample(i, SPLIT_SEEDS["validation"], task) for i in range(args.eval_samples)]
    vision_curve = pretrain_vision(model, batches, args, task, rng)

    vision = list(model.model.visual.parameters())
    vision_ids = {id(p) for p in vision}
    groups = [{"params": [p for p in model.parameters() if id(p) not in vision_ids], "lr_scale": 1.0},
              {"params": vision, "lr_scale": args.vision_lr_scale}]
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate, weight_decay=0.0)
    model.model.visual.requires_grad_(args.freeze_vision_steps == 0)

    curve, start = [], time.time()
    for step in range(1, args.steps + 1):
        if step == args.freeze_vision_steps + 1:
            model.model.visual.requires_grad_(True)
        for group in optimizer.param_groups:
            group["lr"] = args.learning_rate * lr_factor(step, args) * group["lr_scale"]
        first = (step - 1) * args.batch_size
        records = [reader_sample(first + i, SPLIT_SEEDS["train"], task) for i in range(args.batch_size)]
        if step <= args.scale1_steps:
            scales = [[1.0] * task.num_frames for _ in records]
        else:
            scales = [draw_scales(rng, r["needle_frames"][0], task.num_frames) for r in records]
        loss, predicted, truth = batches.train_step(model, optimizer, records, scales)
        row = {"step": step, "loss": round(loss.item(), 4), "train_accuracy": float((predicted == truth).float().mean()),
               "seconds": round(time.time() - start, 1)}
        if step % args.eval_every == 0 or step == args.steps:
            for scale in (1, 0.2):
                row[f"val_accuracy_scale_{scale}"], _ = teacher_forced_accuracy(
                    model, batches, validation, lambda r, s=float(scale): [s] * task.num_frames)
            row["val_accuracy_needle_only"], _ = teacher_forced_accuracy(model, batches, validation, needle_only_scales)
            print(json.dumps(row), flush=True)
        curve.append(row)

    per_scale = {}
    for scale in EVAL_SCALES:
        acc, tokens = teacher_forced_accuracy(model, batches, validation, lambda r, s=scale: [s] * task.num_frames)
        per_scale[str(scale)] = {"accuracy": acc, "visual_tokens": tokens}
    acc, tokens = teacher_forced_accuracy(model, batches, validation, needle_only_scales)
    per_scale["needle_only"] = {"accuracy": acc, "visual_tokens": tokens}
    print(json.dumps({"validation": per_scale}), flush=True)

    model.eval()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    backbone_processor.save_pretrained(out)
    report = {"arguments": asdict(args), "task": asdict(task), "parameters": sum(p.numel() for p in model.parameters()),
              "torch_threads": args.threads, "train_seconds": round(time.time() - start, 1),
              "validation_split_seed": SPLIT_SEEDS["validation"], "validation_samples": args.eval_samples,
              "validation_teacher_forced": per_scale, "vision_pretraining_curve": vision_curve, "curve": curve}
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "training.json").write_text(json.dumps(report, indent=1))
    evaluated = [r for r in curve if "val_accuracy_scale_1" in r]
    line_chart(
        {"validation, scale 1": [(r["step"], r["val_accuracy_scale_1"]) for r in evaluated],
         "validation, scale 0.2": [(r["step"], r["val_accuracy_scale_0.2"]) for r in evaluated],
         "validation, needle chunk 1, others 0.2": [(r["step"], r["val_accuracy_needle_only"]) for r in evaluated]},
        results / "training_curve.png", title="tiny reader: validation letter accuracy while training",
        xlabel="step", ylabel="accuracy", references={"chance": 0.25}, ylim=(0, 1.02), sort_x=False)
    return report


def main(argv=None) -> int:
    warnings.filterwarnings("ignore", message=".*fps.*")
    (args,) = HfArgumentParser(ReaderTrainingArguments).parse_args_into_dataclasses(args=argv)
    train(args)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
