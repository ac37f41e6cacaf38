// xplor::rl::aggregate_rewards: several reward functions into advantages (TRL
// multi_objective_aggregation), on top of the GRPO and batch normalisations of advantage.hpp.
#include "xplor/rl/reward_aggregation.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <optional>
#include <random>
#include <vector>

using xplor::equal_groups;
using xplor::ragged_groups;
using xplor::rl::aggregate_options;
using xplor::rl::aggregate_rewards;
using xplor::rl::aggregation;
using xplor::rl::scale_rewards;

namespace {
using opt = std::optional<float>;

std::vector<opt> column(const std::vector<float>& v) { return std::vector<opt>(v.begin(), v.end()); }
}  // namespace

TEST_CASE("sum_then_normalize reproduces TRL's advantages (docs/methods.md 6.5)", "[rl][aggregation]") {
  const std::vector<opt> r = column({1, 0, 0, 1});
  const std::vector<float> w{1.0f};
  const auto group = aggregate_rewards(r, w, equal_groups(1, 4));
  // Bessel std 0.577350; A = 0.5 / (0.577350 + 1e-4) = 0.865875.
  CHECK(group.advantages[0] == Approx(0.865875).epsilon(1e-6));
  CHECK(group.advantages[1] == Approx(-0.865875).epsilon(1e-6));
  CHECK(group.rewards == std::vector<float>{1, 0, 0, 1});
  CHECK(group.frac_zero_std == 0.0);
  aggregate_options none;
  none.scale = scale_rewards::none;
  const auto plain = aggregate_rewards(r, w, equal_groups(1, 4), none);
  CHECK(plain.advantages == std::vector<float>{0.5f, -0.5f, -0.5f, 0.5f});
}

TEST_CASE("TruthRL groups under verl's conventions (docs/methods.md 4.7)", "[rl][aggregation]") {
  aggregate_options verl;
  verl.eps = 1e-6f;
  const std::vector<float> w{1.0f};
  const auto ternary = aggregate_rewards(column({1, 0, -1, -1}), w, equal_groups(1, 4), verl);
  CHECK(ternary.advantages[0] == Approx(1.305581).epsilon(1e-6));
  CHECK(ternary.advantages[1] == Approx(0.261116).epsilon(1e-5));
  CHECK(ternary.advantages[2] == Approx(-0.783349).epsilon(1e-6));
  CHECK(ternary.advantages[3] == Approx(-0.783349).epsilon(1e-6));
  // Binary: the abstention and the hallucination become indistinguishable.
  const auto binary = aggregate_rewards(column({1, -1, -1, -1}), w, equal_groups(1, 4), verl);
  CHECK(binary.advantages[0] == Approx(1.5).epsilon(1e-5));
  for (int k = 1; k < 4; ++k) CHECK(binary.advantages[k] == Approx(-0.5).epsilon(1e-5));
}

TEST_CASE("weighted functions with not-applicable values, both aggregations", "[rl][aggregation]") {
  // Two groups of two samples, two functions with weights 1 and 0.5; sample 2 has no value for
  // function 1.
  const std::vector<opt> r{1.0f, 0.0f, 0.0f, 1.0f, 1.0f, std::nullopt, 1.0f, 2.0f};
  const std::vector<float> w{1.0f, 0.5f};
  const equal_groups groups(2, 2);

  // sum_then_normalize: r = [1, 0.5, 1, 2]; group z-scores with Bessel std and eps 1e-4.
  const auto sum = aggregate_rewards(r, w, groups);
  CHECK(sum.rewards == std::vector<float>{1.0f, 0.5f, 1.0f, 2.0f});
  CHECK(sum.advantages[0] == Approx(0.7069068377).epsilon(1e-6));
  CHECK(sum.advantages[1] == Approx(-0.7069068377).epsilon(1e-6));
  CHECK(sum.advantages[2] == Approx(-0.7070067953).epsilon(1e-6));
  CHECK(sum.advantages[3] == Approx(0.7070067953).epsilon(1e-6));
  aggregate_options batch;
  batch.scale = scale_rewards::batch;
  const auto by_batch = aggregate_rewards(r, w, groups, batch);
  CHECK(by_batch.advantages[0] == Approx(0.3972965593).epsilon(1e-6));
  CHECK(by_batch.advantages[2] == Approx(-0.7945931185).epsilon(1e-6));

  // normalize_then_sum: group 0 gives each function z = +-0.5/(sqrt(0.5) + 1e-4); group 1 has a
  // constant function 0 (z = 0) and a single value of function 1 (left out, as TRL's nanstd).
  aggregate_options nts;
  nts.mode = aggregation::normalize_then_sum;
  const auto norm = aggregate_rewards(r, w, groups, nts);
  CHECK(norm.rewards[0] == Approx(0.3535033977).epsilon(1e-6));
  CHECK(norm.rewards[1] == Approx(-0.3535033977).epsilon(1e-6));
  CHECK(norm.rewards[2] == 0.0f);
  CHECK(norm.rewards[3] == 0.0f);
  CHECK(norm.advantages[0] == Approx(1.2243206943).epsilon(1e-6));
  CHECK(norm.advantages[1] == Approx(-1.2243206943).epsilon(1e-6));
  CHECK(norm.advantages[2] == 0.0f);
}

TEST_CASE("ragged groups, groups of one and constant groups", "[rl][aggregation]") {
  const std::vector<float> w{1.0f};
  const std::vector<std::int64_t> offsets{0, 1, 4, 6};
  const std::vector<opt> r = column({5, 1, 2, 3, 7, 7});
  const auto out = aggregate_rewards(r, w, ragged_groups(offsets, 6));
  CHECK(out.advantages[0] == 0.0f);  // a group of one: mean = itself, std 0
  CHECK(out.advantages[1] == Approx(-1.0 / (1.0 + 1e-4)));
  CHECK(out.advantages[2] == 0.0f);
  CHECK(out.advantages[3] == Approx(1.0 / (1.0 + 1e-4)));
  CHECK(out.advantages[4] == 0.0f);
  CHECK(out.frac_zero_std == Approx(3.0 / 6.0));
  // eps = 0 on a constant group: 0 / 0 becomes 0, as TRL's NaN -> 0.
  aggregate_options zero_eps;
  zero_eps.eps = 0.0f;
  const auto z = aggregate_rewards(r, w, ragged_groups(offsets, 6), zero_eps);
  CHECK(z.advantages[5] == 0.0f);
  CHECK(z.advantages[1] == -1.0f);
  // All samples without any applicable reward sum to 0.
  const std::vector<opt> empty(4, std::nullopt);
  const auto e = aggregate_rewards(empty, w, equal_groups(2, 2));
  CHECK(e.rewards == std::vector<float>(4, 0.0f));
  CHECK(e.advantages == std::vector<float>(4, 0.0f));
  CHECK(e.frac_zero_std == 1.0);
}

TEST_CASE("aggregate_rewards rejects bad input", "[rl][aggregation]") {
  const std::vector<float> w{1.0f};
  const std::vector<opt> r = column({1, 2, 3, 4});
  CHECK_THROWS_WITH(aggregate_rewards(r, std::vector<float>{}, equal_groups(1, 4)),
                    Catch::Contains("weights is empty"));
  CHECK_THROWS_WITH(aggregate_rewards(r, std::vector<float>{1.0f, NAN}, equal_groups(1, 2)),
                    Catch::Contains("weights[1] = nan"));
  CHECK_THROWS_WITH(aggregate_rewards(r, w, equal_groups(1, 3)),
                    Catch::Contains("rewards_per_func has 4 values; expected 3 samples x 1 functions"));
  std::vector<opt> nan = r;
  nan[2] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(aggregate_rewards(nan, w, equal_groups(1, 4)),
                    Catch::Contains("aggregate_rewards") && Catch::Contains("rewards_per_func[2, 0] = nan"));
  nan[2] = -std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH(aggregate_rewards(nan, w, equal_groups(1, 4)), Catch::Contains("= -inf"));
  aggregate_options o;
  o.eps = -1.0f;
  CHECK_THROWS_WITH(aggregate_rewards(r, w, equal_groups(1, 4), o), Catch::Contains("eps = -1"));
}

TEST_CASE("aggregation properties on random rewards", "[rl][aggregation][property]") {
  std::mt19937 gen(2718);
  std::uniform_real_distribution<float> value(-3.0f, 3.0f);
  std::uniform_int_distribution<int> size(2, 9);
  std::bernoulli_distribution missing(0.2);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<int> counts(4);
    for (auto& c : counts) c = size(gen);
    const auto offsets = xplor::offsets_from_counts(counts);
    const std::int64_t n = offsets.back();
    const std::size_t k_funcs = 3;
    std::vector<opt> r(static_cast<std::size_t>(n) * k_funcs);
    for (auto& v : r)
      if (!missing(gen)) v = value(gen);
    const std::vector<float> w{1.0f, 0.5f, -2.0f};
    const ragged_groups groups(offsets, n);

    // sum_then_normalize: not applicable == 0 in the sum; advantages centred in every group, and
    // with group scaling their Bessel std is std / (std + eps) < 1.
    std::vector<opt> zeros = r;
    for (auto& v : zeros)
      if (!v) v = 0.0f;
    const auto a = aggregate_rewards(r, w, groups);
    const auto b = aggregate_rewards(zeros, w, groups);
    CHECK(a.advantages == b.advantages);
    for (std::int64_t g = 0; g < groups.num_groups(); ++g) {
      double mean = 0.0;
      for (auto i = groups.begin(g); i < groups.end(g); ++i)
        mean += a.advantages[static_cast<std::size_t>(i)];
      CHECK(std::abs(mean) < 1e-4);
    }

    // normalize_then_sum: batch-centred advantages; scaling all weights by c > 0 changes nothing
    // (up to eps); a function that is constant everywhere contributes nothing.
    aggregate_options nts;
    nts.mode = aggregation::normalize_then_sum;
    const auto c = aggregate_rewards(r, w, groups, nts);
    double mean = 0.0;
    for (float v : c.advantages) mean += v;
    CHECK(std::abs(mean / static_cast<double>(n)) < 1e-5);
    const std::vector<float> w3{3.0f, 1.5f, -6.0f};
    const auto d = aggregate_rewards(r, w3, groups, nts);
    for (std::size_t i = 0; i < c.advantages.size(); ++i)
      CHECK(d.advantages[i] == Approx(c.advantages[i]).margin(1e-3));
    std::vector<opt> constant = r;
    for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) constant[i * k_funcs + 2] = 4.0f;
    const std::vector<float> w_off{1.0f, 0.5f, 0.0f};
    const auto e = aggregate_rewards(constant, w, groups, nts);
    const auto f = aggregate_rewards(r, w_off, groups, nts);
    for (std::size_t i = 0; i < e.advantages.size(); ++i)
      CHECK(e.advantages[i] == Approx(f.advantages[i]).margin(1e-5));
  }
}
