// Weaver and trigger files: the module's trainable tensors (LoRA under PEFT's key scheme, the banks,
// norms, scales, projections or head under the authors' module paths) as safetensors, written
// atomically next to the base checkpoint. The metadata records the adapter's settings and a
// fingerprint of the frozen base weights, so loading refuses an adapter trained on another
// reasoner or with another alpha instead of computing something else without a word.
#pragma once

#include <algorithm>
#include <concepts>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/model/checkpoint.hpp"
#include "xplor/model/lora.hpp"
#include "xplor/model/safetensors.hpp"
#include "xplor/model/transformer.hpp"

namespace xplor::memory {

inline constexpr const char* adapter_format = "xplor.memgen.adapter.v1";

/// A weaver or a trigger: trainable tensors over a frozen base model.
template <class Module>
concept adapter_module = requires(Module& m, const Module& cm) {
  { Module::module_name } -> std::convertible_to<const char*>;
  { cm.layout() } -> std::convertible_to<const model::parameter_layout&>;
  { m.params() } -> std::convertible_to<std::span<float>>;
  { cm.params() } -> std::convertible_to<std::span<const float>>;
  { cm.base() } -> std::convertible_to<const model::transformer&>;
  { cm.lora() } -> std::convertible_to<const model::lora_layout&>;
};

namespace detail {

/// The metadata that must match between a file and a module, in the order load_adapter checks
/// it: the format, the kind of module, the base weights, the LoRA settings.
inline std::vector<std::pair<std::string, std::string>> adapter_identity(const char* module,
                                                                         const model::transformer& base,
                                                                         const model::lora_layout& lora) {
  model::detail::content_hasher h;
  for (const auto& t : base.layout().tensors)
    h.tensor(t.name, t.shape,
             base.params().subspan(static_cast<std::size_t>(t.offset), static_cast<std::size_t>(t.size)));
  std::string targets;
  for (model::lora_target t : lora.config().targets) {
    if (!targets.empty()) targets += ',';
    targets += to_string(t);
  }
  return {{"format", adapter_format},
          {"module", module},
          {"base.fingerprint", h.hex()},
          {"lora.rank", std::to_string(lora.config().rank)},
          {"lora.alpha", model::detail::float_text(lora.config().alpha)},
          {"lora.dropout", model::detail::float_text(lora.config().dropout)},
          {"lora.targets", targets}};
}

}  // namespace detail

/// Writes the module's tensors and identity to `path` (atomically, with a content hash).
template <adapter_module Module>
void save_adapter(const std::filesystem::path& path, const Module& m) {
  const auto identity = detail::adapter_identity(Module::module_name, m.base(), m.lora());
  std::map<std::string, std::string> metadata(identity.begin(), identity.end());
  const std::span<const float> params = m.params();
  std::vector<model::tensor_view_in> tensors;
  for (const auto& t : m.layout().tensors)
    tensors.push_back({t.name, t.shape,
                       params.subspan(static_cast<std::size_t>(t.offset), static_cast<std::size_t>(t.size))});
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  model::detail::content_hasher h;
  for (const auto& t : tensors) h.tensor(t.name, t.shape, t.data);
  model::detail::hash_metadata(h, metadata);
  metadata[model::detail::hash_key] = h.hex();
  model::write_safetensors(path, tensors, metadata);
}

/// Loads `path` into the module's tensors; throws xplor::error and changes nothing when the file
/// is corrupted, was written for other LoRA settings or another base model, or lacks a tensor.
template <adapter_module Module>
void load_adapter(const std::filesystem::path& path, Module& m) {
  constexpr const char* fn = "xplor::memory::load_adapter";
  const model::safetensors_contents file = model::read_safetensors(path);
  const auto stored = file.metadata.find(model::detail::hash_key);
  xplor::detail::require(stored != file.metadata.end(), fn, "'", path.string(), "' has no content_hash");
  model::detail::content_hasher h;
  for (const auto& [name, t] : file.tensors) h.tensor(name, t.shape, t.data);
  model::detail::hash_metadata(h, file.metadata);
  xplor::detail::require(h.hex() == stored->second, fn, "'", path.string(),
                         "': content_hash does not match the contents: the file is corrupted");
  for (const auto& [key, value] : detail::adapter_identity(Module::module_name, m.base(), m.lora())) {
    const auto it = file.metadata.find(key);
    xplor::detail::require(it != file.metadata.end(), fn, "'", path.string(), "' has no '", key,
                           "' metadata");
    xplor::detail::require(
        it->second == value, fn, "'", path.string(), "': ", key, " is ",
        xplor::detail::json_guard_brief(it->second), ", the module's is ", value,
        key == "base.fingerprint" ? " (the adapter was trained on other base weights)" : "");
  }
  std::vector<float> staged;
  model::detail::stage(file, m.layout(), "", staged, path, false, fn);
  for (const auto& [name, tensor] : file.tensors) {
    bool known = false;
    for (const auto& t : m.layout().tensors) known = known || t.name == name;
    xplor::detail::require(known, fn, "'", path.string(), "': unexpected tensor '",
                           xplor::detail::json_guard_brief(name), "'");
  }
  std::copy(staged.begin(), staged.end(), m.params().begin());
}

}  // namespace xplor::memory
