#!/usr/bin/env python3
"""Self-check of the DDP trainer fixture (train_gpt_ddp.py beside this file), on CPU with gloo.

  check_ddp_equivalence.py [--python PY] [--keep DIR]

Runs, with the same effective batch (6 samples per micro-batch x 2 micro-batches per step):
  (a) the single-process trainer, --batch-size 6;
  (b) a 2-rank gang, --batch-size 3, launched as two plain processes with RANK/WORLD_SIZE/
      LOCAL_RANK/MASTER_ADDR=127.0.0.1/MASTER_PORT (what the coordinator does);
  (c) a 3-rank gang, --batch-size 2;
and asserts that rank 0 logs every step 1..40 exactly once, that the other ranks print nothing on
stdout, and that the train losses (unrounded, from TTS_DDP_METRICS_JSONL) and the [Train]/[Val]
lines agree with (a) within tolerance. Then
  (d) kill test: a 2-rank gang slowed by TTS_FIXTURE_STEP_SECONDS; after rank 0 logs step 23,
      SIGKILL goes to rank 1's process group (the rank and its forked DataLoader worker); rank 0
      must exit (code 75) within 2 s; then both ranks are relaunched with --resume auto, must
      resume from latest_full.pth (step 20), and the stitched steps (first run <= 20, resumed run
      > 20) must be 1..40 once each, with the losses and [Train] line heads of (b). Then the same
      kill sent to rank 1's pid only: rank 0 must exit 75 within 7 s (the killed rank's forked
      DataLoader worker keeps the gloo sockets open until torch's 5 s parent watchdog ends it);
  (e) stuck-peer test: rank 1 is SIGSTOPped; rank 0 must exit 75 after TTS_DDP_TIMEOUT_S (3 s).
Prints a JSON summary on stdout; exit status 0 when every check passes, 1 otherwise.

Python: --python, else $TTS_TRAINER_PYTHON, else the venv that ../trainer_env.sh prints (torch +
tensorboardX, the fixture's environment). Takes about a minute on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAINER = HERE / "train_gpt_ddp.py"
FIXTURES = HERE.parent
MAX_STEPS = 40
GLOBAL_MICRO = 6
ACCUM = 2
KILL_AT_STEP = 23
FULL_EVERY = 10
LIGHT_EVERY = 5
REL_TOL = 1e-5
# search, not match: the sample-inference child shares stdout, so with PYTHONUNBUFFERED=1 (print() writes
# the text and the newline separately) a [Train] line can follow an [InferCPU] line's text on the same line.
TRAIN_RE = re.compile(r"\[Train\] epoch=(\d+) step=(\d+) text_loss=(\S+) mel_loss=(\S+) mel_top1=(\S+) lr=(\S+) \| "
                      r".*grad_norm=(\S+) \(clipped")
VAL_RE = re.compile(r"\[Val\] epoch=(\d+) step=(\d+) text_loss=(\S+) mel_loss=(\S+) mel_top1=(\S+) \|")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_python(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("TTS_TRAINER_PYTHON"):
        return os.environ["TTS_TRAINER_PYTHON"]
    out = subprocess.run(["bash", str(FIXTURES / "trainer_env.sh")], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


class Gang:
    """N rank processes started at once; rank 0's stdout read line by line with arrival times."""

    def __init__(self, py: str, inputs: list[str], world: int, out: Path, tag: str, env_extra: dict,
                 extra_args: list[str] = ()):
        self.world, self.tag, self.out = world, tag, out
        self.lines: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        port = free_port()
        batch = GLOBAL_MICRO // world
        argv = [py, str(TRAINER), *inputs, "--output-dir", str(out), "--batch-size", str(batch),
                "--grad-accumulation", str(ACCUM), "--learning-rate", "1e-2", "--warmup-steps", "5",
                "--log-interval", "1", "--val-interval", "10", "--max-steps", str(MAX_STEPS), "--epochs", "100",
                "--num-workers", "1", "--scheduler", "cosine", "--no-aim", *extra_args]
        base = {k: v for k, v in os.environ.items()
                if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
        base.update({"PYTHONUNBUFFERED": "1", "PATH": str(Path(py).parent) + os.pathsep + base.get("PATH", ""),
                     "TTS_FIXTURE_LIGHT_EVERY": str(LIGHT_EVERY), "TTS_FIXTURE_FULL_EVERY": str(FULL_EVERY),
                     "TTS_DDP_METRICS_JSONL": str(out.parent / f"{tag}.metrics.jsonl")})
        base.update(env_extra)
        self.procs: list[subprocess.Popen] = []
        self.started = time.monotonic()
        for rank in range(world):
            env = dict(base)
            if world > 1:
                env.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                            "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
            stdout = subprocess.PIPE if rank == 0 else open(out.parent / f"{tag}.rank{rank}.out", "wb")
            stderr = open(out.parent / f"{tag}.rank{rank}.err", "wb")
            self.procs.append(subprocess.Popen(argv, env=env, stdout=stdout, stderr=stderr, start_new_session=True))
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        log = open(self.out.parent / f"{self.tag}.rank0.out", "wb")
        for raw in self.procs[0].stdout:
            log.write(raw)
            log.flush()
            with self.cond:
                self.lines.append((time.monotonic(), raw.decode("utf-8", "replace").rstrip("\n")))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, line in self.lines:
                    if pattern in line:
                        return t
                left = deadline - time.monotonic()
                if left <= 0 or (not self.reader.is_alive()):
                    return None
                self.cond.wait(min(left, 0.05))

    def wait(self, timeout: float = 120) -> list[int]:
        codes = [p.wait(timeout=timeout) for p in self.procs]
        self.reader.join(timeout=5)
        return codes

    def cleanup(self) -> None:
        for p in self.procs:  # each rank leads its own process group (DataLoader workers included)
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def stdout_text(self) -> list[str]:
        return [line for _, line in self.lines]

    def stderr(self, rank: int) -> str:
        return (self.out.parent / f"{self.tag}.rank{rank}.err").read_text(errors="replace")


def parse_train(lines: list[str]) -> list[dict]:
    rows = []
    for line in lines:
        m = TRAIN_RE.search(line)
        if m:
            line = line[m.start():]
            e, s, t, mel, top1, lr, gn = m.groups()
            rows.append({"epoch": int(e), "step": int(s), "text_loss": float(t), "mel_loss": float(mel),
                         "mel_top1": float(top1), "lr": float(lr), "grad_norm": float(gn),
                         "head": line.split(" | ")[0]})
    return rows


def parse_val(lines: list[str]) -> list[str]:
    return [line[m.start():].split(" | ")[0] for line in lines for m in [VAL_RE.search(line)] if m]


def read_metrics(path: Path) -> dict[int, dict]:
    rows: dict[int, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            rows[r["step"]] = r  # a resumed run overwrites the redone steps
    return rows


def compare(ref: dict[int, dict], got: dict[int, dict], steps) -> dict:
    max_abs = max_rel = 0.0
    max_top1 = 0.0
    for s in steps:
        for key in ("text_loss", "mel_loss", "grad_norm", "lr"):
            a, b = ref[s][key], got[s][key]
            d = abs(a - b)
            max_abs = max(max_abs, d)
            if a != 0:
                max_rel = max(max_rel, d / abs(a))
        max_top1 = max(max_top1, abs(ref[s]["mel_top1"] - got[s]["mel_top1"]))
    return {"max_abs": max_abs, "max_rel": max_rel, "max_abs_mel_top1": max_top1}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python")
    ap.add_argument("--keep", help="work directory to keep (default: a temporary one, removed)")
    a = ap.parse_args()
    py = find_python(a.python)
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="ddp-check-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    inputs = subprocess.run([py, str(FIXTURES / "make_fixture_manifests.py"), "--out", str(work / "inputs"),
                             "--train", "96", "--val", "12"], check=True, capture_output=True, text=True).stdout.split()
    failures: list[str] = []
    summary: dict = {"python": py, "work_dir": str(work), "max_steps": MAX_STEPS,
                     "effective_batch": GLOBAL_MICRO * ACCUM, "tolerance_rel": REL_TOL}

    def expect(cond: bool, what: str) -> None:
        if not cond:
            failures.append(what)

    gangs: list[Gang] = []
    try:
        # (a), (b), (c): uninterrupted runs
        runs = {}
        for world in (1, 2, 3):
            tag = f"w{world}"
            g = Gang(py, inputs, world, work / tag, tag, {})
            gangs.append(g)
            codes = g.wait()
            lines = g.stdout_text()
            train = parse_train(lines)
            steps = [r["step"] for r in train]
            expect(codes == [0] * world, f"{tag}: exit codes {codes}; rank0 stderr tail: {g.stderr(0)[-400:]}")
            expect(steps == list(range(1, MAX_STEPS + 1)), f"{tag}: steps logged {steps}")
            expect(any("Training complete." in l for l in lines), f"{tag}: no 'Training complete.'")
            for r in range(1, world):
                text = (work / f"{tag}.rank{r}.out").read_text()
                expect(text == "", f"{tag}: rank {r} wrote on stdout: {text[:200]!r}")
            runs[world] = {"train": train, "val": parse_val(lines), "metrics": read_metrics(work / f"{tag}.metrics.jsonl")}
        ref = runs[1]
        for world in (2, 3):
            got = runs[world]
            key = f"equivalence_{world}_ranks_vs_single"
            try:
                c = compare(ref["metrics"], got["metrics"], range(1, MAX_STEPS + 1))
            except KeyError as exc:
                failures.append(f"{key}: missing step {exc}")
                continue
            printed = [abs(x[k] - y[k]) for x, y in zip(ref["train"], got["train"])
                       for k in ("text_loss", "mel_loss", "mel_top1", "grad_norm")]
            same_heads = sum(x["head"] == y["head"] for x, y in zip(ref["train"], got["train"]))
            c.update({"printed_max_abs": max(printed) if printed else None,
                      "identical_train_line_heads": f"{same_heads}/{len(ref['train'])}",
                      "val_lines_identical": ref["val"] == got["val"], "val_lines": len(got["val"])})
            summary[key] = c
            expect(c["max_rel"] <= REL_TOL, f"{key}: max relative difference {c['max_rel']:.3g} > {REL_TOL}")
            expect(c["max_abs_mel_top1"] <= 1e-6, f"{key}: mel_top1 differs by {c['max_abs_mel_top1']}")
            expect(printed and max(printed) <= 1.01e-4, f"{key}: printed values differ by {max(printed) if printed else None}")
            expect(ref["val"] == got["val"] and len(got["val"]) == MAX_STEPS // 10, f"{key}: [Val] lines differ")

        # (d) kill -9 of rank 1 mid-run: its process group (the rank and its DataLoader worker), then
        # the rank's pid alone; the first run is resumed from latest_full.pth.
        def kill_run(tag: str, whole_group: bool):
            g = Gang(py, inputs, 2, work / tag, tag, {"TTS_FIXTURE_STEP_SECONDS": "0.05"})
            gangs.append(g)
            seen = g.wait_for(f"[Train] epoch=3 step={KILL_AT_STEP} ", timeout=60)
            expect(seen is not None, f"{tag}: rank 0 never logged step {KILL_AT_STEP}")
            if whole_group:
                os.killpg(g.procs[1].pid, signal.SIGKILL)
            else:
                os.kill(g.procs[1].pid, signal.SIGKILL)
            killed = time.monotonic()
            code0 = None
            while time.monotonic() - killed < 40:
                code0 = g.procs[0].poll()
                if code0 is not None:
                    break
                time.sleep(0.005)
            exit_s = time.monotonic() - killed
            g.reader.join(timeout=5)
            g.cleanup()
            peer_line = [l for l in g.stderr(0).splitlines() if "peer lost" in l]
            first = parse_train(g.stdout_text())
            summary[tag] = {"killed": "rank 1's process group" if whole_group else "rank 1's pid only",
                            "after_step": KILL_AT_STEP, "rank0_exit_code": code0,
                            "kill_to_rank0_exit_s": round(exit_s, 3),
                            "last_step_logged": first[-1]["step"] if first else None,
                            "rank0_message": peer_line[0] if peer_line else None}
            expect(code0 == 75, f"{tag}: rank 0 exit code {code0} (want 75)")
            return first, exit_s

        first, exit_s = kill_run("kill", whole_group=True)
        expect(exit_s < 2.0, f"kill: rank 0 took {exit_s:.2f}s to exit (group kill)")
        tag = "kill"
        r = Gang(py, inputs, 2, work / tag, tag + "-resume", {}, ["--resume", "auto"])
        gangs.append(r)
        codes = r.wait()
        lines = r.stdout_text()
        resumed_line = [l for l in lines if "[Info] Resumed from " in l]
        m = re.search(r"\[Info\] Resumed from (\S+) at epoch (\d+), step (\d+)\.", resumed_line[0]) if resumed_line else None
        resume_step = int(m.group(3)) if m else None
        second = parse_train(lines)
        stitched = [x for x in first if resume_step is not None and x["step"] <= resume_step] + second
        stitched_steps = [x["step"] for x in stitched]
        expect(codes == [0, 0], f"resume: exit codes {codes}")
        expect(m is not None and m.group(1).endswith("/latest_full.pth"), f"resume: {resumed_line}")
        expect(resume_step == (KILL_AT_STEP // FULL_EVERY) * FULL_EVERY, f"resume: from step {resume_step}")
        expect(stitched_steps == list(range(1, MAX_STEPS + 1)), f"resume: stitched steps {stitched_steps}")
        ref2 = runs[2]["metrics"]
        got = read_metrics(work / "kill.metrics.jsonl")
        got.update(read_metrics(work / "kill-resume.metrics.jsonl"))
        try:
            c = compare(ref2, got, range(1, MAX_STEPS + 1))
        except KeyError as exc:
            c = {"error": f"missing step {exc}"}
            failures.append(f"resume: missing step {exc}")
        printed = [abs(x[k] - y[k]) for x, y in zip(runs[2]["train"], stitched)
                   for k in ("text_loss", "mel_loss", "mel_top1", "grad_norm")]
        summary["resume"] = {"resumed_from": m.group(1) if m else None, "resume_step": resume_step,
                             "first_resumed_step": second[0]["step"] if second else None,
                             "stitched_steps_ok": stitched_steps == list(range(1, MAX_STEPS + 1)),
                             "vs_uninterrupted_2_ranks": c,
                             "printed_identical": [x["head"] for x in stitched] == [x["head"] for x in runs[2]["train"]]}
        expect(c.get("max_rel", 1) <= REL_TOL, f"resume: losses differ from the uninterrupted run: {c}")
        expect(printed and max(printed) <= 1.01e-4, "resume: printed values differ")

        _, exit_s = kill_run("kill_pid_only", whole_group=False)
        # The killed rank's forked DataLoader worker still holds the gloo sockets until its parent
        # watchdog (torch's MP_STATUS_CHECK_INTERVAL, 5 s) ends it: rank 0 sees the reset then.
        expect(exit_s < 7.0, f"kill_pid_only: rank 0 took {exit_s:.2f}s to exit")

        # (e) a stuck (SIGSTOPped) peer: the surviving rank gives up after TTS_DDP_TIMEOUT_S
        tag = "stop"
        g = Gang(py, inputs, 2, work / tag, tag, {"TTS_FIXTURE_STEP_SECONDS": "0.05", "TTS_DDP_TIMEOUT_S": "3"})
        gangs.append(g)
        seen = g.wait_for("[Train] epoch=2 step=10 ", timeout=60)
        os.kill(g.procs[1].pid, signal.SIGSTOP)
        stopped = time.monotonic()
        code0 = None
        while time.monotonic() - stopped < 40:
            code0 = g.procs[0].poll()
            if code0 is not None:
                break
            time.sleep(0.01)
        exit_s = time.monotonic() - stopped
        peer_line = [l for l in g.stderr(0).splitlines() if "peer lost" in l]
        os.kill(g.procs[1].pid, signal.SIGCONT)
        g.cleanup()
        summary["stuck_peer"] = {"timeout_s": 3, "rank0_exit_code": code0, "stop_to_rank0_exit_s": round(exit_s, 3),
                                 "rank0_message": peer_line[0] if peer_line else None}
        expect(seen is not None and code0 == 75 and exit_s < 8, f"stuck peer: rank 0 code {code0} after {exit_s:.2f}s")
    finally:
        for g in gangs:
            g.cleanup()
    summary["seconds"] = round(time.monotonic() - t_start, 1)
    summary["failures"] = failures
    summary["ok"] = not failures
    print(json.dumps(summary, indent=2))
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
