#include <pybind11/pybind11.h>
namespace py = pybind11;
void bind_b(py::module_ &m) { m.def("b", [](int x) { return x * 2; }); }
