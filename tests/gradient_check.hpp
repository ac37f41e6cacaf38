// Shared by the adapter and MemGen tests: random LoRA B matrices (a new adapter has B = 0, where A
// gets no gradient), and a directional finite-difference check of every tensor of a parameter
// table against analytic gradients.
#pragma once

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "xplor/model/config.hpp"

namespace xplor::testing {

/// Fills every "...lora_B.weight" tensor of `table` in `params` with N(0, sd).
inline void randomize_lora_b(const model::parameter_layout& table, std::span<float> params,
                             std::uint32_t seed, float sd = 0.2f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sd);
  for (const auto& t : table.tensors)
    if (t.name.ends_with("lora_B.weight"))
      for (std::int64_t i = 0; i < t.size; ++i) params[static_cast<std::size_t>(t.offset + i)] = nd(rng);
}

/// For every tensor of `table`: along a random unit direction u, (L(p + h u) - L(p - h u)) / 2h
/// against analytic . u, where `objective()` evaluates L at the current `params`. `live(name)`
/// names the tensors whose directional derivative must not be zero.
template <class Objective, class Live>
void check_directional_gradients(const model::parameter_layout& table, std::span<float> params,
                                 const std::vector<float>& analytic, Objective objective, Live live,
                                 float h = 3e-3f, double rel = 3e-2, std::uint32_t seed = 9) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const auto& t : table.tensors) {
    std::vector<float> u(static_cast<std::size_t>(t.size));
    double norm_u = 0.0, dot = 0.0;
    for (auto& e : u) e = nd(rng), norm_u += double(e) * e;
    for (std::int64_t i = 0; i < t.size; ++i) dot += analytic[static_cast<std::size_t>(t.offset + i)] * u[i];
    dot /= std::sqrt(norm_u);
    auto shifted = [&](float sign) {
      for (std::int64_t i = 0; i < t.size; ++i)
        params[static_cast<std::size_t>(t.offset + i)] += sign * h * u[i] / float(std::sqrt(norm_u));
      const double v = objective();
      for (std::int64_t i = 0; i < t.size; ++i)
        params[static_cast<std::size_t>(t.offset + i)] -= sign * h * u[i] / float(std::sqrt(norm_u));
      return v;
    };
    INFO("tensor " << t.name);
    if (live(t.name)) CHECK(dot != 0.0);
    REQUIRE(dot == Approx((shifted(1.0f) - shifted(-1.0f)) / (2.0 * h)).epsilon(rel).margin(3e-4));
  }
}

}  // namespace xplor::testing
