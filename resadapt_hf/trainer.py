"""CAPO training of the ResAdapt Allocator in front of a frozen backbone, on TRL's trainer base.

Why not ``trl.GRPOTrainer``: its ``__init__``, rollout and loss are built around a token-level LM policy (it reads
the policy's ``generation_config``, image token ids and per-token log-probs), while the Allocator is a continuous
per-frame Beta policy. So :class:`CAPOTrainer` subclasses TRL's ``_BaseTrainer`` (the ``transformers.Trainer`` that
TRL's trainers share: optimiser/scheduler, DDP/FSDP/DeepSpeed through ``accelerate``, checkpoint + resume with RNG
states, logging integrations, TRL model-card creation) and :class:`CAPOConfig` subclasses ``trl.GRPOConfig``
(``resadapt_hf.capo_config``: every inherited knob is honoured or refused).

One micro-step, per prompt (paper Algorithm 1): ONE Allocator forward for the micro-batch (the encoder runs once per
prompt), M sampled allocations, N rollouts of the frozen backbone per allocation through a
:class:`~resadapt_hf.rollout.Rollout` (all M x N in one ``generate`` call), rewards (TRL reward-function
convention), CAPO advantages per prompt group, then the per-frame PPO loss plus the similarity and concentration
regularisers (and, with ``beta`` > 0, a closed-form KL to the initial Allocator's Beta policy). Only the Allocator
receives gradients.

Multi-process (torchrun / ``accelerate launch``): prompts are sharded, the frozen backbone is replicated (one copy
per rank), gradients are averaged by DDP. A run's result does not depend on how its global batch is split: the
prompt order comes from one seeded permutation shared by every rank (:class:`PromptSampler`), each prompt's
allocation noise is drawn from a generator seeded by ``(seed, step, dataset index)`` (:func:`allocation_seed`),
advantages are computed within a prompt's group, and the loss is a mean over prompts. Metrics are gathered from all
ranks; exports are written once, by the main process, atomically.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from trl.trainer.base_trainer import _BaseTrainer

from .capo import allocator_loss, capo_advantage_details, proxy_cost
from .capo_config import CAPOConfig
from .data import decode_record
from .rewards import FORMAT_WEIGHT, accuracy_reward, format_reward, is_correct
from .rollout import BackboneRollout, GenerationSettings, Rollout, RolloutRequest

__all__ = ["BackboneRollout", "CAPOConfig", "CAPOTrainer", "PromptSampler", "Rollout", "allocation_seed", "beta_kl"]


def beta_kl(policy, reference) -> torch.Tensor:
    """Mean over real frames of the closed-form ``KL(Beta(alpha, beta) || Beta(alpha_ref, beta_ref))`` between two
    ``AllocatorPolicy`` of the same frames (the affine map to scales cancels in a KL)."""
    current = torch.distributions.Beta(policy.alpha.float(), policy.beta.float(), validate_args=False)
    anchor = torch.distributions.Beta(reference.alpha.float().to(policy.alpha.device),
                                      reference.beta.float().to(policy.alpha.device), validate_args=False)
    return torch.distributions.kl_divergence(current, anchor)[policy.frame_mask].mean()


def allocation_seed(seed: int, step: int, index: int) -> int:
    """Seed of one prompt's allocation noise at one generation step: a function of the run's seed, the global
    optimiser step and the record's dataset index only, never of the rank or the position in a batch (so 2 processes
    x 1 prompt draw exactly what 1 process x 2 prompts draws). Mixed through numpy's ``SeedSequence`` so nearby
    triples give unrelated streams."""
    for name, value in (("seed", seed), ("step", step), ("index", index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(np.random.SeedSequence([int(seed), int(step), int(index)]).generate_state(1, dtype=np.uint64)[0])


class PromptSampler(Sampler[int]):
    """Dataset indices in the order every rank agrees on, for ``accelerate``'s per-process batch sharding.

    Per epoch: one permutation seeded by ``(seed, epoch)`` (or the identity without shuffling), cut into global
    micro-batches of ``prompts_per_process * num_processes`` prompts; blocks of ``steps_per_generation`` global
    micro-batches are yielded ``num_iterations`` times in a row (the PPO reuse of a rollout batch, as TRL's
    ``RepeatSampler``). ``accelerate`` hands process r the r-th ``prompts_per_process`` slice of each global
    micro-batch, so the set of prompts in a global step is the same for any split of the same global batch.
    An incomplete last block is dropped (a CAPO group needs whole prompts on every rank).
    """

    def __init__(self, num_records: int, *, prompts_per_process: int, num_processes: int, steps_per_generation: int,
                 num_iterations: int, shuffle: bool, seed: int):
        self.num_records, self.shuffle, self.seed = num_records, shuffle, seed
        self.global_batch = prompts_per_process * num_processes
        self.block = self.global_batch * steps_per_generation
        self.num_iterations = num_iterations
        self.epoch = 0
        if num_records < self.block:
            raise ValueError(
                f"train_dataset: {num_records} records cannot fill one generation block of {self.block} prompts "
                f"(per_device_train_batch_size / num_generations x processes x steps_per_generation)"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            order = torch.randperm(self.num_records, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.num_records)
        order = order.tolist()
        for start in range(0, len(order) - self.block + 1, self.block):
            block = order[start:start + self.block]
            for _ in range(self.num_iterations):
                yield from block

    def __len__(self) -> int:
        return (self.num_records // self.block) * self.block * self.num_iterations


class _Indexed(Dataset):
    """Records with their dataset index (the allocation noise is keyed by it)."""

    def __init__(self, records):
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[int, dict]:
        return index, self.records[index]


@dataclass
class _PromptRollout:
    """One prompt's generated group: what the loss needs, also across ``num_iterations`` reuses."""

    actions: torch.Tensor  # [M, 1, T] latent actions
    advantages: torch.Tensor  # [M]
    old_log_probs: torch.Tensor | None  # [M, 1, T] at generation time (None: the current policy's, detached)


@dataclass
class _MicroBatch:
    indices: list[int]
    records: list[dict]
    rollouts: list[_PromptRollout] | None = None

    def __contains__(self, key) -> bool:
        # transformers probes `"labels" in batch` to count loss tokens; a CAPO micro-batch has no such column
        return False


# Per-prompt metrics gathered from every rank; "generation" ones once per rollout batch, "loss" ones every update.
_GENERATION_METRICS = ("reward", "accuracy", "correct", "mean_scale", "retention", "cost", "tau_dyn")
_LOSS_METRICS = ("clip_fraction", "l_sim", "l_con", "concentration", "kl")


class CAPOTrainer(_BaseTrainer):
    """Trains a ``ResAdaptAllocator`` with CAPO against a frozen backbone (see the module docstring).

    Args:
        model: the Allocator (``ResAdaptAllocator``); its encoder stays frozen.
        rollout: a :class:`~resadapt_hf.rollout.Rollout`: :class:`~resadapt_hf.rollout.BackboneRollout` for a HF
            backbone, or :class:`~resadapt_hf.synthetic.NeedleRollout`.
        args: :class:`CAPOConfig`.
        train_dataset: records of the ``resadapt_hf.data`` schema (``video`` path or ``frames``, ``question``,
            ``answer``, ``problem_type``, optional ``options``/``segments``); videos are decoded once per step.
        reward_funcs: a TRL reward function or a list of them, ``f(prompts, completions, **columns) -> list[float |
            None]`` (every record column is passed, repeated per completion, plus ``trainer_state``), weighted by
            ``args.reward_weights`` (default: 1.0 each). Default: ``[accuracy_reward, format_reward]`` weighted
            ``[1.0, FORMAT_WEIGHT]``.
        correctness_reward_func: the task reward whose score decides CAPO's correctness bit (``rewards.is_correct``
            per ``problem_type``); default ``accuracy_reward``. Its score is reused when it is also in
            ``reward_funcs``.
        processor: the ``ResAdaptProcessor`` exported with the Allocator by :meth:`save_resadapt` /
            :meth:`push_to_hub`.
    """

    _tag_names = ["resadapt", "capo", "trl"]
    _name = "CAPO"
    _paper = {
        "title": "ResAdapt: Adaptive Resolution for Efficient Multimodal Reasoning",
        "id": "2603.28610",
    }

    def __init__(self, model, rollout: Rollout, args: CAPOConfig, train_dataset, reward_funcs=None,
                 correctness_reward_func: Callable = accuracy_reward, processor=None, callbacks=None):
        if not isinstance(args, CAPOConfig):
            raise TypeError(f"args must be a CAPOConfig, got {type(args).__name__}")
        self.rollout, self.processor = rollout, processor
        self.reward_funcs, self.reward_weights = self._resolve_rewards(reward_funcs, args)
        if not callable(correctness_reward_func):
            raise TypeError(f"correctness_reward_func must be a TRL reward function, got {correctness_reward_func!r}")
        self.correctness_reward_func = correctness_reward_func
        if not getattr(rollout, "generates_text", True) and args.changed_generation_fields():
            raise ValueError(
                f"{', '.join(args.changed_generation_fields())}: this rollout ({type(rollout).__name__}) does not "
                f"generate text, so generation settings would do nothing; leave them at their defaults"
            )
        self.generation = GenerationSettings.from_grpo_config(args, prompts_per_call=args.rollout_prompts_per_call)
        if args.disable_dropout:
            for module in model.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = 0.0
        # beta > 0: the KL anchor is the Allocator as it is now, frozen (a copy: training moves `model`)
        self.ref_model = copy.deepcopy(model).eval().requires_grad_(False) if args.beta > 0 else None
        self._metrics: dict[str, list[float]] = {}
        self._buffer: dict[int, _MicroBatch] = {}
        self._micro_step = 0
        self.skipped_nonfinite_steps = 0
        super().__init__(model=model, args=args, train_dataset=train_dataset, data_collator=self._collate,
                         callbacks=callbacks)
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        if self.is_fsdp_enabled or (plugin is not None and plugin.zero_stage == 3):
            # the exported Allocator is read whole from the wrapped model; parameter sharding would export shards
            raise ValueError(
                "fsdp / deepspeed ZeRO-3: parameter sharding is not supported; the Allocator is small (43.7M "
                "trainable parameters), use DDP (torchrun / accelerate --multi_gpu) or DeepSpeed ZeRO-1/2"
            )
        if self.ref_model is not None:
            self.ref_model.to(self.accelerator.device)

    @staticmethod
    def _resolve_rewards(reward_funcs, args: CAPOConfig) -> tuple[list[Callable], list[float]]:
        if reward_funcs is None:
            funcs, weights = [accuracy_reward, format_reward], [1.0, FORMAT_WEIGHT]
        else:
            funcs = [reward_funcs] if callable(reward_funcs) else list(reward_funcs)
            weights = [1.0] * len(funcs)
        if not funcs:
            raise ValueError("reward_funcs: give at least one reward function")
        for i, func in enumerate(funcs):
            if not callable(func):
                raise TypeError(
                    f"reward_funcs[{i}]: expected a TRL reward function f(prompts, completions, **columns), got "
                    f"{func!r} (reward models by name are not supported: the rewards grade backbone answers)"
                )
        if args.reward_weights is not None:
            if len(args.reward_weights) != len(funcs):
                raise ValueError(f"reward_weights: {len(args.reward_weights)} weights for {len(funcs)} reward_funcs")
            weights = [float(w) for w in args.reward_weights]
        return funcs, weights

    # data ------------------------------------------------------------------------------------------------
    def _collate(self, items: list[tuple[int, dict]]) -> _MicroBatch:
        """Decode each record's video once; the Allocator and every rollout read these frames."""
        sampling = ({"num_frames": self.args.video_num_frames} if self.args.video_fps is None
                    else {"fps": self.args.video_fps})
        return _MicroBatch([i for i, _ in items], [decode_record(r, **sampling) for _, r in items])

    def get_train_dataloader(self) -> DataLoader:
        args = self.args
        prompts = args.per_device_train_batch_size // args.num_generations
        seed = args.data_seed if args.data_seed is not None else args.seed
        sampler = PromptSampler(
            len(self.train_dataset), prompts_per_process=prompts, num_processes=self.accelerator.num_processes,
            steps_per_generation=args.steps_per_generation, num_iterations=args.num_iterations,
            shuffle=args.shuffle_dataset, seed=seed,
        )
        loader = DataLoader(
            _Indexed(self.train_dataset), batch_size=prompts, sampler=sampler, collate_fn=self._collate,
            num_workers=args.dataloader_num_workers, pin_memory=False,
            persistent_workers=args.dataloader_persistent_workers and args.dataloader_num_workers > 0,
            prefetch_factor=args.dataloader_prefetch_factor if args.dataloader_num_workers > 0 else None,
            multiprocessing_context=args.dataloader_multiprocessing_context if args.dataloader_num_workers else None,
        )
        return self.accelerator.prepare(loader)

    def _prepare_inputs(self, inputs: _MicroBatch) -> _MicroBatch:
        """Generation (or reuse) of this micro-batch's rollouts. With ``num_iterations`` = 1 the rollouts are made
        inside :meth:`compute_loss` from the same forward pass as the loss; with K > 1 they are made once per
        block with a no-grad forward, the old log-probs are stored, and the K - 1 next passes over the same prompts
        (the sampler repeats them) reuse them, so the PPO ratio moves away from 1 and the clip acts."""
        args = self.args
        if args.num_iterations == 1:
            return inputs
        slot = self._micro_step % args.steps_per_generation
        fresh = self._micro_step % (args.steps_per_generation * args.num_iterations) < args.steps_per_generation
        self._micro_step += 1
        cached = self._buffer.get(slot)
        # a resumed run can start in the middle of a block: regenerate from the (same) repeated prompts then
        if fresh or cached is None or cached.indices != inputs.indices:
            model = self.accelerator.unwrap_model(self.model)
            with torch.no_grad():
                policy = self._policy(model, inputs.records)
                inputs.rollouts = self._generate(policy, inputs, store_old_log_probs=True)
            self._buffer[slot] = cached = inputs
        return cached

    # generation ------------------------------------------------------------------------------------------
    @staticmethod
    def _policy(model, records: Sequence[dict]):
        frames = [torch.as_tensor(r["frames"]) for r in records]
        return model(frames=frames, query=[r["question"] for r in records])  # one encoder pass per prompt

    def _generate(self, policy, batch: _MicroBatch, *, store_old_log_probs: bool) -> list[_PromptRollout]:
        args = self.args
        step = self.state.global_step
        samples, requests = [], []
        for b, (index, record) in enumerate(zip(batch.indices, batch.records)):
            prompt_policy = policy.select(b)
            generator = torch.Generator(device=prompt_policy.alpha.device)
            generator.manual_seed(allocation_seed(args.seed, step, index))
            with torch.no_grad():
                actions, scales = prompt_policy.sample(args.num_generations, generator=generator)  # [M, 1, T]
            samples.append((prompt_policy, actions, scales))
            frames = torch.as_tensor(record["frames"])
            requests.append(RolloutRequest(record=record, frames=frames, frame_scales=scales[:, 0].cpu()))
        results = self.rollout(requests, num_rollouts=args.num_rollouts, generation=self.generation)
        rollouts, rows = [], []
        for (prompt_policy, actions, scales), request, result in zip(samples, requests, results):
            task, correct, total = self._rewards(request.record, result.completions)
            cost = proxy_cost(scales[:, 0].float().cpu(), prompt_policy.min_scale, prompt_policy.max_scale)
            details = capo_advantage_details(
                total, correct, cost, kappa_mix=args.kappa_mix, tau_fix=args.tau_fix, tau_s=args.tau_s,
                lambda_pos=args.lambda_pos, lambda_neg=args.lambda_neg, lambda_capo=args.lambda_capo,
                gamma=args.cost_gamma, eps_pos=args.eps_pos, cost_mode=args.cost_mode,
                direct_cost_weight=args.direct_cost_weight, retention=result.retention,
            )
            old = prompt_policy.log_prob(actions).detach() if store_old_log_probs else None
            rollouts.append(_PromptRollout(actions, details["advantages"], old))
            rows.append([total.mean().item(), task.mean().item(), correct.float().mean().item(),
                         scales.float().mean().item(), result.retention.float().mean().item(), cost.mean().item(),
                         float(details["tau_dyn"])])
        self._record_gathered(_GENERATION_METRICS, rows)
        return rollouts

    def _rewards(self, record: dict, completions: list[list[str]]):
        """``(task [M, N], correct [M, N] bool, total [M, N])``: the correctness reward, its bit, and the weighted
        sum of ``reward_funcs`` (a ``None`` score counts as missing, as in TRL)."""
        flat = [c for row in completions for c in row]
        m, n = len(completions), len(completions[0])
        columns = {k: [v] * len(flat) for k, v in record.items() if not k.startswith("_")}
        for key in ("answer", "problem_type", "options", "segments"):
            columns.setdefault(key, [None] * len(flat))
        prompts = [record["question"]] * len(flat)
        scores = {}
        for func in {id(f): f for f in [*self.reward_funcs, self.correctness_reward_func]}.values():
            values = func(prompts, flat, trainer_state=self.state, **columns)
            scores[id(func)] = torch.tensor([np.nan if v is None else float(v) for v in values], dtype=torch.float32)
        task = scores[id(self.correctness_reward_func)]
        if torch.isnan(task).any():
            raise ValueError("correctness_reward_func returned None for a completion; it must grade every one")
        total = torch.zeros(len(flat))
        for func, weight in zip(self.reward_funcs, self.reward_weights):
            total += weight * scores[id(func)].nan_to_num(0.0)
        correct = torch.tensor([is_correct(float(s), record["problem_type"]) for s in task.tolist()])
        return task.view(m, n), correct.view(m, n), total.view(m, n)

    # loss ------------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs: _MicroBatch, return_outputs=False, num_items_in_batch=None):
        args = self.args
        policy = self._policy(model, inputs.records)
        rollouts = inputs.rollouts
        if rollouts is None:  # num_iterations = 1: on-policy, sampled from this very forward pass
            rollouts = self._generate(policy, inputs, store_old_log_probs=False)
        reference = None
        if self.ref_model is not None:
            with torch.no_grad():
                reference = self._policy(self.ref_model, inputs.records)
        totals, rows = [], []
        for b, rollout in enumerate(rollouts):
            prompt_policy = policy.select(b)
            log_probs = prompt_policy.log_prob(rollout.actions)  # [M, 1, T]
            old = rollout.old_log_probs if rollout.old_log_probs is not None else log_probs.detach()
            parts = allocator_loss(
                log_probs, old, rollout.advantages.to(log_probs.device)[:, None],
                prompt_policy.frame_mask.expand_as(log_probs), scales=prompt_policy.deterministic_scales(),
                frame_features=prompt_policy.frame_features, alpha=prompt_policy.alpha, beta=prompt_policy.beta,
                policy_frame_mask=prompt_policy.frame_mask, lambda_sim=args.lambda_sim, lambda_con=args.lambda_con,
                eps_low=args.epsilon, eps_high=args.epsilon_high, tau_sim=args.tau_sim, gamma_sim=args.gamma_sim,
                eta_sim=args.eta_sim, kappa_max=args.kappa_max,
            )
            loss, kl = parts["loss"], 0.0
            if reference is not None:
                kl_term = beta_kl(prompt_policy, reference.select(b))
                loss, kl = loss + args.beta * kl_term, kl_term.item()
            totals.append(loss)
            rows.append([parts["clip_fraction"], parts["sim"], parts["con"],
                         prompt_policy.concentration[prompt_policy.frame_mask].mean().item(), kl])
        self._record_gathered(_LOSS_METRICS, rows)
        loss = torch.stack(totals).mean()
        if not torch.isfinite(loss):
            self.skipped_nonfinite_steps += 1
            loss = loss.nan_to_num(0.0, 0.0, 0.0) * 0.0
        return loss

    # non-finite gradients: drop the update entirely (params without grad are skipped by the optimiser) -------
    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        # under DDP the gradients are already all-reduced, so every rank takes the same decision
        if grads and not all(torch.isfinite(g).all() for g in grads):
            self.skipped_nonfinite_steps += 1
            for p in model.parameters():
                p.grad = None
        return loss

    # logging ---------------------------------------------------------------------------------------------
    def _record_gathered(self, names: Sequence[str], rows: list[list[float]]) -> None:
        """Per-prompt metric rows of this rank, gathered from every rank (a collective: all ranks call it with the
        same number of prompts), so logged means are over the global batch, not rank 0's share."""
        local = torch.tensor(rows, dtype=torch.float32, device=self.accelerator.device).view(len(rows), len(names))
        gathered = self.accelerator.gather(local).cpu()
        for column, name in enumerate(names):
            self._metrics.setdefault(name, []).extend(gathered[:, column].tolist())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        averaged = {k: sum(v) / len(v) for k, v in self._metrics.items() if v}
        logs = {**logs, **averaged, "skipped_nonfinite_steps": self.skipped_nonfinite_steps}
        self._metrics.clear()
        super().log(logs, start_time)

    # export ----------------------------------------------------------------------------------------------
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

    def save_resadapt(self, output_dir: str | None = None) -> Path:
        """Write the complete ResAdaptProcessor repo (remote code, processor config, ``allocator/`` weights).

        Written once, by the main process, into a temporary folder next to the target and then moved into place
        entry by entry (``os.replace``), so a reader never sees a half-written file; the other ranks wait at a
        barrier. Call it on every rank.
        """
        output_dir = Path(output_dir or self.args.output_dir)
        processor = self._trained_processor()
        if self.accelerator.is_main_process:
            write_folder_atomically(processor.save_pretrained, output_dir)
        self.accelerator.wait_for_everyone()
        return output_dir

    def _push_from_checkpoint(self, checkpoint_folder):
        # transformers would upload output_dir at every save (checkpoints, training_args.bin pickle, the bare
        # Allocator config): a ResAdapt repo is pushed once, exported and validated, by push_to_hub()
        return None

    def push_to_hub(self, commit_message: str | None = "End of CAPO training", blocking: bool = True,
                    token: str | None = None, revision: str | None = None, private: bool | None = None, **kwargs):
        """Export the complete ResAdapt repo (processor remote code, ``allocator/`` safetensors, model card with
        this run's ``CAPOConfig`` values) to ``<output_dir>/hub_export`` and upload it with
        :func:`resadapt_hf.hub.push_folder` (validated first). Main process only; the other ranks wait.

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
        result = None
        if self.is_world_process_zero():
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
            result = push_folder(folder, repo_id, private=private, revision=revision,
                                 commit_message=commit_message or "End of CAPO training", token=token)
        self.accelerator.wait_for_everyone()
        return result


def write_folder_atomically(write: Callable[[Path], object], target: Path) -> None:
    """Run ``write(folder)`` into a fresh temporary folder beside ``target``, then move each written entry into
    ``target`` with ``os.replace`` (a sub-folder is swapped whole: the old one is renamed away first). Entries of
    ``target`` that ``write`` does not produce (checkpoints, logs) are left alone."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(staging)
        for entry in sorted(staging.iterdir()):
            destination = target / entry.name
            if entry.is_dir() and destination.exists():
                retired = Path(tempfile.mkdtemp(prefix=f".{entry.name}.old.", dir=target))
                os.replace(destination, retired / entry.name)
                os.replace(entry, destination)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                os.replace(entry, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
