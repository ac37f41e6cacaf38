// check_answer on the answer kinds of MATH and GSM8K: a table per kind (docs/reward.md mirrors
// it), hostile near-misses, random property checks and hostile inputs.
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "xplor/reward/math_reward.hpp"
#include "xplor/reward/truth.hpp"
#include "xplor/reward/verify.hpp"

using xplor::reward::check_answer;
using xplor::reward::verdict_reason;

namespace {

struct row {
  const char* a;
  const char* b;
  verdict_reason why;
};

void check_rows(const std::vector<row>& rows) {
  for (const row& r : rows) {
    const auto ab = check_answer(r.a, r.b);
    const auto ba = check_answer(r.b, r.a);
    INFO(r.a << "  vs  " << r.b << "  -> " << to_string(ab.reason) << " (expected " << to_string(r.why)
             << ")");
    const bool expect_equal = r.why == verdict_reason::same_text || r.why == verdict_reason::same_value;
    CHECK(ab.equivalent == expect_equal);
    CHECK(ab.reason == r.why);
    CHECK(ba.equivalent == ab.equivalent);  // symmetric
  }
}

constexpr auto same = verdict_reason::same_value;
constexpr auto text = verdict_reason::same_text;
constexpr auto value = verdict_reason::different_value;
constexpr auto form = verdict_reason::different_form;
constexpr auto unit = verdict_reason::different_unit;
constexpr auto unsupported = verdict_reason::unsupported;

}  // namespace

TEST_CASE("check_answer: labels, units, degrees, percent words", "[verify][math]") {
  check_rows({
      {"x = 5", "5", same},
      {"k=3", "3", same},
      {"x_1 = 2", "2", same},
      {"x \\in [1, 2]", "[1,2]", same},
      {"y = 2x + 3", "3 + 2x", same},
      {"5\\text{ cm}", "5", same},
      {"5 \\text{ cm}^2", "5", same},
      {"5\\mbox{ inches}", "5 \\text{inch}", same},
      {"12 dollars", "12", same},
      {"\\$12", "12", text},
      {"2 hours", "2 minutes", unit},
      {"2 hours", "120 minutes", unit},
      {"2 hours", "3", value},
      {"30^\\circ", "30", text},
      {"30^{\\circ}", "30 degrees", same},
      {"30\xC2\xB0", "30", text},
      {"30^\\circ", "31", value},
      {"50 percent", "50\\%", same},
      {"50 percent", "0.5", same},
      {"50\\%", "5\\%", value},
      {"28 pct", "28\\%", same},
      {"28 percentage", "0.28", same},
      {"5 \\text{ million}", "5", unsupported},
  });
}

TEST_CASE("check_answer: radicals, pi, i and fractions in canonical form", "[verify][math]") {
  check_rows({
      {"\\frac{\\sqrt3}{2}", "\\frac{1}{2}\\sqrt{3}", same},
      {"\\sqrt3/2", "\\dfrac{\\sqrt{3}}{2}", same},
      {"\\sqrt{12}", "2\\sqrt3", same},
      {"\\sqrt{\\frac{1}{2}}", "\\frac{\\sqrt2}{2}", same},
      {"\\frac{1}{\\sqrt2}", "\\tfrac{\\sqrt{2}}{2}", same},
      {"\\frac{1}{1+\\sqrt{2}}", "\\sqrt2-1", same},
      {"2+9\\sqrt{3}", "9\\sqrt3+2", same},
      {"2+9\\sqrt{3}", "2-9\\sqrt{3}", value},
      {"3\\sqrt{2} \\cdot \\sqrt{6}", "6\\sqrt3", same},
      {"\\sqrt[3]{8}", "2", same},
      {"6\\pi", "6 \\pi", text},
      {"\\frac{\\pi}{3}", "\\pi/3", same},
      {"\\frac{\\pi}{3}", "\\frac{\\pi}{6}", value},
      {"\\pi r^2", "r^2 \\pi", same},
      {"3+4i", "4i+3", same},
      {"\\sqrt{-4}", "2i", same},
      {"i^2", "-1", same},
      {"\\frac{3}{4}", "\\cfrac{6}{8}", same},
      {"2\\frac{1}{2}", "\\frac52", same},
      {"-2\\frac12", "-2.5", same},
      {"2\\frac{1}{2}", "1", value},
  });
}

TEST_CASE("check_answer: polynomials and expressions", "[verify][math]") {
  check_rows({
      {"7x^2+9x+3", "3+9x+7x^2", same},
      {"7x^2+9x+3", "7x^2-9x+3", value},
      {"x^2 - 1", "(x+1)(x-1)", same},
      {"2xy", "y \\cdot x \\cdot 2", same},
      {"\\frac{x}{2}", "0.5x", same},
      {"\\frac{x^2-1}{x-1}", "\\frac{(x-1)(x+1)}{x-1}", same},
      {"a^{-1}", "\\frac{1}{a}", same},
      {"x^2", "x^3", value},
      {"\\alpha + \\beta", "\\beta + \\alpha", same},
  });
}

TEST_CASE("check_answer: tuples, intervals, unions, sets and solution lists", "[verify][math]") {
  check_rows({
      {"(1, 2)", "(1,2)", text},
      {"(1,2)", "\\left( 1, 2 \\right)", text},
      {"(-8,-8)", "(-8,8)", value},
      {"(3, -\\sqrt{2})", "(3, \\sqrt{2})", value},
      {"(\\frac12, 3)", "(0.5, 3)", same},
      {"[3,13]", "(3,13]", form},
      {"[3,13)", "[3,13]", form},
      {"(-\\infty, 5]", "(-\\infty,5]", text},
      {"(-\\infty, 5]", "(\\infty, 5]", value},
      {"[1,2) \\cup (3,4]", "(3,4] \\cup [1,2)", same},
      {"[1,2) \\cup (3,4]", "[1,2) \\cup [3,4]", value},
      {"(1,2)", "(1,2,3)", form},
      {"1, 2", "2, 1", same},
      {"\\{1,2\\}", "2, 1", same},
      {"x=1, x=2", "2, 1", same},
      {"1 \\text{ or } 2", "2,1", same},
      {"1 \\pm \\sqrt{2}", "1-\\sqrt2, 1+\\sqrt2", same},
      {"1 \\pm \\sqrt{2}", "1+\\sqrt2", form},
      {"32, 349", "32349", form},
      {"32,349", "32349", same},
      {"32{,}349", "32349", same},
      {"32{, }349", "32349", same},
      {"1,2", "12", form},
      {"\\emptyset", "\\{\\}", same},
      {"{1, 2, 3}", "3, 2, 1", same},
      {"(0;-2;6)", "(0, -2, 6)", same},
      {"(p, q) = (3, 2)", "(3,2)", same},
      {"(x, y) = (5, 8) \\text{ and } (8, 5)", "(8, 5), (5, 8)", same},
      {"AB = 4, CD = 5", "4, 5", same},
      {"f(x) = 1", "1", same},
      {"32,\\! 349", "32349", same},
  });
}

TEST_CASE("check_answer: choices, matrices, relations", "[verify][math]") {
  check_rows({
      {"C", "(C)", same},
      {"\\text{(C)}", "C", same},
      {"\\textbf{(C)}", "(C)", text},
      {"(C)", "(D)", value},
      {"\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{bmatrix}1 & 2 \\\\ 3 & 4\\end{bmatrix}", same},
      {"\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\left[\\begin{array}{cc}1&2\\\\3&4\\end{array}\\right]",
       same},
      {"\\begin{pmatrix}\\frac12\\\\-1\\end{pmatrix}", "\\begin{pmatrix}0.5\\\\-1\\end{pmatrix}", same},
      {"\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\4&3\\end{pmatrix}", value},
      {"\\begin{pmatrix}1&2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", form},
      {"x \\leq 5", "5 \\geq x", same},
      {"x \\le 5", "x < 5", form},
      {"0 < x < 5", "5 > x > 0", same},
      {"x + y = 5", "5 = y + x", same},
      {"x \\neq 3", "3 \\ne x", same},
      {"x <= 2", "x \\leq 2", same},
      {"x >= 5", "5 \\le x", same},
      {"x != 3", "x \\neq 3", same},
  });
}

TEST_CASE("check_answer: hostile near-misses are never equivalent", "[verify][math]") {
  check_rows({
      {"0.333333", "\\frac{1}{3}", value},
      {"0.333333", "1/3", value},
      {"0.707107", "\\frac{\\sqrt{2}}{2}", value},
      {"1.414214", "\\sqrt2", value},
      {"3.141593", "\\pi", value},
      {"1234567890123456789", "1234567890123456788", value},
      {"1234567890123456789", "1,234,567,890,123,456,789", same},
      {"-1234567890123456789", "1234567890123456789", value},
      {"10^12", "1000000000000", unsupported},
      {"(1, 2)", "(2, 1)", value},
      {"\\sqrt{2}+\\sqrt{3}", "\\sqrt{5}", value},
      {"\\sqrt{8}", "2\\sqrt{3}", value},
      {"x^2+1", "x^2+1.000001", value},
      {"Yes", "yes", unsupported},
      {"evil", "live", unsupported},
  });
  // A box inside the box is part of the answer, not the answer.
  const auto boxed = xplor::reward::extract_boxed("so \\boxed{\\boxed{26}+1}.");
  REQUIRE(boxed.has_value());
  CHECK(*boxed == "\\boxed{26}+1");
  CHECK(check_answer(*boxed, "27").equivalent);
  CHECK_FALSE(check_answer(*boxed, "26").equivalent);
}

TEST_CASE("check_answer: empty answers and reasons", "[verify][math]") {
  CHECK(check_answer("", "1").reason == verdict_reason::empty);
  CHECK(check_answer("$ $", "$ $").reason == verdict_reason::empty);
  CHECK(check_answer("\\text{}", "\\text{}").reason == verdict_reason::empty);
  CHECK(std::string(to_string(verdict_reason::too_large)) == "too_large");
}

TEST_CASE("check_answer: arithmetic beyond 128 bits is undecided, not guessed", "[verify][math]") {
  // Expressions (not plain numbers) whose exact value needs more than 128-bit integers.
  const std::string big = "\\sqrt{2} + 123456789012345678901234567890123456789012";
  CHECK(check_answer(big, big + "+0").reason == verdict_reason::too_large);
  CHECK_FALSE(check_answer(big, big + "+0").equivalent);
  // Plain numbers of any length stay exact.
  const std::string digits(2000, '7');
  CHECK(check_answer(digits, digits + ".0").equivalent);
  CHECK_FALSE(check_answer(digits, digits + "1").equivalent);
  CHECK(check_answer("(" + digits + ", 1)", "(" + digits + ".00, 1.0)").equivalent);
  CHECK_FALSE(check_answer("(" + digits + ", 1)", "(" + digits + "1, 1)").equivalent);
}

TEST_CASE("check_answer: random polynomials in any term order and format", "[verify][math][property]") {
  std::mt19937 gen(7);
  std::uniform_int_distribution<int> coef(-20, 20);
  std::uniform_int_distribution<int> nterms(1, 5);
  int checked = 0;
  for (int trial = 0; trial < 400; ++trial) {
    struct term {
      int c, px, py;
    };
    std::vector<term> terms;
    const int n = nterms(gen);
    for (int k = 0; k < n; ++k) {
      term t{coef(gen), static_cast<int>(gen() % 4), static_cast<int>(gen() % 3)};
      bool dup = t.c == 0;
      for (const term& u : terms) dup = dup || (u.px == t.px && u.py == t.py);
      if (!dup) terms.push_back(t);
    }
    if (terms.empty()) continue;
    auto render = [&](std::vector<term> ts, bool cdot) {
      std::shuffle(ts.begin(), ts.end(), gen);
      std::string s;
      for (std::size_t k = 0; k < ts.size(); ++k) {
        const term& t = ts[k];
        const int mag = t.c < 0 ? -t.c : t.c;
        s += t.c < 0 ? (k == 0 ? "-" : " - ") : (k == 0 ? "" : " + ");
        std::vector<std::string> factors;
        if (mag != 1 || (t.px == 0 && t.py == 0)) factors.push_back(std::to_string(mag));
        if (t.px > 0) factors.push_back("x" + (t.px > 1 ? "^" + std::to_string(t.px) : std::string()));
        if (t.py > 0) factors.push_back("y" + (t.py > 1 ? "^{" + std::to_string(t.py) + "}" : std::string()));
        for (std::size_t f = 0; f < factors.size(); ++f) {
          if (f > 0 && cdot) s += " \\cdot ";
          s += factors[f];
        }
      }
      return s;
    };
    const std::string a = render(terms, false);
    const std::string b = render(terms, true);
    INFO(a << "  vs  " << b);
    CHECK(check_answer(a, b).equivalent);
    std::vector<term> flipped = terms;
    flipped[gen() % flipped.size()].c *= -1;
    const std::string c = render(flipped, false);
    INFO("flipped: " << c);
    CHECK_FALSE(check_answer(a, c).equivalent);
    CHECK(check_answer(a, c).reason == verdict_reason::different_value);
    ++checked;
  }
  CHECK(checked > 300);
}

TEST_CASE("check_answer: random radical sums in simplified and unsimplified forms",
          "[verify][math][property]") {
  std::mt19937 gen(11);
  const int squarefree[] = {2, 3, 5, 6, 7, 10, 11, 13, 14, 15};
  std::uniform_int_distribution<int> small(1, 9);
  for (int trial = 0; trial < 500; ++trial) {
    const int a = small(gen) * (gen() % 2 ? 1 : -1);
    const int b = small(gen);
    const int k = small(gen);
    const int r = squarefree[gen() % 10];
    const int d = small(gen) + 1;
    // (a + b sqrt(r)) / d written as a/d + b sqrt(k^2 r) / (k d)
    const std::string simple = "\\frac{" + std::to_string(a) + " + " + std::to_string(b) + "\\sqrt{" +
                               std::to_string(r) + "}}{" + std::to_string(d) + "}";
    const std::string other = "\\frac{" + std::to_string(b) + "\\sqrt{" + std::to_string(k * k * r) + "}}{" +
                              std::to_string(k * d) + "} + " + (a < 0 ? "-" : "") + "\\frac{" +
                              std::to_string(a < 0 ? -a : a) + "}{" + std::to_string(d) + "}";
    INFO(simple << "  vs  " << other);
    CHECK(check_answer(simple, other).equivalent);
    const std::string sign_flip = "\\frac{" + std::to_string(a) + " - " + std::to_string(b) + "\\sqrt{" +
                                  std::to_string(r) + "}}{" + std::to_string(d) + "}";
    CHECK_FALSE(check_answer(simple, sign_flip).equivalent);
    const int r2 =
        squarefree[(std::find(std::begin(squarefree), std::end(squarefree), r) - std::begin(squarefree) + 1) %
                   10];
    const std::string other_radicand = "\\frac{" + std::to_string(a) + " + " + std::to_string(b) + "\\sqrt{" +
                                       std::to_string(r2) + "}}{" + std::to_string(d) + "}";
    CHECK_FALSE(check_answer(simple, other_radicand).equivalent);
  }
}

TEST_CASE("check_answer: random sets in any order, tuples in one order", "[verify][math][property]") {
  std::mt19937 gen(5);
  std::uniform_int_distribution<int> val(-50, 50);
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<int> xs;
    const int n = 2 + static_cast<int>(gen() % 4);
    while (static_cast<int>(xs.size()) < n) {
      const int v = val(gen);
      if (std::find(xs.begin(), xs.end(), v) == xs.end()) xs.push_back(v);
    }
    auto join = [](const std::vector<int>& v, const char* sep) {
      std::string s;
      for (std::size_t k = 0; k < v.size(); ++k) {
        if (k > 0) s += sep;
        s += std::to_string(v[k]);
      }
      return s;
    };
    std::vector<int> perm = xs;
    std::shuffle(perm.begin(), perm.end(), gen);
    const bool moved = perm != xs;
    CHECK(check_answer(join(xs, ", "), "\\{" + join(perm, ",") + "\\}").equivalent);
    CHECK(check_answer("(" + join(xs, ",") + ")", "(" + join(perm, ", ") + ")").equivalent == !moved);
    std::vector<int> changed = perm;
    changed[gen() % changed.size()] += 1 + static_cast<int>(gen() % 3);
    std::vector<int> sorted_changed = changed;
    std::sort(sorted_changed.begin(), sorted_changed.end());
    std::vector<int> sorted_xs = xs;
    std::sort(sorted_xs.begin(), sorted_xs.end());
    CHECK(check_answer(join(xs, ", "), join(changed, ", ")).equivalent == (sorted_changed == sorted_xs));
  }
}

TEST_CASE("check_answer: hostile inputs end quickly with a verdict", "[verify][math][bad_input]") {
  const std::size_t n = 1 << 20;
  const auto start = std::chrono::steady_clock::now();
  CHECK(check_answer(std::string(n, '('), "1").reason == verdict_reason::unsupported);
  CHECK(check_answer(std::string(n / 2, '(') + "1" + std::string(n / 2, ')'), "1").reason ==
        verdict_reason::unsupported);  // nesting beyond the parser's limit
  std::string products;
  for (int k = 0; k < 2000; ++k) products += "(x+y+z+w+v)";
  CHECK(check_answer(products, "1").reason == verdict_reason::too_large);
  std::string radicals;
  for (int k = 0; k < 20000; ++k) radicals += "+\\sqrt{999999999989}";
  CHECK_FALSE(check_answer(radicals, "1").equivalent);
  std::string sum;
  for (int k = 0; k < 100000; ++k) sum += "+1";
  CHECK(check_answer(sum, "100000").equivalent);
  std::string list;
  for (int k = 0; k < 100000; ++k) list += std::to_string(k) + ", ";
  list += "0";
  CHECK_FALSE(check_answer(list, list + ", 1").equivalent);
  // Sets of sets of sets: the quadratic matchings multiply, the work budget ends them.
  std::string inner = "\\{";
  for (int k = 0; k < 40; ++k) inner += (k ? "," : "") + std::to_string(k);
  inner += "\\}";
  std::string mid = "\\{";
  for (int k = 0; k < 40; ++k) mid += (k ? "," : "") + inner;
  mid += "\\}";
  std::string outer = "\\{";
  for (int k = 0; k < 40; ++k) outer += (k ? "," : "") + mid;
  std::string outer2 = outer + ",\\{0\\}\\}";
  outer += ",\\{1\\}\\}";
  CHECK_FALSE(check_answer(outer, outer2).equivalent);
  CHECK(check_answer("x^{999}", "x^{999}").equivalent);
  CHECK(check_answer("x^{9}", "x^{9}+0").equivalent);
  CHECK(check_answer("2^{300}", "2^{300}").reason == verdict_reason::same_text);
  CHECK(check_answer("2^{300}", "2^{300}+0").reason == verdict_reason::too_large);
  CHECK(check_answer("1e999999999999999999", "1e999999999999999999").equivalent);
  CHECK_FALSE(check_answer("1e999999999999999999", "1e3").equivalent);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(seconds < 20.0);  // generous for sanitizer builds; each call above is linear
}

TEST_CASE("classify_response never matches math answers by SQuAD normalisation", "[truth][math]") {
  using xplor::reward::classify_response;
  using xplor::reward::outcome;
  const std::vector<std::pair<const char*, const char*>> wrong{
      {"\\boxed{[3,13]}", "(3,13]"},
      {"\\boxed{7x^2+9x+3}", "7x^2-9x+3"},
      {"\\boxed{2+9\\sqrt{3}}", "2-9\\sqrt{3}"},
      {"\\boxed{(-8,-8)}", "(-8,8)"},
      {"\\boxed{32, 349}", "32349"},
      {"\\boxed{1.5}", "15"},
      {"\\boxed{x}", "X"},
  };
  for (const auto& [response, gold] : wrong) {
    INFO(response << " vs " << gold);
    const std::vector<std::string> golds{gold};
    CHECK(classify_response(response, golds) == outcome::incorrect);
  }
  const std::vector<std::string> shakespeare{"William Shakespeare"};
  CHECK(classify_response("\\boxed{william shakespeare.}", shakespeare) == outcome::correct);
  const std::vector<std::string> sartre{"Jean-Paul Sartre"};
  CHECK(classify_response("\\boxed{Jean-Paul Sartre}", sartre) == outcome::correct);
  CHECK(classify_response("\\boxed{jean paul sartre}", sartre) == outcome::incorrect);
  const std::vector<std::string> half{"\\frac12"};
  CHECK(classify_response("\\boxed{0.5}", half) == outcome::correct);
}

TEST_CASE("math_reward: extraction, exact checking and the reward in one call", "[verify][math_reward]") {
  using namespace xplor::reward;
  const std::vector<std::string> responses{"so \\boxed{\\frac{1}{2}}.", "it is \\boxed{0.5001}",
                                           "no box, answer is 7", "\\boxed{(3,13]}", "#### 1,234"};
  const std::vector<std::string> golds{"0.5", "1/2", "7", "[3,13]", "1234"};
  std::vector<float> r(5);
  std::vector<verdict> why(5);
  math_reward(responses, golds, r, {}, why);
  CHECK(r == std::vector<float>{1, 0, 0, 0, 0});
  CHECK(why[0].reason == verdict_reason::same_value);
  CHECK(why[1].reason == verdict_reason::different_value);
  CHECK(why[2].reason == verdict_reason::no_answer);
  CHECK(why[3].reason == verdict_reason::different_form);
  math_reward_options o;
  o.extract = answer_extractor::boxed_or_answer_is;
  o.incorrect = -1.0f;
  o.no_answer = -0.5f;
  math_reward(responses, golds, r, o);
  CHECK(r == std::vector<float>{1, -1, 1, -1, -0.5f});
  o.extract = answer_extractor::gsm8k;
  math_reward(responses, golds, r, o);
  CHECK(r[4] == 1.0f);
  CHECK(r[0] == -0.5f);
  // Property: the reward agrees with check_answer on the extracted box for random pairs.
  std::mt19937 gen(12);
  std::vector<std::string> rs, gs;
  for (int k = 0; k < 200; ++k) {
    const int a = static_cast<int>(gen() % 9) + 1, b = static_cast<int>(gen() % 9) + 1;
    rs.push_back("\\boxed{\\frac{" + std::to_string(a) + "}{" + std::to_string(b) + "}}");
    gs.push_back(std::to_string(a * 2) + "/" + std::to_string(b * (1 + static_cast<int>(gen() % 2)) * 2));
  }
  std::vector<float> rr(rs.size());
  math_reward(rs, gs, rr);
  for (std::size_t k = 0; k < rs.size(); ++k)
    CHECK(rr[k] == (check_answer(*extract_boxed(rs[k]), gs[k]).equivalent ? 1.0f : 0.0f));
  // On host threads: the same rewards and verdicts.
  math_reward_options threaded;
  threaded.threads = 2;
  std::vector<float> rt(rs.size());
  std::vector<verdict> v1(rs.size()), v2(rs.size());
  math_reward(rs, gs, rr, {}, v1);
  math_reward(rs, gs, rt, threaded, v2);
  CHECK(rt == rr);
  for (std::size_t k = 0; k < rs.size(); ++k) CHECK(v1[k].reason == v2[k].reason);
  // Bad input.
  std::vector<float> short_out(2);
  CHECK_THROWS_WITH(math_reward(responses, golds, short_out),
                    Catch::Contains("out has 2 elements for 5 responses"));
  CHECK_THROWS_WITH(math_reward(responses, std::span<const std::string>(golds).first(3), r),
                    Catch::Contains("golds has 3 elements for 5 responses"));
  math_reward_options nan;
  nan.correct = std::nanf("");
  CHECK_THROWS_WITH(math_reward(responses, golds, r, nan), Catch::Contains("must be finite"));
  math_reward_options negative;
  negative.threads = -1;
  CHECK_THROWS_WITH(math_reward(responses, golds, r, negative), Catch::Contains("threads = -1 is negative"));
}
