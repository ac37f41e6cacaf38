// A generated corpus of (predicted, reference) answer pairs of the kinds MATH and GSM8K produce,
// each labelled equivalent or not by construction: correct rewrites (separators, units, term
// order, simplified and unsimplified radicals, bracket spacing, set order, matrix environments)
// and hostile near-misses (sign flips, bracket kinds, 6-decimal approximations, lists that look
// like thousands-separated numbers). Used by bench_reward and by tools/verify_pairs, whose
// output tools/compare_math_verify.py runs through HuggingFace math-verify. Deterministic
// (splitmix64), so every program sees the same pairs.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace xplor_bench {

struct labelled_pair {
  std::string predicted;
  std::string reference;
  std::string kind;
  bool equivalent = false;
};

class corpus_rng {
 public:
  explicit corpus_rng(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [lo, hi].
  int range(int lo, int hi) {
    return lo + static_cast<int>(next() % static_cast<std::uint64_t>(hi - lo + 1));
  }
  bool coin() { return next() & 1; }

 private:
  std::uint64_t s_;
};

inline std::string str(long long v) { return std::to_string(v); }

inline std::string thousands(long long v) {
  std::string d = std::to_string(v < 0 ? -v : v);
  std::string out;
  for (std::size_t k = 0; k < d.size(); ++k) {
    if (k > 0 && (d.size() - k) % 3 == 0) out += ',';
    out += d[k];
  }
  return (v < 0 ? "-" : "") + out;
}

inline long long gcd_ll(long long a, long long b) {
  a = a < 0 ? -a : a;
  b = b < 0 ? -b : b;
  while (b != 0) {
    const long long t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/// Six-decimal rounding of p/q as text (the approximation a model writes instead of p/q).
inline std::string six_decimals(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", x);
  return buf;
}

/// `\sqrt3` for one digit (LaTeX takes one token), `\sqrt{13}` otherwise.
inline std::string sqrt_short(int r) { return r < 10 ? "\\sqrt" + str(r) : "\\sqrt{" + str(r) + "}"; }

/// `n` pairs, about half equivalent, over 14 kinds.
inline std::vector<labelled_pair> math_corpus(std::size_t n, std::uint64_t seed = 2026) {
  corpus_rng g(seed);
  std::vector<labelled_pair> out;
  out.reserve(n);
  const int squarefree[] = {2, 3, 5, 6, 7, 10, 11, 13, 14, 15, 17, 19, 21};
  const char* letters = "ABCDE";
  auto add = [&](std::string p, std::string r, const char* kind, bool eq) {
    out.push_back({std::move(p), std::move(r), kind, eq});
  };
  while (out.size() < n) {
    const int kind = g.range(0, 13);
    const bool eq = g.coin();
    switch (kind) {
      case 0: {  // GSM8K integers: separators, currency, units, trailing .0
        const long long v = g.range(1000, 9999999);
        const std::string gold = str(v);
        if (eq) {
          const std::string forms[] = {thousands(v), str(v) + ".0", "\\$" + thousands(v),
                                       str(v) + " dollars"};
          std::string p = forms[g.range(0, 3)];
          if (g.range(0, 4) == 0) {
            std::string d = thousands(v);
            for (std::size_t k = d.find(','); k != std::string::npos; k = d.find(',', k + 4))
              d.replace(k, 1, "{,}");
            p = d;
          }
          add(p, gold, "integer", true);
        } else {
          const std::string s = str(v);
          const std::string split = s.substr(0, s.size() - 3) + ", " + s.substr(s.size() - 3);  // a list
          add(g.coin() ? thousands(v + (g.coin() ? 1 : -1)) : split, gold, "integer", false);
        }
        break;
      }
      case 1: {  // fractions
        long long p = g.range(1, 40);
        long long q = g.range(2, 41);
        const long long d = gcd_ll(p, q);
        p /= d;
        q /= d;
        if (q == 1) q = 7;
        const std::string gold = "\\frac{" + str(p) + "}{" + str(q) + "}";
        if (eq) {
          const long long k = g.range(2, 9);
          const std::string forms[] = {
              str(p) + "/" + str(q), "\\dfrac{" + str(k * p) + "}{" + str(k * q) + "}",
              "\\tfrac{" + str(p) + "}{" + str(q) + "}", "\\frac{" + str(p) + "}{" + str(q) + "}"};
          add(forms[g.range(0, 3)], gold, "fraction", true);
        } else {
          long long rest = q;  // a six-decimal rendering is exact when q divides 10^6
          while (rest % 2 == 0) rest /= 2;
          while (rest % 5 == 0) rest /= 5;
          const std::string forms[] = {
              rest == 1 ? "-" + str(p) + "/" + str(q)
                        : six_decimals(static_cast<double>(p) / static_cast<double>(q)),
              "\\frac{" + str(q) + "}{" + str(p) + "}", "-\\frac{" + str(p) + "}{" + str(q) + "}"};
          add(forms[g.range(0, 2)], gold, "fraction", false);
        }
        break;
      }
      case 2: {  // radicals: a sqrt(r) / c
        const int a = g.range(1, 9);
        const int r = squarefree[g.range(0, 12)];
        const int c = g.range(1, 5);
        const std::string num = (a == 1 ? "" : str(a)) + "\\sqrt{" + str(r) + "}";
        const std::string gold = c == 1 ? num : "\\frac{" + num + "}{" + str(c) + "}";
        if (eq) {
          const int k = g.range(2, 4);
          const std::string forms[] = {
              "\\sqrt{" + str(static_cast<long long>(a) * a * r) + "}" + (c == 1 ? "" : "/" + str(c)),
              (c == 1 ? str(a) : "\\frac{" + str(a) + "}{" + str(c) + "}") + sqrt_short(r),
              "\\frac{" + str(a) + "\\sqrt{" + str(static_cast<long long>(k) * k * r) + "}}{" + str(k * c) +
                  "}"};
          add(forms[g.range(0, 2)], gold, "radical", true);
        } else {
          const std::string forms[] = {"-" + gold, six_decimals(a * std::sqrt(static_cast<double>(r)) / c),
                                       (c == 1 ? "" : "\\frac{") + str(a) + "\\sqrt{" + str(r + 1) + "}" +
                                           (c == 1 ? "" : "}{" + str(c) + "}")};
          add(forms[g.range(0, 2)], gold, "radical", false);
        }
        break;
      }
      case 3: {  // sums with radicals: a + b sqrt(r)
        const int a = g.range(1, 20);
        const int b = g.range(2, 9);
        const int r = squarefree[g.range(0, 12)];
        const std::string gold = str(a) + "+" + str(b) + "\\sqrt{" + str(r) + "}";
        if (eq) {
          add(g.coin() ? str(b) + sqrt_short(r) + " + " + str(a)
                       : str(a) + " + \\sqrt{" + str(static_cast<long long>(b) * b * r) + "}",
              gold, "radical_sum", true);
        } else {
          add(str(a) + "-" + str(b) + "\\sqrt{" + str(r) + "}", gold, "radical_sum", false);
        }
        break;
      }
      case 4: {  // multiples of pi
        const int k = g.range(1, 12);
        const int m = g.range(2, 9);
        const std::string gold = "\\frac{" + str(k) + "\\pi}{" + str(m) + "}";
        if (eq) {
          add(g.coin() ? "\\frac{" + str(k) + "}{" + str(m) + "}\\pi" : str(k) + "\\pi/" + str(m), gold, "pi",
              true);
        } else {
          add(g.coin() ? "\\frac{" + str(k) + "\\pi}{" + str(m + 1) + "}"
                       : six_decimals(k * 3.141592653589793 / m),
              gold, "pi", false);
        }
        break;
      }
      case 5: {  // polynomials: term order and signs
        const int a = g.range(1, 9);
        const int b = g.range(1, 9);
        const int c = g.range(1, 9);
        const std::string gold = str(a) + "x^2+" + str(b) + "x-" + str(c);
        if (eq) {
          add(g.coin() ? "-" + str(c) + "+" + str(b) + "x+" + str(a) + "x^2"
                       : str(b) + "x + " + str(a) + "x^{2} - " + str(c),
              gold, "polynomial", true);
        } else {
          add(str(a) + "x^2-" + str(b) + "x-" + str(c), gold, "polynomial", false);
        }
        break;
      }
      case 6: {  // points
        const int x = g.range(-9, 9);
        const int y = g.range(-9, 9);
        const std::string gold = "(" + str(x) + "," + str(y) + ")";
        if (eq) {
          add(g.coin() ? "\\left( " + str(x) + ", " + str(y) + " \\right)"
                       : "(" + str(x) + ", \\frac{" + str(2 * y) + "}{2})",
              gold, "tuple", true);
        } else {
          add(x != y && g.coin() ? "(" + str(y) + "," + str(x) + ")"
                                 : "(" + str(x) + "," + str(y == 0 ? 1 : -y) + ")",
              gold, "tuple", false);
        }
        break;
      }
      case 7: {  // intervals
        const int a = g.range(-9, 5);
        const int b = a + g.range(1, 9);
        const bool inf = g.coin();
        const std::string gold = inf ? "(-\\infty," + str(b) + "]" : "[" + str(a) + "," + str(b) + ")";
        if (eq) {
          add(inf ? "\\left(-\\infty, " + str(b) + "\\right]" : "[" + str(a) + ", " + str(b) + ")", gold,
              "interval", true);
        } else {
          add(inf ? "(-\\infty," + str(b) + ")" : "[" + str(a) + "," + str(b) + "]", gold, "interval", false);
        }
        break;
      }
      case 8: {  // solution lists
        const int a = g.range(-9, 9);
        const int b = a + g.range(1, 9);
        const std::string gold = str(a) + ", " + str(b);
        if (eq) {
          const std::string forms[] = {str(b) + ", " + str(a), "\\{" + str(a) + "," + str(b) + "\\}",
                                       "x = " + str(b) + ", x = " + str(a)};
          add(forms[g.range(0, 2)], gold, "solution_list", true);
        } else {
          add(g.coin() ? str(a) + ", " + str(b + 1) : str(a), gold, "solution_list", false);
        }
        break;
      }
      case 9: {  // answer choices
        const int k = g.range(0, 4);
        const std::string gold = std::string("\\text{(") + letters[k] + ")}";
        if (eq) {
          add(g.coin() ? std::string(1, letters[k]) : std::string("(") + letters[k] + ")", gold, "choice",
              true);
        } else {
          add(std::string("(") + letters[(k + 1) % 5] + ")", gold, "choice", false);
        }
        break;
      }
      case 10: {  // degrees and units
        const int v = g.range(1, 179);
        const bool deg = g.coin();
        const std::string gold = deg ? str(v) + "^\\circ" : str(v) + "\\text{ cm}";
        if (eq) {
          add(g.coin() ? str(v) : (deg ? str(v) + "^{\\circ}" : str(v) + " \\text{cm}"), gold, "units", true);
        } else {
          add(str(v + 1), gold, "units", false);
        }
        break;
      }
      case 11: {  // equation labels
        const int v = g.range(-50, 50);
        const std::string gold = str(v);
        if (eq) {
          add(std::string(g.coin() ? "x" : "k") + " = " + str(v), gold, "label", true);
        } else {
          add("x = " + str(v + 2), gold, "label", false);
        }
        break;
      }
      case 12: {  // matrices
        const int a = g.range(-9, 9);
        const int b = g.range(-9, 9);
        const int c = g.range(-9, 9);
        const int d = g.range(-9, 9);
        auto m = [&](const char* env, int w) {
          return std::string("\\begin{") + env + "}" + str(a) + " & " + str(b) + " \\\\ " + str(c) + " & " +
                 str(w) + "\\end{" + env + "}";
        };
        const std::string gold = m("pmatrix", d);
        if (eq) {
          add(m("bmatrix", d), gold, "matrix", true);
        } else {
          add(m("pmatrix", d + 1), gold, "matrix", false);
        }
        break;
      }
      default: {  // mixed numbers and decimals
        const int w = g.range(1, 9);
        const int q = g.range(2, 9);
        const int p = g.range(1, q - 1);
        const std::string gold = "\\frac{" + str(static_cast<long long>(w) * q + p) + "}{" + str(q) + "}";
        if (eq) {
          add(str(w) + "\\frac{" + str(p) + "}{" + str(q) + "}", gold, "mixed_number", true);
        } else {
          add(str(w) + "\\frac{" + str(p) + "}{" + str(q + 1) + "}", gold, "mixed_number", false);
        }
        break;
      }
    }
  }
  return out;
}

}  // namespace xplor_bench
