"""xplor.dist: every rank's slice equals the single-process result, with ranks as Python threads
sharing a gather (the C++ calls release the GIL, so the ranks run their collectives together), and
torch.distributed's communicator on one rank when torch is installed."""
import threading

import numpy as np
import pytest

import xplor


class ThreadWorld:
    def __init__(self, size):
        self.size = size
        self.slots = [None] * size
        self.barrier = threading.Barrier(size, timeout=60)


class ThreadComm:
    def __init__(self, world, rank):
        self.world, self.rank, self.size = world, rank, world.size

    def all_gather_bytes(self, data):
        self.world.slots[self.rank] = bytes(data)
        self.world.barrier.wait()
        out = list(self.world.slots)
        self.world.barrier.wait()
        return out


def run_ranks(size, body):
    world = ThreadWorld(size)
    results, errors = [None] * size, []

    def work(r):
        try:
            results[r] = body(ThreadComm(world, r))
        except Exception as e:  # noqa: BLE001 - surfaced below
            errors.append(e)
            world.barrier.abort()

    threads = [threading.Thread(target=work, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def cuts(n, size, rng):
    return np.sort(np.concatenate([[0, n], rng.integers(0, n + 1, size - 1)])).astype(int)


@pytest.mark.parametrize("size", [1, 2, 3])
def test_allocate_rollouts_equals_one_process(size):
    rng = np.random.default_rng(size)
    for m in [1, 9, 3000]:
        p = np.round(rng.random(m) * 8) / 8  # ties everywhere
        has = (rng.random(m) > 0.1).astype(np.uint8)
        budget = int(m * 6)
        whole = xplor.budget.allocate_rollouts(p, budget, has, n_min=1, n_max=16)
        c = cuts(m, size, rng)
        parts = run_ranks(size, lambda comm: xplor.dist.allocate_rollouts(
            comm, p[c[comm.rank]:c[comm.rank + 1]], budget, has[c[comm.rank]:c[comm.rank + 1]], n_min=1, n_max=16))
        assert np.array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("size", [1, 2, 4])
def test_advantages_equal_one_process_bit_for_bit(size):
    rng = np.random.default_rng(7 + size)
    sizes = rng.integers(1, 9, 30)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    rewards = np.where(rng.random(offsets[-1]) < 0.5, rng.integers(0, 2, offsets[-1]), rng.random(offsets[-1]))
    rewards = rewards.astype(np.float32)
    opts = xplor.rl.AdvantageOptions()
    opts.scale = "batch"
    whole, report = xplor.rl.advantages(rewards, offsets=offsets, estimator="reinforce_pp", options=opts)
    c = cuts(len(sizes), size, rng)

    def body(comm):
        g0, g1 = c[comm.rank], c[comm.rank + 1]
        e0, e1 = offsets[g0], offsets[g1]
        return xplor.dist.advantages(comm, rewards[e0:e1], offsets=offsets[g0:g1 + 1] - e0,
                                     estimator="reinforce_pp", options=opts)

    parts = run_ranks(size, body)
    assert np.array_equal(np.concatenate([a for a, _ in parts]), whole)
    assert all(r["batch_mean"] == report["batch_mean"] and r["batch_std"] == report["batch_std"] for _, r in parts)


def test_bad_communicators_and_input():
    with pytest.raises(xplor.Error, match="needs rank, size and all_gather_bytes"):
        xplor.dist.allocate_rollouts(object(), np.array([0.5]), 4)

    class Bad(xplor.dist.SingleProcess):
        def all_gather_bytes(self, data):
            return []

    with pytest.raises(xplor.Error, match="returned 0 parts for 1 ranks"):
        xplor.dist.allocate_rollouts(Bad(), np.array([0.5]), 4)

    class Raises(xplor.dist.SingleProcess):
        def all_gather_bytes(self, data):
            raise RuntimeError("the network is down")

    with pytest.raises(RuntimeError, match="the network is down"):
        xplor.dist.allocate_rollouts(Raises(), np.array([0.5]), 4)
    # A bad probability is reported with its global index on every rank.
    p = [np.array([0.5, 0.5]), np.array([0.5, 1.5])]
    with pytest.raises(xplor.Error, match=r"p_hat\[3\] = 1.5"):
        run_ranks(2, lambda comm: xplor.dist.allocate_rollouts(comm, p[comm.rank], 16))
    counts = xplor.dist.allocate_rollouts(xplor.dist.SingleProcess(), np.array([0.5, 0.25]), 8)
    assert np.array_equal(counts, xplor.budget.allocate_rollouts(np.array([0.5, 0.25]), 8))


def test_torch_communicator_on_one_rank(tmp_path):
    torch_dist = pytest.importorskip("torch.distributed")
    if not torch_dist.is_available():
        pytest.skip("torch.distributed is not available")
    torch_dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        comm = xplor.dist.TorchCommunicator()
        assert (comm.rank, comm.size) == (0, 1)
        p = np.array([0.1, 0.5, 0.9, 0.5])
        assert np.array_equal(xplor.dist.allocate_rollouts(comm, p, 20), xplor.budget.allocate_rollouts(p, 20))
    finally:
        torch_dist.destroy_process_group()
