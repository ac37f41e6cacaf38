// The reference transformer on the CPU: a GPT-style pre-norm decoder (RMSNorm or LayerNorm,
// learned or rotary positions, GELU or SwiGLU MLP, tied or separate unembedding) with a
// hand-written backward pass. Parameters and gradients each live in one contiguous buffer laid
// out by parameter_layout (llm.c style); matrix products go through Eigen (OpenMP-parallel when
// compiled with OpenMP). The KV-cache decoder is in decode.hpp, AdamW in optim.hpp.
//
// Shapes: B = batch, T = sequence length, N = B * T rows, C = d_model, H = heads, D = C / H,
// F = d_ff, V = vocab. Linear layers follow PyTorch: W is (out, in) and y = x W^T.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string_view>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/core/numerics.hpp"
#include "xplor/core/random.hpp"
#include "xplor/core/view.hpp"
#include "xplor/model/attention.hpp"
#include "xplor/model/config.hpp"
#include "xplor/model/dense.hpp"
#include "xplor/model/layers.hpp"
#include "xplor/model/lora.hpp"
#include "xplor/model/rowwise.hpp"

namespace xplor::model {

class kv_decoder;

/// Marks a position of the input whose embedding is a caller-supplied latent vector instead of a
/// token embedding (MemGen latents, Thoughtbubbles, soft prompts).
inline constexpr std::int32_t latent_slot = -1;
/// A target that contributes no loss (and no gradient).
inline constexpr std::int32_t ignore_target = -1;

/// One forward pass's input: B sequences of T positions, row-major [B, T].
struct forward_batch {
  std::span<const std::int32_t> tokens = {};   // [B*T] token ids, or latent_slot
  std::int64_t batch = 1;                      // B
  std::int64_t seq_len = 0;                    // T <= max_seq_len
  std::span<const std::int32_t> targets = {};  // [B*T] next-token ids or ignore_target; empty: no loss
  std::span<const float> loss_mask = {};       // [B*T] per-token weights >= 0; empty: 1 for every target
  view2d<const float> latents;                 // [number of latent_slot positions, C], in row-major order
};

/// Interventions during the forward pass. after_block(l, residual) sees the residual stream
/// [N, C] after block l and may modify it in place (steering, patching). The backward pass treats
/// the hook as an additive edit (identity Jacobian), exact for steering vectors and the
/// straight-through estimator for replacements.
struct forward_hooks {
  std::function<void(int layer, view2d<float> residual)> after_block = {};
};

/// Throws xplor::error (prefixed with fn) naming the first field of `b` that does not fit `cfg`.
inline void validate_batch(const transformer_config& cfg, const forward_batch& b, const char* fn) {
  xplor::detail::require(b.batch > 0, fn, "batch = ", b.batch, " must be positive");
  xplor::detail::require(b.seq_len > 0 && b.seq_len <= cfg.max_seq_len, fn, "seq_len = ", b.seq_len,
                         " is outside [1, max_seq_len = ", cfg.max_seq_len, "]");
  const std::int64_t N = b.batch * b.seq_len;
  xplor::detail::require(static_cast<std::int64_t>(b.tokens.size()) == N, fn, "tokens has ", b.tokens.size(),
                         " elements for batch x seq_len = ", N);
  std::int64_t latents = 0;
  for (std::int64_t n = 0; n < N; ++n) {
    const std::int32_t t = b.tokens[n];
    if (t == latent_slot) {
      ++latents;
      continue;
    }
    xplor::detail::require(t >= 0 && t < cfg.vocab_size, fn, "tokens[", n, "] = ", t,
                           " is outside [0, vocab_size = ", cfg.vocab_size, ")");
  }
  xplor::detail::require(b.latents.rows() == latents, fn, "latents has ", b.latents.rows(), " rows for ",
                         latents, " latent_slot positions");
  xplor::detail::require(latents == 0 || b.latents.cols() == cfg.d_model, fn, "latents has ",
                         b.latents.cols(), " columns, d_model = ", cfg.d_model);
  if (!b.targets.empty()) {
    xplor::detail::require(static_cast<std::int64_t>(b.targets.size()) == N, fn, "targets has ",
                           b.targets.size(), " elements for ", N, " positions");
    for (std::int64_t n = 0; n < N; ++n)
      xplor::detail::require(
          b.targets[n] == ignore_target || (b.targets[n] >= 0 && b.targets[n] < cfg.vocab_size), fn,
          "targets[", n, "] = ", b.targets[n], " is outside [0, vocab_size = ", cfg.vocab_size,
          ") and is not ignore_target");
  }
  if (!b.loss_mask.empty()) {
    xplor::detail::require(static_cast<std::int64_t>(b.loss_mask.size()) == N, fn, "loss_mask has ",
                           b.loss_mask.size(), " elements for ", N, " positions");
    for (std::int64_t n = 0; n < N; ++n)
      xplor::detail::require(std::isfinite(b.loss_mask[n]) && b.loss_mask[n] >= 0.0f, fn, "loss_mask[", n,
                             "] = ", b.loss_mask[n], " must be finite and >= 0");
  }
}

/// The loss end of a language model, shared by the transformer and the models built from its
/// blocks: targets and weights of a batch, log-probabilities of the targets from the logits and
/// the weighted mean cross-entropy, and d log p / d logits for the backward pass.
struct target_scores {
  std::vector<std::int32_t> targets;
  std::vector<float> weights, lse, logp;
  float loss_weight = 0.0f;

  /// Targets (ignore_target where the batch has none) and weights (the loss mask, 0 without a target).
  void set(const forward_batch& b) {
    const auto N = static_cast<std::size_t>(b.batch * b.seq_len);
    targets.assign(N, ignore_target);
    if (!b.targets.empty()) std::copy(b.targets.begin(), b.targets.end(), targets.begin());
    weights.assign(N, 0.0f);
    for (std::size_t n = 0; n < N; ++n)
      if (targets[n] >= 0) weights[n] = b.loss_mask.empty() ? 1.0f : b.loss_mask[n];
  }

  /// log p(target) of every row of logits [N, V]; returns the weighted mean cross-entropy (0 when
  /// no target counts).
  float score(const float* logits, std::int64_t V) {
    const auto N = static_cast<std::int64_t>(targets.size());
    lse.resize(targets.size());
    logp.resize(targets.size());
    for_each_index(
        cpu, N,
        [&](std::int64_t n) {
          const float* row = logits + n * V;
          lse[n] = xplor::detail::row_logsumexp({row, V, 1});
          logp[n] = targets[n] >= 0 ? row[targets[n]] - lse[n] : 0.0f;
        },
        V);
    double loss = 0.0, weight = 0.0;
    for (std::int64_t n = 0; n < N; ++n) {
      loss -= double(weights[n]) * logp[n];
      weight += weights[n];
    }
    loss_weight = static_cast<float>(weight);
    return weight > 0.0 ? static_cast<float>(loss / weight) : 0.0f;
  }

  /// Throws unless dlogp has one finite entry per row, non-zero only where a target is.
  void check(std::span<const float> dlogp, const char* fn) const {
    const auto N = static_cast<std::int64_t>(targets.size());
    xplor::detail::require(N > 0, fn, "no forward pass to differentiate");
    xplor::detail::require(static_cast<std::int64_t>(dlogp.size()) == N, fn, "dlogp has ", dlogp.size(),
                           " elements for ", N, " positions");
    for (std::int64_t n = 0; n < N; ++n) {
      xplor::detail::require(std::isfinite(dlogp[n]), fn, "dlogp[", n, "] = ", dlogp[n], " is not finite");
      xplor::detail::require(dlogp[n] == 0.0f || targets[n] >= 0, fn, "dlogp[", n, "] = ", dlogp[n],
                             " at a position without a target");
    }
  }

  /// dlogits [N, V] = dlogp[n] (onehot(target) - softmax(logits)): the gradient of sum dlogp log p.
  void logit_grads(const float* logits, std::span<const float> dlogp, float* dlogits, std::int64_t V) const {
    for_each_index(
        cpu, static_cast<std::int64_t>(targets.size()),
        [&](std::int64_t n) {
          float* d = dlogits + n * V;
          const float g = dlogp[n];
          if (g == 0.0f) {
            std::fill(d, d + V, 0.0f);
            return;
          }
          const float* row = logits + n * V;
          for (std::int64_t v = 0; v < V; ++v) d[v] = -g * std::exp(row[v] - lse[n]);
          d[targets[n]] += g;
        },
        V);
  }
};

/// The forward kernel of training (dense.hpp): transformer's default, and the bubble model's, so
/// that a bubble model without forks computes the plain model's bits.
inline constexpr dense::forward_kernel training_forward_kernel = dense::forward_kernel::packed;

class transformer {
 public:
  /// A model with parameters drawn deterministically from `seed` (Philox; one stream per tensor,
  /// so adding a tensor never changes the others' values).
  explicit transformer(const transformer_config& config, std::uint64_t seed = 0)
      : cfg_(config),
        layout_(config),
        params_(static_cast<std::size_t>(layout_.total), 0.0f),
        grads_(static_cast<std::size_t>(layout_.total), 0.0f) {
    initialize_parameters(cfg_, layout_, seed, params_);
    rope_tables(cfg_, rope_cos_, rope_sin_);
  }

  const transformer_config& config() const { return cfg_; }
  const parameter_layout& layout() const { return layout_; }
  std::span<float> params() { return params_; }
  std::span<const float> params() const { return params_; }
  std::span<float> grads() { return grads_; }
  std::span<const float> grads() const { return grads_; }
  std::int64_t num_params() const { return layout_.total; }

  /// The named tensor's slice of the parameter buffer (names as in docs/model.md).
  std::span<float> param(std::string_view name) { return slice(params_.data(), name); }
  std::span<const float> param(std::string_view name) const { return slice(params_.data(), name); }
  std::span<float> grad(std::string_view name) { return slice(grads_.data(), name); }

  void zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

  /// A frozen model's backward passes compute input gradients (latent_grads(), an attached
  /// adapter's gradients) and leave grads() untouched: exactly zero after zero_grad(), and no time
  /// spent on weight gradients.
  void freeze(bool frozen = true) { frozen_ = frozen; }
  bool frozen() const { return frozen_; }

  /// The kernel of forward()'s and hidden()'s own matrix products (dense.hpp): `packed`, the
  /// default (a training batch's products at 83-91 GFLOP/s against the streamed kernel's 62-70 on
  /// an AVX2 core), or `streamed`, the kernel kv_decoder always uses (it is faster for a few rows).
  /// The two sum in different orders, so the choice changes every trained weight's last bits.
  void set_forward_kernel(dense::forward_kernel kernel) { kernel_ = kernel; }
  dense::forward_kernel forward_kernel() const { return kernel_; }

  /// Runs every later forward and backward with the LoRA adapter `w` (its buffers must outlive the
  /// attachment); backward accumulates the adapter's gradients into w.grads when it is set.
  void attach(const lora_weights& w) {
    constexpr const char* fn = "xplor::model::transformer::attach";
    xplor::detail::require(w.layout != nullptr && w.params != nullptr, fn,
                           "the adapter has no layout or params");
    xplor::detail::require(w.layout->d_model() == cfg_.d_model && w.layout->n_layers() == cfg_.n_layers, fn,
                           "the adapter is for d_model ", w.layout->d_model(), ", ", w.layout->n_layers(),
                           " layers; the model has ", cfg_.d_model, ", ", cfg_.n_layers);
    lora_ = w;
    has_lora_ = true;
  }
  void detach() { has_lora_ = false; }
  /// The attached adapter, or null.
  const lora_weights* adapter() const { return has_lora_ ? &lora_ : nullptr; }

  // -------------------------------------------------------------------------------------------
  // Forward

  /// Runs the model over `batch`; returns the mean cross-entropy over the weighted targets (0 when
  /// there are none). Keeps the activations for backward(), logits() and residual().
  float forward(const forward_batch& batch, const forward_hooks& hooks = {}) {
    run_blocks(batch, hooks, "xplor::model::transformer::forward");
    // Unembedding, log-probabilities of the targets and the weighted mean cross-entropy.
    const std::int64_t V = cfg_.vocab_size;
    dense::linear_forward(act_.final_norm.data(), p(layout_.unembed()), act_.logits.data(), rows(),
                          cfg_.d_model, V, false, kernel_);
    has_logits_ = true;
    return scores_.score(act_.logits.data(), V);
  }

  /// Runs the model over `batch` up to the final norm (no unembedding, no loss): hidden() holds the
  /// last layer's normalised hidden states (HuggingFace's hidden_states[-1]), for models whose
  /// output is a representation (MemGen's weaver, probes). Continue with backward_hidden().
  void forward_hidden(const forward_batch& batch, const forward_hooks& hooks = {}) {
    run_blocks(batch, hooks, "xplor::model::transformer::forward_hidden");
  }

  /// The final norm's output [N, C] of the last forward or forward_hidden.
  view2d<const float> hidden() const {
    return make_view(act_.final_norm.data(), {rows(), std::int64_t{cfg_.d_model}});
  }

  /// Logits [N, V] of the last forward.
  view2d<const float> logits() const { return make_view(act_.logits.data(), {rows(), cfg_.vocab_size}); }
  /// log p(target) [N] of the last forward (0 where the target is ignore_target).
  std::span<const float> target_logprobs() const {
    return std::span<const float>(scores_.logp.data(), static_cast<std::size_t>(rows()));
  }
  /// The residual stream [N, C] entering block `layer` of the last forward; layer == n_layers is
  /// the stream after the last block (before the final norm). Index 0 is the embeddings.
  view2d<const float> residual(int layer) const {
    xplor::detail::require(layer >= 0 && layer <= cfg_.n_layers, "xplor::model::transformer::residual",
                           "layer = ", layer, " is outside [0, ", cfg_.n_layers, "]");
    xplor::detail::require(!act_.residual.empty(), "xplor::model::transformer::residual",
                           "the model has not run a forward pass");
    return make_view(act_.residual[layer].data(), {rows(), std::int64_t{cfg_.d_model}});
  }

  // -------------------------------------------------------------------------------------------
  // Backward

  /// Accumulates into grads() the gradient of loss_scale x the last forward's loss (the weighted
  /// mean cross-entropy it returned). For gradient accumulation over k micro-batches, pass
  /// loss_scale = 1/k so the sum is the gradient of the mean.
  void backward(float loss_scale = 1.0f) {
    const std::vector<float> dlogp = cross_entropy_dlogp(scores_.weights, scores_.loss_weight, loss_scale);
    backward(std::span<const float>(dlogp));
  }

  /// Accumulates into grads() the gradient of sum_n dlogp[n] * log p(target_n): the entry point
  /// for policy losses, which give the gradient of their loss with respect to each sampled token's
  /// log-probability (e.g. -advantage / num_tokens for a REINFORCE-style loss). dlogp is [N].
  void backward(std::span<const float> dlogp) {
    constexpr const char* fn = "xplor::model::transformer::backward";
    xplor::detail::require(has_logits_, fn, "the last forward pass was forward_hidden (no logits)");
    scores_.check(dlogp, fn);
    const std::int64_t N = rows(), C = cfg_.d_model, V = cfg_.vocab_size;
    scores_.logit_grads(act_.logits.data(), dlogp, act_.dlogits.data(), V);
    std::fill(act_.dnorm.begin(), act_.dnorm.end(), 0.0f);
    dense::linear_backward(act_.final_norm.data(), p(layout_.unembed()), act_.dlogits.data(),
                           act_.dnorm.data(), g(layout_.unembed()), N, C, V);
    backward_from_hidden();
  }

  /// Accumulates the gradient of sum(dhidden * hidden()) ([N, C], the gradient of a loss on the
  /// hidden states) after forward or forward_hidden.
  void backward_hidden(view2d<const float> dhidden) {
    constexpr const char* fn = "xplor::model::transformer::backward_hidden";
    xplor::detail::require(rows() > 0, fn, "no forward pass to differentiate");
    xplor::detail::require(dhidden.rows() == rows() && dhidden.cols() == cfg_.d_model, fn, "dhidden is ",
                           dhidden.rows(), " x ", dhidden.cols(), " for ", rows(), " x ", cfg_.d_model,
                           " hidden states");
    const std::int64_t C = cfg_.d_model;
    for (std::int64_t n = 0; n < rows(); ++n)
      for (std::int64_t c = 0; c < C; ++c) {
        const float d = dhidden(n, c);
        xplor::detail::require(std::isfinite(d), fn, "dhidden(", n, ", ", c, ") = ", d, " is not finite");
        act_.dnorm[static_cast<std::size_t>(n * C + c)] = d;
      }
    backward_from_hidden();
  }

  /// Gradient [n_latents, C] with respect to the latent vectors of the last forward (filled by
  /// backward()).
  view2d<const float> latent_grads() const {
    return make_view(latent_grads_.data(), {n_latents_, std::int64_t{cfg_.d_model}});
  }

 private:
  friend class kv_decoder;

  struct activations {
    std::int64_t B = 0, T = 0;
    std::vector<std::vector<float>> residual;  // L + 1 of (N, C)
    std::vector<std::vector<float>> norm1, mean1, rstd1, qkv, att, att_y, mid, norm2, mean2, rstd2, mlp_a,
        mlp_b, mlp_act;
    std::vector<float> final_norm, final_mean, final_rstd, logits, dlogits;
    std::vector<float> dx, dnorm, dmid, dqkv, datt_y, dmlp, dmlp_b, datt;  // backward scratch
    std::vector<lora_cache> lora_qkv, lora_out;                            // per layer, with an adapter
  };

  float* p(std::int64_t offset) { return params_.data() + offset; }
  const float* p(std::int64_t offset) const { return params_.data() + offset; }
  /// Where the gradient of the tensor at `offset` accumulates: nowhere when frozen.
  float* g(std::int64_t offset) { return frozen_ ? nullptr : grads_.data() + offset; }
  std::int64_t rows() const { return act_.B * act_.T; }

  /// Embeddings and blocks up to the final norm: the common part of forward and forward_hidden.
  void run_blocks(const forward_batch& batch, const forward_hooks& hooks, const char* fn) {
    validate_batch(cfg_, batch, fn);
    const std::int64_t B = batch.batch, T = batch.seq_len, N = B * T, C = cfg_.d_model;
    resize_activations(B, T);
    has_logits_ = false;
    std::copy(batch.tokens.begin(), batch.tokens.end(), tokens_.begin());
    scores_.set(batch);
    positions_.resize(static_cast<std::size_t>(N));
    for (std::int64_t n = 0; n < N; ++n) positions_[n] = static_cast<std::int32_t>(n % T);

    n_latents_ = embed_rows(tokens_.data(), positions_.data(), batch.latents, N, act_.residual[0].data());
    for (int l = 0; l < cfg_.n_layers; ++l) {
      block_forward(l, B, T);
      if (hooks.after_block) hooks.after_block(l, view2d<float>(act_.residual[l + 1].data(), {N, C}, {C, 1}));
    }
    norm_rows(act_.residual[cfg_.n_layers].data(), layout_.final_norm_w, layout_.final_norm_b,
              act_.final_norm.data(), act_.final_mean.data(), act_.final_rstd.data(), N);
  }

  /// From dL/d(final norm output) in act_.dnorm down to the embeddings.
  void backward_from_hidden() {
    std::fill(act_.dx.begin(), act_.dx.end(), 0.0f);
    norm_rows_backward(act_.residual[cfg_.n_layers].data(), layout_.final_norm_w, layout_.final_norm_b,
                       act_.final_mean.data(), act_.final_rstd.data(), act_.dnorm.data(), act_.dx.data(),
                       rows());
    for (int l = cfg_.n_layers - 1; l >= 0; --l) block_backward(l);
    embed_backward();
  }

  template <class T>
  std::span<T> slice(T* buffer, std::string_view name) const {
    for (const auto& t : layout_.tensors)
      if (t.name == name) return std::span<T>(buffer + t.offset, static_cast<std::size_t>(t.size));
    xplor::detail::fail("xplor::model::transformer::param", "no tensor named '", name, "'");
  }

  void resize_activations(std::int64_t B, std::int64_t T) {
    if (act_.B == B && act_.T == T) return;
    const std::int64_t N = B * T, C = cfg_.d_model, F = cfg_.d_ff, V = cfg_.vocab_size, H = cfg_.n_heads;
    const auto L = static_cast<std::size_t>(cfg_.n_layers);
    auto per_layer = [&](std::vector<std::vector<float>>& v, std::int64_t size) {
      v.assign(L, std::vector<float>(static_cast<std::size_t>(size)));
    };
    act_.residual.assign(L + 1, std::vector<float>(static_cast<std::size_t>(N * C)));
    per_layer(act_.norm1, N * C);
    per_layer(act_.mean1, N);
    per_layer(act_.rstd1, N);
    per_layer(act_.qkv, N * 3 * C);
    per_layer(act_.att, B * H * T * T);
    per_layer(act_.att_y, N * C);
    per_layer(act_.mid, N * C);
    per_layer(act_.norm2, N * C);
    per_layer(act_.mean2, N);
    per_layer(act_.rstd2, N);
    per_layer(act_.mlp_a, N * F);
    per_layer(act_.mlp_b, cfg_.mlp == mlp_kind::swiglu ? N * F : 0);
    per_layer(act_.mlp_act, N * F);
    auto flat = [](std::vector<float>& v, std::int64_t size) {
      v.assign(static_cast<std::size_t>(size), 0.0f);
    };
    flat(act_.final_norm, N * C);
    flat(act_.final_mean, N);
    flat(act_.final_rstd, N);
    flat(act_.logits, N * V);
    flat(act_.dlogits, N * V);
    flat(act_.dx, N * C);
    flat(act_.dnorm, N * C);
    flat(act_.dmid, N * C);
    flat(act_.dqkv, N * 3 * C);
    flat(act_.datt_y, N * C);
    flat(act_.dmlp, N * F);
    flat(act_.dmlp_b, cfg_.mlp == mlp_kind::swiglu ? N * F : 0);
    flat(act_.datt, B * H * T * T);
    act_.lora_qkv.resize(L);
    act_.lora_out.resize(L);
    tokens_.resize(static_cast<std::size_t>(N));
    act_.B = B;
    act_.T = T;
  }

  // Building blocks shared by forward() and kv_decoder (rows = tokens, each with its position).

  /// out[n] = embed[token n] (+ pos_embed[position n]), or the next latent row for latent_slot.
  /// Returns the number of latent rows used.
  std::int64_t embed_rows(const std::int32_t* tokens, const std::int32_t* positions,
                          view2d<const float> latents, std::int64_t n_rows, float* out) const {
    const std::int64_t C = cfg_.d_model;
    std::int64_t next_latent = 0;
    for (std::int64_t n = 0; n < n_rows; ++n) {
      float* o = out + n * C;
      if (tokens[n] == latent_slot) {
        for (std::int64_t c = 0; c < C; ++c) o[c] = latents(next_latent, c);
        ++next_latent;
      } else {
        const float* e = p(layout_.embed) + std::int64_t{tokens[n]} * C;
        std::copy(e, e + C, o);
      }
      if (layout_.pos_embed >= 0) {
        const float* pe = p(layout_.pos_embed) + std::int64_t{positions[n]} * C;
        for (std::int64_t c = 0; c < C; ++c) o[c] += pe[c];
      }
    }
    return next_latent;
  }

  void norm_rows(const float* x, std::int64_t w_off, std::int64_t b_off, float* y, float* mean, float* rstd,
                 std::int64_t n_rows) const {
    rowwise::norm_forward(x, p(w_off), b_off >= 0 ? p(b_off) : nullptr, y, mean, rstd, n_rows, cfg_.d_model,
                          cfg_.norm_eps);
  }

  /// dx += d(norm)/dx^T dy per row (parallel); dw, db accumulated serially (no races).
  void norm_rows_backward(const float* x, std::int64_t w_off, std::int64_t b_off, const float* mean,
                          const float* rstd, const float* dy, float* dx, std::int64_t n_rows) {
    rowwise::norm_backward(x, p(w_off), b_off >= 0, mean, rstd, dy, dx, g(w_off),
                           b_off >= 0 ? g(b_off) : nullptr, n_rows, cfg_.d_model);
  }

  /// Rotates the q and k parts of qkv rows [n, 3C] at their positions (sign -1: inverse).
  void rope_rows(float* qkv, const std::int32_t* positions, std::int64_t n_rows, float sign) const {
    if (cfg_.positions != position_kind::rope) return;
    const int C = cfg_.d_model, D = cfg_.head_dim(), H = cfg_.n_heads, half = D / 2;
    for_each_index(
        cpu, n_rows,
        [&](std::int64_t n) {
          const float* cs = rope_cos_.data() + std::int64_t{positions[n]} * half;
          const float* sn = rope_sin_.data() + std::int64_t{positions[n]} * half;
          float* row = qkv + n * 3 * C;
          for (int h = 0; h < H; ++h) {
            layers::rope_rotate(row + h * D, cs, sn, D, sign);      // q
            layers::rope_rotate(row + C + h * D, cs, sn, D, sign);  // k
          }
        },
        2 * C);
  }

  rowwise::mlp_weights mlp_weights_of(int l) const {
    const layer_offsets& o = layout_.layers[l];
    return {o.mlp_gate >= 0 ? p(o.mlp_gate) : nullptr, p(o.mlp_up), p(o.mlp_down)};
  }

  /// norm2 -> MLP -> out += MLP output, for n rows. a, b, act are [n, F] workspaces.
  void mlp_forward(int l, const float* x_norm, float* a, float* b, float* act, float* out, std::int64_t n,
                   dense::forward_kernel kernel) const {
    rowwise::mlp_forward(cfg_.mlp, mlp_weights_of(l), x_norm, a, b, act, out, n, cfg_.d_model, cfg_.d_ff,
                         /*accumulate=*/true, kernel);
  }

  /// Causal self-attention of every (sequence b, head h): att = softmax(q k^T / sqrt(D)) masked,
  /// y = att v. q, k, v are read from qkv [N, 3C]; y is written into att_y [N, C].
  void attention_forward(const float* qkv, float* att, float* att_y, std::int64_t B, std::int64_t T) const {
    const std::int64_t C = cfg_.d_model, D = cfg_.head_dim(), H = cfg_.n_heads;
    dense::thread_independent_for(B * H, double(B * H) * double(T * T * D), [&](std::int64_t bh) {
      const std::int64_t b = bh / H, h = bh % H;
      const float* base = qkv + b * T * 3 * C + h * D;
      attention::head_forward(base, base + C, base + 2 * C, 3 * C, T, D, att + bh * T * T,
                              att_y + b * T * C + h * D, C);
    });
  }

  void block_forward(int l, std::int64_t B, std::int64_t T) {
    const layer_offsets& o = layout_.layers[l];
    const std::int64_t N = B * T, C = cfg_.d_model;
    const float* x = act_.residual[l].data();
    norm_rows(x, o.attn_norm_w, o.attn_norm_b, act_.norm1[l].data(), act_.mean1[l].data(),
              act_.rstd1[l].data(), N);
    dense::linear_forward(act_.norm1[l].data(), p(o.qkv), act_.qkv[l].data(), N, C, 3 * C, false, kernel_);
    if (has_lora_)
      lora_forward(lora_, l, lora_site::qkv, act_.norm1[l].data(), N, act_.qkv[l].data(), &act_.lora_qkv[l]);
    rope_rows(act_.qkv[l].data(), positions_.data(), N, 1.0f);
    attention_forward(act_.qkv[l].data(), act_.att[l].data(), act_.att_y[l].data(), B, T);
    float* mid = act_.mid[l].data();
    std::copy(x, x + N * C, mid);
    dense::linear_forward(act_.att_y[l].data(), p(o.attn_out), mid, N, C, C, /*accumulate=*/true, kernel_);
    if (has_lora_) lora_forward(lora_, l, lora_site::out, act_.att_y[l].data(), N, mid, &act_.lora_out[l]);
    norm_rows(mid, o.mlp_norm_w, o.mlp_norm_b, act_.norm2[l].data(), act_.mean2[l].data(),
              act_.rstd2[l].data(), N);
    float* out = act_.residual[l + 1].data();
    std::copy(mid, mid + N * C, out);
    mlp_forward(l, act_.norm2[l].data(), act_.mlp_a[l].data(), act_.mlp_b[l].data(), act_.mlp_act[l].data(),
                out, N, kernel_);
  }

  /// Backward of block l: on entry act_.dx holds dL/d(output of block l); on exit dL/d(input).
  void block_backward(int l) {
    const layer_offsets& o = layout_.layers[l];
    const std::int64_t B = act_.B, T = act_.T, N = B * T, C = cfg_.d_model, F = cfg_.d_ff, H = cfg_.n_heads,
                       D = cfg_.head_dim();
    float* dx = act_.dx.data();
    // MLP: out = mid + down(act).
    std::fill(act_.dnorm.begin(), act_.dnorm.end(), 0.0f);
    rowwise::mlp_backward(
        cfg_.mlp, mlp_weights_of(l), {o.mlp_gate >= 0 ? g(o.mlp_gate) : nullptr, g(o.mlp_up), g(o.mlp_down)},
        act_.norm2[l].data(), act_.mlp_a[l].data(), act_.mlp_b[l].data(), act_.mlp_act[l].data(), dx,
        act_.dmlp.data(), act_.dmlp_b.data(), act_.dnorm.data(), N, C, F);
    // dmid = dx (residual) + norm2 backward.
    float* dmid = act_.dmid.data();
    std::copy(dx, dx + N * C, dmid);
    norm_rows_backward(act_.mid[l].data(), o.mlp_norm_w, o.mlp_norm_b, act_.mean2[l].data(),
                       act_.rstd2[l].data(), act_.dnorm.data(), dmid, N);
    // Attention output projection: mid = x + out(att_y).
    std::fill(act_.datt_y.begin(), act_.datt_y.end(), 0.0f);
    dense::linear_backward(act_.att_y[l].data(), p(o.attn_out), dmid, act_.datt_y.data(), g(o.attn_out), N, C,
                           C);
    if (has_lora_)
      lora_backward(lora_, l, lora_site::out, act_.att_y[l].data(), dmid, N, act_.datt_y.data(),
                    act_.lora_out[l]);
    // Attention core, per (b, h).
    const float* qkv = act_.qkv[l].data();
    float* dqkv = act_.dqkv.data();
    dense::thread_independent_for(B * H, double(B * H) * double(T * T * D), [&](std::int64_t bh) {
      const std::int64_t b = bh / H, h = bh % H;
      const float* base = qkv + b * T * 3 * C + h * D;
      float* dbase = dqkv + b * T * 3 * C + h * D;
      attention::head_backward(base, base + C, base + 2 * C, 3 * C, act_.att[l].data() + bh * T * T,
                               act_.datt_y.data() + b * T * C + h * D, C, T, D, act_.datt.data() + bh * T * T,
                               dbase, dbase + C, dbase + 2 * C, 3 * C);
    });
    rope_rows(dqkv, positions_.data(), N, -1.0f);
    std::fill(act_.dnorm.begin(), act_.dnorm.end(), 0.0f);
    dense::linear_backward(act_.norm1[l].data(), p(o.qkv), dqkv, act_.dnorm.data(), g(o.qkv), N, C, 3 * C);
    if (has_lora_)
      lora_backward(lora_, l, lora_site::qkv, act_.norm1[l].data(), dqkv, N, act_.dnorm.data(),
                    act_.lora_qkv[l]);
    // dx = dmid (residual) + norm1 backward.
    std::copy(dmid, dmid + N * C, dx);
    norm_rows_backward(act_.residual[l].data(), o.attn_norm_w, o.attn_norm_b, act_.mean1[l].data(),
                       act_.rstd1[l].data(), act_.dnorm.data(), dx, N);
  }

  /// Scatters dL/d(embeddings) into the token (and position) embedding gradients; latent rows go
  /// to latent_grads_.
  void embed_backward() {
    const std::int64_t N = rows(), C = cfg_.d_model;
    latent_grads_.assign(static_cast<std::size_t>(n_latents_ * C), 0.0f);
    std::int64_t next_latent = 0;
    for (std::int64_t n = 0; n < N; ++n) {
      const float* d = act_.dx.data() + n * C;
      float* dst = tokens_[n] == latent_slot ? latent_grads_.data() + (next_latent++) * C
                   : frozen_                 ? nullptr
                                             : g(layout_.embed) + std::int64_t{tokens_[n]} * C;
      if (dst != nullptr)
        for (std::int64_t c = 0; c < C; ++c) dst[c] += d[c];
      if (layout_.pos_embed >= 0 && !frozen_) {
        float* dp = g(layout_.pos_embed) + std::int64_t{positions_[n]} * C;
        for (std::int64_t c = 0; c < C; ++c) dp[c] += d[c];
      }
    }
  }

  transformer_config cfg_;
  parameter_layout layout_;
  std::vector<float> params_;
  std::vector<float> grads_;
  std::vector<float> rope_cos_, rope_sin_;  // (max_seq_len, D/2)
  activations act_;
  std::vector<std::int32_t> tokens_, positions_;
  target_scores scores_;
  std::int64_t n_latents_ = 0;
  std::vector<float> latent_grads_;
  bool has_logits_ = false, frozen_ = false, has_lora_ = false;
  lora_weights lora_;
  dense::forward_kernel kernel_ = training_forward_kernel;
};

}  // namespace xplor::model
