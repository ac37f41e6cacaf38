// The communicator concept: what xplor's multi-rank algorithms need from a distributed runtime
// (rank, size, all-reduce, broadcast, all-gather of variable-length data, abort), and the
// single-process implementation every algorithm takes by default. The MPI implementation is in
// dist/mpi.hpp (target xplor::mpi); NCCL and torch.distributed map onto the same calls
// (docs/distributed.md).
//
// Determinism: integer sums, and min / max of any type, are exact, so every runtime and every
// reduction tree gives the same result. A floating-point sum is not associative, so sum_ordered()
// gathers each rank's values and adds them in rank order on every rank: the same bits on every
// rank and in every run with the same number of ranks. Algorithms that must also give the same
// result on any number of ranks gather the inputs and run the single-process code (dist/
// advantage.hpp) or reduce integers only (dist/knapsack.hpp).
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <exception>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "xplor/core/error.hpp"

namespace xplor::dist {

enum class reduce_op { sum, min, max };

/// C is a communicator: rank() in [0, size()); all_reduce over int64 (any op) and double (min,
/// max); all_gather_bytes concatenates every rank's bytes in rank order and returns each rank's
/// byte count; broadcast_bytes copies root's bytes to every rank; abort ends every rank.
template <class C>
concept communicator = requires(C& c, const C& cc, std::span<std::int64_t> i, std::span<double> d,
                                std::span<const std::byte> in, std::span<std::byte> io,
                                std::vector<std::int64_t>& counts, std::string_view why) {
  { cc.rank() } -> std::convertible_to<int>;
  { cc.size() } -> std::convertible_to<int>;
  c.all_reduce(i, reduce_op::sum);
  c.all_reduce(d, reduce_op::max);
  { c.all_gather_bytes(in, counts) } -> std::same_as<std::vector<std::byte>>;
  c.broadcast_bytes(io, 0);
  c.abort(why);
};

/// One process: every collective is the identity. The default communicator of every dist/
/// algorithm, so that single-process code needs no runtime.
class single_process {
 public:
  int rank() const { return 0; }
  int size() const { return 1; }
  void all_reduce(std::span<std::int64_t>, reduce_op) {}
  void all_reduce(std::span<double> values, reduce_op op) {
    xplor::detail::require(op != reduce_op::sum, "xplor::dist::single_process::all_reduce",
                           "a double sum is not a reduction of the communicator; use sum_ordered");
    (void)values;
  }
  std::vector<std::byte> all_gather_bytes(std::span<const std::byte> mine,
                                          std::vector<std::int64_t>& counts) {
    counts.assign(1, static_cast<std::int64_t>(mine.size()));
    return {mine.begin(), mine.end()};
  }
  void broadcast_bytes(std::span<std::byte>, int root) {
    xplor::detail::require(root == 0, "xplor::dist::single_process::broadcast_bytes", "root = ", root,
                           " is not a rank of a 1-rank communicator");
  }
  [[noreturn]] void abort(std::string_view why) { throw error(std::string(why)); }
};

static_assert(communicator<single_process>);

/// Every rank's `mine` (trivially copyable T) concatenated in rank order; `counts` (optional)
/// receives each rank's element count.
template <communicator C, class T>
requires std::is_trivially_copyable_v<T> std::vector<T> all_gather(
    C& comm, std::span<const T> mine, std::vector<std::int64_t>* counts = nullptr) {
  std::vector<std::int64_t> bytes;
  const std::vector<std::byte> all = comm.all_gather_bytes(std::as_bytes(mine), bytes);
  std::vector<T> out(all.size() / sizeof(T));
  if (!all.empty()) std::memcpy(out.data(), all.data(), all.size());
  if (counts != nullptr) {
    counts->clear();
    for (std::int64_t b : bytes) counts->push_back(b / static_cast<std::int64_t>(sizeof(T)));
  }
  return out;
}

/// all_reduce for a communicator whose only data primitive is all_gather_bytes (thread ranks, a
/// Python object): gathers every rank's values and reduces them in rank order on every rank
/// (exact for integers and for min / max; a double sum is refused, see sum_ordered).
template <communicator C, class T>
void reduce_by_gathering(C& comm, std::span<T> values, reduce_op op, const char* fn) {
  xplor::detail::require(!std::is_floating_point_v<T> || op != reduce_op::sum, fn,
                         "a floating-point sum is not a reduction of the communicator; use sum_ordered");
  std::vector<std::int64_t> counts;
  const std::vector<T> all = all_gather(comm, std::span<const T>(values), &counts);
  for (std::int64_t c : counts)
    xplor::detail::require(c == static_cast<std::int64_t>(values.size()), fn, "a rank passed ", c,
                           " values, this rank ", values.size(), "; every rank must pass the same length");
  for (std::size_t i = 0; i < values.size(); ++i) {
    T v = all[i];
    for (std::size_t r = 1; r < counts.size(); ++r) {
      const T x = all[r * values.size() + i];
      v = op == reduce_op::sum ? T(v + x) : op == reduce_op::min ? (x < v ? x : v) : (x > v ? x : v);
    }
    values[i] = v;
  }
}

/// root's `values` on every rank (the same length on every rank).
template <communicator C, class T>
requires std::is_trivially_copyable_v<T>
void broadcast(C& comm, std::span<T> values, int root = 0) {
  comm.broadcast_bytes(std::as_writable_bytes(values), root);
}

/// The element-wise sum over ranks of `values`, added in rank order (rank 0 first) on every rank:
/// identical bits on every rank, independent of the runtime's reduction tree.
template <communicator C>
void sum_ordered(C& comm, std::span<double> values) {
  if (comm.size() == 1) return;
  std::vector<std::int64_t> counts;
  const std::vector<double> all = all_gather(comm, std::span<const double>(values), &counts);
  for (std::int64_t c : counts)
    xplor::detail::require(c == static_cast<std::int64_t>(values.size()), "xplor::dist::sum_ordered",
                           "a rank has ", c, " values, this rank ", values.size(),
                           "; every rank must pass the same length");
  for (std::size_t i = 0; i < values.size(); ++i) {
    double s = 0.0;
    for (std::size_t r = 0; r < counts.size(); ++r) s += all[r * values.size() + i];
    values[i] = s;
  }
}
/// The same for floats (gradient buffers), accumulated in float, rank 0 first. Gathers in chunks
/// of 2^20 values, so the extra memory is size() x 4 MiB whatever the buffer's length.
template <communicator C>
void sum_ordered(C& comm, std::span<float> values) {
  if (comm.size() == 1) return;
  constexpr std::size_t chunk = std::size_t{1} << 20;
  std::int64_t len = static_cast<std::int64_t>(values.size()), longest = len;
  comm.all_reduce(std::span<std::int64_t>(&longest, 1), reduce_op::max);
  std::int64_t shortest = -len;
  comm.all_reduce(std::span<std::int64_t>(&shortest, 1), reduce_op::max);
  xplor::detail::require(longest == len && -shortest == len, "xplor::dist::sum_ordered",
                         "the ranks pass between ", -shortest, " and ", longest,
                         " values; every rank must pass the same length");
  for (std::size_t first = 0; first < values.size(); first += chunk) {
    const auto part = values.subspan(first, std::min(chunk, values.size() - first));
    const std::vector<float> all = all_gather(comm, std::span<const float>(part));
    for (std::size_t i = 0; i < part.size(); ++i) {
      float s = 0.0f;
      for (int r = 0; r < comm.size(); ++r) s += all[static_cast<std::size_t>(r) * part.size() + i];
      part[i] = s;
    }
  }
}

/// The first global index of this rank's shard when every rank holds `local` consecutive items:
/// the sum of the lower ranks' counts (and the global total in `total`, optional).
template <communicator C>
std::int64_t shard_offset(C& comm, std::int64_t local, std::int64_t* total = nullptr) {
  const std::vector<std::int64_t> all = all_gather(comm, std::span<const std::int64_t>(&local, 1));
  std::int64_t before = 0, sum = 0;
  for (std::size_t r = 0; r < all.size(); ++r) {
    if (static_cast<int>(r) < comm.rank()) before += all[r];
    sum += all[r];
  }
  if (total != nullptr) *total = sum;
  return before;
}

/// Runs `body`; an exception on this rank ends the whole job through comm.abort with its message,
/// so that no rank waits forever in a collective the failed rank will never join.
template <communicator C, class F>
void run_or_abort(C& comm, F&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    comm.abort(e.what());
  }
}

}  // namespace xplor::dist
