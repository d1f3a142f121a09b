"""A service in miniature for `gilstat top`: a thread per request, --rate new
threads a second, each doing --ms milliseconds of pure Python and exiting; two
long threads `busy-0` and `busy-1` spinning pure Python all the time; and a
thread `napper` that sleeps 1 ms at a time, so it waits for the GIL far more
than it holds it (sorting by wait instead of held puts it first).

Prints "ready" (flushed) once the long threads run, then runs until its stdin
closes or says "stop"; then prints one JSON line {"pid", "requests"} and exits.

Runs on Python 3.8+ (no newer syntax).
"""
import argparse
import json
import os
import sys
import threading
import time


def spin_for(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=20.0, help="request threads a second")
    parser.add_argument("--ms", type=float, default=3.0, help="work of one request")
    args = parser.parse_args()

    stop = threading.Event()
    started = threading.Barrier(5)  # the four long threads and main

    def busy():
        started.wait()
        while not stop.is_set():
            spin_for(0.01)

    def napper():
        started.wait()
        while not stop.is_set():
            time.sleep(0.001)

    def spawner():
        started.wait()
        count = 0
        next_at = time.monotonic()
        while not stop.is_set():
            t = threading.Thread(target=spin_for, args=(args.ms / 1000.0,),
                                 name="request-%d" % count)
            t.start()
            count += 1
            next_at += 1.0 / args.rate
            time.sleep(max(0.0, next_at - time.monotonic()))
        requests[0] = count

    requests = [0]
    long_threads = [threading.Thread(target=busy, name="busy-%d" % i) for i in range(2)]
    long_threads.append(threading.Thread(target=napper, name="napper"))
    long_threads.append(threading.Thread(target=spawner, name="spawner"))
    for t in long_threads:
        t.start()
    started.wait()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()
    for t in long_threads:
        t.join()
    sys.stdout.write(json.dumps({"pid": os.getpid(), "requests": requests[0]}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
