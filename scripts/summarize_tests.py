#!/usr/bin/python3
"""Prints the closing line of scripts/test.sh: "N passed, N failed, N skipped".

Counts individual test cases, not meson tests: GoogleTest cases come from meson's JUnit log
(meson parses gtest output), pytest cases from the JUnit files the pytest suites write under
<builddir>/meson-logs/pytest/ (each such suite replaces its single meson entry). A meson test
that failed without any case failing (a crash, a timeout) counts as one failure.
Usage: summarize_tests.py BUILDDIR
"""
import glob
import os
import sys
import re
import xml.etree.ElementTree as ET


def count_cases(root):
    passed = failed = skipped = 0
    for case in root.iter('testcase'):
        if case.find('failure') is not None or case.find('error') is not None:
            failed += 1
        elif case.find('skipped') is not None or case.get('result') == 'skipped':
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def main(builddir):
    logs = os.path.join(builddir, 'meson-logs')
    meson_xml = os.path.join(logs, 'testlog.junit.xml')
    if not os.path.exists(meson_xml):
        print('0 passed, 1 failed')
        return 1
    # meson copies test output verbatim into its JUnit file, control characters
    # included (GStreamer's coloured debug log): not XML 1.0, so drop them first.
    with open(meson_xml, encoding="utf-8", errors="replace") as f:
        text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", "", f.read())
    root = ET.fromstring(text)
    pytest_files = {os.path.splitext(os.path.basename(p))[0]: p
                    for p in glob.glob(os.path.join(logs, 'pytest', '*.xml'))}
    passed = failed = skipped = 0
    for suite in root.iter('testsuite'):
        for case in suite.findall('testcase'):
            name = case.get('name', '')
            short = name.split(' / ')[-1]
            if case.get('status') == 'notrun':
                continue  # a DISABLED_ gtest case (a helper run only by its own test)
            bad = case.find('failure') is not None or case.find('error') is not None
            if short in pytest_files:
                p, f, s = count_cases(ET.parse(pytest_files[short]).getroot())
                if bad and f == 0:
                    f = 1
                elif not bad and p + f + s == 0:
                    p = 1
            elif bad:
                p, f, s = 0, 1, 0
            elif case.find('skipped') is not None:
                p, f, s = 0, 0, 1
            else:
                p, f, s = 1, 0, 0
            passed, failed, skipped = passed + p, failed + f, skipped + s
    print('%d passed, %d failed, %d skipped' % (passed, failed, skipped))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
