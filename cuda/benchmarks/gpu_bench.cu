// GPU benchmarks with their baselines measured in the same run (cudaEvent timing, median of
// several repetitions after a warm-up):
//   1. sampling 512 x 50257 logits rows (temperature only; top-p 0.9; top-k 50) with the one-block-per-row
//      kernel, as GB/s of logits read, next to a device-to-device cudaMemcpy of the same bytes;
//   2. a GPT-2-small-like training step (forward, backward, clip, AdamW) as tokens/s and achieved
//      TFLOP/s (matrix-product FLOPs), next to cuBLAS running the same GEMM shapes back to back;
//   3. the exact knapsack rollout allocator at a million prompts on the GPU, next to the host
//      solver on one CPU core in the same run (the counts must be equal);
//   4. selection + backup over B = 1024 DeepSearch trees of 4096 nodes (benchmarks/forest.hpp's
//      workload) with the batched drivers on the GPU, as trees/s, next to B calls of the
//      single-tree code on one CPU core in the same run (the selections must be equal).
// Prints "[table] ..." lines that cuda/run_device_checks.sh collects. Usage: gpu_bench [--quick]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <thrust/host_vector.h>

#include "xplor/budget/knapsack_parallel.hpp"
#include "xplor/core/adapt_thrust.hpp"
#include "xplor/core/device.hpp"

#include "xplor/model/cuda/transformer.cuh"
#include "xplor/sample/cuda/sample_kernel.cuh"
#include "xplor/search/tree_batch.hpp"

#include "../../benchmarks/forest.hpp"

namespace {
using xplor::gpu::check_cuda;

/// Median milliseconds of `reps` runs of f (after one warm-up), timed with events on stream 0.
double median_ms(int reps, const std::function<void()>& f) {
  cudaEvent_t a, b;
  check_cuda(cudaEventCreate(&a), "cudaEventCreate");
  check_cuda(cudaEventCreate(&b), "cudaEventCreate");
  f();
  check_cuda(cudaDeviceSynchronize(), "warm-up");
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    check_cuda(cudaEventRecord(a), "cudaEventRecord");
    f();
    check_cuda(cudaEventRecord(b), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(b), "cudaEventSynchronize");
    float t = 0.0f;
    check_cuda(cudaEventElapsedTime(&t, a, b), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

__global__ void fill_logits(float* z, std::int64_t R, std::int64_t V) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < R * V;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t r = i / V, v = i % V;
    // Zipf-like ranks (as benchmarks/sample_bench.cpp) plus a hashed jitter.
    const std::uint32_t h = static_cast<std::uint32_t>(i * 2654435761u) >> 8;
    z[i] = -1.1f * logf(1.0f + static_cast<float>((v * 7919 + r * 104729) % V)) +
           (static_cast<float>(h) / 16777216.0f - 0.5f);
  }
}

void sampling_bench(int reps) {
  const std::int64_t R = 512, V = 50257;
  const double bytes = double(R) * V * sizeof(float);
  xplor::gpu::buffer<float> logits(static_cast<std::size_t>(R * V)), copy(static_cast<std::size_t>(R * V)),
      lp(R);
  fill_logits<<<4096, 256>>>(logits.data(), R, V);
  xplor::gpu::check_launch("fill_logits");
  std::vector<std::uint64_t> streams(R), draws(R, 0);
  for (std::int64_t r = 0; r < R; ++r) streams[r] = xplor::stream_id(0, static_cast<std::uint32_t>(r));
  xplor::gpu::buffer<std::uint64_t> d_streams, d_draws;
  d_streams.upload(streams.data(), R);
  d_draws.upload(draws.data(), R);
  xplor::gpu::buffer<std::int32_t> tokens(R);
  const xplor::device_view2d<const float> view(logits.data(), {R, V}, {V, 1});
  const double copy_ms = median_ms(reps, [&] {
    check_cuda(cudaMemcpyAsync(copy.data(), logits.data(), static_cast<std::size_t>(bytes),
                               cudaMemcpyDeviceToDevice),
               "cudaMemcpyAsync");
  });
  const double copy_gbs = bytes / (copy_ms * 1e-3) / 1e9;
  const char* names[] = {"temperature", "temperature + processed rows written", "top-p 0.9", "top-k 50"};
  for (int setting = 0; setting < 4; ++setting) {
    xplor::sample::sampling_params p;
    if (setting == 2) p.top_p = 0.9f;
    if (setting == 3) p.top_k = 50;
    xplor::sample::gpu::row_sampler sampler;
    sampler.keep_processed(setting == 1);  // the results (token, logprob) only, unless asked
    const xplor::sample::device_draw_keys keys{
        7, xplor::device_span<const std::uint64_t>(d_streams.data(), static_cast<std::size_t>(R)),
        xplor::device_span<const std::uint64_t>(d_draws.data(), static_cast<std::size_t>(R))};
    const xplor::sample::device_draw_outputs out{
        xplor::device_span<std::int32_t>(tokens.data(), static_cast<std::size_t>(R)),
        xplor::device_span<float>(lp.data(), static_cast<std::size_t>(R)),
        {}};
    sampler.sample(view, p, keys, out);  // validates once (throws on bad input)
    const double ms = median_ms(reps, [&] { sampler.enqueue(view, p, keys, out); });
    sampler.finish();
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    std::printf(
        "[table] sampling %s 512x50257: %.3f ms, %.0f GB/s of logits read; device copy of the same bytes "
        "%.3f ms = %.0f GB/s; ratio %.2f\n",
        names[setting], ms, gbs, copy_ms, copy_gbs, gbs / copy_gbs);
  }
}

/// One GEMM shape the training step runs (row-major, as kernels::gemm_rm takes it).
struct gemm_shape {
  bool ta, tb;
  std::int64_t M, N, K;
  int batch;
  int count;  // how many times per step
  double flops() const { return 2.0 * double(M) * double(N) * double(K) * batch * count; }
};

/// The GEMMs of transformer::forward + backward for (config, B, T), in the model's own calls.
std::vector<gemm_shape> step_shapes(const xplor::model::transformer_config& c, std::int64_t B,
                                    std::int64_t T) {
  const std::int64_t N = B * T, C = c.d_model, F = c.d_ff, V = c.vocab_size, D = c.head_dim();
  const int H = c.n_heads, L = c.n_layers, Bi = static_cast<int>(B);
  const int mlp_in = c.mlp == xplor::model::mlp_kind::swiglu ? 2 : 1;
  std::vector<gemm_shape> s;
  auto linear = [&](std::int64_t in, std::int64_t out, int count) {
    s.push_back({false, true, N, out, in, 1, count});   // forward
    s.push_back({false, false, N, in, out, 1, count});  // dx
    s.push_back({true, false, out, in, N, 1, count});   // dW
  };
  linear(C, 3 * C, L);
  linear(C, C, L);
  linear(C, F, L * mlp_in);
  linear(F, C, L);
  linear(C, V, 1);
  // Attention per sequence, batched over heads: S = q k^T, Y = P v; backward dP, dV, dQ, dK.
  s.push_back({false, true, T, T, D, H, L * Bi});
  s.push_back({false, false, T, D, T, H, L * Bi});
  s.push_back({false, true, T, T, D, H, L * Bi});
  s.push_back({true, false, T, D, T, H, L * Bi});
  s.push_back({false, false, T, D, T, H, L * Bi});
  s.push_back({true, false, T, D, T, H, L * Bi});
  return s;
}

void training_bench(int reps, bool quick) {
  xplor::model::transformer_config c;  // GPT-2 small: 124M parameters
  c.vocab_size = 50257;
  c.d_model = 768;
  c.n_layers = quick ? 2 : 12;
  c.n_heads = 12;
  c.d_ff = 3072;
  c.max_seq_len = 1024;
  c.norm = xplor::model::norm_kind::layernorm;
  c.positions = xplor::model::position_kind::learned;
  c.mlp = xplor::model::mlp_kind::gelu;
  c.tie_embeddings = true;
  const std::int64_t B = 4, T = 1024, N = B * T;
  xplor::model::gpu::transformer m(c, 1);
  xplor::model::gpu::adamw opt(m.layout());
  std::vector<std::int32_t> tokens(N), targets(N);
  for (std::int64_t n = 0; n < N; ++n) {
    tokens[n] = static_cast<std::int32_t>((n * 7919) % c.vocab_size);
    targets[n] = static_cast<std::int32_t>((n * 104729 + 13) % c.vocab_size);
  }
  float loss = 0.0f;
  const double step_ms = median_ms(reps, [&] {
    m.zero_grad();
    loss = m.forward(tokens, B, T, targets);
    m.backward();
    xplor::model::gpu::clip_grad_norm(m.grads(), m.num_params(), 1.0f);
    opt.step(m.params(), m.grads(), 1e-4f);
  });
  const auto shapes = step_shapes(c, B, T);
  double flops = 0.0;
  std::size_t a_max = 0, b_max = 0, c_max = 0;
  for (const auto& g : shapes) {
    flops += g.flops();
    a_max = std::max(a_max, static_cast<std::size_t>(g.M * g.K * g.batch));
    b_max = std::max(b_max, static_cast<std::size_t>(g.K * g.N * g.batch));
    c_max = std::max(c_max, static_cast<std::size_t>(g.M * g.N * g.batch));
  }
  xplor::gpu::buffer<float> A(a_max), Bm(b_max), Cm(c_max);
  A.zero();
  Bm.zero();
  Cm.zero();
  const cublasHandle_t h = m.blas();
  const double blas_ms = median_ms(reps, [&] {
    for (const auto& g : shapes)
      for (int k = 0; k < g.count; ++k) {
        const std::int64_t lda = g.ta ? g.M : g.K, ldb = g.tb ? g.K : g.N;
        xplor::model::gpu::kernels::gemm_rm(h, g.ta, g.tb, g.M, g.N, g.K, A.data(), lda, Bm.data(), ldb,
                                            Cm.data(), g.N, 0.0f, g.batch, g.M * g.K, g.K * g.N, g.M * g.N);
      }
  });
  const double tflops = flops / (step_ms * 1e-3) / 1e12, blas_tflops = flops / (blas_ms * 1e-3) / 1e12;
  std::printf(
      "[table] training step %s (%lld params, B=%lld, T=%lld, fp32): %.1f ms, %.0f tokens/s, %.1f TFLOP/s "
      "of matrix products; cuBLAS alone on the same GEMM shapes %.1f ms = %.1f TFLOP/s; ratio %.2f "
      "(loss %.3f)\n",
      quick ? "GPT-2-small-width, 2 layers" : "GPT-2 small", static_cast<long long>(m.num_params()),
      static_cast<long long>(B), static_cast<long long>(T), step_ms, double(N) / (step_ms * 1e-3), tflops,
      blas_ms, blas_tflops, tflops / blas_tflops, double(loss));
}
/// allocate_rollouts(xplor::device, ...) vs the host solver, M = 1e6, B = 8e6, n in [2, 128].
void allocation_bench(int reps) {
  const std::size_t M = 1000000;
  const std::int64_t B = 8000000;
  std::mt19937 gen(2);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<double> p(M);
  for (double& x : p) x = unit(gen);
  const thrust::device_vector<double> d_p(p.begin(), p.end());
  thrust::device_vector<int> d_n(M);
  const auto device_run = [&] {
    xplor::budget::allocate_rollouts(xplor::device, xplor::as_span(d_p), B, xplor::as_span(d_n));
  };
  const double device_ms = median_ms(reps, device_run);
  std::vector<int> host_n;
  std::vector<double> host_ms;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    host_n = xplor::budget::allocate_rollouts(p, B);
    host_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(host_ms.begin(), host_ms.end());
  const thrust::host_vector<int> got = d_n;
  const bool equal = std::equal(host_n.begin(), host_n.end(), got.begin());
  std::printf(
      "[table] knapsack 1M prompts, B = 8M: GPU %.2f ms, host solver (1 core) %.1f ms, %.1fx, counts %s\n",
      device_ms, host_ms[host_ms.size() / 2], host_ms[host_ms.size() / 2] / device_ms,
      equal ? "equal" : "DIFFER");
}

/// The forest's cycle of backup + local selection: all B trees per call on the GPU vs B
/// single-tree calls on the host, each over the full cycle of steps.
void trees_bench(int reps) {
  namespace xs = xplor::search;
  using xplor::bench::forest;
  using dvec_i = thrust::device_vector<std::int32_t>;
  xs::tree_batch<xplor::device_t> batch(xplor::device, forest::B, forest::capacity);
  forest f([&](const auto& parent, const auto& count, const auto& h, const auto& term) {
    const dvec_i d_parent(parent.begin(), parent.end()), d_count(count.begin(), count.end());
    const thrust::device_vector<double> d_h(h.begin(), h.end());
    const thrust::device_vector<std::uint8_t> d_term(term.begin(), term.end());
    xs::add_children(xplor::device, batch, xplor::as_span(d_parent), xplor::as_span(d_count),
                     xplor::as_span(d_h), xplor::as_span(d_term), forest::width);
  });
  std::vector<dvec_i> d_leaf, d_cur;
  for (std::size_t s = 0; s < forest::steps; ++s) {
    d_leaf.emplace_back(f.leaf[s].begin(), f.leaf[s].end());
    d_cur.emplace_back(f.cur[s].begin(), f.cur[s].end());
  }
  const thrust::device_vector<double> d_plus(f.v_plus.begin(), f.v_plus.end()),
      d_minus(f.v_minus.begin(), f.v_minus.end());
  std::vector<dvec_i> d_next(forest::steps, dvec_i(forest::B));
  const auto device_cycle = [&] {
    for (std::size_t s = 0; s < forest::steps; ++s) {
      xs::backup(xplor::device, batch, xplor::as_span(d_leaf[s]), xplor::as_span(s % 2 ? d_minus : d_plus),
                 forest::width);
      xs::select_children(xplor::device, batch, xplor::as_span(d_cur[s]), forest::width, forest::lambda_uct,
                          xplor::as_span(d_next[s]));
    }
  };
  // The host trees take the warm-up cycle too, so both sides run the same calls in the same order.
  std::vector<std::vector<std::int32_t>> host_next(forest::steps, std::vector<std::int32_t>(forest::B));
  const auto host_cycle = [&] {
    for (std::size_t s = 0; s < forest::steps; ++s) f.single_step(s, host_next[s]);
  };
  const double device_ms = median_ms(reps, device_cycle);
  std::vector<double> host_ms;
  for (int r = 0; r <= reps; ++r) {  // reps + 1 cycles: the device's warm-up and its reps
    const auto t0 = std::chrono::steady_clock::now();
    host_cycle();
    host_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  bool equal = true;
  for (std::size_t s = 0; s < forest::steps; ++s) {
    const thrust::host_vector<std::int32_t> got = d_next[s];
    equal = equal && std::equal(host_next[s].begin(), host_next[s].end(), got.begin());
  }
  std::sort(host_ms.begin(), host_ms.end());
  const double trees = double(forest::B) * double(forest::steps);
  const double host = host_ms[host_ms.size() / 2];
  std::printf(
      "[table] trees B = 1024 x 4096 nodes, backup + select: GPU %.3g M trees/s, host single-tree calls (1 "
      "core) "
      "%.3g M trees/s, %.1fx, selections %s\n",
      trees / (device_ms * 1e3), trees / (host * 1e3), host / device_ms, equal ? "equal" : "DIFFER");
}
}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  try {
    cudaDeviceProp prop{};
    check_cuda(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    std::printf("[table] device %s, %d SMs, %.0f GB\n", prop.name, prop.multiProcessorCount,
                double(prop.totalGlobalMem) / 1e9);
    sampling_bench(quick ? 3 : 9);
    training_bench(quick ? 3 : 5, quick);
    allocation_bench(quick ? 3 : 7);
    trees_bench(quick ? 3 : 7);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_bench failed: %s\n", e.what());
    return 1;
  }
  return 0;
}
