#!/usr/bin/env python3
"""bench_model's GPT-2-small figures next to PyTorch's on the same machine, in the same run.

Alternates `bench_model --benchmark_filter=gpt2_small` and tools/torch_model_bench.py for a few
rounds (one thread each by default, nothing else should run) and prints a markdown table of the
medians and the xplor / PyTorch ratios:

  training step (B 4, T 64) tokens/s, and its model GFLOP/s as a share of the same program's
  SGEMM rate at the step's main shape (256 x 768 x 3072);
  decoding 128 tokens after 64-token prompts: 1 state, 16 forks of one prompt, 16 prompts.

Needs the PyTorch side's interpreter (a venv with torch: python3 -m venv build/torch-venv &&
build/torch-venv/bin/pip install torch). xplor's build and tests never need it.
Usage: tools/compare_torch_speed.py [--bench build/release/benchmarks/bench_model]
                                    [--python build/torch-venv/bin/python] [--rounds 3] [--threads 1]
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess

# (label, xplor's benchmark, PyTorch's measurement)
ROWS = [
    ("training step, GPT-2 small B4 T64: tokens/s", "train_step/gpt2_small_T64_B4", "train_step/gpt2_small_T64_B4"),
    ("same, forward by the streamed kernel (the decoder's): tokens/s", "train_step/gpt2_small_T64_B4_streamed",
     "train_step/gpt2_small_T64_B4"),
    ("decoding, 1 state: tokens/s", "decode_gpt2_small/1_state", "decode_gpt2_small/1_state"),
    ("decoding, 16 forks of one prompt: tokens/s", "decode_gpt2_small/16_forks", "decode_gpt2_small/16_forks"),
    ("decoding, 16 prompts (batched prefill): tokens/s", "decode_gpt2_small/16_prompts",
     "decode_gpt2_small/16_prompts"),
]


def run_xplor(bench, env):
    out = subprocess.run([bench, "--benchmark_filter=gpt2_small", "--benchmark_min_time=0.01",
                          "--benchmark_format=json"], env=env, check=True, capture_output=True, text=True)
    res = {}
    for b in json.loads(out.stdout)["benchmarks"]:
        name = b["name"].removesuffix("/real_time")
        res[name] = b["tokens_per_s"]
        if name == "train_step/gpt2_small_T64_B4":
            res["model_GFLOPs"], res["sgemm_GFLOPs"] = b["model_GFLOPs"], b["gemm_GFLOPs"]
    return res


def run_torch(python, threads, env):
    script = pathlib.Path(__file__).with_name("torch_model_bench.py")
    out = subprocess.run([python, str(script), "--threads", str(threads), "--repetitions", "1"], env=env,
                         check=True, capture_output=True, text=True)
    raw = json.loads(out.stdout)
    res = {k.removesuffix(" tokens_per_s"): v for k, v in raw.items() if k.endswith("tokens_per_s")}
    res["sgemm_GFLOPs"] = raw["sgemm_GFLOPs"]
    res["version"] = raw["torch"]
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="build/release/benchmarks/bench_model")
    ap.add_argument("--python", default="build/torch-venv/bin/python")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    xs, ts = [], []
    for r in range(args.rounds):
        xs.append(run_xplor(args.bench, env))
        ts.append(run_torch(args.python, args.threads, env))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    med = lambda runs, key: statistics.median(run[key] for run in runs)
    print(f"\nmedians of {args.rounds} alternating rounds, {args.threads} thread(s); PyTorch {ts[0]['version']}\n")
    print("| measurement | xplor | PyTorch | xplor / PyTorch |")
    print("|---|---:|---:|---:|")
    for label, xkey, tkey in ROWS:
        x, t = med(xs, xkey), med(ts, tkey)
        print(f"| {label} | {x:.1f} | {t:.1f} | **{x / t:.2f}x** |")
    xg, tg = med(xs, "sgemm_GFLOPs"), med(ts, "sgemm_GFLOPs")
    print(f"| SGEMM 256x768x3072, GFLOP/s (Eigen in xplor / torch.mm) | {xg:.1f} | {tg:.1f} | {xg / tg:.2f}x |")
    mg = med(xs, "model_GFLOPs")
    print(f"\nxplor's training step: {mg:.1f} model GFLOP/s (6 x parameters x tokens) = "
          f"{100 * mg / xg:.0f}% of the same program's SGEMM rate")


if __name__ == "__main__":
    main()
