"""CAPO (Cost-Aware Policy Optimization) for the ResAdapt Allocator: pure, stateless torch functions.

Paper: ResAdapt, arXiv 2603.28610v2, Sec. 3.3-3.4 (Eqs. 13-23); the equations, defaults and deviations are written
out in ``docs/capo.md``. Nothing here owns a model, an optimiser or a trainer; a trainer calls these per prompt
group / per mini-batch.

* :func:`proxy_cost` -- Eq. 13, the linear cost proxy ``c = (mean_t s_t - s_min) / (s_max - s_min)`` in [0, 1].
  Used only inside the optimiser; reported budgets are the retention ratio from real token counts.
* :func:`capo_advantages` / :func:`capo_advantage_details` -- Eqs. 14-17 for ONE prompt group of M allocations x N
  rollouts, averaged over N (the per-allocation advantage of Eq. 21), plus the ablation modes of the paper's
  Sec. 4.4.2.
* :func:`ppo_clip_loss` -- Eqs. 21-22, per-frame PPO clip on the Beta log-probs with the reference code's asymmetric
  (DAPO) clip 0.2 / 0.28.
* :func:`temporal_similarity_loss` -- Eqs. 18-19, the hinge ``L_sim``.
* :func:`concentration_loss` -- Eq. 20, the hinge ``L_con``.
* :func:`allocator_loss` -- Eq. 23, ``L = L_ppo + lambda_sim L_sim + lambda_con L_con`` with logging floats.

Defaults. The paper states NO coefficient values. Every default below is the value in the authors' released
code (github.com/Xnhyacinth/ResAdapt at commit 3816930: ``resadapt/scripts/main.sh``,
``resadapt/reward_fn/advantage.py``, ``resadapt/allocator/smol_config.py``; "reference" below) mapped onto the
paper's symbols, except where noted. Measurements cited here were made on this package's synthetic needle task
(``resadapt_hf.synthetic``):

============== ========= ===================================================================================
symbol          default   why
============== ========= ===================================================================================
kappa_mix       0.5       reference `alpha` (pivot = 0.5 * mean cost + 0.5 * tau_fix)
tau_fix         0.4       reference `centered_term` in main.sh (function default 0.5)
tau_s           0.15      reference `tau`
lambda_pos      0.7       reference `right_scale`; paper requires lambda_neg > lambda_pos > 0
lambda_neg      1.3       reference `wrong_scale`
lambda_capo     0.25      reference `cost_encouragement_coef` in main.sh
gamma           0.05      reference `cost_penalty_coef` ("gas tax")
eps_pos         1e-3      reference clamp of correct advantages
eps_low/high    0.2/0.28  reference `clip_ratio_low/high` (DAPO asymmetric clip); the paper gives no epsilon
tau_sim         0.55      reference `sim_tau`
gamma_sim       0.12      reference `sim_temp`
eta_sim         0.2       OUR choice (the reference has no eta; its L_sim has another form): see
                          :func:`temporal_similarity_loss`
kappa_max       30.0      OUR choice: without a hinge, alpha + beta grew past 1000 and runs hit NaN at lr 3e-3;
                          a hinge at 30 kept them stable (measured)
lambda_sim      1e-3      reference `sim_scale_coef`
lambda_con      5e-4      reference `concentration_coef`; the stable lr 3e-3 runs above needed 0.01 (with cap 30)
                          to stop alpha + beta from running past 1000 -> NaN: raise it for large learning rates
============== ========= ===================================================================================
"""

from __future__ import annotations

import math
import numbers
from typing import Literal, get_args

import torch
import torch.nn.functional as F

__all__ = [
    "COST_MODES",
    "CostMode",
    "allocator_loss",
    "capo_advantage_details",
    "capo_advantages",
    "concentration_loss",
    "ppo_clip_loss",
    "proxy_cost",
    "temporal_similarity_loss",
]

CostMode = Literal["capo", "direct", "none", "capo_centered"]
#: Allowed ``cost_mode`` values, in the order of :data:`CostMode`.
COST_MODES: tuple[str, ...] = get_args(CostMode)

# Group z-score: (x - mean) / (std_pop + ZSCORE_EPS), and exactly 0 when std_pop < ZSCORE_MIN_STD. Both constants are
# the reference code's `_group_zscore` (advantage.py L121-127). The threshold keeps float noise in "equal" rewards
# (e.g. 0.1 + 0.2 vs 0.3) from being blown up to +-1 advantages.
ZSCORE_EPS = 1e-6
ZSCORE_MIN_STD = 1e-4
# Log-ratios are clamped before exp, as in the reference allocator update (dp_allocator.py), so a stale or
# mismatched old log-prob cannot overflow the ratio to inf.
LOG_RATIO_CLAMP = 20.0
# Reference-code threshold that turns an allocation's mean accuracy into "correct" (advantage.py L572-575); used by
# the "capo_centered" variant only.
CENTERED_CORRECT_THRESHOLD = 0.35


# ---------------------------------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------------------------------


def _check_number(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number within the given bounds, else ValueError naming ``name`` and the allowed range."""
    lo = "-inf" if low is None else repr(low)
    hi = "inf" if high is None else repr(high)
    interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return value


def _check_tensor(name: str, value, *, ndim: int | None = None, min_ndim: int | None = None) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if min_ndim is not None and value.dim() < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {tuple(value.shape)}")
    if value.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(value.shape)}")
    return value


def _float(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (float64 stays float64): the arithmetic here is cheap and precision-sensitive."""
    return x.to(torch.promote_types(x.dtype, torch.float32)) if x.is_floating_point() else x.float()


def _check_binary(name: str, value: torch.Tensor) -> torch.Tensor:
    """bool, or numbers that are all 0 or 1 -> bool tensor."""
    if value.dtype == torch.bool:
        return value
    if value.is_complex() or not bool(((value == 0) | (value == 1)).all()):
        raise ValueError(f"{name} must be bool or contain only 0/1 values")
    return value != 0


def _check_mask(name: str, mask, shape: torch.Size, device: torch.device) -> torch.Tensor:
    """Optional frame mask of exactly ``shape`` (True / 1 = valid frame) -> bool tensor; None -> all valid."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    mask = _check_tensor(name, mask)
    if mask.shape != shape:
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(mask.shape)}")
    return _check_binary(name, mask).to(device)


def _check_finite(name: str, value: torch.Tensor, where: torch.Tensor | None = None) -> None:
    finite = torch.isfinite(value)
    if where is not None:
        finite = finite | ~where
    if not bool(finite.all()):
        raise ValueError(f"{name} must be finite" + (" on valid frames" if where is not None else ""))


def _group_zscore(x: torch.Tensor) -> torch.Tensor:
    """GRPO z-score over ALL elements of ``x``: (x - mean) / (population std + 1e-6); zeros if std < 1e-4."""
    mean = x.mean()
    std = x.std(correction=0)
    if float(std) < ZSCORE_MIN_STD:
        return torch.zeros_like(x)
    return (x - mean) / (std + ZSCORE_EPS)


# ---------------------------------------------------------------------------------------------------------------
# cost
# ---------------------------------------------------------------------------------------------------------------


def proxy_cost(
    scales: torch.Tensor,
    min_scale: float = 0.2,
    max_scale: float = 1.8,
    frame_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Paper Eq. 13 linear cost proxy ``c = (mean_t s_t - s_min) / (s_max - s_min)``, clamped to [0, 1].

    Linear rather than the quadratic retention ratio because the square "amplifies a few large allocations and
    inflates gradient variance" (arXiv 2603.28610, Sec. 3.3). The mean runs over valid frames only, so padding
    never counts.

    Args:
        scales: [..., T] per-frame scales (e.g. sampled allocations [M, T] or [M, B, T]).
        min_scale, max_scale: the policy's scale range, 0 < min_scale < max_scale (paper: 0.2, 1.8).
        frame_mask: optional [..., T] bool / 0-1, True = valid frame; every row needs at least one valid frame.
    Returns:
        [...] cost in [0, 1] (float32, or float64 for float64 input). Differentiable inside (0, 1), though the
        trainer uses it as a constant.
    """
    scales = _check_tensor("scales", scales, min_ndim=1)
    min_scale = _check_number("min_scale", min_scale, low=0.0, low_open=True)
    max_scale = _check_number("max_scale", max_scale, low=min_scale, low_open=True)
    mask = _check_mask("frame_mask", frame_mask, scales.shape, scales.device)
    count = mask.sum(-1)
    if not bool((count > 0).all()):
        raise ValueError("frame_mask must leave at least one valid frame in every row")
    s = _float(scales)
    _check_finite("scales", s, mask)
    s = torch.where(mask, s, torch.zeros_like(s))
    mean = s.sum(-1) / count.to(s.dtype)
    return ((mean - min_scale) / (max_scale - min_scale)).clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------------------------------------
# CAPO advantages
# ---------------------------------------------------------------------------------------------------------------


def capo_advantage_details(
    rewards: torch.Tensor,
    correct: torch.Tensor,
    cost: torch.Tensor,
    *,
    kappa_mix: float = 0.5,
    tau_fix: float = 0.4,
    tau_s: float = 0.15,
    lambda_pos: float = 0.7,
    lambda_neg: float = 1.3,
    lambda_capo: float = 0.25,
    gamma: float = 0.05,
    eps_pos: float = 1e-3,
    cost_mode: CostMode = "capo",
    direct_cost_weight: float = 0.5,
    retention: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """CAPO advantages of ONE prompt group with every intermediate, for logging. See :func:`capo_advantages`.

    Returns:
        dict of tensors (no gradient):
            ``advantages`` [M]: the per-allocation advantage A_m (mean over the N rollouts) -- what PPO uses.
            ``per_rollout`` [M, N]: A_{m,n} after the floor.
            ``a_base`` [M, N]: the group z-score actually used (of the task reward; of reward - weight * penalty in
                "direct" mode; of the per-allocation accuracy, broadcast over N, in "capo_centered").
            ``shaping`` [M, N]: S_{m,n} (zeros in "none"/"direct"; the centred shape in "capo_centered").
            ``a_tilde`` [M, N]: A~_{m,n} before the floor.
            ``floor_active`` [M, N] bool: where the positive floor eps_pos replaced A~.
            ``tau_dyn`` []: the dynamic pivot of Eq. 14 (computed in every mode, used only by the CAPO modes).
    """
    rewards = _check_tensor("rewards", rewards, ndim=2)
    correct = _check_tensor("correct", correct, ndim=2)
    cost = _check_tensor("cost", cost, ndim=1)
    if correct.shape != rewards.shape:
        raise ValueError(f"correct must have the shape of rewards {tuple(rewards.shape)}, got {tuple(correct.shape)}")
    num_alloc, num_rollouts = rewards.shape
    if cost.shape != (num_alloc,):
        raise ValueError(f"cost must have shape (M,) = ({num_alloc},), got {tuple(cost.shape)}")
    kappa_mix = _check_number("kappa_mix", kappa_mix, low=0.0, high=1.0)
    tau_fix = _check_number("tau_fix", tau_fix, low=0.0, high=1.0)
    tau_s = _check_number("tau_s", tau_s, low=0.0, low_open=True)
    lambda_pos = _check_number("lambda_pos", lambda_pos, low=0.0)
    lambda_neg = _check_number("lambda_neg", lambda_neg, low=0.0)
    lambda_capo = _check_number("lambda_capo", lambda_capo, low=0.0)
    gamma = _check_number("gamma", gamma, low=0.0)
    eps_pos = _check_number("eps_pos", eps_pos, low=0.0, low_open=True)
    direct_cost_weight = _check_number("direct_cost_weight", direct_cost_weight, low=0.0)
    if cost_mode not in COST_MODES:
        raise ValueError(f"cost_mode must be one of {COST_MODES}, got {cost_mode!r}")

    r = _float(rewards).detach()
    u = _check_binary("correct", correct.detach()).to(r.device)
    c = _float(cost).detach().to(device=r.device, dtype=r.dtype)
    _check_finite("rewards", r)
    _check_finite("cost", c)
    if not bool(((c >= 0) & (c <= 1)).all()):
        raise ValueError("cost must lie in [0, 1] (the normalised proxy cost of proxy_cost)")
    if retention is not None:
        retention = _check_tensor("retention", retention, ndim=1)
        if retention.shape != (num_alloc,):
            raise ValueError(f"retention must have shape (M,) = ({num_alloc},), got {tuple(retention.shape)}")
        retention = _float(retention).detach().to(device=r.device, dtype=r.dtype)
        _check_finite("retention", retention)
        if not bool((retention >= 0).all()):
            raise ValueError("retention must be >= 0")

    # Eq. 14: the pivot mixes the group's own mean cost (state-aware baseline) with the global target.
    tau_dyn = kappa_mix * c.mean() + (1.0 - kappa_mix) * tau_fix
    cost_col = c[:, None]  # [M, 1], broadcast over the N rollouts of each allocation
    zeros = torch.zeros_like(r)
    no_floor = torch.zeros_like(u)

    if cost_mode == "none":
        # Accuracy only ("beta w/o cost"): nothing pulls the scale down, the paper's run drifts to s ~ s_max.
        a_base = _group_zscore(r)
        shaping, a_tilde, per_rollout, floor_active = zeros, a_base, a_base, no_floor
    elif cost_mode == "direct":
        # "beta w/ direct cost": z-score of the Lagrangian reward R - w * C. This pushes towards s_min, and the
        # z-scoring is why (measured, synthetic needle task): in an all-correct or all-wrong group R is constant, so
        # R - w C standardises to -(C - mean C) / std C -- pure cost, with unit size WHATEVER w is (w cancels).
        # Most groups saturate once the task is easy or hard, so cost differences of any size get +-1 advantages
        # and dominate. With a plain group-mean baseline (no std division) the measured runs did not collapse.
        penalty = retention if retention is not None else c
        a_base = _group_zscore(r - direct_cost_weight * penalty[:, None])
        shaping, a_tilde, per_rollout, floor_active = zeros, a_base, a_base, no_floor
    elif cost_mode == "capo":
        a_base = _group_zscore(r)
        # Eq. 15: correct & cheap -> moderate bonus; wrong & expensive -> stronger penalty (lambda_neg > lambda_pos).
        bonus = lambda_pos * torch.sigmoid((tau_dyn - cost_col) / tau_s)
        penalty = -lambda_neg * torch.sigmoid((cost_col - tau_dyn) / tau_s)
        shaping = torch.where(u, bonus, penalty)
        # Eq. 16: residual linear cost pressure gamma * c.
        a_tilde = a_base + lambda_capo * shaping - gamma * cost_col
        # Eq. 17: a correct rollout never gets a non-positive advantage, so cost terms cannot teach the policy to
        # avoid allocations that answered correctly.
        floor_active = u & (a_tilde < eps_pos)
        per_rollout = torch.where(u, a_tilde.clamp_min(eps_pos), a_tilde)
    else:  # "capo_centered": the reference code's realisation (advantage.py L880-1087), NOT the paper's Eq. 15.
        # Per allocation j: acc_j = mean reward over its N rollouts; correct_j = fraction of correct rollouts > 0.35
        # (the reference thresholds its mean accuracy at 0.35; with 0/1 rewards and `correct` = reward these agree).
        acc = r.mean(1)
        correct_alloc = u.to(r.dtype).mean(1) > CENTERED_CORRECT_THRESHOLD
        base = _group_zscore(acc)  # z-score over the M allocations, not the M*N rollouts
        cheap = torch.sigmoid((tau_dyn - c) / tau_s) - 0.5  # r- in (-0.5, 0.5): > 0 when cheaper than the pivot
        acc_weight = acc.clamp_min(0.0).sqrt().clamp_min(0.05)
        difficulty = 1.0 - acc
        # Centred sigma - 0.5 makes the wrong-answer term (+lambda_neg * d * (-cheap)) POSITIVE above the pivot:
        # this variant REWARDS higher cost on wrong answers (pushes toward resolution when the model fails).
        shape = torch.where(correct_alloc, lambda_pos * acc_weight * cheap, lambda_neg * difficulty * (-cheap))
        tilde = base + lambda_capo * shape - gamma * c
        floor = correct_alloc & (tilde < eps_pos)
        adv = torch.where(correct_alloc, tilde.clamp_min(eps_pos), tilde)
        expand = (num_alloc, num_rollouts)
        a_base, shaping, a_tilde, per_rollout, floor_active = (
            x[:, None].expand(expand) for x in (base, shape, tilde, adv, floor)
        )

    return {
        "advantages": per_rollout.mean(1),
        "per_rollout": per_rollout,
        "a_base": a_base,
        "shaping": shaping,
        "a_tilde": a_tilde,
        "floor_active": floor_active,
        "tau_dyn": tau_dyn,
    }


def capo_advantages(
    rewards: torch.Tensor,
    correct: torch.Tensor,
    cost: torch.Tensor,
    *,
    kappa_mix: float = 0.5,
    tau_fix: float = 0.4,
    tau_s: float = 0.15,
    lambda_pos: float = 0.7,
    lambda_neg: float = 1.3,
    lambda_capo: float = 0.25,
    gamma: float = 0.05,
    eps_pos: float = 1e-3,
    cost_mode: CostMode = "capo",
    direct_cost_weight: float = 0.5,
    retention: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-allocation CAPO advantages A_m for ONE prompt group (paper Eqs. 14-17, then the mean over N of Eq. 21).

    ``cost_mode="capo"`` (default) is exactly the paper:

    * ``A_base``: group z-score of all M*N task rewards, ``(R - mean) / (population std + 1e-6)``; zeros when the
      std is below 1e-4 (all rewards equal), as in the reference code.
    * Eq. 14: ``tau_dyn = kappa_mix * mean_m(c_m) + (1 - kappa_mix) * tau_fix``.
    * Eq. 15: ``S = +lambda_pos * sigmoid((tau_dyn - c) / tau_s)`` if correct, else
      ``-lambda_neg * sigmoid((c - tau_dyn) / tau_s)``.
    * Eq. 16: ``A~ = A_base + lambda_capo * S - gamma * c``.
    * Eq. 17: ``A = max(A~, eps_pos)`` for correct rollouts, ``A~`` otherwise; the result is the mean over N.

    Other modes (the paper's Sec. 4.4.2 ablation and the authors' released code):

    * ``"none"``: accuracy only, mean over N of ``A_base`` ("beta w/o cost"; the paper's run goes to s ~ s_max).
    * ``"direct"``: z-score of ``R - direct_cost_weight * penalty`` over the M*N rollouts, penalty = ``retention``
      if given else ``cost``; no shaping, no floor ("beta w/ direct cost"). It pushes every frame towards s_min
      (benchmarks/synthetic_capo.py: distractors 0.36 and accuracy lost in training), and the z-scoring is the
      cause: in all-correct / all-wrong groups the standardised reward is pure cost with unit size for ANY weight
      > 0 (the weight cancels); with a plain group-mean baseline (no std division) the measured runs did not
      collapse (``docs/capo.md``).
    * ``"capo_centered"``: the authors' released code's variant (``resadapt/reward_fn/advantage.py``), NOT the
      default:
      per allocation, ``acc_j`` = mean reward, correct_j = fraction of correct rollouts > 0.35, base = z-score of
      ``acc`` over the M allocations, ``r- = sigmoid((tau_dyn - c)/tau_s) - 0.5``, shape =
      ``lambda_pos * max(sqrt(acc), 0.05) * r-`` if correct_j else ``lambda_neg * (1 - acc) * (-r-)``,
      ``A = base + lambda_capo * shape - gamma * c``, floored at eps_pos for correct_j. The centring makes wrong
      answers ABOVE the pivot get a positive shape, i.e. it rewards higher cost on wrong answers (the opposite of
      Eq. 15); on the synthetic needle task it gave no compression (measured).

    Args:
        rewards: [M, N] task rewards R_{m,n} (M allocations x N rollouts each), finite.
        correct: [M, N] bool or 0/1 correctness u_{m,n} (exact match, or reward >= 0.35 for continuous metrics).
        cost: [M] proxy costs c_m in [0, 1] (:func:`proxy_cost`).
        kappa_mix: in [0, 1]. tau_fix: in [0, 1] (a cost target). tau_s: > 0.
        lambda_pos, lambda_neg, lambda_capo, gamma, direct_cost_weight: >= 0. eps_pos: > 0.
        cost_mode: one of :data:`COST_MODES`.
        retention: optional [M] retention ratios >= 0, used only by ``"direct"``.
    Returns:
        [M] advantages (float32, or float64 for float64 rewards), no gradient. Use
        :func:`capo_advantage_details` for tau_dyn and the per-rollout S / A~ / A.
    Raises:
        ValueError naming the offending argument and its allowed range or shape.
    """
    return capo_advantage_details(
        rewards,
        correct,
        cost,
        kappa_mix=kappa_mix,
        tau_fix=tau_fix,
        tau_s=tau_s,
        lambda_pos=lambda_pos,
        lambda_neg=lambda_neg,
        lambda_capo=lambda_capo,
        gamma=gamma,
        eps_pos=eps_pos,
        cost_mode=cost_mode,
        direct_cost_weight=direct_cost_weight,
        retention=retention,
    )["advantages"]


# ---------------------------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------------------------


def ppo_clip_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    frame_mask: torch.Tensor | None = None,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame PPO-clip loss of the Allocator (paper Eqs. 21-22, with the reference code's DAPO asymmetric clip).

    ``r_t = exp(logp_t - old_logp_t)`` per frame (log-ratio clamped to +-20 before exp, as the reference does, so a
    stale old log-prob cannot overflow); the allocation's advantage is broadcast over its frames;
    ``loss = -mean over valid frames of min(r A, clip(r, 1 - eps_low, 1 + eps_high) A)`` ("token-mean" with frames
    as tokens; equals the paper's 1/(MT) sum when every frame is valid).

    Args:
        log_probs: [..., T] per-frame Beta log-probs of the stored latent actions under the current policy
            (differentiable). Any leading dims: [M, T], [B, M, T], or the policy's own [M, B, T] layout.
        old_log_probs: same shape, from the behaviour policy (treated as a constant).
        advantages: ``log_probs.shape[:-1]``, e.g. [M] (from :func:`capo_advantages`); treated as a constant.
        frame_mask: optional ``log_probs.shape`` bool / 0-1, True = valid frame. Padded frames contribute nothing
            (their log-probs may even be non-finite). At least one frame must be valid.
        eps_low: in [0, 1). eps_high: >= 0.
    Returns:
        (loss [] differentiable, clip_fraction [] detached): the fraction of valid frames where the clipped term was
        strictly smaller than the unclipped one, i.e. selected by the min and carrying no gradient (verl's clipfrac).
    """
    log_probs = _check_tensor("log_probs", log_probs, min_ndim=1)
    old_log_probs = _check_tensor("old_log_probs", old_log_probs)
    advantages = _check_tensor("advantages", advantages)
    if old_log_probs.shape != log_probs.shape:
        raise ValueError(
            f"old_log_probs must have the shape of log_probs {tuple(log_probs.shape)}, got {tuple(old_log_probs.shape)}"
        )
    if advantages.shape != log_probs.shape[:-1]:
        raise ValueError(
            f"advantages must have shape log_probs.shape[:-1] = {tuple(log_probs.shape[:-1])}, "
            f"got {tuple(advantages.shape)}"
        )
    eps_low = _check_number("eps_low", eps_low, low=0.0, high=1.0, high_open=True)
    eps_high = _check_number("eps_high", eps_high, low=0.0)
    mask = _check_mask("frame_mask", frame_mask, log_probs.shape, log_probs.device)
    num_valid = mask.sum()
    if int(num_valid) == 0:
        raise ValueError("frame_mask must leave at least one valid frame")
    adv = _float(advantages).detach()
    _check_finite("advantages", adv)

    num_frames = log_probs.shape[-1]
    lp = _float(log_probs).reshape(-1, num_frames)
    old = _float(old_log_probs).detach().reshape(-1, num_frames)
    mask = mask.reshape(-1, num_frames)
    adv = adv.reshape(-1, 1).to(lp.dtype)
    # where() before exp: padded frames get ratio 1 and zero gradient, so garbage there cannot produce NaN.
    log_ratio = torch.where(mask, lp - old, torch.zeros_like(lp)).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * adv
    objective = torch.minimum(unclipped, clipped)
    denom = num_valid.to(lp.dtype)
    loss = -(objective * mask).sum() / denom
    clip_fraction = ((clipped < unclipped) & mask).sum().to(lp.dtype).detach() / denom
    return loss, clip_fraction


def temporal_similarity_loss(
    scales: torch.Tensor,
    frame_features: torch.Tensor,
    frame_mask: torch.Tensor | None = None,
    tau_sim: float = 0.55,
    gamma_sim: float = 0.12,
    eta_sim: float = 0.2,
) -> torch.Tensor:
    """Temporal-similarity regulariser L_sim (paper Eqs. 18-19): redundant neighbours should not BOTH be large.

    ``w_t = sigmoid((cos(f_t, f_{t+1}) - tau_sim) / gamma_sim)`` and
    ``L_sim = mean over valid adjacent pairs of w_t * max(0, log s_t + log s_{t+1} + eta_sim)``; a pair counts only
    when both frames are valid. The mean pools all pairs of all rows (the paper's 1/(T-1) per video when every
    video has the same length).

    Which scales: L_sim is a differentiable regulariser, not a score-function term, so it must act on scales that
    carry gradient to the policy -- the trainer passes the policy's deterministic scales (the Beta mean mapped to a
    scale, ``AllocatorPolicy.deterministic_scales()``, the inference action), NOT the sampled allocations, which
    are constants.

    Why the features are detached: w_t is a fixed measure of redundancy. In the paper f_t are the frozen encoder's
    coarse features; in this package ``AllocatorPolicy.frame_features`` are the trainable predictor's pooled h_t.
    Either way, letting gradient through w_t would let the optimiser lower L_sim by pushing neighbouring features
    apart (decreasing w_t) instead of lowering the scales, corrupting the representation for a regulariser's sake.
    (The reference code does not detach; we deliberately do.)

    Why ``eta_sim = 0.2``: the hinge is zero when ``s_t * s_{t+1} <= exp(-eta_sim)``, so for a redundant pair the
    symmetric equilibrium is ``s = exp(-eta_sim / 2)`` each. The Allocator starts with every Beta mean at scale
    1.0 (``init_mean_scale``): with eta 0 the hinge sits exactly at its kink there (ReLU gradient 0) and penalises
    only pairs that both upscale; eta 0.2 is active from the first step (threshold product 0.82) while capping two
    identical frames at exp(-0.1) ~ 0.90 each, which is still readable (measured on the synthetic needle task: the
    calibrated reader is at 0.85-0.90 accuracy for s in 0.8-1.0, and eta 0.7 -> 0.70 each pushed two identical
    needles below readability, accuracy 0.68). The penalty is symmetric: it lowers both frames equally and does not
    break symmetry between identical frames. It also allows an asymmetric pair (e.g. 1.8 and 0.45) at no cost.

    Args:
        scales: [..., T] positive, differentiable scales (e.g. [B, T] deterministic scales, or [M, T]).
        frame_features: [..., T, D] per-frame features (detached inside).
        frame_mask: optional [..., T] bool / 0-1, True = valid frame.
        tau_sim: similarity threshold in (0, 1). gamma_sim: temperature > 0. eta_sim: finite offset (any sign).
    Returns:
        [] loss; 0 (still connected to ``scales``) when no valid adjacent pair exists.
    """
    scales = _check_tensor("scales", scales, min_ndim=1)
    frame_features = _check_tensor("frame_features", frame_features, min_ndim=2)
    if frame_features.shape[:-1] != scales.shape:
        raise ValueError(
            f"frame_features must have shape scales.shape + (D,) = {tuple(scales.shape)} + (D,), "
            f"got {tuple(frame_features.shape)}"
        )
    tau_sim = _check_number("tau_sim", tau_sim, low=0.0, high=1.0, low_open=True, high_open=True)
    gamma_sim = _check_number("gamma_sim", gamma_sim, low=0.0, low_open=True)
    eta_sim = _check_number("eta_sim", eta_sim)
    mask = _check_mask("frame_mask", frame_mask, scales.shape, scales.device)

    s = _float(scales)
    # Padded frames -> scale 1 BEFORE the log: otherwise log(0 or garbage) gives inf/NaN whose backward poisons
    # the gradient even though where() discards the value.
    s = torch.where(mask, s, torch.ones_like(s))
    if not bool((torch.isfinite(s) & (s > 0)).all()):
        raise ValueError("scales must be finite and > 0 on valid frames")
    log_s = torch.log(s)
    features = _float(frame_features.detach()).to(s.device)
    cos = F.cosine_similarity(features[..., :-1, :], features[..., 1:, :], dim=-1, eps=1e-8)
    weight = torch.sigmoid((cos - tau_sim) / gamma_sim)
    hinge = F.relu(log_s[..., :-1] + log_s[..., 1:] + eta_sim)
    pair_mask = mask[..., :-1] & mask[..., 1:]
    total = (weight * hinge * pair_mask).sum()
    return total / pair_mask.sum().clamp_min(1).to(total.dtype)


def concentration_loss(
    alpha: torch.Tensor,
    beta: torch.Tensor,
    frame_mask: torch.Tensor | None = None,
    kappa_max: float = 30.0,
) -> torch.Tensor:
    """Concentration hinge L_con (paper Eq. 20): mean over valid frames of ``max(0, alpha + beta - kappa_max)``.

    Keeps each Beta from collapsing into a spike (alpha + beta is the concentration; the std of a shrinks like
    1/sqrt(alpha + beta)), which preserves exploration and, measured, prevents alpha + beta from running away to
    NaN at high learning rates. Our head has no upper clamp on alpha/beta (the reference clamps each at 20), so
    this hinge is the only bound. kappa_max = 30 kept runs stable (measured: lr 3e-3, synthetic needle task); it
    sits well above the initial concentration (4.0 in ``ResAdaptConfig``), so the hinge is silent until the policy
    sharpens a lot.

    Args:
        alpha, beta: [..., T] Beta parameters (differentiable), same shape.
        frame_mask: optional [..., T] bool / 0-1, True = valid frame. At least one frame must be valid.
        kappa_max: > 0.
    Returns:
        [] loss.
    """
    alpha = _check_tensor("alpha", alpha, min_ndim=1)
    beta = _check_tensor("beta", beta)
    if beta.shape != alpha.shape:
        raise ValueError(f"beta must have the shape of alpha {tuple(alpha.shape)}, got {tuple(beta.shape)}")
    kappa_max = _check_number("kappa_max", kappa_max, low=0.0, low_open=True)
    mask = _check_mask("frame_mask", frame_mask, alpha.shape, alpha.device)
    num_valid = mask.sum()
    if int(num_valid) == 0:
        raise ValueError("frame_mask must leave at least one valid frame")
    concentration = _float(alpha) + _float(beta)
    excess = torch.where(mask, F.relu(concentration - kappa_max), torch.zeros_like(concentration))
    return excess.sum() / num_valid.to(excess.dtype)


def allocator_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    frame_mask: torch.Tensor | None = None,
    *,
    scales: torch.Tensor | None = None,
    frame_features: torch.Tensor | None = None,
    alpha: torch.Tensor | None = None,
    beta: torch.Tensor | None = None,
    policy_frame_mask: torch.Tensor | None = None,
    lambda_sim: float = 1e-3,
    lambda_con: float = 5e-4,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    tau_sim: float = 0.55,
    gamma_sim: float = 0.12,
    eta_sim: float = 0.2,
    kappa_max: float = 30.0,
) -> dict:
    """Full Allocator loss (paper Eq. 23): ``L = L_ppo + lambda_sim * L_sim + lambda_con * L_con``.

    The PPO term works on per-allocation tensors (``log_probs`` [..., T], e.g. [M, B, T]); the regularisers work on
    the policy's per-prompt outputs (``scales``/``frame_features``/``alpha``/``beta``, e.g. [B, T] and [B, T, D] from
    ``AllocatorPolicy``: ``deterministic_scales()``, ``frame_features``, ``alpha``, ``beta``), masked by
    ``policy_frame_mask`` (``AllocatorPolicy.frame_mask``). A regulariser is included only when its inputs are
    given (``scales`` with ``frame_features``; ``alpha`` with ``beta``) and its coefficient is > 0; otherwise it is
    reported as 0.0.

    Defaults: lambda_sim = 1e-3 and lambda_con = 5e-4 are the reference code's coefficients (the paper gives none).
    Measured on the synthetic needle task, runs at lr 3e-3 stayed stable only with lambda_con = 0.01 (cap 30): raise
    lambda_con when training with a large learning rate or when alpha + beta climbs past kappa_max.

    Returns:
        dict with ``"loss"`` (the differentiable total, a [] tensor) and Python floats for logging: ``"ppo"``,
        ``"clip_fraction"``, ``"sim"`` and ``"con"`` (unweighted regulariser values), ``"sim_weighted"``,
        ``"con_weighted"``.
    """
    lambda_sim = _check_number("lambda_sim", lambda_sim, low=0.0)
    lambda_con = _check_number("lambda_con", lambda_con, low=0.0)
    if (scales is None) != (frame_features is None):
        raise ValueError("scales and frame_features must be given together (both or neither)")
    if (alpha is None) != (beta is None):
        raise ValueError("alpha and beta must be given together (both or neither)")
    ppo, clip_fraction = ppo_clip_loss(log_probs, old_log_probs, advantages, frame_mask, eps_low, eps_high)
    total = ppo
    sim_value = con_value = 0.0
    if scales is not None and lambda_sim > 0:
        sim = temporal_similarity_loss(scales, frame_features, policy_frame_mask, tau_sim, gamma_sim, eta_sim)
        total = total + lambda_sim * sim.to(total.device)
        sim_value = float(sim.detach())
    if alpha is not None and lambda_con > 0:
        con = concentration_loss(alpha, beta, policy_frame_mask, kappa_max)
        total = total + lambda_con * con.to(total.device)
        con_value = float(con.detach())
    return {
        "loss": total,
        "ppo": float(ppo.detach()),
        "clip_fraction": float(clip_fraction),
        "sim": sim_value,
        "con": con_value,
        "sim_weighted": lambda_sim * sim_value,
        "con_weighted": lambda_con * con_value,
    }
