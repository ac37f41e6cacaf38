// N-d access to a rollout_batch with xtensor: non-owning 1-D views of its per-token arrays, and
// padded [prompts, max completions per prompt, max length] arrays with a mask, the layout a
// trainer that wants rectangular tensors (or a libtorch/NumPy bridge) expects.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>
#include <xtensor/xadapt.hpp>
#include <xtensor/xtensor.hpp>

#include "xplor/sample/rollout.hpp"

namespace xplor::sample {

/// Shape of the padded arrays: [prompts, max completions of a prompt, max completion length].
inline std::array<std::size_t, 3> padded_shape(const rollout_batch& b) {
  std::size_t prompts = b.group_offsets.size() - 1, width = 0, length = 0;
  for (std::size_t i = 0; i < prompts; ++i)
    width = std::max(width, static_cast<std::size_t>(b.group_offsets[i + 1] - b.group_offsets[i]));
  for (std::int64_t c = 0; c < b.num_completions(); ++c)
    length = std::max(length, static_cast<std::size_t>(b.length(c)));
  return {prompts, width, length};
}

/// Per-token values (tokens, logprobs, entropies, ... of `b`) as a padded [P, N, T] array; slots
/// past a completion's end or past a prompt's count hold `pad`.
template <class T>
xt::xtensor<T, 3> padded(const rollout_batch& b, const std::vector<T>& per_token, T pad) {
  xplor::detail::require(per_token.size() == b.tokens.size(), "xplor::sample::padded", "per_token has ",
                         per_token.size(), " values for ", b.tokens.size(), " tokens");
  xt::xtensor<T, 3> out(padded_shape(b), pad);
  for (std::int64_t c = 0; c < b.num_completions(); ++c) {
    const auto prompt = static_cast<std::size_t>(b.prompt_index[static_cast<std::size_t>(c)]);
    const auto slot = static_cast<std::size_t>(c - b.group_offsets[prompt]);
    for (std::int64_t t = 0; t < b.length(c); ++t)
      out(prompt, slot, static_cast<std::size_t>(t)) = per_token[static_cast<std::size_t>(b.offsets[c] + t)];
  }
  return out;
}

/// 1 where padded() holds a real token, 0 at padding.
inline xt::xtensor<std::uint8_t, 3> padded_mask(const rollout_batch& b) {
  const std::vector<std::uint8_t> ones(b.tokens.size(), 1);
  return padded<std::uint8_t>(b, ones, 0);
}

/// Non-owning 1-D views of the flat per-token arrays (no copy; valid while `b` lives).
inline auto token_view(const rollout_batch& b) {
  return xt::adapt(b.tokens.data(), b.tokens.size(), xt::no_ownership(),
                   std::array<std::size_t, 1>{b.tokens.size()});
}
inline auto logprob_view(const rollout_batch& b) {
  return xt::adapt(b.logprobs.data(), b.logprobs.size(), xt::no_ownership(),
                   std::array<std::size_t, 1>{b.logprobs.size()});
}

}  // namespace xplor::sample
