// Row-level math of the reference transformer, forward and backward: RMSNorm / LayerNorm, the
// tanh GELU, SiLU and SwiGLU, and rotary position embeddings. XPLOR_HD functions on raw rows,
// shared by the CPU model and the CUDA kernels; the transformer only decides how to loop.
// Templates on the scalar so the tests can check each backward against double-precision finite
// differences; the model instantiates them with float.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "xplor/core/config.hpp"
#include "xplor/core/numerics.hpp"

namespace xplor::model::layers {

// ---------------------------------------------------------------------------------------------
// Norms over one row x (C). RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x^2) + eps) * w.
// LayerNorm (Ba et al. 2016): y = (x - mean) / sqrt(var + eps) * w + b (biased variance, as
// torch.nn.LayerNorm). Forward saves mean and rstd; backward recomputes xhat from them.

/// Forward of one row; b == nullptr selects RMSNorm. Writes y and returns (mean, rstd).
template <class T>
XPLOR_HD void norm_forward(const T* x, const T* w, const T* b, T* y, int C, T eps, T* mean_out, T* rstd_out) {
  T mean = 0;
  if (b != nullptr) {
    for (int i = 0; i < C; ++i) mean += x[i];
    mean /= static_cast<T>(C);
  }
  T var = 0;
  for (int i = 0; i < C; ++i) {
    const T d = x[i] - mean;
    var += d * d;
  }
  var /= static_cast<T>(C);
  const T rstd = T(1) / std::sqrt(var + eps);
  for (int i = 0; i < C; ++i) {
    const T xhat = (x[i] - mean) * rstd;
    y[i] = b != nullptr ? xhat * w[i] + b[i] : xhat * w[i];
  }
  *mean_out = mean;
  *rstd_out = rstd;
}

/// Backward of one row: accumulates dw (and db for LayerNorm) and *adds* the input gradient to dx.
/// dw/db accumulation is per row; callers reduce rows serially (or per thread) to avoid races.
template <class T>
XPLOR_HD void norm_backward(const T* x, const T* w, bool layernorm, T mean, T rstd, const T* dy, T* dx, T* dw,
                            T* db, int C) {
  T sum_dxhat = 0, sum_dxhat_xhat = 0;
  for (int i = 0; i < C; ++i) {
    const T xhat = (x[i] - mean) * rstd;
    const T dxhat = dy[i] * w[i];
    sum_dxhat += dxhat;
    sum_dxhat_xhat += dxhat * xhat;
  }
  const T inv_c = T(1) / static_cast<T>(C);
  const T mean_dxhat = layernorm ? sum_dxhat * inv_c : T(0);
  const T mean_dxhat_xhat = sum_dxhat_xhat * inv_c;
  for (int i = 0; i < C; ++i) {
    const T xhat = (x[i] - mean) * rstd;
    const T dxhat = dy[i] * w[i];
    dx[i] += rstd * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat);
    if (dw != nullptr) dw[i] += dy[i] * xhat;
    if (layernorm && db != nullptr) db[i] += dy[i];
  }
}

// ---------------------------------------------------------------------------------------------
// Activations.

/// exp for the activations: exp_fast for float (branch-free, so loops over it vectorise; within
/// 2 ulp of std::exp, saturating where sigmoid is already 0 or 1), std::exp for the double tests.
template <class T>
XPLOR_HD T act_exp(T x) {
  if constexpr (std::is_same_v<T, float>)
    return exp_fast(x);
  else
    return std::exp(x);
}

/// GELU, tanh approximation (Hendrycks & Gimpel 2016; GPT-2; torch gelu(approximate="tanh")):
/// 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), computed as x sigmoid(2u) (the same
/// function: 0.5 (1 + tanh u) = sigmoid(2u)) to use act_exp instead of a libm tanh per element.
template <class T>
XPLOR_HD T gelu(T x) {
  const T s = T(0.7978845608028654);  // sqrt(2 / pi)
  const T u = s * (x + T(0.044715) * x * x * x);
  return x / (T(1) + act_exp(T(-2) * u));
}
/// d gelu / dx = sigmoid(2u) + 2 x sigmoid(2u) (1 - sigmoid(2u)) u'(x).
template <class T>
XPLOR_HD T gelu_grad(T x) {
  const T s = T(0.7978845608028654);
  const T sg = T(1) / (T(1) + act_exp(T(-2) * s * (x + T(0.044715) * x * x * x)));
  return sg + T(2) * x * sg * (T(1) - sg) * s * (T(1) + T(3 * 0.044715) * x * x);
}

template <class T>
XPLOR_HD T sigmoid(T x) {
  return T(1) / (T(1) + act_exp(-x));
}
/// SiLU (swish): x * sigmoid(x). SwiGLU (Shazeer 2020): down(silu(gate x) * up x).
template <class T>
XPLOR_HD T silu(T x) {
  return x * sigmoid(x);
}
template <class T>
XPLOR_HD T silu_grad(T x) {
  const T sg = sigmoid(x);
  return sg * (T(1) + x * (T(1) - sg));
}

// ---------------------------------------------------------------------------------------------
// Rotary position embeddings (Su et al., RoFormer 2021), "rotate half" pairing as in the
// Llama/NeoX code: element i pairs with i + D/2, angle pos * theta^(-2i/D). cos_t and sin_t are
// the table row of the position (D/2 entries). sign = -1 applies the inverse rotation (backward).
template <class T>
XPLOR_HD void rope_rotate(T* v, const T* cos_t, const T* sin_t, int D, T sign) {
  const int half = D / 2;
  for (int i = 0; i < half; ++i) {
    const T a = v[i], b = v[i + half];
    const T c = cos_t[i], s = sign * sin_t[i];
    v[i] = a * c - b * s;
    v[i + half] = a * s + b * c;
  }
}

}  // namespace xplor::model::layers
