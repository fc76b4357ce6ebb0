#!/usr/bin/python3
"""Runs one pytest suite for meson: run_pytest.py SUITE_NAME TEST_FILE...

Writes the JUnit file scripts/summarize_tests.py reads
(<build root>/meson-logs/pytest/SUITE_NAME.xml) and maps pytest's exit code 5
("no tests collected") to meson's 77 ("skipped").
"""
import os
import subprocess
import sys


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    suite, files = sys.argv[1], sys.argv[2:]
    here = os.path.dirname(os.path.abspath(__file__))
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
            "--rootdir", here]
    build_root = os.environ.get("SHMRING_BUILD_ROOT")
    if build_root:
        junit_dir = os.path.join(build_root, "meson-logs", "pytest")
        os.makedirs(junit_dir, exist_ok=True)
        args.append("--junitxml=" + os.path.join(junit_dir, suite + ".xml"))
    args += [os.path.join(here, f) for f in files]
    rc = subprocess.call(args)
    return 77 if rc == 5 else rc


if __name__ == "__main__":
    sys.exit(main())
