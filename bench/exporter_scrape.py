#!/usr/bin/env python3
"""Scrape time of `gilstat exporter` with N targets (the issue's bound: 5 ms for 10),
and the exporter's memory over the run.

Starts N copies of tests/e2e/workloads/exporter_service.py, an exporter matching them,
waits until all are up, then scrapes /metrics every --every seconds for --seconds.
Prints the exporter's own gilstat_exporter_scrape_duration_seconds (wall time to prepare
a scrape) and _scrape_cpu_seconds (its CPU time: a loaded host stretches the wall time),
and the client's round trip, as median / p90 / max, the body size, and the
exporter's RSS at the first and last scrape. Asserts nothing (speed is measured, not
tested); needs ptrace rights (root).

    sudo python3 bench/exporter_scrape.py [--gilstat build/bin/gilstat] [--python PY] [--targets 10]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SERVICE = os.path.join(HERE, "..", "tests", "e2e", "workloads", "exporter_service.py")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def scrape(port):
    t0 = time.perf_counter()
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        body = r.read().decode()
    return time.perf_counter() - t0, body


def summary(values, unit=1e3):
    v = sorted(values)
    return "median %.2f ms  p90 %.2f ms  max %.2f ms" % (
        statistics.median(v) * unit, v[int(0.9 * (len(v) - 1))] * unit, v[-1] * unit)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gilstat", default=os.path.join(HERE, "..", "build", "bin", "gilstat"))
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--targets", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--every", type=float, default=0.25)
    args = parser.parse_args()
    tag = "gxbench%d" % os.getpid()
    services = [subprocess.Popen([args.python, SERVICE, "--tag", tag], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE) for _ in range(args.targets)]
    err = tempfile.TemporaryFile()
    exporter = subprocess.Popen([args.gilstat, "exporter", "--listen", "127.0.0.1:0", "--match",
                                 tag], stderr=err)
    try:
        for s in services:
            s.stdout.readline()  # "ready"
        port = None
        while port is None:
            time.sleep(0.1)
            m = re.search(rb":(\d+)/metrics", os.pread(err.fileno(), 4096, 0))
            port = m and int(m.group(1))
        want = 'gilstat_exporter_targets{state="up"} %d' % args.targets
        deadline = time.monotonic() + 120
        while want not in scrape(port)[1]:
            if time.monotonic() > deadline:
                sys.exit("not every target came up:\n" + os.pread(err.fileno(), 65536, 0).decode())
            time.sleep(0.5)
        prepared, cpu, round_trip, sizes, rss = [], [], [], [], [rss_kib(exporter.pid)]
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            took, body = scrape(port)
            round_trip.append(took)
            sizes.append(len(body))
            m = re.search(r"^gilstat_exporter_scrape_duration_seconds (\S+)$", body, re.M)
            prepared.append(float(m.group(1)))
            m = re.search(r"^gilstat_exporter_scrape_cpu_seconds (\S+)$", body, re.M)
            cpu.append(float(m.group(1)))
            time.sleep(args.every)
        rss.append(rss_kib(exporter.pid))
        print("%d targets, %d scrapes over %.0f s" % (args.targets, len(round_trip), args.seconds))
        print("prepare (exporter's own): " + summary(prepared[1:]))
        print("prepare, CPU time:        " + summary(cpu[1:]))
        print("round trip (client):      " + summary(round_trip))
        print("body: %.0f KiB; exporter RSS %d -> %d KiB" % (
            statistics.median(sizes) / 1024, rss[0], rss[-1]))
    finally:
        exporter.terminate()
        exporter.wait(timeout=10)
        for s in services:
            s.kill()
            s.wait()


if __name__ == "__main__":
    main()
