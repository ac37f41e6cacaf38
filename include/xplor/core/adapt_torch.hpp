// Adapters from libtorch tensors (at::Tensor, which torch::Tensor is) to xplor views, for C++
// trainers that hold their batches in torch: one call gives a span or a strided view over the
// tensor's own storage (no copy), after checking what a view cannot express. Included only by
// code that links libtorch (find_package(Torch); xplor's CMake option XPLOR_WITH_TORCH).
//
//   auto logp = xplor::as_span<const float>(logp_tensor);    // CPU float32, 1-D
//   auto mask = xplor::as_view2d<const std::uint8_t>(m);     // CPU uint8, any strides
//   auto dev  = xplor::as_device_span<float>(cuda_tensor);   // CUDA float32, for xplor::device
//
// Checks, each an xplor::error naming the function and what was found: the tensor is defined and
// strided (not sparse), its dtype is T's (float32, float64, int32, int64 or uint8), it lives on the
// CPU (host views) or a CUDA device (device views), it has the view's number of dimensions, a span
// is contiguous, and a mutable view neither aliases one element twice (expanded tensors) nor
// writes into a tensor that requires grad (that would bypass autograd, as torch's own in-place
// operations refuse to; view t.detach() or a gradient buffer instead).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <span>
#include <type_traits>

#include "xplor/core/view.hpp"

namespace xplor {
namespace detail {

template <class T>
constexpr c10::ScalarType torch_dtype_of() {
  using U = std::remove_const_t<T>;
  if constexpr (std::is_same_v<U, float>)
    return c10::ScalarType::Float;
  else if constexpr (std::is_same_v<U, double>)
    return c10::ScalarType::Double;
  else if constexpr (std::is_same_v<U, std::int32_t>)
    return c10::ScalarType::Int;
  else if constexpr (std::is_same_v<U, std::int64_t>)
    return c10::ScalarType::Long;
  else if constexpr (std::is_same_v<U, std::uint8_t>)
    return c10::ScalarType::Byte;
  else
    static_assert(sizeof(T) == 0, "xplor's torch views take float, double, int32_t, int64_t or uint8_t");
}

/// Checks shared by every torch view; `device` selects CUDA (true) or CPU (false) memory.
template <class T>
void check_torch_tensor(const at::Tensor& t, std::int64_t rank, bool device, const char* fn) {
  require(t.defined(), fn, "the tensor is undefined (a default-constructed torch::Tensor)");
  require(t.layout() == c10::Layout::Strided, fn, "the tensor's layout is ", t.layout(),
          "; a view needs a strided (dense) tensor, call .to_dense()");
  require(t.scalar_type() == torch_dtype_of<T>(), fn, "the tensor's dtype is ", t.scalar_type(),
          ", the view's is ", torch_dtype_of<T>());
  if (device)
    require(t.is_cuda(), fn, "the tensor is on ", t.device(), "; a device view needs a CUDA tensor");
  else
    require(t.is_cpu(), fn, "the tensor is on ", t.device(), "; a host view needs a CPU tensor, call .cpu()");
  require(t.dim() == rank, fn, "the tensor has ", t.dim(), " dimensions (sizes ", t.sizes(),
          "), the view needs ", rank);
  if constexpr (!std::is_const_v<T>)
    require(
        !t.requires_grad(), fn,
        "the tensor requires grad: writing through a view would bypass autograd; view t.detach(), or take "
        "a view of const elements");
}

template <class T, std::size_t Rank, class Space>
strided_view<T, Rank, Space> torch_view(const at::Tensor& t, bool device, const char* fn) {
  check_torch_tensor<T>(t, Rank, device, fn);
  std::int64_t extents[Rank];
  std::int64_t strides[Rank];
  for (std::size_t d = 0; d < Rank; ++d) {
    extents[d] = t.size(static_cast<std::int64_t>(d));
    strides[d] = t.stride(static_cast<std::int64_t>(d));
  }
  const strided_view<T, Rank, Space> v(static_cast<T*>(t.data_ptr()), extents, strides);
  if constexpr (!std::is_const_v<T> && Rank == 2) require_distinct_elements(v, fn, "the tensor");
  if constexpr (!std::is_const_v<T> && Rank != 2)
    require(t.is_non_overlapping_and_dense(), fn, "the tensor (strides ", t.strides(),
            ") maps two elements to one address; a mutable view needs a layout without overlap");
  return v;
}

template <class T>
T* torch_contiguous_data(const at::Tensor& t, bool device, const char* fn) {
  check_torch_tensor<T>(t, 1, device, fn);
  require(t.is_contiguous(), fn, "the tensor's stride is ", t.stride(0),
          "; a span needs stride 1, call .contiguous()");
  return static_cast<T*>(t.data_ptr());
}

}  // namespace detail

/// A 1-D contiguous CPU tensor as a std::span<T> (T = const float for read-only, float to write).
template <class T>
std::span<T> as_span(const at::Tensor& t) {
  return {detail::torch_contiguous_data<T>(t, false, "xplor::as_span(torch)"),
          static_cast<std::size_t>(t.numel())};
}

/// A 2-D CPU tensor as a [rows, cols] view with the tensor's strides (transposes and slices included).
template <class T>
view2d<T> as_view2d(const at::Tensor& t) {
  return detail::torch_view<T, 2, host_memory>(t, false, "xplor::as_view2d(torch)");
}

/// A 3-D CPU tensor as a view with the tensor's strides.
template <class T>
view3d<T> as_view3d(const at::Tensor& t) {
  return detail::torch_view<T, 3, host_memory>(t, false, "xplor::as_view3d(torch)");
}

/// A 1-D contiguous CUDA tensor as a device_span<T>, for the device overloads (xplor::device).
template <class T>
device_span<T> as_device_span(const at::Tensor& t) {
  return device_span<T>(detail::torch_contiguous_data<T>(t, true, "xplor::as_device_span(torch)"),
                        static_cast<std::size_t>(t.numel()));
}

/// A 2-D CUDA tensor as a device view with the tensor's strides.
template <class T>
device_view2d<T> as_device_view2d(const at::Tensor& t) {
  return detail::torch_view<T, 2, device_memory>(t, true, "xplor::as_device_view2d(torch)");
}

}  // namespace xplor
