// GEM's environment wrappers (gem/wrappers, gem/tools/tool_env_wrapper.py): each wrapper is an
// environment owning the one it wraps, and clone() deep-copies the whole stack.
//
// Order, innermost (next to the task) to outermost, as wrap() applies them:
//   1. prompt_variation_wrapper: rotating instruction templates and action vocabularies (the
//      prompt-diversity recipe of "Debunk the Myth of SFT Generalization"). Innermost because it
//      rewrites the task's own prompt and translates the agent's answer words back into the
//      task's vocabulary: it must see the task's raw observations (not tool outputs nor a
//      concatenated history), the history must record the varied prompt the agent actually saw,
//      and tool calls must be intercepted before any word translation touches them.
//   2. tool_use_wrapper (GEM ToolEnvWrapper): a response holding a tool call runs the tool
//      instead of stepping the task.
//   3. observation_wrapper (GEM concat / concat_with_action / concat_chat): the observation
//      becomes the (capped) history, tool outputs included.
//   4. episode_tracking_wrapper (GEM EpisodeTrackingWrapper): outermost, so it counts every turn
//      (tool turns too) and sums every reward (tool rewards too); optional max_turns truncation.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/random.hpp"
#include "xplor/env/env.hpp"
#include "xplor/env/prompt_variation.hpp"
#include "xplor/env/tool.hpp"

namespace xplor::env {

/// Base of the wrappers: forwards everything to the inner environment. Copying a wrapper clones
/// the inner environment, so a derived wrapper's clone() is `std::make_unique<D>(*this)`.
class wrapper : public environment {
 public:
  wrapper(std::unique_ptr<environment> inner, std::string_view who) : inner_(std::move(inner)) {
    xplor::detail::require(inner_ != nullptr, who, "the inner environment is null");
  }
  wrapper(const wrapper& other) : environment(other), inner_(other.inner_->clone()) {}
  wrapper& operator=(const wrapper&) = delete;

  reset_result reset(std::uint64_t seed) override { return inner_->reset(seed); }
  step_result step(std::string_view action) override { return inner_->step(action); }
  std::string id() const override { return inner_->id(); }

  environment& inner() { return *inner_; }
  const environment& inner() const { return *inner_; }

 protected:
  std::unique_ptr<environment> inner_;
};

// ---------------------------------------------------------------------------------------------
// Tool use

/// Rewards and limits of the tool wrapper. A tool turn gets tool_reward plus
/// tool_success_reward when the tool succeeded, or plus tool_error_reward (meant to be negative)
/// when the call was malformed, named an unknown tool, or the tool failed or threw.
struct tool_use_options {
  float tool_reward = 0.0f;
  float tool_success_reward = 0.0f;
  float tool_error_reward = -0.1f;
  int max_tool_uses = 10;  // tool turns per episode; later calls go to the task unchanged

  /// GEM python_tool: 0.05 per call, +0.25 on success, at most 5 uses.
  static tool_use_options python_tool() { return {0.05f, 0.25f, -0.1f, 5}; }
  /// GEM search_tool: 0.3 per call, at most 5 uses.
  static tool_use_options search_tool() { return {0.3f, 0.0f, -0.1f, 5}; }
  /// GEM *_no_int_reward: no intermediate reward at all (errors included), same limit.
  static tool_use_options no_int_reward(int max_tool_uses = 10) { return {0.0f, 0.0f, 0.0f, max_tool_uses}; }
};

/// A tool call found in a response.
struct tool_call {
  enum class kind { none, valid, malformed };
  kind status = kind::none;
  std::string_view name, input;  // valid calls: views into the response
  std::string error = {};        // malformed calls: what is wrong
};

/// Finds the tool call in `response`. Format (strict):
///   <tool name="NAME">INPUT</tool>
/// NAME is 1 to 64 of [A-Za-z0-9_-]; INPUT is everything up to the first "</tool>" after the
/// opening tag (it may be empty and hold newlines, but not "<tool"). A response holds a call when
/// it contains "<tool" followed by a space or '>'; only the first such call counts, and text
/// before it and after its "</tool>" is ignored. Anything else starting that way is malformed.
/// Linear in the response length (a constant number of fixed-pattern searches).
inline tool_call parse_tool_call(std::string_view response) {
  tool_call out;
  std::size_t start = 0;
  for (;;) {
    start = response.find("<tool", start);
    if (start == std::string_view::npos) return out;  // no call
    const std::size_t after = start + 5;
    if (after < response.size() && (response[after] == ' ' || response[after] == '>')) break;
    if (after == response.size()) break;  // "<tool" at the very end: a cut-off call
    start = after;
  }
  out.status = tool_call::kind::malformed;
  constexpr std::string_view open = "<tool name=\"";
  if (response.substr(start, open.size()) != open) {
    out.error = "expected <tool name=\"NAME\">INPUT</tool>";
    return out;
  }
  const std::size_t name_begin = start + open.size();
  std::size_t i = name_begin;
  while (i < response.size() && i - name_begin <= 64) {
    const char c = response[i];
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) break;
    ++i;
  }
  const std::size_t name_len = i - name_begin;
  if (name_len == 0 || name_len > 64) {
    out.error = "the tool name must be 1 to 64 letters, digits, '_' or '-'";
    return out;
  }
  if (response.substr(i, 2) != "\">") {
    out.error = "expected '\">' after the tool name";
    return out;
  }
  const std::size_t input_begin = i + 2;
  const std::size_t close = response.find("</tool>", input_begin);
  if (close == std::string_view::npos) {
    out.error = "missing </tool>";
    return out;
  }
  const std::string_view input = response.substr(input_begin, close - input_begin);
  if (input.find("<tool") != std::string_view::npos) {
    out.error = "nested <tool inside a tool call";
    return out;
  }
  out.status = tool_call::kind::valid;
  out.name = response.substr(name_begin, name_len);
  out.input = input;
  out.error.clear();
  return out;
}

/// GEM ToolEnvWrapper. When the response holds a tool call and fewer than max_tool_uses tool
/// turns were taken this episode, the turn is a tool turn: the tool runs (or the call is
/// rejected) and its output is the next observation; the task is not stepped. Otherwise the
/// action goes to the task unchanged. Tool turns never terminate nor truncate. Observations:
/// the tool's output on success, "Error: <message>" otherwise. Info: tool.name, tool.ok
/// ("1"/"0"), tool.uses (tool turns so far this episode); tool.error for a rejected call.
/// Tools are shared between clones (they are const and must be thread-safe).
class tool_use_wrapper : public wrapper {
 public:
  tool_use_wrapper(std::unique_ptr<environment> inner, std::vector<std::shared_ptr<const tool>> tools,
                   const tool_use_options& options = {})
      : wrapper(std::move(inner), "xplor::env::tool_use_wrapper"),
        tools_(std::move(tools)),
        options_(options) {
    constexpr const char* fn = "xplor::env::tool_use_wrapper";
    xplor::detail::require(!tools_.empty(), fn, "no tools");
    xplor::detail::require(options.max_tool_uses >= 0, fn, "max_tool_uses = ", options.max_tool_uses,
                           " is negative");
    std::set<std::string, std::less<>> names;
    for (std::size_t t = 0; t < tools_.size(); ++t) {
      xplor::detail::require(tools_[t] != nullptr, fn, "tools[", t, "] is null");
      const std::string name = tools_[t]->name();
      std::string probe_text = "<tool name=\"";
      probe_text += name;
      probe_text += "\"></tool>";
      const tool_call probe = parse_tool_call(probe_text);
      xplor::detail::require(probe.status == tool_call::kind::valid && probe.name == name, fn, "tools[", t,
                             "] has the invalid name '", name, "' (1 to 64 of [A-Za-z0-9_-])");
      xplor::detail::require(names.insert(name).second, fn, "two tools are named '", name, "'");
    }
  }

  reset_result reset(std::uint64_t seed) override {
    uses_ = 0;
    return inner_->reset(seed);
  }

  step_result step(std::string_view action) override {
    const tool_call call = parse_tool_call(action);
    if (call.status == tool_call::kind::none || uses_ >= options_.max_tool_uses) return inner_->step(action);
    ++uses_;
    step_result out;
    tool_result result;
    std::string name(call.name);
    if (call.status == tool_call::kind::malformed) {
      result.output = "malformed tool call: ";
      result.output += call.error;
    } else {
      const tool* found = nullptr;
      for (const auto& t : tools_)
        if (t->name() == call.name) found = t.get();
      if (found == nullptr) {
        result.output = "unknown tool '";
        result.output += call.name;
        result.output += "'";
      } else {
        try {
          result = found->run(call.input);
        } catch (const std::exception& e) {
          result = {false, "the tool threw: "};
          result.output += e.what();
        } catch (...) {
          result = {false, "the tool threw an unknown exception"};
        }
      }
    }
    out.reward =
        options_.tool_reward + (result.ok ? options_.tool_success_reward : options_.tool_error_reward);
    if (result.ok) {
      out.observation = std::move(result.output);
    } else {
      out.observation = "Error: ";
      out.observation += result.output;
      out.info["tool.error"] = std::move(result.output);
    }
    out.info["tool.name"] = std::move(name);
    out.info["tool.ok"] = result.ok ? "1" : "0";
    out.info["tool.uses"] = std::to_string(uses_);
    return out;
  }

  std::unique_ptr<environment> clone() const override { return std::make_unique<tool_use_wrapper>(*this); }

  const tool_use_options& options() const { return options_; }
  int uses() const { return uses_; }

 private:
  std::vector<std::shared_ptr<const tool>> tools_;
  tool_use_options options_;
  int uses_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Observation formatting

enum class observation_format {
  concat,              // o0 SEP o1 SEP o2 ...
  concat_with_action,  // o0 SEP a0 SEP o1 SEP a1 SEP o2 ...
  chat_template,       // USER o0 END ASSISTANT a0 END USER o1 END ... [ASSISTANT]
};

/// The role tags of observation_format::chat_template.
struct chat_template_strings {
  std::string user = "<|user|>\n";
  std::string assistant = "<|assistant|>\n";
  std::string end = "\n";
  bool add_generation_prompt = true;  // end with the assistant tag, ready for the response
};

struct observation_options {
  observation_format format = observation_format::concat;
  std::string separator = "\n";  // concat and concat_with_action
  chat_template_strings chat;
  /// Caps: keep only the last max_turns observations (0: all) and drop the oldest turns while
  /// the rendered text is longer than max_chars (0: no cap). A turn is an observation with the
  /// action before it; the latest turn is always kept whole, even if longer than max_chars.
  std::size_t max_turns = 0;
  std::size_t max_chars = 0;
};

/// GEM's observation wrappers: the observation becomes the formatted history of the episode.
/// Info gets history.turns (turns rendered) and history.dropped (older turns left out).
class observation_wrapper : public wrapper {
 public:
  observation_wrapper(std::unique_ptr<environment> inner, observation_options options = {})
      : wrapper(std::move(inner), "xplor::env::observation_wrapper"), options_(std::move(options)) {}

  reset_result reset(std::uint64_t seed) override {
    reset_result r = inner_->reset(seed);
    observations_.assign(1, std::move(r.observation));
    actions_.clear();
    r.observation = render(r.info);
    return r;
  }

  step_result step(std::string_view action) override {
    step_result r = inner_->step(action);
    actions_.emplace_back(action);
    observations_.push_back(std::move(r.observation));
    r.observation = render(r.info);
    return r;
  }

  std::unique_ptr<environment> clone() const override { return std::make_unique<observation_wrapper>(*this); }

  const observation_options& options() const { return options_; }

 private:
  // Text of turn k: observation k, preceded by action k-1 for k > 0.
  std::size_t turn_length(std::size_t k, bool first) const {
    const auto& o = options_;
    std::size_t n = 0;
    switch (o.format) {
      case observation_format::concat:
        n = observations_[k].size() + (first ? 0 : o.separator.size());
        break;
      case observation_format::concat_with_action:
        n = observations_[k].size() + (first ? 0 : o.separator.size());
        if (k > 0 && !first) n += actions_[k - 1].size() + o.separator.size();
        break;
      case observation_format::chat_template:
        n = o.chat.user.size() + observations_[k].size() + o.chat.end.size();
        if (k > 0 && !first) n += o.chat.assistant.size() + actions_[k - 1].size() + o.chat.end.size();
        break;
    }
    return n;
  }

  std::string render(info_map& info) const {
    const auto& o = options_;
    const std::size_t n = observations_.size();
    std::size_t begin = 0;
    if (o.max_turns > 0 && n > o.max_turns) begin = n - o.max_turns;
    if (o.max_chars > 0) {
      const std::size_t tail = o.format == observation_format::chat_template && o.chat.add_generation_prompt
                                   ? o.chat.assistant.size()
                                   : 0;
      std::size_t total = tail;
      for (std::size_t k = begin; k < n; ++k) total += turn_length(k, k == begin);
      while (begin + 1 < n && total > o.max_chars) {
        // Dropping turn `begin` makes turn begin+1 the first one.
        total -= turn_length(begin, true) + turn_length(begin + 1, false);
        total += turn_length(begin + 1, true);
        ++begin;
      }
    }
    std::string out;
    for (std::size_t k = begin; k < n; ++k) {
      const bool first = k == begin;
      switch (o.format) {
        case observation_format::concat:
          if (!first) out += o.separator;
          out += observations_[k];
          break;
        case observation_format::concat_with_action:
          if (!first) {
            out += o.separator;
            out += actions_[k - 1];
            out += o.separator;
          }
          out += observations_[k];
          break;
        case observation_format::chat_template:
          if (!first) {
            out += o.chat.assistant;
            out += actions_[k - 1];
            out += o.chat.end;
          }
          out += o.chat.user;
          out += observations_[k];
          out += o.chat.end;
          break;
      }
    }
    if (o.format == observation_format::chat_template && o.chat.add_generation_prompt)
      out += o.chat.assistant;
    info["history.turns"] = std::to_string(n - begin);
    info["history.dropped"] = std::to_string(begin);
    return out;
  }

  observation_options options_;
  std::vector<std::string> observations_, actions_;
};

// ---------------------------------------------------------------------------------------------
// Prompt variation

/// Rotating instruction templates and action vocabularies (env/prompt_variation.hpp), drawn per
/// episode from the reset seed with Philox (stream prompt_variation_wrapper::stream): the same
/// seed gives the same prompt on any thread and in any clone. Info: prompt.template and
/// prompt.vocabulary (indices; vocabulary 0 is the canonical words, k the k-th alternative).
class prompt_variation_wrapper : public wrapper {
 public:
  static constexpr std::uint64_t stream = 0x70726F6D7074ull;  // "prompt"

  prompt_variation_wrapper(std::unique_ptr<environment> inner, prompt_variation_options options)
      : wrapper(std::move(inner), "xplor::env::prompt_variation_wrapper"),
        variation_(std::move(options), "xplor::env::prompt_variation_wrapper") {}

  reset_result reset(std::uint64_t seed) override {
    philox_stream gen(seed, stream);
    choice_ = variation_.draw(gen);
    reset_result r = inner_->reset(seed);
    r.observation = variation_.render(choice_, r.observation);
    r.info["prompt.template"] = std::to_string(choice_.template_index);
    r.info["prompt.vocabulary"] = std::to_string(choice_.vocabulary_index);
    return r;
  }

  step_result step(std::string_view action) override {
    const bool translate = choice_.vocabulary_index > 0 && variation_.options().translate_actions;
    step_result r = translate ? inner_->step(variation_.translate(choice_, action)) : inner_->step(action);
    if (variation_.options().apply_on_step) r.observation = variation_.render(choice_, r.observation);
    return r;
  }

  std::unique_ptr<environment> clone() const override {
    return std::make_unique<prompt_variation_wrapper>(*this);
  }

  /// The episode's template and vocabulary indices (see the class comment).
  std::size_t template_index() const { return choice_.template_index; }
  std::size_t vocabulary_index() const { return choice_.vocabulary_index; }

  /// The response with the episode's words replaced by the canonical ones (prompt_variation::translate).
  std::string translate(std::string_view action) const { return variation_.translate(choice_, action); }

 private:
  prompt_variation variation_;
  prompt_choice choice_;
};

// ---------------------------------------------------------------------------------------------
// Episode tracking

struct episode_tracking_options {
  int max_turns = 0;  // > 0: truncate the episode at this many turns (unless it terminated)
};

/// GEM EpisodeTrackingWrapper: every step writes episode.length (turns so far, this one
/// included) and episode.return (the sum of the episode's rewards so far) into info; a step that
/// reaches max_turns without terminating is truncated, with episode.truncated_by = "max_turns".
class episode_tracking_wrapper : public wrapper {
 public:
  explicit episode_tracking_wrapper(std::unique_ptr<environment> inner,
                                    const episode_tracking_options& options = {})
      : wrapper(std::move(inner), "xplor::env::episode_tracking_wrapper"), options_(options) {
    xplor::detail::require(options.max_turns >= 0, "xplor::env::episode_tracking_wrapper",
                           "max_turns = ", options.max_turns, " is negative");
  }

  reset_result reset(std::uint64_t seed) override {
    length_ = 0;
    return_ = 0.0;
    return inner_->reset(seed);
  }

  step_result step(std::string_view action) override {
    step_result r = inner_->step(action);
    ++length_;
    return_ += static_cast<double>(r.reward);
    if (options_.max_turns > 0 && length_ >= options_.max_turns && !r.terminated && !r.truncated) {
      r.truncated = true;
      r.info["episode.truncated_by"] = "max_turns";
    }
    r.info["episode.length"] = std::to_string(length_);
    r.info["episode.return"] = std::to_string(return_);
    return r;
  }

  std::unique_ptr<environment> clone() const override {
    return std::make_unique<episode_tracking_wrapper>(*this);
  }

  int length() const { return length_; }
  double episode_return() const { return return_; }

 private:
  episode_tracking_options options_;
  int length_ = 0;
  double return_ = 0.0;
};

// ---------------------------------------------------------------------------------------------

/// Which wrappers wrap() applies; each is optional (tool use when `tools` is non-empty).
struct wrapper_stack {
  std::optional<prompt_variation_options> prompt_variation = {};
  std::vector<std::shared_ptr<const tool>> tools = {};
  tool_use_options tool_use;
  std::optional<observation_options> observation = {};
  std::optional<episode_tracking_options> episode_tracking = {};
};

/// Wraps `env` in the order of the file comment: prompt variation (innermost), tool use,
/// observation formatting, episode tracking (outermost).
inline std::unique_ptr<environment> wrap(std::unique_ptr<environment> env, const wrapper_stack& spec) {
  xplor::detail::require(env != nullptr, "xplor::env::wrap", "env is null");
  if (spec.prompt_variation)
    env = std::make_unique<prompt_variation_wrapper>(std::move(env), *spec.prompt_variation);
  if (!spec.tools.empty())
    env = std::make_unique<tool_use_wrapper>(std::move(env), spec.tools, spec.tool_use);
  if (spec.observation) env = std::make_unique<observation_wrapper>(std::move(env), *spec.observation);
  if (spec.episode_tracking)
    env = std::make_unique<episode_tracking_wrapper>(std::move(env), *spec.episode_tracking);
  return env;
}

}  // namespace xplor::env
