// The batched tree drivers against B single trees given the same random calls: expansions,
// backups, local selections and frontier picks in rounds, then every array of every tree
// compared. `Data` moves host vectors to the backend's memory and back (std::vector for the CPU,
// thrust::device_vector for the device tests), so the CPU and device tests share this harness.
#pragma once

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "xplor/search/tree.hpp"
#include "xplor/search/tree_batch.hpp"

namespace xplor::test {

struct batch_case {
  int trees = 16;
  std::int32_t capacity = 300;
  int width = 3;
  int rounds = 150;
  std::uint32_t seed = 1;
  search::frontier_params frontier{};
  double lambda = 2.0;
  double floor = 0.1;
};

template <class Data, class Exec>
void check_batch_against_single_trees(Exec exec, const batch_case& c) {
  namespace xs = xplor::search;
  std::mt19937 gen(c.seed);
  const auto B = static_cast<std::size_t>(c.trees);
  std::vector<xs::tree> single;
  std::vector<xs::frontier_index> fronts;
  for (std::size_t b = 0; b < B; ++b) {
    single.emplace_back(c.capacity);
    fronts.emplace_back(c.capacity);
  }
  xs::tree_batch<Exec> batch(exec, c.trees, c.capacity);
  const xs::frontier_scorer score{c.frontier};
  const xs::decayed_constrained_backup rule{c.floor};
  auto draw = [&gen](std::size_t n) { return static_cast<std::size_t>(gen() % n); };
  const auto stride = static_cast<std::size_t>(c.width);

  for (int round = 0; round < c.rounds; ++round) {
    // Expansions: a random open node of each tree gets up to `width - children` children.
    std::vector<std::int32_t> parent(B, xs::no_node), count(B, 0);
    std::vector<double> entropy(B * stride, 0.0);
    std::vector<std::uint8_t> terminal(B * stride, 0);
    for (std::size_t b = 0; b < B; ++b) {
      xs::tree& t = single[b];
      const auto p = static_cast<std::int32_t>(draw(static_cast<std::size_t>(t.size())));
      const int room = std::min(c.width - t.children(p), t.capacity() - t.size());
      if (t.terminal(p) || room <= 0 || draw(5) == 0) continue;
      parent[b] = p;
      count[b] = 1 + static_cast<std::int32_t>(draw(static_cast<std::size_t>(room)));
      for (std::int32_t j = 0; j < count[b]; ++j) {
        const double h = 0.25 * static_cast<double>(draw(8));
        const bool end = draw(5) == 0 || t.depth(p) >= 6;
        entropy[b * stride + static_cast<std::size_t>(j)] = h;
        terminal[b * stride + static_cast<std::size_t>(j)] = end;
        t.add_child(p, h, end);
      }
      xs::rescore_around(t, fronts[b], p, c.width, score);
    }
    {
      auto d_parent = Data::up(parent), d_count = Data::up(count);
      auto d_entropy = Data::up(entropy);
      auto d_terminal = Data::up(terminal);
      xs::add_children(exec, batch, Data::cspan(d_parent), Data::cspan(d_count), Data::cspan(d_entropy),
                       Data::cspan(d_terminal), c.width, score);
    }
    // Backups from a random terminal node (values whose products with the weights are exact).
    std::vector<std::int32_t> leaf(B, xs::no_node);
    std::vector<double> v(B, 0.0);
    constexpr double values[] = {1.0, -1.0, 0.5, -0.5};
    for (std::size_t b = 0; b < B; ++b) {
      xs::tree& t = single[b];
      const auto n = static_cast<std::int32_t>(draw(static_cast<std::size_t>(t.size())));
      if (!t.terminal(n) || draw(4) == 0) continue;
      leaf[b] = n;
      v[b] = values[draw(4)];
      t.backup(n, v[b], rule);
      xs::rescore_after_backup(t, fronts[b], n, c.width, score);
    }
    {
      auto d_leaf = Data::up(leaf);
      auto d_v = Data::up(v);
      xs::backup(exec, batch, Data::cspan(d_leaf), Data::cspan(d_v), c.width, rule, score);
    }
    // Local selections from a random node of each tree (none in some trees).
    std::vector<std::int32_t> cur(B, xs::no_node), expected(B, xs::no_node);
    for (std::size_t b = 0; b < B; ++b) {
      if (draw(5) == 0) continue;
      cur[b] = static_cast<std::int32_t>(draw(static_cast<std::size_t>(single[b].size())));
      expected[b] = xs::select_child(single[b].ref(), fronts[b].ref(), cur[b], c.width, c.lambda, score);
    }
    {
      auto d_cur = Data::up(cur);
      auto d_next = Data::up(std::vector<std::int32_t>(B, -7));
      xs::select_children(exec, batch, Data::cspan(d_cur), c.width, c.lambda, Data::span(d_next), score);
      REQUIRE(Data::down(d_next) == expected);
    }
    std::vector<std::int32_t> best(B);
    for (std::size_t b = 0; b < B; ++b) best[b] = fronts[b].best();
    auto d_best = Data::up(std::vector<std::int32_t>(B, -7));
    xs::frontier_best(exec, batch, Data::span(d_best));
    REQUIRE(Data::down(d_best) == best);
  }

  std::int64_t nodes = 0;
  for (const xs::tree& t : single) nodes += t.size();
  REQUIRE(nodes > 20 * c.trees);  // the rounds grew the trees
  for (std::size_t b = 0; b < B; ++b) {
    const xs::tree& want = single[b];
    const xs::tree got = batch.host_tree(static_cast<std::int64_t>(b));
    INFO("tree " << b);
    REQUIRE(got.size() == want.size());
    for (std::int32_t n = 0; n < want.size(); ++n) {
      INFO("node " << n);
      REQUIRE(got.parent(n) == want.parent(n));
      REQUIRE(got.first_child(n) == want.first_child(n));
      REQUIRE(got.next_sibling(n) == want.next_sibling(n));
      REQUIRE(got.children(n) == want.children(n));
      REQUIRE(got.depth(n) == want.depth(n));
      REQUIRE(got.visits(n) == want.visits(n));
      REQUIRE(got.value(n) == want.value(n));
      REQUIRE(got.mean_entropy(n) == want.mean_entropy(n));
      REQUIRE(got.terminal(n) == want.terminal(n));
    }
  }
}

}  // namespace xplor::test
