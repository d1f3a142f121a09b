"""Many short-lived threads with `threading`'s default names, as a thread-per-request
service makes them: --threads threads in all, at most --alive alive at once, each
spinning --ms milliseconds of pure Python (so it takes and holds the GIL), sleeping
--sleep-ms (a request waiting for I/O, GIL released), then spinning --ms again.

With --together, all --threads threads start, take the GIL once, and wait at a barrier
until every one of them is alive: more live threads than the probe has rings.

Prints one JSON line: {"pid", "threads": [{"name", "native_id"}...], "max_alive"}.
Runs on Python 3.8+.
"""
import argparse
import json
import os
import sys
import threading
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=500)
    parser.add_argument("--alive", type=int, default=100)
    parser.add_argument("--ms", type=float, default=3.0)
    parser.add_argument("--sleep-ms", type=float, default=20.0)
    parser.add_argument("--together", action="store_true")
    args = parser.parse_args()

    ids = []
    lock = threading.Lock()
    alive = [0, 0]  # now, max
    slots = threading.BoundedSemaphore(args.alive)
    barrier = threading.Barrier(args.threads) if args.together else None

    def spin():
        end = time.monotonic() + args.ms / 1000.0
        n = 0
        while time.monotonic() < end:
            n += 1

    def work():
        with lock:
            ids.append({"name": threading.current_thread().name,
                        "native_id": threading.get_native_id()})
            alive[0] += 1
            alive[1] = max(alive[1], alive[0])
        spin()
        time.sleep(args.sleep_ms / 1000.0)
        spin()
        if barrier is not None:
            barrier.wait()
        with lock:
            alive[0] -= 1
        slots.release()

    threads = []
    for _ in range(args.threads):
        slots.acquire()
        t = threading.Thread(target=work)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    sys.stdout.write(json.dumps({"pid": os.getpid(), "threads": ids,
                                 "max_alive": alive[1]}) + "\n")


if __name__ == "__main__":
    main()
