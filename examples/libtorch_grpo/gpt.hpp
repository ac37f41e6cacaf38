// A small GPT written with torch::nn, and the adapter that makes it an xplor::decode_policy: what
// a C++ trainer that already has a libtorch model writes to use xplor's samplers, tree search and
// environments. The model is GPT-2-shaped (LayerNorm, learned positions, tanh-GELU MLP, tied
// embeddings, no linear biases) and its parameters carry the reference transformer's names
// (embed.weight, layers.0.attn.qkv.weight, ...), so `load_xplor_weights` can copy an
// xplor::model::transformer into it and the two give the same logits (tests/torch checks that).
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>
#include <xplor/core/adapt_torch.hpp>
#include <xplor/core/decode.hpp>
#include <xplor/core/error.hpp>
#include <xplor/model/config.hpp>

namespace tgpt {

struct gpt_config {
  std::int64_t vocab_size = 259, d_model = 64, n_layers = 2, n_heads = 4, d_ff = 256, max_seq_len = 64;
  double norm_eps = 1e-5, init_std = 0.02;

  void validate() const {
    constexpr const char* fn = "tgpt::gpt_config";
    xplor::detail::require(vocab_size > 0 && d_model > 0 && n_layers > 0 && d_ff > 0 && max_seq_len > 0, fn,
                           "sizes must be positive (vocab ", vocab_size, ", d_model ", d_model, ", layers ",
                           n_layers, ", d_ff ", d_ff, ", max_seq_len ", max_seq_len, ")");
    xplor::detail::require(n_heads > 0 && d_model % n_heads == 0, fn, "n_heads = ", n_heads,
                           " must divide d_model = ", d_model);
  }
  /// The reference transformer with the same architecture and parameter names.
  xplor::model::transformer_config xplor_config() const {
    xplor::model::transformer_config c;
    c.vocab_size = static_cast<int>(vocab_size);
    c.d_model = static_cast<int>(d_model);
    c.n_layers = static_cast<int>(n_layers);
    c.n_heads = static_cast<int>(n_heads);
    c.d_ff = static_cast<int>(d_ff);
    c.max_seq_len = static_cast<int>(max_seq_len);
    c.norm = xplor::model::norm_kind::layernorm;
    c.positions = xplor::model::position_kind::learned;
    c.mlp = xplor::model::mlp_kind::gelu;
    c.tie_embeddings = true;
    c.norm_eps = static_cast<float>(norm_eps);
    c.init_std = static_cast<float>(init_std);
    return c;
  }
};

inline torch::nn::Linear linear(std::int64_t in, std::int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
}

struct AttentionImpl : torch::nn::Module {
  torch::nn::Linear qkv{nullptr}, out{nullptr};
  explicit AttentionImpl(const gpt_config& c)
      : qkv(register_module("qkv", linear(c.d_model, 3 * c.d_model))),
        out(register_module("out", linear(c.d_model, c.d_model))) {}
};
TORCH_MODULE(Attention);

struct MlpImpl : torch::nn::Module {
  torch::nn::Linear up{nullptr}, down{nullptr};
  explicit MlpImpl(const gpt_config& c)
      : up(register_module("up", linear(c.d_model, c.d_ff))),
        down(register_module("down", linear(c.d_ff, c.d_model))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    return down(
        torch::nn::functional::gelu(up(x), torch::nn::functional::GELUFuncOptions().approximate("tanh")));
  }
};
TORCH_MODULE(Mlp);

/// One layer's keys and values of one sequence, [H, n, D] each: a prefix shared by the states
/// forked from it (never written again) and the state's own tail since its last fork.
struct layer_kv {
  torch::Tensor prefix_k, prefix_v, tail_k, tail_v;
};

struct BlockImpl : torch::nn::Module {
  torch::nn::LayerNorm attn_norm{nullptr}, mlp_norm{nullptr};
  Attention attn{nullptr};
  Mlp mlp{nullptr};
  std::int64_t heads;

  explicit BlockImpl(const gpt_config& c)
      : attn_norm(register_module(
            "attn_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model}).eps(c.norm_eps)))),
        mlp_norm(register_module(
            "mlp_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model}).eps(c.norm_eps)))),
        attn(register_module("attn", Attention(c))),
        mlp(register_module("mlp", Mlp(c))),
        heads(c.n_heads) {}

  /// Training: x [B, T, C], causal attention within each row.
  torch::Tensor forward(const torch::Tensor& x) {
    const std::int64_t B = x.size(0), T = x.size(1), C = x.size(2), D = C / heads;
    const auto qkv =
        attn->qkv(attn_norm(x)).view({B, T, 3, heads, D}).permute({2, 0, 3, 1, 4});  // [3, B, H, T, D]
    const auto scores = torch::matmul(qkv[0], qkv[1].transpose(-1, -2)) / std::sqrt(double(D));
    const auto future = torch::ones({T, T}, torch::kBool).triu(1);
    const auto y = torch::matmul(torch::softmax(scores.masked_fill(future, -INFINITY), -1), qkv[2]);
    const auto h = x + attn->out(y.transpose(1, 2).reshape({B, T, C}));
    return h + mlp(mlp_norm(h));
  }

  /// Decoding: x [T, C] are the next T positions of one sequence whose earlier keys and values
  /// are in `kv`; appends theirs to kv's tail. Scores against the prefix and the tail are taken
  /// separately and joined before the softmax, so the shared prefix is read, never copied.
  torch::Tensor extend(const torch::Tensor& x, layer_kv& kv) {
    const std::int64_t T = x.size(0), C = x.size(1), D = C / heads;
    const auto qkv = attn->qkv(attn_norm(x)).view({T, 3, heads, D}).permute({1, 2, 0, 3});  // [3, H, T, D]
    kv.tail_k = torch::cat({kv.tail_k, qkv[1]}, 1);
    kv.tail_v = torch::cat({kv.tail_v, qkv[2]}, 1);
    const std::int64_t P = kv.prefix_k.size(1), n = kv.tail_k.size(1);
    const auto s_prefix = torch::matmul(qkv[0], kv.prefix_k.transpose(-1, -2)) / std::sqrt(double(D));
    auto s_tail = torch::matmul(qkv[0], kv.tail_k.transpose(-1, -2)) / std::sqrt(double(D));
    s_tail = s_tail.masked_fill(torch::ones({T, n}, torch::kBool).triu(n - T + 1), -INFINITY);
    const auto p = torch::softmax(torch::cat({s_prefix, s_tail}, -1), -1);
    const auto y =
        torch::matmul(p.narrow(-1, 0, P), kv.prefix_v) + torch::matmul(p.narrow(-1, P, n), kv.tail_v);
    const auto h = x + attn->out(y.transpose(0, 1).reshape({T, C}));
    return h + mlp(mlp_norm(h));
  }
};
TORCH_MODULE(Block);

struct GPTImpl : torch::nn::Module {
  gpt_config config;
  torch::nn::Embedding embed{nullptr}, pos_embed{nullptr};
  torch::nn::ModuleList layers{nullptr};
  std::vector<Block> blocks;  // typed handles to the modules in `layers`
  torch::nn::LayerNorm final_norm{nullptr};

  explicit GPTImpl(const gpt_config& c) : config(c) {
    c.validate();
    embed = register_module("embed", torch::nn::Embedding(c.vocab_size, c.d_model));
    pos_embed = register_module("pos_embed", torch::nn::Embedding(c.max_seq_len, c.d_model));
    layers = register_module("layers", torch::nn::ModuleList());
    for (std::int64_t l = 0; l < c.n_layers; ++l) {
      blocks.emplace_back(c);
      layers->push_back(blocks.back());
    }
    final_norm = register_module(
        "final_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model}).eps(c.norm_eps)));
    // GPT-2's initialisation, as the reference transformer's: N(0, std) weights, residual
    // projections N(0, std / sqrt(2L)), LayerNorms 1 and 0.
    torch::NoGradGuard no_grad;
    for (auto& p : named_parameters()) {
      const std::string& name = p.key();
      if (name.find("norm") != std::string::npos) continue;  // LayerNorm keeps weight 1, bias 0
      const bool residual =
          name.find("attn.out") != std::string::npos || name.find("mlp.down") != std::string::npos;
      p.value().normal_(0.0, residual ? c.init_std / std::sqrt(2.0 * double(c.n_layers)) : c.init_std);
    }
  }

  torch::Tensor unembed(const torch::Tensor& h) { return torch::matmul(final_norm(h), embed->weight.t()); }

  /// Training: tokens [B, T] (int64) -> logits [B, T, V].
  torch::Tensor forward(const torch::Tensor& tokens) {
    auto x = embed(tokens) + pos_embed(torch::arange(tokens.size(1), torch::kLong));
    for (auto& b : blocks) x = b(x);
    return unembed(x);
  }

  /// Decoding: tokens [T] at positions first, first + 1, ... of one sequence whose cache is `kv`
  /// (one entry per layer) -> logits [T, V]; the cache grows by T positions.
  torch::Tensor extend(const torch::Tensor& tokens, std::vector<layer_kv>& kv, std::int64_t first) {
    auto x = embed(tokens) + pos_embed(torch::arange(first, first + tokens.size(0), torch::kLong));
    for (std::size_t l = 0; l < blocks.size(); ++l) x = blocks[l]->extend(x, kv[l]);
    return unembed(x);
  }

  /// Copies the reference transformer's parameters (same names and shapes) into this model.
  void load_xplor_weights(const xplor::model::parameter_layout& layout, std::span<const float> params) {
    constexpr const char* fn = "tgpt::GPT::load_xplor_weights";
    torch::NoGradGuard no_grad;
    auto mine = named_parameters();
    xplor::detail::require(mine.size() == layout.tensors.size(), fn, "the transformer has ",
                           layout.tensors.size(), " tensors, this model ", mine.size());
    for (const auto& slot : layout.tensors) {
      const torch::Tensor* dst = mine.find(slot.name);
      xplor::detail::require(dst != nullptr, fn, "no parameter named ", slot.name);
      xplor::detail::require(dst->sizes().vec() == slot.shape, fn, slot.name, " has shape ", dst->sizes(),
                             " here and ", slot.size, " values in the transformer");
      const auto src =
          torch::from_blob(const_cast<float*>(params.data()) + slot.offset, dst->sizes(), torch::kFloat);
      dst->copy_(src);  // from_blob does not own: the copy is made before `params` can go away
    }
  }
};
TORCH_MODULE(GPT);

/// The adapter: GPT as an xplor::decode_policy. A state is one sequence's cache; fork() seals
/// the parent's tail into a new prefix that parent and children share (no copy per child);
/// step() runs each state's new token through GPT::extend. States are stepped one after another:
/// each has its own length, and padding them into one batch would cost more than it saves at
/// this size (xplor::model::kv_decoder shows the batched form). Runs without autograd.
class gpt_decoder {
 public:
  using state_id = std::int32_t;

  explicit gpt_decoder(GPT model) : model_(std::move(model)) {}

  std::int64_t vocab_size() const { return model_->config.vocab_size; }
  std::int64_t live_states() const { return static_cast<std::int64_t>(states_.size() - free_.size()); }

  state_id begin(std::span<const std::int32_t> prompt) {
    constexpr const char* fn = "tgpt::gpt_decoder::begin";
    xplor::detail::require(!prompt.empty(), fn, "the prompt is empty");
    check_tokens(prompt, fn);
    xplor::detail::require(static_cast<std::int64_t>(prompt.size()) <= model_->config.max_seq_len, fn,
                           "the prompt has ", prompt.size(), " tokens, max_seq_len is ",
                           model_->config.max_seq_len);
    torch::NoGradGuard no_grad;
    const std::int64_t H = model_->config.n_heads, D = model_->config.d_model / H;
    state s;
    const auto empty = torch::zeros({H, 0, D});
    s.kv.assign(static_cast<std::size_t>(model_->config.n_layers), layer_kv{empty, empty, empty, empty});
    const auto tokens = torch::tensor(std::vector<std::int64_t>(prompt.begin(), prompt.end()), torch::kLong);
    s.last = model_->extend(tokens, s.kv, 0)[static_cast<std::int64_t>(prompt.size()) - 1];
    s.length = static_cast<std::int64_t>(prompt.size());
    return add(std::move(s));
  }

  std::vector<state_id> fork(state_id id, int n) {
    xplor::detail::require(n >= 0, "tgpt::gpt_decoder::fork", "n = ", n, " is negative");
    state& s = at(id, "tgpt::gpt_decoder::fork");
    if (n > 0 && s.kv[0].tail_k.size(1) > 0)
      for (layer_kv& kv : s.kv)  // seal: the prefix grows by the tail, which the forks then share
        kv = {torch::cat({kv.prefix_k, kv.tail_k}, 1), torch::cat({kv.prefix_v, kv.tail_v}, 1),
              kv.tail_k.narrow(1, 0, 0), kv.tail_v.narrow(1, 0, 0)};
    std::vector<state_id> out;
    for (int i = 0; i < n; ++i) out.push_back(add(state(at(id, "tgpt::gpt_decoder::fork"))));
    return out;
  }

  xplor::view2d<const float> logits(std::span<const state_id> ids) {
    std::vector<torch::Tensor> rows;
    for (state_id id : ids) rows.push_back(at(id, "tgpt::gpt_decoder::logits").last);
    return publish(rows);
  }

  xplor::view2d<const float> step(std::span<const state_id> ids, std::span<const std::int32_t> tokens) {
    constexpr const char* fn = "tgpt::gpt_decoder::step";
    xplor::detail::require(ids.size() == tokens.size(), fn, ids.size(), " states and ", tokens.size(),
                           " tokens");
    check_tokens(tokens, fn);
    for (state_id id : ids)
      xplor::detail::require(at(id, fn).length < model_->config.max_seq_len, fn, "state ", id,
                             " is full (max_seq_len ", model_->config.max_seq_len, ")");
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> rows;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      state& s = at(ids[i], fn);
      s.last = model_->extend(torch::tensor({std::int64_t{tokens[i]}}, torch::kLong), s.kv, s.length)[0];
      ++s.length;
      rows.push_back(s.last);
    }
    return publish(rows);
  }

  void release(std::span<const state_id> ids) {
    for (state_id id : ids) {
      at(id, "tgpt::gpt_decoder::release") = state{};
      free_.push_back(id);
    }
  }

 private:
  struct state {
    std::vector<layer_kv> kv;  // empty once released
    torch::Tensor last;        // [V] logits after the last token
    std::int64_t length = 0;
  };

  state_id add(state s) {
    if (!free_.empty()) {
      const state_id id = free_.back();
      free_.pop_back();
      states_[static_cast<std::size_t>(id)] = std::move(s);
      return id;
    }
    states_.push_back(std::move(s));
    return static_cast<state_id>(states_.size() - 1);
  }
  state& at(state_id id, const char* fn) {
    xplor::detail::require(id >= 0 && static_cast<std::size_t>(id) < states_.size() &&
                               !states_[static_cast<std::size_t>(id)].kv.empty(),
                           fn, "state ", id, " is not live");
    return states_[static_cast<std::size_t>(id)];
  }
  void check_tokens(std::span<const std::int32_t> tokens, const char* fn) const {
    for (std::int32_t t : tokens)
      xplor::detail::require(t >= 0 && t < vocab_size(), fn, "token ", t, " is outside [0, ", vocab_size(),
                             ")");
  }
  /// The rows as one contiguous [n, V] tensor, viewed through xplor's torch adapter; the view
  /// stays valid until the next call, as the concept says.
  xplor::view2d<const float> publish(const std::vector<torch::Tensor>& rows) {
    out_ = rows.empty() ? torch::zeros({0, vocab_size()}) : torch::stack(rows).contiguous();
    return xplor::as_view2d<const float>(out_);
  }

  GPT model_;
  std::vector<state> states_;
  std::vector<state_id> free_;
  torch::Tensor out_;
};

static_assert(xplor::decode_policy<gpt_decoder>);

}  // namespace tgpt
