/* One event's adds into a host's running sums, and the same adds packed (sensor/features/window.py).
 *
 * accumulate(total, adds) -> bytes
 *
 * For each (index, amount) of `adds`, in order: total[index] += amount, where `total` is an
 * array('d'); returns the adds packed as struct "=Bd" each (index as one byte, then the amount
 * as a double in native byte order), what HostWindows keeps of the event. The reference is
 * sensor.features.window.accumulate_py, which does it with array indexing and struct.pack:
 * the same sums bit for bit (one IEEE double addition per add) and the same bytes. An add the
 * sensor never makes (an index outside the sums or over 255, an amount that is no number)
 * raises there as here, if not always the same exception; here before any sum moves.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define PAIR 9 /* struct.calcsize("=Bd") */

static PyObject *
accumulate(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "accumulate(total, adds): two arguments");
        return NULL;
    }
    Py_buffer tb;
    if (PyObject_GetBuffer(args[0], &tb, PyBUF_WRITABLE | PyBUF_FORMAT) < 0)
        return NULL;
    if (tb.itemsize != sizeof(double) || tb.format == NULL || strcmp(tb.format, "d") != 0) {
        PyBuffer_Release(&tb);
        PyErr_SetString(PyExc_TypeError, "accumulate: total is an array('d')");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[1], "accumulate: adds is a sequence of pairs");
    if (seq == NULL) {
        PyBuffer_Release(&tb);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), len = tb.len / (Py_ssize_t)sizeof(double);
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * PAIR);
    if (out == NULL)
        goto fail;
    char *o = PyBytes_AS_STRING(out);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t k = 0; k < n; k++) { /* check and pack every add first */
        PyObject *pair = items[k];
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "accumulate: each add is an (index, amount) tuple");
            goto fail;
        }
        Py_ssize_t idx = PyLong_AsSsize_t(PyTuple_GET_ITEM(pair, 0));
        if (idx == -1 && PyErr_Occurred())
            goto fail;
        if (idx < 0 || idx >= len || idx > 255) {
            PyErr_Format(PyExc_IndexError, "accumulate: index %zd outside the sums", idx);
            goto fail;
        }
        double amount = PyFloat_AsDouble(PyTuple_GET_ITEM(pair, 1));
        if (amount == -1.0 && PyErr_Occurred())
            goto fail;
        o[k * PAIR] = (char)(unsigned char)idx;
        memcpy(o + k * PAIR + 1, &amount, sizeof(double));
    }
    double *total = (double *)tb.buf;
    for (Py_ssize_t k = 0; k < n; k++) {
        double amount;
        memcpy(&amount, o + k * PAIR + 1, sizeof(double));
        total[(unsigned char)o[k * PAIR]] += amount;
    }
    Py_DECREF(seq);
    PyBuffer_Release(&tb);
    return out;
fail:
    Py_XDECREF(out);
    Py_DECREF(seq);
    PyBuffer_Release(&tb);
    return NULL;
}

static PyMethodDef methods[] = {
    {"accumulate", (PyCFunction)(void (*)(void))accumulate, METH_FASTCALL,
     "accumulate(total, adds) -> bytes: total[i] += amount for each (i, amount), the adds packed "
     "as struct '=Bd' each"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_sums",
    "A host's running sums in C (sensor.features.window).", -1, methods,
};

PyMODINIT_FUNC
PyInit__sums(void)
{
    return PyModule_Create(&module);
}
