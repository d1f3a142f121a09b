"""Free-threaded builds (3.13t+): with the GIL disabled there is no GIL
traffic, and gilstat says so in one line instead of printing zero tables;
with PYTHON_GIL=1 the regular suite runs (see conftest's `gilstat`).

A GIL that comes on mid-run (workloads/gil_enable.py imports gilstat's demo
extension, built for this interpreter and not marked free-threading-safe):
under `run` and under `record --pid` started while it is still off, the
report has the second phase's GIL traffic, exact, and says for how long the
GIL was off and when it came on."""
import json
import os
import subprocess
import time

import pytest

from conftest import kill_tree, raise_priority, workload

PHASE_S = 0.5
INT_MAX = 2147483647
LIFETIME_TOLERANCE_S = 0.001


@pytest.fixture(scope="module")
def free_threaded(python):
    if not python.free_threaded:
        pytest.skip("not a free-threaded build (%s)" % python.version)
    return python


def test_gil_disabled_is_said_not_tabulated(gilstat, free_threaded):
    r = gilstat("run", "--", free_threaded.path, workload("spin.py"), "--threads", "2",
                "--seconds", "0.5", env={"PYTHON_GIL": "0"})
    assert r.returncode == 0, r.describe()
    err = r.stderr_text
    assert "GIL disabled (free-threaded build)" in err, r.describe()
    assert "hint: set PYTHON_GIL=1" in err, r.describe()
    assert "THREAD" not in err, "zero tables were printed: " + r.describe()
    assert r.program_json()["threads"], r.describe()  # the program ran normally


def test_gil_disabled_json_has_no_traffic(gilstat, free_threaded):
    r = gilstat("run", "--json", "--", free_threaded.path, workload("spin.py"), "--threads",
                "2", "--seconds", "0.5", env={"PYTHON_GIL": "0"})
    assert r.returncode == 0, r.describe()
    rep = r.report()
    assert rep["python"]["free_threaded"] is True
    assert sum(g["acquisitions"] for g in rep["gils"]) == 0, r.describe()


def disabled_from_changes(changes, duration_s):
    """The time spent with enabled == 0, recomputed from the list of changes."""
    ends = [c["t_s"] for c in changes[1:]] + [duration_s]
    return sum(end - c["t_s"] for c, end in zip(changes, ends) if c["enabled"] == 0)


def test_gil_never_enabled_history(gilstat, free_threaded):
    """PYTHON_GIL=0: CPython never enables it, not even while modules load: one
    state, off, for the whole window."""
    r = gilstat("run", "--json", "--", free_threaded.path, workload("spin.py"), "--threads",
                "2", "--seconds", "0.5", env={"PYTHON_GIL": "0"})
    assert r.returncode == 0, r.describe()
    rep = r.report()
    g = rep["gils"][0]
    assert g["enabled_changes"] == [{"t_s": 0.0, "enabled": 0}], r.describe()
    assert abs(g["disabled_s"] - rep["duration_s"]) < 1e-6, r.describe()


def test_gil_unset_only_brief_spells(gilstat, free_threaded):
    """PYTHON_GIL unset and no module that needs the GIL: CPython enables it only
    transiently while extension modules of unknown safety load (never for good), it is
    off at the end, and the one-line note is printed instead of tables."""
    r = gilstat("run", "--json", "--", free_threaded.path, workload("spin.py"), "--threads",
                "2", "--seconds", "0.5", env={"PYTHON_GIL": None})
    assert r.returncode == 0, r.describe()
    assert "GIL disabled (free-threaded build)" in r.stderr_text, r.describe()
    rep = r.report()
    g = rep["gils"][0]
    changes = g["enabled_changes"]
    assert changes[-1]["enabled"] == 0, r.describe()
    assert all(0 <= c["enabled"] < INT_MAX for c in changes), r.describe()
    assert [c["t_s"] for c in changes] == sorted(c["t_s"] for c in changes), r.describe()
    assert abs(g["disabled_s"] - disabled_from_changes(changes, rep["duration_s"])) < 1e-6, \
        r.describe()
    assert g["disabled_s"] >= 0.9 * rep["duration_s"], r.describe()


def test_gil_enabled_is_measured(gilstat, free_threaded):
    r = gilstat("run", "--json", "--", free_threaded.path, workload("spin.py"), "--threads",
                "2", "--seconds", "0.8", env={"PYTHON_GIL": "1"})
    assert r.returncode == 0, r.describe()
    rep = r.report()
    assert rep["python"]["free_threaded"] is True
    g = rep["gils"][0]
    assert g["switches"] == g["switch_number_delta"] > 0, r.describe()
    # PYTHON_GIL=1: on for good from the start, never off.
    assert g["enabled_changes"] == [{"t_s": 0.0, "enabled": INT_MAX}], r.describe()
    assert g["disabled_s"] == 0.0, r.describe()


# ---------------------------------------------------------------------------
# The GIL enabled at run time


@pytest.fixture(scope="module")
def demo_extension_dir(free_threaded, gilstat_bin):
    """Where the build put _gilstat_demo for this interpreter (next to the abi3 one)."""
    out = subprocess.run([free_threaded.path, "-S", "-c",
                          "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"],
                         stdout=subprocess.PIPE, check=True, timeout=30).stdout.decode().strip()
    directory = os.path.join(os.path.dirname(gilstat_bin), "..", "lib", "gilstat", "python")
    if not os.path.exists(os.path.join(directory, "_gilstat_demo" + out)):
        pytest.skip("_gilstat_demo%s was not built (configure with GILSTAT_INTERPRETERS_DIR "
                    "pointing at this launcher's directory)" % out)
    return os.path.realpath(directory)


def check_enabled_midway(report, truth, ctx, min_disabled_s, launched):
    """What must hold of a report on gil_enable.py, run or attached: the workload saw
    the GIL off then on; the GIL's numbers are exact; the phase-1 threads (GIL off)
    never touched it, the phase-2 ones did; and the report says when it came on."""
    assert truth["gil_before"] is False and truth["gil_after"] is True, ctx
    assert any("_gilstat_demo" in w and "GIL" in w for w in truth["warnings"]), ctx
    assert report["python"]["free_threaded"] is True, ctx
    assert report["drops"] == 0, ctx
    assert len(report["gils"]) == 1, ctx
    gil = report["gils"][0]
    assert gil["switches"] == gil["switch_number_delta"] > 0, ctx
    for key in ("seq_gaps", "seq_stale", "anomalies"):
        assert gil[key] == 0, "%s = %s\n%s" % (key, gil[key], ctx)
    for t in report["threads"]:
        total = t["held_s"] + t["wait_s"] + t["released_s"]
        assert abs(total - t["lifetime_s"]) <= LIFETIME_TOLERANCE_S, (t, ctx)
    tids = {t["tid"]: t for t in report["threads"]}
    for spinner in truth["phases"]["free"]:
        assert spinner["native_id"] not in tids, ("GIL traffic while it was off", spinner, ctx)
    for spinner in truth["phases"]["gil"]:
        t = tids.get(spinner["native_id"])
        assert t and t["name"] == spinner["name"] and t["acquisitions"] >= 1, (spinner, ctx)

    changes = gil["enabled_changes"]
    assert changes and changes[0]["t_s"] == 0.0, ctx
    assert changes[-1]["enabled"] == INT_MAX, "not enabled for good at the end\n" + ctx
    on_at = max(c["t_s"] for i, c in enumerate(changes)
                if c["enabled"] and (i == 0 or changes[i - 1]["enabled"] == 0))
    # Launched, the window starts before the script does: it came on no earlier than
    # the import began.  Phase 2 ran for PHASE_S after it.
    if launched:
        assert on_at >= truth["import_start_s"] - 0.001, (on_at, ctx)
    assert on_at <= report["duration_s"] - PHASE_S, (on_at, ctx)
    assert gil["disabled_s"] >= min_disabled_s, (gil["disabled_s"], ctx)
    assert gil["disabled_s"] <= on_at + 1e-6, (gil["disabled_s"], on_at, ctx)
    assert abs(gil["disabled_s"] - disabled_from_changes(changes, report["duration_s"])) < 1e-6, \
        ctx
    assert any(f["id"] == "gil_enabled" for f in report["findings"]), ctx


def test_gil_enabled_midrun_is_reported(gilstat, free_threaded, demo_extension_dir, tmp_path):
    path = tmp_path / "enable.gilstat"
    r = gilstat("run", "--json", "-o", path, "--", free_threaded.path, workload("gil_enable.py"),
                "--seconds", PHASE_S,
                env={"PYTHON_GIL": None, "PYTHONPATH": demo_extension_dir})
    assert r.returncode == 0, r.describe()
    report = r.report()
    ctx = r.describe()
    # Phase 1 is a sleep of PHASE_S in the main thread with the GIL off.
    check_enabled_midway(report, r.program_json(), ctx, min_disabled_s=PHASE_S, launched=True)

    # The saved recording carries the same history, and the text says it.
    again = gilstat("report", path, "--json")
    assert again.returncode == 0, again.describe()
    saved = json.loads(again.stdout.decode())["gils"][0]
    assert saved["enabled_changes"] == report["gils"][0]["enabled_changes"], again.describe()
    assert saved["disabled_s"] == report["gils"][0]["disabled_s"], again.describe()
    text = gilstat("report", path)
    out = text.stdout.decode()
    assert text.returncode == 0, text.describe()
    assert "(free-threaded build); enabled at " in out and " s for good" in out, out


class EnableTarget:
    """gil_enable.py --wait run directly (PYTHON_GIL unset): phase 1 spins with the GIL
    off until enable() is called. Killed and reaped on leaving the `with` block."""

    def __init__(self, python, extension_dir):
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=extension_dir)
        for name in ("PYTHON_GIL", "GILSTAT_TEST_PYTHON"):
            env.pop(name, None)
        self.proc = subprocess.Popen([python.path, workload("gil_enable.py"), "--wait",
                                      "--seconds", str(PHASE_S)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, start_new_session=True,
                                     preexec_fn=raise_priority)
        self.pid = self.proc.pid
        self.others = []  # gilstat processes to reap with it

    def __enter__(self):
        assert self.proc.stdout.readline() == b"ready\n", "target did not start"
        return self

    def __exit__(self, *exc):
        for proc in [self.proc] + self.others:
            if proc.poll() is None:
                kill_tree(proc)
            proc.wait()

    def enable(self):
        """Ends phase 1; returns the workload's JSON line once it has exited."""
        self.proc.stdin.write(b"enable\n")
        self.proc.stdin.close()
        truth = json.loads(self.proc.stdout.readline())
        assert self.proc.wait(timeout=30) == 0, self.proc.stderr.read().decode()
        return truth


def gilstat_attached(target, gilstat_bin, *args):
    proc = subprocess.Popen([gilstat_bin] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    target.others.append(proc)
    return proc


def test_gil_enabled_after_attach_is_reported(gilstat_bin, gilstat, free_threaded,
                                              demo_extension_dir, tmp_path):
    """`record --pid` attached while the GIL is still off, then the target enables it."""
    path = str(tmp_path / "attach-enable.gilstat")
    off_after_attach_s = 0.3
    with EnableTarget(free_threaded, demo_extension_dir) as target:
        record = gilstat_attached(target, gilstat_bin, "record", "--pid", target.pid, "-o", path)
        # The file appears once the probe is attached (a failed attach writes none).
        deadline = time.monotonic() + 20
        while not os.path.exists(path) and record.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if record.poll() == 4:
            pytest.skip("no permission to attach: " + record.stderr.read().decode())
        assert os.path.exists(path), "record --pid did not attach in 20 s"
        time.sleep(off_after_attach_s)
        truth = target.enable()
        _, err = record.communicate(timeout=30)
        ctx = "record: exit %s\n%s" % (record.returncode, err.decode())
        assert record.returncode == 0 and "exited" in err.decode(), ctx
    result = gilstat("report", path, "--json")
    assert result.returncode == 0, result.describe()
    report = json.loads(result.stdout.decode())
    ctx += "\nreport: " + json.dumps(report)[:6000]
    assert report["pid"] == truth["pid"], ctx
    assert report["gils"][0]["enabled_changes"][0]["enabled"] == 0, "off at the attach\n" + ctx
    check_enabled_midway(report, truth, ctx, min_disabled_s=off_after_attach_s, launched=False)

    # The Prometheus export has the same disabled time.
    prom = gilstat("export", path, "--format", "prometheus")
    assert prom.returncode == 0, prom.describe()
    line = [l for l in prom.stdout.decode().splitlines()
            if l.startswith("gilstat_gil_disabled_seconds{")]
    assert len(line) == 1, prom.describe()
    assert abs(float(line[0].split()[-1]) - report["gils"][0]["disabled_s"]) < 1e-6, line


def test_top_says_the_gil_is_disabled(gilstat_bin, free_threaded, demo_extension_dir):
    """`top` attached to a free-threaded process running without its GIL says so under
    the GIL's zero rates."""
    with EnableTarget(free_threaded, demo_extension_dir) as target:
        top = gilstat_attached(target, gilstat_bin, "top", "--pid", target.pid, "--interval",
                               0.3, "--duration", 1)
        out, err = top.communicate(timeout=30)
        if top.returncode == 4:
            pytest.skip("no permission to attach: " + err.decode())
        ctx = "top: exit %s\nstdout:\n%s\nstderr:\n%s" % (top.returncode, out.decode()[-3000:],
                                                          err.decode())
        assert top.returncode == 0, ctx
        assert "GIL 0 is disabled (free-threaded build)" in out.decode(), ctx
        target.enable()
