// Reading a math answer into a structure that can be compared exactly: scalars (exact values,
// see math_value.hpp) with an optional percent sign and unit, +-infinity, bracketed lists
// (tuples and intervals, bracket kinds kept), sets (`\{...\}`, solution lists, `\pm`, unions),
// relations (`x \leq 5`), matrices. docs/reward.md lists the accepted forms.
//
// Three linear passes: `prenormalize` strips decoration (`$`, `\left`, spacing, `^\circ`) and
// marks `\text{}` content; `lex` makes tokens; `parser` is a recursive descent with a nesting
// limit. Anything outside the grammar throws math_unsupported and the caller falls back to
// comparing texts; arithmetic beyond math_value's limits marks the scalar `big`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "xplor/reward/math_value.hpp"

namespace xplor::reward::math {

// Markers written by prenormalize: the start and end of \text{} content, and a thousands
// separator written as `{,}` or `\,`.
inline constexpr char text_open = '\x01';
inline constexpr char text_close = '\x02';
inline constexpr char thousands_mark = '\x03';

inline bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
inline bool is_digit(char c) { return c >= '0' && c <= '9'; }
inline bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/// Strips what never changes an answer's meaning, in one pass: `$`, `\$`, `\(` `\)` `\[` `\]`,
/// `\left` `\right` (and their `.`), `\displaystyle`, degree marks (`^\circ`, `^{\circ}`, `°`),
/// `\!`; maps spacing (`~`, `\,` `\;` `\:` `\ ` `\quad` `\qquad`, whitespace runs) to one space,
/// `\dfrac` `\tfrac` `\cfrac` to `\frac`, `\%` to `%`, unicode minus/pi/infinity/relations to
/// LaTeX; marks `\text{}`-like content and `{,}` thousands separators; drops one trailing period.
inline std::string prenormalize(std::string_view s) {
  std::string out = {};
  out.reserve(s.size() + 8);
  std::vector<char> braces = {};  // per open '{': 1 copied, 0 a \text-like group's (closes with text_close)
  const std::size_t n = s.size();
  auto space = [&] {
    if (!out.empty() && out.back() != ' ') out.push_back(' ');
  };
  auto skip_degree = [&](std::size_t i) -> std::size_t {  // i at '^': end of ^\circ / ^{\circ}, or i
    std::size_t j = i + 1;
    const bool brace = j < n && s[j] == '{';
    if (brace) ++j;
    while (j < n && is_space(s[j])) ++j;
    if (s.substr(j, 5) != "\\circ" || (j + 5 < n && is_letter(s[j + 5]))) return i;
    j += 5;
    while (j < n && is_space(s[j])) ++j;
    if (brace) {
      if (j >= n || s[j] != '}') return i;
      ++j;
    }
    return j;
  };
  std::size_t i = 0;
  while (i < n) {
    const char c = s[i];
    const unsigned char u = static_cast<unsigned char>(c);
    if (is_space(c) || c == '~') {
      space();
      ++i;
    } else if (c == '$') {
      ++i;
    } else if (u >= 0xC2) {  // the few non-ASCII signs answers use; other bytes stay as they are
      const std::string_view rest = s.substr(i, 3);
      struct map {
        std::string_view from, to;
      };
      static constexpr map maps[] = {
          {"\xE2\x88\x92", "-"},        {"\xCF\x80", "\\pi "},     {"\xC2\xB0", ""},
          {"\xE2\x88\x9E", "\\infty "}, {"\xE2\x89\xA4", "\\le "}, {"\xE2\x89\xA5", "\\ge "},
          {"\xE2\x89\xA0", "\\ne "},    {"\xC3\x97", "\\times "},  {"\xC2\xB7", "\\cdot "},
          {"\xE2\x88\x9A", "\\sqrt"},   {"\xE2\x88\xAA", "\\cup "}};
      bool done = false;
      for (const map& m : maps) {
        if (rest.substr(0, m.from.size()) == m.from) {
          out.append(m.to);
          i += m.from.size();
          done = true;
          break;
        }
      }
      if (!done) out.push_back(s[i++]);
    } else if (c == '^' && skip_degree(i) != i) {
      i = skip_degree(i);
    } else if (c == '{') {
      if (i + 2 < n && s[i + 1] == ',' &&
          (s[i + 2] == '}' || (i + 3 < n && s[i + 2] == ' ' && s[i + 3] == '}'))) {
        out.push_back(thousands_mark);  // {,} and {, }
        i += s[i + 2] == '}' ? 3 : 4;
      } else {
        braces.push_back(1);
        out.push_back('{');
        ++i;
      }
    } else if (c == '}') {
      out.push_back(braces.empty() || braces.back() == 1 ? '}' : text_close);
      if (!braces.empty()) braces.pop_back();
      ++i;
    } else if (c == '\\' && i + 1 < n && is_letter(s[i + 1])) {
      std::size_t j = i + 1;
      while (j < n && is_letter(s[j])) ++j;
      const std::string_view name = s.substr(i + 1, j - i - 1);
      i = j;
      if (name == "text" || name == "textrm" || name == "textnormal" || name == "textbf" ||
          name == "textit" || name == "textsf" || name == "texttt" || name == "mathrm" || name == "mathbf" ||
          name == "mathit" || name == "mathsf" || name == "mathtt" || name == "mbox" || name == "hbox") {
        std::size_t k = i;
        while (k < n && is_space(s[k])) ++k;
        if (k < n && s[k] == '{') {
          braces.push_back(0);
          out.push_back(text_open);
          i = k + 1;
        }
      } else if (name == "left" || name == "right" || name == "bigl" || name == "bigr" || name == "Bigl" ||
                 name == "Bigr") {
        if (i < n && s[i] == '.') ++i;
      } else if (name == "displaystyle" || name == "circ" || name == "degree" || name == "boxed" ||
                 name == "fbox") {
        // a box left inside an extracted answer (\boxed{\boxed{26}+1}) is a plain group
      } else if (name == "quad" || name == "qquad") {
        space();
      } else if (name == "dfrac" || name == "tfrac" || name == "cfrac") {
        out.append("\\frac");
      } else {
        out.push_back('\\');
        out.append(name);
        if (i < n && is_letter(s[i])) out.push_back(' ');
      }
    } else if (c == '\\' && i + 1 < n) {
      const char d = s[i + 1];
      i += 2;
      if (d == ',' && !out.empty() && is_digit(out.back()) && i + 3 <= n && is_digit(s[i]) &&
          is_digit(s[i + 1]) && is_digit(s[i + 2]) && (i + 3 == n || !is_digit(s[i + 3]))) {
        out.push_back(thousands_mark);  // 1\,000
      } else if (d == ',' || d == ';' || d == ':' || is_space(d)) {
        space();
      } else if (d == '!') {
        while (i < n && is_space(s[i])) ++i;  // 32,\! 349 is one number
      } else if (d == '$' || d == '(' || d == ')' || d == '[' || d == ']') {
      } else if (d == '%') {
        out.push_back('%');
      } else {
        out.push_back('\\');
        out.push_back(d);
      }
    } else {
      out.push_back(c);
      ++i;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  if (!out.empty() && out.back() == '.') out.pop_back();
  while (!out.empty() && out.back() == ' ') out.pop_back();
  std::size_t lead = 0;
  while (lead < out.size() && out[lead] == ' ') ++lead;
  out.erase(0, lead);
  return out;
}

enum class tok : std::uint8_t {
  number,
  symbol,
  word,
  command,
  infinity,
  end,
  plus,
  minus,
  times,
  divide,
  caret,
  lparen,
  rparen,
  lbrack,
  rbrack,
  lbrace,
  rbrace,
  lset,
  rset,
  comma,
  semicolon,
  eq,
  lt,
  gt,
  le,
  ge,
  ne,
  in,
  pm,
  mp,
  cup,
  percent,
  amp,
  rowsep,
  other
};

struct token {
  tok type = tok::end;
  std::string_view text;  // a number's digits, a symbol's or word's or command's name
  std::size_t begin = 0;  // span in the prenormalized string
  std::size_t end = 0;
  bool space_before = false;  // whitespace right before the token
  bool in_text = false;       // inside \text{} content
};

/// Units that may follow a scalar and are compared only when both answers carry one
/// ("12 cm" == "12" == "12\text{ cm}", "2 hours" != "2 minutes"); a word outside this list makes
/// the answer text. Returns the canonical (singular) name, or empty.
inline std::string_view canonical_unit(std::string_view w) {
  struct unit {
    std::string_view word, name;
  };
  static constexpr unit units[] = {{"dollar", "dollar"},  {"dollars", "dollar"},
                                   {"cent", "cent"},      {"cents", "cent"},
                                   {"unit", "unit"},      {"units", "unit"},
                                   {"cm", "cm"},          {"mm", "mm"},
                                   {"km", "km"},          {"m", "m"},
                                   {"meter", "m"},        {"meters", "m"},
                                   {"metre", "m"},        {"metres", "m"},
                                   {"centimeter", "cm"},  {"centimeters", "cm"},
                                   {"inch", "inch"},      {"inches", "inch"},
                                   {"foot", "foot"},      {"feet", "foot"},
                                   {"ft", "foot"},        {"yard", "yard"},
                                   {"yards", "yard"},     {"mile", "mile"},
                                   {"miles", "mile"},     {"mph", "mph"},
                                   {"hour", "hour"},      {"hours", "hour"},
                                   {"minute", "minute"},  {"minutes", "minute"},
                                   {"second", "second"},  {"seconds", "second"},
                                   {"day", "day"},        {"days", "day"},
                                   {"week", "week"},      {"weeks", "week"},
                                   {"month", "month"},    {"months", "month"},
                                   {"year", "year"},      {"years", "year"},
                                   {"gram", "gram"},      {"grams", "gram"},
                                   {"kg", "kg"},          {"pound", "pound"},
                                   {"pounds", "pound"},   {"ounce", "ounce"},
                                   {"ounces", "ounce"},   {"liter", "liter"},
                                   {"liters", "liter"},   {"litre", "liter"},
                                   {"litres", "liter"},   {"gallon", "gallon"},
                                   {"gallons", "gallon"}, {"degree", "degree"},
                                   {"degrees", "degree"}, {"square", "square"},
                                   {"sq", "square"},      {"cubic", "cubic"},
                                   {"percent", "%"},      {"percentage", "%"},
                                   {"pct", "%"}};
  for (const unit& u : units)
    if (u.word == w) return u.name;
  return {};
}

/// Whether a word can be part of a math answer: a unit, `or`/`and`, a matrix environment, an
/// array column spec (`ccc`), or one letter (\text{C}). Other words make the answer text.
inline bool readable_word(std::string_view w) {
  if (w.size() == 1 || w == "or" || w == "and" || !canonical_unit(w).empty()) return true;
  if (w == "pmatrix" || w == "bmatrix" || w == "matrix" || w == "array" || w == "smallmatrix") return true;
  return w.find_first_not_of("clr") == std::string_view::npos;
}

/// Tokens of a prenormalized answer. Letters outside \text{} form one-letter symbols (with a
/// subscript, `x_1`, `a_{12}`), except runs of three or more letters and units after a space,
/// which are words; `or` and `and` are words. False (the answer is not math) on bytes outside
/// the grammar and on words readable_word rejects; a failing lexer costs no exception.
inline bool lex(std::string_view s, std::vector<token>& out) {
  out.clear();
  out.reserve(s.size() / 2 + 2);
  const std::size_t n = s.size();
  bool in_text = false;
  int depth = 0;  // bracket depth: thousands separators ',' are read at depth 0 only
  std::size_t i = 0;
  bool space = false;
  auto push = [&](tok t, std::size_t b, std::size_t e, std::string_view text = {}) {
    out.push_back(token{t, text, b, e, space, in_text});
    space = false;
  };
  while (i < n) {
    const char c = s[i];
    if (c == ' ') {
      space = true;
      ++i;
      continue;
    }
    if (c == text_open || c == text_close) {
      in_text = c == text_open;
      space = true;
      ++i;
      continue;
    }
    const std::size_t b = i;
    if (is_digit(c) || (c == '.' && i + 1 < n && is_digit(s[i + 1]))) {
      // digits, thousands groups (",ddd" at depth 0, or the {,} mark anywhere), fraction, exponent
      while (i < n && is_digit(s[i])) ++i;
      const std::size_t lead = i - b;
      std::size_t e = i;
      bool grouped = false;
      while (e + 3 < n + 0 && (s[e] == thousands_mark || (s[e] == ',' && depth == 0)) && is_digit(s[e + 1]) &&
             is_digit(s[e + 2]) && is_digit(s[e + 3]) && (e + 4 >= n || !is_digit(s[e + 4])) && lead >= 1 &&
             lead <= 3) {
        e += 4;
        grouped = true;
      }
      if (grouped) i = e;
      if (i < n && s[i] == '.' && i + 1 < n && is_digit(s[i + 1])) {
        ++i;
        while (i < n && is_digit(s[i])) ++i;
      } else if (i < n && s[i] == '.' && (i + 1 == n || !is_letter(s[i + 1]))) {
        ++i;  // "5." is 5
      }
      if (i + 1 < n && (s[i] == 'e' || s[i] == 'E')) {
        std::size_t k = i + 1;
        if (k < n && (s[k] == '+' || s[k] == '-')) ++k;
        if (k < n && is_digit(s[k])) {
          while (k < n && is_digit(s[k])) ++k;
          i = k;
        }
      }
      push(tok::number, b, i, s.substr(b, i - b));
      continue;
    }
    if (is_letter(c)) {
      std::size_t j = i;
      while (j < n && is_letter(s[j])) ++j;
      const std::string_view run = s.substr(i, j - i);
      const bool unit_after_space = space && !canonical_unit(run).empty() && (j == n || !is_digit(s[j]));
      if (in_text || run.size() >= 3 || run == "or" || unit_after_space) {
        if (!readable_word(run)) return false;
        push(tok::word, i, j, run);
        i = j;
        continue;
      }
      // one-letter symbols, the last one with an optional subscript
      for (std::size_t k = i; k < j; ++k) {
        std::size_t e = k + 1;
        if (e == j && e < n && s[e] == '_') {
          if (e + 1 < n && (is_digit(s[e + 1]) || is_letter(s[e + 1]))) {
            e += 2;
          } else if (e + 1 < n && s[e + 1] == '{') {
            std::size_t m = e + 2;
            while (m < n && (is_digit(s[m]) || is_letter(s[m]))) ++m;
            if (m >= n || s[m] != '}' || m == e + 2) return false;
            e = m + 1;
          } else {
            return false;
          }
        }
        push(tok::symbol, k, e, s.substr(k, e - k));
      }
      i = j > i ? std::max(j, out.back().end) : j;
      continue;
    }
    if (c == '\\') {
      if (i + 1 < n && s[i + 1] == '\\') {
        push(tok::rowsep, b, i + 2);
        i += 2;
        continue;
      }
      if (i + 1 < n && (s[i + 1] == '{' || s[i + 1] == '}')) {
        depth += s[i + 1] == '{' ? 1 : -1;
        push(s[i + 1] == '{' ? tok::lset : tok::rset, b, i + 2);
        i += 2;
        continue;
      }
      std::size_t j = i + 1;
      while (j < n && is_letter(s[j])) ++j;
      const std::string_view name = s.substr(i + 1, j - i - 1);
      if (name.empty()) return false;
      i = j;
      struct cmd {
        std::string_view name;
        tok t;
      };
      static constexpr cmd cmds[] = {
          {"cdot", tok::times}, {"times", tok::times}, {"ast", tok::times},      {"div", tok::divide},
          {"le", tok::le},      {"leq", tok::le},      {"leqslant", tok::le},    {"ge", tok::ge},
          {"geq", tok::ge},     {"geqslant", tok::ge}, {"ne", tok::ne},          {"neq", tok::ne},
          {"lt", tok::lt},      {"gt", tok::gt},       {"in", tok::in},          {"pm", tok::pm},
          {"mp", tok::mp},      {"cup", tok::cup},     {"infty", tok::infinity}, {"infinity", tok::infinity}};
      tok t = tok::command;
      for (const cmd& m : cmds)
        if (m.name == name) t = m.t;
      push(t, b, i, name);
      continue;
    }
    if ((c == '<' || c == '>' || c == '!') && i + 1 < n && s[i + 1] == '=') {  // <= >= !=
      push(c == '<' ? tok::le : c == '>' ? tok::ge : tok::ne, b, i + 2);
      i += 2;
      continue;
    }
    tok t = tok::other;
    switch (c) {
      case '+':
        t = tok::plus;
        break;
      case '-':
        t = tok::minus;
        break;
      case '*':
        t = tok::times;
        break;
      case '/':
        t = tok::divide;
        break;
      case '^':
        t = tok::caret;
        break;
      case '(':
        t = tok::lparen;
        ++depth;
        break;
      case ')':
        t = tok::rparen;
        --depth;
        break;
      case '[':
        t = tok::lbrack;
        ++depth;
        break;
      case ']':
        t = tok::rbrack;
        --depth;
        break;
      case '{':
        t = tok::lbrace;
        ++depth;
        break;
      case '}':
        t = tok::rbrace;
        --depth;
        break;
      case ',':
        t = tok::comma;
        break;
      case thousands_mark:
        t = tok::comma;
        break;
      case ';':
        t = tok::semicolon;
        break;
      case '=':
        t = tok::eq;
        break;
      case '<':
        t = tok::lt;
        break;
      case '>':
        t = tok::gt;
        break;
      case '%':
        t = tok::percent;
        break;
      case '&':
        t = tok::amp;
        break;
      default:
        return false;
    }
    push(t, b, i + 1);
    ++i;
  }
  out.push_back(token{tok::end, {}, n, n, space, in_text});
  return true;
}

/// A parsed answer, or one part of it.
struct node {
  enum class kind : std::uint8_t { scalar, infinity, bracket, set, relation, matrix };
  kind k = kind::scalar;
  // scalar
  value v;
  bool big = false;  // beyond math_value's limits: compared by its source text's number only
  bool percent = false;
  std::string_view unit;
  std::string_view source;  // the scalar's text (without percent and unit)
  // infinity: sign; bracket: open/close; relation: ops ('<', 'l' for <=, '=', 'n' for !=)
  int sign = 1;
  char open = 0;
  char close = 0;
  std::size_t cols = 0;
  std::vector<node> items = {};  // bracket/set items, relation operands, matrix cells row-major
  std::vector<char> ops = {};
};

/// Recursive descent over the tokens; `pm_sign` picks the branch of a `\pm`.
class parser {
 public:
  parser(std::string_view text, const std::vector<token>& toks, symbol_table& symbols, work_budget& budget)
      : text_(text), t_(toks), symbols_(symbols), budget_(budget) {}

  /// The whole answer: one element, or several (`a, b`, `a; b`, `a or b`, `a and b`) as a set.
  node answer() {
    std::vector<node> elems;
    while (true) {
      elems.push_back(element_with_pm());
      const tok t = peek().type;
      if (t == tok::comma || t == tok::semicolon ||
          (t == tok::word && (peek().text == "or" || peek().text == "and"))) {
        ++pos_;
        continue;
      }
      break;
    }
    if (peek().type != tok::end) throw math_unsupported{};
    if (elems.size() == 1) return std::move(elems[0]);
    node s;
    s.k = node::kind::set;
    for (node& e : elems) {
      if (e.k == node::kind::set && e.open == 'p') {  // a \pm pair joins the list
        for (node& x : e.items) s.items.push_back(std::move(x));
      } else {
        s.items.push_back(std::move(e));
      }
    }
    return s;
  }

 private:
  std::string_view text_;
  const std::vector<token>& t_;
  symbol_table& symbols_;
  work_budget& budget_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  int pm_sign_ = 1;
  bool pm_seen_ = false;

  static constexpr int max_depth = 64;

  const token& peek(std::size_t ahead = 0) const {
    const std::size_t k = pos_ + ahead;
    return k < t_.size() ? t_[k] : t_.back();
  }
  void expect(tok t) {
    if (peek().type != t) throw math_unsupported{};
    ++pos_;
  }
  struct depth_guard {
    int& d;
    explicit depth_guard(int& depth) : d(depth) {
      if (++d > max_depth) throw math_unsupported{};
    }
    ~depth_guard() { --d; }
  };

  static node scalar_node(value v) {
    node r;
    r.v = std::move(v);
    return r;
  }

  /// A symbol; `i` is the imaginary unit (i^2 = -1), as in MATH's complex answers.
  node symbol(std::string_view name) {
    if (name == "i") {
      monomial m;
      m.imag = 1;
      return scalar_node(value{polynomial::of(m), polynomial::constant(1)});
    }
    return scalar_node(symbol_value(symbols_.id(name)));
  }

  /// An element with a `\pm`/`\mp` is parsed twice (with + and with -) into a two-item set.
  node element_with_pm() {
    const std::size_t start = pos_;
    const bool outer_seen = pm_seen_;
    pm_seen_ = false;
    pm_sign_ = 1;
    node first = element();
    if (!pm_seen_) {
      pm_seen_ = outer_seen;
      return first;
    }
    const std::size_t end = pos_;
    pos_ = start;
    pm_sign_ = -1;
    node second = element();
    if (pos_ != end) throw math_unsupported{};
    pm_sign_ = 1;
    pm_seen_ = outer_seen;
    node s;
    s.k = node::kind::set;
    s.open = 'p';
    s.items.push_back(std::move(first));
    s.items.push_back(std::move(second));
    return s;
  }

  /// relation, then an optional percent sign and unit; a leading `x =` / `x \in` label goes.
  node element() {
    const std::size_t start = pos_;
    node r = relation();
    if (r.k == node::kind::relation && r.ops.size() == 1 && (r.ops[0] == '=' || r.ops[0] == 'i') &&
        is_label(r.items[0])) {
      node rhs = std::move(r.items[1]);
      r = std::move(rhs);
    } else if (r.k == node::kind::relation && r.ops[0] == 'i') {
      throw math_unsupported{};
    }
    if (r.k == node::kind::scalar) {
      r.source = text_.substr(t_[start].begin, t_[pos_ - 1].end - t_[start].begin);
      if (r.source.find('=') != std::string_view::npos) r.source = {};
      trailing(r);
    }
    return r;
  }

  /// A label on the left of `=`: a product of distinct symbols with coefficient 1 (`x`, `k`,
  /// `x_1`, `AB`, `f(x)`), or a tuple of them (`(p, q) = (3, 2)`); pi and i are values, not labels.
  bool is_label(const node& x) const {
    if (x.k == node::kind::bracket) {
      for (const node& item : x.items)
        if (!is_label(item)) return false;
      return true;
    }
    if (x.k != node::kind::scalar || x.big || x.percent) return false;
    const auto& nt = x.v.num.terms;
    const auto& dt = x.v.den.terms;
    if (nt.size() != 1 || nt[0].second != 1 || dt.size() != 1 || !dt[0].first.is_one() || dt[0].second != 1)
      return false;
    const monomial& m = nt[0].first;
    if (m.count == 0 || m.radicand != 1 || m.imag) return false;
    for (std::size_t k = 0; k < m.count; ++k)
      if (m.pow[k] != 1 || symbols_.names[m.sym[k]] == "\\pi") return false;
    return true;
  }

  /// `%`, `percent`, and unit words after a scalar.
  void trailing(node& r) {
    if (peek().type == tok::percent) {
      ++pos_;
      r.percent = true;
    }
    std::size_t unit_begin = 0;
    std::size_t unit_end = 0;
    while (peek().type == tok::word && peek().text != "or" && peek().text != "and") {
      const std::string_view u = canonical_unit(peek().text);
      if (u.empty()) throw math_unsupported{};
      if (u == "%") {
        if (r.percent) throw math_unsupported{};
        r.percent = true;
      } else {
        if (unit_end == 0) unit_begin = peek().begin;
        unit_end = peek().end;
      }
      ++pos_;
      if (peek().type == tok::caret && peek(1).type == tok::number && peek(1).text.size() == 1) {
        unit_end = peek(1).end;
        pos_ += 2;
      }
    }
    if (unit_end != 0) r.unit = text_.substr(unit_begin, unit_end - unit_begin);
  }

  static char relop(tok t) {
    switch (t) {
      case tok::eq:
        return '=';
      case tok::lt:
        return '<';
      case tok::gt:
        return '>';
      case tok::le:
        return 'l';
      case tok::ge:
        return 'g';
      case tok::ne:
        return 'n';
      case tok::in:
        return 'i';
      default:
        return 0;
    }
  }

  /// A chain `a op b op c`; `>`/`>=` chains are reversed into `<`/`<=` ones.
  node relation() {
    node first = union_();
    if (!relop(peek().type)) return first;
    node r;
    r.k = node::kind::relation;
    r.items.push_back(std::move(first));
    while (char op = relop(peek().type)) {
      ++pos_;
      r.ops.push_back(op);
      r.items.push_back(union_());
    }
    bool down = false;
    bool up = false;
    for (char op : r.ops) {
      down = down || op == '>' || op == 'g';
      up = up || op == '<' || op == 'l';
    }
    if (down && up) throw math_unsupported{};
    if (down) {
      std::reverse(r.items.begin(), r.items.end());
      std::reverse(r.ops.begin(), r.ops.end());
      for (char& op : r.ops) op = op == '>' ? '<' : op == 'g' ? 'l' : op;
    }
    return r;
  }

  node union_() {
    node first = sum();
    if (peek().type != tok::cup) return first;
    node r;
    r.k = node::kind::set;
    r.open = 'u';
    r.items.push_back(std::move(first));
    while (peek().type == tok::cup) {
      ++pos_;
      r.items.push_back(sum());
    }
    return r;
  }

  static bool is_scalar(const node& x) { return x.k == node::kind::scalar; }

  /// Applies a binary operation, marking the result big on overflow.
  template <class F>
  node combine(const node& a, const node& b, F f) {
    if (!is_scalar(a) || !is_scalar(b)) throw math_unsupported{};
    node r;
    if (a.big || b.big || a.percent || b.percent) {
      r.big = true;
      return r;
    }
    try {
      if (!f(a.v, b.v, r.v)) throw math_unsupported{};  // division by zero
    } catch (const math_limit&) {
      r.big = true;
    }
    return r;
  }

  node sum() {
    depth_guard g(depth_);
    int sign = 1;
    if (peek().type == tok::minus || peek().type == tok::plus || peek().type == tok::pm ||
        peek().type == tok::mp) {
      sign = sign_of(peek().type);
      ++pos_;
    }
    node acc = term();
    if (sign < 0) acc = neg(acc);
    while (peek().type == tok::plus || peek().type == tok::minus || peek().type == tok::pm ||
           peek().type == tok::mp) {
      const int s = sign_of(peek().type);
      ++pos_;
      node rhs = term();
      acc = combine(acc, rhs, [&](const value& x, const value& y, value& out) {
        out = add(x, y, budget_, s);
        return true;
      });
    }
    return acc;
  }

  int sign_of(tok t) {
    if (t == tok::pm || t == tok::mp) {
      pm_seen_ = true;
      return t == tok::pm ? pm_sign_ : -pm_sign_;
    }
    return t == tok::minus ? -1 : 1;
  }

  node neg(const node& x) {
    node r = x;
    if (x.k == node::kind::infinity) {
      r.sign = -x.sign;
      return r;
    }
    if (!is_scalar(x)) throw math_unsupported{};
    if (!x.big) r.v = negate(x.v);
    return r;
  }

  static bool starts_implicit_factor(const token& t) {
    return t.type == tok::number || t.type == tok::symbol || t.type == tok::lparen ||
           (t.type == tok::command && (t.text != "begin" && t.text != "end"));
  }

  node term() {
    const std::size_t start = pos_;
    node acc = factor(true);
    while (true) {
      const token& t = peek();
      if (t.type == tok::times || t.type == tok::divide) {
        ++pos_;
        node rhs = factor(false);
        const bool div = t.type == tok::divide;
        acc = combine(acc, rhs, [&](const value& x, const value& y, value& out) {
          if (div) return divide(x, y, out, budget_);
          out = multiply(x, y, budget_);
          return true;
        });
      } else if (starts_implicit_factor(t)) {
        // A number right after a factor is no product ("10^12" is 10^1 then 2; "1 000").
        if (t.type == tok::number) throw math_unsupported{};
        // 2\frac{1}{2} is 2 + 1/2 (a mixed number); the term's sign applies to both parts.
        const bool mixed =
            pos_ == start + 1 && t_[start].type == tok::number && mixed_fraction_follows(start);
        node rhs = factor(false);
        acc = combine(acc, rhs, [&](const value& x, const value& y, value& out) {
          if (mixed) {
            out = add(x, y, budget_);
          } else {
            out = multiply(x, y, budget_);
          }
          return true;
        });
      } else {
        return acc;
      }
    }
  }

  static bool is_integer_literal(const token& t) {
    return t.type == tok::number && t.text.find_first_of(".eE,\x03") == std::string_view::npos;
  }

  /// Whether t_[at] is an integer literal followed by \frac of two integer literals
  /// (`\frac{1}{2}` or `\frac12`).
  bool mixed_fraction_follows(std::size_t at) const {
    if (!is_integer_literal(t_[at])) return false;
    std::size_t k = at + 1;
    if (k >= t_.size() || t_[k].type != tok::command || t_[k].text != "frac") return false;
    ++k;
    if (k < t_.size() && is_integer_literal(t_[k]) && t_[k].text.size() == 2) return true;  // \frac12
    for (int arg = 0; arg < 2; ++arg) {
      if (k + 2 < t_.size() && t_[k].type == tok::lbrace && is_integer_literal(t_[k + 1]) &&
          t_[k + 2].type == tok::rbrace) {
        k += 3;
      } else if (k < t_.size() && is_integer_literal(t_[k]) && t_[k].text.size() == 1) {
        k += 1;
      } else {
        return false;
      }
    }
    return true;
  }

  node factor(bool first) {
    depth_guard g(depth_);
    if (peek().type == tok::minus) {
      ++pos_;
      return neg(factor(first));
    }
    if (peek().type == tok::plus) {
      ++pos_;
      return factor(first);
    }
    node base = primary(first);
    if (peek().type == tok::caret) {
      ++pos_;
      node e = exponent();
      return pow(base, e);
    }
    return base;
  }

  /// `^{...}` or one digit or one symbol (LaTeX reads one token after '^').
  node exponent() {
    const token& t = peek();
    if (t.type == tok::lbrace) {
      ++pos_;
      node e = sum();
      expect(tok::rbrace);
      return e;
    }
    if (t.type == tok::number) {
      if (t.text.size() != 1) throw math_unsupported{};
      ++pos_;
      return scalar_node(value::integer(t.text[0] - '0'));
    }
    if (t.type == tok::minus && peek(1).type == tok::number && peek(1).text.size() == 1) {
      pos_ += 2;
      return scalar_node(value::integer(-(t_[pos_ - 1].text[0] - '0')));
    }
    throw math_unsupported{};  // symbolic exponents (2^x) are not represented
  }

  node pow(const node& base, const node& e) {
    if (!is_scalar(base) || !is_scalar(e) || e.big) throw math_unsupported{};
    i128 n = 0;
    i128 d = 0;
    if (!e.v.is_rational(n, d)) throw math_unsupported{};
    if (d < 0) {
      n = -n;
      d = -d;
    }
    if (d != 1 && d != 2) throw math_unsupported{};
    node r;
    if (base.big || n > max_power || n < -static_cast<i128>(max_power)) {
      r.big = true;
      return r;
    }
    try {
      value b = base.v;
      if (d == 2) b = square_root(b, budget_);
      if (!power(b, static_cast<std::int64_t>(n), r.v, budget_)) throw math_unsupported{};
    } catch (const math_limit&) {
      r.big = true;
    }
    return r;
  }

  /// A braced group or a single token (\frac12, \sqrt3, \sqrt x).
  node argument() {
    const token& t = peek();
    if (t.type == tok::lbrace) {
      ++pos_;
      node r = sum();
      expect(tok::rbrace);
      return r;
    }
    if (t.type == tok::number) {
      ++pos_;
      if (t.text.size() == 1) return number(t.text);
      // \frac12: the first digit is this argument; the token is split by the caller.
      throw math_unsupported{};
    }
    if (t.type == tok::symbol) {
      ++pos_;
      return symbol(t.text);
    }
    if (t.type == tok::command) return primary(false);
    throw math_unsupported{};
  }

  node number(std::string_view digits) {
    node r;
    try {
      r.v = parse_decimal(digits);
    } catch (const math_limit&) {
      r.big = true;
    }
    return r;
  }

  /// digits with thousands separators, '.', exponent: an exact value.
  static value parse_decimal(std::string_view s) {
    i128 num = 0;
    std::int64_t scale = 0;  // value = num * 10^scale
    std::size_t i = 0;
    bool frac = false;
    for (; i < s.size(); ++i) {
      const char c = s[i];
      if (is_digit(c)) {
        num = add_checked(mul_checked(num, 10), c - '0');
        if (frac) --scale;
      } else if (c == '.') {
        frac = true;
      } else if (c == ',' || c == thousands_mark) {
      } else {
        break;  // 'e' / 'E'
      }
    }
    if (i < s.size()) {
      ++i;
      bool neg = false;
      if (s[i] == '+' || s[i] == '-') neg = s[i++] == '-';
      std::int64_t e = 0;
      for (; i < s.size(); ++i) {
        e = e * 10 + (s[i] - '0');
        if (e > 76) throw math_limit{};
      }
      scale += neg ? -e : e;
    }
    if (scale < -76 || scale > 76) throw math_limit{};
    i128 p = 1;
    for (std::int64_t k = 0; k < (scale < 0 ? -scale : scale); ++k) p = mul_checked(p, 10);
    value v;
    if (scale >= 0) {
      v.num = polynomial::constant(mul_checked(num, p));
      v.den = polynomial::constant(1);
    } else {
      v.num = polynomial::constant(num);
      v.den = polynomial::constant(p);
      work_budget local;
      reduce(v, local);
    }
    return v;
  }

  node primary(bool first) {
    depth_guard g(depth_);
    const token t = peek();
    switch (t.type) {
      case tok::number:
        ++pos_;
        return number(t.text);
      case tok::symbol:
        ++pos_;
        return symbol(t.text);
      case tok::word:
        // A one-letter \text{} word is a symbol (answer choices: \text{(C)}); other words are text.
        if (!first || t.text.size() != 1) throw math_unsupported{};
        ++pos_;
        return symbol(t.text);
      case tok::infinity: {
        ++pos_;
        node r;
        r.k = node::kind::infinity;
        return r;
      }
      case tok::lparen:
      case tok::lbrack:
        return bracket();
      case tok::lbrace: {  // a group, or a list {1, 2, 3} (a set)
        ++pos_;
        node r = element_with_pm();
        if (peek().type == tok::rbrace && !(r.k == node::kind::set && r.open == 'p')) {
          ++pos_;
          if (r.percent || !r.unit.empty()) throw math_unsupported{};
          return r;
        }
        node s;
        s.k = node::kind::set;
        s.items.push_back(std::move(r));
        while (peek().type == tok::comma) {
          ++pos_;
          s.items.push_back(element_with_pm());
        }
        expect(tok::rbrace);
        return s;
      }
      case tok::lset:
        return set();
      case tok::command:
        return command();
      default:
        throw math_unsupported{};
    }
  }

  node command() {
    const token t = peek();
    ++pos_;
    const std::string_view name = t.text;
    if (name == "frac") {
      node a;
      node b;
      if (peek().type == tok::number && peek().text.size() == 2 && is_digit(peek().text[0]) &&
          is_digit(peek().text[1])) {
        a = number(peek().text.substr(0, 1));  // \frac12
        b = number(peek().text.substr(1, 1));
        ++pos_;
      } else {
        a = argument();
        b = argument();
      }
      return combine(a, b,
                     [&](const value& x, const value& y, value& out) { return divide(x, y, out, budget_); });
    }
    if (name == "sqrt") {
      std::int64_t k = 2;
      if (peek().type == tok::lbrack) {
        ++pos_;
        if (peek().type != tok::number || peek().text.size() > 2 ||
            peek().text.find('.') != std::string_view::npos)
          throw math_unsupported{};
        k = std::stoll(std::string(peek().text));
        ++pos_;
        expect(tok::rbrack);
      }
      node a = argument();
      if (!is_scalar(a) || a.percent) throw math_unsupported{};
      node r;
      if (a.big) {
        r.big = true;
        return r;
      }
      try {
        r.v = root(a.v, k, budget_);
      } catch (const math_limit&) {
        r.big = true;
      }
      return r;
    }
    if (name == "begin") return matrix();
    if (name == "emptyset" || name == "varnothing") {
      node r;
      r.k = node::kind::set;
      return r;
    }
    static constexpr std::string_view greek[] = {
        "pi",    "alpha",    "beta",    "gamma", "delta",  "epsilon", "varepsilon", "zeta",  "eta",
        "theta", "vartheta", "iota",    "kappa", "lambda", "mu",      "nu",         "xi",    "rho",
        "sigma", "tau",      "upsilon", "phi",   "varphi", "chi",     "psi",        "omega", "Gamma",
        "Delta", "Theta",    "Lambda",  "Xi",    "Pi",     "Sigma",   "Phi",        "Psi",   "Omega"};
    for (std::string_view gname : greek)
      if (gname == name) return symbol(text_.substr(t.begin, t.end - t.begin));
    throw math_unsupported{};
  }

  /// `( ... )` or `[ ... ]` with any closing bracket: one item in matching round or square
  /// brackets is a grouping, otherwise a tuple/interval that keeps its bracket kinds.
  node bracket() {
    depth_guard g(depth_);
    const char open = peek().type == tok::lparen ? '(' : '[';
    ++pos_;
    std::vector<node> items;
    items.push_back(element_with_pm());
    while (peek().type == tok::comma || peek().type == tok::semicolon) {  // (0;-2;6) too
      ++pos_;
      items.push_back(element_with_pm());
    }
    char close;
    if (peek().type == tok::rparen) {
      close = ')';
    } else if (peek().type == tok::rbrack) {
      close = ']';
    } else {
      throw math_unsupported{};
    }
    ++pos_;
    for (const node& x : items)
      if (x.k == node::kind::set && x.open == 'p') throw math_unsupported{};  // (1 \pm 2, 3)
    if (items.size() == 1 && ((open == '(' && close == ')') || (open == '[' && close == ']'))) {
      if (items[0].percent || !items[0].unit.empty()) throw math_unsupported{};
      return std::move(items[0]);
    }
    node r;
    r.k = node::kind::bracket;
    r.open = open;
    r.close = close;
    r.items = std::move(items);
    return r;
  }

  node set() {
    depth_guard g(depth_);
    ++pos_;  // '\{'
    node r;
    r.k = node::kind::set;
    if (peek().type == tok::rset) {
      ++pos_;
      return r;
    }
    r.items.push_back(element_with_pm());
    while (peek().type == tok::comma) {
      ++pos_;
      r.items.push_back(element_with_pm());
    }
    expect(tok::rset);
    return r;
  }

  /// \begin{pmatrix|bmatrix|matrix|array}{...} cells & ... \\ ... \end{...}
  node matrix() {
    expect(tok::lbrace);
    if (peek().type != tok::word) throw math_unsupported{};
    const std::string_view env = peek().text;
    ++pos_;
    expect(tok::rbrace);
    if (env != "pmatrix" && env != "bmatrix" && env != "matrix" && env != "array" && env != "smallmatrix")
      throw math_unsupported{};
    if (env == "array") {  // column spec {cc}, {c|c}: skipped
      expect(tok::lbrace);
      while (peek().type != tok::rbrace && peek().type != tok::end) ++pos_;
      expect(tok::rbrace);
    }
    node r;
    r.k = node::kind::matrix;
    std::size_t row_len = 0;
    while (true) {
      r.items.push_back(sum());
      ++row_len;
      if (peek().type == tok::amp) {
        ++pos_;
        continue;
      }
      const bool rowsep = peek().type == tok::rowsep;
      if (rowsep) ++pos_;
      if (r.cols == 0) r.cols = row_len;
      if (row_len != r.cols) throw math_unsupported{};
      row_len = 0;
      if (peek().type == tok::command && peek().text == "end") break;
      if (!rowsep) throw math_unsupported{};
    }
    ++pos_;  // \end
    expect(tok::lbrace);
    if (peek().type != tok::word || peek().text != env) throw math_unsupported{};
    ++pos_;
    expect(tok::rbrace);
    for (const node& x : r.items)
      if (!is_scalar(x)) throw math_unsupported{};
    return r;
  }
};

}  // namespace xplor::reward::math
