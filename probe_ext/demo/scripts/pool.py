"""pool: a native worker pool whose threads call back into Python.

The workers are native std::threads (not Python threads: gilstat shows them as
native-<tid>). Each time a piece of native I/O completes they report back by
calling a Python function under PyGILState_Ensure/Release, while a Python thread ("app")
keeps the interpreter busy. Each callback must win the GIL from "app" first:
typically one switch interval (5 ms) of waiting for ~0.1 ms of Python.
Ground truth: per worker, its callbacks and the time it spent inside
PyGILState_Ensure (waiting) and between Ensure and Release (holding).
"""
import sys
import threading
import time

import _gilstat_demo
from demo_common import arg, emit, emit_thread, native_id, runqueue_s, wait_for_go

NATIVE_US = 1000.0  # native (sleeping) wait between two callbacks, e.g. for I/O
CALLBACK_LOOP = 2000  # ~0.1 ms of Python per callback
CHECK_EVERY = 2048


def callback():
    x = 0
    for i in range(CALLBACK_LOOP):
        x += i
    return x


def main():
    n = arg(sys.argv, 1, 2, int, 1, 64, "threads")
    calls = arg(sys.argv, 2, 100, int, 1, 100000, "calls")
    stop = [False]
    app_truth = {}
    wait_for_go()

    def app():
        app_truth["tid"] = native_id()
        runq0 = runqueue_s()
        count = 0
        while True:
            count += 1
            if count % CHECK_EVERY == 0 and stop[0]:
                break
        app_truth["iterations"] = count
        app_truth["runq"] = runqueue_s() - runq0

    app_thread = threading.Thread(target=app, name="app")
    app_thread.start()
    start = time.monotonic()
    workers = _gilstat_demo.pool(n, calls, callback, NATIVE_US)
    wall = time.monotonic() - start
    stop[0] = True
    app_thread.join()
    emit("pool", threads=n, calls=calls, native_us=NATIVE_US, wall_s=wall,
         switch_interval_s=sys.getswitchinterval())
    emit_thread("app", app_truth["tid"], role="app", iterations=app_truth["iterations"],
                runq_s=app_truth["runq"])
    for w in workers:
        emit_thread("native", w["tid"], role="worker", calls=w["calls"],
                    native_wait_s=w["wait_ns"] / 1e9, native_held_s=w["held_ns"] / 1e9)


if __name__ == "__main__":
    main()
