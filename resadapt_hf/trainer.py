"""CAPO training of the ResAdapt Allocator in front of a frozen backbone, on TRL's trainer base.

Why not ``trl.GRPOTrainer``: its ``__init__``, rollout and loss are built around a token-level LM policy (it
reads ``generation_config``, the policy's image token id, per-token log-probs; measured in ECOSYSTEM.md §4), while
the Allocator is a continuous per-frame Beta policy. So :class:`CAPOTrainer` subclasses TRL's ``_BaseTrainer``
(the ``transformers.Trainer`` that TRL's trainers share: optimiser/scheduler, checkpoint + resume with RNG states,
logging integrations, TRL model-card creation) and :class:`CAPOConfig` subclasses ``trl.GRPOConfig`` so every
familiar knob keeps its meaning: ``num_generations`` = M allocations per prompt, ``per_device_train_batch_size``
counts allocations (prompts per step = batch / M, as GRPO counts completions), ``epsilon``/``epsilon_high`` are the
PPO clip, ``learning_rate``, ``logging_steps``, ``report_to``, ``push_to_hub``...

One step, per prompt (paper Algorithm 1): ONE Allocator forward (the encoder runs once), M sampled allocations,
N rollouts of the frozen backbone per allocation through a :class:`Rollout`, rewards (TRL reward-function
convention), CAPO advantages, then the per-frame PPO loss plus the similarity and concentration regularisers.
Only the Allocator receives gradients; co-training the backbone is not implemented (``train_backbone=True``
raises). ``num_iterations`` must be 1 (on-policy: one update per rollout batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import torch
from torch.utils.data import DataLoader
from trl import GRPOConfig
from trl.trainer.base_trainer import _BaseTrainer

from .capo import COST_MODES, allocator_loss, capo_advantage_details, proxy_cost
from .data import decode_record
from .rewards import FORMAT_WEIGHT, accuracy_reward, format_reward, is_correct


@dataclass
class CAPOConfig(GRPOConfig):
    """``GRPOConfig`` plus the CAPO fields (paper Eq. 14-23). Defaults: the reference code's values (the paper
    gives none), see ``resadapt_hf.capo``.

    Args:
        num_rollouts: N backbone rollouts per allocation.
        cost_mode: ``"capo"`` (default), ``"direct"``, ``"none"`` or ``"capo_centered"`` (ablations).
        kappa_mix, tau_fix, tau_s, lambda_pos, lambda_neg, lambda_capo, cost_gamma, eps_pos: CAPO coefficients
            (``cost_gamma`` is the paper's gamma, the residual linear cost pressure).
        direct_cost_weight: penalty weight of ``cost_mode="direct"``.
        lambda_sim, tau_sim, gamma_sim, eta_sim: temporal-similarity regulariser (Eq. 18-19).
        lambda_con, kappa_max: concentration regulariser (Eq. 20).
        format_weight: weight of the format reward added to the task reward before normalisation.
        train_backbone: co-train the backbone (ResAdapt-RL); not implemented.
    """

    num_rollouts: int = field(default=1, metadata={"help": "N backbone rollouts per allocation (paper: 1)."})
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
    format_weight: float = field(default=FORMAT_WEIGHT, metadata={"help": "Weight of the format reward."})
    video_num_frames: int | None = field(
        default=16, metadata={"help": "Frames sampled from each record's video (shared by Allocator and backbone)."}
    )
    video_fps: float | None = field(default=None, metadata={"help": "Sample videos at this rate instead."})
    train_backbone: bool = field(default=False, metadata={"help": "Co-train the backbone (not implemented)."})
    epsilon_high: float | None = field(default=0.28, metadata={"help": "Upper PPO clip (DAPO-style asymmetric)."})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Off: the trainable predictor is small and the encoder runs without grad."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.cost_mode not in COST_MODES:
            raise ValueError(f"cost_mode must be one of {COST_MODES}, got {self.cost_mode!r}")
        if self.num_rollouts < 1:
            raise ValueError(f"num_rollouts must be >= 1, got {self.num_rollouts}")
        if self.num_iterations != 1:
            raise ValueError("num_iterations must be 1: CAPOTrainer updates on-policy once per rollout batch")
        if self.per_device_train_batch_size % self.num_generations:
            raise ValueError(
                f"per_device_train_batch_size ({self.per_device_train_batch_size}) counts allocations and must be "
                f"a multiple of num_generations ({self.num_generations})"
            )
        if self.train_backbone:
            raise NotImplementedError("train_backbone=True (ResAdapt-RL co-training) is not implemented yet")


class Rollout(Protocol):
    """The frozen backbone seen by the trainer: answers one prompt under M allocations, N times each.

    ``__call__(record, frames [T, H, W, 3] uint8, frame_scales [M, T], num_rollouts) ->
    (completions: list of M lists of N strings, retention: [M] float tensor)``.
    """

    def __call__(self, record: dict, frames: torch.Tensor, frame_scales: torch.Tensor, num_rollouts: int): ...


class BackboneRollout:
    """Rollouts of a frozen HF backbone (``model.generate``) on inputs resized by a ``ResAdaptProcessor``.

    Args:
        backbone: e.g. ``Qwen2_5_VLForConditionalGeneration`` (kept frozen, prepared for per-chunk sizes).
        processor: the ``ResAdaptProcessor`` wrapping its processor.
        system_prompt: optional system message (e.g. ``rewards.SYSTEM_PROMPT``).
        max_new_tokens, temperature, do_sample: generation settings.
    """

    def __init__(self, backbone, processor, system_prompt=None, max_new_tokens=64, temperature=1.0, do_sample=True):
        self.backbone = processor.prepare_backbone(backbone).eval().requires_grad_(False)
        self.processor = processor
        self.system_prompt, self.max_new_tokens = system_prompt, max_new_tokens
        self.temperature, self.do_sample = temperature, do_sample

    def prompt(self, record: dict) -> str:
        question = record["question"]
        if record.get("options"):
            question = question + "\n" + "\n".join(record["options"])
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    @torch.no_grad()
    def __call__(self, record, frames, frame_scales, num_rollouts):
        text = self.prompt(record)
        # the decoded clip carries the file's frame rate (temporal positions / timestamps); raw frames otherwise
        clip = record.get("clip")
        video = clip if clip is not None and clip.frames is frames else frames
        completions, retention = [], []
        for scales in frame_scales.tolist():
            inputs = self.processor(text=[text], videos=[video], scales=scales, return_tensors="pt",
                                    return_allocation=True)
            allocation = inputs.pop("allocation")[0]
            inputs = inputs.to(self.backbone.device)
            out = self.backbone.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=self.do_sample,
                temperature=self.temperature if self.do_sample else None, num_return_sequences=num_rollouts,
            )
            new = out[:, inputs["input_ids"].shape[1]:]
            completions.append(self.processor.batch_decode(new, skip_special_tokens=True))
            retention.append(allocation.retention)
        return completions, torch.tensor(retention)


class CAPOTrainer(_BaseTrainer):
    """Trains a ``ResAdaptAllocator`` with CAPO against a frozen backbone (see the module docstring).

    Args:
        model: the Allocator (``ResAdaptAllocator``); its encoder stays frozen.
        rollout: a :class:`Rollout` (``BackboneRollout`` for a real/tiny backbone, or the synthetic needle
            reader).
        args: :class:`CAPOConfig`.
        train_dataset: records of the ``resadapt_hf.data`` schema (``video`` path or ``frames``, ``question``,
            ``answer``, ``problem_type``, optional ``options``/``segments``); videos are decoded once per step.
        reward_funcs: TRL-convention reward functions ``f(prompts, completions, **columns) -> list[float]``;
            default: accuracy (task reward, also used for correctness) + format (weighted by ``format_weight``).
        processor: the ``ResAdaptProcessor`` pushed with the Allocator by :meth:`push_to_hub`.
    """

    _tag_names = ["resadapt", "capo", "trl"]
    _name = "CAPO"
    _paper = {
        "title": "ResAdapt: Adaptive Resolution for Efficient Multimodal Reasoning",
        "id": "2603.28610",
    }

    def __init__(self, model, rollout: Rollout, args: CAPOConfig, train_dataset, reward_funcs=None,
                 processor=None, callbacks=None):
        self.rollout, self.processor = rollout, processor
        self.task_reward_func = accuracy_reward
        self.extra_reward_funcs: list[tuple[Callable, float]] = (
            [(format_reward, args.format_weight)] if reward_funcs is None else list(reward_funcs)
        )
        self._metrics: dict[str, list[float]] = {}
        self.skipped_nonfinite_steps = 0
        super().__init__(model=model, args=args, train_dataset=train_dataset, data_collator=self._decode,
                         callbacks=callbacks)

    def _decode(self, rows: list[dict]) -> list[dict]:
        """Decode each record's video once; the Allocator and every rollout read these frames."""
        sampling = {"num_frames": self.args.video_num_frames} if self.args.video_fps is None else {"fps": self.args.video_fps}
        return [decode_record(r, **sampling) for r in rows]

    # data ------------------------------------------------------------------------------------------------
    def get_train_dataloader(self) -> DataLoader:
        prompts = self.args.per_device_train_batch_size // self.args.num_generations
        generator = torch.Generator().manual_seed(self.args.seed)
        loader = DataLoader(self.train_dataset, batch_size=prompts, shuffle=True, generator=generator,
                            collate_fn=self._decode, drop_last=self.args.dataloader_drop_last)
        return self.accelerator.prepare(loader)

    # loss ------------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        args, totals = self.args, []
        for record in inputs:
            frames = torch.as_tensor(record["frames"])
            policy = model(frames=[frames], query=record["question"])  # the encoder runs once per prompt
            with torch.no_grad():
                actions, scales = policy.sample(args.num_generations)  # [M, 1, T]
            completions, retention = self.rollout(record, frames, scales[:, 0], args.num_rollouts)
            task, correct, total = self._rewards(record, completions)
            cost = proxy_cost(scales[:, 0], policy.min_scale, policy.max_scale)
            details = capo_advantage_details(
                total, correct, cost, kappa_mix=args.kappa_mix, tau_fix=args.tau_fix, tau_s=args.tau_s,
                lambda_pos=args.lambda_pos, lambda_neg=args.lambda_neg, lambda_capo=args.lambda_capo,
                gamma=args.cost_gamma, eps_pos=args.eps_pos, cost_mode=args.cost_mode,
                direct_cost_weight=args.direct_cost_weight, retention=retention,
            )
            log_probs = policy.log_prob(actions)  # [M, 1, T]
            parts = allocator_loss(
                log_probs, log_probs.detach(), details["advantages"][:, None], policy.frame_mask.expand_as(log_probs),
                scales=policy.deterministic_scales(), frame_features=policy.frame_features, alpha=policy.alpha,
                beta=policy.beta, policy_frame_mask=policy.frame_mask, lambda_sim=args.lambda_sim,
                lambda_con=args.lambda_con, eps_low=args.epsilon, eps_high=args.epsilon_high,
                tau_sim=args.tau_sim, gamma_sim=args.gamma_sim, eta_sim=args.eta_sim, kappa_max=args.kappa_max,
            )
            totals.append(parts["loss"])
            self._record(
                reward=total.mean().item(), accuracy=task.mean().item(), correct=correct.float().mean().item(),
                mean_scale=scales.mean().item(), retention=retention.mean().item(), cost=cost.mean().item(),
                tau_dyn=float(details["tau_dyn"]), clip_fraction=parts["clip_fraction"], l_sim=parts["sim"],
                l_con=parts["con"], concentration=policy.concentration.mean().item(),
            )
        loss = torch.stack(totals).mean()
        if not torch.isfinite(loss):
            self.skipped_nonfinite_steps += 1
            loss = loss.nan_to_num(0.0, 0.0, 0.0) * 0.0
        return loss

    def _rewards(self, record: dict, completions: list[list[str]]):
        flat = [c for row in completions for c in row]
        m, n = len(completions), len(completions[0])
        columns = {k: [record.get(k)] * len(flat) for k in ("answer", "problem_type", "options", "segments")}
        prompts = [record["question"]] * len(flat)
        task = torch.tensor(self.task_reward_func(prompts, flat, **columns), dtype=torch.float32)
        total = task.clone()
        for func, weight in self.extra_reward_funcs:
            total += weight * torch.tensor(func(prompts, flat, **columns), dtype=torch.float32)
        correct = torch.tensor([is_correct(float(s), record["problem_type"]) for s in task.tolist()])
        return task.view(m, n), correct.view(m, n), total.view(m, n)

    # non-finite gradients: drop the update entirely (params without grad are skipped by the optimiser) -------
    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if grads and not all(torch.isfinite(g).all() for g in grads):
            self.skipped_nonfinite_steps += 1
            for p in model.parameters():
                p.grad = None
        return loss

    # logging ---------------------------------------------------------------------------------------------
    def _record(self, **values):
        for key, value in values.items():
            self._metrics.setdefault(key, []).append(float(value))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        averaged = {k: sum(v) / len(v) for k, v in self._metrics.items() if v}
        logs = {**logs, **averaged, "skipped_nonfinite_steps": self.skipped_nonfinite_steps}
        self._metrics.clear()
        super().log(logs, start_time)

    # hub ---------------------------------------------------------------------------------------------------
    def _trained_processor(self):
        """The training processor's settings with this trainer's Allocator in front (what gets exported)."""
        if self.processor is None:
            raise ValueError("processor: pass the ResAdaptProcessor to CAPOTrainer to export a complete repo")
        settings = {k: getattr(self.processor, k) for k in ("min_scale", "max_scale", "budget", "max_visual_tokens",
                                                             "resample", "min_visual_tokens", "budget_tolerance")}
        return type(self.processor).from_backbone(
            self.processor.backbone_processor, allocator=self.accelerator.unwrap_model(self.model),
            backbone_name_or_path=self.processor.backbone_name_or_path, **settings,
        )

    def save_resadapt(self, output_dir: str | None = None):
        """Write the complete ResAdaptProcessor repo (remote code, processor config, allocator/ weights)."""
        output_dir = Path(output_dir or self.args.output_dir)
        self._trained_processor().save_pretrained(output_dir)
        return output_dir

    def _push_from_checkpoint(self, checkpoint_folder):
        # transformers would upload output_dir at every save (checkpoints, training_args.bin pickle, the bare
        # Allocator config): a ResAdapt repo is pushed once, exported and validated, by push_to_hub()
        return None

    def push_to_hub(self, commit_message: str | None = "End of CAPO training", blocking: bool = True,
                    token: str | None = None, revision: str | None = None, private: bool | None = None, **kwargs):
        """Export the complete ResAdapt repo (processor remote code, ``allocator/`` safetensors, model card with
        this run's ``CAPOConfig`` values) to ``<output_dir>/hub_export`` and upload it with
        :func:`resadapt_hf.hub.push_folder` (validated first).

        TRL/transformers meaning of the arguments: the repo is ``args.hub_model_id`` (default: the name of
        ``output_dir``; without a namespace, the token's user), ``private`` defaults to ``args.hub_private_repo``,
        ``token`` to ``args.hub_token``, ``revision`` to ``args.hub_revision`` (a branch, created when missing).
        ``blocking`` is accepted for compatibility; the upload always completes before returning.

        Args:
            kwargs: ``eval_dir`` (``resadapt eval`` output for the card's results), ``license``, ``datasets``,
                ``backbone`` (see :func:`resadapt_hf.hub.export_folder`).

        Returns:
            The upload's ``CommitInfo`` (None on processes other than the main one).
        """
        from .hub import export_folder, push_folder

        processor = self._trained_processor()  # raises before any side effect when there is no processor
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        if not self.is_world_process_zero():
            return None
        token = token if token is not None else self.args.hub_token
        private = private if private is not None else self.args.hub_private_repo
        revision = revision if revision is not None else getattr(self.args, "hub_revision", None)
        repo_id = self.args.hub_model_id or Path(self.args.output_dir).absolute().name
        if "/" not in repo_id:  # as transformers does: a bare name lives in the token owner's namespace
            import huggingface_hub

            repo_id = f"{huggingface_hub.whoami(token=token)['name']}/{repo_id}"
        training_args = {**self.args.to_dict(), "global_step": self.state.global_step}
        export_kwargs = {k: kwargs[k] for k in ("eval_dir", "license", "datasets", "backbone") if k in kwargs}
        folder = export_folder(
            processor, Path(self.args.output_dir) / "hub_export", training_args=training_args, repo_id=repo_id,
            revision=revision or "main", overwrite=True, **export_kwargs,
        )
        return push_folder(folder, repo_id, private=private, revision=revision,
                           commit_message=commit_message or "End of CAPO training", token=token)
