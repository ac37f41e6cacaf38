// DeepSearch's rollout: Monte Carlo tree search over reasoning steps inside RLVR training (Wu et
// al., arXiv 2509.25454; reference code smiles724/DeepSearch, sglang_mcts_wrapper.py and
// utils/mcts.py). One search per prompt grows a tree whose nodes are chunks of the response:
//
//   cur = root
//   while fewer than n trajectories:
//     generate the children cur still lacks (expansion width, one chunk each, forked states)
//     a child is terminal when it drew EOS/a stop token or sits at depth d_T
//     if cur has terminal children not yet backed up:
//       pick one: correct first, else incorrect, else incomplete; the lowest mean entropy wins
//       back its reward up to the root (decayed weights, sign-constrained), record its path
//       cur = argmax of the global frontier score F over all nodes that still lack children
//     else: every child gets a visit; cur = argmax UCT over the non-terminal children
//           (the global frontier when all are terminal)
//
// After the last trajectory the values along each path are soft-clipped (tanh(value / eps_q) *
// q_max; the terminal node keeps its raw score) and every token of segment j gets the advantage
// q(s_j) - mean(terminal scores of the prompt's trajectories) (mean-only; docs/search.md).
// Node expansion forks the parent's decode state, so a prefix is never recomputed; every token is
// drawn from the Philox stream (seed, stream_id(stream, node id)) at draw index = position in
// the chunk, so a search depends only on (policy, prompt, seed, stream), not on threads.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <type_traits>
#include <vector>

#include "xplor/core/decode.hpp"
#include "xplor/core/error.hpp"
#include "xplor/core/numerics.hpp"
#include "xplor/core/random.hpp"
#include "xplor/reward/outcome.hpp"
#include "xplor/rl/advantage.hpp"
#include "xplor/sample/processors.hpp"
#include "xplor/search/score.hpp"
#include "xplor/search/tree.hpp"
#include "xplor/search/tree_batch.hpp"

namespace xplor::search {

/// A verified trajectory's class (docs/methods.md §2.2): reward::outcome, the type TruthRL's
/// classification returns too. Scores: correct_score, incorrect_score (incorrect and abstain),
/// no_answer_score (no final answer: the code's "incomplete").
using reward::outcome;

/// A verifier grades a finished response: (response tokens, whether it ended with EOS or a stop
/// token) -> outcome. deep_search_batch calls it from several threads at once.
template <class V>
concept response_verifier = std::invocable < V&,
        std::span<const std::int32_t>,
bool > &&std::same_as<std::invoke_result_t<V&, std::span<const std::int32_t>, bool>, outcome>;

/// Defaults are the reference code's (round0.sh, mcts.py) except the chunk length, which the
/// code derives as max_response_length / max_depth = 16384 / 64 = 256.
struct search_params {
  int max_depth = 64;                              // d_T: a node at this depth is terminal
  int chunk_tokens = 256;                          // tokens per node (step_response_length)
  int max_response_tokens = 0;                     // response cap; 0: max_depth x chunk_tokens
  std::vector<std::int32_t> step_delimiters = {};  // non-empty: a node also ends after one of these
  int expansion_width = 8;                         // children per expanded node
  int num_trajectories = 8;                        // terminate_num = rollout.n
  double lambda_uct = 2.0;                         // lambda_puct of the local selection
  double backup_floor = 0.1;                       // backup_threshold
  double correct_score = 1.0, incorrect_score = -1.0, no_answer_score = -1.0;
  frontier_params frontier{};    // its max_depth is replaced by max_depth above
  double adv_temperature = 1.0;  // eps_q of the soft clip
  double q_value_max = 1.0;      // q_max of the soft clip
  /// How segment values become advantages: q(s_j) - mean of the prompt's terminal scores
  /// (scale none, the code's default), or divided by (std + eps) with scale group (the code's
  /// norm_adv_by_std_in_grpo: population std, eps 1e-6). scale batch is not defined per search.
  rl::advantage_options advantages = mean_only_advantage_options();
  bool exact_entropy = false;          // Hbar from the distributions, not -mean log p (the code's)
  std::int32_t max_nodes = 4096;       // tree capacity; more is an xplor::error
  sample::sampling_params sampling{};  // temperature, top-k/p, min-p, EOS, stop tokens
  /// The backup rule: a path node's new value from (value, v, depth, trajectory length). Empty:
  /// DeepSearch's decayed sign-constrained update (decayed_constrained_backup{backup_floor}).
  std::function<double(double value, double v, int depth, int traj_len)> backup_rule = {};
  /// The global frontier score from (Q(parent), Q(s), mean entropy of s, depth). Empty:
  /// frontier_score with `frontier`.
  std::function<double(double q_parent, double q, double mean_entropy, int depth)> frontier_rule = {};

  static rl::advantage_options mean_only_advantage_options() {
    rl::advantage_options o;
    o.scale = rl::scale_rewards::none;
    o.std = rl::std_kind::population;
    o.eps = 1e-6f;
    return o;
  }
};

/// One collected trajectory: the response as segments (tree nodes) with their values and
/// advantages, per token ready for the policy loss.
struct search_trajectory {
  std::vector<std::int32_t> tokens = {};           // the response (the prompt excluded)
  std::vector<float> logprobs = {};                // per token, as sampled (sampling.logprobs)
  std::vector<float> token_advantages = {};        // per token: its segment's advantage
  std::vector<std::int64_t> segment_offsets = {};  // segment j = tokens [offsets[j], offsets[j+1])
  std::vector<std::int32_t> nodes = {};            // the tree node of each segment
  std::vector<double> segment_q = {};              // soft-clipped values; the last is the raw score
  std::vector<double> segment_advantages = {};     // q(s_j) - mu (/ (std + 1e-6) with the std flag)
  outcome result = outcome::no_answer;
  double score = 0.0;         // the terminal reward
  double mean_entropy = 0.0;  // Hbar over the whole response, the guidance's key
};

struct search_result {
  std::vector<search_trajectory> trajectories = {};  // in the order they were collected
  std::int32_t nodes = 0;                            // tree size, the root included
  std::int64_t tokens_generated = 0;
  int expansions = 0;       // nodes whose children were generated
  bool exhausted = false;   // stopped early: no node left to expand
  bool from_cache = false;  // direct rollouts mixed with cached solutions (search/collect.hpp)
};

namespace detail {

inline void check_search_params(const search_params& p, const char* fn) {
  xplor::detail::require(p.max_depth >= 1, fn, "max_depth = ", p.max_depth, " must be >= 1");
  xplor::detail::require(p.chunk_tokens >= 1, fn, "chunk_tokens = ", p.chunk_tokens, " must be >= 1");
  xplor::detail::require(p.max_response_tokens >= 0, fn, "max_response_tokens = ", p.max_response_tokens,
                         " is negative");
  xplor::detail::require(p.expansion_width >= 1, fn, "expansion_width = ", p.expansion_width,
                         " must be >= 1");
  xplor::detail::require(p.num_trajectories >= 1, fn, "num_trajectories = ", p.num_trajectories,
                         " must be >= 1");
  xplor::detail::require(std::isfinite(p.lambda_uct) && p.lambda_uct >= 0.0, fn,
                         "lambda_uct = ", p.lambda_uct, " must be finite and >= 0");
  xplor::detail::require(p.backup_floor >= 0.0 && p.backup_floor <= 1.0, fn,
                         "backup_floor = ", p.backup_floor, " is outside [0, 1]");
  xplor::detail::require(
      std::isfinite(p.correct_score) && std::isfinite(p.incorrect_score) && std::isfinite(p.no_answer_score),
      fn, "scores (", p.correct_score, ", ", p.incorrect_score, ", ", p.no_answer_score, ") must be finite");
  xplor::detail::require(std::isfinite(p.adv_temperature) && p.adv_temperature > 0.0, fn,
                         "adv_temperature = ", p.adv_temperature, " must be positive");
  xplor::detail::require(std::isfinite(p.q_value_max) && p.q_value_max > 0.0, fn,
                         "q_value_max = ", p.q_value_max, " must be positive");
  xplor::detail::require(p.max_nodes >= 1, fn, "max_nodes = ", p.max_nodes, " must be >= 1");
  xplor::detail::require(
      p.advantages.scale != rl::scale_rewards::batch, fn,
      "advantages.scale = batch is not defined for one prompt's search (use none or group)");
  xplor::detail::require(std::isfinite(p.advantages.eps) && p.advantages.eps >= 0.0f, fn,
                         "advantages.eps = ", p.advantages.eps, " must be finite and >= 0");
  xplor::detail::require(p.sampling.repetition_penalty == 1.0f, fn,
                         "sampling.repetition_penalty = ", p.sampling.repetition_penalty,
                         " is not supported by the tree search (use 1)");
  (void)sample::detail::check_params(p.sampling, fn);
}

/// The terminal reward of an outcome: correct_score, no_answer_score, or incorrect_score
/// (incorrect and abstain).
inline double score_of(outcome o, const search_params& p) {
  return o == outcome::correct     ? p.correct_score
         : o == outcome::no_answer ? p.no_answer_score
                                   : p.incorrect_score;
}

/// The response cap: max_response_tokens, or max_depth x chunk_tokens (the code's 16384 = 64 x 256).
inline std::int64_t max_response(const search_params& p) {
  return p.max_response_tokens > 0 ? p.max_response_tokens : std::int64_t{p.max_depth} * p.chunk_tokens;
}

/// Releases every decode state a search still holds, however the search ends.
template <decode_policy Policy>
struct state_table {
  using state_id = typename Policy::state_id;
  Policy& policy;
  std::vector<state_id> id = {};
  std::vector<std::uint8_t> live = {};
  explicit state_table(Policy& p, std::size_t n) : policy(p), id(n), live(n, 0) {}
  state_table(const state_table&) = delete;
  state_table& operator=(const state_table&) = delete;
  ~state_table() {
    for (std::size_t i = 0; i < id.size(); ++i)
      if (live[i]) policy.release(std::span<const state_id>(&id[i], 1));
  }
  void set(std::int32_t node, state_id s) {
    id[node] = s;
    live[node] = 1;
  }
  void release(std::int32_t node) {
    if (!live[node]) return;
    live[node] = 0;
    policy.release(std::span<const state_id>(&id[node], 1));
  }
};

/// The advantages of one prompt's trajectories: segment j of each gets
/// rl::group_baseline(terminal scores, options).advantage(q(s_j)) (mean-only by default), and
/// every token of the segment gets the segment's advantage.
inline void assign_advantages(std::vector<search_trajectory>& trajectories,
                              const rl::advantage_options& options) {
  if (trajectories.empty()) return;
  std::vector<double> scores = {};
  for (const search_trajectory& tr : trajectories) scores.push_back(tr.score);
  const rl::group_baseline baseline = rl::make_group_baseline(std::span<const double>(scores), options);
  for (search_trajectory& tr : trajectories) {
    tr.segment_advantages.resize(tr.segment_q.size());
    tr.token_advantages.resize(tr.tokens.size());
    for (std::size_t j = 0; j < tr.segment_q.size(); ++j) {
      tr.segment_advantages[j] = baseline.advantage(tr.segment_q[j]);
      std::fill(tr.token_advantages.begin() + tr.segment_offsets[j],
                tr.token_advantages.begin() + tr.segment_offsets[j + 1],
                static_cast<float>(tr.segment_advantages[j]));
    }
  }
}

}  // namespace detail

/// A verifier for a batch of prompts: (prompt index, response tokens, whether it ended with EOS
/// or a stop token) -> outcome.
template <class V>
concept indexed_response_verifier = std::invocable < V&,
        std::size_t, std::span<const std::int32_t>,
bool > &&std::same_as<std::invoke_result_t<V&, std::size_t, std::span<const std::int32_t>, bool>, outcome>;

namespace detail {

/// One search of a round: its tree (a row of the round's tree_batch), the decode state of every
/// node that may still be expanded, the generated chunks and the verified outcomes.
template <decode_policy Policy>
struct search_state {
  search_state(Policy& policy, const search_params& p, std::uint32_t stream_, tree_ref tree)
      : stream(stream_),
        t(tree),
        states(policy, static_cast<std::size_t>(p.max_nodes)),
        chunk_begin(states.id.size(), 0),
        chunk_len(states.id.size(), 0),
        path_tokens(states.id.size(), 0),
        path_entropy(states.id.size(), 0.0),
        result_of(states.id.size(), outcome::no_answer),
        backed_up(states.id.size(), 0) {}

  std::uint32_t stream;
  tree_ref t;
  state_table<Policy> states;
  // Per node: its chunk in the token pool, the path's summed token entropy and length (for the
  // trajectory's mean entropy), its verified outcome (terminal nodes), whether it was backed up.
  std::vector<std::int64_t> chunk_begin, chunk_len, path_tokens;
  std::vector<double> path_entropy;
  std::vector<outcome> result_of;
  std::vector<std::uint8_t> backed_up;
  std::vector<std::int32_t> order = {};  // backed-up terminal nodes, in order
  std::vector<std::int32_t> pool_tokens = {};
  std::vector<float> pool_logprobs = {};
  std::int32_t cur = root_index;  // the node the search stands on
  bool done = false;
  search_result out = {};

  double mean_entropy_of(std::int32_t n) const {
    return path_entropy[n] / static_cast<double>(path_tokens[n]);
  }

  /// The response of `node`'s path, and optionally its log-probs, segment offsets and nodes.
  void response_of(std::int32_t node, std::vector<std::int32_t>* tokens, std::vector<float>* logprobs,
                   std::vector<std::int64_t>* offsets, std::vector<std::int32_t>* nodes) const {
    std::vector<std::int32_t> path = {};
    for (std::int32_t n = node; n != root_index; n = t.parent[n]) path.push_back(n);
    std::reverse(path.begin(), path.end());
    tokens->clear();
    if (offsets) offsets->assign(1, 0);
    for (std::int32_t n : path) {
      const auto b = pool_tokens.begin() + chunk_begin[n];
      tokens->insert(tokens->end(), b, b + chunk_len[n]);
      if (logprobs) {
        const auto lb = pool_logprobs.begin() + chunk_begin[n];
        logprobs->insert(logprobs->end(), lb, lb + chunk_len[n]);
      }
      if (offsets) offsets->push_back(static_cast<std::int64_t>(tokens->size()));
    }
    if (nodes) *nodes = std::move(path);
  }

  /// The terminal child of `cur` to back up next: correct first, else incorrect, else
  /// no answer (an abstention ranks with incorrect); then the lowest mean entropy; then the lowest
  /// node id. no_node when none.
  std::int32_t terminal_to_back_up() const {
    auto rank = [](outcome o) { return o == outcome::correct ? 0 : o == outcome::no_answer ? 2 : 1; };
    std::int32_t pick = no_node;
    for (std::int32_t c = t.first_child[cur]; c != no_node; c = t.next_sibling[c]) {
      if (!t.terminal[c] || backed_up[c]) continue;
      if (pick == no_node) {
        pick = c;
        continue;
      }
      const int rc = rank(result_of[c]), rp = rank(result_of[pick]);
      const double ec = mean_entropy_of(c), ep = mean_entropy_of(pick);
      if (rc < rp || (rc == rp && (ec < ep || (ec == ep && c < pick)))) pick = c;
    }
    return pick;
  }

  /// Trajectories from the finished tree: values read now (the accumulated value, not value /
  /// visits, as the code does), soft-clipped except at the terminal node; then advantages.
  search_result finish(const search_params& p) {
    out.trajectories.resize(order.size());
    for (std::size_t i = 0; i < order.size(); ++i) {
      const std::int32_t leaf = order[i];
      search_trajectory& tr = out.trajectories[i];
      response_of(leaf, &tr.tokens, &tr.logprobs, &tr.segment_offsets, &tr.nodes);
      tr.result = result_of[leaf];
      tr.score = score_of(tr.result, p);
      tr.mean_entropy = mean_entropy_of(leaf);
      tr.segment_q.resize(tr.nodes.size());
      for (std::size_t j = 0; j < tr.nodes.size(); ++j) {
        const double v = t.value[tr.nodes[j]];
        tr.segment_q[j] = j + 1 == tr.nodes.size() ? v : soft_clip(v, p.adv_temperature, p.q_value_max);
      }
    }
    assign_advantages(out.trajectories, p.advantages);
    out.nodes = t.size();
    return std::move(out);
  }
};

/// B searches in lockstep, mctx style: the trees are the rows of one tree_batch, and each round
/// (1) generates the children every search's current node lacks in one batched decode (one
/// logits / step call per token position for all of them), (2) backs up every search's chosen
/// terminal child in one tree_batch pass, (3) selects locally in every search that backed up
/// nothing in one pass, and reads the frontier picks of the others. Search b uses the Philox
/// streams (seed, stream_id(streams[b], node id)), so it is the search deep_search() runs alone.
template <decode_policy Policy, class Verifier>
class lockstep {
 public:
  using state_id = typename Policy::state_id;

  lockstep(Policy& policy, Verifier& verifier, const search_params& params, std::uint64_t seed, cpu_t exec)
      : policy_(policy),
        verifier_(verifier),
        p_(params),
        seed_(seed),
        exec_(exec),
        width_(params.expansion_width) {
    frontier_params fp = params.frontier;
    fp.max_depth = params.max_depth;
    if (params.frontier_rule)
      score_ = params.frontier_rule;
    else
      score_ = frontier_scorer{fp};
    if (params.backup_rule)
      rule_ = params.backup_rule;
    else
      rule_ = decayed_constrained_backup{params.backup_floor};
  }

  /// Searches prompts[b] with the stream family streams[b], to the finished results.
  std::vector<search_result> run(std::span<const std::vector<std::int32_t>> prompts,
                                 std::span<const std::uint32_t> streams) {
    const std::size_t B = prompts.size();
    tree_batch<cpu_t> trees(exec_, static_cast<std::int64_t>(B), p_.max_nodes);
    trees_ = &trees;
    const tree_batch_ref rows = trees.ref();
    for (std::size_t b = 0; b < B; ++b)
      searches_.push_back(std::make_unique<search_state<Policy>>(policy_, p_, streams[b],
                                                                 rows.tree_at(static_cast<std::int64_t>(b))));
    const std::vector<state_id> roots = begin_all(prompts);
    for (std::size_t b = 0; b < B; ++b) searches_[b]->states.set(root_index, roots[b]);
    while (std::any_of(searches_.begin(), searches_.end(), [](const auto& s) { return !s->done; })) {
      expand_all();
      step_all();
    }
    std::vector<search_result> results(B);
    for (std::size_t b = 0; b < B; ++b) results[b] = searches_[b]->finish(p_);
    return results;
  }

 private:
  Policy& policy_;
  Verifier& verifier_;
  const search_params& p_;
  std::uint64_t seed_;
  cpu_t exec_;
  int width_;
  std::function<double(double, double, double, int)> score_;  // the frontier rule
  std::function<double(double, double, int, int)> rule_;      // the backup rule
  tree_batch<cpu_t>* trees_ = nullptr;
  std::vector<std::unique_ptr<search_state<Policy>>> searches_;

  std::vector<state_id> begin_all(std::span<const std::vector<std::int32_t>> prompts) {
    if constexpr (requires {
                    { policy_.begin(prompts) } -> std::same_as<std::vector<state_id>>;
                  }) {
      return policy_.begin(prompts);  // one batched prefill
    } else {
      std::vector<state_id> roots;
      for (const auto& prompt : prompts)
        roots.push_back(policy_.begin(std::span<const std::int32_t>(prompt)));
      return roots;
    }
  }

  // One search's expansion in the current round.
  struct expansion {
    std::size_t b;
    std::int32_t cur, first_id;
    int k;
    std::int64_t room;      // tokens the response may still take (then the node is terminal)
    std::size_t chunk_cap;  // tokens this chunk may take
    bool at_depth_limit;
  };
  // A child being generated.
  struct growing {
    std::size_t e;  // its expansion
    int j;          // its index among the expansion's children
    state_id state;
    std::vector<std::int32_t> tokens = {};
    std::vector<float> logprobs = {};
    double entropy = 0.0;
    bool ended = false;  // drew EOS or a stop token
    bool owned = false;  // the state is still ours to release (not handed to a node)
  };
  // However an expansion ends (a policy or verifier exception), no forked state is left behind.
  struct release_owned {
    Policy& policy;
    std::vector<growing>& kids;
    ~release_owned() {
      for (growing& g : kids)
        if (g.owned) {
          g.owned = false;
          policy.release(std::span<const state_id>(&g.state, 1));
        }
    }
  };
  std::vector<expansion> exps_;
  std::vector<growing> kids_;
  std::vector<std::uint64_t> streams_, draws_;
  std::vector<std::int32_t> drawn_, next_tokens_;
  std::vector<float> lp_, ent_;
  std::vector<state_id> row_states_, next_states_;
  std::vector<float> subset_;
  std::vector<std::size_t> rows_, still_, step_row_;
  std::vector<std::int32_t> parent_, count_, leaf_, sel_, next_, best_;
  std::vector<double> entropy_, v_;
  std::vector<std::uint8_t> terminal_;

  static bool in(const std::vector<std::int32_t>& set, std::int32_t t) {
    return std::find(set.begin(), set.end(), t) != set.end();
  }

  /// Expansion: every search whose current node lacks children generates them, one chunk each,
  /// from forks of the node's state, all searches' children in the same decode batch; terminal
  /// children are verified at once.
  void expand_all() {
    constexpr const char* fn = "xplor::search::deep_search";
    const std::int64_t max_response = detail::max_response(p_);
    exps_.clear();
    for (std::size_t b = 0; b < searches_.size(); ++b) {
      const search_state<Policy>& s = *searches_[b];
      if (s.done) continue;
      const int k = width_ - s.t.children[s.cur];
      if (k <= 0) continue;
      xplor::detail::require(s.t.size() + k <= p_.max_nodes, fn, "the tree is full: expanding node ", s.cur,
                             " adds ", k, " nodes to the ", s.t.size(),
                             " in use, over max_nodes = ", p_.max_nodes);
      const std::int64_t room = max_response - s.path_tokens[s.cur];
      exps_.push_back({b, s.cur, s.t.size(), k, room,
                       static_cast<std::size_t>(std::min<std::int64_t>(p_.chunk_tokens, room)),
                       s.t.depth[s.cur] + 1 >= p_.max_depth});
    }
    if (exps_.empty()) return;
    const std::int64_t V = policy_.vocab_size();
    const sample::sampling_params& sp = p_.sampling;
    kids_.clear();
    release_owned guard{policy_, kids_};
    for (std::size_t e = 0; e < exps_.size(); ++e) {
      const std::vector<state_id> forked =
          policy_.fork(searches_[exps_[e].b]->states.id[exps_[e].cur], exps_[e].k);
      for (int j = 0; j < exps_[e].k; ++j)
        kids_.push_back({e, j, forked[static_cast<std::size_t>(j)], {}, {}, 0.0, false, true});
    }
    row_states_.clear();
    for (const growing& g : kids_) row_states_.push_back(g.state);
    rows_.resize(kids_.size());
    for (std::size_t r = 0; r < rows_.size(); ++r) rows_[r] = r;
    step_row_.assign(kids_.size(), 0);
    view2d<const float> logits = policy_.logits(row_states_);
    for (int pos = 0; !rows_.empty(); ++pos) {
      const std::size_t a = rows_.size();
      streams_.resize(a);
      draws_.assign(a, static_cast<std::uint64_t>(pos));
      drawn_.resize(a);
      lp_.resize(a);
      ent_.resize(a);
      for (std::size_t r = 0; r < a; ++r) {
        const growing& g = kids_[rows_[r]];
        const expansion& x = exps_[g.e];
        streams_[r] = stream_id(searches_[x.b]->stream,
                                static_cast<std::uint32_t>(x.first_id) + static_cast<std::uint32_t>(g.j));
      }
      sample::sample_rows(cpu, logits, sp, {seed_, streams_, draws_}, {drawn_, lp_, ent_});
      next_states_.clear();
      next_tokens_.clear();
      still_.clear();
      for (std::size_t r = 0; r < a; ++r) {
        growing& g = kids_[rows_[r]];
        const expansion& x = exps_[g.e];
        g.tokens.push_back(drawn_[r]);
        g.logprobs.push_back(lp_[r]);
        g.entropy += p_.exact_entropy ? double(ent_[r]) : -double(lp_[r]);
        g.ended = drawn_[r] == sp.eos_token || in(sp.stop_tokens, drawn_[r]);
        const bool chunk_done =
            g.ended || g.tokens.size() >= x.chunk_cap || in(p_.step_delimiters, drawn_[r]);
        // A chunk that continues, or ends a node that will be expanded later, takes its token into
        // the state; a terminal node's state is not needed.
        const bool last_node = x.at_depth_limit || static_cast<std::int64_t>(g.tokens.size()) >= x.room;
        if (!g.ended && !(chunk_done && last_node)) {
          step_row_[rows_[r]] = next_states_.size();
          next_states_.push_back(g.state);
          next_tokens_.push_back(drawn_[r]);
        }
        if (!chunk_done) still_.push_back(rows_[r]);
      }
      rows_.swap(still_);
      if (next_states_.empty()) continue;
      logits = policy_.step(next_states_, next_tokens_);
      // step() returned a row per stepped state; when a node ended at a delimiter while others go
      // on, keep only the rows of those still growing (each of them was stepped).
      if (!rows_.empty() && next_states_.size() != rows_.size()) {
        subset_.resize(rows_.size() * static_cast<std::size_t>(V));
        for (std::size_t r = 0; r < rows_.size(); ++r) {
          const auto at = static_cast<std::int64_t>(step_row_[rows_[r]]);
          for (std::int64_t v = 0; v < V; ++v)
            subset_[r * static_cast<std::size_t>(V) + static_cast<std::size_t>(v)] = logits(at, v);
        }
        logits = make_view(static_cast<const float*>(subset_.data()),
                           {static_cast<std::int64_t>(rows_.size()), V});
      }
    }
    add_kids();
  }

  /// The generated children into the trees (one tree_batch pass, which also rescores each
  /// expanded node and its children), then their chunks, states and verified outcomes.
  void add_kids() {
    const std::size_t B = searches_.size(), W = static_cast<std::size_t>(width_);
    parent_.assign(B, no_node);
    count_.assign(B, 0);
    entropy_.assign(B * W, 0.0);
    terminal_.assign(B * W, 0);
    for (const expansion& x : exps_) {
      parent_[x.b] = x.cur;
      count_[x.b] = x.k;
    }
    for (const growing& g : kids_) {
      const expansion& x = exps_[g.e];
      const auto len = static_cast<std::int64_t>(g.tokens.size());
      const std::size_t at = x.b * W + static_cast<std::size_t>(g.j);
      entropy_[at] = g.entropy / static_cast<double>(len);
      terminal_[at] = g.ended || x.at_depth_limit || len >= x.room;
    }
    add_children(exec_, *trees_, parent_, count_, entropy_, terminal_, width_, score_);
    for (growing& g : kids_) {
      const expansion& x = exps_[g.e];
      search_state<Policy>& s = *searches_[x.b];
      const std::int32_t id = x.first_id + g.j;
      const auto len = static_cast<std::int64_t>(g.tokens.size());
      s.chunk_begin[id] = static_cast<std::int64_t>(s.pool_tokens.size());
      s.chunk_len[id] = len;
      s.pool_tokens.insert(s.pool_tokens.end(), g.tokens.begin(), g.tokens.end());
      s.pool_logprobs.insert(s.pool_logprobs.end(), g.logprobs.begin(), g.logprobs.end());
      s.path_tokens[id] = s.path_tokens[x.cur] + len;
      s.path_entropy[id] = s.path_entropy[x.cur] + g.entropy;
      s.out.tokens_generated += len;
      g.owned = false;
      if (s.t.terminal[id]) {
        policy_.release(std::span<const state_id>(&g.state, 1));
        std::vector<std::int32_t> response;
        s.response_of(id, &response, nullptr, nullptr, nullptr);
        s.result_of[id] = verifier_(x.b, std::span<const std::int32_t>(response), g.ended);
      } else {
        s.states.set(id, g.state);
      }
    }
    for (const expansion& x : exps_) {
      search_state<Policy>& s = *searches_[x.b];
      ++s.out.expansions;
      if (s.t.children[x.cur] >= width_) s.states.release(x.cur);  // full: never expanded again
    }
  }

  /// Every search backs up its current node's best terminal child (one pass); the others select
  /// locally (one pass); the searches that backed up go on from their frontier's best.
  void step_all() {
    const std::size_t B = searches_.size();
    leaf_.assign(B, no_node);
    v_.assign(B, 0.0);
    for (std::size_t b = 0; b < B; ++b) {
      const search_state<Policy>& s = *searches_[b];
      if (s.done) continue;
      leaf_[b] = s.terminal_to_back_up();
      if (leaf_[b] != no_node) v_[b] = score_of(s.result_of[leaf_[b]], p_);
    }
    search::backup(exec_, *trees_, leaf_, v_, width_, rule_, score_);
    sel_.assign(B, no_node);
    for (std::size_t b = 0; b < B; ++b) {
      search_state<Policy>& s = *searches_[b];
      if (s.done) continue;
      if (leaf_[b] == no_node) {
        sel_[b] = s.cur;
        continue;
      }
      s.backed_up[leaf_[b]] = 1;
      s.order.push_back(leaf_[b]);
      if (static_cast<int>(s.order.size()) >= p_.num_trajectories) s.done = true;
    }
    next_.assign(B, no_node);
    best_.assign(B, no_node);
    select_children(exec_, *trees_, sel_, width_, p_.lambda_uct, std::span<std::int32_t>(next_), score_);
    frontier_best(exec_, *trees_, std::span<std::int32_t>(best_));
    for (std::size_t b = 0; b < B; ++b) {
      search_state<Policy>& s = *searches_[b];
      if (s.done) continue;
      const std::int32_t next = leaf_[b] != no_node ? best_[b] : next_[b];
      if (next == no_node) {
        s.out.exhausted = true;
        s.done = true;
      } else {
        s.cur = next;
      }
    }
  }
};

/// The checks every entry point makes on the parameters against the policy's vocabulary.
template <decode_policy Policy>
void check_policy_params(const Policy& policy, const search_params& params, const char* fn) {
  check_search_params(params, fn);
  const std::int64_t V = policy.vocab_size();
  const sample::sampling_params& sp = params.sampling;
  xplor::detail::require(sp.eos_token < V, fn, "sampling.eos_token = ", sp.eos_token, " is outside [0, ", V,
                         ")");
  for (std::int32_t t : sp.stop_tokens)
    xplor::detail::require(t >= 0 && t < V, fn, "stop token ", t, " is outside [0, ", V, ")");
  for (std::int32_t t : params.step_delimiters)
    xplor::detail::require(t >= 0 && t < V, fn, "step delimiter ", t, " is outside [0, ", V, ")");
}

}  // namespace detail

/// Runs DeepSearch's tree search from `prompt` until params.num_trajectories trajectories are
/// collected (or no node is left to expand: result.exhausted). `stream` selects the Philox stream
/// family (deep_search_batch gives prompt i the stream i). Throws xplor::error on bad parameters
/// and when the tree would exceed params.max_nodes; every decode state is released either way.
template <decode_policy Policy, response_verifier Verifier>
search_result deep_search(Policy& policy, std::span<const std::int32_t> prompt, Verifier&& verifier,
                          const search_params& params, std::uint64_t seed, std::uint32_t stream = 0) {
  constexpr const char* fn = "xplor::search::deep_search";
  detail::check_policy_params(policy, params, fn);
  xplor::detail::require(!prompt.empty(), fn, "prompt is empty");
  auto grade = [&verifier](std::size_t, std::span<const std::int32_t> response, bool done) {
    return verifier(response, done);
  };
  const std::vector<std::vector<std::int32_t>> prompts{
      std::vector<std::int32_t>(prompt.begin(), prompt.end())};
  detail::lockstep<Policy, decltype(grade)> search(policy, grade, params, seed, cpu_t{1});
  return std::move(search.run(prompts, std::span<const std::uint32_t>(&stream, 1))[0]);
}

/// DeepSearch over a batch of prompts in lockstep with one decode policy: each round generates
/// the children that every search's current node lacks in one decode batch (all prompts' rows in
/// each logits / step call), then backs up and selects in all trees in one pass each (the trees
/// live in one tree_batch; `exec` runs those passes). Prompt i is searched with the Philox stream
/// family i, so the results equal deep_search(policy, prompts[i], ..., seed, i) whenever the
/// policy's rows do not depend on which other rows share a batch (true of kv_decoder).
/// `verifier(i, response, finished)` grades prompt i's responses.
template <decode_policy Policy, indexed_response_verifier Verifier>
std::vector<search_result> deep_search_lockstep(Policy& policy,
                                                std::span<const std::vector<std::int32_t>> prompts,
                                                Verifier&& verifier, const search_params& params,
                                                std::uint64_t seed, cpu_t exec = cpu) {
  constexpr const char* fn = "xplor::search::deep_search_lockstep";
  detail::check_policy_params(policy, params, fn);
  for (std::size_t i = 0; i < prompts.size(); ++i)
    xplor::detail::require(!prompts[i].empty(), fn, "prompts[", i, "] is empty");
  std::vector<std::uint32_t> streams(prompts.size());
  for (std::size_t i = 0; i < streams.size(); ++i) streams[i] = static_cast<std::uint32_t>(i);
  detail::lockstep<Policy, std::remove_reference_t<Verifier>> search(policy, verifier, params, seed, exec);
  return search.run(prompts, streams);
}

namespace detail {
/// Runs fn(policy, i) for i in [0, n) on `threads` threads, each with its own policy from
/// make_policy(); prompts are handed out one at a time. The first exception of any worker is
/// rethrown after all have stopped.
template <class MakePolicy, class Fn>
void parallel_prompts(std::size_t n, int threads, MakePolicy& make_policy, Fn&& fn, const char* fn_name) {
  xplor::detail::require(threads >= 1, fn_name, "threads = ", threads, " must be >= 1");
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    try {
      auto policy = make_policy();
      for (std::size_t i = next++; i < n && !failed; i = next++) fn(policy, i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };
  const std::size_t workers = std::min(static_cast<std::size_t>(threads), n);
  std::vector<std::thread> pool = {};
  for (std::size_t w = 1; w < workers; ++w) pool.emplace_back(work);
  if (n > 0) work();
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}
}  // namespace detail

/// DeepSearch over a batch of prompts on `threads` CPU threads: prompt i is searched with the
/// Philox stream family first_stream + i, so the results equal deep_search(policy, prompts[i],
/// ..., seed, first_stream + i) on any number of threads (and a batch split into parts that pass
/// their offsets draws what the whole batch would). `make_policy()` builds one decode policy per worker (e.g.
/// a kv_decoder of a shared, read-only model); `verifier(i, response, finished)` grades prompt i's responses
/// and is called concurrently.
template <class MakePolicy, indexed_response_verifier Verifier>
requires decode_policy<std::invoke_result_t<MakePolicy&>> std::vector<search_result> deep_search_batch(
    MakePolicy&& make_policy, std::span<const std::vector<std::int32_t>> prompts, Verifier&& verifier,
    const search_params& params, std::uint64_t seed, int threads = 1, std::uint32_t first_stream = 0) {
  constexpr const char* fn = "xplor::search::deep_search_batch";
  detail::check_search_params(params, fn);
  std::vector<search_result> results(prompts.size());
  detail::parallel_prompts(
      prompts.size(), threads, make_policy,
      [&](auto& policy, std::size_t i) {
        auto grade = [&verifier, i](std::span<const std::int32_t> response, bool done) {
          return verifier(i, response, done);
        };
        results[i] = deep_search(policy, std::span<const std::int32_t>(prompts[i]), grade, params, seed,
                                 first_stream + static_cast<std::uint32_t>(i));
      },
      fn);
  return results;
}

}  // namespace xplor::search
