// Shared by the examples: command-line parsing on CLI11 with one error format, and numeric options
// that are read and checked in one place. CLI11's own numeric options are not used because its
// checks let through what a flag must reject (NaN passes CLI::Range, "-1" wraps into an unsigned
// seed), it reads "010" as octal, and it converts floats through long double, which can round
// twice; these helpers read base-10 integers and round floats once (std::from_chars), as strtod
// and strtof do, so a flag gives the same value it gave before CLI11.
#pragma once

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

namespace xplor::examples {

/// Prints "<program>: <message> (try --help)" and exits with status 2, the usual status of a
/// usage error. For checks that involve several flags, after parse_flags.
[[noreturn]] inline void usage_error(const CLI::App& app, const std::string& message) {
  std::fprintf(stderr, "%s: %s (try --help)\n", app.get_name().c_str(), message.c_str());
  std::exit(2);
}

/// Parses the command line into `app`'s options. --help (-h) prints the usage and exits with 0;
/// an unknown flag, a missing value or a value an option rejects is a usage_error.
inline void parse_flags(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    std::exit(app.exit(e));
  } catch (const CLI::ParseError& e) {
    usage_error(app, e.what());
  }
}

namespace detail {

/// The whole of `text` as a T (base 10 for integers), or false.
template <class T>
bool read_whole(const std::string& text, T& x) {
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, x);
  return ec == std::errc{} && ptr == end && !text.empty();
}

inline std::string text_of(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

inline CLI::Validator integer_check(long long lo, long long hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        long long x = 0;
        if (!read_whole(text, x) || x < lo || x > hi)
          return "needs an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got '" +
                 text + "'";
        return {};
      },
      "");
}

}  // namespace detail

/// An integer option in [lo, hi] (base 10); the message names the range and the value given.
template <std::integral T>
CLI::Option* add_integer(CLI::App& app, const std::string& name, T& value, long long lo, long long hi,
                         const std::string& description) {
  return app
      .add_option_function<std::string>(
          name, [&value](const std::string& text) { detail::read_whole(text, value); }, description)
      ->type_name("INT")
      ->check(detail::integer_check(lo, hi));
}

/// A comma-separated list of integers, each in [lo, hi]; the list replaces the default.
template <std::integral T>
CLI::Option* add_integer_list(CLI::App& app, const std::string& name, std::vector<T>& values, long long lo,
                              long long hi, const std::string& description) {
  return app
      .add_option_function<std::vector<std::string>>(
          name,
          [&values](const std::vector<std::string>& texts) {
            values.assign(texts.size(), T{});
            for (std::size_t i = 0; i < texts.size(); ++i) detail::read_whole(texts[i], values[i]);
          },
          description)
      ->type_name("LIST")
      ->delimiter(',')
      ->check(detail::integer_check(lo, hi));
}

/// A finite floating-point option in [lo, hi], or in (lo, hi] when `exclusive_lo` (a learning
/// rate that must be positive); hi = infinity leaves it unbounded above.
template <std::floating_point T>
CLI::Option* add_number(CLI::App& app, const std::string& name, T& value, double lo, double hi,
                        const std::string& description, bool exclusive_lo = false) {
  const std::string wanted = std::isinf(hi) ? std::string(exclusive_lo ? "> " : ">= ") + detail::text_of(lo)
                                            : "in " + std::string(exclusive_lo ? "(" : "[") +
                                                  detail::text_of(lo) + ", " + detail::text_of(hi) + "]";
  CLI::Validator check(
      [lo, hi, exclusive_lo, wanted](std::string& text) -> std::string {
        T x{};
        if (!detail::read_whole(text, x) || !std::isfinite(x) ||
            !((exclusive_lo ? x > lo : x >= lo) && x <= hi))
          return "needs a finite number " + wanted + ", got '" + text + "'";
        return {};
      },
      "");
  return app
      .add_option_function<std::string>(
          name, [&value](const std::string& text) { detail::read_whole(text, value); }, description)
      ->type_name("X")
      ->check(check);
}

/// A path to an existing regular file.
inline CLI::Validator existing_file() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        std::error_code ec;
        if (!std::filesystem::is_regular_file(text, ec)) return "needs an existing file, got '" + text + "'";
        return {};
      },
      "");
}

}  // namespace xplor::examples
