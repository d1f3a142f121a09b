"""A classic GIL deadlock, stuck for good once it prints its line.

Thread "owner" locks a libc pthread mutex with the GIL released (ctypes.CDLL), then
runs Python, so it needs the GIL. Thread "holder" then locks the same mutex through
ctypes.PyDLL, which keeps the GIL across the call: it blocks holding the GIL, and
"owner" waits for the GIL forever. A third thread, named with non-ASCII characters,
waits on an Event (GIL released); the main thread joins "holder" (GIL released).

Prints one JSON line before the deadlock: {"pid", "threads": {name: native_id}}.
Nothing can end it but a signal.
"""
import ctypes
import ctypes.util
import json
import os
import threading

LIBC = ctypes.util.find_library("c") or "libc.so.6"
released = ctypes.CDLL(LIBC)  # calls release the GIL
kept = ctypes.PyDLL(LIBC)  # calls keep the GIL
mutex = ctypes.create_string_buffer(64)  # zeroed: PTHREAD_MUTEX_INITIALIZER (40 bytes)
owned = threading.Event()
never = threading.Event()
ids = {}


def lock_keeping_the_gil():
    kept.pthread_mutex_lock(mutex)  # the holder blocks here


def holder():
    ids["holder"] = threading.get_native_id()
    owned.wait()
    print(json.dumps({"pid": os.getpid(), "threads": ids}), flush=True)
    lock_keeping_the_gil()


def spin():
    n = 0
    while True:
        n += 1


def owner():
    ids["owner"] = threading.get_native_id()
    released.pthread_mutex_lock(mutex)
    owned.set()
    spin()


def watcher():
    ids["wächter-Ω"] = threading.get_native_id()
    never.wait()


def main():
    ids["MainThread"] = threading.get_native_id()
    w = threading.Thread(target=watcher, name="wächter-Ω", daemon=True)
    w.start()
    while "wächter-Ω" not in ids:
        pass
    h = threading.Thread(target=holder, name="holder")
    h.start()
    threading.Thread(target=owner, name="owner").start()
    h.join()


if __name__ == "__main__":
    main()
