// The distributed exact knapsack against the single-process solver, in one MPI job:
//
//   mpiexec -n 4 build/release/benchmarks/bench_dist_knapsack [--tasks 10000000] [--repeats 3]
//
// Every rank draws its shard of the task set (success estimates in [0, 1], a tenth without an
// estimate) from the same Philox streams, so the tasks are the same whatever the rank count. The
// distributed allocation runs first (median time over --repeats, the ranks synchronised before
// each repeat; peak resident memory per rank afterwards), then rank 0 alone runs the
// single-process solver (budget::allocate_rollouts on xplor::cpu with one thread) on all tasks —
// its peak memory is rank 0's high-water mark after that run, which only the single run can
// raise that far — and checks that the allocations agree task for task. Prints a markdown table.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include <xplor/budget/knapsack_parallel.hpp>
#include <xplor/core/random.hpp>
#include <xplor/dist/knapsack.hpp>
#include <xplor/dist/mpi.hpp>

namespace {

double peak_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

/// Tasks [first, first + n) of the global set: p in [0, 1] (quantised, so ties occur), has = 0 for
/// about a tenth.
void draw_tasks(std::int64_t first, std::int64_t n, std::vector<double>& p, std::vector<std::uint8_t>& has) {
  p.resize(static_cast<std::size_t>(n));
  has.resize(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    xplor::philox_stream g(7, static_cast<std::uint64_t>(first + i));
    p[static_cast<std::size_t>(i)] = double(g() % 1001u) / 1000.0;
    has[static_cast<std::size_t>(i)] = g() % 10u != 0 ? 1 : 0;
  }
}

}  // namespace

int main(int argc, char** argv) {
  xplor::dist::mpi_session session(&argc, &argv);
  xplor::dist::mpi_communicator comm;
  std::int64_t tasks = 10'000'000;
  int repeats = 3;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--tasks") == 0) tasks = std::atoll(argv[i + 1]);
    if (std::strcmp(argv[i], "--repeats") == 0) repeats = std::atoi(argv[i + 1]);
  }
  xplor::dist::run_or_abort(comm, [&] {
    xplor::detail::require(tasks >= 1 && repeats >= 1, "bench_dist_knapsack", "--tasks ", tasks,
                           " and --repeats ", repeats, " must be positive");
    const std::int64_t per = tasks / comm.size(), first = per * comm.rank();
    const std::int64_t mine = comm.rank() == comm.size() - 1 ? tasks - first : per;
    const std::int64_t budget = tasks * 8;  // 8 rollouts per task on average
    xplor::budget::allocation_options o;
    o.n_max = 64;
    std::vector<double> p;
    std::vector<std::uint8_t> has;
    draw_tasks(first, mine, p, has);
    std::vector<int> out(static_cast<std::size_t>(mine));
    std::vector<double> times;
    for (int r = 0; r < repeats; ++r) {
      std::int64_t sync = 0;
      comm.all_reduce(std::span<std::int64_t>(&sync, 1), xplor::dist::reduce_op::sum);
      const auto t0 = std::chrono::steady_clock::now();
      xplor::dist::allocate_rollouts(comm, std::span<const double>(p), std::span<const std::uint8_t>(has),
                                     budget, std::span<int>(out), o);
      double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      comm.all_reduce(std::span<double>(&dt, 1), xplor::dist::reduce_op::max);  // the slowest rank's time
      times.push_back(dt);
    }
    std::sort(times.begin(), times.end());
    const double dist_time = times[times.size() / 2];
    double peak = peak_mib(), peak_max = peak;
    comm.all_reduce(std::span<double>(&peak_max, 1), xplor::dist::reduce_op::max);
    const std::vector<int> all_out = xplor::dist::all_gather(comm, std::span<const int>(out));
    if (comm.rank() != 0) return;
    std::vector<double> p_all;
    std::vector<std::uint8_t> has_all;
    draw_tasks(0, tasks, p_all, has_all);
    std::vector<int> single(static_cast<std::size_t>(tasks));
    std::vector<double> single_times;
    for (int r = 0; r < repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      xplor::budget::allocate_rollouts(xplor::cpu_t{1}, std::span<const double>(p_all),
                                       std::span<const std::uint8_t>(has_all), budget, std::span<int>(single),
                                       o);
      single_times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(single_times.begin(), single_times.end());
    const double single_time = single_times[single_times.size() / 2];
    const bool equal = all_out == single;
    std::printf(
        "| solver | ranks | tasks | median time (s) | peak memory per rank (MiB) "
        "|\n|---|---:|---:|---:|---:|\n");
    std::printf("| single process (xplor::cpu, 1 thread) | 1 | %lld | %.3f | %.0f |\n",
                static_cast<long long>(tasks), single_time, peak_mib());
    std::printf(
        "| dist::allocate_rollouts (MPI) | %d | %lld | %.3f | %.0f (rank 0 before the single run: %.0f) |\n",
        comm.size(), static_cast<long long>(tasks), dist_time, peak_max, peak);
    std::printf("\nspeed-up %.2fx; allocations %s\n", single_time / dist_time,
                equal ? "equal task for task" : "DIFFER");
    if (!equal) std::exit(1);
  });
  return 0;
}
