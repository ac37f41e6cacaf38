// GEM-style environments (Liu et al., "GEM: a gym for agentic LLMs", arXiv 2510.01051): text
// observations, the model's whole response as the action, Gym's reset/step contract with
// terminated and truncated, clone() for spawning, and a registry that builds environments from
// ids like "game:GuessTheNumber-v0-easy". Environments are seeded explicitly (Philox); there is no
// global RNG and no global registry object.
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "xplor/core/error.hpp"

namespace xplor::env {

/// GEM's info dict: string keys and values (numbers are written with std::to_string).
using info_map = std::map<std::string, std::string>;

struct reset_result {
  std::string observation = {};
  info_map info;
};

struct step_result {
  std::string observation = {};
  float reward = 0.0f;
  bool terminated = false;  // the MDP ended (no bootstrapping past it)
  bool truncated = false;   // stopped from outside the MDP (a turn limit)
  info_map info;
};

/// The interface every environment and wrapper implements. Not thread-safe: one thread steps one
/// environment at a time (vector_env steps different environments concurrently).
class environment {
 public:
  virtual ~environment() = default;
  /// Starts an episode; the same seed gives the same episode.
  virtual reset_result reset(std::uint64_t seed) = 0;
  /// One turn: `action` is the model's whole response.
  virtual step_result step(std::string_view action) = 0;
  /// An independent copy in the same state (GEM spawn(same_state=True)).
  virtual std::unique_ptr<environment> clone() const = 0;
  /// The environment's id, e.g. "game:GuessTheNumber-v0-easy".
  virtual std::string id() const = 0;
};

/// The concept behind the interface, for code that takes environments by template parameter.
template <class E>
concept environment_like = requires(E& e, const E& ce, std::uint64_t seed, std::string_view action) {
  { e.reset(seed) } -> std::same_as<reset_result>;
  { e.step(action) } -> std::same_as<step_result>;
  { ce.clone() } -> std::convertible_to<std::unique_ptr<environment>>;
};
static_assert(environment_like<environment>);

/// Builds environments from ids "<family>:<name>" (GEM's make). Factories receive the full id.
class registry {
 public:
  using factory = std::function<std::unique_ptr<environment>(std::string_view id)>;

  /// Registers every id starting with `prefix` (e.g. "game:GuessTheNumber-v0").
  registry& add(std::string prefix, factory make) {
    detail::require(!prefix.empty(), "xplor::env::registry::add", "prefix is empty");
    detail::require(static_cast<bool>(make), "xplor::env::registry::add", "the factory for '", prefix,
                    "' is empty");
    entries_.emplace_back(std::move(prefix), std::move(make));
    return *this;
  }

  /// The environment for `id`: the longest registered prefix of it decides.
  std::unique_ptr<environment> make(std::string_view id) const {
    const std::pair<std::string, factory>* best = nullptr;
    for (const auto& e : entries_)
      if (id.starts_with(e.first) && (best == nullptr || e.first.size() > best->first.size())) best = &e;
    if (best == nullptr) {
      std::string known;
      for (const auto& e : entries_) known += (known.empty() ? "" : ", ") + e.first;
      detail::fail("xplor::env::registry::make", "no environment matches id '", id, "' (registered: ", known,
                   ")");
    }
    return best->second(id);
  }

  std::vector<std::string> prefixes() const {
    std::vector<std::string> out;
    for (const auto& e : entries_) out.push_back(e.first);
    return out;
  }

 private:
  std::vector<std::pair<std::string, factory>> entries_;
};

/// The seed of episode `episode` of sub-environment `index` under base seed `seed`: episode 0
/// uses seed + index exactly (GEM vector reset); later episodes (autoreset) a Philox-style mix,
/// so that a run is the same whatever the thread count.
inline std::uint64_t episode_seed(std::uint64_t seed, std::uint64_t index, std::uint64_t episode) {
  std::uint64_t s = seed + index;
  if (episode == 0) return s;
  // splitmix64 of (s, episode): distinct, well-spread seeds for later episodes.
  std::uint64_t z = s + 0x9E3779B97F4A7C15ull * (episode + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace xplor::env
