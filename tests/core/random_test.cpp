#include "xplor/core/random.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <set>
#include <vector>

using words4 = std::array<std::uint32_t, 4>;

// Random123 known-answer vectors (docs/core.md).
static_assert(xplor::philox4x32_10({0, 0, 0, 0}, {0, 0}) ==
              words4{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});

TEST_CASE("philox4x32_10 reproduces the Random123 known-answer vectors", "[random]") {
  CHECK(xplor::philox4x32_10({0, 0, 0, 0}, {0, 0}) ==
        words4{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  CHECK(xplor::philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                             {0xffffffffu, 0xffffffffu}) ==
        words4{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  CHECK(xplor::philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                             {0xa4093822u, 0x299f31d0u}) ==
        words4{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("word-to-float conversions stay inside their intervals", "[random]") {
  CHECK(xplor::uniform_float(0u) == 0.0f);
  CHECK(xplor::uniform_float(0xffffffffu) == 1.0f - 0x1.0p-24f);
  CHECK(xplor::uniform_float(0x80000000u) == 0.5f);
  CHECK(xplor::uniform_float_open(0u) == 0x1.0p-24f);
  CHECK(xplor::uniform_float_open(0xffffffffu) == 1.0f - 0x1.0p-24f);
  CHECK(xplor::uniform_float_open(0x80000000u) == 0.5f + 0x1.0p-24f);
  CHECK(xplor::uniform_double(0u, 0u) == 0.0);
  CHECK(xplor::uniform_double(0xffffffffu, 0xffffffffu) == 1.0 - 0x1.0p-53);
  CHECK(xplor::uniform_double(0x80000000u, 0u) == 0.5);
}

TEST_CASE("philox_stream lays out (stream, draw) in the counter and the seed in the key", "[random]") {
  const std::uint64_t seed = 0x0123456789abcdefull, stream = xplor::stream_id(7, 3);
  CHECK(stream == ((std::uint64_t{3} << 32) | 7u));
  xplor::philox_stream gen(seed, stream);
  const words4 block5 = xplor::philox4x32_10({7u, 3u, 5u, 0u}, {0x89abcdefu, 0x01234567u});
  CHECK(gen.block(5) == block5);
  CHECK(xplor::philox_stream(seed, stream).block((std::uint64_t{1} << 32) + 2) ==
        xplor::philox4x32_10({7u, 3u, 2u, 1u}, {0x89abcdefu, 0x01234567u}));
  // Sequential words: block 0's four words, then block 1's, ...
  std::vector<std::uint32_t> seq;
  for (int i = 0; i < 24; ++i) seq.push_back(gen());
  for (int b = 0; b < 6; ++b)
    for (int w = 0; w < 4; ++w) REQUIRE(seq[4 * b + w] == gen.block(b)[w]);
  CHECK(gen.draw() == 6);
  // A generator constructed at draw 5 continues exactly where the sequential one was.
  xplor::philox_stream at5(seed, stream, 5);
  for (int w = 0; w < 4; ++w) CHECK(at5() == block5[w]);
}

TEST_CASE("streams and seeds give different words", "[random]") {
  std::set<std::uint32_t> seen;
  for (std::uint32_t i = 0; i < 16; ++i)
    for (std::uint32_t j = 0; j < 16; ++j) seen.insert(xplor::philox_stream(42, xplor::stream_id(i, j))());
  for (std::uint64_t seed = 0; seed < 16; ++seed) seen.insert(xplor::philox_stream(seed, 0)());
  CHECK(seen.size() == 16 * 16 + 16);  // all distinct (a 32-bit collision here has odds ~1e-5)
}

TEST_CASE("uniform, normal and Gumbel draws have the right moments", "[random][property]") {
  xplor::philox_stream gen(2024, 1);
  const int n = 200000;
  double su = 0, suu = 0, sn = 0, snn = 0, sg = 0;
  float umin = 1, umax = 0;
  for (int i = 0; i < n; ++i) {
    const float u = gen.uniform();
    umin = std::min(umin, u);
    umax = std::max(umax, u);
    su += u;
    suu += double(u) * u;
    const float z = gen.normal();
    REQUIRE(std::isfinite(z));
    sn += z;
    snn += double(z) * z;
    const float g = gen.gumbel();
    REQUIRE(std::isfinite(g));
    sg += g;
  }
  CHECK(umin >= 0.0f);
  CHECK(umax < 1.0f);
  // Tolerances are ~5 standard errors of each estimate at n = 200000.
  CHECK(su / n == Approx(0.5).margin(0.0035));
  CHECK(suu / n - (su / n) * (su / n) == Approx(1.0 / 12).margin(0.002));
  CHECK(sn / n == Approx(0.0).margin(0.012));
  CHECK(snn / n == Approx(1.0).margin(0.016));
  CHECK(sg / n == Approx(0.5772156649).margin(0.015));  // Euler-Mascheroni constant
}

TEST_CASE("normal_pair gives two uncorrelated standard normals", "[random][property]") {
  xplor::philox_stream gen(77, 2);
  const int n = 100000;
  double s0 = 0, s1 = 0, s00 = 0, s11 = 0, s01 = 0;
  for (int i = 0; i < n; ++i) {
    const auto z = gen.normal_pair();
    s0 += z[0];
    s1 += z[1];
    s00 += double(z[0]) * z[0];
    s11 += double(z[1]) * z[1];
    s01 += double(z[0]) * z[1];
  }
  CHECK(s0 / n == Approx(0.0).margin(0.016));
  CHECK(s1 / n == Approx(0.0).margin(0.016));
  CHECK(s00 / n == Approx(1.0).margin(0.023));
  CHECK(s11 / n == Approx(1.0).margin(0.023));
  CHECK(s01 / n == Approx(0.0).margin(0.016));
  // normal() is the first half of the pair drawn from the same words.
  xplor::philox_stream a(3, 4), b(3, 4);
  CHECK(a.normal() == b.normal_pair()[0]);
}

TEST_CASE("philox_stream works with std distributions", "[random]") {
  STATIC_REQUIRE(std::uniform_random_bit_generator<xplor::philox_stream>);
  xplor::philox_stream a(5, 9), b(5, 9);
  std::uniform_int_distribution<int> dist(1, 6);
  for (int i = 0; i < 100; ++i) REQUIRE(dist(a) == dist(b));
}

TEST_CASE("categorical_index inverts the running sum", "[random]") {
  const float w[] = {1.0f, 2.0f, 0.0f, 1.0f};
  CHECK(xplor::categorical_index(w, 4, 4.0, 0.0) == 0);
  CHECK(xplor::categorical_index(w, 4, 4.0, 0.2) == 0);   // target 0.8 < 1
  CHECK(xplor::categorical_index(w, 4, 4.0, 0.25) == 1);  // target 1.0: running 1 is not > 1
  CHECK(xplor::categorical_index(w, 4, 4.0, 0.74) == 1);  // target 2.96 < 3
  CHECK(xplor::categorical_index(w, 4, 4.0, 0.75) == 3);  // zero weight at 2 is skipped
  CHECK(xplor::categorical_index(w, 4, 4.0, 0.999999) == 3);
}

TEST_CASE("sample_categorical matches the weights", "[random][property]") {
  const std::vector<float> w{0.5f, 0.0f, 1.5f, 2.0f};
  xplor::philox_stream gen(11, 0);
  std::vector<int> counts(4, 0);
  const int n = 100000;
  for (int i = 0; i < n; ++i) ++counts[xplor::sample_categorical(w, gen)];
  CHECK(counts[1] == 0);
  // Each frequency within ~5 binomial standard errors of weight / 4.
  for (int k : {0, 2, 3}) {
    const double p = w[k] / 4.0;
    CHECK(double(counts[k]) / n == Approx(p).margin(5 * std::sqrt(p * (1 - p) / n)));
  }
}

TEST_CASE("sample_categorical rejects bad weights", "[random]") {
  xplor::philox_stream gen(0, 0);
  CHECK_THROWS_WITH(xplor::sample_categorical(std::span<const float>{}, gen),
                    Catch::Contains("weights is empty"));
  const std::vector<float> neg{1.0f, -0.5f};
  CHECK_THROWS_WITH(xplor::sample_categorical(neg, gen), Catch::Contains("weights[1] = -0.5"));
  const std::vector<float> nan{NAN};
  CHECK_THROWS_WITH(xplor::sample_categorical(nan, gen), Catch::Contains("weights[0] = nan"));
  const std::vector<float> zeros{0.0f, 0.0f};
  CHECK_THROWS_WITH(xplor::sample_categorical(zeros, gen), Catch::Contains("sum to 0"));
}
