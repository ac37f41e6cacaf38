// Writes the checkpoints that tools/torch_reference.py turns into PyTorch golden values for the
// transformer parity test: one tiny model per option combination (norm x positions x mlp, with
// tied and untied unembeddings alternating), in tests/data/parity/<name>.safetensors.
//
// Usage: xplor_make_parity_checkpoints <output-dir>
#include <cstdio>
#include <filesystem>
#include <xplor/model/checkpoint.hpp>

#include "parity_configs.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output-dir>\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  for (const auto& p : xplor::tools::parity_cases()) {
    const xplor::model::transformer model(p.config, p.seed);
    xplor::model::save_checkpoint(dir / (p.name + ".safetensors"), model);
    std::printf("wrote %s\n", (dir / (p.name + ".safetensors")).c_str());
  }
  return 0;
}
