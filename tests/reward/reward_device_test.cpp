// Batched reward arithmetic on the device backend against the CPU backend (Thrust OMP in CI, the
// GPU under nvcc via cuda/): the same XPLOR_HD kernels, so the values must match bit for bit.
#include <catch2/catch.hpp>
#include <limits>
#include <random>
#include <vector>

#include "../device_vectors.hpp"
#include "xplor/core/adapt_thrust.hpp"
#include "xplor/core/device.hpp"
#include "xplor/reward/batch.hpp"

using xplor::test::dev;
using xplor::test::host;

TEST_CASE("device: batched rewards equal the CPU's", "[device][reward]") {
  using namespace xplor::reward;
  std::mt19937 rng(17);
  const std::size_t n = 10000;

  std::vector<outcome> o(n);
  std::vector<std::uint8_t> ook(n);
  for (std::size_t i = 0; i < n; ++i) {
    o[i] = static_cast<outcome>(rng() % 4);
    ook[i] = static_cast<std::uint8_t>(rng() % 2);
  }
  const auto d_o = dev(o);
  const auto d_ook = dev(ook);
  std::vector<float> c(n);
  thrust::device_vector<float> d(n);
  for (auto variant : {reward_variant::ternary, reward_variant::binary, reward_variant::ternary_ook,
                       reward_variant::binary_ook}) {
    truth_rewards(xplor::cpu, std::span<const outcome>(o), variant, std::span<const std::uint8_t>(ook),
                  std::span(c));
    truth_rewards(xplor::device, xplor::as_span(d_o), variant, xplor::as_span(d_ook), xplor::as_span(d));
    REQUIRE(host(d) == c);
  }

  std::vector<std::int64_t> lengths(n);
  for (auto& l : lengths) l = static_cast<std::int64_t>(rng() % 3000);
  const auto d_lengths = dev(lengths);
  for (auto mode : {overlong_mode::linear, overlong_mode::clipped}) {
    overlong_penalties(xplor::cpu, std::span<const std::int64_t>(lengths), 2048, 512, 1.0f, mode,
                       std::span(c));
    overlong_penalties(xplor::device, xplor::as_span(d_lengths), 2048, 512, 1.0f, mode, xplor::as_span(d));
    REQUIRE(host(d) == c);
  }

  std::vector<std::int32_t> tokens;
  std::vector<std::int64_t> offsets = {0};
  for (std::size_t r = 0; r < n; ++r) {
    const int len = static_cast<int>(rng() % 10);
    for (int t = 0; t < len; ++t)
      tokens.push_back(rng() % 2 ? 100 + static_cast<std::int32_t>(rng() % 3)
                                 : static_cast<std::int32_t>(rng() % 4));
    offsets.push_back(static_cast<std::int64_t>(tokens.size()));
  }
  const auto d_tokens = dev(tokens);
  const std::vector<std::int32_t> markers = {100, 101, 102};
  for (bool anchored : {true, false}) {
    format_options fo;
    fo.anchored = anchored;
    fo.eos = 0;
    format_rewards(xplor::cpu, std::span<const std::int32_t>(tokens), offsets, markers, fo, std::span(c));
    format_rewards(xplor::device, xplor::as_span(d_tokens), offsets, markers, fo, xplor::as_span(d));
    REQUIRE(host(d) == c);
  }

  const float na = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> values(n * 3);
  for (auto& v : values)
    v = rng() % 5 == 0 ? na : static_cast<float>(static_cast<int>(rng() % 2001) - 1000) / 7.0f;
  const std::vector<float> w = {1.0f, 0.5f, -2.0f};
  const auto d_values = dev(values);
  weighted_sum(xplor::cpu, xplor::view2d<const float>(values.data(), {std::int64_t(n), 3}, {3, 1}), w,
               std::span(c));
  weighted_sum(xplor::device, xplor::as_view2d(d_values, std::int64_t(n), 3), w, xplor::as_span(d));
  REQUIRE(host(d) == c);

  // A bad code is found on the device too, and named.
  auto bad = o;
  bad[4321] = static_cast<outcome>(5);
  const auto d_bad = dev(bad);
  CHECK_THROWS_WITH(
      truth_rewards(xplor::device, xplor::as_span(d_bad), reward_variant::ternary, {}, xplor::as_span(d)),
      Catch::Contains("outcomes[4321] = 5 is not an outcome"));
}
