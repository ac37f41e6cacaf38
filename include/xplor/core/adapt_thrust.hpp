// Adapters from thrust::device_vector to xplor views. The views hold raw device pointers: pass
// them to xplor's device-backend algorithms or into device functors, never dereference them in
// host code (under the OMP/CPP device systems the memory happens to be host memory).
#pragma once

#include <thrust/device_vector.h>
#include <cstdint>
#include <span>
#include <type_traits>

#include "xplor/core/view.hpp"

namespace xplor {
namespace detail {
template <class T>
struct is_device_vector : std::false_type {};
template <class T, class Alloc>
struct is_device_vector<thrust::device_vector<T, Alloc>> : std::true_type {};
}  // namespace detail

/// A device vector as a span of its device memory (const when the vector is const).
template <class V>
requires detail::is_device_vector<std::remove_const_t<V>>::value auto as_span(V& v) {
  return std::span(thrust::raw_pointer_cast(v.data()), v.size());
}

/// A row-major [rows, cols] view of a device vector whose size must be rows * cols.
template <class V>
requires detail::is_device_vector<std::remove_const_t<V>>::value auto as_view2d(V& v, std::int64_t rows,
                                                                                std::int64_t cols) {
  return detail::checked_view(thrust::raw_pointer_cast(v.data()), v.size(), {rows, cols},
                              "xplor::as_view2d(device_vector)");
}

}  // namespace xplor
