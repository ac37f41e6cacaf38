// DeepSearch (arXiv 2509.25454). (1) Global frontier selection on a synthetic tree of a million
// nodes: one operation = a backup from a terminal node plus the selection of the next node to
// expand, with the incremental segment-tree frontier against a full scan of the tree (the
// reference code's way), in the same run. (2) The search with the reference transformer behind
// the KV-cache decoder: tokens (and nodes) generated per second, next to plain rollouts of the
// same model (sample::generate), so the ratio is the cost of the tree bookkeeping and the
// smaller decode batches of the search. (3) Selection + backup over B = 1024 trees of 4096 nodes:
// the batched drivers of tree_batch.hpp (one call for all trees, 1 and 2 threads) against B calls
// of the single-tree code, on the same trees and the same calls. (4) 16 prompts searched with the
// reference transformer: in lockstep (deep_search_lockstep: one decode batch for all prompts'
// expansions) against one search per prompt on worker threads (deep_search_batch), 1 and 2 threads.
#include <benchmark/benchmark.h>

#include <xplor/core/config.hpp>
#if XPLOR_HAS_OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <cstdint>
#include <random>
#include <span>
#include <vector>
#include <xplor/model/decode.hpp>
#include <xplor/model/transformer.hpp>
#include <xplor/sample/rollout.hpp>
#include <xplor/search/deep_search.hpp>
#include <xplor/search/tree.hpp>
#include <xplor/search/tree_batch.hpp>

#include "forest.hpp"

namespace {

namespace xs = xplor::search;

constexpr int width = 8;

/// A random tree of `n` nodes (breadth first, up to 8 children, a third of them terminal, at
/// most depth 64) with every node's frontier score in the index; the terminal nodes to back up.
struct synthetic {
  xs::tree t;
  xs::frontier_index f;
  std::vector<std::int32_t> leaves;
  xs::frontier_params p;
  explicit synthetic(std::int32_t n) : t(n), f(n) {
    std::mt19937 gen(5);
    std::vector<std::int32_t> open{xs::root_index};
    for (std::size_t head = 0; t.size() < n && head < open.size(); ++head) {
      const std::int32_t parent = open[head];
      const int k = 1 + static_cast<int>(gen() % width);
      for (int c = 0; c < k && t.size() < n; ++c) {
        const bool terminal = gen() % 3 == 0 || t.depth(parent) + 1 >= 64;
        const auto id = t.add_child(parent, 0.5 + 0.001 * static_cast<double>(gen() % 1000), terminal);
        (terminal ? leaves : open).push_back(id);
      }
    }
    for (std::int32_t i = 0; i < t.size(); ++i) xs::rescore_after_backup(t, f, i, width, p);
  }
  double score(std::int32_t i) const {
    if (i == xs::root_index || t.terminal(i) || t.children(i) >= width) return xs::frontier_index::neg_inf;
    return xs::frontier_score(t.q(t.parent(i)), t.q(i), t.mean_entropy(i), t.depth(i), p);
  }
};

void frontier(benchmark::State& state, bool incremental) {
  synthetic s(1 << 20);
  std::mt19937 gen(9);
  std::int64_t ops = 0;
  std::int32_t chosen = xs::no_node;
  for (auto _ : state) {
    const std::int32_t leaf = s.leaves[gen() % s.leaves.size()];
    s.t.backup(leaf, gen() % 2 ? 1.0 : -1.0);
    if (incremental) {
      xs::rescore_after_backup(s.t, s.f, leaf, width, s.p);
      chosen = s.f.best();
    } else {
      double best = xs::frontier_index::neg_inf;
      for (std::int32_t i = 1; i < s.t.size(); ++i) {
        const double x = s.score(i);
        if (x > best) best = x, chosen = i;
      }
    }
    benchmark::DoNotOptimize(chosen);
    ++ops;
  }
  state.SetItemsProcessed(ops);
  state.counters["nodes"] = double(s.t.size());
  if (!incremental) state.SetLabel("baseline");
}
void frontier_full_scan(benchmark::State& state) { frontier(state, false); }
void frontier_incremental(benchmark::State& state) { frontier(state, true); }

/// The B = 1024 trees of forest.hpp, as single trees and as one tree_batch on the CPU.
struct cpu_forest {
  xs::tree_batch<xplor::cpu_t> batch{xplor::cpu, xplor::bench::forest::B, xplor::bench::forest::capacity};
  xplor::bench::forest f{[this](const auto& parent, const auto& count, const auto& h, const auto& term) {
    xs::add_children(xplor::cpu, batch, parent, count, h, term, xplor::bench::forest::width);
  }};
  static cpu_forest& get() {
    static cpu_forest f;
    return f;
  }
};

void trees_single_calls(benchmark::State& state) {
  auto& f = cpu_forest::get().f;
  std::vector<std::int32_t> next(f.B);
  std::size_t s = 0;
  std::int64_t trees = 0;
  for (auto _ : state) {
    f.single_step(s, next);
    benchmark::DoNotOptimize(next.data());
    s = (s + 1) % f.steps;
    trees += f.B;
  }
  state.SetItemsProcessed(trees);
  state.SetLabel("baseline");
}

void trees_batched(benchmark::State& state) {
  auto& [batch, f] = cpu_forest::get();
  const xplor::cpu_t exec{static_cast<int>(state.range(0))};
  std::vector<std::int32_t> next(f.B);
  std::size_t s = 0;
  std::int64_t trees = 0;
  for (auto _ : state) {
    xs::backup(exec, batch, f.leaf[s], s % 2 ? f.v_minus : f.v_plus, f.width);
    xs::select_children(exec, batch, f.cur[s], f.width, f.lambda_uct, std::span<std::int32_t>(next));
    benchmark::DoNotOptimize(next.data());
    s = (s + 1) % f.steps;
    trees += f.B;
  }
  state.SetItemsProcessed(trees);
}

/// The search benchmarks' model: d_model 128 (weights in cache) or 512 (weights streamed from memory).
xplor::model::transformer_config search_model(int d_model = 128) {
  xplor::model::transformer_config c;
  c.vocab_size = 259;
  c.d_model = d_model;
  c.n_layers = 4;
  c.n_heads = d_model / 64 > 4 ? d_model / 64 : 4;
  c.d_ff = 4 * d_model;
  c.max_seq_len = 192;
  return c;
}
const std::vector<std::int32_t>& search_prompt() {
  static const std::vector<std::int32_t> p = [] {
    std::vector<std::int32_t> v;
    for (int t = 0; t < 48; ++t) v.push_back((t * 37) % 256);
    return v;
  }();
  return p;
}

/// DeepSearch with 16-token nodes, width 8, depth 8, 8 trajectories (an untrained model, so the
/// responses run to the depth limit; the verifier grades by the last token's parity).
void search_transformer(benchmark::State& state) {
  const xplor::model::transformer model(search_model(), 1);
  xs::search_params p;
  p.chunk_tokens = 16;
  p.max_depth = 8;
  p.expansion_width = 8;
  p.num_trajectories = 8;
  p.sampling.eos_token = 258;
  std::int64_t tokens = 0, nodes = 0;
  std::uint64_t seed = 0;
  for (auto _ : state) {
    xplor::model::kv_decoder dec(model);
    const auto res = xs::deep_search(
        dec, search_prompt(),
        [](std::span<const std::int32_t> r, bool) {
          return r.back() % 2 ? xs::outcome::correct : xs::outcome::incorrect;
        },
        p, seed++);
    tokens += res.tokens_generated;
    nodes += res.nodes - 1;
  }
  state.SetItemsProcessed(tokens);
  state.counters["nodes_per_s"] = benchmark::Counter(double(nodes), benchmark::Counter::kIsRate);
}

/// 16 prompts of 48 tokens, each its own.
std::vector<std::vector<std::int32_t>> sixteen_prompts() {
  std::vector<std::vector<std::int32_t>> prompts;
  for (int i = 0; i < 16; ++i) {
    std::vector<std::int32_t> v;
    for (int t = 0; t < 48; ++t) v.push_back((t * 37 + i * 11) % 256);
    prompts.push_back(v);
  }
  return prompts;
}
/// Width 8, depth 8, 8 trajectories for the small model; width 4, depth 4, 4 trajectories for
/// the large one (16-token nodes).
xs::search_params sixteen_params(int d_model) {
  xs::search_params p;
  p.chunk_tokens = 16;
  const int size = d_model > 128 ? 4 : 8;
  p.max_depth = size;
  p.expansion_width = size;
  p.num_trajectories = size;
  p.sampling.eos_token = 258;
  return p;
}
xs::outcome parity(std::size_t, std::span<const std::int32_t> r, bool) {
  return r.back() % 2 ? xs::outcome::correct : xs::outcome::incorrect;
}
/// Runs f with `n` OpenMP threads for the model's products (and the lockstep's tree passes).
template <class F>
void with_omp_threads(int n, F&& f) {
#if XPLOR_HAS_OPENMP
  const int before = omp_get_max_threads();
  omp_set_num_threads(n);
  f();
  omp_set_num_threads(before);
#else
  (void)n;
  f();
#endif
}
void count_results(const std::vector<xs::search_result>& results, std::int64_t& tokens, std::int64_t& nodes) {
  for (const auto& r : results) {
    tokens += r.tokens_generated;
    nodes += r.nodes - 1;
  }
}

/// One search per prompt, prompts handed to `threads` workers with a decoder each (serial model).
void search16_per_prompt(benchmark::State& state, int d_model) {
  const xplor::model::transformer model(search_model(d_model), 1);
  const auto prompts = sixteen_prompts();
  const auto p = sixteen_params(d_model);
  const int threads = static_cast<int>(state.range(0));
  std::int64_t tokens = 0, nodes = 0;
  std::uint64_t seed = 0;
  with_omp_threads(1, [&] {
    for (auto _ : state) {
      auto make = [&model] { return xplor::model::kv_decoder(model); };
      count_results(xs::deep_search_batch(make, prompts, parity, p, seed++, threads), tokens, nodes);
    }
  });
  state.SetItemsProcessed(tokens);
  state.counters["nodes_per_s"] = benchmark::Counter(double(nodes), benchmark::Counter::kIsRate);
  if (threads == 1) state.SetLabel("baseline");
}

/// All 16 searches in lockstep with one decoder; `threads` OpenMP threads for the model's rows.
void search16_lockstep(benchmark::State& state, int d_model) {
  const xplor::model::transformer model(search_model(d_model), 1);
  const auto prompts = sixteen_prompts();
  const auto p = sixteen_params(d_model);
  const int threads = static_cast<int>(state.range(0));
  std::int64_t tokens = 0, nodes = 0;
  std::uint64_t seed = 0;
  with_omp_threads(threads, [&] {
    for (auto _ : state) {
      xplor::model::kv_decoder dec(model);
      count_results(xs::deep_search_lockstep(dec, prompts, parity, p, seed++, xplor::cpu_t{threads}), tokens,
                    nodes);
    }
  });
  state.SetItemsProcessed(tokens);
  state.counters["nodes_per_s"] = benchmark::Counter(double(nodes), benchmark::Counter::kIsRate);
}

/// Plain rollouts of the same model: 64 completions of up to 128 tokens after the same prompt.
void rollouts_transformer(benchmark::State& state) {
  const xplor::model::transformer model(search_model(), 1);
  xplor::sample::sampling_params p;
  p.max_completion_length = 128;
  p.eos_token = 258;
  const std::vector<std::vector<std::int32_t>> prompts{search_prompt()};
  const std::vector<int> counts{64};
  std::int64_t tokens = 0;
  std::uint64_t seed = 0;
  for (auto _ : state) {
    xplor::model::kv_decoder dec(model);
    const auto batch = xplor::sample::generate(dec, prompts, counts, p, seed++);
    tokens += static_cast<std::int64_t>(batch.tokens.size());
  }
  state.SetItemsProcessed(tokens);
  state.SetLabel("baseline");
}

}  // namespace

BENCHMARK(frontier_full_scan)
    ->Name("frontier_1M_nodes/full_scan")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(frontier_incremental)
    ->Name("frontier_1M_nodes/incremental")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(trees_single_calls)
    ->Name("trees_B1024_N4096/single_tree_calls")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(trees_batched)
    ->Name("trees_B1024_N4096/batched_threads")
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(search16_per_prompt, d128, 128)
    ->Name("search16_d128_L4/per_prompt_threads")
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(search16_lockstep, d128, 128)
    ->Name("search16_d128_L4/lockstep_threads")
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(search16_per_prompt, d512, 512)
    ->Name("search16_d512_L4/per_prompt_threads")
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(search16_lockstep, d512, 512)
    ->Name("search16_d512_L4/lockstep_threads")
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(rollouts_transformer)
    ->Name("search_d128_L4/plain_rollouts")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(search_transformer)
    ->Name("search_d128_L4/deep_search")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
