#!/usr/bin/env python3
"""gilstat's benchmarks in one run (about 6 minutes on 2 cores): the target's slowdown,
what reaches gilstat, its own CPU, attaching, the hook path, and reading big recordings.

    python3 bench/suite.py [--gilstat build/bin/gilstat] [--python PY] [--rounds 5]
                           [--seconds 2] [--scale-events 100000000] [--out bench/results]

1. Overhead. Each workload of bench/workloads.py (pure-Python turns, one and four
   threads cycling the GIL with os.stat, a sys.setswitchinterval(1e-6) storm, a
   ThreadingHTTPServer under a 4-connection local client in its own process) runs
   --seconds without gilstat, under `gilstat run` (launched) and under
   `gilstat record --pid` (attached, measured once the probe is in), in a rotating
   order, --rounds times. Throughput = work done in the window / its length; the
   figure is the median with over the median without, from the same run (the machines
   are shared and noisy: read ratios, not absolute numbers). gilstat shares the cores
   with the program, so its own CPU is in the cost. Beside it, the CPU per unit of work:
   the program's CPU in the window (time.process_time) plus gilstat's (its threads'
   schedstat at --go and at the window's end), with over without. Time a shared VM is
   not given does not count there, so it is the steadier figure of the two.
2. Capture: from the same runs, events per second that reached gilstat, events lost,
   switches == switch_number and exact totals (which must hold whatever was lost);
   gilstat's own CPU in the window (% of a core, and per million events) and recording
   bytes per event (attached: the `record --pid` file).
3. Attach: `gilstat top --pid P --interval 0.1 --json` from its start to its first
   line, minus the interval; and the longest the target's own clock-reading thread
   went between two reads while `record --pid` attached, beside the same without.
4. The hook path (build/bin/gilstat_hook_bench, when built: `cmake --build build
   --target gilstat_hook_bench`): ns per uncontended GIL cycle, plain and hooked, one
   clock read, one ring push.
5. bench/report_scale.py --events --scale-events (0: skipped): `report` and `export`
   time and peak memory on a recording of that many events.

Writes OUT/suite.md and OUT/suite.json and prints the table. Asserts nothing.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from rate import measured_meta, write_results  # noqa: E402

WORKLOADS = os.path.join(HERE, "workloads.py")
KINDS = [("turns", "3 pure-Python threads taking turns"),
         ("cycle1", "1 thread cycling the GIL (os.stat)"),
         ("cycle4", "4 threads cycling the GIL (os.stat)"),
         ("storm", "switch-interval storm (2 threads, setswitchinterval(1e-6))"),
         ("http", "ThreadingHTTPServer, 4 keep-alive client connections")]
MODES = ["without", "run (launched)", "record --pid (attached)"]

CLIENT = r"""
import http.client, socket, sys, threading, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
counts = [0] * 4
def run(i):
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.connect()
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        c.request("GET", "/")
        c.getresponse().read()
        counts[i] += 1
ts = [threading.Thread(target=run, args=(i,)) for i in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print(sum(counts))
"""


def wait_file(path, proc, timeout=30):
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            sys.exit("the workload exited before it was ready (%s)" % proc.returncode)
        if time.monotonic() > end:
            sys.exit("the workload did not get ready within %d s" % timeout)
        time.sleep(0.005)


def probe_loaded(pid):
    try:
        with open("/proc/%d/maps" % pid) as f:
            return "libgilstat_probe" in f.read()
    except OSError:
        return False


def last_json(text):
    start = 0 if text.startswith("{") else text.index("\n{") + 1
    return json.JSONDecoder().raw_decode(text[start:])[0]


def task_cpu_s(pid):
    """CPU seconds the live threads of pid have used (each task's schedstat: ns on a CPU)."""
    total = 0
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return 0.0
    for tid in tasks:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # exited meanwhile
    return total / 1e9


def child_cpu(pid):
    """Waits for pid; its user + system CPU seconds."""
    _, _, ru = os.wait4(pid, 0)
    return ru.ru_utime + ru.ru_stime


def measure(args, kind, mode, tmp):
    """One run: {"rate": work per s, and for gilstat modes its report's figures}."""
    files = {k: os.path.join(tmp, k) for k in ("ready", "go", "out", "rec")}
    for f in files.values():
        if os.path.exists(f):
            os.unlink(f)
    cmd = [args.python, WORKLOADS, kind, "--seconds", str(args.seconds),
           "--ready", files["ready"], "--go", files["go"], "--out", files["out"]]
    row = {}
    gil = None
    if mode == "run (launched)":
        target = subprocess.Popen([args.gilstat, "run", "--json", "--"] + cmd,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    else:
        target = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    wait_file(files["ready"], target)
    if mode == "record --pid (attached)":
        gil = subprocess.Popen([args.gilstat, "record", "--pid", str(target.pid), "-o",
                                files["rec"], "--duration", str(args.seconds + 60)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while not probe_loaded(target.pid) and time.monotonic() < end:
            time.sleep(0.005)
        time.sleep(0.2)  # armed and drained once
    # gilstat's own CPU in the window: `run` is the program's parent, `record` apart.
    consumer = target.pid if mode == "run (launched)" else gil.pid if gil else None
    consumer_cpu0 = task_cpu_s(consumer) if consumer else 0.0
    open(files["go"], "w").close()
    if kind == "http":
        with open(files["ready"]) as f:
            port = f.read().strip()
        client = subprocess.run([args.python, "-c", CLIENT, port, str(args.seconds)],
                                stdout=subprocess.PIPE, check=True)
        ops, seconds = int(client.stdout), args.seconds
        consumer_cpu1 = task_cpu_s(consumer) if consumer else 0.0
        open(files["out"], "w").close()  # the server stops
        wait_file(files["out"] + ".cpu", target)
        with open(files["out"] + ".cpu") as f:
            program_cpu = json.load(f)["cpu_s"]
    else:
        wait_file(files["out"], target, timeout=args.seconds + 60)
        consumer_cpu1 = task_cpu_s(consumer) if consumer else 0.0
    stderr = target.communicate()[1] if mode == "run (launched)" else target.wait()
    if kind != "http":
        with open(files["out"]) as f:
            done = json.load(f)
        ops, seconds, program_cpu = done["ops"], done["seconds"], done["cpu_s"]
    row["rate"] = ops / seconds
    # CPU per unit of work, the program's and gilstat's: steadier than throughput on a
    # shared machine (time the VM is not given does not count).
    row["cpu_per_op"] = (program_cpu + consumer_cpu1 - consumer_cpu0) / max(ops, 1)
    row["consumer_cpu_s"] = consumer_cpu1 - consumer_cpu0
    row["seconds"] = seconds
    report = None
    if mode == "run (launched)":
        report = last_json(stderr.decode())
    elif gil:
        child_cpu(gil.pid)
        row["record_bytes"] = os.path.getsize(files["rec"])
        p = subprocess.run([args.gilstat, "report", "--json", files["rec"]],
                           stdout=subprocess.PIPE, check=True)
        report = json.loads(p.stdout.decode())
    if report:
        row["drops"] = report["drops"] + report.get("drops_no_ring", 0)
        row["switches_ok"] = all(g["switches"] == g["switch_number_delta"] for g in report["gils"])
        row["totals_exact"] = bool(report.get("totals_exact"))
        # Per cycle: a release, a wait and an acquisition; a forced hand-off and a drop
        # request one more each. What gilstat was handed, near enough for a rate.
        acq = sum(g["acquisitions"] for g in report["gils"])
        extra = sum(g["forced_switch_requests"] + g["forced_handoffs"] for g in report["gils"])
        row["events"] = 3 * acq + extra
        row["duration_s"] = report["duration_s"]
    return row


def overhead(args, tmp):
    samples = {(k, m): [] for k, _ in KINDS for m in MODES}
    for r in range(args.rounds):
        for k, _ in KINDS:
            order = MODES[r % 3:] + MODES[:r % 3]
            for m in order:
                samples[(k, m)].append(measure(args, k, m, tmp))
                print("round %d %-7s %-24s %12.0f /s" % (r + 1, k, m, samples[(k, m)][-1]["rate"]),
                      file=sys.stderr)
    rows = []
    for k, title in KINDS:
        base = statistics.median(s["rate"] for s in samples[(k, "without")])
        base_cpu = statistics.median(s["cpu_per_op"] for s in samples[(k, "without")])
        for m in MODES[1:]:
            ss = samples[(k, m)]
            rate = statistics.median(s["rate"] for s in ss)
            row = {"workload": title, "kind": k, "mode": m, "rate_without": base,
                   "rate_with": rate, "ratio": rate / base,
                   "drops_median": statistics.median(s["drops"] for s in ss),
                   "drops_max": max(s["drops"] for s in ss),
                   "events_per_s": statistics.median(s["events"] / s["duration_s"] for s in ss),
                   "cpu_per_op_without": base_cpu,
                   "cpu_per_op_with": statistics.median(s["cpu_per_op"] for s in ss),
                   # gilstat's threads in the window (schedstat), per second and per
                   # event (the window's share of the events the report counted).
                   "gilstat_cpu_share_of_a_core": statistics.median(
                       s["consumer_cpu_s"] / s["seconds"] for s in ss),
                   "gilstat_cpu_ms_per_million_events": statistics.median(
                       1e9 * s["consumer_cpu_s"] / max(s["events"] / s["duration_s"]
                                                       * s["seconds"], 1) for s in ss),
                   "switches_equal_switch_number": all(s["switches_ok"] for s in ss),
                   "totals_exact": all(s["totals_exact"] for s in ss)}
            if "record_bytes" in ss[0]:
                row["record_bytes_per_event"] = statistics.median(
                    s["record_bytes"] / max(s["events"], 1) for s in ss)
            rows.append(row)
    return rows


def attach_figures(args, tmp, runs=5):
    """Command start to first numbers (ms), and the target's longest stall (ms)."""
    first, stall_with, stall_without = [], [], []
    for i in range(runs):
        for attach in (False, True):
            files = {k: os.path.join(tmp, "a" + k) for k in ("ready", "go", "out")}
            for f in files.values():
                if os.path.exists(f):
                    os.unlink(f)
            target = subprocess.Popen([args.python, WORKLOADS, "ticker", "--seconds", "2",
                                       "--ready", files["ready"], "--go", files["go"],
                                       "--out", files["out"]])
            wait_file(files["ready"], target)
            open(files["go"], "w").close()
            time.sleep(0.5)
            if attach:
                t0 = time.monotonic()
                top = subprocess.Popen([args.gilstat, "top", "--pid", str(target.pid),
                                        "--interval", "0.1", "--duration", "0.5", "--json"],
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                top.stdout.readline()
                first.append(1000 * (time.monotonic() - t0 - 0.1))
                top.communicate()
            target.wait()
            with open(files["out"]) as f:
                gap = 1000 * json.load(f)["max_gap_s"]
            (stall_with if attach else stall_without).append(gap)
    return {"first_numbers_ms": statistics.median(first), "first_numbers_ms_max": max(first),
            "stall_ms_with": statistics.median(stall_with), "stall_ms_with_max": max(stall_with),
            "stall_ms_without": statistics.median(stall_without), "runs": runs}


def hook_figures(args):
    binary = os.path.join(os.path.dirname(args.gilstat), "gilstat_hook_bench")
    if not os.access(binary, os.X_OK):
        return None
    p = subprocess.run([binary, "--benchmark_repetitions=5", "--benchmark_format=json"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True)
    out = {}
    for b in json.loads(p.stdout.decode())["benchmarks"]:
        if b.get("aggregate_name") == "median":
            out[b["run_name"].replace("BM_", "")] = b["real_time"]
    return out


def scale_figures(args):
    if args.scale_events <= 0:
        return None
    p = subprocess.run([sys.executable, os.path.join(HERE, "report_scale.py"),
                        "--bin", os.path.dirname(args.gilstat), "--events",
                        str(args.scale_events)], stdout=subprocess.PIPE, check=True)
    return p.stdout.decode().rstrip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gilstat", default=os.path.join(HERE, "..", "build", "bin", "gilstat"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--scale-events", type=int, default=100_000_000)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    args.gilstat = os.path.abspath(args.gilstat)
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        rows = overhead(args, tmp)
        attach = attach_figures(args, tmp)
    hooks = hook_figures(args)
    scale = scale_figures(args)
    meta = dict(measured_meta(args.python), rounds=args.rounds, seconds=args.seconds,
                wall_s=round(time.monotonic() - start))
    lines = [
        "Measured %s on %s (load average %s at the end), Python %s; medians of %d rounds "
        "of %.0f s per workload and mode, in rotating order (`python3 bench/suite.py`, %d s)."
        % (meta["date"], meta["machine"], " ".join("%.1f" % x for x in meta["load_average"]),
           meta["python"], args.rounds, args.seconds, meta["wall_s"]),
        "",
        "| workload | gilstat | work/s without | work/s with | kept | CPU per unit of work "
        "(program + gilstat) | events/s to gilstat "
        "| events lost (median, max) | gilstat CPU in the window: % of a core, ms per M events "
        "| record bytes/event "
        "| switches = switch_number | totals exact |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|:---:|",
    ]
    for r in rows:
        cpu = r.get("gilstat_cpu_ms_per_million_events")
        share = r.get("gilstat_cpu_share_of_a_core")
        size = r.get("record_bytes_per_event")
        lines.append("| %s | %s | %s | %s | %.1f %% | %+.1f %% | %s | %s, %s | %s | %s | %s | %s |" % (
            r["workload"], r["mode"], format(int(r["rate_without"]), ","),
            format(int(r["rate_with"]), ","), 100 * r["ratio"],
            100 * (r["cpu_per_op_with"] / r["cpu_per_op_without"] - 1),
            format(int(r["events_per_s"]), ","),
            format(int(r["drops_median"]), ","), format(int(r["drops_max"]), ","),
            "%.1f %%, %.0f" % (100 * share, cpu) if cpu is not None else "–", "%.2f" % size if size is not None else "–",
            "yes" if r["switches_equal_switch_number"] else "NO",
            "yes" if r["totals_exact"] else "no"))
    lines += ["", "Attach (%d runs, a 1-thread target reading its clock in a loop): "
              "`top --pid` start to its first numbers %.0f ms (median; max %.0f), interval "
              "excluded; the target's longest stall %.1f ms while attached (max %.1f) vs "
              "%.1f ms without." % (attach["runs"], attach["first_numbers_ms"],
                                   attach["first_numbers_ms_max"], attach["stall_ms_with"],
                                   attach["stall_ms_with_max"], attach["stall_ms_without"])]
    if hooks:
        lines += ["", "Hook path (`gilstat_hook_bench`, medians of 5): one uncontended GIL "
                  "cycle %.1f ns plain, %.1f ns hooked: **%.1f ns of hooks per cycle**; one "
                  "clock read %.1f ns (two per uncontended cycle), one ring push %.1f ns."
                  % (hooks.get("CyclePlain", 0), hooks.get("CycleHooked", 0),
                     hooks.get("CycleHooked", 0) - hooks.get("CyclePlain", 0),
                     hooks.get("ClockRead", 0), hooks.get("RingPush", 0))]
    if scale:
        lines += ["", "Reading recordings (`bench/report_scale.py --events %d`):" % args.scale_events,
                  "", "```", scale, "```"]
    write_results(args.out, "suite", lines, meta,
                  {"overhead": rows, "attach": attach, "hooks": hooks, "report_scale": scale})


if __name__ == "__main__":
    main()
