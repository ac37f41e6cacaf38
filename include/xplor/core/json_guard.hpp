// Checks on JSON text from untrusted files, run before a parser sees it: nesting depth (dump(),
// comparisons and error messages recurse over nested values, so ~100k nested '[' in a 200 KB
// line overflowed the stack) and NUL bytes (nlohmann's parser stops at a NUL as if the text ended
// there, so whatever follows one was silently ignored). Standard library only; the loaders that
// parse (safetensors, the solution cache, the examples' state) call it first.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace xplor::detail {

/// What is wrong with `text` as JSON of nesting at most `max_depth` ('[' and '{' outside
/// strings), or "" when nothing: "a NUL byte at offset 17", "nesting deeper than 8 at offset 9".
/// Linear, no recursion; it does not validate the rest of the syntax (the parser does).
inline std::string json_guard_problem(std::string_view text, std::size_t max_depth) {
  std::size_t depth = 0;
  bool in_string = false, escaped = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\0') return "a NUL byte at offset " + std::to_string(i);
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        return "nesting deeper than " + std::to_string(max_depth) + " at offset " + std::to_string(i);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return "";
}

/// `s` cut to at most `n` bytes with "..." (for quoting untrusted text in an error message).
inline std::string json_guard_brief(std::string_view s, std::size_t n = 60) {
  return s.size() <= n ? std::string(s) : std::string(s.substr(0, n - 3)) + "...";
}

}  // namespace xplor::detail
