// MemGen (arXiv 2509.24704) decoding: tokens/s of memory::generate with the weaver's latents
// woven in (the prompt end and the first 3 delimiters, K = 8) against the same driver without
// insertion points (the baseline), and appending the latents' keys and values (xplor's way)
// against dropping the cache after each insertion and prefilling the whole context again (the
// authors' way), in the same run. Reasoner d_model 128, 4 layers; 16 prompts of 32 tokens,
// 64 new tokens each, one sample per prompt.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>
#include <xplor/memory/generate.hpp>
#include <xplor/model/transformer.hpp>

namespace {

namespace xm = xplor::model;
namespace mem = xplor::memory;

constexpr int prompts_n = 16, prompt_len = 32, new_tokens = 64;

xm::transformer_config config() {
  xm::transformer_config c;
  c.vocab_size = 259;
  c.d_model = 128;
  c.n_layers = 4;
  c.n_heads = 4;
  c.d_ff = 512;
  c.max_seq_len = 160;
  return c;
}

std::vector<std::vector<std::int32_t>> prompts() {
  std::mt19937 rng(7);
  std::vector<std::vector<std::int32_t>> out(prompts_n);
  for (auto& p : out)
    for (int i = 0; i < prompt_len; ++i) p.push_back(static_cast<std::int32_t>(rng() % 256));
  return out;
}

/// mode 0: no insertion points; 1: insertions, latents appended; 2: insertions, recompute.
void decode(benchmark::State& state) {
  const int mode = static_cast<int>(state.range(0));
  const xm::transformer reasoner(config(), 1);
  mem::memgen_config cfg;
  cfg.prompt_augment = mode != 0;
  cfg.max_inference_aug = mode != 0 ? 3 : 0;
  for (std::int32_t d = 0; d < 256; d += 8) cfg.delimiters.push_back(d);  // one token in 8
  mem::memgen m(reasoner, cfg, 2);
  mem::generation_options opt;
  opt.sampling.max_completion_length = new_tokens;
  opt.recompute_after_insertion = mode == 2;
  const auto ps = prompts();
  double insertions = 0;
  for (auto _ : state) {
    const auto rs = mem::generate(m, ps, 1, opt);
    insertions = 0;
    for (const auto& r : rs) insertions += static_cast<double>(r.seq.points.size());
    benchmark::DoNotOptimize(rs.data());
  }
  state.SetItemsProcessed(state.iterations() * prompts_n * new_tokens);
  state.counters["insertions_per_sequence"] = insertions / prompts_n;
  if (mode == 0) state.SetLabel("baseline");
}

}  // namespace

BENCHMARK(decode)
    ->Name("memgen_decode_d128_L4_16x64/mode")
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
