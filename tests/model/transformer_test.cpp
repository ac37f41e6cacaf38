#include "xplor/model/transformer.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "xplor/model/optim.hpp"

using namespace xplor::model;

namespace {

transformer_config tiny(norm_kind norm, position_kind pos, mlp_kind mlp, bool tie) {
  transformer_config c;
  c.vocab_size = 13;
  c.d_model = 8;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 12;
  c.max_seq_len = 6;
  c.norm = norm;
  c.positions = pos;
  c.mlp = mlp;
  c.tie_embeddings = tie;
  c.init_std = 0.3f;  // large weights: a strongly non-linear function for gradient checks
  return c;
}

struct toy_batch {
  std::vector<std::int32_t> tokens, targets;
  std::vector<float> mask;
  forward_batch view(std::int64_t B, std::int64_t T) const { return {tokens, B, T, targets, mask, {}}; }
};

toy_batch random_batch(std::int64_t B, std::int64_t T, int V, std::uint32_t seed) {
  std::mt19937 rng(seed);
  toy_batch b;
  for (std::int64_t i = 0; i < B * T; ++i) {
    b.tokens.push_back(static_cast<std::int32_t>(rng() % V));
    b.targets.push_back(i % 5 == 3 ? ignore_target : static_cast<std::int32_t>(rng() % V));
    b.mask.push_back(0.5f + static_cast<float>(rng() % 3));
  }
  return b;
}

}  // namespace

TEST_CASE("parameter layout: names, shapes and the total count", "[model][transformer]") {
  auto c = tiny(norm_kind::layernorm, position_kind::learned, mlp_kind::gelu, false);
  const parameter_layout layout(c);
  // embed 13*8 + pos 6*8 + 2 layers * (16 + 192 + 64 + 16 + 96 + 96) + final 16 + lm_head 13*8
  CHECK(layout.total == 104 + 48 + 2 * 480 + 16 + 104);
  CHECK(layout.tensors.front().name == "embed.weight");
  CHECK(layout.tensors.back().name == "lm_head.weight");
  // embed, pos_embed, then per layer attn_norm.{weight,bias}, qkv, out, mlp_norm.{weight,bias}, up, down
  CHECK(layout.layers[1].qkv == layout.tensors[12].offset);
  CHECK(layout.tensors[12].name == "layers.1.attn.qkv.weight");
  auto r = tiny(norm_kind::rmsnorm, position_kind::rope, mlp_kind::swiglu, true);
  const parameter_layout lr(r);
  // embed + 2 * (8 + 192 + 64 + 8 + 3 * 96) + final 8
  CHECK(lr.total == 104 + 2 * 560 + 8);
  CHECK(lr.unembed() == lr.embed);
}

TEST_CASE("initialisation is deterministic in the seed", "[model][transformer]") {
  auto c = tiny(norm_kind::rmsnorm, position_kind::rope, mlp_kind::swiglu, true);
  transformer a(c, 7), b(c, 7), d(c, 8);
  CHECK(std::equal(a.params().begin(), a.params().end(), b.params().begin()));
  CHECK(!std::equal(a.params().begin(), a.params().end(), d.params().begin()));
  const auto w = a.param("layers.0.attn_norm.weight");
  CHECK(std::all_of(w.begin(), w.end(), [](float x) { return x == 1.0f; }));
}

TEST_CASE("the loss at a small initialisation is close to log V", "[model][transformer]") {
  auto c = tiny(norm_kind::rmsnorm, position_kind::rope, mlp_kind::swiglu, true);
  c.init_std = 0.02f;
  transformer m(c, 1);
  const auto b = random_batch(2, 6, 13, 5);
  CHECK(m.forward(b.view(2, 6)) == Approx(std::log(13.0)).margin(0.1));
}

TEST_CASE("backward matches finite differences for every option combination",
          "[model][transformer][property]") {
  int combo = 0;
  for (auto norm : {norm_kind::rmsnorm, norm_kind::layernorm})
    for (auto pos : {position_kind::learned, position_kind::rope})
      for (auto mlp : {mlp_kind::gelu, mlp_kind::swiglu}) {
        const bool tie = combo++ % 2 == 0;
        INFO("norm " << to_string(norm) << ", positions " << to_string(pos) << ", mlp " << to_string(mlp)
                     << ", tie " << tie);
        transformer m(tiny(norm, pos, mlp, tie), 11);
        const auto b = random_batch(2, 5, 13, 17);
        m.zero_grad();
        m.forward(b.view(2, 5));
        m.backward();
        const std::vector<float> grads(m.grads().begin(), m.grads().end());
        std::mt19937 rng(23);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        // A random unit direction per tensor: (L(p + h u) - L(p - h u)) / 2h against g . u.
        for (const auto& t : m.layout().tensors) {
          std::vector<float> u(static_cast<std::size_t>(t.size));
          double norm_u = 0;
          for (auto& e : u) e = nd(rng), norm_u += double(e) * e;
          double analytic = 0;
          for (std::int64_t i = 0; i < t.size; ++i)
            analytic += grads[t.offset + i] * u[i] / std::sqrt(norm_u);
          const float h = 1e-2f;
          auto shifted = [&](float s) {
            std::vector<float> saved(m.params().begin() + t.offset, m.params().begin() + t.offset + t.size);
            for (std::int64_t i = 0; i < t.size; ++i)
              m.params()[t.offset + i] += s * h * u[i] / static_cast<float>(std::sqrt(norm_u));
            const double loss = m.forward(b.view(2, 5));
            std::copy(saved.begin(), saved.end(), m.params().begin() + t.offset);
            return loss;
          };
          const double numeric = (shifted(1.0f) - shifted(-1.0f)) / (2.0 * h);
          INFO("tensor " << t.name);
          REQUIRE(analytic == Approx(numeric).epsilon(2e-2).margin(3e-4));
        }
      }
}

TEST_CASE("the weighted path: backward(dlogp) is the gradient of sum dlogp * log p", "[model][transformer]") {
  transformer m(tiny(norm_kind::rmsnorm, position_kind::rope, mlp_kind::swiglu, false), 3);
  const auto b = random_batch(1, 6, 13, 9);
  m.forward(b.view(1, 6));
  std::vector<float> dlogp(6);
  for (int n = 0; n < 6; ++n) dlogp[n] = b.targets[n] >= 0 ? 0.3f * float(n) - 0.7f : 0.0f;
  m.zero_grad();
  m.backward(std::span<const float>(dlogp));
  // Along the gradient direction itself: d/dh sum dlogp * logp(p + h g) = |g|^2.
  const std::vector<float> g(m.grads().begin(), m.grads().end());
  double g2 = 0;
  for (float x : g) g2 += double(x) * x;
  auto objective = [&](float h) {
    for (std::size_t i = 0; i < g.size(); ++i) m.params()[i] += h * g[i];
    m.forward(b.view(1, 6));
    double s = 0;
    for (int n = 0; n < 6; ++n) s += dlogp[n] * m.target_logprobs()[n];
    for (std::size_t i = 0; i < g.size(); ++i) m.params()[i] -= h * g[i];
    return s;
  };
  const float h = 1e-3f / static_cast<float>(std::sqrt(g2));
  CHECK((objective(h) - objective(-h)) / (2 * h) == Approx(g2).epsilon(2e-2));
}

TEST_CASE("a latent slot holding a token's embedding equals that token", "[model][transformer]") {
  for (auto pos : {position_kind::learned, position_kind::rope}) {
    transformer m(tiny(norm_kind::layernorm, pos, mlp_kind::gelu, true), 5);
    const std::vector<std::int32_t> tokens{1, 4, 7, 2}, with_latent{1, latent_slot, 7, 2};
    const auto e = m.param("embed.weight");
    const std::vector<float> latent(e.begin() + 4 * 8, e.begin() + 5 * 8);
    m.forward({tokens, 1, 4, {}, {}, {}});
    const std::vector<float> ref(m.logits().data(), m.logits().data() + 4 * 13);
    m.forward({with_latent, 1, 4, {}, {}, xplor::make_view(latent.data(), {1, 8})});
    for (int i = 0; i < 4 * 13; ++i) REQUIRE(m.logits().data()[i] == Approx(ref[i]).margin(1e-6));
  }
}

TEST_CASE("latent gradients match finite differences", "[model][transformer]") {
  transformer m(tiny(norm_kind::rmsnorm, position_kind::rope, mlp_kind::swiglu, true), 6);
  const std::vector<std::int32_t> tokens{3, latent_slot, 5, latent_slot, 1};
  const std::vector<std::int32_t> targets{ignore_target, 5, 9, 1, 2};
  std::vector<float> latents{0.3f,  -0.2f, 0.1f, 0.5f,  -0.4f, 0.2f, 0.0f, 0.7f,
                             -0.1f, 0.2f,  0.3f, -0.6f, 0.1f,  0.4f, 0.2f, -0.3f};
  auto run = [&] { return m.forward({tokens, 1, 5, targets, {}, xplor::make_view(latents.data(), {2, 8})}); };
  run();
  m.backward();
  const auto lg = m.latent_grads();
  REQUIRE(lg.rows() == 2);
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 8; ++c) {
      const float h = 1e-2f;
      float& x = latents[r * 8 + c];
      x += h;
      const double lp = run();
      x -= 2 * h;
      const double lm = run();
      x += h;
      REQUIRE(lg(r, c) == Approx((lp - lm) / (2 * h)).epsilon(3e-2).margin(3e-4));
    }
}

TEST_CASE("hooks see every residual and can steer the stream", "[model][transformer]") {
  transformer m(tiny(norm_kind::rmsnorm, position_kind::rope, mlp_kind::swiglu, true), 2);
  const std::vector<std::int32_t> tokens{1, 2, 3};
  int calls = 0;
  forward_hooks read_only;
  read_only.after_block = [&](int layer, xplor::view2d<float> residual) {
    CHECK(layer == calls++);
    CHECK(residual.rows() == 3);
  };
  m.forward({tokens, 1, 3, {}, {}, {}}, read_only);
  CHECK(calls == 2);
  const std::vector<float> base(m.logits().data(), m.logits().data() + 3 * 13);
  const std::vector<float> last_residual(m.residual(2).data(), m.residual(2).data() + 3 * 8);
  forward_hooks steer;
  steer.after_block = [](int layer, xplor::view2d<float> residual) {
    if (layer == 1) residual(2, 0) += 1.0f;
  };
  m.forward({tokens, 1, 3, {}, {}, {}}, steer);
  CHECK(m.residual(2)(2, 0) == Approx(last_residual[2 * 8] + 1.0f));
  for (int v = 0; v < 2 * 13; ++v) REQUIRE(m.logits().data()[v] == base[v]);  // rows 0, 1 untouched
  CHECK(m.logits()(2, 0) != base[2 * 13]);
  CHECK_THROWS_WITH(m.residual(3), Catch::Contains("layer = 3"));
}

TEST_CASE("forward and backward reject bad input", "[model][transformer]") {
  transformer m(tiny(norm_kind::rmsnorm, position_kind::rope, mlp_kind::swiglu, true), 1);
  const std::vector<std::int32_t> ok{1, 2, 3}, too_big{1, 13, 3}, long_seq(7, 1);
  CHECK_THROWS_WITH(m.forward({too_big, 1, 3, {}, {}, {}}),
                    Catch::Contains("tokens[1] = 13 is outside [0, vocab_size = 13)"));
  CHECK_THROWS_WITH(m.forward({long_seq, 1, 7, {}, {}, {}}),
                    Catch::Contains("seq_len = 7 is outside [1, max_seq_len = 6]"));
  CHECK_THROWS_WITH(m.forward({ok, 2, 3, {}, {}, {}}),
                    Catch::Contains("tokens has 3 elements for batch x seq_len = 6"));
  const std::vector<std::int32_t> bad_targets{1, 2, 99};
  CHECK_THROWS_WITH(m.forward({ok, 1, 3, bad_targets, {}, {}}), Catch::Contains("targets[2] = 99"));
  const std::vector<float> bad_mask{1.0f, -1.0f, 1.0f};
  CHECK_THROWS_WITH(m.forward({ok, 1, 3, ok, bad_mask, {}}), Catch::Contains("loss_mask[1] = -1"));
  const std::vector<std::int32_t> latent{1, latent_slot, 3};
  CHECK_THROWS_WITH(m.forward({latent, 1, 3, {}, {}, {}}),
                    Catch::Contains("latents has 0 rows for 1 latent_slot"));
  m.forward({ok, 1, 3, ok, {}, {}});
  const std::vector<float> short_dlogp(2, 0.0f);
  CHECK_THROWS_WITH(m.backward(std::span<const float>(short_dlogp)),
                    Catch::Contains("dlogp has 2 elements for 3"));
  const std::vector<float> nan_dlogp{0.0f, NAN, 0.0f};
  CHECK_THROWS_WITH(m.backward(std::span<const float>(nan_dlogp)), Catch::Contains("dlogp[1] = nan"));
  auto c = tiny(norm_kind::rmsnorm, position_kind::rope, mlp_kind::swiglu, true);
  c.n_heads = 3;
  CHECK_THROWS_WITH(transformer(c), Catch::Contains("n_heads = 3 must divide d_model = 8"));
  CHECK_THROWS_WITH(m.param("nope"), Catch::Contains("no tensor named 'nope'"));
  CHECK_THROWS_WITH(adamw(m.layout(), {.lr = -1.0f}), Catch::Contains("lr = -1 is negative"));
  CHECK_THROWS_WITH(adamw(m.layout(), {.beta1 = 1.0f}), Catch::Contains("beta1 = 1 is outside [0, 1)"));
  CHECK_THROWS_WITH(adamw(m.layout(), {.beta2 = -0.5f}), Catch::Contains("beta2 = -0.5"));
  CHECK_THROWS_WITH(adamw(m.layout(), {.eps = 0.0f}), Catch::Contains("eps = 0 must be positive"));
  CHECK_THROWS_WITH(adamw(m.layout(), {.weight_decay = -0.1f}), Catch::Contains("weight_decay = -0.1"));
}

TEST_CASE("a 2-layer model learns to reverse short strings", "[model][transformer][learning]") {
  // Sequences "a b c d | d c b a" over 8 letters (tokens 0..7, separator 8); the loss counts only
  // the reversed half, which is unpredictable without attention to the right earlier token.
  transformer_config c;
  c.vocab_size = 9;
  c.d_model = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.d_ff = 128;
  c.max_seq_len = 9;
  transformer m(c, 1);
  adamw opt(m.layout(), {.lr = 3e-3f, .weight_decay = 0.0f});
  const cosine_schedule lr{.max_lr = 3e-3f, .min_lr = 3e-4f, .warmup_steps = 20, .total_steps = 400};
  const int B = 32, T = 9, K = 4;
  std::mt19937 rng(4);
  auto make_batch = [&](toy_batch& b) {
    b.tokens.assign(B * T, 0);
    b.targets.assign(B * T, ignore_target);
    for (int i = 0; i < B; ++i) {
      std::int32_t* row = b.tokens.data() + i * T;
      for (int k = 0; k < K; ++k) row[k] = static_cast<std::int32_t>(rng() % 8);
      row[K] = 8;
      for (int k = 0; k < K; ++k) row[K + 1 + k] = row[K - 1 - k];
      for (int t = K; t < T - 1; ++t) b.targets[i * T + t] = row[t + 1];  // predict the reversal
    }
  };
  toy_batch batch;
  float loss = 0;
  for (int step = 0; step < 400; ++step) {
    make_batch(batch);
    m.zero_grad();
    loss = m.forward({batch.tokens, B, T, batch.targets, {}, {}});
    m.backward();
    clip_grad_norm(m.grads(), 1.0f);
    opt.step(m.params(), m.grads(), lr(step));
  }
  // Chance level is log 8 = 2.08 nats per reversed token.
  make_batch(batch);
  const float held_out = m.forward({batch.tokens, B, T, batch.targets, {}, {}});
  INFO("last training loss " << loss << ", held-out loss " << held_out);
  CHECK(held_out < 0.1f);
}

TEST_CASE("the packed forward kernel: the streamed kernel's results within float rounding",
          "[model][transformer]") {
  int combo = 0;
  for (auto norm : {norm_kind::rmsnorm, norm_kind::layernorm})
    for (auto mlp : {mlp_kind::gelu, mlp_kind::swiglu}) {
      transformer m(tiny(norm, position_kind::rope, mlp, combo++ % 2 == 0), 5);
      const auto b = random_batch(3, 6, 13, 29);
      auto run = [&](dense::forward_kernel kernel) {
        m.set_forward_kernel(kernel);
        CHECK(m.forward_kernel() == kernel);
        m.zero_grad();
        const float loss = m.forward(b.view(3, 6));
        m.backward();
        const auto logits = m.logits();
        std::vector<float> out(logits.data(), logits.data() + logits.size());
        out.insert(out.end(), m.grads().begin(), m.grads().end());
        out.push_back(loss);
        return out;
      };
      const auto streamed = run(dense::forward_kernel::streamed), packed = run(dense::forward_kernel::packed);
      REQUIRE(streamed.size() == packed.size());
      float scale = 0.0f, err = 0.0f;
      for (std::size_t i = 0; i < streamed.size(); ++i) {
        scale = std::max(scale, std::abs(streamed[i]));
        err = std::max(err, std::abs(streamed[i] - packed[i]));
      }
      INFO("norm " << to_string(norm) << ", mlp " << to_string(mlp));
      CHECK(err <= 1e-5f * scale);
      CHECK(err > 0.0f);  // the two kernels sum in different orders: the switch takes effect
    }
}

#if XPLOR_HAS_OPENMP
TEST_CASE("forward and backward give the same bits on 1, 2 and 3 threads", "[model][threads]") {
  // Shapes where Eigen would split the products over threads (and choose its depth blocking by
  // the thread count): 4 x 96 tokens, d_model 128, d_ff 512. The loss bits differed before.
  transformer_config c;
  c.vocab_size = 64;
  c.d_model = 128;
  c.n_layers = 2;
  c.n_heads = 4;
  c.d_ff = 512;
  c.max_seq_len = 96;
  const std::int64_t B = 4, T = 96;
  std::mt19937 rng(15);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(B * T)), targets(tokens.size());
  for (auto& t : tokens) t = static_cast<std::int32_t>(rng() % 64);
  for (auto& t : targets) t = static_cast<std::int32_t>(rng() % 64);
  const int saved = omp_get_max_threads();
  for (const auto kernel : {dense::forward_kernel::streamed, dense::forward_kernel::packed}) {
    auto run = [&](int threads) {
      omp_set_num_threads(threads);
      transformer m(c, 7);
      m.set_forward_kernel(kernel);
      const float loss = m.forward({tokens, B, T, targets, {}, {}});
      m.backward();
      std::vector<float> bits(m.grads().begin(), m.grads().end());
      bits.push_back(loss);
      return bits;
    };
    const auto one = run(1);
    for (const int threads : {2, 3}) {
      const auto many = run(threads);
      CHECK(std::memcmp(one.data(), many.data(), one.size() * sizeof(float)) == 0);
    }
  }
  omp_set_num_threads(saved);
}
#endif
