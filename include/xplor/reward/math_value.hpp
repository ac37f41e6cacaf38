// Exact values of math answers: rational functions whose numerator and denominator are
// polynomials with integer coefficients over the monomials i^a * sqrt(r) * pi^k * x^n * ...
// (r a squarefree integer, symbols such as pi, x, \alpha treated as independent indeterminates).
//
// Why this representation decides equality exactly: the products i^a sqrt(r) over squarefree r
// are linearly independent over the rationals, pi and the symbols are transcendental over them,
// so a polynomial is zero exactly when all its canonical coefficients are zero, and
// N1/D1 == N2/D2 exactly when N1*D2 - N2*D1 is the zero polynomial. There is no floating point
// anywhere: 0.333333 is not 1/3 and 1.414214 is not sqrt(2).
//
// Coefficients are 128-bit integers. Arithmetic that would overflow them, or exceed the size
// limits below, throws math_limit, which the verifier reports as "too large to decide" (never as
// a guess). Plain numbers of any length are compared by verify.hpp's arbitrary-precision path.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace xplor::reward::math {

__extension__ typedef __int128 i128;

/// Thrown when exact arithmetic would leave 128-bit coefficients or the size limits.
struct math_limit {};
/// Thrown when an answer uses a form this algebra does not represent (sqrt(x), 2^x, \sin ...).
struct math_unsupported {};

inline constexpr std::size_t max_symbols_per_monomial = 6;
inline constexpr std::size_t max_terms = 256;
/// Squarefree parts of radicands stay below this (they are factored by trial division).
inline constexpr std::uint64_t max_radicand = 1000000000000ULL;
inline constexpr std::uint16_t max_power = 256;

/// Counts monomial products across one comparison, so that adversarial answers cost bounded work.
struct work_budget {
  std::size_t left = std::size_t{1} << 20;
  void spend(std::size_t n) {
    if (n > left) throw math_limit{};
    left -= n;
  }
};

inline i128 add_checked(i128 a, i128 b) {
  i128 r;
  if (__builtin_add_overflow(a, b, &r)) throw math_limit{};
  return r;
}
inline i128 mul_checked(i128 a, i128 b) {
  i128 r;
  if (__builtin_mul_overflow(a, b, &r)) throw math_limit{};
  return r;
}
inline i128 abs128(i128 a) { return a < 0 ? -a : a; }
inline i128 gcd128(i128 a, i128 b) {
  a = abs128(a);
  b = abs128(b);
  while (b != 0) {
    const i128 t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/// i^imag * sqrt(radicand) * prod sym[k]^pow[k]; symbols sorted by id, unused slots zero, so the
/// defaulted comparison is a canonical total order.
struct monomial {
  std::uint64_t radicand = 1;
  std::uint8_t imag = 0;
  std::uint8_t count = 0;
  std::array<std::uint16_t, max_symbols_per_monomial> sym{};
  std::array<std::uint16_t, max_symbols_per_monomial> pow{};

  auto operator<=>(const monomial&) const = default;
  bool operator==(const monomial&) const = default;
  bool is_one() const { return radicand == 1 && imag == 0 && count == 0; }
};

inline std::uint64_t gcd64(std::uint64_t a, std::uint64_t b) {
  while (b != 0) {
    const std::uint64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/// a * b; the rational factor that falls out (sqrt(r)^2, i^2) multiplies `coeff`.
inline monomial multiply(const monomial& a, const monomial& b, i128& coeff) {
  monomial r;
  const std::uint64_t g = gcd64(a.radicand, b.radicand);
  const std::uint64_t x = a.radicand / g;
  const std::uint64_t y = b.radicand / g;
  if (x != 0 && y > max_radicand / x) throw math_limit{};
  r.radicand = x * y;  // coprime squarefree factors: squarefree
  if (r.radicand > max_radicand) throw math_limit{};
  coeff = mul_checked(coeff, static_cast<i128>(g));
  r.imag = static_cast<std::uint8_t>(a.imag ^ b.imag);
  if (a.imag && b.imag) coeff = -coeff;
  std::size_t i = 0;
  std::size_t j = 0;
  while (i < a.count || j < b.count) {
    if (r.count == max_symbols_per_monomial) throw math_limit{};
    std::uint16_t s;
    unsigned p;
    if (j == b.count || (i < a.count && a.sym[i] < b.sym[j])) {
      s = a.sym[i];
      p = a.pow[i++];
    } else if (i == a.count || b.sym[j] < a.sym[i]) {
      s = b.sym[j];
      p = b.pow[j++];
    } else {
      s = a.sym[i];
      p = unsigned{a.pow[i++]} + b.pow[j++];
    }
    if (p > max_power) throw math_limit{};
    r.sym[r.count] = s;
    r.pow[r.count] = static_cast<std::uint16_t>(p);
    ++r.count;
  }
  return r;
}

/// Sum of coeff * monomial, sorted by monomial, no zero coefficients: a canonical form.
struct polynomial {
  std::vector<std::pair<monomial, i128>> terms = {};

  static polynomial constant(i128 c) {
    polynomial p;
    if (c != 0) p.terms.push_back({monomial{}, c});
    return p;
  }
  static polynomial of(const monomial& m, i128 c = 1) {
    polynomial p;
    if (c != 0) p.terms.push_back({m, c});
    return p;
  }
  bool is_zero() const { return terms.empty(); }
  /// The rational constant, when the polynomial is one (zero included).
  bool is_integer(i128& c) const {
    if (terms.empty()) {
      c = 0;
      return true;
    }
    if (terms.size() != 1 || !terms[0].first.is_one()) return false;
    c = terms[0].second;
    return true;
  }
  bool operator==(const polynomial&) const = default;
};

/// Sorts by monomial and adds up equal ones, dropping zeros.
inline void canonicalize(std::vector<std::pair<monomial, i128>>& t) {
  std::sort(t.begin(), t.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  std::size_t out = 0;
  for (std::size_t k = 0; k < t.size();) {
    i128 c = 0;
    std::size_t e = k;
    while (e < t.size() && t[e].first == t[k].first) c = add_checked(c, t[e++].second);
    if (c != 0) t[out++] = {t[k].first, c};
    k = e;
  }
  t.resize(out);
  if (t.size() > max_terms) throw math_limit{};
}

inline polynomial add(const polynomial& a, const polynomial& b, i128 sign_b = 1) {
  polynomial r;
  r.terms.reserve(a.terms.size() + b.terms.size());
  std::size_t i = 0;
  std::size_t j = 0;
  while (i < a.terms.size() || j < b.terms.size()) {
    if (j == b.terms.size() || (i < a.terms.size() && a.terms[i].first < b.terms[j].first)) {
      r.terms.push_back(a.terms[i++]);
    } else if (i == a.terms.size() || b.terms[j].first < a.terms[i].first) {
      r.terms.push_back({b.terms[j].first, mul_checked(sign_b, b.terms[j].second)});
      ++j;
    } else {
      const i128 c = add_checked(a.terms[i].second, mul_checked(sign_b, b.terms[j].second));
      if (c != 0) r.terms.push_back({a.terms[i].first, c});
      ++i;
      ++j;
    }
  }
  if (r.terms.size() > max_terms) throw math_limit{};
  return r;
}

inline polynomial multiply(const polynomial& a, const polynomial& b, work_budget& budget) {
  budget.spend(a.terms.size() * b.terms.size());
  polynomial r;
  r.terms.reserve(a.terms.size() * b.terms.size());
  for (const auto& [ma, ca] : a.terms) {
    for (const auto& [mb, cb] : b.terms) {
      i128 c = mul_checked(ca, cb);
      const monomial m = multiply(ma, mb, c);
      r.terms.push_back({m, c});
    }
  }
  canonicalize(r.terms);
  return r;
}

inline polynomial scale(const polynomial& a, i128 c) {
  polynomial r;
  if (c == 0) return r;
  r.terms = a.terms;
  for (auto& t : r.terms) t.second = mul_checked(t.second, c);
  return r;
}

/// A value num / den (den never the zero polynomial). Default-constructed it is no value yet
/// (both empty, so that the parser's many temporaries cost no allocation): build values with
/// value::integer or assign both parts.
struct value {
  polynomial num;
  polynomial den;

  static value integer(i128 c) { return {polynomial::constant(c), polynomial::constant(1)}; }
  bool is_rational(i128& n, i128& d) const { return num.is_integer(n) && den.is_integer(d); }
};

/// Keeps values small and mostly canonical: a denominator that is a single term loses its
/// radical and i (multiplied into the numerator), and a constant denominator is made positive
/// and divided out with the common factor of all coefficients.
inline void reduce(value& v, work_budget& budget) {
  if (v.den.terms.size() == 1) {
    const monomial& m = v.den.terms[0].first;
    if (m.radicand != 1 || m.imag) {
      monomial conj;
      conj.radicand = m.radicand;
      conj.imag = m.imag;
      const polynomial c = polynomial::of(conj);
      v.num = multiply(v.num, c, budget);
      v.den = multiply(v.den, c, budget);
    }
  }
  i128 d = 0;
  if (!v.den.is_integer(d)) return;
  i128 g = d;
  for (const auto& t : v.num.terms) g = gcd128(g, t.second);
  if (d < 0) g = -g;
  if (g == 1) return;
  for (auto& t : v.num.terms) t.second /= g;
  v.den.terms[0].second /= g;
}

inline value add(const value& a, const value& b, work_budget& budget, i128 sign_b = 1) {
  value r;
  if (a.den == b.den) {
    r.num = add(a.num, b.num, sign_b);
    r.den = a.den;
  } else {
    r.num = add(multiply(a.num, b.den, budget), multiply(b.num, a.den, budget), sign_b);
    r.den = multiply(a.den, b.den, budget);
  }
  reduce(r, budget);
  return r;
}

inline value multiply(const value& a, const value& b, work_budget& budget) {
  value r{multiply(a.num, b.num, budget), multiply(a.den, b.den, budget)};
  reduce(r, budget);
  return r;
}

/// a / b; false when b is zero (the answer is undefined, not a value).
inline bool divide(const value& a, const value& b, value& out, work_budget& budget) {
  if (b.num.is_zero()) return false;
  out = value{multiply(a.num, b.den, budget), multiply(a.den, b.num, budget)};
  reduce(out, budget);
  return true;
}

inline value negate(const value& a) { return value{scale(a.num, -1), a.den}; }

inline bool equal(const value& a, const value& b, work_budget& budget) {
  if (a.den == b.den) return a.num == b.num;
  return multiply(a.num, b.den, budget) == multiply(b.num, a.den, budget);
}

/// base^k for an integer k (|k| <= max_power); false for 0^k with k < 0.
inline bool power(const value& base, std::int64_t k, value& out, work_budget& budget) {
  if (k > max_power || k < -static_cast<std::int64_t>(max_power)) throw math_limit{};
  value acc = value::integer(1);
  value b = base;
  std::int64_t e = k < 0 ? -k : k;
  while (e > 0) {
    if (e & 1) acc = multiply(acc, b, budget);
    e >>= 1;
    if (e > 0) b = multiply(b, b, budget);
  }
  if (k >= 0) {
    out = acc;
    return true;
  }
  return divide(value::integer(1), acc, out, budget);
}

/// n = s^2 * r with r squarefree (n > 0); returns false when r would exceed max_radicand or n
/// cannot be factored cheaply. Trial division runs while p^3 <= the unfactored rest, after which
/// the rest has at most two prime factors: it is a square or squarefree.
inline bool square_part(std::uint64_t n, std::uint64_t& s, std::uint64_t& r, work_budget& budget) {
  s = 1;
  r = 1;
  for (std::uint64_t p = 2; p * p * p <= n; p += (p == 2 ? 1 : 2)) {
    if ((p & 15) == 1) budget.spend(1);
    if (n % p != 0) continue;
    int e = 0;
    while (n % p == 0) {
      n /= p;
      ++e;
    }
    for (int k = 0; k < e / 2; ++k) s *= p;
    if (e % 2) r *= p;
  }
  // The rest n is 1, a prime, p*q or p^2.
  std::uint64_t q = static_cast<std::uint64_t>(__builtin_sqrt(static_cast<double>(n)));
  while (q * q > n) --q;
  while ((q + 1) * (q + 1) <= n) ++q;
  if (q * q == n && n > 1) {
    s *= q;
  } else {
    r *= n;
  }
  return r <= max_radicand;
}

/// The square root of a rational constant (principal root; i for negatives), exactly:
/// sqrt(p/q) = sqrt(p*q)/q = s*sqrt(r)/q. Anything else is unsupported.
inline value square_root(const value& v, work_budget& budget) {
  i128 n = 0;
  i128 d = 0;
  if (!v.is_rational(n, d)) throw math_unsupported{};
  if (d < 0) {
    n = -n;
    d = -d;
  }
  const bool negative = n < 0;
  const i128 prod = mul_checked(abs128(n), d);
  if (prod > static_cast<i128>(max_radicand) * 1000000) throw math_limit{};  // p^3 <= 1e18: p <= 1e6
  if (prod == 0) return value::integer(0);
  std::uint64_t s = 0;
  std::uint64_t r = 0;
  if (!square_part(static_cast<std::uint64_t>(prod), s, r, budget)) throw math_limit{};
  monomial m;
  m.radicand = r;
  m.imag = negative ? 1 : 0;
  value out{polynomial::of(m, static_cast<i128>(s)), polynomial::constant(d)};
  reduce(out, budget);
  return out;
}

/// The k-th root (k >= 2) of a rational constant that is an exact k-th power (k = 2 also
/// handles radicals, see square_root); anything else is unsupported.
inline value root(const value& v, std::int64_t k, work_budget& budget) {
  if (k == 2) return square_root(v, budget);
  i128 n = 0;
  i128 d = 0;
  if (k < 2 || k > 64 || !v.is_rational(n, d)) throw math_unsupported{};
  if (d < 0) {
    n = -n;
    d = -d;
  }
  if (n < 0 && k % 2 == 0) throw math_unsupported{};
  auto exact_root = [k](i128 x, i128& out) {
    // Binary search on [0, 2^(127/k)+1]; x >= 0.
    i128 lo = 0;
    i128 hi = 1;
    while (true) {
      i128 p = 1;
      bool over = false;
      for (std::int64_t e = 0; e < k && !over; ++e) over = __builtin_mul_overflow(p, hi, &p) || p > x;
      if (over) break;
      hi *= 2;
    }
    while (lo < hi) {
      const i128 mid = lo + (hi - lo) / 2;
      i128 p = 1;
      bool over = false;
      for (std::int64_t e = 0; e < k && !over; ++e) over = __builtin_mul_overflow(p, mid, &p) || p > x;
      if (over || p > x) {
        hi = mid;
      } else if (p == x) {
        out = mid;
        return true;
      } else {
        lo = mid + 1;
      }
    }
    return false;
  };
  i128 rn = 0;
  i128 rd = 0;
  if (!exact_root(abs128(n), rn) || !exact_root(d, rd)) throw math_unsupported{};
  value out = value::integer(n < 0 ? -rn : rn);
  out.den = polynomial::constant(rd);
  reduce(out, budget);
  return out;
}

/// Interned symbol names (shared by both answers of one comparison, so ids agree).
struct symbol_table {
  std::vector<std::string> names = {};
  std::uint16_t id(std::string_view name) {
    for (std::size_t k = 0; k < names.size(); ++k)
      if (names[k] == name) return static_cast<std::uint16_t>(k);
    if (names.size() >= 64) throw math_limit{};
    names.emplace_back(name);
    return static_cast<std::uint16_t>(names.size() - 1);
  }
};

inline value symbol_value(std::uint16_t id) {
  monomial m;
  m.count = 1;
  m.sym[0] = id;
  m.pow[0] = 1;
  return value{polynomial::of(m), polynomial::constant(1)};
}

}  // namespace xplor::reward::math
