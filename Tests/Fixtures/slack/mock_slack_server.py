#!/usr/bin/env python3
"""Loopback mock of a Slack incoming webhook, for testing tts-cluster's Slack client without
the internet. Plain Python 3 standard library; threaded.

CLI
---
    mock_slack_server.py [--host 127.0.0.1] [--port 0] [--exit-on-stdin-close]

    --port 0      pick a free port
    --exit-on-stdin-close
                  exit when stdin reaches EOF: give it a pipe and it cannot outlive its parent

When ready it prints `listening PORT` (one line, flushed) on stdout. It never prints request
paths or bodies (the webhook path is the secret). SIGTERM/SIGINT stop it.

Webhook
-------
    POST <any path not starting with /_>     e.g. /services/T000/B000/XXXX
        Answers the next scripted response (see /_control), else like Slack for a good hook:
        200 `ok` for a JSON object with a non-empty "text" or "blocks", 400 `invalid_payload`
        for a body that is not a JSON object, 400 `no_text` for one without text or blocks.
        Every POST is recorded (also the ones answered with an error).

Test control (paths starting with /_ are never scripted)
--------------------------------------------------------
    POST /_control  JSON, any of:
        {"responses": [{"status": 200},
                       {"status": 429, "retry_after": 2},
                       {"status": 500, "count": 3, "body": "rollup_error"},
                       {"status": 400, "body": "invalid_payload"},
                       {"status": 200, "delay_ms": 1500},
                       {"close": true}]}
            appended to the queue; each is used for `count` (default 1) POSTs, in order. "body"
            defaults to `ok` for 200 and to the status's reason otherwise; "retry_after" is sent
            verbatim as Retry-After; "delay_ms" sleeps before answering; "close" drops the
            connection without an answer.
        {"clear": true}      empties the queue and forgets the recorded POSTs
    GET /_state     {"posts": [{"seq", "time", "path", "content_type", "body_len", "json", "text",
                                "status", "scripted"}], "pending": <responses left>}
                    `time` is the arrival time (time.time(), seconds) of the POST.
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class State:
    """The script and the record; one lock around both."""

    def __init__(self):
        self.lock = threading.Lock()
        self.queue = []  # scripted responses, each with a remaining "count"
        self.posts = []
        self.seq = 0

    def take(self):
        with self.lock:
            if not self.queue:
                return None
            r = self.queue[0]
            r["count"] = r.get("count", 1) - 1
            if r["count"] <= 0:
                self.queue.pop(0)
            out = dict(r)
            out.pop("count", None)
            return out

    def pending(self):
        with self.lock:
            return sum(max(0, r.get("count", 1)) for r in self.queue)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A client that went away mid-reply is not an error worth printing.
        pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "MockSlack/1"

    def log_message(self, format, *args):  # never print paths (the webhook path is a secret)
        pass

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def reply(self, status, body, headers=None, content_type="text/plain; charset=utf-8"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        state = self.server.state
        if self.path == "/_state":
            with state.lock:
                posts = list(state.posts)
            self.reply(200, json.dumps({"posts": posts, "pending": state.pending()}), content_type="application/json")
        else:
            self.reply(404, "not found")

    def do_POST(self):
        state = self.server.state
        body = self.read_body()
        if self.path == "/_control":
            self.control(json.loads(body or b"{}"))
            return
        arrival = time.time()
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        scripted = state.take()
        if scripted is None:
            if not isinstance(parsed, dict):
                status, text = 400, "invalid_payload"
            elif not parsed.get("text") and not parsed.get("blocks"):
                status, text = 400, "no_text"
            else:
                status, text = 200, "ok"
            headers = {}
        else:
            status = scripted.get("status", 200)
            text = scripted.get("body", "ok" if status == 200 else self.responses.get(status, ("error",))[0])
            headers = {"Retry-After": scripted["retry_after"]} if "retry_after" in scripted else {}
        entry = {"time": arrival, "path": self.path, "content_type": self.headers.get("Content-Type"),
                 "body_len": len(body), "json": parsed if isinstance(parsed, dict) else None,
                 "text": parsed.get("text") if isinstance(parsed, dict) else None,
                 "status": 0 if scripted and scripted.get("close") else status, "scripted": scripted is not None}
        with state.lock:
            state.seq += 1
            state.posts.append({"seq": state.seq, **entry})
        if scripted and scripted.get("delay_ms"):
            time.sleep(scripted["delay_ms"] / 1000)
        if scripted and scripted.get("close"):
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.reply(status, text, headers)

    def control(self, req):
        state = self.server.state
        with state.lock:
            if req.get("clear"):
                state.queue = []
                state.posts = []
                state.seq = 0
            for r in req.get("responses", []):
                state.queue.append(dict(r))
        self.reply(200, json.dumps({"pending": state.pending()}), content_type="application/json")


def main():
    ap = argparse.ArgumentParser(description="Loopback mock Slack incoming webhook (see the module docstring).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--exit-on-stdin-close", action="store_true",
                    help="exit when standard input reaches EOF (the parent holding the pipe died)")
    args = ap.parse_args()

    # A parent may spawn us from a thread that blocks signals (Swift's Process does); the
    # mask is inherited across exec, so unblock the ones that must stop us.
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})

    server = Server((args.host, args.port), Handler)
    server.state = State()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    print(f"listening {server.server_address[1]}", flush=True)

    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, lambda signum, frame: stop.set())

    if args.exit_on_stdin_close:
        def watch_stdin():
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except OSError:
                pass
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
    while not stop.is_set():
        stop.wait(0.5)
    os._exit(0)


if __name__ == "__main__":
    main()
