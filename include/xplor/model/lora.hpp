// LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", arXiv 2106.09685) on the
// reference transformer's attention projections, as PEFT's LoraLayer computes it:
//
//   y = x W^T + (alpha / r) * dropout(x) A^T B^T,   A (r, in), B (out, r)
//
// A starts U(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming_uniform_(a = sqrt 5)) and B at 0, so a new
// adapter leaves the model unchanged. Targets are the q, k and v rows of a block's attn.qkv and its
// attn.out (PEFT's q_proj, k_proj, v_proj, o_proj). The adapter's tensors live in a caller's
// parameter table (a lora_layout registers them), so that an owner holding other trainable tensors
// (MemGen's weaver) keeps one buffer, one optimizer and one checkpoint; the transformer runs an
// attached adapter through lora_forward / lora_backward (docs/memory.md).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/random.hpp"
#include "xplor/model/config.hpp"
#include "xplor/model/dense.hpp"

namespace xplor::model {

enum class lora_target : std::uint8_t { q, k, v, o };
inline constexpr std::array<lora_target, 4> all_lora_targets = {lora_target::q, lora_target::k,
                                                                lora_target::v, lora_target::o};
inline std::string_view to_string(lora_target t) {
  constexpr std::array<std::string_view, 4> names = {"q", "k", "v", "o"};
  return names[static_cast<std::size_t>(t)];
}

/// Defaults are MemGen's weaver and trigger adapters (r 16, alpha 32, q and v, dropout 0.1).
struct lora_config {
  int rank = 16;
  float alpha = 32.0f;
  std::vector<lora_target> targets = {lora_target::q, lora_target::v};
  float dropout = 0.1f;  // on the adapter's input, in training mode only

  /// Throws xplor::error naming the first invalid field.
  void validate() const {
    constexpr const char* fn = "xplor::model::lora_config";
    xplor::detail::require(rank >= 1, fn, "rank = ", rank, " must be positive");
    xplor::detail::require(std::isfinite(alpha) && alpha > 0.0f, fn, "alpha = ", alpha,
                           " must be finite and positive");
    xplor::detail::require(!targets.empty(), fn, "targets is empty");
    for (std::size_t i = 0; i < targets.size(); ++i) {
      xplor::detail::require(static_cast<std::size_t>(targets[i]) < all_lora_targets.size(), fn, "targets[",
                             i, "] = ", static_cast<int>(targets[i]), " is not q, k, v or o");
      for (std::size_t j = 0; j < i; ++j)
        xplor::detail::require(targets[j] != targets[i], fn, "targets[", i, "] = ", to_string(targets[i]),
                               " is listed twice");
    }
    xplor::detail::require(dropout >= 0.0f && dropout < 1.0f, fn, "dropout = ", dropout,
                           " is outside [0, 1)");
  }
};

/// The two linear layers of a block that LoRA edits: qkv ([n, 3C] output; q, k, v at columns 0, C,
/// 2C) and attn.out ([n, C]; target o).
enum class lora_site : std::uint8_t { qkv, out };

/// Where an adapter's tensors sit in a parameter table: for every layer and target, A (r, C) and
/// B (C, r), named as PEFT names them ("<prefix>layers.{l}.attn.{q,k,v,o}_proj.lora_{A,B}.weight").
class lora_layout {
 public:
  lora_layout(const transformer_config& model, const lora_config& cfg, parameter_layout& table,
              const std::string& prefix = "base_model.model.")
      : cfg_(cfg), C_(model.d_model), layers_(model.n_layers) {
    cfg.validate();
    model.validate();
    offsets_.assign(static_cast<std::size_t>(layers_) * all_lora_targets.size(), {-1, -1});
    for (int l = 0; l < layers_; ++l)
      for (lora_target t : cfg.targets) {
        const std::string p =
            prefix + "layers." + std::to_string(l) + ".attn." + std::string(to_string(t)) + "_proj.lora_";
        auto& o = offsets_[index(l, t)];
        o[0] = table.add(p + "A.weight", {cfg.rank, C_}, false);
        o[1] = table.add(p + "B.weight", {C_, cfg.rank}, false);
      }
  }

  const lora_config& config() const { return cfg_; }
  int d_model() const { return C_; }
  int n_layers() const { return layers_; }
  float scale() const { return cfg_.alpha / static_cast<float>(cfg_.rank); }
  bool has(lora_target t) const { return offsets_[index(0, t)][0] >= 0; }
  /// Offsets of A and B of (layer, target) in the table (-1 when the target is not adapted).
  std::int64_t a(int l, lora_target t) const { return offsets_[index(l, t)][0]; }
  std::int64_t b(int l, lora_target t) const { return offsets_[index(l, t)][1]; }

  /// A ~ U(-1/sqrt(C), 1/sqrt(C)) from `seed` (one Philox stream per tensor), B = 0.
  void initialize(std::span<float> params, std::uint64_t seed) const {
    const float bound = 1.0f / std::sqrt(static_cast<float>(C_));
    const std::int64_t size = std::int64_t{cfg_.rank} * C_;
    for (std::size_t k = 0; k < offsets_.size(); ++k) {
      if (offsets_[k][0] < 0) continue;
      philox_stream gen(seed, k);
      float* a = params.data() + offsets_[k][0];
      for (std::int64_t i = 0; i < size; ++i) a[i] = bound * (2.0f * gen.uniform() - 1.0f);
      std::fill(params.data() + offsets_[k][1], params.data() + offsets_[k][1] + size, 0.0f);
    }
  }

 private:
  std::size_t index(int l, lora_target t) const {
    return static_cast<std::size_t>(l) * all_lora_targets.size() + static_cast<std::size_t>(t);
  }

  lora_config cfg_;
  int C_ = 0, layers_ = 0;
  std::vector<std::array<std::int64_t, 2>> offsets_;  // [layer * 4 + target] -> {A, B}
};

/// An adapter attached to a model: its layout, the parameter buffer the layout indexes, the
/// gradient buffer backward accumulates into (null: no gradients), and the dropout state. Dropout
/// masks are a function of (dropout_key, layer, site, row, column), so a forward run again with
/// the same key (a recomputed forward for backward) draws the same masks.
struct lora_weights {
  const lora_layout* layout = nullptr;
  const float* params = nullptr;
  float* grads = nullptr;
  bool training = false;  // dropout on (eval: off, as after module.eval())
  std::uint64_t dropout_key = 0;
};

/// What lora_backward needs from lora_forward at one (layer, site): the dropout mask and the
/// adapter's input after it ([n, C] each; empty without dropout, when the input itself is used)
/// and u = dropout(x) A^T per target.
struct lora_cache {
  std::vector<float> mask, dropped;  // mask: 0 (dropped) or 1 / (1 - p)
  std::vector<float> u;              // [targets at the site][n, r]
};

/// The targets a site holds and their first output column.
inline int lora_site_targets(lora_site site, int C, std::array<lora_target, 3>& t, std::array<int, 3>& col) {
  if (site == lora_site::out) {
    t[0] = lora_target::o;
    col[0] = 0;
    return 1;
  }
  t = {lora_target::q, lora_target::k, lora_target::v};
  col = {0, C, 2 * C};
  return 3;
}

inline int lora_site_width(lora_site site, int C) { return site == lora_site::qkv ? 3 * C : C; }

/// Whether the adapter edits any target of `site` (lora_forward keeps no cache otherwise).
inline bool lora_site_used(const lora_layout& L, lora_site site) {
  return site == lora_site::out ? L.has(lora_target::o)
                                : L.has(lora_target::q) || L.has(lora_target::k) || L.has(lora_target::v);
}

/// y[n, width] += scale * dropout(x) A^T B^T for each target of `site` in layer l (x is [n, C]).
/// Keeps what lora_backward needs in `cache` unless it is null (decoding).
inline void lora_forward(const lora_weights& w, int l, lora_site site, const float* x, std::int64_t n,
                         float* y, lora_cache* cache) {
  const lora_layout& L = *w.layout;
  const int C = L.d_model(), r = L.config().rank, width = lora_site_width(site, C);
  std::array<lora_target, 3> targets{};
  std::array<int, 3> cols{};
  const int count = lora_site_targets(site, C, targets, cols);
  if (!lora_site_used(L, site)) return;
  lora_cache local;
  lora_cache& k = cache != nullptr ? *cache : local;
  const float p = w.training ? L.config().dropout : 0.0f;
  const float* in = x;
  k.mask.clear();
  k.dropped.clear();
  if (p > 0.0f) {
    k.mask.resize(static_cast<std::size_t>(n * C));
    k.dropped.resize(k.mask.size());
    const float keep_scale = 1.0f / (1.0f - p);
    const std::uint64_t stream = stream_id(static_cast<std::uint32_t>(l), static_cast<std::uint32_t>(site));
    const std::int64_t blocks_per_row = (C + 3) / 4;  // each row starts a fresh Philox block
    for (std::int64_t row = 0; row < n; ++row) {
      philox_stream gen(w.dropout_key, stream, static_cast<std::uint64_t>(row * blocks_per_row));
      for (int c = 0; c < C; ++c) {
        const std::size_t i = static_cast<std::size_t>(row * C + c);
        k.mask[i] = gen.uniform() < p ? 0.0f : keep_scale;
        k.dropped[i] = x[i] * k.mask[i];
      }
    }
    in = k.dropped.data();
  }
  std::vector<float>& u = k.u;
  u.assign(static_cast<std::size_t>(count * n * r), 0.0f);
  std::vector<float> delta(static_cast<std::size_t>(n * C));
  const float s = L.scale();
  for (int i = 0; i < count; ++i) {
    const lora_target t = targets[static_cast<std::size_t>(i)];
    if (!L.has(t)) continue;
    float* ut = u.data() + i * n * r;
    dense::linear_forward(in, w.params + L.a(l, t), ut, n, C, r);
    dense::linear_forward(ut, w.params + L.b(l, t), delta.data(), n, r, C);
    const int col = cols[static_cast<std::size_t>(i)];
    for (std::int64_t row = 0; row < n; ++row)
      for (int c = 0; c < C; ++c) y[row * width + col + c] += s * delta[row * C + c];
  }
}

/// Backward of lora_forward: dx[n, C] += the adapter's input gradient and, when w.grads is set,
/// dA, dB accumulate; dy is the gradient of the site's output [n, width].
inline void lora_backward(const lora_weights& w, int l, lora_site site, const float* x, const float* dy,
                          std::int64_t n, float* dx, const lora_cache& cache) {
  const lora_layout& L = *w.layout;
  const int C = L.d_model(), r = L.config().rank, width = lora_site_width(site, C);
  std::array<lora_target, 3> targets{};
  std::array<int, 3> cols{};
  const int count = lora_site_targets(site, C, targets, cols);
  if (!lora_site_used(L, site)) return;  // lora_forward kept no cache either
  const bool dropped = !cache.mask.empty();
  const float* in = dropped ? cache.dropped.data() : x;
  const float s = L.scale();
  std::vector<float> dys(static_cast<std::size_t>(n * C)), du(static_cast<std::size_t>(n * r)),
      din(static_cast<std::size_t>(n * C), 0.0f);
  for (int i = 0; i < count; ++i) {
    const lora_target t = targets[static_cast<std::size_t>(i)];
    if (!L.has(t)) continue;
    const int col = cols[static_cast<std::size_t>(i)];
    for (std::int64_t row = 0; row < n; ++row)
      for (int c = 0; c < C; ++c) dys[row * C + c] = s * dy[row * width + col + c];
    const float* ut = cache.u.data() + i * n * r;
    std::fill(du.begin(), du.end(), 0.0f);
    // du = dys B, dB += dys^T u; then din += du A, dA += du^T in.
    float* gb = w.grads != nullptr ? w.grads + L.b(l, t) : nullptr;
    float* ga = w.grads != nullptr ? w.grads + L.a(l, t) : nullptr;
    dense::linear_backward(ut, w.params + L.b(l, t), dys.data(), du.data(), gb, n, r, C);
    dense::linear_backward(in, w.params + L.a(l, t), du.data(), din.data(), ga, n, C, r);
  }
  for (std::size_t i = 0; i < din.size(); ++i) dx[i] += dropped ? din[i] * cache.mask[i] : din[i];
}

}  // namespace xplor::model
