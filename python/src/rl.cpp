// xplor.rl: group advantages (every estimator and scaling, ragged groups), discounted returns and
// ReBN, and the policy losses with d loss / d logp (rl/advantage.hpp, loss.hpp, presets.hpp).
#include <cmath>

#include <nlohmann/json.hpp>

#include "common.hpp"
#include "communicator.hpp"
#include "xplor/dist/advantage.hpp"
#include "xplor/rl/advantage.hpp"
#include "xplor/rl/loss.hpp"
#include "xplor/rl/presets.hpp"
#include "xplor/rl/reward_aggregation.hpp"

namespace xplor::python {
namespace {

using namespace xplor::rl;

// Enum <-> name tables: the options take the names TRL's and verl's configs use for them.
template <class E>
struct names;
template <>
struct names<scale_rewards> {
  static constexpr std::pair<const char*, scale_rewards> table[] = {
      {"group", scale_rewards::group}, {"batch", scale_rewards::batch}, {"none", scale_rewards::none}};
};
template <>
struct names<std_kind> {
  static constexpr std::pair<const char*, std_kind> table[] = {{"unbiased", std_kind::unbiased},
                                                               {"population", std_kind::population}};
};
template <>
struct names<single_response> {
  static constexpr std::pair<const char*, single_response> table[] = {
      {"zero_advantage", single_response::zero_advantage}, {"mean0_std1", single_response::mean0_std1}};
};
template <>
struct names<estimator> {
  static constexpr std::pair<const char*, estimator> table[] = {{"grpo", estimator::grpo},
                                                                {"rloo", estimator::rloo},
                                                                {"reinforce_pp", estimator::reinforce_pp},
                                                                {"opo", estimator::opo},
                                                                {"pass_at_k", estimator::pass_at_k},
                                                                {"gpg", estimator::gpg}};
};
template <>
struct names<loss_type> {
  static constexpr std::pair<const char*, loss_type> table[] = {
      {"grpo", loss_type::grpo},
      {"bnpo", loss_type::bnpo},
      {"dr_grpo", loss_type::dr_grpo},
      {"dapo", loss_type::dapo},
      {"seq_mean_token_sum", loss_type::seq_mean_token_sum},
      {"seq_mean_token_sum_norm", loss_type::seq_mean_token_sum_norm},
      {"token_sum", loss_type::token_sum}};
};
template <>
struct names<kl_estimator> {
  static constexpr std::pair<const char*, kl_estimator> table[] = {{"k1", kl_estimator::k1},
                                                                   {"k2", kl_estimator::k2},
                                                                   {"k3", kl_estimator::k3},
                                                                   {"abs", kl_estimator::abs}};
};
template <>
struct names<ratio_level> {
  static constexpr std::pair<const char*, ratio_level> table[] = {{"token", ratio_level::token},
                                                                  {"sequence", ratio_level::sequence}};
};
template <>
struct names<policy_loss_mode> {
  static constexpr std::pair<const char*, policy_loss_mode> table[] = {
      {"clip", policy_loss_mode::clip},         {"cispo", policy_loss_mode::cispo},
      {"sapo", policy_loss_mode::sapo},         {"gpg", policy_loss_mode::gpg},
      {"clip_cov", policy_loss_mode::clip_cov}, {"kl_cov", policy_loss_mode::kl_cov},
      {"geo_mean", policy_loss_mode::geo_mean}, {"vespo", policy_loss_mode::vespo}};
};
template <>
struct names<entropy_aggregation> {
  static constexpr std::pair<const char*, entropy_aggregation> table[] = {
      {"token_mean", entropy_aggregation::token_mean}, {"loss_type", entropy_aggregation::loss_type}};
};

template <class E>
E from_name(std::string_view name, const char* what) {
  std::string known;
  for (const auto& [n, e] : names<E>::table) {
    if (name == n) return e;
    known += known.empty() ? n : std::string(", ") + n;
  }
  xplor::detail::fail("xplor.rl", what, " = '", name, "' is not one of ", known);
}
template <class E>
std::string to_name(E e) {
  for (const auto& [n, v] : names<E>::table)
    if (v == e) return n;
  return "?";
}

// A read-write property of an enum field, by name.
template <class C, class E>
void enum_property(nb::class_<C>& cls, const char* name, E C::*field) {
  cls.def_prop_rw(
      name, [field](const C& c) { return to_name(c.*field); },
      [field, name](C& c, std::string_view v) { c.*field = from_name<E>(v, name); });
}

nb::dict report_dict(const advantage_report& r) {
  nb::dict d;
  d["num_groups"] = r.num_groups;
  d["degenerate_groups"] = r.degenerate_groups;
  d["frac_zero_std"] = r.frac_zero_std();
  d["batch_mean"] = r.batch_mean;
  d["batch_std"] = r.batch_std;
  return d;
}

nb::dict result_dict(const loss_result& r) {
  nb::dict d;
  d["loss"] = r.loss;
  d["policy_loss"] = r.policy_loss;
  d["kl"] = r.kl;
  d["kl_loss"] = r.kl_loss;
  d["entropy"] = r.entropy;
  d["entropy_loss"] = r.entropy_loss;
  d["clip_low_fraction"] = r.clip_low_fraction;
  d["clip_high_fraction"] = r.clip_high_fraction;
  d["pg_clipfrac"] = r.pg_clipfrac;
  d["pg_clipfrac_lower"] = r.pg_clipfrac_lower;
  d["ppo_kl"] = r.ppo_kl;
  d["mean_ratio"] = r.mean_ratio;
  d["active_tokens"] = r.active_tokens;
  return d;
}

// Token arrays of the loss: 1-D (flat, with sequence offsets) or 2-D (padded [B, L]) of any
// strides; float32 arrays are read in place.
using token_array = nb::ndarray<const float, nb::device::cpu>;

view2d<const float> view_of(const token_array& a, const char* name) {
  constexpr const char* fn = "xplor.rl.policy_loss";
  xplor::detail::require(a.ndim() == 2, fn, name, " has ", a.ndim(), " dimensions; a padded batch is [B, L]");
  return view2d<const float>(a.data(),
                             {static_cast<std::int64_t>(a.shape(0)), static_cast<std::int64_t>(a.shape(1))},
                             {a.stride(0), a.stride(1)});
}
std::span<const float> flat_of(const token_array& a, const char* name) {
  constexpr const char* fn = "xplor.rl.policy_loss";
  xplor::detail::require(a.ndim() == 1, fn, name, " has ", a.ndim(), " dimensions; a flat batch is [T]");
  xplor::detail::require(a.shape(0) <= 1 || a.stride(0) == 1, fn, name, " is strided (stride ", a.stride(0),
                         "); pass a contiguous array");
  return {a.data(), a.shape(0)};
}

}  // namespace

void bind_rl(nb::module_& m) {
  auto adv = nb::class_<advantage_options>(
      m, "AdvantageOptions",
      "Group-advantage options; the defaults are TRL GRPOTrainer's (group scaling, Bessel std, eps 1e-4 "
      "added to "
      "the std, a group of one gets advantage 0). verl_advantage_options() gives verl's.");
  adv.def(nb::init<>())
      .def_rw("eps", &advantage_options::eps)
      .def_rw("degenerate_threshold", &advantage_options::degenerate_threshold);
  enum_property(adv, "scale", &advantage_options::scale);
  enum_property(adv, "std", &advantage_options::std);
  enum_property(adv, "group_of_one", &advantage_options::group_of_one);
  m.def(
      "verl_advantage_options", [] { return xplor::rl::verl_options(); },
      "verl's GRPO advantages: unbiased std, eps 1e-6, a group of one gets mean 0 and std 1.");

  m.def(
      "advantages",
      [](in1<float> rewards, std::optional<std::int64_t> group_size, std::optional<in1<std::int64_t>> offsets,
         std::string_view kind, std::optional<advantage_options> options, std::optional<in1<float>> lengths,
         std::optional<out1<float>> out) {
        constexpr const char* fn = "xplor.rl.advantages";
        const advantage_options o = options.value_or(advantage_options{});
        const estimator e = from_name<estimator>(kind, "estimator");
        const auto n = static_cast<std::int64_t>(rewards.shape(0));
        xplor::detail::require(group_size.has_value() != offsets.has_value(), fn,
                               "give exactly one of group_size (equal groups) and offsets (ragged groups)");
        auto [array, span] = output(out, rewards.shape(0), fn, "out");
        std::vector<std::uint8_t> degenerate;
        advantage_report r;
        {
          nb::gil_scoped_release release;
          if (group_size) {
            xplor::detail::require(*group_size > 0 && n % *group_size == 0, fn, "group_size = ", *group_size,
                                   " must be positive and divide the ", n, " rewards");
            const equal_groups g(n / *group_size, *group_size);
            degenerate.resize(static_cast<std::size_t>(g.num_groups()));
            r = compute_advantages(cpu, e, span_of(rewards), g, span, o, std::span<std::uint8_t>(degenerate),
                                   span_of(lengths));
          } else {
            const ragged_groups g(span_of(*offsets), n);
            degenerate.resize(static_cast<std::size_t>(g.num_groups()));
            r = compute_advantages(cpu, e, span_of(rewards), g, span, o, std::span<std::uint8_t>(degenerate),
                                   span_of(lengths));
          }
        }
        return std::make_pair(array, report_dict(r));
      },
      nb::arg("rewards"), nb::kw_only(), nb::arg("group_size") = nb::none(), nb::arg("offsets") = nb::none(),
      nb::arg("estimator") = "grpo", nb::arg("options") = nb::none(), nb::arg("lengths") = nb::none(),
      nb::arg("out") = nb::none(),
      "(advantages float32, report): one advantage per response over groups of `group_size` consecutive "
      "responses or ragged groups rewards[offsets[g]:offsets[g+1]]. estimator: grpo (r - mean_g) / (std_g + "
      "eps) "
      "(TRL, verl; scale group/batch/none), rloo, reinforce_pp (ProRL/BroRL), opo (needs lengths), "
      "pass_at_k, "
      "gpg. report: num_groups, degenerate_groups, frac_zero_std (TRL's), batch_mean, batch_std.");

  m.def(
      "_dist_advantages",
      [](nb::handle comm, in1<float> rewards, in1<std::int64_t> offsets, std::string_view kind,
         std::optional<advantage_options> options) {
        const advantage_options o = options.value_or(advantage_options{});
        const estimator e = from_name<estimator>(kind, "estimator");
        py_communicator c(comm);
        auto [array, span] = new_array<float>(rewards.shape(0));
        advantage_report r;
        {
          nb::gil_scoped_release release;
          r = xplor::dist::compute_advantages(c, e, span_of(rewards), span_of(offsets), span, o);
        }
        return std::make_pair(nb::cast(array), report_dict(r));
      },
      nb::arg("comm"), nb::arg("rewards"), nb::kw_only(), nb::arg("offsets"), nb::arg("estimator") = "grpo",
      nb::arg("options") = nb::none(),
      "advantages over the groups of every rank (xplor.dist.advantages): this rank's rewards and its local "
      "group offsets (whole groups, rank 0's first); equal, bit for bit, to this rank's slice of the "
      "single-process advantages; the report is the global one. A collective: every rank calls it.");
  m.def(
      "aggregate_rewards",
      [](in2<float> rewards_per_func, in1<float> weights, std::int64_t group_size, std::string_view mode,
         std::string_view scale, float eps) {
        constexpr const char* fn = "xplor.rl.aggregate_rewards";
        aggregate_options o;
        if (mode == "sum_then_normalize")
          o.mode = aggregation::sum_then_normalize;
        else if (mode == "normalize_then_sum")
          o.mode = aggregation::normalize_then_sum;
        else
          xplor::detail::fail(fn, "mode = '", mode, "' is not one of sum_then_normalize, normalize_then_sum");
        o.scale = from_name<scale_rewards>(scale, "scale");
        o.eps = eps;
        const auto n = static_cast<std::int64_t>(rewards_per_func.shape(0));
        xplor::detail::require(weights.shape(0) == rewards_per_func.shape(1), fn, "weights has ",
                               weights.shape(0), " entries for ", rewards_per_func.shape(1),
                               " reward functions");
        xplor::detail::require(group_size > 0 && n % group_size == 0, fn, "group_size = ", group_size,
                               " must be positive and divide the ", n, " samples");
        std::vector<std::optional<float>> values(rewards_per_func.size());
        for (std::size_t i = 0; i < values.size(); ++i)
          if (!std::isnan(rewards_per_func.data()[i])) values[i] = rewards_per_func.data()[i];
        aggregate_result r;
        {
          nb::gil_scoped_release release;
          r = aggregate_rewards(std::span<const std::optional<float>>(values), span_of(weights),
                                equal_groups(n / group_size, group_size), o);
        }
        return nb::make_tuple(to_numpy(std::move(r.advantages)), to_numpy(std::move(r.rewards)),
                              r.frac_zero_std);
      },
      nb::arg("rewards_per_func"), nb::arg("weights"), nb::kw_only(), nb::arg("group_size"),
      nb::arg("mode") = "sum_then_normalize", nb::arg("scale") = "group", nb::arg("eps") = 1e-4f,
      "TRL GRPOTrainer's advantage block for several reward functions: rewards_per_func [samples, K] (NaN: "
      "not "
      "applicable, as TRL's None), weights [K], groups of group_size consecutive samples. Returns "
      "(advantages, "
      "weighted rewards, frac_reward_zero_std). multi_objective_aggregation: sum_then_normalize (weighted "
      "sum, "
      "then GRPO with `scale`) or normalize_then_sum (per-function group z-scores, weighted sum, batch "
      "z-score).");

  m.def(
      "discounted_returns",
      [](in1<float> rewards, in1<std::int64_t> episode_offsets, float gamma) {
        auto [array, span] = new_array<float>(rewards.shape(0));
        nb::gil_scoped_release release;
        discounted_returns(cpu, span_of(rewards), span_of(episode_offsets), gamma, span);
        return array;
      },
      nb::arg("rewards"), nb::arg("episode_offsets"), nb::arg("gamma"),
      "G_t = r_t + gamma G_{t+1} within each episode rewards[offsets[e]:offsets[e+1]] (GEM, multi-turn).");
  m.def(
      "rebn",
      [](in1<float> returns, float eps, std::string_view std_name, std::optional<out1<float>> out) {
        rebn_options o;
        o.eps = eps;
        o.std = from_name<std_kind>(std_name, "std");
        auto [array, span] = output(out, returns.shape(0), "xplor.rl.rebn", "out");
        advantage_report r;
        {
          nb::gil_scoped_release release;
          r = rebn_advantages(cpu, span_of(returns), span, o);
        }
        return std::make_pair(array, report_dict(r));
      },
      nb::arg("returns"), nb::kw_only(), nb::arg("eps") = 1e-9f, nb::arg("std") = "population",
      nb::arg("out") = nb::none(),
      "Return Batch Normalization (GEM): A = (G - mean(G)) / (std(G) + eps) over every turn of the batch "
      "(population std, eps 1e-9). Returns (advantages, report).");

  auto lo = nb::class_<loss_options>(
      m, "LossOptions",
      "Policy-loss options; defaults are TRL GRPOConfig's (clip mode, loss_type dapo, epsilon 0.2, beta 0). "
      "trl_options(config) / verl_options(config) map a trainer's own config.");
  lo.def(nb::init<>())
      .def_rw("epsilon", &loss_options::epsilon)
      .def_rw("epsilon_high", &loss_options::epsilon_high)
      .def_rw("delta", &loss_options::delta)
      .def_rw("dual_clip", &loss_options::dual_clip)
      .def_rw("sequence_ratio_token_gradient", &loss_options::sequence_ratio_token_gradient)
      .def_rw("log_ratio_clamp", &loss_options::log_ratio_clamp)
      .def_rw("sequence_log_ratio_max", &loss_options::sequence_log_ratio_max)
      .def_rw("beta", &loss_options::beta)
      .def_rw("kl_bias_correction", &loss_options::kl_bias_correction)
      .def_rw("kl_clamp", &loss_options::kl_clamp)
      .def_rw("kl_straight_through", &loss_options::kl_straight_through)
      .def_rw("entropy_coef", &loss_options::entropy_coef)
      .def_rw("sapo_tau_pos", &loss_options::sapo_tau_pos)
      .def_rw("sapo_tau_neg", &loss_options::sapo_tau_neg)
      .def_rw("top_entropy_quantile", &loss_options::top_entropy_quantile)
      .def_rw("off_policy_mask_threshold", &loss_options::off_policy_mask_threshold)
      .def_rw("max_completion_length", &loss_options::max_completion_length)
      .def_rw("mask_truncated_completions", &loss_options::mask_truncated_completions)
      .def_rw("exclude_empty_sequences", &loss_options::exclude_empty_sequences)
      .def_rw("num_items_in_batch", &loss_options::num_items_in_batch)
      .def_rw("num_sequences_in_batch", &loss_options::num_sequences_in_batch)
      .def_rw("loss_scale_factor", &loss_options::loss_scale_factor)
      .def_rw("dp_size", &loss_options::dp_size);
  enum_property(lo, "mode", &loss_options::mode);
  enum_property(lo, "type", &loss_options::type);
  enum_property(lo, "kl", &loss_options::kl);
  enum_property(lo, "importance_sampling_level", &loss_options::importance_sampling_level);
  enum_property(lo, "entropy_agg", &loss_options::entropy_agg);

  const auto preset = [](trainer_options t) { return std::make_pair(t.advantages, t.loss); };
  m.def(
      "trl_options_json",
      [preset](std::string_view config) { return preset(trl_options(nlohmann::json::parse(config))); },
      nb::arg("config"), "(AdvantageOptions, LossOptions) of a TRL GRPOConfig given as JSON text.");
  m.def(
      "verl_options_json",
      [preset](std::string_view config) {
        return preset(xplor::rl::verl_options(nlohmann::json::parse(config)));
      },
      nb::arg("config"),
      "(AdvantageOptions, LossOptions) of a verl actor + algorithm config given as JSON text.");

  m.def(
      "policy_loss",
      [](const token_array& logp, const token_array& advantages, std::optional<token_array> mask,
         std::optional<in1<std::int64_t>> sequence_offsets, std::optional<token_array> old_logp,
         std::optional<token_array> ref_logp, std::optional<token_array> entropies,
         std::optional<in1<std::uint8_t>> truncated, std::optional<token_array> is_weights,
         std::optional<token_array> sampling_logp, std::optional<loss_options> options) {
        constexpr const char* fn = "xplor.rl.policy_loss";
        const loss_options o = options.value_or(loss_options{});
        const bool want_dentropy = entropies.has_value() && o.entropy_coef != 0.0f;
        const std::size_t T = logp.size();
        auto [dlogp, dlogp_span] = new_array<float>(T);
        auto [dentropy, dentropy_span] = new_array<float>(want_dentropy ? T : 0);
        loss_result r;
        if (logp.ndim() == 2) {
          xplor::detail::require(!sequence_offsets, fn,
                                 "sequence_offsets is for a flat [T] batch; a padded [B, L] batch uses mask");
          xplor::detail::require(mask.has_value(), fn,
                                 "a padded [B, L] batch needs mask (it marks the padding)");
          padded_policy_batch b;
          b.logp = view_of(logp, "logp");
          if (advantages.ndim() == 1) {
            xplor::detail::require(advantages.shape(0) <= 1 || advantages.stride(0) == 1, fn,
                                   "advantages is strided; pass a contiguous array");
            b.sequence_advantages = {advantages.data(), advantages.shape(0)};
          } else {
            b.advantages = view_of(advantages, "advantages");
          }
          b.mask = view_of(*mask, "mask");
          if (old_logp) b.old_logp = view_of(*old_logp, "old_logp");
          if (ref_logp) b.ref_logp = view_of(*ref_logp, "ref_logp");
          if (entropies) b.entropies = view_of(*entropies, "entropies");
          if (is_weights) b.is_weights = view_of(*is_weights, "is_weights");
          if (sampling_logp) b.sampling_logp = view_of(*sampling_logp, "sampling_logp");
          b.truncated = span_of(truncated);
          const auto B = static_cast<std::int64_t>(logp.shape(0)),
                     L = static_cast<std::int64_t>(logp.shape(1));
          const view2d<float> d(dlogp_span.data(), {B, L}, {L, 1});
          const view2d<float> de =
              want_dentropy ? view2d<float>(dentropy_span.data(), {B, L}, {L, 1}) : view2d<float>{};
          nb::gil_scoped_release release;
          r = policy_loss(cpu, b, d, o, de);
        } else {
          xplor::detail::require(sequence_offsets.has_value(), fn,
                                 "a flat [T] batch needs sequence_offsets ([S + 1]); or pass [B, L] arrays");
          policy_batch b;
          b.logp = flat_of(logp, "logp");
          b.advantages = flat_of(advantages, "advantages");
          if (mask) b.mask = flat_of(*mask, "mask");
          if (old_logp) b.old_logp = flat_of(*old_logp, "old_logp");
          if (ref_logp) b.ref_logp = flat_of(*ref_logp, "ref_logp");
          if (entropies) b.entropies = flat_of(*entropies, "entropies");
          if (is_weights) b.is_weights = flat_of(*is_weights, "is_weights");
          if (sampling_logp) b.sampling_logp = flat_of(*sampling_logp, "sampling_logp");
          b.sequence_offsets = span_of(*sequence_offsets);
          b.truncated = span_of(truncated);
          nb::gil_scoped_release release;
          r = policy_loss(cpu, b, dlogp_span, o, dentropy_span);
        }
        // Gradients come back in logp's shape: [B, L] for padded input, flat otherwise.
        const auto shaped = [&logp](nb::object a) {
          return logp.ndim() == 2 ? a.attr("reshape")(logp.shape(0), logp.shape(1)) : a;
        };
        nb::dict stats = result_dict(r);
        if (want_dentropy) stats["dentropy"] = shaped(nb::cast(dentropy));
        nb::object d = shaped(nb::cast(dlogp));
        return nb::make_tuple(r.loss, stats, d);
      },
      nb::arg("logp"), nb::arg("advantages"), nb::kw_only(), nb::arg("mask") = nb::none(),
      nb::arg("sequence_offsets") = nb::none(), nb::arg("old_logp") = nb::none(),
      nb::arg("ref_logp") = nb::none(), nb::arg("entropies") = nb::none(), nb::arg("truncated") = nb::none(),
      nb::arg("is_weights") = nb::none(), nb::arg("sampling_logp") = nb::none(),
      nb::arg("options") = nb::none(),
      "(loss, stats, dlogp): the policy loss of TRL 1.16 / verl 0.9 (every mode, aggregation and KL "
      "estimator; "
      "docs/rl.md) and d loss / d logp per token, so `logp.backward(torch.from_numpy(dlogp))` gives the "
      "gradient. A padded batch passes [B, L] arrays (any strides) with `mask` and advantages [B] or [B, L]; "
      "a "
      "flat batch passes [T] arrays with `sequence_offsets` [S + 1]. stats holds the trainers' logged values "
      "(clip fractions, kl, entropy, ...) and, when entropy_coef != 0, dentropy = d loss / d entropy.");
}

}  // namespace xplor::python
