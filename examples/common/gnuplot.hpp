// Shared by the examples: renders a gnuplot script the example wrote (its PNG path is set inside
// the script) when gnuplot is installed, and says what was written either way.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace xplor::examples {

/// Runs `gnuplot script`; returns false only when gnuplot exists and fails.
inline bool render_plot(const std::string& script, const std::string& png, const std::string& data) {
  if (std::system("command -v gnuplot > /dev/null 2>&1") != 0) {
    std::printf("\ngnuplot not found: wrote %s and %s (no %s)\n", data.c_str(), script.c_str(), png.c_str());
    return true;
  }
  const std::string cmd = "gnuplot '" + script + "'";
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "gnuplot failed on %s\n", script.c_str());
    return false;
  }
  std::printf("\nwrote %s (data %s, gnuplot script %s)\n", png.c_str(), data.c_str(), script.c_str());
  return true;
}

}  // namespace xplor::examples
