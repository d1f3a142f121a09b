"""One thread named `sleeper` that spends nearly all its life in time.sleep, plus one
pure-Python thread named `spinner` that keeps the GIL busy.

The sleeper wakes every --interval seconds (default 0.1): each wake is one short wait
for the GIL (about one switch interval, 5 ms, on a quiet machine) and a hold of
microseconds.
Prints one JSON line to stdout: {"pid", "slept_s", "threads": [{"name", "native_id"}...]},
slept_s being the sleeper's wall time from entering time.sleep to running again.
"""
import argparse
import json
import os
import sys
import threading
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()

    deadline = time.monotonic() + args.seconds
    ids = {}
    slept = [0.0]

    def sleeper():
        ids["sleeper"] = threading.get_native_id()
        while time.monotonic() < deadline:
            before = time.monotonic()
            time.sleep(args.interval)
            # Includes the wait to get the GIL back: an upper bound on the released time.
            slept[0] += time.monotonic() - before

    def spinner():
        ids["spinner"] = threading.get_native_id()
        monotonic = time.monotonic
        n = 0
        while True:
            n += 1
            if n % 2048 == 0 and monotonic() >= deadline:
                break

    threads = [
        threading.Thread(target=sleeper, name="sleeper"),
        threading.Thread(target=spinner, name="spinner"),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = {
        "pid": os.getpid(),
        "slept_s": slept[0],
        "threads": [{"name": k, "native_id": v} for k, v in ids.items()],
    }
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
