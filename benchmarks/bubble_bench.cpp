// Thoughtbubbles (arXiv 2510.00219): a training step (forward + backward) of a bubble model at
// stream budgets 1x, 1.5x and 2x the tokens against the plain transformer of the same shapes
// (the baseline), in the same run: tokens/s, streams per token and the activation memory each
// extra stream costs. d_model 128, 4 layers, fork layers before blocks 1 and 2, B = 8, T = 64.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>
#include <xplor/bubble/model.hpp>
#include <xplor/model/transformer.hpp>

namespace {

namespace xb = xplor::bubble;
namespace xm = xplor::model;

constexpr std::int64_t B = 8, T = 64;

xm::transformer_config config() {
  xm::transformer_config c;
  c.vocab_size = 259;
  c.d_model = 128;
  c.n_layers = 4;
  c.n_heads = 4;
  c.d_ff = 512;
  c.max_seq_len = T;
  return c;
}

struct data {
  std::vector<std::int32_t> tokens, targets;
  data() {
    std::mt19937 rng(3);
    for (std::int64_t i = 0; i < B * T; ++i) {
      tokens.push_back(static_cast<std::int32_t>(rng() % 256));
      targets.push_back(static_cast<std::int32_t>(rng() % 256));
    }
  }
  xm::forward_batch view() const { return {tokens, B, T, targets, {}, {}}; }
};

void plain_step(benchmark::State& state) {
  xm::transformer m(config(), 1);
  const data d;
  for (auto _ : state) {
    m.zero_grad();
    benchmark::DoNotOptimize(m.forward(d.view()));
    m.backward();
  }
  state.SetItemsProcessed(state.iterations() * B * T);
  state.SetLabel("baseline");
}

/// max_block_size = range(0) / 100 * T: 100 (no extra streams, but gates and the score channel),
/// 150, 200.
void bubble_step(benchmark::State& state) {
  xb::bubble_config bc;
  bc.plan = {xb::layer_kind::regular, xb::layer_kind::fork, xb::layer_kind::fork, xb::layer_kind::regular};
  bc.block_size = T;
  bc.max_block_size = state.range(0) * T / 100;
  xb::transformer m(config(), bc, 1);
  const data d;
  for (auto _ : state) {
    m.zero_grad();
    benchmark::DoNotOptimize(m.forward(d.view()));
    m.backward();
  }
  state.SetItemsProcessed(state.iterations() * B * T);
  const double extra = double(m.streams(3) - B * T);
  state.counters["streams_per_token"] = double(m.streams(3)) / double(B * T);
  state.counters["activation_MB"] = double(m.activation_bytes()) / 1e6;
  if (extra > 0) {
    // Against the 1x model's activations: what one more stream in the last blocks costs.
    xb::bubble_config one = bc;
    one.max_block_size = T;
    xb::transformer base(config(), one, 1);
    base.forward(d.view());
    state.counters["bytes_per_extra_stream"] = double(m.activation_bytes() - base.activation_bytes()) / extra;
  }
}

}  // namespace

BENCHMARK(plain_step)->Name("train_step_d128_L4_B8_T64/plain")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bubble_step)
    ->Name("train_step_d128_L4_B8_T64/bubble_budget_percent")
    ->Arg(100)
    ->Arg(150)
    ->Arg(200)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
