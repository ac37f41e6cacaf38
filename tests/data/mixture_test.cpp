// The token-measured mixture sampler: realised fractions, zero weights, schedules, determinism,
// the lsbs_balanced preset and bad input.
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>

#include "xplor/data/mixture.hpp"

using namespace xplor::data;

namespace {
/// A source whose documents have pseudo-random lengths in [lo, hi] (its own Philox stream).
document_stream lengths_between(std::uint64_t seed, int lo, int hi, std::int32_t token) {
  auto gen = std::make_shared<xplor::philox_stream>(seed, 1);
  return [=]() -> std::optional<std::vector<std::int32_t>> {
    const int n = lo + static_cast<int>((static_cast<std::uint64_t>((*gen)()) * (hi - lo + 1)) >> 32);
    return std::vector<std::int32_t>(static_cast<std::size_t>(n), token);
  };
}
std::vector<mixture_source> three(double a, double b, double c) {
  return {{"reasoning", {"reasoning"}, a, lengths_between(1, 20, 400, 1)},
          {"visual", {"visual_world"}, b, lengths_between(2, 5, 60, 2)},
          {"web", {"general"}, c, lengths_between(3, 50, 150, 3)}};
}
}  // namespace

TEST_CASE("mixture: realised token fractions converge to the weights", "[data][mixture]") {
  for (std::uint64_t seed : {0u, 7u})
    for (auto w : {std::array<double, 3>{0.6, 0.15, 0.25}, std::array<double, 3>{1, 1, 1},
                   std::array<double, 3>{0.05, 0.9, 0.05}}) {
      mixture_sampler m(three(w[0], w[1], w[2]), seed);
      std::int64_t n = 0;
      while (n < 100000) n += static_cast<std::int64_t>(m.next().tokens.size());
      const double sum = w[0] + w[1] + w[2];
      const auto f = m.realised_token_fraction();
      CHECK(f.at("reasoning") == Approx(w[0] / sum).margin(0.005));
      CHECK(f.at("visual") == Approx(w[1] / sum).margin(0.005));
      CHECK(f.at("web") == Approx(w[2] / sum).margin(0.005));
      // The deficit rule keeps every source within one document of its share at all times.
      const auto t = m.tokens_per_source();
      const double total = double(std::accumulate(t.begin(), t.end(), std::int64_t{0}));
      for (std::size_t i = 0; i < 3; ++i) CHECK(std::abs(double(t[i]) - w[i] / sum * total) <= 400.0);
    }
}

TEST_CASE("mixture: zero weights, determinism, schedules at step boundaries", "[data][mixture]") {
  mixture_sampler zero(three(1, 0, 1), 3);
  for (int k = 0; k < 2000; ++k) REQUIRE(zero.next().source != 1);

  mixture_sampler a(three(0.6, 0.15, 0.25), 11), b(three(0.6, 0.15, 0.25), 11);
  for (int k = 0; k < 500; ++k) {
    const auto x = a.next(), y = b.next();
    REQUIRE(x.source == y.source);
    REQUIRE(x.tokens == y.tokens);
  }

  // A curriculum: reasoning only for steps < 10, then the balanced mix.
  mixture_sampler c(three(1, 1, 1), 5);
  c.set_schedule([](std::int64_t step) {
    return step < 10 ? std::vector<double>{1, 0, 0} : std::vector<double>{0.6, 0.15, 0.25};
  });
  for (std::int64_t step = 0; step < 60; ++step) {
    c.begin_step(step);
    for (const auto& d : c.next_batch(2048)) {
      if (step < 10) REQUIRE(d.source == 0);
    }
  }
  CHECK(c.weights()[1] == Approx(0.15));
  const auto f = c.phase_token_fraction();  // the phase since step 10 follows the new weights
  CHECK(f.at("reasoning") == Approx(0.6).margin(0.005));
  CHECK(f.at("visual") == Approx(0.15).margin(0.005));
}

TEST_CASE("mixture: the lsbs_balanced preset splits each tag's share", "[data][mixture]") {
  auto sources = three(1, 1, 1);
  sources.push_back({"math", {"reasoning"}, 1.0, lengths_between(4, 10, 20, 4)});
  const auto preset = mixture_preset("lsbs_balanced", sources);
  CHECK(preset[0].weight == Approx(0.30));
  CHECK(preset[3].weight == Approx(0.30));
  CHECK(preset[1].weight == Approx(0.15));
  CHECK(preset[2].weight == Approx(0.25));
  CHECK_THROWS_WITH(mixture_preset("lsbs", sources), Catch::Contains("unknown preset 'lsbs'"));
  sources[2].tags = {"code"};
  CHECK_THROWS_WITH(mixture_preset("lsbs_balanced", sources), Catch::Contains("'web' carries none"));
}

TEST_CASE("mixture: bad weights and empty sources are errors", "[data][mixture][errors]") {
  CHECK_THROWS_WITH(mixture_sampler(three(1, -1, 1)), Catch::Contains("weight of 'visual' = -1"));
  CHECK_THROWS_WITH(mixture_sampler(three(0, 0, 0)), Catch::Contains("every weight is 0"));
  CHECK_THROWS_WITH(mixture_sampler(three(1, std::nan(""), 1)), Catch::Contains("weight of 'visual'"));
  CHECK_THROWS_WITH(mixture_sampler({}), Catch::Contains("no sources"));
  auto s = three(1, 1, 1);
  s[1].stream = {};
  CHECK_THROWS_WITH(mixture_sampler(s), Catch::Contains("'visual') has no document stream"));
  s = three(1, 1, 1);
  s[2].name = "visual";
  CHECK_THROWS_WITH(mixture_sampler(s), Catch::Contains("two sources are named 'visual'"));
  s = three(0, 1, 0);
  int left = 3;
  s[1].stream = [&left]() -> std::optional<std::vector<std::int32_t>> {
    if (left-- > 0) return std::vector<std::int32_t>{7, 7};
    return std::nullopt;
  };
  mixture_sampler m(s);
  for (int k = 0; k < 3; ++k) m.next();
  CHECK_THROWS_WITH(m.next(), Catch::Contains("source 'visual' ran out of documents after 6 tokens"));
  s[1].stream = []() -> std::optional<std::vector<std::int32_t>> { return std::vector<std::int32_t>{}; };
  mixture_sampler e(s);
  CHECK_THROWS_WITH(e.next(), Catch::Contains("returned an empty document"));
  mixture_sampler w(three(1, 1, 1));
  w.set_schedule([](std::int64_t) { return std::vector<double>{1, 1}; });
  CHECK_THROWS_WITH(w.begin_step(0), Catch::Contains("got 2 weights for 3 sources"));
  CHECK_THROWS_WITH(w.next_batch(0), Catch::Contains("min_tokens = 0"));
}
