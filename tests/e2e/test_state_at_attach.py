"""Attach mid-hold (heavy tier): a thread inside a long native call that keeps the GIL
when gilstat attaches holds it from the attach on, in `top` and in `record --pid`, and
the one thread waiting for it waits from the attach on (workloads/native_hog.py: `hog`
in _gilstat_demo.hold_for, GIL held; `sleeper` wakes from time.sleep into take_gil).

One target serves top, dump and record, one after the other, inside one hold; the
program's output afterwards says its sleepers slept their full time and its socket read
got its bytes (nothing was changed).
"""
import json
import os

import pytest

from attach_support import Target

HOLD_MS = 4500  # top (~1 s with its attach) then record (~1 s) fit inside on a busy machine
WINDOW_S = 0.6


@pytest.fixture(scope="module")
def demo_dir(gilstat_bin):
    directory = os.path.join(os.path.dirname(gilstat_bin), "..", "lib", "gilstat", "python")
    if not os.path.exists(os.path.join(directory, "_gilstat_demo.abi3.so")):
        pytest.skip("_gilstat_demo was not built")
    return os.path.realpath(directory)


def test_a_hold_running_at_the_attach_counts_from_it(heavy, gilstat, demo_dir, tmp_path):
    if heavy.free_threaded:
        pytest.skip("the demo's abi3 module is not loadable on a free-threaded build")
    with Target(heavy, "native_hog.py", demo_dir, str(HOLD_MS)) as target:
        tids = dict(kv.split("=") for kv in target.read_line().split()[1:])
        hog = int(tids["hog"])
        assert target.read_line() == "hog", target.describe()
        top = gilstat("top", "--pid", target.pid, "--json", "--interval", "0.3",
                      "--duration", str(WINDOW_S))
        assert top.returncode == 0, top.describe()
        frames = [json.loads(line) for line in top.stdout.decode().splitlines() if line.strip()]
        assert frames, top.describe()
        for frame in frames:
            rows = {t["tid"]: t for t in frame["threads"]}
            assert hog in rows, frame
            assert rows[hog]["name"] == "hog" and rows[hog]["at_attach"] == "holding", frame
            assert rows[hog]["held_s"] >= 0.9 * frame["interval_s"], frame
            gil = frame["gils"][0]
            assert gil["holder_tid"] == hog and gil["holder_since_attach"] is True, frame
            assert "5 s" not in json.dumps(frame["since_attach"]["findings"]), frame
        # A snapshot meanwhile: the holder, and the idle threads asleep in a
        # threading lock, which records no owner.
        dump = gilstat("dump", "--pid", target.pid, "--json")
        assert dump.returncode == 0, dump.describe()
        d = json.loads(dump.stdout.decode())
        threads = {t["tid"]: t for t in d["threads"]}
        assert threads[hog]["gil_state"] == "holds", threads[hog]
        assert threads[hog]["native_stack"], threads[hog]
        idle = threads[int(tids["idle-0"])]
        assert idle["gil_state"] == "neither" and idle["python_stack"], idle
        assert idle["lock"] and idle["lock"]["kind"] == "Python lock", idle
        assert idle["lock"]["owner_tid"] is None, idle
        assert threads[int(tids["receiver"])]["lock"] is None, threads[int(tids["receiver"])]
        path = tmp_path / "hold.gst"
        rec = gilstat("record", "--pid", target.pid, "-o", path, "--duration", str(WINDOW_S))
        assert rec.returncode == 0, rec.describe()
        report = gilstat("report", path, "--json")
        assert report.returncode == 0, report.describe()
        r = json.loads(report.stdout.decode())
        rows = {t["tid"]: t for t in r["threads"]}
        assert rows[hog]["at_attach"] == "holding", rows[hog]
        assert rows[hog]["held_s"] >= 0.9 * r["duration_s"], (rows[hog], r["duration_s"])
        for t in r["threads"]:
            assert t["held_s"] + t["wait_s"] + t["released_s"] == pytest.approx(
                t["lifetime_s"], abs=1e-6), t
        gil = r["gils"][0]
        assert gil["switches"] == gil["switch_number_delta"], gil
        assert gil["utilization"] >= 0.9, gil
        text = gilstat("report", path)
        assert "hog (tid %d) was already holding GIL 0 when gilstat attached" % hog in \
            " ".join(text.stdout.decode().split()), text.describe()
        # The target runs on as if nothing happened: its sleepers were not woken early.
        lines = [target.read_line(timeout=30) for _ in range(4)]
        assert lines[0].startswith("sleep ") and float(lines[0].split()[1]) >= 1.99, lines
        assert lines[2] == "recv %d 0 1" % len(b"gilstat-native-stack-payload-0123456789"), lines
        assert lines[3] == "done", lines
