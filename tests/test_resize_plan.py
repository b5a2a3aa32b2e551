"""The resize operator and the budget solver against hand-computed values."""

import math

import numpy as np
import pytest

from resadapt_hf.processing.resize_plan import (
    UnitSpec,
    chunk_scales,
    constant_size_interval,
    floor_scale,
    plan_sizes,
    solve_budget,
    unit_size,
    unit_tokens,
    validate_scales,
    visual_tokens,
)


def test_visual_tokens_counts_merged_patches():
    assert visual_tokens(56, 84, 28) == 2 * 3
    assert visual_tokens(448, 448, 28) == 256
    assert visual_tokens(64, 96, 32) == 6


def test_unit_size_hand_computed():
    unit = UnitSpec(252, 448, 28)  # 9 x 16 merged tokens at scale 1
    assert unit_size(unit, 1.0) == (252, 448)
    # 0.5: 126/28 = 4.5 -> round-half-even 4 -> 112; 224/28 = 8 -> 224
    assert unit_size(unit, 0.5) == (112, 224)
    # 1.8: 453.6/28 = 16.2 -> 16 -> 448; 806.4/28 = 28.8 -> 29 -> 812 (scales > 1 really add pixels)
    assert unit_size(unit, 1.8) == (448, 812)
    assert unit_tokens(unit, 1.8) == 16 * 29 > unit.base_tokens


def test_min_visual_tokens_floor_keeps_aspect_and_never_exceeds_base():
    unit = UnitSpec(252, 448, 28, min_visual_tokens=4)
    # 0.2: 50.4/28 = 1.8 -> 2, 89.6/28 = 3.2 -> 3 -> 6 tokens: above the floor of 4, unchanged
    assert unit_size(unit, 0.2) == (56, 84)
    tiny = UnitSpec(28, 56, 28, min_visual_tokens=4)  # only 2 tokens at scale 1
    assert unit_tokens(tiny, 0.2) == 2  # floor is min(4, base tokens): scale 1 never costs more than native
    assert floor_scale(tiny) <= 1.0
    wide = UnitSpec(56, 560, 28, min_visual_tokens=8)
    assert unit_tokens(wide, 0.2) >= 8


def test_unit_size_monotone_in_scale():
    for unit in [UnitSpec(252, 448, 28), UnitSpec(28, 5600, 28), UnitSpec(64, 64, 32, 4), UnitSpec(56, 56, 28, 9)]:
        previous = 0
        for i in range(1, 400):
            tokens = unit_tokens(unit, i * 0.005)
            assert tokens >= previous
            previous = tokens


def test_constant_size_interval_brackets_the_size():
    unit = UnitSpec(252, 448, 28)
    lo, hi = constant_size_interval(unit, 0.5, 1.8)
    assert lo <= 0.5 <= hi
    assert unit_size(unit, lo * 1.0001) == unit_size(unit, 0.5) == unit_size(unit, hi * 0.9999)
    assert unit_size(unit, hi * 1.01) != unit_size(unit, 0.5)


def test_chunk_scales_and_validation():
    assert chunk_scales([0.2, 0.4, 1.0, 1.8], [2, 2]) == pytest.approx([0.3, 1.4])
    with pytest.raises(ValueError, match="scales"):
        validate_scales([1.0], expected=2, min_scale=0.2, max_scale=1.8)
    for bad in (float("nan"), float("inf"), -1.0, 0.1, 2.0):
        with pytest.raises(ValueError, match=r"\[0.2, 1.8\]"):
            validate_scales([1.0, bad], expected=2, min_scale=0.2, max_scale=1.8)


FRAMES = {  # base sizes a Qwen2.5-VL processor gives (factor 28), 16 chunks each
    "landscape": (252, 448),
    "portrait": (448, 252),
    "tiny": (28, 56),  # a 40x30 frame: one or two merged tokens per chunk
    "large": (812, 1456),
}


@pytest.mark.parametrize("shape", sorted(FRAMES))
@pytest.mark.parametrize("budget", [0.05, 0.1, 0.25, 0.5, 1.0, 2.0])
def test_budget_sweep(shape, budget):
    units = [UnitSpec(*FRAMES[shape], 28)] * 16
    frame_scales = [0.4 + 0.05 * (i % 7) for i in range(32)]  # a non-uniform allocator output
    solution = solve_budget(units, frame_scales, [2] * 16, budget=budget)
    floor = solve_budget(units, frame_scales, [2] * 16, budget=1e-3)  # minimum reachable retention
    assert all(0.2 - 1e-6 <= s <= 1.8 + 1e-6 for s in solution.frame_scales)
    if solution.reachable:
        assert abs(solution.retention - budget) <= 0.02
    else:  # only allowed when the budget is below what s_min/min tokens allow, or above s_max
        assert budget < floor.retention + 0.02 or budget > 1.8**2 - 0.02 or solution.retention > 1.5
        if budget < floor.retention:
            assert solution.retention == pytest.approx(floor.retention)
    # the reported scales reproduce the sizes
    replanned = [unit_size(u, s) for u, s in zip(units, chunk_scales(solution.frame_scales, [2] * 16))]
    assert replanned == solution.sizes


def test_budget_keeps_relative_shape():
    units = [UnitSpec(252, 448, 28)] * 4
    scales = [0.4, 0.4, 0.8, 0.8, 1.2, 1.2, 0.6, 0.6]
    solution = solve_budget(units, scales, [2] * 4, budget=0.25)
    means = chunk_scales(solution.frame_scales, [2] * 4)
    assert means[2] > means[1] > means[3] > means[0]
    assert abs(solution.retention - 0.25) <= 0.02


@pytest.mark.parametrize("cap", [48, 100, 333, 1000])
def test_hard_cap_never_exceeded(cap):
    units = [UnitSpec(252, 448, 28)] * 8
    solution = solve_budget(units, [1.0] * 16, [2] * 8, max_visual_tokens=cap)
    assert solution.visual_tokens <= cap
    both = solve_budget(units, [1.0] * 16, [2] * 8, budget=1.5, max_visual_tokens=cap)
    assert both.visual_tokens <= cap


def test_budget_errors_name_the_argument():
    units = [UnitSpec(252, 448, 28)] * 2
    for bad in (0.0, -0.5, 3.5, math.nan):
        with pytest.raises(ValueError, match="budget"):
            solve_budget(units, [1.0] * 4, [2] * 2, budget=bad)
    with pytest.raises(ValueError, match="max_visual_tokens"):
        solve_budget(units, [1.0] * 4, [2] * 2, max_visual_tokens=3)  # below the 2 x 6 token floor


def test_coarse_grid_budget_reached_by_a_raise_and_a_cut():
    # 4 chunks of 64x64 px, 8 px per token: a chunk costs k*k tokens. At budget 0.75 (192 of 256 tokens, +-5.12)
    # the common multiplier gives 36 + 64 + 36 + 49 = 185 tokens and every single raise overshoots 197
    # (36 -> 49 adds 13, 49 -> 64 adds 15), so chunk 0 goes up a step (49) and chunk 2 down one (25): 187.
    unit = UnitSpec(64, 64, 8, 4)
    scales = [0.581, 1.071, 0.792, 1.166, 1.201, 0.305, 0.221, 1.54]
    solution = solve_budget([unit] * 4, scales, [2] * 4, budget=0.75, tolerance=0.02)
    assert solution.reachable and solution.visual_tokens == 187
    assert solution.sizes == [(56, 56), (64, 64), (40, 40), (56, 56)]
    assert plan_sizes([unit] * 4, chunk_scales(solution.frame_scales, [2] * 4)) == solution.sizes


def test_random_shapes_reach_every_budget_on_a_coarse_grid():
    unit = UnitSpec(64, 64, 8, 4)
    rng = np.random.default_rng(0)
    for _ in range(300):
        scales = rng.uniform(0.2, 1.8, 8).tolist()
        for budget in (0.75, 0.5, 0.28):
            solution = solve_budget([unit] * 4, scales, [2] * 4, budget=budget, tolerance=0.02)
            assert solution.reachable, (scales, budget, solution.visual_tokens)
            assert abs(solution.visual_tokens / 256 - budget) <= 0.02


# ---------------------------------------------------------------- one validator, one planning function


def test_normalize_scales_shapes():
    from resadapt_hf.processing.resize_plan import normalize_scales

    import torch

    rng = dict(min_scale=0.2, max_scale=1.8)
    assert normalize_scales(0.5, [3, 1], **rng) == [[0.5] * 3, [0.5]]
    assert normalize_scales([0.2, 0.4, 0.6, 1.0], [3, 1], **rng) == [[0.2, 0.4, 0.6], [1.0]]
    assert normalize_scales([[0.2, 0.4, 0.6], [1.0]], [3, 1], **rng) == [[0.2, 0.4, 0.6], [1.0]]
    assert normalize_scales(torch.tensor([0.5, 1.5]), [2], **rng) == [[0.5, 1.5]]
    with pytest.raises(ValueError, match="expected 4 values"):
        normalize_scales([1.0, 1.0], [3, 1], **rng)
    with pytest.raises(TypeError, match="scales"):
        normalize_scales("big", [2], **rng)
    with pytest.raises(ValueError, match=r"\[0.2, 1.8\]"):
        normalize_scales(2.0, [2], **rng)


def test_check_budget_and_scale_range():
    from resadapt_hf.processing.resize_plan import check_budget, check_scale_range

    assert check_budget(0.5, 10, max_scale=1.8) == (0.5, 10)
    assert check_budget(None, None, max_scale=1.8) == (None, None)
    for bad in (0.0, -1.0, 3.3, math.nan, True, "0.5"):
        with pytest.raises(ValueError, match=r"budget.*\(0, 3.24\]"):
            check_budget(bad, None, max_scale=1.8)
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="max_visual_tokens"):
            check_budget(None, bad, max_scale=1.8)
    assert check_scale_range(0.2, 1.8) == (0.2, 1.8)
    for low, high in ((1.2, 1.8), (0.0, 1.8), (0.2, 0.9), (0.2, math.inf)):
        with pytest.raises(ValueError, match="min_scale/max_scale"):
            check_scale_range(low, high)


def test_plan_allocation_hand_computed():
    from resadapt_hf.processing.allocation import MediaSpec, PlanSettings, plan_allocation

    # a 5-frame video (3 chunks of 2, the last padded with frame 5's scale) at base 252x448 and one 56x84 image
    video = MediaSpec("video", 5, (252, 448), 28, 2, frame_indices=(0, 2, 4, 6, 8), timestamps=(0, 1, 2, 3, 4))
    image = MediaSpec("image", 1, (56, 84), 28)
    plan = plan_allocation([video, image], [0.5, 0.5, 1.0, 1.0, 1.8, 1.0])
    # chunk means 0.5, 1.0, 1.8: 0.5 -> (112, 224) (see test_unit_size_hand_computed), 1.0 -> base, 1.8 -> (448, 812)
    assert plan.media[0].chunk_sizes == [(112, 224), (252, 448), (448, 812)]
    assert plan.media[0].visual_tokens == 4 * 8 + 9 * 16 + 16 * 29 and plan.media[0].baseline_visual_tokens == 3 * 144
    assert plan.media[1].chunk_sizes == [(56, 84)] and plan.media[1].visual_tokens == 6
    assert plan.media[0].frame_indices == [0, 2, 4, 6, 8] and plan.scales == [0.5, 0.5, 1.0, 1.0, 1.8, 1.0]
    assert plan.budget_reached is None
    budgeted = plan_allocation([video, image], 1.0, budget=0.5, settings=PlanSettings(budget_tolerance=0.02))
    assert budgeted.budget_reached and abs(budgeted.retention - 0.5) <= 0.02
    with pytest.raises(ValueError, match="budget"):
        plan_allocation([video], 1.0, budget=4.0)
    with pytest.raises(ValueError, match="min_visual_tokens"):
        PlanSettings(min_visual_tokens=0)
