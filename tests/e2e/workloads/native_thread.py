"""A thread that Python's `threading` module never heard of: created with
pthread_create through ctypes, it runs a Python callback (ctypes takes the GIL for it
with PyGILState_Ensure), so gilstat can only name it `native-<tid>`.

The callback spins for --seconds without touching `threading` (threading.current_thread()
would register a _DummyThread with a name). Prints one JSON line:
{"pid", "native_tid", "iterations"}.
"""
import argparse
import ctypes
import json
import os
import sys
import threading
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()

    libc = ctypes.CDLL(None, use_errno=True)
    start_routine = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)
    seen = {}

    def body(_arg):
        seen["tid"] = threading.get_native_id()  # a plain gettid(): registers nothing
        end = time.monotonic() + args.seconds
        n = 0
        while True:
            n += 1
            if n % 2048 == 0 and time.monotonic() >= end:
                break
        seen["iterations"] = n
        return None

    callback = start_routine(body)  # must outlive the thread
    handle = ctypes.c_ulong()
    # CDLL calls release the GIL, so the new thread can take it while we wait in join.
    err = libc.pthread_create(ctypes.byref(handle), None, callback, None)
    if err:
        sys.exit("pthread_create failed: %s" % os.strerror(err))
    libc.pthread_join(handle, None)
    out = {"pid": os.getpid(), "native_tid": seen["tid"], "iterations": seen["iterations"]}
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
