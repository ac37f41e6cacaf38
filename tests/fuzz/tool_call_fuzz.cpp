// libFuzzer target for the tool-call parser: parse_tool_call never throws, its views lie inside
// the response, and a valid call's name and input obey the documented format.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <xplor/env/wrappers.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view response(reinterpret_cast<const char*>(data), size);
  const auto call = xplor::env::parse_tool_call(response);
  const auto inside = [&](std::string_view v) {
    return v.empty() ||
           (v.data() >= response.data() && v.data() + v.size() <= response.data() + response.size());
  };
  using kind = xplor::env::tool_call::kind;
  if (call.status == kind::valid) {
    if (call.name.empty() || call.name.size() > 64 || !inside(call.name) || !inside(call.input))
      __builtin_trap();
    if (call.input.find("<tool") != std::string_view::npos || !call.error.empty()) __builtin_trap();
  } else if (call.status == kind::malformed) {
    if (call.error.empty()) __builtin_trap();
  } else if (response.find("<tool>") != std::string_view::npos ||
             response.find("<tool ") != std::string_view::npos) {
    __builtin_trap();  // a call was there and was not seen
  }
  return 0;
}
