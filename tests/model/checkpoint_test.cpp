#include "xplor/model/checkpoint.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

using namespace xplor::model;
namespace fs = std::filesystem;

namespace {

struct temp_dir {
  fs::path path;
  temp_dir() {
    path = fs::temp_directory_path() / ("xplor_checkpoint_test_" + std::to_string(std::random_device{}()));
    fs::create_directories(path);
  }
  ~temp_dir() { fs::remove_all(path); }
};

transformer_config cfg() {
  transformer_config c;
  c.vocab_size = 11;
  c.d_model = 8;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 12;
  c.max_seq_len = 6;
  c.norm = norm_kind::layernorm;
  c.positions = position_kind::learned;
  c.mlp = mlp_kind::gelu;
  c.tie_embeddings = false;
  return c;
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
}

}  // namespace

TEST_CASE("checkpoints round-trip parameters and optimizer state bit-exactly", "[model][checkpoint]") {
  temp_dir dir;
  transformer a(cfg(), 3);
  adamw opt(a.layout());
  const std::vector<std::int32_t> tokens{1, 2, 3, 4};
  a.forward({tokens, 1, 4, tokens, {}, {}});
  a.backward();
  opt.step(a.params(), a.grads(), 1e-2f);
  save_checkpoint(dir.path / "a.safetensors", a, &opt, {{"step", "1"}});

  CHECK(read_checkpoint_config(dir.path / "a.safetensors") == cfg());
  transformer b(cfg(), 99);
  adamw opt_b(b.layout());
  const auto meta = load_checkpoint(dir.path / "a.safetensors", b, &opt_b);
  CHECK(meta.at("step") == "1");
  CHECK(meta.at("norm") == "layernorm");
  CHECK(same_bits(a.params(), b.params()));
  CHECK(same_bits(opt.first_moment(), opt_b.first_moment()));
  CHECK(same_bits(opt.second_moment(), opt_b.second_moment()));
  CHECK(opt_b.steps() == 1);
  // A model-only load of the same file ignores nothing silently: the optimizer tensors are known.
  transformer c(cfg(), 5);
  load_checkpoint(dir.path / "a.safetensors", c);
  CHECK(same_bits(a.params(), c.params()));
}

TEST_CASE("a mismatched or corrupt checkpoint is rejected and leaves the model untouched",
          "[model][checkpoint]") {
  temp_dir dir;
  transformer a(cfg(), 3);
  save_checkpoint(dir.path / "a.safetensors", a);
  transformer target(cfg(), 4);
  const std::vector<float> before(target.params().begin(), target.params().end());
  auto untouched = [&] { return same_bits(before, target.params()); };

  auto other = cfg();
  other.d_model = 16;
  other.d_ff = 24;
  transformer wide(other, 1);
  save_checkpoint(dir.path / "wide.safetensors", wide);
  CHECK_THROWS_WITH(load_checkpoint(dir.path / "wide.safetensors", target),
                    Catch::Contains("config mismatch, d_ff: file 24, model 12"));
  CHECK(untouched());

  // NaN in a weight.
  std::vector<float> poisoned(a.params().begin(), a.params().end());
  poisoned[a.layout().layers[1].qkv + 5] = NAN;
  std::vector<tensor_view_in> tensors;
  for (const auto& t : a.layout().tensors)
    tensors.push_back({t.name, t.shape, std::span<const float>(poisoned).subspan(t.offset, t.size)});
  write_safetensors(dir.path / "nan.safetensors", tensors, checkpoint_detail::config_metadata(cfg()));
  CHECK_THROWS_WITH(load_checkpoint(dir.path / "nan.safetensors", target),
                    Catch::Contains("tensor 'layers.1.attn.qkv.weight' element 5 is nan"));
  CHECK(untouched());

  // A missing tensor, a wrong shape, an unexpected tensor.
  tensors.clear();
  for (const auto& t : a.layout().tensors)
    if (t.name != "lm_head.weight")
      tensors.push_back({t.name, t.shape, a.params().subspan(t.offset, t.size)});
  write_safetensors(dir.path / "missing.safetensors", tensors, checkpoint_detail::config_metadata(cfg()));
  CHECK_THROWS_WITH(load_checkpoint(dir.path / "missing.safetensors", target),
                    Catch::Contains("tensor 'lm_head.weight' is missing"));
  const auto& lm = a.layout().tensors.back();
  tensors.push_back({lm.name, {lm.shape[1], lm.shape[0]}, a.params().subspan(lm.offset, lm.size)});
  write_safetensors(dir.path / "shape.safetensors", tensors, checkpoint_detail::config_metadata(cfg()));
  CHECK_THROWS_WITH(load_checkpoint(dir.path / "shape.safetensors", target),
                    Catch::Contains("'lm_head.weight' has shape [8, 11], the model needs [11, 8]"));
  tensors.back() = {lm.name, lm.shape, a.params().subspan(lm.offset, lm.size)};
  const std::vector<float> extra(3, 1.0f);
  tensors.push_back({"layers.7.attn.qkv.weight", {3}, extra});
  write_safetensors(dir.path / "extra.safetensors", tensors, checkpoint_detail::config_metadata(cfg()));
  CHECK_THROWS_WITH(load_checkpoint(dir.path / "extra.safetensors", target),
                    Catch::Contains("unexpected tensor 'layers.7.attn.qkv.weight'"));
  CHECK(untouched());

  // Truncation anywhere.
  const auto size = fs::file_size(dir.path / "a.safetensors");
  for (auto cut : {std::uintmax_t{4}, std::uintmax_t{100}, size / 2, size - 1}) {
    fs::copy_file(dir.path / "a.safetensors", dir.path / "cut.safetensors",
                  fs::copy_options::overwrite_existing);
    fs::resize_file(dir.path / "cut.safetensors", cut);
    CHECK_THROWS_AS(load_checkpoint(dir.path / "cut.safetensors", target), xplor::error);
  }
  CHECK(untouched());
  // An optimizer load needs the optimizer tensors.
  adamw opt(target.layout());
  CHECK_THROWS_WITH(load_checkpoint(dir.path / "a.safetensors", target, &opt),
                    Catch::Contains("tensor 'optimizer.m.embed.weight' is missing"));
  CHECK(untouched());
  CHECK_THROWS_WITH(save_checkpoint(dir.path / "x.safetensors", a, nullptr, {{"d_model", "3"}}),
                    Catch::Contains("collides with a config field"));
}
