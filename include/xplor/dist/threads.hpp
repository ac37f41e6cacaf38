// A communicator whose ranks are threads of one process: run_ranks(n, body) runs body(comm) on n
// threads, each with its own rank. It gives the distributed algorithms of dist/ a real multi-rank
// execution without MPI — the test suite checks them on 1 to 4 ranks this way, under the
// sanitizers too — and lets a user try a multi-rank program on one machine. Collectives exchange
// through shared slots between two barrier phases. abort() on one rank wakes every rank waiting
// in a collective with an xplor::error naming the rank and the reason, and run_ranks rethrows the
// first error after every thread has finished.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "xplor/dist/communicator.hpp"

namespace xplor::dist {

namespace detail {

/// What the ranks of one run_ranks call share.
struct thread_world {
  explicit thread_world(int n) : size(n), slots(static_cast<std::size_t>(n)) {}
  int size;
  std::vector<std::vector<std::byte>> slots;  // each rank's contribution to the current collective
  std::mutex m;
  std::condition_variable cv;
  int arrived = 0;
  std::uint64_t phase = 0;
  std::string aborted;  // non-empty once a rank aborted
  int origin = -1;      // the rank that aborted first

  /// Waits until every rank arrived; throws when a rank aborted.
  void barrier() {
    std::unique_lock lock(m);
    if (!aborted.empty()) throw error(aborted);
    const std::uint64_t my_phase = phase;
    if (++arrived == size) {
      arrived = 0;
      ++phase;
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return phase != my_phase || !aborted.empty(); });
    }
    if (!aborted.empty()) throw error(aborted);
  }
  void abort(int rank, std::string why) {
    {
      std::lock_guard lock(m);
      if (aborted.empty()) aborted = std::move(why), origin = rank;
    }
    cv.notify_all();
  }
};

}  // namespace detail

class thread_communicator {
 public:
  thread_communicator(detail::thread_world& world, int rank) : world_(&world), rank_(rank) {}

  int rank() const { return rank_; }
  int size() const { return world_->size; }

  void all_reduce(std::span<std::int64_t> values, reduce_op op) {
    reduce_by_gathering(*this, values, op, "xplor::dist::thread_communicator::all_reduce");
  }
  void all_reduce(std::span<double> values, reduce_op op) {
    reduce_by_gathering(*this, values, op, "xplor::dist::thread_communicator::all_reduce");
  }

  std::vector<std::byte> all_gather_bytes(std::span<const std::byte> mine,
                                          std::vector<std::int64_t>& counts) {
    world_->slots[static_cast<std::size_t>(rank_)].assign(mine.begin(), mine.end());
    world_->barrier();  // every slot written
    std::vector<std::byte> out;
    counts.clear();
    for (const auto& s : world_->slots) {
      out.insert(out.end(), s.begin(), s.end());
      counts.push_back(static_cast<std::int64_t>(s.size()));
    }
    world_->barrier();  // every slot read before the next collective writes
    return out;
  }

  void broadcast_bytes(std::span<std::byte> bytes, int root) {
    xplor::detail::require(root >= 0 && root < size(), "xplor::dist::thread_communicator::broadcast_bytes",
                           "root = ", root, " is not a rank of a ", size(), "-rank communicator");
    std::vector<std::int64_t> counts;
    const std::span<const std::byte> mine =
        rank_ == root ? std::span<const std::byte>(bytes) : std::span<const std::byte>{};
    const std::vector<std::byte> all = all_gather_bytes(mine, counts);
    xplor::detail::require(all.size() == bytes.size(), "xplor::dist::thread_communicator::broadcast_bytes",
                           "root sent ", all.size(), " bytes, this rank expects ", bytes.size());
    if (!all.empty()) std::memcpy(bytes.data(), all.data(), all.size());
  }

  /// Ends the collectives of every rank with an xplor::error "rank R of N: why".
  [[noreturn]] void abort(std::string_view why) {
    const std::string text =
        "rank " + std::to_string(rank_) + " of " + std::to_string(size()) + ": " + std::string(why);
    world_->abort(rank_, text);
    throw error(text);
  }

 private:
  detail::thread_world* world_;
  int rank_;
};

static_assert(communicator<thread_communicator>);

/// Runs body(comm) on `ranks` threads, one rank each; returns when all have finished and rethrows
/// the first exception a rank threw (an abort's error names the rank that aborted). A rank whose
/// body throws aborts the others, as MPI_Abort would, instead of leaving them in a collective.
inline void run_ranks(int ranks, const std::function<void(thread_communicator&)>& body) {
  xplor::detail::require(ranks >= 1, "xplor::dist::run_ranks", "ranks = ", ranks, " must be at least 1");
  detail::thread_world world(ranks);
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      thread_communicator comm(world, r);
      try {
        body(comm);
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
        world.abort(r, "rank " + std::to_string(r) + " of " + std::to_string(ranks) + ": " + e.what());
      }
    });
  for (auto& t : threads) t.join();
  // The rank that aborted first holds the cause; the others' errors are its consequences.
  if (world.origin >= 0) std::rethrow_exception(errors[static_cast<std::size_t>(world.origin)]);
}

}  // namespace xplor::dist
