// Reading a trained sparse autoencoder for secret elicitation (Cywinski et al. 2025, arXiv
// 2510.01070, elicitation_methods/sae.py): each feature's density on a reference corpus, the
// TF-IDF ranking of the features active at the positions of interest, and a feature's tokens
// (the vocabulary rows its decoder direction points at).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/view.hpp"
#include "xplor/interp/ranking.hpp"
#include "xplor/interp/sae.hpp"

namespace xplor::interp {

/// Fraction of the rows of `acts` [rows, d_in] on which each latent is > 0 (encode(), in chunks
/// of 1024 rows). The reference-corpus density of the TF-IDF ranking.
inline std::vector<float> feature_density(const sparse_autoencoder& sae, view2d<const float> acts) {
  constexpr const char* fn = "xplor::interp::feature_density";
  sae_detail::require_input(acts, sae.d_in(), fn, "acts");
  const std::int64_t n = sae.n_latents(), N = acts.rows();
  std::vector<std::int64_t> count(static_cast<std::size_t>(n), 0);
  std::vector<float> z;
  for (std::int64_t r0 = 0; r0 < N; r0 += 1024) {
    const std::int64_t rows = std::min<std::int64_t>(1024, N - r0);
    z.assign(static_cast<std::size_t>(rows * n), 0.0f);
    const view2d<const float> chunk(acts.data() + r0 * acts.stride(0), {rows, acts.cols()},
                                    {acts.stride(0), acts.stride(1)});
    sae.encode(chunk, make_view(z.data(), {rows, n}));
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t f = 0; f < n; ++f) count[f] += z[r * n + f] > 0.0f;
  }
  std::vector<float> density(static_cast<std::size_t>(n));
  for (std::int64_t f = 0; f < n; ++f) density[f] = static_cast<float>(double(count[f]) / double(N));
  return density;
}

struct feature_score {
  std::int64_t feature = 0;
  float score = 0;
};

/// TF-IDF ranking of Cywinski et al. 2025 (arXiv 2510.01070, elicitation_methods/sae):
/// score_f = mean over positions of z_f(pos) * log(1 / (density_f + 1e-8)), for z [positions, n]
/// at the positions of interest; the top k, score descending, ties to the lower index (in
/// double, rounded to float once).
inline std::vector<feature_score> rank_features_tfidf(view2d<const float> z, std::span<const float> density,
                                                      int k) {
  constexpr const char* fn = "xplor::interp::rank_features_tfidf";
  xplor::detail::require(z.rows() >= 1, fn, "z has ", z.rows(), " rows; at least 1 is needed");
  xplor::detail::require(std::ssize(density) == z.cols(), fn, "density has ", density.size(),
                         " entries, z has ", z.cols(), " columns");
  sae_detail::require_input(z, z.cols(), fn, "z");
  for (std::size_t f = 0; f < density.size(); ++f)
    xplor::detail::require(density[f] >= 0.0f && density[f] <= 1.0f, fn, "density[", f, "] = ", density[f],
                           " is outside [0, 1]");
  xplor::detail::require(k >= 1 && k <= z.cols(), fn, "k = ", k, " is outside [1, ", z.cols(), "]");
  std::vector<feature_score> all(static_cast<std::size_t>(z.cols()));
  for (std::int64_t f = 0; f < z.cols(); ++f) {
    double mean = 0;
    for (std::int64_t r = 0; r < z.rows(); ++r) mean += z(r, f);
    mean /= double(z.rows());
    all[f] = {f, static_cast<float>(mean * std::log(1.0 / (double(density[f]) + 1e-8)))};
  }
  std::partial_sort(all.begin(), all.begin() + k, all.end(),
                    [](const feature_score& a, const feature_score& b) {
                      return a.score > b.score || (a.score == b.score && a.feature < b.feature);
                    });
  all.resize(static_cast<std::size_t>(k));
  return all;
}

/// The k tokens v with the largest W_dec[f] . W_E[v] (embeddings W_E [V, d_in]; W_dec[f] / s so
/// that the decoder direction is in the input's units), score descending, ties to the lower id;
/// the "feature tokens" of Cywinski et al. 2025.
inline std::vector<token_score> feature_tokens(const sparse_autoencoder& sae, std::int64_t feature,
                                               view2d<const float> embeddings, int k) {
  constexpr const char* fn = "xplor::interp::feature_tokens";
  xplor::detail::require(feature >= 0 && feature < sae.n_latents(), fn, "feature = ", feature,
                         " is outside [0, ", sae.n_latents(), ")");
  sae_detail::require_input(embeddings, sae.d_in(), fn, "embeddings");
  xplor::detail::require(embeddings.rows() <= std::numeric_limits<std::int32_t>::max(), fn, "embeddings has ",
                         embeddings.rows(), " rows; token ids are int32");
  xplor::detail::require(k >= 1 && k <= embeddings.rows(), fn, "k = ", k, " is outside [1, ",
                         embeddings.rows(), "]");
  const std::span<const float> w = sae.decoder_row(feature);
  const double inv_s = 1.0 / double(sae.activation_scale());
  std::vector<token_score> all(static_cast<std::size_t>(embeddings.rows()));
  for (std::int64_t v = 0; v < embeddings.rows(); ++v) {
    double s = 0;
    for (std::int64_t c = 0; c < sae.d_in(); ++c) s += double(w[c]) * double(embeddings(v, c));
    all[v] = {static_cast<std::int32_t>(v), static_cast<float>(s * inv_s)};
  }
  std::partial_sort(all.begin(), all.begin() + k, all.end(), [](const token_score& a, const token_score& b) {
    return a.score > b.score || (a.score == b.score && a.token < b.token);
  });
  all.resize(static_cast<std::size_t>(k));
  return all;
}

}  // namespace xplor::interp
