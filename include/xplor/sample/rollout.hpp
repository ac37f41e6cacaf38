// The rollout driver: N completions per prompt from any decode_policy (the reference
// transformer's kv_decoder, a scripted policy, a user's model), BroRL-scale N in bounded memory.
// Each prompt is prefilled once and its completions fork the prompt state in chunks; every token
// is drawn from the Philox stream (seed, stream_id(prompt, sample)) at draw index = step, so the
// completions do not depend on chunking, batching or prefix sharing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "xplor/core/decode.hpp"
#include "xplor/core/error.hpp"
#include "xplor/core/random.hpp"
#include "xplor/sample/processors.hpp"

namespace xplor::sample {

enum class finish_reason : std::uint8_t { eos, stop, length };

/// Completions of all prompts, ragged: completion c owns tokens [offsets[c], offsets[c+1]); the
/// completions of prompt i are [group_offsets[i], group_offsets[i+1]) (the layout the ragged
/// advantages take). Per token: the drawn token, its log-probability (processed or raw, per
/// sampling_params::logprobs), the processed log-probability, the raw one and the entropy of the
/// processed distribution.
struct rollout_batch {
  std::vector<std::int32_t> tokens = {};
  std::vector<float> logprobs, processed_logprobs, raw_logprobs, entropies;
  std::vector<std::int64_t> offsets{0};
  std::vector<std::int64_t> group_offsets{0};
  std::vector<std::int32_t> prompt_index, sample_index;
  std::vector<finish_reason> finish = {};

  std::int64_t num_completions() const { return static_cast<std::int64_t>(finish.size()); }
  std::int64_t length(std::int64_t c) const { return offsets[c + 1] - offsets[c]; }
  std::span<const std::int32_t> completion(std::int64_t c) const {
    return std::span<const std::int32_t>(tokens).subspan(static_cast<std::size_t>(offsets[c]),
                                                         static_cast<std::size_t>(length(c)));
  }
};

struct generate_options {
  int chunk_size = 64;       // completions decoded together; bounds the memory of N = 512
  bool share_prefix = true;  // fork the prompt state (false: prefill the prompt per completion)
  /// Prompt i's sample j draws from stream_id(first_prompt + i, j): a batch split into parts
  /// (data-parallel ranks) draws what the whole batch would when each part passes its offset.
  std::uint32_t first_prompt = 0;
};

namespace detail {
inline void collect_row(rollout_batch& b, std::int32_t token, float processed, float raw, float entropy,
                        logprobs_mode mode) {
  b.tokens.push_back(token);
  b.processed_logprobs.push_back(processed);
  b.raw_logprobs.push_back(raw);
  b.logprobs.push_back(mode == logprobs_mode::raw ? raw : processed);
  b.entropies.push_back(entropy);
}
}  // namespace detail

/// Samples counts[i] completions of prompts[i] (counts of size 1: the same count for all).
template <decode_policy Policy>
rollout_batch generate(Policy& policy, std::span<const std::vector<std::int32_t>> prompts,
                       std::span<const int> counts, const sampling_params& params, std::uint64_t seed,
                       const generate_options& options = {}) {
  constexpr const char* fn = "xplor::sample::generate";
  detail::check_params(params, fn);  // fail before any prefill
  xplor::detail::require(counts.size() == 1 || counts.size() == prompts.size(), fn, "counts has ",
                         counts.size(), " elements for ", prompts.size(),
                         " prompts (give 1 or one per prompt)");
  for (std::size_t i = 0; i < counts.size(); ++i)
    xplor::detail::require(counts[i] >= 0, fn, "counts[", i, "] = ", counts[i], " is negative");
  xplor::detail::require(params.max_completion_length > 0, fn,
                         "max_completion_length = ", params.max_completion_length, " must be positive");
  xplor::detail::require(options.chunk_size > 0, fn, "chunk_size = ", options.chunk_size,
                         " must be positive");
  const std::int64_t V = policy.vocab_size();
  for (std::int32_t t : params.stop_tokens)
    xplor::detail::require(t >= 0 && t < V, fn, "stop token ", t, " is outside [0, ", V, ")");
  xplor::detail::require(params.eos_token < V, fn, "eos_token = ", params.eos_token, " is outside [0, ", V,
                         ")");

  auto is_stop = [&](std::int32_t t) {
    return std::find(params.stop_tokens.begin(), params.stop_tokens.end(), t) != params.stop_tokens.end();
  };
  rollout_batch out;
  using state_id = typename Policy::state_id;
  // Per active completion of the current chunk.
  struct running {
    state_id state;
    std::int32_t sample;
    std::vector<std::int32_t> tokens;
    std::vector<float> processed, raw, entropy;
    std::vector<std::int32_t> context;  // prompt + completion, for the repetition penalty
  };
  std::vector<std::uint64_t> streams, draws;
  std::vector<std::int32_t> drawn, ctx_tokens;
  std::vector<std::int64_t> ctx_offsets = {};
  std::vector<float> processed_lp, raw_lp, entropy;
  sampling_params processed_params = params;
  processed_params.logprobs = logprobs_mode::processed;

  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const int n = counts.size() == 1 ? counts[0] : counts[i];
    std::vector<std::vector<running>> done_chunks;
    const state_id root = options.share_prefix ? policy.begin(prompts[i]) : state_id{};
    for (int first = 0; first < n; first += options.chunk_size) {
      const int m = std::min(options.chunk_size, n - first);
      std::vector<state_id> states;
      if (options.share_prefix) {
        states = policy.fork(root, m);
      } else {
        for (int j = 0; j < m; ++j) states.push_back(policy.begin(prompts[i]));
      }
      std::vector<running> chunk(static_cast<std::size_t>(m));
      std::vector<std::size_t> active(static_cast<std::size_t>(m));
      for (int j = 0; j < m; ++j) {
        chunk[j].state = states[j];
        chunk[j].sample = first + j;
        chunk[j].context = prompts[i];
        active[j] = static_cast<std::size_t>(j);
      }
      view2d<const float> logits = policy.logits(states);
      for (int t = 0; !active.empty(); ++t) {
        const std::size_t a = active.size();
        streams.resize(a);
        draws.resize(a);
        drawn.resize(a);
        processed_lp.resize(a);
        raw_lp.resize(a);
        entropy.resize(a);
        ctx_tokens.clear();
        ctx_offsets.assign(1, 0);
        for (std::size_t k = 0; k < a; ++k) {
          const running& r = chunk[active[k]];
          streams[k] = stream_id(options.first_prompt + static_cast<std::uint32_t>(i),
                                 static_cast<std::uint32_t>(r.sample));
          draws[k] = static_cast<std::uint64_t>(t);
          if (params.repetition_penalty != 1.0f)
            ctx_tokens.insert(ctx_tokens.end(), r.context.begin(), r.context.end());
          ctx_offsets.push_back(static_cast<std::int64_t>(ctx_tokens.size()));
        }
        const bool penalty = params.repetition_penalty != 1.0f;
        sample_rows(cpu, logits, processed_params, {seed, streams, draws}, {drawn, processed_lp, entropy},
                    penalty ? std::span<const std::int32_t>(ctx_tokens) : std::span<const std::int32_t>{},
                    penalty ? std::span<const std::int64_t>(ctx_offsets) : std::span<const std::int64_t>{});
        std::vector<std::size_t> still;
        std::vector<state_id> next_states;
        std::vector<std::int32_t> next_tokens;
        for (std::size_t k = 0; k < a; ++k) {
          running& r = chunk[active[k]];
          r.tokens.push_back(drawn[k]);
          r.processed.push_back(processed_lp[k]);
          r.raw.push_back(xplor::detail::row_log_softmax_at(
              {&logits(static_cast<std::int64_t>(k), 0), V, logits.stride(1)}, drawn[k]));
          r.entropy.push_back(entropy[k]);
          if (penalty) r.context.push_back(drawn[k]);
          const bool eos = drawn[k] == params.eos_token;
          const bool stop = is_stop(drawn[k]);
          const bool full = static_cast<int>(r.tokens.size()) >= params.max_completion_length;
          if (!(eos || stop || full)) {
            still.push_back(active[k]);
            next_states.push_back(r.state);
            next_tokens.push_back(drawn[k]);
          }
        }
        active.swap(still);
        if (!active.empty()) logits = policy.step(next_states, next_tokens);
      }
      policy.release(states);
      done_chunks.push_back(std::move(chunk));
    }
    if (options.share_prefix) policy.release(std::span<const state_id>(&root, 1));
    for (auto& chunk : done_chunks)
      for (auto& r : chunk) {
        for (std::size_t t = 0; t < r.tokens.size(); ++t)
          detail::collect_row(out, r.tokens[t], r.processed[t], r.raw[t], r.entropy[t], params.logprobs);
        out.offsets.push_back(static_cast<std::int64_t>(out.tokens.size()));
        out.prompt_index.push_back(static_cast<std::int32_t>(i));
        out.sample_index.push_back(r.sample);
        const std::int32_t last = r.tokens.back();
        out.finish.push_back(last == params.eos_token ? finish_reason::eos
                             : is_stop(last)          ? finish_reason::stop
                                                      : finish_reason::length);
      }
    out.group_offsets.push_back(out.num_completions());
  }
  return out;
}

}  // namespace xplor::sample
