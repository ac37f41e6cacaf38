// Ranking tokens by a score (probabilities, similarities, feature-token dot products): the top
// k with ties to the lower id, a token's rank, and the merge of several rows' top k. Shared by
// the logit lens and the sparse autoencoders' feature tokens.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "xplor/core/error.hpp"

namespace xplor::interp {

/// A token and a score (a probability, a similarity, a feature activation).
struct token_score {
  std::int32_t token = 0;
  float score = 0.0f;
};

/// The k highest entries of `row`, descending; ties go to the lower id (k is clamped to the row).
inline std::vector<token_score> top_tokens(std::span<const float> row, int k) {
  xplor::detail::require(k >= 0, "xplor::interp::top_tokens", "k = ", k, " is negative");
  std::vector<std::int32_t> ids(row.size());
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int32_t>(i);
  const auto kk = std::min(static_cast<std::size_t>(k), ids.size());
  std::partial_sort(
      ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(kk), ids.end(),
      [&](std::int32_t a, std::int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
  std::vector<token_score> out(kk);
  for (std::size_t i = 0; i < kk; ++i) out[i] = {ids[i], row[ids[i]]};
  return out;
}

/// 1-based rank of `token` in `row` under top_tokens' order (1 = the highest).
inline std::int64_t token_rank(std::span<const float> row, std::int32_t token) {
  xplor::detail::require(token >= 0 && static_cast<std::size_t>(token) < row.size(),
                         "xplor::interp::token_rank", "token = ", token, " is outside [0, ", row.size(), ")");
  std::int64_t rank = 1;
  for (std::size_t i = 0; i < row.size(); ++i)
    if (row[i] > row[token] || (row[i] == row[token] && static_cast<std::int32_t>(i) < token)) ++rank;
  return rank;
}

/// The k best tokens over several rows [P, V]: each row's top k, merged, sorted by score and
/// de-duplicated (a token keeps its best score) — how the paper combines the assistant-turn
/// control positions for activation tokens.
inline std::vector<token_score> merged_top_tokens(std::span<const float> scores, std::int64_t V, int k) {
  constexpr const char* fn = "xplor::interp::merged_top_tokens";
  xplor::detail::require(V > 0 && !scores.empty() && scores.size() % static_cast<std::size_t>(V) == 0, fn,
                         "scores has ", scores.size(), " values, not a positive multiple of V = ", V);
  std::vector<token_score> all;
  for (std::size_t r = 0; r < scores.size() / static_cast<std::size_t>(V); ++r) {
    const auto top =
        top_tokens(scores.subspan(r * static_cast<std::size_t>(V), static_cast<std::size_t>(V)), k);
    all.insert(all.end(), top.begin(), top.end());
  }
  std::stable_sort(all.begin(), all.end(), [](const token_score& a, const token_score& b) {
    return a.score > b.score || (a.score == b.score && a.token < b.token);
  });
  std::vector<token_score> out;
  for (const token_score& t : all) {
    if (static_cast<int>(out.size()) == k) break;
    if (std::none_of(out.begin(), out.end(), [&](const token_score& o) { return o.token == t.token; }))
      out.push_back(t);
  }
  return out;
}

}  // namespace xplor::interp
