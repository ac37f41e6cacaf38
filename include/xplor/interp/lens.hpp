// White-box readouts of the reference transformer's residual stream: the logit lens (nostalgebraist
// 2020; as used by Cywinski et al. 2025, "Eliciting Secret Knowledge from Language Models",
// arXiv 2510.01070), activation-token-embedding similarity, and hooks that capture or perturb
// the residual at a layer (during forward passes and KV-cache decoding alike).
//
// Layers are numbered as transformer::residual numbers them: layer l in [1, L] is the stream
// after block l - 1 (HuggingFace's `model.layers[l - 1].output[0]`), layer 0 the embeddings and
// layer L the stream the final norm reads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/core/numerics.hpp"
#include "xplor/core/random.hpp"
#include "xplor/core/view.hpp"
#include "xplor/interp/ranking.hpp"
#include "xplor/model/dense.hpp"
#include "xplor/model/rowwise.hpp"
#include "xplor/model/transformer.hpp"

namespace xplor::interp {

namespace detail {

inline void check_layer(const model::transformer& m, int layer, int lowest, const char* fn) {
  xplor::detail::require(layer >= lowest && layer <= m.config().n_layers, fn, "layer = ", layer,
                         " is outside [", lowest, ", n_layers = ", m.config().n_layers, "]");
}

/// The rows `positions` of the last forward's residual at `layer`, copied into [P, C].
inline std::vector<float> gather_rows(const model::transformer& m, int layer,
                                      std::span<const std::int64_t> positions, const char* fn) {
  check_layer(m, layer, 0, fn);
  const view2d<const float> r = m.residual(layer);
  xplor::detail::require(r.rows() > 0, fn, "the model has not run a forward pass");
  xplor::detail::require(!positions.empty(), fn, "positions is empty");
  const std::int64_t C = r.cols();
  std::vector<float> out(positions.size() * static_cast<std::size_t>(C));
  for (std::size_t i = 0; i < positions.size(); ++i) {
    xplor::detail::require(positions[i] >= 0 && positions[i] < r.rows(), fn, "positions[", i,
                           "] = ", positions[i], " is outside the last forward's ", r.rows(), " rows");
    for (std::int64_t c = 0; c < C; ++c) out[i * static_cast<std::size_t>(C) + c] = r(positions[i], c);
  }
  return out;
}

}  // namespace detail

/// Logit-lens logits [rows, V] of residual rows [rows, C]: the unembedding of the *final* norm
/// applied to each row, with the norm's statistics computed on that row (not reused from the
/// last layer). The same functions as the model's own head, so at layer L the logits are the
/// model's, bit for bit.
inline std::vector<float> lens_logits(const model::transformer& m, view2d<const float> residual) {
  constexpr const char* fn = "xplor::interp::lens_logits";
  const model::transformer_config& c = m.config();
  xplor::detail::require(residual.cols() == c.d_model, fn, "residual has ", residual.cols(),
                         " columns, d_model = ", c.d_model);
  const std::int64_t n = residual.rows(), C = c.d_model, V = c.vocab_size;
  std::vector<float> x(static_cast<std::size_t>(n * C)), y(x.size()), stats(static_cast<std::size_t>(2 * n));
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t j = 0; j < C; ++j) x[r * C + j] = residual(r, j);
  const model::parameter_layout& layout = m.layout();
  const float* p = m.params().data();
  model::rowwise::norm_forward(x.data(), p + layout.final_norm_w,
                               layout.final_norm_b >= 0 ? p + layout.final_norm_b : nullptr, y.data(),
                               stats.data(), stats.data() + n, n, c.d_model, c.norm_eps);
  std::vector<float> logits(static_cast<std::size_t>(n * V));
  // The model's own kernel: the last layer's lens is forward()'s logits, bit for bit.
  model::dense::linear_forward(y.data(), p + layout.unembed(), logits.data(), n, C, V, false,
                               m.forward_kernel());
  return logits;
}

/// Logit-lens probabilities [P, V] at rows `positions` (indices into the last forward's B*T rows)
/// of the residual at `layer` in [0, L].
inline std::vector<float> logit_lens(const model::transformer& m, int layer,
                                     std::span<const std::int64_t> positions) {
  constexpr const char* fn = "xplor::interp::logit_lens";
  const std::vector<float> rows = detail::gather_rows(m, layer, positions, fn);
  const auto P = static_cast<std::int64_t>(positions.size());
  const std::vector<float> logits =
      lens_logits(m, make_view(rows.data(), {P, std::int64_t{m.config().d_model}}));
  std::vector<float> probs(logits.size());
  xplor::softmax_rows(cpu, make_view(logits.data(), {P, m.config().vocab_size}),
                      make_view(probs.data(), {P, m.config().vocab_size}));
  return probs;
}

/// The mean of the rows of `probs` [P, V]. With `zeroed` (one token per row), row i's entry
/// zeroed[i] is set to 0 first (no renormalisation): the elicitation paper's
/// "response_tokens_zeroed" aggregation, which hides the tokens the model actually wrote so that
/// what it *considered* stands out. (The authors' script zeroes the input token at each position;
/// pass the token emitted from a position, the next one, to zero what the model wrote there.)
inline std::vector<float> mean_rows(std::span<const float> probs, std::int64_t V,
                                    std::span<const std::int32_t> zeroed = {}) {
  constexpr const char* fn = "xplor::interp::mean_rows";
  xplor::detail::require(V > 0 && !probs.empty() && probs.size() % static_cast<std::size_t>(V) == 0, fn,
                         "probs has ", probs.size(), " values, not a positive multiple of V = ", V);
  const std::size_t P = probs.size() / static_cast<std::size_t>(V);
  xplor::detail::require(zeroed.empty() || zeroed.size() == P, fn, "zeroed has ", zeroed.size(),
                         " tokens for ", P, " rows");
  std::vector<double> sum(static_cast<std::size_t>(V), 0.0);
  for (std::size_t r = 0; r < P; ++r) {
    if (!zeroed.empty())
      xplor::detail::require(zeroed[r] >= 0 && zeroed[r] < V, fn, "zeroed[", r, "] = ", zeroed[r],
                             " is outside [0, ", V, ")");
    for (std::int64_t v = 0; v < V; ++v)
      if (zeroed.empty() || v != zeroed[r]) sum[v] += probs[r * static_cast<std::size_t>(V) + v];
  }
  std::vector<float> out(static_cast<std::size_t>(V));
  for (std::int64_t v = 0; v < V; ++v) out[v] = static_cast<float>(sum[v] / double(P));
  return out;
}

/// Cosine similarity [P, V] between the residual rows `positions` at `layer` and every token
/// embedding (the rows of embed.weight): the paper's "activation tokens", which reads the raw
/// residual without the final norm or the unembedding.
inline std::vector<float> activation_token_similarity(const model::transformer& m, int layer,
                                                      std::span<const std::int64_t> positions) {
  constexpr const char* fn = "xplor::interp::activation_token_similarity";
  const std::vector<float> rows = detail::gather_rows(m, layer, positions, fn);
  const std::int64_t P = static_cast<std::int64_t>(positions.size()), C = m.config().d_model,
                     V = m.config().vocab_size;
  const float* E = m.params().data() + m.layout().embed;
  std::vector<double> enorm(static_cast<std::size_t>(V));
  for (std::int64_t v = 0; v < V; ++v) {
    double s = 0.0;
    for (std::int64_t c = 0; c < C; ++c) s += double(E[v * C + c]) * E[v * C + c];
    enorm[v] = std::sqrt(s);
  }
  std::vector<float> out(static_cast<std::size_t>(P * V));
  for_each_index(
      cpu, P,
      [&](std::int64_t i) {
        const float* h = rows.data() + i * C;
        double hn = 0.0;
        for (std::int64_t c = 0; c < C; ++c) hn += double(h[c]) * h[c];
        hn = std::sqrt(hn);
        for (std::int64_t v = 0; v < V; ++v) {
          double dot = 0.0;
          for (std::int64_t c = 0; c < C; ++c) dot += double(h[c]) * E[v * C + c];
          const double denom = std::max(hn * enorm[v], 1e-12);  // torch's F.normalize eps, on the product
          out[i * V + v] = static_cast<float>(dot / denom);
        }
      },
      V * C);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Hooks (model::forward_hooks, for transformer::forward and kv_decoder::set_hooks).

/// Copies the residual at `layer` in [1, L] of each pass into `out` [rows, C], which must have
/// the pass's row count (B * T for a forward). Eigen and xtensor buffers become views through
/// xplor::as_view2d (core/adapt_eigen.hpp, core/adapt_xtensor.hpp).
inline model::forward_hooks capture_residual(int layer, view2d<float> out) {
  return {[layer, out](int l, view2d<float> residual) {
    if (l != layer - 1) return;
    constexpr const char* fn = "xplor::interp::capture_residual";
    xplor::detail::require(residual.rows() == out.rows() && residual.cols() == out.cols(), fn, "out is ",
                           out.rows(), " x ", out.cols(), " for a residual of ", residual.rows(), " x ",
                           residual.cols());
    for (std::int64_t r = 0; r < residual.rows(); ++r)
      for (std::int64_t c = 0; c < residual.cols(); ++c) out(r, c) = residual(r, c);
  }};
}

/// Appends the residual rows at `layer` of every pass it sees (a forward's B*T rows, a decoding
/// step's new tokens) to a growing [rows(), C] buffer: the activations an SAE trains on.
class activation_recorder {
 public:
  activation_recorder(const model::transformer& m, int layer) : layer_(layer), C_(m.config().d_model) {
    detail::check_layer(m, layer, 1, "xplor::interp::activation_recorder");
  }
  model::forward_hooks hooks() {
    return {[this](int l, view2d<float> residual) {
      if (l != layer_ - 1) return;
      for (std::int64_t r = 0; r < residual.rows(); ++r)
        for (std::int64_t c = 0; c < residual.cols(); ++c) data_.push_back(residual(r, c));
    }};
  }
  std::int64_t rows() const { return static_cast<std::int64_t>(data_.size()) / C_; }
  view2d<const float> view() const { return make_view(data_.data(), {rows(), C_}); }
  void clear() { data_.clear(); }

 private:
  int layer_;
  std::int64_t C_;
  std::vector<float> data_;
};

/// Fuzzing (the paper's 5.3): adds alpha * eps, eps ~ N(0, I), to the residual at `layer` in
/// [1, L] at every position of every pass. The noise of the p-th pass through the hook is
/// Philox stream (seed, p), drawn row-major, so a run is reproducible from the seed. alpha = 0
/// is the identity (nothing is added).
inline model::forward_hooks fuzz_residual(const model::transformer& m, int layer, float alpha,
                                          std::uint64_t seed) {
  constexpr const char* fn = "xplor::interp::fuzz_residual";
  detail::check_layer(m, layer, 1, fn);
  xplor::detail::require(std::isfinite(alpha) && alpha >= 0.0f, fn, "alpha = ", alpha,
                         " must be finite and >= 0");
  auto passes = std::make_shared<std::uint64_t>(0);
  return {[layer, alpha, seed, passes](int l, view2d<float> residual) {
    if (l != layer - 1 || alpha == 0.0f) return;
    philox_stream gen(seed, (*passes)++);
    const std::int64_t C = residual.cols();
    for (std::int64_t r = 0; r < residual.rows(); ++r)
      for (std::int64_t c = 0; c < C; c += 2) {
        const auto z = gen.normal_pair();
        residual(r, c) += alpha * z[0];
        if (c + 1 < C) residual(r, c + 1) += alpha * z[1];
      }
  }};
}

}  // namespace xplor::interp
