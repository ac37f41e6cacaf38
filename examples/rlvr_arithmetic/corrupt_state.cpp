// Test helper for resume_state_test.cmake: rewrites one __metadata__ entry of a safetensors file
// (or erases it with --erase), keeping every tensor, the way a damaged or hand-edited checkpoint
// would look. Usage: corrupt_state FILE KEY VALUE | corrupt_state FILE KEY --erase
#include <cstdio>
#include <exception>
#include <string>
#include <vector>
#include <xplor/model/safetensors.hpp>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: corrupt_state FILE KEY VALUE|--erase\n");
    return 2;
  }
  try {
    auto contents = xplor::model::read_safetensors(argv[1]);
    if (std::string(argv[3]) == "--erase")
      contents.metadata.erase(argv[2]);
    else
      contents.metadata[argv[2]] = argv[3];
    std::vector<xplor::model::tensor_view_in> tensors;
    for (const auto& [name, t] : contents.tensors) tensors.push_back({name, t.shape, t.data});
    xplor::model::write_safetensors(argv[1], tensors, contents.metadata);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
