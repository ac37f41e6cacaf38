// The search tree of DeepSearch as flat arrays indexed by node id (mctx style): capacity chosen
// up front, no allocation per node, children as first-child / next-sibling links. Values follow
// the code's backup (score.hpp: decayed weights and the sign-constrained update); a max segment
// tree over node ids keeps the global frontier's best node without rescanning the tree.
#pragma once

#include <concepts>
#include <cstdint>
#include <limits>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/search/score.hpp"

namespace xplor::search {

inline constexpr std::int32_t root_index = 0;
inline constexpr std::int32_t no_node = -1;

class tree {
 public:
  /// A tree holding at most `capacity` nodes, with its root already in place.
  explicit tree(std::int32_t capacity)
      : parent_(check_capacity(capacity), no_node),
        first_child_(parent_.size(), no_node),
        next_sibling_(parent_.size(), no_node),
        depth_(parent_.size(), 0),
        children_(parent_.size(), 0),
        visits_(parent_.size(), 0),
        value_(parent_.size(), 0.0),
        entropy_(parent_.size(), 0.0),
        terminal_(parent_.size(), 0) {
    size_ = 1;  // the root
  }

  std::int32_t capacity() const { return static_cast<std::int32_t>(parent_.size()); }
  std::int32_t size() const { return size_; }

  /// A new child of `parent` (the chunk's mean entropy, and whether it ends the trajectory).
  std::int32_t add_child(std::int32_t parent, double mean_entropy, bool terminal) {
    constexpr const char* fn = "xplor::search::tree::add_child";
    check_node(parent, fn);
    detail::require(!terminal_[parent], fn, "node ", parent, " is terminal and cannot have children");
    detail::require(size_ < capacity(), fn, "the tree is full (capacity ", capacity(), " nodes)");
    const std::int32_t id = size_++;
    parent_[id] = parent;
    depth_[id] = depth_[parent] + 1;
    next_sibling_[id] = first_child_[parent];
    first_child_[parent] = id;
    ++children_[parent];
    entropy_[id] = mean_entropy;
    terminal_[id] = terminal;
    return id;
  }

  /// Backs the terminal reward v up from `node` to the root: each node on the path gets
  /// value = rule(value, v, depth, depth(node) + 1) and one visit. The default rule is
  /// DeepSearch's: constrained_update(value, v, backup_weight(depth, traj_len, floor)).
  template <class Rule>
  void backup(std::int32_t node, double v, Rule&& rule) {
    constexpr const char* fn = "xplor::search::tree::backup";
    check_node(node, fn);
    detail::require(std::isfinite(v), fn, "v = ", v, " is not finite");
    const int traj_len = depth_[node] + 1;
    for (std::int32_t n = node; n != no_node; n = parent_[n]) {
      value_[n] = rule(value_[n], v, depth_[n], traj_len);
      ++visits_[n];
    }
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
  double q(std::int32_t n) const {
    return visits_[n] > 0 ? value_[n] / static_cast<double>(visits_[n]) : 0.0;
  }
  double mean_entropy(std::int32_t n) const { return entropy_[n]; }
  bool terminal(std::int32_t n) const { return terminal_[n] != 0; }

 private:
  static std::size_t check_capacity(std::int32_t capacity) {
    detail::require(capacity >= 1, "xplor::search::tree", "capacity = ", capacity, " must be >= 1");
    return static_cast<std::size_t>(capacity);
  }
  void check_node(std::int32_t n, const char* fn) const {
    detail::require(n >= 0 && n < size_, fn, "node ", n, " does not exist (", size_, " nodes)");
  }

  std::vector<std::int32_t> parent_, first_child_, next_sibling_;
  std::vector<int> depth_;
  std::vector<std::int32_t> children_;
  std::vector<std::int64_t> visits_;
  std::vector<double> value_, entropy_;
  std::vector<std::uint8_t> terminal_;
  std::int32_t size_ = 0;
};

/// The best frontier node in O(1), updated in O(log capacity) per changed node: a max segment tree
/// over node ids of scores (-inf: not on the frontier). Ties go to the lower node id.
class frontier_index {
 public:
  explicit frontier_index(std::int32_t capacity) : n_(1) {
    detail::require(capacity >= 1, "xplor::search::frontier_index", "capacity = ", capacity, " must be >= 1");
    while (n_ < capacity) n_ *= 2;
    score_.assign(2 * static_cast<std::size_t>(n_), neg_inf);
    best_.assign(2 * static_cast<std::size_t>(n_), no_node);
    for (std::int32_t i = 0; i < n_; ++i) best_[n_ + i] = i;
    for (std::int32_t i = n_ - 1; i >= 1; --i) pull(i);
  }
  /// Sets node's score (neg_inf removes it from the frontier).
  void set(std::int32_t node, double score) {
    detail::require(node >= 0 && node < n_, "xplor::search::frontier_index::set", "node ", node,
                    " is outside [0, ", n_, ")");
    std::int32_t i = n_ + node;
    score_[i] = score;
    for (i /= 2; i >= 1; i /= 2) pull(i);
  }
  void remove(std::int32_t node) { set(node, neg_inf); }
  /// The node with the highest score, or no_node when the frontier is empty.
  std::int32_t best() const { return score_[1] == neg_inf ? no_node : best_[1]; }
  double best_score() const { return score_[1]; }

  static constexpr double neg_inf = -std::numeric_limits<double>::infinity();

 private:
  void pull(std::int32_t i) {
    const std::int32_t l = 2 * i, r = 2 * i + 1;
    const bool left = score_[l] >= score_[r];  // ties: the left (lower ids) child
    score_[i] = left ? score_[l] : score_[r];
    best_[i] = left ? best_[l] : best_[r];
  }
  std::int32_t n_;
  std::vector<double> score_;
  std::vector<std::int32_t> best_;
};

/// The frontier score of node n: -inf unless n is a candidate (a non-terminal, non-root node with
/// fewer than `width` children, the code's force_to_frontier), else score(Q(parent), Q(n),
/// mean entropy, depth).
template <class Score>
requires std::invocable<Score&, double, double, double, int>
double frontier_value(const tree& t, std::int32_t n, int width, Score&& score) {
  if (n == root_index || t.terminal(n) || t.children(n) >= width) return frontier_index::neg_inf;
  return score(t.q(t.parent(n)), t.q(n), t.mean_entropy(n), t.depth(n));
}

/// Rescores n (its Q or its children changed) and its children (their Q(parent) changed).
template <class Score>
requires std::invocable<Score&, double, double, double, int>
void rescore_around(const tree& t, frontier_index& f, std::int32_t n, int width, Score&& score) {
  f.set(n, frontier_value(t, n, width, score));
  for (std::int32_t c = t.first_child(n); c != no_node; c = t.next_sibling(c))
    f.set(c, frontier_value(t, c, width, score));
}

/// Rescores, after a backup from `node`, every frontier candidate whose score can have changed:
/// the path nodes (their own Q) and their children (their Q(parent)). Work: path length x width,
/// not the tree size.
template <class Score>
requires std::invocable<Score&, double, double, double, int>
void rescore_after_backup(const tree& t, frontier_index& f, std::int32_t node, int width, Score&& score) {
  for (std::int32_t n = node; n != no_node; n = t.parent(n)) rescore_around(t, f, n, width, score);
}

/// The same with DeepSearch's frontier score F (frontier_score with `p`).
inline void rescore_after_backup(const tree& t, frontier_index& f, std::int32_t node, int width,
                                 const frontier_params& p) {
  rescore_after_backup(t, f, node, width,
                       [&p](double qp, double q, double h, int d) { return frontier_score(qp, q, h, d, p); });
}

}  // namespace xplor::search
