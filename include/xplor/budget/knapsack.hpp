#pragma once
// Knapsack RL rollout budgets: how many rollouts each prompt gets so that a GRPO step sees as many
// non-zero gradients as possible. Li et al., "Knapsack RL: Unlocking Exploration of LLMs via
// Optimizing Budget Allocation", arXiv 2509.25849; reference code liziniu/KnapsackRL
// (verl/trainer/ppo/exploration_utils.py). Formulas, the concavity proof and the solvers: docs/budget.md.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>
#include <vector>

#include "xplor/core/config.hpp"
#include "xplor/core/error.hpp"

namespace xplor::budget {

/// Which exact solver `allocate_rollouts` runs. Both return an allocation of maximal total value.
enum class solver_kind {
  fast,  ///< threshold search over the non-increasing marginal gains: O(M + K) typical, K = B - M n_min
  dp,    ///< dynamic program over tasks x budget, O(M * K * (n_max - n_min)): the code's solve_by_dp
};

/// The cost estimate the reference code uses to decide its fallback (reference_compat only).
enum class cost_model {
  probability,  ///< log(1 - alpha) / log(max(p, 1 - p)): cost_estimation = "probability" (code default)
  expectation,  ///< 1 / (p (1 - p)) - 1, the paper's Theorem 1: cost_estimation = "expectation"
};

/// Options of `allocate_rollouts`. Defaults follow the paper's 7B recipe
/// (examples/knapsack_trainer/run_knapsack_grpo_7b.sh) and `sampling_budget_by_knapsack`.
struct allocation_options {
  int n_min = 2;    ///< N_low, fewest rollouts a prompt gets: min_n = 2 (paper §4, the 7B script)
  int n_max = 128;  ///< N_up, most rollouts a prompt gets: max_n = 128 (the 7B script)
  solver_kind solver = solver_kind::fast;  ///< the paper uses the DP; the fast solver is exact too
  /// Reproduce sampling_budget_by_knapsack (docs/methods.md §3.3): k = 0 extra rollouts scores 0 instead
  /// of Value(n_min), spare budget goes to p = 0 prompts (and prompts without estimates), prompts
  /// without estimates get floor(B / M). Off: the exact knapsack of docs/methods.md §7.3.
  bool reference_compat = false;
  double alpha = 0.9;                         ///< compat: probability-cost confidence, alpha = 0.9
  cost_model cost = cost_model::probability;  ///< compat: cost_estimation = "probability"
  bool allow_fallback = true;                 ///< compat: allow_fallback = True
};

namespace detail {

using xplor::detail::fail;
using xplor::detail::require;

inline constexpr std::string_view kAllocate = "xplor::budget::allocate_rollouts";

/// 1 - p^n - (1-p)^n for n >= 2, accurate near p = 0 and p = 1 (expm1/log1p); 0 for n <= 1.
inline double prob_nonzero_unchecked(int n, double p) noexcept {
  if (n <= 1 || p <= 0.0 || p >= 1.0) return 0.0;
  const double nd = n;
  if (p <= 0.5) return -std::expm1(nd * std::log1p(-p)) - std::pow(p, nd);
  const double q = 1.0 - p;  // exact for p >= 1/2 (Sterbenz)
  return -std::expm1(nd * std::log1p(-q)) - std::pow(q, nd);
}

XPLOR_HD inline double info_gain_unchecked(double p) noexcept {
  const double q = 1.0 - p;
  return p * q * q;
}

inline double value_unchecked(int n, double p) noexcept {
  return prob_nonzero_unchecked(n, p) * info_gain_unchecked(p);
}

inline void check_probability(std::string_view function, std::string_view argument, double p) {
  require(p >= 0.0 && p <= 1.0, function, argument, " = ", p, " is not a probability in [0, 1]");
}

inline void check_probabilities(std::string_view function, std::span<const double> p_hat,
                                std::span<const std::uint8_t> has_estimate = {}) {
  for (std::size_t i = 0; i < p_hat.size(); ++i) {
    if (!has_estimate.empty() && has_estimate[i] == 0) continue;  // no estimate: not read
    const double p = p_hat[i];
    require(p >= 0.0 && p <= 1.0, function, "p_hat[", i, "] = ", p, " is not a probability in [0, 1]");
  }
}

inline void check_bounds(std::string_view function, std::size_t m, std::int64_t total_budget, int n_min,
                         int n_max) {
  require(n_min >= 0, function, "n_min = ", n_min, " is negative");
  require(n_min <= n_max, function, "n_min = ", n_min, " exceeds n_max = ", n_max);
  const auto mm = static_cast<std::int64_t>(m);
  require(total_budget >= mm * n_min, function, "total_budget = ", total_budget, " is below M * n_min = ", mm,
          " * ", n_min, " = ", mm * n_min);
  require(total_budget <= mm * n_max, function, "total_budget = ", total_budget, " exceeds M * n_max = ", mm,
          " * ", n_max, " = ", mm * n_max);
}

// ------------------------------------------------------------------------------------------------
// The marginal gains of one task, g(k) = gain of its (n_min + k + 1)-th rollout, k = 0 .. L-1,
// L = n_max - n_min. They are non-increasing in k (docs/budget.md, "Concavity"), also in floating
// point: the powers p^m, q^m are running products, and rounding a product by a factor <= 1 never
// exceeds the previous value. Every pass of the fast solver recomputes them the same way, so ties
// compare bit for bit.

struct gain_walker {
  double w = 0, p = 0, q = 0, P = 1, Q = 1;  // tail gain w (P + Q), P = p^(n-1), Q = q^(n-1)
  double special = 0;                        // the first n_special gains (hull or compat head)
  int n_special = 0, k = 0;
  XPLOR_HD double next() noexcept {
    if (k < n_special) {
      ++k;
      return special;
    }
    ++k;
    const double v = w * (P + Q);
    P *= p;
    Q *= q;
    return v;
  }
};

/// The exact knapsack's gains of every task: plain data over a pointer, so the parallel solver
/// (budget/knapsack_parallel.hpp) copies it into device functors and walks the same products.
struct gain_rule {
  const double* p = nullptr;
  int n_min = 0, L = 0;
  bool zero = false;  // n_max <= 1: V(0) = V(1) = 0, every gain is 0
  bool hull = false;  // n_min == 0, n_max >= 2: gains 0 -> 1 -> 2 -> 3 replaced by their hull

  static gain_rule make(const double* p, int n_min, int n_max) noexcept {
    const bool zero = n_max <= 1;
    return gain_rule{p, n_min, n_max - n_min, zero, !zero && n_min == 0};
  }

  /// A walker whose first value is the tail gain Delta(n0).
  XPLOR_HD gain_walker tail(std::int64_t i, int n0) const noexcept {
    gain_walker g;
    g.p = p[i];
    g.q = 1.0 - g.p;
    g.w = zero ? 0.0 : info_gain_unchecked(g.p) * g.p * g.q;  // p^2 (1-p)^3
    for (int m = 1; m < n0; ++m) {
      g.P *= g.p;
      g.Q *= g.q;
    }
    return g;
  }

  XPLOR_HD gain_walker walker(std::int64_t i) const noexcept {
    if (zero) return tail(i, 1);
    if (hull) {  // gains at n = 0, 1, 2 all equal Delta(2) = w (p + q): the concave hull
      gain_walker g = tail(i, 3);
      g.special = g.w * (g.p + g.q);
      g.n_special = L < 3 ? L : 3;
      return g;
    }
    return tail(i, n_min);
  }

  /// True when every gain of task i is exactly 0 (p in {0, 1}, or underflow).
  XPLOR_HD bool all_zero(std::int64_t i) const noexcept {
    const gain_walker g = walker(i);
    return g.w == 0.0 && (g.n_special == 0 || g.special == 0.0);
  }
};

/// How the gains of every task are defined for one solve: the exact rule, or with the reference
/// code's gain of the first extra rollout (`head`).
struct gain_model {
  std::span<const double> p;
  gain_rule rule;
  int L = 0;
  bool hull = false;
  std::vector<double> head = {};  // reference gains (k = 0 scores 0): gain of the first extra rollout

  gain_model(std::span<const double> p_, int n_min, int n_max, bool reference_gain)
      : p(p_), rule(gain_rule::make(p_.data(), n_min, n_max)), L(rule.L), hull(rule.hull) {
    if (reference_gain && !rule.zero && n_min >= 1 && L >= 1) {
      // The code scores k extra rollouts Value(n_min + k) for k >= 1 and 0 for k = 0, so the
      // first extra rollout gains Value(n_min + 1). It is >= the next gain by a wide margin
      // (Value(n+1) >= Delta(1) = 2w >= Delta(n+1)); the max only guards rounding.
      head.resize(p.size());
      for (std::size_t i = 0; i < p.size(); ++i) {
        gain_walker t = rule.tail(static_cast<std::int64_t>(i), n_min + 1);
        head[i] = std::max(value_unchecked(n_min + 1, p[i]), t.next());
      }
    }
  }

  gain_walker walker(std::size_t i) const noexcept {
    const auto at = static_cast<std::int64_t>(i);
    if (head.empty()) return rule.walker(at);
    gain_walker g = rule.tail(at, rule.n_min + 1);
    g.special = head[i];
    g.n_special = 1;
    return g;
  }

  /// True when every gain of task i is exactly 0 (p in {0, 1}, or underflow).
  bool all_zero(std::size_t i) const noexcept {
    const gain_walker g = walker(i);
    return g.w == 0.0 && (g.n_special == 0 || g.special == 0.0);
  }
};

inline std::uint64_t splitmix64(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// The K-th largest of all M * L gains (with multiplicity), 1 <= K <= M * L. Keeps, per task, a
/// band [g_i, e_i) of positions whose gains lie strictly between those above and those below it;
/// narrows it with two pivots drawn from a uniform sample of the band (an exact count pass decides
/// which side holds the answer, every pass removes at least the pivots) and finishes with
/// nth_element once the band is small. The sample only affects speed, never the result.
inline double kth_largest_gain(const gain_model& model, std::int64_t K) {
  const std::size_t M = model.p.size();
  const int L = model.L;
  std::vector<int> g(M, 0), e(M, L);
  std::vector<unsigned char> zero(M);
  for (std::size_t i = 0; i < M; ++i) zero[i] = model.all_zero(i) ? 1 : 0;
  std::int64_t W = static_cast<std::int64_t>(M) * L, above = 0;
  const std::int64_t cap = std::max<std::int64_t>(std::int64_t{1} << 16, static_cast<std::int64_t>(M));
  std::uint64_t rng = 0x5eed'0b0d'9e7a'11c5ull;
  std::vector<int> c1(M), c2(M), c3(M), c4(M);
  std::vector<std::int64_t> positions = {};
  std::vector<double> sample = {};
  while (W > cap) {
    const std::int64_t r = K - above;  // rank of the answer inside the band, 1 <= r <= W
    // Uniform sample of band positions, mapped to (task, position) by one sweep.
    constexpr int S = 16384;
    positions.resize(S);
    for (auto& x : positions) x = static_cast<std::int64_t>(splitmix64(rng) % static_cast<std::uint64_t>(W));
    std::sort(positions.begin(), positions.end());
    sample.clear();
    std::int64_t acc = 0;
    std::size_t s = 0;
    for (std::size_t i = 0; i < M && s < positions.size(); ++i) {
      const int size = e[i] - g[i];
      if (size == 0) continue;
      gain_walker wk = model.walker(i);
      int at = 0;
      double v = 0;
      while (s < positions.size() && positions[s] < acc + size) {
        const int target = g[i] + static_cast<int>(positions[s] - acc);
        if (zero[i]) {
          v = 0.0;
        } else {
          while (at <= target) {
            v = wk.next();
            ++at;
          }
        }
        sample.push_back(v);
        ++s;
      }
      acc += size;
    }
    std::sort(sample.begin(), sample.end(), std::greater<>());
    const double f = static_cast<double>(r) / static_cast<double>(W);
    const double t = f * S, d = 3.0 * std::sqrt(S * f * (1.0 - f)) + 3.0;
    const auto clamp_index = [&](double x) {
      return static_cast<std::size_t>(std::clamp(x, 0.0, static_cast<double>(sample.size() - 1)));
    };
    const double a = sample[clamp_index(std::floor(t - d))];  // upper pivot
    const double b = sample[clamp_index(std::ceil(t + d))];   // lower pivot, b <= a
    // Exact counts of gains > a, >= a, > b, >= b per task (positions below g_i are above the band).
    std::int64_t A1 = 0, A2 = 0, B1 = 0, B2 = 0;
    for (std::size_t i = 0; i < M; ++i) {
      int n1 = g[i], n2 = g[i], n3 = g[i], n4 = g[i];
      if (g[i] < e[i]) {
        if (zero[i]) {  // band values are all 0 <= b <= a
          if (a <= 0.0) n2 = e[i];
          if (b <= 0.0) n4 = e[i];
        } else {
          gain_walker wk = model.walker(i);
          for (int k = 0; k < g[i]; ++k) wk.next();
          for (int k = g[i]; k < e[i]; ++k) {
            const double v = wk.next();
            if (v < b) break;
            if (v > a) n1 = k + 1;
            if (v >= a) n2 = k + 1;
            if (v > b) n3 = k + 1;
            n4 = k + 1;
          }
        }
      }
      c1[i] = n1;
      c2[i] = n2;
      c3[i] = n3;
      c4[i] = n4;
      A1 += n1;
      A2 += n2;
      B1 += n3;
      B2 += n4;
    }
    if (A2 >= K) {
      if (A1 < K) return a;
      e.swap(c1);  // the answer is above a: band [g, #> a)
    } else if (B2 >= K) {
      if (B1 < K) return b;
      g.swap(c2);  // a > answer > b: band [#>= a, #> b)
      e.swap(c3);
    } else {
      g.swap(c4);  // the answer is below b: band [#>= b, e)
    }
    W = 0, above = 0;
    for (std::size_t i = 0; i < M; ++i) W += e[i] - g[i], above += g[i];
  }
  std::vector<double> band = {};
  band.reserve(static_cast<std::size_t>(W));
  for (std::size_t i = 0; i < M; ++i) {
    if (g[i] >= e[i]) continue;
    if (zero[i]) {
      band.insert(band.end(), static_cast<std::size_t>(e[i] - g[i]), 0.0);
      continue;
    }
    gain_walker wk = model.walker(i);
    for (int k = 0; k < g[i]; ++k) wk.next();
    for (int k = g[i]; k < e[i]; ++k) band.push_back(wk.next());
  }
  const auto r = static_cast<std::size_t>(K - above);
  std::nth_element(band.begin(), band.begin() + static_cast<std::ptrdiff_t>(r - 1), band.end(),
                   std::greater<>());
  return band[r - 1];
}

/// Extra rollouts (beyond n_min) per task maximising the sum of the model's gains with exactly K
/// extra in total. Ties: see docs/budget.md ("Tie-breaking").
inline std::vector<int> fast_extras(const gain_model& model, std::int64_t K) {
  const std::size_t M = model.p.size();
  const int L = model.L;
  std::vector<int> extra(M, 0);
  if (K <= 0 || L == 0) return extra;
  if (K >= static_cast<std::int64_t>(M) * L) {
    std::fill(extra.begin(), extra.end(), L);
    return extra;
  }
  const double lambda = kth_largest_gain(model, K);
  // gt = #gains > lambda, eq = #gains == lambda (contiguous: the gains are non-increasing).
  std::vector<int> eq(M, 0);
  std::int64_t taken = 0;
  const bool dent_mode = model.hull && lambda > 0.0;
  double best_next = -1.0, best_last = std::numeric_limits<double>::infinity();
  std::size_t next_task = M, last_task = M;
  for (std::size_t i = 0; i < M; ++i) {
    int gt = 0, n_eq = 0;
    if (model.all_zero(i)) {
      if (lambda <= 0.0) n_eq = L;
    } else {
      gain_walker wk = model.walker(i);
      double prev = 0;
      int k = 0;
      for (; k < L; ++k) {
        const double v = wk.next();
        if (v < lambda) {
          // Candidate (b) of the hull repair: the best unit just below the threshold.
          if (dent_mode && gt >= 3 && n_eq == 0 && v > best_next) best_next = v, next_task = i;
          break;
        }
        if (v > lambda) {
          ++gt;
          prev = v;
        } else {
          ++n_eq;
        }
      }
      // Candidate (c): the cheapest selected unit that can be given back without leaving 1.
      if (dent_mode && gt >= 3 && prev < best_last) best_last = prev, last_task = i;
    }
    extra[i] = gt;
    eq[i] = n_eq;
    taken += gt;
  }
  std::int64_t R = K - taken;  // 1 <= R <= sum eq: units to hand out among the tied gains
  std::vector<std::size_t> tied = {};
  for (std::size_t i = 0; i < M; ++i)
    if (eq[i] > 0) tied.push_back(i);
  // In dent mode a task with gt == 0 and tied gains ("flat" task) sits on the hull segment 0..3:
  // it must not end at exactly one rollout (true value 0, hull value lambda).
  const auto flat = [&](std::size_t i) { return dent_mode && extra[i] == 0; };
  const auto base = [&](std::size_t i) { return flat(i) ? 0 : extra[i]; };
  const auto units = [&](std::size_t i, int level) -> int {
    if (flat(i)) return level >= 2 ? std::min(level, eq[i]) : 0;
    return std::clamp(level - extra[i], 0, eq[i]);
  };
  const auto filled = [&](int level) {
    std::int64_t s = 0;
    for (const std::size_t i : tied) s += units(i, level);
    return s;
  };
  int lo = 0, hi = L;  // largest level with filled(level) <= R
  while (lo < hi) {
    const int mid = lo + (hi - lo + 1) / 2;
    if (filled(mid) <= R)
      lo = mid;
    else
      hi = mid - 1;
  }
  const int level = lo;
  if (!dent_mode || level >= 2) {
    // Level filling: every tied task up to rollout position `level`, then one more rollout to the
    // lowest-index tasks that can still take one at that position.
    std::int64_t left = R;
    for (const std::size_t i : tied) left -= units(i, level);
    std::vector<int> add(tied.size());
    for (std::size_t j = 0; j < tied.size(); ++j) add[j] = units(tied[j], level);
    for (std::size_t j = 0; j < tied.size() && left > 0; ++j) {
      if (units(tied[j], level + 1) > add[j]) ++add[j], --left;
    }
    for (std::size_t j = 0; j < tied.size(); ++j) extra[tied[j]] = base(tied[j]) + add[j];
    return extra;
  }
  // Dent mode below level 2: only flat tasks take tied units, in pairs (0 -> 2), lowest index first.
  std::vector<std::size_t> flats, safe;
  for (const std::size_t i : tied) (flat(i) ? flats : safe).push_back(i);
  for (const std::size_t i : flats) extra[i] = 0;
  std::int64_t left = R;
  for (std::size_t j = 0; j < flats.size() && left >= 2; ++j) extra[flats[j]] = 2, left -= 2;
  if (left == 0) return extra;
  // One unit left over.
  if (R >= 3 && L >= 3) {  // a flat task with a pair takes a third (its gain is still lambda)
    extra[flats[0]] = 3;
    return extra;
  }
  if (!safe.empty()) {  // a tied unit of a task already past 2 rollouts
    ++extra[safe[0]];
    return extra;
  }
  // Forced: every way of placing the last unit among the tied gains leaves a task at 1. The optimum
  // is the best of (a) that, loss lambda; (b) the best unit below lambda on a task with >= 3, loss
  // lambda - next; (c) give back the cheapest unit above lambda of a task with >= 3 (it keeps >= 2)
  // and complete a flat pair, loss last - lambda (proof in docs/budget.md).
  const double loss_a = lambda;
  const double loss_b = next_task < M ? lambda - best_next : std::numeric_limits<double>::infinity();
  const double loss_c =
      (last_task < M && R == 1) ? best_last - lambda : std::numeric_limits<double>::infinity();
  if (R == 1 && loss_b < loss_a && loss_b <= loss_c) {
    ++extra[next_task];
  } else if (R == 1 && loss_c < loss_a && loss_c < loss_b) {
    --extra[last_task];
    extra[flats[0]] = 2;
  } else {
    // (a): the flat task after the last pair gets the odd unit.
    const auto j = static_cast<std::size_t>((R - 1) / 2);
    extra[flats[j]] = 1;
  }
  return extra;
}

/// Extra rollouts per task from the dynamic program: dp[j][b] = best value of the first j tasks
/// with b extra rollouts. Ties: the smallest k for the task at hand, as the code's `new_value >
/// dp[i][w]` does, reconstructed from the last task backwards.
inline std::vector<int> dp_extras(std::span<const double> p, std::int64_t K, int n_min, int n_max,
                                  bool reference_gain) {
  const std::size_t M = p.size();
  const int L = n_max - n_min;
  std::vector<int> extra(M, 0);
  if (M == 0 || K <= 0) return extra;
  const auto width = static_cast<std::size_t>(K) + 1;
  require(static_cast<double>(M) * static_cast<double>(width) <= static_cast<double>(std::int64_t{1} << 28),
          kAllocate, "the dynamic program needs M * (extra budget + 1) = ", M, " * ", width,
          " choice cells, more than 2^28; use solver_kind::fast");
  constexpr double ninf = -std::numeric_limits<double>::infinity();
  std::vector<double> prev(width, ninf), cur(width, ninf), gain(static_cast<std::size_t>(L) + 1);
  std::vector<int> choice(M * width, 0);
  prev[0] = 0.0;
  std::int64_t reach = 0;  // largest extra budget the first j tasks can use
  for (std::size_t j = 0; j < M; ++j) {
    for (int k = 0; k <= L; ++k)
      gain[static_cast<std::size_t>(k)] = (reference_gain && k == 0) ? 0.0 : value_unchecked(n_min + k, p[j]);
    reach = std::min<std::int64_t>(K, reach + L);
    int* ch = choice.data() + j * width;
    for (std::int64_t b = 0; b <= reach; ++b) {
      double best = ninf;
      int arg = 0;
      const int kmax = static_cast<int>(std::min<std::int64_t>(L, b));
      for (int k = 0; k <= kmax; ++k) {
        const double before = prev[static_cast<std::size_t>(b - k)];
        if (before == ninf) continue;
        const double v = before + gain[static_cast<std::size_t>(k)];
        if (v > best) best = v, arg = k;
      }
      cur[static_cast<std::size_t>(b)] = best;
      ch[b] = arg;
    }
    prev.swap(cur);
  }
  std::int64_t b = K;
  for (std::size_t j = M; j-- > 0;) {
    extra[j] = choice[j * width + static_cast<std::size_t>(b)];
    b -= extra[j];
  }
  return extra;
}

/// Exact extras for the tasks p (all with estimates): the chosen solver on the chosen gains.
inline std::vector<int> solve_extras(std::span<const double> p, std::int64_t K, int n_min, int n_max,
                                     bool reference_gain, solver_kind solver) {
  if (solver == solver_kind::dp) return dp_extras(p, K, n_min, n_max, reference_gain);
  return fast_extras(gain_model(p, n_min, n_max, reference_gain), K);
}

/// Splits `amount` over `who` as the code does: amount / |who| each, the first amount % |who| one more.
inline void split_evenly(std::vector<int>& n, const std::vector<std::size_t>& who, std::int64_t amount) {
  if (who.empty() || amount <= 0) return;
  const auto cnt = static_cast<std::int64_t>(who.size());
  const std::int64_t each = amount / cnt, rest = amount % cnt;
  for (std::size_t j = 0; j < who.size(); ++j)
    n[who[j]] += static_cast<int>(each + (static_cast<std::int64_t>(j) < rest ? 1 : 0));
}

}  // namespace detail

// ------------------------------------------------------------------------------------------------
// Formulas (docs/methods.md §3.1). p is a prompt's success rate, n its number of rollouts.

/// Probability that n Bernoulli(p) rewards hold a success and a failure, so that GRPO's group
/// advantage is non-zero: 1 - p^n - (1-p)^n for n >= 2, and 0 for n in {0, 1} (the literal formula
/// gives -1 at n = 0; no rollouts give no gradient). Throws for n < 0 or p outside [0, 1].
inline double prob_nonzero_gradient(int n, double p) {
  detail::require(n >= 0, "xplor::budget::prob_nonzero_gradient", "n = ", n, " is negative");
  detail::check_probability("xplor::budget::prob_nonzero_gradient", "p", p);
  return detail::prob_nonzero_unchecked(n, p);
}

/// The paper's Prop. 1 value of one GRPO step on a prompt: p (1-p)^2, at most 4/27 at p = 1/3.
inline double info_gain(double p) {
  detail::check_probability("xplor::budget::info_gain", "p", p);
  return detail::info_gain_unchecked(p);
}

/// Value(n, p) = prob_nonzero_gradient(n, p) * info_gain(p); 0 when p is 0 or 1.
inline double rollout_value(int n, double p) {
  detail::require(n >= 0, "xplor::budget::rollout_value", "n = ", n, " is negative");
  detail::check_probability("xplor::budget::rollout_value", "p", p);
  return detail::value_unchecked(n, p);
}

/// rollout_value(n + 1, p) - rollout_value(n, p) in closed form: p^2 (1-p)^3 (p^(n-1) + (1-p)^(n-1))
/// for n >= 1, and 0 for n = 0. Non-increasing in n for n >= 1 (not from n = 0 to 1).
inline double marginal_value(int n, double p) {
  detail::require(n >= 0, "xplor::budget::marginal_value", "n = ", n, " is negative");
  detail::check_probability("xplor::budget::marginal_value", "p", p);
  if (n == 0) return 0.0;
  const double q = 1.0 - p, m = n - 1;
  return detail::info_gain_unchecked(p) * p * q * (std::pow(p, m) + std::pow(q, m));
}

/// Theorem 1: expected rollouts until both a success and a failure have appeared,
/// 1 / (p (1-p)) - 1; +inf for p in {0, 1}. The code's "expectation" cost.
inline double expectation_cost(double p) {
  detail::check_probability("xplor::budget::expectation_cost", "p", p);
  if (p <= 0.0 || p >= 1.0) return std::numeric_limits<double>::infinity();
  return 1.0 / (p * (1.0 - p)) - 1.0;
}

/// The code's default "probability" cost: log(1 - alpha) / log(max(p, 1-p)), the n at which
/// 1 - max(p, 1-p)^n reaches alpha; +inf for p in {0, 1}. alpha must lie in (0, 1).
inline double probability_cost(double p, double alpha = 0.9) {
  detail::check_probability("xplor::budget::probability_cost", "p", p);
  detail::require(alpha > 0.0 && alpha < 1.0, "xplor::budget::probability_cost", "alpha = ", alpha,
                  " is outside (0, 1)");
  if (p <= 0.0 || p >= 1.0) return std::numeric_limits<double>::infinity();
  // For p < 2^-53 (or within it of 1), 1 - p rounds to 1: log(max(p, 1-p)) would be 0, the cost
  // -inf, and its conversion to a rollout count undefined. log1p(-min(p, 1-p)) keeps the small
  // term; elsewhere the formula is the code's, to the bit.
  const double q = std::max(p, 1.0 - p);
  return std::log1p(-alpha) / (q < 1.0 ? std::log(q) : std::log1p(-std::min(p, 1.0 - p)));
}

/// Objective of an allocation: sum_i rollout_value(n[i], p_hat[i]).
inline double allocation_value(std::span<const int> n, std::span<const double> p_hat) {
  constexpr std::string_view fn = "xplor::budget::allocation_value";
  detail::require(n.size() == p_hat.size(), fn, "n has ", n.size(), " entries but p_hat has ", p_hat.size());
  detail::check_probabilities(fn, p_hat);
  double total = 0;
  for (std::size_t i = 0; i < n.size(); ++i) {
    detail::require(n[i] >= 0, fn, "n[", i, "] = ", n[i], " is negative");
    total += detail::value_unchecked(n[i], p_hat[i]);
  }
  return total;
}

// ------------------------------------------------------------------------------------------------
// Solvers of the exact knapsack: maximise sum_i Value(N_i, p_i) s.t. sum_i N_i = total_budget,
// n_min <= N_i <= n_max. Both throw xplor::error for p outside [0, 1] (or NaN), n_min < 0,
// n_min > n_max, or total_budget outside [M * n_min, M * n_max].

/// The reference dynamic program, O(M * K * (n_max - n_min)) time and M * (K + 1) ints of memory,
/// K = total_budget - M * n_min (refused above 2^28 cells). Ties: smallest count for later tasks.
inline std::vector<int> knapsack_dp(std::span<const double> p_hat, std::int64_t total_budget, int n_min = 2,
                                    int n_max = 128) {
  constexpr std::string_view fn = "xplor::budget::knapsack_dp";
  detail::check_bounds(fn, p_hat.size(), total_budget, n_min, n_max);
  detail::check_probabilities(fn, p_hat);
  auto n = detail::dp_extras(p_hat, total_budget - static_cast<std::int64_t>(p_hat.size()) * n_min, n_min,
                             n_max, false);
  for (int& x : n) x += n_min;
  return n;
}

/// The fast exact solver: threshold search over the marginal gains (docs/budget.md). Ties: among
/// equal gains, the rollout at the lower position (count) first, then the lower task index, so
/// equal prompts get counts that differ by at most one, the extra ones to the lower indices.
inline std::vector<int> knapsack_fast(std::span<const double> p_hat, std::int64_t total_budget, int n_min = 2,
                                      int n_max = 128) {
  constexpr std::string_view fn = "xplor::budget::knapsack_fast";
  detail::check_bounds(fn, p_hat.size(), total_budget, n_min, n_max);
  detail::check_probabilities(fn, p_hat);
  auto n = detail::fast_extras(detail::gain_model(p_hat, n_min, n_max, false),
                               total_budget - static_cast<std::int64_t>(p_hat.size()) * n_min);
  for (int& x : n) x += n_min;
  return n;
}

/// Rollouts per prompt for a batch where some prompts have no success estimate yet
/// (has_estimate[i] == 0; their p_hat[i] is not read). Without reference_compat they get the uniform
/// share floor(B / M) (one more, lowest index first, only if the others cannot absorb the rest) and
/// the prompts with estimates share the rest optimally. With reference_compat the code's procedure
/// runs (docs/budget.md, "reference_compat"); it may exceed n_max as the code does.
inline std::vector<int> allocate_rollouts(std::span<const double> p_hat,
                                          std::span<const std::uint8_t> has_estimate,
                                          std::int64_t total_budget, const allocation_options& options = {}) {
  using detail::kAllocate;
  const int n_min = options.n_min, n_max = options.n_max;
  detail::require(has_estimate.empty() || has_estimate.size() == p_hat.size(), kAllocate, "has_estimate has ",
                  has_estimate.size(), " entries but p_hat has ", p_hat.size());
  detail::check_bounds(kAllocate, p_hat.size(), total_budget, n_min, n_max);
  detail::check_probabilities(kAllocate, p_hat, has_estimate);
  const std::size_t M = p_hat.size();
  const auto valid = [&](std::size_t i) { return has_estimate.empty() || has_estimate[i] != 0; };
  std::vector<int> n(M, 0);
  if (M == 0) return n;
  const auto MM = static_cast<std::int64_t>(M);
  const int uniform = static_cast<int>(total_budget / MM);  // in [n_min, n_max] by check_bounds

  if (!options.reference_compat) {
    std::vector<std::size_t> with, without;
    for (std::size_t i = 0; i < M; ++i) (valid(i) ? with : without).push_back(i);
    std::int64_t rest = total_budget - static_cast<std::int64_t>(without.size()) * uniform;
    const std::int64_t cap = static_cast<std::int64_t>(with.size()) * n_max;
    for (std::size_t j = 0; j < without.size(); ++j)
      n[without[j]] = uniform + (static_cast<std::int64_t>(j) < rest - cap ? 1 : 0);
    rest = std::min(rest, cap);
    std::vector<double> p(with.size());
    for (std::size_t j = 0; j < with.size(); ++j) p[j] = p_hat[with[j]];
    const auto extra = detail::solve_extras(p, rest - static_cast<std::int64_t>(with.size()) * n_min, n_min,
                                            n_max, false, options.solver);
    for (std::size_t j = 0; j < with.size(); ++j) n[with[j]] = n_min + extra[j];
    return n;
  }

  // reference_compat: sampling_budget_by_knapsack, step by step.
  const bool alpha_ok = options.alpha > 0.0 && options.alpha < 1.0;
  detail::require(alpha_ok, kAllocate, "options.alpha = ", options.alpha, " is outside (0, 1)");
  std::vector<std::size_t> effective, zero_like, others;
  std::vector<double> cost(M, 0.0);
  for (std::size_t i = 0; i < M; ++i) {
    if (!valid(i)) {
      n[i] = uniform;  // the code's n; floor(B / M) when B is not a multiple of M
    } else {
      const double p = p_hat[i];
      n[i] = n_min;  // min_n, negative_n and positive_n all default to min_n
      if (p > 0.0 && p < 1.0) {
        effective.push_back(i);
        cost[i] = options.cost == cost_model::probability ? probability_cost(p, options.alpha)
                                                          : expectation_cost(p);
      }
    }
    // Quirk: the code keeps success_rates = 0 for prompts without estimates, so its "p = 0"
    // prompts include them.
    if (!valid(i) || p_hat[i] == 0.0) zero_like.push_back(i);
    if (valid(i) && !(p_hat[i] > 0.0 && p_hat[i] < 1.0)) others.push_back(i);
  }
  std::int64_t R = total_budget;
  for (const int x : n) R -= x;
  if (R > 0 && effective.empty()) {
    if (!zero_like.empty()) {
      detail::split_evenly(n, zero_like, R);
    } else {  // the code sets every prompt to n; the remainder of B / M goes to the lowest indices
      std::fill(n.begin(), n.end(), uniform);
      for (std::int64_t i = 0; i < total_budget - MM * uniform; ++i) ++n[static_cast<std::size_t>(i)];
    }
    return n;
  }
  if (effective.empty()) return n;  // R == 0
  std::int64_t estimated = 0;
  for (const std::size_t i : effective)  // the code stores costs as float32 before int(min(max_n, cost))
    estimated += static_cast<std::int64_t>(std::min<double>(n_max, static_cast<float>(cost[i])));
  if (estimated < R && options.allow_fallback) {
    // Not effective = others plus prompts without estimates; zero_like is empty only if all those
    // are p = 1 prompts. When every prompt is effective the code divides by zero; we skip the fallback.
    std::vector<std::size_t> candidates = zero_like;
    if (candidates.empty()) candidates = others;
    if (!candidates.empty()) {
      detail::split_evenly(n, candidates, R - estimated);
      R = estimated;
    }
  }
  const int L = n_max - n_min;
  const std::int64_t usable = std::min<std::int64_t>(R, static_cast<std::int64_t>(effective.size()) * L);
  std::vector<double> p(effective.size());
  for (std::size_t j = 0; j < effective.size(); ++j) p[j] = p_hat[effective[j]];
  const auto extra = detail::solve_extras(p, usable, n_min, n_max, true, options.solver);
  for (std::size_t j = 0; j < effective.size(); ++j) n[effective[j]] += extra[j];
  detail::split_evenly(n, effective, R - usable);  // unreachable rest: uniformly over effective prompts
  return n;
}

/// Rollouts per prompt, every prompt with an estimate p_hat[i]. Maximises sum_i rollout_value(N_i,
/// p_hat[i]) exactly subject to sum_i N_i == total_budget and n_min <= N_i <= n_max (default), or
/// runs the reference code's procedure (options.reference_compat).
inline std::vector<int> allocate_rollouts(std::span<const double> p_hat, std::int64_t total_budget,
                                          const allocation_options& options = {}) {
  return allocate_rollouts(p_hat, std::span<const std::uint8_t>{}, total_budget, options);
}

}  // namespace xplor::budget
