// DeepSearch's scoring rules (Wu et al., "DeepSearch: Overcome the bottleneck of reinforcement
// learning with verifiable rewards via Monte Carlo tree search", arXiv 2509.25454; reference code
// smiles724/DeepSearch, deepsearch/utils/mcts.py): local UCT, the decayed sign-constrained
// backup (Eq. 4-5, 7), the global frontier score (Eq. 8-10), the tanh soft clip of node values
// and the mean-only sibling advantage. Formulas and defaults: docs/search.md.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "xplor/core/config.hpp"
#include "xplor/core/error.hpp"
#include "xplor/rl/advantage.hpp"

namespace xplor::search {

namespace kernels {
XPLOR_HD inline double uct(double q, std::int64_t n_parent, std::int64_t n, double lambda) {
  if (n_parent <= 0 || n <= 0) return q;  // no exploration term without visits (code: u = 0)
  return q + lambda * std::sqrt(std::log(static_cast<double>(n_parent)) / static_cast<double>(n));
}
XPLOR_HD inline double backup_weight(int depth, int traj_len, double floor) {
  const double w = static_cast<double>(depth + 1) / static_cast<double>(traj_len);
  return w > floor ? w : floor;
}
XPLOR_HD inline double constrained_update(double value, double v, double w) {
  if (value * v >= 0.0) return value + w * v;  // same sign (or zero): accumulate
  if (v > 0.0) return w * v;                   // a correct path resets a negative node
  return value;                                // positive node, negative update: unchanged
}
}  // namespace kernels

/// DeepSearch's backup rule as a functor (the default of tree::backup and search_params): a node
/// at `depth` on a trajectory of traj_len nodes gets constrained_update(value, v,
/// backup_weight(depth, traj_len, floor)).
struct decayed_constrained_backup {
  double floor = 0.1;
  XPLOR_HD double operator()(double value, double v, int depth, int traj_len) const {
    return kernels::constrained_update(value, v, kernels::backup_weight(depth, traj_len, floor));
  }
};

/// UCT(s) = Q(s) + lambda sqrt(ln N_parent / N(s)); the exploration term is 0 when either count
/// is 0 (mcts.py). DeepSearch's local selection uses lambda = lambda_puct = 2.0.
inline double uct_score(double q, std::int64_t n_parent, std::int64_t n, double lambda) {
  constexpr const char* fn = "xplor::search::uct_score";
  detail::require(std::isfinite(q), fn, "q = ", q, " is not finite");
  detail::require(n_parent >= 0 && n >= 0, fn, "visit counts n_parent = ", n_parent, ", n = ", n,
                  " must be >= 0");
  detail::require(std::isfinite(lambda) && lambda >= 0.0, fn, "lambda = ", lambda,
                  " must be finite and >= 0");
  return kernels::uct(q, n_parent, n, lambda);
}

/// The backup weight of the node at `depth` (root 0) on a trajectory of traj_len nodes:
/// max((depth + 1) / traj_len, floor) — 1 for the terminal node, 1/traj_len for the root
/// (paper gamma(i, l) = max(i / l, gamma_min); code backup_threshold = 0.1).
inline double backup_weight(int depth, int traj_len, double floor) {
  constexpr const char* fn = "xplor::search::backup_weight";
  detail::require(traj_len >= 1, fn, "traj_len = ", traj_len, " must be >= 1");
  detail::require(depth >= 0 && depth < traj_len, fn, "depth = ", depth,
                  " is outside [0, traj_len = ", traj_len, ")");
  detail::require(floor >= 0.0 && floor <= 1.0, fn, "floor = ", floor, " is outside [0, 1]");
  return kernels::backup_weight(depth, traj_len, floor);
}

/// Eq. 7 as in the code (MCTSNode.update): value + w v when value and v do not have opposite
/// signs; w v when v > 0 meets a negative value (a correct path resets the node); unchanged when
/// v < 0 meets a positive value (nodes on correct paths never turn negative).
inline double constrained_update(double value, double v, double w) {
  constexpr const char* fn = "xplor::search::constrained_update";
  detail::require(std::isfinite(value) && std::isfinite(v), fn, "value = ", value, " and v = ", v,
                  " must be finite");
  detail::require(std::isfinite(w) && w >= 0.0, fn, "w = ", w, " must be finite and >= 0");
  return kernels::constrained_update(value, v, w);
}

/// D(depth) of the frontier score: sqrt(d / d_T) (code default), d ("constant"), log(d + 1).
enum class depth_bonus { sqrt, constant, log };

/// Global frontier score weights (code defaults; the uncertainty term lambda2 is off unless
/// `uncertainty` is set, involve_uncertainty_bonus = False; the paper's ablation uses 0.4).
struct frontier_params {
  double lambda1 = 0.4;   // tanh(Q(parent))
  double lambda2 = 0.4;   // Hbar(s), only when uncertainty = true
  double lambda3 = 0.01;  // depth bonus
  double lambda4 = 0.0;   // tanh(Q(s))
  bool uncertainty = false;
  depth_bonus bonus = depth_bonus::sqrt;
  int max_depth = 64;  // d_T
};

namespace kernels {
XPLOR_HD inline double frontier_score(double q_parent, double q_node, double mean_entropy, int depth,
                                      const frontier_params& p) {
  double d = 0.0;
  switch (p.bonus) {
    case depth_bonus::sqrt:
      d = std::sqrt(static_cast<double>(depth) / p.max_depth);
      break;
    case depth_bonus::constant:
      d = static_cast<double>(depth);
      break;
    case depth_bonus::log:
      d = std::log(static_cast<double>(depth) + 1.0);
      break;
  }
  double f = p.lambda1 * std::tanh(q_parent) + p.lambda4 * std::tanh(q_node) + p.lambda3 * d;
  if (p.uncertainty) f += p.lambda2 * mean_entropy;
  return f;
}
}  // namespace kernels

/// F(s) = l1 tanh(Q(parent)) + l4 tanh(Q(s)) + l2 Hbar(s) [if uncertainty] + l3 D(depth), with
/// Hbar(s) = -mean log p over the node's own chunk.
inline double frontier_score(double q_parent, double q_node, double mean_entropy, int depth,
                             const frontier_params& p = {}) {
  constexpr const char* fn = "xplor::search::frontier_score";
  detail::require(std::isfinite(q_parent) && std::isfinite(q_node) && std::isfinite(mean_entropy), fn,
                  "q_parent = ", q_parent, ", q_node = ", q_node, ", mean_entropy = ", mean_entropy,
                  " must be finite");
  detail::require(depth >= 0, fn, "depth = ", depth, " is negative");
  detail::require(p.max_depth >= 1, fn, "max_depth = ", p.max_depth, " must be >= 1");
  return kernels::frontier_score(q_parent, q_node, mean_entropy, depth, p);
}

/// DeepSearch's frontier score as a functor (Q(parent), Q(s), mean entropy, depth) -> F, for the
/// tree operations on either backend (frontier_params checked where it is built: search_params).
struct frontier_scorer {
  frontier_params p{};
  XPLOR_HD double operator()(double q_parent, double q_node, double mean_entropy, int depth) const {
    return kernels::frontier_score(q_parent, q_node, mean_entropy, depth, p);
  }
};

/// Node values enter the loss soft-clipped: tanh(value / temperature) * q_max
/// (sglang_mcts_wrapper.py; adv_temperature and q_value_max, both 1 by default).
inline double soft_clip(double value, double temperature = 1.0, double q_max = 1.0) {
  constexpr const char* fn = "xplor::search::soft_clip";
  detail::require(std::isfinite(value), fn, "value = ", value, " is not finite");
  detail::require(std::isfinite(temperature) && temperature > 0.0, fn, "temperature = ", temperature,
                  " must be positive");
  detail::require(std::isfinite(q_max) && q_max > 0.0, fn, "q_max = ", q_max, " must be positive");
  return std::tanh(value / temperature) * q_max;
}

/// Mean-only sibling advantage (advantage_fn.py): every segment's advantage is its soft-clipped
/// q-value minus the mean terminal score of the trajectories collected for the prompt, with no
/// division by a standard deviation (rl::group_baseline with scale_rewards::none). Writes one
/// advantage per segment q.
inline void mean_only_advantages(std::span<const double> terminal_scores, std::span<const double> segment_q,
                                 std::span<double> out) {
  constexpr const char* fn = "xplor::search::mean_only_advantages";
  detail::require(!terminal_scores.empty(), fn, "terminal_scores is empty");
  detail::require(out.size() == segment_q.size(), fn, "out has ", out.size(), " elements for ",
                  segment_q.size(), " segments");
  rl::advantage_options mean_only;
  mean_only.scale = rl::scale_rewards::none;
  const rl::group_baseline baseline = rl::make_group_baseline(terminal_scores, mean_only);
  for (std::size_t i = 0; i < segment_q.size(); ++i) {
    detail::require(std::isfinite(segment_q[i]), fn, "segment_q[", i, "] = ", segment_q[i], " is not finite");
    out[i] = baseline.advantage(segment_q[i]);
  }
}

}  // namespace xplor::search
