"""Exact at any rate: threads that release and re-take the GIL millions of times a second
(workloads/cycler.py: os.stat in a loop), under `gilstat run` and attached.

Rings may fill at these rates and lose events (timeline detail); the totals must not
depend on it: the probe keeps every thread's held / wait / released time, acquisitions
and forced hand-offs, and every GIL's acquisitions and switches, itself. So, whatever
was dropped: switches == CPython's switch_number delta, held + wait + released ==
lifetime, the threads' acquisitions add up to the GIL's, every os.stat call is an
acquisition, and the saved recording reports the same numbers. Drops are printed,
never asserted to be zero (that depends on the machine's load). Exactness tier: every
interpreter, about 3 s in all.
"""
import json
import math

import pytest

from conftest import workload
from attach_support import Target, load_report

SECONDS = 0.6
TOLERANCE_S = 0.001


def check_exact(report, truth, ctx, attached):
    """The checks that hold at any rate, drops or not; never retried."""
    print("drops: %d (%d with no free ring)" % (report["drops"], report["drops_no_ring"]))
    assert report["totals_exact"] is True, "totals are not the probe's exact ones\n" + ctx
    gils = [g for g in report["gils"] if g["acquisitions"]]
    assert len(gils) == 1, ctx
    g = gils[0]
    assert g["switch_number_known"], ctx
    assert g["switches"] == g["switch_number_delta"], (
        "%d switches counted, CPython's switch_number moved by %d\n%s"
        % (g["switches"], g["switch_number_delta"], ctx))
    threads = [t for t in report["threads"] if t["gil"] == g["id"]]
    assert sum(t["acquisitions"] for t in threads) == g["acquisitions"], ctx
    held = sum(t["held_s"] for t in threads)
    assert held <= report["duration_s"] + TOLERANCE_S, ctx
    assert math.isclose(g["utilization"], held / report["duration_s"], rel_tol=1e-6), ctx
    for t in threads:
        total = t["held_s"] + t["wait_s"] + t["released_s"]
        assert abs(total - t["lifetime_s"]) <= TOLERANCE_S, (
            "thread %s: held %.6f + wait %.6f + released %.6f = %.6f != lifetime %.6f\n%s"
            % (t["name"], t["held_s"], t["wait_s"], t["released_s"], total,
               t["lifetime_s"], ctx))
        assert t["lifetime_s"] <= report["duration_s"] + TOLERANCE_S, (t["name"], ctx)
    by_tid = {t["tid"]: t for t in threads}
    for w in truth["threads"]:
        t = by_tid.get(w["native_id"])
        assert t is not None, "no row for %s\n%s" % (w["name"], ctx)
        assert t["name"] == w["name"], ctx
        # Every os.stat releases the GIL and takes it back: one acquisition each (plus
        # forced switches). Attached, the window is a slice of the calls.
        if attached:
            assert 0 < t["acquisitions"] <= w["calls"] + 10000, (w, t["acquisitions"], ctx)
        else:
            assert t["acquisitions"] >= w["calls"], (w, t["acquisitions"], ctx)
    if report["drops"]:
        # Said, with what it means.
        assert report["drops"] == sum(t["drops"] for t in report["threads"]) + \
            report["drops_no_ring"], ctx


def check_same_totals(live, saved, ctx):
    """The recording's report has the live report's exact numbers."""
    assert saved["totals_exact"] is True, ctx
    assert [(g["acquisitions"], g["switches"], g["switch_number_delta"]) for g in saved["gils"]] \
        == [(g["acquisitions"], g["switches"], g["switch_number_delta"]) for g in live["gils"]], ctx
    rows = {(t["tid"], t["gil"]): t for t in saved["threads"]}
    for t in live["threads"]:
        s = rows[(t["tid"], t["gil"])]
        for key in ("held_s", "wait_s", "released_s", "lifetime_s"):
            assert math.isclose(s[key], t[key], rel_tol=1e-9, abs_tol=1e-9), (key, t, s, ctx)
        assert s["acquisitions"] == t["acquisitions"], ctx


@pytest.mark.parametrize("threads", [1, 4])
def test_run_exact_at_the_highest_rate(gilstat, supported_python, tmp_path, threads):
    path = str(tmp_path / "cycle.gilstat")
    result = gilstat("run", "--json", "-o", path, "--", supported_python.path,
                     workload("cycler.py"), "--threads", threads, "--seconds", SECONDS)
    assert result.returncode == 0, result.describe()
    report, truth = result.report(), result.program_json()
    ctx = result.describe()
    check_exact(report, truth, ctx, attached=False)
    check_same_totals(report, load_report(gilstat, path), ctx)
    if report["drops"]:
        text = gilstat("report", path)
        assert "exact (counted in the probe)" in text.stdout.decode(), text.describe()


def test_attached_exact_at_the_highest_rate(gilstat, supported_python, tmp_path):
    path = str(tmp_path / "cycle-attached.gilstat")
    with Target(supported_python, "cycler.py", "--threads", 4) as target:
        target.expect("ready")
        result = gilstat("record", "--pid", target.pid, "-o", path, "--duration", SECONDS)
        truth = target.finish()
        ctx = result.describe() + "\n" + target.describe()
    assert result.returncode == 0, ctx
    report = load_report(gilstat, path)
    ctx += "\nreport:\n" + json.dumps(report)[:6000]
    check_exact(report, truth, ctx, attached=True)
