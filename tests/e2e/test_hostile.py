"""Hostile targets (heavy tier): a target that attacks the shared region gilstat reads
(workloads/hostile_region.py) after `gilstat record --pid`, `top --pid --json` or `run`
has started. Whatever it does, gilstat never dies of a signal, never hangs, exits 0 or
1 with one clear line, and any recording it saved reads back with `gilstat report`
(docs/region.md describes the checks).

The region reader is the same for every interpreter, so these run on the heavy tier's
three only. Every target and every gilstat is killed and reaped in a `finally`.
"""
import os
import re
import time

import pytest

from conftest import workload
from gotcheck import GotReader
from attach_support import (READY_TIMEOUT_S, Background, Target, load_report, wait_restored,
                         wait_until)

GILSTAT_TIMEOUT_S = 30  # "never hangs": every gilstat here ends well within this
UNHOOKED_WITHIN_S = 3.0  # told to stop, or its heartbeat timeout (1 s) at the latest
CORRUPT = "gilstat: error: the target's shared region is corrupt: "


def hostile(python):
    target = Target(python, "hostile_region.py")
    target.expect("ready")
    return target


def ask(target, command):
    target.send(command)
    return target.read_line()


def check_ended_cleanly(code, err, ctx, corrupt=None):
    """Exit 0 or 1, never a signal. On 1: exactly one error line, the corrupt-region
    one (matching `corrupt` when given), then its hint. On 0: no error line at all.
    `corrupt` True: it must have ended with that error."""
    assert code in (0, 1), "gilstat exited %s\n%s" % (code, ctx)
    errors = [line for line in err.splitlines() if line.startswith("gilstat: error:")]
    if corrupt is True or (corrupt and code == 1):
        assert code == 1, ctx
    if code == 0:
        assert not errors, ctx
        return None
    assert len(errors) == 1 and errors[0].startswith(CORRUPT), ctx
    lines = err.splitlines()
    assert lines[lines.index(errors[0]) + 1].startswith("hint: "), ctx
    if isinstance(corrupt, str):
        assert re.search(corrupt, errors[0]), ctx
    return errors[0]


def check_reads_back(gilstat, path, ctx):
    """The recording reads back; its threads are the spinners' (when any was seen)."""
    report = load_report(gilstat, str(path))
    names = {t["name"] for t in report["threads"]}
    assert names <= {"spin-0", "spin-1", "MainThread", "sprayer", "gilstat"} or not names, (names, ctx)
    return report


def wait_file(path, process, timeout=READY_TIMEOUT_S):
    """Until `path` exists (record creates it once the region is open)."""
    ok = wait_until(lambda: os.path.exists(path) or process.proc.poll() is not None, timeout,
                    step=0.01)
    assert ok is not None and os.path.exists(path), process.describe()


def record_while(gilstat_bin, gilstat, target, tmp_path, attack, seconds=20, after=None):
    """`gilstat record --pid` on the target; once it has the region, `attack` (a command
    for the target). Returns (exit code, stderr, recording path, the target's answer)."""
    path = tmp_path / "hostile.gst"
    with Background(gilstat_bin, "record", "--pid", target.pid, "-o", path, "-d",
                    seconds) as rec:
        wait_file(path, rec)
        time.sleep(0.3)  # events flowing into the recording
        answer = ask(target, attack)
        if after:
            after()
        code, _, err = rec.wait(GILSTAT_TIMEOUT_S)
    return code, err, path, answer


@pytest.mark.parametrize("attack,expect", [
    ("header-ff", "its header was overwritten"),
    # Sprayed bytes may land only where nothing is read (a free ring): then the
    # record runs to its end with exit 0; usually a ring or the header gives it away.
    ("spray", None),
])
def test_record_pid_attacked(gilstat_bin, gilstat, heavy, tmp_path, attack, expect):
    """The session ends with the error, the probe unhooks (every GOT slot as before the
    attach), and the recording of what came before reads back."""
    with hostile(heavy) as target, GotReader(target.pid, all_slots=True) as got:
        before = got.read()
        code, err, path, answer = record_while(gilstat_bin, gilstat, target, tmp_path,
                                               attack, seconds=6 if attack == "spray" else 20)
        ctx = "answer: %s\nstderr:\n%s\n%s" % (answer, err, target.describe())
        if attack == "header-ff":  # spraying may hit the probe's own code paths' data
            assert wait_restored(got, before, UNHOOKED_WITHIN_S) is not None, ctx
        check_ended_cleanly(code, err, ctx, corrupt=expect or None)
        if expect:
            assert code == 1, ctx
        assert "gilstat: saved %s" % path in err, ctx
        check_reads_back(gilstat, path, ctx)


def test_record_pid_truncate_is_refused(gilstat_bin, gilstat, heavy, tmp_path):
    """The region is sealed at its size: the target's ftruncate fails (EPERM), and the
    recording goes on to its end."""
    with hostile(heavy) as target:
        code, err, path, answer = record_while(gilstat_bin, gilstat, target, tmp_path,
                                               "truncate", seconds=2)
        ctx = "answer: %s\nstderr:\n%s\n%s" % (answer, err, target.describe())
        assert answer == "truncate EPERM grow EPERM", ctx
        check_ended_cleanly(code, err, ctx)
        assert code == 0, ctx
        report = check_reads_back(gilstat, path, ctx)
        assert {"spin-0", "spin-1"} <= {t["name"] for t in report["threads"]}, ctx


def test_top_pid_json_header_overwritten(gilstat_bin, heavy, tmp_path):
    with hostile(heavy) as target:
        with Background(gilstat_bin, "top", "--pid", target.pid, "--json", "-i", "0.2",
                        "-d", "20") as top:
            # A first interval printed: top has the region.
            ok = wait_until(lambda: os.fstat(top.out.fileno()).st_size > 0
                            or top.proc.poll() is not None, READY_TIMEOUT_S, step=0.01)
            assert ok is not None, top.describe()
            answer = ask(target, "header-ff")
            code, out, err = top.wait(GILSTAT_TIMEOUT_S)
        ctx = "answer: %s\nstderr:\n%s\n%s" % (answer, err, target.describe())
        check_ended_cleanly(code, err, ctx, corrupt="its header was overwritten")
        assert code == 1, ctx
        assert out.startswith(b"{"), ctx  # the intervals before it were printed


@pytest.mark.parametrize("attack,expect", [
    ("header-ff", "its header was overwritten"),
    ("spray", None),
    ("truncate", None),
])
def test_run_attacked(gilstat, heavy, tmp_path, attack, expect):
    """Under `run` the program is left alone: gilstat returns its exit code (0) and
    prints the error; the recording of what came before reads back."""
    path = tmp_path / "run.gst"
    result = gilstat("run", "-o", path, "--", heavy.path, workload("hostile_region.py"),
                     "--attack", attack, "--after", "1", "--seconds", "2.5",
                     timeout=GILSTAT_TIMEOUT_S)
    ctx = result.describe()
    assert result.returncode == 0, ctx  # the program's exit code
    lines = result.stdout.decode().splitlines()
    assert lines and lines[0] == "ready", ctx
    errors = [l for l in result.stderr_text.splitlines() if l.startswith("gilstat: error:")]
    if expect:
        assert len(errors) == 1 and errors[0].startswith(CORRUPT) and expect in errors[0], ctx
    else:
        assert len(errors) <= 1 and all(e.startswith(CORRUPT) for e in errors), ctx
    if attack == "truncate":
        assert "truncate EPERM grow EPERM" in lines, ctx
        assert not errors, ctx
    check_reads_back(gilstat, path, ctx)


@pytest.mark.parametrize("kind,expect", [
    ("fifo", r"its fd \d+ is a FIFO, not a memfd"),
    ("file", r"its fd \d+ is a file, not a memfd"),
    ("memfd", r"its fd \d+ is not sealed at its size"),
])
def test_record_pid_region_fd_replaced(gilstat_bin, gilstat, heavy, tmp_path, kind, expect):
    """The probe reuses its region at a later attach, by fd number: a target that put
    something else at that number before the attach (a FIFO, a copy of the region in a
    file or in an unsealed memfd) is refused before anything is mapped or recorded."""
    with hostile(heavy) as target, GotReader(target.pid, all_slots=True) as got:
        before = got.read()
        first = tmp_path / "first.gst"
        result = gilstat("record", "--pid", target.pid, "-o", first, "-d", "0.5",
                         timeout=GILSTAT_TIMEOUT_S)
        assert result.returncode == 0, result.describe() + target.describe()
        answer = ask(target, "replace " + kind)
        assert answer.startswith("replaced "), answer
        second = tmp_path / "second.gst"
        result = gilstat("record", "--pid", target.pid, "-o", second, "-d", "2",
                         timeout=GILSTAT_TIMEOUT_S)
        ctx = result.describe() + target.describe()
        check_ended_cleanly(result.returncode, result.stderr_text, ctx, corrupt=expect)
        assert result.returncode == 1, ctx
        assert "fd %s " % answer.split()[1] in result.stderr_text, ctx
        assert not second.exists(), ctx  # refused before the recording was created
        check_reads_back(gilstat, first, ctx)
        # The probe the refused attach started unhooks itself: no heartbeat came.
        assert wait_restored(got, before, UNHOOKED_WITHIN_S) is not None, ctx
        assert target.alive(), ctx
