// MemGen's two reinforcement-learning stages on xplor's rl/ arithmetic.
//
// - Weaver GRPO (the authors' weaver_grpo_trainer.py): rollouts generated with latents woven in
//   online; the policy's log-probabilities are the frozen reasoner's with the latents in context,
//   so the loss reaches the weaver only through the latents. Group-relative advantages (TRL's
//   (R - mean) / (std + 1e-4)), the clipped surrogate with beta = 0, bnpo aggregation; one update
//   per batch, so the ratio is 1 (TRL with num_iterations = 1).
// - Trigger GRPO (trigger_grpo_trainer.py): the same advantages on the rollouts' decisions only
//   (log softmax of the trigger's two logits at every eligible point), averaged over decisions.
//   The paper adds a reward-adaptive penalty on invocations (its Eqs. 8-9) that the public trainer
//   lacks; invocation_penalized_rewards implements our reading of it (docs/memory.md), and
//   lambda = 0 is the public trainer.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/memory/generate.hpp"
#include "xplor/memory/memgen.hpp"
#include "xplor/memory/trigger.hpp"
#include "xplor/rl/advantage.hpp"
#include "xplor/rl/loss.hpp"

namespace xplor::memory {

/// R'_i = R_i - lambda * sum_j max(0, d_ij - pbar_g) over rollout i's decisions d_ij (1 = invoke),
/// where pbar_g is the mean invocation rate (invocations / decisions) of the rollouts of i's group
/// whose reward is above the group's median (the group's mean rate when none is). Groups are
/// `group_size` consecutive rollouts.
inline std::vector<float> invocation_penalized_rewards(std::span<const float> rewards,
                                                       std::span<const rollout> rollouts, int group_size,
                                                       float lambda) {
  constexpr const char* fn = "xplor::memory::invocation_penalized_rewards";
  xplor::detail::require(rewards.size() == rollouts.size(), fn, "rewards has ", rewards.size(),
                         " elements for ", rollouts.size(), " rollouts");
  xplor::detail::require(group_size >= 1 && rewards.size() % static_cast<std::size_t>(group_size) == 0, fn,
                         "group_size = ", group_size, " does not divide ", rewards.size(), " rollouts");
  xplor::detail::require(std::isfinite(lambda) && lambda >= 0.0f, fn, "lambda = ", lambda,
                         " must be finite and >= 0");
  for (std::size_t i = 0; i < rewards.size(); ++i)
    xplor::detail::require(std::isfinite(rewards[i]), fn, "rewards[", i, "] = ", rewards[i],
                           " is not finite");
  auto rate = [&](const rollout& r) {
    const auto& a = r.decisions.actions;
    if (a.empty()) return 0.0;
    return static_cast<double>(std::count(a.begin(), a.end(), invoke)) / static_cast<double>(a.size());
  };
  std::vector<float> out(rewards.begin(), rewards.end());
  const auto G = static_cast<std::size_t>(group_size);
  for (std::size_t g0 = 0; g0 < rewards.size(); g0 += G) {
    std::vector<float> sorted(rewards.begin() + static_cast<std::ptrdiff_t>(g0),
                              rewards.begin() + static_cast<std::ptrdiff_t>(g0 + G));
    std::sort(sorted.begin(), sorted.end());
    const double median = G % 2 == 1 ? sorted[G / 2] : 0.5 * (double(sorted[G / 2 - 1]) + sorted[G / 2]);
    double sum = 0.0, all = 0.0;
    int n = 0;
    for (std::size_t i = g0; i < g0 + G; ++i) {
      all += rate(rollouts[i]);
      if (rewards[i] > median) sum += rate(rollouts[i]), ++n;
    }
    const double pbar = n > 0 ? sum / n : all / static_cast<double>(G);
    for (std::size_t i = g0; i < g0 + G; ++i) {
      double penalty = 0.0;
      for (std::int32_t d : rollouts[i].decisions.actions) penalty += std::max(0.0, double(d) - pbar);
      out[i] = static_cast<float>(double(rewards[i]) - double(lambda) * penalty);
    }
  }
  return out;
}

/// The defaults of the authors' trainers: TRL's advantages and the clipped surrogate, beta 0, bnpo.
struct grpo_options {
  rl::advantage_options advantages = {};
  rl::loss_options loss = [] {
    rl::loss_options o;
    o.type = rl::loss_type::bnpo;
    return o;
  }();
};

/// Per-token advantages of `rollouts` (groups of group_size) from `rewards`, flattened over what
/// count(r) gives per rollout (tokens for the weaver, decisions for the trigger).
template <class Count>
void broadcast_advantages(std::span<const float> rewards, std::span<const rollout> rollouts, int group_size,
                          const grpo_options& opt, Count count, std::vector<float>& adv,
                          std::vector<std::int64_t>& offsets, const char* fn) {
  xplor::detail::require(rewards.size() == rollouts.size(), fn, "rewards has ", rewards.size(),
                         " elements for ", rollouts.size(), " rollouts");
  std::vector<float> per_rollout(rewards.size());
  rl::group_advantages(cpu, rewards, group_size, std::span<float>(per_rollout), opt.advantages);
  adv.clear();
  offsets.assign(1, 0);
  for (std::size_t i = 0; i < rollouts.size(); ++i) {
    const std::size_t n = count(rollouts[i]);
    adv.insert(adv.end(), n, per_rollout[i]);
    offsets.push_back(offsets.back() + static_cast<std::int64_t>(n));
  }
}

/// Weaver GRPO: accumulates into m.weaver().grads() the gradient of the policy loss over the
/// rollouts' completion tokens (forward in `pass` mode: training with a fresh dropout key).
inline rl::loss_result weaver_grpo_gradients(memgen& m, std::span<const rollout> rollouts,
                                             std::span<const float> rewards, int group_size,
                                             const grpo_options& opt = {}, const pass_options& pass = {}) {
  constexpr const char* fn = "xplor::memory::weaver_grpo_gradients";
  std::vector<float> adv;
  std::vector<std::int64_t> offsets;
  broadcast_advantages(
      rewards, rollouts, group_size, opt, [](const rollout& r) { return r.seq.completion.size(); }, adv,
      offsets, fn);
  std::vector<sequence> seqs;
  for (const rollout& r : rollouts) seqs.push_back(r.seq);
  m.forward(seqs, pass);
  const auto logp = m.completion_logprobs();
  std::vector<float> dlogp(logp.size());
  const rl::policy_batch batch{logp, {}, {}, adv, {}, {}, offsets, {}};
  const rl::loss_result result = rl::policy_loss(cpu, batch, std::span<float>(dlogp), opt.loss);
  m.backward(std::span<const float>(dlogp));
  return result;
}

/// Trigger GRPO: accumulates into trig.grads() the gradient of the policy loss over the
/// rollouts' decisions (rewards already penalised if the penalty is wanted).
inline rl::loss_result trigger_grpo_gradients(trigger& trig, std::span<const rollout> rollouts,
                                              std::span<const float> rewards, int group_size,
                                              const grpo_options& opt = {}, const pass_options& pass = {}) {
  constexpr const char* fn = "xplor::memory::trigger_grpo_gradients";
  std::vector<float> adv;
  std::vector<std::int64_t> offsets;
  broadcast_advantages(
      rewards, rollouts, group_size, opt, [](const rollout& r) { return r.decisions.actions.size(); }, adv,
      offsets, fn);
  rl::loss_result result;
  if (adv.empty()) return result;  // no eligible point anywhere: nothing to learn
  std::vector<decision_record> records;
  for (const rollout& r : rollouts)
    if (!r.decisions.actions.empty()) records.push_back(r.decisions);
  std::vector<std::int64_t> kept{0};  // sequences with at least one decision
  for (std::size_t i = 1; i < offsets.size(); ++i)
    if (offsets[i] != offsets[i - 1]) kept.push_back(offsets[i]);
  const auto logp = trig.forward(records, pass);
  std::vector<float> dlogp(logp.size());
  const rl::policy_batch batch{logp, {}, {}, adv, {}, {}, kept, {}};
  result = rl::policy_loss(cpu, batch, std::span<float>(dlogp), opt.loss);
  trig.backward(dlogp);
  return result;
}

}  // namespace xplor::memory
