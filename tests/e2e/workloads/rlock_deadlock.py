"""Two deadlocks through threading.RLock, stuck for good once it prints its line.

1. A lock cycle without the GIL: "rlock-a" owns RLock `first` (twice) and waits for
   `second`, which "rlock-b" owns while it waits for `first`.
2. A cycle through the GIL: "waiter" owns a libc pthread mutex (taken with the GIL
   released) and waits for RLock `third`, which "keeper" owns while it runs Python, so
   it needs the GIL; "holder" then locks the mutex through ctypes.PyDLL, which keeps the
   GIL: it blocks holding the GIL, "keeper" waits for the GIL forever.

The main thread makes sure each RLock waiter is asleep in its acquire before the
holder takes the GIL for good (after that no other thread runs Python again).

The holder prints one JSON line before it blocks: {"pid", "threads": {name: native_id},
"rlocks": {name: id()}}.
Nothing can end it but a signal.
"""
import ctypes
import ctypes.util
import json
import os
import threading
import time

LIBC = ctypes.util.find_library("c") or "libc.so.6"
released = ctypes.CDLL(LIBC)  # calls release the GIL
kept = ctypes.PyDLL(LIBC)  # calls keep the GIL
mutex = ctypes.create_string_buffer(64)  # zeroed: PTHREAD_MUTEX_INITIALIZER (40 bytes)
first, second, third = threading.RLock(), threading.RLock(), threading.RLock()
a_owns, b_owns, keeper_owns = threading.Event(), threading.Event(), threading.Event()
ids = {}
trying = set()  # names of the threads about to block in an acquire


def cross(name, mine, theirs, owned, other_owned, times):
    """Owns `mine` (`times` over), then waits for `theirs`, owned by the other one."""
    ids[name] = threading.get_native_id()
    for _ in range(times):
        mine.acquire()
    owned.set()
    other_owned.wait()
    trying.add(name)
    theirs.acquire()  # blocks here


def keeper():
    ids["keeper"] = threading.get_native_id()
    with third:
        keeper_owns.set()
        n = 0
        while True:
            n += 1


def waiter():
    ids["waiter"] = threading.get_native_id()
    released.pthread_mutex_lock(mutex)
    keeper_owns.wait()
    trying.add("waiter")
    third.acquire()  # waiter blocks here


def holder():
    ids["holder"] = threading.get_native_id()
    rlocks = {"first": id(first), "second": id(second), "third": id(third)}
    print(json.dumps({"pid": os.getpid(), "threads": ids, "rlocks": rlocks}), flush=True)
    kept.pthread_mutex_lock(mutex)  # the holder blocks here, keeping the GIL


def asleep(name):
    """Whether the thread sleeps in the same futex wait for 50 ms on end (a GIL wait
    ends within a switch interval: the others hold the GIL 5 ms at a time)."""
    path = "/proc/self/task/%d/syscall" % ids[name]
    seen = None
    for _ in range(5):
        with open(path) as f:
            now = f.read()
        if not now.startswith("202 ") or (seen is not None and now != seen):
            return False
        seen = now
        time.sleep(0.01)
    return True


def main():
    ids["MainThread"] = threading.get_native_id()
    threads = [("rlock-a", cross, ("rlock-a", first, second, a_owns, b_owns, 2)),
               ("rlock-b", cross, ("rlock-b", second, first, b_owns, a_owns, 1)),
               ("keeper", keeper, ()), ("waiter", waiter, ())]
    for name, target, args in threads:
        threading.Thread(target=target, name=name, args=args, daemon=True).start()
    for name in ("rlock-a", "rlock-b", "waiter"):
        while name not in trying or not asleep(name):
            time.sleep(0.01)
    h = threading.Thread(target=holder, name="holder")
    h.start()
    h.join()


if __name__ == "__main__":
    main()
