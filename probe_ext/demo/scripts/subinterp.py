"""subinterp (Python 3.12+): two isolated interpreters, each with its own GIL.

Each interpreter spins in pure Python on its own thread. With a GIL per
interpreter they do not contend: both run at once, and each thread holds its
interpreter's GIL nearly all the time. Ground truth: per interpreter, the
thread running it and its iteration count.
"""
import os
import sys
import threading
import time

from demo_common import arg, emit, emit_thread, native_id, wait_for_go

# No `threading` in there: on 3.12 a subinterpreter that imported it hangs
# in destroy() unless destroyed by the thread that ran it.
BUSY = """
import os, time
end = time.monotonic() + {seconds}
n = 0
while True:
    n += 1
    if n % 2048 == 0 and time.monotonic() >= end:
        break
os.write(1, ("gilstat-demo interp id={interp} tid={tid} iterations=%d\\n" % n).encode())
"""


def create_isolated():
    try:
        import _interpreters  # 3.13+

        return _interpreters, _interpreters.create("isolated")
    except ImportError:
        import _xxsubinterpreters  # 3.12

        return _xxsubinterpreters, _xxsubinterpreters.create(isolated=True)


def main():
    wait_for_go()
    if sys.version_info < (3, 12):
        emit("unsupported", needs="3.12", python="%d.%d" % sys.version_info[:2])
        return
    n = arg(sys.argv, 1, 2, int, 1, 8, "interpreters")
    seconds = arg(sys.argv, 2, 1.0, float, 0.1, 600.0, "seconds")
    interps = [create_isolated() for _ in range(n)]
    tids = [0] * n

    def run(i):
        tids[i] = native_id()
        module, interp_id = interps[i]
        module.run_string(interp_id, BUSY.format(seconds=seconds, interp=int(interp_id),
                                                 tid=tids[i]))
        module.destroy(interp_id)  # from this thread: see BUSY

    threads = [threading.Thread(target=run, args=(i,), name="interp-%d" % i) for i in range(n)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    sys.stdout.flush()
    emit("subinterp", interpreters=n, seconds=seconds, wall_s=wall)
    for i, t in enumerate(threads):
        emit_thread(t.name, tids[i], interp=int(interps[i][1]))


if __name__ == "__main__":
    main()
