// Prompt diversity for SFT data and chain-of-thought targets: the 1/(n+1) shares, held-out
// splits, random-word vocabularies, targets in the drawn words, the Fake environment.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <map>
#include <random>
#include <set>

#include "xplor/data/prompt_diversity.hpp"

using namespace xplor::data;
using xplor::env::prompt_split;

namespace {
/// Rewards the canonical answer "Up".
class say_up final : public xplor::env::environment {
 public:
  xplor::env::reset_result reset(std::uint64_t) override { return {"go up", {}}; }
  xplor::env::step_result step(std::string_view action) override {
    xplor::env::step_result r;
    r.reward = action == "Up" ? 1.0 : 0.0;
    r.terminated = true;
    return r;
  }
  std::unique_ptr<xplor::env::environment> clone() const override { return std::make_unique<say_up>(*this); }
  std::string id() const override { return "say_up"; }
};

prompt_diversity_options grid_options() {
  prompt_diversity_options o;
  o.prompts.templates = {"Move in the grid.\n{observation}\nAnswers: {actions}. {mapping}",
                         "{observation}\nPick one of {actions}. {mapping}",
                         "Grid: {observation} ({actions}) {mapping}"};
  o.prompts.held_out_templates = 1;
  o.prompts.canonical = sokoban_vocabularies()[0].words;
  for (std::size_t v = 1; v < 5; ++v) o.prompts.vocabularies.push_back(sokoban_vocabularies()[v].words);
  o.prompts.held_out_vocabularies = 1;  // "alphabetical" is for evaluation only
  o.seed = 42;
  return o;
}
}  // namespace

TEST_CASE("prompt diversity: the canonical words keep share 1/(n+1)", "[data][prompt]") {
  auto o = grid_options();
  o.word_pool = {"cat", "dog", "tree", "blue", "run", "sky", "apple", "stone", "wind", "ring"};
  o.random_vocabularies = 2;  // 3 fixed training alternatives + 2 random: n = 5
  const prompt_diversity_sampler s(o);
  std::map<std::size_t, int> count;
  std::map<std::size_t, int> templates;
  const int N = 60000;
  for (int i = 0; i < N; ++i) {
    const auto c = s.sample(static_cast<std::uint64_t>(i));
    ++count[c.vocabulary_index];
    ++templates[c.template_index];
    REQUIRE(c.vocabulary_index != 4);  // held out
    REQUIRE(c.template_index != 2);
    if (c.vocabulary_index == 5) {
      REQUIRE(c.words.size() == 4);
      REQUIRE(std::set<std::string>(c.words.begin(), c.words.end()).size() == 4);  // a bijection
    }
  }
  // Binomial 4-sigma bands: P = 1/6 per fixed vocabulary, 2/6 for the random ones.
  const double sd = std::sqrt(N * (1.0 / 6) * (5.0 / 6));
  for (std::size_t v = 0; v < 4; ++v) CHECK(std::abs(count[v] - N / 6.0) < 4 * sd);
  CHECK(std::abs(count[5] - N / 3.0) < 4 * std::sqrt(N * (1.0 / 3) * (2.0 / 3)));
  CHECK(std::abs(templates[0] - N / 2.0) < 4 * std::sqrt(N * 0.25));
  // Deterministic: the same example twice, a different seed differs somewhere.
  CHECK(s.sample(123).words == s.sample(123).words);
  CHECK(s.sample(123).vocabulary_index == s.sample(123).vocabulary_index);
  auto o2 = o;
  o2.seed = 43;
  const prompt_diversity_sampler s2(o2);
  int same = 0;
  for (int i = 0; i < 100; ++i) same += s2.sample(i).vocabulary_index == s.sample(i).vocabulary_index;
  CHECK(same < 60);

  // The evaluation split draws only the held-out template and vocabulary.
  o.prompts.split = prompt_split::eval;
  const prompt_diversity_sampler e(o);
  for (int i = 0; i < 200; ++i) {
    const auto c = e.sample(static_cast<std::uint64_t>(i));
    REQUIRE(c.template_index == 2);
    REQUIRE(c.vocabulary_index == 4);
  }
}

TEST_CASE("prompt diversity: prompts, targets, translation and validity", "[data][prompt]") {
  const prompt_diversity_sampler s(grid_options());
  xplor::env::prompt_choice canonical{0, 0, {}}, cardinal{1, 1, {}};
  CHECK(s.prompt(canonical, "#..G") == "Move in the grid.\n#..G\nAnswers: Up, Down, Left, Right. ");
  CHECK(s.prompt(cardinal, "#..G") ==
        "#..G\nPick one of North, South, West, East. North means Up, South means Down, West means Left, East "
        "means Right");
  const std::vector<std::size_t> moves{0, 3, 3};  // Up Right Right
  CHECK(s.target(cardinal, moves) == "<answer>North East East</answer>");
  const std::vector<std::string> steps{"(0,0)->(0,1)", "(0,1)->(1,1)", "(1,1)->(2,1)"};
  CHECK(s.target(cardinal, moves, steps, {cot_style::tags, true}) ==
        "<think>(0,0)->(0,1) (0,1)->(1,1) (1,1)->(2,1)</think> <answer>North East East</answer>");
  CHECK(s.translate(cardinal, "<answer>North East</answer>") == "<answer>Up Right</answer>");
  // A frozen-prompt answer in the old words is not read as the drawn actions.
  CHECK(s.translate(cardinal, "<answer>Up East right</answer>") == "<answer>__ Right _____</answer>");
  CHECK(s.translate(canonical, "<answer>Up</answer>") == "<answer>Up</answer>");
  const std::vector<std::string> said{"North", "Up"};
  CHECK(!s.valid_actions(cardinal, said));
  CHECK(s.valid_actions(canonical, std::vector<std::string>{"Up", "Left"}));
  xplor::env::prompt_choice random{0, 5, {"cat", "dog", "sky", "ring"}};
  CHECK(s.prompt(random, "x") ==
        "Move in the grid.\nx\nAnswers: cat, dog, sky, ring. cat means Up, dog means Down, "
        "sky means Left, ring means Right");
  CHECK(s.target(random, moves) == "<answer>cat ring ring</answer>");
  xplor::env::prompt_choice bad{0, 5, {"cat", "cat", "sky", "ring"}};
  CHECK_THROWS_WITH(s.prompt(bad, "x"), Catch::Contains("repeats the word 'cat'"));
  CHECK_THROWS_WITH(s.target(canonical, {7}), Catch::Contains("actions[0] = 7"));
}

TEST_CASE("prompt diversity: translation of random responses, old words blanked", "[data][prompt]") {
  // Responses of drawn words, canonical words in random case and filler: every drawn word becomes
  // its canonical word, every canonical word the draw does not use becomes underscores, the rest
  // is kept.
  const prompt_diversity_sampler s(grid_options());
  const auto& canonical = sokoban_vocabularies()[0].words;
  const std::vector<std::string> filler = {"go", "then", "Upper", "x", "DownUp", "3"};
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    // Cardinal or a permutation of the canonical words (which uses every canonical word).
    xplor::env::prompt_choice c{0, 1, {}};
    if (trial % 2) {
      c.words = canonical;
      std::shuffle(c.words.begin(), c.words.end(), rng);
    }
    const auto& drawn = c.words.empty() ? sokoban_vocabularies()[1].words : c.words;
    std::string response, expected;
    for (int t = 0; t < 8; ++t) {
      const std::string sep = t == 0 ? "" : (rng() % 2 ? " " : ", ");
      response += sep;
      expected += sep;
      const auto kind = rng() % 3;
      const auto k = static_cast<std::size_t>(rng() % 4);
      if (kind == 0) {
        response += drawn[k];
        expected += canonical[k];
      } else if (kind == 1) {
        std::string w = canonical[k];
        for (char& ch : w)
          if (rng() % 2) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        response += w;
        const auto at = std::find(drawn.begin(), drawn.end(), w);
        expected += at != drawn.end() ? canonical[static_cast<std::size_t>(at - drawn.begin())]
                                      : std::string(w.size(), '_');
      } else {
        const std::string& w = filler[rng() % filler.size()];
        response += w;
        expected += w;
      }
    }
    INFO(response);
    REQUIRE(s.translate(c, response) == expected);
  }
}

TEST_CASE("chain-of-thought targets: tags and the flagship's boxed form", "[data][cot]") {
  const std::vector<std::string> steps{"7+9+0=16", "4+8+1=13", "3+5+1=09"};
  CHECK(sft_target(steps, "936", {cot_style::boxed}) == "7+9+0=16 4+8+1=13 3+5+1=09 \\boxed{936}");
  CHECK(sft_target(steps, "936", {cot_style::boxed, false}) == "\\boxed{936}");
  CHECK(sft_target(steps, "936") == "<think>7+9+0=16 4+8+1=13 3+5+1=09</think> <answer>936</answer>");
  CHECK(sft_target({}, "936", {cot_style::tags, false}) == "<answer>936</answer>");
  CHECK_THROWS_WITH(sft_target({}, "936"), Catch::Contains("at least one step"));
  CHECK_THROWS_WITH(sft_target(steps, ""), Catch::Contains("the answer is empty"));
}

TEST_CASE("prompt diversity: bad options and the Fake environment", "[data][prompt][errors]") {
  auto o = grid_options();
  o.random_vocabularies = 1;
  o.word_pool = {"a", "b"};
  CHECK_THROWS_WITH(prompt_diversity_sampler(o), Catch::Contains("word_pool has 2 words"));
  o.word_pool = {"a", "b", "c", "a"};
  CHECK_THROWS_WITH(prompt_diversity_sampler(o), Catch::Contains("word_pool repeats 'a'"));
  o = grid_options();
  o.prompts.templates = {"no observation here"};
  o.prompts.held_out_templates = 0;
  CHECK_THROWS_WITH(prompt_diversity_sampler(o), Catch::Contains("has no {observation}"));

  // Fake: the prompt shows new words, the task still reads the canonical ones, so a model that
  // keeps answering in the old words is rewarded there and one that follows the prompt is not.
  xplor::env::prompt_variation_options p;
  p.templates = {"{observation} Answers: {actions}."};
  p.canonical = {"Up", "Down"};
  p.vocabularies = {{"North", "South"}};
  auto fake = fake_environment(std::make_unique<say_up>(), p);
  xplor::env::prompt_variation_wrapper honest(std::make_unique<say_up>(), p);
  int checked = 0;
  for (std::uint64_t seed = 0; seed < 40; ++seed) {
    const auto r = fake->reset(seed);
    CHECK(r.observation == honest.reset(seed).observation);
    if (honest.vocabulary_index() == 0) continue;
    ++checked;
    CHECK(r.observation == "go up Answers: North, South.");
    CHECK(fake->step("Up").reward == 1.0);  // the old word still works in Fake
    fake->reset(seed);
    CHECK(fake->step("North").reward == 0.0);  // following the prompt fails there
    honest.reset(seed);
    CHECK(honest.step("North").reward == 1.0);  // and succeeds where the words really changed
  }
  CHECK(checked > 5);
}
