// A byte-level tokenizer for the reference transformer: ids 0..255 are the raw bytes, named
// special tokens (bos, eos, pad, plus any the user adds) follow from 256. Any byte string encodes
// and decodes exactly; the text form of a special is "<|name|>", parsed only when asked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "xplor/core/error.hpp"

namespace xplor::model {

/// Options of byte_tokenizer::encode.
struct encode_options {
  bool add_bos = false;         ///< prepend bos()
  bool add_eos = false;         ///< append eos()
  bool parse_specials = false;  ///< "<|name|>" of a known special becomes its id
};

/// Options of byte_tokenizer::decode.
struct decode_options {
  bool render_specials = true;  ///< write specials as "<|name|>"; when false they are skipped
};

/// Bytes are ids 0..255; special token k (in order of addition) is id 256 + k. The defaults are
/// bos = 256, eos = 257, pad = 258.
class byte_tokenizer {
 public:
  static constexpr int num_byte_tokens = 256;

  byte_tokenizer() {
    add_special("bos");
    add_special("eos");
    add_special("pad");
  }

  /// Adds a special token named `name` (non-empty, characters in [A-Za-z0-9_], not already
  /// special) and returns its id, vocab_size() - 1 after the call.
  int add_special(std::string name) {
    constexpr const char* fn = "xplor::model::byte_tokenizer::add_special";
    xplor::detail::require(!name.empty(), fn, "name = \"\" is empty");
    for (const char c : name)
      xplor::detail::require(is_name_char(c), fn, "name = \"", name,
                             "\" has a character outside [A-Za-z0-9_]; special names are written <|name|>");
    if (const auto it = ids_.find(name); it != ids_.end())
      xplor::detail::fail(fn, "name = \"", name, "\" is already special token ", it->second);
    const int id = vocab_size();
    ids_.emplace(name, id);
    names_.push_back(std::move(name));
    return id;
  }

  int vocab_size() const { return num_byte_tokens + static_cast<int>(names_.size()); }
  int bos() const { return num_byte_tokens + 0; }
  int eos() const { return num_byte_tokens + 1; }
  int pad() const { return num_byte_tokens + 2; }

  /// The id of the special token `name`; throws xplor::error when there is none.
  int special(std::string_view name) const {
    const auto it = ids_.find(name);
    if (it == ids_.end())
      xplor::detail::fail("xplor::model::byte_tokenizer::special", "name = \"", name,
                          "\" is not a special token");
    return it->second;
  }

  bool is_special(int id) const { return id >= num_byte_tokens && id < vocab_size(); }

  /// The name of special token `id` (valid as long as the tokenizer); throws xplor::error when
  /// `id` is not a special token.
  std::string_view special_name(int id) const {
    xplor::detail::require(is_special(id), "xplor::model::byte_tokenizer::special_name", "id = ", id,
                           " is not a special token; specials are [", num_byte_tokens, ", ", vocab_size(),
                           ")");
    return names_[static_cast<std::size_t>(id - num_byte_tokens)];
  }

  /// One id per byte of `text` (a byte >= 0x80 is its own id, not a code point), optionally
  /// between bos and eos; with parse_specials, "<|name|>" of a known special is its id and any
  /// other "<|...|>" stays bytes.
  std::vector<std::int32_t> encode(std::string_view text, const encode_options& options = {}) const {
    std::vector<std::int32_t> tokens;
    tokens.reserve(text.size() + 2);
    if (options.add_bos) tokens.push_back(bos());
    for (std::size_t i = 0; i < text.size();) {
      if (options.parse_specials) {
        if (const auto [id, length] = match_special(text, i); length > 0) {
          tokens.push_back(id);
          i += length;
          continue;
        }
      }
      tokens.push_back(static_cast<std::int32_t>(static_cast<unsigned char>(text[i])));
      ++i;
    }
    if (options.add_eos) tokens.push_back(eos());
    return tokens;
  }

  /// The bytes of `tokens`, specials as "<|name|>" (or skipped without render_specials). Throws
  /// xplor::error naming the first id outside [0, vocab_size()).
  std::string decode(std::span<const std::int32_t> tokens, const decode_options& options = {}) const {
    const int vocab = vocab_size();
    std::string text;
    text.reserve(tokens.size());
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      const std::int32_t id = tokens[i];
      xplor::detail::require(id >= 0 && id < vocab, "xplor::model::byte_tokenizer::decode", "tokens[", i,
                             "] = ", id, " is outside [0, ", vocab, ")");
      if (id < num_byte_tokens) {
        text.push_back(static_cast<char>(static_cast<unsigned char>(id)));
      } else if (options.render_specials) {
        text += "<|";
        text += names_[static_cast<std::size_t>(id - num_byte_tokens)];
        text += "|>";
      }
    }
    return text;
  }

 private:
  static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  }

  /// {id, length in bytes} of a known "<|name|>" starting at text[i], or {0, 0}. Names hold no
  /// '|' or '<', so the name is the run of name characters after "<|" (linear time overall).
  std::pair<std::int32_t, std::size_t> match_special(std::string_view text, std::size_t i) const {
    if (text.size() - i < 5 || text[i] != '<' || text[i + 1] != '|') return {0, 0};
    std::size_t end = i + 2;
    while (end < text.size() && is_name_char(text[end])) ++end;
    if (end == i + 2 || end + 1 >= text.size() || text[end] != '|' || text[end + 1] != '>') return {0, 0};
    const auto it = ids_.find(text.substr(i + 2, end - (i + 2)));
    if (it == ids_.end()) return {0, 0};
    return {it->second, end + 2 - i};
  }

  std::deque<std::string> names_;  // a deque keeps special_name() views valid across add_special
  std::map<std::string, int, std::less<>> ids_;
};

}  // namespace xplor::model
