// The two models libtorch_grpo trains, behind one small interface so that the RL loop is written
// once: decoder() (an xplor::decode_policy), sft_step(batch), completion_logprobs(seqs) and
// policy_update(seqs, loss). torch_learner is what a libtorch trainer writes: torch::nn forward,
// torch::optim::AdamW, and xplor::rl::policy_loss on padded [B, L] tensors viewed through
// xplor/core/adapt_torch.hpp, its d loss / d logp fed to logp.backward(). xplor_learner is the
// reference transformer with the loop the other examples share (examples/common/policy_update.hpp).
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>
#include <xplor/core/adapt_torch.hpp>
#include <xplor/model/decode.hpp>
#include <xplor/model/optim.hpp>
#include <xplor/model/transformer.hpp>
#include <xplor/rl/loss.hpp>

#include "common/policy_update.hpp"
#include "gpt.hpp"

namespace tgpt {

/// [B, T] int64 tensor of a padded batch's tokens (or targets).
inline torch::Tensor as_long_tensor(const std::vector<std::int32_t>& v, std::int64_t B, std::int64_t T) {
  return torch::tensor(std::vector<std::int64_t>(v.begin(), v.end()), torch::kLong).view({B, T});
}

struct torch_learner {
  GPT model;
  torch::optim::AdamW opt;
  std::int32_t pad;
  int micro_batch;

  /// AdamW as xplor's: betas (0.9, 0.999), eps 1e-8, weight decay on matrices only.
  static torch::optim::AdamW make_optimizer(GPT& m, double lr, double weight_decay) {
    std::vector<torch::Tensor> decay, plain;
    for (auto& p : m->parameters()) (p.dim() >= 2 ? decay : plain).push_back(p);
    auto with = [&](double wd) {
      return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(lr).weight_decay(wd));
    };
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(decay, with(weight_decay));
    groups.emplace_back(plain, with(0.0));
    return torch::optim::AdamW(groups, torch::optim::AdamWOptions(lr));
  }

  torch_learner(const gpt_config& c, double lr, double weight_decay, std::int32_t pad_token, int micro)
      : model(c), opt(make_optimizer(model, lr, weight_decay)), pad(pad_token), micro_batch(micro) {}

  void set_lr(double lr) {
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
  }

  gpt_decoder decoder() { return gpt_decoder(model); }

  float sft_step(const examples::padded_batch& b) {
    opt.zero_grad();
    const auto logits = model->forward(as_long_tensor(b.tokens, b.batch, b.seq_len));
    const auto loss = torch::nn::functional::cross_entropy(
        logits.view({-1, logits.size(-1)}), as_long_tensor(b.targets, b.batch, b.seq_len).view({-1}),
        torch::nn::functional::CrossEntropyFuncOptions().ignore_index(xplor::model::ignore_target));
    loss.backward();
    torch::nn::utils::clip_grad_norm_(model->parameters(), 1.0);
    opt.step();
    return loss.item<float>();
  }

  /// log pi(token) of each sequence's completion tokens, [B, L] right-padded, with autograd, and
  /// the [B, L] mask. Sequence i's completion starts at prompt_len - 1 of the shifted logits.
  std::pair<torch::Tensor, torch::Tensor> completion_logp(std::span<const examples::scored_sequence> seqs) {
    std::vector<std::vector<std::int32_t>> tokens;
    std::vector<std::int64_t> plen;
    std::int64_t L = 0;
    for (const auto& s : seqs) {
      tokens.push_back(s.tokens);
      plen.push_back(s.prompt_len);
      L = std::max(L, static_cast<std::int64_t>(s.tokens.size()) - s.prompt_len);
    }
    const examples::padded_batch b = examples::pad_sequences(tokens, plen, pad);
    const auto B = b.batch;
    std::vector<std::int64_t> where(static_cast<std::size_t>(B * L), 0);
    std::vector<float> mask(where.size(), 0.0f);
    for (std::int64_t i = 0; i < B; ++i) {
      const auto n = static_cast<std::int64_t>(tokens[static_cast<std::size_t>(i)].size()) -
                     plen[static_cast<std::size_t>(i)];
      for (std::int64_t j = 0; j < n; ++j) {
        where[static_cast<std::size_t>(i * L + j)] = plen[static_cast<std::size_t>(i)] - 1 + j;
        mask[static_cast<std::size_t>(i * L + j)] = 1.0f;
      }
    }
    const auto logits = model->forward(as_long_tensor(b.tokens, B, b.seq_len));               // [B, T, V]
    const auto pos = torch::tensor(where, torch::kLong).view({B, L});                         // [B, L]
    const auto picked = logits.gather(1, pos.unsqueeze(-1).expand({B, L, logits.size(-1)}));  // [B, L, V]
    const auto targets = as_long_tensor(b.targets, B, b.seq_len).clamp_min(0).gather(1, pos);
    const auto logp = torch::log_softmax(picked, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
    return {logp, torch::tensor(mask).view({B, L})};
  }

  /// The flat completion log-probs under the current weights (no autograd), for the on-policy check.
  std::vector<float> completion_logprobs(std::span<const examples::scored_sequence> seqs) {
    torch::NoGradGuard no_grad;
    const auto [logp, mask] = completion_logp(seqs);
    std::vector<float> out;
    for (std::int64_t i = 0; i < logp.size(0); ++i)
      for (std::int64_t j = 0;
           j < static_cast<std::int64_t>(seqs[static_cast<std::size_t>(i)].old_logprobs.size()); ++j)
        out.push_back(logp[i][j].item<float>());
    return out;
  }

  /// One optimizer step: per micro-batch, logp [B, L] by autograd; xplor's loss on views of the
  /// detached tensors writes d loss / d logp into a torch tensor; logp.backward(dlogp).
  double policy_update(std::span<const examples::scored_sequence> seqs, const xplor::rl::loss_options& loss) {
    if (seqs.empty()) return 0.0;
    opt.zero_grad();
    double total = 0.0;
    for (std::size_t first = 0; first < seqs.size(); first += static_cast<std::size_t>(micro_batch)) {
      const auto part =
          seqs.subspan(first, std::min(seqs.size() - first, static_cast<std::size_t>(micro_batch)));
      const auto [logp, mask] = completion_logp(part);
      const std::int64_t B = logp.size(0), L = logp.size(1);
      auto old_logp = torch::zeros({B, L});
      auto adv = torch::zeros({B});
      for (std::int64_t i = 0; i < B; ++i) {
        const auto& s = part[static_cast<std::size_t>(i)];
        old_logp[i]
            .narrow(0, 0, static_cast<std::int64_t>(s.old_logprobs.size()))
            .copy_(torch::tensor(s.old_logprobs));
        adv[i] = s.advantages.front();  // GRPO: one advantage per completion
      }
      const auto lp = logp.detach();
      auto dlogp = torch::zeros({B, L});
      xplor::rl::padded_policy_batch batch;
      batch.logp = xplor::as_view2d<const float>(lp);
      batch.old_logp = xplor::as_view2d<const float>(old_logp);
      batch.sequence_advantages = xplor::as_span<const float>(adv);
      batch.mask = xplor::as_view2d<const float>(mask);
      total += xplor::rl::policy_loss(xplor::cpu, batch, xplor::as_view2d<float>(dlogp), loss).loss;
      logp.backward(dlogp);
    }
    torch::nn::utils::clip_grad_norm_(model->parameters(), 1.0);
    opt.step();
    return total;
  }
};

struct xplor_learner {
  xplor::model::transformer model;
  xplor::model::adamw opt;
  float lr;
  std::int32_t pad;
  int micro_batch;

  xplor_learner(const xplor::model::transformer_config& c, std::uint64_t seed, float learning_rate,
                float weight_decay, std::int32_t pad_token, int micro)
      : model(c, seed),
        opt(model.layout(), {.weight_decay = weight_decay}),
        lr(learning_rate),
        pad(pad_token),
        micro_batch(micro) {}

  void set_lr(double x) { lr = static_cast<float>(x); }

  xplor::model::kv_decoder decoder() const { return xplor::model::kv_decoder(model); }

  float sft_step(const examples::padded_batch& b) {
    model.zero_grad();
    const float loss = model.forward({b.tokens, b.batch, b.seq_len, b.targets, {}, {}});
    model.backward();
    xplor::model::clip_grad_norm(model.grads(), 1.0f);
    opt.step(model.params(), model.grads(), lr);
    return loss;
  }

  std::vector<float> completion_logprobs(std::span<const examples::scored_sequence> seqs) {
    std::vector<std::vector<std::int32_t>> tokens;
    std::vector<std::int64_t> plen;
    for (const auto& s : seqs) {
      tokens.push_back(s.tokens);
      plen.push_back(s.prompt_len);
    }
    const examples::padded_batch b = examples::pad_sequences(tokens, plen, pad);
    model.forward({b.tokens, b.batch, b.seq_len, b.targets, {}, {}});
    const auto lp = model.target_logprobs();
    std::vector<float> out;
    for (std::int64_t i = 0; i < b.batch; ++i)
      for (std::int64_t t = plen[static_cast<std::size_t>(i)] - 1;
           t < static_cast<std::int64_t>(tokens[static_cast<std::size_t>(i)].size()) - 1; ++t)
        out.push_back(lp[static_cast<std::size_t>(i * b.seq_len + t)]);
    return out;
  }

  double policy_update(std::span<const examples::scored_sequence> seqs, const xplor::rl::loss_options& loss) {
    return examples::policy_update(model, opt, lr, seqs, loss, micro_batch, pad);
  }
};

}  // namespace tgpt
