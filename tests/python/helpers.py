"""Helpers for tests that run a second Python process against a ring."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Callable, List

SOURCE_ROOT = os.environ.get(
    "SHMRING_SOURCE_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


def python_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(SOURCE_ROOT, "python") + os.pathsep + \
        os.path.dirname(os.path.abspath(__file__))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def spawn_python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    """Starts ``python3 -c code args...`` with the package importable."""
    return subprocess.Popen([sys.executable, "-c", code, *args], env=python_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Polls ``predicate`` until true (a synchronisation aid, not a timing assertion)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()


def dev_shm(name: str) -> str:
    return "/dev/shm/" + name


def run_checked(cmd: List[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
