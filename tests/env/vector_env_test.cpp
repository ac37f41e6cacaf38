// vector_env: seeding s + i, autoreset (same_step and next_step) against a serial reference,
// identical results for 1, 2 and 4 threads, and bad input.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>
#include <xplor/env/env.hpp>
#include <xplor/env/vector_env.hpp>

namespace {

using xplor::env::autoreset_mode;
using xplor::env::environment;
using xplor::env::reset_result;
using xplor::env::step_result;
using xplor::env::vector_env;
using xplor::env::vector_options;

// Terminates after k steps (k = fixed_k, or 1 + seed % 4 when fixed_k is 0); reward = step index.
class counter_env : public environment {
 public:
  explicit counter_env(int fixed_k = 0) : fixed_k_(fixed_k) {}
  reset_result reset(std::uint64_t seed) override {
    seed_ = seed;
    t_ = 0;
    k_ = fixed_k_ > 0 ? fixed_k_ : 1 + static_cast<int>(seed % 4);
    reset_result r;
    r.observation = std::string("seed=") + std::to_string(seed) + " t=0";
    r.info["k"] = std::to_string(k_);
    return r;
  }
  step_result step(std::string_view action) override {
    if (action == "throw") throw std::runtime_error("counter_env: asked to throw");
    ++t_;
    step_result r;
    r.observation = std::string("seed=") + std::to_string(seed_) + " t=" + std::to_string(t_) +
                    " a=" + std::string(action);
    r.reward = static_cast<float>(t_);
    r.terminated = t_ >= k_;
    r.info["t"] = std::to_string(t_);
    return r;
  }
  std::unique_ptr<environment> clone() const override { return std::make_unique<counter_env>(*this); }
  std::string id() const override { return "test:counter"; }

 private:
  int fixed_k_ = 0, k_ = 1, t_ = 0;
  std::uint64_t seed_ = 0;
};

// Remembers which thread stepped it last; each step spins for about 20 microseconds.
class thread_recording_env : public environment {
 public:
  reset_result reset(std::uint64_t) override { return {"start", {}}; }
  step_result step(std::string_view) override {
    stepped_by = std::this_thread::get_id();
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(20);
    while (std::chrono::steady_clock::now() < until) {
    }
    return {"next", 0.0f, false, false, {}};
  }
  std::unique_ptr<environment> clone() const override {
    return std::make_unique<thread_recording_env>(*this);
  }
  std::string id() const override { return "test:threads"; }
  std::thread::id stepped_by;
};

std::string obs_of(std::uint64_t seed, int t) {
  return std::string("seed=") + std::to_string(seed) + " t=" + std::to_string(t);
}

std::vector<std::string> random_actions(std::mt19937& rng, std::size_t n) {
  std::vector<std::string> out(n);
  for (auto& a : out) a = std::to_string(rng() % 1000);
  return out;
}

// Everything a run produced, for comparing runs.
struct trace {
  std::vector<std::string> observations;
  std::vector<float> rewards;
  std::vector<int> flags;
  std::vector<xplor::env::info_map> infos;
  bool operator==(const trace&) const = default;
};

trace run_vector(int threads, autoreset_mode mode, int envs, int steps, std::uint64_t seed) {
  vector_env v = vector_env::of(counter_env(), envs, {mode, threads});
  trace t;
  auto r = v.reset(seed);
  t.observations = r.observations;
  std::mt19937 rng(7);
  for (int s = 0; s < steps; ++s) {
    auto out = v.step(random_actions(rng, v.size()));
    for (std::size_t i = 0; i < v.size(); ++i) {
      t.observations.push_back(out.observations[i]);
      t.rewards.push_back(out.rewards[i]);
      t.flags.push_back(out.terminated[i] * 2 + out.truncated[i]);
      t.infos.push_back(out.infos[i]);
    }
  }
  return t;
}

}  // namespace

TEST_CASE("vector_env: reset gives sub-environment i the seed s + i", "[env][vector]") {
  vector_env v = vector_env::of(counter_env(3), 4);
  auto r = v.reset(100);
  REQUIRE(r.observations ==
          std::vector<std::string>{obs_of(100, 0), obs_of(101, 0), obs_of(102, 0), obs_of(103, 0)});
  REQUIRE(r.infos[2].at("k") == "3");
  // Later episodes: a fixed mix, distinct from the first seeds and from each other.
  REQUIRE(xplor::env::episode_seed(100, 2, 0) == 102);
  REQUIRE(xplor::env::episode_seed(100, 2, 1) == xplor::env::episode_seed(100, 2, 1));
  REQUIRE(xplor::env::episode_seed(100, 2, 1) != xplor::env::episode_seed(100, 2, 2));
  REQUIRE(xplor::env::episode_seed(100, 2, 1) != xplor::env::episode_seed(100, 3, 1));
  // A second reset restarts the episode counters: same seeds again.
  v.step(std::vector<std::string>(4, "x"));
  REQUIRE(v.reset(100).observations == r.observations);
}

TEST_CASE("vector_env: same_step autoreset returns the new episode and final_observation", "[env][vector]") {
  vector_env v = vector_env::of(counter_env(2), 2);  // same_step is the default
  REQUIRE(v.options().autoreset == autoreset_mode::same_step);
  v.reset(10);
  auto s1 = v.step(std::vector<std::string>{"a", "b"});
  REQUIRE(s1.observations == std::vector<std::string>{"seed=10 t=1 a=a", "seed=11 t=1 a=b"});
  REQUIRE(s1.rewards == std::vector<float>{1.0f, 1.0f});
  REQUIRE(s1.terminated == std::vector<std::uint8_t>{0, 0});
  REQUIRE(s1.infos[0].count("final_observation") == 0);

  auto s2 = v.step(std::vector<std::string>{"c", "d"});
  const std::uint64_t e0 = xplor::env::episode_seed(10, 0, 1), e1 = xplor::env::episode_seed(10, 1, 1);
  // The step's reward and flags belong to the finished episode, the observation to the new one.
  REQUIRE(s2.rewards == std::vector<float>{2.0f, 2.0f});
  REQUIRE(s2.terminated == std::vector<std::uint8_t>{1, 1});
  REQUIRE(s2.truncated == std::vector<std::uint8_t>{0, 0});
  REQUIRE(s2.observations == std::vector<std::string>{obs_of(e0, 0), obs_of(e1, 0)});
  REQUIRE(s2.infos[0].at("final_observation") == "seed=10 t=2 a=c");
  REQUIRE(s2.infos[1].at("final_observation") == "seed=11 t=2 a=d");
  REQUIRE(s2.infos[0].at("t") == "2");        // the finished step's info
  REQUIRE(s2.infos[0].at("reset.k") == "2");  // the reset's info, prefixed
  // The next step continues the new episode.
  auto s3 = v.step(std::vector<std::string>{"e", "f"});
  REQUIRE(s3.observations[0] == std::string("seed=") + std::to_string(e0) + " t=1 a=e");
  REQUIRE(s3.rewards[0] == 1.0f);
}

TEST_CASE("vector_env: next_step autoreset returns the final observation, then resets", "[env][vector]") {
  vector_env v = vector_env::of(counter_env(1), 2, {autoreset_mode::next_step, 1});
  v.reset(5);
  auto s1 = v.step(std::vector<std::string>{"a", "b"});
  REQUIRE(s1.observations == std::vector<std::string>{"seed=5 t=1 a=a", "seed=6 t=1 a=b"});
  REQUIRE(s1.terminated == std::vector<std::uint8_t>{1, 1});
  REQUIRE(s1.rewards == std::vector<float>{1.0f, 1.0f});
  REQUIRE(s1.infos[0].count("final_observation") == 0);
  // This step only resets: the actions are ignored, reward 0, not done, the reset's info.
  auto s2 = v.step(std::vector<std::string>{"ignored", "ignored"});
  REQUIRE(s2.observations == std::vector<std::string>{obs_of(xplor::env::episode_seed(5, 0, 1), 0),
                                                      obs_of(xplor::env::episode_seed(5, 1, 1), 0)});
  REQUIRE(s2.rewards == std::vector<float>{0.0f, 0.0f});
  REQUIRE(s2.terminated == std::vector<std::uint8_t>{0, 0});
  REQUIRE(s2.infos[0].at("k") == "1");
  auto s3 = v.step(std::vector<std::string>{"c", "d"});
  REQUIRE(s3.observations[0] ==
          std::string("seed=") + std::to_string(xplor::env::episode_seed(5, 0, 1)) + " t=1 a=c");
  REQUIRE(s3.terminated[0] == 1);
}

TEST_CASE("vector_env: random runs match a serial reference in both autoreset modes", "[env][vector]") {
  for (auto mode : {autoreset_mode::same_step, autoreset_mode::next_step}) {
    const int n = 5, steps = 40;
    const std::uint64_t seed = 1234;
    vector_env v = vector_env::of(counter_env(), n, {mode, 1});
    std::vector<counter_env> ref(n);
    std::vector<std::uint64_t> episode(n, 0);
    std::vector<int> pending(n, 0);
    auto r = v.reset(seed);
    for (int i = 0; i < n; ++i) REQUIRE(r.observations[i] == ref[i].reset(seed + i).observation);
    std::mt19937 rng(99);
    for (int s = 0; s < steps; ++s) {
      const auto actions = random_actions(rng, n);
      auto out = v.step(actions);
      for (int i = 0; i < n; ++i) {
        if (pending[i]) {
          pending[i] = 0;
          auto rr = ref[i].reset(xplor::env::episode_seed(seed, i, ++episode[i]));
          REQUIRE(out.observations[i] == rr.observation);
          REQUIRE(out.rewards[i] == 0.0f);
          continue;
        }
        auto sr = ref[i].step(actions[i]);
        REQUIRE(out.rewards[i] == sr.reward);
        REQUIRE(static_cast<bool>(out.terminated[i]) == sr.terminated);
        if (sr.terminated && mode == autoreset_mode::same_step) {
          REQUIRE(out.infos[i].at("final_observation") == sr.observation);
          REQUIRE(out.observations[i] ==
                  ref[i].reset(xplor::env::episode_seed(seed, i, ++episode[i])).observation);
        } else {
          REQUIRE(out.observations[i] == sr.observation);
          pending[i] = sr.terminated;
        }
      }
    }
  }
}

TEST_CASE("vector_env: results are identical for 1, 2 and 4 threads", "[env][vector][threads]") {
  for (auto mode : {autoreset_mode::same_step, autoreset_mode::next_step}) {
    const trace serial = run_vector(1, mode, 37, 30, 2024);
    REQUIRE(run_vector(2, mode, 37, 30, 2024) == serial);
    REQUIRE(run_vector(4, mode, 37, 30, 2024) == serial);
    REQUIRE(run_vector(4, mode, 37, 30, 2025) != serial);
  }
  // More threads than environments.
  REQUIRE(run_vector(4, autoreset_mode::same_step, 2, 10, 3) ==
          run_vector(1, autoreset_mode::same_step, 2, 10, 3));
}

TEST_CASE("vector_env: the worker threads step environments", "[env][vector][threads]") {
  vector_env v = vector_env::of(thread_recording_env(), 256, {autoreset_mode::same_step, 4});
  v.reset(0);
  std::set<std::thread::id> ids;
  for (int attempt = 0; attempt < 50 && ids.size() < 2; ++attempt) {
    v.step(std::vector<std::string>(256, "a"));
    for (std::size_t i = 0; i < v.size(); ++i)
      ids.insert(dynamic_cast<thread_recording_env&>(v.at(i)).stepped_by);
  }
  REQUIRE(ids.size() >= 2);
  // A large threaded run (many chunks per thread) still matches the serial one.
  REQUIRE(run_vector(4, autoreset_mode::same_step, 1000, 6, 77) ==
          run_vector(1, autoreset_mode::same_step, 1000, 6, 77));
}

TEST_CASE("vector_env: an exception in a worker reaches the caller", "[env][vector][threads]") {
  for (int threads : {1, 4}) {
    vector_env v = vector_env::of(counter_env(100), 16, {autoreset_mode::same_step, threads});
    v.reset(0);
    std::vector<std::string> actions(16, "x");
    actions[11] = "throw";
    REQUIRE_THROWS_WITH(v.step(actions), Catch::Contains("asked to throw"));
    // The pool is still usable afterwards.
    actions[11] = "x";
    REQUIRE(v.reset(0).observations.size() == 16);
    REQUIRE(v.step(actions).rewards[11] == 1.0f);
  }
}

TEST_CASE("vector_env: bad input is rejected with a clear message", "[env][vector]") {
  using Catch::Contains;
  vector_env v = vector_env::of(counter_env(2), 3);
  REQUIRE_THROWS_AS(v.step(std::vector<std::string>(3, "a")), xplor::error);
  REQUIRE_THROWS_WITH(v.step(std::vector<std::string>(3, "a")), Contains("step() before reset()"));
  v.reset(0);
  REQUIRE_THROWS_WITH(v.step(std::vector<std::string>(2, "a")),
                      Contains("vector_env::step") && Contains("actions has 2 elements for 3"));
  std::vector<std::unique_ptr<environment>> envs;
  envs.push_back(std::make_unique<counter_env>());
  envs.push_back(nullptr);
  REQUIRE_THROWS_WITH(vector_env(std::move(envs)), Contains("environment 1 is null"));
  REQUIRE_THROWS_WITH(vector_env(std::vector<std::unique_ptr<environment>>{}), Contains("no environments"));
  REQUIRE_THROWS_WITH(vector_env::of(counter_env(), 0), Contains("copies = 0"));
  REQUIRE_THROWS_WITH(vector_env::of(counter_env(), 2, {autoreset_mode::same_step, 0}),
                      Contains("threads = 0"));
  REQUIRE_THROWS_AS(v.at(3), std::out_of_range);
}
