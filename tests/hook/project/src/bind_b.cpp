#include <pybind11/pybind11.h>
#include "plain.h"
namespace py = pybind11;
void bind_b(py::module_ &m) {
    m.def("b", [](int x) { return plain_a(plain_b(x)) + 'b' - 'a'; }, "plain_a(plain_b(x)) + offset");
}
