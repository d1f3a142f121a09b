"""N pure-Python threads spinning until a shared deadline.

Each thread holds the GIL only while counting, so its share of the GIL's hold time
must match its share of the iterations. Prints one JSON line to stdout:
{"pid": ..., "seconds": ..., "threads": [{"name", "native_id", "iterations", "cpu_s"}, ...]}

Runs on Python 3.8+ (no newer syntax).
"""
import argparse
import json
import os
import sys
import threading
import time

CHECK_EVERY = 2048  # iterations between clock reads: cheap, yet stops within ~0.1 ms


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()

    deadline = [0.0]

    def set_deadline():
        deadline[0] = time.monotonic() + args.seconds

    # All spinners start counting together: the barrier's action fixes the deadline.
    barrier = threading.Barrier(args.threads, action=set_deadline)
    results = {}

    def spin():
        me = threading.current_thread()
        native_id = threading.get_native_id()
        barrier.wait()
        end = deadline[0]
        monotonic = time.monotonic
        n = 0
        while True:
            n += 1
            if n % CHECK_EVERY == 0 and monotonic() >= end:
                break
        results[me.name] = {
            "name": me.name,
            "native_id": native_id,
            "iterations": n,
            # CPU time of this thread: without preemption it equals its GIL hold time.
            "cpu_s": time.thread_time(),
        }

    threads = [threading.Thread(target=spin, name="spin-%d" % i) for i in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    out = {
        "pid": os.getpid(),
        "seconds": args.seconds,
        "threads": [results[t.name] for t in threads],
    }
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
