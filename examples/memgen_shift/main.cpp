// memgen_shift: MemGen (arXiv 2509.24704) on a rule shift. A small character-level reasoner is
// trained on chained sums mod 10 ("rule A": 3,5,2: -> 3+5=8,8+2=0.) and frozen. Under "rule B"
// every sum is shifted by a hidden constant (default 3: 3+5=1,1+2=6.), which the frozen reasoner
// gets wrong. A memory weaver (a LoRA'd copy of the reasoner, K latents per insertion) is
// trained by SFT on rule B with insertions at the prompt end and after delimiters ('=' and ','),
// and compared with
//   - the frozen reasoner alone,
//   - a static prefix baseline: the same weaver and trainable tensors, but reading no context
//     (its latents depend on the bank alone: learned embeddings),
//   - the weaver with K in {1, 2, 4, 8} and max_inference_aug in {0, 1, 3}.
// Then a memory trigger is trained by GRPO (groups of 8) to decide where to weave, with and
// without the reward-adaptive invocation penalty: does it learn to fire right before an answer
// digit (after '=') rather than after ','?
// Reported: completion and answer-digit cross-entropy, exact-match accuracy (greedy) by number of
// steps, the trigger's invocation rate and positions; a table, metrics.jsonl, a PNG. The
// reasoner's weights are hashed before and after: they never change.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>
#include <xplor/memory/checkpoint.hpp>
#include <xplor/memory/generate.hpp>
#include <xplor/memory/grpo.hpp>
#include <xplor/memory/memgen.hpp>
#include <xplor/model/checkpoint.hpp>
#include <xplor/model/optim.hpp>
#include <xplor/model/transformer.hpp>

#include "common/cli.hpp"
#include "common/gnuplot.hpp"

namespace {

namespace fs = std::filesystem;
namespace xm = xplor::model;
namespace mem = xplor::memory;

// Characters: digits 0-9, '=', '+', ',', '.', ':', ' '.
constexpr std::int32_t eq = 10, plus = 11, comma = 12, dot = 13, colon = 14, space = 15, vocab = 16;
constexpr int max_steps = 3;

std::string text(std::span<const std::int32_t> tokens) {
  static const char* chars = "0123456789=+,.: ";
  std::string s;
  for (std::int32_t t : tokens) s += chars[t];
  return s;
}

struct options {
  std::string out = "memgen_out";
  std::uint64_t seed = 1;
  int pretrain_steps = 1500, sft_steps = 600, trigger_steps = 150, batch = 32, eval = 300;
  int d_model = 64, layers = 3, heads = 4, shift = 3, k = 4, max_aug = 3, rank = 8;
  float lr = 3e-3f, trigger_lr = 1e-3f, lambda = 0.1f;
  bool ablations = true, plot = true, hidden = false;
};

options parse(int argc, char** argv) {
  namespace ex = xplor::examples;
  options o;
  bool quick = false;
  CLI::App app{
      "MemGen's weaver and trigger on a rule shift, against the frozen reasoner and a static prefix.",
      "memgen_shift"};
  app.add_option("--out", o.out, "output directory (default memgen_out)")->type_name("DIR");
  ex::add_integer(app, "--seed", o.seed, 0, 1LL << 53, "seed of data and models (default 1)")->type_name("S");
  ex::add_integer(app, "--pretrain-steps", o.pretrain_steps, 1, 1000000,
                  "reasoner steps on rule A (default 1500)")
      ->type_name("N");
  ex::add_integer(app, "--sft-steps", o.sft_steps, 1, 1000000, "weaver SFT steps per run (default 600)")
      ->type_name("N");
  ex::add_integer(app, "--trigger-steps", o.trigger_steps, 0, 1000000,
                  "trigger GRPO steps per run (default 150)")
      ->type_name("N");
  ex::add_integer(app, "--batch", o.batch, 1, 4096, "sequences per step (default 32)")->type_name("B");
  ex::add_integer(app, "--eval", o.eval, 1, 100000, "held-out rule-B problems (default 300)")->type_name("N");
  ex::add_integer(app, "--d-model", o.d_model, 8, 4096, "reasoner width (default 64)")->type_name("C");
  ex::add_integer(app, "--layers", o.layers, 1, 64, "reasoner blocks (default 3)")->type_name("L");
  ex::add_integer(app, "--heads", o.heads, 1, 64, "attention heads (default 4)")->type_name("H");
  ex::add_integer(app, "--shift", o.shift, 1, 9, "rule B's hidden offset of every sum (default 3)")
      ->type_name("D");
  ex::add_integer(app, "--k", o.k, 1, 16, "latents per insertion (default 4)")->type_name("K");
  ex::add_integer(app, "--max-aug", o.max_aug, 0, 5, "max_inference_aug of the main run (default 3)")
      ->type_name("N");
  ex::add_integer(app, "--rank", o.rank, 1, 256, "the weaver's and trigger's LoRA rank (default 8)")
      ->type_name("R");
  ex::add_number(app, "--lr", o.lr, 0.0, HUGE_VAL,
                 "peak learning rate of the reasoner and weaver (default 3e-3)", true)
      ->type_name("LR");
  ex::add_number(app, "--trigger-lr", o.trigger_lr, 0.0, HUGE_VAL, "trigger learning rate (default 1e-3)",
                 true)
      ->type_name("LR");
  ex::add_number(app, "--lambda", o.lambda, 0.0, HUGE_VAL,
                 "invocation penalty of the penalised trigger (default 0.1)", false)
      ->type_name("X");
  app.add_flag_callback(
      "--no-ablations", [&o] { o.ablations = false; }, "skip the K and max_inference_aug sweeps");
  app.add_flag(
      "--weaver-hidden", o.hidden,
      "the weaver reads the reasoner's last hidden states (the paper) instead of its input embeddings "
      "(the authors' code)");
  app.add_flag("--quick", quick, "a tiny configuration (the test suite's); flags given with it still apply");
  app.add_flag_callback(
      "--no-plot", [&o] { o.plot = false; }, "do not call gnuplot");
  ex::parse_flags(app, argc, argv);
  if (quick) {
    const auto unset = [&app](const char* flag) { return app.count(flag) == 0; };
    if (unset("--pretrain-steps")) o.pretrain_steps = 20;
    if (unset("--sft-steps")) o.sft_steps = 3;
    if (unset("--trigger-steps")) o.trigger_steps = 2;
    if (unset("--batch")) o.batch = 4;
    if (unset("--eval")) o.eval = 6;
    if (unset("--d-model")) o.d_model = 16;
    if (unset("--layers")) o.layers = 2;
    if (unset("--heads")) o.heads = 2;
  }
  return o;
}

/// One problem: "3,5,2:" -> "3+5=8,8+2=0." with `shift` added to every sum (mod 10).
struct problem {
  std::vector<std::int32_t> prompt, completion;
  std::vector<std::size_t> answers;  // positions of the sums in the completion
  int steps = 1;
};

problem make_problem(std::mt19937_64& rng, int shift) {
  problem p;
  p.steps = 1 + static_cast<int>(rng() % max_steps);
  std::vector<std::int32_t> v;
  for (int i = 0; i <= p.steps; ++i) {
    v.push_back(static_cast<std::int32_t>(rng() % 10));
    p.prompt.insert(p.prompt.end(), {v.back(), i == p.steps ? colon : comma});
  }
  std::int32_t sum = (v[0] + v[1] + shift) % 10;
  p.completion = {v[0], plus, v[1], eq, sum};
  p.answers.push_back(p.completion.size() - 1);
  for (int i = 2; i <= p.steps; ++i) {
    const std::int32_t prev = sum;
    sum = (prev + v[static_cast<std::size_t>(i)] + shift) % 10;
    p.completion.insert(p.completion.end(), {comma, prev, plus, v[static_cast<std::size_t>(i)], eq, sum});
    p.answers.push_back(p.completion.size() - 1);
  }
  p.completion.push_back(dot);
  return p;
}

std::vector<problem> make_problems(std::mt19937_64& rng, int n, int shift) {
  std::vector<problem> out;
  for (int i = 0; i < n; ++i) out.push_back(make_problem(rng, shift));
  return out;
}

/// True when `p` holds exactly the bits of `before`.
bool same_bits(std::span<const float> p, const std::vector<float>& before) {
  return p.size() == before.size() &&
         std::memcmp(p.data(), before.data(), before.size() * sizeof(float)) == 0;
}

/// Trains the reasoner on rule A (loss on the completion tokens).
void pretrain(xm::transformer& model, const options& o, std::mt19937_64& rng) {
  xm::adamw opt(model.layout(), {.lr = o.lr, .weight_decay = 0.01f});
  const xm::cosine_schedule lr{o.lr, o.lr / 10, std::min(100, o.pretrain_steps / 10), o.pretrain_steps};
  for (int step = 0; step < o.pretrain_steps; ++step) {
    const auto batch = make_problems(rng, o.batch, 0);
    // Runs of 1-8 spaces where latents can go (the prompt end, after '='), each with probability
    // 1/2: the reasoner learns that a gap may come before a token, and reads the token after a gap
    // at the gap's last row, as MemGen's alignment does. Targets: the completion tokens.
    std::vector<std::vector<std::int32_t>> rows, row_targets;
    std::size_t T = 0;
    for (const auto& p : batch) {
      std::vector<std::int32_t> row = p.prompt, tgt(p.prompt.size(), xm::ignore_target);
      for (std::size_t i = 0; i < p.completion.size(); ++i) {
        if ((i == 0 || p.completion[i - 1] == eq) && rng() % 2 == 0) {
          const auto gap = 1 + rng() % 8;
          row.insert(row.end(), gap, space);
          tgt.insert(tgt.end(), gap, xm::ignore_target);
        }
        tgt.back() = p.completion[i];
        row.push_back(p.completion[i]);
        tgt.push_back(xm::ignore_target);
      }
      T = std::max(T, row.size());
      rows.push_back(std::move(row));
      row_targets.push_back(std::move(tgt));
    }
    std::vector<std::int32_t> tokens(batch.size() * T, dot), targets(tokens.size(), xm::ignore_target);
    for (std::size_t b = 0; b < batch.size(); ++b) {
      std::copy(rows[b].begin(), rows[b].end(), tokens.begin() + static_cast<std::ptrdiff_t>(b * T));
      std::copy(row_targets[b].begin(), row_targets[b].end(),
                targets.begin() + static_cast<std::ptrdiff_t>(b * T));
    }
    model.zero_grad();
    const float loss = model.forward(
        {tokens, static_cast<std::int64_t>(batch.size()), static_cast<std::int64_t>(T), targets, {}, {}});
    model.backward();
    xm::clip_grad_norm(model.grads(), 1.0f);
    opt.step(model.params(), model.grads(), lr(step));
    if (step % 50 == 0 || step + 1 == o.pretrain_steps)
      std::fprintf(stderr, "\rreasoner (rule A) step %5d / %d  loss %.3f   ", step + 1, o.pretrain_steps,
                   loss);
  }
  std::fprintf(stderr, "\n");
}

struct evaluation {
  double ce = 0.0, answer_ce = 0.0;        // per completion token / per answer digit (nats)
  double accuracy = 0.0;                   // greedy exact match
  double by_steps[max_steps] = {0, 0, 0};  // accuracy per number of steps
  double invocations = 0.0;                // weaver calls per problem
  double invoke_rate = 1.0;                // invocations / eligible points (1 without a trigger)
  double prompt_rate = 0.0;                // problems with a prompt-end insertion
  double before_answer = 0.0;              // inference insertions right before an answer digit (after '=')
};

/// Cross-entropy by teacher forcing with the training rule's insertion points, and greedy exact
/// match through memory::generate (with the trigger when given).
evaluation evaluate(mem::memgen& m, const std::vector<problem>& eval, mem::trigger* trig = nullptr) {
  evaluation e;
  double answer_tokens = 0, tokens = 0;
  for (std::size_t first = 0; first < eval.size(); first += 64) {
    std::vector<mem::sequence> seqs;
    const std::size_t last = std::min(eval.size(), first + 64);
    for (std::size_t i = first; i < last; ++i) {
      mem::sequence s{eval[i].prompt, eval[i].completion, {}};
      s.points = mem::insertion_points(m.config(), s.completion);
      seqs.push_back(std::move(s));
    }
    m.forward(seqs);
    const auto lp = m.completion_logprobs();
    std::size_t k = 0;
    for (std::size_t i = first; i < last; ++i) {
      for (std::size_t t = 0; t < eval[i].completion.size(); ++t, ++k) {
        e.ce -= lp[k];
        tokens += 1;
        if (std::find(eval[i].answers.begin(), eval[i].answers.end(), t) != eval[i].answers.end()) {
          e.answer_ce -= lp[k];
          answer_tokens += 1;
        }
      }
    }
  }
  e.ce /= tokens;
  e.answer_ce /= answer_tokens;
  mem::generation_options g;
  g.sampling.top_k = 1;
  g.sampling.eos_token = dot;
  g.sampling.max_completion_length = 6 * max_steps + 2;
  g.trigger_sample = false;
  std::vector<std::vector<std::int32_t>> prompts;
  for (const auto& p : eval) prompts.push_back(p.prompt);
  const auto rs = mem::generate(m, prompts, 1, g, trig);
  double count[max_steps] = {0, 0, 0}, inference = 0, decisions = 0, invoked = 0;
  for (std::size_t i = 0; i < eval.size(); ++i) {
    const bool ok = rs[i].seq.completion == eval[i].completion;
    e.accuracy += ok;
    e.by_steps[eval[i].steps - 1] += ok;
    count[eval[i].steps - 1] += 1;
    e.invocations += static_cast<double>(rs[i].seq.points.size());
    for (std::int32_t p : rs[i].seq.points) {
      if (p == 0) {
        e.prompt_rate += 1;
      } else {
        inference += 1;
        e.before_answer += rs[i].seq.completion[static_cast<std::size_t>(p - 1)] == eq;
      }
    }
    for (std::int32_t a : rs[i].decisions.actions) decisions += 1, invoked += a;
  }
  e.prompt_rate /= static_cast<double>(eval.size());
  e.before_answer = inference > 0 ? e.before_answer / inference : 0.0;
  if (trig != nullptr) e.invoke_rate = decisions > 0 ? invoked / decisions : 0.0;
  e.accuracy /= static_cast<double>(eval.size());
  e.invocations /= static_cast<double>(eval.size());
  for (int s = 0; s < max_steps; ++s) e.by_steps[s] = count[s] > 0 ? e.by_steps[s] / count[s] : 0.0;
  return e;
}

/// SFT weaves right before every answer digit (after '='); the trigger may also weave after ','.
mem::memgen_config memgen_config(const options& o, int k, int max_aug, bool static_latents,
                                 std::vector<std::int32_t> delimiters = {eq}) {
  mem::memgen_config c;
  c.prompt_latents = c.inference_latents = k;
  c.max_inference_aug = max_aug;
  c.delimiters = std::move(delimiters);
  c.input = o.hidden ? mem::weaver_input::last_hidden : mem::weaver_input::embeddings;
  c.static_latents = static_latents;
  c.weaver_lora.rank = c.trigger_lora.rank = o.rank;
  c.weaver_lora.alpha = c.trigger_lora.alpha = 2.0f * static_cast<float>(o.rank);
  return c;
}

struct run {
  run(std::string n, int k_, int aug, bool st)
      : name(std::move(n)), k(k_), max_aug(aug), static_latents(st) {}
  std::string name;
  int k = 0, max_aug = 0;
  bool static_latents = false;
  evaluation eval;
  double seconds = 0.0;
  std::int64_t params = 0;
  std::vector<std::pair<int, double>> curve;  // (step, training loss)
};

/// Weaver SFT on rule B; returns the trained model (and fills r).
mem::memgen train_weaver(const xm::transformer& reasoner, const options& o, run& r,
                         const std::vector<problem>& eval, std::ofstream& jsonl) {
  const auto t0 = std::chrono::steady_clock::now();
  mem::memgen m(reasoner, memgen_config(o, r.k, r.max_aug, r.static_latents), o.seed + 17);
  r.params = m.weaver().layout().total;
  xm::adamw opt(m.weaver().layout(), {.lr = o.lr, .weight_decay = 0.0f});
  const xm::cosine_schedule lr{o.lr, o.lr / 10, std::min(30, o.sft_steps / 10), o.sft_steps + 1};
  std::mt19937_64 rng(o.seed * 7919 + 3);
  double running = 0.0;
  for (int step = 0; step < o.sft_steps; ++step) {
    std::vector<mem::sequence> batch;
    for (const auto& p : make_problems(rng, o.batch, o.shift)) {
      mem::sequence s{p.prompt, p.completion, {}};
      s.points = mem::insertion_points(m.config(), s.completion);
      batch.push_back(std::move(s));
    }
    m.weaver().zero_grad();
    const float loss = m.forward(batch, {true, static_cast<std::uint64_t>(step)});
    m.backward();
    xm::clip_grad_norm(m.weaver().grads(), 1.0f);
    opt.step(m.weaver().params(), m.weaver().grads(), lr(step));
    running = step == 0 ? loss : 0.9 * running + 0.1 * loss;
    if (step % 20 == 0 || step + 1 == o.sft_steps) {
      r.curve.emplace_back(step + 1, running);
      std::fprintf(stderr, "\r%-22s step %4d / %d  loss %.3f   ", r.name.c_str(), step + 1, o.sft_steps,
                   running);
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.eval = evaluate(m, eval);
  std::fprintf(stderr, "\n%-22s CE %.3f, answer CE %.3f, exact match %.3f (%.0f s)\n", r.name.c_str(),
               r.eval.ce, r.eval.answer_ce, r.eval.accuracy, r.seconds);
  jsonl << "{\"stage\":\"weaver\",\"name\":\"" << r.name << "\",\"k\":" << r.k
        << ",\"max_inference_aug\":" << r.max_aug << ",\"static\":" << (r.static_latents ? "true" : "false")
        << ",\"params\":" << r.params << ",\"ce\":" << r.eval.ce << ",\"answer_ce\":" << r.eval.answer_ce
        << ",\"accuracy\":" << r.eval.accuracy << ",\"seconds\":" << r.seconds << "}\n";
  return m;
}

struct trigger_run {
  float lambda = 0.0f;
  evaluation eval;
};

trigger_run train_trigger(mem::memgen& m, const xm::transformer& reasoner, const options& o, float lambda,
                          const std::vector<problem>& eval, std::ofstream& jsonl) {
  trigger_run tr;
  tr.lambda = lambda;
  mem::trigger trig(reasoner, m.config(), o.seed + 29);
  xm::adamw opt(trig.layout(), {.lr = o.trigger_lr, .weight_decay = 0.0f});
  std::mt19937_64 rng(o.seed * 104729 + 11);
  constexpr int group = 8;
  const int prompts_per_step = std::max(1, o.batch / group);
  mem::generation_options g;
  g.sampling.eos_token = dot;
  g.sampling.max_completion_length = 6 * max_steps + 2;
  for (int step = 0; step < o.trigger_steps; ++step) {
    const auto ps = make_problems(rng, prompts_per_step, o.shift);
    std::vector<std::vector<std::int32_t>> prompts;
    for (const auto& p : ps) prompts.push_back(p.prompt);
    g.seed = o.seed * 1000003 + static_cast<std::uint64_t>(step);
    const auto rs = mem::generate(m, prompts, group, g, &trig);
    std::vector<float> rewards;
    double invoked = 0, decisions = 0;
    for (const auto& r : rs) {
      rewards.push_back(r.seq.completion == ps[static_cast<std::size_t>(r.prompt_index)].completion ? 1.0f
                                                                                                    : 0.0f);
      for (std::int32_t a : r.decisions.actions) invoked += a, decisions += 1;
    }
    const auto shaped = mem::invocation_penalized_rewards(rewards, rs, group, lambda);
    trig.zero_grad();
    mem::trigger_grpo_gradients(trig, rs, shaped, group, {}, {true, static_cast<std::uint64_t>(step)});
    xm::clip_grad_norm(trig.grads(), 1.0f);
    opt.step(trig.params(), trig.grads(), o.trigger_lr);
    double mean_reward = 0;
    for (float x : rewards) mean_reward += x;
    std::fprintf(stderr, "\rtrigger (lambda %.2f) step %3d / %d  reward %.2f  invoke rate %.2f   ", lambda,
                 step + 1, o.trigger_steps, mean_reward / static_cast<double>(rewards.size()),
                 decisions > 0 ? invoked / decisions : 0.0);
  }
  std::fprintf(stderr, "\n");
  tr.eval = evaluate(m, eval, &trig);
  jsonl << "{\"stage\":\"trigger\",\"lambda\":" << lambda << ",\"accuracy\":" << tr.eval.accuracy
        << ",\"invocation_rate\":" << tr.eval.invoke_rate << ",\"before_answer\":" << tr.eval.before_answer
        << ",\"prompt_rate\":" << tr.eval.prompt_rate << ",\"invocations\":" << tr.eval.invocations << "}\n";
  return tr;
}

void print_eval(const std::string& name, std::int64_t params, const evaluation& e, double seconds) {
  std::printf("| %s | %lld | %.3f | %.3f | %.3f | %.3f / %.3f / %.3f | %.1f | %.0f s |\n", name.c_str(),
              static_cast<long long>(params), e.ce, e.answer_ce, e.accuracy, e.by_steps[0], e.by_steps[1],
              e.by_steps[2], e.invocations, seconds);
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  try {
    fs::create_directories(o.out);
    std::ofstream jsonl(fs::path(o.out) / "metrics.jsonl");
    std::mt19937_64 rng(o.seed);
    const auto eval_b = make_problems(rng, o.eval, o.shift);
    const auto eval_a = make_problems(rng, o.eval, 0);
    xm::transformer_config cfg;
    cfg.vocab_size = vocab;
    cfg.d_model = o.d_model;
    cfg.n_layers = o.layers;
    cfg.n_heads = o.heads;
    cfg.d_ff = 4 * o.d_model;
    cfg.max_seq_len = 96;
    xm::transformer reasoner(cfg, o.seed);
    std::printf("memgen_shift: example %s -> %s (rule A), %s (rule B, shift %d)\n",
                text(eval_a[0].prompt).c_str(), text(eval_a[0].completion).c_str(),
                text(eval_b[0].completion).c_str(), o.shift);
    const auto t0 = std::chrono::steady_clock::now();
    pretrain(reasoner, o, rng);
    const double pretrain_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    xm::save_checkpoint(fs::path(o.out) / "reasoner.safetensors", reasoner);
    const std::vector<float> weights_before(reasoner.params().begin(), reasoner.params().end());

    // The frozen reasoner alone: MemGen without insertion points is the reasoner bit for bit.
    mem::memgen_config none = memgen_config(o, o.k, 0, false);
    none.prompt_augment = false;
    mem::memgen plain(reasoner, none, 0);
    const evaluation on_a = evaluate(plain, eval_a), on_b = evaluate(plain, eval_b);

    std::vector<run> runs;
    runs.emplace_back("weaver", o.k, o.max_aug, false);
    runs.emplace_back("static prefix", o.k, o.max_aug, true);
    if (o.ablations) {
      for (int k : {1, 2, 8})
        if (k != o.k) runs.emplace_back("weaver K=" + std::to_string(k), k, o.max_aug, false);
      if (o.k != 4) runs.emplace_back("weaver K=4", 4, o.max_aug, false);
      for (int a : {0, 1, 3})
        if (a != o.max_aug) runs.emplace_back("weaver max_aug=" + std::to_string(a), o.k, a, false);
    }
    std::optional<mem::memgen> main_weaver;  // the first run's, for the trigger
    for (run& r : runs) {
      mem::memgen m = train_weaver(reasoner, o, r, eval_b, jsonl);
      if (!main_weaver) main_weaver.emplace(std::move(m));
    }
    const fs::path weaver_file = fs::path(o.out) / "weaver.safetensors";
    mem::save_adapter(weaver_file, main_weaver->weaver());

    // The trigger stage: the trained weaver (loaded from its file) with ',' eligible too, so that
    // always invoking spends insertions after ',' where the weaver was never trained.
    mem::memgen with_commas(reasoner, memgen_config(o, o.k, o.max_aug, false, {eq, comma}), 0);
    mem::load_adapter(weaver_file, with_commas.weaver());
    const evaluation always = evaluate(with_commas, eval_b);
    std::vector<trigger_run> triggers;
    if (o.trigger_steps > 0)
      for (float lambda : {0.0f, o.lambda})
        triggers.push_back(train_trigger(with_commas, reasoner, o, lambda, eval_b, jsonl));

    const bool unchanged = same_bits(reasoner.params(), weights_before) &&
                           same_bits(main_weaver->reasoner().params(), weights_before) &&
                           same_bits(with_commas.reasoner().params(), weights_before);
    std::printf(
        "\nmemgen_shift: reasoner d_model %d, %d layers (%lld parameters), %d steps on rule A (%.0f s); "
        "weaver runs "
        "of %d SFT steps x %d problems on rule B; %d held-out problems per rule; seed %llu\n\n",
        o.d_model, o.layers, static_cast<long long>(reasoner.num_params()), o.pretrain_steps,
        pretrain_seconds, o.sft_steps, o.batch, o.eval, static_cast<unsigned long long>(o.seed));
    std::printf(
        "| model | trainable params | CE / token | CE / answer digit | exact match | by steps 1 / 2 / 3 | "
        "insertions / problem | train time |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    print_eval("reasoner on rule A", 0, on_a, pretrain_seconds);
    print_eval("reasoner on rule B", 0, on_b, 0.0);
    for (const run& r : runs)
      print_eval(r.name + " (K " + std::to_string(r.k) + ", max_aug " + std::to_string(r.max_aug) + ")",
                 r.params, r.eval, r.seconds);
    if (!triggers.empty()) {
      std::printf(
          "\n| trigger | exact match | insertions / problem | invoke rate | prompt-end invocations | "
          "inference "
          "invocations after '=' |\n|---|---:|---:|---:|---:|---:|\n");
      auto row = [](const std::string& name, const evaluation& e) {
        std::printf("| %s | %.3f | %.2f | %.2f | %.2f | %.2f |\n", name.c_str(), e.accuracy, e.invocations,
                    e.invoke_rate, e.prompt_rate, e.before_answer);
      };
      row("none: always invoke ('=' and ',')", always);
      for (const auto& t : triggers) row("GRPO, lambda " + std::to_string(t.lambda).substr(0, 4), t.eval);
    }
    std::printf("\nreasoner weights %s during weaver and trigger training (all %zu compared bit for bit)\n",
                unchanged ? "unchanged" : "CHANGED", weights_before.size());
    std::ofstream tsv(fs::path(o.out) / "curves.tsv");
    tsv << "# run\tstep\tloss\n";
    for (const run& r : runs) {
      for (const auto& [step, loss] : r.curve) tsv << r.name << '\t' << step << '\t' << loss << '\n';
      tsv << "\n\n";
    }
    tsv.close();
    if (o.plot) {
      const std::string dir = o.out, png = dir + "/sft_loss.png", script = dir + "/sft_loss.gp";
      std::ofstream gp(script);
      gp << "set terminal pngcairo size 800,500\nset output '" << png << "'\n"
         << "set xlabel 'weaver SFT step'\nset ylabel 'rule-B completion loss (EMA)'\nset key top right\n"
         << "set datafile separator '\\t'\nplot";
      for (std::size_t i = 0; i < runs.size(); ++i)
        gp << (i ? "," : "") << " '" << dir << "/curves.tsv' index " << i
           << " using 2:3 with lines lw 2 title '" << runs[i].name << "'";
      gp << "\n";
      gp.close();
      if (!xplor::examples::render_plot(script, png, dir + "/curves.tsv")) return 1;
    }
    bool finite = std::isfinite(on_b.ce);
    for (const run& r : runs) finite = finite && std::isfinite(r.eval.ce);
    if (!finite || !unchanged) {
      std::fprintf(stderr, "memgen_shift: %s\n", finite ? "the reasoner changed" : "a loss is not finite");
      return 1;
    }
    std::printf("memgen_shift: ok\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "memgen_shift: %s\n", e.what());
    return 1;
  }
  return 0;
}
