// MemGen generation and the trigger: appending the latents' keys and values while decoding equals
// recomputing the whole interleaved sequence; without a trigger every eligible point invokes (the
// training rule's points); a SKIP-biased trigger gives the plain reasoner's tokens; the trigger's
// gradients against finite differences; reproducible draws; bad input.
#include "xplor/memory/generate.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "fixtures.hpp"
#include "xplor/sample/rollout.hpp"

namespace xm = xplor::model;
namespace mem = xplor::memory;

namespace {

// vocab 9, d_model 16; K 2 (prompt) and 3 (inference), 3 inference points after the frequent
// tokens 2 and 3, so that rollouts hit several points.
xm::transformer_config tiny() { return xplor::testing::tiny_reasoner(9, 16, 64); }
mem::memgen_config small_config() { return xplor::testing::small_memgen({2, 3}, 2, 3, 3); }

using xplor::testing::randomize_lora_b;

const std::vector<std::vector<std::int32_t>> prompts{{1, 4, 5}, {6, 7}, {8}};

}  // namespace

TEST_CASE("generation appends latents incrementally: equal to recomputing the interleaved sequence",
          "[memory][generate]") {
  xm::transformer reasoner(tiny(), 2);
  const mem::memgen_config cfg = small_config();
  mem::memgen m(reasoner, cfg, 5);
  randomize_lora_b(m.weaver().layout(), m.weaver().params(), 3);
  mem::generation_options opt;
  opt.sampling.max_completion_length = 14;
  opt.seed = 11;
  const auto rollouts = mem::generate(m, prompts, 4, opt);
  REQUIRE(rollouts.size() == 12);
  std::size_t inference_points = 0;
  for (const auto& r : rollouts) {
    INFO("prompt " << r.prompt_index << " sample " << r.sample_index);
    // No trigger: every eligible point invokes, which is the training rule's set of points.
    REQUIRE(r.seq.points == mem::insertion_points(cfg, r.seq.completion));
    REQUIRE(r.decisions.rows.empty());
    inference_points += r.seq.points.size() - 1;
    m.forward(std::span(&r.seq, 1));
    const auto lp = m.completion_logprobs();
    REQUIRE(lp.size() == r.logprobs.size());
    for (std::size_t i = 0; i < lp.size(); ++i) REQUIRE(lp[i] == Approx(r.logprobs[i]).margin(1e-5));
  }
  CHECK(inference_points >= 12);  // the comparison covered inference insertions, not only the prompt's
  // The authors' way (drop the cache after an insertion, prefill everything again): the same.
  opt.recompute_after_insertion = true;
  const auto recomputed = mem::generate(m, prompts, 4, opt);
  for (std::size_t c = 0; c < rollouts.size(); ++c) {
    REQUIRE(recomputed[c].seq.completion == rollouts[c].seq.completion);
    REQUIRE(recomputed[c].seq.points == rollouts[c].seq.points);
    for (std::size_t i = 0; i < rollouts[c].logprobs.size(); ++i)
      REQUIRE(recomputed[c].logprobs[i] == Approx(rollouts[c].logprobs[i]).margin(1e-5));
  }
}

TEST_CASE("a weaver reading the reasoner's hidden states: generation equals recomputation too",
          "[memory][generate]") {
  xm::transformer reasoner(tiny(), 6);
  mem::memgen_config cfg = small_config();
  cfg.input = mem::weaver_input::last_hidden;
  mem::memgen m(reasoner, cfg, 7);
  randomize_lora_b(m.weaver().layout(), m.weaver().params(), 2);
  mem::generation_options opt;
  opt.sampling.max_completion_length = 12;
  opt.seed = 3;
  std::size_t points = 0;
  for (const auto& r : mem::generate(m, prompts, 3, opt)) {
    points += r.seq.points.size();
    m.forward(std::span(&r.seq, 1));
    const auto lp = m.completion_logprobs();
    REQUIRE(lp.size() == r.logprobs.size());
    for (std::size_t i = 0; i < lp.size(); ++i) REQUIRE(lp[i] == Approx(r.logprobs[i]).margin(1e-5));
  }
  CHECK(points >= 12);  // 9 prompt points and inference points beyond them
  // The two inputs give different latents (the weaver reads different things).
  mem::memgen_config emb = cfg;
  emb.input = mem::weaver_input::embeddings;
  mem::memgen e(reasoner, emb, 7);
  randomize_lora_b(e.weaver().layout(), e.weaver().params(), 2);
  const mem::sequence s{{1, 4, 5}, {2, 6, 7}, {0, 1}};
  m.forward(std::span(&s, 1));
  const std::vector<float> a(m.completion_logprobs().begin(), m.completion_logprobs().end());
  e.forward(std::span(&s, 1));
  CHECK(std::vector<float>(e.completion_logprobs().begin(), e.completion_logprobs().end()) != a);
}

TEST_CASE("a SKIP-biased trigger gives the plain reasoner's tokens", "[memory][generate][trigger]") {
  xm::transformer reasoner(tiny(), 3);
  const mem::memgen_config cfg = small_config();
  mem::memgen m(reasoner, cfg, 2);
  randomize_lora_b(m.weaver().layout(), m.weaver().params(), 4);
  mem::trigger trig(reasoner, cfg, 6);
  trig.head_bias()[0] = 50.0f;  // SKIP
  trig.head_bias()[1] = -50.0f;
  mem::generation_options opt;
  opt.sampling.max_completion_length = 10;
  opt.sampling.top_k = 1;  // greedy
  opt.seed = 1;
  const auto with_trigger = mem::generate(m, prompts, 2, opt, &trig);
  xm::kv_decoder dec(reasoner);
  const int counts[] = {2};
  const auto plain = xplor::sample::generate(dec, std::span(prompts), counts, opt.sampling, opt.seed);
  REQUIRE(plain.num_completions() == 6);
  for (std::size_t c = 0; c < with_trigger.size(); ++c) {
    const auto& r = with_trigger[c];
    CHECK(r.seq.points.empty());
    CHECK(!r.decisions.rows.empty());  // the prompt end at least was eligible
    for (std::int32_t a : r.decisions.actions) CHECK(a == mem::skip);
    const auto p = plain.completion(static_cast<std::int64_t>(c));
    REQUIRE(std::vector<std::int32_t>(p.begin(), p.end()) == r.seq.completion);
  }
  // Biased to INVOKE, every eligible point invokes as without a trigger.
  trig.head_bias()[0] = -50.0f;
  trig.head_bias()[1] = 50.0f;
  const auto invoking = mem::generate(m, prompts, 2, opt, &trig);
  const auto no_trigger = mem::generate(m, prompts, 2, opt);
  for (std::size_t c = 0; c < invoking.size(); ++c) {
    CHECK(invoking[c].seq.completion == no_trigger[c].seq.completion);
    CHECK(invoking[c].seq.points == no_trigger[c].seq.points);
    CHECK(invoking[c].decisions.rows.size() == invoking[c].seq.points.size());
  }
}

TEST_CASE("generation is reproducible from its seed, the trigger's draws included", "[memory][generate]") {
  xm::transformer reasoner(tiny(), 4);
  const mem::memgen_config cfg = small_config();
  mem::memgen m(reasoner, cfg, 1);
  mem::trigger trig(reasoner, cfg, 2);
  randomize_lora_b(trig.layout(), trig.params(), 8);
  mem::generation_options opt;
  opt.sampling.max_completion_length = 12;
  auto run = [&](std::uint64_t seed) {
    opt.seed = seed;
    std::vector<std::vector<std::int32_t>> out;
    for (const auto& r : mem::generate(m, prompts, 3, opt, &trig)) {
      out.push_back(r.seq.completion);
      out.push_back(r.seq.points);
      out.push_back(r.decisions.actions);
    }
    return out;
  };
  CHECK(run(7) == run(7));
  CHECK(run(7) != run(8));
}

TEST_CASE("trigger gradients match finite differences", "[memory][trigger][property]") {
  xm::transformer reasoner(tiny(), 5);
  mem::memgen_config cfg = small_config();
  cfg.trigger_lora.targets = {xm::lora_target::q, xm::lora_target::v, xm::lora_target::o};
  mem::trigger trig(reasoner, cfg, 3);
  randomize_lora_b(trig.layout(), trig.params(), 9);
  const std::vector<mem::decision_record> records{{{1, 2, 3, 4, 2, 5}, {0, 2, 5}, {1, 0, 1}},
                                                  {{6, 2, 7}, {1, 2}, {0, 0}}};
  const std::vector<float> dlogp{0.5f, -0.3f, 0.8f, -1.1f, 0.2f};
  auto objective = [&] {
    const auto lp = trig.forward(records);
    double s = 0.0;
    for (std::size_t d = 0; d < lp.size(); ++d) s += dlogp[d] * lp[d];
    return s;
  };
  objective();
  trig.zero_grad();
  trig.backward(dlogp);
  const std::vector<float> analytic(trig.grads().begin(), trig.grads().end());
  xplor::testing::check_directional_gradients(trig.layout(), trig.params(), analytic, objective,
                                              [](const std::string&) { return false; });
  // log p(action) by hand from the head: p = softmax(W h + b).
  const auto lp = trig.forward(records);
  const std::vector<std::vector<std::int32_t>> prefix{{1, 2, 3}};
  const auto z = trig.logits(prefix);
  const double lse = std::log(std::exp(double(z[0])) + std::exp(double(z[1])));
  CHECK(lp[1] == Approx(z[0] - lse).margin(1e-6));  // records[0] row 2, action skip
}

TEST_CASE("bad generation and trigger input are xplor::errors", "[memory][generate][errors]") {
  xm::transformer reasoner(tiny(), 1);
  const mem::memgen_config cfg = small_config();
  mem::memgen m(reasoner, cfg, 1);
  mem::trigger trig(reasoner, cfg, 1);
  mem::generation_options opt;
  opt.sampling.max_completion_length = 8;
  CHECK_THROWS_WITH(mem::generate(m, prompts, 0, opt), Catch::Contains("samples = 0"));
  const std::vector<std::vector<std::int32_t>> bad{{1, 9}};
  CHECK_THROWS_WITH(mem::generate(m, bad, 1, opt), Catch::Contains("prompt[1] = 9"));
  opt.sampling.max_completion_length = 60;
  CHECK_THROWS_WITH(mem::generate(m, prompts, 1, opt), Catch::Contains("exceed max_seq_len = 64"));
  opt.sampling.max_completion_length = 8;
  opt.trigger_temperature = 0.0f;
  CHECK_THROWS_WITH(mem::generate(m, prompts, 1, opt, &trig), Catch::Contains("trigger_temperature = 0"));
  const std::vector<mem::decision_record> rec{{{1, 2}, {2}, {1}}};
  CHECK_THROWS_WITH(trig.forward(rec), Catch::Contains("records[0].rows[0] = 2 is outside its 2 tokens"));
  const std::vector<mem::decision_record> act{{{1, 2}, {1}, {3}}};
  CHECK_THROWS_WITH(trig.forward(act), Catch::Contains("actions[0] = 3 is neither skip"));
  const std::vector<mem::decision_record> ok{{{1, 2}, {1}, {1}}};
  trig.forward(ok);
  CHECK_THROWS_WITH(trig.backward(std::vector<float>(2, 0.0f)),
                    Catch::Contains("dlogp has 2 elements for 1"));
}

TEST_CASE(
    "backward after other passes in between: the weaver, the reasoner and the trigger rerun what they need",
    "[memory][generate]") {
  xm::transformer reasoner(tiny(), 8);
  mem::memgen_config cfg = small_config();
  cfg.input = mem::weaver_input::last_hidden;  // contexts run the reasoner too
  mem::memgen m(reasoner, cfg, 3);
  randomize_lora_b(m.weaver().layout(), m.weaver().params(), 5);
  mem::trigger trig(reasoner, cfg, 4);
  randomize_lora_b(trig.layout(), trig.params(), 6);
  mem::generation_options opt;
  opt.sampling.max_completion_length = 10;
  const auto rs = mem::generate(m, prompts, 2, opt, &trig);
  std::vector<mem::sequence> seqs;
  std::vector<mem::decision_record> records;
  for (const auto& r : rs) {
    seqs.push_back(r.seq);
    if (!r.decisions.actions.empty()) records.push_back(r.decisions);
  }
  REQUIRE(!records.empty());
  auto weaver_grads = [&](bool interleave_generation) {
    m.weaver().zero_grad();
    m.forward(seqs, {true, 5});
    if (interleave_generation) mem::generate(m, prompts, 1, opt, &trig);
    m.backward();
    return std::vector<float>(m.weaver().grads().begin(), m.weaver().grads().end());
  };
  CHECK(weaver_grads(true) == weaver_grads(false));
  auto trigger_grads = [&](bool interleave_logits) {
    trig.zero_grad();
    const auto lp = trig.forward(records, {true, 2});
    if (interleave_logits) trig.logits(prompts);
    trig.backward(std::vector<float>(lp.size(), 0.5f));
    return std::vector<float>(trig.grads().begin(), trig.grads().end());
  };
  CHECK(trigger_grads(true) == trigger_grads(false));
  mem::memgen fresh(reasoner, cfg, 3);
  CHECK_THROWS_WITH(fresh.backward(), Catch::Contains("no forward pass"));
  mem::trigger fresh_trigger(reasoner, cfg, 4);
  CHECK_THROWS_WITH(fresh_trigger.backward(std::vector<float>{}), Catch::Contains("no forward pass"));
}
