"""Exit with a given code, or die by a signal; optionally emit bytes or echo stdin first.

    exit_code.py CODE [--signal SEGV|TERM|...] [--emit N] [--echo-stdin]

--emit N writes N deterministic bytes (all 256 byte values, no trailing newline) to
stdout, so a caller can check that stdout passes through byte-exact.
--echo-stdin copies stdin to stdout before anything else.
"""
import argparse
import os
import signal
import sys


def emitted_bytes(n):
    # A cheap LCG over all byte values: deterministic, so runs can be compared.
    out = bytearray(n)
    x = 12345
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out[i] = (x >> 16) & 0xFF
    return bytes(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("code", type=int)
    parser.add_argument("--signal", help="signal name without SIG, e.g. SEGV or TERM")
    parser.add_argument("--emit", type=int, default=0)
    parser.add_argument("--echo-stdin", action="store_true")
    args = parser.parse_args()

    if args.echo_stdin:
        sys.stdout.buffer.write(sys.stdin.buffer.read())
    if args.emit:
        sys.stdout.buffer.write(emitted_bytes(args.emit))
    sys.stdout.flush()

    if args.signal:
        signum = getattr(signal, "SIG" + args.signal.upper())
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file for SEGV
        except (ImportError, ValueError, OSError):
            pass
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        signal.pause()  # not reached: the default action of the signal ends us
    sys.exit(args.code)


if __name__ == "__main__":
    main()
