"""xplor from Python against the Python peers, in one run on the same inputs.

1. Batch verification, pairs/s: xplor.reward.verify (one thread, and all threads) against
   HuggingFace math-verify's parse + verify on the same (response, gold) pairs. Also the
   agreement of the two verdicts, so that a fast checker that says something else is visible.
2. GRPO advantages + DAPO loss + d loss / d logp on a [B, L] batch: xplor.rl.advantages and
   xplor.rl.policy_loss against the same arithmetic in PyTorch ops on CPU tensors (autograd for
   the gradient), checked equal before timing.

Every figure is the median of --repeats timed runs. Needs numpy, the installed xplor wheel,
torch and math-verify (pip install torch "math-verify==0.9.0"); either peer may be missing, and
its section is skipped.

Run: python python/benchmarks/bench_python.py [--pairs 20000] [--mv-pairs 2000] [--repeats 5]
"""
import argparse
import os
import statistics
import time

import numpy as np

import xplor


def corpus(n, seed=0):
    """(response, gold, label) triples: numbers, fractions, decimals, radicals, tuples, intervals,
    each with an equivalent or a different gold in another notation."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, b = int(rng.integers(1, 60)), int(rng.integers(2, 13))
        kind = rng.integers(6)
        same = rng.random() < 0.5
        c = a if same else a + int(rng.integers(1, 4))
        if kind == 0:
            pred, gold = f"{a * b}", f"{c * b}"
        elif kind == 1:
            pred, gold = rf"\frac{{{a}}}{{{b}}}", f"{c}/{b}"
        elif kind == 2:
            pred, gold = f"{a / 4:g}", rf"\frac{{{c}}}{{4}}"
        elif kind == 3:
            pred, gold = rf"{a}\sqrt{{{b}}}", rf"\sqrt{{{c * c * b}}}"
        elif kind == 4:
            pred, gold = f"({a}, {b})", f"({c},{b})"
        else:
            pred, gold = f"[{a}, {a + b})", rf"\left[{c},{a + b}\right)"
        out.append((f"We compute step by step. So the answer is $\\boxed{{{pred}}}$.", gold, same))
    return out


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_verify(pairs, mv_pairs, repeats):
    rows = corpus(pairs)
    responses, golds, labels = [r[0] for r in rows], [r[1] for r in rows], np.array([r[2] for r in rows])
    xr = xplor.reward.verify(responses, golds)
    print(f"## Batch verification: {pairs} pairs (numbers, fractions, decimals, radicals, tuples, intervals)\n")
    print(f"xplor agrees with the labels on {100 * np.mean((xr > 0) == labels):.1f}% of the pairs")
    t1 = median_time(lambda: xplor.reward.verify(responses, golds, threads=1), repeats)
    tn = median_time(lambda: xplor.reward.verify(responses, golds, threads=0), repeats)
    rate1, raten = pairs / t1, pairs / tn
    print("\n| checker | pairs/s | vs math-verify |\n|---|---:|---:|")
    try:
        from math_verify import parse, verify
    except ImportError:
        print(f"| xplor, 1 thread | {rate1:,.0f} | - |\n| xplor, {os.cpu_count()} threads | {raten:,.0f} | - |")
        print("\n(math-verify is not installed: pip install math-verify)\n")
        return
    sub = rows[:mv_pairs]
    for r in sub[:20]:  # warm sympy's caches, untimed
        verify(parse("$" + r[1] + "$"), parse(r[0]))

    def run_mv():
        return [bool(verify(parse("$" + g + "$"), parse(resp))) for resp, g, _ in sub]

    mv = run_mv()
    tm = median_time(run_mv, max(1, repeats // 2))
    mrate = len(sub) / tm
    agree_mv = np.mean(np.array(mv) == np.array([r[2] for r in sub]))
    print(f"| xplor, 1 thread | {rate1:,.0f} | {rate1 / mrate:,.0f}x |")
    print(f"| xplor, {os.cpu_count()} threads | {raten:,.0f} | {raten / mrate:,.0f}x |")
    print(f"| math-verify 0.9 (parse + verify, 1 thread) | {mrate:,.1f} | 1x |")
    print(f"\nmath-verify agrees with the labels on {100 * agree_mv:.1f}% of its {len(sub)} pairs; "
          f"xplor and math-verify agree on {100 * np.mean(np.array(mv) == (xr[:len(sub)] > 0)):.1f}%.\n")


def bench_loss(groups, group_size, length, repeats):
    try:
        import torch
    except ImportError:
        print("## Advantages + loss + dlogp: torch is not installed; skipped\n")
        return
    torch.set_num_threads(1)
    B, L = groups * group_size, length
    rng = np.random.default_rng(1)
    rewards = rng.integers(0, 2, size=B).astype(np.float32)
    logp = rng.normal(-1.0, 0.5, size=(B, L)).astype(np.float32)
    old = (logp + rng.normal(0, 0.05, size=(B, L))).astype(np.float32)
    lengths = rng.integers(L // 4, L + 1, size=B)
    mask = (np.arange(L)[None, :] < lengths[:, None]).astype(np.float32)
    _, options = xplor.rl.trl_options({"loss_type": "dapo", "epsilon": 0.2, "epsilon_high": 0.28})

    def run_xplor():
        adv, _ = xplor.rl.advantages(rewards, group_size=group_size)
        loss, _, dlogp = xplor.rl.policy_loss(logp, adv, mask=mask, old_logp=old, options=options)
        return loss, dlogp

    t_rewards, t_old, t_mask = torch.from_numpy(rewards), torch.from_numpy(old), torch.from_numpy(mask)

    def run_torch():
        g = t_rewards.view(-1, group_size)
        adv = ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-4)).view(-1, 1)
        lp = torch.from_numpy(logp).requires_grad_(True)
        ratio = torch.exp(lp - t_old)
        per_token = -torch.min(ratio * adv, torch.clamp(ratio, 0.8, 1.28) * adv)
        loss = (per_token * t_mask).sum() / t_mask.sum().clamp(min=1.0)
        loss.backward()
        return float(loss.detach()), lp.grad.numpy()

    xl, xd = run_xplor()
    tl, td = run_torch()
    assert abs(xl - tl) <= 1e-5 * abs(tl) + 1e-6, (xl, tl)
    np.testing.assert_allclose(xd, td, rtol=1e-4, atol=1e-7)
    tx = median_time(run_xplor, repeats)
    tt = median_time(run_torch, repeats)
    print(f"## GRPO advantages + DAPO loss + dlogp: B = {B} ({groups} groups of {group_size}), L = {L}, one thread\n")
    print("| implementation | ms | tokens/s | vs PyTorch |\n|---|---:|---:|---:|")
    print(f"| xplor (advantages + policy_loss) | {1e3 * tx:.2f} | {B * L / tx:,.0f} | {tt / tx:.2f}x |")
    print(f"| PyTorch ops + autograd (torch {torch.__version__}) | {1e3 * tt:.2f} | {B * L / tt:,.0f} | 1x |")
    print(f"\nSame loss (|diff| {abs(xl - tl):.1e}) and gradients (max |diff| {np.abs(xd - td).max():.1e}).\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=20000)
    ap.add_argument("--mv-pairs", type=int, default=2000)
    ap.add_argument("--groups", type=int, default=64)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"xplor {xplor.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs\n")
    bench_verify(args.pairs, args.mv_pairs, args.repeats)
    bench_loss(args.groups, args.group_size, args.length, args.repeats)


if __name__ == "__main__":
    main()
