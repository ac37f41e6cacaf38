// The GPU transformer (include/xplor/model/cuda/transformer.cuh) against the CPU reference model
// (model_reference.cpp): the same initial parameters bit for bit; logits, loss and every
// gradient tensor within fp32 tolerance (max |gpu - cpu| <= 1e-4 max |cpu| per tensor, loss 1e-5
// relative); one AdamW step within 1e-6 absolute; three training steps' losses within 1e-4
// relative; KV-cache decode logits (begin, fork, step, logits) within 1e-4 of the largest logit.
// Four configurations cover every option both ways (norm, positions, MLP, tied unembedding).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "model_reference.hpp"
#include "xplor/model/cuda/transformer.cuh"

namespace {
using namespace xplor::model;

/// max |a - b| / max |b| (absolute when b is all zeros).
double rel_err(const float* a, const float* b, std::int64_t n) {
  double diff = 0.0, scale = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return scale > 0.0 ? diff / scale : diff;
}

std::vector<transformer_config> configs() {
  std::vector<transformer_config> out;
  for (int k = 0; k < 4; ++k) {
    transformer_config c;
    c.vocab_size = 61;
    c.d_model = 32;
    c.n_layers = 2;
    c.n_heads = 4;
    c.d_ff = 48;
    c.max_seq_len = 16;
    c.norm = (k & 1) ? norm_kind::layernorm : norm_kind::rmsnorm;
    c.positions = (k == 1 || k == 2) ? position_kind::learned : position_kind::rope;
    c.mlp = (k & 2) ? mlp_kind::gelu : mlp_kind::swiglu;
    c.tie_embeddings = (k == 0 || k == 2);
    out.push_back(c);
  }
  return out;
}

std::string describe(const transformer_config& c) {
  return std::string(to_string(c.norm)) + "/" + std::string(to_string(c.positions)) + "/" +
         std::string(to_string(c.mlp)) + (c.tie_embeddings ? "/tied" : "/untied");
}
}  // namespace

TEST_CASE("gpu transformer: forward, every gradient, AdamW and training equal the CPU model",
          "[gpu][model]") {
  const std::int64_t B = 3, T = 12, N = B * T;
  std::mt19937 rng(5);
  for (const auto& c : configs()) {
    std::vector<std::int32_t> tokens(N), targets(N);
    std::vector<float> mask(N);
    for (std::int64_t n = 0; n < N; ++n) {
      tokens[n] = static_cast<std::int32_t>(rng() % c.vocab_size);
      targets[n] = n % 7 == 3 ? -1 : static_cast<std::int32_t>(rng() % c.vocab_size);
      mask[n] = static_cast<float>(rng() % 5) * 0.5f;
    }
    const auto cpu = xplor_test::cpu_forward_backward(c, 42, tokens, B, T, targets, mask);
    gpu::transformer g(c, 42);
    INFO("config " << describe(c));
    REQUIRE(g.get_params() == cpu.params);  // the same host initialisation
    g.zero_grad();
    const float loss = g.forward(tokens, B, T, targets, mask);
    g.backward();
    const auto logits = g.get_logits();
    const auto grads = g.get_grads();
    const double loss_err = std::abs(double(loss) - cpu.loss) / std::max(1e-6, std::abs(double(cpu.loss)));
    const double logits_err =
        rel_err(logits.data(), cpu.logits.data(), static_cast<std::int64_t>(logits.size()));
    double worst_grad = 0.0;
    std::string worst_name;
    for (const auto& t : g.layout().tensors) {
      const double e = rel_err(grads.data() + t.offset, cpu.grads.data() + t.offset, t.size);
      INFO("gradient " << t.name << " rel err " << e);
      CHECK(e <= 1e-4);
      if (e >= worst_grad) worst_grad = e, worst_name = t.name;
    }
    CHECK(loss_err <= 1e-5);
    CHECK(logits_err <= 1e-4);

    // One AdamW step from the CPU's gradients on both backends.
    adamw_options o;
    o.weight_decay = 0.1f;
    const auto cpu_after = xplor_test::cpu_adamw_step(c, cpu.params, cpu.grads, 1e-2f, o);
    g.set_params(cpu.params);
    xplor::gpu::check_cuda(
        cudaMemcpy(g.grads(), cpu.grads.data(), sizeof(float) * cpu.grads.size(), cudaMemcpyHostToDevice),
        "cudaMemcpy(grads)");
    gpu::adamw opt(g.layout(), o);
    opt.step(g.params(), g.grads(), 1e-2f);
    const auto gpu_after = g.get_params();
    double adam_diff = 0.0;
    for (std::size_t i = 0; i < gpu_after.size(); ++i)
      adam_diff = std::max(adam_diff, std::abs(double(gpu_after[i]) - cpu_after[i]));
    CHECK(adam_diff <= 1e-6);

    // Three training steps (clip 1.0, AdamW 1e-2) from the same start.
    const auto cpu_losses = xplor_test::cpu_train(c, 42, tokens, B, T, targets, 3, 1e-2f);
    gpu::transformer g2(c, 42);
    gpu::adamw opt2(g2.layout());
    double train_err = 0.0;
    for (int s = 0; s < 3; ++s) {
      g2.zero_grad();
      const float l = g2.forward(tokens, B, T, targets);
      g2.backward();
      gpu::clip_grad_norm(g2.grads(), g2.num_params(), 1.0f);
      opt2.step(g2.params(), g2.grads(), 1e-2f);
      train_err = std::max(train_err, std::abs(double(l) - cpu_losses[s]) / std::abs(double(cpu_losses[s])));
    }
    CHECK(train_err <= 1e-4);
    std::printf(
        "[table] model %s: loss %.1e, logits %.1e, worst gradient %.1e (%s), adamw %.1e, 3-step losses "
        "%.1e\n",
        describe(c).c_str(), loss_err, logits_err, worst_grad, worst_name.c_str(), adam_diff, train_err);
  }
}

TEST_CASE("gpu transformer: KV-cache decode equals the CPU kv_decoder", "[gpu][model][decode]") {
  for (const auto& c : configs()) {
    const std::vector<std::int32_t> prompt{5, 9, 2, 33, 7};
    const auto cpu = xplor_test::cpu_decode_scenario(c, 7, prompt);
    gpu::transformer m(c, 7);
    gpu::kv_decoder d(m);
    std::vector<std::vector<float>> out;
    auto keep = [&](xplor::device_view2d<const float> v) {
      std::vector<float> h(static_cast<std::size_t>(v.rows() * v.cols()));
      xplor::gpu::check_cuda(cudaMemcpy(h.data(), v.data(), sizeof(float) * h.size(), cudaMemcpyDeviceToHost),
                             "cudaMemcpy(decode logits)");
      out.push_back(std::move(h));
    };
    using sid = gpu::kv_decoder::state_id;
    const sid s = d.begin(prompt);
    const sid one[1] = {s};
    keep(d.logits(one));
    const auto f = d.fork(s, 3);
    const std::int32_t t1[3] = {1, 2, 3};
    keep(d.step(f, t1));
    const sid two[2] = {f[0], f[2]};
    const std::int32_t t2[2] = {4, 5};
    keep(d.step(two, t2));
    const sid mid[1] = {f[1]};
    keep(d.logits(mid));
    const std::int32_t t3[3] = {6, 7, 8};
    keep(d.step(f, t3));
    REQUIRE(out.size() == cpu.size());
    double worst = 0.0;
    for (std::size_t k = 0; k < out.size(); ++k) {
      REQUIRE(out[k].size() == cpu[k].size());
      const double e = rel_err(out[k].data(), cpu[k].data(), static_cast<std::int64_t>(out[k].size()));
      INFO("config " << describe(c) << " call " << k << " rel err " << e);
      CHECK(e <= 1e-4);
      worst = std::max(worst, e);
    }
    CHECK(d.length(f[0]) == 8);
    CHECK(d.length(f[1]) == 7);
    CHECK_THROWS_WITH(d.step(std::span<const sid>(two), std::span<const std::int32_t>(t1, 1)),
                      Catch::Contains("tokens has 1 elements for 2 states"));
    std::printf("[table] decode %s: logits %.1e\n", describe(c).c_str(), worst);
  }
}
