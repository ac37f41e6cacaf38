// The multi-rank scenarios of tests/dist/scenarios.hpp under MPI (run by CTest through mpiexec on
// 1, 2 and 4 ranks). Exit 0 and "dist_mpi: ok" on rank 0 when every scenario matches the
// single-process result on every rank. `--abort-at R` makes rank R fail in the middle of the run
// inside run_or_abort: the job must end on every rank with that rank's message (MPI_Abort).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <xplor/dist/mpi.hpp>

#include "scenarios.hpp"

int main(int argc, char** argv) {
  xplor::dist::mpi_session session(&argc, &argv);
  xplor::dist::mpi_communicator comm;
  int abort_at = -1;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--abort-at") == 0) abort_at = std::atoi(argv[i + 1]);
  xplor::dist::run_or_abort(comm, [&] {
    if (abort_at >= 0) {
      dist_scenarios::collectives(comm, 1);
      if (comm.rank() == abort_at) throw std::runtime_error("a simulated failure in the middle of the run");
      dist_scenarios::collectives(comm, 2);  // the others wait here; MPI_Abort must end them
      return;
    }
    const std::pair<const char*, std::function<void()>> checks[] = {
        {"collectives", [&] { dist_scenarios::collectives(comm, 3); }},
        {"knapsack",
         [&] { dist_scenarios::knapsack(comm, 17 + static_cast<std::uint64_t>(comm.size()), 30); }},
        {"advantages", [&] { dist_scenarios::advantages(comm, 4); }},
        {"tracker", [&] { dist_scenarios::tracker(comm, 6); }},
        {"search", [&] { dist_scenarios::search(comm, 9); }},
        {"bad input", [&] { dist_scenarios::bad_probability(comm); }},
    };
    // A mismatch on one rank leaves the others in the scenario's next collective: it ends the
    // job (run_or_abort) with the scenario's name rather than a hang.
    for (const auto& [name, check] : checks) {
      try {
        check();
      } catch (const dist_scenarios::mismatch& e) {
        throw std::runtime_error(std::string(name) + ": " + e.what());
      }
    }
  });
  if (comm.rank() == 0) std::printf("dist_mpi: ok on %d ranks\n", comm.size());
  return 0;
}
