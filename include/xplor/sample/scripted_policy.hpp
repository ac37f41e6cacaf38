// A decode_policy whose logits are a function of the token history: exact, model-free tests of
// samplers, rollout drivers and tree search. Each state keeps its full history (forks copy it),
// so it is for tests and toy problems, not for long sequences.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "xplor/core/decode.hpp"
#include "xplor/core/error.hpp"
#include "xplor/core/view.hpp"

namespace xplor::sample {

class scripted_policy {
 public:
  using state_id = std::int32_t;
  /// logits_fn(history, out): writes the next-token logits [vocab] after `history`.
  using logits_fn = std::function<void(std::span<const std::int32_t> history, std::span<float> out)>;

  scripted_policy(std::int64_t vocab, logits_fn fn) : vocab_(vocab), fn_(std::move(fn)) {
    xplor::detail::require(vocab > 0, "xplor::sample::scripted_policy", "vocab = ", vocab,
                           " must be positive");
  }

  std::int64_t vocab_size() const { return vocab_; }

  state_id begin(std::span<const std::int32_t> prompt) {
    histories_.emplace_back(prompt.begin(), prompt.end());
    live_.push_back(true);
    return static_cast<state_id>(histories_.size() - 1);
  }
  std::vector<state_id> fork(state_id s, int n) {
    check(s);
    std::vector<state_id> out;
    for (int i = 0; i < n; ++i) {
      histories_.push_back(histories_[s]);
      live_.push_back(true);
      out.push_back(static_cast<state_id>(histories_.size() - 1));
    }
    return out;
  }
  view2d<const float> logits(std::span<const state_id> states) {
    logits_.assign(states.size() * static_cast<std::size_t>(vocab_), 0.0f);
    for (std::size_t i = 0; i < states.size(); ++i) {
      check(states[i]);
      fn_(histories_[states[i]],
          std::span<float>(logits_).subspan(i * vocab_, static_cast<std::size_t>(vocab_)));
    }
    return make_view(static_cast<const float*>(logits_.data()),
                     {static_cast<std::int64_t>(states.size()), vocab_});
  }
  view2d<const float> step(std::span<const state_id> states, std::span<const std::int32_t> tokens) {
    xplor::detail::require(states.size() == tokens.size(), "xplor::sample::scripted_policy::step",
                           "tokens has ", tokens.size(), " elements for ", states.size(), " states");
    for (std::size_t i = 0; i < states.size(); ++i) {
      check(states[i]);
      histories_[states[i]].push_back(tokens[i]);
    }
    return logits(states);
  }
  void release(std::span<const state_id> states) {
    for (state_id s : states) {
      check(s);
      live_[s] = false;
      histories_[s].clear();
    }
  }
  std::int64_t live_states() const {
    std::int64_t n = 0;
    for (bool b : live_) n += b;
    return n;
  }

 private:
  void check(state_id s) const {
    xplor::detail::require(s >= 0 && s < static_cast<state_id>(live_.size()) && live_[s],
                           "xplor::sample::scripted_policy", "state ", s, " is not a live state");
  }
  std::int64_t vocab_;
  logits_fn fn_;
  std::vector<std::vector<std::int32_t>> histories_;
  std::vector<bool> live_;
  std::vector<float> logits_;
};

static_assert(decode_policy<scripted_policy>);

}  // namespace xplor::sample
