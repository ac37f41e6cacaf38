// The device backend's primitive drivers: the xplor::device overloads of for_each_index,
// transform_reduce, segmented_reduce, scan_offsets and copy_to_host, written once on Thrust. Under nvcc they
// run on the GPU (functors must then be XPLOR_HD functor structs); under g++ with THRUST_DEVICE_SYSTEM set to
// THRUST_DEVICE_SYSTEM_OMP or _CPP they run on the host, which is how CI tests them.
// Data reached by the functors must live in the device system's memory (thrust::device_vector).
#pragma once

#include <thrust/copy.h>
#include <thrust/device_vector.h>
#include <thrust/execution_policy.h>
#include <thrust/fill.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/discard_iterator.h>
#include <thrust/iterator/transform_iterator.h>
#include <thrust/reduce.h>
#include <thrust/scan.h>
#include <thrust/transform_reduce.h>
#include <cstdint>
#include <span>
#include <vector>

#include "xplor/core/exec.hpp"
#include "xplor/core/groups.hpp"

namespace xplor {
namespace detail {

template <class F>
struct index_invoker {
  F f;
  XPLOR_HD void operator()(std::int64_t i) const { f(i); }
};

/// Group id of element i for equal groups (i / size).
struct equal_group_of {
  std::int64_t size;
  XPLOR_HD std::int64_t operator()(std::int64_t i) const { return i / size; }
};

/// Group id of element i for ragged groups: the last g with offsets[g] <= i, skipping empty
/// groups (binary search over the device copy of the offsets).
struct ragged_group_of {
  const std::int64_t* offsets;
  std::int64_t num_groups;
  XPLOR_HD std::int64_t operator()(std::int64_t i) const {
    std::int64_t lo = 0, hi = num_groups;  // invariant: offsets[lo] <= i < offsets[hi]
    while (hi - lo > 1) {
      const std::int64_t mid = lo + (hi - lo) / 2;
      if (offsets[mid] <= i)
        lo = mid;
      else
        hi = mid;
    }
    return lo;
  }
};

/// out[keys[k]] = reduce(init, values[k]) for each produced (key, value) pair.
template <class T, class Reduce>
struct scatter_with_init {
  const std::int64_t* keys;
  const T* values;
  T* out;
  T init;
  Reduce reduce;
  XPLOR_HD void operator()(std::int64_t k) const { out[keys[k]] = reduce(init, values[k]); }
};

/// count(i) for i < n and 0 at i = n: scan_offsets' input.
template <class Count>
struct count_or_zero {
  Count count;
  std::int64_t n;
  XPLOR_HD std::int64_t operator()(std::int64_t i) const {
    return i < n ? static_cast<std::int64_t>(count(i)) : 0;
  }
};

template <class T, class Reduce, class Transform, class KeyOf>
void reduce_by_group(std::int64_t n, std::int64_t g_count, T init, Reduce reduce, Transform transform,
                     KeyOf key_of, device_span<T> out) {
  // Empty groups produce no key in reduce_by_key: fill every group with init first, reduce into
  // compact (key, value) pairs, then scatter the values to their groups.
  thrust::device_ptr<T> out_ptr(out.data());
  thrust::fill(thrust::device, out_ptr, out_ptr + g_count, init);
  if (n == 0) return;
  thrust::device_vector<std::int64_t> keys(static_cast<std::size_t>(g_count));
  thrust::device_vector<T> values(static_cast<std::size_t>(g_count));
  const auto first_key = thrust::make_transform_iterator(thrust::counting_iterator<std::int64_t>(0), key_of);
  const auto first_value =
      thrust::make_transform_iterator(thrust::counting_iterator<std::int64_t>(0), transform);
  const auto ends = thrust::reduce_by_key(thrust::device, first_key, first_key + n, first_value, keys.begin(),
                                          values.begin(), thrust::equal_to<std::int64_t>(), reduce);
  const auto produced = ends.first - keys.begin();
  // Combine with init so that out[g] = reduce(init, group sum), as on the CPU.
  thrust::for_each(
      thrust::device, thrust::counting_iterator<std::int64_t>(0),
      thrust::counting_iterator<std::int64_t>(produced),
      scatter_with_init<T, Reduce>{thrust::raw_pointer_cast(keys.data()),
                                   thrust::raw_pointer_cast(values.data()), out.data(), init, reduce});
}

}  // namespace detail

/// A device copy of small host data (offsets, flags) for device functors.
template <class T>
class device_staged_span {
 public:
  explicit device_staged_span(std::span<const T> host) : copy_(host.begin(), host.end()) {}
  const T* data() const { return thrust::raw_pointer_cast(copy_.data()); }
  std::size_t size() const { return copy_.size(); }

 private:
  thrust::device_vector<T> copy_;
};
template <class T>
device_staged_span<T> stage(device_t, std::span<const T> host) {
  return device_staged_span<T>(host);
}

/// Scratch memory of n elements in device memory.
template <class T>
class device_buffer {
 public:
  explicit device_buffer(std::size_t n) : v_(n) {}
  T* data() { return thrust::raw_pointer_cast(v_.data()); }
  const T* data() const { return thrust::raw_pointer_cast(v_.data()); }
  std::size_t size() const { return v_.size(); }

 private:
  thrust::device_vector<T> v_;
};
template <class T>
device_buffer<T> make_buffer(device_t, std::size_t n) {
  return device_buffer<T>(n);
}

/// Calls f(i) for every i in [0, n) on the device system. f must not throw. (`cost` is the CPU
/// backend's parallelism hint; the device always runs in parallel.)
template <class F>
void for_each_index(device_t, std::int64_t n, F f, std::int64_t /*cost*/ = 1) {
  detail::check_count(n, "xplor::for_each_index");
  thrust::for_each(thrust::device, thrust::counting_iterator<std::int64_t>(0),
                   thrust::counting_iterator<std::int64_t>(n), detail::index_invoker<F>{f});
}

/// Device transform_reduce: `reduce` must be associative and commutative (Thrust may reorder);
/// floating-point results may differ from the CPU's in the last bits.
template <class T, class Reduce, class Transform>
T transform_reduce(device_t, std::int64_t n, T init, Reduce reduce, Transform transform) {
  detail::check_count(n, "xplor::transform_reduce");
  return thrust::transform_reduce(thrust::device, thrust::counting_iterator<std::int64_t>(0),
                                  thrust::counting_iterator<std::int64_t>(n), transform, init, reduce);
}

/// Device scan_offsets (see core/exec.hpp): offsets[0..n] in device memory; returns offsets[n].
template <class Count>
std::int64_t scan_offsets(device_t, std::int64_t n, Count count, std::int64_t* offsets) {
  detail::check_count(n, "xplor::scan_offsets");
  // Scanning n + 1 counts, the last one 0, leaves the total in offsets[n].
  const auto counts = thrust::make_transform_iterator(thrust::counting_iterator<std::int64_t>(0),
                                                      detail::count_or_zero<Count>{count, n});
  thrust::device_ptr<std::int64_t> out(offsets);
  thrust::exclusive_scan(thrust::device, counts, counts + (n + 1), out, std::int64_t{0});
  return out[n];
}

/// A host copy of n elements of device memory at p.
template <class T>
std::vector<T> copy_to_host(device_t, const T* p, std::size_t n) {
  std::vector<T> host(n);
  thrust::device_ptr<const T> first(p);
  thrust::copy(first, first + static_cast<std::ptrdiff_t>(n), host.begin());
  return host;
}

/// Device segmented reduction over equal-size groups; `out` is device memory, one per group.
template <class T, class Reduce, class Transform>
void segmented_reduce(device_t, const equal_groups& groups, T init, Reduce reduce, Transform transform,
                      device_span<T> out) {
  detail::require(static_cast<std::int64_t>(out.size()) == groups.num_groups(), "xplor::segmented_reduce",
                  "out has ", out.size(), " elements for ", groups.num_groups(), " groups");
  detail::reduce_by_group(groups.num_elements(), groups.num_groups(), init, reduce, transform,
                          detail::equal_group_of{groups.size > 0 ? groups.size : 1}, out);
}

/// Device segmented reduction over ragged groups. The offsets are host memory (validated by
/// ragged_groups); they are copied to the device once per call.
template <class T, class Reduce, class Transform>
void segmented_reduce(device_t, const ragged_groups& groups, T init, Reduce reduce, Transform transform,
                      device_span<T> out) {
  detail::require(static_cast<std::int64_t>(out.size()) == groups.num_groups(), "xplor::segmented_reduce",
                  "out has ", out.size(), " elements for ", groups.num_groups(), " groups");
  const auto offsets = stage(device, groups.offsets);
  detail::reduce_by_group(groups.num_elements(), groups.num_groups(), init, reduce, transform,
                          detail::ragged_group_of{offsets.data(), groups.num_groups()}, out);
}

}  // namespace xplor
