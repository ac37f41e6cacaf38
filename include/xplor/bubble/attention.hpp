// Thoughtbubbles' attention over a row's streams (arXiv 2510.00219, the score-attenuated block):
// causal over the stream order, RoPE at the streams' fractional positions, and the stream scores
// c entering twice — as a score channel (after RoPE the last dimension of every head's query is
// set to 1 and of its key to c, adding c_key / sqrt(D) to each logit) and as value attenuation
// (v <- exp(c) v). The softmax attention itself is the transformer's (model/attention.hpp), so
// with c = 0, no score channel and integer positions the result is the transformer's, bit for bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/model/attention.hpp"
#include "xplor/model/layers.hpp"

namespace xplor::bubble {

/// RoPE tables at arbitrary positions: cos and sin [N, D/2] of pos_n theta^(-2i/D), the angle in
/// double as model::rope_tables computes it, so integer positions give the transformer's bits.
template <class T>
void rope_at(std::span<const double> pos, int D, double theta, std::vector<T>& cos_out,
             std::vector<T>& sin_out) {
  constexpr const char* fn = "xplor::bubble::rope_at";
  xplor::detail::require(D >= 2 && D % 2 == 0, fn, "head size D = ", D, " must be even and positive");
  xplor::detail::require(std::isfinite(theta) && theta > 1.0, fn, "theta = ", theta,
                         " must be finite and exceed 1");
  const auto half = static_cast<std::size_t>(D / 2);
  cos_out.resize(pos.size() * half);
  sin_out.resize(pos.size() * half);
  for (std::size_t n = 0; n < pos.size(); ++n) {
    xplor::detail::require(std::isfinite(pos[n]), fn, "pos[", n, "] = ", pos[n], " is not finite");
    for (std::size_t i = 0; i < half; ++i) {
      const double freq = std::pow(theta, -2.0 * static_cast<double>(i) / D);
      cos_out[n * half + i] = static_cast<T>(std::cos(pos[n] * freq));
      sin_out[n * half + i] = static_cast<T>(std::sin(pos[n] * freq));
    }
  }
}

/// What attention_backward needs from the forward pass of one row.
template <class T>
struct attention_cache {
  std::vector<T> q, k, v;  // [N, C]: rotated (and score-channelled) queries and keys, attenuated values
  std::vector<T> p;        // [H, N, N] attention probabilities (0 above the diagonal)
};

namespace detail {
inline void check_attention(int H, int C, std::size_t N, std::size_t qkv, std::size_t cos, std::size_t sin,
                            const char* fn) {
  xplor::detail::require(H >= 1 && C >= 1 && C % H == 0 && (C / H) % 2 == 0, fn, "C = ", C, " and H = ", H,
                         " need an even head size C / H");
  const auto Cs = static_cast<std::size_t>(C), half = static_cast<std::size_t>(C / H / 2);
  xplor::detail::require(N >= 1 && qkv == N * 3 * Cs && cos == N * half && sin == N * half, fn, "c has ", N,
                         " streams; qkv needs [N, 3C] = ", N * 3 * Cs, " entries (has ", qkv,
                         "), cos / sin [N, D/2] = ", N * half, " (have ", cos, " / ", sin, ")");
}
}  // namespace detail

/// One row: qkv [N, 3C] (the projection's output, rows [q | k | v]) -> y [N, C].
template <class T>
void attention_forward(int H, int C, bool fork_channel, std::span<const T> qkv, std::span<const T> c,
                       std::span<const T> cos, std::span<const T> sin, attention_cache<T>& cache,
                       std::span<T> y) {
  constexpr const char* fn = "xplor::bubble::attention_forward";
  const std::size_t N = c.size();
  detail::check_attention(H, C, N, qkv.size(), cos.size(), sin.size(), fn);
  const auto Cs = static_cast<std::size_t>(C), D = Cs / static_cast<std::size_t>(H), half = D / 2;
  xplor::detail::require(y.size() == N * Cs, fn, "y has ", y.size(), " entries, needs [N, C] = ", N * Cs);
  cache.q.resize(N * Cs);
  cache.k.resize(N * Cs);
  cache.v.resize(N * Cs);
  cache.p.assign(static_cast<std::size_t>(H) * N * N, T(0));
  for (std::size_t n = 0; n < N; ++n) {
    const T* row = qkv.data() + n * 3 * Cs;
    const T gate = std::exp(c[n]);
    for (std::size_t e = 0; e < Cs; ++e) {
      cache.q[n * Cs + e] = row[e];
      cache.k[n * Cs + e] = row[Cs + e];
      cache.v[n * Cs + e] = gate * row[2 * Cs + e];
    }
    for (std::size_t h = 0; h < static_cast<std::size_t>(H); ++h) {
      T* q = cache.q.data() + n * Cs + h * D;
      T* k = cache.k.data() + n * Cs + h * D;
      model::layers::rope_rotate(q, cos.data() + n * half, sin.data() + n * half, static_cast<int>(D), T(1));
      model::layers::rope_rotate(k, cos.data() + n * half, sin.data() + n * half, static_cast<int>(D), T(1));
      if (fork_channel) {
        q[D - 1] = T(1);
        k[D - 1] = c[n];
      }
    }
  }
  const auto rows = static_cast<std::int64_t>(N), ld = static_cast<std::int64_t>(Cs),
             Dl = static_cast<std::int64_t>(D);
  for (std::size_t h = 0; h < static_cast<std::size_t>(H); ++h)
    model::attention::head_forward(cache.q.data() + h * D, cache.k.data() + h * D, cache.v.data() + h * D, ld,
                                   rows, Dl, cache.p.data() + h * N * N, y.data() + h * D, ld);
}

/// Backward of attention_forward for one row: writes dL/dqkv [N, 3C] and adds dL/dc to dc [N],
/// from dy [N, C].
template <class T>
void attention_backward(int H, int C, bool fork_channel, std::span<const T> c, std::span<const T> cos,
                        std::span<const T> sin, const attention_cache<T>& cache, std::span<const T> dy,
                        std::span<T> dqkv, std::span<T> dc) {
  constexpr const char* fn = "xplor::bubble::attention_backward";
  const std::size_t N = c.size();
  detail::check_attention(H, C, N, dqkv.size(), cos.size(), sin.size(), fn);
  const auto Cs = static_cast<std::size_t>(C), D = Cs / static_cast<std::size_t>(H), half = D / 2;
  xplor::detail::require(
      dy.size() == N * Cs && dc.size() == N && cache.p.size() == static_cast<std::size_t>(H) * N * N, fn,
      "dy [N, C], dc [N] and the forward's cache must hold ", N, " streams");
  const auto rows = static_cast<std::int64_t>(N), ld = static_cast<std::int64_t>(Cs),
             Dl = static_cast<std::int64_t>(D);
  std::vector<T> dP(N * N);
  for (std::size_t h = 0; h < static_cast<std::size_t>(H); ++h) {
    T* d = dqkv.data() + h * D;  // the attenuated values' gradient lands in the v part for now
    model::attention::head_backward(cache.q.data() + h * D, cache.k.data() + h * D, cache.v.data() + h * D,
                                    ld, cache.p.data() + h * N * N, dy.data() + h * D, ld, rows, Dl,
                                    dP.data(), d, d + Cs, d + 2 * Cs, 3 * ld);
  }
  for (std::size_t n = 0; n < N; ++n) {
    T* row = dqkv.data() + n * 3 * Cs;
    // v = exp(c) v_raw: dv_raw = exp(c) dv, dc += dv . v.
    const T gate = std::exp(c[n]);
    T dv_dot = 0;
    for (std::size_t e = 0; e < Cs; ++e) {
      dv_dot += row[2 * Cs + e] * cache.v[n * Cs + e];
      row[2 * Cs + e] *= gate;
    }
    dc[n] += dv_dot;
    for (std::size_t h = 0; h < static_cast<std::size_t>(H); ++h) {
      T* dq = row + h * D;
      T* dk = row + Cs + h * D;
      if (fork_channel) {  // the overwritten channels: q's is a constant, k's is c
        dc[n] += dk[D - 1];
        dq[D - 1] = T(0);
        dk[D - 1] = T(0);
      }
      model::layers::rope_rotate(dq, cos.data() + n * half, sin.data() + n * half, static_cast<int>(D),
                                 T(-1));
      model::layers::rope_rotate(dk, cos.data() + n * half, sin.data() + n * half, static_cast<int>(D),
                                 T(-1));
    }
  }
}

}  // namespace xplor::bubble
