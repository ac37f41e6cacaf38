// deepsearch_arith: DeepSearch (arXiv 2509.25454) against plain GRPO rollouts at an equal rollout
// budget, on the hardest levels of rlvr_arithmetic's problems (4 and 5 digits: addition,
// subtraction, multiplication by one digit; chain of thought digit by digit; level 5 is beyond
// the SFT data).
//
// 1. SFT: the byte-level reference transformer (or, with --model bdh, the Dragon Hatchling) learns
//    the chain-of-thought format (rlvr_arithmetic's SFT step and recipe) up to partial accuracy on
//    the hard levels; or --sft-from a checkpoint.
// 2. Two RL runs from that checkpoint, each until it has generated the same number of tokens:
//    - GRPO: N rollouts per prompt, reward +1 / -1, GRPO advantages (mean and std of the group);
//    - DeepSearch: deep_search_batch per prompt, nodes = reasoning steps (the chain of thought's
//      space-separated steps, search_params::step_delimiters), N trajectories per prompt with
//      soft-clipped node values and mean-only advantages, token by token.
//    Both update with the same clipped loss (DAPO token mean, clip 0.2 / 0.28, no KL: the
//    reference code's loss) through examples/common/policy_update.hpp.
// 3. pass@1 on held-out hard problems every --eval-every generated tokens, as the paper measures
//    it (the accuracy of samples at T = 1, averaged; the paper takes 32 per problem, here 4): a
//    table, a TSV and a PNG of pass@1 against rollout tokens for both.
//
// --plateau runs the paper's regime instead: GRPO from the SFT checkpoint until its pass@1 on a
// validation set stops improving (no gain above --plateau-delta over its best for --patience
// evaluations in a row), then GRPO and DeepSearch each continue from that plateau checkpoint
// (weights, AdamW moments and the prompt stream) for --budget more generated tokens; pass@1 is
// compared at equal extra tokens and at equal extra wall time.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>
#include <xplor/model/optim.hpp>
#include <xplor/model/tokenizer.hpp>
#include <xplor/reward/truth.hpp>
#include <xplor/rl/advantage.hpp>
#include <xplor/sample/rollout.hpp>
#include <xplor/search/deep_search.hpp>

#include "common/cli.hpp"
#include "common/gnuplot.hpp"
#include "common/models.hpp"
#include "common/policy_update.hpp"
#include "rlvr_arithmetic/data.hpp"
#include "rlvr_arithmetic/train.hpp"

namespace {

namespace fs = std::filesystem;
namespace xm = xplor::model;
namespace xs = xplor::search;

struct options {
  std::string out = "deepsearch_out", sft_from;
  std::string model = "transformer";  // or "bdh"
  std::uint64_t seed = 1;
  int sft_steps = 1200;  // rlvr_arithmetic's SFT recipe: its checkpoint works with --sft-from
  std::int64_t budget = 900000, eval_every = 150000;
  int eval = 200, prompts = 8, n = 8, width = 4, threads = 2;
  int level_lo = 4, level_hi = 5;  // the "hard" problems RL trains and is evaluated on
  float lr = 1e-4f;
  bool plot = true;
  bool drop_unsolved = false;  // ablation: no update from trees without a correct trajectory
  bool lockstep = false;       // deep_search_lockstep (one decode batch) instead of per-prompt threads
  bool plateau = false;        // GRPO to a plateau first, then both continue from it
  int patience = 3;            // evaluations without a gain above plateau_delta: a plateau
  double plateau_delta = 0.01;
  std::int64_t plateau_max = 6000000;  // GRPO tokens before giving up on a plateau
};

options parse(int argc, char** argv) {
  namespace ex = xplor::examples;
  options o;
  bool quick = false;
  std::string levels = "4-5";
  CLI::App app{
      "DeepSearch tree search vs GRPO rollouts at an equal rollout-token budget, on hard arithmetic.",
      "deepsearch_arith"};
  app.add_option("--out", o.out, "output directory (default deepsearch_out)")->type_name("DIR");
  ex::add_integer(app, "--seed", o.seed, 0, 1LL << 53, "seed of data, model and sampling (default 1)")
      ->type_name("S");
  ex::add_integer(app, "--sft-steps", o.sft_steps, 0, 1000000,
                  "SFT steps before RL (default 1200, as rlvr_arithmetic)")
      ->type_name("N");
  app.add_option("--model", o.model,
                 "transformer | bdh (the Dragon Hatchling of the same width, layers and heads at about "
                 "the transformer's parameter count; default transformer)")
      ->type_name("M")
      ->check(CLI::IsMember({"transformer", "bdh"}));
  app.add_option("--sft-from", o.sft_from,
                 "skip SFT: start from this checkpoint (d_model 128, 3 layers, 4 heads, of --model)")
      ->type_name("FILE")
      ->check(ex::existing_file());
  ex::add_integer(app, "--budget", o.budget, 1, 1LL << 40, "generated tokens per RL run (default 900000)")
      ->type_name("TOKENS");
  ex::add_integer(app, "--eval-every", o.eval_every, 1, 1LL << 40,
                  "pass@1 every this many generated tokens (default 150000)")
      ->type_name("TOKENS");
  ex::add_integer(app, "--eval", o.eval, 1, 100000, "held-out problems per evaluation (default 200)")
      ->type_name("N");
  app.add_option("--levels", levels,
                 "difficulty levels to train and evaluate on, 1-" + std::to_string(rlvr::num_levels) +
                     " (default 4-5)")
      ->type_name("LO-HI")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            if (v.size() != 3 || v[1] != '-' || v[0] < '1' || v[2] > '0' + rlvr::num_levels || v[0] > v[2])
              return "needs LO-HI with 1 <= LO <= HI <= " + std::to_string(rlvr::num_levels) + ", got '" + v +
                     "'";
            return {};
          },
          ""));
  ex::add_integer(app, "--prompts", o.prompts, 1, 4096, "prompts per RL step (default 8)")->type_name("P");
  ex::add_integer(app, "--n", o.n, 2, 1024, "rollouts / trajectories per prompt (default 8)")->type_name("N");
  ex::add_integer(app, "--width", o.width, 1, 64, "DeepSearch expansion width (default 4)")->type_name("W");
  ex::add_number(app, "--lr", o.lr, 0.0, HUGE_VAL, "RL learning rate (default 1e-4)")->type_name("LR");
  ex::add_integer(app, "--threads", o.threads, 1, 256, "search threads (default 2)")->type_name("T");
  app.add_flag("--drop-unsolved", o.drop_unsolved,
               "ablation: DeepSearch does not learn from trees without a correct trajectory (their mean-only "
               "advantages reward the wrong steps)");
  app.add_flag("--lockstep", o.lockstep,
               "DeepSearch steps all prompts' trees in lockstep through one decode policy "
               "(deep_search_lockstep; the same results as the per-prompt threads)");
  app.add_flag("--plateau", o.plateau,
               "the paper's regime: GRPO until validation pass@1 plateaus, then GRPO and DeepSearch each "
               "continue from that checkpoint for --budget tokens");
  ex::add_integer(app, "--patience", o.patience, 1, 1000,
                  "--plateau: evaluations in a row without a gain above --plateau-delta (default 3)")
      ->type_name("K");
  ex::add_number(app, "--plateau-delta", o.plateau_delta, 0.0, 1.0,
                 "--plateau: the pass@1 gain over the best so far that counts as progress (default 0.01)")
      ->type_name("D");
  ex::add_integer(
      app, "--plateau-max", o.plateau_max, 1, 1LL << 40,
      "--plateau: GRPO tokens after which the first phase stops without a plateau (default 6000000)")
      ->type_name("TOKENS");
  app.add_flag("--quick", quick, "a tiny configuration (the test suite's); flags given with it still apply");
  app.add_flag_callback(
      "--no-plot", [&o] { o.plot = false; }, "do not call gnuplot");
  ex::parse_flags(app, argc, argv);
  o.level_lo = levels[0] - '0';
  o.level_hi = levels[2] - '0';
  if (quick) {
    const auto unset = [&app](const char* flag) { return app.count(flag) == 0; };
    if (unset("--sft-steps")) o.sft_steps = 4;
    if (unset("--budget")) o.budget = 1500;
    if (unset("--eval-every")) o.eval_every = 750;
    if (unset("--eval")) o.eval = 6;
    if (unset("--prompts")) o.prompts = 2;
    if (unset("--n")) o.n = 4;
    if (unset("--width")) o.width = 2;
    if (unset("--patience")) o.patience = 1;
    if (unset("--plateau-max")) o.plateau_max = 3000;
  }
  return o;
}

xm::transformer_config model_config() {
  xm::transformer_config c;
  c.vocab_size = xm::byte_tokenizer{}.vocab_size();
  c.d_model = 128;
  c.n_layers = 3;
  c.n_heads = 4;
  c.d_ff = 384;
  c.max_seq_len = 128;
  return c;
}

constexpr int eval_samples = 4;     // samples per held-out problem at T = 1 (pass@1 = their mean accuracy)
constexpr int max_completion = 80;  // bytes of chain of thought + answer (4-digit sums need ~45)

/// The verifier both runs share: the last \boxed{} against the answer.
xs::outcome grade(const xm::byte_tokenizer& tok, const rlvr::example& e,
                  std::span<const std::int32_t> response, bool finished) {
  const std::string gold = std::to_string(e.p.answer());
  const auto o = xplor::reward::classify_response(rlvr::completion_text(tok, response),
                                                  std::span<const std::string>(&gold, 1));
  if (o == xplor::reward::outcome::correct) return xs::outcome::correct;
  if (o == xplor::reward::outcome::incorrect) return xs::outcome::incorrect;
  return finished ? xs::outcome::incorrect : xs::outcome::no_answer;  // cut off: no answer yet
}

template <class Model>
Model make_model(std::uint64_t seed);
template <>
xm::transformer make_model(std::uint64_t seed) {
  return xm::transformer(model_config(), seed);
}
template <>
xm::bdh make_model(std::uint64_t seed) {
  return xm::bdh(xm::bdh_matching(model_config()), seed);
}

template <class Model>
double pass_at_1(const Model& model, const xm::byte_tokenizer& tok, const std::vector<rlvr::example>& set) {
  return rlvr::evaluate(model, tok, set, max_completion, eval_samples, 0x5eed).all().accuracy();
}

struct point {
  std::int64_t tokens;
  double pass1;
  double seconds;
  double found = 0;  // correct rollouts / trajectories so far
  double sampled = 0;
};

struct step_data {
  std::vector<examples::scored_sequence> seqs;  // sequences with a non-zero advantage
  std::int64_t tokens = 0;                      // generated this step
  std::int64_t completion_tokens = 0;           // the loss normaliser (all trajectories)
  double correct = 0, total = 0;
};

/// GRPO: N rollouts per prompt, reward +1 / -1, advantages (r - mean) / (std + eps) per group.
template <class Model>
step_data grpo_step(const Model& model, const xm::byte_tokenizer& tok,
                    const std::vector<rlvr::example>& batch, const options& o, std::uint64_t seed) {
  std::vector<std::vector<std::int32_t>> prompts;
  for (const auto& e : batch) prompts.push_back(tok.encode(e.prompt));
  auto sp = rlvr::decode_params(tok, max_completion);
  examples::decoder_t<Model> dec(model);
  const int counts[] = {o.n};
  const auto ro = xplor::sample::generate(dec, prompts, counts, sp, seed);
  const std::int64_t n = ro.num_completions();
  std::vector<float> rewards(static_cast<std::size_t>(n)), adv(static_cast<std::size_t>(n));
  step_data d;
  for (std::int64_t c = 0; c < n; ++c) {
    const auto& e = batch[static_cast<std::size_t>(ro.prompt_index[static_cast<std::size_t>(c)])];
    const bool ok = grade(tok, e, ro.completion(c),
                          ro.finish[static_cast<std::size_t>(c)] != xplor::sample::finish_reason::length) ==
                    xs::outcome::correct;
    rewards[static_cast<std::size_t>(c)] = ok ? 1.0f : -1.0f;
    d.correct += ok;
    d.total += 1;
  }
  xplor::rl::compute_advantages(xplor::cpu, xplor::rl::estimator::grpo, std::span<const float>(rewards),
                                xplor::ragged_groups(ro.group_offsets, n), std::span<float>(adv));
  d.tokens = d.completion_tokens = static_cast<std::int64_t>(ro.tokens.size());
  d.seqs = examples::rollout_sequences(prompts, ro, adv);
  return d;
}

/// DeepSearch: one tree per prompt, nodes = chain-of-thought steps, N trajectories each.
template <class Model>
step_data search_step(const Model& model, const xm::byte_tokenizer& tok,
                      const std::vector<rlvr::example>& batch, const options& o, std::uint64_t seed) {
  std::vector<std::vector<std::int32_t>> prompts;
  for (const auto& e : batch) prompts.push_back(tok.encode(e.prompt));
  xs::search_params p;
  p.sampling = rlvr::decode_params(tok, max_completion);
  p.step_delimiters = {static_cast<std::int32_t>(' ')};
  p.chunk_tokens = 16;  // a step is ~9 bytes ("7+9+0=16 "); the answer step ~10
  p.max_depth = 8;      // 5 steps for 4-digit problems; the answer is one more
  p.expansion_width = o.width;
  p.num_trajectories = o.n;
  p.max_response_tokens = max_completion;  // as the GRPO rollouts; prompt + response fit max_seq_len
  p.max_nodes = 16384;
  const auto verifier = [&](std::size_t i, std::span<const std::int32_t> r, bool finished) {
    return grade(tok, batch[i], r, finished);
  };
  std::vector<xs::search_result> results;
  if (o.lockstep) {
    examples::decoder_t<Model> dec(model);  // every tree's rows in one batch per token position
    results = xs::deep_search_lockstep(dec, prompts, verifier, p, seed, xplor::cpu_t{o.threads});
  } else {
    results = xs::deep_search_batch([&model] { return examples::decoder_t<Model>(model); }, prompts, verifier,
                                    p, seed, o.threads);
  }
  step_data d;
  for (std::size_t i = 0; i < results.size(); ++i) {
    d.tokens += results[i].tokens_generated;
    bool solved = false;
    for (const auto& tr : results[i].trajectories) solved = solved || tr.result == xs::outcome::correct;
    for (const auto& tr : results[i].trajectories) {
      d.correct += tr.result == xs::outcome::correct;
      d.total += 1;
      d.completion_tokens += static_cast<std::int64_t>(tr.tokens.size());
      bool any = false;
      for (float a : tr.token_advantages) any = any || a != 0.0f;
      if (!any || (o.drop_unsolved && !solved)) continue;
      examples::scored_sequence s;
      s.tokens = prompts[i];
      s.prompt_len = static_cast<std::int64_t>(s.tokens.size());
      s.tokens.insert(s.tokens.end(), tr.tokens.begin(), tr.tokens.end());
      s.old_logprobs = tr.logprobs;
      s.advantages = tr.token_advantages;
      d.seqs.push_back(std::move(s));
    }
  }
  return d;
}

/// Where an RL run starts and how far it got: the policy, its optimizer's moments, the next
/// prompt of the stream and the step count (which seeds the step's sampling).
template <class Model>
struct rl_state {
  Model model;
  xm::adamw opt;
  std::size_t cursor = 0;
  std::int64_t step = 0;
};

template <class Model>
rl_state<Model> fresh_state(const Model& model, const options& o) {
  return {model, xm::adamw(model.layout(), {.lr = o.lr, .weight_decay = 0.0f})};
}

/// Trains `s` with GRPO or DeepSearch steps until `budget` tokens are generated or `stop(curve)`
/// says so after an evaluation; pass@1 on `eval_set` every o.eval_every tokens. A point's
/// seconds are training time only (evaluations excluded), so equal-time comparisons are fair.
template <class Model, class Stop>
std::vector<point> run_rl(const char* name, bool search, rl_state<Model>& s, const xm::byte_tokenizer& tok,
                          const std::vector<rlvr::example>& pool, const std::vector<rlvr::example>& eval_set,
                          const options& o, std::int64_t budget, Stop&& stop) {
  xplor::rl::loss_options loss;  // dapo token mean, no KL
  loss.epsilon_high = 0.28f;
  double train_seconds = 0;
  std::vector<point> curve{{0, pass_at_1(s.model, tok, eval_set), 0.0}};
  std::int64_t used = 0, next_eval = o.eval_every;
  double found = 0, sampled = 0;
  while (used < budget) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<rlvr::example> batch;
    for (int k = 0; k < o.prompts; ++k) batch.push_back(pool[s.cursor++ % pool.size()]);
    const std::uint64_t step_seed = o.seed * 1000003ULL + static_cast<std::uint64_t>(s.step++);
    step_data d = search ? search_step(s.model, tok, batch, o, step_seed)
                         : grpo_step(s.model, tok, batch, o, step_seed);
    loss.num_items_in_batch = static_cast<double>(d.completion_tokens);
    examples::policy_update(s.model, s.opt, o.lr, d.seqs, loss, 32, static_cast<std::int32_t>(tok.pad()));
    train_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    used += d.tokens;
    found += d.correct;
    sampled += d.total;
    std::fprintf(stderr, "\r%-10s step %4lld  tokens %7lld / %lld  train acc %.2f  ", name,
                 static_cast<long long>(s.step), static_cast<long long>(used), static_cast<long long>(budget),
                 d.total > 0 ? d.correct / d.total : 0.0);
    if (used >= next_eval || used >= budget) {
      curve.push_back({used, pass_at_1(s.model, tok, eval_set), train_seconds, found, sampled});
      while (next_eval <= used) next_eval += o.eval_every;
      if (stop(curve)) break;
    }
  }
  std::fputc('\n', stderr);
  return curve;
}

/// The plateau rule: the last `patience` evaluations gained at most `delta` over the best pass@1
/// before them.
bool plateaued(const std::vector<point>& curve, int patience, double delta) {
  const auto k = static_cast<std::size_t>(patience);
  if (curve.size() <= k) return false;
  double before = 0, recent = 0;
  for (std::size_t i = 0; i < curve.size(); ++i) {
    double& best = i + k < curve.size() ? before : recent;
    best = std::max(best, curve[i].pass1);
  }
  return recent <= before + delta;
}

/// Mean pass@1 of the last k evaluations (one evaluation of 200 problems x 4 samples has a
/// standard error of about 1.5 points; the mean of three steadies a comparison).
double tail_mean(const std::vector<point>& curve, std::size_t k) {
  const std::size_t n = std::min(k, curve.size());
  double sum = 0;
  for (std::size_t i = curve.size() - n; i < curve.size(); ++i) sum += curve[i].pass1;
  return sum / static_cast<double>(n);
}

/// pass@1 of the last evaluation within `seconds` of training.
double pass1_within(const std::vector<point>& curve, double seconds) {
  double v = curve.front().pass1;
  for (const auto& p : curve)
    if (p.seconds <= seconds) v = p.pass1;
  return v;
}

void write_curves(const fs::path& file,
                  std::initializer_list<std::pair<const char*, const std::vector<point>*>> runs) {
  std::ofstream tsv(file);
  tsv << "# method\ttokens\tpass1\tseconds\n";
  for (const auto& [name, c] : runs)
    for (const auto& p : *c) tsv << name << '\t' << p.tokens << '\t' << p.pass1 << '\t' << p.seconds << '\n';
}

/// The whole comparison on one kind of model; false when a metric is not finite or the plot fails.
template <class Model>
bool run(const options& o) {
  fs::create_directories(o.out);
  const xm::byte_tokenizer tok;
  Model model = make_model<Model>(o.seed);
  const auto t0 = std::chrono::steady_clock::now();
  if (!o.sft_from.empty()) {
    xm::load_checkpoint(o.sft_from, model);
  } else {
    xm::adamw opt(model.layout(), {.lr = 3e-3f, .weight_decay = 0.0f});
    const xm::cosine_schedule lr{.max_lr = 3e-3f,
                                 .min_lr = 3e-4f,
                                 .warmup_steps = std::min(20, o.sft_steps / 2),
                                 .total_steps = std::max(o.sft_steps, std::min(20, o.sft_steps / 2) + 1)};
    for (int step = 0; step < o.sft_steps; ++step) {
      const float l =
          rlvr::sft_step(model, opt, lr(step), tok, o.seed, step, {.batch_size = 32, .idk_rate = 0.1});
      std::fprintf(stderr, "\rSFT step %4d / %d  loss %.3f  ", step + 1, o.sft_steps, static_cast<double>(l));
    }
    std::fputc('\n', stderr);
    xm::save_checkpoint(fs::path(o.out) / "sft.safetensors", model, nullptr, {});
  }
  const double sft_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Training prompts and held-out problems: hard levels, training templates, different streams.
  const auto pool =
      rlvr::draw_examples(o.seed, 0xd5000001ULL, 4096, 0, rlvr::num_train_templates, o.level_lo, o.level_hi);
  const auto held_out = rlvr::draw_examples(o.seed, 0xd5000002ULL, o.eval, 0, rlvr::num_train_templates,
                                            o.level_lo, o.level_hi);

  const auto never = [](const std::vector<point>&) { return false; };
  std::vector<point> plateau;  // --plateau: GRPO's first phase, on the validation set
  rl_state<Model> start = fresh_state(model, o);
  if (o.plateau) {
    const auto validation = rlvr::draw_examples(o.seed, 0xd5000003ULL, o.eval, 0, rlvr::num_train_templates,
                                                o.level_lo, o.level_hi);
    plateau = run_rl("GRPO", false, start, tok, pool, validation, o, o.plateau_max,
                     [&o](const std::vector<point>& c) { return plateaued(c, o.patience, o.plateau_delta); });
    xm::save_checkpoint(fs::path(o.out) / "plateau.safetensors", start.model, &start.opt, {});
  }
  rl_state<Model> grpo_state = start, search_state = start;  // both continue from the same state
  const auto grpo = run_rl("GRPO", false, grpo_state, tok, pool, held_out, o, o.budget, never);
  const auto search = run_rl("DeepSearch", true, search_state, tok, pool, held_out, o, o.budget, never);

  std::printf(
      "deepsearch_arith: pass@1 (mean of 4 samples at T = 1) on %d held-out problems of levels %d-%d, seed "
      "%llu\n",
      o.eval, o.level_lo, o.level_hi, static_cast<unsigned long long>(o.seed));
  std::printf("model: %s; SFT: %d steps, %.0f s\n\n", examples::describe(model.config()).c_str(), o.sft_steps,
              sft_seconds);
  if (o.plateau) {
    const bool found_plateau = plateaued(plateau, o.patience, o.plateau_delta);
    std::printf(
        "GRPO to a plateau (pass@1 on %d validation problems):\n\n| rollout tokens | pass@1 "
        "|\n|---:|---:|\n",
        o.eval);
    for (const auto& p : plateau) std::printf("| %lld | %.3f |\n", static_cast<long long>(p.tokens), p.pass1);
    std::printf("\n%s after %lld tokens (%lld steps, %.0f s of training); both runs continue from there\n\n",
                found_plateau ? "plateau" : "no plateau (stopped at --plateau-max)",
                static_cast<long long>(plateau.back().tokens), static_cast<long long>(start.step),
                plateau.back().seconds);
    write_curves(fs::path(o.out) / "plateau.tsv", {{"grpo", &plateau}});
  }
  std::printf(
      "| %srollout tokens (GRPO / DeepSearch) | GRPO pass@1 | DeepSearch pass@1 |\n|---:|---:|---:|\n",
      o.plateau ? "extra " : "");
  write_curves(fs::path(o.out) / "curves.tsv", {{"grpo", &grpo}, {"deepsearch", &search}});
  // Both runs evaluate when their generated tokens first reach each multiple of --eval-every.
  for (std::size_t i = 0; i < std::min(grpo.size(), search.size()); ++i)
    std::printf("| %lld / %lld | %.3f | %.3f |\n", static_cast<long long>(grpo[i].tokens),
                static_cast<long long>(search[i].tokens), grpo[i].pass1, search[i].pass1);
  std::printf(
      "\ncorrect among the sampled responses over the run: GRPO %.3f (%.0f of %.0f rollouts), DeepSearch "
      "%.3f (%.0f of %.0f trajectories)\n",
      grpo.back().found / std::max(1.0, grpo.back().sampled), grpo.back().found, grpo.back().sampled,
      search.back().found / std::max(1.0, search.back().sampled), search.back().found, search.back().sampled);
  std::printf("mean pass@1 of the last 3 evaluations: GRPO %.3f, DeepSearch %.3f (start %.3f)\n",
              tail_mean(grpo, 3), tail_mean(search, 3), grpo.front().pass1);
  const double equal_time = std::min(grpo.back().seconds, search.back().seconds);
  std::printf(
      "training time: GRPO %.0f s, DeepSearch %.0f s; pass@1 at equal time (%.0f s): GRPO %.3f, "
      "DeepSearch %.3f\n",
      grpo.back().seconds, search.back().seconds, equal_time, pass1_within(grpo, equal_time),
      pass1_within(search, equal_time));
  bool finite = true;
  for (const auto* c : {&grpo, &search})
    for (const auto& p : *c) finite = finite && std::isfinite(p.pass1);
  if (o.plot) {
    const std::string dir = o.out, png = dir + "/pass_at_1.png", script = dir + "/pass_at_1.gp";
    std::ofstream gp(script);
    gp << "set terminal pngcairo size 800,500\nset output '" << png << "'\n"
       << "set xlabel '"
       << (o.plateau ? "rollout tokens generated after the plateau" : "rollout tokens generated")
       << "'\nset ylabel 'pass@1 (T = 1, held-out)'\nset key bottom "
          "right\n"
       << "set datafile separator '\\t'\n"
       << "plot '< grep ^grpo " << dir << "/curves.tsv' using 2:3 with linespoints title 'GRPO', "
       << "'< grep ^deepsearch " << dir << "/curves.tsv' using 2:3 with linespoints title 'DeepSearch'\n";
    gp.close();
    if (!xplor::examples::render_plot(script, png, dir + "/curves.tsv")) return false;
  }
  if (!finite) std::fprintf(stderr, "deepsearch_arith: a metric is not finite\n");
  return finite;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  try {
    if (!(o.model == "bdh" ? run<xm::bdh>(o) : run<xm::transformer>(o))) return 1;
    std::printf("deepsearch_arith: ok\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "deepsearch_arith: %s\n", e.what());
    return 1;
  }
  return 0;
}
