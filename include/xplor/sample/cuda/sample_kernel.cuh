// Batched logits processing and draws on an NVIDIA GPU (nvcc only): one 1024-thread block per row
// (the row held in shared memory when it fits, up to about 56k tokens on H100/H200),
// the processors of processors.hpp (repetition penalty -> temperature -> top-k -> top-p -> min-p)
// without sorting the vocabulary, then the inverse-CDF draw. Top-k and top-p are radix selects on
// the float bit patterns (8 bits a pass, histograms in shared memory; top-p's histogram also
// carries the mass of each bucket), ties resolved in token-id order by a block scan. Every
// decision uses the CPU's own definitions (mass_units sums, pairwise_sum's tree, exp_fast and
// log_fast with unfused roundings), so the tokens equal xplor::sample::sample_rows on the CPU bit
// for bit for the same seed (cuda/tests/sample_kernel_test.cu checks it).
#pragma once

#include <cuda_runtime.h>

#include <cfloat>
#include <climits>
#include <cstdint>
#include <span>
#include <vector>

#include "xplor/core/cuda/check.cuh"
#include "xplor/core/numerics.hpp"
#include "xplor/core/random.hpp"
#include "xplor/core/view.hpp"
#include "xplor/sample/processors.hpp"

namespace xplor::sample::gpu {

namespace kernels {

using xplor::sample::kernels::neg_inf;
inline constexpr int threads = 1024;  // per row: 32 warps keep a row's passes latency-hidden
inline constexpr int warps = threads / 32;

/// Shared scratch of one row's block.
struct shared_state {
  unsigned count[256];
  long long mass[256];
  long long warp_ll[warps];
  float warp_f[warps];
  long long ll;
  float f;
  int found;
  int last;
  unsigned prefix;
  int need;
  int error;
};

__device__ inline float block_max(float x, shared_state& s) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  if ((threadIdx.x & 31) == 0) s.warp_f[threadIdx.x >> 5] = x;
  __syncthreads();
  float m = s.warp_f[0];
  for (int w = 1; w < warps; ++w) m = fmaxf(m, s.warp_f[w]);
  __syncthreads();  // warp_f is reused by the next call
  return m;
}

/// Exact integer block sum (any order gives the same value).
__device__ inline long long block_sum(long long x, shared_state& s) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  if ((threadIdx.x & 31) == 0) s.warp_ll[threadIdx.x >> 5] = x;
  __syncthreads();
  long long t = 0;
  for (int w = 0; w < warps; ++w) t += s.warp_ll[w];
  __syncthreads();
  return t;
}

/// Inclusive scan of x over the block in thread order; `total` gets the block's sum.
__device__ inline long long block_inclusive_scan(long long x, long long& total, shared_state& s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 1; o < 32; o <<= 1) {
    const long long y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  if (lane == 31) s.warp_ll[warp] = x;
  __syncthreads();
  long long offset = 0, t = 0;
  for (int w = 0; w < warps; ++w) {
    if (w < warp) offset += s.warp_ll[w];
    t += s.warp_ll[w];
  }
  __syncthreads();
  total = t;
  return x + offset;
}

/// xplor::detail::pairwise_sum(n, value) with the same tree, so the same bits: blocks of 32 (8
/// interleaved lanes, then the lanes pairwise) summed by one thread each into `part` (global
/// scratch of ceil(n / 32) floats), merged level by level as the host's binary counter merges
/// them (left + right within each power-of-two group), then the groups from the smallest up.
template <class F>
__device__ float block_pairwise_sum(std::int64_t n, F value, float* part, shared_state& s) {
  const std::int64_t nb = (n + 31) / 32;
  for (std::int64_t b = threadIdx.x; b < nb; b += threads) {
    const std::int64_t lo = b * 32;
    float sum = 0.0f;
    if (lo + 32 <= n) {
      float lane[8] = {};
      for (std::int64_t k = lo; k < lo + 32; k += 8)
        for (int j = 0; j < 8; ++j) lane[j] = add_rn(lane[j], value(k + j));
      sum = add_rn(add_rn(add_rn(lane[0], lane[1]), add_rn(lane[2], lane[3])),
                   add_rn(add_rn(lane[4], lane[5]), add_rn(lane[6], lane[7])));
    } else {
      for (std::int64_t i = lo; i < n; ++i) sum = add_rn(sum, value(i));
    }
    part[b] = sum;
  }
  __syncthreads();
  // An aligned run [i, i + w) of block sums is one subtree of the host's counter iff it ends
  // inside [0, nb): the counter's groups are nb's binary digits, largest first, each aligned.
  for (std::int64_t w = 2; w <= nb; w *= 2) {
    for (std::int64_t i = std::int64_t{threadIdx.x} * w; i + w <= nb; i += std::int64_t{threads} * w)
      part[i] = add_rn(part[i], part[i + w / 2]);
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    std::int64_t starts[64];
    int groups = 0;
    std::int64_t pos = 0;
    for (int bit = 62; bit >= 0; --bit)
      if ((nb >> bit) & 1) {
        starts[groups++] = pos;
        pos += std::int64_t{1} << bit;
      }
    float total = 0.0f;
    while (groups > 0) total = add_rn(total, part[starts[--groups]]);
    s.f = total;
  }
  __syncthreads();
  const float total = s.f;
  __syncthreads();
  return total;
}

/// Float -> unsigned key in the float order (-0 as +0, as the float comparisons see it).
__device__ inline unsigned order_key(float x) {
  if (x == 0.0f) x = 0.0f;
  const unsigned u = __float_as_uint(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/// Thread t's contiguous range of ids [lo, hi) (chunked scans: one block scan per row instead of
/// one per 256 ids; integer counts and masses make the chunking invisible in the results).
struct chunk {
  std::int64_t lo, hi;
  __device__ explicit chunk(std::int64_t V) {
    const std::int64_t per = (V + threads - 1) / threads;
    lo = per * threadIdx.x < V ? per * threadIdx.x : V;
    hi = lo + per < V ? lo + per : V;
  }
};

/// The n-th (1-based) v in [0, V) with pred(v), in id order; -1 when there are fewer.
template <class P>
__device__ int nth_match(std::int64_t V, P pred, long long n, shared_state& s) {
  const chunk ch(V);
  long long count = 0;
  for (std::int64_t v = ch.lo; v < ch.hi; ++v) count += pred(v) ? 1 : 0;
  if (threadIdx.x == 0) s.found = -1;
  long long total = 0;
  const long long before = block_inclusive_scan(count, total, s) - count;  // (synchronises)
  if (before < n && n <= before + count) {
    long long k = before;
    for (std::int64_t v = ch.lo; v < ch.hi; ++v)
      if (pred(v) && ++k == n) {
        s.found = static_cast<int>(v);
        break;
      }
  }
  __syncthreads();
  const int found = s.found;
  __syncthreads();
  return found;
}

/// Histogram update of one token per lane (bucket 256: none). The first radix pass (the top byte:
/// sign and exponent) puts most tokens in a few buckets, so it aggregates per warp: lanes with the
/// same bucket add their count and mass through one leader, masses (< 2^41 each) summed over the
/// group in three 14-bit parts that fit 32 bits for 32 lanes (exact). Later passes spread the few
/// tokens under the chosen prefix over 256 buckets: plain shared atomics. All 32 lanes call it.
__device__ inline void histogram_add(unsigned bucket, long long mass, shared_state& s, bool with_mass,
                                     bool aggregate) {
  if (!aggregate) {
    if (bucket < 256u) {
      atomicAdd(&s.count[bucket], 1u);
      if (with_mass && mass != 0)
        atomicAdd(reinterpret_cast<unsigned long long*>(&s.mass[bucket]),
                  static_cast<unsigned long long>(mass));
    }
    return;
  }
  if (!__any_sync(0xffffffffu, bucket < 256u)) return;
  const unsigned peers = __match_any_sync(0xffffffffu, bucket);
  if (with_mass) {
    const auto m = static_cast<unsigned long long>(mass);
    const unsigned p0 = __reduce_add_sync(peers, static_cast<unsigned>(m & 0x3fffu));
    const unsigned p1 = __reduce_add_sync(peers, static_cast<unsigned>((m >> 14) & 0x3fffu));
    const unsigned p2 = __reduce_add_sync(peers, static_cast<unsigned>(m >> 28));
    if (bucket < 256u && static_cast<int>(threadIdx.x & 31u) == __ffs(peers) - 1) {
      atomicAdd(&s.count[bucket], static_cast<unsigned>(__popc(peers)));
      const unsigned long long sum =
          p0 + (static_cast<unsigned long long>(p1) << 14) + (static_cast<unsigned long long>(p2) << 28);
      if (sum != 0) atomicAdd(reinterpret_cast<unsigned long long*>(&s.mass[bucket]), sum);
    }
  } else if (bucket < 256u && static_cast<int>(threadIdx.x & 31u) == __ffs(peers) - 1) {
    atomicAdd(&s.count[bucket], static_cast<unsigned>(__popc(peers)));
  }
}

/// Radix select of the k-th largest order_key among out[0, V) (k >= 1): returns the key and
/// leaves in s.need the rank of the wanted token among the tokens with that key (1-based).
__device__ inline unsigned select_kth_key(const float* out, std::int64_t V, int k, shared_state& s) {
  unsigned prefix = 0, mask = 0;
  int need = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += threads) s.count[b] = 0;
    __syncthreads();
    for (std::int64_t base = 0; base < V; base += threads) {  // the same trip count for every lane
      const std::int64_t v = base + threadIdx.x;
      unsigned bucket = 256u;
      if (v < V) {
        const unsigned key = order_key(out[v]);
        if ((key & mask) == prefix) bucket = (key >> shift) & 255u;
      }
      histogram_add(bucket, 0, s, false, shift == 24);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      long long acc = 0;
      int chosen = 0;
      for (int b = 255; b >= 0; --b) {
        if (acc + s.count[b] >= need) {
          chosen = b;
          break;
        }
        acc += s.count[b];
      }
      s.prefix = prefix | (static_cast<unsigned>(chosen) << shift);
      s.need = need - static_cast<int>(acc);
    }
    __syncthreads();
    prefix = s.prefix;
    need = s.need;
    mask |= 255u << shift;
    __syncthreads();
  }
  return prefix;
}

struct row_args {
  const float* logits;
  std::int64_t row_stride, col_stride, rows, V;
  const std::int32_t* context;          // device, may be null
  const std::int64_t* context_offsets;  // device [rows + 1], may be null
  xplor::sample::kernels::processor_config config;
  bool raw;
  std::uint64_t seed;
  const std::uint64_t* streams;
  const std::uint64_t* draws;
  float* processed;     // [rows, V]
  bool keep_processed;  // write the processed rows out (the fast path otherwise skips them)
  bool row_in_shared;   // the working row lives in dynamic shared memory (V floats)
  float* partials;      // [rows, ceil(V / 32)]
  std::int32_t* tokens;
  float* logprobs;
  float* entropies;           // may be null
  unsigned long long* error;  // min over rows of (4 * flat index + kind), ULLONG_MAX when none
};

__global__ void __launch_bounds__(threads) sample_rows_kernel(row_args a) {
  __shared__ shared_state s;
  extern __shared__ float row_smem[];
  const std::int64_t r = blockIdx.x, V = a.V, cs = a.col_stride;
  const float* z = a.logits + r * a.row_stride;
  // The working row: in shared memory when it fits (one read of the logits from memory, every
  // later pass on chip), else the row's slice of the processed buffer.
  float* out = a.row_in_shared ? row_smem : a.processed + r * V;
  float* part = a.partials + r * ((V + 31) / 32);
  const auto& c = a.config;

  const std::int64_t c0 = a.context_offsets != nullptr ? a.context_offsets[r] : 0;
  const std::int64_t c1 = a.context_offsets != nullptr ? a.context_offsets[r + 1] : 0;
  const bool penalty = c.repetition_penalty != 1.0f && c1 > c0;
  // Temperature only (the GRPO default): nothing needs the processed row in memory, so every
  // pass recomputes z / T from the logits (3 reads of the row instead of 7 reads and writes).
  const bool fast =
      !a.row_in_shared && !penalty && !(c.top_k > 0 && c.top_k < V) && !(c.top_p < 1.0f) && !(c.min_p > 0.0f);
  const float T = c.temperature;
  const double scale = xplor::sample::kernels::logit_scale(c);

  // Validation (as check_logits: NaN, +inf, a logit that overflows once scaled, or no finite
  // logit) fused into the first pass, which also applies the temperature: out = z / T (repetition
  // penalty below rewrites its tokens), or on the fast path takes the row's maximum.
  if (threadIdx.x == 0) s.error = INT_MAX;
  __syncthreads();
  int bad = INT_MAX, finite = 0;
  float row_top = neg_inf;
  for (std::int64_t v = threadIdx.x; v < V; v += threads) {
    const float x = z[v * cs];
    if (x != x)
      bad = min(bad, static_cast<int>(4 * v));
    else if (x == INFINITY)
      bad = min(bad, static_cast<int>(4 * v + 1));
    else if (x != -INFINITY) {
      finite = 1;
      if (fabs(static_cast<double>(x)) * scale > static_cast<double>(FLT_MAX))
        bad = min(bad, static_cast<int>(4 * v + 3));
    }
    const float xt = T == 1.0f ? x : x / T;  // x / 1 == x: skip the division
    if (fast)
      row_top = fmaxf(row_top, xt);
    else
      out[v] = xt;
  }
  if (bad != INT_MAX) atomicMin(&s.error, bad);
  finite = __syncthreads_or(finite);
  if (s.error == INT_MAX && !finite) s.error = 2;  // the row's first element, kind 2
  __syncthreads();
  if (s.error != INT_MAX) {
    if (threadIdx.x == 0) {
      const unsigned long long flat = static_cast<unsigned long long>(r * V + s.error / 4);
      atomicMin(a.error, 4ull * flat + static_cast<unsigned long long>(s.error % 4));
    }
    return;
  }
  if (penalty) {
    for (std::int64_t i = c0 + threadIdx.x; i < c1; i += threads) {
      const std::int32_t t = a.context[i];
      if (t < 0 || t >= V) {
        // Reported past every logit code, at the context index (the call throws); the token is skipped.
        atomicMin(a.error, static_cast<unsigned long long>(i) + 4ull * (1ull << 40));
        continue;
      }
      // Several entries of one token write the same value (read from the raw logit).
      const float zz = z[std::int64_t{t} * cs];
      out[t] = (zz > 0.0f ? zz / c.repetition_penalty : zz * c.repetition_penalty) / c.temperature;
    }
    __syncthreads();
  }
  bool normalized = false;

  if (c.top_k > 0 && c.top_k < V) {
    const unsigned kb = select_kth_key(out, V, c.top_k, s);
    const int rank = s.need;
    __syncthreads();
    const int boundary = nth_match(
        V, [out, kb](std::int64_t v) { return order_key(out[v]) == kb; }, rank, s);
    const float bv = out[boundary];
    for (std::int64_t v = threadIdx.x; v < V; v += threads)
      if (!(out[v] > bv || (out[v] == bv && v <= boundary))) out[v] = neg_inf;
    __syncthreads();
  }

  if (c.top_p < 1.0f) {
    using xplor::sample::kernels::mass_units;
    using xplor::sample::kernels::reaches;
    const float mx = block_max(
        [&] {
          float m = neg_inf;
          for (std::int64_t v = threadIdx.x; v < V; v += threads) m = fmaxf(m, out[v]);
          return m;
        }(),
        s);
    long long local = 0;
    for (std::int64_t v = threadIdx.x; v < V; v += threads) {
      const float w = out[v] == neg_inf ? 0.0f : exp_fast(out[v] - mx);
      out[v] = w;
      local += mass_units(w);
    }
    const long long total = block_sum(local, s);  // (block_sum synchronises: weights visible)
    const double target = xplor::sample::kernels::top_p_target(c.top_p, total);
    // Radix select on the weights' bits (w >= 0: the bits order like the values) for the first
    // bucket, from the top, whose cumulative mass reaches the target.
    unsigned prefix = 0, mask = 0;
    long long above = 0;  // mass of the tokens above the current bucket range
    bool ok = true;
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int b = threadIdx.x; b < 256; b += threads) {
        s.count[b] = 0;
        s.mass[b] = 0;
      }
      __syncthreads();
      for (std::int64_t base = 0; base < V; base += threads) {  // the same trip count for every lane
        const std::int64_t v = base + threadIdx.x;
        unsigned bucket = 256u;
        long long m = 0;
        if (v < V) {
          const float w = out[v];
          const unsigned key = __float_as_uint(w);
          if ((key & mask) == prefix) {
            bucket = (key >> shift) & 255u;
            m = mass_units(w);
          }
        }
        histogram_add(bucket, m, s, true, shift == 24);
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        long long acc = above;
        int chosen = -1;
        for (int b = 255; b >= 0; --b) {
          if (reaches(acc + s.mass[b], target)) {
            chosen = b;
            break;
          }
          acc += s.mass[b];
        }
        s.found = chosen;
        s.prefix = prefix | (static_cast<unsigned>(chosen < 0 ? 0 : chosen) << shift);
        s.ll = acc;
      }
      __syncthreads();
      if (s.found < 0) ok = false;
      prefix = s.prefix;
      above = s.ll;
      mask |= 255u << shift;
      __syncthreads();
      if (!ok) break;
    }
    int boundary = -1;
    if (ok) {
      // All tokens with this key have the same weight f: the boundary is the j-th of them in id
      // order, the first j whose cumulative mass reaches the target.
      const unsigned kb = prefix;
      if (threadIdx.x == 0) {
        const long long f = mass_units(__uint_as_float(kb));
        const long long count = s.count[kb & 255u];
        long long j = 1;
        while (j < count && !reaches(above + j * f, target)) ++j;
        s.ll = j;
      }
      __syncthreads();
      const long long j = s.ll;
      __syncthreads();
      boundary = nth_match(
          V, [out, kb](std::int64_t v) { return __float_as_uint(out[v]) == kb; }, j, s);
    }
    // keep_prefix: the kept weights' total, then log-probabilities (the keep test is a pure
    // function of the weight and the id, so the first pass only reads).
    const float bv = boundary >= 0 ? out[boundary] : 0.0f;
    auto keep = [bv, boundary](float p, std::int64_t v) {
      return xplor::sample::kernels::in_top_p_prefix(p, v, bv, boundary);
    };
    local = 0;
    for (std::int64_t v = threadIdx.x; v < V; v += threads) {
      const float p = out[v];
      if (keep(p, v)) local += mass_units(p);
    }
    const long long kept = block_sum(local, s);  // (synchronises: bv read by every thread)
    const float log_total = xplor::sample::kernels::keep_prefix_log_total(kept);
    for (std::int64_t v = threadIdx.x; v < V; v += threads) {
      const float p = out[v];
      out[v] = keep(p, v) ? log_fast(p) - log_total : neg_inf;
    }
    __syncthreads();
    normalized = true;
  }

  if (c.min_p > 0.0f) {
    const float mx = block_max(
        [&] {
          float m = neg_inf;
          for (std::int64_t v = threadIdx.x; v < V; v += threads) m = fmaxf(m, out[v]);
          return m;
        }(),
        s);
    for (std::int64_t v = threadIdx.x; v < V; v += threads)
      if (out[v] != neg_inf && exp_fast(out[v] - mx) < c.min_p) out[v] = neg_inf;
    __syncthreads();
    normalized = false;
  }

  // lw(v): the row's log-weights (the processed row up to its normaliser). logp(v) normalises in
  // the shifted domain as renormalize() does, (x - m) - log s; a row top-p already normalised
  // passes through (m = log s = 0: x - 0 - 0 == x).
  auto lw = [=](std::int64_t v) {
    if (fast) {
      const float x = z[v * cs];
      return T == 1.0f ? x : x / T;
    }
    return out[v];
  };
  float m = 0.0f, log_s = 0.0f;
  if (!normalized) {
    // kept_logsumexp with the host's pairwise tree.
    m = block_max(fast ? row_top : [&] {
      float mm = neg_inf;
      for (std::int64_t v = threadIdx.x; v < V; v += threads) mm = fmaxf(mm, out[v]);
      return mm;
    }(), s);
    const float sum = block_pairwise_sum(
        V,
        [lw, m](std::int64_t i) {
          const float x = lw(i);
          return x == neg_inf ? 0.0f : exp_fast(x - m);
        },
        part, s);
    log_s = log_fast(sum);
  }
  auto logp = [lw, m, log_s](std::int64_t v) {
    const float x = lw(v);
    return x == neg_inf ? neg_inf : (x - m) - log_s;
  };

  // The draw: the first kept token (id order) whose running mass exceeds the threshold.
  const auto words = philox_stream(a.seed, a.streams[r]).block(a.draws[r]);
  const long long threshold = xplor::sample::kernels::draw_threshold(uniform_double(words[0], words[1]));
  int token = -1;
  {
    const chunk ch(V);
    long long mine = 0;
    int my_last = -1;
    for (std::int64_t v = ch.lo; v < ch.hi; ++v) {
      const float lp = logp(v);
      if (lp != neg_inf) {
        mine += xplor::sample::kernels::mass_units(exp_fast(lp));
        my_last = static_cast<int>(v);
      }
    }
    if (threadIdx.x == 0) {
      s.found = INT_MAX;
      s.last = -1;
    }
    long long total = 0;
    const long long before = block_inclusive_scan(mine, total, s) - mine;  // (synchronises)
    if (my_last >= 0) atomicMax(&s.last, my_last);
    // The one thread whose range holds the crossing rescans it in order.
    if (before <= threshold && before + mine > threshold) {
      long long running = before;
      for (std::int64_t v = ch.lo; v < ch.hi; ++v) {
        const float lp = logp(v);
        if (lp != neg_inf) {
          running += xplor::sample::kernels::mass_units(exp_fast(lp));
          if (running > threshold) {
            s.found = static_cast<int>(v);
            break;
          }
        }
      }
    }
    __syncthreads();
    token = s.found != INT_MAX ? s.found : s.last;  // last: truncation left u uncovered
    __syncthreads();
  }

  float logprob = 0.0f;
  if (a.raw) {
    // row_log_softmax_at of the raw logits (std::exp/std::log: equal to the host's within float
    // rounding, not bit for bit; only the reported log-probability depends on it).
    const float zm = block_max(
        [&] {
          float mm = neg_inf;
          for (std::int64_t v = threadIdx.x; v < V; v += threads) mm = fmaxf(mm, z[v * cs]);
          return mm;
        }(),
        s);
    const float sum = block_pairwise_sum(
        V, [z, cs, zm](std::int64_t i) { return expf(z[i * cs] - zm); }, part, s);
    logprob = (z[std::int64_t{token} * cs] - zm) - logf(sum);
  } else {
    logprob = logp(token);
  }
  float entropy = 0.0f;
  if (a.entropies != nullptr)
    entropy = block_pairwise_sum(
        V,
        [logp](std::int64_t v) {
          const float lp = logp(v);
          return lp == neg_inf ? 0.0f : -mul_rn(exp_fast(lp), lp);
        },
        part, s);
  if (a.keep_processed && (!normalized || a.row_in_shared)) {
    __syncthreads();                   // every read of the log-weights above is done
    float* dst = a.processed + r * V;  // (== out, element by element in place, off shared memory)
    for (std::int64_t v = threadIdx.x; v < V; v += threads) dst[v] = logp(v);
  }
  if (threadIdx.x == 0) {
    a.tokens[r] = token;
    a.logprobs[r] = logprob;
    if (a.entropies != nullptr) a.entropies[r] = entropy;
  }
}

}  // namespace kernels

/// Processes and draws rows on the GPU, keeping its scratch between calls (a decode loop calls
/// it once per step). Same arguments and results as xplor::sample::sample_rows, with every span
/// in device memory except context_offsets (host, as there).
class row_sampler {
 public:
  /// Launches on `stream` and waits for it (the validation result is read back).
  void sample(device_view2d<const float> logits, const sampling_params& params, const device_draw_keys& keys,
              const device_draw_outputs& out, device_span<const std::int32_t> context_tokens = {},
              std::span<const std::int64_t> context_offsets = {}, cudaStream_t stream = nullptr) {
    enqueue(logits, params, keys, out, context_tokens, context_offsets, stream);
    finish(stream);
  }

  /// The launch alone (no wait, no error read-back): for timing loops. finish() reports errors.
  void enqueue(device_view2d<const float> logits, const sampling_params& params, const device_draw_keys& keys,
               const device_draw_outputs& out, device_span<const std::int32_t> context_tokens = {},
               std::span<const std::int64_t> context_offsets = {}, cudaStream_t stream = nullptr) {
    constexpr const char* fn = "xplor::sample::gpu::row_sampler::sample";
    const auto config = detail::check_params(params, fn);
    const std::int64_t R = logits.rows(), V = logits.cols();
    xplor::detail::require(R > 0 && V > 0, fn, "logits is empty (", R, " x ", V, ")");
    xplor::detail::require(V < (std::int64_t{1} << 22), fn, "vocabulary of ", V,
                           " tokens exceeds the 2^22 that mass_units supports");
    auto rows_of = [&](std::size_t size, const char* name, bool optional) {
      xplor::detail::require((optional && size == 0) || static_cast<std::int64_t>(size) == R, fn, name,
                             " has ", size, " elements for ", R, " rows");
    };
    rows_of(keys.streams.size(), "keys.streams", false);
    rows_of(keys.draws.size(), "keys.draws", false);
    rows_of(out.tokens.size(), "out.tokens", false);
    rows_of(out.logprobs.size(), "out.logprobs", false);
    rows_of(out.entropies.size(), "out.entropies", true);
    const std::int64_t* d_offsets = nullptr;
    if (!context_offsets.empty()) {
      const ragged_groups contexts(context_offsets, static_cast<std::int64_t>(context_tokens.size()));
      xplor::detail::require(contexts.num_groups() == R, fn, "context_offsets describe ",
                             contexts.num_groups(), " rows for ", R, " rows");
      offsets_.upload(context_offsets.data(), context_offsets.size());
      d_offsets = offsets_.data();
    }
    processed_.resize(static_cast<std::size_t>(R * V));
    partials_.resize(static_cast<std::size_t>(R * ((V + 31) / 32)));
    error_.resize(1);
    xplor::gpu::check_cuda(cudaMemsetAsync(error_.data(), 0xff, sizeof(unsigned long long), stream),
                           "cudaMemsetAsync(error flag)");
    kernels::row_args a{logits.data(),
                        logits.stride(0),
                        logits.stride(1),
                        R,
                        V,
                        context_tokens.empty() ? nullptr : context_tokens.data(),
                        d_offsets,
                        config,
                        params.logprobs == logprobs_mode::raw,
                        keys.seed,
                        keys.streams.data(),
                        keys.draws.data(),
                        processed_.data(),
                        keep_processed_,
                        false,
                        partials_.data(),
                        out.tokens.data(),
                        out.logprobs.data(),
                        out.entropies.empty() ? nullptr : out.entropies.data(),
                        error_.data()};
    // The row in shared memory when it fits next to the static scratch (opt-in limit: 227 KB on
    // H100/H200, so V up to about 56,000 tokens).
    std::size_t smem = 0;
    if (shared_rows_) {
      if (optin_smem_ < 0) {
        int device = 0, optin = 0;
        xplor::gpu::check_cuda(cudaGetDevice(&device), "cudaGetDevice");
        xplor::gpu::check_cuda(
            cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
            "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)");
        optin_smem_ = optin;
      }
      const auto bytes = static_cast<std::size_t>(V) * sizeof(float);
      if (bytes + sizeof(kernels::shared_state) + 1024 <= static_cast<std::size_t>(optin_smem_)) {
        smem = bytes;
        if (smem > smem_attribute_) {
          xplor::gpu::check_cuda(
              cudaFuncSetAttribute(kernels::sample_rows_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   static_cast<int>(smem)),
              "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)");
          smem_attribute_ = smem;
        }
      }
    }
    a.row_in_shared = smem > 0;
    rows_ = R;
    cols_ = V;
    config_ = config;
    kernels::sample_rows_kernel<<<static_cast<unsigned>(R), kernels::threads, smem, stream>>>(a);
    xplor::gpu::check_launch("xplor::sample::gpu::sample_rows_kernel");
  }

  /// Waits for the launches on `stream` and throws xplor::error for invalid input rows.
  void finish(cudaStream_t stream = nullptr) {
    constexpr const char* fn = "xplor::sample::gpu::row_sampler::sample";
    xplor::gpu::check_cuda(cudaStreamSynchronize(stream),
                           "xplor::sample::gpu::sample_rows_kernel (execution)");
    unsigned long long code = 0;
    error_.download(&code, 1);
    if (code == ~0ull) return;
    if (code >= 4ull * (1ull << 40))
      xplor::detail::fail(fn, "context_tokens[", code - 4ull * (1ull << 40), "] is outside [0, ", cols_, ")");
    const auto flat = static_cast<std::int64_t>(code / 4), row = flat / cols_, col = flat % cols_;
    if (code % 4 == 2)
      xplor::detail::fail(fn, "logits row ", row, " is -inf in every column (no token left)");
    if (code % 4 == 3)
      xplor::detail::fail(fn, "logits[", row, ", ", col, "] times ",
                          xplor::sample::kernels::logit_scale(config_),
                          " (1 / temperature, times the repetition penalty or its inverse) overflows float");
    xplor::detail::fail(fn, "logits[", row, ", ", col, "] is ", code % 4 == 0 ? "NaN" : "+inf",
                        "; logits must be finite or -inf");
  }

  /// The processed log-probabilities [rows, V] of the last call (device memory), written unless
  /// keep_processed(false) was set.
  const float* processed() const { return processed_.data(); }
  /// Whether calls write the processed rows (default true). Off, temperature-only sampling reads
  /// the logits three times and writes nothing but the per-row results.
  void keep_processed(bool keep) { keep_processed_ = keep; }
  /// Whether rows that fit go through shared memory (default true; false: always global memory,
  /// for tests of that path).
  void shared_rows(bool use) { shared_rows_ = use; }

 private:
  xplor::gpu::buffer<float> processed_, partials_;
  xplor::gpu::buffer<std::int64_t> offsets_;
  xplor::gpu::buffer<unsigned long long> error_;
  std::int64_t rows_ = 0, cols_ = 1;
  xplor::sample::kernels::processor_config config_{};
  bool keep_processed_ = true;
  bool shared_rows_ = true;
  int optin_smem_ = -1;
  std::size_t smem_attribute_ = 0;
};

/// One-shot form of row_sampler::sample.
inline void sample_rows(device_view2d<const float> logits, const sampling_params& params,
                        const device_draw_keys& keys, const device_draw_outputs& out,
                        device_span<const std::int32_t> context_tokens = {},
                        std::span<const std::int64_t> context_offsets = {}) {
  row_sampler sampler;
  sampler.sample(logits, params, keys, out, context_tokens, context_offsets);
}

}  // namespace xplor::sample::gpu
