// Checkpoints of the Dragon Hatchling (bdh.hpp) as safetensors files with the authors' tensor
// names, as their module's state_dict() gives them: "decoder", "encoder", "encoder_v", "lm_head",
// "embed.weight" and the RoPE buffer "attn.freqs" (1, 1, 1, N), so that
// BDH(config).load_state_dict(safetensors.torch.load_file(path)) loads a parameter-only file
// strictly. The config is in __metadata__ with the transformer checkpoints' content hash; AdamW's
// moments optionally as "optimizer.m.<name>" / "optimizer.v.<name>". Written atomically; loading
// validates everything into staging buffers first and changes nothing on error.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/json_guard.hpp"
#include "xplor/model/bdh.hpp"
#include "xplor/model/checkpoint.hpp"
#include "xplor/model/optim.hpp"
#include "xplor/model/safetensors.hpp"

namespace xplor::model {

inline constexpr const char* bdh_format_name = "xplor.bdh.v1";
inline constexpr const char* bdh_freqs_name = "attn.freqs";

/// The config as __metadata__ strings.
inline std::map<std::string, std::string> bdh_config_metadata(const bdh_config& c) {
  return {{"format", bdh_format_name},
          {"xplor_version", XPLOR_VERSION_STRING},
          {"n_layer", std::to_string(c.n_layer)},
          {"n_embd", std::to_string(c.n_embd)},
          {"n_head", std::to_string(c.n_head)},
          {"mlp_internal_dim_multiplier", std::to_string(c.mlp_internal_dim_multiplier)},
          {"vocab_size", std::to_string(c.vocab_size)},
          {"dropout", detail::float_text(c.dropout)},
          {"init_std", detail::float_text(c.init_std)},
          {"norm_eps", detail::float_text(c.norm_eps)}};
}

/// The config of a checkpoint's __metadata__, validated and within size limits (checked before
/// anything is allocated).
inline bdh_config bdh_config_from_metadata(const std::map<std::string, std::string>& m,
                                           const std::filesystem::path& path) {
  constexpr const char* fn = "xplor::model::load_checkpoint";
  const std::string& format = detail::field(m, "format", path);
  xplor::detail::require(format == bdh_format_name, fn, "'", path.string(), "': format '",
                         xplor::detail::json_guard_brief(format), "' is not '", bdh_format_name, "'");
  bdh_config c;
  c.n_layer = detail::parse_number<int>(detail::field(m, "n_layer", path), "n_layer", path);
  c.n_embd = detail::parse_number<int>(detail::field(m, "n_embd", path), "n_embd", path);
  c.n_head = detail::parse_number<int>(detail::field(m, "n_head", path), "n_head", path);
  c.mlp_internal_dim_multiplier = detail::parse_number<int>(
      detail::field(m, "mlp_internal_dim_multiplier", path), "mlp_internal_dim_multiplier", path);
  c.vocab_size = detail::parse_number<int>(detail::field(m, "vocab_size", path), "vocab_size", path);
  c.dropout = detail::parse_number<float>(detail::field(m, "dropout", path), "dropout", path);
  c.init_std = detail::parse_number<float>(detail::field(m, "init_std", path), "init_std", path);
  c.norm_eps = detail::parse_number<float>(detail::field(m, "norm_eps", path), "norm_eps", path);
  try {
    c.validate();
  } catch (const error& e) {
    xplor::detail::fail(fn, "'", path.string(), "': __metadata__ holds an invalid config (", e.what(), ")");
  }
  const auto limit = [&](const char* key, std::int64_t value, std::int64_t max) {
    xplor::detail::require(value <= max, fn, "'", path.string(), "': __metadata__ ", key, " = ", value,
                           " is over the limit of ", max);
  };
  limit("vocab_size", c.vocab_size, detail::max_vocab_size);
  limit("n_embd", c.n_embd, std::int64_t{1} << 16);
  limit("n_layer", c.n_layer, std::int64_t{1} << 12);
  limit("n_head", c.n_head, std::int64_t{1} << 12);
  limit("n_head x neurons x n_embd", std::int64_t{c.n_head} * c.neurons() * c.n_embd, std::int64_t{1} << 32);
  return c;
}

/// Writes the model's parameters, its RoPE frequencies as "attn.freqs" and, given an optimizer,
/// its moments and step count to `path` atomically. `extra` metadata is stored beside the config.
inline void save_checkpoint(const std::filesystem::path& path, const bdh& model, adamw* optimizer = nullptr,
                            const std::map<std::string, std::string>& extra = {}) {
  constexpr const char* fn = "xplor::model::save_checkpoint";
  auto metadata = bdh_config_metadata(model.config());
  for (const auto& [k, v] : extra) {
    xplor::detail::require(!metadata.contains(k) && k != detail::hash_key && k != "optimizer.step", fn,
                           "extra metadata key '", k, "' collides with a reserved key");
    metadata[k] = v;
  }
  detail::write_checkpoint(path, model.layout(), model.params(), optimizer, std::move(metadata),
                           {{bdh_freqs_name, {1, 1, 1, model.config().neurons()}, model.rope_freqs()}}, fn);
}

/// The config stored in a checkpoint, to build a model before loading it; throws unless the file
/// holds at least the parameters the config implies (a model built from it allocates no more than
/// the file's size).
inline bdh_config read_bdh_checkpoint_config(const std::filesystem::path& path) {
  const safetensors_contents file = read_safetensors(path);
  const bdh_config c = bdh_config_from_metadata(file.metadata, path);
  std::int64_t held = 0;
  for (const auto& [name, t] : file.tensors)
    if (!name.starts_with("optimizer.")) held += static_cast<std::int64_t>(t.data.size());
  const std::int64_t needed = bdh_layout(c).total;
  xplor::detail::require(held >= needed, "xplor::model::read_bdh_checkpoint_config", "'", path.string(),
                         "': the config needs ", needed, " parameters but the file holds ", held);
  return c;
}

/// Loads parameters (and, given an optimizer, its state) from `path` into `model`; returns the
/// file's metadata. A missing "attn.freqs" is accepted (files from other writers); a present one
/// must equal the model's frequencies within 1e-6 relative. On any problem throws xplor::error
/// and changes nothing.
inline std::map<std::string, std::string> load_checkpoint(const std::filesystem::path& path, bdh& model,
                                                          adamw* optimizer = nullptr) {
  constexpr const char* fn = "xplor::model::load_checkpoint";
  const safetensors_contents file = read_safetensors(path);
  detail::verify_content_hash(file, path);
  const bdh_config stored = bdh_config_from_metadata(file.metadata, path);
  if (!(stored == model.config())) {
    const auto a = bdh_config_metadata(stored), b = bdh_config_metadata(model.config());
    std::string diff;
    for (const auto& [key, value] : a)
      if (key != "xplor_version" && b.at(key) != value && diff.empty())
        diff = key + ": file " + value + ", model " + b.at(key);
    xplor::detail::fail(fn, "'", path.string(), "': config mismatch, ", diff);
  }
  constexpr std::string_view freqs_name = bdh_freqs_name;
  const detail::staged_checkpoint staged = detail::stage_checkpoint(
      file, model.layout(), optimizer != nullptr, path, fn, std::span(&freqs_name, 1));
  if (const auto it = file.tensors.find(bdh_freqs_name); it != file.tensors.end()) {
    const auto& tensor = it->second;
    const std::int64_t N = model.config().neurons();
    const std::vector<std::int64_t> shape{1, 1, 1, N};
    xplor::detail::require(tensor.shape == shape, fn, "'", path.string(), "': tensor '", bdh_freqs_name,
                           "' has shape ", detail::shape_text(tensor.shape), ", the model needs ",
                           detail::shape_text(shape));
    const auto f = model.rope_freqs();
    for (std::int64_t i = 0; i < N; ++i)
      xplor::detail::require(std::abs(tensor.data[i] - f[i]) <= 1e-6f * std::abs(f[i]), fn, "'",
                             path.string(), "': ", bdh_freqs_name, "[", i, "] = ", tensor.data[i],
                             ", the model's is ", f[i], " (a different RoPE)");
  }
  detail::commit(staged, model.params(), optimizer);
  return file.metadata;
}

}  // namespace xplor::model
