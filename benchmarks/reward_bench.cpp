// Answer verification throughput (pairs per second, one core).
// - verify/*: a mixed corpus of short answers, next to the naive approach many reward scripts
//   use, measured in the same run: a std::regex normaliser followed by std::stod with a relative
//   tolerance. The naive comparator is also inexact (doubles: two integers that differ past the
//   16th digit compare equal); the point here is speed on the same pairs.
// - verify_math/*: the generated MATH/GSM8K corpus (math_corpus.hpp; radicals, polynomials,
//   tuples, intervals, sets, matrices, units), check_answer next to the previous checker (text
//   normalisation plus exact numbers only), which was ~9,000x math-verify's speed;
//   tools/compare_math_verify.py measures math-verify itself on the same corpus.
// - extract_boxed/*: the last-\boxed{} extraction against a greedy regex.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <regex>
#include <string>
#include <utility>
#include <vector>
#include <xplor/reward/verify.hpp>

#include "math_corpus.hpp"

namespace {

using pair_list = std::vector<std::pair<std::string, std::string>>;

/// 4096 (predicted, reference) pairs: integers with separators, decimals, fractions, \frac,
/// percents, scientific notation, text answers, LaTeX decoration, and mismatches.
const pair_list& corpus() {
  static const pair_list pairs = [] {
    pair_list out;
    std::mt19937 gen(2024);
    std::uniform_int_distribution<int> kind(0, 11);
    std::uniform_int_distribution<int> value(1, 99999);
    std::uniform_int_distribution<int> small(1, 97);
    const std::vector<std::string> words{"Paris", "William Shakespeare", "blue", "Yes", "x^2+1", "(1, 2)"};
    std::uniform_int_distribution<std::size_t> word(0, words.size() - 1);
    while (out.size() < 4096) {
      const int v = value(gen);
      const int a = small(gen);
      const int b = small(gen);
      const std::string sv = std::to_string(v);
      switch (kind(gen)) {
        case 0:
          out.emplace_back(sv, sv);
          break;
        case 1:
          out.emplace_back(sv + ".0", sv);
          break;
        case 2:
          out.emplace_back(std::to_string(v / 1000) + "," + std::to_string(1000 + v % 1000).substr(1), sv);
          break;
        case 3:
          out.emplace_back("\\frac{" + std::to_string(a) + "}{" + std::to_string(b) + "}",
                           std::to_string(2 * a) + "/" + std::to_string(2 * b));
          break;
        case 4:
          out.emplace_back("\\dfrac{1}{4}", "0.25");
          break;
        case 5:
          out.emplace_back("$" + sv + "$", sv + ".");
          break;
        case 6:
          out.emplace_back(std::to_string(v % 100) + "\\%", "0." + std::to_string(100 + v % 100).substr(1));
          break;
        case 7:
          out.emplace_back("1.5e3", "1500");
          break;
        case 8:
          out.emplace_back("\\text{" + words[word(gen)] + "}", words[word(gen)]);
          break;
        case 9:
          out.emplace_back(sv, std::to_string(v + 1));
          break;
        case 10:
          out.emplace_back("\\frac{1}{3}", "0.3333");
          break;
        default:
          out.emplace_back("-" + sv, "\\left(-" + sv + "\\right)");
          break;
      }
    }
    return out;
  }();
  return pairs;
}

// The naive normaliser: a chain of std::regex_replace calls, then std::stod with a tolerance.
std::string naive_normalize(const std::string& s) {
  static const std::regex text(R"(\\(?:text|mathrm)\{([^}]*)\})");
  static const std::regex decoration(R"(\\left|\\right|\$|\\%|%|\s+)");
  static const std::regex frac(R"(\\[dt]?frac\{([^}]*)\}\{([^}]*)\})");
  static const std::regex thousands(R"((\d),(?=\d{3}))");
  static const std::regex trailing_dot(R"(\.$)");
  std::string r = std::regex_replace(s, text, "$1");
  r = std::regex_replace(r, decoration, "");
  r = std::regex_replace(r, frac, "$1/$2");
  r = std::regex_replace(r, thousands, "$1");
  return std::regex_replace(r, trailing_dot, "");
}

bool naive_to_double(const std::string& s, double& out) {
  static const std::regex number(R"([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)");
  static const std::regex fraction(R"(([+-]?\d+\.?\d*)/([+-]?\d+\.?\d*))");
  std::smatch m;
  if (std::regex_match(s, number)) {
    out = std::stod(s);
    return true;
  }
  if (std::regex_match(s, m, fraction)) {
    const double d = std::stod(m[2].str());
    if (d == 0.0) return false;
    out = std::stod(m[1].str()) / d;
    return true;
  }
  return false;
}

bool naive_equivalent(const std::string& a, const std::string& b) {
  const std::string na = naive_normalize(a);
  const std::string nb = naive_normalize(b);
  if (na.empty() || nb.empty()) return false;
  if (na == nb) return true;
  double x = 0.0;
  double y = 0.0;
  if (!naive_to_double(na, x) || !naive_to_double(nb, y)) return false;
  return std::abs(x - y) <= 1e-9 * std::max(1.0, std::abs(y));
}

void verify_std_regex(benchmark::State& state) {
  const auto& pairs = corpus();
  std::size_t matches = 0;
  for (auto _ : state) {
    for (const auto& [a, b] : pairs) matches += naive_equivalent(a, b) ? 1 : 0;
    benchmark::DoNotOptimize(matches);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(pairs.size()));
  state.counters["match_fraction"] =
      static_cast<double>(matches) / static_cast<double>(state.iterations() * pairs.size());
  state.SetLabel("baseline");
}

void verify_xplor(benchmark::State& state) {
  const auto& pairs = corpus();
  std::size_t matches = 0;
  for (auto _ : state) {
    for (const auto& [a, b] : pairs) matches += xplor::reward::answers_equivalent(a, b) ? 1 : 0;
    benchmark::DoNotOptimize(matches);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(pairs.size()));
  state.counters["match_fraction"] =
      static_cast<double>(matches) / static_cast<double>(state.iterations() * pairs.size());
}

/// The checker before the exact math grammar: normalised texts equal, or both exact numbers.
bool previous_equivalent(const std::string& a, const std::string& b) {
  namespace r = xplor::reward;
  const std::string p = r::normalize_answer(a);
  const std::string q = r::normalize_answer(b);
  if (p.empty() || q.empty()) return false;
  if (p == q) return true;
  const auto x = r::detail::parse_number(p);
  if (!x) return false;
  const auto y = r::detail::parse_number(q);
  return y && r::detail::numbers_equivalent(*x, *y);
}

const std::vector<xplor_bench::labelled_pair>& math_pairs() {
  static const auto pairs = xplor_bench::math_corpus(4096);
  return pairs;
}

template <class Check>
void run_math(benchmark::State& state, Check check) {
  const auto& pairs = math_pairs();
  std::size_t agree = 0;
  for (auto _ : state) {
    for (const auto& p : pairs) agree += check(p.predicted, p.reference) == p.equivalent ? 1 : 0;
    benchmark::DoNotOptimize(agree);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(pairs.size()));
  state.counters["agreement"] =
      static_cast<double>(agree) / static_cast<double>(state.iterations() * pairs.size());
}

void verify_math_previous(benchmark::State& state) {
  run_math(state, previous_equivalent);
  state.SetLabel("baseline");
}

void verify_math_xplor(benchmark::State& state) {
  run_math(state, [](const std::string& a, const std::string& b) {
    return xplor::reward::answers_equivalent(a, b);
  });
}

/// Responses of a few hundred characters ending in a boxed answer.
const std::vector<std::string>& responses() {
  static const std::vector<std::string> out = [] {
    std::vector<std::string> r;
    const auto& pairs = corpus();
    for (std::size_t k = 0; k < 1024; ++k)
      r.push_back(
          "Let me think step by step. First we compute {the sum} of the terms, then simplify "
          "the fraction and check the units. Therefore the final answer is \\boxed{" +
          pairs[k].first + "}.");
    return r;
  }();
  return out;
}

void extract_std_regex(benchmark::State& state) {
  static const std::regex boxed(R"(\\boxed\{(.*)\})");  // greedy, no brace balancing
  const auto& texts = responses();
  std::size_t total = 0;
  for (auto _ : state) {
    for (const auto& t : texts) {
      std::smatch m;
      if (std::regex_search(t, m, boxed)) total += static_cast<std::size_t>(m[1].length());
    }
    benchmark::DoNotOptimize(total);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(texts.size()));
  state.SetLabel("baseline");
}

void extract_xplor(benchmark::State& state) {
  const auto& texts = responses();
  std::size_t total = 0;
  for (auto _ : state) {
    for (const auto& t : texts)
      if (const auto b = xplor::reward::extract_boxed(t)) total += b->size();
    benchmark::DoNotOptimize(total);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(texts.size()));
}

}  // namespace

// Names are "<what>/<implementation>"; the summary compares each to the "baseline" of its group.
BENCHMARK(verify_std_regex)->Name("verify/std_regex");
BENCHMARK(verify_xplor)->Name("verify/xplor");
BENCHMARK(verify_math_previous)->Name("verify_math/previous");
BENCHMARK(verify_math_xplor)->Name("verify_math/xplor");
BENCHMARK(extract_std_regex)->Name("extract_boxed/std_regex");
BENCHMARK(extract_xplor)->Name("extract_boxed/xplor");
