"""Many threads that each fill their ring, then end: what of the probe's region stays
resident in this process afterwards (its pages are charged to our memory).

40 threads call os.stat(".") 20,000 times each, concurrently (two ring records per
call: more than a ring of 32,768 holds, so each thread writes every page of its ring),
and exit. The main thread then waits 1.5 s (the CLI frees an exited thread's ring, and
gives its pages back, at its next take) and prints one JSON line: {"calls",
"rss_shmem_kib"} with this process's resident shared memory (/proc/self/status
RssShmem: the region is the only shared memory a plain python has).

Runs on Python 3.8+.
"""
import json
import os
import threading
import time

THREADS, CALLS = 40, 20000


def work():
    stat = os.stat
    for _ in range(CALLS):
        stat(".")


def rss_shmem_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssShmem:"):
                return int(line.split()[1])
    return None


threads = [threading.Thread(target=work) for _ in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
time.sleep(1.5)
print(json.dumps({"calls": THREADS * CALLS, "rss_shmem_kib": rss_shmem_kib()}), flush=True)
