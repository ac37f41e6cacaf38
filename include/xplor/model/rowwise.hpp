// The CPU loops over rows that the reference transformer and the models built from its blocks
// (bubble/model.hpp) share: norms and the MLP, forward and backward, on row-major float buffers.
// Every row's result is the same bits on any thread count (parameter gradients are summed over
// rows serially, in row order).
#pragma once

#include <algorithm>
#include <cstdint>

#include "xplor/core/exec.hpp"
#include "xplor/model/config.hpp"
#include "xplor/model/dense.hpp"
#include "xplor/model/layers.hpp"

namespace xplor::model::rowwise {

/// y = norm(x) over n rows of C, with the rows' mean and rstd (RMSNorm when b is null).
inline void norm_forward(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd,
                         std::int64_t n, int C, float eps) {
  for_each_index(
      cpu, n,
      [&](std::int64_t r) { layers::norm_forward(x + r * C, w, b, y + r * C, C, eps, mean + r, rstd + r); },
      C);
}

/// dx += d(norm)/dx^T dy per row (parallel); dw (and db for LayerNorm) accumulated serially,
/// unless dw is null (a frozen model: no parameter gradients).
inline void norm_backward(const float* x, const float* w, bool layernorm, const float* mean,
                          const float* rstd, const float* dy, float* dx, float* dw, float* db, std::int64_t n,
                          int C) {
  for_each_index(
      cpu, n,
      [&](std::int64_t r) {
        layers::norm_backward<float>(x + r * C, w, layernorm, mean[r], rstd[r], dy + r * C, dx + r * C,
                                     nullptr, nullptr, C);
      },
      C);
  if (dw == nullptr) return;
  for (std::int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * C;
    const float* dyr = dy + r * C;
    for (int c = 0; c < C; ++c) {
      dw[c] += dyr[c] * (xr[c] - mean[r]) * rstd[r];
      if (layernorm) db[c] += dyr[c];
    }
  }
}

/// One block's MLP weights (gate is null for GELU) and their gradients.
struct mlp_weights {
  const float* gate = nullptr;
  const float* up = nullptr;
  const float* down = nullptr;
};
struct mlp_grads {
  float* gate = nullptr;
  float* up = nullptr;
  float* down = nullptr;
};

/// act = gelu(a) or silu(a) * b, elementwise over `count` values.
inline void mlp_activation(mlp_kind kind, const float* a, const float* b, float* act, std::int64_t count) {
  if (kind == mlp_kind::gelu)
    for_each_index(cpu, count, [&](std::int64_t i) { act[i] = layers::gelu(a[i]); });
  else
    for_each_index(cpu, count, [&](std::int64_t i) { act[i] = layers::silu(a[i]) * b[i]; });
}

/// out (+)= MLP(x_norm) for n rows: a, b (SwiGLU only) and act [n, F] are kept for the backward.
inline void mlp_forward(mlp_kind kind, const mlp_weights& w, const float* x_norm, float* a, float* b,
                        float* act, float* out, std::int64_t n, std::int64_t C, std::int64_t F,
                        bool accumulate, dense::forward_kernel kernel = dense::forward_kernel::streamed) {
  if (kind == mlp_kind::swiglu) {
    dense::linear_forward(x_norm, w.gate, a, n, C, F, false, kernel);
    dense::linear_forward(x_norm, w.up, b, n, C, F, false, kernel);
  } else {
    dense::linear_forward(x_norm, w.up, a, n, C, F, false, kernel);
  }
  mlp_activation(kind, a, b, act, n * F);
  dense::linear_forward(act, w.down, out, n, F, C, accumulate, kernel);
}

/// Backward of mlp_forward from dy [n, C]: dx_norm [n, C] += dL/dx_norm and the weight gradients
/// accumulated (not when they are null). da, db_scratch [n, F] are workspaces (db_scratch SwiGLU only).
inline void mlp_backward(mlp_kind kind, const mlp_weights& w, const mlp_grads& g, const float* x_norm,
                         const float* a, const float* b, const float* act, const float* dy, float* da,
                         float* db_scratch, float* dx_norm, std::int64_t n, std::int64_t C, std::int64_t F) {
  std::fill(da, da + n * F, 0.0f);
  dense::linear_backward(act, w.down, dy, da, g.down, n, F, C);  // d act, turned into d a in place
  if (kind == mlp_kind::gelu) {
    for_each_index(cpu, n * F, [&](std::int64_t i) { da[i] *= layers::gelu_grad(a[i]); });
    dense::linear_backward(x_norm, w.up, da, dx_norm, g.up, n, C, F);
  } else {
    for_each_index(cpu, n * F, [&](std::int64_t i) {
      db_scratch[i] = da[i] * layers::silu(a[i]);
      da[i] *= b[i] * layers::silu_grad(a[i]);
    });
    dense::linear_backward(x_norm, w.gate, da, dx_norm, g.gate, n, C, F);
    dense::linear_backward(x_norm, w.up, db_scratch, dx_norm, g.up, n, C, F);
  }
}

}  // namespace xplor::model::rowwise
