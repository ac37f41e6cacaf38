// libFuzzer target for the checkpoint loaders: the input is written to a file and read with
// read_safetensors, then as a transformer checkpoint (config, tensors, optimizer state, content
// hash) into a small model. Any exception other than xplor::error, a crash or a sanitizer report
// is a finding; an accepted file must hold exactly the bytes its header promises.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <xplor/model/checkpoint.hpp>

namespace {
const std::string& scratch() {
  static const std::string path = "/tmp/xplor_safetensors_fuzz." + std::to_string(::getpid());
  return path;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::FILE* f = std::fopen(scratch().c_str(), "wb");
  if (f == nullptr) __builtin_trap();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) __builtin_trap();
  std::fclose(f);
  try {
    const auto contents = xplor::model::read_safetensors(scratch());
    std::size_t values = 0;
    for (const auto& [name, t] : contents.tensors) values += t.data.size();
    std::uint64_t header = 0;
    for (int i = 0; i < 8; ++i) header |= std::uint64_t{data[i]} << (8 * i);
    if (8 + header + 4 * values != size) __builtin_trap();
  } catch (const xplor::error&) {
  }
  try {
    (void)xplor::model::read_checkpoint_config(scratch());
  } catch (const xplor::error&) {
  }
  try {
    // The config of tests/fuzz/corpus/safetensors/checkpoint (written by the checkpoint tests).
    xplor::model::transformer_config c;
    c.vocab_size = 8;
    c.d_model = 8;
    c.n_layers = 1;
    c.n_heads = 2;
    c.d_ff = 16;
    c.max_seq_len = 8;
    static xplor::model::transformer model(c, 1);
    static xplor::model::adamw optimizer(model.layout());
    (void)xplor::model::load_checkpoint(scratch(), model, &optimizer);
  } catch (const xplor::error&) {
  }
  return 0;
}
