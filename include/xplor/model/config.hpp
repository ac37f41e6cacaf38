// The reference transformer's configuration and its parameter table: every tensor's name, shape
// and offset in the one contiguous parameter buffer (llm.c style), so that parameters,
// gradients and optimizer moments share one layout and a checkpoint is a list of named slices.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/random.hpp"

namespace xplor::model {

enum class norm_kind { rmsnorm, layernorm };
enum class position_kind { learned, rope };
enum class mlp_kind { gelu, swiglu };

inline std::string_view to_string(norm_kind k) { return k == norm_kind::rmsnorm ? "rmsnorm" : "layernorm"; }
inline std::string_view to_string(position_kind k) {
  return k == position_kind::learned ? "learned" : "rope";
}
inline std::string_view to_string(mlp_kind k) { return k == mlp_kind::gelu ? "gelu" : "swiglu"; }

/// A GPT-style pre-norm decoder. Shapes below use V = vocab_size, C = d_model, L = n_layers,
/// H = n_heads, D = C / H (head size), F = d_ff, T = max_seq_len.
struct transformer_config {
  int vocab_size = 259;  // 256 bytes + bos, eos, pad (byte_tokenizer)
  int d_model = 128;
  int n_layers = 2;
  int n_heads = 4;
  int d_ff = 512;
  int max_seq_len = 256;
  norm_kind norm = norm_kind::rmsnorm;
  position_kind positions = position_kind::rope;
  mlp_kind mlp = mlp_kind::swiglu;
  bool tie_embeddings = true;  // unembedding = token embedding (GPT-2)
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;  // RoPE base (Su et al., RoFormer, 2021)
  float init_std = 0.02f;       // N(0, 0.02) weights, GPT-2; residual projections / sqrt(2L)

  int head_dim() const { return d_model / n_heads; }

  /// Throws xplor::error naming the first invalid field.
  void validate() const {
    constexpr const char* fn = "xplor::model::transformer_config";
    detail::require(vocab_size > 0, fn, "vocab_size = ", vocab_size, " must be positive");
    detail::require(d_model > 0, fn, "d_model = ", d_model, " must be positive");
    detail::require(n_layers > 0, fn, "n_layers = ", n_layers, " must be positive");
    detail::require(n_heads > 0 && d_model % n_heads == 0, fn, "n_heads = ", n_heads,
                    " must divide d_model = ", d_model);
    detail::require(positions != position_kind::rope || head_dim() % 2 == 0, fn,
                    "rope needs an even head size, got ", head_dim());
    detail::require(d_ff > 0, fn, "d_ff = ", d_ff, " must be positive");
    detail::require(max_seq_len > 0, fn, "max_seq_len = ", max_seq_len, " must be positive");
    // Finite, not only positive: norm_eps = inf loaded from a file and turned every norm into 0.
    detail::require(std::isfinite(norm_eps) && norm_eps > 0.0f, fn, "norm_eps = ", norm_eps,
                    " must be finite and positive");
    detail::require(std::isfinite(rope_theta) && rope_theta > 1.0f, fn, "rope_theta = ", rope_theta,
                    " must be finite and exceed 1");
    detail::require(std::isfinite(init_std) && init_std > 0.0f, fn, "init_std = ", init_std,
                    " must be finite and positive");
  }
};

inline bool operator==(const transformer_config& a, const transformer_config& b) {
  return a.vocab_size == b.vocab_size && a.d_model == b.d_model && a.n_layers == b.n_layers &&
         a.n_heads == b.n_heads && a.d_ff == b.d_ff && a.max_seq_len == b.max_seq_len && a.norm == b.norm &&
         a.positions == b.positions && a.mlp == b.mlp && a.tie_embeddings == b.tie_embeddings &&
         a.norm_eps == b.norm_eps && a.rope_theta == b.rope_theta && a.init_std == b.init_std;
}

/// One named tensor of the parameter buffer.
struct tensor_slot {
  std::string name = {};
  std::vector<std::int64_t> shape = {};
  std::int64_t offset = 0;  // in floats, into the parameter buffer
  std::int64_t size = 0;    // product of shape
  bool decay = false;       // AdamW weight decay applies (matrices, not norms or biases)
};

/// Offsets of one block's tensors (-1 when the configuration has no such tensor).
struct layer_offsets {
  std::int64_t attn_norm_w = -1, attn_norm_b = -1;  // (C)
  std::int64_t qkv = -1;                            // (3C, C): rows [q; k; v], y = x W^T
  std::int64_t attn_out = -1;                       // (C, C)
  std::int64_t mlp_norm_w = -1, mlp_norm_b = -1;    // (C)
  std::int64_t mlp_gate = -1;                       // (F, C), swiglu only
  std::int64_t mlp_up = -1;                         // (F, C)
  std::int64_t mlp_down = -1;                       // (C, F)
};

/// The parameter table: names follow PyTorch module paths, so tools/torch_reference.py can load
/// a checkpoint into an equivalent nn.Module with load_state_dict (docs/model.md lists them).
struct parameter_layout {
  std::vector<tensor_slot> tensors = {};
  std::int64_t total = 0;
  std::int64_t embed = -1;      // (V, C)  embed.weight
  std::int64_t pos_embed = -1;  // (T, C)  pos_embed.weight, learned positions only
  std::vector<layer_offsets> layers = {};
  std::int64_t final_norm_w = -1, final_norm_b = -1;  // (C)
  std::int64_t lm_head = -1;                          // (V, C), untied only

  /// An empty table, for trainable tensors that are not a transformer's (an adapter, MemGen's
  /// weaver), added with add().
  parameter_layout() = default;

  explicit parameter_layout(const transformer_config& c) {
    c.validate();
    const std::int64_t V = c.vocab_size, C = c.d_model, T = c.max_seq_len, F = c.d_ff;
    const bool ln = c.norm == norm_kind::layernorm;
    embed = add("embed.weight", {V, C}, true);
    if (c.positions == position_kind::learned) pos_embed = add("pos_embed.weight", {T, C}, true);
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      layer_offsets o;
      o.attn_norm_w = add(p + "attn_norm.weight", {C}, false);
      if (ln) o.attn_norm_b = add(p + "attn_norm.bias", {C}, false);
      o.qkv = add(p + "attn.qkv.weight", {3 * C, C}, true);
      o.attn_out = add(p + "attn.out.weight", {C, C}, true);
      o.mlp_norm_w = add(p + "mlp_norm.weight", {C}, false);
      if (ln) o.mlp_norm_b = add(p + "mlp_norm.bias", {C}, false);
      if (c.mlp == mlp_kind::swiglu) o.mlp_gate = add(p + "mlp.gate.weight", {F, C}, true);
      o.mlp_up = add(p + "mlp.up.weight", {F, C}, true);
      o.mlp_down = add(p + "mlp.down.weight", {C, F}, true);
      layers.push_back(o);
    }
    final_norm_w = add("final_norm.weight", {C}, false);
    if (ln) final_norm_b = add("final_norm.bias", {C}, false);
    if (!c.tie_embeddings) lm_head = add("lm_head.weight", {V, C}, true);
  }

  /// The unembedding matrix (V, C): lm_head, or the token embedding when tied.
  std::int64_t unembed() const { return lm_head >= 0 ? lm_head : embed; }

  /// Appends a tensor to the table and returns its offset: how a model variant (a bubble model's
  /// fork layers) extends the transformer's parameters, so that one buffer, optimizer and
  /// checkpoint hold them all.
  std::int64_t add(std::string name, std::vector<std::int64_t> shape, bool decay) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    tensors.push_back({std::move(name), std::move(shape), total, n, decay});
    total += n;
    return total - n;
  }
};

/// The initial parameters of a model with `layout`, drawn from `seed` (GPT-2's scheme: N(0,
/// init_std) matrices, the residual outputs scaled by 1/sqrt(2 n_layers), norm weights 1, biases
/// 0; one Philox stream per tensor, so adding a tensor never changes the others' values). Shared
/// by the CPU model and the CUDA model, which therefore start from the same bits.
inline void initialize_parameters(const transformer_config& cfg, const parameter_layout& layout,
                                  std::uint64_t seed, std::span<float> params) {
  const float residual_scale = 1.0f / std::sqrt(2.0f * static_cast<float>(cfg.n_layers));
  for (std::size_t k = 0; k < layout.tensors.size(); ++k) {
    const tensor_slot& t = layout.tensors[k];
    float* dst = params.data() + t.offset;
    const bool is_norm_weight = t.name.ends_with("norm.weight");
    if (t.shape.size() == 1) {  // norm weights 1, biases 0
      std::fill(dst, dst + t.size, is_norm_weight ? 1.0f : 0.0f);
      continue;
    }
    const bool residual_out = t.name.ends_with("attn.out.weight") || t.name.ends_with("mlp.down.weight");
    const float std_dev = cfg.init_std * (residual_out ? residual_scale : 1.0f);
    philox_stream gen(seed, k);
    for (std::int64_t i = 0; i + 1 < t.size; i += 2) {
      const auto z = gen.normal_pair();
      dst[i] = std_dev * z[0];
      dst[i + 1] = std_dev * z[1];
    }
    if (t.size % 2 == 1) dst[t.size - 1] = std_dev * gen.normal();
  }
}

/// RoPE tables [max_seq_len, head_dim / 2] of cos and sin of t theta^(-2i / head_dim) (empty
/// unless positions are rope). Shared by the CPU and the CUDA model.
inline void rope_tables(const transformer_config& cfg, std::vector<float>& cos_out,
                        std::vector<float>& sin_out) {
  cos_out.clear();
  sin_out.clear();
  if (cfg.positions != position_kind::rope) return;
  const int half = cfg.head_dim() / 2;
  cos_out.resize(static_cast<std::size_t>(cfg.max_seq_len) * half);
  sin_out.resize(cos_out.size());
  for (int t = 0; t < cfg.max_seq_len; ++t)
    for (int i = 0; i < half; ++i) {
      // Angles in double: at t ~ 1e3 a float angle loses the low bits that the sine needs.
      const double freq = std::pow(double(cfg.rope_theta), -2.0 * i / cfg.head_dim());
      cos_out[static_cast<std::size_t>(t) * half + i] = static_cast<float>(std::cos(t * freq));
      sin_out[static_cast<std::size_t>(t) * half + i] = static_cast<float>(std::sin(t * freq));
    }
}

/// d loss / d logp of the weighted mean cross-entropy the forward pass returned, times
/// loss_scale: -loss_scale * w_n / sum(w) per position (0 everywhere when no position counts).
/// Shared by the CPU and the GPU model's backward(loss_scale).
inline std::vector<float> cross_entropy_dlogp(std::span<const float> weights, float loss_weight,
                                              float loss_scale) {
  std::vector<float> dlogp(weights.size(), 0.0f);
  if (loss_weight > 0.0f)
    for (std::size_t n = 0; n < weights.size(); ++n) dlogp[n] = -loss_scale * weights[n] / loss_weight;
  return dlogp;
}

}  // namespace xplor::model
