// The REINFORCE + ReBN collector's overhead per transition: collecting 1024 episodes of a trivial
// 4-turn environment from 64 sub-environments with a trivial policy (4096 transitions, 64 vector
// steps), against stepping the same vector env directly for the same 64 steps with the same policy
// ("baseline": reset, policy call and vector step only). The difference is the collector's work:
// recording transitions (moving the observation and action strings), grouping them by episode,
// discounted returns and ReBN advantages. Single-threaded vector env (1 thread); the returns and
// ReBN on OpenMP's default threads ("collector") or serially ("collector_serial").
#include <benchmark/benchmark.h>

#include <memory>
#include <span>
#include <string>
#include <vector>
#include <xplor/env/reinforce.hpp>

namespace {

constexpr int kEnvs = 64, kTurns = 4, kEpisodes = 1024;
constexpr int kSteps = kEpisodes * kTurns / kEnvs;

class trivial_env final : public xplor::env::environment {
 public:
  xplor::env::reset_result reset(std::uint64_t) override {
    turn_ = 0;
    return {"start", {}};
  }
  xplor::env::step_result step(std::string_view) override {
    xplor::env::step_result r;
    r.observation = "next";
    r.reward = ++turn_ == kTurns ? 1.0f : 0.0f;
    r.terminated = turn_ == kTurns;
    return r;
  }
  std::unique_ptr<xplor::env::environment> clone() const override {
    return std::make_unique<trivial_env>(*this);
  }
  std::string id() const override { return "bench:trivial"; }

 private:
  int turn_ = 0;
};

std::vector<std::string> trivial_policy(std::span<const std::string> observations) {
  return std::vector<std::string>(observations.size(), "\\boxed{1}");
}

void baseline(benchmark::State& state) {
  auto envs = xplor::env::vector_env::of(trivial_env{}, kEnvs);
  for (auto _ : state) {
    auto obs = envs.reset(0).observations;
    for (int s = 0; s < kSteps; ++s) {
      const auto actions = trivial_policy(obs);
      auto r = envs.step(actions);
      obs = std::move(r.observations);
      benchmark::DoNotOptimize(r.rewards.data());
    }
  }
  state.SetItemsProcessed(state.iterations() * kEpisodes * kTurns);
  state.SetLabel("baseline");
}

void collector(benchmark::State& state, int exec_threads) {
  auto envs = xplor::env::vector_env::of(trivial_env{}, kEnvs);
  xplor::env::reinforce_options o;
  o.episodes = kEpisodes;
  o.gamma = 0.9f;
  o.exec.num_threads = exec_threads;
  xplor::env::reinforce_collector c(envs, o);
  for (auto _ : state) {
    auto batch = c.collect(trivial_policy, 0);
    if (batch.num_transitions() != kEpisodes * kTurns) state.SkipWithError("unexpected batch size");
    benchmark::DoNotOptimize(batch.advantages.data());
  }
  state.SetItemsProcessed(state.iterations() * kEpisodes * kTurns);
}

}  // namespace

BENCHMARK(baseline)->Name("collect_transitions/baseline")->Unit(benchmark::kMicrosecond);
// Returns and ReBN on OpenMP's default threads, and serially (exec.num_threads = 1).
BENCHMARK_CAPTURE(collector, omp, 0)->Name("collect_transitions/collector")->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(collector, serial, 1)
    ->Name("collect_transitions/collector_serial")
    ->Unit(benchmark::kMicrosecond);
