"""xplor.env: Gym's API over the built-in GEM tasks, vector env == single envs, bad input."""
import numpy as np
import pytest

from xplor import env


def test_make_reset_step_and_clone():
    e = env.make("math:Arithmetic-v0-easy")
    assert e.id.startswith("math:Arithmetic-v0")
    obs, info = e.reset(seed=3)
    obs2, _ = e.clone().reset(seed=3)
    assert obs == obs2 and isinstance(info, dict)
    answer = info.get("answer")
    assert answer is not None, info
    clone = e.clone()
    obs, reward, terminated, truncated, _ = e.step(rf"\boxed{{{answer}}}")
    assert reward == 1.0 and terminated and not truncated
    _, wrong, _, _, _ = clone.step(r"\boxed{nonsense}")
    assert wrong < 1.0


def test_guess_the_number_is_multi_turn():
    e = env.make("game:GuessTheNumber-v0-easy")
    obs, _ = e.reset(seed=0)
    obs, reward, terminated, truncated, info = e.step(r"\boxed{1}")
    assert isinstance(obs, str) and len(obs) > 0
    assert "game:GuessTheNumber-v0" in env.registered()


def test_vector_env_matches_single_envs():
    v = env.VectorEnv("math:Arithmetic-v0-easy", 4, threads=2)
    obs, infos = v.reset(seed=10)
    singles = [env.make("math:Arithmetic-v0-easy") for _ in range(4)]
    for i, s in enumerate(singles):
        o, info = s.reset(seed=10 + i)
        assert o == obs[i] and info == infos[i]
    actions = [rf"\boxed{{{infos[i]['answer']}}}" if i % 2 == 0 else r"\boxed{x}" for i in range(4)]
    obs, rewards, terminated, truncated, infos = v.step(actions)
    assert rewards.dtype == np.float32 and terminated.dtype == bool
    for i, s in enumerate(singles):
        _, r, t, tr, _ = s.step(actions[i])
        assert rewards[i] == r and terminated[i] == t and truncated[i] == tr
    assert rewards[0] == 1.0 and rewards[1] < 1.0


def test_env_errors():
    with pytest.raises(ValueError, match="no environment matches id 'game:Chess'"):
        env.make("game:Chess")
    with pytest.raises(ValueError, match="copies = 0"):
        env.VectorEnv("math:Arithmetic-v0-easy", 0)
    with pytest.raises(ValueError, match="autoreset = 'never'"):
        env.VectorEnv("math:Arithmetic-v0-easy", 2, autoreset="never")
    v = env.VectorEnv("math:Arithmetic-v0-easy", 2)
    v.reset()
    with pytest.raises(ValueError, match="actions"):
        v.step(["only one"])
