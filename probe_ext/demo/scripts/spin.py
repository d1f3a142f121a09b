"""spin [N [SECONDS]]: N pure-Python threads counting in a loop.

Only the thread holding the GIL runs Python code, so the GIL is busy all the
time and each thread gets about 1/N of it (CPython forces a switch every
5 ms). Ground truth: each thread's iteration count.
"""
import sys
import time

from demo_common import (arg, emit, emit_thread, native_id, runqueue_s, start_together,
                         wait_for_go)

CHECK_EVERY = 2048  # iterations between clock reads: cheap, yet stops within ~0.1 ms


def main():
    n = arg(sys.argv, 1, 2, int, 1, 64, "threads")
    seconds = arg(sys.argv, 2, 1.5, float, 0.1, 600.0, "seconds")
    results = [None] * n
    wait_for_go()

    def spin(i, start):
        end = start + seconds
        monotonic = time.monotonic
        cpu0 = time.thread_time()
        runq0 = runqueue_s()
        count = 0
        while True:
            count += 1
            if count % CHECK_EVERY == 0 and monotonic() >= end:
                break
        results[i] = (native_id(), count, time.thread_time() - cpu0, runqueue_s() - runq0)

    threads, _ = start_together(n, spin, ["spin-%d" % i for i in range(n)])
    for t in threads:
        t.join()
    emit("spin", threads=n, seconds=seconds)
    for t, (tid, count, cpu, runq) in zip(threads, results):
        emit_thread(t.name, tid, iterations=count, cpu_s=cpu, runq_s=runq)


if __name__ == "__main__":
    main()
