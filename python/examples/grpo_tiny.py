"""GRPO on a tiny PyTorch model with xplor as the RL core (CPU, about a minute).

The task: "a+b=" with a, b in 0..9; the model writes the sum's digits and an end token, and the
response it is scored on is "\\boxed{<digits>}". What xplor does in the loop:

  * xplor.budget.SuccessTracker + allocate_rollouts: rollouts per prompt (Knapsack RL), more to
    prompts near 50% success, fewer to solved or hopeless ones;
  * xplor.sample.sample_rows: the draws (Philox streams: the run is reproducible);
  * xplor.trl.math_reward: the reward, called exactly as TRL's GRPOTrainer calls reward_funcs;
  * xplor.rl.advantages over the ragged groups the allocator made, and xplor.rl.policy_loss
    (TRL's DAPO loss) whose dlogp finishes PyTorch's backward pass: logp.backward(dlogp);
  * xplor.verl.compute_score_batch to score the held-out set.

Run: python python/examples/grpo_tiny.py [--steps 300] [--seed 0]   (needs torch and numpy)
"""
import argparse
import time

import numpy as np
import torch

import xplor

DIGITS, PLUS, EQUALS, END = 10, 10, 11, 12
VOCAB = 13
MAX_NEW = 3


class TinyLM(torch.nn.Module):
    def __init__(self, width=64):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, width)
        self.rnn = torch.nn.GRU(width, width, batch_first=True)
        self.head = torch.nn.Linear(width, VOCAB)

    def forward(self, tokens):  # [B, T] -> logits [B, T, V]
        h, _ = self.rnn(self.embed(tokens))
        return self.head(h)


def encode(a, b):
    return [a, PLUS, b, EQUALS]


def answer_tokens(a, b):
    return [int(c) for c in str(a + b)] + [END]


def render(tokens):
    """The response the verifier reads: the digits before the end token, in a box."""
    digits = []
    for t in tokens:
        if t == END:
            break
        digits.append(str(t) if t < DIGITS else "?")
    return "\\boxed{" + "".join(digits) + "}"


def sft(model, opt, problems, steps):
    for _ in range(steps):
        batch = [problems[i] for i in np.random.randint(len(problems), size=32)]
        seqs = [encode(a, b) + answer_tokens(a, b) for a, b in batch]
        L = max(len(s) for s in seqs)
        x = torch.full((len(seqs), L), END)
        for i, s in enumerate(seqs):
            x[i, :len(s)] = torch.tensor(s)
        logits = model(x[:, :-1])
        target = x[:, 1:].clone()
        target[:, :3] = -100  # learn the answer only
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def generate(model, prompts, seed, step, params):
    """One completion per prompt, drawn by xplor's sampler from the model's logits."""
    x = torch.tensor(prompts)
    out = []
    streams = np.arange(len(prompts), dtype=np.uint64) + np.uint64(step) * np.uint64(1 << 32)
    for t in range(MAX_NEW):
        logits = model(x)[:, -1].contiguous()  # float32, read in place by xplor
        tokens, _, _ = xplor.sample.sample_rows(logits.numpy(), params, seed=seed, streams=streams,
                                                draws=np.full(len(prompts), t, dtype=np.uint64))
        out.append(tokens)
        x = torch.cat([x, torch.from_numpy(tokens.astype(np.int64))[:, None]], dim=1)
    return np.stack(out, axis=1)  # [N, MAX_NEW]


def evaluate(model, problems, seed):
    completions = generate(model, [encode(a, b) for a, b in problems], seed, 10**6, xplor.sample.SamplingParams(
        temperature=0.01))
    scores = xplor.verl.compute_score_batch(["arith"] * len(problems), [render(c) for c in completions],
                                            [str(a + b) for a, b in problems])
    return float(np.mean([s["score"] for s in scores]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sft-steps", type=int, default=60)
    ap.add_argument("--prompts-per-step", type=int, default=16)
    ap.add_argument("--budget", type=int, default=128, help="rollouts per step, split by the knapsack")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    problems = [(a, b) for a in range(10) for b in range(10)]
    order = np.random.permutation(len(problems))
    train = [problems[i] for i in order[:70]]
    held_out = [problems[i] for i in order[70:]]
    model = TinyLM()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sft(model, opt, train, args.sft_steps)  # a weak start: a few SFT steps
    print(f"after {args.sft_steps} SFT steps: greedy accuracy on the 70 training problems "
          f"{evaluate(model, train, args.seed):.2f}, on the 30 held-out ones {evaluate(model, held_out, args.seed):.2f}")

    tracker = xplor.budget.SuccessTracker(min_rollouts=4)
    _, loss_options = xplor.rl.trl_options({"loss_type": "dapo", "epsilon": 0.2, "epsilon_high": 0.28})
    params = xplor.sample.SamplingParams(temperature=1.0)
    reward_fn = xplor.trl.math_reward
    t0 = time.time()
    for step in range(args.steps):
        ids = np.random.choice(len(train), args.prompts_per_step, replace=False).astype(np.int64)
        counts = tracker.allocate(ids, args.budget, n_min=2, n_max=32)
        prompts = [encode(*train[i]) for i in ids for _ in range(counts[list(ids).index(i)])]
        owner = np.repeat(ids, counts)
        completions = generate(model, prompts, args.seed, step, params)
        rewards = np.array(reward_fn(prompts=prompts, completions=[render(c) for c in completions],
                                     solution=[str(sum(train[i])) for i in owner]), dtype=np.float32)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        for k, i in enumerate(ids):
            tracker.record(int(i), rewards[offsets[k]:offsets[k + 1]].astype(np.float64))
        adv, report = xplor.rl.advantages(rewards, offsets=offsets)
        # Log-probs of the sampled tokens under the current model (on-policy: one update per batch).
        x = torch.cat([torch.tensor(prompts), torch.from_numpy(completions.astype(np.int64))], dim=1)
        logp_all = torch.log_softmax(model(x[:, :-1]), -1)[:, 3:]
        logp = logp_all.gather(-1, x[:, 4:, None])[..., 0]  # [N, MAX_NEW]
        ended = torch.from_numpy(np.cumsum(completions == END, axis=1) - (completions == END) == 0)
        mask = ended.float()  # tokens up to and including the first end token
        loss, stats, dlogp = xplor.rl.policy_loss(logp.detach(), adv, mask=mask, options=loss_options)
        opt.zero_grad()
        logp.backward(torch.from_numpy(dlogp))
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:3d}  reward {rewards.mean():.2f}  rollouts/prompt {counts.min()}-{counts.max()}  "
                  f"zero-std groups {report['frac_zero_std']:.2f}  loss {loss:+.4f}  {time.time() - t0:.0f}s")
    print(f"after {args.steps} GRPO steps: greedy accuracy on the training problems "
          f"{evaluate(model, train, args.seed):.2f}, held-out {evaluate(model, held_out, args.seed):.2f}")


if __name__ == "__main__":
    main()
