"""`gilstat dump` and thread names read from outside, on a process whose GIL is never
released (workloads/gil_deadlock.py: "holder" blocks in pthread_mutex_lock holding the
GIL, "owner" owns that mutex and waits for the GIL).

One deadlocked target serves every test of the module (it cannot be unstuck: it is
killed at the end). The dump is read again until the holder is seen holding (the
deadlock forms a moment after the target's line); every check on it is exact.
"""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import REPO, workload
from attach_support import Target

SETTLE_S = 10  # how long the deadlock may take to form on a busy machine
HOLD_MARK = "kept.pthread_mutex_lock(mutex)"


def source_line(text):
    with open(workload("gil_deadlock.py"), encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if text in line:
                return number
    raise AssertionError("no line %r in the workload" % text)


def dump_json(gilstat, pid):
    result = gilstat("dump", "--pid", pid, "--json")
    assert result.returncode == 0, result.describe()
    return json.loads(result.stdout.decode()), result


@pytest.fixture(scope="module")
def stuck(supported_python, gilstat):
    """(target, its tids by name, a dump taken once the holder holds the GIL)."""
    with Target(supported_python, "gil_deadlock.py") as target:
        tids = json.loads(target.read_line())["threads"]
        deadline = time.monotonic() + SETTLE_S
        while True:
            dump, result = dump_json(gilstat, target.pid)
            threads = by_tid(dump)
            states = {tid: t["gil_state"] for tid, t in threads.items()}
            # Holding the GIL comes a moment before the holder blocks in the mutex.
            if (states.get(tids["holder"]) == "holds" and states.get(tids["owner"]) == "waits"
                    and threads[tids["holder"]].get("lock")):
                break
            assert time.monotonic() < deadline, "no deadlock seen in %ss: %s\n%s" % (
                SETTLE_S, json.dumps(dump, indent=1)[:4000], target.describe())
            time.sleep(0.05)
        yield target, tids, dump


def by_tid(dump):
    return {t["tid"]: t for t in dump["threads"]}


def test_dump_names_every_thread(stuck):
    target, tids, dump = stuck
    threads = by_tid(dump)
    for name, tid in tids.items():
        assert tid in threads, (name, tid, dump)
        assert threads[tid]["name"] == name, (name, threads[tid])
        assert threads[tid]["python"] is True
    assert threads[tids["MainThread"]]["name_source"] in ("main", "threading")
    assert threads[tids["holder"]]["name_source"] == "threading"


def test_dump_gil_holder_and_waiter(stuck):
    target, tids, dump = stuck
    threads = by_tid(dump)
    assert len(dump["gils"]) == 1, dump["gils"]
    gil = dump["gils"][0]
    assert gil["locked"] is True
    assert gil["holder_tid"] == tids["holder"]
    assert tids["owner"] in gil["waiter_tids"]
    assert threads[tids["holder"]]["gil"] == 0
    assert threads[tids["owner"]]["gil"] == 0
    # Blocked on an Event with the GIL released: neither. (The main thread may be in
    # join, GIL released, or still returning from Thread.start, waiting for the GIL.)
    assert threads[tids["wächter-Ω"]]["gil_state"] == "neither"
    assert threads[tids["MainThread"]]["gil_state"] in ("neither", "waits")
    waiting = [tid for tid, t in threads.items() if t["gil_state"] == "waits"]
    assert sorted(waiting) == sorted(gil["waiter_tids"]), (waiting, gil)


def test_dump_python_stacks(stuck):
    target, tids, dump = stuck
    threads = by_tid(dump)
    holder = threads[tids["holder"]]["python_stack"]
    assert holder, threads[tids["holder"]]
    assert holder[0]["function"] == "lock_keeping_the_gil", holder
    assert holder[0]["file"].endswith("gil_deadlock.py"), holder
    assert holder[0]["line"] == source_line(HOLD_MARK), holder
    assert holder[1]["function"] == "holder", holder
    assert holder[1]["line"] == source_line("    lock_keeping_the_gil()"), holder
    assert any(f["function"].endswith("_bootstrap_inner") for f in holder), holder
    owner = threads[tids["owner"]]["python_stack"]
    assert owner[0]["function"] == "spin", owner
    assert source_line("    while True:") <= owner[0]["line"] <= source_line("        n += 1")
    assert owner[1]["function"] == "owner" and owner[1]["line"] == source_line("    spin()")
    main = threads[tids["MainThread"]]["python_stack"]
    assert main[-1]["function"] == "<module>", main
    assert any(f["function"] == "main" for f in main), main
    for t in dump["threads"]:
        assert t["stack_error"] is None, t


def test_dump_native_stacks(stuck):
    """The threads were stopped together and every one has a native stack: the holder's
    ends in libc's mutex lock (where it keeps the GIL), the owner's in the GIL's own wait."""
    target, tids, dump = stuck
    assert dump["stopped"] and 0 < dump["stopped_ms"] < 3000, dump["stopped_ms"]
    threads = by_tid(dump)
    holder = threads[tids["holder"]]["native_stack"]
    assert holder and any("pthread_mutex_lock" in f or "__lll_lock_wait" in f
                          for f in holder[:4]), holder
    owner = threads[tids["owner"]]["native_stack"]
    assert owner and any("pthread_cond" in f or "futex" in f for f in owner[:4]), owner
    assert target.alive(), target.describe()


def test_dump_names_the_deadlock(stuck):
    """The holder's mutex is followed to its owner, which waits for the GIL."""
    target, tids, dump = stuck
    threads = by_tid(dump)
    lock = threads[tids["holder"]]["lock"]
    assert lock is not None and lock["kind"] == "pthread mutex", threads[tids["holder"]]
    assert lock["owner_tid"] == tids["owner"], lock
    assert threads[tids["owner"]]["lock"] is None, threads[tids["owner"]]
    deadlocks = [v for v in dump["verdicts"] if v["kind"] == "deadlock"]
    assert len(deadlocks) == 1, dump["verdicts"]
    v = deadlocks[0]
    assert (v["holder_tid"], v["other_tid"], v["gil"]) == (tids["holder"], tids["owner"], 0), v
    assert v["lock"] == lock["address"], (v, lock)
    assert "holder (tid %d)" % tids["holder"] in v["text"], v
    assert "owner (tid %d)" % tids["owner"] in v["text"], v


def test_dump_text(stuck, gilstat):
    target, tids, dump = stuck
    result = gilstat("dump", "--pid", target.pid)
    assert result.returncode == 0, result.describe()
    text = result.stdout.decode()
    assert 'Thread %d "holder": holds the GIL' % tids["holder"] in text, text
    assert 'Thread %d "owner": waits for the GIL' % tids["owner"] in text, text
    assert "held by holder (tid %d)" % tids["holder"] in text, text
    assert re.search(r"^deadlock: holder \(tid %d\) holds the GIL and waits for pthread mutex "
                     r"0x[0-9a-f]+, which owner \(tid %d\) owns while it waits for the GIL"
                     % (tids["holder"], tids["owner"]), text, re.M), text
    assert "lock_keeping_the_gil (%s:%d)" % (workload("gil_deadlock.py"),
                                              source_line(HOLD_MARK)) in text, text


def test_dump_without_native_stacks_cannot_tell_the_lock(stuck, gilstat):
    """--no-stop: no native frames to tell a pthread mutex from a bare futex by, and
    the dump says so instead of guessing."""
    target, tids, _ = stuck
    result = gilstat("dump", "--pid", target.pid, "--no-stop", "--json")
    assert result.returncode == 0, result.describe()
    lock = by_tid(json.loads(result.stdout.decode()))[tids["holder"]]["lock"]
    assert lock is not None and lock["kind"] == "unknown" and lock["owner_tid"] is None, lock
    text = gilstat("dump", "--pid", target.pid, "--no-stop")
    assert text.returncode == 0, text.describe()
    assert ("waits for a lock of unknown kind %s, owner unknown (no native stack with "
            "--no-stop: the kind of lock cannot be told)" % lock["address"]
            in text.stdout.decode()), text.stdout.decode()


def test_record_pid_names_threads_of_a_stuck_process(stuck, gilstat, tmp_path):
    """The probe never gets the GIL here: the names come from outside."""
    target, tids, dump = stuck
    path = tmp_path / "stuck.gst"
    result = gilstat("record", "--pid", target.pid, "-o", path, "--duration", "0.5")
    assert result.returncode == 0, result.describe()
    report = gilstat("report", path, "--json")
    assert report.returncode == 0, report.describe()
    full = json.loads(report.stdout.decode())
    rows = {t["tid"]: t["name"] for t in full["threads"]}
    assert rows.get(tids["owner"]) == "owner", rows
    assert rows.get(tids["holder"]) == "holder", rows
    for tid, name in rows.items():
        assert not name.startswith("native-"), rows
    # Held and waited since before the attach, counted from it, exactly.
    threads = {t["tid"]: t for t in full["threads"]}
    holder, owner = threads[tids["holder"]], threads[tids["owner"]]
    assert holder["at_attach"] == "holding" and owner["at_attach"] == "waiting", (holder, owner)
    assert holder["held_s"] >= 0.9 * full["duration_s"], (holder, full["duration_s"])
    assert owner["wait_s"] >= 0.9 * full["duration_s"], (owner, full["duration_s"])
    for t in (holder, owner):
        assert t["held_s"] + t["wait_s"] + t["released_s"] == pytest.approx(t["lifetime_s"],
                                                                            abs=1e-6), t
    gil = full["gils"][0]
    assert gil["holder_tid"] == tids["holder"] and gil["holder_since_attach"] is True, gil
    assert gil["switches"] == gil["switch_number_delta"] == 0, gil
    # Nothing was changed: still alive and still stuck.
    assert target.alive(), target.describe()
    after, _ = dump_json(gilstat, target.pid)
    gil = after["gils"][0]
    assert gil["holder_tid"] == tids["holder"] and tids["owner"] in gil["waiter_tids"], gil


def test_top_json_on_a_stuck_process(stuck, gilstat):
    """The holder holds and the owner waits in every interval, from the attach on."""
    target, tids, dump = stuck
    result = gilstat("top", "--pid", target.pid, "--json", "--interval", "0.3",
                     "--duration", "0.9")
    assert result.returncode == 0, result.describe()
    lines = [json.loads(line) for line in result.stdout.decode().splitlines() if line.strip()]
    assert len(lines) >= 2, result.describe()
    for frame in lines:
        threads = {t["tid"]: t for t in frame["threads"]}
        holder, owner = threads[tids["holder"]], threads[tids["owner"]]
        assert holder["name"] == "holder" and owner["name"] == "owner", frame
        assert holder["held_s"] >= 0.9 * frame["interval_s"], frame
        assert owner["wait_s"] >= 0.9 * frame["interval_s"], frame
        assert holder["at_attach"] == "holding" and owner["at_attach"] == "waiting", frame
        gil = frame["gils"][0]
        assert gil["holder_tid"] == tids["holder"] and gil["holder_since_attach"], frame
        assert gil["utilization"] >= 0.9, frame
    assert target.alive(), target.describe()
    after, _ = dump_json(gilstat, target.pid)
    gil = after["gils"][0]
    assert gil["holder_tid"] == tids["holder"] and tids["owner"] in gil["waiter_tids"], gil


def test_dump_refuses_bad_targets(gilstat, tmp_path):
    missing = gilstat("dump", "--pid", 4_000_000)
    assert missing.returncode == 1, missing.describe()
    assert missing.stderr.decode().startswith("gilstat: error:"), missing.describe()
    other = subprocess.Popen(["sleep", "30"])
    zombie = subprocess.Popen(["true"])
    try:
        not_python = gilstat("dump", "--pid", other.pid)
        assert not_python.returncode == 3, not_python.describe()
        deadline = time.monotonic() + 5
        while open("/proc/%d/stat" % zombie.pid).read().split(") ")[1][0] != "Z":
            assert time.monotonic() < deadline, "no zombie"
            time.sleep(0.01)
        dead = gilstat("dump", "--pid", zombie.pid)
        assert dead.returncode == 1, dead.describe()
        assert "has exited" in dead.stderr.decode(), dead.describe()
    finally:
        other.kill()
        other.wait()
        zombie.wait()


def test_object_layout_table_matches_the_headers(supported_python):
    """The row of include/gilstat/cpython_objects.hpp for the interpreter under test is
    what offsetof() gives on its own headers (scripts/measure-object-layout)."""
    include = subprocess.run(
        [supported_python.path, "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"],
        stdout=subprocess.PIPE, check=True, timeout=30).stdout.decode().strip()
    if not shutil.which("gcc"):
        pytest.skip("no gcc to compile the measuring program")
    if not os.path.isdir(os.path.join(include, "internal")):
        pytest.skip("no internal headers in %s (Debian: python3.X-dev)" % include)
    measured = subprocess.run(
        [str(REPO / "scripts" / "measure-object-layout"), include], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, timeout=60)
    assert measured.returncode == 0, measured.stderr.decode()
    row = [int(v) for v in measured.stdout.decode().splitlines()[0].split(",") if v.strip()]
    header = (REPO / "include" / "gilstat" / "cpython_objects.hpp").read_text()
    name = "kObjects3%d%s" % (supported_python.minor[1], "t" if supported_python.free_threaded
                              else "")
    m = re.search(r"%s\{([^}]*)\}" % name, header)
    assert m, "no %s in cpython_objects.hpp" % name
    table = [int(v) for v in m.group(1).split(",")]
    assert table == row, "%s: table %s, headers %s" % (name, table, row)
    # 3.13+: where the same fields sit inside _Py_DebugOffsets.
    lines = measured.stdout.decode().splitlines()
    debug = [l for l in lines if l.startswith("DebugObjectPositions ")]
    if supported_python.minor >= (3, 13):
        assert debug, lines
        positions = [int(v) for v in debug[0].split(" ", 1)[1].split(",") if v.strip()]
        m = re.search(r"kDebugObjects3%d\{([^}]*)\}" % supported_python.minor[1], header)
        assert m and [int(v) for v in m.group(1).split(",")] == positions, positions
    # _thread.RLock's row (its struct as the version's _threadmodule.c declares it).
    rlock = [l for l in lines if l.startswith("RLockLayout ")]
    assert rlock, lines
    measured_rlock = [int(v) for v in rlock[0].split(" ", 1)[1].split(",") if v.strip()]
    name = ("kRLock313t" if supported_python.free_threaded
            else "kRLock314" if supported_python.minor >= (3, 14) else "kRLock38")
    m = re.search(r"%s\{([^}]*)\}" % name, header)
    assert m, "no %s in cpython_objects.hpp" % name
    table = [int(v.strip() == "true") if v.strip() in ("true", "false") else int(v)
             for v in m.group(1).split(",")]
    assert table == measured_rlock, "%s: table %s, headers %s" % (name, table, measured_rlock)


HEALTHY_SLEEP_S = 2.0
DUMPS = 3


def test_dump_of_a_healthy_busy_program(heavy, gilstat):
    """Heavy tier: threads taking turns, one in time.sleep, one in a socket recv. Each
    of three dumps (every thread stopped together) shows every thread by name, its
    state and its stacks; the program is not disturbed: the sleep lasts its full
    length and the socket's bytes arrive whole."""
    with Target(heavy, "dump_healthy.py", HEALTHY_SLEEP_S) as target:
        tids = json.loads(target.read_line())["threads"]
        started = time.monotonic()
        for _ in range(DUMPS):
            dump, result = dump_json(gilstat, target.pid)
            ctx = json.dumps(dump, indent=1)[:6000] + "\n" + target.describe()
            assert dump["stopped"], ctx
            threads = by_tid(dump)
            assert {n: threads[t]["name"] for n, t in tids.items() if t in threads} == \
                {n: n for n in tids}, ctx
            spinners = [threads[tids["spin-%d" % i]] for i in (1, 2)]
            for t in spinners:
                assert t["python_stack"] and t["python_stack"][0]["function"] == "spin", ctx
            # One consistent snapshot: at most one holder, the GIL's holder and waiters
            # are the threads that say so, and only the spinners (or the main thread,
            # at most between two calls) want the GIL.
            assert len(dump["gils"]) == 1, ctx
            gil = dump["gils"][0]
            holders = [tid for tid, t in threads.items() if t["gil_state"] == "holds"]
            assert len(holders) <= 1 and (gil["holder_tid"] in holders or not holders), ctx
            waiting = [tid for tid, t in threads.items() if t["gil_state"] == "waits"]
            assert sorted(waiting) == sorted(gil["waiter_tids"]), ctx
            wanting = {tids["spin-1"], tids["spin-2"], tids["MainThread"]}
            assert set(holders + waiting) <= wanting, ctx
            for name, function, call in (("sleeper", "sleeper", "sleep"),
                                         ("reader", "reader", "recv")):
                t = threads[tids[name]]
                assert t["gil_state"] == "neither", ctx
                assert t["python_stack"][0]["function"] == function, ctx
                assert any(call in f for f in t["native_stack"][:6]), (name, ctx)
            for t in dump["threads"]:
                assert t["stack_error"] is None, t
        assert time.monotonic() - started < HEALTHY_SLEEP_S, \
            "the dumps took longer than the sleep; the checks below would not see them"
        truth = target.finish()
    assert truth["sleep_s"] >= HEALTHY_SLEEP_S, truth
    assert truth["recv_intact"] is True, truth
