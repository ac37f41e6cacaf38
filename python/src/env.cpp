// xplor.env: GEM-style environments (env/env.hpp, builtin.hpp, vector_env.hpp) with Gym's API:
// reset(seed) -> (observation, info), step(action) -> (observation, reward, terminated, truncated, info).
#include <memory>

#include <nanobind/stl/map.h>

#include "common.hpp"
#include "xplor/env/builtin.hpp"
#include "xplor/env/vector_env.hpp"

namespace xplor::python {
namespace {

using namespace xplor::env;

// One environment, owned (the C++ interface is abstract; Python holds it through this box).
struct env_box {
  std::unique_ptr<environment> env;
  environment& get() const {
    xplor::detail::require(env != nullptr, "xplor.env.Env", "the environment was moved into a VectorEnv");
    return *env;
  }
};

autoreset_mode autoreset_named(std::string_view name) {
  if (name == "same_step") return autoreset_mode::same_step;
  if (name == "next_step") return autoreset_mode::next_step;
  xplor::detail::fail("xplor.env.VectorEnv", "autoreset = '", name, "' is not one of same_step, next_step");
}

}  // namespace

void bind_env(nb::module_& m) {
  nb::class_<env_box>(m, "Env", "A GEM environment: text observations, the whole response as the action.")
      .def(
          "reset",
          [](env_box& b, std::uint64_t seed) {
            environment& e = b.get();
            reset_result r;
            {
              nb::gil_scoped_release release;
              r = e.reset(seed);
            }
            return nb::make_tuple(r.observation, r.info);
          },
          nb::arg("seed") = 0, "(observation, info); the same seed gives the same episode.")
      .def(
          "step",
          [](env_box& b, std::string_view action) {
            environment& e = b.get();
            step_result r;
            {
              nb::gil_scoped_release release;
              r = e.step(action);
            }
            return nb::make_tuple(r.observation, r.reward, r.terminated, r.truncated, r.info);
          },
          nb::arg("action"), "(observation, reward, terminated, truncated, info) after one turn.")
      .def(
          "clone", [](const env_box& b) { return env_box{b.get().clone()}; },
          "An independent copy in the same state (GEM spawn(same_state=True)).")
      .def_prop_ro("id", [](const env_box& b) { return b.get().id(); });

  m.def(
      "make", [](std::string_view id) { return env_box{make(id)}; }, nb::arg("id"),
      "GEM's make: the built-in environment of `id`, e.g. 'game:GuessTheNumber-v0-easy', "
      "'math:Arithmetic-v0', "
      "'math:Countdown-v0', 'text:Reverse-v0', 'text:Sort-v0'.");
  m.def(
      "registered", [] { return builtin_registry().prefixes(); }, "The id prefixes make() knows.");

  nb::class_<vector_env>(
      m, "VectorEnv",
      "num_envs copies of one environment stepped together (GEM's vector env), on `threads` "
      "worker threads with the GIL released; finished episodes reset automatically.")
      .def(
          "__init__",
          [](vector_env* v, std::string_view id, int num_envs, std::string_view autoreset, int threads) {
            vector_options o;
            o.autoreset = autoreset_named(autoreset);
            o.threads = threads;
            new (v) vector_env(vector_env::of(*make(id), num_envs, o));
          },
          nb::arg("id"), nb::arg("num_envs"), nb::kw_only(), nb::arg("autoreset") = "same_step",
          nb::arg("threads") = 1)
      .def("__len__", &vector_env::size)
      .def(
          "reset",
          [](vector_env& v, std::uint64_t seed) {
            vector_reset_result r;
            {
              nb::gil_scoped_release release;
              r = v.reset(seed);
            }
            return nb::make_tuple(r.observations, r.infos);
          },
          nb::arg("seed") = 0, "(observations, infos); sub-environment i gets seed + i.")
      .def(
          "step",
          [](vector_env& v, const std::vector<std::string>& actions) {
            vector_step_result r;
            {
              nb::gil_scoped_release release;
              r = v.step(actions);
            }
            auto terminated = to_numpy(std::move(r.terminated));
            auto truncated = to_numpy(std::move(r.truncated));
            return nb::make_tuple(r.observations, to_numpy(std::move(r.rewards)),
                                  nb::object(nb::cast(terminated)).attr("astype")("bool"),
                                  nb::object(nb::cast(truncated)).attr("astype")("bool"), r.infos);
          },
          nb::arg("actions"),
          "(observations, rewards float32, terminated bool, truncated bool, infos) after one turn of every "
          "environment.");
}

}  // namespace xplor::python
