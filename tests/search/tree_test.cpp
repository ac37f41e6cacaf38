#include "xplor/search/tree.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

using namespace xplor::search;

namespace {
/// The frontier's best node by a full scan (ties to the lower id): the reference.
std::int32_t scan_best(const tree& t, int width, const frontier_params& p) {
  std::int32_t best = no_node;
  double best_score = frontier_index::neg_inf;
  for (std::int32_t n = 1; n < t.size(); ++n) {
    if (t.terminal(n) || t.children(n) >= width) continue;
    const double s = frontier_score(t.q(t.parent(n)), t.q(n), t.mean_entropy(n), t.depth(n), p);
    if (s > best_score) best_score = s, best = n;
  }
  return best;
}
}  // namespace

TEST_CASE("tree backup on a hand-built tree", "[search][tree]") {
  tree t(8);
  const auto a = t.add_child(root_index, 0.5, false);
  const auto b = t.add_child(root_index, 0.7, false);
  const auto c = t.add_child(a, 0.2, true);
  const auto d = t.add_child(b, 0.9, true);
  CHECK(t.size() == 5);
  CHECK(t.depth(c) == 2);
  t.backup(c, +1.0);  // traj_len 3: w = 1, 2/3, 1/3
  CHECK(t.value(c) == Approx(1.0));
  CHECK(t.value(a) == Approx(2.0 / 3.0));
  CHECK(t.value(root_index) == Approx(1.0 / 3.0));
  t.backup(d, -1.0);
  CHECK(t.value(d) == Approx(-1.0));
  CHECK(t.value(b) == Approx(-2.0 / 3.0));
  CHECK(t.value(root_index) == Approx(1.0 / 3.0));  // positive root, negative update: unchanged
  CHECK(t.visits(root_index) == 2);
  CHECK(t.q(root_index) == Approx(1.0 / 6.0));
  // Frontier (width 2): a and b each lack a child; with lambda4 the better own Q wins.
  frontier_params p;
  p.lambda4 = 1.0;
  frontier_index f(t.capacity());
  rescore_after_backup(t, f, c, 2, p);
  rescore_after_backup(t, f, d, 2, p);
  CHECK(f.best() == a);
  CHECK(f.best_score() ==
        Approx(0.4 * std::tanh(1.0 / 6.0) + std::tanh(2.0 / 3.0) + 0.01 * std::sqrt(1.0 / 64)));
  p.lambda4 = 0.0;  // equal scores: the lower node id
  rescore_after_backup(t, f, d, 2, p);
  rescore_after_backup(t, f, c, 2, p);
  CHECK(f.best() == a);
}

TEST_CASE("incremental frontier equals a full scan after every backup", "[search][tree][property]") {
  std::mt19937 rng(17);
  for (int trial = 0; trial < 20; ++trial) {
    const int width = 1 + static_cast<int>(rng() % 4);
    tree t(400);
    frontier_index f(t.capacity());
    frontier_params p;
    p.lambda4 = 0.3;
    p.uncertainty = trial % 2 == 0;
    for (int attempt = 0; attempt < 20000 && t.size() < t.capacity(); ++attempt) {
      // Expand a random non-terminal node with room, then back up one of its new children.
      std::int32_t n = static_cast<std::int32_t>(rng() % t.size());
      if (t.terminal(n) || t.children(n) >= width) continue;
      const bool terminal = rng() % 3 == 0 || t.depth(n) >= 8;
      const auto child = t.add_child(n, std::uniform_real_distribution<double>(0, 2)(rng), terminal);
      const double v = terminal ? (rng() % 2 ? 1.0 : -1.0) : 0.0;
      if (terminal)
        t.backup(child, v);
      else
        t.visit(child);
      rescore_after_backup(t, f, child, width, p);
      REQUIRE(f.best() == scan_best(t, width, p));
    }
  }
}

TEST_CASE("the sign constraint keeps correct-path nodes non-negative", "[search][tree][property]") {
  std::mt19937 rng(3);
  tree t(2000);
  std::vector<std::int32_t> path{root_index};
  for (int d = 0; d < 6; ++d) path.push_back(t.add_child(path.back(), 0.1, false));
  const auto correct = t.add_child(path.back(), 0.1, true);
  t.backup(correct, +1.0);
  // Many failing trajectories branching off the correct path (non-terminal path nodes only).
  while (t.size() < t.capacity()) {
    const auto from = path[rng() % path.size()];
    const auto leaf = t.add_child(from, 0.1, true);
    t.backup(leaf, -1.0);
  }
  for (auto n : path) REQUIRE(t.value(n) > 0.0);
}

TEST_CASE("tree and frontier reject bad input", "[search][tree]") {
  tree t(3);
  const auto a = t.add_child(root_index, 0.0, false);
  const auto leaf = t.add_child(a, 0.0, true);
  CHECK_THROWS_WITH(t.add_child(leaf, 0.0, false), Catch::Contains("node 2 is terminal"));
  CHECK_THROWS_WITH(t.add_child(a, 0.0, false), Catch::Contains("the tree is full (capacity 3 nodes)"));
  CHECK_THROWS_WITH(t.add_child(7, 0.0, false), Catch::Contains("node 7 does not exist"));
  CHECK_THROWS_WITH(t.backup(leaf, NAN), Catch::Contains("v = nan"));
  CHECK_THROWS_WITH(tree(0), Catch::Contains("capacity = 0"));
  frontier_index f(5);
  CHECK(f.best() == no_node);
  CHECK_THROWS_WITH(f.set(9, 1.0), Catch::Contains("node 9 is outside [0, 8)"));
}
