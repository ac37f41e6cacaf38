#include "xplor/rl/loss.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

using namespace xplor::rl;

namespace {

/// Two sequences of 2 and 4 tokens, on-policy (ratio 1), so l_t = -A_t.
struct two_sequences {
  std::vector<float> logp{-1, -1, -1, -1, -1, -1};
  std::vector<float> adv;
  std::vector<std::int64_t> offsets{0, 2, 6};
  policy_batch batch() const {
    policy_batch b;
    b.logp = logp;
    b.advantages = adv;
    b.sequence_offsets = offsets;
    return b;
  }
};

double loss_of(const policy_batch& b, loss_type type, std::vector<float>& grad) {
  loss_options o;
  o.type = type;
  o.max_completion_length = 8;
  grad.assign(b.logp.size(), 0.0f);
  return policy_loss(xplor::cpu, b, std::span(grad), o).loss;
}

}  // namespace

TEST_CASE("loss aggregation: TRL worked numbers (rl-methods 6.5)", "[rl][loss]") {
  two_sequences s;
  std::vector<float> g;
  s.adv.assign(6, -1.0f);  // l = [1, 1], [1, 1, 1, 1]
  CHECK(loss_of(s.batch(), loss_type::grpo, g) == Approx(1.0));
  CHECK(loss_of(s.batch(), loss_type::bnpo, g) == Approx(1.0));
  CHECK(loss_of(s.batch(), loss_type::dapo, g) == Approx(1.0));
  CHECK(loss_of(s.batch(), loss_type::dr_grpo, g) == Approx(0.375));
  s.adv = {-1, -1, 1, 1, 1, 1};  // l = [1, 1], [-1, -1, -1, -1]: the length bias
  CHECK(loss_of(s.batch(), loss_type::grpo, g) == Approx(0.0).margin(1e-12));
  CHECK(loss_of(s.batch(), loss_type::bnpo, g) == Approx(-1.0 / 3.0));
  CHECK(loss_of(s.batch(), loss_type::dapo, g) == Approx(-1.0 / 3.0));
  CHECK(loss_of(s.batch(), loss_type::dr_grpo, g) == Approx(-0.125));
  // d l / d logp = -A rho = -A on-policy, times the aggregation weight.
  loss_of(s.batch(), loss_type::grpo, g);
  CHECK(g[0] == Approx(0.5 * 1.0 / 2.0));  // weight 1 / (2 tokens * 2 sequences)
  CHECK(g[2] == Approx(-1.0 / (4.0 * 2.0)));
  CHECK(loss_type_from_name("token-mean") == loss_type::dapo);
  CHECK(loss_type_from_name("seq-mean-token-mean") == loss_type::grpo);
  CHECK(loss_type_from_name("seq-mean-token-sum-norm") == loss_type::dr_grpo);
  CHECK_THROWS_WITH(loss_type_from_name("cispo"), Catch::Contains("unknown loss type 'cispo'"));
}

TEST_CASE("clipped surrogate, delta and dual clip: hand-computed tokens", "[rl][loss]") {
  // One token per sequence; ratio = exp(logp - old).
  struct token_case {
    float rho, adv, loss, grad;
  };
  const token_case cases[] = {
      {1.5f, 1.0f, -1.2f, 0.0f},   // clipped at 1 + 0.2: constant
      {0.5f, 1.0f, -0.5f, -0.5f},  // min picks the unclipped 0.5: dl/dlogp = -A rho
      {0.5f, -1.0f, 0.8f, 0.0f},   // min picks the clipped -0.8
      {1.5f, -1.0f, 1.5f, 1.5f},   // unclipped -1.5 < -1.2
      {1.1f, 2.0f, -2.2f, -2.2f},  // inside the clip range
  };
  for (const auto& c : cases) {
    INFO("rho " << c.rho << ", A " << c.adv);
    const std::vector<float> logp{std::log(c.rho)}, old{0.0f}, adv{c.adv};
    const std::vector<std::int64_t> offsets{0, 1};
    policy_batch b;
    b.logp = logp;
    b.old_logp = old;
    b.advantages = adv;
    b.sequence_offsets = offsets;
    std::vector<float> g(1);
    const auto r = policy_loss(xplor::cpu, b, std::span(g));
    CHECK(r.loss == Approx(c.loss).epsilon(1e-6));
    CHECK(g[0] == Approx(c.grad).epsilon(1e-6).margin(1e-7));
  }
  // delta caps the unclipped ratio; the dual clip caps the loss of a negative advantage at -c A.
  const std::vector<float> logp{std::log(5.0f)}, old{0.0f}, pos{1.0f}, neg{-1.0f};
  const std::vector<std::int64_t> offsets{0, 1};
  policy_batch b;
  b.logp = logp;
  b.old_logp = old;
  b.sequence_offsets = offsets;
  std::vector<float> g(1);
  loss_options dual;
  dual.dual_clip = 3.0f;
  b.advantages = neg;
  CHECK(policy_loss(xplor::cpu, b, std::span(g), dual).loss == Approx(3.0));  // min(5, 3)
  CHECK(g[0] == 0.0f);
  CHECK(policy_loss(xplor::cpu, b, std::span(g)).loss == Approx(5.0));  // without it: rho * |A|
  loss_options capped;
  capped.delta = 2.0f;
  const std::vector<float> half{std::log(0.5f)};
  b.logp = half;
  b.advantages = pos;
  CHECK(policy_loss(xplor::cpu, b, std::span(g), capped).loss == Approx(-0.5));
  b.logp = logp;
  b.advantages = neg;
  CHECK(policy_loss(xplor::cpu, b, std::span(g), capped).loss == Approx(2.0));  // min(rho, delta) |A|
  CHECK(g[0] == 0.0f);
}

TEST_CASE("policy_loss gradients match finite differences", "[rl][loss][property]") {
  std::mt19937 rng(21);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto type :
       {loss_type::grpo, loss_type::bnpo, loss_type::dr_grpo, loss_type::dapo, loss_type::seq_mean_token_sum})
    for (auto level : {ratio_level::token, ratio_level::sequence})
      for (auto kl : {kl_estimator::k1, kl_estimator::k2, kl_estimator::k3}) {
        const std::vector<int> lengths{3, 1, 5, 2};
        std::vector<int> counts(lengths.begin(), lengths.end());
        const auto offsets = xplor::offsets_from_counts(counts);
        const auto T = offsets.back();
        std::vector<float> logp(T), old(T), ref(T), adv(T), mask(T), ent(T);
        for (std::int64_t t = 0; t < T; ++t) {
          old[t] = -1.0f + 0.3f * nd(rng);
          logp[t] = old[t] + 0.1f * nd(rng);  // ratios near 1, some clipped
          ref[t] = old[t] + 0.2f * nd(rng);
          adv[t] = nd(rng);
          mask[t] = t % 4 == 1 ? 0.0f : 1.0f;
          ent[t] = 1.0f + 0.5f * std::abs(nd(rng));
        }
        loss_options o;
        o.type = type;
        o.importance_sampling_level = level;
        o.kl = kl;
        o.beta = 0.05f;
        o.epsilon_high = 0.28f;
        o.max_completion_length = 6;
        o.entropy_coef = 0.01f;
        policy_batch b;
        b.logp = logp;
        b.old_logp = old;
        b.ref_logp = ref;
        b.advantages = adv;
        b.mask = mask;
        b.entropies = ent;
        b.sequence_offsets = offsets;
        std::vector<float> g(T), scratch(T), dent(T);
        policy_loss(xplor::cpu, b, std::span(g), o, std::span(dent));
        for (std::int64_t t = 0; t < T; ++t) {
          const float h = 1e-3f;
          auto at = [&](float x) {
            std::vector<float> shifted = logp;
            shifted[t] = x;
            policy_batch bb = b;
            bb.logp = shifted;
            return policy_loss(xplor::cpu, bb, std::span(scratch), o).loss;
          };
          const double numeric = (at(logp[t] + h) - at(logp[t] - h)) / (2.0 * h);
          INFO("type " << int(type) << " level " << int(level) << " kl " << int(kl) << " token " << t);
          REQUIRE(g[t] == Approx(numeric).epsilon(2e-3).margin(2e-5));
          // d loss / d entropy_t by finite differences in the entropies.
          auto at_entropy = [&](float x) {
            std::vector<float> shifted = ent;
            shifted[t] = x;
            policy_batch bb = b;
            bb.entropies = shifted;
            return policy_loss(xplor::cpu, bb, std::span(scratch), o).loss;
          };
          // The loss is linear in the entropies: a wide step is exact up to rounding.
          REQUIRE(dent[t] ==
                  Approx((at_entropy(ent[t] + 0.5f) - at_entropy(ent[t] - 0.5f))).epsilon(1e-4).margin(1e-7));
        }
      }
}

TEST_CASE("fractional mask weights scale a token's term and its share of the token count", "[rl][loss]") {
  // Two sequences, advantages 1, logp = old_logp (ratio 1): token loss -1. Mask {1, 0.5 | 0.25,
  // 1, 1, 1}; dapo: loss = -(1 + 0.5 + 0.25 + 3) / (1.5 + 3.25) = -1 exactly, and the gradient
  // of token t is -mask_t / 4.75.
  two_sequences s;
  s.adv.assign(6, 1.0f);
  const std::vector<float> mask{1.0f, 0.5f, 0.25f, 1.0f, 1.0f, 1.0f};
  policy_batch b = s.batch();
  b.mask = mask;
  loss_options o;
  o.type = loss_type::dapo;
  std::vector<float> g(6);
  const auto r = policy_loss(xplor::cpu, b, std::span(g), o);
  CHECK(r.active_tokens == 4.75);
  CHECK(r.loss == Approx(-1.0));
  CHECK(g[1] == Approx(-0.5 / 4.75));
  CHECK(g[2] == Approx(-0.25 / 4.75));
}

TEST_CASE("mask_truncated_completions drops truncated sequences", "[rl][loss]") {
  two_sequences s;
  s.adv = {-1, -1, 1, 1, 1, 1};
  const std::vector<std::uint8_t> truncated{0, 1};
  policy_batch b = s.batch();
  b.truncated = truncated;
  loss_options o;
  o.mask_truncated_completions = true;
  std::vector<float> g(6);
  const auto r = policy_loss(xplor::cpu, b, std::span(g), o);
  CHECK(r.loss == Approx(1.0));  // only the first sequence (l = 1, 1) counts
  CHECK(r.active_tokens == 2.0);
  CHECK(g[3] == 0.0f);
  o.mask_truncated_completions = false;
  CHECK(policy_loss(xplor::cpu, b, std::span(g), o).loss == Approx(-1.0 / 3.0));
}

TEST_CASE("logits_gradient applies the softmax Jacobian and the entropy gradient", "[rl][loss][property]") {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.5f);
  const std::int64_t T = 3, V = 7;
  std::vector<float> z(T * V), out(T * V);
  for (auto& x : z) x = nd(rng);
  const std::vector<std::int32_t> targets{2, 0, 6};
  const std::vector<float> dlogp{0.3f, -1.2f, 0.7f}, dent{0.05f, -0.2f, 0.0f};
  xplor::rl::logits_gradient(xplor::cpu, xplor::as_view2d(std::as_const(z), T, V), targets, dlogp, dent,
                             xplor::as_view2d(out, T, V));
  // The objective in double precision, so the finite differences are exact to ~1e-9.
  auto objective = [&](const std::vector<double>& zz) {
    double s = 0;
    for (std::int64_t t = 0; t < T; ++t) {
      const double* row = zz.data() + t * V;
      double m = row[0], sum = 0, pz = 0;
      for (std::int64_t v = 0; v < V; ++v) m = std::max(m, row[v]);
      for (std::int64_t v = 0; v < V; ++v) sum += std::exp(row[v] - m);
      const double lse = m + std::log(sum);
      for (std::int64_t v = 0; v < V; ++v) pz += std::exp(row[v] - lse) * row[v];
      s += dlogp[t] * (row[targets[t]] - lse) + dent[t] * (lse - pz);
    }
    return s;
  };
  const std::vector<double> zd(z.begin(), z.end());
  for (std::int64_t k = 0; k < T * V; ++k) {
    auto zp = zd, zm = zd;
    zp[k] += 1e-5;
    zm[k] -= 1e-5;
    REQUIRE(out[k] == Approx((objective(zp) - objective(zm)) / 2e-5).epsilon(1e-5).margin(1e-7));
  }
  // Each row of the pure log-prob part sums to 0 (softmax Jacobian).
  std::vector<float> plain(T * V);
  xplor::rl::logits_gradient(xplor::cpu, xplor::as_view2d(std::as_const(z), T, V), targets, dlogp, {},
                             xplor::as_view2d(plain, T, V));
  for (std::int64_t t = 0; t < T; ++t) {
    double row_sum = 0;
    for (std::int64_t v = 0; v < V; ++v) row_sum += plain[t * V + v];
    CHECK(row_sum == Approx(0.0).margin(1e-6));
  }
  const std::vector<std::int32_t> bad_targets{2, 7, 0};
  CHECK_THROWS_WITH(xplor::rl::logits_gradient(xplor::cpu, xplor::as_view2d(std::as_const(z), T, V),
                                               bad_targets, dlogp, {}, xplor::as_view2d(plain, T, V)),
                    Catch::Contains("targets[1] is outside [0, 7)"));
}

TEST_CASE("policy_loss rejects bad input", "[rl][loss]") {
  two_sequences s;
  s.adv.assign(6, 1.0f);
  std::vector<float> g(6);
  policy_batch b = s.batch();
  loss_options o;
  o.epsilon = 0.0f;
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, b, std::span(g), o), Catch::Contains("epsilon = 0"));
  o = {};
  o.beta = 0.1f;
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, b, std::span(g), o), Catch::Contains("needs ref_logp"));
  o = {};
  o.type = loss_type::dr_grpo;
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, b, std::span(g), o),
                    Catch::Contains("max_completion_length > 0"));
  o = {};
  o.delta = 1.1f;
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, b, std::span(g), o), Catch::Contains("delta = 1.1"));
  const std::vector<float> short_adv(5, 1.0f);
  b.advantages = short_adv;
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, b, std::span(g)),
                    Catch::Contains("advantages has 5 elements for 6"));
  b = s.batch();
  s.logp[3] = NAN;
  b.logp = s.logp;
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, b, std::span(g)), Catch::Contains("logp[3] is not finite"));
  s.logp[3] = -1.0f;
  const std::vector<std::int64_t> bad_offsets{0, 4, 3, 6};
  b = s.batch();
  b.sequence_offsets = bad_offsets;
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, b, std::span(g)), Catch::Contains("not non-decreasing"));
  // Masks outside [0, 1] flipped (-1) or doubled (2) a token's gradient without a word.
  b = s.batch();
  for (const float w : {-1.0f, 2.0f, NAN, 1.0000001f}) {
    const std::vector<float> mask{1, 1, 0, w, 1, 1};
    b.mask = mask;
    CHECK_THROWS_WITH(policy_loss(xplor::cpu, b, std::span(g)), Catch::Contains("mask[3] is outside [0, 1]"));
  }
  o = {};
  o.type = loss_type::dapo;
  o.num_items_in_batch = std::numeric_limits<double>::infinity();
  b = s.batch();
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, b, std::span(g), o),
                    Catch::Contains("num_items_in_batch = inf must be finite and positive"));
  const std::vector<float> seq{1.0f};
  std::vector<float> out(6);
  CHECK_THROWS_WITH(broadcast_to_tokens(xplor::cpu, std::span<const float>(seq),
                                        std::span<const std::int64_t>(s.offsets), std::span(out)),
                    Catch::Contains("values has 1 elements for 2 sequences"));
}
