/* The few symbols numba's compiled code names that live in numba's own extension modules, for the book's loops
 * exported into a shared object of their own (multicast/book/export_build.py). numba's modules are not loaded in
 * a process that runs the exported loops, so these stand in for them.
 *
 * The loops allocate nothing and raise nothing on their way; only the error path of numba's C-callable wrapper
 * (a cfunc) names these: it takes the GIL, reports the exception, and returns 0 instead of the wrapper's 1, which
 * the caller (multicast/book/exported.py) turns into an error. Python's own C API is resolved from the process.
 */
#include <stdio.h>
#include <stdlib.h>

typedef int PyGILState_STATE;
extern PyGILState_STATE PyGILState_Ensure(void);
extern void PyGILState_Release(PyGILState_STATE);

void numba_gil_ensure(PyGILState_STATE *state) { *state = PyGILState_Ensure(); }

void numba_gil_release(PyGILState_STATE *state) { PyGILState_Release(*state); }

/* An exception's arguments: numba would rebuild them with pickle; here none is rebuilt and the wrapper reports a
 * SystemError through Python, then returns 0. */
void *numba_unpickle(const char *data, int n, const char *hash) {
    (void)data; (void)n; (void)hash;
    return NULL;
}

void *numba_runtime_build_excinfo_struct(void *a, void *b) {
    (void)a; (void)b;
    return NULL;
}

void numba_do_raise(void *excinfo) { (void)excinfo; }

void NRT_Free(void *p) { free(p); }

/* Reached only when a reference count drops to zero: the exported loops see arrays without owners (NULL meminfo),
 * which are never counted. */
void NRT_MemInfo_call_dtor(void *mi) {
    (void)mi;
    fputs("xdpfeed: the book's exported loop released memory it does not own\n", stderr);
    abort();
}
