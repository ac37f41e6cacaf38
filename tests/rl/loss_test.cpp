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

TEST_CASE("loss aggregation: TRL worked numbers (docs/methods.md 6.5)", "[rl][loss]") {
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
  CHECK(loss_type_from_name("seq-mean-token-sum-norm") == loss_type::seq_mean_token_sum_norm);
  // verl 0.9's seq-mean-token-sum-norm: the mean over sequences of their token sums, divided by
  // loss_scale_factor (verl 0.8 divided the plain sum, without the sequence mean); token-sum is
  // the plain sum.
  s.adv.assign(6, -1.0f);
  loss_options norm;
  norm.type = loss_type::seq_mean_token_sum_norm;
  norm.loss_scale_factor = 8.0;
  g.assign(6, 0.0f);
  CHECK(policy_loss(xplor::cpu, s.batch(), std::span(g), norm).loss == Approx(6.0 / (2.0 * 8.0)));
  CHECK(g[0] == Approx(1.0 / 16.0));
  loss_options sum;
  sum.type = loss_type_from_name("token-sum");
  CHECK(policy_loss(xplor::cpu, s.batch(), std::span(g), sum).loss == Approx(6.0));
  CHECK(g[3] == Approx(1.0));
  norm.loss_scale_factor.reset();
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, s.batch(), std::span(g), norm),
                    Catch::Contains("loss_scale_factor"));
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

namespace {
/// A padded [B, L] batch stored row-major, with the flat batch of its valid tokens.
struct padded_case {
  std::int64_t B = 0, L = 0;
  std::vector<float> logp, old_logp, adv, mask;  // row-major [B, L]
  std::vector<float> seq_adv;                    // [B]
};
padded_case random_padded(std::mt19937& gen, std::int64_t B, std::int64_t L) {
  std::uniform_real_distribution<float> lp(-3.0f, -0.05f), jitter(-0.3f, 0.3f), a(-1.5f, 1.5f);
  std::uniform_int_distribution<std::int64_t> len(0, L);
  padded_case c;
  c.B = B;
  c.L = L;
  c.logp.resize(B * L);
  c.old_logp.resize(B * L);
  c.adv.resize(B * L);
  c.mask.resize(B * L);
  c.seq_adv.resize(B);
  for (std::int64_t b = 0; b < B; ++b) {
    c.seq_adv[b] = a(gen);
    const std::int64_t n = len(gen);
    for (std::int64_t j = 0; j < L; ++j) {
      const std::int64_t t = b * L + j;
      c.logp[t] = lp(gen);
      c.old_logp[t] = c.logp[t] + jitter(gen);
      c.adv[t] = c.seq_adv[b];
      c.mask[t] = j < n ? 1.0f : 0.0f;
    }
  }
  return c;
}
/// The same numbers column-major.
std::vector<float> column_major(const std::vector<float>& rm, std::int64_t B, std::int64_t L) {
  std::vector<float> cm(rm.size());
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t j = 0; j < L; ++j) cm[j * B + b] = rm[b * L + j];
  return cm;
}
xplor::view2d<const float> rows(const std::vector<float>& v, std::int64_t B, std::int64_t L) {
  return xplor::make_view(v.data(), {B, L});
}
xplor::view2d<const float> cols(const std::vector<float>& v, std::int64_t B, std::int64_t L) {
  return xplor::view2d<const float>(v.data(), {B, L}, {1, B});
}
}  // namespace

TEST_CASE("padded batches: a column-major [B, L] batch gives the row-major loss", "[rl][loss][padded]") {
  // Hand-computed: B = 2, L = 3, on-policy (ratio 1, l = -A), dapo over 3 active tokens:
  // row 0 has 2 tokens with A = 1, row 1 has 1 token with A = -2: loss = -(1 + 1 - 2) / 3 = 0,
  // and with grpo: mean(-(1 + 1) / 2, -(-2) / 1) = mean(-1, 2) = 0.5.
  const std::vector<float> logp{-1, -1, -1, -1, -1, -1}, adv{1, 1, 1, -2, -2, -2}, mask{1, 1, 0, 1, 0, 0};
  std::vector<float> d(6);
  loss_options grpo;
  grpo.type = loss_type::grpo;
  padded_policy_batch rm;
  rm.logp = rows(logp, 2, 3);
  rm.advantages = rows(adv, 2, 3);
  rm.mask = rows(mask, 2, 3);
  CHECK(policy_loss(xplor::cpu, rm, xplor::make_view(d.data(), {2, 3}), grpo).loss == Approx(0.5));
  CHECK(d == std::vector<float>{-0.25f, -0.25f, 0.0f, 1.0f, 0.0f, 0.0f});  // -A m / n_b / B
  const auto logp_c = column_major(logp, 2, 3), adv_c = column_major(adv, 2, 3),
             mask_c = column_major(mask, 2, 3);
  padded_policy_batch cm;
  cm.logp = cols(logp_c, 2, 3);
  cm.advantages = cols(adv_c, 2, 3);
  cm.mask = cols(mask_c, 2, 3);
  std::vector<float> dc(6);
  CHECK(policy_loss(xplor::cpu, cm, xplor::view2d<float>(dc.data(), {2, 3}, {1, 2}), grpo).loss ==
        Approx(0.5));
  CHECK(dc == column_major(d, 2, 3));
  CHECK(policy_loss(xplor::cpu, cm, xplor::view2d<float>(dc.data(), {2, 3}, {1, 2})).loss == Approx(0.0));
}

TEST_CASE("padded batches equal the flat batch of their valid tokens, in any layout",
          "[rl][loss][padded][property]") {
  std::mt19937 gen(41);
  for (int trial = 0; trial < 60; ++trial) {
    const std::int64_t B = 1 + static_cast<std::int64_t>(gen() % 6),
                       L = 1 + static_cast<std::int64_t>(gen() % 9);
    const padded_case c = random_padded(gen, B, L);
    loss_options o;
    o.type = static_cast<loss_type>(gen() % 5);
    o.max_completion_length = L;
    o.epsilon_high = 0.28f;
    // Flat reference: only the valid tokens, one sequence per row.
    policy_batch flat;
    std::vector<float> fl, fo, fa;
    std::vector<std::int64_t> off{0};
    for (std::int64_t b = 0; b < B; ++b) {
      for (std::int64_t j = 0; j < L; ++j)
        if (c.mask[b * L + j] > 0.0f) {
          fl.push_back(c.logp[b * L + j]);
          fo.push_back(c.old_logp[b * L + j]);
          fa.push_back(c.adv[b * L + j]);
        }
      off.push_back(static_cast<std::int64_t>(fl.size()));
    }
    flat.logp = fl;
    flat.old_logp = fo;
    flat.advantages = fa;
    flat.sequence_offsets = off;
    std::vector<float> fd(fl.size());
    const loss_result want = policy_loss(xplor::cpu, flat, std::span(fd), o);
    // Row-major with per-token advantages; column-major with per-sequence advantages; a block of
    // a wider matrix; per-token advantages as a stride-0 broadcast of the per-sequence ones.
    const auto lc = column_major(c.logp, B, L), oc = column_major(c.old_logp, B, L),
               mc = column_major(c.mask, B, L);
    std::vector<float> wide(static_cast<std::size_t>(B * (L + 3)), 99.0f);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t j = 0; j < L; ++j) wide[b * (L + 3) + j + 1] = c.logp[b * L + j];
    for (int layout = 0; layout < 4; ++layout) {
      padded_policy_batch p;
      p.logp = layout == 1 ? cols(lc, B, L) : rows(c.logp, B, L);
      if (layout == 2) p.logp = xplor::view2d<const float>(wide.data() + 1, {B, L}, {L + 3, 1});
      p.old_logp = layout == 1 ? cols(oc, B, L) : rows(c.old_logp, B, L);
      p.mask = layout == 1 ? cols(mc, B, L) : rows(c.mask, B, L);
      if (layout == 1) {
        p.sequence_advantages = c.seq_adv;
      } else if (layout == 3) {
        p.advantages = xplor::view2d<const float>(c.seq_adv.data(), {B, L}, {1, 0});
      } else {
        p.advantages = rows(c.adv, B, L);
      }
      std::vector<float> d(static_cast<std::size_t>(B * L), 7.0f);
      const auto out =
          layout == 1 ? xplor::view2d<float>(d.data(), {B, L}, {1, B}) : xplor::make_view(d.data(), {B, L});
      const loss_result got = policy_loss(xplor::cpu, p, out, o);
      INFO("trial " << trial << " layout " << layout << " type " << static_cast<int>(o.type));
      CHECK(got.loss == Approx(want.loss).margin(1e-6));
      CHECK(got.clip_high_fraction == Approx(want.clip_high_fraction).margin(1e-9));
      CHECK(got.active_tokens == want.active_tokens);
      std::size_t k = 0;
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t j = 0; j < L; ++j) {
          const float g = out(b, j);
          if (c.mask[b * L + j] > 0.0f) {
            CHECK(g == Approx(fd[k++]).margin(1e-7));
          } else {
            CHECK(g == 0.0f);  // padding gets no gradient
          }
        }
    }
  }
}

TEST_CASE("padded batches: shapes and layouts that cannot be read are errors",
          "[rl][loss][padded][bad_input]") {
  const std::vector<float> x(12, -1.0f), m(12, 1.0f);
  std::vector<float> d(12);
  padded_policy_batch p;
  p.logp = rows(x, 3, 4);
  p.advantages = rows(x, 3, 4);
  p.mask = rows(m, 3, 4);
  CHECK_NOTHROW(policy_loss(xplor::cpu, p, xplor::make_view(d.data(), {3, 4})));
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, p, xplor::make_view(d.data(), {4, 3})),
                    Catch::Contains("dlogp is 4 x 3, logp is 3 x 4"));
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, p, xplor::view2d<float>(d.data(), {3, 4}, {1, 0})),
                    Catch::Contains("maps two elements to one address"));
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, p, xplor::view2d<float>(d.data(), {3, 4}, {2, 1})),
                    Catch::Contains("maps two elements to one address"));
  padded_policy_batch both = p;
  both.sequence_advantages = std::span<const float>(x.data(), 3);
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, both, xplor::make_view(d.data(), {3, 4})),
                    Catch::Contains("not both"));
  padded_policy_batch no_mask = p;
  no_mask.mask = {};
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, no_mask, xplor::make_view(d.data(), {3, 4})),
                    Catch::Contains("mask is 0 x 0"));
  padded_policy_batch short_seq = p;
  short_seq.advantages = {};
  short_seq.sequence_advantages = std::span<const float>(x.data(), 2);
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, short_seq, xplor::make_view(d.data(), {3, 4})),
                    Catch::Contains("sequence_advantages has 2 elements for 3 sequences"));
  std::vector<float> bad_mask(12, 2.0f);
  padded_policy_batch masked = p;
  masked.mask = rows(bad_mask, 3, 4);
  CHECK_THROWS_WITH(policy_loss(xplor::cpu, masked, xplor::make_view(d.data(), {3, 4})),
                    Catch::Contains("outside [0, 1]"));
  // broadcast_to_tokens into a padded view
  std::vector<float> out(12);
  broadcast_to_tokens(xplor::cpu, std::span<const float>(x.data(), 3),
                      xplor::view2d<float>(out.data(), {3, 4}, {1, 3}));
  CHECK(out == std::vector<float>(12, -1.0f));
  CHECK_THROWS_WITH(broadcast_to_tokens(xplor::cpu, std::span<const float>(x.data(), 2),
                                        xplor::make_view(out.data(), {3, 4})),
                    Catch::Contains("values has 2 elements for 3 rows"));
}

TEST_CASE("logits_gradient stays exact at huge logits (shifted-domain log-softmax)", "[rl][loss][logits]") {
  // Two equal logits of 1e8: p = (0.5, 0.5). z - logsumexp(z) would round logsumexp to 1e8 and
  // give p = (1, 1): a gradient of (0, -1) instead of (0.5, -0.5).
  const std::vector<float> z{1e8f, 1e8f};
  const std::vector<std::int32_t> target{0};
  const std::vector<float> dl{1.0f}, de{};
  std::vector<float> out(2);
  logits_gradient(xplor::cpu, xplor::make_view(z.data(), {1, 2}), std::span<const std::int32_t>(target),
                  std::span<const float>(dl), std::span<const float>(de),
                  xplor::make_view(out.data(), {1, 2}));
  CHECK(out[0] == Approx(0.5f));
  CHECK(out[1] == Approx(-0.5f));
}
