// MemGen's memory trigger (the authors' trigger.py): a LoRA'd copy of the frozen reasoner and a
// head Linear(C, 2) over the last layer's hidden state (after the final norm) at the last token of
// a prefix: logits (SKIP, INVOKE). It reads token ids only (the text so far, no latents), as the
// authors' trigger does. Without a trigger (a null trigger pointer in generate()) every eligible
// point invokes the weaver: the authors' trigger.active = False.
//
// Training is GRPO over the decisions (trigger_grpo_trainer.py): forward() takes the rollouts'
// token sequences and the rows where decisions were taken and gives log p(decision);
// backward(dlogp) accumulates the adapter's and the head's gradients.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/random.hpp"
#include "xplor/memory/config.hpp"
#include "xplor/memory/weaver.hpp"
#include "xplor/model/dense.hpp"
#include "xplor/model/lora.hpp"
#include "xplor/model/transformer.hpp"

namespace xplor::memory {

inline constexpr std::int32_t skip = 0;
inline constexpr std::int32_t invoke = 1;

/// A rollout's decisions for the trigger: its tokens (prompt + completion) and, per decision, the
/// row of the last token the trigger read (prefix length - 1) and the action taken.
struct decision_record {
  std::vector<std::int32_t> tokens = {};
  std::vector<std::int64_t> rows = {};
  std::vector<std::int32_t> actions = {};
};

class trigger {
 public:
  static constexpr const char* module_name = "trigger";

  /// A trigger over a copy of `reasoner` (frozen) with cfg.trigger_lora, drawn from `seed`: LoRA
  /// as PEFT, the head as torch.nn.Linear (U(-1/sqrt(C), 1/sqrt(C)) weight and bias).
  trigger(const model::transformer& reasoner, const memgen_config& cfg, std::uint64_t seed)
      : base_(reasoner),
        lora_(reasoner.config(), (cfg.validate(reasoner.config()), cfg.trigger_lora), table_,
              "trigger.model.base_model.model.") {
    base_.freeze();
    const std::int64_t C = reasoner.config().d_model;
    head_w_ = table_.add("trigger.output_layer.weight", {2, C}, true);
    head_b_ = table_.add("trigger.output_layer.bias", {2}, false);
    params_.assign(static_cast<std::size_t>(table_.total), 0.0f);
    grads_.assign(params_.size(), 0.0f);
    lora_.initialize(params_, seed);
    const float bound = 1.0f / std::sqrt(static_cast<float>(C));
    philox_stream gen(seed ^ 0x7f4a7c159e3779b9ull, 0);
    for (std::int64_t i = 0; i < 2 * C + 2; ++i)
      params_[static_cast<std::size_t>(head_w_ + i)] = bound * (2.0f * gen.uniform() - 1.0f);
  }

  const model::parameter_layout& layout() const { return table_; }
  std::span<float> params() { return params_; }
  std::span<const float> params() const { return params_; }
  std::span<float> grads() { return grads_; }
  std::span<const float> grads() const { return grads_; }
  void zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.0f); }
  std::span<float> head_bias() { return {params_.data() + head_b_, 2}; }
  /// The frozen trigger model (the reasoner's weights) and the adapter's table.
  const model::transformer& base() const { return base_; }
  const model::lora_layout& lora() const { return lora_; }

  /// Logits [n, 2] (SKIP, INVOKE) after each prefix (eval mode), right-padded into one pass.
  std::vector<float> logits(std::span<const std::vector<std::int32_t>> prefixes) {
    std::vector<decision_record> records;
    for (const auto& p : prefixes) {
      xplor::detail::require(!p.empty(), "xplor::memory::trigger::logits", "a prefix is empty");
      records.push_back({p, {static_cast<std::int64_t>(p.size()) - 1}, {skip}});
    }
    run(records, {});
    forward_held_ = false;  // backward() reruns the last forward first
    return logits_;
  }

  /// log p(action) of every decision of `records`, in order; keeps what backward() needs.
  std::span<const float> forward(std::span<const decision_record> records, const pass_options& opt = {}) {
    constexpr const char* fn = "xplor::memory::trigger::forward";
    xplor::detail::require(!records.empty(), fn, "no records");
    for (std::size_t r = 0; r < records.size(); ++r) {
      const auto& rec = records[r];
      xplor::detail::require(rec.rows.size() == rec.actions.size(), fn, "records[", r, "] has ",
                             rec.rows.size(), " rows and ", rec.actions.size(), " actions");
      for (std::size_t d = 0; d < rec.rows.size(); ++d) {
        xplor::detail::require(rec.rows[d] >= 0 && rec.rows[d] < static_cast<std::int64_t>(rec.tokens.size()),
                               fn, "records[", r, "].rows[", d, "] = ", rec.rows[d], " is outside its ",
                               rec.tokens.size(), " tokens");
        xplor::detail::require(rec.actions[d] == skip || rec.actions[d] == invoke, fn, "records[", r,
                               "].actions[", d, "] = ", rec.actions[d],
                               " is neither skip (0) nor invoke (1)");
      }
    }
    forward_records_.assign(records.begin(), records.end());
    forward_opt_ = opt;
    run(records, opt);
    forward_held_ = true;
    return logp_;
  }

  /// Accumulates the gradient of sum_d dlogp[d] * log p(action_d) into grads().
  void backward(std::span<const float> dlogp) {
    constexpr const char* fn = "xplor::memory::trigger::backward";
    xplor::detail::require(!forward_records_.empty(), fn, "no forward pass to differentiate");
    if (!forward_held_) {  // logits() ran since: the last forward's activations are gone
      run(forward_records_, forward_opt_);
      forward_held_ = true;
    }
    xplor::detail::require(dlogp.size() == logp_.size(), fn, "dlogp has ", dlogp.size(), " elements for ",
                           logp_.size(), " decisions");
    const std::int64_t C = base_.config().d_model, N = base_.hidden().rows();
    std::vector<float> dhidden(static_cast<std::size_t>(N * C), 0.0f);
    const auto h = base_.hidden();
    for (std::size_t d = 0; d < dlogp.size(); ++d) {
      xplor::detail::require(std::isfinite(dlogp[d]), fn, "dlogp[", d, "] = ", dlogp[d], " is not finite");
      // d log softmax(z)[a] / dz = onehot(a) - softmax(z).
      const float* z = logits_.data() + 2 * d;
      const float m = std::max(z[0], z[1]);
      const float e0 = std::exp(z[0] - m), e1 = std::exp(z[1] - m);
      const float dz[2] = {dlogp[d] * ((actions_[d] == skip ? 1.0f : 0.0f) - e0 / (e0 + e1)),
                           dlogp[d] * ((actions_[d] == invoke ? 1.0f : 0.0f) - e1 / (e0 + e1))};
      const std::int64_t row = rows_[d];
      for (int o = 0; o < 2; ++o) {
        grads_[static_cast<std::size_t>(head_b_ + o)] += dz[o];
        for (std::int64_t c = 0; c < C; ++c) {
          grads_[static_cast<std::size_t>(head_w_ + o * C + c)] += dz[o] * h(row, c);
          dhidden[static_cast<std::size_t>(row * C + c)] +=
              dz[o] * params_[static_cast<std::size_t>(head_w_ + o * C + c)];
        }
      }
    }
    base_.backward_hidden(make_view(static_cast<const float*>(dhidden.data()), {N, C}));
  }

 private:
  /// One padded pass over the records' tokens; logits_ [decisions, 2], logp_, rows_ (in the
  /// padded batch), actions_.
  void run(std::span<const decision_record> records, const pass_options& opt) {
    const std::int64_t C = base_.config().d_model, B = static_cast<std::int64_t>(records.size());
    std::int64_t T = 0;
    for (const auto& r : records) T = std::max<std::int64_t>(T, static_cast<std::int64_t>(r.tokens.size()));
    tokens_.assign(static_cast<std::size_t>(B * T), 0);
    rows_.clear();
    actions_.clear();
    for (std::int64_t b = 0; b < B; ++b) {
      const auto& r = records[static_cast<std::size_t>(b)];
      std::copy(r.tokens.begin(), r.tokens.end(), tokens_.begin() + b * T);
      for (std::size_t d = 0; d < r.rows.size(); ++d) {
        rows_.push_back(b * T + r.rows[d]);
        actions_.push_back(r.actions[d]);
      }
    }
    base_.attach({&lora_, params_.data(), grads_.data(), opt.training, opt.dropout_key});
    base_.forward_hidden({tokens_, B, T, {}, {}, {}});
    const auto h = base_.hidden();
    logits_.assign(2 * rows_.size(), 0.0f);
    logp_.assign(rows_.size(), 0.0f);
    for (std::size_t d = 0; d < rows_.size(); ++d) {
      for (int o = 0; o < 2; ++o) {
        float s = params_[static_cast<std::size_t>(head_b_ + o)];
        for (std::int64_t c = 0; c < C; ++c)
          s += params_[static_cast<std::size_t>(head_w_ + o * C + c)] * h(rows_[d], c);
        logits_[2 * d + static_cast<std::size_t>(o)] = s;
      }
      const float* z = logits_.data() + 2 * d;
      const float m = std::max(z[0], z[1]);
      const float lse = m + std::log(std::exp(z[0] - m) + std::exp(z[1] - m));
      logp_[d] = z[actions_[d]] - lse;
    }
  }

  model::transformer base_;
  model::parameter_layout table_;
  model::lora_layout lora_;
  std::int64_t head_w_ = -1, head_b_ = -1;
  std::vector<float> params_, grads_;
  std::vector<std::int32_t> tokens_;
  std::vector<std::int64_t> rows_;
  std::vector<std::int32_t> actions_;
  std::vector<float> logits_, logp_;
  std::vector<decision_record> forward_records_;  // the last forward(), rerun if logits() ran since
  pass_options forward_opt_;
  bool forward_held_ = false;
};

}  // namespace xplor::memory
