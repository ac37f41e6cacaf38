// xplor's transformer against PyTorch: tests/data/parity holds one tiny checkpoint per option
// combination (tools/make_parity_checkpoints) and the logits, loss and gradients PyTorch computes
// for it in float64 (tools/torch_reference.py, written with PyTorch's safetensors writer).
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <vector>

#include "../../tools/parity_configs.hpp"
#include "xplor/model/checkpoint.hpp"

using namespace xplor::model;

namespace {
/// Norm-wise relative error ||a - b||_inf / ||b||_inf.
double rel_err(std::span<const float> a, std::span<const float> b) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - b[i]));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return diff / scale;
}
}  // namespace

TEST_CASE("logits, loss and gradients match PyTorch for every option combination", "[model][parity]") {
  const std::filesystem::path dir = std::filesystem::path(XPLOR_TEST_SOURCE_DIR) / "data" / "parity";
  for (const auto& p : xplor::tools::parity_cases()) {
    INFO("case " << p.name);
    // The checkpoint in the repository is what tools/make_parity_checkpoints writes today.
    transformer model(read_checkpoint_config(dir / (p.name + ".safetensors")), 0);
    REQUIRE(model.config() == p.config);
    load_checkpoint(dir / (p.name + ".safetensors"), model);
    const transformer fresh(p.config, p.seed);
    REQUIRE(std::equal(fresh.params().begin(), fresh.params().end(), model.params().begin()));

    const auto golden = read_safetensors(dir / (p.name + ".golden.safetensors"));
    const auto& tok = golden.tensors.at("batch.tokens");
    const std::int64_t B = tok.shape.at(0), T = tok.shape.at(1);
    std::vector<std::int32_t> tokens, targets;
    for (float x : tok.data) tokens.push_back(static_cast<std::int32_t>(x));
    for (float x : golden.tensors.at("batch.targets").data) targets.push_back(static_cast<std::int32_t>(x));
    const auto& mask = golden.tensors.at("batch.mask").data;

    model.zero_grad();
    const float loss = model.forward({tokens, B, T, targets, mask, {}});
    model.backward();
    const auto& ref_logits = golden.tensors.at("logits").data;
    CHECK(rel_err({model.logits().data(), ref_logits.size()}, ref_logits) <= 1e-5);
    CHECK(loss == Approx(golden.tensors.at("loss").data[0]).epsilon(1e-5));
    for (const auto& t : model.layout().tensors) {
      INFO("gradient of " << t.name);
      const auto& ref = golden.tensors.at("grad." + t.name).data;
      CHECK(rel_err(model.grad(t.name), ref) <= 1e-5);
    }
  }
}
