#include "xplor/core/error.hpp"

#include <catch2/catch.hpp>
#include <stdexcept>
#include <string>
#include <type_traits>

TEST_CASE("xplor::error is a std::invalid_argument", "[error]") {
  STATIC_REQUIRE(std::is_base_of_v<std::invalid_argument, xplor::error>);
  try {
    xplor::detail::fail("xplor::f", "argument 'p' = ", 1.5, " is outside [0, 1]");
    FAIL("fail() returned");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()) == "xplor::f: argument 'p' = 1.5 is outside [0, 1]");
  }
}

TEST_CASE("require throws only when the condition fails and names the value", "[error]") {
  CHECK_NOTHROW(xplor::detail::require(true, "xplor::g", "never formatted"));
  CHECK_THROWS_MATCHES(xplor::detail::require(false, "xplor::g", "n = ", -3, " is negative"), xplor::error,
                       Catch::Matchers::Message("xplor::g: n = -3 is negative"));
}

TEST_CASE("error messages keep enough digits to tell floats apart", "[error]") {
  CHECK_THROWS_WITH(xplor::detail::fail("xplor::h", 0.1f), "xplor::h: 0.100000001");
}
