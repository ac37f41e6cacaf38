// xplor.search: DeepSearch (search/deep_search.hpp) driven by a Python model through a
// decode-policy adapter. The search runs in C++ with the GIL released; the adapter takes it once
// per model call, and each call is a batch (all searches' rows of one decode position).
#include <exception>

#include "common.hpp"
#include "xplor/reward/outcome.hpp"
#include "xplor/sample/scripted_policy.hpp"
#include "xplor/search/deep_search.hpp"

namespace xplor::python {
namespace {

using namespace xplor::search;
using logits_array = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

template <class T>
nb::object array_copy(std::span<const T> values) {
  auto [array, out] = new_array<T>(values.size());
  std::copy(values.begin(), values.end(), out.begin());
  return nb::cast(array);
}

/// The decode concept over a Python object with vocab_size, begin(prompt), fork(state, n),
/// logits(states), step(states, tokens) and release(states) (docs/python.md has the protocol).
class python_policy {
 public:
  using state_id = std::int64_t;

  python_policy(nb::object model, std::int64_t vocab) : model_(std::move(model)), vocab_(vocab) {}
  ~python_policy() {
    nb::gil_scoped_acquire gil;
    last_ = {};
    model_ = {};
  }

  std::int64_t vocab_size() const { return vocab_; }
  state_id begin(std::span<const std::int32_t> prompt) {
    nb::gil_scoped_acquire gil;
    return nb::cast<state_id>(model_.attr("begin")(array_copy(prompt)));
  }
  std::vector<state_id> fork(state_id s, int n) {
    nb::gil_scoped_acquire gil;
    auto out = nb::cast<std::vector<state_id>>(model_.attr("fork")(s, n));
    xplor::detail::require(out.size() == static_cast<std::size_t>(n), "xplor.search", "model.fork returned ",
                           out.size(), " states for n = ", n);
    return out;
  }
  view2d<const float> logits(std::span<const state_id> states) {
    nb::gil_scoped_acquire gil;
    return keep(model_.attr("logits")(array_copy(states)), states.size(), "logits");
  }
  view2d<const float> step(std::span<const state_id> states, std::span<const std::int32_t> tokens) {
    nb::gil_scoped_acquire gil;
    return keep(model_.attr("step")(array_copy(states), array_copy(tokens)), states.size(), "step");
  }
  void release(std::span<const state_id> states) {
    nb::gil_scoped_acquire gil;
    try {
      model_.attr("release")(array_copy(states));
    } catch (...) {
      // The search releases its states while unwinding from an earlier error: keep that one.
      if (std::uncaught_exceptions() == 0) throw;
    }
  }

 private:
  // The returned array stays alive (and converted to float32 C order once) until the next call.
  view2d<const float> keep(nb::object result, std::size_t rows, const char* method) {
    last_ = nb::cast<logits_array>(result);
    xplor::detail::require(last_.shape(0) == rows && static_cast<std::int64_t>(last_.shape(1)) == vocab_,
                           "xplor.search", "model.", method, " returned [", last_.shape(0), ", ",
                           last_.shape(1), "] logits; expected [", rows, ", ", vocab_, "]");
    return make_view(last_.data(), {static_cast<std::int64_t>(rows), vocab_});
  }

  nb::object model_;
  std::int64_t vocab_;
  logits_array last_;
};

/// A native policy for tests and demos: next-token logits = table[last token] (the prompt's last
/// token at the start). It implements the same Python protocol, so a Python object forwarding to
/// it runs the adapter path on the same model.
struct bigram_policy {
  std::vector<float> table;
  std::int64_t vocab;
  sample::scripted_policy policy;

  bigram_policy(const bigram_policy&) = delete;  // the logits function points at this object's table
  explicit bigram_policy(const in2<float>& t)
      : table(t.data(), t.data() + t.size()),
        vocab(static_cast<std::int64_t>(t.shape(1))),
        policy(vocab, [this](std::span<const std::int32_t> history, std::span<float> out) {
          const std::int32_t last = history.empty() ? 0 : history.back();
          xplor::detail::require(last >= 0 && last < vocab, "xplor.search.BigramPolicy", "token ", last,
                                 " is outside [0, vocab_size = ", vocab, ")");
          std::copy_n(table.begin() + static_cast<std::ptrdiff_t>(last) * vocab, vocab, out.begin());
        }) {
    xplor::detail::require(t.shape(0) == t.shape(1), "xplor.search.BigramPolicy", "table is [", t.shape(0),
                           ", ", t.shape(1), "]; it must be square [vocab, vocab]");
  }
};

outcome outcome_of(nb::handle h) {
  if (nb::isinstance<nb::str>(h)) {
    const std::string s = nb::cast<std::string>(h);
    if (s == "correct") return outcome::correct;
    if (s == "abstain") return outcome::abstain;
    if (s == "incorrect") return outcome::incorrect;
    if (s == "no_answer") return outcome::no_answer;
    xplor::detail::fail("xplor.search", "the verifier returned '", s,
                        "'; expected an Outcome or one of correct, abstain, incorrect, no_answer");
  }
  return nb::cast<outcome>(h);
}

nb::dict result_dict(const search_result& r) {
  nb::list trajectories;
  for (const search_trajectory& t : r.trajectories) {
    nb::dict d;
    d["tokens"] = array_copy(std::span<const std::int32_t>(t.tokens));
    d["logprobs"] = array_copy(std::span<const float>(t.logprobs));
    d["token_advantages"] = array_copy(std::span<const float>(t.token_advantages));
    d["segment_offsets"] = array_copy(std::span<const std::int64_t>(t.segment_offsets));
    d["segment_q"] = array_copy(std::span<const double>(t.segment_q));
    d["segment_advantages"] = array_copy(std::span<const double>(t.segment_advantages));
    d["result"] = t.result;
    d["score"] = t.score;
    d["mean_entropy"] = t.mean_entropy;
    trajectories.append(d);
  }
  nb::dict d;
  d["trajectories"] = trajectories;
  d["nodes"] = r.nodes;
  d["tokens_generated"] = r.tokens_generated;
  d["expansions"] = r.expansions;
  d["exhausted"] = r.exhausted;
  return d;
}

template <class Policy>
nb::list run_search(Policy& policy, const std::vector<std::vector<std::int32_t>>& prompts,
                    nb::object verifier, const search_params& params, std::uint64_t seed) {
  auto grade = [&verifier](std::size_t i, std::span<const std::int32_t> response, bool finished) {
    nb::gil_scoped_acquire gil;
    return outcome_of(verifier(i, array_copy(response), finished));
  };
  std::vector<search_result> results;
  {
    nb::gil_scoped_release release;
    results = deep_search_lockstep(policy, prompts, grade, params, seed, cpu_t{1});
  }
  nb::list out;
  for (const search_result& r : results) out.append(result_dict(r));
  return out;
}

}  // namespace

void bind_search(nb::module_& m) {
  nb::class_<search_params>(m, "SearchParams",
                            "DeepSearch's parameters; defaults are the authors' (round0.sh, mcts.py) except "
                            "chunk_tokens = 256 = 16384 / 64.")
      .def(nb::init<>())
      .def_rw("max_depth", &search_params::max_depth)
      .def_rw("chunk_tokens", &search_params::chunk_tokens)
      .def_rw("max_response_tokens", &search_params::max_response_tokens)
      .def_rw("step_delimiters", &search_params::step_delimiters)
      .def_rw("expansion_width", &search_params::expansion_width)
      .def_rw("num_trajectories", &search_params::num_trajectories)
      .def_rw("lambda_uct", &search_params::lambda_uct)
      .def_rw("backup_floor", &search_params::backup_floor)
      .def_rw("correct_score", &search_params::correct_score)
      .def_rw("incorrect_score", &search_params::incorrect_score)
      .def_rw("no_answer_score", &search_params::no_answer_score)
      .def_rw("adv_temperature", &search_params::adv_temperature)
      .def_rw("q_value_max", &search_params::q_value_max)
      .def_rw("exact_entropy", &search_params::exact_entropy)
      .def_rw("max_nodes", &search_params::max_nodes)
      .def_rw("sampling", &search_params::sampling)
      .def_rw("advantages", &search_params::advantages);

  nb::class_<bigram_policy>(
      m, "BigramPolicy",
      "A native decode policy whose next-token logits are table[last token]: a model for "
      "tests and demos, with the same begin/fork/logits/step/release protocol.")
      .def(nb::init<const in2<float>&>(), nb::arg("table"))
      .def_prop_ro("vocab_size", [](const bigram_policy& p) { return p.vocab; })
      .def("begin",
           [](bigram_policy& p, in1<std::int32_t> prompt) { return p.policy.begin(span_of(prompt)); })
      .def("fork", [](bigram_policy& p, std::int32_t s, int n) { return p.policy.fork(s, n); })
      .def("logits",
           [](bigram_policy& p, in1<std::int32_t> states) {
             const view2d<const float> v = p.policy.logits(span_of(states));
             return nb::object(
                        array_copy(std::span<const float>(v.data(), static_cast<std::size_t>(v.size()))))
                 .attr("reshape")(v.rows(), v.cols());
           })
      .def("step",
           [](bigram_policy& p, in1<std::int32_t> states, in1<std::int32_t> tokens) {
             const view2d<const float> v = p.policy.step(span_of(states), span_of(tokens));
             return nb::object(
                        array_copy(std::span<const float>(v.data(), static_cast<std::size_t>(v.size()))))
                 .attr("reshape")(v.rows(), v.cols());
           })
      .def("release", [](bigram_policy& p, in1<std::int32_t> states) { p.policy.release(span_of(states)); })
      .def_prop_ro("live_states", [](const bigram_policy& p) { return p.policy.live_states(); });

  m.def(
      "deep_search",
      [](nb::object model, const std::vector<std::vector<std::int32_t>>& prompts, nb::object verifier,
         const search_params& params, std::uint64_t seed) {
        if (nb::isinstance<bigram_policy>(model))
          return run_search(nb::cast<bigram_policy&>(model).policy, prompts, verifier, params, seed);
        python_policy policy(model, nb::cast<std::int64_t>(model.attr("vocab_size")));
        return run_search(policy, prompts, verifier, params, seed);
      },
      nb::arg("model"), nb::arg("prompts"), nb::arg("verifier"), nb::arg("params"), nb::kw_only(),
      nb::arg("seed") = 0,
      "DeepSearch (Wu et al. 2025, arXiv 2509.25454) over a batch of prompts in lockstep: per prompt a list "
      "of "
      "trajectories with per-token advantages for the policy loss. `model` has vocab_size and begin(prompt) "
      "-> "
      "state, fork(state, n) -> states, logits(states) -> [n, vocab], step(states, tokens) -> [n, vocab], "
      "release(states); `verifier(prompt_index, response_tokens, finished)` returns an Outcome (or its "
      "name). "
      "Prompt i uses Philox stream family i under `seed`: the same trajectories for any model object that "
      "computes the same logits.");
}

}  // namespace xplor::python
