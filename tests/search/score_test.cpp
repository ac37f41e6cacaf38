#include "xplor/search/score.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

using namespace xplor::search;

TEST_CASE("DeepSearch scoring: worked numbers (docs/methods.md 2.11)", "[search][score]") {
  // 1. Backup weights, terminal at depth 4 (traj_len 5), depths 4..0.
  const double expected[] = {1.0, 0.8, 0.6, 0.4, 0.2};
  for (int depth = 4; depth >= 0; --depth) CHECK(backup_weight(depth, 5, 0.1) == Approx(expected[4 - depth]));
  CHECK(backup_weight(1, 20, 0.1) == Approx(0.1));  // max(2/20, 0.1)
  // 2. Constrained update.
  CHECK(constrained_update(0.0, 1.0, 0.4) == Approx(0.4));
  CHECK(constrained_update(0.4, -1.0, 0.8) == Approx(0.4));  // unchanged
  CHECK(constrained_update(-0.5, 1.0, 0.6) == Approx(0.6));  // reset
  CHECK(constrained_update(-0.2, -1.0, 0.5) == Approx(-0.7));
  // 3. UCT.
  CHECK(uct_score(0.3, 10, 2, 2.0) == Approx(2.445966).epsilon(1e-6));
  CHECK(uct_score(0.3, 0, 2, 2.0) == 0.3);  // no exploration without visits
  CHECK(uct_score(0.3, 10, 0, 2.0) == 0.3);
  // 4. Frontier score with Q_parent = 0.5, Hbar = 1.2, d = 16, d_T = 64.
  frontier_params with_h;
  with_h.uncertainty = true;
  CHECK(frontier_score(0.5, 0.0, 1.2, 16, with_h) == Approx(0.669847).epsilon(1e-6));
  CHECK(frontier_score(0.5, 0.0, 1.2, 16) == Approx(0.189847).epsilon(1e-6));
  // 5. Soft clip.
  CHECK(soft_clip(2.0) == Approx(0.964028).epsilon(1e-6));
  CHECK(soft_clip(0.4) == Approx(0.379949).epsilon(1e-6));
  // With the code's adv_temperature eps_q and q_value_max: tanh(value / eps_q) * q_max.
  CHECK(soft_clip(2.0, 2.0, 0.5) == Approx(0.5 * std::tanh(1.0)));
  // 6. Mean-only advantage: scores [1, -1, -1, -1], mean -0.5; q = [0.4, 0.6, 1.0].
  const std::vector<double> scores{1, -1, -1, -1}, q{0.4, 0.6, 1.0};
  std::vector<double> adv(3);
  mean_only_advantages(scores, q, adv);
  CHECK(adv[0] == Approx(0.9));
  CHECK(adv[1] == Approx(1.1));
  CHECK(adv[2] == Approx(1.5));
}

TEST_CASE("depth bonus kinds and lambda4", "[search][score]") {
  frontier_params p;
  p.lambda1 = 0.0;
  p.lambda3 = 1.0;
  p.bonus = depth_bonus::constant;
  CHECK(frontier_score(0.0, 0.0, 0.0, 7, p) == 7.0);
  p.bonus = depth_bonus::log;
  CHECK(frontier_score(0.0, 0.0, 0.0, 7, p) == Approx(std::log(8.0)));
  p.lambda3 = 0.0;
  p.lambda4 = 2.0;
  CHECK(frontier_score(0.0, 0.5, 0.0, 7, p) == Approx(2.0 * std::tanh(0.5)));
}

TEST_CASE("backup properties: the sign constraint on random update sequences", "[search][score][property]") {
  std::mt19937 rng(4);
  std::uniform_real_distribution<double> weight(0.1, 1.0);
  for (int trial = 0; trial < 1000; ++trial) {
    // A node on a correct path (one +1 backup first) never turns negative afterwards.
    double value = constrained_update(0.0, 1.0, weight(rng));
    for (int k = 0; k < 20; ++k) {
      const double v = rng() % 2 ? 1.0 : -1.0;
      const double before = value;
      value = constrained_update(value, v, weight(rng));
      REQUIRE(value > 0.0);
      if (v > 0)
        REQUIRE(value > before);
      else
        REQUIRE(value == before);
    }
  }
  // Weights are in [floor, 1], reach 1 at the terminal node and never decrease with depth.
  for (int len = 1; len < 70; ++len) {
    double last = 0.0;
    for (int d = 0; d < len; ++d) {
      const double w = backup_weight(d, len, 0.1);
      REQUIRE(w >= 0.1);
      REQUIRE(w <= 1.0);
      REQUIRE(w >= last);
      last = w;
    }
    REQUIRE(last == 1.0);
  }
  // UCT grows with the parent's visits and shrinks with the node's own.
  for (int n = 1; n < 50; ++n) REQUIRE(uct_score(0.1, 100, n + 1, 2.0) < uct_score(0.1, 100, n, 2.0));
}

TEST_CASE("scoring helpers reject bad input", "[search][score]") {
  CHECK_THROWS_WITH(uct_score(NAN, 1, 1, 2.0), Catch::Contains("q = nan"));
  CHECK_THROWS_WITH(uct_score(0.0, -1, 1, 2.0), Catch::Contains("n_parent = -1"));
  CHECK_THROWS_WITH(uct_score(0.0, 1, 1, -2.0), Catch::Contains("lambda = -2"));
  CHECK_THROWS_WITH(backup_weight(5, 5, 0.1), Catch::Contains("depth = 5 is outside [0, traj_len = 5)"));
  CHECK_THROWS_WITH(backup_weight(0, 0, 0.1), Catch::Contains("traj_len = 0"));
  CHECK_THROWS_WITH(backup_weight(0, 3, 1.5), Catch::Contains("floor = 1.5"));
  CHECK_THROWS_WITH(constrained_update(0.0, INFINITY, 0.5), Catch::Contains("must be finite"));
  CHECK_THROWS_WITH(constrained_update(0.0, 1.0, -0.5), Catch::Contains("w = -0.5"));
  CHECK_THROWS_WITH(frontier_score(0.0, 0.0, 0.0, -1), Catch::Contains("depth = -1"));
  CHECK_THROWS_WITH(soft_clip(NAN), Catch::Contains("value = nan"));
  CHECK_THROWS_WITH(soft_clip(1.0, 0.0), Catch::Contains("temperature = 0"));
  CHECK_THROWS_WITH(soft_clip(1.0, 1.0, -1.0), Catch::Contains("q_max = -1"));
  std::vector<double> out(2);
  CHECK_THROWS_WITH(mean_only_advantages(std::vector<double>{}, std::vector<double>{0.1, 0.2}, out),
                    Catch::Contains("terminal_scores is empty"));
  CHECK_THROWS_WITH(mean_only_advantages(std::vector<double>{1.0}, std::vector<double>{0.1}, out),
                    Catch::Contains("out has 2 elements for 1 segments"));
}
