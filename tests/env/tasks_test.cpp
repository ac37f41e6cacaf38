#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/env/builtin.hpp"
#include "xplor/env/tasks/arithmetic.hpp"
#include "xplor/env/tasks/countdown.hpp"
#include "xplor/env/tasks/guess_number.hpp"
#include "xplor/env/tasks/strings.hpp"
#include "xplor/env/tools/calculator.hpp"

using xplor::env::environment;
using xplor::env::guess_number;
using xplor::env::guess_number_options;
using xplor::env::step_result;

namespace {

std::string boxed(std::string_view s) {
  std::string out = "The answer is \\boxed{";
  out += s;
  out += "}.";
  return out;
}

int secret_of(const xplor::env::info_map& info) { return std::stoi(info.at("secret")); }

// A simple text policy: reads the range from the instructions and the feedback sentences.
struct binary_search_policy {
  int lo = 0, hi = 0, last = 0;
  void start(const std::string& obs) {
    const auto a = obs.find("between ") + 8;
    const auto b = obs.find(" and ", a);
    lo = std::stoi(obs.substr(a, b - a));
    hi = std::stoi(obs.substr(b + 5));
  }
  std::string act() {
    last = lo + (hi - lo) / 2;
    return boxed(std::to_string(last));
  }
  void feedback(const std::string& obs) {
    if (obs.starts_with("The secret number is higher than ")) lo = last + 1;
    if (obs.starts_with("The secret number is lower than ")) hi = last - 1;
  }
};

int ceil_log2(int x) {
  int k = 0;
  while ((1 << k) < x) ++k;
  return k;
}

}  // namespace

TEST_CASE("guess_number: the secret is uniform in range and fixed by the seed", "[env][tasks]") {
  guess_number env;
  std::set<int> seen;
  for (std::uint64_t seed = 0; seed < 400; ++seed) {
    const auto r1 = env.reset(seed);
    const int s = secret_of(r1.info);
    CHECK(s >= 1);
    CHECK(s <= 20);
    seen.insert(s);
    const auto r2 = env.reset(seed);
    CHECK(r2.observation == r1.observation);
    CHECK(secret_of(r2.info) == s);
    CHECK(r1.observation.find(std::to_string(s) + ")") == std::string::npos);
  }
  CHECK(seen.size() == 20);
  const auto r = env.reset(1);
  CHECK(r.observation.starts_with(
      "I am thinking of a secret integer between 1 and 20 (inclusive). You have 10 turns"));
  CHECK(r.info.at("max_turns") == "10");
  CHECK(r.info.at("turn") == "0");
}

TEST_CASE("guess_number: scripted binary search always wins within ceil(log2(range + 1)) turns",
          "[env][tasks]") {
  for (const char* level : {"easy", "hard", "random"}) {
    auto env = xplor::env::make(std::string("game:GuessTheNumber-v0-") + level);
    std::set<int> highs;
    for (std::uint64_t seed = 0; seed < 300; ++seed) {
      const auto start = env->reset(seed);
      binary_search_policy policy;
      policy.start(start.observation);
      const int range = policy.hi - policy.lo + 1;
      highs.insert(policy.hi);
      CHECK(std::to_string(policy.hi) == start.info.at("high"));
      int turns = 0;
      float total = 0.0f;
      for (;;) {
        const step_result r = env->step(policy.act());
        ++turns;
        total += r.reward;
        if (r.terminated || r.truncated) {
          INFO(level << " seed " << seed);
          CHECK(r.terminated);
          CHECK_FALSE(r.truncated);
          CHECK(r.reward == 1.0f);
          CHECK(r.info.at("outcome") == "correct");
          CHECK(r.observation == "Correct! The secret number is " + start.info.at("secret") + ".");
          break;
        }
        CHECK(r.reward == 0.0f);
        policy.feedback(r.observation);
      }
      CHECK(turns <= ceil_log2(range + 1));
      CHECK(total == 1.0f);
    }
    if (std::string_view(level) == "random") CHECK(highs.size() > 30);
  }
}

TEST_CASE("guess_number: feedback text, invalid guesses and truncation", "[env][tasks]") {
  guess_number env;  // easy: [1, 20], 10 turns
  const int secret = secret_of(env.reset(5).info);
  const int wrong = secret == 1 ? 2 : 1;
  const step_result low = env.step(boxed(std::to_string(wrong)));
  if (wrong < secret) {
    CHECK(low.observation ==
          "The secret number is higher than " + std::to_string(wrong) + ". You have 9 turns left.");
    CHECK(low.info.at("outcome") == "higher");
  } else {
    CHECK(low.observation == "The secret number is lower than 2. You have 9 turns left.");
  }
  CHECK(low.reward == 0.0f);
  CHECK(low.info.at("guess") == std::to_string(wrong));
  CHECK(low.info.at("turn") == "1");

  const step_result none = env.step("I think it is 7");
  CHECK(none.reward == Approx(-0.1f));
  CHECK_FALSE(none.terminated);
  CHECK_FALSE(none.truncated);
  CHECK(none.info.at("outcome") == "invalid");
  CHECK(none.observation ==
        "Invalid guess: put one integer in \\boxed{}, e.g. \\boxed{10}. You have 8 turns left.");
  CHECK(env.step(boxed("seven")).info.at("outcome") == "invalid");
  CHECK(env.step(boxed("7.5")).info.at("outcome") == "invalid");
  const step_result far = env.step(boxed("1000"));
  CHECK(far.reward == Approx(-0.1f));
  CHECK(far.info.at("outcome") == "out_of_range");
  CHECK(far.observation == "Invalid guess: 1000 is outside the range 1 to 20. You have 5 turns left.");
  CHECK(env.step(boxed("-3")).info.at("outcome") == "out_of_range");
  // The last box counts: a correct guess inside an earlier box does not.
  CHECK(
      env.step("\\boxed{" + std::to_string(secret) + "} no, \\boxed{" + std::to_string(wrong) + "}").reward ==
      0.0f);
  for (int t = 7; t < 10; ++t) {
    const step_result r = env.step(boxed(std::to_string(wrong)));
    CHECK(r.reward == 0.0f);
    CHECK_FALSE(r.terminated);
    CHECK(r.truncated == (t == 9));
    if (t == 8) CHECK(r.observation.ends_with(" You have 1 turn left."));
    if (t == 9) CHECK(r.observation.ends_with(" You have no turns left."));
  }
  CHECK_THROWS_AS(env.step(boxed("1")), xplor::error);
  // A correct first guess.
  const int s2 = secret_of(env.reset(6).info);
  const step_result win = env.step("Let me guess: \\boxed{ " + std::to_string(s2) + " }");
  CHECK(win.reward == 1.0f);
  CHECK(win.terminated);
  CHECK_THROWS_AS(guess_number().step("x"), xplor::error);  // before reset
}

TEST_CASE("guess_number: options, presets and validation", "[env][tasks]") {
  CHECK(xplor::env::guess_number_level("hard").high == 100);
  CHECK(xplor::env::guess_number_level("hard").max_turns == 7);
  CHECK(xplor::env::guess_number_level("random").random_range);
  CHECK_THROWS_AS(xplor::env::guess_number_level("medium"), xplor::error);
  guess_number_options o;
  o.low = 5;
  o.high = 4;
  CHECK_THROWS_AS(guess_number(o), xplor::error);
  o.high = 5;
  o.max_turns = 0;
  CHECK_THROWS_AS(guess_number(o), xplor::error);
  o.max_turns = 1;
  guess_number single(o);
  CHECK(secret_of(single.reset(3).info) == 5);
  CHECK(single.step(boxed("5")).reward == 1.0f);
  // A wrong guess on the only turn truncates.
  o.high = 6;
  guess_number two(o);
  const int s = secret_of(two.reset(3).info);
  const step_result r = two.step(boxed(std::to_string(s == 5 ? 6 : 5)));
  CHECK(r.truncated);
  CHECK_FALSE(r.terminated);
}

TEST_CASE("guess_number: clones are independent copies", "[env][tasks]") {
  guess_number env;
  const int secret = secret_of(env.reset(11).info);
  const int wrong = secret == 1 ? 2 : 1;
  env.step(boxed(std::to_string(wrong)));
  std::unique_ptr<environment> copy = env.clone();
  CHECK(copy->id() == "game:GuessTheNumber-v0-easy");
  const step_result a = copy->step(boxed(std::to_string(secret)));
  CHECK(a.terminated);
  CHECK(a.info.at("turn") == "2");
  const step_result b = env.step(boxed(std::to_string(wrong)));  // the original goes on
  CHECK_FALSE(b.terminated);
  CHECK(b.info.at("turn") == "2");
  CHECK(secret_of(b.info) == secret);
  CHECK_THROWS_AS(copy->step(boxed("1")), xplor::error);
}

TEST_CASE("arithmetic: deterministic, exact answers, rewards", "[env][tasks]") {
  for (const char* spec : {"easy", "medium", "hard", "d1-n5-ops/", "d3-n2-ops+-*"}) {
    auto env = xplor::env::make(std::string("math:Arithmetic-v0-") + spec);
    auto* arith = dynamic_cast<xplor::env::arithmetic*>(env.get());
    REQUIRE(arith != nullptr);
    for (std::uint64_t seed = 0; seed < 50; ++seed) {
      const auto r = env->reset(seed);
      CHECK(env->reset(seed).observation == r.observation);
      const std::string answer = r.info.at("answer");
      const auto value = xplor::env::evaluate(r.info.at("expression"));
      REQUIRE(value.ok);
      CHECK(value.value.to_string() == answer);
      CHECK(r.observation.find(r.info.at("expression")) != std::string::npos);
      // Operand count and digits.
      int operands = 0;
      const std::string& e = arith->expression();
      for (std::size_t i = 0; i < e.size();) {
        if (e[i] >= '0' && e[i] <= '9') {
          std::size_t j = i;
          while (j < e.size() && e[j] >= '0' && e[j] <= '9') ++j;
          CHECK(static_cast<int>(j - i) == arith->options().digits);
          ++operands;
          i = j;
        } else {
          ++i;
        }
      }
      CHECK(operands == arith->options().terms);
      const step_result good = env->step(boxed(answer));
      CHECK(good.reward == 1.0f);
      CHECK(good.terminated);
      CHECK(good.info.at("correct") == "1");
      CHECK_THROWS_AS(env->step(boxed(answer)), xplor::error);
      env->reset(seed);
      CHECK(env->step(boxed(answer + "1")).reward == 0.0f);
      env->reset(seed);
      const step_result missing = env->step(answer);
      CHECK(missing.reward == 0.0f);
      CHECK(missing.terminated);
      CHECK(missing.info.count("extracted") == 0);
    }
  }
  // Fraction answers accept equivalent forms.
  xplor::env::arithmetic_options o;
  o.digits = 1;
  o.terms = 2;
  o.ops = "/";
  xplor::env::arithmetic div(o);
  bool fraction_seen = false;
  for (std::uint64_t seed = 0; seed < 50 && !fraction_seen; ++seed) {
    div.reset(seed);
    const xplor::env::rational v = xplor::env::evaluate(div.expression()).value;
    if (v.is_integer()) continue;
    fraction_seen = true;
    const std::string frac = "\\frac{" + std::to_string(v.num) + "}{" + std::to_string(v.den) + "}";
    CHECK(div.step(boxed(frac)).reward == 1.0f);
    div.reset(seed);
    CHECK(div.step(boxed(std::to_string(2 * v.num) + "/" + std::to_string(2 * v.den))).reward == 1.0f);
  }
  CHECK(fraction_seen);
}

TEST_CASE("arithmetic: specs and validation", "[env][tasks]") {
  const auto o = xplor::env::arithmetic_spec("d3-n4-ops+-");
  CHECK(o.digits == 3);
  CHECK(o.terms == 4);
  CHECK(o.ops == "+-");
  CHECK(xplor::env::arithmetic_spec("hard").ops == "+-*/");
  CHECK_THROWS_AS(xplor::env::arithmetic_spec("d0"), xplor::error);
  CHECK_THROWS_AS(xplor::env::arithmetic_spec("q3"), xplor::error);
  CHECK_THROWS_AS(xplor::env::make("math:Arithmetic-v0-d9-n3"), xplor::error);  // overflow risk
  CHECK_THROWS_AS(xplor::env::make("math:Arithmetic-v0-ops%"), xplor::error);
  CHECK_THROWS_AS(xplor::env::make("math:Arithmetic-v0-d"), xplor::error);
  CHECK_THROWS_AS(xplor::env::make("math:Arithmetic-v0"), xplor::error);
}

TEST_CASE("countdown: solvable instances, checked answers", "[env][tasks]") {
  for (const char* spec : {"easy", "medium", "hard", "n2-max5", "n6-max1000"}) {
    auto env = xplor::env::make(std::string("math:Countdown-v0-") + spec);
    auto* cd = dynamic_cast<xplor::env::countdown*>(env.get());
    REQUIRE(cd != nullptr);
    for (std::uint64_t seed = 0; seed < 60; ++seed) {
      const auto r = env->reset(seed);
      CHECK(env->reset(seed).observation == r.observation);
      INFO(spec << " seed " << seed << ": " << r.observation);
      CHECK(static_cast<int>(cd->numbers().size()) == cd->options().count);
      for (std::int64_t x : cd->numbers()) {
        CHECK(x >= 1);
        CHECK(x <= cd->options().max_number);
      }
      CHECK(cd->target() >= 1);
      const std::string solution = r.info.at("solution");
      CHECK(xplor::env::countdown_check(solution, cd->numbers(), cd->target()).empty());
      const step_result good = env->step(boxed(solution));
      CHECK(good.reward == 1.0f);
      CHECK(good.terminated);
      env->reset(seed);
      CHECK(env->step(boxed(solution + " = " + r.info.at("target"))).reward == 1.0f);
      env->reset(seed);
      const step_result off =
          env->step(boxed(solution + " + 1"));  // 1 may be a given number: then the sum is off
      CHECK(off.reward == 0.0f);
      CHECK(off.info.count("error") == 1);
    }
  }
  // Hand-made checks of the rules.
  const std::vector<std::int64_t> nums{3, 7, 2, 9};
  CHECK(xplor::env::countdown_check("(3 + 7) * 2", nums, 20).empty());
  CHECK(xplor::env::countdown_check("9 / 3 * (7 + 2) - 3", nums, 24).find("not among") != std::string::npos);
  CHECK(xplor::env::countdown_check("(3 + 7) * 2", nums, 21) == "the expression equals 20, not 21");
  CHECK(xplor::env::countdown_check("3 * 7 + 2 * 9", nums, 39).empty());
  CHECK(xplor::env::countdown_check("7 / 2 * 2", nums, 7).find("not among") != std::string::npos);  // 2 twice
  CHECK(xplor::env::countdown_check("(9 - 7 / 7)", nums, 8).find("not among") != std::string::npos);
  CHECK(xplor::env::countdown_check("3 ^ 2", nums, 9).find("not allowed") != std::string::npos);
  CHECK(xplor::env::countdown_check("3 ** 2", nums, 9).find("not allowed") != std::string::npos);
  CHECK(xplor::env::countdown_check("9 * 3.5", nums, 31).find("not allowed") != std::string::npos);
  CHECK(xplor::env::countdown_check("9 / (3 - 3)", {3, 3, 9}, 1).find("division by zero") !=
        std::string::npos);
  CHECK(xplor::env::countdown_check("9 / 2 * 2", {9, 2, 2}, 9).empty());  // exact intermediate fraction
  CHECK(xplor::env::countdown_check("", nums, 9).find("empty expression") != std::string::npos);
  // No box at all.
  xplor::env::countdown env;
  env.reset(1);
  const step_result none = env.step("I give up");
  CHECK(none.reward == 0.0f);
  CHECK(none.info.at("error") == "no \\boxed{} expression in the response");
}

TEST_CASE("strings: reverse and sort", "[env][tasks]") {
  auto rev = xplor::env::make("text:Reverse-v0-medium");
  auto srt = xplor::env::make("text:Sort-v0-len12");
  for (std::uint64_t seed = 0; seed < 40; ++seed) {
    const auto a = rev->reset(seed);
    const std::string s = a.info.at("string");
    CHECK(s.size() == 10);
    CHECK(rev->reset(seed).observation == a.observation);
    CHECK(a.info.at("answer") == std::string(s.rbegin(), s.rend()));
    CHECK(rev->step(boxed(std::string(s.rbegin(), s.rend()))).reward == 1.0f);
    rev->reset(seed);
    CHECK(rev->step("\\boxed{  " + std::string(s.rbegin(), s.rend()) + "\n}").reward == 1.0f);  // trimmed
    rev->reset(seed);
    if (s != std::string(s.rbegin(), s.rend())) CHECK(rev->step(boxed(s)).reward == 0.0f);

    const auto b = srt->reset(seed);
    std::string sorted = b.info.at("string");
    CHECK(sorted.size() == 12);
    for (char c : sorted) CHECK((c >= 'a' && c <= 'z'));
    std::sort(sorted.begin(), sorted.end());
    CHECK(b.info.at("answer") == sorted);
    CHECK(srt->step(boxed(sorted)).reward == 1.0f);
    srt->reset(seed);
    CHECK(srt->step(boxed(sorted.substr(1))).reward == 0.0f);
    srt->reset(seed);
    const step_result none = srt->step(sorted);
    CHECK(none.reward == 0.0f);
    CHECK(none.terminated);
  }
  CHECK_THROWS_AS(xplor::env::make("text:Sort-v0-len0"), xplor::error);
  CHECK_THROWS_AS(xplor::env::make("text:Sort-v0-size3"), xplor::error);
}

TEST_CASE("clones of single-turn tasks are independent", "[env][tasks]") {
  for (const char* id : {"math:Arithmetic-v0-medium", "math:Countdown-v0-easy", "text:Reverse-v0-easy"}) {
    auto env = xplor::env::make(id);
    const auto r = env->reset(42);
    auto copy = env->clone();
    CHECK(copy->id() == id);
    const std::string answer = r.info.count("solution") ? r.info.at("solution") : r.info.at("answer");
    CHECK(copy->step(boxed(answer)).reward == 1.0f);
    CHECK(env->step(boxed(answer)).reward == 1.0f);  // the original has not stepped yet
    env->reset(43);
    CHECK_THROWS_AS(copy->step(boxed(answer)), xplor::error);
  }
}

TEST_CASE("builtin registry: ids, prefixes and errors", "[env][tasks]") {
  const xplor::env::registry reg = xplor::env::builtin_registry();
  const std::vector<std::string> prefixes = reg.prefixes();
  const std::vector<std::string> expected{"game:GuessTheNumber-v0", "math:Arithmetic-v0", "math:Countdown-v0",
                                          "text:Reverse-v0", "text:Sort-v0"};
  CHECK(prefixes == expected);
  for (const char* id :
       {"game:GuessTheNumber-v0-easy", "game:GuessTheNumber-v0-hard", "game:GuessTheNumber-v0-random",
        "math:Arithmetic-v0-easy", "math:Arithmetic-v0-medium", "math:Arithmetic-v0-hard",
        "math:Arithmetic-v0-d2-n3-ops+-*/", "math:Countdown-v0-easy", "math:Countdown-v0-medium",
        "math:Countdown-v0-hard", "math:Countdown-v0-n4-max50", "text:Reverse-v0-easy",
        "text:Reverse-v0-hard", "text:Sort-v0-easy", "text:Sort-v0-len3"}) {
    auto env = reg.make(id);
    REQUIRE(env != nullptr);
    CHECK(env->id() == id);
    CHECK_FALSE(env->reset(0).observation.empty());
  }
  try {
    xplor::env::make("game:Wordle-v0-easy");
    FAIL("no throw");
  } catch (const xplor::error& e) {
    const std::string what = e.what();
    CHECK(what.find("game:Wordle-v0-easy") != std::string::npos);
    for (const auto& p : expected) CHECK(what.find(p) != std::string::npos);
  }
  CHECK_THROWS_AS(xplor::env::make("game:GuessTheNumber-v0-medium"), xplor::error);
  CHECK_THROWS_AS(xplor::env::make("game:GuessTheNumber-v0"), xplor::error);
  CHECK_THROWS_WITH(xplor::env::make("math:Countdown-v0-n9"), Catch::Contains("n = '9'"));
}
