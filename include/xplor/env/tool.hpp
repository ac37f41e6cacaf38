// The tool interface for GEM's tool-use wrapper (see <xplor/env/wrappers.hpp>): a tool has a name
// and turns the text inside a tool call into an output. Tools are shared between cloned
// environments, so run() is const and must be safe to call from several threads at once.
#pragma once

#include <string>
#include <string_view>

namespace xplor::env {

/// What a tool call produced: `ok` is false when the tool rejected its input; `output` is then the
/// error message the agent sees.
struct tool_result {
  bool ok = false;
  std::string output = {};
};

/// A tool callable from a model response, e.g. `<tool name="calculator">1+2</tool>`.
class tool {
 public:
  virtual ~tool() = default;
  /// The name used in tool calls; non-empty, letters, digits, '_' and '-'.
  virtual std::string name() const = 0;
  /// Runs the tool on the text between the tags. Must not throw for bad input: return ok=false.
  virtual tool_result run(std::string_view input) const = 0;
};

}  // namespace xplor::env
