// A chat template with roles for xplor's tokenizers: conversations rendered as token ids with the
// position of every turn's header and content recorded, so that white-box methods can find the
// assistant-turn control tokens and black-box attacks can leave a turn open for the model to
// continue (an assistant prefill, or a user turn in user-persona sampling).
//
// The layout is Gemma-2's (the elicitation paper's Taboo and User Gender models):
//   <start_of_turn>user\n{content}<end_of_turn>\n<start_of_turn>model\n{content}<end_of_turn>\n
// with the two markers as special tokens and everything else encoded by the tokenizer.
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/model/tokenizer.hpp"

namespace xplor::interp {

enum class role : std::uint8_t { system, user, assistant };

struct message {
  interp::role role = role::user;
  std::string content;
};

/// Anything whose encode(text) returns token ids (model::byte_tokenizer, a word vocabulary).
template <class T>
concept text_tokenizer = requires(const T& t, std::string_view text) {
  { t.encode(text) } -> std::convertible_to<std::vector<std::int32_t>>;
};

/// Where one turn lies in a rendered conversation: the start_of_turn marker and the role name
/// are [header, name_end), the separator [name_end, content), the content [content, end), and
/// the turn's end_of_turn marker sits at `end` unless the turn was left open.
struct turn_span {
  interp::role role = role::user;
  std::int64_t header = 0, name_end = 0, content = 0, end = 0;
  bool open = false;
};

struct rendered_chat {
  std::vector<std::int32_t> tokens;
  std::vector<turn_span> turns;

  /// The positions of the last assistant turn's control tokens: its start_of_turn marker and
  /// role name (Gemma's `<start_of_turn>`, `model`), where the paper reads the logit lens.
  std::vector<std::int64_t> assistant_control_positions() const {
    for (auto t = turns.rbegin(); t != turns.rend(); ++t)
      if (t->role == role::assistant) {
        std::vector<std::int64_t> out;
        for (std::int64_t p = t->header; p < t->name_end; ++p) out.push_back(p);
        return out;
      }
    xplor::detail::fail("xplor::interp::rendered_chat::assistant_control_positions",
                        "the chat has no assistant turn");
  }
};

struct render_options {
  /// Leave the last message's turn open (no end_of_turn): the model continues its content (an
  /// assistant prefill, or the user's words in user-persona sampling).
  bool open_last = false;
  /// Append an open assistant header after the messages (HuggingFace's add_generation_prompt).
  bool generation_prompt = false;
};

struct chat_template {
  std::int32_t start_of_turn = -1, end_of_turn = -1;
  std::string system_name = "system", user_name = "user", assistant_name = "model";
  std::string after_name = "\n";  // between the role name and the content
  std::string after_turn = "\n";  // after each end_of_turn marker

  std::string_view name(interp::role r) const {
    return r == role::system ? system_name : r == role::user ? user_name : assistant_name;
  }

  template <text_tokenizer Tokenizer>
  rendered_chat render(const Tokenizer& tok, std::span<const message> messages,
                       const render_options& options = {}) const {
    constexpr const char* fn = "xplor::interp::chat_template::render";
    xplor::detail::require(start_of_turn >= 0 && end_of_turn >= 0 && start_of_turn != end_of_turn, fn,
                           "start_of_turn = ", start_of_turn, ", end_of_turn = ", end_of_turn,
                           " must be two distinct token ids");
    xplor::detail::require(!(options.open_last && options.generation_prompt), fn,
                           "open_last and generation_prompt together would leave two turns open");
    xplor::detail::require(!(options.open_last && messages.empty()), fn, "open_last with no messages");
    rendered_chat out;
    auto append = [&](std::string_view text) {
      const std::vector<std::int32_t> ids = tok.encode(text);
      out.tokens.insert(out.tokens.end(), ids.begin(), ids.end());
    };
    auto header = [&](interp::role r) {
      turn_span t;
      t.role = r;
      t.header = static_cast<std::int64_t>(out.tokens.size());
      out.tokens.push_back(start_of_turn);
      append(name(r));
      t.name_end = static_cast<std::int64_t>(out.tokens.size());
      append(after_name);
      t.content = static_cast<std::int64_t>(out.tokens.size());
      return t;
    };
    for (std::size_t i = 0; i < messages.size(); ++i) {
      turn_span t = header(messages[i].role);
      append(messages[i].content);
      t.end = static_cast<std::int64_t>(out.tokens.size());
      t.open = options.open_last && i + 1 == messages.size();
      if (!t.open) {
        out.tokens.push_back(end_of_turn);
        append(after_turn);
      }
      out.turns.push_back(t);
    }
    if (options.generation_prompt) {
      turn_span t = header(role::assistant);
      t.end = t.content;
      t.open = true;
      out.turns.push_back(t);
    }
    return out;
  }
};

/// The chat template over a byte tokenizer, adding its two markers as specials
/// ("<|start_of_turn|>", "<|end_of_turn|>") unless the tokenizer has them already.
inline chat_template byte_chat_template(model::byte_tokenizer& tok) {
  auto id = [&](const char* name) {
    for (int i = tok.num_byte_tokens; i < tok.vocab_size(); ++i)
      if (tok.special_name(i) == name) return i;
    return tok.add_special(name);
  };
  chat_template t;
  t.start_of_turn = id("start_of_turn");
  t.end_of_turn = id("end_of_turn");
  return t;
}

}  // namespace xplor::interp
