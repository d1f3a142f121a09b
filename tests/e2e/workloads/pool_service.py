"""A ThreadPoolExecutor service: the main thread submits small jobs for --seconds (a
little Python work and a 1 ms wait each) to a pool of --workers threads, at most
4 * workers queued. Prints {"pid", "jobs", "threads": [{"name", "native_id"}...]}.
Runs on Python 3.8+."""
import argparse
import concurrent.futures
import json
import os
import sys
import threading
import time

seen = {}


def job(n):
    seen[threading.get_native_id()] = threading.current_thread().name
    total = sum(i * i for i in range(2000 + n % 100))
    time.sleep(0.001)
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    deadline = time.monotonic() + args.seconds
    jobs = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.workers) as pool:
        pending = set()
        while time.monotonic() < deadline:
            while len(pending) < 4 * args.workers:
                pending.add(pool.submit(job, jobs))
                jobs += 1
            done, pending = concurrent.futures.wait(
                pending, return_when=concurrent.futures.FIRST_COMPLETED)
    sys.stdout.write(json.dumps({
        "pid": os.getpid(), "jobs": jobs,
        "threads": [{"name": n, "native_id": i} for i, n in seen.items()]}) + "\n")


if __name__ == "__main__":
    main()
