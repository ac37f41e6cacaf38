#include "xplor/core/adapt_thrust.hpp"

#include <thrust/device_vector.h>
#include <catch2/catch.hpp>

TEST_CASE("device_vector adapters point at the vector's device memory", "[adapt][thrust]") {
  thrust::device_vector<float> v(12, 1.0f);
  const auto s = xplor::as_span(v);
  CHECK(s.size() == 12);
  CHECK(s.data() == thrust::raw_pointer_cast(v.data()));
  const auto m = xplor::as_view2d(v, 3, 4);
  CHECK(m.stride(0) == 4);
  CHECK(m.data() == s.data());
  const thrust::device_vector<float>& cv = v;
  const auto cs = xplor::as_span(cv);
  STATIC_REQUIRE(std::is_same_v<decltype(cs), const xplor::device_span<const float>>);
  STATIC_REQUIRE(std::is_same_v<decltype(m), const xplor::device_view2d<float>>);
  CHECK(cs.data() == s.data());
  CHECK_THROWS_WITH(xplor::as_view2d(v, 5, 4), Catch::Contains("20 elements over 12"));
}
