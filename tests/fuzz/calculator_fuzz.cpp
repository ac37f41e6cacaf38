// libFuzzer target for the calculator tool: evaluate() never throws, reports either a value or an
// error, and the exact part of the text it formats ("7/2" of "7/2 = 3.5") evaluates back to the
// same value.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <xplor/env/tools/calculator.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto r = xplor::env::evaluate(input);
  if (r.ok == !r.error.empty()) __builtin_trap();
  if (r.ok) {
    if (r.value.den <= 0 || r.text.empty()) __builtin_trap();
    const auto again = xplor::env::evaluate(std::string_view(r.text).substr(0, r.text.find(' ')));
    if (again.ok && !(again.value == r.value)) __builtin_trap();
  }
  return 0;
}
