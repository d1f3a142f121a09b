"""Load for http_service.py: --connections threads, each making one request per
connection (HTTP/1.0, so the server starts a thread per request) for --seconds.
Prints {"requests": N}."""
import argparse
import http.client
import json
import threading
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    deadline = time.monotonic() + args.seconds
    counts = [0] * args.connections

    def load(k):
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
            conn.request("GET", "/work/%d" % counts[k])
            conn.getresponse().read()
            conn.close()
            counts[k] += 1

    threads = [threading.Thread(target=load, args=(k,)) for k in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"requests": sum(counts)}))


if __name__ == "__main__":
    main()
