#include "xplor/rl/advantage.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

using namespace xplor::rl;

namespace {
std::vector<float> grpo(const std::vector<float>& r, std::int64_t g, const advantage_options& o = {}) {
  std::vector<float> a(r.size());
  group_advantages(xplor::cpu, std::span<const float>(r), g, std::span<float>(a), o);
  return a;
}
}  // namespace

TEST_CASE("GRPO advantages: TRL worked numbers (docs/methods.md 6.5)", "[rl][advantage]") {
  const std::vector<float> r{1, 0, 0, 1};
  const auto a = grpo(r, 4);
  // Bessel std 0.577350, A = 0.5 / (0.577350 + 1e-4)
  CHECK(a[0] == Approx(0.865875).epsilon(1e-6));
  CHECK(a[1] == Approx(-0.865875).epsilon(1e-6));
  advantage_options none;
  none.scale = scale_rewards::none;
  CHECK(grpo(r, 4, none) == std::vector<float>{0.5f, -0.5f, -0.5f, 0.5f});
}

TEST_CASE("GRPO advantages: verl and TruthRL worked numbers (docs/methods.md 4.7)", "[rl][advantage]") {
  const std::vector<float> ternary{1, 0, -1, -1};
  auto a = grpo(ternary, 4, verl_options());
  const double expected[] = {1.305581, 0.261116, -0.783349, -0.783349};
  for (int i = 0; i < 4; ++i) CHECK(a[i] == Approx(expected[i]).epsilon(1e-5));
  auto pop = verl_options();
  pop.std = std_kind::population;
  a = grpo(ternary, 4, pop);
  const double expected_pop[] = {1.507555, 0.301511, -0.904533, -0.904533};
  for (int i = 0; i < 4; ++i) CHECK(a[i] == Approx(expected_pop[i]).epsilon(1e-5));
  // The binary reward makes an abstention and a hallucination indistinguishable.
  const std::vector<float> binary{1, -1, -1, -1};
  a = grpo(binary, 4, verl_options());
  const double expected_bin[] = {1.5, -0.5, -0.5, -0.5};
  for (int i = 0; i < 4; ++i) CHECK(a[i] == Approx(expected_bin[i]).epsilon(1e-5));
}

TEST_CASE("REINFORCE++ and RLOO: worked numbers (docs/methods.md 1.8)", "[rl][advantage]") {
  const std::vector<float> r{1, 0, 0, 0, 1, 1, 1, 0};
  std::vector<float> a(8);
  advantage_options o;
  o.eps = 0.0f;
  o.std = std_kind::population;
  const auto rep = compute_advantages(xplor::cpu, estimator::reinforce_pp, std::span<const float>(r),
                                      xplor::equal_groups(2, 4), std::span(a), o);
  CHECK(rep.batch_mean == Approx(0.0).margin(1e-12));
  CHECK(rep.batch_std == Approx(0.4330127).epsilon(1e-6));
  const double pop[] = {1.7320508, -0.5773503, -0.5773503, -0.5773503,
                        0.5773503, 0.5773503,  0.5773503,  -1.7320508};
  for (int i = 0; i < 8; ++i) CHECK(a[i] == Approx(pop[i]).epsilon(1e-6));
  o.std = std_kind::unbiased;
  compute_advantages(xplor::cpu, estimator::reinforce_pp, std::span<const float>(r),
                     xplor::equal_groups(2, 4), std::span(a), o);
  CHECK(a[0] == Approx(1.6201852).epsilon(1e-6));
  CHECK(a[1] == Approx(-0.5400617).epsilon(1e-6));
  // RLOO: r_i minus the mean of the other responses of its group.
  compute_advantages(xplor::cpu, estimator::rloo, std::span<const float>(r), xplor::equal_groups(2, 4),
                     std::span(a));
  CHECK(a[0] == Approx(1.0).epsilon(1e-6));         // 1 - (0 + 0 + 0) / 3
  CHECK(a[1] == Approx(-1.0 / 3.0).epsilon(1e-6));  // 0 - (1 + 0 + 0) / 3
  CHECK(a[7] == Approx(-1.0).epsilon(1e-6));        // 0 - (1 + 1 + 1) / 3
}

TEST_CASE("groups of one and all-equal groups stay finite and are flagged", "[rl][advantage]") {
  const std::vector<float> r{0.7f, 1, 1, 1, 0.2f, 0.9f};
  const std::vector<std::int64_t> offsets{0, 1, 4, 6};
  std::vector<float> a(6);
  std::vector<std::uint8_t> flags(3);
  auto rep = compute_advantages(xplor::cpu, estimator::grpo, std::span<const float>(r),
                                xplor::ragged_groups(offsets, 6), std::span(a), {}, std::span(flags));
  CHECK(a[0] == 0.0f);  // TRL: std of one sample is NaN, nan_to_num gives 0
  CHECK(a[1] == 0.0f);
  CHECK(a[3] == 0.0f);
  CHECK(flags == std::vector<std::uint8_t>{1, 1, 0});
  CHECK(rep.degenerate_groups == 2);
  CHECK(rep.frac_zero_std() == Approx(2.0 / 3.0));
  rep = compute_advantages(xplor::cpu, estimator::grpo, std::span<const float>(r),
                           xplor::ragged_groups(offsets, 6), std::span(a), verl_options());
  CHECK(a[0] == Approx(0.7 / (1.0 + 1e-6)));  // verl: mean 0, std 1
  for (float x : a) CHECK(std::isfinite(x));
}

TEST_CASE("advantage properties on random ragged groups", "[rl][advantage][property]") {
  std::mt19937 rng(8);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<int> counts(1 + rng() % 40);
    for (auto& c : counts) c = 2 + static_cast<int>(rng() % 30);
    const auto offsets = xplor::offsets_from_counts(counts);
    const auto n = offsets.back();
    std::vector<float> r(n), shifted(n), a(n), b(n);
    for (auto i = 0; i < n; ++i) {
      r[i] = std::normal_distribution<float>(0.0f, 2.0f)(rng);
      shifted[i] = 3.0f * r[i] + 11.0f;
    }
    advantage_options o;
    o.eps = 0.0f;
    group_advantages(xplor::cpu, std::span<const float>(r), std::span<const std::int64_t>(offsets),
                     std::span(a), o);
    group_advantages(xplor::cpu, std::span<const float>(shifted), std::span<const std::int64_t>(offsets),
                     std::span(b), o);
    for (std::size_t g = 0; g < counts.size(); ++g) {
      double sum = 0, sq = 0;
      for (auto i = offsets[g]; i < offsets[g + 1]; ++i) {
        sum += a[i];
        sq += double(a[i]) * a[i];
        REQUIRE(b[i] == Approx(a[i]).margin(2e-4));  // affine invariance
      }
      REQUIRE(sum == Approx(0.0).margin(1e-4));                    // zero mean per group
      REQUIRE(sq / (counts[g] - 1) == Approx(1.0).epsilon(1e-4));  // unit Bessel variance
    }
  }
}

TEST_CASE("batch scaling and ReBN match across 4 simulated ranks", "[rl][advantage][property]") {
  std::mt19937 rng(13);
  std::vector<float> r(64);
  for (auto& x : r) x = static_cast<float>(rng() % 5) * 0.25f;
  advantage_options batch;
  batch.scale = scale_rewards::batch;
  std::vector<float> single(64), ranked(64);
  group_advantages(xplor::cpu, std::span<const float>(r), 8, std::span(single), batch);
  // TRL "batch": (r - mean_g) / (std of all rewards, Bessel + 1e-4).
  double mean = 0, var = 0;
  for (float x : r) mean += x / 64.0;
  for (float x : r) var += (x - mean) * (x - mean) / 63.0;
  double g0 = 0;
  for (int i = 0; i < 8; ++i) g0 += r[i] / 8.0;
  CHECK(single[0] == Approx((r[0] - g0) / (std::sqrt(var) + 1e-4)).epsilon(1e-5));

  // Each rank holds 2 groups; the all-reduce hands every rank the totals of all 4.
  double totals[3] = {0, 0, 0};
  for (int k = 0; k < 4; ++k) {
    advantage_options local = batch;
    local.allreduce = [&](std::span<double, 3> s) {
      for (int j = 0; j < 3; ++j) totals[j] += s[j];
    };
    std::vector<float> scratch(16);
    group_advantages(xplor::cpu, std::span<const float>(r).subspan(16 * k, 16), 8, std::span(scratch), local);
  }
  for (int k = 0; k < 4; ++k) {
    advantage_options global = batch;
    global.allreduce = [&](std::span<double, 3> s) { std::copy(totals, totals + 3, s.begin()); };
    group_advantages(xplor::cpu, std::span<const float>(r).subspan(16 * k, 16), 8,
                     std::span(ranked).subspan(16 * k, 16), global);
  }
  for (int i = 0; i < 64; ++i) REQUIRE(ranked[i] == Approx(single[i]).epsilon(1e-6));

  std::vector<float> rebn_single(64), rebn_ranked(64);
  rebn_advantages(xplor::cpu, std::span<const float>(r), std::span(rebn_single));
  for (int k = 0; k < 4; ++k) {
    rebn_options o;
    o.allreduce = [&](std::span<double, 3> s) {
      // The same totals: ReBN normalises the same values here.
      std::copy(totals, totals + 3, s.begin());
    };
    rebn_advantages(xplor::cpu, std::span<const float>(r).subspan(16 * k, 16),
                    std::span(rebn_ranked).subspan(16 * k, 16), o);
  }
  for (int i = 0; i < 64; ++i) REQUIRE(rebn_ranked[i] == Approx(rebn_single[i]).epsilon(1e-6));
}

TEST_CASE("discounted returns and ReBN: GEM worked numbers (docs/methods.md 5.7)", "[rl][advantage]") {
  const std::vector<float> rewards{0, 0, 1, 0.5f};
  const std::vector<std::int64_t> episodes{0, 3, 4};
  std::vector<float> g(4), a(4);
  discounted_returns(rewards, episodes, 0.9f, g);
  CHECK(g[0] == Approx(0.81f));
  CHECK(g[1] == Approx(0.9f));
  CHECK(g[2] == 1.0f);
  CHECK(g[3] == 0.5f);
  const auto rep = rebn_advantages(xplor::cpu, std::span<const float>(g), std::span(a), rebn_options{});
  CHECK(rep.batch_mean == Approx(0.8025));
  CHECK(rep.batch_std == Approx(0.187133).epsilon(1e-5));
  const double expected[] = {0.040078, 0.521020, 1.055399, -1.616498};
  for (int i = 0; i < 4; ++i) CHECK(a[i] == Approx(expected[i]).epsilon(1e-4));
  // gamma = 1, one episode [0, 0, 1]: returns all 1, std 0, A = 0 / (0 + 1e-9) = 0, no NaN.
  const std::vector<float> one{0, 0, 1};
  const std::vector<std::int64_t> ep{0, 3};
  std::vector<float> g1(3), a1(3);
  discounted_returns(one, ep, 1.0f, g1);
  CHECK(g1 == std::vector<float>{1, 1, 1});
  rebn_advantages(xplor::cpu, std::span<const float>(g1), std::span(a1));
  CHECK(a1 == std::vector<float>{0, 0, 0});
}

TEST_CASE("advantages reject bad input", "[rl][advantage]") {
  std::vector<float> r{1, 0, NAN, 1}, out(4), short_out(3);
  CHECK_THROWS_WITH(group_advantages(xplor::cpu, std::span<const float>(r), 2, std::span(out)),
                    Catch::Contains("rewards[2] is not finite"));
  r[2] = 0;
  CHECK_THROWS_WITH(group_advantages(xplor::cpu, std::span<const float>(r), 3, std::span(out)),
                    Catch::Contains("not a multiple of group_size = 3"));
  CHECK_THROWS_WITH(group_advantages(xplor::cpu, std::span<const float>(r), 0, std::span(out)),
                    Catch::Contains("group_size = 0"));
  CHECK_THROWS_WITH(group_advantages(xplor::cpu, std::span<const float>(r), 2, std::span(short_out)),
                    Catch::Contains("out has 3 elements for 4 rewards"));
  const std::vector<std::int64_t> short_offsets{0, 2, 3};
  CHECK_THROWS_WITH(group_advantages(xplor::cpu, std::span<const float>(r),
                                     std::span<const std::int64_t>(short_offsets), std::span(out)),
                    Catch::Contains("offsets end at 3 but the data has 4"));
  advantage_options bad;
  bad.eps = -1.0f;
  CHECK_THROWS_WITH(group_advantages(xplor::cpu, std::span<const float>(r), 2, std::span(out), bad),
                    Catch::Contains("options.eps = -1"));
  const std::vector<std::int64_t> ep{0, 4};
  CHECK_THROWS_WITH(discounted_returns(r, ep, -0.5f, out), Catch::Contains("gamma = -0.5"));
  CHECK_THROWS_WITH(discounted_returns(r, ep, 1.5f, out), Catch::Contains("gamma = 1.5"));
}

TEST_CASE("group_advantages reports degenerate groups (DAPO dynamic sampling)", "[rl][advantage]") {
  // Groups of 4: [1,1,1,1] and [0,0,0,0] have std 0, [1,0,0,1] does not.
  const std::vector<float> r{1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0};
  std::vector<float> a(r.size());
  const advantage_report equal =
      group_advantages(xplor::cpu, std::span<const float>(r), 4, std::span<float>(a));
  CHECK(equal.num_groups == 3);
  CHECK(equal.degenerate_groups == 2);
  CHECK(equal.frac_zero_std() == Approx(2.0 / 3.0));
  const std::vector<std::int64_t> offsets{0, 4, 8, 12};
  const advantage_report ragged = group_advantages(
      xplor::cpu, std::span<const float>(r), std::span<const std::int64_t>(offsets), std::span<float>(a));
  CHECK(ragged.degenerate_groups == 2);
  // Random rewards: the count matches a direct scan of the groups.
  std::mt19937 gen(3);
  std::bernoulli_distribution coin(0.3);
  std::vector<float> rr(8 * 64);
  for (float& x : rr) x = coin(gen) ? 1.0f : 0.0f;
  std::vector<float> aa(rr.size());
  const auto rep = group_advantages(xplor::cpu, std::span<const float>(rr), 8, std::span<float>(aa));
  std::int64_t constant = 0;
  for (int g = 0; g < 64; ++g)
    constant +=
        std::all_of(rr.begin() + 8 * g, rr.begin() + 8 * g + 8, [&](float x) { return x == rr[8 * g]; });
  CHECK(rep.degenerate_groups == constant);
}
