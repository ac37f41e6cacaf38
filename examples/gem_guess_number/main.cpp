// gem_guess_number: a small policy learns GuessTheNumber (GEM `game:GuessTheNumber-v0-easy`: a
// secret in 1..20, 10 turns, +1 and terminated on the correct guess, 0 otherwise, truncated after
// the last turn) with REINFORCE + Return Batch Normalization (GEM arXiv 2510.01051 §3;
// docs/methods.md §5.4), once with gamma = 0.9 and once with gamma = 1.0. The GEM paper reports that
// REINFORCE learns binary search here only with gamma < 1: with gamma = 1 every successful
// episode has return 1 however many turns it took.
//
//   Policy: a table of logits theta[lo, hi, g] over the 20 guesses g, indexed by the feasible
//   interval [lo, hi] that the policy tracks from the feedback texts ("The secret number is
//   higher/lower than G."); it answers "\boxed{G}". All logits start at 0: the first policy
//   guesses uniformly over 1..20 and ignores the feedback. Guesses outside [lo, hi] are allowed
//   (they waste a turn), so the policy has to learn to use the feedback at all, and then where in
//   the interval to guess.
//   Training: each iteration collects >= 64 complete episodes from 16 environments with
//   xplor::env::reinforce_collector (finish mode: no bias towards short episodes), takes the ReBN
//   advantages (per token; one decision = one token here) and one Adam step on
//   L = -(1/T) sum_t A_t log pi(a_t | s_t) over the batch's T turns.
//   Metrics per iteration (the sampled training episodes): success rate, mean turns of the
//   successful episodes, mean discounted return G_0 under the run's gamma. At the end the greedy
//   policy (argmax) plays every secret 1..20 once.
//
// Run: gem_guess_number [--quick] [--no-plot] [--seed S] [--iterations I] [--max-turns K] [--lr LR]
//                       [--out PREFIX]
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>
#include <xplor/core/random.hpp>
#include <xplor/env/reinforce.hpp>
#include <xplor/env/tasks/guess_number.hpp>
#include <xplor/env/vector_env.hpp>
#include <xplor/model/optim.hpp>
#include "common/cli.hpp"
#include "common/gnuplot.hpp"

namespace {

struct options {
  std::uint64_t seed = 7;
  int iterations = 1000;
  int max_turns = 10;
  double lr = 0.05;
  bool plot = true;
  std::string out = "gem_guess_number";
  int envs = 16;
  int episodes = 64;
};

options parse(int argc, char** argv) {
  namespace ex = xplor::examples;
  options o;
  bool quick = false;
  CLI::App app{"REINFORCE + ReBN learning GEM's GuessTheNumber, with gamma 0.9 and 1.0.", "gem_guess_number"};
  app.add_flag("--quick", quick, "300 iterations (the CTest run; well under 10 s)");
  app.add_flag_callback(
      "--no-plot", [&o] { o.plot = false; }, "write no data or gnuplot files, do not call gnuplot");
  ex::add_integer(app, "--seed", o.seed, 0, 1000000000000000,
                  "seed of the environments and the policy's draws (default 7)")
      ->type_name("S");
  ex::add_integer(app, "--iterations", o.iterations, 1, 1000000,
                  "training iterations per gamma (default 1000)")
      ->type_name("I");
  ex::add_integer(app, "--max-turns", o.max_turns, 1, 1000,
                  "turn budget per episode (default 10, the easy level's)")
      ->type_name("K");
  ex::add_number(app, "--lr", o.lr, 1e-9, 10.0, "Adam learning rate (default 0.05)")->type_name("LR");
  app.add_option("--out", o.out, "writes PREFIX.dat, PREFIX.gp and PREFIX.png (default gem_guess_number)")
      ->type_name("PREFIX");
  ex::parse_flags(app, argc, argv);
  if (quick && app.count("--iterations") == 0) o.iterations = 300;
  return o;
}

// ---------------------------------------------------------------------------------------------
// The feasible interval, tracked from the observations (the task's exact texts).

struct interval {
  int lo = 0, hi = 0;
};

int number_after(const std::string& text, const std::string& key) {
  const auto p = text.find(key);
  if (p == std::string::npos) return -1;
  return std::atoi(text.c_str() + p + key.size());
}

/// The interval after observing `obs` (a reset prompt starts a new one).
interval update(interval s, const std::string& obs) {
  if (obs.starts_with("I am thinking of a secret integer between ")) {
    s.lo = number_after(obs, "between ");
    s.hi = number_after(obs, " and ");
  } else if (const int g = number_after(obs, "higher than "); g >= 0) {
    s.lo = std::max(s.lo, g + 1);
  } else if (const int h = number_after(obs, "lower than "); h >= 0) {
    s.hi = std::min(s.hi, h - 1);
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// The tabular softmax policy and its Adam (model/optim.hpp's AdamW without weight decay, in double).

struct table_policy {
  int low, high, n;           // guesses low..high, n of them
  std::vector<double> theta;  // (lo, hi) rows of n logits
  xplor::model::basic_adamw<double> adam;

  table_policy(int low_, int high_)
      : low(low_),
        high(high_),
        n(high_ - low_ + 1),
        theta(std::size_t(n) * n * n, 0.0),
        adam(static_cast<std::int64_t>(theta.size()), {.weight_decay = 0.0f}) {}

  std::size_t row(interval s) const {
    const int lo = std::clamp(s.lo, low, high), hi = std::clamp(s.hi, low, high);
    return (std::size_t(lo - low) * n + std::size_t(hi - low)) * n;
  }
  void probs(interval s, std::vector<double>& p) const {
    const double* z = &theta[row(s)];
    const double mx = *std::max_element(z, z + n);
    double sum = 0.0;
    p.resize(n);
    for (int g = 0; g < n; ++g) sum += (p[g] = std::exp(z[g] - mx));
    for (auto& x : p) x /= sum;
  }
  int greedy(interval s) const {
    const double* z = &theta[row(s)];
    return low + int(std::max_element(z, z + n) - z);
  }
};

std::string boxed(int g) {
  std::string s = "\\boxed{";
  s += std::to_string(g);
  s += "}";
  return s;
}

int parse_boxed(const std::string& action) { return number_after(action, "\\boxed{"); }

/// The batched policy for the collector: tracks one interval per environment and samples a guess
/// with Philox (seed, stream (env, iteration), draw = call), so runs repeat exactly.
struct sampling_policy {
  const table_policy* table;
  std::uint64_t seed;
  std::uint32_t iteration;
  std::vector<interval> state;
  std::uint64_t call = 0;
  std::vector<double> p;
  std::vector<std::string> operator()(std::span<const std::string> observations) {
    state.resize(observations.size());
    std::vector<std::string> actions(observations.size());
    for (std::size_t i = 0; i < observations.size(); ++i) {
      state[i] = update(state[i], observations[i]);
      table->probs(state[i], p);
      xplor::philox_stream gen(seed, xplor::stream_id(static_cast<std::uint32_t>(i), iteration), call);
      const double u = gen.uniform_double();
      int g = table->n - 1;
      double c = 0.0;
      for (int k = 0; k < table->n; ++k)
        if (u < (c += p[k])) {
          g = k;
          break;
        }
      actions[i] = boxed(table->low + g);
    }
    ++call;
    return actions;
  }
};

struct iteration_stats {
  double success = 0, turns = 0, ret = 0;
};

struct run_result {
  float gamma;
  std::vector<iteration_stats> curve;
  double greedy_success = 0, greedy_turns = 0;
  int greedy_max_turns = 0;
};

run_result train(const options& o, float gamma) {
  xplor::env::guess_number_options level = xplor::env::guess_number_level("easy");  // 1..20, 10 turns
  level.max_turns = o.max_turns;
  const xplor::env::guess_number prototype(level);
  const auto& go = prototype.options();
  auto envs = xplor::env::vector_env::of(prototype, o.envs);
  xplor::env::reinforce_options ro;
  ro.episodes = o.episodes;
  ro.gamma = gamma;
  ro.incomplete = xplor::env::incomplete_episodes::finish;
  xplor::env::reinforce_collector collector(envs, ro);
  table_policy table(go.low, go.high);
  run_result result{gamma, {}, 0, 0, 0};
  std::vector<double> grad(table.theta.size()), p;
  for (int it = 0; it < o.iterations; ++it) {
    sampling_policy policy{&table, o.seed, static_cast<std::uint32_t>(it), {}, 0, {}};
    const auto batch = collector.collect(policy, o.seed * 1000003ull + std::uint64_t(it) * 1009ull);
    // Metrics.
    iteration_stats s;
    double successes = 0, turns = 0;
    for (std::int64_t e = 0; e < batch.num_episodes(); ++e) {
      if (batch.episode_end(e).terminated) {
        successes += 1;
        turns += double(batch.episode_length(e));
      }
      s.ret += batch.returns[batch.episode_offsets[e]];
    }
    s.success = successes / double(batch.num_episodes());
    s.turns = successes > 0 ? turns / successes : 0.0;
    s.ret /= double(batch.num_episodes());
    result.curve.push_back(s);
    // Per-token advantages: one decision (the guess) per turn, i.e. one token.
    const std::vector<std::int64_t> tokens(batch.transitions.size(), 1);
    const auto adv = batch.token_advantages(tokens);
    // Gradient of L = -(1/T) sum_t A_t log pi(a_t | s_t): dL/dz = -(A/T) (onehot(a) - pi(s)).
    std::fill(grad.begin(), grad.end(), 0.0);
    const double inv_t = 1.0 / double(batch.num_transitions());
    for (std::int64_t e = 0; e < batch.num_episodes(); ++e) {
      interval st;
      for (auto k = batch.episode_offsets[e]; k < batch.episode_offsets[e + 1]; ++k) {
        const auto& tr = batch.transitions[k];
        st = update(st, tr.observation);
        table.probs(st, p);
        const int a = parse_boxed(tr.action) - table.low;
        const std::size_t r = table.row(st);
        for (int g = 0; g < table.n; ++g)
          grad[r + g] -= double(adv[k]) * inv_t * ((g == a ? 1.0 : 0.0) - p[g]);
      }
    }
    table.adam.step(table.theta, grad, o.lr);
  }
  // The greedy policy on every secret: replay the game's feedback rules directly.
  int total_turns = 0, solved = 0;
  for (int secret = go.low; secret <= go.high; ++secret) {
    interval st{go.low, go.high};
    for (int t = 1; t <= go.max_turns; ++t) {
      const int g = table.greedy(st);
      if (g == secret) {
        ++solved;
        total_turns += t;
        result.greedy_max_turns = std::max(result.greedy_max_turns, t);
        break;
      }
      if (g < secret) st.lo = std::max(st.lo, g + 1);
      if (g > secret) st.hi = std::min(st.hi, g - 1);
    }
  }
  const int n = go.high - go.low + 1;
  result.greedy_success = double(solved) / n;
  result.greedy_turns = solved > 0 ? double(total_turns) / solved : 0.0;
  return result;
}

/// The smallest mean number of turns over a uniform secret in 1..n (an optimal binary search
/// tree with equal weights): cost(n) = n + cost(left) + cost(right), balanced split.
double optimal_mean_turns(int n) {
  std::vector<double> total(std::size_t(n) + 1, 0.0);  // total turns over all secrets
  for (int k = 1; k <= n; ++k) {
    double best = 1e300;
    for (int r = 0; r < k; ++r) best = std::min(best, k + total[r] + total[k - 1 - r]);
    total[k] = best;
  }
  return total[n] / n;
}

iteration_stats window_mean(const std::vector<iteration_stats>& c, int end, int width) {
  iteration_stats s;
  const int begin = std::max(0, end - width);
  double w = 0, turns_w = 0;
  for (int i = begin; i < end; ++i) {
    s.success += c[i].success;
    s.ret += c[i].ret;
    if (c[i].success > 0) {
      s.turns += c[i].turns;
      turns_w += 1;
    }
    w += 1;
  }
  s.success /= w;
  s.ret /= w;
  s.turns = turns_w > 0 ? s.turns / turns_w : 0.0;
  return s;
}

bool write_plot(const options& o, const std::vector<run_result>& runs, double optimum) {
  const std::string dat = o.out + ".dat", gp = o.out + ".gp", png = o.out + ".png";
  FILE* f = std::fopen(dat.c_str(), "w");
  if (f == nullptr) return false;
  for (const auto& r : runs) {
    std::fprintf(f,
                 "# gamma = %.2f\n# iteration success mean_turns_success mean_return window10_success "
                 "window10_turns\n",
                 double(r.gamma));
    for (int i = 0; i < int(r.curve.size()); ++i) {
      const auto w = window_mean(r.curve, i + 1, 10);
      std::fprintf(f, "%d %.6f %.6f %.6f %.6f %.6f\n", i, r.curve[i].success, r.curve[i].turns,
                   r.curve[i].ret, w.success, w.turns);
    }
    std::fprintf(f, "\n\n");
  }
  std::fclose(f);
  f = std::fopen(gp.c_str(), "w");
  if (f == nullptr) return false;
  std::fprintf(f,
               "set terminal pngcairo size 1200,480 font ',10'\nset output '%s'\n"
               "set multiplot layout 1,2 title 'GuessTheNumber 1..20, %d turns: REINFORCE + ReBN, "
               "%d episodes per iteration, Adam lr %g, seed %llu (thin: per iteration, thick: mean of 10)'\n"
               "set grid\nset xlabel 'iteration'\nset key bottom right\n"
               "set title 'success rate (sampled episodes)'\nset yrange [0:1.05]\n"
               "plot '%s' index 0 using 1:2 with lines lc 1 lw 0.5 notitle, "
               "'%s' index 0 using 1:5 with lines lc 1 lw 2.5 title 'gamma = %.1f', "
               "'%s' index 1 using 1:2 with lines lc 2 lw 0.5 notitle, "
               "'%s' index 1 using 1:5 with lines lc 2 lw 2.5 title 'gamma = %.1f'\n"
               "set title 'mean turns of the successful episodes'\nset yrange [0:*]\nset key top right\n"
               "plot '%s' index 0 using 1:3 with lines lc 1 lw 0.5 notitle, "
               "'%s' index 0 using 1:6 with lines lc 1 lw 2.5 title 'gamma = %.1f', "
               "'%s' index 1 using 1:3 with lines lc 2 lw 0.5 notitle, "
               "'%s' index 1 using 1:6 with lines lc 2 lw 2.5 title 'gamma = %.1f', "
               "%.4f with lines lc rgb 'black' dt 2 lw 1.5 title 'binary search (optimal mean %.2f)'\n"
               "unset multiplot\n",
               png.c_str(), o.max_turns, o.episodes, o.lr, static_cast<unsigned long long>(o.seed),
               dat.c_str(), dat.c_str(), double(runs[0].gamma), dat.c_str(), dat.c_str(),
               double(runs[1].gamma), dat.c_str(), dat.c_str(), double(runs[0].gamma), dat.c_str(),
               dat.c_str(), double(runs[1].gamma), optimum, optimum);
  std::fclose(f);
  return xplor::examples::render_plot(gp, png, dat);
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  xplor::env::guess_number_options go = xplor::env::guess_number_level("easy");
  go.max_turns = o.max_turns;
  const double optimum = optimal_mean_turns(go.high - go.low + 1);
  std::printf(
      "GuessTheNumber %d..%d, %d turns, reward 1 only for the correct guess. REINFORCE + ReBN, %d episodes "
      "per\niteration from %d environments, Adam lr %g, %d iterations, seed %llu. Binary search needs at "
      "most "
      "5 turns,\n%.2f on average.\n\n",
      go.low, go.high, go.max_turns, o.episodes, o.envs, o.lr, o.iterations,
      static_cast<unsigned long long>(o.seed), optimum);
  std::vector<run_result> runs;
  for (const float gamma : {0.9f, 1.0f}) runs.push_back(train(o, gamma));

  std::printf("sampled training episodes, mean over the 10 iterations up to each milestone\n");
  std::printf("%9s | %-29s | %-29s\n", "", "gamma = 0.9", "gamma = 1.0");
  std::printf("%9s | %8s %9s %10s | %8s %9s %10s\n", "iteration", "success", "turns", "return G0", "success",
              "turns", "return G0");
  std::vector<int> milestones{1};
  for (int frac : {5, 10, 20, 40, 60, 80, 100}) milestones.push_back(std::max(1, o.iterations * frac / 100));
  milestones.erase(std::unique(milestones.begin(), milestones.end()), milestones.end());
  for (int m : milestones) {
    const auto a = window_mean(runs[0].curve, m, 10), b = window_mean(runs[1].curve, m, 10);
    std::printf("%9d | %8.3f %9.2f %10.3f | %8.3f %9.2f %10.3f\n", m, a.success, a.turns, a.ret, b.success,
                b.turns, b.ret);
  }
  std::printf("\nfinal greedy policy (argmax), every secret %d..%d once:\n", go.low, go.high);
  std::printf("%9s | %8s %10s %9s\n", "gamma", "success", "mean turns", "max turns");
  for (const auto& r : runs)
    std::printf("%9.1f | %8.3f %10.2f %9d\n", double(r.gamma), r.greedy_success, r.greedy_turns,
                r.greedy_max_turns);
  std::printf("%9s | %8.3f %10.2f %9d\n", "bin.search", 1.0, optimum, 5);
  if (o.plot && !write_plot(o, runs, optimum)) {
    std::fprintf(stderr, "gem_guess_number: could not write the plot files\n");
    return 1;
  }
  return 0;
}
