// The CPU reference transformer behind a plain interface (std::vector in and out), compiled by the
// host compiler with Eigen in model_reference.cpp, so the nvcc-compiled GPU model tests never
// include Eigen.
#pragma once

#include <cstdint>
#include <vector>

#include "xplor/model/config.hpp"
#include "xplor/model/optim.hpp"

namespace xplor_test {

struct cpu_pass {
  std::vector<float> params, logits, grads;
  float loss = 0.0f;
};

/// CPU model from `seed`: one forward over tokens [B*T] with targets and mask, then backward.
cpu_pass cpu_forward_backward(const xplor::model::transformer_config& c, std::uint64_t seed,
                              const std::vector<std::int32_t>& tokens, std::int64_t B, std::int64_t T,
                              const std::vector<std::int32_t>& targets, const std::vector<float>& mask);

/// One CPU AdamW step from zero moments: the parameters after it.
std::vector<float> cpu_adamw_step(const xplor::model::transformer_config& c, std::vector<float> params,
                                  const std::vector<float>& grads, float lr,
                                  const xplor::model::adamw_options& o);

/// `steps` training steps (zero_grad, forward, backward, clip 1.0, AdamW lr): the losses.
std::vector<float> cpu_train(const xplor::model::transformer_config& c, std::uint64_t seed,
                             const std::vector<std::int32_t>& tokens, std::int64_t B, std::int64_t T,
                             const std::vector<std::int32_t>& targets, int steps, float lr);

/// The decode scenario of cuda/tests/model_gpu_test.cu on the CPU kv_decoder: the logits returned
/// by each call, flattened.
std::vector<std::vector<float>> cpu_decode_scenario(const xplor::model::transformer_config& c,
                                                    std::uint64_t seed,
                                                    const std::vector<std::int32_t>& prompt);

}  // namespace xplor_test
