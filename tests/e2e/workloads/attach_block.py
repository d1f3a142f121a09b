"""A single-threaded target to attach to while its only thread is in one call:

  --mode sleep    time.sleep(S)                 (blocked in clock_nanosleep / select)
  --mode select   select.select([], [], [], S)  (blocked in select/poll)
  --mode spin     a tight pure-Python loop for S seconds (never releases the GIL)

Prints "ready" (flushed) right before the call, then after it one JSON line:
{"pid", "mode", "seconds", "elapsed_s", "iterations", "remote_scripts", "probe_loaded"}
(the PEP 768 scripts the process ran, 3.14+; whether gilstat's probe is mapped after the
call); elapsed_s is the call's wall
time measured around it, so a call cut short by the attach shows as elapsed_s < S.

Runs on any Python 3 (3.7 included: the unsupported-version test uses it).
"""
import argparse
import json
import os
import select
import sys
import time

import remote_exec_audit  # records the PEP 768 scripts this process runs (3.14+)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("sleep", "select", "spin"), default="sleep")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    iterations = 0
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    start = time.monotonic()
    if args.mode == "sleep":
        time.sleep(args.seconds)
    elif args.mode == "select":
        select.select([], [], [], args.seconds)
    else:
        end = start + args.seconds
        monotonic = time.monotonic
        n = 0
        while True:
            n += 1
            if n % 4096 == 0 and monotonic() >= end:
                break
        iterations = n
    elapsed = time.monotonic() - start
    sys.stdout.write(json.dumps({"pid": os.getpid(), "mode": args.mode,
                                 "seconds": args.seconds, "elapsed_s": elapsed,
                                 "iterations": iterations,
                                 "remote_scripts": remote_exec_audit.SCRIPTS,
                                 "probe_loaded": remote_exec_audit.probe_loaded()}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
