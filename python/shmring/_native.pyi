"""Type stub of the optional C helper ``shmring._native`` (python/native/_native.c)."""
from typing import Optional, Tuple, Union


class Waiter:
    """The consumer side's fused sleep on one ring view (one thread at a time)."""

    def __init__(self, head_address: int, producer_flags_address: int, flags_address: int,
                 waiting_bit: int, closed_bit: int, membarrier_bit: int,
                 unfenced_nap: float, spin_polls: int, spin_after: float,
                 owner_address: int = ...) -> None: ...

    owner_seen: int

    def wait(self, seen: int, timeout: Optional[float], /) -> int: ...

    def set_records(self, data_address: int, data_offset: int, capacity: int,
                    wrap_marker: int, pad_flag: int, max_valid_len: int, len_size: int,
                    record_align: int, /) -> None: ...

    def next(self, pos: int, flags: int, deadline: Optional[float], check_at: float, /
             ) -> Union[Tuple[int, int, int, int, int], int]: ...

    def end(self) -> None: ...

    def close(self) -> None: ...

    @property
    def sleeping(self) -> bool: ...

    interrupted: bool

    @property
    def sleeper(self) -> int: ...


def counters() -> Tuple[int, int, float]: ...


def owner_wakes() -> int: ...


def reset_counters() -> None: ...


def compare_exchange(address: int, expected: int, desired: int, /) -> int: ...
