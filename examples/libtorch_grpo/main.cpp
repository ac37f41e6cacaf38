// libtorch_grpo: xplor's RL components driving a model written in libtorch, side by side with the
// same run on xplor's reference transformer.
//
//   1. Task: xplor::env's Arithmetic environment (default math:Arithmetic-v0-d2-n2-ops+: the sum
//      of two two-digit numbers). The environment poses each problem from its seed and grades
//      each completion (the integer in the last \boxed{}); the model sees the expression + "=".
//   2. Models: a GPT written with torch::nn (gpt.hpp) and xplor::model::transformer with the same
//      architecture and parameter names; by default both start from the same weights (the
//      transformer's initialisation copied into the torch model), --own-init lets torch draw its own.
//   3. SFT on \boxed{answer} targets, stopped early (partial accuracy), the same batches for both.
//   4. GRPO: the success tracker's Knapsack RL budgets over a fixed prompt pool, rollouts forked
//      from each prompt by xplor::sample::generate on the model's decode policy, rewards from the
//      environment, GRPO advantages over the ragged groups, DAPO's token-mean clipped loss; its
//      d loss / d logp goes to logp.backward() (torch) or model.backward(dlogp) (xplor).
//   5. Greedy pass@1 on held-out problems before and after RL; the sampler's log-probs against
//      the training forward's at the first RL step (the adapter's on-policy check).
//
// Outputs in --out: metrics.jsonl (one line per step and evaluation), curves.png (gnuplot).
#include <unistd.h>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include <xplor/budget/success_tracker.hpp>
#include <xplor/core/random.hpp>
#include <xplor/env/tasks/arithmetic.hpp>
#include <xplor/model/tokenizer.hpp>
#include <xplor/rl/advantage.hpp>
#include <xplor/sample/rollout.hpp>

#include "common/cli.hpp"
#include "common/gnuplot.hpp"
#include "learners.hpp"

namespace {

namespace fs = std::filesystem;
namespace xm = xplor::model;
using json = nlohmann::json;

struct options {
  std::string out = "libtorch_grpo_out";
  std::string task = "math:Arithmetic-v0-d2-n2-ops+";
  std::uint64_t seed = 1;
  int sft_steps = 500, rl_steps = 150;
  int sft_batch = 32, prompts = 16, rollouts = 8, n_max = 32, pool = 512, eval = 300;
  int d_model = 64, layers = 2, heads = 4;
  double sft_lr = 3e-3, rl_lr = 5e-4;
  int threads = 1;
  bool own_init = false, plot = true;
  std::string models = "both";  // torch | xplor | both
};

options parse(int argc, char** argv) {
  namespace ex = xplor::examples;
  options o;
  bool quick = false;
  CLI::App app{
      "GRPO with xplor's sampler, knapsack budgets, verifier and DAPO loss on a libtorch GPT, beside the "
      "same run on xplor's reference transformer.",
      "libtorch_grpo"};
  app.add_option("--out", o.out, "output folder (default libtorch_grpo_out)")->type_name("DIR");
  app.add_option("--task", o.task, "an Arithmetic environment id (default math:Arithmetic-v0-d2-n2-ops+)")
      ->type_name("ID");
  ex::add_integer(app, "--seed", o.seed, 0, 1000000000000000,
                  "seed of data, weights and sampling (default 1)");
  app.add_flag("--quick", quick,
               "a few steps of each stage (the CTest run); flags given with it still apply");
  ex::add_integer(app, "--sft-steps", o.sft_steps, 0, 1000000, "SFT steps (default 500)")->type_name("N");
  ex::add_integer(app, "--rl-steps", o.rl_steps, 0, 1000000, "GRPO steps (default 150)")->type_name("N");
  ex::add_integer(app, "--prompts", o.prompts, 1, 4096, "prompts per GRPO step (default 16)")->type_name("P");
  ex::add_integer(app, "--rollouts", o.rollouts, 2, 512,
                  "mean rollouts per prompt, the knapsack budget is P x N (default 8)")
      ->type_name("N");
  ex::add_integer(app, "--eval", o.eval, 1, 100000, "held-out problems for greedy pass@1 (default 300)")
      ->type_name("N");
  ex::add_integer(app, "--d-model", o.d_model, 8, 4096, "model width (default 64)")->type_name("C");
  ex::add_integer(app, "--layers", o.layers, 1, 64, "layers (default 2)")->type_name("L");
  ex::add_integer(app, "--heads", o.heads, 1, 64, "attention heads (default 4)")->type_name("H");
  ex::add_number(app, "--sft-lr", o.sft_lr, 0.0, 1.0, "SFT learning rate (default 3e-3)", true);
  ex::add_number(app, "--rl-lr", o.rl_lr, 0.0, 1.0, "GRPO learning rate (default 5e-4)", true);
  ex::add_integer(app, "--threads", o.threads, 1, 256, "torch and OpenMP threads (default 1)");
  app.add_option("--models", o.models, "torch | xplor | both (default both)")
      ->type_name("M")
      ->check(CLI::IsMember({"torch", "xplor", "both"}));
  app.add_flag("--own-init", o.own_init,
               "let torch initialise its model (default: the transformer's weights)");
  app.add_flag("!--no-plot", o.plot, "do not render curves.png");
  // Applied before parsing so that explicit flags override them.
  app.parse_complete_callback([&] {
    if (!quick) return;
    if (app.count("--sft-steps") == 0) o.sft_steps = 250;
    if (app.count("--rl-steps") == 0) o.rl_steps = 8;
    if (app.count("--prompts") == 0) o.prompts = 8;
    if (app.count("--rollouts") == 0) o.rollouts = 4;
    if (app.count("--eval") == 0) o.eval = 48;
    o.pool = 64;
    if (app.count("--d-model") == 0) o.d_model = 32;
  });
  ex::parse_flags(app, argc, argv);
  if (o.d_model % o.heads != 0)
    ex::usage_error(
        app, "--heads " + std::to_string(o.heads) + " must divide --d-model " + std::to_string(o.d_model));
  try {
    (void)xplor::env::arithmetic::from_id(o.task);
  } catch (const xplor::error& e) {
    ex::usage_error(app, e.what());
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// The task: problems are environment seeds; the environment poses and grades them.

struct problem {
  std::uint64_t env_seed = 0;
  std::string prompt, answer;
};

class task {
 public:
  explicit task(const std::string& id) : env_(xplor::env::arithmetic::from_id(id)) {}

  problem pose(std::uint64_t env_seed) {
    const auto r = env_->reset(env_seed);
    return {env_seed, r.info.at("expression") + "=", r.info.at("answer")};
  }
  /// One reward per response, each graded on its own copy of the episode (GEM's clone()).
  std::vector<float> grade(const problem& p, const std::vector<std::string>& responses) {
    env_->reset(p.env_seed);
    std::vector<float> out;
    for (const auto& r : responses) out.push_back(env_->clone()->step(r).reward);
    return out;
  }
  /// `count` problems from Philox stream `stream`: the same for every model and thread count.
  std::vector<problem> draw(std::uint64_t seed, std::uint64_t stream, int count) {
    xplor::philox_stream gen(seed, stream);
    std::vector<problem> out;
    for (int i = 0; i < count; ++i) out.push_back(pose((std::uint64_t{gen()} << 32) | gen()));
    return out;
  }

 private:
  std::unique_ptr<xplor::env::environment> env_;
};

constexpr std::uint64_t sft_stream = 0x11b700000000ULL, pool_stream = 0x22b7, eval_stream = 0x33b7;

xplor::sample::sampling_params sampling(const xm::byte_tokenizer& tok, bool greedy) {
  xplor::sample::sampling_params p;
  p.max_completion_length = 16;
  p.eos_token = tok.eos();
  if (greedy) p.top_k = 1;
  return p;
}

std::vector<std::vector<std::int32_t>> encode(const xm::byte_tokenizer& tok, const std::vector<problem>& ps) {
  std::vector<std::vector<std::int32_t>> out;
  for (const auto& p : ps) out.push_back(tok.encode(p.prompt));
  return out;
}

template <class Learner>
double pass_at_1(Learner& learner, task& t, const xm::byte_tokenizer& tok, const std::vector<problem>& set,
                 std::uint64_t seed) {
  auto decoder = learner.decoder();
  const int one = 1;
  const auto out = xplor::sample::generate(decoder, encode(tok, set), std::span<const int>(&one, 1),
                                           sampling(tok, true), seed);
  double correct = 0;
  for (std::int64_t c = 0; c < out.num_completions(); ++c)
    correct += t.grade(set[static_cast<std::size_t>(out.prompt_index[c])],
                       {tok.decode(out.completion(c), {.render_specials = false})})[0];
  return correct / double(set.size());
}

struct run_result {
  std::string model;
  std::int64_t parameters = 0;
  double sft_pass = 0, rl_pass = 0, first_reward = 0, last_reward = 0, onpolicy_gap = 0;
  double sft_seconds = 0, rl_seconds = 0, sample_tokens_per_s = 0;
};

/// A single-line progress bar on stderr, when stderr is a terminal.
void progress(const std::string& model, const char* stage, int step, int total, double seconds) {
  static const bool tty = isatty(fileno(stderr)) != 0;
  const int width = 30, done = total > 0 ? width * step / total : width;
  if (!tty || (step != total && done == width * (step - 1) / total)) return;  // redraw when the bar moves
  std::fprintf(stderr, "\r%-6s %-4s [%s%s] %d/%d  %.1f s   ", model.c_str(), stage,
               std::string(std::size_t(done), '#').c_str(),
               std::string(std::size_t(width - done), '.').c_str(), step, total, seconds);
  if (step == total) std::fprintf(stderr, "\n");
}

template <class Learner>
run_result run(const std::string& name, Learner& learner, std::int64_t parameters, task& t,
               const xm::byte_tokenizer& tok, const options& o, std::ofstream& metrics) {
  using clock = std::chrono::steady_clock;
  const auto secs = [](clock::time_point a) {
    return std::chrono::duration<double>(clock::now() - a).count();
  };
  run_result r;
  r.model = name;
  r.parameters = parameters;
  const std::vector<problem> eval = t.draw(o.seed, eval_stream, o.eval);
  const std::vector<problem> pool = t.draw(o.seed, pool_stream, o.pool);

  // SFT: the same batches for both models.
  learner.set_lr(o.sft_lr);
  auto t0 = clock::now();
  for (int step = 0; step < o.sft_steps; ++step) {
    const auto batch = t.draw(o.seed, sft_stream + static_cast<std::uint64_t>(step), o.sft_batch);
    std::vector<std::vector<std::int32_t>> seqs;
    std::vector<std::int64_t> plen;
    for (const auto& p : batch) {
      auto s = tok.encode(p.prompt);
      plen.push_back(static_cast<std::int64_t>(s.size()));
      const auto target = tok.encode("\\boxed{" + p.answer + "}", {.add_eos = true});
      s.insert(s.end(), target.begin(), target.end());
      seqs.push_back(std::move(s));
    }
    const float loss =
        learner.sft_step(examples::pad_sequences(seqs, plen, static_cast<std::int32_t>(tok.pad())));
    metrics << json{{"model", name}, {"stage", "sft"}, {"step", step}, {"loss", loss}}.dump() << "\n";
    progress(name, "sft", step + 1, o.sft_steps, secs(t0));
  }
  r.sft_seconds = secs(t0);
  r.sft_pass = pass_at_1(learner, t, tok, eval, o.seed);
  metrics << json{{"model", name}, {"stage", "eval"}, {"after", "sft"}, {"pass_at_1", r.sft_pass}}.dump()
          << "\n";

  // GRPO.
  learner.set_lr(o.rl_lr);
  xplor::budget::success_tracker tracker;
  xplor::rl::loss_options lo;  // DAPO: token mean over the step, clip 0.2 / 0.28 (clip-higher), beta 0
  lo.type = xplor::rl::loss_type::dapo;
  lo.epsilon_high = 0.28f;
  double sample_seconds = 0;
  std::int64_t sampled = 0;
  t0 = clock::now();
  for (int step = 0; step < o.rl_steps; ++step) {
    // Prompts: a fresh slice of the pool each step, wrapping around, so the tracker sees revisits.
    std::vector<std::int64_t> ids;
    std::vector<problem> ps;
    for (int i = 0; i < o.prompts; ++i) {
      ids.push_back((std::int64_t{step} * o.prompts + i) % o.pool);
      ps.push_back(pool[static_cast<std::size_t>(ids.back())]);
    }
    xplor::budget::allocation_options ao;
    ao.n_max = o.n_max;
    const std::vector<int> counts = tracker.allocate(ids, std::int64_t{o.prompts} * o.rollouts, ao);
    const auto prompts = encode(tok, ps);
    auto params = sampling(tok, false);
    const auto ts = clock::now();
    xplor::sample::rollout_batch ro;
    {
      auto decoder = learner.decoder();
      ro = xplor::sample::generate(decoder, prompts, counts, params,
                                   o.seed * 1000003ULL + static_cast<std::uint64_t>(step));
    }
    sample_seconds += secs(ts);
    sampled += static_cast<std::int64_t>(ro.tokens.size());
    std::vector<float> rewards;
    for (std::size_t i = 0; i < ps.size(); ++i) {
      std::vector<std::string> texts;
      for (std::int64_t c = ro.group_offsets[i]; c < ro.group_offsets[i + 1]; ++c)
        texts.push_back(tok.decode(ro.completion(c), {.render_specials = false}));
      const auto g = t.grade(ps[i], texts);
      tracker.record(ids[i], std::vector<double>(g.begin(), g.end()));
      rewards.insert(rewards.end(), g.begin(), g.end());
    }
    const std::int64_t n = ro.num_completions();
    std::vector<float> adv(static_cast<std::size_t>(n));
    xplor::rl::compute_advantages(xplor::cpu, xplor::rl::estimator::grpo, std::span<const float>(rewards),
                                  xplor::ragged_groups(ro.group_offsets, n), std::span<float>(adv));
    xplor::rl::loss_options step_loss = lo;
    step_loss.num_items_in_batch = static_cast<double>(ro.tokens.size());
    if (step == 0) {
      // The adapter's on-policy check, on every completion of the first step: the training
      // forward reproduces the log-probs the sampler computed from the decoder's logits.
      const std::vector<float> all(adv.size(), 1.0f);
      const auto seqs = examples::rollout_sequences(prompts, ro, all);
      const auto now = learner.completion_logprobs(seqs);
      for (std::size_t k = 0; k < now.size(); ++k)
        r.onpolicy_gap = std::max(r.onpolicy_gap, double(std::abs(now[k] - ro.logprobs[k])));
    }
    const auto active = examples::rollout_sequences(prompts, ro, adv);
    const double loss = learner.policy_update(active, step_loss);
    double mean = 0;
    for (float x : rewards) mean += x;
    mean /= double(n);
    if (step == 0) r.first_reward = mean;
    r.last_reward = mean;
    metrics << json{{"model", name},
                    {"stage", "rl"},
                    {"step", step},
                    {"reward", mean},
                    {"loss", loss},
                    {"rollouts", n},
                    {"tokens", ro.tokens.size()},
                    {"min_n", *std::min_element(counts.begin(), counts.end())},
                    {"max_n", *std::max_element(counts.begin(), counts.end())}}
                   .dump()
            << "\n";
    progress(name, "grpo", step + 1, o.rl_steps, secs(t0));
  }
  r.rl_seconds = secs(t0);
  r.sample_tokens_per_s = sample_seconds > 0 ? double(sampled) / sample_seconds : 0;
  r.rl_pass = pass_at_1(learner, t, tok, eval, o.seed);
  metrics << json{{"model", name}, {"stage", "eval"}, {"after", "rl"}, {"pass_at_1", r.rl_pass}}.dump()
          << "\n";
  metrics.flush();
  return r;
}

void write_plot(const fs::path& dir, const std::vector<run_result>& results) {
  // Per-model reward curves from metrics.jsonl, as two whitespace tables.
  std::ofstream dat(dir / "curves.dat");
  for (const auto& r : results) {
    dat << "# " << r.model << "\n";
    std::ifstream again(dir / "metrics.jsonl");
    for (std::string line; std::getline(again, line);) {
      const auto j = json::parse(line);
      if (j["model"] == r.model && j["stage"] == "rl")
        dat << j["step"].get<int>() << " " << j["reward"].get<double>() << "\n";
    }
    dat << "\n\n";
  }
  dat.close();
  std::ofstream gp(dir / "curves.gp");
  gp << "set terminal pngcairo size 800,450\nset output '" << (dir / "curves.png").string() << "'\n"
     << "set xlabel 'GRPO step'\nset ylabel 'mean reward (fraction correct)'\nset key bottom right\n"
     << "plot '" << (dir / "curves.dat").string() << "' index 0 with lines lw 2 title '" << results[0].model
     << "'";
  if (results.size() > 1) gp << ", '' index 1 with lines lw 2 title '" << results[1].model << "'";
  gp << "\n";
  gp.close();
  xplor::examples::render_plot((dir / "curves.gp").string(), (dir / "curves.png").string(),
                               (dir / "curves.dat").string());
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  try {
    torch::set_num_threads(o.threads);
    const fs::path dir(o.out);
    fs::create_directories(dir);
    std::ofstream metrics(dir / "metrics.jsonl");
    const xm::byte_tokenizer tok;
    task t(o.task);
    tgpt::gpt_config gc;
    gc.vocab_size = tok.vocab_size();
    gc.d_model = o.d_model;
    gc.n_layers = o.layers;
    gc.n_heads = o.heads;
    gc.d_ff = 4 * o.d_model;
    gc.max_seq_len = 64;
    const auto pad = static_cast<std::int32_t>(tok.pad());
    std::printf(
        "libtorch_grpo: %s, GPT d%d L%d H%d on both sides, seed %llu, %d SFT + %d GRPO steps (%d x %d "
        "rollouts)\n",
        o.task.c_str(), o.d_model, o.layers, o.heads, static_cast<unsigned long long>(o.seed), o.sft_steps,
        o.rl_steps, o.prompts, o.rollouts);

    tgpt::xplor_learner xl(gc.xplor_config(), o.seed, static_cast<float>(o.sft_lr), 0.01f, pad, 64);
    torch::manual_seed(o.seed);
    tgpt::torch_learner tl(gc, o.sft_lr, 0.01, pad, 64);
    if (!o.own_init) tl.model->load_xplor_weights(xl.model.layout(), xl.model.params());
    std::int64_t torch_params = 0;
    for (const auto& p : tl.model->parameters()) torch_params += p.numel();

    std::vector<run_result> results;
    if (o.models != "xplor") results.push_back(run("torch", tl, torch_params, t, tok, o, metrics));
    if (o.models != "torch") results.push_back(run("xplor", xl, xl.model.layout().total, t, tok, o, metrics));

    std::printf(
        "\n| model | parameters | pass@1 after SFT | after GRPO | reward, first -> last step | "
        "sampler tokens/s | |logp - sampler logp| max | SFT s | GRPO s "
        "|\n|---|---:|---:|---:|---|---:|---:|---:|---:|\n");
    for (const auto& r : results)
      std::printf("| %s | %lld | %.1f%% | %.1f%% | %.3f -> %.3f | %.0f | %.2e | %.1f | %.1f |\n",
                  r.model.c_str(), static_cast<long long>(r.parameters), 100 * r.sft_pass, 100 * r.rl_pass,
                  r.first_reward, r.last_reward, r.sample_tokens_per_s, r.onpolicy_gap, r.sft_seconds,
                  r.rl_seconds);
    if (o.plot) write_plot(dir, results);
    // The adapter must reproduce the training forward's log-probs when sampling (tolerance for
    // float32 sums in different orders); anything larger is a broken decode policy.
    for (const auto& r : results)
      if (!(r.onpolicy_gap < 1e-3)) {
        std::fprintf(stderr, "libtorch_grpo: %s's sampler log-probs differ from its training forward by %g\n",
                     r.model.c_str(), r.onpolicy_gap);
        return 1;
      }
    std::printf("libtorch_grpo: ok (metrics in %s)\n", (dir / "metrics.jsonl").string().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "libtorch_grpo: %s\n", e.what());
    return 1;
  }
  return 0;
}
