// The one-block-per-row sampling kernel (include/xplor/sample/cuda/sample_kernel.cuh) against the
// CPU's sample_rows: the same tokens bit for bit for the same seed, on a 50257-token vocabulary
// and on small vocabularies with many ties, for every processor combination; the processed
// log-probabilities bit for bit as well; logprobs and entropies within 1e-5.
#include <catch2/catch.hpp>
#include <cstring>
#include <random>
#include <sstream>
#include <vector>

#include "xplor/sample/cuda/sample_kernel.cuh"

namespace {
using namespace xplor::sample;

template <class T>
xplor::device_span<T> dspan(const xplor::gpu::buffer<T>& b) {
  return xplor::device_span<T>(b.data(), b.size());
}

struct case_result {
  std::int64_t token_mismatches = 0, processed_rows_differing = 0;
  float max_logprob_diff = 0.0f, max_entropy_diff = 0.0f;
  std::string first_mismatch;
};

/// Runs one configuration on both backends and compares.
case_result compare(const std::vector<float>& logits, std::int64_t R, std::int64_t V,
                    const sampling_params& p, const std::vector<std::int32_t>& ctx,
                    const std::vector<std::int64_t>& offsets, std::uint64_t seed, bool shared_rows) {
  std::vector<std::uint64_t> streams(R), draws(R);
  for (std::int64_t r = 0; r < R; ++r)
    streams[r] = xplor::stream_id(static_cast<std::uint32_t>(r % 7), static_cast<std::uint32_t>(r)),
    draws[r] = static_cast<std::uint64_t>(r % 5);
  std::vector<std::int32_t> tokens(R);
  std::vector<float> lp(R), ent(R);
  sample_rows(xplor::cpu, xplor::as_view2d(std::as_const(logits), R, V), p, {seed, streams, draws},
              {tokens, lp, ent}, ctx, offsets);

  xplor::gpu::buffer<float> d_logits, d_lp(R), d_ent(R);
  d_logits.upload(logits.data(), logits.size());
  xplor::gpu::buffer<std::uint64_t> d_streams, d_draws;
  d_streams.upload(streams.data(), streams.size());
  d_draws.upload(draws.data(), draws.size());
  xplor::gpu::buffer<std::int32_t> d_ctx, d_tokens(R);
  d_ctx.upload(ctx.data(), ctx.size());
  gpu::row_sampler sampler;
  sampler.shared_rows(shared_rows);
  const xplor::device_view2d<const float> view(d_logits.data(), {R, V}, {V, 1});
  sampler.sample(view, p, {seed, dspan(d_streams), dspan(d_draws)},
                 {dspan(d_tokens), dspan(d_lp), dspan(d_ent)},
                 xplor::device_span<const std::int32_t>(d_ctx.data(), ctx.size()), offsets);
  std::vector<std::int32_t> g_tokens(R);
  std::vector<float> g_lp(R), g_ent(R), g_processed(R * V);
  d_tokens.download(g_tokens.data(), R);
  d_lp.download(g_lp.data(), R);
  d_ent.download(g_ent.data(), R);
  xplor::gpu::check_cuda(
      cudaMemcpy(g_processed.data(), sampler.processed(), R * V * sizeof(float), cudaMemcpyDeviceToHost),
      "cudaMemcpy(processed)");

  case_result res;
  std::vector<float> cpu_processed(V);
  for (std::int64_t r = 0; r < R; ++r) {
    if (g_tokens[r] != tokens[r]) {
      if (res.token_mismatches == 0) {
        std::ostringstream os;
        os << "row " << r << ": gpu token " << g_tokens[r] << " cpu token " << tokens[r];
        res.first_mismatch = os.str();
      }
      ++res.token_mismatches;
    }
    res.max_logprob_diff = std::max(res.max_logprob_diff, std::abs(g_lp[r] - lp[r]));
    res.max_entropy_diff = std::max(res.max_entropy_diff, std::abs(g_ent[r] - ent[r]));
    process_logits(std::span<const float>(logits.data() + r * V, V), p, cpu_processed,
                   offsets.empty()
                       ? std::span<const std::int32_t>{}
                       : std::span<const std::int32_t>(ctx.data() + offsets[r], offsets[r + 1] - offsets[r]));
    if (std::memcmp(cpu_processed.data(), g_processed.data() + r * V, V * sizeof(float)) != 0)
      ++res.processed_rows_differing;
  }
  return res;
}

std::vector<sampling_params> settings() {
  std::vector<sampling_params> out;
  auto add = [&](float t, int k, float top_p, float min_p, float rep, bool raw) {
    sampling_params p;
    p.temperature = t;
    p.top_k = k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.repetition_penalty = rep;
    p.logprobs = raw ? logprobs_mode::raw : logprobs_mode::processed;
    out.push_back(p);
  };
  add(1.0f, 0, 1.0f, 0.0f, 1.0f, false);   // plain softmax
  add(0.7f, 0, 1.0f, 0.0f, 1.0f, true);    // temperature, raw logprobs
  add(1.0f, 50, 1.0f, 0.0f, 1.0f, false);  // top-k
  add(1.0f, 1, 1.0f, 0.0f, 1.0f, false);   // greedy
  add(0.9f, 0, 0.9f, 0.0f, 1.0f, false);   // top-p
  add(1.3f, 0, 0.05f, 0.0f, 1.0f, false);  // tiny top-p
  add(1.0f, 0, 1.0f, 0.05f, 1.0f, false);  // min-p
  add(0.8f, 40, 0.9f, 0.0f, 1.0f, false);  // top-k + top-p
  add(0.8f, 40, 0.9f, 0.02f, 1.3f, true);  // everything
  add(1.1f, 0, 0.95f, 0.0f, 1.2f, false);  // penalty + top-p
  return out;
}
}  // namespace

TEST_CASE("gpu sample kernel: tokens equal the CPU's bit for bit", "[gpu][sample]") {
  std::mt19937 rng(7);
  struct shape {
    std::int64_t R, V;
    int levels;  // 0: normal logits; else that many distinct values (ties)
  };
  const std::vector<shape> shapes{{64, 50257, 0}, {48, 50257, 16}, {256, 1000, 0},
                                  {256, 33, 3},   {128, 7, 2},     {64, 4099, 5}};
  std::int64_t checked = 0;
  for (const auto& sh : shapes) {
    std::vector<float> logits(sh.R * sh.V);
    for (auto& x : logits)
      x = sh.levels == 0 ? std::normal_distribution<float>(0.0f, 3.0f)(rng)
                         : static_cast<float>(rng() % sh.levels) * 0.75f - 1.0f;
    // Some removed tokens, and rows with zeros of both signs.
    for (std::int64_t r = 0; r < sh.R; r += 3) logits[r * sh.V + rng() % sh.V] = -INFINITY;
    for (std::int64_t r = 1; r < sh.R; r += 5) logits[r * sh.V + rng() % sh.V] = -0.0f;
    std::vector<std::int32_t> ctx;
    std::vector<std::int64_t> offsets{0};
    for (std::int64_t r = 0; r < sh.R; ++r) {
      for (int k = 0; k < static_cast<int>(r % 9); ++k)
        ctx.push_back(static_cast<std::int32_t>(rng() % sh.V));
      offsets.push_back(static_cast<std::int64_t>(ctx.size()));
    }
    int si = 0;
    for (const auto& p : settings()) {
      for (const bool shared_rows : {true, false}) {  // the row in shared memory, and in global memory
        const auto res = compare(logits, sh.R, sh.V, p, ctx, offsets, 1234 + si, shared_rows);
        INFO("R " << sh.R << " V " << sh.V << " levels " << sh.levels << " setting " << si << " (T "
                  << p.temperature << " top_k " << p.top_k << " top_p " << p.top_p << " min_p " << p.min_p
                  << " penalty " << p.repetition_penalty << ") shared rows " << shared_rows);
        INFO(res.first_mismatch);
        CHECK(res.token_mismatches == 0);
        CHECK(res.processed_rows_differing == 0);
        CHECK(res.max_logprob_diff <= 1e-5f);
        CHECK(res.max_entropy_diff <= 1e-5f);
        checked += sh.R;
      }
      ++si;
    }
  }
  std::printf("[gpu sample] %lld rows compared with the CPU sampler\n", static_cast<long long>(checked));
}

TEST_CASE("gpu sample kernel: invalid rows throw like the CPU", "[gpu][sample]") {
  const std::int64_t R = 3, V = 100;
  std::vector<float> logits(R * V, 0.5f);
  logits[1 * V + 17] = NAN;
  xplor::gpu::buffer<float> d_logits, d_lp(R);
  d_logits.upload(logits.data(), logits.size());
  std::vector<std::uint64_t> zeros(R, 0);
  xplor::gpu::buffer<std::uint64_t> d_streams, d_draws;
  d_streams.upload(zeros.data(), R);
  d_draws.upload(zeros.data(), R);
  xplor::gpu::buffer<std::int32_t> d_tokens(R);
  const xplor::device_view2d<const float> view(d_logits.data(), {R, V}, {V, 1});
  sampling_params p;
  CHECK_THROWS_WITH(
      gpu::sample_rows(view, p, {1, dspan(d_streams), dspan(d_draws)}, {dspan(d_tokens), dspan(d_lp), {}}),
      Catch::Contains("logits[1, 17] is NaN"));
  p.temperature = 0.0f;
  CHECK_THROWS_WITH(
      gpu::sample_rows(view, p, {1, dspan(d_streams), dspan(d_draws)}, {dspan(d_tokens), dspan(d_lp), {}}),
      Catch::Contains("temperature = 0"));
}
