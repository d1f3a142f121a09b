#!/usr/bin/env python3
"""gilstat's own CPU for the held-time profile (`record --pid --profile-rate`).

Attaches `gilstat record --pid --duration D` to 3 pure-Python threads taking turns on
the GIL, alternately with `--profile-rate 0` (no profile) and with RATE (default 200,
gilstat's default), and prints gilstat's CPU time (user + system, from the kernel's
accounting of the finished child) per second of recording: "cores" used.  The
difference between the two is what sampling the holder's stack costs gilstat; the
target is never stopped for it (the stack is read from memory).  Prints a table and
exits 0; it asserts nothing (the machines are shared and noisy).

    python3 bench/profile_cost.py [--gilstat build/bin/gilstat] [--python PY]
                                  [--rate 200] [--duration 10] [--rounds 3]
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile

TARGET = r"""
import threading
def spin():
    n = 0
    while True: n += 1
for _ in range(3):
    threading.Thread(target=spin, daemon=True).start()
print("ready", flush=True)
import sys; sys.stdin.read()
"""


def cpu_of(argv):
    """CPU seconds (user + system) of one finished child, and its exit status."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), rc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gilstat", default="build/bin/gilstat")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    target = subprocess.Popen([args.python, "-c", TARGET], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    try:
        assert target.stdout.readline().strip() == b"ready"
        cores = {0: [], args.rate: []}
        with tempfile.TemporaryDirectory() as d:
            for _ in range(args.rounds):
                for rate in (0, args.rate):
                    cpu, rc = cpu_of([args.gilstat, "record", "--pid", str(target.pid),
                                      "--duration", str(args.duration),
                                      "--profile-rate", str(rate),
                                      "-o", os.path.join(d, "r.gilstat")])
                    if rc != 0:
                        sys.exit("gilstat record exited %d" % rc)
                    cores[rate].append(cpu / args.duration)
    finally:
        target.stdin.close()
        target.kill()
        target.wait()
    print("gilstat record --pid --duration %g on 3 spinners, %d rounds, %s"
          % (args.duration, args.rounds, args.python))
    for rate, xs in cores.items():
        print("  --profile-rate %-4d: median %.4f cores  (%s)"
              % (rate, statistics.median(xs), " ".join("%.4f" % x for x in xs)))
    print("  profile's own cost : %.4f cores"
          % (statistics.median(cores[args.rate]) - statistics.median(cores[0])))


if __name__ == "__main__":
    main()
