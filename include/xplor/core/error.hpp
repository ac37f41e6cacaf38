// xplor::error, the one exception xplor throws for bad input at a public boundary, and the
// helpers that build its message. A message always names the function, the argument and the
// offending value, e.g. "xplor::segmented_reduce: offsets[3] = 5 is below offsets[2] = 7".
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

#include "xplor/core/config.hpp"

namespace xplor {

/// Thrown for invalid arguments at public entry points. Derives from std::invalid_argument so
/// that generic handlers catch it; inner loops never throw it (they run on validated input).
class error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {

/// Throws xplor::error with "<function>: " followed by the streamed parts.
template <class... Parts>
[[noreturn]] void fail(std::string_view function, const Parts&... parts) {
  std::ostringstream message;
  message.precision(9);  // enough digits to tell two distinct floats apart
  message << function << ": ";
  (message << ... << parts);
  throw error(message.str());
}

/// Throws unless `condition` holds; the parts are only formatted on failure.
template <class... Parts>
void require(bool condition, std::string_view function, const Parts&... parts) {
  if (!condition) fail(function, parts...);
}

}  // namespace detail
}  // namespace xplor
