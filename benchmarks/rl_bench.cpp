// Advantages + policy loss + gradient over 4M tokens in 16k sequences (256 tokens each, groups
// of 16), as effective bandwidth next to a plain copy of the same bytes measured in the same run.
// Bytes per token: logp, old_logp, mask read (12 B) + dlogp written (4 B); the per-sequence
// rewards and advantages are negligible. The copy moves the same 16 B per token.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>
#include <xplor/rl/advantage.hpp>
#include <xplor/rl/loss.hpp>

namespace {

constexpr std::int64_t kSeqs = 16384, kLen = 256, kTokens = kSeqs * kLen, kGroup = 16;
constexpr std::int64_t kBytesPerToken = 16;

struct data {
  std::vector<float> logp, old, mask, rewards, seq_adv, adv, dlogp;
  std::vector<std::int64_t> offsets;
  data()
      : logp(kTokens),
        old(kTokens),
        mask(kTokens, 1.0f),
        rewards(kSeqs),
        seq_adv(kSeqs),
        adv(kTokens),
        dlogp(kTokens),
        offsets(kSeqs + 1) {
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (std::int64_t t = 0; t < kTokens; ++t) {
      old[t] = -1.5f + 0.5f * nd(rng);
      logp[t] = old[t] + 0.05f * nd(rng);
    }
    for (auto& r : rewards) r = static_cast<float>(rng() % 2);
    for (std::int64_t s = 0; s <= kSeqs; ++s) offsets[s] = s * kLen;
    for (std::int64_t s = 0; s < kSeqs; ++s) mask[s * kLen + kLen - 1] = 0.0f;  // padding
  }
};
data& shared() {
  static data d;
  return d;
}

void copy_same_bytes(benchmark::State& state) {
  auto& d = shared();
  std::vector<float> a(kTokens * 3), b(kTokens);  // read 12 B, write 4 B per token
  for (auto _ : state) {
    for (std::int64_t t = 0; t < kTokens; ++t) b[t] = a[t] + a[kTokens + t] + a[2 * kTokens + t];
    benchmark::DoNotOptimize(b.data());
    benchmark::ClobberMemory();
  }
  (void)d;
  state.SetBytesProcessed(state.iterations() * kTokens * kBytesPerToken);
  state.SetItemsProcessed(state.iterations() * kTokens);
  state.SetLabel("baseline");
}

void memcpy_same_bytes(benchmark::State& state) {
  std::vector<char> src(static_cast<std::size_t>(kTokens * kBytesPerToken)), dst(src.size());
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), src.size());
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kTokens * kBytesPerToken);
  state.SetItemsProcessed(state.iterations() * kTokens);
}

void advantages_loss_gradient(benchmark::State& state) {
  auto& d = shared();
  xplor::rl::loss_options o;
  o.epsilon_high = 0.28f;
  for (auto _ : state) {
    xplor::rl::group_advantages(xplor::cpu, std::span<const float>(d.rewards), kGroup, std::span(d.seq_adv));
    xplor::rl::broadcast_to_tokens(xplor::cpu, std::span<const float>(d.seq_adv),
                                   std::span<const std::int64_t>(d.offsets), std::span(d.adv));
    const xplor::rl::policy_batch b{d.logp, d.old, {}, d.adv, d.mask, {}, d.offsets, {}};
    benchmark::DoNotOptimize(xplor::rl::policy_loss(xplor::cpu, b, std::span(d.dlogp), o).loss);
  }
  state.SetBytesProcessed(state.iterations() * kTokens * kBytesPerToken);
  state.SetItemsProcessed(state.iterations() * kTokens);
}

// Every loss mode over the same 4M tokens: logp, old_logp, per-token advantages and mask read,
// dlogp written (20 B per token), against a memcpy of 20 B per token in the same run. Modes
// outside the vectorised path run the general per-sequence kernel (loss_terms.hpp); KL-Cov and
// Clip-Cov add their token selection (bisection passes over the covariance keys).
void memcpy_20_bytes(benchmark::State& state) {
  std::vector<char> src(static_cast<std::size_t>(kTokens * 20)), dst(src.size());
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), src.size());
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kTokens * 20);
  state.SetItemsProcessed(state.iterations() * kTokens);
  state.SetLabel("baseline");
}

void loss_mode(benchmark::State& state, xplor::rl::loss_options o) {
  auto& d = shared();
  static std::vector<float> adv = [] {
    std::vector<float> a(kTokens);
    std::mt19937 rng(2);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& x : a) x = nd(rng);
    return a;
  }();
  const xplor::rl::policy_batch b{d.logp, d.old, {}, adv, d.mask, {}, d.offsets, {}};
  for (auto _ : state)
    benchmark::DoNotOptimize(xplor::rl::policy_loss(xplor::cpu, b, std::span(d.dlogp), o).loss);
  state.SetBytesProcessed(state.iterations() * kTokens * 20);
  state.SetItemsProcessed(state.iterations() * kTokens);
}

xplor::rl::loss_options with(xplor::rl::policy_loss_mode mode) {
  xplor::rl::loss_options o;
  o.mode = mode;
  o.epsilon_high = 0.28f;
  return o;
}
xplor::rl::loss_options verl_vanilla() {  // verl_options' vanilla: clamps, dual clip, verl denominators
  xplor::rl::loss_options o;
  o.dual_clip = 3.0f;
  o.log_ratio_clamp = 20.0f;
  o.exclude_empty_sequences = true;
  return o;
}

}  // namespace

BENCHMARK(memcpy_20_bytes)
    ->Name("loss_modes_4M/memcpy_20B_per_token")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(loss_mode, clip_vectorised, with(xplor::rl::policy_loss_mode::clip))
    ->Name("loss_modes_4M/clip_vectorised")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(loss_mode, verl_vanilla, verl_vanilla())
    ->Name("loss_modes_4M/clip_verl_general")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(loss_mode, cispo, with(xplor::rl::policy_loss_mode::cispo))
    ->Name("loss_modes_4M/cispo")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(loss_mode, sapo, with(xplor::rl::policy_loss_mode::sapo))
    ->Name("loss_modes_4M/sapo")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(loss_mode, gpg, with(xplor::rl::policy_loss_mode::gpg))
    ->Name("loss_modes_4M/gpg")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(loss_mode, geo_mean, with(xplor::rl::policy_loss_mode::geo_mean))
    ->Name("loss_modes_4M/geo_mean")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(loss_mode, vespo, with(xplor::rl::policy_loss_mode::vespo))
    ->Name("loss_modes_4M/vespo")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(loss_mode, kl_cov, with(xplor::rl::policy_loss_mode::kl_cov))
    ->Name("loss_modes_4M/kl_cov")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(loss_mode, clip_cov, with(xplor::rl::policy_loss_mode::clip_cov))
    ->Name("loss_modes_4M/clip_cov")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK(copy_same_bytes)
    ->Name("tokens_4M/copy_16B_per_token")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(memcpy_same_bytes)
    ->Name("tokens_4M/memcpy_16B_per_token")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(advantages_loss_gradient)
    ->Name("tokens_4M/advantages+loss+gradient")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
