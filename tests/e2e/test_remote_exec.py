"""`--method remote-exec|auto` (PEP 768, CPython 3.14+) end to end, with the real binary
on real targets: the probe loaded by a script the target's main thread runs at a safe
point, instead of a ptrace stop.

What is checked, for each 3.14+ interpreter (older ones skip with the reason, except the
usage-error test, which runs only on them):
- a spinning target recorded through remote-exec gives the exact numbers of a ptrace
  attach (switches == CPython's switch_number delta, held + wait + released == lifetime
  per thread), the GOT slots are back to their values after the detach, the script ran
  exactly once (the target's own audit hook says so), and its staging directory is gone;
- a second attach reuses the loaded probe;
- remote debugging disabled in the target (PYTHON_DISABLE_REMOTE_DEBUG,
  -X disable-remote-debug): one error line + hint under remote-exec, ptrace under auto;
- a main thread blocked in a C call (time.sleep): remote-exec gives up after its 2 s
  timeout with a clear error and the request is withdrawn (the script never runs, not
  even when the sleep ends); auto falls back to ptrace; a gilstat SIGKILLed before it
  could withdraw leaves a request that runs later but does nothing and cleans up (these
  two wait out the timeout, ~9 s each: heavy tier, so the newest Debian build runs them);
- a target that another process already traces (a debugger): ptrace is refused,
  remote-exec (which only writes memory) works;
- a target in its own mount namespace that sees neither our probe library nor our
  temporary directory (skipped without CAP_SYS_ADMIN).

The targets' main threads poll stdin with short select() timeouts (attach_spin.py
--poll): remote-exec needs the main thread to return to bytecode.
"""
import json
import os
import subprocess
import time

import pytest

from gotcheck import GotReader, probe_mapped
from attach_support import (SPINNERS, Background, Target, check_clear_error, check_exact,
                         check_window_bounds, load_report, traced_by_helper, tracer_pid,
                         wait_restored, wait_until)

WINDOW_S = 1.5
POLL_S = 0.05
SAFE_POINT_TIMEOUT_S = 2.0  # gilstat's own (remote_exec_load.hpp)
FALLBACK_NOTE = "gilstat: note: not using remote-exec"


@pytest.fixture(scope="session")
def remote_python(supported_python):
    if supported_python.minor < (3, 14):
        pytest.skip("remote-exec (PEP 768 sys.remote_exec) needs CPython 3.14+; this is %s"
                    % supported_python.version)
    return supported_python


@pytest.fixture(scope="session")
def pre_pep768_python(supported_python):
    if supported_python.minor >= (3, 14):
        pytest.skip("CPython %s has PEP 768: the usage error is for older interpreters"
                    % supported_python.version)
    return supported_python


def staged_leftovers(directory):
    return sorted(os.listdir(str(directory)))


def probe_copies(pid):
    """Distinct probe objects mapped in pid (one after any number of attaches): the
    library, or its memfd copy "/memfd:gilstat:<name>" (not the region, "/memfd:gilstat")."""
    with open("/proc/%d/maps" % pid) as f:
        return {line.split(None, 5)[5].strip() for line in f
                if len(line.split(None, 5)) > 5 and ("libgilstat_probe" in line
                                                     or "memfd:gilstat:" in line)}


def record_remote(gilstat, python, tmp_path, method="remote-exec", env=None, prefix=(),
                  attaches=1):
    """Records a spinning target `attaches` times with --method; returns (results, report of
    the last, truth, ctx, tmpdir). The target's TMPDIR is a fresh directory of this test, so
    gilstat's staging directory lands (and must vanish) there."""
    tmpdir = tmp_path / "target-tmp"
    tmpdir.mkdir(exist_ok=True)
    env = dict({"TMPDIR": str(tmpdir)}, **(env or {}))
    results = []
    with Target(python, "attach_spin.py", "--threads", SPINNERS, "--poll", POLL_S,
                env=env, prefix=prefix) as target:
        target.expect("ready")
        time.sleep(0.2)
        target.send("mark")
        target.expect("marked")
        with GotReader(target.pid, all_slots=True) as got:
            before = got.read()
            assert not got.hooked_slots(before), "hooked before the attach\n" + target.describe()
            for i in range(attaches):
                path = tmp_path / ("remote-%d.gilstat" % i)
                result = gilstat("record", "--pid", target.pid, "--method", method, "-o", path,
                                 "--duration", WINDOW_S if i == attaches - 1 else 0.3)
                results.append(result)
                ctx = result.describe() + "\n" + target.describe()
                assert result.returncode == 0, ctx
                # record returns once the probe confirmed the unhook.
                assert wait_restored(got, before, 1.0) is not None, "GOT not restored:\n%s\n%s" % (
                    "\n".join(got.differences(before, got.read())), ctx)
            copies = probe_copies(target.pid)
        truth = target.finish()
        ctx = "\n".join(r.describe() for r in results) + "\n" + target.describe()
    assert len(copies) == 1, "probe copies in the target: %s\n%s" % (copies, ctx)
    report = load_report(gilstat, path)
    ctx += "\nreport:\n" + json.dumps(report)[:6000]
    return results, report, truth, ctx, tmpdir


def test_remote_exec_record_exact(gilstat, remote_python, tmp_path):
    results, report, truth, ctx, tmpdir = record_remote(gilstat, remote_python, tmp_path)
    check_exact(report, truth, remote_python, ctx)
    check_window_bounds(report, ctx)
    assert report["duration_s"] >= WINDOW_S - 0.05, ctx
    assert FALLBACK_NOTE not in results[0].stderr_text, ctx
    # The request ran exactly once, from the staging directory in the target's TMPDIR,
    # and that directory is gone.
    assert len(truth["remote_scripts"]) == 1, ctx
    assert truth["remote_scripts"][0].startswith(str(tmpdir) + "/gilstat-"), ctx
    assert staged_leftovers(tmpdir) == [], ctx
    print("\nremote-exec record on %s: %d switches = switch_number delta %d"
          % (remote_python.version, report["gils"][0]["switches"],
             report["gils"][0]["switch_number_delta"]))


def test_remote_exec_second_attach_reuses_probe(gilstat, remote_python, tmp_path):
    """Two remote-exec attaches in a row: both scripts run, one probe copy is mapped (the
    second dlopen by soname finds the first), and the last recording is exact."""
    results, report, truth, ctx, tmpdir = record_remote(gilstat, remote_python, tmp_path,
                                                        attaches=2)
    check_exact(report, truth, remote_python, ctx)
    assert len(truth["remote_scripts"]) == 2, ctx
    assert staged_leftovers(tmpdir) == [], ctx


@pytest.mark.parametrize("how", ["environment", "x-option"])
def test_remote_exec_disabled(gilstat, remote_python, tmp_path, how):
    env = {"PYTHON_DISABLE_REMOTE_DEBUG": "1"} if how == "environment" else {}
    python_args = ["-X", "disable-remote-debug"] if how == "x-option" else []
    with Target(remote_python, "attach_spin.py", "--threads", 1, "--poll", POLL_S,
                env=env, python_args=python_args) as target:
        target.expect("ready")
        result = gilstat("record", "--pid", target.pid, "--method", "remote-exec", "-o",
                         tmp_path / "disabled.gilstat", "--duration", 0.2)
        error, hint = check_clear_error(result, 1, "remote debugging is disabled",
                                        str(target.pid))
        assert ("PYTHON_DISABLE_REMOTE_DEBUG" if how == "environment"
                else "-X disable-remote-debug") in error, result.describe()
        assert "--method ptrace" in hint, result.describe()
        assert not probe_mapped(target.pid), "a refused attach loaded the probe\n" + \
            target.describe()
        assert not os.path.exists(tmp_path / "disabled.gilstat"), result.describe()
        check = gilstat("attach", "--pid", target.pid, "--check", "--method", "remote-exec")
        check_clear_error(check, 1, "remote debugging is disabled")
        # auto: ptrace instead, saying why.
        auto = gilstat("record", "--pid", target.pid, "--method", "auto", "-o",
                       tmp_path / "auto.gilstat", "--duration", 0.5)
        assert auto.returncode == 0, auto.describe()
        assert FALLBACK_NOTE in auto.stderr_text and "disabled" in auto.stderr_text, \
            auto.describe()
        truth = target.finish()
    assert truth["remote_scripts"] == [], target.describe()
    report = load_report(gilstat, tmp_path / "auto.gilstat")
    gil = report["gils"][0]
    assert gil["switches"] == gil["switch_number_delta"], auto.describe()


def test_remote_exec_blocked_main_thread_withdraws(gilstat, gilstat_bin, remote_python,
                                                   tmp_path, heavy):
    """The main thread sleeps in time.sleep (no bytecode, no safe point): remote-exec
    fails after its timeout with one clear line and withdraws the request, so the script
    does not run when the sleep ends (the target's audit hook would list it); nothing is
    loaded and the staging directory is gone. auto then attaches with ptrace."""
    sleep_s = 2 * SAFE_POINT_TIMEOUT_S + 5  # both attempts happen inside the sleep
    tmpdir = tmp_path / "target-tmp"
    tmpdir.mkdir()
    with Target(remote_python, "attach_block.py", "--mode", "sleep", "--seconds", sleep_s,
                env={"TMPDIR": str(tmpdir)}) as target:
        target.expect("ready")
        started = time.monotonic()
        result = gilstat("record", "--pid", target.pid, "--method", "remote-exec", "-o",
                         tmp_path / "blocked.gilstat", "--duration", 0.2)
        took = time.monotonic() - started
        ctx = result.describe() + "\n" + target.describe()
        check_clear_error(result, 1, "no safe point", "withdrawn")
        assert SAFE_POINT_TIMEOUT_S - 0.1 <= took <= SAFE_POINT_TIMEOUT_S + 3, (took, ctx)
        assert not probe_mapped(target.pid), "probe loaded by a failed remote-exec\n" + ctx
        assert staged_leftovers(tmpdir) == [], ctx

        with Background(gilstat_bin, "record", "--pid", target.pid, "--method", "auto", "-o",
                        tmp_path / "auto.gilstat", "--duration", 0.3) as auto:
            code, _, err = auto.wait()
            auto_ctx = auto.describe()
        assert code == 0, auto_ctx
        assert FALLBACK_NOTE in err and "no safe point" in err, auto_ctx
        assert target.alive(), "the sleep ended before the fallback attach: make it longer\n" \
            + target.describe()
        # The sleep ends; the main thread runs bytecode again: a request left pending
        # would run now.
        truth = target.finish(stop=False, timeout=sleep_s + 10)
        final = target.describe()
    assert truth["remote_scripts"] == [], "the withdrawn request ran later\n" + final
    assert truth["elapsed_s"] >= sleep_s - 0.05, truth
    target_stderr = final.split("target stderr:\n", 1)[1].strip()
    assert target_stderr == "", "the target printed something\n" + final
    assert staged_leftovers(tmpdir) == [], ctx
    report = load_report(gilstat, tmp_path / "auto.gilstat")
    assert report["pid"] == truth["pid"], auto_ctx


def test_remote_exec_sigkilled_gilstat_leaves_nothing_that_runs(gilstat_bin, remote_python,
                                                                tmp_path, heavy):
    """gilstat is SIGKILLed while its request waits for a safe point (main thread in
    time.sleep), so it can neither withdraw the request nor remove its files. When the
    sleep ends CPython runs the script (the audit hook lists it), which finds itself
    stale: it loads nothing and removes its staging directory."""
    sleep_s = 2 * SAFE_POINT_TIMEOUT_S + 4  # past the script's deadline (safe point + claim)
    tmpdir = tmp_path / "target-tmp"
    tmpdir.mkdir()

    def staged():
        return [d for d in staged_leftovers(tmpdir) if os.path.exists(tmpdir / d / "request")]

    with Target(remote_python, "attach_block.py", "--mode", "sleep", "--seconds", sleep_s,
                env={"TMPDIR": str(tmpdir)}) as target:
        target.expect("ready")
        with Background(gilstat_bin, "record", "--pid", target.pid, "--method", "remote-exec",
                        "-o", tmp_path / "killed.gilstat", "--duration", 1) as rec:
            assert wait_until(staged, 5.0) is not None, rec.describe()
            time.sleep(0.5)  # the request goes into the thread state right after the files
            assert rec.proc.poll() is None, rec.describe()
            rec.proc.kill()
            rec.proc.wait()
        assert len(staged()) == 1, staged_leftovers(tmpdir)
        truth = target.finish(stop=False, timeout=sleep_s + 10)
        final = target.describe()
    assert len(truth["remote_scripts"]) == 1, "the pending request did not run\n" + final
    assert truth["probe_loaded"] is False, "a stale request loaded the probe\n" + final
    assert staged_leftovers(tmpdir) == [], "the stale script left its files\n" + final
    assert final.split("target stderr:\n", 1)[1].strip() == "", final


def test_remote_exec_needs_pep768(gilstat, pre_pep768_python, tmp_path):
    """Before 3.14 --method remote-exec is a usage error (exit 2) and the target is not
    touched; auto attaches with ptrace and says nothing about remote-exec."""
    with Target(pre_pep768_python, "attach_spin.py", "--threads", 1) as target:
        target.expect("ready")
        with GotReader(target.pid, all_slots=True) as got:
            before = got.read()
            result = gilstat("record", "--pid", target.pid, "--method", "remote-exec", "-o",
                             tmp_path / "old.gilstat", "--duration", 0.2)
            check_clear_error(result, 2, "3.14", str(target.pid))
            assert not probe_mapped(target.pid), result.describe()
            assert not got.differences(before, got.read()), result.describe()
        auto = gilstat("record", "--pid", target.pid, "--method", "auto", "-o",
                       tmp_path / "auto.gilstat", "--duration", 0.3)
        assert auto.returncode == 0, auto.describe()
        assert "remote-exec" not in auto.stderr_text, auto.describe()
        target.finish()


def test_remote_exec_while_another_tracer_attached(gilstat, remote_python, tmp_path):
    """A debugger has PTRACE_SEIZEd the target: a ptrace attach is refused (one clear
    line), remote-exec and auto attach anyway and the numbers are exact."""
    with Target(remote_python, "attach_spin.py", "--threads", SPINNERS, "--poll", POLL_S,
                env={"TMPDIR": str(tmp_path)}) as target:
        target.expect("ready")
        with traced_by_helper(target.pid) as tracer:
            refused = gilstat("record", "--pid", target.pid, "-o", tmp_path / "no.gilstat",
                              "--duration", 0.2)
            check_clear_error(refused, 1, "traced", str(tracer.pid))
            results = []
            for method in ("auto", "remote-exec"):
                results.append(gilstat("record", "--pid", target.pid, "--method", method, "-o",
                                       tmp_path / (method + ".gilstat"), "--duration", 1.0))
                assert results[-1].returncode == 0, results[-1].describe()
                assert FALLBACK_NOTE not in results[-1].stderr_text, results[-1].describe()
            assert tracer_pid(target.pid) == tracer.pid, "the tracer lost the target"
        truth = target.finish()
        ctx = "\n".join(r.describe() for r in results) + "\n" + target.describe()
    assert len(truth["remote_scripts"]) == 2, ctx
    report = load_report(gilstat, tmp_path / "remote-exec.gilstat")
    check_exact(report, truth, remote_python, ctx)


def test_remote_exec_other_mount_namespace(gilstat, remote_python, gilstat_bin, tmp_path):
    """The target runs in its own mount namespace where gilstat's probe directory is
    hidden under an empty tmpfs and its TMPDIR exists only there: gilstat must stage
    through /proc/PID/root and hand over a copy of the probe (loaded from a memfd)."""
    probe_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(gilstat_bin))),
                             "lib", "gilstat")
    setup = 'mount -t tmpfs gilstat-test "$0" && mkdir "$0/tmp" && exec "$@"'
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup, probe_dir]
    probe = subprocess_ok(prefix + ["true"])
    if probe is not None:
        pytest.skip("cannot make a private mount namespace here (%s)" % probe)
    private_tmp = os.path.join(probe_dir, "tmp")
    assert not os.path.exists(private_tmp), "left over from an earlier run: " + private_tmp
    with Target(remote_python, "attach_spin.py", "--threads", SPINNERS, "--poll", POLL_S,
                env={"TMPDIR": private_tmp}, prefix=prefix) as target:
        target.expect("ready")
        time.sleep(0.2)
        result = gilstat("record", "--pid", target.pid, "--method", "remote-exec", "-o",
                         tmp_path / "ns.gilstat", "--duration", 1.0)
        ctx = result.describe() + "\n" + target.describe()
        assert result.returncode == 0, ctx
        copies = probe_copies(target.pid)
        assert copies and all("memfd:gilstat" in c for c in copies), (copies, ctx)
        leftovers = os.listdir("/proc/%d/root%s" % (target.pid, private_tmp))
        truth = target.finish()
    assert leftovers == [], (leftovers, ctx)
    assert not os.path.exists(private_tmp), "the target's TMPDIR leaked into our namespace"
    assert len(truth["remote_scripts"]) == 1, ctx
    assert truth["remote_scripts"][0].startswith(private_tmp + "/gilstat-"), ctx
    report = load_report(gilstat, tmp_path / "ns.gilstat")
    check_exact(report, truth, remote_python, ctx)


def subprocess_ok(argv):
    """None when argv runs and exits 0, else a short reason."""
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    except OSError as e:
        return str(e)
    if r.returncode != 0:
        return (r.stderr.decode("utf-8", "replace").strip().splitlines() or ["exit %d"
                                                                          % r.returncode])[-1]
    return None
