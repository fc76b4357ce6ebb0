"""Zero-copy views of ring memory that know whether anything still uses them.

A view handed to a user is made from a per-record ctypes array (the *token*)
over the ring buffer. Every memoryview derived from it (slices, casts,
``toreadonly``) shares one managed buffer that holds exactly one reference to the
token, and every numpy array or other exporter made from the view either holds
that managed buffer or an export on the view. So after ``view.release()``
succeeds, the token's reference count tells whether any derived view or array
is still alive. A record is only given back to the producer when nothing is:
ring memory is never reused under a live view.
"""
from __future__ import annotations

import ctypes
import sys
from typing import Any, Optional

# Number of references to the token while it is free: the Held slot, the local
# variable in try_release and getrefcount's own argument.
_FREE_TOKEN_REFS = 3


class Held:
    """One record handed out zero-copy: its view, its token and its ring end index."""

    __slots__ = ("view", "token", "end")

    def __init__(self, view: memoryview, token: Any, end: int) -> None:
        self.view: Optional[memoryview] = view
        self.token: Any = token
        self.end = end

    def try_release(self) -> bool:
        """Releases the view; True when nothing derived from it is alive any more."""
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
        if sys.getrefcount(token) > _FREE_TOKEN_REFS:
            return False
        self.token = None
        return True


def make_held(array_type: Any, buf: Any, start: int, length: int, end: int,
              readonly: bool) -> Held:
    """A tracked view of ``buf[start:start + length]`` (``array_type`` spans all of ``buf``)."""
    token = array_type.from_buffer(buf)
    view = memoryview(token).cast("B")[start:start + length]
    if readonly:
        view = view.toreadonly()
    return Held(view, token, end)


def array_type_for(size: int) -> Any:
    """The ctypes array type used for tokens over a buffer of ``size`` bytes."""
    return ctypes.c_ubyte * size


