"""xplor.search: DeepSearch through the Python model adapter equals the native policy on the same
model; states are released; the verifier decides the scores; errors surface."""
import numpy as np
import pytest

from xplor import reward, search

V = 6  # tokens 0..4 and EOS 5


def table(seed=0):
    rng = np.random.default_rng(seed)
    t = rng.normal(0, 1, size=(V, V)).astype(np.float32)
    t[:, 5] += 0.5  # EOS is likely enough that responses finish
    return t


class Forwarding:
    """A pure-Python model: every call goes through Python to a native BigramPolicy."""

    def __init__(self, native):
        self.native, self.vocab_size, self.calls = native, native.vocab_size, 0

    def begin(self, prompt):
        return self.native.begin(prompt)

    def fork(self, state, n):
        return self.native.fork(state, n)

    def logits(self, states):
        self.calls += 1
        return self.native.logits(states)

    def step(self, states, tokens):
        self.calls += 1
        return self.native.step(states, tokens)

    def release(self, states):
        self.native.release(states)


class NumpyBigram:
    """The same bigram model written in NumPy alone (dict of histories)."""

    def __init__(self, t):
        self.t, self.vocab_size, self.last, self.next_id = t, t.shape[0], {}, 0

    def begin(self, prompt):
        self.next_id += 1
        self.last[self.next_id] = int(prompt[-1])
        return self.next_id

    def fork(self, state, n):
        out = []
        for _ in range(n):
            self.next_id += 1
            self.last[self.next_id] = self.last[state]
            out.append(self.next_id)
        return out

    def logits(self, states):
        return self.t[[self.last[int(s)] for s in states]]

    def step(self, states, tokens):
        for s, tok in zip(states, tokens):
            self.last[int(s)] = int(tok)
        return self.logits(states)

    def release(self, states):
        for s in states:
            del self.last[int(s)]


def verifier(i, tokens, finished):
    # A response is correct when it ends (EOS) after a token 2; prompt 1 only after a 3.
    if not finished:
        return reward.Outcome.no_answer
    want = 2 if i == 0 else 3
    return "correct" if len(tokens) >= 2 and tokens[-2] == want else reward.Outcome.incorrect


def params():
    p = search.SearchParams()
    p.max_depth, p.chunk_tokens, p.expansion_width, p.num_trajectories = 4, 3, 3, 6
    s = p.sampling
    s.eos_token = 5
    p.sampling = s
    return p


def summary(results):
    return [[(t["tokens"].tolist(), t["token_advantages"].tolist(), int(t["result"]), t["score"])
             for t in r["trajectories"]] + [r["nodes"], r["tokens_generated"]] for r in results]


def test_python_model_equals_native_policy():
    prompts = [[0, 1], [4]]
    native = search.BigramPolicy(table())
    direct = search.deep_search(native, prompts, verifier, params(), seed=5)
    assert native.live_states == 0
    fwd = Forwarding(search.BigramPolicy(table()))
    through_python = search.deep_search(fwd, prompts, verifier, params(), seed=5)
    numpy_model = NumpyBigram(table())
    pure = search.deep_search(numpy_model, prompts, verifier, params(), seed=5)
    assert summary(direct) == summary(through_python) == summary(pure)
    assert fwd.native.live_states == 0 and numpy_model.last == {}
    assert fwd.calls > 0
    for r in direct:
        assert len(r["trajectories"]) == 6 or r["exhausted"]
        for t in r["trajectories"]:
            assert t["token_advantages"].shape == t["tokens"].shape == t["logprobs"].shape
            assert t["score"] == (1.0 if t["result"] == reward.Outcome.correct else -1.0)
    other = search.deep_search(native, prompts, verifier, params(), seed=6)
    assert summary(other) != summary(direct)


def test_model_errors_surface():
    class Broken(NumpyBigram):
        def step(self, states, tokens):
            raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError, match="model exploded"):
        search.deep_search(Broken(table()), [[0]], verifier, params())

    class WrongShape(NumpyBigram):
        def logits(self, states):
            return np.zeros((len(states), V + 1), dtype=np.float32)

    with pytest.raises(ValueError, match=r"model.logits returned \[\d+, 7\] logits; expected \[\d+, 6\]"):
        search.deep_search(WrongShape(table()), [[0]], verifier, params())
    with pytest.raises(ValueError, match="returned 'right'"):
        search.deep_search(NumpyBigram(table()), [[0]], lambda i, t, f: "right", params())
    with pytest.raises(ValueError, match="prompts\\[0\\] is empty"):
        search.deep_search(NumpyBigram(table()), [[]], verifier, params())
    with pytest.raises(ValueError, match="square"):
        search.BigramPolicy(np.zeros((2, 3), dtype=np.float32))
    # Tokens outside the table are an error, not a read past it.
    bigram = search.BigramPolicy(table())
    with pytest.raises(ValueError, match=f"token {V + 5} is outside \\[0, vocab_size = {V}\\)"):
        bigram.logits(np.array([bigram.begin(np.array([V + 5], dtype=np.int32))], dtype=np.int32))
    with pytest.raises(ValueError, match="token -1 is outside"):
        search.deep_search(search.BigramPolicy(table()), [[-1]], verifier, params())
