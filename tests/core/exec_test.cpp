#include "xplor/core/exec.hpp"

#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

TEST_CASE("for_each_index visits every index once", "[exec]") {
  for (std::int64_t n : {0, 1, 100, 50000}) {
    std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
    xplor::for_each_index(xplor::cpu, n, [&](std::int64_t i) { hits[i].fetch_add(1); });
    for (std::int64_t i = 0; i < n; ++i) REQUIRE(hits[i].load() == 1);
  }
  CHECK_THROWS_WITH(xplor::for_each_index(xplor::cpu, -1, [](std::int64_t) {}), Catch::Contains("n = -1"));
}

TEST_CASE("transform_reduce: hand-computed sums", "[exec]") {
  CHECK(xplor::transform_reduce(xplor::cpu, 0, std::int64_t{7}, std::plus<>{},
                                [](std::int64_t i) { return i; }) == 7);
  CHECK(xplor::transform_reduce(xplor::cpu, 5, std::int64_t{0}, std::plus<>{},
                                [](std::int64_t i) { return i * i; }) == 30);
  const std::int64_t n = 1000003;  // spans many chunks
  CHECK(xplor::transform_reduce(xplor::cpu, n, std::int64_t{0}, std::plus<>{},
                                [](std::int64_t i) { return i; }) == n * (n - 1) / 2);
  CHECK(xplor::transform_reduce(
            xplor::cpu, n, std::int64_t{-1}, [](std::int64_t a, std::int64_t b) { return std::max(a, b); },
            [](std::int64_t i) { return (i * 7919) % 1000003; }) == 1000002);
  CHECK_THROWS_AS(xplor::transform_reduce(xplor::cpu, -5, 0, std::plus<>{}, [](std::int64_t) { return 1; }),
                  xplor::error);
}

TEST_CASE("float transform_reduce is bit-identical for any thread count", "[exec][property]") {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(300007);
  for (auto& v : x) v = dist(rng);
  auto sum = [&](int threads) {
    return xplor::transform_reduce(xplor::cpu_t{threads}, static_cast<std::int64_t>(x.size()), 0.0f,
                                   std::plus<>{}, [&](std::int64_t i) { return x[i]; });
  };
  const float one = sum(1), two = sum(2), three = sum(3), dflt = sum(0);
  CHECK(std::memcmp(&one, &two, sizeof(float)) == 0);
  CHECK(std::memcmp(&one, &three, sizeof(float)) == 0);
  CHECK(std::memcmp(&one, &dflt, sizeof(float)) == 0);
  double exact = 0;
  for (float v : x) exact += v;
  CHECK(one == Approx(exact).margin(1e-2));
}

TEST_CASE("segmented_reduce over equal and ragged groups", "[exec]") {
  const std::vector<float> r{1, 2, 3, 4, 5, 6};
  auto value = [&](std::int64_t i) { return r[i]; };
  std::vector<float> out(3);
  xplor::segmented_reduce(xplor::cpu, xplor::equal_groups(3, 2), 0.0f, std::plus<>{}, value, std::span(out));
  CHECK(out == std::vector<float>{3, 7, 11});

  const std::vector<std::int64_t> offsets{0, 1, 1, 6};
  xplor::segmented_reduce(xplor::cpu, xplor::ragged_groups(offsets, 6), 100.0f, std::plus<>{}, value,
                          std::span(out));
  CHECK(out == std::vector<float>{101, 100, 120});  // the empty middle group gets init

  std::vector<float> wrong(2);
  CHECK_THROWS_WITH(xplor::segmented_reduce(xplor::cpu, xplor::equal_groups(3, 2), 0.0f, std::plus<>{}, value,
                                            std::span(wrong)),
                    Catch::Contains("out has 2 elements for 3 groups"));
}

TEST_CASE("segmented_reduce equals a serial loop on random ragged groups", "[exec][property]") {
  std::mt19937 rng(99);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<int> counts(1 + rng() % 300);
    for (auto& c : counts) c = static_cast<int>(rng() % 40);
    const auto offsets = xplor::offsets_from_counts(counts);
    std::vector<double> x(static_cast<std::size_t>(offsets.back()));
    for (auto& v : x) v = std::uniform_real_distribution<double>(-3, 3)(rng);
    std::vector<double> out(counts.size());
    xplor::segmented_reduce(
        xplor::cpu_t{2}, xplor::ragged_groups(offsets, offsets.back()), 0.0, std::plus<>{},
        [&](std::int64_t i) { return x[i]; }, std::span(out));
    for (std::size_t g = 0; g < counts.size(); ++g) {
      double s = 0;
      for (auto i = offsets[g]; i < offsets[g + 1]; ++i) s += x[i];
      REQUIRE(out[g] == s);  // same left-to-right order: exact
    }
  }
}

TEST_CASE("scan_offsets: hand-computed offsets, any thread count, bad count", "[exec]") {
  std::vector<std::int64_t> off(5, -7);
  CHECK(xplor::scan_offsets(
            xplor::cpu, 4, [](std::int64_t i) { return i + 1; }, off.data()) == 10);
  CHECK(off == std::vector<std::int64_t>{0, 1, 3, 6, 10});
  std::vector<std::int64_t> empty(1, -7);
  CHECK(xplor::scan_offsets(
            xplor::cpu, 0, [](std::int64_t) { return 1; }, empty.data()) == 0);
  CHECK(empty[0] == 0);
  // Many chunks on 1 and 2 threads: offsets[i] = number of multiples of 3 below i.
  const std::int64_t n = 100001;
  for (int threads : {1, 2}) {
    std::vector<std::int64_t> o(n + 1);
    const auto third = [](std::int64_t i) { return i % 3 == 0 ? 1 : 0; };
    REQUIRE(xplor::scan_offsets(xplor::cpu_t{threads}, n, third, o.data()) == (n + 2) / 3);
    for (std::int64_t i = 0; i <= n; i += 977) REQUIRE(o[i] == (i + 2) / 3);
  }
  CHECK_THROWS_WITH(xplor::scan_offsets(
                        xplor::cpu, -1, [](std::int64_t) { return 1; }, off.data()),
                    Catch::Contains("n = -1"));
  const std::vector<int> v{4, 5, 6};
  CHECK(xplor::copy_to_host(xplor::cpu, v.data() + 1, 2) == std::vector<int>{5, 6});
}
