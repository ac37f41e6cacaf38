// Stable numerics on logits rows: pairwise summation, logsumexp, log-softmax, softmax and the
// entropy of a softmax row, for one row (std::span) or a batch of rows ([rows, vocab] views) on
// either backend. Every public entry point rejects NaN and +Inf logits and rows with no finite
// logit (-inf marks a removed token; a row where every token is removed has no distribution).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>

#include "xplor/core/config.hpp"
#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/core/view.hpp"

namespace xplor {
namespace detail {

/// Pairwise (cascade) summation of value(0) + ... + value(n-1) in fp32: blocks of 32 summed in 8
/// interleaved lanes, block sums merged like a binary counter, so the rounding error grows with
/// log2(n) instead of n. Iterative, so it runs unchanged in device code. `block_sum(lo)` returns
/// the sum of the full block [lo, lo + 32) with exactly the arithmetic of pairwise_sum (8 lanes,
/// then the lanes pairwise): scalar_block below, or an explicit-SIMD version of it on the host.
template <class F, class B>
XPLOR_HD float pairwise_sum_blocks(std::int64_t n, F value, B block_sum) {
  constexpr std::int64_t block = 32;
  float sums[64];
  std::int64_t blocks[64];  // how many blocks each partial sum holds (a power of two)
  int top = 0;
  for (std::int64_t lo = 0; lo < n; lo += block) {
    const std::int64_t hi = lo + block < n ? lo + block : n;
    float s = 0.0f;
    if (hi - lo == block) {
      s = block_sum(lo);
    } else {
      for (std::int64_t i = lo; i < hi; ++i) s += value(i);
    }
    sums[top] = s;
    blocks[top] = 1;
    ++top;
    while (top >= 2 && blocks[top - 1] == blocks[top - 2]) {
      sums[top - 2] += sums[top - 1];
      blocks[top - 2] *= 2;
      --top;
    }
  }
  float total = 0.0f;
  while (top > 0) total += sums[--top];  // smallest partials first
  return total;
}

/// A full block of 32 as 8 interleaved lanes, then the lanes pairwise.
template <class F>
struct scalar_block {
  F value;
  XPLOR_HD float operator()(std::int64_t lo) const {
    float lane[8] = {};
    for (std::int64_t k = lo; k < lo + 32; k += 8)
      for (int j = 0; j < 8; ++j) lane[j] += value(k + j);
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  }
};

template <class F>
XPLOR_HD float pairwise_sum(std::int64_t n, F value) {
  return pairwise_sum_blocks(n, value, scalar_block<F>{value});
}

/// One logits row: `n` values at z[0], z[stride], ...
struct logits_row {
  const float* z;
  std::int64_t n;
  std::int64_t stride;
  XPLOR_HD float operator[](std::int64_t i) const { return z[i * stride]; }
};

XPLOR_HD inline float row_max(logits_row r) {
  float m = -std::numeric_limits<float>::infinity();
  for (std::int64_t i = 0; i < r.n; ++i) m = r[i] > m ? r[i] : m;
  return m;
}

/// sum_i exp(z_i - m) for the row's max m (in [1, n] for a valid row).
XPLOR_HD inline float row_shifted_sum(logits_row r, float m) {
  return pairwise_sum(r.n, [r, m](std::int64_t i) { return std::exp(r[i] - m); });
}

XPLOR_HD inline float row_logsumexp(logits_row r) {
  const float m = row_max(r);
  return m + std::log(row_shifted_sum(r, m));
}

/// log softmax(z)_i as (z_i - m) - log s, in the shifted domain: z_i - (m + log s) would round
/// m + log s to the spacing of m (at z = {1e8, 1e8} the log-probabilities would be 0, not -log 2).
XPLOR_HD inline float row_log_softmax_at(logits_row r, std::int64_t i, float m, float log_s) {
  return (r[i] - m) - log_s;
}
XPLOR_HD inline float row_log_softmax_at(logits_row r, std::int64_t i) {
  const float m = row_max(r);
  return row_log_softmax_at(r, i, m, std::log(row_shifted_sum(r, m)));
}

/// H = logsumexp(z) - sum_i softmax(z)_i z_i, evaluated on z - max(z) (the same value, without
/// the cancellation of two large numbers); removed tokens (-inf) contribute 0.
XPLOR_HD inline float row_entropy(logits_row r) {
  const float m = row_max(r);
  const float log_s = std::log(row_shifted_sum(r, m));
  const float expected = pairwise_sum(r.n, [r, m, log_s](std::int64_t i) {
    const float shifted = r[i] - m;
    return shifted == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(shifted - log_s) * shifted;
  });
  return log_s - expected;
}

/// Finds the first invalid logit of a [rows, cols] view as a packed code, or -1 when all are
/// valid: code = 4 * flat_index + kind, kind 0 = NaN, 1 = +inf, 2 = whole row -inf (index of the
/// row's first element), 3 = finite but |x| * scale overflows float (a sampler's temperature and
/// repetition penalty would turn it into an infinity, and the row's distribution into NaN).
struct first_invalid_logit {
  view2d<const float> v;
  double scale = 1.0;
  XPLOR_HD std::int64_t operator()(std::int64_t r) const {
    bool any_finite = false;
    for (std::int64_t c = 0; c < v.cols(); ++c) {
      const float x = v(r, c);
      if (x != x) return 4 * (r * v.cols() + c);
      if (x == std::numeric_limits<float>::infinity()) return 4 * (r * v.cols() + c) + 1;
      if (x != -std::numeric_limits<float>::infinity()) {
        any_finite = true;
        if (static_cast<double>(x < 0.0f ? -x : x) * scale >
            static_cast<double>(std::numeric_limits<float>::max()))
          return 4 * (r * v.cols() + c) + 3;
      }
    }
    return any_finite ? -1 : 4 * (r * v.cols()) + 2;
  }
};
struct min_valid_code {
  XPLOR_HD std::int64_t operator()(std::int64_t a, std::int64_t b) const {
    if (a < 0) return b;
    if (b < 0) return a;
    return a < b ? a : b;
  }
};

/// Validates a [rows, cols] logits view on the backend that holds it: finite or -inf, at least
/// one finite logit per row, and (scale > 1, from a sampler) |x| * scale a finite float.
template <execution_tag Exec>
void check_logits(Exec exec, view2d_for<Exec, const float> v, const char* function, const char* argument,
                  double scale = 1.0) {
  require(v.rows() > 0 && v.cols() > 0, function, argument, " is empty (", v.rows(), " x ", v.cols(), ")");
  const std::int64_t code = transform_reduce(exec, v.rows(), std::int64_t{-1}, min_valid_code{},
                                             first_invalid_logit{kernel_view(v), scale});
  if (code < 0) return;
  const std::int64_t flat = code / 4, row = flat / v.cols(), col = flat % v.cols();
  constexpr const char* kinds[] = {"NaN", "+inf", "-inf in every column (no token left)"};
  if (code % 4 == 2) fail(function, argument, " row ", row, " is ", kinds[2]);
  if (code % 4 == 3)
    fail(function, argument, "[", row, ", ", col, "] times ", scale,
         " (1 / temperature, times the repetition penalty or its inverse) overflows float; lower the "
         "logits or raise the temperature");
  fail(function, argument, "[", row, ", ", col, "] is ", kinds[code % 4], "; logits must be finite or -inf");
}

/// A span as a [1, n] view.
template <class T>
view2d<T> as_row_view(std::span<T> z) {
  return view2d<T>(z.data(), {1, static_cast<std::int64_t>(z.size())},
                   {static_cast<std::int64_t>(z.size()), 1});
}

inline void check_same_shape(view2d<const float> a, view2d<float> b, const char* function) {
  require(a.rows() == b.rows() && a.cols() == b.cols(), function, "out is ", b.rows(), " x ", b.cols(),
          " but logits are ", a.rows(), " x ", a.cols());
}

struct log_softmax_row_op {
  view2d<const float> in;
  view2d<float> out;
  bool exponentiate;  // write softmax instead of log-softmax
  XPLOR_HD void operator()(std::int64_t r) const {
    const logits_row row{&in(r, 0), in.cols(), in.stride(1)};
    const float m = row_max(row), log_s = std::log(row_shifted_sum(row, m));
    for (std::int64_t c = 0; c < in.cols(); ++c) {
      const float lp = row_log_softmax_at(row, c, m, log_s);
      out(r, c) = exponentiate ? std::exp(lp) : lp;
    }
  }
};
struct logsumexp_row_op {
  view2d<const float> in;
  float* out;
  XPLOR_HD void operator()(std::int64_t r) const {
    out[r] = row_logsumexp({&in(r, 0), in.cols(), in.stride(1)});
  }
};
struct entropy_row_op {
  view2d<const float> in;
  float* out;
  XPLOR_HD void operator()(std::int64_t r) const {
    out[r] = row_entropy({&in(r, 0), in.cols(), in.stride(1)});
  }
};

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Batched rows on a backend: logits [rows, vocab] -> out [rows, vocab] or [rows].

/// out = log_softmax(logits) row by row.
template <execution_tag Exec>
void log_softmax_rows(Exec exec, view2d_for<Exec, const float> logits, view2d_for<Exec, float> out) {
  detail::check_logits(exec, logits, "xplor::log_softmax_rows", "logits");
  detail::check_same_shape(detail::kernel_view(logits), detail::kernel_view(out), "xplor::log_softmax_rows");
  for_each_index(exec, logits.rows(),
                 detail::log_softmax_row_op{detail::kernel_view(logits), detail::kernel_view(out), false},
                 logits.cols());
}

/// out = softmax(logits) row by row.
template <execution_tag Exec>
void softmax_rows(Exec exec, view2d_for<Exec, const float> logits, view2d_for<Exec, float> out) {
  detail::check_logits(exec, logits, "xplor::softmax_rows", "logits");
  detail::check_same_shape(detail::kernel_view(logits), detail::kernel_view(out), "xplor::softmax_rows");
  for_each_index(exec, logits.rows(),
                 detail::log_softmax_row_op{detail::kernel_view(logits), detail::kernel_view(out), true},
                 logits.cols());
}

/// out[r] = logsumexp(logits row r).
template <execution_tag Exec>
void logsumexp_rows(Exec exec, view2d_for<Exec, const float> logits, span_for<Exec, float> out) {
  detail::check_logits(exec, logits, "xplor::logsumexp_rows", "logits");
  detail::require(static_cast<std::int64_t>(out.size()) == logits.rows(), "xplor::logsumexp_rows", "out has ",
                  out.size(), " elements for ", logits.rows(), " rows");
  for_each_index(exec, logits.rows(), detail::logsumexp_row_op{detail::kernel_view(logits), out.data()},
                 logits.cols());
}

/// out[r] = entropy (nats) of softmax(logits row r).
template <execution_tag Exec>
void entropy_rows(Exec exec, view2d_for<Exec, const float> logits, span_for<Exec, float> out) {
  detail::check_logits(exec, logits, "xplor::entropy_rows", "logits");
  detail::require(static_cast<std::int64_t>(out.size()) == logits.rows(), "xplor::entropy_rows", "out has ",
                  out.size(), " elements for ", logits.rows(), " rows");
  for_each_index(exec, logits.rows(), detail::entropy_row_op{detail::kernel_view(logits), out.data()},
                 logits.cols());
}

// ---------------------------------------------------------------------------------------------
// One host row.

inline float logsumexp(std::span<const float> logits) {
  float out = 0.0f;
  logsumexp_rows(cpu, detail::as_row_view(logits), std::span<float>(&out, 1));
  return out;
}

inline float entropy(std::span<const float> logits) {
  float out = 0.0f;
  entropy_rows(cpu, detail::as_row_view(logits), std::span<float>(&out, 1));
  return out;
}

inline void log_softmax(std::span<const float> logits, std::span<float> out) {
  detail::require(out.size() == logits.size(), "xplor::log_softmax", "out has ", out.size(), " elements for ",
                  logits.size(), " logits");
  log_softmax_rows(cpu, detail::as_row_view(logits), detail::as_row_view(out));
}

inline void softmax(std::span<const float> logits, std::span<float> out) {
  detail::require(out.size() == logits.size(), "xplor::softmax", "out has ", out.size(), " elements for ",
                  logits.size(), " logits");
  softmax_rows(cpu, detail::as_row_view(logits), detail::as_row_view(out));
}

/// a * b and a + b rounded once each, never fused: nvcc contracts a * b + c into one FMA (a
/// different rounding than the host's), so the math that must give the same bits on both backends
/// (exp_fast, log_fast, the samplers' weights) goes through these.
XPLOR_HD inline float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
XPLOR_HD inline float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

/// exp(x) for float x in one branch-free inline expression (Cody-Waite range reduction and the
/// Cephes degree-6 polynomial), so loops that call it vectorise; within 2 ulp of std::exp on
/// [-87.3, 88.3] (tests/core/numerics_test.cpp). Outside that range it saturates to exp(-87.3)
/// or exp(88.3): use it where such arguments are already meaningless (importance ratios, KL
/// terms), std::exp elsewhere. Bit-identical on the host and under nvcc (mul_rn / add_rn).
XPLOR_HD inline float exp_fast(float x) {
  constexpr float log2e = 1.44269504088896341f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  // round to nearest: 1.5 * 2^23 trick
  const float kf = add_rn(add_rn(mul_rn(x, log2e), 12582912.0f), -12582912.0f);
  const float r = add_rn(add_rn(x, -mul_rn(kf, ln2_hi)), -mul_rn(kf, ln2_lo));
  float p = 1.9875691500e-4f;
  p = add_rn(mul_rn(p, r), 1.3981999507e-3f);
  p = add_rn(mul_rn(p, r), 8.3334519073e-3f);
  p = add_rn(mul_rn(p, r), 4.1665795894e-2f);
  p = add_rn(mul_rn(p, r), 1.6666665459e-1f);
  p = add_rn(mul_rn(p, r), 5.0000001201e-1f);
  p = add_rn(add_rn(mul_rn(mul_rn(p, r), r), r), 1.0f);
  // NaN in, NaN out (p is NaN) without converting NaN to int, which is undefined behaviour.
  const float k = kf == kf ? kf : 0.0f;
  const auto bits = static_cast<std::uint32_t>(static_cast<std::int32_t>(k) + 127) << 23;  // 2^k
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return mul_rn(p, scale);
}

/// Natural log of a float x > 0 (Cephes logf: mantissa in [sqrt(1/2), sqrt(2)), degree-8
/// polynomial, Cody-Waite ln 2), within 2 ulp of std::log on normal and subnormal inputs; 0 gives
/// -inf, negative inputs NaN, +inf itself. Unlike std::log / CUDA's logf, which may differ in the
/// last bit, it gives the same bits on the host and under nvcc, so the samplers' normalisations
/// (and the draws that depend on them) agree across backends.
XPLOR_HD inline float log_fast(float x) {
  // Branch-free (special cases selected at the end), so loops over many tokens vectorise.
  std::uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const bool subnormal = bits < 0x00800000u;               // (and +0) scaled into the normal range first
  const float xs = subnormal ? mul_rn(x, 8388608.0f) : x;  // 2^23
  std::memcpy(&bits, &xs, sizeof bits);
  // Mantissa into [sqrt(1/2), sqrt(2)) by integer arithmetic: m - 1 is exact.
  bits += 0x3f800000u - 0x3f3504f3u;
  const int e = static_cast<int>(bits >> 23) - 127 - (subnormal ? 23 : 0);
  bits = (bits & 0x007fffffu) + 0x3f3504f3u;
  float m;
  std::memcpy(&m, &bits, sizeof m);
  m = add_rn(m, -1.0f);
  const float z = mul_rn(m, m);
  float y = 7.0376836292e-2f;
  y = add_rn(mul_rn(y, m), -1.1514610310e-1f);
  y = add_rn(mul_rn(y, m), 1.1676998740e-1f);
  y = add_rn(mul_rn(y, m), -1.2420140846e-1f);
  y = add_rn(mul_rn(y, m), 1.4249322787e-1f);
  y = add_rn(mul_rn(y, m), -1.6668057665e-1f);
  y = add_rn(mul_rn(y, m), 2.0000714765e-1f);
  y = add_rn(mul_rn(y, m), -2.4999993993e-1f);
  y = add_rn(mul_rn(y, m), 3.3333331174e-1f);
  y = mul_rn(mul_rn(y, m), z);
  const auto fe = static_cast<float>(e);
  y = add_rn(y, mul_rn(fe, -2.12194440e-4f));
  y = add_rn(y, mul_rn(-0.5f, z));
  float r = add_rn(add_rn(m, y), mul_rn(fe, 0.693359375f));
  r = x == 0.0f ? -std::numeric_limits<float>::infinity() : r;
  r = x == std::numeric_limits<float>::infinity() ? x : r;
  return (x < 0.0f || x != x) ? std::numeric_limits<float>::quiet_NaN() : r;
}

// Explicit host SIMD (GCC/Clang vector extensions, 4 floats): the same arithmetic as the scalar
// code element by element, so results are bit-identical to it (sums keep their order unless a
// caller says otherwise). Host only: device code (nvcc) and other compilers use the scalar code.
#if !defined(XPLOR_NO_HOST_SIMD) && !defined(__CUDACC__) && \
    (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 9))
#define XPLOR_HOST_SIMD 1
#define XPLOR_SIMD_INLINE __attribute__((always_inline)) inline
namespace simd {
typedef float f4 __attribute__((vector_size(16)));
typedef std::int32_t i4 __attribute__((vector_size(16)));
template <class V>
struct lanes;
template <>
struct lanes<f4> {
  using mask = i4;
  static constexpr int n = 4;
};
#if defined(__x86_64__) || defined(__i386__)
// 8 lanes for AVX2 hosts, chosen at run time (has_avx2) unless the build targets AVX2 already.
#define XPLOR_HOST_SIMD8 1
typedef float f8 __attribute__((vector_size(32)));
typedef std::int32_t i8 __attribute__((vector_size(32)));
template <>
struct lanes<f8> {
  using mask = i8;
  static constexpr int n = 8;
};
inline bool has_avx2() {
#if defined(__AVX2__)
  return true;
#else
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
#endif
}
#else
#define XPLOR_HOST_SIMD8 0
#endif
// Vectors go by reference (no 32-byte vector is passed or returned by value, whose ABI would
// depend on AVX being enabled where the helper is compiled).
template <class V>
XPLOR_SIMD_INLINE void splat(V& v, float x) {
  for (int i = 0; i < lanes<V>::n; ++i) v[i] = x;
}
template <class V>
XPLOR_SIMD_INLINE void load(V& v, const float* p) {
  std::memcpy(&v, p, sizeof v);
}
template <class V>
XPLOR_SIMD_INLINE void store(float* p, const V& v) {
  std::memcpy(p, &v, sizeof v);
}
/// Sum of the lanes as a balanced tree: (a0 + a1) + (a2 + a3), and for 8 lanes that of the
/// halves added last (the lane order of pairwise_sum's blocks).
XPLOR_SIMD_INLINE float reduce_add(const f4& a) { return (a[0] + a[1]) + (a[2] + a[3]); }
#if XPLOR_HOST_SIMD8
XPLOR_SIMD_INLINE float reduce_add(const f8& a) {
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}
#endif
/// x = exp_fast(x) on every lane, element by element bit-identical to the scalar exp_fast.
template <class V>
XPLOR_SIMD_INLINE void exp_fast(V& x) {
  using I = typename lanes<V>::mask;
  V lo, hi;
  splat(lo, -87.3f);
  splat(hi, 88.3f);
  x = x < lo ? lo : (x > hi ? hi : x);
  const V kf = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const V r = (x - kf * 0.693359375f) - kf * -2.12194440e-4f;
  V p;
  splat(p, 1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const V zero = {};
  const I bits = (__builtin_convertvector(kf == kf ? kf : zero, I) + 127) << 23;  // 2^k (NaN: as scalar)
  V scale;
  std::memcpy(&scale, &bits, sizeof scale);
  x = p * scale;
}
/// x = log_fast(x) on every lane whose x is positive and finite (other lanes: unspecified, the
/// caller masks them), element by element bit-identical to the scalar log_fast.
template <class V>
XPLOR_SIMD_INLINE void log_fast_positive(V& x) {
  using I = typename lanes<V>::mask;
  typedef std::uint32_t U __attribute__((vector_size(sizeof(V))));
  U bits;
  std::memcpy(&bits, &x, sizeof bits);
  const I subnormal = bits < 0x00800000u;
  V scaled = x * 8388608.0f;
  const V xs = subnormal ? scaled : x;
  std::memcpy(&bits, &xs, sizeof bits);
  bits += 0x3f800000u - 0x3f3504f3u;
  const I e = __builtin_convertvector(bits >> 23, I) - 127 - (subnormal & 23);
  bits = (bits & 0x007fffffu) + 0x3f3504f3u;
  V m;
  std::memcpy(&m, &bits, sizeof m);
  m = m - 1.0f;
  const V z = m * m;
  V y;
  splat(y, 7.0376836292e-2f);
  y = y * m + -1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m + -1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m + -1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m + -2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = (y * m) * z;
  const V fe = __builtin_convertvector(e, V);
  y = y + fe * -2.12194440e-4f;
  y = y + -0.5f * z;
  x = (m + y) + fe * 0.693359375f;
}
}  // namespace simd
#else
#define XPLOR_HOST_SIMD 0
#define XPLOR_HOST_SIMD8 0
#endif

namespace detail {
/// Non-zero when some value is NaN or +/-Inf: OR of (exponent bits all ones), a reduction the
/// compiler vectorises; the slow search for the index runs only when it fires.
struct nonfinite_bits {
  const float* values;
  XPLOR_HD std::uint32_t operator()(std::int64_t i) const {
    std::uint32_t bits;
    std::memcpy(&bits, values + i, sizeof bits);
    return (bits & 0x7f800000u) == 0x7f800000u;
  }
};
struct bit_or {
  XPLOR_HD std::uint32_t operator()(std::uint32_t a, std::uint32_t b) const { return a | b; }
};
/// Index i when values[i] is NaN or +/-Inf, else -1 (reduced with min_valid_code).
struct nonfinite_index {
  const float* values;
  XPLOR_HD std::int64_t operator()(std::int64_t i) const {
    const float x = values[i];
    return (x != x || x == std::numeric_limits<float>::infinity() ||
            x == -std::numeric_limits<float>::infinity())
               ? i
               : -1;
  }
};
}  // namespace detail

/// Backend version of check_finite for data in the backend's memory: throws xplor::error naming
/// `argument` and the first non-finite index.
template <execution_tag Exec>
void check_finite(Exec exec, span_for<Exec, const float> values, const char* function, const char* argument) {
  const auto n = static_cast<std::int64_t>(values.size());
  if (transform_reduce(exec, n, std::uint32_t{0}, detail::bit_or{}, detail::nonfinite_bits{values.data()}) ==
      0)
    return;
  const std::int64_t bad = transform_reduce(exec, n, std::int64_t{-1}, detail::min_valid_code{},
                                            detail::nonfinite_index{values.data()});
  detail::fail(function, argument, "[", bad, "] is not finite (NaN or infinite)");
}

/// Throws xplor::error naming `argument` and the first index holding NaN or +/-Inf.
inline void check_finite(std::span<const float> values, const char* function, const char* argument) {
  for (std::size_t i = 0; i < values.size(); ++i)
    detail::require(std::isfinite(values[i]), function, argument, "[", i, "] = ", values[i],
                    " is not finite");
}

}  // namespace xplor
