/* Thin CPython binding of kernel.h: argument conversion only, the GIL released around C work. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "kernel.h"

static PyObject *py_omp_max_threads(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    int n;
    Py_BEGIN_ALLOW_THREADS
    n = ash_omp_max_threads();
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(n);
}

static PyMethodDef methods[] = {
    {"omp_max_threads", py_omp_max_threads, METH_NOARGS,
     "Threads an OpenMP parallel region entered from this thread uses (honours threadpoolctl)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ash.native._kernel", "ash's native OpenMP kernel.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernel(void) { return PyModule_Create(&module); }
