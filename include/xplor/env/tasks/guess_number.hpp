// GuessTheNumber (GEM / TextArena `game:GuessTheNumber-v0-<level>`): a multi-turn game in which
// the agent guesses a secret integer and is told after each wrong guess whether the secret is
// higher or lower. The GEM paper uses it to show that REINFORCE + ReBN learns binary search only
// with a discount gamma < 1.
//
// Episode. reset(seed) draws the secret uniformly in [low, high] from a Philox stream keyed by the
// seed (the `-random` level also draws `high` per episode) and returns the instructions. Every
// step is one turn (invalid guesses included) and reads the guess as the integer inside the LAST
// `\boxed{...}` of the response (optional sign, ASCII digits, surrounding whitespace allowed;
// "\boxed{12}" is a guess of 12, "\boxed{12.5}", "\boxed{twelve}" or no box are invalid).
//
// Observations after a step (exact text, parseable by a simple policy):
//   correct:       "Correct! The secret number is G."
//   too low:       "The secret number is higher than G."
//   too high:      "The secret number is lower than G."
//   no integer:    "Invalid guess: put one integer in \boxed{}, e.g. \boxed{M}."   (M = midpoint)
//   out of range:  "Invalid guess: G is outside the range L to H."
// followed, while turns remain, by " You have K turns left." and, once the budget is spent
// without success, by " You have no turns left."
//
// Rewards (the design): correct guess +1 (terminated); valid wrong guess 0; invalid or
// out-of-range guess `invalid_reward` = -0.1 (consumes the turn); running out of turns ends the
// episode truncated with the reward of that last turn (0 for a valid guess). Valid guesses cost
// nothing, so with gamma = 1 the return of every successful episode is exactly 1 however many
// turns it took: there is no pressure to search efficiently beyond the turn budget, and only a
// discount gamma < 1 (return gamma^(turns-1)) rewards binary search, which is the point the GEM
// paper makes. The small negative reward for invalid guesses only teaches the answer format; a
// policy that always answers validly never sees it.
//
// info: reset and every step carry "secret", "low", "high", "max_turns" and "turn" (turns taken);
// steps add "outcome" ("correct", "higher", "lower", "invalid", "out_of_range") and, for a parsed
// integer, "guess". The secret appears only in info, never in an observation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/random.hpp"
#include "xplor/env/env.hpp"
#include "xplor/env/tasks/common.hpp"
#include "xplor/reward/verify.hpp"

namespace xplor::env {

/// Options of guess_number. Levels (ids `game:GuessTheNumber-v0-<level>`):
///   easy:   [1, 20], 10 turns (binary search needs at most 5);
///   hard:   [1, 100], 7 turns (binary search needs at most 7: no slack);
///   random: low = 1, high drawn per episode uniformly in [10, 100], 10 turns.
struct guess_number_options {
  int low = 1;
  int high = 20;
  int max_turns = 10;
  /// When true, each reset draws `high` uniformly in [random_high_min, random_high_max] (before
  /// the secret) and `high` above is ignored.
  bool random_range = false;
  int random_high_min = 10;
  int random_high_max = 100;
  float correct_reward = 1.0f;
  float wrong_reward = 0.0f;     // a valid guess that is too low or too high
  float invalid_reward = -0.1f;  // no integer in the last \boxed{}, or one outside [low, high]
};

/// The options of a level name: "easy", "hard" or "random"; xplor::error otherwise.
inline guess_number_options guess_number_level(std::string_view level) {
  guess_number_options o;
  if (level == "easy") return o;
  if (level == "hard") {
    o.high = 100;
    o.max_turns = 7;
    return o;
  }
  if (level == "random") {
    o.random_range = true;
    return o;
  }
  xplor::detail::fail("xplor::env::guess_number_level", "unknown level '", level,
                      "' (known: easy, hard, random)");
}

class guess_number final : public environment {
 public:
  static constexpr std::uint64_t stream = 0x4775657373ull;  // "Guess": the Philox stream id
  static constexpr std::string_view id_prefix = "game:GuessTheNumber-v0";

  explicit guess_number(guess_number_options options = {}, std::string id = "game:GuessTheNumber-v0-easy")
      : options_(options), id_(std::move(id)) {
    constexpr const char* fn = "xplor::env::guess_number";
    xplor::detail::require(options_.max_turns >= 1, fn, "max_turns = ", options_.max_turns, " is below 1");
    if (options_.random_range) {
      xplor::detail::require(options_.random_high_min >= options_.low, fn,
                             "random_high_min = ", options_.random_high_min,
                             " is below low = ", options_.low);
      xplor::detail::require(options_.random_high_max >= options_.random_high_min, fn,
                             "random_high_max = ", options_.random_high_max,
                             " is below random_high_min = ", options_.random_high_min);
    } else {
      xplor::detail::require(options_.high >= options_.low, fn, "high = ", options_.high,
                             " is below low = ", options_.low);
    }
  }

  /// Builds the environment of an id `game:GuessTheNumber-v0-<level>`.
  static std::unique_ptr<environment> from_id(std::string_view id) {
    constexpr std::string_view prefix = "game:GuessTheNumber-v0-";
    if (!id.starts_with(prefix))
      xplor::detail::fail("xplor::env::guess_number::from_id", "id '", id, "' does not start with '", prefix,
                          "' (levels: easy, hard, random)");
    return std::make_unique<guess_number>(guess_number_level(id.substr(prefix.size())), std::string(id));
  }

  reset_result reset(std::uint64_t seed) override {
    philox_stream gen(seed, stream);
    low_ = options_.low;
    high_ =
        options_.random_range
            ? static_cast<int>(detail::uniform_int(gen, options_.random_high_min, options_.random_high_max))
            : options_.high;
    secret_ = static_cast<int>(detail::uniform_int(gen, low_, high_));
    turn_ = 0;
    started_ = true;
    done_ = false;
    std::string obs = "I am thinking of a secret integer between ";
    obs += std::to_string(low_);
    obs += " and ";
    obs += std::to_string(high_);
    obs += " (inclusive). You have ";
    obs += std::to_string(options_.max_turns);
    obs +=
        " turns to guess it. Each turn, give exactly one guess as an integer inside \\boxed{}, e.g. "
        "\\boxed{";
    obs += std::to_string(midpoint());
    obs +=
        "}; only the last \\boxed{} of your response counts. After a wrong guess I will tell you "
        "whether the secret number is higher or lower than your guess.";
    return {std::move(obs), info()};
  }

  step_result step(std::string_view action) override {
    constexpr const char* fn = "xplor::env::guess_number::step";
    xplor::detail::require(started_, fn, "step called before reset");
    xplor::detail::require(!done_, fn, "step called after the episode ended (turn ", turn_, "); call reset");
    ++turn_;
    step_result r;
    std::optional<std::int64_t> guess;
    if (const auto boxed = reward::extract_boxed(action)) guess = detail::parse_plain_integer(*boxed);
    const char* outcome = nullptr;
    if (!guess) {
      outcome = "invalid";
      r.reward = options_.invalid_reward;
      r.observation = "Invalid guess: put one integer in \\boxed{}, e.g. \\boxed{";
      r.observation += std::to_string(midpoint());
      r.observation += "}.";
    } else if (*guess < low_ || *guess > high_) {
      outcome = "out_of_range";
      r.reward = options_.invalid_reward;
      r.observation = "Invalid guess: ";
      r.observation += std::to_string(*guess);
      r.observation += " is outside the range ";
      r.observation += std::to_string(low_);
      r.observation += " to ";
      r.observation += std::to_string(high_);
      r.observation += ".";
    } else if (*guess == secret_) {
      outcome = "correct";
      r.reward = options_.correct_reward;
      r.terminated = true;
      r.observation = "Correct! The secret number is ";
      r.observation += std::to_string(*guess);
      r.observation += ".";
    } else {
      const bool higher = secret_ > *guess;
      outcome = higher ? "higher" : "lower";
      r.reward = options_.wrong_reward;
      r.observation = higher ? "The secret number is higher than " : "The secret number is lower than ";
      r.observation += std::to_string(*guess);
      r.observation += ".";
    }
    if (!r.terminated) {
      const int left = options_.max_turns - turn_;
      if (left <= 0) {
        r.truncated = true;
        r.observation += " You have no turns left.";
      } else {
        r.observation += " You have ";
        r.observation += std::to_string(left);
        r.observation += left == 1 ? " turn left." : " turns left.";
      }
    }
    done_ = r.terminated || r.truncated;
    r.info = info();
    r.info["outcome"] = outcome;
    if (guess) r.info["guess"] = std::to_string(*guess);
    return r;
  }

  std::unique_ptr<environment> clone() const override { return std::make_unique<guess_number>(*this); }
  std::string id() const override { return id_; }

  const guess_number_options& options() const { return options_; }

 private:
  int midpoint() const { return low_ + (high_ - low_) / 2; }

  info_map info() const {
    return {{"secret", std::to_string(secret_)},
            {"low", std::to_string(low_)},
            {"high", std::to_string(high_)},
            {"max_turns", std::to_string(options_.max_turns)},
            {"turn", std::to_string(turn_)}};
  }

  guess_number_options options_;
  std::string id_;
  int low_ = 0;
  int high_ = 0;
  int secret_ = 0;
  int turn_ = 0;
  bool started_ = false;
  bool done_ = false;
};

static_assert(environment_like<guess_number>);

}  // namespace xplor::env
