// The batched tree drivers (search/tree_batch.hpp) on the CPU backend: a hand-worked batch, the
// same trees as single trees under random calls on 1 and 2 threads, and bad input.
#include "xplor/search/tree_batch.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <span>
#include <vector>

#include "batch_harness.hpp"

namespace xs = xplor::search;

namespace {
struct cpu_data {
  template <class T>
  static std::vector<T> up(const std::vector<T>& v) {
    return v;
  }
  template <class T>
  static std::vector<T> down(const std::vector<T>& v) {
    return v;
  }
  template <class T>
  static std::span<const T> cspan(const std::vector<T>& v) {
    return v;
  }
  template <class T>
  static std::span<T> span(std::vector<T>& v) {
    return v;
  }
};
}  // namespace

TEST_CASE("batched trees: a hand-worked expansion, backup and selection", "[search][tree_batch]") {
  // Two trees. Tree 0: root -> a, b; a -> c (terminal). Tree 1: root -> x (terminal).
  xs::tree_batch<xplor::cpu_t> batch(xplor::cpu, 2, 8);
  const int width = 2;
  xs::add_children(xplor::cpu, batch, std::vector<std::int32_t>{0, 0}, std::vector<std::int32_t>{2, 1},
                   std::vector<double>{0.5, 0.7, 0.3, 0.0}, std::vector<std::uint8_t>{0, 0, 1, 0}, width);
  xs::add_children(xplor::cpu, batch, std::vector<std::int32_t>{1, xs::no_node},
                   std::vector<std::int32_t>{1, 0}, std::vector<double>{0.2, 0.0, 0.0, 0.0},
                   std::vector<std::uint8_t>{1, 0, 0, 0}, width);
  // Backups: +1 from c (depth 2, traj_len 3: weights 1, 2/3, 1/3) and -1 from x (traj_len 2:
  // weights 1, 1/2).
  xs::backup(xplor::cpu, batch, std::vector<std::int32_t>{3, 1}, std::vector<double>{1.0, -1.0}, width);
  const xs::tree t0 = batch.host_tree(0), t1 = batch.host_tree(1);
  CHECK(t0.size() == 4);
  CHECK(t1.size() == 2);
  CHECK(t0.value(3) == 1.0);
  CHECK(t0.value(1) == 2.0 / 3.0);
  CHECK(t0.value(0) == 1.0 / 3.0);
  CHECK(t0.visits(0) == 1);
  CHECK(t0.value(2) == 0.0);
  CHECK(t1.value(1) == -1.0);
  CHECK(t1.value(0) == -0.5);
  // Frontier of tree 0 (width 2): a (1 child) and b (none) are open. F = 0.4 tanh(Q(root)) +
  // 0.01 sqrt(1/64) for both, a tie that goes to the lower id, a. Tree 1 has nothing open.
  std::vector<std::int32_t> best(2, -7);
  xs::frontier_best(xplor::cpu, batch, std::span<std::int32_t>(best));
  CHECK(best == std::vector<std::int32_t>{1, xs::no_node});
  // Local selection from the roots: tree 0's children a, b both get a visit; Q(a) = (2/3) / 2,
  // Q(b) = 0, N(root) = 1, so ln N = 0 and UCT = Q: a wins. Tree 1's only child is terminal and
  // its frontier is empty: no_node.
  std::vector<std::int32_t> next(2, -7);
  xs::select_children(xplor::cpu, batch, std::vector<std::int32_t>{0, 0}, width, 2.0,
                      std::span<std::int32_t>(next));
  CHECK(next == std::vector<std::int32_t>{1, xs::no_node});
  CHECK(batch.host_tree(0).visits(1) == 2);
  CHECK(batch.host_tree(1).visits(1) == 2);
  // reset() returns every tree to its root alone.
  batch.reset(xplor::cpu);
  CHECK(batch.host_tree(0).size() == 1);
  CHECK(batch.host_tree(0).visits(0) == 0);
  xs::frontier_best(xplor::cpu, batch, std::span<std::int32_t>(best));
  CHECK(best == std::vector<std::int32_t>{xs::no_node, xs::no_node});
}

TEST_CASE("batched trees equal single trees under the same random calls", "[search][tree_batch][property]") {
  for (int threads : {1, 2}) {
    for (std::uint32_t seed : {1u, 2u, 3u}) {
      xplor::test::batch_case c;
      c.seed = seed;
      c.width = 1 + static_cast<int>(seed % 4);
      c.frontier.lambda4 = 0.3 * seed;
      c.frontier.uncertainty = seed % 2 == 1;
      c.trees = 4096 / (threads * 64);  // enough trees for the parallel loop to split
      INFO("threads " << threads << ", seed " << seed);
      xplor::test::check_batch_against_single_trees<cpu_data>(xplor::cpu_t{threads}, c);
    }
  }
}

TEST_CASE("batched trees reject bad input by name", "[search][tree_batch]") {
  xs::tree_batch<xplor::cpu_t> batch(xplor::cpu, 2, 3);
  const std::vector<double> h(4, 0.0);
  auto expand = [&](std::vector<std::int32_t> parent, std::vector<std::int32_t> count,
                    std::vector<std::uint8_t> term) {
    xs::add_children(xplor::cpu, batch, parent, count, h, term, 2);
  };
  expand({0, 0}, {1, 2}, {0, 0, 1, 1});  // tree 0: root -> 1; tree 1: root -> 1, 2 (terminal)
  CHECK_THROWS_WITH(expand({0, 5}, {1, 1}, {0, 0, 0, 0}),
                    Catch::Contains("parent[1] = 5 is not a node of tree 1 (3 nodes)"));
  CHECK_THROWS_WITH(expand({xs::no_node, 2}, {0, 1}, {0, 0, 0, 0}),
                    Catch::Contains("parent[1] = 2 is terminal in tree 1"));
  CHECK_THROWS_WITH(expand({0, xs::no_node}, {3, 0}, {0, 0, 0, 0}),
                    Catch::Contains("count[0] = 3 is outside [0, 2]"));
  CHECK_THROWS_WITH(expand({0, 0}, {0, 1}, {0, 0, 0, 0}),
                    Catch::Contains("tree 1 is full: 1 children on its 3 nodes pass the capacity 3"));
  CHECK(batch.host_tree(1).size() == 3);  // nothing half-written by the rejected calls
  CHECK(batch.host_tree(0).size() == 2);
  CHECK_THROWS_WITH(xs::add_children(xplor::cpu, batch, std::vector<std::int32_t>{0},
                                     std::vector<std::int32_t>{0, 0}, h, std::vector<std::uint8_t>(4), 2),
                    Catch::Contains("parent has 1 entries for 2 trees"));
  CHECK_THROWS_WITH(
      xs::add_children(xplor::cpu, batch, std::vector<std::int32_t>{0, 0}, std::vector<std::int32_t>{0, 0},
                       std::vector<double>(3), std::vector<std::uint8_t>(3), 2),
      Catch::Contains("entropy has 3 entries, not a multiple of the 2 trees"));
  CHECK_THROWS_WITH(xs::add_children(xplor::cpu, batch, std::vector<std::int32_t>{0, 0},
                                     std::vector<std::int32_t>{0, 0}, h, std::vector<std::uint8_t>(4), 0),
                    Catch::Contains("width = 0 must be >= 1"));
  CHECK_THROWS_WITH(
      xs::backup(xplor::cpu, batch, std::vector<std::int32_t>{1, 2}, std::vector<double>{1.0, NAN}, 2),
      Catch::Contains("v[1] = nan is not finite"));
  CHECK_THROWS_WITH(
      xs::backup(xplor::cpu, batch, std::vector<std::int32_t>{2, 2}, std::vector<double>{1.0, 1.0}, 2),
      Catch::Contains("leaf[0] = 2 is not a node of tree 0 (2 nodes)"));
  CHECK_THROWS_WITH(xs::backup(xplor::cpu, batch, std::vector<std::int32_t>{1, 2},
                               std::vector<double>{1.0, 1.0}, 2, xs::decayed_constrained_backup{1.5}),
                    Catch::Contains("backup floor = 1.5 is outside [0, 1]"));
  CHECK(batch.host_tree(1).visits(0) == 0);  // no backup ran
  std::vector<std::int32_t> next(2);
  CHECK_THROWS_WITH(xs::select_children(xplor::cpu, batch, std::vector<std::int32_t>{-3, 0}, 2, 2.0,
                                        std::span<std::int32_t>(next)),
                    Catch::Contains("cur[0] = -3 is not a node of tree 0"));
  CHECK_THROWS_WITH(xs::select_children(xplor::cpu, batch, std::vector<std::int32_t>{0, 0}, 2, -1.0,
                                        std::span<std::int32_t>(next)),
                    Catch::Contains("lambda = -1 must be finite and >= 0"));
  xs::frontier_scorer bad;
  bad.p.max_depth = 0;
  CHECK_THROWS_WITH(xs::select_children(xplor::cpu, batch, std::vector<std::int32_t>{0, 0}, 2, 2.0,
                                        std::span<std::int32_t>(next), bad),
                    Catch::Contains("frontier max_depth = 0 must be >= 1"));
  std::vector<std::int32_t> short_out(1);
  CHECK_THROWS_WITH(xs::frontier_best(xplor::cpu, batch, std::span<std::int32_t>(short_out)),
                    Catch::Contains("out has 1 entries for 2 trees"));
  CHECK_THROWS_WITH(xs::tree_batch<xplor::cpu_t>(xplor::cpu, 2, 0),
                    Catch::Contains("capacity = 0 must be >= 1"));
  CHECK_THROWS_WITH(xs::tree_batch<xplor::cpu_t>(xplor::cpu, -1, 4),
                    Catch::Contains("trees = -1 is negative"));
  CHECK_THROWS_WITH(batch.host_tree(2), Catch::Contains("tree 2 is outside [0, 2)"));
}
