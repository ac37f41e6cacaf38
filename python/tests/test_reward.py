"""xplor.reward: hand-checked verdicts, batch == one-by-one on random pairs, TruthRL outcomes and
metrics, errors, and the GIL released during batch verification."""
import os
import threading
import time

import numpy as np
import pytest

import xplor
from xplor import reward


def test_extract_and_check_hand_values():
    assert reward.extract_boxed(r"so \boxed{\frac{1}{2}} and \boxed{3}") == "3"
    assert reward.extract_boxed("no box") is None
    assert reward.extract_answer("#### 42", "gsm8k") == "42"
    assert reward.extract_answer("the answer is 7.", "boxed_or_answer_is") == "7"
    assert reward.check_answer("0.5", r"\frac12") == (True, "same_value")
    assert reward.check_answer("0.333333", r"\frac{1}{3}") == (False, "different_value")
    assert reward.check_answer("(1, 2)", "[1, 2]")[0] is False
    assert reward.answers_equivalent(r"2\sqrt{2}", r"\sqrt{8}")
    assert reward.answers_equivalent("1,000", "1000")


def test_verify_rewards_and_reasons():
    responses = [r"\boxed{2}", "no answer", r"\boxed{3}", r"\boxed{\frac{4}{2}}"]
    golds = ["2", "2", "2", "2"]
    rewards = reward.verify(responses, golds)
    assert rewards.dtype == np.float32
    np.testing.assert_array_equal(rewards, [1, 0, 0, 1])
    rewards, reasons = reward.verify(responses, golds, correct=2.0, incorrect=-1.0, no_answer=-3.0, reasons=True)
    np.testing.assert_array_equal(rewards, [2, -3, -1, 2])
    assert reasons == ["same_text", "no_answer", "different_value", "same_value"]


def random_pairs(n, seed):
    rng = np.random.default_rng(seed)
    forms = [lambda a, b: f"{a}/{b}", lambda a, b: rf"\frac{{{a}}}{{{b}}}", lambda a, b: f"{a / b:.6g}",
             lambda a, b: f"{a}", lambda a, b: rf"\sqrt{{{a}}}", lambda a, b: f"({a}, {b})"]
    responses, golds = [], []
    for _ in range(n):
        a, b = int(rng.integers(1, 50)), int(rng.integers(1, 12))
        f, g = forms[rng.integers(len(forms))], forms[rng.integers(len(forms))]
        responses.append(rf"reasoning ... \boxed{{{f(a, b)}}}")
        golds.append(g(a, b) if rng.random() < 0.6 else g(a + 1, b))
    return responses, golds


@pytest.mark.parametrize("threads", [1, 2])
def test_batch_equals_one_by_one(threads):
    responses, golds = random_pairs(400, threads)
    rewards = reward.verify(responses, golds, threads=threads)
    one = [float(reward.answers_equivalent(reward.extract_boxed(r), g)) for r, g in zip(responses, golds)]
    np.testing.assert_array_equal(rewards, one)
    assert 0 < rewards.sum() < len(rewards)  # both verdicts occur


def test_truthrl_outcomes_rewards_metrics():
    O = reward.Outcome
    golds = ["Paris", "paris, france"]
    assert reward.classify(r"\boxed{Paris}", golds) == O.correct
    assert reward.classify(r"\boxed{I don't know}", golds) == O.abstain
    assert reward.classify(r"\boxed{Lyon}", golds) == O.incorrect
    assert reward.classify("Paris", golds) == O.no_answer
    assert reward.classify(r"\boxed{Lutetia}", golds, judge=lambda a, g: a == "Lutetia") == O.correct
    assert reward.classify(r"\boxed{unsure}", golds, abstention_phrases=["unsure"]) == O.abstain
    codes = reward.classify_batch([r"\boxed{Paris}", r"\boxed{I dont know}", r"\boxed{Rome}", "x"],
                                  [golds] * 4, threads=2)
    np.testing.assert_array_equal(codes, [0, 1, 2, 3])
    np.testing.assert_array_equal(reward.truth_rewards(codes), [1, 0, -1, -1])
    np.testing.assert_array_equal(reward.truth_rewards(codes, "binary"), [1, -1, -1, -1])
    ook = np.array([0, 1, 0, 0], dtype=np.uint8)
    np.testing.assert_array_equal(reward.truth_rewards(codes, "ternary_ook", ook), [1, 1, -1, -1])
    assert [reward.ternary_reward(o) for o in (O.correct, O.abstain, O.incorrect)] == [1, 0, -1]
    m = reward.TruthMetrics()
    m.add_codes(codes)
    m.add(O.correct)
    assert (m.correct, m.abstain, m.incorrect, m.no_answer, m.total) == (2, 1, 1, 1, 5)
    assert m.accuracy == pytest.approx(0.4) and m.hallucination_rate == pytest.approx(0.4)
    assert m.truthfulness == pytest.approx(0.0)


def test_reward_errors():
    with pytest.raises(ValueError, match="golds has 1 elements for 2 responses"):
        reward.verify(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="extract = 'last'"):
        reward.verify(["a"], ["a"], extract="last")
    with pytest.raises(ValueError, match="threads = -1"):
        reward.verify(["a"], ["a"], threads=-1)
    with pytest.raises(ValueError, match="gold_answers is empty"):
        reward.classify(r"\boxed{1}", [])
    with pytest.raises(xplor.Error, match=r"outcomes\[1\] = 7"):
        reward.truth_rewards(np.array([0, 7], dtype=np.uint8))
    with pytest.raises(ValueError, match="variant = 'tri'"):
        reward.truth_rewards(np.array([0], dtype=np.uint8), "tri")


def hard_pairs(n):
    """Polynomial identities: ~30 us of C++ per pair, so the list conversion (GIL held) is small."""
    responses = [rf"so \boxed{{(x+{i % 7})^{{8}}}}" for i in range(n)]
    golds = [rf"(x+{i % 7})^{{4}}(x+{(i + i % 2) % 7})^4" for i in range(n)]
    return responses, golds


def test_python_runs_while_verify_runs():
    """While one thread is inside verify(), the main thread keeps executing Python code."""
    responses, golds = hard_pairs(12000)
    started, done = threading.Event(), threading.Event()

    def work():
        started.set()
        reward.verify(responses, golds)
        done.set()

    worker = threading.Thread(target=work)
    worker.start()
    started.wait()
    count = 0
    while not done.is_set():
        count += 1
    worker.join()
    # With the GIL held for the whole call the loop could only run before and after it.
    assert count > 20000, count


def test_two_threads_verify_faster_than_one():
    """Two Python threads verifying at once finish faster than the same work one after the other."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU")
    responses, golds = hard_pairs(6000)

    def work():
        reward.verify(responses, golds)

    work()  # warm up
    best = 10.0
    for _ in range(5):
        t0 = time.perf_counter()
        work()
        work()
        serial = time.perf_counter() - t0
        threads = [threading.Thread(target=work) for _ in range(2)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        parallel = time.perf_counter() - t0
        best = min(best, parallel / serial)
        if best < 0.8:
            break
    assert best < 0.8, f"two threads took {best:.2f} of the serial time"
