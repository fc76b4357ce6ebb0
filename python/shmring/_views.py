"""Zero-copy views of ring memory that know whether anything still uses them.

A view handed to a user is made from a ctypes array (the *token*) spanning the
ring buffer. Every memoryview derived from it (slices, casts, ``toreadonly``)
shares one managed buffer that holds exactly one reference to the token, and
every numpy array or other exporter made from the view either holds that
managed buffer or an export on the view. So after ``view.release()`` succeeds,
the token's reference count tells whether any derived view or array is still
alive. A record is only given back to the producer when nothing is: ring memory
is never reused under a live view.

Tokens are pooled (:class:`TokenPool`): a token whose count says it is free is
referenced by nothing but its Held, so no view of it exists any more and it can
carry the next record's view. That saves the ctypes ``from_buffer`` call (and
the export on the buffer it makes) per record. Each token holds an export on
the ring buffer: :meth:`TokenPool.close` drops the pooled ones (an ``mmap`` can
only be closed without exports).
"""
from __future__ import annotations

import ctypes
import sys
from typing import Any, List, Optional

# Number of references to the token while it is free: the Held slot, the local
# variable in try_release and getrefcount's own argument.
_FREE_TOKEN_REFS = 3
# Free tokens kept for reuse per ring (a reader holds only a few records at once).
_POOL_SIZE = 8

_getrefcount = sys.getrefcount


class TokenPool:
    """Free tokens over one buffer; :meth:`held` makes tracked views from them."""

    __slots__ = ("_type", "_buf", "_free", "_open")

    def __init__(self, buf: Any, size: int) -> None:
        self._type = array_type_for(size)
        self._buf = buf
        self._free: List[Any] = []
        self._open = True

    def held(self, start: int, length: int, end: int, readonly: bool) -> "Held":
        """A tracked view of ``buf[start:start + length]``."""
        free = self._free
        token = free.pop() if free else self._type.from_buffer(self._buf)
        view = memoryview(token).cast("B")[start:start + length]
        if readonly:
            view = view.toreadonly()
        return Held(view, token, end, self)

    def close(self) -> None:
        """Drops the pooled tokens (and their exports); later frees are not kept."""
        self._open = False
        self._free.clear()


class Held:
    """One record handed out zero-copy: its view, its token and its ring end index."""

    __slots__ = ("view", "token", "end", "pool")

    def __init__(self, view: memoryview, token: Any, end: int,
                 pool: Optional[TokenPool] = None) -> None:
        self.view: Optional[memoryview] = view
        self.token: Any = token
        self.end = end
        self.pool = pool

    def try_release(self) -> bool:
        """Releases the view; True when nothing derived from it is alive any more.

        The token then goes back to its pool: nothing can reach it but this object.
        """
        view = self.view
        if view is not None:
            try:
                view.release()
            except BufferError:
                return False
            self.view = None
            del view
        token = self.token
        if token is None:
            return True
        if _getrefcount(token) > _FREE_TOKEN_REFS:
            return False
        self.token = None
        pool = self.pool
        if pool is not None:  # back to its pool (kept unless closed or full)
            self.pool = None
            if pool._open and len(pool._free) < _POOL_SIZE:
                pool._free.append(token)
        return True


def make_held(array_type: Any, buf: Any, start: int, length: int, end: int,
              readonly: bool) -> Held:
    """A tracked view of ``buf[start:start + length]`` (``array_type`` spans all of ``buf``),
    with a token of its own (not pooled)."""
    token = array_type.from_buffer(buf)
    view = memoryview(token).cast("B")[start:start + length]
    if readonly:
        view = view.toreadonly()
    return Held(view, token, end)


def array_type_for(size: int) -> Any:
    """The ctypes array type used for tokens over a buffer of ``size`` bytes."""
    return ctypes.c_ubyte * size
