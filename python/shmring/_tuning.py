"""Every tuning value of the Python side, defined once.

The same names and values as the C++ core's ``core/src/tuning.hpp`` (namespace
``shm::tuning``: ``kSpinPolls`` is ``SPIN_POLLS``, ``kLivenessSliceNs`` is
``LIVENESS_SLICE_S``, and so on; C++ counts nanoseconds, Python seconds).
``tests/python/test_constants.py`` checks that both files agree. None of these is
part of the wire format: they bound how long a side spins, naps and retries.
"""
from __future__ import annotations

#: Polls of the peer's index before a side sets WAITING and sleeps: a message a
#: few microseconds away is cheaper to wait for awake than asleep.
SPIN_POLLS = 256

#: Longest a waiting consumer goes without looking at the producer's liveness
#: (its byte-0 lock and CLOSED) and the name's generation: bounds the time to
#: notice a crashed or replaced producer. The check itself runs at most once
#: per slice.
LIVENESS_SLICE_S = 0.200

#: Longest single consumer nap: a CLOSED (and its wake) landing between the
#: consumer's last look and its futex wait is not seen by the futex (head did not
#: change), so the consumer looks again at least this often.
MAX_CONSUMER_SLEEP_S = 0.050

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
