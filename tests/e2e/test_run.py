"""`gilstat run` / `gilstat report` end to end: real interpreter, real binary, real numbers.

Each workload's behaviour is known in advance (see workloads/), so the report can be
checked against the truth the workload prints itself (iterations, thread ids, pid).
"""
import json
import math
import os
import re

import pytest

from conftest import exact_on_rerun, note_timing_retry, pyenv_root, run_process, workload
from attach_support import check_lifetimes

SPIN_THREADS = 3
SPIN_SECONDS = 1.5
LIFETIME_TOLERANCE_S = 0.001
SHARE_TOLERANCE = 0.05
STAT_KEYS = ("p50", "p90", "p99", "max", "total", "count")


# ---------------------------------------------------------------------------------------
# helpers


def one_thread(report, name, result):
    matches = [t for t in report["threads"] if t["name"] == name]
    assert len(matches) == 1, "expected one thread named %r in the report, got %d: %s\n%s" % (
        name, len(matches), [t["name"] for t in report["threads"]], result.describe())
    return matches[0]


def the_gil(report, result):
    # The workloads never create subinterpreters: exactly one GIL.
    assert len(report["gils"]) == 1, "expected one GIL, got %d\n%s" % (
        len(report["gils"]), result.describe())
    return report["gils"][0]


def check_stats(stats, where):
    for key in STAT_KEYS:
        assert key in stats, "%s: missing %r in %s" % (where, key, stats)
        assert isinstance(stats[key], (int, float)) and stats[key] >= 0, (where, key, stats)
    if stats["count"]:
        assert stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"], (where, stats)
        assert stats["max"] <= stats["total"], (where, stats)


def check_report_shape(report, result, python):
    ctx = result.describe()
    assert isinstance(report.get("gilstat_version"), str) and report["gilstat_version"], ctx
    assert isinstance(report.get("pid"), int), ctx
    assert isinstance(report.get("duration_s"), (int, float)) and report["duration_s"] > 0, ctx
    assert report.get("clock") in ("monotonic", "tsc"), ctx
    py = report["python"]
    assert py["version"] == python.version, ctx
    assert py["free_threaded"] is python.free_threaded, ctx
    assert py["libpython"] == ("shared" if python.shared else "static"), ctx
    assert report["drops"] == 0, "events were dropped\n" + ctx
    gil_ids = set()
    for g in report["gils"]:
        gil_ids.add(g["id"])
        assert isinstance(g["interpreters"], list) and g["interpreters"], ctx
        assert 0.0 <= g["utilization"] <= 1.0, ctx
        for key in ("acquisitions", "switches", "switch_number_delta",
                    "forced_switch_requests", "forced_handoffs"):
            assert isinstance(g[key], int) and g[key] >= 0, (key, ctx)
        check_stats(g["wait_ns"], "gil %s wait_ns" % g["id"])
        check_stats(g["hold_ns"], "gil %s hold_ns" % g["id"])
    for t in report["threads"]:
        where = "thread %s (%s)" % (t["name"], t["tid"])
        assert isinstance(t["tid"], int) and t["tid"] > 0, where
        assert isinstance(t["name"], str) and t["name"], where
        assert isinstance(t["own"], bool), where
        assert t["gil"] in gil_ids, "%s: gil %s not in gils\n%s" % (where, t["gil"], ctx)
        for key in ("lifetime_s", "held_s", "wait_s", "released_s"):
            assert t[key] >= 0, (where, key, t)
        check_stats(t["wait_ns"], where + " wait_ns")
        check_stats(t["hold_ns"], where + " hold_ns")


def check_invariants(report, result):
    """What must hold for every report (docs/gil-internals.md, "Reconstruction rules")."""
    ctx = result.describe()
    assert report["gils"] and report["threads"], "empty report\n" + ctx
    for g in report["gils"]:
        assert g["switches"] == g["switch_number_delta"], (
            "gil %s: %d switches reconstructed, CPython's switch_number moved by %d\n%s"
            % (g["id"], g["switches"], g["switch_number_delta"], ctx))
        assert g["switches"] <= g["acquisitions"], ctx
        # Beyond the contract, where reported: the reconstruction's own alarms.
        for key in ("seq_gaps", "seq_stale", "anomalies"):
            assert g.get(key, 0) == 0, "gil %s: %s = %s\n%s" % (g["id"], key, g[key], ctx)
        # Σ holds ≤ wall time, and utilization is that ratio.
        hold_s = g["hold_ns"]["total"] / 1e9
        assert hold_s <= report["duration_s"] + LIFETIME_TOLERANCE_S, ctx
        # Σ of the threads' holds on this GIL is the GIL's hold time.
        threads_hold_s = sum(t["hold_ns"]["total"] for t in report["threads"]
                             if t["gil"] == g["id"]) / 1e9
        assert math.isclose(threads_hold_s, hold_s, abs_tol=LIFETIME_TOLERANCE_S), (
            "gil %s: threads' holds %.6f s != GIL hold %.6f s\n%s"
            % (g["id"], threads_hold_s, hold_s, ctx))
    check_lifetimes(report, ctx)
    for t in report["threads"]:
        assert t["lifetime_s"] <= report["duration_s"] + LIFETIME_TOLERANCE_S, (t, ctx)
        assert t.get("anomalies", 0) == 0, (t, ctx)


def run_workload(gilstat, python, script, *args, **kwargs):
    result = gilstat("run", "--json", "--", python.path, workload(script), *args, **kwargs)
    assert result.returncode == 0, result.describe()
    return result


ATTEMPTS = 5  # a compile burst on a 2-core machine can outlast three 1.5 s runs


def in_some_run(runs, check):
    """check(result, report, truth) must pass for at least one of the runs (an
    iterator that starts the next run only when asked). Only for timing bounds, bounds
    that depend on the machine being free: a run whose threads were descheduled for a
    while (a parallel build, a CPU quota) shows less GIL use than the workload was
    designed for, which is true but not what the bound is about. A real measurement
    error repeats in every run; that noise does not. Each retry is reported
    (note_timing_retry), and every rerun passes the exact checks first (runs_of)."""
    failures = []
    for result, report, truth in runs:
        try:
            check(result, report, truth)
            return
        except AssertionError as e:
            failures.append(str(e).split("\n")[0])
            last = result
            if len(failures) < ATTEMPTS:
                note_timing_retry(len(failures), ATTEMPTS, e)
    pytest.fail("timing bound failed in all %d runs:\n%s\nlast run:\n%s"
                % (len(failures), "\n".join(failures), last.describe()))


def runs_of(first, gilstat, python, script, *args):
    """first (result, report, truth), then fresh runs of script, ATTEMPTS in all; each
    fresh run passes the exact checks (check_invariants), never retried."""
    yield first
    for _ in range(ATTEMPTS - 1):
        result = run_workload(gilstat, python, script, *args)
        report = result.report()
        exact_on_rerun(check_invariants, report, result)
        yield result, report, result.program_json()


# ---------------------------------------------------------------------------------------
# N spinning threads


@pytest.fixture(scope="module")
def spin(gilstat, supported_python):
    result = run_workload(gilstat, supported_python, "spin.py",
                          "--threads", SPIN_THREADS, "--seconds", SPIN_SECONDS)
    return result, result.report(), result.program_json()


def test_spin_report_shape(spin, supported_python):
    result, report, truth = spin
    check_report_shape(report, result, supported_python)
    assert report["pid"] == truth["pid"], result.describe()
    assert report["duration_s"] >= SPIN_SECONDS, result.describe()


def test_spin_invariants(spin):
    result, report, _ = spin
    check_invariants(report, result)


def test_spin_threads_named_with_their_tids(spin):
    result, report, truth = spin
    for t in truth["threads"]:
        got = one_thread(report, t["name"], result)
        assert got["tid"] == t["native_id"], (t, got, result.describe())
        assert got["own"] is False, result.describe()
        assert got["acquisitions"] >= 1, result.describe()
    one_thread(report, "MainThread", result)


def test_spin_gil_busy_and_switching(spin, gilstat, supported_python):
    result, report, _ = spin
    gil = the_gil(report, result)
    # A hand-off wait happens only when no waiter took the GIL before the dropper
    # checked: on a loaded machine there may be none, but each needs its own request.
    assert gil["forced_handoffs"] <= gil["forced_switch_requests"], result.describe()
    assert abs(gil["utilization"] - gil["hold_ns"]["total"] / 1e9 / report["duration_s"]) \
        <= 0.01, result.describe()

    def busy(result, report, truth):
        gil = the_gil(report, result)
        assert gil["utilization"] >= 0.9, "utilization %.3f" % gil["utilization"]
        # Three threads contending for 1.5 s with a 5 ms switch interval: hundreds of
        # forced switches. 50 is far below that and far above "not measured".
        assert gil["switches"] >= 50, "%d switches" % gil["switches"]
        assert gil["forced_switch_requests"] >= 1, "no forced-switch request"

    in_some_run(runs_of(spin, gilstat, supported_python, "spin.py", "--threads", SPIN_THREADS,
                        "--seconds", SPIN_SECONDS), busy)


def share_table(report, truth, result):
    """[(name, iteration share, CPU share, held share)] for the spin threads."""
    rows = [(t, one_thread(report, t["name"], result)["held_s"]) for t in truth["threads"]]
    total_iterations = sum(t["iterations"] for t, _ in rows)
    total_cpu = sum(t["cpu_s"] for t, _ in rows)
    total_held = sum(held for _, held in rows)
    assert total_held > 0 and total_cpu > 0, result.describe()
    return [(t["name"], t["iterations"] / total_iterations, t["cpu_s"] / total_cpu,
             held / total_held) for t, held in rows]


def format_shares(shares):
    return "\n".join("%s: iteration share %.3f, CPU share %.3f, held share %.3f" % row
                     for row in shares)


def check_shares(spin, gilstat, python, column, what):
    """Each spinner's held share is within SHARE_TOLERANCE of its share of `column`
    (1 = iterations, 2 = CPU time), in at least one run: a spinner descheduled while it
    holds the GIL, or slowed by a busy hyperthread sibling, holds without working."""

    def close(result, report, truth):
        shares = share_table(report, truth, result)
        bad = [row[0] for row in shares if abs(row[column] - row[3]) > SHARE_TOLERANCE]
        assert not bad, "held share off %s share by more than %.2f for %s: %s" % (
            what, SHARE_TOLERANCE, bad, format_shares(shares).replace("\n", "; "))

    in_some_run(runs_of(spin, gilstat, python, "spin.py", "--threads", SPIN_THREADS,
                        "--seconds", SPIN_SECONDS), close)


def test_spin_held_share_matches_iteration_share(spin, gilstat, supported_python):
    """Each spinner's share of the GIL's hold time is its share of the work."""
    check_shares(spin, gilstat, supported_python, 1, "iteration")


def test_spin_held_share_matches_cpu_share(spin, gilstat, supported_python):
    """A spinner runs Python only while it holds the GIL: its share of the CPU time is
    its share of the hold time, and its CPU time is at most its hold time."""
    result, report, truth = spin
    for t in truth["threads"]:
        held = one_thread(report, t["name"], result)["held_s"]
        # Slack: thread start-up and futex calls use a little CPU without the GIL.
        assert t["cpu_s"] <= held * 1.05 + 0.02, (
            "%s used %.3f s CPU but held the GIL only %.3f s\n%s"
            % (t["name"], t["cpu_s"], held, result.describe()))
    check_shares(spin, gilstat, supported_python, 2, "CPU")


def test_through_pyenv_shim(gilstat, supported_python):
    """`python3` on PATH is a pyenv bash shim: the probe, preloaded into bash, env and
    pyenv, must stay inert there and arm in the real interpreter after `exec`."""
    shim = os.path.join(pyenv_root(), "shims", "python3")
    if not os.path.exists(shim):
        pytest.skip("no pyenv shim at %s" % shim)
    version = supported_python.pyenv_version
    if version is None:
        pytest.skip("%s is neither a pyenv version nor the system python"
                    % supported_python.path)
    result = gilstat("run", "--json", "--", shim, workload("spin.py"),
                     "--threads", 2, "--seconds", 1.0, env={"PYENV_VERSION": version})
    assert result.returncode == 0, result.describe()
    report, truth = result.report(), result.program_json()
    # exec keeps the pid: the report is about the process that printed `truth`.
    assert report["pid"] == truth["pid"], result.describe()
    assert report["python"]["version"] == supported_python.version, result.describe()
    check_invariants(report, result)
    for t in truth["threads"]:
        assert one_thread(report, t["name"], result)["tid"] == t["native_id"]


# ---------------------------------------------------------------------------------------
# sleeping and alternating threads


def test_sleeper_is_mostly_released(gilstat, supported_python):
    seconds, interval = 1.5, 0.25
    result = run_workload(gilstat, supported_python, "sleeper.py",
                          "--seconds", seconds, "--interval", interval)
    report, truth = result.report(), result.program_json()
    check_report_shape(report, result, supported_python)
    check_invariants(report, result)
    ids = {t["name"]: t["native_id"] for t in truth["threads"]}
    sleeper = one_thread(report, "sleeper", result)
    spinner = one_thread(report, "spinner", result)
    assert sleeper["tid"] == ids["sleeper"] and spinner["tid"] == ids["spinner"]
    life = sleeper["lifetime_s"]
    assert life >= 1.0, result.describe()
    assert sleeper["held_s"] < 0.05 * life, result.describe()
    # Each wake-up waits for the spinner to drop the GIL: one switch interval (5 ms)
    # on a quiet machine, tens of ms on a loaded one; the rest is released.
    assert sleeper["released_s"] >= 0.6 * life, result.describe()
    assert sleeper["acquisitions"] >= seconds / interval - 1, result.describe()
    # The GIL is released only inside time.sleep (measured by the workload itself),
    # and in forced hand-offs if a loaded machine kept the sleeper holding past the
    # switch interval (see the alternator below; none on a free machine).
    allowance = 0.005 + 0.002 * sleeper["forced_handoffs"]
    assert sleeper["released_s"] <= truth["slept_s"] + allowance, result.describe()
    assert spinner["held_s"] >= 0.8 * spinner["lifetime_s"], result.describe()


def test_alternator_released_about_half(gilstat, supported_python):
    args = ("--seconds", 1.5)
    result = run_workload(gilstat, supported_python, "alternate.py", *args)
    report, truth = result.report(), result.program_json()
    check_report_shape(report, result, supported_python)
    check_invariants(report, result)
    alternator = one_thread(report, "alternator", result)
    one_thread(report, "spinner", result)
    assert alternator["released_s"] >= 0.5 * truth["slept_s"], result.describe()
    # It contends with the spinner in every spin phase, so it also waits.
    assert alternator["wait_s"] > 0, result.describe()
    assert alternator["acquisitions"] >= truth["cycles"], result.describe()

    def about_half(result, report, truth):
        alternator = one_thread(report, "alternator", result)
        share = alternator["released_s"] / alternator["lifetime_s"]
        assert 0.3 <= share <= 0.7, "alternator released share %.3f" % share
        # It releases the GIL inside time.sleep, whose length the workload measures
        # (including the wait to get the GIL back), and in each forced hand-off: from
        # drop_gil until the spinner has taken the GIL and the alternator, woken, asks
        # for it again (a scheduling delay, hence a timing bound: up to 2 ms each here).
        # Counting its 0.3-0.5 s of waiting as released would break it.
        allowance = 0.005 + 0.002 * alternator["forced_handoffs"]
        assert alternator["released_s"] <= truth["slept_s"] + allowance, (
            "released %.3f s > slept %.3f s + %.3f s for %d forced hand-offs"
            % (alternator["released_s"], truth["slept_s"], allowance,
               alternator["forced_handoffs"]))

    in_some_run(runs_of((result, report, truth), gilstat, supported_python, "alternate.py",
                        *args), about_half)


def test_native_thread_is_named_by_tid(gilstat, supported_python):
    """A thread created outside `threading` that calls into Python is `native-<tid>`."""
    seconds = 0.5
    result = run_workload(gilstat, supported_python, "native_thread.py", "--seconds", seconds)
    report, truth = result.report(), result.program_json()
    check_invariants(report, result)
    native = one_thread(report, "native-%d" % truth["native_tid"], result)
    assert native["tid"] == truth["native_tid"] and native["own"] is False, result.describe()
    # It spins alone while the main thread waits in pthread_join with the GIL released.
    assert native["held_s"] >= 0.5 * seconds, result.describe()


# ---------------------------------------------------------------------------------------
# pass-through: exit codes, stdout, stdin


def direct_stdout(python, *args):
    """The workload's stdout when run without gilstat: what must pass through."""
    result = run_process([python.path, workload("exit_code.py")] + [str(a) for a in args])
    assert result.returncode == 0, result.describe()
    return result.stdout


@pytest.mark.parametrize("code", [0, 1, 7, 255])
def test_exit_code_passes_through(gilstat, supported_python, code):
    result = gilstat("run", "--json", "--", supported_python.path, workload("exit_code.py"),
                     code)
    assert result.returncode == code, result.describe()
    result.report()  # a report is printed whatever the exit code


@pytest.mark.parametrize("sig,signum", [("SEGV", 11), ("TERM", 15)])
def test_killed_by_signal_exits_128_plus_n(gilstat, supported_python, sig, signum):
    result = gilstat("run", "--json", "--", supported_python.path, workload("exit_code.py"),
                     0, "--signal", sig)
    assert result.returncode == 128 + signum, result.describe()
    result.report()


def test_stdout_is_byte_exact(gilstat, supported_python):
    # More than a pipe buffer, every byte value, no trailing newline.
    expected = direct_stdout(supported_python, 0, "--emit", 300000)
    assert len(expected) == 300000
    for mode in (["--json"], []):
        result = gilstat("run", *mode, "--", supported_python.path, workload("exit_code.py"),
                         0, "--emit", len(expected))
        assert result.returncode == 0, result.describe()
        assert result.stdout == expected, "stdout differs (%d bytes vs %d) with %s\n%s" % (
            len(result.stdout), len(expected), mode, result.describe())


def test_stdin_passes_through(gilstat, supported_python):
    data = os.urandom(100000)
    result = gilstat("run", "--json", "--", supported_python.path, workload("exit_code.py"),
                     0, "--echo-stdin", stdin=data)
    assert result.returncode == 0, result.describe()
    assert result.stdout == data, result.describe()


def test_text_report_names_threads(gilstat, supported_python):
    # 1 s: long enough for the names to be read (see the short-lived threads test).
    result = gilstat("run", "--", supported_python.path, workload("spin.py"),
                     "--threads", 2, "--seconds", 1.0)
    assert result.returncode == 0, result.describe()
    result.program_json()  # stdout is only the program's
    for name in ("spin-0", "spin-1"):
        assert name in result.stderr_text, result.describe()


# ---------------------------------------------------------------------------------------
# recording: run -o FILE, then report FILE --json


def assert_same(a, b, path="report"):
    if isinstance(a, dict):
        assert isinstance(b, dict), path
        for key in a:
            assert key in b, "%s.%s missing from `gilstat report`" % (path, key)
            assert_same(a[key], b[key], "%s.%s" % (path, key))
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), "%s: %r != %r" % (path, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, "%s[%d]" % (path, i))
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), "%s: %r != %r" % (path, a, b)
    else:
        assert a == b, "%s: %r != %r" % (path, a, b)


def test_recording_reports_the_same_numbers(gilstat, supported_python, tmp_path):
    recording = tmp_path / "spin.gilstat"
    run = gilstat("run", "--json", "-o", recording, "--", supported_python.path,
                  workload("spin.py"), "--threads", 2, "--seconds", 0.5)
    assert run.returncode == 0, run.describe()
    assert recording.is_file() and recording.stat().st_size > 0, run.describe()
    live = run.report()

    report = gilstat("report", recording, "--json")
    assert report.returncode == 0, report.describe()
    saved = json.loads(report.stdout.decode())
    # `recording` describes where the numbers came from (live region or file),
    # so it is the one part that legitimately differs.
    live.pop("recording", None)
    source = saved.pop("recording")
    assert source["from_file"] is True and source["truncated"] is False, source
    assert source["corrupt_chunks"] == 0, source
    assert_same(live, saved)


def test_recording_of_the_spin_demo_takes_at_most_4_bytes_per_event(gilstat, gilstat_bin,
                                                                    heavy, tmp_path):
    """The recording's size goal, measured on the file `record` really writes (header,
    names, GIL table and calibration included). Heavy tier: the encoding does not
    depend on the interpreter, and the run takes 3 s."""
    supported_python = heavy
    spin = os.path.join(os.path.dirname(os.path.realpath(gilstat_bin)), "..", "share",
                        "gilstat", "demo", "spin.py")
    if not os.path.isfile(spin):
        pytest.skip("the demo scripts are not built next to %s" % gilstat_bin)
    recording = tmp_path / "spin.gilstat"
    # The events' encoding: without the held-time profile's and long holds' stacks,
    # which a recording keeps beside them.
    r = gilstat("record", "-o", recording, "--profile-rate", 0, "--hog-threshold", "off",
                "--", supported_python.path, spin, 4, 3.0)
    assert r.returncode == 0, r.describe()
    m = re.search(r"saved .* \((\d+) events, (\d+) drops", r.stderr_text)
    assert m, r.describe()
    events, drops = int(m.group(1)), int(m.group(2))
    assert drops == 0 and events > 1000, r.describe()
    per_event = recording.stat().st_size / events
    print("\n%s: %d events in %d bytes: %.2f bytes/event"
          % (supported_python.version, events, recording.stat().st_size, per_event))
    assert per_event <= 4.0, "%.2f bytes per event\n%s" % (per_event, r.describe())


# ---------------------------------------------------------------------------------------
# unsupported interpreter


@pytest.fixture(scope="session")
def unsupported_python(python):
    if python.supported:
        pytest.skip("Python %s is supported (this test needs an unsupported one, e.g. 3.7)"
                    % python.version)
    return python


def test_unsupported_version_is_refused_clearly(gilstat, unsupported_python):
    expected = direct_stdout(unsupported_python, 0, "--emit", 1000)
    result = gilstat("run", "--json", "--", unsupported_python.path, workload("exit_code.py"),
                     0, "--emit", len(expected))
    # The program still runs normally, and its output is untouched.
    assert result.stdout == expected, result.describe()
    errors = [line for line in result.stderr_text.splitlines()
              if line.startswith("gilstat: error:")]
    assert len(errors) == 1, "expected one `gilstat: error:` line\n" + result.describe()
    major_minor = "%d.%d" % unsupported_python.minor
    assert major_minor in errors[0], "error does not name %s\n%s" % (
        major_minor, result.describe())
    assert result.returncode == 3, result.describe()


def test_unsupported_version_keeps_program_failure(gilstat, unsupported_python):
    # The program's own failure is the more important exit code.
    result = gilstat("run", "--json", "--", unsupported_python.path, workload("exit_code.py"),
                     5)
    assert result.returncode == 5, result.describe()
