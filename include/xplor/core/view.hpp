// Non-owning views over data that belongs to the caller. 1-D data is a std::span; 2-D and 3-D
// data is a strided_view (pointer, extents and element strides), so that row-major, column-major
// and sliced layouts of Eigen, xtensor, std::vector or device memory all pass without a copy.
// Adapters for foreign containers live in adapt_*.hpp, one header per container library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "xplor/core/config.hpp"
#include "xplor/core/error.hpp"

namespace xplor {

/// Memory spaces. A view's type says where its elements live, so that handing host memory to
/// the device backend (or device memory to the CPU) is a compile error instead of a fault on the
/// GPU that CPU-only CI cannot see: the device overloads take device_span / device views only,
/// which come from the device adapters (adapt_thrust.hpp) or from an explicit device_span(p, n).
struct host_memory {};
struct device_memory {};

/// A contiguous range of device memory: a std::span that says "device". Explicit from a raw
/// pointer; implicit only from device_span<non-const T> to device_span<const T>.
template <class T>
class device_span {
 public:
  using element_type = T;
  device_span() = default;
  XPLOR_HD explicit device_span(T* data, std::size_t size) : data_(data), size_(size) {}
  template <class U>
  requires(std::is_same_v<const U, T> && !std::is_const_v<U>) XPLOR_HD device_span(device_span<U> other)
      : data_(other.data()), size_(other.size()) {}
  XPLOR_HD T* data() const { return data_; }
  XPLOR_HD std::size_t size() const { return size_; }
  XPLOR_HD bool empty() const { return size_ == 0; }
  XPLOR_HD T& operator[](std::size_t i) const { return data_[i]; }
  XPLOR_HD device_span subspan(std::size_t offset, std::size_t count) const {
    return device_span(data_ + offset, count);
  }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

/// The span type of a memory space: std::span for the host, device_span for the device.
template <class Space, class T>
using span_in = std::conditional_t<std::is_same_v<Space, host_memory>, std::span<T>, device_span<T>>;

/// A Rank-dimensional strided view: element (i0, i1, ...) lives at data[i0*s0 + i1*s1 + ...].
/// Strides count elements, not bytes. Accessors are XPLOR_HD so device functors can use a view
/// of device memory; plain C arrays (not std::array) keep them callable under nvcc. `Space` is
/// where the elements live (host_memory unless a device adapter made the view).
template <class T, std::size_t Rank, class Space = host_memory>
class strided_view {
  static_assert(Rank >= 1 && Rank <= 4, "strided_view supports ranks 1 to 4");

 public:
  using element_type = T;
  using memory_space = Space;
  static constexpr std::size_t rank = Rank;

  strided_view() = default;
  XPLOR_HD strided_view(T* data, const std::int64_t (&extents)[Rank], const std::int64_t (&strides)[Rank])
      : data_(data) {
    for (std::size_t d = 0; d < Rank; ++d) {
      extents_[d] = extents[d];
      strides_[d] = strides[d];
    }
  }

  XPLOR_HD T* data() const { return data_; }
  XPLOR_HD std::int64_t extent(std::size_t d) const { return extents_[d]; }
  XPLOR_HD std::int64_t stride(std::size_t d) const { return strides_[d]; }
  XPLOR_HD std::int64_t size() const {
    std::int64_t n = 1;
    for (std::size_t d = 0; d < Rank; ++d) n *= extents_[d];
    return n;
  }
  XPLOR_HD bool empty() const { return size() == 0; }
  XPLOR_HD std::int64_t rows() const requires(Rank == 2) { return extents_[0]; }
  XPLOR_HD std::int64_t cols() const requires(Rank == 2) { return extents_[1]; }

  template <class... Index>
  requires(sizeof...(Index) == Rank) XPLOR_HD T& operator()(Index... index) const {
    const std::int64_t idx[Rank] = {static_cast<std::int64_t>(index)...};
    std::int64_t offset = 0;
    for (std::size_t d = 0; d < Rank; ++d) offset += idx[d] * strides_[d];
    return data_[offset];
  }

  /// The sub-view at index i of the first dimension (a row of a matrix, a matrix of a 3-D view).
  XPLOR_HD strided_view<T, Rank - 1, Space> operator[](std::int64_t i) const requires(Rank >= 2) {
    strided_view<T, Rank - 1, Space> sub;
    sub.data_ = data_ + i * strides_[0];
    for (std::size_t d = 1; d < Rank; ++d) {
      sub.extents_[d - 1] = extents_[d];
      sub.strides_[d - 1] = strides_[d];
    }
    return sub;
  }

  /// True when the last dimension is unit-stride, so that each innermost line is a std::span.
  XPLOR_HD bool inner_contiguous() const { return strides_[Rank - 1] == 1 || extents_[Rank - 1] <= 1; }

  /// Row i of a 2-D view as a span (host code; needs inner_contiguous()).
  std::span<T> row(std::int64_t i) const requires(Rank == 2 && std::is_same_v<Space, host_memory>) {
    detail::require(inner_contiguous(), "xplor::strided_view::row", "the view's column stride is ",
                    strides_[1], "; a span row needs stride 1");
    detail::require(i >= 0 && i < extents_[0], "xplor::strided_view::row", "row index ", i,
                    " is outside [0, ", extents_[0], ")");
    return {data_ + i * strides_[0], static_cast<std::size_t>(extents_[1])};
  }

  /// A view of const elements converts implicitly from a view of mutable ones.
  /// (A template, so that view<const T> declares no conversion to its own type.)
  template <class U>
  requires(std::is_same_v<U, const T> && !std::is_const_v<T>) XPLOR_HD operator strided_view<U, Rank, Space>()
      const {
    return strided_view<U, Rank, Space>(data_, extents_, strides_);
  }

 private:
  template <class, std::size_t, class>
  friend class strided_view;

  T* data_ = nullptr;
  std::int64_t extents_[Rank] = {};
  std::int64_t strides_[Rank] = {};
};

template <class T, class Space = host_memory>
using view2d = strided_view<T, 2, Space>;
template <class T, class Space = host_memory>
using view3d = strided_view<T, 3, Space>;
/// A [rows, cols] view of device memory (from adapt_thrust.hpp, or constructed explicitly).
template <class T>
using device_view2d = strided_view<T, 2, device_memory>;

/// A row-major view of `data` with the given extents; throws xplor::error when an extent is
/// negative or `data` is null while the view is non-empty.
template <class T, std::size_t Rank>
strided_view<T, Rank> make_view(T* data, const std::int64_t (&extents)[Rank]) {
  std::int64_t strides[Rank];
  std::int64_t n = 1;
  for (std::size_t d = Rank; d-- > 0;) {
    detail::require(extents[d] >= 0, "xplor::make_view", "extents[", d, "] = ", extents[d], " is negative");
    strides[d] = n;
    n *= extents[d];
  }
  detail::require(data != nullptr || n == 0, "xplor::make_view", "data is null for a view of ", n,
                  " elements");
  return strided_view<T, Rank>(data, extents, strides);
}

namespace detail {

template <class T>
struct is_std_vector : std::false_type {};
template <class T, class Alloc>
struct is_std_vector<std::vector<T, Alloc>> : std::true_type {};

/// A row-major view of `size` elements at `data`; the extents must multiply to `size`.
template <class T, std::size_t Rank>
strided_view<T, Rank> checked_view(T* data, std::size_t size, const std::int64_t (&extents)[Rank],
                                   const char* function) {
  std::int64_t n = 1;
  for (std::size_t d = 0; d < Rank; ++d) {
    require(extents[d] >= 0, function, "extents[", d, "] = ", extents[d], " is negative");
    n *= extents[d];
  }
  require(static_cast<std::size_t>(n) == size, function, "a view of ", n, " elements over ", size,
          " elements");
  return make_view(data, extents);
}

/// Throws unless distinct (i, j) of `v` are distinct elements, so that writing through the view
/// loses nothing (an output with stride 0, or rows overlapping columns, is not a layout).
/// The same elements as a view of the default space, for kernels: a kernel runs on the backend
/// whose memory holds them, so only the public entry points check the space.
template <class T, std::size_t Rank, class Space>
XPLOR_HD strided_view<T, Rank> kernel_view(const strided_view<T, Rank, Space>& v) {
  std::int64_t extents[Rank];
  std::int64_t strides[Rank];
  for (std::size_t d = 0; d < Rank; ++d) {
    extents[d] = v.extent(d);
    strides[d] = v.stride(d);
  }
  return strided_view<T, Rank>(v.data(), extents, strides);
}

template <class T, class Space>
void require_distinct_elements(const view2d<T, Space>& v, const char* fn, const char* name) {
  if (v.rows() <= 1 && v.cols() <= 1) return;
  std::int64_t s[2] = {v.stride(0) < 0 ? -v.stride(0) : v.stride(0),
                       v.stride(1) < 0 ? -v.stride(1) : v.stride(1)};
  std::int64_t e[2] = {v.rows(), v.cols()};
  if (e[0] <= 1) s[0] = s[1] * e[1];  // a single row or column: only the other stride matters
  if (e[1] <= 1) s[1] = s[0] * e[0];
  const int inner = s[0] <= s[1] ? 0 : 1;
  const int outer = 1 - inner;
  require(s[inner] >= 1 && s[outer] >= s[inner] * e[inner], fn, name, " (", v.rows(), " x ", v.cols(),
          ", strides ", v.stride(0), ", ", v.stride(1),
          ") maps two elements to one address; an output needs a layout "
          "without overlap");
}
}  // namespace detail

/// A std::vector as a span (const when the vector is const).
template <class V>
requires detail::is_std_vector<std::remove_const_t<V>>::value auto as_span(V& v) {
  return std::span(v.data(), v.size());
}

/// A row-major [rows, cols] view of a std::vector whose size must be rows * cols.
template <class V>
requires detail::is_std_vector<std::remove_const_t<V>>::value auto as_view2d(V& v, std::int64_t rows,
                                                                             std::int64_t cols) {
  return detail::checked_view(v.data(), v.size(), {rows, cols}, "xplor::as_view2d");
}

/// A row-major [d0, d1, d2] view of a std::vector whose size must be d0 * d1 * d2.
template <class V>
requires detail::is_std_vector<std::remove_const_t<V>>::value auto as_view3d(V& v, std::int64_t d0,
                                                                             std::int64_t d1,
                                                                             std::int64_t d2) {
  return detail::checked_view(v.data(), v.size(), {d0, d1, d2}, "xplor::as_view3d");
}

}  // namespace xplor
