"""A GIL hog with threads kept waiting, for the long-hold stacks.

    python hog_waiters.py DEMO_MODULE_DIR HOLD_MS

Two pure-Python threads `waiter-1`, `waiter-2` take turns on the GIL (spin());
once gilstat's probe is mapped in this process (and 0.5 s more, for its hooks and
first drains), the thread `hog` calls hog_caller(), which calls
_gilstat_demo.hold_for(HOLD_MS): a native spin with the GIL held, while both
waiters wait.  Prints "ready" when the waiters run, then waits for "stop" (or end of
stdin) and prints one JSON line: {"pid", "native_ns" (the native call's own timing),
"caller_line" (the line of the call), "tids": {name: tid}}.

Runs on Python 3.8+.
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, sys.argv[1])
import _gilstat_demo  # noqa: E402

HOLD_MS = float(sys.argv[2])
stop = threading.Event()
tids = {}
result = {}


def spin():
    tids[threading.current_thread().name] = threading.get_native_id()
    n = 0
    while not stop.is_set():
        n += 1


def probe_mapped():
    with open("/proc/self/maps") as f:
        return "libgilstat_probe" in f.read()


def hog_caller():
    tids["hog"] = threading.get_native_id()
    result["caller_line"] = sys._getframe().f_lineno + 1
    result["native_ns"] = _gilstat_demo.hold_for(HOLD_MS)


def main():
    waiters = [threading.Thread(target=spin, name="waiter-%d" % i) for i in (1, 2)]
    for t in waiters:
        t.start()
    print("ready", flush=True)
    deadline = time.monotonic() + 30
    while not probe_mapped() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    hog = threading.Thread(target=hog_caller, name="hog")
    hog.start()
    hog.join()
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()
    for t in waiters:
        t.join()
    print(json.dumps({"pid": os.getpid(), "native_ns": result["native_ns"],
                      "caller_line": result["caller_line"], "tids": tids}), flush=True)


if __name__ == "__main__":
    main()
