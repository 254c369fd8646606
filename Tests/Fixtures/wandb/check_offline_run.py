#!/usr/bin/env python3
"""Format oracle for an offline W&B run made by a whole cluster (e.g. the demo), where the exact
contents are not known in advance.

    python check_offline_run.py RUN_DIR KEY [KEY ...]

Inside a venv with wandb==0.29.0 (the last release with the Python reader DataStore). Reads every
record of RUN_DIR/run-*.wandb with DataStore (header, CRC-32 of every chunk, block layout),
parses it with wandb's protobuf schema (re-serialising to the same bytes), and checks: one run
record first, history rows with strictly increasing _step, each KEY present in some row, every
file named by a files record present under RUN_DIR/files, an exit record with exit code 0 last.
Prints a JSON summary and exits 0, or prints the problems and exits 1.
"""
import glob
import json
import os
import sys

from wandb.proto import wandb_internal_pb2 as pb
from wandb.sdk.internal import datastore


def main():
    run_dir, keys = sys.argv[1], sys.argv[2:]
    problems = []
    logs = glob.glob(os.path.join(run_dir, "run-*.wandb"))
    if len(logs) != 1:
        print(f"expected one run-*.wandb in {run_dir}, found {logs}")
        return 1
    ds = datastore.DataStore()
    ds.open_for_scan(logs[0])
    kinds, steps, seen, files, exit_code = [], [], set(), [], None
    while True:
        data = ds.scan_data()
        if data is None:
            break
        rec = pb.Record()
        rec.ParseFromString(data)
        if rec.SerializeToString() != data:
            problems.append(f"record #{len(kinds) + 1} does not re-serialize to the same bytes")
        kind = rec.WhichOneof("record_type")
        kinds.append(kind)
        if kind == "history":
            row = {}
            for it in rec.history.item:
                key = it.key or "/".join(it.nested_key)
                row[key] = json.loads(it.value_json)
            if "_step" not in row:
                problems.append(f"history row #{len(steps) + 1} has no _step")
                continue
            if steps and row["_step"] <= steps[-1]:
                problems.append(f"_step {row['_step']} after {steps[-1]}")
            steps.append(row["_step"])
            seen.update(row.keys())
        elif kind == "files":
            files += [f.path for f in rec.files.files]
        elif kind == "exit":
            exit_code = rec.exit.exit_code
    non_header = [k for k in kinds if k != "header"]
    if not non_header or non_header[0] != "run":
        problems.append(f"the first record is {non_header[:1]}, not run")
    if kinds and kinds[-1] != "exit":
        problems.append(f"the last record is {kinds[-1]}, not exit")
    if exit_code != 0:
        problems.append(f"exit code {exit_code}")
    for k in keys:
        if k not in seen:
            problems.append(f"no history row has {k}")
    for f in files:
        if not os.path.isfile(os.path.join(run_dir, "files", f)):
            problems.append(f"files record names {f}, which is not under files/")
    if problems:
        print("\n".join(problems))
        return 1
    print(json.dumps({"records": len(kinds), "history_rows": len(steps), "files": len(files), "keys": sorted(seen)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
