// A Thoughtbubbles model (arXiv 2510.00219): the reference transformer with fork layers before
// the blocks that its plan marks, score-attenuated blocks and residual-averaging at the end.
//
// Per row, the residual streams start as one per token (score c = 0). A fork layer lets each
// stream propose a copy and keeps the best stream_budget(...) candidates (streams.hpp). Every block
// then runs on the streams with its residual updates gated by g = exp(c):
//   mid = x + g * attn_out(attention(norm1(x)))      (bubble/attention.hpp: RoPE at fractional
//   out = mid + g * mlp(norm2(mid))                    positions, score channel, value attenuation)
// and the final norm and unembedding read the merged streams (one vector per token). The loss
// is the plain next-token cross-entropy; its gradient reaches the fork-score weights through c
// (gates, score channel, value attenuation, merge weights); the top-k choice itself has none.
//
// The parameters are the transformer's table (the same names, initial values and AdamW layout)
// with each fork layer's tensors appended:
//   layers.{l}.fork.norm.weight (C) [, .bias (C) with LayerNorm], layers.{l}.fork.score.weight
//   (2, C) (rows: fork, keep), layers.{l}.fork.embed (C, drawn from N(0, 1 / sqrt(C))).
// A plan without fork layers and without the score channel computes the transformer's bits.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "xplor/bubble/attention.hpp"
#include "xplor/bubble/streams.hpp"
#include "xplor/core/random.hpp"
#include "xplor/model/rowwise.hpp"
#include "xplor/model/transformer.hpp"

namespace xplor::bubble {

/// Offsets of one fork layer's tensors (-1 for a regular layer, and norm_b without LayerNorm).
struct fork_offsets {
  std::int64_t norm_w = -1, norm_b = -1, score = -1, embed = -1;
};

/// The transformer's parameter table with the fork layers' tensors appended; `forks` receives
/// their offsets, one entry per layer.
inline xplor::model::parameter_layout bubble_layout(const xplor::model::transformer_config& cfg,
                                                    const bubble_config& bubble,
                                                    std::vector<fork_offsets>* forks = nullptr) {
  bubble.validate(cfg.n_layers);
  xplor::model::parameter_layout layout(cfg);
  const std::int64_t C = cfg.d_model;
  std::vector<fork_offsets> offsets(static_cast<std::size_t>(cfg.n_layers));
  for (int l = 0; l < cfg.n_layers; ++l) {
    if (bubble.plan[static_cast<std::size_t>(l)] != layer_kind::fork) continue;
    const std::string p = "layers." + std::to_string(l) + ".fork.";
    fork_offsets& o = offsets[static_cast<std::size_t>(l)];
    o.norm_w = layout.add(p + "norm.weight", {C}, false);
    if (cfg.norm == xplor::model::norm_kind::layernorm) o.norm_b = layout.add(p + "norm.bias", {C}, false);
    o.score = layout.add(p + "score.weight", {2, C}, true);
    o.embed = layout.add(p + "embed", {C}, false);
  }
  if (forks != nullptr) *forks = std::move(offsets);
  return layout;
}

class transformer {
 public:
  /// The transformer's parameters drawn from `seed` exactly as xplor::model::transformer draws
  /// them, plus the fork layers' (norms 1, score weights N(0, init_std), embeddings N(0, 1/sqrt(C))).
  /// Needs rotary positions (the copies of a token sit at fractional positions).
  transformer(const xplor::model::transformer_config& cfg, const bubble_config& bubble, std::uint64_t seed)
      : cfg_(cfg), bubble_(bubble), layout_(bubble_layout(cfg, bubble, &forks_)) {
    xplor::detail::require(cfg.positions == xplor::model::position_kind::rope, "xplor::bubble::transformer",
                           "positions = ", to_string(cfg.positions),
                           ": bubble models need rope (copies of a token sit at fractional positions)");
    params_.assign(static_cast<std::size_t>(layout_.total), 0.0f);
    grads_.assign(params_.size(), 0.0f);
    xplor::model::initialize_parameters(cfg_, layout_, seed, params_);
    const float std_dev = 1.0f / std::sqrt(static_cast<float>(cfg.d_model));
    for (std::size_t k = 0; k < layout_.tensors.size(); ++k) {
      const auto& t = layout_.tensors[k];
      if (!t.name.ends_with(".fork.embed")) continue;
      philox_stream gen(seed, k);
      for (std::int64_t i = 0; i < t.size; ++i)
        params_[static_cast<std::size_t>(t.offset + i)] = std_dev * gen.normal();
    }
  }

  const xplor::model::transformer_config& config() const { return cfg_; }
  const bubble_config& bubble() const { return bubble_; }
  const xplor::model::parameter_layout& layout() const { return layout_; }
  std::span<float> params() { return params_; }
  std::span<const float> params() const { return params_; }
  std::span<float> grads() { return grads_; }
  std::span<const float> grads() const { return grads_; }
  std::int64_t num_params() const { return layout_.total; }
  std::span<float> param(std::string_view name) { return slice(params_.data(), name); }
  std::span<const float> param(std::string_view name) const { return slice(params_.data(), name); }
  std::span<float> grad(std::string_view name) { return slice(grads_.data(), name); }
  void zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

  /// Runs the model over `batch` (token ids only: no latent slots); returns the mean cross-entropy
  /// over the weighted targets. after_block(l, streams) sees every row's streams after block l,
  /// concatenated [streams(l), C], and may edit them (the backward treats edits as additive).
  float forward(const xplor::model::forward_batch& batch, const xplor::model::forward_hooks& hooks = {}) {
    constexpr const char* fn = "xplor::bubble::transformer::forward";
    xplor::model::validate_batch(cfg_, batch, fn);
    xplor::detail::require(batch.latents.rows() == 0, fn, "bubble models take token ids only, got ",
                           batch.latents.rows(), " latent rows");
    const std::int64_t B = batch.batch, T = batch.seq_len, C = cfg_.d_model, V = cfg_.vocab_size;
    B_ = B;
    T_ = T;
    tokens_.assign(batch.tokens.begin(), batch.tokens.end());
    scores_.set(batch);
    // The streams entering the first block: one per token, c = 0.
    state s;
    s.offset.resize(static_cast<std::size_t>(B + 1));
    for (std::int64_t b = 0; b <= B; ++b) s.offset[static_cast<std::size_t>(b)] = b * T;
    s.x.resize(static_cast<std::size_t>(B * T * C));
    for (std::int64_t n = 0; n < B * T; ++n) {
      const float* e = p(layout_.embed) + std::int64_t{tokens_[static_cast<std::size_t>(n)]} * C;
      std::copy(e, e + C, s.x.data() + n * C);
    }
    s.c.assign(static_cast<std::size_t>(B * T), 0.0f);
    for (std::int64_t n = 0; n < B * T; ++n) s.tok.push_back(static_cast<std::int32_t>(n % T));
    layers_.resize(static_cast<std::size_t>(cfg_.n_layers));
    for (int l = 0; l < cfg_.n_layers; ++l) {
      layer_acts& a = layers_[static_cast<std::size_t>(l)];
      if (bubble_.plan[static_cast<std::size_t>(l)] == layer_kind::fork) {
        a.in = fork(l, s, a);
      } else {
        a.in = std::move(s);
        a.fork.clear();
      }
      block_forward(l, a);
      s = {a.in.offset, a.out, a.in.c, a.in.tok};
      if (hooks.after_block) hooks.after_block(l, view2d<float>(s.x.data(), {streams(s), C}, {C, 1}));
    }
    last_ = std::move(s);  // the last block's output, as edited by the hook: what the merge reads
    // Merge each row's streams into one vector per token, then the final norm and unembedding.
    merged_.resize(static_cast<std::size_t>(B * T * C));
    for (std::int64_t b = 0; b < B; ++b) {
      const auto [lo, hi] = row_range(last_, b);
      merge_forward<float>(bubble_.merge, cfg_.d_model,
                           std::span<const float>(last_.x).subspan(lo * C, (hi - lo) * C),
                           std::span<const float>(last_.c).subspan(lo, hi - lo),
                           std::span<const std::int32_t>(last_.tok).subspan(lo, hi - lo),
                           std::span<float>(merged_).subspan(static_cast<std::size_t>(b * T * C),
                                                             static_cast<std::size_t>(T * C)));
    }
    const std::int64_t N = B * T;
    final_norm_.resize(static_cast<std::size_t>(N * C));
    final_mean_.resize(static_cast<std::size_t>(N));
    final_rstd_.resize(static_cast<std::size_t>(N));
    logits_.resize(static_cast<std::size_t>(N * V));
    xplor::model::rowwise::norm_forward(merged_.data(), p(layout_.final_norm_w),
                                        layout_.final_norm_b >= 0 ? p(layout_.final_norm_b) : nullptr,
                                        final_norm_.data(), final_mean_.data(), final_rstd_.data(), N,
                                        cfg_.d_model, cfg_.norm_eps);
    xplor::model::dense::linear_forward(final_norm_.data(), p(layout_.unembed()), logits_.data(), N, C, V,
                                        false, xplor::model::training_forward_kernel);
    return scores_.score(logits_.data(), V);
  }

  /// Logits [B * T, V] of the last forward (one row per token).
  view2d<const float> logits() const {
    return make_view(logits_.data(), {B_ * T_, std::int64_t{cfg_.vocab_size}});
  }
  /// log p(target) [B * T] of the last forward (0 where the target is ignore_target).
  std::span<const float> target_logprobs() const { return scores_.logp; }
  /// Streams of all rows entering block `layer` (after its fork) in the last forward.
  std::int64_t streams(int layer) const { return streams(layer_at(layer).in); }
  /// Token index (within its row) of each stream of row b entering block `layer`.
  std::span<const std::int32_t> stream_tokens(int layer, std::int64_t b) const {
    const state& s = layer_at(layer).in;
    const auto [lo, hi] = row_range(s, checked_row(b));
    return std::span<const std::int32_t>(s.tok).subspan(lo, hi - lo);
  }
  /// Scores c (log space) of the same streams.
  std::span<const float> stream_scores(int layer, std::int64_t b) const {
    const state& s = layer_at(layer).in;
    const auto [lo, hi] = row_range(s, checked_row(b));
    return std::span<const float>(s.c).subspan(lo, hi - lo);
  }

  /// Bytes of activations the last forward keeps for the backward pass (what extra streams cost
  /// in memory: every per-stream buffer grows with the streams).
  std::int64_t activation_bytes() const {
    std::size_t floats = 0, ints = 0;
    const auto add = [&floats](const auto&... v) { ((floats += v.size()), ...); };
    for (const layer_acts& a : layers_) {
      add(a.in.x, a.in.c, a.pre_x, a.gate, a.cos, a.sin, a.norm1, a.mean1, a.rstd1, a.qkv, a.att_y, a.attn,
          a.mid, a.norm2, a.mean2, a.rstd2, a.mlp_a, a.mlp_b, a.mlp_act, a.mlp, a.out);
      ints += a.in.tok.size();
      for (const auto& c : a.att) add(c.q, c.k, c.v, c.p);
      for (const auto& f : a.fork) {
        add(f.normed, f.mean, f.rstd, f.s);
        ints += f.kept.size();
      }
    }
    add(last_.x, last_.c, merged_, final_norm_, final_mean_, final_rstd_, logits_);
    return static_cast<std::int64_t>(floats * sizeof(float) + ints * sizeof(std::int32_t));
  }

  /// Accumulates into grads() the gradient of loss_scale x the last forward's loss.
  void backward(float loss_scale = 1.0f) {
    const std::vector<float> dlogp =
        xplor::model::cross_entropy_dlogp(scores_.weights, scores_.loss_weight, loss_scale);
    backward(std::span<const float>(dlogp));
  }

  /// Accumulates into grads() the gradient of sum_n dlogp[n] log p(target_n) (policy losses).
  void backward(std::span<const float> dlogp) {
    scores_.check(dlogp, "xplor::bubble::transformer::backward");
    const std::int64_t B = B_, T = T_, N = B * T, C = cfg_.d_model, V = cfg_.vocab_size;
    dlogits_.resize(static_cast<std::size_t>(N * V));
    scores_.logit_grads(logits_.data(), dlogp, dlogits_.data(), V);
    std::vector<float> dnorm(static_cast<std::size_t>(N * C), 0.0f), dmerged(dnorm.size(), 0.0f);
    xplor::model::dense::linear_backward(final_norm_.data(), p(layout_.unembed()), dlogits_.data(),
                                         dnorm.data(), g(layout_.unembed()), N, C, V);
    xplor::model::rowwise::norm_backward(
        merged_.data(), p(layout_.final_norm_w), layout_.final_norm_b >= 0, final_mean_.data(),
        final_rstd_.data(), dnorm.data(), dmerged.data(), g(layout_.final_norm_w),
        layout_.final_norm_b >= 0 ? g(layout_.final_norm_b) : nullptr, N, cfg_.d_model);
    // Through the merge into the last streams.
    const auto S = static_cast<std::size_t>(streams(last_));
    std::vector<float> dx(S * static_cast<std::size_t>(C), 0.0f), dc(S, 0.0f);
    for (std::int64_t b = 0; b < B; ++b) {
      const auto [lo, hi] = row_range(last_, b);
      const auto n = hi - lo;
      merge_backward<float>(bubble_.merge, cfg_.d_model,
                            std::span<const float>(last_.x).subspan(lo * C, n * C),
                            std::span<const float>(last_.c).subspan(lo, n),
                            std::span<const std::int32_t>(last_.tok).subspan(lo, n),
                            std::span<const float>(dmerged).subspan(static_cast<std::size_t>(b * T * C),
                                                                    static_cast<std::size_t>(T * C)),
                            std::span<float>(dx).subspan(lo * C, n * C), std::span<float>(dc).subspan(lo, n));
    }
    for (int l = cfg_.n_layers - 1; l >= 0; --l) {
      layer_acts& a = layers_[static_cast<std::size_t>(l)];
      block_backward(l, a, dx, dc);
      if (bubble_.plan[static_cast<std::size_t>(l)] == layer_kind::fork) fork_backward_layer(l, a, dx, dc);
    }
    // The first streams are the token embeddings (their c = 0 is a constant).
    for (std::int64_t n = 0; n < N; ++n) {
      float* dst = g(layout_.embed) + std::int64_t{tokens_[static_cast<std::size_t>(n)]} * C;
      for (std::int64_t e = 0; e < C; ++e) dst[e] += dx[static_cast<std::size_t>(n * C + e)];
    }
  }

 private:
  /// Every row's streams, concatenated: row b holds [offset[b], offset[b + 1]).
  struct state {
    std::vector<std::int64_t> offset;
    std::vector<float> x, c;
    std::vector<std::int32_t> tok;
  };
  struct layer_acts {
    state in;                             // the block's input streams (after the fork)
    std::vector<fork_cache<float>> fork;  // per row, fork layers only
    std::vector<std::int64_t> fork_from;  // per row: the first stream of the row before the fork
    std::vector<float> pre_x;             // the streams before the fork [S_prev, C]
    std::vector<float> gate, cos, sin;    // exp(c) [S]; RoPE tables [S, D/2]
    std::vector<float> norm1, mean1, rstd1, qkv, att_y, attn, mid, norm2, mean2, rstd2, mlp_a, mlp_b, mlp_act,
        mlp, out;
    std::vector<attention_cache<float>> att;  // per row
  };

  float* p(std::int64_t offset) { return params_.data() + offset; }
  const float* p(std::int64_t offset) const { return params_.data() + offset; }
  float* g(std::int64_t offset) { return grads_.data() + offset; }

  static std::int64_t streams(const state& s) { return static_cast<std::int64_t>(s.tok.size()); }
  static std::pair<std::size_t, std::size_t> row_range(const state& s, std::int64_t b) {
    return {static_cast<std::size_t>(s.offset[static_cast<std::size_t>(b)]),
            static_cast<std::size_t>(s.offset[static_cast<std::size_t>(b + 1)])};
  }
  const layer_acts& layer_at(int layer) const {
    xplor::detail::require(layer >= 0 && layer < static_cast<int>(layers_.size()),
                           "xplor::bubble::transformer", "layer = ", layer, " is outside [0, ",
                           layers_.size(), ") (run forward first)");
    return layers_[static_cast<std::size_t>(layer)];
  }
  std::int64_t checked_row(std::int64_t b) const {
    xplor::detail::require(b >= 0 && b < B_, "xplor::bubble::transformer", "row ", b, " is outside [0, ", B_,
                           ")");
    return b;
  }

  template <class T>
  std::span<T> slice(T* buffer, std::string_view name) const {
    for (const auto& t : layout_.tensors)
      if (t.name == name) return std::span<T>(buffer + t.offset, static_cast<std::size_t>(t.size));
    xplor::detail::fail("xplor::bubble::transformer::param", "no tensor named '", name, "'");
  }

  fork_weights<float> fork_params(int l) const {
    const fork_offsets& o = forks_[static_cast<std::size_t>(l)];
    return {p(o.norm_w), o.norm_b >= 0 ? p(o.norm_b) : nullptr, p(o.score), p(o.embed)};
  }

  /// The fork layer before block l, row by row: returns the streams entering the block.
  state fork(int l, const state& s, layer_acts& a) {
    const std::int64_t C = cfg_.d_model;
    const auto Cs = static_cast<std::size_t>(C);
    state next;
    next.offset.push_back(0);
    a.fork.resize(static_cast<std::size_t>(B_));
    a.fork_from.assign(s.offset.begin(), s.offset.end());
    a.pre_x = s.x;
    std::vector<float> x2, c2;
    std::vector<std::int32_t> tok2;
    for (std::int64_t b = 0; b < B_; ++b) {
      const auto [lo, hi] = row_range(s, b);
      const std::int64_t k = stream_budget(bubble_, T_, static_cast<std::int64_t>(hi - lo));
      fork_forward<float>(fork_params(l), cfg_.d_model, cfg_.norm_eps, bubble_.score_clip,
                          std::span<const float>(s.x).subspan(lo * Cs, (hi - lo) * Cs),
                          std::span<const float>(s.c).subspan(lo, hi - lo),
                          std::span<const std::int32_t>(s.tok).subspan(lo, hi - lo), k,
                          a.fork[static_cast<std::size_t>(b)], x2, c2, tok2);
      next.x.insert(next.x.end(), x2.begin(), x2.end());
      next.c.insert(next.c.end(), c2.begin(), c2.end());
      next.tok.insert(next.tok.end(), tok2.begin(), tok2.end());
      next.offset.push_back(static_cast<std::int64_t>(next.tok.size()));
    }
    return next;
  }

  void fork_backward_layer(int l, layer_acts& a, std::vector<float>& dx, std::vector<float>& dc) {
    const auto Cs = static_cast<std::size_t>(cfg_.d_model);
    const auto S_prev = static_cast<std::size_t>(a.fork_from.back());
    std::vector<float> dx_prev(S_prev * Cs, 0.0f), dc_prev(S_prev, 0.0f);
    const fork_offsets& o = forks_[static_cast<std::size_t>(l)];
    const fork_grads<float> fg{g(o.norm_w), o.norm_b >= 0 ? g(o.norm_b) : nullptr, g(o.score), g(o.embed)};
    for (std::int64_t b = 0; b < B_; ++b) {  // serially: the rows add into the same parameter gradients
      const auto [lo, hi] = row_range(a.in, b);
      const auto plo = static_cast<std::size_t>(a.fork_from[static_cast<std::size_t>(b)]),
                 phi = static_cast<std::size_t>(a.fork_from[static_cast<std::size_t>(b + 1)]);
      fork_backward<float>(
          fork_params(l), cfg_.d_model, std::span<const float>(a.pre_x).subspan(plo * Cs, (phi - plo) * Cs),
          a.fork[static_cast<std::size_t>(b)], std::span<const float>(dx).subspan(lo * Cs, (hi - lo) * Cs),
          std::span<const float>(dc).subspan(lo, hi - lo), bubble_.score_clip,
          std::span<float>(dx_prev).subspan(plo * Cs, (phi - plo) * Cs),
          std::span<float>(dc_prev).subspan(plo, phi - plo), fg);
    }
    dx = std::move(dx_prev);
    dc = std::move(dc_prev);
  }

  /// RoPE tables [streams, D/2] at each row's stream positions.
  void rope_tables(layer_acts& a) const {
    const int D = cfg_.head_dim();
    a.cos.clear();
    a.sin.clear();
    std::vector<std::int32_t> position(static_cast<std::size_t>(T_));
    for (std::int64_t t = 0; t < T_; ++t)
      position[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(t);
    std::vector<double> pos;
    std::vector<float> cs, sn;
    for (std::int64_t b = 0; b < B_; ++b) {
      const auto [lo, hi] = row_range(a.in, b);
      pos.resize(hi - lo);
      stream_positions(std::span<const std::int32_t>(a.in.tok).subspan(lo, hi - lo), position, pos);
      rope_at(std::span<const double>(pos), D, double(cfg_.rope_theta), cs, sn);
      a.cos.insert(a.cos.end(), cs.begin(), cs.end());
      a.sin.insert(a.sin.end(), sn.begin(), sn.end());
    }
  }

  void block_forward(int l, layer_acts& a) {
    const xplor::model::layer_offsets& o = layout_.layers[static_cast<std::size_t>(l)];
    const std::int64_t S = streams(a.in), C = cfg_.d_model, F = cfg_.d_ff, D = cfg_.head_dim();
    const auto Sz = static_cast<std::size_t>(S), Cs = static_cast<std::size_t>(C);
    const auto resize = [](std::vector<float>& v, std::int64_t n) { v.resize(static_cast<std::size_t>(n)); };
    for (auto* v : {&a.norm1, &a.att_y, &a.attn, &a.mid, &a.norm2, &a.mlp, &a.out}) resize(*v, S * C);
    for (auto* v : {&a.mean1, &a.rstd1, &a.mean2, &a.rstd2, &a.gate}) resize(*v, S);
    resize(a.qkv, S * 3 * C);
    for (auto* v : {&a.mlp_a, &a.mlp_act}) resize(*v, S * F);
    resize(a.mlp_b, cfg_.mlp == xplor::model::mlp_kind::swiglu ? S * F : 0);
    for (std::size_t n = 0; n < Sz; ++n) a.gate[n] = std::exp(a.in.c[n]);
    // RoPE tables at each row's stream positions (token t at position t, its copies below it);
    // the streams change only at fork layers, so a regular layer takes its predecessor's tables.
    if (l > 0 && bubble_.plan[static_cast<std::size_t>(l)] == layer_kind::regular) {
      a.cos = layers_[static_cast<std::size_t>(l - 1)].cos;
      a.sin = layers_[static_cast<std::size_t>(l - 1)].sin;
    } else {
      rope_tables(a);
    }
    xplor::model::rowwise::norm_forward(a.in.x.data(), p(o.attn_norm_w),
                                        o.attn_norm_b >= 0 ? p(o.attn_norm_b) : nullptr, a.norm1.data(),
                                        a.mean1.data(), a.rstd1.data(), S, cfg_.d_model, cfg_.norm_eps);
    xplor::model::dense::linear_forward(a.norm1.data(), p(o.qkv), a.qkv.data(), S, C, 3 * C, false,
                                        xplor::model::training_forward_kernel);
    a.att.resize(static_cast<std::size_t>(B_));
    const std::size_t half = static_cast<std::size_t>(D / 2);
    xplor::model::dense::thread_independent_for(
        B_, double(S) * double(S) / double(B_) * double(C), [&](std::int64_t b) {
          const auto [lo, hi] = row_range(a.in, b);
          const std::size_t n = hi - lo;
          attention_forward<float>(cfg_.n_heads, cfg_.d_model, bubble_.fork_channel,
                                   std::span<const float>(a.qkv).subspan(lo * 3 * Cs, n * 3 * Cs),
                                   std::span<const float>(a.in.c).subspan(lo, n),
                                   std::span<const float>(a.cos).subspan(lo * half, n * half),
                                   std::span<const float>(a.sin).subspan(lo * half, n * half),
                                   a.att[static_cast<std::size_t>(b)],
                                   std::span<float>(a.att_y).subspan(lo * Cs, n * Cs));
        });
    xplor::model::dense::linear_forward(a.att_y.data(), p(o.attn_out), a.attn.data(), S, C, C, false,
                                        xplor::model::training_forward_kernel);
    for (std::size_t i = 0; i < Sz * Cs; ++i) a.mid[i] = a.in.x[i] + a.gate[i / Cs] * a.attn[i];
    xplor::model::rowwise::norm_forward(a.mid.data(), p(o.mlp_norm_w),
                                        o.mlp_norm_b >= 0 ? p(o.mlp_norm_b) : nullptr, a.norm2.data(),
                                        a.mean2.data(), a.rstd2.data(), S, cfg_.d_model, cfg_.norm_eps);
    xplor::model::rowwise::mlp_forward(cfg_.mlp, mlp_weights_of(o), a.norm2.data(), a.mlp_a.data(),
                                       a.mlp_b.data(), a.mlp_act.data(), a.mlp.data(), S, C, F,
                                       /*accumulate=*/false, xplor::model::training_forward_kernel);
    for (std::size_t i = 0; i < Sz * Cs; ++i) a.out[i] = a.mid[i] + a.gate[i / Cs] * a.mlp[i];
  }

  /// On entry dx, dc hold dL/d(block l's output streams, their scores); on exit dL/d(its input).
  void block_backward(int l, layer_acts& a, std::vector<float>& dx, std::vector<float>& dc) {
    const xplor::model::layer_offsets& o = layout_.layers[static_cast<std::size_t>(l)];
    const std::int64_t S = streams(a.in), C = cfg_.d_model, F = cfg_.d_ff, D = cfg_.head_dim();
    const auto Sz = static_cast<std::size_t>(S), Cs = static_cast<std::size_t>(C);
    // out = mid + g * mlp: d mlp = g dout, dc += g (dout . mlp), dmid = dout.
    std::vector<float> dbranch(Sz * Cs), dnorm(Sz * Cs, 0.0f);
    gate_backward(a.gate, a.mlp, dx, dbranch, dc);
    std::vector<float> da(static_cast<std::size_t>(S * F)), db(a.mlp_b.size());
    xplor::model::rowwise::mlp_backward(cfg_.mlp, mlp_weights_of(o), mlp_grads_of(o), a.norm2.data(),
                                        a.mlp_a.data(), a.mlp_b.data(), a.mlp_act.data(), dbranch.data(),
                                        da.data(), db.data(), dnorm.data(), S, C, F);
    std::vector<float> dmid = dx;
    xplor::model::rowwise::norm_backward(a.mid.data(), p(o.mlp_norm_w), o.mlp_norm_b >= 0, a.mean2.data(),
                                         a.rstd2.data(), dnorm.data(), dmid.data(), g(o.mlp_norm_w),
                                         o.mlp_norm_b >= 0 ? g(o.mlp_norm_b) : nullptr, S, cfg_.d_model);
    // mid = x + g * attn: d attn = g dmid, dc += g (dmid . attn), dx = dmid.
    gate_backward(a.gate, a.attn, dmid, dbranch, dc);
    std::vector<float> datt_y(Sz * Cs, 0.0f), dqkv(Sz * 3 * Cs);
    xplor::model::dense::linear_backward(a.att_y.data(), p(o.attn_out), dbranch.data(), datt_y.data(),
                                         g(o.attn_out), S, C, C);
    const std::size_t half = static_cast<std::size_t>(D / 2);
    xplor::model::dense::thread_independent_for(
        B_, double(S) * double(S) / double(B_) * double(C), [&](std::int64_t b) {
          const auto [lo, hi] = row_range(a.in, b);
          const std::size_t n = hi - lo;
          attention_backward<float>(
              cfg_.n_heads, cfg_.d_model, bubble_.fork_channel, std::span<const float>(a.in.c).subspan(lo, n),
              std::span<const float>(a.cos).subspan(lo * half, n * half),
              std::span<const float>(a.sin).subspan(lo * half, n * half), a.att[static_cast<std::size_t>(b)],
              std::span<const float>(datt_y).subspan(lo * Cs, n * Cs),
              std::span<float>(dqkv).subspan(lo * 3 * Cs, n * 3 * Cs), std::span<float>(dc).subspan(lo, n));
        });
    std::fill(dnorm.begin(), dnorm.end(), 0.0f);
    xplor::model::dense::linear_backward(a.norm1.data(), p(o.qkv), dqkv.data(), dnorm.data(), g(o.qkv), S, C,
                                         3 * C);
    dx = std::move(dmid);
    xplor::model::rowwise::norm_backward(a.in.x.data(), p(o.attn_norm_w), o.attn_norm_b >= 0, a.mean1.data(),
                                         a.rstd1.data(), dnorm.data(), dx.data(), g(o.attn_norm_w),
                                         o.attn_norm_b >= 0 ? g(o.attn_norm_b) : nullptr, S, cfg_.d_model);
  }

  /// y = base + gate * branch (per stream): dbranch = gate * dy, dc += gate * (dy . branch).
  void gate_backward(const std::vector<float>& gate, const std::vector<float>& branch,
                     const std::vector<float>& dy, std::vector<float>& dbranch,
                     std::vector<float>& dc) const {
    const auto Cs = static_cast<std::size_t>(cfg_.d_model);
    for (std::size_t n = 0; n < gate.size(); ++n) {
      float dot = 0.0f;
      for (std::size_t e = 0; e < Cs; ++e) {
        dbranch[n * Cs + e] = gate[n] * dy[n * Cs + e];
        dot += dy[n * Cs + e] * branch[n * Cs + e];
      }
      dc[n] += gate[n] * dot;
    }
  }

  xplor::model::rowwise::mlp_weights mlp_weights_of(const xplor::model::layer_offsets& o) const {
    return {o.mlp_gate >= 0 ? p(o.mlp_gate) : nullptr, p(o.mlp_up), p(o.mlp_down)};
  }
  xplor::model::rowwise::mlp_grads mlp_grads_of(const xplor::model::layer_offsets& o) {
    return {o.mlp_gate >= 0 ? g(o.mlp_gate) : nullptr, g(o.mlp_up), g(o.mlp_down)};
  }

  xplor::model::transformer_config cfg_;
  bubble_config bubble_;
  std::vector<fork_offsets> forks_;
  xplor::model::parameter_layout layout_;
  std::vector<float> params_, grads_;
  std::int64_t B_ = 0, T_ = 0;
  std::vector<std::int32_t> tokens_;
  xplor::model::target_scores scores_;
  std::vector<layer_acts> layers_;
  state last_;  // the last block's output streams (as the merge read them)
  std::vector<float> merged_, final_norm_, final_mean_, final_rstd_, logits_, dlogits_;
};

}  // namespace xplor::bubble
