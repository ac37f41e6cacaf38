#include "xplor/sample/processors.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

using namespace xplor::sample;

namespace {
constexpr float ninf = -std::numeric_limits<float>::infinity();

std::vector<float> processed(const std::vector<float>& logits, const sampling_params& p,
                             std::span<const std::int32_t> context = {}) {
  std::vector<float> out(logits.size());
  process_logits(logits, p, out, context);
  return out;
}
std::vector<float> logs(std::initializer_list<double> probs) {
  std::vector<float> out;
  for (double p : probs) out.push_back(p > 0 ? static_cast<float>(std::log(p)) : ninf);
  return out;
}
}  // namespace

TEST_CASE("processors: hand-built rows", "[sample][processors]") {
  sampling_params p;
  p.temperature = 2.0f;
  auto out = processed({1, 2, 3}, p);
  // log_softmax([0.5, 1, 1.5]): lse = 1.5 + log(1 + e^-0.5 + e^-1)
  const double lse = 1.5 + std::log(1 + std::exp(-0.5) + std::exp(-1.0));
  CHECK(out[0] == Approx(0.5 - lse));
  CHECK(out[2] == Approx(1.5 - lse));

  p = {};
  p.top_k = 2;
  out = processed({3, 1, 3, 3}, p);  // three tied at the top: the two lowest ids stay
  CHECK(out[0] == Approx(std::log(0.5)));
  CHECK(out[2] == Approx(std::log(0.5)));
  CHECK(out[1] == ninf);
  CHECK(out[3] == ninf);

  p = {};
  p.top_p = 0.6f;
  out = processed(logs({0.5, 0.3, 0.2}), p);  // 0.5 < 0.6 <= 0.8: keep two
  CHECK(out[0] == Approx(std::log(0.625)));
  CHECK(out[1] == Approx(std::log(0.375)));
  CHECK(out[2] == ninf);
  p.top_p = 0.5f;  // the first token alone reaches 0.5
  out = processed(logs({0.5, 0.3, 0.2}), p);
  CHECK(out[0] == 0.0f);
  CHECK(out[1] == ninf);

  p.top_p = 0.35f;  // all-equal row of ten: 0.1 each, the four lowest ids reach 0.4
  out = processed(std::vector<float>(10, 0.7f), p);
  for (int v = 0; v < 10; ++v) CHECK(out[v] == (v < 4 ? Approx(std::log(0.25f)) : Approx(ninf)));

  p = {};
  p.min_p = 0.2f;  // threshold 0.2 * 0.5 = 0.1
  out = processed(logs({0.5, 0.3, 0.15, 0.05}), p);
  CHECK(out[2] == Approx(std::log(0.15 / 0.95)));
  CHECK(out[3] == ninf);

  p = {};
  p.repetition_penalty = 2.0f;
  const std::vector<std::int32_t> context{0, 1, 1};
  out = processed({2, -1, 0.5f}, p, context);  // -> [1, -2, 0.5] once per token
  const double lse2 = std::log(std::exp(1.0) + std::exp(-2.0) + std::exp(0.5));
  CHECK(out[0] == Approx(1.0 - lse2));
  CHECK(out[1] == Approx(-2.0 - lse2));

  // The order: top-k first, then top-p on the renormalised survivors.
  p = {};
  p.top_k = 3;
  p.top_p = 0.7f;
  out = processed(logs({0.4, 0.3, 0.2, 0.1}), p);  // top-3 -> [4/9, 3/9, 2/9]; 4/9 < 0.7 <= 7/9
  CHECK(out[0] == Approx(std::log(4.0 / 7.0)));
  CHECK(out[1] == Approx(std::log(3.0 / 7.0)));
  CHECK(out[2] == ninf);
}

TEST_CASE("quickselect top-k/top-p equal the sorted definition exactly, ties included",
          "[sample][processors][property]") {
  std::mt19937 rng(12);
  for (int trial = 0; trial < 2000; ++trial) {
    const int V = 1 + static_cast<int>(rng() % 300);
    std::vector<float> z(V);
    const int levels = 1 + static_cast<int>(rng() % 8);  // few distinct values: many ties
    for (auto& x : z)
      x = trial % 2 ? static_cast<float>(rng() % levels) * 0.5f
                    : std::normal_distribution<float>(0.0f, 3.0f)(rng);
    if (V > 3 && trial % 3 == 0) z[rng() % V] = ninf;
    sampling_params p;
    p.temperature = 0.5f + static_cast<float>(rng() % 10) * 0.2f;
    p.top_k = static_cast<int>(rng() % (V + 2));
    p.top_p = trial % 4 == 0 ? 1.0f : static_cast<float>(1 + rng() % 100) / 100.0f;
    p.min_p = trial % 5 == 0 ? static_cast<float>(rng() % 50) / 100.0f : 0.0f;
    std::vector<float> fast(V), sorted(V);
    process_logits(z, p, fast);
    reference::process_logits_sorted(z, p, sorted);
    INFO("trial " << trial << " V " << V << " top_k " << p.top_k << " top_p " << p.top_p);
    REQUIRE(std::memcmp(fast.data(), sorted.data(), V * sizeof(float)) == 0);
  }
}

TEST_CASE("10^6 draws match the processed distribution (chi-square)", "[sample][processors][property]") {
  const std::int64_t V = 20, R = 1000, rounds = 1000;
  std::vector<float> row(V);
  for (int v = 0; v < V; ++v) row[v] = std::sin(float(v)) * 2.0f;
  sampling_params p;
  p.temperature = 0.7f;
  p.top_p = 0.9f;
  std::vector<float> expected_lp(V);
  process_logits(row, p, expected_lp);
  std::vector<float> logits(R * V);
  for (std::int64_t r = 0; r < R; ++r) std::copy(row.begin(), row.end(), logits.begin() + r * V);
  std::vector<std::uint64_t> streams(R), draws(R);
  std::vector<std::int32_t> tokens(R);
  std::vector<float> lp(R);
  std::vector<double> counts(V, 0.0);
  for (std::int64_t k = 0; k < rounds; ++k) {
    for (std::int64_t r = 0; r < R; ++r)
      streams[r] = xplor::stream_id(0, static_cast<std::uint32_t>(r)), draws[r] = k;
    sample_rows(xplor::cpu, xplor::as_view2d(std::as_const(logits), R, V), p, {77, streams, draws},
                {tokens, lp, {}});
    for (std::int64_t r = 0; r < R; ++r) {
      counts[tokens[r]] += 1;
      REQUIRE(lp[r] == expected_lp[tokens[r]]);
    }
  }
  double chi2 = 0;
  int df = -1;
  for (int v = 0; v < V; ++v) {
    const double e = std::exp(double(expected_lp[v])) * R * rounds;
    if (expected_lp[v] == ninf) {
      CHECK(counts[v] == 0.0);  // removed tokens are never drawn
      continue;
    }
    chi2 += (counts[v] - e) * (counts[v] - e) / e;
    ++df;
  }
  INFO("chi2 " << chi2 << " with " << df << " degrees of freedom");
  CHECK(chi2 < df + 5.0 * std::sqrt(2.0 * df));  // about 5 standard deviations of chi2(df)
}

TEST_CASE("a draw depends only on (seed, stream, draw): threads and batch order do not matter",
          "[sample][processors]") {
  const std::int64_t V = 50, R = 64;
  std::mt19937 rng(4);
  std::vector<float> logits(R * V), permuted(R * V);
  for (auto& x : logits) x = std::normal_distribution<float>(0.0f, 2.0f)(rng);
  std::vector<std::uint64_t> streams(R), draws(R), pstreams(R), pdraws(R);
  for (std::int64_t r = 0; r < R; ++r)
    streams[r] = xplor::stream_id(static_cast<std::uint32_t>(r % 5), static_cast<std::uint32_t>(r)),
    draws[r] = r % 7;
  std::vector<std::int64_t> perm(R);
  for (std::int64_t r = 0; r < R; ++r) perm[r] = (r * 37) % R;
  for (std::int64_t r = 0; r < R; ++r) {
    std::copy(logits.begin() + perm[r] * V, logits.begin() + (perm[r] + 1) * V, permuted.begin() + r * V);
    pstreams[r] = streams[perm[r]];
    pdraws[r] = draws[perm[r]];
  }
  sampling_params p;
  p.top_k = 10;
  std::vector<std::int32_t> t1(R), t2(R), tp(R);
  std::vector<float> lp(R);
  sample_rows(xplor::cpu_t{1}, xplor::as_view2d(std::as_const(logits), R, V), p, {5, streams, draws},
              {t1, lp, {}});
  sample_rows(xplor::cpu_t{2}, xplor::as_view2d(std::as_const(logits), R, V), p, {5, streams, draws},
              {t2, lp, {}});
  sample_rows(xplor::cpu, xplor::as_view2d(std::as_const(permuted), R, V), p, {5, pstreams, pdraws},
              {tp, lp, {}});
  CHECK(t1 == t2);
  for (std::int64_t r = 0; r < R; ++r) REQUIRE(tp[r] == t1[perm[r]]);
}

TEST_CASE("processors reject bad input", "[sample][processors]") {
  std::vector<float> out(3);
  sampling_params p;
  CHECK_THROWS_WITH(process_logits(std::vector<float>{ninf, ninf, ninf}, p, out),
                    Catch::Contains("row 0 is -inf in every column"));
  CHECK_THROWS_WITH(process_logits(std::vector<float>{0, NAN, 1}, p, out),
                    Catch::Contains("logits[0, 1] is NaN"));
  p.temperature = 0.0f;
  CHECK_THROWS_WITH(process_logits(std::vector<float>{0, 1, 2}, p, out), Catch::Contains("temperature = 0"));
  p = {};
  p.top_p = 0.0f;
  CHECK_THROWS_WITH(process_logits(std::vector<float>{0, 1, 2}, p, out),
                    Catch::Contains("top_p = 0 is not a normal float in (0, 1]"));
  p.top_p = 1.5f;
  CHECK_THROWS_WITH(process_logits(std::vector<float>{0, 1, 2}, p, out), Catch::Contains("top_p = 1.5"));
  p = {};
  p.top_k = -1;
  CHECK_THROWS_WITH(process_logits(std::vector<float>{0, 1, 2}, p, out), Catch::Contains("top_k = -1"));
  p = {};
  p.min_p = 2.0f;
  CHECK_THROWS_WITH(process_logits(std::vector<float>{0, 1, 2}, p, out), Catch::Contains("min_p = 2"));
  p = {};
  const std::vector<std::int32_t> ctx{5};
  CHECK_THROWS_WITH(process_logits(std::vector<float>{0, 1, 2}, p, out, ctx),
                    Catch::Contains("context[0] = 5"));
  std::vector<float> small(2);
  CHECK_THROWS_WITH(process_logits(std::vector<float>{0, 1, 2}, p, small),
                    Catch::Contains("logprobs_out has 2"));
  // Subnormal divisors overflowed every logit to inf and gave NaN log-probabilities.
  const float subnormal = std::numeric_limits<float>::denorm_min() * 8;
  p = {};
  p.temperature = subnormal;
  CHECK_THROWS_WITH(process_logits(std::vector<float>{0, 1, 2}, p, out),
                    Catch::Contains("temperature = ") && Catch::Contains("must be a normal float > 0"));
  p = {};
  p.repetition_penalty = subnormal;
  CHECK_THROWS_WITH(process_logits(std::vector<float>{0, 1, 2}, p, out),
                    Catch::Contains("repetition_penalty = ") && Catch::Contains("normal float > 0"));
  p = {};
  p.min_p = subnormal;
  CHECK_THROWS_WITH(process_logits(std::vector<float>{0, 1, 2}, p, out), Catch::Contains("min_p = "));
  p = {};
  p.top_p = subnormal;
  CHECK_THROWS_WITH(process_logits(std::vector<float>{0, 1, 2}, p, out), Catch::Contains("top_p = "));
  // Normal parameters, but a logit that the temperature would overflow to inf.
  p = {};
  p.temperature = 1e-30f;
  CHECK_THROWS_WITH(
      process_logits(std::vector<float>{0, 1e10f, 2}, p, out),
      Catch::Contains("logits[0, 1] times 9.99999997e+29") && Catch::Contains("overflows float"));
  p = {};
  p.repetition_penalty = 1e-30f;
  CHECK_THROWS_WITH(process_logits(std::vector<float>{0, 1e10f, 2}, p, out),
                    Catch::Contains("overflows float"));
}

namespace {
double probability_total(const std::vector<float>& logp) {
  double total = 0;
  for (float x : logp) total += std::exp(double(x));
  return total;
}
}  // namespace

TEST_CASE("log-probabilities stay normalised at any logit scale and temperature",
          "[sample][processors][property]") {
  // The cases that summed to 1.0057, 0.945 and 2.0 when normalised as x - (m + log s).
  sampling_params p;
  for (const float t : {1e-4f, 1e-5f, 1e-6f}) {
    p.temperature = t;
    const auto out = processed({20.0f, 20.0f, 19.9f}, p);
    CHECK(probability_total(out) == Approx(1.0).margin(1e-6));
    CHECK(out[0] == Approx(-std::log(2.0)).margin(1e-6));  // the third token is exp(-0.1 / T) ~ 0
  }
  p = {};
  const auto big = processed({1e8f, 1e8f}, p);
  CHECK(big[0] == Approx(-std::log(2.0)).margin(1e-7));
  CHECK(big[1] == big[0]);
  // Hand-computed: logits {1e6 + 1, 1e6} at T = 1: log(1 / (1 + e^-1)) = -0.3132617.
  const auto shifted = processed({1e6f + 1.0f, 1e6f}, p);
  CHECK(shifted[0] == Approx(-0.3132617).margin(1e-6));
  // Property: random rows at random magnitudes and temperatures, with and without processors.
  std::mt19937 rng(15);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f), exponent(-6.0f, 30.0f);
  for (int trial = 0; trial < 400; ++trial) {
    std::vector<float> logits(1 + trial % 50);
    const float magnitude = std::pow(10.0f, exponent(rng) / 3.0f);
    for (float& z : logits) z = magnitude * (1.0f + 1e-3f * unit(rng));
    p = {};
    p.temperature = std::pow(10.0f, -6.0f + 7.0f * (unit(rng) + 1.0f) / 2.0f);
    if (trial % 4 == 1) p.top_k = 3;
    if (trial % 4 == 2) p.min_p = 0.05f;
    if (trial % 4 == 3) p.top_p = 0.9f;
    if (static_cast<double>(magnitude) * 1.01 / p.temperature > 3e38) continue;
    const auto out = processed(logits, p);
    for (float x : out) REQUIRE(!std::isnan(x));
    CHECK(probability_total(out) == Approx(1.0).margin(1e-5));
  }
}

TEST_CASE("log_fast is within 2 ulp of std::log (the samplers' normalisations use it)",
          "[sample][processors]") {
  auto ulps = [](float a, float b) {
    std::int32_t ia, ib;
    std::memcpy(&ia, &a, sizeof ia);
    std::memcpy(&ib, &b, sizeof ib);
    return std::abs(static_cast<std::int64_t>(ia) - static_cast<std::int64_t>(ib));
  };
  std::int64_t worst = 0;
  // Every 97th float from the smallest subnormal to the largest finite value, and around 1.
  for (std::uint32_t bits = 1; bits < 0x7f800000u; bits += 97) {
    float x;
    std::memcpy(&x, &bits, sizeof x);
    const float want = std::log(x), got = xplor::log_fast(x);
    if (want == 0.0f) {
      REQUIRE(std::abs(got) < 1e-7f);
      continue;
    }
    worst = std::max(worst, ulps(want, got));
  }
  for (float x = 0.99f; x < 1.01f; x = std::nextafter(x, 2.0f))
    REQUIRE(std::abs(xplor::log_fast(x) - std::log(x)) <=
            2e-7f * std::max(1.0f, std::abs(std::log(x))) + 1e-12f);
  CHECK(worst <= 2);
#if XPLOR_HOST_SIMD
  // The explicit-SIMD form (keep_prefix) gives the scalar's bits.
  std::int64_t simd_mismatches = 0;
  for (std::uint32_t bits = 1; bits < 0x7f800000u; bits += 4 * 61) {
    float in[4];
    for (std::uint32_t j = 0; j < 4; ++j) {
      const std::uint32_t b = bits + j * 17;
      std::memcpy(&in[j], &b, sizeof b);
    }
    xplor::simd::f4 v;
    xplor::simd::load(v, in);
    xplor::simd::log_fast_positive(v);
    for (int j = 0; j < 4; ++j) {
      const float scalar = xplor::log_fast(in[j]), lane = v[j];
      simd_mismatches += std::memcmp(&scalar, &lane, sizeof scalar) != 0;
    }
  }
  CHECK(simd_mismatches == 0);
#endif
  CHECK(xplor::log_fast(1.0f) == 0.0f);
  CHECK(xplor::log_fast(0.0f) == ninf);
  CHECK(std::isnan(xplor::log_fast(-1.0f)));
}
