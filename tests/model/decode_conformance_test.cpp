// check_decode_policy (core/decode_check.hpp) on every decode policy xplor ships — the reference
// transformer's KV decoder, the Dragon Hatchling's recurrent decoder, the scripted policy — and on
// adapters broken in one way each, which it must reject (so the check can fail).
#include "xplor/core/decode_check.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "xplor/model/bdh.hpp"
#include "xplor/model/bdh_decode.hpp"
#include "xplor/model/decode.hpp"
#include "xplor/model/transformer.hpp"
#include "xplor/sample/scripted_policy.hpp"

namespace xm = xplor::model;

namespace {

constexpr std::int64_t vocab = 11;
const std::vector<std::int32_t> prompt{3, 1, 4, 1, 5}, continuation{9, 2, 6};

/// Logits that depend on every token of the history and its order.
void history_logits(std::span<const std::int32_t> history, std::span<float> out) {
  double h = 0;
  for (std::size_t k = 0; k < history.size(); ++k) h += double(history[k] + 1) * double(k + 1) * 0.37;
  for (std::size_t v = 0; v < out.size(); ++v) out[v] = static_cast<float>(std::sin(h + 0.11 * double(v)));
}

xm::transformer_config small_transformer() {
  xm::transformer_config c;
  c.vocab_size = vocab;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 32;
  c.max_seq_len = 32;
  return c;
}

/// A scripted policy with one defect, to show that check_decode_policy notices it.
enum class defect {
  none,
  prefill_drops_first,
  fork_loses_last,
  fork_aliases,
  batch_leak,
  logits_writes,
  leaky_release
};

class broken {
 public:
  using state_id = std::int32_t;
  explicit broken(defect d) : d_(d), p_(vocab, history_logits) {}
  std::int64_t vocab_size() const { return vocab; }
  state_id begin(std::span<const std::int32_t> prompt_tokens) {
    // Only prompts longer than the checker's own begin(prompt) lose their first token.
    if (d_ == defect::prefill_drops_first && prompt_tokens.size() > prompt.size())
      return p_.begin(prompt_tokens.subspan(1));
    return p_.begin(prompt_tokens);
  }
  std::vector<state_id> fork(state_id s, int n) {
    if (d_ == defect::fork_aliases && n > 1) return std::vector<state_id>(static_cast<std::size_t>(n), s);
    if (d_ == defect::fork_loses_last && n > 0) {
      std::vector<state_id> out;
      for (int i = 0; i < n; ++i) out.push_back(p_.begin(std::span(prompt).first(prompt.size() - 1)));
      return out;
    }
    return p_.fork(s, n);
  }
  xplor::view2d<const float> logits(std::span<const state_id> s) {
    const auto v = p_.logits(s);
    if (d_ != defect::logits_writes) return v;
    read_.assign(&v(0, 0), &v(0, 0) + v.rows() * v.cols());
    const std::vector<std::int32_t> zeros(s.size(), 0);
    (void)p_.step(s, zeros);  // the defect: a read that appends a token
    return xplor::make_view(static_cast<const float*>(read_.data()), {v.rows(), v.cols()});
  }
  xplor::view2d<const float> step(std::span<const state_id> s, std::span<const std::int32_t> t) {
    if (d_ != defect::batch_leak || s.size() < 2) return p_.step(s, t);
    // The defect: every row after the first sees the previous row's token too.
    std::vector<std::int32_t> t2(t.begin(), t.end());
    for (std::size_t i = 1; i < s.size(); ++i) t2[i] = (t[i] + t[i - 1]) % static_cast<std::int32_t>(vocab);
    return p_.step(s, t2);
  }
  void release(std::span<const state_id> s) {
    if (d_ != defect::leaky_release) p_.release(s);
  }
  std::int64_t live_states() const { return p_.live_states(); }

 private:
  defect d_;
  xplor::sample::scripted_policy p_;
  std::vector<float> read_;
};

}  // namespace

TEST_CASE("decode conformance: the reference transformer's KV decoder", "[conformance]") {
  const xm::transformer model(small_transformer(), 7);
  xm::kv_decoder dec(model);
  const auto rep = xplor::check_decode_policy(dec, prompt, continuation, 1e-5);
  CHECK(rep.states_released == 11);  // full, parent, walker, 2 forks, 2 x (fresh + solo), probe, plain
  CHECK(dec.live_states() == 0);
  CHECK(rep.fork_vs_parent == 0.0);  // a fork shares its parent's prefix: the same logits exactly
}

TEST_CASE("decode conformance: the Dragon Hatchling's recurrent decoder", "[conformance]") {
  const xm::bdh model(xm::bdh_matching(small_transformer()), 7);
  xm::bdh_decoder dec(model);
  const auto rep = xplor::check_decode_policy(dec, prompt, continuation, 1e-5);
  CHECK(dec.live_states() == 0);
  CHECK(dec.cache_bytes() == 0);
  CHECK(rep.fork_vs_parent == 0.0);  // a fork copies the state
  CHECK(rep.parent_after_forks == 0.0);
}

TEST_CASE("decode conformance: the scripted policy, exactly", "[conformance]") {
  xplor::sample::scripted_policy p(vocab, history_logits);
  const auto rep = xplor::check_decode_policy(p, prompt, continuation, 0.0);
  CHECK(rep.prefill_vs_steps == 0.0);
  CHECK(rep.batch_vs_single == 0.0);
  CHECK(p.live_states() == 0);
}

TEST_CASE("decode conformance rejects adapters with one defect each", "[conformance]") {
  broken sound(defect::none);
  CHECK(xplor::check_decode_policy(sound, prompt, continuation, 0.0).states_released == 11);
  const auto rejects = [](defect d, const char* what) {
    broken p(d);
    CHECK_THROWS_WITH(xplor::check_decode_policy(p, prompt, continuation, 1e-6), Catch::Contains(what));
  };
  rejects(defect::prefill_drops_first, "prefill == steps");
  rejects(defect::fork_loses_last, "a fresh fork has its parent's logits");
  rejects(defect::fork_aliases, "independent decode of prompt + token");
  rejects(defect::batch_leak, "prompt + token");  // row 1 of the batch sees row 0's token
  rejects(defect::logits_writes, "parent's logits");
  rejects(defect::leaky_release, "release of");
}

TEST_CASE("decode conformance: bad arguments name themselves", "[conformance]") {
  xplor::sample::scripted_policy p(vocab, history_logits);
  const std::vector<std::int32_t> empty, one{1}, out_of_range{1, 11};
  CHECK_THROWS_WITH(xplor::check_decode_policy(p, empty, continuation), Catch::Contains("prompt is empty"));
  CHECK_THROWS_WITH(xplor::check_decode_policy(p, prompt, one), Catch::Contains("continuation has 1 tokens"));
  CHECK_THROWS_WITH(xplor::check_decode_policy(p, prompt, out_of_range),
                    Catch::Contains("token 11 is outside"));
  CHECK_THROWS_WITH(xplor::check_decode_policy(p, prompt, continuation, -1.0),
                    Catch::Contains("tolerance = -1"));
}
