#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>
#include <xplor/core/random.hpp>
#include <xplor/env/reinforce.hpp>

using namespace xplor::env;

namespace {

// The action scripts the turn: "<reward>" continues, "<reward>!" terminates, "<reward>~" truncates.
class scripted_env final : public environment {
 public:
  reset_result reset(std::uint64_t seed) override {
    turn_ = 0;
    return {"start " + std::to_string(seed), {}};
  }
  step_result step(std::string_view action) override {
    step_result r;
    std::string a(action);
    if (!a.empty() && a.back() == '!') {
      r.terminated = true;
      a.pop_back();
    } else if (!a.empty() && a.back() == '~') {
      r.truncated = true;
      a.pop_back();
    }
    r.reward = std::stof(a);
    r.observation = "turn ";
    r.observation += std::to_string(++turn_);
    return r;
  }
  std::unique_ptr<environment> clone() const override { return std::make_unique<scripted_env>(*this); }
  std::string id() const override { return "test:scripted"; }

 private:
  int turn_ = 0;
};

// A multi-turn toy guessing game: secret in [1, 6] drawn from the seed, +1 and terminated when
// guessed, truncated after 4 turns.
class toy_guess final : public environment {
 public:
  reset_result reset(std::uint64_t seed) override {
    xplor::philox_stream gen(seed, 0);
    secret_ = 1 + static_cast<int>(gen() % 6);
    turn_ = 0;
    return {"guess 1..6", {}};
  }
  step_result step(std::string_view action) override {
    step_result r;
    const int g = std::stoi(std::string(action));
    ++turn_;
    if (g == secret_) {
      r.reward = 1.0f;
      r.terminated = true;
      r.observation = "correct";
    } else {
      r.observation = g < secret_ ? "higher" : "lower";
      r.truncated = turn_ >= 4;
    }
    return r;
  }
  std::unique_ptr<environment> clone() const override { return std::make_unique<toy_guess>(*this); }
  std::string id() const override { return "test:toy_guess"; }

 private:
  int secret_ = 0, turn_ = 0;
};

// Replays a fixed list of actions (one environment).
struct replay_policy {
  std::vector<std::string> script;
  std::size_t next = 0;
  std::vector<std::string> operator()(std::span<const std::string> obs) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < obs.size(); ++i) out.push_back(script.at(next++));
    return out;
  }
};

// Random guesses from Philox, keyed by (seed, call, env index): independent of threads.
struct random_policy {
  std::uint64_t seed;
  std::uint64_t call = 0;
  std::vector<std::string> operator()(std::span<const std::string> obs) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < obs.size(); ++i) {
      xplor::philox_stream gen(seed, xplor::stream_id(static_cast<std::uint32_t>(i), 0), call);
      out.push_back(std::to_string(1 + gen() % 6));
    }
    ++call;
    return out;
  }
};

reinforce_batch worked(float gamma, bool norm_return) {
  auto envs = vector_env::of(scripted_env{}, 1);
  reinforce_options o;
  o.episodes = 2;
  o.gamma = gamma;
  o.norm_return = norm_return;
  reinforce_collector c(envs, o);
  return c.collect(replay_policy{{"0", "0", "1!", "0.5!"}}, 7);
}

}  // namespace

TEST_CASE("ReBN collector: worked numbers of docs/methods.md 5.7", "[env][collector]") {
  const auto b = worked(0.9f, true);
  REQUIRE(b.num_episodes() == 2);
  REQUIRE(b.num_transitions() == 4);
  CHECK(b.episode_offsets == std::vector<std::int64_t>{0, 3, 4});
  const double g[] = {0.81, 0.9, 1.0, 0.5};
  const double a[] = {0.040078, 0.521020, 1.055399, -1.616498};
  for (int k = 0; k < 4; ++k) {
    CHECK(b.returns[k] == Approx(g[k]).epsilon(1e-6));
    CHECK(b.advantages[k] == Approx(a[k]).epsilon(1e-5));
  }
  CHECK(b.report.batch_mean == Approx(0.8025).epsilon(1e-6));
  CHECK(b.report.batch_std == Approx(0.187133).epsilon(1e-5));
  // The recorded transitions.
  CHECK(b.transitions[0].observation == "start 7");
  CHECK(b.transitions[1].observation == "turn 1");
  CHECK(b.transitions[2].action == "1!");
  CHECK(b.transitions[2].terminated);
  CHECK_FALSE(b.transitions[1].terminated);
  CHECK(b.transitions[3].observation != "turn 3");  // the autoreset's fresh first observation
  for (int k = 0; k < 4; ++k) CHECK(b.transitions[k].env_index == 0);
  CHECK(b.transitions[1].turn == 1);
  CHECK(b.transitions[3].turn == 0);
  CHECK(b.transitions[2].episode == 0);
  CHECK(b.transitions[3].episode == 1);
  CHECK(b.episode_length(0) == 3);
  CHECK(b.episode_reward(1) == Approx(0.5));
  CHECK(b.episode_end(0).terminated);
  CHECK(b.vector_steps == 4);
  CHECK(b.discarded_transitions == 0);
}

TEST_CASE("ReBN collector: gamma = 1 on one episode gives A = 0 without NaN", "[env][collector]") {
  auto envs = vector_env::of(scripted_env{}, 1);
  reinforce_options o;
  o.episodes = 1;
  reinforce_collector c(envs, o);
  const auto b = c.collect(replay_policy{{"0", "0", "1!"}}, 0);
  REQUIRE(b.num_transitions() == 3);
  for (int k = 0; k < 3; ++k) {
    CHECK(b.returns[k] == 1.0f);
    CHECK_FALSE(std::isnan(b.advantages[k]));
    CHECK(b.advantages[k] == 0.0f);
  }
  CHECK(b.report.batch_std == 0.0);
}

TEST_CASE("ReBN collector: norm_return = false is vanilla REINFORCE (A = G)", "[env][collector]") {
  const auto b = worked(0.9f, false);
  REQUIRE(b.num_transitions() == 4);
  CHECK(b.advantages == b.returns);
  CHECK(b.advantages[0] == Approx(0.81).epsilon(1e-6));
  CHECK(b.advantages[3] == Approx(0.5).epsilon(1e-6));
}

TEST_CASE("ReBN collector: per-token advantages repeat each turn's A", "[env][collector]") {
  const auto b = worked(0.9f, true);
  const std::vector<std::int64_t> counts{2, 0, 3, 1};
  const auto tok = b.token_advantages(counts);
  REQUIRE(tok.size() == 6);
  const std::vector<float> expected{b.advantages[0], b.advantages[0], b.advantages[2],
                                    b.advantages[2], b.advantages[2], b.advantages[3]};
  CHECK(tok == expected);
  CHECK(b.token_offsets(counts) == std::vector<std::int64_t>{0, 2, 2, 5, 6});
  // Summed over a turn's tokens, the advantage is count * A.
  double sum = 0.0;
  for (int j = 2; j < 5; ++j) sum += tok[j];
  CHECK(sum == Approx(3.0 * b.advantages[2]));
}

TEST_CASE("ReBN collector: same batch for a fixed seed with 1 and 2 vector threads", "[env][collector]") {
  auto run = [](int threads, std::uint64_t seed, incomplete_episodes mode) {
    vector_options vo;
    vo.threads = threads;
    auto envs = vector_env::of(toy_guess{}, 5, vo);
    reinforce_options o;
    o.episodes = 12;
    o.gamma = 0.9f;
    o.incomplete = mode;
    reinforce_collector c(envs, o);
    return c.collect(random_policy{seed}, seed);
  };
  for (auto mode : {incomplete_episodes::discard, incomplete_episodes::finish}) {
    const auto a = run(1, 3, mode), b = run(2, 3, mode), other = run(1, 4, mode);
    REQUIRE(a.num_transitions() == b.num_transitions());
    CHECK(a.episode_offsets == b.episode_offsets);
    CHECK(a.returns == b.returns);
    CHECK(a.advantages == b.advantages);
    for (std::int64_t k = 0; k < a.num_transitions(); ++k) {
      CHECK(a.transitions[k].action == b.transitions[k].action);
      CHECK(a.transitions[k].observation == b.transitions[k].observation);
      CHECK(a.transitions[k].env_index == b.transitions[k].env_index);
    }
    CHECK(a.num_episodes() >= 12);
    bool differs = other.num_transitions() != a.num_transitions();
    for (std::int64_t k = 0; !differs && k < a.num_transitions(); ++k)
      differs = a.transitions[k].action != other.transitions[k].action;
    CHECK(differs);
    // Every episode: one environment, turns 0, 1, ..., only the last one ends it.
    for (std::int64_t e = 0; e < a.num_episodes(); ++e) {
      for (auto t = a.episode_offsets[e]; t < a.episode_offsets[e + 1]; ++t) {
        const auto& tr = a.transitions[t];
        CHECK(tr.episode == e);
        CHECK(tr.turn == t - a.episode_offsets[e]);
        CHECK(tr.env_index == a.transitions[a.episode_offsets[e]].env_index);
        const bool last = t + 1 == a.episode_offsets[e + 1];
        CHECK((tr.terminated || tr.truncated) == last);
      }
      CHECK(a.episode_length(e) <= 4);
    }
    if (mode == incomplete_episodes::finish) CHECK(a.discarded_transitions == 0);
  }
}

TEST_CASE("ReBN collector: finish keeps the episodes running at the N-th completion", "[env][collector]") {
  // Two environments: env 0 ends every turn, env 1 runs three turns. N = 2 completes on step 2
  // (env 0's second episode); env 1 is at turn 1 then.
  struct two_speed {
    std::vector<std::string> operator()(std::span<const std::string>) {
      ++call;
      return {"1!", call % 3 == 0 ? "1!" : "0"};
    }
    int call = 0;
  };
  auto envs = vector_env::of(scripted_env{}, 2);
  reinforce_options o;
  o.episodes = 2;
  reinforce_collector discard(envs, o);
  const auto d = discard.collect(two_speed{}, 0);
  CHECK(d.num_episodes() == 2);
  CHECK(d.discarded_transitions == 2);
  CHECK(d.vector_steps == 2);
  o.incomplete = incomplete_episodes::finish;
  reinforce_collector finish(envs, o);
  const auto f = finish.collect(two_speed{}, 0);
  CHECK(f.num_episodes() == 3);  // env 0 twice, env 1 once; env 0's third episode is not recorded
  CHECK(f.discarded_transitions == 0);
  CHECK(f.vector_steps == 3);
  CHECK(f.episode_length(2) == 3);
  CHECK(f.transitions.back().env_index == 1);
}

TEST_CASE("ReBN collector: the all-reduce sees (sum, sum of squares, count)", "[env][collector]") {
  auto envs = vector_env::of(scripted_env{}, 1);
  reinforce_options o;
  o.episodes = 2;
  o.gamma = 0.9f;
  int calls = 0;
  // Two identical ranks: doubling every statistic leaves mean and std unchanged.
  o.rebn.allreduce = [&](std::span<double, 3> s) {
    ++calls;
    CHECK(s[2] == 4.0);
    for (auto& v : s) v *= 2.0;
  };
  reinforce_collector c(envs, o);
  const auto b = c.collect(replay_policy{{"0", "0", "1!", "0.5!"}}, 7);
  CHECK(calls == 1);
  CHECK(b.advantages[3] == Approx(-1.616498).epsilon(1e-5));
}

TEST_CASE("ReBN collector: bad input throws xplor::error", "[env][collector]") {
  auto envs = vector_env::of(scripted_env{}, 2);
  reinforce_options o;
  o.gamma = -0.1f;
  CHECK_THROWS_AS(reinforce_collector(envs, o), xplor::error);
  o.gamma = 1.5f;
  CHECK_THROWS_AS(reinforce_collector(envs, o), xplor::error);
  o.gamma = 0.9f;
  o.episodes = 0;
  CHECK_THROWS_WITH(reinforce_collector(envs, o), Catch::Contains("episodes = 0"));
  o.episodes = 1;
  reinforce_collector c(envs, o);
  // A policy returning one action for two environments.
  CHECK_THROWS_WITH(c.collect([](std::span<const std::string>) { return std::vector<std::string>{"1!"}; }, 0),
                    Catch::Contains("returned 1 actions for 2 observations"));
  // Token counts that do not match the transitions.
  const auto b = c.collect(
      [](std::span<const std::string>) {
        return std::vector<std::string>{"1!", "1!"};
      },
      0);
  REQUIRE(b.num_transitions() == 2);
  const std::vector<std::int64_t> three{1, 1, 1}, negative{1, -1};
  CHECK_THROWS_WITH(b.token_advantages(three), Catch::Contains("token_counts has 3 elements for 2"));
  CHECK_THROWS_AS(b.token_advantages(negative), xplor::error);
  std::vector<float> out(3);
  const std::vector<std::int64_t> two{1, 1};
  CHECK_THROWS_AS(b.token_advantages(two, out), xplor::error);
  CHECK_THROWS_AS(b.episode_length(5), xplor::error);
  // Episodes that never end.
  o.max_steps = 10;
  reinforce_collector endless(envs, o);
  CHECK_THROWS_WITH(endless.collect(
                        [](std::span<const std::string>) {
                          return std::vector<std::string>{"0", "0"};
                        },
                        0),
                    Catch::Contains("max_steps = 10"));
  // next_step autoreset is not supported.
  vector_options vo;
  vo.autoreset = autoreset_mode::next_step;
  auto next = vector_env::of(scripted_env{}, 1, vo);
  CHECK_THROWS_AS(reinforce_collector(next, reinforce_options{}), xplor::error);
  // compute_advantages on hand-made data checks gamma as well.
  reinforce_batch hand;
  o.gamma = -1.0f;
  CHECK_THROWS_WITH(compute_advantages(hand, o), Catch::Contains("gamma = -1"));
}
