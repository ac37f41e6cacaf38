// Shared by the MemGen tests: a tiny reasoner configuration and a small MemGen configuration
// (rank-2 adapters without dropout unless a test asks for it).
#pragma once

#include <cstdint>
#include <vector>

#include "../gradient_check.hpp"
#include "xplor/memory/config.hpp"
#include "xplor/model/config.hpp"

namespace xplor::testing {

inline model::transformer_config tiny_reasoner(int vocab, int d_model, int max_seq_len) {
  model::transformer_config c;
  c.vocab_size = vocab;
  c.d_model = d_model;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 3 * d_model / 2;
  c.max_seq_len = max_seq_len;
  c.init_std = d_model <= 8 ? 0.2f : 0.3f;
  return c;
}

inline memory::memgen_config small_memgen(std::vector<std::int32_t> delimiters, int prompt_latents,
                                          int inference_latents, int max_inference_aug) {
  memory::memgen_config cfg;
  cfg.prompt_latents = prompt_latents;
  cfg.inference_latents = inference_latents;
  cfg.max_inference_aug = max_inference_aug;
  cfg.delimiters = std::move(delimiters);
  cfg.weaver_lora.rank = cfg.trigger_lora.rank = 2;
  cfg.weaver_lora.alpha = 4.0f;
  cfg.weaver_lora.dropout = cfg.trigger_lora.dropout = 0.0f;
  return cfg;
}

}  // namespace xplor::testing
