// multirank_grpo: the flagship's RL stage (rlvr_arithmetic: GRPO with TruthRL's ternary reward
// and Knapsack RL budgets on the reference transformer) data-parallel over MPI ranks:
//
//   mpiexec -n 4 build/release/examples/multirank_grpo [--quick] [--out DIR] [--compare CKPT]
//
//   1. SFT on rank 0 (rlvr_arithmetic's data and step), its weights broadcast to every rank.
//   2. Each GRPO step's P prompts are split into R contiguous slices, one per rank. The rollout
//      counts come from the global Knapsack allocation over every rank's prompts
//      (dist::allocate, with success trackers kept identical by dist::record); each rank samples
//      its prompts' rollouts with the streams of their global positions (generate_options::
//      first_prompt), so the rollouts are those one process would draw; the advantages are the
//      global GRPO advantages (dist::compute_advantages); the DAPO loss is normalised by the
//      global token count; each rank backpropagates its share and the gradients are summed in rank
//      order (dist::sum_ordered); every rank then clips and steps AdamW identically.
//   3. Rank 0 writes metrics.jsonl (one line per step with every rank's rollouts and time), the
//      final checkpoint final.safetensors, and with --compare the largest difference from another
//      run's checkpoint (the single-process run: mpiexec -n 1).
//
// One process and R ranks draw the same rollouts from the same weights; their gradients differ in
// the last bits (the R partial sums are added in another order than one process's micro-batches),
// so the checkpoints agree to float rounding while the sampled tokens stay the same, and part once
// a rounding difference flips a sampled token (docs/distributed.md has the measured figures).
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include <xplor/dist/advantage.hpp>
#include <xplor/dist/mpi.hpp>
#include <xplor/dist/tracker.hpp>
#include <xplor/model/checkpoint.hpp>

#include "common/cli.hpp"
#include "common/policy_update.hpp"
#include "rlvr_arithmetic/data.hpp"
#include "rlvr_arithmetic/train.hpp"

namespace {

namespace fs = std::filesystem;
namespace xm = xplor::model;
namespace xd = xplor::dist;
using json = nlohmann::json;

struct options {
  std::string out = "multirank_out", compare;
  std::uint64_t seed = 1;
  int sft_steps = 600, rl_steps = 30, prompts = 32, rollouts = 8, pool = 512;
  int d_model = 128, layers = 3, heads = 4;
  float sft_lr = 3e-3f, rl_lr = 1e-4f;
  double tolerance = 1e-4;
};

options parse(int argc, char** argv) {
  namespace ex = xplor::examples;
  options o;
  bool quick = false;
  double sft_lr = o.sft_lr, rl_lr = o.rl_lr;
  CLI::App app{
      "rlvr_arithmetic's GRPO stage data-parallel over MPI ranks (mpiexec -n R), equal to one process.",
      "multirank_grpo"};
  app.add_option("--out", o.out, "output folder, written by rank 0 (default multirank_out)")
      ->type_name("DIR");
  app.add_option("--compare", o.compare,
                 "a checkpoint to compare the final weights with (e.g. the 1-rank run's)")
      ->type_name("CKPT")
      ->check(ex::existing_file());
  ex::add_integer(app, "--seed", o.seed, 0, 1000000000000000, "seed (default 1)");
  app.add_flag("--quick", quick, "a small model and a few steps (the CTest runs)");
  ex::add_integer(app, "--sft-steps", o.sft_steps, 0, 1000000, "SFT steps on rank 0 (default 600)")
      ->type_name("N");
  ex::add_integer(app, "--rl-steps", o.rl_steps, 0, 1000000, "GRPO steps (default 30)")->type_name("N");
  ex::add_integer(app, "--prompts", o.prompts, 1, 4096, "prompts per GRPO step over all ranks (default 32)")
      ->type_name("P");
  ex::add_integer(app, "--rollouts", o.rollouts, 2, 512, "mean rollouts per prompt (default 8)")
      ->type_name("N");
  ex::add_number(app, "--sft-lr", sft_lr, 0.0, 1.0, "SFT learning rate (default 3e-3)", true);
  ex::add_number(app, "--rl-lr", rl_lr, 0.0, 1.0, "GRPO learning rate (default 1e-4)", true);
  ex::add_number(app, "--tolerance", o.tolerance, 0.0, 1.0,
                 "largest |w - w_compare| / max(1, |w_compare|) accepted by --compare (default 1e-4)");
  app.parse_complete_callback([&] {
    if (!quick) return;
    if (app.count("--sft-steps") == 0) o.sft_steps = 150;
    if (app.count("--rl-steps") == 0) o.rl_steps = 3;
    if (app.count("--prompts") == 0) o.prompts = 8;
    if (app.count("--rollouts") == 0) o.rollouts = 4;
    o.pool = 64;
    o.d_model = 64;
    o.layers = 2;
  });
  ex::parse_flags(app, argc, argv);
  o.sft_lr = static_cast<float>(sft_lr);
  o.rl_lr = static_cast<float>(rl_lr);
  return o;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  xd::mpi_session session(&argc, &argv);
  xd::mpi_communicator comm;
  const options o = parse(argc, argv);
  const int R = comm.size(), me = comm.rank();
  xd::run_or_abort(comm, [&] {
    const fs::path dir(o.out);
    if (me == 0) fs::create_directories(dir);
    const xm::byte_tokenizer tok;
    xm::transformer_config cfg;
    cfg.d_model = o.d_model;
    cfg.n_layers = o.layers;
    cfg.n_heads = o.heads;
    cfg.d_ff = 4 * o.d_model;
    cfg.max_seq_len = 128;
    xm::transformer model(cfg, o.seed);
    if (me == 0)
      std::printf(
          "multirank_grpo: %d rank(s), transformer d%d L%d, %d SFT steps on rank 0, %d GRPO steps of %d "
          "prompts x "
          "%d rollouts\n",
          R, o.d_model, o.layers, o.sft_steps, o.rl_steps, o.prompts, o.rollouts);

    // 1. SFT on rank 0, then every rank starts GRPO from its weights.
    if (me == 0) {
      xm::adamw opt(model.layout(), {.lr = o.sft_lr, .weight_decay = 0.0f});
      const rlvr::sft_options so;
      float loss = 0;
      for (int step = 0; step < o.sft_steps; ++step)
        loss = rlvr::sft_step(model, opt, o.sft_lr, tok, o.seed, step, so);
      std::printf("rank 0: SFT done, last loss %.3f\n", double(loss));
    }
    xd::broadcast(comm, model.params(), 0);

    // 2. GRPO, data-parallel.
    const std::vector<rlvr::example> pool =
        rlvr::draw_examples(o.seed, 0x9001, o.pool, 0, rlvr::num_train_templates);
    xplor::budget::tracker_options to;
    to.rewards = xplor::budget::reward_scale::ternary;  // {-1, 0, 1}: success = +1, as the flagship
    xplor::budget::success_tracker tracker(to);
    xm::adamw opt(model.layout(), {.lr = o.rl_lr, .weight_decay = 0.0f});
    std::ofstream metrics;
    if (me == 0) metrics.open(dir / "metrics.jsonl", std::ios::trunc);
    for (int step = 0; step < o.rl_steps; ++step) {
      const auto t0 = std::chrono::steady_clock::now();
      const auto ids = rlvr::step_prompt_ids(o.seed, step, o.prompts, o.pool);  // the global batch
      const std::size_t lo = ids.size() * static_cast<std::size_t>(me) / static_cast<std::size_t>(R);
      const std::size_t hi = ids.size() * static_cast<std::size_t>(me + 1) / static_cast<std::size_t>(R);
      const std::span<const std::int64_t> mine(ids.data() + lo, hi - lo);
      xplor::budget::allocation_options ao;
      ao.n_max = 32;
      const std::vector<int> counts =
          xd::allocate(comm, tracker, mine, std::int64_t{o.prompts} * o.rollouts, ao);
      std::vector<std::vector<std::int32_t>> prompts;
      for (auto id : mine) prompts.push_back(tok.encode(pool[static_cast<std::size_t>(id)].prompt));
      auto params = rlvr::decode_params(tok, 72);
      xplor::sample::rollout_batch ro;
      {
        xm::kv_decoder decoder(model);
        xplor::sample::generate_options go;
        go.first_prompt = static_cast<std::uint32_t>(lo);
        ro = xplor::sample::generate(decoder, prompts, counts, params,
                                     o.seed * 1000003ULL + static_cast<std::uint64_t>(step), go);
      }
      const std::int64_t n = ro.num_completions();
      std::vector<float> rewards(static_cast<std::size_t>(n));
      for (std::int64_t c = 0; c < n; ++c) {
        const auto& e = pool[static_cast<std::size_t>(mine[static_cast<std::size_t>(ro.prompt_index[c])])];
        const std::string gold = std::to_string(e.p.answer());
        const auto oc = xplor::reward::classify_response(rlvr::completion_text(tok, ro.completion(c)),
                                                         std::span<const std::string>(&gold, 1));
        rewards[static_cast<std::size_t>(c)] =
            xplor::reward::truth_reward(oc, xplor::reward::reward_variant::ternary);
      }
      const std::vector<double> r64(rewards.begin(), rewards.end());
      xd::record(comm, tracker, mine, ro.group_offsets, r64);
      std::vector<float> adv(static_cast<std::size_t>(n));
      xd::compute_advantages(comm, xplor::rl::estimator::grpo, std::span<const float>(rewards),
                             ro.group_offsets, std::span<float>(adv));
      // The DAPO token mean over the whole step's tokens, wherever they were sampled.
      std::int64_t step_tokens[2] = {static_cast<std::int64_t>(ro.tokens.size()), n};
      comm.all_reduce(std::span<std::int64_t>(step_tokens), xd::reduce_op::sum);
      xplor::rl::loss_options lo_opts;
      lo_opts.num_items_in_batch = static_cast<double>(step_tokens[0]);
      const auto active = examples::rollout_sequences(prompts, ro, adv);
      model.zero_grad();
      double sums[2] = {
          examples::policy_gradient(model, active, lo_opts, 32, static_cast<std::int32_t>(tok.pad())), 0.0};
      for (float x : rewards) sums[1] += double(x);
      xd::sum_ordered(comm, model.grads());
      xd::sum_ordered(comm, std::span<double>(sums));
      xm::clip_grad_norm(model.grads(), 1.0f);
      opt.step(model.params(), model.grads(), o.rl_lr);
      // Per-rank progress, gathered into rank 0's one metrics line.
      const double dt = seconds_since(t0);
      const std::int64_t mine_rollouts = n;
      const auto rollouts = xd::all_gather(comm, std::span<const std::int64_t>(&mine_rollouts, 1));
      const auto times = xd::all_gather(comm, std::span<const double>(&dt, 1));
      if (me == 0) {
        metrics << json{{"step", step},
                        {"loss", sums[0]},
                        {"mean_reward", sums[1] / double(step_tokens[1])},
                        {"rollouts", step_tokens[1]},
                        {"tokens", step_tokens[0]},
                        {"rollouts_per_rank", rollouts},
                        {"seconds_per_rank", times}}
                       .dump()
                << "\n";
        metrics.flush();
        std::printf("step %d/%d: mean reward %.3f, %lld rollouts (per rank:", step + 1, o.rl_steps,
                    sums[1] / double(step_tokens[1]), static_cast<long long>(step_tokens[1]));
        for (auto k : rollouts) std::printf(" %lld", static_cast<long long>(k));
        std::printf("), %.2f s\n", dt);
      }
    }

    // 3. The final checkpoint, and the comparison with another run's.
    if (me != 0) return;
    xm::save_checkpoint(dir / "final.safetensors", model, nullptr, {{"multirank.ranks", std::to_string(R)}});
    std::printf("wrote %s\n", (dir / "final.safetensors").string().c_str());
    if (!o.compare.empty()) {
      xm::transformer other(cfg, o.seed);
      xm::load_checkpoint(o.compare, other);
      double worst = 0;
      for (std::size_t i = 0; i < model.params().size(); ++i) {
        const double ref = other.params()[i];
        worst = std::max(worst, std::abs(double(model.params()[i]) - ref) / std::max(1.0, std::abs(ref)));
      }
      std::printf("largest |w - w_compare| / max(1, |w_compare|) = %.3g (tolerance %.3g)\n", worst,
                  o.tolerance);
      xplor::detail::require(worst <= o.tolerance, "multirank_grpo", "the final weights differ from ",
                             o.compare, " by ", worst, ", over the tolerance ", o.tolerance);
    }
    std::printf("multirank_grpo: ok\n");
  });
  return 0;
}
