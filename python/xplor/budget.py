"""Rollout budgets: Knapsack RL (Li et al. 2025, arXiv 2509.25849; C++: xplor/budget/).

allocate_rollouts(p_hat, total_budget) gives each prompt a rollout count maximising the expected
number of prompts with a non-zero GRPO gradient, weighted by their information gain
p (1 - p)^2; SuccessTracker keeps the per-prompt success estimates p_hat between steps.
"""
from ._xplor import (SuccessTracker, allocate_rollouts, marginal_value, prob_nonzero_gradient,
                     rollout_value)

__all__ = ["SuccessTracker", "allocate_rollouts", "marginal_value", "prob_nonzero_gradient", "rollout_value"]
