"""hog: a native call that keeps the GIL 200 ms while two threads wait for it.

Two pure-Python threads `waiter-1`, `waiter-2` take turns on the GIL in
waiter_loop(); then the thread `hog` calls hog_caller(), which calls
_gilstat_demo.hold_for(200): a native spin with the GIL held, timed natively.
Ground truth: the native call's own timing, and the caller's function, file and
the line of the call (what gilstat's long-hold stack must name).
"""
import os
import sys
import threading
import time

import _gilstat_demo
from demo_common import emit, emit_thread, native_id, wait_for_go

HOLD_MS = 200.0
truth = {}


def waiter_loop(stop):
    truth[threading.current_thread().name] = native_id()
    n = 0
    while not stop.is_set():
        n += 1


def hog_caller():
    truth["hog"] = native_id()
    truth["caller_line"] = sys._getframe().f_lineno + 1
    truth["native_ns"] = _gilstat_demo.hold_for(HOLD_MS)


def main():
    wait_for_go()
    stop = threading.Event()
    waiters = [threading.Thread(target=waiter_loop, args=(stop,), name="waiter-%d" % i)
               for i in (1, 2)]
    for t in waiters:
        t.start()
    time.sleep(0.1)  # both waiters take turns before the hog starts
    hog = threading.Thread(target=hog_caller, name="hog")
    hog.start()
    hog.join()
    time.sleep(0.05)
    stop.set()
    for t in waiters:
        t.join()
    emit("hog", native_s=truth["native_ns"] / 1e9, caller="hog_caller",
         file=os.path.basename(__file__), line=truth["caller_line"], hold_ms=HOLD_MS)
    emit_thread("hog", truth["hog"])
    for t in waiters:
        emit_thread(t.name, truth[t.name], role="waiter")


if __name__ == "__main__":
    main()
