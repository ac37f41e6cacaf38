// Adapters from Eigen 3.4 dense objects (matrices, arrays, maps, blocks, Refs) to xplor views.
// Strides come from Eigen's rowStride()/colStride(), so row-major, column-major and sub-blocks
// all map element (i, j) to the same coefficient Eigen would read. Blocks and maps may be passed
// as temporaries: they are views themselves.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <span>
#include <type_traits>

#include "xplor/core/view.hpp"

namespace xplor {
namespace detail {
template <class M>
concept eigen_direct_access =
    std::is_base_of_v<Eigen::DenseBase<std::remove_cvref_t<M>>, std::remove_cvref_t<M>> && requires(M& m) {
  m.data();
  m.rowStride();
  m.colStride();
  m.innerStride();
};
}  // namespace detail

/// A [rows, cols] view of an Eigen object with direct access to its coefficients.
template <class M>
requires detail::eigen_direct_access<M>
auto as_view2d(M&& m) {
  using T = std::remove_reference_t<decltype(*m.data())>;
  return view2d<T>(m.data(), {static_cast<std::int64_t>(m.rows()), static_cast<std::int64_t>(m.cols())},
                   {static_cast<std::int64_t>(m.rowStride()), static_cast<std::int64_t>(m.colStride())});
}

/// An Eigen vector (one row or one column) with unit inner stride as a std::span; throws
/// xplor::error for a 2-D matrix or a strided vector, which a span cannot describe.
template <class M>
requires detail::eigen_direct_access<M>
auto as_span(M&& m) {
  detail::require(m.rows() == 1 || m.cols() == 1, "xplor::as_span(Eigen)", "a ", m.rows(), "x", m.cols(),
                  " matrix is not a vector");
  detail::require(m.innerStride() == 1 || m.size() <= 1, "xplor::as_span(Eigen)",
                  "the vector's inner stride is ", m.innerStride(), "; a span needs stride 1");
  return std::span(m.data(), static_cast<std::size_t>(m.size()));
}

}  // namespace xplor
