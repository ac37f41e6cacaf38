// One round of DeepSearch's adaptive training loop (docs/methods.md §2.7): prompts whose problem id
// is in the solution cache skip the tree search and get n direct rollouts whose first k are
// overwritten by cached correct solutions (scored as a constant per-token reward, one segment);
// every other prompt gets the full search, and the correct trajectories it finds join the cache.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "xplor/core/decode.hpp"
#include "xplor/core/error.hpp"
#include "xplor/core/numerics.hpp"
#include "xplor/core/random.hpp"
#include "xplor/sample/rollout.hpp"
#include "xplor/search/deep_search.hpp"
#include "xplor/search/solution_cache.hpp"

namespace xplor::search {

namespace detail {
/// Log-probabilities of `response` after `prompt` under the policy at the sampling temperature
/// (log_softmax(logits / T)), by teacher forcing through the decode policy.
template <decode_policy Policy>
std::vector<float> response_logprobs(Policy& policy, std::span<const std::int32_t> prompt,
                                     std::span<const std::int32_t> response, float temperature) {
  using state_id = typename Policy::state_id;
  std::vector<float> out = {};
  out.reserve(response.size());
  std::vector<float> row(static_cast<std::size_t>(policy.vocab_size()));
  state_id s = policy.begin(prompt);
  try {
    view2d<const float> logits = policy.logits(std::span<const state_id>(&s, 1));
    for (std::size_t i = 0; i < response.size(); ++i) {
      for (std::size_t v = 0; v < row.size(); ++v)
        row[v] = logits(0, static_cast<std::int64_t>(v)) / temperature;
      out.push_back(xplor::detail::row_log_softmax_at({row.data(), static_cast<std::int64_t>(row.size()), 1},
                                                      response[i]));
      if (i + 1 < response.size())
        logits = policy.step(std::span<const state_id>(&s, 1), response.subspan(i, 1));
    }
  } catch (...) {
    policy.release(std::span<const state_id>(&s, 1));
    throw;
  }
  policy.release(std::span<const state_id>(&s, 1));
  return out;
}
}  // namespace detail

/// The cache branch for one prompt: params.num_trajectories direct rollouts (at most the search's
/// response cap, max_response_tokens or max_depth x chunk_tokens, drawn with a seed derived from (seed,
/// stream)) whose first min(k, cached.size()) are replaced by `cached` solutions; each is verified and
/// becomes a one-segment trajectory with q = its score, and the advantages are the same mean-only ones.
template <decode_policy Policy, response_verifier Verifier>
search_result cached_rollouts(Policy& policy, std::span<const std::int32_t> prompt,
                              std::span<const std::vector<std::int32_t>> cached, int k, Verifier&& verifier,
                              const search_params& params, std::uint64_t seed, std::uint32_t stream = 0) {
  constexpr const char* fn = "xplor::search::cached_rollouts";
  detail::check_search_params(params, fn);
  xplor::detail::require(k >= 0, fn, "k = ", k, " is negative");
  xplor::detail::require(!prompt.empty(), fn, "prompt is empty");
  const int n = params.num_trajectories;
  sample::sampling_params sp = params.sampling;
  sp.max_completion_length = static_cast<int>(detail::max_response(params));
  // The rollouts of different prompts must not share draws: a seed per stream, from a Philox
  // block no tree node uses (node ids are < 2^31).
  const auto w = philox_stream(seed, stream_id(stream, 0xFFFFFFFFu)).block(0);
  const std::uint64_t direct_seed = std::uint64_t{w[0]} | (std::uint64_t{w[1]} << 32);
  const std::vector<std::int32_t> prompt_vec(prompt.begin(), prompt.end());
  const int counts[1] = {n};
  const sample::rollout_batch batch = sample::generate(
      policy, std::span<const std::vector<std::int32_t>>(&prompt_vec, 1), counts, sp, direct_seed);

  search_result out;
  out.from_cache = true;
  out.trajectories.resize(static_cast<std::size_t>(n));
  const int replaced = std::min<int>({k, n, static_cast<int>(cached.size())});
  for (int c = 0; c < n; ++c) {
    search_trajectory& tr = out.trajectories[static_cast<std::size_t>(c)];
    bool finished = true;
    if (c < replaced) {
      tr.tokens = cached[static_cast<std::size_t>(c)];
      tr.logprobs = detail::response_logprobs(policy, prompt, tr.tokens, sp.temperature);
    } else {
      const auto b = static_cast<std::size_t>(batch.offsets[c]),
                 e = static_cast<std::size_t>(batch.offsets[c + 1]);
      tr.tokens.assign(batch.tokens.begin() + b, batch.tokens.begin() + e);
      tr.logprobs.assign(batch.logprobs.begin() + b, batch.logprobs.begin() + e);
      finished = batch.finish[static_cast<std::size_t>(c)] != sample::finish_reason::length;
      out.tokens_generated += static_cast<std::int64_t>(tr.tokens.size());
    }
    tr.result = verifier(std::span<const std::int32_t>(tr.tokens), finished);
    tr.score = detail::score_of(tr.result, params);
    double nll = 0.0;
    for (float lp : tr.logprobs) nll -= lp;
    tr.mean_entropy = nll / static_cast<double>(std::max<std::size_t>(tr.logprobs.size(), 1));
    tr.segment_offsets = {0, static_cast<std::int64_t>(tr.tokens.size())};
    tr.nodes = {no_node};
    tr.segment_q = {tr.score};
  }
  detail::assign_advantages(out.trajectories, params.advantages);
  return out;
}

struct round_options {
  int threads = 1;
  int cached_per_prompt = 1;  // k: cached solutions mixed into a cached prompt's n rollouts
  /// Prompt i is searched with the Philox stream family first_stream + i: a batch split into
  /// parts (ranks, or rounds of one batch) draws what the whole batch would.
  std::uint32_t first_stream = 0;
};

namespace detail {
/// The correct trajectories of the searched (not cached) prompts, as (problem id, tokens) in
/// prompt order: what a round adds to the cache.
inline std::vector<std::pair<std::string, std::vector<std::int32_t>>> new_solutions(
    std::span<const search_result> results, std::span<const std::string> ids,
    std::span<const std::uint8_t> use_cache) {
  std::vector<std::pair<std::string, std::vector<std::int32_t>>> out;
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (use_cache[i]) continue;
    for (const search_trajectory& tr : results[i].trajectories)
      if (tr.result == outcome::correct) out.emplace_back(ids[i], tr.tokens);
  }
  return out;
}
}  // namespace detail

namespace detail {
/// collect_round without the cache update: the results, and which prompts took the cache branch.
template <class MakePolicy, class Verifier>
std::vector<search_result> search_round(MakePolicy& make_policy,
                                        std::span<const std::vector<std::int32_t>> prompts,
                                        std::span<const std::string> ids, Verifier& verifier,
                                        const solution_cache& cache, const search_params& params,
                                        std::uint64_t seed, const round_options& options,
                                        std::vector<std::uint8_t>& use_cache) {
  constexpr const char* fn = "xplor::search::collect_round";
  detail::check_search_params(params, fn);
  xplor::detail::require(ids.size() == prompts.size(), fn, "ids has ", ids.size(), " elements for ",
                         prompts.size(), " prompts");
  xplor::detail::require(options.cached_per_prompt >= 0, fn,
                         "cached_per_prompt = ", options.cached_per_prompt, " is negative");
  use_cache.assign(prompts.size(), 0);
  for (std::size_t i = 0; i < prompts.size(); ++i) use_cache[i] = cache.contains(ids[i]);
  std::vector<search_result> results(prompts.size());
  const solution_cache& snapshot = cache;  // read-only while the workers run
  detail::parallel_prompts(
      prompts.size(), options.threads, make_policy,
      [&](auto& policy, std::size_t i) {
        auto grade = [&verifier, i](std::span<const std::int32_t> response, bool done) {
          return verifier(i, response, done);
        };
        const std::span<const std::int32_t> prompt(prompts[i]);
        const auto stream = options.first_stream + static_cast<std::uint32_t>(i);
        results[i] = use_cache[i] ? cached_rollouts(policy, prompt, snapshot.solutions(ids[i]),
                                                    options.cached_per_prompt, grade, params, seed, stream)
                                  : deep_search(policy, prompt, grade, params, seed, stream);
      },
      fn);
  return results;
}
}  // namespace detail

/// One training round over `prompts` with problem ids `ids`: prompts whose id is in `cache` (as
/// the round starts) take the cache branch, the others the tree search; afterwards the correct
/// trajectories of the searched prompts are added to the cache, in prompt order. Results are
/// those of deep_search / cached_rollouts with stream options.first_stream + i for prompt i, on any number of
/// threads.
template <class MakePolicy, class Verifier>
std::vector<search_result> collect_round(MakePolicy&& make_policy,
                                         std::span<const std::vector<std::int32_t>> prompts,
                                         std::span<const std::string> ids, Verifier&& verifier,
                                         solution_cache& cache, const search_params& params,
                                         std::uint64_t seed, const round_options& options = {}) {
  std::vector<std::uint8_t> use_cache;
  std::vector<search_result> results =
      detail::search_round(make_policy, prompts, ids, verifier, cache, params, seed, options, use_cache);
  for (auto& [id, tokens] : detail::new_solutions(results, ids, use_cache)) cache.add(id, tokens);
  return results;
}

}  // namespace xplor::search
