// sft_generalization: "Debunk the Myth of SFT Generalization" (Lin et al., arXiv 2510.00237) at
// toy scale. The task: on a line of cells, name the move of the agent A toward the goal G; the
// four moves are called Up / Down / Left / Right, or by whatever words the prompt defines.
//
// Four SFT runs of the byte-level reference transformer from the same initialisation:
//   A  frozen:        one template, the canonical words, answer-only targets
//   B  diverse:       three templates x {canonical, cardinal, emoji, 2 random-word slots}
//                     (xplor::data::prompt_diversity_sampler, each vocabulary 1/6), answer-only
//   C  frozen + CoT:  A with a reasoning trace (the positions of A and G, then G - A)
//   D  diverse + CoT: B with the trace
// then greedy accuracy and action validity on: the training distribution, a held-out template,
// a held-out vocabulary (1 2 3 4), unseen random words, the Fake environment (the prompt shows new
// words, the checker still expects the canonical ones: ignoring the prompt scores high there)
// and longer lines (15 cells instead of 9, harder). The paper's claim: frozen-prompt SFT is high on Fake and
// ~0 on new vocabularies, diverse SFT the reverse, and CoT helps on harder instances.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>
#include <xplor/data/prompt_diversity.hpp>
#include <xplor/model/decode.hpp>
#include <xplor/model/optim.hpp>
#include <xplor/model/tokenizer.hpp>
#include <xplor/model/transformer.hpp>
#include <xplor/sample/rollout.hpp>

#include "common/cli.hpp"
#include "common/gnuplot.hpp"
#include "common/policy_update.hpp"

namespace {

namespace fs = std::filesystem;
namespace xm = xplor::model;
namespace xd = xplor::data;

struct options {
  std::string out = "sft_generalization_out";
  std::vector<std::uint64_t> seeds = {1};
  int steps = 800, batch = 32, eval = 200, d_model = 64, layers = 2;
  float lr = 2e-3f;
  bool plot = true;
};

options parse(int argc, char** argv) {
  namespace ex = xplor::examples;
  options o;
  bool quick = false;
  CLI::App app{
      "Frozen vs diverse prompts, answer-only vs chain-of-thought SFT, on unseen prompts and longer lines.",
      "sft_generalization"};
  app.add_option("--out", o.out, "output directory (default sft_generalization_out)")->type_name("DIR");
  ex::add_integer_list(app, "--seeds,--seed", o.seeds, 0, 1LL << 53,
                       "seeds of data and model; the table shows the mean and each seed's value (default 1)");
  ex::add_integer(app, "--steps", o.steps, 1, 1000000, "SFT steps per condition (default 800)")
      ->type_name("N");
  ex::add_integer(app, "--batch", o.batch, 1, 4096, "examples per step (default 32)")->type_name("B");
  ex::add_integer(app, "--eval", o.eval, 1, 100000, "problems per evaluation set (default 200)")
      ->type_name("N");
  ex::add_integer(app, "--d-model", o.d_model, 8, 4096, "model width (default 64)")->type_name("C");
  ex::add_integer(app, "--layers", o.layers, 1, 64, "transformer blocks (default 2)")->type_name("L");
  ex::add_number(app, "--lr", o.lr, 0.0, HUGE_VAL, "peak learning rate (default 2e-3)", true)
      ->type_name("LR");
  app.add_flag("--quick", quick, "a tiny configuration (the test suite's); flags given with it still apply");
  app.add_flag_callback(
      "--no-plot", [&o] { o.plot = false; }, "do not call gnuplot");
  ex::parse_flags(app, argc, argv);
  if (quick) {
    const auto unset = [&app](const char* flag) { return app.count(flag) == 0; };
    if (unset("--steps")) o.steps = 3;
    if (unset("--batch")) o.batch = 4;
    if (unset("--eval")) o.eval = 4;
    if (unset("--d-model")) o.d_model = 32;
    if (unset("--layers")) o.layers = 1;
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// The task: A and G on a line of n cells ("..A....G."). The correct move is Right when G is to
// the right, Left otherwise; Up and Down are never correct (they are still in every vocabulary,
// as in the four-action Sokoban prompts). Longer lines are the harder instances.

struct line {
  int n = 9, a = 0, g = 0;
  std::string text() const {
    std::string s(static_cast<std::size_t>(n), '.');
    s[static_cast<std::size_t>(a)] = 'A';
    s[static_cast<std::size_t>(g)] = 'G';
    return s;
  }
  std::size_t target() const { return g > a ? 3 : 2; }  // 2 Left, 3 Right
  bool good(std::size_t move) const { return move == target(); }
  std::vector<std::string> trace() const {
    return {"A=" + std::to_string(a), "G=" + std::to_string(g),
            (g > a ? "G-A=+" : "G-A=") + std::to_string(g - a)};
  }
};

line draw_line(xplor::philox_stream& gen, int n) {
  auto cell = [&] { return static_cast<int>((static_cast<std::uint64_t>(gen()) * std::uint64_t(n)) >> 32); };
  line l;
  l.n = n;
  l.a = cell();
  do {
    l.g = cell();
  } while (l.g == l.a);
  return l;
}

const std::vector<std::string> kTemplates = {
    "Line {observation} - move A one step toward G. Moves: {actions}. {mapping}\n",
    "{observation}\nWhich move takes A closer to G ({actions})? {mapping}\n",
    "Track {observation}: A walks to G. Options {actions}. {mapping}\n",
    "Road {observation}. Choose among {actions} to bring A nearer to G. {mapping}\n",  // held out
};
const std::vector<std::string> kPool = {"cat",  "dog",  "tree", "blue", "run",  "sky",  "apple", "stone",
                                        "wind", "ring", "moon", "fish", "lamp", "rose", "salt",  "iron",
                                        "rain", "leaf", "bell", "king", "sand", "wolf", "milk",  "gold"};
const std::vector<std::string> kUnseenPool = {"pear", "crow", "mint", "oak", "jade", "fog", "owl", "tin"};

/// The prompt options of a condition: `diverse` adds templates, vocabularies and random words.
xd::prompt_diversity_options prompt_options(bool diverse, std::uint64_t seed) {
  xd::prompt_diversity_options o;
  const auto& named = xd::sokoban_vocabularies();
  o.prompts.canonical = named[0].words;
  o.seed = seed;
  if (!diverse) {
    o.prompts.templates = {kTemplates[0]};
    return o;
  }
  o.prompts.templates = kTemplates;
  o.prompts.held_out_templates = 1;
  o.prompts.vocabularies = {named[1].words, named[2].words, named[3].words};  // cardinal, emoji, numerical
  o.prompts.held_out_vocabularies = 1;                                        // numerical: evaluation only
  o.word_pool = kPool;
  o.random_vocabularies = 2;
  return o;
}

struct condition {
  const char* name;
  bool diverse, cot;
};
const condition kConditions[] = {{"A frozen", false, false},
                                 {"B diverse", true, false},
                                 {"C frozen+CoT", false, true},
                                 {"D diverse+CoT", true, true}};

xm::transformer_config model_config(const options& o) {
  xm::transformer_config c;
  c.vocab_size = xm::byte_tokenizer{}.vocab_size();
  c.d_model = o.d_model;
  c.n_layers = o.layers;
  c.n_heads = 4;
  c.d_ff = 3 * o.d_model;
  c.max_seq_len = 320;
  return c;
}

float sft_step(xm::transformer& model, xm::adamw& opt, float lr, const xm::byte_tokenizer& tok,
               const xd::prompt_diversity_sampler& sampler, const condition& cnd, std::uint64_t seed,
               std::int64_t step, int batch) {
  xplor::philox_stream gen(seed, 0x6772696400000000ULL + static_cast<std::uint64_t>(step));
  std::vector<std::vector<std::int32_t>> seqs;
  std::vector<std::int64_t> prompt_len;
  for (int i = 0; i < batch; ++i) {
    const line g = draw_line(gen, 9);
    const auto draw = sampler.sample(static_cast<std::uint64_t>(step) * 4096 + static_cast<std::uint64_t>(i));
    auto s = tok.encode(sampler.prompt(draw, g.text()));
    prompt_len.push_back(static_cast<std::int64_t>(s.size()));
    const auto steps = g.trace();
    const std::string target = sampler.target(draw, {g.target()}, steps, {xd::cot_style::tags, cnd.cot});
    const auto t = tok.encode(target, {.add_eos = true});
    s.insert(s.end(), t.begin(), t.end());
    seqs.push_back(std::move(s));
  }
  const auto b = examples::pad_sequences(seqs, prompt_len, static_cast<std::int32_t>(tok.pad()));
  model.zero_grad();
  const float loss = model.forward({b.tokens, b.batch, b.seq_len, b.targets, {}, {}});
  model.backward();
  xm::clip_grad_norm(model.grads(), 1.0f);
  opt.step(model.params(), model.grads(), lr);
  return loss;
}

/// The word between the last <answer> and </answer>, or empty.
std::string answer_word(const std::string& text) {
  const auto open = text.rfind("<answer>");
  if (open == std::string::npos) return {};
  const auto close = text.find("</answer>", open);
  if (close == std::string::npos) return {};
  return text.substr(open + 8, close - open - 8);
}

struct eval_set {
  std::string name;
  int length = 9;
  std::size_t template_index = 0;
  std::vector<std::string> words;  // empty: canonical
  bool fake = false;               // the checker expects the canonical words whatever the prompt shows
};
struct score {
  double accuracy = 0, validity = 0;
};

score evaluate(const xm::transformer& model, const xm::byte_tokenizer& tok, const eval_set& set,
               std::size_t index, int count, std::uint64_t seed) {
  // A sampler that renders every template and the canonical words; the set's words are the draw's.
  xd::prompt_diversity_options po;
  po.prompts.templates = kTemplates;
  po.prompts.canonical = xd::sokoban_vocabularies()[0].words;
  const xd::prompt_diversity_sampler render(po);
  xplor::philox_stream gen(seed, 0x6576616c00000000ULL + index);  // the same problems for every condition
  std::vector<line> grids;
  std::vector<xplor::env::prompt_choice> draws;
  std::vector<std::vector<std::int32_t>> prompts;
  for (int i = 0; i < count; ++i) {
    grids.push_back(draw_line(gen, set.length));
    xplor::env::prompt_choice c;
    c.template_index = set.template_index;
    c.words = set.words;
    draws.push_back(c);
    prompts.push_back(tok.encode(render.prompt(c, grids.back().text())));
  }
  xm::kv_decoder decoder(model);
  xplor::sample::sampling_params p;
  p.max_completion_length = 60;
  p.eos_token = tok.eos();
  p.top_k = 1;
  const int one = 1;
  const auto out = xplor::sample::generate(decoder, prompts, std::span<const int>(&one, 1), p, seed);
  score s;
  const auto& canonical = xd::sokoban_vocabularies()[0].words;
  for (std::int64_t k = 0; k < out.num_completions(); ++k) {
    const auto i = static_cast<std::size_t>(out.prompt_index[k]);
    const std::string word = answer_word(tok.decode(out.completion(k), {.render_specials = false}));
    const auto& shown = draws[i].words.empty() ? canonical : draws[i].words;
    const auto& expected = set.fake ? canonical : shown;
    s.validity += std::find(shown.begin(), shown.end(), word) != shown.end();
    const auto at = std::find(expected.begin(), expected.end(), word);
    if (at != expected.end() && grids[i].good(static_cast<std::size_t>(at - expected.begin())))
      s.accuracy += 1;
  }
  s.accuracy /= count;
  s.validity /= count;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  fs::create_directories(o.out);
  const xm::byte_tokenizer tok;
  const auto& named = xd::sokoban_vocabularies();
  const std::vector<eval_set> sets = {
      {"in-distribution", 9, 0, {}, false},
      {"held-out template", 9, 3, {}, false},
      {"held-out vocabulary", 9, 0, named[3].words, false},
      {"unseen random words", 9, 0, {kUnseenPool[0], kUnseenPool[1], kUnseenPool[2], kUnseenPool[3]}, false},
      {"Fake", 9, 0, named[1].words, true},
      {"longer line (15)", 15, 0, {}, false},
  };
  std::ofstream log(fs::path(o.out) / "metrics.jsonl");
  // table[condition][set]: one score per seed.
  std::map<std::string, std::vector<std::vector<score>>> table;
  const auto start = std::chrono::steady_clock::now();
  for (const std::uint64_t seed : o.seeds)
    for (const condition& cnd : kConditions) {
      const xd::prompt_diversity_sampler sampler(prompt_options(cnd.diverse, seed));
      xm::transformer model(model_config(o), seed);  // the same initialisation for every condition
      xm::adamw opt(model.layout(), {.lr = o.lr, .weight_decay = 0.0f});
      const xm::cosine_schedule lr{.max_lr = o.lr,
                                   .min_lr = o.lr / 10,
                                   .warmup_steps = std::min(20, o.steps / 2),
                                   .total_steps = std::max(o.steps, std::min(20, o.steps / 2) + 1)};
      float loss = 0.0f;
      for (std::int64_t step = 0; step < o.steps; ++step) {
        loss = sft_step(model, opt, lr(step), tok, sampler, cnd, seed, step, o.batch);
        log << "{\"type\": \"train\", \"seed\": " << seed << ", \"condition\": \"" << cnd.name
            << "\", \"step\": " << step << ", \"loss\": " << loss << "}\n";
        if ((step + 1) % 50 == 0 || step + 1 == o.steps) {
          const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          std::printf("\rseed %llu %-14s step %5lld/%d  loss %.3f  %.0f s",
                      static_cast<unsigned long long>(seed), cnd.name, static_cast<long long>(step + 1),
                      o.steps, static_cast<double>(loss), s);
          std::fflush(stdout);
        }
      }
      std::printf("\n");
      auto& row = table[cnd.name];
      row.resize(sets.size());
      for (std::size_t k = 0; k < sets.size(); ++k) {
        const eval_set& set = sets[k];
        const score sc = evaluate(model, tok, set, k, o.eval, seed + 17);
        row[k].push_back(sc);
        log << "{\"type\": \"eval\", \"seed\": " << seed << ", \"condition\": \"" << cnd.name
            << "\", \"set\": \"" << set.name << "\", \"accuracy\": " << sc.accuracy
            << ", \"validity\": " << sc.validity << "}\n";
      }
    }

  // Table: mean accuracy (mean validity) per condition and evaluation set, then each seed's
  // accuracy when there are several.
  std::printf("\n| condition |");
  for (const auto& s : sets) std::printf(" %s |", s.name.c_str());
  std::printf("\n|---|");
  for (std::size_t k = 0; k < sets.size(); ++k) std::printf("---:|");
  std::printf("\n");
  std::ofstream tsv(fs::path(o.out) / "accuracy.tsv");
  tsv << "condition";
  for (const auto& s : sets) tsv << "\t\"" << s.name << "\"";
  tsv << "\n";
  for (const condition& cnd : kConditions) {
    std::printf("| %s |", cnd.name);
    tsv << "\"" << cnd.name << "\"";
    for (const std::vector<score>& per_seed : table[cnd.name]) {
      score mean;
      for (const score& sc : per_seed) {
        mean.accuracy += sc.accuracy / double(per_seed.size());
        mean.validity += sc.validity / double(per_seed.size());
      }
      std::printf(" %.1f%% (%.0f%%)", 100 * mean.accuracy, 100 * mean.validity);
      if (per_seed.size() > 1) {
        std::printf(" [");
        for (std::size_t i = 0; i < per_seed.size(); ++i)
          std::printf("%s%.1f", i ? ", " : "", 100 * per_seed[i].accuracy);
        std::printf("]");
      }
      std::printf(" |");
      tsv << "\t" << 100 * mean.accuracy;
    }
    std::printf("\n");
    tsv << "\n";
  }
  std::printf(
      "\naccuracy (action validity: the answer is one of the words the prompt shows), means over %zu "
      "seed(s)%s; "
      "%d problems per set, greedy decoding\n",
      o.seeds.size(), o.seeds.size() > 1 ? ", each seed's accuracy in brackets" : "", o.eval);
  tsv.close();
  if (o.plot) {
    const std::string png = (fs::path(o.out) / "accuracy.png").string();
    const std::string data = (fs::path(o.out) / "accuracy.tsv").string();
    const std::string script = (fs::path(o.out) / "accuracy.gp").string();
    std::ofstream gp(script);
    gp << "set terminal pngcairo size 1100,500\nset output '" << png << "'\n"
       << "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.8\n"
       << "set ylabel 'accuracy (%)'\nset yrange [0:100]\nset key outside right\nset xtics rotate by -20\n"
       << "plot for [c=2:" << sets.size() + 1 << "] '" << data << "' using c:xtic(1) title columnhead\n";
    gp.close();
    if (!xplor::examples::render_plot(script, png, data)) return 1;
  }
  std::printf("sft_generalization: ok\n");
  return 0;
}
