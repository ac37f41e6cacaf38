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

  /// Forward over `batch` (each sequence with its insertion points; insertion_points() gives the
  /// training rule's). Returns the mean cross-entropy of the completion tokens.
  float forward(std::span<const sequence> batch, const pass_options& opt = {}) {
    constexpr const char* fn = "xplor::memory::memgen::forward";
    xplor::detail::require(!batch.empty(), fn, "the batch is empty");
    for (const sequence& s : batch) validate_sequence(cfg_, reasoner_.config(), s, fn);
    const std::int64_t C = reasoner_.config().d_model;
    rows_.clear();
    std::size_t max_points = 0;
    for (const sequence& s : batch) {
      rows_.push_back(interleave(cfg_, s));
      max_points = std::max(max_points, s.points.size());
    }
    // Latent blocks per row, filled point index by point index.
    block_latents_.assign(batch.size(), {});
    for (std::size_t b = 0; b < batch.size(); ++b) block_latents_[b].resize(batch[b].points.size());
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
      for (const auto& block : block_latents_[static_cast<std::size_t>(b)])
        latents_.insert(latents_.end(), block.begin(), block.end());
    }
    T_ = T;
    const auto n_latents = static_cast<std::int64_t>(latents_.size()) / C;
    const float loss = reasoner_.forward(
        {tokens_, B, T, targets_, {}, make_view(static_cast<const float*>(latents_.data()), {n_latents, C})});
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
    reasoner_.backward(std::span<const float>(row_dlogp));
    // Gradients of each latent block, in the order forward() laid them out.
    const auto lg = reasoner_.latent_grads();
    dblock_.assign(rows_.size(), {});
    std::int64_t next = 0;
    for (std::size_t b = 0; b < rows_.size(); ++b)
      for (const auto& block : block_latents_[b]) {
        dblock_[b].emplace_back(lg.data() + next * C,
                                lg.data() + next * C + static_cast<std::int64_t>(block.size()));
        next += static_cast<std::int64_t>(block.size()) / C;
      }
    // Weaver calls last to first: a call's latents have their full gradient once every later
    // call (whose context held them) has passed its share back.
    for (std::size_t c = calls_.size(); c-- > 0;) {
      weave_call& call = calls_[c];
      const auto& members = call_rows_[c];
      const std::int64_t K = weaver_.latents(call.which);
      std::vector<float> dlat(static_cast<std::size_t>(call.members() * K * C));
      for (std::size_t m = 0; m < members.size(); ++m) {
        const auto& d = dblock_[members[m].first][members[m].second];
        std::copy(d.begin(), d.end(), dlat.begin() + static_cast<std::int64_t>(m) * K * C);
      }
      std::vector<float> dctx(call.context.size());
      weaver_.backward(call, dlat, dctx, /*recompute=*/c + 1 != calls_.size());
      // Context rows that were earlier latents pass their gradient on.
      for (std::size_t m = 0; m < members.size(); ++m) {
        const auto [b, j] = members[m];
        const interleaved& r = rows_[b];
        for (std::size_t e = 0; e < j && call.lengths[m] > 0; ++e) {
          const std::int64_t start = r.block_start[e];
          auto& d = dblock_[b][e];
          const float* src = dctx.data() + (static_cast<std::int64_t>(m) * call.width + start) * C;
          for (std::size_t x = 0; x < d.size(); ++x) d[x] += src[x];
        }
      }
    }
  }

 private:
  /// The reasoner-space embeddings of row b's interleaved rows before its block j: token
  /// embeddings (the reasoner's input embeddings, as the authors' get_input_embeddings()) and the
  /// earlier blocks' latents.
  void context_rows(std::size_t b, std::size_t j, float* out) const {
    const std::int64_t C = reasoner_.config().d_model;
    const interleaved& r = rows_[b];
    const auto embed = reasoner_.param("embed.weight");
    std::size_t block = 0;
    for (std::int64_t row = 0; row < r.block_start[j]; ++row) {
      float* o = out + row * C;
      const std::int32_t t = r.tokens[static_cast<std::size_t>(row)];
      if (t == model::latent_slot) {
        const std::int64_t k = row - r.block_start[block];
        const auto& lat = block_latents_[b][block];
        std::copy_n(lat.data() + k * C, C, o);
        if ((k + 1) * C == static_cast<std::int64_t>(lat.size())) ++block;
      } else {
        std::copy_n(embed.data() + std::int64_t{t} * C, C, o);
      }
    }
  }

  /// Runs the weaver for point index j of those `members` whose point there uses bank `which`,
  /// and stores their latents in block_latents_.
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
    if (!cfg_.static_latents)
      for (std::size_t m = 0; m < ids.size(); ++m)
        context_rows(ids[m].first, j, call.context.data() + static_cast<std::int64_t>(m) * call.width * C);
    weaver_.forward(call);
    const std::int64_t K = weaver_.latents(which);
    for (std::size_t m = 0; m < ids.size(); ++m)
      block_latents_[ids[m].first][j].assign(call.latents.begin() + static_cast<std::int64_t>(m) * K * C,
                                             call.latents.begin() + static_cast<std::int64_t>(m + 1) * K * C);
    calls_.push_back(std::move(call));
    call_rows_.push_back(std::move(ids));
  }

  memgen_config cfg_;
  model::transformer reasoner_;
  memory::weaver weaver_;
  // The last forward.
  std::vector<interleaved> rows_;
  std::vector<std::vector<std::vector<float>>> block_latents_, dblock_;  // [row][block] -> [K * C]
  std::vector<weave_call> calls_;
  std::vector<std::vector<std::pair<std::size_t, std::size_t>>> call_rows_;  // per call: (row, block)
  std::vector<std::int32_t> tokens_, targets_;
  std::vector<float> latents_, logp_;
  std::int64_t T_ = 0;
};

}  // namespace xplor::memory
