// Sparse autoencoder training (interp/sae.hpp): rows/s (items_per_second = rows per step) of
// xplor's train_step against the same step written as plain dense Eigen products (the
// "baseline": full encode, dense decode z W_dec with the zeros included, dense backward
// z^T g, g W_dec^T, x^T dpre, the same Adam and decoder projection/renormalisation), in the
// same run. d_in 128, n_latents 1024, batch 1024 rows; TopK with k = 16 (no dead latent, so no
// AuxK in either) and ReLU + L1. xplor's TopK decode and backward touch only the k active
// latents of a row; its ReLU step is dense, like the baseline.
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <vector>
#include <xplor/core/random.hpp>
#include <xplor/interp/sae.hpp>
#include <xplor/model/optim.hpp>

namespace {

namespace xi = xplor::interp;
using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr std::int64_t d_in = 128, n_latents = 1024, batch_rows = 1024;
constexpr int k_active = 16;

const std::vector<float>& activations() {
  static const std::vector<float> x = [] {
    xplor::philox_stream gen(1, 0);
    std::vector<float> v(static_cast<std::size_t>(batch_rows * d_in));
    for (float& e : v) e = gen.normal() + 0.1f;
    return v;
  }();
  return x;
}

xi::sae_config config(xi::sae_kind kind) {
  xi::sae_config c;
  c.d_in = d_in;
  c.n_latents = n_latents;
  c.kind = kind;
  c.k = k_active;
  c.dead_tokens = (std::int64_t{1} << 24) - 1;  // no latent dies within the benchmark
  return c;
}

/// The step as dense Eigen products, on the same parameters as `sae` (copied).
class dense_step {
 public:
  explicit dense_step(const xi::sparse_autoencoder& sae)
      : cfg_(sae.config()),
        W_enc_(sae.W_enc()),
        b_enc_(sae.b_enc()),
        W_dec_(sae.W_dec()),
        b_dec_(sae.b_dec()),
        scale_(sae.activation_scale()),
        mse_scale_(sae.mse_scale()),
        opt_(2 * d_in * n_latents + n_latents + d_in, {cfg_.lr, cfg_.beta1, cfg_.beta2, cfg_.eps, 0.0f}),
        params_(static_cast<std::size_t>(2 * d_in * n_latents + n_latents + d_in)),
        grads_(params_.size()) {}

  float step(const std::vector<float>& x_data) {
    const Eigen::Map<const row_matrix> x_raw(x_data.data(), batch_rows, d_in);
    const row_matrix x = scale_ * x_raw;
    const bool topk = cfg_.kind != xi::sae_kind::relu_l1;
    const row_matrix xc =
        (topk || cfg_.apply_b_dec_to_input) ? row_matrix(x.rowwise() - b_dec_.transpose()) : x;
    row_matrix pre = xc * W_enc_;
    pre.rowwise() += b_enc_.transpose();
    row_matrix z = row_matrix::Zero(batch_rows, n_latents);
    if (topk) {
      std::vector<std::int32_t> top(k_active);
      for (std::int64_t r = 0; r < batch_rows; ++r) {
        xi::sae_detail::select_top(pre.data() + r * n_latents, n_latents, k_active, top.data());
        for (const std::int32_t f : top) z(r, f) = std::max(pre(r, f), 0.0f);
      }
    } else {
      z = pre.cwiseMax(0.0f);
    }
    row_matrix x_hat = z * W_dec_;
    x_hat.rowwise() += b_dec_.transpose();
    const row_matrix diff = x_hat - x;
    float loss = 0;
    row_matrix g;
    Eigen::VectorXf l1_grad = Eigen::VectorXf::Zero(n_latents);
    if (topk) {
      loss = mse_scale_ * diff.squaredNorm() / float(batch_rows * d_in);
      g = (2.0f * mse_scale_ / float(batch_rows * d_in)) * diff;
    } else {
      loss = diff.squaredNorm() / float(batch_rows) + cfg_.l1_coefficient * z.sum() / float(batch_rows);
      g = (2.0f / float(batch_rows)) * diff;
      l1_grad.setConstant(cfg_.l1_coefficient / float(batch_rows));
    }
    row_matrix dpre = g * W_dec_.transpose();
    dpre.rowwise() += l1_grad.transpose();
    dpre = dpre.cwiseProduct((z.array() > 0.0f).cast<float>().matrix());
    const row_matrix gW_dec = z.transpose() * g;
    const row_matrix gW_enc = xc.transpose() * dpre;
    const Eigen::VectorXf gb_enc = dpre.colwise().sum().transpose();
    Eigen::VectorXf gb_dec = g.colwise().sum().transpose();
    if (topk || cfg_.apply_b_dec_to_input) gb_dec -= W_enc_ * gb_enc;
    // Pack, project, Adam, renormalise (as train_step).
    const auto pack = [&](float* out, const row_matrix& we, const Eigen::VectorXf& be, const row_matrix& wd,
                          const Eigen::VectorXf& bd) {
      Eigen::Map<row_matrix>(out, n_latents, d_in) = we.transpose();
      Eigen::Map<Eigen::VectorXf>(out + d_in * n_latents, n_latents) = be;
      Eigen::Map<row_matrix>(out + d_in * n_latents + n_latents, n_latents, d_in) = wd;
      Eigen::Map<Eigen::VectorXf>(out + 2 * d_in * n_latents + n_latents, d_in) = bd;
    };
    pack(params_.data(), W_enc_, b_enc_, W_dec_, b_dec_);
    pack(grads_.data(), gW_enc, gb_enc, gW_dec, gb_dec);
    Eigen::Map<row_matrix> gd(grads_.data() + d_in * n_latents + n_latents, n_latents, d_in);
    if (cfg_.normalize_decoder) {
      const Eigen::VectorXf par = gd.cwiseProduct(W_dec_).rowwise().sum();
      gd -= par.asDiagonal() * W_dec_;
    }
    opt_.step(params_, grads_, cfg_.lr);
    W_enc_ = Eigen::Map<row_matrix>(params_.data(), n_latents, d_in).transpose();
    b_enc_ = Eigen::Map<Eigen::VectorXf>(params_.data() + d_in * n_latents, n_latents);
    W_dec_ = Eigen::Map<row_matrix>(params_.data() + d_in * n_latents + n_latents, n_latents, d_in);
    b_dec_ = Eigen::Map<Eigen::VectorXf>(params_.data() + 2 * d_in * n_latents + n_latents, d_in);
    if (cfg_.normalize_decoder) W_dec_.rowwise().normalize();
    return loss;
  }

 private:
  xi::sae_config cfg_;
  row_matrix W_enc_;
  Eigen::VectorXf b_enc_;
  row_matrix W_dec_;
  Eigen::VectorXf b_dec_;
  float scale_, mse_scale_;
  xplor::model::adamw opt_;
  std::vector<float> params_, grads_;
};

xi::sparse_autoencoder make_sae(xi::sae_kind kind) {
  xi::sparse_autoencoder sae(config(kind));
  sae.initialize(xplor::as_view2d(activations(), batch_rows, d_in));
  return sae;
}

/// Arg 0: the dense Eigen step (label "baseline"); Arg 1: xplor's train_step.
void sae_step(benchmark::State& state, xi::sae_kind kind) {
  const auto x = xplor::as_view2d(activations(), batch_rows, d_in);
  if (state.range(0) == 0) {
    dense_step step(make_sae(kind));
    for (auto _ : state) benchmark::DoNotOptimize(step.step(activations()));
    state.SetLabel("baseline");
  } else {
    xi::sparse_autoencoder sae = make_sae(kind);
    for (auto _ : state) benchmark::DoNotOptimize(sae.train_step(x).loss);
    state.SetLabel("xplor");
  }
  state.SetItemsProcessed(state.iterations() * batch_rows);
}

}  // namespace

BENCHMARK_CAPTURE(sae_step, topk, xi::sae_kind::topk)
    ->Name("sae_train_topk_k16_d128_n1024_B1024/impl")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(sae_step, relu, xi::sae_kind::relu_l1)
    ->Name("sae_train_relu_l1_d128_n1024_B1024/impl")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond);
