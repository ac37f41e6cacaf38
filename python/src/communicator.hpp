// xplor::dist's communicator over a Python object, so that the dist/ algorithms run under any
// Python runtime: the object needs `rank` and `size` (ints) and all_gather_bytes(data: bytes) ->
// list of bytes (every rank's data, in rank order). xplor.dist.TorchCommunicator provides them
// over torch.distributed (all_gather_object); mpi4py's comm.allgather does the same. Every other
// collective is built from the gather (dist::reduce_by_gathering). The C++ algorithms run with
// the GIL released; each collective takes it back to call Python.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common.hpp"
#include "xplor/dist/communicator.hpp"

namespace xplor::python {

class py_communicator {
 public:
  explicit py_communicator(nb::handle comm) : comm_(nb::borrow(comm)) {
    constexpr const char* fn = "xplor.dist";
    xplor::detail::require(
        nb::hasattr(comm_, "rank") && nb::hasattr(comm_, "size") && nb::hasattr(comm_, "all_gather_bytes"),
        fn, "the communicator needs rank, size and all_gather_bytes(bytes) -> list of bytes");
    rank_ = nb::cast<int>(comm_.attr("rank"));
    size_ = nb::cast<int>(comm_.attr("size"));
    xplor::detail::require(size_ >= 1 && rank_ >= 0 && rank_ < size_, fn, "rank = ", rank_,
                           ", size = ", size_, ": needs 0 <= rank < size");
  }
  // Held across GIL releases: the object is only touched with the GIL (in all_gather_bytes).
  ~py_communicator() {
    nb::gil_scoped_acquire gil;
    comm_.reset();
  }
  py_communicator(const py_communicator&) = delete;
  py_communicator& operator=(const py_communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  void all_reduce(std::span<std::int64_t> v, dist::reduce_op op) {
    dist::reduce_by_gathering(*this, v, op, "xplor.dist");
  }
  void all_reduce(std::span<double> v, dist::reduce_op op) {
    dist::reduce_by_gathering(*this, v, op, "xplor.dist");
  }

  std::vector<std::byte> all_gather_bytes(std::span<const std::byte> mine,
                                          std::vector<std::int64_t>& counts) {
    constexpr const char* fn = "xplor.dist: comm.all_gather_bytes";
    nb::gil_scoped_acquire gil;
    const nb::object out =
        comm_.attr("all_gather_bytes")(nb::bytes(reinterpret_cast<const char*>(mine.data()), mine.size()));
    const auto parts = nb::cast<std::vector<nb::bytes>>(out);
    xplor::detail::require(static_cast<int>(parts.size()) == size_, fn, "returned ", parts.size(),
                           " parts for ", size_, " ranks");
    std::vector<std::byte> all;
    counts.clear();
    for (const nb::bytes& b : parts) {
      const auto* p = static_cast<const std::byte*>(b.data());
      all.insert(all.end(), p, p + b.size());
      counts.push_back(static_cast<std::int64_t>(b.size()));
    }
    xplor::detail::require(counts[static_cast<std::size_t>(rank_)] == static_cast<std::int64_t>(mine.size()),
                           fn, "part ", rank_, " (this rank's) has ", counts[static_cast<std::size_t>(rank_)],
                           " bytes, this rank sent ", mine.size());
    return all;
  }
  void broadcast_bytes(std::span<std::byte> bytes, int root) {
    std::vector<std::int64_t> counts;
    const std::vector<std::byte> all = all_gather_bytes(
        rank_ == root ? std::span<const std::byte>(bytes) : std::span<const std::byte>{}, counts);
    xplor::detail::require(all.size() == bytes.size(), "xplor.dist: broadcast", "root sent ", all.size(),
                           " bytes, this rank expects ", bytes.size());
    std::copy(all.begin(), all.end(), bytes.begin());
  }
  /// Raises: the Python runtime (torch.distributed, mpi4py) decides how the job ends.
  [[noreturn]] void abort(std::string_view why) { throw xplor::error(std::string(why)); }

 private:
  nb::object comm_;
  int rank_ = 0, size_ = 1;
};

static_assert(dist::communicator<py_communicator>);

}  // namespace xplor::python
