#include "xplor/core/adapt_eigen.hpp"

#include <Eigen/Core>
#include <catch2/catch.hpp>

namespace {
template <class M, class V>
void check_same(const M& m, const V& v) {
  REQUIRE(v.rows() == m.rows());
  REQUIRE(v.cols() == m.cols());
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j) REQUIRE(v(i, j) == m(i, j));
}
}  // namespace

TEST_CASE("Eigen column-major and row-major matrices map element by element", "[adapt][eigen]") {
  Eigen::MatrixXf col = Eigen::MatrixXf::Random(4, 7);
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> row = col;
  const auto vc = xplor::as_view2d(col);
  const auto vr = xplor::as_view2d(row);
  CHECK(vc.stride(0) == 1);
  CHECK(vc.stride(1) == 4);
  CHECK(vr.stride(0) == 7);
  CHECK(vr.stride(1) == 1);
  check_same(col, vc);
  check_same(col, vr);
  vc(2, 5) = 42.0f;
  CHECK(col(2, 5) == 42.0f);
}

TEST_CASE("Eigen blocks, maps and const matrices", "[adapt][eigen]") {
  Eigen::MatrixXd m = Eigen::MatrixXd::Random(6, 5);
  check_same(m.block(1, 2, 3, 2), xplor::as_view2d(m.block(1, 2, 3, 2)));
  check_same(m.transpose(), xplor::view2d<double>(xplor::as_view2d(m).data(), {5, 6}, {6, 1}));
  const Eigen::MatrixXd& cm = m;
  const xplor::view2d<const double> v = xplor::as_view2d(cm);
  check_same(m, v);
  double raw[6] = {1, 2, 3, 4, 5, 6};
  Eigen::Map<Eigen::Matrix<double, 2, 3, Eigen::RowMajor>> map(raw);
  CHECK(xplor::as_view2d(map)(1, 0) == 4.0);
}

TEST_CASE("Eigen vectors become spans only when contiguous", "[adapt][eigen]") {
  Eigen::VectorXf v = Eigen::VectorXf::LinSpaced(5, 0, 4);
  auto s = xplor::as_span(v);
  REQUIRE(s.size() == 5);
  CHECK(s[3] == 3.0f);
  Eigen::MatrixXf m = Eigen::MatrixXf::Random(3, 4);
  CHECK(xplor::as_span(m.col(2)).size() == 3);
  CHECK_THROWS_WITH(xplor::as_span(m.row(1)), Catch::Contains("inner stride is 3"));
  CHECK_THROWS_WITH(xplor::as_span(m), Catch::Contains("3x4 matrix is not a vector"));
}
