#include "xplor/model/tokenizer.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

using xplor::model::byte_tokenizer;
using tokens = std::vector<std::int32_t>;

TEST_CASE("byte_tokenizer maps bytes to ids and has bos, eos, pad after them", "[tokenizer]") {
  const byte_tokenizer tok;
  CHECK(tok.vocab_size() == 259);
  CHECK(tok.bos() == 256);
  CHECK(tok.eos() == 257);
  CHECK(tok.pad() == 258);
  CHECK(tok.special("bos") == 256);
  CHECK(tok.special("eos") == 257);
  CHECK(tok.special("pad") == 258);
  CHECK(tok.special_name(257) == "eos");
  CHECK_FALSE(tok.is_special(255));
  CHECK(tok.is_special(256));
  CHECK(tok.is_special(258));
  CHECK_FALSE(tok.is_special(259));
  CHECK_FALSE(tok.is_special(-1));

  // 'H' = 0x48 = 72, 'i' = 0x69 = 105; UTF-8 "é" = C3 A9 = 195, 169; NUL and 0xFF are bytes too.
  CHECK(tok.encode("Hi") == tokens{72, 105});
  CHECK(tok.encode("\xC3\xA9") == tokens{195, 169});
  CHECK(tok.encode(std::string("a\0\xff", 3)) == tokens{97, 0, 255});
  CHECK(tok.encode("") == tokens{});
  CHECK(tok.encode("Hi", {.add_bos = true, .add_eos = true}) == tokens{256, 72, 105, 257});
  CHECK(tok.encode("", {.add_bos = true}) == tokens{256});

  const tokens ids{256, 72, 105, 257, 258};
  CHECK(tok.decode(ids) == "<|bos|>Hi<|eos|><|pad|>");
  CHECK(tok.decode(ids, {.render_specials = false}) == "Hi");
  CHECK(tok.decode(tokens{97, 0, 255}) == std::string("a\0\xff", 3));
  CHECK(tok.decode(tokens{}).empty());
}

TEST_CASE("byte_tokenizer parses <|name|> of known specials only when asked", "[tokenizer]") {
  byte_tokenizer tok;
  // '<' = 60, '|' = 124, '>' = 62, 'a' = 97, 'b' = 98.
  CHECK(tok.encode("a<|eos|>b", {.parse_specials = true}) == tokens{97, 257, 98});
  CHECK(tok.encode("a<|eos|>b").size() == 9);
  CHECK(tok.encode("<|pad|><|bos|>", {.parse_specials = true}) == tokens{258, 256});
  // Unknown names, incomplete forms and empty names stay bytes.
  CHECK(tok.encode("<|foo|>", {.parse_specials = true}) == tokens{60, 124, 102, 111, 111, 124, 62});
  CHECK(tok.encode("<|eos|", {.parse_specials = true}) == tokens{60, 124, 101, 111, 115, 124});
  CHECK(tok.encode("<||>", {.parse_specials = true}) == tokens{60, 124, 124, 62});
  CHECK(tok.encode("<|eos >", {.parse_specials = true}).size() == 7);
  // A "<|" that opens no special is a byte, and a special right after it is still found.
  CHECK(tok.encode("<|<|eos|>", {.parse_specials = true}) == tokens{60, 124, 257});
  CHECK(tok.encode("<|a<|eos|>|>", {.parse_specials = true}) == tokens{60, 124, 97, 257, 124, 62});
  // Names are case-sensitive.
  CHECK(tok.encode("<|EOS|>", {.parse_specials = true}).size() == 7);

  const int tool = tok.add_special("tool_call");
  CHECK(tool == 259);
  CHECK(tok.encode("x<|tool_call|>", {.add_bos = true, .parse_specials = true}) == tokens{256, 120, 259});
  CHECK(tok.decode(tokens{259, 120}) == "<|tool_call|>x");
}

TEST_CASE("byte_tokenizer::add_special appends ids and validates names", "[tokenizer]") {
  byte_tokenizer tok;
  CHECK(tok.add_special("think") == 259);
  CHECK(tok.add_special("End_2") == 260);
  CHECK(tok.vocab_size() == 261);
  CHECK(tok.special("think") == 259);
  CHECK(tok.special_name(260) == "End_2");
  const std::string_view think = tok.special_name(259);
  for (int k = 0; k < 100; ++k) {  // the view stays valid
    std::string name = "s";
    name += std::to_string(k);
    tok.add_special(name);
  }
  CHECK(think == "think");
  CHECK(tok.vocab_size() == 361);
  CHECK(tok.special("s99") == 360);

  CHECK_THROWS_AS(tok.add_special("eos"), xplor::error);
  CHECK_THROWS_WITH(tok.add_special("eos"), Catch::Contains("name = \"eos\" is already special token 257"));
  CHECK_THROWS_WITH(tok.add_special("think"), Catch::Contains("add_special") && Catch::Contains("259"));
  CHECK_THROWS_WITH(tok.add_special(""), Catch::Contains("name = \"\" is empty"));
  CHECK_THROWS_WITH(tok.add_special("a b"),
                    Catch::Contains("name = \"a b\" has a character outside [A-Za-z0-9_]"));
  CHECK_THROWS_WITH(tok.add_special("x|>"), Catch::Contains("name = \"x|>\""));
  CHECK_THROWS_WITH(tok.add_special("caf\xC3\xA9"), Catch::Contains("outside [A-Za-z0-9_]"));
  CHECK(tok.vocab_size() == 361);  // failed additions add nothing

  CHECK_THROWS_WITH(tok.special("nope"), Catch::Contains("name = \"nope\" is not a special token"));
  CHECK_THROWS_WITH(tok.special_name(65), Catch::Contains("id = 65 is not a special token"));
  CHECK_THROWS_WITH(tok.special_name(361), Catch::Contains("id = 361"));
}

TEST_CASE("byte_tokenizer::decode rejects ids outside the vocabulary", "[tokenizer]") {
  const byte_tokenizer tok;
  CHECK_THROWS_AS(tok.decode(tokens{1, 2, 3, 300}), xplor::error);
  CHECK_THROWS_WITH(
      tok.decode(tokens{1, 2, 3, 300}),
      Catch::Contains("byte_tokenizer::decode") && Catch::Contains("tokens[3] = 300 is outside [0, 259)"));
  CHECK_THROWS_WITH(tok.decode(tokens{-1}), Catch::Contains("tokens[0] = -1 is outside [0, 259)"));
  CHECK_THROWS_WITH(tok.decode(tokens{259}, {.render_specials = false}), Catch::Contains("tokens[0] = 259"));
  CHECK(tok.decode(tokens{258}) == "<|pad|>");  // the last id is fine
}

TEST_CASE("byte_tokenizer round trips random byte strings exactly", "[tokenizer][property]") {
  byte_tokenizer tok;
  tok.add_special("tool");
  std::mt19937 rng(20240611);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> length(0, 64);
  for (int trial = 0; trial < 500; ++trial) {
    std::string s(static_cast<std::size_t>(length(rng)), '\0');
    for (char& c : s) c = static_cast<char>(byte(rng));
    const auto ids = tok.encode(s);
    REQUIRE(ids.size() == s.size());
    for (std::size_t i = 0; i < s.size(); ++i) REQUIRE(ids[i] == static_cast<unsigned char>(s[i]));
    REQUIRE(tok.decode(ids) == s);
    REQUIRE(tok.decode(tok.encode(s, {.parse_specials = true})) == s);
    const auto framed = tok.encode(s, {.add_bos = true, .add_eos = true});
    REQUIRE(tok.decode(framed, {.render_specials = false}) == s);
  }
}

TEST_CASE("byte_tokenizer round trips random text full of special forms", "[tokenizer][property]") {
  byte_tokenizer tok;
  tok.add_special("tool");
  // Fragments that build known, unknown, nested and broken special forms.
  const std::vector<std::string> pieces{
      "<|",   "|>",  "<", "|",       ">",        "eos",      "bos",
      "tool", "pad", "x", "<|eos|>", "<|tool|>", "<|nope|>", std::string("\0", 1),
      "\xff"};
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::size_t> pick(0, pieces.size() - 1);
  std::uniform_int_distribution<int> count(0, 20);
  for (int trial = 0; trial < 1000; ++trial) {
    std::string s;
    const int n = count(rng);
    for (int k = 0; k < n; ++k) s += pieces[pick(rng)];
    const auto parsed = tok.encode(s, {.parse_specials = true});
    REQUIRE(tok.decode(parsed) == s);
    REQUIRE(parsed.size() <= s.size());
    REQUIRE(tok.decode(tok.encode(s)) == s);
    // Removing the specials removes exactly their text forms.
    std::size_t special_bytes = 0;
    for (const std::int32_t id : parsed)
      if (tok.is_special(id)) special_bytes += tok.special_name(id).size() + 4;
    REQUIRE(tok.decode(parsed, {.render_specials = false}).size() == s.size() - special_bytes);
  }
}

TEST_CASE("byte_tokenizer decode then parse-encode keeps random token sequences' text",
          "[tokenizer][property]") {
  const byte_tokenizer tok;
  std::mt19937 rng(99);
  std::uniform_int_distribution<std::int32_t> id(0, tok.vocab_size() - 1);
  for (int trial = 0; trial < 300; ++trial) {
    tokens ids(static_cast<std::size_t>(trial % 40));
    for (auto& t : ids) t = id(rng);
    const std::string text = tok.decode(ids);
    const auto again = tok.encode(text, {.parse_specials = true});
    REQUIRE(tok.decode(again) == text);
    // Every special in ids comes back (bytes could only add more, never fewer).
    const auto specials = [&](const tokens& v) {
      return std::count_if(v.begin(), v.end(), [&](std::int32_t t) { return tok.is_special(t); });
    };
    REQUIRE(specials(again) >= specials(ids));
  }
}
