#include "xplor/model/layers.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

namespace L = xplor::model::layers;

TEST_CASE("norms: hand-computed rows", "[model][layers]") {
  const float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 1}, b[4] = {0, 0, 0, 0};
  float y[4], mean, rstd;
  L::norm_forward(x, w, static_cast<const float*>(nullptr), y, 4, 0.0f, &mean, &rstd);  // RMSNorm
  CHECK(mean == 0.0f);
  CHECK(rstd == Approx(1.0 / std::sqrt(7.5)));  // mean(x^2) = 30 / 4
  CHECK(y[3] == Approx(4.0 / std::sqrt(7.5)));
  L::norm_forward(x, w, b, y, 4, 0.0f, &mean, &rstd);  // LayerNorm
  CHECK(mean == 2.5f);
  CHECK(rstd == Approx(1.0 / std::sqrt(1.25)));  // biased variance 5 / 4
  CHECK(y[0] == Approx(-1.5 / std::sqrt(1.25)));
}

TEST_CASE("norm backward equals double-precision finite differences", "[model][layers][property]") {
  std::mt19937 rng(1);
  std::normal_distribution<double> nd(0.0, 1.0);
  for (bool layernorm : {false, true}) {
    for (int trial = 0; trial < 10; ++trial) {
      const int C = 3 + trial;
      std::vector<double> x(C), w(C), b(C), dy(C), y(C);
      for (int i = 0; i < C; ++i) x[i] = nd(rng), w[i] = nd(rng), b[i] = nd(rng), dy[i] = nd(rng);
      const double eps = 1e-5;
      const double* bp = layernorm ? b.data() : nullptr;
      auto loss = [&](const std::vector<double>& xx, const std::vector<double>& ww,
                      const std::vector<double>& bb) {
        double m, r, s = 0;
        L::norm_forward(xx.data(), ww.data(), layernorm ? bb.data() : nullptr, y.data(), C, eps, &m, &r);
        for (int i = 0; i < C; ++i) s += dy[i] * y[i];
        return s;
      };
      double mean, rstd;
      L::norm_forward(x.data(), w.data(), bp, y.data(), C, eps, &mean, &rstd);
      std::vector<double> dx(C, 0.0), dw(C, 0.0), db(C, 0.0);
      L::norm_backward(x.data(), w.data(), layernorm, mean, rstd, dy.data(), dx.data(), dw.data(), db.data(),
                       C);
      const double h = 1e-6;
      for (int i = 0; i < C; ++i) {
        auto xp = x, xm = x, wp = w, wm = w, bpv = b, bmv = b;
        xp[i] += h, xm[i] -= h, wp[i] += h, wm[i] -= h, bpv[i] += h, bmv[i] -= h;
        REQUIRE(dx[i] == Approx((loss(xp, w, b) - loss(xm, w, b)) / (2 * h)).epsilon(1e-6).margin(1e-8));
        REQUIRE(dw[i] == Approx((loss(x, wp, b) - loss(x, wm, b)) / (2 * h)).epsilon(1e-6).margin(1e-8));
        if (layernorm) REQUIRE(db[i] == Approx((loss(x, w, bpv) - loss(x, w, bmv)) / (2 * h)).epsilon(1e-6));
      }
    }
  }
}

TEST_CASE("activations: values and derivatives", "[model][layers][property]") {
  CHECK(L::gelu(1.0) == Approx(0.8411919906082768));  // 0.5 (1 + tanh(sqrt(2/pi) 1.044715))
  CHECK(L::gelu(0.0) == 0.0);
  CHECK(L::silu(1.0) == Approx(0.7310585786300049));
  CHECK(L::sigmoid(0.0) == 0.5);
  std::mt19937 rng(2);
  std::uniform_real_distribution<double> ud(-6.0, 6.0);
  for (int i = 0; i < 200; ++i) {
    const double x = ud(rng), h = 1e-6;
    REQUIRE(L::gelu_grad(x) ==
            Approx((L::gelu(x + h) - L::gelu(x - h)) / (2 * h)).epsilon(1e-7).margin(1e-9));
    REQUIRE(L::silu_grad(x) ==
            Approx((L::silu(x + h) - L::silu(x - h)) / (2 * h)).epsilon(1e-7).margin(1e-9));
  }
}

TEST_CASE("rope rotates pairs (i, i + D/2) and its inverse undoes it", "[model][layers][property]") {
  double v[2] = {1.0, 0.0};
  const double c[1] = {std::cos(1.0)}, s[1] = {std::sin(1.0)};
  L::rope_rotate(v, c, s, 2, 1.0);
  CHECK(v[0] == Approx(std::cos(1.0)));
  CHECK(v[1] == Approx(std::sin(1.0)));
  std::mt19937 rng(3);
  std::normal_distribution<double> nd(0.0, 1.0);
  for (int trial = 0; trial < 20; ++trial) {
    const int D = 2 * (1 + trial % 8), half = D / 2;
    std::vector<double> x(D), cs(half), sn(half);
    for (auto& e : x) e = nd(rng);
    for (int i = 0; i < half; ++i) {
      const double a = nd(rng) * 10;
      cs[i] = std::cos(a), sn[i] = std::sin(a);
    }
    auto y = x;
    L::rope_rotate(y.data(), cs.data(), sn.data(), D, 1.0);
    double nx = 0, ny = 0;
    for (int i = 0; i < D; ++i) nx += x[i] * x[i], ny += y[i] * y[i];
    REQUIRE(ny == Approx(nx));  // rotations preserve the norm
    L::rope_rotate(y.data(), cs.data(), sn.data(), D, -1.0);
    for (int i = 0; i < D; ++i) REQUIRE(y[i] == Approx(x[i]).margin(1e-12));
  }
}
