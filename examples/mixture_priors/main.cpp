// mixture_priors: "Learning to See Before Seeing" (Han et al., arXiv 2509.26625) as a toy. The
// paper pretrains LMs under many data mixtures and finds that the visual priors of a later
// multimodal model come mostly from reasoning-centric text, while text that describes the visual
// world helps but saturates quickly; its recommended mix is ~60% reasoning / ~15% visual / rest
// general. This example illustrates that large-scale finding; it does not replicate it. It
// pretrains small word-level LMs under several token mixtures (xplor::data::mixture_sampler) of
// three synthetic sources
//   reasoning  orderings of people with yes/no questions ("the kind farmer is older than the brave
//              sailor. ... is the brave sailor younger than the kind farmer? yes."), sums and tiny
//              program traces
//   visual     scene descriptions ("the red square is left of the blue circle. the green star is
//              above the red square.") with no questions and no conclusions
//   general    generic sentences ("the farmer sells bread at the market.")
// and probes each model on held-out, text-only spatial reasoning that no source contains: chains
// over the visual objects and relations with a yes/no question about the chain's ends. Two
// measures per probe set: accuracy (is the right answer the likelier one; chance 50%) and bits per
// token of the whole probe text (how well the model models this kind of text at all). Controls:
// the same questions over the reasoning source's own people. Each set comes in order (premises in
// chain order, forward form) and in mixed forms (left of / right of, above / below, shuffled).
#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>
#include <xplor/data/mixture.hpp>
#include <xplor/model/optim.hpp>
#include <xplor/model/transformer.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/cli.hpp"
#include "common/gnuplot.hpp"

namespace {

namespace fs = std::filesystem;
namespace xm = xplor::model;
namespace xd = xplor::data;

/// Token shares of the three sources, in percent.
struct mix {
  int reasoning = 0, visual = 0, general = 0;
  std::string label() const {
    return std::to_string(reasoning) + "/" + std::to_string(visual) + "/" + std::to_string(general);
  }
};

// Two series share the paper's recommended 60/15/25: the reasoning share at a fixed 15% visual,
// and the visual share at a fixed 60% reasoning; 30/40/30 is a visual-heavy alternative.
const std::vector<mix> kDefaultMixes = {{0, 15, 85}, {30, 15, 55}, {60, 15, 25}, {85, 15, 0},
                                        {60, 0, 40}, {60, 5, 35},  {60, 40, 0},  {30, 40, 30}};

struct options {
  std::string out = "mixture_priors_out";
  std::vector<std::uint64_t> seeds = {1};
  std::vector<mix> mixes = kDefaultMixes;
  int steps = 2000, batch = 8, context = 128, d_model = 64, layers = 2, probes = 400, held_out = 100;
  float lr = 2e-3f;
  int threads = 0;
  bool plot = true;
};

options parse(int argc, char** argv) {
  namespace ex = xplor::examples;
  options o;
  bool quick = false;
  std::vector<std::string> mix_texts;
  CLI::App app{
      "Small LMs pretrained under token mixtures of reasoning / visual / general text, probed on "
      "held-out text-only spatial reasoning.",
      "mixture_priors"};
  app.add_option("--out", o.out, "output directory (default mixture_priors_out)")->type_name("DIR");
  ex::add_integer_list(app, "--seeds", o.seeds, 0, 1LL << 53, "seeds of data and models (default 1)");
  app.add_option("--mixes", mix_texts,
                 "comma-separated R/V/G token percentages summing to 100 (default "
                 "0/15/85,30/15/55,60/15/25,85/15/0,60/0/40,60/5/35,60/40/0,30/40/30)")
      ->type_name("LIST")
      ->delimiter(',');
  ex::add_integer(app, "--steps", o.steps, 1, 1000000, "pretraining steps per mix (default 2000)")
      ->type_name("N");
  ex::add_integer(app, "--batch", o.batch, 1, 4096, "sequences per step (default 8)")->type_name("B");
  // The longest probe row (eos, two premises, the question and "yes") is 32 tokens: 31 inputs.
  ex::add_integer(app, "--context", o.context, 31, 4096, "tokens per sequence, >= 31 (default 128)")
      ->type_name("T");
  ex::add_integer(app, "--d-model", o.d_model, 8, 4096, "model width (default 64)")->type_name("C");
  ex::add_integer(app, "--layers", o.layers, 1, 64, "transformer blocks (default 2)")->type_name("L");
  ex::add_integer(app, "--probes", o.probes, 1, 100000, "problems per probe set (default 400)")
      ->type_name("N");
  ex::add_integer(app, "--held-out", o.held_out, 1, 100000,
                  "held-out documents per source for bits per token (default 100)")
      ->type_name("N");
  ex::add_number(app, "--lr", o.lr, 0.0, HUGE_VAL, "peak learning rate (default 2e-3)", true)
      ->type_name("LR");
  ex::add_integer(app, "--threads", o.threads, 1, 1024,
                  "OpenMP threads (default: OMP_NUM_THREADS or all cores)")
      ->type_name("N");
  app.add_flag("--quick", quick, "a tiny configuration (the test suite's); flags given with it still apply");
  app.add_flag_callback(
      "--no-plot", [&o] { o.plot = false; }, "do not call gnuplot");
  ex::parse_flags(app, argc, argv);
  if (!mix_texts.empty()) {
    o.mixes.clear();
    for (const std::string& text : mix_texts) {
      mix m;
      char s1 = 0, s2 = 0, rest = 0;
      std::istringstream in(text);
      in >> m.reasoning >> s1 >> m.visual >> s2 >> m.general;
      if (!in || s1 != '/' || s2 != '/' || (in >> rest) || m.reasoning < 0 || m.visual < 0 || m.general < 0 ||
          m.reasoning + m.visual + m.general != 100)
        ex::usage_error(app,
                        "--mixes: '" + text + "' is not R/V/G with non-negative integers summing to 100");
      o.mixes.push_back(m);
    }
  }
  if (quick) {
    const auto unset = [&app](const char* flag) { return app.count(flag) == 0; };
    if (unset("--steps")) o.steps = 3;
    if (unset("--batch")) o.batch = 2;
    if (unset("--d-model")) o.d_model = 32;
    if (unset("--layers")) o.layers = 1;
    if (unset("--probes")) o.probes = 8;
    if (unset("--held-out")) o.held_out = 4;
    if (unset("--mixes")) o.mixes = {{0, 15, 85}, {60, 15, 25}};
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// The three synthetic sources and the probe. Every text comes from a Philox stream, so a seed
// fixes every document of every source, the held-out documents and the probe problems.

std::uint32_t below(xplor::philox_stream& g, std::size_t n) {
  return static_cast<std::uint32_t>((static_cast<std::uint64_t>(g()) * n) >> 32);
}
template <class T>
const T& one_of(xplor::philox_stream& g, const std::vector<T>& v) {
  return v[below(g, v.size())];
}
bool coin(xplor::philox_stream& g) { return g() >> 31; }

/// k distinct indices below n, in random order.
std::vector<std::size_t> distinct(xplor::philox_stream& g, std::size_t n, std::size_t k) {
  std::vector<std::size_t> all(n);
  std::iota(all.begin(), all.end(), std::size_t{0});
  for (std::size_t i = 0; i < k; ++i) std::swap(all[i], all[i + below(g, n - i)]);
  all.resize(k);
  return all;
}

using relation = std::array<std::string, 2>;  // a strict order and its inverse ("older than", "younger than")

/// A chain e[0] > e[1] > ... (entities in chain order) stated as premises, and a yes/no question
/// about its two ends. In order: premises in chain order and the forward form; mixed: each premise
/// and the question in either form ("x is older than y" or "y is younger than x"), premises
/// shuffled.
struct chain {
  std::string premises, question;
  bool answer = false;
};

/// "is e[i] r0 e[j]?" (true for i < j) or, in mixed form, "is e[j] r1 e[i]?" (also true); asked
/// the other way round with probability 1/2 (false). `answer` receives the truth.
std::string question(xplor::philox_stream& g, const std::vector<std::string>& e, std::size_t i, std::size_t j,
                     const relation& r, bool mixed, bool& answer) {
  answer = coin(g);
  const bool inverse = mixed && coin(g);
  const bool i_is_subject = answer != inverse;
  return "is " + e[i_is_subject ? i : j] + " " + r[inverse ? 1 : 0] + " " + e[i_is_subject ? j : i] + "?";
}

chain make_chain(xplor::philox_stream& g, const std::vector<std::string>& e, const relation& r, bool mixed) {
  std::vector<std::string> premises;
  for (std::size_t i = 0; i + 1 < e.size(); ++i) {
    const bool inverse = mixed && coin(g);
    premises.push_back(inverse ? e[i + 1] + " is " + r[1] + " " + e[i]
                               : e[i] + " is " + r[0] + " " + e[i + 1]);
  }
  if (mixed)
    for (std::size_t i = premises.size(); i > 1; --i) std::swap(premises[i - 1], premises[below(g, i)]);
  chain c;
  for (const auto& p : premises) c.premises += p + ". ";
  c.question = question(g, e, 0, e.size() - 1, r, mixed, c.answer);
  return c;
}

const std::vector<std::string> kTraits = {"kind", "brave", "quiet", "proud", "happy", "clever"};
const std::vector<std::string> kJobs = {"farmer", "baker", "sailor", "doctor", "teacher", "miner"};

/// `k` distinct people ("the brave sailor"), no two with one trait or one job.
std::vector<std::string> people(xplor::philox_stream& g, std::size_t k) {
  const auto t = distinct(g, kTraits.size(), k);
  const auto j = distinct(g, kJobs.size(), k);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < k; ++i) out.push_back("the " + kTraits[t[i]] + " " + kJobs[j[i]]);
  return out;
}

const std::vector<relation> kOrders = {{"older than", "younger than"},
                                       {"before", "after"},
                                       {"heavier than", "lighter than"},
                                       {"richer than", "poorer than"},
                                       {"faster than", "slower than"}};

std::string reasoning_document(xplor::philox_stream& g) {
  std::string doc;
  const std::uint32_t items = 1 + below(g, 2);
  for (std::uint32_t i = 0; i < items; ++i) {
    if (!doc.empty()) doc += ' ';
    const std::uint32_t kind = below(g, 4);
    if (kind < 2) {  // an ordering chain of 3 or 4 people
      const auto who = people(g, 3 + below(g, 2));
      const relation& r = one_of(g, kOrders);
      const bool mixed = coin(g);
      const chain c = make_chain(g, who, r, mixed);
      doc += c.premises + c.question + (c.answer ? " yes." : " no.");
      for (int q = 0; q < 2; ++q) {  // two more questions about any two of the chain
        const auto pair = distinct(g, who.size(), 2);
        bool answer = false;
        const std::string text =
            question(g, who, std::min(pair[0], pair[1]), std::max(pair[0], pair[1]), r, mixed, answer);
        doc += " " + text + (answer ? " yes." : " no.");
      }
    } else if (kind == 2) {  // a sum or a difference
      const std::uint32_t a = below(g, 100), b = below(g, 100);
      doc += coin(g) ? std::to_string(a) + "+" + std::to_string(b) + "=" + std::to_string(a + b) + "."
                     : std::to_string(std::max(a, b)) + "-" + std::to_string(std::min(a, b)) + "=" +
                           std::to_string(std::max(a, b) - std::min(a, b)) + ".";
    } else {  // a two-line program trace
      const std::uint32_t a = below(g, 10), b = below(g, 10);
      doc += "x=" + std::to_string(a) + "; y=x+" + std::to_string(b) + "; y=" + std::to_string(a + b) + ".";
    }
  }
  return doc;
}

const std::vector<std::string> kColors = {"red", "blue", "green", "yellow", "black", "white"};
const std::vector<std::string> kShapes = {"square", "circle", "star", "triangle", "heart"};
const std::vector<relation> kSpatial = {{"left of", "right of"}, {"above", "below"}};
const std::vector<std::string> kSizes = {"small", "large", "tiny", "big"};

/// `k` distinct objects ("the red square"), no two of one colour or one shape.
std::vector<std::string> objects(xplor::philox_stream& g, std::size_t k) {
  const auto c = distinct(g, kColors.size(), k);
  const auto s = distinct(g, kShapes.size(), k);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < k; ++i) out.push_back("the " + kColors[c[i]] + " " + kShapes[s[i]]);
  return out;
}

std::string visual_document(xplor::philox_stream& g) {
  // A scene: objects at distinct columns and rows; sentences state true pairwise relations (either
  // direction) and sizes, never a conclusion.
  const std::size_t k = 3 + below(g, 2);
  const auto names = objects(g, k);
  const auto x = distinct(g, 8, k), y = distinct(g, 8, k);
  std::string doc;
  const std::uint32_t sentences = 3 + below(g, 4);
  for (std::uint32_t s = 0; s < sentences; ++s) {
    if (!doc.empty()) doc += ' ';
    const auto pair = distinct(g, k, 2);
    const std::size_t i = pair[0], j = pair[1];
    if (below(g, 5) == 0) {
      doc += names[i] + " is " + one_of(g, kSizes) + ".";
    } else if (coin(g)) {
      doc += names[i] + " is " + (x[i] < x[j] ? "left of " : "right of ") + names[j] + ".";
    } else {
      doc += names[i] + " is " + (y[i] < y[j] ? "above " : "below ") + names[j] + ".";
    }
  }
  return doc;
}

const std::vector<std::string> kSubjects = {"the farmer", "a child",  "the teacher", "my friend",
                                            "the baker",  "a sailor", "the old man", "her sister",
                                            "the doctor", "a student"};
const std::vector<std::string> kVerbs = {"sells", "buys",   "cooks",   "finds",
                                         "reads", "paints", "carries", "loves"};
const std::vector<std::string> kThings = {"bread",    "a letter", "the book", "fish",    "a song",
                                          "the boat", "apples",   "a story",  "flowers", "tea"};
const std::vector<std::string> kPlaces = {"at the market", "in the garden", "at home",    "near the river",
                                          "in the city",   "at school",     "by the sea", "in winter"};
const std::vector<std::string> kWeather = {"it rained", "the sun came out", "it was cold", "the wind rose"};

std::string general_document(xplor::philox_stream& g) {
  std::string doc;
  const std::uint32_t sentences = 3 + below(g, 4);
  for (std::uint32_t s = 0; s < sentences; ++s) {
    if (!doc.empty()) doc += ' ';
    // One draw per statement: the operands of + are unsequenced, and the text must not depend on
    // the compiler's order.
    if (below(g, 4) == 0) {  // general text uses "so" too, for causes rather than conclusions
      const std::string& weather = one_of(g, kWeather);
      const std::string& who = one_of(g, kSubjects);
      doc += weather + ", so " + who + " stayed " + one_of(g, kPlaces) + ".";
    } else {
      const std::string& who = one_of(g, kSubjects);
      const std::string& verb = one_of(g, kVerbs);
      const std::string& what = one_of(g, kThings);
      doc += who + " " + verb + " " + what + " " + one_of(g, kPlaces) + ".";
    }
  }
  return doc;
}

using generator = std::string (*)(xplor::philox_stream&);
struct source_kind {
  const char* name;
  const char* tag;  // mixture_preset's tags
  generator make;
};
const source_kind kSources[] = {{"reasoning", "reasoning", reasoning_document},
                                {"visual", "visual_world", visual_document},
                                {"general", "general", general_document}};
constexpr std::uint64_t kTrainStream = 0x7072696f72000000ull, kHeldOutStream = 0x68656c646f757400ull,
                        kProbeStream = 0x70726f6265000000ull;

/// Word-level tokens for the synthetic sources: every word the generators use, digits one by one,
/// punctuation, eos and pad. Words keep the toy models small and fast: a chain question is ~30
/// tokens instead of ~170 bytes, so a minute of pretraining sees ~10x more of them.
class word_tokenizer {
 public:
  word_tokenizer() {
    words_ = {"<eos>", "<pad>"};
    for (char c : std::string("0123456789.,?;=+-")) words_.push_back(std::string(1, c));
    std::vector<std::string> all = {"the", "is", "so", "yes", "no", "x", "y", "stayed"};
    for (const auto* list :
         {&kTraits, &kJobs, &kColors, &kShapes, &kSizes, &kSubjects, &kVerbs, &kThings, &kPlaces, &kWeather})
      all.insert(all.end(), list->begin(), list->end());
    for (const auto* list : {&kOrders, &kSpatial})
      for (const relation& r : *list) all.insert(all.end(), r.begin(), r.end());
    for (const std::string& phrase : all) {
      std::istringstream in(phrase);
      for (std::string w; in >> w;)
        if (std::find(words_.begin(), words_.end(), w) == words_.end()) words_.push_back(w);
    }
  }
  std::int32_t eos() const { return 0; }
  std::int32_t pad() const { return 1; }
  int vocab_size() const { return static_cast<int>(words_.size()); }

  std::string decode(std::span<const std::int32_t> ids) const {
    std::string out;
    for (std::int32_t id : ids) {
      const std::string& w = words_.at(static_cast<std::size_t>(id));
      if (!out.empty() && (std::isalnum(static_cast<unsigned char>(w[0])) || w[0] == '<') &&
          !std::isdigit(static_cast<unsigned char>(out.back())) && out.back() != '=' && out.back() != '+' &&
          out.back() != '-')
        out += ' ';
      out += w;
    }
    return out;
  }

  std::vector<std::int32_t> encode(std::string_view text, bool add_eos = false) const {
    std::vector<std::int32_t> out;
    for (std::size_t i = 0; i < text.size();) {
      if (text[i] == ' ') {
        ++i;
        continue;
      }
      std::size_t n = 1;
      if (std::isalpha(static_cast<unsigned char>(text[i])))
        while (i + n < text.size() && std::isalpha(static_cast<unsigned char>(text[i + n]))) ++n;
      out.push_back(id(text.substr(i, n)));
      i += n;
    }
    if (add_eos) out.push_back(eos());
    return out;
  }

 private:
  std::int32_t id(std::string_view w) const {
    const auto at = std::find(words_.begin(), words_.end(), w);
    if (at == words_.end()) throw std::logic_error("mixture_priors: no token for '" + std::string(w) + "'");
    return static_cast<std::int32_t>(at - words_.begin());
  }
  std::vector<std::string> words_;
};

/// The mixture's sources: each an endless document stream, weights in percent of tokens.
std::vector<xd::mixture_source> sources(const mix& m, std::uint64_t seed, const word_tokenizer& tok) {
  const int weights[] = {m.reasoning, m.visual, m.general};
  std::vector<xd::mixture_source> out;
  for (std::size_t i = 0; i < 3; ++i) {
    xd::document_stream stream = [g = xplor::philox_stream(seed, kTrainStream + i), make = kSources[i].make,
                                  &tok]() mutable -> std::optional<std::vector<std::int32_t>> {
      return tok.encode(make(g), true);
    };
    out.push_back({kSources[i].name, {kSources[i].tag}, double(weights[i]), std::move(stream)});
  }
  // The paper's recommended mix through the library's preset (the same weights as 60/15/25).
  if (m.reasoning == 60 && m.visual == 15 && m.general == 25) return xd::mixture_preset("lsbs_balanced", out);
  return out;
}

// ---------------------------------------------------------------------------------------------

xm::transformer_config model_config(const options& o) {
  xm::transformer_config c;
  c.vocab_size = word_tokenizer{}.vocab_size();
  c.d_model = o.d_model;
  c.n_layers = o.layers;
  c.n_heads = 4;
  c.d_ff = 4 * o.d_model;
  c.max_seq_len = o.context;
  return c;
}

/// Sums log p over each row's scored span: rows are [eos, context..., scored...], padded.
std::vector<double> span_logprobs(xm::transformer& model, const std::vector<std::vector<std::int32_t>>& rows,
                                  const std::vector<std::size_t>& scored_from, std::int32_t pad) {
  std::int64_t T = 0;
  for (const auto& r : rows) T = std::max(T, static_cast<std::int64_t>(r.size()) - 1);
  const auto B = static_cast<std::int64_t>(rows.size());
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(B * T), pad),
      targets(tokens.size(), xm::ignore_target);
  for (std::int64_t b = 0; b < B; ++b) {
    const auto& r = rows[static_cast<std::size_t>(b)];
    for (std::size_t t = 0; t + 1 < r.size(); ++t) {
      tokens[static_cast<std::size_t>(b * T) + t] = r[t];
      if (t + 1 >= scored_from[static_cast<std::size_t>(b)])
        targets[static_cast<std::size_t>(b * T) + t] = r[t + 1];
    }
  }
  model.forward({tokens, B, T, targets, {}, {}});
  const auto lp = model.target_logprobs();
  std::vector<double> out(rows.size(), 0.0);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t t = 0; t < T; ++t)
      out[static_cast<std::size_t>(b)] += lp[static_cast<std::size_t>(b * T + t)];
  return out;
}

/// The probe sets: controls on the reasoning source's own chains (3 people and an ordering), then
/// the held-out spatial chains (3 objects); each with the premises in order and in the forward
/// form, and in random order and forms.
struct probe_set {
  const char* name;
  bool spatial, mixed;
};
const probe_set kProbes[] = {{"people, in order", false, false},
                             {"people, mixed forms", false, true},
                             {"spatial, in order", true, false},
                             {"spatial, mixed forms", true, true}};
constexpr std::size_t kNumProbes = std::size(kProbes);

/// accuracy: the share of questions whose right answer ("yes" or "no") is the likelier; bits: bits
/// per token of the whole probe text (premises, question, right answer), how well the model
/// models held-out text of this kind.
struct probe_score {
  double accuracy = 0, bits = 0;
};

probe_score probe(xm::transformer& model, const word_tokenizer& tok, std::size_t set, int count,
                  std::uint64_t seed) {
  xplor::philox_stream g(seed, kProbeStream + set);  // the same problems for every mix
  int right = 0;
  double nats = 0.0, tokens = 0.0;
  for (int first = 0; first < count; first += 32) {
    std::vector<std::vector<std::int32_t>> rows;
    std::vector<std::size_t> from;
    std::vector<bool> answers;
    for (int i = first; i < std::min(count, first + 32); ++i) {
      const probe_set& p = kProbes[set];
      const auto who = p.spatial ? objects(g, 3) : people(g, 3);
      const relation& r = p.spatial ? one_of(g, kSpatial) : one_of(g, kOrders);
      const chain c = make_chain(g, who, r, p.mixed);
      answers.push_back(c.answer);
      for (const char* reply : {" yes", " no"}) {
        auto row = tok.encode(c.premises + c.question);
        row.insert(row.begin(), tok.eos());  // a document start, as in the packed training stream
        from.push_back(row.size());
        const auto tail = tok.encode(reply);
        row.insert(row.end(), tail.begin(), tail.end());
        rows.push_back(std::move(row));
      }
    }
    const auto lp = span_logprobs(model, rows, from, tok.pad());
    std::vector<std::vector<std::int32_t>> texts;
    for (std::size_t k = 0; k < answers.size(); ++k) {
      right += (lp[2 * k] > lp[2 * k + 1]) == answers[k];
      texts.push_back(rows[2 * k + (answers[k] ? 0 : 1)]);
      tokens += double(texts.back().size() - 1);
    }
    for (double l : span_logprobs(model, texts, std::vector<std::size_t>(texts.size(), 1), tok.pad()))
      nats -= l;
  }
  return {double(right) / count, nats / tokens / std::log(2.0)};
}

/// Bits per token of held-out documents of one source (each scored from its first token, within the context).
double bits_per_token(xm::transformer& model, const word_tokenizer& tok, std::size_t source, int count,
                      std::uint64_t seed, int context) {
  xplor::philox_stream g(seed, kHeldOutStream + source);
  double nats = 0.0, tokens = 0.0;
  for (int first = 0; first < count; first += 32) {
    std::vector<std::vector<std::int32_t>> rows;
    for (int i = first; i < std::min(count, first + 32); ++i) {
      auto row = tok.encode(kSources[source].make(g), true);
      row.insert(row.begin(), tok.eos());
      if (row.size() > static_cast<std::size_t>(context) + 1)
        row.resize(static_cast<std::size_t>(context) + 1);
      tokens += double(row.size() - 1);
      rows.push_back(std::move(row));
    }
    for (double lp : span_logprobs(model, rows, std::vector<std::size_t>(rows.size(), 1), tok.pad()))
      nats -= lp;
  }
  return nats / tokens / std::log(2.0);
}

struct result {
  std::array<probe_score, kNumProbes> probe{};
  std::array<double, 3> bpt{}, fraction{};
};

result pretrain_and_probe(const options& o, const mix& m, std::uint64_t seed, const word_tokenizer& tok,
                          std::ofstream& log, std::chrono::steady_clock::time_point start) {
  xm::transformer model(model_config(o), seed);  // the same initialisation for every mix of a seed
  xm::adamw opt(model.layout(), {.lr = o.lr, .weight_decay = 0.1f});
  const std::int64_t warmup = std::min(50, o.steps / 2);
  const xm::cosine_schedule lr{.max_lr = o.lr,
                               .min_lr = o.lr / 10,
                               .warmup_steps = warmup,
                               .total_steps = std::max<std::int64_t>(o.steps, warmup + 1)};
  xd::mixture_sampler sampler(sources(m, seed, tok), seed);
  // Each row holds whole documents (each ends with eos) after an eos that marks the start, padded
  // at the end: a question never loses its premises to a row boundary. A document that does not
  // fit starts the next row; one longer than a row is cut.
  const auto T = static_cast<std::int64_t>(o.context);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(o.batch * T)), targets(tokens.size());
  std::optional<xd::document> pending;
  for (std::int64_t step = 0; step < o.steps; ++step) {
    sampler.begin_step(step);
    std::fill(tokens.begin(), tokens.end(), tok.pad());
    std::fill(targets.begin(), targets.end(), xm::ignore_target);
    for (std::int64_t b = 0; b < o.batch; ++b) {
      std::vector<std::int32_t> row = {tok.eos()};
      for (;;) {
        if (!pending) pending = sampler.next();
        const auto& d = pending->tokens;
        if (row.size() + d.size() > static_cast<std::size_t>(T + 1) && row.size() > 1) break;
        row.insert(row.end(), d.begin(),
                   d.begin() + static_cast<std::ptrdiff_t>(std::min(d.size(), T + 1 - row.size())));
        pending.reset();
        if (row.size() == static_cast<std::size_t>(T + 1)) break;
      }
      for (std::size_t t = 0; t + 1 < row.size(); ++t) {
        tokens[static_cast<std::size_t>(b * T) + t] = row[t];
        targets[static_cast<std::size_t>(b * T) + t] = row[t + 1];
      }
    }
    model.zero_grad();
    const float loss = model.forward({tokens, o.batch, T, targets, {}, {}});
    model.backward();
    xm::clip_grad_norm(model.grads(), 1.0f);
    opt.step(model.params(), model.grads(), lr(step));
    log << "{\"type\": \"train\", \"mix\": \"" << m.label() << "\", \"seed\": " << seed
        << ", \"step\": " << step << ", \"loss\": " << loss << "}\n";
    if ((step + 1) % 50 == 0 || step + 1 == o.steps) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("\rmix %-9s seed %llu  step %5lld/%d  loss %.3f  %.0f s", m.label().c_str(),
                  static_cast<unsigned long long>(seed), static_cast<long long>(step + 1), o.steps,
                  static_cast<double>(loss), s);
      std::fflush(stdout);
    }
  }
  result r;
  const auto realised = sampler.realised_token_fraction();
  for (std::size_t i = 0; i < 3; ++i) {
    r.fraction[i] = realised.at(kSources[i].name);
    r.bpt[i] = bits_per_token(model, tok, i, o.held_out, seed, o.context);
  }
  log << "{\"type\": \"eval\", \"mix\": \"" << m.label() << "\", \"seed\": " << seed;
  for (std::size_t p = 0; p < kNumProbes; ++p) {
    r.probe[p] = probe(model, tok, p, o.probes, seed);  // the problems depend on the seed only
    std::printf("%s %s %.1f%% %.2f bits", p == 0 ? "\n " : ",", kProbes[p].name, 100 * r.probe[p].accuracy,
                r.probe[p].bits);
    log << ", \"accuracy " << kProbes[p].name << "\": " << r.probe[p].accuracy << ", \"bits "
        << kProbes[p].name << "\": " << r.probe[p].bits;
  }
  std::printf("\n");
  for (std::size_t i = 0; i < 3; ++i)
    log << ", \"bpt_" << kSources[i].name << "\": " << r.bpt[i] << ", \"tokens_" << kSources[i].name
        << "\": " << r.fraction[i];
  log << "}\n";
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
#ifdef _OPENMP
  if (o.threads > 0) omp_set_num_threads(o.threads);
#endif
  fs::create_directories(o.out);
  const word_tokenizer tok;
  std::ofstream log(fs::path(o.out) / "metrics.jsonl");
  {
    // What the model reads: one document of each source, as tokens decoded back to text.
    xplor::philox_stream g(o.seeds.front(), kHeldOutStream + 16);
    for (const auto& src : kSources)
      std::printf("%-9s | %s\n", src.name, tok.decode(tok.encode(src.make(g), true)).c_str());
    std::printf("\n");
  }
  const auto start = std::chrono::steady_clock::now();
  const double n = double(o.seeds.size());
  std::vector<result> mean(o.mixes.size());
  for (std::uint64_t seed : o.seeds)
    for (std::size_t k = 0; k < o.mixes.size(); ++k) {
      const result r = pretrain_and_probe(o, o.mixes[k], seed, tok, log, start);
      for (std::size_t p = 0; p < kNumProbes; ++p) {
        mean[k].probe[p].accuracy += r.probe[p].accuracy / n;
        mean[k].probe[p].bits += r.probe[p].bits / n;
      }
      for (std::size_t i = 0; i < 3; ++i) {
        mean[k].bpt[i] += r.bpt[i] / n;
        mean[k].fraction[i] += r.fraction[i] / n;
      }
    }

  // Table and TSV: per mix, the realised token fractions, accuracy and bits/token of each probe
  // set, and bits/token of each source's held-out documents (means over the seeds).
  std::printf("\n| mix R/V/G | realised token fractions |");
  for (const auto& p : kProbes) std::printf(" %s |", p.name);
  std::printf(" reasoning docs | visual docs | general docs |\n|---|---|");
  for (std::size_t p = 0; p < kNumProbes + 3; ++p) std::printf("---:|");
  std::printf("\n");
  std::ofstream tsv(fs::path(o.out) / "probe.tsv");
  tsv << "reasoning\tvisual\tgeneral";
  for (const char* what : {"accuracy", "bits"})
    for (const auto& p : kProbes) tsv << "\t\"" << what << " " << p.name << "\"";
  tsv << "\tbits_reasoning\tbits_visual\tbits_general\n";
  for (std::size_t k = 0; k < o.mixes.size(); ++k) {
    const result& r = mean[k];
    std::printf("| %s | %.3f/%.3f/%.3f |", o.mixes[k].label().c_str(), r.fraction[0], r.fraction[1],
                r.fraction[2]);
    for (const auto& sc : r.probe) std::printf(" %.1f%% / %.2f |", 100 * sc.accuracy, sc.bits);
    std::printf(" %.2f | %.2f | %.2f |\n", r.bpt[0], r.bpt[1], r.bpt[2]);
    tsv << o.mixes[k].reasoning << '\t' << o.mixes[k].visual << '\t' << o.mixes[k].general;
    for (const auto& sc : r.probe) tsv << '\t' << 100 * sc.accuracy;
    for (const auto& sc : r.probe) tsv << '\t' << sc.bits;
    tsv << '\t' << r.bpt[0] << '\t' << r.bpt[1] << '\t' << r.bpt[2] << '\n';
  }
  tsv.close();
  std::printf(
      "\nprobe sets: accuracy / bits per token; accuracy is the share of %d questions whose right answer "
      "(yes or no, half each) is the likelier (chance 50%%), bits per token are over the whole probe text "
      "(premises, question, right answer); docs: bits per token on %d held-out documents per source; "
      "means over %zu seed(s)\n",
      o.probes, o.held_out, o.seeds.size());
  if (o.plot) {
    // Bits per token of the spatial probe texts and accuracy on them: against the reasoning share at
    // 15% visual, and against the visual share at 60% reasoning.
    const fs::path dir(o.out);
    const auto series = [&](const char* file, auto on_line, auto share) {
      std::vector<std::size_t> ks;
      for (std::size_t k = 0; k < o.mixes.size(); ++k)
        if (on_line(o.mixes[k])) ks.push_back(k);
      std::sort(ks.begin(), ks.end(), [&](auto a, auto b) { return share(o.mixes[a]) < share(o.mixes[b]); });
      std::ofstream f(dir / file);
      for (auto k : ks) {
        f << share(o.mixes[k]);
        for (const auto& sc : mean[k].probe) f << '\t' << sc.bits << '\t' << 100 * sc.accuracy;
        f << '\n';
      }
    };
    series(
        "by_reasoning.tsv", [](const mix& m) { return m.visual == 15; },
        [](const mix& m) { return m.reasoning; });
    series(
        "by_visual.tsv", [](const mix& m) { return m.reasoning == 60; },
        [](const mix& m) { return m.visual; });
    const std::string png = (dir / "probe.png").string(), script = (dir / "probe.gp").string();
    std::ofstream gp(script);
    gp << "set terminal pngcairo size 1100,800\nset output '" << png << "'\nset multiplot layout 2,2\n"
       << "set key top right\nset grid\n";
    for (const auto& [ylabel, column, range] :
         {std::tuple{"bits per token", 0, "[0:*]"}, std::tuple{"accuracy (%)", 1, "[30:100]"}})
      for (const auto& [file, axis] : {std::pair{"by_reasoning.tsv", "reasoning share (%), visual 15%"},
                                       std::pair{"by_visual.tsv", "visual share (%), reasoning 60%"}}) {
        gp << "set xlabel '" << axis << "'\nset ylabel '" << ylabel << "'\nset yrange " << range << "\nplot ";
        for (std::size_t p = 0; p < kNumProbes; ++p)
          gp << (p ? ", " : "") << "'" << (dir / file).string() << "' using 1:" << 2 + 2 * p + column
             << " with linespoints title '" << kProbes[p].name << "'";
        gp << (column ? ", 50 dt 2 title 'chance'" : "") << "\n";
      }
    gp << "unset multiplot\n";
    gp.close();
    if (!xplor::examples::render_plot(script, png, (dir / "probe.tsv").string())) return 1;
  }
  std::printf("mixture_priors: ok\n");
  return 0;
}
