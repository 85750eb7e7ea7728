/* Construction of the frozen record classes (sensor/records.py) without their interpreted
 * __new__: a Builder stores each argument straight into the instance's slot.
 *
 * records._quick_construction installs a Builder as the class's __new__ when this module is
 * built; its Python reading, the generated __new__ it replaces, stays the reference (and the
 * construction of a pure-Python install). Both take the parameters of the dataclass's
 * __init__: positional or by keyword, defaults, default factories; both raise TypeError for a
 * missing, unknown, repeated or surplus argument. The class keeps object.__init__.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define MAX_FIELDS 256  /* WindowFeatures has 65 */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyTypeObject *cls;
    Py_ssize_t n;
    PyObject *names;      /* tuple of str: the fields in __init__ order */
    PyObject *defaults;   /* tuple: a field's default, or `required` */
    PyObject *factories;  /* tuple: a field's default factory, or None */
    PyObject *required;   /* the marker of a field without default */
    Py_ssize_t offsets[MAX_FIELDS];  /* where each field's slot lies in an instance */
} Builder;

static int
find_field(Builder *b, PyObject *key, Py_ssize_t hint)
{
    /* Keyword names are interned, as are the fields', and mostly come in field order: the
     * field after the previous keyword's is tried first. */
    Py_ssize_t i;
    if (hint < b->n && PyTuple_GET_ITEM(b->names, hint) == key) {
        return (int)hint;
    }
    for (i = 0; i < b->n; i++) {
        if (PyTuple_GET_ITEM(b->names, i) == key) {
            return (int)i;
        }
    }
    for (i = 0; i < b->n; i++) {
        int eq = PyUnicode_Compare(PyTuple_GET_ITEM(b->names, i), key);
        if (eq == -1 && PyErr_Occurred()) {
            return -2;
        }
        if (eq == 0) {
            return (int)i;
        }
    }
    return -1;
}

static PyObject *
build(Builder *b, PyTypeObject *type, PyObject *const *args, Py_ssize_t nargs,
      PyObject *kwnames)
{
    PyObject *vals[MAX_FIELDS];
    const char *name = b->cls->tp_name;
    Py_ssize_t i;

    if (nargs > b->n) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd positional arguments but %zd were given",
                     name, b->n, nargs);
        return NULL;
    }
    for (i = 0; i < b->n; i++) {
        vals[i] = i < nargs ? args[i] : NULL;
    }
    if (kwnames != NULL) {
        Py_ssize_t nk = PyTuple_GET_SIZE(kwnames);
        Py_ssize_t hint = nargs;
        for (Py_ssize_t k = 0; k < nk; k++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, k);
            int at = find_field(b, key, hint);
            if (at == -2) {
                return NULL;
            }
            if (at < 0) {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'",
                             name, key);
                return NULL;
            }
            if (vals[at] != NULL) {
                PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%U'",
                             name, key);
                return NULL;
            }
            vals[at] = args[nargs + k];
            hint = at + 1;
        }
    }
    for (i = 0; i < b->n; i++) {
        if (vals[i] == NULL && PyTuple_GET_ITEM(b->factories, i) == Py_None
                && PyTuple_GET_ITEM(b->defaults, i) == b->required) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument: '%U'",
                         name, PyTuple_GET_ITEM(b->names, i));
            return NULL;
        }
    }
    PyObject *obj = type->tp_alloc(type, 0);
    if (obj == NULL) {
        return NULL;
    }
    for (i = 0; i < b->n; i++) {
        PyObject *v = vals[i];
        if (v != NULL) {
            Py_INCREF(v);
        }
        else if (PyTuple_GET_ITEM(b->factories, i) != Py_None) {
            v = PyObject_CallNoArgs(PyTuple_GET_ITEM(b->factories, i));
            if (v == NULL) {
                Py_DECREF(obj);
                return NULL;
            }
        }
        else {
            v = PyTuple_GET_ITEM(b->defaults, i);
            Py_INCREF(v);
        }
        *(PyObject **)((char *)obj + b->offsets[i]) = v;
    }
    return obj;
}

static PyObject *
builder_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    /* as __new__ (a staticmethod): the class, then the arguments of the call */
    Builder *b = (Builder *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1 || !PyType_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "%s.__new__(): the class is the first argument",
                     b->cls->tp_name);
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)args[0];
    if (type != b->cls && !(PyType_IsSubtype(type, b->cls)
                            && type->tp_basicsize == b->cls->tp_basicsize)) {
        PyErr_Format(PyExc_TypeError, "%s.__new__(%s): not a record class of that layout",
                     b->cls->tp_name, type->tp_name);
        return NULL;
    }
    return build(b, type, args + 1, nargs - 1, kwnames);
}

/* Calls of the class itself: its tp_vectorcall, which CPython uses for `cls(...)` in place of
 * type.__call__ (__new__, then __init__: here object.__init__, which does nothing). Without
 * it, every call would pack its arguments in a tuple and a dict, then unpack them again. */
#define MAX_CLASSES 32
static PyTypeObject *installed_cls[MAX_CLASSES];
static Builder *installed_builder[MAX_CLASSES];
static int installed_n = 0;

static PyObject *
class_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    for (int i = 0; i < installed_n; i++) {
        if ((PyObject *)installed_cls[i] == callable) {
            return build(installed_builder[i], installed_cls[i], args,
                         PyVectorcall_NARGS(nargsf), kwnames);
        }
    }
    PyErr_Format(PyExc_SystemError, "sensor._build: no Builder for %R", callable);
    return NULL;
}

static PyObject *
builder_install(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    Builder *b = (Builder *)self;
    if (b->cls == NULL) {
        PyErr_SetString(PyExc_TypeError, "Builder: not initialised");
        return NULL;
    }
    for (int i = 0; i < installed_n; i++) {
        if (installed_cls[i] == b->cls) {  /* a later Builder of the class replaces it */
            Py_INCREF(self);
            Py_SETREF(installed_builder[i], b);
            b->cls->tp_vectorcall = class_vectorcall;
            Py_RETURN_NONE;
        }
    }
    if (installed_n == MAX_CLASSES) {
        PyErr_Format(PyExc_ValueError, "Builder.install: at most %d classes", MAX_CLASSES);
        return NULL;
    }
    Py_INCREF(b->cls);
    Py_INCREF(self);
    installed_cls[installed_n] = b->cls;
    installed_builder[installed_n] = b;
    installed_n++;
    b->cls->tp_vectorcall = class_vectorcall;
    Py_RETURN_NONE;
}

static PyObject *
builder_reduce(PyObject *self, PyObject *obj)
{
    /* (cls, field values in __init__ order): pickle's reduction of an instance, read from its
     * slots. The Python reading is records._reducer (attrgetter on the field names). */
    Builder *b = (Builder *)self;
    if (b->cls == NULL) {
        PyErr_SetString(PyExc_TypeError, "Builder: not initialised");
        return NULL;
    }
    if (Py_TYPE(obj) != b->cls) {
        PyErr_Format(PyExc_TypeError, "Builder.reduce: a %s, not %.200s", b->cls->tp_name,
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyObject *values = PyTuple_New(b->n);
    if (values == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < b->n; i++) {
        PyObject *v = *(PyObject **)((char *)obj + b->offsets[i]);
        if (v == NULL) {  /* what attrgetter raises for a slot never set */
            PyErr_Format(PyExc_AttributeError, "'%s' object has no attribute '%U'",
                         b->cls->tp_name, PyTuple_GET_ITEM(b->names, i));
            Py_DECREF(values);
            return NULL;
        }
        Py_INCREF(v);
        PyTuple_SET_ITEM(values, i, v);
    }
    PyObject *pair = PyTuple_New(2);
    if (pair == NULL) {
        Py_DECREF(values);
        return NULL;
    }
    Py_INCREF(b->cls);
    PyTuple_SET_ITEM(pair, 0, (PyObject *)b->cls);
    PyTuple_SET_ITEM(pair, 1, values);
    return pair;
}

static PyMethodDef builder_methods[] = {
    {"install", builder_install, METH_NOARGS,
     PyDoc_STR("Build the class's instances directly when the class is called (its "
               "tp_vectorcall); kept for the life of the process.")},
    {"reduce", builder_reduce, METH_O,
     PyDoc_STR("reduce(obj) -> (cls, values): an instance as pickle reduces it, a call of the "
               "class on its field values, read from its slots.")},
    {NULL},
};

static int
builder_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    Builder *b = (Builder *)self;
    PyObject *cls, *names, *defaults, *factories, *required;
    static char *kwlist[] = {"cls", "names", "defaults", "factories", "required", NULL};

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O!O!O:Builder", kwlist,
                                     &PyType_Type, &cls, &PyTuple_Type, &names,
                                     &PyTuple_Type, &defaults, &PyTuple_Type, &factories,
                                     &required)) {
        return -1;
    }
    if (b->cls != NULL) {
        PyErr_SetString(PyExc_TypeError, "Builder: already initialised");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    if (n > MAX_FIELDS || PyTuple_GET_SIZE(defaults) != n || PyTuple_GET_SIZE(factories) != n) {
        PyErr_Format(PyExc_ValueError,
                     "Builder: names, defaults and factories of one length (at most %d)",
                     MAX_FIELDS);
        return -1;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyTuple_GET_ITEM(names, i);
        if (!PyUnicode_Check(key)) {
            PyErr_SetString(PyExc_TypeError, "Builder: field names are str");
            return -1;
        }
        /* the slot's member descriptor, from the class itself (not a base) */
        PyObject *descr = PyDict_GetItemWithError(type->tp_dict, key);
        if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_TypeError, "Builder: %s.%U is not a slot of the class",
                             type->tp_name, key);
            }
            return -1;
        }
        PyMemberDef *m = ((PyMemberDescrObject *)descr)->d_member;
        if (m->type != T_OBJECT_EX || (m->flags & READONLY)) {
            PyErr_Format(PyExc_TypeError, "Builder: %s.%U is not an object slot",
                         type->tp_name, key);
            return -1;
        }
        b->offsets[i] = m->offset;
    }
    Py_INCREF(cls);
    b->cls = type;
    b->n = n;
    Py_INCREF(names);
    b->names = names;
    Py_INCREF(defaults);
    b->defaults = defaults;
    Py_INCREF(factories);
    b->factories = factories;
    Py_INCREF(required);
    b->required = required;
    b->vectorcall = builder_vectorcall;
    return 0;
}

static PyObject *
builder_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Builder *b = (Builder *)type->tp_alloc(type, 0);
    if (b != NULL) {
        b->vectorcall = NULL;  /* until __init__: a call goes through tp_call and fails */
    }
    return (PyObject *)b;
}

static PyObject *
builder_call(PyObject *self, PyObject *args, PyObject *kwds)
{
    Builder *b = (Builder *)self;
    if (b->cls == NULL) {
        PyErr_SetString(PyExc_TypeError, "Builder: not initialised");
        return NULL;
    }
    return PyVectorcall_Call(self, args, kwds);
}

static int
builder_traverse(PyObject *self, visitproc visit, void *arg)
{
    Builder *b = (Builder *)self;
    Py_VISIT(b->cls);
    Py_VISIT(b->names);
    Py_VISIT(b->defaults);
    Py_VISIT(b->factories);
    Py_VISIT(b->required);
    return 0;
}

static int
builder_clear(PyObject *self)
{
    Builder *b = (Builder *)self;
    Py_CLEAR(b->cls);
    Py_CLEAR(b->names);
    Py_CLEAR(b->defaults);
    Py_CLEAR(b->factories);
    Py_CLEAR(b->required);
    b->vectorcall = NULL;
    return 0;
}

static void
builder_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    builder_clear(self);
    Py_TYPE(self)->tp_free(self);
}

static PyMemberDef builder_members[] = {
    {"cls", T_OBJECT, offsetof(Builder, cls), READONLY, "the record class it builds"},
    {"names", T_OBJECT, offsetof(Builder, names), READONLY, "the fields, in __init__ order"},
    {NULL},
};

static PyTypeObject BuilderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sensor._build.Builder",
    .tp_doc = PyDoc_STR("Builder(cls, names, defaults, factories, required): a __new__ for "
                        "the record class cls that stores each argument in its slot."),
    .tp_basicsize = sizeof(Builder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = builder_new,
    .tp_init = builder_init,
    .tp_call = builder_call,
    .tp_vectorcall_offset = offsetof(Builder, vectorcall),
    .tp_traverse = builder_traverse,
    .tp_clear = builder_clear,
    .tp_dealloc = builder_dealloc,
    .tp_members = builder_members,
    .tp_methods = builder_methods,
};

static struct PyModuleDef build_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "sensor._build",
    .m_doc = "Construction of the frozen record classes (see sensor/records.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__build(void)
{
    if (PyType_Ready(&BuilderType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&build_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&BuilderType);
    if (PyModule_AddObject(m, "Builder", (PyObject *)&BuilderType) < 0) {
        Py_DECREF(&BuilderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
