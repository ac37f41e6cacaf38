// Sparse autoencoders (interp/sae.hpp, interp/sae_checkpoint.hpp): hand-computed loss values,
// finite-difference checks of the hand-written backward of both families, the invariants of the
// TopK recipe (unit decoder rows, projected gradients, ||z||_0 <= k, AuxK), the geometric median,
// TF-IDF ranking, determinism, planted-feature recovery, bad input, checkpoints, and SAELens's own
// outputs (tests/data/interp/sae_peer.json, written by tools/sae_peer_goldens.py).
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <utility>
#include <vector>
#include <xplor/core/random.hpp>
#include <xplor/interp/sae.hpp>
#include <xplor/interp/sae_checkpoint.hpp>
#include <xplor/interp/sae_features.hpp>

namespace {

namespace xi = xplor::interp;
using xplor::as_view2d;

/// Rows of N(0, 1) + offset from Philox (seed, stream 99).
std::vector<float> gaussian(std::int64_t rows, std::int64_t d, std::uint64_t seed, float offset = 0.0f) {
  xplor::philox_stream gen(seed, 99);
  std::vector<float> x(static_cast<std::size_t>(rows * d));
  for (float& v : x) v = gen.normal() + offset;
  return x;
}

xi::sae_config topk_config(std::int64_t d, std::int64_t n, int k) {
  xi::sae_config c;
  c.d_in = d;
  c.n_latents = n;
  c.kind = xi::sae_kind::topk;
  c.k = k;
  return c;
}

xi::sae_config relu_config(std::int64_t d, std::int64_t n) {
  xi::sae_config c;
  c.d_in = d;
  c.n_latents = n;
  c.kind = xi::sae_kind::relu_l1;
  return c;
}

std::vector<float> encode(const xi::sparse_autoencoder& sae, const std::vector<float>& x,
                          bool training = false) {
  const std::int64_t rows = std::ssize(x) / sae.d_in();
  std::vector<float> z(static_cast<std::size_t>(rows * sae.n_latents()));
  if (training)
    sae.encode_training(as_view2d(x, rows, sae.d_in()), as_view2d(z, rows, sae.n_latents()));
  else
    sae.encode(as_view2d(x, rows, sae.d_in()), as_view2d(z, rows, sae.n_latents()));
  return z;
}

std::vector<bool> support(const std::vector<float>& z) {
  std::vector<bool> s(z.size());
  for (std::size_t i = 0; i < z.size(); ++i) s[i] = z[i] != 0.0f;
  return s;
}

/// Central differences of evaluate().loss against gradients(x, false) for the parameters in
/// [begin, end) of the flat buffer where `pick` holds; a parameter whose +-h changes the
/// training latents' support (a TopK set or a ReLU kink) is skipped. Returns (checked, skipped).
template <class Pick>
std::pair<int, int> check_gradients(xi::sparse_autoencoder& sae, const std::vector<float>& x, float h,
                                    Pick pick) {
  const std::int64_t rows = std::ssize(x) / sae.d_in();
  const auto xv = as_view2d(x, rows, sae.d_in());
  const xi::sae_gradients g = sae.gradients(xv, false);
  const auto base = support(encode(sae, x, true));
  int checked = 0, skipped = 0;
  const std::span<float> p = sae.parameters();
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (!pick(static_cast<std::int64_t>(i))) continue;
    const float keep = p[i];
    p[i] = keep + h;
    const float up = sae.evaluate(xv).loss;
    const bool same_up = support(encode(sae, x, true)) == base;
    p[i] = keep - h;
    const float down = sae.evaluate(xv).loss;
    const bool same_down = support(encode(sae, x, true)) == base;
    p[i] = keep;
    if (!same_up || !same_down) {
      ++skipped;
      continue;
    }
    const double fd = (double(up) - double(down)) / (2.0 * double(h));
    INFO("parameter " << i << ": analytic " << g.flat[i] << ", finite difference " << fd);
    CHECK(std::abs(fd - double(g.flat[i])) <= 2e-3 + 2e-2 * std::abs(double(g.flat[i])));
    ++checked;
  }
  return {checked, skipped};
}

double row_norm(std::span<const float> r) {
  double s = 0;
  for (const float v : r) s += double(v) * double(v);
  return std::sqrt(s);
}

std::filesystem::path temp_file(const char* name) {
  return std::filesystem::temp_directory_path() /
         (std::string("xplor_sae_test_") + std::to_string(::getpid()) + "_" + name + ".safetensors");
}

}  // namespace

TEST_CASE("sae: a tiny ReLU SAE's forward and loss by hand", "[interp][sae]") {
  // d = 2, n = 3, b_dec = (0.5, -0.5) subtracted from the input, lambda = 0.1.
  //   x1 = (1.5, 0.5): xc = (1, 1), xc W_enc = (1, 2, 0), + b_enc (0, -0.5, 0.25) -> f = (1, 1.5, 0.25)
  //     x^ = f W_dec + b_dec = (1 + 0.5, 1.5 + 0.5) + (0.5, -0.5) = (2, 1.5); ||x^ - x||^2 = 0.25 + 1 = 1.25
  //   x2 = (0.5, -0.5): xc = 0, f = ReLU(b_enc) = (0, 0, 0.25); x^ = (0.5, 0.5) + b_dec = (1, 0);
  //     ||x^ - x||^2 = 0.25 + 0.25 = 0.5
  //   mse = (1.25 + 0.5) / 2 = 0.875 (sum over d, mean over rows, as SAELens)
  //   l1 = 0.1 * (2.75 + 0.25) / 2 = 0.15; loss 1.025; L0 = (3 + 1) / 2 = 2; nmse = 1.75 / (2.5 + 0.5)
  //   scaled by ||W_dec,i|| = (1, 1, 2 sqrt 2): l1 = 0.1 * ((2.5 + 0.25 * 2.8284271) + 0.25 * 2.8284271) / 2
  //     = 0.1 * 3.9142136 / 2 = 0.19571068
  for (const bool scaled : {false, true}) {
    xi::sae_config c = relu_config(2, 3);
    c.normalize_decoder = false;
    c.l1_coefficient = 0.1f;
    c.scale_sparsity_by_decoder_norm = scaled;
    xi::sparse_autoencoder sae(c);
    sae.W_enc() << 1, 0, -1, 0, 2, 1;
    sae.b_enc() << 0, -0.5f, 0.25f;
    sae.W_dec() << 1, 0, 0, 1, 2, 2;
    sae.b_dec() << 0.5f, -0.5f;
    const std::vector<float> x = {1.5f, 0.5f, 0.5f, -0.5f};
    const auto z = encode(sae, x);
    CHECK(z == std::vector<float>{1, 1.5f, 0.25f, 0, 0, 0.25f});
    std::vector<float> x_hat(4);
    sae.decode(as_view2d(std::as_const(z), 2, 3), as_view2d(x_hat, 2, 2));
    CHECK(x_hat == std::vector<float>{2, 1.5f, 1, 0});
    const xi::sae_step_stats st = sae.evaluate(as_view2d(x, 2, 2));
    CHECK(st.recon == Approx(0.875).epsilon(1e-6));
    CHECK(st.sparsity == Approx(scaled ? 0.19571068 : 0.15).epsilon(1e-6));
    CHECK(st.loss == Approx(scaled ? 1.07071068 : 1.025).epsilon(1e-6));
    CHECK(st.l0 == 2.0f);
    CHECK(st.nmse == Approx(1.75 / 3.0).epsilon(1e-6));
    CHECK(st.aux == 0.0f);
  }
}

TEST_CASE("sae: ReLU + L1 gradients match finite differences", "[interp][sae]") {
  for (const bool scaled : {false, true}) {
    for (const bool apply_b_dec : {true, false}) {
      xi::sae_config c = relu_config(5, 9);
      c.l1_coefficient = 0.05f;
      c.scale_sparsity_by_decoder_norm = scaled;
      c.normalize_decoder = !scaled;
      c.apply_b_dec_to_input = apply_b_dec;
      c.seed = 3;
      xi::sparse_autoencoder sae(c);
      auto b = sae.b_dec();
      for (int i = 0; i < 5; ++i) b[i] = 0.1f * float(i) - 0.2f;
      for (int f = 0; f < 9; ++f) sae.b_enc()[f] = 0.05f * float(f % 3);
      const auto x = gaussian(6, 5, 11);
      const auto [checked, skipped] = check_gradients(sae, x, 2e-3f, [](std::int64_t) { return true; });
      INFO("scaled " << scaled << " apply_b_dec " << apply_b_dec << ": skipped " << skipped);
      CHECK(checked >= 90);
    }
  }
}

TEST_CASE("sae: TopK gradients match finite differences (reconstruction and AuxK)", "[interp][sae]") {
  SECTION("reconstruction, no dead latent") {
    for (const auto kind : {xi::sae_kind::topk, xi::sae_kind::batch_topk}) {
      xi::sae_config c = topk_config(6, 10, 3);
      c.kind = kind;
      c.seed = 5;
      xi::sparse_autoencoder sae(c);
      const auto x = gaussian(8, 6, 21, 0.3f);
      sae.initialize(as_view2d(x, 8, 6));
      const xi::sae_gradients g = sae.gradients(as_view2d(x, 8, 6), false);
      CHECK(g.stats.aux == 0.0f);
      const auto [checked, skipped] = check_gradients(sae, x, 1e-3f, [](std::int64_t) { return true; });
      INFO("skipped " << skipped);
      CHECK(checked >= 100);
    }
  }
  SECTION("AuxK: the parameters of dead latents that are not active") {
    xi::sae_config c = topk_config(6, 12, 1);
    c.k_aux = 12;  // every dead latent with a positive pre-activation
    c.dead_tokens = 0;
    c.lr = 1e-6f;
    c.seed = 8;
    xi::sparse_autoencoder sae(c);
    const auto x = gaussian(4, 6, 31, 0.2f);
    sae.initialize(as_view2d(x, 4, 6));
    sae.train_step(as_view2d(x, 4, 6));  // at most 4 latents fire; the others are now dead
    REQUIRE(sae.dead_latents() >= 8);
    const xi::sae_gradients g = sae.gradients(as_view2d(x, 4, 6), false);
    REQUIRE(g.stats.aux > 0.0f);
    CHECK(g.stats.sparsity == Approx(g.stats.aux / 32.0f));
    // Latents that are dead and inactive on x: their parameters change only AuxK (e stays fixed).
    const auto z = encode(sae, x, true);
    std::vector<bool> candidate(12, false);
    for (int f = 0; f < 12; ++f) {
      bool active = false;
      for (int r = 0; r < 4; ++r) active = active || z[static_cast<std::size_t>(r * 12 + f)] != 0.0f;
      candidate[static_cast<std::size_t>(f)] =
          !active && sae.tokens_since_fired()[static_cast<std::size_t>(f)] > 0;
    }
    const xi::sae_detail::sae_layout l{6, 12};
    const auto [checked, skipped] = check_gradients(sae, x, 1e-3f, [&](std::int64_t i) {
      std::int64_t f = -1;
      if (i < l.b_enc())
        f = i / 6;  // W_enc column f (stored contiguously)
      else if (i < l.w_dec())
        f = i - l.b_enc();
      else if (i < l.b_dec())
        f = (i - l.w_dec()) / 6;
      return f >= 0 && candidate[static_cast<std::size_t>(f)];
    });
    INFO("skipped " << skipped);
    CHECK(checked >= 8 * 13);
  }
}

TEST_CASE("sae: TopK decoder rows stay unit norm and gradients are projected", "[interp][sae]") {
  xi::sae_config c = topk_config(8, 32, 4);
  c.dead_tokens = 16;  // so that AuxK takes part after a few steps
  xi::sparse_autoencoder sae(c);
  const auto x = gaussian(16, 8, 41, 0.5f);
  const auto xv = as_view2d(x, 16, 8);
  sae.initialize(xv);
  for (int f = 0; f < 32; ++f) CHECK(std::abs(row_norm(sae.decoder_row(f)) - 1.0) <= 1e-6);
  for (int step = 0; step < 6; ++step) {
    const xi::sae_gradients raw = sae.gradients(xv, false);
    const xi::sae_gradients projected = sae.gradients(xv, true);
    double raw_parallel = 0;
    for (int f = 0; f < 32; ++f) {
      const auto w = sae.decoder_row(f);
      double dot_raw = 0, dot = 0, norm = 0;
      for (int c2 = 0; c2 < 8; ++c2) {
        dot_raw += double(raw.W_dec()(f, c2)) * w[c2];
        dot += double(projected.W_dec()(f, c2)) * w[c2];
        norm += double(projected.W_dec()(f, c2)) * projected.W_dec()(f, c2);
      }
      raw_parallel = std::max(raw_parallel, std::abs(dot_raw));
      CHECK(std::abs(dot) <= 1e-6 * std::sqrt(norm) + 1e-12);
    }
    CHECK(raw_parallel > 1e-4);  // the projection had something to remove
    sae.train_step(xv);
    for (int f = 0; f < 32; ++f) CHECK(std::abs(row_norm(sae.decoder_row(f)) - 1.0) <= 1e-6);
  }
  CHECK(sae.steps() == 6);
}

TEST_CASE("sae: ||z||_0 <= k per row, == k B for BatchTopK over a batch", "[interp][sae]") {
  const auto x = gaussian(16, 8, 51);
  for (const auto kind : {xi::sae_kind::topk, xi::sae_kind::batch_topk}) {
    xi::sae_config c = topk_config(8, 32, 3);
    c.kind = kind;
    xi::sparse_autoencoder sae(c);
    sae.initialize(as_view2d(x, 16, 8));
    const auto z = encode(sae, x);
    for (int r = 0; r < 16; ++r) {
      int nnz = 0;
      for (int f = 0; f < 32; ++f) {
        const float v = z[static_cast<std::size_t>(r * 32 + f)];
        CHECK(v >= 0.0f);
        nnz += v != 0.0f;
      }
      CHECK(nnz <= 3);
    }
    const auto zt = encode(sae, x, true);
    const auto total = std::count_if(zt.begin(), zt.end(), [](float v) { return v != 0.0f; });
    if (kind == xi::sae_kind::batch_topk) {
      CHECK(total == 3 * 16);
      CHECK(sae.evaluate(as_view2d(x, 16, 8)).l0 == 3.0f);
    } else {
      CHECK(zt == z);
    }
  }
}

TEST_CASE("sae: AuxK is 0 without dead latents", "[interp][sae]") {
  xi::sae_config c = topk_config(8, 32, 2);
  xi::sparse_autoencoder sae(c);
  const auto x = gaussian(32, 8, 61);
  const auto xv = as_view2d(x, 32, 8);
  sae.initialize(xv);
  for (int step = 0; step < 3; ++step) {
    const xi::sae_step_stats st = sae.train_step(xv);
    CHECK(st.dead == 0);
    CHECK(st.aux == 0.0f);
    CHECK(st.sparsity == 0.0f);
    CHECK(st.loss == st.recon);
  }
  CHECK(sae.evaluate(xv).aux == 0.0f);
}

TEST_CASE("sae: identity weights with n = d = k reconstruct positive inputs exactly", "[interp][sae]") {
  xi::sae_config c = topk_config(5, 5, 5);
  c.normalize_activations = xi::sae_normalization::none;
  xi::sparse_autoencoder sae(c);
  sae.W_enc().setIdentity();
  sae.W_dec().setIdentity();
  sae.b_enc().setZero();
  sae.b_dec().setZero();
  auto x = gaussian(7, 5, 71);
  for (float& v : x) v = std::abs(v) + 0.01f;
  const auto z = encode(sae, x);
  CHECK(z == x);
  std::vector<float> x_hat(x.size());
  sae.decode(as_view2d(std::as_const(z), 7, 5), as_view2d(x_hat, 7, 5));
  CHECK(x_hat == x);
  const xi::sae_step_stats st = sae.evaluate(as_view2d(x, 7, 5));
  CHECK(st.recon == 0.0f);
  CHECK(st.nmse == 0.0f);
  CHECK(st.l0 == 5.0f);
}

TEST_CASE("sae: NMSE of a zero reconstruction is 1", "[interp][sae]") {
  const auto x = gaussian(9, 4, 81, 0.7f);
  const std::vector<float> zero(x.size(), 0.0f);
  CHECK(xi::normalized_mse(as_view2d(x, 9, 4), as_view2d(zero, 9, 4)) == 1.0f);
  CHECK(xi::normalized_mse(as_view2d(x, 9, 4), as_view2d(x, 9, 4)) == 0.0f);
  // The SAE with W_dec = 0, b_dec = 0 reconstructs 0.
  xi::sae_config c = topk_config(4, 8, 2);
  c.normalize_decoder = false;
  xi::sparse_autoencoder sae(c);
  sae.W_dec().setZero();
  CHECK(sae.evaluate(as_view2d(x, 9, 4)).nmse == 1.0f);
}

TEST_CASE("sae: geometric median", "[interp][sae]") {
  SECTION("collinear points: the middle one; symmetric points: the centre") {
    const std::vector<float> line = {0, 0, 1, 0, 5, 0};
    const auto m = xi::geometric_median(as_view2d(line, 3, 2));
    CHECK(m[0] == Approx(1.0).margin(1e-5));
    CHECK(m[1] == Approx(0.0).margin(1e-5));
    const std::vector<float> square = {1, 1, -1, 1, -1, -1, 1, -1, 3, 0, -3, 0};
    const auto c = xi::geometric_median(as_view2d(square, 6, 2));
    CHECK(c[0] == Approx(0.0).margin(1e-6));
    CHECK(c[1] == Approx(0.0).margin(1e-6));
    // Four points of a triangle's fan: (0,0), (2,0), (0,2), (1,1)... the median of 3 points with all
    // angles < 120 degrees is the Fermat point: for an equilateral triangle, its centre.
    const float h = std::sqrt(3.0f);
    const std::vector<float> tri = {-1, 0, 1, 0, 0, h};
    const auto t = xi::geometric_median(as_view2d(tri, 3, 2));
    CHECK(t[0] == Approx(0.0).margin(1e-5));
    CHECK(t[1] == Approx(h / 3.0f).epsilon(1e-5));
  }
  SECTION("invariant to the rows' order, and the minimiser of the sum of distances") {
    const auto x = gaussian(60, 5, 91, 1.0f);
    const auto m = xi::geometric_median(as_view2d(x, 60, 5));
    std::vector<int> perm(60);
    std::iota(perm.begin(), perm.end(), 0);
    xplor::philox_stream gen(4, 0);
    for (int i = 59; i > 0; --i) std::swap(perm[i], perm[gen() % static_cast<std::uint32_t>(i + 1)]);
    std::vector<float> shuffled(x.size());
    for (int r = 0; r < 60; ++r) std::copy_n(x.begin() + perm[r] * 5, 5, shuffled.begin() + r * 5);
    const auto ms = xi::geometric_median(as_view2d(shuffled, 60, 5));
    for (int c = 0; c < 5; ++c) CHECK(std::abs(ms[c] - m[c]) <= 1e-5f);
    const auto objective = [&](const std::vector<float>& at) {
      double s = 0;
      for (int r = 0; r < 60; ++r) {
        double q = 0;
        for (int c = 0; c < 5; ++c) q += std::pow(double(x[r * 5 + c]) - at[c], 2);
        s += std::sqrt(q);
      }
      return s;
    };
    for (int c = 0; c < 5; ++c)
      for (const float step : {-1e-2f, 1e-2f}) {
        auto moved = m;
        moved[c] += step;
        CHECK(objective(moved) >= objective(m));
      }
  }
}

TEST_CASE("sae: TF-IDF ranking is the formula of the elicitation paper", "[interp][sae]") {
  // z [3 positions, 3 features]: means (2, 1/3, 1); density (0.5, 0.01, 0.1)
  //   score_0 = 2 ln(1 / 0.50000001) = 1.3862943, score_1 = ln(1 / 0.01000001) / 3 = 1.5350562,
  //   score_2 = ln(1 / 0.10000001) = 2.3025850 -> order 2, 1, 0.
  const std::vector<float> z = {1, 0, 2, 3, 0, 0, 2, 1, 1};
  const std::vector<float> density = {0.5f, 0.01f, 0.1f};
  const auto top = xi::rank_features_tfidf(as_view2d(z, 3, 3), density, 3);
  REQUIRE(top.size() == 3);
  CHECK(top[0].feature == 2);
  CHECK(top[1].feature == 1);
  CHECK(top[2].feature == 0);
  CHECK(top[0].score == Approx(2.3025850).epsilon(1e-6));
  CHECK(top[1].score == Approx(1.5350562).epsilon(1e-6));
  CHECK(top[2].score == Approx(1.3862943).epsilon(1e-6));
  for (const auto& s : top) {
    double mean = 0;
    for (int r = 0; r < 3; ++r) mean += z[static_cast<std::size_t>(r * 3 + s.feature)];
    mean /= 3;
    CHECK(s.score == static_cast<float>(mean * std::log(1.0 / (double(density[s.feature]) + 1e-8))));
  }
  // Uniform density: the order of the mean activation, ties to the lower index.
  const auto zr = gaussian(20, 12, 101);
  std::vector<float> za(zr.size());
  for (std::size_t i = 0; i < zr.size(); ++i) za[i] = std::max(zr[i], 0.0f);
  for (int r = 0; r < 20; ++r) za[r * 12 + 3] = za[r * 12 + 5] = 0.25f;  // a tie: 3 before 5
  const std::vector<float> uniform(12, 0.2f);
  const auto all = xi::rank_features_tfidf(as_view2d(za, 20, 12), uniform, 12);
  std::vector<std::pair<double, int>> means;
  for (int f = 0; f < 12; ++f) {
    double m = 0;
    for (int r = 0; r < 20; ++r) m += za[r * 12 + f];
    means.push_back({-m / 20, f});
  }
  std::sort(means.begin(), means.end());
  for (int i = 0; i < 12; ++i) CHECK(all[i].feature == means[i].second);
  const auto pos3 = std::find_if(all.begin(), all.end(), [](auto& s) { return s.feature == 3; });
  CHECK((pos3 + 1)->feature == 5);
}

TEST_CASE("sae: feature tokens and density", "[interp][sae]") {
  xi::sae_config c = relu_config(3, 2);
  c.normalize_decoder = false;
  xi::sparse_autoencoder sae(c);
  sae.W_dec() << 1, 0, 0, 0, 1, -1;
  // W_E [4, 3]: scores of feature 1 (0, 1, -1): 0 - 2 = -2, 3 - 0 = 3, 1 - 1 = 0, 3 - 0 = 3
  const std::vector<float> emb = {5, 0, 2, 0, 3, 0, 1, 1, 1, -4, 3, 0};
  const auto top = xi::feature_tokens(sae, 1, as_view2d(emb, 4, 3), 3);
  REQUIRE(top.size() == 3);
  CHECK(top[0].token == 1);
  CHECK(top[0].score == 3.0f);
  CHECK(top[1].token == 3);
  CHECK(top[2].token == 2);
  CHECK(top[2].score == 0.0f);
  // Density: W_enc picks coordinate 0 for latent 0 and coordinate 1 for latent 1, no bias.
  sae.W_enc() << 1, 0, 0, 1, 0, 0;
  sae.b_dec().setZero();
  sae.b_enc().setZero();
  const std::vector<float> acts = {1, 1, 0, -1, 2, 0, 3, -1, 0, 2, -2, 2};
  const auto density = xi::feature_density(sae, as_view2d(acts, 4, 3));
  CHECK(density == std::vector<float>{0.75f, 0.5f});
}

TEST_CASE("sae: activation normalisation is estimated once and undone by decode", "[interp][sae]") {
  const auto x = gaussian(64, 6, 111, 0.5f);
  for (const auto norm :
       {xi::sae_normalization::expected_average_only_in, xi::sae_normalization::unit_mean_squared_norm}) {
    xi::sae_config c = relu_config(6, 12);
    c.normalize_activations = norm;
    xi::sparse_autoencoder sae(c);
    sae.initialize(as_view2d(x, 64, 6));
    double mean_norm = 0, mean_sq = 0;
    for (int r = 0; r < 64; ++r) {
      double s = 0;
      for (int i = 0; i < 6; ++i) s += std::pow(double(sae.activation_scale()) * x[r * 6 + i], 2);
      mean_norm += std::sqrt(s) / 64;
      mean_sq += s / 64;
    }
    if (norm == xi::sae_normalization::expected_average_only_in)
      CHECK(mean_norm == Approx(std::sqrt(6.0)).epsilon(1e-5));
    else
      CHECK(mean_sq == Approx(1.0).epsilon(1e-5));
    // With W_dec = 0 the reconstruction is b_dec / s: set b_dec = s * x_0 and decode gives x_0.
    sae.W_dec().setZero();
    for (int i = 0; i < 6; ++i) sae.b_dec()[i] = sae.activation_scale() * x[static_cast<std::size_t>(i)];
    const std::vector<float> z(12, 0.0f);
    std::vector<float> x_hat(6);
    sae.decode(as_view2d(z, 1, 12), as_view2d(x_hat, 1, 6));
    for (int i = 0; i < 6; ++i)
      CHECK(x_hat[static_cast<std::size_t>(i)] == Approx(x[static_cast<std::size_t>(i)]).epsilon(1e-6));
  }
}

TEST_CASE("sae: random inputs keep the invariants of every family", "[interp][sae]") {
  xplor::philox_stream gen(2024, 7);
  for (int trial = 0; trial < 24; ++trial) {
    const auto kind = static_cast<xi::sae_kind>(trial % 3);
    const std::int64_t d = 2 + gen() % 7, n = d + gen() % 20, rows = 1 + gen() % 12;
    xi::sae_config c;
    c.d_in = d;
    c.n_latents = n;
    c.kind = kind;
    c.k = 1 + static_cast<int>(gen() % static_cast<std::uint32_t>(std::min<std::int64_t>(n, 6)));
    c.seed = gen();
    c.dead_tokens = static_cast<std::int64_t>(gen() % 8);
    xi::sparse_autoencoder sae(c);
    const auto x = gaussian(rows, d, c.seed, 0.3f);
    const auto xv = as_view2d(x, rows, d);
    sae.initialize(xv);
    for (int step = 0; step < 3; ++step) {
      const xi::sae_step_stats st = sae.train_step(xv);
      CHECK(std::isfinite(st.loss));
      CHECK(st.loss == Approx(double(st.recon) + double(st.sparsity)).epsilon(1e-5));
    }
    const xi::sae_step_stats st = sae.evaluate(xv);
    const auto z = encode(sae, x, true);
    std::int64_t nnz = 0;
    for (const float v : z) {
      CHECK(v >= 0.0f);
      nnz += v != 0.0f;
    }
    CHECK(st.l0 == Approx(double(nnz) / double(rows)));
    if (kind != xi::sae_kind::relu_l1) CHECK(nnz <= std::int64_t{c.k} * rows);
    std::vector<float> x_hat(x.size());
    sae.decode(as_view2d(std::as_const(z), rows, n), as_view2d(x_hat, rows, d));
    CHECK(xi::normalized_mse(xv, as_view2d(x_hat, rows, d)) == Approx(st.nmse).epsilon(1e-4).margin(1e-6));
    CHECK(st.dead == sae.dead_latents());
    CHECK(st.dead <= n);
  }
}

TEST_CASE("sae: training is deterministic under the seed", "[interp][sae]") {
  const auto x = gaussian(64, 8, 121, 0.2f);
  const auto xv = as_view2d(x, 64, 8);
  for (const auto kind : {xi::sae_kind::topk, xi::sae_kind::batch_topk, xi::sae_kind::relu_l1}) {
    const auto train = [&](std::uint64_t seed) {
      xi::sae_config c = topk_config(8, 32, 4);
      c.kind = kind;
      c.seed = seed;
      c.dead_tokens = 64;
      xi::sparse_autoencoder sae(c);
      sae.initialize(xv);
      for (int s = 0; s < 5; ++s) sae.train_step(xv);
      return std::vector<float>(sae.parameters().begin(), sae.parameters().end());
    };
    const auto a = train(1), b = train(1), other = train(2);
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    CHECK(a != other);
  }
}

namespace {

/// Planted dictionary: `features` unit directions in R^d; each sample the sum of `active`
/// distinct ones with magnitudes uniform in [0.5, 1.5). Returns the fraction of directions that
/// some decoder row matches with cosine > 0.9.
struct planted {
  std::int64_t d = 32, features = 64;
  int active = 3;
  std::vector<float> dirs;
  explicit planted(std::uint64_t seed) {
    xplor::philox_stream gen(seed, 1);
    dirs.resize(static_cast<std::size_t>(features * d));
    for (std::int64_t f = 0; f < features; ++f) {
      double s = 0;
      for (std::int64_t i = 0; i < d; ++i) {
        dirs[f * d + i] = gen.normal();
        s += double(dirs[f * d + i]) * dirs[f * d + i];
      }
      for (std::int64_t i = 0; i < d; ++i)
        dirs[f * d + i] = static_cast<float>(dirs[f * d + i] / std::sqrt(s));
    }
  }
  std::vector<float> batch(std::int64_t rows, std::uint64_t stream) const {
    xplor::philox_stream gen(7, stream);
    std::vector<float> x(static_cast<std::size_t>(rows * d), 0.0f);
    for (std::int64_t r = 0; r < rows; ++r) {
      std::int64_t chosen[8];
      for (int a = 0; a < active; ++a) {
        std::int64_t f;
        bool dup;
        do {
          f = gen() % static_cast<std::uint32_t>(features);
          dup = false;
          for (int b = 0; b < a; ++b) dup = dup || chosen[b] == f;
        } while (dup);
        chosen[a] = f;
        const float mag = 0.5f + gen.uniform();
        for (std::int64_t i = 0; i < d; ++i) x[r * d + i] += mag * dirs[f * d + i];
      }
    }
    return x;
  }
  double recovered(const xi::sparse_autoencoder& sae) const {
    int hits = 0;
    for (std::int64_t f = 0; f < features; ++f) {
      double best = -1;
      for (std::int64_t l = 0; l < sae.n_latents(); ++l) {
        const auto w = sae.decoder_row(l);
        double dot = 0;
        for (std::int64_t i = 0; i < d; ++i) dot += double(w[i]) * dirs[f * d + i];
        best = std::max(best, dot / row_norm(w));
      }
      hits += best > 0.9;
    }
    return double(hits) / double(features);
  }
};

}  // namespace

TEST_CASE("sae: planted features are recovered", "[interp][sae]") {
  const planted p(5);
  constexpr std::int64_t rows = 256;
  const auto sample = p.batch(2048, 0);
  SECTION("TopK") {
    xi::sae_config c = topk_config(p.d, 128, 3);
    c.dead_tokens = 4096;
    xi::sparse_autoencoder sae(c);
    sae.initialize(as_view2d(sample, 2048, p.d));
    xi::sae_step_stats st;
    for (int step = 0; step < 1500; ++step) {
      const auto batch = p.batch(rows, 1 + static_cast<std::uint64_t>(step));
      st = sae.train_step(as_view2d(batch, rows, p.d));
    }
    const double frac = p.recovered(sae);
    WARN("TopK (d 32, n 128, k 3, 1500 steps of 256): recovered "
         << frac << " of 64 planted features at cos > 0.9; nmse " << st.nmse << ", dead " << st.dead);
    REQUIRE(frac >= 0.8);
  }
  for (const bool april : {false, true}) {
    // SAELens-style: inputs at E||x|| = sqrt(d), unit decoder rows; or Anthropic's April update:
    // free decoder norms at 0.1, tied init, penalty scaled by ||W_dec,i||.
    DYNAMIC_SECTION("ReLU + L1" << (april ? ", April update" : "")) {
      xi::sae_config c = relu_config(p.d, 128);
      c.l1_coefficient = april ? 1.0f : 2.0f;
      c.lr = 1e-3f;
      c.normalize_activations = xi::sae_normalization::expected_average_only_in;
      c.normalize_decoder = !april;
      c.scale_sparsity_by_decoder_norm = april;
      c.decoder_heuristic_init = april;
      c.init_encoder_as_decoder_transpose = april;
      xi::sparse_autoencoder sae(c);
      sae.initialize(as_view2d(sample, 2048, p.d));
      xi::sae_step_stats st;
      constexpr std::int64_t relu_rows = 128;  // the dense ReLU step: half the batch, for ASan's sake
      for (int step = 0; step < 1500; ++step) {
        const auto batch = p.batch(relu_rows, 1 + static_cast<std::uint64_t>(step));
        st = sae.train_step(as_view2d(batch, relu_rows, p.d));
      }
      const double frac = p.recovered(sae);
      WARN("ReLU+L1" << (april ? " (April update)" : "") << " (d 32, n 128, lambda " << c.l1_coefficient
                     << ", 1500 steps of 128): recovered " << frac
                     << " of 64 planted features at cos > 0.9; nmse " << st.nmse << ", L0 " << st.l0);
      REQUIRE(frac >= 0.8);
    }
  }
}

TEST_CASE("sae: bad input is an xplor::error naming the argument", "[interp][sae]") {
  using Catch::Contains;
  const auto make = [](auto edit) {
    xi::sae_config c = topk_config(4, 8, 2);
    edit(c);
    return xi::sparse_autoencoder(c);
  };
  CHECK_THROWS_WITH(make([](auto& c) { c.k = 9; }), Contains("k = 9"));
  CHECK_THROWS_WITH(make([](auto& c) { c.k = 0; }), Contains("k = 0"));
  CHECK_THROWS_WITH(make([](auto& c) { c.d_in = 0; }), Contains("d_in = 0"));
  CHECK_THROWS_WITH(make([](auto& c) { c.n_latents = -3; }), Contains("n_latents = -3"));
  CHECK_THROWS_WITH(make([](auto& c) { c.k_aux = 20; }), Contains("k_aux = 20"));
  CHECK_THROWS_WITH(make([](auto& c) { c.beta2 = 1.0f; }), Contains("beta2 = 1"));
  CHECK_THROWS_WITH(make([](auto& c) { c.lr = -1.0f; }), Contains("lr = -1"));
  CHECK_THROWS_WITH(make([](auto& c) {
                      c.kind = xi::sae_kind::relu_l1;
                      c.decoder_heuristic_init = true;
                    }),
                    Contains("decoder_heuristic_init"));
  CHECK_THROWS_AS(make([](auto& c) { c.k = 9; }), xplor::error);

  xi::sparse_autoencoder sae(topk_config(4, 8, 2));
  const std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<float> z(16);
  CHECK_THROWS_WITH(sae.train_step(xplor::make_view<const float>(nullptr, {0, 4})), Contains("x has 0 rows"));
  CHECK_THROWS_WITH(sae.train_step(as_view2d(x, 4, 2)), Contains("x has 2 columns, expected 4"));
  CHECK_THROWS_WITH(sae.initialize(xplor::make_view<const float>(nullptr, {0, 4})),
                    Contains("sample has 0 rows"));
  auto bad = x;
  bad[5] = std::nanf("");
  CHECK_THROWS_WITH(sae.evaluate(as_view2d(bad, 2, 4)), Contains("x(1, 1) = nan is not finite"));
  CHECK_THROWS_WITH(sae.encode(as_view2d(x, 2, 4), as_view2d(z, 4, 4)),
                    Contains("z is 4 x 4, expected 2 x 8"));
  std::vector<float> emb(12, 1.0f);
  CHECK_THROWS_WITH(xi::feature_tokens(sae, 8, as_view2d(emb, 3, 4), 1), Contains("feature = 8"));
  CHECK_THROWS_WITH(xi::feature_tokens(sae, 0, as_view2d(emb, 3, 4), 4), Contains("k = 4"));
  CHECK_THROWS_WITH(xi::feature_tokens(sae, -1, as_view2d(emb, 3, 4), 1), Contains("feature = -1"));
  const std::vector<float> zz(6, 0.5f), density = {0.1f, 0.2f};
  CHECK_THROWS_WITH(xi::rank_features_tfidf(as_view2d(zz, 2, 3), density, 1),
                    Contains("density has 2 entries"));
  const std::vector<float> density3 = {0.1f, 1.5f, 0.2f};
  CHECK_THROWS_WITH(xi::rank_features_tfidf(as_view2d(zz, 2, 3), density3, 1), Contains("density[1] = 1.5"));
  CHECK_THROWS_WITH(xi::geometric_median(xplor::make_view<const float>(nullptr, {0, 3})),
                    Contains("x has 0 rows"));
  CHECK_THROWS_WITH(sae.decoder_row(8), Contains("feature = 8"));
}

TEST_CASE("sae: save and load round trip bit for bit; damaged files are rejected", "[interp][sae]") {
  const auto x = gaussian(32, 6, 131, 0.4f);
  const auto xv = as_view2d(x, 32, 6);
  for (const auto kind : {xi::sae_kind::topk, xi::sae_kind::relu_l1}) {
    xi::sae_config c = topk_config(6, 16, 2);
    c.kind = kind;
    c.dead_tokens = 40;
    c.seed = 17;
    if (kind == xi::sae_kind::relu_l1)
      c.normalize_activations = xi::sae_normalization::expected_average_only_in;
    xi::sparse_autoencoder sae(c);
    sae.initialize(xv);
    for (int s = 0; s < 4; ++s) sae.train_step(xv);
    const auto path = temp_file(xi::to_string(kind));
    xi::save_sae(path, sae);
    xi::sparse_autoencoder back = xi::load_sae(path);
    CHECK(back.config().kind == kind);
    CHECK(back.config().lr == sae.config().lr);
    CHECK(back.config().k_aux == sae.config().k_aux);
    CHECK(back.activation_scale() == sae.activation_scale());
    CHECK(back.mse_scale() == sae.mse_scale());
    CHECK(back.steps() == 4);
    CHECK(std::equal(back.tokens_since_fired().begin(), back.tokens_since_fired().end(),
                     sae.tokens_since_fired().begin()));
    const auto same = [](std::span<const float> a, std::span<const float> b) {
      return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
    };
    CHECK(same(back.parameters(), sae.parameters()));
    CHECK(same(back.optimizer().first_moment(), sae.optimizer().first_moment()));
    CHECK(same(back.optimizer().second_moment(), sae.optimizer().second_moment()));
    // Training continues identically.
    sae.train_step(xv);
    back.train_step(xv);
    CHECK(same(back.parameters(), sae.parameters()));
    // SAELens' shapes: W_enc [d_in, d_sae], W_dec [d_sae, d_in].
    const auto file = xplor::model::read_safetensors(path);
    CHECK(file.tensors.at("W_enc").shape == std::vector<std::int64_t>{6, 16});
    CHECK(file.tensors.at("W_dec").shape == std::vector<std::int64_t>{16, 6});
    CHECK(file.tensors.at("W_enc").data[1 * 16 + 3] == xi::load_sae(path).W_enc()(1, 3));
    CHECK(file.metadata.at("architecture") == (kind == xi::sae_kind::topk ? "topk" : "standard"));
    std::filesystem::remove(path);
  }

  xi::sparse_autoencoder sae(topk_config(6, 16, 2));
  const auto path = temp_file("damaged");
  SECTION("a flipped byte breaks the content hash") {
    xi::save_sae(path, sae);
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const auto size = static_cast<std::streamoff>(f.tellg());
    f.seekp(size - 7);
    f.put('\x7f');
    f.close();
    CHECK_THROWS_WITH(xi::load_sae(path), Catch::Contains("corrupted"));
  }
  SECTION("a missing tensor, a wrong shape, a bad config value (files without a hash)") {
    const auto meta = xi::sae_detail::config_metadata(sae);
    const auto slots = xi::sae_detail::tensor_slots(6, 16);
    std::vector<std::vector<float>> data;
    std::vector<xplor::model::tensor_view_in> tensors;
    data.reserve(16);
    for (const auto& s : slots)
      for (const std::string prefix : {"", "optimizer.m.", "optimizer.v."}) {
        const std::vector<float> zeros(sae.parameters().size(), 0.0f);
        data.push_back(xi::sae_detail::gather(
            prefix.empty() ? sae.parameters() : std::span<const float>(zeros), s, 6, 16));
        tensors.push_back({prefix + s.name, s.shape, data.back()});
      }
    data.emplace_back(16, 0.0f);
    tensors.push_back({"tokens_since_fired", {16}, data.back()});
    // Complete and without a hash: loads.
    xplor::model::write_safetensors(path, tensors, meta);
    CHECK_NOTHROW(xi::load_sae(path));
    auto missing = tensors;
    missing.erase(missing.begin() + 6);  // W_dec
    xplor::model::write_safetensors(path, missing, meta);
    CHECK_THROWS_WITH(xi::load_sae(path), Catch::Contains("missing tensor 'W_dec'"));
    auto reshaped = tensors;
    reshaped[0].shape = {16, 6};  // W_enc transposed
    xplor::model::write_safetensors(path, reshaped, meta);
    CHECK_THROWS_WITH(xi::load_sae(path), Catch::Contains("tensor 'W_enc' has shape [16, 6]"));
    auto bad_meta = meta;
    bad_meta["k"] = "17";
    xplor::model::write_safetensors(path, tensors, bad_meta);
    CHECK_THROWS_WITH(xi::load_sae(path), Catch::Contains("k = 17"));
    bad_meta = meta;
    bad_meta["d_in"] = "six";
    xplor::model::write_safetensors(path, tensors, bad_meta);
    CHECK_THROWS_WITH(xi::load_sae(path), Catch::Contains("'d_in' = 'six' is not an integer"));
    bad_meta = meta;
    bad_meta.erase("architecture");
    xplor::model::write_safetensors(path, tensors, bad_meta);
    CHECK_THROWS_WITH(xi::load_sae(path), Catch::Contains("has no 'architecture'"));
    auto extra = tensors;
    extra.push_back({"W_gate", {16}, data.back()});
    xplor::model::write_safetensors(path, extra, meta);
    CHECK_THROWS_WITH(xi::load_sae(path), Catch::Contains("unexpected tensor 'W_gate'"));
  }
  std::filesystem::remove(path);
}

namespace {

/// A JSON number array of any nesting, flattened row-major.
std::vector<double> flat(const nlohmann::json& j) {
  std::vector<double> out;
  if (j.is_array()) {
    for (const auto& e : j) {
      const auto part = flat(e);
      out.insert(out.end(), part.begin(), part.end());
    }
  } else {
    out.push_back(j.get<double>());
  }
  return out;
}

/// |got - want| <= 1e-5 |want| + 1e-6 elementwise (float32 against float64 goldens; the largest
/// difference seen was 6e-7).
template <class Got>
void check_close(const char* what, const Got& got, const std::vector<double>& want) {
  REQUIRE(std::ssize(want) == std::ssize(got));
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double g = double(got[static_cast<std::ptrdiff_t>(i)]), w = want[i];
    INFO(what << "[" << i << "]: xplor " << g << ", SAELens " << w);
    CHECK(std::abs(g - w) <= 1e-5 * std::abs(w) + 1e-6);
  }
}

}  // namespace

TEST_CASE("sae: SAELens's own outputs (tests/data/interp/sae_peer.json)", "[interp][sae][peers]") {
  // Goldens from sae-lens's StandardTrainingSAE / TopKTrainingSAE.training_forward_pass and torch
  // autograd, in float64, written by tools/sae_peer_goldens.py (d_in 6, d_sae 10, 8 rows).
  // Option mapping (SAELens -> sae_config):
  //  standard: relu_l1, l1_coefficient, scale_sparsity_by_decoder_norm = true (sae-lens 6.x always
  //    weights the L1 term by ||W_dec,f||), apply_b_dec_to_input, normalize_activations none,
  //    normalize_decoder = false (rows of any norm; raw gradients(x, false)).
  //  topk: topk with k; SAELens' mse_loss is a sum over d and a mean over rows, xplor's recon is
  //    mse_scale * mean over rows and d, so mse_scale = d_in (set_scales(1, d_in)).
  //    rescale_acts_by_decoder_norm = true (SAELens' default) multiplies the pre-activations by
  //    ||W_dec,f|| and divides the activations by it before decoding: with unit rows the values are
  //    xplor's, and the W_dec gradient differs only along each row, so it is compared after
  //    projecting that component out on both sides (gradients(x, true), grad_W_dec_projected).
  //  AuxK: SAELens (after EleutherAI) uses k_aux = d_in / 2, no variance normalisation and a sum
  //    over d; xplor (Gao et al.) divides by var_e = mean (e - mean_rows e)^2, a constant of the
  //    batch. With 3 dead latents whose pre-activations are all > 0 (SAELens applies no ReLU to
  //    them) and k_aux = 3, aux_coeff = aux_loss_coefficient * d_in * var_e gives the same value
  //    and gradients (neither gives b_dec a direct AuxK gradient).
  namespace fs = std::filesystem;
  std::ifstream in(fs::path(XPLOR_TEST_SOURCE_DIR) / "data" / "interp" / "sae_peer.json");
  REQUIRE(in.good());
  const nlohmann::json doc = nlohmann::json::parse(in);
  const std::int64_t d = doc.at("d_in").get<std::int64_t>(), n = doc.at("d_sae").get<std::int64_t>();
  const std::int64_t B = doc.at("rows").get<std::int64_t>();
  REQUIRE(doc.at("cases").size() == 5);
  for (const nlohmann::json& c : doc.at("cases")) {
    const std::string name = c.at("name").get<std::string>();
    const nlohmann::json& cfg = c.at("config");
    INFO("case " << name << " (sae-lens " << doc.at("sae_lens").get<std::string>() << ")");
    REQUIRE(cfg.at("normalize_activations") == "none");
    const bool topk = cfg.at("architecture") == "topk";
    const bool rescale = topk && cfg.at("rescale_acts_by_decoder_norm").get<bool>();
    xi::sae_config sc;
    sc.d_in = d;
    sc.n_latents = n;
    sc.normalize_activations = xi::sae_normalization::none;
    sc.apply_b_dec_to_input = cfg.at("apply_b_dec_to_input").get<bool>();
    const auto dead = c.at("dead_latents").get<std::vector<std::int64_t>>();
    const auto x = flat(c.at("x"));
    const auto out = flat(c.at("sae_out"));
    if (topk) {
      REQUIRE(sc.apply_b_dec_to_input);  // xplor's TopK always centres on b_dec
      sc.kind = xi::sae_kind::topk;
      sc.k = cfg.at("k").get<int>();
      sc.normalize_decoder = rescale;
      sc.k_aux = static_cast<int>(d / 2);
      double var_e = 0;
      if (!dead.empty()) {
        REQUIRE(std::ssize(dead) >= d / 2);  // SAELens' scale min(num_dead / k_aux, 1) is 1
        for (std::int64_t col = 0; col < d; ++col) {
          double mean = 0;
          for (std::int64_t r = 0; r < B; ++r) mean += x[r * d + col] - out[r * d + col];
          mean /= double(B);
          for (std::int64_t r = 0; r < B; ++r) {
            const double e = x[r * d + col] - out[r * d + col] - mean;
            var_e += e * e;
          }
        }
        var_e /= double(B * d);
      }
      sc.aux_coeff = static_cast<float>(cfg.at("aux_loss_coefficient").get<double>() * double(d) * var_e);
    } else {
      sc.kind = xi::sae_kind::relu_l1;
      REQUIRE(cfg.at("lp_norm").get<double>() == 1.0);
      sc.l1_coefficient = static_cast<float>(c.at("coefficients").at("l1").get<double>());
      sc.scale_sparsity_by_decoder_norm = true;
      sc.normalize_decoder = false;
    }
    xi::sparse_autoencoder sae(sc);
    if (topk) sae.set_scales(1.0f, static_cast<float>(d));
    const auto W_enc = flat(c.at("W_enc")), W_dec = flat(c.at("W_dec"));
    const auto b_enc = flat(c.at("b_enc")), b_dec = flat(c.at("b_dec"));
    for (std::int64_t i = 0; i < d; ++i)
      for (std::int64_t f = 0; f < n; ++f) {
        sae.W_enc()(i, f) = static_cast<float>(W_enc[i * n + f]);
        sae.W_dec()(f, i) = static_cast<float>(W_dec[f * d + i]);
      }
    for (std::int64_t f = 0; f < n; ++f) sae.b_enc()[f] = static_cast<float>(b_enc[f]);
    for (std::int64_t i = 0; i < d; ++i) sae.b_dec()[i] = static_cast<float>(b_dec[i]);
    if (!dead.empty()) {
      std::vector<std::int64_t> since(static_cast<std::size_t>(n), 0);
      for (const std::int64_t f : dead) since[static_cast<std::size_t>(f)] = sae.config().dead_tokens + 1;
      sae.set_tokens_since_fired(since);
      REQUIRE(sae.dead_latents() == std::ssize(dead));
    }
    const std::vector<float> xf(x.begin(), x.end());
    const auto xv = as_view2d(xf, B, d);

    const auto z = encode(sae, xf);
    check_close("feature_acts", z, flat(c.at("feature_acts")));
    std::vector<float> x_hat(static_cast<std::size_t>(B * d));
    sae.decode(as_view2d(std::as_const(z), B, n), as_view2d(x_hat, B, d));
    check_close("sae_out", x_hat, out);

    const nlohmann::json& losses = c.at("losses");
    const xi::sae_gradients g = sae.gradients(xv, /*project_decoder=*/rescale);
    const xi::sae_step_stats st = sae.evaluate(xv);
    const std::vector<double> want_terms = {
        losses.at("mse_loss").get<double>(),
        topk ? losses.at("auxiliary_reconstruction_loss").get<double>() : losses.at("l1_loss").get<double>(),
        c.at("loss").get<double>()};
    check_close("mse, sparsity, loss", std::vector<float>{st.recon, st.sparsity, st.loss}, want_terms);
    CHECK(g.stats.loss == st.loss);

    // Gradients, laid out like the parameters (row-major [d, n] for W_enc, [n, d] for W_dec).
    std::vector<float> gW_enc(static_cast<std::size_t>(d * n)), gW_dec(static_cast<std::size_t>(n * d));
    for (std::int64_t i = 0; i < d; ++i)
      for (std::int64_t f = 0; f < n; ++f) {
        gW_enc[i * n + f] = g.W_enc()(i, f);
        gW_dec[f * d + i] = g.W_dec()(f, i);
      }
    const std::vector<float> gb_enc(g.b_enc().begin(), g.b_enc().end());
    const std::vector<float> gb_dec(g.b_dec().begin(), g.b_dec().end());
    check_close("grad W_enc", gW_enc, flat(c.at("grad_W_enc")));
    check_close("grad b_enc", gb_enc, flat(c.at("grad_b_enc")));
    check_close("grad b_dec", gb_dec, flat(c.at("grad_b_dec")));
    check_close("grad W_dec", gW_dec, flat(c.at(rescale ? "grad_W_dec_projected" : "grad_W_dec")));
  }
}
