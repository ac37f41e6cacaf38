// The tiny configurations of the PyTorch parity test (shared by the checkpoint writer and the
// test, so they cannot drift apart).
#pragma once

#include <string>
#include <vector>
#include <xplor/model/config.hpp>

namespace xplor::tools {

struct parity_case {
  std::string name;
  model::transformer_config config;
  std::uint64_t seed;
};

inline std::vector<parity_case> parity_cases() {
  using namespace xplor::model;
  std::vector<parity_case> out;
  int k = 0;
  for (auto norm : {norm_kind::rmsnorm, norm_kind::layernorm})
    for (auto pos : {position_kind::learned, position_kind::rope})
      for (auto mlp : {mlp_kind::gelu, mlp_kind::swiglu}) {
        transformer_config c;
        c.vocab_size = 32;
        c.d_model = 16;
        c.n_layers = 2;
        c.n_heads = 4;
        c.d_ff = 24;
        c.max_seq_len = 8;
        c.norm = norm;
        c.positions = pos;
        c.mlp = mlp;
        c.tie_embeddings = k % 2 == 0;
        c.init_std = 0.2f;  // large enough that every layer is far from linear
        std::string name = std::string(to_string(norm)) + "-" + std::string(to_string(pos)) + "-" +
                           std::string(to_string(mlp)) + (c.tie_embeddings ? "-tied" : "-untied");
        out.push_back({std::move(name), c, 1000u + static_cast<std::uint64_t>(k)});
        ++k;
      }
  return out;
}

}  // namespace xplor::tools
