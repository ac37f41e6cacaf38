// libtorch at xplor's boundary: adapt_torch.hpp's views (values, strides, every refusal), xplor's
// policy loss on torch tensors in any layout, and examples/libtorch_grpo's torch::nn GPT as a
// decode policy — the conformance check, bad input, and parity with the reference transformer
// whose weights it loads (forward logits, gradients, decoding, sampled tokens).
#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <vector>
#include <xplor/core/adapt_torch.hpp>
#include <xplor/core/decode_check.hpp>
#include <xplor/model/decode.hpp>
#include <xplor/model/transformer.hpp>
#include <xplor/rl/loss.hpp>
#include <xplor/sample/rollout.hpp>

#include "libtorch_grpo/gpt.hpp"

namespace {

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const xplor::error& e) {
    return e.what();
  }
  return "no error";
}

tgpt::gpt_config small_gpt() {
  tgpt::gpt_config c;
  c.vocab_size = 23;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 48;
  c.max_seq_len = 24;
  return c;
}

}  // namespace

TEST_CASE("as_view2d and as_view3d read torch tensors through their strides", "[torch][adapt]") {
  const auto t = torch::arange(24, torch::kFloat).view({4, 6});
  for (const torch::Tensor& u : {t, t.t(), t.slice(1, 1, 5, 2), t.narrow(0, 1, 2)}) {
    const auto v = xplor::as_view2d<const float>(u);
    REQUIRE(v.rows() == u.size(0));
    REQUIRE(v.cols() == u.size(1));
    for (std::int64_t i = 0; i < v.rows(); ++i)
      for (std::int64_t j = 0; j < v.cols(); ++j) CHECK(v(i, j) == u[i][j].item<float>());
  }
  const auto c = torch::arange(60, torch::kLong).view({3, 4, 5}).permute({2, 0, 1});
  const auto v3 = xplor::as_view3d<const std::int64_t>(c);
  for (std::int64_t i = 0; i < 5; ++i)
    for (std::int64_t j = 0; j < 3; ++j)
      for (std::int64_t k = 0; k < 4; ++k) CHECK(v3(i, j, k) == c[i][j][k].item<std::int64_t>());
  // Writes land in the tensor; int32 and uint8 map too.
  auto w = torch::zeros({3, 2}, torch::kInt).t();
  xplor::as_view2d<std::int32_t>(w)(1, 2) = 7;
  CHECK(w[1][2].item<int>() == 7);
  auto s = torch::zeros({5}, torch::kByte);
  xplor::as_span<std::uint8_t>(s)[4] = 9;
  CHECK(s[4].item<int>() == 9);
  CHECK(xplor::as_span<const float>(torch::zeros({0})).empty());
}

TEST_CASE("torch views refuse what they cannot express, naming it", "[torch][adapt]") {
  using Catch::Matchers::Contains;
  CHECK_THAT(error_of([] { (void)xplor::as_span<const float>(torch::zeros({4}, torch::kDouble)); }),
             Contains("as_span(torch): the tensor's dtype is Double, the view's is Float"));
  CHECK_THAT(error_of([] {
               (void)xplor::as_view2d<const std::int32_t>(torch::zeros({2, 2}, torch::kLong));
             }),
             Contains("dtype is Long, the view's is Int"));
  CHECK_THAT(error_of([] {
               (void)xplor::as_span<const float>(torch::zeros({2, 3}));
             }),
             Contains("the tensor has 2 dimensions (sizes [2, 3]), the view needs 1"));
  CHECK_THAT(error_of([] { (void)xplor::as_view2d<const float>(torch::zeros({6})); }),
             Contains("the tensor has 1 dimensions"));
  CHECK_THAT(error_of([] { (void)xplor::as_span<const float>(torch::zeros({8}).slice(0, 0, 8, 2)); }),
             Contains("the tensor's stride is 2; a span needs stride 1"));
  CHECK_THAT(error_of([] {
               (void)xplor::as_view2d<float>(torch::zeros({1, 5}).expand({3, 5}));
             }),
             Contains("maps two elements to one address"));
  CHECK_THAT(error_of([] {
               (void)xplor::as_view3d<float>(torch::zeros({1, 2, 2}).expand({4, 2, 2}));
             }),
             Contains("maps two elements to one address"));
  // An expanded tensor is fine to read.
  CHECK(xplor::as_view2d<const float>(torch::ones({1, 5}).expand({3, 5}))(2, 4) == 1.0f);
  CHECK_THAT(error_of([] { (void)xplor::as_span<float>(torch::zeros({3}).requires_grad_()); }),
             Contains("the tensor requires grad: writing through a view would bypass autograd"));
  CHECK(xplor::as_span<const float>(torch::ones({3}).requires_grad_())[2] == 1.0f);
  CHECK_THAT(error_of([] { (void)xplor::as_view2d<const float>(torch::eye(3).to_sparse()); }),
             Contains("layout is Sparse; a view needs a strided (dense) tensor"));
  CHECK_THAT(error_of([] { (void)xplor::as_span<const float>(torch::Tensor()); }),
             Contains("the tensor is undefined"));
  CHECK_THAT(error_of([] { (void)xplor::as_device_span<const float>(torch::zeros({3})); }),
             Contains("as_device_span(torch): the tensor is on cpu; a device view needs a CUDA tensor"));
  CHECK_THAT(error_of([] {
               (void)xplor::as_device_view2d<const float>(torch::zeros({3, 3}));
             }),
             Contains("a device view needs a CUDA tensor"));
}

TEST_CASE("policy_loss on torch tensors: the same loss and gradient in any layout", "[torch][adapt]") {
  torch::manual_seed(3);
  const std::int64_t B = 5, L = 7;
  const auto logp = -torch::rand({B, L}) * 3, old = logp + 0.1 * torch::randn({B, L});
  const auto mask = (torch::rand({B, L}) > 0.3).to(torch::kFloat);
  const auto adv = torch::randn({B});
  xplor::rl::loss_options lo;
  lo.type = xplor::rl::loss_type::dapo;
  lo.epsilon_high = 0.28f;  // DAPO's clip-higher
  auto loss_of = [&](const torch::Tensor& lp, const torch::Tensor& ol, const torch::Tensor& m,
                     torch::Tensor& d) {
    xplor::rl::padded_policy_batch b;
    b.logp = xplor::as_view2d<const float>(lp);
    b.old_logp = xplor::as_view2d<const float>(ol);
    b.mask = xplor::as_view2d<const float>(m);
    b.sequence_advantages = xplor::as_span<const float>(adv);
    return xplor::rl::policy_loss(xplor::cpu, b, xplor::as_view2d<float>(d), lo).loss;
  };
  auto d_row = torch::zeros({B, L});
  const double row_major = loss_of(logp, old, mask, d_row);
  // Column-major copies of every input and of the output.
  auto d_col = torch::zeros({L, B}).t();
  const double col_major =
      loss_of(logp.t().contiguous().t(), old.t().contiguous().t(), mask.t().contiguous().t(), d_col);
  CHECK(col_major == row_major);
  CHECK(torch::equal(d_row, d_col));
  // Against the DAPO formula written in torch: -sum(min(r A, clip(r) A) mask) / sum(mask).
  auto lp = logp.clone().requires_grad_();
  const auto ratio = torch::exp(lp - old);
  const auto a = adv.unsqueeze(1);
  const auto obj = torch::min(ratio * a, torch::clamp(ratio, 1 - 0.2, 1 + 0.28) * a);
  const auto ref = -(obj * mask).sum() / mask.sum();
  ref.backward();
  CHECK(row_major == Approx(ref.item<double>()).epsilon(1e-5));
  CHECK(torch::allclose(d_row, lp.grad(), 1e-5, 1e-6));
}

TEST_CASE("the torch GPT decoder passes check_decode_policy", "[torch][decode]") {
  torch::manual_seed(1);
  tgpt::GPT gpt(small_gpt());
  tgpt::gpt_decoder dec(gpt);
  const std::vector<std::int32_t> prompt{3, 1, 4, 1, 5, 9}, continuation{2, 6, 5, 3};
  const auto report = xplor::check_decode_policy(dec, prompt, continuation, 1e-5);
  CHECK(report.states_released > 0);
  CHECK(dec.live_states() == 0);
}

TEST_CASE("the torch GPT decoder names bad input", "[torch][decode]") {
  using Catch::Matchers::Contains;
  tgpt::GPT gpt(small_gpt());
  tgpt::gpt_decoder dec(gpt);
  const std::vector<std::int32_t> ok{1, 2}, bad{1, 23}, empty;
  CHECK_THAT(error_of([&] { (void)dec.begin(empty); }), Contains("the prompt is empty"));
  CHECK_THAT(error_of([&] { (void)dec.begin(bad); }), Contains("token 23 is outside [0, 23)"));
  CHECK_THAT(error_of([&] { (void)dec.begin(std::vector<std::int32_t>(25, 1)); }),
             Contains("the prompt has 25 tokens, max_seq_len is 24"));
  const auto s = dec.begin(ok);
  const std::int32_t ids[1] = {s}, tok[1] = {40}, two[2] = {1, 1};
  CHECK_THAT(error_of([&] { (void)dec.step(ids, tok); }), Contains("token 40 is outside"));
  CHECK_THAT(error_of([&] { (void)dec.step(ids, two); }), Contains("1 states and 2 tokens"));
  CHECK_THAT(error_of([&] { (void)dec.fork(s, -1); }), Contains("n = -1 is negative"));
  dec.release(ids);
  CHECK_THAT(error_of([&] { (void)dec.logits(ids); }), Contains("state 0 is not live"));
  const std::int32_t other[1] = {7};
  CHECK_THAT(error_of([&] { dec.release(other); }), Contains("state 7 is not live"));
  // Full state.
  const auto f = dec.begin(std::vector<std::int32_t>(24, 1));
  const std::int32_t fid[1] = {f}, one[1] = {1};
  CHECK_THAT(error_of([&] { (void)dec.step(fid, one); }), Contains("is full (max_seq_len 24)"));
  auto wrong = small_gpt();
  wrong.n_heads = 3;
  CHECK_THAT(error_of([&] { tgpt::GPT g(wrong); }), Contains("n_heads = 3 must divide d_model = 16"));
}

TEST_CASE("the torch GPT with the reference transformer's weights computes the same function",
          "[torch][parity]") {
  const tgpt::gpt_config gc = small_gpt();
  xplor::model::transformer ref(gc.xplor_config(), 11);
  tgpt::GPT gpt(gc);
  gpt->load_xplor_weights(ref.layout(), ref.params());

  // Forward logits and the loss's gradient for every parameter.
  const std::int64_t B = 3, T = 9;
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(B * T)), targets(tokens.size());
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = static_cast<std::int32_t>((i * 7 + 3) % 23);
    targets[i] = i % 4 == 0 ? xplor::model::ignore_target : static_cast<std::int32_t>((i * 5 + 1) % 23);
  }
  ref.zero_grad();
  const float ref_loss = ref.forward({tokens, B, T, targets, {}, {}});
  ref.backward();
  const auto ref_logits = ref.logits();
  const auto tok = torch::tensor(std::vector<std::int64_t>(tokens.begin(), tokens.end())).view({B, T});
  const auto tgt = torch::tensor(std::vector<std::int64_t>(targets.begin(), targets.end())).view({B * T});
  const auto logits = gpt->forward(tok);
  const auto loss = torch::nn::functional::cross_entropy(
      logits.view({B * T, -1}), tgt, torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-1));
  loss.backward();
  const auto lv = xplor::as_view2d<const float>(logits.detach().view({B * T, -1}));
  double worst = 0;
  for (std::int64_t r = 0; r < B * T; ++r)
    for (std::int64_t v = 0; v < gc.vocab_size; ++v)
      worst = std::max(worst, double(std::abs(lv(r, v) - ref_logits(r, v))));
  CHECK(worst < 1e-5);
  CHECK(loss.item<float>() == Approx(ref_loss).epsilon(1e-5));
  const auto named = gpt->named_parameters();
  for (const auto& slot : ref.layout().tensors) {
    INFO(slot.name);
    const auto g = named[slot.name].grad().contiguous();
    const auto gs = xplor::as_span<const float>(g.view({-1}));
    double gap = 0, scale = 0;
    for (std::int64_t i = 0; i < slot.size; ++i) {
      gap = std::max(gap, double(std::abs(gs[static_cast<std::size_t>(i)] -
                                          ref.grads()[static_cast<std::size_t>(slot.offset + i)])));
      scale = std::max(scale, double(std::abs(ref.grads()[static_cast<std::size_t>(slot.offset + i)])));
    }
    CHECK(gap <= 1e-4 * std::max(scale, 1e-3));
  }

  // Sampling through both decoders with the same seed draws the same tokens.
  xplor::model::kv_decoder kv(ref);
  tgpt::gpt_decoder dec(gpt);
  const std::vector<std::vector<std::int32_t>> prompts{{1, 2, 3}, {4, 5}, {6, 7, 8, 9}};
  const std::vector<int> counts{3, 1, 2};
  xplor::sample::sampling_params p;
  p.max_completion_length = 8;
  const auto a = xplor::sample::generate(kv, prompts, counts, p, 99);
  const auto b = xplor::sample::generate(dec, prompts, counts, p, 99);
  CHECK(a.tokens == b.tokens);
  CHECK(a.offsets == b.offsets);
  REQUIRE(a.logprobs.size() == b.logprobs.size());
  for (std::size_t i = 0; i < a.logprobs.size(); ++i)
    CHECK(a.logprobs[i] == Approx(b.logprobs[i]).margin(1e-5));

  // Loading refuses a model of another shape.
  auto other = gc;
  other.d_ff = 32;
  tgpt::GPT small(other);
  CHECK_THAT(error_of([&] { small->load_xplor_weights(ref.layout(), ref.params()); }),
             Catch::Matchers::Contains("layers.0.mlp.up.weight has shape [32, 16]"));
}
