#!/usr/bin/env python3
"""Golden outputs of SAELens's own training SAEs, for xplor's sparse autoencoder (interp/sae.hpp).

Peer: SAELens (PyPI `sae-lens`, pinned below), its training classes as they are:
  * `sae_lens.saes.standard_sae.StandardTrainingSAE` / `StandardTrainingSAEConfig` (ReLU + L1). In sae-lens 6.x
    `calculate_aux_loss` always weights the L1 penalty by the decoder row norms:
    l1_loss = mean_rows(l1_coefficient * || f * ||W_dec||_rows ||_1).
  * `sae_lens.saes.topk_sae.TopKTrainingSAE` / `TopKTrainingSAEConfig` (k = 3): ReLU of the per-row top k; the
    loss is mse_loss (sum over d, mean over rows, no normalisation) plus auxiliary_reconstruction_loss (AuxK as in
    EleutherAI's sae, without variance normalisation: k_aux = d_in // 2 dead latents per row, no ReLU on their
    pre-activations, scale min(num_dead / k_aux, 1), times aux_loss_coefficient). With the default
    rescale_acts_by_decoder_norm = True the pre-activations are multiplied by ||W_dec,f|| and the activations
    divided by it before decoding.

Each case builds a tiny SAE (d_in 6, d_sae 10) whose weights are drawn from a fixed numpy seed (rounded to float32,
computed in float64), feeds a fixed batch of 8 rows to `training_forward_pass(TrainStepInput(...))`, and records the
feature activations, the reconstruction, every loss term SAELens returns and the torch-autograd gradients of the
total loss with respect to W_enc, b_enc, W_dec and b_dec. The draws are checked for margins (no pre-activation near
a ReLU kink, no near tie at the k-th largest), so float32 code must select the same latents.

Cases:
  standard_default      StandardTrainingSAE, its defaults (l1_coefficient 1.0, apply_b_dec_to_input True)
  standard_no_b_dec_in  the same with apply_b_dec_to_input False and l1_coefficient 0.25
  topk_plain            TopKTrainingSAE k 3, rescale_acts_by_decoder_norm False, rows of any norm, no dead latent
  topk_default          TopKTrainingSAE k 3 with its defaults (rescale True), unit-norm decoder rows, no dead latent
  topk_auxk             topk_default plus dead_neuron_mask on latents 7, 8, 9 (AuxK on, k_aux = 3, scale 1)
For the cases with unit-norm rows, grad_W_dec_projected is the W_dec gradient with each row's component along the
row removed (what xplor's gradients(x, project_decoder = true) returns).

Output: tests/data/interp/sae_peer.json (float64 values; versions and the exact config of each case). The C++ test
"sae: SAELens's own outputs" in tests/interp/sae_test.cpp reads it; nothing here is needed to build or test xplor.

Run (from the repository root):
  python3 tools/sae_peer_goldens.py
It creates a venv at $SAE_PEER_VENV (default /tmp/sae_peer_venv) if missing, pip installs the pinned sae-lens
(which pulls torch from PyPI; `pip install torch --index-url https://download.pytorch.org/whl/cpu` first gives a
smaller CPU-only torch) and re-runs itself with the venv's python.
"""
import json
import os
import subprocess
import sys

SAE_LENS_VERSION = "6.54.12"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "interp", "sae_peer.json")
VENV = os.environ.get("SAE_PEER_VENV", "/tmp/sae_peer_venv")
D_IN, D_SAE, ROWS, K = 6, 10, 8, 3


def ensure_venv():
    """Re-exec under the venv's python, creating it and installing the pinned peer when needed."""
    py = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    try:
        subprocess.check_call([py, "-c", f"import importlib.metadata as m, numpy; "
                               f"assert m.version('sae-lens') == '{SAE_LENS_VERSION}'"],
                              stderr=subprocess.DEVNULL)
    except subprocess.CalledProcessError:
        subprocess.check_call([py, "-m", "pip", "install", "-q", f"sae-lens=={SAE_LENS_VERSION}", "numpy"])
    os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])


def f32(a):
    import numpy as np
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def draw(seed, unit_rows, dead=()):
    """Weights and inputs from numpy seed `seed`, rounded to float32."""
    import numpy as np
    rng = np.random.default_rng(seed)
    W_enc = rng.normal(0, 0.5, (D_IN, D_SAE))
    b_enc = rng.normal(0, 0.1, D_SAE)
    W_dec = rng.normal(0, 0.4, (D_SAE, D_IN))
    if unit_rows:
        W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)
    b_dec = rng.normal(0, 0.2, D_IN)
    x = rng.normal(0, 1.0, (ROWS, D_IN))
    for f in dead:  # dead latents: small encoder columns, positive bias, so AuxK's picks are all > 0
        W_enc[:, f] *= 0.05
        b_enc[f] = 0.3 + 0.05 * f
    return {k: f32(v) for k, v in dict(W_enc=W_enc, b_enc=b_enc, W_dec=W_dec, b_dec=b_dec, x=x).items()}


def margins_ok(pre, kind):
    import numpy as np
    if np.min(np.abs(pre)) < 1e-3:
        return False
    if kind == "topk":
        s = -np.sort(-pre, axis=1)
        if np.min(s[:, K - 1] - s[:, K]) < 1e-3:
            return False
    return True


def run_case(name, kind, cfg_kw, unit_rows, dead=()):
    import numpy as np
    import torch
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    cfg_kw = dict(d_in=D_IN, d_sae=D_SAE, dtype="float64", device="cpu", **cfg_kw)
    for seed in range(1000):
        w = draw(seed, unit_rows, dead)
        xc = w["x"] - (w["b_dec"] if cfg_kw.get("apply_b_dec_to_input", True) else 0)
        pre = xc @ w["W_enc"] + w["b_enc"]
        if kind == "topk" and cfg_kw.get("rescale_acts_by_decoder_norm", True):
            pre = pre * np.linalg.norm(w["W_dec"], axis=1)
        if not margins_ok(pre, kind):
            continue
        if dead and np.min(pre[:, list(dead)]) <= 1e-3:
            continue
        break
    else:
        raise RuntimeError(f"{name}: no draw with margins")

    if kind == "standard":
        cfg = StandardTrainingSAEConfig(**cfg_kw)
        sae = StandardTrainingSAE(cfg)
        coefficients = {"l1": cfg.l1_coefficient}
    else:
        cfg = TopKTrainingSAEConfig(**cfg_kw)
        sae = TopKTrainingSAE(cfg)
        coefficients = {}
    with torch.no_grad():
        for p in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(sae, p).copy_(torch.tensor(w[p], dtype=torch.float64))
    mask = None
    if dead:
        mask = torch.zeros(D_SAE, dtype=torch.bool)
        mask[list(dead)] = True
    x = torch.tensor(w["x"], dtype=torch.float64)
    out = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients=coefficients, dead_neuron_mask=mask,
                                                   n_training_steps=0, is_logging_step=False))
    sae.zero_grad()
    out.loss.backward()
    grads = {p: getattr(sae, p).grad.detach().numpy().copy() for p in ("W_enc", "b_enc", "W_dec", "b_dec")}
    acts = out.feature_acts.to_dense() if out.feature_acts.is_sparse else out.feature_acts
    with torch.no_grad():  # SAELens's encode / decode agree with its training forward pass here
        enc = sae.encode(x)
        assert torch.allclose(enc.to_dense() if enc.is_sparse else enc, acts)
        assert torch.allclose(sae.decode(acts), out.sae_out)
    case = {
        "name": name,
        "class": type(sae).__name__,
        "config_class": type(cfg).__name__,
        "config": {k: v for k, v in cfg.to_dict().items() if k != "metadata"},
        "coefficients": coefficients,
        "dead_latents": list(dead),
        "seed": seed,
        "W_enc": w["W_enc"].tolist(), "b_enc": w["b_enc"].tolist(),
        "W_dec": w["W_dec"].tolist(), "b_dec": w["b_dec"].tolist(),
        "x": w["x"].tolist(),
        "hidden_pre": out.hidden_pre.detach().numpy().tolist(),
        "feature_acts": acts.detach().numpy().tolist(),
        "sae_out": out.sae_out.detach().numpy().tolist(),
        "losses": {k: float(v.detach()) for k, v in out.losses.items()},
        "loss": float(out.loss.detach()),
        "grad_W_enc": grads["W_enc"].tolist(), "grad_b_enc": grads["b_enc"].tolist(),
        "grad_W_dec": grads["W_dec"].tolist(), "grad_b_dec": grads["b_dec"].tolist(),
    }
    if unit_rows:
        g, W = grads["W_dec"], w["W_dec"]
        case["grad_W_dec_projected"] = (g - np.sum(g * W, axis=1, keepdims=True) * W).tolist()
    return case


def main():
    ensure_venv()
    import importlib.metadata as md

    import torch
    torch.set_default_dtype(torch.float64)
    cases = [
        run_case("standard_default", "standard", {}, unit_rows=False),
        run_case("standard_no_b_dec_in", "standard", {"apply_b_dec_to_input": False, "l1_coefficient": 0.25},
                 unit_rows=False),
        run_case("topk_plain", "topk", {"k": K, "rescale_acts_by_decoder_norm": False}, unit_rows=False),
        run_case("topk_default", "topk", {"k": K}, unit_rows=True),
        run_case("topk_auxk", "topk", {"k": K}, unit_rows=True, dead=(7, 8, 9)),
    ]
    doc = {
        "generator": "tools/sae_peer_goldens.py",
        "sae_lens": md.version("sae-lens"),
        "torch": torch.__version__,
        "numpy": md.version("numpy"),
        "d_in": D_IN, "d_sae": D_SAE, "rows": ROWS,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    for c in cases:
        print(f"{c['name']}: seed {c['seed']} losses {c['losses']} loss {c['loss']:.6f}")
    print(f"wrote {os.path.relpath(OUT, ROOT)} (sae-lens {doc['sae_lens']}, torch {doc['torch']})")


if __name__ == "__main__":
    main()
