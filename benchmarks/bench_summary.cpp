// bench_summary: turns Google Benchmark JSON files into a short table of medians, with each
// benchmark's throughput as a ratio to the "baseline"-labelled benchmark of its group (the part
// of the name before the first '/'), all measured in the same run.
//
// Usage: bench_summary FILE.json [FILE.json ...] > summary.md
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace {
struct row {
  std::string name, label, unit, counters;
  double time = 0, items_per_second = 0;
};

/// User counters (everything that is not a standard field), as "name=value" pairs.
std::string user_counters(const nlohmann::json& b) {
  static const std::set<std::string> standard = {"name",
                                                 "family_index",
                                                 "per_family_instance_index",
                                                 "run_name",
                                                 "run_type",
                                                 "repetitions",
                                                 "repetition_index",
                                                 "threads",
                                                 "iterations",
                                                 "real_time",
                                                 "cpu_time",
                                                 "time_unit",
                                                 "label",
                                                 "aggregate_name",
                                                 "aggregate_unit",
                                                 "items_per_second",
                                                 "bytes_per_second",
                                                 "error_occurred",
                                                 "error_message"};
  std::string out;
  for (const auto& [key, value] : b.items()) {
    if (standard.count(key) != 0 || !value.is_number()) continue;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s%s=%.4g", out.empty() ? "" : ", ", key.c_str(), value.get<double>());
    out += buf;
  }
  return out;
}

std::vector<row> read_rows(const char* path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(std::string("cannot open ") + path);
  const auto doc = nlohmann::json::parse(in);
  std::vector<row> rows;
  bool have_medians = false;
  for (const auto& b : doc.at("benchmarks")) have_medians |= b.value("aggregate_name", "") == "median";
  for (const auto& b : doc.at("benchmarks")) {
    const bool median = b.value("aggregate_name", "") == "median";
    const bool plain = b.value("run_type", "iteration") == "iteration";
    if (have_medians ? !median : !plain) continue;
    row r;
    r.name = b.value("run_name", b.value("name", "?"));
    r.label = b.value("label", "");
    r.unit = b.value("time_unit", "ns");
    r.time = b.value("real_time", 0.0);
    r.items_per_second = b.value("items_per_second", 0.0);
    r.counters = user_counters(b);
    rows.push_back(r);
  }
  return rows;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_summary FILE.json [FILE.json ...]\n");
    return 2;
  }
  try {
    for (int f = 1; f < argc; ++f) {
      const auto rows = read_rows(argv[f]);
      std::printf(
          "\n%s\n\n| benchmark | median time | items/s | vs baseline | counters "
          "|\n|---|---:|---:|---:|---|\n",
          argv[f]);
      std::map<std::string, const row*> baseline;  // group -> its baseline row
      for (const auto& r : rows)
        if (r.label == "baseline") baseline[r.name.substr(0, r.name.find('/'))] = &r;
      for (const auto& r : rows) {
        const auto it = baseline.find(r.name.substr(0, r.name.find('/')));
        std::string ratio = "-";
        if (it != baseline.end() && &r != it->second && r.time > 0) {
          // Throughput ratio: > 1 means faster than the baseline.
          const double x = (r.items_per_second > 0 && it->second->items_per_second > 0)
                               ? r.items_per_second / it->second->items_per_second
                               : it->second->time / r.time;
          char buf[32];
          std::snprintf(buf, sizeof buf, "%.2fx", x);
          ratio = buf;
        } else if (&r == (it != baseline.end() ? it->second : nullptr)) {
          ratio = "1.00x (baseline)";
        }
        char items[32] = "-";
        if (r.items_per_second > 0) std::snprintf(items, sizeof items, "%.3g", r.items_per_second);
        std::printf("| %s | %.4g %s | %s | %s | %s |\n", r.name.c_str(), r.time, r.unit.c_str(), items,
                    ratio.c_str(), r.counters.c_str());
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_summary: %s\n", e.what());
    return 1;
  }
  return 0;
}
