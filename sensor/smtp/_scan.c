/* The two loops over SMTP text that cost most in Python, in C: one memchr per line.
 *
 * dot_content(data, tail, run, in_long) -> (end, bare_lf, stuffed, long_lines, run, in_long)
 *
 * The same counts as MessageBody._scan_bytes (the reference, compiled by mypyc), which looks
 * at every byte: here only line ends are visited, since every pattern of dot-stuffed content
 * is anchored at an LF.
 *   - end: offset just past the end-of-data marker CR LF "." CR LF (RFC 5321 4.1.1.4), or -1;
 *     the marker may begin in `tail`, the last bytes (at most 4) of the previous call.
 *   - bare_lf: LFs not preceded by CR, up to the marker.
 *   - stuffed: "." CR LF ".." (RFC 5321 4.5.2): the second dot of each, up to the marker.
 *   - long_lines: lines with more than 998 octets of text before CR LF (RFC 5321 4.5.3.1.6), a line
 *     still open at the end counted once, as soon as it is that long.
 *   - run, in_long: the octets of the unfinished last line and whether it is counted already,
 *     carried to the next call; returned unchanged when the marker ends the content.
 *
 * skip_text(buf, pos, max_line, word_lengths) -> pos
 *
 * For sensor.smtp.lines.LineBuffer.skip_text, while the client side resynchronises after a gap:
 * the offset of the first line from `pos` on that might end the resync, passing over the
 * complete lines that cannot, which LineBuffer.pop_line would have returned one by one only for
 * the parser to reject them and roll their counts back. A line may end it (and is not passed
 * over) when it is not complete, when it is longer than `max_line` (pop_line cuts it), when it
 * is "." (the end of content whose start was lost), when it starts a TLS handshake record (a
 * STARTTLS lost in the hole), or when its first word (up to the first
 * space, the line's CR LF or LF left out) has a length whose bit is set in `word_lengths`
 * (the lengths of the SMTP verbs, sensor.smtp.commands).
 *
 * split_header_block(block) -> [(name, value), ...] or None
 *
 * sensor.smtp.message.split_header_block_py in one pass (its reference): the fields of a plain
 * header block, ASCII with every line ended by CR LF and the block by an empty line; None for
 * anything else (8-bit bytes, a bare CR or LF, a line that is neither `name: value` with a
 * name of printable characters but space and colon, nor a continuation after such a line).
 * A continued value keeps its CR LF line breaks, so it is one slice of the block.
 *
 * header_end(copy, endpos) -> offset or -1
 *
 * sensor.smtp.message.header_end_py (its reference): the end of the first blank line, LF then
 * LF or CR LF, lying within copy[:endpos]. One memchr per line, where the reference searches
 * the block twice (for LF CR LF, then for LF LF before it).
 *
 * parse_path(arg, max_params) -> (address, params, sloppy) or None
 *
 * sensor.smtp.commands.parse_path_ex_py (its reference): the argument of MAIL or RCPT,
 * `FROM:<address> params` or `TO:...`, with the forms servers accept beyond RFC 5321 4.1.2
 * (sloppy: a space after the colon, no angle brackets); a source route is dropped. params: the
 * first `max_params` words after the path, KEY=value, keys upper-cased (read as Latin-1),
 * values and the address read as UTF-8 with undecodable bytes replaced.
 *
 * None raises on any bytes; only a wrong argument type raises TypeError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define CR 13
#define LF 10
#define DOT 46
#define TLS_HANDSHAKE 22 /* RFC 8446 5.1: a handshake record's content type, then version 3.x */
#define TEXT_LINE_MAX 999 /* octets before the LF: 998 of text, then CR (body.TEXT_LINE_MAX) */

/* The byte at offset j of the stream as this call sees it: data for j >= 0, the tail before. */
static inline int
at(const unsigned char *d, Py_ssize_t n, const unsigned char *t, Py_ssize_t tn, Py_ssize_t j)
{
    if (j >= 0)
        return j < n ? d[j] : -1;
    return tn + j >= 0 ? t[tn + j] : -1;
}

static PyObject *
dot_content(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* METH_FASTCALL: called once per DATA payload, where argument parsing showed */
    Py_buffer db, tb;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "dot_content(data, tail, run, in_long)");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &db, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &tb, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&db);
        return NULL;
    }
    Py_ssize_t run = PyLong_AsSsize_t(args[2]);
    int in_long = run == -1 && PyErr_Occurred() ? -1 : PyObject_IsTrue(args[3]);
    if (in_long < 0) {
        PyBuffer_Release(&db);
        PyBuffer_Release(&tb);
        return NULL;
    }
    const unsigned char *d = db.buf, *t = tb.buf;
    Py_ssize_t n = db.len, tn = tb.len;
    Py_ssize_t bare = 0, stuffed = 0, longs = 0, end = -1;
    Py_ssize_t last_lf = -1 - run;

    /* Stuffed dots whose line began in the tail: CR LF at -3,-2 or -2,-1 */
    for (Py_ssize_t p = -2; p <= -1; p++) {
        if (p + 2 < n && at(d, n, t, tn, p) == LF && at(d, n, t, tn, p - 1) == CR
            && at(d, n, t, tn, p + 1) == DOT && at(d, n, t, tn, p + 2) == DOT)
            stuffed++;
    }
    const unsigned char *cur = d, *stop = d + n;
    while (cur < stop) {
        const unsigned char *hit = memchr(cur, LF, (size_t)(stop - cur));
        if (hit == NULL)
            break;
        Py_ssize_t p = hit - d;
        if (at(d, n, t, tn, p - 1) != CR) {
            bare++;
        } else {
            if (at(d, n, t, tn, p - 2) == DOT && at(d, n, t, tn, p - 3) == LF
                && at(d, n, t, tn, p - 4) == CR) {
                end = p + 1;
                break;
            }
            if (p + 2 < n && d[p + 1] == DOT && d[p + 2] == DOT)
                stuffed++;
        }
        if (in_long)
            in_long = 0;
        else if (p - last_lf > TEXT_LINE_MAX + 1)
            longs++;
        last_lf = p;
        cur = hit + 1;
    }
    if (end < 0) {
        run = n - 1 - last_lf;
        if (run > TEXT_LINE_MAX && !in_long) {
            longs++;
            in_long = 1;
        }
    }
    PyBuffer_Release(&db);
    PyBuffer_Release(&tb);
    PyObject *out = PyTuple_New(6);
    if (out == NULL)
        return NULL;
    Py_ssize_t counts[5] = {end, bare, stuffed, longs, run};
    for (int i = 0; i < 5; i++) {
        PyObject *v = PyLong_FromSsize_t(counts[i]);
        if (v == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, v);
    }
    PyObject *flag = in_long ? Py_True : Py_False;
    Py_INCREF(flag);
    PyTuple_SET_ITEM(out, 5, flag);
    return out;
}

static PyObject *
skip_text(PyObject *self, PyObject *args)
{
    Py_buffer bb;
    Py_ssize_t pos, max_line;
    unsigned long long lengths;
    if (!PyArg_ParseTuple(args, "y*nnK:skip_text", &bb, &pos, &max_line, &lengths))
        return NULL;
    const unsigned char *b = bb.buf;
    Py_ssize_t n = bb.len;
    if (pos < 0)
        pos = 0;
    while (pos < n) {
        const unsigned char *hit = memchr(b + pos, LF, (size_t)(n - pos));
        if (hit == NULL)
            break; /* not complete */
        Py_ssize_t p = hit - b;
        Py_ssize_t end = (p > pos && b[p - 1] == CR) ? p - 1 : p;
        if (end - pos > max_line)
            break;
        if (end - pos == 1 && b[pos] == DOT)
            break;
        if (end - pos >= 2 && b[pos] == TLS_HANDSHAKE && b[pos + 1] == 3)
            break;
        const unsigned char *sp = memchr(b + pos, ' ', (size_t)(end - pos));
        Py_ssize_t word = sp == NULL ? end - pos : sp - (b + pos);
        if (word < 64 && (lengths >> word) & 1)
            break;
        pos = p + 1;
    }
    PyBuffer_Release(&bb);
    return PyLong_FromSsize_t(pos);
}

static int
add_field(PyObject *items, const char *p, Py_ssize_t name0, Py_ssize_t name1,
          Py_ssize_t value0, Py_ssize_t value1)
{
    PyObject *name = PyUnicode_DecodeASCII(p + name0, name1 - name0, NULL);
    if (name == NULL)
        return -1;
    PyObject *value = PyUnicode_DecodeASCII(p + value0, value1 - value0, NULL);
    if (value == NULL) {
        Py_DECREF(name);
        return -1;
    }
    PyObject *pair = PyTuple_Pack(2, name, value);
    Py_DECREF(name);
    Py_DECREF(value);
    if (pair == NULL)
        return -1;
    int rc = PyList_Append(items, pair);
    Py_DECREF(pair);
    return rc;
}

static PyObject *
split_header_block(PyObject *self, PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "split_header_block: bytes expected");
        return NULL;
    }
    const char *p = PyBytes_AS_STRING(arg);
    Py_ssize_t n = PyBytes_GET_SIZE(arg);
    if (n < 4 || memcmp(p + n - 4, "\r\n\r\n", 4) != 0)
        Py_RETURN_NONE;
    for (Py_ssize_t i = 0; i < n; i++) {
        if ((unsigned char)p[i] >= 0x80)
            Py_RETURN_NONE;
    }
    Py_ssize_t end = n - 4; /* the lines: p[0:end] split at CR LF */
    PyObject *items = PyList_New(0);
    if (items == NULL)
        return NULL;
    Py_ssize_t name0 = -1, name1 = 0, value0 = 0, value1 = 0; /* the field being read */
    Py_ssize_t start = 0;
    for (;;) {
        /* the line p[start:stop]: up to the next CR LF, with no other CR or LF in it */
        Py_ssize_t stop = start;
        while (stop < end && p[stop] != CR && p[stop] != LF)
            stop++;
        if (stop < end && !(p[stop] == CR && stop + 1 < end && p[stop + 1] == LF))
            goto not_plain; /* a bare CR or LF */
        if (stop > start && (p[start] == ' ' || p[start] == '\t')) {
            if (name0 < 0)
                goto not_plain; /* a continuation before any field */
            value1 = stop;      /* the value runs on, its CR LF included */
        }
        else {
            const char *colon = memchr(p + start, ':', (size_t)(stop - start));
            if (colon == NULL || colon == p + start)
                goto not_plain;
            Py_ssize_t c = colon - p;
            for (Py_ssize_t i = start; i < c; i++) {
                if (p[i] <= ' ' || p[i] == 0x7f) /* a space or not printable */
                    goto not_plain;
            }
            if (name0 >= 0 && add_field(items, p, name0, name1, value0, value1) < 0)
                goto error;
            name0 = start;
            name1 = c;
            value0 = c + 1;
            while (value0 < stop && (p[value0] == ' ' || p[value0] == '\t'))
                value0++;
            value1 = stop;
        }
        if (stop >= end)
            break;
        start = stop + 2;
    }
    if (add_field(items, p, name0, name1, value0, value1) < 0)
        goto error;
    return items;
not_plain:
    Py_DECREF(items);
    Py_RETURN_NONE;
error:
    Py_DECREF(items);
    return NULL;
}

/* bytes.split()'s white space */
static inline int
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\x0b' || c == '\x0c';
}

static PyObject *
param_key(const char *k, Py_ssize_t n)
{
    char buf[64];
    int ascii = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if ((unsigned char)k[i] >= 0x80) {
            ascii = 0;
            break;
        }
    }
    if (ascii && n <= (Py_ssize_t)sizeof(buf)) { /* the usual key: upper-cased here */
        for (Py_ssize_t i = 0; i < n; i++)
            buf[i] = (k[i] >= 'a' && k[i] <= 'z') ? (char)(k[i] - 32) : k[i];
        return PyUnicode_DecodeASCII(buf, n, NULL);
    }
    PyObject *latin = PyUnicode_DecodeLatin1(k, n, NULL); /* str.upper's own rules */
    if (latin == NULL)
        return NULL;
    PyObject *up = PyObject_CallMethod(latin, "upper", NULL);
    Py_DECREF(latin);
    return up;
}

static PyObject *
parse_path(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "parse_path(arg: bytes, max_params: int)");
        return NULL;
    }
    Py_ssize_t max_params = PyLong_AsSsize_t(args[1]);
    if (max_params == -1 && PyErr_Occurred())
        return NULL;
    const char *a = PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    const char *colon = memchr(a, ':', (size_t)n);
    if (colon == NULL)
        Py_RETURN_NONE;
    const char *rest = colon + 1, *end = a + n;
    int sloppy = 0;
    if (rest < end && (*rest == ' ' || *rest == '\t')) {
        while (rest < end && (*rest == ' ' || *rest == '\t'))
            rest++;
        sloppy = 1;
    }
    const char *addr, *addr_end, *tail;
    if (rest < end && *rest == '<') {
        const char *close = memchr(rest, '>', (size_t)(end - rest));
        if (close == NULL)
            Py_RETURN_NONE;
        addr = rest + 1;
        addr_end = close;
        tail = close + 1;
        if (tail < end && *tail != ' ')
            sloppy = 1;
    }
    else {
        const char *sp = memchr(rest, ' ', (size_t)(end - rest));
        addr = rest;
        addr_end = sp == NULL ? end : sp;
        tail = addr_end;
        if (addr == addr_end)
            Py_RETURN_NONE;
        sloppy = 1;
    }
    if (addr < addr_end && *addr == '@') { /* RFC 5321 4.1.2 obsolete source route */
        const char *route_end = memchr(addr, ':', (size_t)(addr_end - addr));
        addr = route_end == NULL ? addr_end : route_end + 1;
    }
    size_t addr_len = (size_t)(addr_end - addr);
    if (memchr(addr, ' ', addr_len) != NULL || memchr(addr, '<', addr_len) != NULL)
        Py_RETURN_NONE;
    PyObject *params = PyDict_New();
    if (params == NULL)
        return NULL;
    const char *w = tail;
    for (Py_ssize_t count = 0; count < max_params; count++) {
        while (w < end && is_space(*w))
            w++;
        if (w >= end)
            break;
        const char *w_end = w;
        while (w_end < end && !is_space(*w_end))
            w_end++;
        const char *eq = memchr(w, '=', (size_t)(w_end - w));
        const char *key_end = eq == NULL ? w_end : eq;
        const char *val = eq == NULL ? w_end : eq + 1;
        PyObject *key = param_key(w, key_end - w);
        if (key == NULL)
            goto error;
        PyObject *value = PyUnicode_DecodeUTF8(val, w_end - val, "replace");
        if (value == NULL) {
            Py_DECREF(key);
            goto error;
        }
        int rc = PyDict_SetItem(params, key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (rc < 0)
            goto error;
        w = w_end;
    }
    PyObject *address = PyUnicode_DecodeUTF8(addr, addr_end - addr, "replace");
    if (address == NULL)
        goto error;
    PyObject *result = PyTuple_New(3);
    if (result == NULL) {
        Py_DECREF(address);
        goto error;
    }
    PyTuple_SET_ITEM(result, 0, address);
    PyTuple_SET_ITEM(result, 1, params);
    PyObject *flag = sloppy ? Py_True : Py_False;
    Py_INCREF(flag);
    PyTuple_SET_ITEM(result, 2, flag);
    return result;
error:
    Py_DECREF(params);
    return NULL;
}

static PyObject *
header_end(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "header_end(copy: bytes, endpos: int)");
        return NULL;
    }
    Py_ssize_t endpos = PyLong_AsSsize_t(args[1]);
    if (endpos == -1 && PyErr_Occurred())
        return NULL;
    const char *d = PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    if (endpos < 0) /* as a slice's end: from the end */
        endpos = endpos + n < 0 ? 0 : endpos + n;
    if (endpos > n)
        endpos = n;
    const char *p = d, *end = d + endpos;
    while (p < end) {
        const char *lf = memchr(p, LF, (size_t)(end - p));
        if (lf == NULL)
            break;
        if (end - lf >= 2 && lf[1] == LF)
            return PyLong_FromSsize_t(lf - d + 2);
        if (end - lf >= 3 && lf[1] == CR && lf[2] == LF)
            return PyLong_FromSsize_t(lf - d + 3);
        p = lf + 1;
    }
    return PyLong_FromLong(-1);
}

static PyMethodDef methods[] = {
    {"dot_content", (PyCFunction)(void (*)(void))dot_content, METH_FASTCALL,
     "dot_content(data, tail, run, in_long) -> (end, bare_lf, stuffed, long_lines, run, in_long)"},
    {"skip_text", skip_text, METH_VARARGS,
     "skip_text(buf, pos, max_line, word_lengths) -> offset of the first line that may end a resync"},
    {"split_header_block", split_header_block, METH_O,
     "split_header_block(block) -> [(name, value), ...] or None (a plain header block's fields)"},
    {"header_end", (PyCFunction)(void (*)(void))header_end, METH_FASTCALL,
     "header_end(copy, endpos) -> end of the first blank line within copy[:endpos], or -1"},
    {"parse_path", (PyCFunction)(void (*)(void))parse_path, METH_FASTCALL,
     "parse_path(arg, max_params) -> (address, params, sloppy) or None (a MAIL/RCPT argument)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_scan",
    "Loops over SMTP text in C: DATA content (sensor.smtp.body), resync (sensor.smtp.lines), "
    "header blocks (sensor.smtp.message), MAIL and RCPT paths (sensor.smtp.commands).",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__scan(void)
{
    return PyModule_Create(&module);
}
