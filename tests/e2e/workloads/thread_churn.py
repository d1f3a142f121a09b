"""A thread-per-request service in miniature, for the exporter's memory bound: every
"request" is a new thread with the default `threading` name ("Thread-1234 (handle)" on
3.10+, "Thread-1234" before) that does a little pure Python and exits.

Commands on stdin:
  churn N [MS]  runs N request threads, at most 8 at a time (MS milliseconds apart,
                default 0); prints "churned N" once all have ended
  exit      ends the process (exit code 0)

--rate R (default 0) also starts R request threads a second, all the time, in the
background (the soak benchmark's thread-per-request target); --tag is not used: it is
there for `gilstat exporter --match` to find this process. Prints "ready" at start.

Runs on Python 3.8+ (no newer syntax).
"""
import argparse
import sys
import threading
import time


def handle():
    total = 0
    for i in range(300):
        total += i * i
    return total


def churn(n, pause_s, width=8):
    done = 0
    while done < n:
        batch = [threading.Thread(target=handle) for _ in range(min(width, n - done))]
        for t in batch:
            t.start()
        for t in batch:
            t.join()
        done += len(batch)
        if pause_s:
            time.sleep(pause_s)


def background(rate):
    period = 1.0 / rate
    next_at = time.monotonic()
    while True:
        t = threading.Thread(target=handle)
        t.start()
        t.join()
        next_at += period
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.monotonic()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    if args.rate > 0:
        threading.Thread(target=background, args=(args.rate,), name="spawner",
                         daemon=True).start()
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "churn":
            churn(int(words[1]), float(words[2]) / 1000 if len(words) > 2 else 0.0)
            print("churned %s" % words[1], flush=True)
        elif words[0] == "exit":
            return


if __name__ == "__main__":
    main()
