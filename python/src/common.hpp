// What every binding file shares: nanobind, the array types the bindings take and return, and
// the conversions between them and the spans xplor's functions read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include "xplor/core/error.hpp"

namespace nb = nanobind;

namespace xplor::python {

// Inputs: any C-contiguous CPU array with the dlpack or buffer protocol (NumPy, PyTorch CPU
// tensors, JAX on the CPU). A float32 contiguous array is read in place (no copy); nanobind
// converts other dtypes or layouts once, before the call.
template <class T>
using in1 = nb::ndarray<const T, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
template <class T>
using in2 = nb::ndarray<const T, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
// Outputs the caller provides (written in place, never converted: a wrong dtype is an error).
template <class T>
using out1 = nb::ndarray<T, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
// Arrays the bindings return: NumPy arrays that own their memory (torch.from_numpy shares it).
template <class T>
using np1 = nb::ndarray<nb::numpy, T, nb::ndim<1>>;

template <class T>
std::span<const T> span_of(const in1<T>& a) {
  return {a.data(), a.shape(0)};
}
template <class T>
std::span<const T> span_of(const std::optional<in1<T>>& a) {
  return a ? span_of(*a) : std::span<const T>{};
}
template <class T>
std::span<T> span_of(const out1<T>& a) {
  return {a.data(), a.shape(0)};
}

/// A NumPy array that takes ownership of `v` (no copy of the elements).
template <class T>
np1<T> to_numpy(std::vector<T>&& v) {
  auto* owned = new std::vector<T>(std::move(v));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return np1<T>(owned->data(), {owned->size()}, owner);
}

/// A fresh NumPy array of n elements (value-initialised) and its span, to be filled by C++.
template <class T>
std::pair<np1<T>, std::span<T>> new_array(std::size_t n) {
  auto* owned = new std::vector<T>(n);
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return {np1<T>(owned->data(), {n}, owner), std::span<T>(owned->data(), n)};
}

/// `out` when given (checked to hold n elements), else a fresh array.
template <class T>
std::pair<nb::object, std::span<T>> output(const std::optional<out1<T>>& out, std::size_t n, const char* fn,
                                           const char* name) {
  if (out) {
    xplor::detail::require(out->shape(0) == n, fn, name, " has ", out->shape(0), " elements, expected ", n);
    return {nb::cast(*out), span_of(*out)};
  }
  auto [array, span] = new_array<T>(n);
  return {nb::cast(array), span};
}

void bind_reward(nb::module_& m);
void bind_budget(nb::module_& m);
void bind_rl(nb::module_& m);
void bind_sample(nb::module_& m);
void bind_env(nb::module_& m);
void bind_search(nb::module_& m);

}  // namespace xplor::python
