// Checkpoints of the reference transformer (and optionally its AdamW state) as safetensors
// files: one tensor per entry of the parameter layout, named as in docs/model.md, the config in
// __metadata__ with a content hash of everything else. Loading validates everything (the hash,
// config values and sizes against stated limits, names, shapes, finite values, v >= 0) into a
// staging buffer first, so a bad file raises xplor::error and leaves the model untouched.
#pragma once

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "xplor/core/config.hpp"
#include "xplor/core/error.hpp"
#include "xplor/core/json_guard.hpp"
#include "xplor/model/optim.hpp"
#include "xplor/model/safetensors.hpp"
#include "xplor/model/transformer.hpp"

namespace xplor::model {

namespace detail {

inline constexpr const char* format_name = "xplor.transformer.v1";
/// The largest vocabulary the samplers support (mass_units: V 2^40 within 63 bits).
inline constexpr std::int64_t max_vocab_size = std::int64_t{1} << 22;

inline std::string float_text(float x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", double(x));  // 9 digits round-trip any float
  return buf;
}

/// The config as __metadata__ strings.
inline std::map<std::string, std::string> config_metadata(const transformer_config& c) {
  return {{"format", format_name},
          {"xplor_version", XPLOR_VERSION_STRING},
          {"vocab_size", std::to_string(c.vocab_size)},
          {"d_model", std::to_string(c.d_model)},
          {"n_layers", std::to_string(c.n_layers)},
          {"n_heads", std::to_string(c.n_heads)},
          {"d_ff", std::to_string(c.d_ff)},
          {"max_seq_len", std::to_string(c.max_seq_len)},
          {"norm", std::string(to_string(c.norm))},
          {"positions", std::string(to_string(c.positions))},
          {"mlp", std::string(to_string(c.mlp))},
          {"tie_embeddings", c.tie_embeddings ? "true" : "false"},
          {"norm_eps", float_text(c.norm_eps)},
          {"rope_theta", float_text(c.rope_theta)},
          {"init_std", float_text(c.init_std)}};
}

inline const std::string& field(const std::map<std::string, std::string>& meta, const std::string& key,
                                const std::filesystem::path& path) {
  const auto it = meta.find(key);
  xplor::detail::require(it != meta.end(), "xplor::model::load_checkpoint", "'", path.string(),
                         "': __metadata__ has no '", key, "'");
  return it->second;
}

/// The whole text as a number, strictly (no spaces, no '+', no trailing characters).
template <class T>
T parse_number(const std::string& text, const std::string& key, const std::filesystem::path& path) {
  T v{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec == std::errc() && end == text.data() + text.size()) return v;
  xplor::detail::fail("xplor::model::load_checkpoint", "'", path.string(), "': __metadata__ '", key, "' = '",
                      xplor::detail::json_guard_brief(text), "' is not ",
                      std::is_integral_v<T> ? "an integer in range" : "a float");
}

template <class Enum>
Enum parse_enum(const std::string& text, const std::string& key, const std::filesystem::path& path, Enum a,
                Enum b) {
  if (text == to_string(a)) return a;
  if (text == to_string(b)) return b;
  xplor::detail::fail("xplor::model::load_checkpoint", "'", path.string(), "': __metadata__ '", key, "' = '",
                      text, "' is not '", to_string(a), "' or '", to_string(b), "'");
}

inline transformer_config config_from_metadata(const std::map<std::string, std::string>& m,
                                               const std::filesystem::path& path) {
  const std::string& format = field(m, "format", path);
  xplor::detail::require(format == format_name, "xplor::model::load_checkpoint", "'", path.string(),
                         "': format '", format, "' is not '", format_name, "'");
  transformer_config c;
  c.vocab_size = parse_number<int>(field(m, "vocab_size", path), "vocab_size", path);
  c.d_model = parse_number<int>(field(m, "d_model", path), "d_model", path);
  c.n_layers = parse_number<int>(field(m, "n_layers", path), "n_layers", path);
  c.n_heads = parse_number<int>(field(m, "n_heads", path), "n_heads", path);
  c.d_ff = parse_number<int>(field(m, "d_ff", path), "d_ff", path);
  c.max_seq_len = parse_number<int>(field(m, "max_seq_len", path), "max_seq_len", path);
  c.norm = parse_enum(field(m, "norm", path), "norm", path, norm_kind::rmsnorm, norm_kind::layernorm);
  c.positions =
      parse_enum(field(m, "positions", path), "positions", path, position_kind::learned, position_kind::rope);
  c.mlp = parse_enum(field(m, "mlp", path), "mlp", path, mlp_kind::gelu, mlp_kind::swiglu);
  const std::string& tie = field(m, "tie_embeddings", path);
  xplor::detail::require(tie == "true" || tie == "false", "xplor::model::load_checkpoint", "'", path.string(),
                         "': __metadata__ 'tie_embeddings' = '", tie, "' is not true or false");
  c.tie_embeddings = tie == "true";
  c.norm_eps = parse_number<float>(field(m, "norm_eps", path), "norm_eps", path);
  c.rope_theta = parse_number<float>(field(m, "rope_theta", path), "rope_theta", path);
  c.init_std = parse_number<float>(field(m, "init_std", path), "init_std", path);
  // Values, then sizes against stated limits before anything is allocated: a 1 KB header with
  // n_layers = 2e9 ended in bad_alloc.
  try {
    c.validate();
  } catch (const error& e) {
    xplor::detail::fail("xplor::model::load_checkpoint", "'", path.string(),
                        "': __metadata__ holds an invalid config (", e.what(), ")");
  }
  const auto limit = [&](const char* key, std::int64_t value, std::int64_t max) {
    xplor::detail::require(value <= max, "xplor::model::load_checkpoint", "'", path.string(),
                           "': __metadata__ ", key, " = ", value, " is over the limit of ", max);
  };
  limit("vocab_size", c.vocab_size, max_vocab_size);
  limit("d_model", c.d_model, std::int64_t{1} << 16);
  limit("n_layers", c.n_layers, std::int64_t{1} << 12);
  limit("d_ff", c.d_ff, std::int64_t{1} << 20);
  limit("max_seq_len", c.max_seq_len, std::int64_t{1} << 20);
  limit("max_seq_len x d_model", std::int64_t{c.max_seq_len} * c.d_model, std::int64_t{1} << 28);
  return c;
}

/// 64-bit content hash of a checkpoint: every tensor (name, shape, data bits) in name order, then
/// every metadata entry but the hash itself. Each step is a bijection of the state, so one
/// corrupted word always changes the hash and random corruption goes unnoticed with probability
/// 2^-64; it is a check against corruption, not against a forger (it is not cryptographic).
class content_hasher {
 public:
  void bytes(std::string_view s) {
    word(s.size());
    for (std::size_t i = 0; i < s.size(); i += 8) {
      std::uint64_t w = 0;
      for (std::size_t k = 0; k < 8 && i + k < s.size(); ++k)
        w |= std::uint64_t{static_cast<unsigned char>(s[i + k])} << (8 * k);
      word(w);
    }
  }
  void tensor(std::string_view name, std::span<const std::int64_t> shape, std::span<const float> data) {
    bytes(name);
    word(shape.size());
    for (const std::int64_t d : shape) word(static_cast<std::uint64_t>(d));
    word(data.size());
    for (const float x : data) word(std::bit_cast<std::uint32_t>(x));
  }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h_));
    return buf;
  }

 private:
  void word(std::uint64_t w) {
    h_ = (h_ ^ w) * 0x100000001b3ull;  // FNV-1a's prime, a word at a time
    h_ ^= h_ >> 29;
  }
  std::uint64_t h_ = 0xcbf29ce484222325ull;
};

inline constexpr const char* hash_key = "content_hash";

inline void hash_metadata(content_hasher& h, const std::map<std::string, std::string>& metadata) {
  for (const auto& [key, value] : metadata)
    if (key != hash_key) {
      h.bytes(key);
      h.bytes(value);
    }
}

/// Checks the file's content hash; files written before it existed load with a warning on stderr.
inline void verify_content_hash(const safetensors_contents& file, const std::filesystem::path& path) {
  const auto stored = file.metadata.find(hash_key);
  if (stored == file.metadata.end()) {
    std::fprintf(stderr,
                 "xplor::model::load_checkpoint: warning: '%s' has no content_hash (written before xplor "
                 "0.1.1?); loaded without an integrity check\n",
                 path.string().c_str());
    return;
  }
  content_hasher h;
  for (const auto& [name, t] : file.tensors) h.tensor(name, t.shape, t.data);
  hash_metadata(h, file.metadata);
  xplor::detail::require(h.hex() == stored->second, "xplor::model::load_checkpoint", "'", path.string(),
                         "': content_hash ", xplor::detail::json_guard_brief(stored->second),
                         " does not match the contents (", h.hex(), "): the file is corrupted");
}

/// Names the first differing field of two configs ("d_model: file 64, model 128").
inline std::string config_difference(const transformer_config& file, const transformer_config& model) {
  const auto a = config_metadata(file), b = config_metadata(model);
  for (const auto& [key, value] : a)
    if (key != "xplor_version" && b.at(key) != value) return key + ": file " + value + ", model " + b.at(key);
  return "";
}

/// Copies the tensors of `layout` named prefix + name from the file into `dst`, checking shapes
/// and finiteness (and, for AdamW's second moment, v >= 0: a negative v gave NaN after a step).
inline void stage(const safetensors_contents& file, const parameter_layout& layout, const std::string& prefix,
                  std::vector<float>& dst, const std::filesystem::path& path, bool non_negative = false,
                  const char* fn = "xplor::model::load_checkpoint") {
  dst.assign(static_cast<std::size_t>(layout.total), 0.0f);
  for (const tensor_slot& t : layout.tensors) {
    const std::string name = prefix + t.name;
    const auto it = file.tensors.find(name);
    xplor::detail::require(it != file.tensors.end(), fn, "'", path.string(), "': tensor '", name,
                           "' is missing");
    xplor::detail::require(it->second.shape == t.shape, fn, "'", path.string(), "': tensor '", name,
                           "' has shape ", detail::shape_text(it->second.shape), ", the model needs ",
                           detail::shape_text(t.shape));
    const auto& data = it->second.data;
    for (std::size_t i = 0; i < data.size(); ++i)
      xplor::detail::require(
          std::isfinite(data[i]) && (!non_negative || data[i] >= 0.0f), fn, "'", path.string(), "': tensor '",
          name, "' element ", i, " is ", data[i],
          non_negative ? " (AdamW's second moment must be finite and >= 0)" : " (not finite)");
    std::copy(data.begin(), data.end(), dst.begin() + t.offset);
  }
}

/// Writes the tensors of `layout` from `params` (and, given an optimizer, its moments as
/// "optimizer.m.<name>" / "optimizer.v.<name>" with "optimizer.step"), plus `tensors` already
/// listed, to `path` atomically, with the content hash over all of them and `metadata`.
inline void write_checkpoint(const std::filesystem::path& path, const parameter_layout& layout,
                             std::span<const float> params, adamw* optimizer,
                             std::map<std::string, std::string> metadata, std::vector<tensor_view_in> tensors,
                             const char* fn = "xplor::model::save_checkpoint") {
  xplor::detail::require(!metadata.contains(hash_key), fn, "extra metadata key '", hash_key,
                         "' is reserved for the content hash");
  auto add_all = [&](const std::string& prefix, std::span<const float> buffer) {
    for (const tensor_slot& t : layout.tensors)
      tensors.push_back(
          {prefix + t.name, t.shape,
           buffer.subspan(static_cast<std::size_t>(t.offset), static_cast<std::size_t>(t.size))});
  };
  add_all("", params);
  if (optimizer != nullptr) {
    add_all("optimizer.m.", optimizer->first_moment());
    add_all("optimizer.v.", optimizer->second_moment());
    metadata["optimizer.step"] = std::to_string(optimizer->steps());
  }
  std::sort(tensors.begin(), tensors.end(),
            [](const tensor_view_in& a, const tensor_view_in& b) { return a.name < b.name; });
  content_hasher h;
  for (const tensor_view_in& t : tensors) h.tensor(t.name, t.shape, t.data);
  hash_metadata(h, metadata);
  metadata[hash_key] = h.hex();
  write_safetensors(path, tensors, metadata);
}

/// A checkpoint's parameters (and optimizer state) validated and staged, not yet in the model.
struct staged_checkpoint {
  std::vector<float> params, m, v;
  std::int64_t step = 0;
};

/// Stages the parameters of `layout` (and, when `optimizer`, AdamW's moments and step) from
/// `file`; every other tensor must be one of `also_allowed` (validated by the caller), or the
/// file is an error: a stray tensor means the file is not what its config says.
inline staged_checkpoint stage_checkpoint(const safetensors_contents& file, const parameter_layout& layout,
                                          bool optimizer, const std::filesystem::path& path, const char* fn,
                                          std::span<const std::string_view> also_allowed = {}) {
  staged_checkpoint s;
  stage(file, layout, "", s.params, path, false, fn);
  if (optimizer) {
    stage(file, layout, "optimizer.m.", s.m, path, false, fn);
    stage(file, layout, "optimizer.v.", s.v, path, true, fn);
    s.step = parse_number<std::int64_t>(field(file.metadata, "optimizer.step", path), "optimizer.step", path);
    xplor::detail::require(s.step >= 0, fn, "'", path.string(), "': optimizer.step = ", s.step,
                           " is negative");
  }
  for (const auto& [name, tensor] : file.tensors) {
    if (std::find(also_allowed.begin(), also_allowed.end(), name) != also_allowed.end()) continue;
    const bool moment = name.starts_with("optimizer.m.") || name.starts_with("optimizer.v.");
    const std::string base = moment ? name.substr(12) : name;
    bool known = false;
    for (const tensor_slot& t : layout.tensors) known = known || t.name == base;
    xplor::detail::require(known, fn, "'", path.string(), "': unexpected tensor '",
                           xplor::detail::json_guard_brief(name), "' for this config");
  }
  return s;
}

/// Moves a staged checkpoint into the model's parameters (and the optimizer).
inline void commit(const staged_checkpoint& s, std::span<float> params, adamw* optimizer) {
  std::copy(s.params.begin(), s.params.end(), params.begin());
  if (optimizer != nullptr) {
    std::copy(s.m.begin(), s.m.end(), optimizer->first_moment().begin());
    std::copy(s.v.begin(), s.v.end(), optimizer->second_moment().begin());
    optimizer->set_steps(s.step);
  }
}

}  // namespace detail

/// A model whose parameters a checkpoint holds: the transformer's configuration and a parameter
/// table over one buffer (xplor::model::transformer, xplor::bubble::transformer).
template <class Model>
concept checkpointable = requires(Model& m, const Model& cm) {
  { cm.config() } -> std::convertible_to<const transformer_config&>;
  { cm.layout() } -> std::convertible_to<const parameter_layout&>;
  { m.params() } -> std::convertible_to<std::span<float>>;
};

/// Writes the model's parameters (and, given an optimizer, its moments as "optimizer.m.<name>" and
/// "optimizer.v.<name>" with its step count) to `path` atomically. `extra` metadata (e.g. the
/// training step of an example) is stored beside the config.
template <checkpointable Model>
void save_checkpoint(const std::filesystem::path& path, const Model& model, adamw* optimizer = nullptr,
                     const std::map<std::string, std::string>& extra = {}) {
  auto metadata = detail::config_metadata(model.config());
  for (const auto& [k, v] : extra) {
    xplor::detail::require(!metadata.contains(k), "xplor::model::save_checkpoint", "extra metadata key '", k,
                           "' collides with a config field");
    metadata[k] = v;
  }
  detail::write_checkpoint(path, model.layout(), model.params(), optimizer, std::move(metadata), {});
}

/// The config stored in a checkpoint (to build a model before loading it).
/// The config stored in a checkpoint (to build a model before loading it); throws unless the
/// file holds at least the parameters the config implies, so a model built from it allocates no
/// more than the file's size.
inline transformer_config read_checkpoint_config(const std::filesystem::path& path) {
  const safetensors_contents file = read_safetensors(path);
  const transformer_config c = detail::config_from_metadata(file.metadata, path);
  std::int64_t held = 0;
  for (const auto& [name, t] : file.tensors)
    if (!name.starts_with("optimizer.")) held += static_cast<std::int64_t>(t.data.size());
  const std::int64_t needed = parameter_layout(c).total;
  xplor::detail::require(held >= needed, "xplor::model::read_checkpoint_config", "'", path.string(),
                         "': the config needs ", needed, " parameters but the file holds ", held);
  return c;
}

/// Loads parameters (and, given an optimizer, its state) from `path` into `model`; returns the
/// file's metadata. On any problem throws xplor::error and changes nothing.
template <checkpointable Model>
std::map<std::string, std::string> load_checkpoint(const std::filesystem::path& path, Model& model,
                                                   adamw* optimizer = nullptr) {
  constexpr const char* fn = "xplor::model::load_checkpoint";
  const safetensors_contents file = read_safetensors(path);
  detail::verify_content_hash(file, path);
  const transformer_config stored = detail::config_from_metadata(file.metadata, path);
  xplor::detail::require(stored == model.config(), fn, "'", path.string(), "': config mismatch, ",
                         detail::config_difference(stored, model.config()));
  detail::commit(detail::stage_checkpoint(file, model.layout(), optimizer != nullptr, path, fn),
                 model.params(), optimizer);
  return file.metadata;
}

}  // namespace xplor::model
