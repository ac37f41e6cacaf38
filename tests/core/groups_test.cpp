#include "xplor/core/groups.hpp"

#include <catch2/catch.hpp>
#include <vector>

TEST_CASE("equal_groups covers contiguous ranges", "[groups]") {
  const xplor::equal_groups g(3, 4);
  CHECK(g.num_groups() == 3);
  CHECK(g.num_elements() == 12);
  CHECK(g.begin(2) == 8);
  CHECK(g.end(2) == 12);
  CHECK_THROWS_WITH(xplor::equal_groups(-1, 4), Catch::Contains("count = -1"));
  CHECK_THROWS_WITH(xplor::equal_groups(2, -4), Catch::Contains("size = -4"));
}

TEST_CASE("ragged_groups validates the offsets", "[groups]") {
  const std::vector<std::int64_t> ok{0, 2, 2, 5};
  const xplor::ragged_groups g(ok, 5);
  CHECK(g.num_groups() == 3);
  CHECK(g.begin(1) == 2);
  CHECK(g.end(1) == 2);
  CHECK(g.end(2) == 5);

  const std::vector<std::int64_t> decreasing{0, 3, 2, 5};
  CHECK_THROWS_WITH(xplor::ragged_groups(decreasing, 5), Catch::Contains("offsets[2] = 2 < offsets[1] = 3"));
  CHECK_THROWS_WITH(xplor::ragged_groups(ok, 6), Catch::Contains("offsets end at 5 but the data has 6"));
  const std::vector<std::int64_t> shifted{1, 3};
  CHECK_THROWS_WITH(xplor::ragged_groups(shifted, 3), Catch::Contains("offsets[0] = 1"));
  CHECK_THROWS_WITH(xplor::ragged_groups(std::span<const std::int64_t>{}, 0),
                    Catch::Contains("offsets is empty"));
  const std::vector<std::int64_t> none{0};
  CHECK(xplor::ragged_groups(none, 0).num_groups() == 0);
}

TEST_CASE("offsets_from_counts accumulates counts", "[groups]") {
  const std::vector<int> counts{3, 0, 2};
  CHECK(xplor::offsets_from_counts(counts) == std::vector<std::int64_t>{0, 3, 3, 5});
  const std::vector<int> bad{1, -2};
  CHECK_THROWS_WITH(xplor::offsets_from_counts(bad), Catch::Contains("counts[1] = -2"));
}
