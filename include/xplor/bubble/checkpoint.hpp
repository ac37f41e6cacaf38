// Checkpoints of bubble models: the transformer's checkpoint format (safetensors, atomic writes,
// content hash, optional AdamW state) with the bubble configuration in the metadata, so a file
// loads only into a model with the same plan, budgets, score channel, clip and merge.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "xplor/bubble/model.hpp"
#include "xplor/core/error.hpp"
#include "xplor/model/checkpoint.hpp"
#include "xplor/model/safetensors.hpp"

namespace xplor::bubble {

/// The bubble configuration as __metadata__ strings ("bubble.plan" = "regular,fork,...", ...).
inline std::map<std::string, std::string> bubble_metadata(const bubble_config& b) {
  std::string plan;
  for (std::size_t l = 0; l < b.plan.size(); ++l)
    plan += std::string(l ? "," : "") + (b.plan[l] == layer_kind::fork ? "fork" : "regular");
  return {{"bubble.plan", plan},
          {"bubble.block_size", std::to_string(b.block_size)},
          {"bubble.max_block_size", std::to_string(b.max_block_size)},
          {"bubble.fork_channel", b.fork_channel ? "true" : "false"},
          {"bubble.score_clip", xplor::model::detail::float_text(b.score_clip)},
          {"bubble.merge", b.merge == averaging::residual ? "residual" : "rightmost"}};
}

/// Writes the model (and the optimizer's state) atomically, as xplor::model::save_checkpoint does,
/// with the bubble configuration beside the transformer's.
inline void save_checkpoint(const std::filesystem::path& path, const transformer& model,
                            xplor::model::adamw* optimizer = nullptr,
                            const std::map<std::string, std::string>& extra = {}) {
  auto metadata = bubble_metadata(model.bubble());
  for (const auto& [k, v] : extra) {
    xplor::detail::require(!metadata.contains(k), "xplor::bubble::save_checkpoint", "extra metadata key '", k,
                           "' collides with a bubble config field");
    metadata[k] = v;
  }
  xplor::model::save_checkpoint(path, model, optimizer, metadata);
}

/// Loads a bubble checkpoint into `model` (and the optimizer); throws xplor::error and changes
/// nothing unless the file's transformer and bubble configurations equal the model's.
inline std::map<std::string, std::string> load_checkpoint(const std::filesystem::path& path,
                                                          transformer& model,
                                                          xplor::model::adamw* optimizer = nullptr) {
  constexpr const char* fn = "xplor::bubble::load_checkpoint";
  const auto stored = xplor::model::read_safetensors(path).metadata;
  for (const auto& [key, value] : bubble_metadata(model.bubble())) {
    const auto it = stored.find(key);
    xplor::detail::require(it != stored.end(), fn, "'", path.string(), "': no '", key,
                           "' in the metadata (not a bubble model's checkpoint)");
    xplor::detail::require(it->second == value, fn, "'", path.string(), "': bubble config mismatch, ", key,
                           ": file ", it->second, ", model ", value);
  }
  return xplor::model::load_checkpoint(path, model, optimizer);
}

}  // namespace xplor::bubble
