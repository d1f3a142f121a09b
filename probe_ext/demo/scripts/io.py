"""io: threads that spend their life blocked in time.sleep and socket waits.

Blocking calls release the GIL, so these threads hold it almost never:
held ~ 0, released ~ their whole lifetime. Ground truth: wake-ups per thread.
"""
import socket
import threading
import time

from demo_common import emit, emit_thread, native_id, wait_for_go

TICKS = 30
TICK_S = 0.05


def main():
    wait_for_go()
    reader_sock, writer_sock = socket.socketpair()
    tids = {}
    counts = {}

    def sleeper():
        tids["sleeper"] = native_id()
        for _ in range(TICKS):
            time.sleep(TICK_S)
        counts["sleeper"] = TICKS

    def writer():
        tids["writer"] = native_id()
        for _ in range(TICKS):
            time.sleep(TICK_S)
            writer_sock.sendall(b"x")
        writer_sock.sendall(b".")
        counts["writer"] = TICKS

    def reader():
        tids["reader"] = native_id()
        n = 0
        while True:
            data = reader_sock.recv(1)  # blocks, GIL released, until the writer sends
            if not data or data == b".":
                break
            n += 1
        counts["reader"] = n

    threads = [threading.Thread(target=f, name=f.__name__) for f in (sleeper, writer, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    emit("io", ticks=TICKS, tick_s=TICK_S)
    for t in threads:
        emit_thread(t.name, tids[t.name], wakeups=counts[t.name])


if __name__ == "__main__":
    main()
