// Host-compiled half of the GPU model tests: the CPU transformer (Eigen) behind model_reference.hpp.
#include "model_reference.hpp"

#include "xplor/model/decode.hpp"
#include "xplor/model/optim.hpp"
#include "xplor/model/transformer.hpp"

namespace xplor_test {

using namespace xplor::model;

cpu_pass cpu_forward_backward(const transformer_config& c, std::uint64_t seed,
                              const std::vector<std::int32_t>& tokens, std::int64_t B, std::int64_t T,
                              const std::vector<std::int32_t>& targets, const std::vector<float>& mask) {
  transformer m(c, seed);
  cpu_pass out;
  out.params.assign(m.params().begin(), m.params().end());
  forward_batch fb;
  fb.tokens = tokens;
  fb.batch = B;
  fb.seq_len = T;
  fb.targets = targets;
  fb.loss_mask = mask;
  out.loss = m.forward(fb);
  const auto lg = m.logits();
  out.logits.assign(lg.data(), lg.data() + lg.rows() * lg.cols());
  m.zero_grad();
  m.backward();
  out.grads.assign(m.grads().begin(), m.grads().end());
  return out;
}

std::vector<float> cpu_adamw_step(const transformer_config& c, std::vector<float> params,
                                  const std::vector<float>& grads, float lr, const adamw_options& o) {
  const parameter_layout layout(c);
  adamw opt(layout, o);
  opt.step(params, grads, lr);
  return params;
}

std::vector<float> cpu_train(const transformer_config& c, std::uint64_t seed,
                             const std::vector<std::int32_t>& tokens, std::int64_t B, std::int64_t T,
                             const std::vector<std::int32_t>& targets, int steps, float lr) {
  transformer m(c, seed);
  adamw opt(m.layout());
  std::vector<float> losses;
  forward_batch fb;
  fb.tokens = tokens;
  fb.batch = B;
  fb.seq_len = T;
  fb.targets = targets;
  for (int s = 0; s < steps; ++s) {
    m.zero_grad();
    losses.push_back(m.forward(fb));
    m.backward();
    clip_grad_norm(m.grads(), 1.0f);
    opt.step(m.params(), m.grads(), lr);
  }
  return losses;
}

std::vector<std::vector<float>> cpu_decode_scenario(const transformer_config& c, std::uint64_t seed,
                                                    const std::vector<std::int32_t>& prompt) {
  transformer m(c, seed);
  kv_decoder d(m);
  std::vector<std::vector<float>> out;
  auto keep = [&](xplor::view2d<const float> v) {
    out.emplace_back(v.data(), v.data() + v.rows() * v.cols());
  };
  const auto s = d.begin(prompt);
  const kv_decoder::state_id one[1] = {s};
  keep(d.logits(one));
  const auto f = d.fork(s, 3);
  const std::int32_t t1[3] = {1, 2, 3};
  keep(d.step(f, t1));
  const kv_decoder::state_id two[2] = {f[0], f[2]};
  const std::int32_t t2[2] = {4, 5};
  keep(d.step(two, t2));
  const kv_decoder::state_id mid[1] = {f[1]};
  keep(d.logits(mid));
  const std::int32_t t3[3] = {6, 7, 8};
  keep(d.step(f, t3));
  return out;
}

}  // namespace xplor_test
