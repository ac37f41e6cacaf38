#!/usr/bin/env python3
"""Golden outputs of the authors' Dragon Hatchling (BDH-GPU) module, for xplor's model/bdh.hpp.

Peer: `bdh.py` of github.com/pathwaycom/bdh (Kosowski et al., arXiv 2509.26507), commit PEER_COMMIT below, used as
it is: the script imports the file by path from a temporary directory (it is never copied into this repository).

The case: BDHConfig(n_layer=2, n_embd=32, n_head=2, mlp_internal_dim_multiplier=2, vocab_size=32, dropout=0.0),
so N = 32 neurons per head. The weights are drawn from numpy's RandomState(SEED) in float32 (encoder and encoder_v
N(0, 0.3), decoder N(0, 0.1), lm_head N(0, 0.2), embed N(0, 1): larger than the authors' N(0, 0.02) initialisation,
so that the neurons are about half active and every path carries signal) and assigned to the module's parameters.
A batch of 2 sequences of 16 random tokens with random targets goes through `model(idx, targets)`; the logits, the
loss and torch-autograd's gradients of every parameter are recorded twice: with the module as it is (float32), and
with its parameters in float64 (the attn.freqs buffer stays float32, as the module asserts), the second being a
high-precision reference for xplor's float32 arithmetic. The draw is checked for margins: no pre-activation of a
ReLU within MARGIN of 0 but exact zeros, so float32 code takes the same branches.

Output (tests/data/bdh/, about 150 KB):
  bdh_peer.safetensors  the parameters under the module's state_dict() names ("decoder", "encoder", "encoder_v",
                        "lm_head", "embed.weight") and its "attn.freqs" buffer, "logits" [2 * 16, 32],
                        "grad.<name>", and the float64 run's "logits64", "grad64.<name>" (rounded to float32)
  bdh_peer.json         config, tokens, targets, loss, loss64, the state_dict keys and shapes, versions, the
                        peer's commit and sha256 of bdh.py, the smallest ReLU margin
The C++ test "bdh matches the authors' PyTorch module" in tests/model/bdh_test.cpp reads them (CI needs no Python).

Checking an xplor checkpoint against the module:
  python3 tools/bdh_peer_goldens.py --check-checkpoint model.safetensors [--tokens 1,2,3]
loads a file written by xplor::model::save_checkpoint into BDH(config from its __metadata__) with
load_state_dict(strict=True) (the optimizer.* tensors dropped) and prints the logits of the tokens.

Regenerating (from the repository root):
  python3 -m venv /tmp/bdh_venv && /tmp/bdh_venv/bin/pip install torch numpy safetensors
      (the CPU wheel is smaller: pip install torch --index-url https://download.pytorch.org/whl/cpu)
  /tmp/bdh_venv/bin/python tools/bdh_peer_goldens.py [--bdh-source PATH]
--bdh-source is the authors' bdh.py, a clone of their repository, or a bare git directory of it (read at
PEER_COMMIT); without it the script clones https://github.com/pathwaycom/bdh into a temporary directory. The
goldens used here were made with torch 2.15.0 (CPU) and numpy 2.4.6.
"""
import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

PEER_COMMIT = "714bc800631e7bffc0946768f4f3c77d25a68ca4"
PEER_URL = "https://github.com/pathwaycom/bdh"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "bdh")
SEED = 20250930
MARGIN = 1e-5
CONFIG = dict(n_layer=2, n_embd=32, n_head=2, mlp_internal_dim_multiplier=2, vocab_size=32, dropout=0.0)
BATCH, SEQ_LEN = 2, 16
STDS = {"decoder": 0.1, "encoder": 0.3, "encoder_v": 0.3, "lm_head": 0.2, "embed.weight": 1.0}


def bdh_source(path):
    """The text of the authors' bdh.py at PEER_COMMIT (or the given file as it is)."""
    if path and os.path.isfile(path):
        with open(path, "rb") as f:
            return f.read()
    if path:  # a clone or a bare git directory
        git_dir = os.path.join(path, ".git") if os.path.isdir(os.path.join(path, ".git")) else path
        return subprocess.check_output(["git", "--git-dir", git_dir, "show", f"{PEER_COMMIT}:bdh.py"])
    tmp = tempfile.mkdtemp(prefix="bdh_peer_clone_")
    subprocess.check_call(["git", "clone", "--quiet", PEER_URL, tmp])
    return subprocess.check_output(["git", "-C", tmp, "show", f"{PEER_COMMIT}:bdh.py"])


def import_bdh(source):
    """Imports bdh.py from a temporary directory by path."""
    tmp = tempfile.mkdtemp(prefix="bdh_peer_")
    file = os.path.join(tmp, "bdh.py")
    with open(file, "wb") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("bdh_peer", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record_relu_margins(module):
    """Makes the module's F.relu record the smallest |input|; returns the list it appends to."""
    margins = []

    def relu(x):
        nonzero = x.detach().abs()
        nonzero = nonzero[nonzero != 0]  # exact zeros (y at t = 0, which sees nothing) are exact in any code
        if nonzero.numel():
            margins.append(float(nonzero.min()))
        return F.relu(x)

    module.F = types.SimpleNamespace(relu=relu, cross_entropy=F.cross_entropy)
    return margins


def run(model, idx, targets):
    model.zero_grad()
    logits, loss = model(idx, targets)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    return logits.detach(), float(loss.detach()), grads


def check_checkpoint(bdh, path, tokens):
    tensors = load_file(path)
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    meta = header["__metadata__"]
    config = bdh.BDHConfig(**{k: int(meta[k]) for k in
                              ("n_layer", "n_embd", "n_head", "mlp_internal_dim_multiplier", "vocab_size")},
                           dropout=float(meta["dropout"]))
    model = bdh.BDH(config)
    model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("optimizer.")}, strict=True)
    model.eval()
    idx = torch.tensor([tokens], dtype=torch.long)
    with torch.no_grad():
        logits, _ = model(idx)
    np.set_printoptions(precision=7, suppress=True)
    print(logits[0].numpy())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bdh-source", default=os.environ.get("BDH_SOURCE"),
                        help="bdh.py, a clone of pathwaycom/bdh or its bare git directory (default: clone it)")
    parser.add_argument("--check-checkpoint", help="an xplor BDH checkpoint to load into the authors' module")
    parser.add_argument("--tokens", default="1,2,3", help="tokens for --check-checkpoint")
    args = parser.parse_args()

    source = bdh_source(args.bdh_source)
    bdh = import_bdh(source)
    if args.check_checkpoint:
        check_checkpoint(bdh, args.check_checkpoint, [int(t) for t in args.tokens.split(",")])
        return

    torch.manual_seed(0)
    model = bdh.BDH(bdh.BDHConfig(**CONFIG))
    model.eval()
    rng = np.random.RandomState(SEED)
    state = model.state_dict()
    with torch.no_grad():
        for name, p in model.named_parameters():
            draw = (rng.standard_normal(tuple(p.shape)) * STDS[name]).astype(np.float32)
            p.copy_(torch.from_numpy(draw))
    idx = torch.from_numpy(rng.randint(0, CONFIG["vocab_size"], size=(BATCH, SEQ_LEN)).astype(np.int64))
    targets = torch.from_numpy(rng.randint(0, CONFIG["vocab_size"], size=(BATCH, SEQ_LEN)).astype(np.int64))

    margins = record_relu_margins(bdh)
    logits, loss, grads = run(model, idx, targets)
    margin = min(margins)
    if margin < MARGIN:
        sys.exit(f"a ReLU input is {margin} from 0 (< {MARGIN}): choose another SEED")

    model64 = bdh.BDH(bdh.BDHConfig(**CONFIG))
    model64.eval()
    with torch.no_grad():
        for (name, p64), (_, p) in zip(model64.named_parameters(), model.named_parameters()):
            p64.data = p.detach().double().clone()
    logits64, loss64, grads64 = run(model64, idx, targets)

    tensors = {name: p.detach().contiguous() for name, p in model.named_parameters()}
    tensors["attn.freqs"] = model.attn.freqs.detach().contiguous()
    tensors["logits"] = logits.reshape(BATCH * SEQ_LEN, -1).contiguous()
    tensors["logits64"] = logits64.reshape(BATCH * SEQ_LEN, -1).float().contiguous()
    for name, g in grads.items():
        tensors[f"grad.{name}"] = g.contiguous()
        tensors[f"grad64.{name}"] = grads64[name].float().contiguous()
    os.makedirs(OUT, exist_ok=True)
    save_file(tensors, os.path.join(OUT, "bdh_peer.safetensors"))
    info = {
        "peer": {"repository": PEER_URL, "commit": PEER_COMMIT, "bdh_py_sha256": hashlib.sha256(source).hexdigest()},
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": sys.version.split()[0]},
        "seed": SEED,
        "stds": STDS,
        "config": CONFIG,
        "batch": BATCH,
        "seq_len": SEQ_LEN,
        "tokens": idx.reshape(-1).tolist(),
        "targets": targets.reshape(-1).tolist(),
        "loss": loss,
        "loss64": loss64,
        "state_dict": {k: list(v.shape) for k, v in state.items()},
        "min_relu_margin": margin,
    }
    with open(os.path.join(OUT, "bdh_peer.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    print(f"loss {loss:.8f} (float64 {loss64:.8f}), smallest ReLU margin {margin:.3g}; wrote {OUT}")


if __name__ == "__main__":
    main()
