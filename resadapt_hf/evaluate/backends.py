"""The backbone side of the evaluation loop: a decoded sample, the :class:`EvalBackend` protocol and its two
implementations.

* :class:`HFBackend`: a Hugging Face Qwen-VL backbone behind a ``ResAdaptProcessor``; the budget projection is
  ``processor.allocate(..., scales=..., budget=b)`` and the answer is a greedy ``generate`` on exactly that
  allocation (chat prompt with ``rewards.SYSTEM_PROMPT`` as in training).
* :class:`NeedleBackend`: the synthetic needle task; the budget projection is ``resize_plan.solve_budget`` on the
  task's ``UnitSpec`` (the processor's own solver and grid) and the calibrated reader answers from the frames the
  resize operator produced.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from ..data import decode_record
from ..processing.allocation import Allocation
from ..processing.resize_plan import DEFAULT_BUDGET_TOLERANCE
from ..processing.video_input import VideoClip, to_video_clip
from ..rewards import SYSTEM_PROMPT
from .config import SYNTHETIC_BACKBONE, EvalConfig

__all__ = ["EvalBackend", "EvalSample", "HFBackend", "NeedleBackend", "hf_backend"]


@dataclass
class EvalSample:
    """One decoded sample, shared by every allocator and budget.

    Attributes:
        sample_id: stable id (the record's ``id``/``sample_id``, else its index; synthetic: ``needle-<index>``).
        record: the dataset record (schema of ``resadapt_hf.data``).
        frames: uint8 [T, H, W, 3], the frames the allocator sees and the backbone receives (resized).
        question: the question as the allocator reads it (as in CAPO training).
        payload: backend data (the decoded clip and chat prompt).
    """

    sample_id: str
    record: dict
    frames: torch.Tensor
    question: str
    payload: Any = None


class EvalBackend(Protocol):
    """The backbone side of :func:`evaluate`. ``calls`` counts :meth:`generate` calls (resume tests)."""

    name: str
    calls: int

    def prepare(self, record: dict, sample_id: str) -> EvalSample: ...

    def allocate(self, sample: EvalSample, scales: list[float], budget: float | None) -> Allocation: ...

    def generate(self, sample: EvalSample, allocation: Allocation) -> str: ...


def _clip_of(record: dict, num_frames: int | None, fps: float | None) -> VideoClip:
    """The record's sampled video as a ``VideoClip`` (frame indices and, for files, the real frame rate, which the
    backbone uses for temporal positions / timestamps)."""
    return decode_record(record, num_frames=num_frames, fps=fps)["clip"]


class HFBackend:
    """A Hugging Face Qwen-VL backbone behind a ``ResAdaptProcessor``: budget projection with
    ``processor.allocate`` and greedy ``generate`` on exactly that allocation.

    Args:
        model: the backbone (e.g. ``Qwen2_5_VLForConditionalGeneration``); prepared for per-chunk sizes, kept
            frozen.
        backbone_processor: its own processor (``AutoProcessor.from_pretrained(...)``).
        name: the backbone's name in the results (default: the processor's ``name_or_path``).
        max_new_tokens: generation length (greedy decoding).
        num_frames, fps: frame sampling of video files / frame arrays.
        system_prompt: the system message of the chat prompt (None: none).
        processor_settings: ``ResAdaptProcessor`` settings (``min_scale``, ``max_scale``, ``budget_tolerance``,
            ``resample``, ...).
    """

    def __init__(self, model, backbone_processor, *, name: str | None = None, max_new_tokens: int = 256,
                 num_frames: int | None = 32, fps: float | None = None, system_prompt: str | None = SYSTEM_PROMPT,
                 **processor_settings):
        from ..processing.processing_resadapt import ResAdaptProcessor
        from ..rollout import BackboneRollout

        self.processor = ResAdaptProcessor.from_backbone(backbone_processor, **processor_settings)
        # the training rollout's prompt builder and backbone preparation (prepare_backbone, eval, frozen); the
        # generation itself is ours: one greedy answer per allocation
        self.rollout = BackboneRollout(model, self.processor, system_prompt=system_prompt)
        self.model = self.rollout.backbone
        self.name = name or self.processor.backbone_name_or_path or type(model).__name__
        self.num_frames, self.fps = num_frames, fps
        self.calls = 0
        generation = copy.deepcopy(self.model.generation_config)
        generation.do_sample, generation.num_beams, generation.max_new_tokens = False, 1, int(max_new_tokens)
        generation.temperature = generation.top_p = generation.top_k = None  # greedy: no sampling knobs
        self.generation_config = generation
        tokenizer, backbone = self.processor.tokenizer, self.processor.backbone_processor
        self._video_token_id = tokenizer.convert_tokens_to_ids(backbone.video_token)

    def prepare(self, record: dict, sample_id: str) -> EvalSample:
        clip = _clip_of(record, self.num_frames, self.fps)
        prompt = self.rollout.prompt(record)
        return EvalSample(sample_id, record, clip.frames, record["question"], payload=(clip, prompt))

    def allocate(self, sample: EvalSample, scales: list[float], budget: float | None) -> Allocation:
        clip, prompt = sample.payload
        return self.processor.allocate(prompt, videos=[clip], scales=scales, budget=budget)

    @torch.no_grad()
    def generate(self, sample: EvalSample, allocation: Allocation) -> str:
        self.calls += 1
        clip, prompt = sample.payload
        inputs = self.processor(text=[prompt], videos=[clip], allocation=allocation, return_tensors="pt")
        seen = int((inputs["input_ids"] == self._video_token_id).sum())
        if seen != allocation.visual_tokens:
            raise RuntimeError(
                f"sample {sample.sample_id}: the backbone input holds {seen} video tokens but the allocation "
                f"planned {allocation.visual_tokens}; the recorded retention would be wrong"
            )
        inputs = inputs.to(self.model.device)
        out = self.model.generate(**inputs, generation_config=self.generation_config)
        return self.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]


class NeedleBackend:
    """The synthetic needle task: planned and budget-projected by the processor's own ``plan_allocation``
    (``synthetic.plan_needle``), answers from the calibrated reader on the frames the resize operator
    produced (``resize_frames`` at the allocation's scales, checked against the planned sizes).

    Args:
        config: the ``NeedleTaskConfig`` the records were made with.
        reader: a calibrated ``NeedleReader`` (default: ``NeedleReader.calibrate(config)``).
        budget_tolerance: accepted ``|achieved - budget|`` of the solver.
    """

    def __init__(self, config=None, reader=None, *, budget_tolerance: float = DEFAULT_BUDGET_TOLERANCE):
        from ..synthetic import NeedleReader, NeedleTaskConfig

        self.config = config or NeedleTaskConfig()
        self.reader = reader or NeedleReader.calibrate(self.config)
        self.budget_tolerance = float(budget_tolerance)
        self.name = SYNTHETIC_BACKBONE
        self.calls = 0

    def prepare(self, record: dict, sample_id: str) -> EvalSample:
        frames = record["frames"]
        frames = torch.as_tensor(np.asarray(frames, dtype=np.uint8)) if not isinstance(frames, torch.Tensor) else frames
        clip = to_video_clip(frames)
        return EvalSample(sample_id, record, clip.frames, record["question"], payload=clip)

    def allocate(self, sample: EvalSample, scales: list[float], budget: float | None) -> Allocation:
        from ..synthetic import plan_needle

        clip = sample.payload
        if len(scales) != clip.num_frames:
            raise ValueError(f"scales: expected {clip.num_frames} values (one per frame), got {len(scales)}")
        return plan_needle(self.config, scales, budget=budget, budget_tolerance=self.budget_tolerance,
                           frame_indices=clip.frame_indices, timestamps=clip.timestamps)

    def generate(self, sample: EvalSample, allocation: Allocation) -> str:
        from ..synthetic import resize_frames

        self.calls += 1
        chunks = resize_frames(sample.frames, allocation.scales, self.config)
        received = [tuple(c.shape[1:3]) for c in chunks]
        if received != [tuple(s) for s in allocation.chunk_sizes]:
            raise RuntimeError(
                f"sample {sample.sample_id}: operator sizes {received} != planned {allocation.chunk_sizes}"
            )
        return self.reader.answer(chunks, sample.record["options"])


def hf_backend(pair, config: EvalConfig) -> HFBackend:
    """An :class:`HFBackend` for a ``(model, backbone processor)`` pair with the run's settings."""
    model, processor = pair
    return HFBackend(
        model, processor, name=config.backbone, max_new_tokens=config.max_new_tokens, num_frames=config.num_frames,
        fps=config.fps, system_prompt=SYSTEM_PROMPT if config.system_prompt else None, min_scale=config.min_scale,
        max_scale=config.max_scale, budget_tolerance=config.budget_tolerance, resample=config.resample,
    )
