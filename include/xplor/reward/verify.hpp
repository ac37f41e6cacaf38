// Answer checking for verifiable rewards: extracting the final answer from a response (the last
// \boxed{...}, a GSM8K "####" marker, "the answer is ..."), normalising LaTeX-flavoured answers,
// and deciding whether two answers are equivalent, exactly, for numbers.
//
// Every function here runs in time linear in its input (no backtracking regexes, no rescans, no
// recursion), so a megabyte of '{' or of digits is as safe as a short answer. docs/reward.md
// has the table of what counts as equivalent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/reward/math_parse.hpp"

namespace xplor::reward {

namespace detail {

inline bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
inline bool is_digit(char c) { return c >= '0' && c <= '9'; }
inline bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
inline char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

inline std::string_view trim(std::string_view s) {
  std::size_t b = 0;
  std::size_t e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

/// When `text[i]` starts `\boxed` or `\fbox` followed by optional whitespace and '{', the
/// position of that brace; otherwise npos.
inline std::size_t box_brace_at(std::string_view text, std::size_t i) {
  for (std::string_view marker : {std::string_view("\\boxed"), std::string_view("\\fbox")}) {
    if (text.substr(i, marker.size()) != marker) continue;
    std::size_t j = i + marker.size();
    if (j < text.size() && is_alpha(text[j])) return std::string_view::npos;  // \boxedx
    while (j < text.size() && is_space(text[j])) ++j;
    if (j < text.size() && text[j] == '{') return j;
  }
  return std::string_view::npos;
}

}  // namespace detail

/// Content of the last outermost `\boxed{...}` (or `\fbox{...}`) in `text`, braces balanced, or
/// nullopt when there is none or the last one is never closed.
///
/// - A box inside a box is part of the outer box's content: `\boxed{\boxed{26}+1}` gives
///   `\boxed{26}+1` (which answers_equivalent reads as 27), not the inner "26" that verl's
///   `last_boxed_only_string` takes. Boxes after one another: the last, `\boxed{1} \boxed{2}`
///   gives "2".
/// - An unclosed last box gives nullopt even if an earlier box is closed (a truncated response
///   has no final answer).
/// - Whitespace between the command and its brace is accepted (`\boxed {5}`); `\boxed5` (no
///   brace) and `\boxedx{...}` are not boxes.
/// - A backslash escapes the next character, so `\{` and `\}` inside the box do not count as
///   braces: `\boxed{\{1, 2\}}` gives `\{1, 2\}`.
/// - The content is returned as written (not trimmed, not normalised). One forward pass.
inline std::optional<std::string> extract_boxed(std::string_view text) {
  std::optional<std::string> last = {};
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t open = text[i] == '\\' ? detail::box_brace_at(text, i) : std::string_view::npos;
    if (open == std::string_view::npos) {
      i += text[i] == '\\' ? 2 : 1;  // an escaped character is never a box's start
      continue;
    }
    std::size_t depth = 0;
    std::size_t k = open;
    for (; k < text.size(); ++k) {
      const char c = text[k];
      if (c == '\\') {
        ++k;  // escaped character (\{, \}, \\, ...)
      } else if (c == '{') {
        ++depth;
      } else if (c == '}' && --depth == 0) {
        break;
      }
    }
    if (k >= text.size()) return std::nullopt;  // the last outermost box is never closed
    last = std::string(text.substr(open + 1, k - open - 1));
    i = k + 1;
  }
  return last;
}

/// The GSM8K reference format: the text after the last "####" up to the end of its line,
/// trimmed ("#### 1,234" gives "1,234"); nullopt when there is no marker or nothing after it.
inline std::optional<std::string> extract_gsm8k(std::string_view text) {
  const std::size_t pos = text.rfind("####");
  if (pos == std::string_view::npos) return std::nullopt;
  std::string_view rest = text.substr(pos + 4);
  const std::size_t eol = rest.find('\n');
  if (eol != std::string_view::npos) rest = rest.substr(0, eol);
  rest = detail::trim(rest);
  if (rest.empty()) return std::nullopt;
  return std::string(rest);
}

/// The text after the last "answer is" (ASCII case-insensitive, so "The answer is", "the final
/// answer is", "My answer is"), after an optional ':'; it ends at a newline, at a period followed
/// by whitespace or the end of the text (the end of the sentence; "3.5" keeps its point), and is
/// trimmed. nullopt when there is no marker or nothing after it.
inline std::optional<std::string> extract_answer_is(std::string_view text) {
  constexpr std::string_view marker = "answer is";
  if (text.size() < marker.size()) return std::nullopt;
  std::size_t found = std::string_view::npos;
  for (std::size_t p = text.size() - marker.size() + 1; p-- > 0;) {
    bool match = true;
    for (std::size_t k = 0; k < marker.size() && match; ++k)
      match = detail::to_lower(text[p + k]) == marker[k];
    if (match) {
      found = p;
      break;
    }
  }
  if (found == std::string_view::npos) return std::nullopt;
  std::string_view rest = text.substr(found + marker.size());
  std::size_t b = 0;
  while (b < rest.size() && detail::is_space(rest[b])) ++b;
  if (b < rest.size() && rest[b] == ':') ++b;
  rest = rest.substr(b);
  std::size_t end = 0;
  while (end < rest.size() && rest[end] != '\n') {
    if (rest[end] == '.' && (end + 1 == rest.size() || detail::is_space(rest[end + 1]))) break;
    ++end;
  }
  rest = detail::trim(rest.substr(0, end));
  if (rest.empty()) return std::nullopt;
  return std::string(rest);
}

/// SQuAD answer normalisation (the `normalize_answer` of the SQuAD/TruthRL evaluation scripts):
/// lower-case, remove ASCII punctuation (Python's string.punctuation), remove the articles
/// "a", "an", "the" as whole words, collapse whitespace to single spaces and trim.
/// "I don't know." gives "i dont know". Only ASCII letters are lower-cased; bytes >= 0x80 (UTF-8)
/// count as word characters, as Python's unicode \b would for letters.
inline std::string squad_normalize(std::string_view text) {
  auto is_punct = [](char c) {
    return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') ||
           (c >= '{' && c <= '~');
  };
  auto is_word = [](char c) {
    return detail::is_digit(c) || (c >= 'a' && c <= 'z') || static_cast<unsigned char>(c) >= 0x80;
  };
  auto is_ws = [](char c) { return detail::is_space(c) || (c >= '\x1c' && c <= '\x1f'); };
  // 1. lower-case and drop punctuation.
  std::string stripped = {};
  stripped.reserve(text.size());
  for (char c : text) {
    c = detail::to_lower(c);
    if (!is_punct(c)) stripped.push_back(c);
  }
  // 2. articles (maximal runs of word characters equal to a/an/the) become a space; 3. collapse.
  std::string out = {};
  out.reserve(stripped.size());
  bool pending_space = false;
  std::size_t i = 0;
  while (i < stripped.size()) {
    const char c = stripped[i];
    if (is_ws(c)) {
      pending_space = true;
      ++i;
      continue;
    }
    if (is_word(c)) {
      std::size_t j = i;
      while (j < stripped.size() && is_word(stripped[j])) ++j;
      const std::string_view word(stripped.data() + i, j - i);
      if (word == "a" || word == "an" || word == "the") {
        pending_space = true;
      } else {
        if (pending_space && !out.empty()) out.push_back(' ');
        pending_space = false;
        out.append(word);
      }
      i = j;
      continue;
    }
    if (pending_space && !out.empty()) out.push_back(' ');  // other characters (controls)
    pending_space = false;
    out.push_back(c);
    ++i;
  }
  return out;
}

/// Normalises a math answer for comparison, in one left-to-right pass:
/// - all ASCII whitespace, `$`, `\$`, `~` and the spacing commands `\,` `\;` `\:` `\!` `\ `
///   `\quad` `\qquad` are removed; so are the math delimiters `\(` `\)` `\[` `\]`;
/// - `\text{...}`, `\textrm`, `\textnormal`, `\textbf`, `\textit`, `\mathrm`, `\mathbf`,
///   `\mathit`, `\mbox` are unwrapped (the content stays, the command and its braces go);
/// - `\left` and `\right` are removed (with a following `.`), `\displaystyle` too;
/// - `\dfrac` and `\tfrac` become `\frac`; `\%` becomes `%`; `{,}` becomes `,`; the unicode
///   minus U+2212 becomes `-`;
/// - one trailing `.` is removed.
/// Case is kept (math is case-sensitive); other commands are copied as they are.
inline std::string normalize_answer(std::string_view text) {
  std::string out = {};
  out.reserve(text.size());
  std::vector<char> braces = {};  // per open '{': 1 = copied to the output, 0 = an unwrapped command's
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    const char c = text[i];
    if (detail::is_space(c) || c == '$' || c == '~') {
      ++i;
    } else if (c == '\xE2' && i + 2 < n && text[i + 1] == '\x88' && text[i + 2] == '\x92') {
      out.push_back('-');  // U+2212 MINUS SIGN
      i += 3;
    } else if (c == '{') {
      if (i + 2 < n && text[i + 1] == ',' && text[i + 2] == '}') {
        out.push_back(',');
        i += 3;
      } else {
        braces.push_back(1);
        out.push_back('{');
        ++i;
      }
    } else if (c == '}') {
      if (braces.empty() || braces.back() == 1) out.push_back('}');
      if (!braces.empty()) braces.pop_back();
      ++i;
    } else if (c == '\\' && i + 1 < n) {
      const char d = text[i + 1];
      if (detail::is_alpha(d)) {
        std::size_t j = i + 1;
        while (j < n && detail::is_alpha(text[j])) ++j;
        const std::string_view name = text.substr(i + 1, j - i - 1);
        if (name == "text" || name == "textrm" || name == "textnormal" || name == "textbf" ||
            name == "textit" || name == "mathrm" || name == "mathbf" || name == "mathit" || name == "mbox") {
          std::size_t k = j;
          while (k < n && detail::is_space(text[k])) ++k;
          if (k < n && text[k] == '{') {
            braces.push_back(0);
            i = k + 1;
          } else {
            i = j;
          }
        } else if (name == "left" || name == "right") {
          i = j;
          if (i < n && text[i] == '.') ++i;
        } else if (name == "dfrac" || name == "tfrac") {
          out.append("\\frac");
          i = j;
        } else if (name == "displaystyle" || name == "quad" || name == "qquad") {
          i = j;
        } else {
          out.push_back('\\');
          out.append(name);
          i = j;
        }
      } else if (d == ',' || d == ';' || d == ':' || d == '!' || d == '$' || d == '(' || d == ')' ||
                 d == '[' || d == ']' || detail::is_space(d)) {
        i += 2;
      } else if (d == '%') {
        out.push_back('%');
        i += 2;
      } else {
        out.push_back('\\');  // \{, \}, \\ and the like stay escaped and do not touch `braces`
        out.push_back(d);
        i += 2;
      }
    } else {
      out.push_back(c);
      ++i;
    }
  }
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

namespace detail {

/// An exact number: (negative ? -1 : 1) * num / den * 10^exp, with `num` and `den` decimal digit
/// strings without leading or trailing zeros (trailing zeros live in `exp`); `num` empty means
/// zero. `percent` records a trailing '%' (applied by the comparison, see answers_equivalent).
struct exact_number {
  bool negative = false;
  std::string num = {};
  std::string den = "1";
  std::int64_t exp = 0;
  bool percent = false;
};

/// Exponent literals longer than this many significant digits make an answer non-numeric, so
/// that exponent sums can never overflow.
inline constexpr std::size_t max_exponent_digits = 15;

/// Strips leading zeros (value unchanged) and trailing zeros (moved into `exp`) from `digits`.
inline void canonicalize_digits(std::string& digits, std::int64_t& exp) {
  std::size_t lead = 0;
  while (lead < digits.size() && digits[lead] == '0') ++lead;
  std::size_t end = digits.size();
  while (end > lead && digits[end - 1] == '0') --end;
  exp += static_cast<std::int64_t>(digits.size() - end);
  digits = digits.substr(lead, end - lead);
}

/// Parses an unsigned decimal at `pos`: digits with optional thousands separators (first group of
/// 1-3 digits, then ",ddd" groups), an optional '.' and fraction digits; ".5" and "5." are
/// accepted. On success appends the digits, sets the exponent and advances `pos`.
inline bool parse_unsigned_decimal(std::string_view s, std::size_t& pos, std::string& digits,
                                   std::int64_t& exp) {
  std::size_t i = pos;
  std::size_t int_digits = 0;
  std::size_t group = 0;
  bool grouped = false;
  while (i < s.size()) {
    if (is_digit(s[i])) {
      digits.push_back(s[i]);
      ++int_digits;
      ++group;
      ++i;
    } else if (s[i] == ',' && i + 1 < s.size() && is_digit(s[i + 1])) {
      if ((grouped ? group != 3 : (group < 1 || group > 3))) return false;
      grouped = true;
      group = 0;
      ++i;
    } else {
      break;
    }
  }
  if (grouped && group != 3) return false;
  std::size_t frac_digits = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && is_digit(s[i])) {
      digits.push_back(s[i]);
      ++frac_digits;
      ++i;
    }
  }
  if (int_digits + frac_digits == 0) return false;
  exp = -static_cast<std::int64_t>(frac_digits);
  pos = i;
  return true;
}

inline bool parse_sign(std::string_view s, std::size_t& pos) {
  if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) return s[pos++] == '-';
  return false;
}

/// A base-10 exponent at `pos`. After 'e': `[+-]digits`. After '^': `{[+-]digits}` or a single
/// digit (LaTeX reads one token, so `10^12` is 10^1 followed by "2", not a number).
inline bool parse_exponent(std::string_view s, std::size_t& pos, std::int64_t& value, bool after_caret) {
  std::size_t i = pos;
  if (after_caret && (i >= s.size() || s[i] != '{')) {
    if (i >= s.size() || !is_digit(s[i])) return false;
    value = s[i] - '0';
    pos = i + 1;
    return true;
  }
  if (after_caret) ++i;  // the '{'
  const bool negative = parse_sign(s, i);
  const std::size_t start = i;
  while (i < s.size() && is_digit(s[i])) ++i;
  if (i == start) return false;
  std::size_t first = start;
  while (first < i && s[first] == '0') ++first;
  if (i - first > max_exponent_digits) return false;
  std::int64_t v = 0;
  for (std::size_t k = first; k < i; ++k) v = v * 10 + (s[k] - '0');
  if (after_caret) {
    if (i >= s.size() || s[i] != '}') return false;
    ++i;
  }
  value = negative ? -v : v;
  pos = i;
  return true;
}

/// One argument of \frac: `{[+-]decimal}` or a single digit (`\frac12`).
inline bool parse_frac_argument(std::string_view s, std::size_t& pos, bool& negative, std::string& digits,
                                std::int64_t& exp) {
  if (pos < s.size() && is_digit(s[pos])) {
    digits.push_back(s[pos++]);
    negative = false;
    exp = 0;
    return true;
  }
  if (pos >= s.size() || s[pos] != '{') return false;
  std::size_t i = pos + 1;
  negative = parse_sign(s, i);
  if (!parse_unsigned_decimal(s, i, digits, exp)) return false;
  if (i >= s.size() || s[i] != '}') return false;
  pos = i + 1;
  return true;
}

/// Parses a whole normalised answer as a number; nullopt when it is not one (or when its
/// denominator is zero or an exponent is out of range).
inline std::optional<exact_number> parse_number(std::string_view s) {
  exact_number r;
  std::size_t pos = 0;
  bool negative = parse_sign(s, pos);
  std::int64_t num_exp = 0;
  std::int64_t den_exp = 0;
  bool has_den = false;
  if (s.substr(pos, 5) == "\\frac") {
    pos += 5;
    bool neg_a = false;
    bool neg_b = false;
    if (!parse_frac_argument(s, pos, neg_a, r.num, num_exp)) return std::nullopt;
    r.den.clear();
    if (!parse_frac_argument(s, pos, neg_b, r.den, den_exp)) return std::nullopt;
    negative = negative != (neg_a != neg_b);
    has_den = true;
  } else {
    if (!parse_unsigned_decimal(s, pos, r.num, num_exp)) return std::nullopt;
    if (pos < s.size() && s[pos] == '/') {
      ++pos;
      const bool neg_b = parse_sign(s, pos);
      r.den.clear();
      if (!parse_unsigned_decimal(s, pos, r.den, den_exp)) return std::nullopt;
      negative = negative != neg_b;
      has_den = true;
    } else {
      std::int64_t e = 0;
      bool has_e = false;
      if (pos < s.size() && (s[pos] == 'e' || s[pos] == 'E')) {
        ++pos;
        if (!parse_exponent(s, pos, e, false)) return std::nullopt;
        has_e = true;
      } else if (s.substr(pos, 9) == "\\times10^" || s.substr(pos, 8) == "\\cdot10^") {
        pos += s[pos + 1] == 't' ? 9 : 8;
        if (!parse_exponent(s, pos, e, true)) return std::nullopt;
        has_e = true;
      } else if (pos < s.size() && s[pos] == '^' && r.num == "10" && num_exp == 0) {
        ++pos;  // a bare power of ten, 10^{k}
        if (!parse_exponent(s, pos, e, true)) return std::nullopt;
        r.num = "1";
        has_e = true;
      }
      if (has_e) num_exp += e;
    }
  }
  if (pos < s.size() && s[pos] == '%') {
    r.percent = true;
    ++pos;
  }
  if (pos != s.size()) return std::nullopt;
  canonicalize_digits(r.num, num_exp);
  if (has_den) {
    canonicalize_digits(r.den, den_exp);
    if (r.den.empty()) return std::nullopt;  // division by zero: not a number
  }
  if (r.num.empty()) {
    r.negative = false;
    r.den = "1";
    r.exp = 0;
    return r;
  }
  r.negative = negative;
  r.exp = num_exp - den_exp;
  return r;
}

__extension__ typedef unsigned __int128 uint128;

inline std::uint64_t to_u64(const std::string& digits) {
  std::uint64_t v = 0;
  for (char c : digits) v = v * 10 + static_cast<std::uint64_t>(c - '0');
  return v;
}

/// Limbs (base 1e9, least significant first) of a decimal digit string.
inline std::vector<std::uint64_t> to_limbs(const std::string& digits) {
  std::vector<std::uint64_t> limbs = {};
  limbs.reserve(digits.size() / 9 + 1);
  std::size_t end = digits.size();
  while (end > 0) {
    const std::size_t begin = end >= 9 ? end - 9 : 0;
    std::uint64_t v = 0;
    for (std::size_t k = begin; k < end; ++k) v = v * 10 + static_cast<std::uint64_t>(digits[k] - '0');
    limbs.push_back(v);
    end = begin;
  }
  return limbs;
}

/// Schoolbook product of two digit strings, returned as a digit string without leading zeros
/// and with its trailing zeros moved into `exp`.
inline std::string multiply_digits(const std::string& a, const std::string& b, std::int64_t& exp) {
  constexpr std::uint64_t base = 1000000000ULL;
  const std::vector<std::uint64_t> x = to_limbs(a);
  const std::vector<std::uint64_t> y = to_limbs(b);
  std::vector<std::uint64_t> r(x.size() + y.size(), 0);
  for (std::size_t i = 0; i < x.size(); ++i) {
    std::uint64_t carry = 0;
    for (std::size_t j = 0; j < y.size(); ++j) {
      const std::uint64_t cur = r[i + j] + x[i] * y[j] + carry;  // < 1e9 + 1e18 + 1e9 < 2^64
      r[i + j] = cur % base;
      carry = cur / base;
    }
    std::size_t k = i + y.size();
    while (carry != 0) {
      const std::uint64_t cur = r[k] + carry;
      r[k] = cur % base;
      carry = cur / base;
      ++k;
    }
  }
  std::string out = {};
  out.reserve(r.size() * 9);
  for (std::size_t k = r.size(); k-- > 0;) {
    char chunk[9];
    std::uint64_t v = r[k];
    for (int d = 8; d >= 0; --d) {
      chunk[d] = static_cast<char>('0' + v % 10);
      v /= 10;
    }
    out.append(chunk, 9);
  }
  canonicalize_digits(out, exp);
  return out;
}

/// Fractions whose cross products would need more limb multiplications than this compare by
/// their canonical form only (sign, numerator, denominator, exponent), so that adversarial
/// megabyte fractions stay linear; see docs/reward.md.
inline constexpr std::size_t max_cross_product_work = std::size_t{1} << 22;

/// Exact equality of two values (percent flags ignored).
inline bool values_equal(const exact_number& a, const exact_number& b) {
  if (a.num.empty() || b.num.empty()) return a.num.empty() && b.num.empty();
  if (a.negative != b.negative) return false;
  if (a.den == "1" && b.den == "1") return a.exp == b.exp && a.num == b.num;
  // a.num / a.den * 10^ea == b.num / b.den * 10^eb  <=>  a.num * b.den * 10^ea == b.num * a.den * 10^eb
  if (a.num.size() <= 19 && a.den.size() <= 19 && b.num.size() <= 19 && b.den.size() <= 19) {
    uint128 x = static_cast<uint128>(to_u64(a.num)) * to_u64(b.den);
    uint128 y = static_cast<uint128>(to_u64(b.num)) * to_u64(a.den);
    std::int64_t ex = a.exp;
    std::int64_t ey = b.exp;
    while (x % 10 == 0) {
      x /= 10;
      ++ex;
    }
    while (y % 10 == 0) {
      y /= 10;
      ++ey;
    }
    return x == y && ex == ey;
  }
  const std::size_t la = a.num.size() / 9 + 1;
  const std::size_t lb = b.num.size() / 9 + 1;
  const std::size_t da = a.den.size() / 9 + 1;
  const std::size_t db = b.den.size() / 9 + 1;
  if (la * db > max_cross_product_work || lb * da > max_cross_product_work)
    return a.exp == b.exp && a.num == b.num && a.den == b.den;
  std::int64_t ex = a.exp;
  std::int64_t ey = b.exp;
  const std::string x = multiply_digits(a.num, b.den, ex);
  const std::string y = multiply_digits(b.num, a.den, ey);
  return ex == ey && x == y;
}

/// A percent answer p% matches v when p == v or p / 100 == v (both sides percent: p == q).
inline bool numbers_equivalent(const exact_number& a, const exact_number& b) {
  if (a.percent == b.percent) return values_equal(a, b);
  const exact_number& p = a.percent ? a : b;
  const exact_number& q = a.percent ? b : a;
  if (values_equal(p, q)) return true;
  exact_number scaled = p;
  scaled.exp -= 2;
  return values_equal(scaled, q);
}

}  // namespace detail

/// Why check_answer judged two answers equivalent or not, so that rewards can be audited.
enum class verdict_reason : std::uint8_t {
  same_text,        ///< equal after prenormalisation (decoration and spacing removed)
  same_value,       ///< equal as exact values, element by element for tuples, sets, matrices
  empty,            ///< an answer is empty after normalisation: never equivalent
  different_value,  ///< both read as math; some value differs
  different_form,   ///< both read as math; different kinds (number vs list, bracket kinds, sizes)
  different_unit,   ///< both carry a unit and the units differ ("2 hours" vs "2 minutes")
  unsupported,      ///< an answer is outside the math grammar and the texts differ
  too_large,        ///< beyond the exact arithmetic's limits: undecided, reported not equivalent
  no_answer,        ///< no final answer could be extracted (math_reward; check_answer never says it)
};

inline const char* to_string(verdict_reason r) {
  switch (r) {
    case verdict_reason::same_text:
      return "same_text";
    case verdict_reason::same_value:
      return "same_value";
    case verdict_reason::empty:
      return "empty";
    case verdict_reason::different_value:
      return "different_value";
    case verdict_reason::different_form:
      return "different_form";
    case verdict_reason::different_unit:
      return "different_unit";
    case verdict_reason::unsupported:
      return "unsupported";
    case verdict_reason::too_large:
      return "too_large";
    case verdict_reason::no_answer:
      return "no_answer";
  }
  return "?";
}

/// The result of check_answer: `equivalent` and the reason.
struct verdict {
  bool equivalent = false;
  verdict_reason reason = verdict_reason::empty;
};

namespace detail {

/// The text an unparsed answer is compared by: prenormalized, \text{} marks dropped, spaces
/// dropped except one between two letters or digits ("1 000" stays apart from "1000").
inline std::string text_key(std::string_view pre) {
  std::string out = {};
  out.reserve(pre.size());
  bool pending = false;
  auto alnum = [](char c) { return math::is_digit(c) || math::is_letter(c); };
  for (char c : pre) {
    if (c == ' ' || c == math::text_open || c == math::text_close) {
      pending = true;
      continue;
    }
    if (c == math::thousands_mark) c = ',';
    if (pending && !out.empty() && alnum(out.back()) && alnum(c)) out.push_back(' ');
    pending = false;
    out.push_back(c);
  }
  return out;
}

/// A scalar's source read by the arbitrary-precision number path (any length of digits).
inline std::optional<exact_number> plain_number(std::string_view source, bool percent) {
  if (source.empty()) return std::nullopt;
  const char c = source[0];
  if (!is_digit(c) && c != '-' && c != '+' && c != '.' && c != '\\') return std::nullopt;
  std::string s(source);
  for (char& x : s)
    if (x == math::thousands_mark) x = ',';
  std::optional<exact_number> r = parse_number(normalize_answer(s));
  if (r) {
    if (r->percent) return std::nullopt;  // a percent sign inside the scalar's own text
    r->percent = percent;
  }
  return r;
}

inline std::string canonical_units(std::string_view unit) {
  std::string out = {};
  std::size_t i = 0;
  while (i < unit.size()) {
    if (!math::is_letter(unit[i])) {
      if (unit[i] != ' ') out.push_back(unit[i]);
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < unit.size() && math::is_letter(unit[j])) ++j;
    out.append(math::canonical_unit(unit.substr(i, j - i)));
    out.push_back(' ');
    i = j;
  }
  return out;
}

inline verdict_reason compare_nodes(const math::node& a, const math::node& b, math::work_budget& budget);

/// Items compared in order, each pair must be equal.
inline verdict_reason compare_in_order(const std::vector<math::node>& a, const std::vector<math::node>& b,
                                       math::work_budget& budget) {
  if (a.size() != b.size()) return verdict_reason::different_form;
  for (std::size_t k = 0; k < a.size(); ++k) {
    const verdict_reason r = compare_nodes(a[k], b[k], budget);
    if (r != verdict_reason::same_value) return r;
  }
  return verdict_reason::same_value;
}

inline verdict_reason compare_nodes(const math::node& a, const math::node& b, math::work_budget& budget) {
  using kind = math::node::kind;
  budget.spend(1);  // nested unordered sets multiply their comparisons: bounded by the budget
  if (a.k != b.k) return verdict_reason::different_form;
  switch (a.k) {
    case kind::scalar: {
      if (!a.unit.empty() && !b.unit.empty() && canonical_units(a.unit) != canonical_units(b.unit))
        return verdict_reason::different_unit;
      const std::optional<exact_number> x = plain_number(a.source, a.percent);
      if (x) {
        const std::optional<exact_number> y = plain_number(b.source, b.percent);
        if (y)
          return numbers_equivalent(*x, *y) ? verdict_reason::same_value : verdict_reason::different_value;
      }
      if (a.big || b.big) return verdict_reason::too_large;
      if (a.percent == b.percent)
        return math::equal(a.v, b.v, budget) ? verdict_reason::same_value : verdict_reason::different_value;
      // p% matches v when p == v or p / 100 == v.
      const math::node& p = a.percent ? a : b;
      const math::node& q = a.percent ? b : a;
      if (math::equal(p.v, q.v, budget)) return verdict_reason::same_value;
      math::value hundredth;
      math::divide(p.v, math::value::integer(100), hundredth, budget);
      return math::equal(hundredth, q.v, budget) ? verdict_reason::same_value
                                                 : verdict_reason::different_value;
    }
    case kind::infinity:
      return a.sign == b.sign ? verdict_reason::same_value : verdict_reason::different_value;
    case kind::bracket:
      if (a.open != b.open || a.close != b.close) return verdict_reason::different_form;
      return compare_in_order(a.items, b.items, budget);
    case kind::matrix:
      if (a.cols != b.cols) return verdict_reason::different_form;
      return compare_in_order(a.items, b.items, budget);
    case kind::relation: {
      if (a.ops != b.ops) return verdict_reason::different_form;
      const verdict_reason r = compare_in_order(a.items, b.items, budget);
      if (r == verdict_reason::same_value || a.ops.size() != 1 || (a.ops[0] != '=' && a.ops[0] != 'n'))
        return r;
      const std::vector<math::node> swapped{b.items[1], b.items[0]};  // a = b is b = a
      const verdict_reason s = compare_in_order(a.items, swapped, budget);
      return s == verdict_reason::same_value ? s : r;
    }
    case kind::set: {
      // Unordered: solution lists, \{...\}, \pm pairs and unions (a union only matches a union).
      if ((a.open == 'u') != (b.open == 'u') || a.items.size() != b.items.size())
        return verdict_reason::different_form;
      const verdict_reason in_order = compare_in_order(a.items, b.items, budget);
      if (in_order == verdict_reason::same_value) return in_order;
      constexpr std::size_t max_unordered = 64;  // the matching below is quadratic
      const std::size_t n = a.items.size();
      if (n > max_unordered) return verdict_reason::too_large;
      // A perfect matching between equal items (Kuhn's augmenting paths over the n x n equality
      // table), so the verdict never depends on the order of either side.
      std::vector<char> eq(n * n, 0);
      bool too_large = false;
      for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) {
          const verdict_reason r = compare_nodes(a.items[i], b.items[j], budget);
          eq[i * n + j] = r == verdict_reason::same_value;
          too_large = too_large || r == verdict_reason::too_large;
        }
      std::vector<std::size_t> match(n, n);  // b item -> a item
      std::vector<char> seen(n);
      auto augment = [&](auto&& self, std::size_t i) -> bool {
        for (std::size_t j = 0; j < n; ++j) {
          if (!eq[i * n + j] || seen[j]) continue;
          seen[j] = 1;
          if (match[j] == n || self(self, match[j])) {
            match[j] = i;
            return true;
          }
        }
        return false;
      };
      for (std::size_t i = 0; i < n; ++i) {
        std::fill(seen.begin(), seen.end(), 0);
        if (!augment(augment, i))
          return too_large ? verdict_reason::too_large : verdict_reason::different_value;
      }
      return verdict_reason::same_value;
    }
  }
  return verdict_reason::different_form;
}

}  // namespace detail

/// Decides whether a predicted answer is equivalent to a reference answer, exactly, and why.
///
/// Both answers are prenormalised (decoration, spacing, `$`, `\left`, `^\circ` removed; see
/// math::prenormalize); identical texts are equivalent. Otherwise both are read as math
/// (math_parse.hpp): numbers of any length (thousands separators `1,234` / `1{,}234` at the top
/// level, decimals, `\frac`, `a/b`, scientific forms, percent, mixed numbers `2\frac{1}{2}`),
/// sums and products of rationals, radicals, pi, i and symbols with integer powers (term order,
/// `\sqrt3`, `\cdot`, `\frac{\sqrt3}{2}` == `\frac{1}{2}\sqrt{3}`), tuples and intervals with
/// their bracket kinds, sets, unions and solution lists (unordered; `a, b` with a space after
/// the comma is a list, `1,234` a number), `\pm`, relations (`x \leq 5` == `5 \geq x`), a
/// leading `x =` label, matrices across pmatrix/bmatrix/array, trailing units (compared only
/// when both carry one). Values are compared exactly: 0.333333 is not 1/3. When an answer is
/// outside that grammar the prenormalised texts must be equal. Nothing is guessed: undecidable
/// pairs are not equivalent (reason too_large or unsupported). Symmetric; linear time in the
/// input length (arithmetic is bounded by math::work_budget).
inline verdict check_answer(std::string_view predicted, std::string_view reference) {
  const std::string p = math::prenormalize(predicted);
  const std::string r = math::prenormalize(reference);
  // Fast path for the commonest pairs, two plain numbers without spaces or marks (GSM8K): the
  // arbitrary-precision number reader decides them as the full grammar would.
  constexpr std::string_view marks = " \x01\x02\x03";
  if (!p.empty() && !r.empty() && p.find_first_of(marks) == std::string::npos &&
      r.find_first_of(marks) == std::string::npos) {
    if (p == r) return {true, verdict_reason::same_text};
    if (const auto x = detail::parse_number(p)) {
      if (const auto y = detail::parse_number(r))
        return detail::numbers_equivalent(*x, *y) ? verdict{true, verdict_reason::same_value}
                                                  : verdict{false, verdict_reason::different_value};
    }
  }
  const std::string kp = detail::text_key(p);
  const std::string kr = detail::text_key(r);
  if (kp.empty() || kr.empty()) return {false, verdict_reason::empty};
  if (kp == kr) return {true, verdict_reason::same_text};
  math::symbol_table symbols;
  math::work_budget budget;
  bool limit = false;
  std::vector<math::token> tokens = {};
  auto read = [&](const std::string& s) -> std::optional<math::node> {
    if (!math::lex(s, tokens)) return std::nullopt;
    try {
      math::parser reader(s, tokens, symbols, budget);
      return reader.answer();
    } catch (const math::math_unsupported&) {
      return std::nullopt;
    } catch (const math::math_limit&) {
      limit = true;
      return std::nullopt;
    }
  };
  const std::optional<math::node> a = read(p);
  const std::optional<math::node> b = a ? read(r) : std::nullopt;
  if (!a || !b) return {false, limit ? verdict_reason::too_large : verdict_reason::unsupported};
  verdict_reason why;
  try {
    why = detail::compare_nodes(*a, *b, budget);
  } catch (const math::math_limit&) {
    why = verdict_reason::too_large;
  }
  return {why == verdict_reason::same_value, why};
}

/// Whether a predicted answer is equivalent to a reference answer: check_answer(...).equivalent.
inline bool answers_equivalent(std::string_view predicted, std::string_view reference) {
  return check_answer(predicted, reference).equivalent;
}

/// Whether `answer` normalises to a number answers_equivalent compares numerically.
inline bool is_numeric_answer(std::string_view answer) {
  return detail::parse_number(normalize_answer(answer)).has_value();
}

}  // namespace xplor::reward
