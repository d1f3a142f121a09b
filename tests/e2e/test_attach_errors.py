"""Attach errors end to end: each bad target (no such process, not CPython, an
unsupported version, another tracer, busy in the loader, a second attach, no
permission) gets one clear line, a hint and the documented exit code, and the target
is left untouched; a target that exits while attached; `top` in a real terminal.

Heavy tier (the `heavy` fixture), except the unsupported-version case, which runs
for the unsupported interpreter's entry."""
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import Result
from gotcheck import GotReader, probe_mapped
from attach_support import (Target, Background, wait_until, tracer_pid, wait_hooked,
                            wait_restored, load_report, check_exact, check_clear_error,
                            traced_by_helper)


# ---------------------------------------------------------------------------------------
# errors: one clear line, a hint, the documented exit code, the target untouched


def attach_commands(pid, directory):
    return [
        ("record", "--pid", pid, "-o", os.path.join(str(directory), "err.gilstat"),
         "--duration", 0.5),
        ("top", "--pid", pid, "--json", "--duration", 0.5),
        ("attach", "--pid", pid, "--check"),
    ]


def assert_untouched(target, got=None, before=None, tracer=0):
    assert target.alive(), "target died\n" + target.describe()
    assert not probe_mapped(target.pid), "the probe was loaded\n" + target.describe()
    assert tracer_pid(target.pid) == tracer, "traced by %d\n%s" % (
        tracer_pid(target.pid), target.describe())
    if got is not None:
        problems = got.differences(before, got.read())
        assert not problems, "GOT changed:\n%s\n%s" % ("\n".join(problems), target.describe())


def test_error_no_such_process(gilstat, heavy, tmp_path):
    with open("/proc/sys/kernel/pid_max") as f:
        pid = int(f.read()) - 1
    while os.path.exists("/proc/%d" % pid):
        pid -= 1
    for args in attach_commands(pid, tmp_path):
        result = gilstat(*args)
        check_clear_error(result, 1, str(pid))
        assert not result.stdout, result.describe()


def read_comm(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().strip()


def test_error_not_cpython(gilstat, heavy, tmp_path):
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        # Popen may return once the child's exec has begun (vfork): until the exec
        # is done the process still shows the test runner's name.
        assert wait_until(lambda: read_comm(proc.pid) == "sleep", 10) is not None, \
            read_comm(proc.pid)
        for args in attach_commands(proc.pid, tmp_path):
            result = gilstat(*args)
            check_clear_error(result, 3, str(proc.pid), "sleep")
            assert proc.poll() is None and not probe_mapped(proc.pid), result.describe()
            assert tracer_pid(proc.pid) == 0, result.describe()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def attach_unsupported_python(python):
    if python.supported:
        pytest.skip("Python %s is supported (this test runs for an unsupported one, e.g. "
                    "the 3.7 run)" % python.version)
    return python


def test_error_unsupported_version(gilstat, attach_unsupported_python, tmp_path):
    python = attach_unsupported_python
    seconds = 3.0
    with Target(python, "attach_block.py", "--mode", "sleep",
                "--seconds", seconds) as target:
        target.expect("ready")
        for args in attach_commands(target.pid, tmp_path):
            result = gilstat(*args)
            check_clear_error(result, 3, str(target.pid), "%d.%d" % python.minor)
            assert_untouched(target)
        out = target.finish(stop=False)
        assert out["elapsed_s"] >= seconds - 0.05, target.describe()


def test_error_another_tracer(gilstat, heavy, tmp_path):
    with Target(heavy, "attach_spin.py", "--threads", 2) as target:
        target.expect("ready")
        with GotReader(target.pid, all_slots=True) as got:
            before = got.read()
            with traced_by_helper(target.pid) as tracer:
                for args in attach_commands(target.pid, tmp_path):
                    result = gilstat(*args)
                    check_clear_error(result, 1, str(target.pid), "traced", str(tracer.pid))
                    assert_untouched(target, got, before, tracer=tracer.pid)
            # Once the tracer is gone, attaching works.
            result = gilstat("record", "--pid", target.pid, "-o", tmp_path / "ok.gilstat",
                             "--duration", 0.2)
            assert result.returncode == 0, result.describe()
        truth = target.finish()
    assert all(t["iterations"] > 0 for t in truth["threads"]), truth


def blocking_init_library(gilstat_bin):
    """The test library whose constructor blocks (built with the attach tests)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(gilstat_bin))),
                        "tests", "attach", "libgilstat_blocking_init_lib.so")
    if not os.path.isfile(path):
        pytest.skip("%s is not built (the attach tests build it)" % path)
    return path


BUSY = "the target is busy in the dynamic loader or allocator; try again"


def test_error_target_busy_in_the_loader(gilstat, gilstat_bin, heavy, tmp_path):
    """A target whose only thread is inside dlopen (holding the loader's lock): record and
    top refuse to make it dlopen the probe, exit 1 with the busy error, leave it
    untouched; once its dlopen is over, attaching works."""
    fifo = str(tmp_path / "release")
    os.mkfifo(fifo)
    with Target(heavy, "attach_dlopen_blocked.py", blocking_init_library(gilstat_bin),
                env={"GILSTAT_TEST_BLOCK_FIFO": fifo}) as target:
        target.expect("ready")
        with GotReader(target.pid, all_slots=True) as got:
            before = got.read()
            # record and top (attach --check injects nothing)
            for args in attach_commands(target.pid, tmp_path)[:2]:
                started = time.monotonic()
                result = gilstat(*args)
                took = time.monotonic() - started
                _, hint = check_clear_error(result, 1, BUSY)
                assert "ld-linux" in hint and "untouched" in hint, result.describe()
                assert_untouched(target, got, before)
                # The search gives up at 1.5 s (3/4 of the 2 s attach timeout).
                assert took < 10, "%s took %.1f s\n%s" % (args[0], took, result.describe())
            with open(fifo, "w") as f:
                f.write("x")
            target.expect("loaded")
            result = gilstat("record", "--pid", target.pid, "-o", tmp_path / "ok.gilstat",
                             "--duration", 0.2)
            assert result.returncode == 0, result.describe() + "\n" + target.describe()
            assert wait_restored(got, before, 1.0) is not None, "\n".join(
                got.differences(before, got.read()))
        target.finish()


def test_target_exits_while_recorded(gilstat, gilstat_bin, heavy, tmp_path):
    """record --pid on a target that exits: gilstat says so, saves what it saw, exits 0."""
    path = tmp_path / "exits.gilstat"
    with Target(heavy, "attach_spin.py", "--threads", 2,
                "--seconds", 1.0) as target:
        target.expect("ready")
        with Background(gilstat_bin, "record", "--pid", target.pid, "-o", path,
                        "--duration", 30) as rec:
            truth = target.finish(stop=False)
            exited = time.monotonic()
            code, _, err = rec.wait(timeout=10)
            noticed = time.monotonic() - exited
            ctx = rec.describe() + "\n" + target.describe()
    assert code == 0, ctx
    assert "process %d exited" % truth["pid"] in err, ctx
    assert noticed < 2.0, "gilstat took %.2f s to notice the exit\n%s" % (noticed, ctx)
    report = load_report(gilstat, path)
    check_exact(report, truth, heavy, ctx + "\n" + json.dumps(report)[:4000])


def test_target_exits_while_topped(gilstat_bin, heavy):
    with Target(heavy, "attach_spin.py", "--threads", 2,
                "--seconds", 1.0) as target:
        target.expect("ready")
        with Background(gilstat_bin, "top", "--pid", target.pid, "--json", "--interval", 0.25,
                        "--duration", 30) as top:
            truth = target.finish(stop=False)
            code, out, err = top.wait(timeout=10)
            ctx = top.describe() + "\n" + target.describe() + "\nstdout:\n" + \
                out.decode()[-4000:]
    assert code == 0, ctx
    assert "process %d exited" % truth["pid"] in err, ctx
    lines = out.decode().splitlines()
    assert lines, ctx
    check_exact(json.loads(lines[-1])["since_attach"], truth, heavy, ctx)


def test_error_second_concurrent_attach(gilstat, gilstat_bin, heavy, tmp_path):
    with Target(heavy, "attach_spin.py", "--threads", 2) as target:
        target.expect("ready")
        with GotReader(target.pid, all_slots=True) as got:
            before = got.read()
            first_path = tmp_path / "first.gilstat"
            with Background(gilstat_bin, "record", "--pid", target.pid, "-o", first_path,
                            "--duration", 3) as first:
                assert wait_hooked(got) is not None, first.describe()
                for args in attach_commands(target.pid, tmp_path)[:2]:
                    result = gilstat(*args)
                    check_clear_error(result, 1, str(target.pid), "already attached")
                assert first.proc.poll() is None, first.describe()
                code, _, err = first.wait()
                ctx = first.describe() + "\n" + target.describe()
            assert code == 0, ctx
            assert wait_restored(got, before, 1.0) is not None, "\n".join(
                got.differences(before, got.read()))
            report = load_report(gilstat, first_path)
        truth = target.finish()
    # The refused attaches did not disturb the first one.
    check_exact(report, truth, heavy, ctx + "\n" + json.dumps(report)[:4000])
    assert report["duration_s"] >= 2.9, ctx


def unprivileged_prefix():
    for prefix in (["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
                   ["runuser", "-u", "nobody", "--"]):
        if shutil.which(prefix[0]) is None:
            continue
        try:
            probe = subprocess.run(prefix + ["id", "-u"], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, timeout=10, cwd="/")
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0 and probe.stdout.strip() not in (b"", b"0"):
            return prefix
    return None


def test_error_permission_denied(gilstat_bin, heavy, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root, to run gilstat as another user against a root-owned target")
    prefix = unprivileged_prefix()
    if prefix is None:
        pytest.skip("neither `setpriv --reuid=65534` nor `runuser -u nobody` works here")
    # A copy of the binary and probe that the unprivileged user can execute (the build
    # tree may be under a private home).
    install = tempfile.mkdtemp(prefix="gilstat-perm-")
    try:
        os.chmod(install, 0o755)
        os.makedirs(os.path.join(install, "bin"))
        os.makedirs(os.path.join(install, "lib", "gilstat"))
        binary = os.path.join(install, "bin", "gilstat")
        shutil.copy2(gilstat_bin, binary)
        probe_so = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(gilstat_bin))),
                                "lib", "gilstat", "libgilstat_probe.so")
        if os.path.exists(probe_so):
            shutil.copy2(probe_so, os.path.join(install, "lib", "gilstat"))
        for root, dirs, files in os.walk(install):
            for name in dirs + files:
                os.chmod(os.path.join(root, name), 0o755)
        writable = os.path.join(install, "out")  # for record's -o
        os.makedirs(writable)
        os.chmod(writable, 0o777)
        with Target(heavy, "attach_spin.py", "--threads", 2) as target:
            target.expect("ready")
            with GotReader(target.pid, all_slots=True) as got:
                before = got.read()
                for args in attach_commands(target.pid, writable):
                    argv = prefix + [binary] + [str(a) for a in args]
                    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          timeout=30, cwd="/")
                    result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
                    error, hint = check_clear_error(result, 4, str(target.pid))
                    assert "CAP_SYS_PTRACE" in hint or "ptrace" in hint.lower(), \
                        result.describe()
                    assert_untouched(target, got, before)
            truth = target.finish()
        assert all(t["iterations"] > 0 for t in truth["threads"]), truth
    finally:
        shutil.rmtree(install, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# top in a real terminal (tmux): the table, `q` quits, the terminal is restored


def test_top_in_a_terminal_quits_on_q(gilstat_bin, heavy, tmp_path):
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux is not installed (scripts/install-deps installs it)")
    rc_file, before_file, after_file = (tmp_path / "rc", tmp_path / "stty.before",
                                        tmp_path / "stty.after")
    server = [tmux, "-L", "gilstat-test-%d" % os.getpid(), "-f", "/dev/null"]
    with Target(heavy, "attach_spin.py", "--threads", 2) as target:
        target.expect("ready")
        with GotReader(target.pid, all_slots=True) as got:
            before = got.read()
            script = ("stty -g > %s; %s top --pid %d --interval 0.3; echo $? > %s.tmp; "
                      "stty -g > %s; mv %s.tmp %s; sleep 60" % (
                          before_file, gilstat_bin, target.pid, rc_file, after_file, rc_file,
                          rc_file))
            screen = [""]

            def capture():
                screen[0] = subprocess.run(server + ["capture-pane", "-p", "-t", "top"],
                                           stdout=subprocess.PIPE, timeout=10
                                           ).stdout.decode("utf-8", "replace")
                return screen[0]

            try:
                subprocess.run(server + ["new-session", "-d", "-s", "top", "-x", "160",
                                         "-y", "50", "sh", "-c", script],
                               check=True, timeout=10)
                shown = wait_until(
                    lambda: all(w in capture() for w in
                                ("THREAD", "HELD%", "spin-0", "spin-1", "q quit",
                                 "pid %d" % target.pid)), 10, step=0.1)
                assert shown is not None, "the table never showed:\n" + screen[0]
                assert not rc_file.exists(), screen[0]
                assert got.hooked_slots(got.read()), "not hooked while top runs"
                subprocess.run(server + ["send-keys", "-t", "top", "q"], check=True, timeout=10)
                quit_s = wait_until(rc_file.exists, 5, step=0.02)
                assert quit_s is not None, "gilstat top still running 5 s after `q`:\n" + \
                    capture()
                assert quit_s <= 2.0, "gilstat top took %.2f s to quit on `q`" % quit_s
                assert rc_file.read_text().strip() == "0", (rc_file.read_text(), capture())
                assert before_file.read_text() == after_file.read_text(), (
                    "terminal settings not restored: %r before, %r after"
                    % (before_file.read_text(), after_file.read_text()))
                print("\n`q` quit gilstat top in %.3f s" % quit_s)
            finally:
                subprocess.run(server + ["kill-server"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=10)
            assert wait_restored(got, before, 1.0) is not None, "\n".join(
                got.differences(before, got.read()))
        truth = target.finish()
    assert all(t["iterations"] > 0 for t in truth["threads"]), truth
