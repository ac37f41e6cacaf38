// Dense matrix products of the reference transformer on the CPU: y = x W^T and its backward
// through Eigen's packed products over fixed tiles (the same bits on any thread count), and a
// weight-streaming kernel for the few-row products of decoding. Row-major float buffers
// throughout; W is (out, in) as in PyTorch's Linear.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <cstring>

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

/// f(r0, nr, c0, nc) over fixed tiles of at most 128 x 128 of a [rows, cols] product output with
/// `depth` multiply-adds per element: a product split into these tiles is summed the same way on
/// any thread count, and small-row products (decoding) still split over their columns.
template <class F>
void tiles(std::int64_t rows, std::int64_t cols, std::int64_t depth, F f) {
  constexpr std::int64_t tile = 128;
  const std::int64_t tr = (rows + tile - 1) / tile, tc = (cols + tile - 1) / tile;
  thread_independent_for(tr * tc, double(rows) * double(cols) * double(depth), [&](std::int64_t t) {
    const std::int64_t r0 = t / tc * tile, c0 = t % tc * tile;
    f(r0, std::min(tile, rows - r0), c0, std::min(tile, cols - c0));
  });
}

// ---------------------------------------------------------------------------------------------
// Few-row products (decoding: one row per live state). Eigen packs the whole weight matrix into
// its panel layout on every call, which for a handful of rows costs more than the product; here
// each weight row is streamed once from memory and dotted with every input row, 4 x 4 dot
// products at a time in vector registers. Every output element is one dot product summed in a
// fixed order (lane-wise over `in`, then the lanes as a balanced tree, then the tail), whatever
// the thread count or the block an element falls in.
namespace rows_kernel {
#if !defined(__CUDACC__) && defined(__AVX512F__)
struct lanes {
  using v = __m512;
  static constexpr int n = 16;
  static v zero() { return _mm512_setzero_ps(); }
  static v load(const float* p) { return _mm512_loadu_ps(p); }
  static v fma(v a, v b, v c) { return _mm512_fmadd_ps(a, b, c); }
  /// (lane i + lane i+8), then i + i+4, i + i+2, i + i+1: the scalar tree of reduce() below.
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
  static v zero() { return _mm256_setzero_ps(); }
  static v load(const float* p) { return _mm256_loadu_ps(p); }
  static v fma(v a, v b, v c) { return _mm256_fmadd_ps(a, b, c); }
  static float sum(v a) {  // the scalar tree of reduce() below
    const __m128 q = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128 d = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));
  }
};
#else
struct lanes {  // GCC/Clang vector extension: SSE2 on x86-64, NEON on ARM; a*b+c is not fused
  typedef float v __attribute__((vector_size(16)));
  static constexpr int n = 4;
  static v zero() { return v{}; }
  static v load(const float* p) {
    v a;
    std::memcpy(&a, p, sizeof a);
    return a;
  }
  static v fma(v a, v b, v c) { return a * b + c; }
  static float sum(v a) { return (a[0] + a[2]) + (a[1] + a[3]); }  // the tree of the wider sums
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
      asm("" : "+v"(wv[j]));  // keep it in a register: GCC would reload it for every FMA
#endif
    }
    // The weights come from memory once per call: fetch the rows a few blocks ahead meanwhile.
    for (int j = 0; j < RJ; ++j) __builtin_prefetch(w + (4 * RJ + j) * ldw + k);
    for (int i = 0; i < RI; ++i) {
      const typename L::v xv = L::load(x + i * ldx + k);
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

template <int RJ>
void dots_rows(int ri, const float* x, std::int64_t ldx, const float* w, std::int64_t ldw, std::int64_t in,
               float* y, std::int64_t ldy, bool accumulate) {
  switch (ri) {
    case 1:
      return dots<1, RJ>(x, ldx, w, ldw, in, y, ldy, accumulate);
    case 2:
      return dots<2, RJ>(x, ldx, w, ldw, in, y, ldy, accumulate);
    case 3:
      return dots<3, RJ>(x, ldx, w, ldw, in, y, ldy, accumulate);
    default:
      return dots<4, RJ>(x, ldx, w, ldw, in, y, ldy, accumulate);
  }
}
}  // namespace rows_kernel

/// y[i, j] (+)= x[i, :] . w[j, :] for i < n, j < m (rows of length `in`, leading dimensions ldx,
/// ldw, ldy): every element one dot product in a fixed order, so an element does not depend on
/// n, m or the block it falls in. Loops over 4 w rows (kept in L1) times all x rows.
inline void dot_products(const float* x, std::int64_t ldx, const float* w, std::int64_t ldw, std::int64_t in,
                         float* y, std::int64_t ldy, std::int64_t n, std::int64_t m,
                         bool accumulate = false) {
  std::int64_t j = 0;
  if (n == 1)  // a vector times a matrix: 8 weight rows in flight to keep the memory busy
    for (; j + 8 <= m; j += 8) rows_kernel::dots<1, 8>(x, ldx, w + j * ldw, ldw, in, y + j, ldy, accumulate);
  for (; j < m; j += 4) {
    const int rj = static_cast<int>(std::min<std::int64_t>(4, m - j));
    for (std::int64_t i = 0; i < n; i += 4) {
      const int ri = static_cast<int>(std::min<std::int64_t>(4, n - i));
      const float* xi = x + i * ldx;
      const float* wj = w + j * ldw;
      float* yij = y + i * ldy + j;
      switch (rj) {
        case 1:
          rows_kernel::dots_rows<1>(ri, xi, ldx, wj, ldw, in, yij, ldy, accumulate);
          break;
        case 2:
          rows_kernel::dots_rows<2>(ri, xi, ldx, wj, ldw, in, yij, ldy, accumulate);
          break;
        case 3:
          rows_kernel::dots_rows<3>(ri, xi, ldx, wj, ldw, in, yij, ldy, accumulate);
          break;
        default:
          rows_kernel::dots_rows<4>(ri, xi, ldx, wj, ldw, in, yij, ldy, accumulate);
          break;
      }
    }
  }
}

/// Row counts up to which linear_forward streams the weights instead of calling Eigen's packed
/// product (bench_model's linear_forward benchmarks place the crossover).
inline constexpr std::int64_t stream_rows_max = 32;

/// y[n, out] (+)= x[n, in] W^T by streaming W (few rows n); blocks of 64 outputs per task.
inline void linear_forward_rows(const float* x, const float* w, float* y, std::int64_t n, std::int64_t in,
                                std::int64_t out, bool accumulate = false) {
  constexpr std::int64_t block = 64;
  thread_independent_for(
      (out + block - 1) / block, double(n) * double(in) * double(out), [&](std::int64_t t) {
        const std::int64_t j0 = t * block;
        dot_products(x, in, w + j0 * in, in, in, y + j0, out, n, std::min(block, out - j0), accumulate);
      });
}

/// How linear_forward multiplies. by_size: streamed up to stream_rows_max rows, Eigen's packed
/// product above (fastest). per_row: streamed at any size, so each row's result is the same bits
/// whatever other rows share the call (decoding steps: a state's logits do not depend on the batch).
enum class product { by_size, per_row };

/// y[N, out] (+)= x[N, in] W^T for W (out, in): streamed or Eigen's packed product over fixed
/// tiles, per `mode`.
inline void linear_forward(const float* x, const float* w, float* y, std::int64_t n, std::int64_t in,
                           std::int64_t out, bool accumulate = false, product mode = product::by_size) {
  if (mode == product::per_row || n <= stream_rows_max)
    return linear_forward_rows(x, w, y, n, in, out, accumulate);
  tiles(n, out, in, [&](std::int64_t r0, std::int64_t nr, std::int64_t c0, std::int64_t nc) {
    auto Y = mat(y, n, out).block(r0, c0, nr, nc);
    const auto X = mat(x, n, in).middleRows(r0, nr);
    const auto W = mat(w, out, in).middleRows(c0, nc);
    if (accumulate)
      Y.noalias() += X * W.transpose();
    else
      Y.noalias() = X * W.transpose();
  });
}

/// dx[N, in] += dy[N, out] W and dW[out, in] += dy^T x.
inline void linear_backward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                            std::int64_t n, std::int64_t in, std::int64_t out) {
  tiles(n, in, out, [&](std::int64_t r0, std::int64_t nr, std::int64_t c0, std::int64_t nc) {
    mat(dx, n, in).block(r0, c0, nr, nc).noalias() +=
        mat(dy, n, out).middleRows(r0, nr) * mat(w, out, in).middleCols(c0, nc);
  });
  tiles(out, in, n, [&](std::int64_t r0, std::int64_t nr, std::int64_t c0, std::int64_t nc) {
    mat(dw, out, in).block(r0, c0, nr, nc).noalias() +=
        mat(dy, n, out).middleCols(r0, nr).transpose() * mat(x, n, in).middleCols(c0, nc);
  });
}

}  // namespace xplor::model::dense
