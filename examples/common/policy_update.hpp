// The policy-gradient update the RL examples share: sequences (prompt + sampled completion)
// with the completion tokens' sampling log-probabilities and per-token advantages -> one
// forward/backward of the model (the reference transformer or BDH) per micro-batch -> rl::policy_loss (any
// loss_type; its d loss / d log p feeds model.backward(dlogp)) -> gradient clipping -> AdamW.
// Per-token advantages cover both GRPO (one advantage per completion, repeated) and DeepSearch
// (one per tree node, docs/methods.md §2.6).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>
#include <xplor/model/optim.hpp>
#include <xplor/model/transformer.hpp>
#include <xplor/rl/loss.hpp>
#include <xplor/sample/rollout.hpp>

namespace examples {

/// One sampled sequence: tokens = prompt + completion; old_logprobs and advantages have one entry
/// per completion token.
struct scored_sequence {
  std::vector<std::int32_t> tokens;
  std::int64_t prompt_len = 0;
  std::vector<float> old_logprobs, advantages;
};

/// The completions of `ro` with a non-zero advantage (one per completion, `adv`), as sequences
/// after their prompts. Under a loss without KL the others have zero gradient: callers count
/// their tokens in loss.num_items_in_batch and leave them out of the update.
inline std::vector<scored_sequence> rollout_sequences(std::span<const std::vector<std::int32_t>> prompts,
                                                      const xplor::sample::rollout_batch& ro,
                                                      std::span<const float> adv) {
  std::vector<scored_sequence> out;
  for (std::int64_t c = 0; c < ro.num_completions(); ++c) {
    const float a = adv[static_cast<std::size_t>(c)];
    if (a == 0.0f) continue;
    scored_sequence s;
    s.tokens = prompts[static_cast<std::size_t>(ro.prompt_index[static_cast<std::size_t>(c)])];
    s.prompt_len = static_cast<std::int64_t>(s.tokens.size());
    const auto comp = ro.completion(c);
    s.tokens.insert(s.tokens.end(), comp.begin(), comp.end());
    s.old_logprobs.assign(ro.logprobs.begin() + ro.offsets[static_cast<std::size_t>(c)],
                          ro.logprobs.begin() + ro.offsets[static_cast<std::size_t>(c) + 1]);
    s.advantages.assign(comp.size(), a);
    out.push_back(std::move(s));
  }
  return out;
}

/// Right-padded [B, T] next-token batch; only the completion's tokens (after prompt_len) are
/// targets.
struct padded_batch {
  std::vector<std::int32_t> tokens, targets;
  std::int64_t batch = 0, seq_len = 0;
};

inline padded_batch pad_sequences(std::span<const std::vector<std::int32_t>> seqs,
                                  std::span<const std::int64_t> prompt_len, std::int32_t pad) {
  padded_batch b;
  b.batch = static_cast<std::int64_t>(seqs.size());
  for (const auto& s : seqs) b.seq_len = std::max(b.seq_len, static_cast<std::int64_t>(s.size()) - 1);
  b.tokens.assign(static_cast<std::size_t>(b.batch * b.seq_len), pad);
  b.targets.assign(b.tokens.size(), xplor::model::ignore_target);
  for (std::int64_t i = 0; i < b.batch; ++i) {
    const auto& s = seqs[static_cast<std::size_t>(i)];
    const auto n = static_cast<std::int64_t>(s.size()) - 1;
    for (std::int64_t t = 0; t < n; ++t) {
      b.tokens[static_cast<std::size_t>(i * b.seq_len + t)] = s[static_cast<std::size_t>(t)];
      if (t + 1 >= prompt_len[static_cast<std::size_t>(i)])
        b.targets[static_cast<std::size_t>(i * b.seq_len + t)] = s[static_cast<std::size_t>(t + 1)];
    }
  }
  return b;
}

/// The policy gradient of `seqs`, added to model.grads() (one forward/backward per micro-batch);
/// returns the summed micro-batch losses. loss.num_items_in_batch should already hold the step's
/// token count when sequences were left out (e.g. zero-advantage ones under a loss without KL,
/// whose gradient is zero) or live on other ranks.
template <class Model>
double policy_gradient(Model& model, std::span<const scored_sequence> seqs,
                       const xplor::rl::loss_options& loss, int micro_batch, std::int32_t pad) {
  double total = 0.0;
  for (std::size_t first = 0; first < seqs.size(); first += static_cast<std::size_t>(micro_batch)) {
    const std::size_t last = std::min(seqs.size(), first + static_cast<std::size_t>(micro_batch));
    std::vector<std::vector<std::int32_t>> tokens;
    std::vector<std::int64_t> plen, seq_offsets{0};
    std::vector<float> old_logp, adv;
    for (std::size_t k = first; k < last; ++k) {
      const scored_sequence& s = seqs[k];
      tokens.push_back(s.tokens);
      plen.push_back(s.prompt_len);
      seq_offsets.push_back(seq_offsets.back() + static_cast<std::int64_t>(s.old_logprobs.size()));
      old_logp.insert(old_logp.end(), s.old_logprobs.begin(), s.old_logprobs.end());
      adv.insert(adv.end(), s.advantages.begin(), s.advantages.end());
    }
    const padded_batch b = pad_sequences(tokens, plen, pad);
    model.forward({b.tokens, b.batch, b.seq_len, b.targets, {}, {}});
    const auto lp_all = model.target_logprobs();
    std::vector<float> logp;
    std::vector<std::int64_t> where;  // flat completion token -> position in the padded batch
    for (std::int64_t i = 0; i < b.batch; ++i)
      for (std::int64_t t = plen[static_cast<std::size_t>(i)] - 1;
           t < static_cast<std::int64_t>(tokens[static_cast<std::size_t>(i)].size()) - 1; ++t) {
        logp.push_back(lp_all[static_cast<std::size_t>(i * b.seq_len + t)]);
        where.push_back(i * b.seq_len + t);
      }
    std::vector<float> dlogp(logp.size());
    const xplor::rl::policy_batch pb{logp, old_logp, {}, adv, {}, {}, seq_offsets, {}};
    total += xplor::rl::policy_loss(xplor::cpu, pb, std::span<float>(dlogp), loss).loss;
    std::vector<float> dfull(static_cast<std::size_t>(b.batch * b.seq_len), 0.0f);
    for (std::size_t k = 0; k < where.size(); ++k) dfull[static_cast<std::size_t>(where[k])] = dlogp[k];
    model.backward(std::span<const float>(dfull));
  }
  return total;
}

/// One optimizer step on `seqs` (policy_gradient, clipping, AdamW); does nothing when seqs is
/// empty.
template <class Model>
double policy_update(Model& model, xplor::model::adamw& opt, float lr, std::span<const scored_sequence> seqs,
                     const xplor::rl::loss_options& loss, int micro_batch, std::int32_t pad,
                     float max_grad_norm = 1.0f) {
  if (seqs.empty()) return 0.0;
  model.zero_grad();
  const double total = policy_gradient(model, seqs, loss, micro_batch, pad);
  xplor::model::clip_grad_norm(model.grads(), max_grad_norm);
  opt.step(model.params(), model.grads(), lr);
  return total;
}

}  // namespace examples
