// libFuzzer target for the two-answer comparison: answers_equivalent(a, b) on the two halves of
// the input, split at the first '\x1f' byte (or the middle when there is none). Crashes,
// sanitizer reports and timeouts on inputs up to 1 MB are the findings.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <xplor/reward/verify.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::size_t split = input.find('\x1f');
  const bool separator = split != std::string_view::npos;
  if (!separator) split = size / 2;
  (void)xplor::reward::answers_equivalent(input.substr(0, split),
                                          input.substr(separator ? split + 1 : split));
  return 0;
}
