"""A service in miniature for `gilstat exporter`: two worker threads (`worker-0`,
`worker-1`) that keep taking the GIL (a little pure Python, a short sleep), and the main
thread reading commands from stdin:

  burst N   start N short-lived threads, each named with letters only ("burst-a",
            "burst-b", ..., "burst-ab", ...) so that each is a thread group of its own;
            prints "burst done" once all have ended
  exit      ends the process (exit code 0)

--tag is not used: it is there for `gilstat exporter --match` to find this process.
Prints "ready" once the workers run.
"""
import argparse
import sys
import threading
import time


def letters(i):
    out = ""
    while True:
        out = chr(ord("a") + i % 26) + out
        i = i // 26 - 1
        if i < 0:
            return out


def work(stop):
    while not stop.is_set():
        total = 0
        for i in range(2000):
            total += i * i
        time.sleep(0.001)


def short_job():
    total = 0
    for i in range(5000):
        total += i


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tag", default="")
    parser.parse_args()
    stop = threading.Event()
    workers = [threading.Thread(target=work, args=(stop,), name="worker-%d" % i)
               for i in range(2)]
    for w in workers:
        w.start()
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "burst":
            threads = [threading.Thread(target=short_job, name="burst-" + letters(i))
                       for i in range(int(words[1]))]
            for t in threads:
                t.start()
                t.join()  # one at a time: short-lived, never more than one alive
            print("burst done", flush=True)
        elif words[0] == "exit":
            break
    stop.set()
    for w in workers:
        w.join()


if __name__ == "__main__":
    main()
