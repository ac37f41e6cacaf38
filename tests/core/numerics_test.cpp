#include "xplor/core/numerics.hpp"

#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace {
constexpr float ninf = -std::numeric_limits<float>::infinity();
}

TEST_CASE("logsumexp, log_softmax and entropy: hand-computed values", "[numerics]") {
  const std::vector<float> z{1, 2, 3};
  // lse = 3 + log(1 + e^-1 + e^-2) = 3.4076059644...
  CHECK(xplor::logsumexp(z) == Approx(3.4076059644f).epsilon(1e-6));
  std::vector<float> lp(3), p(3);
  xplor::log_softmax(z, lp);
  CHECK(lp[0] == Approx(-2.4076059644f).epsilon(1e-6));
  CHECK(lp[2] == Approx(-0.4076059644f).epsilon(1e-6));
  xplor::softmax(z, p);
  CHECK(p[0] == Approx(0.0900305732f).epsilon(1e-6));
  CHECK(p[1] == Approx(0.2447284711f).epsilon(1e-6));
  // H = lse - sum p z = 3.4076059644 - (0.0900305732 + 2 * 0.2447284711 + 3 * 0.6652409558)
  CHECK(xplor::entropy(z) == Approx(0.8323955).epsilon(1e-5));
  const std::vector<float> uniform4{0.3f, 0.3f, 0.3f, 0.3f};
  CHECK(xplor::entropy(uniform4) == Approx(std::log(4.0f)).epsilon(1e-6));
  const std::vector<float> one_left{ninf, 5.0f, ninf};
  CHECK(xplor::entropy(one_left) == 0.0f);
  CHECK(xplor::logsumexp(one_left) == 5.0f);
  xplor::log_softmax(one_left, lp);
  CHECK(lp[0] == ninf);
  CHECK(lp[1] == 0.0f);
}

TEST_CASE("numerics are stable for huge logits", "[numerics]") {
  const std::vector<float> z{1.0e4f, 1.0e4f};
  CHECK(xplor::logsumexp(z) == Approx(1.0e4f + std::log(2.0f)));
  CHECK(xplor::entropy(z) == Approx(std::log(2.0f)).epsilon(1e-6));
  const std::vector<float> far{-1.0e30f, 0.0f};
  CHECK(xplor::entropy(far) == 0.0f);
  // log_softmax in the shifted domain: z - (m + log s) would round m + log s to m's spacing (8
  // at 1e8) and give 0 for both tokens.
  const std::vector<float> huge{1.0e8f, 1.0e8f};
  std::vector<float> lp(2);
  xplor::log_softmax(huge, lp);
  CHECK(lp[0] == Approx(-std::log(2.0f)).margin(1e-7));
  CHECK(lp[1] == lp[0]);
}

TEST_CASE("softmax properties on random rows", "[numerics][property]") {
  std::mt19937 rng(17);
  for (int trial = 0; trial < 200; ++trial) {
    const std::size_t n = 1 + rng() % 2000;
    const float scale = std::uniform_real_distribution<float>(0.01f, 30.0f)(rng);
    std::vector<float> z(n), p(n), lp(n), shifted(n);
    for (auto& v : z) v = std::normal_distribution<float>(0.0f, scale)(rng);
    if (n > 3) z[rng() % n] = ninf;  // a removed token
    xplor::softmax(z, p);
    xplor::log_softmax(z, lp);
    double total = 0;
    for (std::size_t i = 0; i < n; ++i) {
      total += p[i];
      if (p[i] > 1e-30f) REQUIRE(lp[i] == Approx(std::log(p[i])).margin(1e-4));
      if (z[i] == ninf) REQUIRE(p[i] == 0.0f);
    }
    REQUIRE(total == Approx(1.0).epsilon(1e-5));
    const float h = xplor::entropy(z);
    REQUIRE(h >= -1e-5f);
    REQUIRE(h <= std::log(float(n)) + 1e-4f);
    // Shift invariance.
    for (std::size_t i = 0; i < n; ++i) shifted[i] = z[i] + 37.5f;
    REQUIRE(xplor::entropy(shifted) == Approx(h).margin(2e-4));
    REQUIRE(xplor::logsumexp(shifted) == Approx(xplor::logsumexp(z) + 37.5f).epsilon(1e-5));
  }
}

TEST_CASE("pairwise summation does not drift where naive fp32 summation does", "[numerics]") {
  const std::int64_t n = 1 << 22;
  float naive = 0.0f;
  for (std::int64_t i = 0; i < n; ++i) naive += 0.1f;
  const float pairwise = xplor::detail::pairwise_sum(n, [](std::int64_t) { return 0.1f; });
  const double exact = double(0.1f) * n;
  CHECK(std::abs(naive - exact) / exact > 1e-2);     // naive drifts by more than 1%
  CHECK(std::abs(pairwise - exact) / exact < 1e-6);  // pairwise stays at fp32 precision
  CHECK(xplor::detail::pairwise_sum(0, [](std::int64_t) { return 1.0f; }) == 0.0f);
  CHECK(xplor::detail::pairwise_sum(77, [](std::int64_t i) { return float(i); }) == 2926.0f);
}

TEST_CASE("row functions follow strides (column-major logits)", "[numerics]") {
  // Logits [2, 3] stored column-major: element (r, c) at c * 2 + r.
  const std::vector<float> col_major{1, 0, 2, 0, 3, 0};
  const xplor::view2d<const float> v(col_major.data(), {2, 3}, {1, 2});
  std::vector<float> lse(2), h(2);
  xplor::logsumexp_rows(xplor::cpu, v, lse);
  xplor::entropy_rows(xplor::cpu, v, h);
  CHECK(lse[0] == Approx(3.4076059644f).epsilon(1e-6));
  CHECK(lse[1] == Approx(std::log(3.0f)).epsilon(1e-6));
  CHECK(h[1] == Approx(std::log(3.0f)).epsilon(1e-6));
  std::vector<float> out(6);
  xplor::log_softmax_rows(xplor::cpu, v, xplor::as_view2d(out, 2, 3));
  CHECK(out[2] == Approx(-0.4076059644f).epsilon(1e-6));
}

TEST_CASE("numerics reject NaN, +inf, all -inf rows and bad shapes", "[numerics]") {
  std::vector<float> out(3);
  const std::vector<float> with_nan{0.0f, NAN, 1.0f};
  CHECK_THROWS_WITH(xplor::logsumexp(with_nan), Catch::Contains("logits[0, 1] is NaN"));
  const std::vector<float> with_inf{0.0f, 1.0f, INFINITY};
  CHECK_THROWS_WITH(xplor::entropy(with_inf), Catch::Contains("logits[0, 2] is +inf"));
  const std::vector<float> removed{ninf, ninf, ninf};
  CHECK_THROWS_WITH(xplor::log_softmax(removed, out), Catch::Contains("row 0 is -inf in every column"));
  CHECK_THROWS_WITH(xplor::softmax(std::span<const float>{}, std::span<float>{}),
                    Catch::Contains("is empty"));
  std::vector<float> short_out(2);
  const std::vector<float> ok{1, 2, 3};
  CHECK_THROWS_WITH(xplor::log_softmax(ok, short_out), Catch::Contains("out has 2 elements for 3 logits"));
  std::vector<float> rows(6, 0.0f), one(1);
  CHECK_THROWS_WITH(xplor::entropy_rows(xplor::cpu, xplor::as_view2d(std::as_const(rows), 2, 3), one),
                    Catch::Contains("out has 1 elements for 2 rows"));
  CHECK_THROWS_WITH(xplor::check_finite(with_inf, "xplor::f", "rewards"),
                    Catch::Contains("rewards[2] = inf"));
  CHECK_NOTHROW(xplor::check_finite(ok, "xplor::f", "rewards"));
}

TEST_CASE("exp_fast is within 2 ulp of std::exp on its range", "[numerics][property]") {
  std::mt19937 rng(31);
  std::uniform_real_distribution<float> ud(-87.0f, 88.0f);
  double worst = 0;
  for (int i = 0; i < 200000; ++i) {
    const float x = i < 1000 ? -87.0f + 0.175f * float(i) : ud(rng);
    const double exact = std::exp(double(x));
    worst = std::max(worst, std::abs(double(xplor::exp_fast(x)) - exact) / exact);
  }
  CHECK(worst <= 2.5e-7);  // 2 ulp of float is 2^-22 = 2.4e-7
  CHECK(xplor::exp_fast(0.0f) == 1.0f);
  CHECK(xplor::exp_fast(1.0f) == Approx(2.718281828f).epsilon(2.5e-7));
  CHECK(xplor::exp_fast(-200.0f) > 0.0f);  // saturates at exp(-87.3) instead of underflowing
  CHECK(std::isfinite(xplor::exp_fast(200.0f)));
  // NaN propagates without the float-to-int conversion of NaN (undefined; clang's UBSan).
  CHECK(std::isnan(xplor::exp_fast(std::numeric_limits<float>::quiet_NaN())));
}

#if XPLOR_HOST_SIMD
TEST_CASE("host SIMD exp_fast equals the scalar exp_fast bit for bit", "[numerics][simd]") {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> ud(-120.0f, 120.0f);
  std::vector<float> x(4096);
  for (std::size_t i = 0; i < x.size(); ++i)
    x[i] =
        i < 8 ? std::array<float, 8>{0.0f, -0.0f, -87.3f, 88.3f, -1e30f, 1e30f, 1e-30f, -1e-30f}[i] : ud(rng);
  auto same_bits = [](float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; };
  bool all4 = true;
  for (std::size_t i = 0; i < x.size(); i += 4) {
    xplor::simd::f4 v;
    xplor::simd::load(v, x.data() + i);
    xplor::simd::exp_fast(v);
    for (int j = 0; j < 4; ++j) all4 = all4 && same_bits(v[j], xplor::exp_fast(x[i + j]));
  }
  CHECK(all4);
}
#endif
