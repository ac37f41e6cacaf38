// MemGen's insertion rule, interleaving and alignment by hand; the weaver's formula recomputed
// from its parts; no insertion points = the reasoner bit for bit; a frozen reasoner; batching
// equals one sequence at a time; finite differences for every trainable tensor (through earlier
// latents that later weaver calls read); adapter files; bad input.
#include "xplor/memory/memgen.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "fixtures.hpp"
#include "xplor/memory/checkpoint.hpp"
#include "xplor/memory/trigger.hpp"

namespace xm = xplor::model;
namespace mem = xplor::memory;

namespace {

using xplor::testing::randomize_lora_b;

// vocab 11, d_model 8; K 2 (prompt) and 3 (inference), 2 inference points after token 5.
xm::transformer_config tiny() { return xplor::testing::tiny_reasoner(11, 8, 40); }
mem::memgen_config small_config() { return xplor::testing::small_memgen({5}, 2, 3, 2); }

mem::sequence seq(std::vector<std::int32_t> prompt, std::vector<std::int32_t> completion,
                  const mem::memgen_config& cfg) {
  mem::sequence s{std::move(prompt), std::move(completion), {}};
  s.points = mem::insertion_points(cfg, s.completion);
  return s;
}

}  // namespace

TEST_CASE("insertion points: the prompt end and the first delimiters, on token ids", "[memory][insertion]") {
  mem::memgen_config cfg = small_config();
  const std::vector<std::int32_t> completion{1, 5, 2, 5, 3, 5, 4};
  CHECK(mem::insertion_points(cfg, completion) == std::vector<std::int32_t>{0, 2, 4});
  cfg.max_inference_aug = 0;
  CHECK(mem::insertion_points(cfg, completion) == std::vector<std::int32_t>{0});
  cfg.max_inference_aug = 5;
  cfg.prompt_augment = false;
  CHECK(mem::insertion_points(cfg, completion) == std::vector<std::int32_t>{2, 4, 6});
  // A delimiter as the last token opens no point (nothing left to predict after it).
  CHECK(mem::insertion_points(cfg, std::vector<std::int32_t>{1, 2, 5}).empty());
}

TEST_CASE("interleaving: latent blocks in place, each token predicted from the row before it",
          "[memory][insertion]") {
  const mem::memgen_config cfg = small_config();  // K_prompt 2, K_inference 3
  const mem::sequence s{{7, 8}, {1, 5, 2}, {0, 2}};
  const auto r = mem::interleave(cfg, s);
  constexpr auto L = xm::latent_slot;
  constexpr auto I = xm::ignore_target;
  CHECK(r.tokens == std::vector<std::int32_t>{7, 8, L, L, 1, 5, L, L, L, 2});
  CHECK(r.block_start == std::vector<std::int64_t>{2, 6});
  // Token 1 after the prompt block is read at that block's last latent (row 3), token 5 at row 4,
  // token 2 at the inference block's last latent (row 8).
  CHECK(r.target_rows == std::vector<std::int64_t>{3, 4, 8});
  CHECK(r.targets == std::vector<std::int32_t>{I, I, I, 1, 5, I, I, I, 2, I});
}

TEST_CASE("without insertion points MemGen is the reasoner, bit for bit", "[memory][memgen]") {
  xm::transformer reasoner(tiny(), 3);
  mem::memgen_config cfg = small_config();
  cfg.prompt_augment = false;
  cfg.max_inference_aug = 0;
  mem::memgen model(reasoner, cfg, 1);
  const std::vector<mem::sequence> batch{seq({1, 2, 3}, {4, 5, 6, 7}, cfg), seq({9}, {2, 5, 1}, cfg)};
  model.forward(batch);
  for (std::size_t b = 0; b < batch.size(); ++b) {
    std::vector<std::int32_t> all = batch[b].prompt;
    all.insert(all.end(), batch[b].completion.begin(), batch[b].completion.end());
    const auto T = static_cast<std::int64_t>(all.size());
    reasoner.forward({all, 1, T, {}, {}, {}});
    for (std::size_t i = 0; i < batch[b].completion.size(); ++i) {
      const auto row = static_cast<std::int64_t>(batch[b].prompt.size() + i) - 1;
      const auto got = model.completion_logits(b, i);
      for (int v = 0; v < 11; ++v) REQUIRE(got[static_cast<std::size_t>(v)] == reasoner.logits()(row, v));
    }
  }
}

TEST_CASE("the weaver computes LN(bank) * scale, the LoRA'd reasoner and both projections",
          "[memory][weaver]") {
  xm::transformer reasoner(tiny(), 4);
  mem::memgen_config cfg = small_config();
  mem::weaver w(reasoner, cfg, 2);
  randomize_lora_b(w.layout(), w.params(), 7);
  w.param("weaver.inference_latent_scale")[0] = 1.7f;
  const std::int64_t C = 8, n = 5, K = 3;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  mem::weave_call call;
  call.which = mem::bank::inference;
  call.lengths = {n};
  call.width = n;
  call.context.resize(n * C);
  for (auto& x : call.context) x = nd(rng);
  w.forward(call);
  // By hand: the same steps with the plain model and an explicitly attached adapter.
  auto P = [&](const char* name) { return w.param(name); };
  std::vector<float> z((n + K) * C);
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t o = 0; o < C; ++o) {
      float s = P("reasoner_to_weaver.bias")[o];
      for (std::int64_t i = 0; i < C; ++i)
        s += P("reasoner_to_weaver.weight")[o * C + i] * call.context[r * C + i];
      z[r * C + o] = s;
    }
  for (std::int64_t k = 0; k < K; ++k) {
    const float* q = P("weaver.inference_query_latents").data() + k * C;
    double mean = 0, var = 0;
    for (std::int64_t i = 0; i < C; ++i) mean += q[i];
    mean /= C;
    for (std::int64_t i = 0; i < C; ++i) var += (q[i] - mean) * (q[i] - mean);
    var /= C;
    for (std::int64_t i = 0; i < C; ++i)
      z[(n + k) * C + i] = float((q[i] - mean) / std::sqrt(var + 1e-5)) * 1.7f;
  }
  xm::transformer plain(reasoner);
  plain.attach({&w.lora(), w.params().data(), nullptr, false, 0});
  const std::vector<std::int32_t> slots(n + K, xm::latent_slot);
  plain.forward_hidden(
      {slots, 1, n + K, {}, {}, xplor::make_view(static_cast<const float*>(z.data()), {n + K, C})});
  for (std::int64_t k = 0; k < K; ++k)
    for (std::int64_t o = 0; o < C; ++o) {
      double s = P("weaver_to_reasoner.bias")[o];
      for (std::int64_t i = 0; i < C; ++i)
        s += P("weaver_to_reasoner.weight")[o * C + i] * plain.hidden()(n + k, i);
      REQUIRE(call.latents[k * C + o] == Approx(s).margin(1e-4));
    }
}

TEST_CASE(
    "MemGen's gradients: finite differences for every weaver tensor, zero for the reasoner (both weaver "
    "inputs)",
    "[memory][memgen][property]") {
  for (const auto& [dropout, input] :
       {std::pair{0.0f, mem::weaver_input::embeddings}, std::pair{0.2f, mem::weaver_input::embeddings},
        std::pair{0.0f, mem::weaver_input::last_hidden}}) {
    INFO("dropout " << dropout << ", weaver input " << static_cast<int>(input));
    xm::transformer reasoner(tiny(), 5);
    mem::memgen_config cfg = small_config();
    cfg.weaver_lora.dropout = dropout;
    cfg.input = input;
    cfg.weaver_lora.targets = {xm::lora_target::q, xm::lora_target::v, xm::lora_target::o};
    mem::memgen model(reasoner, cfg, 3);
    randomize_lora_b(model.weaver().layout(), model.weaver().params(), 11);
    // Two and three points: later weaver calls read earlier latents.
    const std::vector<mem::sequence> batch{seq({1, 2}, {3, 5, 4, 5, 6, 7}, cfg),
                                           seq({8, 9, 1}, {5, 2, 3}, cfg)};
    REQUIRE(batch[0].points.size() == 3);
    const mem::pass_options opt{true, 42};
    auto loss = [&] { return double(model.forward(batch, opt)); };
    loss();
    model.weaver().zero_grad();
    model.backward();
    for (float g : model.reasoner().grads()) REQUIRE(g == 0.0f);
    const std::vector<float> analytic(model.weaver().grads().begin(), model.weaver().grads().end());
    xplor::testing::check_directional_gradients(
        model.weaver().layout(), model.weaver().params(), analytic, loss, [](const std::string& name) {
          return name.ends_with("lora_B.weight") ||
                 name.starts_with("weaver_to_reasoner");  // every path is live
        });
  }
}

TEST_CASE("a batch gives each sequence's log-probabilities and the summed gradients", "[memory][memgen]") {
  xm::transformer reasoner(tiny(), 6);
  mem::memgen_config cfg = small_config();
  mem::memgen model(reasoner, cfg, 4);
  randomize_lora_b(model.weaver().layout(), model.weaver().params(), 2);
  std::vector<mem::sequence> batch{seq({1, 2}, {3, 5, 4, 5, 6}, cfg), seq({8}, {5, 2, 5, 1, 1, 1, 2}, cfg),
                                   seq({3, 3, 3}, {4}, cfg)};
  batch[1].points = {1, 3};  // no prompt point: index 0 mixes banks across the batch
  model.forward(batch);
  const std::vector<float> joint(model.completion_logprobs().begin(), model.completion_logprobs().end());
  std::vector<float> dlogp(joint.size());
  for (std::size_t i = 0; i < dlogp.size(); ++i) dlogp[i] = 0.1f * float(i % 5) - 0.2f;
  model.weaver().zero_grad();
  model.backward(std::span<const float>(dlogp));
  const std::vector<float> joint_grads(model.weaver().grads().begin(), model.weaver().grads().end());
  std::vector<float> separate, separate_grads(joint_grads.size(), 0.0f);
  std::size_t offset = 0;
  model.weaver().zero_grad();
  for (const auto& s : batch) {
    model.forward(std::span(&s, 1));
    const auto lp = model.completion_logprobs();
    separate.insert(separate.end(), lp.begin(), lp.end());
    model.backward(std::span<const float>(dlogp.data() + offset, lp.size()));
    offset += lp.size();
  }
  REQUIRE(separate.size() == joint.size());
  for (std::size_t i = 0; i < joint.size(); ++i) REQUIRE(joint[i] == Approx(separate[i]).margin(2e-6));
  for (std::size_t i = 0; i < joint_grads.size(); ++i)
    REQUIRE(joint_grads[i] == Approx(model.weaver().grads()[i]).margin(2e-5));
}

TEST_CASE("bad MemGen configurations and sequences are xplor::errors", "[memory][errors]") {
  xm::transformer reasoner(tiny(), 1);
  auto with = [&](auto edit) {
    mem::memgen_config cfg = small_config();
    edit(cfg);
    return [=, &reasoner] { mem::memgen m(reasoner, cfg, 1); };
  };
  CHECK_THROWS_WITH(with([](auto& c) { c.prompt_latents = 0; })(), Catch::Contains("prompt_latents = 0"));
  CHECK_THROWS_WITH(with([](auto& c) { c.inference_latents = -1; })(),
                    Catch::Contains("inference_latents = -1"));
  CHECK_THROWS_WITH(with([](auto& c) { c.weaver_lora.rank = 0; })(), Catch::Contains("rank = 0"));
  CHECK_THROWS_WITH(with([](auto& c) { c.delimiters = {11}; })(),
                    Catch::Contains("delimiters[0] = 11 is outside [0, vocab_size = 11)"));
  CHECK_THROWS_WITH(with([](auto& c) { c.delimiters = {}; })(), Catch::Contains("needs delimiters"));
  CHECK_THROWS_WITH(with([](auto& c) { c.max_inference_aug = -2; })(),
                    Catch::Contains("max_inference_aug = -2"));
  const mem::memgen_config cfg = small_config();
  mem::memgen model(reasoner, cfg, 1);
  auto run = [&](mem::sequence s) { model.forward(std::span(&s, 1)); };
  CHECK_THROWS_WITH(run({{}, {1}, {}}), Catch::Contains("the prompt is empty"));
  CHECK_THROWS_WITH(run({{1}, {2, 3}, {1}}), Catch::Contains("completion[0] = 2 is not a delimiter"));
  CHECK_THROWS_WITH(run({{1}, {5, 5, 5, 5}, {1, 2, 3}}),
                    Catch::Contains("3 inference points, max_inference_aug = 2"));
  CHECK_THROWS_WITH(run({{1}, {5, 2}, {1, 1}}), Catch::Contains("points[1] = 1 does not follow"));
  CHECK_THROWS_WITH(run({{1}, {5, 2}, {2}}), Catch::Contains("points[0] = 2 is outside the completion"));
  CHECK_THROWS_WITH(run({{1}, {12}, {}}), Catch::Contains("completion[0] = 12"));
  CHECK_THROWS_WITH(run({{1}, std::vector<std::int32_t>(38, 1), {0}}), Catch::Contains("max_seq_len = 40"));
  model.forward(std::vector<mem::sequence>{seq({1}, {2, 3}, cfg)});
  CHECK_THROWS_WITH(model.backward(std::vector<float>(3, 0.0f)),
                    Catch::Contains("dlogp has 3 elements for 2"));
}

TEST_CASE("weaver and trigger files round-trip and refuse other settings or base weights",
          "[memory][checkpoint]") {
  const auto dir = std::filesystem::temp_directory_path() / "xplor_memgen_adapter_test";
  std::filesystem::create_directories(dir);
  const auto path = dir / "weaver.safetensors";
  xm::transformer reasoner(tiny(), 3);
  const mem::memgen_config cfg = small_config();
  mem::weaver w(reasoner, cfg, 1);
  randomize_lora_b(w.layout(), w.params(), 4);
  mem::save_adapter(path, w);
  mem::weaver same(reasoner, cfg, 99);
  mem::load_adapter(path, same);
  CHECK(std::vector<float>(same.params().begin(), same.params().end()) ==
        std::vector<float>(w.params().begin(), w.params().end()));
  mem::memgen_config other_alpha = cfg;
  other_alpha.weaver_lora.alpha = 8.0f;
  mem::weaver alpha(reasoner, other_alpha, 1);
  const std::vector<float> before(alpha.params().begin(), alpha.params().end());
  CHECK_THROWS_WITH(mem::load_adapter(path, alpha), Catch::Contains("lora.alpha is 4, the module's is 8"));
  CHECK(std::vector<float>(alpha.params().begin(), alpha.params().end()) == before);
  xm::transformer other_reasoner(tiny(), 4);
  mem::weaver elsewhere(other_reasoner, cfg, 1);
  CHECK_THROWS_WITH(mem::load_adapter(path, elsewhere), Catch::Contains("trained on other base weights"));
  mem::memgen_config more_latents = cfg;
  more_latents.prompt_latents = 5;
  mem::weaver bigger(reasoner, more_latents, 1);
  CHECK_THROWS_WITH(mem::load_adapter(path, bigger),
                    Catch::Contains("weaver.prompt_query_latents' has shape"));
  {  // flip one byte of the data: the content hash catches it
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  CHECK_THROWS_WITH(mem::load_adapter(path, same), Catch::Contains("the file is corrupted"));
  mem::trigger trig(reasoner, cfg, 5);
  trig.head_bias()[1] = 0.25f;
  mem::save_adapter(dir / "trigger.safetensors", trig);
  mem::trigger trig2(reasoner, cfg, 6);
  mem::load_adapter(dir / "trigger.safetensors", trig2);
  CHECK(std::vector<float>(trig2.params().begin(), trig2.params().end()) ==
        std::vector<float>(trig.params().begin(), trig.params().end()));
  CHECK_THROWS_WITH(mem::load_adapter(dir / "trigger.safetensors", same),
                    Catch::Contains("module is trigger, the module's is weaver"));
  std::filesystem::remove_all(dir);
}
