// Sparse autoencoders on residual-stream activations, CPU, fp32, one class for two families:
// ReLU + L1 as SAELens' StandardTrainingSAE (sae_lens/saes/standard_sae.py, sae.py), and TopK
// with the AuxK loss of Gao et al. 2024, "Scaling and evaluating sparse autoencoders" (arXiv
// 2406.04093; openai/sparse_autoencoder train.py), plus BatchTopK (Bussmann et al. 2024). Hand-
// written backward; TopK's decode and backward touch only the active latents. docs/interp.md.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <utility>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/random.hpp"
#include "xplor/core/view.hpp"
#include "xplor/model/dense.hpp"
#include "xplor/model/optim.hpp"

namespace xplor::interp {

/// relu_l1: f = ReLU((x - b_dec) W_enc + b_enc), loss MSE + lambda L1 (SAELens "standard").
/// topk: z = ReLU(TopK_k(pre)) per row, loss NMSE + aux_coeff AuxK (Gao et al. 2024).
/// batch_topk: the k * B largest ReLU(pre) of a training batch (Bussmann et al. 2024, SAELens
/// batchtopk_sae.py); encode() at inference keeps the top k per row (see encode()).
enum class sae_kind { relu_l1, topk, batch_topk };

/// Input scaling, one scalar s estimated once by initialize() and stored with the SAE: encode
/// multiplies by s, decode divides by s, losses are computed on s x.
enum class sae_normalization {
  family_default,            // none for relu_l1 (SAELens' default), unit_mean_squared_norm for TopK
  none,                      // s = 1
  expected_average_only_in,  // SAELens: s = sqrt(d_in) / mean ||x||, so E||s x|| = sqrt(d_in)
  unit_mean_squared_norm,    // Gao et al. 2024 sec. 2.1: s = 1 / sqrt(mean ||x||^2)
};

inline const char* to_string(sae_kind k) {
  switch (k) {
    case sae_kind::relu_l1:
      return "relu_l1";
    case sae_kind::topk:
      return "topk";
    case sae_kind::batch_topk:
      return "batch_topk";
  }
  return "?";
}
inline const char* to_string(sae_normalization n) {
  switch (n) {
    case sae_normalization::family_default:
      return "family_default";
    case sae_normalization::none:
      return "none";
    case sae_normalization::expected_average_only_in:
      return "expected_average_only_in";
    case sae_normalization::unit_mean_squared_norm:
      return "unit_mean_squared_norm";
  }
  return "?";
}

/// Hyperparameters. A 0 / negative "family default" is replaced by the constructor (see
/// sparse_autoencoder::config(), which returns the resolved values).
struct sae_config {
  std::int64_t d_in = 0;
  std::int64_t n_latents = 0;  // 8 d_in in the tiny-scale defaults
  sae_kind kind = sae_kind::topk;

  // --- TopK family (Gao et al. 2024; openai train.py Config) ---
  int k = 8;                       // active latents per row (8..16 at d_model 64-256)
  int k_aux = 0;                   // AuxK latents per row; 0: min(2 k, n_latents) (the tiny-scale default)
  float aux_coeff = 1.0f / 32.0f;  // alpha, train.py auxk_coef

  // --- ReLU + L1 family (SAELens) ---
  float l1_coefficient = 1e-3f;                 // lambda (LanguageModelSAERunnerConfig)
  bool scale_sparsity_by_decoder_norm = false;  // penalty lambda sum_i f_i ||W_dec,i|| (April update)
  bool apply_b_dec_to_input = true;             // f = ReLU((x - b_dec) W_enc + b_enc)
  bool init_encoder_as_decoder_transpose = false;
  bool decoder_heuristic_init = false;  // W_dec rows rescaled to norm 0.1 (needs normalize_decoder off)

  // --- both ---
  /// Unit-norm decoder rows: the gradient's component along each row is projected out before
  /// Adam and the rows are renormalised after it (Gao et al.; SAELens normalize_sae_decoder).
  bool normalize_decoder = true;
  sae_normalization normalize_activations = sae_normalization::family_default;
  float lr =
      0.0f;  // 0: 3e-4 (SAELens) / 1e-3 sqrt(512 / n_latents) (tiny-scale TopK default, docs/interp.md)
  float beta1 = -1.0f;  // < 0: 0 (the older SAELens adam_beta1) / 0.9 (torch Adam, train.py)
  float beta2 = 0.999f;
  float eps = 0.0f;  // 0: 1e-8 (torch Adam) / 6.25e-10 (train.py)
  /// A latent is dead when it has not fired in the last `dead_tokens` training rows (Gao et al.:
  /// 10M tokens; ~50k at tiny scale). Counters saturate at dead_tokens + 1.
  std::int64_t dead_tokens = 50'000;
  /// "Fired" means z > fire_threshold; < 0: 0 (SAELens) / 1e-3 (train.py's stats, vals > 1e-3).
  float fire_threshold = -1.0f;
  std::uint64_t seed = 0;
};

/// Loss terms of one batch. loss = recon + sparsity.
struct sae_step_stats {
  float loss = 0;         // the objective that is minimised
  float recon = 0;        // relu_l1: sum_d (x - x^)^2 averaged over rows; TopK: mse_scale * mean (x - x^)^2
  float sparsity = 0;     // relu_l1: lambda * mean_rows sum_i f_i (w_i); TopK: aux_coeff * AuxK
  float aux = 0;          // TopK: AuxK before aux_coeff (0 with no dead latent); relu_l1: 0
  float l0 = 0;           // mean number of nonzero latents per row
  float nmse = 0;         // sum ||x - x^||^2 / sum ||x||^2 over the batch (scale-free)
  std::int64_t dead = 0;  // latents not fired in the last dead_tokens rows
};

namespace sae_detail {
using sae_col_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;
using sae_row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Offsets of the four tensors in the flat parameter (and gradient, and Adam moment) buffer:
/// W_enc as a column-major [d_in, n] matrix (so latent f's encoder column is contiguous), b_enc
/// [n], W_dec row-major [n, d_in], b_dec [d_in].
struct sae_layout {
  std::int64_t d = 0, n = 0;
  std::int64_t w_enc() const { return 0; }
  std::int64_t b_enc() const { return d * n; }
  std::int64_t w_dec() const { return d * n + n; }
  std::int64_t b_dec() const { return 2 * d * n + n; }
  std::int64_t total() const { return 2 * d * n + n + d; }
};

template <class T>
void require_input(const view2d<const T>& x, std::int64_t cols, const char* fn, const char* name) {
  xplor::detail::require(x.rows() >= 1, fn, name, " has ", x.rows(), " rows; at least 1 is needed");
  xplor::detail::require(x.cols() == cols, fn, name, " has ", x.cols(), " columns, expected ", cols);
  for (std::int64_t r = 0; r < x.rows(); ++r)
    for (std::int64_t c = 0; c < x.cols(); ++c)
      xplor::detail::require(std::isfinite(x(r, c)), fn, name, "(", r, ", ", c, ") = ", x(r, c),
                             " is not finite");
}

/// Indices of the k largest v[j] (ties to the lower index) among the ascending indices `idx`
/// (count m >= k): a heap of the k best seen so far, worst on top; `out` gets them by index.
inline void select_top_of(const float* v, const std::int32_t* idx, std::int64_t m, int k, std::int32_t* out) {
  const auto worse = [v](std::int32_t a, std::int32_t b) {  // heap order: worst on top
    return v[a] > v[b] || (v[a] == v[b] && a < b);
  };
  std::copy_n(idx, k, out);
  std::make_heap(out, out + k, worse);
  float threshold = v[out[0]];
  for (std::int64_t i = k; i < m; ++i) {
    const std::int32_t j = idx[i];
    if (!(v[j] > threshold)) continue;  // equal values keep the lower index already held
    std::pop_heap(out, out + k, worse);
    out[k - 1] = j;
    std::push_heap(out, out + k, worse);
    threshold = v[out[0]];
  }
  std::sort(out, out + k);
}

/// Indices of the k largest v[j] for j in [0, n) (ties to the lower index), sorted by index.
/// The minimum of the maxima of k groups is at most the k-th largest value, so only the
/// values at or above it (a few k, found by two vectorised passes) go to the heap.
inline void select_top(const float* v, std::int64_t n, int k, std::int32_t* out) {
  thread_local std::vector<std::int32_t> candidates;
  candidates.clear();
  if (n >= 4 * std::int64_t{k} && k >= 1) {
    const std::int64_t group = n / k;
    float bound = std::numeric_limits<float>::infinity();
    for (int g = 0; g < k; ++g) {
      const std::int64_t begin = g * group, end = g + 1 == k ? n : begin + group;
      float m = v[begin];
      for (std::int64_t j = begin + 1; j < end; ++j) m = std::max(m, v[j]);
      bound = std::min(bound, m);
    }
    for (std::int64_t j = 0; j < n; ++j)
      if (v[j] >= bound) candidates.push_back(static_cast<std::int32_t>(j));
  } else {
    for (std::int64_t j = 0; j < n; ++j) candidates.push_back(static_cast<std::int32_t>(j));
  }
  select_top_of(v, candidates.data(), std::ssize(candidates), static_cast<int>(std::min<std::int64_t>(k, n)),
                out);
}

/// One active (row, latent) pair of a TopK batch: z its activation, src the gradient row it reads
/// (row for the main reconstruction, B + row for AuxK).
struct sae_entry {
  std::int32_t src = 0, latent = 0;
  float z = 0;
};
}  // namespace sae_detail

/// Gradients of the loss, laid out like the parameters (see the accessors).
struct sae_gradients {
  sae_detail::sae_layout layout;
  std::vector<float> flat;
  sae_step_stats stats;
  Eigen::Map<const sae_detail::sae_col_matrix> W_enc() const {
    return {flat.data() + layout.w_enc(), layout.d, layout.n};
  }
  Eigen::Map<const Eigen::VectorXf> b_enc() const { return {flat.data() + layout.b_enc(), layout.n}; }
  Eigen::Map<const sae_detail::sae_row_matrix> W_dec() const {
    return {flat.data() + layout.w_dec(), layout.n, layout.d};
  }
  Eigen::Map<const Eigen::VectorXf> b_dec() const { return {flat.data() + layout.b_dec(), layout.d}; }
};

/// The geometric median argmin_m sum_i ||x_i - m|| by Weiszfeld's iterations in double, as the
/// geom_median package that Gao et al.'s init_from_data_ calls (weights 1 / max(||x_i - m||, 1e-8),
/// start at the mean, stop when the objective improves by < 1e-20 relative or after
/// `iterations`). Rows are visited in lexicographic order, so any permutation of the rows gives
/// the same bits.
inline std::vector<float> geometric_median(view2d<const float> x, int iterations = 100) {
  constexpr const char* fn = "xplor::interp::geometric_median";
  xplor::detail::require(x.rows() >= 1, fn, "x has ", x.rows(), " rows; at least 1 is needed");
  xplor::detail::require(x.cols() >= 1, fn, "x has ", x.cols(), " columns; at least 1 is needed");
  xplor::detail::require(iterations >= 0, fn, "iterations = ", iterations, " is negative");
  sae_detail::require_input(x, x.cols(), fn, "x");
  const std::int64_t N = x.rows(), d = x.cols();
  std::vector<std::int64_t> order(static_cast<std::size_t>(N));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  std::sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    for (std::int64_t c = 0; c < d; ++c)
      if (x(a, c) != x(b, c)) return x(a, c) < x(b, c);
    return false;
  });
  std::vector<double> m(static_cast<std::size_t>(d), 0.0), num(m.size());
  for (const std::int64_t r : order)
    for (std::int64_t c = 0; c < d; ++c) m[c] += x(r, c);
  for (double& v : m) v /= double(N);
  const auto objective = [&](const std::vector<double>& at) {
    double sum = 0;
    for (const std::int64_t r : order) {
      double s = 0;
      for (std::int64_t c = 0; c < d; ++c) s += (x(r, c) - at[c]) * (x(r, c) - at[c]);
      sum += std::sqrt(s);
    }
    return sum;
  };
  double f = objective(m);
  for (int it = 0; it < iterations; ++it) {
    std::fill(num.begin(), num.end(), 0.0);
    double den = 0;
    for (const std::int64_t r : order) {
      double s = 0;
      for (std::int64_t c = 0; c < d; ++c) s += (x(r, c) - m[c]) * (x(r, c) - m[c]);
      const double w = 1.0 / std::max(std::sqrt(s), 1e-8);
      den += w;
      for (std::int64_t c = 0; c < d; ++c) num[c] += w * x(r, c);
    }
    for (std::int64_t c = 0; c < d; ++c) m[c] = num[c] / den;
    const double next = objective(m);
    const bool done = std::abs(f - next) <= 1e-20 * next;
    f = next;
    if (done) break;
  }
  return std::vector<float>(m.begin(), m.end());
}

/// sum ||x - x_hat||^2 / sum ||x||^2 over all rows, in double (1 for x_hat = 0; 0 when both
/// sums are 0). Gao et al. report MSE normalised this way per row (loss.py); the batch ratio is
/// used here so that rows near 0 do not dominate.
inline float normalized_mse(view2d<const float> x, view2d<const float> x_hat) {
  constexpr const char* fn = "xplor::interp::normalized_mse";
  sae_detail::require_input(x, x.cols(), fn, "x");
  xplor::detail::require(x_hat.rows() == x.rows() && x_hat.cols() == x.cols(), fn, "x_hat is ", x_hat.rows(),
                         " x ", x_hat.cols(), ", x is ", x.rows(), " x ", x.cols());
  double num = 0, den = 0;
  for (std::int64_t r = 0; r < x.rows(); ++r)
    for (std::int64_t c = 0; c < x.cols(); ++c) {
      const double e = double(x(r, c)) - double(x_hat(r, c));
      num += e * e;
      den += double(x(r, c)) * double(x(r, c));
    }
  if (den == 0) return num == 0 ? 0.0f : std::numeric_limits<float>::infinity();
  return static_cast<float>(num / den);
}

class sparse_autoencoder {
 public:
  using col_matrix = sae_detail::sae_col_matrix;
  using row_matrix = sae_detail::sae_row_matrix;

  /// Validates the config, fills in the family defaults and draws the initial weights from
  /// `seed` (Philox stream 0 for W_dec, 1 for W_enc):
  ///  relu_l1 (SAELens): W_dec [n, d] Kaiming-uniform (bound sqrt(6 / d_in)), W_enc [d, n]
  ///    Kaiming-uniform (bound sqrt(6 / n)) or W_dec^T; optional rows at norm 0.1; unit rows
  ///    when normalize_decoder; biases 0.
  ///  TopK (train.py): the encoder nn.Linear(d, n)'s default init (uniform, bound 1 / sqrt(d_in)),
  ///    the decoder its transpose with unit-norm rows ("tied init"), biases 0.
  explicit sparse_autoencoder(const sae_config& cfg) : cfg_(resolve(cfg)) {
    layout_ = {cfg_.d_in, cfg_.n_latents};
    params_.assign(static_cast<std::size_t>(layout_.total()), 0.0f);
    since_fired_.assign(static_cast<std::size_t>(cfg_.n_latents), 0);
    optimizer_ = model::adamw(layout_.total(), {cfg_.lr, cfg_.beta1, cfg_.beta2, cfg_.eps, 0.0f});
    const std::int64_t d = cfg_.d_in, n = cfg_.n_latents;
    float* w_enc = params_.data() + layout_.w_enc();  // [n][d] in memory
    float* w_dec = params_.data() + layout_.w_dec();  // [n][d]
    const auto fill_uniform = [&](float* dst, std::uint64_t stream, float bound) {
      philox_stream gen(cfg_.seed, stream);
      for (std::int64_t i = 0; i < n * d; ++i) dst[i] = bound * (2.0f * gen.uniform() - 1.0f);
    };
    if (cfg_.kind == sae_kind::relu_l1) {
      fill_uniform(w_dec, 0, std::sqrt(6.0f / static_cast<float>(d)));
      if (cfg_.decoder_heuristic_init) scale_decoder_rows(0.1f);
      if (cfg_.init_encoder_as_decoder_transpose)
        std::copy_n(w_dec, n * d, w_enc);
      else
        fill_uniform(w_enc, 1, std::sqrt(6.0f / static_cast<float>(n)));
    } else {
      fill_uniform(w_enc, 1, 1.0f / std::sqrt(static_cast<float>(d)));
      std::copy_n(w_enc, n * d, w_dec);
    }
    if (cfg_.normalize_decoder) scale_decoder_rows(1.0f);
  }

  /// The config with every family default filled in.
  const sae_config& config() const { return cfg_; }
  std::int64_t d_in() const { return cfg_.d_in; }
  std::int64_t n_latents() const { return cfg_.n_latents; }
  /// s: encode sees s x; decode returns x^ / s (1 until initialize() estimates it).
  float activation_scale() const { return activation_scale_; }
  /// TopK's reconstruction weight, 1 / mean_{rows, dims} (x - mean x)^2 of the init sample
  /// (train.py's mse_scale); 1 until initialize().
  float mse_scale() const { return mse_scale_; }
  std::int64_t steps() const { return optimizer_.steps(); }

  /// Data-dependent initialisation from a sample of activations [rows, d_in]:
  ///  the activation scale s (normalize_activations);
  ///  TopK (Gao et al., train.py init_from_data_): b_dec (b_pre) = geometric median of s x;
  ///    mse_scale; W_enc divided by the mean norm of the reconstructions (minus b_pre) of 256
  ///    random unit vectors (Philox stream 2) plus b_pre, so they come out with norm ~1.
  ///  relu_l1: b_dec stays 0 (SAELens b_dec_init_method "zeros").
  void initialize(view2d<const float> sample) {
    constexpr const char* fn = "xplor::interp::sparse_autoencoder::initialize";
    sae_detail::require_input(sample, cfg_.d_in, fn, "sample");
    const std::int64_t N = sample.rows(), d = cfg_.d_in;
    double sum_norm = 0, sum_sq = 0;
    for (std::int64_t r = 0; r < N; ++r) {
      double s = 0;
      for (std::int64_t c = 0; c < d; ++c) s += double(sample(r, c)) * double(sample(r, c));
      sum_sq += s;
      sum_norm += std::sqrt(s);
    }
    float scale = 1.0f;
    if (cfg_.normalize_activations != sae_normalization::none) {
      xplor::detail::require(sum_sq > 0, fn,
                             "every row of the sample is 0; the activation scale is undefined");
      scale = cfg_.normalize_activations == sae_normalization::expected_average_only_in
                  ? static_cast<float>(std::sqrt(double(d)) / (sum_norm / double(N)))
                  : static_cast<float>(1.0 / std::sqrt(sum_sq / double(N)));
    }
    activation_scale_ = scale;
    if (cfg_.kind == sae_kind::relu_l1) return;

    std::vector<float> scaled(static_cast<std::size_t>(N * d));
    for (std::int64_t r = 0; r < N; ++r)
      for (std::int64_t c = 0; c < d; ++c) scaled[r * d + c] = scale * sample(r, c);
    const auto sv = make_view<const float>(scaled.data(), {N, d});
    const std::vector<float> median = geometric_median(sv);
    std::copy(median.begin(), median.end(), params_.begin() + layout_.b_dec());
    std::vector<double> mean(static_cast<std::size_t>(d), 0.0);
    for (std::int64_t r = 0; r < N; ++r)
      for (std::int64_t c = 0; c < d; ++c) mean[c] += scaled[r * d + c];
    double var = 0;
    for (std::int64_t c = 0; c < d; ++c) mean[c] /= double(N);
    for (std::int64_t r = 0; r < N; ++r)
      for (std::int64_t c = 0; c < d; ++c)
        var += (scaled[r * d + c] - mean[c]) * (scaled[r * d + c] - mean[c]);
    var /= double(N * d);
    mse_scale_ = var > 0 ? static_cast<float>(1.0 / var) : 1.0f;

    // Encoder rescaling (train.py: "just to ensure exact match with internal code").
    constexpr std::int64_t probes = 256;
    workspace ws;
    ws.xs.resize(probes, d);
    philox_stream gen(cfg_.seed, 2);
    for (std::int64_t r = 0; r < probes; ++r) {
      double norm = 0;
      for (std::int64_t c = 0; c < d; ++c) {
        ws.xs(r, c) = gen.normal();
        norm += double(ws.xs(r, c)) * double(ws.xs(r, c));
      }
      const float inv = static_cast<float>(1.0 / std::sqrt(norm));
      for (std::int64_t c = 0; c < d; ++c) ws.xs(r, c) = ws.xs(r, c) * inv + median[c];
    }
    forward(ws, /*batch_selection=*/false);
    double recon_norm = 0;
    for (std::int64_t r = 0; r < probes; ++r) {
      double s = 0;
      for (std::int64_t c = 0; c < d; ++c) {
        const double v = double(ws.xhat(r, c)) - double(median[c]);
        s += v * v;
      }
      recon_norm += std::sqrt(s);
    }
    recon_norm /= double(probes);
    if (recon_norm > 0) {
      const auto inv = static_cast<float>(recon_norm);
      for (std::int64_t i = 0; i < d * cfg_.n_latents; ++i) params_[layout_.w_enc() + i] /= inv;
    }
  }

  /// Latents z [rows, n] of x [rows, d_in] at inference. TopK and BatchTopK both keep the top k
  /// per row (BatchTopK's batch-level selection makes one row's latents depend on the others;
  /// per-row TopK has the training-time mean L0 and is deterministic per row — SAELens instead
  /// converts a BatchTopK SAE to a JumpReLU with a learned threshold).
  void encode(view2d<const float> x, view2d<float> z) const {
    constexpr const char* fn = "xplor::interp::sparse_autoencoder::encode";
    encode_impl(x, z, false, fn);
  }
  /// The latents train_step() uses: as encode(), except BatchTopK keeps the k * rows largest
  /// ReLU pre-activations of the whole batch.
  void encode_training(view2d<const float> x, view2d<float> z) const {
    constexpr const char* fn = "xplor::interp::sparse_autoencoder::encode_training";
    encode_impl(x, z, true, fn);
  }

  /// x^ = (z W_dec + b_dec) / s for z [rows, n]; zeros of z are skipped (sparse for TopK).
  void decode(view2d<const float> z, view2d<float> x_hat) const {
    constexpr const char* fn = "xplor::interp::sparse_autoencoder::decode";
    sae_detail::require_input(z, cfg_.n_latents, fn, "z");
    xplor::detail::require(x_hat.rows() == z.rows() && x_hat.cols() == cfg_.d_in, fn, "x_hat is ",
                           x_hat.rows(), " x ", x_hat.cols(), ", expected ", z.rows(), " x ", cfg_.d_in);
    xplor::detail::require_distinct_elements(x_hat, fn, "x_hat");
    const std::int64_t d = cfg_.d_in;
    std::vector<float> row(static_cast<std::size_t>(d));
    for (std::int64_t r = 0; r < z.rows(); ++r) {
      std::copy_n(params_.data() + layout_.b_dec(), d, row.data());
      for (std::int64_t f = 0; f < cfg_.n_latents; ++f) {
        const float v = z(r, f);
        if (v == 0.0f) continue;
        const float* w = params_.data() + layout_.w_dec() + f * d;
        for (std::int64_t c = 0; c < d; ++c) row[c] += v * w[c];
      }
      for (std::int64_t c = 0; c < d; ++c) x_hat(r, c) = row[c] / activation_scale_;
    }
  }

  /// One Adam step on a batch [rows, d_in] (rows = tokens): forward, dead-latent counters, loss,
  /// backward, decoder-gradient projection, Adam, decoder renormalisation. Returns the batch's
  /// loss terms before the step.
  sae_step_stats train_step(view2d<const float> x) {
    constexpr const char* fn = "xplor::interp::sparse_autoencoder::train_step";
    sae_detail::require_input(x, cfg_.d_in, fn, "x");
    grads_.assign(params_.size(), 0.0f);
    // train.py updates its firing stats before AuxK masks the dead latents ("IMPORTANT: has to
    // go after stats update!"), so this batch counts towards deadness.
    load_input(x, ws_);
    forward(ws_, true);
    advance_counters(ws_);
    const sae_step_stats stats = loss_and_backward(ws_, grads_.data());
    if (cfg_.normalize_decoder) project_decoder_gradient(grads_.data());
    optimizer_.step(params_, grads_, cfg_.lr);
    if (cfg_.normalize_decoder) scale_decoder_rows(1.0f);
    return stats;
  }

  /// The loss terms of a batch without a step (dead latents as of the last step).
  sae_step_stats evaluate(view2d<const float> x) const {
    constexpr const char* fn = "xplor::interp::sparse_autoencoder::evaluate";
    sae_detail::require_input(x, cfg_.d_in, fn, "x");
    workspace ws;
    return compute(x, ws, nullptr);
  }

  /// The gradients train_step() would apply to this batch (with the decoder rows' parallel
  /// component projected out when `project_decoder` and normalize_decoder), without a step and
  /// without updating the dead-latent counters.
  sae_gradients gradients(view2d<const float> x, bool project_decoder = true) const {
    constexpr const char* fn = "xplor::interp::sparse_autoencoder::gradients";
    sae_detail::require_input(x, cfg_.d_in, fn, "x");
    sae_gradients g;
    g.layout = layout_;
    g.flat.assign(params_.size(), 0.0f);
    workspace ws;
    g.stats = compute(x, ws, g.flat.data());
    if (project_decoder && cfg_.normalize_decoder) project_decoder_gradient(g.flat.data());
    return g;
  }

  // Parameters under SAELens' names and shapes. The maps are views into the SAE (valid until it
  // is moved or destroyed); writing through them changes the model.
  Eigen::Map<col_matrix> W_enc() { return {params_.data() + layout_.w_enc(), cfg_.d_in, cfg_.n_latents}; }
  Eigen::Map<const col_matrix> W_enc() const {
    return {params_.data() + layout_.w_enc(), cfg_.d_in, cfg_.n_latents};
  }
  Eigen::Map<Eigen::VectorXf> b_enc() { return {params_.data() + layout_.b_enc(), cfg_.n_latents}; }
  Eigen::Map<const Eigen::VectorXf> b_enc() const {
    return {params_.data() + layout_.b_enc(), cfg_.n_latents};
  }
  Eigen::Map<row_matrix> W_dec() { return {params_.data() + layout_.w_dec(), cfg_.n_latents, cfg_.d_in}; }
  Eigen::Map<const row_matrix> W_dec() const {
    return {params_.data() + layout_.w_dec(), cfg_.n_latents, cfg_.d_in};
  }
  Eigen::Map<Eigen::VectorXf> b_dec() { return {params_.data() + layout_.b_dec(), cfg_.d_in}; }
  Eigen::Map<const Eigen::VectorXf> b_dec() const { return {params_.data() + layout_.b_dec(), cfg_.d_in}; }
  /// Latent f's decoder direction W_dec[f] (in the scaled space).
  std::span<const float> decoder_row(std::int64_t f) const {
    xplor::detail::require(f >= 0 && f < cfg_.n_latents, "xplor::interp::sparse_autoencoder::decoder_row",
                           "feature = ", f, " is outside [0, ", cfg_.n_latents, ")");
    return {params_.data() + layout_.w_dec() + f * cfg_.d_in, static_cast<std::size_t>(cfg_.d_in)};
  }
  /// Training rows since each latent last fired (saturated at dead_tokens + 1).
  std::span<const std::int64_t> tokens_since_fired() const { return since_fired_; }
  std::int64_t dead_latents() const {
    return std::count_if(since_fired_.begin(), since_fired_.end(),
                         [&](std::int64_t t) { return t > cfg_.dead_tokens; });
  }

  // Raw state, for checkpoints (sae_checkpoint.hpp): the flat parameter buffer in the layout of
  // sae_detail::sae_layout, Adam's moments in the same layout, and the scalars.
  std::span<float> parameters() { return params_; }
  std::span<const float> parameters() const { return params_; }
  model::adamw& optimizer() { return optimizer_; }
  const model::adamw& optimizer() const { return optimizer_; }
  void set_scales(float activation_scale, float mse_scale) {
    constexpr const char* fn = "xplor::interp::sparse_autoencoder::set_scales";
    xplor::detail::require(std::isfinite(activation_scale) && activation_scale > 0, fn,
                           "activation_scale = ", activation_scale, " must be finite and positive");
    xplor::detail::require(std::isfinite(mse_scale) && mse_scale > 0, fn, "mse_scale = ", mse_scale,
                           " must be finite and positive");
    activation_scale_ = activation_scale;
    mse_scale_ = mse_scale;
  }
  void set_tokens_since_fired(std::span<const std::int64_t> counts) {
    constexpr const char* fn = "xplor::interp::sparse_autoencoder::set_tokens_since_fired";
    xplor::detail::require(std::ssize(counts) == cfg_.n_latents, fn, "counts has ", counts.size(),
                           " entries, n_latents is ", cfg_.n_latents);
    for (std::size_t i = 0; i < counts.size(); ++i)
      xplor::detail::require(counts[i] >= 0 && counts[i] <= cfg_.dead_tokens + 1, fn, "counts[", i,
                             "] = ", counts[i], " is outside [0, dead_tokens + 1 = ", cfg_.dead_tokens + 1,
                             "]");
    std::copy(counts.begin(), counts.end(), since_fired_.begin());
  }

 private:
  struct workspace {
    row_matrix xs, xc, pre, xhat;  // scaled input, centred input, pre-activations, reconstruction
    row_matrix z, dz, g;           // relu_l1 latents and their gradient; dL/dx^ rows
    std::vector<sae_detail::sae_entry> entries;
    std::vector<std::int32_t> slots, by_latent;
    std::vector<std::int64_t> latent_start;
    std::int64_t main_entries = 0;
  };

  static sae_config resolve(sae_config c) {
    constexpr const char* fn = "xplor::interp::sparse_autoencoder";
    xplor::detail::require(c.d_in > 0, fn, "d_in = ", c.d_in, " must be positive");
    xplor::detail::require(c.n_latents > 0, fn, "n_latents = ", c.n_latents, " must be positive");
    xplor::detail::require(c.n_latents <= (std::int64_t{1} << 31) - 1 &&
                               c.d_in <= (std::int64_t{1} << 31) - 1 &&
                               c.d_in * c.n_latents <= (std::int64_t{1} << 40),
                           fn, "d_in * n_latents = ", c.d_in, " * ", c.n_latents, " is too large");
    const bool topk = c.kind != sae_kind::relu_l1;
    xplor::detail::require(
        c.kind == sae_kind::relu_l1 || c.kind == sae_kind::topk || c.kind == sae_kind::batch_topk, fn,
        "kind = ", static_cast<int>(c.kind), " is not an sae_kind");
    if (topk) {
      xplor::detail::require(c.k >= 1 && c.k <= c.n_latents, fn, "k = ", c.k,
                             " is outside [1, n_latents = ", c.n_latents, "]");
      if (c.k_aux == 0)
        c.k_aux = static_cast<int>(std::min<std::int64_t>(2 * std::int64_t{c.k}, c.n_latents));
      xplor::detail::require(c.k_aux >= 1 && c.k_aux <= c.n_latents, fn, "k_aux = ", c.k_aux,
                             " is outside [1, n_latents = ", c.n_latents, "] (0 selects 2 k)");
      xplor::detail::require(std::isfinite(c.aux_coeff) && c.aux_coeff >= 0, fn, "aux_coeff = ", c.aux_coeff,
                             " must be finite and >= 0");
      xplor::detail::require(
          !c.decoder_heuristic_init && !c.scale_sparsity_by_decoder_norm, fn,
          "decoder_heuristic_init and scale_sparsity_by_decoder_norm are ReLU + L1 options; kind is ",
          to_string(c.kind));
    }
    xplor::detail::require(std::isfinite(c.l1_coefficient) && c.l1_coefficient >= 0, fn,
                           "l1_coefficient = ", c.l1_coefficient, " must be finite and >= 0");
    xplor::detail::require(
        !(c.normalize_decoder && c.decoder_heuristic_init), fn,
        "decoder_heuristic_init (rows at norm 0.1) contradicts normalize_decoder (unit rows); "
        "turn one off, as SAELens requires");
    const int norm = static_cast<int>(c.normalize_activations);
    xplor::detail::require(norm >= 0 && norm <= 3, fn, "normalize_activations = ", norm,
                           " is not an sae_normalization");
    if (c.normalize_activations == sae_normalization::family_default)
      c.normalize_activations = topk ? sae_normalization::unit_mean_squared_norm : sae_normalization::none;
    if (c.lr == 0.0f) c.lr = topk ? static_cast<float>(1e-3 * std::sqrt(512.0 / double(c.n_latents))) : 3e-4f;
    xplor::detail::require(std::isfinite(c.lr) && c.lr > 0, fn, "lr = ", c.lr,
                           " must be finite and positive");
    if (c.beta1 < 0 && std::isfinite(c.beta1)) c.beta1 = topk ? 0.9f : 0.0f;
    xplor::detail::require(c.beta1 >= 0 && c.beta1 < 1, fn, "beta1 = ", c.beta1, " is outside [0, 1)");
    xplor::detail::require(c.beta2 >= 0 && c.beta2 < 1, fn, "beta2 = ", c.beta2, " is outside [0, 1)");
    if (c.eps == 0.0f) c.eps = topk ? 6.25e-10f : 1e-8f;
    xplor::detail::require(std::isfinite(c.eps) && c.eps > 0, fn, "eps = ", c.eps,
                           " must be finite and positive");
    xplor::detail::require(c.dead_tokens >= 0 && c.dead_tokens < (std::int64_t{1} << 24), fn,
                           "dead_tokens = ", c.dead_tokens,
                           " is outside [0, 2^24) (counters are stored as exact fp32)");
    if (c.fire_threshold < 0 && std::isfinite(c.fire_threshold)) c.fire_threshold = topk ? 1e-3f : 0.0f;
    xplor::detail::require(std::isfinite(c.fire_threshold) && c.fire_threshold >= 0, fn,
                           "fire_threshold = ", c.fire_threshold, " must be finite");
    return c;
  }

  /// f(begin, width) over blocks of 256 of [0, size): each block one Eigen product on one thread
  /// (model::dense::thread_independent_for), so an element's bits do not depend on the thread
  /// count (Eigen's own parallel GEMM picks its depth blocking from it).
  template <class F>
  static void dense_blocks(std::int64_t size, double work, F f) {
    constexpr std::int64_t block = 256;
    model::dense::thread_independent_for((size + block - 1) / block, work, [&](std::int64_t t) {
      f(t * block, std::min(block, size - t * block));
    });
  }

  void scale_decoder_rows(float target) {
    const std::int64_t d = cfg_.d_in;
    for (std::int64_t f = 0; f < cfg_.n_latents; ++f) {
      float* w = params_.data() + layout_.w_dec() + f * d;
      double s = 0;
      for (std::int64_t c = 0; c < d; ++c) s += double(w[c]) * double(w[c]);
      if (s == 0) continue;
      const auto norm = static_cast<float>(std::sqrt(s));
      for (std::int64_t c = 0; c < d; ++c) w[c] = w[c] / norm * target;
    }
  }

  /// g_f <- g_f - (g_f . w_f) w_f for every decoder row w_f (unit norm), as train.py's
  /// unit_norm_decoder_grad_adjustment_ and SAELens' remove_gradient_parallel_to_decoder_directions.
  void project_decoder_gradient(float* grads) const {
    const std::int64_t d = cfg_.d_in;
    for (std::int64_t f = 0; f < cfg_.n_latents; ++f) {
      const float* w = params_.data() + layout_.w_dec() + f * d;
      float* g = grads + layout_.w_dec() + f * d;
      double dot = 0;
      for (std::int64_t c = 0; c < d; ++c) dot += double(g[c]) * double(w[c]);
      const auto p = static_cast<float>(dot);
      for (std::int64_t c = 0; c < d; ++c) g[c] -= p * w[c];
    }
  }

  void encode_impl(view2d<const float> x, view2d<float> z, bool batch_selection, const char* fn) const {
    sae_detail::require_input(x, cfg_.d_in, fn, "x");
    xplor::detail::require(z.rows() == x.rows() && z.cols() == cfg_.n_latents, fn, "z is ", z.rows(), " x ",
                           z.cols(), ", expected ", x.rows(), " x ", cfg_.n_latents);
    xplor::detail::require_distinct_elements(z, fn, "z");
    workspace ws;
    load_input(x, ws);
    forward(ws, batch_selection);
    for (std::int64_t r = 0; r < x.rows(); ++r)
      for (std::int64_t f = 0; f < cfg_.n_latents; ++f) z(r, f) = 0.0f;
    if (cfg_.kind == sae_kind::relu_l1) {
      for (std::int64_t r = 0; r < x.rows(); ++r)
        for (std::int64_t f = 0; f < cfg_.n_latents; ++f) z(r, f) = ws.z(r, f);
      return;
    }
    for (const sae_detail::sae_entry& e : ws.entries) z(e.src, e.latent) = e.z;
  }

  void load_input(view2d<const float> x, workspace& ws) const {
    ws.xs.resize(x.rows(), cfg_.d_in);
    for (std::int64_t r = 0; r < x.rows(); ++r)
      for (std::int64_t c = 0; c < cfg_.d_in; ++c) ws.xs(r, c) = activation_scale_ * x(r, c);
  }

  /// ws.xs (scaled input) -> ws.xc, ws.pre, latents (ws.z for relu_l1, ws.entries for TopK),
  /// ws.xhat (scaled reconstruction).
  void forward(workspace& ws, bool batch_selection) const {
    const std::int64_t B = ws.xs.rows(), d = cfg_.d_in, n = cfg_.n_latents;
    const float* b_enc = params_.data() + layout_.b_enc();
    const float* b_dec = params_.data() + layout_.b_dec();
    const float* w_dec = params_.data() + layout_.w_dec();
    ws.xc = ws.xs;
    if (cfg_.kind != sae_kind::relu_l1 || cfg_.apply_b_dec_to_input)
      for (std::int64_t r = 0; r < B; ++r)
        for (std::int64_t c = 0; c < d; ++c) ws.xc(r, c) -= b_dec[c];
    ws.pre.resize(B, n);
    if (cfg_.kind == sae_kind::relu_l1) {
      const Eigen::Map<const row_matrix> WT(params_.data() + layout_.w_enc(), n, d);  // W_enc^T
      dense_blocks(n, double(B) * double(n) * double(d), [&](std::int64_t f0, std::int64_t w) {
        ws.pre.middleCols(f0, w).noalias() = ws.xc * WT.middleRows(f0, w).transpose();
      });
    } else {
      model::dense::linear_forward(ws.xc.data(), params_.data() + layout_.w_enc(), ws.pre.data(), B, d, n);
    }
    for (std::int64_t r = 0; r < B; ++r)
      for (std::int64_t f = 0; f < n; ++f) ws.pre(r, f) += b_enc[f];
    ws.xhat.resize(B, d);
    for (std::int64_t r = 0; r < B; ++r) std::copy_n(b_dec, d, ws.xhat.data() + r * d);

    if (cfg_.kind == sae_kind::relu_l1) {
      ws.z = ws.pre.cwiseMax(0.0f);
      const Eigen::Map<const row_matrix> W(w_dec, n, d);
      dense_blocks(d, double(B) * double(n) * double(d), [&](std::int64_t c0, std::int64_t w) {
        ws.xhat.middleCols(c0, w).noalias() += ws.z * W.middleCols(c0, w);
      });
      return;
    }
    ws.entries.clear();
    if (cfg_.kind == sae_kind::batch_topk && batch_selection) {
      const std::int64_t total = std::min(std::int64_t{cfg_.k} * B, B * n);
      std::vector<std::int64_t> heap;
      heap.reserve(static_cast<std::size_t>(total));
      const float* p = ws.pre.data();
      const auto worse = [p](std::int64_t a, std::int64_t b) {
        return p[a] > p[b] || (p[a] == p[b] && a < b);
      };
      for (std::int64_t j = 0; j < B * n; ++j) {
        if (!(p[j] > 0.0f)) continue;  // ReLU first (SAELens batchtopk_sae.py)
        if (std::ssize(heap) < total) {
          heap.push_back(j);
          std::push_heap(heap.begin(), heap.end(), worse);
        } else if (p[j] > p[heap.front()]) {
          std::pop_heap(heap.begin(), heap.end(), worse);
          heap.back() = j;
          std::push_heap(heap.begin(), heap.end(), worse);
        }
      }
      std::sort(heap.begin(), heap.end());
      for (const std::int64_t j : heap)
        ws.entries.push_back({static_cast<std::int32_t>(j / n), static_cast<std::int32_t>(j % n), p[j]});
    } else {
      const int k = cfg_.k;
      ws.slots.resize(static_cast<std::size_t>(B * k));
      model::dense::thread_independent_for(B, double(B) * double(n), [&](std::int64_t r) {
        sae_detail::select_top(ws.pre.data() + r * n, n, k, ws.slots.data() + r * k);
      });
      for (std::int64_t r = 0; r < B; ++r)
        for (int i = 0; i < k; ++i) {
          const std::int32_t f = ws.slots[static_cast<std::size_t>(r * k + i)];
          const float v = ws.pre(r, f);
          if (v > 0.0f) ws.entries.push_back({static_cast<std::int32_t>(r), f, v});
        }
    }
    ws.main_entries = std::ssize(ws.entries);
    // x^ = b_dec + sum over the active latents (ascending) of z W_dec[f]: O(B k d).
    for (const sae_detail::sae_entry& e : ws.entries) {
      float* out = ws.xhat.data() + std::int64_t{e.src} * d;
      const float* w = w_dec + std::int64_t{e.latent} * d;
      for (std::int64_t c = 0; c < d; ++c) out[c] += e.z * w[c];
    }
  }

  /// Loss terms of x and, given `grads` (zeroed, the parameters' layout), their gradients, with
  /// the dead-latent counters as they stand.
  sae_step_stats compute(view2d<const float> x, workspace& ws, float* grads) const {
    load_input(x, ws);
    forward(ws, true);
    return loss_and_backward(ws, grads);
  }

  void advance_counters(const workspace& ws) {
    const std::int64_t B = ws.xs.rows(), n = cfg_.n_latents;
    std::vector<char> fired(static_cast<std::size_t>(n), 0);
    if (cfg_.kind == sae_kind::relu_l1) {
      for (std::int64_t r = 0; r < B; ++r)
        for (std::int64_t f = 0; f < n; ++f)
          if (ws.z(r, f) > cfg_.fire_threshold) fired[f] = 1;
    } else {
      for (const sae_detail::sae_entry& e : ws.entries)
        if (e.z > cfg_.fire_threshold) fired[e.latent] = 1;
    }
    for (std::int64_t f = 0; f < n; ++f)
      since_fired_[f] = fired[f] ? 0 : std::min(since_fired_[f] + B, cfg_.dead_tokens + 1);
  }

  sae_step_stats loss_and_backward(workspace& ws, float* grads) const {
    const std::int64_t B = ws.xs.rows(), d = cfg_.d_in;
    sae_step_stats st;
    double res = 0, energy = 0;
    for (std::int64_t r = 0; r < B; ++r)
      for (std::int64_t c = 0; c < d; ++c) {
        const double e = double(ws.xhat(r, c)) - double(ws.xs(r, c));
        res += e * e;
        energy += double(ws.xs(r, c)) * double(ws.xs(r, c));
      }
    st.nmse = energy > 0 ? static_cast<float>(res / energy)
                         : (res == 0 ? 0.0f : std::numeric_limits<float>::infinity());
    st.dead = dead_latents();
    if (cfg_.kind == sae_kind::relu_l1)
      relu_loss(ws, grads, res, st);
    else
      topk_loss(ws, grads, res, st);
    return st;
  }

  // ReLU + L1 (SAELens TrainingSAE.training_forward_pass + StandardTrainingSAE.calculate_aux_loss):
  //   mse = mean over rows of sum over d of (x^ - x)^2  (per_item_mse_loss.sum(dim=-1).mean())
  //   l1  = mean over rows of lambda * sum_i f_i (* ||W_dec,i||)   ((coeff * sparsity).mean())
  void relu_loss(workspace& ws, float* grads, double res, sae_step_stats& st) const {
    const std::int64_t B = ws.xs.rows(), d = cfg_.d_in, n = cfg_.n_latents;
    const float* w_dec = params_.data() + layout_.w_dec();
    const float lambda = cfg_.l1_coefficient;
    std::vector<float> weight(static_cast<std::size_t>(n), 1.0f);
    if (cfg_.scale_sparsity_by_decoder_norm)
      for (std::int64_t f = 0; f < n; ++f) {
        double s = 0;
        for (std::int64_t c = 0; c < d; ++c) s += double(w_dec[f * d + c]) * double(w_dec[f * d + c]);
        weight[f] = static_cast<float>(std::sqrt(s));
      }
    double l1 = 0;
    std::int64_t active = 0;
    std::vector<double> z_sum(static_cast<std::size_t>(n), 0.0);
    for (std::int64_t r = 0; r < B; ++r)
      for (std::int64_t f = 0; f < n; ++f) {
        const float v = ws.z(r, f);
        l1 += double(v) * double(weight[f]);
        z_sum[f] += v;
        active += v > 0.0f;
      }
    st.recon = static_cast<float>(res / double(B));
    st.sparsity = static_cast<float>(double(lambda) * l1 / double(B));
    st.loss = static_cast<float>(res / double(B) + double(lambda) * l1 / double(B));
    st.l0 = static_cast<float>(double(active) / double(B));
    if (grads == nullptr) return;

    const float inv_b = 1.0f / static_cast<float>(B);
    ws.g.resize(B, d);
    for (std::int64_t r = 0; r < B; ++r)
      for (std::int64_t c = 0; c < d; ++c) ws.g(r, c) = 2.0f * (ws.xhat(r, c) - ws.xs(r, c)) * inv_b;
    // dz = g W_dec^T + lambda w_f / B; dpre = dz where pre > 0.
    ws.dz.resize(B, n);
    const Eigen::Map<const row_matrix> W(w_dec, n, d);
    const double work = double(B) * double(n) * double(d);
    dense_blocks(n, work, [&](std::int64_t f0, std::int64_t w) {
      ws.dz.middleCols(f0, w).noalias() = ws.g * W.middleRows(f0, w).transpose();
    });
    for (std::int64_t r = 0; r < B; ++r)
      for (std::int64_t f = 0; f < n; ++f)
        ws.dz(r, f) = ws.pre(r, f) > 0.0f ? ws.dz(r, f) + lambda * weight[f] * inv_b : 0.0f;
    float* g_wenc = grads + layout_.w_enc();  // [n][d]: dpre^T xc
    float* g_benc = grads + layout_.b_enc();
    float* g_wdec = grads + layout_.w_dec();  // [n][d]: z^T g
    float* g_bdec = grads + layout_.b_dec();
    Eigen::Map<row_matrix> gW_dec(g_wdec, n, d), gW_encT(g_wenc, n, d);
    dense_blocks(n, 2 * work, [&](std::int64_t f0, std::int64_t w) {
      gW_dec.middleRows(f0, w).noalias() = ws.z.middleCols(f0, w).transpose() * ws.g;
      gW_encT.middleRows(f0, w).noalias() = ws.dz.middleCols(f0, w).transpose() * ws.xc;
    });
    if (cfg_.scale_sparsity_by_decoder_norm)  // d ||w_f|| / d w_f = w_f / ||w_f||
      for (std::int64_t f = 0; f < n; ++f) {
        if (weight[f] == 0.0f) continue;
        const float coef = lambda * static_cast<float>(z_sum[f]) * inv_b / weight[f];
        for (std::int64_t c = 0; c < d; ++c) g_wdec[f * d + c] += coef * w_dec[f * d + c];
      }
    for (std::int64_t r = 0; r < B; ++r)
      for (std::int64_t f = 0; f < n; ++f) g_benc[f] += ws.dz(r, f);
    for (std::int64_t r = 0; r < B; ++r)
      for (std::int64_t c = 0; c < d; ++c) g_bdec[c] += ws.g(r, c);
    if (cfg_.apply_b_dec_to_input) {  // xc = x - b_dec
      const float* w_enc = params_.data() + layout_.w_enc();
      for (std::int64_t f = 0; f < n; ++f)
        for (std::int64_t c = 0; c < d; ++c) g_bdec[c] -= g_benc[f] * w_enc[f * d + c];
    }
  }

  // TopK (Gao et al. 2024; train.py):
  //   recon = mse_scale * mean over rows and dims of (x^ - x)^2
  //   AuxK  = mean (e^ - e)^2 / mean (e - mean_rows e)^2,  e = x - x^ (no gradient through it),
  //           e^ = sum of the top-k_aux ReLU pre-activations among dead latents times W_dec
  //           (train.py's normalized_mse of decode_sparse(auxk) against x - x^.detach() + b_pre;
  //           b_pre cancels in the value; here it gets no gradient from AuxK's decoder side, as
  //           in the paper's e^ = W_dec z); 0 when no latent is dead or e has no variance.
  void topk_loss(workspace& ws, float* grads, double res, sae_step_stats& st) const {
    const std::int64_t B = ws.xs.rows(), d = cfg_.d_in, n = cfg_.n_latents;
    const float* w_dec = params_.data() + layout_.w_dec();
    st.recon = static_cast<float>(double(mse_scale_) * res / double(B * d));
    st.l0 = static_cast<float>(double(ws.main_entries) / double(B));

    // AuxK over the dead latents.
    std::vector<std::int32_t> dead;
    for (std::int64_t f = 0; f < n; ++f)
      if (since_fired_[f] > cfg_.dead_tokens) dead.push_back(static_cast<std::int32_t>(f));
    double aux = 0, var_e = 0;
    row_matrix e_hat;
    if (!dead.empty()) {
      const int ka = static_cast<int>(std::min<std::int64_t>(cfg_.k_aux, std::ssize(dead)));
      std::vector<float> vals(dead.size());
      std::vector<std::int32_t> pick(static_cast<std::size_t>(ka));
      for (std::int64_t r = 0; r < B; ++r) {
        for (std::size_t i = 0; i < dead.size(); ++i) vals[i] = ws.pre(r, dead[i]);
        sae_detail::select_top(vals.data(), std::ssize(vals), ka, pick.data());
        for (const std::int32_t i : pick)
          if (vals[i] > 0.0f) ws.entries.push_back({static_cast<std::int32_t>(B + r), dead[i], vals[i]});
      }
      std::vector<double> mean(static_cast<std::size_t>(d), 0.0);
      for (std::int64_t r = 0; r < B; ++r)
        for (std::int64_t c = 0; c < d; ++c) mean[c] += double(ws.xs(r, c)) - double(ws.xhat(r, c));
      for (double& m : mean) m /= double(B);
      for (std::int64_t r = 0; r < B; ++r)
        for (std::int64_t c = 0; c < d; ++c) {
          const double v = double(ws.xs(r, c)) - double(ws.xhat(r, c)) - mean[c];
          var_e += v * v;
        }
      var_e /= double(B * d);
      e_hat = row_matrix::Zero(B, d);
      for (std::int64_t i = ws.main_entries; i < std::ssize(ws.entries); ++i) {
        const sae_detail::sae_entry& en = ws.entries[static_cast<std::size_t>(i)];
        float* out = e_hat.data() + (en.src - B) * d;
        const float* w = w_dec + std::int64_t{en.latent} * d;
        for (std::int64_t c = 0; c < d; ++c) out[c] += en.z * w[c];
      }
      if (var_e > 0) {
        double num = 0;
        for (std::int64_t r = 0; r < B; ++r)
          for (std::int64_t c = 0; c < d; ++c) {
            const double v = double(e_hat(r, c)) - (double(ws.xs(r, c)) - double(ws.xhat(r, c)));
            num += v * v;
          }
        aux = num / double(B * d) / var_e;
      }
    }
    st.aux = static_cast<float>(aux);
    st.sparsity = static_cast<float>(double(cfg_.aux_coeff) * aux);
    st.loss = static_cast<float>(double(st.recon) + double(cfg_.aux_coeff) * aux);
    if (grads == nullptr) return;

    // Gradient rows: g[r] = dL/dx^_r (main), g[B + r] = dL/de^_r (AuxK, zero without it).
    ws.g.setZero(2 * B, d);
    const float main_coef = 2.0f * mse_scale_ / static_cast<float>(B * d);
    for (std::int64_t r = 0; r < B; ++r)
      for (std::int64_t c = 0; c < d; ++c) ws.g(r, c) = main_coef * (ws.xhat(r, c) - ws.xs(r, c));
    if (aux > 0) {
      const auto aux_coef = static_cast<float>(2.0 * double(cfg_.aux_coeff) / (double(B * d) * var_e));
      for (std::int64_t r = 0; r < B; ++r)
        for (std::int64_t c = 0; c < d; ++c)
          ws.g(B + r, c) = aux_coef * (e_hat(r, c) - (ws.xs(r, c) - ws.xhat(r, c)));
    }
    // Entries grouped by latent (stable counting sort), then one task per latent: the active
    // pairs' decoder and encoder gradients, O(d) each.
    ws.latent_start.assign(static_cast<std::size_t>(n + 1), 0);
    for (const sae_detail::sae_entry& e : ws.entries) ++ws.latent_start[e.latent + 1];
    for (std::int64_t f = 0; f < n; ++f) ws.latent_start[f + 1] += ws.latent_start[f];
    ws.by_latent.resize(ws.entries.size());
    {
      std::vector<std::int64_t> next(ws.latent_start.begin(), ws.latent_start.end() - 1);
      for (std::size_t i = 0; i < ws.entries.size(); ++i)
        ws.by_latent[static_cast<std::size_t>(next[ws.entries[i].latent]++)] = static_cast<std::int32_t>(i);
    }
    float* g_wenc = grads + layout_.w_enc();
    float* g_benc = grads + layout_.b_enc();
    float* g_wdec = grads + layout_.w_dec();
    float* g_bdec = grads + layout_.b_dec();
    const std::int64_t work = std::ssize(ws.entries) * d;
    model::dense::thread_independent_for(n, 3.0 * double(work), [&](std::int64_t f) {
      const float* w = w_dec + f * d;
      float* gw_dec = g_wdec + f * d;
      float* gw_enc = g_wenc + f * d;
      double gb = 0;
      for (std::int64_t s = ws.latent_start[f]; s < ws.latent_start[f + 1]; ++s) {
        const sae_detail::sae_entry& e = ws.entries[static_cast<std::size_t>(ws.by_latent[s])];
        const float* gr = ws.g.data() + std::int64_t{e.src} * d;
        const float* xr = ws.xc.data() + (e.src % B) * d;
        float dz = 0;
        for (std::int64_t c = 0; c < d; ++c) dz += gr[c] * w[c];
        for (std::int64_t c = 0; c < d; ++c) gw_dec[c] += e.z * gr[c];
        for (std::int64_t c = 0; c < d; ++c) gw_enc[c] += dz * xr[c];
        gb += dz;
      }
      g_benc[f] = static_cast<float>(gb);
    });
    for (std::int64_t r = 0; r < B; ++r)
      for (std::int64_t c = 0; c < d; ++c) g_bdec[c] += ws.g(r, c);
    const float* w_enc = params_.data() + layout_.w_enc();
    for (std::int64_t f = 0; f < n; ++f) {  // xc = x - b_pre
      if (ws.latent_start[f + 1] == ws.latent_start[f]) continue;
      for (std::int64_t c = 0; c < d; ++c) g_bdec[c] -= g_benc[f] * w_enc[f * d + c];
    }
  }

  sae_config cfg_;
  sae_detail::sae_layout layout_;
  std::vector<float> params_;
  model::adamw optimizer_{0, model::adamw_options{}};
  std::vector<std::int64_t> since_fired_;
  float activation_scale_ = 1.0f;
  float mse_scale_ = 1.0f;
  // Scratch of train_step (not part of the state).
  workspace ws_;
  std::vector<float> grads_;
};

}  // namespace xplor::interp
