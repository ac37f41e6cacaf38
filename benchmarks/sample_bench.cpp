// Sampling speed. (1) Processing + drawing 512 rows of a 50,257-token vocabulary with top-p 0.9
// against the sorted definition (a full sort per row), and plain temperature sampling against one
// read of the same logits (the memory-bandwidth floor of any sampler). (2) Rollouts of the
// reference transformer: N completions for 8 prompts with and without prefix sharing, and the
// peak KV-cache memory.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>
#include <xplor/model/decode.hpp>
#include <xplor/sample/processors.hpp>
#include <xplor/sample/rollout.hpp>

using namespace xplor::sample;

namespace {

constexpr std::int64_t kRows = 512, kVocab = 50257;

struct rows {
  std::vector<float> logits;
  std::vector<std::uint64_t> streams, draws;
  rows() : logits(kRows * kVocab), streams(kRows), draws(kRows, 0) {
    std::mt19937 rng(1);
    // Zipf-like logits, as a language model's: a few likely tokens, a long tail.
    for (std::int64_t r = 0; r < kRows; ++r)
      for (std::int64_t v = 0; v < kVocab; ++v)
        logits[r * kVocab + v] = -1.1f * std::log(1.0f + float((v * 7919 + r * 104729) % kVocab)) +
                                 std::normal_distribution<float>(0.0f, 0.5f)(rng);
    for (std::int64_t r = 0; r < kRows; ++r) streams[r] = xplor::stream_id(0, static_cast<std::uint32_t>(r));
  }
};
rows& data() {
  static rows d;
  return d;
}

void run_sample_rows(benchmark::State& state, const sampling_params& p) {
  auto& d = data();
  std::vector<std::int32_t> tokens(kRows);
  std::vector<float> lp(kRows);
  for (auto _ : state) {
    sample_rows(xplor::cpu_t{1}, xplor::as_view2d(std::as_const(d.logits), kRows, kVocab), p,
                {1, d.streams, d.draws}, {tokens, lp, {}});
    benchmark::DoNotOptimize(tokens.data());
  }
  state.SetItemsProcessed(state.iterations() * kRows);
  state.SetBytesProcessed(state.iterations() * kRows * kVocab * static_cast<std::int64_t>(sizeof(float)));
}

void top_p_quickselect(benchmark::State& state) {
  sampling_params p;
  p.top_p = 0.9f;
  run_sample_rows(state, p);
}

void top_p_full_sort(benchmark::State& state) {
  auto& d = data();
  sampling_params p;
  p.top_p = 0.9f;
  std::vector<float> out(kVocab);
  std::vector<std::int32_t> tokens(kRows);
  for (auto _ : state) {
    for (std::int64_t r = 0; r < kRows; ++r) {
      reference::process_logits_sorted(std::span<const float>(d.logits).subspan(r * kVocab, kVocab), p, out);
      const auto words = xplor::philox_stream(1, d.streams[r]).block(0);
      tokens[r] = kernels::draw_row(out.data(), kVocab, xplor::uniform_double(words[0], words[1]));
    }
    benchmark::DoNotOptimize(tokens.data());
  }
  state.SetItemsProcessed(state.iterations() * kRows);
  state.SetLabel("baseline");
}

void temperature_only(benchmark::State& state) {
  sampling_params p;
  p.temperature = 0.7f;
  run_sample_rows(state, p);
}

void one_read_of_the_rows(benchmark::State& state) {
  auto& d = data();
  for (auto _ : state) {
    float m = 0.0f;
    for (float x : d.logits) m = x > m ? x : m;  // one pass, vectorised
    benchmark::DoNotOptimize(m);
  }
  state.SetItemsProcessed(state.iterations() * kRows);
  state.SetBytesProcessed(state.iterations() * kRows * kVocab * static_cast<std::int64_t>(sizeof(float)));
  state.SetLabel("baseline");
}

/// kv_decoder that records the peak cache memory it held.
struct metered_decoder : xplor::model::kv_decoder {
  using kv_decoder::kv_decoder;
  std::int64_t peak = 0;
  xplor::view2d<const float> step(std::span<const state_id> s, std::span<const std::int32_t> t) {
    auto out = kv_decoder::step(s, t);
    peak = std::max(peak, cache_bytes());
    return out;
  }
};

void rollouts(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const bool share = state.range(1) != 0;
  xplor::model::transformer_config c;
  c.vocab_size = 259;
  c.d_model = 128;
  c.n_layers = 4;
  c.n_heads = 4;
  c.d_ff = 512;
  c.max_seq_len = 128;
  const xplor::model::transformer model(c, 1);
  std::vector<std::vector<std::int32_t>> prompts(8);
  for (int i = 0; i < 8; ++i)
    for (int t = 0; t < 64; ++t) prompts[i].push_back((i * 31 + t * 7) % 256);
  const std::vector<int> counts{n};
  sampling_params p;
  p.max_completion_length = 16;
  std::int64_t tokens = 0, peak = 0;
  for (auto _ : state) {
    metered_decoder dec(model);
    const auto batch =
        generate(dec, std::span<const std::vector<std::int32_t>>(prompts), std::span<const int>(counts), p, 7,
                 {.chunk_size = 64, .share_prefix = share});
    tokens += static_cast<std::int64_t>(batch.tokens.size());
    peak = dec.peak;
  }
  state.counters["tokens_per_s"] = benchmark::Counter(double(tokens), benchmark::Counter::kIsRate);
  state.counters["peak_cache_MiB"] = double(peak) / (1 << 20);
  state.SetItemsProcessed(tokens);
  if (!share) state.SetLabel("baseline");
}

}  // namespace

BENCHMARK(top_p_full_sort)
    ->Name("top_p0.9_512x50257/full_sort")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(top_p_quickselect)
    ->Name("top_p0.9_512x50257/quickselect")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(one_read_of_the_rows)
    ->Name("temperature_512x50257/one_read")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(temperature_only)
    ->Name("temperature_512x50257/sample")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(rollouts)
    ->Name("rollouts_8_prompts")
    ->ArgsProduct({{16, 128, 512}, {0, 1}})
    ->ArgNames({"N", "share_prefix"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);
