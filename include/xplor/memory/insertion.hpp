// Where MemGen weaves latents into a sequence and how the logits line up afterwards.
//
// A sequence is a prompt and a completion; an insertion point p is an index into the completion:
// the weaver's latents go in before completion[p]. p = 0 is the prompt end (the prompt bank); p > 0
// is an inference point (the inference bank) and needs completion[p - 1] to be a delimiter token.
// The authors' training rule keeps the prompt point and the first max_inference_aug delimiter
// points; the trigger chooses a subset of the same eligible points.
//
// Interleaving puts each latent block into the token sequence (positions stay contiguous: a latent
// takes an ordinary position, as the authors' cumsum(mask) - 1). The logit that predicts a token is
// read at the row just before it: the last latent of a block when the token follows a block. This
// is the authors' alignment (drop every logit whose next row is a latent), expressed as targets.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/memory/config.hpp"
#include "xplor/model/transformer.hpp"

namespace xplor::memory {

/// A prompt, its completion and the insertion points used (ascending indices into the completion).
struct sequence {
  std::vector<std::int32_t> prompt = {};
  std::vector<std::int32_t> completion = {};
  std::vector<std::int32_t> points = {};
};

inline bool is_delimiter(const memgen_config& cfg, std::int32_t token) {
  return std::find(cfg.delimiters.begin(), cfg.delimiters.end(), token) != cfg.delimiters.end();
}

/// The training rule: the prompt point (when cfg.prompt_augment) and the first
/// cfg.max_inference_aug indices p in [1, size) whose previous token is a delimiter. Decided on
/// token ids, not on decoded text, so a delimiter character inside another token never counts.
inline std::vector<std::int32_t> insertion_points(const memgen_config& cfg,
                                                  std::span<const std::int32_t> completion) {
  std::vector<std::int32_t> points;
  if (cfg.prompt_augment && !completion.empty()) points.push_back(0);
  int inference = 0;
  for (std::size_t p = 1; p < completion.size() && inference < cfg.max_inference_aug; ++p)
    if (is_delimiter(cfg, completion[p - 1])) {
      points.push_back(static_cast<std::int32_t>(p));
      ++inference;
    }
  return points;
}

/// Latents woven at point p: the prompt bank's K at the prompt end, the inference bank's after.
inline int block_size(const memgen_config& cfg, std::int32_t point) {
  return point == 0 ? cfg.prompt_latents : cfg.inference_latents;
}

/// Throws xplor::error unless `s` fits a reasoner of `model` shape and its points follow the
/// rule's constraints (ascending, inside the completion, after delimiters, at most
/// max_inference_aug inference points, the prompt point only with prompt_augment).
inline void validate_sequence(const memgen_config& cfg, const model::transformer_config& model,
                              const sequence& s, const char* fn) {
  xplor::detail::require(!s.prompt.empty(), fn, "the prompt is empty");
  auto check_tokens = [&](std::span<const std::int32_t> t, const char* what) {
    for (std::size_t i = 0; i < t.size(); ++i)
      xplor::detail::require(t[i] >= 0 && t[i] < model.vocab_size, fn, what, "[", i, "] = ", t[i],
                             " is outside [0, vocab_size = ", model.vocab_size, ")");
  };
  check_tokens(s.prompt, "prompt");
  check_tokens(s.completion, "completion");
  int inference = 0;
  std::int64_t length = static_cast<std::int64_t>(s.prompt.size() + s.completion.size());
  for (std::size_t j = 0; j < s.points.size(); ++j) {
    const std::int32_t p = s.points[j];
    xplor::detail::require(p >= 0 && static_cast<std::size_t>(p) < s.completion.size(), fn, "points[", j,
                           "] = ", p, " is outside the completion [0, ", s.completion.size(), ")");
    xplor::detail::require(j == 0 || p > s.points[j - 1], fn, "points[", j, "] = ", p,
                           " does not follow points[", j - 1, "] = ", s.points[j - 1]);
    xplor::detail::require(p > 0 || cfg.prompt_augment, fn, "points[", j,
                           "] = 0 (the prompt end) but prompt_augment is off");
    xplor::detail::require(p == 0 || is_delimiter(cfg, s.completion[static_cast<std::size_t>(p - 1)]), fn,
                           "points[", j, "] = ", p, ": completion[", p - 1,
                           "] = ", s.completion[static_cast<std::size_t>(p - 1)], " is not a delimiter");
    if (p > 0) ++inference;
    length += block_size(cfg, p);
  }
  xplor::detail::require(inference <= cfg.max_inference_aug, fn, "the sequence has ", inference,
                         " inference points, max_inference_aug = ", cfg.max_inference_aug);
  xplor::detail::require(length <= model.max_seq_len, fn, "prompt, completion and latents take ", length,
                         " positions, max_seq_len = ", model.max_seq_len);
}

/// A sequence with its latent blocks in place.
struct interleaved {
  std::vector<std::int32_t> tokens;       // [rows]: token ids, model::latent_slot for latents
  std::vector<std::int32_t> targets;      // [rows]: the completion token a row predicts, or ignore_target
  std::vector<std::int64_t> target_rows;  // [completion size]: the row whose logits predict token i
  std::vector<std::int64_t> block_start;  // [points]: the first row of each latent block
};

inline interleaved interleave(const memgen_config& cfg, const sequence& s) {
  interleaved out;
  out.tokens = s.prompt;
  std::size_t next_point = 0;
  for (std::size_t i = 0; i < s.completion.size(); ++i) {
    if (next_point < s.points.size() && static_cast<std::size_t>(s.points[next_point]) == i) {
      out.block_start.push_back(static_cast<std::int64_t>(out.tokens.size()));
      out.tokens.insert(out.tokens.end(), static_cast<std::size_t>(block_size(cfg, s.points[next_point])),
                        model::latent_slot);
      ++next_point;
    }
    out.target_rows.push_back(static_cast<std::int64_t>(out.tokens.size()) - 1);
    out.tokens.push_back(s.completion[i]);
  }
  out.targets.assign(out.tokens.size(), model::ignore_target);
  for (std::size_t i = 0; i < s.completion.size(); ++i)
    out.targets[static_cast<std::size_t>(out.target_rows[i])] = s.completion[i];
  return out;
}

}  // namespace xplor::memory
