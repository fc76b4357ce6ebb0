"""The waiting rule, one table (python/README.md "Waiting, one rule"): the original
API's calls never wait unless asked (timeout 0), every streaming call waits without
limit by default (None); ``write()`` returning False counts nothing (the caller keeps
the message, as C++ ``Write``), ``FrameWriter.write`` returning False counts a drop
(as shmringsink)."""
from __future__ import annotations

import inspect

import pytest

import shmring
from conftest import unique_name

RULE = {
    # original API (section 5 of the original design): never waits unless asked
    (shmring.ShmConsumer, "__init__"): 0,
    (shmring.ShmConsumer, "read"): 0,
    (shmring.ShmProducer, "write"): 0,
    # streaming calls: wait without limit by default
    (shmring.ShmConsumer, "read_view"): None,
    (shmring.ShmConsumer, "aread"): None,
    (shmring.ShmProducer, "reserve"): None,
    (shmring.FrameReader, "__init__"): None,
    (shmring.FrameReader, "read_frame"): None,
    (shmring.FrameReader, "aread_frame"): None,
    (shmring.FrameWriter, "write"): None,
}


@pytest.mark.parametrize("cls,method", sorted(RULE, key=lambda k: (k[0].__name__, k[1])),
                         ids=lambda v: getattr(v, "__name__", v))
def test_timeout_defaults_follow_the_one_rule(cls, method):
    default = inspect.signature(getattr(cls, method)).parameters["timeout"].default
    assert default == RULE[(cls, method)], f"{cls.__name__}.{method}(timeout={default!r})"


def test_every_public_timeout_parameter_is_in_the_table():
    # A new blocking call must take a side in the rule (and the README must say which).
    found = set()
    for cls in (shmring.ShmConsumer, shmring.ShmProducer, shmring.FrameReader,
                shmring.FrameWriter):
        for name, fn in vars(cls).items():
            if (name == "__init__" or not name.startswith("_")) and callable(fn):
                param = inspect.signature(fn).parameters.get("timeout")
                if param is not None and param.default is not inspect.Parameter.empty:
                    found.add((cls, name))  # (a required timeout takes no side)
    extra = {(c.__name__, m) for c, m in found - set(RULE)
             if not (c is shmring.FrameWriter and m == "close")}
    assert not extra, f"timeout parameters not covered by the rule: {sorted(extra)}"


def test_a_false_write_counts_nothing_but_a_frame_writer_drop_is_counted():
    name = unique_name("dflt")
    with shmring.ShmProducer(name, 4096) as p, shmring.ShmConsumer(name):
        while p.write(b"x" * 512):
            pass
        assert p.write(b"x" * 512) is False      # full right now: the caller decides
        assert p.dropped == 0
        p.count_dropped()                        # ...and records a drop itself
        assert p.dropped == 1
    caps = "video/x-raw,format=GRAY8,width=32,height=32"
    with shmring.FrameWriter(name + "f", 8192, caps=caps) as w, \
            shmring.FrameReader(name + "f", timeout=0):
        while w.write(bytes(32 * 32), timeout=0):
            pass
        before = w.dropped
        assert w.write(bytes(32 * 32), timeout=0) is False
        assert w.dropped == before + 1
