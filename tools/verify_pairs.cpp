// Runs xplor's answer checker over a file of answer pairs, for side-by-side runs with other
// verifiers (tools/compare_math_verify.py).
//
//   xplor_verify_pairs --corpus N OUT   writes the generated labelled corpus (benchmarks/math_corpus.hpp)
//   xplor_verify_pairs IN OUT           checks each pair of IN, writes "<0|1> <reason>" per line to
//                                       OUT and prints pairs/s on one core (median of 5 timed passes)
//   xplor_verify_pairs --responses IN OUT  the same on whole texts: each side's answer is its last
//                                       \boxed{}, else the text after "answer is", else the last
//                                       $...$, else the whole text
//
// Records are separated by '\x1e' and fields by '\x1f' (answers may hold tabs and newlines):
// predicted, reference, then any further fields (kind, label), which are ignored when checking.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>
#include <xplor/reward/verify.hpp>

#include "../benchmarks/math_corpus.hpp"

namespace {

std::vector<std::vector<std::string>> read_records(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string data = ss.str();
  std::vector<std::vector<std::string>> out;
  std::size_t start = 0;
  while (start < data.size()) {
    std::size_t end = data.find('\x1e', start);
    if (end == std::string::npos) end = data.size();
    std::vector<std::string> fields;
    std::size_t f = start;
    while (true) {
      const std::size_t sep = data.find('\x1f', f);
      if (sep == std::string::npos || sep > end) {
        fields.push_back(data.substr(f, end - f));
        break;
      }
      fields.push_back(data.substr(f, sep - f));
      f = sep + 1;
    }
    if (fields.size() < 2) throw std::runtime_error("'" + path + "': a record has fewer than two fields");
    out.push_back(std::move(fields));
    start = end + 1;
  }
  return out;
}

/// The answer in a free-form text (see the usage above).
std::string answer_of(const std::string& text) {
  if (auto b = xplor::reward::extract_boxed(text)) return *b;
  if (auto a = xplor::reward::extract_answer_is(text)) return *a;
  // The math span that ends last: $...$, $$...$$, \(...\) or \[...\].
  std::string best = text;
  std::size_t best_end = 0;
  const std::size_t close = text.rfind('$');
  if (close != std::string::npos && close > 0) {
    std::size_t end = close;
    while (end > 0 && text[end - 1] == '$') --end;  // $$...$$
    const std::size_t open = end == 0 ? std::string::npos : text.rfind('$', end - 1);
    if (open != std::string::npos && open < end) {
      best = text.substr(open + 1, end - open - 1);
      best_end = close + 1;
    }
  }
  for (const auto& [o, c] : {std::pair{"\\(", "\\)"}, std::pair{"\\[", "\\]"}}) {
    const std::size_t end = text.rfind(c);
    if (end == std::string::npos || end + 2 <= best_end) continue;
    const std::size_t open = text.rfind(o, end);
    if (open == std::string::npos) continue;
    best = text.substr(open + 2, end - open - 2);
    best_end = end + 2;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) try {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 3 && args[0] == "--corpus") {
    std::ofstream out(args[2], std::ios::binary);
    for (const auto& p : xplor_bench::math_corpus(std::stoul(args[1])))
      out << p.predicted << '\x1f' << p.reference << '\x1f' << p.kind << '\x1f' << (p.equivalent ? 1 : 0)
          << '\x1e';
    return out ? 0 : 1;
  }
  const bool responses = !args.empty() && args[0] == "--responses";
  if (args.size() != (responses ? 3u : 2u)) {
    std::cerr << "usage: xplor_verify_pairs --corpus N OUT | xplor_verify_pairs [--responses] IN OUT\n";
    return 2;
  }
  auto records = read_records(args[responses ? 1 : 0]);
  if (responses)
    for (auto& r : records) {
      r[0] = answer_of(r[0]);
      r[1] = answer_of(r[1]);
    }
  std::vector<xplor::reward::verdict> verdicts(records.size());
  std::vector<double> rates;
  for (int pass = 0; pass < 5; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    std::size_t done = 0;
    double seconds = 0.0;
    do {  // at least 0.2 s per pass
      for (std::size_t k = 0; k < records.size(); ++k)
        verdicts[k] = xplor::reward::check_answer(records[k][0], records[k][1]);
      done += records.size();
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } while (seconds < 0.2);
    rates.push_back(static_cast<double>(done) / seconds);
  }
  std::sort(rates.begin(), rates.end());
  std::ofstream out(args.back());
  for (const auto& v : verdicts)
    out << (v.equivalent ? 1 : 0) << ' ' << xplor::reward::to_string(v.reason) << '\n';
  std::printf("pairs_per_second %.0f\n", rates[2]);
  return out ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "xplor_verify_pairs: " << e.what() << '\n';
  return 1;
}
