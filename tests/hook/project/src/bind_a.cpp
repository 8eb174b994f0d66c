#include <pybind11/pybind11.h>
#include "plain.h"
namespace py = pybind11;
void bind_a(py::module_ &m) {
    m.def("a", [](int x) { return plain_a(plain_b(x)) + 'a' - 'a'; }, "plain_a(plain_b(x)) + offset");
}
