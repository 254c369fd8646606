#!/usr/bin/env python3
"""A minimal `persistent` ASR (docs/ASR.md) for the Swift contract tests: no model, the protocol
only. The transcript of AUDIO is the text of `AUDIO.txt`. Each start appends its pid to the file
named by ASR_STANDIN_STARTS. A transcript that says

- `ERROR` gets an error reply; `CRASH` ends the process (status 5) without a reply;
- `HANG` gets no reply; `MALFORMED` gets `{"id": ..., "text": 42}` (text of the wrong type);
- `WRONGID` gets a reply for another id; `NOTEXT` gets a reply with neither text nor error.
"""
import json
import os
import sys


def say(obj):
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


starts = os.environ.get("ASR_STANDIN_STARTS")
if starts:
    with open(starts, "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()}\n")
print("loading nothing at all", flush=True)  # not a protocol line: the worker ignores it
say({"ready": True, "name": "asr-standin", "version": 1})
for line in sys.stdin:
    request = json.loads(line)
    uid = request["id"]
    with open(request["audio"] + ".txt", encoding="utf-8") as f:
        heard = f.read().strip()
    if "CRASH" in heard:
        sys.stderr.write(f"asr stand-in crashing on {uid}\n")
        sys.stderr.flush()
        os._exit(5)
    elif "HANG" in heard:
        continue
    elif "ERROR" in heard:
        say({"id": uid, "error": f"cannot read {request['audio']}"})
    elif "MALFORMED" in heard:
        say({"id": uid, "text": 42})
    elif "WRONGID" in heard:
        say({"id": "someone-else", "text": heard})
    elif "NOTEXT" in heard:
        say({"id": uid})
    else:
        say({"id": uid, "text": heard, "language": request["language"]})
