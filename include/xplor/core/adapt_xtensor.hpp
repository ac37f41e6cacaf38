// Adapters from xtensor 0.24 containers (xt::xtensor, xt::xarray) to xplor views, using the
// container's own element strides, so any layout (row-major, column-major) maps correctly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>

#include "xplor/core/view.hpp"

namespace xplor {
namespace detail {

template <std::size_t Rank, class E>
auto xtensor_view(E& e, const char* function) {
  using T = std::remove_reference_t<decltype(*e.data())>;
  require(e.dimension() == Rank, function, "the array has ", e.dimension(), " dimensions, expected ", Rank);
  std::int64_t extents[Rank];
  std::int64_t strides[Rank];
  for (std::size_t d = 0; d < Rank; ++d) {
    extents[d] = static_cast<std::int64_t>(e.shape()[d]);
    // xtensor reports stride 0 for extent-1 dimensions (broadcasting); either value addresses
    // the one element.
    strides[d] = static_cast<std::int64_t>(e.strides()[d]);
  }
  return strided_view<T, Rank>(e.data() + e.data_offset(), extents, strides);
}

template <class E>
concept xtensor_container = requires(E& e) {
  e.data();
  e.strides();
  e.data_offset();
  e.dimension();
};

}  // namespace detail

/// A [rows, cols] view of a 2-D xtensor container (xt::xtensor<T, 2> or a 2-D xt::xarray).
template <detail::xtensor_container E>
auto as_view2d(E& e) {
  return detail::xtensor_view<2>(e, "xplor::as_view2d(xtensor)");
}

/// A [d0, d1, d2] view of a 3-D xtensor container.
template <detail::xtensor_container E>
auto as_view3d(E& e) {
  return detail::xtensor_view<3>(e, "xplor::as_view3d(xtensor)");
}

/// A 1-D contiguous xtensor container as a std::span.
template <detail::xtensor_container E>
auto as_span(E& e) {
  using T = std::remove_reference_t<decltype(*e.data())>;
  detail::require(e.dimension() == 1, "xplor::as_span(xtensor)", "the array has ", e.dimension(),
                  " dimensions, expected 1");
  detail::require(e.size() <= 1 || e.strides()[0] == 1, "xplor::as_span(xtensor)", "the array's stride is ",
                  e.strides()[0], "; a span needs stride 1");
  return std::span<T>(e.data() + e.data_offset(), e.size());
}

}  // namespace xplor
