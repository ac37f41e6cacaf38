// MemGen generation and the trigger: appending the latents' keys and values while decoding equals
// recomputing the whole interleaved sequence; without a trigger every eligible point invokes (the
// training rule's points); a SKIP-biased trigger gives the plain reasoner's tokens; the trigger's
// gradients against finite differences; reproducible draws; bad input.
#include "xplor/memory/generate.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "xplor/sample/rollout.hpp"

namespace xm = xplor::model;
namespace mem = xplor::memory;

namespace {

xm::transformer_config tiny() {
  xm::transformer_config c;
  c.vocab_size = 9;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 24;
  c.max_seq_len = 64;
  c.init_std = 0.3f;
  return c;
}

mem::memgen_config small_config() {
  mem::memgen_config cfg;
  cfg.prompt_latents = 2;
  cfg.inference_latents = 3;
  cfg.max_inference_aug = 3;
  cfg.delimiters = {2, 3};  // frequent, so that rollouts hit several points
  cfg.weaver_lora.rank = 2;
  cfg.weaver_lora.dropout = 0.0f;
  cfg.trigger_lora.rank = 2;
  cfg.trigger_lora.dropout = 0.0f;
  return cfg;
}

template <class Table>
void randomize_lora_b(const Table& table, std::span<float> params, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.2f);
  for (const auto& t : table.tensors)
    if (t.name.ends_with("lora_B.weight"))
      for (std::int64_t i = 0; i < t.size; ++i) params[static_cast<std::size_t>(t.offset + i)] = nd(rng);
}

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
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const auto params = trig.params();
  for (const auto& t : trig.layout().tensors) {
    std::vector<float> u(static_cast<std::size_t>(t.size));
    double norm_u = 0.0, dot = 0.0;
    for (auto& e : u) e = nd(rng), norm_u += double(e) * e;
    for (std::int64_t i = 0; i < t.size; ++i) dot += analytic[static_cast<std::size_t>(t.offset + i)] * u[i];
    dot /= std::sqrt(norm_u);
    const float h = 3e-3f;
    auto shifted = [&](float sign) {
      for (std::int64_t i = 0; i < t.size; ++i)
        params[static_cast<std::size_t>(t.offset + i)] += sign * h * u[i] / float(std::sqrt(norm_u));
      const double v = objective();
      for (std::int64_t i = 0; i < t.size; ++i)
        params[static_cast<std::size_t>(t.offset + i)] -= sign * h * u[i] / float(std::sqrt(norm_u));
      return v;
    };
    INFO("tensor " << t.name);
    REQUIRE(dot == Approx((shifted(1.0f) - shifted(-1.0f)) / (2.0 * h)).epsilon(3e-2).margin(3e-4));
  }
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
