// rlvr_arithmetic's data: synthetic arithmetic problems in difficulty levels, digit-by-digit
// chain-of-thought targets ending in \boxed{answer}, and instruction templates x operator
// vocabularies for prompt diversity, some templates held out for evaluation ("Debunk the Myth of
// SFT Generalization", arXiv 2510.00237: prompt diversity + CoT supervision; docs/env.md, prompt variation).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>
#include <xplor/core/random.hpp>
#include <xplor/data/cot.hpp>

namespace rlvr {

enum class op_kind : int { add = 0, sub = 1, mul = 2 };
inline constexpr int num_ops = 3;
inline constexpr int num_levels = 5;  // level L: L-digit operands (multiplication: L digits x 1 digit)
/// SFT sees levels 1-4 only; level 5 is beyond the SFT data (the knowledge boundary TruthRL is about).
inline constexpr int sft_max_level = 4;

inline const char* op_name(op_kind op) {
  return op == op_kind::add ? "add" : op == op_kind::sub ? "sub" : "mul";
}

struct problem {
  std::int64_t a = 0, b = 0;
  op_kind op = op_kind::add;
  int level = 1;
  std::int64_t answer() const { return op == op_kind::add ? a + b : op == op_kind::sub ? a - b : a * b; }
};

/// A uniform integer in [lo, hi] from a Philox stream (multiply-shift; the bias is below 2^-20 here).
inline std::int64_t uniform_int(xplor::philox_stream& gen, std::int64_t lo, std::int64_t hi) {
  const auto span = static_cast<std::uint64_t>(hi - lo + 1);
  return lo + static_cast<std::int64_t>((static_cast<std::uint64_t>(gen()) * span) >> 32);
}

/// Level L: L-digit a and b (b has 1 digit for multiplication); subtraction keeps a >= b so the
/// answer is never negative. Level 1 allows 0.
inline problem draw_problem(xplor::philox_stream& gen, int level, op_kind op) {
  std::int64_t lo = 1, hi = 9;
  for (int i = 1; i < level; ++i) {
    lo *= 10;
    hi = hi * 10 + 9;
  }
  if (level == 1) lo = 0;
  problem p;
  p.op = op;
  p.level = level;
  p.a = uniform_int(gen, lo, hi);
  p.b = op == op_kind::mul ? uniform_int(gen, 0, 9) : uniform_int(gen, lo, hi);
  if (op == op_kind::sub && p.b > p.a) std::swap(p.a, p.b);
  return p;
}

// ---------------------------------------------------------------------------------------------
// Chain of thought, least significant digit first (steps joined by xplor::data::sft_target in
// its boxed style). Each step writes a two-character result: the
// carry (or borrow) then the digit, e.g. 347 + 589: "7+9+0=16 4+8+1=13 3+5+1=09 \boxed{936}";
// 547 - 389: "7-9-0=18 4-8-1=15 5-3-1=01 \boxed{158}" (1 = borrow); 47 * 8: "7*8+0=56 4*8+5=37
// \boxed{376}". The answer is the steps' digits read backwards, after the last carry.

/// The answer-only target \boxed{answer} (xplor::data's boxed CoT style without a trace).
inline std::string boxed(const std::string& answer) {
  return xplor::data::sft_target({}, answer, {xplor::data::cot_style::boxed, false});
}
inline const std::string& abstain_answer() {
  static const std::string s = "I don't know";
  return s;
}

inline std::string chain_of_thought(const problem& p) {
  std::vector<std::string> steps;
  std::int64_t a = p.a, b = p.b;
  int carry = 0;
  const char sym = p.op == op_kind::add ? '+' : p.op == op_kind::sub ? '-' : '*';
  do {
    const int x = static_cast<int>(a % 10), y = static_cast<int>(p.op == op_kind::mul ? p.b : b % 10);
    int hi = 0, digit = 0;
    if (p.op == op_kind::add) {
      const int s = x + y + carry;
      hi = s / 10;
      digit = s % 10;
    } else if (p.op == op_kind::sub) {
      const int s = x - y - carry;
      hi = s < 0 ? 1 : 0;
      digit = s + 10 * hi;
    } else {
      const int s = x * y + carry;
      hi = s / 10;
      digit = s % 10;
    }
    std::string out;
    out += static_cast<char>('0' + x);
    out += sym;
    out += static_cast<char>('0' + y);
    out += p.op == op_kind::sub ? '-' : '+';
    out += static_cast<char>('0' + carry);
    out += '=';
    out += static_cast<char>('0' + hi);
    out += static_cast<char>('0' + digit);
    steps.push_back(std::move(out));
    carry = hi;
    a /= 10;
    b /= 10;
  } while (a > 0 || (p.op != op_kind::mul && b > 0));
  return xplor::data::sft_target(steps, std::to_string(p.answer()), {xplor::data::cot_style::boxed});
}

// ---------------------------------------------------------------------------------------------
// Prompts: an instruction template and an operator vocabulary (a symbol and a word per operation).
// Templates 0-7 train; 8-9 are held out for evaluation. "{a}", "{b}", "{s}" (symbol), "{w}" (word).

struct vocabulary {
  std::array<const char*, num_ops> symbol, word;
};
inline const std::array<vocabulary, 3>& vocabularies() {
  static const std::array<vocabulary, 3> v{{
      {{"+", "-", "*"}, {"plus", "minus", "times"}},
      {{"+", "-", "x"}, {"added to", "less", "multiplied by"}},
      {{"+", "-", "*"}, {"and", "take away", "by"}},
  }};
  return v;
}

inline constexpr int num_train_templates = 8;
inline const std::array<const char*, 10>& templates() {
  static const std::array<const char*, 10> t{{
      "{a}{s}{b}=?",
      "What is {a} {w} {b}?",
      "Compute {a} {s} {b}.",
      "Find {a} {w} {b}.",
      "Q: {a} {w} {b}",
      "Evaluate {a}{s}{b}",
      "Work out {a} {w} {b}.",
      "{a} {s} {b}",
      // held out
      "Calculate {a} {s} {b}:",
      "{a} {w} {b} is?",
  }};
  return t;
}

inline std::string render_prompt(const problem& p, int template_index, int vocab_index) {
  const vocabulary& v = vocabularies()[static_cast<std::size_t>(vocab_index)];
  const auto op = static_cast<std::size_t>(p.op);
  std::string out;
  for (std::string_view t = templates()[static_cast<std::size_t>(template_index)]; !t.empty();) {
    if (t.size() >= 3 && t[0] == '{' && t[2] == '}') {
      const char key = t[1];
      out += key == 'a'   ? std::to_string(p.a)
             : key == 'b' ? std::to_string(p.b)
             : key == 's' ? std::string(v.symbol[op])
                          : std::string(v.word[op]);
      t.remove_prefix(3);
    } else {
      out += t[0];
      t.remove_prefix(1);
    }
  }
  return out + "\n";
}

/// One prompt of a data set: the problem and the prompt text it was rendered to.
struct example {
  problem p;
  int template_index = 0;
  int vocab_index = 0;
  std::string prompt;
};

/// `count` examples drawn from (seed, stream): operation and level uniform, template uniform over
/// [template_lo, template_hi), vocabulary uniform.
inline std::vector<example> draw_examples(std::uint64_t seed, std::uint64_t stream, int count,
                                          int template_lo, int template_hi, int level_lo = 1,
                                          int level_hi = num_levels) {
  xplor::philox_stream gen(seed, stream);
  std::vector<example> out;
  out.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    example e;
    const auto op = static_cast<op_kind>(uniform_int(gen, 0, num_ops - 1));
    e.p = draw_problem(gen, static_cast<int>(uniform_int(gen, level_lo, level_hi)), op);
    e.template_index = static_cast<int>(uniform_int(gen, template_lo, template_hi - 1));
    e.vocab_index =
        static_cast<int>(uniform_int(gen, 0, static_cast<std::int64_t>(vocabularies().size()) - 1));
    e.prompt = render_prompt(e.p, e.template_index, e.vocab_index);
    out.push_back(std::move(e));
  }
  return out;
}

/// An evaluation set: `per_cell` problems for every (level, operation), templates in [lo, hi).
inline std::vector<example> eval_examples(std::uint64_t seed, std::uint64_t stream, int per_cell,
                                          int template_lo, int template_hi) {
  xplor::philox_stream gen(seed, stream);
  std::vector<example> out;
  for (int level = 1; level <= num_levels; ++level)
    for (int op = 0; op < num_ops; ++op)
      for (int i = 0; i < per_cell; ++i) {
        example e;
        e.p = draw_problem(gen, level, static_cast<op_kind>(op));
        e.template_index = template_lo + i % (template_hi - template_lo);
        e.vocab_index = static_cast<int>((i / (template_hi - template_lo)) % vocabularies().size());
        e.prompt = render_prompt(e.p, e.template_index, e.vocab_index);
        out.push_back(std::move(e));
      }
  return out;
}

}  // namespace rlvr
