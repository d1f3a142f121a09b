"""Extension modules loaded after gilstat attached, for per-module GIL accounting.

    python module_calls.py DEMO_MODULE_DIR CALLS

Prints "ready", waits until gilstat's probe is mapped into this process, then:
imports _gilstat_demo (so after the attach) and makes CALLS busy_sum calls that
release the GIL, in two threads; multiplies numpy matrices in two threads when
numpy imports; loads a copy of the demo extension with ctypes.CDLL (it imports
PyEval_SaveThread, so the probe hooks it) and dlcloses it while the probe is
still attached. On "stop" prints one JSON line with what it did.
"""
import json
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, sys.argv[1])
CALLS = int(sys.argv[2])


def probe_mapped():
    with open("/proc/self/maps") as f:
        return "libgilstat_probe" in f.read()


def in_threads(fn, n=2):
    threads = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main():
    print("ready", flush=True)
    deadline = time.monotonic() + 20
    while not probe_mapped() and time.monotonic() < deadline:
        time.sleep(0.01)
    attached = probe_mapped()
    time.sleep(0.3)  # the probe arms and hooks what is loaded
    import _gilstat_demo

    def work(i):
        for _ in range(CALLS // 2 + (i < CALLS % 2)):
            _gilstat_demo.busy_sum(1 << 16, 20, True)

    in_threads(work)
    numpy_calls = 0
    try:
        import numpy
    except ImportError:
        numpy = None
    if numpy is not None:
        a = numpy.random.rand(200, 200)

        def matmul(i):
            for _ in range(20):
                a @ a

        in_threads(matmul)
        numpy_calls = 40
    import _ctypes
    import ctypes
    copy = os.path.join(tempfile.mkdtemp(), "gilstat_ctypes_copy.so")
    shutil.copy(_gilstat_demo.__file__, copy)
    lib = ctypes.CDLL(copy)
    time.sleep(0.2)  # the probe thread hooks objects loaded outside imports
    _ctypes.dlclose(lib._handle)
    os.unlink(copy)
    print("done", flush=True)
    sys.stdin.readline()
    print(json.dumps({"pid": os.getpid(), "attached_first": attached, "calls": CALLS,
                      "numpy_calls": numpy_calls, "copy": copy,
                      "numpy": numpy is not None}), flush=True)


if __name__ == "__main__":
    main()
