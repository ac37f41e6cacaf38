"""xplor: the algorithms behind RL-trained reasoning LLMs, from a header-only C++20 library.

Components (each a module; NumPy arrays and PyTorch CPU tensors are read in place, and every call
that works on a batch releases the GIL):

    xplor.reward   exact math verifier, batch verifiable rewards, TruthRL outcomes and rewards
    xplor.budget   Knapsack RL rollout allocation, per-prompt success tracking
    xplor.rl       group advantages (GRPO, RLOO, REINFORCE++, ...), ReBN, policy losses + dlogp
    xplor.sample   logits processors and reproducible batched draws (Philox)
    xplor.env      GEM-style environments and vector environments
    xplor.search   DeepSearch (MCTS over reasoning steps) driven by any Python model
    xplor.dist     the knapsack allocation and advantages over ranks (torch.distributed, mpi4py)
    xplor.trl      reward functions for TRL's GRPOTrainer(reward_funcs=...)
    xplor.verl     compute_score for verl's reward manager

Bad input raises xplor.Error (a ValueError) naming the function, the argument and the value.
"""
from ._xplor import Error, __version__

from . import reward, budget, rl, sample, env, search, trl, verl, dist

__all__ = ["Error", "__version__", "reward", "budget", "rl", "sample", "env", "search", "trl", "verl", "dist"]
