"""CAPO advantages and Allocator losses against hand-computed values (paper Eqs. 13-23).

Expected values are written out with ``math.exp`` here, never by calling the function under test.
"""

import math

import pytest
import torch

from resadapt_hf.capo import (
    COST_MODES,
    allocator_loss,
    capo_advantage_details,
    capo_advantages,
    concentration_loss,
    ppo_clip_loss,
    proxy_cost,
    temporal_similarity_loss,
)

# defaults, spelled out so the hand arithmetic below is self-contained
KAPPA, TAU_FIX, TAU_S, LP, LN, LC, GAMMA, EPS = 0.5, 0.4, 0.15, 0.7, 1.3, 0.25, 0.05, 1e-3


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def z(values):
    """Population z-score with +1e-6 in the denominator, as plain Python."""
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / (std + 1e-6) for v in values]


def t(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


def close(actual, expected, tol=1e-9):
    assert torch.allclose(actual, t(expected).to(actual.dtype).reshape(actual.shape), atol=tol, rtol=0), (
        actual,
        expected,
    )


# ---------------------------------------------------------------------------------------------------------------
# proxy cost
# ---------------------------------------------------------------------------------------------------------------


def test_proxy_cost_linear_mean_and_clamp():
    scales = t([[0.2, 0.2], [1.0, 1.0], [1.8, 1.8], [0.6, 1.4], [0.1, 0.1], [2.0, 2.0]])
    close(proxy_cost(scales), [0.0, 0.5, 1.0, 0.5, 0.0, 1.0])
    # paper Eq. 13 is linear in the mean scale, not the (quadratic) retention ratio
    close(proxy_cost(t([0.2, 1.8])), [0.5])


def test_proxy_cost_ignores_padded_frames_and_custom_range():
    scales = t([[1.0, 1.8, 123.0], [0.5, 0.5, 0.5]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    close(proxy_cost(scales, frame_mask=mask), [(1.4 - 0.2) / 1.6, (0.5 - 0.2) / 1.6])
    close(proxy_cost(t([1.1]), min_scale=0.2, max_scale=2.0), [0.5])
    # leading dims are kept: [M, B, T] -> [M, B]
    assert proxy_cost(torch.ones(3, 2, 5)).shape == (3, 2)


# ---------------------------------------------------------------------------------------------------------------
# CAPO advantages: paper mode
# ---------------------------------------------------------------------------------------------------------------


def test_capo_mixed_group_n1_hand_values():
    rewards = [1.0, 0.0, 1.0, 0.0]
    cost = [0.2, 0.3, 0.6, 0.7]
    base = z(rewards)
    tau = KAPPA * sum(cost) / 4 + (1 - KAPPA) * TAU_FIX  # 0.425
    expected = []
    for r, c, b in zip(rewards, cost, base):
        if r == 1.0:
            s = LP * sig((tau - c) / TAU_S)
            expected.append(max(b + LC * s - GAMMA * c, EPS))
        else:
            s = -LN * sig((c - tau) / TAU_S)
            expected.append(b + LC * s - GAMMA * c)
    out = capo_advantages(t([rewards]).T, t([rewards]).T.bool(), t(cost))
    close(out, expected)
    details = capo_advantage_details(t([rewards]).T, t([rewards]).T, t(cost))
    assert abs(float(details["tau_dyn"]) - 0.425) < 1e-12
    shaping = [LP * sig(1.5), -LN * sig(-0.125 / 0.15), LP * sig(-0.175 / 0.15), -LN * sig(0.275 / 0.15)]
    close(details["shaping"][:, 0], shaping)
    assert not details["floor_active"].any()
    # among correct answers the cheaper one gets more; among wrong ones the cheaper one is penalised less
    assert out[0] > out[2] and out[1] > out[3]


def test_capo_all_correct_floor_active():
    # all rewards equal -> A_base = 0; the expensive allocation's A~ is negative and the floor lifts it to eps
    cost = [0.1, 0.9]
    tau = 0.5 * 0.5 + 0.5 * 0.4  # 0.45
    a0 = LC * LP * sig((tau - 0.1) / TAU_S) - GAMMA * 0.1
    a1 = LC * LP * sig((tau - 0.9) / TAU_S) - GAMMA * 0.9
    assert a0 > EPS and a1 < 0  # the hand arithmetic confirms the floor must act on a1 only
    details = capo_advantage_details(torch.ones(2, 1), torch.ones(2, 1, dtype=torch.bool), t(cost))
    close(details["a_base"], [0.0, 0.0], tol=0)
    close(details["a_tilde"][:, 0], [a0, a1], tol=1e-6)
    close(details["advantages"], [a0, EPS], tol=1e-6)
    assert details["floor_active"][:, 0].tolist() == [False, True]
    assert details["advantages"].dtype == torch.float32


def test_capo_all_wrong_no_floor_cheaper_penalised_less():
    cost = [0.1, 0.9]
    tau = 0.45
    a0 = -LC * LN * sig((0.1 - tau) / TAU_S) - GAMMA * 0.1
    a1 = -LC * LN * sig((0.9 - tau) / TAU_S) - GAMMA * 0.9
    out = capo_advantages(torch.zeros(2, 1, dtype=torch.float64), torch.zeros(2, 1), t(cost))
    close(out, [a0, a1])
    assert out[0] > out[1] and (out < 0).all()  # Eq. 15: wrong AND expensive is penalised hardest


def test_capo_n_greater_than_one_continuous_rewards():
    # M = 2 allocations x N = 2 rollouts; continuous rewards (e.g. tIoU) with correctness thresholded separately
    rewards = [[0.8, 0.2], [0.9, 0.6]]
    correct = [[1, 0], [1, 1]]
    cost = [0.3, 0.5]
    flat = z([0.8, 0.2, 0.9, 0.6])
    base = [flat[:2], flat[2:]]
    tau = 0.5 * 0.4 + 0.5 * 0.4
    expected = []
    for m in range(2):
        per = []
        for n in range(2):
            c = cost[m]
            if correct[m][n]:
                per.append(max(base[m][n] + LC * LP * sig((tau - c) / TAU_S) - GAMMA * c, EPS))
            else:
                per.append(base[m][n] - LC * LN * sig((c - tau) / TAU_S) - GAMMA * c)
        expected.append(per)
    details = capo_advantage_details(t(rewards), torch.tensor(correct), t(cost))
    close(details["per_rollout"], expected)
    close(details["advantages"], [sum(expected[0]) / 2, sum(expected[1]) / 2])
    # the floor acted on the correct-but-below-mean rollout (0.6 with base < 0)
    assert details["floor_active"].tolist() == [[False, False], [False, True]]


def test_capo_all_equal_rewards_give_zero_base_and_single_allocation_works():
    details = capo_advantage_details(torch.full((3, 2), 0.7), torch.ones(3, 2), torch.full((3,), 0.4))
    assert torch.equal(details["a_base"], torch.zeros(3, 2))
    # float noise (0.1 + 0.2 vs 0.3) is not blown up to +-1
    details = capo_advantage_details(t([[0.1 + 0.2], [0.3]]), torch.zeros(2, 1), t([0.4, 0.4]), cost_mode="none")
    assert torch.equal(details["advantages"], torch.zeros(2, dtype=torch.float64))
    out = capo_advantages(torch.ones(1, 1), torch.ones(1, 1), torch.tensor([0.4]))
    # tau_dyn = 0.4 = c: S = 0.7 * sigmoid(0) = 0.35; A~ = 0.25 * 0.35 - 0.05 * 0.4
    close(out, [LC * LP * 0.5 - GAMMA * 0.4], tol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# CAPO advantages: ablation modes
# ---------------------------------------------------------------------------------------------------------------


def test_none_mode_is_accuracy_only():
    rewards = [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    flat = z([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    out = capo_advantages(t(rewards), t(rewards), t([0.0, 1.0, 0.5]), cost_mode="none")
    close(out, [(flat[0] + flat[1]) / 2, (flat[2] + flat[3]) / 2, (flat[4] + flat[5]) / 2])
    # cost does not matter at all
    out2 = capo_advantages(t(rewards), t(rewards), t([1.0, 0.0, 0.2]), cost_mode="none")
    assert torch.equal(out, out2)


def test_direct_mode_hand_values_and_why_it_collapses():
    # all-correct group: R - w c is pure cost, and the z-score gives it unit size whatever w is
    cost = [0.1, 0.9]
    for weight in (0.5, 0.1, 0.01):
        expected = z([1.0 - weight * 0.1, 1.0 - weight * 0.9])
        out = capo_advantages(torch.ones(2, 1, dtype=torch.float64), torch.ones(2, 1), t(cost), cost_mode="direct",
                              direct_cost_weight=weight)
        close(out, expected)
        assert abs(float(out[0]) - 1.0) < 1e-3 and abs(float(out[1]) + 1.0) < 1e-3
    # no floor: the correct but expensive allocation gets a negative advantage (CAPO would floor it at eps)
    assert capo_advantages(torch.ones(2, 1), torch.ones(2, 1), t(cost), cost_mode="direct")[1] < 0
    # mixed group with the retention ratio as the penalty
    rewards = [[1.0], [0.0], [1.0]]
    retention = [0.25, 1.0, 2.25]
    expected = z([1.0 - 0.5 * 0.25, 0.0 - 0.5 * 1.0, 1.0 - 0.5 * 2.25])
    out = capo_advantages(t(rewards), t(rewards), t([0.2, 0.5, 0.9]), cost_mode="direct", retention=t(retention))
    close(out, expected)


def test_capo_centered_variant_rewards_expensive_wrong_answers():
    # All wrong: the reference's centred shape is +1.3 * (1 - acc) * (sigmoid((c - tau)/tau_s) - 0.5), positive
    # above the pivot -> the EXPENSIVE wrong allocation gets the higher advantage (paper Eq. 15 does the opposite).
    cost = [0.1, 0.9]
    tau = 0.45
    expected = [LC * LN * (sig((c - tau) / TAU_S) - 0.5) - GAMMA * c for c in cost]
    centered = capo_advantages(torch.zeros(2, 1, dtype=torch.float64), torch.zeros(2, 1), t(cost),
                               cost_mode="capo_centered")
    close(centered, expected)
    assert centered[1] > centered[0]
    paper = capo_advantages(torch.zeros(2, 1), torch.zeros(2, 1), t(cost))
    assert paper[1] < paper[0]


def test_capo_centered_mixed_group_hand_values():
    # M = 2, N = 2: acc = [1, 0.5]; both count as correct (0.5 > 0.35); base = z-score over the M accuracies
    rewards = [[1.0, 1.0], [1.0, 0.0]]
    cost = [0.2, 0.6]
    tau = 0.5 * 0.4 + 0.5 * 0.4
    base = z([1.0, 0.5])
    a0 = base[0] + LC * LP * 1.0 * (sig((tau - 0.2) / TAU_S) - 0.5) - GAMMA * 0.2
    a1 = base[1] + LC * LP * math.sqrt(0.5) * (sig((tau - 0.6) / TAU_S) - 0.5) - GAMMA * 0.6
    assert a1 < 0
    details = capo_advantage_details(t(rewards), t(rewards), t(cost), cost_mode="capo_centered")
    close(details["a_tilde"][:, 0], [a0, a1])
    close(details["advantages"], [a0, EPS])  # a half-wrong allocation is floored like a correct one
    assert details["per_rollout"].shape == (2, 2)


def test_cost_modes_tuple():
    assert COST_MODES == ("capo", "direct", "none", "capo_centered")


# ---------------------------------------------------------------------------------------------------------------
# PPO clip
# ---------------------------------------------------------------------------------------------------------------


def test_ppo_clip_hand_values_and_clip_fraction():
    # one frame per allocation: ratios inside / above / below the [0.8, 1.28] band, for A = +1 and A = -1
    ratios = [1.1, 1.5, 0.5, 1.1, 1.5, 0.5]
    adv = [1.0, 1.0, 1.0, -1.0, -1.0, -1.0]
    # min(rA, clip(r)A):  1.1 | 1.28 (clipped) | 0.5 | -1.1 | -1.5 | -0.8 (clipped)
    objective = [1.1, 1.28, 0.5, -1.1, -1.5, -0.8]
    log_probs = t([[math.log(r)] for r in ratios]).requires_grad_()
    loss, clip_fraction = ppo_clip_loss(log_probs, torch.zeros(6, 1, dtype=torch.float64), t(adv))
    assert abs(loss.item() + sum(objective) / 6) < 1e-9
    assert abs(float(clip_fraction) - 2 / 6) < 1e-12
    loss.backward()
    # d(-r A / 6)/d logp = -r A / 6 where unclipped; 0 where the clipped term is selected
    expected_grad = [-r * a / 6 for r, a in zip(ratios, adv)]
    expected_grad[1] = expected_grad[5] = 0.0
    close(log_probs.grad[:, 0], expected_grad)


def test_ppo_asymmetric_clip_and_mask_and_batch_dim():
    # ratio 1.25 is inside the DAPO band (1 + 0.28) but outside a symmetric 0.2 one
    lp = t([[math.log(1.25), math.log(1.25)]])
    loss, frac = ppo_clip_loss(lp, torch.zeros_like(lp), t([2.0]))
    assert abs(float(loss) + 2.5) < 1e-9 and float(frac) == 0.0
    loss, frac = ppo_clip_loss(lp, torch.zeros_like(lp), t([2.0]), eps_high=0.2)
    assert abs(float(loss) + 2.4) < 1e-9 and float(frac) == 1.0
    # padded frames contribute nothing, even with non-finite log-probs, and get zero gradient
    lp = t([[math.log(1.1), float("-inf")], [math.log(0.9), float("nan")]]).requires_grad_()
    mask = torch.tensor([[1, 0], [1, 0]])
    loss, frac = ppo_clip_loss(lp, torch.zeros(2, 2, dtype=torch.float64), t([1.0, -2.0]), frame_mask=mask)
    assert abs(loss.item() + (1.1 * 1.0 + 0.9 * -2.0) / 2) < 1e-9
    loss.backward()
    assert torch.isfinite(lp.grad).all() and lp.grad[:, 1].abs().sum() == 0
    # [B, M, T] equals the flattened [B*M, T]
    g = torch.Generator().manual_seed(0)
    lp, old = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 5, generator=g)
    adv = torch.randn(3, 4, generator=g)
    batched = ppo_clip_loss(lp, old, adv)
    flat = ppo_clip_loss(lp.reshape(12, 5), old.reshape(12, 5), adv.reshape(12))
    assert torch.allclose(batched[0], flat[0]) and torch.allclose(batched[1], flat[1])


def test_ppo_gradient_flows_to_log_probs_only():
    lp = torch.zeros(2, 3, requires_grad=True)
    old = torch.zeros(2, 3, requires_grad=True)
    adv = torch.tensor([1.0, -1.0], requires_grad=True)
    loss, _ = ppo_clip_loss(lp, old, adv)
    loss.backward()
    # ratio 1: d loss / d logp = -A / 6 per frame
    assert torch.allclose(lp.grad, torch.tensor([[-1 / 6] * 3, [1 / 6] * 3]))
    assert old.grad is None and adv.grad is None


# ---------------------------------------------------------------------------------------------------------------
# regularisers
# ---------------------------------------------------------------------------------------------------------------


def test_temporal_similarity_weights_and_hinge():
    same = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    orth = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    w_same = sig((1.0 - 0.55) / 0.12)  # ~0.977
    w_orth = sig((0.0 - 0.55) / 0.12)  # ~0.010
    assert w_same > 0.97 and w_orth < 0.011
    scales = t([1.5, 1.2])
    hinge = math.log(1.5) + math.log(1.2) + 0.2
    close(temporal_similarity_loss(scales, same.double()).reshape(1), [w_same * hinge])
    close(temporal_similarity_loss(scales, orth.double()).reshape(1), [w_orth * hinge])
    # hinge off: s_t s_{t+1} <= exp(-eta); with eta 0.2 two identical frames may keep ~0.90 each, not 1.0
    assert float(temporal_similarity_loss(t([0.9, 0.9]), same.double())) == 0.0
    assert float(temporal_similarity_loss(t([1.0, 1.0]), same.double())) > 0.0
    assert float(temporal_similarity_loss(t([1.0, 1.0]), same.double(), eta_sim=0.0)) == 0.0
    # asymmetric pairs are free: one frame high, its redundant neighbour low
    assert float(temporal_similarity_loss(t([1.8, 0.45]), same.double())) == 0.0


def test_temporal_similarity_masks_and_gradient():
    features = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.3, 0.7]]], requires_grad=True)
    scales = torch.tensor([[1.5, 1.5, 1.5, 0.0]], requires_grad=True)  # the padded frame's 0 must not give NaN
    mask = torch.tensor([[True, True, True, False]])
    loss = temporal_similarity_loss(scales, features, frame_mask=mask)
    w = sig((1.0 - 0.55) / 0.12)
    hinge = 2 * math.log(1.5) + 0.2
    assert abs(loss.item() - w * hinge) < 1e-5  # two valid pairs, same value; the pair with padding is dropped
    loss.backward()
    # d/ds_t of w (log s_t + log s_{t+1} + eta) = w / s_t, from each valid pair the frame belongs to, / 2 pairs
    expected = torch.tensor([[w / 1.5 / 2, 2 * w / 1.5 / 2, w / 1.5 / 2, 0.0]])
    assert torch.allclose(scales.grad, expected, atol=1e-6)
    assert features.grad is None  # w_t is computed on detached features
    # leading dims: [M, B, T]; no valid pair -> 0
    assert temporal_similarity_loss(torch.ones(2, 3, 4), torch.ones(2, 3, 4, 8)).shape == ()
    single = torch.ones(2, 1, requires_grad=True)
    out = temporal_similarity_loss(single, torch.ones(2, 1, 3))
    assert out.item() == 0.0
    out.backward()


def test_concentration_hinge_and_mask():
    alpha = torch.tensor([[10.0, 25.0, 40.0]], requires_grad=True)
    beta = torch.tensor([[10.0, 15.0, 30.0]], requires_grad=True)
    loss = concentration_loss(alpha, beta)
    assert abs(loss.item() - (0.0 + 10.0 + 40.0) / 3) < 1e-6
    loss.backward()
    assert torch.allclose(alpha.grad, torch.tensor([[0.0, 1 / 3, 1 / 3]]))
    masked = concentration_loss(alpha, beta, frame_mask=torch.tensor([[1, 1, 0]]), kappa_max=20.0)
    assert abs(masked.item() - (0.0 + 20.0) / 2) < 1e-6


def test_allocator_loss_combines_components():
    lp = torch.zeros(2, 3, requires_grad=True)
    scales = torch.full((1, 3), 1.5, requires_grad=True)
    features = torch.ones(1, 3, 4)
    alpha = torch.full((1, 3), 20.0, requires_grad=True)
    beta = torch.full((1, 3), 20.0, requires_grad=True)
    out = allocator_loss(lp, torch.zeros(2, 3), torch.tensor([1.0, 0.5]), scales=scales, frame_features=features,
                         alpha=alpha, beta=beta, lambda_sim=0.1, lambda_con=0.01)
    w = sig((1.0 - 0.55) / 0.12)
    sim = w * (2 * math.log(1.5) + 0.2)
    assert abs(out["ppo"] + 0.75) < 1e-6 and out["clip_fraction"] == 0.0
    assert abs(out["sim"] - sim) < 1e-5 and abs(out["con"] - 10.0) < 1e-5
    assert abs(out["loss"].item() - (-0.75 + 0.1 * sim + 0.01 * 10.0)) < 1e-5
    assert isinstance(out["sim_weighted"], float) and abs(out["con_weighted"] - 0.1) < 1e-6
    out["loss"].backward()
    assert lp.grad is not None and scales.grad is not None and alpha.grad is not None
    # regularisers skipped without inputs
    out = allocator_loss(lp, torch.zeros(2, 3), torch.tensor([1.0, 0.5]))
    assert out["sim"] == 0.0 and out["con"] == 0.0 and abs(out["loss"].item() + 0.75) < 1e-6


# ---------------------------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------------------------

R, U, C = torch.ones(2, 1), torch.ones(2, 1), torch.tensor([0.2, 0.4])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tau_s=0.0), r"tau_s must be in \(0.0, inf\)"),
        (dict(tau_s=-1.0), "tau_s"),
        (dict(lambda_pos=-0.1), r"lambda_pos must be in \[0.0, inf\)"),
        (dict(lambda_neg=-0.1), "lambda_neg"),
        (dict(lambda_capo=-1.0), "lambda_capo"),
        (dict(gamma=-0.01), "gamma"),
        (dict(kappa_mix=1.5), r"kappa_mix must be in \[0.0, 1.0\]"),
        (dict(kappa_mix=-0.1), "kappa_mix"),
        (dict(tau_fix=2.0), "tau_fix"),
        (dict(eps_pos=0.0), r"eps_pos must be in \(0.0, inf\)"),
        (dict(direct_cost_weight=-1.0), "direct_cost_weight"),
        (dict(tau_s=float("nan")), "tau_s must be a finite number"),
        (dict(gamma=True), "gamma must be a finite number"),
        (dict(cost_mode="lagrangian"), "cost_mode must be one of"),
        (dict(retention=torch.ones(3)), r"retention must have shape \(M,\)"),
        (dict(retention=torch.tensor([-1.0, 0.5])), "retention must be >= 0"),
    ],
)
def test_capo_argument_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        capo_advantages(R, U, C, **kwargs)


@pytest.mark.parametrize(
    "rewards, correct, cost, match",
    [
        (torch.ones(2), torch.ones(2), C, "rewards must have 2 dimensions"),
        (R, torch.ones(2, 2), C, "correct must have the shape of rewards"),
        (R, U, torch.ones(3) * 0.1, r"cost must have shape \(M,\)"),
        (R, U, torch.tensor([0.2, 1.5]), r"cost must lie in \[0, 1\]"),
        (R, torch.full((2, 1), 0.5), C, "correct must be bool or contain only 0/1"),
        (torch.tensor([[1.0], [float("nan")]]), U, C, "rewards must be finite"),
        ([[1.0], [0.0]], U, C, "rewards must be a torch.Tensor"),
        (torch.ones(0, 1), torch.ones(0, 1), torch.ones(0), "rewards must not be empty"),
    ],
)
def test_capo_input_validation(rewards, correct, cost, match):
    with pytest.raises(ValueError, match=match):
        capo_advantages(rewards, correct, cost)


def test_loss_and_cost_validation():
    lp = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="old_log_probs must have the shape"):
        ppo_clip_loss(lp, torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(ValueError, match=r"advantages must have shape log_probs.shape\[:-1\]"):
        ppo_clip_loss(lp, lp, torch.zeros(3))
    with pytest.raises(ValueError, match=r"eps_low must be in \[0.0, 1.0\)"):
        ppo_clip_loss(lp, lp, torch.zeros(2), eps_low=1.0)
    with pytest.raises(ValueError, match="eps_high"):
        ppo_clip_loss(lp, lp, torch.zeros(2), eps_high=-0.1)
    with pytest.raises(ValueError, match="frame_mask must have shape"):
        ppo_clip_loss(lp, lp, torch.zeros(2), frame_mask=torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one valid frame"):
        ppo_clip_loss(lp, lp, torch.zeros(2), frame_mask=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="advantages must be finite"):
        ppo_clip_loss(lp, lp, torch.tensor([0.0, float("inf")]))
    with pytest.raises(ValueError, match="max_scale must be in"):
        proxy_cost(torch.ones(3), min_scale=1.0, max_scale=0.5)
    with pytest.raises(ValueError, match="min_scale"):
        proxy_cost(torch.ones(3), min_scale=0.0)
    with pytest.raises(ValueError, match="at least one valid frame in every row"):
        proxy_cost(torch.ones(2, 3), frame_mask=torch.tensor([[1, 1, 1], [0, 0, 0]]))
    with pytest.raises(ValueError, match="frame_features must have shape"):
        temporal_similarity_loss(torch.ones(2, 3), torch.ones(2, 4, 8))
    with pytest.raises(ValueError, match=r"tau_sim must be in \(0.0, 1.0\)"):
        temporal_similarity_loss(torch.ones(2, 3), torch.ones(2, 3, 8), tau_sim=1.0)
    with pytest.raises(ValueError, match="gamma_sim"):
        temporal_similarity_loss(torch.ones(2, 3), torch.ones(2, 3, 8), gamma_sim=0.0)
    with pytest.raises(ValueError, match="scales must be finite and > 0"):
        temporal_similarity_loss(torch.tensor([1.0, -1.0]), torch.ones(2, 8))
    with pytest.raises(ValueError, match="beta must have the shape of alpha"):
        concentration_loss(torch.ones(2, 3), torch.ones(3))
    with pytest.raises(ValueError, match="kappa_max"):
        concentration_loss(torch.ones(3), torch.ones(3), kappa_max=0.0)
    with pytest.raises(ValueError, match="scales and frame_features must be given together"):
        allocator_loss(lp, lp, torch.zeros(2), scales=torch.ones(1, 3))
    with pytest.raises(ValueError, match="alpha and beta must be given together"):
        allocator_loss(lp, lp, torch.zeros(2), alpha=torch.ones(1, 3))
    with pytest.raises(ValueError, match="lambda_con"):
        allocator_loss(lp, lp, torch.zeros(2), lambda_con=-1.0)
