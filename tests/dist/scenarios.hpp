// Multi-rank checks shared by the thread-rank tests (dist_test.cpp) and the MPI program
// (mpi_check.cpp): each generates the same inputs on every rank from a seed, runs the distributed
// algorithm on this rank's shard, and compares with the single-process result of the whole input,
// which every rank can compute. A mismatch throws mismatch naming what differs; the callers turn
// that into a test failure (thread ranks) or an exit status (MPI).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>
#include <xplor/budget/knapsack.hpp>
#include <xplor/budget/success_tracker.hpp>
#include <xplor/core/random.hpp>
#include <xplor/dist/advantage.hpp>
#include <xplor/dist/communicator.hpp>
#include <xplor/dist/knapsack.hpp>
#include <xplor/dist/search.hpp>
#include <xplor/dist/tracker.hpp>
#include <xplor/rl/advantage.hpp>
#include <xplor/sample/scripted_policy.hpp>

namespace dist_scenarios {

struct mismatch : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline void expect(bool ok, const std::string& what) {
  if (!ok) throw mismatch(what);
}

/// The same bits in part[0, n) and whole[0, n) (memcmp, which must not see the null data of an
/// empty slice: a rank may hold no groups).
inline bool same_bits(const float* part, const float* whole, std::size_t n) {
  return n == 0 || std::memcmp(part, whole, n * sizeof(float)) == 0;
}

inline std::int64_t draw(xplor::philox_stream& g, std::int64_t lo, std::int64_t hi) {  // uniform in [lo, hi]
  return lo + static_cast<std::int64_t>(g() % static_cast<std::uint32_t>(hi - lo + 1));
}

/// Cut points splitting n items into `ranks` contiguous shards (some possibly empty), the same on
/// every rank: shard r is [cut[r], cut[r + 1]).
inline std::vector<std::int64_t> cuts(std::uint64_t seed, std::int64_t n, int ranks) {
  xplor::philox_stream g(seed, 0xc075);
  std::vector<std::int64_t> c{0};
  for (int r = 1; r < ranks; ++r) c.push_back(draw(g, 0, n));
  c.push_back(n);
  std::sort(c.begin(), c.end());
  return c;
}

/// Knapsack allocation of random task sets (ties, p = 0 and 1, tasks without an estimate, large
/// sets that need the sampled narrowing rounds) sharded at random cut points: each rank's counts
/// equal its slice of the single-process allocation.
template <xplor::dist::communicator C>
void knapsack(C& comm, std::uint64_t seed, int instances) {
  for (int inst = 0; inst < instances; ++inst) {
    xplor::philox_stream g(seed, 0x6a9 + static_cast<std::uint64_t>(inst));
    const std::int64_t sizes[] = {0, 1, 5, 60, 700, 40000};
    const std::int64_t M = sizes[draw(g, 0, 5)];
    xplor::budget::allocation_options o;
    o.n_min = static_cast<int>(draw(g, 0, 3));
    o.n_max = o.n_min + static_cast<int>(draw(g, 0, 1) == 0 ? draw(g, 0, 3) : draw(g, 4, 16));
    std::vector<double> p(static_cast<std::size_t>(M));
    std::vector<std::uint8_t> has(static_cast<std::size_t>(M), 1);
    const bool some_missing = draw(g, 0, 2) == 0;
    const int levels = static_cast<int>(draw(g, 2, 9));  // few distinct values: many exact ties
    for (std::int64_t i = 0; i < M; ++i) {
      p[static_cast<std::size_t>(i)] =
          draw(g, 0, 3) == 0 ? g.uniform_double() : double(draw(g, 0, levels)) / levels;
      if (some_missing && draw(g, 0, 4) == 0) has[static_cast<std::size_t>(i)] = 0;
    }
    const std::int64_t budget = M == 0 ? 0 : draw(g, M * o.n_min, M * o.n_max);
    const std::vector<int> whole = some_missing ? xplor::budget::allocate_rollouts(p, has, budget, o)
                                                : xplor::budget::allocate_rollouts(p, budget, o);
    const auto c = cuts(seed + static_cast<std::uint64_t>(inst), M, comm.size());
    const auto lo = static_cast<std::size_t>(c[static_cast<std::size_t>(comm.rank())]);
    const auto hi = static_cast<std::size_t>(c[static_cast<std::size_t>(comm.rank()) + 1]);
    std::vector<int> mine(hi - lo, -1);
    const std::span<const double> p_mine(p.data() + lo, hi - lo);
    if (some_missing)
      xplor::dist::allocate_rollouts(comm, p_mine, std::span<const std::uint8_t>(has.data() + lo, hi - lo),
                                     budget, std::span<int>(mine), o);
    else
      xplor::dist::allocate_rollouts(comm, p_mine, budget, std::span<int>(mine), o);
    for (std::size_t i = 0; i < mine.size(); ++i)
      expect(mine[i] == whole[lo + i], "knapsack instance " + std::to_string(inst) + " (M " +
                                           std::to_string(M) + "): task " + std::to_string(lo + i) + " got " +
                                           std::to_string(mine[i]) + ", one process gives " +
                                           std::to_string(whole[lo + i]));
  }
}

/// Random ragged groups (sizes 1-9) of rewards with ties, split at random group boundaries.
struct grouped_batch {
  std::vector<float> rewards;
  std::vector<std::int64_t> offsets{0};
};
inline grouped_batch batch(std::uint64_t seed, int groups) {
  xplor::philox_stream g(seed, 0xba7c);
  grouped_batch b;
  for (int k = 0; k < groups; ++k) {
    const std::int64_t n = draw(g, 1, 9);
    for (std::int64_t i = 0; i < n; ++i)
      b.rewards.push_back(draw(g, 0, 1) == 0 ? float(draw(g, 0, 2)) : g.uniform() * 4.0f - 1.0f);
    b.offsets.push_back(static_cast<std::int64_t>(b.rewards.size()));
  }
  return b;
}

/// Every estimator and scaling: each rank's advantages are its slice of the single-process ones,
/// bit for bit, as are the reports' batch statistics.
template <xplor::dist::communicator C>
void advantages(C& comm, std::uint64_t seed) {
  using namespace xplor::rl;
  const grouped_batch b = batch(seed, 37);
  const auto G = static_cast<std::int64_t>(b.offsets.size()) - 1;
  const auto c = cuts(seed, G, comm.size());
  const auto g0 = c[static_cast<std::size_t>(comm.rank())], g1 = c[static_cast<std::size_t>(comm.rank()) + 1];
  const auto e0 = b.offsets[static_cast<std::size_t>(g0)], e1 = b.offsets[static_cast<std::size_t>(g1)];
  std::vector<std::int64_t> local{0};
  for (auto k = g0; k < g1; ++k) local.push_back(b.offsets[static_cast<std::size_t>(k + 1)] - e0);
  const std::span<const float> mine(b.rewards.data() + e0, static_cast<std::size_t>(e1 - e0));
  for (estimator kind : {estimator::grpo, estimator::rloo, estimator::reinforce_pp, estimator::gpg})
    for (scale_rewards scale : {scale_rewards::group, scale_rewards::batch, scale_rewards::none}) {
      advantage_options o;
      o.scale = scale;
      std::vector<float> whole(b.rewards.size()), part(mine.size());
      std::vector<std::uint8_t> deg_whole(static_cast<std::size_t>(G)),
          deg_part(static_cast<std::size_t>(g1 - g0));
      const auto r1 =
          compute_advantages(xplor::cpu, kind, std::span<const float>(b.rewards),
                             xplor::ragged_groups(b.offsets, static_cast<std::int64_t>(b.rewards.size())),
                             std::span<float>(whole), o, std::span<std::uint8_t>(deg_whole));
      const auto r2 = xplor::dist::compute_advantages(comm, kind, mine, local, std::span<float>(part), o,
                                                      std::span<std::uint8_t>(deg_part));
      const std::string what = "advantages (estimator " + std::to_string(int(kind)) + ", scale " +
                               std::to_string(int(scale)) + ")";
      expect(same_bits(part.data(), whole.data() + e0, part.size()), what + ": values differ");
      expect(std::equal(deg_part.begin(), deg_part.end(), deg_whole.begin() + g0),
             what + ": degenerate flags differ");
      expect(r1.batch_mean == r2.batch_mean && r1.batch_std == r2.batch_std &&
                 r1.num_groups == r2.num_groups && r1.degenerate_groups == r2.degenerate_groups,
             what + ": reports differ");
    }
  // ReBN over the same values as returns.
  std::vector<float> whole(b.rewards.size()), part(mine.size());
  rebn_advantages(xplor::cpu, std::span<const float>(b.rewards), std::span<float>(whole));
  xplor::dist::rebn_advantages(comm, mine, std::span<float>(part));
  expect(same_bits(part.data(), whole.data() + e0, part.size()), "ReBN values differ");
}

/// Three steps of records from every rank: the trackers equal one that saw every record, and the
/// distributed allocation from them equals the single-process tracker's.
template <xplor::dist::communicator C>
void tracker(C& comm, std::uint64_t seed) {
  xplor::budget::success_tracker single, shared;
  for (int step = 0; step < 3; ++step) {
    const grouped_batch b = batch(seed + static_cast<std::uint64_t>(step), 23);
    const auto G = static_cast<std::int64_t>(b.offsets.size()) - 1;
    std::vector<std::int64_t> ids(static_cast<std::size_t>(G));
    std::vector<double> r(b.rewards.begin(), b.rewards.end());
    for (auto& x : r) x = x > 0.5 ? 1.0 : 0.0;
    for (std::int64_t k = 0; k < G; ++k) ids[static_cast<std::size_t>(k)] = (k * 7 + step * 3) % 31;
    for (std::int64_t k = 0; k < G; ++k)
      single.record(ids[static_cast<std::size_t>(k)],
                    std::span<const double>(r).subspan(
                        static_cast<std::size_t>(b.offsets[static_cast<std::size_t>(k)]),
                        static_cast<std::size_t>(b.offsets[static_cast<std::size_t>(k + 1)] -
                                                 b.offsets[static_cast<std::size_t>(k)])));
    const auto c = cuts(seed + 99 + static_cast<std::uint64_t>(step), G, comm.size());
    const auto g0 = c[static_cast<std::size_t>(comm.rank())],
               g1 = c[static_cast<std::size_t>(comm.rank()) + 1];
    const auto e0 = b.offsets[static_cast<std::size_t>(g0)], e1 = b.offsets[static_cast<std::size_t>(g1)];
    std::vector<std::int64_t> local{0};
    for (auto k = g0; k < g1; ++k) local.push_back(b.offsets[static_cast<std::size_t>(k + 1)] - e0);
    xplor::dist::record(comm, shared,
                        std::span<const std::int64_t>(ids.data() + g0, static_cast<std::size_t>(g1 - g0)),
                        local, std::span<const double>(r.data() + e0, static_cast<std::size_t>(e1 - e0)));
  }
  std::vector<std::int64_t> all(40);
  for (std::int64_t i = 0; i < 40; ++i) all[static_cast<std::size_t>(i)] = i;
  const auto a = single.estimates(all), b2 = shared.estimates(all);
  expect(a.p_hat == b2.p_hat && a.has_estimate == b2.has_estimate, "tracker estimates differ");
  xplor::budget::allocation_options o;
  o.n_max = 16;
  const std::vector<int> whole = single.allocate(all, 40 * 8, o);
  const auto c = cuts(seed + 7, 40, comm.size());
  const auto lo = static_cast<std::size_t>(c[static_cast<std::size_t>(comm.rank())]);
  const auto hi = static_cast<std::size_t>(c[static_cast<std::size_t>(comm.rank()) + 1]);
  const std::vector<int> mine =
      xplor::dist::allocate(comm, shared, std::span<const std::int64_t>(all.data() + lo, hi - lo), 40 * 8, o);
  expect(std::equal(mine.begin(), mine.end(), whole.begin() + static_cast<std::ptrdiff_t>(lo)),
         "tracker allocation differs");
}

/// sum_ordered: rank order, the same bits on every rank; shard_offset and integer reductions.
template <xplor::dist::communicator C>
void collectives(C& comm, std::uint64_t seed) {
  std::vector<double> d(5);
  std::vector<float> f(3);
  auto value = [&](int r, std::size_t i) {
    xplor::philox_stream g(seed, 0x5u + static_cast<std::uint64_t>(r));
    for (std::size_t k = 0; k < i; ++k) (void)g();
    return g.uniform_double() * std::pow(10.0, double(r) * 4.0 - 6.0);  // magnitudes where order matters
  };
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = value(comm.rank(), i);
  for (std::size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(value(comm.rank(), i));
  xplor::dist::sum_ordered(comm, std::span<double>(d));
  xplor::dist::sum_ordered(comm, std::span<float>(f));
  for (std::size_t i = 0; i < d.size(); ++i) {
    double s = 0.0;
    for (int r = 0; r < comm.size(); ++r) s += value(r, i);
    expect(d[i] == s, "sum_ordered(double) is not the rank-order sum");
  }
  for (std::size_t i = 0; i < f.size(); ++i) {
    float s = 0.0f;
    for (int r = 0; r < comm.size(); ++r) s += static_cast<float>(value(r, i));
    expect(f[i] == s, "sum_ordered(float) is not the rank-order sum");
  }
  std::int64_t total = 0;
  const std::int64_t off = xplor::dist::shard_offset(comm, comm.rank() + 1, &total);
  expect(off == std::int64_t{comm.rank()} * (comm.rank() + 1) / 2, "shard_offset");
  expect(total == std::int64_t{comm.size()} * (comm.size() + 1) / 2, "shard_offset total");
  std::int64_t mm[3] = {comm.rank(), comm.rank(), comm.rank()};
  comm.all_reduce(std::span<std::int64_t>(mm, 1), xplor::dist::reduce_op::sum);
  comm.all_reduce(std::span<std::int64_t>(mm + 1, 1), xplor::dist::reduce_op::min);
  comm.all_reduce(std::span<std::int64_t>(mm + 2, 1), xplor::dist::reduce_op::max);
  expect(mm[0] == std::int64_t{comm.size()} * (comm.size() - 1) / 2 && mm[1] == 0 && mm[2] == comm.size() - 1,
         "integer all_reduce");
  std::int64_t word[2] = {comm.rank() == comm.size() - 1 ? 42 : 0, 7};
  xplor::dist::broadcast(comm, std::span<std::int64_t>(word), comm.size() - 1);
  expect(word[0] == 42 && word[1] == 7, "broadcast");
}

/// Two DeepSearch rounds over 9 prompts (3 of them repeated problems, one cached from the start),
/// sharded at random cut points: each rank's results are the single-process round's for the same
/// prompts, and the merged caches equal the single-process cache after each round.
template <xplor::dist::communicator C>
void search(C& comm, std::uint64_t seed) {
  namespace xs = xplor::search;
  // Logits depend on the history, so different prompts search differently.
  auto make = [] {
    return xplor::sample::scripted_policy(4, [](std::span<const std::int32_t> h, std::span<float> out) {
      double m = 0;
      for (std::size_t k = 0; k < h.size(); ++k) m += double(h[k] + 1) * double(k + 1);
      for (std::size_t v = 0; v < out.size(); ++v)
        out[v] = static_cast<float>(std::sin(m * 0.7 + double(v)) + (v == 1 ? 0.8 : 0.0));
    });
  };
  // A prompt's answer is correct when its three tokens sum to the prompt's first token mod 4.
  std::vector<std::vector<std::int32_t>> prompts;
  // Problem ids: 9 prompts of 6 problems (ids built once: g++ 12 warns falsely on "p" + string).
  const std::vector<std::string> distinct{"p0", "p1", "p2", "p3", "p4", "p5"};
  std::vector<std::string> ids;
  for (int i = 0; i < 9; ++i) {
    prompts.push_back({i % 6, (i * 3) % 4});
    ids.push_back(distinct[static_cast<std::size_t>(i % 6)]);
  }
  auto verify = [&prompts](std::size_t i, std::span<const std::int32_t> r, bool) {
    if (r.size() != 3) return xs::outcome::no_answer;
    return (r[0] + r[1] + r[2]) % 4 == prompts[i][0] % 4 ? xs::outcome::correct : xs::outcome::incorrect;
  };
  xs::search_params p;
  p.max_depth = 3;
  p.chunk_tokens = 1;
  p.expansion_width = 3;
  p.num_trajectories = 5;
  p.max_nodes = 512;
  xs::solution_cache single, shared;
  single.add("p5", std::vector<std::int32_t>{1, 1, 3});
  shared.add("p5", std::vector<std::int32_t>{1, 1, 3});
  const auto c = cuts(seed, 9, comm.size());
  const auto lo = static_cast<std::size_t>(c[static_cast<std::size_t>(comm.rank())]);
  const auto hi = static_cast<std::size_t>(c[static_cast<std::size_t>(comm.rank()) + 1]);
  for (int round = 0; round < 2; ++round) {
    const auto whole =
        xs::collect_round(make, prompts, ids, verify, single, p, seed + static_cast<std::uint64_t>(round));
    auto verify_mine = [&](std::size_t i, std::span<const std::int32_t> r, bool f) {
      return verify(lo + i, r, f);
    };
    const auto mine = xplor::dist::collect_round(
        comm, make, std::span<const std::vector<std::int32_t>>(prompts.data() + lo, hi - lo),
        std::span<const std::string>(ids.data() + lo, hi - lo), verify_mine, shared, p,
        seed + static_cast<std::uint64_t>(round));
    for (std::size_t i = 0; i < mine.size(); ++i) {
      const auto& a = mine[i].trajectories;
      const auto& b = whole[lo + i].trajectories;
      expect(a.size() == b.size() && mine[i].from_cache == whole[lo + i].from_cache,
             "search round " + std::to_string(round) + ": prompt " + std::to_string(lo + i) + " differs");
      for (std::size_t k = 0; k < a.size(); ++k)
        expect(a[k].tokens == b[k].tokens && a[k].token_advantages == b[k].token_advantages,
               "search round " + std::to_string(round) + ": prompt " + std::to_string(lo + i) +
                   " trajectory " + std::to_string(k) + " differs");
    }
    for (const std::string& id : distinct) {
      const auto a = single.solutions(id), b = shared.solutions(id);
      expect(std::equal(a.begin(), a.end(), b.begin(), b.end()),
             "search round " + std::to_string(round) + ": cached solutions of " + id + " differ");
    }
  }
  // The batch driver alone: the same per-prompt results as one process.
  auto verify_all = [&](std::size_t i, std::span<const std::int32_t> r, bool f) { return verify(i, r, f); };
  auto verify_mine = [&](std::size_t i, std::span<const std::int32_t> r, bool f) {
    return verify(lo + i, r, f);
  };
  const auto whole = xs::deep_search_batch(make, prompts, verify_all, p, seed);
  const auto mine = xplor::dist::deep_search_batch(
      comm, make, std::span<const std::vector<std::int32_t>>(prompts.data() + lo, hi - lo), verify_mine, p,
      seed);
  for (std::size_t i = 0; i < mine.size(); ++i)
    for (std::size_t k = 0; k < mine[i].trajectories.size(); ++k)
      expect(mine[i].trajectories[k].tokens == whole[lo + i].trajectories[k].tokens,
             "deep_search_batch differs");
}

/// A bad probability on one rank is reported on every rank with its global index.
template <xplor::dist::communicator C>
void bad_probability(C& comm) {
  std::vector<double> p(3, 0.5);
  if (comm.rank() == comm.size() - 1) p[1] = 1.5;
  std::vector<int> out(3);
  try {
    xplor::dist::allocate_rollouts(comm, std::span<const double>(p), 3 * comm.size() * 4,
                                   std::span<int>(out));
  } catch (const xplor::error& e) {
    const std::string want =
        "p_hat[" + std::to_string(3 * (comm.size() - 1) + 1) + "] = 1.5 is not a probability";
    expect(std::string(e.what()).find(want) != std::string::npos,
           std::string("unexpected message: ") + e.what());
    return;
  }
  throw mismatch("no error for p = 1.5");
}

}  // namespace dist_scenarios
