"""Bad input to `gilstat run`: each case gets one clear line, a hint,
a documented exit code, and the program is never harmed."""
import os
import stat

import pytest

from conftest import workload


def test_not_python_runs_normally_and_says_so(gilstat):
    r = gilstat("run", "--", "/bin/echo", "hello")
    assert r.stdout == b"hello\n", r.describe()
    assert r.returncode == 3, r.describe()
    assert "gilstat: error: no CPython found" in r.stderr_text, r.describe()
    assert "hint:" in r.stderr_text, r.describe()


def test_not_python_keeps_the_program_failure(gilstat):
    r = gilstat("run", "--", "/bin/sh", "-c", "exit 9")
    assert r.returncode == 9, r.describe()
    assert "no CPython found" in r.stderr_text, r.describe()


def test_missing_program(gilstat):
    r = gilstat("run", "--", "/nonexistent/program")
    assert r.returncode == 127, r.describe()
    assert "gilstat: error: cannot run /nonexistent/program" in r.stderr_text, r.describe()


def test_missing_probe_file(gilstat, supported_python, tmp_path):
    marker = tmp_path / "ran"
    r = gilstat("run", "--", supported_python.path, "-c", "open(%r, 'w')" % str(marker),
                env={"GILSTAT_PROBE": str(tmp_path / "nope.so")})
    assert r.returncode == 1, r.describe()
    assert "gilstat: error: probe library" in r.stderr_text, r.describe()
    assert "hint:" in r.stderr_text, r.describe()
    assert not marker.exists(), "the program ran although gilstat refused to start"


def test_probe_file_that_is_not_a_library(gilstat, supported_python, tmp_path):
    bogus = tmp_path / "libgilstat_probe.so"
    bogus.write_bytes(b"not an ELF file\n")
    r = gilstat("run", "--", supported_python.path, "-c", "pass",
                env={"GILSTAT_PROBE": str(bogus)})
    assert r.returncode == 1, r.describe()
    assert "is not a shared object" in r.stderr_text, r.describe()


def test_unreadable_probe_file(gilstat, supported_python, tmp_path):
    hidden = tmp_path / "locked"
    hidden.mkdir()
    (hidden / "libgilstat_probe.so").write_bytes(b"\x7fELF")
    os.chmod(hidden, 0)
    try:
        if os.access(hidden / "libgilstat_probe.so", os.R_OK):
            pytest.skip("running as a user that can read a mode-000 directory (root)")
        r = gilstat("run", "--", supported_python.path, "-c", "pass",
                    env={"GILSTAT_PROBE": str(hidden / "libgilstat_probe.so")})
        assert r.returncode == 1, r.describe()
        assert "missing or unreadable" in r.stderr_text, r.describe()
    finally:
        os.chmod(hidden, stat.S_IRWXU)


def test_program_that_exits_at_once(gilstat, supported_python):
    r = gilstat("run", "--json", "--", supported_python.path, "-c", "pass")
    assert r.returncode == 0, r.describe()
    rep = r.report()
    for g in rep["gils"]:
        assert g["switches"] == g["switch_number_delta"], r.describe()


def test_crash_reports_what_was_seen(gilstat, supported_python):
    r = gilstat("run", "--", supported_python.path, "-c",
                "import ctypes; ctypes.string_at(0)")
    assert r.returncode == 139, r.describe()
    assert "GIL 0" in r.stderr_text, r.describe()  # the text report came out
    assert "killed by signal 11" in r.stderr_text, r.describe()


def test_children_are_untouched(gilstat, supported_python, python):
    r = gilstat("run", "--json", "--", supported_python.path, workload("children.py"))
    assert r.returncode == 0, r.describe()
    out = r.program_json()
    assert out["fork_exit"] == 7 and out["pool_sum"] == 4 * sum(range(1000)), out
    rep = r.report()
    assert rep["pid"] == out["pid"], "the report must be about the launched process"
    assert rep["pid"] != out["subprocess_pid"]
    for g in rep["gils"]:
        assert g["switches"] == g["switch_number_delta"], r.describe()
