"""Rollouts of the frozen backbone for CAPO: M allocations x N completions per prompt, batched.

A CAPO step asks, for each prompt, how the frozen backbone answers under M sampled per-frame allocations, N times
each. The trainer hands a :class:`Rollout` one :class:`RolloutRequest` per prompt (the decoded record, the frames
the Allocator saw, the ``[M, T]`` scales) plus the :class:`GenerationSettings` and gets one :class:`RolloutResult`
per request back (``M`` lists of ``N`` completions, and the retention each allocation really produced).

:class:`BackboneRollout` drives a Hugging Face Qwen-VL backbone through a ``ResAdaptProcessor``. All ``M x N``
rollouts of a prompt go through ONE ``generate`` call: the M allocations are M batch rows (same text, same frames,
different per-frame scales, hence different chunk sizes and sequence lengths), left-padded, and
``num_return_sequences=N`` repeats every row N times (consecutively: rows ``m*N .. m*N + N - 1`` of the output are
allocation m). ``GenerationSettings.prompts_per_call`` packs several prompts' rows into one call (0: every request
in one call). With ``do_sample=False`` decoding is deterministic, so each row is decoded once and its completion
repeated N times (``transformers`` refuses ``num_return_sequences > 1`` for greedy search anyway).

Deterministic readers (``resadapt_hf.synthetic.NeedleRollout``) implement the same protocol with
``generates_text = False``: they accept the settings and ignore them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import torch

__all__ = [
    "BackboneRollout",
    "GenerationSettings",
    "RESERVED_GENERATION_KWARGS",
    "Rollout",
    "RolloutRequest",
    "RolloutResult",
    "check_rollout_call",
    "group_completions",
    "request_batches",
]

# generate() arguments that GenerationSettings.generation_kwargs may not set: the rollout owns them. N comes from
# ``num_rollouts``; the model inputs come from the processor; a whole ``generation_config`` would hide
# ``do_sample`` from the rollout, which needs it to know whether N sequences per row are distinct.
RESERVED_GENERATION_KWARGS = frozenset({
    "num_return_sequences", "generation_config", "input_ids", "attention_mask", "inputs_embeds", "position_ids",
    "pixel_values", "pixel_values_videos", "image_grid_thw", "video_grid_thw", "second_per_grid_ts",
    "mm_token_type_ids",
})


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class GenerationSettings:
    """Generation settings of the frozen backbone's rollouts (TRL GRPOConfig names map onto these).

    Args:
        max_new_tokens: most tokens generated per completion (``GRPOConfig.max_completion_length``), >= 1.
        do_sample: sample (True, what RL needs) or decode greedily (False: the N rollouts of an allocation are
            then identical, and no sampling knob reaches ``generate``).
        temperature: sampling temperature, finite > 0 (``GRPOConfig.temperature``).
        top_p: nucleus mass in (0, 1]; 1 = off (``GRPOConfig.top_p``).
        top_k: keep the k most likely tokens; None or 0 = off (``GRPOConfig.top_k``). Passed as 0 when off, so
            the ``transformers`` default of 50 never applies behind the caller's back.
        min_p: minimum probability relative to the most likely token, in [0, 1]; None = off
            (``GRPOConfig.min_p``).
        repetition_penalty: finite > 0; 1 = off (``GRPOConfig.repetition_penalty``). Always passed, also when
            greedy, so a checkpoint's ``generation_config.json`` value does not apply silently.
        generation_kwargs: extra ``generate`` arguments, passed last so they override the fields above
            (``GRPOConfig.generation_kwargs``, e.g. ``{"min_new_tokens": 16}``); string keys, none of
            :data:`RESERVED_GENERATION_KWARGS`.
        prompts_per_call: prompts whose M x N rollouts share one ``generate`` call, >= 0 (0 = all requests of a
            rollout call in one ``generate`` call). More prompts per call use the accelerator better but cost
            memory and padding (rows of different prompts differ more in length).
    """

    max_new_tokens: int = 256
    do_sample: bool = True
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0
    generation_kwargs: dict = field(default_factory=dict)
    prompts_per_call: int = 1

    def __post_init__(self):
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not isinstance(self.do_sample, bool):
            raise ValueError(f"do_sample must be True or False, got {self.do_sample!r}")
        if not _is_real(self.temperature) or self.temperature <= 0:
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature!r}")
        if not _is_real(self.top_p) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be a number in (0, 1], got {self.top_p!r}")
        if self.top_k is not None and (not _is_int(self.top_k) or self.top_k < 0):
            raise ValueError(f"top_k must be None or an integer >= 0 (0 or None = off), got {self.top_k!r}")
        if self.min_p is not None and (not _is_real(self.min_p) or not 0 <= self.min_p <= 1):
            raise ValueError(f"min_p must be None or a number in [0, 1], got {self.min_p!r}")
        if not _is_real(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be a finite number > 0, got {self.repetition_penalty!r}")
        if not isinstance(self.generation_kwargs, dict) or not all(isinstance(k, str) for k in self.generation_kwargs):
            raise ValueError(f"generation_kwargs must be a dict with string keys, got {self.generation_kwargs!r}")
        reserved = sorted(RESERVED_GENERATION_KWARGS & set(self.generation_kwargs))
        if reserved:
            raise ValueError(
                f"generation_kwargs must not set {reserved}: the rollout sets them (num_return_sequences = "
                f"num_rollouts, model inputs from the processor); reserved: {sorted(RESERVED_GENERATION_KWARGS)}"
            )
        if not _is_int(self.prompts_per_call) or self.prompts_per_call < 0:
            raise ValueError(
                "prompts_per_call must be an integer >= 0 (0 = all requests in one call), "
                f"got {self.prompts_per_call!r}"
            )

    @classmethod
    def from_grpo_config(cls, config, **overrides) -> "GenerationSettings":
        """Settings from a ``trl.GRPOConfig`` (or ``CAPOConfig``): ``max_completion_length``, ``temperature``,
        ``top_p``, ``top_k``, ``min_p``, ``repetition_penalty``, ``generation_kwargs``; ``overrides`` (e.g.
        ``prompts_per_call``, ``do_sample``) win."""
        values = dict(
            max_new_tokens=config.max_completion_length, temperature=config.temperature, top_p=config.top_p,
            top_k=config.top_k, min_p=config.min_p, repetition_penalty=config.repetition_penalty,
            generation_kwargs=dict(config.generation_kwargs or {}),
        )
        values.update(overrides)
        return cls(**values)

    def generate_kwargs(self) -> dict:
        """Exactly what goes into ``model.generate`` (besides the inputs and ``num_return_sequences``): no
        sampling knobs when ``do_sample=False``; ``generation_kwargs`` last."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k or 0, min_p=self.min_p)
        return {**kwargs, **self.generation_kwargs}

    @property
    def is_default(self) -> bool:
        """True when every field has its default value (what a deterministic reader's caller should pass)."""
        return self == GenerationSettings()


@dataclass(eq=False)  # compared by identity: field-wise == on tensors is ambiguous
class RolloutRequest:
    """One prompt to roll out under M allocations.

    Args:
        record: a decoded record (``resadapt_hf.data.decode_record`` output: ``"frames"``, maybe ``"clip"``,
            ``"question"``, ``"options"``, ...).
        frames: uint8 ``[T, H, W, 3]`` tensor, the frames the Allocator saw. When ``record["clip"].frames`` is
            this very tensor, the clip (with the file's frame rate) reaches the backbone.
        frame_scales: floating ``[M, T]`` tensor of per-frame scales, one row per allocation, finite.
    """

    record: dict
    frames: torch.Tensor
    frame_scales: torch.Tensor

    def __post_init__(self):
        if not isinstance(self.record, dict):
            raise TypeError(f"record must be a dict (a decoded record), got {type(self.record).__name__}")
        frames = self.frames
        if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8:
            raise TypeError(
                f"frames must be a uint8 torch.Tensor [T, H, W, 3] (use torch.as_tensor), got "
                f"{type(frames).__name__} {getattr(frames, 'dtype', '')}"
            )
        if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape) < 1:
            raise ValueError(f"frames must have shape [T>=1, H>=1, W>=1, 3], got {list(frames.shape)}")
        scales = self.frame_scales
        if not isinstance(scales, torch.Tensor) or not scales.is_floating_point():
            raise TypeError(f"frame_scales must be a floating torch.Tensor [M, T], got {type(scales).__name__}")
        if scales.ndim != 2 or scales.shape[0] < 1 or scales.shape[1] != frames.shape[0]:
            raise ValueError(
                f"frame_scales must have shape [M>=1, T={frames.shape[0]}] (one row per allocation, one scale per "
                f"frame), got {list(scales.shape)}"
            )
        if not torch.isfinite(scales).all():
            raise ValueError(f"frame_scales must be finite, got {scales.tolist()}")

    @property
    def num_allocations(self) -> int:
        """M, the allocations (rows of ``frame_scales``)."""
        return int(self.frame_scales.shape[0])


@dataclass(eq=False)  # __eq__ below: field-wise == on tensors is ambiguous
class RolloutResult:
    """The backbone's answers to one request.

    Args:
        completions: M lists (one per allocation, in ``frame_scales`` row order) of N completion strings.
        retention: float ``[M]`` tensor: visual tokens / tokens at scale 1 that each allocation actually produced.
    """

    completions: list[list[str]]
    retention: torch.Tensor

    def __post_init__(self):
        completions = self.completions
        if not isinstance(completions, list) or not completions or not all(isinstance(c, list) for c in completions):
            raise ValueError(f"completions must be a non-empty list of M lists, got {type(completions).__name__}")
        counts = {len(c) for c in completions}
        if len(counts) != 1 or 0 in counts:
            raise ValueError(
                f"completions must hold the same N >= 1 completions per allocation, got sizes {sorted(counts)}"
            )
        if not all(isinstance(text, str) for c in completions for text in c):
            raise ValueError("completions must be strings")
        retention = self.retention
        if not isinstance(retention, torch.Tensor) or not retention.is_floating_point():
            raise ValueError(f"retention must be a floating torch.Tensor [M], got {type(retention).__name__}")
        if retention.shape != (len(completions),) or not torch.isfinite(retention).all():
            raise ValueError(
                f"retention must be finite with shape [M={len(completions)}], got {list(retention.shape)}: "
                f"{retention.tolist()}"
            )

    @property
    def num_rollouts(self) -> int:
        """N, the completions per allocation."""
        return len(self.completions[0])

    def __eq__(self, other) -> bool:
        if not isinstance(other, RolloutResult):
            return NotImplemented
        return self.completions == other.completions and torch.equal(self.retention, other.retention)


@runtime_checkable
class Rollout(Protocol):
    """The frozen backbone as the trainer sees it: answers each request under its M allocations, N times each.

    ``generates_text`` is True when the :class:`GenerationSettings` reach a model's ``generate``; False for a
    deterministic reader that ignores them (the trainer refuses non-default settings for such rollouts).
    ``__call__`` returns one :class:`RolloutResult` per request, in request order.
    """

    generates_text: bool

    def __call__(self, requests: Sequence[RolloutRequest], *, num_rollouts: int,
                 generation: GenerationSettings) -> list[RolloutResult]: ...


def check_rollout_call(requests, num_rollouts, generation) -> list[RolloutRequest]:
    """Validate a rollout call's arguments (shared by every :class:`Rollout`); returns the requests as a list."""
    if isinstance(requests, RolloutRequest) or not isinstance(requests, Sequence):
        raise TypeError(f"requests must be a sequence of RolloutRequest, got {type(requests).__name__}")
    requests = list(requests)
    bad = [type(r).__name__ for r in requests if not isinstance(r, RolloutRequest)]
    if bad:
        raise TypeError(f"requests must be RolloutRequest objects, got {bad}")
    if not _is_int(num_rollouts) or num_rollouts < 1:
        raise ValueError(f"num_rollouts must be an integer >= 1, got {num_rollouts!r}")
    if not isinstance(generation, GenerationSettings):
        raise TypeError(f"generation must be a GenerationSettings, got {type(generation).__name__}")
    return requests


def request_batches(num_requests: int, prompts_per_call: int) -> list[range]:
    """Consecutive request indices that share one ``generate`` call (``prompts_per_call`` 0 = all in one)."""
    size = num_requests if prompts_per_call == 0 else prompts_per_call
    return [range(start, min(start + size, num_requests)) for start in range(0, num_requests, max(size, 1))]


def group_completions(texts: Sequence[str], allocations_per_request: Sequence[int], sequences_per_row: int,
                      num_rollouts: int) -> list[list[list[str]]]:
    """Split ``generate``'s decoded output into per-request, per-allocation lists of N completions.

    ``texts`` holds ``sequences_per_row`` consecutive sequences per batch row (``num_return_sequences`` repeats
    each row that many times, consecutively), rows in request order, M rows per request. When one sequence per
    row was decoded for N rollouts (deterministic decoding) it is repeated N times.
    """
    rows = sum(allocations_per_request)
    if len(texts) != rows * sequences_per_row:
        raise ValueError(
            f"expected {rows} rows x {sequences_per_row} sequences = {rows * sequences_per_row} outputs, "
            f"got {len(texts)}"
        )
    if sequences_per_row not in (1, num_rollouts):
        raise ValueError(f"sequences_per_row must be 1 or num_rollouts ({num_rollouts}), got {sequences_per_row}")
    per_row = [list(texts[r * sequences_per_row : (r + 1) * sequences_per_row]) for r in range(rows)]
    if sequences_per_row == 1:
        per_row = [row * num_rollouts for row in per_row]
    grouped, start = [], 0
    for m in allocations_per_request:
        grouped.append(per_row[start : start + m])
        start += m
    return grouped


class BackboneRollout:
    """Rollouts of a frozen HF backbone (``model.generate``) on inputs resized by a ``ResAdaptProcessor``, all
    M x N rollouts of a prompt in one ``generate`` call (see the module docstring).

    Args:
        backbone: e.g. ``Qwen2_5_VLForConditionalGeneration`` (kept frozen in eval mode, prepared for per-chunk
            sizes with ``processor.prepare_backbone``).
        processor: the ``ResAdaptProcessor`` wrapping its processor. It is not modified: left padding is asked
            for per call.
        system_prompt: optional system message (e.g. ``rewards.SYSTEM_PROMPT``).
    """

    generates_text = True

    def __init__(self, backbone, processor, system_prompt=None):
        self.backbone = processor.prepare_backbone(backbone).eval().requires_grad_(False)
        self.processor = processor
        self.system_prompt = system_prompt
        self._video_token_id = processor.tokenizer.convert_tokens_to_ids(processor.backbone_processor.video_token)

    def prompt(self, record: dict) -> str:
        question = record["question"]
        if record.get("options"):
            question = question + "\n" + "\n".join(record["options"])
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    @staticmethod
    def video(request: RolloutRequest):
        """What the backbone reads: the decoded clip when it holds exactly these frames (it carries the file's
        frame rate, which sets temporal positions / timestamps), else the raw frames (an assumed rate)."""
        clip = request.record.get("clip")
        return clip if clip is not None and clip.frames is request.frames else request.frames

    @torch.no_grad()
    def __call__(self, requests: Sequence[RolloutRequest], *, num_rollouts: int,
                 generation: GenerationSettings) -> list[RolloutResult]:
        requests = check_rollout_call(requests, num_rollouts, generation)
        results = []
        for batch in request_batches(len(requests), generation.prompts_per_call):
            results += self._generate([requests[i] for i in batch], num_rollouts, generation)
        return results

    def _generate(self, requests: list[RolloutRequest], num_rollouts: int,
                  generation: GenerationSettings) -> list[RolloutResult]:
        """One ``generate`` call for every allocation of ``requests``."""
        texts, videos, scales = [], [], []
        for request in requests:
            text, video = self.prompt(request.record), self.video(request)
            for row in request.frame_scales.tolist():
                texts.append(text)
                videos.append(video)
                scales.append(row)  # the prompt's one video: a flat per-frame vector
        # left padding: every row's prompt ends at the same position, so the new tokens start there for all rows
        inputs = self.processor(text=texts, videos=videos, scales=scales, padding=True, padding_side="left",
                                return_tensors="pt", return_allocation=True)
        allocations = inputs.pop("allocation")
        self._check_inputs(inputs, allocations)
        inputs = inputs.to(self.backbone.device)
        kwargs = generation.generate_kwargs()
        sequences_per_row = num_rollouts if kwargs.get("do_sample") else 1
        out = self.backbone.generate(**inputs, **kwargs, num_return_sequences=sequences_per_row)
        decoded = self.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        grouped = group_completions(decoded, [r.num_allocations for r in requests], sequences_per_row, num_rollouts)
        results, start = [], 0
        for request, completions in zip(requests, grouped):
            retention = [a.retention for a in allocations[start : start + request.num_allocations]]
            results.append(RolloutResult(completions, torch.tensor(retention)))
            start += request.num_allocations
        return results

    def _check_inputs(self, inputs, allocations):
        """Fail loudly rather than decode from a wrong offset or record a retention the backbone did not see."""
        mask = inputs["attention_mask"]
        if not bool(mask[:, -1].all()):
            raise RuntimeError("the processor did not left-pad the batch (padding_side='left' was ignored)")
        seen = (inputs["input_ids"] == self._video_token_id).sum(1).tolist()
        planned = [a.visual_tokens for a in allocations]
        if seen != planned:
            raise RuntimeError(
                f"the backbone inputs hold {seen} video tokens per row but the allocations planned {planned}"
            )
