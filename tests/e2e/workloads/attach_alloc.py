"""A busy service that allocates a lot from several threads, to attach to while its
threads are inside malloc/free as often as possible.

Threads: `alloc-<i>` build and drop lists, dicts, bytes and JSON documents (CPython's
own allocator and, for the large objects, libc's malloc/free with their mmap/munmap);
`cmalloc` calls libc's malloc/free directly through ctypes (small and large blocks;
ctypes.PyDLL keeps the GIL over the call, as C extensions allocating do);
`oscalls` makes os calls (getcwd, realpath's lstat calls, uname, environ copies) and
no call that opens a file: the test counts the target's fds.
Each os call releases and retakes the GIL: a few per iteration keep the GIL switch
rate that of a busy service, not more than gilstat's rings take without drops.
The main thread takes commands on stdin, as attach_spin.py does.

Prints "ready" (flushed) once every thread is working. Then, one command a line:
  stop   stop the threads, join them, print one JSON line and exit
End of stdin is `stop`.

The JSON line: {"pid", "threads": [{"name", "iterations"}...]}.

Runs on Python 3.8+ (no newer syntax).
"""
import ctypes
import ctypes.util
import json
import os
import sys
import threading

ALLOCATORS = 3


def main():
    libc = ctypes.PyDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    stop = [False]
    counts = {}
    started = threading.Barrier(ALLOCATORS + 3)

    def allocate(name):
        started.wait()
        k = 0
        while not stop[0]:
            k += 1
            items = [str(i) * 8 for i in range(200)]
            table = {i: (i, items[i % 200]) for i in range(300)}
            blob = bytes(256 * 1024 + k % 4096)  # above the mmap threshold at first
            document = json.dumps({"k": k, "items": items[:50], "n": len(table)})
            del items, table, blob, document
            counts[name] = k

    def c_malloc(name):
        started.wait()
        k = 0
        sizes = (16, 64, 200, 4096, 70000, 1 << 20)
        while not stop[0]:
            k += 1
            blocks = [libc.malloc(sizes[(k + j) % len(sizes)]) for j in range(16)]
            for block in blocks:
                libc.free(block)
            counts[name] = k

    def os_calls(name):
        started.wait()
        k = 0
        while not stop[0]:
            k += 1
            os.getcwd()
            os.path.realpath("/usr/lib/../bin/./")
            os.uname()
            dict(os.environ)
            counts[name] = k

    threads = [threading.Thread(target=allocate, args=("alloc-%d" % i,), name="alloc-%d" % i)
               for i in range(ALLOCATORS)]
    threads.append(threading.Thread(target=c_malloc, args=("cmalloc",), name="cmalloc"))
    threads.append(threading.Thread(target=os_calls, args=("oscalls",), name="oscalls"))
    for t in threads:
        t.start()
    started.wait()
    sys.stdout.write("ready\n")
    sys.stdout.flush()

    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop[0] = True
    for t in threads:
        t.join()
    out = {"pid": os.getpid(),
           "threads": [{"name": t.name, "iterations": counts.get(t.name, 0)} for t in threads]}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
