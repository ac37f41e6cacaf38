// xplor.reward: the exact math verifier, the batch verifiable reward and TruthRL's outcomes,
// rewards and metrics (reward/verify.hpp, math_reward.hpp, truth.hpp, batch.hpp).
#include <exception>

#include "common.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/reward/batch.hpp"
#include "xplor/reward/math_reward.hpp"
#include "xplor/reward/truth.hpp"
#include "xplor/reward/verify.hpp"

namespace xplor::python {
namespace {

using namespace xplor::reward;

answer_extractor extractor_named(std::string_view name) {
  if (name == "boxed") return answer_extractor::boxed;
  if (name == "boxed_or_answer_is") return answer_extractor::boxed_or_answer_is;
  if (name == "gsm8k") return answer_extractor::gsm8k;
  xplor::detail::fail("xplor.reward", "extract = '", name,
                      "' is not one of boxed, boxed_or_answer_is, gsm8k");
}

reward_variant variant_named(std::string_view name) {
  if (name == "ternary") return reward_variant::ternary;
  if (name == "binary") return reward_variant::binary;
  if (name == "ternary_ook") return reward_variant::ternary_ook;
  if (name == "binary_ook") return reward_variant::binary_ook;
  xplor::detail::fail("xplor.reward", "variant = '", name,
                      "' is not one of ternary, binary, ternary_ook, binary_ook");
}

classify_options classify_options_from(const std::optional<std::vector<std::string>>& abstention_phrases,
                                       bool invalid_question_is_miss) {
  classify_options o;
  if (abstention_phrases) o.abstention_phrases = *abstention_phrases;
  o.invalid_question_is_miss = invalid_question_is_miss;
  return o;
}

}  // namespace

void bind_reward(nb::module_& m) {
  nb::enum_<outcome>(
      m, "Outcome", nb::is_arithmetic(),
      "TruthRL's classification of a response; its int value is the code classify_batch returns")
      .value("correct", outcome::correct)
      .value("abstain", outcome::abstain)
      .value("incorrect", outcome::incorrect)
      .value("no_answer", outcome::no_answer);

  m.def("extract_boxed", &extract_boxed, nb::arg("text"),
        "The content of the last outermost \\boxed{...} (or \\fbox{...}) of `text`, or None.");
  m.def(
      "extract_answer",
      [](std::string_view text, std::string_view extract) {
        return extract_answer(text, extractor_named(extract));
      },
      nb::arg("text"), nb::arg("extract") = "boxed",
      "The final answer of a response by `extract`: 'boxed' (last \\boxed{}), 'boxed_or_answer_is' (the box, "
      "else the text after the last 'answer is'), 'gsm8k' (after the last '####'); None when absent.");
  m.def(
      "check_answer",
      [](std::string_view predicted, std::string_view reference) {
        const verdict v = check_answer(predicted, reference);
        return std::make_pair(v.equivalent, std::string(to_string(v.reason)));
      },
      nb::arg("predicted"), nb::arg("reference"), nb::call_guard<nb::gil_scoped_release>(),
      "(equivalent, reason): exact equivalence of two final answers (numbers, fractions, radicals, "
      "tuples, sets, intervals, matrices, units; 0.333333 is not 1/3). reason is one of same_text, "
      "same_value, empty, different_value, different_form, different_unit, unsupported, too_large.");
  m.def("answers_equivalent", &answers_equivalent, nb::arg("predicted"), nb::arg("reference"),
        nb::call_guard<nb::gil_scoped_release>(), "check_answer(predicted, reference)[0].");

  m.def(
      "verify",
      [](const std::vector<std::string>& responses, const std::vector<std::string>& golds, int threads,
         std::string_view extract, float correct, float incorrect, float no_answer, bool reasons) {
        math_reward_options o;
        o.correct = correct;
        o.incorrect = incorrect;
        o.no_answer = no_answer;
        o.extract = extractor_named(extract);
        o.threads = threads;
        auto [rewards, out] = new_array<float>(responses.size());
        std::vector<verdict> verdicts(reasons ? responses.size() : 0);
        {
          nb::gil_scoped_release release;
          math_reward(responses, golds, out, o, verdicts);
        }
        if (!reasons) return nb::object(nb::cast(rewards));
        std::vector<std::string> why;
        why.reserve(verdicts.size());
        for (const verdict& v : verdicts) why.emplace_back(to_string(v.reason));
        return nb::object(nb::make_tuple(rewards, why));
      },
      nb::arg("responses"), nb::arg("golds"), nb::kw_only(), nb::arg("threads") = 1,
      nb::arg("extract") = "boxed", nb::arg("correct") = 1.0f, nb::arg("incorrect") = 0.0f,
      nb::arg("no_answer") = 0.0f, nb::arg("reasons") = false,
      "Verifiable math reward of each response against its gold answer (float32 array): extract the final "
      "answer, check_answer it, pay `correct`, `incorrect` or `no_answer` (defaults: TRL's and verl's 1/0). "
      "`threads` host threads (0: OMP_NUM_THREADS), the GIL released. reasons=True also returns the verdict "
      "reason of each response ('no_answer' when nothing was extracted).");

  m.def(
      "classify",
      [](std::string_view response, const std::vector<std::string>& golds,
         const std::optional<std::vector<std::string>>& abstention_phrases, bool invalid_question_is_miss,
         nb::object judge) {
        classify_options o = classify_options_from(abstention_phrases, invalid_question_is_miss);
        if (!judge.is_none()) {
          // The judge is Python: called with the GIL held (this function keeps it).
          o.judge = [judge](std::string_view answer, std::string_view gold) {
            return nb::cast<bool>(judge(answer, gold));
          };
          return classify_response(response, golds, o);
        }
        nb::gil_scoped_release release;
        return classify_response(response, golds, o);
      },
      nb::arg("response"), nb::arg("golds"), nb::kw_only(), nb::arg("abstention_phrases") = nb::none(),
      nb::arg("invalid_question_is_miss") = true, nb::arg("judge") = nb::none(),
      "TruthRL's outcome of a response against its gold answers (aliases): no \\boxed{} -> no_answer; an "
      "abstention phrase ('I don't know', SQuAD-normalised) -> abstain; 'invalid question' -> incorrect "
      "(when "
      "invalid_question_is_miss); equivalent to a gold (exact verifier, or equal short text answers) -> "
      "correct; else judge(answer, gold) for each gold when given; else incorrect.");
  m.def(
      "classify_batch",
      [](const std::vector<std::string>& responses, const std::vector<std::vector<std::string>>& golds,
         int threads, const std::optional<std::vector<std::string>>& abstention_phrases,
         bool invalid_question_is_miss) {
        constexpr const char* fn = "xplor.reward.classify_batch";
        xplor::detail::require(golds.size() == responses.size(), fn, "golds has ", golds.size(),
                               " entries for ", responses.size(), " responses");
        xplor::detail::require(threads >= 0, fn, "threads = ", threads, " is negative");
        const classify_options o = classify_options_from(abstention_phrases, invalid_question_is_miss);
        auto [codes, out] = new_array<std::uint8_t>(responses.size());
        {
          nb::gil_scoped_release release;
          std::vector<std::exception_ptr> errors(responses.size());
          for_each_index(
              cpu_t{threads}, static_cast<std::int64_t>(responses.size()),
              [&](std::int64_t k) {
                const auto i = static_cast<std::size_t>(k);
                try {
                  out[i] = static_cast<std::uint8_t>(classify_response(responses[i], golds[i], o));
                } catch (...) {
                  errors[i] = std::current_exception();
                }
              },
              1 << 20);
          for (const std::exception_ptr& e : errors)
            if (e) std::rethrow_exception(e);
        }
        return codes;
      },
      nb::arg("responses"), nb::arg("golds"), nb::kw_only(), nb::arg("threads") = 1,
      nb::arg("abstention_phrases") = nb::none(), nb::arg("invalid_question_is_miss") = true,
      "classify() over a batch (no judge), on `threads` host threads with the GIL released: uint8 outcome "
      "codes (0 correct, 1 abstain, 2 incorrect, 3 no_answer).");

  m.def("ternary_reward", &ternary_reward, nb::arg("outcome"),
        "TruthRL's ternary reward: correct +1, abstain 0, incorrect and no_answer -1.");
  m.def("binary_reward", &binary_reward, nb::arg("outcome"),
        "Binary reward: correct +1, everything else -1.");
  m.def(
      "truth_rewards",
      [](in1<std::uint8_t> outcomes, std::string_view variant,
         std::optional<in1<std::uint8_t>> out_of_knowledge) {
        const reward_variant v = variant_named(variant);
        auto [rewards, out] = new_array<float>(outcomes.shape(0));
        const std::span<const std::uint8_t> codes = span_of(outcomes);
        const std::span<const outcome> as_outcomes(reinterpret_cast<const outcome*>(codes.data()),
                                                   codes.size());
        nb::gil_scoped_release release;
        truth_rewards(cpu, as_outcomes, v, span_of(out_of_knowledge), out);
        return rewards;
      },
      nb::arg("outcomes"), nb::arg("variant") = "ternary", nb::arg("out_of_knowledge") = nb::none(),
      "TruthRL's reward of each outcome code (float32): variant ternary, binary, ternary_ook or binary_ook "
      "(the _ook variants pay +1 only for abstaining on out-of-knowledge questions).");

  nb::class_<truth_metrics>(
      m, "TruthMetrics",
      "Counts of outcomes and TruthRL's metrics: accuracy, abstention rate, hallucination "
      "rate, truthfulness = accuracy - hallucination.")
      .def(nb::init<>())
      .def("add", &truth_metrics::add, nb::arg("outcome"))
      .def(
          "add_codes",
          [](truth_metrics& t, in1<std::uint8_t> codes) {
            for (const std::uint8_t c : span_of(codes)) t.add(static_cast<outcome>(c));
          },
          nb::arg("codes"), "Adds every code of a uint8 array (classify_batch's output).")
      .def_ro("correct", &truth_metrics::correct)
      .def_ro("abstain", &truth_metrics::abstain)
      .def_ro("incorrect", &truth_metrics::incorrect)
      .def_ro("no_answer", &truth_metrics::no_answer)
      .def_prop_ro("total", &truth_metrics::total)
      .def_prop_ro("accuracy", &truth_metrics::accuracy)
      .def_prop_ro("abstention_rate", &truth_metrics::abstention_rate)
      .def_prop_ro("no_answer_rate", &truth_metrics::no_answer_rate)
      .def_prop_ro("hallucination_rate", &truth_metrics::hallucination_rate)
      .def_prop_ro("hallucination_rate_excluding_no_answer",
                   &truth_metrics::hallucination_rate_excluding_no_answer)
      .def_prop_ro("truthfulness", &truth_metrics::truthfulness);
}

}  // namespace xplor::python
