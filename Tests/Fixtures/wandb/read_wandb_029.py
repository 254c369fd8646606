#!/usr/bin/env python3
"""Format oracle for tts-cluster's offline W&B writer.

    python read_wandb_029.py RUN.wandb EXPECTED.json

Runs inside a virtual environment with wandb==0.29.0, the last release that ships the Python
reader `wandb.sdk.internal.datastore.DataStore` (removed in 0.30). Every record of RUN.wandb is
read with DataStore (file header, CRC-32 of every chunk, block padding, FULL/FIRST/MIDDLE/LAST)
and parsed with `wandb.proto.wandb_internal_pb2.Record`; the decoded run, config, history,
summary, stats, files, artifacts, console output and exit record are compared with EXPECTED.json
(written by WandbOracleTests.swift; it may contain NaN/Infinity, which json.loads accepts).

Prints one line per problem and exits 1 if there is any, else prints a summary and exits 0.
"""
import base64
import hashlib
import json
import math
import os
import re
import sys

import wandb
from wandb.proto import wandb_internal_pb2 as pb
from wandb.sdk.internal import datastore

problems = []


def problem(msg):
    problems.append(msg)


def same(a, b):
    """Deep equality where NaN equals NaN and int 3 equals float 3.0."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def unknown_fields(msg, path="Record"):
    """Paths of fields our writer set that this wandb's schema does not know."""
    try:
        from google.protobuf import unknown_fields as uf
    except ImportError:  # older protobuf: rely on the round-trip check only
        return []
    out = []
    if len(uf.UnknownFieldSet(msg)):
        out.append(path)
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        repeated = getattr(field, "is_repeated", None)
        if repeated is None:
            repeated = field.label == field.LABEL_REPEATED
        values = value if repeated else [value]
        for i, v in enumerate(values):
            out += unknown_fields(v, f"{path}.{field.name}[{i}]")
    return out


def items(msg_items):
    """{key: json value} from HistoryItem/SummaryItem/ConfigItem/StatsItem lists (plain keys only)."""
    out = {}
    for it in msg_items:
        if getattr(it, "nested_key", None):
            problem(f"unexpected nested_key {list(it.nested_key)}")
        if it.key in out:
            problem(f"duplicate key {it.key!r}")
        try:
            out[it.key] = json.loads(it.value_json)
        except ValueError as e:
            problem(f"value_json of {it.key!r} is not JSON: {it.value_json!r} ({e})")
    return out


def main():
    path, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path) as f:
        exp = json.load(f)
    run_dir = os.path.dirname(os.path.abspath(path))

    ds = datastore.DataStore()
    ds.open_for_scan(path)
    records = []
    while True:
        data = ds.scan_data()
        if data is None:
            break
        rec = pb.Record()
        rec.ParseFromString(data)
        if rec.SerializeToString() != data:
            problem(f"record #{len(records) + 1} does not re-serialize to the same bytes")
        for u in unknown_fields(rec):
            problem(f"record #{len(records) + 1}: unknown fields in {u}")
        records.append(rec)
    if ds._index != os.path.getsize(path):
        problem(f"DataStore stopped at byte {ds._index} of {os.path.getsize(path)}")

    kinds = [r.WhichOneof("record_type") for r in records]
    nums = [r.num for r in records]
    if nums != list(range(1, len(records) + 1)):
        problem(f"record numbers are not 1..N: {nums[:10]}…")
    if len(records) != exp["record_count"]:
        problem(f"{len(records)} records, expected {exp['record_count']}")
    if kinds[:2] != ["header", "run"]:
        problem(f"the file starts with {kinds[:2]}, expected header, run")
    if not kinds or kinds[-1] != "exit":
        problem(f"the last record is {kinds[-1:]} , expected exit")
    allowed = {"header", "run", "history", "summary", "stats", "files", "artifact", "output_raw", "exit"}
    for i, k in enumerate(kinds):
        if k not in allowed:
            problem(f"record #{i + 1} has unexpected kind {k}")

    # Run record and config.
    run = records[1].run
    e = exp["run"]
    for field in ["run_id", "entity", "project", "display_name", "run_group", "job_type", "notes", "host"]:
        if getattr(run, field) != e.get(field, ""):
            problem(f"run.{field} = {getattr(run, field)!r}, expected {e.get(field, '')!r}")
    if list(run.tags) != e["tags"]:
        problem(f"run.tags = {list(run.tags)}, expected {e['tags']}")
    start = run.start_time.seconds + run.start_time.nanos / 1e9
    if abs(start - e["start_time"]) > 1e-6:
        problem(f"run.start_time = {start}, expected {e['start_time']}")
    config = items(run.config.update)
    if not same(config, exp["config"]):
        problem(f"config = {config}, expected {exp['config']}")

    # History, with the summary record that precedes each history record.
    history = []
    summary = {}
    for i, r in enumerate(records):
        k = kinds[i]
        if k == "summary":
            summary.update(items(r.summary.update))
        elif k == "history":
            row = items(r.history.item)
            if row.get("_step") != r.history.step.num:
                problem(f"history record #{i + 1}: _step {row.get('_step')} != step.num {r.history.step.num}")
            if i == 0 or kinds[i - 1] != "summary" or not same(items(records[i - 1].summary.update), row):
                problem(f"history record #{i + 1} is not preceded by a summary record with the same items")
            history.append(row)
    steps = [h.get("_step") for h in history]
    if steps != sorted(steps) or len(set(steps)) != len(steps):
        problem(f"history steps are not strictly increasing: {steps}")
    if len(history) != len(exp["history"]):
        problem(f"{len(history)} history rows, expected {len(exp['history'])}")
    for n, (got, want) in enumerate(zip(history, exp["history"])):
        if not same(got, want):
            problem(f"history row {n}: {got} != expected {want}")
    for key, value in exp["summary"].items():
        if key not in summary or not same(summary[key], value):
            problem(f"summary[{key!r}] = {summary.get(key)!r}, expected {value!r}")

    # Stats.
    stats = [r.stats for r, k in zip(records, kinds) if k == "stats"]
    if len(stats) != len(exp["stats"]):
        problem(f"{len(stats)} stats records, expected {len(exp['stats'])}")
    for s, want in zip(stats, exp["stats"]):
        ts = s.timestamp.seconds + s.timestamp.nanos / 1e9
        if s.stats_type != pb.StatsRecord.SYSTEM or abs(ts - want["timestamp"]) > 1e-6:
            problem(f"stats type/timestamp {s.stats_type}/{ts}, expected SYSTEM/{want['timestamp']}")
        if not same(items(s.item), want["items"]):
            problem(f"stats items {items(s.item)}, expected {want['items']}")

    # Files (media) and their bytes under files/.
    files = [f for r, k in zip(records, kinds) if k == "files" for f in r.files.files]
    if [f.path for f in files] != [m["path"] for m in exp["media"]]:
        problem(f"files records {[f.path for f in files]}, expected {[m['path'] for m in exp['media']]}")
    for m in exp["media"]:
        p = os.path.join(run_dir, "files", m["path"])
        if not os.path.isfile(p):
            problem(f"media file {p} is missing")
        elif hashlib.sha256(open(p, "rb").read()).hexdigest() != m["sha256"]:
            problem(f"media file {p} has the wrong sha256")

    # Artifacts.
    arts = [r.artifact for r, k in zip(records, kinds) if k == "artifact"]
    if len(arts) != len(exp["artifacts"]):
        problem(f"{len(arts)} artifact records, expected {len(exp['artifacts'])}")
    for a, want in zip(arts, exp["artifacts"]):
        for field in ["run_id", "project", "entity", "type", "name"]:
            if getattr(a, field) != want[field]:
                problem(f"artifact.{field} = {getattr(a, field)!r}, expected {want[field]!r}")
        if list(a.aliases) != want["aliases"]:
            problem(f"artifact aliases {list(a.aliases)}, expected {want['aliases']}")
        if not same(json.loads(a.metadata), want["metadata"]):
            problem(f"artifact metadata {a.metadata}, expected {want['metadata']}")
        if not a.finalize:
            problem("artifact.finalize is false")
        for field in ["client_id", "sequence_client_id"]:
            if not re.fullmatch(r"[a-z0-9]{128}", getattr(a, field)):
                problem(f"artifact.{field} is not 128 chars of [a-z0-9]")
        m = a.manifest
        if m.version != 1 or m.storage_policy != "wandb-storage-policy-v1":
            problem(f"manifest version/policy {m.version}/{m.storage_policy}")
        if [(c.key, c.value_json) for c in m.storage_policy_config] != [("storageLayout", '"V2"')]:
            problem(f"manifest storage_policy_config {m.storage_policy_config}")
        lines = "wandb-artifact-manifest-v1\n" + "".join(
            f"{c.path}:{c.digest}\n" for c in sorted(m.contents, key=lambda c: c.path))
        if a.digest != hashlib.md5(lines.encode()).hexdigest():
            problem(f"artifact digest {a.digest} is not the manifest digest")
        got_files = []
        for c in m.contents:
            if not os.path.isfile(c.local_path):
                problem(f"artifact entry {c.path}: local_path {c.local_path} is missing")
                continue
            body = open(c.local_path, "rb").read()
            if base64.b64encode(hashlib.md5(body).digest()).decode() != c.digest or len(body) != c.size:
                problem(f"artifact entry {c.path}: digest/size do not match {c.local_path}")
            got_files.append({"path": c.path, "size": c.size, "md5_b64": c.digest})
        if got_files != want["files"]:
            problem(f"artifact files {got_files}, expected {want['files']}")

    # Console output and exit.
    lines = [r.output_raw.line for r, k in zip(records, kinds) if k == "output_raw"]
    if lines != [l + "\n" for l in exp["output"]]:
        problem(f"output lines {lines}, expected {exp['output']}")
    if kinds and kinds[-1] == "exit":
        x = records[-1].exit
        if x.exit_code != exp["exit_code"] or x.runtime != exp["runtime"]:
            problem(f"exit {x.exit_code}/{x.runtime}, expected {exp['exit_code']}/{exp['runtime']}")

    if problems:
        for p in problems:
            print("FAIL:", p)
        sys.exit(1)
    counts = {k: kinds.count(k) for k in dict.fromkeys(kinds)}
    print(f"OK wandb {wandb.__version__}: {len(records)} records {counts}; "
          f"{len(history)} history rows; config keys {sorted(config)}")


if __name__ == "__main__":
    main()
