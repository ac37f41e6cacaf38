// DeepSearch over a batch of prompts sharded across ranks. Each rank holds a contiguous slice of
// the global batch (rank 0 the first prompts) and searches it with the Philox streams of the
// prompts' global positions, so every search equals the one a single process runs for that prompt;
// the solution caches are merged by gathering every rank's new solutions and adding them on every
// rank in global prompt order, so all caches stay identical and equal to the single-process cache.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "xplor/dist/communicator.hpp"
#include "xplor/search/collect.hpp"
#include "xplor/search/deep_search.hpp"

namespace xplor::dist {

namespace detail {

/// (id, tokens) pairs as bytes: per pair the id's length, its bytes, the token count, the tokens.
inline std::vector<std::byte> pack_solutions(
    const std::vector<std::pair<std::string, std::vector<std::int32_t>>>& s) {
  std::vector<std::byte> out;
  const auto put = [&out](const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    out.insert(out.end(), b, b + n);
  };
  for (const auto& [id, tokens] : s) {
    const auto n_id = static_cast<std::int64_t>(id.size()), n_tok = static_cast<std::int64_t>(tokens.size());
    put(&n_id, sizeof n_id);
    put(id.data(), id.size());
    put(&n_tok, sizeof n_tok);
    put(tokens.data(), tokens.size() * sizeof(std::int32_t));
  }
  return out;
}

inline std::vector<std::pair<std::string, std::vector<std::int32_t>>> unpack_solutions(
    std::span<const std::byte> b) {
  std::vector<std::pair<std::string, std::vector<std::int32_t>>> out;
  std::size_t at = 0;
  const auto get = [&](void* p, std::size_t n) {
    xplor::detail::require(at + n <= b.size(), "xplor::dist::collect_round",
                           "a rank sent a truncated solution list");
    if (n > 0) std::memcpy(p, b.data() + at, n);  // an empty vector's data() may be null
    at += n;
  };
  while (at < b.size()) {
    std::int64_t n_id = 0, n_tok = 0;
    get(&n_id, sizeof n_id);
    std::string id(static_cast<std::size_t>(n_id), '\0');
    get(id.data(), id.size());
    get(&n_tok, sizeof n_tok);
    std::vector<std::int32_t> tokens(static_cast<std::size_t>(n_tok));
    get(tokens.data(), tokens.size() * sizeof(std::int32_t));
    out.emplace_back(std::move(id), std::move(tokens));
  }
  return out;
}

template <communicator C>
std::uint32_t first_stream_of(C& comm, std::size_t prompts, std::uint32_t base) {
  return base + static_cast<std::uint32_t>(shard_offset(comm, static_cast<std::int64_t>(prompts)));
}

}  // namespace detail

/// search::deep_search_batch over every rank's prompts: returns this rank's results, each equal to
/// the single-process batch's result for the same global prompt.
template <communicator C, class MakePolicy, class Verifier>
std::vector<search::search_result> deep_search_batch(C& comm, MakePolicy&& make_policy,
                                                     std::span<const std::vector<std::int32_t>> prompts,
                                                     Verifier&& verifier, const search::search_params& params,
                                                     std::uint64_t seed, int threads = 1) {
  return search::deep_search_batch(make_policy, prompts, verifier, params, seed, threads,
                                   detail::first_stream_of(comm, prompts.size(), 0));
}

/// search::collect_round over every rank's prompts (`ids` their problem ids). `cache` must be the
/// same on every rank as the round starts (it stays so): afterwards it holds what the
/// single-process round would have added, in the same order. Returns this rank's results.
template <communicator C, class MakePolicy, class Verifier>
std::vector<search::search_result> collect_round(C& comm, MakePolicy&& make_policy,
                                                 std::span<const std::vector<std::int32_t>> prompts,
                                                 std::span<const std::string> ids, Verifier&& verifier,
                                                 search::solution_cache& cache,
                                                 const search::search_params& params, std::uint64_t seed,
                                                 const search::round_options& options = {}) {
  search::round_options o = options;
  o.first_stream = detail::first_stream_of(comm, prompts.size(), options.first_stream);
  std::vector<std::uint8_t> use_cache;
  std::vector<search::search_result> results =
      search::detail::search_round(make_policy, prompts, ids, verifier, cache, params, seed, o, use_cache);
  const std::vector<std::byte> mine =
      detail::pack_solutions(search::detail::new_solutions(results, ids, use_cache));
  std::vector<std::int64_t> counts;
  const std::vector<std::byte> all = comm.all_gather_bytes(mine, counts);
  for (auto& [id, tokens] : detail::unpack_solutions(all)) cache.add(id, tokens);
  return results;
}

}  // namespace xplor::dist
