#include "xplor/search/deep_search.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "xplor/sample/rollout.hpp"
#include "xplor/sample/scripted_policy.hpp"
#include "xplor/search/collect.hpp"
#include "xplor/search/solution_cache.hpp"

using namespace xplor::search;
using xplor::sample::scripted_policy;

namespace {

/// Counts begin() calls and stepped tokens of a wrapped policy (prefix reuse checks).
struct counting_policy {
  using state_id = scripted_policy::state_id;
  scripted_policy& inner;
  int begins = 0;
  std::int64_t stepped = 0;
  std::int64_t vocab_size() const { return inner.vocab_size(); }
  state_id begin(std::span<const std::int32_t> p) {
    ++begins;
    return inner.begin(p);
  }
  std::vector<state_id> fork(state_id s, int n) { return inner.fork(s, n); }
  xplor::view2d<const float> logits(std::span<const state_id> s) { return inner.logits(s); }
  xplor::view2d<const float> step(std::span<const state_id> s, std::span<const std::int32_t> t) {
    stepped += static_cast<std::int64_t>(t.size());
    return inner.step(s, t);
  }
  void release(std::span<const state_id> s) { inner.release(s); }
};
static_assert(xplor::decode_policy<counting_policy>);

/// The toy problem: 3 steps of one token each; the right token at every step is 1, drawn with
/// probability p1 (the other 3 tokens share the rest). Correct = the response 1 1 1.
scripted_policy three_step_policy(float p1) {
  return scripted_policy(4, [p1](std::span<const std::int32_t>, std::span<float> out) {
    const float other = (1.0f - p1) / 3.0f;
    for (std::size_t v = 0; v < out.size(); ++v) out[v] = std::log(v == 1 ? p1 : other);
  });
}
outcome all_ones(std::span<const std::int32_t> r, bool) {
  for (std::int32_t t : r)
    if (t != 1) return outcome::incorrect;
  return r.size() == 3 ? outcome::correct : outcome::no_answer;
}
search_params three_step_params() {
  search_params p;
  p.max_depth = 3;
  p.chunk_tokens = 1;
  p.expansion_width = 4;
  p.num_trajectories = 6;
  p.max_nodes = 1024;
  return p;
}

}  // namespace

TEST_CASE("deep_search: a hand-traced search (values, trajectories, advantages)", "[search][driver]") {
  // Deterministic policy (top-k 1): every child draws token 2. Width 2, depth 2, 2 trajectories;
  // the verifier answers by call order: incorrect, correct, incorrect, incorrect.
  scripted_policy policy(4, [](std::span<const std::int32_t>, std::span<float> out) {
    for (std::size_t v = 0; v < out.size(); ++v) out[v] = v == 2 ? 1.0f : 0.0f;
  });
  search_params p;
  p.max_depth = 2;
  p.chunk_tokens = 1;
  p.expansion_width = 2;
  p.num_trajectories = 2;
  p.max_nodes = 16;
  p.sampling.top_k = 1;
  const outcome answers[] = {outcome::incorrect, outcome::correct, outcome::incorrect, outcome::incorrect};
  int calls = 0;
  auto verifier = [&](std::span<const std::int32_t> r, bool finished) {
    CHECK(r.size() == 2);
    CHECK_FALSE(finished);  // depth limit, no EOS
    return answers[calls++];
  };
  const std::vector<std::int32_t> prompt{0, 3};
  const search_result res = deep_search(policy, prompt, verifier, p, 1);
  // Root -> nodes 1, 2 (no terminal: one visit each, UCT ties -> node 1) -> 3, 4 terminal;
  // 4 is correct and is backed up (+1: w = 1, 2/3, 1/3); the frontier's only node is 2 -> 5, 6;
  // both incorrect with equal entropy -> 5 (lower id), backed up -1: node 2 gets -2/3, the
  // positive root stays 1/3.
  CHECK(calls == 4);
  CHECK(res.nodes == 7);
  CHECK(res.expansions == 3);
  CHECK_FALSE(res.exhausted);
  CHECK(res.tokens_generated == 6);
  REQUIRE(res.trajectories.size() == 2);
  const search_trajectory& a = res.trajectories[0];
  const search_trajectory& b = res.trajectories[1];
  CHECK(a.nodes == std::vector<std::int32_t>{1, 4});
  CHECK(b.nodes == std::vector<std::int32_t>{2, 5});
  CHECK(a.result == outcome::correct);
  CHECK(b.result == outcome::incorrect);
  CHECK(a.tokens == std::vector<std::int32_t>{2, 2});
  CHECK(a.segment_offsets == std::vector<std::int64_t>{0, 1, 2});
  REQUIRE(a.segment_q.size() == 2);
  CHECK(a.segment_q[0] == Approx(std::tanh(2.0 / 3.0)));
  CHECK(a.segment_q[1] == 1.0);
  CHECK(b.segment_q[0] == Approx(std::tanh(-2.0 / 3.0)));
  CHECK(b.segment_q[1] == -1.0);
  // mu = mean(+1, -1) = 0: advantages are the q-values, per token.
  CHECK(a.segment_advantages[0] == Approx(std::tanh(2.0 / 3.0)));
  CHECK(b.segment_advantages[1] == Approx(-1.0));
  CHECK(a.token_advantages == std::vector<float>{static_cast<float>(std::tanh(2.0 / 3.0)), 1.0f});
  CHECK(a.logprobs == std::vector<float>{0.0f, 0.0f});  // top-k 1: probability 1
  CHECK(policy.live_states() == 0);
}

TEST_CASE("deep_search: a one-node trace ends exhausted", "[search][driver]") {
  scripted_policy policy(3, [](std::span<const std::int32_t>, std::span<float> out) {
    for (std::size_t v = 0; v < out.size(); ++v) out[v] = v == 1 ? 1.0f : 0.0f;
  });
  search_params p;
  p.max_depth = 2;
  p.chunk_tokens = 1;
  p.expansion_width = 1;
  p.num_trajectories = 3;
  p.sampling.top_k = 1;
  const std::vector<std::int32_t> prompt{0};
  const auto res = deep_search(
      policy, prompt, [](auto, bool) { return outcome::correct; }, p, 5);
  // root -> 1 -> 2 (terminal, +1); nothing else can be expanded with width 1.
  CHECK(res.exhausted);
  REQUIRE(res.trajectories.size() == 1);
  CHECK(res.trajectories[0].segment_q[0] == Approx(std::tanh(2.0 / 3.0)));
  CHECK(res.trajectories[0].segment_advantages[0] == Approx(std::tanh(2.0 / 3.0) - 1.0));
  CHECK(policy.live_states() == 0);
}

TEST_CASE("deep_search: the lowest-entropy rule and correct-first pick the expected trajectory",
          "[search][driver]") {
  // One level (max_depth 1), chunks of 4 tokens: token 0 has p = 0.8, token 1 p = 0.2, so a
  // response's mean -log p falls with its number of zeros. Every child is terminal; the verifier
  // records all responses.
  const double lp0 = std::log(0.8), lp1 = std::log(0.2);
  scripted_policy policy(2, [&](std::span<const std::int32_t>, std::span<float> out) {
    out[0] = static_cast<float>(lp0);
    out[1] = static_cast<float>(lp1);
  });
  search_params p;
  p.max_depth = 1;
  p.chunk_tokens = 4;
  p.expansion_width = 8;
  p.num_trajectories = 1;
  const std::vector<std::int32_t> prompt{0};
  auto ones = [](std::span<const std::int32_t> r) {
    int n = 0;
    for (auto t : r) n += t;
    return n;
  };
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    std::vector<std::vector<std::int32_t>> seen;
    auto record_incorrect = [&](std::span<const std::int32_t> r, bool) {
      seen.emplace_back(r.begin(), r.end());
      return outcome::incorrect;
    };
    const auto res = deep_search(policy, prompt, record_incorrect, p, seed);
    REQUIRE(seen.size() == 8);
    int fewest = 5;
    for (const auto& r : seen) fewest = std::min(fewest, ones(r));
    REQUIRE(res.trajectories.size() == 1);
    CHECK(ones(res.trajectories[0].tokens) == fewest);  // lowest mean entropy = most zeros
    const double expected = -(fewest * lp1 + (4 - fewest) * lp0) / 4.0;
    CHECK(res.trajectories[0].mean_entropy == Approx(expected).epsilon(1e-6));

    // Correct first: responses with at least one 1 are correct; among them the fewest ones wins.
    seen.clear();
    auto some_one_correct = [&](std::span<const std::int32_t> r, bool) {
      seen.emplace_back(r.begin(), r.end());
      return ones(r) > 0 ? outcome::correct : outcome::incorrect;
    };
    const auto res2 = deep_search(policy, prompt, some_one_correct, p, seed);
    int fewest_positive = 5;
    for (const auto& r : seen)
      if (ones(r) > 0) fewest_positive = std::min(fewest_positive, ones(r));
    if (fewest_positive < 5) {
      CHECK(res2.trajectories[0].result == outcome::correct);
      CHECK(ones(res2.trajectories[0].tokens) == fewest_positive);
    }
  }
}

TEST_CASE("deep_search finds the correct path more often than plain sampling at equal budget",
          "[search][driver][property]") {
  // p(correct) per independent sample = 0.3^3 = 2.7%. Six trajectories per prompt either way;
  // the search also spends its extra expansions on partial paths, which is its point.
  auto policy = three_step_policy(0.3f);
  const auto p = three_step_params();
  const std::vector<std::int32_t> prompt{0};
  int search_hits = 0, sample_hits = 0;
  const int trials = 200;
  for (int s = 0; s < trials; ++s) {
    const auto res = deep_search(policy, prompt, all_ones, p, static_cast<std::uint64_t>(s));
    bool hit = false;
    for (const auto& tr : res.trajectories) {
      hit = hit || tr.result == outcome::correct;
      if (tr.result == outcome::correct) {
        // The sign constraint: every node on a correct path keeps a non-negative value.
        for (double q : tr.segment_q) CHECK(q >= 0.0);
      }
    }
    search_hits += hit;
    xplor::sample::sampling_params sp;
    sp.max_completion_length = 3;
    const std::vector<std::vector<std::int32_t>> prompts{prompt};
    const int counts[] = {p.num_trajectories};
    const auto batch = xplor::sample::generate(policy, prompts, counts, sp, static_cast<std::uint64_t>(s));
    bool sampled = false;
    for (std::int64_t c = 0; c < batch.num_completions(); ++c)
      sampled = sampled || all_ones(batch.completion(c), false) == outcome::correct;
    sample_hits += sampled;
  }
  INFO("search found the path in " << search_hits << " of " << trials << ", sampling in " << sample_hits);
  CHECK(search_hits > 2 * sample_hits);
  CHECK(policy.live_states() == 0);
}

TEST_CASE("deep_search finds the known correct path of a scripted policy", "[search][driver]") {
  // The right token has p = 0.5 at each of the 3 steps: 8 independent samples contain 1 1 1 with
  // probability 1 - (7/8)^8 = 66%. The search (width 4, 8 trajectories) finds it in 42 of these
  // 50 seeds (84%), and reports it as a correct trajectory with the +1 terminal score.
  auto policy = three_step_policy(0.5f);
  auto p = three_step_params();
  p.num_trajectories = 8;
  const std::vector<std::int32_t> prompt{0};
  int found = 0;
  for (std::uint64_t seed = 0; seed < 50; ++seed) {
    const auto res = deep_search(policy, prompt, all_ones, p, seed);
    for (const auto& tr : res.trajectories)
      if (tr.result == outcome::correct) {
        CHECK(tr.tokens == std::vector<std::int32_t>{1, 1, 1});
        CHECK(tr.score == 1.0);
        CHECK(tr.segment_q.back() == 1.0);
        ++found;
        break;
      }
  }
  INFO("found in " << found << " of 50 searches");
  CHECK(found >= 40);
}

TEST_CASE("deep_search expands through forks: one prefill, no prefix recomputed", "[search][driver]") {
  auto inner = three_step_policy(0.3f);
  counting_policy policy{inner};
  const std::vector<std::int32_t> prompt{0, 2, 3, 1};
  const auto res = deep_search(policy, prompt, all_ones, three_step_params(), 9);
  CHECK(policy.begins == 1);
  // Every generated token is stepped into a state at most once (terminal nodes' last ones never).
  CHECK(policy.stepped <= res.tokens_generated);
  CHECK(policy.stepped > 0);
  CHECK(inner.live_states() == 0);
}

TEST_CASE("deep_search with delimiter steps and EOS", "[search][driver]") {
  // Vocabulary: 0-3 words, 4 = step delimiter, 5 = EOS.
  scripted_policy policy(6, [](std::span<const std::int32_t> h, std::span<float> out) {
    for (std::size_t v = 0; v < out.size(); ++v) out[v] = 0.0f;
    out[5] = h.size() > 12 ? 3.0f : -2.0f;
  });
  search_params p;
  p.max_depth = 8;
  p.chunk_tokens = 5;
  p.step_delimiters = {4};
  p.sampling.eos_token = 5;
  p.expansion_width = 3;
  p.num_trajectories = 4;
  const std::vector<std::int32_t> prompt{0};
  int eos_endings = 0;
  const auto res = deep_search(
      policy, prompt,
      [&](std::span<const std::int32_t> r, bool finished) {
        eos_endings += finished;
        if (finished) CHECK(r.back() == 5);
        return finished ? outcome::incorrect : outcome::no_answer;
      },
      p, 3);
  REQUIRE(res.trajectories.size() == 4);
  CHECK(eos_endings > 0);
  for (const auto& tr : res.trajectories) {
    for (std::size_t j = 0; j + 1 < tr.nodes.size(); ++j) {
      const auto len = tr.segment_offsets[j + 1] - tr.segment_offsets[j];
      const bool ends_at_delimiter = tr.tokens[static_cast<std::size_t>(tr.segment_offsets[j + 1] - 1)] == 4;
      CHECK((len == 5 || ends_at_delimiter));
      CHECK(len <= 5);
    }
    CHECK(tr.token_advantages.size() == tr.tokens.size());
    CHECK(tr.logprobs.size() == tr.tokens.size());
  }
  CHECK(policy.live_states() == 0);
}

TEST_CASE("deep_search caps the response at max_response_tokens", "[search][driver]") {
  auto policy = three_step_policy(0.5f);
  search_params p;
  p.max_depth = 64;
  p.chunk_tokens = 4;
  p.max_response_tokens = 10;  // nodes of 4, 4, then 2 tokens
  p.expansion_width = 2;
  p.num_trajectories = 3;
  const std::vector<std::int32_t> prompt{0};
  int graded = 0;
  const auto res = deep_search(
      policy, prompt,
      [&](std::span<const std::int32_t> r, bool finished) {
        ++graded;
        CHECK(r.size() == 10);
        CHECK_FALSE(finished);
        return outcome::no_answer;
      },
      p, 2);
  CHECK(graded > 0);
  REQUIRE(res.trajectories.size() == 3);
  for (const auto& tr : res.trajectories) {
    CHECK(tr.segment_offsets == std::vector<std::int64_t>{0, 4, 8, 10});
    CHECK(tr.score == p.no_answer_score);
  }
  CHECK(policy.live_states() == 0);
  p.max_response_tokens = -1;
  CHECK_THROWS_WITH(deep_search(policy, prompt, all_ones, p, 1), Catch::Contains("max_response_tokens = -1"));
}

TEST_CASE("deep_search is reproducible and deep_search_batch is thread-independent", "[search][driver]") {
  auto policy = three_step_policy(0.4f);
  auto p = three_step_params();
  std::vector<std::vector<std::int32_t>> prompts;
  for (int i = 0; i < 7; ++i) prompts.push_back({0, static_cast<std::int32_t>(i % 4)});
  auto make = [] { return three_step_policy(0.4f); };
  auto verify = [](std::size_t, std::span<const std::int32_t> r, bool f) { return all_ones(r, f); };
  const auto one = deep_search_batch(make, prompts, verify, p, 11, 1);
  const auto two = deep_search_batch(make, prompts, verify, p, 11, 3);
  REQUIRE(one.size() == prompts.size());
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const auto direct = deep_search(policy, prompts[i], all_ones, p, 11, static_cast<std::uint32_t>(i));
    REQUIRE(one[i].trajectories.size() == direct.trajectories.size());
    REQUIRE(two[i].trajectories.size() == direct.trajectories.size());
    for (std::size_t k = 0; k < direct.trajectories.size(); ++k) {
      CHECK(one[i].trajectories[k].tokens == direct.trajectories[k].tokens);
      CHECK(two[i].trajectories[k].tokens == direct.trajectories[k].tokens);
      CHECK(two[i].trajectories[k].token_advantages == direct.trajectories[k].token_advantages);
    }
    CHECK(one[i].nodes == direct.nodes);
  }
  // Different streams differ.
  const auto s0 = deep_search(policy, prompts[0], all_ones, p, 11, 0);
  const auto s1 = deep_search(policy, prompts[0], all_ones, p, 11, 1);
  bool differ = false;
  for (std::size_t k = 0; k < std::min(s0.trajectories.size(), s1.trajectories.size()); ++k)
    differ = differ || s0.trajectories[k].tokens != s1.trajectories[k].tokens;
  CHECK(differ);
}

TEST_CASE("deep_search: capacity and bad input are xplor::errors, states released",
          "[search][driver][errors]") {
  auto policy = three_step_policy(0.05f);
  const std::vector<std::int32_t> prompt{0};
  auto p = three_step_params();
  p.max_nodes = 10;  // root + 4 + 4 fits, the third expansion does not
  p.num_trajectories = 8;
  CHECK_THROWS_WITH(deep_search(policy, prompt, all_ones, p, 1),
                    Catch::Contains("the tree is full") && Catch::Contains("max_nodes = 10"));
  CHECK(policy.live_states() == 0);

  auto bad = [&](auto mutate, const char* what) {
    auto q = three_step_params();
    mutate(q);
    CHECK_THROWS_WITH(deep_search(policy, prompt, all_ones, q, 1), Catch::Contains(what));
  };
  bad([](search_params& q) { q.max_depth = 0; }, "max_depth = 0");
  bad([](search_params& q) { q.chunk_tokens = -1; }, "chunk_tokens = -1");
  bad([](search_params& q) { q.expansion_width = 0; }, "expansion_width = 0");
  bad([](search_params& q) { q.num_trajectories = 0; }, "num_trajectories = 0");
  bad([](search_params& q) { q.backup_floor = 1.5; }, "backup_floor = 1.5");
  bad([](search_params& q) { q.adv_temperature = 0; }, "adv_temperature = 0");
  bad([](search_params& q) { q.sampling.repetition_penalty = 1.2f; }, "repetition_penalty");
  bad([](search_params& q) { q.sampling.temperature = 0; }, "temperature");
  bad([](search_params& q) { q.step_delimiters = {9}; }, "step delimiter 9");
  bad([](search_params& q) { q.sampling.eos_token = 4; }, "eos_token = 4");
  CHECK_THROWS_WITH(deep_search(policy, std::vector<std::int32_t>{}, all_ones, three_step_params(), 1),
                    Catch::Contains("prompt is empty"));
  // A verifier that throws: the error propagates, the states are released.
  CHECK_THROWS_WITH(
      deep_search(
          policy, prompt,
          [](std::span<const std::int32_t>, bool) -> outcome { throw std::runtime_error("grader down"); },
          three_step_params(), 1),
      Catch::Contains("grader down"));
  CHECK(policy.live_states() == 0);
  auto make = [] { return three_step_policy(0.3f); };
  const std::vector<std::vector<std::int32_t>> prompts{{0}, {}};
  CHECK_THROWS_WITH(
      deep_search_batch(
          make, prompts, [](std::size_t, std::span<const std::int32_t> r, bool f) { return all_ones(r, f); },
          three_step_params(), 1, 2),
      Catch::Contains("prompt is empty"));
}

TEST_CASE("solution cache: JSONL round trip, atomic save, corrupted lines", "[search][cache]") {
  const auto dir =
      std::filesystem::temp_directory_path() / ("xplor_cache_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / "cache.jsonl";
  solution_cache cache(2);
  CHECK(cache.add("p1", std::vector<std::int32_t>{1, 2, 3}));
  CHECK_FALSE(cache.add("p1", std::vector<std::int32_t>{1, 2, 3}));  // duplicate
  CHECK(cache.add("p1", std::vector<std::int32_t>{4}));
  CHECK_FALSE(cache.add("p1", std::vector<std::int32_t>{5}));   // full
  CHECK(cache.add("q\"2\n", std::vector<std::int32_t>{7, 8}));  // ids are any string
  CHECK_THROWS_WITH(cache.add("", std::vector<std::int32_t>{1}), Catch::Contains("id is empty"));
  CHECK_THROWS_WITH(cache.add("x", std::vector<std::int32_t>{}), Catch::Contains("is empty"));
  CHECK_THROWS_WITH(cache.add("x", std::vector<std::int32_t>{3, -1}), Catch::Contains("token 1"));
  cache.save(path);
  {
    std::ifstream in(path);
    std::string first;
    std::getline(in, first);
    CHECK(first == R"({"id":"p1","solutions":[[1,2,3],[4]]})");
  }
  solution_cache back(2);
  back.load(path);
  CHECK(back.problems() == 2);
  CHECK(back.solutions("p1").size() == 2);
  CHECK(back.solutions("q\"2\n")[0] == std::vector<std::int32_t>{7, 8});
  CHECK(back.solutions("missing").empty());

  // Saving again replaces the file whole and leaves no temp file behind.
  back.add("p3", std::vector<std::int32_t>{9});
  back.save(path);
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++files;
  CHECK(files == 1);

  // Corrupted lines: an error naming the line; the cache is unchanged.
  auto corrupt = [&](const std::string& line3, const char* what) {
    const auto bad = dir / "bad.jsonl";
    {
      std::ofstream out(bad);
      out << R"({"id":"a","solutions":[[1]]})"
          << "\n\n"
          << line3 << "\n"
          << R"({"id":"b","solutions":[[2]]})"
          << "\n";
    }
    solution_cache c;
    c.add("keep", std::vector<std::int32_t>{1});
    CHECK_THROWS_WITH(c.load(bad), Catch::Contains("line 3") && Catch::Contains(what));
    CHECK(c.problems() == 1);
    CHECK(c.contains("keep"));
    CHECK_FALSE(c.contains("a"));
    std::filesystem::remove(bad);
  };
  corrupt(R"({"id":"c","solutions":[[1,2])", "not valid JSON");
  corrupt(R"({"id":"c"})", "exactly the keys");
  corrupt(R"({"id":7,"solutions":[[1]]})", "\"id\"");
  corrupt(R"({"id":"c","solutions":[]})", "non-empty array");
  corrupt(R"({"id":"c","solutions":[[1,-2]]})", "a token of 'c'");
  corrupt(R"({"id":"c","solutions":[[1.5]]})", "a token of 'c'");
  // Hostile lines: each an error naming the line, never a crash or a foreign exception.
  corrupt(R"({"id":"c","solutions":[[1e999]]})", "not valid JSON");  // nlohmann's out_of_range
  corrupt(R"({"id":"c","solutions":[[18446744073709551615]]})", "a token of 'c'");
  corrupt(R"({"id":"c","id":"d","solutions":[[1]]})", "the key \"id\" appears more than once");
  corrupt(std::string(R"({"id":"c","solutions":[[1]]})") + '\0' + "junk", "a NUL byte at offset 28");
  corrupt(R"({"id":"c","solutions":)" + std::string(100000, '[') + std::string(100000, ']') + "}",
          "nesting deeper than 4 at offset 25");
  corrupt(R"({"id":")" + std::string(1 << 20, 'x') + R"(","solutions":[[-1]]})", "a token of 'xxx");
  CHECK_THROWS_WITH(back.load(dir / "missing.jsonl"), Catch::Contains("cannot open"));
  CHECK_THROWS_WITH(back.save(dir / "no_such_dir" / "c.jsonl"), Catch::Contains("cannot create"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("collect_round: searched prompts fill the cache, cached prompts skip the search",
          "[search][cache]") {
  auto make = [] { return three_step_policy(0.5f); };
  const std::vector<std::vector<std::int32_t>> prompts{{0}, {1}, {2}};
  const std::vector<std::string> ids{"a", "b", "c"};
  auto verify = [](std::size_t, std::span<const std::int32_t> r, bool f) { return all_ones(r, f); };
  solution_cache cache;
  cache.add("c", std::vector<std::int32_t>{1, 1, 1});
  const auto p = three_step_params();
  const auto round1 =
      collect_round(make, prompts, ids, verify, cache, p, 4, {.threads = 2, .cached_per_prompt = 1});
  CHECK_FALSE(round1[0].from_cache);
  CHECK(round1[2].from_cache);
  REQUIRE(round1[2].trajectories.size() == static_cast<std::size_t>(p.num_trajectories));
  const auto& first = round1[2].trajectories[0];
  CHECK(first.tokens == std::vector<std::int32_t>{1, 1, 1});
  CHECK(first.result == outcome::correct);
  CHECK(first.logprobs.size() == 3);
  CHECK(first.logprobs[0] == Approx(std::log(0.5)));
  CHECK(first.segment_offsets == std::vector<std::int64_t>{0, 3});
  double mu = 0;
  for (const auto& tr : round1[2].trajectories) mu += tr.score;
  mu /= static_cast<double>(p.num_trajectories);
  CHECK(first.token_advantages[2] == Approx(1.0 - mu));
  // What the search found correct is in the cache now, and the next round uses it.
  for (std::size_t i = 0; i < 2; ++i) {
    bool found = false;
    for (const auto& tr : round1[i].trajectories) found = found || tr.result == outcome::correct;
    CHECK(cache.contains(ids[i]) == found);
  }
  const auto round2 = collect_round(make, prompts, ids, verify, cache, p, 4);
  for (std::size_t i = 0; i < 3; ++i) CHECK(round2[i].from_cache == cache.contains(ids[i]));
  // Thread-independent.
  solution_cache c1, c2;
  const auto x = collect_round(make, prompts, ids, verify, c1, p, 8, {.threads = 1});
  const auto y = collect_round(make, prompts, ids, verify, c2, p, 8, {.threads = 3});
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t k = 0; k < x[i].trajectories.size(); ++k)
      CHECK(x[i].trajectories[k].tokens == y[i].trajectories[k].tokens);
  CHECK_THROWS_WITH(collect_round(make, prompts, std::vector<std::string>{"a"}, verify, cache, p, 4),
                    Catch::Contains("ids has 1 elements for 3 prompts"));
}

TEST_CASE("deep_search: the backup and frontier rules are parameters", "[search][driver]") {
  const search_params defaults = three_step_params();
  auto run = [](const search_params& p) {
    scripted_policy policy = three_step_policy(0.4f);
    return deep_search(policy, std::vector<std::int32_t>{0}, all_ones, p, 17);
  };
  const search_result base = run(defaults);
  // The default rules written out as functors give the same search, token for token.
  search_params spelled = defaults;
  int backups = 0;
  int frontier_calls = 0;
  spelled.backup_rule = [&](double value, double v, int depth, int traj_len) {
    ++backups;
    return decayed_constrained_backup{defaults.backup_floor}(value, v, depth, traj_len);
  };
  spelled.frontier_rule = [&](double qp, double q, double h, int d) {
    ++frontier_calls;
    frontier_params fp = defaults.frontier;
    fp.max_depth = defaults.max_depth;
    return frontier_score(qp, q, h, d, fp);
  };
  const search_result same = run(spelled);
  REQUIRE(same.trajectories.size() == base.trajectories.size());
  int path_nodes = 0;
  for (std::size_t i = 0; i < base.trajectories.size(); ++i) {
    CHECK(same.trajectories[i].tokens == base.trajectories[i].tokens);
    CHECK(same.trajectories[i].segment_q == base.trajectories[i].segment_q);
    path_nodes += static_cast<int>(base.trajectories[i].nodes.size()) + 1;  // + the root
  }
  CHECK(backups == path_nodes);  // the rule updates every node on every backed-up path
  CHECK(frontier_calls > 0);
  // A rule that never changes values leaves every non-terminal segment at tanh(0) = 0.
  search_params frozen = defaults;
  frozen.backup_rule = [](double value, double, int, int) { return value; };
  for (const search_trajectory& tr : run(frozen).trajectories)
    for (std::size_t j = 0; j + 1 < tr.segment_q.size(); ++j) CHECK(tr.segment_q[j] == 0.0);
}

TEST_CASE("deep_search: advantages follow rl::advantage_options (mean-only, or by std)", "[search][driver]") {
  search_params p = three_step_params();
  p.advantages.scale = xplor::rl::scale_rewards::group;  // the code's norm_adv_by_std_in_grpo
  scripted_policy policy = three_step_policy(0.4f);
  const search_result r = deep_search(policy, std::vector<std::int32_t>{0}, all_ones, p, 23);
  double mean = 0.0, var = 0.0;
  for (const auto& tr : r.trajectories) mean += tr.score;
  mean /= static_cast<double>(r.trajectories.size());
  for (const auto& tr : r.trajectories) var += (tr.score - mean) * (tr.score - mean);
  const double sd = std::sqrt(var / static_cast<double>(r.trajectories.size()));  // population
  for (const auto& tr : r.trajectories)
    for (std::size_t j = 0; j < tr.segment_q.size(); ++j)
      CHECK(tr.segment_advantages[j] == Approx((tr.segment_q[j] - mean) / (sd + 1e-6)).epsilon(1e-9));
  search_params batch = three_step_params();
  batch.advantages.scale = xplor::rl::scale_rewards::batch;
  CHECK_THROWS_WITH(deep_search(policy, std::vector<std::int32_t>{0}, all_ones, batch, 23),
                    Catch::Contains("advantages.scale = batch"));
}
