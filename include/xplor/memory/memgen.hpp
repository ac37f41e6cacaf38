// MemGen's training forward (the authors' modeling_memgen.py::_forward) on a batch of sequences:
// walk each sequence's insertion points in order, weave latents from everything before the point
// (tokens and earlier latents), put them in, and run the frozen reasoner once over the interleaved
// sequences. Weaver calls are batched across sequences by point index (the j-th point of every
// sequence that has one). The reasoner's log-probabilities of the completion tokens are read at
// the aligned rows (insertion.hpp), and backward() sends d log p through the reasoner into the
// latents and from there into the weaver (including through earlier latents that a later weaver
// call read): the reasoner's gradients stay exactly zero.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/memory/config.hpp"
#include "xplor/memory/insertion.hpp"
#include "xplor/memory/weaver.hpp"
#include "xplor/model/transformer.hpp"

namespace xplor::memory {

/// A sequence so far as the weaver reads it: its rows (tokens, model::latent_slot for latents) and
/// the latent rows in order [latent slots, C].
struct prefix {
  std::span<const std::int32_t> rows = {};
  std::span<const float> latents = {};
};

class memgen {
 public:
  /// A MemGen model over a frozen copy of `reasoner` (the reasoner object itself is untouched).
  memgen(const model::transformer& reasoner, const memgen_config& cfg, std::uint64_t seed)
      : cfg_(cfg), reasoner_(reasoner), weaver_(reasoner, cfg, seed) {
    reasoner_.freeze();
  }

  const memgen_config& config() const { return cfg_; }
  memory::weaver& weaver() { return weaver_; }
  const memory::weaver& weaver() const { return weaver_; }
  /// The frozen reasoner (its grads() stay zero).
  const model::transformer& reasoner() const { return reasoner_; }

  /// The weaver's context for each prefix into out [prefixes, width, C] (rows past a prefix are
  /// 0): the reasoner's input embeddings of its rows (token embeddings, latents as they are) or,
  /// with weaver_input::last_hidden, the frozen reasoner's last hidden states over them (one
  /// right-padded pass).
  void weaver_contexts(std::span<const prefix> prefixes, std::int64_t width, std::span<float> out) {
    const std::int64_t C = reasoner_.config().d_model, P = static_cast<std::int64_t>(prefixes.size());
    std::fill(out.begin(), out.end(), 0.0f);
    if (cfg_.input == weaver_input::last_hidden) {
      run_prefixes(prefixes, width);  // overwrites the reasoner's activations
      const auto h = reasoner_.hidden();
      for (std::int64_t m = 0; m < P; ++m)
        std::copy_n(h.data() + m * width * C, static_cast<std::int64_t>(prefixes[m].rows.size()) * C,
                    out.data() + m * width * C);
      return;
    }
    const auto embed = reasoner_.param("embed.weight");
    for (std::int64_t m = 0; m < P; ++m) {
      float* o = out.data() + m * width * C;
      std::size_t next_latent = 0;
      for (const std::int32_t t : prefixes[m].rows) {
        const float* src = t == model::latent_slot ? prefixes[m].latents.data() + (next_latent++) * C
                                                   : embed.data() + std::int64_t{t} * C;
        std::copy_n(src, C, o);
        o += C;
      }
    }
  }

  /// Forward over `batch` (each sequence with its insertion points; insertion_points() gives the
  /// training rule's). Returns the mean cross-entropy of the completion tokens.
  float forward(std::span<const sequence> batch, const pass_options& opt = {}) {
    constexpr const char* fn = "xplor::memory::memgen::forward";
    xplor::detail::require(!batch.empty(), fn, "the batch is empty");
    for (const sequence& s : batch) validate_sequence(cfg_, reasoner_.config(), s, fn);
    rows_.clear();
    std::size_t max_points = 0;
    for (const sequence& s : batch) {
      rows_.push_back(interleave(cfg_, s));
      max_points = std::max(max_points, s.points.size());
    }
    // Each row's latents, block after block, filled point index by point index.
    row_latents_.assign(batch.size(), {});
    calls_.clear();
    call_rows_.clear();
    for (std::size_t j = 0; j < max_points; ++j) {
      std::vector<std::size_t> members;
      for (std::size_t b = 0; b < batch.size(); ++b)
        if (j < batch[b].points.size()) members.push_back(b);
      // Index 0 holds the prompt point of the sequences that have one and the first inference
      // point of those that do not: one call per bank present.
      for (bank which : {bank::prompt, bank::inference}) weave(members, which, batch, j, opt);
    }
    // One reasoner pass over the interleaved rows, right-padded.
    std::int64_t T = 0;
    for (const auto& r : rows_) T = std::max<std::int64_t>(T, static_cast<std::int64_t>(r.tokens.size()));
    const auto B = static_cast<std::int64_t>(batch.size());
    tokens_.assign(static_cast<std::size_t>(B * T), 0);
    targets_.assign(tokens_.size(), model::ignore_target);
    latents_.clear();
    for (std::int64_t b = 0; b < B; ++b) {
      const interleaved& r = rows_[static_cast<std::size_t>(b)];
      std::copy(r.tokens.begin(), r.tokens.end(), tokens_.begin() + b * T);
      std::copy(r.targets.begin(), r.targets.end(), targets_.begin() + b * T);
      const auto& lat = row_latents_[static_cast<std::size_t>(b)];
      latents_.insert(latents_.end(), lat.begin(), lat.end());
    }
    T_ = T;
    const float loss = run_main_pass();
    logp_.clear();
    const auto row_logp = reasoner_.target_logprobs();
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t row : rows_[static_cast<std::size_t>(b)].target_rows)
        logp_.push_back(row_logp[static_cast<std::size_t>(b * T + row)]);
    return loss;
  }

  /// log p of every completion token of the last forward, sequence after sequence.
  std::span<const float> completion_logprobs() const { return logp_; }

  /// Logits [V] that predict completion token i of sequence b in the last forward.
  std::span<const float> completion_logits(std::size_t b, std::size_t i) const {
    const std::int64_t V = reasoner_.config().vocab_size;
    const std::int64_t row = static_cast<std::int64_t>(b) * T_ + rows_.at(b).target_rows.at(i);
    return {reasoner_.logits().data() + row * V, static_cast<std::size_t>(V)};
  }

  /// Backward of the mean cross-entropy forward() returned, times loss_scale.
  void backward(float loss_scale = 1.0f) {
    const auto n = static_cast<float>(logp_.size());
    std::vector<float> dlogp(logp_.size(), -loss_scale / n);
    backward(std::span<const float>(dlogp));
  }

  /// Accumulates into the weaver's grads() the gradient of sum_i dlogp[i] * log p_i over the
  /// completion tokens of the last forward (the entry point for policy losses).
  void backward(std::span<const float> dlogp) {
    constexpr const char* fn = "xplor::memory::memgen::backward";
    xplor::detail::require(!rows_.empty(), fn, "no forward pass to differentiate");
    xplor::detail::require(dlogp.size() == logp_.size(), fn, "dlogp has ", dlogp.size(), " elements for ",
                           logp_.size(), " completion tokens");
    const std::int64_t C = reasoner_.config().d_model;
    std::vector<float> row_dlogp(tokens_.size(), 0.0f);
    std::size_t i = 0;
    for (std::size_t b = 0; b < rows_.size(); ++b)
      for (std::int64_t row : rows_[b].target_rows) {
        xplor::detail::require(std::isfinite(dlogp[i]), fn, "dlogp[", i, "] = ", dlogp[i], " is not finite");
        row_dlogp[static_cast<std::size_t>(static_cast<std::int64_t>(b) * T_ + row)] = dlogp[i++];
      }
    if (!main_pass_held_) run_main_pass();  // weaver_contexts() ran the reasoner since forward()
    reasoner_.backward(std::span<const float>(row_dlogp));
    // Each row's latent gradients, in the order forward() laid the latents out.
    const auto lg = reasoner_.latent_grads();
    dlatents_.assign(rows_.size(), {});
    const float* next = lg.data();
    for (std::size_t b = 0; b < rows_.size(); ++b) {
      dlatents_[b].assign(next, next + row_latents_[b].size());
      next += row_latents_[b].size();
    }
    // Weaver calls last to first: a call's latents have their full gradient once every later
    // call (whose context held them) has passed its share back.
    for (std::size_t c = calls_.size(); c-- > 0;) {
      weave_call& call = calls_[c];
      const auto& members = call_rows_[c];
      const std::int64_t K = weaver_.latents(call.which);
      std::vector<float> dlat(static_cast<std::size_t>(call.members() * K * C));
      for (std::size_t m = 0; m < members.size(); ++m) {
        const auto [b, j] = members[m];
        const float* d = dlatents_[b].data() + latent_rows_before(b, j) * C;
        std::copy_n(d, K * C, dlat.begin() + static_cast<std::int64_t>(m) * K * C);
      }
      std::vector<float> dctx(call.context.size());
      weaver_.backward(call, dlat, dctx);
      if (call.width == 0) continue;  // static latents read no context
      // The context's latent rows (earlier blocks) pass their gradient on.
      const std::vector<prefix> prefixes = call_prefixes(members);
      std::vector<std::vector<float>> dprefix;
      weaver_contexts_backward(prefixes, call.width, dctx, dprefix);
      for (std::size_t m = 0; m < members.size(); ++m) {
        float* d = dlatents_[members[m].first].data();
        for (std::size_t x = 0; x < dprefix[m].size(); ++x) d[x] += dprefix[m][x];
      }
    }
  }

 private:
  /// The reasoner over the last forward's interleaved rows (its activations are what backward
  /// differentiates); returns the mean cross-entropy.
  float run_main_pass() {
    const std::int64_t C = reasoner_.config().d_model, B = static_cast<std::int64_t>(rows_.size());
    const auto n = static_cast<std::int64_t>(latents_.size()) / C;
    main_pass_held_ = true;
    return reasoner_.forward(
        {tokens_, B, T_, targets_, {}, make_view(static_cast<const float*>(latents_.data()), {n, C})});
  }

  /// Latent rows of row b before its block j.
  std::int64_t latent_rows_before(std::size_t b, std::size_t j) const {
    const interleaved& r = rows_[b];
    return std::count(r.tokens.begin(), r.tokens.begin() + r.block_start[j], model::latent_slot);
  }

  /// The prefixes a call's members read: row b's interleaved rows before block j.
  std::vector<prefix> call_prefixes(const std::vector<std::pair<std::size_t, std::size_t>>& members) const {
    const std::int64_t C = reasoner_.config().d_model;
    std::vector<prefix> out;
    for (const auto& [b, j] : members)
      out.push_back(
          {std::span(rows_[b].tokens).first(static_cast<std::size_t>(rows_[b].block_start[j])),
           std::span(row_latents_[b]).first(static_cast<std::size_t>(latent_rows_before(b, j) * C))});
    return out;
  }

  /// The prefixes' rows through the frozen reasoner, right-padded to `width` (last_hidden mode).
  void run_prefixes(std::span<const prefix> prefixes, std::int64_t width) {
    main_pass_held_ = false;
    const std::int64_t C = reasoner_.config().d_model, P = static_cast<std::int64_t>(prefixes.size());
    prefix_tokens_.assign(static_cast<std::size_t>(P * width), 0);
    prefix_latents_.clear();
    for (std::int64_t m = 0; m < P; ++m) {
      std::copy(prefixes[m].rows.begin(), prefixes[m].rows.end(), prefix_tokens_.begin() + m * width);
      prefix_latents_.insert(prefix_latents_.end(), prefixes[m].latents.begin(), prefixes[m].latents.end());
    }
    const auto n = static_cast<std::int64_t>(prefix_latents_.size()) / C;
    reasoner_.forward_hidden({prefix_tokens_,
                              P,
                              width,
                              {},
                              {},
                              make_view(static_cast<const float*>(prefix_latents_.data()), {n, C})});
  }

  /// Backward of weaver_contexts: the gradient of each prefix's latents, dprefix[m] [latent slots,
  /// C], from dcontext [prefixes, width, C]. Recomputes the reasoner pass in last_hidden mode.
  void weaver_contexts_backward(std::span<const prefix> prefixes, std::int64_t width,
                                std::span<const float> dcontext, std::vector<std::vector<float>>& dprefix) {
    const std::int64_t C = reasoner_.config().d_model, P = static_cast<std::int64_t>(prefixes.size());
    dprefix.assign(prefixes.size(), {});
    if (cfg_.input == weaver_input::last_hidden) {
      run_prefixes(prefixes, width);
      std::vector<float> dh(dcontext.begin(), dcontext.end());
      for (std::int64_t m = 0; m < P; ++m)  // padding rows carry no gradient
        std::fill(dh.begin() + (m * width + static_cast<std::int64_t>(prefixes[m].rows.size())) * C,
                  dh.begin() + (m + 1) * width * C, 0.0f);
      reasoner_.backward_hidden(make_view(static_cast<const float*>(dh.data()), {P * width, C}));
      const float* g = reasoner_.latent_grads().data();
      for (std::int64_t m = 0; m < P; ++m) {
        dprefix[m].assign(g, g + prefixes[m].latents.size());
        g += prefixes[m].latents.size();
      }
      return;
    }
    for (std::int64_t m = 0; m < P; ++m) {
      const float* d = dcontext.data() + m * width * C;
      for (std::size_t row = 0; row < prefixes[m].rows.size(); ++row, d += C)
        if (prefixes[m].rows[row] == model::latent_slot) dprefix[m].insert(dprefix[m].end(), d, d + C);
    }
  }

  /// Runs the weaver for point index j of those `members` whose point there uses bank `which`,
  /// and appends their latents to row_latents_.
  void weave(const std::vector<std::size_t>& members, bank which, std::span<const sequence> batch,
             std::size_t j, const pass_options& opt) {
    const std::int64_t C = reasoner_.config().d_model;
    weave_call call;
    call.which = which;
    call.training = opt.training;
    call.dropout_key = opt.dropout_key * 1024 + 2 * j + (which == bank::prompt ? 0 : 1);
    std::vector<std::pair<std::size_t, std::size_t>> ids;
    for (std::size_t b : members)
      if ((batch[b].points[j] == 0) == (which == bank::prompt)) {
        ids.emplace_back(b, j);
        call.lengths.push_back(cfg_.static_latents ? 0 : rows_[b].block_start[j]);
      }
    if (ids.empty()) return;
    call.width = *std::max_element(call.lengths.begin(), call.lengths.end());
    call.context.assign(static_cast<std::size_t>(call.members() * call.width * C), 0.0f);
    if (call.width > 0) weaver_contexts(call_prefixes(ids), call.width, call.context);
    weaver_.forward(call);
    const std::int64_t K = weaver_.latents(which);
    for (std::size_t m = 0; m < ids.size(); ++m) {
      auto& lat = row_latents_[ids[m].first];
      lat.insert(lat.end(), call.latents.begin() + static_cast<std::int64_t>(m) * K * C,
                 call.latents.begin() + static_cast<std::int64_t>(m + 1) * K * C);
    }
    calls_.push_back(std::move(call));
    call_rows_.push_back(std::move(ids));
  }

  memgen_config cfg_;
  model::transformer reasoner_;
  memory::weaver weaver_;
  // The last forward.
  std::vector<interleaved> rows_;
  std::vector<std::vector<float>> row_latents_, dlatents_;  // per row: its latents, block after block
  std::vector<std::int32_t> prefix_tokens_;                 // last_hidden contexts' reasoner pass
  std::vector<float> prefix_latents_;
  std::vector<weave_call> calls_;
  std::vector<std::vector<std::pair<std::size_t, std::size_t>>> call_rows_;  // per call: (row, block)
  std::vector<std::int32_t> tokens_, targets_;
  std::vector<float> latents_, logp_;
  std::int64_t T_ = 0;
  bool main_pass_held_ = false;  // the reasoner holds run_main_pass()'s activations
};

}  // namespace xplor::memory
