// xplor.sample: the logits processors (temperature, top-k, top-p, min-p, repetition penalty) and
// batched, reproducible draws over a [rows, vocab] array (sample/processors.hpp).
#include "common.hpp"
#include "xplor/core/random.hpp"
#include "xplor/sample/processors.hpp"

namespace xplor::python {
namespace {

using namespace xplor::sample;

void check_context(const std::optional<in1<std::int32_t>>& tokens,
                   const std::optional<in1<std::int64_t>>& offsets, const char* fn) {
  xplor::detail::require(tokens.has_value() == offsets.has_value(), fn,
                         "context_tokens and context_offsets come together (ragged contexts per row)");
}

}  // namespace

void bind_sample(nb::module_& m) {
  nb::class_<sampling_params>(m, "SamplingParams",
                              "Logits processing; defaults are TRL GRPOConfig's (every processor off, "
                              "temperature 1). Order: repetition penalty, temperature, top-k, top-p, min-p.")
      .def(
          "__init__",
          [](sampling_params* p, float temperature, int top_k, float top_p, float min_p,
             float repetition_penalty, bool raw_logprobs, int max_completion_length, std::int32_t eos_token,
             std::vector<std::int32_t> stop_tokens) {
            new (p) sampling_params{};
            p->temperature = temperature;
            p->top_k = top_k;
            p->top_p = top_p;
            p->min_p = min_p;
            p->repetition_penalty = repetition_penalty;
            p->logprobs = raw_logprobs ? logprobs_mode::raw : logprobs_mode::processed;
            p->max_completion_length = max_completion_length;
            p->eos_token = eos_token;
            p->stop_tokens = std::move(stop_tokens);
          },
          nb::kw_only(), nb::arg("temperature") = 1.0f, nb::arg("top_k") = 0, nb::arg("top_p") = 1.0f,
          nb::arg("min_p") = 0.0f, nb::arg("repetition_penalty") = 1.0f, nb::arg("raw_logprobs") = false,
          nb::arg("max_completion_length") = 256, nb::arg("eos_token") = -1,
          nb::arg("stop_tokens") = std::vector<std::int32_t>{})
      .def_rw("temperature", &sampling_params::temperature)
      .def_rw("top_k", &sampling_params::top_k)
      .def_rw("top_p", &sampling_params::top_p)
      .def_rw("min_p", &sampling_params::min_p)
      .def_rw("repetition_penalty", &sampling_params::repetition_penalty)
      .def_rw("max_completion_length", &sampling_params::max_completion_length)
      .def_rw("eos_token", &sampling_params::eos_token)
      .def_rw("stop_tokens", &sampling_params::stop_tokens);

  m.def("stream_id", &stream_id, nb::arg("prompt"), nb::arg("sample"),
        "The Philox stream of rollout (prompt, sample): prompt | sample << 32.");

  m.def(
      "process_logits",
      [](in2<float> logits, const sampling_params& params, std::optional<in1<std::int32_t>> context_tokens,
         std::optional<in1<std::int64_t>> context_offsets) {
        constexpr const char* fn = "xplor.sample.process_logits";
        check_context(context_tokens, context_offsets, fn);
        const std::size_t R = logits.shape(0), V = logits.shape(1);
        std::span<const std::int64_t> offsets = span_of(context_offsets);
        xplor::detail::require(offsets.empty() || offsets.size() == R + 1, fn, "context_offsets has ",
                               offsets.size(), " entries for ", R, " rows");
        auto [array, out] = new_array<float>(R * V);
        {
          nb::gil_scoped_release release;
          for (std::size_t r = 0; r < R; ++r) {
            std::span<const std::int32_t> context = {};
            if (!offsets.empty()) {
              xplor::detail::require(offsets[r] >= 0 && offsets[r] <= offsets[r + 1] &&
                                         static_cast<std::size_t>(offsets[r + 1]) <= context_tokens->shape(0),
                                     fn, "context_offsets[", r, "..", r + 1, "] = (", offsets[r], ", ",
                                     offsets[r + 1], ") is not a range of the ", context_tokens->shape(0),
                                     " context tokens");
              context = span_of(*context_tokens)
                            .subspan(static_cast<std::size_t>(offsets[r]),
                                     static_cast<std::size_t>(offsets[r + 1] - offsets[r]));
            }
            process_logits(std::span<const float>(logits.data() + r * V, V), params, out.subspan(r * V, V),
                           context);
          }
        }
        return nb::object(nb::cast(array)).attr("reshape")(R, V);
      },
      nb::arg("logits"), nb::arg("params"), nb::kw_only(), nb::arg("context_tokens") = nb::none(),
      nb::arg("context_offsets") = nb::none(),
      "Normalised log-probabilities [rows, vocab] after the processors (removed tokens -inf). Row r's "
      "repetition "
      "penalty applies to context_tokens[context_offsets[r]:context_offsets[r+1]].");

  m.def(
      "sample_rows",
      [](in2<float> logits, const sampling_params& params, std::uint64_t seed, in1<std::uint64_t> streams,
         in1<std::uint64_t> draws, std::optional<in1<std::int32_t>> context_tokens,
         std::optional<in1<std::int64_t>> context_offsets, int threads) {
        check_context(context_tokens, context_offsets, "xplor.sample.sample_rows");
        const std::size_t R = logits.shape(0);
        const view2d<const float> view(
            logits.data(), {static_cast<std::int64_t>(R), static_cast<std::int64_t>(logits.shape(1))},
            {static_cast<std::int64_t>(logits.shape(1)), 1});
        auto [tokens, tok] = new_array<std::int32_t>(R);
        auto [logprobs, lp] = new_array<float>(R);
        auto [entropies, ent] = new_array<float>(R);
        {
          nb::gil_scoped_release release;
          draw_keys keys{seed, span_of(streams), span_of(draws)};
          sample_rows(cpu_t{threads}, view, params, keys, draw_outputs{tok, lp, ent}, span_of(context_tokens),
                      span_of(context_offsets));
        }
        return nb::make_tuple(tokens, logprobs, entropies);
      },
      nb::arg("logits"), nb::arg("params"), nb::kw_only(), nb::arg("seed"), nb::arg("streams"),
      nb::arg("draws"), nb::arg("context_tokens") = nb::none(), nb::arg("context_offsets") = nb::none(),
      nb::arg("threads") = 0,
      "(tokens int32, logprobs float32, entropies float32): one token per row of logits [rows, vocab] after "
      "the "
      "processors, drawn from Philox block draws[r] of stream streams[r] under `seed` (use stream_id(prompt, "
      "sample) and the decode step): the same tokens on any thread count, on the CPU and on xplor's GPU "
      "sampler.");
}

}  // namespace xplor::python
