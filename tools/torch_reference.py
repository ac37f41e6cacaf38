#!/usr/bin/env python3
"""PyTorch reference for xplor's transformer: golden values for tests/model/parity_test.cpp.

For every xplor checkpoint <name>.safetensors in a directory, rebuild the same architecture in
PyTorch (float64), load the weights with load_state_dict, run a fixed batch and write
<name>.golden.safetensors with PyTorch's own safetensors writer:

  batch.tokens, batch.targets, batch.mask   [B, T] (ids stored as F32; -1 = ignored target)
  logits                                     [B*T, V]
  loss                                       [1]   weighted mean cross-entropy
  grad.<parameter name>                      gradient of the loss, one per parameter

Needs torch, numpy and safetensors (pip install torch numpy safetensors); xplor itself never does.
Usage: tools/torch_reference.py tests/data/parity
"""
import math
import pathlib
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

B, T = 2, 8


class Norm(torch.nn.Module):
    def __init__(self, c, kind, eps):
        super().__init__()
        self.kind, self.eps = kind, eps
        self.weight = torch.nn.Parameter(torch.ones(c))
        if kind == "layernorm":
            self.bias = torch.nn.Parameter(torch.zeros(c))

    def forward(self, x):
        if self.kind == "layernorm":
            return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate(x, cos, sin):
    """Rotary embedding, "rotate half": element i pairs with i + D/2 (xplor layers::rope_rotate)."""
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class Block(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c, f = cfg["d_model"], cfg["d_ff"]
        self.cfg = cfg
        self.attn_norm = Norm(c, cfg["norm"], cfg["norm_eps"])
        self.attn = torch.nn.Module()
        self.attn.qkv = torch.nn.Linear(c, 3 * c, bias=False)
        self.attn.out = torch.nn.Linear(c, c, bias=False)
        self.mlp_norm = Norm(c, cfg["norm"], cfg["norm_eps"])
        self.mlp = torch.nn.Module()
        if cfg["mlp"] == "swiglu":
            self.mlp.gate = torch.nn.Linear(c, f, bias=False)
        self.mlp.up = torch.nn.Linear(c, f, bias=False)
        self.mlp.down = torch.nn.Linear(f, c, bias=False)

    def forward(self, x, cos, sin):
        cfg = self.cfg
        bsz, t, c = x.shape
        h = cfg["n_heads"]
        d = c // h
        q, k, v = self.attn.qkv(self.attn_norm(x)).split(c, dim=-1)
        q, k, v = (z.view(bsz, t, h, d).transpose(1, 2) for z in (q, k, v))
        if cos is not None:
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d)
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
        y = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1) @ v
        x = x + self.attn.out(y.transpose(1, 2).reshape(bsz, t, c))
        n = self.mlp_norm(x)
        if cfg["mlp"] == "swiglu":
            a = F.silu(self.mlp.gate(n)) * self.mlp.up(n)
        else:
            a = F.gelu(self.mlp.up(n), approximate="tanh")
        return x + self.mlp.down(a)


class Transformer(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        v, c = cfg["vocab_size"], cfg["d_model"]
        self.embed = torch.nn.Embedding(v, c)
        if cfg["positions"] == "learned":
            self.pos_embed = torch.nn.Embedding(cfg["max_seq_len"], c)
        self.layers = torch.nn.ModuleList(Block(cfg) for _ in range(cfg["n_layers"]))
        self.final_norm = Norm(c, cfg["norm"], cfg["norm_eps"])
        if not cfg["tie_embeddings"]:
            self.lm_head = torch.nn.Linear(c, v, bias=False)

    def forward(self, tokens):
        cfg = self.cfg
        t = tokens.shape[1]
        x = self.embed(tokens)
        cos = sin = None
        if cfg["positions"] == "learned":
            x = x + self.pos_embed(torch.arange(t))
        else:
            d = cfg["d_model"] // cfg["n_heads"]
            i = torch.arange(d // 2, dtype=torch.float64)
            freq = torch.pow(torch.tensor(cfg["rope_theta"], dtype=torch.float64), -2.0 * i / d)
            angle = torch.arange(t, dtype=torch.float64)[:, None] * freq[None, :]
            # xplor stores the tables in float32: round them the same way.
            cos, sin = torch.cos(angle).float().double(), torch.sin(angle).float().double()
        for layer in self.layers:
            x = layer(x, cos, sin)
        unembed = self.embed.weight if cfg["tie_embeddings"] else self.lm_head.weight
        return self.final_norm(x) @ unembed.T


def read_config(meta):
    return {
        "vocab_size": int(meta["vocab_size"]), "d_model": int(meta["d_model"]), "n_layers": int(meta["n_layers"]),
        "n_heads": int(meta["n_heads"]), "d_ff": int(meta["d_ff"]), "max_seq_len": int(meta["max_seq_len"]),
        "norm": meta["norm"], "positions": meta["positions"], "mlp": meta["mlp"],
        "tie_embeddings": meta["tie_embeddings"] == "true", "norm_eps": float(np.float32(meta["norm_eps"])),
        "rope_theta": float(np.float32(meta["rope_theta"])),
    }


def golden(path):
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k).double() for k in f.keys()}
    cfg = read_config(meta)
    model = Transformer(cfg).double()
    model.load_state_dict(state, strict=True)

    rng = np.random.default_rng(20261128)
    tokens = rng.integers(0, cfg["vocab_size"], size=(B, T))
    targets = rng.integers(0, cfg["vocab_size"], size=(B, T))
    targets[:, 2] = -1  # ignored positions
    mask = rng.choice([0.5, 1.0, 2.0], size=(B, T))

    logits = model(torch.tensor(tokens))
    logp = torch.log_softmax(logits, dim=-1).reshape(B * T, -1)
    tgt = torch.tensor(targets.reshape(-1))
    w = torch.tensor(mask.reshape(-1)) * (tgt >= 0)
    picked = logp[torch.arange(B * T), tgt.clamp(min=0)]
    loss = -(w * picked).sum() / w.sum()
    loss.backward()

    out = {
        "batch.tokens": torch.tensor(tokens, dtype=torch.float32),
        "batch.targets": torch.tensor(targets, dtype=torch.float32),
        "batch.mask": torch.tensor(mask, dtype=torch.float32),
        "logits": logits.detach().reshape(B * T, -1).float().contiguous(),
        "loss": loss.detach().reshape(1).float(),
    }
    for name, p in model.named_parameters():
        out["grad." + name] = p.grad.float().contiguous()
    dst = path.with_name(path.name.replace(".safetensors", ".golden.safetensors"))
    save_file(out, str(dst), metadata={"source": "tools/torch_reference.py", "torch": torch.__version__})
    print(f"{dst}: loss {loss.item():.6f}")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for path in sorted(pathlib.Path(sys.argv[1]).glob("*.safetensors")):
        if not path.name.endswith(".golden.safetensors"):
            golden(path)


if __name__ == "__main__":
    main()
