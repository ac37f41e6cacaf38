// SFT data with diverse prompts ("Debunk the Myth of SFT Generalization", Lin et al., arXiv
// 2510.00237): every example draws an instruction template and an action vocabulary — the
// canonical words with share 1/(n+1), each of the n alternatives with 1/(n+1), where the
// alternatives are fixed vocabularies and "super random" ones (fresh words from a pool per
// example, the paper's create_ultra_mixed_dataset.py) — renders the prompt and writes the target
// in the drawn words, answer-only or with a chain of thought (data/cot.hpp). Held-out templates
// and vocabularies form the evaluation split; the "Fake" environment (new words shown, the task
// still expecting the canonical ones) is env::prompt_variation_wrapper with translate_actions =
// false (fake_environment below). Deterministic: example i of seed s is the same everywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/random.hpp"
#include "xplor/data/cot.hpp"
#include "xplor/env/prompt_variation.hpp"
#include "xplor/env/wrappers.hpp"

namespace xplor::data {

/// The paper's named vocabularies for the four Sokoban actions Up, Down, Left, Right
/// (create_mixed_dataset.py): base, cardinal, emoji, numerical, alphabetical, random.
struct named_vocabulary {
  std::string name;
  std::vector<std::string> words;
};
inline const std::vector<named_vocabulary>& sokoban_vocabularies() {
  static const std::vector<named_vocabulary> v{
      {"base", {"Up", "Down", "Left", "Right"}},
      {"cardinal", {"North", "South", "West", "East"}},
      {"emoji", {"\u2b06\ufe0f", "\u2b07\ufe0f", "\u2b05\ufe0f", "\u27a1\ufe0f"}},
      {"numerical", {"1", "2", "3", "4"}},
      {"alphabetical", {"A", "B", "C", "D"}},
      {"random", {"*", "&", "1", "M"}},
  };
  return v;
}

/// `n` distinct words drawn without replacement from `pool` (partial Fisher-Yates with Philox).
inline std::vector<std::string> random_words(philox_stream& gen, std::span<const std::string> pool,
                                             std::size_t n) {
  constexpr const char* fn = "xplor::data::random_words";
  xplor::detail::require(n <= pool.size(), fn, "asked for ", n, " words from a pool of ", pool.size());
  std::vector<std::size_t> idx(pool.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::vector<std::string> out;
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t j = k + env::prompt_variation::pick(gen(), {0, pool.size() - k});
    std::swap(idx[k], idx[j]);
    out.push_back(pool[idx[k]]);
  }
  return out;
}

struct prompt_diversity_options {
  /// Templates, canonical words, fixed alternative vocabularies and the held-out splits (see
  /// env::prompt_variation_options; translate_actions and apply_on_step do not apply here).
  env::prompt_variation_options prompts = {};
  /// "Super random" vocabularies: random_vocabularies more alternatives in the 1/(n+1) mixing,
  /// each drawing fresh distinct words from word_pool per example (training split only).
  std::vector<std::string> word_pool = {};
  std::size_t random_vocabularies = 0;
  std::uint64_t seed = 0;
};

/// Examples with drawn prompts: sample(i) is the template and words of example i.
class prompt_diversity_sampler {
 public:
  static constexpr std::uint64_t stream = 0x7366745F64617461ull;  // "sft_data"

  explicit prompt_diversity_sampler(prompt_diversity_options options)
      : options_(std::move(options)), variation_(options_.prompts, "xplor::data::prompt_diversity_sampler") {
    constexpr const char* fn = "xplor::data::prompt_diversity_sampler";
    const std::size_t k = options_.prompts.canonical.size();
    xplor::detail::require(options_.random_vocabularies == 0 || k > 0, fn,
                           "random_vocabularies needs canonical words");
    xplor::detail::require(options_.random_vocabularies == 0 || options_.word_pool.size() >= k, fn,
                           "word_pool has ", options_.word_pool.size(), " words; a random vocabulary needs ",
                           k);
    for (std::size_t i = 0; i < options_.word_pool.size(); ++i) {
      xplor::detail::require(!options_.word_pool[i].empty(), fn, "word_pool[", i, "] is empty");
      for (std::size_t j = 0; j < i; ++j)
        xplor::detail::require(options_.word_pool[i] != options_.word_pool[j], fn, "word_pool repeats '",
                               options_.word_pool[i], "'");
    }
  }

  /// Example i's template and vocabulary: vocabulary 0 (canonical), k (the k-th fixed
  /// alternative), or fresh random words (vocabulary_index one past the fixed ones).
  env::prompt_choice sample(std::uint64_t example) const {
    philox_stream gen(options_.seed, stream, 2 * example);
    env::prompt_choice c;
    c.template_index = env::prompt_variation::pick(gen(), variation_.template_range());
    if (options_.prompts.canonical.empty()) return c;
    auto range = variation_.vocabulary_range();
    const std::size_t fixed_end = range.first + range.second;  // random slots follow the split's fixed ones
    if (options_.prompts.split == env::prompt_split::train) range.second += options_.random_vocabularies;
    c.vocabulary_index = env::prompt_variation::pick(gen(), range);
    if (c.vocabulary_index >= fixed_end) {
      c.vocabulary_index = options_.prompts.vocabularies.size() + 1;
      c.words = random_words(gen, options_.word_pool, options_.prompts.canonical.size());
    }
    return c;
  }

  /// The prompt of a draw around the task's observation.
  std::string prompt(const env::prompt_choice& c, std::string_view observation) const {
    return variation_.render(plain(c), observation);
  }
  /// The target: the canonical action indices named in the draw's words (joined by a space),
  /// answer-only by default, after the reasoning steps with cot.with_trace.
  std::string target(const env::prompt_choice& c, const std::vector<std::size_t>& actions,
                     std::span<const std::string> steps = {},
                     const cot_options& cot = {cot_style::tags, false}) const {
    return sft_target(steps, variation_.name_actions(plain(c), actions), cot);
  }
  /// A response in the draw's words translated to the canonical ones (for checking it).
  std::string translate(const env::prompt_choice& c, std::string_view response) const {
    return variation_.translate(plain(c), response);
  }
  /// The action validity metric: every action word of `response` belongs to the draw's words.
  bool valid_actions(const env::prompt_choice& c, std::span<const std::string> response_words) const {
    const auto& ws = variation_.words(plain(c));
    for (const auto& w : response_words) {
      bool found = false;
      for (const auto& v : ws) found = found || v == w;
      if (!found) return false;
    }
    return true;
  }

  const env::prompt_variation& variation() const { return variation_; }

 private:
  /// Random words travel as prompt_choice::words with the fixed vocabularies' index range untouched.
  env::prompt_choice plain(const env::prompt_choice& c) const {
    if (c.words.empty()) return c;
    variation_.check_words(c.words, "xplor::data::prompt_diversity_sampler", "words[", 0);
    env::prompt_choice p = c;
    p.vocabulary_index = 0;
    return p;
  }

  prompt_diversity_options options_;
  env::prompt_variation variation_;
};

/// The paper's "Fake" environment: prompts in the drawn vocabularies, while the task still reads
/// the canonical words (a model that ignores the prompt's vocabulary scores high here).
inline std::unique_ptr<env::environment> fake_environment(std::unique_ptr<env::environment> task,
                                                          env::prompt_variation_options prompts) {
  prompts.translate_actions = false;
  return std::make_unique<env::prompt_variation_wrapper>(std::move(task), std::move(prompts));
}

}  // namespace xplor::data
