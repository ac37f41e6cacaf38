// Execution tags and the CPU backend's primitive drivers. Every component loops through these
// (for_each_index, transform_reduce, segmented_reduce, scan_offsets) instead of writing its own OpenMP loops;
// the device backend's overloads of the same drivers live in core/device.hpp (Thrust).
//
// Reproducibility: CPU reductions split the index range into fixed chunks whose boundaries do not
// depend on the thread count, reduce each chunk left to right and combine the chunk results left
// to right, so a floating-point sum is bit-identical on 1 thread or many.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "xplor/core/config.hpp"
#include "xplor/core/error.hpp"
#include "xplor/core/groups.hpp"
#include "xplor/core/view.hpp"

#if XPLOR_HAS_OPENMP
#include <omp.h>
#endif

namespace xplor {

/// Host execution: OpenMP threads when compiled with OpenMP, serial otherwise.
/// `num_threads = 0` uses OpenMP's default (OMP_NUM_THREADS); 1 forces serial execution.
struct cpu_t {
  int num_threads = 0;
};
/// Thrust's device system: CUDA under nvcc, OMP or serial C++ under g++ (THRUST_DEVICE_SYSTEM).
/// Its drivers are in <xplor/core/device.hpp>.
struct device_t {};

inline constexpr cpu_t cpu{};
inline constexpr device_t device{};

/// Where a backend's data lives: host memory for xplor::cpu, device memory for xplor::device.
template <class Exec>
using memory_of =
    std::conditional_t<std::is_same_v<std::remove_cvref_t<Exec>, cpu_t>, host_memory, device_memory>;
/// The span and view types a backend's entry points take: std::span / view2d on the CPU,
/// device_span / device_view2d on the device (so host data on the device tag does not compile).
template <class Exec, class T>
using span_for = span_in<memory_of<Exec>, T>;
template <class Exec, class T>
using view2d_for = strided_view<T, 2, memory_of<Exec>>;

/// A span of `n` elements at `p` in the backend's memory (scratch from make_buffer).
template <class Exec, class T>
span_for<Exec, T> backend_span(Exec, T* p, std::size_t n) {
  return span_for<Exec, T>(p, n);
}

/// An execution tag: xplor::cpu or xplor::device. Every component that runs on either backend
/// takes one as its first argument.
template <class E>
concept execution_tag =
    std::same_as<std::remove_cvref_t<E>, cpu_t> || std::same_as<std::remove_cvref_t<E>, device_t>;

/// A group layout (equal_groups, ragged_groups): G groups over N elements, group g covering
/// [begin(g), end(g)).
template <class G>
concept group_layout = requires(const G& g, std::int64_t i) {
  { g.num_groups() } -> std::convertible_to<std::int64_t>;
  { g.num_elements() } -> std::convertible_to<std::int64_t>;
  { g.begin(i) } -> std::convertible_to<std::int64_t>;
  { g.end(i) } -> std::convertible_to<std::int64_t>;
};

namespace detail {
/// Elements per reduction chunk: fixed, so chunk boundaries (and float results) do not depend on
/// the number of threads. Large enough that per-chunk overhead is negligible.
inline constexpr std::int64_t reduce_chunk = 4096;
/// Below this many iterations a loop runs serially: a parallel region costs more than it saves.
inline constexpr std::int64_t parallel_threshold = 2048;

inline int cpu_threads(cpu_t exec) {
#if XPLOR_HAS_OPENMP
  return exec.num_threads > 0 ? exec.num_threads : omp_get_max_threads();
#else
  (void)exec;
  return 1;
#endif
}

inline void check_count(std::int64_t n, const char* function) {
  require(n >= 0, function, "n = ", n, " is negative");
}
}  // namespace detail

namespace detail {
/// The one OpenMP loop of the CPU backend: f(i) for i in [0, n), on threads when `parallel`
/// (the caller knows whether the work per index is worth a parallel region).
template <class F>
void cpu_loop(cpu_t exec, std::int64_t n, bool parallel, F& f) {
#if XPLOR_HAS_OPENMP
  const int threads = cpu_threads(exec);
  if (parallel && threads > 1 && n > 1) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (std::int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#else
  (void)exec;
  (void)parallel;
#endif
  for (std::int64_t i = 0; i < n; ++i) f(i);
}
}  // namespace detail

/// Host data made reachable by a backend's functors: for the CPU the host memory itself, for the
/// device a copy in device memory (see core/device.hpp). Small arrays only (offsets, flags).
template <class T>
class staged_span {
 public:
  explicit staged_span(std::span<const T> host) : data_(host.data()), size_(host.size()) {}
  const T* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  const T* data_;
  std::size_t size_;
};
template <class T>
staged_span<T> stage(cpu_t, std::span<const T> host) {
  return staged_span<T>(host);
}

/// Scratch memory of n elements on a backend (host memory for the CPU; see core/device.hpp for
/// the device): algorithms that need per-group temporaries allocate them with make_buffer.
template <class T>
class host_buffer {
 public:
  explicit host_buffer(std::size_t n) : v_(n) {}
  T* data() { return v_.data(); }
  const T* data() const { return v_.data(); }
  std::size_t size() const { return v_.size(); }

 private:
  std::vector<T> v_;
};
template <class T>
host_buffer<T> make_buffer(cpu_t, std::size_t n) {
  return host_buffer<T>(n);
}

/// Calls f(i) for every i in [0, n), in parallel and in unspecified order. f must not throw.
/// `cost` is the rough work of one call in elementary operations (1 for an elementwise update,
/// the row length for a row operation): the loop goes parallel when n * cost is worth it.
template <class F>
void for_each_index(cpu_t exec, std::int64_t n, F f, std::int64_t cost = 1) {
  detail::check_count(n, "xplor::for_each_index");
  detail::cpu_loop(exec, n, n * cost >= detail::parallel_threshold, f);
}

/// reduce(... reduce(reduce(init, transform(0)), transform(1)) ..., transform(n-1)) up to
/// reassociation in fixed chunks (see the header comment): `reduce` must be associative, and
/// the result is the same for every thread count.
template <class T, class Reduce, class Transform>
T transform_reduce(cpu_t exec, std::int64_t n, T init, Reduce reduce, Transform transform) {
  detail::check_count(n, "xplor::transform_reduce");
  if (n <= detail::reduce_chunk) {
    T acc = init;
    for (std::int64_t i = 0; i < n; ++i) acc = reduce(acc, transform(i));
    return acc;
  }
  const std::int64_t chunks = (n + detail::reduce_chunk - 1) / detail::reduce_chunk;
  std::vector<T> partial(static_cast<std::size_t>(chunks));
  auto reduce_one_chunk = [&](std::int64_t c) {
    const std::int64_t lo = c * detail::reduce_chunk;
    const std::int64_t hi = std::min(n, lo + detail::reduce_chunk);
    T acc = transform(lo);
    for (std::int64_t i = lo + 1; i < hi; ++i) acc = reduce(acc, transform(i));
    partial[static_cast<std::size_t>(c)] = acc;
  };
  detail::cpu_loop(exec, chunks, true, reduce_one_chunk);
  T acc = init;
  for (const T& p : partial) acc = reduce(acc, p);
  return acc;
}

/// out[g] = transform_reduce over the elements of group g (init for an empty group), for every
/// group of `groups` (equal_groups or ragged_groups). Each group is reduced left to right by one
/// thread; groups run in parallel. `out` must hold one value per group.
template <class Groups, class T, class Reduce, class Transform>
void segmented_reduce(cpu_t exec, const Groups& groups, T init, Reduce reduce, Transform transform,
                      std::span<T> out) {
  const std::int64_t g_count = groups.num_groups();
  detail::require(static_cast<std::int64_t>(out.size()) == g_count, "xplor::segmented_reduce", "out has ",
                  out.size(), " elements for ", g_count, " groups");
  auto reduce_group = [&](std::int64_t g) {
    T acc = init;
    for (std::int64_t i = groups.begin(g), e = groups.end(g); i < e; ++i) acc = reduce(acc, transform(i));
    out[static_cast<std::size_t>(g)] = acc;
  };
  detail::cpu_loop(exec, g_count, groups.num_elements() >= detail::parallel_threshold, reduce_group);
}

/// offsets[0] = 0 and offsets[i + 1] = offsets[i] + count(i) for i in [0, n): the start of each
/// element's slice in a packed array (compaction, gathering variable-length data). `offsets` holds
/// n + 1 entries in the backend's memory; returns offsets[n]. Counts are integers, so the result
/// is exact in any order.
template <class Count>
std::int64_t scan_offsets(cpu_t exec, std::int64_t n, Count count, std::int64_t* offsets) {
  detail::check_count(n, "xplor::scan_offsets");
  const std::int64_t chunks = (n + detail::reduce_chunk - 1) / detail::reduce_chunk;
  std::vector<std::int64_t> start(static_cast<std::size_t>(chunks) + 1, 0);
  auto chunk_total = [&](std::int64_t c) {
    std::int64_t s = 0;
    for (std::int64_t i = c * detail::reduce_chunk, e = std::min(n, i + detail::reduce_chunk); i < e; ++i)
      s += count(i);
    start[static_cast<std::size_t>(c) + 1] = s;
  };
  detail::cpu_loop(exec, chunks, n >= detail::parallel_threshold, chunk_total);
  for (std::size_t c = 1; c < start.size(); ++c) start[c] += start[c - 1];
  auto chunk_fill = [&](std::int64_t c) {
    std::int64_t s = start[static_cast<std::size_t>(c)];
    for (std::int64_t i = c * detail::reduce_chunk, e = std::min(n, i + detail::reduce_chunk); i < e; ++i) {
      offsets[i] = s;
      s += count(i);
    }
  };
  detail::cpu_loop(exec, chunks, n >= detail::parallel_threshold, chunk_fill);
  offsets[n] = start.back();
  return start.back();
}

/// A host copy of n elements of the backend's memory at p (small results: a sample, a band).
template <class T>
std::vector<T> copy_to_host(cpu_t, const T* p, std::size_t n) {
  return std::vector<T>(p, p + n);
}

namespace detail {
/// One instantiation for all the fallbacks below, so a build without core/device.hpp stops with
/// one error.
template <class Tag>
void device_drivers_missing() {
  static_assert(
      !std::same_as<Tag, device_t>,
      "xplor::device needs its Thrust drivers: #include <xplor/core/device.hpp> (and link xplor::thrust)");
}
}  // namespace detail

// xplor::device's drivers live in core/device.hpp (it needs Thrust). Without that header these
// overloads are the only ones for device_t and stop the build with the message above; with it,
// device.hpp's overloads (which take device_t itself, not a deduced tag) are more specialised
// and are the ones chosen.
template <class Tag, class F>
requires std::same_as<Tag, device_t>
void for_each_index(Tag, std::int64_t, F, std::int64_t = 1) { detail::device_drivers_missing<Tag>(); }
template <class Tag, class T, class Reduce, class Transform>
requires std::same_as<Tag, device_t> T transform_reduce(Tag, std::int64_t, T init, Reduce, Transform) {
  detail::device_drivers_missing<Tag>();
  return init;
}
template <class Tag, class T>
requires std::same_as<Tag, device_t> staged_span<T> stage(Tag, std::span<const T> host) {
  detail::device_drivers_missing<Tag>();
  return staged_span<T>(host);
}
template <class T, class Tag>
requires std::same_as<Tag, device_t> host_buffer<T> make_buffer(Tag, std::size_t n) {
  detail::device_drivers_missing<Tag>();
  return host_buffer<T>(n);
}
template <class Tag, class Count>
requires std::same_as<Tag, device_t> std::int64_t scan_offsets(Tag, std::int64_t, Count, std::int64_t*) {
  detail::device_drivers_missing<Tag>();
  return 0;
}
template <class T, class Tag>
requires std::same_as<Tag, device_t> std::vector<T> copy_to_host(Tag, const T*, std::size_t) {
  detail::device_drivers_missing<Tag>();
  return {};
}
template <class Tag, class Groups, class T, class Reduce, class Transform>
requires std::same_as<Tag, device_t>
void segmented_reduce(Tag, const Groups&, T, Reduce, Transform, device_span<T>) {
  detail::device_drivers_missing<Tag>();
}

}  // namespace xplor
