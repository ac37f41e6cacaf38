#include "xplor/model/decode.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

using namespace xplor::model;

namespace {

transformer_config small(norm_kind norm, position_kind pos, mlp_kind mlp, bool tie) {
  transformer_config c;
  c.vocab_size = 17;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 4;
  c.d_ff = 24;
  c.max_seq_len = 24;
  c.norm = norm;
  c.positions = pos;
  c.mlp = mlp;
  c.tie_embeddings = tie;
  c.init_std = 0.2f;
  return c;
}

/// Relative error of a row: max |a - b| / max |b|.
double rel_err(const float* a, const float* b, std::int64_t n) {
  double diff = 0, scale = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - b[i]));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return diff / scale;
}

std::vector<std::int32_t> random_tokens(int n, int V, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::int32_t> t(n);
  for (auto& x : t) x = static_cast<std::int32_t>(rng() % V);
  return t;
}

}  // namespace

TEST_CASE("KV-cache decoding gives the full forward's logits for every option combination",
          "[model][decode]") {
  int combo = 0;
  for (auto norm : {norm_kind::rmsnorm, norm_kind::layernorm})
    for (auto pos : {position_kind::learned, position_kind::rope})
      for (auto mlp : {mlp_kind::gelu, mlp_kind::swiglu}) {
        transformer m(small(norm, pos, mlp, combo++ % 2 == 0), 42);
        const auto seq = random_tokens(12, 17, 7);
        m.forward({seq, 1, 12, {}, {}, {}});
        const auto full = m.logits();
        kv_decoder dec(m);
        const auto s = dec.begin(std::span(seq).first(5));
        REQUIRE(rel_err(dec.logits(std::span(&s, 1)).data(), &full(4, 0), 17) <= 1e-5);
        for (int t = 5; t < 12; ++t) {
          const auto logits = dec.step(std::span(&s, 1), std::span(seq).subspan(t, 1));
          REQUIRE(rel_err(logits.data(), &full(t, 0), 17) <= 1e-5);
        }
        CHECK(dec.length(s) == 12);
      }
}

TEST_CASE("forked decoding equals independent decoding", "[model][decode]") {
  transformer m(small(norm_kind::rmsnorm, position_kind::rope, mlp_kind::swiglu, true), 3);
  const auto prompt = random_tokens(6, 17, 1);
  kv_decoder dec(m);
  const auto root = dec.begin(prompt);
  const auto kids = dec.fork(root, 3);
  REQUIRE(kids.size() == 3);
  std::vector<std::vector<std::int32_t>> continuations{{1, 2, 3, 4}, {5, 6, 7, 8}, {9, 9, 9, 9}};
  std::vector<std::vector<float>> forked(3);
  for (int t = 0; t < 4; ++t) {
    const std::vector<std::int32_t> toks{continuations[0][t], continuations[1][t], continuations[2][t]};
    const auto logits = dec.step(kids, toks);
    for (int i = 0; i < 3; ++i) forked[i].assign(&logits(i, 0), &logits(i, 0) + 17);
  }
  // The root keeps decoding after the fork without disturbing its children, and a fork of a fork
  // sees the whole chain.
  const std::int32_t extra = 11;
  dec.step(std::span(&root, 1), std::span(&extra, 1));
  const auto grandkid = dec.fork(kids[1], 1)[0];
  const std::int32_t g_tok = 0;
  const auto g_logits = dec.step(std::span(&grandkid, 1), std::span(&g_tok, 1));
  std::vector<float> g_forked(g_logits.data(), g_logits.data() + 17);

  for (int i = 0; i < 3; ++i) {
    kv_decoder solo(m);
    auto seq = prompt;
    seq.insert(seq.end(), continuations[i].begin(), continuations[i].end());
    const auto s = solo.begin(seq);
    REQUIRE(rel_err(forked[i].data(), solo.logits(std::span(&s, 1)).data(), 17) <= 1e-5);
    if (i == 1) {
      const auto l = solo.step(std::span(&s, 1), std::span(&g_tok, 1));
      REQUIRE(rel_err(g_forked.data(), l.data(), 17) <= 1e-5);
    }
  }
}

TEST_CASE("a state's step logits are the same bits alone, batched, forked or separate", "[model][decode]") {
  // d_model 40 and d_ff 72 exercise the kernels' vector tails; 6 layers of RoPE and SwiGLU.
  transformer_config c = small(norm_kind::layernorm, position_kind::rope, mlp_kind::swiglu, false);
  c.d_model = 40, c.n_heads = 5, c.d_ff = 72, c.vocab_size = 53, c.max_seq_len = 40;
  const transformer m(c, 9);
  const auto prompt = random_tokens(9, 53, 4);
  std::vector<std::vector<std::int32_t>> conts;
  for (int i = 0; i < 7; ++i) conts.push_back(random_tokens(6, 53, 100 + i));
  auto bits_of = [](xplor::view2d<const float> l, std::int64_t row) {
    return std::vector<float>(l.data() + row * l.cols(), l.data() + (row + 1) * l.cols());
  };
  // Seven forks stepped together.
  kv_decoder forked(m);
  const auto kids = forked.fork(forked.begin(prompt), 7);
  std::vector<std::vector<std::vector<float>>> together(7);
  for (int t = 0; t < 6; ++t) {
    std::vector<std::int32_t> toks;
    for (int i = 0; i < 7; ++i) toks.push_back(conts[i][t]);
    const auto l = forked.step(kids, toks);
    for (int i = 0; i < 7; ++i) together[i].push_back(bits_of(l, i));
  }
  // Each continuation alone in its own decoder, from a separate begin(prompt): the same bits.
  for (int i = 0; i < 7; ++i) {
    kv_decoder solo(m);
    const auto s = solo.begin(prompt);
    for (int t = 0; t < 6; ++t) {
      const auto l = solo.step(std::span(&s, 1), std::span(conts[i]).subspan(t, 1));
      REQUIRE(bits_of(l, 0) == together[i][t]);
    }
  }
  // Separate states stepped in a batch of another order: the same bits again.
  kv_decoder separate(m);
  std::vector<kv_decoder::state_id> ids;
  for (int i = 6; i >= 0; --i) ids.push_back(separate.begin(prompt));
  for (int t = 0; t < 6; ++t) {
    std::vector<std::int32_t> toks;
    for (int i = 6; i >= 0; --i) toks.push_back(conts[i][t]);
    const auto l = separate.step(ids, toks);
    for (int i = 0; i < 7; ++i) REQUIRE(bits_of(l, 6 - i) == together[i][t]);
  }
}

TEST_CASE("a batched begin prefills every prompt in one pass, the same bits as one begin each",
          "[model][decode]") {
  const transformer m(small(norm_kind::rmsnorm, position_kind::learned, mlp_kind::gelu, true), 5);
  std::vector<std::vector<std::int32_t>> prompts;
  for (int i = 0; i < 5; ++i) prompts.push_back(random_tokens(3 + 4 * i, 17, 20 + i));
  kv_decoder batched(m);
  const auto ids = batched.begin(prompts);
  REQUIRE(ids.size() == 5);
  const auto l = batched.logits(ids);
  for (int i = 0; i < 5; ++i) {
    kv_decoder solo(m);
    const auto s = solo.begin(prompts[i]);
    CHECK(batched.length(ids[i]) == static_cast<std::int64_t>(prompts[i].size()));
    const auto solo_logits = solo.logits(std::span(&s, 1));
    REQUIRE(std::vector<float>(&l(i, 0), &l(i, 0) + 17) ==
            std::vector<float>(solo_logits.data(), solo_logits.data() + 17));
    // And the states continue like begin()'s.
    const std::int32_t tok = 4;
    const auto next = solo.step(std::span(&s, 1), std::span(&tok, 1));
    std::vector<float> expect(next.data(), next.data() + 17);
    const auto got = batched.step(std::span(&ids[i], 1), std::span(&tok, 1));
    REQUIRE(std::vector<float>(got.data(), got.data() + 17) == expect);
  }
  CHECK(batched.begin(std::span<const std::vector<std::int32_t>>{}).empty());
  // One bad prompt: a clear error naming it, and no state started.
  const auto live = batched.live_states();
  std::vector<std::vector<std::int32_t>> bad{{1, 2}, {}, {3}};
  CHECK_THROWS_WITH(batched.begin(bad), Catch::Contains("prompts[1] is empty"));
  bad[1] = {1, 17};
  CHECK_THROWS_WITH(batched.begin(bad),
                    Catch::Contains("prompts[1][1] = 17 is outside [0, vocab_size = 17)"));
  bad[1] = std::vector<std::int32_t>(25, 1);
  CHECK_THROWS_WITH(batched.begin(bad), Catch::Contains("prompts[1] has 25 tokens, max_seq_len = 24"));
  CHECK(batched.live_states() == live);
}

TEST_CASE("n forks hold the prompt once plus their own tokens", "[model][decode]") {
  auto c = small(norm_kind::rmsnorm, position_kind::rope, mlp_kind::swiglu, true);
  transformer m(c, 5);
  const auto prompt = random_tokens(16, 17, 2);
  kv_decoder dec(m);
  const auto root = dec.begin(prompt);
  const auto kids = dec.fork(root, 8);
  const std::vector<std::int32_t> toks(8, 3);
  for (int t = 0; t < 4; ++t) dec.step(kids, toks);
  const std::int64_t per_token = 2 * c.n_layers * c.d_model * 4;  // K and V, every layer, fp32
  CHECK(dec.cache_bytes() == (16 + 8 * 4) * per_token);
  kv_decoder independent(m);
  std::vector<kv_decoder::state_id> solo;
  for (int i = 0; i < 8; ++i) solo.push_back(independent.begin(prompt));
  for (int t = 0; t < 4; ++t) independent.step(solo, toks);
  CHECK(independent.cache_bytes() == 8 * (16 + 4) * per_token);
  dec.release(kids);
  CHECK(dec.cache_bytes() == 16 * per_token);
  CHECK(dec.live_states() == 1);
}

TEST_CASE("step_embeddings with a token's embedding equals stepping the token", "[model][decode]") {
  for (auto pos : {position_kind::learned, position_kind::rope}) {
    transformer m(small(norm_kind::layernorm, pos, mlp_kind::gelu, false), 8);
    kv_decoder dec(m);
    const auto prompt = random_tokens(4, 17, 3);
    const auto a = dec.begin(prompt);
    const auto b = dec.fork(a, 1)[0];
    const std::int32_t tok = 5;
    const auto la = dec.step(std::span(&a, 1), std::span(&tok, 1));
    const std::vector<float> ref(la.data(), la.data() + 17);
    const auto e = m.param("embed.weight");
    const auto lb = dec.step_embeddings(std::span(&b, 1), xplor::make_view(e.data() + 5 * 16, {1, 16}));
    REQUIRE(rel_err(lb.data(), ref.data(), 17) <= 1e-6);
  }
}

TEST_CASE("a prefill with latent slots equals the forward pass with latents", "[model][decode]") {
  for (auto pos : {position_kind::learned, position_kind::rope}) {
    transformer m(small(norm_kind::rmsnorm, pos, mlp_kind::swiglu, true), 4);
    std::vector<std::int32_t> tokens = random_tokens(9, 17, 2);
    tokens[2] = tokens[3] = tokens[7] = latent_slot;
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> latents(3 * 16);
    for (auto& x : latents) x = nd(rng);
    const auto view = xplor::make_view(static_cast<const float*>(latents.data()), {3, 16});
    m.forward({tokens, 1, 9, {}, {}, view});
    kv_decoder dec(m);
    const auto s = dec.begin(std::span(tokens.data(), 8), view);
    const auto got = dec.logits(std::span(&s, 1));
    REQUIRE(rel_err(got.data(), &m.logits()(7, 0), 17) <= 1e-5);
    const auto next = dec.step(std::span(&s, 1), std::span(tokens.data() + 8, 1));
    REQUIRE(rel_err(next.data(), &m.logits()(8, 0), 17) <= 1e-5);
    CHECK_THROWS_WITH(dec.begin(tokens, xplor::make_view(static_cast<const float*>(latents.data()), {2, 16})),
                      Catch::Contains("prompt has 3 latent slots, latents is 2 x 16"));
    CHECK_THROWS_WITH(dec.begin(tokens), Catch::Contains("prompt[2] = -1 is outside"));
  }
}

TEST_CASE("the decoder rejects bad input", "[model][decode]") {
  transformer m(small(norm_kind::rmsnorm, position_kind::rope, mlp_kind::swiglu, true), 1);
  kv_decoder dec(m);
  const std::vector<std::int32_t> bad{1, 17};
  CHECK_THROWS_WITH(dec.begin(bad), Catch::Contains("prompt[1] = 17 is outside [0, vocab_size = 17)"));
  CHECK_THROWS_WITH(dec.begin(std::span<const std::int32_t>{}), Catch::Contains("prompt is empty"));
  const std::vector<std::int32_t> too_long(25, 1);
  CHECK_THROWS_WITH(dec.begin(too_long), Catch::Contains("prompt has 25 tokens, max_seq_len = 24"));
  const std::vector<std::int32_t> full(24, 1);
  const auto s = dec.begin(full);
  const std::int32_t one = 1;
  CHECK_THROWS_WITH(dec.step(std::span(&s, 1), std::span(&one, 1)),
                    Catch::Contains("already holds 24 tokens"));
  const std::vector<std::int32_t> one_token{1};
  const auto s2 = dec.begin(one_token);
  const std::vector<kv_decoder::state_id> twice{s2, s2};
  const std::vector<std::int32_t> two{1, 1};
  CHECK_THROWS_WITH(dec.step(twice, two), Catch::Contains("appears twice"));
  CHECK_THROWS_WITH(dec.fork(s, -1), Catch::Contains("n = -1"));
  dec.release(s);
  CHECK_THROWS_WITH(dec.logits(std::span(&s, 1)), Catch::Contains("state 0 is not a live state"));
  CHECK_THROWS_WITH(dec.fork(7, 1), Catch::Contains("state 7 is not a live state"));
}
