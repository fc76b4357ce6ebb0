"""Shared fixtures: unique ring names (unlinked afterwards), golden vectors, the C++ peer."""
from __future__ import annotations

import itertools
import os
import sys
from typing import Iterator, List

import pytest

_SOURCE_ROOT = os.environ.get(
    "SHMRING_SOURCE_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
if os.path.join(_SOURCE_ROOT, "python") not in sys.path:
    sys.path.insert(0, os.path.join(_SOURCE_ROOT, "python"))

_counter = itertools.count()


# Pids wrap quickly on a busy machine: a random token per process keeps a name from
# meeting a segment an earlier, killed run left under the same pid.
_TOKEN = os.urandom(2).hex()


def unique_name(prefix: str = "pyt") -> str:
    """A ring name no other test run uses: prefix + pid + random token + counter."""
    return f"{prefix}{os.getpid()}{_TOKEN}_{next(_counter)}"


@pytest.fixture
def ring_name() -> Iterator[str]:
    """A fresh ring name; whatever the test left under it in /dev/shm is removed."""
    name = unique_name()
    yield name
    try:
        os.unlink("/dev/shm/" + name)
    except FileNotFoundError:
        pass


@pytest.fixture
def ring_names() -> Iterator[List[str]]:
    """A factory-like list: call names.append(unique_name()) ... all unlinked after."""
    names: List[str] = []
    yield names
    for name in names:
        try:
            os.unlink("/dev/shm/" + name)
        except FileNotFoundError:
            pass


def vectors_dir() -> str:
    return os.environ.get("SHMRING_VECTORS", os.path.join(_SOURCE_ROOT, "tests", "vectors"))


def load_vector(filename: str) -> bytes:
    """The bytes of a golden vector (.hex: '#' comments, hex bytes separated by spaces,
    "@OFFSET" lines (hex) for runs of zero bytes up to OFFSET)."""
    out = bytearray()
    with open(os.path.join(vectors_dir(), filename), encoding="ascii") as f:
        for line in f:
            line = line.strip()
            if line.startswith("@"):  # "@OFFSET" (hex): zero bytes up to OFFSET
                offset = int(line[1:], 16)
                assert offset >= len(out), f"{filename}: {line} goes backwards"
                out += bytes(offset - len(out))
            elif line and not line.startswith("#"):
                out += bytes.fromhex(line)
    return bytes(out)


def peer_path() -> str:
    """Path of the C++ peer program, or skip the test when it was not built."""
    path = os.environ.get("SHMRING_PEER")
    if not path:
        guess = os.path.join(_SOURCE_ROOT, "build", "tests", "tools", "shmring_peer")
        path = guess if os.path.exists(guess) else ""
    if not path or not os.access(path, os.X_OK):
        pytest.skip("SHMRING_PEER (the C++ shmring_peer program) is not built")
    return path


@pytest.fixture(params=["native", "pure"])
def wait_impl(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a test twice: consumer rings created during it sleep through the native
    fused wait (shmring._native, skipped when it is not built) and through the
    pure-Python one."""
    from shmring import _futex
    if request.param == "native" and not _futex.native_available():
        pytest.skip("shmring._native is not built (python/meson.build)")
    previous = _futex.use_native(request.param == "native")
    try:
        yield request.param
    finally:
        _futex.use_native(previous)


@pytest.fixture
def pure_wait() -> Iterator[None]:
    """Consumer rings created during the test use the pure-Python wait (tests that
    look inside it: monkeypatched _sleep / heavy_barrier)."""
    from shmring import _futex
    previous = _futex.use_native(False)
    try:
        yield
    finally:
        _futex.use_native(previous)
