"""Verifiable rewards: the exact math verifier and TruthRL (C++: xplor/reward/).

verify() is the batch reward a trainer calls: the final answer of each response (the last
\\boxed{} by default) checked against its gold answer exactly, 1 / 0 as TRL's and verl's math
rewards pay. classify_batch() and truth_rewards() are TruthRL's ternary reward (Wei et al. 2025,
arXiv 2509.25760): correct +1, abstain ("I don't know") 0, wrong or no answer -1.
"""
from ._xplor import (Outcome, TruthMetrics, answers_equivalent, binary_reward, check_answer, classify,
                     classify_batch, extract_answer, extract_boxed, ternary_reward, truth_rewards, verify)

__all__ = ["Outcome", "TruthMetrics", "answers_equivalent", "binary_reward", "check_answer", "classify",
           "classify_batch", "extract_answer", "extract_boxed", "ternary_reward", "truth_rewards", "verify"]
