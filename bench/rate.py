#!/usr/bin/env python3
"""Threads cycling the GIL as fast as they can, with and without gilstat: the cost per
GIL cycle and what reaches the CLI (issue: exact at any rate).

    python3 bench/rate.py [--gilstat build/bin/gilstat] [--baseline OTHER_GILSTAT]
                          [--python PY] [--rounds 5] [--seconds 2] [--out bench/results]

Workload: tests/e2e/workloads/cycler.py, N threads calling os.stat(".") in a loop for
--seconds (each call releases the GIL and takes it back: one cycle, three probe events).
Each round runs every variant once, alternating (plain python, gilstat, the baseline
gilstat when given), so machine noise hits all of them alike; the figures are medians
over the rounds. ns per cycle = wall time of the threads' loop / calls (per thread:
threads x seconds / total calls); overhead = median with / median without.

Writes OUT/rate.md (a Markdown table with the machine, interpreter and date) and
OUT/rate.json, and prints the table. Asserts nothing: speed is measured, not tested.
About rounds x variants x 2 workloads x (seconds + 0.3) s: 5 rounds, 2 s, 3 variants:
~70 s.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CYCLER = os.path.join(HERE, "..", "tests", "e2e", "workloads", "cycler.py")


def cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_once(prefix, python, threads, seconds):
    """(ns per cycle per thread, calls, gilstat report or None, CPU ns per cycle)."""
    cmd = list(prefix) + [python, CYCLER, "--threads", str(threads), "--seconds", str(seconds)]
    cpu0 = cpu_s()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    cpu = cpu_s() - cpu0
    truth = json.loads(p.stdout.decode().strip().splitlines()[-1])
    calls = sum(t["calls"] for t in truth["threads"])
    report = None
    if prefix:
        text = p.stderr.decode()
        start = 0 if text.startswith("{") else text.index("\n{") + 1
        report = json.JSONDecoder().raw_decode(text[start:])[0]
    return seconds * threads * 1e9 / calls, calls, report, cpu * 1e9 / calls


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def measured_meta(python):
    """When, where and with which interpreter a benchmark ran (load average at the end)."""
    py = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                        stdout=subprocess.PIPE, check=True).stdout.decode().strip()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": "%s, %d CPUs, Linux %s" % (cpu_model(), os.cpu_count(), platform.release()),
        "python": "%s (%s)" % (py, python),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def write_results(out, name, lines, meta, rows):
    """OUT/NAME.md (the table) and OUT/NAME.json, and the table on stdout."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, name + ".json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gilstat", default=os.path.join(HERE, "..", "build", "bin", "gilstat"))
    ap.add_argument("--baseline", help="another gilstat binary to compare with (e.g. main's)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()

    variants = [("without", [])]
    variants.append(("gilstat", [args.gilstat, "run", "--json", "--"]))
    if args.baseline:
        variants.append(("baseline", [args.baseline, "run", "--json", "--"]))
    rows = []
    for threads in (1, 4):
        samples = {name: [] for name, _ in variants}
        for _ in range(args.rounds):
            for name, prefix in variants:
                samples[name].append(run_once(prefix, args.python, threads, args.seconds))
        plain = statistics.median(s[0] for s in samples["without"])
        plain_cpu = statistics.median(s[3] for s in samples["without"])
        for name, _ in variants[1:]:
            ns = statistics.median(s[0] for s in samples[name])
            drops = [s[2]["drops"] for s in samples[name]]
            cycles = [s[1] for s in samples[name]]
            switch_ok = all(g["switches"] == g["switch_number_delta"]
                            for s in samples[name] for g in s[2]["gils"])
            rows.append({
                "workload": "%d thread%s cycling (os.stat)" % (threads, "s" if threads > 1 else ""),
                "variant": name,
                "ns_per_cycle_without": plain,
                "ns_per_cycle_with": ns,
                "overhead_ns": ns - plain,
                "overhead_ratio": ns / plain,
                # CPU of the program (and gilstat, when it runs it) per cycle:
                # less sensitive to a loaded machine than wall time.
                "cpu_ns_per_cycle_without": plain_cpu,
                "cpu_ns_per_cycle_with": statistics.median(s[3] for s in samples[name]),
                "cycles_median": statistics.median(cycles),
                "events_median": statistics.median(3 * c for c in cycles),
                "drops_median": statistics.median(drops),
                "drop_share_median": statistics.median(d / (3 * c) for d, c in zip(drops, cycles)),
                "switches_equal_switch_number": switch_ok,
                "totals_exact": all(s[2].get("totals_exact", False) for s in samples[name]),
            })
    meta = dict(measured_meta(args.python), rounds=args.rounds, seconds=args.seconds)
    lines = [
        "Measured %s on %s (load average %s at the end), Python %s; medians of %d "
        "alternating rounds of %.1f s (`python3 bench/rate.py`)."
        % (meta["date"], meta["machine"], " ".join("%.1f" % x for x in meta["load_average"]),
           meta["python"], args.rounds, args.seconds),
        "",
        "| workload | gilstat | ns/cycle without | ns/cycle with | overhead | CPU ns/cycle "
        "without → with (incl. gilstat) | events lost (median) | switches = switch_number "
        "| totals exact |",
        "|---|---|---:|---:|---:|---:|---:|:---:|:---:|",
    ]
    for r in rows:
        lines.append("| %s | %s | %.0f | %.0f | %+.0f ns (%+.1f %%) | %.0f → %.0f | %s of %s (%.0f %%) "
                     "| %s | %s |" % (
            r["workload"], r["variant"], r["ns_per_cycle_without"], r["ns_per_cycle_with"],
            r["overhead_ns"], 100 * (r["overhead_ratio"] - 1), r["cpu_ns_per_cycle_without"],
            r["cpu_ns_per_cycle_with"], format(int(r["drops_median"]), ","),
            format(int(r["events_median"]), ","), 100 * r["drop_share_median"],
            "yes" if r["switches_equal_switch_number"] else "NO",
            "yes" if r["totals_exact"] else "no"))
    write_results(args.out, "rate", lines, meta, rows)


if __name__ == "__main__":
    main()
