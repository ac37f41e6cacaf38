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
  write_safetensors(dir.path / "nan.safetensors", tensors, detail::config_metadata(cfg()));
  CHECK_THROWS_WITH(load_checkpoint(dir.path / "nan.safetensors", target),
                    Catch::Contains("tensor 'layers.1.attn.qkv.weight' element 5 is nan"));
  CHECK(untouched());

  // A missing tensor, a wrong shape, an unexpected tensor.
  tensors.clear();
  for (const auto& t : a.layout().tensors)
    if (t.name != "lm_head.weight")
      tensors.push_back({t.name, t.shape, a.params().subspan(t.offset, t.size)});
  write_safetensors(dir.path / "missing.safetensors", tensors, detail::config_metadata(cfg()));
  CHECK_THROWS_WITH(load_checkpoint(dir.path / "missing.safetensors", target),
                    Catch::Contains("tensor 'lm_head.weight' is missing"));
  const auto& lm = a.layout().tensors.back();
  tensors.push_back({lm.name, {lm.shape[1], lm.shape[0]}, a.params().subspan(lm.offset, lm.size)});
  write_safetensors(dir.path / "shape.safetensors", tensors, detail::config_metadata(cfg()));
  CHECK_THROWS_WITH(load_checkpoint(dir.path / "shape.safetensors", target),
                    Catch::Contains("'lm_head.weight' has shape [8, 11], the model needs [11, 8]"));
  tensors.back() = {lm.name, lm.shape, a.params().subspan(lm.offset, lm.size)};
  const std::vector<float> extra(3, 1.0f);
  tensors.push_back({"layers.7.attn.qkv.weight", {3}, extra});
  write_safetensors(dir.path / "extra.safetensors", tensors, detail::config_metadata(cfg()));
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

namespace {
/// Rewrites a checkpoint with one metadata value replaced (and the hash recomputed when `rehash`,
/// as a file written by a buggy or hostile writer would be), keeping every tensor.
void rewrite(const fs::path& from, const fs::path& to, const std::string& key, const std::string& value,
             bool rehash = true) {
  auto c = read_safetensors(from);
  c.metadata[key] = value;
  std::vector<tensor_view_in> tensors;
  for (const auto& [name, t] : c.tensors) tensors.push_back({name, t.shape, t.data});
  if (rehash) {
    detail::content_hasher h;
    for (const auto& t : tensors) h.tensor(t.name, t.shape, t.data);
    detail::hash_metadata(h, c.metadata);
    c.metadata["content_hash"] = h.hex();
  } else {
    c.metadata.erase("content_hash");
  }
  write_safetensors(to, tensors, c.metadata);
}
}  // namespace

TEST_CASE("checkpoint integrity: a content hash catches bit flips, and values and sizes are checked",
          "[model][checkpoint]") {
  temp_dir dir;
  transformer a(cfg(), 3);
  adamw opt(a.layout());
  const std::vector<std::int32_t> tokens{1, 2, 3, 4};
  a.forward({tokens, 1, 4, tokens, {}, {}});
  a.backward();
  opt.step(a.params(), a.grads(), 1e-2f);
  const fs::path good = dir.path / "good.safetensors";
  save_checkpoint(good, a, &opt);
  const auto meta = read_safetensors(good).metadata;
  REQUIRE(meta.at("content_hash").size() == 16);

  // Hand-computed: the hash of nothing but one empty metadata pair is fixed.
  detail::content_hasher h0;
  CHECK(h0.hex() == "cbf29ce484222325");

  // Every single bit flip in the data buffer is rejected (70% loaded silently before the hash).
  transformer target(cfg(), 4);
  adamw target_opt(target.layout());
  const std::vector<float> before(target.params().begin(), target.params().end());
  std::ifstream in(good, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::uint64_t header = 0;
  for (int i = 0; i < 8; ++i) header |= std::uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  std::mt19937 rng(15);
  std::uniform_int_distribution<std::size_t> where(8 + header, bytes.size() - 1);
  std::uniform_int_distribution<int> bit(0, 7);
  int rejected = 0;
  const int trials = 300;
  for (int trial = 0; trial < trials; ++trial) {
    std::string flipped = bytes;
    flipped[where(rng)] ^= static_cast<char>(1 << bit(rng));
    std::ofstream(dir.path / "flip.safetensors", std::ios::binary) << flipped;
    try {
      load_checkpoint(dir.path / "flip.safetensors", target, &target_opt);
    } catch (const xplor::error& e) {
      rejected += std::string(e.what()).find("the file is corrupted") != std::string::npos ||
                  std::string(e.what()).find("not finite") != std::string::npos ||
                  std::string(e.what()).find("second moment") != std::string::npos;
    }
  }
  CHECK(rejected == trials);
  CHECK(same_bits(before, target.params()));

  // A file without a hash (written before it existed) loads, with a warning on stderr.
  rewrite(good, dir.path / "old.safetensors", "step", "1", false);
  load_checkpoint(dir.path / "old.safetensors", target, &target_opt);
  CHECK(same_bits(a.params(), target.params()));

  // Values a writer could get wrong, rehashed so that only the value check stands in the way.
  auto rejects = [&](const std::string& key, const std::string& value, const std::string& what) {
    rewrite(good, dir.path / "bad.safetensors", key, value);
    CHECK_THROWS_WITH(load_checkpoint(dir.path / "bad.safetensors", target, &target_opt),
                      Catch::Contains(what));
    CHECK_THROWS_WITH(read_checkpoint_config(dir.path / "bad.safetensors"), Catch::Contains(what));
  };
  rejects("norm_eps", "inf", "norm_eps = inf must be finite and positive");
  rejects("rope_theta", "nan", "rope_theta = nan");
  rejects("n_layers", "2000000000", "n_layers = 2000000000 is over the limit of 4096");
  rejects("vocab_size", "99999999", "vocab_size = 99999999 is over the limit of 4194304");
  rejects("max_seq_len", "2000000", "max_seq_len = 2000000 is over the limit of 1048576");
  rejects("d_model", "2junk", "'d_model' = '2junk' is not an integer");
  rejects("d_model", " 8", "'d_model' = ' 8' is not an integer");
  rejects("d_model", "+8", "is not an integer");
  rejects("n_heads", "99999999999", "'n_heads' = '99999999999' is not an integer in range");
  rejects("init_std", "0.02x", "'init_std' = '0.02x' is not a float");
  rewrite(good, dir.path / "bad.safetensors", "optimizer.step", "-3");
  CHECK_THROWS_WITH(load_checkpoint(dir.path / "bad.safetensors", target, &target_opt),
                    Catch::Contains("optimizer.step = -3 is negative"));
  rewrite(good, dir.path / "bad.safetensors", "content_hash", "0123456789abcdef", false);
  {
    auto c = read_safetensors(good);
    c.metadata["content_hash"] = "0123456789abcdef";
    std::vector<tensor_view_in> tensors;
    for (const auto& [name, t] : c.tensors) tensors.push_back({name, t.shape, t.data});
    write_safetensors(dir.path / "bad.safetensors", tensors, c.metadata);
    CHECK_THROWS_WITH(load_checkpoint(dir.path / "bad.safetensors", target),
                      Catch::Contains("content_hash 0123456789abcdef does not match"));
  }
  // A config that implies more parameters than the file holds (hashed, so only that check).
  rewrite(good, dir.path / "bad.safetensors", "d_ff", "4000");
  CHECK_THROWS_WITH(read_checkpoint_config(dir.path / "bad.safetensors"),
                    Catch::Contains("parameters but the file holds"));

  // A negative AdamW second moment (NaN after one step) with a valid hash.
  {
    auto c = read_safetensors(good);
    c.tensors.at("optimizer.v.embed.weight").data[3] = -1e-8f;
    std::vector<tensor_view_in> tensors;
    detail::content_hasher h;
    for (const auto& [name, t] : c.tensors) {
      tensors.push_back({name, t.shape, t.data});
      h.tensor(name, t.shape, t.data);
    }
    detail::hash_metadata(h, c.metadata);
    c.metadata["content_hash"] = h.hex();
    write_safetensors(dir.path / "negv.safetensors", tensors, c.metadata);
    CHECK_THROWS_WITH(
        load_checkpoint(dir.path / "negv.safetensors", target, &target_opt),
        Catch::Contains("tensor 'optimizer.v.embed.weight' element 3 is -9.99999994e-09 (AdamW's "
                        "second moment must be finite and >= 0)"));
  }
  CHECK_THROWS_WITH(save_checkpoint(dir.path / "x.safetensors", a, nullptr, {{"content_hash", "0"}}),
                    Catch::Contains("reserved for the content hash"));
}
