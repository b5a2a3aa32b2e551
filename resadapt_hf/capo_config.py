"""``CAPOConfig``: TRL's ``GRPOConfig`` plus the CAPO fields, with every inherited knob honoured or refused.

``CAPOConfig`` subclasses ``trl.GRPOConfig`` so a TRL user's settings keep their meaning (``num_generations`` = M
allocations per prompt, ``per_device_train_batch_size`` counts allocations, ``epsilon``/``epsilon_high`` clip,
``temperature``/``top_p``/``top_k``/``max_completion_length`` reach the backbone's ``generate``, ``reward_weights``
weigh ``reward_funcs``, ``num_iterations`` reuses a rollout batch...). The Allocator is a per-frame Beta policy, not
a token-level language model, so many GRPO fields have no meaning here (reference-model KL on token log-probs, vLLM
servers, token-level loss aggregation...). A field that silently did nothing would be a bug: every GRPO field that
CAPO does not honour (:data:`HONOURED_GRPO_FIELDS`) is refused with a ``ValueError`` naming it when it is set to
anything but its default, and so is any field a future TRL release adds. The same holds for the
``TrainingArguments`` fields in :data:`REFUSED_TRAINING_FIELDS` (evaluation loop, LM-only features).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments
from transformers.utils import is_torch_bf16_gpu_available
from trl import GRPOConfig

from .capo import COST_MODES

__all__ = ["CAPOConfig", "HONOURED_GRPO_FIELDS", "REFUSED_TRAINING_FIELDS", "grpo_only_fields"]

# GRPOConfig fields (beyond transformers.TrainingArguments) that CAPOTrainer honours, and how.
HONOURED_GRPO_FIELDS: dict[str, str] = {
    "num_generations": "M allocations sampled per prompt (one Allocator forward)",
    "max_completion_length": "max_new_tokens of every backbone rollout",
    "temperature": "sampling temperature of the backbone rollouts",
    "top_p": "nucleus sampling of the backbone rollouts",
    "top_k": "top-k sampling of the backbone rollouts (0 = off)",
    "min_p": "min-p sampling of the backbone rollouts",
    "repetition_penalty": "repetition penalty of the backbone rollouts",
    "generation_kwargs": "extra keyword arguments of the backbone's generate (applied last)",
    "num_iterations": "PPO updates per rollout batch, against the stored old log-probs (the clip acts from the 2nd)",
    "epsilon": "lower per-frame PPO clip",
    "epsilon_high": "upper per-frame PPO clip (DAPO-style asymmetric)",
    "steps_per_generation": "must equal gradient_accumulation_steps: one generation per micro-batch",
    "generation_batch_size": "derived from steps_per_generation as in GRPOConfig (same constraint)",
    "reward_weights": "weights of reward_funcs (default: 1.0 for accuracy, FORMAT_WEIGHT for format)",
    "shuffle_dataset": "shuffle the prompts (seeded by data_seed or seed, reshuffled each epoch)",
    "disable_dropout": "set every dropout probability of the Allocator to 0",
    "beta": "weight of the closed-form per-frame KL(policy || initial Allocator's Beta policy); 0 = off",
    "use_vllm": "False only: vLLM rollouts are not implemented (refused when True)",
}

# transformers.TrainingArguments fields with no meaning for CAPO training: refused when not at their default.
REFUSED_TRAINING_FIELDS: dict[str, str] = {
    **{name: "CAPOTrainer has no evaluation loop; evaluate a saved Allocator with `resadapt eval`" for name in (
        "eval_strategy", "eval_steps", "eval_delay", "per_device_eval_batch_size", "prediction_loss_only",
        "eval_on_start", "eval_do_concat_batches", "eval_use_gather_object", "eval_accumulation_steps",
        "include_for_metrics", "batch_eval_metrics", "load_best_model_at_end", "metric_for_best_model",
        "greater_is_better", "do_eval", "do_predict", "bf16_full_eval", "fp16_full_eval")},
    **{name: "a language-model training feature; the Allocator is not a language model" for name in (
        "label_smoothing_factor", "neftune_noise_alpha", "use_liger_kernel", "liger_kernel_config",
        "include_num_input_tokens_seen", "label_names", "length_column_name",
        "train_sampling_strategy")},
    "remove_unused_columns": "records are passed whole to the rollout (videos, options, segments)",
    "gradient_checkpointing": "the trainable predictor is small and the frozen encoder runs without gradients",
    "activation_checkpointing": "the trainable predictor is small and the frozen encoder runs without gradients",
}

_VLLM_HINT = (
    "use_vllm=True: vLLM rollouts are not implemented (vLLM is not in the pinned stack). CAPOTrainer batches all "
    "M x N rollouts of a prompt into one HF generate call (rollout_prompts_per_call packs several prompts); see "
    "docs/training.md for how a vLLM backend would receive per-chunk sizes"
)


def grpo_only_fields() -> list[dataclasses.Field]:
    """The fields ``trl.GRPOConfig`` adds to ``transformers.TrainingArguments``."""
    base = {f.name for f in dataclasses.fields(TrainingArguments)}
    return [f for f in dataclasses.fields(GRPOConfig) if f.name not in base]


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _is_off(value) -> bool:
    # "off" spelled the ways the parsers give it: argparse turns some str-or-bool defaults ("no") into False
    return value is None or value is False or (isinstance(value, str) and value == "no")


def _is_default(value, default) -> bool:
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return list(value) == list(default)
    return value == default or (_is_off(value) and _is_off(default))


@dataclass
class CAPOConfig(GRPOConfig):
    """``GRPOConfig`` plus the CAPO fields (paper arXiv 2603.28610, Eq. 14-23; equations in ``docs/capo.md``).

    Inherited TRL fields keep their meaning where they have one for a per-frame Beta policy
    (:data:`HONOURED_GRPO_FIELDS`); every other GRPO field is refused when set (see the module docstring).
    ``beta`` > 0 adds ``beta * KL(pi || pi_init)`` per frame, in closed form between Beta distributions, against a
    frozen copy of the Allocator as it was when training started (its encoder runs a second time per prompt).
    Changed defaults: ``learning_rate`` 1e-4 (an Allocator head, not an LLM), ``max_completion_length`` 256,
    ``bf16`` only where the hardware supports it (CPU-only machines train in fp32 without flags),
    ``gradient_checkpointing`` off.

    Args:
        num_rollouts: N backbone rollouts per allocation.
        rollout_prompts_per_call: prompts whose M x N rollouts share one ``generate`` call (0: every prompt of
            the micro-batch in one call).
        cost_mode: ``"capo"`` (default), ``"direct"``, ``"none"`` or ``"capo_centered"`` (ablations).
        kappa_mix, tau_fix, tau_s, lambda_pos, lambda_neg, lambda_capo, cost_gamma, eps_pos: CAPO coefficients
            (``cost_gamma`` is the paper's gamma, the residual linear cost pressure).
        direct_cost_weight: penalty weight of ``cost_mode="direct"``.
        lambda_sim, tau_sim, gamma_sim, eta_sim: temporal-similarity regulariser (Eq. 18-19).
        lambda_con, kappa_max: concentration regulariser (Eq. 20).
        video_num_frames, video_fps: how each record's video is sampled (shared by Allocator and backbone).
        train_backbone: co-train the backbone (ResAdapt-RL); not implemented.
    """

    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate of the Allocator."})
    max_completion_length: int | None = field(
        default=256, metadata={"help": "max_new_tokens of every backbone rollout."}
    )
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 mixed precision; default: on where a GPU supports it, else off."}
    )
    num_rollouts: int = field(default=1, metadata={"help": "N backbone rollouts per allocation (paper: 1)."})
    rollout_prompts_per_call: int = field(
        default=1, metadata={"help": "Prompts whose M x N rollouts share one generate call (0: the whole batch)."}
    )
    cost_mode: str = field(default="capo", metadata={"help": f"Advantage mode, one of {COST_MODES}."})
    kappa_mix: float = field(default=0.5, metadata={"help": "Weight of the group mean cost in the pivot (Eq. 14)."})
    tau_fix: float = field(default=0.4, metadata={"help": "Fixed cost target in the pivot (Eq. 14)."})
    tau_s: float = field(default=0.15, metadata={"help": "Sigmoid temperature of the shaping (Eq. 15)."})
    lambda_pos: float = field(default=0.7, metadata={"help": "Bonus scale for correct rollouts (Eq. 15)."})
    lambda_neg: float = field(default=1.3, metadata={"help": "Penalty scale for wrong rollouts (Eq. 15)."})
    lambda_capo: float = field(default=0.25, metadata={"help": "Weight of the shaping term (Eq. 16)."})
    cost_gamma: float = field(default=0.05, metadata={"help": "Residual linear cost pressure gamma (Eq. 16)."})
    eps_pos: float = field(default=1e-3, metadata={"help": "Positive floor for correct rollouts (Eq. 17)."})
    direct_cost_weight: float = field(default=0.5, metadata={"help": "Penalty weight of cost_mode='direct'."})
    lambda_sim: float = field(default=1e-3, metadata={"help": "Weight of the temporal-similarity loss (Eq. 23)."})
    tau_sim: float = field(default=0.55, metadata={"help": "Similarity threshold of L_sim (Eq. 19)."})
    gamma_sim: float = field(default=0.12, metadata={"help": "Similarity temperature of L_sim (Eq. 19)."})
    eta_sim: float = field(default=0.2, metadata={"help": "Hinge offset of L_sim (Eq. 18)."})
    lambda_con: float = field(default=5e-4, metadata={"help": "Weight of the concentration loss (Eq. 23)."})
    kappa_max: float = field(default=30.0, metadata={"help": "Concentration cap alpha+beta of L_con (Eq. 20)."})
    video_num_frames: int | None = field(
        default=16, metadata={"help": "Frames sampled from each record's video (shared by Allocator and backbone)."}
    )
    video_fps: float | None = field(default=None, metadata={"help": "Sample videos at this rate instead."})
    train_backbone: bool = field(default=False, metadata={"help": "Co-train the backbone (not implemented)."})
    epsilon_high: float | None = field(default=0.28, metadata={"help": "Upper PPO clip (DAPO-style asymmetric)."})
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "Off: the trainable predictor is small and the encoder runs without grad."}
    )

    def __post_init__(self):
        self._refuse_unsupported()  # on the values as given, before GRPOConfig derives any of them
        if not self.use_cpu and not torch.accelerator.is_available():
            # accelerate sets up a multi-process CPU run (gloo) only when asked for the CPU; without an accelerator
            # there is no other choice, so a plain `torchrun` on a CPU-only machine needs no flag
            self.use_cpu = True
        if self.bf16 is None:
            self.bf16 = not self.fp16 and not self.use_cpu and is_torch_bf16_gpu_available()
        super().__post_init__()
        if self.cost_mode not in COST_MODES:
            raise ValueError(f"cost_mode must be one of {COST_MODES}, got {self.cost_mode!r}")
        for name in ("num_rollouts", "num_generations", "num_iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.rollout_prompts_per_call, bool) or not isinstance(self.rollout_prompts_per_call, int) \
                or self.rollout_prompts_per_call < 0:
            raise ValueError(f"rollout_prompts_per_call must be an integer >= 0, got {self.rollout_prompts_per_call!r}")
        if self.per_device_train_batch_size % self.num_generations:
            raise ValueError(
                f"per_device_train_batch_size ({self.per_device_train_batch_size}) counts allocations and must be "
                f"a multiple of num_generations ({self.num_generations})"
            )
        if self.steps_per_generation != self.gradient_accumulation_steps:
            raise ValueError(
                f"steps_per_generation={self.steps_per_generation} (or the generation_batch_size it was derived "
                f"from): CAPOTrainer generates one micro-batch at a time, so it must equal "
                f"gradient_accumulation_steps ({self.gradient_accumulation_steps}); use num_iterations to reuse "
                f"rollouts"
            )
        if self.video_num_frames is not None and self.video_fps is not None:
            raise ValueError("video_num_frames and video_fps: set at most one of them")
        if self.train_backbone:
            raise NotImplementedError("train_backbone=True (ResAdapt-RL co-training) is not implemented yet")

    def _refuse_unsupported(self) -> None:
        if self.use_vllm:
            raise ValueError(_VLLM_HINT)
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or not self.beta >= 0:
            raise ValueError(f"beta must be a number >= 0 (the KL weight; 0 = off), got {self.beta!r}")
        own = {f.name: f for f in dataclasses.fields(type(self))}
        refused = {f.name: "a GRPO field CAPO does not use (the Allocator is a per-frame Beta policy, not a "
                           "token-level language model)" for f in grpo_only_fields()
                   if f.name not in HONOURED_GRPO_FIELDS}
        refused.update(REFUSED_TRAINING_FIELDS)
        for name, why in refused.items():
            default, value = _default(own[name]), getattr(self, name)
            if not _is_default(value, default):
                raise ValueError(f"{name}={value!r} is not supported by CAPOTrainer ({why}); leave it at its "
                                 f"default {default!r}")

    def changed_generation_fields(self) -> list[str]:
        """Names of the generation settings set to something other than their default (for rollouts that do not
        generate text, where they would do nothing)."""
        own = {f.name: f for f in dataclasses.fields(type(self))}
        names = ("max_completion_length", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                 "generation_kwargs", "rollout_prompts_per_call")
        return [n for n in names if not _is_default(getattr(self, n), _default(own[n]))]
