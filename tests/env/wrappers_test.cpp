// Wrappers: tool-call parsing, tool use (rewards, cap, malformed calls), observation formats and
// caps, prompt variation (determinism, held-out templates, vocabularies), episode tracking, the
// order wrap() applies and deep clones. Each behaviour: a hand-computed case, a random property
// case with a fixed seed, and bad input.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>
#include <xplor/env/vector_env.hpp>
#include <xplor/env/wrappers.hpp>

namespace {

using namespace xplor::env;
using Catch::Contains;

// Terminates after k steps with reward = step index; observation "o<t>" (or "o<t>:<action>").
class counter_env : public environment {
 public:
  explicit counter_env(int k = 3, bool echo = false) : k_(k), echo_(echo) {}
  reset_result reset(std::uint64_t seed) override {
    t_ = 0;
    seed_ = seed;
    return {"o0", {{"seed", std::to_string(seed)}}};
  }
  step_result step(std::string_view action) override {
    ++t_;
    last_action_ = std::string(action);
    step_result r;
    r.observation = std::string("o") + std::to_string(t_);
    if (echo_) (r.observation += ":") += last_action_;
    r.reward = static_cast<float>(t_);
    r.terminated = t_ >= k_;
    return r;
  }
  std::unique_ptr<environment> clone() const override { return std::make_unique<counter_env>(*this); }
  std::string id() const override { return "test:counter"; }
  int t() const { return t_; }
  const std::string& last_action() const { return last_action_; }

 private:
  int k_, t_ = 0;
  bool echo_;
  std::uint64_t seed_ = 0;
  std::string last_action_;
};

// Upper-cases its input; fails on empty input.
class upper_tool : public tool {
 public:
  std::string name() const override { return "upper"; }
  tool_result run(std::string_view input) const override {
    if (input.empty()) return {false, "empty input"};
    std::string out(input);
    for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return {true, out};
  }
};

class throwing_tool : public tool {
 public:
  std::string name() const override { return "boom"; }
  tool_result run(std::string_view) const override { throw std::runtime_error("kaboom"); }
};

class named_tool : public upper_tool {
 public:
  explicit named_tool(std::string n) : name_(std::move(n)) {}
  std::string name() const override { return name_; }

 private:
  std::string name_;
};

std::vector<std::shared_ptr<const tool>> toolbox() {
  return {std::make_shared<upper_tool>(), std::make_shared<throwing_tool>()};
}

std::string call(std::string_view name, std::string_view input) {
  std::string s = "<tool name=\"";
  s += name;
  s += "\">";
  s += input;
  s += "</tool>";
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("parse_tool_call: valid, absent and malformed calls", "[env][wrappers][tool]") {
  auto c = parse_tool_call("let me compute <tool name=\"calculator\">1+2</tool> and more");
  REQUIRE(c.status == tool_call::kind::valid);
  REQUIRE(c.name == "calculator");
  REQUIRE(c.input == "1+2");
  c = parse_tool_call("<tool name=\"a-b_9\"></tool>");
  REQUIRE(c.status == tool_call::kind::valid);
  REQUIRE(c.input.empty());
  c = parse_tool_call("<tool name=\"x\">line1\nline2</tool><tool name=\"y\">2</tool>");  // only the first
  REQUIRE(c.name == "x");
  REQUIRE(c.input == "line1\nline2");
  for (std::string_view none :
       {"", "no call here", "<tools>list</tools>", "<toolbox>", "tool name=\"x\">1</tool>"})
    REQUIRE(parse_tool_call(none).status == tool_call::kind::none);
  for (std::string_view bad :
       {"<tool>1+2</tool>", "<tool name=calc>1</tool>", "<tool name=\"\">1</tool>",
        "<tool name=\"a b\">1</tool>", "<tool name=\"calc\" >1</tool>", "<tool name=\"calc\">1+2",
        "<tool name=\"calc\">1<tool name=\"x\">2</tool>", "text <tool", "<tool name=\"calc"}) {
    INFO(bad);
    c = parse_tool_call(bad);
    REQUIRE(c.status == tool_call::kind::malformed);
    REQUIRE(!c.error.empty());
  }
  REQUIRE(parse_tool_call(call(std::string(64, 'n'), "1")).status == tool_call::kind::valid);
  REQUIRE(parse_tool_call(call(std::string(65, 'n'), "1")).status == tool_call::kind::malformed);
}

TEST_CASE("parse_tool_call: random strings never throw and valid calls round-trip", "[env][wrappers][tool]") {
  std::mt19937 rng(42);
  const std::string alphabet = "<tool name=\"x\">/ab";
  const std::vector<std::string> pieces = {"<tool", " name=\"", "x", "\">", "</tool>", "1+2", "<", "\"", ">"};
  int valid = 0;
  for (int trial = 0; trial < 5000; ++trial) {
    std::string s;
    const int len = static_cast<int>(rng() % 12);
    if (trial % 2 == 0) {  // random pieces
      for (int k = 0; k < len; ++k)
        s += rng() % 2 ? pieces[rng() % pieces.size()] : std::string(1, alphabet[rng() % alphabet.size()]);
    } else {  // a valid call in text, with 0 to 2 random one-character edits
      s = std::string("pre ") + call("x_1", "1+2") + " post";
      for (int e = static_cast<int>(rng() % 3); e > 0; --e) {
        const std::size_t at = rng() % s.size();
        const char c = alphabet[rng() % alphabet.size()];
        if (rng() % 3 == 0)
          s.erase(at, 1);
        else if (rng() % 2 == 0)
          s.insert(at, 1, c);
        else
          s[at] = c;
      }
    }
    tool_call c;
    REQUIRE_NOTHROW(c = parse_tool_call(s));
    if (c.status == tool_call::kind::valid) {
      ++valid;
      REQUIRE(s.find(call(c.name, c.input)) != std::string::npos);
    }
    if (c.status == tool_call::kind::none) REQUIRE(s.find("<tool ") == std::string::npos);
  }
  REQUIRE(valid > 0);
}

TEST_CASE("parse_tool_call: megabyte adversarial inputs parse in linear time", "[env][wrappers][tool]") {
  std::string opens;
  for (int k = 0; k < 100000; ++k) opens += "<tool name=\"x\">";
  std::string near;
  for (int k = 0; k < 200000; ++k) near += "<tool";
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(parse_tool_call(opens).status == tool_call::kind::malformed);
  REQUIRE(parse_tool_call(near).status == tool_call::kind::malformed);
  REQUIRE(parse_tool_call(std::string(1 << 20, '<')).status == tool_call::kind::none);
  REQUIRE(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("tool_use_wrapper: runs tools, rewards them and forwards other actions", "[env][wrappers][tool]") {
  auto inner = std::make_unique<counter_env>(3);
  counter_env* task = inner.get();
  tool_use_wrapper env(std::move(inner), toolbox(), tool_use_options::python_tool());
  REQUIRE(env.reset(1).observation == "o0");
  auto r = env.step("thinking <tool name=\"upper\">abc</tool>");
  REQUIRE(r.observation == "ABC");
  REQUIRE(r.reward == Approx(0.05f + 0.25f));
  REQUIRE(!r.terminated);
  REQUIRE(r.info.at("tool.name") == "upper");
  REQUIRE(r.info.at("tool.ok") == "1");
  REQUIRE(r.info.at("tool.uses") == "1");
  REQUIRE(task->t() == 0);  // the task was not stepped
  // The tool fails: error observation and the error reward.
  r = env.step(call("upper", ""));
  REQUIRE(r.observation == "Error: empty input");
  REQUIRE(r.reward == Approx(0.05f - 0.1f));
  REQUIRE(r.info.at("tool.ok") == "0");
  // A throwing tool is an error, not an exception.
  r = env.step(call("boom", "x"));
  REQUIRE(r.observation == "Error: the tool threw: kaboom");
  REQUIRE(r.reward < 0.0f);
  // Unknown tool and malformed call: error observations, negative reward.
  r = env.step(call("nope", "x"));
  REQUIRE(r.observation == "Error: unknown tool 'nope'");
  REQUIRE(r.reward == Approx(-0.05f));
  r = env.step("<tool name=\"upper\">abc");
  REQUIRE(r.observation == "Error: malformed tool call: missing </tool>");
  REQUIRE(r.reward == Approx(-0.05f));
  REQUIRE(r.info.at("tool.uses") == "5");
  REQUIRE(task->t() == 0);
  // A plain answer goes to the task.
  r = env.step("answer 7");
  REQUIRE(r.observation == "o1");
  REQUIRE(r.reward == 1.0f);
  REQUIRE(task->last_action() == "answer 7");
  REQUIRE(r.info.count("tool.name") == 0);
}

TEST_CASE("tool_use_wrapper: the cap forwards later calls to the task, reset clears it",
          "[env][wrappers][tool]") {
  tool_use_options opts;
  opts.max_tool_uses = 2;
  auto inner = std::make_unique<counter_env>(10);
  counter_env* task = inner.get();
  tool_use_wrapper env(std::move(inner), toolbox(), opts);
  env.reset(0);
  REQUIRE(env.step(call("upper", "a")).observation == "A");
  REQUIRE(env.step("<tool>bad</tool>").observation.starts_with("Error: "));  // malformed calls count
  REQUIRE(env.uses() == 2);
  auto r = env.step(call("upper", "b"));  // over the cap: the task gets it verbatim
  REQUIRE(r.observation == "o1");
  REQUIRE(task->last_action() == call("upper", "b"));
  env.reset(0);
  REQUIRE(env.uses() == 0);
  REQUIRE(env.step(call("upper", "c")).observation == "C");
  // max_tool_uses = 0 disables tools.
  opts.max_tool_uses = 0;
  tool_use_wrapper off(std::make_unique<counter_env>(10), toolbox(), opts);
  off.reset(0);
  REQUIRE(off.step(call("upper", "c")).observation == "o1");
}

TEST_CASE("tool_use_wrapper: random responses keep the reward and cap invariants", "[env][wrappers][tool]") {
  std::mt19937 rng(5);
  const std::vector<std::string> responses = {call("upper", "x"), call("upper", ""),       call("boom", "1"),
                                              call("zzz", "1"),   "<tool name=\"upper\">", "plain",
                                              "<tool>1</tool>",   "<toolbox> no call"};
  const auto opts = tool_use_options::python_tool();
  for (int episode = 0; episode < 50; ++episode) {
    auto inner = std::make_unique<counter_env>(1000);
    counter_env* task = inner.get();
    tool_use_wrapper env(std::move(inner), toolbox(), opts);
    env.reset(static_cast<std::uint64_t>(episode));
    int tool_turns = 0, task_turns = 0;
    for (int s = 0; s < 12; ++s) {
      const std::string& a = responses[rng() % responses.size()];
      step_result r;
      REQUIRE_NOTHROW(r = env.step(a));
      if (r.info.count("tool.name")) {
        ++tool_turns;
        const bool ok = r.info.at("tool.ok") == "1";
        REQUIRE(r.reward == Approx(ok ? 0.3f : -0.05f));
        REQUIRE(ok != r.observation.starts_with("Error: "));
      } else {
        ++task_turns;
        REQUIRE(r.reward == static_cast<float>(task_turns));
      }
    }
    REQUIRE(tool_turns <= opts.max_tool_uses);
    REQUIRE(task->t() == task_turns);
  }
}

TEST_CASE("tool_use_wrapper: presets and bad input", "[env][wrappers][tool]") {
  const auto py = tool_use_options::python_tool();
  REQUIRE((py.tool_reward == 0.05f && py.tool_success_reward == 0.25f && py.max_tool_uses == 5));
  REQUIRE(py.tool_error_reward < 0.0f);
  const auto search = tool_use_options::search_tool();
  REQUIRE((search.tool_reward == 0.3f && search.max_tool_uses == 5));
  const auto quiet = tool_use_options::no_int_reward(5);
  REQUIRE(
      (quiet.tool_reward == 0.0f && quiet.tool_success_reward == 0.0f && quiet.tool_error_reward == 0.0f));
  REQUIRE(tool_use_options{}.max_tool_uses == 10);

  REQUIRE_THROWS_WITH(tool_use_wrapper(nullptr, toolbox()), Contains("tool_use_wrapper") && Contains("null"));
  REQUIRE_THROWS_WITH(tool_use_wrapper(std::make_unique<counter_env>(), {}), Contains("no tools"));
  REQUIRE_THROWS_WITH(tool_use_wrapper(std::make_unique<counter_env>(), {nullptr}),
                      Contains("tools[0] is null"));
  REQUIRE_THROWS_WITH(tool_use_wrapper(std::make_unique<counter_env>(),
                                       {std::make_shared<upper_tool>(), std::make_shared<upper_tool>()}),
                      Contains("two tools are named 'upper'"));
  REQUIRE_THROWS_WITH(
      tool_use_wrapper(std::make_unique<counter_env>(), {std::make_shared<named_tool>("bad name")}),
      Contains("invalid name 'bad name'"));
  tool_use_options neg;
  neg.max_tool_uses = -1;
  REQUIRE_THROWS_WITH(tool_use_wrapper(std::make_unique<counter_env>(), toolbox(), neg),
                      Contains("max_tool_uses = -1"));
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("observation_wrapper: concat, concat_with_action and chat_template", "[env][wrappers][obs]") {
  observation_options o;
  observation_wrapper concat(std::make_unique<counter_env>(5), o);
  REQUIRE(concat.reset(0).observation == "o0");
  concat.step("a");
  REQUIRE(concat.step("b").observation == "o0\no1\no2");

  o.format = observation_format::concat_with_action;
  o.separator = " | ";
  observation_wrapper with_action(std::make_unique<counter_env>(5), o);
  with_action.reset(0);
  with_action.step("a");
  auto r = with_action.step("b");
  REQUIRE(r.observation == "o0 | a | o1 | b | o2");
  REQUIRE(r.reward == 2.0f);
  REQUIRE(r.info.at("history.turns") == "3");

  o.format = observation_format::chat_template;
  observation_wrapper chat(std::make_unique<counter_env>(5), o);
  REQUIRE(chat.reset(0).observation == "<|user|>\no0\n<|assistant|>\n");
  REQUIRE(chat.step("a").observation == "<|user|>\no0\n<|assistant|>\na\n<|user|>\no1\n<|assistant|>\n");
  o.chat = {"[U]", "[A]", "|", false};
  observation_wrapper custom(std::make_unique<counter_env>(5), o);
  custom.reset(0);
  REQUIRE(custom.step("x").observation == "[U]o0|[A]x|[U]o1|");
  // A new episode starts a new history.
  REQUIRE(custom.reset(1).observation == "[U]o0|");
}

TEST_CASE("observation_wrapper: history caps in turns and characters", "[env][wrappers][obs]") {
  observation_options o;
  o.format = observation_format::concat_with_action;
  o.max_turns = 2;
  observation_wrapper turns(std::make_unique<counter_env>(9), o);
  turns.reset(0);
  turns.step("a");
  turns.step("b");
  auto r = turns.step("c");
  REQUIRE(r.observation == "o2\nc\no3");
  REQUIRE(r.info.at("history.dropped") == "2");

  o.max_turns = 0;
  o.max_chars = 9;  // "o1\nb\no2" is 7 characters, adding "o0\na\n" would make 12
  observation_wrapper chars(std::make_unique<counter_env>(9), o);
  chars.reset(0);
  chars.step("a");
  REQUIRE(chars.step("b").observation == "o1\nb\no2");
  // The latest turn is kept whole even when it alone is longer than the cap.
  REQUIRE(chars.step("a very long action").observation == "o3");
}

TEST_CASE("observation_wrapper: random histories respect the caps", "[env][wrappers][obs]") {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    observation_options o;
    o.format = static_cast<observation_format>(rng() % 3);
    o.max_turns = rng() % 4;
    o.max_chars = rng() % 2 ? 0 : 10 + rng() % 60;
    observation_wrapper env(std::make_unique<counter_env>(1000, true), o);
    env.reset(0);
    const int steps = 1 + static_cast<int>(rng() % 8);
    step_result r;
    for (int s = 0; s < steps; ++s) r = env.step(std::string(rng() % 12, 'x'));
    const std::size_t kept = std::stoul(r.info.at("history.turns"));
    REQUIRE(kept + std::stoul(r.info.at("history.dropped")) == static_cast<std::size_t>(steps + 1));
    REQUIRE(kept >= 1);
    if (o.max_turns > 0) REQUIRE(kept <= o.max_turns);
    if (o.max_chars > 0 && kept > 1) REQUIRE(r.observation.size() <= o.max_chars);
    // Dropping one more turn would not have been needed, unless the turn cap forced it.
    const std::string latest = std::string("o") + std::to_string(steps);
    REQUIRE(r.observation.find(latest) != std::string::npos);
  }
}

TEST_CASE("observation_wrapper: bad input", "[env][wrappers][obs]") {
  REQUIRE_THROWS_WITH(observation_wrapper(nullptr), Contains("observation_wrapper") && Contains("null"));
}

// ---------------------------------------------------------------------------------------------

namespace {
prompt_variation_options three_templates(std::size_t held_out, prompt_split split) {
  prompt_variation_options p;
  p.templates = {"A: {observation}", "B: {observation}", "C: {observation}"};
  p.held_out_templates = held_out;
  p.split = split;
  return p;
}
}  // namespace

TEST_CASE("prompt_variation_wrapper: templates, vocabularies and translated actions",
          "[env][wrappers][prompt]") {
  prompt_variation_options p;
  p.templates = {"Task {observation}. Answer with {actions}. {mapping}"};
  p.canonical = {"Up", "Down"};
  p.vocabularies = {{"A", "B"}};
  prompt_variation_wrapper env(std::make_unique<counter_env>(5, true), p);
  // Find one seed of each vocabulary (the draw is deterministic, so this is a fixed search).
  std::uint64_t canonical_seed = 0, alt_seed = 0;
  bool have_canonical = false, have_alt = false;
  for (std::uint64_t s = 0; s < 100 && !(have_canonical && have_alt); ++s) {
    auto r = env.reset(s);
    if (r.info.at("prompt.vocabulary") == "0" && !have_canonical) canonical_seed = s, have_canonical = true;
    if (r.info.at("prompt.vocabulary") == "1" && !have_alt) alt_seed = s, have_alt = true;
  }
  REQUIRE((have_canonical && have_alt));
  REQUIRE(env.reset(canonical_seed).observation == "Task o0. Answer with Up, Down. ");
  REQUIRE(env.step("A then B").observation == "o1:A then B");  // canonical words: no translation
  REQUIRE(env.reset(alt_seed).observation == "Task o0. Answer with A, B. A means Up, B means Down");
  REQUIRE(env.step("go A then B, not AB or xA").observation == "o1:go Up then Down, not AB or xA");
  REQUIRE(env.translate("A.B(A)") == "Up.Down(Up)");
  // Under the new words the old ones are not actions: blanked (any ASCII case), whole words only.
  REQUIRE(env.step("Up, then B or down; Upward").observation == "o2:__, then Down or ____; Upward");
  REQUIRE(env.translate("UP") == "__");
  // The "Fake" environment: same prompt, untranslated actions.
  p.translate_actions = false;
  prompt_variation_wrapper fake(std::make_unique<counter_env>(5, true), p);
  REQUIRE(fake.reset(alt_seed).observation == "Task o0. Answer with A, B. A means Up, B means Down");
  REQUIRE(fake.step("A").observation == "o1:A");
  // Step observations are templated only on request.
  p.apply_on_step = true;
  p.translate_actions = true;
  prompt_variation_wrapper every(std::make_unique<counter_env>(5, true), p);
  every.reset(alt_seed);
  REQUIRE(every.step("B").observation == "Task o1:Down. Answer with A, B. A means Up, B means Down");
}

TEST_CASE("prompt_variation_wrapper: the draw depends only on the seed, held-out templates",
          "[env][wrappers][prompt]") {
  prompt_variation_wrapper train(std::make_unique<counter_env>(), three_templates(1, prompt_split::train));
  prompt_variation_wrapper eval(std::make_unique<counter_env>(), three_templates(1, prompt_split::eval));
  auto copy = train.clone();
  std::vector<int> counts(3, 0);
  std::mt19937_64 rng(2718);
  for (int k = 0; k < 3000; ++k) {
    const std::uint64_t seed = rng();
    const auto a = train.reset(seed);
    REQUIRE(copy->reset(seed).observation == a.observation);  // clones agree
    REQUIRE(train.reset(seed).observation == a.observation);  // and so does a second reset
    ++counts[train.template_index()];
    REQUIRE(a.observation == std::string(1, static_cast<char>('A' + train.template_index())) + ": o0");
    REQUIRE(eval.reset(seed).observation == "C: o0");  // only the held-out template
  }
  REQUIRE(counts[2] == 0);
  REQUIRE(counts[0] > 1350);
  REQUIRE(counts[1] > 1350);
  // Without held-out templates every template appears.
  prompt_variation_wrapper all(std::make_unique<counter_env>(), three_templates(0, prompt_split::train));
  std::set<std::size_t> seen;
  for (std::uint64_t s = 0; s < 100; ++s) {
    all.reset(s);
    seen.insert(all.template_index());
  }
  REQUIRE(seen.size() == 3);
}

TEST_CASE("prompt_variation_wrapper: bad input", "[env][wrappers][prompt]") {
  auto make = [](const prompt_variation_options& p) {
    return prompt_variation_wrapper(std::make_unique<counter_env>(), p);
  };
  prompt_variation_options p;
  p.templates = {};
  REQUIRE_THROWS_WITH(make(p), Contains("prompt_variation_wrapper") && Contains("no templates"));
  p.templates = {"{observation}", "no placeholder"};
  REQUIRE_THROWS_WITH(make(p), Contains("templates[1] = 'no placeholder' has no {observation}"));
  REQUIRE_THROWS_WITH(make(three_templates(3, prompt_split::train)), Contains("held_out_templates = 3"));
  REQUIRE_THROWS_WITH(make(three_templates(0, prompt_split::eval)), Contains("held_out_templates = 0"));
  p.templates = {"{observation}"};
  p.canonical = {"Up", "Down"};
  p.vocabularies = {{"A"}};
  REQUIRE_THROWS_WITH(make(p), Contains("vocabularies[0] has 1 words for 2 canonical words"));
  p.vocabularies = {{"A", "A"}};
  REQUIRE_THROWS_WITH(make(p), Contains("repeats the word 'A'"));
  p.canonical = {};
  REQUIRE_THROWS_WITH(make(p), Contains("without canonical words"));
  REQUIRE_THROWS_WITH(prompt_variation_wrapper(nullptr, {}), Contains("null"));
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("episode_tracking_wrapper: length, return and max_turns truncation", "[env][wrappers][tracking]") {
  episode_tracking_wrapper env(std::make_unique<counter_env>(3));
  env.reset(0);
  auto r = env.step("a");
  REQUIRE((r.info.at("episode.length") == "1" && r.info.at("episode.return") == std::to_string(1.0)));
  r = env.step("a");
  REQUIRE(r.info.at("episode.return") == std::to_string(3.0));
  r = env.step("a");
  REQUIRE((r.terminated && !r.truncated));
  REQUIRE((r.info.at("episode.length") == "3" && r.info.at("episode.return") == std::to_string(6.0)));
  env.reset(1);
  REQUIRE(env.length() == 0);
  REQUIRE(env.episode_return() == 0.0);

  episode_tracking_wrapper capped(std::make_unique<counter_env>(5), {2});
  capped.reset(0);
  REQUIRE(!capped.step("a").truncated);
  r = capped.step("a");
  REQUIRE((r.truncated && !r.terminated));
  REQUIRE(r.info.at("episode.truncated_by") == "max_turns");
  // Terminating on the last allowed turn is a termination, not a truncation.
  episode_tracking_wrapper exact(std::make_unique<counter_env>(2), {2});
  exact.reset(0);
  exact.step("a");
  r = exact.step("a");
  REQUIRE((r.terminated && !r.truncated));
}

TEST_CASE("episode_tracking_wrapper: random episodes sum their rewards", "[env][wrappers][tracking]") {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 100; ++trial) {
    const int k = 1 + static_cast<int>(rng() % 10), cap = static_cast<int>(rng() % 6);
    episode_tracking_wrapper env(std::make_unique<counter_env>(k), {cap});
    env.reset(0);
    double sum = 0.0;
    int length = 0;
    step_result r;
    do {
      r = env.step("x");
      sum += r.reward;
      ++length;
    } while (!r.terminated && !r.truncated);
    REQUIRE(length == (cap > 0 ? std::min(k, cap) : k));
    REQUIRE(std::stod(r.info.at("episode.return")) == Approx(sum));
    REQUIRE(sum == Approx(length * (length + 1) / 2.0));
  }
}

TEST_CASE("episode_tracking_wrapper: bad input", "[env][wrappers][tracking]") {
  REQUIRE_THROWS_WITH(episode_tracking_wrapper(std::make_unique<counter_env>(), {-1}),
                      Contains("max_turns = -1"));
  REQUIRE_THROWS_WITH(episode_tracking_wrapper(nullptr), Contains("null"));
}

// ---------------------------------------------------------------------------------------------

namespace {
wrapper_stack full_stack() {
  wrapper_stack spec;
  prompt_variation_options p;
  p.templates = {"Solve: {observation}"};
  spec.prompt_variation = p;
  spec.tools = toolbox();
  spec.tool_use = tool_use_options::python_tool();
  observation_options o;
  o.format = observation_format::concat_with_action;
  spec.observation = o;
  spec.episode_tracking = episode_tracking_options{10};
  return spec;
}
}  // namespace

TEST_CASE("wrap: applies prompt variation, tool use, observations, tracking from the inside out",
          "[env][wrappers][order]") {
  auto env = wrap(std::make_unique<counter_env>(2), full_stack());
  auto* tracking = dynamic_cast<episode_tracking_wrapper*>(env.get());
  REQUIRE(tracking != nullptr);
  auto* obs = dynamic_cast<observation_wrapper*>(&tracking->inner());
  REQUIRE(obs != nullptr);
  auto* tools = dynamic_cast<tool_use_wrapper*>(&obs->inner());
  REQUIRE(tools != nullptr);
  auto* prompt = dynamic_cast<prompt_variation_wrapper*>(&tools->inner());
  REQUIRE(prompt != nullptr);
  REQUIRE(dynamic_cast<counter_env*>(&prompt->inner()) != nullptr);
  REQUIRE(env->id() == "test:counter");

  // Behaviour: the templated prompt starts the history, the tool output joins it, the tracker
  // counts the tool turn and its reward.
  REQUIRE(env->reset(0).observation == "Solve: o0");
  auto r = env->step(call("upper", "hi"));
  REQUIRE(r.observation == std::string("Solve: o0\n") + call("upper", "hi") + "\nHI");
  REQUIRE(r.info.at("episode.length") == "1");
  REQUIRE(r.info.at("episode.return") == std::to_string(static_cast<double>(0.05f + 0.25f)));
  r = env->step("x");
  r = env->step("y");
  REQUIRE(r.terminated);
  REQUIRE(r.observation.ends_with("\nx\no1\ny\no2"));
  REQUIRE(r.info.at("episode.length") == "3");
  REQUIRE(std::stod(r.info.at("episode.return")) == Approx(0.3 + 1 + 2));

  // Empty stack: the environment itself; bad input.
  auto bare = wrap(std::make_unique<counter_env>(2), {});
  REQUIRE(dynamic_cast<counter_env*>(bare.get()) != nullptr);
  REQUIRE_THROWS_WITH(wrap(nullptr, {}), Contains("xplor::env::wrap") && Contains("null"));
}

TEST_CASE("wrappers: clone() deep-copies the whole stack mid-episode", "[env][wrappers][order]") {
  std::mt19937 rng(8);
  const std::vector<std::string> actions = {"a", call("upper", "q"), "<tool>x</tool>", "b"};
  for (int trial = 0; trial < 20; ++trial) {
    auto env = wrap(std::make_unique<counter_env>(50), full_stack());
    env->reset(static_cast<std::uint64_t>(trial));
    for (int s = 0; s < 3; ++s) env->step(actions[rng() % actions.size()]);
    auto copy = env->clone();
    for (int s = 0; s < 4; ++s) {
      const std::string& a = actions[rng() % actions.size()];
      const auto x = env->step(a), y = copy->step(a);
      REQUIRE(x.observation == y.observation);
      REQUIRE(x.reward == y.reward);
      REQUIRE(x.info == y.info);
    }
    // Independent: stepping the original does not move the copy.
    env->step("solo");
    const auto before = copy->clone()->step("z").info.at("episode.length");
    REQUIRE(copy->step("z").info.at("episode.length") == before);
  }
}

TEST_CASE("wrappers: wrapped environments in a threaded vector_env match the serial run",
          "[env][wrappers][threads]") {
  auto proto = wrap(std::make_unique<counter_env>(4), full_stack());
  const std::vector<std::string> actions = {"a", call("upper", "q"), call("boom", "1"), "<tool>x</tool>"};
  auto run = [&](int threads) {
    vector_env v = vector_env::of(*proto, 24, {autoreset_mode::same_step, threads});
    std::vector<std::string> out = v.reset(9).observations;
    std::mt19937 rng(1);
    for (int s = 0; s < 20; ++s) {
      std::vector<std::string> a(v.size());
      for (auto& x : a) x = actions[rng() % actions.size()];
      auto r = v.step(a);
      out.insert(out.end(), r.observations.begin(), r.observations.end());
      for (float reward : r.rewards) out.push_back(std::to_string(reward));
    }
    return out;
  };
  const auto serial = run(1);
  REQUIRE(run(2) == serial);
  REQUIRE(run(4) == serial);
}
