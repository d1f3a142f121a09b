"""A thread-per-request service: the standard library's ThreadingHTTPServer, whose
handler does some Python work (compute_total()), under load from a client in another process.

The service starts the client itself (`--client PYTHON`, workloads/http_client.py, a
separate process so that it is not measured), prints "ready" once the client runs
(with --ready, for a test that attaches), serves until the client is done, then prints one JSON line:
{"pid", "requests", "threads": [{"name", "native_id"}...]} where threads are the
request threads that ran the handler.

Runs on Python 3.8+.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
seen = []


def compute_total(n):
    """The handler's own work: where a request thread holds the GIL most."""
    total = 0
    for i in range(n):
        total += i * i
    return total


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        t = threading.current_thread()
        seen.append((t.name, threading.get_native_id()))
        total = compute_total(20000)
        body = json.dumps({"path": self.path, "total": total}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--client", required=True, help="interpreter for the client")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--ready", action="store_true")
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    serving = threading.Thread(target=server.serve_forever, name="server")
    serving.start()
    client = subprocess.Popen(
        [args.client, os.path.join(HERE, "http_client.py"), "--port",
         str(server.server_address[1]), "--seconds", str(args.seconds),
         "--connections", str(args.connections)],
        stdout=subprocess.PIPE)
    if args.ready:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
    out, _ = client.communicate()
    server.shutdown()
    serving.join()
    server.server_close()
    requests = json.loads(out)["requests"]
    sys.stdout.write(json.dumps({
        "pid": os.getpid(), "requests": requests,
        "threads": [{"name": n, "native_id": i} for n, i in seen]}) + "\n")
    sys.exit(0 if client.returncode == 0 else 1)


if __name__ == "__main__":
    main()
