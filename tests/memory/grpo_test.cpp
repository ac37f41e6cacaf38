// MemGen's RL stages: the invocation penalty by hand and its lambda = 0 identity; weaver and
// trigger GRPO gradients equal to the loss's own d log p fed by hand (bnpo at ratio 1:
// -A / tokens); static latents do not read the context; bad input.
#include "xplor/memory/grpo.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "fixtures.hpp"

namespace xm = xplor::model;
namespace mem = xplor::memory;

namespace {

// vocab 9, d_model 16; K 2 for both banks, 2 inference points after tokens 2 and 3.
xm::transformer_config tiny() { return xplor::testing::tiny_reasoner(9, 16, 64); }
mem::memgen_config small_config() { return xplor::testing::small_memgen({2, 3}, 2, 2, 2); }

using xplor::testing::randomize_lora_b;

mem::rollout with_actions(std::vector<std::int32_t> actions) {
  mem::rollout r;
  r.decisions.actions = std::move(actions);
  return r;
}

/// TRL's group advantages by hand: (R - mean) / (unbiased std + 1e-4).
std::vector<float> advantages(const std::vector<float>& rewards, int G) {
  std::vector<float> a(rewards.size());
  for (std::size_t g = 0; g < rewards.size(); g += static_cast<std::size_t>(G)) {
    double mean = 0.0, var = 0.0;
    for (int i = 0; i < G; ++i) mean += rewards[g + static_cast<std::size_t>(i)];
    mean /= G;
    for (int i = 0; i < G; ++i) var += std::pow(rewards[g + static_cast<std::size_t>(i)] - mean, 2);
    const double sd = std::sqrt(var / (G - 1));
    for (int i = 0; i < G; ++i)
      a[g + static_cast<std::size_t>(i)] =
          float((rewards[g + static_cast<std::size_t>(i)] - mean) / (sd + 1e-4));
  }
  return a;
}

const std::vector<std::vector<std::int32_t>> prompts{{1, 4, 5}, {6, 7}};

}  // namespace

TEST_CASE("the invocation penalty by hand", "[memory][grpo]") {
  // Rates 1, 1/2, 0, 1; rewards 1, 0, 1, 0: median 1/2, above it rollouts 0 and 2, pbar = 1/2.
  // Penalties sum max(0, d - 1/2): 1, 1/2, 0, 1/2.
  const std::vector<mem::rollout> rs{with_actions({1, 1}), with_actions({1, 0}), with_actions({0, 0}),
                                     with_actions({1})};
  const std::vector<float> rewards{1.0f, 0.0f, 1.0f, 0.0f};
  const auto out = mem::invocation_penalized_rewards(rewards, rs, 4, 0.2f);
  CHECK(out[0] == Approx(0.8f));
  CHECK(out[1] == Approx(-0.1f));
  CHECK(out[2] == Approx(1.0f));
  CHECK(out[3] == Approx(-0.1f));
  CHECK(mem::invocation_penalized_rewards(rewards, rs, 4, 0.0f) == rewards);
  // Two groups of two: each group has its own pbar; ties at the median fall back to the mean rate.
  const auto two = mem::invocation_penalized_rewards(std::vector<float>{1, 1, 0, 1}, rs, 2, 1.0f);
  CHECK(two[0] == Approx(1.0f - 2 * (1 - 0.75)));  // no reward above the median 1: pbar = mean(1, 1/2)
  CHECK(two[1] == Approx(1.0f - (1 - 0.75)));
  CHECK(two[2] == Approx(0.0f));  // group 2: rollout 3 is above the median, pbar = 1
  CHECK(two[3] == Approx(1.0f));
  CHECK_THROWS_WITH(mem::invocation_penalized_rewards(rewards, rs, 3, 0.1f),
                    Catch::Contains("group_size = 3"));
  CHECK_THROWS_WITH(mem::invocation_penalized_rewards(rewards, rs, 4, -1.0f), Catch::Contains("lambda = -1"));
  CHECK_THROWS_WITH(mem::invocation_penalized_rewards(std::vector<float>{1, NAN, 0, 0}, rs, 4, 0.1f),
                    Catch::Contains("rewards[1] = nan"));
}

TEST_CASE("weaver GRPO sends -A / tokens through the reasoner into the weaver", "[memory][grpo]") {
  xm::transformer reasoner(tiny(), 2);
  const mem::memgen_config cfg = small_config();
  mem::memgen m(reasoner, cfg, 3);
  randomize_lora_b(m.weaver().layout(), m.weaver().params(), 5);
  mem::generation_options opt;
  opt.sampling.max_completion_length = 8;
  opt.seed = 4;
  const auto rs = mem::generate(m, prompts, 4, opt);
  const std::vector<float> rewards{1, 0, 0, 1, 0.5f, 0, 1, 1};
  m.weaver().zero_grad();
  mem::weaver_grpo_gradients(m, rs, rewards, 4);
  const std::vector<float> got(m.weaver().grads().begin(), m.weaver().grads().end());
  // By hand: bnpo at ratio 1 is -sum_t A_t logp_t / (tokens in the batch).
  const auto a = advantages(rewards, 4);
  std::vector<mem::sequence> seqs;
  std::vector<float> dlogp;
  std::size_t tokens = 0;
  for (const auto& r : rs) tokens += r.seq.completion.size();
  for (std::size_t i = 0; i < rs.size(); ++i) {
    seqs.push_back(rs[i].seq);
    dlogp.insert(dlogp.end(), rs[i].seq.completion.size(), -a[i] / float(tokens));
  }
  m.weaver().zero_grad();
  m.forward(seqs);
  m.backward(std::span<const float>(dlogp));
  bool any = false;
  for (std::size_t i = 0; i < got.size(); ++i) {
    REQUIRE(got[i] == Approx(m.weaver().grads()[i]).margin(1e-6));
    any = any || got[i] != 0.0f;
  }
  CHECK(any);
  for (float g : m.reasoner().grads()) REQUIRE(g == 0.0f);
}

TEST_CASE("trigger GRPO: -A / decisions on log p(decision), rollouts without decisions skipped",
          "[memory][grpo][trigger]") {
  xm::transformer reasoner(tiny(), 3);
  const mem::memgen_config cfg = small_config();
  mem::memgen m(reasoner, cfg, 1);
  mem::trigger trig(reasoner, cfg, 2);
  randomize_lora_b(trig.layout(), trig.params(), 6);
  mem::generation_options opt;
  opt.sampling.max_completion_length = 8;
  opt.seed = 9;
  auto rs = mem::generate(m, prompts, 2, opt, &trig);
  rs[1].decisions = {};  // a rollout without any eligible point
  const std::vector<float> rewards{1, 0, 0, 1};
  trig.zero_grad();
  mem::trigger_grpo_gradients(trig, rs, rewards, 2);
  const std::vector<float> got(trig.grads().begin(), trig.grads().end());
  const auto a = advantages(rewards, 2);
  std::vector<mem::decision_record> records;
  std::vector<float> dlogp;
  std::size_t decisions = 0;
  for (const auto& r : rs) decisions += r.decisions.actions.size();
  for (std::size_t i = 0; i < rs.size(); ++i)
    if (!rs[i].decisions.actions.empty()) {
      records.push_back(rs[i].decisions);
      dlogp.insert(dlogp.end(), rs[i].decisions.actions.size(), -a[i] / float(decisions));
    }
  trig.zero_grad();
  trig.forward(records);
  trig.backward(dlogp);
  for (std::size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == Approx(trig.grads()[i]).margin(1e-6));
}

TEST_CASE("static latents ignore the context and keep the weaver's other paths", "[memory][memgen]") {
  xm::transformer reasoner(tiny(), 4);
  mem::memgen_config cfg = small_config();
  cfg.static_latents = true;
  mem::memgen m(reasoner, cfg, 2);
  randomize_lora_b(m.weaver().layout(), m.weaver().params(), 7);
  // No context reaches the weaver: reasoner_to_weaver gets no gradient, the rest does.
  std::vector<mem::sequence> batch{{{1, 4}, {5, 2, 6}, {}}, {{7, 8, 1}, {5, 2, 6}, {}}};
  for (auto& s : batch) s.points = mem::insertion_points(cfg, s.completion);
  m.forward(batch);
  m.weaver().zero_grad();
  m.backward();
  for (float g : m.weaver().grad("reasoner_to_weaver.weight")) REQUIRE(g == 0.0f);
  double lora = 0.0;
  for (const auto& t : m.weaver().layout().tensors)
    if (t.name.ends_with("lora_B.weight"))
      for (std::int64_t i = 0; i < t.size; ++i)
        lora += std::abs(m.weaver().grads()[static_cast<std::size_t>(t.offset + i)]);
  CHECK(lora > 0.0);
  // Generation with static latents also equals the recomputed forward.
  mem::generation_options opt;
  opt.sampling.max_completion_length = 10;
  const auto rs = mem::generate(m, prompts, 2, opt);
  for (const auto& r : rs) {
    m.forward(std::span(&r.seq, 1));
    const auto lp = m.completion_logprobs();
    for (std::size_t i = 0; i < lp.size(); ++i) REQUIRE(lp[i] == Approx(r.logprobs[i]).margin(1e-5));
  }
  // A static weave_call: the weaver's latents are the same whatever the context.
  mem::weave_call c1, c2;
  c1.which = c2.which = mem::bank::prompt;
  c1.lengths = c2.lengths = {0};
  m.weaver().forward(c1);
  m.weaver().forward(c2);
  CHECK(c1.latents == c2.latents);
}
