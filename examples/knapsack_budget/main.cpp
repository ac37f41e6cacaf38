// knapsack_budget: how many prompts of a GRPO step get a non-zero gradient when the same rollout
// budget is spread uniformly or by Knapsack RL (arXiv 2509.25849).
//
// A population of tasks has Beta-distributed success rates p (several difficulty mixes). A GRPO
// group of N rollouts gives its prompt a non-zero gradient only when its 0/1 rewards are not all
// equal. For each mix the program simulates one step under
//   uniform          N = budget-per-task for every prompt,
//   knapsack oracle  allocate_rollouts on the true p,
//   knapsack est.    allocate_rollouts on p_hat from a previous step's 8 rollouts (success_tracker),
//   reference est.   the same estimates with reference_compat (the code's fallback to p_hat = 0),
// all with the same total budget, and prints the fraction of prompts (and of rollouts) with a
// non-zero gradient and its ratio to uniform. Every draw comes from a Philox stream keyed by
// (seed, task, purpose), so a run is reproducible on any machine.
//
// Run: knapsack_budget [--tasks M] [--budget-per-task N] [--n-min A] [--n-max B] [--seed S]
//                      [--out PREFIX] [--no-plot]
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>
#include <xplor/budget/knapsack.hpp>
#include <xplor/budget/success_tracker.hpp>
#include <xplor/core/random.hpp>
#include "common/cli.hpp"
#include "common/gnuplot.hpp"

namespace {

namespace kb = xplor::budget;

struct options {
  int tasks = 20000;
  int budget_per_task = 8;
  int n_min = 2, n_max = 128;
  std::uint64_t seed = 2509;
  std::string out = "knapsack_budget";
  bool plot = true;
};

options parse(int argc, char** argv) {
  namespace ex = xplor::examples;
  options o;
  CLI::App app{
      "Uniform against Knapsack RL rollout budgets: the fraction of prompts with a non-zero GRPO gradient.",
      "knapsack_budget"};
  ex::add_integer(app, "--tasks", o.tasks, 1, 50000000, "prompts per step (default 20000)")->type_name("M");
  ex::add_integer(app, "--budget-per-task", o.budget_per_task, 0, 100000,
                  "average rollouts per prompt; total budget M * N (default 8)")
      ->type_name("N");
  ex::add_integer(app, "--n-min", o.n_min, 0, 100000, "lower bound on a prompt's rollouts (default 2)")
      ->type_name("A");
  ex::add_integer(app, "--n-max", o.n_max, 0, 100000, "upper bound on a prompt's rollouts (default 128)")
      ->type_name("B");
  ex::add_integer(app, "--seed", o.seed, 0, 2147483647, "Philox seed (default 2509)")->type_name("S");
  app.add_option("--out", o.out, "writes PREFIX.dat, PREFIX.gp and PREFIX.png (default knapsack_budget)")
      ->type_name("PREFIX");
  app.add_flag_callback(
      "--no-plot", [&o] { o.plot = false; }, "skip the plot files");
  ex::parse_flags(app, argc, argv);
  if (o.budget_per_task < o.n_min || o.budget_per_task > o.n_max)
    ex::usage_error(app, "--budget-per-task " + std::to_string(o.budget_per_task) +
                             " must lie in [--n-min, --n-max] = [" + std::to_string(o.n_min) + ", " +
                             std::to_string(o.n_max) + "]");
  return o;
}

// ------------------------------------------------------------------------------------------------
// Draws from a Philox stream: standard normal (Box-Muller in double), Gamma (Marsaglia-Tsang),
// Beta (two Gammas).

double normal(xplor::philox_stream& gen) {
  const double u1 = 1.0 - gen.uniform_double();  // (0, 1]
  const double u2 = gen.uniform_double();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

/// Gamma(shape, 1): Marsaglia & Tsang (2000) for shape >= 1; shape < 1 via Gamma(shape + 1) U^(1/shape).
double gamma(xplor::philox_stream& gen, double shape) {
  if (shape < 1.0) {
    const double u = 1.0 - gen.uniform_double();
    return gamma(gen, shape + 1.0) * std::pow(u, 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    const double x = normal(gen), t = 1.0 + c * x;
    if (t <= 0.0) continue;
    const double v = t * t * t, u = 1.0 - gen.uniform_double();
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
    if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
  }
}

double beta(xplor::philox_stream& gen, double a, double b) {
  const double x = gamma(gen, a), y = gamma(gen, b);
  return x / (x + y);
}

// Streams: (task, purpose) with purpose 0 = success rate, 1 = the estimation step's rewards,
// 2 + k = the rewards of allocation k's step. Mixes get distinct seeds.
constexpr std::uint32_t kRate = 0, kEstimate = 1, kStep = 2;

/// Draws n Bernoulli(p) rewards for task i from its own stream.
std::vector<double> rewards(std::uint64_t seed, std::uint32_t task, std::uint32_t purpose, double p, int n) {
  xplor::philox_stream gen(seed, xplor::stream_id(task, purpose));
  std::vector<double> r(static_cast<std::size_t>(n));
  for (double& x : r) x = gen.uniform_double() < p ? 1.0 : 0.0;
  return r;
}

struct step_result {
  double prompts = 0;   // fraction of prompts with a non-zero gradient (simulated)
  double rollouts = 0;  // fraction of rollouts in such groups (simulated)
  double expected = 0;  // mean of prob_nonzero_gradient(N_i, p_i)
  int most = 0;         // largest N_i
};

step_result simulate(const std::vector<double>& p, const std::vector<int>& n, std::uint64_t seed,
                     std::uint32_t purpose) {
  step_result s;
  std::int64_t prompts = 0, rollouts = 0, total = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const auto r = rewards(seed, static_cast<std::uint32_t>(i), purpose, p[i], n[i]);
    const bool mixed = std::any_of(r.begin(), r.end(), [&](double x) { return x != r.front(); });
    prompts += mixed;
    rollouts += mixed ? n[i] : 0;
    total += n[i];
    s.expected += kb::prob_nonzero_gradient(n[i], p[i]);
    s.most = std::max(s.most, n[i]);
  }
  const double m = static_cast<double>(p.size());
  s.prompts = static_cast<double>(prompts) / m;
  s.rollouts = total > 0 ? static_cast<double>(rollouts) / static_cast<double>(total) : 0.0;
  s.expected /= m;
  return s;
}

struct mix {
  const char* name;
  double a, b;
};

}  // namespace

int main(int argc, char** argv) {
  const options opt = parse(argc, argv);
  const mix mixes[] = {{"Beta(0.5,0.5)", 0.5, 0.5},
                       {"Beta(1,3)", 1.0, 3.0},
                       {"Beta(3,1)", 3.0, 1.0},
                       {"Beta(2,2)", 2.0, 2.0},
                       {"Beta(0.5,4)", 0.5, 4.0}};
  const char* names[] = {"uniform", "knapsack oracle", "knapsack est.", "reference est."};
  constexpr int kAlloc = 4;
  const std::size_t M = static_cast<std::size_t>(opt.tasks);
  const std::int64_t budget = static_cast<std::int64_t>(opt.tasks) * opt.budget_per_task;

  kb::allocation_options exact;
  exact.n_min = opt.n_min;
  exact.n_max = opt.n_max;
  kb::allocation_options reference = exact;
  reference.reference_compat = true;

  std::printf(
      "Knapsack RL budgets: %d prompts, %d rollouts each on average (total %lld), n in [%d, %d], seed %llu\n",
      opt.tasks, opt.budget_per_task, static_cast<long long>(budget), opt.n_min, opt.n_max,
      static_cast<unsigned long long>(opt.seed));
  std::printf(
      "Fraction of prompts with a non-zero GRPO gradient (simulated; ratio to uniform in brackets)\n\n");
  std::printf(
      "| mix           | uniform | knapsack oracle  | knapsack est.    | reference est.   | max N |\n");
  std::printf(
      "|---------------|--------:|-----------------:|-----------------:|-----------------:|------:|\n");

  std::vector<std::vector<step_result>> results;
  std::vector<std::vector<double>> rates;
  std::vector<std::vector<int>> oracle_alloc;
  for (std::size_t k = 0; k < std::size(mixes); ++k) {
    const mix& mx = mixes[k];
    const std::uint64_t seed = opt.seed * 1000003ull + k;
    std::vector<double> p(M);
    for (std::size_t i = 0; i < M; ++i) {
      xplor::philox_stream gen(seed, xplor::stream_id(static_cast<std::uint32_t>(i), kRate));
      p[i] = beta(gen, mx.a, mx.b);
    }
    // The previous step: 8 rollouts per prompt feed the tracker.
    kb::success_tracker tracker;
    std::vector<std::int64_t> ids(M);
    for (std::size_t i = 0; i < M; ++i) {
      ids[i] = static_cast<std::int64_t>(i);
      tracker.record(ids[i], rewards(seed, static_cast<std::uint32_t>(i), kEstimate, p[i], 8));
    }
    std::vector<std::vector<int>> alloc(kAlloc);
    alloc[0].assign(M, opt.budget_per_task);
    alloc[1] = kb::allocate_rollouts(p, budget, exact);
    alloc[2] = tracker.allocate(ids, budget, exact);
    alloc[3] = tracker.allocate(ids, budget, reference);
    std::vector<step_result> row;
    for (int a = 0; a < kAlloc; ++a)
      row.push_back(simulate(p, alloc[static_cast<std::size_t>(a)], seed, kStep + a));
    std::printf("| %-13s | %6.1f%% |", mx.name, 100.0 * row[0].prompts);
    for (int a = 1; a < kAlloc; ++a)
      std::printf(" %6.1f%% (%.2fx) |", 100.0 * row[static_cast<std::size_t>(a)].prompts,
                  row[static_cast<std::size_t>(a)].prompts / row[0].prompts);
    std::printf(" %5d |\n", row[1].most);
    results.push_back(row);
    rates.push_back(p);
    oracle_alloc.push_back(alloc[1]);
  }

  std::printf("\nFraction of rollouts in groups with a non-zero gradient (the sample-level ratio)\n\n");
  std::printf("| mix           | uniform | knapsack oracle  | knapsack est.    | reference est.   |\n");
  std::printf("|---------------|--------:|-----------------:|-----------------:|-----------------:|\n");
  for (std::size_t k = 0; k < results.size(); ++k) {
    const auto& row = results[k];
    std::printf("| %-13s | %6.1f%% |", mixes[k].name, 100.0 * row[0].rollouts);
    for (int a = 1; a < kAlloc; ++a)
      std::printf(" %6.1f%% (%.2fx) |", 100.0 * row[static_cast<std::size_t>(a)].rollouts,
                  row[static_cast<std::size_t>(a)].rollouts / row[0].rollouts);
    std::printf("\n");
  }
  std::printf("\nExpected prompt fractions (mean of prob_nonzero_gradient, no sampling noise):");
  for (std::size_t k = 0; k < results.size(); ++k) {
    std::printf("\n  %-13s", mixes[k].name);
    for (int a = 0; a < kAlloc; ++a)
      std::printf("  %s %.1f%%", names[a], 100.0 * results[k][static_cast<std::size_t>(a)].expected);
  }
  std::printf("\n");

  if (!opt.plot) return 0;
  // Plot data: one block per panel. Left: prompt fractions per mix and allocation. Right: the
  // oracle allocation N against p for the first mix.
  const std::string dat = opt.out + ".dat", gp = opt.out + ".gp", png = opt.out + ".png";
  std::FILE* f = std::fopen(dat.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "knapsack_budget: cannot write %s\n", dat.c_str());
    return 1;
  }
  std::fprintf(
      f,
      "# mix, then uniform knapsack_oracle knapsack_est reference_est as fractions of prompts (2-5) and"
      " of rollouts (6-9) with a non-zero gradient\n");
  for (std::size_t k = 0; k < results.size(); ++k) {
    std::fprintf(f, "\"%s\"", mixes[k].name);
    for (int a = 0; a < kAlloc; ++a)
      std::fprintf(f, " %.5f", results[k][static_cast<std::size_t>(a)].prompts);
    for (int a = 0; a < kAlloc; ++a)
      std::fprintf(f, " %.5f", results[k][static_cast<std::size_t>(a)].rollouts);
    std::fprintf(f, "\n");
  }
  std::fprintf(f, "\n\n# p N (knapsack oracle, %s)\n", mixes[0].name);
  const std::size_t shown = std::min<std::size_t>(M, 4000);
  for (std::size_t i = 0; i < shown; ++i) std::fprintf(f, "%.5f %d\n", rates[0][i], oracle_alloc[0][i]);
  std::fclose(f);
  std::FILE* g = std::fopen(gp.c_str(), "w");
  if (g == nullptr) {
    std::fprintf(stderr, "knapsack_budget: cannot write %s\n", gp.c_str());
    return 1;
  }
  std::fprintf(
      g,
      "set terminal pngcairo size 1500,480 font ',10'\nset output '%s'\nset multiplot layout 1,3\n"
      "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.8 border -1\n"
      "set yrange [0:1.3]\nset xtics font ',8'\nset ytics 0,0.2,1\nset grid ytics\nset key top center "
      "horizontal maxrows 2 font ',9'\n"
      "set title 'Prompts with a non-zero gradient (%d rollouts/prompt)'\nset ylabel 'fraction of prompts'\n"
      "plot '%s' index 0 using 2:xtic(1) title 'uniform', '' index 0 using 3 title 'knapsack (true p)', "
      "'' index 0 using 4 title 'knapsack (p from 8 rollouts)', '' index 0 using 5 title 'reference code'\n"
      "set title 'Rollouts in groups with a non-zero gradient'\nset ylabel 'fraction of rollouts'\n"
      "plot '%s' index 0 using 6:xtic(1) title 'uniform', '' index 0 using 7 title 'knapsack (true p)', "
      "'' index 0 using 8 title 'knapsack (p from 8 rollouts)', '' index 0 using 9 title 'reference code'\n"
      "unset style\nset style data points\nset autoscale y\nset ytics autofreq\nset xrange [0:1]\n"
      "set title 'Knapsack allocation (true p), %s'\nset xlabel 'success rate p'\nset ylabel 'rollouts N'\n"
      "set logscale y 2\nunset key\nplot '%s' index 1 using 1:2 with points pt 7 ps 0.3\n"
      "unset multiplot\n",
      png.c_str(), opt.budget_per_task, dat.c_str(), dat.c_str(), mixes[0].name, dat.c_str());
  std::fclose(g);
  return xplor::examples::render_plot(gp, png, dat) ? 0 : 1;
}
