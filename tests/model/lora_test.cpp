// LoRA on the reference transformer: a hand-computed delta, B = 0 leaves the model bit for bit,
// the adapter equals merged weights W + s B A, finite-difference gradients for A and B, a frozen
// base's gradients stay exactly zero, dropout masks follow their key, decoding with an adapter
// equals the forward pass, the hidden-state entry points, and bad input.
#include "xplor/model/lora.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "../gradient_check.hpp"
#include "xplor/model/decode.hpp"
#include "xplor/model/transformer.hpp"

using namespace xplor::model;

namespace {

transformer_config tiny(norm_kind norm = norm_kind::layernorm) {
  transformer_config c;
  c.vocab_size = 13;
  c.d_model = 8;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 12;
  c.max_seq_len = 8;
  c.norm = norm;
  c.init_std = 0.3f;
  return c;
}

/// An adapter's table and buffers, with A and B drawn at random (B = 0 unless random_b).
struct adapter {
  parameter_layout table;
  lora_layout layout;
  std::vector<float> params, grads;
  adapter(const transformer_config& c, const lora_config& lc, bool random_b, std::uint32_t seed)
      : layout(c, lc, table) {
    params.assign(static_cast<std::size_t>(table.total), 0.0f);
    grads.assign(params.size(), 0.0f);
    layout.initialize(params, seed);
    if (random_b) xplor::testing::randomize_lora_b(table, params, seed, 0.1f);
  }
  lora_weights weights(bool training = false, std::uint64_t key = 0) {
    return {&layout, params.data(), grads.data(), training, key};
  }
};

lora_config all_targets(int rank, float dropout = 0.0f) {
  lora_config lc;
  lc.rank = rank;
  lc.alpha = 6.0f;
  lc.targets = {lora_target::q, lora_target::k, lora_target::v, lora_target::o};
  lc.dropout = dropout;
  return lc;
}

std::vector<std::int32_t> random_tokens(std::int64_t n, int V, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  for (auto& x : t) x = static_cast<std::int32_t>(rng() % static_cast<unsigned>(V));
  return t;
}

}  // namespace

TEST_CASE("lora_forward adds the hand-computed delta", "[model][lora]") {
  // C = 2, r = 1, alpha 2: x = (1, 2), A = (0.5, -1) -> u = -1.5; B = (2, 3)^T -> delta = 2 u B =
  // (-6, -9), added to y = (1, 1).
  transformer_config c = tiny();
  c.d_model = 2;
  c.n_heads = 1;
  c.n_layers = 1;
  lora_config lc;
  lc.rank = 1;
  lc.alpha = 2.0f;
  lc.targets = {lora_target::o};
  lc.dropout = 0.0f;
  parameter_layout table;
  const lora_layout layout(c, lc, table);
  REQUIRE(table.tensors.size() == 2);
  CHECK(table.tensors[0].name == "base_model.model.layers.0.attn.o_proj.lora_A.weight");
  CHECK(table.tensors[1].name == "base_model.model.layers.0.attn.o_proj.lora_B.weight");
  std::vector<float> params{0.5f, -1.0f, 2.0f, 3.0f};
  const std::vector<float> x{1.0f, 2.0f};
  std::vector<float> y{1.0f, 1.0f};
  lora_cache cache;
  lora_forward({&layout, params.data(), nullptr, false, 0}, 0, lora_site::out, x.data(), 1, y.data(), &cache);
  CHECK(y[0] == -5.0f);
  CHECK(y[1] == -8.0f);
  // Backward of sum(dy * y) with dy = (1, -1): dB = s dy^T u = 2 * (-1.5) * (1, -1) = (-3, 3);
  // du = s dy . B = 2 (2 - 3) = -2; dA = du x = (-2, -4); dx = du A = (-1, 2).
  std::vector<float> grads(4, 0.0f), dx(2, 0.0f);
  const std::vector<float> dy{1.0f, -1.0f};
  lora_backward({&layout, params.data(), grads.data(), false, 0}, 0, lora_site::out, x.data(), dy.data(), 1,
                dx.data(), cache);
  CHECK(grads == std::vector<float>{-2.0f, -4.0f, -3.0f, 3.0f});
  CHECK(dx == std::vector<float>{-1.0f, 2.0f});
}

TEST_CASE("a new adapter (B = 0) leaves the model's logits bit for bit", "[model][lora]") {
  for (auto norm : {norm_kind::rmsnorm, norm_kind::layernorm}) {
    transformer m(tiny(norm), 4);
    const auto tokens = random_tokens(2 * 7, 13, 1);
    m.forward({tokens, 2, 7, {}, {}, {}});
    const std::vector<float> plain(m.logits().data(), m.logits().data() + 2 * 7 * 13);
    adapter a(m.config(), all_targets(3), false, 5);
    m.attach(a.weights());
    m.forward({tokens, 2, 7, {}, {}, {}});
    for (std::size_t i = 0; i < plain.size(); ++i) REQUIRE(m.logits().data()[i] == plain[i]);
  }
}

TEST_CASE("an adapter equals the merged weights W + (alpha / r) B A", "[model][lora][property]") {
  for (std::uint32_t seed = 1; seed <= 4; ++seed) {
    transformer m(tiny(seed % 2 ? norm_kind::rmsnorm : norm_kind::layernorm), seed);
    lora_config lc = all_targets(static_cast<int>(seed));
    if (seed == 3) lc.targets = {lora_target::v};
    adapter a(m.config(), lc, true, seed + 10);
    const auto tokens = random_tokens(7, 13, seed);
    m.attach(a.weights());
    m.forward({tokens, 1, 7, {}, {}, {}});
    const std::vector<float> with_adapter(m.logits().data(), m.logits().data() + 7 * 13);
    m.detach();
    const int C = 8, r = lc.rank;
    for (int l = 0; l < 2; ++l)
      for (lora_target t : lc.targets) {
        const std::string layer = "layers." + std::to_string(l) + ".";
        auto w = m.param(layer + (t == lora_target::o ? "attn.out.weight" : "attn.qkv.weight"));
        const int row0 = t == lora_target::k ? C : t == lora_target::v ? 2 * C : 0;
        const float* A = a.params.data() + a.layout.a(l, t);
        const float* B = a.params.data() + a.layout.b(l, t);
        for (int o = 0; o < C; ++o)
          for (int i = 0; i < C; ++i) {
            float s = 0.0f;
            for (int k = 0; k < r; ++k) s += B[o * r + k] * A[k * C + i];
            w[static_cast<std::size_t>((row0 + o) * C + i)] += a.layout.scale() * s;
          }
      }
    m.forward({tokens, 1, 7, {}, {}, {}});
    for (std::size_t i = 0; i < with_adapter.size(); ++i)
      REQUIRE(m.logits().data()[i] == Approx(with_adapter[i]).margin(2e-5));
  }
}

TEST_CASE("adapter gradients match finite differences and a frozen base gets none",
          "[model][lora][property]") {
  for (float dropout : {0.0f, 0.3f}) {
    INFO("dropout " << dropout);
    transformer m(tiny(), 7);
    m.freeze();
    m.zero_grad();
    adapter a(m.config(), all_targets(2, dropout), true, 3);
    const auto tokens = random_tokens(2 * 6, 13, 2), targets = random_tokens(2 * 6, 13, 3);
    // Training mode with a fixed key: the same masks in every forward below.
    m.attach(a.weights(true, 99));
    auto loss = [&] { return double(m.forward({tokens, 2, 6, targets, {}, {}})); };
    loss();
    m.backward();
    for (float g : m.grads()) REQUIRE(g == 0.0f);
    const std::vector<float> analytic = a.grads;
    xplor::testing::check_directional_gradients(
        a.table, a.params, analytic, loss,
        [](const std::string& name) { return name.ends_with("lora_B.weight"); });
  }
}

TEST_CASE("dropout masks follow the key and the mode", "[model][lora]") {
  transformer m(tiny(), 2);
  adapter a(m.config(), all_targets(2, 0.5f), true, 8);
  const auto tokens = random_tokens(6, 13, 4);
  auto logits = [&](bool training, std::uint64_t key) {
    m.attach(a.weights(training, key));
    m.forward({tokens, 1, 6, {}, {}, {}});
    return std::vector<float>(m.logits().data(), m.logits().data() + 6 * 13);
  };
  CHECK(logits(true, 1) == logits(true, 1));
  CHECK(logits(true, 1) != logits(true, 2));
  CHECK(logits(false, 1) == logits(false, 2));
  CHECK(logits(false, 1) != logits(true, 1));
}

TEST_CASE("decoding with an adapter equals the forward pass", "[model][lora][decode]") {
  transformer m(tiny(norm_kind::rmsnorm), 9);
  adapter a(m.config(), all_targets(4, 0.2f), true, 1);
  const auto tokens = random_tokens(7, 13, 8);
  m.attach(a.weights(false, 0));
  m.forward({tokens, 1, 7, {}, {}, {}});
  m.attach(a.weights(true, 3));  // the decoder runs the adapter without dropout whatever the mode
  kv_decoder dec(m);
  const auto s = dec.begin(std::span(tokens.data(), 4));
  for (int i = 4; i < 7; ++i) {
    const auto out = dec.step(std::span(&s, 1), std::span(tokens.data() + i, 1));
    for (int v = 0; v < 13; ++v) REQUIRE(out(0, v) == Approx(m.logits()(i, v)).margin(1e-5));
  }
}

TEST_CASE("forward_hidden and backward_hidden: the final norm's output and its gradient",
          "[model][lora][property]") {
  transformer m(tiny(), 12);
  const auto tokens = random_tokens(5, 13, 6);
  m.forward({tokens, 1, 5, {}, {}, {}});
  const std::vector<float> full(m.hidden().data(), m.hidden().data() + 5 * 8);
  m.forward_hidden({tokens, 1, 5, {}, {}, {}});
  CHECK(std::vector<float>(m.hidden().data(), m.hidden().data() + 5 * 8) == full);
  std::vector<float> dlogp(5, 0.0f);
  CHECK_THROWS_WITH(m.backward(std::span<const float>(dlogp)), Catch::Contains("forward_hidden"));
  // Loss = sum(w * hidden) with random w: the gradient against finite differences on the
  // embedding matrix.
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> w(5 * 8);
  for (auto& e : w) e = nd(rng);
  m.zero_grad();
  m.backward_hidden(xplor::make_view(w.data(), {5, 8}));
  auto loss = [&] {
    m.forward_hidden({tokens, 1, 5, {}, {}, {}});
    double s = 0.0;
    for (int i = 0; i < 40; ++i) s += double(w[static_cast<std::size_t>(i)]) * m.hidden().data()[i];
    return s;
  };
  const auto e = m.layout().embed;
  for (std::int32_t tok : {tokens[0], tokens[3]})
    for (int c = 0; c < 8; c += 3) {
      float& p = m.params()[static_cast<std::size_t>(e + tok * 8 + c)];
      const float h = 1e-2f;
      p += h;
      const double up = loss();
      p -= 2 * h;
      const double down = loss();
      p += h;
      REQUIRE(m.grads()[static_cast<std::size_t>(e + tok * 8 + c)] ==
              Approx((up - down) / (2 * h)).epsilon(2e-2).margin(3e-4));
    }
  std::vector<float> bad(5 * 8, 0.0f);
  bad[7] = std::nanf("");
  CHECK_THROWS_WITH(m.backward_hidden(xplor::make_view(bad.data(), {5, 8})),
                    Catch::Contains("dhidden(0, 7)"));
  CHECK_THROWS_WITH(m.backward_hidden(xplor::make_view(bad.data(), {4, 8})),
                    Catch::Contains("dhidden is 4 x 8"));
}

TEST_CASE("bad LoRA configurations and attachments are xplor::errors", "[model][lora][errors]") {
  const transformer_config c = tiny();
  parameter_layout table;
  auto make = [&](auto edit) {
    lora_config lc;
    edit(lc);
    return [=, &table] { lora_layout(c, lc, table); };
  };
  CHECK_THROWS_WITH(make([](lora_config& l) { l.rank = 0; })(), Catch::Contains("rank = 0"));
  CHECK_THROWS_WITH(make([](lora_config& l) { l.alpha = -1.0f; })(), Catch::Contains("alpha = -1"));
  CHECK_THROWS_WITH(make([](lora_config& l) { l.dropout = 1.0f; })(), Catch::Contains("dropout = 1"));
  CHECK_THROWS_WITH(make([](lora_config& l) { l.targets = {}; })(), Catch::Contains("targets is empty"));
  CHECK_THROWS_WITH(make([](lora_config& l) {
                      l.targets = {lora_target::q, lora_target::q};
                    })(),
                    Catch::Contains("targets[1] = q is listed twice"));
  CHECK_THROWS_WITH(make([](lora_config& l) { l.targets = {static_cast<lora_target>(7)}; })(),
                    Catch::Contains("targets[0] = 7"));
  transformer_config other = c;
  other.d_model = 16;
  adapter a(other, lora_config{}, false, 1);
  transformer m(c, 1);
  CHECK_THROWS_WITH(m.attach(a.weights()), Catch::Contains("the adapter is for d_model 16"));
  CHECK(m.adapter() == nullptr);
}
