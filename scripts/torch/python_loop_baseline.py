#!/usr/bin/python3
"""Train the TorchScript reference model with a plain Python loop: the baseline for the benchmark
"shim loop vs Python loop" (issue 6).

    /usr/bin/python3 scripts/torch/python_loop_baseline.py --model ref.pt [--steps 200]
        [--threads 1] [--batch 8] [--text-len 24] [--code-len 48] [--seed 0]
        [--lr 1e-3] [--warmup 10] [--min-lr-ratio 0.1] [--weight-decay 0.01] [--grad-clip 1.0]
        [--jit-optimize] [--losses-out FILE]

It does what tts_shim_train_step does, in Python, with Debian's python3-torch:
torch.jit.load, train mode, forward -> dict, loss.backward(), torch.nn.utils.clip_grad_norm_,
lr from the shim's cosine schedule formula (warmup then cosine to min_lr_ratio * lr, see
tts_torch_shim.h), torch.optim.AdamW(betas 0.9/0.999, eps 1e-8, weight_decay), zero_grad.
The batches are the synthetic batches of CONTRACT.md (synthetic_batches.py), generated before the
loop exactly as shim_smoke.c --bench does, and torch.set_num_threads(--threads) is applied, so the
two loops do the same work. The TorchScript graph optimiser is off by default, as in the shim
(tts_train_config.jit_optimize = 0).

The first 5 steps are not timed (warm-up). The last line is JSON:
{"runner": "python", "steps_per_second": ..., "steps_per_cpu_second": ..., "steps": ..., ...}
(steps_per_second is wall-clock; steps_per_cpu_second divides by the process's CPU time, which
is steadier on a shared machine and equal to wall time for --threads 1 on an idle one.)
"""

import argparse
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synthetic_batches import make_torch_batch  # noqa: E402

WARMUP_UNTIMED = 5


def lr_at(step: int, lr: float, warmup: int, total: int, min_ratio: float) -> float:
    """The shim's cosine schedule (TTS_SCHEDULE_COSINE)."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    m = min_ratio * lr
    p = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    return m + (lr - m) * 0.5 * (1.0 + math.cos(math.pi * p))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--text-len", type=int, default=24)
    ap.add_argument("--code-len", type=int, default=48)
    ap.add_argument("--codes", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--total-steps", type=int, default=0, help="default: --steps")
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--jit-optimize", action="store_true")
    ap.add_argument("--malloc-tuning", action="store_true",
                    help="apply the shim's glibc mallopt settings (see shim.cpp) to this process too")
    ap.add_argument("--losses-out")
    args = ap.parse_args()
    if args.steps <= WARMUP_UNTIMED:
        ap.error(f"--steps must be > {WARMUP_UNTIMED}")
    total = args.total_steps or args.steps

    if args.malloc_tuning:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)    # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1024 * 1024 * 1024)  # M_TRIM_THRESHOLD
        libc.mallopt(-2, 64 * 1024 * 1024)    # M_TOP_PAD
    torch.set_num_threads(args.threads)
    torch._C._set_graph_executor_optimize(bool(args.jit_optimize))
    torch.manual_seed(args.seed)
    model = torch.jit.load(args.model)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=args.weight_decay)
    batches = [make_torch_batch(args.seed, i, args.batch, args.text_len, args.code_len, args.codes)
               for i in range(args.steps)]

    losses = []
    t0 = c0 = 0.0
    for step in range(args.steps):
        if step == WARMUP_UNTIMED:
            t0 = time.perf_counter()
            c0 = time.process_time()
        out = model(*batches[step])
        loss = out["loss"]
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.lr, args.warmup, total, args.min_lr_ratio)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    secs = time.perf_counter() - t0
    cpu = time.process_time() - c0

    if args.losses_out:
        with open(args.losses_out, "w") as fh:
            fh.writelines(f"{v:.9g}\n" for v in losses)
    print(json.dumps({
        "runner": "python",
        "steps_per_second": round((args.steps - WARMUP_UNTIMED) / secs, 3),
        "steps_per_cpu_second": round((args.steps - WARMUP_UNTIMED) / cpu, 3),
        "steps": args.steps,
        "timed_steps": args.steps - WARMUP_UNTIMED,
        "batch": args.batch,
        "threads": args.threads,
        "jit_optimize": int(bool(args.jit_optimize)),
        "malloc_tuning": int(bool(args.malloc_tuning)),
        "torch": torch.__version__,
        "first_loss": round(losses[0], 6),
        "last_loss": round(losses[-1], 6),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
