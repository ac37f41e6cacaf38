#!/usr/bin/env python3
"""xplor's answer checker next to HuggingFace math-verify, on the same pairs, in one run.

Two sets of pairs:
  1. the generated MATH/GSM8K corpus (benchmarks/math_corpus.hpp, labelled by construction:
     "exact means exact", so a 6-decimal approximation of 1/7 is *not* equivalent);
  2. math-verify's own regression tests (the pytest parametrize cases of its tests/ folder), when
     --math-verify-repo points at a clone of https://github.com/huggingface/Math-Verify. Those
     cases are whole responses: xplor takes each side's last \\boxed{}, else the text after
     "answer is", else the last $...$, else the whole text (tools/verify_pairs.cpp); math-verify
     runs each test function itself, with the options the test gives.

Prints agreement with the labels per answer kind, the false positives of each checker (pairs it
calls equivalent that are not) and pairs/s of each on one core.

Usage (after building xplor's tools, `cmake --build build/release --target xplor_verify_pairs`):
  python3 tools/compare_math_verify.py [--math-verify-repo PATH] [--pairs 4000] [--mv-pairs 1000]
It creates a virtual environment (build/math-verify-venv) with math-verify and pytest from PyPI
on first use and re-runs itself there. Nothing here is needed to build or test xplor.
"""
import argparse
import collections
import inspect
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "build", "math-verify-venv")
PACKAGES = ["math-verify==0.9.0", "pytest"]


def ensure_venv():
    """Re-executes this script inside the virtual environment with math-verify."""
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([python, "-m", "pip", "install", "-q", *PACKAGES])
    os.execv(python, [python, os.path.abspath(__file__), *sys.argv[1:]])


def write_records(path, rows):
    with open(path, "wb") as f:
        for row in rows:
            f.write("\x1f".join(row).encode() + b"\x1e")


def run_xplor(tool, rows, responses):
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "pairs.bin")
        out = os.path.join(d, "verdicts.txt")
        write_records(src, rows)
        args = [tool] + (["--responses"] if responses else []) + [src, out]
        rate = float(subprocess.check_output(args, text=True).split()[1])
        with open(out) as f:
            verdicts = [line.split() for line in f.read().splitlines()]
    return [v[0] == "1" for v in verdicts], [v[1] for v in verdicts], rate


def corpus_section(tool, pairs, mv_pairs):
    from math_verify import parse, verify

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "corpus.bin")
        subprocess.check_call([tool, "--corpus", str(pairs), path])
        with open(path, "rb") as f:
            records = [r.split("\x1f") for r in f.read().decode().split("\x1e")[:-1]]
    xplor_eq, reasons, xplor_rate = run_xplor(tool, [(r[0], r[1]) for r in records], False)

    # math-verify on the first mv_pairs pairs (about 100-400 pairs/s): gold and prediction boxed,
    # as a model's response and a dataset's answer are in RLVR.
    mv = records[:mv_pairs]
    for r in mv[:20]:  # warm-up (sympy's caches), not timed
        verify(parse("\\boxed{" + r[1] + "}"), parse("\\boxed{" + r[0] + "}"))
    t0 = time.perf_counter()
    mv_eq = [bool(verify(parse("\\boxed{" + r[1] + "}"), parse("\\boxed{" + r[0] + "}"))) for r in mv]
    mv_rate = len(mv) / (time.perf_counter() - t0)

    stats = collections.defaultdict(lambda: collections.Counter())
    for k, r in enumerate(records):
        kind, label = r[2], r[3] == "1"
        s = stats[kind]
        s["n"] += 1
        s["x_agree"] += xplor_eq[k] == label
        s["x_fp"] += xplor_eq[k] and not label
        if k < len(mv):
            s["m_n"] += 1
            s["m_agree"] += mv_eq[k] == label
            s["m_fp"] += mv_eq[k] and not label
    print(f"## Generated MATH/GSM8K corpus: {len(records)} pairs (math-verify on the first {len(mv)})\n")
    print("| kind | pairs | xplor agrees | xplor false pos. | math-verify agrees | math-verify false pos. |")
    print("|---|---:|---:|---:|---:|---:|")
    total = collections.Counter()
    for kind in sorted(stats):
        s = stats[kind]
        total.update(s)
        m = f"{100 * s['m_agree'] / s['m_n']:.1f}%" if s["m_n"] else "-"
        print(f"| {kind} | {s['n']} | {100 * s['x_agree'] / s['n']:.1f}% | {s['x_fp']} | {m} | {s['m_fp']} |")
    print(f"| **all** | {total['n']} | {100 * total['x_agree'] / total['n']:.1f}% | {total['x_fp']} | "
          f"{100 * total['m_agree'] / total['m_n']:.1f}% | {total['m_fp']} |")
    print(f"\npairs/s on one core: xplor {xplor_rate:,.0f}, math-verify {mv_rate:,.1f}: "
          f"**{xplor_rate / mv_rate:,.0f}x**\n")
    wrong = collections.Counter(reasons[k] for k in range(len(records)) if xplor_eq[k] != (records[k][3] == "1"))
    if wrong:
        print("xplor disagreements by reason:", dict(wrong), "\n")


def math_verify_cases(repo):
    """(test name, gold, pred, expected, callable running math-verify's own check)."""
    sys.path.insert(0, repo)
    import importlib

    cases = []
    for name in sorted(os.listdir(os.path.join(repo, "tests"))):
        if not name.startswith("test_") or not name.endswith(".py"):
            continue
        try:
            module = importlib.import_module("tests." + name[:-3])
        except Exception as e:  # a test module needing extras we do not install
            print(f"(skipped tests/{name}: {e})")
            continue
        for fname, fn in inspect.getmembers(module, inspect.isfunction):
            if not fname.startswith("test_"):
                continue
            for mark in getattr(fn, "pytestmark", []):
                if mark.name != "parametrize":
                    continue
                names = [n.strip() for n in (mark.args[0].split(",") if isinstance(mark.args[0], str) else mark.args[0])]
                if "gold" not in names or "pred" not in names or "expected" not in names:
                    continue
                for values in mark.args[1]:
                    values = getattr(values, "values", values)
                    params = dict(zip(names, values))
                    cases.append((f"{name[:-3]}::{fname}", params, fn))
    return cases


def cases_section(tool, repo):
    cases = math_verify_cases(repo)
    rows = [(str(p["pred"]), str(p["gold"])) for _, p, _ in cases]
    xplor_eq, _, _ = run_xplor(tool, rows, True)
    stats = collections.defaultdict(lambda: collections.Counter())
    for k, (test, params, fn) in enumerate(cases):
        expected = bool(params["expected"])
        try:
            fn(**params)
            mv_ok = True
        except Exception:
            mv_ok = False
        s = stats[test.split("::")[0]]
        s["n"] += 1
        s["x_agree"] += xplor_eq[k] == expected
        s["x_fp"] += xplor_eq[k] and not expected
        s["x_fn"] += expected and not xplor_eq[k]
        s["m_agree"] += mv_ok
    print(f"## math-verify's own test cases: {len(cases)} pairs\n")
    print("| test file | pairs | xplor agrees | xplor false pos. | xplor false neg. | math-verify passes |")
    print("|---|---:|---:|---:|---:|---:|")
    total = collections.Counter()
    for test in sorted(stats):
        s = stats[test]
        total.update(s)
        print(f"| {test} | {s['n']} | {100 * s['x_agree'] / s['n']:.1f}% | {s['x_fp']} | {s['x_fn']} | "
              f"{100 * s['m_agree'] / s['n']:.1f}% |")
    print(f"| **all** | {total['n']} | {100 * total['x_agree'] / total['n']:.1f}% | {total['x_fp']} | {total['x_fn']} | "
          f"{100 * total['m_agree'] / total['n']:.1f}% |\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", default=os.path.join(ROOT, "build", "release", "tools", "xplor_verify_pairs"))
    ap.add_argument("--math-verify-repo", help="a clone of huggingface/Math-Verify (for its test cases)")
    ap.add_argument("--pairs", type=int, default=4000)
    ap.add_argument("--mv-pairs", type=int, default=1000)
    args = ap.parse_args()
    ensure_venv()
    corpus_section(args.tool, args.pairs, args.mv_pairs)
    if args.math_verify_repo:
        cases_section(args.tool, os.path.abspath(args.math_verify_repo))


if __name__ == "__main__":
    main()
