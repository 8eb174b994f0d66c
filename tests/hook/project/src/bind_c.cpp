#include <pybind11/pybind11.h>
#include "plain.h"
namespace py = pybind11;
void bind_c(py::module_ &m) {
    m.def("c", [](int x) { return plain_a(plain_b(x)) + 'c' - 'a'; }, "plain_a(plain_b(x)) + offset");
}
