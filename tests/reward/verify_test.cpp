#include "xplor/reward/verify.hpp"

#include <catch2/catch.hpp>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

using xplor::reward::answers_equivalent;
using xplor::reward::extract_answer_is;
using xplor::reward::extract_boxed;
using xplor::reward::extract_gsm8k;
using xplor::reward::normalize_answer;
using xplor::reward::squad_normalize;

TEST_CASE("extract_boxed takes the last box with balanced braces", "[verify]") {
  CHECK(extract_boxed("so \\boxed{42}.") == "42");
  CHECK(extract_boxed("\\boxed{1} then \\boxed{2}") == "2");
  CHECK(extract_boxed("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}");
  CHECK(extract_boxed("\\boxed{{a}{b{c}}}") == "{a}{b{c}}");
  CHECK(extract_boxed("\\boxed {5}") == "5");
  CHECK(extract_boxed("\\boxed\n\t{5}") == "5");
  CHECK(extract_boxed("\\fbox{7}") == "7");
  CHECK(extract_boxed("\\fbox{7} \\boxed{8}") == "8");
  CHECK(extract_boxed("\\boxed{8} \\fbox{7}") == "7");
  CHECK(extract_boxed("\\boxed{}") == "");
  CHECK(extract_boxed("\\boxed{ I don't know. }") == " I don't know. ");
  // Escaped braces are not braces.
  CHECK(extract_boxed("\\boxed{\\{1, 2\\}}") == "\\{1, 2\\}");
  CHECK(extract_boxed("\\boxed{a\\\\}") == "a\\\\");
  // The box that starts last wins, as verl's last_boxed_only_string.
  CHECK(extract_boxed("\\boxed{\\boxed{5} + 1}") == "\\boxed{5} + 1");  // the outer box
  CHECK(extract_boxed("\\boxed{1} \\boxed{\\fbox{2}}") == "\\fbox{2}");
}

TEST_CASE("extract_boxed returns nullopt without a closed last box", "[verify]") {
  CHECK_FALSE(extract_boxed("").has_value());
  CHECK_FALSE(extract_boxed("the answer is 4").has_value());
  CHECK_FALSE(extract_boxed("\\boxed{4").has_value());
  CHECK_FALSE(extract_boxed("\\boxed{4} and then \\boxed{5").has_value());
  CHECK_FALSE(extract_boxed("\\boxed5").has_value());
  CHECK_FALSE(extract_boxed("\\boxedx{5}").has_value());
  CHECK_FALSE(extract_boxed("\\boxed").has_value());
  CHECK_FALSE(extract_boxed("\\boxed{\\}").has_value());
  // An unclosed box without a following brace is skipped: the previous one counts.
  CHECK(extract_boxed("\\boxed{3} \\boxed and more").value() == "3");
}

TEST_CASE("extract_boxed of a random nesting returns the inner text", "[verify][property]") {
  std::mt19937 gen(20240611);
  const std::string alphabet = "ab1 2+\\frac}{";
  for (int trial = 0; trial < 500; ++trial) {
    // A balanced body: random tokens and random nested groups, escapes kept balanced.
    std::uniform_int_distribution<int> len(0, 40);
    std::uniform_int_distribution<int> pick(0, 9);
    std::string body;
    int depth = 0;
    const int n = len(gen);
    for (int k = 0; k < n; ++k) {
      const int p = pick(gen);
      if (p <= 2) {
        body += '{';
        ++depth;
      } else if (p <= 4 && depth > 0) {
        body += '}';
        --depth;
      } else if (p == 5) {
        body += "\\{";
      } else {
        body += "xy7 .-"[static_cast<std::size_t>(k) % 6];
      }
    }
    body.append(static_cast<std::size_t>(depth), '}');
    std::string noise = "before \\boxed{noise} ";
    if (trial % 3 == 0) noise += "\\fbox{other} ";
    const std::string text = noise + "\\boxed{" + body + "} after";
    INFO(text);
    REQUIRE(extract_boxed(text) == body);
  }
}

TEST_CASE("extract_boxed, normalize_answer and answers_equivalent are linear on huge inputs", "[verify]") {
  // No timing assertions: these complete only if nothing rescans or recurses.
  const std::size_t n = 1000000;
  std::string deep = "\\boxed{" + std::string(n, '{') + std::string(n, '}') + "}";
  const auto inner = extract_boxed(deep);
  REQUIRE(inner.has_value());
  CHECK(inner->size() == 2 * n);
  CHECK_FALSE(extract_boxed(std::string(n, '{')).has_value());
  CHECK_FALSE(extract_boxed("\\boxed" + std::string(n, '{')).has_value());
  std::string many;
  for (std::size_t k = 0; k < n / 7; ++k) many += "\\boxed{";
  CHECK_FALSE(extract_boxed(many).has_value());
  std::string spaced;
  for (std::size_t k = 0; k < n / 16; ++k) spaced += "\\boxed         x";
  CHECK_FALSE(extract_boxed(spaced).has_value());

  CHECK(normalize_answer(std::string(n, '{')).size() == n);
  std::string fracs;
  for (std::size_t k = 0; k < n / 6; ++k) fracs += "\\frac{";
  CHECK_FALSE(answers_equivalent(fracs, "1"));
  CHECK(answers_equivalent(fracs, fracs));

  const std::string digits(n, '7');
  CHECK(answers_equivalent(digits, digits + ".000"));
  CHECK_FALSE(answers_equivalent(digits, digits + "1"));
  CHECK(answers_equivalent("0." + digits, "0." + digits + "0"));
  // A megabyte fraction against a short number is still exact (linear cross products) ...
  CHECK(answers_equivalent(digits + "/" + digits, "1"));
  CHECK_FALSE(answers_equivalent(digits + "/" + digits, "1.0000001"));
  // ... but two megabyte fractions compare by canonical form only (documented limit, no
  // quadratic multiplication): both of these are 1.
  CHECK(answers_equivalent(digits + "/" + digits, digits + "0/" + digits + "0"));
  const std::string other(n, '8');
  CHECK_FALSE(answers_equivalent(digits + "/" + digits, other + "/" + other));
  // Long numerator over a short denominator still compares exactly: 777...7 / 7 = 111...1.
  CHECK(answers_equivalent(digits + "/7", std::string(n, '1')));
}

TEST_CASE("extract_gsm8k and extract_answer_is", "[verify]") {
  CHECK(extract_gsm8k("She pays 3 * 4 = 12.\n#### 1,234") == "1,234");
  CHECK(extract_gsm8k("#### 5\nmore\n####  72  \n") == "72");
  CHECK_FALSE(extract_gsm8k("no marker").has_value());
  CHECK_FALSE(extract_gsm8k("#### \n").has_value());

  CHECK(extract_answer_is("So the answer is 42.") == "42");
  CHECK(extract_answer_is("The answer is: 3.5. Let me check.") == "3.5");
  CHECK(extract_answer_is("The answer is 1. Then the final answer is $\\frac{1}{2}$\nok") ==
        "$\\frac{1}{2}$");
  CHECK(extract_answer_is("THE ANSWER IS Paris") == "Paris");
  CHECK_FALSE(extract_answer_is("no answer here").has_value());
  CHECK_FALSE(extract_answer_is("the answer is").has_value());
  CHECK_FALSE(extract_answer_is("").has_value());
}

TEST_CASE("squad_normalize follows the SQuAD evaluation script", "[verify]") {
  CHECK(squad_normalize("I don't know.") == "i dont know");
  CHECK(squad_normalize("  The Cat,  a hat and AN apple ") == "cat hat and apple");
  CHECK(squad_normalize("W. Shakespeare") == "w shakespeare");
  CHECK(squad_normalize("william shakespeare") == "william shakespeare");
  CHECK(squad_normalize("theory another") == "theory another");
  CHECK(squad_normalize("the") == "");
  CHECK(squad_normalize("") == "");
  CHECK(squad_normalize("a-b") == "ab");
  CHECK(squad_normalize("\xC3\xA9t\xC3\xA9 the end") == "\xC3\xA9t\xC3\xA9 end");
}

TEST_CASE("normalize_answer strips LaTeX decoration", "[verify]") {
  CHECK(normalize_answer("  $\\frac{1}{2}$ ") == "\\frac{1}{2}");
  CHECK(normalize_answer("\\(42\\)") == "42");
  CHECK(normalize_answer("\\[42\\]") == "42");
  CHECK(normalize_answer("42.") == "42");
  CHECK(normalize_answer("\\text{Yes}") == "Yes");
  CHECK(normalize_answer("\\text {New York}") == "NewYork");
  CHECK(normalize_answer("\\mathrm{cm}") == "cm");
  CHECK(normalize_answer("\\left( 1, 2 \\right)") == "(1,2)");
  CHECK(normalize_answer("\\left. x \\right|") == "x|");
  CHECK(normalize_answer("\\dfrac{3}{4}") == "\\frac{3}{4}");
  CHECK(normalize_answer("\\tfrac12") == "\\frac12");
  CHECK(normalize_answer("50\\%") == "50%");
  CHECK(normalize_answer("1{,}234") == "1,234");
  CHECK(normalize_answer("\xE2\x88\x92 5") == "-5");
  CHECK(normalize_answer("\\$5") == "5");
  CHECK(normalize_answer("1\\,000") == "1000");
  CHECK(normalize_answer("\\leftarrow") == "\\leftarrow");
  CHECK(normalize_answer("\\{1,2\\}") == "\\{1,2\\}");
  CHECK(normalize_answer("}{") == "}{");
  CHECK(normalize_answer("\\") == "\\");
  CHECK(normalize_answer("") == "");
}

TEST_CASE("answers_equivalent: hand-written equivalences", "[verify]") {
  struct pair_case {
    const char* a;
    const char* b;
  };
  const std::vector<pair_case> equal{
      {"42", "42"},
      {"42", "42.0"},
      {"042", "42"},
      {"+42", "42"},
      {"-0", "0"},
      {"0.0", "0"},
      {".5", "0.5"},
      {"0.5", "1/2"},
      {"2/4", "1/2"},
      {"2/4", "\\frac{1}{2}"},
      {"\\dfrac{1}{2}", "0.5"},
      {"\\tfrac{1}{2}", "0.50"},
      {"\\frac12", "0.5"},
      {"\\frac{3}{4}", "0.75"},
      {"\\frac{1.5}{3}", "0.5"},
      {"-\\frac{1}{2}", "-0.5"},
      {"\\frac{-1}{2}", "-0.5"},
      {"\\frac{1}{-2}", "-1/2"},
      {"1/-2", "-0.5"},
      {"-\\frac{-1}{2}", "0.5"},
      {"\xE2\x88\x92"
       "5",
       "-5"},
      {"0.1", "1/10"},
      {"1,234,567", "1234567"},
      {"1{,}234{,}567", "1234567"},
      {"1,234.5", "1234.50"},
      {"1e3", "1000"},
      {"1E3", "1,000"},
      {"2.5e-3", "0.0025"},
      {"1.5\\times10^{3}", "1500"},
      {"1.5 \\times 10^3", "1500"},
      {"1.5\\cdot10^{3}", "1,500"},
      {"1.5 \\cdot 10^3", "1.5e3"},
      {"10^{3}", "1000"},
      {"10^{-2}", "0.01"},
      {"50\\%", "0.5"},
      {"50\\%", "50"},
      {"50%", "\\frac{1}{2}"},
      {"12.5\\%", "0.125"},
      {"$\\frac{1}{2}$", "0.5"},
      {"\\(42\\)", "42"},
      {"42.", "42"},
      {"\\oint", "\\oint"},
      {"\\text{Yes}", "Yes"},
      {"\\left( 1, 2 \\right)", "(1,2)"},
      {"x^2 + 1", "x^2+1"},
      {"\\$5", "5"},
      {"123456789012345678901234567890", "123456789012345678901234567890.000"},
      {"\\frac{123456789012345678901234567890}{2}", "61728394506172839450617283945"},
      {"1/3", "\\frac{2}{6}"},
      {"10000000000000000000000000000000000000001/3", "\\frac{20000000000000000000000000000000000000002}{6}"},
      {"1e999999999999999999", "1e999999999999999999"},
  };
  for (const auto& c : equal) {
    INFO(c.a << " vs " << c.b);
    CHECK(answers_equivalent(c.a, c.b));
    CHECK(answers_equivalent(c.b, c.a));
  }
}

TEST_CASE("answers_equivalent: hand-written differences", "[verify]") {
  struct pair_case {
    const char* a;
    const char* b;
  };
  const std::vector<pair_case> different{
      {"1/3", "0.3333"},
      {"1/3", "0.3333333333333333333333333333333333333333"},
      {"0.30000000000000004", "0.3"},
      {"5", "6"},
      {"-5", "5"},
      {"0.5", "0.50001"},
      {"50", "0.5"},
      {"50\\%", "0.05"},
      {"50\\%", "5\\%"},
      {"1,23", "123"},
      {"1,2345", "12345"},
      {"1e3", "100"},
      {"10^12", "1000000000000"},
      {"1e999999999999999999", "1e3"},
      {"1/0", "1"},
      {"123456789012345678901234567890", "123456789012345678901234567891"},
      {"\\frac{123456789012345678901234567890}{3}", "41152263004115226300411522630.1"},
      {"x", "y"},
      {"Yes", "yes"},
      {"", ""},
      {"", "0"},
      {"  ", "  "},
      {"$ $", "$$"},
      {".", "."},
  };
  for (const auto& c : different) {
    INFO(c.a << " vs " << c.b);
    CHECK_FALSE(answers_equivalent(c.a, c.b));
    CHECK_FALSE(answers_equivalent(c.b, c.a));
  }
}

namespace {

std::string with_thousands(std::string digits, const std::string& sep) {
  std::string out;
  const std::size_t n = digits.size();
  for (std::size_t k = 0; k < n; ++k) {
    if (k > 0 && (n - k) % 3 == 0) out += sep;
    out += digits[k];
  }
  return out;
}

/// Renderings of the integer v that must all be equivalent.
std::vector<std::string> integer_forms(std::int64_t v) {
  const std::string sign = v < 0 ? "-" : "";
  const std::string mag = std::to_string(v < 0 ? -v : v);
  std::vector<std::string> forms{
      std::to_string(v), sign + with_thousands(mag, ","), sign + with_thousands(mag, "{,}"),
      sign + mag + ".0", "$" + std::to_string(v) + "$",   "\\(" + std::to_string(v) + "\\)."};
  if (v >= 0) forms.push_back("+" + mag);
  if (v < 0) forms.push_back("\xE2\x88\x92" + mag);
  forms.push_back(sign + "\\frac{" + mag + "}{1}");
  forms.push_back(sign + mag + "00\\%");
  // Scientific: d.ddd x 10^k.
  std::string sci = mag.substr(0, 1);
  if (mag.size() > 1) sci += "." + mag.substr(1);
  const std::string k = std::to_string(mag.size() - 1);
  forms.push_back(sign + sci + "e" + k);
  forms.push_back(sign + sci + "\\times10^{" + k + "}");
  forms.push_back(sign + sci + " \\cdot 10^{" + k + "}");
  return forms;
}

/// Renderings of p / q (q > 0) that must all be equivalent.
std::vector<std::string> fraction_forms(std::int64_t p, std::int64_t q, std::mt19937& gen) {
  const std::string sign = p < 0 ? "-" : "";
  const std::int64_t a = p < 0 ? -p : p;
  std::uniform_int_distribution<std::int64_t> mult(2, 999);
  const std::int64_t m = mult(gen);
  std::vector<std::string> forms{
      std::to_string(p) + "/" + std::to_string(q),
      sign + "\\frac{" + std::to_string(a) + "}{" + std::to_string(q) + "}",
      sign + "\\dfrac{" + std::to_string(a) + "}{" + std::to_string(q) + "}",
      "\\tfrac{" + std::to_string(p) + "}{" + std::to_string(q) + "}",
      std::to_string(p * m) + "/" + std::to_string(q * m),
      "$" + sign + "\\frac{" + std::to_string(a * m) + "}{" + std::to_string(q * m) + "}$",
  };
  // Terminating decimals when q = 2^i 5^j.
  std::int64_t r = q;
  int twos = 0;
  int fives = 0;
  while (r % 2 == 0) r /= 2, ++twos;
  while (r % 5 == 0) r /= 5, ++fives;
  if (r == 1) {
    const int places = std::max(twos, fives);
    std::int64_t scale = 1;
    for (int k = 0; k < places; ++k) scale *= 10;
    const std::int64_t scaled = a * (scale / q);
    std::string digits = std::to_string(scaled);
    if (places > 0) {
      if (static_cast<int>(digits.size()) <= places)
        digits = std::string(static_cast<std::size_t>(places) - digits.size() + 1, '0') + digits;
      digits.insert(digits.size() - static_cast<std::size_t>(places), ".");
    }
    forms.push_back(sign + digits);
    forms.push_back(sign + digits + (places > 0 ? "000" : ".000"));
    forms.push_back(sign + digits + "e0");
  }
  if (a <= 9 && q <= 9) forms.push_back(sign + "\\frac" + std::to_string(a) + std::to_string(q));
  return forms;
}

}  // namespace

TEST_CASE("answers_equivalent: random numbers in equivalent formats", "[verify][property]") {
  std::mt19937 gen(12345);
  std::uniform_int_distribution<std::int64_t> big(-9999999999LL, 9999999999LL);
  for (int trial = 0; trial < 300; ++trial) {
    const std::vector<std::string> forms = integer_forms(big(gen));
    for (const auto& a : forms)
      for (const auto& b : forms) {
        INFO(a << " vs " << b);
        REQUIRE(answers_equivalent(a, b));
      }
  }
  std::uniform_int_distribution<std::int64_t> num(-100000, 100000);
  std::uniform_int_distribution<std::int64_t> den(1, 400);
  for (int trial = 0; trial < 300; ++trial) {
    const std::vector<std::string> forms = fraction_forms(num(gen), den(gen), gen);
    for (const auto& a : forms)
      for (const auto& b : forms) {
        INFO(a << " vs " << b);
        REQUIRE(answers_equivalent(a, b));
      }
  }
}

TEST_CASE("answers_equivalent: random different numbers are not equivalent", "[verify][property]") {
  std::mt19937 gen(777);
  std::uniform_int_distribution<std::int64_t> num(-100000, 100000);
  std::uniform_int_distribution<std::int64_t> den(1, 400);
  int compared = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const std::int64_t p1 = num(gen);
    const std::int64_t q1 = den(gen);
    std::int64_t p2 = num(gen);
    std::int64_t q2 = den(gen);
    if (trial % 4 == 0) {  // near misses: one unit off in the numerator
      p2 = p1 + 1;
      q2 = q1;
    }
    if (p1 * q2 == p2 * q1) continue;
    const auto fa = fraction_forms(p1, q1, gen);
    const auto fb = fraction_forms(p2, q2, gen);
    for (const auto& a : fa)
      for (const auto& b : fb) {
        INFO(a << " vs " << b);
        REQUIRE_FALSE(answers_equivalent(a, b));
        ++compared;
      }
  }
  CHECK(compared > 10000);
}

TEST_CASE("answers_equivalent is symmetric and reflexive on random strings", "[verify][property]") {
  std::mt19937 gen(99);
  const std::string alphabet = "0123456789.,/-+e%{}\\frac $ ";
  std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
  std::uniform_int_distribution<int> len(0, 12);
  for (int trial = 0; trial < 5000; ++trial) {
    std::string a;
    std::string b;
    for (int k = len(gen); k > 0; --k) a += alphabet[pick(gen)];
    for (int k = len(gen); k > 0; --k) b += alphabet[pick(gen)];
    INFO(a << " vs " << b);
    REQUIRE(answers_equivalent(a, b) == answers_equivalent(b, a));
    REQUIRE(answers_equivalent(a, a) ==
            (xplor::reward::check_answer(a, a).reason != xplor::reward::verdict_reason::empty));
  }
}
