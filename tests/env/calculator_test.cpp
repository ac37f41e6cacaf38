#include "xplor/env/tools/calculator.hpp"

#include <catch2/catch.hpp>
#include <cstdint>
#include <numeric>
#include <string>
#include <string_view>

#include "xplor/core/random.hpp"

using xplor::env::calc_result;
using xplor::env::evaluate;
using xplor::env::rational;

namespace {

rational value_of(std::string_view expr) {
  const calc_result r = evaluate(expr);
  INFO(expr << " -> " << r.error);
  REQUIRE(r.ok);
  return r.value;
}

std::string error_of(std::string_view expr) {
  const calc_result r = evaluate(expr);
  INFO(expr << " -> " << r.text);
  REQUIRE_FALSE(r.ok);
  REQUIRE_FALSE(r.error.empty());
  return r.error;
}

std::int64_t below(xplor::philox_stream& gen, std::uint32_t n) {
  return static_cast<std::int64_t>(gen() % n);
}

// The straightforward reference: int64 fractions, normalised after each operation. The trees of
// the property test are small enough that nothing overflows here.
struct ref_rational {
  std::int64_t num = 0;
  std::int64_t den = 1;
  bool div_by_zero = false;
};

ref_rational ref_make(std::int64_t n, std::int64_t d) {
  if (d < 0) n = -n, d = -d;
  const std::int64_t g = std::gcd(n, d);
  return {n / g, d / g, false};
}

// Builds a random expression string (random spacing, full parentheses around binary nodes,
// occasional unary minus, small powers and decimals at the leaves) and its reference value.
ref_rational random_tree(xplor::philox_stream& gen, int depth, std::string& out) {
  auto space = [&] {
    if (below(gen, 3) == 0) out += ' ';
  };
  const bool negate = below(gen, 5) == 0;
  if (negate) out += '-';
  ref_rational v;
  if (depth == 0 || below(gen, 4) == 0) {
    const std::int64_t kind = below(gen, 6);
    if (kind == 0) {  // a power a^k with a <= 5, k <= 2
      const std::int64_t a = below(gen, 6), k = below(gen, 3);
      out += std::to_string(a);
      out += '^';
      out += std::to_string(k);
      std::int64_t p = 1;
      for (int i = 0; i < k; ++i) p *= a;
      v = ref_make(p, 1);
    } else if (kind == 1) {  // a decimal x.5
      const std::int64_t x = below(gen, 10);
      out += std::to_string(x);
      out += ".5";
      v = ref_make(2 * x + 1, 2);
    } else {
      const std::int64_t x = below(gen, 13);
      out += std::to_string(x);
      v = ref_make(x, 1);
    }
  } else {
    out += '(';
    space();
    const ref_rational a = random_tree(gen, depth - 1, out);
    space();
    const char op = "+-*/"[below(gen, 4)];
    out += op;
    space();
    const ref_rational b = random_tree(gen, depth - 1, out);
    space();
    out += ')';
    if (a.div_by_zero || b.div_by_zero) {
      v.div_by_zero = true;
    } else if (op == '+') {
      v = ref_make(a.num * b.den + b.num * a.den, a.den * b.den);
    } else if (op == '-') {
      v = ref_make(a.num * b.den - b.num * a.den, a.den * b.den);
    } else if (op == '*') {
      v = ref_make(a.num * b.num, a.den * b.den);
    } else if (b.num == 0) {
      v.div_by_zero = true;
    } else {
      v = ref_make(a.num * b.den, a.den * b.num);
    }
  }
  if (negate) v.num = -v.num;
  return v;
}

}  // namespace

TEST_CASE("calculator: precedence, associativity and unary minus", "[env][calculator]") {
  CHECK(value_of("1 + 2 * 3") == rational{7, 1});
  CHECK(value_of("(1 + 2) * 3") == rational{9, 1});
  CHECK(value_of("10 - 4 - 3") == rational{3, 1});   // left-associative
  CHECK(value_of("64 / 4 / 2") == rational{8, 1});   // left-associative
  CHECK(value_of("2 ^ 3 ^ 2") == rational{512, 1});  // right-associative
  CHECK(value_of("(2 ^ 3) ^ 2") == rational{64, 1});
  CHECK(value_of("2 ** 10") == rational{1024, 1});  // '**' is '^'
  CHECK(value_of("-2 ^ 2") == rational{-4, 1});     // ^ binds tighter than unary minus
  CHECK(value_of("(-2) ^ 2") == rational{4, 1});
  CHECK(value_of("2 ^ -2") == rational{1, 4});
  CHECK(value_of("--3") == rational{3, 1});
  CHECK(value_of("+3 - -3") == rational{6, 1});
  CHECK(value_of("2 * -3") == rational{-6, 1});
  CHECK(value_of("0 ^ 0") == rational{1, 1});
  CHECK(value_of(" \t( ( 7 ) )\n") == rational{7, 1});
  CHECK(value_of("1 - 2 * 3 + 8 / 4 ^ 2") == rational{-9, 2});
}

TEST_CASE("calculator: exact fractions and decimals", "[env][calculator]") {
  CHECK(value_of("1/3 + 1/6") == rational{1, 2});
  CHECK(value_of("1/3 * 3") == rational{1, 1});
  CHECK(value_of("2/4") == rational{1, 2});
  CHECK(value_of("-6/4") == rational{-3, 2});
  CHECK(value_of("6/-4") == rational{-3, 2});
  CHECK(value_of("0.1 + 0.2") == rational{3, 10});
  CHECK(value_of("3.25") == rational{13, 4});
  CHECK(value_of(".5 + 5.") == rational{11, 2});
  CHECK(value_of("(2/3) ^ 3") == rational{8, 27});
  CHECK(value_of("(2/3) ^ -2") == rational{9, 4});
  CHECK(value_of("9223372036854775807") == rational{9223372036854775807LL, 1});
  CHECK(value_of("2^62") == rational{4611686018427387904LL, 1});
  CHECK(value_of("1 ^ 1000000000000") == rational{1, 1});
  CHECK(value_of("(-1) ^ 999999999999") == rational{-1, 1});
}

TEST_CASE("calculator: formatting of values", "[env][calculator]") {
  CHECK(evaluate("6*7").text == "42");
  CHECK(evaluate("-6*7").text == "-42");
  CHECK(evaluate("7/2").text == "7/2 = 3.5");
  CHECK(evaluate("-1/8").text == "-1/8 = -0.125");
  CHECK(evaluate("1/1024").text == "1/1024 = 0.0009765625");
  CHECK(evaluate("1/3").text == "1/3 ~ 0.333333333333");
  CHECK(evaluate("-2/3").text == "-2/3 ~ -0.666666666667");
  CHECK(rational{5, 1}.to_string() == "5");
  CHECK(rational{-5, 3}.to_string() == "-5/3");
}

TEST_CASE("calculator: errors name the problem and the position", "[env][calculator]") {
  CHECK(error_of("1/0") == "division by zero at position 1");
  CHECK(error_of("1 / (2 - 2)") == "division by zero at position 2");
  CHECK(error_of("0 ^ -1").find("division by zero") != std::string::npos);
  CHECK(error_of("") == "empty expression");
  CHECK(error_of("   ") == "empty expression");
  CHECK(error_of("1 + x") == "unexpected character 'x', expected a number or '(' at position 4");
  CHECK(error_of("2(3)") == "unexpected character '(' at position 1");
  CHECK(error_of("1 +") == "unexpected end of input, expected a number or '(' at position 3");
  CHECK(error_of("(1 + 2") == "missing ')' for the '(' at position 0 (found end of input) at position 6");
  CHECK(error_of("1 + 2)") == "unexpected ')' at position 5");
  CHECK(error_of("()").find("unexpected ')'") != std::string::npos);
  CHECK(error_of("1.2.3") == "unexpected character '.' at position 3");
  CHECK(error_of(".") == "a lone '.' is not a number at position 0");
  CHECK(error_of("1e3") == "unexpected character 'e' at position 1");
  CHECK(error_of("2 ^ (1/2)") == "the exponent 1/2 is not an integer at position 2");
  CHECK(error_of("1 + \x01").find("byte 0x01") != std::string::npos);
  CHECK(error_of("__import__('os')").find("position 0") != std::string::npos);
}

TEST_CASE("calculator: overflow is an error, never undefined behaviour", "[env][calculator]") {
  CHECK(error_of("9223372036854775807 + 1") == "overflow at position 20");
  CHECK(error_of("-9223372036854775807 - 1") == "overflow at position 21");
  CHECK(error_of("9223372036854775808") == "the number is too large at position 0");
  CHECK(error_of("2 ^ 63") == "overflow at position 2");
  CHECK(error_of("2 ^ 62 * 2") == "overflow at position 7");
  CHECK(error_of("3037000500 * 3037000500") == "overflow at position 11");
  CHECK(error_of("1 / 2 ^ 63").find("overflow") != std::string::npos);
  CHECK(error_of("2 ^ 9223372036854775807").find("overflow") != std::string::npos);
  CHECK(error_of("0.0000000000000000001") == "the number has too many decimals at position 0");
  CHECK(error_of("1/9223372036854775807 + 1/9223372036854775806").find("overflow") != std::string::npos);
}

TEST_CASE("calculator: length and nesting limits are enforced cleanly", "[env][calculator]") {
  using xplor::env::max_calc_depth;
  using xplor::env::max_calc_length;
  // 10,000 nested parentheses: rejected (here by the depth limit, before any deep recursion).
  const std::string open(10000, '(');
  CHECK(error_of(open) == "nesting deeper than 256 at position 256");
  // Balanced 10,000-deep parentheses exceed the length limit.
  CHECK(error_of(open + "1" + std::string(10000, ')')).find("over the limit of 10000") != std::string::npos);
  // Within the length limit, depth 300 is rejected and depth 256 accepted.
  CHECK(error_of(std::string(300, '(') + "1" + std::string(300, ')')).find("nesting deeper than 256") !=
        std::string::npos);
  CHECK(value_of(std::string(max_calc_depth, '(') + "1" + std::string(max_calc_depth, ')')) ==
        rational{1, 1});
  // Chained exponents count as nesting too; a long run of signs costs no stack.
  std::string chain = "1";
  for (int i = 0; i < 1000; ++i) chain += "^1";
  CHECK(error_of(chain).find("nesting deeper than 256") != std::string::npos);
  CHECK(value_of(std::string(9999, '-') + "1") == rational{-1, 1});
  // The length limit: 10,000 characters pass, 10,001 do not.
  std::string sum = "1";
  while (sum.size() + 2 <= max_calc_length) sum += "+1";
  if (sum.size() < max_calc_length) sum += " ";
  REQUIRE(sum.size() == max_calc_length);
  CHECK(value_of(sum) == rational{5000, 1});
  CHECK(error_of(sum + " ") == "the expression is 10001 characters long, over the limit of 10000");
}

TEST_CASE("calculator: random expression trees match a reference evaluator", "[env][calculator]") {
  xplor::philox_stream gen(20260101, 7);
  int checked = 0, zero_divisions = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string expr;
    const ref_rational ref = random_tree(gen, 1 + static_cast<int>(below(gen, 3)), expr);
    const calc_result r = evaluate(expr);
    INFO(expr << " -> " << (r.ok ? r.text : r.error));
    if (ref.div_by_zero) {
      REQUIRE_FALSE(r.ok);
      CHECK(r.error.find("division by zero") != std::string::npos);
      ++zero_divisions;
    } else {
      REQUIRE(r.ok);
      CHECK(r.value == rational{ref.num, ref.den});
      ++checked;
    }
  }
  CHECK(checked > 2000);
  CHECK(zero_divisions > 10);
}

TEST_CASE("calculator: random garbage is ok or a clean error", "[env][calculator]") {
  xplor::philox_stream gen(99, 3);
  constexpr std::string_view alphabet = "0123456789+-*/^().  x\t\x7f\xff";
  int ok = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    std::string expr;
    const auto n = below(gen, 40);
    for (std::int64_t i = 0; i < n; ++i)
      expr += alphabet[static_cast<std::size_t>(below(gen, static_cast<std::uint32_t>(alphabet.size())))];
    calc_result r;
    REQUIRE_NOTHROW(r = evaluate(expr));
    if (r.ok) {
      ++ok;
      CHECK(r.error.empty());
      CHECK_FALSE(r.text.empty());
      CHECK(r.value.den > 0);
      CHECK(std::gcd(r.value.num, r.value.den) == 1);
    } else {
      INFO(expr);
      CHECK((r.error == "empty expression" || r.error.find(" at position ") != std::string::npos));
    }
  }
  CHECK(ok > 100);
}

TEST_CASE("calculator_tool wraps evaluate", "[env][calculator]") {
  const xplor::env::calculator_tool calc;
  const xplor::env::tool& t = calc;
  CHECK(t.name() == "calculator");
  const auto good = t.run("1/3 + 1/6");
  CHECK(good.ok);
  CHECK(good.output == "1/2 = 0.5");
  const auto bad = t.run("1/0");
  CHECK_FALSE(bad.ok);
  CHECK(bad.output == "error: division by zero at position 1");
  CHECK_FALSE(t.run(std::string(20000, '(')).ok);
}
