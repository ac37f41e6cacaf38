// Generation with MemGen (the authors' MemGenModel.generate with _should_augment), on the
// reasoner's KV decoder. At the prompt end every sequence is eligible; later a sequence is
// eligible after a delimiter token while it has fewer than max_inference_aug inference
// insertions. An eligible sequence asks the trigger (none: always invoke); on INVOKE the weaver
// reads the sequence so far (tokens and earlier latents) and its K latents are appended to the
// state's cache one by one (kv_decoder::step_embeddings). The authors drop the cache after an
// insertion and recompute the whole context on the next step; appending the latents' keys and
// values is the same computation for a causal model (tests: a rollout's log-probabilities equal
// memgen::forward over it) without the recompute.
//
// Tokens are drawn with xplor::sample's processors and Philox keys (stream = (prompt, sample),
// draw = step), trigger decisions from softmax(logits / trigger_temperature) with keys of their
// own, so a generation is reproducible from its seed.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/core/random.hpp"
#include "xplor/memory/insertion.hpp"
#include "xplor/memory/memgen.hpp"
#include "xplor/memory/trigger.hpp"
#include "xplor/model/decode.hpp"
#include "xplor/sample/processors.hpp"
#include "xplor/sample/rollout.hpp"

namespace xplor::memory {

struct generation_options {
  sample::sampling_params sampling = {};  // temperature, processors, max_completion_length, eos, stops
  std::uint64_t seed = 0;
  bool trigger_sample = true;        // sample the trigger's decision (false: argmax, ties to SKIP)
  float trigger_temperature = 1.0f;  // the authors' trigger temperature
  /// The authors' way: after an insertion drop the state's cache and prefill the whole context
  /// (tokens and latents) again. The same numbers as appending the latents, for comparison.
  bool recompute_after_insertion = false;
};

/// One completion: the sequence with the points where latents went in, the trigger's decisions
/// (for trigger GRPO), the log-probability of each drawn token and why it ended.
struct rollout {
  sequence seq = {};
  decision_record decisions = {};  // tokens = prompt + completion
  std::vector<float> logprobs = {};
  sample::finish_reason finish = sample::finish_reason::length;
  std::int32_t prompt_index = 0, sample_index = 0;
};

/// `samples` completions of every prompt (forks of one prefilled prompt), in (prompt, sample)
/// order. `trig` null: every eligible point invokes the weaver.
inline std::vector<rollout> generate(memgen& m, std::span<const std::vector<std::int32_t>> prompts,
                                     int samples, const generation_options& opt, trigger* trig = nullptr) {
  constexpr const char* fn = "xplor::memory::generate";
  const memgen_config& cfg = m.config();
  const model::transformer& reasoner = m.reasoner();
  const std::int64_t C = reasoner.config().d_model, V = reasoner.config().vocab_size;
  xplor::detail::require(samples >= 1, fn, "samples = ", samples, " must be positive");
  xplor::detail::require(opt.sampling.max_completion_length >= 1, fn,
                         "max_completion_length = ", opt.sampling.max_completion_length, " must be positive");
  xplor::detail::require(std::isfinite(opt.trigger_temperature) && opt.trigger_temperature > 0.0f, fn,
                         "trigger_temperature = ", opt.trigger_temperature, " must be finite and positive");
  // The longest sequence must fit the reasoner.
  const std::int64_t latent_rows = (cfg.prompt_augment ? cfg.prompt_latents : 0) +
                                   std::int64_t{cfg.max_inference_aug} * cfg.inference_latents;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    validate_sequence(cfg, reasoner.config(), {prompts[i], {}, {}}, fn);
    const std::int64_t need =
        static_cast<std::int64_t>(prompts[i].size()) + opt.sampling.max_completion_length + latent_rows;
    xplor::detail::require(need <= reasoner.config().max_seq_len, fn, "prompts[", i, "]: ", prompts[i].size(),
                           " tokens + max_completion_length ", opt.sampling.max_completion_length,
                           " + up to ", latent_rows,
                           " latents exceed max_seq_len = ", reasoner.config().max_seq_len);
  }
  model::kv_decoder dec(reasoner);

  struct running {
    model::kv_decoder::state_id state;
    rollout out;
    std::vector<std::int32_t> rows;  // the sequence so far, model::latent_slot for latent rows
    std::vector<float> latents;      // the latent rows so far [n, C]
    std::vector<float> logits;       // [V] next-token logits
    int inference = 0;
    bool done = false;
  };
  std::vector<running> runs;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const auto root = dec.begin(prompts[i]);
    const auto states = dec.fork(root, samples);
    const auto root_logits = dec.logits(std::span(&root, 1));
    for (int j = 0; j < samples; ++j) {
      running r;
      r.state = states[static_cast<std::size_t>(j)];
      r.out.seq.prompt = prompts[i];
      r.out.decisions.tokens = prompts[i];
      r.out.prompt_index = static_cast<std::int32_t>(i);
      r.out.sample_index = j;
      r.rows = prompts[i];
      r.logits.assign(root_logits.data(), root_logits.data() + V);
      runs.push_back(std::move(r));
    }
    dec.release(root);
  }

  // Asks the trigger at the eligible runs (all of them when it is null) and weaves latents into
  // the ones that invoke. `step` keys the trigger's draws.
  auto decide_and_weave = [&](const std::vector<std::size_t>& eligible, bank which, std::int64_t step) {
    if (eligible.empty()) return;
    std::vector<std::int32_t> actions(eligible.size(), invoke);
    if (trig != nullptr) {
      std::vector<std::vector<std::int32_t>> prefixes;
      for (std::size_t e : eligible) prefixes.push_back(runs[e].out.decisions.tokens);
      const std::vector<float> z = trig->logits(prefixes);
      for (std::size_t k = 0; k < eligible.size(); ++k) {
        const float z0 = z[2 * k] / opt.trigger_temperature, z1 = z[2 * k + 1] / opt.trigger_temperature;
        if (opt.trigger_sample) {
          const rollout& o = runs[eligible[k]].out;
          const auto words = philox_stream(opt.seed ^ 0x5bd1e9955bd1e995ull,
                                           stream_id(static_cast<std::uint32_t>(o.prompt_index),
                                                     static_cast<std::uint32_t>(o.sample_index)))
                                 .block(static_cast<std::uint64_t>(step));
          // P(invoke) = sigmoid(z1 - z0).
          const double p_invoke = 1.0 / (1.0 + std::exp(double(z0) - double(z1)));
          actions[k] = uniform_double(words[0], words[1]) < p_invoke ? invoke : skip;
        } else {
          actions[k] = z1 > z0 ? invoke : skip;
        }
      }
    }
    weave_call call;
    call.which = which;
    std::vector<std::size_t> invokers;
    for (std::size_t k = 0; k < eligible.size(); ++k) {
      running& r = runs[eligible[k]];
      if (trig != nullptr) {
        r.out.decisions.rows.push_back(static_cast<std::int64_t>(r.out.decisions.tokens.size()) - 1);
        r.out.decisions.actions.push_back(actions[k]);
      }
      if (actions[k] != invoke) continue;
      invokers.push_back(eligible[k]);
      call.lengths.push_back(cfg.static_latents ? 0 : static_cast<std::int64_t>(r.rows.size()));
    }
    if (invokers.empty()) return;
    call.width = *std::max_element(call.lengths.begin(), call.lengths.end());
    call.context.assign(static_cast<std::size_t>(call.members() * call.width * C), 0.0f);
    if (call.width > 0) {
      std::vector<prefix> prefixes;
      for (std::size_t invoker : invokers) prefixes.push_back({runs[invoker].rows, runs[invoker].latents});
      m.weaver_contexts(prefixes, call.width, call.context);
    }
    m.weaver().forward(call);
    const std::int64_t K = m.weaver().latents(which);
    std::vector<model::kv_decoder::state_id> ids;
    for (std::size_t k = 0; k < invokers.size(); ++k) {
      running& r = runs[invokers[k]];
      ids.push_back(r.state);
      r.out.seq.points.push_back(static_cast<std::int32_t>(r.out.seq.completion.size()));
      if (which == bank::inference) ++r.inference;
      const float* lat = call.latents.data() + static_cast<std::int64_t>(k) * K * C;
      r.latents.insert(r.latents.end(), lat, lat + K * C);
      r.rows.insert(r.rows.end(), static_cast<std::size_t>(K), model::latent_slot);
    }
    if (opt.recompute_after_insertion) {
      for (std::size_t invoker : invokers) {
        running& r = runs[invoker];
        dec.release(r.state);
        const auto n = static_cast<std::int64_t>(r.latents.size()) / C;
        r.state = dec.begin(r.rows, make_view(static_cast<const float*>(r.latents.data()), {n, C}));
        const auto z = dec.logits(std::span(&r.state, 1));
        r.logits.assign(z.data(), z.data() + V);
      }
      return;
    }
    std::vector<float> rows(invokers.size() * static_cast<std::size_t>(C));
    view2d<const float> logits;
    for (std::int64_t k = 0; k < K; ++k) {
      for (std::size_t i = 0; i < invokers.size(); ++i)
        std::copy_n(call.latents.data() + (static_cast<std::int64_t>(i) * K + k) * C, C, rows.data() + i * C);
      logits = dec.step_embeddings(ids, make_view(static_cast<const float*>(rows.data()),
                                                  {static_cast<std::int64_t>(invokers.size()), C}));
    }
    for (std::size_t i = 0; i < invokers.size(); ++i)
      runs[invokers[i]].logits.assign(&logits(static_cast<std::int64_t>(i), 0),
                                      &logits(static_cast<std::int64_t>(i), 0) + V);
  };

  if (cfg.prompt_augment) {
    std::vector<std::size_t> all(runs.size());
    for (std::size_t k = 0; k < runs.size(); ++k) all[k] = k;
    decide_and_weave(all, bank::prompt, 0);
  }
  const auto& sp = opt.sampling;
  auto stops = [&](std::int32_t t) {
    if (t == sp.eos_token) return sample::finish_reason::eos;
    return std::find(sp.stop_tokens.begin(), sp.stop_tokens.end(), t) != sp.stop_tokens.end()
               ? sample::finish_reason::stop
               : sample::finish_reason::length;
  };
  std::vector<float> batch_logits;
  std::vector<std::uint64_t> streams, draws;
  std::vector<std::int32_t> drawn;
  std::vector<float> logp;
  for (int t = 0; t < sp.max_completion_length; ++t) {
    std::vector<std::size_t> active;
    for (std::size_t k = 0; k < runs.size(); ++k)
      if (!runs[k].done) active.push_back(k);
    if (active.empty()) break;
    const std::size_t a = active.size();
    batch_logits.resize(a * static_cast<std::size_t>(V));
    streams.resize(a);
    draws.assign(a, static_cast<std::uint64_t>(t));
    drawn.resize(a);
    logp.resize(a);
    for (std::size_t k = 0; k < a; ++k) {
      const running& r = runs[active[k]];
      std::copy(r.logits.begin(), r.logits.end(), batch_logits.begin() + static_cast<std::int64_t>(k) * V);
      streams[k] = stream_id(static_cast<std::uint32_t>(r.out.prompt_index),
                             static_cast<std::uint32_t>(r.out.sample_index));
    }
    sample::sample_rows(
        cpu, make_view(static_cast<const float*>(batch_logits.data()), {static_cast<std::int64_t>(a), V}), sp,
        {opt.seed, streams, draws}, {drawn, logp, {}});
    std::vector<model::kv_decoder::state_id> cont_ids;
    std::vector<std::int32_t> cont_tokens;
    std::vector<std::size_t> cont;
    for (std::size_t k = 0; k < a; ++k) {
      running& r = runs[active[k]];
      const std::int32_t tok = drawn[k];
      r.out.seq.completion.push_back(tok);
      r.out.decisions.tokens.push_back(tok);
      r.out.logprobs.push_back(logp[k]);
      r.rows.push_back(tok);
      const auto why = stops(tok);
      if (why != sample::finish_reason::length || t + 1 == sp.max_completion_length) {
        r.out.finish = why;
        r.done = true;
        continue;
      }
      cont.push_back(active[k]);
      cont_ids.push_back(r.state);
      cont_tokens.push_back(tok);
    }
    if (cont.empty()) continue;
    const auto next = dec.step(cont_ids, cont_tokens);
    std::vector<std::size_t> eligible;
    for (std::size_t k = 0; k < cont.size(); ++k) {
      running& r = runs[cont[k]];
      r.logits.assign(&next(static_cast<std::int64_t>(k), 0), &next(static_cast<std::int64_t>(k), 0) + V);
      if (r.inference < cfg.max_inference_aug && is_delimiter(cfg, cont_tokens[k]))
        eligible.push_back(cont[k]);
    }
    decide_and_weave(eligible, bank::inference, t + 1);
  }
  std::vector<rollout> out;
  out.reserve(runs.size());
  for (running& r : runs) {
    dec.release(r.state);
    out.push_back(std::move(r.out));
  }
  return out;
}

}  // namespace xplor::memory
