// brorl_bandit: the bandit simulator of BroRL (arXiv 2510.01180, §4.1; docs/methods.md §1.3) at a
// vocabulary that runs in seconds on a CPU.
//
//   V tokens, C of them correct (reward +1), the rest wrong (-1). Logits z start at 0 ("uniform")
//   or seeded (3 on correct tokens, 5 on one wrong anchor token). Each step draws N tokens from
//   softmax(z) with Philox streams (draw j of step t: stream (0, j), block t), centres the
//   rewards on their mean b, and takes one AdamW step (lr 1e-3, torch.optim.AdamW's defaults
//   otherwise, weight decay 0.01 included) on the surrogate L = -(1/N) sum_j r~_j p_{t_j}.
//   Every step records the correct mass Q_pos, the three Theorem-1 terms
//   (xplor::sample::mass_balance over the distinct drawn tokens, with the centred rewards
//   R_c = 1 - b, R_w = -1 - b the step uses), the actual change of Q_pos, and how much of it
//   came from moving tokens that were not drawn this step.
//
// Run: brorl_bandit [--quick] [--no-plot] [--seed S] [--vocab V] [--correct C] [--steps T]
//                   [--ns 4,16,512,4096] [--start uniform|seeded|both] [--lr LR] [--weight-decay W]
//                   [--out PREFIX]
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>
#include <xplor/core/random.hpp>
#include <xplor/model/optim.hpp>
#include <xplor/sample/brorl.hpp>
#include "common/cli.hpp"
#include "common/gnuplot.hpp"

namespace {

struct options {
  std::uint64_t seed = 2510;
  int vocab = 12800;
  int correct = -1;  // -1: vocab * 10000 / 128000
  int steps = 1000;
  std::vector<int> ns{4, 16, 512, 4096};
  std::vector<bool> starts{false, true};  // seeded?
  double lr = 1e-3;
  double weight_decay = 0.01;  // torch.optim.AdamW's default; the paper does not give one
  bool plot = true;
  std::string out = "brorl_bandit";
};

options parse(int argc, char** argv) {
  namespace ex = xplor::examples;
  options o;
  bool quick = false, seeded = false;
  std::string start = "both";
  CLI::App app{"BroRL's bandit simulator: the correct-mass change as the number of rollouts grows.",
               "brorl_bandit"};
  app.add_flag("--quick", quick, "V = 1280, 200 steps (the CTest run)");
  app.add_flag_callback(
      "--no-plot", [&o] { o.plot = false; }, "write no data or gnuplot files, do not call gnuplot");
  ex::add_integer(app, "--seed", o.seed, 0, 100000000, "Philox seed (default 2510)")->type_name("S");
  ex::add_integer(app, "--vocab", o.vocab, 2, 100000000,
                  "vocabulary size (default 12800; the paper uses 128000)")
      ->type_name("V");
  ex::add_integer(app, "--correct", o.correct, 1, 100000000,
                  "correct tokens (default V * 10000 / 128000, the paper's ratio)")
      ->type_name("C");
  ex::add_integer(app, "--steps", o.steps, 1, 100000000, "AdamW steps per run (default 1000, as the paper)")
      ->type_name("T");
  ex::add_integer_list(app, "--ns", o.ns, 1, 100000000,
                       "draws per step, comma-separated (default 4,16,512,4096)");
  auto* start_flag = app.add_option("--start", start,
                                    "uniform (z = 0), seeded (z = 3 on correct tokens, 5 on one wrong anchor "
                                    "token) or both (default)")
                         ->type_name("S")
                         ->check(CLI::IsMember({"uniform", "seeded", "both"}));
  app.add_flag("--seeded", seeded, "same as --start seeded")->excludes(start_flag);
  ex::add_number(app, "--lr", o.lr, 0.0, HUGE_VAL, "AdamW learning rate (default 1e-3)",
                 /*exclusive_lo=*/true)
      ->type_name("LR");
  ex::add_number(app, "--weight-decay", o.weight_decay, 0.0, 1e6,
                 "AdamW decoupled weight decay (default 0.01, torch's default)")
      ->type_name("W");
  app.add_option("--out", o.out, "writes PREFIX.dat, PREFIX.gp and PREFIX.png (default brorl_bandit)")
      ->type_name("PREFIX");
  ex::parse_flags(app, argc, argv);
  if (seeded) start = "seeded";
  o.starts = start == "uniform"  ? std::vector<bool>{false}
             : start == "seeded" ? std::vector<bool>{true}
                                 : std::vector<bool>{false, true};
  if (quick) {
    if (app.count("--vocab") == 0) o.vocab = 1280;
    if (app.count("--steps") == 0) o.steps = 200;
  }
  if (o.correct < 0) o.correct = std::max(1, static_cast<int>(std::int64_t{o.vocab} * 10000 / 128000));
  if (o.correct >= o.vocab)
    ex::usage_error(app, "--correct " + std::to_string(o.correct) + " must be below --vocab " +
                             std::to_string(o.vocab) + " (the anchor is a wrong token)");
  return o;
}

// ---------------------------------------------------------------------------------------------
// The simulation

/// One run (one start, one N), per step t.
struct run_result {
  bool seeded = false;
  int n = 0;
  std::vector<double> q_pos;                             // [T + 1] Q_pos before step t; last: final
  std::vector<double> dq;                                // [T] change of Q_pos by the AdamW step
  std::vector<double> dq_undrawn;                        // [T] the same, moving only undrawn tokens
  std::vector<xplor::sample::mass_balance_terms> terms;  // [T] Theorem 1 at the step's draws
  std::vector<std::uint8_t> mixed;                       // [T] rewards not all equal
};

/// softmax of z in double.
void softmax(const std::vector<double>& z, std::vector<double>& p) {
  const double m = *std::max_element(z.begin(), z.end());
  double s = 0.0;
  for (std::size_t k = 0; k < z.size(); ++k) s += (p[k] = std::exp(z[k] - m));
  for (double& x : p) x /= s;
}

run_result simulate(const options& o, bool seeded, int n) {
  const auto v = static_cast<std::size_t>(o.vocab);
  const auto c = static_cast<std::size_t>(o.correct);  // tokens [0, C) are correct
  std::vector<std::uint8_t> correct(v, 0), drawn(v);
  std::fill(correct.begin(), correct.begin() + static_cast<std::ptrdiff_t>(c), std::uint8_t{1});
  std::vector<double> z(v, 0.0), p(v), grad(v), w(v), z_before(v), dz(v), dz_undrawn(v);
  // torch.optim.AdamW's betas (0.9, 0.999) and eps 1e-8 (adamw_options' defaults), decoupled weight
  // decay on every logit; in double, as the rest of the simulation.
  xplor::model::basic_adamw<double> adamw(static_cast<std::int64_t>(v),
                                          {.weight_decay = static_cast<float>(o.weight_decay)});
  if (seeded) {
    std::fill(z.begin(), z.begin() + static_cast<std::ptrdiff_t>(c), 3.0);
    z[c] = 5.0;  // the anchor: the first wrong token
  }
  std::vector<float> weights(v);
  std::vector<double> cdf(v);
  std::vector<std::int64_t> tokens(static_cast<std::size_t>(n));
  const auto mass = [&](const std::vector<double>& prob) {
    double q = 0.0;
    for (std::size_t k = 0; k < c; ++k) q += prob[k];
    return q;
  };

  run_result r;
  r.seeded = seeded;
  r.n = n;
  softmax(z, p);
  for (int t = 0; t < o.steps; ++t) {
    const double q = mass(p);
    r.q_pos.push_back(q);

    // N draws by inverse CDF: the running double sum over float weights of
    // xplor::sample_categorical, searched by bisection (N log V instead of N V per step).
    double running = 0.0;
    for (std::size_t k = 0; k < v; ++k) {
      weights[k] = static_cast<float>(p[k]);
      running += weights[k];
      cdf[k] = running;
    }
    for (int j = 0; j < n; ++j) {
      xplor::philox_stream gen(o.seed, xplor::stream_id(0, static_cast<std::uint32_t>(j)),
                               static_cast<std::uint64_t>(t));
      const double target = gen.uniform_double() * running;
      auto it = std::upper_bound(cdf.begin(), cdf.end(), target);                   // first sum > target
      if (it == cdf.end()) it = std::lower_bound(cdf.begin(), cdf.end(), running);  // rounding at the top
      tokens[static_cast<std::size_t>(j)] = it - cdf.begin();
      if (t == 0) {  // the bisection must reproduce xplor::sample_categorical draw for draw
        xplor::philox_stream again(o.seed, xplor::stream_id(0, static_cast<std::uint32_t>(j)), 0);
        if (xplor::sample_categorical(weights, again) != tokens[static_cast<std::size_t>(j)]) {
          std::fprintf(stderr, "brorl_bandit: draw %d differs from xplor::sample_categorical\n", j);
          std::exit(1);
        }
      }
    }

    // Centred rewards r~_j = R_j - b; w_k = sum of r~_j over the draws of token k.
    int hits = 0;
    for (auto k : tokens) hits += correct[static_cast<std::size_t>(k)];
    const double b = (2.0 * hits - n) / n;
    r.mixed.push_back(hits != 0 && hits != n);
    std::fill(drawn.begin(), drawn.end(), std::uint8_t{0});
    std::fill(w.begin(), w.end(), 0.0);
    for (auto k : tokens) {
      const auto kk = static_cast<std::size_t>(k);
      drawn[kk] = 1;
      w[kk] += (correct[kk] != 0 ? 1.0 : -1.0) - b;
    }
    r.terms.push_back(xplor::sample::mass_balance(p, correct, drawn, 1.0 - b, -1.0 - b));

    // dL/dz_k = -(1/N) p_k (w_k - W), W = sum_i w_i p_i (w is 0 off the drawn tokens).
    double big_w = 0.0;
    for (std::size_t k = 0; k < v; ++k) big_w += w[k] * p[k];
    for (std::size_t k = 0; k < v; ++k) grad[k] = -p[k] * (w[k] - big_w) / n;

    // AdamW; the step's effect is also evaluated with only the undrawn tokens moved.
    z_before = z;
    adamw.step(z, grad, o.lr);
    for (std::size_t k = 0; k < v; ++k) {
      dz[k] = z[k] - z_before[k];
      dz_undrawn[k] = drawn[k] != 0 ? 0.0 : dz[k];
    }
    r.dq_undrawn.push_back(xplor::sample::correct_mass_change(p, correct, dz_undrawn));
    softmax(z, p);
    r.dq.push_back(mass(p) - q);
  }
  r.q_pos.push_back(mass(p));
  return r;
}

// ---------------------------------------------------------------------------------------------
// Summaries, table and plot

struct summary {
  double unsampled_share = 0.0;   // mean (U_pos2 + U_neg2) / sum p^2: Lemma 2's quantity
  double coupling = 0.0;          // mean unsampled-coupling term, per unit eta/N
  double coupling_share = 0.0;    // sum |coupling| / sum (|coupling| + the two sampled terms)
  double theorem_negative = 0.0;  // fraction of steps whose Theorem-1 total is < 0
  double adam_negative = 0.0;     // fraction of steps whose AdamW step lowers Q_pos
  double undrawn_share = 0.0;     // sum dQ(undrawn tokens moved) / sum dQ
  double mixed = 0.0;             // fraction of steps with mixed rewards (dynamic sampling keeps)
};

summary summarize(const run_result& r) {
  summary s;
  const auto steps = static_cast<double>(r.dq.size());
  double abs_coupling = 0.0, all_terms = 0.0, dq = 0.0, dq_undrawn = 0.0;
  for (std::size_t t = 0; t < r.dq.size(); ++t) {
    const auto& x = r.terms[t];
    s.unsampled_share += (x.u_pos2 + x.u_neg2) / (x.a2 + x.b2 + x.u_pos2 + x.u_neg2) / steps;
    s.coupling += x.unsampled_coupling / steps;
    abs_coupling += std::abs(x.unsampled_coupling);
    all_terms += std::abs(x.unsampled_coupling) + x.sampled_correct + x.sampled_incorrect;
    s.theorem_negative += (x.total() < 0.0) / steps;
    s.adam_negative += (r.dq[t] < 0.0) / steps;
    s.mixed += r.mixed[t] / steps;
    dq += r.dq[t];
    dq_undrawn += r.dq_undrawn[t];
  }
  s.coupling_share = all_terms > 0.0 ? abs_coupling / all_terms : 0.0;
  s.undrawn_share = dq != 0.0 ? dq_undrawn / dq : 0.0;
  return s;
}

/// Lemma 2 at the start: E[U_pos2 + U_neg2] / sum p^2 after N draws from the initial distribution.
double lemma2_share_at_start(const options& o, bool seeded, int n) {
  const double c = o.correct, wrong = o.vocab - o.correct - 1;  // all but the anchor
  const double zc = seeded ? std::exp(3.0) : 1.0, za = seeded ? std::exp(5.0) : 1.0;
  const double total = c * zc + wrong + za;
  const double pc = zc / total, pw = 1.0 / total, pa = za / total;
  const auto e = [n](double x) { return xplor::sample::expected_unsampled_second_moment(x, n); };
  return (c * e(pc) + wrong * e(pw) + e(pa)) / (c * pc * pc + wrong * pw * pw + pa * pa);
}

bool write_plot(const options& o, const std::vector<run_result>& runs) {
  const std::string dat = o.out + ".dat", gp = o.out + ".gp", png = o.out + ".png";
  FILE* f = std::fopen(dat.c_str(), "w");
  if (f == nullptr) return false;
  for (const auto& r : runs) {  // one gnuplot index per run
    std::fprintf(f, "# %s start, N = %d\n# step q_pos dq coupling sampled_correct sampled_incorrect\n",
                 r.seeded ? "seeded" : "uniform", r.n);
    for (std::size_t t = 0; t < r.dq.size(); ++t)
      std::fprintf(f, "%zu %.9g %.6g %.6g %.6g %.6g\n", t, r.q_pos[t], r.dq[t], r.terms[t].unsampled_coupling,
                   r.terms[t].sampled_correct, r.terms[t].sampled_incorrect);
    std::fprintf(f, "\n\n");
  }
  // Then one index per run with window means (window = steps / 40): the coupling's share of the
  // Theorem-1 balance, sum |coupling| / sum (|coupling| + sampled terms), and the U2 share.
  const std::size_t window = std::max<std::size_t>(1, runs.front().dq.size() / 40);
  for (const auto& r : runs) {
    std::fprintf(f, "# %s start, N = %d, windows of %zu steps\n# mid_step coupling_share u2_share\n",
                 r.seeded ? "seeded" : "uniform", r.n, window);
    for (std::size_t lo = 0; lo + window <= r.dq.size(); lo += window) {
      double c = 0.0, all = 0.0, u2 = 0.0;
      for (std::size_t t = lo; t < lo + window; ++t) {
        const auto& x = r.terms[t];
        c += std::abs(x.unsampled_coupling);
        all += std::abs(x.unsampled_coupling) + x.sampled_correct + x.sampled_incorrect;
        u2 += (x.u_pos2 + x.u_neg2) / (x.a2 + x.b2 + x.u_pos2 + x.u_neg2) / double(window);
      }
      std::fprintf(f, "%g %.6g %.6g\n", double(lo) + 0.5 * double(window), all > 0.0 ? c / all : 0.0, u2);
    }
    std::fprintf(f, "\n\n");
  }
  std::fclose(f);

  f = std::fopen(gp.c_str(), "w");
  if (f == nullptr) return false;
  const auto rows = o.starts.size();
  std::fprintf(f,
               "set terminal pngcairo size 1200,%zu font ',10'\nset output '%s'\n"
               "set multiplot layout %zu,2 title 'BroRL bandit: V = %d, %d correct tokens, AdamW lr %g, "
               "weight decay %g, "
               "seed %llu'\nset grid\nset xlabel 'step'\nset key bottom right\n",
               rows * 420 + 40, png.c_str(), rows, o.vocab, o.correct, o.lr, o.weight_decay,
               static_cast<unsigned long long>(o.seed));
  for (bool seeded : o.starts) {
    const char* start = seeded ? "seeded start" : "uniform start";
    std::fprintf(f, "set title 'correct mass Q_{pos}, %s'\nset ylabel 'Q_{pos}'\nplot ", start);
    bool first = true;
    for (std::size_t i = 0; i < runs.size(); ++i) {
      if (runs[i].seeded != seeded) continue;
      std::fprintf(f, "%s'%s' index %zu using 1:2 with lines lw 2 title 'N = %d'", first ? "" : ", ",
                   dat.c_str(), i, runs[i].n);
      first = false;
    }
    std::fprintf(f,
                 "\nset title 'unsampled-coupling share of the Theorem-1 balance, %s'\n"
                 "set ylabel '|coupling| / (|coupling| + sampled terms), %zu-step windows'\n"
                 "set offsets 0, 0, graph 0.2, 0\nset key top center horizontal\nplot ",
                 start, window);
    first = true;
    for (std::size_t i = 0; i < runs.size(); ++i) {
      if (runs[i].seeded != seeded) continue;
      std::fprintf(f, "%s'%s' index %zu using 1:2 with linespoints lw 2 pt 7 ps 0.5 title 'N = %d'",
                   first ? "" : ", ", dat.c_str(), runs.size() + i, runs[i].n);
      first = false;
    }
    std::fprintf(f, "\nset offsets 0, 0, 0, 0\nset key bottom right vertical\n");
  }
  std::fprintf(f, "unset multiplot\n");
  std::fclose(f);

  return xplor::examples::render_plot(gp, png, dat);
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  constexpr int k = 4;  // pass@k
  std::printf(
      "BroRL bandit: V = %d tokens, %d correct (+1), the rest wrong (-1); %d AdamW steps, lr %g, weight "
      "decay "
      "%g, seed %llu\n",
      o.vocab, o.correct, o.steps, o.lr, o.weight_decay, static_cast<unsigned long long>(o.seed));
  std::printf(
      "Theorem-1 terms per unit eta/N over the distinct drawn tokens, centred rewards. Columns (means over "
      "steps):\n"
      "  U2 share   unsampled share of sum p^2, (U_pos2 + U_neg2) / sum p^2 (Lemma 2: E = p^2 (1-p)^N)\n"
      "  coupling   the unsampled-coupling term S_R (Q_pos U_neg2 - Q_neg U_pos2)\n"
      "  c share    sum |coupling| / sum (|coupling| + the two sampled terms)\n"
      "  T1<0       steps whose Theorem-1 total (first-order change of Q_pos) is negative\n"
      "  dQ<0       steps whose AdamW update lowers Q_pos\n"
      "  undrawn    share of the total change of Q_pos that came from moving tokens not drawn that step\n"
      "  mixed      steps whose N rewards are not all equal (dynamic sampling keeps them)\n");

  std::vector<run_result> runs;
  for (bool seeded : o.starts) {
    std::printf("\n%s start (Lemma 2 at step 0, E[U2 share]:", seeded ? "seeded" : "uniform");
    for (int n : o.ns) std::printf(" N=%d %.3f", n, lemma2_share_at_start(o, seeded, n));
    std::printf(")\n%6s %9s %11s %8s %6s %6s %8s %6s %8s %8s\n", "N", "U2 share", "coupling", "c share",
                "T1<0", "dQ<0", "undrawn", "mixed", "final Q", "pass@4");
    for (int n : o.ns) {
      runs.push_back(simulate(o, seeded, n));
      const auto& r = runs.back();
      const summary s = summarize(r);
      const double q = std::clamp(r.q_pos.back(), 0.0, 1.0);
      std::printf("%6d %9.4f %11.3e %8.4f %6.3f %6.3f %8.3f %6.3f %8.4f %8.4f\n", n, s.unsampled_share,
                  s.coupling, s.coupling_share, s.theorem_negative, s.adam_negative, s.undrawn_share, s.mixed,
                  q, xplor::sample::pass_at_k(q, k));
    }
  }
  if (o.plot && !write_plot(o, runs)) {
    std::fprintf(stderr, "brorl_bandit: could not write or plot %s.*\n", o.out.c_str());
    return 1;
  }
  return 0;
}
