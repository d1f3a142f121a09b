#!/usr/bin/env python3
"""`gilstat report --json` on the checked-in recording vs the checked-in JSON, and the
text report (to a pipe: names never cut) vs the checked-in text, whose HELD% column must
add up to the GIL's utilisation.

usage: check_golden.py GILSTAT GOLDEN_DIR      (regenerating: GOLDEN_DIR/README.md)
"""
import json
import math
import os
import re
import subprocess
import sys

CASES = [
    ("spin.report.json", []),
    ("spin.window.report.json",
     ["--since", "0.1", "--until", "0.4", "--thread", "spin-0", "--thread", "MainThread"]),
]


def diff(want, got, path="$"):
    """The path of the first difference, or None.  Floats within 1e-9 relative."""
    if isinstance(want, float) or isinstance(got, float):
        if isinstance(want, (int, float)) and isinstance(got, (int, float)) and \
                math.isclose(want, got, rel_tol=1e-9, abs_tol=1e-12):
            return None
        return "%s: want %r, got %r" % (path, want, got)
    if type(want) is not type(got):
        return "%s: want %r, got %r" % (path, want, got)
    if isinstance(want, dict):
        for k in want:
            if k not in got:
                return "%s.%s: missing" % (path, k)
        for k in got:
            if k not in want:
                return "%s.%s: new field (regenerate the golden file if intended)" % (path, k)
        for k in want:
            d = diff(want[k], got[k], "%s.%s" % (path, k))
            if d:
                return d
        return None
    if isinstance(want, list):
        if len(want) != len(got):
            return "%s: want %d items, got %d" % (path, len(want), len(got))
        for i, (a, b) in enumerate(zip(want, got)):
            d = diff(a, b, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    return None if want == got else "%s: want %r, got %r" % (path, want, got)


def check_text(gilstat, golden):
    """The first problem with the text report, or None."""
    p = subprocess.run([gilstat, "report", os.path.join(golden, "spin.gst")],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        return "exit %d: %s" % (p.returncode, p.stderr)
    with open(os.path.join(golden, "spin.report.txt")) as f:
        want = f.read()
    if p.stdout != want:
        for i, (a, b) in enumerate(zip(want.splitlines(), p.stdout.splitlines())):
            if a != b:
                return "line %d: want %r, got %r" % (i + 1, a, b)
        return "want %d lines, got %d" % (len(want.splitlines()), len(p.stdout.splitlines()))
    lines = want.splitlines()
    util = float(re.search(r"utilization ([\d.]+) %", want).group(1))
    start = next(i for i, line in enumerate(lines) if line.startswith("THREAD "))
    end = lines[start].index("HELD%") + len("HELD%")  # the column is right-aligned
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        rows.append(float(line[end - 7:end]))
    # Each row is rounded to 0.1, so the sum may be off by 0.05 per row.
    if abs(sum(rows) - util) > 0.05 * (len(rows) + 1):
        return "HELD%% column sums to %.1f, utilisation is %.1f" % (sum(rows), util)
    return None


def main():
    gilstat, golden = sys.argv[1], sys.argv[2]
    d = check_text(gilstat, golden)
    print("%s spin.report.txt%s" % ("FAIL" if d else "ok  ", ": " + d if d else ""))
    failed = bool(d)
    for name, args in CASES:
        p = subprocess.run([gilstat, "report", os.path.join(golden, "spin.gst"), "--json", *args],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            print("FAIL %s: exit %d: %s" % (name, p.returncode, p.stderr))
            failed = True
            continue
        with open(os.path.join(golden, name)) as f:
            want = json.load(f)
        d = diff(want, json.loads(p.stdout))
        print("%s %s%s" % ("FAIL" if d else "ok  ", name, ": " + d if d else ""))
        failed = failed or bool(d)
    if failed:
        print("see %s/README.md to regenerate after an intended change" % golden)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
