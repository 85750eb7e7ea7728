/* One libpcap batch decoded and fed to the reassembler in C: the per-packet path of a live
 * capture without a Python frame, a frame tuple or a copy of the frame per packet.
 *
 * feed(packets, meta, linktype, decode, segment[, keyed[, owner]]) -> (fast, first_ts, last_ts)
 *
 * `packets` and `meta` are what pcapy's next_batch() returns: the frames back to back, and per
 * frame four native uint32 (sec, usec, offset into packets, caplen). Each frame's time is
 * sec + usec * 1e-6, as sensor.capture.fast.batch_frames computes it. For each frame, in order:
 *   - Ethernet (linktype 1) carrying IPv4 with a 20-byte header, unfragmented TCP, or IPv6 with
 *     TCP right after the fixed header, untagged or under one 802.1Q tag, every length
 *     consistent and within the frame: the Segment tuple is built here, exactly as the fast
 *     paths of sensor.decode.packet.Decoder.decode build it (a test compares the two on every
 *     capture of the suite and on generated frames). These are counted in `fast`: the caller
 *     adds them to CaptureStats.tcp_segments, which the decoder counts for the others.
 *   - any other frame: decode(linktype, frame bytes), the Python decoder, with its counters.
 *   - segment(ts, seg) for every frame that gave a segment; with `keyed` true,
 *     segment(ts, seg, key) for those built here, key the sender's FlowKey (below); and
 *     segment(ts, seg, key, half) when `owner` (an int, 0 for none) is the table that bound
 *     that key to the flow's half with bind(): the table's lookup is then done.
 * first_ts is the time of the first frame that gave a segment, last_ts that of the last frame
 * (None when there is none). The Python reading is sensor.decode.batch.feed_py, used when this
 * module is not built.
 *
 * Hostile bytes never raise: a record whose offset or length runs past `packets` is cut as a
 * Python slice would cut it. An exception raised by `decode` or `segment` is passed on.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define PROTO_TCP 6
#define FRAG_MASK 0x3FFF /* RFC 791 3.1: MF flag and fragment offset */

static inline unsigned
be16(const unsigned char *p)
{
    return ((unsigned)p[0] << 8) | p[1];
}

static inline unsigned long
be32(const unsigned char *p)
{
    return ((unsigned long)p[0] << 24) | ((unsigned long)p[1] << 16) |
           ((unsigned long)p[2] << 8) | p[3];
}

/* The same bytes object for an address seen lately (a direct-mapped cache of ADDR_SLOTS): its
 * hash is computed once, not once per packet, and the flow table's lookup finds the key's
 * addresses identical before comparing their bytes. A value is never changed: a slot holds the
 * last address that fell in it, compared in full before it is used. */
#define ADDR_BITS 12
#define ADDR_SLOTS (1 << ADDR_BITS)
static PyObject *addr_cache[ADDR_SLOTS];

static PyObject *
address(const unsigned char *a, Py_ssize_t alen)
{
    /* Multiplicative hashing of the address as words (alen is 4 or 16), the slot from the top
     * bits; the compares below are of a known size, inlined. */
    uint64_t w0, w1 = 0;
    int same;
    if (alen == 4) {
        uint32_t v;
        memcpy(&v, a, 4);
        w0 = v;
    } else {
        memcpy(&w0, a, 8);
        memcpy(&w1, a + 8, 8);
    }
    uint64_t h = (w0 ^ (w1 * 0x9E3779B97F4A7C15u)) * 0xD6E8FEB86659FD93u;
    PyObject **slot = &addr_cache[h >> (64 - ADDR_BITS)];
    PyObject *o = *slot;
    if (o != NULL && PyBytes_GET_SIZE(o) == alen) {
        same = alen == 4 ? memcmp(PyBytes_AS_STRING(o), a, 4) == 0
                         : memcmp(PyBytes_AS_STRING(o), a, 16) == 0;
        if (same) {
            Py_INCREF(o);
            return o;
        }
    }
    o = PyBytes_FromStringAndSize((const char *)a, alen);
    if (o == NULL)
        return NULL;
    Py_INCREF(o);
    Py_XSETREF(*slot, o);
    return o;
}

/* The int objects of the 16-bit fields (ports, window; and a frame's length, most often below
 * 65,536), made once each: no allocation per packet, and the flow table compares a key's ports
 * by identity first. At most 65,536 ints (2 MB), whatever the traffic. */
static PyObject *u16_cache[65536];

static PyObject *
u16(unsigned v)
{
    PyObject *o = u16_cache[v & 0xFFFF];
    if (o == NULL) {
        o = PyLong_FromLong((long)(v & 0xFFFF));
        if (o == NULL)
            return NULL;
        u16_cache[v & 0xFFFF] = o; /* kept for the life of the process */
    }
    Py_INCREF(o);
    return o;
}

/* FlowKey(src, sport, dst, dport): the reassembler's flow-table key of the sender's 4-tuple
 * (sensor.tcp.reassembler.flow_key), a value: equal to another FlowKey of the same addresses
 * and ports, its hash computed once, at creation, by the interpreter's keyed hash of the bytes
 * (_Py_HashBytes: SipHash with the process's random key, as for a bytes object, so crafted
 * 4-tuples cannot be made to collide in the table). Iterated, it gives (src, sport, dst,
 * dport), as the tuple key of a pure-Python install. Addresses of up to 16 bytes, ports 0 to
 * 65535. */
typedef struct {
    PyObject_HEAD
    Py_hash_t hash;
    PyObject *half;              /* what `owner`'s flow table maps this key to (bind()), or NULL */
    unsigned long long owner;    /* the table that bound it, 0 for none */
    uint16_t sport, dport;
    uint8_t slen, dlen;
    unsigned char src[16], dst[16];
} FlowKeyObject;

static PyTypeObject FlowKeyType;

static PyObject *
flowkey_make(const unsigned char *src, Py_ssize_t slen, unsigned sport, const unsigned char *dst,
             Py_ssize_t dlen, unsigned dport)
{
    FlowKeyObject *k = PyObject_GC_New(FlowKeyObject, &FlowKeyType);
    if (k == NULL)
        return NULL;
    k->half = NULL;
    k->owner = 0;
    unsigned char buf[2 + 16 + 16 + 4];
    size_t n = 0;
    k->slen = (uint8_t)slen;
    k->dlen = (uint8_t)dlen;
    k->sport = (uint16_t)sport;
    k->dport = (uint16_t)dport;
    memset(k->src, 0, sizeof k->src);
    memset(k->dst, 0, sizeof k->dst);
    memcpy(k->src, src, (size_t)slen);
    memcpy(k->dst, dst, (size_t)dlen);
    buf[n++] = (unsigned char)slen;
    buf[n++] = (unsigned char)dlen;
    memcpy(buf + n, src, (size_t)slen);
    n += (size_t)slen;
    memcpy(buf + n, dst, (size_t)dlen);
    n += (size_t)dlen;
    buf[n++] = (unsigned char)(sport >> 8);
    buf[n++] = (unsigned char)sport;
    buf[n++] = (unsigned char)(dport >> 8);
    buf[n++] = (unsigned char)dport;
#if PY_VERSION_HEX >= 0x030E0000
    k->hash = Py_HashBuffer(buf, (Py_ssize_t)n); /* the public name from 3.14 on */
#else
    k->hash = _Py_HashBytes(buf, (Py_ssize_t)n);
#endif
    PyObject_GC_Track((PyObject *)k);
    return (PyObject *)k;
}

/* A bound key refers to its half, which refers back to it through its connection: the
 * collector sees that cycle once the key left the cache of a table dropped without its
 * connections removed (a table removes them, and unbinds their keys, as it ends each one). */
static int
flowkey_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(((FlowKeyObject *)self)->half);
    return 0;
}

static int
flowkey_clear(PyObject *self)
{
    FlowKeyObject *k = (FlowKeyObject *)self;
    k->owner = 0;
    Py_CLEAR(k->half);
    return 0;
}

static void
flowkey_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(((FlowKeyObject *)self)->half);
    PyObject_GC_Del(self);
}

static int
port_of(PyObject *v, unsigned *out)
{
    long x = PyLong_AsLong(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (x < 0 || x > 65535) {
        PyErr_SetString(PyExc_ValueError, "a port is 0 to 65535");
        return -1;
    }
    *out = (unsigned)x;
    return 0;
}

static PyObject *
flowkey_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *src, *dst, *sp, *dp;
    unsigned sport, dport;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "FlowKey(src, sport, dst, dport): no keywords");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "FlowKey", 4, 4, &src, &sp, &dst, &dp))
        return NULL;
    if (!PyBytes_Check(src) || !PyBytes_Check(dst)) {
        PyErr_SetString(PyExc_TypeError, "FlowKey: the addresses are bytes");
        return NULL;
    }
    if (PyBytes_GET_SIZE(src) > 16 || PyBytes_GET_SIZE(dst) > 16) {
        PyErr_SetString(PyExc_ValueError, "FlowKey: an address has at most 16 bytes");
        return NULL;
    }
    if (port_of(sp, &sport) < 0 || port_of(dp, &dport) < 0)
        return NULL;
    return flowkey_make((const unsigned char *)PyBytes_AS_STRING(src), PyBytes_GET_SIZE(src),
                        sport, (const unsigned char *)PyBytes_AS_STRING(dst),
                        PyBytes_GET_SIZE(dst), dport);
}

static Py_hash_t
flowkey_hash(PyObject *self)
{
    return ((FlowKeyObject *)self)->hash;
}

static int
flowkey_same(const FlowKeyObject *a, const FlowKeyObject *b)
{
    return a->hash == b->hash && a->sport == b->sport && a->dport == b->dport &&
           a->slen == b->slen && a->dlen == b->dlen &&
           memcmp(a->src, b->src, sizeof a->src) == 0 && memcmp(a->dst, b->dst, sizeof a->dst) == 0;
}

static PyObject *
flowkey_richcompare(PyObject *a, PyObject *b, int op)
{
    if (!PyObject_TypeCheck(b, &FlowKeyType) || (op != Py_EQ && op != Py_NE))
        Py_RETURN_NOTIMPLEMENTED;
    int same = a == b || flowkey_same((FlowKeyObject *)a, (FlowKeyObject *)b);
    return PyBool_FromLong(op == Py_EQ ? same : !same);
}

static Py_ssize_t
flowkey_length(PyObject *self)
{
    return 4;
}

static PyObject *
flowkey_item(PyObject *self, Py_ssize_t i)
{
    FlowKeyObject *k = (FlowKeyObject *)self;
    switch (i) {
    case 0:
        return PyBytes_FromStringAndSize((const char *)k->src, k->slen);
    case 1:
        return PyLong_FromLong(k->sport);
    case 2:
        return PyBytes_FromStringAndSize((const char *)k->dst, k->dlen);
    case 3:
        return PyLong_FromLong(k->dport);
    default:
        PyErr_SetString(PyExc_IndexError, "FlowKey index out of range");
        return NULL;
    }
}

static PyObject *
flowkey_fields(PyObject *self)
{
    PyObject *t = PyTuple_New(4);
    if (t == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < 4; i++) {
        PyObject *v = flowkey_item(self, i);
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

static PyObject *
flowkey_repr(PyObject *self)
{
    PyObject *t = flowkey_fields(self);
    if (t == NULL)
        return NULL;
    PyObject *r = PyUnicode_FromFormat("FlowKey%R", t);
    Py_DECREF(t);
    return r;
}

static PyObject *
flowkey_reduce(PyObject *self, PyObject *unused)
{
    PyObject *t = flowkey_fields(self);
    if (t == NULL)
        return NULL;
    return Py_BuildValue("(ON)", (PyObject *)Py_TYPE(self), t);
}

static PySequenceMethods flowkey_as_sequence = {
    .sq_length = flowkey_length,
    .sq_item = flowkey_item,
};

static PyMethodDef flowkey_methods[] = {
    {"__reduce__", flowkey_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FlowKeyType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sensor.decode._batch.FlowKey",
    .tp_basicsize = sizeof(FlowKeyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = flowkey_dealloc,
    .tp_traverse = flowkey_traverse,
    .tp_clear = flowkey_clear,
    .tp_doc = "FlowKey(src, sport, dst, dport): a flow-table key (see sensor/decode/_batch.c).",
    .tp_new = flowkey_new,
    .tp_hash = flowkey_hash,
    .tp_richcompare = flowkey_richcompare,
    .tp_repr = flowkey_repr,
    .tp_as_sequence = &flowkey_as_sequence,
    .tp_methods = flowkey_methods,
};

/* The same FlowKey object for a 4-tuple seen lately (a direct-mapped cache of FLOW_SLOTS, at
 * most FLOW_SLOTS keys of 64 bytes alive): the table's lookup then finds its key by identity,
 * with the hash already computed, and no key is made. A slot holds the last 4-tuple that fell
 * in it, compared in full before it is used; a collision costs a new key, nothing else. */
#define FLOW_BITS 16
#define FLOW_SLOTS (1 << FLOW_BITS)
static FlowKeyObject *flow_cache[FLOW_SLOTS];

static PyObject *
flow_key(const unsigned char *src, const unsigned char *dst, Py_ssize_t alen, unsigned sport,
         unsigned dport)
{
    uint64_t s0, s1 = 0, d0, d1 = 0;
    if (alen == 4) {
        uint32_t a, b;
        memcpy(&a, src, 4);
        memcpy(&b, dst, 4);
        s0 = a;
        d0 = b;
    } else {
        memcpy(&s0, src, 8);
        memcpy(&s1, src + 8, 8);
        memcpy(&d0, dst, 8);
        memcpy(&d1, dst + 8, 8);
    }
    uint64_t h = ((s0 ^ (s1 * 0x9E3779B97F4A7C15u)) * 0xD6E8FEB86659FD93u) ^
                 ((d0 ^ (d1 * 0xC2B2AE3D27D4EB4Fu)) * 0x9E3779B97F4A7C15u) ^
                 (((uint64_t)sport << 16 | dport) * 0xFF51AFD7ED558CCDu);
    h *= 0xC4CEB9FE1A85EC53u;
    FlowKeyObject **slot = &flow_cache[h >> (64 - FLOW_BITS)];
    FlowKeyObject *k = *slot;
    if (k != NULL && k->sport == sport && k->dport == dport && k->slen == alen &&
        k->dlen == alen &&
        (alen == 4 ? memcmp(k->src, src, 4) == 0 && memcmp(k->dst, dst, 4) == 0
                   : memcmp(k->src, src, 16) == 0 && memcmp(k->dst, dst, 16) == 0)) {
        Py_INCREF(k);
        return (PyObject *)k;
    }
    PyObject *o = flowkey_make(src, alen, sport, dst, alen, dport);
    if (o == NULL)
        return NULL;
    Py_INCREF(o);
    Py_XSETREF(*slot, (FlowKeyObject *)o);
    return o;
}

/* (src, dst, sport, dport, seq, ack, flags, window, ttl, options, payload, frame_len), the TCP
 * header at t (20 bytes and its options up to tcp_end), the payload up to end; with `key` not
 * NULL, the sender's FlowKey in *key as well. */
static PyObject *
make_segment(const unsigned char *d, Py_ssize_t caplen, const unsigned char *src,
             const unsigned char *dst, Py_ssize_t alen, Py_ssize_t t, Py_ssize_t tcp_end,
             Py_ssize_t end, unsigned ttl, PyObject **key)
{
    if (key != NULL) {
        *key = flow_key(src, dst, alen, be16(d + t), be16(d + t + 2));
        if (*key == NULL)
            return NULL;
    }
    PyObject *seg = PyTuple_New(12);
    PyObject *v;
    if (seg == NULL)
        goto fail;
#define SET(i, expr)                                                                          \
    do {                                                                                      \
        v = (expr);                                                                           \
        if (v == NULL) {                                                                      \
            Py_DECREF(seg);                                                                   \
            goto fail;                                                                        \
        }                                                                                     \
        PyTuple_SET_ITEM(seg, i, v);                                                          \
    } while (0)
    SET(0, address(src, alen));
    SET(1, address(dst, alen));
    SET(2, u16(be16(d + t)));
    SET(3, u16(be16(d + t + 2)));
    SET(4, PyLong_FromUnsignedLong(be32(d + t + 4)));
    SET(5, PyLong_FromUnsignedLong(be32(d + t + 8)));
    SET(6, PyLong_FromLong((long)d[t + 13]));
    SET(7, u16(be16(d + t + 14)));
    SET(8, PyLong_FromLong((long)ttl));
    /* options: a SYN's only (the handshake reads them), b"" for the rest */
    SET(9, PyBytes_FromStringAndSize((const char *)d + t + 20,
                                     (d[t + 13] & 0x02) ? tcp_end - t - 20 : 0));
    SET(10, PyBytes_FromStringAndSize((const char *)d + tcp_end, end - tcp_end));
    SET(11, caplen < 65536 ? u16((unsigned)caplen) : PyLong_FromSsize_t(caplen));
#undef SET
    return seg;
fail:
    if (key != NULL)
        Py_CLEAR(*key);
    return NULL;
}

/* Decoder._ip4's one-unpack case: IHL 5, TCP, not a fragment, lengths consistent. NULL with no
 * error set: not that case. */
static PyObject *
ip4_fast(const unsigned char *d, Py_ssize_t caplen, Py_ssize_t off, PyObject **key)
{
    if (caplen < off + 40)
        return NULL;
    const unsigned char *ip = d + off;
    if (ip[0] != 0x45 || ip[9] != PROTO_TCP || (be16(ip + 6) & FRAG_MASK))
        return NULL;
    Py_ssize_t t = off + 20;
    Py_ssize_t tcp_end = t + ((d[t + 12] >> 4) << 2);
    Py_ssize_t end = off + (Py_ssize_t)be16(ip + 2);
    if (!(off + 40 <= tcp_end && tcp_end <= end && end <= caplen))
        return NULL;
    return make_segment(d, caplen, ip + 12, ip + 16, 4, t, tcp_end, end, ip[8], key);
}

/* Decoder._ip6's one-unpack case: TCP right after the fixed header, lengths consistent. */
static PyObject *
ip6_fast(const unsigned char *d, Py_ssize_t caplen, Py_ssize_t off, PyObject **key)
{
    if (caplen < off + 60)
        return NULL;
    const unsigned char *ip = d + off;
    if ((ip[0] >> 4) != 6 || ip[6] != PROTO_TCP)
        return NULL;
    Py_ssize_t t = off + 40;
    Py_ssize_t tcp_end = t + ((d[t + 12] >> 4) << 2);
    Py_ssize_t end = t + (Py_ssize_t)be16(ip + 4);
    if (!(off + 60 <= tcp_end && tcp_end <= end && end <= caplen))
        return NULL;
    return make_segment(d, caplen, ip + 8, ip + 24, 16, t, tcp_end, end, ip[7], key);
}

/* The fast cases of Decoder.decode for an Ethernet frame; NULL with no error: none applies. */
static PyObject *
ether_fast(const unsigned char *d, Py_ssize_t caplen, PyObject **key)
{
    if (caplen < 50) /* Decoder.decode's _FAST_LEN */
        return NULL;
    unsigned etype = be16(d + 12);
    if (etype == ETH_P_IP)
        return ip4_fast(d, caplen, 14, key);
    if (etype == ETH_P_IPV6)
        return ip6_fast(d, caplen, 14, key);
    if (etype == ETH_P_8021Q) {
        unsigned inner = be16(d + 16);
        if (inner == ETH_P_IP)
            return ip4_fast(d, caplen, 18, key);
        if (inner == ETH_P_IPV6)
            return ip6_fast(d, caplen, 18, key);
    }
    return NULL;
}

static PyObject *
feed(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 5 || nargs > 7) {
        PyErr_SetString(PyExc_TypeError, "feed() takes 5 to 7 arguments");
        return NULL;
    }
    PyObject *decode = args[3], *segment = args[4];
    int keyed = 0;
    if (nargs >= 6 && (keyed = PyObject_IsTrue(args[5])) < 0)
        return NULL;
    unsigned long long owner = 0;
    if (nargs == 7 && (owner = PyLong_AsUnsignedLongLong(args[6])) == (unsigned long long)-1 &&
        PyErr_Occurred())
        return NULL;
    long linktype = PyLong_AsLong(args[2]);
    if (linktype == -1 && PyErr_Occurred())
        return NULL;
    Py_buffer pb, mb;
    if (PyObject_GetBuffer(args[0], &pb, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &mb, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&pb);
        return NULL;
    }
    PyObject *result = NULL;
    if (mb.len % 16) {
        PyErr_SetString(PyExc_ValueError, "feed(): meta is not a whole number of 16-byte records");
        goto done;
    }
    const unsigned char *pk = pb.buf, *meta = mb.buf;
    Py_ssize_t plen = pb.len, n = mb.len / 16, fast = 0;
    double first = 0.0, ts = 0.0;
    int have_first = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t rec[4];
        memcpy(rec, meta + 16 * i, sizeof rec);
        ts = (double)rec[0] + (double)rec[1] * 1e-6;
        /* packets[off : off + caplen], as Python slices it */
        Py_ssize_t off = rec[2] < (uint32_t)plen ? (Py_ssize_t)rec[2] : plen;
        Py_ssize_t caplen = (Py_ssize_t)rec[3];
        if (caplen > plen - off)
            caplen = plen - off;
        const unsigned char *d = pk + off;
        PyObject *key = NULL;
        PyObject *seg = linktype == 1 ? ether_fast(d, caplen, keyed ? &key : NULL) : NULL;
        if (seg != NULL) {
            fast++;
        }
        else {
            if (PyErr_Occurred())
                goto done;
            PyObject *frame = PyBytes_FromStringAndSize((const char *)d, caplen);
            if (frame == NULL)
                goto done;
            PyObject *dargs[2] = {args[2], frame};
            seg = PyObject_Vectorcall(decode, dargs, 2, NULL);
            Py_DECREF(frame);
            if (seg == NULL)
                goto done;
            if (seg == Py_None) {
                Py_DECREF(seg);
                continue;
            }
        }
        PyObject *when = PyFloat_FromDouble(ts);
        if (when == NULL) {
            Py_DECREF(seg);
            Py_XDECREF(key);
            goto done;
        }
        PyObject *sargs[4] = {when, seg, key, NULL};
        size_t sn = 2;
        if (key != NULL) {
            FlowKeyObject *k = (FlowKeyObject *)key;
            sn = 3;
            if (owner != 0 && k->owner == owner && k->half != NULL) {
                /* a reference of its own: the call may end the connection and unbind the key */
                sargs[3] = Py_NewRef(k->half);
                sn = 4;
            }
        }
        PyObject *r = PyObject_Vectorcall(segment, sargs, sn, NULL);
        Py_XDECREF(sargs[3]);
        Py_DECREF(when);
        Py_DECREF(seg);
        Py_XDECREF(key);
        if (r == NULL)
            goto done;
        Py_DECREF(r);
        if (!have_first) {
            first = ts;
            have_first = 1;
        }
    }
    {
        PyObject *f = have_first ? PyFloat_FromDouble(first) : Py_NewRef(Py_None);
        PyObject *l = n ? PyFloat_FromDouble(ts) : Py_NewRef(Py_None);
        if (f != NULL && l != NULL)
            result = Py_BuildValue("(nOO)", fast, f, l);
        Py_XDECREF(f);
        Py_XDECREF(l);
    }
done:
    PyBuffer_Release(&pb);
    PyBuffer_Release(&mb);
    return result;
}

/* flow_key(src, sport, dst, dport) -> FlowKey: the key of that 4-tuple, from the cache the
 * batch loop fills (sensor.tcp.reassembler.flow_key calls it for every segment the Python
 * decoder made, and for every new connection). */
static PyObject *
flow_key_py(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "flow_key(src, sport, dst, dport): four arguments");
        return NULL;
    }
    PyObject *src = args[0], *dst = args[2];
    unsigned sport, dport;
    if (!PyBytes_Check(src) || !PyBytes_Check(dst)) {
        PyErr_SetString(PyExc_TypeError, "flow_key: the addresses are bytes");
        return NULL;
    }
    Py_ssize_t slen = PyBytes_GET_SIZE(src), dlen = PyBytes_GET_SIZE(dst);
    if (slen > 16 || dlen > 16) {
        PyErr_SetString(PyExc_ValueError, "flow_key: an address has at most 16 bytes");
        return NULL;
    }
    if (port_of(args[1], &sport) < 0 || port_of(args[3], &dport) < 0)
        return NULL;
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(src);
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(dst);
    if (slen == dlen && (slen == 4 || slen == 16))
        return flow_key(s, d, slen, sport, dport);
    return flowkey_make(s, slen, sport, d, dlen, dport);
}

/* The key and owner of a bind/unbind/bound call (`usage` names it): -1 on a bad call, with the
 * error set; else 0, *key NULL for a key that is no FlowKey (the tuple of a 4-tuple no FlowKey
 * holds: it has no binding, its segments are looked up in the table). */
static int
key_and_owner(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, const char *usage,
              FlowKeyObject **key, unsigned long long *owner)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s: %zd arguments", usage, want);
        return -1;
    }
    unsigned long long x = PyLong_AsUnsignedLongLong(args[1]);
    if (x == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (x == 0) {
        PyErr_SetString(PyExc_ValueError, "an owner is a positive int");
        return -1;
    }
    *owner = x;
    *key = Py_TYPE(args[0]) == &FlowKeyType ? (FlowKeyObject *)args[0] : NULL;
    return 0;
}

/* bind(key, owner, half): owner's table maps key to half; feed(..., owner) passes half with the
 * key from now on. */
static PyObject *
bind_py(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    FlowKeyObject *k;
    unsigned long long owner;
    if (key_and_owner(args, nargs, 3, "bind(key, owner, half)", &k, &owner) < 0)
        return NULL;
    if (k != NULL) {
        k->owner = owner;
        Py_XSETREF(k->half, Py_NewRef(args[2]));
    }
    Py_RETURN_NONE;
}

/* unbind(key, owner): forget key's half if owner bound it (another table's binding stays). */
static PyObject *
unbind_py(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    FlowKeyObject *k;
    unsigned long long owner;
    if (key_and_owner(args, nargs, 2, "unbind(key, owner)", &k, &owner) < 0)
        return NULL;
    if (k != NULL && k->owner == owner) {
        k->owner = 0;
        Py_CLEAR(k->half);
    }
    Py_RETURN_NONE;
}

/* bound(key, owner) -> the half owner bound key to, or None (for tests). */
static PyObject *
bound_py(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    FlowKeyObject *k;
    unsigned long long owner;
    if (key_and_owner(args, nargs, 2, "bound(key, owner)", &k, &owner) < 0)
        return NULL;
    if (k != NULL && k->owner == owner && k->half != NULL)
        return Py_NewRef(k->half);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"bind", (PyCFunction)(void (*)(void))bind_py, METH_FASTCALL,
     "bind(key, owner, half): owner's table maps the FlowKey key to half."},
    {"unbind", (PyCFunction)(void (*)(void))unbind_py, METH_FASTCALL,
     "unbind(key, owner): forget the half owner bound key to."},
    {"bound", (PyCFunction)(void (*)(void))bound_py, METH_FASTCALL,
     "bound(key, owner) -> the half owner bound key to, or None."},
    {"flow_key", (PyCFunction)(void (*)(void))flow_key_py, METH_FASTCALL,
     "flow_key(src, sport, dst, dport) -> FlowKey, from the cache of keys seen lately."},
    {"feed", (PyCFunction)(void (*)(void))feed, METH_FASTCALL,
     "feed(packets, meta, linktype, decode, segment[, keyed[, owner]]) -> (fast, first_ts, last_ts)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_batch",
    "One libpcap batch decoded and fed to the reassembler (see sensor.decode.batch).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__batch(void)
{
    if (PyType_Ready(&FlowKeyType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&FlowKeyType);
    if (PyModule_AddObject(m, "FlowKey", (PyObject *)&FlowKeyType) < 0) {
        Py_DECREF(&FlowKeyType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
