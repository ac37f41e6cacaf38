// deep_search_lockstep: B searches in lockstep (one decode batch per token position for all of
// them, the trees in one tree_batch) give exactly the searches deep_search runs one at a time.
#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include "xplor/model/decode.hpp"
#include "xplor/model/transformer.hpp"
#include "xplor/sample/scripted_policy.hpp"
#include "xplor/search/deep_search.hpp"

using namespace xplor::search;
using xplor::sample::scripted_policy;

namespace {

void require_same(const search_result& a, const search_result& b) {
  REQUIRE(a.nodes == b.nodes);
  REQUIRE(a.tokens_generated == b.tokens_generated);
  REQUIRE(a.expansions == b.expansions);
  REQUIRE(a.exhausted == b.exhausted);
  REQUIRE(a.trajectories.size() == b.trajectories.size());
  for (std::size_t k = 0; k < a.trajectories.size(); ++k) {
    const search_trajectory &x = a.trajectories[k], &y = b.trajectories[k];
    INFO("trajectory " << k);
    REQUIRE(x.tokens == y.tokens);
    REQUIRE(x.logprobs == y.logprobs);
    REQUIRE(x.nodes == y.nodes);
    REQUIRE(x.segment_offsets == y.segment_offsets);
    REQUIRE(x.segment_q == y.segment_q);
    REQUIRE(x.segment_advantages == y.segment_advantages);
    REQUIRE(x.token_advantages == y.token_advantages);
    REQUIRE(x.result == y.result);
    REQUIRE(x.mean_entropy == y.mean_entropy);
  }
}

/// Vocabulary 0-5: 4 ends a step, 5 is EOS, more likely as the history grows; the other tokens'
/// odds depend on the whole history, so every prompt searches differently.
scripted_policy history_policy() {
  return scripted_policy(6, [](std::span<const std::int32_t> h, std::span<float> out) {
    std::uint32_t hash = 17;
    for (std::int32_t t : h) hash = hash * 31u + static_cast<std::uint32_t>(t);
    for (std::size_t v = 0; v < 4; ++v) out[v] = 0.3f * static_cast<float>((hash >> (3 * v)) % 7);
    out[4] = 0.5f;
    out[5] = h.size() > 10 ? 1.5f : -3.0f;
  });
}
outcome by_parity(std::span<const std::int32_t> r, bool finished) {
  if (!finished) return outcome::no_answer;
  std::int32_t sum = 0;
  for (std::int32_t t : r) sum += t;
  return sum % 3 == 0 ? outcome::correct : outcome::incorrect;
}

}  // namespace

TEST_CASE("deep_search_lockstep equals one deep_search per prompt", "[search][lockstep]") {
  search_params p;
  p.max_depth = 6;
  p.chunk_tokens = 3;
  p.step_delimiters = {4};
  p.sampling.eos_token = 5;
  p.expansion_width = 3;
  p.num_trajectories = 5;
  p.max_nodes = 512;
  std::vector<std::vector<std::int32_t>> prompts;
  for (int i = 0; i < 9; ++i) prompts.push_back(std::vector<std::int32_t>(1 + i % 3, i % 4));
  auto verify = [](std::size_t, std::span<const std::int32_t> r, bool f) { return by_parity(r, f); };
  for (int threads : {1, 2}) {
    auto policy = history_policy();
    const auto batch = deep_search_lockstep(policy, prompts, verify, p, 21, xplor::cpu_t{threads});
    CHECK(policy.live_states() == 0);
    REQUIRE(batch.size() == prompts.size());
    bool collected = false;
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      INFO("threads " << threads << ", prompt " << i);
      auto alone = history_policy();
      require_same(batch[i], deep_search(alone, prompts[i], by_parity, p, 21, static_cast<std::uint32_t>(i)));
      collected = collected || static_cast<int>(batch[i].trajectories.size()) == p.num_trajectories;
    }
    CHECK(collected);  // the searches did not all stop early
  }
}

TEST_CASE("deep_search_lockstep with the reference transformer equals per-prompt searches",
          "[search][lockstep]") {
  xplor::model::transformer_config c;
  c.vocab_size = 12;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 64;
  c.max_seq_len = 64;
  const xplor::model::transformer model(c, 3);
  search_params p;
  p.max_depth = 5;
  p.chunk_tokens = 4;
  p.step_delimiters = {10};
  p.sampling.eos_token = 11;
  p.expansion_width = 4;
  p.num_trajectories = 6;
  p.max_nodes = 1024;
  std::vector<std::vector<std::int32_t>> prompts;
  for (int i = 0; i < 6; ++i) {
    std::vector<std::int32_t> prompt;
    for (int t = 0; t < 3 + 2 * i; ++t) prompt.push_back((t * 5 + i) % 10);
    prompts.push_back(prompt);
  }
  auto verify = [](std::size_t, std::span<const std::int32_t> r, bool f) { return by_parity(r, f); };
  xplor::model::kv_decoder dec(model);
  const auto batch = deep_search_lockstep(dec, prompts, verify, p, 5);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    INFO("prompt " << i);
    xplor::model::kv_decoder alone(model);
    require_same(batch[i], deep_search(alone, prompts[i], by_parity, p, 5, static_cast<std::uint32_t>(i)));
  }
}

TEST_CASE("deep_search_lockstep: bad input and a full tree are xplor::errors, states released",
          "[search][lockstep][errors]") {
  auto policy = history_policy();
  search_params p;
  p.max_depth = 6;
  p.chunk_tokens = 2;
  p.sampling.eos_token = 5;
  p.expansion_width = 3;
  p.num_trajectories = 4;
  auto verify = [](std::size_t, std::span<const std::int32_t> r, bool f) { return by_parity(r, f); };
  const std::vector<std::vector<std::int32_t>> with_empty{{1}, {}};
  CHECK_THROWS_WITH(deep_search_lockstep(policy, with_empty, verify, p, 1),
                    Catch::Contains("prompts[1] is empty"));
  auto q = p;
  q.max_nodes = 5;  // the root and one expansion of 3 fit, the second does not
  q.num_trajectories = 50;
  const std::vector<std::vector<std::int32_t>> prompts{{1}, {2}, {3}};
  CHECK_THROWS_WITH(deep_search_lockstep(policy, prompts, verify, q, 1),
                    Catch::Contains("the tree is full") && Catch::Contains("max_nodes = 5"));
  CHECK(policy.live_states() == 0);
  CHECK_THROWS_WITH(deep_search_lockstep(
                        policy, prompts,
                        [](std::size_t i, std::span<const std::int32_t>, bool) -> outcome {
                          if (i == 2) throw std::runtime_error("grader down");
                          return outcome::incorrect;
                        },
                        p, 1),
                    Catch::Contains("grader down"));
  CHECK(policy.live_states() == 0);
  q = p;
  q.sampling.eos_token = 9;
  CHECK_THROWS_WITH(deep_search_lockstep(policy, prompts, verify, q, 1), Catch::Contains("eos_token = 9"));
  CHECK(deep_search_lockstep(policy, std::vector<std::vector<std::int32_t>>{}, verify, p, 1).empty());
}
