"""A thread inside a long native call that keeps the GIL, with neighbours
blocked in system calls, for taking stacks from outside.

    python native_hog.py DEMO_MODULE_DIR HOLD_MS

Threads: `hog` calls hog_caller() -> _gilstat_demo.hold_for(HOLD_MS) (spins
natively, GIL held); `sleeper` in time.sleep(2.0); `raw_sleeper` in libc
nanosleep(2.0) and `receiver` in libc recv() on a socket pair, both through
ctypes so that an EINTR shows (Python's own calls retry it, PEP 475); five
`idle-N` wait on an event: 10 threads with the main one.

Prints "tids NAME=TID ..." then "hog" just before the native call; after the
hold: "sleep ELAPSED", "raw_sleep RESULT ERRNO ELAPSED", "recv RESULT ERRNO
INTACT", then "done".
"""
import ctypes
import socket
import sys
import threading
import time

sys.path.insert(0, sys.argv[1])
import _gilstat_demo  # noqa: E402

HOLD_MS = float(sys.argv[2])
SLEEP_S = 2.0
PAYLOAD = b"gilstat-native-stack-payload-0123456789"

libc = ctypes.CDLL(None, use_errno=True)
tids = {}
results = {}
started = threading.Barrier(4)
idle = threading.Event()


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def sleeper():
    tids["sleeper"] = threading.get_native_id()
    started.wait()
    t0 = time.monotonic()
    time.sleep(SLEEP_S)
    results["sleep"] = time.monotonic() - t0


def raw_sleeper():
    tids["raw_sleeper"] = threading.get_native_id()
    started.wait()
    request = Timespec(int(SLEEP_S), int((SLEEP_S % 1) * 1e9))
    t0 = time.monotonic()
    rc = libc.nanosleep(ctypes.byref(request), None)
    results["raw_sleep"] = (rc, ctypes.get_errno(), time.monotonic() - t0)


def receiver(sock):
    tids["receiver"] = threading.get_native_id()
    started.wait()
    buf = ctypes.create_string_buffer(len(PAYLOAD))
    rc = libc.recv(sock.fileno(), buf, len(PAYLOAD), socket.MSG_WAITALL)
    results["recv"] = (rc, ctypes.get_errno(), buf.raw == PAYLOAD)


def idler(n):
    tids[f"idle-{n}"] = threading.get_native_id()
    idle.wait()


def hog_caller():
    tids["hog"] = threading.get_native_id()
    print("tids " + " ".join(f"{k}={v}" for k, v in sorted(tids.items())), flush=True)
    print("hog", flush=True)
    _gilstat_demo.hold_for(HOLD_MS)


def main():
    tids["main"] = threading.get_native_id()
    left, right = socket.socketpair()
    threads = [threading.Thread(target=sleeper), threading.Thread(target=raw_sleeper),
               threading.Thread(target=receiver, args=(left,))]
    threads += [threading.Thread(target=idler, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.05)  # into their system calls
    hog = threading.Thread(target=hog_caller, name="hog")
    hog.start()
    hog.join()
    time.sleep(0.1)
    right.sendall(PAYLOAD)
    idle.set()
    for t in threads:
        t.join()
    print(f"sleep {results['sleep']:.3f}", flush=True)
    rc, err, elapsed = results["raw_sleep"]
    print(f"raw_sleep {rc} {err} {elapsed:.3f}", flush=True)
    rc, err, intact = results["recv"]
    print(f"recv {rc} {err} {int(intact)}", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
