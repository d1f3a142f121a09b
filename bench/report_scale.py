#!/usr/bin/env python3
"""How `gilstat report` and `export` scale with the number of events.

Writes synthetic recordings (build/bin/gilstat_gen_recording: threads taking
turns on one GIL, TSC clock) of a small and a large number of events, then
times each command on both and reads its peak RSS.  The goal: memory grows
with threads, not events, and a 100 M-event file reports in seconds.  Prints
a table; asserts nothing (the machines are shared: read the ratios).

    python3 bench/report_scale.py [--bin build/bin] [--events 100000000] [--threads 8]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time


TIME = "/usr/bin/time"  # GNU time (Debian package `time`): the child's own peak RSS


def measure(argv):
    """(wall seconds, peak RSS KiB or None) of one run; its output is discarded.

    Not os.wait4's rusage: a child forked from this Python inherits its RSS
    high-water mark across exec, so every command would read ~14 MiB."""
    have_time = os.access(TIME, os.X_OK)
    full = [TIME, "-f", "%M", "--"] + argv if have_time else argv
    start = time.monotonic()
    proc = subprocess.run(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit("%s exited %d: %s" % (" ".join(argv), proc.returncode, proc.stderr[-500:]))
    rss = int(proc.stderr.strip().splitlines()[-1]) if have_time else None
    return wall, rss


def mib(kib):
    return "%9.1f MiB" % (kib / 1024) if kib is not None else "%13s" % "n/a"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "build", "bin"))
    ap.add_argument("--events", type=int, default=100_000_000)
    ap.add_argument("--small", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()
    gilstat = os.path.join(args.bin, "gilstat")
    gen = os.path.join(args.bin, "gilstat_gen_recording")
    for tool in (gilstat, gen):
        if not os.access(tool, os.X_OK):
            sys.exit("%s not found: build first (cmake --build build)" % tool)
    commands = [("report", []), ("report --json", ["--json"]),
                ("export chrome", ["--format", "chrome", "-o", os.devnull]),
                ("export prometheus", ["--format", "prometheus"])]
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for n in (args.small, args.events):
            path = os.path.join(tmp, "%d.gst" % n)
            start = time.monotonic()
            subprocess.run([gen, path, str(n), str(args.threads), "1", "--tsc"], check=True,
                           stderr=subprocess.DEVNULL)
            size = os.path.getsize(path)
            print("%12d events: %.1f MiB (%.2f bytes/event), written in %.1f s"
                  % (n, size / 2**20, size / n, time.monotonic() - start))
            files[n] = path
        print("\n%-18s %14s %14s %12s %12s" % ("command", "small wall s", "large wall s",
                                             "small RSS", "large RSS"))
        for name, extra in commands:
            sub = name.split()[0]
            small = measure([gilstat, sub, files[args.small]] + extra)
            large = measure([gilstat, sub, files[args.events]] + extra)
            print("%-18s %14.2f %14.2f %s %s" % (name, small[0], large[0], mib(small[1]),
                                                 mib(large[1])))


if __name__ == "__main__":
    main()
