// A safe arithmetic calculator for tool use (GEM's tools, issue 7): a hand-written
// recursive-descent parser over exact rationals. Nothing is ever executed; the parser only reads
// characters.
//
// Grammar (ASCII whitespace is ignored between tokens):
//   expr    := term (('+' | '-') term)*                 left-associative
//   term    := unary (('*' | '/') unary)*               left-associative
//   unary   := ('+' | '-')* power                       so -2^2 = -4
//   power   := primary (('^' | '**') unary)?            right-associative: 2^3^2 = 2^9; 2^-1 = 1/2
//   primary := number | '(' expr ')'
//   number  := digits ['.' digits*] | '.' digits        "3", "3.25", "3.", ".5" (no exponent form)
// Implicit multiplication ("2(3)") is an error.
//
// Arithmetic is exact: a value is a fraction num/den in lowest terms with den > 0 and both in
// [-(2^63 - 1), 2^63 - 1]; every operation is overflow-checked and reports overflow as an error
// (never undefined behaviour). The exponent of '^' must be an integer (a fraction with
// denominator 1); a negative exponent takes the reciprocal (0^-1 is a division by zero); 0^0 = 1.
//
// Limits: input of at most max_calc_length = 10,000 characters and nesting (parentheses plus
// chained '^' exponents) of at most max_calc_depth = 256; the depth is checked before recursing,
// so 10,000 nested parentheses are rejected with an error, never a stack overflow. Signs are read
// in a loop, so a long run of '-' costs no stack either.
//
// Errors name the 0-based character position, e.g. "division by zero at position 3",
// "unexpected character 'x' at position 2", "missing ')' for the '(' at position 0 (found end of
// input at position 4)". evaluate() never throws.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "xplor/env/tool.hpp"

namespace xplor::env {

inline constexpr std::size_t max_calc_length = 10000;
inline constexpr int max_calc_depth = 256;

/// An exact fraction num/den in lowest terms, den > 0, |num|, den <= 2^63 - 1.
struct rational {
  std::int64_t num = 0;
  std::int64_t den = 1;

  bool is_integer() const { return den == 1; }
  /// "n" for an integer, "n/d" otherwise.
  std::string to_string() const {
    std::string s = std::to_string(num);
    if (den != 1) {
      s += '/';
      s += std::to_string(den);
    }
    return s;
  }
  double to_double() const { return static_cast<double>(num) / static_cast<double>(den); }
  friend bool operator==(const rational&, const rational&) = default;
};

struct calc_result {
  bool ok = false;
  rational value;          // the exact value when ok
  std::string text = {};   // the formatted value when ok (see format_rational)
  std::string error = {};  // the error message when !ok
};

namespace detail {

inline constexpr std::int64_t max_magnitude = std::numeric_limits<std::int64_t>::max();

/// Overflow-checked operations on int64 restricted to [-(2^63 - 1), 2^63 - 1]: false on overflow.
inline bool checked_add(std::int64_t a, std::int64_t b, std::int64_t& out) {
  if (b > 0 ? a > max_magnitude - b : a < -max_magnitude - b) return false;
  out = a + b;
  return true;
}
inline bool checked_mul(std::int64_t a, std::int64_t b, std::int64_t& out) {
  if (a == 0 || b == 0) {
    out = 0;
    return true;
  }
  const std::uint64_t ua = a < 0 ? static_cast<std::uint64_t>(-a) : static_cast<std::uint64_t>(a);
  const std::uint64_t ub = b < 0 ? static_cast<std::uint64_t>(-b) : static_cast<std::uint64_t>(b);
  if (ua > static_cast<std::uint64_t>(max_magnitude) / ub) return false;
  const std::uint64_t p = ua * ub;  // <= 2^63 - 1
  out = ((a < 0) != (b < 0)) ? -static_cast<std::int64_t>(p) : static_cast<std::int64_t>(p);
  return true;
}

/// num/den in lowest terms with den > 0 (den != 0, both within the magnitude bound).
inline rational normalized(std::int64_t num, std::int64_t den) {
  if (den < 0) {
    num = -num;
    den = -den;
  }
  const std::int64_t g = std::gcd(num, den);  // > 0 since den > 0
  return {num / g, den / g};
}

inline bool add(const rational& x, const rational& y, rational& out) {
  const std::int64_t g = std::gcd(x.den, y.den);
  std::int64_t a = 0, b = 0, num = 0, den = 0;
  if (!checked_mul(x.num, y.den / g, a) || !checked_mul(y.num, x.den / g, b) || !checked_add(a, b, num) ||
      !checked_mul(x.den / g, y.den, den))
    return false;
  out = normalized(num, den);
  return true;
}
inline bool mul(const rational& x, const rational& y, rational& out) {
  const std::int64_t g1 = std::gcd(x.num, y.den), g2 = std::gcd(y.num, x.den);
  // gcd(0, d) = d > 0, so both divisors are positive.
  std::int64_t num = 0, den = 0;
  if (!checked_mul(x.num / g1, y.num / g2, num) || !checked_mul(x.den / g2, y.den / g1, den)) return false;
  out = normalized(num, den);
  return true;
}
/// x^e for an integer e >= 0 by repeated squaring; false on overflow.
inline bool power(rational x, std::int64_t e, rational& out) {
  rational r{1, 1};
  while (e > 0) {
    if (e & 1) {
      if (!mul(r, x, r)) return false;
    }
    e >>= 1;
    if (e > 0 && !mul(x, x, x)) return false;
  }
  out = r;
  return true;
}

struct parse_error {
  std::string message = {};
};

class parser {
 public:
  explicit parser(std::string_view s) : s_(s) {}

  rational parse_all() {
    skip_space();
    if (pos_ == s_.size()) throw parse_error{"empty expression"};
    const rational v = expr();
    skip_space();
    if (pos_ < s_.size()) {
      if (s_[pos_] == ')') fail("unexpected ')'", pos_);
      std::string message = "unexpected character ";
      message += describe(s_[pos_]);
      fail(std::move(message), pos_);
    }
    return v;
  }

 private:
  [[noreturn]] static void fail(std::string message, std::size_t at) {
    message += " at position ";
    message += std::to_string(at);
    throw parse_error{std::move(message)};
  }
  static std::string describe(char c) {
    const auto u = static_cast<unsigned char>(c);
    std::string s;
    if (u >= 0x20 && u < 0x7f) {
      s += '\'';
      s += c;
      s += '\'';
      return s;
    }
    static constexpr char hex[] = "0123456789abcdef";
    s = "byte 0x";
    s += hex[u >> 4];
    s += hex[u & 15];
    return s;
  }
  static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  }
  static bool is_digit(char c) { return c >= '0' && c <= '9'; }
  void skip_space() {
    while (pos_ < s_.size() && is_space(s_[pos_])) ++pos_;
  }
  void enter(std::size_t at) {
    if (++depth_ > max_calc_depth) {
      std::string message = "nesting deeper than ";
      message += std::to_string(max_calc_depth);
      fail(std::move(message), at);
    }
  }

  rational expr() {
    rational v = term();
    for (;;) {
      skip_space();
      if (pos_ == s_.size() || (s_[pos_] != '+' && s_[pos_] != '-')) return v;
      const std::size_t at = pos_;
      const bool minus = s_[pos_++] == '-';
      rational w = term();
      if (minus) w.num = -w.num;
      if (!add(v, w, v)) fail("overflow", at);
    }
  }

  rational term() {
    rational v = unary();
    for (;;) {
      skip_space();
      if (pos_ == s_.size() || (s_[pos_] != '*' && s_[pos_] != '/')) return v;
      if (s_[pos_] == '*' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '*') return v;  // '**' is power
      const std::size_t at = pos_;
      const bool divide = s_[pos_++] == '/';
      rational w = unary();
      if (divide) {
        if (w.num == 0) fail("division by zero", at);
        w = normalized(w.den, w.num);
      }
      if (!mul(v, w, v)) fail("overflow", at);
    }
  }

  rational unary() {
    bool negative = false;
    for (;;) {
      skip_space();
      if (pos_ < s_.size() && (s_[pos_] == '-' || s_[pos_] == '+')) {
        if (s_[pos_] == '-') negative = !negative;
        ++pos_;
      } else {
        break;
      }
    }
    rational v = power_expr();
    if (negative) v.num = -v.num;
    return v;
  }

  rational power_expr() {
    rational base = primary();
    skip_space();
    if (pos_ == s_.size()) return base;
    std::size_t width = 0;
    if (s_[pos_] == '^') {
      width = 1;
    } else if (s_[pos_] == '*' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '*') {
      width = 2;
    } else {
      return base;
    }
    const std::size_t at = pos_;
    pos_ += width;
    enter(at);
    const rational e = unary();
    --depth_;
    if (!e.is_integer()) {
      std::string message = "the exponent ";
      message += e.to_string();
      message += " is not an integer";
      fail(std::move(message), at);
    }
    if (e.num < 0) {
      if (base.num == 0) fail("division by zero (0 to a negative power)", at);
      base = normalized(base.den, base.num);
    }
    const std::int64_t n = e.num < 0 ? -e.num : e.num;
    rational out;
    if (!power(base, n, out)) fail("overflow", at);
    return out;
  }

  rational primary() {
    skip_space();
    if (pos_ == s_.size()) fail("unexpected end of input, expected a number or '('", pos_);
    const char c = s_[pos_];
    if (c == '(') {
      const std::size_t open = pos_;
      enter(open);
      ++pos_;
      const rational v = expr();
      skip_space();
      if (pos_ == s_.size() || s_[pos_] != ')') {
        std::string found = pos_ == s_.size() ? std::string("end of input") : describe(s_[pos_]);
        std::string message = "missing ')' for the '(' at position ";
        message += std::to_string(open);
        message += " (found ";
        message += found;
        message += ')';
        fail(std::move(message), pos_);
      }
      ++pos_;
      --depth_;
      return v;
    }
    if (is_digit(c) || c == '.') return number();
    if (c == ')') fail("unexpected ')', expected a number or '('", pos_);
    std::string message = "unexpected character ";
    message += describe(c);
    message += ", expected a number or '('";
    fail(std::move(message), pos_);
  }

  rational number() {
    const std::size_t start = pos_;
    std::int64_t num = 0, den = 1;
    bool any_digit = false, point = false;
    while (pos_ < s_.size() && (is_digit(s_[pos_]) || (s_[pos_] == '.' && !point))) {
      if (s_[pos_] == '.') {
        point = true;
      } else {
        any_digit = true;
        if (!checked_mul(num, 10, num) || !checked_add(num, s_[pos_] - '0', num))
          fail("the number is too large", start);
        if (point && !checked_mul(den, 10, den)) fail("the number has too many decimals", start);
      }
      ++pos_;
    }
    if (!any_digit) fail("a lone '.' is not a number", start);
    return normalized(num, den);
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace detail

/// The text of a value: "42" for an integer; "7/2 = 3.5" when the fraction has an exact decimal
/// form of at most 18 decimals; otherwise "1/3 ~ 0.333333333333" (12 significant digits).
inline std::string format_rational(const rational& v) {
  if (v.is_integer()) return std::to_string(v.num);
  std::string s = v.to_string();
  // Exact decimal: den = 2^a 5^b, then v = num * (10^k / den) / 10^k with k = max(a, b).
  std::int64_t d = v.den;
  int twos = 0, fives = 0;
  for (; d % 2 == 0; ++twos) d /= 2;
  for (; d % 5 == 0; ++fives) d /= 5;
  const int k = twos > fives ? twos : fives;
  std::int64_t scaled = 0;
  if (d == 1 && k <= 18) {
    std::int64_t scale = 1;
    for (int i = 0; i < k; ++i) scale *= 10;  // 10^18 < 2^63
    if (detail::checked_mul(v.num, scale / v.den, scaled)) {
      const bool negative = scaled < 0;
      std::string digits = std::to_string(negative ? -scaled : scaled);
      if (digits.size() <= static_cast<std::size_t>(k))
        digits.insert(0, static_cast<std::size_t>(k) + 1 - digits.size(), '0');
      digits.insert(digits.size() - static_cast<std::size_t>(k), ".");
      s += " = ";
      if (negative) s += '-';
      s += digits;
      return s;
    }
  }
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v.to_double(), std::chars_format::general, 12);
  s += " ~ ";
  s.append(buf, r.ptr);
  return s;
}

/// Evaluates an arithmetic expression exactly (grammar and limits at the top of this file).
/// Never throws: errors come back as ok = false with a message naming the position.
inline calc_result evaluate(std::string_view expr) {
  calc_result r;
  if (expr.size() > max_calc_length) {
    r.error = "the expression is ";
    r.error += std::to_string(expr.size());
    r.error += " characters long, over the limit of ";
    r.error += std::to_string(max_calc_length);
    return r;
  }
  try {
    r.value = detail::parser(expr).parse_all();
  } catch (const detail::parse_error& e) {
    r.error = e.message;
    return r;
  }
  r.ok = true;
  r.text = format_rational(r.value);
  return r;
}

/// The calculator as a tool for the tool-use wrapper: output is the formatted value, or
/// "error: <message>" with ok = false.
class calculator_tool final : public tool {
 public:
  std::string name() const override { return "calculator"; }
  tool_result run(std::string_view input) const override {
    calc_result c = evaluate(input);
    if (c.ok) return {true, std::move(c.text)};
    std::string out = "error: ";
    out += c.error;
    return {false, std::move(out)};
  }
};

}  // namespace xplor::env
