// rlvr_arithmetic's training and evaluation steps, each a thin loop over xplor components:
// SFT = model/ (weighted cross-entropy, AdamW, clipping); RL = budget/ (knapsack counts from
// online success estimates) -> sample/ (forked rollouts on the model's decoder) -> reward/ (\boxed{}
// check, TruthRL ternary or binary reward) -> rl/ (GRPO advantages over ragged groups, the DAPO
// token-mean clipped loss and its d loss / d logp) -> model/ backward(dlogp); evaluation = greedy
// generate() + reward::truth_metrics. Each step is a template over the model: the reference
// transformer or the Dragon Hatchling (examples/common/models.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>
#include <xplor/budget/success_tracker.hpp>
#include <xplor/model/optim.hpp>
#include <xplor/model/tokenizer.hpp>
#include <xplor/reward/truth.hpp>
#include <xplor/rl/advantage.hpp>
#include <xplor/rl/loss.hpp>
#include <xplor/sample/rollout.hpp>

#include "common/models.hpp"
#include "common/policy_update.hpp"
#include "data.hpp"

namespace rlvr {

namespace xm = xplor::model;

// ---------------------------------------------------------------------------------------------
// SFT

struct sft_options {
  int batch_size = 32;
  double idk_rate = 0.1;  // fraction of targets that are \boxed{I don't know} (teaches the format)
};

/// One SFT step on fresh training-template examples; returns the mean cross-entropy per target.
template <class Model>
float sft_step(Model& model, xm::adamw& opt, float lr, const xm::byte_tokenizer& tok, std::uint64_t seed,
               std::int64_t step, const sft_options& o) {
  const auto batch = draw_examples(seed, 0x5f7000000ULL + static_cast<std::uint64_t>(step), o.batch_size, 0,
                                   num_train_templates, 1, sft_max_level);
  xplor::philox_stream gen(seed, 0x1d4000000ULL + static_cast<std::uint64_t>(step));
  std::vector<std::vector<std::int32_t>> seqs;
  std::vector<std::int64_t> prompt_len;
  for (const example& e : batch) {
    auto s = tok.encode(e.prompt);
    prompt_len.push_back(static_cast<std::int64_t>(s.size()));
    const double u = static_cast<double>(gen()) / 4294967296.0;
    const std::string target = u < o.idk_rate ? boxed(abstain_answer()) : chain_of_thought(e.p);
    const auto t = tok.encode(target, {.add_eos = true});
    s.insert(s.end(), t.begin(), t.end());
    seqs.push_back(std::move(s));
  }
  const examples::padded_batch b =
      examples::pad_sequences(seqs, prompt_len, static_cast<std::int32_t>(tok.pad()));
  model.zero_grad();
  const float loss = model.forward({b.tokens, b.batch, b.seq_len, b.targets, {}, {}});
  model.backward();
  xm::clip_grad_norm(model.grads(), 1.0f);
  opt.step(model.params(), model.grads(), lr);
  return loss;
}

// ---------------------------------------------------------------------------------------------
// Evaluation: greedy decoding (top_k = 1, as TruthRL evaluates), outcomes per level.

struct eval_result {
  std::array<xplor::reward::truth_metrics, num_levels> per_level{};
  xplor::reward::truth_metrics all() const {
    xplor::reward::truth_metrics m;
    for (const auto& l : per_level) m += l;
    return m;
  }
};

inline xplor::sample::sampling_params decode_params(const xm::byte_tokenizer& tok, int max_len) {
  xplor::sample::sampling_params p;
  p.max_completion_length = max_len;
  p.eos_token = tok.eos();
  return p;
}

inline std::string completion_text(const xm::byte_tokenizer& tok, std::span<const std::int32_t> tokens) {
  return tok.decode(tokens, {.render_specials = false});
}

/// Greedy decoding (samples = 0; top_k = 1, as TruthRL evaluates) or `samples` completions per
/// problem at temperature 1 (the mean over them is DAPO's avg@k).
template <class Model>
eval_result evaluate(const Model& model, const xm::byte_tokenizer& tok, const std::vector<example>& set,
                     int max_len, int samples, std::uint64_t seed) {
  examples::decoder_t<Model> decoder(model);
  std::vector<std::vector<std::int32_t>> prompts;
  for (const example& e : set) prompts.push_back(tok.encode(e.prompt));
  auto params = decode_params(tok, max_len);
  if (samples == 0) params.top_k = 1;
  const int count = std::max(samples, 1);
  const auto out = xplor::sample::generate(decoder, prompts, std::span<const int>(&count, 1), params, seed);
  eval_result r;
  for (std::int64_t c = 0; c < out.num_completions(); ++c) {
    const example& e = set[static_cast<std::size_t>(out.prompt_index[c])];
    const std::string gold = std::to_string(e.p.answer());
    const auto o = xplor::reward::classify_response(completion_text(tok, out.completion(c)),
                                                    std::span<const std::string>(&gold, 1));
    r.per_level[static_cast<std::size_t>(e.p.level - 1)].add(o);
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// RL

struct rl_options {
  int prompts_per_step = 16;  // P
  int num_generations = 8;    // N, the mean rollouts per prompt (the knapsack budget is P N)
  bool knapsack = true;       // Knapsack RL allocation from success_tracker estimates
  int n_max = 32;             // most rollouts one prompt may get
  xplor::reward::reward_variant reward = xplor::reward::reward_variant::ternary;
  xplor::rl::loss_options loss;  // loss_type dapo (TRL's default)
  int micro_batch = 32;          // sequences per forward/backward
  int max_completion_length = 72;
  float temperature = 1.0f;
};

struct rl_stats {
  double mean_reward = 0, accuracy = 0, abstention = 0, hallucination = 0, frac_zero_std = 0, loss = 0;
  std::int64_t rollouts = 0, tokens = 0;
  int min_n = 0, max_n = 0;
  std::vector<std::pair<std::int64_t, std::vector<double>>> visits;  // what the tracker recorded
};

/// A fixed pool of training prompts (the knapsack's success estimates need revisits), visited in
/// a fresh permutation per epoch.
inline std::vector<std::int64_t> step_prompt_ids(std::uint64_t seed, std::int64_t step, int per_step,
                                                 std::int64_t pool) {
  const std::int64_t per_epoch = pool / per_step;
  const std::int64_t epoch = step / per_epoch, slot = step % per_epoch;
  std::vector<std::int64_t> perm(static_cast<std::size_t>(pool));
  for (std::int64_t i = 0; i < pool; ++i) perm[static_cast<std::size_t>(i)] = i;
  xplor::philox_stream gen(seed, 0x9e3000000ULL + static_cast<std::uint64_t>(epoch));
  for (std::int64_t i = pool - 1; i > 0; --i)
    std::swap(perm[static_cast<std::size_t>(i)], perm[static_cast<std::size_t>(uniform_int(gen, 0, i))]);
  return {perm.begin() + slot * per_step, perm.begin() + (slot + 1) * per_step};
}

template <class Model>
rl_stats rl_step(Model& model, xm::adamw& opt, float lr, const xm::byte_tokenizer& tok,
                 const std::vector<example>& pool, xplor::budget::success_tracker& tracker,
                 std::uint64_t seed, std::int64_t step, const rl_options& o) {
  rl_stats st;
  const auto ids = step_prompt_ids(seed, step, o.prompts_per_step, static_cast<std::int64_t>(pool.size()));
  // 1. Budget: P N rollouts split by the knapsack over the success estimates (uniform until a
  //    prompt has been seen with >= 8 rollouts).
  std::vector<int> counts(ids.size(), o.num_generations);
  if (o.knapsack) {
    xplor::budget::allocation_options ao;
    ao.n_max = o.n_max;
    counts = tracker.allocate(ids, std::int64_t{o.prompts_per_step} * o.num_generations, ao);
  }
  st.min_n = *std::min_element(counts.begin(), counts.end());
  st.max_n = *std::max_element(counts.begin(), counts.end());
  // 2. Rollouts: each prompt prefilled once, its completions forked from it.
  std::vector<std::vector<std::int32_t>> prompts;
  for (auto id : ids) prompts.push_back(tok.encode(pool[static_cast<std::size_t>(id)].prompt));
  auto params = decode_params(tok, o.max_completion_length);
  params.temperature = o.temperature;
  xplor::sample::rollout_batch ro;
  {
    examples::decoder_t<Model> decoder(model);
    ro = xplor::sample::generate(decoder, prompts, counts, params,
                                 seed * 1000003ULL + static_cast<std::uint64_t>(step));
  }
  const std::int64_t n = ro.num_completions();
  st.rollouts = n;
  // 3. Rewards: last \boxed{} against the answer; TruthRL ternary (abstain 0) or binary (abstain -1).
  std::vector<float> rewards(static_cast<std::size_t>(n));
  xplor::reward::truth_metrics m;
  for (std::int64_t c = 0; c < n; ++c) {
    const example& e = pool[static_cast<std::size_t>(ids[static_cast<std::size_t>(ro.prompt_index[c])])];
    const std::string gold = std::to_string(e.p.answer());
    const auto oc = xplor::reward::classify_response(completion_text(tok, ro.completion(c)),
                                                     std::span<const std::string>(&gold, 1));
    m.add(oc);
    rewards[static_cast<std::size_t>(c)] = xplor::reward::truth_reward(oc, o.reward);
  }
  for (std::size_t i = 0; i < ids.size(); ++i) {
    std::vector<double> r(rewards.begin() + ro.group_offsets[i], rewards.begin() + ro.group_offsets[i + 1]);
    tracker.record(ids[i], r);
    st.visits.emplace_back(ids[i], std::move(r));
  }
  double total = 0;
  for (float r : rewards) total += r;
  st.mean_reward = total / double(n);
  st.accuracy = m.accuracy();
  st.abstention = m.abstention_rate();
  st.hallucination = m.hallucination_rate();
  // 4. Advantages: GRPO over the ragged groups the budget produced.
  std::vector<float> adv(static_cast<std::size_t>(n));
  std::vector<std::uint8_t> degenerate(ids.size());
  const auto report =
      xplor::rl::compute_advantages(xplor::cpu, xplor::rl::estimator::grpo, std::span<const float>(rewards),
                                    xplor::ragged_groups(ro.group_offsets, n), std::span<float>(adv), {},
                                    std::span<std::uint8_t>(degenerate));
  st.frac_zero_std = report.frac_zero_std();
  st.tokens = static_cast<std::int64_t>(ro.tokens.size());
  // 5. Loss and gradient: DAPO token mean over every completion token of the step
  //    (num_items_in_batch), in micro-batches. Completions with A = 0 have zero gradient under
  //    this loss (beta = 0), so they only count in the normaliser and are not re-run.
  xplor::rl::loss_options lo = o.loss;
  lo.num_items_in_batch = static_cast<double>(st.tokens);
  const auto active = examples::rollout_sequences(prompts, ro, adv);
  st.loss = examples::policy_update(model, opt, lr, active, lo, o.micro_batch,
                                    static_cast<std::int32_t>(tok.pad()));
  return st;
}

}  // namespace rlvr
