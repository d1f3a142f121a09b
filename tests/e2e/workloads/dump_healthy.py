"""A busy, healthy program for `gilstat dump`: two pure-Python threads take turns on the
GIL ("spin-1", "spin-2"), "sleeper" sleeps SLEEP_S in time.sleep, "reader" waits in a
socket recv for a payload the main thread sends later.

Prints one JSON line {"pid", "threads": {name: native_id}} once every thread is in
place, then waits for a line on stdin; then sends the payload (in two halves), joins
the threads and prints {"pid", "sleep_s": how long the sleep took, "recv_intact": the
bytes arrived whole}.

Runs on Python 3.8+.
"""
import json
import os
import socket
import sys
import threading
import time

SLEEP_S = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
PAYLOAD = b"gilstat-dump-payload-0123456789" * 100
running = [True]  # read in the spinners' loop without a call: their innermost frame is spin
ids = {}
result = {}
in_place = threading.Barrier(5)


def spin():
    ids[threading.current_thread().name] = threading.get_native_id()
    in_place.wait()
    n = 0
    while running[0]:
        n += 1


def sleeper():
    ids["sleeper"] = threading.get_native_id()
    in_place.wait()
    t0 = time.monotonic()
    time.sleep(SLEEP_S)
    result["sleep_s"] = time.monotonic() - t0


def reader(sock):
    ids["reader"] = threading.get_native_id()
    in_place.wait()
    got = sock.recv(len(PAYLOAD), socket.MSG_WAITALL)
    result["recv_intact"] = got == PAYLOAD


def main():
    left, right = socket.socketpair()
    threads = [threading.Thread(target=spin, name="spin-%d" % i) for i in (1, 2)]
    threads.append(threading.Thread(target=sleeper, name="sleeper"))
    threads.append(threading.Thread(target=reader, args=(left,), name="reader"))
    for t in threads:
        t.start()
    in_place.wait()
    ids["MainThread"] = threading.get_native_id()
    time.sleep(0.05)  # the sleeper and the reader are in their calls
    print(json.dumps({"pid": os.getpid(), "threads": ids}), flush=True)
    sys.stdin.readline()
    half = len(PAYLOAD) // 2
    right.sendall(PAYLOAD[:half])
    time.sleep(0.05)
    right.sendall(PAYLOAD[half:])
    for t in threads[2:]:
        t.join()
    running[0] = False
    for t in threads[:2]:
        t.join()
    result["pid"] = os.getpid()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
