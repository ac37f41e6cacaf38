"""xplor.sample: the processors against NumPy, reproducible draws, frequencies, bad input."""
import numpy as np
import pytest

from xplor import sample


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_temperature_and_top_k_against_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 50)).astype(np.float32)
    out = sample.process_logits(logits, sample.SamplingParams(temperature=0.7))
    np.testing.assert_allclose(out, log_softmax(logits.astype(np.float64) / 0.7), rtol=1e-5, atol=1e-5)
    out = sample.process_logits(logits, sample.SamplingParams(top_k=5))
    for row, x in zip(out, logits):
        kept = np.isfinite(row)
        assert kept.sum() == 5
        top = np.argsort(-x)[:5]
        assert set(np.flatnonzero(kept)) == set(top)
        np.testing.assert_allclose(row[kept], log_softmax(x[kept].astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_top_p_keeps_the_smallest_prefix():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], dtype=np.float32))
    out = sample.process_logits(logits, sample.SamplingParams(top_p=0.75))
    assert np.isfinite(out[0]).tolist() == [True, True, False, False]
    np.testing.assert_allclose(np.exp(out[0, :2]), [0.625, 0.375], rtol=1e-6)


def test_repetition_penalty_per_row_context():
    logits = np.array([[2.0, -1.0, 0.5], [2.0, -1.0, 0.5]], dtype=np.float32)
    out = sample.process_logits(logits, sample.SamplingParams(repetition_penalty=2.0),
                                context_tokens=np.array([0, 1], dtype=np.int32),
                                context_offsets=np.array([0, 2, 2]))
    # HF semantics: positive logits divided, negative multiplied; row 1 has no context.
    np.testing.assert_allclose(out[0], log_softmax(np.array([1.0, -2.0, 0.5])), rtol=1e-6)
    np.testing.assert_allclose(out[1], log_softmax(logits[1].astype(np.float64)), rtol=1e-6)


def test_draws_are_reproducible_and_independent_of_the_batch():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(64, 100)).astype(np.float32)
    streams = np.array([sample.stream_id(i, 3) for i in range(64)], dtype=np.uint64)
    draws = np.full(64, 5, dtype=np.uint64)
    params = sample.SamplingParams(temperature=0.9, top_p=0.95)
    tokens, logprobs, entropies = sample.sample_rows(logits, params, seed=42, streams=streams, draws=draws)
    again, _, _ = sample.sample_rows(logits, params, seed=42, streams=streams, draws=draws, threads=1)
    np.testing.assert_array_equal(tokens, again)
    # Row r's token depends only on its own logits and keys: the reversed batch gives the reversed tokens.
    rev, rev_lp, _ = sample.sample_rows(logits[::-1].copy(), params, seed=42, streams=streams[::-1].copy(),
                                        draws=draws)
    np.testing.assert_array_equal(rev, tokens[::-1])
    processed = sample.process_logits(logits, params)
    np.testing.assert_allclose(logprobs, processed[np.arange(64), tokens], rtol=1e-6)
    p = np.exp(processed)
    want_entropy = -(p * np.where(p > 0, processed, 0)).sum(axis=1)
    np.testing.assert_allclose(entropies, want_entropy, rtol=1e-4, atol=1e-5)
    other, _, _ = sample.sample_rows(logits, params, seed=43, streams=streams, draws=draws)
    assert (other != tokens).any()


def test_draw_frequencies_follow_the_distribution():
    probs = np.array([0.5, 0.25, 0.125, 0.125])
    n = 20000
    logits = np.tile(np.log(probs).astype(np.float32), (n, 1))
    streams = np.arange(n, dtype=np.uint64)
    tokens, _, _ = sample.sample_rows(logits, sample.SamplingParams(), seed=7, streams=streams,
                                      draws=np.zeros(n, dtype=np.uint64))
    freq = np.bincount(tokens, minlength=4) / n
    # 5 standard errors of a binomial proportion.
    assert np.all(np.abs(freq - probs) < 5 * np.sqrt(probs * (1 - probs) / n))


def test_sample_errors():
    logits = np.zeros((2, 3), dtype=np.float32)
    keys = dict(seed=0, streams=np.zeros(2, dtype=np.uint64), draws=np.zeros(2, dtype=np.uint64))
    with pytest.raises(ValueError, match="temperature"):
        sample.sample_rows(logits, sample.SamplingParams(temperature=0.0), **keys)
    with pytest.raises(ValueError, match="top_p"):
        sample.process_logits(logits, sample.SamplingParams(top_p=1.5))
    with pytest.raises(ValueError, match="keys.streams has 1 elements for 2 rows"):
        sample.sample_rows(logits, sample.SamplingParams(), seed=0, streams=np.zeros(1, dtype=np.uint64),
                           draws=np.zeros(2, dtype=np.uint64))
    with pytest.raises(ValueError, match="logits"):
        sample.process_logits(np.array([[np.nan, 0.0]], dtype=np.float32), sample.SamplingParams())
    with pytest.raises(ValueError, match="context_tokens and context_offsets"):
        sample.process_logits(logits, sample.SamplingParams(), context_tokens=np.zeros(1, dtype=np.int32))
