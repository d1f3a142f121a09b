"""A target whose only thread is inside dlopen: it loads (ctypes) the library given as
argv[1], whose constructor blocks until a byte arrives on the FIFO named by
$GILSTAT_TEST_BLOCK_FIFO (tests/attach/blocking_init_lib.cpp). The dynamic loader's
lock is held all that time.

Prints "ready" before the dlopen and "loaded" after it; then waits for `stop` (or end
of stdin) and prints one JSON line {"pid"}.

Runs on Python 3.8+ (no newer syntax).
"""
import ctypes
import json
import os
import sys


def main():
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    ctypes.CDLL(sys.argv[1])
    sys.stdout.write("loaded\n")
    sys.stdout.flush()
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    sys.stdout.write(json.dumps({"pid": os.getpid()}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
