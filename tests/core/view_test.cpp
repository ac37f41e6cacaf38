#include "xplor/core/view.hpp"

#include <catch2/catch.hpp>
#include <numeric>
#include <random>
#include <vector>

TEST_CASE("make_view is row-major with element strides", "[view]") {
  std::vector<int> data(24);
  std::iota(data.begin(), data.end(), 0);
  const auto v = xplor::make_view(data.data(), {2, 3, 4});
  CHECK(v.extent(0) == 2);
  CHECK(v.stride(0) == 12);
  CHECK(v.stride(1) == 4);
  CHECK(v.stride(2) == 1);
  CHECK(v.size() == 24);
  CHECK(v(1, 2, 3) == 23);
  CHECK(v(1, 0, 2) == 14);
  const auto m = v[1];  // [3, 4] slice
  CHECK(m.rows() == 3);
  CHECK(m.cols() == 4);
  CHECK(m(2, 1) == 21);
  CHECK(m[2](3) == 23);
}

TEST_CASE("as_view2d/as_view3d over std::vector check the size", "[view]") {
  std::vector<float> data(12, 0.0f);
  auto v = xplor::as_view2d(data, 3, 4);
  v(2, 1) = 7.0f;
  CHECK(data[9] == 7.0f);
  const std::vector<float>& cdata = data;
  const xplor::view2d<const float> cv = xplor::as_view2d(cdata, 4, 3);
  CHECK(cv(3, 0) == 7.0f);
  CHECK(xplor::as_view3d(data, 2, 3, 2)(1, 1, 1) == 7.0f);
  CHECK_THROWS_AS(xplor::as_view2d(data, 5, 3), xplor::error);
  CHECK_THROWS_WITH(xplor::as_view2d(data, 5, 3), Catch::Contains("15 elements over 12"));
  CHECK_THROWS_WITH(xplor::as_view2d(data, -3, -4), Catch::Contains("extents[0] = -3"));
  CHECK_THROWS_AS(xplor::as_view3d(data, 2, 2, 2), xplor::error);
}

TEST_CASE("make_view rejects negative extents and null data", "[view]") {
  CHECK_THROWS_WITH(xplor::make_view(static_cast<float*>(nullptr), {2, 2}), Catch::Contains("data is null"));
  CHECK_NOTHROW(xplor::make_view(static_cast<float*>(nullptr), {0, 5}));
  float x = 0;
  CHECK_THROWS_WITH(xplor::make_view(&x, {1, -1}), Catch::Contains("extents[1] = -1 is negative"));
}

TEST_CASE("strided views describe transposes and column slices", "[view]") {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    const std::int64_t rows = 1 + rng() % 9, cols = 1 + rng() % 9;
    std::vector<int> data(rows * cols);
    for (auto& x : data) x = static_cast<int>(rng() % 1000);
    const auto v = xplor::as_view2d(data, rows, cols);
    // The transpose is the same memory with swapped extents and strides.
    const xplor::view2d<int> t(data.data(), {cols, rows}, {1, cols});
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < cols; ++j) REQUIRE(t(j, i) == v(i, j));
    CHECK(v.inner_contiguous());
    CHECK(t.inner_contiguous() == (rows == 1 || cols == 1));
  }
}

TEST_CASE("row() gives a span only for unit column stride", "[view]") {
  std::vector<int> data{1, 2, 3, 4, 5, 6};
  const auto v = xplor::as_view2d(data, 2, 3);
  const auto r = v.row(1);
  REQUIRE(r.size() == 3);
  CHECK(r[0] == 4);
  CHECK_THROWS_WITH(v.row(2), Catch::Contains("row index 2"));
  const xplor::view2d<int> t(data.data(), {3, 2}, {1, 3});
  CHECK_THROWS_WITH(t.row(0), Catch::Contains("column stride is 3"));
}

TEST_CASE("as_span views a vector without copying", "[view]") {
  std::vector<double> v{1, 2, 3};
  auto s = xplor::as_span(v);
  s[1] = 9;
  CHECK(v[1] == 9);
  const auto& cv = v;
  STATIC_REQUIRE(std::is_same_v<decltype(xplor::as_span(cv)), std::span<const double>>);
}
