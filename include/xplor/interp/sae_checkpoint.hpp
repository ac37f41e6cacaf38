// Sparse autoencoder files: safetensors with SAELens' tensor names and shapes (W_enc [d_in, d_sae],
// b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in]), the config and the activation scale in
// __metadata__, and the training state (dead-latent counters, Adam's moments) beside them, so a
// loaded SAE continues training bit for bit. Written atomically with a content hash.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/json_guard.hpp"
#include "xplor/interp/sae.hpp"
#include "xplor/model/checkpoint.hpp"
#include "xplor/model/safetensors.hpp"

namespace xplor::interp {

namespace sae_detail {

inline constexpr const char* sae_format = "xplor.sae.v1";
inline constexpr const char* load_fn = "xplor::interp::load_sae";

/// SAELens' architecture names.
inline const char* architecture(sae_kind k) {
  return k == sae_kind::relu_l1 ? "standard" : k == sae_kind::topk ? "topk" : "batchtopk";
}

inline std::map<std::string, std::string> config_metadata(const sparse_autoencoder& sae) {
  const sae_config& c = sae.config();
  const auto b = [](bool v) { return std::string(v ? "true" : "false"); };
  const auto f = [](float v) { return model::detail::float_text(v); };
  return {{"format", sae_format},
          {"xplor_version", XPLOR_VERSION_STRING},
          {"architecture", architecture(c.kind)},
          {"d_in", std::to_string(c.d_in)},
          {"d_sae", std::to_string(c.n_latents)},
          {"k", std::to_string(c.k)},
          {"k_aux", std::to_string(c.k_aux)},
          {"aux_coeff", f(c.aux_coeff)},
          {"l1_coefficient", f(c.l1_coefficient)},
          {"scale_sparsity_penalty_by_decoder_norm", b(c.scale_sparsity_by_decoder_norm)},
          {"apply_b_dec_to_input", b(c.apply_b_dec_to_input)},
          {"init_encoder_as_decoder_transpose", b(c.init_encoder_as_decoder_transpose)},
          {"decoder_heuristic_init", b(c.decoder_heuristic_init)},
          {"normalize_sae_decoder", b(c.normalize_decoder)},
          {"normalize_activations", to_string(c.normalize_activations)},
          {"lr", f(c.lr)},
          {"adam_beta1", f(c.beta1)},
          {"adam_beta2", f(c.beta2)},
          {"adam_eps", f(c.eps)},
          {"dead_tokens", std::to_string(c.dead_tokens)},
          {"fire_threshold", f(c.fire_threshold)},
          {"seed", std::to_string(c.seed)},
          {"activation_scale", f(sae.activation_scale())},
          {"mse_scale", f(sae.mse_scale())},
          {"optimizer.steps", std::to_string(sae.optimizer().steps())}};
}

inline const std::string& field(const std::map<std::string, std::string>& meta, const std::string& key,
                                const std::filesystem::path& path) {
  const auto it = meta.find(key);
  xplor::detail::require(it != meta.end(), load_fn, "'", path.string(), "': __metadata__ has no '", key, "'");
  return it->second;
}

template <class T>
T number(const std::map<std::string, std::string>& meta, const std::string& key,
         const std::filesystem::path& path) {
  const std::string& text = field(meta, key, path);
  T v{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  xplor::detail::require(ec == std::errc() && end == text.data() + text.size(), load_fn, "'", path.string(),
                         "': __metadata__ '", key, "' = '", xplor::detail::json_guard_brief(text),
                         "' is not ", std::is_integral_v<T> ? "an integer in range" : "a float");
  return v;
}

inline bool flag(const std::map<std::string, std::string>& meta, const std::string& key,
                 const std::filesystem::path& path) {
  const std::string& text = field(meta, key, path);
  xplor::detail::require(text == "true" || text == "false", load_fn, "'", path.string(), "': __metadata__ '",
                         key, "' = '", xplor::detail::json_guard_brief(text), "' is not 'true' or 'false'");
  return text == "true";
}

/// The four parameter tensors as (name, shape, offset in the flat buffer, transposed from it).
struct tensor_slot {
  const char* name;
  std::vector<std::int64_t> shape;
  std::int64_t offset;
  bool transposed;  // W_enc: stored column-major [d, n], written row-major [d, n]
};
inline std::vector<tensor_slot> tensor_slots(std::int64_t d, std::int64_t n) {
  const sae_layout l{d, n};
  return {{"W_enc", {d, n}, l.w_enc(), true},
          {"b_enc", {n}, l.b_enc(), false},
          {"W_dec", {n, d}, l.w_dec(), false},
          {"b_dec", {d}, l.b_dec(), false}};
}

/// The slot's values from a flat buffer, in the file's row-major order.
inline std::vector<float> gather(std::span<const float> flat, const tensor_slot& s, std::int64_t d,
                                 std::int64_t n) {
  std::vector<float> out;
  if (!s.transposed) {
    std::int64_t size = 1;
    for (const std::int64_t e : s.shape) size *= e;
    out.assign(flat.begin() + s.offset, flat.begin() + s.offset + size);
    return out;
  }
  out.resize(static_cast<std::size_t>(d * n));
  for (std::int64_t f = 0; f < n; ++f)
    for (std::int64_t c = 0; c < d; ++c) out[c * n + f] = flat[s.offset + f * d + c];
  return out;
}

inline void scatter(const std::vector<float>& data, std::span<float> flat, const tensor_slot& s,
                    std::int64_t d, std::int64_t n) {
  if (!s.transposed) {
    std::copy(data.begin(), data.end(), flat.begin() + s.offset);
    return;
  }
  for (std::int64_t f = 0; f < n; ++f)
    for (std::int64_t c = 0; c < d; ++c) flat[s.offset + f * d + c] = data[c * n + f];
}

}  // namespace sae_detail

/// Writes the SAE to `path` (atomically): W_enc, b_enc, W_dec, b_dec under SAELens' names (the
/// weights act on s x, s = the metadata's activation_scale; SAELens' fold_activation_norm_scaling_factor
/// would give W_enc s, W_dec / s, b_dec / s), "tokens_since_fired" [d_sae], Adam's moments as
/// "optimizer.m.<name>" / "optimizer.v.<name>", the resolved config and a content hash.
inline void save_sae(const std::filesystem::path& path, const sparse_autoencoder& sae) {
  const std::int64_t d = sae.d_in(), n = sae.n_latents();
  std::map<std::string, std::string> metadata = sae_detail::config_metadata(sae);
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> names;
  std::vector<std::vector<float>> data;
  const auto slots = sae_detail::tensor_slots(d, n);
  auto& opt = const_cast<model::adamw&>(sae.optimizer());  // moments are read, not written
  const std::span<const float> m = opt.first_moment(), v = opt.second_moment();
  for (const auto& s : slots) {
    names.push_back({s.name, s.shape});
    data.push_back(sae_detail::gather(sae.parameters(), s, d, n));
    names.push_back({std::string("optimizer.m.") + s.name, s.shape});
    data.push_back(sae_detail::gather(m, s, d, n));
    names.push_back({std::string("optimizer.v.") + s.name, s.shape});
    data.push_back(sae_detail::gather(v, s, d, n));
  }
  names.push_back({"tokens_since_fired", {n}});
  data.emplace_back();
  for (const std::int64_t t : sae.tokens_since_fired()) data.back().push_back(static_cast<float>(t));
  std::vector<model::tensor_view_in> tensors;
  for (std::size_t i = 0; i < names.size(); ++i)
    tensors.push_back({names[i].first, names[i].second, data[i]});
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  model::detail::content_hasher h;
  for (const auto& t : tensors) h.tensor(t.name, t.shape, t.data);
  model::detail::hash_metadata(h, metadata);
  metadata[model::detail::hash_key] = h.hex();
  model::write_safetensors(path, tensors, metadata);
}

/// Reads an SAE written by save_sae. Throws xplor::error naming the file and the problem: a
/// content hash that does not match (a file without one, e.g. converted by a script, is loaded
/// without the check), a missing or malformed config entry, a config the constructor rejects, a
/// missing tensor, a wrong shape, a non-finite value, a negative second moment, a counter that
/// is not an integer in [0, dead_tokens + 1], or an unexpected tensor.
inline sparse_autoencoder load_sae(const std::filesystem::path& path) {
  using sae_detail::load_fn;
  const model::safetensors_contents file = model::read_safetensors(path);
  const auto& meta = file.metadata;
  const auto stored = meta.find(model::detail::hash_key);
  if (stored != meta.end()) {
    model::detail::content_hasher h;
    for (const auto& [name, t] : file.tensors) h.tensor(name, t.shape, t.data);
    model::detail::hash_metadata(h, meta);
    xplor::detail::require(h.hex() == stored->second, load_fn, "'", path.string(), "': content_hash ",
                           xplor::detail::json_guard_brief(stored->second), " does not match the contents (",
                           h.hex(), "): the file is corrupted");
  }
  const std::string& format = sae_detail::field(meta, "format", path);
  xplor::detail::require(format == sae_detail::sae_format, load_fn, "'", path.string(), "': format '",
                         xplor::detail::json_guard_brief(format), "' is not '", sae_detail::sae_format, "'");
  sae_config c;
  const std::string& arch = sae_detail::field(meta, "architecture", path);
  if (arch == "standard")
    c.kind = sae_kind::relu_l1;
  else if (arch == "topk")
    c.kind = sae_kind::topk;
  else if (arch == "batchtopk")
    c.kind = sae_kind::batch_topk;
  else
    xplor::detail::fail(load_fn, "'", path.string(), "': architecture '",
                        xplor::detail::json_guard_brief(arch), "' is not 'standard', 'topk' or 'batchtopk'");
  using sae_detail::flag;
  using sae_detail::number;
  c.d_in = number<std::int64_t>(meta, "d_in", path);
  c.n_latents = number<std::int64_t>(meta, "d_sae", path);
  c.k = number<int>(meta, "k", path);
  c.k_aux = number<int>(meta, "k_aux", path);
  c.aux_coeff = number<float>(meta, "aux_coeff", path);
  c.l1_coefficient = number<float>(meta, "l1_coefficient", path);
  c.scale_sparsity_by_decoder_norm = flag(meta, "scale_sparsity_penalty_by_decoder_norm", path);
  c.apply_b_dec_to_input = flag(meta, "apply_b_dec_to_input", path);
  c.init_encoder_as_decoder_transpose = flag(meta, "init_encoder_as_decoder_transpose", path);
  c.decoder_heuristic_init = flag(meta, "decoder_heuristic_init", path);
  c.normalize_decoder = flag(meta, "normalize_sae_decoder", path);
  const std::string& norm = sae_detail::field(meta, "normalize_activations", path);
  bool known = false;
  for (const auto n : {sae_normalization::none, sae_normalization::expected_average_only_in,
                       sae_normalization::unit_mean_squared_norm})
    if (norm == to_string(n)) {
      c.normalize_activations = n;
      known = true;
    }
  xplor::detail::require(known, load_fn, "'", path.string(), "': normalize_activations '",
                         xplor::detail::json_guard_brief(norm), "' is not a normalisation");
  c.lr = number<float>(meta, "lr", path);
  c.beta1 = number<float>(meta, "adam_beta1", path);
  c.beta2 = number<float>(meta, "adam_beta2", path);
  c.eps = number<float>(meta, "adam_eps", path);
  c.dead_tokens = number<std::int64_t>(meta, "dead_tokens", path);
  c.fire_threshold = number<float>(meta, "fire_threshold", path);
  c.seed = number<std::uint64_t>(meta, "seed", path);
  // Values the constructor would silently replace by a family default are errors in a file.
  xplor::detail::require(c.lr > 0 && c.beta1 >= 0 && c.eps > 0 && c.fire_threshold >= 0 &&
                             (c.kind == sae_kind::relu_l1 || c.k_aux >= 1),
                         load_fn, "'", path.string(), "': lr = ", c.lr, ", adam_beta1 = ", c.beta1,
                         ", adam_eps = ", c.eps, ", fire_threshold = ", c.fire_threshold,
                         ", k_aux = ", c.k_aux,
                         ": a file holds resolved values (lr, eps > 0; beta1, fire_threshold >= 0)");
  const auto d = c.d_in, n = c.n_latents;
  // Shapes are checked against the file before the constructor allocates d * n floats.
  const auto slots = sae_detail::tensor_slots(d > 0 ? d : 1, n > 0 ? n : 1);
  for (const auto& s : slots)
    for (const std::string prefix : {"", "optimizer.m.", "optimizer.v."}) {
      const std::string name = prefix + s.name;
      const auto it = file.tensors.find(name);
      xplor::detail::require(it != file.tensors.end(), load_fn, "'", path.string(), "': missing tensor '",
                             name, "'");
      xplor::detail::require(it->second.shape == s.shape, load_fn, "'", path.string(), "': tensor '", name,
                             "' has shape ", model::detail::shape_text(it->second.shape),
                             ", the config needs ", model::detail::shape_text(s.shape));
      for (std::size_t i = 0; i < it->second.data.size(); ++i) {
        const float v = it->second.data[i];
        xplor::detail::require(std::isfinite(v) && (prefix != std::string("optimizer.v.") || v >= 0.0f),
                               load_fn, "'", path.string(), "': ", name, "[", i, "] = ", v, " is not ",
                               prefix == std::string("optimizer.v.") ? "finite and >= 0" : "finite");
      }
    }
  const auto counters = file.tensors.find("tokens_since_fired");
  xplor::detail::require(counters != file.tensors.end(), load_fn, "'", path.string(),
                         "': missing tensor 'tokens_since_fired'");
  xplor::detail::require(counters->second.shape == std::vector<std::int64_t>{n}, load_fn, "'", path.string(),
                         "': tensor 'tokens_since_fired' has shape ",
                         model::detail::shape_text(counters->second.shape), ", the config needs [", n, "]");
  for (const auto& [name, t] : file.tensors) {
    bool expected = name == "tokens_since_fired";
    for (const auto& s : slots)
      for (const std::string prefix : {"", "optimizer.m.", "optimizer.v."})
        expected = expected || name == prefix + s.name;
    xplor::detail::require(expected, load_fn, "'", path.string(), "': unexpected tensor '",
                           xplor::detail::json_guard_brief(name), "'");
  }

  sparse_autoencoder sae = [&] {
    try {
      return sparse_autoencoder(c);
    } catch (const xplor::error& e) {
      xplor::detail::fail(load_fn, "'", path.string(), "': the stored config is invalid: ", e.what());
    }
  }();
  const auto activation_scale = number<float>(meta, "activation_scale", path);
  const auto mse_scale = number<float>(meta, "mse_scale", path);
  xplor::detail::require(
      std::isfinite(activation_scale) && activation_scale > 0 && std::isfinite(mse_scale) && mse_scale > 0,
      load_fn, "'", path.string(), "': activation_scale = ", activation_scale, ", mse_scale = ", mse_scale,
      "; both must be finite and positive");
  const auto steps = number<std::int64_t>(meta, "optimizer.steps", path);
  xplor::detail::require(steps >= 0, load_fn, "'", path.string(), "': optimizer.steps = ", steps,
                         " is negative");
  std::vector<std::int64_t> since(static_cast<std::size_t>(n));
  for (std::int64_t f = 0; f < n; ++f) {
    const float v = counters->second.data[static_cast<std::size_t>(f)];
    xplor::detail::require(v >= 0.0f && v <= float(c.dead_tokens + 1) && v == std::floor(v), load_fn, "'",
                           path.string(), "': tokens_since_fired[", f, "] = ", v,
                           " is not an integer in [0, dead_tokens + 1 = ", c.dead_tokens + 1, "]");
    since[static_cast<std::size_t>(f)] = static_cast<std::int64_t>(v);
  }
  for (const auto& s : slots) {
    sae_detail::scatter(file.tensors.at(s.name).data, sae.parameters(), s, d, n);
    sae_detail::scatter(file.tensors.at(std::string("optimizer.m.") + s.name).data,
                        sae.optimizer().first_moment(), s, d, n);
    sae_detail::scatter(file.tensors.at(std::string("optimizer.v.") + s.name).data,
                        sae.optimizer().second_moment(), s, d, n);
  }
  sae.optimizer().set_steps(steps);
  sae.set_scales(activation_scale, mse_scale);
  sae.set_tokens_since_fired(since);
  return sae;
}

}  // namespace xplor::interp
