#!/usr/bin/env python3
"""The real gilstat binary on recordings with known shape (no CPython, no ptrace).

usage: check_exports.py GILSTAT GEN_RECORDING WORKDIR [RECORDING...]

GEN_RECORDING (tests/unit/gen_recording.cpp) writes synthetic recordings; the
RECORDINGs given (the golden one) are checked too.  For each:
  - `export --format chrome` is valid JSON (python's parser), every slice is
    well formed, and per thread the "holding"/"waiting" slices add up to the
    held/wait totals of `report --json`;
  - `export --format prometheus` passes a line-by-line check of the text
    exposition format;
and the file-level promises: cut at many offsets, the report still works and
says "truncated"; a damaged chunk is skipped and counted; a newer format
version is refused with exit 1; --thread and --since/--until narrow the report;
report and export use no more memory for 2 M events than for 100 k.
Exits 1 on the first failure, with what differed.
"""
import json
import math
import os
import struct
import subprocess
import sys

from exposition import parse_exposition

GILSTAT, GEN, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
EXTRA = sys.argv[4:]


def run(*args, check=True):
    p = subprocess.run([GILSTAT, *args], capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError("gilstat %s exited %d\nstdout: %s\nstderr: %s"
                             % (" ".join(args), p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
    return p


def report(path, *extra):
    return json.loads(run("report", path, "--json", *extra).stdout)


def gen(name, events, *extra):
    path = os.path.join(WORK, name)
    subprocess.run([GEN, path, str(events), *extra], check=True, capture_output=True)
    return path


# ---------------------------------------------------------------- chrome

def check_chrome(path):
    out = os.path.join(WORK, os.path.basename(path) + ".trace.json")
    run("export", path, "--format", "chrome", "-o", out)
    with open(out) as f:
        doc = json.load(f)  # the whole point: a real JSON parser accepts it
    assert isinstance(doc["traceEvents"], list), path
    assert doc["displayTimeUnit"] == "ns"
    rep = report(path)
    totals, counts, names = {}, {}, {}
    for ev in doc["traceEvents"]:
        assert ev["ph"] in ("M", "X", "i", "C"), ev
        assert isinstance(ev["pid"], int)
        if ev["ph"] == "M" and ev["name"] == "thread_name":
            names[ev["tid"]] = ev["args"]["name"]
        if ev["ph"] == "X":
            assert ev["name"] in ("holding", "waiting"), ev
            assert ev["dur"] >= 0 and math.isfinite(ev["ts"]), ev
            key = (ev["tid"], ev["name"], ev["args"]["gil"])
            totals[key] = totals.get(key, 0.0) + ev["dur"]
            counts[key] = counts.get(key, 0) + 1
        if ev["ph"] == "C":
            assert all(isinstance(v, (int, float)) for v in ev["args"].values()), ev
    for t in rep["threads"]:
        for name, field, stats in (("holding", "held_s", "hold_ns"), ("waiting", "wait_s", "wait_ns")):
            key = (t["tid"], name, t["gil"])
            got_s = totals.get(key, 0.0) / 1e6
            n = counts.get(key, 0)
            # Each slice is printed to the ns; the report sums before rounding.
            tol = (0.5 * n + 1) * 1e-9 + 1e-9 * t[field]
            assert abs(got_s - t[field]) <= tol, (
                "%s: thread %s %s: slices add up to %.9f s, report says %.9f s (%d slices)"
                % (path, t["tid"], name, got_s, t[field], n))
            assert n == t[stats]["count"], (path, t["tid"], name, n, t[stats]["count"])
        assert names.get(t["tid"]) == t["name"], (names.get(t["tid"]), t["name"])
    return doc


# ---------------------------------------------------------------- prometheus

def check_prometheus_text(text):
    """Checks text exposition format 0.0.4 line by line (tests/unit/exposition.py)."""
    samples, types = parse_exposition(text)
    return types, samples


def check_prometheus(path):
    out = os.path.join(WORK, os.path.basename(path) + ".prom")
    run("export", path, "--format", "prometheus", "-o", out)
    with open(out, encoding="utf-8") as f:
        types, samples = check_prometheus_text(f.read())
    rep = report(path)

    def sample(name, **labels):
        """The one sample of `name` with these labels (and the command label)."""
        found = [v for (n, ls), v in samples.items()
                 if n == name and {k: v for k, v in ls if k != "command"} == labels]
        assert len(found) == 1, (name, labels, found)
        return found[0]

    for g in rep["gils"]:
        labels = {"gil": str(g["id"]), "pid": str(rep["pid"])}
        assert sample("gilstat_gil_acquisitions_total", **labels) == g["acquisitions"], labels
        assert sample("gilstat_gil_hold_duration_seconds_count", **labels) == \
            g["hold_ns"]["count"], labels
        assert sample("gilstat_gil_held_seconds_total", **labels) == \
            g["hold_ns"]["total"] / 1e9, labels
    for required in ("gilstat_gil_utilization_ratio", "gilstat_thread_held_seconds_total",
                     "gilstat_gil_wait_duration_seconds"):
        assert required in types, required
    return samples


# ---------------------------------------------------------------- file damage

def header_end(data):
    (header_len,) = struct.unpack_from("<I", data, 12)
    return 16 + header_len + 4


def check_truncations(path):
    data = open(path, "rb").read()
    full = report(path)
    start = header_end(data)
    cuts = sorted({start, start + 1, start + 24, len(data) // 3, len(data) // 2,
                   len(data) - 25, len(data) - 1} | set(range(start, len(data), max(1, len(data) // 23))))
    for cut in cuts:
        cut_path = os.path.join(WORK, "cut.gst")
        with open(cut_path, "wb") as f:
            f.write(data[:cut])
        p = run("report", cut_path, "--json")
        rep = json.loads(p.stdout)
        assert rep["recording"]["truncated"] is True, cut
        assert "truncated" in p.stderr, (cut, p.stderr)
        acq = sum(g["acquisitions"] for g in rep["gils"])
        assert acq <= sum(g["acquisitions"] for g in full["gils"]), cut
        assert any(f["id"] == "truncated" for f in rep["findings"]), cut
        text = run("report", cut_path).stdout
        assert "cut off" in text, (cut, text[:500])
        check_chrome(cut_path)
        check_prometheus_text(run("export", cut_path, "--format", "prometheus").stdout)


def check_damage(path):
    data = bytearray(open(path, "rb").read())
    mid = len(data) // 2
    data[mid] ^= 0x55
    bad = os.path.join(WORK, "damaged.gst")
    open(bad, "wb").write(bytes(data))
    p = run("report", bad, "--json")
    rep = json.loads(p.stdout)
    assert rep["recording"]["corrupt_chunks"] >= 1, rep["recording"]
    assert rep["recording"]["problems"], rep["recording"]
    assert "warning" in p.stderr, p.stderr
    check_chrome(bad)


def check_newer_version(path):
    data = bytearray(open(path, "rb").read())
    struct.pack_into("<I", data, 8, 99)
    newer = os.path.join(WORK, "newer.gst")
    open(newer, "wb").write(bytes(data))
    for args in (["report", newer], ["export", newer, "--format", "chrome"]):
        p = run(*args, check=False)
        assert p.returncode == 1, (args, p.returncode, p.stderr)
        assert "newer" in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert p.stdout == "", p.stdout[:200]
    p = run("report", os.path.join(WORK, "missing.gst"), check=False)
    assert p.returncode == 1 and "cannot open" in p.stderr, p.stderr


def check_filters(path):
    full = report(path)
    t = full["threads"][0]
    for key in (str(t["tid"]), t["name"]):
        rep = report(path, "--thread", key)
        assert [x["tid"] for x in rep["threads"]] == [t["tid"]], (key, rep["threads"])
        assert rep["gils"] == full["gils"]
    p = run("report", path, "--thread", "no-such-thread", check=False)
    assert p.returncode == 2 and "no thread matches" in p.stderr, p.stderr
    d = full["duration_s"]
    a = report(path, "--until", str(d / 2))
    b = report(path, "--since", str(d / 2))
    assert a["window"]["partial"] and b["window"]["partial"]
    for part in (a, b):
        for g in part["gils"]:
            assert g["switch_number_known"] is False
            assert g["hold_ns"]["total"] <= part["duration_s"] * 1e9 * (1 + 1e-9) + 1
    # Adjacent windows add up to the whole (holds are cut at the edge).
    for g in full["gils"]:
        parts = sum(x["hold_ns"]["total"] for r in (a, b) for x in r["gils"] if x["id"] == g["id"])
        assert abs(parts - g["hold_ns"]["total"]) <= 2 + 1e-9 * g["hold_ns"]["total"], (
            parts, g["hold_ns"]["total"])
    p = run("report", path, "--since", str(d * 2), check=False)
    assert p.returncode == 2 and "past the end" in p.stderr, p.stderr
    p = run("report", path, "--since", "1", "--until", "0.5", check=False)
    assert p.returncode == 2, p.stderr
    text = run("report", path, "--thread", t["name"]).stdout
    assert "wait (" in text and "What this means" in text, text[-1500:]


def check_empty():
    """A recording with its header only (killed before its first chunk)."""
    full = gen("for-empty.gst", 100)
    data = open(full, "rb").read()
    empty = os.path.join(WORK, "empty.gst")
    open(empty, "wb").write(data[:header_end(data)])
    rep = report(empty)
    assert rep["recording"]["truncated"] and rep["threads"] == [] and rep["gils"] == [], rep
    doc = check_chrome(empty)
    assert not [e for e in doc["traceEvents"] if e["ph"] == "X"]
    check_prometheus_text(run("export", empty, "--format", "prometheus").stdout)
    assert "No GIL activity" in run("report", empty).stdout


def max_rss_kib(*args):
    """Peak RSS of `gilstat ARGS` (stdout discarded), measured in a fresh process."""
    probe = ("import resource, subprocess, sys\n"
             "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
             "assert p.returncode == 0, p.returncode\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", probe, GILSTAT, *args], check=True,
                         capture_output=True, text=True, timeout=300).stdout
    return int(out)


def check_memory():
    """Report and export memory grows with threads, not with events."""
    small = gen("mem-small.gst", 100_000, "6", "9", "--tsc")
    big = gen("mem-big.gst", 2_000_000, "6", "9", "--tsc")
    for args in (["report"], ["report", "--json"], ["export", "--format", "chrome"],
                 ["export", "--format", "prometheus"]):
        a = max_rss_kib(args[0], small, *args[1:])
        b = max_rss_kib(args[0], big, *args[1:])
        assert b <= a + 8 * 1024, "%s: %d KiB for 100k events, %d KiB for 2M" % (args, a, b)


def main():
    os.makedirs(WORK, exist_ok=True)
    checks = []
    small_tsc = gen("small-tsc.gst", 20000, "5", "3", "--tsc")
    small_ns = gen("small-ns.gst", 5000, "3", "4")
    for path in [small_tsc, small_ns, *EXTRA]:
        checks += [("chrome " + path, lambda p=path: check_chrome(p)),
                   ("prometheus " + path, lambda p=path: check_prometheus(p)),
                   ("filters " + path, lambda p=path: check_filters(p))]
    checks += [("truncations", lambda: check_truncations(small_tsc)),
               ("damage", lambda: check_damage(small_tsc)),
               ("newer version", lambda: check_newer_version(small_ns)),
               ("header-only recording", check_empty),
               ("memory does not grow with events", check_memory)]
    for name, fn in checks:
        try:
            fn()
        except AssertionError as e:
            print("FAIL %s: %s" % (name, e))
            return 1
        print("ok   %s" % name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
