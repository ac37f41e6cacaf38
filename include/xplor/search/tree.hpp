// The search tree of DeepSearch as flat arrays indexed by node id (mctx style): capacity chosen
// up front, no allocation per node, children as first-child / next-sibling links. Values follow
// the code's backup (score.hpp: decayed weights and the sign-constrained update); a max segment
// tree over node ids keeps the global frontier's best node without rescanning the tree.
//
// The operations are written once, as XPLOR_HD members of tree_ref / frontier_ref (views of one
// tree's arrays, wherever they live) and the free functions below; `tree` and `frontier_index`
// own host arrays and check their arguments, and tree_batch.hpp runs the same operations over B
// trees in [B, capacity] arrays on either backend.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <vector>

#include "xplor/core/config.hpp"
#include "xplor/core/error.hpp"
#include "xplor/search/score.hpp"

namespace xplor::search {

inline constexpr std::int32_t root_index = 0;
inline constexpr std::int32_t no_node = -1;
/// The frontier score of a node that is not on the frontier.
inline constexpr double not_on_frontier = -std::numeric_limits<double>::infinity();

/// One tree's arrays (host or device memory) and the operations every backend shares. Unchecked:
/// `tree` checks its arguments, the batched drivers theirs before they launch.
struct tree_ref {
  std::int32_t* parent;
  std::int32_t* first_child;
  std::int32_t* next_sibling;
  std::int32_t* children;
  std::int32_t* depth;
  std::int64_t* visits;
  double* value;
  double* entropy;
  std::uint8_t* terminal;
  std::int32_t* count;  // nodes in use
  std::int32_t capacity;

  XPLOR_HD std::int32_t size() const { return *count; }
  XPLOR_HD double q(std::int32_t n) const {
    return visits[n] > 0 ? value[n] / static_cast<double>(visits[n]) : 0.0;
  }
  /// Back to the root alone.
  XPLOR_HD void clear() const {
    for (std::int32_t i = 0; i < capacity; ++i) {
      parent[i] = first_child[i] = next_sibling[i] = no_node;
      children[i] = depth[i] = 0;
      visits[i] = 0;
      value[i] = entropy[i] = 0.0;
      terminal[i] = 0;
    }
    *count = 1;
  }
  XPLOR_HD std::int32_t add_child(std::int32_t p, double mean_entropy, bool is_terminal) const {
    const std::int32_t id = (*count)++;
    parent[id] = p;
    depth[id] = depth[p] + 1;
    next_sibling[id] = first_child[p];  // children are linked newest first
    first_child[p] = id;
    ++children[p];
    entropy[id] = mean_entropy;
    terminal[id] = is_terminal ? 1 : 0;
    return id;
  }
  /// Every node on the path from `node` to the root gets value = rule(value, v, depth,
  /// depth(node) + 1) and one visit.
  template <class Rule>
  XPLOR_HD void backup(std::int32_t node, double v, Rule& rule) const {
    const int traj_len = depth[node] + 1;
    for (std::int32_t n = node; n != no_node; n = parent[n]) {
      value[n] = rule(value[n], v, depth[n], traj_len);
      ++visits[n];
    }
  }
};

/// A max segment tree over `leaves` (a power of two >= capacity) node ids of frontier scores:
/// the best node in O(1), a changed score in O(log capacity); ties go to the lower node id.
struct frontier_ref {
  double* score;       // [2 * leaves], heap order, leaves at [leaves, 2 * leaves)
  std::int32_t* best;  // the node id behind each score
  std::int32_t leaves;

  XPLOR_HD std::int32_t best_node() const { return score[1] == not_on_frontier ? no_node : best[1]; }
  XPLOR_HD double best_score() const { return score[1]; }
  XPLOR_HD void set(std::int32_t node, double s) const {
    std::int32_t i = leaves + node;
    score[i] = s;
    for (i /= 2; i >= 1; i /= 2) pull(i);
  }
  /// Empty: every node off the frontier.
  XPLOR_HD void clear() const {
    for (std::int32_t i = 0; i < leaves; ++i) {
      score[leaves + i] = not_on_frontier;
      best[leaves + i] = i;
    }
    for (std::int32_t i = leaves - 1; i >= 1; --i) pull(i);
  }
  XPLOR_HD void pull(std::int32_t i) const {
    const std::int32_t l = 2 * i, r = 2 * i + 1;
    const bool left = score[l] >= score[r];  // ties: the left (lower ids) child
    score[i] = left ? score[l] : score[r];
    best[i] = left ? best[l] : best[r];
  }
  /// The leaf count for a capacity: the smallest power of two >= capacity.
  static std::int32_t leaves_for(std::int32_t capacity) {
    std::int32_t n = 1;
    while (n < capacity) n *= 2;
    return n;
  }
};

/// The frontier score of node n: not_on_frontier unless n is a candidate (a non-terminal, non-root
/// node with fewer than `width` children, the code's force_to_frontier), else score(Q(parent),
/// Q(n), mean entropy, depth).
template <class Score>
XPLOR_HD double frontier_value(const tree_ref& t, std::int32_t n, int width, Score& score) {
  if (n == root_index || t.terminal[n] || t.children[n] >= width) return not_on_frontier;
  return score(t.q(t.parent[n]), t.q(n), t.entropy[n], t.depth[n]);
}

/// Rescores n (its Q or its children changed) and its children (their Q(parent) changed).
template <class Score>
XPLOR_HD void rescore_around(const tree_ref& t, const frontier_ref& f, std::int32_t n, int width,
                             Score& score) {
  f.set(n, frontier_value(t, n, width, score));
  for (std::int32_t c = t.first_child[n]; c != no_node; c = t.next_sibling[c])
    f.set(c, frontier_value(t, c, width, score));
}

/// Rescores, after a backup from `node`, every frontier candidate whose score can have changed:
/// the path nodes (their own Q) and their children (their Q(parent)). Work: path length x width,
/// not the tree size.
template <class Score>
XPLOR_HD void rescore_path(const tree_ref& t, const frontier_ref& f, std::int32_t node, int width,
                           Score& score) {
  for (std::int32_t n = node; n != no_node; n = t.parent[n]) rescore_around(t, f, n, width, score);
}

/// DeepSearch's local selection from `cur`: every child counts a visit (the code's update(0)) and
/// is rescored, then the highest UCT among the non-terminal children (ties: the earliest
/// generated), else the global frontier's best (no_node when the frontier is empty).
template <class Score>
XPLOR_HD std::int32_t select_child(const tree_ref& t, const frontier_ref& f, std::int32_t cur, int width,
                                   double lambda, Score& score) {
  for (std::int32_t c = t.first_child[cur]; c != no_node; c = t.next_sibling[c]) {
    ++t.visits[c];
    rescore_around(t, f, c, width, score);
  }
  double best = not_on_frontier;
  std::int32_t next = no_node;
  for (std::int32_t c = t.first_child[cur]; c != no_node; c = t.next_sibling[c]) {
    if (t.terminal[c]) continue;
    const double u = kernels::uct(t.q(c), t.visits[cur], t.visits[c], lambda);
    // Children are linked newest first: >= makes ties go to the earliest generated child.
    if (u >= best) best = u, next = c;
  }
  return next == no_node ? f.best_node() : next;
}

/// A tree on the host, its arguments checked.
class tree {
 public:
  /// A tree holding at most `capacity` nodes, with its root already in place.
  explicit tree(std::int32_t capacity)
      : parent_(check_capacity(capacity)),
        first_child_(parent_.size()),
        next_sibling_(parent_.size()),
        children_(parent_.size()),
        depth_(parent_.size()),
        visits_(parent_.size()),
        value_(parent_.size()),
        entropy_(parent_.size()),
        terminal_(parent_.size()) {
    ref().clear();
  }

  std::int32_t capacity() const { return static_cast<std::int32_t>(parent_.size()); }
  std::int32_t size() const { return size_; }

  /// A new child of `parent` (the chunk's mean entropy, and whether it ends the trajectory).
  std::int32_t add_child(std::int32_t parent, double mean_entropy, bool terminal) {
    constexpr const char* fn = "xplor::search::tree::add_child";
    check_node(parent, fn);
    detail::require(!terminal_[parent], fn, "node ", parent, " is terminal and cannot have children");
    detail::require(size_ < capacity(), fn, "the tree is full (capacity ", capacity(), " nodes)");
    return ref().add_child(parent, mean_entropy, terminal);
  }

  /// Backs the terminal reward v up from `node` to the root: each node on the path gets
  /// value = rule(value, v, depth, depth(node) + 1) and one visit. The default rule is
  /// DeepSearch's: constrained_update(value, v, backup_weight(depth, traj_len, floor)).
  template <class Rule>
  void backup(std::int32_t node, double v, Rule&& rule) {
    constexpr const char* fn = "xplor::search::tree::backup";
    check_node(node, fn);
    detail::require(std::isfinite(v), fn, "v = ", v, " is not finite");
    ref().backup(node, v, rule);
  }
  void backup(std::int32_t node, double v, double floor = 0.1) {
    backup(node, v, decayed_constrained_backup{floor});
  }
  /// One visit without a value (the code's update(0) of candidates that were not chosen).
  void visit(std::int32_t node) {
    check_node(node, "xplor::search::tree::visit");
    ++visits_[node];
  }

  std::int32_t parent(std::int32_t n) const { return parent_[n]; }
  std::int32_t first_child(std::int32_t n) const { return first_child_[n]; }
  std::int32_t next_sibling(std::int32_t n) const { return next_sibling_[n]; }
  std::int32_t children(std::int32_t n) const { return children_[n]; }
  int depth(std::int32_t n) const { return depth_[n]; }
  std::int64_t visits(std::int32_t n) const { return visits_[n]; }
  double value(std::int32_t n) const { return value_[n]; }
  /// Q(s) = value / visits (0 before the first visit).
  double q(std::int32_t n) const { return ref().q(n); }
  double mean_entropy(std::int32_t n) const { return entropy_[n]; }
  bool terminal(std::int32_t n) const { return terminal_[n] != 0; }

  /// The arrays as a tree_ref (what the shared operations take). The const overload is for
  /// reading: the operations that take a const tree never write through it.
  tree_ref ref() {
    return {parent_.data(), first_child_.data(), next_sibling_.data(), children_.data(), depth_.data(),
            visits_.data(), value_.data(),       entropy_.data(),      terminal_.data(), &size_,
            capacity()};
  }
  tree_ref ref() const { return const_cast<tree*>(this)->ref(); }

 private:
  static std::size_t check_capacity(std::int32_t capacity) {
    detail::require(capacity >= 1, "xplor::search::tree", "capacity = ", capacity, " must be >= 1");
    return static_cast<std::size_t>(capacity);
  }
  void check_node(std::int32_t n, const char* fn) const {
    detail::require(n >= 0 && n < size_, fn, "node ", n, " does not exist (", size_, " nodes)");
  }

  std::vector<std::int32_t> parent_, first_child_, next_sibling_, children_, depth_;
  std::vector<std::int64_t> visits_;
  std::vector<double> value_, entropy_;
  std::vector<std::uint8_t> terminal_;
  std::int32_t size_ = 0;
};

/// The best frontier node of a host tree in O(1), updated in O(log capacity) per changed node
/// (frontier_ref over host arrays, the node id checked).
class frontier_index {
 public:
  explicit frontier_index(std::int32_t capacity) : n_(check_capacity(capacity)) {
    score_.resize(2 * static_cast<std::size_t>(n_));
    best_.resize(score_.size());
    ref().clear();
  }
  /// Sets node's score (neg_inf removes it from the frontier).
  void set(std::int32_t node, double score) {
    detail::require(node >= 0 && node < n_, "xplor::search::frontier_index::set", "node ", node,
                    " is outside [0, ", n_, ")");
    ref().set(node, score);
  }
  void remove(std::int32_t node) { set(node, neg_inf); }
  /// The node with the highest score, or no_node when the frontier is empty.
  std::int32_t best() const { return ref().best_node(); }
  double best_score() const { return score_[1]; }
  frontier_ref ref() { return {score_.data(), best_.data(), n_}; }
  frontier_ref ref() const { return const_cast<frontier_index*>(this)->ref(); }

  static constexpr double neg_inf = not_on_frontier;

 private:
  static std::int32_t check_capacity(std::int32_t capacity) {
    detail::require(capacity >= 1, "xplor::search::frontier_index", "capacity = ", capacity, " must be >= 1");
    return frontier_ref::leaves_for(capacity);
  }
  std::int32_t n_;
  std::vector<double> score_;
  std::vector<std::int32_t> best_;
};

/// The host tree's overloads of the shared operations.
template <class Score>
requires std::invocable<Score&, double, double, double, int>
double frontier_value(const tree& t, std::int32_t n, int width, Score&& score) {
  return frontier_value(t.ref(), n, width, score);
}
template <class Score>
requires std::invocable<Score&, double, double, double, int>
void rescore_around(const tree& t, frontier_index& f, std::int32_t n, int width, Score&& score) {
  rescore_around(t.ref(), f.ref(), n, width, score);
}
template <class Score>
requires std::invocable<Score&, double, double, double, int>
void rescore_after_backup(const tree& t, frontier_index& f, std::int32_t node, int width, Score&& score) {
  rescore_path(t.ref(), f.ref(), node, width, score);
}
/// The same with DeepSearch's frontier score F (frontier_score with `p`).
inline void rescore_after_backup(const tree& t, frontier_index& f, std::int32_t node, int width,
                                 const frontier_params& p) {
  frontier_scorer score{p};
  rescore_path(t.ref(), f.ref(), node, width, score);
}

}  // namespace xplor::search
