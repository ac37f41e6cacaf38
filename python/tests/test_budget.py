"""xplor.budget: Knapsack RL's allocation against exhaustive search, hand values, the tracker,
and bad input."""
import itertools

import numpy as np
import pytest

from xplor import budget


def value(n, p):
    return (1 - p ** n - (1 - p) ** n) * p * (1 - p) ** 2 if n >= 2 else 0.0


def test_values_by_hand():
    assert budget.rollout_value(4, 1 / 3) == pytest.approx((1 - (1 / 3) ** 4 - (2 / 3) ** 4) * 4 / 27)
    assert budget.prob_nonzero_gradient(2, 0.5) == pytest.approx(0.5)
    assert budget.prob_nonzero_gradient(1, 0.5) == 0.0
    assert budget.marginal_value(3, 0.2) == pytest.approx(value(4, 0.2) - value(3, 0.2))


@pytest.mark.parametrize("seed", range(6))
def test_allocation_is_optimal_against_exhaustive_search(seed):
    rng = np.random.default_rng(seed)
    M = int(rng.integers(2, 5))
    p = np.round(rng.random(M), 2)
    n_min, n_max = 2, 7
    B = int(rng.integers(M * n_min, M * n_max + 1))
    n = budget.allocate_rollouts(p, B, n_min=n_min, n_max=n_max)
    assert n.dtype == np.int32 and n.sum() == B and (n >= n_min).all() and (n <= n_max).all()
    best = max(sum(value(k, q) for k, q in zip(ks, p))
               for ks in itertools.product(range(n_min, n_max + 1), repeat=M) if sum(ks) == B)
    assert sum(value(k, q) for k, q in zip(n, p)) == pytest.approx(best, rel=1e-12, abs=1e-15)
    dp = budget.allocate_rollouts(p, B, n_min=n_min, n_max=n_max, solver="dp")
    assert sum(value(k, q) for k, q in zip(dp, p)) == pytest.approx(best, rel=1e-12, abs=1e-15)


def test_prompts_without_estimates_get_the_uniform_share():
    n = budget.allocate_rollouts(np.array([0.5, 0.0, 0.3, 0.0]), 32, np.array([1, 0, 1, 0], dtype=np.uint8))
    assert n[1] == 8 and n[3] == 8 and n.sum() == 32


def test_success_tracker():
    t = budget.SuccessTracker(min_rollouts=4)
    t.record(7, np.array([1.0, 0.0, 0.0, 1.0]))
    t.record(9, np.array([1.0, 1.0]))
    assert t.estimate(7) == pytest.approx(0.5) and t.estimate(9) is None and t.count(9) == 2 and len(t) == 2
    p, has = t.estimates(np.array([7, 9, 11], dtype=np.int64))
    np.testing.assert_array_equal(has, [1, 0, 0])
    n = t.allocate(np.array([7, 9, 11], dtype=np.int64), 24, n_max=16)
    assert n.sum() == 24 and n[1] == 8 and n[2] == 8
    t.clear()
    assert len(t) == 0


def test_budget_errors():
    with pytest.raises(ValueError, match=r"p_hat\[0\] = 1.5"):
        budget.allocate_rollouts(np.array([1.5]), 4)
    with pytest.raises(ValueError, match="n_min = 5 exceeds n_max = 3"):
        budget.allocate_rollouts(np.array([0.5]), 4, n_min=5, n_max=3)
    with pytest.raises(ValueError, match="total_budget"):
        budget.allocate_rollouts(np.array([0.5, 0.5]), 1)
    with pytest.raises(ValueError, match="solver = 'greedy'"):
        budget.allocate_rollouts(np.array([0.5]), 4, solver="greedy")
    with pytest.raises(ValueError, match="mode = 'ema'"):
        budget.SuccessTracker(mode="ema")
