// The reference transformer's speed. Training steps (forward + backward + AdamW) at a small shape
// and at GPT-2 small's shape report tokens/s and achieved GFLOP/s (6 x parameters x tokens / time)
// next to Eigen's rate for one matrix product of the model's main shape (tokens x d_model times
// d_model x 4 d_model), measured in the same process just before. Decoding reports the KV cache
// against recomputing the prefix, and the cache memory of 512 forks against 512 separate states.
// Run with OMP_NUM_THREADS=1 and =2 (scripts/run_benchmarks.sh does both).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>
#include <vector>
#include <xplor/model/decode.hpp>
#include <xplor/model/optim.hpp>
#include <xplor/model/transformer.hpp>

using namespace xplor::model;

namespace {

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Eigen's FLOP/s for Y[N, F] = X[N, C] W[F, C]^T (the MLP's first product), best of a few runs.
double gemm_flops_per_second(std::int64_t N, std::int64_t C, std::int64_t F) {
  const row_matrix X = row_matrix::Random(N, C), W = row_matrix::Random(F, C);
  row_matrix Y(N, F);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    int iters = 0;
    double elapsed = 0;
    do {
      Y.noalias() = X * W.transpose();
      benchmark::DoNotOptimize(Y.data());
      ++iters;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } while (elapsed < 0.2);
    best = std::max(best, 2.0 * double(N * C * F) * iters / elapsed);
  }
  return best;
}

/// xplor's previous forward product, the baseline: Eigen's packed product over fixed tiles of up
/// to 128 x 128 outputs (so that the bits did not depend on the thread count).
template <class F>
void tiles(std::int64_t rows, std::int64_t cols, std::int64_t depth, F f) {
  constexpr std::int64_t tile = 128;
  const std::int64_t tr = (rows + tile - 1) / tile, tc = (cols + tile - 1) / tile;
  dense::thread_independent_for(tr * tc, double(rows) * double(cols) * double(depth), [&](std::int64_t t) {
    const std::int64_t r0 = t / tc * tile, c0 = t % tc * tile;
    f(r0, std::min(tile, rows - r0), c0, std::min(tile, cols - c0));
  });
}

/// y = x W^T for n rows through the Eigen baseline (kernel 0), xplor's streamed kernel (1) or its packed
/// kernel (2): W is GPT-2 small's MLP up-projection (768 -> 3072, 9 MiB, from L3) or its unembedding
/// (768 -> 50257, 147 MiB, from memory).
void linear_rows(benchmark::State& state) {
  const std::int64_t n = state.range(0), in = 768, out = state.range(1), kernel = state.range(2);
  const row_matrix X = row_matrix::Random(n, in), W = row_matrix::Random(out, in);
  row_matrix Y(n, out);
  for (auto _ : state) {
    if (kernel != 0)
      dense::linear_forward(X.data(), W.data(), Y.data(), n, in, out, false,
                            kernel == 1 ? dense::forward_kernel::streamed : dense::forward_kernel::packed);
    else
      tiles(n, out, in, [&](std::int64_t r0, std::int64_t nr, std::int64_t c0, std::int64_t nc) {
        Y.block(r0, c0, nr, nc).noalias() = X.middleRows(r0, nr) * W.middleRows(c0, nc).transpose();
      });
    benchmark::DoNotOptimize(Y.data());
  }
  state.counters["GFLOPs"] = benchmark::Counter(
      2.0 * double(n * in * out) * double(state.iterations()) * 1e-9, benchmark::Counter::kIsRate);
  state.counters["weight_GBps"] = benchmark::Counter(
      4.0 * double(in * out) * double(state.iterations()) * 1e-9, benchmark::Counter::kIsRate);
  state.SetLabel(kernel == 0 ? "baseline" : kernel == 1 ? "streamed" : "packed");
}

void train_step(benchmark::State& state, transformer_config c, std::int64_t B, std::int64_t T,
                dense::forward_kernel kernel = dense::forward_kernel::packed) {
  transformer model(c, 1);
  model.set_forward_kernel(kernel);
  adamw opt(model.layout());
  std::mt19937 rng(1);
  std::vector<std::int32_t> tokens(B * T), targets(B * T);
  for (auto& t : tokens) t = static_cast<std::int32_t>(rng() % c.vocab_size);
  for (auto& t : targets) t = static_cast<std::int32_t>(rng() % c.vocab_size);
  const double gemm = gemm_flops_per_second(B * T, c.d_model, 4 * c.d_model);
  auto step = [&] {
    model.zero_grad();
    benchmark::DoNotOptimize(model.forward({tokens, B, T, targets, {}, {}}));
    model.backward();
    opt.step(model.params(), model.grads(), 1e-4f);
  };
  step();  // warm-up, as the PyTorch side does: the activations' first allocation and page faults
  for (auto _ : state) step();
  const double tokens_done = double(state.iterations()) * double(B * T);
  state.counters["tokens_per_s"] = benchmark::Counter(tokens_done, benchmark::Counter::kIsRate);
  state.counters["model_GFLOPs"] =
      benchmark::Counter(6.0 * double(model.num_params()) * tokens_done * 1e-9, benchmark::Counter::kIsRate);
  state.counters["gemm_GFLOPs"] = gemm * 1e-9;
  state.SetItemsProcessed(static_cast<std::int64_t>(tokens_done));
}

void train_step_small(benchmark::State& state) {
  transformer_config c;
  c.vocab_size = 256;
  c.d_model = 128;
  c.n_layers = 4;
  c.n_heads = 4;
  c.d_ff = 512;
  c.max_seq_len = 128;
  train_step(state, c, 16, 128);
}

transformer_config gpt2_small() {
  transformer_config c;  // GPT-2 small: 124M parameters with tied embeddings
  c.vocab_size = 50257;
  c.d_model = 768;
  c.n_layers = 12;
  c.n_heads = 12;
  c.d_ff = 3072;
  c.max_seq_len = 1024;
  c.norm = norm_kind::layernorm;
  c.positions = position_kind::learned;
  c.mlp = mlp_kind::gelu;
  return c;
}

void train_step_gpt2_small(benchmark::State& state) { train_step(state, gpt2_small(), 4, 64); }
void train_step_gpt2_small_streamed(benchmark::State& state) {
  train_step(state, gpt2_small(), 4, 64, dense::forward_kernel::streamed);
}

/// GPT-2 small decoding as tools/torch_decode_bench.py times it in PyTorch: `streams` completions
/// of 128 tokens after 64-token prompts (one prompt forked, or separate prompts), the time from the
/// first prefill to the last step's logits; tokens/s counts the generated tokens.
void decode_gpt2(benchmark::State& state, int streams, bool forked) {
  const transformer model(gpt2_small(), 1);
  constexpr int prompt_len = 64, new_tokens = 128;
  std::mt19937 rng(2);
  std::vector<std::vector<std::int32_t>> prompts(forked ? 1 : streams, std::vector<std::int32_t>(prompt_len));
  for (auto& p : prompts)
    for (auto& t : p) t = static_cast<std::int32_t>(rng() % 50257);
  std::vector<std::int32_t> next(static_cast<std::size_t>(streams));
  auto run = [&] {
    kv_decoder dec(model);
    std::vector<kv_decoder::state_id> ids;
    if (forked) {
      const auto root = dec.begin(prompts[0]);
      ids = streams == 1 ? std::vector{root} : dec.fork(root, streams);
    } else {
      ids = dec.begin(prompts);  // one batched prefill
    }
    auto logits = dec.logits(ids);
    for (int t = 0; t < new_tokens; ++t) {
      for (int i = 0; i < streams; ++i)  // greedy: the same work as sampling, no randomness to match
        next[i] = static_cast<std::int32_t>(
            std::max_element(logits.data() + i * logits.cols(), logits.data() + (i + 1) * logits.cols()) -
            (logits.data() + i * logits.cols()));
      logits = dec.step(ids, next);
    }
    benchmark::DoNotOptimize(logits.data());
  };
  run();  // warm-up, as the PyTorch side does
  for (auto _ : state) run();
  state.counters["tokens_per_s"] =
      benchmark::Counter(double(state.iterations()) * streams * new_tokens, benchmark::Counter::kIsRate);
}
void decode_gpt2_one(benchmark::State& state) { decode_gpt2(state, 1, true); }
void decode_gpt2_forks(benchmark::State& state) { decode_gpt2(state, 16, true); }
void decode_gpt2_prompts(benchmark::State& state) { decode_gpt2(state, 16, false); }

transformer_config decode_config() {
  transformer_config c;
  c.vocab_size = 256;
  c.d_model = 128;
  c.n_layers = 4;
  c.n_heads = 4;
  c.d_ff = 512;
  c.max_seq_len = 256;
  return c;
}

/// 255 tokens after a 1-token prompt with the KV cache.
void decode_kv_cache(benchmark::State& state) {
  const transformer model(decode_config(), 1);
  const std::int32_t tok = 7;
  for (auto _ : state) {
    kv_decoder dec(model);
    const auto s = dec.begin(std::span(&tok, 1));
    for (int t = 1; t < 256; ++t)
      benchmark::DoNotOptimize(dec.step(std::span(&s, 1), std::span(&tok, 1)).data());
  }
  state.SetItemsProcessed(state.iterations() * 255);
  state.SetLabel("KV cache");
}

/// The same 255 tokens, each by a full forward over the whole prefix (no cache).
void decode_recompute(benchmark::State& state) {
  transformer model(decode_config(), 1);
  const std::vector<std::int32_t> seq(256, 7);
  for (auto _ : state)
    for (int t = 2; t <= 256; ++t)
      benchmark::DoNotOptimize(model.forward({std::span(seq).first(t), 1, t, {}, {}, {}}));
  state.SetItemsProcessed(state.iterations() * 255);
  state.SetLabel("baseline");
}

/// 512 completions of 16 tokens after one 128-token prompt: forked states against separate ones.
void decode_forks(benchmark::State& state, bool fork) {
  const transformer model(decode_config(), 1);
  const std::vector<std::int32_t> prompt(128, 3), toks(512, 5);
  std::int64_t bytes = 0;
  for (auto _ : state) {
    kv_decoder dec(model);
    std::vector<kv_decoder::state_id> ids;
    if (fork) {
      ids = dec.fork(dec.begin(prompt), 512);
    } else {
      for (int i = 0; i < 512; ++i) ids.push_back(dec.begin(prompt));
    }
    for (int t = 0; t < 16; ++t) benchmark::DoNotOptimize(dec.step(ids, toks).data());
    bytes = dec.cache_bytes();
  }
  state.counters["cache_MiB"] = double(bytes) / (1 << 20);
  state.SetItemsProcessed(state.iterations() * 512 * 16);
  if (!fork) state.SetLabel("baseline");
}
void decode_512_forks(benchmark::State& state) { decode_forks(state, true); }
void decode_512_separate(benchmark::State& state) { decode_forks(state, false); }

}  // namespace

BENCHMARK(linear_rows)
    ->Name("linear_forward")
    ->ArgNames({"rows", "out", "kernel"})
    ->ArgsProduct({{1, 4, 16, 64, 256}, {64, 3072, 50257}, {0, 1, 2}})
    ->UseRealTime();
BENCHMARK(train_step_small)
    ->Name("train_step/d128_L4_T128_B16")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(train_step_gpt2_small)
    ->Name("train_step/gpt2_small_T64_B4")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(train_step_gpt2_small_streamed)
    ->Name("train_step/gpt2_small_T64_B4_streamed")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(decode_gpt2_one)->Name("decode_gpt2_small/1_state")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(decode_gpt2_forks)
    ->Name("decode_gpt2_small/16_forks")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(decode_gpt2_prompts)
    ->Name("decode_gpt2_small/16_prompts")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(decode_recompute)
    ->Name("decode_T256/recompute_prefix")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(decode_kv_cache)->Name("decode_T256/kv_cache")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(decode_512_separate)
    ->Name("decode_512x16_after_128/separate_states")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(decode_512_forks)
    ->Name("decode_512x16_after_128/forked_states")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
