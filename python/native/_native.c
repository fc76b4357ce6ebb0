/* shmring._native: the consumer's blocking wait of the wait protocol in one call
 * (docs/DESIGN.md section 4, "Python: the native wait"), plus its counters.
 *
 * Optional: the package works without it (python/shmring/_futex.py's PairSleeper is
 * the pure-Python path). Linux only (futex_waitv, membarrier). Built by meson
 * (python/meson.build) against the distribution's python3-dev.
 *
 * Memory ordering: every access to a shared header word is a GCC __atomic builtin
 * naming its order; the argument is DESIGN.md's Dekker pair (section 3), the same
 * as the C++ core's ByteRingBuffer::SleepWhileHeadIs: WAITING is set with a relaxed
 * RMW followed by a seq_cst fence (F2), then head and producer_flags are loaded
 * with acquire; the producer stores head (release) and, after its own full fence
 * or our membarrier (F1), loads our WAITING bit.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <structmember.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449 /* the same number on every architecture */
#endif
#ifndef SYS_membarrier
#error "membarrier(2) is needed"
#endif
#define SHMRING_FUTEX_32 2u                              /* FUTEX2_SIZE_U32, shared */
#define SHMRING_MEMBARRIER_CMD_GLOBAL_EXPEDITED (1 << 1) /* linux/membarrier.h */

struct shmring_waitv { /* struct futex_waitv of <linux/futex.h> (Linux >= 5.16) */
  uint64_t val;
  uint64_t uaddr;
  uint32_t flags;
  uint32_t reserved;
};

/* Process-wide counts, read and written with the GIL held only. */
static unsigned long long n_sleeps, n_heavy_barriers;
static unsigned long long n_owner_wakes; /* sleeps ended by the owner word */
static double longest_timeout;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct {
  // clang-format off
  PyObject_HEAD
  uint32_t* head;   /* the ring's head word */
  // clang-format on
  uint32_t* pflags; /* producer_flags */
  uint32_t* flags;  /* this receiver slot's flags word (WAITING lives here) */
  uint32_t waiting_bit, closed_bit, membarrier_bit;
  int64_t unfenced_nap_ns, spin_after_ns;
  int spin_polls;
  int sleeping;        /* our WAITING bit is set (since the last end()) */
  int fenced;          /* ... and fenced, with a membarrier when the producer relies on it */
  int spin;            /* the last sleep was short: spin before the next one */
  int no_waitv;        /* futex_waitv said ENOSYS: the caller uses the pure-Python sleep */
  uint32_t* owner;     /* the producer's owner word (third word slept on), or NULL */
  unsigned owner_seen; /* its value as the consumer last judged it (set from Python) */
} Waiter;

static int Waiter_init(Waiter* self, PyObject* args, PyObject* kwds) {
  static char* kw[] = {"head_address",
                       "producer_flags_address",
                       "flags_address",
                       "waiting_bit",
                       "closed_bit",
                       "membarrier_bit",
                       "unfenced_nap",
                       "spin_polls",
                       "spin_after",
                       "owner_address",
                       NULL};
  unsigned long long head, pflags, flags, owner = 0;
  unsigned int waiting, closed, membarrier;
  double unfenced, spin_after;
  int spin_polls;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "KKKIIIdid|K", kw, &head, &pflags, &flags, &waiting,
                                   &closed, &membarrier, &unfenced, &spin_polls, &spin_after,
                                   &owner)) {
    return -1;
  }
  if ((head | pflags | flags | owner) % 4 != 0 || head == 0 || pflags == 0 || flags == 0) {
    PyErr_SetString(PyExc_ValueError, "Waiter: word addresses must be non-zero and 4-aligned");
    return -1;
  }
  self->head = (uint32_t*)(uintptr_t)head;
  self->pflags = (uint32_t*)(uintptr_t)pflags;
  self->flags = (uint32_t*)(uintptr_t)flags;
  self->owner = (uint32_t*)(uintptr_t)owner;
  self->owner_seen = 0;
  self->waiting_bit = waiting;
  self->closed_bit = closed;
  self->membarrier_bit = membarrier;
  self->unfenced_nap_ns = (int64_t)(unfenced * 1e9);
  self->spin_after_ns = (int64_t)(spin_after * 1e9);
  self->spin_polls = spin_polls;
  self->sleeping = self->fenced = self->no_waitv = 0;
  self->spin = 1;
  return 0;
}

static int closed_error(Waiter* self) {
  if (self->head != NULL) return 0;
  PyErr_SetString(PyExc_ValueError, "Waiter is closed (the ring was detached)");
  return -1;
}

/* membarrier(GLOBAL_EXPEDITED), then a full fence: the sleeper's half of the
 * asymmetric fence (_fence.heavy_barrier). 1 when the system call succeeded. */
static int heavy_barrier(void) {
  ++n_heavy_barriers;
  const long r = syscall(SYS_membarrier, SHMRING_MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0);
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  return r == 0;
}

PyDoc_STRVAR(
    Waiter_wait_doc,
    "wait(seen, timeout) -> int\n\n"
    "One sleep of the consumer's wait, fused: (spin on head if the last sleep was short,)\n"
    "set WAITING and fence on the first sleep of a wait (membarrier when the producer\n"
    "relies on it; a failed one caps the nap at unfenced_nap), re-check head and\n"
    "CLOSED, then futex_waitv on head == seen and producer_flags as just loaded, at\n"
    "most timeout s (None = no limit). Returns 1 when the caller should look again\n"
    "(head moved, CLOSED, woken, signal), 0 when the timeout expired, -1 when\n"
    "futex_waitv is missing or refused (ENOSYS, EPERM...: use the pure-Python sleep). WAITING "
    "stays set\n"
    "until end(). Consumer thread; blocks with the GIL released.");

static PyObject* Waiter_wait(Waiter* self, PyObject* const* args, Py_ssize_t nargs) {
  if (closed_error(self) < 0) return NULL;
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "wait(seen, timeout) takes 2 arguments");
    return NULL;
  }
  const unsigned long seen_l = PyLong_AsUnsignedLongMask(args[0]);
  if (seen_l == (unsigned long)-1 && PyErr_Occurred()) return NULL;
  const uint32_t seen = (uint32_t)seen_l;
  int64_t nap = -1; /* ns; -1 = no limit */
  if (args[1] != Py_None) {
    const double t = PyFloat_AsDouble(args[1]);
    if (t == -1.0 && PyErr_Occurred()) return NULL;
    nap = t <= 0 ? 0 : (int64_t)(t * 1e9);
  }
  if (self->no_waitv) return PyLong_FromLong(-1);
  if (self->spin) {
    /* A message a few polls away is cheaper to spin for than to sleep on. */
    self->spin = 0;
    for (int i = 0; i < self->spin_polls; ++i) {
      if (__atomic_load_n(self->head, __ATOMIC_RELAXED) != seen) return PyLong_FromLong(1);
    }
  }
  if (!self->sleeping) {
    /* The running -> sleeping transition (F2 of the Dekker pair): either the
     * producer's wake check sees WAITING, or our loads below see its new head or
     * CLOSED. The RMW is atomic: the producer's reaper may CAS this word. */
    __atomic_fetch_or(self->flags, self->waiting_bit, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    self->sleeping = 1;
    self->fenced = 0;
  }
  if (!self->fenced) {
    /* Once per wait: a producer whose fast path has only a compiler barrier needs
     * our membarrier to order its head store before its WAITING load. */
    if (!(__atomic_load_n(self->pflags, __ATOMIC_RELAXED) & self->membarrier_bit) ||
        heavy_barrier()) {
      self->fenced = 1;
    } else if (nap < 0 || nap > self->unfenced_nap_ns) {
      nap = self->unfenced_nap_ns; /* the waker's fast path is unordered: poll */
    }
  }
  const uint32_t pf = __atomic_load_n(self->pflags, __ATOMIC_ACQUIRE);
  if (__atomic_load_n(self->head, __ATOMIC_ACQUIRE) != seen || (pf & self->closed_bit)) {
    return PyLong_FromLong(1);
  }
  ++n_sleeps;
  const double nap_s = nap < 0 ? Py_HUGE_VAL : (double)nap / 1e9;
  if (nap_s > longest_timeout) longest_timeout = nap_s;
  /* The third word, when given: the owner word at what the consumer last judged;
   * the kernel's wake at the producer's death (or a change) ends the sleep. */
  const uint32_t owner_seen = self->owner_seen;
  struct shmring_waitv w[3] = {
      {seen, (uint64_t)(uintptr_t)self->head, SHMRING_FUTEX_32, 0},
      {pf, (uint64_t)(uintptr_t)self->pflags, SHMRING_FUTEX_32, 0},
      {owner_seen, (uint64_t)(uintptr_t)self->owner, SHMRING_FUTEX_32, 0},
  };
  const unsigned nr = self->owner != NULL ? 3u : 2u;
  struct timespec ts, *tsp = NULL;
  long r;
  int err;
  int64_t start, slept;
  Py_BEGIN_ALLOW_THREADS start = now_ns();
  if (nap >= 0) { /* an absolute CLOCK_MONOTONIC deadline */
    const int64_t deadline = start + nap;
    ts.tv_sec = deadline / 1000000000;
    ts.tv_nsec = deadline % 1000000000;
    tsp = &ts;
  }
  r = syscall(SYS_futex_waitv, w, nr, 0, tsp, CLOCK_MONOTONIC);
  err = errno;
  slept = now_ns() - start;
  Py_END_ALLOW_THREADS
      /* Spin before the next sleep only when messages come close together. */
      self->spin = slept < self->spin_after_ns;
  if (nr == 3 && r == 2) {
    /* The kernel's one wake at the producer's death came to us: pass it on to the
     * word's other sleepers (the ring's other receivers). */
    ++n_owner_wakes;
    syscall(SYS_futex, self->owner, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
  } else if (nr == 3 && r < 0 && err == EAGAIN &&
             __atomic_load_n(self->owner, __ATOMIC_RELAXED) != owner_seen) {
    ++n_owner_wakes;
  }
  if (r >= 0 || err == EAGAIN || err == EINTR) return PyLong_FromLong(1);
  if (err == ETIMEDOUT) return PyLong_FromLong(0);
  /* ENOSYS: kernel < 5.16; EPERM (or ENOSYS) from a seccomp profile that predates the
   * call; anything else it refuses: the pure-Python sleep from now on, never a spin. */
  --n_sleeps; /* counted again by the sleep that replaces it */
  self->no_waitv = 1;
  return PyLong_FromLong(-1);
}

PyDoc_STRVAR(
    Waiter_end_doc,
    "end() -> None\n\nClears WAITING if wait() left it set. Consumer thread; never blocks.");

static PyObject* Waiter_end(Waiter* self, PyObject* unused) {
  (void)unused;
  if (self->sleeping && self->flags != NULL) {
    self->sleeping = 0;
    __atomic_fetch_and(self->flags, ~self->waiting_bit, __ATOMIC_RELAXED);
  }
  Py_RETURN_NONE;
}

PyDoc_STRVAR(
    Waiter_close_doc,
    "close() -> None\n\nForgets the addresses (before the mapping goes): later calls raise\n"
    "ValueError. Clears WAITING first if set. Never blocks.");

static PyObject* Waiter_close(Waiter* self, PyObject* unused) {
  Waiter_end(self, unused);
  self->head = self->pflags = self->flags = self->owner = NULL;
  Py_RETURN_NONE;
}

static PyObject* Waiter_get_sleeping(Waiter* self, void* closure) {
  (void)closure;
  return PyBool_FromLong(self->sleeping);
}

static PyMethodDef Waiter_methods[] = {
    {"wait", (PyCFunction)(void (*)(void))Waiter_wait, METH_FASTCALL, Waiter_wait_doc},
    {"end", (PyCFunction)Waiter_end, METH_NOARGS, Waiter_end_doc},
    {"close", (PyCFunction)Waiter_close, METH_NOARGS, Waiter_close_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Waiter_getset[] = {
    {"sleeping", (getter)Waiter_get_sleeping, NULL, "WAITING is set (since the last end())", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Waiter_members[] = {
    {"owner_seen", T_UINT, offsetof(Waiter, owner_seen), 0,
     "the owner word's value the next sleeps expect (the consumer's last judgement)"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject WaiterType = {
    .ob_base = {PyObject_HEAD_INIT(NULL) 0}, /* PyVarObject_HEAD_INIT(NULL, 0) */
    .tp_name = "shmring._native.Waiter",
    .tp_basicsize = sizeof(Waiter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("The consumer side's sleep on one ring (see wait()). One per ring "
                        "view; its calls come from one thread at a time."),
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Waiter_init,
    .tp_methods = Waiter_methods,
    .tp_getset = Waiter_getset,
    .tp_members = Waiter_members,
};

static PyObject* native_counters(PyObject* mod, PyObject* unused) {
  (void)mod;
  (void)unused;
  return Py_BuildValue("(KKd)", n_sleeps, n_heavy_barriers, longest_timeout);
}

static PyObject* native_reset_counters(PyObject* mod, PyObject* unused) {
  (void)mod;
  (void)unused;
  n_sleeps = n_heavy_barriers = n_owner_wakes = 0;
  longest_timeout = 0.0;
  Py_RETURN_NONE;
}

static PyObject* native_owner_wakes(PyObject* mod, PyObject* unused) {
  (void)mod;
  (void)unused;
  return PyLong_FromUnsignedLongLong(n_owner_wakes);
}

static PyMethodDef native_methods[] = {
    {"owner_wakes", native_owner_wakes, METH_NOARGS,
     "Sleeps of this module's waits ended by the producer's owner word."},
    {"counters", native_counters, METH_NOARGS,
     "(sleeps, heavy barriers, longest sleep timeout in s) of this module's waits."},
    {"reset_counters", native_reset_counters, METH_NOARGS, "Zeroes counters()."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    "shmring._native",
    "The consumer's fused futex_waitv wait (optional; see _futex.py).",
    -1,
    native_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
  if (PyType_Ready(&WaiterType) < 0) return NULL;
  PyObject* m = PyModule_Create(&native_module);
  if (m == NULL) return NULL;
  Py_INCREF(&WaiterType);
  if (PyModule_AddObject(m, "Waiter", (PyObject*)&WaiterType) < 0) {
    Py_DECREF(&WaiterType);
    Py_DECREF(m);
    return NULL;
  }
  return m;
}
