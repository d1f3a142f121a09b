#!/usr/bin/env python3
"""Overhead of `gilstat run` on GIL-heavy workloads, as ratios from one run.

The machines are shared and noisy, so each workload runs alternately with
and without gilstat, several rounds, and the medians are compared.  Prints a
table and exits 0; it asserts nothing (speed is measured, not tested).

    python3 bench/overhead.py [--gilstat build/bin/gilstat] [--python PY] [--rounds 5]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

# Each workload prints nothing and runs a fixed amount of work.
WORKLOADS = {
    # Pure GIL traffic: every time.sleep(0) drops and re-takes the GIL.
    "sleep0 x4 threads": """
import threading, time
def w():
    for _ in range(50000): time.sleep(0)
ts = [threading.Thread(target=w) for _ in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
""",
    # Contended CPU-bound threads: forced switches every 5 ms.
    "spin x3 threads": """
import threading
def w():
    n = 0
    for _ in range(3000000): n += 1
ts = [threading.Thread(target=w) for _ in range(3)]
[t.start() for t in ts]; [t.join() for t in ts]
""",
    # A thread per request: thread start (named by the pthread_create hook)
    # and exit (ring recycled by the probe thread) dominate.
    "5000 short threads": """
import threading
def w():
    n = 0
    for _ in range(200): n += 1
for _ in range(5000):
    t = threading.Thread(target=w); t.start(); t.join()
""",
    # Single thread, no contention: the hooks see only uncontended takes.
    "single thread": """
n = 0
for _ in range(5000000): n += 1
""",
}


def timed(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--gilstat", default=os.path.join(here, "..", "build", "bin", "gilstat"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"python {args.python}, {args.rounds} rounds, medians; ratio = with / without gilstat")
    print(f"{'workload':<22} {'without s':>10} {'with s':>10} {'ratio':>7}")
    for name, code in WORKLOADS.items():
        plain, probed = [], []
        for _ in range(args.rounds):
            plain.append(timed([args.python, "-c", code]))
            probed.append(timed([args.gilstat, "run", "--", args.python, "-c", code]))
        a, b = statistics.median(plain), statistics.median(probed)
        print(f"{name:<22} {a:>10.3f} {b:>10.3f} {b / a:>7.3f}")


if __name__ == "__main__":
    main()
