"""The Python package (`import gilstat` from build/python): measure(), the
assertions and the pytest plugin, on the real probe in the interpreter under test.

Exactness tier: one workload process per interpreter (workloads/python_api.py)
shared by most checks below, about 2 s, and a few short processes (one reader
per process, gilstat run).  The pytest plugin runs under Debian's
python3 only (its python3-pytest runs nowhere else).
"""
import glob
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import note_timing_retry, run_process, workload


def build_dir(gilstat_bin):
    return os.path.dirname(os.path.dirname(os.path.realpath(gilstat_bin)))


def python_env(gilstat_bin, python, **extra):
    """PYTHONPATH with this build's package and demo extension."""
    build = build_dir(gilstat_bin)
    env = dict(os.environ)
    env.pop("GILSTAT_TEST_PYTHON", None)
    # The demo extension: <libdir>/gilstat/python, found from the probe's directory
    # (lib/gilstat, or a multiarch lib/<triplet>/gilstat).
    probes = glob.glob(os.path.join(build, "lib*", "**", "libgilstat_probe.so"), recursive=True)
    demo = os.path.join(os.path.dirname(probes[0]) if probes else build, "python")
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(build, "python"), demo])
    env["GILSTAT_BIN"] = gilstat_bin
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if python.free_threaded:
        env["PYTHON_GIL"] = "1"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def api_run(supported_python, gilstat_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    saved, alone = tmp / "spin.gilstat", tmp / "alone.gilstat"
    r = run_process([supported_python.path, workload("python_api.py"), str(saved), str(alone)],
                    env=python_env(gilstat_bin, supported_python), timeout=60)
    assert r.returncode == 0, "workload failed:\n%s" % r.stderr_text
    out = json.loads(r.stdout.decode().strip().splitlines()[-1])
    out["alone_recording"] = str(alone)
    return out, saved, r


def check_exact(report):
    assert report["drops"] == 0
    for g in report["gils"]:
        assert g["switches"] == g["switch_number_delta"], g
    for t in report["threads"]:
        total = t["held_s"] + t["wait_s"] + t["released_s"]
        assert abs(total - t["lifetime_s"]) < 1e-6, t


def test_measure_two_spinners(api_run):
    out, _, _ = api_run
    attempts = out["spin_attempts"]
    for report in attempts:  # exact on every attempt, retried or not
        check_exact(report)
    for i in range(len(attempts) - 1):
        note_timing_retry(i + 1, 3, AssertionError("spinners' held shares vs iteration "
                                                   "shares off by 5 points or more"))
    rows = out["spin_rows"]
    assert [r["tid"] for r in rows] == out["spin_tids"]
    assert all(r["name"] == "spinner" for r in rows)
    held = [r["held_s"] for r in rows]
    counts = out["spin_counts"]
    assert min(held) > 0.1 and min(counts) > 0, (held, counts)
    # Pure-Python loops: iterations follow held time (a timing bound: the
    # workload tried up to 3 times, said above).
    held_share = held[0] / sum(held)
    count_share = counts[0] / sum(counts)
    assert abs(held_share - count_share) < 0.05, (held, counts)


def test_thread_by_ambiguous_name_lists_tids(api_run):
    out, _, _ = api_run
    message = out["ambiguous"]
    assert message is not None, "m.thread('spinner') did not raise with two such threads"
    for tid in out["spin_tids"]:
        assert str(tid) in message, message


def test_nested_measure_refused(api_run):
    out, _, _ = api_run
    assert out["nested"] and "already measuring" in out["nested"], out["nested"]
    check_exact(out["main_alone_report"])


def test_arming_thread_counts_as_holder(api_run, gilstat, tmp_path):
    """The thread that calls measure() holds the GIL when the probe arms: it is a
    holder from that instant (its first span starts at the window's start)."""
    out, _, _ = api_run
    main = out["main_alone"]
    # It spun 0.1 s (perf_counter) without releasing: held, or waiting after a
    # forced switch (the probe's thread reads names under the GIL); a forced
    # switch can also leave it preempted between the drop and its next request
    # (released): a few ms on a busy machine.
    assert main["held_s"] + main["wait_s"] >= 0.08, main
    trace = tmp_path / "alone.json"
    r = gilstat("export", out["alone_recording"], "--format", "chrome", "-o", trace)
    assert r.returncode == 0, r.stderr_text
    events = json.loads(trace.read_text())
    events = events["traceEvents"] if isinstance(events, dict) else events
    spans = sorted((e for e in events if e.get("ph") == "X" and e.get("tid") == main["tid"]),
                   key=lambda e: e["ts"])
    assert spans, "no span of MainThread in the trace"
    first = spans[0]
    assert first["name"] == "holding" and first["ts"] < 1.0, first


def test_saved_recording_reads_back(api_run, gilstat):
    out, saved, _ = api_run
    r = gilstat("report", "--json", saved)
    assert r.returncode == 0, r.stderr_text
    assert json.loads(r.stdout) == out["spin_report"]
    r = gilstat("export", saved, "--format", "prometheus")
    assert r.returncode == 0 and b"gilstat_" in r.stdout, r.stderr_text


def test_assert_releases_gil(api_run):
    out, _, _ = api_run
    for i, failure in enumerate(out["retries"]):
        note_timing_retry(i + 1, 3, AssertionError(failure))
    assert out["release_result"] == out["expected_sum"]
    assert out["sha"] == out["sha_expected"]
    message = out["hold_error"]
    assert message is not None, "assert_releases_gil passed for a function holding the GIL"
    for part in ("held the GIL", "held ", " s run time", "longest hold", "competing"):
        assert part in message, message
    # The stack `gilstat drain` took of the hold while it lasted (the holder stopped
    # by ptrace): its innermost native frames are the demo's C++ loop.
    assert "the longest hold with a stack" in message, message
    assert "busy_sum" in message and "_gilstat_demo" in message, message


def test_assert_callback_rate(api_run):
    out, _, _ = api_run
    message = out["rate_error"]
    assert message is not None, "assert_callback_rate passed with max_per_s=1"
    # The callbacks are counted exactly: every PyGILState_Ensure of the pool's workers.
    assert "_gilstat_demo" in message and "max_per_s 1" in message, message
    assert " %d callbacks " % out["rate_expected"] in message, message
    assert [w["calls"] for w in out["rate_pool"]] == [10, 10], out["rate_pool"]
    assert out["rate_lookup"] and "no_such_module" in out["rate_lookup"], out["rate_lookup"]
    assert "_gilstat_demo" in out["rate_lookup"], out["rate_lookup"]


def run_python(python, gilstat_bin, code, **env):
    return run_process([python.path, "-c", code], env=python_env(gilstat_bin, python, **env))


def test_import_refused_on_unsupported_interpreter(python, gilstat_bin):
    if python.supported:
        pytest.skip("Python %s is supported (the other tests here cover it)" % python.version)
    r = run_python(python, gilstat_bin, "import gilstat")
    assert r.returncode != 0
    assert "ImportError: gilstat supports CPython 3.8 to 3.15; this is CPython %d.%d" \
        % python.minor in r.stderr_text, r.stderr_text


def test_measure_refused_under_gilstat_run(supported_python, gilstat_bin, gilstat):
    """`gilstat run` reads the probe: import works, measure() says why it cannot."""
    code = ("import gilstat\ntry:\n    with gilstat.measure():\n        pass\n"
            "except gilstat.GilstatError as e:\n    print('refused:', e)\n")
    r = gilstat("run", "--", supported_python.path, "-c", code,
                env=python_env(gilstat_bin, supported_python))
    assert r.returncode == 0, r.stderr_text
    out = r.stdout.decode()
    assert "refused: this process runs under `gilstat run`" in out, out
    assert "hint: run the program without `gilstat run`" in out, out


def test_gil_disabled_passes_with_warning(supported_python, gilstat_bin):
    if not supported_python.free_threaded:
        pytest.skip("not a free-threaded build")
    code = ("import time, gilstat\n"
            "print('result', gilstat.assert_releases_gil(lambda: time.sleep(0.01) or 42))\n")
    r = run_python(supported_python, gilstat_bin, code, PYTHON_GIL="0")
    assert r.returncode == 0, r.stderr_text
    assert "result 42" in r.stdout.decode()
    assert "GilstatWarning: gilstat: assert_releases_gil(<lambda>) passed without measuring: " \
        "the GIL is disabled in this free-threaded build" in r.stderr_text, r.stderr_text


PLUGIN_TESTS = '''
import sys
import time
import _gilstat_demo


def test_first_nothing_loaded():
    """The plugin loads nothing before a test asks for its fixture."""
    probe = sys.modules.get("gilstat._probe")
    assert probe is None or probe._library is None
    assert "libgilstat_probe" not in open("/proc/self/maps").read()


def test_releases(gilstat):
    assert gilstat.assert_releases_gil(time.sleep, 0.1) is None


def test_holds(gilstat):
    gilstat.assert_releases_gil(_gilstat_demo.busy_sum, 2000000, 20, False)


def test_callbacks(gilstat):
    workers = gilstat.assert_callback_rate(_gilstat_demo.pool, 2, 5, lambda: 0, 0.0,
                                           module=_gilstat_demo, max_per_s=1e9)
    assert [w["calls"] for w in workers] == [5, 5]


def test_measure(gilstat):
    with gilstat.measure() as m:
        time.sleep(0.05)
    assert m.thread("MainThread")["held_s"] > 1.0   # fails: shows the report

'''


def test_pytest_plugin(supported_python, gilstat_bin, tmp_path):
    """The plugin in a pytest session of its own: the fixture, a failing assertion's
    message and the report attached to failing tests' output."""
    debian = os.path.realpath("/usr/bin/python3")
    if os.path.realpath(supported_python.path) != debian:
        pytest.skip("python3-pytest runs under Debian's python3 (%s) only" % debian)
    (tmp_path / "test_ext.py").write_text(PLUGIN_TESTS)
    r = run_process([supported_python.path, "-m", "pytest", "-p", "gilstat.pytest_plugin",
                     "-p", "no:cacheprovider", "-q", "-p", "no:randomly", str(tmp_path)],
                    env=python_env(gilstat_bin, supported_python), timeout=60)
    out = r.stdout.decode()
    assert r.returncode == 1, out + r.stderr_text
    assert "2 failed, 3 passed" in out, out
    assert "AssertionError: busy_sum held the GIL" in out, out
    assert "the longest hold with a stack" in out and "busy_sum" in out, out
    # Each failing test's output carries its last measurement's report.
    assert out.count("gilstat report of the test's last measurement") == 2, out
    assert "MainThread" in out and "gilstat-competitor" in out, out


def holds_region(pid):
    """True once process `pid` has a probe region (memfd "gilstat") open."""
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("/memfd:gilstat"):
                return True
        except OSError:
            continue
    return False


def test_one_reader_per_process(supported_python, gilstat_bin, tmp_path):
    """measure() while `gilstat record --pid` reads the process is refused naming it,
    and `gilstat record --pid` during a measurement is refused naming `gilstat drain`."""
    proc = subprocess.Popen([supported_python.path, workload("python_api_readers.py")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=python_env(gilstat_bin, supported_python))
    record = None
    try:
        assert proc.stdout.readline() == b"ready\n"
        record = subprocess.Popen([gilstat_bin, "record", "--pid", str(proc.pid), "-o",
                                   str(tmp_path / "r.gilstat"), "--duration", "20"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not holds_region(record.pid) and time.monotonic() < deadline:
            assert record.poll() is None, record.communicate()[1].decode()
            time.sleep(0.01)
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        said = proc.stdout.readline().decode()
        record.send_signal(signal.SIGINT)
        assert record.wait(timeout=10) == 0, record.communicate()[1].decode()
        assert said == "refused: another gilstat reads this process: `gilstat record` " \
            "(pid %d)\n" % record.pid, said
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"measuring\n"
        r = run_process([gilstat_bin, "record", "--pid", str(proc.pid), "-o",
                         str(tmp_path / "refused.gilstat"), "--duration", "1"])
        assert r.returncode == 1, r.stderr_text
        assert "another gilstat is already attached to process %d: `gilstat drain`" \
            % proc.pid in r.stderr_text, r.stderr_text
        out, _ = proc.communicate(b"go\n", timeout=30)
        assert out.startswith(b"done "), out  # the measurement went on
    finally:
        for p in (proc, record):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
