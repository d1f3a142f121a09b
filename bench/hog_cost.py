#!/usr/bin/env python3
"""The target's extra cost of long-hold stacks (`record --pid --hog-threshold`).

Pure-Python threads taking turns on the GIL (3 spinners, forced switches every 5 ms)
are attached with `gilstat record --pid` twice per round: once with
`--hog-threshold off`, once with the default (10 ms); the spinners' wall time for a
fixed amount of work is compared (medians over the rounds, ratio from the same run).
Holds of a spinner last about one switch interval, so with the default threshold
only the holds the machine stretched past 10 ms get a stack (the holder stopped
briefly); the ratio says what that costs.  Prints a table and exits 0; it asserts
nothing (the machines are shared and noisy).

    python3 bench/hog_cost.py [--gilstat build/bin/gilstat] [--python PY] [--rounds 5]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

TARGET = r"""
import sys, threading, time
def mapped():
    with open("/proc/self/maps") as f:
        return "libgilstat_probe" in f.read()
print("ready", flush=True)
deadline = time.monotonic() + 30
while not mapped() and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.3)
def w():
    n = 0
    for _ in range(ITER): n += 1
ts = [threading.Thread(target=w) for _ in range(3)]
t0 = time.monotonic()
[t.start() for t in ts]; [t.join() for t in ts]
print("%.6f" % (time.monotonic() - t0), flush=True)
sys.stdin.read()
"""


def one(gilstat, python, threshold, iterations):
    """Wall time of the spinners while recorded with `threshold`; the number of
    long-hold stacks gilstat took and how long it kept holders stopped (ms)."""
    with tempfile.TemporaryDirectory() as d:
        target = subprocess.Popen([python, "-c", TARGET.replace("ITER", str(iterations))],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert target.stdout.readline().strip() == b"ready"
        rec = subprocess.Popen([gilstat, "record", "--pid", str(target.pid), "-o",
                                os.path.join(d, "r.gilstat"), "--profile-rate", "0",
                                "--hog-threshold", threshold],
                               stderr=subprocess.PIPE)
        wall = float(target.stdout.readline())
        rec.send_signal(2)
        err = rec.communicate(timeout=60)[1].decode()
        target.stdin.close()
        target.wait(timeout=30)
        stacks, stopped_ms = 0, 0.0
        for line in err.splitlines():
            if "long-hold stack" in line:
                stacks = int(line.split()[1])
                m = re.search(r"holders stopped ([0-9.]+) ms in all", line)
                stopped_ms = float(m.group(1)) if m else 0.0
        return wall, stacks, stopped_ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gilstat", default="build/bin/gilstat")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=3000000)
    args = ap.parse_args()
    off, on, taken, share = [], [], [], []
    for _ in range(args.rounds):
        off.append(one(args.gilstat, args.python, "off", args.iterations)[0])
        wall, stacks, stopped_ms = one(args.gilstat, args.python, "10", args.iterations)
        on.append(wall)
        taken.append(stacks)
        share.append(stopped_ms / 1e3 / wall)
    a, b = statistics.median(off), statistics.median(on)
    print("spin x3 threads, %d rounds, %s" % (args.rounds, args.python))
    print("  --hog-threshold off : median %.3f s  %s" % (a, " ".join("%.3f" % x for x in off)))
    print("  --hog-threshold 10  : median %.3f s  %s  (stacks taken per run: %s)"
          % (b, " ".join("%.3f" % x for x in on), " ".join(map(str, taken))))
    print("  ratio default/off   : %.3f" % (b / a))
    # The recording lasts a little longer than the spinners' work, so this share is
    # an upper bound of the stops that fell inside it.
    print("  holders stopped     : %.2f %% of the work's wall time at most (median; per run: %s)"
          % (100 * statistics.median(share), " ".join("%.2f" % (100 * x) for x in share)))


if __name__ == "__main__":
    main()
