// AdamW: hand-computed steps, the vectorised update against the scalar formula bit for bit (float
// and double, every tail length), against the formula in double, and bad input.
#include "xplor/model/optim.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

using namespace xplor::model;

namespace {

/// The documented update, one element at a time in the same operation order as the optimizer.
template <class Real>
void scalar_steps(std::vector<Real>& p, const std::vector<std::vector<Real>>& grads, const adamw_options& o,
                  Real lr) {
  std::vector<Real> m(p.size(), Real(0)), v(p.size(), Real(0));
  const Real b1 = o.beta1, b2 = o.beta2, eps = o.eps, decay = Real(1) - lr * Real(o.weight_decay);
  for (std::size_t t = 1; t <= grads.size(); ++t) {
    const Real c1 = Real(1) / (Real(1) - static_cast<Real>(std::pow(double(b1), double(t))));
    const Real c2 = Real(1) / (Real(1) - static_cast<Real>(std::pow(double(b2), double(t))));
    const std::vector<Real>& g = grads[t - 1];
    for (std::size_t i = 0; i < p.size(); ++i) {
      m[i] = b1 * m[i] + (Real(1) - b1) * g[i];
      v[i] = b2 * v[i] + (Real(1) - b2) * g[i] * g[i];
      p[i] = p[i] * decay - lr * (m[i] * c1) / (std::sqrt(v[i] * c2) + eps);
    }
  }
}

template <class Real>
void check_bits_against_scalar(std::int64_t n) {
  std::mt19937 rng(static_cast<std::uint32_t>(n));
  std::normal_distribution<Real> normal;
  std::vector<Real> p(static_cast<std::size_t>(n));
  for (auto& x : p) x = normal(rng);
  std::vector<std::vector<Real>> grads(4, std::vector<Real>(p.size()));
  for (auto& g : grads)
    for (auto& x : g) x = normal(rng) * Real(0.1);
  const adamw_options o{.lr = 1e-3f, .weight_decay = 0.1f};
  std::vector<Real> expected = p;
  scalar_steps(expected, grads, o, Real(1e-3));
  basic_adamw<Real> opt(n, o);
  for (const auto& g : grads) opt.step(p, g, Real(1e-3));
  REQUIRE(std::memcmp(p.data(), expected.data(), p.size() * sizeof(Real)) == 0);
}

}  // namespace

TEST_CASE("adamw: two hand-computed steps", "[model][optim]") {
  // p = 1, lr 0.1, weight decay 0.1, betas 0.9 / 0.999, g = 0.5 then -0.5.
  // Step 1: m = 0.05, v = 2.5e-4, m^ = 0.5, v^ = 0.25: p = 1 * 0.99 - 0.1 * 0.5 / 0.5 = 0.89.
  // Step 2: m = -0.005, v = 4.9975e-4, m^ = -0.005 / 0.19, v^ = 4.9975e-4 / 0.001999 = 0.25:
  //         p = 0.89 * 0.99 + 0.1 * (0.005 / 0.19) / 0.5 = 0.8811 + 0.00526316 = 0.88636316.
  adamw opt(1, {.lr = 0.1f, .weight_decay = 0.1f});
  std::vector<float> p{1.0f};
  opt.step(p, std::vector<float>{0.5f}, 0.1f);
  CHECK(p[0] == Approx(0.89f).epsilon(1e-6));
  CHECK(opt.first_moment()[0] == Approx(0.05f).epsilon(1e-6));
  CHECK(opt.second_moment()[0] == Approx(2.5e-4f).epsilon(1e-4));  // 1 - 0.999f = 1.0000467e-3
  opt.step(p, std::vector<float>{-0.5f}, 0.1f);
  CHECK(p[0] == Approx(0.88636316f).epsilon(1e-6));
  CHECK(opt.steps() == 2);
}

TEST_CASE("adamw: the vectorised update is the scalar formula bit for bit", "[model][optim]") {
  // Every remainder after the 8-lane blocks, and lengths across several 4096-element tasks.
  for (std::int64_t n : {1, 7, 8, 9, 15, 16, 17, 1000, 4095, 4096, 4097, 10007}) {
    CAPTURE(n);
    check_bits_against_scalar<float>(n);
    check_bits_against_scalar<double>(n);
  }
}

TEST_CASE("adamw: random steps follow the formula computed in double", "[model][optim]") {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  const std::int64_t n = 5003;
  std::vector<float> p(n);
  for (auto& x : p) x = normal(rng);
  std::vector<double> pd(p.begin(), p.end()), m(n, 0.0), v(n, 0.0);
  adamw opt(n, {.lr = 1e-2f, .weight_decay = 0.05f});
  for (int t = 1; t <= 5; ++t) {
    std::vector<float> g(n);
    for (auto& x : g) x = normal(rng);
    opt.step(p, g, 1e-2f);
    const double b1 = 0.9f, b2 = 0.999f, lr = 1e-2f, wd = 0.05f;
    for (std::int64_t i = 0; i < n; ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * double(g[i]) * g[i];
      const double mh = m[i] / (1 - std::pow(b1, t)), vh = v[i] / (1 - std::pow(b2, t));
      pd[i] = pd[i] * (1 - lr * wd) - lr * mh / (std::sqrt(vh) + double(1e-8f));
    }
  }
  double worst = 0;
  for (std::int64_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(p[i] - pd[i]));
  CHECK(worst < 1e-6);
}

TEST_CASE("adamw: bad input", "[model][optim]") {
  adamw opt(4, {});
  std::vector<float> p(4, 0.0f), g(4, 0.0f), short_g(3, 0.0f);
  CHECK_THROWS_WITH(opt.step(p, short_g, 1e-3f), Catch::Contains("params/grads have 4/3 elements"));
  CHECK_THROWS_WITH(opt.step(p, g, -1.0f), Catch::Contains("lr = -1 must be finite"));
  CHECK_THROWS_WITH(opt.step(p, g, NAN), Catch::Contains("lr = nan must be finite"));
  CHECK_THROWS_WITH(adamw(-1, {}), Catch::Contains("size = -1 is negative"));
  CHECK(opt.steps() == 0);  // a refused step changes nothing
}
