"""Every tuning value of the Python side, defined once.

The same names and values as the C++ core's ``core/src/tuning.hpp`` (namespace
``shm::tuning``: ``kSpinPolls`` is ``SPIN_POLLS``, ``kLivenessSliceNs`` is
``LIVENESS_SLICE_S``, and so on; C++ counts nanoseconds, Python seconds).
``tests/python/test_constants.py`` checks that both files agree (``SPIN_POLLS`` is
the one intended difference, see below). None of these is
part of the wire format: they bound how long a side spins, naps and retries.
"""
from __future__ import annotations

#: Polls of the peer's index before a side sets WAITING and sleeps: a message a
#: few microseconds away is cheaper to wait for awake than asleep.
#: The one value that differs from C++ on purpose (``kSpinPolls`` = 256): what the
#: two languages share is the spin's duration, about a microsecond. A C++ poll is
#: one load (256 cost ~1 us); a Python poll is an interpreted loop step of 30-200 ns
#: (cold caches after a nap), so 256 of them cost 10-50 us of CPU on every wait, most
#: of a blocking frame reader's budget. 32 Python polls spin about as long as the
#: core does. ``tests/python/test_constants.py`` lists this difference.
SPIN_POLLS = 32

#: Longest a waiting side goes without looking at its peer's liveness (one
#: F_OFD_GETLK on the peer's lock byte; for a consumer also CLOSED and, once the
#: producer is gone, the name's generation) when nothing wakes it at the peer's
#: death: a producer waiting for space, a reader whose producer did not arm its owner
#: word (ARMED_LIVENESS_SLICE_S otherwise), a sleep that cannot include the owner word
#: (no futex_waitv). There it is the longest single sleep, and bounds the time to
#: notice a crashed or replaced peer (0.5 s) and the idle wake-ups (2 per second).
LIVENESS_SLICE_S = 0.500

#: The liveness slice of a consumer whose producer armed its owner word (a
#: robust-futex word the kernel marks and wakes at the producer's death): death is
#: then an event, and the slice only a safety net (a hostile or broken producer, an
#: unforeseen kernel path). 5 s: an idle reader wakes 0.2 times a second for it.
ARMED_LIVENESS_SLICE_S = 5.0

#: After the owner word says the producer died while its lock byte is still held
#: (the kernel marks the word before it releases the dying process's files, or a
#: forked child holds the ring), the consumer looks again after this long, doubling
#: up to LIVENESS_SLICE_S.
OWNER_DIED_LOOK_S = 0.001

#: Nap used instead of trusting a wake when the peer relies on our membarrier and
#: the call failed (the peer's wake check is then unordered against our WAITING).
UNFENCED_NAP_S = 0.001

#: A segment without a magic, unchanged this long (st_ctime), is debris of a
#: creator that died mid-way; younger, another creator may still be at work.
ABANDONED_AFTER_S = 5.0

#: How often a creator looks again at a name another creator is still setting up,
#: and the pause in between (about 1 s in all).
CREATE_ATTEMPTS = 20
CREATE_RETRY_S = 0.050

#: Pauses between two looks of an opener waiting for a ring to appear: the first,
#: doubling up to the longest.
OPEN_POLL_MIN_S = 0.001
OPEN_POLL_MAX_S = 0.020

#: Where there is no futex (not Linux), a sleeper polls the word, backing off from
#: the first nap to the longest, and returns to its caller at least this often.
POLL_NAP_MIN_S = 50e-6
POLL_NAP_MAX_S = 0.002
POLL_RETURN_S = 0.020

#: How often ``interrupt()`` wakes a sleeper's word again until it has left its wait.
INTERRUPT_REWAKE_S = 50e-6

#: The C++ producer puts records of at least this many bytes at offset 0 of the
#: next lap (behind a WRAP marker) when the front of the ring is already free for
#: them, so big messages reuse cache-warm places; the Python producer always
#: writes at the head (readers of both languages follow either).
EARLY_WRAP_MIN_RECORD = 64 * 1024

#: C++ producer only (listed so both languages name every tuning value): such
#: records cycle through three places at the front of the ring while three fit in
#: the CPU's largest cache divided by this; above it through two when painted in
#: place, and copied ones go back to the front as soon as it is free; the first for records
#: the caller paints in place (``shm::FillHint::kInPlace``: the sink's buffer pool), the
#: second for records copied in from the caller's own buffer (``kCopied``: Write,
#: WriteFor, the sink's render copy), whose source buffers share the cache.
THREE_PLACES_CACHE_SHARE_IN_PLACE = 1
THREE_PLACES_CACHE_SHARE_COPIED = 5

#: C++ producer only: the cache size assumed where the machine's cannot be read.
ASSUMED_CACHE_BYTES = 16 * 1024 * 1024
