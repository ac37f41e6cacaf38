// The built-in environments and their registry. Id scheme (docs/env_tasks.md):
// `<family>:<Name>-v0-<spec>`, where <spec> is a level name or '-'-separated key<value> tokens:
//   game:GuessTheNumber-v0-{easy,hard,random}             tasks/guess_number.hpp (multi-turn)
//   math:Arithmetic-v0-{easy,medium,hard | d<D>-n<N>-ops<chars>}  tasks/arithmetic.hpp
//   math:Countdown-v0-{easy,medium,hard | n<N>-max<M>}     tasks/countdown.hpp
//   text:Reverse-v0-{easy,medium,hard | len<L>}           tasks/strings.hpp
//   text:Sort-v0-{easy,medium,hard | len<L>}              tasks/strings.hpp
// An unknown id throws xplor::error listing the registered prefixes (registry::make); a known
// prefix with a bad spec throws xplor::error naming the spec.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "xplor/env/env.hpp"
#include "xplor/env/tasks/arithmetic.hpp"
#include "xplor/env/tasks/countdown.hpp"
#include "xplor/env/tasks/guess_number.hpp"
#include "xplor/env/tasks/strings.hpp"

namespace xplor::env {

/// A registry holding every built-in task prefix. Add your own tasks to it with registry::add.
inline registry builtin_registry() {
  registry r;
  r.add(std::string(guess_number::id_prefix), [](std::string_view id) { return guess_number::from_id(id); });
  r.add(std::string(arithmetic::id_prefix), [](std::string_view id) { return arithmetic::from_id(id); });
  r.add(std::string(countdown::id_prefix), [](std::string_view id) { return countdown::from_id(id); });
  r.add(std::string(string_task::reverse_prefix),
        [](std::string_view id) { return string_task::from_id(id); });
  r.add(std::string(string_task::sort_prefix), [](std::string_view id) { return string_task::from_id(id); });
  return r;
}

/// GEM's make: the built-in environment of `id`, e.g. make("game:GuessTheNumber-v0-easy").
inline std::unique_ptr<environment> make(std::string_view id) { return builtin_registry().make(id); }

}  // namespace xplor::env
