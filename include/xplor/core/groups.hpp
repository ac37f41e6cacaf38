// Group layouts for per-group (segmented) work: equal-size contiguous groups, as in GRPO with a
// fixed num_generations, and ragged groups given by offsets, as produced when a budget allocator
// gives each prompt its own number of rollouts. Group g covers elements [begin(g), end(g)).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "xplor/core/config.hpp"
#include "xplor/core/error.hpp"

namespace xplor {

/// `count` contiguous groups of `size` elements each (element i is in group i / size).
struct equal_groups {
  std::int64_t count = 0;
  std::int64_t size = 0;

  equal_groups() = default;
  equal_groups(std::int64_t count_, std::int64_t size_) : count(count_), size(size_) {
    detail::require(count_ >= 0, "xplor::equal_groups", "count = ", count_, " is negative");
    detail::require(size_ >= 0, "xplor::equal_groups", "size = ", size_, " is negative");
  }
  XPLOR_HD std::int64_t num_groups() const { return count; }
  XPLOR_HD std::int64_t num_elements() const { return count * size; }
  XPLOR_HD std::int64_t begin(std::int64_t g) const { return g * size; }
  XPLOR_HD std::int64_t end(std::int64_t g) const { return (g + 1) * size; }
};

/// Ragged groups: group g covers [offsets[g], offsets[g+1]). The offsets are validated once, at
/// construction: offsets[0] == 0, non-decreasing, and offsets.back() == the data length. The
/// view does not own the offsets; keep them alive while the groups are used.
struct ragged_groups {
  std::span<const std::int64_t> offsets = {};

  ragged_groups(std::span<const std::int64_t> offsets_, std::int64_t num_elements) : offsets(offsets_) {
    constexpr const char* fn = "xplor::ragged_groups";
    detail::require(!offsets_.empty(), fn, "offsets is empty; G groups need G + 1 offsets");
    detail::require(offsets_[0] == 0, fn, "offsets[0] = ", offsets_[0], ", must be 0");
    for (std::size_t g = 1; g < offsets_.size(); ++g)
      detail::require(offsets_[g] >= offsets_[g - 1], fn, "offsets are not non-decreasing: offsets[", g,
                      "] = ", offsets_[g], " < offsets[", g - 1, "] = ", offsets_[g - 1]);
    detail::require(offsets_.back() == num_elements, fn, "offsets end at ", offsets_.back(),
                    " but the data has ", num_elements, " elements");
  }
  std::int64_t num_groups() const { return static_cast<std::int64_t>(offsets.size()) - 1; }
  std::int64_t num_elements() const { return offsets.back(); }
  std::int64_t begin(std::int64_t g) const { return offsets[g]; }
  std::int64_t end(std::int64_t g) const { return offsets[g + 1]; }
};

/// Offsets [0, c0, c0 + c1, ...] from per-group counts (e.g. rollouts per prompt).
inline std::vector<std::int64_t> offsets_from_counts(std::span<const int> counts) {
  std::vector<std::int64_t> offsets(counts.size() + 1, 0);
  for (std::size_t g = 0; g < counts.size(); ++g) {
    detail::require(counts[g] >= 0, "xplor::offsets_from_counts", "counts[", g, "] = ", counts[g],
                    " is negative");
    offsets[g + 1] = offsets[g] + counts[g];
  }
  return offsets;
}

}  // namespace xplor
