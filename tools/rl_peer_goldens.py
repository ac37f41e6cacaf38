#!/usr/bin/env python3
"""Golden inputs and outputs for xplor's GRPO-family losses and advantages, produced by the peers' own code.

Peers:
  * TRL 1.16.0 (PyPI `trl==1.16.0`): `GRPOTrainer._compute_loss` is called as is, on a trainer built without
    a model (`GRPOTrainer.__new__` plus the attributes `__init__` would set from a real `GRPOConfig`), with
    `_get_per_token_logps_and_entropies` patched to hand back our leaf tensors. TRL's advantages live inside
    `_generate_and_score_completions`; that block of TRL's source (from
    `if self.multi_objective_aggregation == "sum_then_normalize":` to
    `advantages = torch.nan_to_num(advantages, nan=0.0)`) is cut out of the installed file and exec'd verbatim.
  * verl (PyPI `verl`, 0.9.1 when this was written): the actor loss is `verl.workers.utils.losses.ppo_loss`
    (policy loss from `core_algos.get_policy_loss_fn`, minus `agg_loss(entropy) * entropy_coeff`, plus
    `agg_loss(kl_penalty(...)) * kl_loss_coef`); advantages come from `core_algos.get_adv_estimator_fn(name)`,
    called with the arguments `verl.trainer.ppo.ray_trainer.compute_advantage` passes. verl 0.9.1 is importable
    with the few light packages below (no stubs); its own dependency list (vllm-era transformers pin, wandb,
    hydra, ...) is not needed for these functions, hence `--no-deps`.

Every peer runs in float64 on float32 inputs (drawn with a fixed numpy seed per case, rounded to float32 and
then widened), so each golden is the exact answer for the stored inputs; everything is stored as float32.

Output, for P in {trl, verl}: tests/data/rl_peers/P.json (cases: config with the peer's own option names,
input/output tensor names, scalar goldens) and tests/data/rl_peers/P.safetensors (tensors "<case id>/<name>").
The C++ test reads these files; nothing here is needed to build or test xplor.

Create the environment and run (from the repository root; build/ is git-ignored):
  python3.11 -m venv build/peer-venv
  build/peer-venv/bin/pip install torch numpy safetensors "trl==1.16.0"
  build/peer-venv/bin/pip install --no-deps "verl==0.9.1"
  build/peer-venv/bin/pip install omegaconf "tensordict>=0.8,<=0.10,!=0.9.0" codetiming ray pillow
  build/peer-venv/bin/python tools/rl_peer_goldens.py            # both peers; --peer trl|verl for one
(`pip install torch --index-url https://download.pytorch.org/whl/cpu` gives a smaller CPU-only torch where
that index is reachable; the plain PyPI wheel works as well.)
"""
import argparse
import hashlib
import inspect
import json
import logging
import math
import os
import sys
import tempfile
import textwrap
import types
import warnings
from collections import defaultdict

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "data", "rl_peers")

try:
    import torch
    from safetensors.numpy import load_file, save_file
except ImportError as e:  # the usual mistake: running it with the system python
    sys.exit(f"{e}: run this with the venv's python (see the docstring for the commands)")

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
# Constants the peers create internally (torch.tensor(0.0), torch.ones(...)) follow the default dtype, so the
# whole computation is float64, not just our inputs.
torch.set_default_dtype(torch.float64)


# ----------------------------------------------------------------------------------------------------------
# Common: the output files and the input draws
# ----------------------------------------------------------------------------------------------------------
class Goldens:
    """Collects one peer's cases and writes P.json + P.safetensors."""

    def __init__(self, peer):
        self.peer = peer
        self.cases = []
        self.tensors = {}

    def add(self, label, kind, function, config, shape, inputs, scalars, arrays):
        case_id = f"{self.peer}_{len(self.cases) + 1:04d}"
        for group, what in (("input", inputs), ("golden", arrays)):
            for name, value in what.items():
                value = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
                if value.ndim == 0:
                    value = value.reshape(1)
                assert np.isfinite(value).all(), f"{case_id}: non-finite {group} {name}"
                self.tensors[f"{case_id}/{name}"] = value
        for name, value in scalars.items():
            assert math.isfinite(value), f"{case_id}: non-finite golden {name} = {value}"
        self.cases.append({
            "id": case_id, "label": label, "kind": kind, "function": function, "config": config,
            "shape": list(shape), "inputs": list(inputs), "scalars": {k: float(v) for k, v in scalars.items()},
            "arrays": list(arrays),
        })

    def write(self, versions, out_dir):
        os.makedirs(out_dir, exist_ok=True)
        doc = {"peer": self.peer, "versions": versions, "generator": "tools/rl_peer_goldens.py", "cases": self.cases}
        json_path = os.path.join(out_dir, f"{self.peer}.json")
        st_path = os.path.join(out_dir, f"{self.peer}.safetensors")
        with open(json_path, "w") as f:
            json.dump(doc, f, indent=1, allow_nan=False)
            f.write("\n")
        save_file(self.tensors, st_path)
        return json_path, st_path


def verify(json_path, st_path):
    """Reads the files back the way the C++ test will and checks every reference."""
    with open(json_path) as f:
        doc = json.load(f)
    tensors = load_file(st_path)
    used = set()
    for case in doc["cases"]:
        for name in case["inputs"] + case["arrays"]:
            key = f"{case['id']}/{name}"
            assert key in tensors, f"missing tensor {key}"
            assert tensors[key].dtype == np.float32 and np.isfinite(tensors[key]).all(), key
            used.add(key)
        assert all(math.isfinite(v) for v in case["scalars"].values()), case["id"]
    assert used == set(tensors), "tensors not referenced by any case"
    return doc, tensors


def f32(a):
    return np.asarray(a, dtype=np.float32)


def t64(a):
    """A float32 array widened to a float64 tensor: the peer sees exactly the stored value."""
    return torch.from_numpy(f32(a).astype(np.float64))


def draw_shape(rng, B=None, L=None):
    return (int(rng.integers(4, 9)) if B is None else B), (int(rng.integers(5, 10)) if L is None else L)


def draw_mask(rng, B, L, *, empty_row=False, holes=False, fractional=False):
    """Right-padded completions of random length; optionally holes (tool/observation tokens), one fully masked
    row, or fractional weights. Always keeps at least two valid tokens in each of two rows."""
    lengths = rng.integers(2, L + 1, size=B)
    lengths[rng.integers(B)] = L
    mask = (np.arange(L)[None, :] < lengths[:, None]).astype(np.float64)
    if holes:
        for b in rng.choice(B, size=max(1, B // 3), replace=False):
            if lengths[b] >= 4:
                mask[b, rng.integers(1, lengths[b] - 1)] = 0.0
    if empty_row:
        mask[rng.integers(B)] = 0.0
    if fractional:
        w = rng.choice([0.25, 0.5, 0.75, 1.0], size=(B, L))
        mask = mask * w
    assert (mask.sum(-1) > 0).sum() >= 2
    return f32(mask)


def draw_logps(rng, B, L, *, extreme=False, on_policy=False):
    """logp in [-6, -0.01]; old and ref logp at ~0.3 / ~0.4 noise, so ratios cross the clip bounds both ways.
    `extreme` plants |logp - old| > 20 and |logp - ref| > 20 in both directions to hit the peers' clamps."""
    logp = rng.uniform(-6.0, -0.01, size=(B, L))
    old = np.minimum(logp + rng.normal(0.0, 0.3, size=(B, L)), -0.005)
    ref = np.minimum(logp + rng.normal(0.0, 0.4, size=(B, L)), -0.005)
    if on_policy:
        old = logp.copy()
    if extreme:
        cells = rng.permutation(B * L)[:4]
        (b0, l0), (b1, l1), (b2, l2), (b3, l3) = [divmod(int(c), L) for c in cells]
        old[b0, l0] = logp[b0, l0] - 22.0          # log ratio +22: beyond +20
        logp[b1, l1], old[b1, l1] = -27.0, -1.0    # log ratio -26
        ref[b2, l2] = logp[b2, l2] - 23.0          # logp - ref = +23
        logp[b3, l3], ref[b3, l3] = -28.0, -0.5    # ref - logp = +27.5
    return f32(logp), f32(old), f32(ref)


def draw_entropies(rng, B, L):
    return f32(rng.uniform(0.0, 3.0, size=(B, L)))


def draw_ratio(rng, shape, mask=None, zeros=0):
    """Rollout / vLLM importance ratios in [0.5, 2]; 1 where masked (TRL's ratio is exp(0) there); `zeros`
    entries set to 0 (what the *_mask modes write for out-of-range ratios)."""
    r = rng.uniform(0.5, 2.0, size=shape)
    if mask is not None and r.shape == mask.shape:
        r = np.where(mask > 0, r, 1.0)
    for _ in range(zeros):
        r.flat[rng.integers(r.size)] = 0.0
    return f32(r)


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def jsonable(v):
    if isinstance(v, (bool, int, str)) or v is None:
        return v
    if isinstance(v, float):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, torch.Tensor):
        return v.item()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return str(v)


def flag_label(parts):
    return ", ".join(p for p in parts if p)


# ----------------------------------------------------------------------------------------------------------
# TRL
# ----------------------------------------------------------------------------------------------------------
TRL_LOSS_KEYS = [
    "loss_type", "epsilon", "epsilon_high", "delta", "beta", "use_bias_correction_kl", "importance_sampling_level",
    "top_entropy_quantile", "entropy_coef", "use_adaptive_entropy", "off_policy_mask_threshold", "use_vllm",
    "vllm_importance_sampling_correction", "vllm_importance_sampling_mode", "sapo_temperature_pos",
    "sapo_temperature_neg", "vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg", "vespo_lambda_neg",
    "max_completion_length", "gradient_accumulation_steps", "steps_per_generation",
]
TRL_ADV_KEYS = ["scale_rewards", "multi_objective_aggregation", "reward_weights", "num_generations"]


class _SingleProcessAccelerator:
    """What `_compute_loss` asks of accelerate's Accelerator, for one process: gathers and reductions over a
    single rank are the identity."""

    num_processes = 1
    process_index = 0
    sync_gradients = True

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x

    def pad_across_processes(self, x, dim=0, pad_index=0):
        return x


def trl_config(tmp, **kw):
    from trl import GRPOConfig

    return GRPOConfig(output_dir=tmp, report_to="none", use_cpu=True, **kw)


def trl_trainer(args):
    """A GRPOTrainer without a model: the attributes `_compute_loss` reads, set from `args` the way
    GRPOTrainer.__init__ (trl 1.16.0) sets them."""
    from trl import GRPOTrainer

    t = GRPOTrainer.__new__(GRPOTrainer)
    t.args = args
    t.max_completion_length = args.max_completion_length
    t.num_generations = args.num_generations
    t.use_vllm = args.use_vllm
    t.vllm_importance_sampling_correction = args.vllm_importance_sampling_correction
    t.vllm_importance_sampling_mode = args.vllm_importance_sampling_mode
    t.loss_type = args.loss_type
    t.multi_objective_aggregation = args.multi_objective_aggregation
    t.router_aux_loss_coef = 0.0
    t.aux_loss_enabled = False  # no MoE router here
    t.scale_rewards = args.scale_rewards
    t.importance_sampling_level = args.importance_sampling_level
    t.off_policy_mask_threshold = args.off_policy_mask_threshold
    t.top_entropy_quantile = args.top_entropy_quantile
    t.entropy_coef = args.entropy_coef
    t.use_adaptive_entropy = args.use_adaptive_entropy
    t._entropy_bonus_enabled = t.entropy_coef != 0.0 or t.use_adaptive_entropy
    t._last_world_entropy = float("inf")
    t._entropy_window_stats = None
    t.num_iterations = args.num_iterations
    t.epsilon_low = args.epsilon
    t.epsilon_high = args.epsilon_high if args.epsilon_high is not None else args.epsilon
    t.beta = args.beta
    t._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    t.accelerator = _SingleProcessAccelerator()
    t.model = types.SimpleNamespace(training=True)
    t.current_gradient_accumulation_steps = args.gradient_accumulation_steps
    return t


def run_trl_loss(args, d):
    """Calls TRL's own `_compute_loss` and backward; returns (loss, dlogp, dentropy, metrics as TRL logs them)."""
    t = trl_trainer(args)
    logp = t64(d["logp"]).requires_grad_(True)
    ent = t64(d["entropies"]).requires_grad_(True)
    t._get_per_token_logps_and_entropies = lambda *a, **k: (logp, ent, None)
    B, L = logp.shape
    inputs = {
        "prompt_ids": torch.zeros(B, 1, dtype=torch.long),
        "prompt_mask": torch.ones(B, 1, dtype=torch.long),
        "completion_ids": torch.zeros(B, L, dtype=torch.long),
        "completion_mask": t64(d["mask"]),
        "advantages": t64(d["advantages"]),
        "old_per_token_logps": t64(d["old_logp"]),
        "num_items_in_batch": t64(d["num_items_in_batch"]).reshape(()),
    }
    if "ref_logp" in d:
        inputs["ref_per_token_logps"] = t64(d["ref_logp"])
    if "importance_sampling_ratio" in d:
        inputs["importance_sampling_ratio"] = t64(d["importance_sampling_ratio"])
    if "sampling_logp" in d:
        inputs["sampling_per_token_logps"] = t64(d["sampling_logp"])
    loss = t._compute_loss(None, inputs)
    loss.backward()
    metrics = {}
    for name, values in t._metrics["train"].items():
        assert len(values) == 1, name
        metrics[name] = float(values[0])
    dlogp = logp.grad.numpy()
    dent = ent.grad.numpy() if ent.grad is not None else np.zeros((B, L))
    return float(loss.item()), dlogp, dent, metrics


def trl_advantage_code():
    """TRL's advantage block, cut verbatim out of the installed grpo_trainer.py."""
    import trl.trainer.grpo_trainer as gt

    path = inspect.getsourcefile(gt)
    lines = open(path).read().splitlines()
    begin = 'if self.multi_objective_aggregation == "sum_then_normalize":'
    end = "advantages = torch.nan_to_num(advantages, nan=0.0)"
    starts = [i for i, s in enumerate(lines) if s.strip() == begin]
    if len(starts) != 1:
        sys.exit(f"TRL advantage block: expected one `{begin}` in {path}, found {len(starts)}")
    ends = [i for i in range(starts[0], len(lines)) if lines[i].strip() == end]
    if not ends:
        sys.exit(f"TRL advantage block: `{end}` not found after line {starts[0] + 1} of {path}")
    first, last = starts[0], ends[0]
    code = textwrap.dedent("\n".join(lines[first:last + 1]))
    return compile(code, f"{path}:{first + 1}-{last + 1}", "exec"), (first + 1, last + 1)


def run_trl_advantage(code, args, rewards_per_func):
    from trl.trainer.utils import nanstd

    K = rewards_per_func.shape[1]
    weights = args.reward_weights if args.reward_weights is not None else [1.0] * K
    this = types.SimpleNamespace(
        scale_rewards=args.scale_rewards,
        multi_objective_aggregation=args.multi_objective_aggregation,
        # GRPOTrainer.__init__: torch.tensor(args.reward_weights, dtype=torch.float32)
        reward_weights=torch.tensor(weights, dtype=torch.float32),
        reward_funcs=[None] * K,
    )
    rewards_per_func = t64(rewards_per_func)
    ns = {
        "self": this, "rewards_per_func": rewards_per_func, "num_generations": args.num_generations,
        "device": "cpu", "torch": torch, "nanstd": nanstd,
        # the line just above the block in _generate_and_score_completions
        "unscorable_mask": torch.isnan(rewards_per_func).all(dim=1),
    }
    exec(code, ns)
    return ns["advantages"].numpy(), float(ns["is_std_zero"].float().mean().item())


def trl_loss_cases():
    """(GRPOConfig options, input options) per case. Each option alone per loss type, then a few combinations
    and the masked / extreme inputs."""
    clip_types = ["grpo", "bnpo", "dr_grpo", "dapo", "luspo"]
    cases = []
    for lt in clip_types + ["cispo", "sapo", "vespo"]:
        base = {"loss_type": lt, "epsilon": 0.2, "epsilon_high": 5.0 if lt == "cispo" else 0.2}
        if lt == "luspo":
            base["importance_sampling_level"] = "sequence"  # the paper's setup (TRL warns otherwise)

        def add(cfg=None, **data):
            cases.append(({**base, **(cfg or {})}, data))

        add()
        add(zero_adv=True, on_policy=True, cfg={"beta": 0.04})
        if lt in clip_types:
            add({"epsilon_high": 0.28})
            add({"epsilon_high": 0.28, "delta": 1.5})
            add({"delta": 1.5}, extreme=True)
        if lt == "cispo":
            add({"epsilon_high": 1.2})
        add({"beta": 0.04})
        add({"beta": 0.04, "use_bias_correction_kl": False})
        if lt == "luspo":
            add({"importance_sampling_level": "token"})
        elif lt != "vespo":  # vespo computes its own sequence weights; TRL asks for "token"
            add({"importance_sampling_level": "sequence"})
            add({"importance_sampling_level": "sequence", "beta": 0.04}, empty_row=True)
        add({"entropy_coef": 0.01})
        add({"top_entropy_quantile": 0.5})
        add({"top_entropy_quantile": 0.5, "entropy_coef": 0.01}, empty_row=True)
        add({"off_policy_mask_threshold": 0.05})
        vllm = {"use_vllm": True, "vllm_importance_sampling_correction": True}
        add({**vllm, "vllm_importance_sampling_mode": "token_truncate"})
        add({**vllm, "vllm_importance_sampling_mode": "token_mask"}, ratio_zeros=2)
        if lt != "vespo":  # TRL rejects the sequence_* modes for vespo
            add({**vllm, "vllm_importance_sampling_mode": "sequence_mask"})
        add({**vllm, "vllm_importance_sampling_mode": "token_truncate", "off_policy_mask_threshold": 0.05})
        if lt == "grpo":  # vLLM without the correction: TRL then passes no ratio at all
            add({"use_vllm": True, "vllm_importance_sampling_correction": False})
        if lt in ("dapo", "cispo", "vespo"):
            add(num_items="scaled")
            add({"beta": 0.04}, num_items="scaled", empty_row=True)
        if lt == "sapo":
            add({"sapo_temperature_pos": 0.5, "sapo_temperature_neg": 2.0})
            add({"sapo_temperature_pos": 3.0, "sapo_temperature_neg": 0.7}, extreme=True)
        if lt == "vespo":
            add({"vespo_k_pos": 1.0, "vespo_lambda_pos": 1.5, "vespo_k_neg": 2.0, "vespo_lambda_neg": 4.0})
            add(extreme=True)
        if lt == "dr_grpo":
            add({"max_completion_length": 16})
        add(holes=True, empty_row=True)
        add({"beta": 0.04}, fractional=True)
        add({"beta": 0.04, "entropy_coef": 0.01}, extreme=True)
        add({"beta": 0.04, "entropy_coef": 0.01, "top_entropy_quantile": 0.5, "off_policy_mask_threshold": 0.05,
             **vllm, "vllm_importance_sampling_mode": "token_truncate",
             **({"epsilon_high": 0.28, "delta": 1.5} if lt in clip_types else {})}, holes=True)
    return cases


def trl_loss_inputs(rng, args, opts):
    B, L = draw_shape(rng)
    mask = draw_mask(rng, B, L, empty_row=opts.get("empty_row", False), holes=opts.get("holes", False),
                     fractional=opts.get("fractional", False))
    logp, old, ref = draw_logps(rng, B, L, extreme=opts.get("extreme", False),
                                on_policy=opts.get("on_policy", False))
    adv = rng.normal(0.0, 1.0, size=B)
    if opts.get("zero_adv"):
        adv[rng.integers(B)] = 0.0  # the >= 0 / > 0 branches of OPSM, sapo and vespo disagree on 0
    d = {"logp": logp, "old_logp": old, "advantages": f32(adv), "mask": mask,
         "entropies": draw_entropies(rng, B, L)}
    if args.beta != 0.0:
        d["ref_logp"] = ref
    if args.use_vllm and args.vllm_importance_sampling_correction:
        seq = args.vllm_importance_sampling_mode.startswith("sequence")
        d["importance_sampling_ratio"] = draw_ratio(rng, (B, 1) if seq else (B, L), mask,
                                                    zeros=opts.get("ratio_zeros", 0))
        if args.off_policy_mask_threshold is not None:
            # with vLLM, OPSM measures the drift from the sampler's logps
            d["sampling_logp"] = f32(np.minimum(old + rng.normal(0.0, 0.2, size=(B, L)), -0.005))
    n = float(mask.sum())
    d["num_items_in_batch"] = f32([n if opts.get("num_items") != "scaled" else 2.0 * n + 3.0])
    return d


def trl_generate(g, tmp):
    seed = 10_000
    for cfg, opts in trl_loss_cases():
        seed += 1
        args = trl_config(tmp, **cfg)
        for attempt in range(20):
            case_seed = seed + 100_000 * attempt
            rng = np.random.default_rng(case_seed)
            d = trl_loss_inputs(rng, args, opts)
            if opsm_margin_ok(args, d):
                break
        else:
            sys.exit(f"no OPSM-safe draw for {cfg}")
        loss, dlogp, dent, metrics = run_trl_loss(args, d)
        inputs = dict(d)
        if args.loss_type not in ("dapo", "cispo", "vespo"):
            del inputs["num_items_in_batch"]  # passed to TRL as it always is, but only these types read it
        B, L = d["logp"].shape
        nondefault = [f"{k}={v}" for k, v in cfg.items() if k != "loss_type"]
        flags = [k for k in ("extreme", "empty_row", "holes", "fractional", "on_policy", "zero_adv") if opts.get(k)]
        if opts.get("num_items") == "scaled":
            flags.append("num_items_in_batch=2*tokens+3")
        g.add(
            label=flag_label([f"TRL {args.loss_type}", *nondefault, *flags, f"seed={case_seed}"]),
            kind="loss",
            function="trl GRPOTrainer._compute_loss (trl/trainer/grpo_trainer.py), loss.backward()",
            config={k: jsonable(getattr(args, k)) for k in TRL_LOSS_KEYS},
            shape=(B, L), inputs=inputs,
            scalars={"loss": loss, **metrics},
            arrays={"dlogp": dlogp, "dentropy": dent},
        )

    code, (first, last) = trl_advantage_code()
    for agg in ("sum_then_normalize", "normalize_then_sum"):
        for scale in ("group", "batch", "none"):
            for G in (2, 4):
                for K in (1, 2):
                    for variant in ("continuous", "ties"):
                        seed += 1
                        rng = np.random.default_rng(seed)
                        groups = int(rng.choice([n for n in (2, 3, 4) if 4 <= n * G <= 8]))
                        B = groups * G
                        weights = [[1.0], [0.7]][seed % 2] if K == 1 else [[1.0, 0.5], [2.0, -1.0]][seed % 2]
                        args = trl_config(tmp, scale_rewards=scale, multi_objective_aggregation=agg,
                                          num_generations=G, per_device_train_batch_size=B, reward_weights=weights)
                        if variant == "continuous":
                            r = rng.normal(0.0, 1.0, size=(B, K))
                        else:  # binary rewards, one group all equal (zero std) in every reward function
                            r = rng.integers(0, 2, size=(B, K)).astype(np.float64)
                            z = rng.integers(groups)
                            r[z * G:(z + 1) * G] = rng.integers(0, 2, size=K)
                        r = f32(r)
                        adv, frac = run_trl_advantage(code, args, r)
                        g.add(
                            label=flag_label([f"TRL advantages {agg}", f"scale_rewards={scale}",
                                              f"num_generations={G}", f"weights={weights}", variant,
                                              f"seed={seed}"]),
                            kind="advantage",
                            function=("trl GRPOTrainer._generate_and_score_completions advantage block "
                                      f"(trl/trainer/grpo_trainer.py lines {first}-{last}, exec'd verbatim)"),
                            config={k: jsonable(getattr(args, k)) for k in TRL_ADV_KEYS},
                            shape=(B, K), inputs={"rewards": r},
                            scalars={"frac_reward_zero_std": frac},
                            arrays={"advantages_out": adv},
                        )


def opsm_margin_ok(args, d, margin=1e-4):
    """Keeps each sequence's mean KL clear of the OPSM threshold, so float32 re-computation cannot flip it."""
    if args.off_policy_mask_threshold is None:
        return True
    lp = d["logp"].astype(np.float64)
    src = d.get("sampling_logp", d["old_logp"]).astype(np.float64)
    m = d["mask"].astype(np.float64)
    avg = ((src - lp) * m).sum(-1) / np.maximum(m.sum(-1), 1.0)
    return bool((np.abs(avg - args.off_policy_mask_threshold) > margin).all())


# ----------------------------------------------------------------------------------------------------------
# verl
# ----------------------------------------------------------------------------------------------------------
AGG_MODES = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
PROMPT_LEN = 2


def run_verl_loss(actor_kw, policy_kw, batch_info, d):
    """verl's actor loss `verl.workers.utils.losses.ppo_loss`, fed the way the engine feeds it: log-probs and
    entropies unpadded (one row of prompt+response per sequence), dp_size / batch_num_tokens /
    global_batch_size as non-tensor data."""
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu
    from verl.workers.config import ActorConfig, PolicyLossConfig
    from verl.workers.utils.losses import ppo_loss

    cfg = ActorConfig(strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1, calculate_entropy=True,
                      policy_loss=PolicyLossConfig(**policy_kw), **actor_kw)
    B, L = d["logp"].shape
    P = PROMPT_LEN
    logp = t64(d["logp"]).requires_grad_(True)
    ent = t64(d["entropies"]).requires_grad_(True)
    # no_padding_2_padding reads the response's token t from flat position (prompt_len + t - 1) of its row
    # (the model's output is shifted by one); with the attention mask all ones this is a plain scatter.
    pos = torch.tensor([b * (P + L) + P - 1 + t for b in range(B) for t in range(L)])

    def unpadded(x):
        return torch.zeros(B * (P + L)).index_put((pos,), x.reshape(-1))

    data = {
        "prompts": torch.ones(B, P, dtype=torch.long),
        "responses": torch.ones(B, L, dtype=torch.long),
        "attention_mask": torch.ones(B, P + L, dtype=torch.long),
        # the padding of our batches is response_mask-only (as for multi-turn observation tokens)
        "response_mask": t64(d["mask"]),
        "old_log_probs": t64(d["old_logp"]),
        "advantages": t64(d["advantages"]),
    }
    if "importance_sampling_ratio" in d:
        data["rollout_is_weights"] = t64(d["importance_sampling_ratio"])
    if "ref_logp" in d:
        data["ref_log_prob"] = t64(d["ref_logp"])
    td = TensorDict(data, batch_size=[B])
    tu.assign_non_tensor(td, dp_size=batch_info.get("dp_size", 1),
                         batch_num_tokens=batch_info.get("batch_num_tokens"),
                         global_batch_size=batch_info.get("global_batch_size"))
    loss, metrics = ppo_loss(cfg, {"log_probs": unpadded(logp), "entropy": unpadded(ent)}, td)
    loss.backward()
    values = {}
    for name, m in metrics.items():
        values[name] = float(m.aggregate() if hasattr(m, "aggregate") else m)
    return cfg, float(loss.item()), logp.grad.numpy(), ent.grad.numpy(), values


def verl_loss_config(cfg):
    pl = cfg.policy_loss
    return {
        "loss_mode": pl.loss_mode, "loss_agg_mode": cfg.loss_agg_mode,
        "clip_ratio": cfg.clip_ratio, "clip_ratio_low": cfg.clip_ratio_low, "clip_ratio_high": cfg.clip_ratio_high,
        "clip_ratio_c": cfg.clip_ratio_c, "tau_pos": cfg.tau_pos, "tau_neg": cfg.tau_neg,
        "policy_loss": {k: jsonable(getattr(pl, k)) for k in
                        ("clip_cov_ratio", "clip_cov_lb", "clip_cov_ub", "kl_cov_ratio", "ppo_kl_coef")},
        # as the policy loss saw it: ppo_loss fills it from the batch and config.loss_scale_factor
        "global_batch_info": jsonable(dict(cfg.global_batch_info)),
        "entropy_coeff": float(cfg.entropy_coeff), "use_kl_loss": cfg.use_kl_loss,  # verl's default is the int 0
        "kl_loss_type": cfg.kl_loss_type, "kl_loss_coef": cfg.kl_loss_coef,
    }


def verl_loss_cases():
    """(ActorConfig options, PolicyLossConfig options, global batch info, input options) per case."""
    cases = []
    kl_types = ["kl", "abs", "mse", "low_var_kl", "k3+", "low_var_kl+"]
    gbi_dp2 = {"dp_size": 2, "batch_num_tokens": "2x+3", "global_batch_size": "2x+1", "loss_scale_factor": 16}

    def add(mode, actor=None, policy=None, gbi=None, **data):
        actor = dict(actor or {})
        gbi = dict(gbi or {})
        if gbi.get("loss_scale_factor") is not None:
            actor["loss_scale_factor"] = gbi["loss_scale_factor"]
        cases.append((mode, actor, dict(policy or {}), gbi, data))

    # modes whose result goes through agg_loss(loss_agg_mode): every option across every aggregation
    for mode in ["vanilla", "gspo", "gpg", "clip_cov", "kl_cov", "cispo"]:
        for i, agg in enumerate(AGG_MODES):
            a = {"loss_agg_mode": agg}
            add(mode, a, adv="seq")
            add(mode, {**a, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28}, is_weights=True, adv="tok")
            add(mode, {**a, "entropy_coeff": 0.01}, gbi=gbi_dp2, holes=True)
            add(mode, {**a, "use_kl_loss": True, "kl_loss_type": kl_types[(i + len(mode)) % len(kl_types)]},
                empty_row=True, adv="tok")
        add(mode, {"clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "use_kl_loss": True, "kl_loss_type": "low_var_kl",
                   "entropy_coeff": 0.01}, extreme=True, is_weights=True)
        add(mode, {"loss_agg_mode": "seq-mean-token-mean"},
            gbi={"dp_size": 1, "batch_num_tokens": "x", "global_batch_size": "x"}, empty_row=True)
        add(mode, {"loss_agg_mode": "token-sum", "entropy_coeff": 0.01, "use_kl_loss": True, "kl_loss_type": "mse"})
    for kl in kl_types:
        for agg in ("token-mean", "seq-mean-token-mean"):
            add("vanilla", {"loss_agg_mode": agg, "use_kl_loss": True, "kl_loss_type": kl, "kl_loss_coef": 0.1},
                extreme=True)
    for c in (3.0, 10.0):
        add("vanilla", {"clip_ratio_c": c, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28}, extreme=True, adv="tok")
        add("vanilla", {"clip_ratio_c": c}, adv="tok", big_adv=True)
    add("vanilla", {"clip_ratio": 0.25, "clip_ratio_low": None, "clip_ratio_high": None})
    add("cispo", {"clip_ratio_low": 0.2, "clip_ratio_high": 4.0}, extreme=True)
    # sapo always aggregates its own term seq-mean-token-mean and geo_mean takes a plain batch mean; their
    # loss_agg_mode only reaches the entropy and KL terms
    for mode in ["sapo", "geo_mean"]:
        add(mode, {"loss_agg_mode": "seq-mean-token-mean"}, adv="seq")
        add(mode, {"clip_ratio_low": 0.2, "clip_ratio_high": 0.28}, adv="seq", is_weights=True)
        if mode == "sapo":
            add(mode, {"tau_pos": 0.5, "tau_neg": 2.0}, adv="tok")
            add(mode, {"tau_pos": 3.0, "tau_neg": 0.7}, adv="tok", zero_adv=True)
        for i, agg in enumerate(AGG_MODES):
            add(mode, {"loss_agg_mode": agg, "entropy_coeff": 0.01, "use_kl_loss": True,
                       "kl_loss_type": kl_types[i]}, gbi=gbi_dp2 if i % 2 else None, adv="seq", holes=True)
        add(mode, {"use_kl_loss": True, "kl_loss_type": "k3+"}, adv="seq", extreme=True, empty_row=True,
            is_weights=True)
        add(mode, {"loss_agg_mode": "token-mean"}, adv="seq", empty_row=True, gbi=gbi_dp2)
    # clip_cov's selection: `band=k` puts exactly k candidate tokens strictly inside (lb, ub); ratio picks clip_num
    for ratio, band in ((0.0002, 1), (0.2, "clip_num"), (0.2, "fewer"), (0.0002, 0)):
        for agg in ("token-mean", "seq-mean-token-mean"):
            add("clip_cov", {"loss_agg_mode": agg}, {"clip_cov_ratio": ratio, "band": band}, adv="tok")
    add("clip_cov", {"clip_ratio_low": 0.2, "clip_ratio_high": 0.28}, {"clip_cov_ratio": 0.2, "band": "clip_num"},
        adv="tok", is_weights=True, empty_row=True)
    for ratio in (0.0002, 0.2, 0.5):
        for coef in (0.1, 1.0):
            add("kl_cov", {"loss_agg_mode": "token-mean"}, {"kl_cov_ratio": ratio, "ppo_kl_coef": coef}, adv="tok")
    return cases


def verl_loss_inputs(rng, opts):
    B, L = draw_shape(rng)
    mask = draw_mask(rng, B, L, empty_row=opts.get("empty_row", False), holes=opts.get("holes", False))
    logp, old, ref = draw_logps(rng, B, L, extreme=opts.get("extreme", False))
    scale = 4.0 if opts.get("big_adv") else 1.0
    if opts.get("adv", "seq") == "seq":  # one scalar per response, broadcast over its tokens (GRPO-style)
        adv = np.repeat(rng.normal(0.0, scale, size=(B, 1)), L, axis=1) * mask
    else:  # per-token (GAE-style)
        adv = rng.normal(0.0, scale, size=(B, L)) * mask
    if opts.get("zero_adv"):
        adv[rng.integers(B)] = 0.0
    d = {"logp": logp, "old_logp": old, "advantages": f32(adv), "mask": mask, "entropies": draw_entropies(rng, B, L)}
    if opts.get("is_weights"):
        d["importance_sampling_ratio"] = draw_ratio(rng, (B, L), mask)
    return d, ref


def clip_cov_candidates(d, lo, hi):
    """The covariances compute_policy_loss_clip_cov ranks, with its -inf for padding and for tokens the PPO
    clip already clips; used only to choose (lb, ub) so that its torch.randperm pick is not a choice."""
    lp, old = d["logp"].astype(np.float64), d["old_logp"].astype(np.float64)
    adv, m = d["advantages"].astype(np.float64), d["mask"] > 0
    ratio = np.exp(lp - old)
    l1, l2 = -adv * ratio, -adv * np.clip(ratio, 1 - lo, 1 + hi)
    cov = (adv - adv[m].mean()) * (lp - lp[m].mean())
    cov[~m | (l2 > l1)] = -np.inf
    return np.sort(cov[np.isfinite(cov)])[::-1], int(m.sum())


def choose_clip_cov(d, actor, policy):
    lo = actor.get("clip_ratio_low", 0.2)
    hi = actor.get("clip_ratio_high", 0.2)
    covs, n_valid = clip_cov_candidates(d, lo, hi)
    ratio = policy.get("clip_cov_ratio", 0.0002)  # verl's default: clip_num = 1
    clip_num = max(int(ratio * n_valid), 1)
    band = policy.get("band", 1)
    k = {"clip_num": clip_num, "fewer": clip_num - 1}.get(band, band)
    k = min(k, len(covs))
    if k <= 0:  # nothing inside the band
        lb, ub = float(covs[0]) + 1.0 if len(covs) else 1.0, float(covs[0]) + 2.0 if len(covs) else 5.0
        return {"clip_cov_ratio": ratio, "clip_cov_lb": round(lb, 3), "clip_cov_ub": round(ub, 3)}, 0, clip_num
    ub = float(covs[0]) + 0.5
    lb = float(covs[k - 1]) - 1e-3 if k == len(covs) else 0.5 * float(covs[k - 1] + covs[k])
    gap = float(covs[k - 1] - covs[k]) if k < len(covs) else 1.0
    if gap < 1e-3:
        return None, k, clip_num
    return {"clip_cov_ratio": ratio, "clip_cov_lb": round(lb, 6), "clip_cov_ub": round(ub, 6)}, k, clip_num


def kl_cov_boundary_ok(d, ratio):
    """torch.topk picks the k largest covariances; no tie (or near-tie a float32 recompute could swap) at k."""
    m = d["mask"] > 0
    adv, lp = d["advantages"][m].astype(np.float64), d["logp"][m].astype(np.float64)
    cov = np.sort((adv - adv.mean()) * (lp - lp.mean()))[::-1]
    k = max(1, int(len(cov) * ratio))
    return k >= len(cov) or cov[k - 1] - cov[k] > 1e-4 * (1.0 + abs(cov[k]))


def verl_generate(g):
    import verl
    from verl.trainer.ppo import core_algos

    seed = 20_000
    for mode, actor, policy, gbi, opts in verl_loss_cases():
        seed += 1
        for attempt in range(50):
            case_seed = seed + 100_000 * attempt
            rng = np.random.default_rng(case_seed)
            d, ref = verl_loss_inputs(rng, opts)
            pol = {k: v for k, v in policy.items() if k != "band"}
            if mode == "clip_cov":
                pol, k, clip_num = choose_clip_cov(d, actor, policy)
                if pol is None:
                    continue
                assert k <= clip_num  # every candidate is selected: randperm cannot change the result
            if mode == "kl_cov" and not kl_cov_boundary_ok(d, pol.get("kl_cov_ratio", 0.0002)):
                continue
            break
        else:
            sys.exit(f"no usable draw for verl {mode} {actor} {policy}")
        pol["loss_mode"] = mode
        if actor.get("use_kl_loss"):
            d["ref_logp"] = ref
        n_tok, n_seq = int((d["mask"] > 0).sum()), int(((d["mask"] > 0).sum(-1) > 0).sum())
        info = dict(gbi)
        if info.get("batch_num_tokens") == "x":
            info.update(batch_num_tokens=n_tok, global_batch_size=n_seq)
        elif info.get("batch_num_tokens") == "2x+3":  # a second data-parallel rank's tokens and sequences
            info.update(batch_num_tokens=2 * n_tok + 3, global_batch_size=2 * n_seq + 1)
        runs = [run_verl_loss(actor, pol, info, d)]
        if mode == "clip_cov":  # the randperm must not matter: same result under another torch seed
            torch.manual_seed(1234)
            other = run_verl_loss(actor, pol, info, d)
            assert other[1] == runs[0][1] and np.array_equal(other[2], runs[0][2]), "clip_cov is not deterministic"
        cfg, loss, dlogp, dent, metrics = runs[0]
        B, L = d["logp"].shape
        nondefault = [f"{k}={v}" for k, v in actor.items()] + [f"{k}={v}" for k, v in pol.items() if k != "loss_mode"]
        if info:
            nondefault.append(f"global_batch_info={info}")
        flags = [k for k in ("extreme", "empty_row", "holes", "is_weights", "zero_adv", "big_adv") if opts.get(k)]
        flags.append("adv=" + ("per-sequence" if opts.get("adv", "seq") == "seq" else "per-token"))
        fn = core_algos.get_policy_loss_fn(mode)
        g.add(
            label=flag_label([f"verl {mode}", *nondefault, *flags, f"seed={case_seed}"]),
            kind="loss",
            function=(f"verl.workers.utils.losses.ppo_loss -> core_algos.get_policy_loss_fn('{mode}') "
                      f"({fn.__name__}) + agg_loss + kl_penalty, loss.backward()"),
            config=verl_loss_config(cfg),
            shape=(B, L), inputs=d,
            scalars={"loss": loss, "pg_loss": metrics["actor/pg_loss"], **metrics},
            arrays={"dlogp": dlogp, "dentropy": dent},
        )

    for name, kw, opts in verl_adv_cases():
        seed += 1
        rng = np.random.default_rng(seed)
        d, call = verl_adv_inputs(rng, name, opts)
        fn = core_algos.get_adv_estimator_fn(name)
        adv, ret = fn(**call, **verl_adv_kwargs(name, kw))
        B, L = d["rewards"].shape
        g.add(
            label=flag_label([f"verl advantages {name}", *[f"{k}={v}" for k, v in kw.items()],
                              *[f"{k}={v}" for k, v in opts.items()], f"seed={seed}"]),
            kind="advantage",
            function=f"verl core_algos.get_adv_estimator_fn('{name}') ({fn.__name__})",
            config={"adv_estimator": name, **kw},
            shape=(B, L), inputs=d, scalars={},
            arrays={"advantages_out": adv.numpy(), "returns_out": ret.numpy()},
        )
    return verl.__version__, inspect.getsourcefile(core_algos)


def verl_adv_cases():
    """(estimator, its options under verl's own names, input options)."""
    c = []
    for gamma, lam in ((1.0, 1.0), (1.0, 0.95), (0.99, 0.95), (0.9, 0.8)):
        c.append(("gae", {"gamma": gamma, "lam": lam}, {"rewards": "dense"}))
    c.append(("gae", {"gamma": 1.0, "lam": 0.95}, {"rewards": "outcome", "empty_row": True}))
    c.append(("gae", {"gamma": 0.99, "lam": 0.95}, {"rewards": "dense", "holes": True}))
    c.append(("gae", {"gamma": 0.9, "lam": 0.9}, {"rewards": "outcome", "holes": True, "empty_row": True}))
    for norm in (True, False):
        c.append(("grpo", {"norm_adv_by_std_in_grpo": norm, "epsilon": 1e-6}, {"groups": [2, 2, 2, 2]}))
        c.append(("grpo", {"norm_adv_by_std_in_grpo": norm, "epsilon": 1e-6}, {"groups": [3, 1, 4], "shuffle": True}))
        c.append(("grpo", {"norm_adv_by_std_in_grpo": norm, "epsilon": 1e-6},
                  {"groups": [4, 4], "binary": True, "zero_std": True}))
        c.append(("grpo", {"norm_adv_by_std_in_grpo": norm, "epsilon": 0.01}, {"groups": [3, 3], "empty_row": True}))
        c.append(("grpo_passk", {"norm_adv_by_std_in_grpo": norm, "epsilon": 1e-6}, {"groups": [4, 4]}))
        c.append(("grpo_passk", {"norm_adv_by_std_in_grpo": norm, "epsilon": 1e-6},
                  {"groups": [3, 2, 3], "binary": True, "shuffle": True}))
    for name in ("reinforce_plus_plus_baseline", "rloo", "opo"):
        c.append((name, {}, {"groups": [2, 2, 2]}))
        c.append((name, {}, {"groups": [3, 1, 4], "shuffle": True}))
        c.append((name, {}, {"groups": [1, 1, 2, 2], "binary": True}))
        c.append((name, {}, {"groups": [4, 4], "binary": True, "zero_std": True, "empty_row": True}))
    for gamma in (1.0, 0.99, 0.9):
        c.append(("reinforce_plus_plus", {"gamma": gamma}, {"rewards": "outcome"}))
        c.append(("reinforce_plus_plus", {"gamma": gamma}, {"rewards": "dense", "holes": True}))
    c.append(("reinforce_plus_plus", {"gamma": 1.0}, {"rewards": "outcome", "empty_row": True}))
    c.append(("remax", {}, {"rewards": "outcome"}))
    c.append(("remax", {}, {"rewards": "dense", "holes": True}))
    c.append(("remax", {}, {"rewards": "outcome", "empty_row": True}))
    c.append(("gpg", {}, {"groups": [2, 2, 2]}))
    c.append(("gpg", {}, {"groups": [3, 1, 4], "binary": True, "shuffle": True}))
    c.append(("gpg", {}, {"groups": [4, 4], "binary": True, "zero_std": True}))
    c.append(("gpg", {}, {"groups": [2, 3, 2], "empty_row": True}))
    return c


def verl_adv_inputs(rng, name, opts):
    groups = opts.get("groups")
    B = sum(groups) if groups else int(rng.integers(4, 9))
    L = int(rng.integers(5, 10))
    mask = draw_mask(rng, B, L, empty_row=opts.get("empty_row", False), holes=opts.get("holes", False))
    d = {"mask": mask}
    call = {"response_mask": t64(mask)}
    if groups:
        ids = np.repeat(np.arange(len(groups)), groups)
        if opts.get("shuffle"):
            ids = rng.permutation(ids)
        scores = rng.integers(0, 2, size=B).astype(np.float64) if opts.get("binary") else rng.normal(0, 1, size=B)
        if opts.get("zero_std"):
            scores[ids == 0] = scores[ids == 0][0]
        d["index"] = f32(ids)
        # verl's index is the uid column: strings, one per prompt
        call["index"] = np.array([f"uid-{i}" for i in ids], dtype=object)
    else:
        scores = rng.normal(0, 1, size=B)
    # outcome reward: the scalar on the last valid token, zeros elsewhere (an empty row gets no reward)
    rewards = np.zeros((B, L))
    for b in range(B):
        valid = np.nonzero(mask[b] > 0)[0]
        if len(valid):
            rewards[b, valid[-1]] = scores[b]
    if opts.get("rewards") == "dense":  # per-token shaping (e.g. a KL penalty) on top of the outcome
        rewards = rewards + rng.normal(0.0, 0.1, size=(B, L)) * (mask > 0)
    d["rewards"] = f32(rewards)
    call["token_level_rewards"] = t64(d["rewards"])
    if name == "gae":
        d["values"] = f32(rng.normal(0.0, 1.0, size=(B, L)))
        call["values"] = t64(d["values"])
    if name == "remax":
        d["reward_baselines"] = f32(rng.normal(0.0, 1.0, size=B))
        call["reward_baselines"] = t64(d["reward_baselines"])
    return d, call


def verl_adv_kwargs(name, kw):
    """The arguments verl.trainer.ppo.ray_trainer.compute_advantage passes: gamma/lam to GAE, the GRPO flag to
    GRPO, an AlgoConfig to the others (epsilon is the functions' own default unless a case sets it)."""
    from verl.trainer.config import AlgoConfig

    if name == "gae":
        return {"gamma": kw["gamma"], "lam": kw["lam"]}
    if name == "grpo":
        return {"norm_adv_by_std_in_grpo": kw["norm_adv_by_std_in_grpo"], "epsilon": kw["epsilon"]}
    algo = AlgoConfig(adv_estimator=name, gamma=kw.get("gamma", 1.0),
                      norm_adv_by_std_in_grpo=kw.get("norm_adv_by_std_in_grpo", True))
    out = {"config": algo}
    if "epsilon" in kw:
        out["epsilon"] = kw["epsilon"]
    return out


# ----------------------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer", choices=["trl", "verl", "all"], default="all")
    ap.add_argument("--out", default=OUT_DIR)
    a = ap.parse_args()

    written = []
    if a.peer in ("trl", "all"):
        import accelerate
        import transformers
        import trl
        import trl.trainer.grpo_trainer as gt

        g = Goldens("trl")
        with tempfile.TemporaryDirectory() as tmp:
            trl_generate(g, tmp)
        versions = {"trl": trl.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
                    "accelerate": accelerate.__version__, "numpy": np.__version__,
                    "grpo_trainer.py sha256": sha256_of(inspect.getsourcefile(gt))}
        written.append(g.write(versions, a.out))
    if a.peer in ("verl", "all"):
        import tensordict

        g = Goldens("verl")
        verl_version, core_path = verl_generate(g)
        import verl.workers.utils.losses as losses

        versions = {"verl": verl_version, "torch": torch.__version__, "tensordict": tensordict.__version__,
                    "numpy": np.__version__, "core_algos.py sha256": sha256_of(core_path),
                    "losses.py sha256": sha256_of(inspect.getsourcefile(losses))}
        written.append(g.write(versions, a.out))

    for json_path, st_path in written:
        doc, tensors = verify(json_path, st_path)
        per_fn = defaultdict(int)
        for case in doc["cases"]:
            per_fn[case["function"].split(" (")[0] if case["kind"] == "advantage" else case["function"]] += 1
        print(f"{os.path.relpath(json_path, ROOT)}: {len(doc['cases'])} cases, {os.path.getsize(json_path)} B; "
              f"{os.path.relpath(st_path, ROOT)}: {len(tensors)} tensors, {os.path.getsize(st_path)} B")
        for fn, n in sorted(per_fn.items()):
            print(f"  {n:4d}  {fn}")


if __name__ == "__main__":
    main()
