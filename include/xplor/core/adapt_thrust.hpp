// Adapters from thrust::device_vector to xplor's device views (device_span, device_view2d). The
// views hold raw device pointers and say so in their type: xplor's device-backend algorithms take
// them, the CPU ones do not. Never dereference them in host code (under the OMP/CPP device systems
// the memory happens to be host memory).
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

/// A device vector as a device_span of its memory (const when the vector is const).
template <class V>
requires detail::is_device_vector<std::remove_const_t<V>>::value auto as_span(V& v) {
  using T = std::remove_pointer_t<decltype(thrust::raw_pointer_cast(v.data()))>;
  return device_span<T>(thrust::raw_pointer_cast(v.data()), v.size());
}

/// A row-major [rows, cols] view of a device vector whose size must be rows * cols.
template <class V>
requires detail::is_device_vector<std::remove_const_t<V>>::value auto as_view2d(V& v, std::int64_t rows,
                                                                                std::int64_t cols) {
  const auto host_typed = detail::checked_view(thrust::raw_pointer_cast(v.data()), v.size(), {rows, cols},
                                               "xplor::as_view2d(device_vector)");
  using T = std::remove_pointer_t<decltype(host_typed.data())>;
  return device_view2d<T>(host_typed.data(), {rows, cols}, {host_typed.stride(0), host_typed.stride(1)});
}

}  // namespace xplor
