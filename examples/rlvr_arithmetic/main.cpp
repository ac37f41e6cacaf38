// rlvr_arithmetic: RL with verifiable rewards, end to end, on xplor's reference transformer (or,
// with --model bdh, on the Dragon Hatchling at about the same parameter count).
//
//   1. Data (data.hpp): +, -, * problems in 5 difficulty levels (L-digit operands; * is L digits x
//      1 digit), answers in \boxed{}; digit-by-digit chain-of-thought targets; 8 instruction
//      templates x 3 operator vocabularies for training, 2 templates held out for evaluation.
//   2. SFT (levels 1-4 only): the byte-level transformer learns the CoT format from fresh examples,
//      stopped early (partial accuracy); 10% of targets are \boxed{I don't know}, so abstention is
//      in the model's distribution for RL to find. Level 5 stays beyond the SFT data.
//   3. RL from the SFT checkpoint, twice: TruthRL's ternary reward (abstain 0) and the binary
//      reward (abstain -1, "vanilla RL"); GRPO advantages over knapsack-allocated rollout groups,
//      the DAPO token-mean clipped loss (TRL's default loss_type).
//   4. Evaluation on held-out problems with the training templates and with the held-out
//      templates, greedy (TruthRL's protocol) and sampled at T = 1 (4 per problem, DAPO's avg@k),
//      per level: accuracy, abstention, hallucination, truthfulness (TruthRL §2.1).
//
// Outputs in --out (per seed, seed<S>/): metrics.jsonl (one line per step and per evaluation),
// curves.png (gnuplot), sft.safetensors, rl_ternary.safetensors, rl_binary.safetensors and the
// in-progress checkpoints *.last.safetensors that --resume continues from. Run with --help.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>
#include <xplor/core/json_guard.hpp>
#include <xplor/sample/brorl.hpp>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/cli.hpp"
#include "common/gnuplot.hpp"
#include "common/models.hpp"
#include "data.hpp"
#include "train.hpp"

namespace {

namespace fs = std::filesystem;
namespace xm = xplor::model;
using json = nlohmann::json;

struct options {
  std::string out = "rlvr_out";
  std::uint64_t seed = 1;
  int seeds = 1;
  bool resume = false, plot = true;
  int sft_steps = 1200, rl_steps = 60;
  bool run_ternary = true, run_binary = true;
  std::string loss = "dapo";
  int prompts = 32, rollouts = 8;
  bool brorl = false, knapsack = true;
  double idk_rate = 0.1;
  int eval_per_cell = 20;
  std::string model = "transformer";  // or "bdh"
  int d_model = 128, layers = 3, heads = 4;
  int bdh_multiplier = 0;  // 0: the one that matches the transformer's parameter count
  int sft_batch = 32;
  int pool = 1024;
  int threads = 0;
  std::int64_t stop_after = -1;
  int checkpoint_every = 20;
  float sft_lr = 3e-3f, rl_lr = 1e-4f;
  float temperature = 1.0f;
  std::string sft_from;
};

options parse(int argc, char** argv) {
  namespace ex = xplor::examples;
  options o;
  bool quick = false;
  std::string reward = "both";
  // The learning rates and the temperature are read as doubles and then rounded to float, as the
  // flags always were, so a given flag yields the same float and the same checkpoints.
  double sft_lr = o.sft_lr, rl_lr = o.rl_lr, temperature = o.temperature;
  CLI::App app{
      "RL with verifiable rewards end to end on xplor's reference transformer: SFT, then GRPO with "
      "TruthRL's ternary and the binary reward, evaluated on held-out problems.",
      "rlvr_arithmetic"};
  app.add_option("--out", o.out, "output folder (default rlvr_out); results go to DIR/seed<S>/")
      ->type_name("DIR");
  ex::add_integer(app, "--seed", o.seed, 0, 1000000000000000, "first seed (default 1)")->type_name("S");
  ex::add_integer(app, "--seeds", o.seeds, 1, 100,
                  "run seeds S .. S+K-1 and print the mean and spread over them (default 1)")
      ->type_name("K");
  app.add_flag("--resume", o.resume,
               "continue from the checkpoints in DIR (finished stages are only re-evaluated)");
  app.add_flag(
      "--quick", quick,
      "a tiny configuration of every stage (the CTest run, a few seconds); flags given with it still "
      "apply");
  ex::add_integer(app, "--sft-steps", o.sft_steps, 0, 10000000, "SFT steps (default 1200)")->type_name("N");
  ex::add_integer(app, "--rl-steps", o.rl_steps, 0, 10000000, "RL steps per reward (default 60)")
      ->type_name("N");
  app.add_option("--reward", reward, "ternary | binary | both (default both: the TruthRL comparison)")
      ->type_name("R")
      ->check(CLI::IsMember({"ternary", "binary", "both"}));
  app.add_option("--loss", o.loss,
                 "grpo | bnpo | dr_grpo | dapo or a verl name (default dapo, TRL's default)")
      ->type_name("L")
      ->check(CLI::Validator(
          [](std::string& name) -> std::string {
            try {
              (void)xplor::rl::loss_type_from_name(name);
            } catch (const xplor::error&) {
              return "needs a TRL or verl name (grpo, bnpo, dr_grpo, dapo, token-mean, ...), got '" + name +
                     "'";
            }
            return {};
          },
          ""));
  ex::add_integer(app, "--prompts", o.prompts, 1, 4096, "prompts per RL step (default 32)")->type_name("P");
  ex::add_integer(app, "--rollouts", o.rollouts, 2, 4096,
                  "mean rollouts per prompt; the step's budget is P N (default 8)")
      ->type_name("N");
  app.add_flag("--brorl", o.brorl, "BroRL-style broad rollouts: N x 8, P / 2, lr x sqrt(samples ratio)");
  app.add_flag_callback(
      "--no-knapsack", [&o] { o.knapsack = false; },
      "the same N for every prompt instead of the knapsack allocation");
  ex::add_number(app, "--idk-rate", o.idk_rate, 0.0, 1.0,
                 "fraction of SFT targets that abstain (default 0.1)")
      ->type_name("F");
  ex::add_integer(app, "--eval-per-cell", o.eval_per_cell, 1, 100000,
                  "evaluation problems per (level, operation) and template set (default 20)")
      ->type_name("N");
  app.add_option("--model", o.model,
                 "transformer | bdh (the Dragon Hatchling, same width, layers and heads, its neuron "
                 "multiplier chosen for the transformer's parameter count; default transformer)")
      ->type_name("M")
      ->check(CLI::IsMember({"transformer", "bdh"}));
  ex::add_integer(app, "--d-model", o.d_model, 8, 4096, "model width (default 128)")->type_name("C");
  ex::add_integer(app, "--layers", o.layers, 1, 64, "transformer blocks or BDH layers (default 3)")
      ->type_name("L");
  ex::add_integer(app, "--heads", o.heads, 1, 64, "attention heads (default 4)")->type_name("H");
  ex::add_integer(app, "--bdh-multiplier", o.bdh_multiplier, 1, 1024,
                  "BDH's mlp_internal_dim_multiplier (neurons = M x d-model; default: the parameter "
                  "count of the transformer of the same width)")
      ->type_name("M");
  ex::add_integer(app, "--threads", o.threads, 1, 1024,
                  "OpenMP threads (default: OMP_NUM_THREADS or all cores)")
      ->type_name("T");
  ex::add_integer(app, "--pool", o.pool, 1, 10000000,
                  "RL training problems, revisited each epoch (default 1024)")
      ->type_name("N");
  ex::add_number(app, "--rl-lr", rl_lr, 1e-9, 1.0, "peak RL learning rate (default 1e-4)")->type_name("LR");
  ex::add_number(app, "--sft-lr", sft_lr, 1e-9, 1.0, "peak SFT learning rate (default 3e-3)")
      ->type_name("LR");
  ex::add_number(app, "--temperature", temperature, 1e-3, 100.0,
                 "sampling temperature of the RL rollouts (default 1)")
      ->type_name("T");
  app.add_option("--sft-from", o.sft_from, "skip SFT: start from this SFT checkpoint (same model shape)")
      ->type_name("FILE")
      ->check(ex::existing_file());
  ex::add_integer(app, "--stop-after", o.stop_after, 0, 1000000000,
                  "stop after N training steps of this invocation (to test --resume)")
      ->type_name("N");
  app.add_flag_callback(
      "--no-plot", [&o] { o.plot = false; }, "do not call gnuplot");
  ex::parse_flags(app, argc, argv);
  o.run_ternary = reward != "binary";
  o.run_binary = reward != "ternary";
  o.sft_lr = static_cast<float>(sft_lr);
  o.rl_lr = static_cast<float>(rl_lr);
  o.temperature = static_cast<float>(temperature);
  if (quick) {
    const auto unset = [&app](const char* flag) { return app.count(flag) == 0; };
    if (unset("--sft-steps")) o.sft_steps = 6;
    if (unset("--rl-steps")) o.rl_steps = 3;
    if (unset("--eval-per-cell")) o.eval_per_cell = 1;
    if (unset("--d-model")) o.d_model = 32;
    if (unset("--layers")) o.layers = 1;
    if (unset("--heads")) o.heads = 2;
    if (unset("--prompts")) o.prompts = 4;
    if (unset("--rollouts")) o.rollouts = 8;
    o.sft_batch = 8;
    o.pool = 8;
    o.checkpoint_every = 2;
  }
  if (o.d_model % o.heads != 0 || (o.d_model / o.heads) % 2 != 0)
    ex::usage_error(app, "--heads " + std::to_string(o.heads) + " must divide --d-model " +
                             std::to_string(o.d_model) + " into an even head size");
  if (o.brorl) {
    o.rollouts *= 8;
    o.prompts = std::max(1, o.prompts / 2);
  }
  if (o.pool < o.prompts) o.pool = o.prompts;
  o.pool -= o.pool % o.prompts;
  return o;
}

// ---------------------------------------------------------------------------------------------
// Progress bar on stderr: one line, rewritten at most every 0.25 s.

/// The ETA weighs the remaining SFT and RL steps by the measured mean time of each kind (an RL step
/// is guessed at 8 SFT steps until one has run); the bar shows the fraction of steps done.
class progress {
 public:
  enum kind { sft = 0, rl = 1 };
  progress(std::int64_t sft_steps, std::int64_t rl_steps)
      : total_{sft_steps, rl_steps}, start_(clock::now()) {}
  /// Steps a resumed run does not repeat leave the total.
  void skip(kind k, std::int64_t steps) { total_[k] = std::max<std::int64_t>(total_[k] - steps, 0); }
  void advance(kind k, double seconds, const std::string& what) {
    ++done_[k];
    time_[k] += seconds;
    const auto now = clock::now();
    const std::int64_t done = done_[0] + done_[1], total = std::max<std::int64_t>(total_[0] + total_[1], 1);
    if (now - last_ < std::chrono::milliseconds(250) && done < total) return;
    last_ = now;
    const double mean_sft = done_[0] > 0 ? time_[0] / double(done_[0]) : 0.0;
    const double mean_rl = done_[1] > 0 ? time_[1] / double(done_[1]) : 8.0 * mean_sft;
    const double eta = double(std::max<std::int64_t>(total_[0] - done_[0], 0)) * mean_sft +
                       double(std::max<std::int64_t>(total_[1] - done_[1], 0)) * mean_rl;
    const double frac = std::min(1.0, double(done) / double(total));
    const int width = 30, fill = static_cast<int>(frac * width);
    std::fprintf(stderr, "\r[%s%s] %3d%% %s | %s elapsed, ETA %s   ",
                 std::string(static_cast<std::size_t>(fill), '#').c_str(),
                 std::string(static_cast<std::size_t>(width - fill), '.').c_str(),
                 static_cast<int>(frac * 100), what.c_str(), clock_text(elapsed()).c_str(),
                 clock_text(eta).c_str());
    std::fflush(stderr);
  }
  void finish() { std::fprintf(stderr, "\n"); }
  double elapsed() const { return std::chrono::duration<double>(clock::now() - start_).count(); }

 private:
  using clock = std::chrono::steady_clock;
  static std::string clock_text(double s) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
    return buf;
  }
  std::int64_t total_[2], done_[2] = {0, 0};
  double time_[2] = {0.0, 0.0};
  clock::time_point start_, last_{};
};

// ---------------------------------------------------------------------------------------------
// Metrics log (JSONL). On --resume, lines of steps that the checkpoints do not cover are dropped.

struct metrics_log {
  fs::path path;
  std::vector<json> lines;
  void write(const json& j) {
    lines.push_back(j);
    std::ofstream f(path, std::ios::app);
    f << j.dump() << '\n';
  }
  /// Keeps the training lines of each stage below its resume step; rewrites the file. A line
  /// that is not one of ours (not a JSON object with a string "type" and "stage" and, for
  /// training lines, an integer "step") is an error naming the file and line: the curves and the
  /// completeness check would be wrong without it.
  void restore(const std::map<std::string, std::int64_t>& start_step) {
    lines.clear();
    if (std::ifstream f(path); f) {
      std::string line;
      for (std::size_t number = 1; std::getline(f, line); ++number) {
        if (line.empty()) continue;
        const auto bad = [&](const std::string& what) {
          throw xplor::error("--resume: '" + path.string() + "' line " + std::to_string(number) + ": " +
                             what + " (fix or delete the line, or start again without --resume)");
        };
        if (const std::string problem = xplor::detail::json_guard_problem(line, 4); !problem.empty())
          bad("not a metrics line (" + problem + ")");
        json j = json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object()) bad("not a JSON object");
        if (!j.contains("type") || !j["type"].is_string() || !j.contains("stage") || !j["stage"].is_string())
          bad("no string \"type\" and \"stage\"");
        if (j["type"] != "train") continue;
        if (!j.contains("step") || !j["step"].is_number_integer())
          bad("a train line without an integer \"step\"");
        const auto it = start_step.find(j["stage"].get<std::string>());
        if (it != start_step.end() && j["step"].get<std::int64_t>() < it->second) lines.push_back(j);
      }
    }
    std::ofstream f(path, std::ios::trunc);
    for (const json& j : lines) f << j.dump() << '\n';
  }
};

// ---------------------------------------------------------------------------------------------
// Checkpoints: the stage's final file, and <stage>.last.safetensors every few steps with the
// optimizer, the step and the success tracker's visits (so a resumed run repeats the same steps).

struct resume_point {
  std::int64_t step = 0;
  std::vector<std::pair<std::int64_t, std::vector<double>>> visits;
};

template <class Model>
void save_progress(const fs::path& path, const Model& model, xm::adamw& opt, std::int64_t step,
                   const std::vector<std::pair<std::int64_t, std::vector<double>>>& visits) {
  json v = json::array();
  for (const auto& [id, r] : visits) v.push_back({id, r});
  xm::save_checkpoint(path, model, &opt, {{"rlvr.step", std::to_string(step)}, {"rlvr.tracker", v.dump()}});
}

[[noreturn]] void resume_fail(const fs::path& path, const std::string& what) {
  throw xplor::error("--resume: '" + path.string() + "': " + what +
                     " (use another --out, or start again without --resume)");
}

/// The step a checkpoint records (metadata "rlvr.step"), strictly: decimal digits only, in
/// [0, max] (the stage's configured steps). "2junk", "-3" or "100000" are errors, not 2, a
/// restart or a finished stage.
std::int64_t recorded_step(const std::map<std::string, std::string>& meta, const fs::path& path,
                           std::int64_t max) {
  const auto it = meta.find("rlvr.step");
  if (it == meta.end())
    resume_fail(path, "no rlvr.step in its metadata (not an rlvr_arithmetic checkpoint?)");
  const std::string& text = it->second;
  std::int64_t step = -1;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), step);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || text[0] == '-')
    resume_fail(path, "rlvr.step = '" + xplor::detail::json_guard_brief(text) + "' is not a step count");
  if (step > max)
    resume_fail(
        path, "rlvr.step = " + text + " is beyond the " + std::to_string(max) + " steps the options ask for");
  return step;
}

/// Loads a .last checkpoint (model, optimizer, step, the tracker's visits), strictly; its step
/// must be `expected` (what the stage plan read from the same file).
template <class Model>
resume_point load_progress(const fs::path& path, Model& model, xm::adamw& opt, std::int64_t expected,
                           std::int64_t max) {
  const auto meta = xm::load_checkpoint(path, model, &opt);
  resume_point r;
  r.step = recorded_step(meta, path, max);
  if (r.step != expected)
    resume_fail(path, "changed while resuming (rlvr.step " + std::to_string(r.step) + ")");
  const auto it = meta.find("rlvr.tracker");
  if (it == meta.end()) resume_fail(path, "no rlvr.tracker in its metadata");
  // [[problem id, [visit outcomes...]], ...]
  const auto bad_tracker = [&] { resume_fail(path, "rlvr.tracker is not a list of [id, [numbers]] pairs"); };
  if (!xplor::detail::json_guard_problem(it->second, 3).empty()) bad_tracker();
  const json tracker = json::parse(it->second, nullptr, false);
  if (tracker.is_discarded() || !tracker.is_array()) bad_tracker();
  for (const json& e : tracker) {
    if (!e.is_array() || e.size() != 2 || !e[0].is_number_integer() || !e[1].is_array()) bad_tracker();
    std::vector<double> visits;
    for (const json& x : e[1]) {
      if (!x.is_number() || !std::isfinite(x.get<double>())) bad_tracker();
      visits.push_back(x.get<double>());
    }
    r.visits.emplace_back(e[0].get<std::int64_t>(), std::move(visits));
  }
  return r;
}

// ---------------------------------------------------------------------------------------------

/// Evaluations of one stage keyed "<set>/<decoding>": set = problems (held-out problems, training
/// templates) or templates (held-out templates); decoding = greedy or sampled (T = 1).
using stage_eval = std::map<std::string, rlvr::eval_result>;
inline constexpr int kEvalSamples = 4;

json metrics_json(const xplor::reward::truth_metrics& m) {
  return {{"n", m.total()},
          {"accuracy", m.accuracy()},
          {"abstention", m.abstention_rate()},
          {"hallucination", m.hallucination_rate()},
          {"truthfulness", m.truthfulness()}};
}

/// BDH only: the fraction of the H N neurons active (x_sparse > 0, y_sparse > 0) per token, per
/// layer, averaged over the tokens of held-out problems with their chain of thought.
struct layer_activity {
  std::vector<double> x, y;
};

struct seed_result {
  std::map<std::string, stage_eval> evals;         // "sft", "rl_ternary", "rl_binary"
  std::map<std::string, layer_activity> activity;  // BDH only, per stage
  bool finite = true;
  bool complete = true;
};

xm::transformer_config model_config(const options& o) {
  xm::transformer_config c;
  c.vocab_size = xm::byte_tokenizer{}.vocab_size();
  c.d_model = o.d_model;
  c.n_layers = o.layers;
  c.n_heads = o.heads;
  c.d_ff = 3 * o.d_model;
  c.max_seq_len = 128;
  return c;
}

template <class Model>
Model make_model(const options& o, std::uint64_t seed);
template <>
xm::transformer make_model(const options& o, std::uint64_t seed) {
  return xm::transformer(model_config(o), seed);
}
template <>
xm::bdh make_model(const options& o, std::uint64_t seed) {
  return xm::bdh(xm::bdh_matching(model_config(o), o.bdh_multiplier), seed);
}

template <class Model>
struct runner {
  const options& o;
  std::uint64_t seed;
  fs::path dir;
  progress& bar;
  std::int64_t& steps_this_run;
  metrics_log log;
  xm::byte_tokenizer tok;
  std::vector<rlvr::example> eval_problems, eval_templates, pool;
  seed_result result;
  std::map<std::string, std::vector<json>> curves;

  bool stop_requested() const { return o.stop_after >= 0 && steps_this_run >= o.stop_after; }

  /// BDH's activation sparsity over (up to) 64 held-out problems, teacher-forced on the prompt and
  /// its chain of thought, one sequence per forward (no padding rows in the statistics).
  layer_activity measure_activity(xm::bdh& model) {
    const int L = model.config().n_layer;
    layer_activity a{std::vector<double>(static_cast<std::size_t>(L)),
                     std::vector<double>(static_cast<std::size_t>(L))};
    std::int64_t rows = 0;
    for (std::size_t i = 0; i < std::min<std::size_t>(64, eval_problems.size()); ++i) {
      auto tokens = tok.encode(eval_problems[i].prompt);
      const auto cot = tok.encode(rlvr::chain_of_thought(eval_problems[i].p));
      tokens.insert(tokens.end(), cot.begin(), cot.end());
      const auto T = static_cast<std::int64_t>(tokens.size());
      model.forward({tokens, 1, T, {}, {}, {}});
      const xm::bdh_activity act = model.activity();
      for (int l = 0; l < L; ++l)
        for (std::int64_t r = 0; r < T; ++r) {
          a.x[static_cast<std::size_t>(l)] += act.x(l, r);
          a.y[static_cast<std::size_t>(l)] += act.y(l, r);
        }
      rows += T;
    }
    for (int l = 0; l < L; ++l) {
      a.x[static_cast<std::size_t>(l)] /= double(std::max<std::int64_t>(rows, 1));
      a.y[static_cast<std::size_t>(l)] /= double(std::max<std::int64_t>(rows, 1));
    }
    return a;
  }

  stage_eval evaluate_stage(const std::string& stage, Model& model) {
    stage_eval e;
    for (const char* set : {"problems", "templates"})
      for (const char* decoding : {"greedy", "sampled"}) {
        const auto& examples = std::string(set) == "problems" ? eval_problems : eval_templates;
        const int samples = std::string(decoding) == "greedy" ? 0 : kEvalSamples;
        const rlvr::eval_result r = rlvr::evaluate(model, tok, examples, 80, samples, seed + 0xe7a1);
        json j{{"type", "eval"},       {"stage", stage},     {"set", set},
               {"decoding", decoding}, {"samples", samples}, {"all", metrics_json(r.all())}};
        for (int l = 0; l < rlvr::num_levels; ++l)
          j["level" + std::to_string(l + 1)] = metrics_json(r.per_level[static_cast<std::size_t>(l)]);
        if constexpr (std::is_same_v<Model, xm::bdh>) {
          if (e.empty()) {  // once per stage, on the first evaluation line
            const layer_activity a = measure_activity(model);
            j["active_x"] = a.x;
            j["active_y"] = a.y;
            result.activity[stage] = a;
          }
        }
        log.write(j);
        for (const double x : {r.all().accuracy(), r.all().truthfulness()})
          result.finite = result.finite && std::isfinite(x);
        e[std::string(set) + "/" + decoding] = r;
      }
    result.evals[stage] = e;
    return e;
  }

  /// SFT; returns false when interrupted (--stop-after).
  bool run_sft(Model& model, std::int64_t start, xm::adamw& opt) {
    const xm::cosine_schedule lr{.max_lr = o.sft_lr,
                                 .min_lr = o.sft_lr / 10,
                                 .warmup_steps = std::min(20, o.sft_steps / 2),
                                 .total_steps = std::max(o.sft_steps, std::min(20, o.sft_steps / 2) + 1)};
    const rlvr::sft_options so{.batch_size = o.sft_batch, .idk_rate = o.idk_rate};
    for (std::int64_t step = start; step < o.sft_steps; ++step) {
      if (stop_requested()) return false;
      const auto t0 = std::chrono::steady_clock::now();
      const float loss = rlvr::sft_step(model, opt, lr(step), tok, seed, step, so);
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      result.finite = result.finite && std::isfinite(loss);
      json j{{"type", "train"}, {"stage", "sft"}, {"step", step},
             {"loss", loss},    {"lr", lr(step)}, {"seconds", dt}};
      log.write(j);
      curves["sft"].push_back(j);
      ++steps_this_run;
      char what[96];
      std::snprintf(what, sizeof what, "seed %llu sft %lld/%d loss %.3f",
                    static_cast<unsigned long long>(seed), static_cast<long long>(step + 1), o.sft_steps,
                    static_cast<double>(loss));
      bar.advance(progress::sft, dt, what);
      if ((step + 1) % o.checkpoint_every == 0 && step + 1 < o.sft_steps)
        save_progress(dir / "sft.last.safetensors", model, opt, step + 1, {});
    }
    xm::save_checkpoint(dir / "sft.safetensors", model, nullptr,
                        {{"rlvr.step", std::to_string(o.sft_steps)}});
    return true;
  }

  bool run_rl(const std::string& stage, xplor::reward::reward_variant variant, Model& model, xm::adamw& opt,
              resume_point rp) {
    rlvr::rl_options ro;
    ro.prompts_per_step = o.prompts;
    ro.num_generations = o.rollouts;
    ro.knapsack = o.knapsack;
    ro.n_max = std::min(4 * o.rollouts, 128);
    ro.reward = variant;
    ro.temperature = o.temperature;
    ro.loss.type = xplor::rl::loss_type_from_name(o.loss);
    if (ro.loss.type == xplor::rl::loss_type::dr_grpo)
      ro.loss.max_completion_length = ro.max_completion_length;
    ro.loss.epsilon_high = 0.28f;  // DAPO clip-higher
    float base_lr = o.rl_lr;
    if (o.brorl) {
      // BroRL: N x 8 and half the prompts = 4x the samples per step; lr scaled by sqrt of that ratio.
      xplor::sample::brorl_preset preset;
      preset.num_generations = o.rollouts;
      preset.prompts_per_step = o.prompts;
      preset.base_num_generations = o.rollouts / 8;
      preset.base_prompts_per_step = o.prompts * 2;
      base_lr = static_cast<float>(preset.learning_rate(o.rl_lr));
    }
    const xm::cosine_schedule lr{.max_lr = base_lr,
                                 .min_lr = base_lr,
                                 .warmup_steps = std::min(5, o.rl_steps / 2),
                                 .total_steps = std::max(o.rl_steps, std::min(5, o.rl_steps / 2) + 1)};
    xplor::budget::tracker_options to;
    to.rewards = xplor::budget::reward_scale::ternary;  // {-1, 0, 1}: success = +1
    xplor::budget::success_tracker tracker(to);
    for (const auto& [id, r] : rp.visits) tracker.record(id, r);
    for (std::int64_t step = rp.step; step < o.rl_steps; ++step) {
      if (stop_requested()) return false;
      const auto t0 = std::chrono::steady_clock::now();
      const rlvr::rl_stats s = rlvr::rl_step(model, opt, lr(step), tok, pool, tracker, seed, step, ro);
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      rp.visits.insert(rp.visits.end(), s.visits.begin(), s.visits.end());
      result.finite = result.finite && std::isfinite(s.loss) && std::isfinite(s.mean_reward);
      json j{{"type", "train"},
             {"stage", stage},
             {"step", step},
             {"reward", s.mean_reward},
             {"accuracy", s.accuracy},
             {"abstention", s.abstention},
             {"hallucination", s.hallucination},
             {"frac_zero_std", s.frac_zero_std},
             {"loss", s.loss},
             {"rollouts", s.rollouts},
             {"tokens", s.tokens},
             {"min_n", s.min_n},
             {"max_n", s.max_n},
             {"lr", lr(step)},
             {"seconds", dt}};
      log.write(j);
      curves[stage].push_back(j);
      ++steps_this_run;
      char what[128];
      std::snprintf(what, sizeof what, "seed %llu %s %lld/%d reward %+.2f",
                    static_cast<unsigned long long>(seed), stage.c_str(), static_cast<long long>(step + 1),
                    o.rl_steps, s.mean_reward);
      bar.advance(progress::rl, dt, what);
      if ((step + 1) % o.checkpoint_every == 0 && step + 1 < o.rl_steps)
        save_progress(dir / (stage + ".last.safetensors"), model, opt, step + 1, rp.visits);
    }
    xm::save_checkpoint(dir / (stage + ".safetensors"), model, nullptr,
                        {{"rlvr.step", std::to_string(o.rl_steps)}});
    return true;
  }
};

}  // namespace

namespace {

std::int64_t stage_steps(const options& o, const std::string& stage) {
  return stage == "sft" ? o.sft_steps : o.rl_steps;
}

/// Writes the learning curves (.dat), a gnuplot script and the PNG.
void plot_curves(const fs::path& dir, const std::map<std::string, std::vector<json>>& curves,
                 std::uint64_t seed) {
  const fs::path sft = dir / "curves_sft.dat", rl = dir / "curves_rl.dat", gp = dir / "curves.gp",
                 png = dir / "curves.png";
  {
    std::ofstream f(sft);
    f << "# step loss\n";
    if (const auto it = curves.find("sft"); it != curves.end())
      for (const json& j : it->second) f << j["step"] << ' ' << j["loss"] << '\n';
  }
  {
    std::ofstream f(rl);
    f << "# step, then reward accuracy abstention hallucination for ternary and for binary (NaN: not run)\n";
    std::int64_t n = 0;
    for (const char* st : {"rl_ternary", "rl_binary"})
      if (const auto it = curves.find(st); it != curves.end())
        n = std::max<std::int64_t>(n, static_cast<std::int64_t>(it->second.size()));
    for (std::int64_t i = 0; i < n; ++i) {
      f << i;
      for (const char* st : {"rl_ternary", "rl_binary"}) {
        const auto it = curves.find(st);
        const bool have = it != curves.end() && i < static_cast<std::int64_t>(it->second.size());
        for (const char* k : {"reward", "accuracy", "abstention", "hallucination"}) {
          f << ' ';
          if (have)
            f << it->second[static_cast<std::size_t>(i)][k].get<double>();
          else
            f << "NaN";
        }
      }
      f << '\n';
    }
  }
  {
    std::ofstream f(gp);
    f << "set terminal pngcairo size 1400,900 font ',10'\nset output '" << png.string() << "'\n"
      << "set multiplot layout 2,2 title 'rlvr\\_arithmetic, seed " << seed
      << ": SFT, then GRPO (dapo loss, knapsack budgets) with the ternary and the binary reward'\n"
      << "set grid\nset key top right\n"
      << "set title 'SFT: cross-entropy per target token'\nset xlabel 'SFT step'\n"
      << "plot '" << sft.string() << "' using 1:2 with lines lw 1 title 'loss'\n"
      << "set title 'RL: mean reward of the rollouts'\nset xlabel 'RL step'\n"
      << "plot '" << rl.string()
      << "' using 1:2 with lines lw 2 title 'ternary (TruthRL)', '' using 1:6 with lines lw 2 title "
         "'binary'\n"
      << "set title 'RL: accuracy of the rollouts'\nset yrange [0:1]\n"
      << "plot '" << rl.string()
      << "' using 1:3 with lines lw 2 title 'ternary', '' using 1:7 with lines lw 2 title 'binary'\n"
      << "set title 'RL: abstention (solid) and hallucination (dashed) of the rollouts'\n"
      << "plot '" << rl.string()
      << "' using 1:4 with lines lw 2 lc 1 title 'ternary abstain', '' using 1:5 with lines lw 2 lc 1 dt 2 "
         "title 'ternary hallucinate', "
      << "'' using 1:8 with lines lw 2 lc 2 title 'binary abstain', '' using 1:9 with lines lw 2 lc 2 dt 2 "
         "title 'binary hallucinate'\n"
      << "unset multiplot\n";
  }
  xplor::examples::render_plot(gp.string(), png.string(), rl.string());
}

template <class Model>
std::optional<seed_result> run_seed(const options& o, std::uint64_t seed, progress& bar,
                                    std::int64_t& steps_this_run) {
  const fs::path dir = fs::path(o.out) / ("seed" + std::to_string(seed));
  fs::create_directories(dir);
  runner<Model> r{o, seed, dir, bar, steps_this_run, {}, {}, {}, {}, {}, {}, {}};
  r.log.path = dir / "metrics.jsonl";
  r.eval_problems = rlvr::eval_examples(seed, 0xe0a1, o.eval_per_cell, 0, rlvr::num_train_templates);
  r.eval_templates = rlvr::eval_examples(seed, 0xe0a2, o.eval_per_cell, rlvr::num_train_templates,
                                         static_cast<int>(rlvr::templates().size()));
  r.pool = rlvr::draw_examples(seed, 0x9001, o.pool, 0, rlvr::num_train_templates);

  std::vector<std::pair<std::string, xplor::reward::reward_variant>> rl_stages;
  if (o.run_ternary) rl_stages.emplace_back("rl_ternary", xplor::reward::reward_variant::ternary);
  if (o.run_binary) rl_stages.emplace_back("rl_binary", xplor::reward::reward_variant::binary);
  std::vector<std::string> stages{"sft"};
  for (const auto& st : rl_stages) stages.push_back(st.first);

  // Where each stage starts: 0, the step of its last checkpoint, or done.
  std::map<std::string, std::int64_t> start;
  for (const auto& st : stages) {
    start[st] = 0;
    if (!o.resume) {
      fs::remove(dir / (st + ".safetensors"));
      fs::remove(dir / (st + ".last.safetensors"));
    } else if (fs::exists(dir / (st + ".safetensors"))) {
      // A finished stage is reused only when it ran the configured number of steps.
      const fs::path file = dir / (st + ".safetensors");
      const std::int64_t steps = recorded_step(xm::read_safetensors(file).metadata, file, stage_steps(o, st));
      if (steps != stage_steps(o, st))
        resume_fail(file, "ran " + std::to_string(steps) + " steps, the options ask for " +
                              std::to_string(stage_steps(o, st)));
      start[st] = stage_steps(o, st);
    } else if (fs::exists(dir / (st + ".last.safetensors"))) {
      const fs::path file = dir / (st + ".last.safetensors");
      start[st] = recorded_step(xm::read_safetensors(file).metadata, file, stage_steps(o, st));
    }
    if (st == "sft" && !o.sft_from.empty()) start[st] = o.sft_steps;
    bar.skip(st == "sft" ? progress::sft : progress::rl, start[st]);
  }
  if (o.resume) {
    r.log.restore(start);
    for (const json& j : r.log.lines) r.curves[j["stage"].get<std::string>()].push_back(j);
  } else {
    std::ofstream(r.log.path, std::ios::trunc);
  }

  // SFT.
  Model model = make_model<Model>(o, seed);
  if (!o.sft_from.empty()) {
    xm::load_checkpoint(o.sft_from, model);
    xm::save_checkpoint(dir / "sft.safetensors", model, nullptr,
                        {{"rlvr.step", std::to_string(o.sft_steps)}});
  } else if (start["sft"] >= o.sft_steps && fs::exists(dir / "sft.safetensors")) {
    xm::load_checkpoint(dir / "sft.safetensors", model);
  } else {
    xm::adamw opt(model.layout(), {.lr = o.sft_lr, .weight_decay = 0.0f});
    resume_point rp;
    if (start["sft"] > 0)
      rp = load_progress(dir / "sft.last.safetensors", model, opt, start["sft"], o.sft_steps);
    if (!r.run_sft(model, rp.step, opt)) return std::nullopt;
    fs::remove(dir / "sft.last.safetensors");
  }
  r.evaluate_stage("sft", model);
  // RL from the SFT checkpoint, once per reward.
  for (const auto& [stage, variant] : rl_stages) {
    Model policy = make_model<Model>(o, seed);
    xm::load_checkpoint(dir / "sft.safetensors", policy);
    if (start[stage] >= o.rl_steps && fs::exists(dir / (stage + ".safetensors"))) {
      xm::load_checkpoint(dir / (stage + ".safetensors"), policy);
    } else {
      xm::adamw opt(policy.layout(), {.lr = o.rl_lr, .weight_decay = 0.0f});
      resume_point rp;
      if (start[stage] > 0)
        rp = load_progress(dir / (stage + ".last.safetensors"), policy, opt, start[stage], o.rl_steps);
      if (!r.run_rl(stage, variant, policy, opt, rp)) return std::nullopt;
      fs::remove(dir / (stage + ".last.safetensors"));
    }
    r.evaluate_stage(stage, policy);
  }
  if (o.plot) plot_curves(dir, r.curves, seed);
  // The log on disk must hold every step of every stage and an evaluation of each, all finite.
  std::map<std::string, std::int64_t> train_lines, eval_lines;
  std::ifstream f(r.log.path);
  for (std::string line; std::getline(f, line);) {
    const json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("type") || !j["type"].is_string() ||
        !j.contains("stage") || !j["stage"].is_string()) {
      r.result.complete = false;
      continue;
    }
    ++(j["type"] == "train" ? train_lines : eval_lines)[j["stage"].get<std::string>()];
    for (const json& v : j)  // the object's values
      if (v.is_number_float() && !std::isfinite(v.get<double>())) r.result.finite = false;
  }
  for (const auto& st : stages) {
    const std::int64_t expected = st == "sft" && !o.sft_from.empty() ? 0 : stage_steps(o, st);
    r.result.complete = r.result.complete && train_lines[st] == expected && eval_lines[st] == 4;
  }
  return r.result;
}

// ---------------------------------------------------------------------------------------------
// Tables: mean (and sample standard deviation over seeds when there are several), in percent.

std::string cell(const std::vector<double>& xs, bool sign = false) {
  double mean = 0;
  for (double x : xs) mean += x;
  mean /= double(xs.size());
  char buf[48];
  if (xs.size() < 2) {
    std::snprintf(buf, sizeof buf, sign ? "%+5.1f" : "%5.1f", 100 * mean);
  } else {
    double var = 0;
    for (double x : xs) var += (x - mean) * (x - mean);
    std::snprintf(buf, sizeof buf, sign ? "%+5.1f ± %4.1f" : "%5.1f ± %4.1f", 100 * mean,
                  100 * std::sqrt(var / double(xs.size() - 1)));
  }
  return buf;
}

void print_tables(const options& o, const std::vector<seed_result>& results) {
  std::vector<std::string> stages{"sft"};
  if (o.run_ternary) stages.push_back("rl_ternary");
  if (o.run_binary) stages.push_back("rl_binary");
  const int w = results.size() > 1 ? 13 : 8;
  for (const std::string key :
       {"problems/greedy", "templates/greedy", "problems/sampled", "templates/sampled"}) {
    const bool problems = key.starts_with("problems"), greedy = key.ends_with("greedy");
    std::printf("\nheld-out %s (%s), %s, %d per (level, op), %zu seed(s); percent%s\n",
                problems ? "problems" : "templates",
                problems ? "training templates" : "templates never seen in training",
                greedy ? "greedy decoding" : "sampled at T = 1, 4 per problem", o.eval_per_cell,
                results.size(), results.size() > 1 ? ", mean ± sd over seeds" : "");
    std::printf("%-11s %*s %*s %*s %*s |", "stage", w, "acc", w, "abstain", w, "halluc", w, "truthful");
    for (int l = 1; l <= rlvr::num_levels; ++l) std::printf(" %*s%d", w - 1, "L", l);
    std::printf("   (L: accuracy per level; level 5 is beyond the SFT data)\n");
    for (const auto& st : stages) {
      auto pick = [&](auto f) {
        std::vector<double> xs;
        for (const auto& res : results) {
          const stage_eval& e = res.evals.at(st);
          xs.push_back(f(e.at(key)));
        }
        return cell(xs);
      };
      std::printf("%-11s %*s %*s %*s %*s |", st.c_str(), w,
                  pick([](const rlvr::eval_result& e) { return e.all().accuracy(); }).c_str(), w,
                  pick([](const rlvr::eval_result& e) { return e.all().abstention_rate(); }).c_str(), w,
                  pick([](const rlvr::eval_result& e) { return e.all().hallucination_rate(); }).c_str(), w,
                  pick([](const rlvr::eval_result& e) { return e.all().truthfulness(); }).c_str());
      for (std::size_t l = 0; l < rlvr::num_levels; ++l)
        std::printf(" %*s", w,
                    pick([l](const rlvr::eval_result& e) { return e.per_level[l].accuracy(); }).c_str());
      std::printf("\n");
    }
  }
  if (!results.front().activity.empty()) {
    std::printf(
        "\nBDH activation sparsity: percent of the H N neurons active per token (x_sparse / y_sparse), "
        "per layer, held-out problems with their chain of thought, mean over seeds\n");
    for (const auto& st : stages) {
      std::printf("%-11s", st.c_str());
      const std::size_t layers = results.front().activity.at(st).x.size();
      for (std::size_t l = 0; l < layers; ++l) {
        double x = 0, y = 0;
        for (const auto& res : results) {
          x += res.activity.at(st).x[l] / double(results.size());
          y += res.activity.at(st).y[l] / double(results.size());
        }
        std::printf("  L%zu %5.1f / %5.1f", l + 1, 100 * x, 100 * y);
      }
      std::printf("\n");
    }
  }
  // Paired differences (same seed, same SFT checkpoint, same evaluation problems): what RL changed.
  std::vector<std::pair<std::string, std::string>> pairs;
  if (o.run_ternary) pairs.emplace_back("rl_ternary", "sft");
  if (o.run_binary) pairs.emplace_back("rl_binary", "sft");
  if (o.run_ternary && o.run_binary) pairs.emplace_back("rl_ternary", "rl_binary");
  std::printf("\npaired differences in points (mean%s over seeds), held-out problems / held-out templates\n",
              results.size() > 1 ? " ± sd" : "");
  std::printf("%-30s %-8s %*s %*s %*s %*s\n", "difference", "decoding", w, "acc", w, "abstain", w, "halluc",
              w, "truthful");
  for (const auto& [a, b] : pairs)
    for (const std::string set : {"problems", "templates"})
      for (const std::string decoding : {"greedy", "sampled"}) {
        auto diff = [&](auto f) {
          std::vector<double> xs;
          for (const auto& res : results)
            xs.push_back(f(res.evals.at(a).at(set + "/" + decoding).all()) -
                         f(res.evals.at(b).at(set + "/" + decoding).all()));
          return cell(xs, true);
        };
        std::printf("%-30s %-8s %*s %*s %*s %*s\n",
                    (a + " - " + b + (set == "problems" ? "" : " (tmpl)")).c_str(), decoding.c_str(), w,
                    diff([](const auto& m) { return m.accuracy(); }).c_str(), w,
                    diff([](const auto& m) { return m.abstention_rate(); }).c_str(), w,
                    diff([](const auto& m) { return m.hallucination_rate(); }).c_str(), w,
                    diff([](const auto& m) { return m.truthfulness(); }).c_str());
      }
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
#ifdef _OPENMP
  if (o.threads > 0) omp_set_num_threads(o.threads);
#endif
  try {
    const int rl_runs = int(o.run_ternary) + int(o.run_binary);
    progress bar(std::int64_t{o.seeds} * o.sft_steps, std::int64_t{o.seeds} * rl_runs * o.rl_steps);
    const bool bdh = o.model == "bdh";
    const std::string model = bdh ? examples::describe(xm::bdh_matching(model_config(o), o.bdh_multiplier)) +
                                        "; the transformer of this width has " +
                                        std::to_string(xm::parameter_layout(model_config(o)).total)
                                  : examples::describe(model_config(o));
    std::printf(
        "rlvr_arithmetic: %d seed(s) from %llu; model %s; SFT %d steps; RL %d steps x %d reward(s), "
        "%d prompts x %d rollouts (%s), loss %s; output in %s\n",
        o.seeds, static_cast<unsigned long long>(o.seed), model.c_str(), o.sft_steps, o.rl_steps, rl_runs,
        o.prompts, o.rollouts, o.knapsack ? "knapsack" : "uniform", o.loss.c_str(), o.out.c_str());
    std::fflush(stdout);
    std::vector<seed_result> results;
    std::int64_t steps_this_run = 0;
    for (int k = 0; k < o.seeds; ++k) {
      const std::uint64_t seed = o.seed + static_cast<std::uint64_t>(k);
      auto r = bdh ? run_seed<xm::bdh>(o, seed, bar, steps_this_run)
                   : run_seed<xm::transformer>(o, seed, bar, steps_this_run);
      if (!r) {
        bar.finish();
        std::printf("rlvr_arithmetic: stopped after %lld steps (--stop-after); continue with --resume\n",
                    static_cast<long long>(steps_this_run));
        return 0;
      }
      results.push_back(std::move(*r));
    }
    bar.finish();
    print_tables(o, results);
    bool finite = true, complete = true;
    for (const auto& r : results) {
      finite = finite && r.finite;
      complete = complete && r.complete;
    }
    std::printf("\nwall time %.1f s\n", bar.elapsed());
    if (!finite || !complete) {
      std::printf("rlvr_arithmetic: FAILED: %s\n",
                  !finite ? "a metric is not finite" : "metrics.jsonl misses a step or an evaluation");
      return 1;
    }
    std::printf("rlvr_arithmetic: ok (stages: sft%s%s; metrics.jsonl complete and finite)\n",
                o.run_ternary ? ", rl_ternary" : "", o.run_binary ? ", rl_binary" : "");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nrlvr_arithmetic: %s\n", e.what());
    return 1;
  }
  return 0;
}
