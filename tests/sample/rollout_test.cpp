#include "xplor/sample/rollout.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "xplor/model/decode.hpp"
#include "xplor/sample/scripted_policy.hpp"

using namespace xplor::sample;

namespace {
/// Deterministic counting policy: after history h the next token is (h.back() + 1) mod V with
/// probability ~1, except that after `eos_after` completion tokens it emits token 0.
scripted_policy counter(std::int64_t V, std::size_t prompt_len, std::size_t eos_after) {
  return scripted_policy(V, [=](std::span<const std::int32_t> h, std::span<float> out) {
    std::fill(out.begin(), out.end(), 0.0f);
    const std::int32_t next =
        h.size() - prompt_len >= eos_after ? 0 : (h.back() + 1) % static_cast<std::int32_t>(V);
    out[next] = 60.0f;
  });
}
}  // namespace

TEST_CASE("generation with a scripted policy reproduces known sequences and finish reasons",
          "[sample][rollout]") {
  auto policy = counter(10, 1, 100);
  sampling_params p;
  p.max_completion_length = 4;
  const std::vector<std::vector<std::int32_t>> prompts{{3}, {8}};
  const std::vector<int> counts{2, 1};
  auto b = generate(policy, std::span(prompts), std::span(counts), p, 1);
  REQUIRE(b.num_completions() == 3);
  CHECK(b.group_offsets == std::vector<std::int64_t>{0, 2, 3});
  CHECK(std::vector<std::int32_t>(b.completion(0).begin(), b.completion(0).end()) ==
        std::vector<std::int32_t>{4, 5, 6, 7});
  CHECK(std::vector<std::int32_t>(b.completion(2).begin(), b.completion(2).end()) ==
        std::vector<std::int32_t>{9, 0, 1, 2});
  CHECK(b.finish[0] == finish_reason::length);
  CHECK(b.prompt_index == std::vector<std::int32_t>{0, 0, 1});
  CHECK(b.sample_index == std::vector<std::int32_t>{0, 1, 0});
  CHECK(b.logprobs[0] == Approx(0.0f).margin(1e-6));
  CHECK(policy.live_states() == 0);  // everything released

  auto eos_policy = counter(10, 1, 2);  // two tokens, then token 0
  p.eos_token = 0;
  p.max_completion_length = 10;
  b = generate(eos_policy, std::span(prompts).first(1), std::span(counts).first(1), p, 1);
  CHECK(std::vector<std::int32_t>(b.completion(0).begin(), b.completion(0).end()) ==
        std::vector<std::int32_t>{4, 5, 0});
  CHECK(b.finish[0] == finish_reason::eos);
  p.eos_token = -1;
  p.stop_tokens = {6};
  auto stop_policy = counter(10, 1, 100);
  b = generate(stop_policy, std::span(prompts).first(1), std::span(counts).first(1), p, 1);
  CHECK(std::vector<std::int32_t>(b.completion(0).begin(), b.completion(0).end()) ==
        std::vector<std::int32_t>{4, 5, 6});
  CHECK(b.finish[0] == finish_reason::stop);
}

TEST_CASE("completions do not depend on chunking or prefix sharing", "[sample][rollout]") {
  xplor::model::transformer_config c;
  c.vocab_size = 23;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 32;
  c.max_seq_len = 32;
  c.init_std = 0.3f;
  const xplor::model::transformer model(c, 7);
  const std::vector<std::vector<std::int32_t>> prompts{{1, 2, 3}, {4, 5}};
  const std::vector<int> counts{7, 5};
  sampling_params p;
  p.max_completion_length = 12;
  p.eos_token = 0;
  p.top_p = 0.95f;
  xplor::model::kv_decoder d1(model), d2(model), d3(model);
  const auto a =
      generate(d1, std::span(prompts), std::span(counts), p, 99, {.chunk_size = 64, .share_prefix = true});
  const auto b =
      generate(d2, std::span(prompts), std::span(counts), p, 99, {.chunk_size = 3, .share_prefix = true});
  const auto u =
      generate(d3, std::span(prompts), std::span(counts), p, 99, {.chunk_size = 2, .share_prefix = false});
  CHECK(a.tokens == b.tokens);
  CHECK(a.tokens == u.tokens);  // forked generation equals unforked generation token for token
  CHECK(a.offsets == u.offsets);
  for (std::size_t t = 0; t < a.tokens.size(); ++t)
    REQUIRE(a.logprobs[t] == Approx(u.logprobs[t]).margin(1e-5));
  CHECK(d1.live_states() == 0);
  // A different seed gives different completions.
  xplor::model::kv_decoder d4(model);
  CHECK(generate(d4, std::span(prompts), std::span(counts), p, 100).tokens != a.tokens);
  // The second prompt alone, told its index in the batch (first_prompt), draws what it drew in the
  // batch; without the offset it draws the first prompt's streams instead.
  xplor::model::kv_decoder d5(model);
  const std::vector<std::vector<std::int32_t>> second{prompts[1]};
  const std::vector<int> five{5};
  const auto part = generate(d5, std::span(second), std::span(five), p, 99, {.first_prompt = 1});
  const std::vector<std::int32_t> tail(a.tokens.begin() + a.offsets[7], a.tokens.end());
  CHECK(part.tokens == tail);
  CHECK(generate(d5, std::span(second), std::span(five), p, 99).tokens != tail);
}

TEST_CASE("raw and processed log-probabilities", "[sample][rollout]") {
  auto policy = scripted_policy(4, [](std::span<const std::int32_t>, std::span<float> out) {
    const float z[4] = {2.0f, 1.0f, 0.0f, -1.0f};
    std::copy(z, z + 4, out.begin());
  });
  sampling_params p;
  p.top_k = 2;
  p.max_completion_length = 50;
  const std::vector<std::vector<std::int32_t>> prompts{{0}};
  const std::vector<int> counts{4};
  const auto b = generate(policy, std::span(prompts), std::span(counts), p, 3);
  const double lse = std::log(std::exp(2.0) + std::exp(1.0) + 1.0 + std::exp(-1.0));
  for (std::size_t t = 0; t < b.tokens.size(); ++t) {
    REQUIRE(b.tokens[t] < 2);  // top-k 2
    const double z = b.tokens[t] == 0 ? 2.0 : 1.0;
    REQUIRE(b.raw_logprobs[t] == Approx(z - lse).epsilon(1e-6));
    REQUIRE(b.processed_logprobs[t] == Approx(z - std::log(std::exp(2.0) + std::exp(1.0))).epsilon(1e-6));
    REQUIRE(b.logprobs[t] == b.processed_logprobs[t]);
  }
}

TEST_CASE("generate rejects bad input", "[sample][rollout]") {
  auto policy = counter(10, 1, 100);
  const std::vector<std::vector<std::int32_t>> prompts{{3}, {8}};
  const std::vector<int> three{1, 2, 3}, negative{-1};
  sampling_params p;
  CHECK_THROWS_WITH(generate(policy, std::span(prompts), std::span(three), p, 1),
                    Catch::Contains("counts has 3 elements for 2 prompts"));
  CHECK_THROWS_WITH(generate(policy, std::span(prompts), std::span(negative), p, 1),
                    Catch::Contains("counts[0] = -1"));
  p.max_completion_length = 0;
  const std::vector<int> one{1};
  CHECK_THROWS_WITH(generate(policy, std::span(prompts), std::span(one), p, 1),
                    Catch::Contains("max_completion_length = 0"));
  p = {};
  p.stop_tokens = {11};
  CHECK_THROWS_WITH(generate(policy, std::span(prompts), std::span(one), p, 1),
                    Catch::Contains("stop token 11"));
}
