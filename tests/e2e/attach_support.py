"""Shared by the attach tests: targets that count their own work, waiting helpers,
and the exact checks of a report against a target's truth (switches ==
switch_number delta, held + wait + released == lifetime). Every target is killed and
reaped in a `finally`."""
import contextlib
import json
import math
import os
import select
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import exact_on_rerun, note_timing_retry, raise_priority, workload
from gotcheck import HOOKED


SPINNERS = 3
WINDOW_S = 1.5
LIFETIME_TOLERANCE_S = 0.001
SHARE_TOLERANCE = 0.10  # the attach window is a slice of the run: looser than run mode
ATTEMPTS = 3
READY_TIMEOUT_S = 20
UNHOOK_AFTER_KILL_S = 1.5  # the probe's heartbeat timeout is 1 s
ATTACH_LATENCY_S = 0.150
CYCLES = 100
RSS_SLACK_KIB = 1024


# ---------------------------------------------------------------------------------------
# targets and helpers


class Target:
    """A workload run directly (not under gilstat) by the interpreter under test, in its
    own session; commands on its stdin, lines from its stdout. Killed and reaped on
    exit from the `with` block whatever happened."""

    def __init__(self, python, script, *args, env=None, prefix=(), python_args=()):
        """`env`: extra environment; `prefix`: argv before the interpreter (a wrapper
        that execs it); `python_args`: interpreter options before the script."""
        self.argv = ([str(a) for a in prefix] + [python.path] + list(python_args)
                     + [workload(script)] + [str(a) for a in args])
        self.err = tempfile.TemporaryFile()
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **(env or {}))
        env.pop("GILSTAT_TEST_PYTHON", None)
        if python.free_threaded:
            env["PYTHON_GIL"] = "1"  # as the `gilstat` fixture does: measure with the GIL
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, env=env, start_new_session=True,
                                     preexec_fn=raise_priority)
        self.pid = self.proc.pid
        self.buffer = b""
        self.seen = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()

    def kill(self):
        if self.proc.poll() is None and self.pid > 0:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        self.err.close()

    def describe(self):
        stderr = b"(closed)"
        if not self.err.closed:
            self.err.seek(0)
            stderr = self.err.read()[-3000:]
        return "target: %s (pid %d, exit %s)\ntarget stdout lines: %s\ntarget stderr:\n%s" % (
            " ".join(self.argv), self.pid, self.proc.poll(), self.seen,
            stderr.decode("utf-8", "replace"))

    def read_line(self, timeout=READY_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no line from the target in %ss\n%s"
                                     % (timeout, self.describe()))
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.proc.wait(timeout=5)
                    raise AssertionError("target closed its stdout\n" + self.describe())
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        self.seen.append(line.decode("utf-8", "replace")[:300])
        return line.decode()

    def expect(self, text, timeout=READY_TIMEOUT_S):
        line = self.read_line(timeout)
        assert line == text, "target said %r, expected %r\n%s" % (line, text, self.describe())

    def send(self, command):
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self, stop=True, timeout=20):
        """Tells the target to stop (when it reads stdin), returns its JSON line, and
        checks it exited 0."""
        if stop:
            self.send("stop")
        self.proc.stdin.close()
        try:
            truth = json.loads(self.read_line(timeout))
        except ValueError:
            raise AssertionError("target output is not JSON\n" + self.describe())
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("target did not exit\n" + self.describe())
        assert code == 0, "target exited %s\n%s" % (code, self.describe())
        assert truth["pid"] == self.pid, self.describe()
        return truth

    def alive(self):
        return self.proc.poll() is None


class Background:
    """A gilstat started without waiting for it; killed and reaped on exit from the
    `with` block. Output goes to files, so a full pipe never blocks it."""

    def __init__(self, gilstat_bin, *args):
        self.argv = [gilstat_bin] + [str(a) for a in args]
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        env.pop("GILSTAT_TEST_PYTHON", None)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=self.err, env=env, start_new_session=True,
                                     preexec_fn=raise_priority)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None and self.proc.pid > 0:
            self.proc.kill()
        self.proc.wait()
        self.out.close()
        self.err.close()

    def wait(self, timeout=30):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("gilstat did not finish in %ss\n%s" % (timeout, self.describe()))
        self.out.seek(0)
        self.err.seek(0)
        return self.proc.returncode, self.out.read(), self.err.read().decode("utf-8", "replace")

    def describe(self):
        stderr = b"(closed)"
        if not self.err.closed:
            self.err.seek(0)
            stderr = self.err.read()[-4000:]
        return "argv: %s\nexit: %s\nstderr:\n%s" % (
            " ".join(self.argv), self.proc.poll(), stderr.decode("utf-8", "replace"))


def wait_until(predicate, timeout, step=0.002):
    """Polls predicate() until it is true; returns the time it took, or None."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        time.sleep(step)


def thread_count(pid):
    return len(os.listdir("/proc/%d/task" % pid))


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def tracer_pid(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    return 0


def all_hooked_names(got):
    return sorted({name for _, _, name in got.slots if name.split("@")[0] in HOOKED})


def wait_hooked(got, timeout=10):
    """Waits until every JUMP_SLOT/GLOB_DAT of the hooked symbols is patched."""
    want = all_hooked_names(got)
    return wait_until(lambda: sorted(set(got.hooked_slots(got.read()))) == want, timeout,
                      step=0.0005)


def wait_restored(got, before, timeout):
    return wait_until(lambda: not got.differences(before, got.read()), timeout, step=0.005)


def load_report(gilstat, path):
    result = gilstat("report", path, "--json")
    assert result.returncode == 0, result.describe()
    try:
        return json.loads(result.stdout.decode())
    except ValueError:
        raise AssertionError("`gilstat report --json` printed no JSON\n" + result.describe())


def thread_named(report, name, ctx):
    matches = [t for t in report["threads"] if t["name"] == name]
    assert len(matches) == 1, "expected one thread named %r, got %s\n%s" % (
        name, [t["name"] for t in report["threads"]], ctx)
    return matches[0]


def the_gil(report, ctx):
    assert len(report["gils"]) == 1, "expected one GIL\n" + ctx
    return report["gils"][0]


# `top` snapshots while the probe is live: it stores CPython's switch_number at an
# acquisition just before it writes that Acquire event, and the snapshot reads the stored
# number after draining the rings, so an acquisition between the two is in the delta but
# not yet in the reconstruction. Exact once detached (record, or a target that exited).
LIVE_SWITCH_SLACK = 3


def check_lifetimes(report, ctx):
    """Every thread: held + wait + released == lifetime (to the µs of rounding)."""
    for t in report["threads"]:
        total = t["held_s"] + t["wait_s"] + t["released_s"]
        assert abs(total - t["lifetime_s"]) <= LIFETIME_TOLERANCE_S, (
            "thread %s: held %.6f + wait %.6f + released %.6f = %.6f != lifetime %.6f\n%s"
            % (t["name"], t["held_s"], t["wait_s"], t["released_s"], total,
               t["lifetime_s"], ctx))


def check_exact(report, truth, python, ctx, pid=None, live=False):
    """What holds by construction for every attach report (no load dependence); `live`
    for a snapshot taken while still attached (see LIVE_SWITCH_SLACK)."""
    assert report["pid"] == (pid or truth["pid"]), ctx
    assert report["python"]["version"] == python.version, ctx
    assert report["python"]["libpython"] == ("shared" if python.shared else "static"), ctx
    assert report["python"]["free_threaded"] is python.free_threaded, ctx
    assert report["drops"] == 0, "events were dropped\n" + ctx
    assert report["duration_s"] > 0, ctx
    gil = the_gil(report, ctx)
    check_switches(gil, ctx, live)
    assert gil["switches"] <= gil["acquisitions"], ctx
    for key in ("seq_gaps", "seq_stale", "anomalies"):
        assert gil.get(key, 0) == 0, "gil %s = %s\n%s" % (key, gil.get(key), ctx)
    threads_hold_s = sum(t["hold_ns"]["total"] for t in report["threads"]) / 1e9
    assert math.isclose(threads_hold_s, gil["hold_ns"]["total"] / 1e9,
                        abs_tol=LIFETIME_TOLERANCE_S), ctx
    check_lifetimes(report, ctx)
    for spinner in truth["threads"]:
        t = thread_named(report, spinner["name"], ctx)
        assert t["tid"] == spinner["native_id"], (spinner, t, ctx)
        assert t["own"] is False and t["acquisitions"] >= 1, (t, ctx)


def check_switches(gil, ctx, live=False):
    behind = gil["switch_number_delta"] - gil["switches"]
    assert behind == 0 or (live and 0 <= behind <= LIVE_SWITCH_SLACK), (
        "%d switches reconstructed, CPython's switch_number moved by %d%s\n%s"
        % (gil["switches"], gil["switch_number_delta"], " (live snapshot)" if live else "",
           ctx))


def check_window_bounds(report, ctx):
    """Nothing happens outside the window: every hold and every thread's lifetime fits
    in duration_s (README: a utilization above 1 means the measurement is wrong)."""
    gil = the_gil(report, ctx)
    duration = report["duration_s"]
    assert gil["utilization"] <= 1.0, "utilization %.6f > 1\n%s" % (gil["utilization"], ctx)
    assert gil["hold_ns"]["total"] / 1e9 <= duration + LIFETIME_TOLERANCE_S, (
        "GIL held %.6f s in a %.6f s window\n%s" % (gil["hold_ns"]["total"] / 1e9, duration,
                                                  ctx))
    for t in report["threads"]:
        assert t["lifetime_s"] <= duration + LIFETIME_TOLERANCE_S, (
            "thread %s lived %.6f s in a %.6f s window\n%s"
            % (t["name"], t["lifetime_s"], duration, ctx))


def held_shares(report, truth, ctx):
    """{spinner name: share of the spinners' total held time}."""
    held = {s["name"]: thread_named(report, s["name"], ctx)["held_s"] for s in truth["threads"]}
    total = sum(held.values())
    assert total > 0, ctx
    return {name: h / total for name, h in held.items()}


def window_shares(truth):
    total = sum(s["window"] for s in truth["threads"])
    assert total > 0, truth
    return {s["name"]: s["window"] / total for s in truth["threads"]}


def format_shares(**columns):
    names = sorted(next(iter(columns.values())))
    return "; ".join("%s: %s" % (n, ", ".join("%s %.3f" % (k, v[n]) for k, v in columns.items()))
                     for n in names)


def in_some_attempt(first, again, check, exact, attempts=ATTEMPTS):
    """check(run) must pass for one of `attempts` runs: `first`, then again() for each
    retry. Only for timing bounds, which a busy machine (a parallel build) can push out
    in one run; a real measurement error repeats in every run. Each retry is reported
    (note_timing_retry), and each rerun passes exact(run) first, never retried."""
    failures, run = [], first
    for i in range(attempts):
        if i:
            run = again()
            exact_on_rerun(exact, run)
        try:
            check(run)
            return run
        except AssertionError as e:
            failures.append(str(e).split("\n")[0])
            if i + 1 < attempts:
                note_timing_retry(i + 1, attempts, e)
    pytest.fail("timing bound failed in all %d attempts:\n%s\nlast:\n%s"
                % (attempts, "\n".join(failures), run.ctx))


def error_lines(stderr_text):
    errors = [l for l in stderr_text.splitlines() if l.startswith("gilstat: error:")]
    hints = [l for l in stderr_text.splitlines() if l.startswith("hint:")]
    return errors, hints


def check_clear_error(result, code, *words):
    """One `gilstat: error:` line naming `words`, one `hint:` line, the exit code."""
    ctx = result.describe()
    errors, hints = error_lines(result.stderr_text)
    assert len(errors) == 1, "expected one `gilstat: error:` line\n" + ctx
    assert len(hints) == 1, "expected one `hint:` line\n" + ctx
    for word in words:
        assert word in errors[0], "error does not mention %r\n%s" % (word, ctx)
    assert result.returncode == code, "exit %s, expected %s\n%s" % (
        result.returncode, code, ctx)
    return errors[0], hints[0]


TRACER = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_SEIZE = 0x4206
if libc.ptrace(PTRACE_SEIZE, int(sys.argv[1]), None, None) != 0:
    print("seize failed: errno %d" % ctypes.get_errno(), flush=True)
    sys.exit(1)
print("seized", flush=True)
sys.stdin.read()  # holds the target until its stdin closes; exiting detaches
"""


@contextlib.contextmanager
def traced_by_helper(pid):
    """A helper process PTRACE_SEIZEs `pid` (TRACER) for the block: a debugger already
    attached. Killed and reaped afterwards; then the target must be untraced again."""
    tracer = subprocess.Popen(["/usr/bin/python3", "-c", TRACER, str(pid)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              start_new_session=True)
    try:
        line = tracer.stdout.readline().decode().strip()
        assert line == "seized", "the tracer helper said %r" % line
        assert tracer_pid(pid) == tracer.pid
        yield tracer
    finally:
        if tracer.poll() is None:
            tracer.kill()
        tracer.wait()
    assert wait_until(lambda: tracer_pid(pid) == 0, 2.0) is not None
