"""A GIL hog with threads kept waiting, for the long-hold stacks.

    python hog_waiters.py DEMO_MODULE_DIR HOLD_MS [io]

Two pure-Python threads `waiter-1`, `waiter-2` take turns on the GIL (spin());
once gilstat's probe is mapped in this process (and 0.5 s more, for its hooks and
first drains), the thread `hog` calls hog_caller(), which calls
_gilstat_demo.hold_for(HOLD_MS): a native spin with the GIL held, while both
waiters wait.  Prints "ready" when the waiters run, then waits for "stop" (or end of
stdin) and prints one JSON line: {"pid", "native_ns" (the native call's own timing),
"caller_line" (the line of the call), "tids": {name: tid}}.

With `io`, a thread `io` sleeps in time.sleep(0.4) from just before the hog starts,
then reads a socket that the main thread writes to once the hog is done; the JSON line
gets "sleep_s" (how long the sleep took) and "recv_intact" (the bytes arrived whole).

Runs on Python 3.8+.
"""
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, sys.argv[1])
import _gilstat_demo  # noqa: E402

HOLD_MS = float(sys.argv[2])
IO = len(sys.argv) > 3 and sys.argv[3] == "io"
PAYLOAD = b"gilstat-hog-payload-0123456789" * 10
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


def io(sock):
    tids["io"] = threading.get_native_id()
    t0 = time.monotonic()
    time.sleep(0.4)
    result["sleep_s"] = time.monotonic() - t0
    got = sock.recv(len(PAYLOAD), socket.MSG_WAITALL)
    result["recv_intact"] = got == PAYLOAD


def main():
    waiters = [threading.Thread(target=spin, name="waiter-%d" % i) for i in (1, 2)]
    for t in waiters:
        t.start()
    print("ready", flush=True)
    deadline = time.monotonic() + 30
    while not probe_mapped() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    if IO:
        left, right = socket.socketpair()
        reader = threading.Thread(target=io, args=(left,), name="io")
        reader.start()
    hog = threading.Thread(target=hog_caller, name="hog")
    hog.start()
    hog.join()
    if IO:
        time.sleep(0.3)
        right.sendall(PAYLOAD)
        reader.join()
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()
    for t in waiters:
        t.join()
    result.update({"pid": os.getpid(), "tids": tids})
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
