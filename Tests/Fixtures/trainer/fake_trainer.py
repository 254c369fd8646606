#!/usr/bin/env python3
"""The 'numbered' profile: a stand-in for the older JarodMica-style IndexTTS-2 GPT trainer, which
writes model_step{N}.pth every --checkpoint-every steps and keeps the last three, for the
cluster's tests. (The current edu-ide/index-tts trainers/train_gpt_v2.py never writes
model_step{N}.pth; its faithful fixture is indextts-fixture/trainers/train_gpt_v2.py.)

It behaves like that trainer where the cluster can see it:
  * prints `[Train] epoch=E step=S text_loss=… mel_loss=… mel_top1=… lr=… | …steps/min ETA:…h |
    grad_norm=… GPU=…GB` and `[Val] epoch=E step=S text_loss=… mel_loss=… mel_top1=… | val_time=…min`
    lines on stdout (flushed);
  * writes the same scalars to TensorBoard event files with a real SummaryWriter
    (torch.utils.tensorboard if torch is installed, else tensorboardX) under
    <output-dir>/logs/run_YYYYmmdd_HHMMSS (or --log-dir), plus TensorBoard-only scalars
    (train/samples_per_sec);
  * writes model_step{N}.pth every --checkpoint-every steps (keeping the last three), latest.pth
    and best_model.pth (lowest val text_loss), each as *.tmp then renamed; each is a real PyTorch
    zip checkpoint (torch.save) holding a tiny two-layer model's state_dict under "model", an
    AdamW state under "optimizer" (model_step{N} and latest, as the older trainer saved them) and
    "step", "epoch", ... (torch comes from Debian's python3-torch through the venv's
    --system-site-packages, see trainer_env.sh);
  * resumes from --resume PATH (or 'auto' = <output-dir>/latest.pth): continues at the step after
    the checkpoint's `step` (a legacy JSON checkpoint such as {"step": 1000} is still read);
  * fails like CUDA running out of memory (torch.OutOfMemoryError on stderr, exit 1) when
    --batch-size >= --oom-at-batch; hangs at --hang-at-step; starts --spawn-children sleeping child
    processes (their pids in <output-dir>/children.pids) to test process-group kills.

Metric values are a deterministic function of the step, so a test can recompute them.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import torch
from torch import nn


def parse_args():
    p = argparse.ArgumentParser(description="fake IndexTTS-2 GPT trainer for tests")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", "--grad-accumulation", dest="grad_accum", type=int, default=1)
    p.add_argument("--lr", "--learning-rate", dest="lr", type=float, default=1e-5)
    p.add_argument("--max-steps", type=int, default=20)
    p.add_argument("--resume", default="")
    p.add_argument("--log-dir", default="")
    p.add_argument("--checkpoint-every", type=int, default=10)
    p.add_argument("--val-every", "--val-interval", dest="val_every", type=int, default=0,
                   help="steps between validations (0 = at every checkpoint)")
    p.add_argument("--log-every", "--log-interval", dest="log_every", type=int, default=1)
    p.add_argument("--epoch-steps", type=int, default=100, help="optimiser steps per epoch")
    p.add_argument("--oom-at-batch", type=int, default=0, help="fail with CUDA OOM if batch size >= N (0: never)")
    p.add_argument("--oom-at-step", type=int, default=0,
                   help="with --oom-at-batch: run out of memory when reaching this step rather than at start")
    p.add_argument("--hang-at-step", type=int, default=0, help="stop making progress at this step (0: never)")
    p.add_argument("--spawn-children", type=int, default=0, help="start N child processes that sleep")
    p.add_argument("--step-seconds", type=float, default=0.0, help="wall time per step")
    p.add_argument("--tb-style", choices=["simple", "tensor"], default="simple",
                   help="TensorBoard scalars as simple_value (torch default) or as a tensor (new_style)")
    p.add_argument("--nan-at-step", type=int, default=0, help="report a NaN mel_loss at this step")
    return p.parse_args()


def make_writer(log_dir):
    try:
        from torch.utils.tensorboard import SummaryWriter  # the real trainer's writer
        kind = "torch.utils.tensorboard"
    except Exception:
        from tensorboardX import SummaryWriter
        kind = "tensorboardX"
    return SummaryWriter(log_dir=log_dir, flush_secs=1), kind


def add_scalar(writer, style, tag, value, step):
    if style == "simple":
        writer.add_scalar(tag, value, step)
        return
    # new-style scalar: a float tensor with the scalars plugin's metadata, as
    # torch.utils.tensorboard's add_scalar(new_style=True) writes it.
    try:
        from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboardX.proto.tensor_pb2 import TensorProto
        from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto
    except Exception:
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.compat.proto.tensor_pb2 import TensorProto
        from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    tensor = TensorProto(float_val=[value], dtype="DT_FLOAT", tensor_shape=TensorShapeProto())
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
    summary = Summary(value=[Summary.Value(tag=tag, tensor=tensor, metadata=metadata)])
    writer._get_file_writer().add_summary(summary, step)


def losses(step):
    text_loss = 0.9 + 1.6 * math.exp(-step / 50.0)
    mel_loss = 3.5 + 2.4 * math.exp(-step / 80.0)
    mel_top1 = 0.05 + 0.12 * (1 - math.exp(-step / 60.0))
    return text_loss, mel_loss, mel_top1


def val_losses(step):
    t, m, a = losses(step)
    return t + 0.05, m + 0.1, a - 0.01


def tiny_model():
    """A couple of real layers, so the checkpoints are real torch.save files with tensors in them."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 16))


def write_atomically(path, payload):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_checkpoint(path):
    try:
        return torch.load(path, map_location="cpu")
    except Exception:
        with open(path) as f:  # a legacy JSON checkpoint
            return json.load(f)


def fail_out_of_memory(args):
    print("Traceback (most recent call last):\n"
          '  File "trainers/train_gpt_v2.py", line 1187, in <module>\n'
          "    main()\n"
          '  File "torch/nn/modules/module.py", line 1736, in _wrapped_call_impl\n'
          "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
          "capacity of 23.65 GiB of which 1.12 GiB is free. Of the allocated memory 20.91 GiB is "
          f"allocated by PyTorch (batch_size={args.batch_size})", file=sys.stderr, flush=True)
    sys.exit(1)


def main():
    args = parse_args()
    out = args.output_dir
    os.makedirs(out, exist_ok=True)
    print(f"[Info] fake trainer pid={os.getpid()} batch_size={args.batch_size} grad_accum={args.grad_accum} "
          f"lr={args.lr:g} max_steps={args.max_steps}", flush=True)

    children = []
    for _ in range(args.spawn_children):
        children.append(subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(60)"]))
    if children:
        with open(os.path.join(out, "children.pids"), "w") as f:
            f.write("\n".join(str(c.pid) for c in children) + "\n")

    start_step = 1
    best_val = float("inf")
    recent = []
    resume = args.resume
    if resume == "auto":
        candidate = os.path.join(out, "latest.pth")
        resume = candidate if os.path.exists(candidate) else ""
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    if resume:
        state = read_checkpoint(resume)
        if isinstance(state.get("model"), dict):
            model.load_state_dict(state["model"])
        start_step = int(state["step"]) + 1
        best_val = float(state.get("best_val", best_val))
        recent = list(state.get("recent_checkpoints", []))
        print(f"[Info] Resumed from {resume} at step {state['step']}", flush=True)

    if args.oom_at_batch and args.batch_size >= args.oom_at_batch and not args.oom_at_step:
        fail_out_of_memory(args)

    log_dir = args.log_dir or os.path.join(out, "logs", time.strftime("run_%Y%m%d_%H%M%S"))
    writer, kind = make_writer(log_dir)
    print(f"[Info] TensorBoard ({kind}) -> {log_dir}", flush=True)
    val_every = args.val_every or args.checkpoint_every
    effective = args.batch_size * args.grad_accum
    started = time.time()

    for step in range(start_step, args.max_steps + 1):
        if args.step_seconds > 0:
            time.sleep(args.step_seconds)
        if args.oom_at_step and step == args.oom_at_step and args.oom_at_batch and args.batch_size >= args.oom_at_batch:
            writer.flush()
            fail_out_of_memory(args)
        epoch = (step - 1) // args.epoch_steps + 1
        text_loss, mel_loss, mel_top1 = losses(step)
        if step == args.nan_at_step:
            mel_loss = float("nan")
        lr = args.lr * min(1.0, step / 10.0)
        if step % args.log_every == 0 or step == start_step:
            elapsed = max(time.time() - started, 1e-6)
            steps_per_min = (step - start_step + 1) / elapsed * 60
            eta_h = (args.max_steps - step) / max(steps_per_min, 1e-6) / 60
            grad_norm = 1.0 + 0.5 * math.sin(step)
            print(f"[Train] epoch={epoch} step={step} text_loss={text_loss:.4f} mel_loss={mel_loss:.4f} "
                  f"mel_top1={mel_top1:.4f} lr={lr:.2e} | {steps_per_min:.1f} steps/min ETA:{eta_h:.2f}h | "
                  f"grad_norm={grad_norm:.3f} GPU=1.23GB", flush=True)
            for tag, value in (("train/text_loss", text_loss), ("train/mel_loss", mel_loss),
                               ("train/mel_top1", mel_top1), ("train/lr", lr),
                               ("train/samples_per_sec", effective * steps_per_min / 60)):
                add_scalar(writer, args.tb_style, tag, value, step)
        if step % val_every == 0:
            vt, vm, va = val_losses(step)
            print(f"[Val] epoch={epoch} step={step} text_loss={vt:.4f} mel_loss={vm:.4f} mel_top1={va:.4f} "
                  f"| val_time=0.01min", flush=True)
            for tag, value in (("val/text_loss", vt), ("val/mel_loss", vm), ("val/mel_top1", va)):
                add_scalar(writer, args.tb_style, tag, value, step)
            if vt < best_val:
                best_val = vt
                write_atomically(os.path.join(out, "best_model.pth"),
                                 {"model": model.state_dict(), "step": step, "val_text_loss": vt})
        if step % args.checkpoint_every == 0:
            path = os.path.join(out, f"model_step{step}.pth")
            # Like the older trainer's model_step{N}.pth: model, optimizer and scheduler state.
            state = {"step": step, "epoch": epoch, "best_val": best_val, "batch_size": args.batch_size,
                     "grad_accum": args.grad_accum, "recent_checkpoints": recent + [path],
                     "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": {"last_epoch": step, "base_lrs": [args.lr]}}
            write_atomically(path, state)
            recent.append(path)
            while len(recent) > 3:
                old = recent.pop(0)
                try:
                    os.remove(old)
                except FileNotFoundError:
                    pass
            state["recent_checkpoints"] = list(recent)
            write_atomically(os.path.join(out, "latest.pth"), state)
            writer.flush()
            print(f"[Info] Saved checkpoint {path}", flush=True)
        if step == args.hang_at_step:
            writer.flush()
            print(f"[Info] hanging at step {step}", flush=True)
            while True:
                time.sleep(60)

    writer.close()
    print(f"[Info] Training complete at step {args.max_steps}", flush=True)


if __name__ == "__main__":
    main()
