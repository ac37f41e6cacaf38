"""Reward functions for TRL's GRPOTrainer (``reward_funcs=[...]``).

TRL calls each reward function as ``f(prompts=..., completions=..., completion_ids=..., **columns)``
where ``columns`` are the dataset's other columns, and logs it under ``f.__name__``. Completions
are strings, or lists of chat messages (the last message's content is used). The functions here
verify a whole batch in C++ on ``threads`` host threads with the GIL released.

    from xplor.trl import math_reward, truthrl_reward
    trainer = GRPOTrainer(model=..., reward_funcs=[math_reward], train_dataset=dataset)  # column "solution"
"""
import numpy as np

from . import reward as _reward


def completion_text(completion):
    """The text of a TRL completion: a string, or the content of the last chat message."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"a completion is a string or a list of chat messages, not {type(completion).__name__}")


def gold_answer(solution):
    """The gold answer in a dataset's solution: its last \\boxed{} when it has one, else the text."""
    text = str(solution)
    boxed = _reward.extract_boxed(text)
    return boxed if boxed is not None else text


def make_math_reward(column="solution", *, threads=0, extract="boxed", correct=1.0, incorrect=0.0, no_answer=0.0,
                     name="xplor_math_reward"):
    """A TRL reward function paying `correct` when a completion's final answer (``extract``: boxed,
    boxed_or_answer_is, gsm8k) equals the gold answer of dataset column ``column`` exactly, else
    `incorrect` (or `no_answer` when nothing was extracted). threads=0: OMP_NUM_THREADS."""

    def reward_fn(completions, **kwargs):
        if column not in kwargs:
            raise ValueError(f"{name}: the dataset has no column {column!r} (columns: {sorted(kwargs)})")
        texts = [completion_text(c) for c in completions]
        golds = [gold_answer(s) for s in kwargs[column]]
        rewards = _reward.verify(texts, golds, threads=threads, extract=extract, correct=correct,
                                 incorrect=incorrect, no_answer=no_answer)
        return rewards.astype(np.float64).tolist()

    reward_fn.__name__ = reward_fn.__qualname__ = name
    return reward_fn


def make_truthrl_reward(column="answers", *, variant="ternary", threads=0, name="xplor_truthrl_reward"):
    """TruthRL's reward (Wei et al. 2025): +1 correct, 0 for abstaining ("I don't know" in the box),
    -1 wrong or unboxed (variant "binary": -1 for abstaining too). Column ``column`` holds a gold
    answer or a list of aliases per sample."""

    def reward_fn(completions, **kwargs):
        if column not in kwargs:
            raise ValueError(f"{name}: the dataset has no column {column!r} (columns: {sorted(kwargs)})")
        golds = [[str(g) for g in a] if isinstance(a, (list, tuple)) else [str(a)] for a in kwargs[column]]
        codes = _reward.classify_batch([completion_text(c) for c in completions], golds, threads=threads)
        return _reward.truth_rewards(codes, variant).astype(np.float64).tolist()

    reward_fn.__name__ = reward_fn.__qualname__ = name
    return reward_fn


math_reward = make_math_reward(name="math_reward")
truthrl_reward = make_truthrl_reward(name="truthrl_reward")

__all__ = ["completion_text", "gold_answer", "make_math_reward", "make_truthrl_reward", "math_reward",
           "truthrl_reward"]
