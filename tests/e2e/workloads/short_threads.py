"""Short-lived named threads, one after another: `short-<i>` spins --ms milliseconds of
pure Python, then exits before the next one starts.

Checks that a thread keeps its `threading` name in the report however briefly it lived.
Prints one JSON line: {"pid", "threads": [{"name", "native_id"}...]}.
"""
import argparse
import json
import os
import sys
import threading
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--ms", type=float, default=10.0)
    args = parser.parse_args()

    ids = []

    def work():
        ids.append({"name": threading.current_thread().name,
                    "native_id": threading.get_native_id()})
        end = time.monotonic() + args.ms / 1000.0
        while time.monotonic() < end:
            pass

    for i in range(args.threads):
        t = threading.Thread(target=work, name="short-%d" % i)
        t.start()
        t.join()
    sys.stdout.write(json.dumps({"pid": os.getpid(), "threads": ids}) + "\n")


if __name__ == "__main__":
    main()
