"""Scoring functions for verl's reward managers (``custom_reward_function.path`` / ``.name``).

verl's NaiveRewardManager calls ``compute_score(data_source, solution_str, ground_truth,
extra_info)`` once per response; a dict result must hold "score" (its other keys are logged).
verl's BatchRewardManager calls ``compute_score_batch(data_sources, solution_strs, ground_truths,
extra_infos)`` once per batch: the batch form verifies on C++ threads with the GIL released.
"""
from . import reward as _reward
from .trl import gold_answer


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """{"score": 1.0 or 0.0, "acc": bool, "reason": verdict}: the response's last \\boxed{} answer
    checked exactly against the ground truth (its box when it has one)."""
    rewards, reasons = _reward.verify([solution_str], [gold_answer(ground_truth)], reasons=True)
    return {"score": float(rewards[0]), "acc": bool(rewards[0] > 0), "reason": reasons[0]}


def compute_score_batch(data_sources, solution_strs, ground_truths, extra_infos=None, threads=0, **kwargs):
    """compute_score over a batch, on `threads` C++ threads (0: OMP_NUM_THREADS)."""
    rewards, reasons = _reward.verify(list(solution_strs), [gold_answer(g) for g in ground_truths], threads=threads,
                                      reasons=True)
    return [{"score": float(r), "acc": bool(r > 0), "reason": why} for r, why in zip(rewards, reasons)]


__all__ = ["compute_score", "compute_score_batch"]
