// The loss modes and options beyond the clipped surrogate (rl/loss_terms.hpp): hand-computed
// tokens for each mode and KL form, finite-difference gradients over random batches, the
// vectorised path against the general one, and bad input.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "xplor/rl/loss.hpp"

using namespace xplor::rl;

namespace {

/// A batch of `lengths` sequences with random values (ratios near 1 with some beyond the clip).
struct random_batch {
  std::vector<std::int64_t> offsets;
  std::vector<float> logp, old, ref, adv, mask, ent, isw, samp;
  random_batch(std::vector<int> lengths, unsigned seed, float spread = 0.15f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    offsets = xplor::offsets_from_counts(lengths);
    const auto T = offsets.back();
    for (std::int64_t t = 0; t < T; ++t) {
      old.push_back(-1.2f + 0.3f * nd(rng));
      logp.push_back(old.back() + spread * nd(rng));
      ref.push_back(old.back() + 0.2f * nd(rng));
      adv.push_back(nd(rng));
      mask.push_back(t % 5 == 2 ? 0.0f : 1.0f);
      ent.push_back(0.2f + std::abs(nd(rng)));
      isw.push_back(0.5f + 0.25f * std::abs(nd(rng)));
      samp.push_back(old.back() + 0.05f * nd(rng));
    }
  }
  policy_batch batch(bool with_ref = true) const {
    policy_batch b;
    b.logp = logp;
    b.old_logp = old;
    if (with_ref) b.ref_logp = ref;
    b.advantages = adv;
    b.mask = mask;
    b.entropies = ent;
    b.sequence_offsets = offsets;
    return b;
  }
};

void require_near(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(want[i]).margin(1e-6));
}

loss_result run(const policy_batch& b, const loss_options& o, std::vector<float>& g, bool general = false) {
  g.assign(b.logp.size(), 0.0f);
  std::vector<float> tl(general ? b.logp.size() : 0);
  return policy_loss(xplor::cpu, b, std::span(g), o, {}, std::span(tl));
}

/// One sequence of one token: the loss and d loss / d logp.
loss_result one_token(float logp, float old, float adv, const loss_options& o, float& g, float ref = 0.0f) {
  const std::vector<float> lp{logp}, ol{old}, a{adv}, rf{ref};
  const std::vector<std::int64_t> offsets{0, 1};
  policy_batch b;
  b.logp = lp;
  b.old_logp = ol;
  b.advantages = a;
  if (o.beta != 0.0f) b.ref_logp = rf;
  b.sequence_offsets = offsets;
  std::vector<float> grad(1);
  const auto r = policy_loss(xplor::cpu, b, std::span(grad), o);
  g = grad[0];
  return r;
}

}  // namespace

TEST_CASE("loss modes: hand-computed single tokens", "[rl][loss][modes]") {
  float g = 0.0f;
  loss_options o;
  o.epsilon_high = 0.28f;
  SECTION("CISPO: -sg(clip(rho, 0.8, 1.28)) A logp") {
    o.mode = policy_loss_mode::cispo;
    const auto r = one_token(-1.0f, -1.5f, 2.0f, o, g);  // rho = e^0.5 = 1.6487 -> 1.28
    CHECK(r.loss == Approx(-1.28 * 2.0 * -1.0));
    CHECK(g == Approx(-1.28 * 2.0));
    CHECK(r.pg_clipfrac == 1.0);
    one_token(-1.0f, -0.9f, 2.0f, o, g);  // rho = e^-0.1 = 0.9048 inside the bounds
    CHECK(g == Approx(-std::exp(-0.1) * 2.0).epsilon(1e-6));
  }
  SECTION("SAPO: -(4 / tau) sigmoid(tau (rho - 1)) A") {
    o.mode = policy_loss_mode::sapo;
    const float x = std::log(1.2f);
    const auto r = one_token(-1.0f + x, -1.0f, 1.0f, o, g);  // tau_pos = 1
    const double s = 1.0 / (1.0 + std::exp(-0.2));
    CHECK(r.loss == Approx(-4.0 * s).epsilon(1e-6));
    CHECK(g == Approx(-4.0 * s * (1.0 - s) * 1.2).epsilon(1e-5));
    one_token(-1.0f + x, -1.0f, -1.0f, o, g);  // A <= 0: tau_neg = 1.05
    const double sn = 1.0 / (1.0 + std::exp(-1.05 * 0.2));
    CHECK(g == Approx(4.0 * sn * (1.0 - sn) * 1.2).epsilon(1e-5));
  }
  SECTION("GPG: -A logp") {
    o.mode = policy_loss_mode::gpg;
    const auto r = one_token(-0.7f, -3.0f, 1.5f, o, g);
    CHECK(r.loss == Approx(1.05));
    CHECK(g == Approx(-1.5));
  }
  SECTION("KL forms: abs, verl's clamps, straight-through, TRL's bias correction") {
    o.beta = 0.5f;
    o.kl_bias_correction = false;
    o.kl = kl_estimator::abs;
    auto r = one_token(-1.0f, -1.0f, 0.0f, o, g, -1.5f);  // |logp - ref| = 0.5
    CHECK(r.loss == Approx(0.25));
    CHECK(g == Approx(0.5));
    o.kl = kl_estimator::k3;
    o.kl_clamp = true;
    r = one_token(-1.0f, -1.0f, 0.0f, o, g, 14.0f);  // ref - logp = 15: e^15 - 16 clamps to 10
    CHECK(r.kl == Approx(10.0));
    CHECK(g == 0.0f);
    r = one_token(-1.0f, -1.0f, 0.0f, o, g, -30.0f);  // ref - logp = -29 -> -20: e^-20 + 19, then 10
    CHECK(r.kl == Approx(10.0));
    CHECK(g == 0.0f);
    o.kl_clamp = false;
    o.kl_straight_through = true;  // the k3 value with k2's gradient logp - ref
    r = one_token(-1.0f, -1.0f, 0.0f, o, g, -1.5f);
    CHECK(r.kl == Approx(std::exp(-0.5) + 0.5 - 1.0).epsilon(1e-6));
    CHECK(g == Approx(0.5 * 0.5));
    o.kl_straight_through = false;
    o.kl_bias_correction = true;  // TRL: kl * rho, rho = e^0.2; d/dlogp = (1 - e^y) rho + kl rho
    r = one_token(-1.0f, -1.2f, 0.0f, o, g, -1.5f);
    const double y = -0.5, kl = std::exp(y) - y - 1.0, rho = std::exp(0.2);
    CHECK(r.kl == Approx(kl * rho).epsilon(1e-6));
    CHECK(g == Approx(0.5 * ((1.0 - std::exp(y)) * rho + kl * rho)).epsilon(1e-5));
  }
  SECTION("verl's log-ratio clamp stops the gradient beyond +-20") {
    o.log_ratio_clamp = 20.0f;
    const auto r = one_token(-1.0f, -30.0f, -1.0f, o, g);  // logp - old = 29: rho = e^20, A < 0
    CHECK(r.loss == Approx(std::exp(20.0)).epsilon(1e-5));
    CHECK(g == 0.0f);
    CHECK(r.ppo_kl == Approx(-20.0));
  }
}

TEST_CASE("GMPO: the geometric mean of clipped token ratios per sequence", "[rl][loss][modes]") {
  // One sequence, log-ratios 0.1 and 0.5, A = 1, clip 0.2: min(x, clamp(x)) = 0.1, 0.2;
  // rho = exp(0.15), loss = -rho; only the first token's log-ratio moves it.
  const std::vector<float> logp{-1.0f, -1.0f}, old{-1.1f, -1.5f}, adv{1.0f, 1.0f};
  const std::vector<std::int64_t> offsets{0, 2};
  policy_batch b;
  b.logp = logp;
  b.old_logp = old;
  b.advantages = adv;
  b.sequence_offsets = offsets;
  loss_options o;
  o.mode = policy_loss_mode::geo_mean;
  std::vector<float> g;
  const auto r = run(b, o, g);
  const double rho = std::exp(0.15);
  CHECK(r.loss == Approx(-rho).epsilon(1e-6));
  CHECK(g[0] == Approx(-rho / 2.0).epsilon(1e-5));
  CHECK(g[1] == 0.0f);
  CHECK(r.pg_clipfrac == Approx(0.5));
}

TEST_CASE("KL-Cov and Clip-Cov choose their tokens by covariance", "[rl][loss][modes]") {
  // Five on-policy tokens (rho = 1): cov_t = (A_t - mean A)(logp_t - mean logp).
  const std::vector<float> logp{-0.5f, -1.0f, -1.5f, -2.0f, -2.5f}, adv{2.0f, 0.5f, 0.0f, -0.5f, -2.0f};
  std::vector<float> old = logp;
  old[0] -= 0.01f;  // a token that moved: KL-Cov's penalty |log rho| = 0.01
  const std::vector<std::int64_t> offsets{0, 5};
  policy_batch b;
  b.logp = logp;
  b.old_logp = old;
  b.advantages = adv;
  b.sequence_offsets = offsets;
  loss_options o;
  o.mode = policy_loss_mode::kl_cov;
  o.kl_cov_ratio = 0.2f;  // max(1, int(5 * 0.2)) = 1 token: the largest covariance, token 0 (2 * 1 = 2)
  o.kl_cov_coef = 1.0f;
  std::vector<float> g;
  auto r = run(b, o, g);
  const double rho0 = std::exp(0.01);
  CHECK(r.loss == Approx((-2.0 * rho0 + 0.01 - 0.5 - 0.0 + 0.5 + 2.0) / 5.0).epsilon(1e-5));
  CHECK(g[0] == Approx((-2.0 * rho0 + 1.0) / 5.0).epsilon(1e-5));
  CHECK(g[4] == Approx(2.0 / 5.0));
  // Clip-Cov: candidates have lb < cov < ub; tokens 0 and 4 have cov 2, tokens 1 and 3 0.25.
  o.mode = policy_loss_mode::clip_cov;
  o.clip_cov_lb = 1.0f;
  o.clip_cov_ub = 5.0f;
  o.clip_cov_ratio = 0.4f;  // int(0.4 * 5) = 2: both candidates are detached
  r = run(b, o, g);
  CHECK(g[0] == 0.0f);
  CHECK(g[4] == 0.0f);
  CHECK(g[1] == Approx(-0.5 / 5.0));
  CHECK(r.pg_clipfrac == Approx(0.4));
  // With room for one of the two, the seed picks which; the same seed picks the same token.
  o.clip_cov_ratio = 0.2f;
  run(b, o, g);
  const bool first = g[0] == 0.0f;
  CHECK(first != (g[4] == 0.0f));
  std::vector<float> again;
  run(b, o, again);
  CHECK(again == g);
}

TEST_CASE("TRL's top-entropy tokens, off-policy mask and importance weights", "[rl][loss][modes]") {
  const std::vector<float> logp{-1, -1, -1, -1, -1}, adv{1, 1, 1, 1, 1}, ent{0.1f, 2.0f, 0.9f, 1.3f, 0.5f};
  const std::vector<std::int64_t> offsets{0, 5};
  policy_batch b;
  b.logp = logp;
  b.advantages = adv;
  b.entropies = ent;
  b.sequence_offsets = offsets;
  loss_options o;
  o.top_entropy_quantile = 0.5f;  // threshold: the 0.5 quantile of 5 entropies = 0.9 (the median)
  std::vector<float> g;
  const auto r = run(b, o, g);
  require_near(g, {0.0f, -0.2f, -0.2f, -0.2f, 0.0f});
  CHECK(r.loss == Approx(-3.0 / 5.0));
  o.top_entropy_quantile = 0.6f;  // quantile 0.4: position 1.6 between 0.5 and 0.9 -> 0.74
  run(b, o, g);
  require_near(g, {0.0f, -0.2f, -0.2f, -0.2f, 0.0f});
  o.top_entropy_quantile = 0.8f;  // quantile 0.2: position 0.8 between 0.1 and 0.5 -> 0.42
  run(b, o, g);
  require_near(g, {0.0f, -0.2f, -0.2f, -0.2f, -0.2f});

  // Off-policy mask: sequence 1 has A < 0 and mean log(pi_sampler / pi) = 0.3 > 0.1: dropped.
  const std::vector<float> lp2{-1, -1, -1, -1}, adv2{1, 1, -1, -1}, samp{-1, -1, -0.7f, -0.7f}, w{2, 1, 1, 1};
  const std::vector<std::int64_t> off2{0, 2, 4};
  policy_batch c;
  c.logp = lp2;
  c.advantages = adv2;
  c.sampling_logp = samp;
  c.sequence_offsets = off2;
  loss_options p;
  p.off_policy_mask_threshold = 0.1f;
  run(c, p, g);
  require_near(g, {-0.25f, -0.25f, 0.0f, 0.0f});
  c.is_weights = w;  // importance weights scale the policy term
  p.off_policy_mask_threshold.reset();
  run(c, p, g);
  require_near(g, {-0.5f, -0.25f, 0.25f, 0.25f});
}

TEST_CASE("verl aggregation: empty sequences, global batch info, token-form GSPO", "[rl][loss][modes]") {
  // Sequence 1 fully masked: TRL's grpo averages over 3 sequences, verl's over the 2 others.
  const std::vector<float> logp{-1, -1, -1, -1, -1}, adv{-1, -1, -1, -1, -1}, mask{1, 1, 0, 1, 1};
  const std::vector<std::int64_t> offsets{0, 2, 3, 5};
  policy_batch b;
  b.logp = logp;
  b.advantages = adv;
  b.mask = mask;
  b.sequence_offsets = offsets;
  loss_options o;
  o.type = loss_type::grpo;
  std::vector<float> g;
  CHECK(run(b, o, g).loss == Approx(2.0 / 3.0));
  o.exclude_empty_sequences = true;
  CHECK(run(b, o, g).loss == Approx(1.0).epsilon(1e-7));
  o.num_sequences_in_batch = 8.0;  // verl global_batch_size / dp_size
  CHECK(run(b, o, g).loss == Approx(2.0 / 8.0).epsilon(1e-7));
  o.num_sequences_in_batch.reset();
  o.dp_size = 2.0;  // without a global size: the local mean times dp_size
  CHECK(run(b, o, g).loss == Approx(2.0).epsilon(1e-7));

  // GSPO token form (verl) and through-the-mean form (TRL) give the same gradient for
  // seq-mean-token-mean with one advantage per sequence (the usual case).
  random_batch rb({4, 3, 6}, 9);
  for (std::size_t s = 0; s + 1 < rb.offsets.size(); ++s)
    for (auto t = rb.offsets[s]; t < rb.offsets[s + 1]; ++t) rb.adv[t] = rb.adv[rb.offsets[s]];
  policy_batch pb = rb.batch(false);
  loss_options s;
  s.type = loss_type::grpo;
  s.importance_sampling_level = ratio_level::sequence;
  std::vector<float> g_mean, g_token;
  run(pb, s, g_mean);
  s.sequence_ratio_token_gradient = true;
  run(pb, s, g_token);
  for (std::size_t t = 0; t < g_mean.size(); ++t) CHECK(g_token[t] == Approx(g_mean[t]).margin(1e-7));
}

TEST_CASE("the vectorised path equals the general path on its options", "[rl][loss][modes][property]") {
  for (unsigned seed = 1; seed <= 6; ++seed)
    for (auto type : {loss_type::grpo, loss_type::bnpo, loss_type::dr_grpo, loss_type::dapo,
                      loss_type::seq_mean_token_sum, loss_type::seq_mean_token_sum_norm})
      for (auto level : {ratio_level::token, ratio_level::sequence}) {
        random_batch rb({9, 1, 17, 4, 8}, seed, 0.3f);
        policy_batch b = rb.batch();
        loss_options o;
        o.type = type;
        o.importance_sampling_level = level;
        o.max_completion_length = 20;
        o.loss_scale_factor = 11.0;
        o.epsilon_high = 0.28f;
        o.beta = seed % 2 == 0 ? 0.05f : 0.0f;
        o.kl_bias_correction = false;
        o.kl = seed % 3 == 0 ? kl_estimator::k1 : kl_estimator::k3;
        o.entropy_coef = 0.02f;
        o.entropy_agg = entropy_aggregation::loss_type;
        if (seed == 5) o.delta = 1.5f;
        std::vector<float> fast, general;
        const auto rf = run(b, o, fast);
        const auto rg = run(b, o, general, true);
        INFO("seed " << seed << " type " << int(type) << " level " << int(level));
        CHECK(rg.loss == Approx(rf.loss).epsilon(1e-5).margin(1e-7));
        CHECK(rg.policy_loss == Approx(rf.policy_loss).epsilon(1e-5).margin(1e-7));
        CHECK(rg.kl == Approx(rf.kl).epsilon(1e-5).margin(1e-7));
        CHECK(rg.kl_loss == Approx(rf.kl_loss).epsilon(1e-5).margin(1e-7));
        CHECK(rg.entropy_loss == Approx(rf.entropy_loss).epsilon(1e-5));
        CHECK(rg.clip_low_fraction == Approx(rf.clip_low_fraction));
        CHECK(rg.clip_high_fraction == Approx(rf.clip_high_fraction));
        CHECK(rg.pg_clipfrac == Approx(rf.pg_clipfrac));
        CHECK(rg.ppo_kl == Approx(rf.ppo_kl).epsilon(1e-5).margin(1e-7));
        CHECK(rg.mean_ratio == Approx(rf.mean_ratio).epsilon(1e-6));
        for (std::size_t t = 0; t < fast.size(); ++t)
          REQUIRE(general[t] == Approx(fast[t]).epsilon(1e-5).margin(1e-7));
      }
}

// CISPO's gradient stops at the clipped ratio by design (-sg(w) A logp), and verl's token-form
// GSPO gradient is the derivative of its value only with one advantage per sequence: neither is
// checked here (the hand-computed test and the GSPO equality test above check them).
TEST_CASE("every loss mode's gradient matches finite differences", "[rl][loss][modes][property]") {
  struct variant {
    const char* name;
    void (*set)(loss_options&);
  };
  const variant variants[] = {
      {"clip + verl clamps + dual clip",
       [](loss_options& o) {
         o.log_ratio_clamp = 20.0f;
         o.dual_clip = 3.0f;
         o.exclude_empty_sequences = true;
       }},
      {"sapo", [](loss_options& o) { o.mode = policy_loss_mode::sapo; }},
      {"gpg", [](loss_options& o) { o.mode = policy_loss_mode::gpg; }},
      {"geo_mean", [](loss_options& o) { o.mode = policy_loss_mode::geo_mean; }},
      {"kl_cov",
       [](loss_options& o) {
         o.mode = policy_loss_mode::kl_cov;
         o.kl_cov_ratio = 0.3f;
       }},
      {"clip_cov",
       [](loss_options& o) {
         o.mode = policy_loss_mode::clip_cov;
         o.clip_cov_ratio = 0.2f;
         o.clip_cov_lb = 0.05f;
       }},
      {"gspo, TRL, bias-corrected KL",
       [](loss_options& o) {
         o.importance_sampling_level = ratio_level::sequence;
         o.kl_bias_correction = true;
       }},
      {"abs KL", [](loss_options& o) { o.kl = kl_estimator::abs; }},
      {"top entropy + off-policy mask",
       [](loss_options& o) {
         o.top_entropy_quantile = 0.5f;
         o.off_policy_mask_threshold = 0.0f;
       }},
  };
  for (const auto& v : variants)
    for (auto type : {loss_type::grpo, loss_type::dapo, loss_type::seq_mean_token_sum_norm}) {
      random_batch rb({5, 3, 7, 1}, 17);
      policy_batch b = rb.batch();
      b.is_weights = rb.isw;
      b.sampling_logp = rb.samp;
      loss_options o;
      o.type = type;
      o.loss_scale_factor = 7.0;
      o.beta = 0.05f;
      o.kl_bias_correction = false;
      o.entropy_coef = 0.01f;
      v.set(o);
      std::vector<float> g, scratch;
      run(b, o, g);
      for (std::size_t t = 0; t < g.size(); ++t) {
        const float h = 2e-3f;
        auto at = [&](float x) {
          std::vector<float> shifted = rb.logp;
          shifted[t] = x;
          policy_batch bb = b;
          bb.logp = shifted;
          return run(bb, o, scratch).loss;
        };
        const double numeric = (at(rb.logp[t] + h) - at(rb.logp[t] - h)) / (2.0 * h);
        INFO(v.name << " type " << int(type) << " token " << t);
        REQUIRE(g[t] == Approx(numeric).epsilon(3e-3).margin(5e-5));
      }
    }
}

TEST_CASE("loss options: bad values name the option", "[rl][loss][modes][errors]") {
  random_batch rb({3, 2}, 4);
  policy_batch b = rb.batch();
  std::vector<float> g(b.logp.size());
  auto fails = [&](auto set, const char* text) {
    loss_options o;
    set(o);
    CHECK_THROWS_WITH(policy_loss(xplor::cpu, b, std::span(g), o), Catch::Contains(text));
  };
  fails([](loss_options& o) { o.log_ratio_clamp = -1.0f; }, "log_ratio_clamp = -1");
  fails([](loss_options& o) { o.sapo_tau_neg = 0.0f; }, "sapo_tau_neg = 0");
  fails([](loss_options& o) { o.clip_cov_lb = 6.0f; }, "clip_cov_lb = 6 must be below clip_cov_ub = 5");
  fails([](loss_options& o) { o.kl_cov_ratio = 0.0f; }, "kl_cov_ratio = 0");
  fails([](loss_options& o) { o.top_entropy_quantile = 0.0f; }, "top_entropy_quantile = 0");
  fails([](loss_options& o) { o.dp_size = 0.5; }, "dp_size = 0.5");
  fails([](loss_options& o) { o.num_sequences_in_batch = -2.0; }, "num_sequences_in_batch = -2");
  fails([](loss_options& o) { o.epsilon = 1.5f; }, "epsilon = 1.5 is outside (0, 1]");
  fails(
      [](loss_options& o) {
        o.mode = policy_loss_mode::cispo;
        o.epsilon_high = -0.75f;
      },
      "epsilon_high = -0.75 leaves no ratio");
  fails([](loss_options& o) { o.type = loss_type::seq_mean_token_sum_norm; }, "needs loss_scale_factor");
  policy_batch nb = b;
  nb.entropies = {};
  loss_options q;
  q.top_entropy_quantile = 0.5f;
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, nb, std::span(g), q), Catch::Contains("needs entropies"));
  std::vector<float> w = rb.isw;
  w[3] = -0.5f;
  policy_batch wb = b;
  wb.is_weights = w;
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, wb, std::span(g), loss_options{}),
                    Catch::Contains("is_weights[3] is negative"));
  w[3] = std::nanf("");
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, wb, std::span(g), loss_options{}), Catch::Contains("is_weights"));
  std::vector<float> short_w(2);
  wb.is_weights = short_w;
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, wb, std::span(g), loss_options{}),
                    Catch::Contains("is_weights has 2 elements"));
}
