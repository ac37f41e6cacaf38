// The batched tree drivers on the device backend (Thrust OMP in CI, the GPU when cuda/ compiles
// this file with nvcc): the same trees as single host trees under the same random calls, and a
// bad argument named from device memory.
#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include "../device_vectors.hpp"
#include "batch_harness.hpp"
#include "xplor/core/adapt_thrust.hpp"
#include "xplor/core/device.hpp"
#include "xplor/search/tree_batch.hpp"

namespace xs = xplor::search;

namespace {
struct device_data {
  template <class T>
  static thrust::device_vector<T> up(const std::vector<T>& v) {
    return xplor::test::dev(v);
  }
  template <class T>
  static std::vector<T> down(const thrust::device_vector<T>& v) {
    return xplor::test::host(v);
  }
  template <class T>
  static xplor::device_span<const T> cspan(const thrust::device_vector<T>& v) {
    return xplor::as_span(v);
  }
  template <class T>
  static xplor::device_span<T> span(thrust::device_vector<T>& v) {
    return xplor::as_span(v);
  }
};
}  // namespace

// On the GPU the frontier scores go through nvcc's tanh / sqrt and contracted multiply-adds, which
// may differ from the host's in the last bit; equal inputs still give equal scores, so ties break
// the same way, and the random scores here never come within a bit of each other.
TEST_CASE("device: batched trees equal single host trees under the same random calls", "[device][search]") {
  for (std::uint32_t seed : {4u, 5u}) {
    xplor::test::batch_case c;
    c.seed = seed;
    c.trees = 64;
    c.width = 2 + static_cast<int>(seed % 3);
    c.frontier.lambda4 = 0.5;
    c.frontier.uncertainty = seed % 2 == 0;
    INFO("seed " << seed);
    xplor::test::check_batch_against_single_trees<device_data>(xplor::device, c);
  }
}

TEST_CASE("device: batched trees name a bad argument", "[device][search]") {
  xs::tree_batch<xplor::device_t> batch(xplor::device, 3, 4);
  const auto parent = xplor::test::dev(std::vector<std::int32_t>{0, xs::no_node, 0});
  const auto count = xplor::test::dev(std::vector<std::int32_t>{1, 0, 2});
  const auto h = xplor::test::dev(std::vector<double>(6, 0.0));
  const auto term = xplor::test::dev(std::vector<std::uint8_t>{1, 0, 0, 0, 0, 0});
  xs::add_children(xplor::device, batch, xplor::as_span(parent), xplor::as_span(count), xplor::as_span(h),
                   xplor::as_span(term), 2);
  CHECK(batch.host_tree(0).size() == 2);
  CHECK(batch.host_tree(2).size() == 3);
  const auto terminal_parent = xplor::test::dev(std::vector<std::int32_t>{1, 0, 0});
  CHECK_THROWS_WITH(xs::add_children(xplor::device, batch, xplor::as_span(terminal_parent),
                                     xplor::as_span(count), xplor::as_span(h), xplor::as_span(term), 2),
                    Catch::Contains("parent[0] = 1 is terminal in tree 0"));
  const auto leaf = xplor::test::dev(std::vector<std::int32_t>{1, xs::no_node, 9});
  const auto v = xplor::test::dev(std::vector<double>{1.0, 0.0, 1.0});
  CHECK_THROWS_WITH(xs::backup(xplor::device, batch, xplor::as_span(leaf), xplor::as_span(v), 2),
                    Catch::Contains("leaf[2] = 9 is not a node of tree 2 (3 nodes)"));
  CHECK(batch.host_tree(0).visits(0) == 0);
}
