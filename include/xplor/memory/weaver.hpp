// MemGen's memory weaver (the authors' weaver.py::_augment): a LoRA'd copy of the frozen reasoner
// that reads a context and returns K latent vectors for the reasoner's input.
//
//   X = E W_r2w^T + b_r2w                      context rows E [n, C] (reasoner input embeddings)
//   Q = LayerNorm(bank) * scale                the prompt or the inference query bank [K, C]
//   H = weaver_LM([X; Q]).hidden[-1][n:n+K]    the last layer after the final norm
//   M = H W_w2r^T + b_w2r                      [K, C], inserted into the reasoner's input
//
// The weaver model is the reasoner's weights, frozen, with a LoRA adapter; the trainable tensors
// (adapter, banks, their norms and scales, both projections) live in one buffer with one table,
// named as the authors' module paths (docs/memory.md). A call is batched over several contexts of
// different lengths (right-padded; causal attention makes the padding invisible). The backward of
// a call recomputes its forward when the weaver model's activations belong to another call
// (gradient checkpointing: one activation set, the same dropout masks from the call's key).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/random.hpp"
#include "xplor/memory/config.hpp"
#include "xplor/model/dense.hpp"
#include "xplor/model/layers.hpp"
#include "xplor/model/lora.hpp"
#include "xplor/model/transformer.hpp"

namespace xplor::memory {

enum class bank : std::uint8_t { prompt, inference };

/// One batched weaver call: the contexts (in the reasoner's embedding space, right-padded to a
/// common length) and, after forward, their latents.
struct weave_call {
  bank which = bank::prompt;
  std::vector<std::int64_t> lengths;  // context rows of each member
  std::int64_t width = 0;             // padded context rows (max length)
  std::vector<float> context;         // [members, width, C]; rows past a member's length are 0
  std::vector<float> latents;         // [members, K, C] after forward
  std::vector<float> hidden;          // [members, K, C] the weaver's hidden states (for backward)
  bool training = false;
  std::uint64_t dropout_key = 0;
  std::uint64_t pass = 0;  // set by the weaver: which of its passes holds this call's activations

  std::int64_t members() const { return static_cast<std::int64_t>(lengths.size()); }
};

class weaver {
 public:
  static constexpr const char* module_name = "weaver";

  /// A weaver over a copy of `reasoner` (frozen), with trainable tensors drawn from `seed`: LoRA A
  /// as PEFT, B = 0; banks N(0, 1) (torch.randn); norms 1 / 0; scales 1; projections as
  /// torch.nn.Linear (U(-1/sqrt(C), 1/sqrt(C)) weights and biases).
  weaver(const model::transformer& reasoner, const memgen_config& cfg, std::uint64_t seed)
      : cfg_(cfg),
        base_(reasoner),
        lora_(reasoner.config(), (cfg.validate(reasoner.config()), cfg.weaver_lora), table_,
              "weaver.model.base_model.model.") {
    base_.freeze();
    const std::int64_t C = reasoner.config().d_model;
    banks_[0].queries = table_.add("weaver.prompt_query_latents", {cfg.prompt_latents, C}, true);
    banks_[1].queries = table_.add("weaver.inference_query_latents", {cfg.inference_latents, C}, true);
    for (int b = 0; b < 2; ++b) {
      const std::string p = b == 0 ? "weaver.prompt_latent_" : "weaver.inference_latent_";
      banks_[b].ln_w = table_.add(p + "ln.weight", {C}, false);
      banks_[b].ln_b = table_.add(p + "ln.bias", {C}, false);
      banks_[b].scale = table_.add(p + "scale", {1}, false);
    }
    r2w_w_ = table_.add("reasoner_to_weaver.weight", {C, C}, true);
    r2w_b_ = table_.add("reasoner_to_weaver.bias", {C}, false);
    w2r_w_ = table_.add("weaver_to_reasoner.weight", {C, C}, true);
    w2r_b_ = table_.add("weaver_to_reasoner.bias", {C}, false);
    params_.assign(static_cast<std::size_t>(table_.total), 0.0f);
    grads_.assign(params_.size(), 0.0f);
    lora_.initialize(params_, seed);
    const float bound = 1.0f / std::sqrt(static_cast<float>(C));
    for (std::size_t k = 0; k < table_.tensors.size(); ++k) {
      const model::tensor_slot& t = table_.tensors[k];
      float* dst = params_.data() + t.offset;
      philox_stream gen(seed ^ 0x9e3779b97f4a7c15ull, k);
      if (t.name.ends_with("query_latents"))
        for (std::int64_t i = 0; i < t.size; ++i) dst[i] = gen.normal();
      else if (t.name.ends_with("ln.weight") || t.name.ends_with("scale"))
        std::fill(dst, dst + t.size, 1.0f);
      else if (t.name.starts_with("reasoner_to_weaver") || t.name.starts_with("weaver_to_reasoner"))
        for (std::int64_t i = 0; i < t.size; ++i) dst[i] = bound * (2.0f * gen.uniform() - 1.0f);
    }
  }

  const memgen_config& config() const { return cfg_; }
  const model::parameter_layout& layout() const { return table_; }
  std::span<float> params() { return params_; }
  std::span<const float> params() const { return params_; }
  std::span<float> grads() { return grads_; }
  std::span<const float> grads() const { return grads_; }
  void zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.0f); }
  std::span<float> param(std::string_view name) { return slice(params_, name); }
  std::span<float> grad(std::string_view name) { return slice(grads_, name); }
  /// The frozen weaver model (the reasoner's weights) with the adapter's table.
  const model::transformer& base() const { return base_; }
  const model::lora_layout& lora() const { return lora_; }
  int latents(bank b) const { return b == bank::prompt ? cfg_.prompt_latents : cfg_.inference_latents; }

  /// Fills call.latents [members, K, C] from call.context.
  void forward(weave_call& call) {
    constexpr const char* fn = "xplor::memory::weaver::forward";
    const std::int64_t C = d_model(), K = latents(call.which), B = call.members();
    xplor::detail::require(B >= 1, fn, "the call has no members");
    xplor::detail::require(static_cast<std::int64_t>(call.context.size()) == B * call.width * C, fn,
                           "context has ", call.context.size(), " floats for ", B, " x ", call.width, " x ",
                           C);
    for (std::int64_t b = 0; b < B; ++b)
      xplor::detail::require(call.lengths[b] >= 0 && call.lengths[b] <= call.width, fn, "lengths[", b,
                             "] = ", call.lengths[b], " is outside [0, width = ", call.width, "]");
    xplor::detail::require(call.width + K <= base_.config().max_seq_len, fn, "a context of ", call.width,
                           " rows and ", K, " queries exceeds max_seq_len = ", base_.config().max_seq_len);
    run_base(call);
    const std::int64_t T = call.width + K;
    call.hidden.resize(static_cast<std::size_t>(B * K * C));
    const auto h = base_.hidden();
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t k = 0; k < K; ++k)
        std::copy_n(h.data() + (b * T + call.lengths[b] + k) * C, C, call.hidden.data() + (b * K + k) * C);
    call.latents.resize(call.hidden.size());
    model::dense::linear_forward(call.hidden.data(), p(w2r_w_), call.latents.data(), B * K, C, C);
    for (std::int64_t r = 0; r < B * K; ++r)
      for (std::int64_t c = 0; c < C; ++c) call.latents[static_cast<std::size_t>(r * C + c)] += p(w2r_b_)[c];
  }

  /// Accumulates the trainable tensors' gradients from dlatents [members, K, C] and returns into
  /// dcontext [members, width, C] (overwritten) the gradient with respect to the context. When the
  /// weaver model's activations are another call's (any later forward), the call's forward runs
  /// again first, with its dropout masks.
  void backward(weave_call& call, std::span<const float> dlatents, std::span<float> dcontext) {
    constexpr const char* fn = "xplor::memory::weaver::backward";
    const std::int64_t C = d_model(), K = latents(call.which), B = call.members(), T = call.width + K;
    xplor::detail::require(static_cast<std::int64_t>(dlatents.size()) == B * K * C &&
                               static_cast<std::int64_t>(dcontext.size()) == B * call.width * C,
                           fn, "dlatents has ", dlatents.size(), " and dcontext ", dcontext.size(),
                           " floats for ", B, " members, ", K, " latents and ", call.width, " context rows");
    // M = H W^T + b.
    std::vector<float> dh(static_cast<std::size_t>(B * K * C), 0.0f);
    model::dense::linear_backward(call.hidden.data(), p(w2r_w_), dlatents.data(), dh.data(), g(w2r_w_), B * K,
                                  C, C);
    for (std::int64_t r = 0; r < B * K; ++r)
      for (std::int64_t c = 0; c < C; ++c) g(w2r_b_)[c] += dlatents[static_cast<std::size_t>(r * C + c)];
    if (call.pass == 0 || call.pass != passes_) run_base(call);
    std::vector<float> dhidden(static_cast<std::size_t>(B * T * C), 0.0f);
    for (std::int64_t b = 0; b < B; ++b)
      std::copy_n(dh.data() + b * K * C, K * C, dhidden.data() + (b * T + call.lengths[b]) * C);
    base_.backward_hidden(make_view(static_cast<const float*>(dhidden.data()), {B * T, C}));
    const auto dz = base_.latent_grads();  // every row of the weaver's input is a latent row
    // Queries: Q = LN(bank) * scale, shared by all members.
    const bank_offsets& o = banks_[call.which == bank::prompt ? 0 : 1];
    std::vector<float> dq(static_cast<std::size_t>(K * C), 0.0f);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t k = 0; k < K; ++k)
        for (std::int64_t c = 0; c < C; ++c) dq[k * C + c] += dz(b * T + call.lengths[b] + k, c);
    const float scale = p(o.scale)[0];
    for (std::int64_t k = 0; k < K; ++k) {
      const float* bank_row = p(o.queries) + k * C;
      std::vector<float> normed(static_cast<std::size_t>(C));
      float mean = 0.0f, rstd = 0.0f;
      model::layers::norm_forward(bank_row, p(o.ln_w), p(o.ln_b), normed.data(), static_cast<int>(C), ln_eps,
                                  &mean, &rstd);
      std::vector<float> dnormed(static_cast<std::size_t>(C));
      for (std::int64_t c = 0; c < C; ++c) {
        g(o.scale)[0] += dq[k * C + c] * normed[c];
        dnormed[c] = dq[k * C + c] * scale;
      }
      model::layers::norm_backward(bank_row, p(o.ln_w), true, mean, rstd, dnormed.data(),
                                   g(o.queries) + k * C, g(o.ln_w), g(o.ln_b), static_cast<int>(C));
    }
    // Context: X = E W^T + b on each member's rows.
    std::fill(dcontext.begin(), dcontext.end(), 0.0f);
    for (std::int64_t b = 0; b < B; ++b) {
      const std::int64_t n = call.lengths[b];
      if (n == 0) continue;
      std::vector<float> dx(static_cast<std::size_t>(n * C));
      for (std::int64_t r = 0; r < n; ++r)
        for (std::int64_t c = 0; c < C; ++c) {
          dx[r * C + c] = dz(b * T + r, c);
          g(r2w_b_)[c] += dx[r * C + c];
        }
      model::dense::linear_backward(call.context.data() + b * call.width * C, p(r2w_w_), dx.data(),
                                    dcontext.data() + b * call.width * C, g(r2w_w_), n, C, C);
    }
  }

 private:
  struct bank_offsets {
    std::int64_t queries = -1, ln_w = -1, ln_b = -1, scale = -1;
  };
  static constexpr float ln_eps = 1e-5f;  // torch.nn.LayerNorm's default

  std::int64_t d_model() const { return base_.config().d_model; }
  float* p(std::int64_t offset) { return params_.data() + offset; }
  float* g(std::int64_t offset) { return grads_.data() + offset; }

  std::span<float> slice(std::vector<float>& buffer, std::string_view name) {
    for (const auto& t : table_.tensors)
      if (t.name == name) return std::span<float>(buffer.data() + t.offset, static_cast<std::size_t>(t.size));
    xplor::detail::fail("xplor::memory::weaver::param", "no tensor named '", name, "'");
  }

  /// The weaver model over [X; Q] for every member: leaves its activations in base_.
  void run_base(weave_call& call) {
    call.pass = ++passes_;
    const std::int64_t C = d_model(), K = latents(call.which), B = call.members(), T = call.width + K;
    const bank_offsets& o = banks_[call.which == bank::prompt ? 0 : 1];
    // Q = LN(bank) * scale.
    std::vector<float> q(static_cast<std::size_t>(K * C));
    for (std::int64_t k = 0; k < K; ++k) {
      float mean = 0.0f, rstd = 0.0f;
      model::layers::norm_forward(p(o.queries) + k * C, p(o.ln_w), p(o.ln_b), q.data() + k * C,
                                  static_cast<int>(C), ln_eps, &mean, &rstd);
      for (std::int64_t c = 0; c < C; ++c) q[k * C + c] *= p(o.scale)[0];
    }
    z_.assign(static_cast<std::size_t>(B * T * C), 0.0f);
    for (std::int64_t b = 0; b < B; ++b) {
      const std::int64_t n = call.lengths[b];
      float* zb = z_.data() + b * T * C;
      if (n > 0)
        model::dense::linear_forward(call.context.data() + b * call.width * C, p(r2w_w_), zb, n, C, C);
      for (std::int64_t r = 0; r < n; ++r)
        for (std::int64_t c = 0; c < C; ++c) zb[r * C + c] += p(r2w_b_)[c];
      std::copy(q.begin(), q.end(), zb + n * C);
    }
    slots_.assign(static_cast<std::size_t>(B * T), model::latent_slot);
    base_.attach({&lora_, params_.data(), grads_.data(), call.training, call.dropout_key});
    base_.forward_hidden({slots_, B, T, {}, {}, make_view(static_cast<const float*>(z_.data()), {B * T, C})});
  }

  memgen_config cfg_;
  model::transformer base_;
  model::parameter_layout table_;
  model::lora_layout lora_;
  bank_offsets banks_[2];
  std::int64_t r2w_w_ = -1, r2w_b_ = -1, w2r_w_ = -1, w2r_b_ = -1;
  std::vector<float> params_, grads_;
  std::vector<float> z_;
  std::vector<std::int32_t> slots_;
  std::uint64_t passes_ = 0;  // passes of base_ so far (the last one's activations are held)
};

}  // namespace xplor::memory
