"""Type stub of the optional C helper ``shmring._native`` (python/native/_native.c)."""
from typing import Optional, Tuple


class Waiter:
    """The consumer side's fused sleep on one ring view (one thread at a time)."""

    def __init__(self, head_address: int, producer_flags_address: int, flags_address: int,
                 waiting_bit: int, closed_bit: int, membarrier_bit: int,
                 unfenced_nap: float, spin_polls: int, spin_after: float,
                 owner_address: int = ...) -> None: ...

    owner_seen: int

    def wait(self, seen: int, timeout: Optional[float], /) -> int: ...

    def end(self) -> None: ...

    def close(self) -> None: ...

    @property
    def sleeping(self) -> bool: ...


def counters() -> Tuple[int, int, float]: ...


def owner_wakes() -> int: ...


def reset_counters() -> None: ...
