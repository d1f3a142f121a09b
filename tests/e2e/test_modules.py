"""Per-module GIL accounting against real targets, heavy tier.

One target (workloads/module_calls.py) serves every assertion: gilstat attaches
(`record --pid`), then the target imports the demo extension (a module loaded
after the attach) and calls it, multiplies numpy matrices in threads where
Debian's python3-numpy is installed (only /usr/bin/python3.11), and loads a
copy of the demo extension with ctypes.CDLL and dlcloses it while the probe is
attached; the probe then stops (end of the window) and the target must run on
and exit 0. The exactness-tier checks of the table are in `demo --check`
(src/cli/demo_truth.cpp: release, hold, pool).
"""
import json
import os

import pytest

from attach_support import Target

CALLS = 6
WINDOW_S = 4


def demo_dir(gilstat_bin):
    return os.path.join(os.path.dirname(gilstat_bin), "..", "lib", "gilstat", "python")


@pytest.fixture(scope="module")
def attached(heavy, gilstat, gilstat_bin, supported_python, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("modules") / "modules.gilstat")
    with Target(supported_python, "module_calls.py", demo_dir(gilstat_bin), CALLS) as target:
        target.expect("ready")
        result = gilstat("record", "--pid", target.pid, "-o", path, "--duration", WINDOW_S)
        target.expect("done")
        alive_after_stop = target.alive()
        truth = target.finish()
        ctx = result.describe() + "\n" + target.describe()
    assert result.returncode == 0, ctx
    report = gilstat("report", path, "--json")
    assert report.returncode == 0, report.describe()
    data = json.loads(report.stdout.decode())
    return data, truth, alive_after_stop, ctx + "\nmodules: " + json.dumps(data["modules"])


def row(report, prefix):
    rows = [m for m in report["modules"]["rows"] if m["name"].startswith(prefix)]
    return rows[0] if rows else None


def test_module_loaded_after_attach_is_accounted(attached):
    report, truth, _, ctx = attached
    assert truth["attached_first"], ctx
    m = row(report, "_gilstat_demo")
    assert m is not None, ctx
    assert m["releases"] == truth["calls"] and m["restores"] == truth["calls"], ctx
    assert m["released_s"] > 0, ctx


def test_ctypes_object_closed_before_stop_leaves_target_running(attached):
    report, truth, alive_after_stop, ctx = attached
    copy = [m for m in report["modules"]["rows"] if m["path"] == truth["copy"]]
    assert copy, "the ctypes.CDLL copy was never hooked\n" + ctx
    assert copy[0]["state"] == "unloaded", ctx
    assert alive_after_stop, ctx  # and finish() checked it exits 0 after the probe stopped


def test_numpy_matmul_releases_the_gil(attached, supported_python):
    report, truth, _, ctx = attached
    if not truth["numpy"]:
        pytest.skip("numpy is not importable by %s (python3-numpy is Debian's, for "
                    "/usr/bin/python3.11)" % supported_python.path)
    rows = [m for m in report["modules"]["rows"] if "numpy" in m["path"] and m["releases"] > 0]
    assert rows, ctx
    assert any(m["name"].startswith("_multiarray_umath") for m in rows), ctx
