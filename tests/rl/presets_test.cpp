// TRL's and verl's option names into xplor's options: what each key sets, the peers' defaults,
// and the values xplor refuses (peer_golden_test.cpp checks the resulting numbers).
#include <catch2/catch.hpp>

#include "xplor/rl/presets.hpp"

using namespace xplor::rl;
using nlohmann::json;

TEST_CASE("trl_options: GRPOConfig names and defaults", "[rl][presets]") {
  const auto d = trl_options();
  CHECK(d.loss.type == loss_type::dapo);
  CHECK(d.loss.mode == policy_loss_mode::clip);
  CHECK(d.loss.kl_bias_correction);
  CHECK(d.loss.entropy_agg == entropy_aggregation::token_mean);
  CHECK(d.advantages.eps == 1e-4f);
  CHECK(d.advantages.scale == scale_rewards::group);

  auto t = trl_options(json{{"loss_type", "cispo"}, {"epsilon_high", 5.0}});
  CHECK(t.loss.mode == policy_loss_mode::cispo);
  CHECK(t.loss.epsilon == 1.0f);        // no lower bound
  CHECK(*t.loss.epsilon_high == 4.0f);  // ratio capped at 5
  t = trl_options(json{{"loss_type", "sapo"}, {"sapo_temperature_neg", 2.0}, {"scale_rewards", false}});
  CHECK(t.loss.mode == policy_loss_mode::sapo);
  CHECK(t.loss.type == loss_type::grpo);
  CHECK(t.loss.sapo_tau_neg == 2.0f);
  CHECK(t.advantages.scale == scale_rewards::none);
  t = trl_options(json{{"loss_type", "luspo"},
                       {"importance_sampling_level", "sequence"},
                       {"delta", 1.5},
                       {"off_policy_mask_threshold", 0.05},
                       {"top_entropy_quantile", 0.2},
                       {"learning_rate", 1e-6}});
  CHECK(t.loss.type == loss_type::seq_mean_token_sum);
  CHECK(t.loss.importance_sampling_level == ratio_level::sequence);
  CHECK(*t.loss.delta == 1.5f);
  CHECK(*t.loss.off_policy_mask_threshold == 0.05f);
  CHECK(t.loss.top_entropy_quantile == 0.2f);
  t = trl_options(json{{"loss_type", "vespo"}, {"vespo_k_pos", 1.0}});
  CHECK(t.loss.mode == policy_loss_mode::vespo);
  CHECK(t.loss.vespo_k_pos == 1.0f);

  CHECK_THROWS_WITH(trl_options(json{{"loss_type", "ppo"}}),
                    Catch::Contains("config[\"loss_type\"] = 'ppo'"));
  CHECK_THROWS_WITH(trl_options(json{{"use_adaptive_entropy", true}}),
                    Catch::Contains("use_adaptive_entropy"));
  CHECK_THROWS_WITH(trl_options(json{{"beta", "high"}}),
                    Catch::Contains("config[\"beta\"] = \"high\" has the wrong type"));
  CHECK_THROWS_WITH(trl_options(json{{"scale_rewards", "batchwise"}}), Catch::Contains("scale_rewards"));
}

TEST_CASE("verl_options: actor config names, defaults, clamps and KL types", "[rl][presets]") {
  auto v = verl_options(json::object());
  CHECK(v.loss.type == loss_type::dapo);  // token-mean
  CHECK(v.loss.exclude_empty_sequences);
  CHECK(*v.loss.dual_clip == 3.0f);
  CHECK(*v.loss.log_ratio_clamp == 20.0f);
  CHECK(v.loss.beta == 0.0f);
  CHECK(!v.loss.kl_bias_correction);
  CHECK(v.loss.entropy_agg == entropy_aggregation::loss_type);
  CHECK(v.advantages.eps == 1e-6f);
  CHECK(v.advantages.group_of_one == single_response::mean0_std1);

  v = verl_options(json{{"loss_mode", "gspo"}, {"loss_agg_mode", "token-mean"}, {"clip_ratio_high", 0.28}});
  CHECK(v.loss.importance_sampling_level == ratio_level::sequence);
  CHECK(v.loss.sequence_ratio_token_gradient);
  CHECK(*v.loss.sequence_log_ratio_max == 10.0f);
  CHECK(!v.loss.policy_type);  // verl 0.9 aggregates GSPO by loss_agg_mode
  CHECK(v.loss.type == loss_type::dapo);
  CHECK(*v.loss.epsilon_high == 0.28f);
  v = verl_options(json{{"loss_mode", "sapo"}, {"loss_agg_mode", "token-mean"}});
  CHECK(*v.loss.policy_type == loss_type::grpo);  // SAPO's term is always seq-mean-token-mean
  CHECK(v.loss.type == loss_type::dapo);          // KL and entropy follow loss_agg_mode
  // clip_ratio fills in only where clip_ratio_low / high are null (ActorConfig defaults them to 0.2).
  v = verl_options(json{{"clip_ratio", 0.3}});
  CHECK(v.loss.epsilon == 0.2f);
  v = verl_options(json{{"clip_ratio", 0.3}, {"clip_ratio_low", nullptr}});
  CHECK(v.loss.epsilon == 0.3f);
  v = verl_options(json{{"policy_loss", {{"loss_mode", "kl_cov"}, {"kl_cov_ratio", 0.5}}}});
  CHECK(v.loss.mode == policy_loss_mode::kl_cov);
  CHECK(v.loss.kl_cov_ratio == 0.5f);
  CHECK(v.loss.kl_cov_coef == 0.1f);  // ActorConfig's ppo_kl_coef
  v = verl_options(json{{"use_kl_loss", true}, {"kl_loss_type", "k3+"}, {"kl_loss_coef", 0.1}});
  CHECK(v.loss.kl == kl_estimator::k3);
  CHECK(v.loss.kl_clamp);
  CHECK(v.loss.kl_straight_through);
  CHECK(v.loss.beta == 0.1f);
  v = verl_options(
      json{{"global_batch_info", {{"dp_size", 2}, {"batch_num_tokens", 100}, {"global_batch_size", 8}}}});
  CHECK(*v.loss.num_items_in_batch == 50.0);
  CHECK(*v.loss.num_sequences_in_batch == 4.0);

  CHECK_THROWS_WITH(verl_options(json{{"loss_mode", "dppo_kl"}}),
                    Catch::Contains("config[\"loss_mode\"] = 'dppo_kl'"));
  CHECK_THROWS_WITH(verl_options(json{{"use_kl_loss", true}, {"kl_loss_type", "full"}}),
                    Catch::Contains("kl_loss_type"));
  CHECK_THROWS_WITH(verl_options(json{{"loss_agg_mode", "sample-mean"}}),
                    Catch::Contains("unknown loss type"));
  CHECK_THROWS_WITH(verl_options(json{{"global_batch_info", {{"dp_size", 0}}}}),
                    Catch::Contains("dp_size = 0"));
}

TEST_CASE("verl_advantages dispatches by estimator name", "[rl][presets]") {
  // Two groups of two one-token responses; GRPO with verl's eps.
  const std::vector<float> r{1, 0, 1, 1}, m{1, 1, 1, 1};
  const std::vector<std::int64_t> seqs{0, 1, 2, 3, 4}, index{7, 7, 3, 3};
  token_reward_batch b;
  b.token_rewards = r;
  b.mask = m;
  b.sequence_offsets = seqs;
  b.group_index = index;
  std::vector<float> adv(4), ret(4);
  verl_advantages(xplor::cpu, "grpo", b, json::object(), std::span(adv), std::span(ret));
  const double a = 0.5 / (std::sqrt(0.5) + 1e-6);
  CHECK(adv[0] == Approx(a));
  CHECK(adv[1] == Approx(-a));
  CHECK(adv[2] == 0.0f);
  CHECK(ret == adv);
  // verl's index may interleave the groups: the result is the same per response.
  const std::vector<float> r2{1, 1, 0, 1};
  const std::vector<std::int64_t> mixed{7, 3, 7, 3};
  b.token_rewards = r2;
  b.group_index = mixed;
  std::vector<float> adv2(4);
  verl_advantages(xplor::cpu, "grpo", b, json::object(), std::span(adv2), std::span(ret));
  CHECK(adv2 == std::vector<float>{adv[0], adv[2], adv[1], adv[3]});
  CHECK_THROWS_WITH(verl_advantages(xplor::cpu, "ppo", b, json::object(), std::span(adv), std::span(ret)),
                    Catch::Contains("adv_estimator 'ppo'"));
}
