// The reference transformer's matrix products: both forward kernels (streamed and packed) against
// a double reference and against Eigen's product, the packed kernel against the chain of fused
// multiply-adds it promises, and the independence of each element's bits from the block it is
// computed in (what makes decoding batch-independent).
#include "xplor/model/dense.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

using namespace xplor::model;

namespace {

std::vector<float> random_vector(std::int64_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
  return v;
}

}  // namespace

constexpr dense::forward_kernel kernels[] = {dense::forward_kernel::streamed, dense::forward_kernel::packed};

TEST_CASE("dense: a hand-computed product, plain and accumulated", "[model][dense]") {
  for (auto kernel : kernels) {
    const std::vector<float> x{1, 2, 3, -1, 0, 2}, w{1, 0, -1, 0.5f, 0.5f, 0.5f};
    for (std::int64_t n : {1, 2}) {
      std::vector<float> y(2 * n, 0.0f);
      dense::linear_forward(x.data(), w.data(), y.data(), n, 3, 2, false, kernel);
      CHECK(std::vector<float>(y.begin(), y.begin() + 2) == std::vector<float>{-2.0f, 3.0f});
      if (n == 2) CHECK(std::vector<float>(y.begin() + 2, y.end()) == std::vector<float>{-3.0f, 0.5f});
      dense::linear_forward(x.data(), w.data(), y.data(), n, 3, 2, /*accumulate=*/true, kernel);
      CHECK(std::vector<float>(y.begin(), y.begin() + 2) == std::vector<float>{-4.0f, 6.0f});
    }
  }
}

TEST_CASE("dense: the packed kernel sums every element as one chain over k, alone or batched",
          "[model][dense]") {
  // The chain s = fma(x[k], w[k], s) for k = 0, 1, ... (unfused where the build has no FMA),
  // then y + s when accumulating: depths and widths around the 8 x 8 transposes, the 16- or
  // 32-column panels, the 6- or 12-row slivers, one row (the transposing vector path) and more.
  const auto chain = [](const float* x, const float* w, std::int64_t in) {
    float s = 0.0f;
    for (std::int64_t k = 0; k < in; ++k)
#if defined(__FMA__) && !defined(__CUDACC__)
      s = std::fma(x[k], w[k], s);
#else
      s = x[k] * w[k] + s;
#endif
    return s;
  };
  std::uint32_t seed = 100;
  for (std::int64_t in : {1, 7, 8, 9, 64, 100, 1031})
    for (std::int64_t out : {1, 8, 15, 16, 17, 33, 70, 129})
      for (std::int64_t n : {1, 5, 13})
        for (bool accumulate : {false, true}) {
          const auto x = random_vector(n * in, seed++), w = random_vector(out * in, seed++);
          const auto y0 = random_vector(n * out, seed++);
          auto all = y0;
          dense::linear_forward(x.data(), w.data(), all.data(), n, in, out, accumulate,
                                dense::forward_kernel::packed);
          INFO("in " << in << " out " << out << " n " << n << " accumulate " << accumulate);
          for (std::int64_t i = 0; i < n; ++i) {
            std::vector<float> one(y0.begin() + i * out, y0.begin() + (i + 1) * out);
            dense::linear_forward(x.data() + i * in, w.data(), one.data(), 1, in, out, accumulate,
                                  dense::forward_kernel::packed);
            REQUIRE(std::equal(one.begin(), one.end(), all.begin() + i * out));
            for (std::int64_t j = 0; j < out; ++j) {
              const float s = chain(x.data() + i * in, w.data() + j * in, in);
              REQUIRE(all[i * out + j] == (accumulate ? y0[i * out + j] + s : s));
            }
          }
        }
}

TEST_CASE("dense: both forward kernels against a double-precision product on random shapes",
          "[model][dense]") {
  std::uint32_t seed = 1;
  for (auto kernel : kernels)
    for (std::int64_t n : {1, 3, 4, 5, 17, 40})
      for (std::int64_t in : {1, 7, 16, 40, 100, 257})
        for (std::int64_t out : {1, 5, 9, 70}) {
          const auto x = random_vector(n * in, seed++), w = random_vector(out * in, seed++);
          auto y = random_vector(n * out, seed++);
          const auto y0 = y;
          dense::linear_forward(x.data(), w.data(), y.data(), n, in, out, /*accumulate=*/true, kernel);
          for (std::int64_t i = 0; i < n; ++i)
            for (std::int64_t j = 0; j < out; ++j) {
              double ref = y0[i * out + j];
              for (std::int64_t k = 0; k < in; ++k) ref += double(x[i * in + k]) * w[j * in + k];
              INFO("n " << n << " in " << in << " out " << out << " at " << i << ", " << j);
              REQUIRE(std::abs(y[i * out + j] - ref) <= 1e-5 * (1.0 + std::sqrt(double(in))));
            }
        }
}

TEST_CASE("dense: an element's bits do not depend on the block it is computed in", "[model][dense]") {
  const std::int64_t n = 11, m = 13, in = 75;
  const auto x = random_vector(n * in, 3), w = random_vector(m * in, 4);
  std::vector<float> all(n * m), one(1);
  dense::dot_products(x.data(), in, w.data(), in, in, all.data(), m, n, m);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < m; ++j) {
      dense::dot_products(x.data() + i * in, in, w.data() + j * in, in, in, one.data(), 1, 1, 1);
      REQUIRE(one[0] == all[i * m + j]);
    }
  // Strided rows (a head's slice of a wider row) give the same bits as contiguous copies.
  std::vector<float> wide(m * 2 * in, 7.0f), strided(n * m);
  for (std::int64_t j = 0; j < m; ++j) std::copy_n(w.data() + j * in, in, wide.data() + j * 2 * in + in);
  dense::dot_products(x.data(), in, wide.data() + in, 2 * in, in, strided.data(), m, n, m);
  CHECK(strided == all);
}

TEST_CASE("dense: a row's bits do not depend on the rows beside it, padded copies and both product orders",
          "[model][dense]") {
  // Depth 1024 takes the padded copy of x (n >= 4), depth 96 reads x in place; one row alone
  // takes the vector-times-matrix path.
  for (std::int64_t in : {96, 1024}) {
    const std::int64_t n = 9, out = 37;
    const auto x = random_vector(n * in, 11), w = random_vector(out * in, 12);
    std::vector<float> all(n * out), one(out);
    dense::linear_forward(x.data(), w.data(), all.data(), n, in, out);
    for (std::int64_t i = 0; i < n; ++i) {
      dense::linear_forward(x.data() + i * in, w.data(), one.data(), 1, in, out);
      REQUIRE(std::equal(one.begin(), one.end(), all.begin() + i * out));
    }
  }
  // C += A B by panels and by row blocks, A read across rows (dW) and along them (dx), depths on
  // both sides of the automatic choice: the same bits, and the double-precision product.
  for (std::int64_t K : {5, 200, 1100})
    for (bool transposed : {false, true}) {
      const std::int64_t M = 29, N = 41;
      const auto a = random_vector(M * K, 13), b = random_vector(K * N, 14), c0 = random_vector(M * N, 15);
      const std::int64_t ai = transposed ? 1 : K, ak = transposed ? M : 1;
      auto by_panel = c0, by_rows = c0;
      dense::outer_products(a.data(), ai, ak, b.data(), N, by_panel.data(), N, M, N, K,
                            dense::product_order::by_panel);
      dense::outer_products(a.data(), ai, ak, b.data(), N, by_rows.data(), N, M, N, K,
                            dense::product_order::by_row_block);
      INFO("K " << K << " transposed " << transposed);
      REQUIRE(by_panel == by_rows);
      for (std::int64_t i = 0; i < M; ++i)
        for (std::int64_t j = 0; j < N; ++j) {
          double ref = c0[i * N + j];
          for (std::int64_t k = 0; k < K; ++k) ref += double(a[i * ai + k * ak]) * b[k * N + j];
          REQUIRE(std::abs(by_rows[i * N + j] - ref) <= 1e-5 * (1.0 + std::sqrt(double(K))));
        }
    }
}

TEST_CASE("dense: linear_forward agrees with Eigen's packed product at any size", "[model][dense]") {
  for (auto kernel : kernels)
    for (std::int64_t n : {1, 33, 130, 300}) {
      const std::int64_t in = 96, out = 200;
      const auto x = random_vector(n * in, 5), w = random_vector(out * in, 6);
      std::vector<float> streamed(n * out);
      dense::linear_forward(x.data(), w.data(), streamed.data(), n, in, out, false, kernel);
      const dense::row_matrix packed =
          dense::mat(x.data(), n, in) * dense::mat(w.data(), out, in).transpose();
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j < out; ++j)
          REQUIRE(streamed[i * out + j] == Approx(packed(i, j)).margin(1e-5));
    }
}
