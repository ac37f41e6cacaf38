// xplor against TRL's and verl's own code: tests/data/rl_peers/{trl,verl}.{json,safetensors}
// hold inputs and the peers' outputs (loss, statistics, d loss / d logp, d loss / d entropy,
// advantages and returns) for every loss type, loss mode, KL form, clip setting and estimator
// they ship, written by tools/rl_peer_goldens.py from TRL 1.16's GRPOTrainer._compute_loss and
// verl 0.9's losses.ppo_loss / get_adv_estimator_fn. Each case's config uses the trainer's own
// option names; trl_options() / verl_options() turn it into xplor's options, so this test also
// checks the converters. Compiled for the CPU backend here and for the device backend (Thrust
// OMP, nvcc) with XPLOR_PEER_GOLDEN_DEVICE.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "xplor/model/safetensors.hpp"
#include "xplor/rl/presets.hpp"
#include "xplor/rl/reward_aggregation.hpp"
#ifdef XPLOR_PEER_GOLDEN_DEVICE
#include <thrust/device_vector.h>
#include <thrust/host_vector.h>

#include "xplor/core/adapt_thrust.hpp"
#include "xplor/core/device.hpp"
#endif

using namespace xplor::rl;

namespace {

/// Backend storage for the test: std::vector on the CPU, thrust::device_vector on the device.
template <class Exec>
struct store;
template <>
struct store<xplor::cpu_t> {
  template <class T>
  using vec = std::vector<T>;
  template <class T>
  static vec<T> put(const std::vector<T>& v) {
    return v;
  }
  template <class T>
  static std::span<T> span(vec<T>& v) {
    return v;
  }
  template <class T>
  static std::span<const T> cspan(const vec<T>& v) {
    return v;
  }
  template <class T>
  static std::vector<T> get(const vec<T>& v) {
    return v;
  }
  static xplor::view2d<const float> view(const vec<float>& v, std::int64_t B, std::int64_t L) {
    return v.empty() ? xplor::view2d<const float>() : xplor::view2d<const float>(v.data(), {B, L}, {L, 1});
  }
  static xplor::view2d<float> mview(vec<float>& v, std::int64_t B, std::int64_t L) {
    return xplor::view2d<float>(v.data(), {B, L}, {L, 1});
  }
};
#ifdef XPLOR_PEER_GOLDEN_DEVICE
template <>
struct store<xplor::device_t> {
  template <class T>
  using vec = thrust::device_vector<T>;
  template <class T>
  static vec<T> put(const std::vector<T>& v) {
    return vec<T>(v.begin(), v.end());
  }
  template <class T>
  static auto span(vec<T>& v) {
    return xplor::as_span(v);
  }
  template <class T>
  static auto cspan(const vec<T>& v) {
    return xplor::as_span(v);
  }
  template <class T>
  static std::vector<T> get(const vec<T>& v) {
    thrust::host_vector<T> h = v;
    return std::vector<T>(h.begin(), h.end());
  }
  static xplor::device_view2d<const float> view(const vec<float>& v, std::int64_t B, std::int64_t L) {
    return v.empty() ? xplor::device_view2d<const float>()
                     : xplor::device_view2d<const float>(thrust::raw_pointer_cast(v.data()), {B, L}, {L, 1});
  }
  static xplor::device_view2d<float> mview(vec<float>& v, std::int64_t B, std::int64_t L) {
    return xplor::device_view2d<float>(thrust::raw_pointer_cast(v.data()), {B, L}, {L, 1});
  }
};
#endif

struct goldens {
  nlohmann::json manifest;
  xplor::model::safetensors_contents tensors;
};
const goldens& load(const std::string& peer) {
  static std::map<std::string, goldens> cache;
  auto it = cache.find(peer);
  if (it != cache.end()) return it->second;
  const auto dir = std::filesystem::path(XPLOR_TEST_SOURCE_DIR) / "data" / "rl_peers";
  goldens g;
  std::ifstream in(dir / (peer + ".json"));
  REQUIRE(in.good());
  g.manifest = nlohmann::json::parse(in);
  g.tensors = xplor::model::read_safetensors(dir / (peer + ".safetensors"));
  return cache.emplace(peer, std::move(g)).first->second;
}

struct case_view {
  const goldens& g;
  const nlohmann::json& c;
  std::string id() const { return c["id"].get<std::string>(); }
  bool has(const std::string& name) const { return g.tensors.tensors.count(id() + "/" + name) != 0; }
  const std::vector<float>& tensor(const std::string& name) const {
    const auto it = g.tensors.tensors.find(id() + "/" + name);
    REQUIRE(it != g.tensors.tensors.end());
    return it->second.data;
  }
  std::vector<float> tensor_or_empty(const std::string& name) const {
    return has(name) ? tensor(name) : std::vector<float>{};
  }
  bool has_scalar(const char* name) const { return c["scalars"].contains(name); }
  double scalar(const char* name) const { return c["scalars"][name].get<double>(); }
};

/// |got - want| <= 1e-5 |want| + floor. The peers ran in float64 on the stored float32 inputs;
/// xplor computes per-token terms in float32 (sums in double), so each value carries float32
/// rounding of the order of 1e-7 of the magnitudes that entered it: the floor is 1e-6 of the
/// largest magnitude in the array or statistic's scale.
void require_close(double got, double want, double scale, const std::string& what) {
  INFO(what << ": xplor " << got << ", peer " << want);
  REQUIRE(std::abs(got - want) <= 1e-5 * std::abs(want) + 1e-6 * std::max(1.0, scale));
}
void require_close(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  REQUIRE(got.size() == want.size());
  double scale = 0.0;
  for (float w : want) scale = std::max(scale, double(std::abs(w)));
  for (std::size_t i = 0; i < got.size(); ++i)
    require_close(got[i], want[i], scale, what + "[" + std::to_string(i) + "]");
}

/// [B] or [B, 1] per-sequence values spread over the L tokens of each row; [B, L] as is.
std::vector<float> per_token(const std::vector<float>& v, std::int64_t B, std::int64_t L) {
  if (static_cast<std::int64_t>(v.size()) == B * L) return v;
  REQUIRE(static_cast<std::int64_t>(v.size()) == B);
  std::vector<float> out(static_cast<std::size_t>(B * L));
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t l = 0; l < L; ++l)
      out[static_cast<std::size_t>(b * L + l)] = v[static_cast<std::size_t>(b)];
  return out;
}

/// Loss cases of either peer, through the padded [B, L] entry point.
template <class Exec>
void check_loss_case(Exec exec, const case_view& cv, bool trl) {
  using S = store<Exec>;
  const auto& config = cv.c["config"];
  const std::int64_t B = cv.c["shape"][0], L = cv.c["shape"][1];
  trainer_options preset = trl ? trl_options(config) : verl_options(config);
  loss_options o = preset.loss;
  if (cv.has("num_items_in_batch")) o.num_items_in_batch = std::max(1.0f, cv.tensor("num_items_in_batch")[0]);
  // TRL multiplies by the vLLM importance ratio only with use_vllm and the correction on; VESPO
  // folds it into its weight whenever it is given. verl's rollout_is_weights always apply.
  const bool vespo = trl && config["loss_type"] == "vespo";
  const bool use_ratio =
      cv.has("importance_sampling_ratio") &&
      (!trl || vespo ||
       (config.value("use_vllm", false) && config.value("vllm_importance_sampling_correction", false)));

  auto logp = S::put(cv.tensor("logp"));
  auto old = S::put(cv.tensor_or_empty("old_logp"));
  auto ref = S::put(cv.tensor_or_empty("ref_logp"));
  auto adv = S::put(per_token(cv.tensor("advantages"), B, L));
  std::vector<float> m = cv.tensor("mask");
  if (!trl)
    for (float& x : m) x = x != 0.0f ? 1.0f : 0.0f;  // verl: response_mask.to(bool)
  auto mask = S::put(m);
  auto ent = S::put(cv.tensor_or_empty("entropies"));
  auto isw =
      S::put(use_ratio ? per_token(cv.tensor("importance_sampling_ratio"), B, L) : std::vector<float>{});
  auto samp = S::put(cv.tensor_or_empty("sampling_logp"));

  basic_padded_policy_batch<xplor::memory_of<Exec>> batch;
  batch.logp = S::view(logp, B, L);
  batch.old_logp = S::view(old, B, L);
  if (o.beta != 0.0f) batch.ref_logp = S::view(ref, B, L);
  batch.advantages = S::view(adv, B, L);
  batch.mask = S::view(mask, B, L);
  batch.entropies = S::view(ent, B, L);
  batch.is_weights = S::view(isw, B, L);
  batch.sampling_logp = S::view(samp, B, L);
  auto dlogp = S::put(std::vector<float>(static_cast<std::size_t>(B * L)));
  auto dent = S::put(std::vector<float>(static_cast<std::size_t>(B * L)));
  const loss_result r = policy_loss(exec, batch, S::mview(dlogp, B, L), o, S::mview(dent, B, L));

  const double scale = std::abs(cv.scalar("loss")) + 1.0;
  require_close(r.loss, cv.scalar("loss"), scale, "loss");
  require_close(S::get(dlogp), cv.tensor("dlogp"), "dlogp");
  if (cv.has("dentropy")) require_close(S::get(dent), cv.tensor("dentropy"), "dentropy");
  // Statistics, by the names the peers log them. TRL's clip_ratio/low_min and high_max (per
  // sequence extremes) and vespo/phi_seq_mean are logging-only: xplor does not produce them.
  auto stat = [&](const char* name, double value) {
    if (cv.has_scalar(name)) require_close(value, cv.scalar(name), 1.0, name);
  };
  if (trl) {
    stat("entropy", r.entropy);
    stat("kl", r.kl);
    stat("clip_ratio/low_mean", r.clip_low_fraction);
    stat("clip_ratio/high_mean", r.clip_high_fraction);
    stat("clip_ratio/region_mean", r.clip_low_fraction + r.clip_high_fraction);
    stat("cispo_clip_ratio", r.clip_high_fraction);
    stat("policy_loss", r.loss + double(o.entropy_coef) * r.entropy_loss);
  } else {
    stat("pg_loss", r.policy_loss);
    stat("actor/pg_loss", r.policy_loss);
    stat("actor/pg_clipfrac", r.pg_clipfrac);
    stat("actor/pg_clipfrac_lower", r.pg_clipfrac_lower);
    stat("actor/ppo_kl", r.ppo_kl);
    stat("actor/entropy_loss", r.entropy_loss);
    stat("kl_loss", r.kl_loss);
  }
}

/// verl's estimators through verl_advantages, grouped by verl's index (some cases interleave it).
template <class Exec>
void check_verl_advantage(Exec exec, const case_view& cv) {
  using S = store<Exec>;
  const std::int64_t B = cv.c["shape"][0], L = cv.c["shape"][1];
  std::vector<std::int64_t> offsets(static_cast<std::size_t>(B + 1));
  for (std::int64_t b = 0; b <= B; ++b) offsets[static_cast<std::size_t>(b)] = b * L;
  std::vector<std::int64_t> index(static_cast<std::size_t>(B), 0);  // verl's uid per response
  if (cv.has("index"))
    for (std::int64_t b = 0; b < B; ++b)
      index[static_cast<std::size_t>(b)] = std::llround(cv.tensor("index")[static_cast<std::size_t>(b)]);
  auto rewards = S::put(cv.tensor("rewards"));
  auto mask = S::put(cv.tensor("mask"));
  auto values = S::put(cv.tensor_or_empty("values"));
  auto baselines = S::put(cv.tensor_or_empty("reward_baselines"));
  basic_token_reward_batch<xplor::memory_of<Exec>> batch;
  batch.token_rewards = S::cspan(rewards);
  batch.mask = S::cspan(mask);
  batch.values = S::cspan(values);
  batch.reward_baselines = S::cspan(baselines);
  batch.sequence_offsets = offsets;
  batch.group_index = index;
  auto adv = S::put(std::vector<float>(static_cast<std::size_t>(B * L)));
  auto ret = S::put(std::vector<float>(static_cast<std::size_t>(B * L)));
  verl_advantages(exec, cv.c["config"]["adv_estimator"].get<std::string>(), batch, cv.c["config"],
                  S::span(adv), S::span(ret));
  require_close(S::get(adv), cv.tensor("advantages_out"), "advantages");
  require_close(S::get(ret), cv.tensor("returns_out"), "returns");
}

/// TRL's advantage block (host only: aggregate_rewards runs on the CPU).
void check_trl_advantage(const case_view& cv) {
  const auto& config = cv.c["config"];
  const std::int64_t B = cv.c["shape"][0], K = cv.c["shape"][1];
  const auto& r = cv.tensor("rewards");
  std::vector<std::optional<float>> values(r.begin(), r.end());
  const std::vector<float> weights = config["reward_weights"].get<std::vector<float>>();
  REQUIRE(static_cast<std::int64_t>(weights.size()) == K);
  aggregate_options o;
  o.scale = trl_options(config).advantages.scale;
  o.mode = config["multi_objective_aggregation"] == "normalize_then_sum" ? aggregation::normalize_then_sum
                                                                         : aggregation::sum_then_normalize;
  const std::int64_t G = config["num_generations"].get<std::int64_t>();
  const auto result = aggregate_rewards(std::span<const std::optional<float>>(values), weights,
                                        xplor::equal_groups(B / G, G), o);
  require_close(result.advantages, cv.tensor("advantages_out"), "advantages");
  require_close(result.frac_zero_std, cv.scalar("frac_reward_zero_std"), 1.0, "frac_reward_zero_std");
}

template <class Exec>
void check_peer(Exec exec, const std::string& peer) {
  const goldens& g = load(peer);
  std::map<std::string, int> checked;
  for (const auto& c : g.manifest["cases"]) {
    const case_view cv{g, c};
    INFO(cv.id() << ": " << c["label"].get<std::string>());
    const std::string kind = c["kind"];
    if (kind == "loss") {
      check_loss_case(exec, cv, peer == "trl");
    } else if (peer == "verl") {
      check_verl_advantage(exec, cv);
    } else if (std::is_same_v<Exec, xplor::cpu_t>) {
      check_trl_advantage(cv);
    } else {
      continue;
    }
    ++checked[kind];
  }
  // Every case of the file was run (nothing skipped silently on the CPU).
  const std::size_t total = g.manifest["cases"].size();
  if (std::is_same_v<Exec, xplor::cpu_t>) CHECK(std::size_t(checked["loss"] + checked["advantage"]) == total);
  CHECK(checked["loss"] > 100);
}

}  // namespace

#ifndef XPLOR_PEER_GOLDEN_DEVICE
TEST_CASE("TRL 1.16: every golden loss and advantage case", "[rl][peers][trl]") {
  check_peer(xplor::cpu, "trl");
}
TEST_CASE("verl 0.9: every golden loss and advantage case", "[rl][peers][verl]") {
  check_peer(xplor::cpu, "verl");
}
#else
TEST_CASE("device: TRL 1.16 golden losses", "[device][rl][peers][trl]") { check_peer(xplor::device, "trl"); }
TEST_CASE("device: verl 0.9 golden losses and advantages", "[device][rl][peers][verl]") {
  check_peer(xplor::device, "verl");
}
#endif
