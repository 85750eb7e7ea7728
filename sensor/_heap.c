/* Memory made resident at start-up, so that the packet loop does not take page faults as its
 * tables fill (sensor.heap.preallocate: the reading and the caps are there).
 *
 * reserve(arena_bytes, malloc_bytes) -> (arena_bytes_reserved, malloc_bytes_reserved)
 *
 * - arena_bytes: one mapping, populated at once (MAP_POPULATE), from which CPython's object
 *   allocator (pymalloc) takes its arenas: an arena it frees goes back to this pool, resident,
 *   not to the kernel, and the next arena it needs comes from the pool. Arenas beyond the pool,
 *   and the other blocks the interpreter takes from the same allocator (its frame stacks),
 *   come from the allocator it had (mmap), as before.
 * - malloc_bytes: the C heap (glibc malloc, where payloads over 512 bytes, dict tables and
 *   long lists live) grown by that much, touched, and freed with trimming off, so that it stays
 *   resident; mmap is kept for blocks of 32 MiB and over.
 *
 * Called once per process (a second call changes nothing and returns (0, 0)), before the
 * capture starts. Linux and glibc; elsewhere it reserves nothing and returns (0, 0).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#define ARENA (1 << 20) /* pymalloc's arena size on 64-bit CPython 3.10 to 3.13 */

static PyObjectArenaAllocator previous;
static char *pool_base, *pool_end, *pool_next;
static void **pool_free; /* a stack of arenas given back */
static size_t pool_free_n, pool_slots;
static int reserved;
static unsigned long long pool_hits, pool_misses;

static void *
arena_alloc(void *ctx, size_t size)
{
    if (size == ARENA) {
        if (pool_free_n > 0) {
            pool_hits++;
            return pool_free[--pool_free_n];
        }
        if (pool_next + ARENA <= pool_end) {
            void *p = pool_next;
            pool_next += ARENA;
            pool_hits++;
            return p;
        }
        pool_misses++; /* the pool is used up: from the kernel, as before */
    }
    /* other sizes: the interpreter's frame stacks (16 KiB chunks per thread) */
    return previous.alloc(previous.ctx, size);
}

static void
arena_free(void *ctx, void *ptr, size_t size)
{
    char *p = ptr;
    if (p >= pool_base && p < pool_end) {
        pool_free[pool_free_n++] = ptr; /* at most pool_slots: each came from the pool once */
        return;
    }
    previous.free(previous.ctx, ptr, size);
}

static PyObject *
reserve(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "reserve(arena_bytes, malloc_bytes): two arguments");
        return NULL;
    }
    Py_ssize_t arena_bytes = PyLong_AsSsize_t(args[0]);
    if (arena_bytes == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t malloc_bytes = PyLong_AsSsize_t(args[1]);
    if (malloc_bytes == -1 && PyErr_Occurred())
        return NULL;
    if (arena_bytes < 0 || malloc_bytes < 0) {
        PyErr_SetString(PyExc_ValueError, "reserve(): sizes are not negative");
        return NULL;
    }
    if (reserved)
        return Py_BuildValue("(nn)", (Py_ssize_t)0, (Py_ssize_t)0);
    reserved = 1;
    Py_ssize_t got_arena = 0, got_malloc = 0;
#if defined(__linux__)
    size_t slots = (size_t)arena_bytes / ARENA;
    if (slots > 0) {
        void **stack = PyMem_RawMalloc(slots * sizeof(void *));
        void *base = stack == NULL ? MAP_FAILED
                                   : mmap(NULL, slots * ARENA, PROT_READ | PROT_WRITE,
                                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (base != MAP_FAILED) {
            pool_base = pool_next = base;
            pool_end = pool_base + slots * ARENA;
            pool_free = stack;
            pool_slots = slots;
            PyObjectArenaAllocator ours = {NULL, arena_alloc, arena_free};
            PyObject_GetArenaAllocator(&previous);
            PyObject_SetArenaAllocator(&ours);
            got_arena = (Py_ssize_t)(slots * ARENA);
        }
        else {
            PyMem_RawFree(stack);
        }
    }
#endif
#if defined(__GLIBC__)
    if (malloc_bytes > 0) {
        /* blocks under the mmap threshold come from the heap; freed, they stay (no trim) */
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, (int)(malloc_bytes > (1 << 30) ? 1 << 30 : malloc_bytes) +
                                      (64 << 20));
        size_t n = (size_t)malloc_bytes / ARENA;
        void **blocks = PyMem_RawMalloc((n ? n : 1) * sizeof(void *));
        if (blocks != NULL) {
            size_t i;
            for (i = 0; i < n; i++) {
                blocks[i] = malloc(ARENA - 64);
                if (blocks[i] == NULL)
                    break;
                memset(blocks[i], 0, ARENA - 64);
            }
            got_malloc = (Py_ssize_t)(i * ARENA);
            while (i > 0)
                free(blocks[--i]);
            PyMem_RawFree(blocks);
        }
    }
#endif
    return Py_BuildValue("(nn)", got_arena, got_malloc);
}

/* pool() -> (arenas taken from the pool, arenas it could not give, arenas free in it) */
static PyObject *
pool(PyObject *self, PyObject *unused)
{
    return Py_BuildValue("(KKn)", pool_hits, pool_misses,
                         (Py_ssize_t)(pool_free_n + (size_t)(pool_end - pool_next) / ARENA));
}

static PyMethodDef methods[] = {
    {"reserve", (PyCFunction)(void (*)(void))reserve, METH_FASTCALL,
     "reserve(arena_bytes, malloc_bytes) -> (arena bytes, malloc bytes) made resident"},
    {"pool", pool, METH_NOARGS,
     "pool() -> (arenas from the pool, arenas it could not give, arenas free in it)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_heap",
    "Memory made resident at start-up (see sensor.heap).", -1, methods,
};

PyMODINIT_FUNC
PyInit__heap(void)
{
    return PyModule_Create(&module);
}
