// The Thoughtbubbles model: the plain transformer's bits without forks, the stream invariants
// inside a forward pass, finite-difference gradients through the scores into the fork weights,
// causality without budget competition, learning with AdamW, and bad input.
#include "xplor/bubble/model.hpp"
#include "xplor/bubble/checkpoint.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <random>
#include <vector>

#include "xplor/model/optim.hpp"

namespace xb = xplor::bubble;
namespace xm = xplor::model;

namespace {

xm::transformer_config tiny(xm::norm_kind norm = xm::norm_kind::rmsnorm,
                            xm::mlp_kind mlp = xm::mlp_kind::swiglu, bool tie = true) {
  xm::transformer_config c;
  c.vocab_size = 19;
  c.d_model = 16;
  c.n_layers = 3;
  c.n_heads = 2;
  c.d_ff = 24;
  c.max_seq_len = 16;
  c.norm = norm;
  c.mlp = mlp;
  c.tie_embeddings = tie;
  return c;
}

xb::bubble_config plan(std::vector<xb::layer_kind> kinds, std::int64_t block, std::int64_t max_block,
                       bool channel = true) {
  xb::bubble_config b;
  b.plan = std::move(kinds);
  b.block_size = block;
  b.max_block_size = max_block;
  b.fork_channel = channel;
  return b;
}

constexpr auto R = xb::layer_kind::regular;
constexpr auto F = xb::layer_kind::fork;

struct batch {
  std::vector<std::int32_t> tokens, targets;
  std::int64_t B, T;
  batch(std::int64_t b, std::int64_t t, std::uint32_t seed, int vocab = 19) : B(b), T(t) {
    std::mt19937 rng(seed);
    for (std::int64_t i = 0; i < B * T; ++i) {
      tokens.push_back(static_cast<std::int32_t>(rng() % static_cast<unsigned>(vocab)));
      targets.push_back(static_cast<std::int32_t>(rng() % static_cast<unsigned>(vocab)));
    }
  }
  xm::forward_batch view() const { return {tokens, B, T, targets, {}, {}}; }
};

}  // namespace

TEST_CASE("bubble model without forks or score channel is the transformer, bit for bit", "[bubble][model]") {
  for (auto norm : {xm::norm_kind::rmsnorm, xm::norm_kind::layernorm})
    for (auto mlp : {xm::mlp_kind::gelu, xm::mlp_kind::swiglu}) {
      const auto cfg = tiny(norm, mlp, mlp == xm::mlp_kind::gelu);
      xm::transformer plain(cfg, 4);
      xb::transformer bubble(cfg, plan({R, R, R}, 8, 16, false), 4);
      REQUIRE(bubble.num_params() == plain.num_params());
      REQUIRE(std::equal(plain.params().begin(), plain.params().end(), bubble.params().begin()));
      const batch b(3, 7, 5);
      const float lp = plain.forward(b.view()), lb = bubble.forward(b.view());
      CHECK(lp == lb);
      const auto zp = plain.logits(), zb = bubble.logits();
      REQUIRE(zp.rows() == zb.rows());
      bool same = true;
      for (std::int64_t i = 0; i < zp.rows(); ++i)
        for (std::int64_t v = 0; v < zp.cols(); ++v) same = same && zp(i, v) == zb(i, v);
      CHECK(same);
      plain.zero_grad();
      bubble.zero_grad();
      plain.backward();
      bubble.backward();
      CHECK(std::equal(plain.grads().begin(), plain.grads().end(), bubble.grads().begin()));
      // With the score channel the last q / k dimension of each head carries c = 0 instead.
      xb::transformer channel(cfg, plan({R, R, R}, 8, 16, true), 4);
      channel.forward(b.view());
      const auto zc = channel.logits();
      bool differs = false;
      for (std::int64_t i = 0; i < zp.rows(); ++i)
        for (std::int64_t v = 0; v < zp.cols(); ++v) differs = differs || zc(i, v) != zp(i, v);
      CHECK(differs);
    }
}

TEST_CASE("bubble model: streams after each fork layer keep the invariants", "[bubble][model]") {
  const auto cfg = tiny();
  xb::transformer m(cfg, plan({R, F, F}, 8, 12), 9);
  const batch b(2, 8, 3);
  m.forward(b.view());
  for (std::int64_t row = 0; row < 2; ++row) {
    CHECK(m.stream_tokens(0, row).size() == 8);
    for (int l = 1; l < 3; ++l) {
      const auto tok = m.stream_tokens(l, row);
      const auto c = m.stream_scores(l, row);
      CHECK(tok.size() == 12);  // ceil(8 * 12 / 8) kept at each fork
      CHECK(tok.front() == 0);
      CHECK(tok.back() == 7);
      for (std::size_t i = 1; i < tok.size(); ++i) CHECK((tok[i] == tok[i - 1] || tok[i] == tok[i - 1] + 1));
      for (float s : c) CHECK((s <= 0.0f && s >= -40.0f));
    }
  }
  CHECK(m.streams(2) == 24);
  // Budget 0 (max_block_size = block_size): one stream per token, but the keep scores still gate.
  xb::transformer none(cfg, plan({R, F, R}, 8, 8), 9);
  xb::transformer flat(cfg, plan({R, R, R}, 8, 8), 9);
  const float with_scores = none.forward(b.view());
  CHECK(none.streams(1) == 16);
  for (std::int64_t row = 0; row < 2; ++row)
    for (std::int32_t t = 0; t < 8; ++t) CHECK(none.stream_tokens(1, row)[static_cast<std::size_t>(t)] == t);
  CHECK(with_scores != flat.forward(b.view()));
}

TEST_CASE("bubble model gradients match finite differences through the scores", "[bubble][model][property]") {
  int combo = 0;
  for (auto norm : {xm::norm_kind::rmsnorm, xm::norm_kind::layernorm})
    for (auto mlp : {xm::mlp_kind::gelu, xm::mlp_kind::swiglu}) {
      const bool channel = combo++ % 2 == 0;
      INFO("norm " << to_string(norm) << ", mlp " << to_string(mlp) << ", channel " << channel);
      const auto cfg = tiny(norm, mlp, combo % 3 != 0);
      xb::transformer m(cfg, plan({F, R, F}, 6, 9, channel), 21);
      // Larger score weights so that the scores (and their gradients) are far from zero.
      for (const auto& t : m.layout().tensors)
        if (t.name.ends_with("fork.score.weight"))
          for (std::int64_t i = 0; i < t.size; ++i)
            m.params()[static_cast<std::size_t>(t.offset + i)] *= 40.0f;
      const batch b(2, 6, 13);
      m.zero_grad();
      m.forward(b.view());
      m.backward();
      const std::vector<float> grads(m.grads().begin(), m.grads().end());
      auto selection = [&] {
        std::vector<std::int32_t> all;
        for (int l = 0; l < 3; ++l)
          for (std::int64_t row = 0; row < 2; ++row) {
            const auto tok = m.stream_tokens(l, row);
            all.insert(all.end(), tok.begin(), tok.end());
          }
        return all;
      };
      const auto chosen = selection();
      std::mt19937 rng(23);
      std::normal_distribution<float> nd(0.0f, 1.0f);
      for (const auto& t : m.layout().tensors) {
        INFO("tensor " << t.name);
        std::vector<float> u(static_cast<std::size_t>(t.size));
        double norm_u = 0;
        for (auto& e : u) e = nd(rng), norm_u += double(e) * e;
        double analytic = 0;
        for (std::int64_t i = 0; i < t.size; ++i)
          analytic += grads[static_cast<std::size_t>(t.offset + i)] * u[static_cast<std::size_t>(i)] /
                      std::sqrt(norm_u);
        const float h = 3e-3f;
        auto shifted = [&](float s) {
          std::vector<float> saved(m.params().begin() + t.offset, m.params().begin() + t.offset + t.size);
          for (std::int64_t i = 0; i < t.size; ++i)
            m.params()[static_cast<std::size_t>(t.offset + i)] +=
                s * h * u[static_cast<std::size_t>(i)] / static_cast<float>(std::sqrt(norm_u));
          const double loss = m.forward(b.view());
          REQUIRE(selection() == chosen);  // the step did not move the top-k choice
          std::copy(saved.begin(), saved.end(), m.params().begin() + t.offset);
          return loss;
        };
        const double numeric = (shifted(1.0f) - shifted(-1.0f)) / (2.0 * h);
        CHECK(analytic == Approx(numeric).epsilon(3e-2).margin(2e-3));
      }
    }
}

TEST_CASE("bubble model: without budget competition earlier logits ignore later tokens", "[bubble][model]") {
  // One fork layer keeping every candidate (max_block_size = 2 block_size): the streams of token t
  // see only streams of tokens <= t, so logits at t cannot depend on token t + 1.
  const auto cfg = tiny();
  xb::transformer m(cfg, plan({R, F, R}, 8, 16), 2);
  batch b(1, 8, 17);
  m.forward(b.view());
  const auto before = m.logits();
  std::vector<float> first(before.data(), before.data() + 8 * cfg.vocab_size);
  for (std::int64_t t = 0; t + 1 < 8; ++t) {
    batch moved = b;
    moved.tokens[static_cast<std::size_t>(t + 1)] = (moved.tokens[static_cast<std::size_t>(t + 1)] + 5) % 19;
    m.forward(moved.view());
    const auto z = m.logits();
    for (std::int64_t i = 0; i <= t; ++i)
      for (std::int64_t v = 0; v < cfg.vocab_size; ++v)
        REQUIRE(z(i, v) == first[static_cast<std::size_t>(i * cfg.vocab_size + v)]);
    bool changed = false;
    for (std::int64_t v = 0; v < cfg.vocab_size; ++v)
      changed = changed || z(t + 1, v) != first[static_cast<std::size_t>((t + 1) * cfg.vocab_size + v)];
    CHECK(changed);
  }
}

TEST_CASE("a bubble model learns with AdamW", "[bubble][model][learning]") {
  // Copy the previous token: a task a 2-layer model learns within a few hundred steps.
  auto cfg = tiny();
  cfg.n_layers = 2;
  xb::transformer m(cfg, plan({R, F}, 12, 18), 5);
  xm::adamw opt(m.layout(), {.lr = 1e-2f, .weight_decay = 0.0f});
  std::mt19937 rng(1);
  float first = 0, last = 0;
  for (int step = 0; step < 150; ++step) {
    std::vector<std::int32_t> tokens(4 * 12), targets(4 * 12, xm::ignore_target);
    for (auto& t : tokens) t = static_cast<std::int32_t>(rng() % 16);
    for (int r = 0; r < 4; ++r)
      for (int t = 1; t < 12; ++t)
        targets[static_cast<std::size_t>(r * 12 + t)] = tokens[static_cast<std::size_t>(r * 12 + t - 1)];
    m.zero_grad();
    const float loss = m.forward({tokens, 4, 12, targets, {}, {}});
    m.backward();
    opt.step(m.params(), m.grads(), 1e-2f);
    if (step == 0) first = loss;
    last = loss;
  }
  CHECK(first > 2.5f);
  CHECK(last < 0.5f * first);
}

TEST_CASE("bubble model: bad configurations and input are xplor::errors", "[bubble][model][errors]") {
  using Catch::Matchers::Contains;
  auto cfg = tiny();
  CHECK_THROWS_WITH(xb::transformer(cfg, plan({R, F}, 8, 12), 1),
                    Contains("plan has 2 entries for 3 layers"));
  CHECK_THROWS_WITH(xb::transformer(cfg, plan({R, F, R}, 8, 17), 1), Contains("max_block_size = 17"));
  cfg.positions = xm::position_kind::learned;
  CHECK_THROWS_WITH(xb::transformer(cfg, plan({R, F, R}, 8, 12), 1), Contains("positions = learned"));
  xb::transformer m(tiny(), plan({R, F, R}, 8, 12), 1);
  CHECK_THROWS_WITH(m.stream_tokens(0, 0), Contains("run forward first"));
  const std::vector<std::int32_t> tokens{1, xm::latent_slot, 3};
  const std::vector<float> latent(16, 0.0f);
  CHECK_THROWS_WITH(m.forward({tokens, 1, 3, {}, {}, xplor::make_view(latent.data(), {1, 16})}),
                    Contains("token ids only"));
  const batch b(1, 5, 2);
  m.forward(b.view());
  CHECK_THROWS_WITH(m.stream_tokens(3, 0), Contains("layer = 3 is outside [0, 3)"));
  CHECK_THROWS_WITH(m.stream_tokens(1, 1), Contains("row 1 is outside [0, 1)"));
  CHECK_THROWS_WITH(m.backward(std::vector<float>(4, 0.0f)),
                    Contains("dlogp has 4 elements for 5 positions"));
  const std::vector<std::int32_t> bad{1, 2, 99};
  CHECK_THROWS_WITH(m.forward({bad, 1, 3, {}, {}, {}}),
                    Contains("tokens[2] = 99 is outside [0, vocab_size = 19)"));
}

TEST_CASE("bubble checkpoints round-trip with the optimizer and refuse other configurations",
          "[bubble][model][checkpoint]") {
  using Catch::Matchers::Contains;
  const auto dir = std::filesystem::temp_directory_path() / "xplor_bubble_checkpoint_test";
  std::filesystem::create_directories(dir);
  const auto file = dir / "bubble.safetensors";
  const auto cfg = tiny();
  xb::transformer m(cfg, plan({R, F, R}, 8, 12), 3);
  xm::adamw opt(m.layout(), {.lr = 1e-2f});
  const batch b(2, 8, 4);
  m.forward(b.view());
  m.backward();
  opt.step(m.params(), m.grads(), 1e-2f);
  xb::save_checkpoint(file, m, &opt, {{"step", "1"}});

  xb::transformer back(cfg, plan({R, F, R}, 8, 12), 99);
  xm::adamw back_opt(back.layout(), {.lr = 1e-2f});
  const auto meta = xb::load_checkpoint(file, back, &back_opt);
  CHECK(meta.at("step") == "1");
  CHECK(std::equal(m.params().begin(), m.params().end(), back.params().begin()));
  CHECK(std::equal(opt.second_moment().begin(), opt.second_moment().end(), back_opt.second_moment().begin()));
  CHECK(back.forward(b.view()) == m.forward(b.view()));

  xb::transformer other(cfg, plan({R, F, R}, 8, 16), 3);
  CHECK_THROWS_WITH(xb::load_checkpoint(file, other), Contains("bubble.max_block_size: file 12, model 16"));
  xm::transformer plain(cfg, 3);
  CHECK_THROWS_WITH(xm::load_checkpoint(file, plain), Contains("unexpected tensor 'layers.1.fork."));
  xm::save_checkpoint(dir / "plain.safetensors", plain);
  CHECK_THROWS_WITH(xb::load_checkpoint(dir / "plain.safetensors", back),
                    Contains("not a bubble model's checkpoint"));
  std::filesystem::remove_all(dir);
}
