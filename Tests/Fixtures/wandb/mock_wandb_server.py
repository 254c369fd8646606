#!/usr/bin/env python3
"""Loopback mock of the W&B server, for testing W&B clients (tts-cluster's Swift client, and
the real SDK's `wandb sync`) without the internet. Plain Python 3 standard library.

It answers what a run needs, in the shapes captured from wandb 0.31.0 (the project's W&B
protocol notes, wandb-protocol.md §1-§5), keeps what it receives, and records every request.

CLI
---
    mock_wandb_server.py [--host 127.0.0.1] [--port 0] [--record FILE] [--entity mockent]
                         [--exit-on-stdin-close]

    --port 0      pick a free port
    --record FILE append one JSON line per request to FILE (created/truncated at start)
    --entity      the entity UpsertBucket reports when the client sends none (default mockent)
    --exit-on-stdin-close
                  exit when stdin reaches EOF: give it a pipe and it cannot outlive its parent

When ready it prints `listening PORT` (one line, flushed) on stdout. It never prints request
headers or bodies (so never an API key). SIGTERM/SIGINT stop it.

Endpoints (W&B)
---------------
    POST /graphql                          by operationName (or the name in the query text):
        Viewer, UpsertBucket (reply of reference §1.3; historyLineCount = lines stored),
        CreateRunFiles (upload URLs on this server + uploadHeaders ["X-Mock-Upload:run-file"]),
        CreateArtifact, CreateArtifactManifest, CreateArtifactFiles (0.31 `$input` shape and
        the older top-level-variables shape), CompleteMultipartUploadArtifact, CommitArtifact,
        UseArtifact, ArtifactType (the Python SDK's pre-log_artifact query),
        ServerFeaturesQuery (no features); anything else -> {"data":{}}
    POST /files/<entity>/<project>/<run>/file_stream   -> {"exitcode": null, "limits": {}}
        writes each file's `content` at line index `offset` (overwrite semantics)
    PUT  /upload/<anything>                stores the bytes; checks Content-MD5 when sent
                                           (400 on mismatch); replies with an ETag (hex md5)
    POST anything else                     -> 200 {}   (e.g. /sdk/otel/v1/metrics)

Endpoints (test control; paths starting with /_ are never subject to faults)
--------------------------------------------------------------------------
    POST /_control  JSON, any of:
        {"fail": [{"status": 500, "count": 3},
                  {"status": 429, "retry_after": 2, "count": 1},
                  {"status": 500, "count": 1, "after_processing": true},
                  {"close": true, "count": 1},
                  {"status": 200, "body": {"errors": [{"message": "boom"}]}, "path": "graphql"},
                  {"status": 503, "count": 2, "path": "file_stream"}]}
            queued faults, applied in order to the following non-control requests (those whose
            path contains "path", when given). "delay_ms" sleeps before answering; alone (no
            "status", no "close") it is a slow but otherwise normal reply: {"delay_ms": 5000}. "after_processing" handles the request (stores
            the data) and then answers the fault; "body" replaces the reply's JSON; "close" drops the connection without a reply
            (also after processing when "after_processing" is true). "retry_after" is sent
            verbatim as the Retry-After header (a number or an HTTP date).
        {"refuse_seconds": 5}
            closes the listening socket and every open connection (except this one, which is
            answered and closed) so connections are refused, and reopens the same port after
            that many seconds.
        {"clear_faults": true}
    GET /_state                 JSON summary: runs (file line counts, uploaded, complete,
                                exitcode, upserts), uploads (path -> size, sha256), artifacts
    GET /_files/<run>/<name>    JSON array: the file's lines as written by offset (null = hole)
    GET /_upload/<path>         the stored bytes of an upload
    GET /_sleep/<ms>            answers after that many milliseconds (client timeout tests)

Record format (--record)
------------------------
One JSON object per line, written just before the reply is sent (or the connection dropped),
so a client that has its reply finds its request already recorded:
    {"seq": 1, "time": 1732500000.123, "peer_port": 51234,   # client port: tells connections apart
     "method": "POST", "path": "/graphql", "query": "",
     "headers": {"Content-Type": "application/json", ...},      # Authorization left out
     "auth": {"present": true, "valid": true},  # valid: Basic base64("api:" + 40 characters)
     "body_len": 512, "body_sha256": "<hex>",
     "json": {...} | null,              # the parsed body, for non-PUT requests with a JSON body
     "operation": "UpsertBucket" | null,  # GraphQL operation name
     "status": 200,                      # status sent (0 when the connection was dropped)
     "fault": null | {"status": 500, ...}}
"""

import argparse
import base64
import hashlib
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

OP_RE = re.compile(r"\b(query|mutation)\s+([A-Za-z_][A-Za-z0-9_]*)")


def b64id(kind, n):
    return base64.b64encode(f"{kind}:{n}".encode()).decode()


class State:
    """Everything the mock keeps; one lock around all of it."""

    def __init__(self, entity, record_path):
        self.lock = threading.Lock()
        self.entity = entity
        self.record_path = record_path
        self.record_file = open(record_path, "w", encoding="utf-8") if record_path else None
        self.seq = 0
        self.faults = []
        self.runs = {}  # run id -> dict
        self.uploads = {}  # upload path -> bytes
        self.stored_md5 = {}  # b64 md5 -> artifact id that first stored it
        self.artifacts = {}  # artifact id -> dict
        self.multipart = {}  # upload id -> dict
        self.counter = 0
        self.connections = set()

    def next_id(self):
        self.counter += 1
        return self.counter

    def run(self, run_id):
        r = self.runs.get(run_id)
        if r is None:
            r = {"files": {}, "uploaded": [], "complete": None, "exitcode": None, "upserts": 0,
                 "storage_id": b64id("Bucket", self.next_id()), "entity": None, "project": None,
                 "display_name": None, "config": None, "file_stream_requests": 0}
            self.runs[run_id] = r
        return r

    def take_fault(self, path):
        """The next queued fault for a request to `path`, or None."""
        with self.lock:
            for i, f in enumerate(self.faults):
                if f.get("path") and f["path"] not in path:
                    continue
                f["count"] = f.get("count", 1) - 1
                fault = dict(f)
                fault.pop("count", None)
                if f["count"] <= 0:
                    del self.faults[i]
                return fault
        return None

    def record(self, entry):
        with self.lock:
            self.seq += 1
            entry = {"seq": self.seq, **entry}
            if self.record_file:
                self.record_file.write(json.dumps(entry, sort_keys=False) + "\n")
                self.record_file.flush()


class Controller:
    """Owns the listening server so it can be closed and reopened on the same port."""

    def __init__(self, host, port, state):
        self.host = host
        self.port = port
        self.state = state
        self.server = None
        self.thread = None
        self.lock = threading.Lock()

    def open(self):
        deadline = time.time() + 10
        while True:
            try:
                server = MockHTTPServer((self.host, self.port), Handler)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        server.state = self.state
        server.controller = self
        self.port = server.server_address[1]
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def refuse(self, seconds, keep):
        with self.lock:
            server = self.server
            self.server = None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self.state.lock:
            conns = list(self.state.connections)
        for c in conns:
            if c is keep:
                continue
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def reopen():
            time.sleep(seconds)
            with self.lock:
                if self.server is None:
                    self.open()

        threading.Thread(target=reopen, daemon=True).start()


class MockHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request, client_address):
        # Dropped connections (faults, refusals) are expected; stay quiet.
        pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-wandb/1"

    def log_message(self, format, *args):  # never print requests (headers may hold keys)
        pass

    def setup(self):
        super().setup()
        with self.server.state.lock:
            self.server.state.connections.add(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            with self.server.state.lock:
                self.server.state.connections.discard(self.connection)

    # -- plumbing -------------------------------------------------------------------------

    def do_GET(self):
        self.handle_any()

    def do_POST(self):
        self.handle_any()

    def do_PUT(self):
        self.handle_any()

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def handle_any(self):
        state = self.server.state
        body = self.read_body()
        split = urlsplit(self.path)
        path, query = split.path, split.query
        parsed = None
        if self.command != "PUT" and body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        operation = None
        if path == "/graphql" and isinstance(parsed, dict):
            operation = parsed.get("operationName")
            if not operation:
                m = OP_RE.search(parsed.get("query") or "")
                operation = m.group(2) if m else None
        self.reply_status = 0
        self.pending = None  # the reply, written only after the request is recorded
        fault = None if path.startswith("/_") else state.take_fault(path)
        if fault and "delay_ms" in fault:
            time.sleep(float(fault["delay_ms"]) / 1000.0)
            if "status" not in fault and not fault.get("close"):
                self.delayed = fault
                fault = None
        try:
            if fault and not fault.get("after_processing"):
                self.send_fault(fault)
            else:
                status, headers, payload = self.route(path, query, body, parsed, operation)
                if fault:
                    self.send_fault(fault)
                else:
                    self.send(status, payload, headers)
        finally:
            # Record first, then answer: a client that got its reply finds its request recorded.
            headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
            state.record({
                "time": time.time(), "peer_port": self.client_address[1], "method": self.command,
                "path": path, "query": query,
                "headers": headers, "auth": self.auth_info(),
                "body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest(),
                "json": parsed, "operation": operation, "status": self.reply_status,
                "fault": fault or getattr(self, "delayed", None),
            })
            self.delayed = None
            self.write_pending()

    def auth_info(self):
        value = self.headers.get("Authorization")
        if value is None:
            return {"present": False, "valid": False}
        valid = False
        if value.startswith("Basic "):
            try:
                decoded = base64.b64decode(value[6:], validate=True).decode()
                valid = decoded.startswith("api:") and len(decoded) == 44
            except (ValueError, UnicodeDecodeError):
                valid = False
        return {"present": True, "valid": valid}

    def send(self, status, payload, headers=None, close=False):
        """Prepares the reply; write_pending() sends it after the request is recorded."""
        if isinstance(payload, (dict, list)) or payload is None:
            data = json.dumps(payload if payload is not None else {}).encode()
            ctype = "application/json"
        else:
            data = payload
            ctype = "application/octet-stream"
        self.pending = ("reply", status, ctype, data, dict(headers or {}), close)
        self.reply_status = status

    def write_pending(self):
        pending, self.pending = self.pending, None
        if pending is None:
            return
        if pending[0] == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        _, status, ctype, data, headers, close = pending
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        if close or headers.get("Connection", "").lower() == "close":
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def send_fault(self, fault):
        if fault.get("close"):
            self.pending = ("drop",)
            self.reply_status = 0
            return
        status = int(fault.get("status", 500))
        headers = {}
        if "body" in fault:  # a custom reply, e.g. HTTP 200 with GraphQL "errors"
            self.send(status, fault["body"], headers)
            return
        if "retry_after" in fault:
            headers["Retry-After"] = str(fault["retry_after"])
        if status == 429:
            headers.setdefault("RateLimit-Remaining", "0")
            headers.setdefault("RateLimit-Reset", str(fault.get("retry_after", 1)))
            payload = {"error": "Rate limit exceeded"}
        else:
            payload = {"error": f"injected fault {status}"}
        self.send(status, payload, headers)

    # -- routing --------------------------------------------------------------------------

    def route(self, path, query, body, parsed, operation):
        state = self.server.state
        if path == "/_control" and self.command == "POST":
            return self.control(parsed or {})
        if self.command == "GET":
            if path == "/_state":
                return 200, None, self.state_json()
            m = re.fullmatch(r"/_files/([^/]+)/(.+)", path)
            if m:
                with state.lock:
                    run = state.runs.get(m.group(1))
                    lines = list(run["files"].get(m.group(2), [])) if run else []
                return 200, None, lines
            m = re.fullmatch(r"/_upload/(.+)", path)
            if m:
                with state.lock:
                    data = state.uploads.get("/upload/" + m.group(1))
                if data is None:
                    return 404, None, {"error": "no such upload"}
                return 200, None, data
            m = re.fullmatch(r"/_sleep/(\d+)", path)
            if m:
                time.sleep(int(m.group(1)) / 1000.0)
                return 200, None, {"slept_ms": int(m.group(1))}
            return 404, None, {"error": "not found"}
        if self.command == "PUT" and path.startswith("/upload/"):
            return self.upload(path, body)
        if self.command == "POST" and path == "/graphql":
            return self.graphql(parsed or {}, operation)
        m = re.fullmatch(r"/files/([^/]+)/([^/]+)/([^/]+)/file_stream", path)
        if m and self.command == "POST":
            return self.file_stream(m.group(3), parsed)
        if self.command == "POST":
            return 200, None, {}
        return 404, None, {"error": "not found"}

    def control(self, req):
        state = self.server.state
        with state.lock:
            if req.get("clear_faults"):
                state.faults = []
            for f in req.get("fail") or []:
                state.faults.append(dict(f))
        if "refuse_seconds" in req:
            seconds = float(req["refuse_seconds"])
            # Stop listening before answering, so the very next connection is refused.
            self.server.controller.refuse(seconds, keep=self.connection)
            self.close_connection = True
            return 200, {"Connection": "close"}, {"ok": True, "refusing_seconds": seconds}
        return 200, None, {"ok": True, "queued_faults": len(state.faults)}

    def state_json(self):
        state = self.server.state
        with state.lock:
            runs = {}
            for rid, r in state.runs.items():
                runs[rid] = {
                    "files": {name: len(lines) for name, lines in r["files"].items()},
                    "uploaded": list(r["uploaded"]), "complete": r["complete"], "exitcode": r["exitcode"],
                    "upserts": r["upserts"], "storage_id": r["storage_id"], "entity": r["entity"],
                    "project": r["project"], "display_name": r["display_name"], "config": r["config"],
                    "file_stream_requests": r["file_stream_requests"],
                }
            uploads = {p: {"size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for p, b in state.uploads.items()}
            artifacts = {aid: {k: v for k, v in a.items() if k != "files"} | {"files": dict(a["files"])}
                         for aid, a in state.artifacts.items()}
            return {"runs": runs, "uploads": uploads, "artifacts": artifacts, "faults_left": len(state.faults)}

    def base_url(self):
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        return f"http://{host}"

    def file_stream(self, run_id, req):
        state = self.server.state
        with state.lock:
            run = state.run(run_id)
            run["file_stream_requests"] += 1
            if isinstance(req, dict):
                for name, chunk in (req.get("files") or {}).items():
                    lines = run["files"].setdefault(name, [])
                    offset = int(chunk.get("offset", 0))
                    content = chunk.get("content") or []
                    while len(lines) < offset + len(content):
                        lines.append(None)
                    for i, line in enumerate(content):
                        lines[offset + i] = line
                for p in req.get("uploaded") or []:
                    if p not in run["uploaded"]:
                        run["uploaded"].append(p)
                if "complete" in req:
                    run["complete"] = req["complete"]
                if "exitcode" in req:
                    run["exitcode"] = req["exitcode"]
        return 200, None, {"exitcode": None, "limits": {}}

    def upload(self, path, body):
        state = self.server.state
        md5 = hashlib.md5(body).digest()
        sent = self.headers.get("Content-MD5")
        if sent is not None and sent.strip() != base64.b64encode(md5).decode():
            return 400, None, {"error": "BadDigest: Content-MD5 does not match the body"}
        with state.lock:
            state.uploads[path] = body
            meta = getattr(state, "pending_md5", {}).get(path)
            if meta:
                state.stored_md5.setdefault(meta[0], meta[1])
            part = getattr(state, "pending_parts", {}).get(path)
            if part:
                state.multipart[part[0]]["parts"][part[1]] = body
        return 200, {"ETag": '"' + md5.hex() + '"'}, {}

    # -- GraphQL ---------------------------------------------------------------------------

    def graphql(self, req, operation):
        variables = req.get("variables") or {}
        handler = getattr(self, "gql_" + (operation or ""), None)
        if handler is None:
            return 200, None, {"data": {}}
        return 200, None, {"data": handler(variables)}

    def gql_Viewer(self, v):
        return {"viewer": {"id": "VXNlcjox", "entity": self.server.state.entity, "username": "mockuser",
                           "email": "mock@example.com", "flags": "{}", "teams": {"edges": []}}}

    def gql_ArtifactType(self, v):
        # The Python SDK asks this before log_artifact (its public-API path).
        name = (v.get("name") or "").split(":")[0]
        state = self.server.state
        with state.lock:
            found = [a for a in state.artifacts.values() if a["collection"] == name]
        artifact = {"artifactType": {"name": found[-1]["type"]}} if found else None
        return {"project": {"artifact": artifact}}

    def gql_ServerFeaturesQuery(self, v):
        return {"serverInfo": {"features": []}}

    def gql_UpsertBucket(self, v):
        state = self.server.state
        with state.lock:
            run_id = v.get("name") or "run%05d" % state.next_id()
            run = state.run(run_id)
            run["upserts"] += 1
            run["entity"] = v.get("entity") or run["entity"] or state.entity
            run["project"] = v.get("project") or run["project"] or "uncategorized"
            if v.get("displayName"):
                run["display_name"] = v["displayName"]
            if v.get("config") is not None:
                run["config"] = v["config"]
            history = [x for x in run["files"].get("wandb-history.jsonl", []) if x is not None]
            return {"upsertBucket": {"bucket": {
                "id": run["storage_id"], "name": run_id,
                "displayName": run["display_name"] or "mock-run-1", "description": None,
                "config": run["config"] or "{}", "sweepName": None,
                "project": {"id": "UHJvamVjdDox", "name": run["project"],
                            "entity": {"id": "RW50aXR5OjE=", "name": run["entity"]}},
                "historyLineCount": len(history)}, "inserted": run["upserts"] == 1}}

    def gql_CreateRunFiles(self, v):
        base = self.base_url()
        files = v.get("files") or []
        run = v.get("run")
        out = [{"name": f, "uploadUrl": f"{base}/upload/runs/{v.get('entity')}/{v.get('project')}/{run}/{f}"} for f in files]
        return {"createRunFiles": {"runID": "UnVuOjE=", "uploadHeaders": ["X-Mock-Upload:run-file"], "files": out}}

    def gql_CreateArtifact(self, v):
        inp = v.get("input") if isinstance(v.get("input"), dict) else v
        state = self.server.state
        with state.lock:
            collection = inp.get("artifactCollectionName")
            digest = inp.get("digest")
            same = [a for a in state.artifacts.values()
                    if a["collection"] == collection and a["digest"] == digest and a["state"] == "COMMITTED"]
            seq = [a for a in state.artifacts.values() if a["collection"] == collection and a["state"] == "COMMITTED"]
            latest = {"id": seq[-1]["id"]} if seq else None
            if same:
                a = same[0]
                return {"createArtifact": {"artifact": {"id": a["id"], "state": "COMMITTED",
                                                        "artifactSequence": {"latestArtifact": latest}}}}
            pending = [a for a in state.artifacts.values()
                       if a["collection"] == collection and a["digest"] == digest and a["state"] == "PENDING"]
            if pending:
                a = pending[0]
            else:
                aid = b64id("Artifact", state.next_id())
                a = {"id": aid, "collection": collection, "type": inp.get("artifactTypeName"), "digest": digest,
                     "state": "PENDING", "aliases": [x.get("alias") for x in inp.get("aliases") or []],
                     "files": {}, "manifest_id": None, "manifest_digest": None, "run": inp.get("runName"),
                     "entity": inp.get("entityName"), "project": inp.get("projectName"),
                     "metadata": inp.get("metadata"), "history_step": inp.get("historyStep")}
                state.artifacts[aid] = a
            return {"createArtifact": {"artifact": {"id": a["id"], "state": "PENDING",
                                                    "artifactSequence": {"latestArtifact": latest}}}}

    def gql_CreateArtifactManifest(self, v):
        inp = v.get("input") if isinstance(v.get("input"), dict) else v
        state = self.server.state
        with state.lock:
            a = state.artifacts.get(inp.get("artifactID"))
            if a is not None:
                if a["manifest_id"] is None:
                    a["manifest_id"] = b64id("ArtifactManifest", state.next_id())
                a["manifest_digest"] = inp.get("digest")
            mid = a["manifest_id"] if a else b64id("ArtifactManifest", 0)
        file = {"id": b64id("File", 1)}
        if inp.get("includeUpload", True):
            aid = re.sub(r"[^A-Za-z0-9]", "_", inp.get("artifactID") or "x")
            file["uploadUrl"] = f"{self.base_url()}/upload/manifests/{aid}/wandb_manifest.json"
            file["uploadHeaders"] = ["X-Mock-Upload:manifest"]
        return {"createArtifactManifest": {"artifactManifest": {"id": mid, "file": file}}}

    def gql_CreateArtifactFiles(self, v):
        inp = v.get("input") if isinstance(v.get("input"), dict) else v
        files = inp.get("artifactFiles") or []
        state = self.server.state
        base = self.base_url()
        edges = []
        with state.lock:
            if not hasattr(state, "pending_md5"):
                state.pending_md5 = {}
                state.pending_parts = {}
            for f in files:
                aid = f.get("artifactID")
                md5 = f.get("md5")
                a = state.artifacts.get(aid)
                if a is not None:
                    a["files"][f.get("name")] = md5
                storage = "wandb_artifacts/" + base64.b64decode(md5 or "").hex()
                node = {"storagePath": storage, "uploadUrl": None, "uploadHeaders": [],
                        "uploadMultipartUrls": None, "artifact": {"id": state.stored_md5.get(md5, aid)}}
                safe = re.sub(r"[^A-Za-z0-9]", "_", aid or "x")
                if md5 in state.stored_md5:
                    pass  # the server has the bytes: no upload
                elif f.get("uploadPartsInput"):
                    upload_id = "upload-%d" % state.next_id()
                    parts = []
                    for p in f["uploadPartsInput"]:
                        url = f"{base}/upload/parts/{safe}/{upload_id}/{p['partNumber']}"
                        parts.append({"partNumber": p["partNumber"], "uploadUrl": url})
                        state.pending_parts[f"/upload/parts/{safe}/{upload_id}/{p['partNumber']}"] = (upload_id, p["partNumber"])
                    state.multipart[upload_id] = {"md5": md5, "artifact": aid, "parts": {}, "storage": storage}
                    node["uploadMultipartUrls"] = {"uploadID": upload_id, "uploadUrlParts": parts}
                    node["uploadHeaders"] = ["Content-Type:application/octet-stream"]
                else:
                    upath = f"/upload/artifacts/{safe}/{f.get('name')}"
                    node["uploadUrl"] = base + upath
                    node["uploadHeaders"] = [f"Content-MD5:{md5}", "X-Mock-Upload:artifact"]
                    state.pending_md5[upath] = (md5, aid)
                edges.append({"node": node})
        return {"createArtifactFiles": {"files": {"edges": edges}}}

    def gql_CompleteMultipartUploadArtifact(self, v):
        state = self.server.state
        with state.lock:
            mp = state.multipart.get(v.get("uploadID"))
            if mp is None:
                return {"completeMultipartUploadArtifact": None}
            parts = [mp["parts"].get(p.get("partNumber")) for p in v.get("completedParts") or []]
            data = b"".join(p for p in parts if p is not None)
            etags_ok = all(
                p is not None and ('"' + hashlib.md5(p).hexdigest() + '"') == c.get("hexMD5")
                for p, c in zip(parts, v.get("completedParts") or []))
            if etags_ok and base64.b64encode(hashlib.md5(data).digest()).decode() == mp["md5"]:
                state.uploads["/upload/" + mp["storage"]] = data
                state.stored_md5.setdefault(mp["md5"], mp["artifact"])
                mp["complete"] = True
            return {"completeMultipartUploadArtifact": {"digest": mp["md5"]}}

    def gql_CommitArtifact(self, v):
        state = self.server.state
        with state.lock:
            a = state.artifacts.get(v.get("artifactID"))
            if a is not None:
                a["state"] = "COMMITTED"
            return {"commitArtifact": {"artifact": {"id": v.get("artifactID"), "digest": a["digest"] if a else None}}}

    def gql_UseArtifact(self, v):
        inp = v.get("input") if isinstance(v.get("input"), dict) else v
        return {"useArtifact": {"artifact": {"id": inp.get("artifactID")}}}


def main():
    ap = argparse.ArgumentParser(description="Loopback mock W&B server (see the module docstring).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--record", default=None)
    ap.add_argument("--entity", default="mockent")
    ap.add_argument("--exit-on-stdin-close", action="store_true",
                    help="exit when standard input reaches EOF (the parent holding the pipe died)")
    args = ap.parse_args()

    # A parent may spawn us from a thread that blocks signals (Swift's Process does); the
    # mask is inherited across exec, so unblock the ones that must stop us.
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})

    state = State(args.entity, args.record)
    controller = Controller(args.host, args.port, state)
    controller.open()
    print(f"listening {controller.port}", flush=True)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

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
    if state.record_file:
        with state.lock:
            state.record_file.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
