#!/usr/bin/env python3
"""The PyTorch side of bench_model's GPT-2-small figures, same shapes, same definitions.

A plain GPT-2 small (12 layers, d 768, 12 heads, GELU-tanh MLP 3072, LayerNorm, learned positions,
vocab 50257, tied embeddings; PyTorch's fused scaled_dot_product_attention) on the CPU, float32:

  train_gpt2_small_T64_B4   forward + backward + AdamW on B = 4 sequences of T = 64; tokens/s
  decode 1_state            128 greedy tokens after a 64-token prompt, preallocated KV cache
  decode 16_forks           one 64-token prompt prefilled once, its cache copied to 16 rows, then
                            128 steps of the 16 rows as one batch
  decode 16_prompts         16 different prompts prefilled as one batch, then 128 batched steps
  sgemm                     torch.mm of [256, 768] x [768, 3072] (the training step's MLP shape)

Decoding tokens/s count the generated tokens over the time from the first prefill to the last
logits, as bench_model does. Prints one JSON object of medians over --repetitions.

Needs torch (pip install torch); xplor itself never does.
Usage: tools/torch_model_bench.py [--threads 1] [--repetitions 3] [--only train,decode,sgemm]
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

V, C, L, H, FF, MAXT = 50257, 768, 12, 12, 3072, 1024
D = C // H


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = torch.nn.LayerNorm(C), torch.nn.LayerNorm(C)
        self.qkv, self.proj = torch.nn.Linear(C, 3 * C), torch.nn.Linear(C, C)
        self.fc, self.out = torch.nn.Linear(C, FF), torch.nn.Linear(FF, C)

    def attend(self, x, cache, start):
        """x [B, T, C]; cache None (training, causal over x) or (k, v) [B, H, MAXT, D] written at start."""
        B, T, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            kc, vc = cache
            kc[:, :, start:start + T] = k
            vc[:, :, start:start + T] = v
            k, v = kc[:, :, :start + T], vc[:, :, :start + T]
            if T == 1:
                y = F.scaled_dot_product_attention(q, k, v)
            else:  # prefill from position 0
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))

    def forward(self, x, cache=None, start=0):
        x = x + self.attend(x, cache, start)
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = torch.nn.Embedding(V, C), torch.nn.Embedding(MAXT, C)
        self.blocks = torch.nn.ModuleList(Block() for _ in range(L))
        self.ln_f = torch.nn.LayerNorm(C)

    def forward(self, idx, caches=None, start=0):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(start, start + T))
        for i, b in enumerate(self.blocks):
            x = b(x, None if caches is None else caches[i], start)
        return self.ln_f(x) @ self.wte.weight.T


def median_time(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_train(model, reps):
    B, T = 4, 64
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).view(-1, V), y.view(-1))
        loss.backward()
        opt.step()

    step()  # warm-up: allocations, AdamW state
    return B * T / median_time(step, reps)


@torch.no_grad()
def bench_decode(model, streams, forked, reps):
    prompt_len, new = 64, 128
    prompts = torch.randint(0, V, (1 if forked else streams, prompt_len))

    def run():
        rows = prompts.shape[0]
        caches = [(torch.empty(rows, H, MAXT, D), torch.empty(rows, H, MAXT, D)) for _ in range(L)]
        logits = model(prompts, caches, 0)[:, -1]
        if forked and streams > 1:  # the prompt's cache copied to every fork, as HF's generate does
            caches = [(k.expand(streams, -1, -1, -1).clone(), v.expand(streams, -1, -1, -1).clone())
                      for k, v in caches]
            logits = logits.expand(streams, -1)
        for t in range(new):
            nxt = logits.argmax(dim=-1, keepdim=True)
            logits = model(nxt, caches, prompt_len + t)[:, -1]
        return logits

    run()
    return streams * new / median_time(run, reps)


def bench_sgemm(reps):
    a, b = torch.randn(256, C), torch.randn(C, FF)
    out = torch.empty(256, FF)

    def run():
        for _ in range(50):
            torch.mm(a, b, out=out)

    run()
    return 50 * 2.0 * 256 * C * FF / median_time(run, reps) * 1e-9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--only", default="train,decode,sgemm")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02) if p.dim() > 1 else p.zero_()
        for b in model.blocks:
            b.ln1.weight.fill_(1), b.ln2.weight.fill_(1)
        model.ln_f.weight.fill_(1)
    parts = set(args.only.split(","))
    out = {"torch": torch.__version__, "threads": args.threads, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if "sgemm" in parts:
        out["sgemm_GFLOPs"] = bench_sgemm(args.repetitions * 3)
    if "train" in parts:
        out["train_step/gpt2_small_T64_B4 tokens_per_s"] = bench_train(model, args.repetitions)
    if "decode" in parts:
        model.eval()
        out["decode_gpt2_small/1_state tokens_per_s"] = bench_decode(model, 1, True, args.repetitions)
        out["decode_gpt2_small/16_forks tokens_per_s"] = bench_decode(model, 16, True, args.repetitions)
        out["decode_gpt2_small/16_prompts tokens_per_s"] = bench_decode(model, 16, False, args.repetitions)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
