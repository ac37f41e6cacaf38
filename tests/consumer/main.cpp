// Uses the core (and the Eigen adapter when xplor::eigen exists) from outside the xplor tree.
#include <cstdio>
#include <vector>
#include <xplor/xplor.hpp>
#if CONSUMER_HAS_EIGEN
#include <Eigen/Core>
#include <xplor/core/adapt_eigen.hpp>
#endif

int main() {
  const auto out = xplor::philox4x32_10({0, 0, 0, 0}, {0, 0});
  if (out[0] != 0x6627e8d5u) return 1;
  std::vector<float> rewards{1, 0, 1, 1};
  const std::vector<std::int64_t> offsets{0, 1, 4};
  std::vector<float> sums(2);
  xplor::segmented_reduce(
      xplor::cpu, xplor::ragged_groups(offsets, 4), 0.0f, std::plus<>{},
      [&](std::int64_t i) { return rewards[i]; }, std::span<float>(sums));
  if (sums[0] != 1.0f || sums[1] != 2.0f) return 2;
#if CONSUMER_HAS_EIGEN
  Eigen::MatrixXf m = Eigen::MatrixXf::Zero(2, 3);
  m(1, 2) = 5.0f;
  if (xplor::as_view2d(m)(1, 2) != 5.0f) return 3;
#endif
  std::printf("consumer: ok (xplor %s)\n", XPLOR_VERSION_STRING);
  return 0;
}
