#!/usr/bin/env python3
"""Memory soak of `gilstat exporter`: is its RSS flat over a long run?

Starts --services copies of tests/e2e/workloads/exporter_service.py (two busy workers
each), one thread-per-request service (tests/e2e/workloads/thread_churn.py --rate R: a
new short thread R times a second) and one idle service, an exporter matching all of
them, waits until all are up, then scrapes /metrics every --every seconds for
--duration seconds (default one hour), sampling at each scrape the exporter's RSS
(VmRSS), its per-thread rows (gilstat_exporter_thread_rows), the scrape's round trip
and the exporter's own preparation time and CPU time.

Writes a JSON file (every sample, rewritten every minute, so a run cut short still
leaves its numbers) and prints a Markdown table: RSS at start, after the warm-up
(--warmup seconds, default 10 % of the run), at the end, the slope after the warm-up
(least squares, KiB per hour), scrape time percentiles, events and drops. Asserts
nothing: it measures. Needs ptrace rights (root).

The exporter and its probe are copied to a temporary directory first (--no-freeze to
run them in place), so a rebuild during a long run does not change what is measured.

    sudo nice python3 bench/exporter_soak.py [--duration 3600] [--every 5] \\
        [--gilstat build/bin/gilstat] [--python PY] [--services 2] [--rate 50] \\
        [--json bench/results/exporter_soak.json]
"""
import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from exporter_scrape import rss_kib, scrape  # this directory

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS = os.path.join(HERE, "..", "tests", "e2e", "workloads")


def metric(body, name, labels=""):
    m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(labels)), body, re.M)
    return float(m.group(1)) if m else None


def wait_all_up(exporter, err, targets):
    """The exporter's port, once it says `targets` targets are up."""
    port = None
    while port is None:
        time.sleep(0.1)
        m = re.search(rb":(\d+)/metrics", os.pread(err.fileno(), 4096, 0))
        port = m and int(m.group(1))
    deadline = time.monotonic() + 120
    while metric(scrape(port)[1], "gilstat_exporter_targets", '{state="up"}') != targets:
        if time.monotonic() > deadline or exporter.poll() is not None:
            sys.exit("not every target came up:\n" + os.pread(err.fileno(), 65536, 0).decode())
        time.sleep(0.5)
    return port


def percentile(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))] if v else None


def slope_per_hour(points):
    """Least-squares slope of (seconds, KiB) points, in KiB per hour."""
    if len(points) < 2:
        return None
    mx = statistics.fmean(t for t, _ in points)
    my = statistics.fmean(v for _, v in points)
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mx) * (v - my) for t, v in points) / var * 3600


def freeze(gilstat):
    """Copies the binary and its probe (../lib/gilstat) to a temporary tree."""
    root = tempfile.mkdtemp(prefix="gilstat-soak-")
    os.makedirs(os.path.join(root, "bin"))
    os.makedirs(os.path.join(root, "lib", "gilstat"))
    shutil.copy2(gilstat, os.path.join(root, "bin", "gilstat"))
    probe = os.path.join(os.path.dirname(gilstat), "..", "lib", "gilstat",
                         "libgilstat_probe.so")
    shutil.copy2(probe, os.path.join(root, "lib", "gilstat", "libgilstat_probe.so"))
    return root, os.path.join(root, "bin", "gilstat")


def summarize(samples, warmup_s, args, python_version):
    t0 = samples[0]["t"]
    after = [s for s in samples if s["t"] - t0 >= warmup_s]
    warm = after[0] if after else samples[-1]
    scrape_ms = [s["round_trip_s"] * 1e3 for s in samples]
    cpu_ms = [s["scrape_cpu_s"] * 1e3 for s in samples if s["scrape_cpu_s"] is not None]
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": "%s, %d CPUs, Linux %s" % (platform.machine(), os.cpu_count(), platform.release()),
        "python": python_version,
        "targets": args.services + 2,
        "thread_rate_per_s": args.rate,
        "scrape_every_s": args.every,
        "planned_s": args.duration,
        "ran_s": round(samples[-1]["t"] - t0, 1),
        "scrapes": len(samples),
        "rss_start_kib": samples[0]["rss_kib"],
        "rss_after_warmup_kib": warm["rss_kib"],
        "warmup_s": round(warm["t"] - t0, 1),
        "rss_end_kib": samples[-1]["rss_kib"],
        "rss_max_kib": max(s["rss_kib"] for s in samples),
        "rss_slope_kib_per_h_after_warmup":
            slope_per_hour([(s["t"], s["rss_kib"]) for s in after]),
        "thread_rows_end": samples[-1]["thread_rows"],
        "thread_rows_max": max(s["thread_rows"] or 0 for s in samples),
        "exited_groups_end": samples[-1]["exited_groups"],
        "scrape_round_trip_ms": {q: percentile(scrape_ms, p) for q, p in
                                 (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))},
        "scrape_cpu_ms": {q: percentile(cpu_ms, p) for q, p in
                          (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))},
        "events_total": samples[-1]["events"],
        "events_dropped_total": samples[-1]["drops"],
        "targets_up_end": samples[-1]["up"],
    }


def markdown(s):
    def ms(d):
        return " / ".join("%.2f" % d[k] if d[k] is not None else "-"
                          for k in ("p50", "p90", "p99", "max"))
    slope = s["rss_slope_kib_per_h_after_warmup"]
    rows = [
        ("run", "%.0f s of %.0f s planned, %d scrapes every %.0f s, %s UTC" % (
            s["ran_s"], s["planned_s"], s["scrapes"], s["scrape_every_s"], s["date_utc"])),
        ("targets", "%d (%d busy services, 1 thread-per-request at %.0f threads/s, 1 idle), "
                    "CPython %s" % (s["targets"], s["targets"] - 2, s["thread_rate_per_s"],
                                    s["python"])),
        ("RSS start / after warm-up (%.0f s) / end" % s["warmup_s"],
         "%d / %d / %d KiB (max %d)" % (s["rss_start_kib"], s["rss_after_warmup_kib"],
                                       s["rss_end_kib"], s["rss_max_kib"])),
        ("RSS slope after warm-up", "%+.0f KiB/h" % slope if slope is not None else "-"),
        ("per-thread rows at end (max)", "%s (%s); %s groups of exited threads" % (
            s["thread_rows_end"], s["thread_rows_max"], s["exited_groups_end"])),
        ("scrape round trip p50 / p90 / p99 / max", ms(s["scrape_round_trip_ms"]) + " ms"),
        ("scrape CPU p50 / p90 / p99 / max", ms(s["scrape_cpu_ms"]) + " ms"),
        ("events drained / dropped", "%.0f / %.0f" % (s["events_total"] or 0,
                                                       s["events_dropped_total"] or 0)),
    ]
    out = ["| | |", "|---|---|"]
    out += ["| %s | %s |" % r for r in rows]
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gilstat", default=os.path.join(HERE, "..", "build", "bin", "gilstat"))
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--duration", type=float, default=3600)
    parser.add_argument("--every", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds (default: 10%% of --duration)")
    parser.add_argument("--services", type=int, default=2)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--json", default=os.path.join(HERE, "results", "exporter_soak.json"))
    parser.add_argument("--no-freeze", action="store_true")
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else args.duration / 10
    gilstat, frozen = args.gilstat, None
    if not args.no_freeze:
        frozen, gilstat = freeze(args.gilstat)
    python_version = subprocess.run([args.python, "-c", "import platform; "
                                     "print(platform.python_version())"],
                                    capture_output=True, text=True).stdout.strip()
    tag = "gxsoak%d" % os.getpid()
    service = os.path.join(WORKLOADS, "exporter_service.py")
    churn = os.path.join(WORKLOADS, "thread_churn.py")
    argvs = [[args.python, service, "--tag", tag] for _ in range(args.services)]
    argvs.append([args.python, churn, "--tag", tag, "--rate", str(args.rate)])
    argvs.append([args.python, churn, "--tag", tag])  # idle
    targets = [subprocess.Popen(a, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
               for a in argvs]
    err = tempfile.TemporaryFile()
    exporter = subprocess.Popen([gilstat, "exporter", "--listen", "127.0.0.1:0", "--match", tag],
                                stderr=err)
    samples = []
    try:
        for t in targets:
            t.stdout.readline()  # "ready"
        port = wait_all_up(exporter, err, len(targets))
        start = time.monotonic()
        next_write = start + 60
        while time.monotonic() - start < args.duration:
            took, body = scrape(port)
            samples.append({
                "t": round(time.monotonic() - start, 3),
                "rss_kib": rss_kib(exporter.pid),
                "round_trip_s": took,
                "scrape_s": metric(body, "gilstat_exporter_scrape_duration_seconds"),
                "scrape_cpu_s": metric(body, "gilstat_exporter_scrape_cpu_seconds"),
                "thread_rows": metric(body, "gilstat_exporter_thread_rows", '{kind="threads"}'),
                "exited_groups": metric(body, "gilstat_exporter_thread_rows",
                                        '{kind="exited_groups"}'),
                "events": metric(body, "gilstat_exporter_events_total"),
                "drops": metric(body, "gilstat_exporter_events_dropped_total"),
                "up": metric(body, "gilstat_exporter_targets", '{state="up"}'),
                "body_bytes": len(body),
            })
            if time.monotonic() >= next_write:
                next_write += 60
                with open(args.json, "w") as f:
                    json.dump({"summary": summarize(samples, warmup, args, python_version),
                               "samples": samples}, f, indent=1)
            time.sleep(max(0.0, args.every - took))
    except KeyboardInterrupt:
        print("interrupted: the numbers below cover the run so far", file=sys.stderr)
    finally:
        exporter.terminate()
        exporter.wait(timeout=10)
        for t in targets:
            t.kill()
            t.wait()
        if frozen:
            shutil.rmtree(frozen, ignore_errors=True)
    if not samples:
        sys.exit("no sample taken")
    summary = summarize(samples, warmup, args, python_version)
    with open(args.json, "w") as f:
        json.dump({"summary": summary, "samples": samples}, f, indent=1)
    print(markdown(summary))
    print("\n(every sample: %s)" % args.json)


if __name__ == "__main__":
    main()
