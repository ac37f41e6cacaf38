#include "xplor/model/safetensors.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace fs = std::filesystem;
using xplor::model::read_safetensors;
using xplor::model::tensor_view_in;
using xplor::model::write_safetensors;

namespace {

/// A fresh directory under the system temp directory, removed with everything in it at the end.
struct scratch_dir {
  fs::path path;
  scratch_dir() {
    static int counter = 0;
    std::string name = "xplor_safetensors_test_";
    name += std::to_string(::getpid());
    name += "_";
    name += std::to_string(counter++);
    path = fs::temp_directory_path() / name;
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~scratch_dir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  fs::path operator/(const std::string& name) const { return path / name; }
};

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xFF);
  return s;
}

std::string le_floats(const std::vector<float>& values) {
  std::string s;
  for (const float x : values) {
    const auto bits = std::bit_cast<std::uint32_t>(x);
    for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));
  }
  return s;
}

/// A file with the JSON `header` (padded to 8 bytes with spaces) and the raw `data` bytes.
std::string file_bytes(std::string header, const std::string& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  return le64(header.size()) + header + data;
}

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

bool same_bits(const std::vector<float>& a, std::span<const float> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), 4 * a.size()) == 0);
}

// The file of safetensors.torch.save_file({"a": torch.tensor([[1., 2.], [3., 4.]]),
// "b": torch.tensor([-0.5])}, path, metadata={"k": "v"}), byte by byte: the 137-byte compact
// header, 7 spaces to reach 144 = 0x90 (a multiple of 8), then 1, 2, 3, 4, -0.5 as little-endian
// fp32: 1.0f = 0x3F800000, 2.0f = 0x40000000, 3.0f = 0x40400000, 4.0f = 0x40800000,
// -0.5f = 0xBF000000.
std::string pytorch_file() {
  const std::string header =
      R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"F32","shape":[1],"data_offsets":[16,20]}})";
  REQUIRE(header.size() == 137);
  std::string bytes("\x90\x00\x00\x00\x00\x00\x00\x00", 8);
  bytes += header + std::string(7, ' ');
  const unsigned char data[20] = {0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00,
                                  0x40, 0x40, 0x00, 0x00, 0x80, 0x40, 0x00, 0x00, 0x00, 0xBF};
  bytes.append(reinterpret_cast<const char*>(data), sizeof data);
  REQUIRE(bytes.size() == 172);
  return bytes;
}

}  // namespace

TEST_CASE("read_safetensors reads a file laid out byte by byte as PyTorch's save_file writes it",
          "[safetensors]") {
  const scratch_dir dir;
  const fs::path p = dir / "torch.safetensors";
  write_bytes(p, pytorch_file());
  const auto c = read_safetensors(p);
  CHECK(c.metadata == std::map<std::string, std::string>{{"k", "v"}});
  REQUIRE(c.tensors.size() == 2);
  CHECK(c.tensors.at("a").shape == std::vector<std::int64_t>{2, 2});
  CHECK(c.tensors.at("a").data == std::vector<float>{1.0f, 2.0f, 3.0f, 4.0f});
  CHECK(c.tensors.at("b").shape == std::vector<std::int64_t>{1});
  CHECK(c.tensors.at("b").data == std::vector<float>{-0.5f});
}

TEST_CASE("write_safetensors writes the bytes PyTorch's save_file writes", "[safetensors]") {
  const scratch_dir dir;
  const std::vector<float> a{1.0f, 2.0f, 3.0f, 4.0f};
  const std::vector<float> b{-0.5f};
  // Given in reverse order: the file lists and lays out tensors by name.
  const std::vector<tensor_view_in> tensors{{"b", {1}, b}, {"a", {2, 2}, a}};
  write_safetensors(dir / "x.safetensors", tensors, {{"k", "v"}});
  CHECK(read_bytes(dir / "x.safetensors") == pytorch_file());

  // Without metadata there is no "__metadata__" key; with no tensors the header is "{}" padded.
  write_safetensors(dir / "y.safetensors", std::span(tensors).first(1));
  const std::string header = R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  REQUIRE(header.size() == 54);  // padded with 2 spaces to 56
  CHECK(read_bytes(dir / "y.safetensors") == file_bytes(header, le_floats({-0.5f})));
  CHECK(read_bytes(dir / "y.safetensors").substr(0, 8) == le64(56));
  write_safetensors(dir / "z.safetensors", {});
  CHECK(read_bytes(dir / "z.safetensors") == le64(8) + "{}      ");
  CHECK(read_safetensors(dir / "z.safetensors").tensors.empty());

  // A scalar (shape []) holds one value; a [0, 3] tensor none; names and metadata are escaped.
  const std::vector<float> scalar{7.0f};
  const std::vector<tensor_view_in> odd{{"s", {}, scalar}, {"e", {0, 3}, {}}, {"q\"\xC3\xB1", {1}, b}};
  write_safetensors(dir / "odd.safetensors", odd, {{"note", "line\nbreak"}});
  const std::string odd_header =
      R"({"__metadata__":{"note":"line\nbreak"},"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},)"
      "\"q\\\"\xC3\xB1\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      R"("s":{"dtype":"F32","shape":[],"data_offsets":[4,8]}})";
  CHECK(read_bytes(dir / "odd.safetensors") == file_bytes(odd_header, le_floats({-0.5f, 7.0f})));
  const auto c = read_safetensors(dir / "odd.safetensors");
  CHECK(c.metadata.at("note") == "line\nbreak");
  CHECK(c.tensors.at("s").shape.empty());
  CHECK(c.tensors.at("s").data == std::vector<float>{7.0f});
  CHECK(c.tensors.at("e").shape == std::vector<std::int64_t>{0, 3});
  CHECK(c.tensors.at("e").data.empty());
  CHECK(c.tensors.at("q\"\xC3\xB1").data == std::vector<float>{-0.5f});
}

TEST_CASE("safetensors round trips special floats bit for bit", "[safetensors]") {
  const scratch_dir dir;
  const std::vector<std::uint32_t> bits{
      0x80000000u,  // -0.0
      0x00000001u,  // smallest denormal
      0x807FFFFFu,  // largest negative denormal
      0x7F800000u,  // +inf
      0xFF800000u,  // -inf
      0x7FC12345u,  // quiet NaN with a payload
      0xFFC00001u,  // negative quiet NaN with a payload
      0x7F800001u,  // signalling NaN
      0x7F7FFFFFu,  // largest finite
  };
  std::vector<float> values;
  for (const auto b : bits) values.push_back(std::bit_cast<float>(b));
  const std::vector<tensor_view_in> tensors{{"special", {3, 3}, values}};
  write_safetensors(dir / "s.safetensors", tensors);
  const auto c = read_safetensors(dir / "s.safetensors");
  const auto& data = c.tensors.at("special").data;
  REQUIRE(data.size() == bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i) CHECK(std::bit_cast<std::uint32_t>(data[i]) == bits[i]);
}

TEST_CASE("safetensors round trips random tensors bit-exactly", "[safetensors][property]") {
  const scratch_dir dir;
  std::mt19937 rng(314159);
  std::uniform_int_distribution<int> rank(0, 3);
  std::uniform_int_distribution<std::int64_t> dim(0, 5);
  std::uniform_int_distribution<std::uint32_t> word;  // every bit pattern: NaNs, denormals, -0
  std::uniform_int_distribution<int> count(0, 6);
  std::uniform_int_distribution<int> letter('a', 'z');
  for (int trial = 0; trial < 60; ++trial) {
    std::map<std::string, std::pair<std::vector<std::int64_t>, std::vector<float>>> want;
    const int n = count(rng);
    for (int k = 0; k < n; ++k) {
      std::string name = "t";
      name += static_cast<char>(letter(rng));
      name += std::to_string(k);
      std::vector<std::int64_t> shape(static_cast<std::size_t>(rank(rng)));
      std::int64_t size = 1;
      for (auto& d : shape) size *= (d = dim(rng));
      std::vector<float> data(static_cast<std::size_t>(size));
      for (auto& x : data) x = std::bit_cast<float>(word(rng));
      want[name] = {shape, data};
    }
    std::vector<tensor_view_in> tensors;
    for (const auto& [name, t] : want) tensors.push_back({name, t.first, t.second});
    std::shuffle(tensors.begin(), tensors.end(), rng);
    std::map<std::string, std::string> metadata;
    if (trial % 2) metadata = {{"trial", std::to_string(trial)}, {"format", "pt"}};
    const fs::path p = dir / "r.safetensors";
    write_safetensors(p, tensors, metadata);

    const std::string bytes = read_bytes(p);
    std::uint64_t header_size = 0;
    for (int i = 0; i < 8; ++i)
      header_size |= std::uint64_t{static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)])} << (8 * i);
    REQUIRE(header_size % 8 == 0);
    std::uint64_t data_bytes = 0;
    for (const auto& [name, t] : want) data_bytes += 4 * t.second.size();
    REQUIRE(bytes.size() == 8 + header_size + data_bytes);

    const auto c = read_safetensors(p);
    REQUIRE(c.metadata == metadata);
    REQUIRE(c.tensors.size() == want.size());
    for (const auto& [name, t] : want) {
      REQUIRE(c.tensors.count(name) == 1);
      CHECK(c.tensors.at(name).shape == t.first);
      CHECK(same_bits(c.tensors.at(name).data, t.second));
    }
    REQUIRE(entries(dir.path) == std::vector<std::string>{"r.safetensors"});  // no temp files left
  }
}

TEST_CASE("write_safetensors rejects invalid tensors and leaves the existing file untouched",
          "[safetensors]") {
  const scratch_dir dir;
  const fs::path p = dir / "keep.safetensors";
  write_bytes(p, "old contents");
  const std::vector<float> four{1, 2, 3, 4};
  const auto write = [&](std::vector<tensor_view_in> tensors, std::map<std::string, std::string> meta = {}) {
    write_safetensors(p, tensors, meta);
  };
  CHECK_THROWS_AS(write({{"", {4}, four}}), xplor::error);
  CHECK_THROWS_WITH(write({{"a", {4}, four}, {"", {4}, four}}),
                    Catch::Contains("write_safetensors") && Catch::Contains("tensors[1] has an empty name"));
  CHECK_THROWS_WITH(write({{"w", {4}, four}, {"v", {2, 2}, four}, {"w", {1, 4}, four}}),
                    Catch::Contains("tensor 'w' appears twice"));
  CHECK_THROWS_WITH(write({{"__metadata__", {4}, four}}),
                    Catch::Contains("tensors[0] is named '__metadata__'"));
  CHECK_THROWS_WITH(write({{"m", {3}, four}}), Catch::Contains("tensor 'm' has shape [3] but 4 values"));
  CHECK_THROWS_WITH(write({{"m", {2, 3}, four}}),
                    Catch::Contains("tensor 'm' has shape [2, 3] but 4 values"));
  CHECK_THROWS_WITH(write({{"m", {}, four}}), Catch::Contains("tensor 'm' has shape [] but 4 values"));
  CHECK_THROWS_WITH(write({{"neg", {-2, -2}, four}}), Catch::Contains("tensor 'neg' has shape[0] = -2"));
  CHECK_THROWS_WITH(
      write({{"huge", {1 << 30, 1 << 30, 1 << 30}, four}}),
      Catch::Contains("tensor 'huge' has shape [1073741824, 1073741824, 1073741824] but 4 values"));
  CHECK_THROWS_WITH(write({{"bad\xFFutf8", {4}, four}}), Catch::Contains("is not valid UTF-8"));
  CHECK_THROWS_WITH(write({{"a", {4}, four}}, {{"k", "\xC3"}}),
                    Catch::Contains("metadata[\"k\"] is not valid UTF-8"));
  CHECK(read_bytes(p) == "old contents");
  CHECK(entries(dir.path) == std::vector<std::string>{"keep.safetensors"});
}

TEST_CASE("write_safetensors is atomic", "[safetensors]") {
  const scratch_dir dir;
  const std::vector<float> four{1, 2, 3, 4};
  const std::vector<tensor_view_in> tensors{{"a", {4}, four}};

  SECTION("a directory that does not exist fails and leaves no temp file") {
    const fs::path missing = dir / "no_such_dir";
    CHECK_THROWS_AS(write_safetensors(missing / "x.safetensors", tensors), xplor::error);
    CHECK_THROWS_WITH(write_safetensors(missing / "x.safetensors", tensors),
                      Catch::Contains("cannot create") && Catch::Contains("no_such_dir") &&
                          Catch::Contains("No such file or directory"));
    CHECK_FALSE(fs::exists(missing));
    CHECK(entries(dir.path).empty());
  }
  SECTION("a failed rename removes the temp file and leaves the target as it was") {
    const fs::path target = dir / "occupied";  // a non-empty directory cannot be renamed over
    fs::create_directories(target / "inside");
    CHECK_THROWS_WITH(write_safetensors(target, tensors),
                      Catch::Contains("cannot rename") && Catch::Contains("occupied"));
    CHECK(fs::is_directory(target / "inside"));
    CHECK(entries(dir.path) == std::vector<std::string>{"occupied"});
  }
  SECTION("an existing file survives a failed write and is replaced by a successful one") {
    const fs::path p = dir / "model.safetensors";
    write_safetensors(p, tensors);
    const std::string before = read_bytes(p);
    const std::vector<tensor_view_in> bad{{"a", {5}, four}};
    CHECK_THROWS_AS(write_safetensors(p, bad), xplor::error);
    CHECK(read_bytes(p) == before);
    const std::vector<float> two{5, 6};
    const std::vector<tensor_view_in> other{{"b", {2}, two}};
    write_safetensors(p, other, {{"step", "2"}});
    const auto c = read_safetensors(p);
    CHECK(c.tensors.count("a") == 0);
    CHECK(c.tensors.at("b").data == two);
    CHECK(c.metadata.at("step") == "2");
    CHECK(entries(dir.path) == std::vector<std::string>{"model.safetensors"});
  }
}

TEST_CASE(
    "a writer killed mid-write leaves the old or the new file, and the next write or read removes its temp "
    "file",
    "[safetensors][kill]") {
  const scratch_dir dir;
  const fs::path p = dir / "big.safetensors";
  constexpr std::int64_t n = 1 << 20;  // 4 MB per version, so that kills land mid-write
  const std::vector<float> v1(n, 1.0f), v2(n, 2.0f);
  const auto version = [&](const std::vector<float>& v) {
    return std::vector<tensor_view_in>{{"w", {n}, v}};
  };
  write_safetensors(p, version(v1));
  int killed_mid_write = 0;
  const int rounds = 24;
  for (int round = 0; round < rounds; ++round) {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      for (int k = 0;; ++k) write_safetensors(p, version(k % 2 == 0 ? v2 : v1));  // until killed
    }
    ::usleep(static_cast<useconds_t>(1000 * (2 + (round * 7) % 30)));
    ::kill(child, SIGKILL);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    const auto names = entries(dir.path);
    killed_mid_write += names.size() > 1;
    if (round % 2 == 0) {
      // The next read finds a whole file, one of the two versions, and removes the debris.
      const auto c = read_safetensors(p);
      const auto& w = c.tensors.at("w").data;
      CHECK((w == v1 || w == v2));
    } else {
      // The next write removes it.
      write_safetensors(p, version(v1));
      CHECK((read_safetensors(p).tensors.at("w").data == v1));
    }
    CHECK(entries(dir.path) == std::vector<std::string>{"big.safetensors"});
  }
  INFO(killed_mid_write << " of " << rounds << " kills left a temp file");
  CHECK(killed_mid_write > 0);
}

TEST_CASE("remove_stale_temp_files removes only dead processes' temp files of its target", "[safetensors]") {
  const scratch_dir dir;
  const fs::path p = dir / "t.safetensors";
  // A pid that is not running: a child that has exited and been reaped.
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  const std::string d = std::to_string(dead), live = std::to_string(::getppid());
  for (const std::string& name : {"t.safetensors.tmp." + d + ".0", "t.safetensors.tmp." + live + ".3",
                                  "t.safetensors.tmp." + d + ".x", "u.safetensors.tmp." + d + ".0"})
    write_bytes(dir / name, "junk");
  CHECK(xplor::remove_stale_temp_files(p) == 1);
  std::vector<std::string> left{"t.safetensors.tmp." + d + ".x", "t.safetensors.tmp." + live + ".3",
                                "u.safetensors.tmp." + d + ".0"};
  std::sort(left.begin(), left.end());
  CHECK(entries(dir.path) == left);
}

TEST_CASE("read_safetensors rejects a file truncated at any point", "[safetensors]") {
  const scratch_dir dir;
  const fs::path p = dir / "cut.safetensors";
  const std::string whole = pytorch_file();
  for (std::size_t n = 0; n < whole.size(); ++n) {
    write_bytes(p, whole.substr(0, n));
    REQUIRE_THROWS_AS(read_safetensors(p), xplor::error);
  }
  write_bytes(p, whole.substr(0, 5));
  CHECK_THROWS_WITH(read_safetensors(p), Catch::Contains("read_safetensors: '" + p.string() + "'") &&
                                             Catch::Contains("the file is 5 bytes, shorter than the 8-byte"));
  write_bytes(p, whole.substr(0, 100));
  CHECK_THROWS_WITH(read_safetensors(p),
                    Catch::Contains("header length 144 is larger than the 92 bytes after it"));
  write_bytes(p, whole.substr(0, 160));
  CHECK_THROWS_WITH(read_safetensors(p),
                    Catch::Contains("tensor 'a' has data_offsets [0, 16], beyond the 8-byte data buffer") &&
                        Catch::Contains("truncated"));
  write_bytes(p, whole.substr(0, 171));
  CHECK_THROWS_WITH(read_safetensors(p),
                    Catch::Contains("tensor 'b' has data_offsets [16, 20], beyond the 19-byte"));
  write_bytes(p, whole + "x");
  CHECK_THROWS_WITH(read_safetensors(p),
                    Catch::Contains("the data buffer has 21 bytes but the tensors cover only 20"));
  fs::remove(p);
  CHECK_THROWS_WITH(read_safetensors(p),
                    Catch::Contains("cut.safetensors") && Catch::Contains("cannot read"));
  CHECK_THROWS_WITH(read_safetensors(dir.path), Catch::Contains("cannot read"));
}

TEST_CASE("read_safetensors rejects a wrong header length", "[safetensors]") {
  const scratch_dir dir;
  const fs::path p = dir / "len.safetensors";
  const std::string whole = pytorch_file();
  const auto with_length = [&](std::uint64_t n) { write_bytes(p, le64(n) + whole.substr(8)); };
  with_length(145);  // takes a data byte (0x00) into the JSON
  CHECK_THROWS_WITH(read_safetensors(p), Catch::Contains("the header is not valid JSON"));
  with_length(136);  // loses the closing brace
  CHECK_THROWS_WITH(read_safetensors(p), Catch::Contains("the header is not valid JSON"));
  with_length(143);  // still valid JSON, but a space is left in front of the data
  CHECK_THROWS_WITH(read_safetensors(p),
                    Catch::Contains("the data buffer has 21 bytes but the tensors cover only 20"));
  with_length(165);
  CHECK_THROWS_WITH(read_safetensors(p),
                    Catch::Contains("header length 165 is larger than the 164 bytes after it"));
  with_length(std::uint64_t{1} << 40);
  CHECK_THROWS_WITH(read_safetensors(p),
                    Catch::Contains("header length 1099511627776 is over the 100000000-byte limit"));
  with_length(0);
  CHECK_THROWS_WITH(read_safetensors(p), Catch::Contains("the header is not valid JSON"));
}

TEST_CASE("read_safetensors rejects malformed headers", "[safetensors]") {
  const scratch_dir dir;
  const fs::path p = dir / "bad.safetensors";
  const std::string four = le_floats({1, 2, 3, 4});
  const auto read_with = [&](const std::string& header, const std::string& data) {
    write_bytes(p, file_bytes(header, data));
    return read_safetensors(p);
  };
  CHECK_THROWS_WITH(read_with("{\"a\":", four), Catch::Contains("the header is not valid JSON"));
  CHECK_THROWS_WITH(read_with("not json", ""), Catch::Contains("the header is not valid JSON"));
  CHECK_THROWS_WITH(read_with("{\"\xFF\":1}", ""), Catch::Contains("the header is not valid JSON"));
  CHECK_THROWS_WITH(read_with(std::string("{}\0{\"junk", 8), ""),
                    Catch::Contains("the header is not valid JSON for safetensors (a NUL byte at offset 2 of "
                                    "the header)"));
  CHECK_THROWS_WITH(read_with("[1,2]", ""), Catch::Contains("the header is a JSON array, not an object"));
  CHECK_THROWS_WITH(read_with("\"str\"", ""), Catch::Contains("the header is a JSON string, not an object"));
  CHECK_THROWS_WITH(read_with(R"({"a":[1]})", ""),
                    Catch::Contains("tensor 'a' is a JSON array, not an object"));
  CHECK_THROWS_WITH(read_with(R"({"a":{"shape":[4],"data_offsets":[0,16]}})", four),
                    Catch::Contains("tensor 'a' has no dtype"));
  CHECK_THROWS_WITH(read_with(R"({"a":{"dtype":"F32","data_offsets":[0,16]}})", four),
                    Catch::Contains("tensor 'a' has no shape"));
  CHECK_THROWS_WITH(read_with(R"({"a":{"dtype":"F32","shape":[4]}})", four),
                    Catch::Contains("tensor 'a' has no data_offsets"));
  CHECK_THROWS_WITH(read_with(R"({"x":{"dtype":"F16","shape":[8],"data_offsets":[0,16]}})", four),
                    Catch::Contains("tensor 'x' has dtype F16; xplor reads F32 only"));
  CHECK_THROWS_WITH(read_with(R"({"x":{"dtype":"BF16","shape":[8],"data_offsets":[0,16]}})", four),
                    Catch::Contains("tensor 'x' has dtype BF16; xplor reads F32 only"));
  CHECK_THROWS_WITH(read_with(R"({"x":{"dtype":32,"shape":[4],"data_offsets":[0,16]}})", four),
                    Catch::Contains("tensor 'x' has dtype 32, not a string"));
  CHECK_THROWS_WITH(read_with(R"({"a":{"dtype":"F32","shape":4,"data_offsets":[0,16]}})", four),
                    Catch::Contains("tensor 'a' has shape 4, not an array"));
  CHECK_THROWS_WITH(read_with(R"({"a":{"dtype":"F32","shape":[2,-2],"data_offsets":[0,16]}})", four),
                    Catch::Contains("tensor 'a' has shape[1] = -2, not a dim >= 0"));
  CHECK_THROWS_WITH(read_with(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,16]}})", four),
                    Catch::Contains("tensor 'a' has shape[0] = 2.5"));
  CHECK_THROWS_WITH(read_with(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0.0,16]}})", four),
                    Catch::Contains("tensor 'a' has data_offsets [0.0,16], not two non-negative integers"));
  CHECK_THROWS_WITH(read_with(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[-4,12]}})", four),
                    Catch::Contains("not two non-negative integers"));
  CHECK_THROWS_WITH(read_with(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":["0","16"]}})", four),
                    Catch::Contains("not two non-negative integers"));
  CHECK_THROWS_WITH(read_with(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16,32]}})", four),
                    Catch::Contains("not two non-negative integers"));
  CHECK_THROWS_WITH(read_with(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}})", four),
                    Catch::Contains("tensor 'a' has data_offsets [16, 0]: begin > end"));
  CHECK_THROWS_WITH(read_with(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,20]}})", four),
                    Catch::Contains("beyond the 16-byte data buffer"));
  CHECK_THROWS_WITH(
      read_with(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", four),
      Catch::Contains("tensor 'a' has 16 bytes of data (data_offsets [0, 16]) but shape [3] needs"));
  CHECK_THROWS_WITH(read_with(R"({"a":{"dtype":"F32","shape":[],"data_offsets":[0,16]}})", four),
                    Catch::Contains("but shape [] needs"));
  CHECK_THROWS_WITH(
      read_with(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,16]}})", four),
      Catch::Contains("but shape [4294967296, 4294967296, 4] needs"));
  CHECK_THROWS_WITH(
      read_with(R"({"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", four),
      Catch::Contains("__metadata__ value for key 'k' is a JSON number, not a string"));
  CHECK_THROWS_WITH(read_with(R"({"__metadata__":["k"]})", ""),
                    Catch::Contains("__metadata__ is a JSON array, not an object of strings"));
  CHECK_THROWS_WITH(read_with(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                              R"("a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                              four),
                    Catch::Contains("the header has the key 'a' more than once"));
  // What is valid besides: extra fields are ignored, keys may come in any order.
  const auto c = read_with(R"({"a":{"data_offsets":[0,16],"shape":[2,2],"dtype":"F32","extra":1}})", four);
  CHECK(c.tensors.at("a").data == std::vector<float>{1, 2, 3, 4});
  CHECK(read_with("{}", "").tensors.empty());
}

TEST_CASE("read_safetensors rejects overlapping, gapped and trailing data", "[safetensors]") {
  const scratch_dir dir;
  const fs::path p = dir / "layout.safetensors";
  const auto read_with = [&](const std::string& header, const std::string& data) {
    write_bytes(p, file_bytes(header, data));
    return read_safetensors(p);
  };
  const std::string eight = le_floats({1, 2, 3, 4, 5, 6, 7, 8});
  CHECK_THROWS_WITH(
      read_with(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                eight),
      Catch::Contains("tensor 'b' data_offsets [8, 24] overlap tensor 'a' data_offsets [0, 16]"));
  CHECK_THROWS_WITH(read_with(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                              R"("b":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                              eight.substr(0, 16)),
                    Catch::Contains("overlap"));
  CHECK_THROWS_WITH(read_with(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}})",
                              eight),
                    Catch::Contains("bytes [8, 16) of the data buffer belong to no tensor"));
  CHECK_THROWS_WITH(read_with(R"({"b":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}})", eight),
                    Catch::Contains("bytes [0, 16) of the data buffer belong to no tensor"));
  CHECK_THROWS_WITH(read_with(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", eight),
                    Catch::Contains("the data buffer has 32 bytes but the tensors cover only 16"));
  // Tensors may be listed in any order, and empty tensors sit anywhere between others.
  const auto c = read_with(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[16,32]},)"
                           R"("b":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                           R"("e":{"dtype":"F32","shape":[0],"data_offsets":[16,16]}})",
                           eight);
  CHECK(c.tensors.at("a").data == std::vector<float>{5, 6, 7, 8});
  CHECK(c.tensors.at("b").data == std::vector<float>{1, 2, 3, 4});
  CHECK(c.tensors.at("e").data.empty());
}

TEST_CASE("read_safetensors throws only xplor::error on randomly corrupted files",
          "[safetensors][property]") {
  const scratch_dir dir;
  const fs::path p = dir / "fuzz.safetensors";
  const std::string whole = pytorch_file();
  std::mt19937 rng(2718);
  std::uniform_int_distribution<std::size_t> position(0, whole.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  int rejected = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    std::string bytes = whole;
    const int flips = 1 + trial % 3;
    for (int k = 0; k < flips; ++k) bytes[position(rng)] = static_cast<char>(byte(rng));
    write_bytes(p, bytes);
    try {
      const auto c = read_safetensors(p);
      // Accepted: then it is consistent (only data or harmless header bytes changed).
      std::uint64_t header_size = 0;
      for (int i = 0; i < 8; ++i)
        header_size |= std::uint64_t{static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)])}
                       << (8 * i);
      std::size_t values = 0;
      for (const auto& [name, t] : c.tensors) values += t.data.size();
      REQUIRE(8 + header_size + 4 * values == bytes.size());
    } catch (const xplor::error& e) {
      ++rejected;
      REQUIRE_THAT(e.what(), Catch::StartsWith("xplor::model::read_safetensors: '" + p.string() + "': "));
    }
  }
  CHECK(rejected > 500);
}

TEST_CASE("read_safetensors survives hostile headers: nesting, huge numbers, long names, shared bytes",
          "[safetensors]") {
  const scratch_dir dir;
  const fs::path p = dir / "hostile.safetensors";
  const auto read_with = [&](const std::string& header, const std::string& data) {
    write_bytes(p, file_bytes(header, data));
    return read_safetensors(p);
  };
  // 100k nested arrays (200 KB) overflowed the stack when the error path dumped the value.
  const std::string deep = "{\"a\":{\"dtype\":\"F32\",\"shape\":" + std::string(100000, '[') +
                           std::string(100000, ']') + ",\"data_offsets\":[0,0]}}";
  CHECK_THROWS_WITH(read_with(deep, ""), Catch::Contains("nesting deeper than 8 at offset 34 of the header"));
  // Brackets inside strings do not count.
  const std::string quoted = "{\"__metadata__\":{\"k\":\"" + std::string(1000, '[') + "\"}}";
  CHECK(read_with(quoted, "").metadata.at("k").size() == 1000);
  // A number beyond double's range is nlohmann's out_of_range, not a parse_error.
  CHECK_THROWS_WITH(read_with(R"({"a":{"dtype":"F32","shape":[1e999],"data_offsets":[0,0]}})", ""),
                    Catch::Contains("the header is not valid JSON (") && Catch::Contains("1e999"));
  // A megabyte name is cut in the message.
  const std::string long_name(1 << 20, 'n');
  try {
    read_with("{\"" + long_name + "\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[0,0]}}", "");
    FAIL("accepted");
  } catch (const xplor::error& e) {
    CHECK(std::string(e.what()).size() < 400);
    CHECK_THAT(e.what(), Catch::Contains("nnn...'"));
  }
  // 20000 tensors claiming the same 64 MB would need 1.3 TB if each were allocated before the
  // extents are checked; they overlap, so nothing is allocated.
  std::string shared = "{";
  for (int i = 0; i < 20000; ++i)
    shared += (i ? ",\"t" : "\"t") + std::to_string(i) +
              "\":{\"dtype\":\"F32\",\"shape\":[16777216],"
              "\"data_offsets\":[0,67108864]}";
  shared += "}";
  write_bytes(p, file_bytes(shared, std::string(64 << 20, '\0')));
  CHECK_THROWS_WITH(read_safetensors(p), Catch::Contains("overlap tensor"));
}
