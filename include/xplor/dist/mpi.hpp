// The communicator over MPI (link xplor::mpi, defined when CMake finds MPI; OpenMPI from Debian's
// libopenmpi-dev in CI). Every MPI call is checked: a failure is an xplor::error naming the call
// and MPI's error string (the communicator is switched to MPI_ERRORS_RETURN so errors come back
// instead of killing the job with MPI's own message). abort() prints the rank and the reason and
// calls MPI_Abort, which ends every rank of the job: the way out when one rank fails mid-run and
// the others would otherwise wait forever in a collective.
#pragma once

#include <mpi.h>

#include <climits>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xplor/dist/communicator.hpp"

namespace xplor::dist {

namespace detail {
inline void mpi_check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  xplor::detail::fail("xplor::dist::mpi", call,
                      " failed: ", std::string(text, static_cast<std::size_t>(len)));
}
inline MPI_Op mpi_op(reduce_op op) {
  return op == reduce_op::sum ? MPI_SUM : op == reduce_op::min ? MPI_MIN : MPI_MAX;
}
}  // namespace detail

/// MPI_Init on construction (unless MPI is already initialised), MPI_Finalize on destruction.
class mpi_session {
 public:
  mpi_session(int* argc, char*** argv) {
    int ready = 0;
    MPI_Initialized(&ready);
    if (!ready) {
      detail::mpi_check(MPI_Init(argc, argv), "MPI_Init");
      owner_ = true;
    }
  }
  mpi_session(const mpi_session&) = delete;
  mpi_session& operator=(const mpi_session&) = delete;
  ~mpi_session() {
    int done = 0;
    MPI_Finalized(&done);
    if (owner_ && !done) MPI_Finalize();
  }

 private:
  bool owner_ = false;
};

class mpi_communicator {
 public:
  /// Uses `comm` (MPI_COMM_WORLD by default); MPI must be initialised (mpi_session).
  explicit mpi_communicator(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
    int ready = 0;
    MPI_Initialized(&ready);
    xplor::detail::require(ready != 0, "xplor::dist::mpi_communicator",
                           "MPI is not initialised (create an mpi_session first)");
    detail::mpi_check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    detail::mpi_check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    detail::mpi_check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }

  int rank() const { return rank_; }
  int size() const { return size_; }

  void all_reduce(std::span<std::int64_t> values, reduce_op op) {
    detail::mpi_check(MPI_Allreduce(MPI_IN_PLACE, values.data(), count_of(values.size()), MPI_INT64_T,
                                    detail::mpi_op(op), comm_),
                      "MPI_Allreduce");
  }
  /// min and max only: a double sum's bits would depend on MPI's reduction tree (sum_ordered).
  void all_reduce(std::span<double> values, reduce_op op) {
    xplor::detail::require(op != reduce_op::sum, "xplor::dist::mpi_communicator::all_reduce",
                           "a double sum is not a reduction of the communicator; use sum_ordered");
    detail::mpi_check(MPI_Allreduce(MPI_IN_PLACE, values.data(), count_of(values.size()), MPI_DOUBLE,
                                    detail::mpi_op(op), comm_),
                      "MPI_Allreduce");
  }

  std::vector<std::byte> all_gather_bytes(std::span<const std::byte> mine,
                                          std::vector<std::int64_t>& counts) {
    counts.assign(static_cast<std::size_t>(size_), 0);
    std::int64_t n = static_cast<std::int64_t>(mine.size());
    detail::mpi_check(MPI_Allgather(&n, 1, MPI_INT64_T, counts.data(), 1, MPI_INT64_T, comm_),
                      "MPI_Allgather");
    std::vector<int> sizes(counts.size()), displs(counts.size());
    std::int64_t total = 0;
    for (std::size_t r = 0; r < counts.size(); ++r) {
      sizes[r] = count_of(static_cast<std::size_t>(counts[r]));
      xplor::detail::require(total <= INT_MAX, "xplor::dist::mpi_communicator::all_gather_bytes",
                             "the gathered data exceeds 2 GiB (MPI counts are int)");
      displs[r] = static_cast<int>(total);
      total += counts[r];
    }
    std::vector<std::byte> out(static_cast<std::size_t>(total));
    detail::mpi_check(MPI_Allgatherv(mine.data(), count_of(mine.size()), MPI_BYTE, out.data(), sizes.data(),
                                     displs.data(), MPI_BYTE, comm_),
                      "MPI_Allgatherv");
    return out;
  }

  void broadcast_bytes(std::span<std::byte> bytes, int root) {
    xplor::detail::require(root >= 0 && root < size_, "xplor::dist::mpi_communicator::broadcast_bytes",
                           "root = ", root, " is not a rank of a ", size_, "-rank communicator");
    detail::mpi_check(MPI_Bcast(bytes.data(), count_of(bytes.size()), MPI_BYTE, root, comm_), "MPI_Bcast");
  }

  /// Prints "rank R: why" to stderr and ends every rank of the job (MPI_Abort, exit code 1).
  [[noreturn]] void abort(std::string_view why) {
    std::fprintf(stderr, "xplor: rank %d of %d: %.*s\n", rank_, size_, static_cast<int>(why.size()),
                 why.data());
    std::fflush(stderr);
    MPI_Abort(comm_, 1);
    std::abort();  // MPI_Abort does not return; this keeps [[noreturn]] honest if it ever did
  }

 private:
  static int count_of(std::size_t n) {
    xplor::detail::require(n <= static_cast<std::size_t>(INT_MAX), "xplor::dist::mpi_communicator",
                           "a message of ", n, " elements exceeds MPI's int count");
    return static_cast<int>(n);
  }

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

static_assert(communicator<mpi_communicator>);

}  // namespace xplor::dist
