// Recurrent decoding for the Dragon Hatchling (bdh.hpp), implementing xplor::decode_policy. BDH's
// attention is linear, so a sequence's whole past is one state per layer and head,
// S = sum_s rope(xs_s)^T x_s (N x D), plus the next position (RoPE is absolute): the output at
// position t is rope(xs_t) S before S takes t's own term (strictly causal). A state's size is
// fixed, L H N D + D floats whatever its length, and fork copies it (memory per fork does not grow
// with the prompt or the response). A prefill runs the parallel form over chunks of the prompt.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "xplor/core/decode.hpp"
#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/model/bdh.hpp"

namespace xplor::model {

class bdh_decoder {
 public:
  using state_id = std::int32_t;

  /// Decodes with `model`'s current parameters (the model must outlive the decoder; states made
  /// before a parameter update are stale). Dropout never applies.
  explicit bdh_decoder(const bdh& model) : m_(&model) {}

  std::int64_t vocab_size() const { return m_->config().vocab_size; }

  /// A new state holding `prompt` (non-empty), prefilled in one pass.
  state_id begin(std::span<const std::int32_t> prompt) {
    return prefill(std::span(&prompt, 1), false, "xplor::model::bdh_decoder::begin")[0];
  }

  /// New states holding prompts[i], prefilled in one batched pass.
  std::vector<state_id> begin(std::span<const std::vector<std::int32_t>> prompts) {
    std::vector<std::span<const std::int32_t>> spans(prompts.begin(), prompts.end());
    return prefill(spans, true, "xplor::model::bdh_decoder::begin");
  }

  /// Runs every later prefill and step with `hooks`: after_block(l, rows) sees the new rows [n, D]
  /// of the residual after layer l and may edit them; {} removes them. When a hook throws, the
  /// states of that prefill or step are released (their S holds the new token in some layers
  /// only) and the exception propagates.
  void set_hooks(const forward_hooks& hooks) { hooks_ = hooks; }

  /// Prompts are prefilled in chunks of at most `tokens` (default 256): each chunk runs the
  /// parallel form over its rows on top of the state the earlier chunks left.
  void set_prefill_chunk(std::int64_t tokens) {
    xplor::detail::require(tokens > 0, "xplor::model::bdh_decoder::set_prefill_chunk", "tokens = ", tokens,
                           " must be positive");
    prefill_chunk_ = tokens;
  }

  /// n new states continuing `s`, each with its own copy of s's recurrent state.
  std::vector<state_id> fork(state_id s, int n) {
    constexpr const char* fn = "xplor::model::bdh_decoder::fork";
    check_live(s, fn);
    xplor::detail::require(n >= 0, fn, "n = ", n, " is negative");
    std::vector<state_id> out;
    out.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      const state_id id = new_state();
      states_[id] = states_[s];  // after new_state: it may reallocate states_
      out.push_back(id);
    }
    return out;
  }

  /// [n, V] next-token logits of each state, no state change.
  view2d<const float> logits(std::span<const state_id> ids) {
    const std::int64_t n = static_cast<std::int64_t>(ids.size()), D = m_->config().n_embd;
    hidden_.resize(static_cast<std::size_t>(n * D));
    for (std::int64_t i = 0; i < n; ++i) {
      check_live(ids[i], "xplor::model::bdh_decoder::logits");
      std::copy(states_[ids[i]].hidden.begin(), states_[ids[i]].hidden.end(), hidden_.begin() + i * D);
    }
    return unembed(n);
  }

  /// Appends tokens[i] to states[i] (distinct live states); returns [n, V] logits after them.
  view2d<const float> step(std::span<const state_id> ids, std::span<const std::int32_t> tokens) {
    constexpr const char* fn = "xplor::model::bdh_decoder::step";
    xplor::detail::require(tokens.size() == ids.size(), fn, "tokens has ", tokens.size(), " elements for ",
                           ids.size(), " states");
    std::unordered_set<state_id> distinct;
    std::vector<chunk> chunks;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      check_live(ids[i], fn);
      xplor::detail::require(distinct.insert(ids[i]).second, fn, "state ", ids[i],
                             " appears twice in one step");
      check_token(tokens[i], fn, "tokens", i);
      chunks.push_back({ids[i], static_cast<std::int64_t>(i), 1});
    }
    run_or_release(chunks, tokens, ids);
    const std::int64_t n = static_cast<std::int64_t>(ids.size()), D = m_->config().n_embd;
    hidden_.resize(static_cast<std::size_t>(n * D));
    for (std::int64_t i = 0; i < n; ++i)
      std::copy(states_[ids[i]].hidden.begin(), states_[ids[i]].hidden.end(), hidden_.begin() + i * D);
    return unembed(n);
  }

  void release(std::span<const state_id> ids) {
    for (state_id s : ids) {
      check_live(s, "xplor::model::bdh_decoder::release");
      states_[s] = state{};
      free_.push_back(s);
    }
  }
  void release(state_id s) { release(std::span<const state_id>(&s, 1)); }

  /// Tokens held by a state (prompt plus completion): the position of its next token.
  std::int64_t length(state_id s) const {
    check_live(s, "xplor::model::bdh_decoder::length");
    return states_[s].length;
  }
  std::int64_t live_states() const { return static_cast<std::int64_t>(states_.size() - free_.size()); }

  /// Bytes of one state: the recurrent S of every layer and head (L H N D floats) and the last
  /// residual row (D floats), whatever the state's length.
  std::int64_t state_bytes() const {
    const bdh_config& c = m_->config();
    return (std::int64_t{c.n_layer} * c.n_head * c.neurons() * c.n_embd + c.n_embd) *
           static_cast<std::int64_t>(sizeof(float));
  }
  /// Bytes held by the live states.
  std::int64_t cache_bytes() const { return live_states() * state_bytes(); }

  /// A state's recurrent matrix S of `layer` and `head`, [N, D] (for tests and probes).
  view2d<const float> synapses(state_id s, int layer, int head) const {
    constexpr const char* fn = "xplor::model::bdh_decoder::synapses";
    check_live(s, fn);
    const bdh_config& c = m_->config();
    xplor::detail::require(layer >= 0 && layer < c.n_layer && head >= 0 && head < c.n_head, fn,
                           "layer = ", layer, ", head = ", head, " is outside [0, ", c.n_layer, ") x [0, ",
                           c.n_head, ")");
    const std::int64_t N = c.neurons(), D = c.n_embd;
    return make_view(states_[s].S.data() + (std::int64_t{layer} * c.n_head + head) * N * D, {N, D});
  }

 private:
  struct state {
    std::vector<float> S;       // [L, H, N, D]; empty: a free slot
    std::vector<float> hidden;  // the last row's final residual [D]
    std::int64_t length = 0;
  };
  /// Rows [first, first + count) of one run belong to state s, in order.
  struct chunk {
    state_id s;
    std::int64_t first, count;
  };

  void check_live(state_id s, const char* fn) const {
    xplor::detail::require(s >= 0 && s < static_cast<state_id>(states_.size()) && !states_[s].S.empty(), fn,
                           "state ", s, " is not a live state");
  }
  void check_token(std::int32_t t, const char* fn, const std::string& arg, std::size_t i) const {
    xplor::detail::require(t != latent_slot, fn, arg, "[", i,
                           "] is latent_slot: the decoder takes token ids only (latents enter through "
                           "bdh::forward)");
    xplor::detail::require(t >= 0 && t < m_->config().vocab_size, fn, arg, "[", i, "] = ", t,
                           " is outside [0, vocab_size = ", m_->config().vocab_size, ")");
  }

  state_id new_state() {
    state_id id;
    if (!free_.empty()) {
      id = free_.back();
      free_.pop_back();
    } else {
      id = static_cast<state_id>(states_.size());
      states_.emplace_back();
    }
    const bdh_config& c = m_->config();
    states_[id].S.assign(
        static_cast<std::size_t>(std::int64_t{c.n_layer} * c.n_head * c.neurons() * c.n_embd), 0.0f);
    states_[id].hidden.assign(static_cast<std::size_t>(c.n_embd), 0.0f);
    states_[id].length = 0;
    return id;
  }

  std::vector<state_id> prefill(std::span<const std::span<const std::int32_t>> prompts, bool batch,
                                const char* fn) {
    for (std::size_t p = 0; p < prompts.size(); ++p) {
      const std::string arg = batch ? "prompts[" + std::to_string(p) + "]" : "prompt";
      xplor::detail::require(!prompts[p].empty(), fn, arg, " is empty");
      for (std::size_t i = 0; i < prompts[p].size(); ++i) check_token(prompts[p][i], fn, arg, i);
    }
    std::vector<state_id> ids;
    std::int64_t longest = 0;
    for (const auto& prompt : prompts) {
      ids.push_back(new_state());
      longest = std::max(longest, static_cast<std::int64_t>(prompt.size()));
    }
    // Chunks of at most prefill_chunk_ tokens per prompt: the parallel form inside a chunk costs
    // its length squared, the state carries the rest.
    std::vector<chunk> chunks;
    std::vector<std::int32_t> tokens;
    for (std::int64_t lo = 0; lo < longest; lo += prefill_chunk_) {
      chunks.clear();
      tokens.clear();
      for (std::size_t p = 0; p < prompts.size(); ++p) {
        const auto size = static_cast<std::int64_t>(prompts[p].size());
        if (lo >= size) continue;
        const std::int64_t count = std::min(prefill_chunk_, size - lo);
        chunks.push_back({ids[p], static_cast<std::int64_t>(tokens.size()), count});
        tokens.insert(tokens.end(), prompts[p].begin() + lo, prompts[p].begin() + lo + count);
      }
      run_or_release(chunks, tokens, ids);
    }
    return ids;
  }

  /// run(), releasing `ids` when it throws (a throwing hook): their S is then updated in some
  /// layers and not in others, so they must not be used again.
  void run_or_release(std::span<const chunk> chunks, std::span<const std::int32_t> tokens,
                      std::span<const state_id> ids) {
    try {
      run(chunks, tokens);
    } catch (...) {
      release(ids);
      throw;
    }
  }

  /// Runs the model over the chunks' rows: within a chunk, the parallel form (strictly causal
  /// scores between its rows) plus the state's past through S; then S takes the chunk's terms.
  void run(std::span<const chunk> chunks, std::span<const std::int32_t> tokens) {
    const bdh& m = *m_;
    const bdh_config& c = m.config();
    const std::int64_t n = static_cast<std::int64_t>(tokens.size()), D = c.n_embd, H = c.n_head,
                       N = c.neurons(), HN = H * N, HD = H * D, half = N / 2;
    if (n == 0) return;
    auto size = [](std::vector<float>& v, std::int64_t k) { v.resize(static_cast<std::size_t>(k)); };
    size(x_, n * D);
    size(emb_, n * D);
    size(stats_, 2 * n * H);
    size(xs_, n * HN);
    size(qr_, n * HN);
    size(a_, n * HD);
    size(yn_, n * HD);
    size(ys_, n * HN);
    size(xy_, n * HN);
    size(ymlp_, n * D);
    size(y_, n * D);
    size(s_, n * D);
    size(cos_, n * half);
    size(sin_, n * half);
    m.embed_rows(tokens.data(), {}, n, emb_.data());
    m.norm(emb_.data(), x_.data(), stats_.data(), stats_.data() + n, n);
    for (const chunk& ch : chunks)
      for (std::int64_t i = 0; i < ch.count; ++i)
        bdh_rope_angles(states_[ch.s].length + i, m.freqs_, cos_.data() + (ch.first + i) * half,
                        sin_.data() + (ch.first + i) * half);
    const auto G = static_cast<std::int64_t>(chunks.size());
    std::int64_t max_count = 0;
    for (const chunk& ch : chunks) max_count = std::max(max_count, ch.count);
    for (int l = 0; l < c.n_layer; ++l) {
      m.encode(x_.data(), D, 0, m.o_.encoder, xs_.data(), n);
      for_each_index(
          cpu, n * H,
          [&](std::int64_t rh) {
            const std::int64_t r = rh / H, h = rh % H;
            bdh_rope_row(xs_.data() + r * HN + h * N, cos_.data() + r * half, sin_.data() + r * half,
                         qr_.data() + r * HN + h * N, N);
          },
          N);
      std::fill(a_.begin(), a_.end(), 0.0f);
      dense::thread_independent_for(G * H, double(n) * double(H) * double(N) * double(2 * D + max_count),
                                    [&](std::int64_t gh) {
                                      const chunk& ch = chunks[static_cast<std::size_t>(gh / H)];
                                      attend(l, ch, gh % H);
                                    });
      const bdh::tail_buffers b{
          a_.data(),  stats_.data(), stats_.data() + n * H, yn_.data(),        ys_.data(),
          xy_.data(), ymlp_.data(),  stats_.data(),         stats_.data() + n, y_.data(),
          s_.data(),  stats_.data(), stats_.data() + n,     emb_.data()};
      m.layer_tail(x_.data(), xs_.data(), nullptr, b, n);
      std::swap(x_, emb_);  // the layer's output becomes x; emb_ is scratch from here on
      if (hooks_.after_block) hooks_.after_block(l, view2d<float>(x_.data(), {n, D}, {D, 1}));
    }
    for (const chunk& ch : chunks) {
      state& st = states_[ch.s];
      st.length += ch.count;
      const float* last = x_.data() + (ch.first + ch.count - 1) * D;
      st.hidden.assign(last, last + D);
    }
  }

  /// Head h of layer l for one chunk: a = QR S + tril(QR QR^T, -1) x over the chunk, then
  /// S += QR^T x. A short chunk (a decoding step) streams S once per row and skips the rows of S
  /// whose neuron is silent (xs is sparse and non-negative); a long one (a prefill) goes through
  /// the blocked products.
  void attend(int l, const chunk& ch, std::int64_t h) {
    const bdh_config& c = m_->config();
    const std::int64_t D = c.n_embd, H = c.n_head, N = c.neurons(), HN = H * N, HD = H * D, k = ch.count;
    float* S = states_[ch.s].S.data() + (std::int64_t{l} * H + h) * N * D;
    const float* q = qr_.data() + ch.first * HN + h * N;
    const float* x = x_.data() + ch.first * D;
    float* a = a_.data() + ch.first * HD + h * D;
    constexpr std::int64_t short_chunk = 8;
    if (k > 1) {
      std::vector<float> scores(static_cast<std::size_t>(k * k), 0.0f);
      for (std::int64_t t = 1; t < k; ++t)
        dense::dot_products(q + t * HN, HN, q, HN, N, scores.data() + t * k, k, 1, t);
      bdh_ops::mm(scores.data(), k, x, D, a, HD, k, D, k);
    }
    if (k > short_chunk) {
      if (states_[ch.s].length > 0) bdh_ops::mm(q, HN, S, D, a, HD, k, D, N);
      bdh_ops::mm_tn(q, HN, x, D, S, D, N, D, k);
      return;
    }
    if (k == 1) {  // one pass over S: read row n into a, then add the token's term to it
      for (std::int64_t n = 0; n < N; ++n) {
        const float w = q[n];
        if (w == 0.0f) continue;
        float* Sn = S + n * D;
        for (std::int64_t d = 0; d < D; ++d) a[d] += w * Sn[d];
        for (std::int64_t d = 0; d < D; ++d) Sn[d] += w * x[d];
      }
      return;
    }
    if (states_[ch.s].length > 0)
      for (std::int64_t t = 0; t < k; ++t) {
        float* at = a + t * HD;
        const float* qt = q + t * HN;
        for (std::int64_t n = 0; n < N; ++n) {
          const float w = qt[n];
          if (w == 0.0f) continue;
          const float* Sn = S + n * D;
          for (std::int64_t d = 0; d < D; ++d) at[d] += w * Sn[d];
        }
      }
    for (std::int64_t t = 0; t < k; ++t) {
      const float* qt = q + t * HN;
      const float* xt = x + t * D;
      for (std::int64_t n = 0; n < N; ++n) {
        const float w = qt[n];
        if (w == 0.0f) continue;
        float* Sn = S + n * D;
        for (std::int64_t d = 0; d < D; ++d) Sn[d] += w * xt[d];
      }
    }
  }

  view2d<const float> unembed(std::int64_t n) {
    const std::int64_t D = m_->config().n_embd, V = m_->config().vocab_size;
    logits_.assign(static_cast<std::size_t>(n * V), 0.0f);
    if (n > 0) bdh_ops::mm(hidden_.data(), D, m_->p(m_->o_.lm_head), V, logits_.data(), V, n, V, D);
    return make_view(static_cast<const float*>(logits_.data()), {n, V});
  }

  const bdh* m_;
  forward_hooks hooks_;
  std::int64_t prefill_chunk_ = 256;
  std::vector<state> states_;
  std::vector<state_id> free_;
  std::vector<float> x_, emb_, stats_, xs_, qr_, a_, yn_, ys_, xy_, ymlp_, y_, s_, cos_, sin_, hidden_,
      logits_;
};

static_assert(decode_policy<bdh_decoder>);

}  // namespace xplor::model
