"""Every constant of the C++ core equals its Python counterpart.

Parses ``core/include/shm/layout.hpp``, ``core/include/shm/framing.hpp`` and
``core/src/tuning.hpp`` (``constexpr`` definitions and ``enum class`` values),
evaluates each value and compares it with the Python module that mirrors the file
(``layout.py``, ``framing.py``, ``_tuning.py``). Names map by one rule: ``kFooBar``
is ``FOO_BAR``; a ``...Ns`` or ``...S`` suffix is a duration, ``FOO_BAR_S`` in
Python seconds; framing's ``enum class Kind`` value ``kCaps`` is ``KIND_CAPS``. A
missing file fails (never skips): the two languages must not drift apart unseen.
"""
from __future__ import annotations

import os
import re
from typing import Dict, Tuple

import pytest

from conftest import _SOURCE_ROOT
from shmring import _tuning, framing, layout

HEADERS = {
    "layout": ("core/include/shm/layout.hpp", layout),
    "framing": ("core/include/shm/framing.hpp", framing),
    "tuning": ("core/src/tuning.hpp", _tuning),
}

_CONSTEXPR = re.compile(
    r"^\s*(?:static\s+)?constexpr\s+([\w:]+)\s+(k\w+)\s*=\s*([^;]+);", re.M)
_ENUM = re.compile(r"enum\s+class\s+(\w+)\s*:\s*[\w:]+\s*\{([^}]*)\}", re.S)
_ENUM_ITEM = re.compile(r"(k\w+)\s*=\s*([^,/\n]+)")


def _python_expr(expr: str, known: Dict[str, int]) -> str:
    """A C++ constant expression as Python source (integer literals, shifts, ~T{0})."""
    expr = re.sub(r"//.*", "", expr).strip()
    expr = expr.replace("'", "")  # digit separators
    expr = re.sub(r"~\s*u?int64_t\s*\{\s*0\s*\}", str(2 ** 64 - 1), expr)
    expr = re.sub(r"~\s*u?int32_t\s*\{\s*0\s*\}", str(2 ** 32 - 1), expr)
    expr = re.sub(r"u?int\d+_t\s*\{([^}]*)\}", r"(\1)", expr)
    expr = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)(?:[uU]?[lL]{0,2})\b",
                  r"\1", expr)
    return re.sub(r"\bk\w+\b", lambda m: repr(known[m.group(0)]), expr)


def parse_constants(path: str) -> Dict[str, Tuple[str, object]]:
    """{C++ name: (type, value)} of every constexpr and enum value in ``path``."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    out: Dict[str, Tuple[str, object]] = {}
    known: Dict[str, int] = {}
    for enum_name, body in _ENUM.findall(text):
        for name, value in _ENUM_ITEM.findall(body):
            v = eval(_python_expr(value, known), {})  # noqa: S307 - our own headers
            out[f"{enum_name}::{name}"] = ("enum " + enum_name, v)
    for ctype, name, value in _CONSTEXPR.findall(text):
        v = eval(_python_expr(value, known), {})  # noqa: S307 - our own headers
        known[name] = v
        out[name] = (ctype, v)
    return out


def python_name(cpp_name: str) -> Tuple[str, float]:
    """(Python name, factor from the C++ value to the Python one)."""
    if "::" in cpp_name:  # enum Kind::kCaps -> KIND_CAPS
        enum_name, item = cpp_name.split("::")
        return f"{enum_name.upper()}_{python_name(item)[0]}", 1
    base = cpp_name[1:]
    factor = 1.0
    if base.endswith("Ns"):
        base, factor = base[:-2] + "S", 1e-9
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", base).upper()
    return snake, factor


def _path(rel: str) -> str:
    return os.path.join(_SOURCE_ROOT, rel)


@pytest.mark.parametrize("which", sorted(HEADERS))
def test_header_exists_and_has_constants(which):
    rel, _ = HEADERS[which]
    assert os.path.exists(_path(rel)), (
        f"{rel} is missing: the C++ side of the constants Python mirrors must exist")
    assert parse_constants(_path(rel)), f"no constexpr definitions parsed from {rel}"


@pytest.mark.parametrize("which", sorted(HEADERS))
def test_every_cpp_constant_equals_its_python_counterpart(which):
    rel, module = HEADERS[which]
    assert os.path.exists(_path(rel)), f"{rel} is missing"
    mismatches = []
    for cpp_name, (_ctype, value) in sorted(parse_constants(_path(rel)).items()):
        py_name, factor = python_name(cpp_name)
        if not hasattr(module, py_name):
            mismatches.append(f"{cpp_name} = {value}: no {module.__name__}.{py_name}")
            continue
        py_value = getattr(module, py_name)
        expected = value * factor if factor != 1 else value
        if isinstance(expected, float) or isinstance(py_value, float):
            ok = py_value == pytest.approx(expected, rel=1e-12, abs=0)
        else:
            ok = py_value == expected
        if not ok:
            mismatches.append(f"{cpp_name} = {expected} but {module.__name__}.{py_name} = "
                              f"{py_value}")
    assert not mismatches, "\n".join(mismatches)


def test_every_python_tuning_value_exists_in_cpp():
    rel, _ = HEADERS["tuning"]
    assert os.path.exists(_path(rel)), f"{rel} is missing"
    cpp = {python_name(n)[0] for n in parse_constants(_path(rel))}
    python = {n for n in vars(_tuning) if n.isupper()}
    assert python - cpp == set(), f"Python-only tuning values: {sorted(python - cpp)}"


def test_the_parser_reads_what_it_should():
    # The rule itself, on the cases the headers use.
    assert python_name("kLivenessSliceNs") == ("LIVENESS_SLICE_S", 1e-9)
    assert python_name("kAbandonedAfterS") == ("ABANDONED_AFTER_S", 1.0)
    assert python_name("kConsumerAttachCountOne")[0] == "CONSUMER_ATTACH_COUNT_ONE"
    assert python_name("Kind::kCaps")[0] == "KIND_CAPS"
    known = {"kShift": 16}
    assert eval(_python_expr("1u << kShift", known)) == 1 << 16
    assert eval(_python_expr("200'000'000", known)) == 200_000_000
    assert eval(_python_expr("0x474E5253u", known)) == 0x474E5253
    assert eval(_python_expr("~uint64_t{0}", known)) == 2 ** 64 - 1
