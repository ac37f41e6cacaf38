// Thoughtbubbles (Liu, Murty, Manning, Csordás, arXiv 2510.00219): the operations on a row's
// residual streams that a bubble model adds to the transformer. A row carries N streams, each with
// a residual vector x_n (C), a cumulative log-space score c_n <= 0 and the index tok_n of the
// token it belongs to (non-decreasing in n); it starts as one stream per token with c = 0.
//
// - fork_forward / fork_backward: the forking layer. Every stream proposes two candidates, a fork
//   (new copy, candidate 2n) and a keep (itself, 2n + 1), scored c_n + max(log sigmoid(s), clip)
//   with s = W norm(x_n); the top k survive in their original order, the rightmost candidate of
//   each token always, and fork copies get the learned fork embedding.
// - stream_positions: the fractional RoPE positions of the copies of each token.
// - merge_forward / merge_backward: residual averaging back to one vector per token.
// - stream_budget: how many streams a fork layer keeps.
//
// docs/bubble.md gives the equations, the choices made where the paper's code leaves them open
// (ties, positions, the clip's gradient) and the tests. Rows are processed one at a time: each row
// has its own token count and budget, so no padding is needed.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/model/layers.hpp"

namespace xplor::bubble {

enum class layer_kind : std::uint8_t { regular, fork };
/// How streams become one vector per token before the final norm: the score-weighted sum of a
/// token's copies (the paper's default), or the token's last copy alone (for debugging).
enum class averaging : std::uint8_t { residual, rightmost };

/// The bubble part of a model's configuration.
struct bubble_config {
  std::vector<layer_kind> plan = {};  // one entry per transformer layer; a fork runs before that block
  std::int64_t block_size = 0;        // training sequence length
  std::int64_t max_block_size = 0;    // streams a fork layer keeps at the training length
  bool fork_channel = true;           // the score channel on the last q / k dimension of every head
  float score_clip = -20.0f;          // floor of a candidate's log-sigmoid score
  averaging merge = averaging::residual;

  /// Throws xplor::error naming the first invalid field.
  void validate(int n_layers) const {
    constexpr const char* fn = "xplor::bubble::bubble_config";
    xplor::detail::require(plan.size() == static_cast<std::size_t>(n_layers), fn, "plan has ", plan.size(),
                           " entries for ", n_layers, " layers");
    for (std::size_t l = 0; l < plan.size(); ++l)
      xplor::detail::require(plan[l] == layer_kind::regular || plan[l] == layer_kind::fork, fn, "plan[", l,
                             "] = ", static_cast<int>(plan[l]), " is neither regular nor fork");
    xplor::detail::require(block_size >= 1 && block_size <= (std::int64_t{1} << 30), fn,
                           "block_size = ", block_size, " is outside [1, 2^30]");
    xplor::detail::require(max_block_size >= block_size && max_block_size <= 2 * block_size, fn,
                           "max_block_size = ", max_block_size, " is outside [block_size, 2 block_size] = [",
                           block_size, ", ", 2 * block_size, "]");
    xplor::detail::require(std::isfinite(score_clip) && score_clip < 0.0f, fn, "score_clip = ", score_clip,
                           " must be finite and negative");
    xplor::detail::require(merge == averaging::residual || merge == averaging::rightmost, fn,
                           "merge = ", static_cast<int>(merge), " is neither residual nor rightmost");
  }
};

/// Streams a fork layer keeps in a row of `tokens` tokens that has `streams` streams:
/// min(ceil(tokens * max_block_size / block_size), 2 * streams). At the training length this is
/// max_block_size; longer or shorter inputs keep the same ratio of streams to tokens.
inline std::int64_t stream_budget(const bubble_config& cfg, std::int64_t tokens, std::int64_t streams) {
  constexpr const char* fn = "xplor::bubble::stream_budget";
  xplor::detail::require(cfg.block_size >= 1 && cfg.max_block_size >= cfg.block_size, fn,
                         "block_size = ", cfg.block_size, ", max_block_size = ", cfg.max_block_size,
                         " (validate the config first)");
  xplor::detail::require(tokens >= 1 && tokens <= (std::int64_t{1} << 30), fn, "tokens = ", tokens,
                         " is outside [1, 2^30]");
  xplor::detail::require(streams >= tokens, fn, "streams = ", streams, " is fewer than tokens = ", tokens);
  const std::int64_t k = (tokens * cfg.max_block_size + cfg.block_size - 1) / cfg.block_size;
  return std::min(k, 2 * streams);
}

namespace detail {

inline void check_tokens(std::span<const std::int32_t> tok, const char* fn) {
  xplor::detail::require(!tok.empty(), fn, "tok is empty");
  xplor::detail::require(tok[0] == 0, fn, "tok[0] = ", tok[0], " must be 0 (every token keeps a stream)");
  for (std::size_t n = 1; n < tok.size(); ++n)
    xplor::detail::require(tok[n] == tok[n - 1] || tok[n] == tok[n - 1] + 1, fn, "tok[", n, "] = ", tok[n],
                           " after tok[", n - 1, "] = ", tok[n - 1],
                           " (token ids must be non-decreasing without gaps)");
}

/// True when stream n is the last copy of its token.
inline bool last_copy(std::span<const std::int32_t> tok, std::size_t n) {
  return n + 1 == tok.size() || tok[n + 1] != tok[n];
}

/// log sigmoid(s) without overflow: -log(1 + e^-s) = min(s, 0) - log1p(e^-|s|).
template <class T>
T log_sigmoid(T s) {
  return std::min(s, T(0)) - std::log1p(std::exp(-std::abs(s)));
}

}  // namespace detail

/// The candidates a fork layer keeps, ascending: indices into cand (2N entries; 2n is the fork of
/// stream n, 2n + 1 its keep). The keep candidate of each token's last stream is always kept; the
/// other k - tokens places go to the highest scores, ties to the lower candidate index. Throws for
/// a non-finite score, a k outside [tokens, 2N] or a tok that is not a row's token sequence.
template <class T>
void select_candidates(std::span<const T> cand, std::span<const std::int32_t> tok, std::int64_t k,
                       std::span<std::int32_t> out) {
  constexpr const char* fn = "xplor::bubble::select_candidates";
  detail::check_tokens(tok, fn);
  const std::size_t N = tok.size();
  xplor::detail::require(cand.size() == 2 * N, fn, "cand has ", cand.size(), " entries for ", N,
                         " streams (needs 2 per stream)");
  for (std::size_t j = 0; j < cand.size(); ++j)
    xplor::detail::require(std::isfinite(cand[j]), fn, "cand[", j, "] = ", cand[j], " is not finite");
  const std::int64_t tokens = std::int64_t{tok[N - 1]} + 1;
  xplor::detail::require(k >= tokens && k <= static_cast<std::int64_t>(2 * N), fn, "k = ", k,
                         " is outside [tokens, 2 streams] = [", tokens, ", ", 2 * N, "]");
  xplor::detail::require(out.size() == static_cast<std::size_t>(k), fn, "out has ", out.size(),
                         " entries for k = ", k);
  std::vector<std::int32_t> order(2 * N);
  std::iota(order.begin(), order.end(), 0);
  const auto forced = [&](std::int32_t j) {
    return j % 2 == 1 && detail::last_copy(tok, static_cast<std::size_t>(j / 2));
  };
  // Forced candidates rank above every score; then score descending; then index ascending.
  const auto before = [&](std::int32_t a, std::int32_t b) {
    const bool fa = forced(a), fb = forced(b);
    if (fa != fb) return fa;
    const T sa = cand[static_cast<std::size_t>(a)], sb = cand[static_cast<std::size_t>(b)];
    if (!fa && sa != sb) return sa > sb;
    return a < b;
  };
  const auto kth = order.begin() + k;
  if (kth != order.end()) std::nth_element(order.begin(), kth, order.end(), before);
  std::sort(order.begin(), kth);
  std::copy(order.begin(), kth, out.begin());
}

/// The fork layer's parameters (RMSNorm when norm_b is null, LayerNorm otherwise): norm weights
/// (C), the score projection W (2, C) with row 0 the fork score and row 1 the keep score, and the
/// fork embedding (C) added to new copies.
template <class T>
struct fork_weights {
  const T* norm_w = nullptr;
  const T* norm_b = nullptr;
  const T* score_w = nullptr;
  const T* embed = nullptr;
};
/// Gradients of the same tensors (accumulated; norm_b ignored for RMSNorm).
template <class T>
struct fork_grads {
  T* norm_w = nullptr;
  T* norm_b = nullptr;
  T* score_w = nullptr;
  T* embed = nullptr;
};

/// What fork_backward needs from the forward pass of one row.
template <class T>
struct fork_cache {
  std::vector<T> normed, mean, rstd;  // the norm's output [N, C] and statistics [N]
  std::vector<T> s;                   // raw scores [N, 2]
  std::vector<std::int32_t> kept;     // the kept candidates [k], ascending
};

/// One row through the fork layer: x [N, C], c [N], tok [N] -> x_out [k, C], c_out [k], tok_out [k].
template <class T>
void fork_forward(const fork_weights<T>& w, int C, T eps, T clip, std::span<const T> x, std::span<const T> c,
                  std::span<const std::int32_t> tok, std::int64_t k, fork_cache<T>& cache,
                  std::vector<T>& x_out, std::vector<T>& c_out, std::vector<std::int32_t>& tok_out) {
  constexpr const char* fn = "xplor::bubble::fork_forward";
  const std::size_t N = tok.size(), Cs = static_cast<std::size_t>(C);
  xplor::detail::require(C >= 1, fn, "C = ", C, " must be positive");
  xplor::detail::require(x.size() == N * Cs && c.size() == N, fn, "x has ", x.size(), " and c ", c.size(),
                         " entries for ", N, " streams of width ", C);
  cache.normed.resize(N * Cs);
  cache.mean.resize(N);
  cache.rstd.resize(N);
  cache.s.resize(2 * N);
  std::vector<T> cand(2 * N);
  for (std::size_t n = 0; n < N; ++n) {
    T* h = cache.normed.data() + n * Cs;
    model::layers::norm_forward(x.data() + n * Cs, w.norm_w, w.norm_b, h, C, eps, &cache.mean[n],
                                &cache.rstd[n]);
    for (std::size_t j = 0; j < 2; ++j) {
      T s = 0;
      for (std::size_t i = 0; i < Cs; ++i) s += w.score_w[j * Cs + i] * h[i];
      cache.s[2 * n + j] = s;
      cand[2 * n + j] = c[n] + std::max(detail::log_sigmoid(s), clip);
    }
  }
  cache.kept.resize(static_cast<std::size_t>(k));
  select_candidates(std::span<const T>(cand), tok, k, std::span<std::int32_t>(cache.kept));
  x_out.resize(cache.kept.size() * Cs);
  c_out.resize(cache.kept.size());
  tok_out.resize(cache.kept.size());
  for (std::size_t i = 0; i < cache.kept.size(); ++i) {
    const auto j = static_cast<std::size_t>(cache.kept[i]), n = j / 2;
    const T* src = x.data() + n * Cs;
    T* dst = x_out.data() + i * Cs;
    for (std::size_t e = 0; e < Cs; ++e) dst[e] = j % 2 == 0 ? src[e] + w.embed[e] : src[e];
    c_out[i] = cand[j];
    tok_out[i] = tok[n];
  }
}

/// Backward of fork_forward for one row: adds dL/dx [N, C] to dx and dL/dc [N] to dc, and the
/// parameter gradients to g, from dx_out [k, C] and dc_out [k]. The selection itself has no
/// gradient; a clipped score passes none (the clip is active).
template <class T>
void fork_backward(const fork_weights<T>& w, int C, std::span<const T> x, const fork_cache<T>& cache,
                   std::span<const T> dx_out, std::span<const T> dc_out, T clip, std::span<T> dx,
                   std::span<T> dc, const fork_grads<T>& g) {
  constexpr const char* fn = "xplor::bubble::fork_backward";
  const std::size_t N = cache.mean.size(), Cs = static_cast<std::size_t>(C), k = cache.kept.size();
  xplor::detail::require(dx_out.size() == k * Cs && dc_out.size() == k, fn, "dx_out has ", dx_out.size(),
                         " and dc_out ", dc_out.size(), " entries for ", k, " kept streams");
  xplor::detail::require(x.size() == N * Cs && dx.size() == N * Cs && dc.size() == N, fn,
                         "x, dx and dc must hold the forward's ", N, " streams");
  std::vector<T> dcand(2 * N, T(0));
  for (std::size_t i = 0; i < k; ++i) {
    const auto j = static_cast<std::size_t>(cache.kept[i]), n = j / 2;
    const T* d = dx_out.data() + i * Cs;
    for (std::size_t e = 0; e < Cs; ++e) dx[n * Cs + e] += d[e];
    if (j % 2 == 0)
      for (std::size_t e = 0; e < Cs; ++e) g.embed[e] += d[e];
    dcand[j] += dc_out[i];
  }
  std::vector<T> dh(Cs);
  for (std::size_t n = 0; n < N; ++n) {
    dc[n] += dcand[2 * n] + dcand[2 * n + 1];
    std::fill(dh.begin(), dh.end(), T(0));
    bool any = false;
    for (std::size_t j = 0; j < 2; ++j) {
      const T s = cache.s[2 * n + j];
      if (dcand[2 * n + j] == T(0) || !(detail::log_sigmoid(s) > clip)) continue;
      // d log sigmoid(s) / ds = sigmoid(-s)
      const T ds = dcand[2 * n + j] / (T(1) + std::exp(s));
      const T* h = cache.normed.data() + n * Cs;
      for (std::size_t i = 0; i < Cs; ++i) {
        g.score_w[j * Cs + i] += ds * h[i];
        dh[i] += ds * w.score_w[j * Cs + i];
      }
      any = true;
    }
    if (any)
      model::layers::norm_backward(x.data() + n * Cs, w.norm_w, w.norm_b != nullptr, cache.mean[n],
                                   cache.rstd[n], dh.data(), dx.data() + n * Cs, g.norm_w, g.norm_b, C);
  }
}

/// Fractional RoPE positions of a row's streams: the j-th of the n_t copies of token t sits at
/// position[t] - 1 + j / n_t (j = 1..n_t), so the copies fill (position[t] - 1, position[t]] and the
/// last copy keeps the token's own position; one stream per token gives the token positions
/// exactly. (The paper's cumulative sum of 1 / n_t gives the same values shifted by one, which
/// RoPE's relative angles ignore.)
inline void stream_positions(std::span<const std::int32_t> tok, std::span<const std::int32_t> position,
                             std::span<double> out) {
  constexpr const char* fn = "xplor::bubble::stream_positions";
  detail::check_tokens(tok, fn);
  xplor::detail::require(position.size() == static_cast<std::size_t>(tok.back()) + 1, fn, "position has ",
                         position.size(), " entries for ", tok.back() + 1, " tokens");
  xplor::detail::require(out.size() == tok.size(), fn, "out has ", out.size(), " entries for ", tok.size(),
                         " streams");
  for (std::size_t first = 0; first < tok.size();) {
    std::size_t end = first + 1;
    while (end < tok.size() && tok[end] == tok[first]) ++end;
    const double n_t = static_cast<double>(end - first), p = position[static_cast<std::size_t>(tok[first])];
    for (std::size_t j = first; j < end; ++j)
      out[j] = j + 1 == end ? p : p - 1.0 + static_cast<double>(j - first + 1) / n_t;
    first = end;
  }
}

/// One vector per token from a row's streams, y [tokens, C]: with one stream per token (no fork
/// kept a copy) y = x, unweighted; otherwise y_t = sum over t's copies of exp(c_n) x_n (residual)
/// or t's last copy (rightmost).
template <class T>
void merge_forward(averaging mode, int C, std::span<const T> x, std::span<const T> c,
                   std::span<const std::int32_t> tok, std::span<T> y) {
  constexpr const char* fn = "xplor::bubble::merge_forward";
  detail::check_tokens(tok, fn);
  const std::size_t N = tok.size(), Cs = static_cast<std::size_t>(C),
                    tokens = static_cast<std::size_t>(tok.back()) + 1;
  xplor::detail::require(x.size() == N * Cs && c.size() == N && y.size() == tokens * Cs, fn, "x has ",
                         x.size(), ", c ", c.size(), " and y ", y.size(), " entries for ", N, " streams, ",
                         tokens, " tokens of width ", C);
  if (N == tokens || mode == averaging::rightmost) {
    for (std::size_t n = 0; n < N; ++n)
      if (detail::last_copy(tok, n))
        std::copy_n(x.data() + n * Cs, Cs, y.data() + static_cast<std::size_t>(tok[n]) * Cs);
    return;
  }
  std::fill(y.begin(), y.end(), T(0));
  for (std::size_t n = 0; n < N; ++n) {
    const T gate = std::exp(c[n]);
    T* yt = y.data() + static_cast<std::size_t>(tok[n]) * Cs;
    for (std::size_t e = 0; e < Cs; ++e) yt[e] += gate * x[n * Cs + e];
  }
}

/// Backward of merge_forward: adds dL/dx to dx [N, C] and dL/dc to dc [N] from dy [tokens, C].
template <class T>
void merge_backward(averaging mode, int C, std::span<const T> x, std::span<const T> c,
                    std::span<const std::int32_t> tok, std::span<const T> dy, std::span<T> dx,
                    std::span<T> dc) {
  constexpr const char* fn = "xplor::bubble::merge_backward";
  detail::check_tokens(tok, fn);
  const std::size_t N = tok.size(), Cs = static_cast<std::size_t>(C),
                    tokens = static_cast<std::size_t>(tok.back()) + 1;
  xplor::detail::require(x.size() == N * Cs && c.size() == N && dy.size() == tokens * Cs &&
                             dx.size() == N * Cs && dc.size() == N,
                         fn, "x, dx [", N, ", ", C, "], c, dc [", N, "] and dy [", tokens, ", ", C,
                         "] have the wrong sizes");
  for (std::size_t n = 0; n < N; ++n) {
    const T* d = dy.data() + static_cast<std::size_t>(tok[n]) * Cs;
    if (N == tokens || mode == averaging::rightmost) {
      if (detail::last_copy(tok, n))
        for (std::size_t e = 0; e < Cs; ++e) dx[n * Cs + e] += d[e];
      continue;
    }
    const T gate = std::exp(c[n]);
    T dot = 0;
    for (std::size_t e = 0; e < Cs; ++e) {
      dx[n * Cs + e] += gate * d[e];
      dot += x[n * Cs + e] * d[e];
    }
    dc[n] += gate * dot;
  }
}

}  // namespace xplor::bubble
