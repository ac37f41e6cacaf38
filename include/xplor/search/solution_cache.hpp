// DeepSearch's solution cache (replay buffer, docs/methods.md §2.7; register_replay_buffer.py):
// verified correct responses per problem id. A prompt with cached solutions skips the tree search
// in later rounds: it gets n direct rollouts whose first k are overwritten by cached solutions
// (search/rollouts.hpp). Stored as JSON Lines, one problem per line, sorted by id:
//   {"id":"gsm8k/17","solutions":[[40,41,42],[40,43]]}
// Saving is atomic (temp file + rename); loading is all or nothing: a corrupted line is an
// xplor::error naming the file and the line, and the cache is left as it was.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "xplor/core/atomic_file.hpp"
#include "xplor/core/error.hpp"
#include "xplor/core/json_guard.hpp"

namespace xplor::search {

class solution_cache {
 public:
  using solution = std::vector<std::int32_t>;

  /// Keeps at most `max_per_problem` distinct solutions per problem (the first ones added).
  explicit solution_cache(std::size_t max_per_problem = 8) : max_per_problem_(max_per_problem) {
    xplor::detail::require(max_per_problem >= 1, "xplor::search::solution_cache",
                           "max_per_problem = ", max_per_problem, " must be >= 1");
  }

  /// Adds a verified correct solution of problem `id`; false when it is already there or the
  /// problem has max_per_problem solutions.
  bool add(const std::string& id, std::span<const std::int32_t> tokens) {
    constexpr const char* fn = "xplor::search::solution_cache::add";
    xplor::detail::require(!id.empty(), fn, "id is empty");
    xplor::detail::require(!tokens.empty(), fn, "the solution of '", id, "' is empty");
    for (std::size_t i = 0; i < tokens.size(); ++i)
      xplor::detail::require(tokens[i] >= 0, fn, "token ", i, " of the solution of '", id, "' is ", tokens[i],
                             " (< 0)");
    std::vector<solution>& list = entries_[id];
    if (list.size() >= max_per_problem_) return false;
    for (const solution& s : list)
      if (std::equal(s.begin(), s.end(), tokens.begin(), tokens.end())) return false;
    list.emplace_back(tokens.begin(), tokens.end());
    return true;
  }

  bool contains(const std::string& id) const { return entries_.count(id) != 0; }
  /// The cached solutions of `id` (empty when there are none).
  std::span<const solution> solutions(const std::string& id) const {
    const auto it = entries_.find(id);
    return it == entries_.end() ? std::span<const solution>{} : std::span<const solution>(it->second);
  }
  std::size_t problems() const { return entries_.size(); }
  std::size_t max_per_problem() const { return max_per_problem_; }

  /// Writes the cache to `path` atomically: the file holds the old cache or the new one.
  void save(const std::filesystem::path& path) const {
    atomic_file_writer file(path, "xplor::search::solution_cache::save");
    for (const auto& [id, list] : entries_) {
      const nlohmann::json line = {{"id", id}, {"solutions", list}};
      file.write(line.dump() + "\n");
    }
    file.commit();
  }

  /// Adds the problems of the JSONL file at `path` (blank lines are skipped). All or nothing: on
  /// an unreadable file or a corrupted line it throws xplor::error "'<path>' line <n>: <what>"
  /// and leaves the cache unchanged. Corrupted: not JSON (a NUL byte, nesting deeper than 4, a
  /// number beyond double), other or repeated keys, an id that is not a non-empty string, tokens
  /// that are not integers in [0, 2^31).
  void load(const std::filesystem::path& path) {
    constexpr const char* fn = "xplor::search::solution_cache::load";
    remove_stale_temp_files(path);  // debris of saves killed mid-write
    std::ifstream in(path, std::ios::binary);
    if (!in) xplor::detail::fail(fn, "cannot open '", path.string(), "'");
    solution_cache staged = *this;
    std::string text;
    for (std::size_t line = 1; std::getline(in, text); ++line) {
      if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
      auto bad = [&](const auto&... what) {
        xplor::detail::fail(fn, "'", path.string(), "' line ", line, ": ", what...);
      };
      // A line nests 3 deep; deeper nesting (or a NUL, where the parser would stop) is rejected
      // before parsing, so nothing recurses over it.
      if (const std::string problem = xplor::detail::json_guard_problem(text, 4); !problem.empty())
        bad("not valid JSON for the cache (", problem, ")");
      nlohmann::json j;
      std::set<std::string> keys;
      std::string repeated;
      try {
        j = nlohmann::json::parse(text,
                                  [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& v) {
                                    // nlohmann keeps one of two equal keys: note repeats in the line's
                                    // object.
                                    if (event == nlohmann::json::parse_event_t::key && depth == 1 &&
                                        !keys.insert(v.get<std::string>()).second && repeated.empty())
                                      repeated = v.get<std::string>();
                                    return true;
                                  });
      } catch (const nlohmann::json::exception& e) {  // parse_error; out_of_range for 1e999
        bad("not valid JSON (", xplor::detail::json_guard_brief(e.what(), 200), ")");
      }
      if (!repeated.empty())
        bad("the key \"", xplor::detail::json_guard_brief(repeated), "\" appears more than once");
      if (!j.is_object() || j.size() != 2 || !j.contains("id") || !j.contains("solutions"))
        bad("expected an object with exactly the keys \"id\" and \"solutions\"");
      if (!j["id"].is_string() || j["id"].get_ref<const std::string&>().empty())
        bad("\"id\" is not a non-empty string");
      const std::string& id = j["id"].get_ref<const std::string&>();
      const std::string shown = xplor::detail::json_guard_brief(id);
      if (!j["solutions"].is_array() || j["solutions"].empty())
        bad("\"solutions\" of '", shown, "' is not a non-empty array");
      for (const nlohmann::json& s : j["solutions"]) {
        if (!s.is_array() || s.empty()) bad("a solution of '", shown, "' is not a non-empty array of tokens");
        solution tokens;
        for (const nlohmann::json& t : s) {
          // Non-negative JSON integers parse as unsigned; anything else is not a token.
          if (!t.is_number_unsigned() || t.get<std::uint64_t>() > INT32_MAX)
            bad("a token of '", shown, "' is not an integer in [0, 2^31): ",
                xplor::detail::json_guard_brief(
                    t.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
          tokens.push_back(static_cast<std::int32_t>(t.get<std::uint64_t>()));
        }
        staged.add(id, tokens);
      }
    }
    if (in.bad()) xplor::detail::fail(fn, "cannot read '", path.string(), "'");
    *this = std::move(staged);
  }

 private:
  std::size_t max_per_problem_;
  std::map<std::string, std::vector<solution>> entries_;
};

}  // namespace xplor::search
