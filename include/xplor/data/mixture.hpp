// Pretraining mixtures measured in tokens ("Learning to See Before Seeing", Han et al., arXiv
// 2509.26625: a reasoning-heavy mix, ~60% reasoning / ~15% visual-world text / the rest general,
// builds the visual priors of a later multimodal model). Sources are named, tagged, weighted
// document streams supplied by the caller; the sampler picks, for each next document, the source
// furthest below its share of the tokens drawn so far (w_i T - t_i, a low-discrepancy rule), so
// the realised token fractions converge to the weights with an error below one document per
// source, whatever the document lengths. A schedule (curriculum) may change the weights at step
// boundaries; each change starts a new phase whose fractions follow the new weights.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/random.hpp"

namespace xplor::data {

/// Next document of a source, or nullopt when it has no more (an error if it is then chosen).
using document_stream = std::function<std::optional<std::vector<std::int32_t>>()>;

struct mixture_source {
  std::string name;
  std::vector<std::string> tags = {};
  double weight = 1.0;  // relative; normalised over the sources
  document_stream stream = {};
};

struct document {
  std::size_t source = 0;
  std::vector<std::int32_t> tokens = {};
};

class mixture_sampler {
 public:
  static constexpr std::uint64_t stream = 0x6D6978747572ull;  // "mixtur"

  explicit mixture_sampler(std::vector<mixture_source> sources, std::uint64_t seed = 0)
      : sources_(std::move(sources)), seed_(seed) {
    constexpr const char* fn = "xplor::data::mixture_sampler";
    xplor::detail::require(!sources_.empty(), fn, "no sources");
    std::vector<double> w;
    for (std::size_t i = 0; i < sources_.size(); ++i) {
      xplor::detail::require(static_cast<bool>(sources_[i].stream), fn, "sources[", i, "] ('",
                             sources_[i].name, "') has no document stream");
      for (std::size_t j = 0; j < i; ++j)
        xplor::detail::require(sources_[i].name != sources_[j].name, fn, "two sources are named '",
                               sources_[i].name, "'");
      w.push_back(sources_[i].weight);
    }
    set_weights(w, fn);
    total_.assign(sources_.size(), 0);
  }

  /// The next document: from the source with the largest deficit w_i T - t_i in the current
  /// phase (ties: the larger weight, then a seeded order), never from a zero-weight source.
  document next() {
    constexpr const char* fn = "xplor::data::mixture_sampler::next";
    std::size_t best = sources_.size();
    double best_deficit = 0.0;
    for (std::size_t i = 0; i < sources_.size(); ++i) {
      if (weights_[i] <= 0.0) continue;
      const double deficit = weights_[i] * double(phase_tokens_) - double(phase_[i]);
      if (best == sources_.size() || deficit > best_deficit ||
          (deficit == best_deficit && (weights_[i] > weights_[best] ||
                                       (weights_[i] == weights_[best] && tie_rank(i) < tie_rank(best))))) {
        best = i;
        best_deficit = deficit;
      }
    }
    std::optional<std::vector<std::int32_t>> doc = sources_[best].stream();
    xplor::detail::require(doc.has_value(), fn, "source '", sources_[best].name,
                           "' ran out of documents after ", total_[best], " tokens");
    xplor::detail::require(!doc->empty(), fn, "source '", sources_[best].name,
                           "' returned an empty document (the mixture is measured in tokens)");
    const auto n = static_cast<std::int64_t>(doc->size());
    phase_[best] += n;
    phase_tokens_ += n;
    total_[best] += n;
    total_tokens_ += n;
    return {best, std::move(*doc)};
  }

  /// Documents until at least `min_tokens` tokens (the last one is not cut).
  std::vector<document> next_batch(std::int64_t min_tokens) {
    xplor::detail::require(min_tokens > 0, "xplor::data::mixture_sampler::next_batch",
                           "min_tokens = ", min_tokens, " must be positive");
    std::vector<document> out;
    std::int64_t n = 0;
    while (n < min_tokens) {
      out.push_back(next());
      n += static_cast<std::int64_t>(out.back().tokens.size());
    }
    return out;
  }

  /// A curriculum: weights as a function of the training step, applied by begin_step().
  void set_schedule(std::function<std::vector<double>(std::int64_t step)> schedule) {
    schedule_ = std::move(schedule);
  }
  /// Call at each step boundary: applies the schedule's weights for `step`; when they differ
  /// from the current ones, a new phase begins (its fractions follow the new weights).
  void begin_step(std::int64_t step) {
    if (!schedule_) return;
    const std::vector<double> w = schedule_(step);
    set_weights(w, "xplor::data::mixture_sampler::begin_step");
  }

  /// Token fractions of each source, over the whole run and over the current phase.
  std::map<std::string, double> realised_token_fraction() const { return fractions(total_, total_tokens_); }
  std::map<std::string, double> phase_token_fraction() const { return fractions(phase_, phase_tokens_); }
  std::vector<std::int64_t> tokens_per_source() const { return total_; }
  /// The normalised weights in force.
  const std::vector<double>& weights() const { return weights_; }
  const std::vector<mixture_source>& sources() const { return sources_; }

 private:
  void set_weights(const std::vector<double>& w, const char* fn) {
    xplor::detail::require(w.size() == sources_.size(), fn, "got ", w.size(), " weights for ",
                           sources_.size(), " sources");
    double sum = 0.0;
    for (std::size_t i = 0; i < w.size(); ++i) {
      xplor::detail::require(std::isfinite(w[i]) && w[i] >= 0.0, fn, "weight of '", sources_[i].name,
                             "' = ", w[i], " must be finite and >= 0");
      sum += w[i];
    }
    xplor::detail::require(sum > 0.0, fn, "every weight is 0");
    std::vector<double> normalised(w.size());
    for (std::size_t i = 0; i < w.size(); ++i) normalised[i] = w[i] / sum;
    if (normalised == weights_) return;
    weights_ = std::move(normalised);
    phase_.assign(sources_.size(), 0);
    phase_tokens_ = 0;
  }
  std::uint32_t tie_rank(std::size_t i) const {
    return philox4x32_10({static_cast<std::uint32_t>(i), 0u, 0u, 0u},
                         {static_cast<std::uint32_t>(seed_), static_cast<std::uint32_t>(seed_ >> 32)})[0];
  }
  std::map<std::string, double> fractions(const std::vector<std::int64_t>& t, std::int64_t n) const {
    std::map<std::string, double> out;
    for (std::size_t i = 0; i < sources_.size(); ++i)
      out[sources_[i].name] = n > 0 ? double(t[i]) / double(n) : 0.0;
    return out;
  }

  std::vector<mixture_source> sources_;
  std::uint64_t seed_;
  std::vector<double> weights_;
  std::vector<std::int64_t> phase_, total_;
  std::int64_t phase_tokens_ = 0, total_tokens_ = 0;
  std::function<std::vector<double>(std::int64_t)> schedule_;
};

/// Weights by tag for a named preset; each source must carry exactly one of the preset's tags,
/// and a tag's share is split equally among its sources. "lsbs_balanced" (Han et al.'s
/// recommended mix): reasoning 0.60, visual_world 0.15, general 0.25.
inline std::vector<mixture_source> mixture_preset(std::string_view name,
                                                  std::vector<mixture_source> sources) {
  constexpr const char* fn = "xplor::data::mixture_preset";
  std::vector<std::pair<std::string, double>> shares;
  if (name == "lsbs_balanced")
    shares = {{"reasoning", 0.60}, {"visual_world", 0.15}, {"general", 0.25}};
  else
    xplor::detail::fail(fn, "unknown preset '", name, "' (lsbs_balanced is known)");
  std::vector<std::size_t> tag_of(sources.size()), count(shares.size(), 0);
  for (std::size_t i = 0; i < sources.size(); ++i) {
    std::size_t found = shares.size();
    for (std::size_t k = 0; k < shares.size(); ++k)
      for (const auto& tag : sources[i].tags)
        if (tag == shares[k].first) {
          xplor::detail::require(found == shares.size() || found == k, fn, "source '", sources[i].name,
                                 "' carries two of the preset's tags");
          found = k;
        }
    xplor::detail::require(found < shares.size(), fn, "source '", sources[i].name,
                           "' carries none of the tags reasoning, visual_world, general");
    tag_of[i] = found;
    ++count[found];
  }
  for (std::size_t k = 0; k < shares.size(); ++k)
    xplor::detail::require(count[k] > 0, fn, "no source carries the tag '", shares[k].first, "'");
  for (std::size_t i = 0; i < sources.size(); ++i)
    sources[i].weight = shares[tag_of[i]].second / double(count[tag_of[i]]);
  return sources;
}

}  // namespace xplor::data
