"""A thread-per-request service under load: a stdlib ThreadingHTTPServer whose handler
does a little Python work, and a client in another process (this interpreter, run as a
subprocess, so not measured) sending --requests requests over --clients connections at
a time. Every request gets its own short-lived `Thread-N (process_request_thread)`.

Prints one JSON line: {"pid", "requests", "served"}.
"""
import argparse
import http.server
import json
import os
import subprocess
import sys
import threading

CLIENT = r"""
import concurrent.futures, sys, urllib.request
port, requests, clients = map(int, sys.argv[1:4])
def get(_):
    with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=30) as r:
        return len(r.read())
with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    sys.exit(0 if all(pool.map(get, range(requests))) else 1)
"""

served = 0
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global served
        body = json.dumps({"squares": sum(i * i for i in range(2000))}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with lock:
            served += 1

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    serving = threading.Thread(target=server.serve_forever, name="server")
    serving.start()
    client = subprocess.run([sys.executable, "-c", CLIENT, str(server.server_address[1]),
                             str(args.requests), str(args.clients)], timeout=300)
    server.shutdown()
    serving.join()
    server.server_close()
    if client.returncode != 0:
        sys.exit("client failed: %d" % client.returncode)
    sys.stdout.write(json.dumps({"pid": os.getpid(), "requests": args.requests,
                                 "served": served}) + "\n")


if __name__ == "__main__":
    main()
