// Reward arithmetic over a whole batch on either backend (xplor::cpu, or xplor::device under
// Thrust): TruthRL's rewards from outcome codes, DAPO's overlong penalty from lengths, a format
// reward over token ids, and the weighted sum of several reward columns. Strings never reach
// the device: the verifier (reward/verify.hpp, math_reward) classifies responses on host threads
// and hands the outcome codes over; everything after that runs where the rest of the RL step runs.
// Each batch function equals its scalar counterpart element by element (truth_reward,
// overlong_penalty, composite_reward::sum); formulas and sources: docs/reward.md.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>

#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/core/numerics.hpp"
#include "xplor/core/view.hpp"
#include "xplor/reward/composite.hpp"
#include "xplor/reward/outcome.hpp"
#include "xplor/reward/truth.hpp"

namespace xplor::reward {

namespace kernels {

/// truth_reward without its checks (the batch entry checks the codes first).
XPLOR_HD inline float truth_value(std::uint8_t o, int variant, bool out_of_knowledge) {
  constexpr std::uint8_t correct = 0, abstain = 1;
  const bool ook = (variant == 2 || variant == 3) && out_of_knowledge;
  if (ook) return o == abstain ? 1.0f : -1.0f;
  if (o == correct) return 1.0f;
  if (variant == 0 || variant == 2) return o == abstain ? 0.0f : -1.0f;  // ternary
  return -1.0f;                                                          // binary
}

/// Index * 256 + code of an outcome code above 3, else -1 (reduced with min_valid_code).
struct bad_outcome_at {
  const std::uint8_t* codes;
  XPLOR_HD std::int64_t operator()(std::int64_t i) const { return codes[i] > 3 ? i * 256 + codes[i] : -1; }
};

struct truth_kernel {
  const std::uint8_t* codes;
  const std::uint8_t* ook;  // null: no question is out of knowledge
  int variant;
  float* out;
  XPLOR_HD void operator()(std::int64_t i) const {
    out[i] = truth_value(codes[i], variant, ook != nullptr && ook[i] != 0);
  }
};

/// Index of a negative length, else -1.
struct negative_length_at {
  const std::int64_t* lengths;
  XPLOR_HD std::int64_t operator()(std::int64_t i) const { return lengths[i] < 0 ? i : -1; }
};

/// overlong_penalty without its checks.
struct overlong_kernel {
  const std::int64_t* lengths;
  std::int64_t max_length, buffer_length;
  float factor;
  bool clipped;
  float* out;
  XPLOR_HD void operator()(std::int64_t i) const {
    const std::int64_t length = lengths[i];
    if (clipped && length > max_length) {
      out[i] = -factor;
      return;
    }
    const double exceed = static_cast<double>(length - (max_length - buffer_length));
    const double penalty = -exceed / static_cast<double>(buffer_length) * static_cast<double>(factor);
    out[i] = static_cast<float>(penalty < 0.0 ? penalty : 0.0);
  }
};

/// `matched` when completion r holds every marker exactly once, in order, and no other marker
/// token (anchored: the first token is the first marker and the last one, before a trailing
/// `eos`, the last marker); else `unmatched`.
struct format_kernel {
  const std::int32_t* tokens;
  const std::int64_t* offsets;
  const std::int32_t* markers;
  std::int64_t n_markers;
  bool anchored;
  std::int32_t eos;  // < 0: none
  float matched, unmatched;
  float* out;
  XPLOR_HD void operator()(std::int64_t r) const {
    const std::int64_t begin = offsets[r];
    std::int64_t end = offsets[r + 1];
    if (eos >= 0 && end > begin && tokens[end - 1] == eos) --end;
    std::int64_t next = 0;  // markers seen so far, in order
    bool ok = true;
    for (std::int64_t t = begin; t < end && ok; ++t) {
      std::int64_t which = -1;
      for (std::int64_t m = 0; m < n_markers; ++m)
        if (tokens[t] == markers[m]) which = m;
      if (which < 0) continue;
      ok = which == next;
      if (ok && anchored && next == 0) ok = t == begin;
      ++next;
    }
    ok = ok && next == n_markers && (!anchored || tokens[end - 1] == markers[n_markers - 1]);
    out[r] = ok ? matched : unmatched;
  }
};

/// Index of an infinite value, else -1. (Comparisons rather than std::isinf, which device code
/// may lack; the same for NaN below.)
struct infinite_value_at {
  const float* values;
  XPLOR_HD std::int64_t operator()(std::int64_t i) const {
    constexpr float inf = std::numeric_limits<float>::infinity();
    return values[i] == inf || values[i] == -inf ? i : -1;
  }
};

struct weighted_sum_kernel {
  const float* values;  // [n, k] row-major; NaN: not applicable
  const float* weights;
  std::int64_t k;
  float* out;
  XPLOR_HD void operator()(std::int64_t i) const {
    double s = 0.0;
    for (std::int64_t j = 0; j < k; ++j) {
      const float v = values[i * k + j];
      if (v == v) s += static_cast<double>(weights[j]) * v;
    }
    out[i] = static_cast<float>(s);
  }
};

}  // namespace kernels

/// out[i] = truth_reward(outcomes[i], variant, out_of_knowledge[i]) (out_of_knowledge may be
/// empty: no question is out of knowledge). Throws xplor::error for an outcome code outside
/// 0..3, a variant outside the enum, or sizes that differ.
template <execution_tag Exec>
void truth_rewards(Exec exec, span_for<Exec, const outcome> outcomes, reward_variant variant,
                   span_for<Exec, const std::uint8_t> out_of_knowledge, span_for<Exec, float> out) {
  constexpr const char* fn = "xplor::reward::truth_rewards";
  const auto n = static_cast<std::int64_t>(outcomes.size());
  const int v = static_cast<int>(variant);
  xplor::detail::require(v >= 0 && v <= 3, fn, "variant = ", v, " is not a reward_variant (0..3)");
  xplor::detail::require(out.size() == outcomes.size(), fn, "out has ", out.size(), " elements for ", n,
                         " outcomes");
  xplor::detail::require(out_of_knowledge.empty() || out_of_knowledge.size() == outcomes.size(), fn,
                         "out_of_knowledge has ", out_of_knowledge.size(), " elements for ", n, " outcomes");
  // outcome is a one-byte enum: its codes are read as bytes by the kernels.
  const auto* codes = reinterpret_cast<const std::uint8_t*>(outcomes.data());
  const std::int64_t bad = transform_reduce(exec, n, std::int64_t{-1}, xplor::detail::min_valid_code{},
                                            kernels::bad_outcome_at{codes});
  xplor::detail::require(bad < 0, fn, "outcomes[", bad / 256, "] = ", bad % 256, " is not an outcome (0..3)");
  for_each_index(exec, n,
                 kernels::truth_kernel{codes, out_of_knowledge.empty() ? nullptr : out_of_knowledge.data(), v,
                                       out.data()});
}

/// out[i] = overlong_penalty(lengths[i], max_length, buffer_length, factor, mode).
template <execution_tag Exec>
void overlong_penalties(Exec exec, span_for<Exec, const std::int64_t> lengths, std::int64_t max_length,
                        std::int64_t buffer_length, float factor, overlong_mode mode,
                        span_for<Exec, float> out) {
  constexpr const char* fn = "xplor::reward::overlong_penalties";
  const auto n = static_cast<std::int64_t>(lengths.size());
  xplor::detail::require(out.size() == lengths.size(), fn, "out has ", out.size(), " elements for ", n,
                         " lengths");
  // The scalar function checks the parameters (and names them); a zero length is always valid.
  (void)overlong_penalty(0, max_length, buffer_length, factor, mode);
  const std::int64_t bad = transform_reduce(exec, n, std::int64_t{-1}, xplor::detail::min_valid_code{},
                                            kernels::negative_length_at{lengths.data()});
  xplor::detail::require(bad < 0, fn, "lengths[", bad, "] is negative");
  for_each_index(exec, n,
                 kernels::overlong_kernel{lengths.data(), max_length, buffer_length, factor,
                                          mode == overlong_mode::clipped, out.data()});
}

/// A format reward over token ids: the marker tokens of a template (e.g. the ids of "<think>",
/// "</think>", "<answer>", "</answer>") must each appear exactly once and in order, and no
/// marker token elsewhere; `anchored` also requires the completion to start with the first marker
/// and end with the last (a trailing `eos` aside), TRL's `^<think>.*?</think>\s*<answer>.*?</answer>$`.
struct format_options {
  bool anchored = true;
  std::int32_t eos = -1;  // a trailing eos token is ignored; < 0: none
  float matched = 1.0f, unmatched = 0.0f;
};

/// out[r] = format_options::matched or ::unmatched for completion r = tokens[offsets[r],
/// offsets[r + 1]). `offsets` (r + 1 entries, from 0, non-decreasing, ending at tokens.size())
/// and `markers` (distinct, non-empty) are host memory, copied to the backend.
template <execution_tag Exec>
void format_rewards(Exec exec, span_for<Exec, const std::int32_t> tokens,
                    std::span<const std::int64_t> offsets, std::span<const std::int32_t> markers,
                    const format_options& options, span_for<Exec, float> out) {
  constexpr const char* fn = "xplor::reward::format_rewards";
  xplor::detail::require(!offsets.empty(), fn, "offsets is empty (it holds completions + 1 entries)");
  const auto rows = static_cast<std::int64_t>(offsets.size()) - 1;
  xplor::detail::require(out.size() == static_cast<std::size_t>(rows), fn, "out has ", out.size(),
                         " elements for ", rows, " completions");
  xplor::detail::require(offsets.front() == 0, fn, "offsets[0] = ", offsets.front(), " must be 0");
  for (std::int64_t r = 0; r < rows; ++r)
    xplor::detail::require(offsets[r + 1] >= offsets[r], fn, "offsets[", r + 1, "] = ", offsets[r + 1],
                           " is below offsets[", r, "] = ", offsets[r]);
  xplor::detail::require(offsets.back() == static_cast<std::int64_t>(tokens.size()), fn, "offsets ends at ",
                         offsets.back(), ", tokens has ", tokens.size());
  xplor::detail::require(!markers.empty(), fn, "markers is empty");
  for (std::size_t m = 0; m < markers.size(); ++m) {
    xplor::detail::require(markers[m] >= 0, fn, "markers[", m, "] = ", markers[m], " is negative");
    xplor::detail::require(markers[m] != options.eos, fn, "markers[", m, "] = ", markers[m],
                           " is the eos token");
    for (std::size_t u = 0; u < m; ++u)
      xplor::detail::require(markers[u] != markers[m], fn, "markers[", m, "] repeats markers[", u,
                             "] = ", markers[m]);
  }
  xplor::detail::require(std::isfinite(options.matched) && std::isfinite(options.unmatched), fn, "rewards (",
                         options.matched, ", ", options.unmatched, ") must be finite");
  const auto staged_offsets = stage(exec, offsets);
  const auto staged_markers = stage(exec, markers);
  for_each_index(exec, rows,
                 kernels::format_kernel{tokens.data(), staged_offsets.data(), staged_markers.data(),
                                        static_cast<std::int64_t>(markers.size()), options.anchored,
                                        options.eos, options.matched, options.unmatched, out.data()},
                 static_cast<std::int64_t>(tokens.size()) / (rows > 0 ? rows : 1) + 1);
}

/// out[i] = sum_j weights[j] * values(i, j) over the applicable values, NaN marking "does not
/// apply" (composite_reward's std::nullopt, TRL's None); 0 where none applies. `values` is a
/// row-major [samples, functions] view, `weights` host memory (finite).
template <execution_tag Exec>
void weighted_sum(Exec exec, view2d_for<Exec, const float> values, std::span<const float> weights,
                  span_for<Exec, float> out) {
  constexpr const char* fn = "xplor::reward::weighted_sum";
  const std::int64_t n = values.rows(), k = values.cols();
  xplor::detail::require(k == static_cast<std::int64_t>(weights.size()), fn, "values has ", k,
                         " columns for ", weights.size(), " weights");
  xplor::detail::require(values.stride(1) == 1 && values.stride(0) == k, fn,
                         "values must be row-major and contiguous (strides ", values.stride(0), ", ",
                         values.stride(1), ")");
  xplor::detail::require(out.size() == static_cast<std::size_t>(n), fn, "out has ", out.size(),
                         " elements for ", n, " samples");
  for (std::size_t j = 0; j < weights.size(); ++j)
    xplor::detail::require(std::isfinite(weights[j]), fn, "weights[", j, "] = ", weights[j],
                           " is not finite");
  const std::int64_t bad = transform_reduce(exec, n * k, std::int64_t{-1}, xplor::detail::min_valid_code{},
                                            kernels::infinite_value_at{values.data()});
  xplor::detail::require(bad < 0, fn, "values(", bad / (k > 0 ? k : 1), ", ", bad % (k > 0 ? k : 1),
                         ") is infinite (NaN marks a reward that does not apply)");
  const auto staged = stage(exec, weights);
  for_each_index(exec, n, kernels::weighted_sum_kernel{values.data(), staged.data(), k, out.data()}, k);
}

}  // namespace xplor::reward
