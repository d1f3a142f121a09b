"""A target in another PID namespace (a container, here `unshare --pid --fork`): the probe
inside it sees `pid 1` and tids 2, 3, ...; every command shows the ids the user typed and
sees in the host's `top -H`, with the namespace's beside them. JSON keeps `pid`/`tid` (the
target's own) and adds `host_pid`/`host_tid`; a recording keeps the mapping.

Heavy tier (Debian 3.11, pyenv 3.12, Debian 3.15): one namespaced target, three commands.
"""
import json
import os
import shutil
import subprocess
import time

import pytest

from attach_support import Target, load_report

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]


def nspid(pid, tid):
    """(host tid, innermost tid) from /proc/PID/task/TID/status, read by the test itself."""
    with open("/proc/%d/task/%d/status" % (pid, tid)) as f:
        for line in f:
            if line.startswith("NSpid:"):
                ids = [int(x) for x in line.split()[1:]]
                return ids[0], ids[-1]
    raise AssertionError("no NSpid line for %d/%d" % (pid, tid))


def python_child(wrapper_pid, timeout=5.0):
    """The interpreter unshare forked (its only child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/%d/task/%d/children" % (wrapper_pid, wrapper_pid)) as f:
            kids = [int(x) for x in f.read().split()]
        if kids:
            return kids[0]
        time.sleep(0.01)
    raise AssertionError("unshare started no child")


def test_namespaced_target_shows_host_and_namespace_ids(gilstat, heavy, tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("no `unshare` (util-linux) on this machine")
    probe = subprocess.run(UNSHARE + ["true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot create a PID namespace here (needs root or user namespaces): "
                    + probe.stderr.decode(errors="replace").strip())
    path = str(tmp_path / "ns.gilstat")
    with Target(heavy, "attach_spin.py", "--threads", 2, prefix=UNSHARE) as target:
        target.expect("ready")
        pid = python_child(target.pid)
        host_of = {}
        for tid in os.listdir("/proc/%d/task" % pid):
            host, inner = nspid(pid, int(tid))
            host_of[inner] = host
        assert nspid(pid, pid) == (pid, 1), "the interpreter is not pid 1 in its namespace"
        rec = gilstat("record", "--pid", pid, "-o", path, "--duration", 0.5)
        top = gilstat("top", "--pid", pid, "--json", "--interval", 0.3, "--duration", 0.3)
        # Target.finish() checks the pid the script prints against its own (unshare's).
        target.send("stop")
        truth = json.loads(target.read_line(20))
        assert truth["pid"] == 1, truth
        ctx = rec.describe() + "\n" + top.describe() + "\n" + target.describe()
    assert rec.returncode == 0 and top.returncode == 0, ctx

    report = load_report(gilstat, path)
    assert report["pid"] == 1 and report["host_pid"] == pid, ctx
    spinners = {t["name"]: t for t in report["threads"] if t["name"].startswith("spin-")}
    assert sorted(spinners) == ["spin-0", "spin-1"], ctx
    for t in truth["threads"]:
        row = spinners[t["name"]]
        assert row["tid"] == t["native_id"], (row, t, ctx)  # the namespace's own tid
        assert row["host_tid"] == host_of[t["native_id"]], (row, host_of, ctx)

    text = gilstat("report", path)
    out = text.stdout.decode()
    assert "pid %d (pid 1 in its PID namespace)" % pid in out, out
    header = next(line for line in out.splitlines() if line.startswith("THREAD"))
    assert header.split()[1:3] == ["TID", "NS"], header
    for t in truth["threads"]:
        line = next(line for line in out.splitlines() if line.startswith(t["name"] + " "))
        assert line.split()[1:3] == [str(host_of[t["native_id"]]), str(t["native_id"])], line

    intervals = [json.loads(line) for line in top.stdout.decode().splitlines() if line.strip()]
    assert intervals, ctx
    for iv in intervals:
        assert iv["pid"] == 1 and iv["host_pid"] == pid, iv
        for row in iv["threads"]:
            if row["name"].startswith("spin-"):
                assert row["host_tid"] == host_of[row["tid"]], (row, host_of)
