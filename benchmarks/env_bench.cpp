// Environment steps per second for 1024 parallel environments: vector_env stepping them serially
// in the caller's thread (threads = 1, the baseline) and on its worker pool (threads = 2, 4). The
// toy environment does a little real work per step: it parses the action as an integer, updates
// a running sum and formats an observation, as a small text task would.
#include <benchmark/benchmark.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>
#include <xplor/env/vector_env.hpp>

namespace {

using namespace xplor::env;

constexpr int kEnvs = 1024;

class sum_env : public environment {
 public:
  explicit sum_env(int history = 0) : history_(history) {}
  reset_result reset(std::uint64_t seed) override {
    sum_ = static_cast<std::int64_t>(seed % 100);
    turn_ = 0;
    reset_result r;
    r.observation = "Reach 1000 from ";
    r.observation += std::to_string(sum_);
    return r;
  }
  step_result step(std::string_view action) override {
    std::int64_t value = 0;
    std::from_chars(action.data(), action.data() + action.size(), value);
    sum_ += value;
    ++turn_;
    step_result r;
    r.observation = "turn ";
    r.observation += std::to_string(turn_);
    r.observation += ": the sum is now ";
    r.observation += std::to_string(sum_);
    r.observation += "; add another number.";
    // The heavier variant also lists the last `history_` partial sums (a longer text prompt).
    for (int k = 0; k < history_; ++k) {
      r.observation += k == 0 ? " History: " : ", ";
      r.observation += std::to_string(sum_ - k * value);
    }
    r.reward = sum_ >= 1000 ? 1.0f : 0.0f;
    r.terminated = sum_ >= 1000;
    r.truncated = turn_ >= 50;
    r.info["sum"] = std::to_string(sum_);
    return r;
  }
  std::unique_ptr<environment> clone() const override { return std::make_unique<sum_env>(*this); }
  std::string id() const override { return "bench:sum"; }

 private:
  std::int64_t sum_ = 0;
  int turn_ = 0, history_ = 0;
};

void env_steps(benchmark::State& state, int threads, int history) {
  vector_env v = vector_env::of(sum_env(history), kEnvs, {autoreset_mode::same_step, threads});
  v.reset(1);
  std::vector<std::string> actions(kEnvs);
  for (int i = 0; i < kEnvs; ++i) actions[i] = std::to_string(17 + i % 50);
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    auto r = v.step(actions);
    benchmark::DoNotOptimize(r.observations.data());
  }
  // Wall-clock rate: the benchmark's CPU time is the calling thread's only, without the workers.
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  state.counters["env_steps_per_s"] =
      static_cast<double>(kEnvs) * static_cast<double>(state.iterations()) / wall;
  if (threads == 1) state.SetLabel("baseline");
}

}  // namespace

BENCHMARK_CAPTURE(env_steps, sync, 1, 0)->Name("env_steps_1024/sync");
BENCHMARK_CAPTURE(env_steps, threads2, 2, 0)->Name("env_steps_1024/threads2");
BENCHMARK_CAPTURE(env_steps, threads4, 4, 0)->Name("env_steps_1024/threads4");
// The same with a 64-number history in every observation (about 15 times the work per step).
BENCHMARK_CAPTURE(env_steps, sync, 1, 64)->Name("env_steps_1024_history64/sync");
BENCHMARK_CAPTURE(env_steps, threads2, 2, 64)->Name("env_steps_1024_history64/threads2");
BENCHMARK_CAPTURE(env_steps, threads4, 4, 64)->Name("env_steps_1024_history64/threads4");
