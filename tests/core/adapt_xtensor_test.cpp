#include "xplor/core/adapt_xtensor.hpp"

#include <catch2/catch.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>

TEST_CASE("xtensor row-major and column-major containers map element by element", "[adapt][xtensor]") {
  xt::xtensor<float, 2> a = {{1, 2, 3}, {4, 5, 6}};
  xt::xtensor<float, 2, xt::layout_type::column_major> b = a;
  const auto va = xplor::as_view2d(a);
  const auto vb = xplor::as_view2d(b);
  CHECK(va.stride(1) == 1);
  CHECK(vb.stride(0) == 1);
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t j = 0; j < 3; ++j) {
      REQUIRE(va(i, j) == a(i, j));
      REQUIRE(vb(i, j) == a(i, j));
    }
  vb(1, 2) = 60.0f;
  CHECK(b(1, 2) == 60.0f);
}

TEST_CASE("xtensor 3-D views and 1-D spans", "[adapt][xtensor]") {
  xt::xtensor<int, 3> t = xt::zeros<int>({2, 3, 4});
  t(1, 2, 3) = 9;
  const auto v = xplor::as_view3d(t);
  CHECK(v(1, 2, 3) == 9);
  CHECK(v[1](2, 3) == 9);
  xt::xtensor<double, 1> x = {1.0, 2.0, 3.0};
  CHECK(xplor::as_span(x)[2] == 3.0);
}

TEST_CASE("xtensor adapters reject a wrong rank", "[adapt][xtensor]") {
  xt::xarray<float> a = xt::zeros<float>({2, 3, 4});
  CHECK_THROWS_WITH(xplor::as_view2d(a), Catch::Contains("the array has 3 dimensions, expected 2"));
  CHECK_THROWS_AS(xplor::as_span(a), xplor::error);
  CHECK(xplor::as_view3d(a).extent(2) == 4);
}
