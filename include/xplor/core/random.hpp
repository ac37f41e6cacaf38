// Counter-based randomness: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers:
// as easy as 1, 2, 3", SC'11) and a stream generator on top of it. A draw is a pure function of
// (seed, stream, draw index), so results do not depend on thread count, batch order or backend.
// There is no global RNG state anywhere in xplor.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>

#include "xplor/core/config.hpp"
#include "xplor/core/error.hpp"

namespace xplor {

/// Philox4x32-10: ten rounds of the Philox bijection on a 128-bit counter under a 64-bit key.
/// Reproduces the Random123 known-answer vectors (see tests/core/random_test.cpp).
XPLOR_HD constexpr std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> counter,
                                                              std::array<std::uint32_t, 2> key) {
  constexpr std::uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;  // round multipliers
  constexpr std::uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;  // Weyl key increments
  std::uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
  std::uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += w0;
      k1 += w1;
    }
    const std::uint64_t p0 = static_cast<std::uint64_t>(m0) * c0;
    const std::uint64_t p1 = static_cast<std::uint64_t>(m1) * c2;
    const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
  }
  return {c0, c1, c2, c3};
}

// ---------------------------------------------------------------------------------------------
// Words to floats (docs/core.md): never exactly 1; the "open" variants never return 0 either.

/// Uniform float in [0, 1) from the top 24 bits: (x >> 8) * 2^-24.
XPLOR_HD constexpr float uniform_float(std::uint32_t x) { return static_cast<float>(x >> 8) * 0x1.0p-24f; }
/// Uniform float in (0, 1): midpoints of 2^23 cells, (k + 1/2) * 2^-23, so -log(u) and
/// -log(1 - u) are finite. (Midpoints of 2^24 cells would round the top one up to exactly 1.)
XPLOR_HD constexpr float uniform_float_open(std::uint32_t x) {
  return (static_cast<float>(x >> 9) + 0.5f) * 0x1.0p-23f;
}
/// Uniform double in [0, 1) from 53 bits of two words (27 from a, 26 from b).
XPLOR_HD constexpr double uniform_double(std::uint32_t a, std::uint32_t b) {
  return (static_cast<double>(a >> 5) * 67108864.0 + static_cast<double>(b >> 6)) * 0x1.0p-53;
}

/// Packs the two indices of a rollout stream (prompt i, sample j) into the 64-bit stream id
/// that becomes counter words (stream_lo, stream_hi) = (i, j).
XPLOR_HD constexpr std::uint64_t stream_id(std::uint32_t i, std::uint32_t j) {
  return static_cast<std::uint64_t>(i) | (static_cast<std::uint64_t>(j) << 32);
}

/// A stream of random words keyed by (seed, stream). Block `draw` of the stream is
/// philox4x32_10((stream_lo, stream_hi, draw_lo, draw_hi), (seed_lo, seed_hi)); the generator
/// hands out its four words in order, then moves to block draw + 1. Constructing a generator at
/// (seed, stream, draw) therefore gives the same words wherever and whenever it is done.
/// Satisfies std::uniform_random_bit_generator, so std:: distributions accept it too.
class philox_stream {
 public:
  using result_type = std::uint32_t;

  XPLOR_HD constexpr philox_stream(std::uint64_t seed, std::uint64_t stream, std::uint64_t draw = 0)
      : seed_(seed), stream_(stream), draw_(draw) {}

  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<result_type>::max(); }

  /// The four words of block `draw`, independent of the generator's position.
  XPLOR_HD constexpr std::array<std::uint32_t, 4> block(std::uint64_t draw) const {
    return philox4x32_10({static_cast<std::uint32_t>(stream_), static_cast<std::uint32_t>(stream_ >> 32),
                          static_cast<std::uint32_t>(draw), static_cast<std::uint32_t>(draw >> 32)},
                         {static_cast<std::uint32_t>(seed_), static_cast<std::uint32_t>(seed_ >> 32)});
  }

  /// The next word of the stream.
  XPLOR_HD constexpr result_type operator()() {
    if (lane_ == 0) words_ = block(draw_);
    const result_type w = words_[lane_];
    if (++lane_ == 4) {
      lane_ = 0;
      ++draw_;
    }
    return w;
  }

  /// Index of the block the next word comes from (words already used in it are skipped).
  XPLOR_HD constexpr std::uint64_t draw() const { return draw_; }

  XPLOR_HD constexpr float uniform() { return uniform_float((*this)()); }
  XPLOR_HD constexpr float uniform_open() { return uniform_float_open((*this)()); }
  XPLOR_HD constexpr double uniform_double() {
    const std::uint32_t a = (*this)();
    return xplor::uniform_double(a, (*this)());
  }
  /// Two independent standard normals by Box-Muller on two uniforms (u1 in (0,1), so the log
  /// is finite): r (cos 2 pi u2, sin 2 pi u2) with r = sqrt(-2 log u1).
  XPLOR_HD std::array<float, 2> normal_pair() {
    const float u1 = uniform_open();
    const float u2 = uniform();
    const float r = std::sqrt(-2.0f * std::log(u1));
    const float angle = 6.28318530717958647692f * u2;
    return {r * std::cos(angle), r * std::sin(angle)};
  }
  /// One standard normal: the first of normal_pair() (two uniforms per draw; use normal_pair()
  /// to get both halves when filling buffers).
  XPLOR_HD float normal() { return normal_pair()[0]; }
  /// Gumbel(0, 1): -log(-log(u)) with u in (0, 1).
  XPLOR_HD float gumbel() { return -std::log(-std::log(uniform_open())); }

 private:
  std::uint64_t seed_;
  std::uint64_t stream_;
  std::uint64_t draw_;
  std::array<std::uint32_t, 4> words_{};
  int lane_ = 0;
};

/// Inverse-CDF draw from unnormalised non-negative weights with one uniform u in [0, 1): the
/// first index whose running sum exceeds u * total (running sum in double, left to right, so the
/// result is the same on every backend). Zero-weight entries are never chosen.
XPLOR_HD inline std::int64_t categorical_index(const float* weights, std::int64_t n, double total, double u) {
  const double target = u * total;
  double running = 0.0;
  std::int64_t last_positive = -1;
  for (std::int64_t k = 0; k < n; ++k) {
    if (weights[k] <= 0.0f) continue;
    running += weights[k];
    last_positive = k;
    if (running > target) return k;
  }
  return last_positive;  // rounding left u * total at the very top: the last eligible entry
}

/// One categorical draw from `weights` (non-negative, finite, not all zero; need not sum to 1).
inline std::int64_t sample_categorical(std::span<const float> weights, philox_stream& gen) {
  constexpr const char* fn = "xplor::sample_categorical";
  detail::require(!weights.empty(), fn, "weights is empty");
  double total = 0.0;
  for (std::size_t k = 0; k < weights.size(); ++k) {
    detail::require(std::isfinite(weights[k]) && weights[k] >= 0.0f, fn, "weights[", k, "] = ", weights[k],
                    " is not a finite non-negative number");
    total += weights[k];
  }
  detail::require(total > 0.0, fn, "weights sum to 0");
  return categorical_index(weights.data(), static_cast<std::int64_t>(weights.size()), total,
                           gen.uniform_double());
}

}  // namespace xplor
