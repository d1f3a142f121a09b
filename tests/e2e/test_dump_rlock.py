"""`gilstat dump` follows a threading.RLock to its owner (workloads/rlock_deadlock.py):
a cycle of two RLocks without the GIL, and a cycle through the GIL (the holder blocks in
a libc mutex owned by a thread that waits for an RLock owned by a GIL waiter).

Exactness tier: one stuck target and one dump for every check (the dump is taken
again until the holder is seen holding: the last cycle forms a moment after the
target's line). The RLocks' addresses are the workload's own id() of them.
"""
import json
import re
import time

import pytest

from attach_support import Target
from test_dump import SETTLE_S, by_tid, dump_json


@pytest.fixture(scope="module")
def stuck(supported_python, gilstat):
    """(its JSON line, the last dump, the text of a dump, the target)."""
    with Target(supported_python, "rlock_deadlock.py") as target:
        line = json.loads(target.read_line())
        tids = line["threads"]
        deadline = time.monotonic() + SETTLE_S
        while True:
            dump, _ = dump_json(gilstat, target.pid)
            threads = by_tid(dump)
            # Holding the GIL comes a moment before the holder blocks in the mutex
            # lock: wait for every thread to be blocked where the cycle has it.
            if (threads.get(tids["holder"], {}).get("gil_state") == "holds"
                    and threads.get(tids["keeper"], {}).get("gil_state") == "waits"
                    and all(threads.get(tids[name], {}).get("lock")
                            for name in ("holder", "rlock-a", "rlock-b", "waiter"))):
                break
            assert time.monotonic() < deadline, "no deadlock seen in %ss: %s\n%s" % (
                SETTLE_S, json.dumps(dump, indent=1)[:4000], target.describe())
            time.sleep(0.05)
        text = gilstat("dump", "--pid", target.pid)
        assert text.returncode == 0, text.describe()
        assert target.alive(), target.describe()
        yield line, dump, text.stdout.decode(), target


def test_rlock_waiters_name_the_owner(stuck):
    line, dump, _, _ = stuck
    tids, ids = line["threads"], line["rlocks"]
    threads = by_tid(dump)
    for waiter, rlock, owner, count in (("rlock-a", "second", "rlock-b", 1),
                                        ("rlock-b", "first", "rlock-a", 2),
                                        ("waiter", "third", "keeper", 1)):
        lock = threads[tids[waiter]]["lock"]
        assert lock is not None, (waiter, threads[tids[waiter]])
        assert lock["kind"] == "RLock", (waiter, lock)
        assert lock["address"] == hex(ids[rlock]), (waiter, lock, ids)
        assert lock["owner_tid"] == tids[owner], (waiter, lock, tids)
        assert lock["owner_count"] == count, (waiter, lock)
    # The holder's libc mutex is owned by "waiter"; the RLock owners that run
    # nothing but wait are not in an RLock of their own.
    holder = threads[tids["holder"]]["lock"]
    assert holder["kind"] == "pthread mutex" and holder["owner_tid"] == tids["waiter"], holder
    assert threads[tids["keeper"]]["lock"] is None, threads[tids["keeper"]]


def test_rlock_cycle_is_a_deadlock(stuck):
    line, dump, text, _ = stuck
    tids, ids = line["threads"], line["rlocks"]
    cycles = [v for v in dump["verdicts"] if v["kind"] == "deadlock" and v["gil"] is None]
    assert len(cycles) == 1, dump["verdicts"]
    v = cycles[0]
    assert sorted(v["cycle_tids"]) == sorted([tids["rlock-a"], tids["rlock-b"]]), v
    assert v["holder_tid"] is None, v
    first = v["cycle_tids"][0]
    assert v["other_tid"] == v["cycle_tids"][1], v
    waited = "second" if first == tids["rlock-a"] else "first"
    assert v["lock"] == hex(ids[waited]), (v, ids)
    assert re.search(r"^deadlock: rlock-[ab] \(tid \d+\) waits for RLock 0x[0-9a-f]+, which "
                     r"rlock-[ab] \(tid \d+\) owns while it waits for RLock 0x[0-9a-f]+, which "
                     r"rlock-[ab] \(tid \d+\) owns; neither can go on$", text, re.M), text
    assert "waits for RLock %s, owned by rlock-a (tid %d), 2 times" % (
        hex(ids["first"]), tids["rlock-a"]) in text, text


def test_cycle_through_an_rlock_and_the_gil(stuck):
    line, dump, text, _ = stuck
    tids, ids = line["threads"], line["rlocks"]
    gil = [v for v in dump["verdicts"] if v["gil"] == 0]
    assert len(gil) == 1, dump["verdicts"]
    v = gil[0]
    assert v["kind"] == "deadlock", v
    assert v["holder_tid"] == tids["holder"] and v["other_tid"] == tids["waiter"], v
    assert v["cycle_tids"] == [tids["holder"], tids["waiter"], tids["keeper"]], v
    before = "deadlock: holder (tid %d) holds the GIL and waits for pthread mutex " % tids["holder"]
    after = (", which waiter (tid %d) owns while it waits for RLock %s, which keeper (tid %d) "
             "owns while it waits for the GIL; none of them can go on"
             % (tids["waiter"], hex(ids["third"]), tids["keeper"]))
    assert re.search("^%s0x[0-9a-f]+%s$" % (re.escape(before), re.escape(after)), text,
                     re.M), text


def test_dumps_back_to_back_see_every_thread_asleep_where_it_was(stuck, gilstat):
    """A dump resumes the threads it stopped; each then restarts the system call the stop
    interrupted and shows "running" for a moment.  What a dump says about a thread is
    what it saw while the thread stood still, so dump after dump names the same cycle."""
    line, _, _, target = stuck
    tids = line["threads"]
    for attempt in range(8):
        dump, _ = dump_json(gilstat, target.pid)
        threads = by_tid(dump)
        # Untimed waits: asleep in a futex whenever stopped.  The keeper's GIL wait is
        # timed (it wakes every switch interval), so only its role is checked.
        for name in ("holder", "waiter", "rlock-a", "rlock-b"):
            assert (threads[tids[name]]["syscall"] or "").startswith("futex 0x"), (
                attempt, name, threads[tids[name]])
        assert threads[tids["keeper"]]["gil_state"] == "waits", (attempt, threads)
        gil = [v for v in dump["verdicts"] if v["gil"] == 0]
        assert [v["kind"] for v in gil] == ["deadlock"], (attempt, dump["verdicts"])
        assert gil[0]["cycle_tids"] == [tids["holder"], tids["waiter"], tids["keeper"]], (
            attempt, gil[0])
