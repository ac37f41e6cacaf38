// Logits processing and categorical draws for sampling completions: repetition penalty ->
// temperature -> top-k -> top-p -> min-p, renormalising after each (docs/methods.md §7.2, the order of
// HF/vLLM), then a reproducible draw from the processed distribution. Top-k and top-p select
// with an O(V) expected quickselect instead of sorting the vocabulary, and equal the sorted
// definition exactly, ties included (ties go to the lower token id). Every sum that decides a
// token (top-p masses, the draw's running probability) is an exact integer sum of fixed-point
// weights (mass_units), and every float reduction has a fixed shape (pairwise_sum), so any
// summation order, and so a parallel GPU kernel (include/xplor/sample/cuda/sample_kernel.cuh),
// reaches the same bits: the same seed draws the same tokens on every backend.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/core/numerics.hpp"
#include "xplor/core/random.hpp"
#include "xplor/core/view.hpp"

namespace xplor::sample {

/// Which log-probability a rollout records: of the processed distribution the token was drawn
/// from (default; what the policy loss needs to be consistent with the sampler, trl#3029), or of
/// the raw model logits before any processing (vLLM raw_logprobs).
enum class logprobs_mode { processed, raw };

/// Defaults are TRL GRPOConfig's (every processor off, temperature 1).
struct sampling_params {
  float temperature = 1.0f;
  int top_k = 0;                    // 0: off
  float top_p = 1.0f;               // 1: off
  float min_p = 0.0f;               // 0: off
  float repetition_penalty = 1.0f;  // 1: off (CTRL, Keskar et al. 2019; HF semantics)
  int max_completion_length = 256;
  std::int32_t eos_token = -1;                 // -1: none; drawing it ends the completion ("eos")
  std::vector<std::int32_t> stop_tokens = {};  // drawing one ends the completion ("stop")
  logprobs_mode logprobs = logprobs_mode::processed;
};

namespace kernels {

inline constexpr float neg_inf = -std::numeric_limits<float>::infinity();

/// A weight w in [0, ~1] (a probability, or exp(logit - max)) as an integer count of 2^-40,
/// truncated. Masses are sums of these: exact, so the same in any order on any backend (a
/// float or double running sum would depend on the order). 2^-40 per token is far below what a
/// float probability resolves next to the row's largest weight (1), and V 2^40 fits in 63 bits
/// for any vocabulary below 2^22 tokens.
XPLOR_HD inline std::int64_t mass_units(float w) { return static_cast<std::int64_t>(w * 0x1p40f); }
inline constexpr double mass_unit = 0x1p-40;

/// The processors' numbers, as a plain struct device code can copy.
struct processor_config {
  float temperature, top_p, min_p, repetition_penalty;
  int top_k;
};

/// The largest factor the processors scale a logit by (1/T, times the penalty or its inverse):
/// every backend rejects rows where a logit times it overflows float, so that the processed
/// log-weights stay finite and the normalisation never meets inf - inf.
XPLOR_HD inline double logit_scale(const processor_config& c) {
  const double p = c.repetition_penalty;
  return (p > 1.0 ? p : 1.0 / p) / static_cast<double>(c.temperature);
}

/// (value desc, id asc): the total order that defines "the most probable" with ties to the lower
/// token id (on log-probabilities for top-k, on probabilities for top-p).
XPLOR_HD inline bool before(const float* v, std::int32_t a, std::int32_t b) {
  return v[a] > v[b] || (v[a] == v[b] && a < b);
}

/// Partitions idx[lo, hi) around a pivot (median of three) in the order `before`; returns the
/// pivot's final position p: idx[lo, p) come before it, idx[p+1, hi) after it.
XPLOR_HD inline std::int64_t partition(const float* v, std::int32_t* idx, std::int64_t lo, std::int64_t hi) {
  const std::int64_t mid = lo + (hi - lo) / 2, last = hi - 1;
  // Median of three moved to `last`.
  auto swap = [&](std::int64_t a, std::int64_t b) {
    const std::int32_t t = idx[a];
    idx[a] = idx[b];
    idx[b] = t;
  };
  if (before(v, idx[mid], idx[lo])) swap(mid, lo);
  if (before(v, idx[last], idx[lo])) swap(last, lo);
  if (before(v, idx[mid], idx[last])) swap(mid, last);
  const std::int32_t pivot = idx[last];
  std::int64_t store = lo;
  for (std::int64_t i = lo; i < last; ++i)
    if (before(v, idx[i], pivot)) swap(i, store++);
  swap(store, last);
  return store;
}

/// partition() for the top-p search, branch-free (the comparison result moves the store index
/// instead of a branch), that also returns the mass of the tokens placed before the pivot
/// (`before_mass`, in mass_units).
XPLOR_HD inline std::int64_t partition_mass(const float* v, std::int32_t* idx, std::int64_t lo,
                                            std::int64_t hi, std::int64_t& before_mass) {
  const std::int64_t mid = lo + (hi - lo) / 2, last = hi - 1;
  auto swap = [&](std::int64_t a, std::int64_t b) {
    const std::int32_t t = idx[a];
    idx[a] = idx[b];
    idx[b] = t;
  };
  if (before(v, idx[mid], idx[lo])) swap(mid, lo);
  if (before(v, idx[last], idx[lo])) swap(last, lo);
  if (before(v, idx[mid], idx[last])) swap(mid, last);
  const std::int32_t pivot = idx[last];
  const float pv = v[pivot];
  std::int64_t store = lo;
  std::int64_t mass = 0;
  for (std::int64_t i = lo; i < last; ++i) {
    // Lomuto without a branch: [lo, store) come before the pivot, [store, i] do not.
    const std::int32_t x = idx[i];
    const float w = v[x];
    const bool first = (w > pv) | ((w == pv) & (x < pivot));
    idx[i] = idx[store];
    idx[store] = x;
    store += first;
    mass += mass_units(w) & -std::int64_t{first};  // w or 0: the same sum as adding only the w before
  }
  swap(store, last);
  before_mass = mass;
  return store;
}

XPLOR_HD inline float row_max(const float* x, std::int64_t n) {
  float m = neg_inf;
  for (std::int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

/// Normalises the kept (finite) entries of a row of log-weights: x - m - log sum exp(x - m) for
/// the row's max m, in the shifted domain. x - (m + log s) would round m + log s to the spacing
/// of m: for log-weights near 2e5 (logits 20 at T = 1e-4) the probabilities summed to 1.0057.
XPLOR_HD inline void renormalize(float* x, std::int64_t n) {
  const float m = row_max(x, n);
  if (m == neg_inf) return;
  const float log_s = log_fast(xplor::detail::pairwise_sum(
      n, [x, m](std::int64_t i) { return x[i] == neg_inf ? 0.0f : exp_fast(x[i] - m); }));
  for (std::int64_t i = 0; i < n; ++i) x[i] = x[i] == neg_inf ? neg_inf : (x[i] - m) - log_s;
}

/// Top-p weights in place: x[v] = exp_fast(x[v] - mx) for kept tokens, 0 for removed ones; returns
/// their total in mass_units. Shared by process_row and the sorted reference.
XPLOR_HD inline std::int64_t top_p_weights(float* x, std::int64_t V, float mx) {
  std::int64_t total = 0;
  std::int64_t v = 0;
#if XPLOR_HOST_SIMD
  {
    using simd::f4;
    f4 m4, w;
    simd::splat(m4, mx);
    const f4 ninf = {neg_inf, neg_inf, neg_inf, neg_inf}, zero = {};
    for (; v + 4 <= V; v += 4) {
      simd::load(w, x + v);
      const auto removed = w == ninf;
      w = w - m4;
      simd::exp_fast(w);
      w = removed ? zero : w;
      simd::store(x + v, w);
      total += mass_units(w[0]) + mass_units(w[1]) + mass_units(w[2]) + mass_units(w[3]);
    }
  }
#endif
  for (; v < V; ++v) {
    x[v] = x[v] == neg_inf ? 0.0f : exp_fast(x[v] - mx);
    total += mass_units(x[v]);
  }
  return total;
}

/// log of a kept total in mass_units (>= 1 unit: the largest weight, 1, is always kept).
XPLOR_HD inline float keep_prefix_log_total(std::int64_t total) {
  return log_fast(static_cast<float>(static_cast<double>(total) * mass_unit));
}

/// The top-p decision: does a prefix of mass `cum` reach top_p of `total` (both mass_units)? One
/// expression, so every backend decides the same.
XPLOR_HD inline bool reaches(std::int64_t cum, double target) { return static_cast<double>(cum) >= target; }
XPLOR_HD inline double top_p_target(float top_p, std::int64_t total) {
  return static_cast<double>(top_p) * static_cast<double>(total);
}

/// Whether token v of weight p lies in the top-p prefix that ends at `boundary` (weight bv) in
/// the order (weight desc, id asc); boundary -1 keeps every token of positive weight. The one
/// keep rule of the CPU's keep_prefix and the CUDA kernel.
XPLOR_HD inline bool in_top_p_prefix(float p, std::int64_t v, float bv, std::int32_t boundary) {
  return p > 0.0f && (boundary < 0 || p > bv || (p == bv && v <= boundary));
}

/// Weights p[V] (probabilities up to a constant) -> log-probabilities of the tokens up to
/// `boundary` in (p desc, id asc), normalised over them; the rest -inf (boundary -1: rounding
/// left the total below top_p, keep all).
XPLOR_HD inline void keep_prefix(float* p, std::int64_t V, std::int32_t boundary) {
  const float bv = boundary >= 0 ? p[boundary] : 0.0f;
  std::int64_t total = 0;
  for (std::int64_t v = 0; v < V; ++v) {
    if (!in_top_p_prefix(p[v], v, bv, boundary)) p[v] = 0.0f;
    total += mass_units(p[v]);
  }
  const float log_total = keep_prefix_log_total(total);
  std::int64_t v = 0;
#if XPLOR_HOST_SIMD
  {
    using simd::f4;
    f4 w, lt, ninf;
    simd::splat(lt, log_total);
    simd::splat(ninf, neg_inf);
    const f4 zero = {};
    for (; v + 4 <= V; v += 4) {
      simd::load(w, p + v);
      const auto kept = w > zero;
      f4 l = w;
      simd::log_fast_positive(l);
      l = l - lt;
      w = kept ? l : ninf;
      simd::store(p + v, w);
    }
  }
#endif
  for (; v < V; ++v) p[v] = p[v] > 0.0f ? log_fast(p[v]) - log_total : neg_inf;
}

/// One row: raw logits (stride) -> processed log-probabilities out[V] (removed tokens -inf).
/// `context` (may be empty) holds the tokens the repetition penalty applies to; `idx` is scratch
/// of V entries.
XPLOR_HD inline void process_row(const float* logits, std::int64_t stride, std::int64_t V,
                                 const std::int32_t* context, std::int64_t context_len,
                                 const processor_config& c, float* out, std::int32_t* idx) {
  for (std::int64_t v = 0; v < V; ++v) out[v] = logits[v * stride];
  // Repetition penalty (HF): each token seen in the context, once: positive logits divided by
  // the penalty, negative ones multiplied. Reading the raw logit makes repeats idempotent.
  if (c.repetition_penalty != 1.0f)
    for (std::int64_t i = 0; i < context_len; ++i) {
      const float z = logits[std::int64_t{context[i]} * stride];
      out[context[i]] = z > 0.0f ? z / c.repetition_penalty : z * c.repetition_penalty;
    }
  for (std::int64_t v = 0; v < V; ++v) out[v] /= c.temperature;
  // From here `out` holds log-weights: the log-probabilities up to one constant per row. Top-k and
  // min-p only compare tokens, so renormalising after each step (docs/methods.md §7.2) changes nothing
  // they decide; top-p normalises its masses itself, and the row is renormalised once at the end.
  bool normalized = false;

  if (c.top_k > 0 && c.top_k < V) {
    for (std::int64_t v = 0; v < V; ++v) idx[v] = static_cast<std::int32_t>(v);
    // Quickselect the k-th token in (value desc, id asc): keep everything before it.
    std::int64_t lo = 0, hi = V, k = c.top_k - 1;
    while (hi - lo > 1) {
      const std::int64_t p = partition(out, idx, lo, hi);
      if (p == k) break;
      if (p < k)
        lo = p + 1;
      else
        hi = p;
    }
    const std::int32_t boundary = idx[k];
    const float bv = out[boundary];
    for (std::int64_t v = 0; v < V; ++v)
      if (!(out[v] > bv || (out[v] == bv && v <= boundary))) out[v] = neg_inf;
  }

  if (c.top_p < 1.0f) {
    // The smallest prefix of (probability desc, id asc) whose mass reaches top_p: weights
    // w = exp(out - max) in place, their total, then a quickselect on mass (exact sums in
    // mass_units, so the prefix masses equal the sorted reference's cumulative sums).
    const std::int64_t total = top_p_weights(out, V, row_max(out, V));
    const double target = top_p_target(c.top_p, total);
    // Tokens with w <= (1 - top_p) total / V hold at most (1 - top_p) total, so the tokens above
    // that level reach the target by themselves and the boundary is among them: only they are
    // selected over (unless truncation left them short, then all are). They are a prefix of the
    // order, so the boundary found among them is the same token either way.
    const auto floor_w = static_cast<float>((1.0 - double(c.top_p)) * double(total) * mass_unit / double(V));
    std::int64_t n = 0;
    std::int64_t candidate_mass = 0;
    for (std::int64_t v = 0; v < V; ++v) {  // branch-free: the index is written, kept or overwritten
      const bool candidate = out[v] > floor_w;
      idx[n] = static_cast<std::int32_t>(v);
      n += candidate;
      candidate_mass += mass_units(out[v]) & -std::int64_t{candidate};  // a mask, not a branch
    }
    if (!reaches(candidate_mass, target)) {
      n = 0;
      for (std::int64_t v = 0; v < V; ++v)
        if (out[v] > 0.0f) idx[n++] = static_cast<std::int32_t>(v);
    }
    std::int64_t taken = 0;  // mass of the tokens known to be in the prefix
    std::int64_t lo = 0, hi = n;
    std::int32_t boundary = -1;
    while (lo < hi) {
      std::int64_t before_mass = 0;
      const std::int64_t p = partition_mass(out, idx, lo, hi, before_mass);
      if (reaches(taken + before_mass, target)) {
        hi = p;  // the boundary is among the tokens before the pivot
      } else if (reaches(taken + before_mass + mass_units(out[idx[p]]), target)) {
        boundary = idx[p];
        break;
      } else {
        taken += before_mass + mass_units(out[idx[p]]);
        lo = p + 1;
      }
    }
    keep_prefix(out, V, boundary);
    normalized = true;
  }

  if (c.min_p > 0.0f) {
    // p_v >= min_p * max p  <=>  exp(out_v - max out) >= min_p.
    const float mx = row_max(out, V);
    for (std::int64_t v = 0; v < V; ++v)
      if (out[v] != neg_inf && exp_fast(out[v] - mx) < c.min_p) out[v] = neg_inf;
    normalized = false;
  }
  if (!normalized) renormalize(out, V);
}

/// The draw's threshold: u in [0, 1) in mass_units (truncated).
XPLOR_HD inline std::int64_t draw_threshold(double u) { return static_cast<std::int64_t>(u * 0x1p40); }

/// Inverse-CDF draw from normalised log-probabilities with one uniform u in [0, 1): the first
/// token (in token-id order) whose running probability exceeds u, the running sum exact in
/// mass_units so that every backend and every summation order picks the same token; if truncation
/// leaves the total at or under u, the last kept token.
XPLOR_HD inline std::int32_t draw_row(const float* logp, std::int64_t V, double u) {
  const std::int64_t threshold = draw_threshold(u);
  std::int64_t running = 0;
  std::int32_t last = -1;
  for (std::int64_t v = 0; v < V; ++v) {
    if (logp[v] == neg_inf) continue;
    running += mass_units(exp_fast(logp[v]));
    last = static_cast<std::int32_t>(v);
    if (running > threshold) return last;
  }
  return last;
}

}  // namespace kernels

namespace detail {
/// Validates the processors' numbers: temperature and repetition_penalty normal floats > 0 (a
/// subnormal divisor overflows every logit to inf and the log-probabilities to NaN), top_p in
/// (0, 1] and min_p in [0, 1], neither subnormal.
inline kernels::processor_config check_params(const sampling_params& p, const char* fn) {
  xplor::detail::require(std::isnormal(p.temperature) && p.temperature > 0.0f, fn,
                         "temperature = ", p.temperature,
                         " must be a normal float > 0 (use top_k = 1 for greedy decoding)");
  xplor::detail::require(p.top_k >= 0, fn, "top_k = ", p.top_k, " is negative");
  xplor::detail::require(std::isnormal(p.top_p) && p.top_p > 0.0f && p.top_p <= 1.0f, fn, "top_p = ", p.top_p,
                         " is not a normal float in (0, 1]");
  xplor::detail::require(p.min_p == 0.0f || (std::isnormal(p.min_p) && p.min_p > 0.0f && p.min_p <= 1.0f), fn,
                         "min_p = ", p.min_p, " is not 0 or a normal float in (0, 1]");
  xplor::detail::require(std::isnormal(p.repetition_penalty) && p.repetition_penalty > 0.0f, fn,
                         "repetition_penalty = ", p.repetition_penalty, " must be a normal float > 0");
  return {p.temperature, p.top_p, p.min_p, p.repetition_penalty, p.top_k};
}
}  // namespace detail

/// Writes the normalised log-probabilities after the processors, in the documented order, with
/// removed tokens at -inf. `context` is what the repetition penalty applies to (the prompt and
/// completion so far; empty: no penalty).
inline void process_logits(std::span<const float> logits, const sampling_params& params,
                           std::span<float> logprobs_out, std::span<const std::int32_t> context) {
  constexpr const char* fn = "xplor::sample::process_logits";
  const auto config = detail::check_params(params, fn);
  xplor::detail::require(logprobs_out.size() == logits.size(), fn, "logprobs_out has ", logprobs_out.size(),
                         " elements for ", logits.size(), " logits");
  xplor::detail::check_logits(cpu, xplor::detail::as_row_view(logits), fn, "logits",
                              kernels::logit_scale(config));
  const auto V = static_cast<std::int64_t>(logits.size());
  for (std::size_t i = 0; i < context.size(); ++i)
    xplor::detail::require(context[i] >= 0 && context[i] < V, fn, "context[", i, "] = ", context[i],
                           " is outside [0, ", V, ")");
  std::vector<std::int32_t> idx(logits.size());
  kernels::process_row(logits.data(), 1, V, context.data(), static_cast<std::int64_t>(context.size()), config,
                       logprobs_out.data(), idx.data());
}
inline void process_logits(std::span<const float> logits, const sampling_params& params,
                           std::span<float> logprobs_out) {
  process_logits(logits, params, logprobs_out, {});
}

// ---------------------------------------------------------------------------------------------
// Batched: process and draw one token for each of `rows` rows on a backend.

/// Where each row's draw comes from: Philox block `draws[r]` of stream `streams[r]` under `seed`
/// (for rollouts: stream_id(prompt, sample), draw = decode step).
/// `Space` is where the arrays live: draw_keys for xplor::cpu, device_draw_keys (device_span)
/// for xplor::device and the GPU sampler.
template <class Space>
struct basic_draw_keys {
  std::uint64_t seed = 0;
  span_in<Space, const std::uint64_t> streams = {};  // [rows]
  span_in<Space, const std::uint64_t> draws = {};    // [rows]
};
using draw_keys = basic_draw_keys<host_memory>;
using device_draw_keys = basic_draw_keys<device_memory>;

/// Per-row outputs of sample_rows ([rows] each, in the backend's memory; entropy may be empty).
template <class Space>
struct basic_draw_outputs {
  span_in<Space, std::int32_t> tokens = {};
  span_in<Space, float> logprobs = {};   // of the drawn token, processed or raw (params.logprobs)
  span_in<Space, float> entropies = {};  // of the processed distribution
};
using draw_outputs = basic_draw_outputs<host_memory>;
using device_draw_outputs = basic_draw_outputs<device_memory>;

namespace kernels {
struct sample_row_op {
  view2d<const float> logits;
  const std::int32_t* context;          // ragged contexts, may be null
  const std::int64_t* context_offsets;  // [rows + 1], may be null
  processor_config config;
  bool raw;
  std::uint64_t seed;
  const std::uint64_t* streams;
  const std::uint64_t* draws;
  float* processed;   // [rows, V] scratch
  std::int32_t* idx;  // [rows, V] scratch
  std::int32_t* tokens;
  float* logprobs;
  float* entropies;  // may be null
  XPLOR_HD void operator()(std::int64_t r) const {
    const std::int64_t V = logits.cols();
    float* p = processed + r * V;
    const std::int64_t c0 = context_offsets != nullptr ? context_offsets[r] : 0;
    const std::int64_t c1 = context_offsets != nullptr ? context_offsets[r + 1] : 0;
    process_row(&logits(r, 0), logits.stride(1), V, context + c0, c1 - c0, config, p, idx + r * V);
    const auto words = philox_stream(seed, streams[r]).block(draws[r]);
    const std::int32_t tok = draw_row(p, V, uniform_double(words[0], words[1]));
    tokens[r] = tok;
    if (raw) {
      logprobs[r] = xplor::detail::row_log_softmax_at({&logits(r, 0), V, logits.stride(1)}, tok);
    } else {
      logprobs[r] = p[tok];
    }
    if (entropies != nullptr) {
      // H = -sum p log p over the kept tokens.
      const float h = xplor::detail::pairwise_sum(
          V, [p](std::int64_t v) { return p[v] == neg_inf ? 0.0f : -mul_rn(exp_fast(p[v]), p[v]); });
      entropies[r] = h;
    }
  }
};
}  // namespace kernels

/// Processes each row of `logits` [rows, V] with `params` and draws one token per row. Contexts
/// for the repetition penalty are ragged: row r's are context_tokens[context_offsets[r] ..
/// context_offsets[r+1]) (empty spans: no penalty; offsets are host memory, tokens backend memory).
/// Every span and view is in the backend's memory (draw_keys / device_draw_keys and so on).
template <execution_tag Exec>
void sample_rows(Exec exec, view2d_for<Exec, const float> logits, const sampling_params& params,
                 const basic_draw_keys<memory_of<Exec>>& keys, const basic_draw_outputs<memory_of<Exec>>& out,
                 span_for<Exec, const std::int32_t> context_tokens = {},
                 std::span<const std::int64_t> context_offsets = {}) {
  constexpr const char* fn = "xplor::sample::sample_rows";
  const auto config = detail::check_params(params, fn);
  xplor::detail::check_logits(exec, logits, fn, "logits", kernels::logit_scale(config));
  const std::int64_t R = logits.rows(), V = logits.cols();
  auto rows_of = [&](std::size_t size, const char* name, bool optional) {
    xplor::detail::require((optional && size == 0) || static_cast<std::int64_t>(size) == R, fn, name, " has ",
                           size, " elements for ", R, " rows");
  };
  rows_of(keys.streams.size(), "keys.streams", false);
  rows_of(keys.draws.size(), "keys.draws", false);
  rows_of(out.tokens.size(), "out.tokens", false);
  rows_of(out.logprobs.size(), "out.logprobs", false);
  rows_of(out.entropies.size(), "out.entropies", true);
  if (!context_offsets.empty()) {
    const ragged_groups contexts(context_offsets, static_cast<std::int64_t>(context_tokens.size()));
    xplor::detail::require(contexts.num_groups() == R, fn, "context_offsets describe ", contexts.num_groups(),
                           " rows for ", R, " rows");
  }
  const auto staged_offsets = stage(exec, context_offsets);
  const std::int64_t* ctx_off = context_offsets.empty() ? nullptr : staged_offsets.data();
  auto processed = make_buffer<float>(exec, static_cast<std::size_t>(R * V));
  auto idx = make_buffer<std::int32_t>(exec, static_cast<std::size_t>(R * V));
  for_each_index(
      exec, R,
      kernels::sample_row_op{xplor::detail::kernel_view(logits),
                             context_tokens.empty() ? nullptr : context_tokens.data(), ctx_off, config,
                             params.logprobs == logprobs_mode::raw, keys.seed, keys.streams.data(),
                             keys.draws.data(), processed.data(), idx.data(), out.tokens.data(),
                             out.logprobs.data(), out.entropies.empty() ? nullptr : out.entropies.data()},
      V * 8);
}

// ---------------------------------------------------------------------------------------------
// The sorted definition, for tests and as the benchmark's baseline: the same processors with a
// full sort of the vocabulary.

namespace reference {
inline void process_logits_sorted(std::span<const float> logits, const sampling_params& params,
                                  std::span<float> out, std::span<const std::int32_t> context = {}) {
  const auto config = detail::check_params(params, "xplor::sample::reference::process_logits_sorted");
  const auto V = static_cast<std::int64_t>(logits.size());
  std::copy(logits.begin(), logits.end(), out.begin());
  for (std::int32_t t : context) {
    const float z = logits[t];
    out[t] = z > 0.0f ? z / config.repetition_penalty : z * config.repetition_penalty;
  }
  for (auto& x : out) x /= config.temperature;
  bool normalized = false;
  std::vector<std::int32_t> order(logits.size());
  auto sorted = [&] {
    for (std::int64_t v = 0; v < V; ++v) order[v] = static_cast<std::int32_t>(v);
    std::sort(order.begin(), order.end(),
              [&](std::int32_t a, std::int32_t b) { return kernels::before(out.data(), a, b); });
  };
  if (config.top_k > 0 && config.top_k < V) {
    sorted();
    for (std::int64_t i = config.top_k; i < V; ++i) out[order[i]] = kernels::neg_inf;
  }
  if (config.top_p < 1.0f) {
    const std::int64_t total = kernels::top_p_weights(out.data(), V, kernels::row_max(out.data(), V));
    sorted();
    std::int64_t cum = 0;
    std::int32_t boundary = -1;
    for (std::int64_t i = 0; i < V && out[order[i]] > 0.0f; ++i) {
      cum += kernels::mass_units(out[order[i]]);
      if (kernels::reaches(cum, kernels::top_p_target(config.top_p, total))) {
        boundary = order[i];
        break;
      }
    }
    kernels::keep_prefix(out.data(), V, boundary);
    normalized = true;
  }
  if (config.min_p > 0.0f) {
    const float mx = kernels::row_max(out.data(), V);
    for (auto& x : out)
      if (x != kernels::neg_inf && exp_fast(x - mx) < config.min_p) x = kernels::neg_inf;
    normalized = false;
  }
  if (!normalized) kernels::renormalize(out.data(), V);
}
}  // namespace reference

}  // namespace xplor::sample
