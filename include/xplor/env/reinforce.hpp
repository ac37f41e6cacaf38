// REINFORCE with Return Batch Normalization (ReBN; GEM, arXiv 2510.01051 §3, code
// examples/train_oat/train_oat.py; docs/methods.md §5.4): a collector that runs a vector_env with a
// batched policy until N episodes are complete, records every transition, computes discounted
// returns per episode (xplor::rl::discounted_returns) and ReBN advantages over all transitions of
// the batch (xplor::rl::rebn_advantages), and spreads each transition's advantage over the tokens
// of its response for the loss -A log pi(a|s).
//
//   G_t = r_t + gamma G_{t+1}                       (per episode, backwards)
//   A_t = (G_t - mean(G)) / (std(G) + 1e-9)         (all turns of all episodes; population std)
//   token advantage = A_t on every token of turn t's response
//
// norm_return = false gives vanilla REINFORCE (A_t = G_t). Formulas and notes:
// docs/env_reinforce.md.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/env/env.hpp"
#include "xplor/env/vector_env.hpp"
#include "xplor/rl/advantage.hpp"

namespace xplor::env {

/// The batched policy: one response per observation, in environment order.
using batched_policy = std::function<std::vector<std::string>(std::span<const std::string> observations)>;

/// What happens to episodes still running when the N-th episode completes.
enum class incomplete_episodes {
  /// Dropped (counted in reinforce_batch::discarded_transitions). Cheapest, but the batch then
  /// over-represents short episodes when M environments race to N completions. Episodes that
  /// complete on the same step as the N-th are all kept (the batch may hold more than N).
  discard,
  /// Stepped on until they end and kept (the batch may hold up to N + M - 1 episodes); episodes
  /// started after the N-th completion are not recorded. No length bias; costs extra steps.
  finish,
};

struct reinforce_options {
  std::int64_t episodes = 8;  // complete episodes per batch (N)
  float gamma = 1.0f;         // discount, in [0, 1] (train_oat.py's default 1.0; GEM uses 0.9 too)
  bool norm_return = true;    // ReBN; false: vanilla REINFORCE, A = G
  rl::rebn_options rebn;      // eps 1e-9, population std, optional all-reduce across ranks
  incomplete_episodes incomplete = incomplete_episodes::discard;
  std::int64_t max_steps = 1000000;  // vector steps per collect() before it gives up (xplor::error)
  /// Threads for the returns and ReBN (xplor::cpu_t: 0 = OpenMP's default, 1 = serial). Results
  /// do not depend on it; on small batches, 1 avoids the cost of a parallel region.
  cpu_t exec{};
};

/// One turn of one episode.
struct transition {
  std::int64_t env_index = 0;    // sub-environment of the vector env
  std::int64_t episode = 0;      // episode id in the batch (order of completion; ties by env index)
  std::int64_t turn = 0;         // 0-based turn within the episode
  std::string observation = {};  // what the policy saw
  std::string action = {};       // the policy's whole response
  float reward = 0.0f;
  bool terminated = false;
  bool truncated = false;
};

/// A collected batch. Transitions are grouped by episode (episode e covers
/// [episode_offsets[e], episode_offsets[e+1])), turns in order; returns and advantages are per
/// transition.
struct reinforce_batch {
  std::vector<transition> transitions = {};
  std::vector<std::int64_t> episode_offsets{0};
  std::vector<float> returns = {};         // G_t
  std::vector<float> advantages = {};      // A_t (ReBN, or G_t when norm_return = false)
  rl::advantage_report report;             // batch mean and std of the returns (zero without ReBN)
  std::int64_t discarded_transitions = 0;  // turns of incomplete episodes dropped at the end
  std::int64_t vector_steps = 0;           // vector_env::step calls made

  std::int64_t num_episodes() const { return static_cast<std::int64_t>(episode_offsets.size()) - 1; }
  std::int64_t num_transitions() const { return static_cast<std::int64_t>(transitions.size()); }
  /// Turns of episode e.
  std::int64_t episode_length(std::int64_t e) const {
    check_episode(e, "xplor::env::reinforce_batch::episode_length");
    return episode_offsets[e + 1] - episode_offsets[e];
  }
  /// Undiscounted sum of the rewards of episode e.
  double episode_reward(std::int64_t e) const {
    check_episode(e, "xplor::env::reinforce_batch::episode_reward");
    double s = 0.0;
    for (std::int64_t t = episode_offsets[e]; t < episode_offsets[e + 1]; ++t) s += transitions[t].reward;
    return s;
  }
  /// The last transition of episode e (terminated / truncated tell how it ended).
  const transition& episode_end(std::int64_t e) const {
    check_episode(e, "xplor::env::reinforce_batch::episode_end");
    return transitions[episode_offsets[e + 1] - 1];
  }

  /// Offsets of each transition's tokens in the flat token array: token_offsets[k] =
  /// token_counts[0] + ... + token_counts[k-1] (size num_transitions() + 1).
  std::vector<std::int64_t> token_offsets(std::span<const std::int64_t> token_counts) const {
    constexpr const char* fn = "xplor::env::reinforce_batch::token_offsets";
    check_counts(token_counts, fn);
    std::vector<std::int64_t> offsets(token_counts.size() + 1, 0);
    for (std::size_t k = 0; k < token_counts.size(); ++k) offsets[k + 1] = offsets[k] + token_counts[k];
    return offsets;
  }

  /// Per-token advantages: transition k's advantage on each of its token_counts[k] response
  /// tokens, transitions in batch order (the same A on every token of a turn, train_oat.py).
  void token_advantages(std::span<const std::int64_t> token_counts, std::span<float> out) const {
    constexpr const char* fn = "xplor::env::reinforce_batch::token_advantages";
    check_counts(token_counts, fn);
    std::int64_t total = 0;
    for (const auto c : token_counts) total += c;
    xplor::detail::require(static_cast<std::int64_t>(out.size()) == total, fn, "out has ", out.size(),
                           " elements for ", total, " tokens");
    std::size_t p = 0;
    for (std::size_t k = 0; k < token_counts.size(); ++k)
      for (std::int64_t j = 0; j < token_counts[k]; ++j) out[p++] = advantages[k];
  }
  std::vector<float> token_advantages(std::span<const std::int64_t> token_counts) const {
    const auto offsets = token_offsets(token_counts);
    std::vector<float> out(static_cast<std::size_t>(offsets.back()));
    token_advantages(token_counts, out);
    return out;
  }

 private:
  void check_episode(std::int64_t e, const char* fn) const {
    xplor::detail::require(e >= 0 && e < num_episodes(), fn, "episode = ", e, " is outside [0, ",
                           num_episodes(), ")");
  }
  void check_counts(std::span<const std::int64_t> token_counts, const char* fn) const {
    xplor::detail::require(token_counts.size() == transitions.size(), fn, "token_counts has ",
                           token_counts.size(), " elements for ", transitions.size(), " transitions");
    for (std::size_t k = 0; k < token_counts.size(); ++k)
      xplor::detail::require(token_counts[k] >= 0, fn, "token_counts[", k, "] = ", token_counts[k],
                             " is negative");
  }
};

namespace detail {
inline void check_options(const reinforce_options& o, const char* fn) {
  xplor::detail::require(o.episodes > 0, fn, "options.episodes = ", o.episodes, " must be positive");
  xplor::detail::require(std::isfinite(o.gamma) && o.gamma >= 0.0f && o.gamma <= 1.0f, fn,
                         "options.gamma = ", o.gamma, " is outside [0, 1]");
  xplor::detail::require(std::isfinite(o.rebn.eps) && o.rebn.eps >= 0.0f, fn,
                         "options.rebn.eps = ", o.rebn.eps, " must be finite and >= 0");
  xplor::detail::require(o.max_steps > 0, fn, "options.max_steps = ", o.max_steps, " must be positive");
  xplor::detail::require(o.exec.num_threads >= 0, fn, "options.exec.num_threads = ", o.exec.num_threads,
                         " is negative");
}
}  // namespace detail

/// Returns and advantages of a batch whose rewards and episode offsets are set (what collect()
/// does after stepping; usable on transitions gathered elsewhere). Fills batch.returns,
/// batch.advantages and batch.report.
inline void compute_advantages(reinforce_batch& batch, const reinforce_options& options) {
  constexpr const char* fn = "xplor::env::compute_advantages";
  detail::check_options(options, fn);
  std::vector<float> rewards(batch.transitions.size());
  for (std::size_t k = 0; k < rewards.size(); ++k) rewards[k] = batch.transitions[k].reward;
  batch.returns.assign(rewards.size(), 0.0f);
  rl::discounted_returns(options.exec, std::span<const float>(rewards),
                         std::span<const std::int64_t>(batch.episode_offsets), options.gamma,
                         std::span<float>(batch.returns));
  batch.advantages.assign(rewards.size(), 0.0f);
  if (options.norm_return) {
    batch.report = rl::rebn_advantages(options.exec, std::span<const float>(batch.returns),
                                       std::span<float>(batch.advantages), options.rebn);
  } else {
    batch.advantages = batch.returns;
    batch.report = rl::advantage_report{};
  }
}

/// Runs a vector_env with a batched policy and collects REINFORCE + ReBN batches.
///
/// collect(policy, seed) resets the vector env with `seed` (sub-environment i: seed + i, later
/// episodes env::episode_seed), then repeatedly calls policy(observations) and steps every
/// environment with its response, keeping each environment's partial episode across steps, until
/// at least options.episodes episodes are complete. Finished episodes must reset on the same step
/// (autoreset_mode::same_step, GEM's default). Incomplete episodes are then handled as
/// options.incomplete says. Every batch starts from a reset, so all its episodes come from the
/// policy passed to that call (on-policy). The result depends only on the seed, the policy and
/// the environments, never on the vector env's thread count.
class reinforce_collector {
 public:
  reinforce_collector(vector_env& envs, const reinforce_options& options = {})
      : envs_(&envs), options_(options) {
    constexpr const char* fn = "xplor::env::reinforce_collector";
    detail::check_options(options_, fn);
    xplor::detail::require(envs.options().autoreset == autoreset_mode::same_step, fn,
                           "the vector env must use autoreset_mode::same_step");
  }

  const reinforce_options& options() const { return options_; }

  /// One batch; `policy` is invocable as std::vector<std::string>(std::span<const std::string>)
  /// (a batched_policy or any callable) and must return one response per environment.
  template <class Policy>
  reinforce_batch collect(Policy&& policy, std::uint64_t seed) {
    static_assert(std::is_invocable_r_v<std::vector<std::string>, Policy&, std::span<const std::string>>,
                  "policy must be callable as std::vector<std::string>(std::span<const std::string>)");
    constexpr const char* fn = "xplor::env::reinforce_collector::collect";
    const std::size_t m = envs_->size();
    reinforce_batch batch;
    batch.transitions.reserve(last_transitions_);
    std::vector<std::vector<transition>> partial(m);
    std::vector<std::uint8_t> recording(m, 1);  // finish mode: only episodes started before the end
    std::int64_t complete = 0;
    bool reached = false;
    std::vector<std::string> observations = envs_->reset(seed).observations;
    for (;;) {
      if (reached) {
        bool any = false;
        for (std::size_t i = 0; i < m; ++i) any = any || (recording[i] && !partial[i].empty());
        if (!any) break;
      }
      xplor::detail::require(batch.vector_steps < options_.max_steps, fn,
                             "no batch after options.max_steps = ", options_.max_steps, " vector steps (",
                             complete, " of ", options_.episodes, " episodes complete)");
      std::vector<std::string> actions = policy(std::span<const std::string>(observations));
      xplor::detail::require(actions.size() == m, fn, "the policy returned ", actions.size(), " actions for ",
                             m, " observations");
      vector_step_result r = envs_->step(std::span<const std::string>(actions));
      ++batch.vector_steps;
      for (std::size_t i = 0; i < m; ++i) {
        const bool done = r.terminated[i] || r.truncated[i];
        if (recording[i]) {
          transition t;
          t.env_index = static_cast<std::int64_t>(i);
          t.turn = static_cast<std::int64_t>(partial[i].size());
          t.observation = std::move(observations[i]);
          t.action = std::move(actions[i]);
          t.reward = r.rewards[i];
          t.terminated = r.terminated[i] != 0;
          t.truncated = r.truncated[i] != 0;
          partial[i].push_back(std::move(t));
          if (done) {
            const std::int64_t id = batch.num_episodes();
            for (auto& tr : partial[i]) {
              tr.episode = id;
              batch.transitions.push_back(std::move(tr));
            }
            partial[i].clear();
            batch.episode_offsets.push_back(static_cast<std::int64_t>(batch.transitions.size()));
            ++complete;
          }
        }
        // After the N-th completion no new episode is recorded (discard mode stops right away).
        if (reached && done) recording[i] = 0;
      }
      observations = std::move(r.observations);
      if (!reached && complete >= options_.episodes) {
        reached = true;
        if (options_.incomplete == incomplete_episodes::discard) break;
        // Environments whose episode ended on this very step start a fresh episode: not recorded.
        for (std::size_t i = 0; i < m; ++i)
          if (partial[i].empty()) recording[i] = 0;
      }
    }
    for (const auto& p : partial) batch.discarded_transitions += static_cast<std::int64_t>(p.size());
    compute_advantages(batch, options_);
    last_transitions_ = batch.transitions.size();
    return batch;
  }

 private:
  vector_env* envs_;
  reinforce_options options_;
  std::size_t last_transitions_ = 0;  // capacity hint: the previous batch's size
};

}  // namespace xplor::env
