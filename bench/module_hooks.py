#!/usr/bin/env python3
"""Cost of a GIL release made by an extension module, with and without gilstat.

    python3 bench/module_hooks.py [--python PY] [--rounds N] [--calls N]

Each round runs the same loop of `_gilstat_demo.busy_sum(1, 1, True)` calls (one
PyEval_SaveThread + PyEval_RestoreThread each, around almost no work) in three
processes: without gilstat, under `gilstat run` with the per-module hooks left out
(GILSTAT_NO_MODULE_HOOKS=1: only the GIL's pthread hooks), and under `gilstat run`
with them. Medians over the rounds; the per-module hooks' cost per hooked call is
(with - without module hooks) / 2, since each busy_sum makes two hooked calls.
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


def ns_per_call(argv, env=None):
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True,
                         timeout=300, env=dict(os.environ, **(env or {}))).stdout.decode()
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
    without, no_modules, with_ = [], [], []
    run = [a.gilstat, "run", "--"] + base
    for _ in range(a.rounds):
        without.append(ns_per_call(base))
        no_modules.append(ns_per_call(run, {"GILSTAT_NO_MODULE_HOOKS": "1"}))
        with_.append(ns_per_call(run))
    w0, wn, w1 = (statistics.median(x) for x in (without, no_modules, with_))
    print("python %s, %d calls x %d rounds (medians)" % (a.python, a.calls, a.rounds))
    print("ns per busy_sum(release): without gilstat %.1f, gilstat without module hooks %.1f, "
          "with them %.1f" % (w0, wn, w1))
    print("per-module hooks: %.1f ns per hooked call (2 per busy_sum); ratio with/without "
          "module hooks %.3f" % ((w1 - wn) / 2, w1 / wn))


if __name__ == "__main__":
    sys.exit(main())
