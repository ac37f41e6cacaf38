// Advantages and losses on the device backend against the CPU backend (Thrust OMP in CI, the GPU
// under nvcc via cuda/). Both run the same XPLOR_HD kernels; only the loops and reductions differ.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "../device_vectors.hpp"
#include "xplor/core/adapt_thrust.hpp"
#include "xplor/core/device.hpp"
#include "xplor/rl/advantage.hpp"
#include "xplor/rl/loss.hpp"

using xplor::test::dev;
using xplor::test::host;

TEST_CASE("device: advantages equal the CPU's for every estimator", "[device][rl]") {
  using namespace xplor::rl;
  std::mt19937 rng(3);
  std::vector<int> counts(37);
  for (auto& c : counts) c = 1 + static_cast<int>(rng() % 12);
  const auto offsets = xplor::offsets_from_counts(counts);
  const auto n = offsets.back();
  std::vector<float> r(n);
  for (auto& x : r) x = static_cast<float>(rng() % 3) - 1.0f;
  const auto dr = dev(r);
  const xplor::ragged_groups groups(offsets, n);
  for (auto kind : {estimator::grpo, estimator::rloo, estimator::reinforce_pp})
    for (auto scale : {scale_rewards::group, scale_rewards::batch, scale_rewards::none}) {
      advantage_options o;
      o.scale = scale;
      std::vector<float> a(n);
      std::vector<std::uint8_t> flags(counts.size());
      thrust::device_vector<float> da(n);
      thrust::device_vector<std::uint8_t> dflags(counts.size());
      const auto rc = compute_advantages(xplor::cpu, kind, std::span<const float>(r), groups, std::span(a), o,
                                         std::span(flags));
      const auto rd = compute_advantages(xplor::device, kind, xplor::as_span(dr), groups, xplor::as_span(da),
                                         o, xplor::as_span(dflags));
      const auto ha = host(da);
      for (std::int64_t i = 0; i < n; ++i) REQUIRE(ha[i] == Approx(a[i]).margin(1e-5));
      REQUIRE(host(dflags) == flags);
      CHECK(rd.degenerate_groups == rc.degenerate_groups);
      CHECK(rd.batch_std == Approx(rc.batch_std).epsilon(1e-9));
    }
  std::vector<float> g(n), a(n);
  thrust::device_vector<float> dg(n), da(n);
  xplor::rl::discounted_returns(xplor::cpu, std::span<const float>(r), std::span<const std::int64_t>(offsets),
                                0.9f, std::span(g));
  xplor::rl::discounted_returns(xplor::device, xplor::as_span(dr), std::span<const std::int64_t>(offsets),
                                0.9f, xplor::as_span(dg));
  REQUIRE(host(dg) == g);  // per-episode left-to-right double accumulation: identical
  rebn_advantages(xplor::cpu, std::span<const float>(g), std::span(a));
  rebn_advantages(xplor::device, xplor::device_span<const float>(xplor::as_span(dg)), xplor::as_span(da));
  const auto ha = host(da);
  for (std::int64_t i = 0; i < n; ++i) REQUIRE(ha[i] == Approx(a[i]).margin(1e-5));
}

TEST_CASE("device: policy loss, its gradient and the logits gradient equal the CPU's", "[device][rl]") {
  using namespace xplor::rl;
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<int> counts(50);
  for (auto& c : counts) c = 1 + static_cast<int>(rng() % 20);
  const auto offsets = xplor::offsets_from_counts(counts);
  const auto T = offsets.back();
  std::vector<float> logp(T), old(T), ref(T), seq_adv(counts.size()), adv(T), mask(T);
  for (std::int64_t t = 0; t < T; ++t) {
    old[t] = -2.0f + 0.5f * nd(rng);
    logp[t] = old[t] + 0.2f * nd(rng);
    ref[t] = old[t] + 0.2f * nd(rng);
    mask[t] = rng() % 5 == 0 ? 0.0f : 1.0f;
  }
  for (auto& x : seq_adv) x = nd(rng);
  const auto d_logp = dev(logp), d_old = dev(old), d_ref = dev(ref), d_seq = dev(seq_adv), d_mask = dev(mask);
  thrust::device_vector<float> d_adv(T);
  broadcast_to_tokens(xplor::cpu, std::span<const float>(seq_adv), std::span<const std::int64_t>(offsets),
                      std::span(adv));
  broadcast_to_tokens(xplor::device, xplor::as_span(d_seq), std::span<const std::int64_t>(offsets),
                      xplor::as_span(d_adv));
  REQUIRE(host(d_adv) == adv);
  std::vector<std::uint8_t> truncated(counts.size());
  for (auto& f : truncated) f = rng() % 7 == 0;
  for (auto type : {loss_type::grpo, loss_type::bnpo, loss_type::dr_grpo, loss_type::dapo})
    for (auto level : {ratio_level::token, ratio_level::sequence}) {
      loss_options o;
      o.type = type;
      o.importance_sampling_level = level;
      o.beta = 0.04f;
      o.max_completion_length = 20;
      o.mask_truncated_completions = true;
      policy_batch hb{logp, old, ref, adv, mask, {}, offsets, truncated};
      device_policy_batch db{xplor::as_span(d_logp),
                             xplor::as_span(d_old),
                             xplor::as_span(d_ref),
                             xplor::as_span(d_adv),
                             xplor::as_span(d_mask),
                             {},
                             offsets,
                             truncated};
      std::vector<float> g(T);
      thrust::device_vector<float> dg(T);
      const auto rc = policy_loss(xplor::cpu, hb, std::span(g), o);
      const auto rd = policy_loss(xplor::device, db, xplor::as_span(dg), o);
      // Per-token math is float: under nvcc the device contracts to FMAs, so the totals agree to
      // float precision, not to the last bit (the OMP device path matches far more closely).
      CHECK(rd.loss == Approx(rc.loss).epsilon(1e-5));
      CHECK(rd.kl == Approx(rc.kl).epsilon(1e-5));
      CHECK(rd.clip_high_fraction == rc.clip_high_fraction);
      const auto hg = host(dg);
      for (std::int64_t t = 0; t < T; ++t) REQUIRE(hg[t] == Approx(g[t]).margin(1e-7));
    }
  // The logits gradient of a few rows.
  const std::int64_t R = 9, V = 301;
  std::vector<float> z(R * V), out(R * V), dl(R), de(R);
  std::vector<std::int32_t> targets(R);
  for (auto& x : z) x = 2.0f * nd(rng);
  for (std::int64_t t = 0; t < R; ++t)
    targets[t] = static_cast<std::int32_t>(rng() % V), dl[t] = nd(rng), de[t] = nd(rng);
  const auto dz = dev(z), d_dl = dev(dl), d_de = dev(de);
  const auto dt = dev(targets);
  thrust::device_vector<float> dout(R * V);
  logits_gradient(xplor::cpu, xplor::as_view2d(std::as_const(z), R, V), targets, dl, de,
                  xplor::as_view2d(out, R, V));
  logits_gradient(xplor::device, xplor::as_view2d(dz, R, V), xplor::as_span(dt), xplor::as_span(d_dl),
                  xplor::as_span(d_de), xplor::as_view2d(dout, R, V));
  const auto hout = host(dout);
  for (std::int64_t k = 0; k < R * V; ++k) REQUIRE(hout[k] == Approx(out[k]).margin(1e-6));
}

TEST_CASE("device: a padded column-major batch equals the CPU's", "[device][rl][padded]") {
  using namespace xplor::rl;
  std::mt19937 rng(8);
  const std::int64_t B = 5, L = 7;
  std::vector<float> logp(B * L), old_logp(B * L), mask(B * L), seq_adv(B);
  std::uniform_real_distribution<float> u(-2.0f, -0.1f);
  for (std::int64_t i = 0; i < B * L; ++i) {
    logp[i] = u(rng);
    old_logp[i] = logp[i] + 0.1f * (u(rng) + 1.0f);
    mask[i] = (i % L) < 2 + (i / L) ? 1.0f : 0.0f;  // stored column-major below: only the layout matters
  }
  for (auto& a : seq_adv) a = u(rng) + 1.0f;
  auto cm = [&](const std::vector<float>& v) { return xplor::view2d<const float>(v.data(), {B, L}, {1, B}); };
  padded_policy_batch hb;
  hb.logp = cm(logp);
  hb.old_logp = cm(old_logp);
  hb.mask = cm(mask);
  hb.sequence_advantages = seq_adv;
  loss_options o;
  o.type = loss_type::grpo;
  std::vector<float> hd(B * L);
  const loss_result want = policy_loss(xplor::cpu, hb, xplor::view2d<float>(hd.data(), {B, L}, {1, B}), o);
  const auto dl = dev(logp), dol = dev(old_logp), dm = dev(mask), da = dev(seq_adv);
  thrust::device_vector<float> dd(B * L);
  auto dcm = [&](const thrust::device_vector<float>& v) {
    return xplor::device_view2d<const float>(thrust::raw_pointer_cast(v.data()), {B, L}, {1, B});
  };
  device_padded_policy_batch db;
  db.logp = dcm(dl);
  db.old_logp = dcm(dol);
  db.mask = dcm(dm);
  db.sequence_advantages = xplor::as_span(da);
  const loss_result got = policy_loss(
      xplor::device, db, xplor::device_view2d<float>(thrust::raw_pointer_cast(dd.data()), {B, L}, {1, B}), o);
  CHECK(got.loss == Approx(want.loss).epsilon(1e-5));
  const auto back = host(dd);
  for (std::size_t i = 0; i < hd.size(); ++i) CHECK(back[i] == Approx(hd[i]).margin(1e-6));
}
