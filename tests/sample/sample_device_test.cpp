// Logits processing and draws on the device backend against the CPU (Thrust OMP in CI, the GPU
// under nvcc via cuda/): the same row kernel and the same Philox words, so the same tokens.
#include <thrust/device_vector.h>
#include <thrust/host_vector.h>
#include <catch2/catch.hpp>
#include <random>
#include <vector>

#include "xplor/core/adapt_thrust.hpp"
#include "xplor/core/device.hpp"
#include "xplor/sample/processors.hpp"

TEST_CASE("device: processed draws equal the CPU's token for token", "[device][sample]") {
  using namespace xplor::sample;
  const std::int64_t R = 96, V = 1000;
  std::mt19937 rng(2);
  std::vector<float> logits(R * V);
  for (auto& x : logits) x = std::normal_distribution<float>(0.0f, 3.0f)(rng);
  std::vector<std::uint64_t> streams(R), draws(R);
  for (std::int64_t r = 0; r < R; ++r)
    streams[r] = xplor::stream_id(1, static_cast<std::uint32_t>(r)), draws[r] = r % 3;
  std::vector<std::int32_t> ctx_tokens;
  std::vector<std::int64_t> ctx_offsets{0};
  for (std::int64_t r = 0; r < R; ++r) {
    for (int k = 0; k < r % 4; ++k) ctx_tokens.push_back(static_cast<std::int32_t>(rng() % V));
    ctx_offsets.push_back(static_cast<std::int64_t>(ctx_tokens.size()));
  }
  const thrust::device_vector<float> d_logits(logits.begin(), logits.end());
  const thrust::device_vector<std::uint64_t> d_streams(streams.begin(), streams.end()),
      d_draws(draws.begin(), draws.end());
  const thrust::device_vector<std::int32_t> d_ctx(ctx_tokens.begin(), ctx_tokens.end());
  for (int setting = 0; setting < 3; ++setting) {
    sampling_params p;
    p.temperature = 0.8f;
    if (setting == 1) p.top_k = 40, p.top_p = 0.9f;
    if (setting == 2) p.min_p = 0.05f, p.repetition_penalty = 1.3f;
    std::vector<std::int32_t> tokens(R);
    std::vector<float> lp(R), ent(R);
    thrust::device_vector<std::int32_t> d_tokens(R);
    thrust::device_vector<float> d_lp(R), d_ent(R);
    sample_rows(xplor::cpu, xplor::as_view2d(std::as_const(logits), R, V), p, {11, streams, draws},
                {tokens, lp, ent}, ctx_tokens, ctx_offsets);
    sample_rows(xplor::device, xplor::as_view2d(d_logits, R, V), p,
                {11, xplor::as_span(d_streams), xplor::as_span(d_draws)},
                {xplor::as_span(d_tokens), xplor::as_span(d_lp), xplor::as_span(d_ent)},
                xplor::as_span(d_ctx), ctx_offsets);
    const thrust::host_vector<std::int32_t> ht = d_tokens;
    const thrust::host_vector<float> hl = d_lp, he = d_ent;
    for (std::int64_t r = 0; r < R; ++r) {
      REQUIRE(ht[r] == tokens[r]);
      REQUIRE(hl[r] == Approx(lp[r]).margin(1e-5));
      REQUIRE(he[r] == Approx(ent[r]).margin(1e-5));
    }
  }
}
