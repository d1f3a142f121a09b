"""atomics: native threads sharing lock-free counters and a queue, no GIL.

One Python thread calls into native code that releases the GIL and runs
native std::threads on an atomic counter and a lock-free MPMC queue. No
thread touches the GIL while they work. Ground truth: the native threads'
tids and their operation counts.
"""
import sys
import threading

import _gilstat_demo
from demo_common import arg, emit, emit_thread, native_id, wait_for_go


def main():
    n = arg(sys.argv, 1, 2, int, 1, 64, "threads")
    seconds = arg(sys.argv, 2, 1.0, float, 0.1, 600.0, "seconds")
    truth = {}
    wait_for_go()

    def run():
        truth["tid"] = native_id()
        truth["result"] = _gilstat_demo.atomics(n, seconds)

    t = threading.Thread(target=run, name="atomics")
    t.start()
    t.join()
    r = truth["result"]
    emit("atomics", threads=n, seconds=seconds, increments=r["increments"],
         pushed=r["pushed"], popped=r["popped"], checksum_ok=int(r["checksum_ok"]))
    emit_thread(t.name, truth["tid"], role="caller")
    for tid in r["tids"]:
        emit_thread("native", tid, role="worker")


if __name__ == "__main__":
    main()
