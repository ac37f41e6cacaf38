// bubbles_lm: Thoughtbubbles (arXiv 2510.00219) on a language-modelling toy whose tokens differ in
// difficulty, against the plain transformer and against duplicating every token, at (almost)
// equal parameters.
//
// The toy (dictionary lookup amid filler): a sequence opens with P key-value pairs, then repeats
// segments "f f+1 ? key value": two filler tokens that count upwards (easy: f+1 follows f), a query
// marker, a key from the dictionary and its value (hard: only a lookup in the context predicts it).
// Every model trains on the plain next-token loss; the validation loss is reported per kind of
// target (lookup values, filler, all).
//
// Models (4 layers, d_model 64, 4 heads unless flags say otherwise):
//   plain        the reference transformer;
//   bubble 1x    fork layers before blocks 1 and 2, stream budget = the tokens (scores and gates, no copies);
//   bubble 1.5x  the same with 1.5 streams per token;
//   bubble 2x    2 streams per token (the paper's setting);
//   duplicate    one fork layer before block 0 keeping every candidate: every token runs twice
//                through all blocks (non-adaptive parallel computation, 2x streams everywhere).
// Compute is stated as stream-layers per token (the blocks' work grows with the streams) and as
// measured training time. For the 2x model the example also shows where the copies go: copies per
// position against the plain model's loss at that position.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>
#include <xplor/bubble/model.hpp>
#include <xplor/model/optim.hpp>
#include <xplor/model/transformer.hpp>

#include "common/cli.hpp"
#include "common/gnuplot.hpp"

namespace {

namespace fs = std::filesystem;
namespace xb = xplor::bubble;
namespace xm = xplor::model;

// Vocabulary: BOS, the query marker, keys, values (digits), filler tokens (counting mod F).
constexpr std::int32_t bos = 0, query = 1, first_key = 2, n_keys = 16, first_value = first_key + n_keys,
                       n_values = 10, first_filler = first_value + n_values, n_fillers = 36,
                       vocab = first_filler + n_fillers;
enum kind : std::uint8_t { other, lookup, filler };  // what the target at a position is

struct options {
  std::string out = "bubbles_out";
  std::uint64_t seed = 1;
  int steps = 800, batch = 32, pairs = 4, segments = 8, d_model = 64, layers = 4, heads = 4, eval = 128;
  float lr = 3e-3f;
  bool plot = true;
};

options parse(int argc, char** argv) {
  namespace ex = xplor::examples;
  options o;
  bool quick = false;
  CLI::App app{"Thoughtbubbles vs the plain transformer vs duplicated tokens on a dictionary-lookup toy.",
               "bubbles_lm"};
  app.add_option("--out", o.out, "output directory (default bubbles_out)")->type_name("DIR");
  ex::add_integer(app, "--seed", o.seed, 0, 1LL << 53, "seed of data and models (default 1)")->type_name("S");
  ex::add_integer(app, "--steps", o.steps, 1, 1000000, "training steps per model (default 800)")
      ->type_name("N");
  ex::add_integer(app, "--batch", o.batch, 1, 4096, "sequences per step (default 32)")->type_name("B");
  ex::add_integer(app, "--pairs", o.pairs, 1, n_keys, "key-value pairs per sequence (default 4)")
      ->type_name("P");
  ex::add_integer(app, "--segments", o.segments, 1, 1000, "query segments per sequence (default 8)")
      ->type_name("S");
  ex::add_integer(app, "--d-model", o.d_model, 8, 4096, "model width (default 64)")->type_name("C");
  ex::add_integer(app, "--layers", o.layers, 3, 64, "blocks (default 4; forks before blocks 1 and 2)")
      ->type_name("L");
  ex::add_integer(app, "--heads", o.heads, 1, 64, "attention heads (default 4)")->type_name("H");
  ex::add_integer(app, "--eval", o.eval, 1, 100000, "validation sequences (default 128)")->type_name("N");
  ex::add_number(app, "--lr", o.lr, 0.0, HUGE_VAL, "peak learning rate (default 3e-3)", true)
      ->type_name("LR");
  app.add_flag("--quick", quick, "a tiny configuration (the test suite's); flags given with it still apply");
  app.add_flag_callback(
      "--no-plot", [&o] { o.plot = false; }, "do not call gnuplot");
  ex::parse_flags(app, argc, argv);
  if (quick) {
    const auto unset = [&app](const char* flag) { return app.count(flag) == 0; };
    if (unset("--steps")) o.steps = 4;
    if (unset("--batch")) o.batch = 2;
    if (unset("--d-model")) o.d_model = 16;
    if (unset("--segments")) o.segments = 3;
    if (unset("--eval")) o.eval = 4;
  }
  return o;
}

/// Sequences of T = 1 + 2P + 5S tokens with the kind of each position's target (the next token).
struct data {
  std::int64_t B = 0, T = 0;
  std::vector<std::int32_t> tokens, targets;
  std::vector<kind> kinds;
  xm::forward_batch view() const { return {tokens, B, T, targets, {}, {}}; }
};

data draw(const options& o, std::int64_t B, std::mt19937_64& rng) {
  data d;
  d.B = B;
  d.T = 1 + 2 * o.pairs + 5 * o.segments;
  auto pick = [&rng](std::int32_t n) {
    return static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(n));
  };
  for (std::int64_t b = 0; b < B; ++b) {
    std::vector<std::int32_t> seq{bos}, keys(n_keys), values;
    std::vector<kind> k{other};  // the kind of the token itself; shifted to targets below
    for (std::int32_t i = 0; i < n_keys; ++i) keys[static_cast<std::size_t>(i)] = i;
    std::shuffle(keys.begin(), keys.end(), rng);
    keys.resize(static_cast<std::size_t>(o.pairs));
    for (int p = 0; p < o.pairs; ++p) {
      values.push_back(pick(n_values));
      seq.insert(seq.end(), {first_key + keys[static_cast<std::size_t>(p)], first_value + values.back()});
      k.insert(k.end(), {other, other});
    }
    for (int s = 0; s < o.segments; ++s) {
      const std::int32_t f = pick(n_fillers), q = pick(o.pairs);
      seq.insert(seq.end(), {first_filler + f, first_filler + (f + 1) % n_fillers, query,
                             first_key + keys[static_cast<std::size_t>(q)],
                             first_value + values[static_cast<std::size_t>(q)]});
      k.insert(k.end(), {other, filler, other, other, lookup});
    }
    for (std::int64_t t = 0; t < d.T; ++t) {
      d.tokens.push_back(seq[static_cast<std::size_t>(t)]);
      const bool last = t + 1 == d.T;
      d.targets.push_back(last ? xm::ignore_target : seq[static_cast<std::size_t>(t + 1)]);
      d.kinds.push_back(last ? other : k[static_cast<std::size_t>(t + 1)]);
    }
  }
  return d;
}

xm::transformer_config model_config(const options& o, std::int64_t T) {
  xm::transformer_config c;
  c.vocab_size = vocab;
  c.d_model = o.d_model;
  c.n_layers = o.layers;
  c.n_heads = o.heads;
  c.d_ff = 4 * o.d_model;
  c.max_seq_len = static_cast<int>(T);
  return c;
}

struct result {
  std::string name;
  std::int64_t params = 0;
  double stream_layers = 0;  // per token, summed over blocks
  double seconds = 0;
  double loss = 0, lookup_loss = 0, filler_loss = 0, lookup_acc = 0;
  std::vector<double> token_loss;  // per validation position (-log p of its target)
  std::vector<double> copies;      // per validation position: streams in the last block (bubble models)
  std::vector<std::pair<int, double>> curve;  // (step, validation lookup loss)
};

template <class Model>
void evaluate(Model& m, const data& val, result& r, bool keep_tokens) {
  const double loss = m.forward(val.view());
  const auto logp = m.target_logprobs();
  const auto z = m.logits();
  double sum[3] = {0, 0, 0}, count[3] = {0, 0, 0}, correct = 0;
  if (keep_tokens) r.token_loss.assign(logp.size(), 0.0);
  for (std::size_t n = 0; n < logp.size(); ++n) {
    if (val.targets[n] == xm::ignore_target) continue;
    const auto kd = static_cast<std::size_t>(val.kinds[n]);
    sum[kd] -= logp[n];
    count[kd] += 1;
    if (keep_tokens) r.token_loss[n] = -logp[n];
    if (val.kinds[n] == lookup) {
      std::int32_t best = 0;
      for (std::int32_t v = 1; v < vocab; ++v)
        if (z(static_cast<std::int64_t>(n), v) > z(static_cast<std::int64_t>(n), best)) best = v;
      correct += best == val.targets[n];
    }
  }
  r.loss = loss;
  r.lookup_loss = sum[lookup] / std::max(1.0, count[lookup]);
  r.filler_loss = sum[filler] / std::max(1.0, count[filler]);
  r.lookup_acc = correct / std::max(1.0, count[lookup]);
}

template <class Model>
result train(const std::string& name, Model m, const options& o, const data& val) {
  result r;
  r.name = name;
  r.params = m.num_params();
  xm::adamw opt(m.layout(), {.lr = o.lr, .beta2 = 0.95f, .weight_decay = 0.1f});
  const xm::cosine_schedule lr{.max_lr = o.lr,
                               .min_lr = o.lr / 10,
                               .warmup_steps = std::max(1, o.steps / 50),
                               .total_steps = std::max(o.steps, o.steps / 50 + 1)};
  std::mt19937_64 rng(o.seed * 7919 + 1);  // the same training data for every model
  const auto t0 = std::chrono::steady_clock::now();
  double evals = 0;
  for (int step = 0; step < o.steps; ++step) {
    const data d = draw(o, o.batch, rng);
    m.zero_grad();
    m.forward(d.view());
    m.backward();
    xm::clip_grad_norm(m.grads(), 1.0f);
    opt.step(m.params(), m.grads(), lr(step));
    if ((step + 1) % std::max(1, o.steps / 8) == 0 || step + 1 == o.steps) {
      const auto e0 = std::chrono::steady_clock::now();
      result probe;
      evaluate(m, val, probe, false);
      r.curve.emplace_back(step + 1, probe.lookup_loss);
      evals += std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
      std::fprintf(stderr, "\r%-12s step %5d / %d  lookup loss %.3f  ", name.c_str(), step + 1, o.steps,
                   probe.lookup_loss);
    }
  }
  std::fputc('\n', stderr);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() - evals;
  evaluate(m, val, r, true);
  if constexpr (std::is_same_v<Model, xb::transformer>) {
    double total = 0;
    for (int l = 0; l < o.layers; ++l) total += double(m.streams(l));
    r.stream_layers = total / double(val.B * val.T);
    r.copies.assign(static_cast<std::size_t>(val.B * val.T), 0.0);
    for (std::int64_t b = 0; b < val.B; ++b)
      for (std::int32_t t : m.stream_tokens(o.layers - 1, b))
        r.copies[static_cast<std::size_t>(b * val.T + t)] += 1;
  } else {
    r.stream_layers = o.layers;
  }
  return r;
}

xb::bubble_config bubbles(const options& o, std::int64_t T, int percent, bool duplicate) {
  xb::bubble_config c;
  c.plan.assign(static_cast<std::size_t>(o.layers), xb::layer_kind::regular);
  if (duplicate) {
    c.plan[0] = xb::layer_kind::fork;
  } else {
    c.plan[1] = c.plan[2] = xb::layer_kind::fork;
  }
  c.block_size = T;
  c.max_block_size = T * percent / 100;
  return c;
}

double pearson(const std::vector<double>& a, const std::vector<double>& b, const std::vector<bool>& use) {
  double n = 0, ma = 0, mb = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (use[i]) n += 1, ma += a[i], mb += b[i];
  ma /= n, mb /= n;
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (use[i])
      sab += (a[i] - ma) * (b[i] - mb), saa += (a[i] - ma) * (a[i] - ma), sbb += (b[i] - mb) * (b[i] - mb);
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0.0;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  try {
    fs::create_directories(o.out);
    std::mt19937_64 val_rng(o.seed * 104729 + 3);
    const data val = draw(o, o.eval, val_rng);
    const std::int64_t T = val.T;
    const auto cfg = model_config(o, T);
    std::vector<result> runs;
    runs.push_back(train("plain", xm::transformer(cfg, o.seed), o, val));
    for (int percent : {100, 150, 200})
      runs.push_back(train("bubble " + std::to_string(percent / 100) + (percent == 150 ? ".5x" : "x"),
                           xb::transformer(cfg, bubbles(o, T, percent, false), o.seed), o, val));
    runs.push_back(train("duplicate", xb::transformer(cfg, bubbles(o, T, 200, true), o.seed), o, val));

    std::printf(
        "bubbles_lm: %d steps of %d sequences (T = %lld: %d pairs, %d lookups), d_model %d, %d layers, "
        "seed %llu; validation on %d sequences\n\n",
        o.steps, o.batch, static_cast<long long>(T), o.pairs, o.segments, o.d_model, o.layers,
        static_cast<unsigned long long>(o.seed), o.eval);
    std::printf(
        "| model | params | stream-layers / token | train time | loss | lookup loss | lookup acc | filler "
        "loss |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const result& r : runs)
      std::printf("| %s | %lld | %.2f | %.1f s | %.3f | %.3f | %.3f | %.4f |\n", r.name.c_str(),
                  static_cast<long long>(r.params), r.stream_layers, r.seconds, r.loss, r.lookup_loss,
                  r.lookup_acc, r.filler_loss);
    // Where the 2x model's copies go: by kind of target, and against the plain model's loss.
    const result& plain = runs[0];
    const result& two = runs[3];
    std::vector<bool> use(val.targets.size());
    double copies[3] = {0, 0, 0}, count[3] = {0, 0, 0};
    for (std::size_t n = 0; n < use.size(); ++n) {
      use[n] = val.targets[n] != xm::ignore_target;
      if (!use[n]) continue;
      copies[val.kinds[n]] += two.copies[n];
      count[val.kinds[n]] += 1;
    }
    std::printf(
        "\nbubble 2x, streams per position in the last block: before a lookup value %.2f, before a filler "
        "token %.2f, elsewhere %.2f; correlation with the plain model's loss at the position %.3f\n",
        copies[lookup] / std::max(1.0, count[lookup]), copies[filler] / std::max(1.0, count[filler]),
        copies[other] / std::max(1.0, count[other]), pearson(two.copies, plain.token_loss, use));
    std::ofstream tsv(fs::path(o.out) / "curves.tsv");  // one block per model (gnuplot's index)
    tsv << "# model\tstep\tlookup_loss\n";
    for (const result& r : runs) {
      for (const auto& [step, loss] : r.curve) tsv << r.name << '\t' << step << '\t' << loss << '\n';
      tsv << "\n\n";
    }
    tsv.close();
    bool finite = true;
    for (const result& r : runs) finite = finite && std::isfinite(r.loss) && std::isfinite(r.lookup_loss);
    if (o.plot) {
      const std::string dir = o.out, png = dir + "/lookup_loss.png", script = dir + "/lookup_loss.gp";
      std::ofstream gp(script);
      gp << "set terminal pngcairo size 800,500\nset output '" << png << "'\n"
         << "set xlabel 'training step'\nset ylabel 'validation loss on lookup values'\nset key top right\n"
         << "set datafile separator '\\t'\nplot";
      for (std::size_t i = 0; i < runs.size(); ++i)
        gp << (i ? "," : "") << " '" << dir << "/curves.tsv' index " << i
           << " using 2:3 with linespoints title '" << runs[i].name << "'";
      gp << "\n";
      gp.close();
      if (!xplor::examples::render_plot(script, png, dir + "/curves.tsv")) return 1;
    }
    if (!finite) {
      std::fprintf(stderr, "bubbles_lm: a loss is not finite\n");
      return 1;
    }
    std::printf("bubbles_lm: ok\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bubbles_lm: %s\n", e.what());
    return 1;
  }
  return 0;
}
