"""Services start threads by the hundred, each living a few milliseconds (a thread per
request): every one keeps its `threading` name, and the report stays exact.

Exactness tier: runs on every interpreter.
"""
import math

from conftest import workload
from test_report_table import check_groups
from test_run import check_invariants, run_workload

THREADS = 500
ALIVE = 100  # at most this many at once: fewer than the probe's 256 rings


def held_by_name(report, truth):
    """(held time in rows named as the program named the thread, held time of all the
    program's threads, [(true name, row name)] of the rows named otherwise): the
    report's rows found by tid."""
    by_tid = {t["tid"]: t for t in report["threads"]}
    named = total = 0.0
    wrong = []
    for t in truth["threads"]:
        row = by_tid.get(t["native_id"])
        if row is None:
            continue
        total += row["held_s"]
        if row["name"] == t["name"]:
            named += row["held_s"]
        else:
            wrong.append((t["name"], row["name"]))
    return named, total, wrong


def test_short_lived_threads_keep_their_names(gilstat, supported_python):
    result = run_workload(gilstat, supported_python, "many_threads.py", "--threads", THREADS,
                          "--alive", ALIVE, "--ms", 1, "--sleep-ms", 150)
    report, truth = result.report(), result.program_json()
    check_invariants(report, result)
    assert report["drops"] == 0 and report["drops_no_ring"] == 0, result.describe()
    assert len(truth["threads"]) == THREADS, truth
    assert truth["max_alive"] <= ALIVE, truth
    named, total, wrong = held_by_name(report, truth)
    assert total > 0, result.describe()
    assert named >= 0.99 * total, (
        "only %.2f %% of the held time of %d threads is in rows with their names; "
        "named otherwise: %s\n%s" % (100 * named / total, THREADS, wrong[:10], result.describe()))
    check_groups(report, result.describe())
    # Every thread that took the GIL has a row.
    rows = {r["tid"] for r in report["threads"]}
    missing = [t for t in truth["threads"] if t["native_id"] not in rows]
    assert not missing, (missing[:10], result.describe())
    # Held and wait are of the window: one GIL's rows add up to its utilisation and to
    # its mean number of waiting threads.
    for g in report["gils"]:
        rows = [t for t in report["threads"] if t["gil"] == g["id"]]
        held = sum(t["held_s"] for t in rows) / report["duration_s"]
        assert math.isclose(held, g["utilization"], abs_tol=0.001), (
            "gil %s: rows hold %.4f of the window, utilisation %.4f\n%s"
            % (g["id"], held, g["utilization"], result.describe()))
        waiting = sum(t["wait_s"] for t in rows if not t["own"]) / report["duration_s"]
        assert math.isclose(waiting, g["mean_waiting_threads"], abs_tol=0.001), (
            g, waiting, result.describe())


def test_more_live_threads_than_rings_are_counted_as_drops(gilstat, supported_python):
    """300 threads alive at once, each taking the GIL: 44 more than the probe has rings.
    Their events cannot be kept; the report must say so, never look complete."""
    threads = 300
    result = run_workload(gilstat, supported_python, "many_threads.py", "--threads", threads,
                          "--alive", threads, "--together", "--ms", 1, "--sleep-ms", 10)
    report, truth = result.report(), result.program_json()
    assert truth["max_alive"] == threads, truth
    assert report["drops_no_ring"] > 0, result.describe()
    assert report["drops"] >= report["drops_no_ring"], result.describe()
    text = gilstat("run", "--", supported_python.path, workload("many_threads.py"),
                   "--threads", threads, "--alive", threads, "--together", "--ms", 1,
                   "--sleep-ms", 10)
    assert text.returncode == 0, text.describe()
    assert "no free ring" in text.stderr_text, text.describe()
