"""duty [P]: one thread holds the GIL P % of every 10 ms period, else sleeps.

The hold is native (a spin with the GIL held, timed on CLOCK_MONOTONIC), the
rest of each period is a sleep with the GIL released, so the thread's true
held share is P %. Ground truth: the native hold and elapsed time.
"""
import sys
import threading

import _gilstat_demo
from demo_common import arg, emit, emit_thread, native_id, runqueue_s, wait_for_go

PERIOD_MS = 10.0


def main():
    percent = arg(sys.argv, 1, 25.0, float, 1.0, 90.0, "percent")
    seconds = arg(sys.argv, 2, 1.5, float, 0.1, 600.0, "seconds")
    periods = int(round(seconds * 1000.0 / PERIOD_MS))
    truth = {}
    wait_for_go()

    def run():
        truth["tid"] = native_id()
        runq0 = runqueue_s()
        truth["result"] = _gilstat_demo.duty(PERIOD_MS, percent, periods)
        truth["runq"] = runqueue_s() - runq0

    t = threading.Thread(target=run, name="duty")
    t.start()
    t.join()
    held_ns, elapsed_ns, overruns = truth["result"]
    emit("duty", percent=percent, period_ms=PERIOD_MS, periods=periods)
    emit_thread(t.name, truth["tid"], native_held_s=held_ns / 1e9,
                native_elapsed_s=elapsed_ns / 1e9, overruns=overruns, runq_s=truth["runq"])


if __name__ == "__main__":
    main()
