#!/usr/bin/env python3
"""The programs bench/suite.py measures, each with a known GIL behaviour.

    python3 bench/workloads.py KIND --seconds S --ready FILE --go FILE --out FILE

Each sets itself up (threads started, server listening), creates --ready (holding the
server's port for `http`), waits for --go to exist, then works for --seconds and writes
{"ops": N, "seconds": S, "cpu_s": C} to --out: N units of work done in the window, C
the CPU time the whole process used in it (`http` writes {"cpu_s": C} to --out + ".cpu"
once --out exists: from --go to then). Files, not
stdio, so that the handshake is the same run directly, under `gilstat run`, or
attached to: gilstat never sees it.

Kinds:
  turns    3 pure-Python threads taking turns (forced switches every 5 ms); ops: loop
           iterations
  cycle1   1 thread calling os.stat(".") in a loop: one GIL release and re-take per
           call, the highest GIL rate there is; ops: calls
  cycle4   4 such threads sharing the GIL
  storm    2 pure-Python threads with sys.setswitchinterval(1e-6): a forced hand-off
           storm; ops: loop iterations
  http     a ThreadingHTTPServer answering GET / with 2 bytes over keep-alive
           connections; ops are counted by the client (bench/suite.py), not here
  ticker   1 thread reading the clock in a loop; also writes "max_gap_s", the longest
           it went between two reads: how long the process was stopped (an attach)

Runs on Python 3.8+.
"""
import argparse
import http.server
import json
import os
import sys
import threading
import time


def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.001)


def spinners(n, seconds, go, body):
    """n threads running body(stop) -> ops once go exists; the ops summed."""
    stop = threading.Event()
    counts = [0] * n
    started = threading.Barrier(n + 1)

    def run(i):
        started.wait()
        counts[i] = body(stop)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, counts, started, stop


def loop_python(stop):
    n = 0
    while not stop.is_set():
        for _ in range(1000):
            n += 1
    return n


def loop_ticker(stop):
    clock = time.perf_counter
    n, gap, last = 0, 0.0, clock()
    while not stop.is_set():
        for _ in range(100):
            now = clock()
            gap = max(gap, now - last)
            last = now
        n += 100
    MAX_GAP[0] = gap
    return n


MAX_GAP = [0.0]


def loop_stat(stop):
    stat = os.stat
    n = 0
    while not stop.is_set():
        for _ in range(256):
            stat(".")
        n += 256
    return n


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per response, sent at once: unbuffered header and body writes
    # would meet the client's delayed ACK (40 ms per request, not a GIL figure).
    wbufsize = -1
    disable_nagle_algorithm = True

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["turns", "cycle1", "cycle4", "storm", "http", "ticker"])
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--go", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    if args.kind == "http":
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        with open(args.ready, "w") as f:
            f.write(str(server.server_address[1]))
        # Serves until the client is done and says so with --out's existence.
        threading.Thread(target=server.serve_forever, daemon=True).start()
        wait_for(args.go)
        c0 = time.process_time()
        wait_for(args.out)
        cpu = time.process_time() - c0
        server.shutdown()
        with open(args.out + ".cpu.tmp", "w") as f:
            json.dump({"cpu_s": cpu}, f)
        os.rename(args.out + ".cpu.tmp", args.out + ".cpu")
        return

    if args.kind == "storm":
        sys.setswitchinterval(1e-6)
    n, body = {"turns": (3, loop_python), "cycle1": (1, loop_stat), "cycle4": (4, loop_stat),
               "storm": (2, loop_python), "ticker": (1, loop_ticker)}[args.kind]
    threads, counts, started, stop = spinners(n, args.seconds, args.go, body)
    open(args.ready, "w").close()
    wait_for(args.go)
    t0 = time.monotonic()
    c0 = time.process_time()
    started.wait()
    time.sleep(args.seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    cpu = time.process_time() - c0
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"ops": sum(counts), "seconds": elapsed, "cpu_s": cpu, "max_gap_s": MAX_GAP[0]},
                  f)
    os.rename(tmp, args.out)


if __name__ == "__main__":
    main()
