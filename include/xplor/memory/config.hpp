// MemGen (Zhang, Fu, Yan, "MemGen: Weaving Generative Latent Memory for Self-Evolving Agents",
// arXiv 2509.24704): the configuration shared by the weaver, the trigger and the insertion rule.
// Defaults are the authors' (configuration_memgen.py, configs/latent_memory/gsm8k.yaml).
#pragma once

#include <cstdint>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/model/config.hpp"
#include "xplor/model/lora.hpp"

namespace xplor::memory {

/// Dropout in an adapter (the weaver's, the trigger's): on for training, with masks keyed by
/// `dropout_key` (a new key per step; the same key reproduces a pass).
struct pass_options {
  bool training = false;
  std::uint64_t dropout_key = 0;
};

/// What the weaver reads: the reasoner's input embeddings of the context (the authors' code) or
/// the frozen reasoner's last hidden states over it (the paper's M = W(H_<j)).
enum class weaver_input : std::uint8_t { embeddings, last_hidden };

struct memgen_config {
  int prompt_latents = 8;      // K of the prompt bank: latents woven at the prompt/completion boundary
  int inference_latents = 8;   // K of the inference bank: latents woven after a delimiter
  bool prompt_augment = true;  // weave at the prompt end (the authors' max_prompt_aug_num = 1)
  int max_inference_aug = 5;   // at most this many insertions after delimiters, the first ones
  std::vector<std::int32_t> delimiters = {};  // token ids after which an inference insertion may happen
  /// The weaver reads no context: its latents depend on the bank alone (learned embeddings through
  /// the weaver's own parameters, a prefix-tuning baseline with the same trainable tensors).
  bool static_latents = false;
  weaver_input input = weaver_input::embeddings;
  model::lora_config weaver_lora = {};  // r 16, alpha 32, q and v, dropout 0.1
  model::lora_config trigger_lora = {};

  /// Throws xplor::error naming the first field that does not fit a reasoner of `reasoner` shape.
  void validate(const model::transformer_config& reasoner) const {
    constexpr const char* fn = "xplor::memory::memgen_config";
    xplor::detail::require(prompt_latents >= 1, fn, "prompt_latents = ", prompt_latents, " must be positive");
    xplor::detail::require(inference_latents >= 1, fn, "inference_latents = ", inference_latents,
                           " must be positive");
    xplor::detail::require(max_inference_aug >= 0, fn, "max_inference_aug = ", max_inference_aug,
                           " is negative");
    xplor::detail::require(max_inference_aug == 0 || !delimiters.empty(), fn,
                           "max_inference_aug = ", max_inference_aug,
                           " needs delimiters (the list is empty)");
    for (std::size_t i = 0; i < delimiters.size(); ++i)
      xplor::detail::require(delimiters[i] >= 0 && delimiters[i] < reasoner.vocab_size, fn, "delimiters[", i,
                             "] = ", delimiters[i], " is outside [0, vocab_size = ", reasoner.vocab_size,
                             ")");
    xplor::detail::require(input == weaver_input::embeddings || input == weaver_input::last_hidden, fn,
                           "input = ", static_cast<int>(input), " is neither embeddings nor last_hidden");
    weaver_lora.validate();
    trigger_lora.validate();
  }
};

}  // namespace xplor::memory
