// Order statistics on either backend: the k-th largest of n 64-bit keys (std::nth_element on the
// CPU; on the device, bisection on the key bits, one counting transform_reduce per bit).
// The losses use it for top-k token selection (KL-Cov, Clip-Cov) and quantiles (TRL's
// top_entropy_quantile); a key that packs the value above the index makes every key distinct,
// so ties are broken by index and the selection is the same on every backend.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "xplor/core/config.hpp"
#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"

namespace xplor {

namespace detail {

/// A float's bits mapped so that unsigned order is the float order (-inf < ... < -0 < +0 < ... < inf).
XPLOR_HD inline std::uint32_t orderable_bits(float v) {
  std::uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return (u & 0x80000000u) != 0u ? ~u : (u | 0x80000000u);
}
XPLOR_HD inline float from_orderable_bits(std::uint32_t u) {
  u = (u & 0x80000000u) != 0u ? (u & 0x7FFFFFFFu) : ~u;
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

/// The selection key of element i with value v: a larger value ranks first, then a smaller index.
/// Every key of a finite or infinite value is nonzero, so 0 marks an element left out.
XPLOR_HD inline std::uint64_t rank_key(float v, std::int64_t i) {
  return (std::uint64_t(orderable_bits(v)) << 32) | (0xFFFFFFFFu - static_cast<std::uint32_t>(i));
}
XPLOR_HD inline float rank_key_value(std::uint64_t key) {
  return from_orderable_bits(std::uint32_t(key >> 32));
}

struct read_key {
  const std::uint64_t* keys;
  XPLOR_HD std::uint64_t operator()(std::int64_t i) const { return keys[i]; }
};
template <class KeyFn>
struct write_keys {
  KeyFn key;
  std::uint64_t* out;
  XPLOR_HD void operator()(std::int64_t i) const { out[i] = key(i); }
};
template <class KeyFn>
struct count_keys_at_least {
  KeyFn key;
  std::uint64_t bound;
  XPLOR_HD std::int64_t operator()(std::int64_t i) const { return key(i) >= bound ? 1 : 0; }
};
struct plus_count {
  XPLOR_HD std::int64_t operator()(std::int64_t a, std::int64_t b) const { return a + b; }
};

}  // namespace detail

/// The k-th largest (k >= 1) of key(0), ..., key(n - 1), where `key` is an XPLOR_HD functor
/// returning std::uint64_t; 0 when fewer than k keys are nonzero. The elements whose key is
/// >= the result are the top k (exactly k when the keys are distinct, as rank_key makes them).
/// The keys are computed once into scratch; the CPU then selects with std::nth_element, the
/// device by bisection on the key bits (one counting reduction per bit).
template <execution_tag Exec, class KeyFn>
std::uint64_t kth_largest_key(Exec exec, std::int64_t n, KeyFn key, std::int64_t k) {
  detail::require(n >= 0 && n < (std::int64_t(1) << 32), "xplor::kth_largest_key", "n = ", n,
                  " is outside [0, 2^32)");
  detail::require(k >= 1, "xplor::kth_largest_key", "k = ", k, " must be >= 1");
  auto keys = make_buffer<std::uint64_t>(exec, static_cast<std::size_t>(n));
  for_each_index(exec, n, detail::write_keys<KeyFn>{key, keys.data()});
  if constexpr (std::is_same_v<Exec, cpu_t>) {
    if (k > n) return 0;
    std::uint64_t* first = keys.data();
    std::nth_element(first, first + (k - 1), first + n,
                     [](std::uint64_t a, std::uint64_t b) { return a > b; });
    return first[k - 1];
  } else {
    // Build the answer from the top bit down: keep a bit when at least k keys reach the prefix.
    std::uint64_t answer = 0;
    for (int bit = 63; bit >= 0; --bit) {
      const std::uint64_t candidate = answer | (std::uint64_t(1) << bit);
      const std::int64_t count = transform_reduce(
          exec, n, std::int64_t{0}, detail::plus_count{},
          detail::count_keys_at_least<detail::read_key>{detail::read_key{keys.data()}, candidate});
      if (count >= k) answer = candidate;
    }
    return answer;
  }
}

}  // namespace xplor
