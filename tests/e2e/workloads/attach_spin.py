"""A target to attach to: N pure-Python threads named `spin-<i>` counting until told
to stop, and a main thread that takes commands on stdin.

Prints "ready" (flushed) once every spinner is counting. Then, one command a line:
  mark   snapshot every spinner's count (the start of the window the test measures)
         and answer "marked"
  stop   stop the spinners, join them, print one JSON line and exit
End of stdin is `stop` (a test that died leaves no spinning orphan). With --seconds S
it needs no stdin: marks at once, stops after S seconds (for `gilstat run`). With
--poll S the main thread waits for stdin with select() timeouts of S seconds instead of
one blocking read, so it returns to Python bytecode every S seconds (a PEP 768
remote-exec request needs that: it runs in the main thread at its next safe point).

The JSON line: {"pid", "remote_scripts", "threads": [{"name", "native_id", "iterations",
"window", "cpu_s"}...]}; `remote_scripts` lists the PEP 768 scripts the process ran;
`window` is the count between `mark` and `stop` (the whole count when
there was no mark).

Runs on Python 3.8+ (no newer syntax).
"""
import argparse
import json
import os
import select
import sys
import threading
import time

import remote_exec_audit  # records the PEP 768 scripts this process runs (3.14+)

PUBLISH_EVERY = 1024  # iterations between publishing the count: cheap, fine-grained


def polled_lines(slice_s):
    """The lines of stdin, read with select() timeouts (the main thread keeps
    running bytecode between them)."""
    fd = sys.stdin.fileno()
    pending = b""
    while True:
        if not select.select([fd], [], [], slice_s)[0]:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield line.decode()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.0,
                        help="stop by itself after S seconds instead of reading stdin")
    parser.add_argument("--poll", type=float, default=0.0,
                        help="wait for stdin in select() slices of S seconds")
    args = parser.parse_args()

    n = args.threads
    counts = [0] * n
    ids = [0] * n
    cpu = [0.0] * n
    stop = [False]
    started = threading.Barrier(n + 1)

    def spin(i):
        ids[i] = threading.get_native_id()
        started.wait()
        k = 0
        while True:
            k += 1
            if k % PUBLISH_EVERY == 0:
                counts[i] = k
                if stop[0]:
                    break
        counts[i] = k
        cpu[i] = time.thread_time()

    threads = [threading.Thread(target=spin, args=(i,), name="spin-%d" % i)
               for i in range(n)]
    for t in threads:
        t.start()
    started.wait()
    sys.stdout.write("ready\n")
    sys.stdout.flush()

    marked = [0] * n
    if args.seconds > 0:
        time.sleep(args.seconds)
    else:
        for line in (polled_lines(args.poll) if args.poll > 0 else sys.stdin):
            command = line.strip()
            if command == "mark":
                marked = list(counts)
                sys.stdout.write("marked\n")
                sys.stdout.flush()
            elif command == "stop":
                break
    stop[0] = True
    for t in threads:
        t.join()

    out = {
        "pid": os.getpid(),
        "remote_scripts": remote_exec_audit.SCRIPTS,
        "threads": [{"name": t.name, "native_id": ids[i], "iterations": counts[i],
                     "window": counts[i] - marked[i], "cpu_s": cpu[i]}
                    for i, t in enumerate(threads)],
    }
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
