// Umbrella header for xplor's core: configuration, errors, views, Philox randomness, execution
// tags with the CPU drivers, group layouts and stable numerics. Standard library only: it pulls in
// neither Eigen, xtensor nor Thrust (include core/adapt_*.hpp or core/device.hpp for those).
#pragma once

#include "xplor/core/config.hpp"
#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/core/groups.hpp"
#include "xplor/core/numerics.hpp"
#include "xplor/core/random.hpp"
#include "xplor/core/view.hpp"
