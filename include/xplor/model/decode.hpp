// KV-cache decoding for the reference transformer, implementing xplor::decode_policy. States
// form a tree of cache segments: begin(prompt) prefills one segment; fork(state, n) gives n new
// states whose (empty) segments point at the parent's, so n completions of one prompt hold the
// prompt's keys and values once plus their own tokens. step() runs one token for a batch of
// states with batched matrix products and per-state attention over each state's segment chain.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "xplor/core/decode.hpp"
#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/model/transformer.hpp"

namespace xplor::model {

class kv_decoder {
 public:
  using state_id = std::int32_t;

  /// Decodes with `model`'s current parameters. The model must outlive the decoder; changing its
  /// parameters makes existing states' caches stale (start new states after an update).
  explicit kv_decoder(const transformer& model) : m_(&model) {}

  std::int64_t vocab_size() const { return m_->config().vocab_size; }

  /// A new state holding `prompt` (1 <= size <= max_seq_len), prefilled in one pass.
  state_id begin(std::span<const std::int32_t> prompt) {
    return prefill(std::span(&prompt, 1), false, "xplor::model::kv_decoder::begin")[0];
  }

  /// A new state holding `tokens`, whose latent_slot positions take the rows of `latents` [n, C] in
  /// order (soft prompts, MemGen's latents), prefilled in one pass.
  state_id begin(std::span<const std::int32_t> tokens, view2d<const float> latents) {
    return prefill(std::span(&tokens, 1), false, "xplor::model::kv_decoder::begin", latents)[0];
  }

  /// New states holding prompts[i], all prefilled in one batched forward pass: the same states,
  /// bit for bit, as begin() on each prompt (every product and score is summed per row).
  std::vector<state_id> begin(std::span<const std::vector<std::int32_t>> prompts) {
    std::vector<std::span<const std::int32_t>> spans(prompts.begin(), prompts.end());
    return prefill(spans, true, "xplor::model::kv_decoder::begin");
  }

  /// Runs every later prefill and step with `hooks` (after_block sees the new rows [n, C] of the
  /// pass after each block and may edit them in place, as in transformer::forward); the keys and
  /// values of later layers and positions are computed from the edited stream. {} removes them.
  void set_hooks(const forward_hooks& hooks) { hooks_ = hooks; }

  /// n new states continuing `s`; they share its cache up to its current length.
  std::vector<state_id> fork(state_id s, int n) {
    constexpr const char* fn = "xplor::model::kv_decoder::fork";
    check_live(s, fn);
    xplor::detail::require(n >= 0, fn, "n = ", n, " is negative");
    std::vector<state_id> out;
    out.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      const state& parent = states_[s];  // re-read: new_state may reallocate states_
      auto seg = std::make_shared<segment>(parent.seg, parent.seg->rows, m_->config().n_layers);
      const auto hidden = parent.hidden;
      const std::int64_t length = parent.length;
      const state_id id = new_state(std::move(seg));
      states_[id].hidden = hidden;
      states_[id].length = length;
      out.push_back(id);
    }
    return out;
  }

  /// [n, V] next-token logits of each state (computed from its last hidden state).
  view2d<const float> logits(std::span<const state_id> ids) {
    const std::int64_t n = static_cast<std::int64_t>(ids.size()), C = m_->config().d_model;
    hidden_.resize(static_cast<std::size_t>(n * C));
    for (std::int64_t i = 0; i < n; ++i) {
      check_live(ids[i], "xplor::model::kv_decoder::logits");
      std::copy(states_[ids[i]].hidden.begin(), states_[ids[i]].hidden.end(), hidden_.begin() + i * C);
    }
    return unembed(n);
  }

  /// Appends tokens[i] to states[i] (distinct live states) and returns [n, V] logits after them.
  view2d<const float> step(std::span<const state_id> ids, std::span<const std::int32_t> tokens) {
    constexpr const char* fn = "xplor::model::kv_decoder::step";
    xplor::detail::require(tokens.size() == ids.size(), fn, "tokens has ", tokens.size(), " elements for ",
                           ids.size(), " states");
    check_tokens(tokens, fn, "tokens");
    return step_rows(ids, tokens, {}, fn);
  }

  /// Like step(), with caller-supplied input embeddings [n, C] instead of tokens (latent tokens).
  view2d<const float> step_embeddings(std::span<const state_id> ids, view2d<const float> embeddings) {
    constexpr const char* fn = "xplor::model::kv_decoder::step_embeddings";
    xplor::detail::require(embeddings.rows() == static_cast<std::int64_t>(ids.size()) &&
                               embeddings.cols() == m_->config().d_model,
                           fn, "embeddings is ", embeddings.rows(), " x ", embeddings.cols(), " for ",
                           ids.size(), " states and d_model = ", m_->config().d_model);
    latent_tokens_.assign(ids.size(), latent_slot);
    return step_rows(ids, latent_tokens_, embeddings, fn);
  }

  void release(std::span<const state_id> ids) {
    for (state_id s : ids) {
      check_live(s, "xplor::model::kv_decoder::release");
      states_[s] = state{};
      free_.push_back(s);
    }
  }
  void release(state_id s) { release(std::span<const state_id>(&s, 1)); }

  /// Tokens held by a state (prompt plus completion).
  std::int64_t length(state_id s) const {
    check_live(s, "xplor::model::kv_decoder::length");
    return states_[s].length;
  }
  std::int64_t live_states() const { return static_cast<std::int64_t>(states_.size() - free_.size()); }

  /// Bytes of keys and values held by the live states' segments (shared segments counted once).
  std::int64_t cache_bytes() const {
    std::unordered_set<const segment*> seen;
    std::int64_t floats = 0;
    for (const state& st : states_)
      for (const segment* g = st.seg.get(); g != nullptr && seen.insert(g).second; g = g->parent.get())
        for (std::size_t l = 0; l < g->k.size(); ++l)
          floats += static_cast<std::int64_t>(g->k[l].size() + g->v[l].size());
    return floats * static_cast<std::int64_t>(sizeof(float));
  }

 private:
  /// Keys and values [rows, C] per layer for a run of positions; the rows before them are the
  /// first parent_rows rows of the parent segment, recursively.
  struct segment {
    segment(std::shared_ptr<const segment> parent_, std::int64_t parent_rows_, int layers)
        : parent(std::move(parent_)), parent_rows(parent_rows_), k(layers), v(layers) {}
    std::shared_ptr<const segment> parent;
    std::int64_t parent_rows;
    std::vector<std::vector<float>> k, v;  // per layer, [rows, C]
    std::int64_t rows = 0;
  };
  struct state {
    std::shared_ptr<segment> seg;  // owned for appending; parents are read-only
    std::int64_t length = 0;
    std::vector<float> hidden;  // final-norm output after the last token [C]
  };
  struct row {
    state_id s;
    std::int64_t position;
  };
  /// The rows of one run() that see a segment: members_[first, first + size).
  struct group {
    const segment* seg;
    std::int64_t first, size, max_count, depth;  // depth: ancestors of the segment
  };
  /// A row seeing the first `count` rows of a group's segment, placed at `offset` in its scores.
  struct member {
    std::int64_t group, row, count, offset;
  };

  void check_live(state_id s, const char* fn) const {
    xplor::detail::require(s >= 0 && s < static_cast<state_id>(states_.size()) && states_[s].seg != nullptr,
                           fn, "state ", s, " is not a live state");
  }
  void check_tokens(std::span<const std::int32_t> tokens, const char* fn, const char* arg) const {
    for (std::size_t i = 0; i < tokens.size(); ++i)
      xplor::detail::require(tokens[i] >= 0 && tokens[i] < m_->config().vocab_size, fn, arg, "[", i,
                             "] = ", tokens[i], " is outside [0, vocab_size = ", m_->config().vocab_size,
                             ")");
  }

  state_id new_state(std::shared_ptr<segment> seg) {
    state_id id;
    if (!free_.empty()) {
      id = free_.back();
      free_.pop_back();
    } else {
      id = static_cast<state_id>(states_.size());
      states_.emplace_back();
    }
    states_[id].seg = std::move(seg);
    return id;
  }

  std::vector<state_id> prefill(std::span<const std::span<const std::int32_t>> prompts, bool batch,
                                const char* fn, view2d<const float> latents = {}) {
    std::vector<row> rows;
    std::vector<std::int32_t> tokens;
    for (std::size_t p = 0; p < prompts.size(); ++p) {
      const std::string arg = batch ? "prompts[" + std::to_string(p) + "]" : "prompt";
      xplor::detail::require(!prompts[p].empty(), fn, arg, " is empty");
      xplor::detail::require(static_cast<std::int64_t>(prompts[p].size()) <= m_->config().max_seq_len, fn,
                             arg, " has ", prompts[p].size(),
                             " tokens, max_seq_len = ", m_->config().max_seq_len);
      std::int64_t slots = 0;
      for (std::size_t i = 0; i < prompts[p].size(); ++i) {
        const std::int32_t t = prompts[p][i];
        if (t == latent_slot && latents.rows() > 0) {
          ++slots;
          continue;
        }
        xplor::detail::require(t >= 0 && t < m_->config().vocab_size, fn, arg, "[", i, "] = ", t,
                               " is outside [0, vocab_size = ", m_->config().vocab_size, ")");
      }
      xplor::detail::require(
          slots == latents.rows() && (slots == 0 || latents.cols() == m_->config().d_model), fn, arg, " has ",
          slots, " latent slots, latents is ", latents.rows(), " x ", latents.cols(),
          " (d_model = ", m_->config().d_model, ")");
    }
    std::vector<state_id> ids;
    ids.reserve(prompts.size());
    for (const auto& prompt : prompts) {
      ids.push_back(new_state(std::make_shared<segment>(nullptr, 0, m_->config().n_layers)));
      for (std::size_t i = 0; i < prompt.size(); ++i)
        rows.push_back({ids.back(), static_cast<std::int64_t>(i)});
      tokens.insert(tokens.end(), prompt.begin(), prompt.end());
    }
    run(rows, tokens, latents, /*want_logits=*/false);
    return ids;
  }

  view2d<const float> step_rows(std::span<const state_id> ids, std::span<const std::int32_t> tokens,
                                view2d<const float> embeddings, const char* fn) {
    std::vector<row> rows(ids.size());
    std::unordered_set<state_id> distinct;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      check_live(ids[i], fn);
      xplor::detail::require(distinct.insert(ids[i]).second, fn, "state ", ids[i],
                             " appears twice in one step");
      xplor::detail::require(states_[ids[i]].length < m_->config().max_seq_len, fn, "state ", ids[i],
                             " already holds ", states_[ids[i]].length, " tokens = max_seq_len");
      rows[i] = {ids[i], states_[ids[i]].length};
    }
    run(rows, tokens, embeddings, /*want_logits=*/true);
    return unembed(static_cast<std::int64_t>(ids.size()));
  }

  /// Runs the model over `rows` (each a new token of a state, in order within a state), appending
  /// their keys and values, and leaves each state's last hidden state in hidden_ (one row per
  /// input row when want_logits, else only in the states).
  void run(std::span<const row> rows, std::span<const std::int32_t> tokens, view2d<const float> embeddings,
           bool want_logits) {
    const transformer& m = *m_;
    const transformer_config& c = m.config();
    const std::int64_t n = static_cast<std::int64_t>(rows.size()), C = c.d_model, F = c.d_ff;
    if (n == 0) return;
    positions_.resize(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) positions_[i] = static_cast<std::int32_t>(rows[i].position);
    x_.resize(static_cast<std::size_t>(n * C));
    norm_.resize(x_.size());
    att_y_.resize(x_.size());
    stats_.resize(static_cast<std::size_t>(2 * n));
    qkv_.resize(static_cast<std::size_t>(n * 3 * C));
    a_.resize(static_cast<std::size_t>(n * F));
    b_.resize(c.mlp == mlp_kind::swiglu ? a_.size() : 0);
    act_.resize(a_.size());
    m.embed_rows(tokens.data(), positions_.data(), embeddings, n, x_.data());
    plan_attention(rows);
    // An attached LoRA adapter runs as in eval mode (no dropout).
    lora_weights lora = m.adapter() != nullptr ? *m.adapter() : lora_weights{};
    lora.training = false;
    for (int l = 0; l < c.n_layers; ++l) {
      const layer_offsets& o = m.layout().layers[l];
      m.norm_rows(x_.data(), o.attn_norm_w, o.attn_norm_b, norm_.data(), stats_.data(), stats_.data() + n, n);
      dense::linear_forward(norm_.data(), m.p(o.qkv), qkv_.data(), n, C, 3 * C);
      if (lora.layout != nullptr)
        lora_forward(lora, l, lora_site::qkv, norm_.data(), n, qkv_.data(), nullptr);
      m.rope_rows(qkv_.data(), positions_.data(), n, 1.0f);
      for (std::int64_t i = 0; i < n; ++i) {  // append keys and values
        segment& g = *states_[rows[i].s].seg;
        const float* r = qkv_.data() + i * 3 * C;
        g.k[l].insert(g.k[l].end(), r + C, r + 2 * C);
        g.v[l].insert(g.v[l].end(), r + 2 * C, r + 3 * C);
      }
      attend(l, n);
      dense::linear_forward(att_y_.data(), m.p(o.attn_out), x_.data(), n, C, C, /*accumulate=*/true);
      if (lora.layout != nullptr) lora_forward(lora, l, lora_site::out, att_y_.data(), n, x_.data(), nullptr);
      m.norm_rows(x_.data(), o.mlp_norm_w, o.mlp_norm_b, norm_.data(), stats_.data(), stats_.data() + n, n);
      m.mlp_forward(l, norm_.data(), a_.data(), b_.data(), act_.data(), x_.data(), n,
                    dense::forward_kernel::streamed);
      if (hooks_.after_block) hooks_.after_block(l, view2d<float>(x_.data(), {n, C}, {C, 1}));
    }
    for (std::int64_t i = 0; i < n; ++i) {
      states_[rows[i].s].seg->rows += 1;
      states_[rows[i].s].length = rows[i].position + 1;
    }
    m.norm_rows(x_.data(), m.layout().final_norm_w, m.layout().final_norm_b, norm_.data(), stats_.data(),
                stats_.data() + n, n);
    for (std::int64_t i = 0; i < n; ++i) {
      auto& hidden = states_[rows[i].s].hidden;
      hidden.assign(norm_.begin() + i * C, norm_.begin() + (i + 1) * C);  // the last row of a state wins
    }
    if (want_logits) hidden_.assign(norm_.begin(), norm_.begin() + n * C);
  }

  /// Groups the rows by the segments they see (the plan is the same for every layer): each
  /// segment's keys and values are then read once per head for all rows that see it (forks of
  /// one prompt share its prefix reads; a prefill is one causal block). Groups are ordered root
  /// first, and each row's scores are laid out in position order, so a row's sums run over its
  /// keys in position order whatever segments hold them.
  void plan_attention(std::span<const row> rows) {
    members_.clear();
    groups_.clear();
    group_of_.clear();
    visible_.assign(rows.size(), 0);
    for (std::size_t i = 0; i < rows.size(); ++i) {
      // The row's runs from its own segment (its rows up to and including this one) up to the
      // root; members are added root first.
      const std::size_t first = members_.size();
      const segment* g = states_[rows[i].s].seg.get();
      const std::int64_t earlier =
          rows[i].position - states_[rows[i].s].length;  // this state's rows before i
      for (std::int64_t count = g->rows + earlier + 1;; count = g->parent_rows, g = g->parent.get()) {
        auto [it, added] = group_of_.try_emplace(g, static_cast<std::int64_t>(groups_.size()));
        if (added) groups_.push_back({g, 0, 0, 0, 0});
        members_.push_back({it->second, static_cast<std::int64_t>(i), count, 0});
        if (g->parent == nullptr) break;
      }
      std::reverse(members_.begin() + static_cast<std::ptrdiff_t>(first), members_.end());
      for (std::size_t k = first; k < members_.size(); ++k) {
        members_[k].offset = visible_[i];
        visible_[i] += members_[k].count;
        groups_[members_[k].group].depth = static_cast<std::int64_t>(k - first);
      }
    }
    // Renumber the groups by depth (stable), then bucket the members by group.
    std::vector<std::int64_t> order(groups_.size()), rank(groups_.size());
    for (std::size_t g = 0; g < order.size(); ++g) order[g] = static_cast<std::int64_t>(g);
    std::stable_sort(order.begin(), order.end(),
                     [&](std::int64_t a, std::int64_t b) { return groups_[a].depth < groups_[b].depth; });
    std::vector<group> sorted(groups_.size());
    for (std::size_t k = 0; k < order.size(); ++k) {
      rank[order[k]] = static_cast<std::int64_t>(k);
      sorted[k] = groups_[order[k]];
    }
    groups_.swap(sorted);
    for (member& mb : members_) mb.group = rank[mb.group];
    std::stable_sort(members_.begin(), members_.end(),
                     [](const member& a, const member& b) { return a.group < b.group; });
    max_members_ = max_count_ = 0;
    for (std::size_t k = 0; k < members_.size(); ++k) {
      group& gr = groups_[members_[k].group];
      if (gr.size++ == 0) gr.first = static_cast<std::int64_t>(k);
      gr.max_count = std::max(gr.max_count, members_[k].count);
      max_members_ = std::max(max_members_, gr.size);
      max_count_ = std::max(max_count_, gr.max_count);
    }
    max_visible_ = *std::max_element(visible_.begin(), visible_.end());
  }

  /// att_y_ = softmax(q k^T / sqrt(D)) v for every row and head of layer l, per plan_attention.
  void attend(int l, std::int64_t n) {
    const transformer_config& c = m_->config();
    const std::int64_t C = c.d_model, H = c.n_heads, D = c.head_dim(), T = max_visible_;
    const float scale = 1.0f / std::sqrt(static_cast<float>(D));
    scores_.resize(static_cast<std::size_t>(n * H * T));
    const std::int64_t per_head = max_members_ * (D + max_count_);
    scratch_.resize(static_cast<std::size_t>(H * per_head));
    std::fill(att_y_.begin(), att_y_.begin() + n * C, 0.0f);
    // One task per head. Every score is one fixed-order dot product and every output sums its
    // keys in chain order, so a state's logits do not depend on the other states in the batch
    // (forked or separate, stepped alone or together: the same bits).
    dense::thread_independent_for(H, double(n) * double(T) * double(2 * C), [&](std::int64_t h) {
      float* q = scratch_.data() + h * per_head;
      float* s = q + max_members_ * D;
      for (const group& g : groups_) {
        const member* mem = members_.data() + g.first;
        for (std::int64_t r = 0; r < g.size; ++r)
          std::copy_n(qkv_.data() + mem[r].row * 3 * C + h * D, D, q + r * D);
        dense::dot_products(q, D, g.seg->k[l].data() + h * D, C, D, s, g.max_count, g.size, g.max_count);
        for (std::int64_t r = 0; r < g.size; ++r) {
          float* out = scores_.data() + (mem[r].row * H + h) * T + mem[r].offset;
          for (std::int64_t j = 0; j < mem[r].count; ++j) out[j] = s[r * g.max_count + j] * scale;
        }
      }
      for (std::int64_t i = 0; i < n; ++i) {  // softmax over each row's visible keys
        float* p = scores_.data() + (i * H + h) * T;
        const std::int64_t t = visible_[i];
        const float mx = *std::max_element(p, p + t);
        float sum = 0.0f;
        for (std::int64_t j = 0; j < t; ++j) sum += (p[j] = std::exp(p[j] - mx));
        const float inv = 1.0f / sum;
        for (std::int64_t j = 0; j < t; ++j) p[j] *= inv;
      }
      // y += p v over each group's keys, key by key (a value row is read once for all members).
      for (const group& g : groups_) {
        const member* mem = members_.data() + g.first;
        const float* v = g.seg->v[l].data() + h * D;
        for (std::int64_t j = 0; j < g.max_count; ++j, v += C)
          for (std::int64_t r = 0; r < g.size; ++r) {
            if (j >= mem[r].count) continue;
            const float p = scores_[(mem[r].row * H + h) * T + mem[r].offset + j];
            float* out = att_y_.data() + mem[r].row * C + h * D;
            for (std::int64_t d = 0; d < D; ++d) out[d] += p * v[d];
          }
      }
    });
  }

  view2d<const float> unembed(std::int64_t n) {
    const std::int64_t C = m_->config().d_model, V = m_->config().vocab_size;
    logits_.resize(static_cast<std::size_t>(n * V));
    if (n > 0) dense::linear_forward(hidden_.data(), m_->p(m_->layout().unembed()), logits_.data(), n, C, V);
    return make_view(static_cast<const float*>(logits_.data()), {n, V});
  }

  const transformer* m_;
  forward_hooks hooks_;
  std::vector<state> states_;
  std::vector<state_id> free_;
  // Workspaces reused across calls.
  std::vector<std::int32_t> positions_, latent_tokens_;
  std::vector<group> groups_;
  std::vector<member> members_;
  std::unordered_map<const segment*, std::int64_t> group_of_;
  std::vector<std::int64_t> visible_;  // keys each row sees
  std::int64_t max_members_ = 0, max_count_ = 0, max_visible_ = 0;
  std::vector<float> x_, norm_, att_y_, stats_, qkv_, a_, b_, act_, hidden_, logits_, scores_, scratch_;
};

static_assert(decode_policy<kv_decoder>);

}  // namespace xplor::model
