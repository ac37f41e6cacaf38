// The Dragon Hatchling (BDH-GPU): hand-computed values on a two-neuron model, the forward against
// a naive double-precision implementation of the equations, gradients against finite differences
// (element-wise in double on the naive loss, and directionally on the model itself, with dropout),
// recurrent decoding == the parallel form, fork independence and fixed-size states, checkpoints,
// activation statistics, hooks, bad input, learning a copy task with AdamW, and the authors'
// PyTorch module's own outputs (tests/data/bdh, tools/bdh_peer_goldens.py).
#include "xplor/model/bdh.hpp"
#include "xplor/model/bdh_checkpoint.hpp"
#include "xplor/model/bdh_decode.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "../gradient_check.hpp"
#include "xplor/model/optim.hpp"

namespace xm = xplor::model;
namespace fs = std::filesystem;

namespace {

xm::bdh_config tiny(int layers = 2, int embd = 8, int heads = 2, int mult = 2, int vocab = 7) {
  xm::bdh_config c;
  c.n_layer = layers;
  c.n_embd = embd;
  c.n_head = heads;
  c.mlp_internal_dim_multiplier = mult;
  c.vocab_size = vocab;
  c.dropout = 0.0f;
  return c;
}

/// Scales every parameter by `k` (N(0, 0.02) keeps the activations tiny; tests want them lively).
void scale_params(xm::bdh& m, float k) {
  for (float& p : m.params()) p *= k;
}

struct batch {
  std::vector<std::int32_t> tokens, targets;
  std::int64_t B, T;
  batch(std::int64_t b, std::int64_t t, std::uint32_t seed, int vocab) : B(b), T(t) {
    std::mt19937 rng(seed);
    for (std::int64_t i = 0; i < B * T; ++i) {
      tokens.push_back(static_cast<std::int32_t>(rng() % static_cast<unsigned>(vocab)));
      targets.push_back(static_cast<std::int32_t>(rng() % static_cast<unsigned>(vocab)));
    }
  }
  xm::forward_batch view() const { return {tokens, B, T, targets, {}, {}}; }
};

struct temp_dir {
  fs::path path;
  temp_dir() {
    path = fs::temp_directory_path() / ("xplor_bdh_test_" + std::to_string(std::random_device{}()));
    fs::create_directories(path);
  }
  ~temp_dir() { fs::remove_all(path); }
};

/// The equations of bdh.py written out naively in double: returns the mean cross-entropy and
/// fills logits [B T, V]. P holds the parameters in the model's layout.
double reference_loss(const xm::bdh_config& c, const xm::bdh_offsets& o, const std::vector<double>& P,
                      const batch& bt, std::vector<double>* logits_out = nullptr) {
  const std::int64_t D = c.n_embd, H = c.n_head, N = c.neurons(), V = c.vocab_size, T = bt.T;
  const std::vector<float> freqs = xm::bdh_rope_freqs(N);
  auto ln = [&](std::vector<double>& v) {
    double mean = 0, var = 0;
    for (double e : v) mean += e;
    mean /= double(v.size());
    for (double e : v) var += (e - mean) * (e - mean);
    var /= double(v.size());
    const double r = 1.0 / std::sqrt(var + double(c.norm_eps));
    for (double& e : v) e = (e - mean) * r;
  };
  auto enc = [&](std::int64_t off, std::int64_t h, std::int64_t d, std::int64_t n) {
    return P[static_cast<std::size_t>(off + (h * D + d) * N + n)];
  };
  double loss = 0.0;
  if (logits_out != nullptr) logits_out->assign(static_cast<std::size_t>(bt.B * T * V), 0.0);
  for (std::int64_t b = 0; b < bt.B; ++b) {
    std::vector<std::vector<double>> x(static_cast<std::size_t>(T), std::vector<double>(D));
    for (std::int64_t t = 0; t < T; ++t) {
      for (std::int64_t d = 0; d < D; ++d) x[t][d] = P[o.embed + bt.tokens[b * T + t] * D + d];
      ln(x[t]);
    }
    std::vector<float> cs(N / 2), sn(N / 2);
    for (int l = 0; l < c.n_layer; ++l) {
      std::vector<std::vector<double>> xs(T, std::vector<double>(H * N)), qr = xs, ys = xs;
      for (std::int64_t t = 0; t < T; ++t) {
        xm::bdh_rope_angles(t, freqs, cs.data(), sn.data());
        for (std::int64_t h = 0; h < H; ++h)
          for (std::int64_t n = 0; n < N; ++n) {
            double s = 0;
            for (std::int64_t d = 0; d < D; ++d) s += x[t][d] * enc(o.encoder, h, d, n);
            xs[t][h * N + n] = std::max(s, 0.0);
          }
        for (std::int64_t h = 0; h < H; ++h)
          for (std::int64_t i = 0; i < N / 2; ++i) {
            const double a = xs[t][h * N + 2 * i], bb = xs[t][h * N + 2 * i + 1];
            qr[t][h * N + 2 * i] = a * cs[i] - bb * sn[i];
            qr[t][h * N + 2 * i + 1] = bb * cs[i] + a * sn[i];
          }
      }
      std::vector<std::vector<double>> next = x;
      for (std::int64_t t = 0; t < T; ++t) {
        for (std::int64_t h = 0; h < H; ++h) {
          std::vector<double> a(D, 0.0);
          for (std::int64_t u = 0; u < t; ++u) {
            double s = 0;
            for (std::int64_t n = 0; n < N; ++n) s += qr[t][h * N + n] * qr[u][h * N + n];
            for (std::int64_t d = 0; d < D; ++d) a[d] += s * x[u][d];
          }
          ln(a);
          for (std::int64_t n = 0; n < N; ++n) {
            double s = 0;
            for (std::int64_t d = 0; d < D; ++d) s += a[d] * enc(o.encoder_v, h, d, n);
            ys[t][h * N + n] = std::max(s, 0.0);
          }
        }
        std::vector<double> y(D, 0.0);
        for (std::int64_t k = 0; k < H * N; ++k)
          for (std::int64_t d = 0; d < D; ++d) y[d] += xs[t][k] * ys[t][k] * P[o.decoder + k * D + d];
        ln(y);
        for (std::int64_t d = 0; d < D; ++d) next[t][d] = x[t][d] + y[d];
        ln(next[t]);
      }
      x = next;
    }
    for (std::int64_t t = 0; t < T; ++t) {
      std::vector<double> z(V, 0.0);
      for (std::int64_t v = 0; v < V; ++v)
        for (std::int64_t d = 0; d < D; ++d) z[v] += x[t][d] * P[o.lm_head + d * V + v];
      double mx = z[0], sum = 0;
      for (double e : z) mx = std::max(mx, e);
      for (double e : z) sum += std::exp(e - mx);
      loss -= z[bt.targets[b * T + t]] - mx - std::log(sum);
      if (logits_out != nullptr)
        for (std::int64_t v = 0; v < V; ++v) (*logits_out)[(b * T + t) * V + v] = z[v];
    }
  }
  return loss / double(bt.B * T);
}

/// max |a - b| / max |b| over a span.
double max_rel(std::span<const float> a, std::span<const float> b) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

std::vector<float> row(xplor::view2d<const float> v, std::int64_t r) {
  std::vector<float> out(static_cast<std::size_t>(v.cols()));
  for (std::int64_t j = 0; j < v.cols(); ++j) out[j] = v(r, j);
  return out;
}

}  // namespace

TEST_CASE("bdh config validation names the field and value", "[bdh]") {
  CHECK_NOTHROW(tiny().validate());
  CHECK_NOTHROW(xm::bdh_config{}.validate());  // the authors' defaults
  CHECK(xm::bdh_config{}.neurons() == 8192);
  auto bad = [](auto edit, const char* text) {
    auto c = tiny();
    edit(c);
    CHECK_THROWS_WITH(c.validate(), Catch::Contains(text));
    CHECK_THROWS_WITH(xm::bdh(c), Catch::Contains(text));
  };
  bad([](auto& c) { c.n_layer = 0; }, "n_layer = 0");
  bad([](auto& c) { c.n_embd = -3; }, "n_embd = -3");
  bad([](auto& c) { c.n_head = 0; }, "n_head = 0");
  bad([](auto& c) { c.mlp_internal_dim_multiplier = 0; }, "mlp_internal_dim_multiplier = 0");
  bad([](auto& c) { c.vocab_size = 0; }, "vocab_size = 0");
  bad([](auto& c) { c.n_head = 3; }, "n_head = 3 must divide");
  bad([](auto& c) { c.n_embd = 3, c.n_head = 1, c.mlp_internal_dim_multiplier = 1; }, "must be even");
  bad([](auto& c) { c.dropout = 1.0f; }, "dropout = 1");
  bad([](auto& c) { c.dropout = std::nanf(""); }, "dropout = nan");
  bad([](auto& c) { c.init_std = 0.0f; }, "init_std = 0");
  bad([](auto& c) { c.norm_eps = -1.0f; }, "norm_eps = -1");
}

TEST_CASE("bdh_matching: the transformer's shape at the nearest parameter count", "[bdh]") {
  xm::transformer_config t;
  t.vocab_size = 259, t.d_model = 128, t.n_layers = 3, t.n_heads = 4, t.d_ff = 384, t.max_seq_len = 128;
  const std::int64_t target = xm::parameter_layout(t).total;
  // Hand value: 3 M 128^2 + 2 259 128 is nearest 673,024 at M = 12 (656,128; M = 13 gives 705,280).
  const xm::bdh_config c = xm::bdh_matching(t);
  CHECK(c.mlp_internal_dim_multiplier == 12);
  CHECK(xm::bdh_layout(c).total == 656128);
  CHECK((c.n_embd == 128 && c.n_layer == 3 && c.n_head == 4 && c.vocab_size == 259 && c.dropout == 0.0f));
  // Property: over random shapes, no valid multiplier is nearer the transformer's count.
  std::mt19937 rng(5);
  for (int trial = 0; trial < 50; ++trial) {
    xm::transformer_config r;
    r.n_heads = 1 + static_cast<int>(rng() % 4);
    r.d_model = r.n_heads * 2 * (1 + static_cast<int>(rng() % 12));
    r.n_layers = 1 + static_cast<int>(rng() % 4);
    r.d_ff = r.d_model * (1 + static_cast<int>(rng() % 4));
    r.vocab_size = 5 + static_cast<int>(rng() % 300);
    r.max_seq_len = 16;
    const xm::bdh_config m = xm::bdh_matching(r);
    const std::int64_t goal = xm::parameter_layout(r).total;
    const auto gap = [&](std::int64_t n) { return std::abs(n - goal); };
    for (int k = 1; k <= 64; ++k) {
      xm::bdh_config other = m;
      other.mlp_internal_dim_multiplier = k;
      if ((std::int64_t{k} * r.d_model) % r.n_heads != 0 || other.neurons() % 2 != 0) continue;
      CHECK(gap(xm::bdh_layout(m).total) <= gap(xm::bdh_layout(other).total));
    }
  }
  CHECK(xm::bdh_matching(t, 7).mlp_internal_dim_multiplier == 7);
  CHECK(target == 673024);
  t.d_model = 6, t.n_heads = 2;              // 3 neurons per head at multiplier 1: odd
  t.positions = xm::position_kind::learned;  // (a rope transformer needs even heads itself)
  CHECK_THROWS_WITH(xm::bdh_matching(t, 1), Catch::Contains("multiplier = 1"));
  CHECK_THROWS_WITH(xm::bdh_matching(t, -2), Catch::Contains("multiplier = -2"));
  t.n_heads = 0;  // the transformer's own validation runs first (no division by zero heads)
  CHECK_THROWS_WITH(xm::bdh_matching(t, 2), Catch::Contains("n_heads"));
}

TEST_CASE("bdh parameter table follows the authors' state_dict names and shapes", "[bdh]") {
  const auto c = tiny(2, 8, 2, 2, 7);
  xm::bdh m(c, 1);
  const auto& t = m.layout().tensors;
  REQUIRE(t.size() == 5);
  CHECK(t[0].name == "decoder");
  CHECK(t[0].shape == std::vector<std::int64_t>{16, 8});
  CHECK(t[1].name == "encoder");
  CHECK(t[1].shape == std::vector<std::int64_t>{2, 8, 8});
  CHECK(t[2].name == "encoder_v");
  CHECK(t[2].shape == std::vector<std::int64_t>{2, 8, 8});
  CHECK(t[3].name == "lm_head");
  CHECK(t[3].shape == std::vector<std::int64_t>{8, 7});
  CHECK(t[4].name == "embed.weight");
  CHECK(t[4].shape == std::vector<std::int64_t>{7, 8});
  CHECK(m.num_params() == 128 + 128 + 128 + 56 + 56);
  // N(0, 0.02) draws, deterministic in the seed.
  double ss = 0;
  for (float p : m.params()) ss += double(p) * p;
  CHECK(std::sqrt(ss / double(m.num_params())) == Approx(0.02).epsilon(0.15));
  xm::bdh again(c, 1), other(c, 2);
  CHECK(std::equal(m.params().begin(), m.params().end(), again.params().begin()));
  CHECK_FALSE(std::equal(m.params().begin(), m.params().end(), other.params().begin()));
  CHECK_THROWS_WITH(m.param("attn.freqs"), Catch::Contains("no tensor named 'attn.freqs'"));
}

TEST_CASE("bdh rope frequencies and angles: hand values", "[bdh]") {
  const auto f = xm::bdh_rope_freqs(4);
  const double two_pi = 2.0 * 3.141592653589793;
  // theta^(-floor(n/2)*2/N) / 2pi with theta = 2^16, N = 4: pairs (1, 1), (2^-8, 2^-8).
  CHECK(f[0] == Approx(1.0 / two_pi).epsilon(1e-7));
  CHECK(f[1] == f[0]);
  CHECK(f[2] == Approx(1.0 / 256.0 / two_pi).epsilon(1e-6));
  CHECK(f[3] == f[2]);
  float cs[2], sn[2];
  xm::bdh_rope_angles(0, f, cs, sn);
  CHECK(cs[0] == 1.0f);
  CHECK(sn[0] == 0.0f);
  xm::bdh_rope_angles(3, f, cs, sn);  // 3 / 2pi turns: 3 radians; 3/256 radians
  CHECK(cs[0] == Approx(std::cos(3.0)).margin(1e-6));
  CHECK(sn[0] == Approx(std::sin(3.0)).margin(1e-6));
  CHECK(sn[1] == Approx(std::sin(3.0 / 256)).margin(1e-6));
  // Phases are taken mod one turn: position 2 pi k lands near the start (a property).
  xm::bdh_rope_angles(1000, f, cs, sn);
  CHECK(cs[0] == Approx(std::cos(1000.0)).margin(2e-4));
  // The rotation is orthogonal: backward(forward(v)) = v.
  const float v[4] = {0.3f, -1.2f, 2.0f, 0.5f};
  float r[4], back[4] = {0, 0, 0, 0};
  xm::bdh_rope_row(v, cs, sn, r, 4);
  xm::bdh_rope_row_backward(r, cs, sn, back, 4);
  for (int i = 0; i < 4; ++i) CHECK(back[i] == Approx(v[i]).margin(1e-6));
  CHECK(r[0] * r[0] + r[1] * r[1] == Approx(v[0] * v[0] + v[1] * v[1]).epsilon(1e-6));
}

TEST_CASE("bdh forward on a two-neuron model matches hand-computed values", "[bdh]") {
  // D = 2, H = 1, N = 2, V = 3, one layer; identity encoders and decoder.
  xm::bdh_config c = tiny(1, 2, 1, 1, 3);
  xm::bdh m(c, 0);
  auto set = [&](const char* name, std::vector<float> v) {
    auto s = m.param(name);
    REQUIRE(s.size() == v.size());
    std::copy(v.begin(), v.end(), s.begin());
  };
  set("embed.weight", {1, -1, -1, 1, 0.5f, 0});
  set("encoder", {1, 0, 0, 1});
  set("encoder_v", {1, 0, 0, 1});
  set("decoder", {1, 0, 0, 1});
  set("lm_head", {1, 0, 2, 0, 1, -1});
  const std::vector<std::int32_t> tokens{0, 0}, targets{2, 1};
  const float loss = m.forward({tokens, 1, 2, targets, {}, {}});
  const double eps = 1e-5;
  auto unit = [&](double d) { return d / std::sqrt(d * d + eps); };  // LN of (a, b) is +-unit((a-b)/2)
  const double k = unit(1.0);                                        // x = LN(embed[0]) = (k, -k)
  const double c1 = k * k * k * std::cos(1.0);  // a_1 = (QR_1 . QR_0) x_0, QR_1 rotated by 1 radian
  const double k1 = unit(c1);                   // LN(a_1) = (k1, -k1), ys_1 = (k1, 0)
  const double k2 = unit(k * k1 / 2);           // y_1 = LN((k k1, 0))
  const double out0 = unit(k), out1 = unit(k + k2);
  const auto z = m.logits();
  CHECK(z(0, 0) == Approx(out0).epsilon(1e-6));
  CHECK(z(0, 1) == Approx(-out0).epsilon(1e-6));
  CHECK(z(0, 2) == Approx(3 * out0).epsilon(1e-6));
  CHECK(z(1, 0) == Approx(out1).epsilon(1e-6));
  CHECK(z(1, 2) == Approx(3 * out1).epsilon(1e-6));
  auto lse = [](double a, double b, double cc) { return std::log(std::exp(a) + std::exp(b) + std::exp(cc)); };
  const double expected =
      0.5 * ((lse(out0, -out0, 3 * out0) - 3 * out0) + (lse(out1, -out1, 3 * out1) + out1));
  CHECK(loss == Approx(expected).epsilon(1e-6));
  // Half the neurons of each token are active in x_sparse; y_sparse is empty at t = 0.
  const auto act = m.activity();
  CHECK(act.x(0, 0) == 0.5f);
  CHECK(act.x(0, 1) == 0.5f);
  CHECK(act.y(0, 0) == 0.0f);
  CHECK(act.y(0, 1) == 0.5f);
  CHECK(act.y_mean(0) == 0.25f);
  CHECK_THROWS_WITH(act.x_mean(1), Catch::Contains("layer = 1"));
}

TEST_CASE("bdh forward equals the naive double-precision equations", "[bdh]") {
  for (int layers : {1, 3}) {
    const auto c = tiny(layers, 8, 2, 2, 7);
    xm::bdh m(c, 5);
    scale_params(m, 15.0f);
    const batch b(2, 9, 3, c.vocab_size);
    const float loss = m.forward(b.view());
    std::vector<double> P(m.params().begin(), m.params().end()), ref;
    const double ref_loss = reference_loss(c, m.offsets(), P, b, &ref);
    CHECK(loss == Approx(ref_loss).epsilon(1e-5));
    const auto z = m.logits();
    double diff = 0, scale = 0;
    for (std::int64_t i = 0; i < z.rows(); ++i)
      for (std::int64_t v = 0; v < z.cols(); ++v) {
        diff = std::max(diff, std::abs(z(i, v) - ref[i * z.cols() + v]));
        scale = std::max(scale, std::abs(ref[i * z.cols() + v]));
      }
    CHECK(diff / scale < 1e-5);
  }
}

TEST_CASE("bdh backward equals element-wise finite differences of the double equations", "[bdh]") {
  const auto c = tiny(2, 8, 2, 2, 7);
  xm::bdh m(c, 11);
  scale_params(m, 15.0f);
  const batch b(2, 6, 4, c.vocab_size);
  m.zero_grad();
  m.forward(b.view());
  m.backward();
  std::vector<double> P(m.params().begin(), m.params().end());
  for (const auto& t : m.layout().tensors) {
    INFO("tensor " << t.name);
    double worst = 0, scale = 0;
    for (std::int64_t i = 0; i < t.size; ++i) {
      const auto k = static_cast<std::size_t>(t.offset + i);
      const double h = 1e-6, p0 = P[k];
      P[k] = p0 + h;
      const double up = reference_loss(c, m.offsets(), P, b);
      P[k] = p0 - h;
      const double down = reference_loss(c, m.offsets(), P, b);
      P[k] = p0;
      const double fd = (up - down) / (2 * h);
      worst = std::max(worst, std::abs(fd - double(m.grads()[k])));
      scale = std::max(scale, std::abs(fd));
    }
    CHECK(scale > 0);
    CHECK(worst <= 2e-4 * scale);
  }
}

TEST_CASE("bdh backward passes directional finite differences, with and without dropout", "[bdh]") {
  for (float dropout : {0.0f, 0.3f}) {
    auto c = tiny(2, 8, 2, 2, 7);
    c.dropout = dropout;
    xm::bdh m(c, 21);
    scale_params(m, 15.0f);
    m.train(dropout > 0.0f, 77);
    const batch b(2, 5, 8, c.vocab_size);
    m.zero_grad();
    m.set_dropout_call(3);
    m.forward(b.view());
    m.backward();
    const std::vector<float> analytic(m.grads().begin(), m.grads().end());
    auto objective = [&]() {
      m.set_dropout_call(3);  // the same masks every time
      return double(m.forward(b.view()));
    };
    INFO("dropout " << dropout);
    xplor::testing::check_directional_gradients(m.layout(), m.params(), analytic, objective,
                                                [](const std::string&) { return true; });
  }
}

TEST_CASE("bdh dropout is deterministic, scaled and only in training mode", "[bdh]") {
  auto c = tiny(1, 8, 2, 4, 7);
  c.dropout = 0.5f;
  xm::bdh m(c, 3);
  scale_params(m, 15.0f);
  const batch b(1, 8, 2, c.vocab_size);
  const float eval1 = m.forward(b.view()), eval2 = m.forward(b.view());
  CHECK(eval1 == eval2);
  m.train(true, 5);
  const float t0 = m.forward(b.view());
  const float t1 = m.forward(b.view());
  CHECK(t0 != t1);  // a new mask per call
  m.set_dropout_call(0);
  CHECK(m.forward(b.view()) == t0);  // replayed
  CHECK(t0 != eval1);
  m.train(false);
  CHECK(m.forward(b.view()) == eval1);
}

TEST_CASE("bdh recurrent decoding equals the parallel form", "[bdh][decode]") {
  const auto c = tiny(3, 16, 2, 4, 11);
  xm::bdh m(c, 8);
  scale_params(m, 10.0f);
  const batch b(2, 14, 6, c.vocab_size);
  m.forward(b.view());
  const auto z = m.logits();
  xm::bdh_decoder dec(m);
  double worst = 0;
  for (std::int64_t s = 0; s < b.B; ++s) {
    const std::int32_t* seq = b.tokens.data() + s * b.T;
    // Purely recurrent: one token, then steps.
    auto id = dec.begin(std::span<const std::int32_t>(seq, 1));
    worst = std::max(worst, max_rel(row(dec.logits(std::span(&id, 1)), 0), row(z, s * b.T)));
    for (std::int64_t t = 1; t < b.T; ++t) {
      const auto out = dec.step(std::span(&id, 1), std::span<const std::int32_t>(seq + t, 1));
      worst = std::max(worst, max_rel(row(out, 0), row(z, s * b.T + t)));
    }
    CHECK(dec.length(id) == b.T);
    // A chunked prefill of 5 tokens, then steps.
    auto id2 = dec.begin(std::span<const std::int32_t>(seq, 5));
    worst = std::max(worst, max_rel(row(dec.logits(std::span(&id2, 1)), 0), row(z, s * b.T + 4)));
    for (std::int64_t t = 5; t < b.T; ++t) {
      const auto out = dec.step(std::span(&id2, 1), std::span<const std::int32_t>(seq + t, 1));
      worst = std::max(worst, max_rel(row(out, 0), row(z, s * b.T + t)));
    }
    // The recurrent state is the sum of the rotated keys times the values: same for both routes.
    CHECK(max_rel(std::span<const float>(&dec.synapses(id, 2, 1)(0, 0), c.neurons() * c.n_embd),
                  std::span<const float>(&dec.synapses(id2, 2, 1)(0, 0), c.neurons() * c.n_embd)) < 1e-5);
    dec.release(std::vector<xm::bdh_decoder::state_id>{id, id2});
  }
  CHECK(worst < 1e-5);
  CHECK(dec.live_states() == 0);
  // A batched prefill of the two sequences equals the parallel forward's last rows.
  std::vector<std::vector<std::int32_t>> prompts{{b.tokens.begin(), b.tokens.begin() + b.T},
                                                 {b.tokens.begin() + b.T, b.tokens.end()}};
  const auto ids = dec.begin(prompts);
  const auto out = dec.logits(ids);
  CHECK(max_rel(row(out, 0), row(z, b.T - 1)) < 1e-5);
  CHECK(max_rel(row(out, 1), row(z, 2 * b.T - 1)) < 1e-5);
  // Prefilled in chunks of 3 (prompts of different lengths in one batch), then a step.
  dec.set_prefill_chunk(3);
  prompts[1].resize(8);
  const auto chunked = dec.begin(prompts);
  CHECK(dec.length(chunked[0]) == b.T);
  CHECK(dec.length(chunked[1]) == 8);
  const auto out2 = dec.logits(chunked);
  CHECK(max_rel(row(out2, 0), row(z, b.T - 1)) < 1e-5);
  CHECK(max_rel(row(out2, 1), row(z, b.T + 7)) < 1e-5);
  const std::int32_t ninth = b.tokens[b.T + 8];
  const auto after = dec.step(std::span(&chunked[1], 1), std::span(&ninth, 1));
  CHECK(max_rel(row(after, 0), row(z, b.T + 8)) < 1e-5);
  CHECK_THROWS_WITH(dec.set_prefill_chunk(0), Catch::Contains("tokens = 0"));
}

TEST_CASE("bdh forks copy a fixed-size state and decode independently", "[bdh][decode]") {
  const auto c = tiny(2, 8, 2, 2, 9);
  xm::bdh m(c, 4);
  scale_params(m, 12.0f);
  xm::bdh_decoder dec(m);
  const std::vector<std::int32_t> prompt{1, 4, 2, 7, 3};
  const auto root = dec.begin(prompt);
  const std::int64_t bytes = dec.state_bytes();
  CHECK(bytes == (2 * 2 * 8 * 8 + 8) * 4);
  const auto kids = dec.fork(root, 2);
  REQUIRE(kids.size() == 2);
  CHECK(dec.cache_bytes() == 3 * bytes);
  const std::vector<std::int32_t> next{5, 0};
  const auto both = dec.step(kids, next);
  const std::vector<float> a = row(both, 0), b2 = row(both, 1);
  // Each equals an independent decode of prompt + its token.
  for (int i = 0; i < 2; ++i) {
    xm::bdh_decoder solo(m);
    const auto s = solo.begin(prompt);
    const auto o = solo.step(std::span(&s, 1), std::span(&next[i], 1));
    CHECK(row(o, 0) == (i == 0 ? a : b2));
  }
  CHECK(a != b2);
  // The parent is untouched by its children's steps.
  xm::bdh_decoder fresh(m);
  const auto f = fresh.begin(prompt);
  CHECK(row(dec.logits(std::span(&root, 1)), 0) == row(fresh.logits(std::span(&f, 1)), 0));
  CHECK(dec.length(root) == 5);
  CHECK(dec.length(kids[0]) == 6);
  // Memory per state does not grow with the prompt.
  std::vector<std::int32_t> longer(200, 3);
  const auto big = dec.begin(longer);
  const auto big_kids = dec.fork(big, 3);
  CHECK(dec.cache_bytes() == 7 * bytes);
  dec.release(big_kids);
  dec.release(big);
  CHECK(dec.live_states() == 3);
}

TEST_CASE("bdh decoder rejects bad input", "[bdh][decode]") {
  const auto c = tiny(1, 8, 2, 2, 5);
  xm::bdh m(c, 4);
  xm::bdh_decoder dec(m);
  CHECK_THROWS_WITH(dec.begin(std::vector<std::int32_t>{}), Catch::Contains("prompt is empty"));
  CHECK_THROWS_WITH(dec.begin(std::vector<std::int32_t>{1, 5}), Catch::Contains("prompt[1] = 5 is outside"));
  CHECK_THROWS_WITH(dec.begin(std::vector<std::vector<std::int32_t>>{{1}, {-2}}),
                    Catch::Contains("prompts[1][0] = -2"));
  const auto s = dec.begin(std::vector<std::int32_t>{1, 2});
  const std::vector<xm::bdh_decoder::state_id> twice{s, s};
  const std::vector<std::int32_t> two{1, 1};
  CHECK_THROWS_WITH(dec.step(twice, two), Catch::Contains("appears twice"));
  CHECK_THROWS_WITH(dec.step(std::span(&s, 1), std::span(two)),
                    Catch::Contains("tokens has 2 elements for 1"));
  const std::int32_t bad = 9;
  CHECK_THROWS_WITH(dec.step(std::span(&s, 1), std::span(&bad, 1)), Catch::Contains("tokens[0] = 9"));
  CHECK_THROWS_WITH(dec.fork(s, -1), Catch::Contains("n = -1"));
  CHECK_THROWS_WITH(dec.synapses(s, 1, 0), Catch::Contains("layer = 1"));
  dec.release(s);
  CHECK_THROWS_WITH(dec.logits(std::span(&s, 1)), Catch::Contains("state 0 is not a live state"));
  CHECK_THROWS_WITH(dec.release(s), Catch::Contains("not a live state"));
  CHECK_THROWS_WITH(dec.fork(7, 1), Catch::Contains("state 7 is not a live state"));
  CHECK_THROWS_WITH(dec.begin(std::vector<std::int32_t>{1, xm::latent_slot}),
                    Catch::Contains("prompt[1] is latent_slot"));
  // A throwing hook: the states it interrupted are released, not left half-updated.
  const auto kept = dec.begin(std::vector<std::int32_t>{1, 2});
  const auto hit = dec.fork(kept, 1);
  dec.set_hooks({.after_block = [](int, xplor::view2d<float>) { throw std::runtime_error("hook failed"); }});
  const std::int32_t one = 1;
  CHECK_THROWS_WITH(dec.step(hit, std::span(&one, 1)), Catch::Contains("hook failed"));
  CHECK_THROWS_WITH(dec.begin(std::vector<std::int32_t>{3}), Catch::Contains("hook failed"));
  CHECK(dec.live_states() == 1);  // only `kept`, which the failed calls did not touch
  CHECK_THROWS_WITH(dec.logits(hit), Catch::Contains("is not a live state"));
  dec.set_hooks({});
  CHECK(dec.length(kept) == 2);
}

TEST_CASE("bdh forward rejects bad batches", "[bdh]") {
  const auto c = tiny(1, 8, 2, 2, 5);
  xm::bdh m(c, 4);
  const std::vector<std::int32_t> tokens{1, 2, 3}, targets{1, 2, 3};
  CHECK_THROWS_WITH(m.forward({tokens, 0, 3, {}, {}, {}}), Catch::Contains("batch = 0"));
  CHECK_THROWS_WITH(m.forward({tokens, 1, 0, {}, {}, {}}), Catch::Contains("seq_len = 0"));
  CHECK_THROWS_WITH(m.forward({tokens, 1, 2, {}, {}, {}}), Catch::Contains("tokens has 3 elements"));
  const std::vector<std::int32_t> big{1, 5, 2};
  CHECK_THROWS_WITH(m.forward({big, 1, 3, {}, {}, {}}), Catch::Contains("tokens[1] = 5"));
  const std::vector<std::int32_t> bad_targets{1, 9, 2};
  CHECK_THROWS_WITH(m.forward({tokens, 1, 3, bad_targets, {}, {}}), Catch::Contains("targets[1] = 9"));
  const std::vector<float> mask{1, -1, 1};
  CHECK_THROWS_WITH(m.forward({tokens, 1, 3, targets, mask, {}}), Catch::Contains("loss_mask[1] = -1"));
  xm::bdh fresh(c, 4);
  CHECK_THROWS_WITH(fresh.backward(), Catch::Contains("no forward pass"));
  CHECK_THROWS_WITH(fresh.residual(0), Catch::Contains("has not run a forward pass"));
  m.forward({tokens, 1, 3, targets, {}, {}});
  CHECK_THROWS_WITH(m.residual(2), Catch::Contains("layer = 2"));
  const std::vector<float> dlogp{0, 1};
  CHECK_THROWS_WITH(m.backward(std::span<const float>(dlogp)), Catch::Contains("dlogp has 2 elements"));
}

TEST_CASE("bdh latents, hooks and the logit lens", "[bdh]") {
  const auto c = tiny(2, 8, 2, 2, 7);
  xm::bdh m(c, 6);
  scale_params(m, 12.0f);
  const batch b(1, 6, 9, c.vocab_size);
  const float base = m.forward(b.view());
  const std::vector<float> base_last = row(m.logits(), 5);
  // The lens at the last layer is the model's head, bit for bit.
  const auto lens = m.lens_logits(m.residual(2));
  const auto z = m.logits();
  bool same = true;
  for (std::int64_t i = 0; i < z.rows(); ++i)
    for (std::int64_t v = 0; v < z.cols(); ++v) same = same && lens[i * z.cols() + v] == z(i, v);
  CHECK(same);
  // A latent row equal to a token's embedding gives the same forward; its gradient is the
  // embedding row's share.
  std::vector<std::int32_t> tokens = b.tokens;
  const std::int32_t replaced = tokens[2];
  tokens[2] = xm::latent_slot;
  std::vector<float> latent(m.param("embed.weight").begin() + replaced * 8,
                            m.param("embed.weight").begin() + replaced * 8 + 8);
  const float with_latent = m.forward({tokens, 1, 6, b.targets, {}, xplor::make_view(latent.data(), {1, 8})});
  CHECK(with_latent == base);
  m.zero_grad();
  m.backward();
  CHECK(m.latent_grads().rows() == 1);
  double norm = 0;
  for (std::int64_t d = 0; d < 8; ++d) norm += std::abs(m.latent_grads()(0, d));
  CHECK(norm > 0);
  // A steering hook changes what later layers see, in the forward and in the decoder alike.
  std::vector<float> seen;
  xm::forward_hooks hooks;
  hooks.after_block = [&](int layer, xplor::view2d<float> r) {
    if (layer == 0)
      for (std::int64_t i = 0; i < r.rows(); ++i) r(i, 3) += 0.5f;
  };
  m.forward(b.view(), hooks);
  const auto steered = row(m.logits(), 5);
  CHECK(steered != base_last);
  xm::bdh_decoder dec(m);
  dec.set_hooks(hooks);
  auto id = dec.begin(std::span<const std::int32_t>(b.tokens.data(), 1));
  std::vector<float> last;
  for (std::int64_t t = 1; t < 6; ++t)
    last = row(dec.step(std::span(&id, 1), std::span<const std::int32_t>(b.tokens.data() + t, 1)), 0);
  CHECK(max_rel(last, steered) < 1e-5);
}

TEST_CASE("bdh checkpoints round-trip and reject bad files", "[bdh][checkpoint]") {
  temp_dir dir;
  const auto c = tiny(2, 8, 2, 2, 7);
  xm::bdh a(c, 3);
  xm::adamw opt(a.layout());
  const batch b(1, 5, 2, c.vocab_size);
  a.forward(b.view());
  a.backward();
  opt.step(a.params(), a.grads(), 1e-2f);
  const fs::path file = dir.path / "a.safetensors";
  xm::save_checkpoint(file, a, &opt, {{"step", "1"}});
  CHECK(xm::read_bdh_checkpoint_config(file) == c);
  const auto raw = xm::read_safetensors(file);
  CHECK(raw.tensors.count("embed.weight") == 1);
  CHECK(raw.tensors.at("attn.freqs").shape == std::vector<std::int64_t>{1, 1, 1, 8});
  CHECK(raw.tensors.count("optimizer.m.encoder_v") == 1);
  xm::bdh loaded(c, 99);
  xm::adamw opt2(loaded.layout());
  const auto meta = xm::load_checkpoint(file, loaded, &opt2);
  CHECK(meta.at("step") == "1");
  CHECK(std::equal(a.params().begin(), a.params().end(), loaded.params().begin()));
  CHECK(std::equal(opt.second_moment().begin(), opt.second_moment().end(), opt2.second_moment().begin()));
  CHECK(opt2.steps() == 1);
  CHECK(a.forward(b.view()) == loaded.forward(b.view()));

  // Another config: the differing field is named, and nothing changes.
  xm::bdh other(tiny(2, 8, 2, 4, 7), 1);
  const std::vector<float> before(other.params().begin(), other.params().end());
  CHECK_THROWS_WITH(xm::load_checkpoint(file, other),
                    Catch::Contains("config mismatch, mlp_internal_dim_multiplier: file 2, model 4"));
  CHECK(std::equal(before.begin(), before.end(), other.params().begin()));

  // Hand-made files (no content hash: loaded with a warning, then validated).
  auto write = [&](const char* name, std::vector<xm::tensor_view_in> tensors) {
    const fs::path p = dir.path / name;
    xm::write_safetensors(p, tensors, xm::bdh_config_metadata(c));
    return p;
  };
  std::vector<xm::tensor_view_in> good;
  for (const auto& t : a.layout().tensors)
    good.push_back(
        {t.name, t.shape,
         a.params().subspan(static_cast<std::size_t>(t.offset), static_cast<std::size_t>(t.size))});
  xm::bdh target(c, 5);
  CHECK_NOTHROW(xm::load_checkpoint(write("no_freqs.safetensors", good), target));  // attn.freqs optional
  auto missing = good;
  missing.pop_back();
  CHECK_THROWS_WITH(xm::load_checkpoint(write("missing.safetensors", missing), target),
                    Catch::Contains("tensor 'embed.weight' is missing"));
  auto shaped = good;
  shaped[0].shape = {8, 16};
  CHECK_THROWS_WITH(xm::load_checkpoint(write("shape.safetensors", shaped), target),
                    Catch::Contains("tensor 'decoder' has shape [8, 16], the model needs [16, 8]"));
  auto extra = good;
  const std::vector<float> junk(3, 0.0f);
  extra.push_back({"ln.weight", {3}, junk});
  CHECK_THROWS_WITH(xm::load_checkpoint(write("extra.safetensors", extra), target),
                    Catch::Contains("unexpected tensor 'ln.weight'"));
  auto freqs = good;
  std::vector<float> wrong(a.rope_freqs().begin(), a.rope_freqs().end());
  wrong[2] *= 2.0f;
  freqs.push_back({"attn.freqs", {1, 1, 1, 8}, wrong});
  CHECK_THROWS_WITH(xm::load_checkpoint(write("freqs.safetensors", freqs), target),
                    Catch::Contains("attn.freqs[2]"));
  std::vector<float> nan_data(good[3].data.begin(), good[3].data.end());
  nan_data[1] = std::nanf("");
  auto nan = good;
  nan[3].data = nan_data;
  CHECK_THROWS_WITH(xm::load_checkpoint(write("nan.safetensors", nan), target),
                    Catch::Contains("tensor 'lm_head' element 1 is nan"));
  // A transformer checkpoint is not a BDH checkpoint.
  auto meta_bad = xm::bdh_config_metadata(c);
  meta_bad["format"] = "xplor.transformer.v1";
  xm::write_safetensors(dir.path / "format.safetensors", good, meta_bad);
  CHECK_THROWS_WITH(xm::load_checkpoint(dir.path / "format.safetensors", target),
                    Catch::Contains("format 'xplor.transformer.v1' is not 'xplor.bdh.v1'"));
  meta_bad = xm::bdh_config_metadata(c);
  meta_bad["n_head"] = "3";
  xm::write_safetensors(dir.path / "config.safetensors", good, meta_bad);
  CHECK_THROWS_WITH(xm::read_bdh_checkpoint_config(dir.path / "config.safetensors"),
                    Catch::Contains("invalid config"));
  // One flipped bit in a hashed file.
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-5, std::ios::end);
    char ch;
    f.read(&ch, 1);
    f.seekp(-5, std::ios::end);
    ch = static_cast<char>(ch ^ 1);
    f.write(&ch, 1);
  }
  CHECK_THROWS_WITH(xm::load_checkpoint(file, target), Catch::Contains("corrupted"));
  CHECK_THROWS_WITH(xm::save_checkpoint(dir.path / "x.safetensors", a, nullptr, {{"n_layer", "1"}}),
                    Catch::Contains("collides"));
}

TEST_CASE("bdh learns a copy task with AdamW", "[bdh][train]") {
  // Sequences x_1..x_6 x_1..x_6 over 8 symbols: the second half is predictable only by attending
  // back 6 positions.
  const auto c = tiny(2, 32, 2, 8, 8);
  xm::bdh m(c, 1);
  xm::adamw opt(m.layout(), {.lr = 1e-2f, .weight_decay = 0.0f});
  std::mt19937 rng(3);
  const std::int64_t B = 8, T = 11;
  auto make = [&](std::vector<std::int32_t>& tokens, std::vector<std::int32_t>& targets) {
    tokens.clear();
    targets.clear();
    for (std::int64_t b = 0; b < B; ++b) {
      std::vector<std::int32_t> s(6);
      for (auto& e : s) e = static_cast<std::int32_t>(rng() % 8);
      std::vector<std::int32_t> full(s);
      full.insert(full.end(), s.begin(), s.end());
      for (std::int64_t t = 0; t < T; ++t) {
        tokens.push_back(full[t]);
        targets.push_back(t >= 5 ? full[t + 1] : xm::ignore_target);  // only the copied half
      }
    }
  };
  std::vector<std::int32_t> tokens, targets;
  make(tokens, targets);
  const float first = m.forward({tokens, B, T, targets, {}, {}});
  CHECK(first == Approx(std::log(8.0)).epsilon(0.05));
  float last = first;
  for (int step = 0; step < 400; ++step) {
    make(tokens, targets);
    m.zero_grad();
    last = m.forward({tokens, B, T, targets, {}, {}});
    m.backward();
    xm::clip_grad_norm(m.grads(), 1.0f);
    opt.step(m.params(), m.grads(), 1e-2f);
  }
  INFO("first " << first << " last " << last);
  CHECK(last < 0.4f * first);
}

TEST_CASE("bdh matches the authors' PyTorch module (tests/data/bdh)", "[bdh][peer]") {
  const fs::path dir = fs::path(XPLOR_TEST_SOURCE_DIR) / "data" / "bdh";
  std::ifstream in(dir / "bdh_peer.json");
  REQUIRE(in.good());
  const auto j = nlohmann::json::parse(in);
  xm::bdh_config c;
  c.n_layer = j["config"]["n_layer"];
  c.n_embd = j["config"]["n_embd"];
  c.n_head = j["config"]["n_head"];
  c.mlp_internal_dim_multiplier = j["config"]["mlp_internal_dim_multiplier"];
  c.vocab_size = j["config"]["vocab_size"];
  c.dropout = 0.0f;
  const auto tensors = xm::read_safetensors(dir / "bdh_peer.safetensors").tensors;
  xm::bdh m(c, 0);
  for (const auto& t : m.layout().tensors) {
    const auto& src = tensors.at(t.name);
    REQUIRE(src.shape == t.shape);
    std::copy(src.data.begin(), src.data.end(), m.param(t.name).begin());
  }
  // The RoPE frequencies (float32 in both).
  CHECK(max_rel(m.rope_freqs(), tensors.at("attn.freqs").data) < 1e-6);
  const std::vector<std::int32_t> tokens = j["tokens"], targets = j["targets"];
  const std::int64_t B = j["batch"], T = j["seq_len"];
  m.zero_grad();
  const float loss = m.forward({tokens, B, T, targets, {}, {}});
  m.backward();
  const std::vector<float> logits(&m.logits()(0, 0), &m.logits()(0, 0) + B * T * c.vocab_size);
  for (const char* suffix : {"", "64"}) {
    INFO("reference " << (suffix[0] == 0 ? "float32" : "float64"));
    const double ref_loss = j[std::string("loss") + suffix];
    CHECK(std::abs(loss - ref_loss) <= 1e-5 * std::abs(ref_loss));
    const double lr = max_rel(logits, tensors.at(std::string("logits") + suffix).data);
    CHECK(lr < 1e-5);
    for (const auto& t : m.layout().tensors) {
      const double gr = max_rel(m.grad(t.name), tensors.at("grad" + std::string(suffix) + "." + t.name).data);
      INFO("grad of " << t.name << " " << gr);
      CHECK(gr < 1e-5);
    }
  }
  // An xplor checkpoint holds exactly the module's state_dict() keys and shapes (what
  // load_state_dict(strict=True) needs), besides the optimizer's tensors.
  temp_dir tmp;
  xm::save_checkpoint(tmp.path / "m.safetensors", m);
  const auto saved = xm::read_safetensors(tmp.path / "m.safetensors").tensors;
  std::map<std::string, std::vector<std::int64_t>> keys;
  for (const auto& [name, t] : saved) keys[name] = t.shape;
  const std::map<std::string, std::vector<std::int64_t>> expected = j["state_dict"];
  CHECK(keys == expected);
}
