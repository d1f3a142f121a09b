"""Helpers shared by the gilstat demo scripts.

Every script prints its own ground truth on stdout, one fact per line:

    gilstat-demo KIND key=value key=value ...

(values never contain spaces), so `gilstat demo` can set what gilstat measured
next to what really happened without a JSON parser. Nothing else goes to
stdout. Python 3.8 syntax only.
"""
import os
import sys
import threading
import time

# Set by `gilstat demo --attach`, which starts the script without the probe.
WAIT_ENV = "GILSTAT_DEMO_WAIT"

if sys.version_info < (3, 8) and not os.environ.get(WAIT_ENV):
    # gilstat refuses the interpreter itself and says why; just stop early.  When
    # gilstat is to attach, its pre-flight does the refusing: wait for it.
    sys.exit("the gilstat demos need Python 3.8 or newer")


def emit(kind, **fields):
    parts = ["gilstat-demo", kind]
    for key, value in fields.items():
        if isinstance(value, float):
            value = "%.9f" % value
        value = str(value)
        if not value or any(c.isspace() for c in value):
            raise ValueError("demo field %s=%r must be non-empty without spaces" % (key, value))
        parts.append("%s=%s" % (key, value))
    sys.stdout.write(" ".join(parts) + "\n")
    sys.stdout.flush()


def wait_for_go():
    """With $GILSTAT_DEMO_WAIT set: say `ready`, then block until gilstat writes `go`.

    `gilstat demo --attach` attaches to the script in between, so the measured
    work (everything after this call) runs under the probe, as under `gilstat
    run`. Called by each script after its imports, before its work; without the
    variable it returns at once and the script runs as it always did.
    """
    if not os.environ.get(WAIT_ENV):
        return
    emit("ready", pid=os.getpid())
    line = sys.stdin.readline()
    if line.strip() != "go":
        sys.exit("gilstat demo: expected `go` on stdin, got %r" % line)


def emit_thread(name, tid, **fields):
    emit("thread", name=name, tid=tid, **fields)


def native_id():
    return threading.get_native_id()


def runqueue_s():
    """Seconds this thread has spent runnable but waiting for a CPU.

    /proc/thread-self/schedstat: CPU time, run-queue wait, time slices (ns).
    On a busy machine this is the time no GIL measurement can explain; the
    demos print it next to their timing numbers. 0 when not available.
    """
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def start_together(n, target, names):
    """Starts n threads running target(i, start) that all leave a barrier at once.

    `start` is the monotonic time at which the barrier opened: whatever the
    threads did before it (thread start-up) is not part of the measured phase.
    Returns (threads, start_cell) with start_cell[0] == start.
    """
    start = [0.0]

    def opened():
        start[0] = time.monotonic()

    barrier = threading.Barrier(n, action=opened)

    def run(i):
        barrier.wait()
        target(i, start[0])

    threads = [threading.Thread(target=run, args=(i,), name=names[i]) for i in range(n)]
    for t in threads:
        t.start()
    return threads, start


def arg(argv, index, default, convert, low, high, what):
    """argv[index] converted and range-checked; default when absent."""
    if len(argv) <= index:
        return default
    try:
        value = convert(argv[index])
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        sys.stderr.write("%s must be a number from %s to %s, not %r\n"
                         % (what, low, high, argv[index]))
        sys.exit(2)
    return value


# The work of hold.py and release.py: each thread sums a 256 KiB buffer (it
# stays in its core's cache, so two threads really use two cores) in chunks.
SUM_VALUES = 65536
SUM_PASSES = 1500
SUM_CHUNKS = 8


def native_sum_in_threads(release_gil, threads=2):
    import _gilstat_demo

    wait_for_go()

    native_ns = [0] * threads
    ends = [0.0] * threads
    cpu = [0.0] * threads
    runq = [0.0] * threads
    tids = [0] * threads

    def work(i, _start):
        tids[i] = native_id()
        cpu0 = time.thread_time()
        runq0 = runqueue_s()
        for _ in range(SUM_CHUNKS):
            _, ns = _gilstat_demo.busy_sum(SUM_VALUES, SUM_PASSES, release_gil)
            native_ns[i] += ns
        ends[i] = time.monotonic()
        cpu[i] = time.thread_time() - cpu0
        runq[i] = runqueue_s() - runq0

    names = ["sum-%d" % i for i in range(threads)]
    started, start = start_together(threads, work, names)
    for t in started:
        t.join()
    emit("sum", release_gil=int(release_gil), threads=threads, chunks=SUM_CHUNKS,
         wall_s=max(ends) - start[0])
    for i in range(threads):
        emit_thread(names[i], tids[i], native_s=native_ns[i] / 1e9, cpu_s=cpu[i],
                    runq_s=runq[i])
