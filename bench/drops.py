#!/usr/bin/env python3
"""Events lost at the highest GIL rates: threads cycling the GIL as fast as they can,
watched for a minute by each of gilstat's live consumers, launched and attached.

    python3 bench/drops.py [--gilstat build/bin/gilstat] [--python PY]
                           [--seconds 60] [--threads 1,4] [--out bench/results]

Workload: tests/e2e/workloads/cycler.py (N threads calling os.stat(".") in a loop: one
GIL release and re-take per call). Consumers: `run --json -- PROGRAM`, `record -o F --
PROGRAM`, `record --pid P --duration S`, `top --pid P --duration S --json`, in that
order, for each thread count: 8 runs of --seconds each (about 9 minutes by default).
Each row gives the events the probe wrote and the ones lost (ring full), and whether
the exact figures held (switches == switch_number, totals exact): they must whatever
was lost. Writes OUT/drops.md and OUT/drops.json and prints the table. Asserts
nothing: a loaded machine loses more, which is measured, not tested.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from rate import CYCLER, measured_meta, write_results  # noqa: E402


def last_json(text):
    """The first JSON object of text that starts a line (gilstat's report)."""
    start = 0 if text.startswith("{") else text.index("\n{") + 1
    return json.JSONDecoder().raw_decode(text[start:])[0]


def cycler(python, threads, seconds):
    return [python, CYCLER, "--threads", str(threads), "--seconds", str(seconds)]


def start_target(python, threads, seconds):
    """A cycler that runs `seconds` once it has started (and a little more)."""
    p = subprocess.Popen(cycler(python, threads, seconds + 3), stdout=subprocess.DEVNULL)
    time.sleep(0.5)  # its threads are cycling
    return p


def one(gilstat, python, mode, threads, seconds, tmp):
    """gilstat's report (dict) after watching `seconds` of the cycler in `mode`."""
    rec = os.path.join(tmp, "r.gilstat")
    if mode == "run (launched)":
        p = subprocess.run([gilstat, "run", "--json", "--"] + cycler(python, threads, seconds),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
        return last_json(p.stderr.decode())
    if mode == "record (launched)":
        subprocess.run([gilstat, "record", "-o", rec, "--"] + cycler(python, threads, seconds),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    else:
        target = start_target(python, threads, seconds)
        try:
            if mode == "record --pid":
                subprocess.run([gilstat, "record", "--pid", str(target.pid), "--duration",
                                str(seconds), "-o", rec], stderr=subprocess.DEVNULL, check=True)
            else:
                p = subprocess.run([gilstat, "top", "--pid", str(target.pid), "--duration",
                                    str(seconds), "--interval", "5", "--json"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True)
                return json.loads(p.stdout.decode().strip().splitlines()[-1])["since_attach"]
        finally:
            target.kill()
            target.wait()
    p = subprocess.run([gilstat, "report", "--json", rec], stdout=subprocess.PIPE, check=True)
    return json.loads(p.stdout.decode())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gilstat", default=os.path.join(HERE, "..", "build", "bin", "gilstat"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--threads", default="1,4")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()

    rows = []
    modes = ("run (launched)", "record (launched)", "record --pid", "top --pid")
    with tempfile.TemporaryDirectory() as tmp:
        for threads in (int(x) for x in args.threads.split(",")):
            for mode in modes:
                r = one(args.gilstat, args.python, mode, threads, args.seconds, tmp)
                acquisitions = sum(g["acquisitions"] for g in r["gils"])
                lost = r["drops"] + r["drops_no_ring"]
                row = {
                    "threads": threads,
                    "mode": mode,
                    "seconds": r["duration_s"],
                    "acquisitions": acquisitions,
                    "acquisitions_per_s": acquisitions / r["duration_s"],
                    "events_lost": lost,
                    "switches_equal_switch_number": all(
                        g["switches"] == g["switch_number_delta"] for g in r["gils"]),
                    "totals_exact": r["totals_exact"],
                }
                rows.append(row)
                print("%d thread(s), %-18s %8.0f GIL cycles/s, %d events lost" % (
                    threads, mode, row["acquisitions_per_s"], lost), flush=True)
    meta = dict(measured_meta(args.python), seconds=args.seconds)
    lines = [
        "Measured %s on %s (load average %s at the end), Python %s; each row one run of "
        "%.0f s (`python3 bench/drops.py`)."
        % (meta["date"], meta["machine"], " ".join("%.1f" % x for x in meta["load_average"]),
           meta["python"], args.seconds),
        "",
        "| threads cycling (os.stat) | gilstat | GIL cycles/s | events lost | switches = "
        "switch_number | totals exact |",
        "|---:|---|---:|---:|:---:|:---:|",
    ]
    for r in rows:
        lines.append("| %d | `%s` | %s | %s | %s | %s |" % (
            r["threads"], r["mode"], format(int(r["acquisitions_per_s"]), ","),
            format(r["events_lost"], ","), "yes" if r["switches_equal_switch_number"] else "NO",
            "yes" if r["totals_exact"] else "no"))
    write_results(args.out, "drops", lines, meta, rows)


if __name__ == "__main__":
    main()
