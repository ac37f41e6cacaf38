"""GEM-style environments (Liu et al. 2025, arXiv 2510.01051; C++: xplor/env/).

    env = xplor.env.make("game:GuessTheNumber-v0-easy")
    observation, info = env.reset(seed=0)
    observation, reward, terminated, truncated, info = env.step(response)
"""
from ._xplor import Env, VectorEnv, make, registered

__all__ = ["Env", "VectorEnv", "make", "registered"]
