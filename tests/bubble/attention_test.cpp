// Thoughtbubbles' attention over streams: against an independent plain attention, the score
// channel and value attenuation by hand, causality, finite-difference gradients and bad input.
#include "xplor/bubble/attention.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "xplor/model/config.hpp"

namespace xb = xplor::bubble;

namespace {

/// Plain causal softmax attention over already-rotated q, k and v [N, C] (double).
std::vector<double> plain_attention(int H, int C, const std::vector<double>& q, const std::vector<double>& k,
                                    const std::vector<double>& v) {
  const std::size_t N = q.size() / static_cast<std::size_t>(C), D = static_cast<std::size_t>(C / H);
  std::vector<double> y(q.size(), 0.0);
  for (std::size_t h = 0; h < static_cast<std::size_t>(H); ++h)
    for (std::size_t i = 0; i < N; ++i) {
      std::vector<double> s(i + 1);
      double m = -1e300, sum = 0;
      for (std::size_t j = 0; j <= i; ++j) {
        for (std::size_t d = 0; d < D; ++d) s[j] += q[i * C + h * D + d] * k[j * C + h * D + d];
        s[j] /= std::sqrt(double(D));
        m = std::max(m, s[j]);
      }
      for (double& e : s) sum += (e = std::exp(e - m));
      for (std::size_t j = 0; j <= i; ++j)
        for (std::size_t d = 0; d < D; ++d) y[i * C + h * D + d] += s[j] / sum * v[j * C + h * D + d];
    }
  return y;
}

struct row {
  int H, C;
  std::vector<double> qkv, c, pos, cos, sin;
  row(int h, int cc, std::size_t N, std::mt19937& rng, bool fractional) : H(h), C(cc) {
    std::normal_distribution<double> nd(0.0, 1.0);
    for (std::size_t i = 0; i < N * 3 * static_cast<std::size_t>(C); ++i) qkv.push_back(nd(rng));
    for (std::size_t n = 0; n < N; ++n) {
      c.push_back(-std::abs(nd(rng)));
      pos.push_back(fractional ? 0.37 * double(n) + 0.1 : double(n));
    }
    xb::rope_at(pos, C / H, 10000.0, cos, sin);
  }
  std::size_t N() const { return c.size(); }
  std::vector<double> forward(bool channel, xb::attention_cache<double>& cache) const {
    std::vector<double> y(N() * static_cast<std::size_t>(C));
    xb::attention_forward<double>(H, C, channel, qkv, c, cos, sin, cache, y);
    return y;
  }
  /// q, k rotated at pos (no score channel) and v, split out of qkv.
  void rotated(std::vector<double>& q, std::vector<double>& k, std::vector<double>& v) const {
    const std::size_t Cs = static_cast<std::size_t>(C), D = Cs / static_cast<std::size_t>(H);
    q.assign(N() * Cs, 0.0), k.assign(N() * Cs, 0.0), v.assign(N() * Cs, 0.0);
    for (std::size_t n = 0; n < N(); ++n) {
      for (std::size_t e = 0; e < Cs; ++e) {
        q[n * Cs + e] = qkv[n * 3 * Cs + e];
        k[n * Cs + e] = qkv[n * 3 * Cs + Cs + e];
        v[n * Cs + e] = qkv[n * 3 * Cs + 2 * Cs + e];
      }
      for (std::size_t h = 0; h < static_cast<std::size_t>(H); ++h) {
        xplor::model::layers::rope_rotate(q.data() + n * Cs + h * D, cos.data() + n * D / 2,
                                          sin.data() + n * D / 2, static_cast<int>(D), 1.0);
        xplor::model::layers::rope_rotate(k.data() + n * Cs + h * D, cos.data() + n * D / 2,
                                          sin.data() + n * D / 2, static_cast<int>(D), 1.0);
      }
    }
  }
};

}  // namespace

TEST_CASE("rope_at: integer positions give the transformer's tables bit for bit", "[bubble][attention]") {
  xplor::model::transformer_config cfg;
  cfg.d_model = 64;
  cfg.n_heads = 4;
  cfg.max_seq_len = 300;
  std::vector<float> cos_t, sin_t, cos_b, sin_b;
  xplor::model::rope_tables(cfg, cos_t, sin_t);
  std::vector<double> pos;
  for (int t = 0; t < cfg.max_seq_len; ++t) pos.push_back(t);
  xb::rope_at(pos, cfg.head_dim(), double(cfg.rope_theta), cos_b, sin_b);
  CHECK(cos_b == cos_t);
  CHECK(sin_b == sin_t);
}

TEST_CASE("bubble attention with zero scores is plain attention", "[bubble][attention]") {
  std::mt19937 rng(5);
  for (bool fractional : {false, true}) {
    row r(2, 8, 7, rng, fractional);
    std::fill(r.c.begin(), r.c.end(), 0.0);
    std::vector<double> q, k, v;
    r.rotated(q, k, v);
    xb::attention_cache<double> cache;
    const auto y = r.forward(false, cache);
    const auto want = plain_attention(r.H, r.C, q, k, v);
    for (std::size_t i = 0; i < y.size(); ++i) CHECK(y[i] == Approx(want[i]).epsilon(1e-12).margin(1e-14));
    // The score channel with c = 0 is plain attention with the last q / k dimension of each head zeroed.
    const std::size_t D = 4;
    for (std::size_t n = 0; n < r.N(); ++n)
      for (std::size_t h = 0; h < 2; ++h) q[n * 8 + h * D + D - 1] = 0.0, k[n * 8 + h * D + D - 1] = 0.0;
    const auto y_channel = r.forward(true, cache);
    const auto want_channel = plain_attention(r.H, r.C, q, k, v);
    for (std::size_t i = 0; i < y.size(); ++i)
      CHECK(y_channel[i] == Approx(want_channel[i]).epsilon(1e-12).margin(1e-14));
  }
}

TEST_CASE("bubble attention: score channel and value attenuation by hand", "[bubble][attention]") {
  // One head of size 2 at position 0 (no rotation): q = (a, 1), k_j = (b_j, c_j).
  const std::vector<double> qkv{0.5, 9.0, 2.0,  9.0, 1.0, -1.0,  // stream 0: q, k, v
                                1.5, 9.0, -1.0, 9.0, 3.0, 2.0};  // stream 1
  const std::vector<double> c{-0.5, -1.5}, pos{0.0, 0.0};
  std::vector<double> cos, sin;
  xb::rope_at(pos, 2, 10000.0, cos, sin);
  xb::attention_cache<double> cache;
  std::vector<double> y(4);
  xb::attention_forward<double>(1, 2, true, qkv, c, cos, sin, cache, y);
  // Stream 0 sees only itself: y = exp(c_0) v_0.
  CHECK(y[0] == Approx(std::exp(-0.5) * 1.0).epsilon(1e-15));
  CHECK(y[1] == Approx(std::exp(-0.5) * -1.0).epsilon(1e-15));
  // Stream 1: logits (q1 . k_j) / sqrt(2) with q1 = (1.5, 1), k_0 = (2, -0.5), k_1 = (-1, -1.5).
  const double s0 = (1.5 * 2.0 + 1.0 * -0.5) / std::sqrt(2.0),
               s1 = (1.5 * -1.0 + 1.0 * -1.5) / std::sqrt(2.0);
  const double p0 = std::exp(s0) / (std::exp(s0) + std::exp(s1)), p1 = 1.0 - p0;
  CHECK(y[2] == Approx(p0 * std::exp(-0.5) * 1.0 + p1 * std::exp(-1.5) * 3.0).epsilon(1e-14));
  CHECK(y[3] == Approx(p0 * std::exp(-0.5) * -1.0 + p1 * std::exp(-1.5) * 2.0).epsilon(1e-14));
}

TEST_CASE("bubble attention is causal over the stream order", "[bubble][attention][property]") {
  std::mt19937 rng(8);
  row r(2, 8, 6, rng, true);
  xb::attention_cache<double> cache;
  const auto y = r.forward(true, cache);
  for (std::size_t j = 1; j < r.N(); ++j) {
    row moved = r;
    for (std::size_t e = 0; e < 24; ++e) moved.qkv[j * 24 + e] += 1.0;
    moved.c[j] -= 0.7;
    const auto y2 = moved.forward(true, cache);
    for (std::size_t i = 0; i < j * 8; ++i) REQUIRE(y2[i] == y[i]);
    bool changed = false;
    for (std::size_t i = j * 8; i < (j + 1) * 8; ++i) changed = changed || y2[i] != y[i];
    REQUIRE(changed);
  }
}

TEST_CASE("bubble attention backward equals double-precision finite differences",
          "[bubble][attention][property]") {
  std::mt19937 rng(13);
  std::normal_distribution<double> nd(0.0, 1.0);
  for (int trial = 0; trial < 8; ++trial) {
    const bool channel = trial % 2 == 0;
    row r(1 + trial % 2, 8, 2 + static_cast<std::size_t>(trial % 4), rng, trial % 3 != 0);
    std::vector<double> a(r.N() * 8);
    for (double& e : a) e = nd(rng);
    xb::attention_cache<double> cache;
    auto loss = [&](const row& rr) {
      const auto y = rr.forward(channel, cache);
      double s = 0;
      for (std::size_t i = 0; i < y.size(); ++i) s += a[i] * y[i];
      return s;
    };
    r.forward(channel, cache);
    std::vector<double> dqkv(r.qkv.size()), dc(r.N(), 0.0);
    xb::attention_backward<double>(r.H, r.C, channel, r.c, r.cos, r.sin, cache, a, dqkv, dc);
    const double h = 1e-6;
    for (std::size_t i = 0; i < r.qkv.size(); ++i) {
      row up = r, down = r;
      up.qkv[i] += h;
      down.qkv[i] -= h;
      INFO("qkv[" << i << "] trial " << trial);
      CHECK(dqkv[i] == Approx((loss(up) - loss(down)) / (2 * h)).epsilon(1e-6).margin(1e-8));
    }
    for (std::size_t n = 0; n < r.N(); ++n) {
      row up = r, down = r;
      up.c[n] += h;
      down.c[n] -= h;
      INFO("c[" << n << "] trial " << trial);
      CHECK(dc[n] == Approx((loss(up) - loss(down)) / (2 * h)).epsilon(1e-6).margin(1e-8));
    }
  }
}

TEST_CASE("bubble attention: bad input is an xplor::error naming the argument",
          "[bubble][attention][errors]") {
  using Catch::Matchers::Contains;
  std::vector<double> cos, sin;
  const std::vector<double> pos{0.0, std::nan("")};
  CHECK_THROWS_WITH(xb::rope_at(pos, 4, 10000.0, cos, sin), Contains("pos[1] = nan is not finite"));
  CHECK_THROWS_WITH(xb::rope_at(std::vector<double>{0.0}, 3, 10000.0, cos, sin), Contains("head size D = 3"));
  xb::rope_at(std::vector<double>{0.0, 1.0}, 4, 10000.0, cos, sin);
  const std::vector<double> c{0.0, 0.0}, qkv(2 * 3 * 8, 0.5);
  std::vector<double> y(16);
  xb::attention_cache<double> cache;
  CHECK_THROWS_WITH(xb::attention_forward<double>(3, 8, true, qkv, c, cos, sin, cache, y),
                    Contains("C = 8 and H = 3 need an even head size"));
  CHECK_THROWS_WITH(
      xb::attention_forward<double>(2, 8, true, std::vector<double>(40, 0.5), c, cos, sin, cache, y),
      Contains("(has 40)"));
  CHECK_THROWS_WITH(
      xb::attention_forward<double>(2, 8, true, qkv, c, cos, sin, cache, std::span<double>(y.data(), 8)),
      Contains("y has 8 entries"));
}
