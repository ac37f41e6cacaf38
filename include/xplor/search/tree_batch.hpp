// B search trees at once, mctx style: every node array is [B, capacity] (tree b's node n at
// b * capacity + n) and every frontier index [B, 2 * leaves], in the memory of either backend.
// Each driver below runs one of tree.hpp's operations on all B trees in one call (one tree per
// index of a for_each_index): add the children of an expansion, DeepSearch's local selection,
// the decayed sign-constrained backup with its frontier rescoring, the global frontier pick. The
// operations are the single tree's XPLOR_HD code, so tree b evolves exactly as a `tree` given the
// same calls; the drivers check their arguments on the backend before anything changes.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/core/numerics.hpp"
#include "xplor/search/tree.hpp"

namespace xplor::search {

/// The arrays of B trees and their frontier indexes (see the header comment for the layout).
struct tree_batch_ref {
  std::int32_t* parent;
  std::int32_t* first_child;
  std::int32_t* next_sibling;
  std::int32_t* children;
  std::int32_t* depth;
  std::int64_t* visits;
  double* value;
  double* entropy;
  std::uint8_t* terminal;
  std::int32_t* count;  // [B] nodes in use
  double* score;        // [B, 2 * leaves]
  std::int32_t* best;   // [B, 2 * leaves]
  std::int64_t trees;
  std::int32_t capacity;
  std::int32_t leaves;

  XPLOR_HD tree_ref tree_at(std::int64_t b) const {
    const std::int64_t o = b * capacity;
    return {parent + o, first_child + o, next_sibling + o, children + o, depth + o, visits + o,
            value + o,  entropy + o,     terminal + o,     count + b,    capacity};
  }
  XPLOR_HD frontier_ref frontier_at(std::int64_t b) const {
    const std::int64_t o = b * 2 * std::int64_t{leaves};
    return {score + o, best + o, leaves};
  }
};

namespace kernels {
// (Kernel functors live at namespace scope: nvcc cannot launch a class's private member type.)
struct reset_tree {
  tree_batch_ref t;
  XPLOR_HD void operator()(std::int64_t b) const {
    t.tree_at(b).clear();
    t.frontier_at(b).clear();
  }
};
}  // namespace kernels

/// B trees of `capacity` nodes on backend Exec, each starting as its root alone with an empty
/// frontier.
template <execution_tag Exec>
class tree_batch {
 public:
  tree_batch(Exec exec, std::int64_t trees, std::int32_t capacity)
      : trees_(check_trees(trees)),
        capacity_(check_capacity(capacity)),
        leaves_(frontier_ref::leaves_for(capacity)),
        parent_(make_buffer<std::int32_t>(exec, nodes())),
        first_child_(make_buffer<std::int32_t>(exec, nodes())),
        next_sibling_(make_buffer<std::int32_t>(exec, nodes())),
        children_(make_buffer<std::int32_t>(exec, nodes())),
        depth_(make_buffer<std::int32_t>(exec, nodes())),
        visits_(make_buffer<std::int64_t>(exec, nodes())),
        value_(make_buffer<double>(exec, nodes())),
        entropy_(make_buffer<double>(exec, nodes())),
        terminal_(make_buffer<std::uint8_t>(exec, nodes())),
        count_(make_buffer<std::int32_t>(exec, static_cast<std::size_t>(trees))),
        score_(make_buffer<double>(exec, heap())),
        best_(make_buffer<std::int32_t>(exec, heap())) {
    reset(exec);
  }

  std::int64_t trees() const { return trees_; }
  std::int32_t capacity() const { return capacity_; }
  tree_batch_ref ref() {
    return {parent_.data(),   first_child_.data(), next_sibling_.data(),
            children_.data(), depth_.data(),       visits_.data(),
            value_.data(),    entropy_.data(),     terminal_.data(),
            count_.data(),    score_.data(),       best_.data(),
            trees_,           capacity_,           leaves_};
  }

  /// Every tree back to its root alone, every frontier empty.
  void reset(Exec exec) {
    for_each_index(exec, trees_, kernels::reset_tree{ref()}, 3 * std::int64_t{leaves_});
  }

  /// A host copy of tree b (to read it, or to go on with it on the host).
  search::tree host_tree(std::int64_t b) {
    xplor::detail::require(b >= 0 && b < trees_, "xplor::search::tree_batch::host_tree", "tree ", b,
                           " is outside [0, ", trees_, ")");
    const tree_batch_ref all = ref();
    const tree_ref row = all.tree_at(b);
    search::tree out(capacity_);
    const tree_ref to = out.ref();
    const auto n = static_cast<std::size_t>(capacity_);
    copy_row(row.parent, to.parent, n);
    copy_row(row.first_child, to.first_child, n);
    copy_row(row.next_sibling, to.next_sibling, n);
    copy_row(row.children, to.children, n);
    copy_row(row.depth, to.depth, n);
    copy_row(row.visits, to.visits, n);
    copy_row(row.value, to.value, n);
    copy_row(row.entropy, to.entropy, n);
    copy_row(row.terminal, to.terminal, n);
    copy_row(row.count, to.count, 1);
    return out;
  }

 private:
  template <class T>
  using buffer = decltype(make_buffer<T>(std::declval<Exec>(), std::size_t{}));
  template <class T>
  static void copy_row(const T* from, T* to, std::size_t n) {
    const std::vector<T> host = copy_to_host(Exec{}, from, n);
    for (std::size_t i = 0; i < n; ++i) to[i] = host[i];
  }
  static std::int64_t check_trees(std::int64_t trees) {
    xplor::detail::require(trees >= 0, "xplor::search::tree_batch", "trees = ", trees, " is negative");
    return trees;
  }
  static std::int32_t check_capacity(std::int32_t capacity) {
    xplor::detail::require(capacity >= 1, "xplor::search::tree_batch", "capacity = ", capacity,
                           " must be >= 1");
    return capacity;
  }
  std::size_t nodes() const { return static_cast<std::size_t>(trees_) * static_cast<std::size_t>(capacity_); }
  std::size_t heap() const {
    return static_cast<std::size_t>(trees_) * 2 * static_cast<std::size_t>(leaves_);
  }

  std::int64_t trees_;
  std::int32_t capacity_, leaves_;
  buffer<std::int32_t> parent_, first_child_, next_sibling_, children_, depth_;
  buffer<std::int64_t> visits_;
  buffer<double> value_, entropy_;
  buffer<std::uint8_t> terminal_;
  buffer<std::int32_t> count_;
  buffer<double> score_;
  buffer<std::int32_t> best_;
};

namespace kernels {

/// Tree b adds count[b] children under parent[b] (none when parent[b] is no_node), child j with
/// the mean entropy and terminal flag at [b * stride + j]; then the parent and its children are
/// rescored (its child count changed, the new children enter the frontier).
template <class Score>
struct add_children {
  tree_batch_ref t;
  const std::int32_t* parent;
  const std::int32_t* count;
  const double* entropy;
  const std::uint8_t* terminal;
  std::int64_t stride;
  int width;
  Score score;
  XPLOR_HD void operator()(std::int64_t b) const {
    const std::int32_t p = parent[b];
    if (p == no_node) return;
    const tree_ref tr = t.tree_at(b);
    for (std::int32_t j = 0; j < count[b]; ++j)
      tr.add_child(p, entropy[b * stride + j], terminal[b * stride + j] != 0);
    rescore_around(tr, t.frontier_at(b), p, width, score);
  }
};

/// The first bad expansion, as 4 b + kind (kind 0: parent missing, 1: parent terminal, 2: count
/// outside [0, stride], 3: no room), or -1.
struct check_expansion {
  tree_batch_ref t;
  const std::int32_t* parent;
  const std::int32_t* count;
  std::int64_t stride;
  XPLOR_HD std::int64_t operator()(std::int64_t b) const {
    const std::int32_t p = parent[b];
    if (p == no_node) return -1;
    const std::int32_t size = t.count[b];
    if (p < 0 || p >= size) return 4 * b;
    if (t.terminal[b * t.capacity + p]) return 4 * b + 1;
    const std::int32_t c = count[b];
    if (c < 0 || c > stride) return 4 * b + 2;
    if (std::int64_t{size} + c > t.capacity) return 4 * b + 3;
    return -1;
  }
};

/// The first tree whose node[b] is neither no_node nor an existing node (2 b), or whose value
/// v[b] is not finite (2 b + 1; v may be null), or -1.
struct check_nodes {
  tree_batch_ref t;
  const std::int32_t* node;
  const double* v;
  XPLOR_HD std::int64_t operator()(std::int64_t b) const {
    const std::int32_t n = node[b];
    if (n == no_node) return -1;
    if (n < 0 || n >= t.count[b]) return 2 * b;
    if (v != nullptr && !std::isfinite(v[b])) return 2 * b + 1;
    return -1;
  }
};

template <class Score>
struct select_children {
  tree_batch_ref t;
  const std::int32_t* cur;
  std::int32_t* next;
  int width;
  double lambda;
  Score score;
  XPLOR_HD void operator()(std::int64_t b) const {
    next[b] = cur[b] == no_node ? no_node
                                : select_child(t.tree_at(b), t.frontier_at(b), cur[b], width, lambda, score);
  }
};

template <class Rule, class Score>
struct backup_rescore {
  tree_batch_ref t;
  const std::int32_t* leaf;
  const double* v;
  int width;
  Rule rule;
  Score score;
  XPLOR_HD void operator()(std::int64_t b) const {
    if (leaf[b] == no_node) return;
    const tree_ref tr = t.tree_at(b);
    tr.backup(leaf[b], v[b], rule);
    rescore_path(tr, t.frontier_at(b), leaf[b], width, score);
  }
};

struct frontier_best {
  tree_batch_ref t;
  std::int32_t* out;
  XPLOR_HD void operator()(std::int64_t b) const { out[b] = t.frontier_at(b).best_node(); }
};

}  // namespace kernels

namespace detail {

inline void check_rules(int width, const char* fn) {
  xplor::detail::require(width >= 1, fn, "width = ", width, " must be >= 1");
}
template <class Score>
void check_score(const Score& score, const char* fn) {
  if constexpr (std::is_same_v<Score, frontier_scorer>)
    xplor::detail::require(score.p.max_depth >= 1, fn, "frontier max_depth = ", score.p.max_depth,
                           " must be >= 1");
}
inline void check_per_tree(std::int64_t trees, std::size_t size, const char* fn, const char* name) {
  xplor::detail::require(static_cast<std::int64_t>(size) == trees, fn, name, " has ", size, " entries for ",
                         trees, " trees");
}
/// Names the first node[b] (and v[b]) that check_nodes rejects.
template <class Exec>
void check_node_args(Exec exec, tree_batch_ref t, const std::int32_t* node, const double* v, const char* fn,
                     const char* name) {
  const std::int64_t bad = transform_reduce(exec, t.trees, std::int64_t{-1}, xplor::detail::min_valid_code{},
                                            kernels::check_nodes{t, node, v});
  if (bad < 0) return;
  const std::int64_t b = bad / 2;
  if (bad % 2 == 1)
    xplor::detail::fail(fn, "v[", b, "] = ", copy_to_host(exec, v + b, 1)[0], " is not finite");
  xplor::detail::fail(fn, name, "[", b, "] = ", copy_to_host(exec, node + b, 1)[0], " is not a node of tree ",
                      b, " (", copy_to_host(exec, t.count + b, 1)[0], " nodes)");
}

}  // namespace detail

/// Expansion of every tree at once: tree b adds count[b] children under parent[b] (no_node: tree b
/// adds nothing), child j's mean entropy and terminal flag at [b * stride + j] of `entropy` and
/// `terminal` (stride = their length / B); the new children get ids size_b, size_b + 1, ... in
/// order, and the parent and its children are rescored on the frontier with `score`.
template <execution_tag Exec, class Score = frontier_scorer>
void add_children(Exec exec, tree_batch<Exec>& batch, span_for<Exec, const std::int32_t> parent,
                  span_for<Exec, const std::int32_t> count, span_for<Exec, const double> entropy,
                  span_for<Exec, const std::uint8_t> terminal, int width, Score score = {}) {
  constexpr const char* fn = "xplor::search::add_children";
  const std::int64_t B = batch.trees();
  detail::check_rules(width, fn);
  detail::check_score(score, fn);
  detail::check_per_tree(B, parent.size(), fn, "parent");
  detail::check_per_tree(B, count.size(), fn, "count");
  xplor::detail::require(entropy.size() == terminal.size(), fn, "entropy has ", entropy.size(),
                         " entries but terminal has ", terminal.size());
  const std::int64_t stride = B > 0 ? static_cast<std::int64_t>(entropy.size()) / B : 0;
  xplor::detail::require(stride * B == static_cast<std::int64_t>(entropy.size()), fn, "entropy has ",
                         entropy.size(), " entries, not a multiple of the ", B, " trees");
  const tree_batch_ref t = batch.ref();
  const std::int64_t bad = transform_reduce(exec, B, std::int64_t{-1}, xplor::detail::min_valid_code{},
                                            kernels::check_expansion{t, parent.data(), count.data(), stride});
  if (bad >= 0) {
    const std::int64_t b = bad / 4;
    const std::int32_t p = copy_to_host(exec, parent.data() + b, 1)[0];
    const std::int32_t size = copy_to_host(exec, t.count + b, 1)[0];
    const std::int32_t c = copy_to_host(exec, count.data() + b, 1)[0];
    switch (bad % 4) {
      case 0:
        xplor::detail::fail(fn, "parent[", b, "] = ", p, " is not a node of tree ", b, " (", size, " nodes)");
      case 1:
        xplor::detail::fail(fn, "parent[", b, "] = ", p, " is terminal in tree ", b,
                            " and cannot have children");
      case 2:
        xplor::detail::fail(fn, "count[", b, "] = ", c, " is outside [0, ", stride, "]");
      default:
        xplor::detail::fail(fn, "tree ", b, " is full: ", c, " children on its ", size,
                            " nodes pass the capacity ", batch.capacity());
    }
  }
  for_each_index(exec, B,
                 kernels::add_children<Score>{t, parent.data(), count.data(), entropy.data(), terminal.data(),
                                              stride, width, score},
                 stride);
}

/// DeepSearch's local selection in every tree at once: next[b] = select_child(tree b, cur[b])
/// (every child of cur[b] counts a visit; the best UCT among its non-terminal children, else the
/// frontier's best), no_node where cur[b] is no_node.
template <execution_tag Exec, class Score = frontier_scorer>
void select_children(Exec exec, tree_batch<Exec>& batch, span_for<Exec, const std::int32_t> cur, int width,
                     double lambda, span_for<Exec, std::int32_t> next, Score score = {}) {
  constexpr const char* fn = "xplor::search::select_children";
  detail::check_rules(width, fn);
  detail::check_score(score, fn);
  xplor::detail::require(std::isfinite(lambda) && lambda >= 0.0, fn, "lambda = ", lambda,
                         " must be finite and >= 0");
  detail::check_per_tree(batch.trees(), cur.size(), fn, "cur");
  detail::check_per_tree(batch.trees(), next.size(), fn, "next");
  const tree_batch_ref t = batch.ref();
  detail::check_node_args(exec, t, cur.data(), nullptr, fn, "cur");
  for_each_index(exec, batch.trees(),
                 kernels::select_children<Score>{t, cur.data(), next.data(), width, lambda, score}, 64);
}

/// The backup in every tree at once: tree b backs v[b] up from leaf[b] to its root with `rule`
/// (DeepSearch's decayed sign-constrained update by default) and rescores the path and its
/// children with `score`; trees with leaf[b] = no_node are left alone.
template <execution_tag Exec, class Rule = decayed_constrained_backup, class Score = frontier_scorer>
void backup(Exec exec, tree_batch<Exec>& batch, span_for<Exec, const std::int32_t> leaf,
            span_for<Exec, const double> v, int width, Rule rule = {}, Score score = {}) {
  constexpr const char* fn = "xplor::search::backup";
  detail::check_rules(width, fn);
  detail::check_score(score, fn);
  if constexpr (std::is_same_v<Rule, decayed_constrained_backup>)
    xplor::detail::require(rule.floor >= 0.0 && rule.floor <= 1.0, fn, "backup floor = ", rule.floor,
                           " is outside [0, 1]");
  detail::check_per_tree(batch.trees(), leaf.size(), fn, "leaf");
  detail::check_per_tree(batch.trees(), v.size(), fn, "v");
  const tree_batch_ref t = batch.ref();
  detail::check_node_args(exec, t, leaf.data(), v.data(), fn, "leaf");
  for_each_index(exec, batch.trees(),
                 kernels::backup_rescore<Rule, Score>{t, leaf.data(), v.data(), width, rule, score}, 64);
}

/// The global frontier pick of every tree: out[b] = tree b's best frontier node (no_node when its
/// frontier is empty).
template <execution_tag Exec>
void frontier_best(Exec exec, tree_batch<Exec>& batch, span_for<Exec, std::int32_t> out) {
  constexpr const char* fn = "xplor::search::frontier_best";
  detail::check_per_tree(batch.trees(), out.size(), fn, "out");
  for_each_index(exec, batch.trees(), kernels::frontier_best{batch.ref(), out.data()});
}

}  // namespace xplor::search
