"""A hostile target: two threads compete for the GIL while the main thread attacks the
shared region gilstat reads (a `memfd:gilstat` in its own fd table, found through
/proc/self/fd and mapped here), to show that nothing it writes can hurt gilstat.

Prints "ready" once the spinners run. Then, one command a line (each answered with
one line):
  find           locate the region: "found <fd> <size>" or "none"
  header-ff      write 0xFF over the header (up to the name log): "done"
  spray          start spraying random bytes over the whole region, again and again,
                 until stop: "spraying"
  truncate       ftruncate the memfd to 0 bytes, then to twice its size:
                 "truncate <errno name or ok> grow <errno name or ok>"
  replace KIND   dup2 something else over the region's fd number (the probe keeps
                 its own mapping): KIND fifo (a FIFO), file (a regular file holding a
                 copy of the region) or memfd (an unsealed memfd named "gilstat"
                 holding a copy): "replaced <fd>"
  stop           stop the spinners, print one JSON line {"pid", "attacks"} and exit
End of stdin is `stop`. With --attack A --after S --seconds T it needs no stdin (for
`gilstat run`): runs attack A (header-ff, spray or truncate) after S seconds and exits
after T seconds.

Runs on Python 3.8+ (no newer syntax).
"""
import argparse
import errno
import json
import mmap
import os
import random
import struct
import sys
import tempfile
import threading
import time

REGION_LINK = "/memfd:gilstat (deleted)"
NAMES_OFFSET_AT = 32  # Header::names_offset (include/gilstat/protocol.hpp)
SPRAY_BYTES = 16384
SPRAY_PAUSE_S = 0.001


class Region:
    def __init__(self):
        self.fd = -1
        self.map = None
        self.spraying = False

    def find(self):
        for name in sorted(os.listdir("/proc/self/fd"), key=int):
            try:
                link = os.readlink("/proc/self/fd/" + name)
            except OSError:
                continue
            if link == REGION_LINK:
                self.fd = int(name)
                size = os.fstat(self.fd).st_size
                self.map = mmap.mmap(self.fd, size, mmap.MAP_SHARED,
                                     mmap.PROT_READ | mmap.PROT_WRITE)
                return "found %d %d" % (self.fd, size)
        return "none"

    def header_ff(self):
        names_offset = struct.unpack_from("<Q", self.map, NAMES_OFFSET_AT)[0]
        end = min(names_offset, len(self.map)) if names_offset else 4096
        self.map[0:end] = b"\xff" * end
        return "done"

    def spray(self):
        rng = random.Random(os.getpid())
        size = len(self.map)
        while self.spraying:
            at = rng.randrange(0, size - SPRAY_BYTES)
            self.map[at:at + SPRAY_BYTES] = os.urandom(SPRAY_BYTES)
            # The first page too, now and then: the header and the name log.
            if rng.random() < 0.05:
                at = rng.randrange(0, 4096 - 64)
                self.map[at:at + 64] = os.urandom(64)
            time.sleep(SPRAY_PAUSE_S)

    def start_spray(self):
        self.spraying = True
        threading.Thread(target=self.spray, name="sprayer", daemon=True).start()
        return "spraying"

    def truncate(self):
        def attempt(size):
            try:
                os.ftruncate(self.fd, size)
                return "ok"
            except OSError as e:
                return errno.errorcode.get(e.errno, str(e.errno))
        size = os.fstat(self.fd).st_size
        return "truncate %s grow %s" % (attempt(0), attempt(2 * size))

    def replace(self, kind):
        if kind == "fifo":
            path = os.path.join(tempfile.mkdtemp(), "fifo")
            os.mkfifo(path)
            other = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        elif kind == "file":
            other, path = tempfile.mkstemp()
            os.unlink(path)
            os.write(other, bytes(self.map))
        elif kind == "memfd":
            other = os.memfd_create("gilstat", 0)
            os.write(other, bytes(self.map))
        else:
            return "unknown replacement %r" % kind
        os.dup2(other, self.fd)
        os.close(other)
        return "replaced %d" % self.fd


def spin(stop, counts, i):
    k = 0
    while not stop[0]:
        k += 1
    counts[i] = k


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--attack", default="")
    parser.add_argument("--after", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=0.0)
    args = parser.parse_args()

    stop = [False]
    counts = [0, 0]
    threads = [threading.Thread(target=spin, args=(stop, counts, i), name="spin-%d" % i)
               for i in range(2)]
    for t in threads:
        t.start()
    region = Region()
    attacks = []
    sys.stdout.write("ready\n")
    sys.stdout.flush()

    def run(command):
        words = command.split()
        if not words:
            return None
        if words[0] == "find":
            return region.find()
        if region.map is None and region.find() == "none":
            return "none"
        attacks.append(command)
        if words[0] == "header-ff":
            return region.header_ff()
        if words[0] == "spray":
            return region.start_spray()
        if words[0] == "truncate":
            return region.truncate()
        if words[0] == "replace" and len(words) == 2:
            return region.replace(words[1])
        return "unknown command %r" % command

    if args.attack:
        time.sleep(args.after)
        sys.stdout.write(run(args.attack) + "\n")
        sys.stdout.flush()
        time.sleep(max(0.0, args.seconds - args.after))
    else:
        for line in sys.stdin:
            command = line.strip()
            if command == "stop":
                break
            answer = run(command)
            if answer is not None:
                sys.stdout.write(answer + "\n")
                sys.stdout.flush()
    region.spraying = False
    stop[0] = True
    for t in threads:
        t.join()
    sys.stdout.write(json.dumps({"pid": os.getpid(), "attacks": attacks}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
