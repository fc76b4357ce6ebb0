/* shmring._native: the consumer's blocking wait of the wait protocol in one call
 * (docs/DESIGN.md section 4, "Python: the native wait"), the consumer's blocking
 * record lookup built on it (Waiter.next: look, sleep, look again, in one call),
 * plus its counters.
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
  uint32_t* pflags;    /* producer_flags */
  uint32_t* flags;     /* this receiver slot's flags word (WAITING lives here) */
  const uint8_t* data; /* the data area (NULL: next() is not set up, see set_records) */
  uint32_t* tail;      /* this receiver slot's tail word (next()'s release) */
  uint32_t producer_waiting_bit;
  uint32_t capacity, data_offset, wrap_marker, pad_flag, max_len, len_size, align;
  uint32_t waiting_bit, closed_bit, membarrier_bit;
  int64_t unfenced_nap_ns, spin_after_ns;
  int spin_polls;
  int sleeping;          /* our WAITING bit is set (since the last end()) */
  int fenced;            /* ... and fenced, with a membarrier when the producer relies on it */
  int spin;              /* the last sleep was short: spin before the next one */
  int no_waitv;          /* futex_waitv said ENOSYS: the caller uses the pure-Python sleep */
  int interrupted;       /* set by the ring's interrupt(): next() returns NEXT_INTERRUPTED */
  unsigned long sleeper; /* thread inside next() (0: none), read by the ring's interrupt() */
  uint32_t* owner;       /* the producer's owner word (slept on after the ring words), or NULL */
  unsigned owner_seen;   /* its value as the consumer last judged it (set from Python) */
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
  self->data = NULL;
  self->interrupted = 0;
  self->sleeper = 0;
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

/* ==== THE WORDS A CONSUMER SLEEPS ON (futex_waitv) ================================
 * The one place that lists them: a store to any of them followed by a futex wake on
 * it ends the sleep, and the kernel compares each with its expected value after
 * queueing the sleeper (a store made before the call ends it at once). To add a
 * word: its address in the Waiter (Waiter_init), one line in wait_words, raise
 * SHMRING_MAX_WAIT_WORDS, and in other_word_changed say when its value is not the
 * one the sleep would expect. Words 0 and 1 are head (`seen`: what the caller's last
 * look found) and producer_flags (`pf`, as just loaded: CLOSED changes only the
 * flags); a sleep ended by any later word, or a later word already changed before
 * the sleep, makes next() return NEXT_CHECK (the caller looks at the producer)
 * instead of looking at the ring again, so such a word never makes next() spin. */
#define SHMRING_MAX_WAIT_WORDS 4
#define SHMRING_RING_WORDS 2 /* head and producer_flags: a change there means "look" */
static int wait_words(const Waiter* self, uint32_t seen, uint32_t pf,
                      struct shmring_waitv w[SHMRING_MAX_WAIT_WORDS]) {
  int n = 0;
  w[n++] = (struct shmring_waitv){seen, (uint64_t)(uintptr_t)self->head, SHMRING_FUTEX_32, 0};
  w[n++] = (struct shmring_waitv){pf, (uint64_t)(uintptr_t)self->pflags, SHMRING_FUTEX_32, 0};
  /* The producer's owner word at what the consumer last judged: the kernel's wake at
   * the producer's death (or any change since that look) ends the sleep. */
  if (self->owner != NULL) {
    w[n++] = (struct shmring_waitv){self->owner_seen, (uint64_t)(uintptr_t)self->owner,
                                    SHMRING_FUTEX_32, 0};
  }
  return n;
}
/* 1 when a word after the ring words holds another value than its sleep would expect
 * (the caller must judge it before sleeping again): the owner word. */
static int other_word_changed(const Waiter* self) {
  return self->owner != NULL &&
         __atomic_load_n(self->owner, __ATOMIC_RELAXED) != (uint32_t)self->owner_seen;
}
/* ==== end of the wait-words list ================================================ */

/* What one sleep step says (sleep_once). */
enum {
  SLEPT_OTHER_WORD = 2, /* ended by a word after the ring words (wait_words) */
  SLEPT_LOOK = 1,
  SLEPT_TIMEOUT = 0,
  SLEPT_NO_WAITV = -1,
  SLEPT_ERROR = -2
};

/* One sleep of the consumer's wait (Waiter.wait's doc), `nap` ns (-1: no limit).
 * Called with the GIL held; releases it only for the system call. SLEPT_ERROR
 * leaves an OSError set. */
static int sleep_once(Waiter* self, uint32_t seen, int64_t nap) {
  if (self->no_waitv) return SLEPT_NO_WAITV;
  if (self->spin) {
    /* A message a few polls away is cheaper to spin for than to sleep on. */
    self->spin = 0;
    for (int i = 0; i < self->spin_polls; ++i) {
      if (__atomic_load_n(self->head, __ATOMIC_RELAXED) != seen) return SLEPT_LOOK;
    }
  }
  if (!self->sleeping) {
    /* The running -> sleeping transition (F2 of the Dekker pair): either the
     * producer's wake check sees WAITING, or our loads below see its new head or
     * CLOSED. The RMW is atomic: another thread of this receiver may change the
     * word at the same time (a detach clearing ATTACHED). */
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
    return SLEPT_LOOK;
  }
  ++n_sleeps;
  const double nap_s = nap < 0 ? Py_HUGE_VAL : (double)nap / 1e9;
  if (nap_s > longest_timeout) longest_timeout = nap_s;
  struct shmring_waitv w[SHMRING_MAX_WAIT_WORDS];
  const int nwords = wait_words(self, seen, pf, w);
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
  r = syscall(SYS_futex_waitv, w, nwords, 0, tsp, CLOCK_MONOTONIC);
  err = errno;
  slept = now_ns() - start;
  Py_END_ALLOW_THREADS
      /* Spin before the next sleep only when messages come close together. */
      self->spin = slept < self->spin_after_ns;
  if (self->owner != NULL && r == SHMRING_RING_WORDS) {
    /* A sleep that expected a value without OWNER_DIED may have taken the kernel's one
     * wake at the producer's death: pass it on to the word's other sleepers (the ring's
     * other receivers). One that expected OWNER_DIED was woken by such a pass-on (or by
     * anyone): passing it on again would make sleepers on a dead word wake each other
     * in a loop. */
    ++n_owner_wakes;
    if ((self->owner_seen & FUTEX_OWNER_DIED) == 0)
      syscall(SYS_futex, self->owner, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
    return SLEPT_OTHER_WORD;
  }
  if (r < 0 && err == EAGAIN && other_word_changed(self)) {
    ++n_owner_wakes;
    return SLEPT_OTHER_WORD;
  }
  if (r >= SHMRING_RING_WORDS) return SLEPT_OTHER_WORD;
  if (r >= 0 || err == EAGAIN || err == EINTR) return SLEPT_LOOK;
  if (err == ETIMEDOUT) return SLEPT_TIMEOUT;
  /* ENOSYS: kernel < 5.16; EPERM (or ENOSYS) from a seccomp profile that predates the
   * call; anything else it refuses: the pure-Python sleep from now on, never a spin. */
  --n_sleeps; /* counted again by the sleep that replaces it */
  self->no_waitv = 1;
  return SLEPT_NO_WAITV;
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
  int64_t nap = -1; /* ns; -1 = no limit */
  if (args[1] != Py_None) {
    const double t = PyFloat_AsDouble(args[1]);
    if (t == -1.0 && PyErr_Occurred()) return NULL;
    nap = t <= 0 ? 0 : (int64_t)(t * 1e9);
  }
  const int r = sleep_once(self, (uint32_t)seen_l, nap);
  if (r == SLEPT_ERROR) return NULL;
  return PyLong_FromLong(r == SLEPT_OTHER_WORD ? SLEPT_LOOK : r);
}

PyDoc_STRVAR(Waiter_set_records_doc,
             "set_records(data_address, data_offset, capacity, wrap_marker, pad_flag,\n"
             "            max_valid_len, len_size, record_align, tail_address,\n"
             "            producer_waiting_bit) -> None\n\n"
             "Sets up next(): the data area's address and its offset in the buffer, the\n"
             "ring's validated capacity (a power of two; never re-read from the segment),\n"
             "the record format's constants (python/shmring/layout.py), this slot's tail\n"
             "word and producer_flags' WAITING bit. Consumer thread, once, before next();\n"
             "never blocks.");

static PyObject* Waiter_set_records(Waiter* self, PyObject* args) {
  unsigned long long data, tail;
  unsigned int offset, capacity, wrap, pad, max_len, len_size, align, producer_waiting;
  if (closed_error(self) < 0) return NULL;
  if (!PyArg_ParseTuple(args, "KIIIIIIIKI", &data, &offset, &capacity, &wrap, &pad, &max_len,
                        &len_size, &align, &tail, &producer_waiting)) {
    return NULL;
  }
  if (data == 0 || data % 8 != 0 || tail == 0 || tail % 4 != 0 || capacity < 64 ||
      (capacity & (capacity - 1)) != 0 || capacity > 0x80000000u || len_size != 4 ||
      align < len_size || (align & (align - 1))) {
    PyErr_SetString(PyExc_ValueError, "set_records: invalid data area or record constants");
    return NULL;
  }
  self->data = (const uint8_t*)(uintptr_t)data;
  self->data_offset = offset;
  self->capacity = capacity;
  self->wrap_marker = wrap;
  self->pad_flag = pad;
  self->max_len = max_len;
  self->len_size = len_size;
  self->align = align;
  self->tail = (uint32_t*)(uintptr_t)tail;
  self->producer_waiting_bit = producer_waiting;
  Py_RETURN_NONE;
}

/* next()'s flags (what the Python side knows of its own state). */
#define NEXT_NEEDS_PIN 1u    /* live receiver holding nothing / floor unchecked: pin first */
#define NEXT_IDLE_PENDING 2u /* tail stores pending or a pin held: store them when idle */
/* next()'s int answers. */
enum {
  NEXT_ENDED = 0,       /* deadline passed with nothing to read */
  NEXT_CHECK = 1,       /* check_at reached with nothing to read: a liveness look is due */
  NEXT_SLOW = 2,        /* the Python lookup (ByteRingBuffer._locate) must look */
  NEXT_INTERRUPTED = 3, /* interrupt() was called */
  NEXT_NO_WAITV = -1,   /* futex_waitv is missing: the pure-Python path takes over */
};
/* What look() found. */
enum { LOOK_FOUND, LOOK_EMPTY, LOOK_SLOW };

typedef struct {
  uint32_t head;   /* the head word as loaded */
  uint32_t start;  /* buffer offset of the record's payload */
  uint32_t length; /* its payload length */
  uint32_t end;    /* ring index after the record */
  int64_t skip;    /* -1, or the index of the record after markers skipped (| 1: a WRAP) */
} Found;

/* The record at ring index `pos`, as ByteRingBuffer._locate finds it on its fast path:
 * WRAP markers and PAD records skipped, every length and index checked against the
 * data area before anything at it is read. Anything else (an empty ring that is
 * CLOSED or has tail stores pending, a live receiver that must pin first, markers
 * with nothing after them, any value that does not check out) is LOOK_SLOW: the
 * Python lookup then does what it does, raising its CorruptRecordError for a
 * hostile segment. Reads only inside [data, data + capacity). */
static int look(const Waiter* self, uint32_t pos, unsigned flags, Found* f) {
  const uint32_t head = __atomic_load_n(self->head, __ATOMIC_ACQUIRE); /* pairs: release */
  const uint32_t cap = self->capacity;
  uint32_t avail = head - pos; /* u32 arithmetic wraps at 2**32 like the indices */
  f->head = head;
  if (avail == 0) {
    if (flags & NEXT_IDLE_PENDING) return LOOK_SLOW;
    if (__atomic_load_n(self->pflags, __ATOMIC_ACQUIRE) & self->closed_bit) return LOOK_SLOW;
    return LOOK_EMPTY;
  }
  if (flags & NEXT_NEEDS_PIN) return LOOK_SLOW;
  if (avail > cap || ((head | pos) & (self->align - 1)) != 0) return LOOK_SLOW;
  const uint64_t round = self->align - 1;
  uint32_t at = pos;
  int64_t wrapped = 0;
  for (;;) {
    const uint32_t off = at & (cap - 1); /* aligned, so a len word never crosses the end */
    const uint32_t to_end = cap - off;
    const uint32_t len = __atomic_load_n((const uint32_t*)(self->data + off), __ATOMIC_RELAXED);
    uint64_t rec;
    if (len == self->wrap_marker) {
      rec = to_end;
      wrapped = 1;
    } else {
      const uint64_t n = (len & self->pad_flag) ? (len & self->max_len) : len;
      rec = (n + self->len_size + round) & ~round;
      if (rec > to_end) return LOOK_SLOW;
      if (!(len & self->pad_flag)) {
        if (rec > avail) return LOOK_SLOW;
        f->start = self->data_offset + off + self->len_size;
        f->length = len;
        f->end = at + (uint32_t)rec;
        f->skip = at == pos ? -1 : (int64_t)at | wrapped;
        return LOOK_FOUND;
      }
    }
    if (rec >= avail) return LOOK_SLOW; /* passes head, or nothing after the markers */
    at += (uint32_t)rec;
    avail -= (uint32_t)rec;
  }
}

PyDoc_STRVAR(Waiter_next_doc,
             "next(pos, flags, deadline, check_at, release) -> tuple | int\n\n"
             "The consumer's blocking lookup in one call. First, when release >= 0, stores it as\n"
             "this slot's tail (release order; then a full fence and, when the producer's WAITING\n"
             "is set, a wake on the tail word: ByteRingBuffer._store_tail of a lossless\n"
             "receiver). Then looks for the record at ring index pos\n"
             "(skipping WRAP markers and PAD records, checking every length and index against\n"
             "the data area); while there is none, sleeps as wait() does (the GIL released) and\n"
             "looks again. deadline and check_at are time.monotonic() values (deadline None: no\n"
             "limit). Returns (offset, length, end, head, skip) for a record: offset and length\n"
             "of its payload in the buffer, end its ring index after it, head the head word it\n"
             "saw, skip -1 or the index the record starts at after skipped markers (| 1 when a\n"
             "WRAP marker was among them: the caller releases them as its own lookup would).\n"
             "Else 0 (deadline passed, nothing to read), 1 (check_at reached, or a wait word\n"
             "other than head and producer_flags changed, nothing to read: look at the\n"
             "producer, then call again), 2 (the Python lookup must look: the ring\n"
             "is CLOSED and drained, tail stores are pending, a pin is needed (flags bit 0), a\n"
             "marker ends the data or a value does not check out), 3 (interrupt() was called),\n"
             "-1 (no futex_waitv: use the pure-Python path). flags: bit 0 the caller must pin\n"
             "before reading, bit 1 it has tail stores pending or holds a pin. Leaves WAITING\n"
             "set once it slept (end() clears it). Signals: their handlers run inside the call\n"
             "(an exception they raise ends it). Consumer thread, one at a time; needs\n"
             "set_records() first; blocks.");

static PyObject* next_done(Waiter* self, PyObject* result) {
  self->sleeper = 0;
  return result;
}

static PyObject* Waiter_next(Waiter* self, PyObject* const* args, Py_ssize_t nargs) {
  if (closed_error(self) < 0) return NULL;
  if (self->data == NULL) {
    PyErr_SetString(PyExc_ValueError, "Waiter.next() before set_records()");
    return NULL;
  }
  if (nargs != 5) {
    PyErr_SetString(PyExc_TypeError,
                    "next(pos, flags, deadline, check_at, release) takes 5 arguments");
    return NULL;
  }
  const long long release = PyLong_AsLongLong(args[4]);
  if (release == -1 && PyErr_Occurred()) return NULL;
  if (release >= 0) {
    /* Our reads of the released records happen before the producer reuses them
     * (release); then the store-load fence against the producer's "set WAITING,
     * fence, re-check tail" (the Dekker pair, DESIGN.md section 3). */
    __atomic_store_n(self->tail, (uint32_t)release, __ATOMIC_RELEASE);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(self->pflags, __ATOMIC_RELAXED) & self->producer_waiting_bit) {
      if (syscall(SYS_futex, self->tail, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0) < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
      }
    }
  }
  const unsigned long pos_l = PyLong_AsUnsignedLongMask(args[0]);
  if (pos_l == (unsigned long)-1 && PyErr_Occurred()) return NULL;
  const unsigned long flags_l = PyLong_AsUnsignedLongMask(args[1]);
  if (flags_l == (unsigned long)-1 && PyErr_Occurred()) return NULL;
  double deadline = Py_HUGE_VAL;
  if (args[2] != Py_None) {
    deadline = PyFloat_AsDouble(args[2]);
    if (deadline == -1.0 && PyErr_Occurred()) return NULL;
  }
  const double check_at = PyFloat_AsDouble(args[3]);
  if (check_at == -1.0 && PyErr_Occurred()) return NULL;
  const uint32_t pos = (uint32_t)pos_l;
  const unsigned flags = (unsigned)flags_l;
  self->sleeper = PyThread_get_thread_ident();
  Found f;
  for (;;) {
    const int found = look(self, pos, flags, &f);
    if (found == LOOK_FOUND) {
      return next_done(
          self, Py_BuildValue("(kkkkL)", (unsigned long)f.start, (unsigned long)f.length,
                              (unsigned long)f.end, (unsigned long)f.head, (long long)f.skip));
    }
    if (found == LOOK_SLOW) return next_done(self, PyLong_FromLong(NEXT_SLOW));
    if (self->interrupted) return next_done(self, PyLong_FromLong(NEXT_INTERRUPTED));
    const double now = (double)now_ns() / 1e9; /* time.monotonic()'s clock */
    if (now >= deadline) return next_done(self, PyLong_FromLong(NEXT_ENDED));
    if (now >= check_at) return next_done(self, PyLong_FromLong(NEXT_CHECK));
    if (other_word_changed(self)) return next_done(self, PyLong_FromLong(NEXT_CHECK));
    const double until = deadline < check_at ? deadline : check_at;
    const double nap_s = until - now; /* > 0; infinite: no limit */
    const int slept = sleep_once(self, f.head, nap_s < 1e9 ? (int64_t)(nap_s * 1e9) : -1);
    if (slept == SLEPT_ERROR) return next_done(self, NULL);
    if (slept == SLEPT_NO_WAITV) return next_done(self, PyLong_FromLong(NEXT_NO_WAITV));
    if (slept == SLEPT_OTHER_WORD) return next_done(self, PyLong_FromLong(NEXT_CHECK));
    /* Run signal handlers now (EINTR): one may interrupt() this wait or raise. */
    if (PyErr_CheckSignals() < 0) return next_done(self, NULL);
    /* The GIL is held from here to the next sleep: a close() (detach) by another
     * thread while we slept is seen here, before any shared word is touched. */
    if (closed_error(self) < 0) return next_done(self, NULL);
  }
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
  self->head = self->pflags = self->flags = self->tail = self->owner = NULL;
  self->data = NULL;
  Py_RETURN_NONE;
}

static PyObject* Waiter_get_sleeping(Waiter* self, void* closure) {
  (void)closure;
  return PyBool_FromLong(self->sleeping);
}

static PyObject* Waiter_get_interrupted(Waiter* self, void* closure) {
  (void)closure;
  return PyBool_FromLong(self->interrupted);
}

static int Waiter_set_interrupted(Waiter* self, PyObject* value, void* closure) {
  (void)closure;
  const int truth = value == NULL ? 0 : PyObject_IsTrue(value);
  if (truth < 0) return -1;
  self->interrupted = truth;
  return 0;
}

static PyObject* Waiter_get_sleeper(Waiter* self, void* closure) {
  (void)closure;
  return PyLong_FromUnsignedLong(self->sleeper);
}

static PyMethodDef Waiter_methods[] = {
    {"wait", (PyCFunction)(void (*)(void))Waiter_wait, METH_FASTCALL, Waiter_wait_doc},
    {"next", (PyCFunction)(void (*)(void))Waiter_next, METH_FASTCALL, Waiter_next_doc},
    {"set_records", (PyCFunction)Waiter_set_records, METH_VARARGS, Waiter_set_records_doc},
    {"end", (PyCFunction)Waiter_end, METH_NOARGS, Waiter_end_doc},
    {"close", (PyCFunction)Waiter_close, METH_NOARGS, Waiter_close_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Waiter_getset[] = {
    {"sleeping", (getter)Waiter_get_sleeping, NULL, "WAITING is set (since the last end())", NULL},
    {"interrupted", (getter)Waiter_get_interrupted, (setter)Waiter_set_interrupted,
     "next() returns 3 while set (the ring's interrupt() sets it, clear_interrupt() clears "
     "it; any thread, with the GIL)",
     NULL},
    {"sleeper", (getter)Waiter_get_sleeper, NULL,
     "ident of the thread inside next() (0: none): interrupt() wakes it until it is out", NULL},
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
    .tp_doc = PyDoc_STR("The consumer side's sleep on one ring (wait()) and its blocking "
                        "lookup (next()). One per ring view; its calls come from one thread "
                        "at a time, except the interrupted/sleeper attributes (any thread)."),
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

/* compare_exchange(address, expected, desired) -> int: one atomic compare-and-swap of
 * the aligned 32-bit header word at `address` (inside a mapping the caller keeps):
 * stores `desired` if the word holds `expected`; returns what the word held (== expected:
 * stored). Sequentially consistent on success and failure. shmring/_atomics.py builds
 * fetch-or/and/add of a flags word on it, so that a change another thread or process
 * makes between a plain load and store is not overwritten. Any thread; never blocks. */
static PyObject* native_compare_exchange(PyObject* mod, PyObject* const* args, Py_ssize_t nargs) {
  (void)mod;
  if (nargs != 3) {
    PyErr_SetString(PyExc_TypeError, "compare_exchange(address, expected, desired)");
    return NULL;
  }
  const unsigned long long addr = PyLong_AsUnsignedLongLong(args[0]);
  if (addr == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
  const unsigned long expected_l = PyLong_AsUnsignedLongMask(args[1]);
  if (expected_l == (unsigned long)-1 && PyErr_Occurred()) return NULL;
  const unsigned long desired_l = PyLong_AsUnsignedLongMask(args[2]);
  if (desired_l == (unsigned long)-1 && PyErr_Occurred()) return NULL;
  if (addr == 0 || addr % 4 != 0) {
    PyErr_Format(PyExc_ValueError, "compare_exchange: address %llu is not a 4-byte aligned word",
                 addr);
    return NULL;
  }
  uint32_t expected = (uint32_t)expected_l;
  __atomic_compare_exchange_n((uint32_t*)(uintptr_t)addr, &expected, (uint32_t)desired_l, 0,
                              __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return PyLong_FromUnsignedLong(expected); /* on failure: the value found */
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
    {"compare_exchange", (PyCFunction)(void (*)(void))native_compare_exchange, METH_FASTCALL,
     "compare_exchange(address, expected, desired) -> int: atomic CAS of a 32-bit word; "
     "returns the value found (== expected: stored)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    "shmring._native",
    "The consumer's fused futex_waitv wait and blocking record lookup (optional; see "
    "_futex.py and ring.py).",
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
