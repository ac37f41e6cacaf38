// core_tour: a five-minute walk through xplor's core, the pieces every method is built from.
//
//   1. Philox streams: the token drawn for (prompt i, sample j, step t) depends only on
//      (seed, i, j, t), so sampling is reproducible on any thread count or backend.
//   2. Numerics: log-softmax and entropy of a logits row, stable for huge or removed logits.
//   3. Drivers: group statistics with segmented_reduce over equal groups (GRPO's fixed
//      num_generations) and ragged groups (a budget allocator's per-prompt counts).
//
// Run: core_tour [--seed S] [--groups G] [--group-size N]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <string>
#include <vector>
#include <xplor/xplor.hpp>
#include "common/cli.hpp"

namespace {

struct options {
  std::uint64_t seed = 2024;
  int groups = 256;
  int group_size = 16;
};

options parse(int argc, char** argv) {
  namespace ex = xplor::examples;
  options o;
  CLI::App app{"A walk through xplor's core: Philox draws, logits numerics, group reductions.", "core_tour"};
  ex::add_integer(app, "--seed", o.seed, 0, 2147483647, "Philox seed (default 2024)")->type_name("S");
  ex::add_integer(app, "--groups", o.groups, 1, 1000000, "reward groups (default 256)")->type_name("G");
  ex::add_integer(app, "--group-size", o.group_size, 1, 10000, "rollouts per group (default 16)")
      ->type_name("N");
  ex::parse_flags(app, argc, argv);
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const options opt = parse(argc, argv);

  // 1. A toy "policy": fixed logits over 5 tokens. Sample step t of completion j of prompt i from
  //    its own Philox stream; redrawing any (i, j, t) alone gives the same token.
  const std::vector<float> logits{2.0f, 1.0f, 0.5f, -1.0f, -std::numeric_limits<float>::infinity()};
  std::vector<float> probs(logits.size());
  xplor::softmax(logits, probs);
  std::printf("1. Philox draws: tokens of 4 completions x 12 steps of prompt 0 (seed %llu)\n",
              static_cast<unsigned long long>(opt.seed));
  std::vector<int> counts(logits.size(), 0);
  for (std::uint32_t j = 0; j < 4; ++j) {
    std::printf("   sample %u:", j);
    for (std::uint64_t t = 0; t < 12; ++t) {
      xplor::philox_stream gen(opt.seed, xplor::stream_id(0, j), t);
      const auto token = xplor::sample_categorical(probs, gen);
      ++counts[static_cast<std::size_t>(token)];
      std::printf(" %lld", static_cast<long long>(token));
    }
    std::printf("\n");
  }
  xplor::philox_stream again(opt.seed, xplor::stream_id(0, 2), 7);
  std::printf("   redraw of (prompt 0, sample 2, step 7) alone: %lld\n",
              static_cast<long long>(xplor::sample_categorical(probs, again)));
  if (counts[4] != 0) return 1;  // a removed token (-inf) must never be drawn

  // 2. Numerics on the same row.
  std::vector<float> logp(logits.size());
  xplor::log_softmax(logits, logp);
  std::printf("\n2. Numerics: logsumexp = %.6f, entropy = %.6f nats (max log 4 = %.6f)\n",
              xplor::logsumexp(logits), xplor::entropy(logits), std::log(4.0));
  std::printf("   log p = [");
  for (float v : logp) std::printf(" %.4f", v);
  std::printf(" ]\n");

  // 3. Group baselines: Bernoulli(p_g) rewards per group, p_g spread over [0, 1]. The mean of
  //    each group is what GRPO subtracts; ragged groups come from per-prompt rollout counts.
  const std::int64_t n = std::int64_t{opt.groups} * opt.group_size;
  std::vector<float> rewards(static_cast<std::size_t>(n));
  xplor::for_each_index(xplor::cpu, n, [&](std::int64_t k) {
    const double p = double(k / opt.group_size) / std::max(1, opt.groups - 1);
    xplor::philox_stream gen(opt.seed, xplor::stream_id(static_cast<std::uint32_t>(k / opt.group_size), 1),
                             static_cast<std::uint64_t>(k % opt.group_size));
    rewards[static_cast<std::size_t>(k)] = gen.uniform_double() < p ? 1.0f : 0.0f;
  });
  std::vector<float> sums(static_cast<std::size_t>(opt.groups));
  xplor::segmented_reduce(
      xplor::cpu, xplor::equal_groups(opt.groups, opt.group_size), 0.0f, std::plus<>{},
      [&](std::int64_t k) { return rewards[static_cast<std::size_t>(k)]; }, std::span(sums));
  int degenerate = 0;
  for (float s : sums) degenerate += (s == 0.0f || s == static_cast<float>(opt.group_size));
  std::printf("\n3. Groups: %d groups x %d rollouts; %d groups have all-equal rewards (zero advantage)\n",
              opt.groups, opt.group_size, degenerate);
  std::printf("   group means (first 8):");
  for (int g = 0; g < std::min(8, opt.groups); ++g)
    std::printf(" %.3f", static_cast<double>(sums[g]) / opt.group_size);
  std::printf("\n");

  // The same rewards regrouped raggedly: group g gets 1 + (g mod group_size) * 2 rollouts,
  // truncated to the data, then the rest as the last group.
  std::vector<int> ragged_counts;
  std::int64_t used = 0;
  for (int g = 0; used < n; ++g) {
    const int c = static_cast<int>(std::min<std::int64_t>(1 + (g % opt.group_size) * 2, n - used));
    ragged_counts.push_back(c);
    used += c;
  }
  const auto offsets = xplor::offsets_from_counts(ragged_counts);
  std::vector<float> ragged_sums(ragged_counts.size());
  xplor::segmented_reduce(
      xplor::cpu, xplor::ragged_groups(offsets, n), 0.0f, std::plus<>{},
      [&](std::int64_t k) { return rewards[static_cast<std::size_t>(k)]; }, std::span(ragged_sums));
  const float total_equal = xplor::transform_reduce(xplor::cpu, opt.groups, 0.0f, std::plus<>{},
                                                    [&](std::int64_t g) { return sums[g]; });
  const float total_ragged =
      xplor::transform_reduce(xplor::cpu, static_cast<std::int64_t>(ragged_sums.size()), 0.0f, std::plus<>{},
                              [&](std::int64_t g) { return ragged_sums[g]; });
  std::printf("   ragged regrouping: %zu groups of 1..%d rollouts; total reward %.0f (equal groups: %.0f)\n",
              ragged_counts.size(), 2 * opt.group_size - 1, total_ragged, total_equal);
  if (total_equal != total_ragged) return 1;

  // 4. Bad input is an xplor::error that names the argument and the value.
  try {
    const std::vector<std::int64_t> bad{0, 5, 3};
    xplor::ragged_groups(bad, 3);
  } catch (const xplor::error& e) {
    std::printf("\n4. Bad input: %s\n", e.what());
  }
  std::printf("\ncore_tour: ok\n");
  return 0;
}
