// libFuzzer target for the answer checker: extract_boxed on the whole input, check_answer on
// the two halves split at the first '\x1f' byte (or the middle when there is none), and
// classify_response against both halves as gold answers. Besides crashes and sanitizer reports it
// traps on broken invariants: equivalence must be symmetric and reflexive (an answer is
// equivalent to itself unless it is empty), a verdict's reason must agree with it, an extracted
// box lies inside the input, and a judge is never asked about an empty answer.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>
#include <xplor/reward/truth.hpp>
#include <xplor/reward/verify.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::size_t split = input.find('\x1f');
  const bool has_separator = split != std::string_view::npos;
  if (!has_separator) split = size / 2;
  const std::string_view a = input.substr(0, split);
  const std::string_view b = input.substr(has_separator ? split + 1 : split);

  const auto boxed = xplor::reward::extract_boxed(input);
  if (boxed && boxed->size() > input.size()) __builtin_trap();
  (void)xplor::reward::extract_gsm8k(input);
  (void)xplor::reward::extract_answer_is(input);
  (void)xplor::reward::squad_normalize(input);

  using xplor::reward::verdict_reason;
  const auto ab = xplor::reward::check_answer(a, b);
  const auto ba = xplor::reward::check_answer(b, a);
  if (ab.equivalent != ba.equivalent) __builtin_trap();
  const bool equal_reason = ab.reason == verdict_reason::same_text || ab.reason == verdict_reason::same_value;
  if (ab.equivalent != equal_reason) __builtin_trap();
  const auto aa = xplor::reward::check_answer(a, a);
  if (aa.equivalent != (aa.reason != verdict_reason::empty)) __builtin_trap();

  const std::vector<std::string> gold{std::string(a), std::string(b)};
  xplor::reward::classify_options options;
  options.judge = [](std::string_view answer, std::string_view) {
    if (answer.empty()) __builtin_trap();
    return answer.size() % 2 == 0;
  };
  const auto o = xplor::reward::classify_response(input, gold, options);
  if (!boxed && o != xplor::reward::outcome::no_answer) __builtin_trap();
  (void)xplor::reward::classify_response(b, gold);
  return 0;
}
