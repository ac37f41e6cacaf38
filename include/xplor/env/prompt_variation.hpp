// Instruction templates x action vocabularies, the prompt-diversity recipe of "Debunk the Myth
// of SFT Generalization" (Lin et al., arXiv 2510.00237): a prompt is a template around the task's
// observation, the actions are named by the canonical words or by an alternative vocabulary
// (word i standing for canonical word i), and the response's words are translated back before
// the task reads them. One mechanism for the environment wrapper (env/wrappers.hpp,
// prompt_variation_wrapper) and for SFT data (data/prompt_diversity.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/random.hpp"

namespace xplor::env {

/// Which templates and vocabularies a draw may take: the training ones (all but the last
/// held_out) or the held-out ones (the last held_out), for evaluation on unseen prompts.
enum class prompt_split { train, eval };

struct prompt_variation_options {
  /// Instruction templates; each holds "{observation}" (the task's prompt) at least once, and
  /// may hold "{actions}" (the episode's action words, ", "-separated) and "{mapping}" ("X means
  /// Up, Y means Down", or empty when the episode uses the canonical words).
  std::vector<std::string> templates = {"{observation}"};
  std::size_t held_out_templates = 0;
  /// Action vocabularies: `canonical` holds the words the task understands (may be empty: no
  /// vocabulary variation); each entry of `vocabularies` is an alternative of the same size,
  /// word i standing for canonical word i. A draw is uniform among the canonical words and the
  /// alternatives (P = 1/(n+1) each, the paper's mixing rule).
  std::vector<std::string> canonical = {};
  std::vector<std::vector<std::string>> vocabularies = {};
  std::size_t held_out_vocabularies = 0;
  prompt_split split = prompt_split::train;
  /// Translate the episode's words in the response back to the canonical ones before the task
  /// sees it. false gives the paper's "Fake" environment (the prompt shows new words, the task
  /// still expects the canonical ones).
  bool translate_actions = true;
  /// Also apply the template to step observations (default: only the reset prompt).
  bool apply_on_step = false;
};

/// One draw: a template, and vocabulary 0 (canonical) or k (the k-th alternative). `words`,
/// when not empty, replaces the vocabulary's words (a vocabulary made for this draw alone, e.g.
/// the paper's "super random" words); it must have the canonical size and distinct words.
struct prompt_choice {
  std::size_t template_index = 0;
  std::size_t vocabulary_index = 0;
  std::vector<std::string> words = {};
};

/// The validated options and the three operations on a draw: render a prompt, list its words,
/// translate a response back to the canonical words.
class prompt_variation {
 public:
  explicit prompt_variation(prompt_variation_options options, const char* fn = "xplor::env::prompt_variation")
      : options_(std::move(options)) {
    const auto& o = options_;
    xplor::detail::require(!o.templates.empty(), fn, "no templates");
    for (std::size_t t = 0; t < o.templates.size(); ++t)
      xplor::detail::require(o.templates[t].find("{observation}") != std::string::npos, fn, "templates[", t,
                             "] = '", o.templates[t], "' has no {observation}");
    check_split(fn, "held_out_templates", o.held_out_templates, o.templates.size());
    if (o.canonical.empty()) {
      xplor::detail::require(o.vocabularies.empty(), fn, "vocabularies given without canonical words");
    } else {
      for (std::size_t w = 0; w < o.canonical.size(); ++w)
        xplor::detail::require(!o.canonical[w].empty(), fn, "canonical[", w, "] is empty");
      for (std::size_t v = 0; v < o.vocabularies.size(); ++v)
        check_words(o.vocabularies[v], fn, "vocabularies[", v);
      // Vocabulary 0 (canonical) always belongs to the training split.
      check_split(fn, "held_out_vocabularies", o.held_out_vocabularies, o.vocabularies.size() + 1);
    }
  }

  const prompt_variation_options& options() const { return options_; }

  /// A template, then a vocabulary, each uniform over the split's choices (two Philox words).
  prompt_choice draw(philox_stream& gen) const {
    const auto& o = options_;
    prompt_choice c;
    c.template_index = pick(gen(), template_range());
    c.vocabulary_index = o.canonical.empty() ? 0 : pick(gen(), vocabulary_range());
    return c;
  }

  /// The split's templates and vocabularies as [first, first + count) (vocabulary 0 = canonical).
  std::pair<std::size_t, std::size_t> template_range() const {
    return range(options_.templates.size(), options_.held_out_templates);
  }
  std::pair<std::size_t, std::size_t> vocabulary_range() const {
    return options_.canonical.empty()
               ? std::pair<std::size_t, std::size_t>{0, 1}
               : range(options_.vocabularies.size() + 1, options_.held_out_vocabularies);
  }
  /// first + floor(word * count / 2^32): a uniform choice in a range from one Philox word.
  static std::size_t pick(std::uint32_t word, std::pair<std::size_t, std::size_t> r) {
    return r.first + static_cast<std::size_t>((static_cast<std::uint64_t>(word) * r.second) >> 32);
  }

  /// The draw's action words (empty without canonical words).
  const std::vector<std::string>& words(const prompt_choice& c) const {
    if (!c.words.empty()) return c.words;
    return c.vocabulary_index == 0 ? options_.canonical : options_.vocabularies.at(c.vocabulary_index - 1);
  }
  bool canonical(const prompt_choice& c) const { return c.words.empty() && c.vocabulary_index == 0; }

  /// The template of the draw with {observation}, {actions} and {mapping} filled in.
  std::string render(const prompt_choice& c, std::string_view observation) const {
    const auto& o = options_;
    check_choice(c);
    std::string actions, mapping;
    if (!o.canonical.empty()) {
      const auto& ws = words(c);
      for (std::size_t w = 0; w < ws.size(); ++w) {
        if (w > 0) actions += ", ";
        actions += ws[w];
        if (!canonical(c)) {
          if (w > 0) mapping += ", ";
          mapping += ws[w];
          mapping += " means ";
          mapping += o.canonical[w];
        }
      }
    }
    const std::string& t = o.templates[c.template_index];
    std::string out;
    std::size_t i = 0;
    while (i < t.size()) {
      if (t[i] == '{') {
        const std::string_view rest = std::string_view(t).substr(i);
        if (rest.starts_with("{observation}")) {
          out += observation;
          i += 13;
          continue;
        }
        if (rest.starts_with("{actions}")) {
          out += actions;
          i += 9;
          continue;
        }
        if (rest.starts_with("{mapping}")) {
          out += mapping;
          i += 9;
          continue;
        }
      }
      out += t[i++];
    }
    return out;
  }

  /// The response with every whole-word occurrence of the draw's words replaced by the
  /// canonical ones (longest word first; a word boundary is any byte outside [A-Za-z0-9_]).
  /// Any other whole-word occurrence of a canonical word (ASCII case ignored) is blanked to
  /// underscores: under a new vocabulary the old words are not actions, and passing them through
  /// would pay a model that ignores the prompt (the Fake environment, translate_actions = false,
  /// is where they count).
  std::string translate(const prompt_choice& c, std::string_view response) const {
    if (canonical(c)) return std::string(response);
    check_choice(c);
    const auto& ws = words(c);
    std::string out;
    out.reserve(response.size());
    std::size_t i = 0;
    while (i < response.size()) {
      std::size_t best = ws.size();
      if (at_word_start(response, i)) {
        for (std::size_t w = 0; w < ws.size(); ++w) {
          const std::string& word = ws[w];
          if (response.substr(i, word.size()) != word) continue;
          const std::size_t end = i + word.size();
          if (end < response.size() && word_char(response[end]) && word_char(word.back())) continue;
          if (best == ws.size() || word.size() > ws[best].size()) best = w;
        }
      }
      if (best < ws.size()) {
        out += options_.canonical[best];
        i += ws[best].size();
        continue;
      }
      const std::size_t old = at_word_start(response, i) ? stale_canonical(response, i) : 0;
      if (old > 0) {
        out.append(old, '_');
        i += old;
      } else {
        out += response[i++];
      }
    }
    return out;
  }

  /// Canonical action indices as the draw's words, joined by `separator`.
  std::string name_actions(const prompt_choice& c, const std::vector<std::size_t>& actions,
                           std::string_view separator = " ") const {
    check_choice(c);
    const auto& ws = words(c);
    std::string out;
    for (std::size_t k = 0; k < actions.size(); ++k) {
      xplor::detail::require(actions[k] < ws.size(), "xplor::env::prompt_variation::name_actions", "actions[",
                             k, "] = ", actions[k], " is not below the ", ws.size(), " words");
      if (k > 0) out += separator;
      out += ws[actions[k]];
    }
    return out;
  }

  /// Checks words made for one draw (prompt_choice::words): the canonical size, distinct, non-empty.
  void check_words(const std::vector<std::string>& ws, const char* fn, const char* what,
                   std::size_t index) const {
    xplor::detail::require(ws.size() == options_.canonical.size(), fn, what, index, "] has ", ws.size(),
                           " words for ", options_.canonical.size(), " canonical words");
    for (std::size_t w = 0; w < ws.size(); ++w) {
      xplor::detail::require(!ws[w].empty(), fn, what, index, "][", w, "] is empty");
      for (std::size_t u = 0; u < w; ++u)
        xplor::detail::require(ws[u] != ws[w], fn, what, index, "] repeats the word '", ws[w], "'");
    }
  }

 private:
  static bool word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  }
  static bool at_word_start(std::string_view s, std::size_t i) {
    return i == 0 || !word_char(s[i - 1]) || !word_char(s[i]);
  }
  static char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }
  /// The length of the longest canonical word occurring as a whole word at `i` (ASCII case
  /// ignored), or 0. Called where none of the draw's words matches exactly.
  std::size_t stale_canonical(std::string_view response, std::size_t i) const {
    std::size_t best = 0;
    for (const std::string& word : options_.canonical) {
      if (word.size() <= best || i + word.size() > response.size()) continue;
      bool same = true;
      for (std::size_t k = 0; k < word.size() && same; ++k) same = lower(response[i + k]) == lower(word[k]);
      if (!same) continue;
      const std::size_t end = i + word.size();
      if (end < response.size() && word_char(response[end]) && word_char(word.back())) continue;
      best = word.size();
    }
    return best;
  }
  void check_split(const char* fn, const char* what, std::size_t held_out, std::size_t n) const {
    if (options_.split == prompt_split::train)
      xplor::detail::require(held_out < n, fn, what, " = ", held_out, " leaves no training choice out of ",
                             n);
    else
      xplor::detail::require(held_out > 0 && held_out <= n, fn, what, " = ", held_out, " must be in [1, ", n,
                             "] for the eval split");
  }
  void check_choice(const prompt_choice& c) const {
    constexpr const char* fn = "xplor::env::prompt_variation";
    xplor::detail::require(c.template_index < options_.templates.size(), fn,
                           "template_index = ", c.template_index, " is not below ",
                           options_.templates.size());
    xplor::detail::require(c.vocabulary_index <= options_.vocabularies.size(), fn,
                           "vocabulary_index = ", c.vocabulary_index, " is above ",
                           options_.vocabularies.size());
  }
  std::pair<std::size_t, std::size_t> range(std::size_t n, std::size_t held_out) const {
    if (options_.split == prompt_split::train) return {0, n - held_out};
    return {n - held_out, held_out};
  }

  prompt_variation_options options_;
};

}  // namespace xplor::env
