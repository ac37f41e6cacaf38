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

namespace detail {

/// One search's state and its three steps, mctx style: expand (generate the children a node
/// lacks), backup (a terminal child's reward up the path, then the frontier), select (local UCT,
/// else the global frontier). The rules come from the parameters (backup_rule, frontier_rule);
/// the tree and the frontier index are tree.hpp's, so the rescoring here is the tested one.
template <decode_policy Policy, class Verifier>
class searcher {
 public:
  using state_id = typename Policy::state_id;

  searcher(Policy& policy, Verifier& verifier, const search_params& params, std::uint64_t seed,
           std::uint32_t stream)
      : policy_(policy),
        verifier_(verifier),
        p_(params),
        seed_(seed),
        stream_(stream),
        width_(params.expansion_width),
        cap_(static_cast<std::size_t>(params.max_nodes)),
        max_response_(max_response(params)),
        t_(params.max_nodes),
        frontier_(params.max_nodes),
        states_(policy, cap_),
        chunk_begin_(cap_, 0),
        chunk_len_(cap_, 0),
        path_tokens_(cap_, 0),
        path_entropy_(cap_, 0.0),
        result_of_(cap_, outcome::no_answer),
        backed_up_(cap_, 0) {
    fp_ = params.frontier;
    fp_.max_depth = params.max_depth;
  }

  /// Runs the search from `prompt` to the finished result.
  search_result run(std::span<const std::int32_t> prompt) {
    states_.set(root_index, policy_.begin(prompt));
    std::int32_t cur = root_index;
    while (static_cast<int>(order_.size()) < p_.num_trajectories) {
      const int missing = width_ - t_.children(cur);
      if (missing > 0) expand(cur, missing);
      std::int32_t next = no_node;
      const std::int32_t pick = terminal_to_back_up(cur);
      if (pick != no_node) {
        backup(pick);
        if (static_cast<int>(order_.size()) >= p_.num_trajectories) break;
        next = frontier_.best();
      } else {
        next = select_local(cur);
      }
      if (next == no_node) {
        out_.exhausted = true;
        break;
      }
      cur = next;
    }
    finish();
    return std::move(out_);
  }

 private:
  Policy& policy_;
  Verifier& verifier_;
  const search_params& p_;
  std::uint64_t seed_;
  std::uint32_t stream_;
  int width_;
  std::size_t cap_;
  std::int64_t max_response_;
  frontier_params fp_;
  tree t_;
  frontier_index frontier_;
  state_table<Policy> states_;
  // Per node: its chunk in the token pool, the path's summed token entropy and length (for the
  // trajectory's mean entropy), its verified outcome (terminal nodes), whether it was backed up.
  std::vector<std::int64_t> chunk_begin_, chunk_len_, path_tokens_;
  std::vector<double> path_entropy_;
  std::vector<outcome> result_of_;
  std::vector<std::uint8_t> backed_up_;
  std::vector<std::int32_t> order_;  // backed-up terminal nodes, in order
  std::vector<std::int32_t> pool_tokens_;
  std::vector<float> pool_logprobs_;
  std::vector<std::int32_t> path_scratch_;
  search_result out_;

  static bool in(const std::vector<std::int32_t>& set, std::int32_t t) {
    return std::find(set.begin(), set.end(), t) != set.end();
  }
  double score_of(outcome o) const { return detail::score_of(o, p_); }
  double mean_entropy_of(std::int32_t n) const {
    return path_entropy_[n] / static_cast<double>(path_tokens_[n]);
  }

  /// The frontier rule (parameters) applied through tree.hpp's rescoring.
  void rescore_around(std::int32_t n) {
    if (p_.frontier_rule) {
      search::rescore_around(t_, frontier_, n, width_, p_.frontier_rule);
    } else {
      search::rescore_around(t_, frontier_, n, width_, [this](double qp, double q, double h, int d) {
        return frontier_score(qp, q, h, d, fp_);
      });
    }
  }

  /// The response of `node`'s path, and optionally its log-probs, segment offsets and nodes.
  void response_of(std::int32_t node, std::vector<std::int32_t>* tokens, std::vector<float>* logprobs,
                   std::vector<std::int64_t>* offsets, std::vector<std::int32_t>* nodes) {
    path_scratch_.clear();
    for (std::int32_t n = node; n != root_index; n = t_.parent(n)) path_scratch_.push_back(n);
    std::reverse(path_scratch_.begin(), path_scratch_.end());
    tokens->clear();
    if (offsets) offsets->assign(1, 0);
    for (std::int32_t n : path_scratch_) {
      const auto b = pool_tokens_.begin() + chunk_begin_[n];
      tokens->insert(tokens->end(), b, b + chunk_len_[n]);
      if (logprobs) {
        const auto lb = pool_logprobs_.begin() + chunk_begin_[n];
        logprobs->insert(logprobs->end(), lb, lb + chunk_len_[n]);
      }
      if (offsets) offsets->push_back(static_cast<std::int64_t>(tokens->size()));
    }
    if (nodes) *nodes = path_scratch_;
  }

  // A child being generated.
  struct growing {
    state_id state;
    std::vector<std::int32_t> tokens;
    std::vector<float> logprobs;
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
  std::vector<growing> kids_;
  std::vector<std::uint64_t> streams_, draws_;
  std::vector<std::int32_t> drawn_, next_tokens_;
  std::vector<float> lp_, ent_;
  std::vector<state_id> row_states_, next_states_;
  std::vector<float> subset_;
  std::vector<std::size_t> rows_;

  /// Expansion: generates the `k` children `cur` lacks, one chunk each, from forks of cur's
  /// state; terminal children are verified at once.
  void expand(std::int32_t cur, int k) {
    constexpr const char* fn = "xplor::search::deep_search";
    const std::int64_t V = policy_.vocab_size();
    const sample::sampling_params& sp = p_.sampling;
    xplor::detail::require(static_cast<std::size_t>(t_.size()) + static_cast<std::size_t>(k) <= cap_, fn,
                           "the tree is full: expanding node ", cur, " adds ", k, " nodes to the ", t_.size(),
                           " in use, over max_nodes = ", p_.max_nodes);
    const std::int32_t first_id = t_.size();
    const bool at_depth_limit = t_.depth(cur) + 1 >= p_.max_depth;
    // Tokens this chunk may take before the response reaches its cap (then the node is terminal).
    const std::int64_t room = max_response_ - path_tokens_[cur];
    const auto chunk_cap = static_cast<std::size_t>(std::min<std::int64_t>(p_.chunk_tokens, room));
    const std::vector<state_id> forked = policy_.fork(states_.id[cur], k);
    kids_.assign(static_cast<std::size_t>(k), growing{});
    release_owned guard{policy_, kids_};
    for (int j = 0; j < k; ++j) {
      kids_[j].state = forked[j];
      kids_[j].owned = true;
    }
    row_states_.assign(forked.begin(), forked.end());
    rows_.resize(static_cast<std::size_t>(k));
    for (int j = 0; j < k; ++j) rows_[j] = static_cast<std::size_t>(j);
    view2d<const float> logits = policy_.logits(row_states_);
    for (int pos = 0; !rows_.empty(); ++pos) {
      const std::size_t a = rows_.size();
      streams_.resize(a);
      draws_.assign(a, static_cast<std::uint64_t>(pos));
      drawn_.resize(a);
      lp_.resize(a);
      ent_.resize(a);
      for (std::size_t r = 0; r < a; ++r)
        streams_[r] =
            stream_id(stream_, static_cast<std::uint32_t>(first_id) + static_cast<std::uint32_t>(rows_[r]));
      sample::sample_rows(cpu, logits, sp, {seed_, streams_, draws_}, {drawn_, lp_, ent_});
      next_states_.clear();
      next_tokens_.clear();
      std::vector<std::size_t> still;
      for (std::size_t r = 0; r < a; ++r) {
        growing& g = kids_[rows_[r]];
        g.tokens.push_back(drawn_[r]);
        g.logprobs.push_back(lp_[r]);
        g.entropy += p_.exact_entropy ? double(ent_[r]) : -double(lp_[r]);
        g.ended = drawn_[r] == sp.eos_token || in(sp.stop_tokens, drawn_[r]);
        const bool chunk_done = g.ended || g.tokens.size() >= chunk_cap || in(p_.step_delimiters, drawn_[r]);
        // A chunk that continues, or ends a node that will be expanded later, takes its token into
        // the state; a terminal node's state is not needed.
        const bool last_node = at_depth_limit || static_cast<std::int64_t>(g.tokens.size()) >= room;
        if (!g.ended && !(chunk_done && last_node)) {
          next_states_.push_back(g.state);
          next_tokens_.push_back(drawn_[r]);
        }
        if (!chunk_done) still.push_back(rows_[r]);
      }
      rows_.swap(still);
      if (!next_states_.empty()) {
        logits = policy_.step(next_states_, next_tokens_);
        // step() returned a row per stepped state; when a node ended at a delimiter while its
        // siblings go on, keep only the rows of those still growing.
        if (!rows_.empty() && next_states_.size() != rows_.size()) {
          subset_.resize(rows_.size() * static_cast<std::size_t>(V));
          for (std::size_t r = 0; r < rows_.size(); ++r) {
            const auto at = std::find(next_states_.begin(), next_states_.end(), kids_[rows_[r]].state) -
                            next_states_.begin();
            for (std::int64_t v = 0; v < V; ++v)
              subset_[r * static_cast<std::size_t>(V) + static_cast<std::size_t>(v)] = logits(at, v);
          }
          logits = make_view(static_cast<const float*>(subset_.data()),
                             {static_cast<std::int64_t>(rows_.size()), V});
        }
      }
    }
    for (int j = 0; j < k; ++j) {
      growing& g = kids_[static_cast<std::size_t>(j)];
      const auto len = static_cast<std::int64_t>(g.tokens.size());
      const bool terminal = g.ended || at_depth_limit || len >= room;
      const std::int32_t id = t_.add_child(cur, g.entropy / static_cast<double>(len), terminal);
      chunk_begin_[id] = static_cast<std::int64_t>(pool_tokens_.size());
      chunk_len_[id] = len;
      pool_tokens_.insert(pool_tokens_.end(), g.tokens.begin(), g.tokens.end());
      pool_logprobs_.insert(pool_logprobs_.end(), g.logprobs.begin(), g.logprobs.end());
      path_tokens_[id] = path_tokens_[cur] + len;
      path_entropy_[id] = path_entropy_[cur] + g.entropy;
      out_.tokens_generated += len;
      g.owned = false;
      if (terminal) {
        policy_.release(std::span<const state_id>(&g.state, 1));
        std::vector<std::int32_t> response;
        response_of(id, &response, nullptr, nullptr, nullptr);
        result_of_[id] = verifier_(std::span<const std::int32_t>(response), g.ended);
      } else {
        states_.set(id, g.state);
      }
    }
    ++out_.expansions;
    if (t_.children(cur) >= width_) states_.release(cur);  // full: never expanded again
    rescore_around(cur);
  }

  /// The terminal child of `cur` to back up next: correct first, else incorrect, else
  /// no answer (an abstention ranks with incorrect); then the lowest mean entropy; then the lowest
  /// node id. no_node when none.
  std::int32_t terminal_to_back_up(std::int32_t cur) const {
    auto rank = [](outcome o) { return o == outcome::correct ? 0 : o == outcome::no_answer ? 2 : 1; };
    std::int32_t pick = no_node;
    for (std::int32_t c = t_.first_child(cur); c != no_node; c = t_.next_sibling(c)) {
      if (!t_.terminal(c) || backed_up_[c]) continue;
      if (pick == no_node) {
        pick = c;
        continue;
      }
      const int rc = rank(result_of_[c]), rp = rank(result_of_[pick]);
      const double ec = mean_entropy_of(c), ep = mean_entropy_of(pick);
      if (rc < rp || (rc == rp && (ec < ep || (ec == ep && c < pick)))) pick = c;
    }
    return pick;
  }

  /// Backup: the pick's reward up its path with the backup rule, then the frontier around it.
  void backup(std::int32_t pick) {
    const double v = score_of(result_of_[pick]);
    if (p_.backup_rule) {
      t_.backup(pick, v, p_.backup_rule);
    } else {
      t_.backup(pick, v, decayed_constrained_backup{p_.backup_floor});
    }
    backed_up_[pick] = 1;
    order_.push_back(pick);
    for (std::int32_t n = pick; n != no_node; n = t_.parent(n)) rescore_around(n);
  }

  /// Local selection when `cur` has no terminal child to back up: every child counts a visit
  /// (the code's update(0)), then the highest UCT among the non-terminal children (ties: the
  /// earliest generated), else the global frontier's best.
  std::int32_t select_local(std::int32_t cur) {
    for (std::int32_t c = t_.first_child(cur); c != no_node; c = t_.next_sibling(c)) {
      t_.visit(c);
      rescore_around(c);
    }
    double best = -std::numeric_limits<double>::infinity();
    std::int32_t next = no_node;
    for (std::int32_t c = t_.first_child(cur); c != no_node; c = t_.next_sibling(c)) {
      if (t_.terminal(c)) continue;
      const double u = kernels::uct(t_.q(c), t_.visits(cur), t_.visits(c), p_.lambda_uct);
      // Children are linked newest first: >= makes ties go to the earliest generated child.
      if (u >= best) best = u, next = c;
    }
    return next == no_node ? frontier_.best() : next;
  }

  /// Trajectories from the finished tree: values read now (the accumulated value, not value /
  /// visits, as the code does), soft-clipped except at the terminal node; then advantages.
  void finish() {
    out_.trajectories.resize(order_.size());
    for (std::size_t i = 0; i < order_.size(); ++i) {
      const std::int32_t leaf = order_[i];
      search_trajectory& tr = out_.trajectories[i];
      response_of(leaf, &tr.tokens, &tr.logprobs, &tr.segment_offsets, &tr.nodes);
      tr.result = result_of_[leaf];
      tr.score = score_of(tr.result);
      tr.mean_entropy = mean_entropy_of(leaf);
      tr.segment_q.resize(tr.nodes.size());
      for (std::size_t j = 0; j < tr.nodes.size(); ++j) {
        const double v = t_.value(tr.nodes[j]);
        tr.segment_q[j] = j + 1 == tr.nodes.size() ? v : soft_clip(v, p_.adv_temperature, p_.q_value_max);
      }
    }
    assign_advantages(out_.trajectories, p_.advantages);
    out_.nodes = t_.size();
  }
};

}  // namespace detail

/// Runs DeepSearch's tree search from `prompt` until params.num_trajectories trajectories are
/// collected (or no node is left to expand: result.exhausted). `stream` selects the Philox stream
/// family (deep_search_batch gives prompt i the stream i). Throws xplor::error on bad parameters
/// and when the tree would exceed params.max_nodes; every decode state is released either way.
template <decode_policy Policy, response_verifier Verifier>
search_result deep_search(Policy& policy, std::span<const std::int32_t> prompt, Verifier&& verifier,
                          const search_params& params, std::uint64_t seed, std::uint32_t stream = 0) {
  constexpr const char* fn = "xplor::search::deep_search";
  detail::check_search_params(params, fn);
  xplor::detail::require(!prompt.empty(), fn, "prompt is empty");
  const std::int64_t V = policy.vocab_size();
  const sample::sampling_params& sp = params.sampling;
  xplor::detail::require(sp.eos_token < V, fn, "sampling.eos_token = ", sp.eos_token, " is outside [0, ", V,
                         ")");
  for (std::int32_t t : sp.stop_tokens)
    xplor::detail::require(t >= 0 && t < V, fn, "stop token ", t, " is outside [0, ", V, ")");
  for (std::int32_t t : params.step_delimiters)
    xplor::detail::require(t >= 0 && t < V, fn, "step delimiter ", t, " is outside [0, ", V, ")");
  detail::searcher<Policy, std::remove_reference_t<Verifier>> s(policy, verifier, params, seed, stream);
  return s.run(prompt);
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
/// Philox stream family i, so the results equal deep_search(policy, prompts[i], ..., seed, i) on
/// any number of threads. `make_policy()` builds one decode policy per worker (e.g. a kv_decoder
/// of a shared, read-only model); `verifier(i, response, finished)` grades prompt i's responses
/// and is called concurrently.
/// A verifier for a batch of prompts: (prompt index, response tokens, whether it ended with EOS
/// or a stop token) -> outcome.
template <class V>
concept indexed_response_verifier = std::invocable < V&,
        std::size_t, std::span<const std::int32_t>,
bool > &&std::same_as<std::invoke_result_t<V&, std::size_t, std::span<const std::int32_t>, bool>, outcome>;

template <class MakePolicy, indexed_response_verifier Verifier>
requires decode_policy<std::invoke_result_t<MakePolicy&>> std::vector<search_result> deep_search_batch(
    MakePolicy&& make_policy, std::span<const std::vector<std::int32_t>> prompts, Verifier&& verifier,
    const search_params& params, std::uint64_t seed, int threads = 1) {
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
                                 static_cast<std::uint32_t>(i));
      },
      fn);
  return results;
}

}  // namespace xplor::search
