// The device backend against the CPU backend. Compiled by g++ with Thrust's OMP device system
// (tests/CMakeLists.txt) and by nvcc for the GPU (cuda/): everything a device loop touches is in
// a thrust::device_vector and every functor is an XPLOR_HD struct, so the file is valid for both.
#include "xplor/core/device.hpp"

#include <thrust/host_vector.h>
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "xplor/core/adapt_thrust.hpp"
#include "xplor/core/numerics.hpp"
#include "xplor/core/random.hpp"

namespace {

struct philox_grid {  // words of block t of stream (i, 0) for a [streams, draws] grid
  std::uint64_t seed;
  std::int64_t draws;
  std::uint32_t* out;
  XPLOR_HD void operator()(std::int64_t k) const {
    const auto i = static_cast<std::uint32_t>(k / draws);
    const auto t = static_cast<std::uint64_t>(k % draws);
    const auto words = xplor::philox_stream(seed, xplor::stream_id(i, 0)).block(t);
    for (int w = 0; w < 4; ++w) out[4 * k + w] = words[w];
  }
};

struct square_into {
  std::int64_t* out;
  XPLOR_HD void operator()(std::int64_t i) const { out[i] = i * i; }
};

template <class T>
struct load {
  const T* x;
  XPLOR_HD T operator()(std::int64_t i) const { return x[i]; }
};

struct plus {
  template <class T>
  XPLOR_HD T operator()(T a, T b) const {
    return a + b;
  }
};

template <class T>
std::vector<T> to_host(const thrust::device_vector<T>& d) {
  thrust::host_vector<T> h = d;
  return std::vector<T>(h.begin(), h.end());
}

}  // namespace

TEST_CASE("device: Philox known answers and streams equal the host's", "[device][random]") {
  const std::int64_t streams = 64, draws = 8;
  thrust::device_vector<std::uint32_t> d(static_cast<std::size_t>(4 * streams * draws));
  xplor::for_each_index(xplor::device, streams * draws,
                        philox_grid{0, draws, thrust::raw_pointer_cast(d.data())});
  const auto words = to_host(d);
  // Stream 0, draw 0 under seed 0 is the all-zero counter and key: the first known answer.
  CHECK(words[0] == 0x6627e8d5u);
  CHECK(words[1] == 0xe169c58du);
  CHECK(words[2] == 0xbc57ac4cu);
  CHECK(words[3] == 0x9b00dbd8u);
  for (std::int64_t k = 0; k < streams * draws; ++k) {
    const auto host = xplor::philox_stream(0, xplor::stream_id(static_cast<std::uint32_t>(k / draws), 0))
                          .block(static_cast<std::uint64_t>(k % draws));
    for (int w = 0; w < 4; ++w) REQUIRE(words[4 * k + w] == host[w]);
  }
}

TEST_CASE("device: for_each_index and transform_reduce match the CPU", "[device][exec]") {
  const std::int64_t n = 100003;
  thrust::device_vector<std::int64_t> sq(n);
  xplor::for_each_index(xplor::device, n, square_into{thrust::raw_pointer_cast(sq.data())});
  const auto h = to_host(sq);
  for (std::int64_t i = 0; i < n; i += 997) REQUIRE(h[i] == i * i);

  const std::int64_t* sq_ptr = thrust::raw_pointer_cast(sq.data());
  const std::int64_t dev_sum =
      xplor::transform_reduce(xplor::device, n, std::int64_t{0}, plus{}, load<std::int64_t>{sq_ptr});
  const std::int64_t cpu_sum =
      xplor::transform_reduce(xplor::cpu, n, std::int64_t{0}, plus{}, load<std::int64_t>{h.data()});
  CHECK(dev_sum == cpu_sum);

  std::mt19937 rng(5);
  std::vector<float> x(n);
  for (auto& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng);
  const thrust::device_vector<float> dx(x.begin(), x.end());
  const float dev_f = xplor::transform_reduce(xplor::device, n, 0.0f, plus{},
                                              load<float>{thrust::raw_pointer_cast(dx.data())});
  const float cpu_f = xplor::transform_reduce(xplor::cpu, n, 0.0f, plus{}, load<float>{x.data()});
  CHECK(dev_f == Approx(cpu_f).margin(1e-3));  // summation order differs between backends
  CHECK_THROWS_AS(xplor::for_each_index(xplor::device, -2, square_into{nullptr}), xplor::error);
}

/// 1 for the multiples of 3.
struct every_third {
  XPLOR_HD std::int64_t operator()(std::int64_t i) const { return i % 3 == 0 ? 1 : 0; }
};

TEST_CASE("device: scan_offsets and copy_to_host match the CPU", "[device][exec]") {
  const std::int64_t n = 100001;
  thrust::device_vector<std::int64_t> d(n + 1, -7);
  std::vector<std::int64_t> c(n + 1, -7);
  const std::int64_t total =
      xplor::scan_offsets(xplor::device, n, every_third{}, thrust::raw_pointer_cast(d.data()));
  CHECK(total == xplor::scan_offsets(xplor::cpu, n, every_third{}, c.data()));
  CHECK(total == (n + 2) / 3);
  CHECK(to_host(d) == c);
  CHECK(xplor::copy_to_host(xplor::device, thrust::raw_pointer_cast(d.data()) + 3, 4) ==
        std::vector<std::int64_t>(c.begin() + 3, c.begin() + 7));
  CHECK_THROWS_AS(xplor::scan_offsets(xplor::device, -1, every_third{}, thrust::raw_pointer_cast(d.data())),
                  xplor::error);
}

TEST_CASE("device: segmented_reduce matches the CPU on equal and ragged groups", "[device][exec][property]") {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 10; ++trial) {
    std::vector<int> counts(1 + rng() % 200);
    for (auto& c : counts) c = static_cast<int>(rng() % 50);  // includes empty groups
    const auto offsets = xplor::offsets_from_counts(counts);
    const std::int64_t n = offsets.back();
    std::vector<std::int64_t> x(static_cast<std::size_t>(n));
    for (auto& v : x) v = static_cast<std::int64_t>(rng() % 1000) - 500;
    const thrust::device_vector<std::int64_t> dx(x.begin(), x.end());
    const xplor::ragged_groups groups(offsets, n);

    std::vector<std::int64_t> cpu_out(counts.size());
    thrust::device_vector<std::int64_t> dev_out(counts.size());
    xplor::segmented_reduce(xplor::cpu, groups, std::int64_t{7}, plus{}, load<std::int64_t>{x.data()},
                            std::span(cpu_out));
    xplor::segmented_reduce(xplor::device, groups, std::int64_t{7}, plus{},
                            load<std::int64_t>{thrust::raw_pointer_cast(dx.data())}, xplor::as_span(dev_out));
    REQUIRE(to_host(dev_out) == cpu_out);

    const std::int64_t size = 1 + rng() % 9, count = n / size;
    const xplor::equal_groups eq(count, size);
    cpu_out.assign(static_cast<std::size_t>(count), 0);
    dev_out.assign(static_cast<std::size_t>(count), 0);
    xplor::segmented_reduce(xplor::cpu, eq, std::int64_t{0}, plus{}, load<std::int64_t>{x.data()},
                            std::span(cpu_out));
    xplor::segmented_reduce(xplor::device, eq, std::int64_t{0}, plus{},
                            load<std::int64_t>{thrust::raw_pointer_cast(dx.data())}, xplor::as_span(dev_out));
    REQUIRE(to_host(dev_out) == cpu_out);
  }
  thrust::device_vector<float> small(1);
  CHECK_THROWS_WITH(xplor::segmented_reduce(xplor::device, xplor::equal_groups(2, 3), 0.0f, plus{},
                                            load<float>{nullptr}, xplor::as_span(small)),
                    Catch::Contains("out has 1 elements for 2 groups"));
}

TEST_CASE("device: logits rows match the CPU", "[device][numerics]") {
  const std::int64_t rows = 37, vocab = 5003;
  std::mt19937 rng(23);
  std::vector<float> z(rows * vocab);
  for (auto& v : z) v = std::normal_distribution<float>(0.0f, 4.0f)(rng);
  for (std::int64_t r = 0; r < rows; ++r)
    z[r * vocab + rng() % vocab] = -std::numeric_limits<float>::infinity();
  const thrust::device_vector<float> dz(z.begin(), z.end());
  const auto hv = xplor::as_view2d(std::as_const(z), rows, vocab);
  const xplor::device_view2d<const float> dv = xplor::as_view2d(dz, rows, vocab);

  std::vector<float> h_ent(rows), h_lse(rows), h_lp(rows * vocab);
  thrust::device_vector<float> d_ent(rows), d_lse(rows), d_lp(rows * vocab);
  xplor::entropy_rows(xplor::cpu, hv, h_ent);
  xplor::entropy_rows(xplor::device, dv, xplor::as_span(d_ent));
  xplor::logsumexp_rows(xplor::cpu, hv, h_lse);
  xplor::logsumexp_rows(xplor::device, dv, xplor::as_span(d_lse));
  xplor::log_softmax_rows(xplor::cpu, hv, xplor::as_view2d(h_lp, rows, vocab));
  xplor::log_softmax_rows(xplor::device, dv, xplor::as_view2d(d_lp, rows, vocab));
  const auto e = to_host(d_ent), l = to_host(d_lse), lp = to_host(d_lp);
  // The same XPLOR_HD row code runs on both; only the math library's exp/log may differ (CUDA).
  for (std::int64_t r = 0; r < rows; ++r) {
    REQUIRE(e[r] == Approx(h_ent[r]).epsilon(1e-5));
    REQUIRE(l[r] == Approx(h_lse[r]).epsilon(1e-6));
  }
  for (std::int64_t k = 0; k < rows * vocab; k += 101)
    if (std::isfinite(h_lp[k])) REQUIRE(lp[k] == Approx(h_lp[k]).margin(1e-5));

  thrust::device_vector<float> bad = dz;
  bad[3 * vocab + 17] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(xplor::entropy_rows(xplor::device, xplor::as_view2d(std::as_const(bad), rows, vocab),
                                        xplor::as_span(d_ent)),
                    Catch::Contains("logits[3, 17] is NaN"));
}
