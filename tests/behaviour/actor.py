#!/usr/bin/python3
"""Python driver of the shared behaviour suite: plays one actor of one scenario.

Usage: actor.py --table SCENARIOS.json --scenario NAME --actor ACTOR --ring RING

Reads the actor's steps from the scenario table, performs them with the public API of
the ``shmring`` package only, and reports what it observed as JSON lines on stdout
(the control channel; its twin is tests/behaviour/actor.cpp):

    {"signal": NAME}                               a step "signal"
    {"step": I, "rep": K, "op": OP, "status": S, ...}  the outcome of step I, repetition K
    {"progress": TEXT}                             a note while a step is still running
    {"done": true}                                 every step ran, objects closed
    {"fatal": TEXT}                                a step this driver cannot perform

stdin carries {"signal": NAME} lines from the harness; a step "await" reads them until
NAME has arrived. Every call into ``shmring`` sits in one small adapter method below,
so a renamed API is a one-line change. An operation the package lacks reports the
status "unsupported", which never matches an expectation.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Set, Tuple

import shmring
from shmring import layout as _layout


# ---- payloads (the same generator as actor.cpp and the harness) ----------------------

def payload(length: int, seed: int) -> bytes:
    """Byte i of a (length, seed) payload is (i * 31 + seed * 17 + 5) mod 251."""
    return bytes((i * 31 + seed * 17 + 5) % 251 for i in range(length))


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


# ---- the adapter: one method per operation ----------------------------------------------

Outcome = Tuple[str, Dict[str, Any]]  # (status, extra fields to report)


class Unsupported(Exception):
    """The package has no API for an operation the scenario needs."""


class PythonAdapter:
    """Maps each neutral operation onto the shmring package's public API."""

    def __init__(self, ring: str) -> None:
        self.ring = ring
        self.producer: Optional[shmring.ShmProducer] = None
        self.consumer: Optional[shmring.ShmConsumer] = None
        self.open_interrupter = shmring.Interrupter()

    # statuses of exceptions (the package's error model, docs/DESIGN.md section 6)
    @staticmethod
    def _status_of(exc: BaseException, opening: str = "") -> str:
        if isinstance(exc, shmring.RingBusyError):
            return "refused_live_producer" if opening == "producer" else "refused_busy"
        if isinstance(exc, shmring.RingNotFoundError):
            return "timeout"
        if isinstance(exc, shmring.MessageTooLargeError):
            return "too_large"
        if isinstance(exc, shmring.RingInterruptedError):
            return "interrupted"
        if isinstance(exc, shmring.StreamClosedError):
            return "closed"
        if isinstance(exc, shmring.ProducerDeadError):
            return "peer_dead"
        if isinstance(exc, shmring.ProducerReplacedError):
            return "replaced"
        if isinstance(exc, shmring.CorruptRecordError):
            return "corrupt"
        if isinstance(exc, shmring.RingTimeoutError):
            return "timeout"
        if isinstance(exc, shmring.IncompatibleSegmentError):
            return "incompatible"
        return "error"

    def _fail(self, exc: BaseException, opening: str = "") -> Outcome:
        return self._status_of(exc, opening), {"message": f"{type(exc).__name__}: {exc}"}

    def producer_open(self, capacity: int, start_index: int, live: bool = False,
                      max_receivers: int = 1) -> Outcome:
        try:
            self.producer = shmring.ShmProducer(self.ring, capacity, start_index=start_index,
                                                live=live, max_receivers=max_receivers)
        except Exception as e:  # noqa: BLE001 - every failure is an observation
            return self._fail(e, "producer")
        return "ok", {}

    def consumer_open(self, timeout: Optional[float], mode: str = "lossless",
                      start_at: str = "oldest") -> Outcome:
        try:
            self.consumer = shmring.ShmConsumer(self.ring, timeout=timeout, mode=mode,
                                                start_at=start_at)
        except Exception as e:  # noqa: BLE001
            return self._fail(e, "consumer")
        return "ok", {}

    def consumer_open_interruptible(self) -> Outcome:
        """Opens with no timeout through an external interrupter (the ring is never
        created); interrupt_open() from another thread ends the wait."""
        try:
            self.consumer = shmring.ShmConsumer(self.ring, timeout=None,
                                                interrupter=self.open_interrupter)
        except Exception as e:  # noqa: BLE001
            return self._fail(e, "consumer")
        return "ok", {}

    def interrupt_open(self) -> Outcome:
        self.open_interrupter.interrupt()
        return "ok", {}

    def write(self, data: bytes, timeout: Optional[float], sync: bool = True) -> Outcome:
        p = self._need_producer()
        try:
            written = p.write(data, timeout=timeout, sync=sync)
        except Exception as e:  # noqa: BLE001
            return self._fail(e)
        if written:
            return "ok", {}
        # False with no timeout: a consumer had attached and left, nobody will make
        # room (C++ WriteFor reports kFull for it).
        return ("full" if timeout == 0 or timeout is None else "timeout"), {}

    def read(self, timeout: Optional[float]) -> Outcome:
        c = self._need_consumer()
        try:
            data = c.read(timeout=timeout)
        except Exception as e:  # noqa: BLE001
            return self._fail(e)
        if data is not None:
            return "ok", {"len": len(data), "fnv": fnv1a64(data)}
        if c.at_end:
            return "closed", {}
        if timeout is None:
            return "error", {"message": "read(timeout=None) returned None before end of stream"}
        return ("empty" if timeout == 0 else "timeout"), {}

    def end_stream(self) -> Outcome:
        p = self._need_producer()
        end = getattr(p, "end_stream", None)
        if end is None:
            raise Unsupported("shmring.ShmProducer has no end_stream() (C++ Close() sets CLOSED "
                              "and keeps the mapping; close() also unlinks and unmaps)")
        end()
        return "ok", {}

    def producer_close(self) -> Outcome:
        self._need_producer().close()
        self.producer = None
        return "ok", {}

    def consumer_close(self) -> Outcome:
        self._need_consumer().close()
        self.consumer = None
        return "ok", {}

    def interrupt(self, side: str) -> Outcome:
        self._side(side).interrupt()
        return "ok", {}

    def clear_interrupt(self, side: str) -> Outcome:
        self._side(side).clear_interrupt()
        return "ok", {}

    def is_waiting(self, side: str) -> bool:
        """Whether the side's WAITING bit is set in the header (it is asleep or about to be)."""
        if side == "consumer":
            return bool(self._need_consumer().ring.consumer_flags & _layout.CONSUMER_WAITING)
        return bool(self._need_producer().ring.producer_flags & _layout.PRODUCER_WAITING)

    def count_dropped(self, n: int) -> Outcome:
        self._need_producer().count_dropped(n)
        return "ok", {}

    def dropped(self, side: str) -> Outcome:
        return "ok", {"value": self._side(side).dropped}

    def consumer_attached(self) -> Outcome:
        return "ok", {"value": self._need_producer().consumer_attached()}

    def set_live(self, live: bool) -> Outcome:
        self._need_producer().live = live
        return "ok", {}

    def producer_live(self) -> Outcome:
        """The LIVE bit as this actor's endpoint sees it (its consumer if it has one)."""
        if self.consumer is not None:
            return "ok", {"value": self.consumer.ring.producer_live}
        return "ok", {"value": self._need_producer().live}

    def receiver_slot(self) -> Outcome:
        return "ok", {"value": self._need_consumer().slot}

    def skipped(self) -> Outcome:
        return "ok", {"value": self._need_consumer().skipped}

    def head_index(self) -> Outcome:
        return "ok", {"value": self._need_producer().ring.head}

    def close_all(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
        if self.producer is not None:
            self.producer.close()

    def _side(self, side: str) -> Any:
        return self._need_consumer() if side == "consumer" else self._need_producer()

    def _need_producer(self) -> shmring.ShmProducer:
        if self.producer is None:
            raise Unsupported("the step needs a producer this actor has not opened")
        return self.producer

    def _need_consumer(self) -> shmring.ShmConsumer:
        if self.consumer is None:
            raise Unsupported("the step needs a consumer this actor has not opened")
        return self.consumer


# ---- the step interpreter (mirrors actor.cpp) -------------------------------------------

class Actor:
    def __init__(self, adapter: PythonAdapter) -> None:
        self.adapter = adapter
        self.signals: Set[str] = set()
        self.out_lock = threading.Lock()

    def emit(self, obj: Dict[str, Any]) -> None:
        with self.out_lock:
            sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
            sys.stdout.flush()

    def await_signal(self, name: str) -> None:
        while name not in self.signals:
            line = sys.stdin.readline()
            if not line:
                raise RuntimeError(f"control channel closed while awaiting signal {name!r}")
            msg = json.loads(line)
            if "signal" in msg:
                self.signals.add(msg["signal"])

    def blocked_then_interrupted(self, side: str, call: Any) -> Outcome:
        """Runs ``call`` (a blocking call with no timeout) in a thread, waits until that
        side's WAITING bit is set, interrupts from this thread and joins."""
        result: List[Outcome] = []
        thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
        thread.start()
        while thread.is_alive() and not self.adapter.is_waiting(side):
            time.sleep(0.001)  # a synchronisation aid: the watchdog bounds a hang
        if not thread.is_alive():
            status, extra = result[0]
            extra["message"] = "the blocking call returned %s before it slept" % status
            return "returned_before_sleeping", extra
        self.adapter.interrupt(side)
        self.emit({"progress": f"{side} interrupt() returned"})
        thread.join()
        status, extra = result[0]
        extra["interrupt_returned"] = True
        return status, extra

    def open_then_interrupted(self) -> Outcome:
        """Opens with no timeout in a thread (nobody creates the ring) and interrupts the
        open from this thread."""
        a = self.adapter
        result: List[Outcome] = []
        thread = threading.Thread(target=lambda: result.append(
            a.consumer_open_interruptible()), daemon=True)
        thread.start()
        a.interrupt_open()
        self.emit({"progress": "open interrupt returned"})
        thread.join()
        status, extra = result[0]
        extra["interrupt_returned"] = True
        return status, extra

    def perform(self, step: Dict[str, Any], rep: int) -> Outcome:
        a = self.adapter
        op = step["op"]
        seed = step.get("seed", 0) + rep
        if op == "producer_open":
            return a.producer_open(step["capacity"], step.get("start_index", 0),
                                   bool(step.get("live", False)), step.get("max_receivers", 1))
        if op == "consumer_open":
            return a.consumer_open(step.get("timeout", 0), step.get("mode", "lossless"),
                                   step.get("start_at", "oldest"))
        if op == "receiver_slot":
            return a.receiver_slot()
        if op == "skipped":
            return a.skipped()
        if op == "write":
            # sync_every N: the message is a sync point when seed % N == 0 (default: all).
            return a.write(payload(step["len"], seed), step.get("timeout", 0),
                           seed % int(step.get("sync_every", 1)) == 0)
        if op == "read":
            return a.read(step.get("timeout", 0))
        if op == "end_stream":
            return a.end_stream()
        if op == "producer_close":
            return a.producer_close()
        if op == "consumer_close":
            return a.consumer_close()
        if op == "interrupt":
            return a.interrupt(step["side"])
        if op == "clear_interrupt":
            return a.clear_interrupt(step["side"])
        if op == "head_index":
            return a.head_index()
        if op == "set_live":
            return a.set_live(bool(step["live"]))
        if op == "producer_live":
            return a.producer_live()
        if op == "count_dropped":
            return a.count_dropped(step["n"])
        if op == "dropped":
            return a.dropped(step["side"])
        if op == "consumer_attached":
            return a.consumer_attached()
        if op == "interrupt_blocked_open":
            return self.open_then_interrupted()
        if op == "interrupt_blocked_read":
            return self.blocked_then_interrupted("consumer", lambda: a.read(None))
        if op == "interrupt_blocked_write":
            data = payload(step["len"], seed)
            return self.blocked_then_interrupted("producer", lambda: a.write(data, None))
        raise Unsupported(f"unknown operation {op!r}")

    def run(self, steps: List[Dict[str, Any]]) -> None:
        for i, step in enumerate(steps):
            op = step["op"]
            if op == "signal":
                self.emit({"signal": step["name"]})
                continue
            if op == "await":
                self.await_signal(step["name"])
                continue
            for rep in range(step.get("repeat", 1)):
                try:
                    status, extra = self.perform(step, rep)
                except Unsupported as e:
                    status, extra = "unsupported", {"message": str(e)}
                self.emit(dict(extra, step=i, rep=rep, op=op, status=status))
        self.adapter.close_all()
        self.emit({"done": True})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--actor", required=True)
    ap.add_argument("--ring", required=True)
    args = ap.parse_args()
    with open(args.table, encoding="utf-8") as f:
        table = json.load(f)
    actor = Actor(PythonAdapter(args.ring))
    found = [s for s in table["scenarios"] if s["name"] == args.scenario]
    if not found or args.actor not in found[0]["actors"]:
        actor.emit({"fatal": f"no actor {args.actor!r} in scenario {args.scenario!r}"})
        return 2
    actor.run(found[0]["actors"][args.actor]["steps"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
