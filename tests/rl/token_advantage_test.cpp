// verl's advantage estimators: the token-level ones (GAE, REINFORCE++, ReMax, masked whitening)
// and the outcome estimators added to compute_advantages (OPO, pass@k, GPG), by hand, as
// properties and on bad input.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "xplor/rl/advantage.hpp"
#include "xplor/rl/token_advantage.hpp"

using namespace xplor::rl;

namespace {
void require_near(const std::vector<float>& got, const std::vector<double>& want, double margin = 1e-6) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(want[i]).margin(margin));
}
}  // namespace

TEST_CASE("masked_whiten: verl's mean, Bessel variance and 1e-8", "[rl][advantage][token]") {
  const std::vector<float> v{1, 2, 3, 4}, m{1, 1, 1, 0};
  std::vector<float> out(4);
  masked_whiten(xplor::cpu, std::span<const float>(v), std::span<const float>(m), std::span(out));
  // mean 2, Bessel variance (1 + 0 + 1) / 3 * 3 / 2 = 1: the masked-out value is whitened too.
  require_near(out, {-1, 0, 1, 2});
  masked_whiten(xplor::cpu, std::span<const float>(v), std::span<const float>(m), std::span(out), false);
  require_near(out, {1, 2, 3, 4});
  const std::vector<float> one{0, 1, 0, 0};
  CHECK_THROWS_WITH(
      masked_whiten(xplor::cpu, std::span<const float>(v), std::span<const float>(one), std::span(out)),
      Catch::Contains("more than one token"));
}

TEST_CASE("GAE by hand, with padding carried as verl carries it", "[rl][advantage][token]") {
  const std::vector<float> r{0, 0, 1}, values{0.5f, 0.6f, 0.7f}, m{1, 1, 1};
  const std::vector<std::int64_t> offsets{0, 3};
  std::vector<float> adv(3), ret(3);
  auto run = [&](const std::vector<float>& rr, const std::vector<float>& mm, float gamma, float lam) {
    gae_advantages(xplor::cpu, std::span<const float>(rr), std::span<const float>(values),
                   std::span<const float>(mm), offsets, gamma, lam, std::span(adv), std::span(ret), false);
  };
  run(r, m, 1.0f, 1.0f);
  require_near(adv, {0.5, 0.4, 0.3});
  require_near(ret, {1.0, 1.0, 1.0});
  run(r, m, 0.9f, 0.5f);  // deltas 0.04, 0.03, 0.3; A_t = delta_t + 0.45 A_{t+1}
  require_near(adv, {0.04 + 0.45 * (0.03 + 0.45 * 0.3), 0.03 + 0.45 * 0.3, 0.3});
  run({0, 1, 0}, {1, 1, 0}, 1.0f, 1.0f);  // the padded last position neither contributes nor bootstraps
  require_near(adv, {0.5, 0.4, 0.0});
  // verl whitens the advantages over the mask.
  gae_advantages(xplor::cpu, std::span<const float>(r), std::span<const float>(values),
                 std::span<const float>(m), offsets, 1.0f, 1.0f, std::span(adv), std::span(ret));
  require_near(adv, {1.0, 0.0, -1.0}, 1e-5);  // (0.5, 0.4, 0.3): mean 0.4, Bessel std 0.1
}

TEST_CASE("REINFORCE++ token returns, ReMax and spreading outcome advantages", "[rl][advantage][token]") {
  const std::vector<float> r{0, 0, 1, 0, 2, 0}, m{1, 1, 1, 1, 1, 0};
  const std::vector<std::int64_t> offsets{0, 3, 6};
  std::vector<float> adv(6), ret(6);
  reinforce_pp_token_advantages(xplor::cpu, std::span<const float>(r), std::span<const float>(m), offsets,
                                1.0f, std::span(adv), std::span(ret));
  require_near(ret, {1, 1, 1, 2, 2, 0});
  // A masked position inside a response (an observation span) passes the return through.
  const std::vector<float> gap_m{1, 0, 1, 1, 1, 1}, gap_r{0, 5, 1, 0, 0, 1};
  std::vector<float> gap_adv(6), gap_ret(6);
  reinforce_pp_token_advantages(xplor::cpu, std::span<const float>(gap_r), std::span<const float>(gap_m),
                                offsets, 0.5f, std::span(gap_adv), std::span(gap_ret));
  require_near(gap_ret, {0.5, 0, 1, 0.25, 0.5, 1});
  // Whitened over the 5 masked tokens: mean 1.4, Bessel variance 0.3; padding times the mask.
  const double sd = std::sqrt(0.3 + 1e-8);
  require_near(adv, {-0.4 / sd, -0.4 / sd, -0.4 / sd, 0.6 / sd, 0.6 / sd, 0.0}, 1e-5);

  const std::vector<float> baselines{0.5f, 3.0f};
  remax_advantages(xplor::cpu, std::span<const float>(r), std::span<const float>(baselines),
                   std::span<const float>(m), offsets, std::span(adv), std::span(ret));
  require_near(ret, {1, 1, 1, 2, 2, 0});
  require_near(adv, {0.5, 0.5, 0.5, -1, -1, 0});

  const std::vector<float> seq{2.0f, -1.0f};
  spread_over_tokens(xplor::cpu, std::span<const float>(seq), std::span<const float>(m), offsets,
                     std::span(adv));
  require_near(adv, {2, 2, 2, -1, -1, 0});
  CHECK_THROWS_WITH(
      remax_advantages(xplor::cpu, std::span<const float>(r), std::span<const float>(seq.data(), 1),
                       std::span<const float>(m), offsets, std::span(adv), std::span(ret)),
      Catch::Contains("baselines has 1 elements for 2 sequences"));
  CHECK_THROWS_WITH(
      gae_advantages(xplor::cpu, std::span<const float>(r), std::span<const float>(r),
                     std::span<const float>(m), offsets, 1.5f, 1.0f, std::span(adv), std::span(ret)),
      Catch::Contains("gamma = 1.5"));
}

TEST_CASE("OPO, pass@k and GPG outcome advantages", "[rl][advantage]") {
  const std::vector<std::int64_t> offsets{0, 3};
  const xplor::ragged_groups g(offsets, 3);
  const std::vector<float> r{1, 0, 1}, len{2, 4, 6};
  std::vector<float> a(3);
  compute_advantages(xplor::cpu, estimator::opo, std::span<const float>(r), g, std::span(a), verl_options(),
                     {}, std::span<const float>(len));
  require_near(a, {1.0 / 3.0, -2.0 / 3.0, 1.0 / 3.0});  // baseline (2 + 6) / 12
  CHECK_THROWS_WITH(
      compute_advantages(xplor::cpu, estimator::opo, std::span<const float>(r), g, std::span(a)),
      Catch::Contains("opo needs lengths"));
  const std::vector<float> bad_len{2, -1, 6};
  CHECK_THROWS_WITH(compute_advantages(xplor::cpu, estimator::opo, std::span<const float>(r), g, std::span(a),
                                       verl_options(), {}, std::span<const float>(bad_len)),
                    Catch::Contains("lengths[1] must be finite and >= 0"));

  const std::vector<std::int64_t> off4{0, 4};
  const std::vector<float> rk{0.0f, 1.0f, 0.0f, 0.5f};
  std::vector<float> ak(4);
  compute_advantages(xplor::cpu, estimator::pass_at_k, std::span<const float>(rk),
                     xplor::ragged_groups(off4, 4), std::span(ak), verl_options());
  const double sd = std::sqrt(0.6875 / 3.0);  // Bessel std of the group
  require_near(ak, {0.0, 0.5 / (sd + 1e-6), 0.0, 0.0});
  const std::vector<std::int64_t> single{0, 1, 4};
  CHECK_THROWS_WITH(compute_advantages(xplor::cpu, estimator::pass_at_k, std::span<const float>(rk),
                                       xplor::ragged_groups(single, 4), std::span(ak), verl_options()),
                    Catch::Contains("group 0 has 1"));

  const std::vector<float> rg{1, 0, 0, 0, 1, 1};
  std::vector<float> ag(6);
  compute_advantages(xplor::cpu, estimator::gpg, std::span<const float>(rg), xplor::equal_groups(3, 2),
                     std::span(ag), verl_options());
  require_near(ag, {1, -1, 0, 0, 0, 0});  // alpha = 6 responses / 3 nonzero = 2
}

TEST_CASE("frac_zero_std under batch scaling is TRL's batch-std test", "[rl][advantage]") {
  const std::vector<float> r{1, 1, 0, 1};  // group 0 has std 0, the batch does not
  std::vector<float> a(4);
  advantage_options o;
  auto rep = group_advantages(xplor::cpu, std::span<const float>(r), 2, std::span(a), o);
  CHECK(rep.frac_zero_std() == Approx(0.5));
  o.scale = scale_rewards::batch;
  rep = group_advantages(xplor::cpu, std::span<const float>(r), 2, std::span(a), o);
  CHECK(rep.frac_zero_std() == 0.0);
  const std::vector<float> flat{0.5f, 0.5f, 0.5f, 0.5f};
  rep = group_advantages(xplor::cpu, std::span<const float>(flat), 2, std::span(a), o);
  CHECK(rep.frac_zero_std() == 1.0);
}

TEST_CASE("token estimators: properties on random batches", "[rl][advantage][token][property]") {
  std::mt19937 rng(12);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<int> lengths(1 + rng() % 6);
    for (auto& l : lengths) l = 1 + static_cast<int>(rng() % 9);
    const auto offsets = xplor::offsets_from_counts(lengths);
    const auto T = offsets.back();
    std::vector<float> r(T), v(T), m(T), adv(T), ret(T);
    for (std::int64_t t = 0; t < T; ++t) {
      r[t] = nd(rng);
      v[t] = nd(rng);
      m[t] = rng() % 4 == 0 ? 0.0f : 1.0f;
    }
    m[0] = m[T > 1 ? 1 : 0] = 1.0f;
    if (T < 2) continue;
    // lambda = 1: the GAE advantage plus the value is the discounted return of the masked
    // rewards (a telescoping sum), whatever the values.
    gae_advantages(xplor::cpu, std::span<const float>(r), std::span<const float>(v),
                   std::span<const float>(m), offsets, 0.95f, 1.0f, std::span(adv), std::span(ret), false);
    std::vector<float> zero(T, 0.0f), adv0(T), ret0(T);
    gae_advantages(xplor::cpu, std::span<const float>(r), std::span<const float>(zero),
                   std::span<const float>(m), offsets, 0.95f, 1.0f, std::span(adv0), std::span(ret0), false);
    for (std::int64_t t = 0; t < T; ++t)
      if (m[t] == 1.0f) REQUIRE(ret[t] == Approx(ret0[t]).margin(1e-4));
    // Whitened values have zero masked mean and unit Bessel variance.
    std::vector<float> w(T);
    if (std::count(m.begin(), m.end(), 1.0f) < 2) continue;
    masked_whiten(xplor::cpu, std::span<const float>(r), std::span<const float>(m), std::span(w));
    double s = 0, s2 = 0, n = 0;
    for (std::int64_t t = 0; t < T; ++t)
      if (m[t] == 1.0f) s += w[t], s2 += double(w[t]) * w[t], n += 1;
    CHECK(s / n == Approx(0.0).margin(1e-5));
    CHECK((s2 - s * s / n) / (n - 1) == Approx(1.0).epsilon(1e-4));
  }
}
