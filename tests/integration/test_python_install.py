"""The documented ways to install the Python package (python/README.md, "Installing")
work offline on Debian 12: PYTHONPATH, ``meson install`` (into a DESTDIR here), a
``venv --system-site-packages`` with ``pip install --no-build-isolation``, and a wheel
built with Debian's setuptools + wheel and installed into a plain venv.

Every install goes into a temporary directory, from a copy of python/ (building in
place would leave build/ and *.egg-info in the source tree)."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time

import pytest

SOURCE = os.environ["SHMRING_SOURCE_ROOT"]
BUILD = os.environ["SHMRING_BUILD_ROOT"]
GUARD = 240  # seconds: hang guard only
PY = "/usr/bin/python3"

# Run by the installed package: a ring round trip, and where the package came from.
CHECK = """
import os, sys, shmring
name = "inst-%d-%d" % (os.getpid(), sys.argv[1:] and int(sys.argv[1]) or 0)
with shmring.ShmProducer(name, 4096) as p, shmring.ShmConsumer(name) as c:
    p.write(b"installed")
    assert c.read() == b"installed"
print(os.path.dirname(shmring.__file__))
"""


def source_modules() -> set:
    pkg = os.path.join(SOURCE, "python", "shmring")
    return {f for f in os.listdir(pkg) if f.endswith((".py", ".pyi")) or f == "py.typed"}


def run(cmd, env=None, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env)
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=GUARD)
    assert r.returncode == 0, f"{cmd}\n{r.stdout}\n{r.stderr}"
    return r


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra)
    return env


def copy_package(tmp_path) -> str:
    src = tmp_path / "python"
    shutil.copytree(os.path.join(SOURCE, "python"), src,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build",
                                                  "dist"))
    return str(src)


def imported_from(python: str, env: dict, cwd) -> str:
    r = run([python, "-c", CHECK, str(time.monotonic_ns() % 1000000)], env=env, cwd=cwd)
    return r.stdout.strip()


def test_pythonpath_import_from_anywhere(tmp_path):
    where = imported_from(PY, clean_env(PYTHONPATH=os.path.join(SOURCE, "python")), tmp_path)
    assert where == os.path.join(SOURCE, "python", "shmring")


def test_meson_install_into_a_destdir_installs_every_module(tmp_path):
    meson = shutil.which("meson")
    if meson is None:
        pytest.skip("meson not on PATH")
    dest = tmp_path / "root"
    run([meson, "install", "-C", BUILD, "--destdir", str(dest), "--no-rebuild", "--quiet",
         "--tags", "python-runtime"])
    inits = glob.glob(str(dest / "**" / "shmring" / "__init__.py"), recursive=True)
    assert len(inits) == 1, inits
    pkg = os.path.dirname(inits[0])
    installed = {f for f in os.listdir(pkg) if f.endswith((".py", ".pyi")) or f == "py.typed"}
    assert installed == source_modules(), (
        f"python/meson.build misses {sorted(source_modules() - installed)}")
    where = imported_from(PY, clean_env(PYTHONPATH=os.path.dirname(pkg)), tmp_path)
    assert where == pkg
    # The native wait helper is installed next to the modules (when the build made
    # it) and the installed package uses it: a consumer ring sleeps through it.
    natives = glob.glob(os.path.join(pkg, "_native*.so"))
    if os.environ.get("SHMRING_NATIVE_BUILT") != "1":
        assert natives == []
        return
    assert len(natives) == 1, natives
    r = run([PY, "-c", "import os, shmring; from shmring import _futex, _native; "
             "name = 'instn-%d' % os.getpid(); "
             "p = shmring.ShmProducer(name, 4096); c = shmring.ShmConsumer(name); "
             "assert c.read(timeout=0.01) is None and _futex.counters()[0] >= 1; "
             "print(_native.__file__, c.ring._waiter is not None); c.close(); p.close()"],
            env=clean_env(PYTHONPATH=os.path.dirname(pkg)), cwd=tmp_path)
    assert r.stdout.split() == [natives[0], "True"]


def test_venv_with_system_site_packages_installs_offline(tmp_path):
    src = copy_package(tmp_path)
    venv = tmp_path / "venv"
    run([PY, "-m", "venv", "--system-site-packages", str(venv)], env=clean_env())
    python = str(venv / "bin" / "python")
    if run([python, "-c", "import importlib.util as u; print(bool(u.find_spec('pip')))"],
           env=clean_env()).stdout.strip() != "True":
        pytest.skip("the venv has no pip (python3-venv/python3-pip not installed)")
    run([python, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index",
         src], env=clean_env(), cwd=tmp_path)
    where = imported_from(python, clean_env(), tmp_path)
    assert where.startswith(str(venv)), where


def test_a_wheel_builds_offline_and_installs_into_a_plain_venv(tmp_path):
    have = run([PY, "-c", "import importlib.util as u; "
                "print(all(u.find_spec(m) for m in ('pip', 'setuptools', 'wheel')))"],
               env=clean_env()).stdout.strip()
    if have != "True":
        pytest.skip("python3-pip, python3-setuptools and python3-wheel are needed "
                    "(scripts/deps.sh installs them)")
    src = copy_package(tmp_path)
    dist = tmp_path / "dist"
    run([PY, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--no-index",
         "-w", str(dist), src], env=clean_env(), cwd=tmp_path)
    wheels = glob.glob(str(dist / "shmring-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp_path / "plain"
    run([PY, "-m", "venv", str(venv)], env=clean_env())  # no system site packages
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "--no-index", "--no-deps", wheels[0]],
        env=clean_env(), cwd=tmp_path)
    where = imported_from(python, clean_env(), tmp_path)
    assert where.startswith(str(venv)), where


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
