"""The TRL and verl glue, called the way those trainers call reward functions."""
import pytest

from xplor import trl, verl


def test_trl_math_reward_as_grpo_trainer_calls_it():
    completions = [r"... so \boxed{\frac{1}{2}}", "no box", r"\boxed{0.25}"]
    conversational = [[{"role": "assistant", "content": c}] for c in completions]
    columns = dict(solution=[r"The answer is $\boxed{0.5}$.", "7", r"\boxed{1/4}"], trainer_state=None)
    for batch in (completions, conversational):
        got = trl.math_reward(prompts=["p"] * 3, completions=batch, completion_ids=[[1]] * 3, **columns)
        assert got == [1.0, 0.0, 1.0]
    assert trl.math_reward.__name__ == "math_reward"
    gsm = trl.make_math_reward("answer", extract="gsm8k", name="gsm8k_reward")
    assert gsm(completions=["work #### 1,234"], answer=["1234"]) == [1.0]
    assert gsm.__name__ == "gsm8k_reward"
    with pytest.raises(ValueError, match="no column 'solution'"):
        trl.math_reward(completions=completions, answer=["1", "2", "3"])
    with pytest.raises(TypeError, match="a completion is a string"):
        trl.math_reward(completions=[3], solution=["3"])


def test_trl_truthrl_reward():
    completions = [r"\boxed{Paris}", r"\boxed{I don't know}", r"\boxed{Lyon}", "Paris"]
    answers = [["Paris", "paris, france"], "Paris", ["Paris"], ["Paris"]]
    assert trl.truthrl_reward(prompts=["q"] * 4, completions=completions, answers=answers) == [1.0, 0.0, -1.0, -1.0]
    binary = trl.make_truthrl_reward(variant="binary")
    assert binary(completions=completions, answers=answers) == [1.0, -1.0, -1.0, -1.0]


def test_verl_compute_score():
    assert verl.compute_score("openai/gsm8k", r"... \boxed{42}", "42") == {"score": 1.0, "acc": True,
                                                                           "reason": "same_text"}
    assert verl.compute_score("math", r"\boxed{41}", r"\boxed{42}")["score"] == 0.0
    batch = verl.compute_score_batch(["math"] * 2, [r"\boxed{2}", "none"], ["2", "2"], [None, None])
    assert [b["score"] for b in batch] == [1.0, 0.0] and batch[1]["reason"] == "no_answer"
