#include <pybind11/pybind11.h>
namespace py = pybind11;
void bind_a(py::module_ &m);
void bind_b(py::module_ &m);
PYBIND11_MODULE(_mdemo, m) {
    bind_a(m);
    bind_b(m);
}
