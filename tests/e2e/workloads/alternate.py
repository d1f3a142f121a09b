"""A thread named `alternator` that alternates ~20 ms of pure-Python spinning with
~20 ms of time.sleep, plus one thread named `spinner` that spins all the time.

The alternator's released time (its sleeps) is about half its lifetime; while it spins
it competes with `spinner`, so part of each spin phase is waiting instead of holding.
Prints one JSON line: {"pid", "cycles", "slept_s", "threads": [{"name", "native_id"}...]},
slept_s being the alternator's wall time from entering time.sleep to running again.
"""
import argparse
import json
import os
import sys
import threading
import time


def spin_until(end):
    monotonic = time.monotonic
    n = 0
    while True:
        n += 1
        if n % 256 == 0 and monotonic() >= end:
            return n


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--period", type=float, default=0.04, help="spin + sleep, seconds")
    args = parser.parse_args()

    deadline = time.monotonic() + args.seconds
    ids = {}
    cycles = [0]
    slept = [0.0]

    def alternator():
        ids["alternator"] = threading.get_native_id()
        half = args.period / 2
        while time.monotonic() < deadline:
            spin_until(time.monotonic() + half)
            before = time.monotonic()
            time.sleep(half)
            # Includes the wait to get the GIL back: an upper bound on the released time.
            slept[0] += time.monotonic() - before
            cycles[0] += 1

    def spinner():
        ids["spinner"] = threading.get_native_id()
        spin_until(deadline)

    threads = [
        threading.Thread(target=alternator, name="alternator"),
        threading.Thread(target=spinner, name="spinner"),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = {
        "pid": os.getpid(),
        "cycles": cycles[0],
        "slept_s": slept[0],
        "threads": [{"name": k, "native_id": v} for k, v in ids.items()],
    }
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
