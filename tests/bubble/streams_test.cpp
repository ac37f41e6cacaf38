// Thoughtbubbles' stream operations: hand-computed cases, the invariants of the fork layer on
// random rows, finite-difference gradients and bad input.
#include "xplor/bubble/streams.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <span>
#include <vector>

namespace xb = xplor::bubble;

namespace {

/// A fork layer's parameters as owned vectors (double for the finite differences).
template <class T>
struct fork_params {
  int C;
  bool layernorm;
  std::vector<T> norm_w, norm_b, score_w, embed;
  fork_params(int c, bool ln, std::mt19937& rng, double score_scale = 1.0) : C(c), layernorm(ln) {
    std::normal_distribution<double> nd(0.0, 1.0);
    for (int i = 0; i < C; ++i) {
      norm_w.push_back(static_cast<T>(1.0 + 0.1 * nd(rng)));
      norm_b.push_back(static_cast<T>(0.1 * nd(rng)));
      embed.push_back(static_cast<T>(nd(rng) / std::sqrt(double(C))));
    }
    for (int i = 0; i < 2 * C; ++i) score_w.push_back(static_cast<T>(score_scale * nd(rng)));
  }
  xb::fork_weights<T> weights() const {
    return {norm_w.data(), layernorm ? norm_b.data() : nullptr, score_w.data(), embed.data()};
  }
};

std::vector<std::int32_t> identity_tokens(int T) {
  std::vector<std::int32_t> tok(static_cast<std::size_t>(T));
  for (int t = 0; t < T; ++t) tok[static_cast<std::size_t>(t)] = t;
  return tok;
}

double log_sigmoid(double s) { return std::log(1.0 / (1.0 + std::exp(-s))); }

}  // namespace

TEST_CASE("select_candidates: hand-computed rows", "[bubble][streams]") {
  // Streams 0 and 1 are copies of token 0, stream 2 is token 1. Candidate 2n forks stream n,
  // 2n + 1 keeps it; the keeps of streams 1 and 2 (candidates 3, 5) are the tokens' last copies.
  const std::vector<double> cand{-0.5, -0.1, -2.0, -0.3, -0.2, -5.0};
  const std::vector<std::int32_t> tok{0, 0, 1};
  std::vector<std::int32_t> out(4);
  xb::select_candidates<double>(cand, tok, 4, out);
  CHECK(out == std::vector<std::int32_t>{1, 3, 4, 5});  // forced 3 and 5, then -0.1 (1) and -0.2 (4)
  out.resize(2);
  xb::select_candidates<double>(cand, tok, 2, out);
  CHECK(out == std::vector<std::int32_t>{3, 5});  // k = tokens: only the forced keeps
  out.resize(6);
  xb::select_candidates<double>(cand, tok, 6, out);
  CHECK(out == std::vector<std::int32_t>{0, 1, 2, 3, 4, 5});
  // Ties go to the lower candidate index.
  const std::vector<double> flat(6, -0.7);
  out.resize(4);
  xb::select_candidates<double>(flat, tok, 4, out);
  CHECK(out == std::vector<std::int32_t>{0, 1, 3, 5});
}

TEST_CASE("fork_forward: hand-computed row", "[bubble][streams]") {
  // C = 2, RMSNorm with unit weights and eps 0, W = identity: s_n = x_n / rms(x_n).
  const std::vector<double> w{1, 1}, W{1, 0, 0, 1}, e{0.25, -0.5};
  const xb::fork_weights<double> fw{w.data(), nullptr, W.data(), e.data()};
  const std::vector<double> x{3, 4, -1, 1}, c{0.0, -0.5};
  const std::vector<std::int32_t> tok{0, 1};
  xb::fork_cache<double> cache;
  std::vector<double> x_out, c_out;
  std::vector<std::int32_t> tok_out;
  xb::fork_forward<double>(fw, 2, 0.0, -20.0, x, c, tok, 3, cache, x_out, c_out, tok_out);
  // rms(3, 4) = sqrt(12.5), rms(-1, 1) = 1.
  const double s00 = 3 / std::sqrt(12.5), s01 = 4 / std::sqrt(12.5), s10 = -1.0, s11 = 1.0;
  const double cand[4] = {log_sigmoid(s00), log_sigmoid(s01), -0.5 + log_sigmoid(s10),
                          -0.5 + log_sigmoid(s11)};
  // Keeps 1 and 3 are forced; the free place goes to the better fork: cand[0] = -0.37 vs cand[2] = -1.81.
  REQUIRE(cache.kept == std::vector<std::int32_t>{0, 1, 3});
  CHECK(tok_out == std::vector<std::int32_t>{0, 0, 1});
  CHECK(c_out[0] == Approx(cand[0]).epsilon(1e-14));
  CHECK(c_out[1] == Approx(cand[1]).epsilon(1e-14));
  CHECK(c_out[2] == Approx(cand[3]).epsilon(1e-14));
  CHECK(x_out == std::vector<double>{3.25, 3.5, 3, 4, -1, 1});  // the fork copy carries the fork embedding
  // The clip: a score of -40 contributes max(log sigmoid(-40), -20) = -20.
  const std::vector<double> W_big{-40 / s00, 0, 0, 1};
  const xb::fork_weights<double> clipped{w.data(), nullptr, W_big.data(), e.data()};
  xb::fork_forward<double>(clipped, 2, 0.0, -20.0, x, c, tok, 4, cache, x_out, c_out, tok_out);
  CHECK(c_out[0] == -20.0);
}

TEST_CASE("fork layers keep the stream invariants on random rows", "[bubble][streams][property]") {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int trial = 0; trial < 40; ++trial) {
    const int C = 4 + trial % 5, T = 1 + trial % 13;
    const bool layernorm = trial % 2 == 1;
    const fork_params<float> fp(C, layernorm, rng, 3.0);
    xb::bubble_config cfg;
    cfg.block_size = 8;
    cfg.max_block_size = 8 + trial % 9;
    std::vector<float> x(static_cast<std::size_t>(T * C)), c(static_cast<std::size_t>(T), 0.0f);
    for (float& v : x) v = nd(rng);
    std::vector<std::int32_t> tok = identity_tokens(T);
    for (int layer = 0; layer < 4; ++layer) {  // several fork layers in a row
      const auto N = static_cast<std::int64_t>(tok.size());
      const std::int64_t k = xb::stream_budget(cfg, T, N);
      xb::fork_cache<float> cache;
      std::vector<float> x2, c2;
      std::vector<std::int32_t> tok2;
      xb::fork_forward<float>(fp.weights(), C, 1e-5f, -20.0f, x, c, tok, k, cache, x2, c2, tok2);
      INFO("trial " << trial << " layer " << layer << " N " << N << " k " << k);
      REQUIRE(static_cast<std::int64_t>(tok2.size()) == std::min(k, 2 * N));
      REQUIRE(tok2.front() == 0);
      REQUIRE(tok2.back() == T - 1);
      for (std::size_t i = 1; i < tok2.size(); ++i)
        REQUIRE((tok2[i] == tok2[i - 1] || tok2[i] == tok2[i - 1] + 1));
      for (std::size_t i = 0; i < tok2.size(); ++i) {
        const auto j = static_cast<std::size_t>(cache.kept[i]), n = j / 2;
        REQUIRE(tok2[i] == tok[n]);
        REQUIRE(c2[i] <= c[n]);  // log-sigmoid <= 0
        REQUIRE(c2[i] >= c[n] - 20.0f);
        for (int e = 0; e < C; ++e) {
          const auto ei = static_cast<std::size_t>(e);
          const float want = j % 2 == 0 ? x[n * static_cast<std::size_t>(C) + ei] + fp.embed[ei]
                                        : x[n * static_cast<std::size_t>(C) + ei];
          REQUIRE(x2[i * static_cast<std::size_t>(C) + ei] == want);
        }
        // A kept fork sits immediately left of its parent's keep when that survived.
        if (j % 2 == 0 && i + 1 < tok2.size() && std::count(cache.kept.begin(), cache.kept.end(), j + 1) == 1)
          REQUIRE(cache.kept[i + 1] == static_cast<std::int32_t>(j + 1));
      }
      x = x2, c = c2, tok = tok2;
    }
  }
}

TEST_CASE("budget 0: only the keeps survive, unchanged but for their scores", "[bubble][streams]") {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int C = 6, T = 9;
  const fork_params<float> fp(C, false, rng);
  xb::bubble_config cfg;
  cfg.block_size = cfg.max_block_size = 16;
  const std::int64_t k = xb::stream_budget(cfg, T, T);
  REQUIRE(k == T);
  std::vector<float> x(T * C), c(T, 0.0f);
  for (float& v : x) v = nd(rng);
  const auto tok = identity_tokens(T);
  xb::fork_cache<float> cache;
  std::vector<float> x2, c2;
  std::vector<std::int32_t> tok2;
  xb::fork_forward<float>(fp.weights(), C, 1e-5f, -20.0f, x, c, tok, k, cache, x2, c2, tok2);
  CHECK(tok2 == tok);
  CHECK(x2 == x);  // no fork embedding anywhere
  for (int n = 0; n < T; ++n) {
    CHECK(cache.kept[static_cast<std::size_t>(n)] == 2 * n + 1);
    CHECK(c2[static_cast<std::size_t>(n)] < 0.0f);  // the keep scores still gate later blocks
  }
}

TEST_CASE("stream_budget: the training budget and its ratio at other lengths", "[bubble][streams]") {
  xb::bubble_config cfg;
  cfg.plan = {xb::layer_kind::regular, xb::layer_kind::fork};
  cfg.block_size = 16;
  cfg.max_block_size = 32;
  CHECK(xb::stream_budget(cfg, 16, 16) == 32);
  CHECK(xb::stream_budget(cfg, 10, 10) == 20);
  CHECK(xb::stream_budget(cfg, 10, 25) == 20);
  cfg.max_block_size = 24;
  CHECK(xb::stream_budget(cfg, 10, 10) == 15);  // ceil(10 * 24 / 16)
  CHECK(xb::stream_budget(cfg, 16, 16) == 24);
  CHECK(xb::stream_budget(cfg, 1, 1) == 2);  // ceil(1.5), at most 2 streams per stream
  CHECK_NOTHROW(cfg.validate(2));
}

TEST_CASE("stream_positions: copies of token t fill (p_t - 1, p_t]", "[bubble][streams]") {
  const std::vector<std::int32_t> tok{0, 0, 0, 1, 2, 2};
  const std::vector<std::int32_t> position{5, 6, 7};
  std::vector<double> pos(tok.size());
  xb::stream_positions(tok, position, pos);
  CHECK(pos[0] == Approx(4.0 + 1.0 / 3).epsilon(1e-15));
  CHECK(pos[1] == Approx(4.0 + 2.0 / 3).epsilon(1e-15));
  CHECK(pos[2] == 5.0);
  CHECK(pos[3] == 6.0);
  CHECK(pos[4] == 6.5);
  CHECK(pos[5] == 7.0);
  // One stream per token: exactly the token positions.
  const auto ident = identity_tokens(3);
  xb::stream_positions(ident, position, std::span<double>(pos.data(), 3));
  CHECK(std::vector<double>(pos.begin(), pos.begin() + 3) == std::vector<double>{5, 6, 7});
}

TEST_CASE("merge: residual averaging of copies, the unweighted branch and rightmost", "[bubble][streams]") {
  const int C = 2;
  // Token 0 has two identical copies with scores -0.5 and -1; token 1 one stream with score -2.
  const std::vector<double> x{1, 2, 1, 2, 3, -1}, c{-0.5, -1.0, -2.0};
  const std::vector<std::int32_t> tok{0, 0, 1};
  std::vector<double> y(4);
  xb::merge_forward<double>(xb::averaging::residual, C, x, c, tok, y);
  const double g0 = std::exp(-0.5) + std::exp(-1.0), g1 = std::exp(-2.0);
  CHECK(y[0] == Approx(g0 * 1).epsilon(1e-15));
  CHECK(y[1] == Approx(g0 * 2).epsilon(1e-15));
  CHECK(y[2] == Approx(g1 * 3).epsilon(1e-15));
  CHECK(y[3] == Approx(g1 * -1).epsilon(1e-15));
  xb::merge_forward<double>(xb::averaging::rightmost, C, x, c, tok, y);
  CHECK(y == std::vector<double>{1, 2, 3, -1});
  // One stream per token: y = x whatever the scores (no gate).
  const std::vector<double> x1{1, 2, 3, -1}, c1{-3.0, -4.0};
  const std::vector<std::int32_t> tok1{0, 1};
  xb::merge_forward<double>(xb::averaging::residual, C, x1, c1, tok1, y);
  CHECK(y == x1);
}

TEST_CASE("fork and merge backward equal double-precision finite differences",
          "[bubble][streams][property]") {
  std::mt19937 rng(11);
  std::normal_distribution<double> nd(0.0, 1.0);
  for (int trial = 0; trial < 12; ++trial) {
    const int C = 3 + trial % 4, T = 2 + trial % 5;
    const bool layernorm = trial % 2 == 0;
    fork_params<double> fp(C, layernorm, rng, 2.0);
    // The row has already forked once: streams 0,1 copy token 0 and the rest one per token.
    std::vector<std::int32_t> tok{0};
    for (int t = 0; t < T; ++t) tok.push_back(t);
    const std::size_t N = tok.size(), Cs = static_cast<std::size_t>(C);
    std::vector<double> x(N * Cs), c(N);
    for (double& v : x) v = nd(rng);
    for (double& v : c) v = -std::abs(nd(rng));
    if (trial % 3 == 0)
      fp.score_w[0] = 60.0 / (std::abs(fp.norm_w[0]) + 1e-3);  // drive some fork scores into the clip
    const std::int64_t k =
        std::min<std::int64_t>(static_cast<std::int64_t>(N) + 2, 2 * static_cast<std::int64_t>(N));
    const auto mode = trial % 4 == 1 ? xb::averaging::rightmost : xb::averaging::residual;
    std::vector<double> a;  // the loss: sum a . merge(fork(x, c))
    for (int i = 0; i < T * C; ++i) a.push_back(nd(rng));
    std::vector<std::int32_t> kept;
    auto loss = [&](const std::vector<double>& xx, const std::vector<double>& cc,
                    const fork_params<double>& p) {
      xb::fork_cache<double> cache;
      std::vector<double> x2, c2, y(static_cast<std::size_t>(T) * Cs);
      std::vector<std::int32_t> tok2;
      xb::fork_forward<double>(p.weights(), C, 1e-5, -20.0, xx, cc, tok, k, cache, x2, c2, tok2);
      kept = cache.kept;
      xb::merge_forward<double>(mode, C, x2, c2, tok2, y);
      double s = 0;
      for (std::size_t i = 0; i < y.size(); ++i) s += a[i] * y[i];
      return s;
    };
    // Analytic gradients.
    xb::fork_cache<double> cache;
    std::vector<double> x2, c2, dx2, dc2, dx(N * Cs, 0.0), dc(N, 0.0);
    std::vector<std::int32_t> tok2;
    xb::fork_forward<double>(fp.weights(), C, 1e-5, -20.0, x, c, tok, k, cache, x2, c2, tok2);
    dx2.assign(x2.size(), 0.0);
    dc2.assign(c2.size(), 0.0);
    xb::merge_backward<double>(mode, C, x2, c2, tok2, a, dx2, dc2);
    std::vector<double> gw(Cs, 0.0), gb(Cs, 0.0), gs(2 * Cs, 0.0), ge(Cs, 0.0);
    xb::fork_backward<double>(fp.weights(), C, x, cache, dx2, dc2, -20.0, dx, dc,
                              {gw.data(), layernorm ? gb.data() : nullptr, gs.data(), ge.data()});
    const std::vector<std::int32_t> kept0 = cache.kept;
    const double h = 1e-6;
    auto check = [&](std::vector<double>& v, const std::vector<double>& grad, const char* what) {
      for (std::size_t i = 0; i < v.size(); ++i) {
        const double keep = v[i];
        v[i] = keep + h;
        const double up = loss(x, c, fp);
        v[i] = keep - h;
        const double down = loss(x, c, fp);
        v[i] = keep;
        REQUIRE(kept == kept0);  // the selection did not move
        INFO(what << "[" << i << "] trial " << trial);
        CHECK(grad[i] == Approx((up - down) / (2 * h)).epsilon(1e-6).margin(1e-7));
      }
    };
    check(x, dx, "x");
    check(c, dc, "c");
    check(fp.score_w, gs, "score_w");
    check(fp.norm_w, gw, "norm_w");
    if (layernorm) check(fp.norm_b, gb, "norm_b");
    check(fp.embed, ge, "embed");
  }
}

TEST_CASE("bubble streams: bad input is an xplor::error naming the argument", "[bubble][streams][errors]") {
  using Catch::Matchers::Contains;
  const std::vector<std::int32_t> tok{0, 0, 1};
  std::vector<std::int32_t> out(4);
  std::vector<double> cand{-0.5, -0.1, -2.0, -0.3, -0.2, -5.0};
  cand[2] = std::nan("");
  CHECK_THROWS_WITH(xb::select_candidates<double>(cand, tok, 4, out),
                    Contains("cand[2] = nan is not finite"));
  cand[2] = -2.0;
  std::vector<std::int32_t> small(1);
  CHECK_THROWS_WITH(xb::select_candidates<double>(cand, tok, 1, small),
                    Contains("k = 1 is outside [tokens, 2 streams] = [2, 6]"));
  const std::vector<std::int32_t> gap{0, 2, 2};
  CHECK_THROWS_WITH(xb::select_candidates<double>(cand, gap, 4, out),
                    Contains("tok[1] = 2 after tok[0] = 0"));
  const std::vector<std::int32_t> late{1, 1, 2};
  CHECK_THROWS_WITH(xb::select_candidates<double>(cand, late, 4, out), Contains("tok[0] = 1 must be 0"));
  CHECK_THROWS_WITH(xb::select_candidates<double>(std::span<const double>(cand.data(), 4), tok, 4, out),
                    Contains("cand has 4 entries for 3 streams"));

  xb::bubble_config cfg;
  cfg.plan = {xb::layer_kind::fork};
  cfg.block_size = 16;
  cfg.max_block_size = 12;
  CHECK_THROWS_WITH(cfg.validate(1),
                    Contains("max_block_size = 12 is outside [block_size, 2 block_size] = [16, 32]"));
  cfg.max_block_size = 33;
  CHECK_THROWS_WITH(cfg.validate(1), Contains("max_block_size = 33"));
  cfg.max_block_size = 32;
  CHECK_THROWS_WITH(cfg.validate(2), Contains("plan has 1 entries for 2 layers"));
  cfg.score_clip = 0.0f;
  CHECK_THROWS_WITH(cfg.validate(1), Contains("score_clip = 0 must be finite and negative"));
  cfg.score_clip = -20.0f;
  cfg.block_size = 0;
  CHECK_THROWS_WITH(cfg.validate(1), Contains("block_size = 0 is outside [1, 2^30]"));
  cfg.block_size = 16;
  CHECK_THROWS_WITH(xb::stream_budget(cfg, 8, 7), Contains("streams = 7 is fewer than tokens = 8"));
  CHECK_THROWS_WITH(xb::stream_budget(cfg, 0, 7), Contains("tokens = 0 is outside [1, 2^30]"));

  std::vector<double> pos(3);
  const std::vector<std::int32_t> position{0, 1};
  CHECK_THROWS_WITH(xb::stream_positions(tok, std::span<const std::int32_t>(position.data(), 1), pos),
                    Contains("position has 1 entries for 2 tokens"));
  std::vector<double> y(3);
  const std::vector<double> x(6, 1.0), c(3, 0.0);
  CHECK_THROWS_WITH(xb::merge_forward<double>(xb::averaging::residual, 2, x, c, tok, y),
                    Contains("y 3 entries"));
}
