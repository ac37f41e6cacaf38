"""DeepSearch: MCTS over reasoning steps inside RL training (Wu et al. 2025, arXiv 2509.25454).

deep_search(model, prompts, verifier, params) runs the C++ tree search with the GIL released and
calls the Python model once per batched decode position. The model protocol (any object):

    vocab_size: int
    begin(prompt: int32 array) -> state          a state holding the prompt
    fork(state, n) -> list of n states           continuations of the same prefix
    logits(states: int64 array) -> [n, vocab]    next-token logits, no state change
    step(states, tokens) -> [n, vocab]           append tokens[i] to states[i], logits after them
    release(states)                              the states are gone
"""
from ._xplor import BigramPolicy, SearchParams, deep_search

__all__ = ["BigramPolicy", "SearchParams", "deep_search"]
