// TRL's and verl's settings, by their own option names, as xplor options: a trainer's config
// (TRL's GRPOConfig.to_dict(), verl's actor / algorithm config as JSON) goes in, the
// advantage_options and loss_options that reproduce that trainer's code come out. Keys that do
// not affect advantages or the loss (learning rate, ...) are ignored; a value xplor cannot
// reproduce is an xplor::error naming the key. docs/rl.md has the table of what each option does
// in TRL, in verl and in xplor. Needs nlohmann_json (link xplor::json).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "xplor/core/error.hpp"
#include "xplor/rl/advantage.hpp"
#include "xplor/rl/loss.hpp"
#include "xplor/rl/token_advantage.hpp"

namespace xplor::rl {

/// What a trainer's config sets on xplor's side.
struct trainer_options {
  advantage_options advantages;
  loss_options loss;
};

namespace presets_detail {

inline bool has(const nlohmann::json& j, const char* key) {
  return j.is_object() && j.contains(key) && !j[key].is_null();
}

template <class T>
T get_or(const nlohmann::json& j, const char* key, T fallback, const char* fn) {
  if (!has(j, key)) return fallback;
  try {
    return j[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    xplor::detail::fail(fn, "config[\"", key, "\"] = ", j[key].dump(), " has the wrong type");
  }
}

/// A verl config key, looked up at the top level or in the "policy_loss" sub-config.
inline nlohmann::json verl_key(const nlohmann::json& j, const char* key) {
  if (has(j, key)) return j[key];
  if (has(j, "policy_loss") && has(j["policy_loss"], key)) return j["policy_loss"][key];
  return nullptr;
}

}  // namespace presets_detail

/// TRL 1.16 GRPOConfig → xplor. Reads loss_type, epsilon, epsilon_high, delta, beta,
/// use_bias_correction_kl, importance_sampling_level, entropy_coef, use_adaptive_entropy (must be
/// false: its controller is training-loop state), top_entropy_quantile, off_policy_mask_threshold,
/// max_completion_length, mask_truncated_completions, sapo_temperature_pos/neg, scale_rewards.
/// The per-batch num_items_in_batch and vLLM importance ratios are inputs: set
/// loss.num_items_in_batch and batch.is_weights.
inline trainer_options trl_options(const nlohmann::json& config = nlohmann::json::object()) {
  constexpr const char* fn = "xplor::rl::trl_options";
  using presets_detail::get_or;
  trainer_options t;  // xplor's defaults are TRL's
  loss_options& o = t.loss;
  const std::string loss_type = get_or<std::string>(config, "loss_type", "dapo", fn);
  const float epsilon = get_or<float>(config, "epsilon", 0.2f, fn);
  const float epsilon_high = get_or<float>(config, "epsilon_high", epsilon, fn);
  o.epsilon = epsilon;
  o.epsilon_high = epsilon_high;
  if (loss_type == "grpo" || loss_type == "bnpo" || loss_type == "dr_grpo" || loss_type == "dapo") {
    o.type = loss_type_from_name(loss_type);
  } else if (loss_type == "luspo") {
    o.type = loss_type::seq_mean_token_sum;
  } else if (loss_type == "cispo") {
    // TRL: -sg(min(rho, epsilon_high)) A logp: no lower bound, an absolute cap.
    o.mode = policy_loss_mode::cispo;
    o.type = loss_type::dapo;
    o.epsilon = 1.0f;
    o.epsilon_high = epsilon_high - 1.0f;
  } else if (loss_type == "sapo") {
    o.mode = policy_loss_mode::sapo;
    o.type = loss_type::grpo;
  } else if (loss_type == "vespo") {
    o.mode = policy_loss_mode::vespo;
    o.type = loss_type::dapo;
    o.vespo_k_pos = get_or<float>(config, "vespo_k_pos", 2.0f, fn);
    o.vespo_lambda_pos = get_or<float>(config, "vespo_lambda_pos", 3.0f, fn);
    o.vespo_k_neg = get_or<float>(config, "vespo_k_neg", 3.0f, fn);
    o.vespo_lambda_neg = get_or<float>(config, "vespo_lambda_neg", 2.0f, fn);
  } else {
    xplor::detail::fail(fn, "config[\"loss_type\"] = '", loss_type,
                        "' is not reproduced (grpo, bnpo, dr_grpo, dapo, luspo, cispo, sapo, vespo are)");
  }
  if (presets_detail::has(config, "delta")) o.delta = get_or<float>(config, "delta", 0.0f, fn);
  o.beta = get_or<float>(config, "beta", 0.0f, fn);
  o.kl = kl_estimator::k3;
  o.kl_bias_correction = get_or<bool>(config, "use_bias_correction_kl", true, fn);
  const std::string level = get_or<std::string>(config, "importance_sampling_level", "token", fn);
  xplor::detail::require(level == "token" || level == "sequence", fn,
                         "config[\"importance_sampling_level\"] = '", level, "' is not token or sequence");
  o.importance_sampling_level = level == "sequence" ? ratio_level::sequence : ratio_level::token;
  o.entropy_coef = get_or<float>(config, "entropy_coef", 0.0f, fn);
  o.entropy_agg = entropy_aggregation::token_mean;
  xplor::detail::require(
      !get_or<bool>(config, "use_adaptive_entropy", false, fn), fn,
      "config[\"use_adaptive_entropy\"] = true: the adaptive entropy controller is training-loop "
      "state; set loss.entropy_coef each step instead");
  o.top_entropy_quantile = get_or<float>(config, "top_entropy_quantile", 1.0f, fn);
  if (presets_detail::has(config, "off_policy_mask_threshold"))
    o.off_policy_mask_threshold = get_or<float>(config, "off_policy_mask_threshold", 0.0f, fn);
  o.max_completion_length = get_or<std::int64_t>(config, "max_completion_length", 256, fn);
  o.mask_truncated_completions = get_or<bool>(config, "mask_truncated_completions", false, fn);
  o.sapo_tau_pos = get_or<float>(config, "sapo_temperature_pos", 1.0f, fn);
  o.sapo_tau_neg = get_or<float>(config, "sapo_temperature_neg", 1.05f, fn);

  advantage_options& a = t.advantages;
  nlohmann::json scale =
      presets_detail::has(config, "scale_rewards") ? config["scale_rewards"] : nlohmann::json("group");
  if (scale.is_boolean()) scale = scale.get<bool>() ? "group" : "none";  // TRL's old boolean form
  const std::string s = scale.is_string() ? scale.get<std::string>() : scale.dump();
  xplor::detail::require(s == "group" || s == "batch" || s == "none", fn,
                         "config[\"scale_rewards\"] = ", scale.dump(), " is not group, batch or none");
  a.scale = s == "group" ? scale_rewards::group : (s == "batch" ? scale_rewards::batch : scale_rewards::none);
  return t;
}

/// verl (0.9) actor + algorithm config → xplor. Reads (at the top level or under "policy_loss")
/// loss_mode, loss_agg_mode, clip_ratio, clip_ratio_low, clip_ratio_high, clip_ratio_c, tau_pos,
/// tau_neg, clip_cov_ratio, clip_cov_lb, clip_cov_ub, kl_cov_ratio, ppo_kl_coef, entropy_coeff,
/// use_kl_loss, kl_loss_coef, kl_loss_type, loss_scale_factor, global_batch_info {dp_size,
/// batch_num_tokens, global_batch_size}, and the algorithm's norm_adv_by_std_in_grpo. Defaults
/// are verl's ActorConfig's. verl's clamps (log-ratio +-20, low_var_kl's +-20 and +-10, GSPO's
/// 10), its dual clip, its seq-mean denominators and SAPO's fixed seq-mean-token-mean come with it.
inline trainer_options verl_options(const nlohmann::json& config) {
  constexpr const char* fn = "xplor::rl::verl_options";
  auto key_or = [&](const char* key, auto fallback) {
    const nlohmann::json v = presets_detail::verl_key(config, key);
    if (v.is_null()) return fallback;
    try {
      return v.get<decltype(fallback)>();
    } catch (const nlohmann::json::exception&) {
      xplor::detail::fail(fn, "config[\"", key, "\"] = ", v.dump(), " has the wrong type");
    }
  };
  trainer_options t;
  t.advantages = verl_options();
  t.advantages.scale = key_or("norm_adv_by_std_in_grpo", true) ? scale_rewards::group : scale_rewards::none;
  t.advantages.eps = key_or("epsilon", 1e-6f);  // the estimators' epsilon argument
  loss_options& o = t.loss;
  const std::string mode = key_or("loss_mode", std::string("vanilla"));
  o.type = loss_type_from_name(key_or("loss_agg_mode", std::string("token-mean")));
  o.exclude_empty_sequences = true;
  // ActorConfig: clip_ratio_low / high default to 0.2 themselves; clip_ratio fills in only for null.
  const float clip = key_or("clip_ratio", 0.2f);
  const nlohmann::json low = presets_detail::verl_key(config, "clip_ratio_low"),
                       high = presets_detail::verl_key(config, "clip_ratio_high");
  o.epsilon = config.contains("clip_ratio_low") && low.is_null() ? clip : key_or("clip_ratio_low", 0.2f);
  o.epsilon_high =
      config.contains("clip_ratio_high") && high.is_null() ? clip : key_or("clip_ratio_high", 0.2f);
  if (mode == "vanilla") {
    o.dual_clip = key_or("clip_ratio_c", 3.0f);
    o.log_ratio_clamp = 20.0f;
  } else if (mode == "gspo") {
    o.importance_sampling_level = ratio_level::sequence;
    o.sequence_ratio_token_gradient = true;
    o.sequence_log_ratio_max = 10.0f;
  } else if (mode == "sapo") {  // SAPO's own term is always seq-mean-token-mean
    o.mode = policy_loss_mode::sapo;
    o.log_ratio_clamp = 20.0f;
    o.policy_type = loss_type::grpo;
    o.sapo_tau_pos = key_or("tau_pos", 1.0f);
    o.sapo_tau_neg = key_or("tau_neg", 1.05f);
  } else if (mode == "gpg") {
    o.mode = policy_loss_mode::gpg;
  } else if (mode == "clip_cov") {
    o.mode = policy_loss_mode::clip_cov;
    o.clip_cov_ratio = key_or("clip_cov_ratio", 2e-4f);
    o.clip_cov_lb = key_or("clip_cov_lb", 1.0f);
    o.clip_cov_ub = key_or("clip_cov_ub", 5.0f);
  } else if (mode == "kl_cov") {
    o.mode = policy_loss_mode::kl_cov;
    o.kl_cov_ratio = key_or("kl_cov_ratio", 2e-4f);
    o.kl_cov_coef = key_or("ppo_kl_coef", 0.1f);
  } else if (mode == "geo_mean") {
    o.mode = policy_loss_mode::geo_mean;
  } else if (mode == "cispo") {
    o.mode = policy_loss_mode::cispo;
    o.log_ratio_clamp = 20.0f;
  } else {
    xplor::detail::fail(
        fn, "config[\"loss_mode\"] = '", mode,
        "' is not reproduced (vanilla, gspo, sapo, gpg, clip_cov, kl_cov, geo_mean, cispo are)");
  }
  o.entropy_coef = key_or("entropy_coeff", 0.0f);
  o.entropy_agg = entropy_aggregation::loss_type;
  o.kl_bias_correction = false;
  if (key_or("use_kl_loss", false)) {
    o.beta = key_or("kl_loss_coef", 0.001f);
    std::string kind = key_or("kl_loss_type", std::string("low_var_kl"));
    if (!kind.empty() && kind.back() == '+') {  // straight-through: the value, with k2's gradient
      o.kl_straight_through = true;
      kind.pop_back();
    }
    if (kind == "kl" || kind == "k1") {
      o.kl = kl_estimator::k1;
    } else if (kind == "abs") {
      o.kl = kl_estimator::abs;
    } else if (kind == "mse" || kind == "k2") {
      o.kl = kl_estimator::k2;
    } else if (kind == "low_var_kl" || kind == "k3") {
      o.kl = kl_estimator::k3;
      o.kl_clamp = true;
    } else {
      xplor::detail::fail(fn, "config[\"kl_loss_type\"] = '", key_or("kl_loss_type", std::string()),
                          "' is not kl, k1, abs, mse, k2, low_var_kl or k3 (with an optional +)");
    }
  }
  if (presets_detail::has(config, "loss_scale_factor"))
    o.loss_scale_factor = key_or("loss_scale_factor", 1.0);
  if (presets_detail::has(config, "global_batch_info")) {
    const nlohmann::json& g = config["global_batch_info"];
    if (presets_detail::has(g, "loss_scale_factor"))
      o.loss_scale_factor = presets_detail::get_or<double>(g, "loss_scale_factor", 1.0, fn);
    const double dp = presets_detail::get_or<double>(g, "dp_size", 1.0, fn);
    xplor::detail::require(dp >= 1.0, fn, "global_batch_info.dp_size = ", dp, " must be >= 1");
    // verl: sum / batch_num_tokens * dp_size, i.e. a local normaliser of batch_num_tokens / dp_size.
    if (presets_detail::has(g, "batch_num_tokens"))
      o.num_items_in_batch = presets_detail::get_or<double>(g, "batch_num_tokens", 1.0, fn) / dp;
    if (presets_detail::has(g, "global_batch_size"))
      o.num_sequences_in_batch = presets_detail::get_or<double>(g, "global_batch_size", 1.0, fn) / dp;
    o.dp_size = dp;
  }
  return t;
}

/// The inputs of verl's advantage estimators, flattened token-major (a padded [B, L] batch is
/// offsets b * L). group_index is verl's index (uid) per response: responses with the same id
/// form a group, in any order.
template <class Space>
struct basic_token_reward_batch {
  span_in<Space, const float> token_rewards = {};       // [T] verl token_level_rewards
  span_in<Space, const float> mask = {};                // [T] response_mask
  span_in<Space, const float> values = {};              // [T] the critic's values (gae)
  span_in<Space, const float> reward_baselines = {};    // [S] greedy-response rewards (remax)
  std::span<const std::int64_t> sequence_offsets = {};  // [S + 1], host
  std::span<const std::int64_t> group_index = {};       // [S] group id per response, host
};
using token_reward_batch = basic_token_reward_batch<host_memory>;

/// verl's compute_advantage by adv_estimator name (gae, grpo, grpo_passk, rloo,
/// reinforce_plus_plus_baseline, reinforce_plus_plus, remax, opo, gpg) with the algorithm config's
/// gamma, lam and norm_adv_by_std_in_grpo: advantages and returns [T], as verl returns them.
template <execution_tag Exec>
void verl_advantages(Exec exec, std::string_view adv_estimator,
                     const basic_token_reward_batch<memory_of<Exec>>& batch, const nlohmann::json& algorithm,
                     span_for<Exec, float> advantages, span_for<Exec, float> returns) {
  constexpr const char* fn = "xplor::rl::verl_advantages";
  const auto T = static_cast<std::int64_t>(batch.token_rewards.size());
  const auto S = static_cast<std::int64_t>(batch.sequence_offsets.size()) - 1;
  const ragged_groups sequences(batch.sequence_offsets, T);
  const float gamma = presets_detail::get_or<float>(algorithm, "gamma", 1.0f, fn);
  const float lam = presets_detail::get_or<float>(algorithm, "lam", 1.0f, fn);
  const trainer_options preset = verl_options(algorithm);
  if (adv_estimator == "gae") {
    gae_advantages(exec, batch.token_rewards, batch.values, batch.mask, batch.sequence_offsets, gamma, lam,
                   advantages, returns);
    return;
  }
  if (adv_estimator == "reinforce_plus_plus") {
    reinforce_pp_token_advantages(exec, batch.token_rewards, batch.mask, batch.sequence_offsets, gamma,
                                  advantages, returns);
    return;
  }
  if (adv_estimator == "remax") {
    remax_advantages(exec, batch.token_rewards, batch.reward_baselines, batch.mask, batch.sequence_offsets,
                     advantages, returns);
    return;
  }
  // Outcome estimators: the score of a response is the sum of its token rewards (verl sums the
  // whole row), normalised within its group, then spread over the response's tokens.
  auto scores = make_buffer<float>(exec, static_cast<std::size_t>(S));
  auto seq_adv = make_buffer<float>(exec, static_cast<std::size_t>(S));
  auto lengths = make_buffer<float>(exec, static_cast<std::size_t>(S));
  const auto offsets = stage(exec, batch.sequence_offsets);
  xplor::detail::require(static_cast<std::int64_t>(batch.group_index.size()) == S, fn, "group_index has ",
                         batch.group_index.size(), " ids for ", S, " responses");
  // Responses ordered group by group (groups in order of first appearance, responses in batch
  // order within a group): order[k] is the response at position k, offsets bound the groups.
  std::vector<std::int64_t> order, group_offsets{0};
  {
    std::vector<std::int64_t> ids;  // in order of first appearance
    std::map<std::int64_t, std::vector<std::int64_t>> members;
    for (std::int64_t s = 0; s < S; ++s) {
      auto& list = members[batch.group_index[static_cast<std::size_t>(s)]];
      if (list.empty()) ids.push_back(batch.group_index[static_cast<std::size_t>(s)]);
      list.push_back(s);
    }
    for (std::int64_t id : ids) {
      for (std::int64_t s : members[id]) order.push_back(s);
      group_offsets.push_back(static_cast<std::int64_t>(order.size()));
    }
  }
  const auto perm = stage(exec, std::span<const std::int64_t>(order));
  // Scores and response lengths (the mask's sum) in group order.
  for_each_index(exec, S,
                 kernels::row_sums{batch.token_rewards.data(), offsets.data(), perm.data(), scores.data()});
  for_each_index(exec, S, kernels::row_sums{batch.mask.data(), offsets.data(), perm.data(), lengths.data()});
  const ragged_groups groups(group_offsets, S);
  advantage_options a = preset.advantages;
  estimator kind = estimator::grpo;
  bool whiten = false;
  if (adv_estimator == "grpo") {
    kind = estimator::grpo;
  } else if (adv_estimator == "grpo_passk") {
    kind = estimator::pass_at_k;
  } else if (adv_estimator == "rloo") {
    kind = estimator::rloo;
  } else if (adv_estimator == "opo") {
    kind = estimator::opo;
  } else if (adv_estimator == "gpg") {
    kind = estimator::gpg;
  } else if (adv_estimator == "reinforce_plus_plus_baseline") {
    kind = estimator::grpo;
    a.scale = scale_rewards::none;
    whiten = true;
  } else {
    xplor::detail::fail(
        fn, "adv_estimator '", adv_estimator,
        "' is not gae, grpo, grpo_passk, rloo, opo, gpg, reinforce_plus_plus(_baseline) or remax");
  }
  compute_advantages(
      exec, kind, span_for<Exec, const float>(backend_span(exec, scores.data(), scores.size())), groups,
      backend_span(exec, seq_adv.data(), seq_adv.size()), a, span_for<Exec, std::uint8_t>{},
      kind == estimator::opo ? span_for<Exec, const float>(backend_span(exec, lengths.data(), lengths.size()))
                             : span_for<Exec, const float>{});
  // Back to batch order, then over the tokens.
  for_each_index(exec, S, kernels::scatter_by{seq_adv.data(), perm.data(), scores.data()});
  spread_over_tokens(exec, span_for<Exec, const float>(backend_span(exec, scores.data(), scores.size())),
                     batch.mask, batch.sequence_offsets, advantages, whiten);
  // verl returns the advantages as the returns of outcome estimators.
  for_each_index(exec, T, kernels::copy_kernel{advantages.data(), returns.data()});
}

}  // namespace xplor::rl
