// A conformance check for decode_policy implementations: what samplers, rollout drivers and the
// tree search assume of a model adapter, checked through the concept alone, so that any adapter
// (the reference transformer's kv_decoder, BDH's recurrent decoder, a scripted policy, a user's
// libtorch or Python model) can run it in its own tests before it meets xplor's algorithms.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "xplor/core/decode.hpp"
#include "xplor/core/error.hpp"

namespace xplor {

/// The largest difference found by each check of check_decode_policy (all <= its tolerance when
/// it returns).
struct decode_check_report {
  double prefill_vs_steps = 0;        // begin(prompt + c) against begin(prompt) then step(c...)
  double fork_vs_parent = 0;          // logits of fresh forks against their parent's
  double fork_step_vs_fresh = 0;      // a fork after step(token) against begin(prompt + token)
  double parent_after_forks = 0;      // the parent's logits before and after its forks stepped
  double batch_vs_single = 0;         // rows of a batched step against the same steps one by one
  double logits_repeat = 0;           // logits() twice, and step after logits() against step alone
  std::int64_t states_released = -1;  // live_states() drop on release, -1 when not provided
};

namespace detail {

inline std::vector<float> rows_of(view2d<const float> v) {
  std::vector<float> out(static_cast<std::size_t>(v.rows() * v.cols()));
  for (std::int64_t r = 0; r < v.rows(); ++r)
    for (std::int64_t c = 0; c < v.cols(); ++c) out[static_cast<std::size_t>(r * v.cols() + c)] = v(r, c);
  return out;
}

/// max |a - b| / max(1, |b|) over a row of b, with NaN or size mismatch as +inf.
inline double row_gap(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) return HUGE_VAL;
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(double(a[i]) - double(b[i])) / std::max(1.0, std::abs(double(b[i])));
    if (!(d <= worst)) worst = std::isnan(d) ? HUGE_VAL : d;
  }
  return worst;
}

}  // namespace detail

/// Runs every check on `policy` with `prompt` (non-empty) and `continuation` (>= 2 tokens), all
/// tokens inside [0, vocab_size()); differences are relative to max(1, |reference|). Throws
/// xplor::error naming the first check that exceeds `tolerance`, and the difference found. On
/// success it leaves no live state behind. The checks:
///   1. prefill == steps: begin(prompt + continuation) gives the logits of begin(prompt) stepped
///      through the continuation one token at a time;
///   2. a fresh fork has its parent's logits (it continues the same prefix);
///   3. after step(token), fork i has the logits of an independent begin(prompt + token_i);
///   4. the forks' steps leave the parent unchanged (states do not share mutable data);
///   5. a batched step returns, row by row, what the same steps give one state at a time;
///   6. logits() changes nothing: twice the same, and a later step as if it was never called;
///   7. fork(s, 0) is empty, and release lowers live_states() by the number released (when the
///      policy reports live_states()).
template <decode_policy P>
decode_check_report check_decode_policy(P& policy, std::span<const std::int32_t> prompt,
                                        std::span<const std::int32_t> continuation, double tolerance = 1e-4) {
  using id = typename P::state_id;
  constexpr const char* fn = "xplor::check_decode_policy";
  const std::int64_t V = policy.vocab_size();
  xplor::detail::require(V > 0, fn, "vocab_size() = ", V, " must be positive");
  xplor::detail::require(!prompt.empty(), fn, "prompt is empty");
  xplor::detail::require(continuation.size() >= 2, fn, "continuation has ", continuation.size(),
                         " tokens; the checks need at least 2");
  for (std::span<const std::int32_t> s : {prompt, continuation})
    for (std::size_t i = 0; i < s.size(); ++i)
      xplor::detail::require(s[i] >= 0 && s[i] < V, fn, "token ", s[i], " is outside [0, vocab_size() = ", V,
                             ")");
  xplor::detail::require(std::isfinite(tolerance) && tolerance >= 0, fn, "tolerance = ", tolerance,
                         " must be finite and non-negative");
  const auto fail_if = [&](double gap, const char* check) {
    if (!(gap <= tolerance))
      xplor::detail::fail(fn, check, ": difference ", gap, " exceeds the tolerance ", tolerance);
  };
  const auto row = [V](const std::vector<float>& v, std::int64_t r) {
    return std::span<const float>(v).subspan(static_cast<std::size_t>(r * V), static_cast<std::size_t>(V));
  };
  const auto one = [](const id& s) { return std::span<const id>(&s, 1); };
  decode_check_report rep;
  std::vector<id> all;  // every state made, released at the end
  const auto live = [&policy]() -> std::int64_t {
    if constexpr (requires { policy.live_states(); })
      return static_cast<std::int64_t>(policy.live_states());
    else
      return -1;
  };
  const std::int64_t live0 = live();

  // 1. Prefill against steps.
  std::vector<std::int32_t> whole(prompt.begin(), prompt.end());
  whole.insert(whole.end(), continuation.begin(), continuation.end());
  const id full = policy.begin(whole);
  all.push_back(full);
  const std::vector<float> full_logits = detail::rows_of(policy.logits(one(full)));
  xplor::detail::require(static_cast<std::int64_t>(full_logits.size()) == V, fn, "logits() returned ",
                         full_logits.size(), " values for one state, vocab_size() = ", V);
  const id parent = policy.begin(prompt);
  all.push_back(parent);
  const std::vector<float> parent_logits = detail::rows_of(policy.logits(one(parent)));
  const id walker = policy.begin(prompt);
  all.push_back(walker);
  std::vector<float> walked;
  for (std::int32_t t : continuation) walked = detail::rows_of(policy.step(one(walker), std::span(&t, 1)));
  rep.prefill_vs_steps = detail::row_gap(walked, full_logits);
  fail_if(rep.prefill_vs_steps, "prefill == steps (begin(prompt + continuation) against stepping)");

  // 7 (first half). fork(s, 0).
  xplor::detail::require(policy.fork(parent, 0).empty(), fn, "fork(state, 0) returned states");

  // 2. Fresh forks have the parent's logits.
  const std::vector<id> forks = policy.fork(parent, 2);
  xplor::detail::require(forks.size() == 2, fn, "fork(state, 2) returned ", forks.size(), " states");
  all.insert(all.end(), forks.begin(), forks.end());
  const std::vector<float> fork_logits = detail::rows_of(policy.logits(forks));
  for (std::int64_t i = 0; i < 2; ++i)
    rep.fork_vs_parent = std::max(rep.fork_vs_parent, detail::row_gap(row(fork_logits, i), parent_logits));
  fail_if(rep.fork_vs_parent, "a fresh fork has its parent's logits");

  // 3. + 5. The forks step different tokens in one batch: each row equals an independent
  //    decode of prompt + token, and equals the same step taken alone.
  const std::int32_t toks[2] = {continuation[0], continuation[1]};
  const std::vector<float> batched = detail::rows_of(policy.step(forks, toks));
  for (std::int64_t i = 0; i < 2; ++i) {
    std::vector<std::int32_t> seq(prompt.begin(), prompt.end());
    seq.push_back(toks[i]);
    const id fresh = policy.begin(seq);
    all.push_back(fresh);
    const std::vector<float> ref = detail::rows_of(policy.logits(one(fresh)));
    rep.fork_step_vs_fresh = std::max(rep.fork_step_vs_fresh, detail::row_gap(row(batched, i), ref));
    const std::vector<id> solo = policy.fork(parent, 1);
    all.insert(all.end(), solo.begin(), solo.end());
    const std::vector<float> alone = detail::rows_of(policy.step(solo, std::span(&toks[i], 1)));
    rep.batch_vs_single = std::max(rep.batch_vs_single, detail::row_gap(row(batched, i), alone));
  }
  fail_if(rep.fork_step_vs_fresh, "a fork after step equals an independent decode of prompt + token");
  fail_if(rep.batch_vs_single, "a batched step equals the same steps one state at a time");

  // 4. The parent is untouched by its forks.
  rep.parent_after_forks = detail::row_gap(detail::rows_of(policy.logits(one(parent))), parent_logits);
  fail_if(rep.parent_after_forks, "the forks' steps leave the parent unchanged");

  // 6. logits() is a pure read.
  const std::vector<float> again = detail::rows_of(policy.logits(forks));
  const std::vector<float> twice = detail::rows_of(policy.logits(forks));
  rep.logits_repeat = detail::row_gap(twice, again);
  const std::vector<id> probe = policy.fork(parent, 1), plain = policy.fork(parent, 1);
  all.insert(all.end(), probe.begin(), probe.end());
  all.insert(all.end(), plain.begin(), plain.end());
  (void)policy.logits(probe);
  const std::vector<float> after_read = detail::rows_of(policy.step(probe, std::span(&toks[1], 1)));
  const std::vector<float> no_read = detail::rows_of(policy.step(plain, std::span(&toks[1], 1)));
  rep.logits_repeat = std::max(rep.logits_repeat, detail::row_gap(after_read, no_read));
  fail_if(rep.logits_repeat, "logits() changes no state");

  // 7. Release.
  const std::int64_t before = live();
  policy.release(all);
  if (before >= 0) {
    rep.states_released = before - live();
    xplor::detail::require(rep.states_released == static_cast<std::int64_t>(all.size()) && live() == live0,
                           fn, "release of ", all.size(), " states lowered live_states() by ",
                           rep.states_released);
  }
  return rep;
}

}  // namespace xplor
