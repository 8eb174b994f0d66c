#include <pybind11/pybind11.h>
namespace py = pybind11;
void bind_a(py::module_ &m) { m.def("a", [](int x) { return x + 1; }); }
