// The exact rollout allocator of budget/knapsack.hpp on either backend: allocate_rollouts(exec,
// ...) with xplor::cpu (OpenMP threads) or xplor::device (Thrust: the GPU under nvcc). The fast
// solver's threshold search becomes a few passes over the tasks (a sampled pivot pair, an exact
// count, a scan), each a for_each_index, transform_reduce or scan_offsets of core/exec.hpp, so a
// million tasks never leave the device except for a sample of 16,384 gains and a final band of at
// most 65,536. The gains are the same running products as the host solver's (multiplications
// only: bit-identical on every backend), the threshold is the exact K-th largest gain, and the
// ties are broken by the same rules (docs/budget.md, "Tie-breaking"), so the allocation equals
// knapsack_fast / allocate_rollouts element for element on every instance.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "xplor/budget/knapsack.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/core/numerics.hpp"

namespace xplor::budget {

namespace kernels {

using detail::gain_rule;
using detail::gain_walker;

/// Tied units task i takes when every tied task is filled up to rollout position `level`
/// (fast_extras' `units`): gt gains above the threshold, eq equal to it; in dent mode a task with
/// no gain above ("flat") takes its tied units only in twos or more.
XPLOR_HD inline int tied_units(int gt, int eq, bool dent_mode, int level) {
  if (eq == 0) return 0;
  if (dent_mode && gt == 0) return level >= 2 ? (level < eq ? level : eq) : 0;
  const int u = level - gt;
  return u < 0 ? 0 : (u > eq ? eq : u);
}

/// Index of p outside [0, 1] (or NaN) among the tasks with an estimate, else -1.
struct bad_probability_at {
  const double* p;
  const std::uint8_t* has;  // null: every task has an estimate
  XPLOR_HD std::int64_t operator()(std::int64_t i) const {
    if (has != nullptr && has[i] == 0) return -1;
    return p[i] >= 0.0 && p[i] <= 1.0 ? -1 : i;
  }
};

struct has_estimate_at {
  const std::uint8_t* has;
  XPLOR_HD std::int64_t operator()(std::int64_t i) const { return has[i] != 0 ? 1 : 0; }
};

/// p_with[slot[i]] = p[i] for the tasks with an estimate (slot = their scan offsets).
struct gather_estimates {
  const double* p;
  const std::uint8_t* has;
  const std::int64_t* slot;
  double* p_with;
  XPLOR_HD void operator()(std::int64_t i) const {
    if (has[i] != 0) p_with[slot[i]] = p[i];
  }
};

/// The final counts: n_min + extra for tasks with an estimate, the uniform share (one more for the
/// first `bonus` tasks without) for the others.
struct write_counts {
  const std::uint8_t* has;   // null: every task has an estimate
  const std::int64_t* slot;  // scan offsets of has (null with has)
  const int* extra;
  int n_min, uniform;
  std::int64_t bonus;
  int* out;
  XPLOR_HD void operator()(std::int64_t i) const {
    if (has == nullptr) {
      out[i] = n_min + extra[i];
    } else if (has[i] != 0) {
      out[i] = n_min + extra[slot[i]];
    } else {
      out[i] = uniform + (i - slot[i] < bonus ? 1 : 0);
    }
  }
};

struct fill_int {
  int* out;
  int value;
  XPLOR_HD void operator()(std::int64_t i) const { out[i] = value; }
};

struct add_at {
  int* out;
  std::int64_t i;
  int delta;
  XPLOR_HD void operator()(std::int64_t) const { out[i] += delta; }
};

// ---- the K-th largest gain --------------------------------------------------------------------

/// Per task, the band [g, e) of gain positions still undecided.
struct band_size {
  const int* g;
  const int* e;
  XPLOR_HD std::int64_t operator()(std::int64_t i) const { return e[i] - g[i]; }
};

/// The gains at uniformly drawn band positions (offsets: scan of the band sizes).
struct sample_band {
  gain_rule rule;
  const int* g;
  const std::int64_t* offsets;
  std::int64_t tasks;
  const std::int64_t* positions;
  double* out;
  XPLOR_HD void operator()(std::int64_t s) const {
    const std::int64_t pos = positions[s];
    std::int64_t lo = 0, hi = tasks;  // offsets[lo] <= pos < offsets[hi]: task lo holds pos
    while (hi - lo > 1) {
      const std::int64_t mid = lo + (hi - lo) / 2;
      if (offsets[mid] <= pos)
        lo = mid;
      else
        hi = mid;
    }
    const auto target = g[lo] + static_cast<int>(pos - offsets[lo]);
    gain_walker wk = rule.walker(lo);
    double v = 0.0;
    for (int k = 0; k <= target; ++k) v = wk.next();
    out[s] = v;
  }
};

/// Per task, the positions with gains > a, >= a, > b, >= b (b <= a), counting the positions
/// below the band (they are above it): kth_largest_gain's exact count pass.
struct count_band {
  gain_rule rule;
  const int* g;
  const int* e;
  double a, b;
  int *c1, *c2, *c3, *c4;
  XPLOR_HD void operator()(std::int64_t i) const {
    int n1 = g[i], n2 = g[i], n3 = g[i], n4 = g[i];
    if (g[i] < e[i]) {
      if (rule.all_zero(i)) {  // band values are all 0 <= b <= a
        if (a <= 0.0) n2 = e[i];
        if (b <= 0.0) n4 = e[i];
      } else {
        gain_walker wk = rule.walker(i);
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
  }
};

struct four_counts {
  std::int64_t c[4];
};
struct add_four {
  XPLOR_HD four_counts operator()(four_counts x, const four_counts& y) const {
    for (int j = 0; j < 4; ++j) x.c[j] += y.c[j];
    return x;
  }
};
struct read_four {
  const int *c1, *c2, *c3, *c4;
  XPLOR_HD four_counts operator()(std::int64_t i) const { return {{c1[i], c2[i], c3[i], c4[i]}}; }
};
/// (band width, positions above the band) summed: c[0] = sum (e - g), c[1] = sum g.
struct read_band {
  const int* g;
  const int* e;
  XPLOR_HD four_counts operator()(std::int64_t i) const { return {{e[i] - g[i], g[i], 0, 0}}; }
};

/// Every band gain, packed at the task's scan offset.
struct gather_band {
  gain_rule rule;
  const int* g;
  const int* e;
  const std::int64_t* offsets;
  double* out;
  XPLOR_HD void operator()(std::int64_t i) const {
    if (g[i] >= e[i]) return;
    gain_walker wk = rule.walker(i);
    for (int k = 0; k < g[i]; ++k) wk.next();
    double* dst = out + offsets[i];
    for (int k = g[i]; k < e[i]; ++k) *dst++ = wk.next();
  }
};

// ---- the allocation at the threshold -------------------------------------------------------------

/// Per task: gt gains > lambda, eq gains == lambda, and the two dent-mode repair candidates of
/// fast_extras (the best unit just below lambda, the cheapest unit above it; -1 / +inf: none).
struct threshold_pass {
  gain_rule rule;
  double lambda;
  bool dent_mode;
  int* gt;
  int* eq;
  double* next_unit;
  double* last_unit;
  XPLOR_HD void operator()(std::int64_t i) const {
    int n_gt = 0, n_eq = 0;
    double next = -1.0, last = std::numeric_limits<double>::infinity();
    if (rule.all_zero(i)) {
      if (lambda <= 0.0) n_eq = rule.L;
    } else {
      gain_walker wk = rule.walker(i);
      double prev = 0;
      for (int k = 0; k < rule.L; ++k) {
        const double v = wk.next();
        if (v < lambda) {
          if (dent_mode && n_gt >= 3 && n_eq == 0) next = v;
          break;
        }
        if (v > lambda) {
          ++n_gt;
          prev = v;
        } else {
          ++n_eq;
        }
      }
      if (dent_mode && n_gt >= 3) last = prev;
    }
    gt[i] = n_gt;
    eq[i] = n_eq;
    next_unit[i] = next;
    last_unit[i] = last;
  }
};

/// Units above the threshold, the largest candidate below it and the smallest above it, ties to
/// the lowest task index (the host loop's strict comparisons in index order).
struct threshold_summary {
  std::int64_t taken;
  double next;
  std::int64_t next_task;
  double last;
  std::int64_t last_task;
};
struct merge_summary {
  XPLOR_HD threshold_summary operator()(threshold_summary x, const threshold_summary& y) const {
    x.taken += y.taken;
    if (y.next > x.next || (y.next == x.next && y.next_task < x.next_task))
      x.next = y.next, x.next_task = y.next_task;
    if (y.last < x.last || (y.last == x.last && y.last_task < x.last_task))
      x.last = y.last, x.last_task = y.last_task;
    return x;
  }
};
struct read_summary {
  const int* gt;
  const double* next_unit;
  const double* last_unit;
  std::int64_t none;  // the task index of "no candidate"
  XPLOR_HD threshold_summary operator()(std::int64_t i) const {
    constexpr double inf = std::numeric_limits<double>::infinity();
    return {gt[i], next_unit[i], next_unit[i] < 0.0 ? none : i, last_unit[i], last_unit[i] == inf ? none : i};
  }
};

struct units_at_level {
  const int* gt;
  const int* eq;
  bool dent_mode;
  int level;
  XPLOR_HD std::int64_t operator()(std::int64_t i) const {
    return tied_units(gt[i], eq[i], dent_mode, level);
  }
};

/// 1 when a tied task can take one more unit at position level + 1.
struct takes_one_more {
  const int* gt;
  const int* eq;
  bool dent_mode;
  int level;
  XPLOR_HD std::int64_t operator()(std::int64_t i) const {
    return tied_units(gt[i], eq[i], dent_mode, level + 1) > tied_units(gt[i], eq[i], dent_mode, level) ? 1
                                                                                                       : 0;
  }
};

/// Level filling: every tied task up to `level`, one more to the first `left` that can take it.
struct fill_to_level {
  const int* gt;
  const int* eq;
  bool dent_mode;
  int level;
  const std::int64_t* before;  // scan of takes_one_more
  std::int64_t left;
  int* extra;
  XPLOR_HD void operator()(std::int64_t i) const {
    const int base = (dent_mode && gt[i] == 0 && eq[i] > 0) ? 0 : gt[i];
    const int u = tied_units(gt[i], eq[i], dent_mode, level);
    const bool one = tied_units(gt[i], eq[i], dent_mode, level + 1) > u && before[i] < left;
    extra[i] = base + u + (one ? 1 : 0);
  }
};

/// Dent mode: tied tasks without a gain above the threshold ("flat") and the other tied ones.
struct is_flat {
  const int* gt;
  const int* eq;
  XPLOR_HD std::int64_t operator()(std::int64_t i) const { return eq[i] > 0 && gt[i] == 0 ? 1 : 0; }
};
/// Index of the j-th flat task (M when there is none), reduced with min.
struct flat_number {
  const int* gt;
  const int* eq;
  const std::int64_t* before;  // scan of is_flat
  std::int64_t j, none;
  XPLOR_HD std::int64_t operator()(std::int64_t i) const {
    return eq[i] > 0 && gt[i] == 0 && before[i] == j ? i : none;
  }
};
struct first_safe {
  const int* gt;
  const int* eq;
  std::int64_t none;
  XPLOR_HD std::int64_t operator()(std::int64_t i) const { return eq[i] > 0 && gt[i] > 0 ? i : none; }
};
struct add_counts {
  XPLOR_HD std::int64_t operator()(std::int64_t a, std::int64_t b) const { return a + b; }
};
struct min_index {
  XPLOR_HD std::int64_t operator()(std::int64_t a, std::int64_t b) const { return a < b ? a : b; }
};
/// Flat tasks take pairs in index order (the first `pairs` of them), the others keep gt.
struct fill_pairs {
  const int* gt;
  const int* eq;
  const std::int64_t* before;
  std::int64_t pairs;
  int* extra;
  XPLOR_HD void operator()(std::int64_t i) const {
    const bool flat = eq[i] > 0 && gt[i] == 0;
    extra[i] = flat ? (before[i] < pairs ? 2 : 0) : gt[i];
  }
};

}  // namespace kernels

/// The solver's view of where its tasks sit among all tasks. The drivers below run on one shard
/// of the tasks; every count they add up, every lowest index they look for and every sample they
/// draw goes through these hooks, which make them global. local_tasks is the one-process case
/// (every hook the identity); dist/knapsack.hpp implements them over a communicator, so the same
/// drivers allocate a task set sharded across ranks, with the same result.
struct local_tasks {
  std::int64_t base = 0;                                    // global index of this shard's first task
  std::int64_t total(std::int64_t local) { return local; }  // sum over the shards
  kernels::four_counts total(kernels::four_counts local) { return local; }
  std::int64_t before(std::int64_t local) {
    (void)local;
    return 0;
  }                                                            // sum over the lower shards
  std::int64_t lowest(std::int64_t global) { return global; }  // min over the shards
  kernels::threshold_summary merge(const kernels::threshold_summary& s) { return s; }  // over the shards
  void max_fill(std::span<double> values) { (void)values; }                // element-wise max over the shards
  std::vector<double> gather(std::vector<double> local) { return local; }  // concatenation
};

namespace detail {

/// kth_largest_gain on a backend: the same band narrowing (a sample of band positions, two pivots,
/// an exact count) with each pass over the tasks run by `exec`; the sample and the last band are
/// sorted on the host. `rule.p` is in the backend's memory.
template <class Exec, class Shard = local_tasks>
double kth_largest_gain(Exec exec, const gain_rule& rule, std::int64_t M, std::int64_t K, Shard shard = {}) {
  namespace k = kernels;
  const int L = rule.L;
  const auto m = static_cast<std::size_t>(M);
  auto g = make_buffer<int>(exec, m), e = make_buffer<int>(exec, m);
  auto c1 = make_buffer<int>(exec, m), c2 = make_buffer<int>(exec, m);
  auto c3 = make_buffer<int>(exec, m), c4 = make_buffer<int>(exec, m);
  auto offsets = make_buffer<std::int64_t>(exec, m + 1);
  for_each_index(exec, M, k::fill_int{g.data(), 0});
  for_each_index(exec, M, k::fill_int{e.data(), L});
  std::int64_t W = shard.total(M * L), above = 0;      // W: the band's width over all shards
  constexpr std::int64_t cap = std::int64_t{1} << 16;  // the last band, sorted on the host
  constexpr int S = 16384;
  std::uint64_t rng = 0x5eed'0b0d'9e7a'11c5ull;  // the host solver's seed: the same pivots
  std::vector<std::int64_t> positions, slots;
  std::vector<double> values(S);
  auto sample = make_buffer<double>(exec, S);
  while (W > cap) {
    const std::int64_t r = K - above;  // rank of the answer inside the band, 1 <= r <= W
    const std::int64_t width = scan_offsets(exec, M, k::band_size{g.data(), e.data()}, offsets.data());
    const std::int64_t first = shard.before(width);  // this shard's band positions: [first, first + width)
    // The same S positions on every shard; each shard evaluates the ones it holds.
    positions.clear();
    slots.clear();
    for (int s = 0; s < S; ++s) {
      const auto x = static_cast<std::int64_t>(splitmix64(rng) % static_cast<std::uint64_t>(W)) - first;
      if (x >= 0 && x < width) positions.push_back(x), slots.push_back(s);
    }
    const auto staged = stage(exec, std::span<const std::int64_t>(positions));
    const auto n_local = static_cast<std::int64_t>(positions.size());
    for_each_index(exec, n_local,
                   k::sample_band{rule, g.data(), offsets.data(), M, staged.data(), sample.data()}, L);
    const std::vector<double> mine =
        copy_to_host(exec, static_cast<const double*>(sample.data()), static_cast<std::size_t>(n_local));
    std::fill(values.begin(), values.end(), -std::numeric_limits<double>::infinity());
    for (std::size_t j = 0; j < mine.size(); ++j) values[static_cast<std::size_t>(slots[j])] = mine[j];
    shard.max_fill(values);
    std::sort(values.begin(), values.end(), std::greater<>());
    const double f = static_cast<double>(r) / static_cast<double>(W);
    const double t = f * S, d = 3.0 * std::sqrt(S * f * (1.0 - f)) + 3.0;
    const auto clamp_index = [&](double x) {
      return static_cast<std::size_t>(std::clamp(x, 0.0, static_cast<double>(values.size() - 1)));
    };
    const double a = values[clamp_index(std::floor(t - d))];  // upper pivot
    const double b = values[clamp_index(std::ceil(t + d))];   // lower pivot, b <= a
    for_each_index(exec, M,
                   k::count_band{rule, g.data(), e.data(), a, b, c1.data(), c2.data(), c3.data(), c4.data()},
                   L);
    const k::four_counts n = shard.total(transform_reduce(
        exec, M, k::four_counts{}, k::add_four{}, k::read_four{c1.data(), c2.data(), c3.data(), c4.data()}));
    const std::int64_t A1 = n.c[0], A2 = n.c[1], B1 = n.c[2], B2 = n.c[3];
    if (A2 >= K) {
      if (A1 < K) return a;
      std::swap(e, c1);  // the answer is above a: band [g, #> a)
    } else if (B2 >= K) {
      if (B1 < K) return b;
      std::swap(g, c2);  // a > answer > b: band [#>= a, #> b)
      std::swap(e, c3);
    } else {
      std::swap(g, c4);  // the answer is below b: band [#>= b, e)
    }
    const k::four_counts band = shard.total(
        transform_reduce(exec, M, k::four_counts{}, k::add_four{}, k::read_band{g.data(), e.data()}));
    W = band.c[0], above = band.c[1];
  }
  const std::int64_t width = scan_offsets(exec, M, k::band_size{g.data(), e.data()}, offsets.data());
  auto packed = make_buffer<double>(exec, static_cast<std::size_t>(width));
  for_each_index(exec, M, k::gather_band{rule, g.data(), e.data(), offsets.data(), packed.data()}, L);
  std::vector<double> band = shard.gather(
      copy_to_host(exec, static_cast<const double*>(packed.data()), static_cast<std::size_t>(width)));
  const auto r = static_cast<std::size_t>(K - above);
  std::nth_element(band.begin(), band.begin() + static_cast<std::ptrdiff_t>(r - 1), band.end(),
                   std::greater<>());
  return band[r - 1];
}

/// fast_extras on a backend: the same threshold, level filling and dent-mode repair, with the
/// host's index-order loops turned into scans and lowest-index reductions. `extra` (M entries,
/// backend memory) receives the extra rollouts per task.
template <class Exec, class Shard = local_tasks>
void fast_extras(Exec exec, const gain_rule& rule, std::int64_t M, std::int64_t K, int* extra,
                 Shard shard = {}) {
  namespace k = kernels;
  const int L = rule.L;
  const std::int64_t all = shard.total(M);  // tasks over every shard; also "no task" as a global index
  if (K <= 0 || L == 0 || K >= all * L) {
    for_each_index(exec, M, k::fill_int{extra, K <= 0 || L == 0 ? 0 : L});
    return;
  }
  const double lambda = kth_largest_gain(exec, rule, M, K, shard);
  // Local task index <-> global: "none" (M locally) becomes `all`.
  const auto global = [&](std::int64_t i) { return i < M ? shard.base + i : all; };
  const bool dent_mode = rule.hull && lambda > 0.0;
  const auto m = static_cast<std::size_t>(M);
  auto gt = make_buffer<int>(exec, m), eq = make_buffer<int>(exec, m);
  auto next_unit = make_buffer<double>(exec, m), last_unit = make_buffer<double>(exec, m);
  for_each_index(
      exec, M,
      k::threshold_pass{rule, lambda, dent_mode, gt.data(), eq.data(), next_unit.data(), last_unit.data()},
      L);
  constexpr double inf = std::numeric_limits<double>::infinity();
  k::threshold_summary s =
      transform_reduce(exec, M, k::threshold_summary{0, -1.0, M, inf, M}, k::merge_summary{},
                       k::read_summary{gt.data(), next_unit.data(), last_unit.data(), M});
  s.next_task = global(s.next_task);
  s.last_task = global(s.last_task);
  s = shard.merge(s);
  const std::int64_t R = K - s.taken;  // 1 <= R <= sum eq: units to hand out among the tied gains
  const auto filled = [&](int level) {
    return shard.total(transform_reduce(exec, M, std::int64_t{0}, k::add_counts{},
                                        k::units_at_level{gt.data(), eq.data(), dent_mode, level}));
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
  auto before = make_buffer<std::int64_t>(exec, m + 1);
  if (!dent_mode || level >= 2) {
    const std::int64_t left = R - filled(level);
    const std::int64_t ones =
        scan_offsets(exec, M, k::takes_one_more{gt.data(), eq.data(), dent_mode, level}, before.data());
    // The lower shards' candidates come first: this shard hands out what is left after them.
    const std::int64_t left_here = left - shard.before(ones);
    for_each_index(exec, M,
                   k::fill_to_level{gt.data(), eq.data(), dent_mode, level, before.data(), left_here, extra});
    return;
  }
  // Dent mode below level 2: only flat tasks take tied units, in pairs (0 -> 2), lowest index first.
  const std::int64_t flat_here = scan_offsets(exec, M, k::is_flat{gt.data(), eq.data()}, before.data());
  const std::int64_t flat_before = shard.before(flat_here), n_flat = shard.total(flat_here);
  const std::int64_t pairs = std::min(n_flat, R / 2);
  for_each_index(exec, M, k::fill_pairs{gt.data(), eq.data(), before.data(), pairs - flat_before, extra});
  if (R - 2 * pairs == 0) return;
  const auto flat_task = [&](std::int64_t j) {  // global index of the j-th flat task over all shards
    return shard.lowest(
        global(transform_reduce(exec, M, M, k::min_index{},
                                k::flat_number{gt.data(), eq.data(), before.data(), j - flat_before, M})));
  };
  const auto add = [&](std::int64_t i, int delta) {  // i global: only its shard applies it
    if (i >= shard.base && i < shard.base + M)
      for_each_index(exec, 1, k::add_at{extra, i - shard.base, delta});
  };
  // One unit left over: the host solver's cases, in its order.
  if (R >= 3 && L >= 3) {  // a flat task with a pair takes a third
    add(flat_task(0), 1);
    return;
  }
  const std::int64_t safe = shard.lowest(
      global(transform_reduce(exec, M, M, k::min_index{}, k::first_safe{gt.data(), eq.data(), M})));
  if (safe < all) {
    add(safe, 1);
    return;
  }
  const double loss_a = lambda;
  const double loss_b = s.next_task < all ? lambda - s.next : inf;
  const double loss_c = (s.last_task < all && R == 1) ? s.last - lambda : inf;
  if (R == 1 && loss_b < loss_a && loss_b <= loss_c) {
    add(s.next_task, 1);
  } else if (R == 1 && loss_c < loss_a && loss_c < loss_b) {
    add(s.last_task, -1);
    add(flat_task(0), 2);
  } else {
    add(flat_task((R - 1) / 2), 1);  // (a): the flat task after the last pair gets the odd unit
  }
}

}  // namespace detail

namespace detail {

/// allocate_rollouts over this shard's tasks (p_hat, has_estimate and out in the backend's
/// memory): the checks and the bookkeeping with every count and index made global by `shard`,
/// so that each shard writes its part of the one allocation of all the tasks.
template <execution_tag Exec, class Shard>
void allocate_on_shard(Exec exec, span_for<Exec, const double> p_hat,
                       span_for<Exec, const std::uint8_t> has_estimate, std::int64_t total_budget,
                       span_for<Exec, int> out, const allocation_options& options, Shard shard) {
  namespace k = kernels;
  const int n_min = options.n_min, n_max = options.n_max;
  require(!options.reference_compat, kAllocate,
          "options.reference_compat = true runs on the host only (the std::span overload)");
  require(options.solver == solver_kind::fast, kAllocate,
          "options.solver = solver_kind::dp runs on the host only (the std::span overload)");
  require(has_estimate.empty() || has_estimate.size() == p_hat.size(), kAllocate, "has_estimate has ",
          has_estimate.size(), " entries but p_hat has ", p_hat.size());
  require(out.size() == p_hat.size(), kAllocate, "out has ", out.size(), " entries but p_hat has ",
          p_hat.size());
  const auto M = static_cast<std::int64_t>(p_hat.size());
  const std::int64_t all = shard.total(M), first = shard.before(M);
  check_bounds(kAllocate, static_cast<std::size_t>(all), total_budget, n_min, n_max);
  const std::uint8_t* has = has_estimate.empty() ? nullptr : has_estimate.data();
  // The first bad probability over all shards, its value from the shard that holds it.
  const std::int64_t bad_here = transform_reduce(exec, M, std::int64_t{-1}, xplor::detail::min_valid_code{},
                                                 k::bad_probability_at{p_hat.data(), has});
  const std::int64_t bad = shard.lowest(bad_here >= 0 ? first + bad_here : all);
  if (bad < all) {
    double value = -std::numeric_limits<double>::infinity();
    if (bad_here >= 0 && first + bad_here == bad) value = copy_to_host(exec, p_hat.data() + bad_here, 1)[0];
    shard.max_fill(std::span<double>(&value, 1));
    fail(kAllocate, "p_hat[", bad, "] = ", value, " is not a probability in [0, 1]");
  }
  if (all == 0) return;
  const auto uniform = static_cast<int>(total_budget / all);  // in [n_min, n_max] by check_bounds
  auto slot = make_buffer<std::int64_t>(exec, has != nullptr ? static_cast<std::size_t>(M) + 1 : 0);
  std::int64_t with = M;
  auto p_with = make_buffer<double>(exec, 0);
  const double* p = p_hat.data();
  if (has != nullptr) {
    with = scan_offsets(exec, M, k::has_estimate_at{has}, slot.data());
    p_with = make_buffer<double>(exec, static_cast<std::size_t>(with));
    for_each_index(exec, M, k::gather_estimates{p_hat.data(), has, slot.data(), p_with.data()});
    p = p_with.data();
  }
  // As the host overload: prompts without an estimate get the uniform share, one more (lowest
  // index first) only for what the others cannot absorb; the rest is solved exactly over the
  // prompts with an estimate, whose global indices start at with_first on this shard.
  const std::int64_t with_all = shard.total(with), with_first = shard.before(with);
  const std::int64_t rest = total_budget - (all - with_all) * uniform, cap = with_all * n_max;
  auto extra = make_buffer<int>(exec, static_cast<std::size_t>(with));
  Shard estimated = shard;
  estimated.base = with_first;
  fast_extras(exec, gain_rule::make(p, n_min, n_max), with, std::min(rest, cap) - with_all * n_min,
              extra.data(), estimated);
  // write_counts compares a task's rank among this shard's tasks without an estimate with the
  // bonus: the lower shards' such tasks come first.
  const std::int64_t without_before = first - with_first;
  for_each_index(exec, M,
                 k::write_counts{has, has != nullptr ? slot.data() : nullptr, extra.data(), n_min, uniform,
                                 rest - cap - without_before, out.data()});
}

}  // namespace detail

/// allocate_rollouts on a backend: the exact knapsack (options.reference_compat off, fast solver)
/// with p_hat, has_estimate and out in the backend's memory (has_estimate may be empty: every
/// task has an estimate). Writes the same counts as the host allocate_rollouts. Throws
/// xplor::error for the host overload's bad inputs, for out of the wrong size, and for the options
/// only the host runs (reference_compat, solver_kind::dp).
template <execution_tag Exec>
void allocate_rollouts(Exec exec, span_for<Exec, const double> p_hat,
                       span_for<Exec, const std::uint8_t> has_estimate, std::int64_t total_budget,
                       span_for<Exec, int> out, const allocation_options& options = {}) {
  detail::allocate_on_shard(exec, p_hat, has_estimate, total_budget, out, options, local_tasks{});
}

/// allocate_rollouts on a backend, every task with an estimate.
template <execution_tag Exec>
void allocate_rollouts(Exec exec, span_for<Exec, const double> p_hat, std::int64_t total_budget,
                       span_for<Exec, int> out, const allocation_options& options = {}) {
  allocate_rollouts(exec, p_hat, span_for<Exec, const std::uint8_t>{}, total_budget, out, options);
}

}  // namespace xplor::budget
