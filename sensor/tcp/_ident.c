/* A connection's identity as text: the key its uid hashes, and an IPv4 address (sensor/tcp/conn.py).
 *
 * uid_key(ts, cip, cport, sip, sport) -> bytes
 *     "|".join((repr(ts), cip, str(cport), sip, str(sport))).encode(), what make_uid hashes.
 *     repr(float) is the cost there (its shortest round-trip digits take some 6,000
 *     instructions), so a timestamp of whole microseconds below 2**32 s, which every pcap of
 *     microsecond resolution gives, is written from its integer and microsecond parts. That
 *     text is repr's when it reads back as the same double: no other decimal of at most six
 *     places does (two such decimals lie 1e-6 apart, and below 2**32 a double's rounding
 *     interval is narrower than that), and a shorter text would have fewer places. The test is
 *     exact, in 128-bit integers. Any other timestamp (nanoseconds, a tie, out of range, no
 *     128-bit integers) goes to repr itself.
 *
 * ip4_text(addr) -> str
 *     f"{addr[0]}.{addr[1]}.{addr[2]}.{addr[3]}" for a 4-byte address (inet_ntop's text).
 *
 * The references are make_uid_key_py and ip_text_of in sensor/tcp/conn.py; tests/tcp/test_ident.py
 * compares them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Digits of v (< 10**20) into o, most significant first; returns the count. */
static int
put_uint(char *o, unsigned long long v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        o[i] = tmp[n - 1 - i];
    return n;
}

/* repr(ts) into o (at least 32 bytes) when ts is whole microseconds in [1, 2**32); returns its
 * length, or -1 for repr to write it. */
static int
micro_text(double ts, char *o)
{
#ifdef __SIZEOF_INT128__
    if (!(ts >= 1.0 && ts < 4294967296.0))
        return -1;
    double whole = floor(ts);
    unsigned long long sec = (unsigned long long)whole;
    long long us = llround((ts - whole) * 1e6); /* ts - whole is exact */
    if (us >= 1000000) {
        us -= 1000000;
        sec += 1;
    }
    /* ts = m * 2**e exactly, m of 53 bits */
    int exp;
    double frac = frexp(ts, &exp);
    long long m = (long long)ldexp(frac, 53);
    int e = exp - 53; /* -52 <= e <= -21 here */
    if (m == (1LL << 52))
        return -1; /* a power of two: its rounding interval is lopsided */
    /* decimal d = n / 1e6; |d - ts| * 1e6 * 2**-e against half an ulp times the same */
    __int128 n = (__int128)sec * 1000000 + us;
    __int128 diff = (n << (-e)) - (__int128)m * 1000000;
    if (diff < 0)
        diff = -diff;
    if (diff >= 500000) /* not within half an ulp (a tie goes to repr too) */
        return -1;
    int len = put_uint(o, sec);
    o[len++] = '.';
    if (us == 0) {
        o[len++] = '0';
        return len;
    }
    char frac6[6];
    for (int i = 5; i >= 0; i--) {
        frac6[i] = (char)('0' + us % 10);
        us /= 10;
    }
    int keep = 6;
    while (frac6[keep - 1] == '0')
        keep--;
    memcpy(o + len, frac6, (size_t)keep);
    return len + keep;
#else
    (void)ts;
    (void)o;
    return -1;
#endif
}

/* str(v) of an int into o (at least 24 bytes); -1 with an exception set when it does not fit. */
static int
int_text(PyObject *v, char *o)
{
    if (!PyLong_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "uid_key: a port is an int");
        return -1;
    }
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "uid_key: port out of range");
        return -1;
    }
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (x < 0) {
        o[0] = '-';
        return 1 + put_uint(o + 1, (unsigned long long)0 - (unsigned long long)x);
    }
    return put_uint(o, (unsigned long long)x);
}

static PyObject *
uid_key(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "uid_key(ts, cip, cport, sip, sport): five arguments");
        return NULL;
    }
    if (!PyFloat_Check(args[0]) || !PyUnicode_Check(args[1]) || !PyUnicode_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "uid_key: ts is a float, cip and sip are str");
        return NULL;
    }
    char tsbuf[32], cport[24], sport[24];
    PyObject *repr = NULL;
    const char *tstext = tsbuf;
    Py_ssize_t tslen = micro_text(PyFloat_AS_DOUBLE(args[0]), tsbuf);
    if (tslen < 0) {
        repr = PyObject_Repr(args[0]);
        if (repr == NULL)
            return NULL;
        tstext = PyUnicode_AsUTF8AndSize(repr, &tslen);
        if (tstext == NULL)
            goto fail;
    }
    Py_ssize_t clen, slen;
    const char *ctext = PyUnicode_AsUTF8AndSize(args[1], &clen);
    if (ctext == NULL)
        goto fail;
    const char *stext = PyUnicode_AsUTF8AndSize(args[3], &slen);
    if (stext == NULL)
        goto fail;
    int cplen = int_text(args[2], cport);
    if (cplen < 0)
        goto fail;
    int splen = int_text(args[4], sport);
    if (splen < 0)
        goto fail;
    PyObject *out = PyBytes_FromStringAndSize(NULL, tslen + clen + cplen + slen + splen + 4);
    if (out == NULL)
        goto fail;
    char *o = PyBytes_AS_STRING(out);
    memcpy(o, tstext, (size_t)tslen);
    o += tslen;
    *o++ = '|';
    memcpy(o, ctext, (size_t)clen);
    o += clen;
    *o++ = '|';
    memcpy(o, cport, (size_t)cplen);
    o += cplen;
    *o++ = '|';
    memcpy(o, stext, (size_t)slen);
    o += slen;
    *o++ = '|';
    memcpy(o, sport, (size_t)splen);
    Py_XDECREF(repr);
    return out;
fail:
    Py_XDECREF(repr);
    return NULL;
}

static PyObject *
ip4_text(PyObject *self, PyObject *arg)
{
    if (!PyBytes_Check(arg) || PyBytes_GET_SIZE(arg) != 4) {
        PyErr_SetString(PyExc_TypeError, "ip4_text: a 4-byte bytes address");
        return NULL;
    }
    const unsigned char *a = (const unsigned char *)PyBytes_AS_STRING(arg);
    char o[16];
    int n = 0;
    for (int i = 0; i < 4; i++) {
        if (i)
            o[n++] = '.';
        n += put_uint(o + n, a[i]);
    }
    return PyUnicode_FromStringAndSize(o, n);
}

static PyMethodDef methods[] = {
    {"uid_key", (PyCFunction)(void (*)(void))uid_key, METH_FASTCALL,
     "uid_key(ts, cip, cport, sip, sport) -> bytes: the text make_uid hashes."},
    {"ip4_text", ip4_text, METH_O, "ip4_text(addr) -> str: a 4-byte address as dotted quads."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ident", "Connection identities as text (sensor/tcp/conn.py).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__ident(void)
{
    return PyModule_Create(&module);
}
