"""The GIL at the highest rate: N threads named `cycle-<i>`, each calling os.stat(".")
in a loop (every call releases the GIL and takes it back: ~2 M times a second on one
core), counting their calls.

With --seconds S: the threads run S seconds, then one JSON line is printed and the
program exits (for `gilstat run`). Without it: prints "ready" once every thread runs,
then runs until stdin says `stop` (or ends), then prints the JSON line (for an attach).

The JSON line: {"pid", "threads": [{"name", "native_id", "calls"}...]}.

Runs on Python 3.8+ (no newer syntax).
"""
import argparse
import json
import os
import sys
import threading
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args()
    stop = threading.Event()
    started = threading.Barrier(args.threads + 1)
    results = {}

    def cycle(i):
        stat = os.stat
        calls = 0
        started.wait()
        while not stop.is_set():
            for _ in range(256):
                stat(".")
            calls += 256
        results[i] = {"name": threading.current_thread().name,
                      "native_id": threading.get_native_id(), "calls": calls}

    threads = [threading.Thread(target=cycle, args=(i,), name="cycle-%d" % i)
               for i in range(args.threads)]
    for t in threads:
        t.start()
    started.wait()
    if args.seconds is not None:
        time.sleep(args.seconds)
    else:
        print("ready", flush=True)
        for line in sys.stdin:
            if line.strip() == "stop":
                break
    stop.set()
    for t in threads:
        t.join()
    print(json.dumps({"pid": os.getpid(),
                      "threads": [results[i] for i in sorted(results)]}), flush=True)


if __name__ == "__main__":
    main()
