// The safetensors file format (github.com/huggingface/safetensors), fp32 tensors only: an 8-byte
// little-endian header length N, N bytes of JSON mapping each tensor name to {"dtype", "shape",
// "data_offsets": [begin, end)} (offsets into the byte buffer after the header) plus an optional
// "__metadata__" object of strings, then the little-endian data. Files are byte-identical to
// PyTorch's safetensors.torch.save_file; writes are atomic (temp file, fsync, rename).
#pragma once

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <span>
#include <string>
#include <system_error>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "xplor/core/atomic_file.hpp"
#include "xplor/core/error.hpp"
#include "xplor/core/json_guard.hpp"

namespace xplor::model {

/// A tensor to write: a row-major fp32 array of `shape` (product of the dims == data.size()).
struct tensor_view_in {
  std::string name = {};
  std::vector<std::int64_t> shape = {};
  std::span<const float> data = {};
};

/// A tensor read from a file: row-major fp32 data of `shape`.
struct loaded_tensor {
  std::vector<std::int64_t> shape = {};
  std::vector<float> data = {};
};

/// Everything a safetensors file holds: the "__metadata__" strings and the tensors by name.
struct safetensors_contents {
  std::map<std::string, std::string> metadata;
  std::map<std::string, loaded_tensor> tensors;
};

namespace detail {

static_assert(std::numeric_limits<float>::is_iec559 && sizeof(float) == 4,
              "xplor needs IEEE-754 binary32 floats");
static_assert(std::endian::native == std::endian::little || std::endian::native == std::endian::big,
              "xplor needs a little- or big-endian host");

/// Safetensors' own limit on the header (the Rust reader's MAX_HEADER_SIZE).
inline constexpr std::uint64_t max_header_bytes = 100'000'000;
/// A valid header nests 3 deep ({name: {"shape": [...]}}); anything deeper is rejected before
/// parsing, so no code ever recurses over attacker-controlled nesting.
inline constexpr std::size_t max_header_depth = 8;

inline std::string errno_text(int code) { return std::generic_category().message(code); }

struct file_closer {
  void operator()(std::FILE* f) const {
    if (f != nullptr) std::fclose(f);
  }
};
using file_ptr = std::unique_ptr<std::FILE, file_closer>;

/// JSON text of a string; throws xplor::error naming `what` when `s` is not valid UTF-8.
inline std::string json_string(const std::string& s, const char* fn, const std::string& what) {
  try {
    return nlohmann::json(s).dump();
  } catch (const nlohmann::json::exception&) {
    xplor::detail::fail(fn, what, " is not valid UTF-8");
  }
}

/// Number of elements of a shape of non-negative dims, or -1 when it is over 2^60 (whose byte
/// count would not fit a file).
inline std::int64_t element_count(std::span<const std::int64_t> shape) {
  constexpr std::int64_t limit = std::int64_t{1} << 60;
  std::int64_t n = 1;
  bool overflow = false;
  for (const std::int64_t d : shape) {
    if (d == 0) return 0;
    if (n > limit / d)
      overflow = true;
    else
      n *= d;
  }
  return overflow ? -1 : n;
}

inline std::string shape_text(std::span<const std::int64_t> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

/// A short rendering of a JSON value for an error message (the header's depth is bounded, so
/// dump() cannot recurse deeply).
inline std::string brief(const nlohmann::json& j) {
  return xplor::detail::json_guard_brief(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

inline void store_u64_le(unsigned char* out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(v >> (8 * i));
}

inline std::uint64_t load_u64_le(const unsigned char* in) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(in[i]) << (8 * i);
  return v;
}

inline std::uint32_t byteswap32(std::uint32_t v) {
  return (v >> 24) | ((v >> 8) & 0xFF00u) | ((v << 8) & 0xFF0000u) | (v << 24);
}

/// Writes `data` as little-endian fp32; false on a short write.
inline bool write_floats_le(std::FILE* f, std::span<const float> data) {
  if (data.empty()) return true;
  if constexpr (std::endian::native == std::endian::little) {
    return std::fwrite(data.data(), sizeof(float), data.size(), f) == data.size();
  } else {
    std::vector<std::uint32_t> chunk;
    for (std::size_t lo = 0; lo < data.size(); lo += 4096) {
      const std::size_t n = std::min<std::size_t>(4096, data.size() - lo);
      chunk.resize(n);
      for (std::size_t i = 0; i < n; ++i) chunk[i] = byteswap32(std::bit_cast<std::uint32_t>(data[lo + i]));
      if (std::fwrite(chunk.data(), sizeof(std::uint32_t), n, f) != n) return false;
    }
    return true;
  }
}

/// Reads data.size() little-endian fp32 values into `data`; false on a short read.
inline bool read_floats_le(std::FILE* f, std::span<float> data) {
  if (data.empty()) return true;
  if (std::fread(data.data(), sizeof(float), data.size(), f) != data.size()) return false;
  if constexpr (std::endian::native == std::endian::big) {
    for (float& x : data) x = std::bit_cast<float>(byteswap32(std::bit_cast<std::uint32_t>(x)));
  }
  return true;
}

/// Throws xplor::error "xplor::model::read_safetensors: '<path>': <parts>".
template <class... Parts>
[[noreturn]] void read_fail(const std::filesystem::path& path, const Parts&... parts) {
  xplor::detail::fail("xplor::model::read_safetensors", "'", path.string(), "': ", parts...);
}

/// A non-negative JSON integer that fits in int64, or -1.
inline std::int64_t json_index(const nlohmann::json& j) {
  if (!j.is_number_unsigned()) return -1;
  const auto v = j.get<std::uint64_t>();
  return v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
             ? -1
             : static_cast<std::int64_t>(v);
}

}  // namespace detail

/// Writes `tensors` (fp32) and `metadata` to `path` as safetensors, byte for byte as PyTorch's
/// save_file: compact JSON with "__metadata__" first (omitted when empty) and the tensors in name
/// order, padded with spaces so the data starts 8-byte aligned; data in name order. Atomic: the
/// file is written to "<path>.tmp.<pid>.<n>", flushed, fsync'ed and renamed over `path`
/// (xplor::atomic_file_writer), so `path` holds either its old contents or the complete new
/// file. Throws xplor::error (the temp file removed) on invalid tensors (empty, duplicate or
/// "__metadata__" names, negative dims, shape product != data size) and on any I/O failure.
inline void write_safetensors(const std::filesystem::path& path, std::span<const tensor_view_in> tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  namespace sd = detail;
  constexpr const char* fn = "xplor::model::write_safetensors";

  std::vector<std::size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return tensors[a].name < tensors[b].name; });

  // The header, validating as it goes.
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      header += first ? "" : ",";
      first = false;
      header += sd::json_string(key, fn, "metadata key \"" + key + "\"") + ":" +
                sd::json_string(value, fn, "metadata[\"" + key + "\"]");
    }
    header += "}";
  }
  std::uint64_t offset = 0;
  for (std::size_t k = 0; k < order.size(); ++k) {
    const tensor_view_in& t = tensors[order[k]];
    const std::string quoted = "tensor '" + t.name + "'";
    xplor::detail::require(!t.name.empty(), fn, "tensors[", order[k], "] has an empty name");
    xplor::detail::require(t.name != "__metadata__", fn, "tensors[", order[k],
                           "] is named '__metadata__', the key reserved for metadata");
    xplor::detail::require(k == 0 || tensors[order[k - 1]].name != t.name, fn, quoted, " appears twice");
    for (std::size_t d = 0; d < t.shape.size(); ++d)
      xplor::detail::require(t.shape[d] >= 0, fn, quoted, " has shape[", d, "] = ", t.shape[d],
                             "; dims must be non-negative");
    const std::int64_t count = sd::element_count(t.shape);
    xplor::detail::require(count >= 0 && static_cast<std::uint64_t>(count) == t.data.size(), fn, quoted,
                           " has shape ", sd::shape_text(t.shape), " but ", t.data.size(), " values");
    const std::uint64_t end = offset + 4 * t.data.size();
    if (header.size() > 1) header += ",";
    header += sd::json_string(t.name, fn, quoted) + ":{\"dtype\":\"F32\",\"shape\":[";
    for (std::size_t d = 0; d < t.shape.size(); ++d) {
      if (d > 0) header += ",";
      header += std::to_string(t.shape[d]);
    }
    header += "],\"data_offsets\":[";
    header += std::to_string(offset);
    header += ",";
    header += std::to_string(end);
    header += "]}";
    offset = end;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  unsigned char length[8];
  sd::store_u64_le(length, header.size());

  atomic_file_writer file(path, fn);
  file.write(length, 8);
  file.write(header);
  for (const std::size_t k : order) file.check(sd::write_floats_le(file.handle(), tensors[k].data), "write");
  file.commit();
}

/// Reads a safetensors file of F32 tensors. Every problem (a short or truncated file, a header
/// length beyond the file or over 100 MB, a header that is not a JSON object, a tensor entry
/// without dtype/shape/data_offsets, a dtype other than F32, offsets that are not integers, run
/// backwards, leave the buffer, disagree with the shape, overlap or leave holes, metadata that is
/// not strings, a NUL byte or nesting deeper than 8 in the header) throws xplor::error naming the
/// file and the problem; nothing partial is returned. Memory stays within the file's size. Also
/// removes temp files that writers killed mid-write left beside `path`.
inline safetensors_contents read_safetensors(const std::filesystem::path& path) {
  namespace sd = detail;
  using nlohmann::json;

  remove_stale_temp_files(path);  // debris of writers killed mid-write
  std::error_code size_error;
  const std::uintmax_t file_bytes = std::filesystem::file_size(path, size_error);
  if (size_error) sd::read_fail(path, "cannot read: ", size_error.message());
  sd::file_ptr file(std::fopen(path.c_str(), "rb"));
  if (!file) sd::read_fail(path, "cannot open: ", sd::errno_text(errno));

  if (file_bytes < 8)
    sd::read_fail(path, "the file is ", file_bytes, " bytes, shorter than the 8-byte header length");
  unsigned char length_bytes[8];
  if (std::fread(length_bytes, 1, 8, file.get()) != 8) sd::read_fail(path, "cannot read the header length");
  const std::uint64_t header_bytes = sd::load_u64_le(length_bytes);
  if (header_bytes > sd::max_header_bytes)
    sd::read_fail(path, "header length ", header_bytes, " is over the ", sd::max_header_bytes,
                  "-byte limit (not a safetensors file?)");
  if (header_bytes > file_bytes - 8)
    sd::read_fail(path, "header length ", header_bytes, " is larger than the ", file_bytes - 8,
                  " bytes after it (truncated, or not a safetensors file)");
  const std::uint64_t buffer_bytes = file_bytes - 8 - header_bytes;

  std::string header_text(static_cast<std::size_t>(header_bytes), '\0');
  if (!header_text.empty() &&
      std::fread(header_text.data(), 1, header_text.size(), file.get()) != header_text.size())
    sd::read_fail(path, "cannot read the ", header_bytes, "-byte header (the file changed while reading?)");

  // A NUL (where nlohmann's parser would stop as if the text ended) or nesting beyond the bound.
  if (const std::string problem = xplor::detail::json_guard_problem(header_text, sd::max_header_depth);
      !problem.empty())
    sd::read_fail(path, "the header is not valid JSON for safetensors (", problem, " of the header)");

  // Parse, noting keys repeated in the top-level object (nlohmann keeps only one of them).
  std::set<std::string> keys;
  std::string repeated = {};
  json header;
  try {
    header = json::parse(header_text, [&](int depth, json::parse_event_t event, json& parsed) {
      if (event == json::parse_event_t::key && depth == 1 && !keys.insert(parsed.get<std::string>()).second &&
          repeated.empty())
        repeated = parsed.get<std::string>();
      return true;
    });
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 1e999
    sd::read_fail(path, "the header is not valid JSON (", xplor::detail::json_guard_brief(e.what(), 200),
                  ")");
  }
  if (!header.is_object())
    sd::read_fail(path, "the header is a JSON ", header.type_name(), ", not an object");
  if (!repeated.empty())
    sd::read_fail(path, "the header has the key '", xplor::detail::json_guard_brief(repeated),
                  "' more than once");

  safetensors_contents contents;
  struct extent {
    std::int64_t begin, end;
    const std::string* name;
  };
  std::vector<extent> extents = {};
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object())
        sd::read_fail(path, "__metadata__ is a JSON ", entry.type_name(), ", not an object of strings");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string())
          sd::read_fail(path, "__metadata__ value for key '", xplor::detail::json_guard_brief(key),
                        "' is a JSON ", value.type_name(), ", not a string");
        contents.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    const std::string t = "tensor '" + xplor::detail::json_guard_brief(name) + "'";
    if (!entry.is_object()) sd::read_fail(path, t, " is a JSON ", entry.type_name(), ", not an object");
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!entry.contains(field)) sd::read_fail(path, t, " has no ", field);
    const json& dtype = entry["dtype"];
    if (!dtype.is_string()) sd::read_fail(path, t, " has dtype ", sd::brief(dtype), ", not a string");
    if (dtype.get<std::string>() != "F32")
      sd::read_fail(path, t, " has dtype ", xplor::detail::json_guard_brief(dtype.get<std::string>()),
                    "; xplor reads F32 only");

    const json& shape_json = entry["shape"];
    if (!shape_json.is_array())
      sd::read_fail(path, t, " has shape ", sd::brief(shape_json), ", not an array of integers");
    loaded_tensor tensor;
    for (std::size_t d = 0; d < shape_json.size(); ++d) {
      const std::int64_t dim = sd::json_index(shape_json[d]);
      if (dim < 0)
        sd::read_fail(path, t, " has shape[", d, "] = ", sd::brief(shape_json[d]), ", not a dim >= 0");
      tensor.shape.push_back(dim);
    }

    const json& offsets = entry["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || sd::json_index(offsets[0]) < 0 ||
        sd::json_index(offsets[1]) < 0)
      sd::read_fail(path, t, " has data_offsets ", sd::brief(offsets), ", not two non-negative integers");
    const std::int64_t begin = sd::json_index(offsets[0]);
    const std::int64_t end = sd::json_index(offsets[1]);
    if (begin > end) sd::read_fail(path, t, " has data_offsets [", begin, ", ", end, "]: begin > end");
    if (static_cast<std::uint64_t>(end) > buffer_bytes)
      sd::read_fail(path, t, " has data_offsets [", begin, ", ", end, "], beyond the ", buffer_bytes,
                    "-byte data buffer (is the file truncated?)");
    const std::int64_t count = sd::element_count(tensor.shape);
    if (count < 0 || 4 * count != end - begin)
      sd::read_fail(path, t, " has ", end - begin, " bytes of data (data_offsets [", begin, ", ", end,
                    "]) but shape ", sd::shape_text(tensor.shape), " needs 4 bytes per F32 element");
    const auto where = contents.tensors.emplace(name, std::move(tensor)).first;  // names are unique
    extents.push_back({begin, end, &where->first});
  }

  // The tensors must tile the buffer: no overlaps, no holes, nothing after the last one.
  std::sort(extents.begin(), extents.end(), [](const extent& a, const extent& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  std::int64_t covered = 0;
  for (std::size_t k = 0; k < extents.size(); ++k) {
    const extent& e = extents[k];
    if (e.begin < covered)
      sd::read_fail(path, "tensor '", xplor::detail::json_guard_brief(*e.name), "' data_offsets [", e.begin,
                    ", ", e.end, "] overlap tensor '", xplor::detail::json_guard_brief(*extents[k - 1].name),
                    "' data_offsets [", extents[k - 1].begin, ", ", extents[k - 1].end, "]");
    if (e.begin > covered)
      sd::read_fail(path, "bytes [", covered, ", ", e.begin,
                    ") of the data buffer belong to no tensor (safetensors allows no holes)");
    covered = e.end;
  }
  if (static_cast<std::uint64_t>(covered) != buffer_bytes)
    sd::read_fail(path, "the data buffer has ", buffer_bytes, " bytes but the tensors cover only ", covered,
                  " (safetensors allows no trailing bytes)");

  // The data, in file order (the buffer starts right after the header, where the file is now).
  // Allocated only now that the extents tile the buffer: the total is the file's size, however
  // many tensors claim the same bytes.
  for (const extent& e : extents) {
    std::vector<float>& data = contents.tensors.at(*e.name).data;
    data.resize(static_cast<std::size_t>((e.end - e.begin) / 4));
    if (!sd::read_floats_le(file.get(), data))
      sd::read_fail(path, "cannot read tensor '", xplor::detail::json_guard_brief(*e.name),
                    "' (the file changed while reading?)");
  }
  return contents;
}

}  // namespace xplor::model
