// Dense matrix products of the reference transformer on the CPU. The forward, y = x W^T, has two
// kernels, each computing every element in its own fixed order, so that an element's bits depend
// neither on the thread count nor on the other rows of the call (a state's logits are the same
// alone or in a batch):
//   streamed (linear_forward's default; the decoder's): each weight row streamed once and dotted
//     with every x row, summed lane-wise then as a tree; fastest for a few rows (decoding reads
//     the weights from memory);
//   packed (transformer::forward's default): panels of W^T packed by 8 x 8 transposes, outer
//     products against broadcast x values, each element one chain of fused multiply-adds over k
//     in order; fastest for many rows (a training batch), and the same bits on AVX2 and AVX-512.
// The backward, dx = dy W and dW = dy^T x, are outer products in the packed kernel's order.
// Row-major float buffers throughout; W is (out, in) as in PyTorch's Linear.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "xplor/core/config.hpp"
#include "xplor/core/exec.hpp"

#if !defined(__CUDACC__) && (defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__)))
#include <immintrin.h>
#endif

namespace xplor::model::dense {
using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using matrix_map = Eigen::Map<row_matrix>;
using const_matrix_map = Eigen::Map<const row_matrix>;
using strided_map = Eigen::Map<row_matrix, 0, Eigen::OuterStride<>>;
using const_strided_map = Eigen::Map<const row_matrix, 0, Eigen::OuterStride<>>;

inline matrix_map mat(float* p, std::int64_t rows, std::int64_t cols) { return {p, rows, cols}; }
inline const_matrix_map mat(const float* p, std::int64_t rows, std::int64_t cols) { return {p, rows, cols}; }

/// Eigen's GEMM runs on one thread below this many multiply-adds (twice its kMinTaskSize).
inline constexpr double eigen_parallel_work = 100000.0;

/// f(i) for i in [0, n), `work` multiply-adds in all, such that every Eigen product inside f
/// runs on one thread whatever the thread count: Eigen's own parallel GEMM chooses its depth
/// blocking (so the order in which a dot product is summed) from its thread count, which made
/// the model's bits, and the flagship's checkpoints, depend on OMP_NUM_THREADS. Eigen does not
/// parallelise inside an OpenMP region of several threads, so work it would split runs in one
/// (even for n = 1); smaller work runs serially, where Eigen stays on one thread by itself.
template <class F>
void thread_independent_for(std::int64_t n, double work, F f) {
#if XPLOR_HAS_OPENMP
  if (work >= eigen_parallel_work && n > 0 && omp_get_max_threads() > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#else
  (void)work;
#endif
  for (std::int64_t i = 0; i < n; ++i) f(i);
}

// ---------------------------------------------------------------------------------------------
// The streamed forward and attention scores: dot products of rows, 4 x 4 or 4 x 3 in vector
// registers. Eigen packs the whole weight matrix on every call, which for the few rows of a
// decoding step costs more than the product; here each weight row is streamed once from memory
// and dotted with every x row. Every element is summed in a fixed order (lane-wise over `in`,
// then the lanes as a balanced tree, then the tail), whatever the block it falls in.
namespace rows_kernel {
#if !defined(__CUDACC__) && defined(__AVX512F__)
struct lanes {
  using v = __m512;
  static constexpr int n = 16;
  static constexpr int registers = 32;
  static v zero() { return _mm512_setzero_ps(); }
  static v splat(float x) { return _mm512_set1_ps(x); }
  static v load(const float* p) { return _mm512_loadu_ps(p); }
  static v fma(v a, v b, v c) { return _mm512_fmadd_ps(a, b, c); }
  static void store(float* p, v a) { _mm512_storeu_ps(p, a); }
  /// The lanes as a balanced tree: lane i + lane i+8, then i + i+4, i + i+2, i + i+1.
  static float sum(v a) {
    // Halves by copy: GCC 12 flags the AVX-512 extract intrinsics as uninitialized (bug 105593).
    __m256 lo, hi;
    std::memcpy(&lo, &a, sizeof lo);
    std::memcpy(&hi, reinterpret_cast<const char*>(&a) + sizeof lo, sizeof hi);
    const __m256 h = _mm256_add_ps(lo, hi);
    return lanes_sum8(h);
  }
  static float lanes_sum8(__m256 a) {
    const __m128 q = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128 d = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));
  }
};
#elif !defined(__CUDACC__) && defined(__AVX2__) && defined(__FMA__)
struct lanes {
  using v = __m256;
  static constexpr int n = 8;
  static constexpr int registers = 16;
  static v zero() { return _mm256_setzero_ps(); }
  static v splat(float x) { return _mm256_set1_ps(x); }
  static v load(const float* p) { return _mm256_loadu_ps(p); }
  static v fma(v a, v b, v c) { return _mm256_fmadd_ps(a, b, c); }
  static void store(float* p, v a) { _mm256_storeu_ps(p, a); }
  static float sum(v a) {  // lane i + lane i+4, then i + i+2, i + i+1
    const __m128 q = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128 d = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));
  }
};
#elif defined(__CUDACC__) || !(defined(__GNUC__) || defined(__clang__))
struct lanes {  // scalar: nvcc's host pass (the CPU model in the GPU tests) and other compilers
  using v = float;
  static constexpr int n = 1;
  static constexpr int registers = 16;
  static v zero() { return 0.0f; }
  static v splat(float x) { return x; }
  static v load(const float* p) { return *p; }
  static v fma(v a, v b, v c) { return a * b + c; }
  static void store(float* p, v a) { *p = a; }
  static float sum(v a) { return a; }
};
#else
struct lanes {  // GCC/Clang vector extension: SSE2 on x86-64, NEON on ARM; a*b+c is not fused
  typedef float v __attribute__((vector_size(16)));
  static constexpr int n = 4;
  static constexpr int registers = 16;
  static v zero() { return v{}; }
  static v splat(float x) { return v{x, x, x, x}; }
  static v load(const float* p) {
    v a;
    std::memcpy(&a, p, sizeof a);
    return a;
  }
  static v fma(v a, v b, v c) { return a * b + c; }
  static void store(float* p, v a) { std::memcpy(p, &a, sizeof a); }
  static float sum(v a) { return (a[0] + a[2]) + (a[1] + a[3]); }  // the same tree on 4 lanes
};
#endif

/// y[i, j] (+)= x[i, :] . w[j, :] for i < RI, j < RJ (leading dimensions ldx, ldw, ldy).
template <int RI, int RJ>
void dots(const float* x, std::int64_t ldx, const float* w, std::int64_t ldw, std::int64_t in, float* y,
          std::int64_t ldy, bool accumulate) {
  using L = lanes;
  typename L::v acc[RI][RJ];
  for (int i = 0; i < RI; ++i)
    for (int j = 0; j < RJ; ++j) acc[i][j] = L::zero();
  std::int64_t k = 0;
  for (; k + L::n <= in; k += L::n) {
    typename L::v wv[RJ];
    for (int j = 0; j < RJ; ++j) {
      wv[j] = L::load(w + j * ldw + k);
#if !defined(__CUDACC__) && (defined(__AVX512F__) || defined(__AVX2__))
      asm("" : "+v"(wv[j]));  // loaded once into a register: GCC would fold a load into every FMA
#endif
    }
    // The weights come from memory once per call: fetch the rows a few blocks ahead meanwhile.
#if defined(__GNUC__) || defined(__clang__)
    for (int j = 0; j < RJ; ++j) __builtin_prefetch(w + (4 * RJ + j) * ldw + k);
#endif
    for (int i = 0; i < RI; ++i) {
      typename L::v xv = L::load(x + i * ldx + k);
#if !defined(__CUDACC__) && (defined(__AVX512F__) || defined(__AVX2__))
      asm("" : "+v"(xv));
#endif
      for (int j = 0; j < RJ; ++j) acc[i][j] = L::fma(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < RI; ++i)
    for (int j = 0; j < RJ; ++j) {
      float s = L::sum(acc[i][j]);  // lanes as a tree: t += t + n/2, then t + n/4, ...
      for (std::int64_t kk = k; kk < in; ++kk) s += x[i * ldx + kk] * w[j * ldw + kk];
      float& out = y[i * ldy + j];
      out = accumulate ? out + s : s;
    }
}

/// The tile of RI x RJ dot products kept in registers: RI * RJ accumulators, RJ weight vectors
/// and one x vector within the register file: 4 x 4 with AVX-512's 32 registers, 4 x 3 with 16
/// (4 x 4 there spilled accumulators on every step: 45 against 69 GFLOP/s at 256 rows on an
/// AVX2 Zen 4). The tile does not change any bits.
inline constexpr int tile_i = 4;
inline constexpr int tile_j = lanes::registers >= 32 ? 4 : 3;
/// Weight rows per step of a vector-times-matrix product (one accumulator and one weight each).
inline constexpr int gemv_j = std::min(8, (lanes::registers - 1) / 2);

/// dots<ri, rj> for ri <= RI, rj <= RJ chosen at run time.
template <int RJ = tile_j, int RI = tile_i>
void dots_tile(int ri, int rj, const float* x, std::int64_t ldx, const float* w, std::int64_t ldw,
               std::int64_t in, float* y, std::int64_t ldy, bool accumulate) {
  if constexpr (RJ > 1)
    if (rj < RJ) return dots_tile<RJ - 1, RI>(ri, rj, x, ldx, w, ldw, in, y, ldy, accumulate);
  if constexpr (RI > 1)
    if (ri < RI) return dots_tile<RJ, RI - 1>(ri, rj, x, ldx, w, ldw, in, y, ldy, accumulate);
  dots<RI, RJ>(x, ldx, w, ldw, in, y, ldy, accumulate);
}

}  // namespace rows_kernel

/// y[i, j] (+)= x[i, :] . w[j, :] for i < n, j < m (rows of length `in`, leading dimensions ldx,
/// ldw, ldy): every element one dot product in a fixed order, so an element does not depend on
/// n, m or the block it falls in. Loops over 4 w rows (kept in L1) times all x rows.
inline void dot_products(const float* x, std::int64_t ldx, const float* w, std::int64_t ldw, std::int64_t in,
                         float* y, std::int64_t ldy, std::int64_t n, std::int64_t m,
                         bool accumulate = false) {
  using rows_kernel::tile_i, rows_kernel::tile_j, rows_kernel::gemv_j;
  std::int64_t j = 0;
  if (n == 1)  // a vector times a matrix: several weight rows in flight to keep the memory busy
    for (; j + gemv_j <= m; j += gemv_j)
      rows_kernel::dots<1, gemv_j>(x, ldx, w + j * ldw, ldw, in, y + j, ldy, accumulate);
  for (; j < m; j += tile_j) {
    const int rj = static_cast<int>(std::min<std::int64_t>(tile_j, m - j));
    for (std::int64_t i = 0; i < n; i += tile_i)
      rows_kernel::dots_tile(static_cast<int>(std::min<std::int64_t>(tile_i, n - i)), rj, x + i * ldx, ldx,
                             w + j * ldw, ldw, in, y + i * ldy + j, ldy, accumulate);
  }
}

/// y[n, out] (+)= x[n, in] W^T for W (out, in): each weight row streamed once from memory and
/// dotted with every x row, tasks of 64 outputs. Faster than Eigen's packed product at every
/// row count (bench_model's linear_forward: ~90 vs ~70 GFLOP/s at 256 rows, AVX-512), and each
/// row's result is the same bits whatever other rows share the call.
inline void streamed_forward(const float* x, const float* w, float* y, std::int64_t n, std::int64_t in,
                             std::int64_t out, bool accumulate = false) {
  constexpr std::int64_t block = 64;
  // Rows a multiple of 4 KiB apart fall into the same L1 sets as each other and as the weight
  // rows: such x is read through a copy with 16 more floats a row (GPT-2's MLP down-projection,
  // depth 3072: 42 -> 50 GFLOP/s on AVX2). Copying changes no bits.
  std::int64_t ldx = in;
  if (in % 1024 == 0 && n >= 4) {
    thread_local std::vector<float> padded;  // the caller's: read by every task
    ldx = in + 16;
    padded.resize(static_cast<std::size_t>(n * ldx));
    for (std::int64_t r = 0; r < n; ++r) std::copy_n(x + r * in, in, padded.data() + r * ldx);
    x = padded.data();
  }
  // Rows in chunks of about 256 KiB, so that a chunk stays in L2 while the task's weight rows
  // pass over it (a prefill's thousand rows would otherwise stream from L3 for every 4 weights).
  const std::int64_t chunk = std::max<std::int64_t>(4, (65536 / std::max<std::int64_t>(in, 1)) / 4 * 4);
  thread_independent_for((out + block - 1) / block, double(n) * double(in) * double(out),
                         [&](std::int64_t t) {
                           const std::int64_t j0 = t * block, m = std::min(block, out - j0);
                           for (std::int64_t r0 = 0; r0 < n; r0 += chunk)
                             dot_products(x + r0 * ldx, ldx, w + j0 * in, in, in, y + r0 * out + j0, out,
                                          std::min(chunk, n - r0), m, accumulate);
                         });
}

// ---------------------------------------------------------------------------------------------
// The packed products, C[M, N] (+)= A B with A read at a[i * ai + k * ak] (dy for dx, dy
// transposed for dW, x for the packed forward) and B row-major [K, N] (W for dx, x for dW) or
// B = W^T for the forward: a panel of 2 vectors of B's columns is packed, and each block of mr
// rows of C accumulates it against broadcast A values in registers over the whole K. Every
// element sums k = 0, 1, ... in order: the same bits on any thread count and in any loop order.
namespace outer_kernel {
using L = rows_kernel::lanes;
inline constexpr int nr = 2 * L::n;  // columns per panel
/// Rows per block: 2 accumulators a row, 2 panel vectors and a broadcast within the register file.
inline constexpr int mr = L::registers >= 32 ? 12 : (L::registers - 3) / 2;  // 12: measured on Zen 4

template <int MR>
void block(const float* a, std::int64_t ai, std::int64_t ak, const float* panel, std::int64_t K, float* c,
           std::int64_t ldc, std::int64_t cols, bool accumulate) {
  typename L::v acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = L::zero();
  for (std::int64_t k = 0; k < K; ++k) {
    const typename L::v b0 = L::load(panel + k * nr), b1 = L::load(panel + k * nr + L::n);
    for (int i = 0; i < MR; ++i) {
      const typename L::v av = L::splat(a[i * ai + k * ak]);
      acc[i][0] = L::fma(av, b0, acc[i][0]);
      acc[i][1] = L::fma(av, b1, acc[i][1]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    float out[nr];
    L::store(out, acc[i][0]);
    L::store(out + L::n, acc[i][1]);
    for (std::int64_t j = 0; j < cols; ++j) c[i * ldc + j] = accumulate ? c[i * ldc + j] + out[j] : out[j];
  }
}

/// block<m> for m <= MR chosen at run time; C = (C +) the block's sums.
template <int MR = mr>
void rows_block(int m, const float* a, std::int64_t ai, std::int64_t ak, const float* panel, std::int64_t K,
                float* c, std::int64_t ldc, std::int64_t cols, bool accumulate = true) {
  if constexpr (MR > 1)
    if (m < MR) return rows_block<MR - 1>(m, a, ai, ak, panel, K, c, ldc, cols, accumulate);
  block<MR>(a, ai, ak, panel, K, c, ldc, cols, accumulate);
}
}  // namespace outer_kernel

namespace outer_kernel {
/// Copies columns [j0, j0 + cols) of B's K rows into a K x nr panel, zeros past `cols`.
inline void pack_panel(const float* b, std::int64_t ldb, std::int64_t j0, std::int64_t cols, std::int64_t K,
                       float* panel) {
  for (std::int64_t k = 0; k < K; ++k) {
    std::copy_n(b + k * ldb + j0, cols, panel + k * nr);
    std::fill(panel + k * nr + cols, panel + (k + 1) * nr, 0.0f);
  }
}

/// Copies `rows` rows of A (A(i, k) = a[i * ai + k * ak]) into slivers of mr rows with contiguous
/// broadcasts: sliver s holds A(s mr + r, k) at [s K mr + k mr + r], zeros past the last row.
inline void pack_slivers(const float* a, std::int64_t ai, std::int64_t ak, std::int64_t rows, std::int64_t K,
                         float* slivers) {
  const std::int64_t count = (rows + mr - 1) / mr;
  for (std::int64_t s = 0; s < count; ++s)
    for (std::int64_t r = 0; r < mr; ++r) {
      const std::int64_t i = s * mr + r;
      float* dst = slivers + s * K * mr + r;
      if (i < rows)
        for (std::int64_t k = 0; k < K; ++k) dst[k * mr] = a[i * ai + k * ak];
      else
        for (std::int64_t k = 0; k < K; ++k) dst[k * mr] = 0.0f;
    }
}

#if !defined(__CUDACC__) && defined(__AVX2__) && defined(__FMA__)
/// r[q] := (r[0][q], r[1][q], ..., r[7][q]): column q of the 8 x 8 block whose rows are r.
inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]),
               t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]),
               t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]),
               t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
               u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
               u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
               u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}
/// One fused multiply-add, s + x w rounded once (block's L::fma on one lane).
inline float fma1(float x, float w, float s) {
  return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(x), _mm_set_ss(w), _mm_set_ss(s)));
}

/// y[j] (+)= sum_k x[k] w[j, k] for the 8 G rows j of w (ldw apart), summed over k in order as
/// one chain of fused multiply-adds: block<1>'s bits on a packed panel of these rows, without
/// writing the panel, so that one state's decoding reads each weight once. `prefetch`: fetch the
/// next 8 G rows meanwhile (weights streamed from memory).
template <int G>
void transposed_rows(const float* x, const float* w, std::int64_t ldw, std::int64_t K, float* y,
                     bool accumulate, bool prefetch) {
  __m256 acc[G];
  for (int g = 0; g < G; ++g) acc[g] = _mm256_setzero_ps();
  std::int64_t k = 0;
  for (; k + 8 <= K; k += 8)
    for (int g = 0; g < G; ++g) {
      const float* src = w + 8 * g * ldw + k;
      __m256 r[8];
      for (int q = 0; q < 8; ++q) r[q] = _mm256_loadu_ps(src + q * ldw);
      if (prefetch)
        for (int q = 0; q < 8; ++q) __builtin_prefetch(src + (8 * G + q) * ldw);
      transpose8(r);
      for (int q = 0; q < 8; ++q) acc[g] = _mm256_fmadd_ps(_mm256_broadcast_ss(x + k + q), r[q], acc[g]);
    }
  for (; k < K; ++k)
    for (int g = 0; g < G; ++g) {
      const float* src = w + 8 * g * ldw + k;
      const __m256 col = _mm256_setr_ps(src[0], src[ldw], src[2 * ldw], src[3 * ldw], src[4 * ldw],
                                        src[5 * ldw], src[6 * ldw], src[7 * ldw]);
      acc[g] = _mm256_fmadd_ps(_mm256_broadcast_ss(x + k), col, acc[g]);
    }
  for (int g = 0; g < G; ++g) {
    __m256 out = acc[g];
    if (accumulate) out = _mm256_add_ps(_mm256_loadu_ps(y + 8 * g), out);
    _mm256_storeu_ps(y + 8 * g, out);
  }
}

/// y[j] (+)= x . w[j, :] for j < m, each summed as transposed_rows sums it.
inline void transposed_vector(const float* x, const float* w, std::int64_t ldw, std::int64_t K, float* y,
                              std::int64_t m, bool accumulate, bool prefetch) {
  std::int64_t j = 0;
  for (; j + 16 <= m; j += 16)
    transposed_rows<2>(x, w + j * ldw, ldw, K, y + j, accumulate, prefetch && j + 32 <= m);
  for (; j + 8 <= m; j += 8) transposed_rows<1>(x, w + j * ldw, ldw, K, y + j, accumulate, false);
  for (; j < m; ++j) {
    float s = 0.0f;
    for (std::int64_t k = 0; k < K; ++k) s = fma1(x[k], w[j * ldw + k], s);
    y[j] = accumulate ? y[j] + s : s;
  }
}
#endif

/// Rows [j0, j0 + cols) of W (ldw apart) as columns of a K x nr panel of B = W^T, zeros past
/// `cols`. `prefetch`: fetch the next panel's rows meanwhile (weights streamed from memory: the
/// fetch overlaps the products run on this panel).
inline void pack_transposed(const float* w, std::int64_t ldw, std::int64_t j0, std::int64_t cols,
                            std::int64_t K, float* panel, bool prefetch) {
  for (std::int64_t c0 = 0; c0 < nr; c0 += 8) {
    std::int64_t k = 0;
#if !defined(__CUDACC__) && defined(__AVX2__) && defined(__FMA__)
    if (c0 + 8 <= cols)
      for (const float* src = w + (j0 + c0) * ldw; k + 8 <= K; k += 8) {
        __m256 r[8];
        for (int q = 0; q < 8; ++q) r[q] = _mm256_loadu_ps(src + q * ldw + k);
        if (prefetch)
          for (int q = 0; q < 8; ++q) __builtin_prefetch(src + (nr + q) * ldw + k);
        transpose8(r);
        for (int q = 0; q < 8; ++q) _mm256_storeu_ps(panel + (k + q) * nr + c0, r[q]);
      }
#else
    (void)prefetch;
#endif
    for (; k < K; ++k)
      for (std::int64_t c = c0; c < c0 + 8 && c < nr; ++c)
        panel[k * nr + c] = c < cols ? w[(j0 + c) * ldw + k] : 0.0f;
  }
}

/// Short products (K up to this, all of B packed within `packed_b_limit` floats) run block by
/// block of A's rows instead of panel by panel, so that A is read once rather than once per
/// panel: dW = dy^T x has K = tokens and A = dy^T read across rows, which the panel order
/// streamed from memory 48 times per product (GPT-2 small's unembedding: 2.5 GB a step).
inline constexpr std::int64_t short_depth = 1024;
inline constexpr std::int64_t packed_b_limit = std::int64_t(1) << 22;
}  // namespace outer_kernel

enum class product_order { automatic, by_panel, by_row_block };

/// C[M, N] += A B, A(i, k) = a[i * ai + k * ak], B row-major [K, N] (ldb). Long products: tasks of
/// one panel of B against all of A. Short ones: B packed once, tasks of a block of A's rows packed
/// into slivers of mr rows (contiguous broadcasts) against every panel. Either way each element
/// sums k = 0, 1, ... in order, then is added to C: the same bits in both orders and on any
/// thread count.
inline void outer_products(const float* a, std::int64_t ai, std::int64_t ak, const float* b, std::int64_t ldb,
                           float* c, std::int64_t ldc, std::int64_t M, std::int64_t N, std::int64_t K,
                           product_order order = product_order::automatic) {
  using namespace outer_kernel;
  const std::int64_t panels = (N + nr - 1) / nr;
  const double work = double(M) * double(N) * double(K);
  if (order == product_order::automatic)
    order = K > short_depth || K * panels * nr > packed_b_limit ? product_order::by_panel
                                                                : product_order::by_row_block;
  if (order == product_order::by_panel) {
    thread_independent_for(panels, work, [&](std::int64_t t) {
      const std::int64_t j0 = t * nr;
      thread_local std::vector<float> panel;
      panel.resize(static_cast<std::size_t>(K * nr));
      pack_panel(b, ldb, j0, std::min<std::int64_t>(nr, N - j0), K, panel.data());
      for (std::int64_t i = 0; i < M; i += mr)
        rows_block(static_cast<int>(std::min<std::int64_t>(mr, M - i)), a + i * ai, ai, ak, panel.data(), K,
                   c + i * ldc + j0, ldc, std::min<std::int64_t>(nr, N - j0));
    });
    return;
  }
  thread_local std::vector<float> packed;  // the caller's: read by every task
  packed.resize(static_cast<std::size_t>(K * panels * nr));
  for (std::int64_t t = 0; t < panels; ++t)
    pack_panel(b, ldb, t * nr, std::min<std::int64_t>(nr, N - t * nr), K, packed.data() + t * K * nr);
  const float* pb = packed.data();
  // Rows per task: a block of about 256 KiB of A, kept in L2 while every panel passes, and at
  // least two tasks a thread (a small model's dx would otherwise be one task). The block size
  // changes no bits.
  const std::int64_t tasks = 2 * xplor::detail::cpu_threads(cpu), per_thread = (M + tasks - 1) / tasks;
  const std::int64_t mc = std::max<std::int64_t>(
      mr, std::min(65536 / std::max<std::int64_t>(K, 1), per_thread + mr - 1) / mr * mr);
  thread_independent_for((M + mc - 1) / mc, work, [&](std::int64_t t) {
    const std::int64_t i0 = t * mc, rows = std::min(mc, M - i0), slivers = (rows + mr - 1) / mr;
    thread_local std::vector<float> block;
    block.resize(static_cast<std::size_t>(slivers * K * mr));
    pack_slivers(a + i0 * ai, ai, ak, rows, K, block.data());
    for (std::int64_t p = 0; p < panels; ++p) {
      const std::int64_t j0 = p * nr, cols = std::min<std::int64_t>(nr, N - j0);
      for (std::int64_t s = 0; s < slivers; ++s)
        rows_block(static_cast<int>(std::min<std::int64_t>(mr, rows - s * mr)), block.data() + s * K * mr, 1,
                   mr, pb + p * K * nr, K, c + (i0 + s * mr) * ldc + j0, ldc, cols);
    }
  });
}

/// y[n, out] (+)= x[n, in] W^T for W (out, in), as C = x B with B = W^T: x packed into slivers,
/// tasks of 4 panels, each panel of W^T packed by 8 x 8 transposes of W's rows (the weights are
/// read once per 256 rows). One row alone runs transposed_vector on AVX2 builds, which reads W
/// without writing a panel. Either way every element is the chain of fused multiply-adds
/// over k = 0, 1, ... (then added to y when accumulating): the same bits for a row alone or among
/// others, on any thread count, with AVX2's or AVX-512's registers.
inline void packed_forward(const float* x, const float* w, float* y, std::int64_t n, std::int64_t in,
                           std::int64_t out, bool accumulate = false) {
  using namespace outer_kernel;
  // Weights beyond 1 MiB come from L3 or memory: prefetching the next rows then pays for itself
  // (GPT-2 small's unembedding, 16 rows: 47 -> 49 GFLOP/s; 1 row: 15.5 -> 17 GB/s, AVX2).
  const bool stream = in * out > (std::int64_t(1) << 18);
  constexpr std::int64_t panels_per_task = 4;
  const std::int64_t panels = (out + nr - 1) / nr, tasks = (panels + panels_per_task - 1) / panels_per_task;
#if !defined(__CUDACC__) && defined(__AVX2__) && defined(__FMA__)
  if (n == 1) {
    thread_independent_for(tasks, double(in) * double(out), [&](std::int64_t t) {
      const std::int64_t j0 = t * panels_per_task * nr, m = std::min(panels_per_task * nr, out - j0);
      transposed_vector(x, w + j0 * in, in, in, y + j0, m, accumulate, stream);
    });
    return;
  }
#endif
  // Rows in chunks of 256: a chunk's slivers (768 KiB at depth 768) stay in L2 while the panels pass.
  constexpr std::int64_t row_chunk = 256;
  thread_local std::vector<float> slivers;  // the caller's: read by every task
  for (std::int64_t r0 = 0; r0 < n; r0 += row_chunk) {
    const std::int64_t rows = std::min(row_chunk, n - r0), count = (rows + mr - 1) / mr;
    slivers.resize(static_cast<std::size_t>(count * in * mr));
    pack_slivers(x + r0 * in, in, 1, rows, in, slivers.data());
    const float* xs = slivers.data();
    thread_independent_for(tasks, double(rows) * double(in) * double(out), [&](std::int64_t t) {
      thread_local std::vector<float> panel;
      panel.resize(static_cast<std::size_t>(in * nr));
      for (std::int64_t p = t * panels_per_task; p < std::min(panels, (t + 1) * panels_per_task); ++p) {
        const std::int64_t j0 = p * nr, cols = std::min<std::int64_t>(nr, out - j0);
        pack_transposed(w, in, j0, cols, in, panel.data(), stream && j0 + 2 * nr <= out);
        for (std::int64_t s = 0; s < count; ++s)
          rows_block(static_cast<int>(std::min<std::int64_t>(mr, rows - s * mr)), xs + s * in * mr, 1, mr,
                     panel.data(), in, y + (r0 + s * mr) * out + j0, out, cols, accumulate);
      }
    });
  }
}

enum class forward_kernel { streamed, packed };

/// y[n, out] (+)= x[n, in] W^T for W (out, in) by the chosen kernel (the file's header).
inline void linear_forward(const float* x, const float* w, float* y, std::int64_t n, std::int64_t in,
                           std::int64_t out, bool accumulate = false,
                           forward_kernel kernel = forward_kernel::streamed) {
  if (kernel == forward_kernel::packed)
    packed_forward(x, w, y, n, in, out, accumulate);
  else
    streamed_forward(x, w, y, n, in, out, accumulate);
}

/// dx[N, in] += dy[N, out] W and dW[out, in] += dy^T x (skipped when dw is null: a frozen weight).
inline void linear_backward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                            std::int64_t n, std::int64_t in, std::int64_t out) {
  outer_products(dy, out, 1, w, in, dx, in, n, in, out);  // dx[i, c] += sum_o dy[i, o] W[o, c]
  if (dw != nullptr)
    outer_products(dy, 1, out, x, in, dw, in, out, in, n);  // dW[o, c] += sum_i dy[i, o] x[i, c]
}

}  // namespace xplor::model::dense
