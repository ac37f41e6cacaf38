// libFuzzer target for the DeepSearch solution cache's JSONL loader: the input is written to a
// file and loaded. Any exception other than xplor::error, a crash or a sanitizer report is a
// finding; a loaded cache must save and load back to the same problems.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <xplor/search/solution_cache.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/xplor_cache_fuzz." + std::to_string(::getpid());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) __builtin_trap();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) __builtin_trap();
  std::fclose(f);
  xplor::search::solution_cache cache(4);
  try {
    cache.load(path);
  } catch (const xplor::error&) {
    return 0;
  }
  cache.save(path + ".out");
  xplor::search::solution_cache back(4);
  back.load(path + ".out");
  if (back.problems() != cache.problems()) __builtin_trap();
  return 0;
}
