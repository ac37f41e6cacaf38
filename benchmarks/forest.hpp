// The batched-tree benchmark's workload, shared by the CPU benchmark (search_bench.cpp) and the
// GPU one (cuda/benchmarks/gpu_bench.cu): B trees grown to `capacity` nodes each (breadth first,
// 1 to 8 children, a third terminal), held as single trees, and a fixed cycle of calls: at step
// s tree b backs +-1 up from a terminal node and then selects locally from that node's parent.
// Each expansion round is also handed to `on_round`, so the caller grows a tree_batch on its own
// backend in the same order and ends with the same trees.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "xplor/search/tree.hpp"

namespace xplor::bench {

struct forest {
  static constexpr std::int64_t B = 1024;
  static constexpr std::int32_t capacity = 4096;
  static constexpr std::size_t steps = 64;
  static constexpr int width = 8;
  static constexpr double lambda_uct = 2.0;
  std::vector<search::tree> single;
  std::vector<search::frontier_index> fronts;
  std::vector<std::vector<std::int32_t>> leaf, cur;  // [steps][B]
  std::vector<double> v_plus, v_minus;
  search::frontier_scorer score{};

  /// on_round(parent [B], count [B], entropy [B * width], terminal [B * width]) after each round.
  template <class OnRound>
  explicit forest(OnRound&& on_round) {
    namespace xs = xplor::search;
    std::mt19937 gen(11);
    std::vector<std::vector<std::int32_t>> open(B, std::vector<std::int32_t>{xs::root_index}), leaves(B);
    std::vector<std::size_t> head(B, 0);
    for (std::int64_t b = 0; b < B; ++b) {
      single.emplace_back(capacity);
      fronts.emplace_back(capacity);
    }
    // One expansion per tree per round until every tree is full.
    for (bool grew = true; grew;) {
      grew = false;
      std::vector<std::int32_t> parent(B, xs::no_node), count(B, 0);
      std::vector<double> h(B * width, 0.0);
      std::vector<std::uint8_t> term(B * width, 0);
      for (std::size_t b = 0; b < static_cast<std::size_t>(B); ++b) {
        xs::tree& t = single[b];
        auto& o = open[b];
        auto& at = head[b];
        if (t.size() >= capacity || at >= o.size()) continue;
        const std::int32_t p = o[at++];
        const int k = std::min(1 + static_cast<int>(gen() % width), capacity - t.size());
        parent[b] = p;
        count[b] = k;
        for (int c = 0; c < k; ++c) {
          const bool terminal = gen() % 3 == 0 || t.depth(p) + 1 >= 64;
          const double entropy = 0.5 + 0.001 * static_cast<double>(gen() % 1000);
          const auto j = b * width + static_cast<std::size_t>(c);
          h[j] = entropy;
          term[j] = terminal;
          const auto id = t.add_child(p, entropy, terminal);
          (terminal ? leaves[b] : o).push_back(id);
        }
        xs::rescore_around(t, fronts[b], p, width, score);
        grew = true;
      }
      if (grew) on_round(parent, count, h, term);
    }
    for (std::size_t s = 0; s < steps; ++s) {
      leaf.emplace_back(B);
      cur.emplace_back(B);
      for (std::size_t b = 0; b < static_cast<std::size_t>(B); ++b) {
        const auto& l = leaves[b];
        leaf[s][b] = l[gen() % l.size()];
        cur[s][b] = single[b].parent(leaf[s][b]);
      }
    }
    v_plus.assign(B, 1.0);
    v_minus.assign(B, -1.0);
  }

  /// Step s of the cycle on the single trees, one call per tree (the baseline): the selections in `next`.
  void single_step(std::size_t s, std::span<std::int32_t> next) {
    const search::decayed_constrained_backup rule{};
    const double v = s % 2 ? -1.0 : 1.0;
    for (std::size_t b = 0; b < static_cast<std::size_t>(B); ++b) {
      search::tree& t = single[b];
      t.backup(leaf[s][b], v, rule);
      search::rescore_after_backup(t, fronts[b], leaf[s][b], width, score);
      next[b] = search::select_child(t.ref(), fronts[b].ref(), cur[s][b], width, lambda_uct, score);
    }
  }
};

}  // namespace xplor::bench
