#include "xplor/core/config.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <string_view>

#define XPLOR_TEST_STR2(x) #x
#define XPLOR_TEST_STR(x) XPLOR_TEST_STR2(x)

TEST_CASE("version macros agree with each other and with the CMake project version", "[config]") {
  const std::string joined = std::to_string(XPLOR_VERSION_MAJOR) + "." + std::to_string(XPLOR_VERSION_MINOR) +
                             "." + std::to_string(XPLOR_VERSION_PATCH);
  CHECK(joined == XPLOR_VERSION_STRING);
  CHECK(joined == XPLOR_CMAKE_VERSION);
  CHECK(XPLOR_VERSION == XPLOR_VERSION_MAJOR * 10000 + XPLOR_VERSION_MINOR * 100 + XPLOR_VERSION_PATCH);
}

TEST_CASE("XPLOR_HD is empty for a host compiler", "[config]") {
  CHECK(std::string_view(XPLOR_TEST_STR(XPLOR_HD)).empty());
}
