// The reference transformer on an NVIDIA GPU (nvcc only): the same configuration, the same flat
// parameter layout (parameter_layout, so the CPU model's parameters copy over as one buffer) and
// the same math as model/transformer.hpp — forward with the weighted mean cross-entropy,
// hand-written backward, AdamW and global-norm clipping (model/optim.hpp), and a KV-cache decoder
// shaped like decode_policy. Matrix products are cuBLAS SGEMMs in full fp32 (row-major through
// the transposition identity C^T = B^T A^T; attention per sequence as strided batches over heads,
// as the CPU's per-head Eigen products); norms, RoPE, activations, the causal softmax, the
// cross-entropy and the optimizer are plain kernels (RoPE and the activations call the row
// functions of model/layers.hpp; the norms spread layers.hpp's sums over a warp). Every option
// of transformer_config is supported; latent inputs and forward hooks (CPU-only features) are
// not. Sources: llm.c (Karpathy) for the layout and the cuBLAS
// transposition trick; Loshchilov & Hutter 2019 for AdamW.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "xplor/core/cuda/check.cuh"
#include "xplor/core/random.hpp"
#include "xplor/core/view.hpp"
#include "xplor/model/config.hpp"
#include "xplor/model/layers.hpp"
#include "xplor/model/optim.hpp"

namespace xplor::model::gpu {

using xplor::gpu::buffer;
using xplor::gpu::check_cublas;
using xplor::gpu::check_cuda;
using xplor::gpu::check_launch;
using xplor::gpu::grid_for;

namespace kernels {

inline constexpr int threads = 256;

/// Row-major C[M, N] = alpha op(A)[M, K] op(B)[K, N] + beta C, batched with element strides
/// (batch 1: plain SGEMM). cuBLAS is column-major: the same memory read column-major is C^T, and
/// C^T = op(B)^T op(A)^T, so the operands swap. lda/ldb/ldc are row strides.
inline void gemm_rm(cublasHandle_t h, bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K,
                    const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float* C,
                    std::int64_t ldc, float beta, int batch = 1, std::int64_t sa = 0, std::int64_t sb = 0,
                    std::int64_t sc = 0) {
  const float alpha = 1.0f;
  const auto opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (batch == 1)
    check_cublas(
        cublasSgemm(h, opB, opA, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &alpha, B,
                    static_cast<int>(ldb), A, static_cast<int>(lda), &beta, C, static_cast<int>(ldc)),
        "cublasSgemm");
  else
    check_cublas(
        cublasSgemmStridedBatched(h, opB, opA, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K),
                                  &alpha, B, static_cast<int>(ldb), sb, A, static_cast<int>(lda), sa, &beta,
                                  C, static_cast<int>(ldc), sc, batch),
        "cublasSgemmStridedBatched");
}

/// y[n, out] (+)= x[n, in] W^T for W (out, in).
inline void linear_forward(cublasHandle_t h, const float* x, const float* w, float* y, std::int64_t n,
                           std::int64_t in, std::int64_t out, bool accumulate = false) {
  gemm_rm(h, false, true, n, out, in, x, in, w, in, y, out, accumulate ? 1.0f : 0.0f);
}
/// dx[n, in] += dy W and dW[out, in] += dy^T x.
inline void linear_backward(cublasHandle_t h, const float* x, const float* w, const float* dy, float* dx,
                            float* dw, std::int64_t n, std::int64_t in, std::int64_t out) {
  gemm_rm(h, false, false, n, in, out, dy, out, w, in, dx, in, 1.0f);
  gemm_rm(h, true, false, out, in, n, dy, out, x, in, dw, in, 1.0f);
}

__global__ void embed_kernel(const std::int32_t* tokens, const std::int32_t* positions, const float* embed,
                             const float* pos_embed, float* out, std::int64_t n, std::int64_t C) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n * C;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t r = i / C, c = i % C;
    float x = embed[std::int64_t{tokens[r]} * C + c];
    if (pos_embed != nullptr) x += pos_embed[std::int64_t{positions[r]} * C + c];
    out[i] = x;
  }
}

/// One warp per row: layers::norm_forward's math (b == nullptr: RMSNorm) with the sums over C
/// split across the lanes (a different summation order than the CPU's: equal within fp32).
__global__ void norm_forward_kernel(const float* x, const float* w, const float* b, float* y, float* mean,
                                    float* rstd, std::int64_t n, int C, float eps) {
  const std::int64_t r = (blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (r >= n) return;
  const float* xr = x + r * C;
  float m = 0.0f;
  if (b != nullptr) {
    for (int i = lane; i < C; i += 32) m += xr[i];
    for (int o = 16; o > 0; o >>= 1) m += __shfl_xor_sync(0xffffffffu, m, o);
    m /= static_cast<float>(C);
  }
  float var = 0.0f;
  for (int i = lane; i < C; i += 32) {
    const float d = xr[i] - m;
    var += d * d;
  }
  for (int o = 16; o > 0; o >>= 1) var += __shfl_xor_sync(0xffffffffu, var, o);
  var /= static_cast<float>(C);
  const float rs = 1.0f / sqrtf(var + eps);
  float* yr = y + r * C;
  for (int i = lane; i < C; i += 32) {
    const float xhat = (xr[i] - m) * rs;
    yr[i] = b != nullptr ? xhat * w[i] + b[i] : xhat * w[i];
  }
  if (lane == 0) {
    mean[r] = m;
    rstd[r] = rs;
  }
}
/// One warp per row: dx += layers::norm_backward's input gradient.
__global__ void norm_backward_kernel(const float* x, const float* w, bool layernorm, const float* mean,
                                     const float* rstd, const float* dy, float* dx, std::int64_t n, int C) {
  const std::int64_t r = (blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (r >= n) return;
  const float* xr = x + r * C;
  const float* dyr = dy + r * C;
  const float m = mean[r], rs = rstd[r];
  float sum_dxhat = 0.0f, sum_dxhat_xhat = 0.0f;
  for (int i = lane; i < C; i += 32) {
    const float xhat = (xr[i] - m) * rs;
    const float dxhat = dyr[i] * w[i];
    sum_dxhat += dxhat;
    sum_dxhat_xhat += dxhat * xhat;
  }
  for (int o = 16; o > 0; o >>= 1) {
    sum_dxhat += __shfl_xor_sync(0xffffffffu, sum_dxhat, o);
    sum_dxhat_xhat += __shfl_xor_sync(0xffffffffu, sum_dxhat_xhat, o);
  }
  const float inv_c = 1.0f / static_cast<float>(C);
  const float mean_dxhat = layernorm ? sum_dxhat * inv_c : 0.0f;
  const float mean_dxhat_xhat = sum_dxhat_xhat * inv_c;
  float* dxr = dx + r * C;
  for (int i = lane; i < C; i += 32) {
    const float xhat = (xr[i] - m) * rs;
    const float dxhat = dyr[i] * w[i];
    dxr[i] += rs * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat);
  }
}
/// dw[c] += sum_n dy[n, c] xhat[n, c] (and db[c] += sum_n dy[n, c]): blocks of 32 columns x 8
/// row lanes over a slice of the rows, reduced in shared memory, one atomic per column and slice.
__global__ void norm_param_grad_kernel(const float* x, const float* mean, const float* rstd, const float* dy,
                                       float* dw, float* db, std::int64_t n, int C,
                                       std::int64_t rows_per_slice) {
  __shared__ float sw[8][33], sb[8][33];
  const int c = static_cast<int>(blockIdx.x * 32 + threadIdx.x);
  const std::int64_t r0 = blockIdx.y * rows_per_slice;
  const std::int64_t r1 = r0 + rows_per_slice < n ? r0 + rows_per_slice : n;
  float gw = 0.0f, gb = 0.0f;
  if (c < C)
    for (std::int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
      const float d = dy[r * C + c];
      gw += d * (x[r * C + c] - mean[r]) * rstd[r];
      gb += d;
    }
  sw[threadIdx.y][threadIdx.x] = gw;
  sb[threadIdx.y][threadIdx.x] = gb;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    for (int k = 1; k < 8; ++k) {
      gw += sw[k][threadIdx.x];
      gb += sb[k][threadIdx.x];
    }
    atomicAdd(dw + c, gw);
    if (db != nullptr) atomicAdd(db + c, gb);
  }
}

/// One thread per (row, head): rotates q and k of qkv rows [n, 3C] (sign -1: inverse).
__global__ void rope_kernel(float* qkv, const std::int32_t* positions, const float* cos_t, const float* sin_t,
                            std::int64_t n, int C, int H, int D, float sign) {
  const std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
  if (i >= n * H) return;
  const std::int64_t r = i / H, h = i % H, half = D / 2;
  const float* cs = cos_t + std::int64_t{positions[r]} * half;
  const float* sn = sin_t + std::int64_t{positions[r]} * half;
  float* row = qkv + r * 3 * C;
  layers::rope_rotate(row + h * D, cs, sn, D, sign);
  layers::rope_rotate(row + C + h * D, cs, sn, D, sign);
}

/// act = gelu(a) or silu(a) * b.
__global__ void mlp_act_kernel(const float* a, const float* b, float* act, std::int64_t count, bool gelu) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < count;
       i += std::int64_t{gridDim.x} * blockDim.x)
    act[i] = gelu ? layers::gelu(a[i]) : layers::silu(a[i]) * b[i];
}
/// d act -> d a (in place in da) and, for SwiGLU, d b.
__global__ void mlp_act_backward_kernel(const float* a, const float* b, float* da, float* db,
                                        std::int64_t count, bool gelu) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < count;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    if (gelu) {
      da[i] *= layers::gelu_grad(a[i]);
    } else {
      db[i] = da[i] * layers::silu(a[i]);
      da[i] *= b[i] * layers::silu_grad(a[i]);
    }
  }
}

/// One warp per score row: P = causal softmax(S * scale) in place over [rows, T] (row i of each
/// T x T matrix sees columns 0..i).
__global__ void causal_softmax_kernel(float* S, std::int64_t rows, std::int64_t T, float scale) {
  const std::int64_t row = (blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const std::int64_t i = row % T;
  float* s = S + row * T;
  float m = -INFINITY;
  for (std::int64_t j = lane; j <= i; j += 32) m = fmaxf(m, s[j] * scale);
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  float sum = 0.0f;
  for (std::int64_t j = lane; j <= i; j += 32) {
    const float e = expf(s[j] * scale - m);
    s[j] = e;
    sum += e;
  }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  const float inv = 1.0f / sum;
  for (std::int64_t j = lane; j < T; j += 32) s[j] = j <= i ? s[j] * inv : 0.0f;
}
/// One warp per row: dS = P * (dP - rowsum(P * dP)) * scale in place in dP (causal).
__global__ void causal_softmax_backward_kernel(const float* P, float* dP, std::int64_t rows, std::int64_t T,
                                               float scale) {
  const std::int64_t row = (blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const std::int64_t i = row % T;
  const float* p = P + row * T;
  float* d = dP + row * T;
  float dot = 0.0f;
  for (std::int64_t j = lane; j <= i; j += 32) dot += p[j] * d[j];
  for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
  for (std::int64_t j = lane; j < T; j += 32) d[j] = j <= i ? p[j] * (d[j] - dot) * scale : 0.0f;
}

/// Block reductions over 256 threads (max and sum), result broadcast.
__device__ inline float block_reduce(float x, bool is_max, float* sh) {
  for (int o = 16; o > 0; o >>= 1) {
    const float y = __shfl_xor_sync(0xffffffffu, x, o);
    x = is_max ? fmaxf(x, y) : x + y;
  }
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = x;
  __syncthreads();
  float t = sh[0];
  for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w) t = is_max ? fmaxf(t, sh[w]) : t + sh[w];
  __syncthreads();
  return t;
}

/// One block per row: lse[n] and target_logp[n] (0 without a target).
__global__ void cross_entropy_kernel(const float* logits, const std::int32_t* targets, float* lse,
                                     float* target_logp, std::int64_t V) {
  __shared__ float sh[32];
  const std::int64_t r = blockIdx.x;
  const float* row = logits + r * V;
  float m = -INFINITY;
  for (std::int64_t v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, row[v]);
  m = block_reduce(m, true, sh);
  float s = 0.0f;
  for (std::int64_t v = threadIdx.x; v < V; v += blockDim.x) s += expf(row[v] - m);
  s = block_reduce(s, false, sh);
  if (threadIdx.x == 0) {
    const float l = m + logf(s);
    lse[r] = l;
    target_logp[r] = targets[r] >= 0 ? row[targets[r]] - l : 0.0f;
  }
}
/// dlogits = g (onehot(target) - softmax): the first pass writes -g softmax everywhere.
__global__ void dlogits_kernel(const float* logits, const float* lse, const float* g, float* d,
                               std::int64_t n, std::int64_t V) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n * V;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t r = i / V;
    d[i] = g[r] == 0.0f ? 0.0f : -g[r] * expf(logits[i] - lse[r]);
  }
}
__global__ void dlogits_target_kernel(const std::int32_t* targets, const float* g, float* d, std::int64_t n,
                                      std::int64_t V) {
  const std::int64_t r = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
  if (r < n && g[r] != 0.0f) d[r * V + targets[r]] += g[r];
}

/// Scatter-add of dx rows into the embedding (and position) gradients.
__global__ void embed_backward_kernel(const std::int32_t* tokens, const std::int32_t* positions,
                                      const float* dx, float* dembed, float* dpos, std::int64_t n,
                                      std::int64_t C) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n * C;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t r = i / C, c = i % C;
    atomicAdd(dembed + std::int64_t{tokens[r]} * C + c, dx[i]);
    if (dpos != nullptr) atomicAdd(dpos + std::int64_t{positions[r]} * C + c, dx[i]);
  }
}

/// Copies the k and v columns of qkv rows [n, 3C] into a cache [.., C] at rows dst_row[i].
__global__ void append_kv_kernel(const float* qkv, float* const* k_cache, float* const* v_cache,
                                 const std::int32_t* positions, std::int64_t n, std::int64_t C) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n * C;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t r = i / C, c = i % C;
    k_cache[r][std::int64_t{positions[r]} * C + c] = qkv[r * 3 * C + C + c];
    v_cache[r][std::int64_t{positions[r]} * C + c] = qkv[r * 3 * C + 2 * C + c];
  }
}

/// Decode attention, one block per (row, head): the row's query against its state's keys
/// 0..position (dynamic shared memory: max_seq_len scores).
__global__ void decode_attention_kernel(const float* qkv, const float* const* k_cache,
                                        const float* const* v_cache, const std::int32_t* positions, float* y,
                                        int C, int H, int D, float scale) {
  extern __shared__ float scores[];
  __shared__ float sh[32];
  const std::int64_t r = blockIdx.x / H, h = blockIdx.x % H;
  const std::int64_t len = positions[r] + 1;
  const float* q = qkv + r * 3 * C + h * D;
  const float* K = k_cache[r] + h * D;
  const float* Vc = v_cache[r] + h * D;
  float m = -INFINITY;
  for (std::int64_t t = threadIdx.x; t < len; t += blockDim.x) {
    float dot = 0.0f;
    for (int d = 0; d < D; ++d) dot += q[d] * K[t * C + d];
    scores[t] = dot * scale;
    m = fmaxf(m, scores[t]);
  }
  m = block_reduce(m, true, sh);
  float s = 0.0f;
  for (std::int64_t t = threadIdx.x; t < len; t += blockDim.x) {
    scores[t] = expf(scores[t] - m);
    s += scores[t];
  }
  s = block_reduce(s, false, sh);  // (synchronises: scores visible)
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.0f;
    for (std::int64_t t = 0; t < len; ++t) acc += scores[t] * Vc[t * C + d];
    y[r * C + h * D + d] = acc / s;
  }
}

/// AdamW over one tensor (model/optim.hpp's update, c1 and c2 the bias corrections).
__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, std::int64_t n, float b1, float b2,
                             float eps, float lr, float decay, float c1, float c2) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    m[i] = b1 * m[i] + (1.0f - b1) * g[i];
    v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
    p[i] = p[i] * decay - lr * (m[i] * c1) / (sqrtf(v[i] * c2) + eps);
  }
}
__global__ void sum_squares_kernel(const float* g, std::int64_t n, double* out) {
  double local = 0.0;
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x)
    local += double(g[i]) * g[i];
  // In double throughout (as the CPU's transform_reduce), one atomic per warp.
  for (int o = 16; o > 0; o >>= 1) local += __shfl_xor_sync(0xffffffffu, local, o);
  if ((threadIdx.x & 31) == 0) atomicAdd(out, local);
}
__global__ void scale_kernel(float* g, std::int64_t n, float s) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x)
    g[i] *= s;
}

}  // namespace kernels

/// Owns a cuBLAS handle (full fp32: no TF32 tensor-op math).
class blas_handle {
 public:
  blas_handle() {
    check_cublas(cublasCreate(&h_), "cublasCreate");
    check_cublas(cublasSetMathMode(h_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  }
  blas_handle(const blas_handle&) = delete;
  blas_handle& operator=(const blas_handle&) = delete;
  ~blas_handle() { cublasDestroy(h_); }
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

class kv_decoder;

/// The GPU twin of xplor::model::transformer. Parameters and gradients live in device memory in
/// the CPU model's layout; inputs are host spans (uploaded per call).
class transformer {
 public:
  /// Parameters drawn exactly as the CPU model draws them from `seed` (the same host code: one
  /// Philox stream per tensor), then uploaded.
  explicit transformer(const transformer_config& config, std::uint64_t seed = 0)
      : cfg_(config), layout_(config) {
    params_.resize(static_cast<std::size_t>(layout_.total));
    grads_.resize(static_cast<std::size_t>(layout_.total));
    grads_.zero();
    std::vector<float> host(static_cast<std::size_t>(layout_.total));
    initialize_parameters(cfg_, layout_, seed, host);
    params_.upload(host.data(), host.size());
    build_rope_tables();
  }

  const transformer_config& config() const { return cfg_; }
  const parameter_layout& layout() const { return layout_; }
  std::int64_t num_params() const { return layout_.total; }
  float* params() { return params_.data(); }
  float* grads() { return grads_.data(); }
  cublasHandle_t blas() const { return blas_.get(); }

  /// Copies a parameter buffer in the layout's order (e.g. the CPU model's params()) in or out.
  void set_params(std::span<const float> host) {
    detail::require(static_cast<std::int64_t>(host.size()) == layout_.total,
                    "xplor::model::gpu::transformer::set_params", "got ", host.size(), " floats for ",
                    layout_.total, " parameters");
    params_.upload(host.data(), host.size());
  }
  std::vector<float> get_params() const { return download(params_); }
  std::vector<float> get_grads() const { return download(grads_); }
  void zero_grad() { grads_.zero(); }

  /// Forward over tokens [B*T] with targets [B*T] (ignore_target = -1; empty: no loss) and
  /// optional per-token loss weights; returns the weighted mean cross-entropy (0 without targets).
  float forward(std::span<const std::int32_t> tokens, std::int64_t B, std::int64_t T,
                std::span<const std::int32_t> targets = {}, std::span<const float> loss_mask = {}) {
    constexpr const char* fn = "xplor::model::gpu::transformer::forward";
    detail::require(B > 0 && T > 0 && T <= cfg_.max_seq_len, fn, "batch = ", B, ", seq_len = ", T,
                    " (max_seq_len = ", cfg_.max_seq_len, ")");
    const std::int64_t N = B * T, C = cfg_.d_model, V = cfg_.vocab_size;
    detail::require(static_cast<std::int64_t>(tokens.size()) == N, fn, "tokens has ", tokens.size(),
                    " elements for ", N, " positions");
    for (std::int64_t n = 0; n < N; ++n)
      detail::require(tokens[n] >= 0 && tokens[n] < V, fn, "tokens[", n, "] = ", tokens[n],
                      " is outside [0, vocab_size = ", V, ") (latent inputs are CPU-only)");
    detail::require(targets.empty() || static_cast<std::int64_t>(targets.size()) == N, fn, "targets has ",
                    targets.size(), " elements for ", N, " positions");
    detail::require(loss_mask.empty() || static_cast<std::int64_t>(loss_mask.size()) == N, fn,
                    "loss_mask has ", loss_mask.size(), " elements for ", N, " positions");
    resize(B, T);
    targets_h_.assign(static_cast<std::size_t>(N), -1);
    weights_h_.assign(static_cast<std::size_t>(N), 0.0f);
    for (std::int64_t n = 0; n < N; ++n) {
      if (!targets.empty()) {
        detail::require(targets[n] >= -1 && targets[n] < V, fn, "targets[", n, "] = ", targets[n],
                        " is outside [0, vocab_size = ", V, ") and is not ignore_target");
        targets_h_[n] = targets[n];
      }
      if (targets_h_[n] >= 0) {
        const float w = loss_mask.empty() ? 1.0f : loss_mask[n];
        detail::require(std::isfinite(w) && w >= 0.0f, fn, "loss_mask[", n, "] = ", w,
                        " must be finite and >= 0");
        weights_h_[n] = w;
      }
    }
    std::vector<std::int32_t> pos(static_cast<std::size_t>(N));
    for (std::int64_t n = 0; n < N; ++n) pos[n] = static_cast<std::int32_t>(n % T);
    tokens_.upload(tokens.data(), tokens.size());
    positions_.upload(pos.data(), pos.size());
    targets_.upload(targets_h_.data(), targets_h_.size());

    const cublasHandle_t h = blas_.get();
    embed(tokens_.data(), positions_.data(), N, act_.residual.data());
    for (int l = 0; l < cfg_.n_layers; ++l) block_forward(h, l, B, T);
    norm(act_.residual.data() + off_res(cfg_.n_layers), layout_.final_norm_w, layout_.final_norm_b,
         act_.final_norm.data(), act_.final_mean.data(), act_.final_rstd.data(), N);
    kernels::linear_forward(h, act_.final_norm.data(), p(layout_.unembed()), act_.logits.data(), N, C, V);
    kernels::cross_entropy_kernel<<<static_cast<unsigned>(N), kernels::threads>>>(
        act_.logits.data(), targets_.data(), act_.lse.data(), act_.target_logp.data(), V);
    check_launch("cross_entropy_kernel");
    std::vector<float> tlp(static_cast<std::size_t>(N));
    act_.target_logp.download(tlp.data(), tlp.size());  // synchronises
    double loss = 0.0, weight = 0.0;
    for (std::int64_t n = 0; n < N; ++n) {
      loss -= double(weights_h_[n]) * tlp[n];
      weight += weights_h_[n];
    }
    loss_weight_ = static_cast<float>(weight);
    return weight > 0.0 ? static_cast<float>(loss / weight) : 0.0f;
  }

  /// Logits [B*T, V] of the last forward, device memory.
  const float* logits() const { return act_.logits.data(); }
  std::vector<float> get_logits() const {
    std::vector<float> out(static_cast<std::size_t>(B_ * T_ * cfg_.vocab_size));
    act_.logits.download(out.data(), out.size());
    return out;
  }

  /// Accumulates into grads() the gradient of loss_scale x the last forward's loss.
  void backward(float loss_scale = 1.0f) {
    const std::int64_t N = B_ * T_;
    detail::require(N > 0, "xplor::model::gpu::transformer::backward", "no forward pass to differentiate");
    const std::vector<float> dlogp = cross_entropy_dlogp(
        std::span<const float>(weights_h_.data(), static_cast<std::size_t>(N)), loss_weight_, loss_scale);
    backward(std::span<const float>(dlogp));
  }

  /// Accumulates the gradient of sum_n dlogp[n] log p(target_n) (host dlogp [B*T]).
  void backward(std::span<const float> dlogp) {
    constexpr const char* fn = "xplor::model::gpu::transformer::backward";
    const std::int64_t N = B_ * T_, C = cfg_.d_model, V = cfg_.vocab_size;
    detail::require(N > 0, fn, "no forward pass to differentiate");
    detail::require(static_cast<std::int64_t>(dlogp.size()) == N, fn, "dlogp has ", dlogp.size(),
                    " elements for ", N, " positions");
    for (std::int64_t n = 0; n < N; ++n) {
      detail::require(std::isfinite(dlogp[n]), fn, "dlogp[", n, "] = ", dlogp[n], " is not finite");
      detail::require(dlogp[n] == 0.0f || targets_h_[n] >= 0, fn, "dlogp[", n, "] = ", dlogp[n],
                      " at a position without a target");
    }
    dlogp_.upload(dlogp.data(), dlogp.size());
    const cublasHandle_t h = blas_.get();
    kernels::dlogits_kernel<<<grid_for(N * V, kernels::threads), kernels::threads>>>(
        act_.logits.data(), act_.lse.data(), dlogp_.data(), act_.dlogits.data(), N, V);
    check_launch("dlogits_kernel");
    kernels::dlogits_target_kernel<<<grid_for(N, kernels::threads), kernels::threads>>>(
        targets_.data(), dlogp_.data(), act_.dlogits.data(), N, V);
    check_launch("dlogits_target_kernel");
    act_.dx.zero();
    act_.dnorm.zero();
    kernels::linear_backward(h, act_.final_norm.data(), p(layout_.unembed()), act_.dlogits.data(),
                             act_.dnorm.data(), g(layout_.unembed()), N, C, V);
    norm_backward(act_.residual.data() + off_res(cfg_.n_layers), layout_.final_norm_w, layout_.final_norm_b,
                  act_.final_mean.data(), act_.final_rstd.data(), act_.dnorm.data(), act_.dx.data(), N);
    for (int l = cfg_.n_layers - 1; l >= 0; --l) block_backward(h, l);
    kernels::embed_backward_kernel<<<grid_for(N * C, kernels::threads), kernels::threads>>>(
        tokens_.data(), positions_.data(), act_.dx.data(), g(layout_.embed),
        layout_.pos_embed >= 0 ? g(layout_.pos_embed) : nullptr, N, C);
    check_launch("embed_backward_kernel");
    check_cuda(cudaDeviceSynchronize(), "xplor::model::gpu::transformer::backward (execution)");
  }

 private:
  friend class kv_decoder;

  struct activations {
    // Per layer l, slices of one buffer each: residual (L + 1) x [N, C], ...
    buffer<float> residual, norm1, mean1, rstd1, qkv, att, att_y, mid, norm2, mean2, rstd2, mlp_a, mlp_b,
        mlp_act;
    buffer<float> final_norm, final_mean, final_rstd, logits, lse, target_logp, dlogits;
    buffer<float> dx, dnorm, dmid, dqkv, datt_y, dmlp, dmlp_b, datt;
  };

  static std::vector<float> download(const buffer<float>& b) {
    std::vector<float> out(b.size());
    b.download(out.data(), out.size());
    return out;
  }
  float* p(std::int64_t offset) const { return params_.data() + offset; }
  float* g(std::int64_t offset) const { return grads_.data() + offset; }
  std::int64_t N() const { return B_ * T_; }
  std::int64_t off_res(int l) const { return l * N() * cfg_.d_model; }

  void build_rope_tables() {
    std::vector<float> cs, sn;
    rope_tables(cfg_, cs, sn);
    if (cs.empty()) return;
    rope_cos_.upload(cs.data(), cs.size());
    rope_sin_.upload(sn.data(), sn.size());
  }

  void resize(std::int64_t B, std::int64_t T) {
    if (B == B_ && T == T_) return;
    const std::int64_t N = B * T, C = cfg_.d_model, F = cfg_.d_ff, V = cfg_.vocab_size, H = cfg_.n_heads,
                       L = cfg_.n_layers;
    auto sz = [](std::int64_t n) { return static_cast<std::size_t>(n); };
    const bool swiglu = cfg_.mlp == mlp_kind::swiglu;
    act_.residual.resize(sz((L + 1) * N * C));
    act_.norm1.resize(sz(L * N * C));
    act_.mean1.resize(sz(L * N));
    act_.rstd1.resize(sz(L * N));
    act_.qkv.resize(sz(L * N * 3 * C));
    act_.att.resize(sz(L * B * H * T * T));
    act_.att_y.resize(sz(L * N * C));
    act_.mid.resize(sz(L * N * C));
    act_.norm2.resize(sz(L * N * C));
    act_.mean2.resize(sz(L * N));
    act_.rstd2.resize(sz(L * N));
    act_.mlp_a.resize(sz(L * N * F));
    act_.mlp_b.resize(swiglu ? sz(L * N * F) : 1);
    act_.mlp_act.resize(sz(L * N * F));
    act_.final_norm.resize(sz(N * C));
    act_.final_mean.resize(sz(N));
    act_.final_rstd.resize(sz(N));
    act_.logits.resize(sz(N * V));
    act_.lse.resize(sz(N));
    act_.target_logp.resize(sz(N));
    act_.dlogits.resize(sz(N * V));
    act_.dx.resize(sz(N * C));
    act_.dnorm.resize(sz(N * C));
    act_.dmid.resize(sz(N * C));
    act_.dqkv.resize(sz(N * 3 * C));
    act_.datt_y.resize(sz(N * C));
    act_.dmlp.resize(sz(N * F));
    act_.dmlp_b.resize(swiglu ? sz(N * F) : 1);
    act_.datt.resize(sz(B * H * T * T));
    B_ = B;
    T_ = T;
  }

  // Building blocks (shared with kv_decoder).
  void embed(const std::int32_t* tokens, const std::int32_t* positions, std::int64_t n, float* out) const {
    kernels::embed_kernel<<<grid_for(n * cfg_.d_model, kernels::threads), kernels::threads>>>(
        tokens, positions, p(layout_.embed), layout_.pos_embed >= 0 ? p(layout_.pos_embed) : nullptr, out, n,
        cfg_.d_model);
    check_launch("embed_kernel");
  }
  void norm(const float* x, std::int64_t w_off, std::int64_t b_off, float* y, float* mean, float* rstd,
            std::int64_t n) const {
    kernels::norm_forward_kernel<<<grid_for(n * 32, 128), 128>>>(
        x, p(w_off), b_off >= 0 ? p(b_off) : nullptr, y, mean, rstd, n, cfg_.d_model, cfg_.norm_eps);
    check_launch("norm_forward_kernel");
  }
  void norm_backward(const float* x, std::int64_t w_off, std::int64_t b_off, const float* mean,
                     const float* rstd, const float* dy, float* dx, std::int64_t n) {
    const int C = cfg_.d_model;
    const bool ln = b_off >= 0;
    kernels::norm_backward_kernel<<<grid_for(n * 32, 128), 128>>>(x, p(w_off), ln, mean, rstd, dy, dx, n, C);
    check_launch("norm_backward_kernel");
    const std::int64_t slices = n < 64 ? 1 : 64, per = (n + slices - 1) / slices;
    kernels::norm_param_grad_kernel<<<
        dim3(static_cast<unsigned>((C + 31) / 32), static_cast<unsigned>(slices)), dim3(32, 8)>>>(
        x, mean, rstd, dy, g(w_off), ln ? g(b_off) : nullptr, n, C, per);
    check_launch("norm_param_grad_kernel");
  }
  void rope(float* qkv, const std::int32_t* positions, std::int64_t n, float sign) const {
    if (cfg_.positions != position_kind::rope) return;
    kernels::rope_kernel<<<grid_for(n * cfg_.n_heads, 128), 128>>>(qkv, positions, rope_cos_.data(),
                                                                   rope_sin_.data(), n, cfg_.d_model,
                                                                   cfg_.n_heads, cfg_.head_dim(), sign);
    check_launch("rope_kernel");
  }
  void mlp_forward(cublasHandle_t h, int l, const float* x_norm, float* a, float* b, float* act, float* out,
                   std::int64_t n) const {
    const layer_offsets& o = layout_.layers[l];
    const std::int64_t C = cfg_.d_model, F = cfg_.d_ff;
    const bool gelu = cfg_.mlp == mlp_kind::gelu;
    if (!gelu) {
      kernels::linear_forward(h, x_norm, p(o.mlp_gate), a, n, C, F);
      kernels::linear_forward(h, x_norm, p(o.mlp_up), b, n, C, F);
    } else {
      kernels::linear_forward(h, x_norm, p(o.mlp_up), a, n, C, F);
    }
    kernels::mlp_act_kernel<<<grid_for(n * F, kernels::threads), kernels::threads>>>(a, b, act, n * F, gelu);
    check_launch("mlp_act_kernel");
    kernels::linear_forward(h, act, p(o.mlp_down), out, n, F, C, /*accumulate=*/true);
  }

  void block_forward(cublasHandle_t h, int l, std::int64_t B, std::int64_t T) {
    const layer_offsets& o = layout_.layers[l];
    const std::int64_t N = B * T, C = cfg_.d_model, H = cfg_.n_heads, D = cfg_.head_dim(), F = cfg_.d_ff;
    const float* x = act_.residual.data() + off_res(l);
    float* norm1 = act_.norm1.data() + l * N * C;
    float* qkv = act_.qkv.data() + l * N * 3 * C;
    float* att = act_.att.data() + l * B * H * T * T;
    float* att_y = act_.att_y.data() + l * N * C;
    float* mid = act_.mid.data() + l * N * C;
    float* norm2 = act_.norm2.data() + l * N * C;
    norm(x, o.attn_norm_w, o.attn_norm_b, norm1, act_.mean1.data() + l * N, act_.rstd1.data() + l * N, N);
    kernels::linear_forward(h, norm1, p(o.qkv), qkv, N, C, 3 * C);
    rope(qkv, positions_.data(), N, 1.0f);
    // Scores S = q k^T per (b, h) (strided over heads), causal softmax, y = P v.
    for (std::int64_t b = 0; b < B; ++b) {
      const float* base = qkv + b * T * 3 * C;
      kernels::gemm_rm(h, false, true, T, T, D, base, 3 * C, base + C, 3 * C, att + b * H * T * T, T, 0.0f,
                       static_cast<int>(H), D, D, T * T);
    }
    const float scale = 1.0f / std::sqrt(static_cast<float>(D));
    kernels::causal_softmax_kernel<<<grid_for(B * H * T * 32, kernels::threads), kernels::threads>>>(
        att, B * H * T, T, scale);
    check_launch("causal_softmax_kernel");
    for (std::int64_t b = 0; b < B; ++b)
      kernels::gemm_rm(h, false, false, T, D, T, att + b * H * T * T, T, qkv + b * T * 3 * C + 2 * C, 3 * C,
                       att_y + b * T * C, C, 0.0f, static_cast<int>(H), T * T, D, D);
    check_cuda(cudaMemcpyAsync(mid, x, sizeof(float) * N * C, cudaMemcpyDeviceToDevice),
               "cudaMemcpyAsync(mid)");
    kernels::linear_forward(h, att_y, p(o.attn_out), mid, N, C, C, /*accumulate=*/true);
    norm(mid, o.mlp_norm_w, o.mlp_norm_b, norm2, act_.mean2.data() + l * N, act_.rstd2.data() + l * N, N);
    float* out = act_.residual.data() + off_res(l + 1);
    check_cuda(cudaMemcpyAsync(out, mid, sizeof(float) * N * C, cudaMemcpyDeviceToDevice),
               "cudaMemcpyAsync(out)");
    mlp_forward(h, l, norm2, act_.mlp_a.data() + l * N * F,
                cfg_.mlp == mlp_kind::swiglu ? act_.mlp_b.data() + l * N * F : nullptr,
                act_.mlp_act.data() + l * N * F, out, N);
  }

  void block_backward(cublasHandle_t h, int l) {
    const layer_offsets& o = layout_.layers[l];
    const std::int64_t B = B_, T = T_, N = B * T, C = cfg_.d_model, F = cfg_.d_ff, H = cfg_.n_heads,
                       D = cfg_.head_dim();
    const bool gelu = cfg_.mlp == mlp_kind::gelu;
    float* dx = act_.dx.data();
    const float* norm1 = act_.norm1.data() + l * N * C;
    const float* qkv = act_.qkv.data() + l * N * 3 * C;
    const float* att = act_.att.data() + l * B * H * T * T;
    const float* att_y = act_.att_y.data() + l * N * C;
    const float* mid = act_.mid.data() + l * N * C;
    const float* norm2 = act_.norm2.data() + l * N * C;
    const float* a = act_.mlp_a.data() + l * N * F;
    const float* bu = gelu ? nullptr : act_.mlp_b.data() + l * N * F;
    const float* act = act_.mlp_act.data() + l * N * F;
    // MLP: out = mid + down(act).
    act_.dmlp.zero();
    kernels::linear_backward(h, act, p(o.mlp_down), dx, act_.dmlp.data(), g(o.mlp_down), N, F, C);
    act_.dnorm.zero();
    kernels::mlp_act_backward_kernel<<<grid_for(N * F, kernels::threads), kernels::threads>>>(
        a, bu, act_.dmlp.data(), gelu ? nullptr : act_.dmlp_b.data(), N * F, gelu);
    check_launch("mlp_act_backward_kernel");
    if (gelu) {
      kernels::linear_backward(h, norm2, p(o.mlp_up), act_.dmlp.data(), act_.dnorm.data(), g(o.mlp_up), N, C,
                               F);
    } else {
      kernels::linear_backward(h, norm2, p(o.mlp_gate), act_.dmlp.data(), act_.dnorm.data(), g(o.mlp_gate), N,
                               C, F);
      kernels::linear_backward(h, norm2, p(o.mlp_up), act_.dmlp_b.data(), act_.dnorm.data(), g(o.mlp_up), N,
                               C, F);
    }
    float* dmid = act_.dmid.data();
    check_cuda(cudaMemcpyAsync(dmid, dx, sizeof(float) * N * C, cudaMemcpyDeviceToDevice),
               "cudaMemcpyAsync(dmid)");
    norm_backward(mid, o.mlp_norm_w, o.mlp_norm_b, act_.mean2.data() + l * N, act_.rstd2.data() + l * N,
                  act_.dnorm.data(), dmid, N);
    act_.datt_y.zero();
    kernels::linear_backward(h, att_y, p(o.attn_out), dmid, act_.datt_y.data(), g(o.attn_out), N, C, C);
    // Attention core per (b, h): dP = dY V^T, dV = P^T dY, dS = softmax backward, dQ = dS K,
    // dK = dS^T Q.
    const float scale = 1.0f / std::sqrt(static_cast<float>(D));
    float* dqkv = act_.dqkv.data();
    float* datt = act_.datt.data();
    const int hb = static_cast<int>(H);
    for (std::int64_t b = 0; b < B; ++b) {
      const float* base = qkv + b * T * 3 * C;
      const float* dy = act_.datt_y.data() + b * T * C;
      float* dbase = dqkv + b * T * 3 * C;
      float* dP = datt + b * H * T * T;
      kernels::gemm_rm(h, false, true, T, T, D, dy, C, base + 2 * C, 3 * C, dP, T, 0.0f, hb, D, D, T * T);
      kernels::gemm_rm(h, true, false, T, D, T, att + b * H * T * T, T, dy, C, dbase + 2 * C, 3 * C, 0.0f, hb,
                       T * T, D, D);
    }
    kernels::causal_softmax_backward_kernel<<<grid_for(B * H * T * 32, kernels::threads), kernels::threads>>>(
        att, datt, B * H * T, T, scale);
    check_launch("causal_softmax_backward_kernel");
    for (std::int64_t b = 0; b < B; ++b) {
      const float* base = qkv + b * T * 3 * C;
      float* dbase = dqkv + b * T * 3 * C;
      const float* dS = datt + b * H * T * T;
      kernels::gemm_rm(h, false, false, T, D, T, dS, T, base + C, 3 * C, dbase, 3 * C, 0.0f, hb, T * T, D, D);
      kernels::gemm_rm(h, true, false, T, D, T, dS, T, base, 3 * C, dbase + C, 3 * C, 0.0f, hb, T * T, D, D);
    }
    rope(dqkv, positions_.data(), N, -1.0f);
    act_.dnorm.zero();
    kernels::linear_backward(h, norm1, p(o.qkv), dqkv, act_.dnorm.data(), g(o.qkv), N, C, 3 * C);
    check_cuda(cudaMemcpyAsync(dx, dmid, sizeof(float) * N * C, cudaMemcpyDeviceToDevice),
               "cudaMemcpyAsync(dx)");
    norm_backward(act_.residual.data() + off_res(l), o.attn_norm_w, o.attn_norm_b, act_.mean1.data() + l * N,
                  act_.rstd1.data() + l * N, act_.dnorm.data(), dx, N);
  }

  transformer_config cfg_;
  parameter_layout layout_;
  blas_handle blas_;
  buffer<float> params_, grads_, rope_cos_, rope_sin_, dlogp_;
  buffer<std::int32_t> tokens_, positions_, targets_;
  activations act_;
  std::vector<std::int32_t> targets_h_;
  std::vector<float> weights_h_;
  float loss_weight_ = 0.0f;
  std::int64_t B_ = 0, T_ = 0;
};

/// AdamW on device buffers: model/optim.hpp's adamw, tensor by tensor (decay on matrices only).
class adamw {
 public:
  adamw(const parameter_layout& layout, const adamw_options& options = {}) : layout_(&layout), opt_(options) {
    options.validate("xplor::model::gpu::adamw");
    m_.resize(static_cast<std::size_t>(layout.total));
    v_.resize(static_cast<std::size_t>(layout.total));
    m_.zero();
    v_.zero();
  }
  void step(float* params, const float* grads, float lr) {
    detail::require(std::isfinite(lr) && lr >= 0.0f, "xplor::model::gpu::adamw::step", "lr = ", lr,
                    " must be finite and >= 0");
    ++t_;
    const float b1 = opt_.beta1, b2 = opt_.beta2;
    const float c1 = 1.0f / (1.0f - static_cast<float>(std::pow(double(b1), double(t_))));
    const float c2 = 1.0f / (1.0f - static_cast<float>(std::pow(double(b2), double(t_))));
    for (const tensor_slot& s : layout_->tensors) {
      const float decay = s.decay ? 1.0f - lr * opt_.weight_decay : 1.0f;
      kernels::adamw_kernel<<<grid_for(s.size, kernels::threads), kernels::threads>>>(
          params + s.offset, grads + s.offset, m_.data() + s.offset, v_.data() + s.offset, s.size, b1, b2,
          opt_.eps, lr, decay, c1, c2);
      check_launch("adamw_kernel");
    }
  }
  std::int64_t steps() const { return t_; }

 private:
  const parameter_layout* layout_;
  adamw_options opt_;
  buffer<float> m_, v_;
  std::int64_t t_ = 0;
};

/// clip_grad_norm on device (norm accumulated in double); returns the norm before clipping.
inline float clip_grad_norm(float* grads, std::int64_t n, float max_norm) {
  detail::require(max_norm > 0.0f, "xplor::model::gpu::clip_grad_norm", "max_norm = ", max_norm,
                  " must be positive");
  buffer<double> acc(1);
  check_cuda(cudaMemset(acc.data(), 0, sizeof(double)), "cudaMemset");
  const unsigned blocks = std::min(grid_for(n, kernels::threads), 1024u);  // one double atomic per warp
  kernels::sum_squares_kernel<<<blocks, kernels::threads>>>(grads, n, acc.data());
  check_launch("sum_squares_kernel");
  double sq = 0.0;
  acc.download(&sq, 1);
  const auto norm = static_cast<float>(std::sqrt(sq));
  detail::require(std::isfinite(norm), "xplor::model::gpu::clip_grad_norm", "the gradient norm is ", norm);
  if (norm > max_norm) {
    kernels::scale_kernel<<<grid_for(n, kernels::threads), kernels::threads>>>(grads, n,
                                                                               max_norm / (norm + 1e-6f));
    check_launch("scale_kernel");
  }
  return norm;
}

/// KV-cache decoding on the GPU with decode_policy's calls. Each state owns a cache of
/// max_seq_len rows per layer; fork copies the parent's cache on the device (no sharing: simple,
/// at the price of memory, docs/gpu.md). logits()/step() return device views [n, V].
class kv_decoder {
 public:
  using state_id = std::int32_t;

  explicit kv_decoder(transformer& model) : m_(&model) {}

  std::int64_t vocab_size() const { return m_->config().vocab_size; }

  state_id begin(std::span<const std::int32_t> prompt) {
    constexpr const char* fn = "xplor::model::gpu::kv_decoder::begin";
    const auto& c = m_->config();
    detail::require(!prompt.empty() && static_cast<std::int64_t>(prompt.size()) <= c.max_seq_len, fn,
                    "prompt has ", prompt.size(), " tokens (1 to max_seq_len = ", c.max_seq_len, ")");
    const state_id id = new_state();
    // Prefill runs the prompt's rows one position at a time through the decode path: simple, and
    // exactly the math of step() (prompts in the tests are short).
    for (std::size_t i = 0; i < prompt.size(); ++i) {
      const state_id one[1] = {id};
      const std::int32_t tok[1] = {prompt[i]};
      run(one, tok, fn);
    }
    return id;
  }

  std::vector<state_id> fork(state_id s, int n) {
    constexpr const char* fn = "xplor::model::gpu::kv_decoder::fork";
    check_live(s, fn);
    detail::require(n >= 0, fn, "n = ", n, " is negative");
    std::vector<state_id> out;
    for (int i = 0; i < n; ++i) {
      const state_id id = new_state();
      state& dst = states_[id];
      const state& src = states_[s];
      const std::size_t bytes = sizeof(float) * cache_floats();
      check_cuda(cudaMemcpy(dst.k.data(), src.k.data(), bytes, cudaMemcpyDeviceToDevice),
                 "cudaMemcpy(fork k)");
      check_cuda(cudaMemcpy(dst.v.data(), src.v.data(), bytes, cudaMemcpyDeviceToDevice),
                 "cudaMemcpy(fork v)");
      check_cuda(cudaMemcpy(dst.hidden.data(), src.hidden.data(), sizeof(float) * m_->config().d_model,
                            cudaMemcpyDeviceToDevice),
                 "cudaMemcpy(fork hidden)");
      dst.length = src.length;
      out.push_back(id);
    }
    return out;
  }

  device_view2d<const float> logits(std::span<const state_id> ids) {
    const std::int64_t n = static_cast<std::int64_t>(ids.size()), C = m_->config().d_model;
    hidden_.resize(static_cast<std::size_t>(n * C > 0 ? n * C : 1));
    for (std::int64_t i = 0; i < n; ++i) {
      check_live(ids[i], "xplor::model::gpu::kv_decoder::logits");
      check_cuda(cudaMemcpy(hidden_.data() + i * C, states_[ids[i]].hidden.data(), sizeof(float) * C,
                            cudaMemcpyDeviceToDevice),
                 "cudaMemcpy(hidden)");
    }
    return unembed(n);
  }

  device_view2d<const float> step(std::span<const state_id> ids, std::span<const std::int32_t> tokens) {
    constexpr const char* fn = "xplor::model::gpu::kv_decoder::step";
    detail::require(tokens.size() == ids.size(), fn, "tokens has ", tokens.size(), " elements for ",
                    ids.size(), " states");
    for (std::size_t i = 0; i < ids.size(); ++i)
      for (std::size_t j = 0; j < i; ++j)
        detail::require(ids[i] != ids[j], fn, "state ", ids[i], " appears twice in one step");
    run(ids, tokens, fn);
    return unembed(static_cast<std::int64_t>(ids.size()));
  }

  void release(std::span<const state_id> ids) {
    for (state_id s : ids) {
      check_live(s, "xplor::model::gpu::kv_decoder::release");
      states_[s].live = false;
      free_.push_back(s);
    }
  }
  std::int64_t length(state_id s) const {
    check_live(s, "xplor::model::gpu::kv_decoder::length");
    return states_[s].length;
  }

 private:
  struct state {
    buffer<float> k, v;    // [L, max_seq_len, C]
    buffer<float> hidden;  // [C] final-norm output after the last token
    std::int64_t length = 0;
    bool live = false;
  };

  std::size_t cache_floats() const {
    const auto& c = m_->config();
    return static_cast<std::size_t>(c.n_layers) * c.max_seq_len * c.d_model;
  }
  void check_live(state_id s, const char* fn) const {
    detail::require(s >= 0 && s < static_cast<state_id>(states_.size()) && states_[s].live, fn, "state ", s,
                    " is not a live state");
  }
  state_id new_state() {
    state_id id;
    if (!free_.empty()) {
      id = free_.back();
      free_.pop_back();
    } else {
      id = static_cast<state_id>(states_.size());
      states_.emplace_back();
    }
    state& s = states_[id];
    s.k.resize(cache_floats());
    s.v.resize(cache_floats());
    s.hidden.resize(static_cast<std::size_t>(m_->config().d_model));
    s.length = 0;
    s.live = true;
    return id;
  }

  /// One new token for each state: embeddings, per layer norm -> qkv -> rope -> append k, v ->
  /// attention over the state's cache -> out proj -> norm -> MLP; final norm into each state's
  /// hidden row and hidden_ (for unembed).
  void run(std::span<const state_id> ids, std::span<const std::int32_t> tokens, const char* fn) {
    transformer& m = *m_;
    const auto& c = m.config();
    const std::int64_t n = static_cast<std::int64_t>(ids.size()), C = c.d_model, F = c.d_ff, H = c.n_heads,
                       D = c.head_dim(), T = c.max_seq_len;
    if (n == 0) return;
    std::vector<std::int32_t> pos(static_cast<std::size_t>(n));
    std::vector<float*> kp(static_cast<std::size_t>(n)), vp(kp.size());
    for (std::int64_t i = 0; i < n; ++i) {
      check_live(ids[i], fn);
      detail::require(tokens[i] >= 0 && tokens[i] < c.vocab_size, fn, "tokens[", i, "] = ", tokens[i],
                      " is outside [0, vocab_size = ", c.vocab_size, ")");
      detail::require(states_[ids[i]].length < T, fn, "state ", ids[i], " already holds ",
                      states_[ids[i]].length, " tokens = max_seq_len");
      pos[i] = static_cast<std::int32_t>(states_[ids[i]].length);
    }
    tokens_.upload(tokens.data(), tokens.size());
    positions_.upload(pos.data(), pos.size());
    auto sz = [](std::int64_t k) { return static_cast<std::size_t>(k); };
    x_.resize(sz(n * C));
    norm_.resize(sz(n * C));
    att_y_.resize(sz(n * C));
    stats_.resize(sz(2 * n));
    qkv_.resize(sz(n * 3 * C));
    a_.resize(sz(n * F));
    b_.resize(sz(n * F));
    act_.resize(sz(n * F));
    const cublasHandle_t h = m.blas();
    m.embed(tokens_.data(), positions_.data(), n, x_.data());
    const float scale = 1.0f / std::sqrt(static_cast<float>(D));
    const int att_threads = 128;
    for (int l = 0; l < c.n_layers; ++l) {
      const layer_offsets& o = m.layout().layers[l];
      for (std::int64_t i = 0; i < n; ++i) {
        kp[i] = states_[ids[i]].k.data() + l * T * C;
        vp[i] = states_[ids[i]].v.data() + l * T * C;
      }
      kptr_.upload(kp.data(), kp.size());
      vptr_.upload(vp.data(), vp.size());
      m.norm(x_.data(), o.attn_norm_w, o.attn_norm_b, norm_.data(), stats_.data(), stats_.data() + n, n);
      kernels::linear_forward(h, norm_.data(), m.p(o.qkv), qkv_.data(), n, C, 3 * C);
      m.rope(qkv_.data(), positions_.data(), n, 1.0f);
      kernels::append_kv_kernel<<<grid_for(n * C, kernels::threads), kernels::threads>>>(
          qkv_.data(), kptr_.data(), vptr_.data(), positions_.data(), n, C);
      check_launch("append_kv_kernel");
      kernels::decode_attention_kernel<<<static_cast<unsigned>(n * H), att_threads, sizeof(float) * T>>>(
          qkv_.data(), kptr_.data(), vptr_.data(), positions_.data(), att_y_.data(), static_cast<int>(C),
          static_cast<int>(H), static_cast<int>(D), scale);
      check_launch("decode_attention_kernel");
      kernels::linear_forward(h, att_y_.data(), m.p(o.attn_out), x_.data(), n, C, C, /*accumulate=*/true);
      m.norm(x_.data(), o.mlp_norm_w, o.mlp_norm_b, norm_.data(), stats_.data(), stats_.data() + n, n);
      m.mlp_forward(h, l, norm_.data(), a_.data(), b_.data(), act_.data(), x_.data(), n);
    }
    m.norm(x_.data(), m.layout().final_norm_w, m.layout().final_norm_b, norm_.data(), stats_.data(),
           stats_.data() + n, n);
    hidden_.resize(sz(n * C));
    check_cuda(cudaMemcpy(hidden_.data(), norm_.data(), sizeof(float) * n * C, cudaMemcpyDeviceToDevice),
               "cudaMemcpy(hidden rows)");
    for (std::int64_t i = 0; i < n; ++i) {
      check_cuda(cudaMemcpy(states_[ids[i]].hidden.data(), norm_.data() + i * C, sizeof(float) * C,
                            cudaMemcpyDeviceToDevice),
                 "cudaMemcpy(state hidden)");
      states_[ids[i]].length += 1;
    }
  }

  device_view2d<const float> unembed(std::int64_t n) {
    const std::int64_t C = m_->config().d_model, V = m_->config().vocab_size;
    logits_.resize(static_cast<std::size_t>(n * V > 0 ? n * V : 1));
    if (n > 0)
      kernels::linear_forward(m_->blas(), hidden_.data(), m_->p(m_->layout().unembed()), logits_.data(), n, C,
                              V);
    check_cuda(cudaDeviceSynchronize(), "xplor::model::gpu::kv_decoder (execution)");
    return device_view2d<const float>(logits_.data(), {n, V}, {V, 1});
  }

  transformer* m_;
  std::vector<state> states_;
  std::vector<state_id> free_;
  buffer<std::int32_t> tokens_, positions_;
  buffer<float*> kptr_, vptr_;
  buffer<float> x_, norm_, att_y_, stats_, qkv_, a_, b_, act_, hidden_, logits_;
};

}  // namespace xplor::model::gpu
