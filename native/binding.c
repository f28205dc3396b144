/* Thin CPython binding of kernel.h: argument conversion only, the GIL released around C work.
 *
 * Arrays arrive through the buffer protocol (numpy arrays, memoryviews, bytes): X must be a
 * C-contiguous 2-D float32 buffer, y a 1-D int32 buffer, states any bytes-like object. Every
 * kernel failure becomes a ValueError (MemoryError for allocation failures) carrying the
 * kernel's message, which names the offending argument. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#include "kernel.h"

static PyObject *raise_status(int rc, const ash_error *err) {
    PyErr_SetString(rc == ASH_E_NOMEM ? PyExc_MemoryError : PyExc_ValueError, err->msg);
    return NULL;
}

/* The type character of a struct-module format if it is native/little-endian standard size. */
static char fmt_char(const Py_buffer *v) {
    const char *f = v->format ? v->format : "B";
    if (f[0] == '@' || f[0] == '=' || f[0] == '<') f++;
    if (f[0] == '\0' || f[1] != '\0') return '?';
    return f[0];
}

static int get_array(PyObject *obj, Py_buffer *v, const char *name, int ndim, int want_float) {
    if (PyObject_GetBuffer(obj, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError,
                     "%s must be a C-contiguous %s array (buffer protocol), got %.80s", name,
                     want_float ? "float32" : "int32", Py_TYPE(obj)->tp_name);
        return -1;
    }
    char c = fmt_char(v);
    int ok = want_float ? (c == 'f' && v->itemsize == 4)
                        : ((c == 'i' || c == 'l') && v->itemsize == 4);
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "%s must have dtype %s, got buffer format '%s' (itemsize %zd)",
                     name, want_float ? "float32" : "int32", v->format ? v->format : "B",
                     v->itemsize);
        PyBuffer_Release(v);
        return -1;
    }
    if (v->ndim != ndim) {
        PyErr_Format(PyExc_ValueError, "%s must be %d-dimensional, got %d dimensions", name, ndim,
                     v->ndim);
        PyBuffer_Release(v);
        return -1;
    }
    return 0;
}

/* X (n x d float32) and y (n int32) with matching lengths. */
static int get_xy(PyObject *xo, PyObject *yo, Py_buffer *xv, Py_buffer *yv) {
    if (get_array(xo, xv, "X", 2, 1) != 0) return -1;
    if (get_array(yo, yv, "y", 1, 0) != 0) {
        PyBuffer_Release(xv);
        return -1;
    }
    if (yv->shape[0] != xv->shape[0]) {
        PyErr_Format(PyExc_ValueError, "y has %zd labels but X has %zd rows", yv->shape[0],
                     xv->shape[0]);
        PyBuffer_Release(xv);
        PyBuffer_Release(yv);
        return -1;
    }
    return 0;
}

static int parse_arch(PyObject *hidden, unsigned n_in, unsigned n_out, unsigned act,
                      unsigned opt, ash_mlp_arch *a) {
    memset(a, 0, sizeof *a);
    PyObject *seq = PySequence_Fast(hidden, "hidden must be a sequence of layer sizes");
    if (!seq) return -1;
    Py_ssize_t nh = PySequence_Fast_GET_SIZE(seq);
    if (nh < 1 || nh > ASH_MAX_HIDDEN) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "hidden must list 1 to %d layer sizes, got %zd",
                     ASH_MAX_HIDDEN, nh);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nh; i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "hidden[%zd] must be an int", i);
            return -1;
        }
        if (v < 1 || v > 65536) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "hidden[%zd] must be in [1, 65536], got %ld", i, v);
            return -1;
        }
        a->hidden[i] = (uint32_t)v;
    }
    Py_DECREF(seq);
    a->n_hidden = (uint32_t)nh;
    a->n_in = n_in;
    a->n_out = n_out;
    a->activation = act;
    a->optimizer = opt;
    return 0;
}

static PyObject *py_init_state(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"n_in", "hidden", "n_out", "activation", "optimizer", "seed", NULL};
    int n_in, n_out, act, opt;
    unsigned long long seed;
    PyObject *hidden;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iOiiiK", kwlist, &n_in, &hidden, &n_out, &act,
                                     &opt, &seed))
        return NULL;
    if (n_in < 1 || n_out < 2 || act < 0 || opt < 0) {
        PyErr_Format(PyExc_ValueError,
                     n_in < 1   ? "n_in must be >= 1, got %d"
                     : n_out < 2 ? "n_out (classes) must be >= 2, got %d"
                     : act < 0   ? "activation code %d is unknown"
                                 : "optimizer code %d is unknown",
                     n_in < 1 ? n_in : n_out < 2 ? n_out : act < 0 ? act : opt);
        return NULL;
    }
    ash_mlp_arch a;
    if (parse_arch(hidden, (unsigned)n_in, (unsigned)n_out, (unsigned)act, (unsigned)opt, &a))
        return NULL;
    ash_error err = {{0}};
    size_t size = ash_mlp_state_size(&a, &err);
    if (size == 0) return raise_status(ASH_E_ARG, &err);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (!out) return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = ash_mlp_init(&a, (uint64_t)seed, PyBytes_AS_STRING(out), size, &err);
    Py_END_ALLOW_THREADS
    if (rc != ASH_OK) {
        Py_DECREF(out);
        return raise_status(rc, &err);
    }
    return out;
}

static PyObject *py_state_info(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer st;
    if (!PyArg_ParseTuple(args, "y*:state_info", &st)) return NULL;
    ash_mlp_info info;
    ash_error err = {{0}};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = ash_mlp_inspect(st.buf, (size_t)st.len, &info, &err);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&st);
    if (rc != ASH_OK) return raise_status(rc, &err);
    PyObject *hidden = PyTuple_New(info.arch.n_hidden);
    if (!hidden) return NULL;
    for (uint32_t i = 0; i < info.arch.n_hidden; i++)
        PyTuple_SET_ITEM(hidden, i, PyLong_FromUnsignedLong(info.arch.hidden[i]));
    return Py_BuildValue("{s:I,s:N,s:I,s:I,s:I,s:K,s:K,s:K,s:K,s:K}", "n_in", info.arch.n_in,
                         "hidden", hidden, "n_out", info.arch.n_out, "activation",
                         info.arch.activation, "optimizer", info.arch.optimizer, "seed",
                         (unsigned long long)info.seed, "step", (unsigned long long)info.step,
                         "epochs_done", (unsigned long long)info.epochs_done, "n_params",
                         (unsigned long long)info.n_params, "n_opt",
                         (unsigned long long)info.n_opt);
}

static PyObject *py_state_params(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer st;
    if (!PyArg_ParseTuple(args, "y*:state_params", &st)) return NULL;
    ash_mlp_info info;
    ash_error err = {{0}};
    int rc = ash_mlp_inspect(st.buf, (size_t)st.len, &info, &err);
    if (rc != ASH_OK) {
        PyBuffer_Release(&st);
        return raise_status(rc, &err);
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(4 * info.n_params));
    if (!out) {
        PyBuffer_Release(&st);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ash_mlp_get_params(st.buf, (size_t)st.len, (float *)PyBytes_AS_STRING(out),
                            (size_t)info.n_params, &err);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&st);
    if (rc != ASH_OK) {
        Py_DECREF(out);
        return raise_status(rc, &err);
    }
    return out;
}

static PyObject *py_train(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"state", "X", "y", "epochs", "batch_size", "lr", "momentum",
                             "weight_decay", "dropout", "beta1", "beta2", "eps", NULL};
    Py_buffer st;
    PyObject *xo, *yo;
    long epochs, batch_size;
    double lr, momentum = 0.0, wd = 0.0, dropout = 0.0, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*OOlld|dddddd:train", kwlist, &st, &xo, &yo,
                                     &epochs, &batch_size, &lr, &momentum, &wd, &dropout, &b1,
                                     &b2, &eps))
        return NULL;
    if (epochs < 0 || epochs > 0x7fffffffL) {
        PyBuffer_Release(&st);
        PyErr_Format(PyExc_ValueError, "epochs must be >= 0, got %ld", epochs);
        return NULL;
    }
    if (batch_size < 1 || batch_size > 0x7fffffffL) {
        PyBuffer_Release(&st);
        PyErr_Format(PyExc_ValueError, "batch_size must be >= 1, got %ld", batch_size);
        return NULL;
    }
    Py_buffer xv, yv;
    if (get_xy(xo, yo, &xv, &yv) != 0) {
        PyBuffer_Release(&st);
        return NULL;
    }
    ash_train_config cfg = {(uint32_t)epochs, (uint32_t)batch_size, (float)lr, (float)momentum,
                            (float)wd, (float)dropout, (float)b1, (float)b2, (float)eps};
    ash_train_result res;
    ash_error err = {{0}};
    PyObject *out = PyBytes_FromStringAndSize(NULL, st.len);
    int rc = ASH_OK;
    if (out) {
        Py_BEGIN_ALLOW_THREADS
        rc = ash_mlp_train(st.buf, (size_t)st.len, PyBytes_AS_STRING(out), (const float *)xv.buf,
                           (const int32_t *)yv.buf, (size_t)xv.shape[0], (size_t)xv.shape[1],
                           &cfg, &res, &err);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&st);
    PyBuffer_Release(&xv);
    PyBuffer_Release(&yv);
    if (!out) return NULL;
    if (rc != ASH_OK) {
        Py_DECREF(out);
        return raise_status(rc, &err);
    }
    return Py_BuildValue("(NdIOi)", out, res.train_loss, res.epochs_run,
                         res.diverged ? Py_True : Py_False, res.threads);
}

static PyObject *py_evaluate(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer st;
    PyObject *xo, *yo;
    if (!PyArg_ParseTuple(args, "y*OO:evaluate", &st, &xo, &yo)) return NULL;
    Py_buffer xv, yv;
    if (get_xy(xo, yo, &xv, &yv) != 0) {
        PyBuffer_Release(&st);
        return NULL;
    }
    double loss = 0.0, acc = 0.0;
    int threads = 1, rc;
    ash_error err = {{0}};
    Py_BEGIN_ALLOW_THREADS
    rc = ash_mlp_evaluate(st.buf, (size_t)st.len, (const float *)xv.buf, (const int32_t *)yv.buf,
                          (size_t)xv.shape[0], (size_t)xv.shape[1], &loss, &acc, &threads, &err);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&st);
    PyBuffer_Release(&xv);
    PyBuffer_Release(&yv);
    if (rc != ASH_OK) return raise_status(rc, &err);
    return Py_BuildValue("(ddi)", loss, acc, threads);
}

static PyObject *py_loss_grad(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer st;
    PyObject *xo, *yo;
    double wd = 0.0;
    if (!PyArg_ParseTuple(args, "y*OO|d:loss_grad", &st, &xo, &yo, &wd)) return NULL;
    ash_mlp_info info;
    ash_error err = {{0}};
    int rc = ash_mlp_inspect(st.buf, (size_t)st.len, &info, &err);
    if (rc != ASH_OK) {
        PyBuffer_Release(&st);
        return raise_status(rc, &err);
    }
    Py_buffer xv, yv;
    if (get_xy(xo, yo, &xv, &yv) != 0) {
        PyBuffer_Release(&st);
        return NULL;
    }
    PyObject *grad = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(4 * info.n_params));
    double loss = 0.0;
    if (grad) {
        Py_BEGIN_ALLOW_THREADS
        rc = ash_mlp_loss_grad(st.buf, (size_t)st.len, (const float *)xv.buf,
                               (const int32_t *)yv.buf, (size_t)xv.shape[0], (size_t)xv.shape[1],
                               (float)wd, &loss, (float *)PyBytes_AS_STRING(grad),
                               (size_t)info.n_params, &err);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&st);
    PyBuffer_Release(&xv);
    PyBuffer_Release(&yv);
    if (!grad) return NULL;
    if (rc != ASH_OK) {
        Py_DECREF(grad);
        return raise_status(rc, &err);
    }
    return Py_BuildValue("(dN)", loss, grad);
}

static PyObject *py_omp_max_threads(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    int n;
    Py_BEGIN_ALLOW_THREADS
    n = ash_omp_max_threads();
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(n);
}

static PyObject *py_isa(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    return PyUnicode_FromString(ash_isa());
}

static PyMethodDef methods[] = {
    {"init_state", (PyCFunction)(void (*)(void))py_init_state, METH_VARARGS | METH_KEYWORDS,
     "init_state(n_in, hidden, n_out, activation, optimizer, seed) -> bytes: a fresh state."},
    {"state_info", py_state_info, METH_VARARGS,
     "state_info(state) -> dict: the validated header of a state."},
    {"state_params", py_state_params, METH_VARARGS,
     "state_params(state) -> bytes: the float32 parameters (W then b per layer)."},
    {"train", (PyCFunction)(void (*)(void))py_train, METH_VARARGS | METH_KEYWORDS,
     "train(state, X, y, epochs, batch_size, lr, momentum=0, weight_decay=0, dropout=0, "
     "beta1=0.9, beta2=0.999, eps=1e-8) -> (state, train_loss, epochs_run, diverged, threads)."},
    {"evaluate", py_evaluate, METH_VARARGS,
     "evaluate(state, X, y) -> (loss, accuracy, threads), no dropout."},
    {"loss_grad", py_loss_grad, METH_VARARGS,
     "loss_grad(state, X, y, weight_decay=0) -> (loss, grad bytes): full batch, no update."},
    {"omp_max_threads", py_omp_max_threads, METH_NOARGS,
     "Threads an OpenMP parallel region entered from this thread uses (honours threadpoolctl)."},
    {"isa", py_isa, METH_NOARGS, "The GEMM micro-kernel in use: avx512, avx2 or generic."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ash.native._kernel", "ash's native OpenMP kernel.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernel(void) { return PyModule_Create(&module); }
