#!/usr/bin/env python3
"""Cost of a GIL release made by an extension module, with and without gilstat.

    python3 bench/module_hooks.py [--python PY] [--rounds N] [--calls N]

Each round runs the same loop of `_gilstat_demo.busy_sum(1, 1, True)` calls (one
PyEval_SaveThread + PyEval_RestoreThread each, around almost no work) in a process
without gilstat, then in one under `gilstat run`; the script prints ns per call for
both, their difference and their ratio, medians over the rounds. The difference is everything gilstat adds to
one release/re-take made by an extension: the per-module hooks (two clock reads and
two relaxed atomic adds each for SaveThread and RestoreThread) and the GIL's pthread
hooks (a release and an acquisition event), so it bounds the per-module hooks' cost
from above.
"""
import argparse
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "..", "build")

LOOP = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import _gilstat_demo
n = int(sys.argv[2])
f = _gilstat_demo.busy_sum
for _ in range(1000):
    f(1, 1, True)
t0 = time.perf_counter_ns()
for _ in range(n):
    f(1, 1, True)
t1 = time.perf_counter_ns()
print("NS", (t1 - t0) / n, flush=True)
"""


def ns_per_call(argv):
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True,
                         timeout=300).stdout.decode()
    return float([line for line in out.splitlines() if line.startswith("NS ")][-1].split()[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default="/usr/bin/python3.11")
    ap.add_argument("--gilstat", default=os.path.join(BUILD, "bin", "gilstat"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=200000)
    a = ap.parse_args()
    demo = os.path.join(os.path.dirname(a.gilstat), "..", "lib", "gilstat", "python")
    base = [a.python, "-c", LOOP, demo, str(a.calls)]
    without, with_ = [], []
    for _ in range(a.rounds):
        without.append(ns_per_call(base))
        with_.append(ns_per_call([a.gilstat, "run", "--"] + base))
    w0, w1 = statistics.median(without), statistics.median(with_)
    print("python %s, %d calls x %d rounds (medians)" % (a.python, a.calls, a.rounds))
    print("ns per extension release+re-take: without gilstat %.1f, with %.1f" % (w0, w1))
    print("added: %.1f ns per call (ratio %.3f)" % (w1 - w0, w1 / w0))


if __name__ == "__main__":
    sys.exit(main())
