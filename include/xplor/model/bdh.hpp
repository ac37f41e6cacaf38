// The Dragon Hatchling, BDH-GPU (Kosowski et al., "The Dragon Hatchling: The Missing Link between
// the Transformer and Models of the Brain", arXiv 2509.26507; code github.com/pathwaycom/bdh) on
// the CPU: one set of weights shared by every layer, sparse positive neuron activations, strictly
// causal linear attention without softmax, LayerNorm without affine parameters. The parallel form
// with a hand-written backward for training; the recurrent form (a fixed-size state per layer and
// head) decodes in bdh_decode.hpp, checkpoints are in bdh_checkpoint.hpp.
//
// Shapes: B batch, T sequence length, R = B * T rows, D = n_embd, H = n_head, N neurons per head
// (mlp_internal_dim_multiplier * D / H), L = n_layer, V = vocab_size. Per layer, from x (R, D):
//   xs = relu(x @ encoder[h]) per head (R, H N)      QR = rope(xs), K = Q, V = x
//   a  = tril(QR QR^T, -1) @ x per (b, h) (R, H D)     ys = relu(LN(a) @ encoder_v[h]) (R, H N)
//   xy = dropout(xs * ys)                            x  <- LN(x + LN(xy @ decoder))
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/core/random.hpp"
#include "xplor/core/view.hpp"
#include "xplor/model/config.hpp"
#include "xplor/model/dense.hpp"
#include "xplor/model/rowwise.hpp"
#include "xplor/model/transformer.hpp"

namespace xplor::model {

class bdh_decoder;

/// The authors' BDHConfig, with their defaults (bdh.py), plus the initialisation scale and the
/// LayerNorm epsilon they take from PyTorch's defaults.
struct bdh_config {
  int n_layer = 6;
  int n_embd = 256;                       // D
  int n_head = 4;                         // H
  int mlp_internal_dim_multiplier = 128;  // N = multiplier * D / H neurons per head
  int vocab_size = 256;                   // bytes
  float dropout = 0.1f;                   // on xs * ys, in training mode only
  float init_std = 0.02f;                 // every parameter N(0, 0.02), as bdh.py
  float norm_eps = 1e-5f;                 // nn.LayerNorm's default

  /// N, the neurons per head.
  std::int64_t neurons() const {
    return std::int64_t{mlp_internal_dim_multiplier} * n_embd / std::max(n_head, 1);
  }

  /// Throws xplor::error naming the first invalid field.
  void validate() const {
    constexpr const char* fn = "xplor::model::bdh_config";
    xplor::detail::require(n_layer > 0, fn, "n_layer = ", n_layer, " must be positive");
    xplor::detail::require(n_embd > 0, fn, "n_embd = ", n_embd, " must be positive");
    xplor::detail::require(n_head > 0, fn, "n_head = ", n_head, " must be positive");
    xplor::detail::require(mlp_internal_dim_multiplier > 0, fn,
                           "mlp_internal_dim_multiplier = ", mlp_internal_dim_multiplier,
                           " must be positive");
    xplor::detail::require(vocab_size > 0, fn, "vocab_size = ", vocab_size, " must be positive");
    const std::int64_t md = std::int64_t{mlp_internal_dim_multiplier} * n_embd;
    xplor::detail::require(md % n_head == 0, fn, "n_head = ", n_head,
                           " must divide mlp_internal_dim_multiplier x n_embd = ", md);
    // RoPE rotates channel pairs (2i, 2i + 1): bdh.py's view() fails on an odd N.
    xplor::detail::require(neurons() % 2 == 0, fn,
                           "the neurons per head, mlp_internal_dim_multiplier x n_embd / ",
                           "n_head = ", neurons(), ", must be even (RoPE rotates pairs)");
    xplor::detail::require(std::isfinite(dropout) && dropout >= 0.0f && dropout < 1.0f, fn,
                           "dropout = ", dropout, " is outside [0, 1)");
    xplor::detail::require(std::isfinite(init_std) && init_std > 0.0f, fn, "init_std = ", init_std,
                           " must be finite and positive");
    xplor::detail::require(std::isfinite(norm_eps) && norm_eps > 0.0f, fn, "norm_eps = ", norm_eps,
                           " must be finite and positive");
  }
};

inline bool operator==(const bdh_config& a, const bdh_config& b) {
  return a.n_layer == b.n_layer && a.n_embd == b.n_embd && a.n_head == b.n_head &&
         a.mlp_internal_dim_multiplier == b.mlp_internal_dim_multiplier && a.vocab_size == b.vocab_size &&
         a.dropout == b.dropout && a.init_std == b.init_std && a.norm_eps == b.norm_eps;
}

/// Offsets of BDH's five tensors in its parameter buffer (in state_dict() order).
struct bdh_offsets {
  std::int64_t decoder = -1;    // (H N, D)  "decoder"
  std::int64_t encoder = -1;    // (H, D, N) "encoder"
  std::int64_t encoder_v = -1;  // (H, D, N) "encoder_v"
  std::int64_t lm_head = -1;    // (D, V)    "lm_head"
  std::int64_t embed = -1;      // (V, D)    "embed.weight"
};

/// The parameter table of `c`, named as the authors' module's state_dict() (every tensor decayed,
/// as their train.py hands model.parameters() to AdamW).
inline parameter_layout bdh_layout(const bdh_config& c, bdh_offsets* offsets = nullptr) {
  c.validate();
  const std::int64_t D = c.n_embd, H = c.n_head, N = c.neurons(), V = c.vocab_size;
  parameter_layout t;
  bdh_offsets o;
  o.decoder = t.add("decoder", {H * N, D}, true);
  o.encoder = t.add("encoder", {H, D, N}, true);
  o.encoder_v = t.add("encoder_v", {H, D, N}, true);
  o.lm_head = t.add("lm_head", {D, V}, true);
  o.embed = t.add("embed.weight", {V, D}, true);
  if (offsets != nullptr) *offsets = o;
  return t;
}

/// BDH with the transformer's width, layers, heads and vocabulary and about its parameter count:
/// BDH holds 3 M D^2 + 2 V D parameters (encoder, encoder_v and decoder shared by every layer;
/// untied embedding and head), so `multiplier` 0 picks the M whose count is nearest
/// parameter_layout(t).total among those giving an even number of neurons per head. Dropout is
/// 0 (the transformer has none); the rest are the authors' defaults.
inline bdh_config bdh_matching(const transformer_config& t, int multiplier = 0) {
  t.validate();
  bdh_config c;
  c.vocab_size = t.vocab_size;
  c.n_embd = t.d_model;
  c.n_layer = t.n_layers;
  c.n_head = t.n_heads;
  c.dropout = 0.0f;
  const auto valid = [&c](int m) {
    c.mlp_internal_dim_multiplier = m;
    return (std::int64_t{m} * c.n_embd) % c.n_head == 0 && c.neurons() % 2 == 0;
  };
  if (multiplier != 0) {
    xplor::detail::require(multiplier > 0 && valid(multiplier), "xplor::model::bdh_matching",
                           "multiplier = ", multiplier, " with d_model = ", t.d_model,
                           " and n_heads = ", t.n_heads, " gives no even, whole number of neurons per head");
    c.validate();
    return c;
  }
  const std::int64_t target = parameter_layout(t).total;
  int best = 0;
  std::int64_t best_gap = 0;
  for (int m = 1; m <= 4096; ++m) {
    if (!valid(m)) continue;
    const std::int64_t total =
        3 * std::int64_t{m} * c.n_embd * c.n_embd + 2 * std::int64_t{c.vocab_size} * c.n_embd;
    const std::int64_t gap = total > target ? total - target : target - total;
    if (best == 0 || gap < best_gap) best = m, best_gap = gap;
  }
  c.mlp_internal_dim_multiplier = best;
  c.validate();
  return c;
}

/// RoPE frequencies of bdh.py's get_freqs(N, theta = 2^16) in float32, as fractions of a turn:
/// f_n = theta^(-2 floor(n / 2) / N) / (2 pi), equal within each channel pair (2i, 2i + 1).
inline std::vector<float> bdh_rope_freqs(std::int64_t N) {
  std::vector<float> f(static_cast<std::size_t>(N));
  const auto two_pi = static_cast<float>(2.0 * std::numbers::pi);
  for (std::int64_t n = 0; n < N; ++n) {
    const float exponent = static_cast<float>(n / 2 * 2) / static_cast<float>(N);
    f[n] = (1.0f / std::pow(65536.0f, exponent)) / two_pi;
  }
  return f;
}

/// cos and sin of the rotation of pair i at `position` (N / 2 each): the phase position * f_2i is
/// taken mod 1 (a turn) in float32 before it becomes an angle, as bdh.py's phases_cos_sin.
inline void bdh_rope_angles(std::int64_t position, std::span<const float> freqs, float* cos_out,
                            float* sin_out) {
  const auto two_pi = static_cast<float>(2.0 * std::numbers::pi);
  const std::size_t pairs = freqs.size() / 2;
  for (std::size_t i = 0; i < pairs; ++i) {
    float phase = static_cast<float>(position) * freqs[2 * i];
    phase = phase - std::floor(phase);
    const float angle = phase * two_pi;
    cos_out[i] = std::cos(angle);
    sin_out[i] = std::sin(angle);
  }
}

/// out = rope(v) for one row of N: (out_2i, out_2i+1) = (v_2i c - v_2i+1 s, v_2i+1 c + v_2i s).
inline void bdh_rope_row(const float* v, const float* cs, const float* sn, float* out, std::int64_t N) {
  for (std::int64_t i = 0; i < N / 2; ++i) {
    const float a = v[2 * i], b = v[2 * i + 1], c = cs[i], s = sn[i];
    out[2 * i] = a * c + (-b) * s;
    out[2 * i + 1] = b * c + a * s;
  }
}

/// dv += rope^T(dout) for one row (the inverse rotation).
inline void bdh_rope_row_backward(const float* dout, const float* cs, const float* sn, float* dv,
                                  std::int64_t N) {
  for (std::int64_t i = 0; i < N / 2; ++i) {
    const float a = dout[2 * i], b = dout[2 * i + 1], c = cs[i], s = sn[i];
    dv[2 * i] += a * c + b * s;
    dv[2 * i + 1] += b * c - a * s;
  }
}

/// Dense products on row-major buffers with leading dimensions, on the transformer's kernels
/// (every element one fixed-order sum: the same bits on any thread count).
namespace bdh_ops {
/// C[M, N] += A[M, K] B[K, N].
inline void mm(const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float* c, std::int64_t ldc,
               std::int64_t M, std::int64_t N, std::int64_t K) {
  dense::outer_products(a, lda, 1, b, ldb, c, ldc, M, N, K);
}
/// C[M, N] += A^T B for A stored [K, M].
inline void mm_tn(const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float* c,
                  std::int64_t ldc, std::int64_t M, std::int64_t N, std::int64_t K) {
  dense::outer_products(a, 1, lda, b, ldb, c, ldc, M, N, K);
}
/// C[M, N] (+)= A B^T for A [M, K], B stored [N, K]; tasks of 64 output columns.
inline void mm_nt(const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float* c,
                  std::int64_t ldc, std::int64_t M, std::int64_t N, std::int64_t K, bool accumulate) {
  constexpr std::int64_t block = 64;
  dense::thread_independent_for((N + block - 1) / block, double(M) * double(N) * double(K),
                                [&](std::int64_t t) {
                                  const std::int64_t j0 = t * block;
                                  dense::dot_products(a, lda, b + j0 * ldb, ldb, K, c + j0, ldc, M,
                                                      std::min(block, N - j0), accumulate);
                                });
}
}  // namespace bdh_ops

/// Fraction of active (positive) neurons, per layer and row, of the last forward: x_active for
/// x_sparse = relu(x encoder), y_active for y_sparse = relu(LN(a) encoder_v), each over the
/// H N neurons of a token (the paper's sparsity measure, Section 6).
struct bdh_activity {
  std::int64_t layers = 0, rows = 0;
  std::vector<float> x_active, y_active;  // [layers, rows]

  float x(int layer, std::int64_t row) const {
    return x_active[static_cast<std::size_t>(layer * rows + row)];
  }
  float y(int layer, std::int64_t row) const {
    return y_active[static_cast<std::size_t>(layer * rows + row)];
  }
  /// Mean over the rows of a layer.
  float x_mean(int layer) const { return mean(x_active, layer); }
  float y_mean(int layer) const { return mean(y_active, layer); }

 private:
  float mean(const std::vector<float>& v, int layer) const {
    xplor::detail::require(layer >= 0 && layer < layers, "xplor::model::bdh_activity", "layer = ", layer,
                           " is outside [0, ", layers, ")");
    double s = 0.0;
    for (std::int64_t r = 0; r < rows; ++r) s += v[static_cast<std::size_t>(layer * rows + r)];
    return rows > 0 ? static_cast<float>(s / double(rows)) : 0.0f;
  }
};

class bdh {
 public:
  /// A model with parameters drawn from `seed`: N(0, init_std), one Philox stream per tensor.
  explicit bdh(const bdh_config& config, std::uint64_t seed = 0)
      : cfg_(config), layout_(bdh_layout(config, &o_)), freqs_(bdh_rope_freqs(config.neurons())) {
    params_.assign(static_cast<std::size_t>(layout_.total), 0.0f);
    grads_.assign(params_.size(), 0.0f);
    for (std::size_t k = 0; k < layout_.tensors.size(); ++k) {
      const tensor_slot& t = layout_.tensors[k];
      philox_stream gen(seed, k);
      float* dst = params_.data() + t.offset;
      for (std::int64_t i = 0; i + 1 < t.size; i += 2) {
        const auto z = gen.normal_pair();
        dst[i] = cfg_.init_std * z[0];
        dst[i + 1] = cfg_.init_std * z[1];
      }
      if (t.size % 2 == 1) dst[t.size - 1] = cfg_.init_std * gen.normal();
    }
    ones_.assign(static_cast<std::size_t>(cfg_.n_embd), 1.0f);
    zeros_.assign(ones_.size(), 0.0f);
  }

  const bdh_config& config() const { return cfg_; }
  const parameter_layout& layout() const { return layout_; }
  const bdh_offsets& offsets() const { return o_; }
  std::span<float> params() { return params_; }
  std::span<const float> params() const { return params_; }
  std::span<float> grads() { return grads_; }
  std::span<const float> grads() const { return grads_; }
  std::int64_t num_params() const { return layout_.total; }
  /// The float32 RoPE frequencies (the authors' attn.freqs buffer), N of them.
  std::span<const float> rope_freqs() const { return freqs_; }

  /// The named tensor's slice ("decoder", "encoder", "encoder_v", "lm_head", "embed.weight").
  std::span<float> param(std::string_view name) { return slice(params_.data(), name); }
  std::span<const float> param(std::string_view name) const { return slice(params_.data(), name); }
  std::span<float> grad(std::string_view name) { return slice(grads_.data(), name); }

  void zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

  /// Training mode applies dropout (config().dropout) to xs * ys: element i of layer l in forward
  /// call k is kept with probability 1 - p and scaled by 1 / (1 - p), decided by Philox keyed by
  /// (seed, k L + l). k counts forward calls in training mode from 0 (set_dropout_call replays one).
  void train(bool on, std::uint64_t seed = 0) {
    training_ = on;
    dropout_seed_ = seed;
    dropout_call_ = 0;
  }
  bool training() const { return training_; }
  void set_dropout_call(std::uint64_t k) { dropout_call_ = k; }

  // -------------------------------------------------------------------------------------------
  // Forward

  /// Runs the model over `batch` (B sequences of T tokens, any T > 0: positions are unbounded);
  /// returns the weighted mean cross-entropy over the targets (0 when there are none). Keeps the
  /// activations for backward(), logits(), residual() and activity(). latent_slot positions take
  /// rows of batch.latents [n, D] as embeddings (before the first LayerNorm).
  float forward(const forward_batch& batch, const forward_hooks& hooks = {}) {
    constexpr const char* fn = "xplor::model::bdh::forward";
    validate(batch, fn);
    const std::int64_t B = batch.batch, T = batch.seq_len, R = B * T, D = cfg_.n_embd, V = cfg_.vocab_size;
    resize(B, T);
    std::copy(batch.tokens.begin(), batch.tokens.end(), tokens_.begin());
    scores_.set(batch);
    n_latents_ = embed_rows(tokens_.data(), batch.latents, R, emb_.data());
    norm(emb_.data(), res_[0].data(), emb_mean_.data(), emb_rstd_.data(), R);
    const std::int64_t half = cfg_.neurons() / 2;
    rope_cos_.resize(static_cast<std::size_t>(T * half));
    rope_sin_.resize(rope_cos_.size());
    for (std::int64_t t = 0; t < T; ++t)
      bdh_rope_angles(t, freqs_, rope_cos_.data() + t * half, rope_sin_.data() + t * half);
    const bool drop = training_ && cfg_.dropout > 0.0f;
    for (int l = 0; l < cfg_.n_layer; ++l) {
      if (drop) draw_mask(l);
      layer_forward(l, drop);
      if (hooks.after_block) hooks.after_block(l, view2d<float>(res_[l + 1].data(), {R, D}, {D, 1}));
    }
    if (drop) ++dropout_call_;
    dropped_ = drop;
    std::fill(logits_.begin(), logits_.end(), 0.0f);
    bdh_ops::mm(res_[cfg_.n_layer].data(), D, p(o_.lm_head), V, logits_.data(), V, R, V, D);
    return scores_.score(logits_.data(), V);
  }

  /// Logits [R, V] of the last forward.
  view2d<const float> logits() const {
    return make_view(logits_.data(), {rows(), std::int64_t{cfg_.vocab_size}});
  }
  /// log p(target) [R] of the last forward (0 where the target is ignore_target).
  std::span<const float> target_logprobs() const {
    return std::span<const float>(scores_.logp.data(), static_cast<std::size_t>(rows()));
  }
  /// The residual x [R, D] entering layer `layer` of the last forward (0: LN of the embeddings;
  /// n_layer: what lm_head reads; every one is LayerNorm-ed, so lens_logits applies to any).
  view2d<const float> residual(int layer) const {
    constexpr const char* fn = "xplor::model::bdh::residual";
    xplor::detail::require(layer >= 0 && layer <= cfg_.n_layer, fn, "layer = ", layer, " is outside [0, ",
                           cfg_.n_layer, "]");
    xplor::detail::require(rows() > 0, fn, "the model has not run a forward pass");
    return make_view(res_[layer].data(), {rows(), std::int64_t{cfg_.n_embd}});
  }
  /// Logit-lens logits [n, V] of residual rows [n, D]: rows @ lm_head, the model's own head (BDH
  /// has no final norm; every residual is already normalised).
  std::vector<float> lens_logits(view2d<const float> residual) const {
    const std::int64_t n = residual.rows(), D = cfg_.n_embd, V = cfg_.vocab_size;
    xplor::detail::require(residual.cols() == D, "xplor::model::bdh::lens_logits", "residual has ",
                           residual.cols(), " columns, n_embd = ", D);
    std::vector<float> x(static_cast<std::size_t>(n * D)), out(static_cast<std::size_t>(n * V), 0.0f);
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t c = 0; c < D; ++c) x[r * D + c] = residual(r, c);
    if (n > 0) bdh_ops::mm(x.data(), D, p(o_.lm_head), V, out.data(), V, n, V, D);
    return out;
  }

  /// Fraction of active neurons per layer and row of the last forward.
  bdh_activity activity() const {
    const std::int64_t R = rows(), HN = cfg_.n_head * cfg_.neurons();
    bdh_activity a;
    a.layers = cfg_.n_layer;
    a.rows = R;
    a.x_active.resize(static_cast<std::size_t>(cfg_.n_layer * R));
    a.y_active.resize(a.x_active.size());
    for (int l = 0; l < cfg_.n_layer; ++l)
      for (std::int64_t r = 0; r < R; ++r) {
        std::int64_t nx = 0, ny = 0;
        for (std::int64_t i = 0; i < HN; ++i) {
          nx += xs_[l][r * HN + i] > 0.0f;
          ny += ys_[l][r * HN + i] > 0.0f;
        }
        a.x_active[l * R + r] = static_cast<float>(double(nx) / double(HN));
        a.y_active[l * R + r] = static_cast<float>(double(ny) / double(HN));
      }
    return a;
  }

  // -------------------------------------------------------------------------------------------
  // Backward

  /// Accumulates into grads() the gradient of loss_scale x the last forward's loss.
  void backward(float loss_scale = 1.0f) {
    const std::vector<float> dlogp = cross_entropy_dlogp(scores_.weights, scores_.loss_weight, loss_scale);
    backward(std::span<const float>(dlogp));
  }

  /// Accumulates into grads() the gradient of sum_n dlogp[n] log p(target_n) (policy losses).
  void backward(std::span<const float> dlogp) {
    constexpr const char* fn = "xplor::model::bdh::backward";
    scores_.check(dlogp, fn);
    const std::int64_t R = rows(), D = cfg_.n_embd, V = cfg_.vocab_size;
    scores_.logit_grads(logits_.data(), dlogp, dlogits_.data(), V);
    std::fill(dres_.begin(), dres_.end(), 0.0f);
    bdh_ops::mm_nt(dlogits_.data(), V, p(o_.lm_head), V, dres_.data(), D, R, D, V, false);
    bdh_ops::mm_tn(res_[cfg_.n_layer].data(), D, dlogits_.data(), V, g(o_.lm_head), V, D, V, R);
    for (int l = cfg_.n_layer - 1; l >= 0; --l) layer_backward(l);
    // Embedding LayerNorm, then the rows of the embedding table (or the latents).
    std::fill(dx_.begin(), dx_.end(), 0.0f);
    norm_backward(emb_.data(), emb_mean_.data(), emb_rstd_.data(), dres_.data(), dx_.data(), R);
    latent_grads_.assign(static_cast<std::size_t>(n_latents_ * D), 0.0f);
    std::int64_t next_latent = 0;
    for (std::int64_t r = 0; r < R; ++r) {
      float* dst = tokens_[r] == latent_slot ? latent_grads_.data() + (next_latent++) * D
                                             : g(o_.embed) + std::int64_t{tokens_[r]} * D;
      for (std::int64_t c = 0; c < D; ++c) dst[c] += dx_[r * D + c];
    }
  }

  /// Gradient [n_latents, D] with respect to the latent rows of the last forward.
  view2d<const float> latent_grads() const {
    return make_view(latent_grads_.data(), {n_latents_, std::int64_t{cfg_.n_embd}});
  }

 private:
  friend class bdh_decoder;

  float* p(std::int64_t offset) { return params_.data() + offset; }
  const float* p(std::int64_t offset) const { return params_.data() + offset; }
  float* g(std::int64_t offset) { return grads_.data() + offset; }
  std::int64_t rows() const { return B_ * T_; }

  template <class T>
  std::span<T> slice(T* buffer, std::string_view name) const {
    for (const auto& t : layout_.tensors)
      if (t.name == name) return std::span<T>(buffer + t.offset, static_cast<std::size_t>(t.size));
    xplor::detail::fail("xplor::model::bdh::param", "no tensor named '", name, "'");
  }

  void validate(const forward_batch& b, const char* fn) const {
    xplor::detail::require(b.batch > 0, fn, "batch = ", b.batch, " must be positive");
    xplor::detail::require(b.seq_len > 0, fn, "seq_len = ", b.seq_len, " must be positive");
    // validate_batch's checks, with no max_seq_len (BDH's positions are unbounded).
    transformer_config tc;
    tc.vocab_size = cfg_.vocab_size;
    tc.d_model = cfg_.n_embd;
    tc.max_seq_len = static_cast<int>(std::min<std::int64_t>(b.seq_len, std::int64_t{1} << 30));
    validate_batch(tc, b, fn);
  }

  /// LayerNorm without affine parameters over n rows of D.
  void norm(const float* x, float* y, float* mean, float* rstd, std::int64_t n) const {
    rowwise::norm_forward(x, ones_.data(), zeros_.data(), y, mean, rstd, n, cfg_.n_embd, cfg_.norm_eps);
  }
  /// dx += LN'(x)^T dy over n rows.
  void norm_backward(const float* x, const float* mean, const float* rstd, const float* dy, float* dx,
                     std::int64_t n) const {
    rowwise::norm_backward(x, ones_.data(), true, mean, rstd, dy, dx, nullptr, nullptr, n, cfg_.n_embd);
  }

  /// out[r] = embed[token r], or the next latent row for latent_slot; returns the latents used.
  std::int64_t embed_rows(const std::int32_t* tokens, view2d<const float> latents, std::int64_t n,
                          float* out) const {
    const std::int64_t D = cfg_.n_embd;
    std::int64_t next = 0;
    for (std::int64_t r = 0; r < n; ++r) {
      float* o = out + r * D;
      if (tokens[r] == latent_slot) {
        for (std::int64_t c = 0; c < D; ++c) o[c] = latents(next, c);
        ++next;
      } else {
        const float* e = p(o_.embed) + std::int64_t{tokens[r]} * D;
        std::copy(e, e + D, o);
      }
    }
    return next;
  }

  /// xs [n, H N] = relu(x @ encoder[h]) per head (or ys from yn [n, H D] with encoder_v).
  void encode(const float* in, std::int64_t ld_in, std::int64_t head_stride, std::int64_t weights, float* out,
              std::int64_t n) const {
    const std::int64_t D = cfg_.n_embd, H = cfg_.n_head, N = cfg_.neurons();
    std::fill(out, out + n * H * N, 0.0f);
    for (std::int64_t h = 0; h < H; ++h)
      bdh_ops::mm(in + h * head_stride, ld_in, p(weights) + h * D * N, N, out + h * N, H * N, n, N, D);
    for_each_index(cpu, n * H * N, [&](std::int64_t i) { out[i] = std::max(out[i], 0.0f); });
  }

  /// The rest of a layer after the attention output a [n, H D]: yn = LN(a) (stats kept), ys,
  /// xy = xs * ys (* mask), ymlp = xy @ decoder (+ stats), s = x + LN(ymlp) (+ stats), out = LN(s).
  struct tail_buffers {
    float *a, *a_mean, *a_rstd, *yn, *ys, *xy, *ymlp, *ymlp_mean, *ymlp_rstd, *y, *s, *s_mean, *s_rstd, *out;
  };
  void layer_tail(const float* x, const float* xs, const float* mask, const tail_buffers& b,
                  std::int64_t n) const {
    const std::int64_t D = cfg_.n_embd, H = cfg_.n_head, N = cfg_.neurons(), HN = H * N;
    norm(b.a, b.yn, b.a_mean, b.a_rstd, n * H);
    encode(b.yn, H * D, D, o_.encoder_v, b.ys, n);
    for_each_index(cpu, n * HN, [&](std::int64_t i) {
      b.xy[i] = mask != nullptr ? xs[i] * b.ys[i] * mask[i] : xs[i] * b.ys[i];
    });
    std::fill(b.ymlp, b.ymlp + n * D, 0.0f);
    bdh_ops::mm(b.xy, HN, p(o_.decoder), D, b.ymlp, D, n, D, HN);
    norm(b.ymlp, b.y, b.ymlp_mean, b.ymlp_rstd, n);
    for_each_index(cpu, n * D, [&](std::int64_t i) { b.s[i] = x[i] + b.y[i]; });
    norm(b.s, b.out, b.s_mean, b.s_rstd, n);
  }

  void resize(std::int64_t B, std::int64_t T) {
    if (B == B_ && T == T_) return;
    const std::int64_t R = B * T, D = cfg_.n_embd, H = cfg_.n_head, N = cfg_.neurons(), V = cfg_.vocab_size;
    const auto L = static_cast<std::size_t>(cfg_.n_layer);
    auto per_layer = [&](std::vector<std::vector<float>>& v, std::int64_t size, std::size_t count) {
      v.assign(count, std::vector<float>(static_cast<std::size_t>(size), 0.0f));
    };
    per_layer(res_, R * D, L + 1);
    per_layer(xs_, R * H * N, L);
    per_layer(qr_, R * H * N, L);
    per_layer(att_, B * H * T * T, L);
    per_layer(a_, R * H * D, L);
    per_layer(a_mean_, R * H, L);
    per_layer(a_rstd_, R * H, L);
    per_layer(yn_, R * H * D, L);
    per_layer(ys_, R * H * N, L);
    per_layer(ymlp_, R * D, L);
    per_layer(ymlp_mean_, R, L);
    per_layer(ymlp_rstd_, R, L);
    per_layer(s_, R * D, L);
    per_layer(s_mean_, R, L);
    per_layer(s_rstd_, R, L);
    mask_.assign(L, {});
    auto flat = [](std::vector<float>& v, std::int64_t size) {
      v.assign(static_cast<std::size_t>(size), 0.0f);
    };
    flat(emb_, R * D);
    flat(emb_mean_, R);
    flat(emb_rstd_, R);
    flat(logits_, R * V);
    flat(dlogits_, R * V);
    flat(xy_, R * H * N);
    flat(y_, R * D);
    flat(dres_, R * D);
    flat(dx_, R * D);
    flat(dymlp_, R * D);
    flat(dxy_, R * H * N);
    flat(dxs_, R * H * N);
    flat(dys_, R * H * N);
    flat(dyn_, R * H * D);
    flat(da_, R * H * D);
    flat(dv_, R * H * D);
    flat(datt_, B * H * T * T);
    tokens_.assign(static_cast<std::size_t>(R), 0);
    B_ = B;
    T_ = T;
  }

  void draw_mask(int l) {
    const std::int64_t n = rows() * cfg_.n_head * cfg_.neurons();
    auto& m = mask_[static_cast<std::size_t>(l)];
    m.resize(static_cast<std::size_t>(n));
    philox_stream gen(dropout_seed_, dropout_call_ * static_cast<std::uint64_t>(cfg_.n_layer) +
                                         static_cast<std::uint64_t>(l));
    const float keep = 1.0f / (1.0f - cfg_.dropout);
    for (std::int64_t i = 0; i < n; ++i) m[i] = gen.uniform() < cfg_.dropout ? 0.0f : keep;
  }

  void layer_forward(int l, bool drop) {
    const std::int64_t B = B_, T = T_, R = B * T, D = cfg_.n_embd, H = cfg_.n_head, N = cfg_.neurons(),
                       HN = H * N, HD = H * D, half = N / 2;
    const float* x = res_[l].data();
    float* xs = xs_[l].data();
    float* qr = qr_[l].data();
    encode(x, D, 0, o_.encoder, xs, R);
    for_each_index(
        cpu, R * H,
        [&](std::int64_t rh) {
          const std::int64_t r = rh / H, h = rh % H, t = r % T;
          bdh_rope_row(xs + r * HN + h * N, rope_cos_.data() + t * half, rope_sin_.data() + t * half,
                       qr + r * HN + h * N, N);
        },
        N);
    float* a = a_[l].data();
    std::fill(a, a + R * HD, 0.0f);
    dense::thread_independent_for(B * H, double(B * H) * double(T * T) * double(N + D), [&](std::int64_t bh) {
      const std::int64_t b = bh / H, h = bh % H;
      const float* q = qr + b * T * HN + h * N;
      float* s = att_[l].data() + bh * T * T;
      std::fill(s, s + T * T, 0.0f);
      for (std::int64_t t = 1; t < T; ++t) dense::dot_products(q + t * HN, HN, q, HN, N, s + t * T, T, 1, t);
      bdh_ops::mm(s, T, x + b * T * D, D, a + b * T * HD + h * D, HD, T, D, T);
    });
    layer_tail(x, xs, drop ? mask_[l].data() : nullptr,
               {a, a_mean_[l].data(), a_rstd_[l].data(), yn_[l].data(), ys_[l].data(), xy_.data(),
                ymlp_[l].data(), ymlp_mean_[l].data(), ymlp_rstd_[l].data(), y_.data(), s_[l].data(),
                s_mean_[l].data(), s_rstd_[l].data(), res_[l + 1].data()},
               R);
  }

  /// On entry dres_ holds dL/d(output of layer l); on exit dL/d(its input x).
  void layer_backward(int l) {
    const std::int64_t B = B_, T = T_, R = B * T, D = cfg_.n_embd, H = cfg_.n_head, N = cfg_.neurons(),
                       HN = H * N, HD = H * D, half = N / 2;
    const float* x = res_[l].data();
    const float* xs = xs_[l].data();
    const float* ys = ys_[l].data();
    const float* mask = dropped_ ? mask_[l].data() : nullptr;
    // out = LN(s), s = x + LN(ymlp): ds goes to x directly and through the MLP norm.
    std::fill(dx_.begin(), dx_.end(), 0.0f);
    norm_backward(s_[l].data(), s_mean_[l].data(), s_rstd_[l].data(), dres_.data(), dx_.data(), R);
    std::fill(dymlp_.begin(), dymlp_.end(), 0.0f);
    norm_backward(ymlp_[l].data(), ymlp_mean_[l].data(), ymlp_rstd_[l].data(), dx_.data(), dymlp_.data(), R);
    // ymlp = xy @ decoder.
    for_each_index(cpu, R * HN, [&](std::int64_t i) {
      xy_[i] = mask != nullptr ? xs[i] * ys[i] * mask[i] : xs[i] * ys[i];
    });
    bdh_ops::mm_nt(dymlp_.data(), D, p(o_.decoder), D, dxy_.data(), HN, R, HN, D, false);
    bdh_ops::mm_tn(xy_.data(), HN, dymlp_.data(), D, g(o_.decoder), D, HN, D, R);
    // xy = xs * ys * mask; ys = relu(ylat): dys is d ylat.
    for_each_index(cpu, R * HN, [&](std::int64_t i) {
      const float d = mask != nullptr ? dxy_[i] * mask[i] : dxy_[i];
      dxs_[i] = d * ys[i];
      dys_[i] = ys[i] > 0.0f ? d * xs[i] : 0.0f;
    });
    // ylat[:, h] = yn[:, h] @ encoder_v[h].
    for (std::int64_t h = 0; h < H; ++h) {
      const float* w = p(o_.encoder_v) + h * D * N;
      bdh_ops::mm_nt(dys_.data() + h * N, HN, w, N, dyn_.data() + h * D, HD, R, D, N, false);
      bdh_ops::mm_tn(yn_[l].data() + h * D, HD, dys_.data() + h * N, HN, g(o_.encoder_v) + h * D * N, N, D, N,
                     R);
    }
    std::fill(da_.begin(), da_.end(), 0.0f);
    norm_backward(a_[l].data(), a_mean_[l].data(), a_rstd_[l].data(), dyn_.data(), da_.data(), R * H);
    // a = tril(QR QR^T, -1) @ x per (b, h): d scores, dx (into dv_ per head), dQR -> dxs.
    const float* qr = qr_[l].data();
    dense::thread_independent_for(B * H, double(B * H) * double(T * T) * double(N + D), [&](std::int64_t bh) {
      const std::int64_t b = bh / H, h = bh % H;
      const float* s = att_[l].data() + bh * T * T;
      float* ds = datt_.data() + bh * T * T;
      const float* dab = da_.data() + b * T * HD + h * D;
      const float* xb = x + b * T * D;
      std::fill(ds, ds + T * T, 0.0f);
      for (std::int64_t t = 1; t < T; ++t)
        dense::dot_products(dab + t * HD, HD, xb, D, D, ds + t * T, T, 1, t);
      float* dv = dv_.data() + bh * T * D;
      std::fill(dv, dv + T * D, 0.0f);
      bdh_ops::mm_tn(s, T, dab, HD, dv, D, T, D, T);  // dx_u += sum_t S[t, u] da_t
      std::vector<float> dq(static_cast<std::size_t>(T * N), 0.0f);
      const float* q = qr + b * T * HN + h * N;
      bdh_ops::mm(ds, T, q, HN, dq.data(), N, T, N, T);     // sum_u dS[t, u] QR_u
      bdh_ops::mm_tn(ds, T, q, HN, dq.data(), N, T, N, T);  // sum_u dS[u, t] QR_u
      for (std::int64_t t = 0; t < T; ++t)
        bdh_rope_row_backward(dq.data() + t * N, rope_cos_.data() + t * half, rope_sin_.data() + t * half,
                              dxs_.data() + (b * T + t) * HN + h * N, N);
    });
    // xs = relu(x @ encoder[h]).
    for_each_index(cpu, R * HN, [&](std::int64_t i) {
      if (xs[i] <= 0.0f) dxs_[i] = 0.0f;
    });
    // dx (in dx_, already holding ds) += dxs @ encoder[h]^T + the value path; encoder grads.
    for (std::int64_t h = 0; h < H; ++h) {
      const float* w = p(o_.encoder) + h * D * N;
      bdh_ops::mm_nt(dxs_.data() + h * N, HN, w, N, dx_.data(), D, R, D, N, true);
      bdh_ops::mm_tn(x, D, dxs_.data() + h * N, HN, g(o_.encoder) + h * D * N, N, D, N, R);
    }
    for_each_index(
        cpu, R,
        [&](std::int64_t r) {
          const std::int64_t b = r / T, t = r % T;
          for (std::int64_t h = 0; h < H; ++h) {
            const float* dv = dv_.data() + ((b * H + h) * T + t) * D;
            for (std::int64_t c = 0; c < D; ++c) dx_[r * D + c] += dv[c];
          }
        },
        H * D);
    std::swap(dres_, dx_);
  }

  bdh_config cfg_;
  bdh_offsets o_;
  parameter_layout layout_;
  std::vector<float> freqs_;
  std::vector<float> params_, grads_, ones_, zeros_;
  std::int64_t B_ = 0, T_ = 0;
  // Activations kept for the backward pass (per layer) and scratch.
  std::vector<std::vector<float>> res_, xs_, qr_, att_, a_, a_mean_, a_rstd_, yn_, ys_, ymlp_, ymlp_mean_,
      ymlp_rstd_, s_, s_mean_, s_rstd_, mask_;
  std::vector<float> emb_, emb_mean_, emb_rstd_, logits_, dlogits_, xy_, y_, rope_cos_, rope_sin_;
  std::vector<float> dres_, dx_, dymlp_, dxy_, dxs_, dys_, dyn_, da_, dv_, datt_;
  std::vector<std::int32_t> tokens_;
  target_scores scores_;
  std::int64_t n_latents_ = 0;
  std::vector<float> latent_grads_;
  bool training_ = false, dropped_ = false;
  std::uint64_t dropout_seed_ = 0, dropout_call_ = 0;
};

}  // namespace xplor::model
