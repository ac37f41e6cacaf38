// The extension module xplor._xplor. The package's Python modules (xplor.reward, xplor.rl, ...)
// re-export its functions by component; docs/python.md is the user's guide.
#include "common.hpp"

#include "xplor/core/config.hpp"

NB_MODULE(_xplor, m) {
  m.doc() = "xplor's C++ components (header-only library) bound with nanobind";
  m.attr("__version__") = XPLOR_VERSION_STRING;
  // Bad input raises xplor.Error, a ValueError carrying xplor's message (function, argument, value).
  nb::exception<xplor::error>(m, "Error", PyExc_ValueError);
  xplor::python::bind_reward(m);
  xplor::python::bind_budget(m);
  xplor::python::bind_rl(m);
  xplor::python::bind_sample(m);
  xplor::python::bind_env(m);
  xplor::python::bind_search(m);
  // For the tests: the address a float32 input is read from (equal to the caller's buffer when no
  // copy was made).
  m.def(
      "_input_address",
      [](xplor::python::in1<float> a) { return reinterpret_cast<std::uintptr_t>(a.data()); },
      nb::arg("array"));
}
