#include "xplor/sample/brorl.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "xplor/core/groups.hpp"
#include "xplor/core/random.hpp"

using namespace xplor::sample;

namespace {

using bytes = std::vector<std::uint8_t>;

/// Q_pos of softmax(z) computed from scratch (the test's own reference, in double).
double correct_mass_of_logits(const std::vector<double>& z, const bytes& correct) {
  double m = z[0];
  for (double v : z) m = std::max(m, v);
  double total = 0.0, pos = 0.0;
  for (std::size_t k = 0; k < z.size(); ++k) {
    const double e = std::exp(z[k] - m);
    total += e;
    if (correct[k] != 0) pos += e;
  }
  return pos / total;
}

/// Q_pos(softmax(log p + dz)) - Q_pos(p) by softmax of the perturbed logits.
double softmax_difference(const std::vector<double>& p, const bytes& correct, const std::vector<double>& dz) {
  std::vector<double> z(p.size()), z1(p.size());
  for (std::size_t k = 0; k < p.size(); ++k) {
    z[k] = std::log(p[k]);
    z1[k] = z[k] + dz[k];
  }
  return correct_mass_of_logits(z1, correct) - correct_mass_of_logits(z, correct);
}

// The worked example of docs/methods.md §1.8 item 1.
const std::vector<double> kP{0.4, 0.3, 0.2, 0.1};
const bytes kCorrect{1, 0, 1, 0};  // P = {0, 2}
const bytes kSampled{1, 1, 0, 0};  // A = {0}, B = {1}, U = {2, 3}

}  // namespace

TEST_CASE("Theorem 1: worked numbers (docs/methods.md 1.8 item 1)", "[sample][brorl]") {
  const auto t = mass_balance(kP, kCorrect, kSampled, 1.0, -1.0);
  CHECK(t.s_r == Approx(0.1).epsilon(1e-12));
  CHECK(t.q_pos == Approx(0.6).epsilon(1e-12));
  CHECK(t.q_neg == Approx(0.4).epsilon(1e-12));
  CHECK(t.p_pos == Approx(0.4).epsilon(1e-12));
  CHECK(t.p_neg == Approx(0.3).epsilon(1e-12));
  CHECK(t.a2 == Approx(0.16).epsilon(1e-12));
  CHECK(t.b2 == Approx(0.09).epsilon(1e-12));
  CHECK(t.u_pos2 == Approx(0.04).epsilon(1e-12));
  CHECK(t.u_neg2 == Approx(0.01).epsilon(1e-12));
  CHECK(t.sampled_correct == Approx(0.0576).epsilon(1e-12));
  CHECK(t.sampled_incorrect == Approx(0.0594).epsilon(1e-12));
  CHECK(t.unsampled_coupling == Approx(-0.0010).epsilon(1e-10));
  CHECK(t.total() == Approx(0.116).epsilon(1e-12));

  // A sample count instead of a flag gives the same terms: each sampled token counts once.
  const bytes counts{3, 1, 0, 0};
  CHECK(mass_balance(kP, kCorrect, counts, 1.0, -1.0).total() == Approx(0.116).epsilon(1e-12));
}

TEST_CASE("Theorem 1: a finite difference of the logit step gives 0.11600", "[sample][brorl]") {
  const double eps = 1e-6;  // dz_k = eps p_k (R_k - S_R): eta/N = eps
  std::vector<double> dz(kP.size());
  first_order_logit_step(kP, kCorrect, kSampled, 1.0, -1.0, eps, dz);
  // dz = eps [0.4 (1 - 0.1), 0.3 (-1 - 0.1), 0.2 (-0.1), 0.1 (-0.1)]
  CHECK(dz[0] == Approx(eps * 0.36).epsilon(1e-12));
  CHECK(dz[1] == Approx(eps * -0.33).epsilon(1e-12));
  CHECK(dz[2] == Approx(eps * -0.02).epsilon(1e-12));
  CHECK(dz[3] == Approx(eps * -0.01).epsilon(1e-12));
  const double by_softmax = softmax_difference(kP, kCorrect, dz) / eps;
  const double by_expm1 = correct_mass_change(kP, kCorrect, dz) / eps;
  CHECK(by_softmax == Approx(0.11600).epsilon(1e-5));
  CHECK(by_expm1 == Approx(0.11600).epsilon(1e-5));
  CHECK(by_expm1 == Approx(by_softmax).epsilon(1e-6));
}

TEST_CASE("Lemma 2, pass@k and the lr factor: worked numbers (docs/methods.md 1.8 items 2, 3, 5)",
          "[sample][brorl]") {
  CHECK(expected_unsampled_second_moment(0.1, 16) == Approx(0.0018530).epsilon(1e-4));
  CHECK(expected_unsampled_second_moment(0.1, 512) == Approx(3.7339e-26).epsilon(1e-4));
  CHECK(expected_unsampled_second_moment(0.1, 0) == Approx(0.01).epsilon(1e-14));
  CHECK(expected_unsampled_second_moment(0.0, 4) == 0.0);
  CHECK(expected_unsampled_second_moment(1.0, 0) == 1.0);
  CHECK(expected_unsampled_second_moment(1.0, 3) == 0.0);

  CHECK(pass_at_k(0.6, 4) == Approx(0.9744).epsilon(1e-12));
  CHECK(pass_at_k(0.6, 1) == Approx(0.6).epsilon(1e-12));
  CHECK(pass_at_k(0.0, 16) == 0.0);
  CHECK(pass_at_k(1.0, 16) == 1.0);

  const brorl_preset preset;
  CHECK(preset.samples_per_step() == 65536);
  CHECK(preset.base_samples_per_step() == 8192);
  CHECK(preset.lr_scale() == Approx(2.8284271).epsilon(1e-7));
  CHECK(preset.learning_rate(1e-6) == Approx(2.8284271e-6).epsilon(1e-7));
  brorl_preset same_batch;
  same_batch.num_generations = 16;
  same_batch.prompts_per_step = 512;
  CHECK(same_batch.lr_scale() == 1.0);
}

TEST_CASE("Lemma 2 is the Monte Carlo mean of the unsampled second moment", "[sample][brorl][property]") {
  // Eight tokens, N = 16 draws per trial: E[sum_{k unsampled} p_k^2] = sum_k p_k^2 (1 - p_k)^N.
  const std::vector<float> w{0.30f, 0.20f, 0.15f, 0.10f, 0.10f, 0.08f, 0.05f, 0.02f};
  const int n = 16, trials = 20000;
  double expected = 0.0;
  for (float v : w) expected += expected_unsampled_second_moment(v, n);
  double mean = 0.0;
  for (int trial = 0; trial < trials; ++trial) {
    bytes seen(w.size(), 0);
    for (int j = 0; j < n; ++j) {
      xplor::philox_stream gen(
          7, xplor::stream_id(static_cast<std::uint32_t>(trial), static_cast<std::uint32_t>(j)));
      seen[static_cast<std::size_t>(xplor::sample_categorical(w, gen))] = 1;
    }
    for (std::size_t k = 0; k < w.size(); ++k)
      if (seen[k] == 0) mean += double(w[k]) * w[k];
  }
  mean /= trials;
  // The per-trial value lies in [0, sum p^2 = 0.1818]; its standard deviation is about 0.01, so
  // the standard error of the mean is about 1e-4.
  CHECK(expected == Approx(0.0098).margin(2e-4));
  CHECK(mean == Approx(expected).margin(6e-4));
}

TEST_CASE("Theorem 1 on random distributions: signs, bounds and finite differences",
          "[sample][brorl][property]") {
  for (std::uint32_t trial = 0; trial < 200; ++trial) {
    xplor::philox_stream gen(2510, xplor::stream_id(trial, 0));
    const std::size_t v = 2 + gen() % 40;
    std::vector<double> p(v);
    bytes correct(v), sampled(v);
    double sum = 0.0;
    for (std::size_t k = 0; k < v; ++k) {
      p[k] = std::exp(3.0 * gen.normal());  // spread over a few orders of magnitude
      sum += p[k];
      correct[k] = gen.uniform() < 0.4f;
      sampled[k] = static_cast<std::uint8_t>(gen.uniform() < 0.5f ? gen() % 3 + 1 : 0);  // counts
    }
    for (double& x : p) x /= sum;
    const double r_c = 2.0 * gen.uniform_double(), r_w = -2.0 * gen.uniform_double();
    const auto t = mass_balance(p, correct, sampled, r_c, r_w);
    INFO("trial " << trial << ", V = " << v << ", R_c = " << r_c << ", R_w = " << r_w);

    CHECK(t.sampled_correct >= 0.0);
    CHECK(t.sampled_incorrect >= 0.0);
    CHECK(t.s_r >= r_w - 1e-15);
    CHECK(t.s_r <= r_c + 1e-15);
    CHECK(t.q_pos + t.q_neg == Approx(1.0).epsilon(1e-15));
    CHECK(t.a2 + t.b2 + t.u_pos2 + t.u_neg2 ==
          Approx(std::inner_product(p.begin(), p.end(), p.begin(), 0.0)).epsilon(1e-12));

    // The linearised softmax change of the logit step equals the theorem's total exactly.
    const double scale = 1e-4;
    std::vector<double> dz(v), minus(v);
    first_order_logit_step(p, correct, sampled, r_c, r_w, scale, dz);
    double mean_dz = 0.0;
    for (std::size_t k = 0; k < v; ++k) mean_dz += p[k] * dz[k];
    double linear = 0.0;
    for (std::size_t k = 0; k < v; ++k)
      if (correct[k] != 0) linear += p[k] * (dz[k] - mean_dz);
    CHECK(linear / scale == Approx(t.total()).epsilon(1e-9).margin(1e-15));

    // Central difference of the exact change: error O(scale^2).
    for (std::size_t k = 0; k < v; ++k) minus[k] = -dz[k];
    const double central =
        (correct_mass_change(p, correct, dz) - correct_mass_change(p, correct, minus)) / (2 * scale);
    CHECK(central == Approx(t.total()).epsilon(1e-6).margin(1e-12));
    const double by_softmax =
        (softmax_difference(p, correct, dz) - softmax_difference(p, correct, minus)) / (2 * scale);
    CHECK(by_softmax == Approx(t.total()).epsilon(1e-5).margin(1e-10));
  }
}

TEST_CASE("Theorem 1 limits: no unsampled tokens, no sampled tokens", "[sample][brorl]") {
  const bytes all{1, 1, 1, 1}, none{0, 0, 0, 0};
  const auto full = mass_balance(kP, kCorrect, all, 1.0, -1.0);
  CHECK(full.unsampled_coupling == 0.0);  // Lemma 2's limit: everything sampled
  CHECK(full.total() >= 0.0);
  const auto empty = mass_balance(kP, kCorrect, none, 1.0, -1.0);
  CHECK(empty.s_r == 0.0);
  CHECK(empty.total() == 0.0);
  // Every token correct: Q_pos = 1 cannot change.
  const bytes all_correct{1, 1, 1, 1};
  CHECK(mass_balance(kP, all_correct, kSampled, 1.0, -1.0).total() == Approx(0.0).margin(1e-15));
}

TEST_CASE("BroRL preset: REINFORCE++ options, clip bounds and dynamic sampling", "[sample][brorl]") {
  const brorl_preset preset;
  CHECK(preset.dynamic_sampling);
  CHECK(preset.advantage_estimator == xplor::rl::estimator::reinforce_pp);
  CHECK(preset.epsilon_low == 0.2f);
  CHECK(preset.epsilon_high == 0.4f);
  const auto loss = preset.loss();
  CHECK(loss.epsilon == 0.2f);
  REQUIRE(loss.epsilon_high.has_value());
  CHECK(*loss.epsilon_high == 0.4f);

  // docs/methods.md §1.8 item 4 with the preset's options (unbiased std): +-1.6202 / +-0.5401.
  const std::vector<float> rewards{1, 0, 0, 0, 1, 1, 1, 0};
  std::vector<float> a(rewards.size());
  xplor::rl::compute_advantages(xplor::cpu, preset.advantage_estimator, std::span<const float>(rewards),
                                xplor::equal_groups(2, 4), std::span(a), preset.advantage);
  const double expected[] = {1.6202, -0.5401, -0.5401, -0.5401, 0.5401, 0.5401, 0.5401, -1.6202};
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(expected[i]).margin(1e-4));

  // Dynamic sampling: all-correct and all-wrong groups are dropped.
  const std::vector<float> r{1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0};
  std::vector<float> adv(r.size());
  bytes degenerate(4);
  const auto report = xplor::rl::compute_advantages(xplor::cpu, preset.advantage_estimator,
                                                    std::span<const float>(r), xplor::equal_groups(4, 4),
                                                    std::span(adv), preset.advantage, std::span(degenerate));
  CHECK(report.degenerate_groups == 2);
  CHECK(keep_nondegenerate_groups(degenerate) == std::vector<std::int64_t>{1, 3});
  CHECK(keep_nondegenerate_groups(bytes{}).empty());
  CHECK(keep_nondegenerate_groups(bytes{1, 1}).empty());
}

TEST_CASE("BroRL functions reject bad input", "[sample][brorl]") {
  using Catch::Contains;
  std::vector<double> dz(4);
  const std::vector<double> unnormalised{0.4, 0.3, 0.2, 0.2};
  CHECK_THROWS_AS(mass_balance(unnormalised, kCorrect, kSampled, 1, -1), xplor::error);
  CHECK_THROWS_WITH(mass_balance(unnormalised, kCorrect, kSampled, 1, -1),
                    Contains("xplor::sample::mass_balance") && Contains("p sums to 1.1"));
  CHECK_THROWS_WITH(mass_balance(std::vector<double>{1.2, -0.2}, bytes{1, 0}, bytes{1, 0}, 1, -1),
                    Contains("p[0] = 1.2 is outside [0, 1]"));
  CHECK_THROWS_WITH(mass_balance(std::vector<double>{0.5, 0.5, 0.0, std::nan("")}, kCorrect, kSampled, 1, -1),
                    Contains("p[3] = nan"));
  CHECK_THROWS_WITH(mass_balance(std::vector<double>{}, bytes{}, bytes{}, 1, -1), Contains("p is empty"));
  CHECK_THROWS_WITH(mass_balance(kP, bytes{1, 0}, kSampled, 1, -1), Contains("correct has 2 elements for 4"));
  CHECK_THROWS_WITH(mass_balance(kP, kCorrect, bytes{1}, 1, -1), Contains("sampled has 1 elements for 4"));
  CHECK_THROWS_WITH(mass_balance(kP, kCorrect, kSampled, -0.5, -1), Contains("reward_correct = -0.5"));
  CHECK_THROWS_WITH(mass_balance(kP, kCorrect, kSampled, 1, 0.5), Contains("reward_wrong = 0.5"));
  CHECK_THROWS_WITH(mass_balance(kP, kCorrect, kSampled, INFINITY, -1), Contains("reward_correct = inf"));
  CHECK_THROWS_WITH(first_order_logit_step(kP, kCorrect, kSampled, 1, -1, -1e-3, dz),
                    Contains("xplor::sample::first_order_logit_step") && Contains("scale = -0.001"));
  std::vector<double> short_dz(3);
  CHECK_THROWS_WITH(first_order_logit_step(kP, kCorrect, kSampled, 1, -1, 1e-3, short_dz),
                    Contains("dz has 3 elements for 4"));
  CHECK_THROWS_WITH(correct_mass_change(kP, kCorrect, short_dz),
                    Contains("xplor::sample::correct_mass_change") && Contains("dz has 3 elements"));
  CHECK_THROWS_WITH(correct_mass_change(kP, kCorrect, std::vector<double>{0, 0, 800, 0}),
                    Contains("dz[2] = 800"));
  CHECK_THROWS_WITH(expected_unsampled_second_moment(0.1, -1),
                    Contains("xplor::sample::expected_unsampled_second_moment") && Contains("n = -1"));
  CHECK_THROWS_WITH(expected_unsampled_second_moment(1.5, 4), Contains("p = 1.5 is outside [0, 1]"));
  CHECK_THROWS_WITH(pass_at_k(0.5, 0),
                    Contains("xplor::sample::pass_at_k") && Contains("k = 0 must be >= 1"));
  CHECK_THROWS_WITH(pass_at_k(-0.1, 4), Contains("q_pos = -0.1"));
  brorl_preset bad;
  bad.num_generations = 0;
  CHECK_THROWS_WITH(bad.lr_scale(),
                    Contains("xplor::sample::brorl_preset") && Contains("num_generations = 0"));
  CHECK_THROWS_WITH(brorl_preset{}.learning_rate(0.0), Contains("base_lr = 0"));
  brorl_preset bad_clip;
  bad_clip.epsilon_low = 1.5f;
  CHECK_THROWS_WITH(bad_clip.loss(), Contains("epsilon_low = 1.5"));
}
