#!/usr/bin/env python3
"""CPU time `gilstat exporter` spends watching idle targets (its drain loop alone).

Starts --targets idle CPython processes (tests/e2e/workloads/thread_churn.py, its main
thread blocked reading stdin), an exporter matching them, waits until all are up, then
reads the exporter's CPU time (utime + stime of /proc/PID/stat) over --seconds without
scraping. With --baseline OTHER_GILSTAT the same is done with another build, in
alternating rounds, and the medians are compared. Asserts nothing; needs ptrace rights.

    sudo nice python3 bench/exporter_idle.py [--gilstat build/bin/gilstat] \\
        [--baseline OTHER/bin/gilstat] [--targets 10] [--seconds 20] [--rounds 3]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from exporter_soak import wait_all_up  # this directory

HERE = os.path.dirname(os.path.abspath(__file__))
IDLE = os.path.join(HERE, "..", "tests", "e2e", "workloads", "thread_churn.py")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def one_round(gilstat, python, targets, seconds):
    tag = "gxidle%d" % os.getpid()
    procs = [subprocess.Popen([python, IDLE, "--tag", tag], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE) for _ in range(targets)]
    err = tempfile.TemporaryFile()
    exporter = subprocess.Popen([gilstat, "exporter", "--listen", "127.0.0.1:0", "--match", tag],
                                stderr=err)
    try:
        for p in procs:
            p.stdout.readline()  # "ready"
        wait_all_up(exporter, err, targets)
        time.sleep(2)  # the attaches' own work done
        c0, t0 = cpu_s(exporter.pid), time.monotonic()
        time.sleep(seconds)
        return (cpu_s(exporter.pid) - c0) / (time.monotonic() - t0)
    finally:
        exporter.terminate()
        exporter.wait(timeout=10)
        for p in procs:
            p.kill()
            p.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gilstat", default=os.path.join(HERE, "..", "build", "bin", "gilstat"))
    parser.add_argument("--baseline")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--targets", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    builds = [("gilstat", args.gilstat)] + ([("baseline", args.baseline)] if args.baseline else [])
    shares = {name: [] for name, _ in builds}
    for _ in range(args.rounds):
        for name, path in builds:
            shares[name].append(one_round(path, args.python, args.targets, args.seconds))
    for name, path in builds:
        print("%-8s %s: exporter CPU with %d idle targets: median %.1f ms/s (rounds: %s)" % (
            name, path, args.targets, statistics.median(shares[name]) * 1e3,
            ", ".join("%.1f" % (v * 1e3) for v in shares[name])))


if __name__ == "__main__":
    main()
