// Draws against values recorded once: the CPU sampler's tokens, drawn log-probabilities and full
// processed rows for fixed logits, recorded from the portable build (-DXPLOR_ARCH=portable,
// x86-64 SSE2 without FMA), whose draws the GPU kernels reproduce bit for bit (docs/gpu.md).
// Every build must give the same bits, in particular the default -march=native one (AVX-512 and
// FMA units, 8-lane host SIMD chosen at compile time). The sampler's arithmetic is written so
// that no compiler fusion changes it (a -ffp-contract=fast build gives these bits too);
// xplor_optimize's -ffp-contract=off keeps the rest of the host code's float expressions as written.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <vector>

#include "xplor/core/random.hpp"
#include "xplor/core/view.hpp"
#include "xplor/sample/processors.hpp"

namespace {

/// FNV-1a over the bit patterns of the floats.
std::uint64_t bits_hash(const std::vector<float>& v) {
  std::uint64_t h = 1469598103934665603ull;
  for (float x : v) {
    std::uint32_t b;
    std::memcpy(&b, &x, sizeof b);
    for (int k = 0; k < 4; ++k) h = (h ^ ((b >> (8 * k)) & 0xffu)) * 1099511628211ull;
  }
  return h;
}

struct recorded {
  std::vector<std::int32_t> tokens;
  std::uint64_t logprob_bits;  // bits_hash of the drawn tokens' log-probabilities
  std::uint64_t rows_bits;     // bits_hash of every row's processed log-probabilities
};

}  // namespace

TEST_CASE("sample: draws equal the recorded portable-build (and GPU) tokens bit for bit",
          "[sample][golden]") {
  using namespace xplor::sample;
  constexpr std::int64_t R = 24, V = 3000;
  // Logits from Philox words: exact float arithmetic (products by powers of two), the same in any build.
  std::vector<float> logits(static_cast<std::size_t>(R * V));
  xplor::philox_stream gen(7, 1);
  for (auto& x : logits) x = (xplor::uniform_float(gen()) - 0.5f) * 16.0f;
  std::vector<std::uint64_t> streams(R), draws(R);
  for (std::int64_t r = 0; r < R; ++r)
    streams[r] = xplor::stream_id(3, static_cast<std::uint32_t>(r)), draws[r] = 5;
  std::vector<std::int32_t> ctx;
  std::vector<std::int64_t> offsets{0};
  for (std::int64_t r = 0; r < R; ++r) {
    for (std::int64_t k = 0; k < r % 5; ++k) ctx.push_back(static_cast<std::int32_t>((r * 131 + k * 17) % V));
    offsets.push_back(static_cast<std::int64_t>(ctx.size()));
  }
  // Recorded with the portable build; see the file comment.
  const recorded expected[3] = {
      {{1469, 1413, 1152, 1798, 4,    1005, 775,  66,   2332, 2078, 601,  2523,
        2487, 208,  1691, 693,  1686, 2283, 1470, 2395, 710,  697,  2662, 1943},
       0xe3cc8e5db1650566ull,
       0x6a88b3b9e0a92a10ull},
      {{1436, 1384, 956,  1857, 18,   1041, 831,  15,   2167, 1848, 685,  2707,
        2487, 210,  1778, 597,  1761, 2105, 1470, 2265, 777,  1057, 2638, 2040},
       0x763211c4a22f20ffull,
       0xdcce94de0900177bull},
      {{1469, 1413, 1141, 1798, 4,    1001, 742,  69,   2305, 2070, 606,  2528,
        2487, 208,  1691, 693,  1686, 2257, 1470, 2389, 725,  699,  2662, 1943},
       0x8c9aaa16c053f4f3ull,
       0xbb9a691c6de37158ull},
  };
  for (int setting = 0; setting < 3; ++setting) {
    sampling_params p;
    p.temperature = 0.7f;
    if (setting == 1) p.top_k = 50, p.top_p = 0.9f;
    if (setting == 2) p.min_p = 0.02f, p.repetition_penalty = 1.3f, p.top_p = 0.95f;
    std::vector<std::int32_t> tokens(R);
    std::vector<float> lp(R);
    sample_rows(xplor::cpu, xplor::make_view(static_cast<const float*>(logits.data()), {R, V}), p,
                {11, streams, draws}, {tokens, lp, {}}, ctx, offsets);
    std::vector<float> rows, row_in, row_out;
    for (std::int64_t r = 0; r < R; ++r) {
      row_in.assign(logits.begin() + r * V, logits.begin() + (r + 1) * V);
      row_out.resize(row_in.size());
      process_logits(row_in, p, row_out, std::span(ctx).subspan(offsets[r], offsets[r + 1] - offsets[r]));
      rows.insert(rows.end(), row_out.begin(), row_out.end());
    }
    std::ostringstream got;
    for (auto t : tokens) got << t << ", ";
    INFO("setting " << setting << ": tokens {" << got.str() << "}, logprob bits 0x" << std::hex
                    << bits_hash(lp) << "ull, rows 0x" << bits_hash(rows) << "ull");
    CHECK(tokens == expected[setting].tokens);
    CHECK(bits_hash(lp) == expected[setting].logprob_bits);
    CHECK(bits_hash(rows) == expected[setting].rows_bits);
  }
}
