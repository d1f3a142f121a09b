"""Spawns Python children three ways (subprocess, os.fork, multiprocessing
with fork) and prints one JSON line with what each did: gilstat must report
on this process only and leave the children untouched."""
import json
import multiprocessing
import os
import subprocess
import sys
import threading


def work(n):
    s = 0
    for i in range(n):
        s += i
    return s


def main():
    out = {"pid": os.getpid()}
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           stdout=subprocess.PIPE, check=True, universal_newlines=True)
    out["subprocess_pid"] = int(child.stdout)
    pid = os.fork()
    if pid == 0:
        t = threading.Thread(target=work, args=(100000,))
        t.start()
        t.join()
        os._exit(7)
    _, status = os.waitpid(pid, 0)
    out["fork_exit"] = os.WEXITSTATUS(status)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        out["pool_sum"] = sum(pool.map(work, [1000] * 4))
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
