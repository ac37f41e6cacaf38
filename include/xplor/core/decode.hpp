// The decode concept: the one boundary between a model and the algorithms that sample from it
// (sample/, search/, env/). A model is anything with states that can be started from a prompt,
// forked without copying their prefix, stepped in batches and released. The reference
// transformer's kv_decoder implements it; a scripted policy implements it in tests; a user's
// libtorch model implements it with a thin wrapper.
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <vector>

#include "xplor/core/view.hpp"

namespace xplor {

/// P::state_id names one decoding state (a prefix and its cache). Calls:
///   vocab_size()              -> number of logits per row
///   begin(prompt)             -> a state holding the prompt (prefilled once)
///   fork(state, n)            -> n states continuing the same prefix (sharing it, not copying it)
///   logits(states)            -> [n, vocab] next-token logits of each state, no state change
///   step(states, tokens)      -> append tokens[i] to states[i]; [n, vocab] logits after them
///   release(states)           -> the states are gone; their ids may be reused
/// The returned views stay valid until the next call on the same object.
template <class P>
concept decode_policy = requires(P& p, const P& cp, std::span<const std::int32_t> tokens,
                                 typename P::state_id s, std::span<const typename P::state_id> states,
                                 int n) {
  { cp.vocab_size() } -> std::convertible_to<std::int64_t>;
  { p.begin(tokens) } -> std::same_as<typename P::state_id>;
  { p.fork(s, n) } -> std::same_as<std::vector<typename P::state_id>>;
  { p.logits(states) } -> std::same_as<view2d<const float>>;
  { p.step(states, tokens) } -> std::same_as<view2d<const float>>;
  p.release(states);
};

}  // namespace xplor
