// xplor.budget: Knapsack RL's rollout allocation and the per-prompt success tracker
// (budget/knapsack.hpp, success_tracker.hpp).
#include "common.hpp"
#include "communicator.hpp"
#include "xplor/budget/knapsack.hpp"
#include "xplor/budget/success_tracker.hpp"
#include "xplor/dist/knapsack.hpp"

namespace xplor::python {
namespace {

using namespace xplor::budget;

allocation_options allocation_from(int n_min, int n_max, std::string_view solver, bool reference_compat,
                                   double alpha, std::string_view cost, bool allow_fallback) {
  constexpr const char* fn = "xplor.budget.allocate_rollouts";
  allocation_options o;
  o.n_min = n_min;
  o.n_max = n_max;
  if (solver == "fast")
    o.solver = solver_kind::fast;
  else if (solver == "dp")
    o.solver = solver_kind::dp;
  else
    xplor::detail::fail(fn, "solver = '", solver, "' is not one of fast, dp");
  o.reference_compat = reference_compat;
  o.alpha = alpha;
  if (cost == "probability")
    o.cost = cost_model::probability;
  else if (cost == "expectation")
    o.cost = cost_model::expectation;
  else
    xplor::detail::fail(fn, "cost = '", cost, "' is not one of probability, expectation");
  o.allow_fallback = allow_fallback;
  return o;
}

// The allocation options as keyword arguments, shared by allocate_rollouts and SuccessTracker.allocate.
#define XPLOR_ALLOCATION_ARGS                                                                   \
  nb::arg("n_min") = 2, nb::arg("n_max") = 128, nb::arg("solver") = "fast",                     \
  nb::arg("reference_compat") = false, nb::arg("alpha") = 0.9, nb::arg("cost") = "probability", \
  nb::arg("allow_fallback") = true

std::vector<int> allocate_unlocked(std::span<const double> p, std::span<const std::uint8_t> has,
                                   std::int64_t budget, const allocation_options& o) {
  nb::gil_scoped_release release;
  return allocate_rollouts(p, has, budget, o);
}

}  // namespace

void bind_budget(nb::module_& m) {
  m.def(
      "allocate_rollouts",
      [](in1<double> p_hat, std::int64_t total_budget, std::optional<in1<std::uint8_t>> has_estimate,
         int n_min, int n_max, std::string_view solver, bool reference_compat, double alpha,
         std::string_view cost, bool allow_fallback) {
        const allocation_options o =
            allocation_from(n_min, n_max, solver, reference_compat, alpha, cost, allow_fallback);
        return to_numpy(allocate_unlocked(span_of(p_hat), span_of(has_estimate), total_budget, o));
      },
      nb::arg("p_hat"), nb::arg("total_budget"), nb::arg("has_estimate") = nb::none(), nb::kw_only(),
      XPLOR_ALLOCATION_ARGS,
      "Knapsack RL (Li et al. 2025, arXiv 2509.25849): rollouts per prompt (int32) maximising "
      "sum_i (1 - p_i^n - (1-p_i)^n) p_i (1-p_i)^2 with sum n_i = total_budget and n_min <= n_i <= n_max. "
      "Exact (solver 'fast' threshold search or 'dp'); prompts with has_estimate 0 get the uniform share. "
      "reference_compat reproduces the authors' sampling_budget_by_knapsack.");
  m.def(
      "_dist_allocate_rollouts",
      [](nb::handle comm, in1<double> p_hat, std::int64_t total_budget,
         std::optional<in1<std::uint8_t>> has_estimate, int n_min, int n_max, std::string_view solver,
         bool reference_compat, double alpha, std::string_view cost, bool allow_fallback) {
        const allocation_options o =
            allocation_from(n_min, n_max, solver, reference_compat, alpha, cost, allow_fallback);
        py_communicator c(comm);
        std::vector<int> out(p_hat.shape(0));
        {
          nb::gil_scoped_release release;
          xplor::dist::allocate_rollouts(c, span_of(p_hat), span_of(has_estimate), total_budget,
                                         std::span<int>(out), o);
        }
        return to_numpy(std::move(out));
      },
      nb::arg("comm"), nb::arg("p_hat"), nb::arg("total_budget"), nb::arg("has_estimate") = nb::none(),
      nb::kw_only(), XPLOR_ALLOCATION_ARGS,
      "allocate_rollouts over the prompts of every rank (xplor.dist.allocate_rollouts): p_hat is this rank's "
      "slice of the global list (rank 0's first), total_budget the global budget; returns this rank's slice "
      "of "
      "the single-process allocation. A collective: every rank calls it.");
  m.def("rollout_value", &rollout_value, nb::arg("n"), nb::arg("p"),
        "Value(n, p) = (1 - p^n - (1-p)^n) p (1-p)^2: the knapsack's objective for one prompt.");
  m.def("marginal_value", &marginal_value, nb::arg("n"), nb::arg("p"),
        "rollout_value(n + 1, p) - rollout_value(n, p).");
  m.def("prob_nonzero_gradient", &prob_nonzero_gradient, nb::arg("n"), nb::arg("p"),
        "1 - p^n - (1-p)^n for n >= 2 (0 for n < 2): the chance that a group holds a success and a failure.");

  nb::class_<success_tracker>(m, "SuccessTracker",
                              "Per-prompt success estimates keyed by an integer prompt id (Knapsack RL's "
                              "rl_dataset.py), feeding allocate_rollouts.")
      .def(
          "__init__",
          [](success_tracker* t, std::string_view mode, int buffer_length, int min_rollouts,
             std::string_view rewards) {
            constexpr const char* fn = "xplor.budget.SuccessTracker";
            tracker_options o;
            if (mode == "last_visit")
              o.mode = estimate_mode::last_visit;
            else if (mode == "last_visit_robust")
              o.mode = estimate_mode::last_visit_robust;
            else if (mode == "sliding_buffer")
              o.mode = estimate_mode::sliding_buffer;
            else
              xplor::detail::fail(fn, "mode = '", mode,
                                  "' is not one of last_visit, last_visit_robust, sliding_buffer");
            if (rewards == "unit_interval")
              o.rewards = reward_scale::unit_interval;
            else if (rewards == "ternary")
              o.rewards = reward_scale::ternary;
            else
              xplor::detail::fail(fn, "rewards = '", rewards, "' is not one of unit_interval, ternary");
            o.buffer_length = buffer_length;
            o.min_rollouts = min_rollouts;
            new (t) success_tracker(o);
          },
          nb::kw_only(), nb::arg("mode") = "last_visit", nb::arg("buffer_length") = 16,
          nb::arg("min_rollouts") = 8, nb::arg("rewards") = "unit_interval")
      .def(
          "record",
          [](success_tracker& t, std::int64_t id, in1<double> rewards) { t.record(id, span_of(rewards)); },
          nb::arg("id"), nb::arg("rewards"), "Records one visit of prompt `id`: the rewards of its rollouts.")
      .def("estimate", &success_tracker::estimate, nb::arg("id"),
           "The success estimate of `id`, or None while fewer than min_rollouts rewards were seen.")
      .def("count", &success_tracker::count, nb::arg("id"), "Rewards recorded for `id`.")
      .def(
          "estimates",
          [](const success_tracker& t, in1<std::int64_t> ids) {
            batch_estimates e = t.estimates(span_of(ids));
            return std::make_pair(to_numpy(std::move(e.p_hat)), to_numpy(std::move(e.has_estimate)));
          },
          nb::arg("ids"), "(p_hat float64, has_estimate uint8) for a batch of prompt ids.")
      .def(
          "allocate",
          [](const success_tracker& t, in1<std::int64_t> ids, std::int64_t total_budget, int n_min, int n_max,
             std::string_view solver, bool reference_compat, double alpha, std::string_view cost,
             bool allow_fallback) {
            const allocation_options o =
                allocation_from(n_min, n_max, solver, reference_compat, alpha, cost, allow_fallback);
            const batch_estimates e = t.estimates(span_of(ids));
            return to_numpy(allocate_unlocked(e.p_hat, e.has_estimate, total_budget, o));
          },
          nb::arg("ids"), nb::arg("total_budget"), nb::kw_only(), XPLOR_ALLOCATION_ARGS,
          "allocate_rollouts on the estimates of `ids`.")
      .def("__len__", &success_tracker::size)
      .def("clear", &success_tracker::clear);
}

}  // namespace xplor::python
