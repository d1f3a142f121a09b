"""Free-threaded builds: a GIL that turns on in the middle of the run.

Phase 1: N pure-Python threads (`free-<i>`) spin with the GIL disabled. Then the main
thread imports an extension module that does not declare Py_mod_gil = Py_MOD_GIL_NOT_USED
(default `_gilstat_demo`, gilstat's demo extension built for this interpreter): CPython
enables the GIL for good and warns. Phase 2: N new threads (`gil-<i>`) spin with it.

Run it with the GIL disabled (free-threaded build, PYTHON_GIL unset). Without --wait each
phase lasts --seconds. With --wait (for attach tests) phase 1 runs until a line `enable`
arrives on stdin, after "ready" was printed; phase 2 then lasts --seconds.

Prints one JSON line: {"pid", "gil_before", "gil_after", "warnings": [str],
"import_start_s", "import_end_s" (seconds since the script started),
"phases": {"free": [thread...], "gil": [thread...]}} with thread = {"name",
"native_id", "iterations"}.
"""
import argparse
import importlib
import json
import os
import sys
import threading
import time
import warnings

STARTED = time.monotonic()
CHECK_EVERY = 2048


def spin_phase(prefix, n, stop_when):
    """Runs n spinners until stop_when() is true (checked by every spinner); returns
    their results once all have been joined."""
    results = [None] * n
    barrier = threading.Barrier(n + 1)

    def spin(i):
        native_id = threading.get_native_id()
        barrier.wait()
        k = 0
        while True:
            k += 1
            if k % CHECK_EVERY == 0 and stop_when():
                break
        results[i] = {"name": threading.current_thread().name, "native_id": native_id,
                      "iterations": k}

    threads = [threading.Thread(target=spin, args=(i,), name="%s-%d" % (prefix, i))
               for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    return threads, results


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--module", default="_gilstat_demo")
    parser.add_argument("--wait", action="store_true")
    args = parser.parse_args()

    gil_before = sys._is_gil_enabled()

    stop = [False]
    threads, free = spin_phase("free", args.threads, lambda: stop[0])
    if args.wait:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        for line in sys.stdin:  # end of stdin also moves on: no spinning orphan
            if line.strip() == "enable":
                break
    else:
        time.sleep(args.seconds)
    stop[0] = True
    for t in threads:
        t.join()

    import_start = time.monotonic() - STARTED
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importlib.import_module(args.module)
    import_end = time.monotonic() - STARTED
    gil_after = sys._is_gil_enabled()

    deadline = time.monotonic() + args.seconds
    threads, gil = spin_phase("gil", args.threads, lambda: time.monotonic() >= deadline)
    for t in threads:
        t.join()

    out = {
        "pid": os.getpid(),
        "gil_before": gil_before,
        "gil_after": gil_after,
        "warnings": [str(w.message) for w in caught],
        "import_start_s": import_start,
        "import_end_s": import_end,
        "phases": {"free": free, "gil": gil},
    }
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
