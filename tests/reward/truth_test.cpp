#include "xplor/reward/truth.hpp"

#include <catch2/catch.hpp>
#include <random>
#include <string>
#include <utility>
#include <vector>

using xplor::reward::binary_ook_reward;
using xplor::reward::binary_reward;
using xplor::reward::classify_options;
using xplor::reward::classify_response;
using xplor::reward::outcome;
using xplor::reward::reward_variant;
using xplor::reward::ternary_ook_reward;
using xplor::reward::ternary_reward;
using xplor::reward::truth_metrics;
using xplor::reward::truth_reward;

namespace {
const std::vector<outcome> all_outcomes{outcome::correct, outcome::abstain, outcome::incorrect,
                                        outcome::no_answer};
}

TEST_CASE("reward values of every variant", "[truth]") {
  CHECK(ternary_reward(outcome::correct) == 1.0f);
  CHECK(ternary_reward(outcome::abstain) == 0.0f);
  CHECK(ternary_reward(outcome::incorrect) == -1.0f);
  CHECK(ternary_reward(outcome::no_answer) == -1.0f);
  CHECK(binary_reward(outcome::correct) == 1.0f);
  CHECK(binary_reward(outcome::abstain) == -1.0f);
  CHECK(binary_reward(outcome::incorrect) == -1.0f);
  CHECK(binary_reward(outcome::no_answer) == -1.0f);
  // Knowledge-enhanced: on an out-of-knowledge question only an abstention earns +1.
  CHECK(ternary_ook_reward(outcome::abstain, true) == 1.0f);
  CHECK(ternary_ook_reward(outcome::correct, true) == -1.0f);
  CHECK(ternary_ook_reward(outcome::incorrect, true) == -1.0f);
  CHECK(ternary_ook_reward(outcome::no_answer, true) == -1.0f);
  CHECK(binary_ook_reward(outcome::abstain, true) == 1.0f);
  CHECK(binary_ook_reward(outcome::correct, true) == -1.0f);
  for (outcome o : all_outcomes) {
    CHECK(ternary_ook_reward(o, false) == ternary_reward(o));
    CHECK(binary_ook_reward(o, false) == binary_reward(o));
    CHECK(truth_reward(o, reward_variant::ternary) == ternary_reward(o));
    CHECK(truth_reward(o, reward_variant::binary) == binary_reward(o));
    CHECK(truth_reward(o, reward_variant::ternary_ook, true) == ternary_ook_reward(o, true));
    CHECK(truth_reward(o, reward_variant::binary_ook, true) == binary_ook_reward(o, true));
  }
}

TEST_CASE("docs/methods.md 4.7 worked cases", "[truth]") {
  const std::vector<std::string> gold{"william shakespeare"};
  // \boxed{I don't know.} normalises to "i dont know": abstain, ternary 0, binary -1.
  const outcome idk = classify_response("I am not sure. \\boxed{I don't know.}", gold);
  CHECK(idk == outcome::abstain);
  CHECK(ternary_reward(idk) == 0.0f);
  CHECK(binary_reward(idk) == -1.0f);
  // On an out-of-knowledge question ternary_OOK gives +1.
  CHECK(ternary_ook_reward(idk, true) == 1.0f);
  // No box: -1 in every variant.
  const outcome none = classify_response("It was Shakespeare.", gold);
  CHECK(none == outcome::no_answer);
  for (bool ook : {false, true}) {
    CHECK(ternary_reward(none) == -1.0f);
    CHECK(binary_reward(none) == -1.0f);
    CHECK(ternary_ook_reward(none, ook) == -1.0f);
    CHECK(binary_ook_reward(none, ook) == -1.0f);
  }
  // "W. Shakespeare" fails the exact match and goes to the judge.
  std::vector<std::pair<std::string, std::string>> calls;
  auto judge = [&](std::string_view answer, std::string_view g) {
    calls.emplace_back(answer, g);
    return true;
  };
  CHECK(classify_response("\\boxed{W. Shakespeare}", gold, judge) == outcome::correct);
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].first == "W. Shakespeare");
  CHECK(calls[0].second == "william shakespeare");
  // Without a judge it is incorrect.
  CHECK(classify_response("\\boxed{W. Shakespeare}", gold) == outcome::incorrect);
}

TEST_CASE("classify_response: matching rules and judge calls", "[truth]") {
  std::vector<std::pair<std::string, std::string>> calls;
  bool verdict = false;
  classify_options options;
  options.judge = [&](std::string_view answer, std::string_view g) {
    calls.emplace_back(answer, g);
    return verdict;
  };
  const std::vector<std::string> golds{"Eiffel Tower", "la tour Eiffel", "0.5"};

  // Rule matches never call the judge.
  CHECK(classify_response("\\boxed{the eiffel tower}", golds, options) == outcome::correct);
  CHECK(classify_response("\\boxed{$\\frac{1}{2}$}", golds, options) == outcome::correct);
  CHECK(classify_response("\\boxed{50\\%}", golds, options) == outcome::correct);
  CHECK(classify_response("\\boxed{I don't know}", golds, options) == outcome::abstain);
  CHECK(classify_response("\\boxed{I DON'T KNOW, sorry}", golds, options) == outcome::abstain);
  CHECK(classify_response("no box", golds, options) == outcome::no_answer);
  CHECK(classify_response("\\boxed{}", golds, options) == outcome::incorrect);
  CHECK(classify_response("\\boxed{   }", golds, options) == outcome::incorrect);
  CHECK(classify_response("\\boxed{This is an invalid question.}", golds, options) == outcome::incorrect);
  CHECK(calls.empty());

  // Unmatched answers go to the judge, once per gold answer in order, until it says yes.
  CHECK(classify_response("\\boxed{ Tour Eiffel }", golds, options) == outcome::incorrect);
  REQUIRE(calls.size() == 3);
  CHECK(calls[0] == std::make_pair(std::string("Tour Eiffel"), std::string("Eiffel Tower")));
  CHECK(calls[1].second == "la tour Eiffel");
  CHECK(calls[2].second == "0.5");
  calls.clear();
  verdict = true;
  CHECK(classify_response("\\boxed{Tour Eiffel}", golds, options) == outcome::correct);
  CHECK(calls.size() == 1);

  // Between numbers the exact comparison decides: SQuAD normalisation would make 1.5 equal 15.
  const std::vector<std::string> fifteen{"15"};
  CHECK(classify_response("\\boxed{1.5}", fifteen) == outcome::incorrect);
  CHECK(classify_response("\\boxed{15.0}", fifteen) == outcome::correct);
  CHECK(xplor::reward::squad_normalize("1.5") == xplor::reward::squad_normalize("15"));

  // The last box counts.
  verdict = false;
  CHECK(classify_response("\\boxed{I don't know} no wait \\boxed{0.50}", golds, options) == outcome::correct);
  CHECK(classify_response("\\boxed{0.5} no wait \\boxed{I don't know}", golds, options) == outcome::abstain);
  CHECK(classify_response("\\boxed{0.5} no wait \\boxed{", golds, options) == outcome::no_answer);
}

TEST_CASE("classify_response: abstention phrases and invalid questions", "[truth]") {
  const std::vector<std::string> gold{"invalid question"};
  classify_options options;
  CHECK(classify_response("\\boxed{I'm not sure}", gold, options) == outcome::incorrect);
  options.abstention_phrases = {"I'm not sure", "cannot be determined"};
  CHECK(classify_response("\\boxed{I'm NOT sure.}", gold, options) == outcome::abstain);
  CHECK(classify_response("\\boxed{It cannot be determined}", gold, options) == outcome::abstain);
  CHECK(classify_response("\\boxed{I don't know}", gold, options) == outcome::incorrect);

  // "invalid question" is a miss in training (-1), even when the gold says so ...
  options = classify_options{};
  const outcome miss = classify_response("\\boxed{Invalid question.}", gold, options);
  CHECK(miss == outcome::incorrect);
  CHECK(ternary_reward(miss) == -1.0f);
  CHECK(binary_reward(miss) == -1.0f);
  // ... and is judged like any other answer when the option is off (the evaluation script).
  options.invalid_question_is_miss = false;
  CHECK(classify_response("\\boxed{Invalid question.}", gold, options) == outcome::correct);
  const std::vector<std::string> other{"paris"};
  CHECK(classify_response("\\boxed{Invalid question.}", other, options) == outcome::incorrect);
}

TEST_CASE("classify_response and rewards reject bad input", "[truth]") {
  const std::vector<std::string> none;
  CHECK_THROWS_WITH(classify_response("\\boxed{1}", none), Catch::Contains("gold_answers is empty"));
  classify_options options;
  options.abstention_phrases = {"i dont know", " ... "};
  const std::vector<std::string> gold{"1"};
  CHECK_THROWS_WITH(classify_response("\\boxed{1}", gold, options),
                    Catch::Contains("abstention_phrases[1]") && Catch::Contains("classify_response"));
  const auto bad = static_cast<outcome>(7);
  CHECK_THROWS_WITH(ternary_reward(bad), Catch::Contains("ternary_reward") && Catch::Contains("o = 7"));
  CHECK_THROWS_WITH(binary_reward(bad), Catch::Contains("o = 7"));
  CHECK_THROWS_WITH(ternary_ook_reward(bad, true), Catch::Contains("o = 7"));
  CHECK_THROWS_WITH(binary_ook_reward(bad, false), Catch::Contains("o = 7"));
  CHECK_THROWS_WITH(truth_reward(outcome::correct, static_cast<reward_variant>(9)),
                    Catch::Contains("variant = 9"));
  truth_metrics m;
  CHECK_THROWS_WITH(m.add(bad), Catch::Contains("o = 7"));
  CHECK_THROWS_AS(ternary_reward(bad), xplor::error);
}

TEST_CASE("truth_metrics: the worked example and the evaluation formulas", "[truth]") {
  truth_metrics m;
  for (int k = 0; k < 50; ++k) m.add(outcome::correct);
  for (int k = 0; k < 30; ++k) m.add(outcome::abstain);
  for (int k = 0; k < 20; ++k) m.add(outcome::incorrect);
  CHECK(m.total() == 100);
  CHECK(m.accuracy() == Approx(0.50));
  CHECK(m.abstention_rate() == Approx(0.30));
  CHECK(m.hallucination_rate() == Approx(0.20));
  CHECK(m.truthfulness() == Approx(0.30));
  CHECK((2.0 * 50 + 30 - 100) / 100 == Approx(m.truthfulness()));

  // No-box responses are hallucinations; the "exclude no boxed" rate leaves them out.
  truth_metrics n;
  n.add(outcome::correct);
  n.add(outcome::no_answer);
  n.add(outcome::incorrect);
  n.add(outcome::abstain);
  CHECK(n.hallucination_rate() == Approx(0.5));
  CHECK(n.hallucination_rate_excluding_no_answer() == Approx(0.25));
  CHECK(n.no_answer_rate() == Approx(0.25));
  CHECK(n.truthfulness() == Approx(-0.25));
  n += m;
  CHECK(n.total() == 104);
  CHECK(truth_metrics{}.accuracy() == 0.0);
  CHECK(truth_metrics{}.truthfulness() == 0.0);
}

TEST_CASE("truth_metrics: truthfulness is the mean ternary reward", "[truth][property]") {
  std::mt19937 gen(4242);
  std::uniform_int_distribution<int> pick(0, 3);
  std::uniform_int_distribution<int> size(1, 300);
  for (int trial = 0; trial < 200; ++trial) {
    truth_metrics m;
    double sum = 0.0;
    const int n = size(gen);
    for (int k = 0; k < n; ++k) {
      const outcome o = static_cast<outcome>(pick(gen));
      m.add(o);
      sum += ternary_reward(o);
      CHECK(ternary_reward(o) >= binary_reward(o));
      CHECK(ternary_ook_reward(o, true) >= -1.0f);
    }
    REQUIRE(m.total() == n);
    CHECK(m.truthfulness() == Approx(sum / n));
    CHECK(m.accuracy() + m.abstention_rate() + m.hallucination_rate() == Approx(1.0));
    CHECK(m.truthfulness() == Approx(m.accuracy() - m.hallucination_rate()));
  }
}

TEST_CASE("classify_response on random responses", "[truth][property]") {
  // Random answers around a numeric gold: the outcome agrees with answers_equivalent, and the
  // judge is consulted exactly when no rule matched.
  std::mt19937 gen(31337);
  std::uniform_int_distribution<int> value(0, 20);
  std::uniform_int_distribution<int> style(0, 4);
  const std::vector<std::string> gold{"10"};
  int judged = 0;
  classify_options options;
  options.judge = [&](std::string_view, std::string_view) {
    ++judged;
    return false;
  };
  for (int trial = 0; trial < 1000; ++trial) {
    const int v = value(gen);
    std::string answer = std::to_string(v);
    switch (style(gen)) {
      case 0:
        answer = "\\frac{" + std::to_string(2 * v) + "}{2}";
        break;
      case 1:
        answer = "$" + answer + "$";
        break;
      case 2:
        answer = answer + ".0";
        break;
      case 3:
        answer = "I don't know";
        break;
      default:
        break;
    }
    const bool box = trial % 7 != 0;
    const std::string response = "Reasoning... " + (box ? "\\boxed{" + answer + "}" : answer);
    const int before = judged;
    const outcome o = classify_response(response, gold, options);
    if (!box) {
      CHECK(o == outcome::no_answer);
    } else if (answer == "I don't know") {
      CHECK(o == outcome::abstain);
    } else if (v == 10) {
      CHECK(o == outcome::correct);
    } else {
      CHECK(o == outcome::incorrect);
      CHECK(judged == before + 1);
      continue;
    }
    CHECK(judged == before);
  }
}
