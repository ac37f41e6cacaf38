// The logit lens and activation tokens by hand on a 2-dimensional model, the lens at the last
// layer equal to the model's own logits bit for bit (every norm, position and head kind), the
// aggregations, residual capture in forward passes and KV decoding, fuzzing (alpha = 0 is the
// identity, the noise is reproducible from its seed), and bad input.
#include "xplor/interp/lens.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "xplor/core/adapt_eigen.hpp"
#include "xplor/model/decode.hpp"

namespace xm = xplor::model;
namespace xi = xplor::interp;

namespace {

xm::transformer_config config(xm::norm_kind norm, xm::position_kind pos, bool tied) {
  xm::transformer_config c;
  c.vocab_size = 11;
  c.d_model = 8;
  c.n_layers = 3;
  c.n_heads = 2;
  c.d_ff = 12;
  c.max_seq_len = 16;
  c.norm = norm;
  c.positions = pos;
  c.tie_embeddings = tied;
  c.init_std = 0.3f;
  return c;
}

/// d_model 2, one head, vocab 3, RMSNorm, rotary positions (no position embedding), tied
/// unembedding, final-norm gain 1: embeddings e0 = (3, 4), e1 = (1, 0), e2 = (0, -2).
xm::transformer hand_model() {
  xm::transformer_config c;
  c.vocab_size = 3;
  c.d_model = 2;
  c.n_layers = 1;
  c.n_heads = 1;
  c.d_ff = 2;
  c.max_seq_len = 4;
  c.norm = xm::norm_kind::rmsnorm;
  c.positions = xm::position_kind::rope;
  c.tie_embeddings = true;
  xm::transformer m(c, 1);
  const std::vector<float> e{3, 4, 1, 0, 0, -2};
  std::copy(e.begin(), e.end(), m.param("embed.weight").begin());
  for (float& w : m.param("final_norm.weight")) w = 1.0f;
  return m;
}

}  // namespace

TEST_CASE("the logit lens and activation tokens by hand", "[interp][lens]") {
  xm::transformer m = hand_model();
  const std::vector<std::int32_t> tokens{0, 2};
  m.forward({tokens, 1, 2, {}, {}, {}});
  // Layer 0 is the embeddings. Row 0 = e0 = (3, 4): rms = sqrt(12.5), normed n = e0 / sqrt(12.5);
  // logits = E n = (25, 3, -8) / sqrt(12.5) (the eps 1e-5 shifts the 6th digit).
  const std::int64_t positions[] = {0, 1};
  const auto logits = xi::lens_logits(m, m.residual(0));
  const double r = std::sqrt(12.5);
  CHECK(logits[0] == Approx(25 / r).epsilon(1e-5));
  CHECK(logits[1] == Approx(3 / r).epsilon(1e-5));
  CHECK(logits[2] == Approx(-8 / r).epsilon(1e-5));
  // Row 1 = e2 = (0, -2): rms = sqrt(2), n = (0, -sqrt 2); logits = (-4 sqrt 2, 0, 2 sqrt 2).
  CHECK(logits[3] == Approx(-4 * std::sqrt(2.0)).epsilon(1e-5));
  CHECK(logits[4] == Approx(0.0).margin(1e-6));
  CHECK(logits[5] == Approx(2 * std::sqrt(2.0)).epsilon(1e-5));
  const auto probs = xi::logit_lens(m, 0, positions);
  const double z0 = std::exp(25 / r) + std::exp(3 / r) + std::exp(-8 / r);
  CHECK(probs[0] == Approx(std::exp(25 / r) / z0).epsilon(1e-5));
  CHECK(probs[2] == Approx(std::exp(-8 / r) / z0).epsilon(1e-5));
  // Activation tokens of row 0: cos(e0, e_v) = (1, 3/5, -8/10).
  const auto sim = xi::activation_token_similarity(m, 0, positions);
  CHECK(sim[0] == Approx(1.0).epsilon(1e-6));
  CHECK(sim[1] == Approx(0.6).epsilon(1e-6));
  CHECK(sim[2] == Approx(-0.8).epsilon(1e-6));
  // Row 1 = e2: cos = (-8/10, 0, 1).
  CHECK(sim[3] == Approx(-0.8).epsilon(1e-6));
  CHECK(sim[5] == Approx(1.0).epsilon(1e-6));
  // Merged over both rows, top 2: token 0 (1.0, row 0) and token 2 (1.0, row 1) tie; the lower id first.
  const auto merged = xi::merged_top_tokens(sim, 3, 2);
  REQUIRE(merged.size() == 2);
  CHECK(merged[0].token == 0);
  CHECK(merged[1].token == 2);
}

TEST_CASE("the lens at the last layer is the model's output, bit for bit", "[interp][lens]") {
  for (auto norm : {xm::norm_kind::rmsnorm, xm::norm_kind::layernorm})
    for (auto pos : {xm::position_kind::rope, xm::position_kind::learned})
      for (bool tied : {true, false}) {
        xm::transformer m(config(norm, pos, tied), 5);
        std::mt19937 rng(3);
        std::vector<std::int32_t> tokens(2 * 7);
        for (auto& t : tokens) t = static_cast<std::int32_t>(rng() % 11);
        m.forward({tokens, 2, 7, {}, {}, {}});
        const auto L = m.config().n_layers;
        const auto logits = xi::lens_logits(m, m.residual(L));
        for (std::int64_t i = 0; i < 14 * 11; ++i) REQUIRE(logits[i] == m.logits().data()[i]);
        // A subset of rows gives the same rows: the lens is per row.
        const std::int64_t some[] = {13, 2, 6};
        const auto p = xi::logit_lens(m, L, some);
        std::vector<float> softmax(14 * 11);
        xplor::softmax_rows(xplor::cpu, m.logits(), xplor::make_view(softmax.data(), {14, 11}));
        for (int i = 0; i < 3; ++i)
          for (int v = 0; v < 11; ++v) REQUIRE(p[i * 11 + v] == softmax[some[i] * 11 + v]);
        // Earlier layers are probability distributions that differ from the output.
        const auto mid = xi::logit_lens(m, 1, some);
        double total = 0.0;
        for (int v = 0; v < 11; ++v) total += mid[v];
        CHECK(total == Approx(1.0).epsilon(1e-5));
        CHECK(mid[0] != p[0]);
      }
}

TEST_CASE("aggregations, ranks and top tokens", "[interp][lens]") {
  const std::vector<float> probs{0.5f, 0.3f, 0.2f,   // row 0
                                 0.1f, 0.6f, 0.3f};  // row 1
  const auto mean = xi::mean_rows(probs, 3);
  CHECK(mean[0] == Approx(0.3f));
  CHECK(mean[1] == Approx(0.45f));
  CHECK(mean[2] == Approx(0.25f));
  // Zero token 0 in row 0 and token 1 in row 1: (0 + 0.1, 0.3 + 0, 0.2 + 0.3) / 2.
  const std::int32_t zeroed[] = {0, 1};
  const auto z = xi::mean_rows(probs, 3, zeroed);
  CHECK(z[0] == Approx(0.05f));
  CHECK(z[1] == Approx(0.15f));
  CHECK(z[2] == Approx(0.25f));
  const auto top = xi::top_tokens(z, 2);
  REQUIRE(top.size() == 2);
  CHECK(top[0].token == 2);
  CHECK(top[1].token == 1);
  CHECK(xi::token_rank(z, 2) == 1);
  CHECK(xi::token_rank(z, 0) == 3);
  const std::vector<float> tie{0.2f, 0.4f, 0.4f};
  CHECK(xi::token_rank(tie, 1) == 1);
  CHECK(xi::token_rank(tie, 2) == 2);
  CHECK(xi::top_tokens(tie, 10).size() == 3);

  // Property: on random rows the rank of top_tokens' i-th entry is i + 1.
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> row(50);
  for (auto& v : row) v = std::round(u(rng) * 20.0f) / 20.0f;  // many ties
  const auto all = xi::top_tokens(row, 50);
  for (std::size_t i = 0; i < all.size(); ++i)
    REQUIRE(xi::token_rank(row, all[i].token) == std::int64_t(i) + 1);
}

TEST_CASE("residual capture in a forward pass and in KV decoding", "[interp][lens]") {
  xm::transformer m(config(xm::norm_kind::layernorm, xm::position_kind::learned, true), 2);
  const std::vector<std::int32_t> tokens{1, 4, 2, 9, 3};
  std::vector<float> buffer(5 * 8, -1.0f);
  m.forward({tokens, 1, 5, {}, {}, {}}, xi::capture_residual(2, xplor::make_view(buffer.data(), {5, 8})));
  for (std::int64_t r = 0; r < 5; ++r)
    for (std::int64_t c = 0; c < 8; ++c) REQUIRE(buffer[r * 8 + c] == m.residual(2)(r, c));
  // Into an Eigen matrix (column-major: strided rows) through the Eigen adapter.
  Eigen::MatrixXf eigen_buffer = Eigen::MatrixXf::Zero(5, 8);
  m.forward({tokens, 1, 5, {}, {}, {}}, xi::capture_residual(3, xplor::as_view2d(eigen_buffer)));
  for (std::int64_t r = 0; r < 5; ++r)
    for (std::int64_t c = 0; c < 8; ++c) REQUIRE(eigen_buffer(r, c) == m.residual(3)(r, c));

  // The recorder collects the prompt's rows at prefill and one row per decoding step: the same
  // rows as a forward pass over the whole sequence (the decoder's attention sums in another
  // order, so within float rounding).
  xi::activation_recorder rec(m, 2);
  xm::kv_decoder dec(m);
  dec.set_hooks(rec.hooks());
  const auto s = dec.begin(std::span(tokens).first(3));
  const std::int32_t next[] = {9};
  dec.step(std::span(&s, 1), next);
  const std::int32_t last[] = {3};
  dec.step(std::span(&s, 1), last);
  REQUIRE(rec.rows() == 5);
  for (std::int64_t r = 0; r < 5; ++r)
    for (std::int64_t c = 0; c < 8; ++c)
      REQUIRE(rec.view()(r, c) == Approx(m.residual(2)(r, c)).margin(1e-5));
}

TEST_CASE("fuzzing: alpha = 0 is the identity, noise is reproducible from its seed", "[interp][lens]") {
  xm::transformer m(config(xm::norm_kind::rmsnorm, xm::position_kind::rope, false), 4);
  const std::vector<std::int32_t> tokens{1, 4, 2, 9, 3, 3};
  m.forward({tokens, 2, 3, {}, {}, {}});
  const std::vector<float> clean(m.logits().data(), m.logits().data() + 6 * 11);
  m.forward({tokens, 2, 3, {}, {}, {}}, xi::fuzz_residual(m, 2, 0.0f, 7));
  for (int i = 0; i < 66; ++i) REQUIRE(m.logits().data()[i] == clean[i]);

  auto fuzzed = [&](float alpha, std::uint64_t seed) {
    m.forward({tokens, 2, 3, {}, {}, {}}, xi::fuzz_residual(m, 2, alpha, seed));
    return std::vector<float>(m.logits().data(), m.logits().data() + 66);
  };
  const auto a = fuzzed(0.5f, 7), b = fuzzed(0.5f, 7), c = fuzzed(0.5f, 8);
  CHECK(a == b);
  CHECK(a != c);
  CHECK(a != clean);
  // The noise is alpha * N(0, 1): the residual's change has about unit variance over alpha.
  std::vector<float> before(m.residual(2).data(), m.residual(2).data() + 48);
  m.forward({tokens, 2, 3, {}, {}, {}});
  before.assign(m.residual(2).data(), m.residual(2).data() + 48);
  m.forward({tokens, 2, 3, {}, {}, {}}, xi::fuzz_residual(m, 2, 2.0f, 1));
  double sq = 0.0;
  for (int i = 0; i < 48; ++i) sq += std::pow((m.residual(2).data()[i] - before[i]) / 2.0, 2);
  CHECK(sq / 48 == Approx(1.0).margin(0.5));

  // In decoding: alpha = 0 leaves every logit unchanged; a seed reproduces the fuzzed logits.
  auto decode = [&](const xm::forward_hooks& hooks) {
    xm::kv_decoder dec(m);
    dec.set_hooks(hooks);
    const auto s = dec.begin(std::span(tokens).first(4));
    const std::int32_t next[] = {5};
    const auto l = dec.step(std::span(&s, 1), next);
    return std::vector<float>(l.data(), l.data() + 11);
  };
  const auto plain = decode({});
  CHECK(decode(xi::fuzz_residual(m, 1, 0.0f, 3)) == plain);
  CHECK(decode(xi::fuzz_residual(m, 1, 1.0f, 3)) == decode(xi::fuzz_residual(m, 1, 1.0f, 3)));
  CHECK(decode(xi::fuzz_residual(m, 1, 1.0f, 3)) != plain);
}

TEST_CASE("the lens and hooks reject bad input", "[interp][lens]") {
  xm::transformer m(config(xm::norm_kind::rmsnorm, xm::position_kind::rope, true), 1);
  const std::int64_t pos[] = {0};
  CHECK_THROWS_WITH(xi::logit_lens(m, 0, pos), Catch::Contains("has not run a forward pass"));
  const std::vector<std::int32_t> tokens{1, 2, 3};
  m.forward({tokens, 1, 3, {}, {}, {}});
  CHECK_THROWS_WITH(xi::logit_lens(m, 4, pos), Catch::Contains("layer = 4 is outside [0, n_layers = 3]"));
  CHECK_THROWS_WITH(xi::logit_lens(m, -1, pos), Catch::Contains("layer = -1"));
  const std::int64_t far[] = {0, 3};
  CHECK_THROWS_WITH(xi::logit_lens(m, 1, far), Catch::Contains("positions[1] = 3 is outside"));
  CHECK_THROWS_WITH(xi::activation_token_similarity(m, 1, {}), Catch::Contains("positions is empty"));
  std::vector<float> wide(3 * 9);
  CHECK_THROWS_WITH(xi::lens_logits(m, xplor::make_view(static_cast<const float*>(wide.data()), {3, 9})),
                    Catch::Contains("residual has 9 columns, d_model = 8"));
  std::vector<float> small(2 * 8);
  CHECK_THROWS_WITH(
      m.forward({tokens, 1, 3, {}, {}, {}}, xi::capture_residual(1, xplor::make_view(small.data(), {2, 8}))),
      Catch::Contains("out is 2 x 8 for a residual of 3 x 8"));
  CHECK_THROWS_WITH(xi::fuzz_residual(m, 0, 1.0f, 1), Catch::Contains("layer = 0 is outside [1"));
  CHECK_THROWS_WITH(xi::fuzz_residual(m, 1, -1.0f, 1), Catch::Contains("alpha = -1"));
  CHECK_THROWS_WITH(xi::fuzz_residual(m, 1, NAN, 1), Catch::Contains("alpha = nan"));
  CHECK_THROWS_WITH(xi::activation_recorder(m, 4), Catch::Contains("layer = 4"));
  const std::vector<float> probs{0.5f, 0.5f};
  const std::int32_t zeroed[] = {0, 1};
  CHECK_THROWS_WITH(xi::mean_rows(probs, 2, zeroed), Catch::Contains("zeroed has 2 tokens for 1 rows"));
  const std::int32_t bad[] = {2};
  CHECK_THROWS_WITH(xi::mean_rows(probs, 2, bad), Catch::Contains("zeroed[0] = 2 is outside [0, 2)"));
  CHECK_THROWS_WITH(xi::mean_rows(probs, 3), Catch::Contains("not a positive multiple of V = 3"));
  CHECK_THROWS_WITH(xi::token_rank(probs, 2), Catch::Contains("token = 2 is outside [0, 2)"));
  CHECK_THROWS_WITH(xi::top_tokens(probs, -1), Catch::Contains("k = -1"));
}
