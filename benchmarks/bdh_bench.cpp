// The Dragon Hatchling (BDH-GPU, arXiv 2509.26507) against the reference transformer at about
// equal parameter counts, in the same run (the transformer is the baseline): a training step
// (forward + backward) in tokens/s, a decode step of 8 forks in tokens/s, and the memory a
// decoding state holds after prompts of 64, 512 and 4096 tokens (counters: bytes of the prompt's
// state and bytes each fork adds after 16 tokens of its own).
// The models are rlvr_arithmetic's (--model transformer / bdh):
//   transformer: d_model 128, 3 layers, 4 heads, d_ff 384, vocab 259        (673,024 parameters)
//   BDH:         n_embd 128, 3 layers, 4 heads, multiplier 12 (N = 384)     (656,128 parameters)
// BDH reuses its weights in every layer, so at equal parameters it does about 3x the transformer's
// multiply-adds per token and layer (three D x H N products against the transformer's 10 D^2).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>
#include <xplor/model/bdh.hpp>
#include <xplor/model/bdh_decode.hpp>
#include <xplor/model/decode.hpp>
#include <xplor/model/transformer.hpp>

namespace {

namespace xm = xplor::model;

constexpr std::int64_t B = 8, T = 64, forks = 8, fork_tokens = 16;

xm::transformer_config transformer_config(int max_seq_len = 256) {
  xm::transformer_config c;
  c.vocab_size = 259;
  c.d_model = 128;
  c.n_layers = 3;
  c.n_heads = 4;
  c.d_ff = 384;
  c.max_seq_len = max_seq_len;
  return c;
}

xm::bdh_config bdh_config() { return xm::bdh_matching(transformer_config()); }

struct data {
  std::vector<std::int32_t> tokens, targets;
  explicit data(std::int64_t n) {
    std::mt19937 rng(3);
    for (std::int64_t i = 0; i < n; ++i) {
      tokens.push_back(static_cast<std::int32_t>(rng() % 256));
      targets.push_back(static_cast<std::int32_t>(rng() % 256));
    }
  }
  xm::forward_batch view() const { return {tokens, B, T, targets, {}, {}}; }
};

void transformer_train(benchmark::State& state) {
  xm::transformer m(transformer_config(), 1);
  const data d(B * T);
  for (auto _ : state) {
    m.zero_grad();
    benchmark::DoNotOptimize(m.forward(d.view()));
    m.backward();
  }
  state.SetItemsProcessed(state.iterations() * B * T);
  state.counters["params"] = double(m.num_params());
  state.SetLabel("baseline");
}

void bdh_train(benchmark::State& state) {
  xm::bdh m(bdh_config(), 1);
  const data d(B * T);
  for (auto _ : state) {
    m.zero_grad();
    benchmark::DoNotOptimize(m.forward(d.view()));
    m.backward();
  }
  state.SetItemsProcessed(state.iterations() * B * T);
  state.counters["params"] = double(m.num_params());
}

/// Per iteration: 8 forks of a 64-token prompt each decode 16 tokens, then are released.
template <class Model, class Decoder>
void decode(benchmark::State& state, const Model& m) {
  Decoder dec(m);
  const data d(T);
  const auto root = dec.begin(std::span<const std::int32_t>(d.tokens));
  std::vector<std::int32_t> next(static_cast<std::size_t>(forks));
  for (auto _ : state) {
    const auto ids = dec.fork(root, static_cast<int>(forks));
    for (std::int64_t t = 0; t < fork_tokens; ++t) {
      for (std::int64_t i = 0; i < forks; ++i) next[i] = static_cast<std::int32_t>((t * 7 + i) % 256);
      benchmark::DoNotOptimize(dec.step(ids, next).data());
    }
    dec.release(ids);
  }
  state.SetItemsProcessed(state.iterations() * forks * fork_tokens);
}

void transformer_decode(benchmark::State& state) {
  const xm::transformer m(transformer_config(), 1);
  decode<xm::transformer, xm::kv_decoder>(state, m);
  state.SetLabel("baseline");
}

void bdh_decode(benchmark::State& state) {
  const xm::bdh m(bdh_config(), 1);
  decode<xm::bdh, xm::bdh_decoder>(state, m);
}

/// Bytes after a prompt of range(0) tokens, and what each of 4 forks adds with 16 tokens of its own.
template <class Model, class Decoder>
void memory(benchmark::State& state, const Model& m) {
  const std::int64_t prompt_len = state.range(0);
  const data d(prompt_len);
  for (auto _ : state) {
    Decoder dec(m);
    const auto root = dec.begin(std::span<const std::int32_t>(d.tokens));
    const double root_bytes = double(dec.cache_bytes());
    const auto ids = dec.fork(root, 4);
    std::vector<std::int32_t> next(4, 1);
    for (std::int64_t t = 0; t < fork_tokens; ++t) dec.step(ids, next);
    state.counters["prompt_state_bytes"] = root_bytes;
    state.counters["bytes_per_fork"] = (double(dec.cache_bytes()) - root_bytes) / 4.0;
  }
}

void transformer_memory(benchmark::State& state) {
  const xm::transformer m(transformer_config(4096 + 64), 1);
  memory<xm::transformer, xm::kv_decoder>(state, m);
  state.SetLabel("baseline");
}

void bdh_memory(benchmark::State& state) {
  const xm::bdh m(bdh_config(), 1);
  memory<xm::bdh, xm::bdh_decoder>(state, m);
}

}  // namespace

BENCHMARK(transformer_train)
    ->Name("train_step_B8_T64/transformer")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(bdh_train)->Name("train_step_B8_T64/bdh")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(transformer_decode)
    ->Name("decode_8_forks_x16/transformer")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(bdh_decode)->Name("decode_8_forks_x16/bdh")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(transformer_memory)
    ->Name("fork_memory/transformer/prompt")
    ->Arg(64)
    ->Arg(512)
    ->Arg(4096)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(bdh_memory)
    ->Name("fork_memory/bdh/prompt")
    ->Arg(64)
    ->Arg(512)
    ->Arg(4096)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
