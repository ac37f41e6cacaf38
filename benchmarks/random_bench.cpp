// Philox4x32-10 throughput against std::mt19937, the generator most C++ code reaches for,
// measured in the same run. Counter-based generation also parallelises and jumps for free; this
// compares raw sequential throughput, where mt19937 is at its best.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>
#include <xplor/core/random.hpp>

namespace {
constexpr int kBatch = 4096;

void words_mt19937(benchmark::State& state) {
  std::mt19937 gen(42);
  std::vector<std::uint32_t> out(kBatch);
  for (auto _ : state) {
    for (auto& w : out) w = static_cast<std::uint32_t>(gen());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetLabel("baseline");
}

void words_philox_stream(benchmark::State& state) {
  xplor::philox_stream gen(42, 7);
  std::vector<std::uint32_t> out(kBatch);
  for (auto _ : state) {
    for (auto& w : out) w = gen();
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

// Random access by (stream, draw) as the sampler uses it: every block computed from scratch.
void words_philox_blocks(benchmark::State& state) {
  const xplor::philox_stream gen(42, 7);
  std::vector<std::uint32_t> out(kBatch);
  std::uint64_t draw = 0;
  for (auto _ : state) {
    for (int k = 0; k < kBatch; k += 4) {
      const auto b = gen.block(draw++);
      for (int w = 0; w < 4; ++w) out[k + w] = b[w];
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

void uniform_mt19937(benchmark::State& state) {
  std::mt19937 gen(42);
  std::uniform_real_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> out(kBatch);
  for (auto _ : state) {
    for (auto& u : out) u = dist(gen);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetLabel("baseline");
}

void uniform_philox(benchmark::State& state) {
  xplor::philox_stream gen(42, 7);
  std::vector<float> out(kBatch);
  for (auto _ : state) {
    for (auto& u : out) u = gen.uniform();
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

void normal_mt19937(benchmark::State& state) {
  std::mt19937 gen(42);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> out(kBatch);
  for (auto _ : state) {
    for (auto& z : out) z = dist(gen);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetLabel("baseline");
}

void normal_philox(benchmark::State& state) {
  xplor::philox_stream gen(42, 7);
  std::vector<float> out(kBatch);
  for (auto _ : state) {
    for (auto& z : out) z = gen.normal();
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
void normal_philox_pairs(benchmark::State& state) {
  xplor::philox_stream gen(42, 7);
  std::vector<float> out(kBatch);
  for (auto _ : state) {
    for (std::size_t k = 0; k < out.size(); k += 2) {
      const auto z = gen.normal_pair();
      out[k] = z[0];
      out[k + 1] = z[1];
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
}  // namespace

// Names are "<what>/<implementation>"; the summary compares each to the "baseline" of its group.
BENCHMARK(words_mt19937)->Name("u32_words/mt19937");
BENCHMARK(words_philox_stream)->Name("u32_words/philox_stream");
BENCHMARK(words_philox_blocks)->Name("u32_words/philox_block_by_counter");
BENCHMARK(uniform_mt19937)->Name("uniform_float/mt19937+uniform_real_distribution");
BENCHMARK(uniform_philox)->Name("uniform_float/philox_stream");
BENCHMARK(normal_mt19937)->Name("normal_float/mt19937+normal_distribution");
BENCHMARK(normal_philox)->Name("normal_float/philox_box_muller");
BENCHMARK(normal_philox_pairs)->Name("normal_float/philox_box_muller_pairs");
