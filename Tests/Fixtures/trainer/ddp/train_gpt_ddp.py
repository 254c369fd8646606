#!/usr/bin/env python3
"""Test fixture: IndexTTS-2's GPT fine-tuning trainer run as a data-parallel gang (DDP, gloo).

What it mirrors. The single-process trainer is `trainers/train_gpt_v2.py` of edu-ide/index-tts at
commit 7de3cca (2025-12-11; the file last changed in 433a0ae, 2025-11-23), as described in
/work/shared/reference/real-trainer.md and as modelled by the project's single-process fixture
Tests/Fixtures/trainer/indextts-fixture/trainers/train_gpt_v2.py ("the fixture" below). That
trainer has no multi-GPU code; the community multi-GPU forks wrap such a trainer in torchrun +
DistributedDataParallel: rank/world from torchrun's environment, a DistributedSampler, DDP around
the model, `no_sync()` on accumulation micro-batches, and rank 0 alone printing, logging and
saving. This file is that wrapping applied to the fixture's observable behaviour; no particular
fork is mirrored byte for byte (none is pinned by the project).

Reused from the fixture (imported from its path with importlib, so the two cannot drift): the
whole command line (`parse_args`: every flag, type, default, `required`, `choices`; an empty
number is an argparse error, exit 2), the manifest reading with its [Info]/progress lines and
errors (`ManifestDataset`), the `--num-workers 0` ValueError of torch 2 (`make_loader`), the WSD /
cosine LambdaLR factors, ClipRateLR, the checkpoint writers (`save_in_background`: `<name>.tmp` in
a daemon thread then rename; `save_best`: in place), `align_prefix`, the sample-inference child
(`start_sample_inference`: `python <indextts-fixture>/tools/infer_cpu_sample.py ...`), the
`_orig_mod.` wrapper, the TensorBoard SummaryWriter, and the fixture knobs TTS_FIXTURE_STEP_SECONDS,
TTS_FIXTURE_LIGHT_EVERY, TTS_FIXTURE_FULL_EVERY, TTS_FIXTURE_HANG_AT_STEP. The import also prints
the two import-time "[Warning] ... not installed" lines, as the real module does.

Copied (the format strings are in the fixture's main(), not importable; keep them in step): the
start-up [Info] lines, the [Train] line (fixture "print(f\"[Train] epoch=..." = real lines
1514-1526), the [Val] line (fixture validate() = real lines 1559-1563), "[Info] New best
validation text_loss: X. Saving best_model.pth...", "[Info] Triggering CPU inference for sample:
P", "[Info] Resumed from P at epoch E, step N.", "[Info] Skipping startup validation; will
evaluate after next training interval.", "Training complete."; the checkpoint keys, cadences
(latest.pth every 100 steps light, latest_full.pth every 1000 steps full, both at the end unless
the last step already wrote latest.pth) and resume rules (`--resume PATH|auto|""`, auto =
latest_full.pth else latest.pth; model always, optimizer if same type, scheduler if present; step
and epoch from the file; best record back at infinity). stdout is not flushed per line
(line-buffered only with PYTHONUNBUFFERED=1), as the real trainer.

Data parallelism (what the gang adds):
  * rank/world: env RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT (torchrun's, or set by
    a launcher directly); flags --rank/--world-size/--local-rank(--local_rank)/--master-addr/
    --master-port win over the env. WORLD_SIZE > 1: init_process_group("gloo", "env://",
    timeout=TTS_DDP_TIMEOUT_S seconds, default 30). WORLD_SIZE 1 (or unset): no process group,
    no DDP, a plain single-process run (the reference for equivalence).
  * --batch-size is per rank (the micro-batch of one rank); effective batch per optimiser step =
    batch-size x grad-accumulation x world-size. The N-rank run gives the same per-step losses
    (within float rounding of the gradient all-reduce) as the 1-rank run with batch-size x N.
    Sharding: DistributedSampler(shuffle=True, seed=--seed, drop_last=True) + set_epoch(epoch),
    DataLoader(drop_last=True): global micro-batch k of an epoch is the same set of samples for
    every world size with the same batch-size x world-size.
  * `no_sync()` on the micro-batches that do not end an optimiser step; the gradient norm printed
    is the norm of the all-reduced (global) gradient, as in the single-process run.
  * the train losses printed/logged are the global mean over ranks (all_reduce every step) of
    each rank's last micro-batch, which is what the single-process run prints for its (larger)
    last micro-batch. samples/s uses the per-rank --batch-size, as the real formula does.
  * rank 0 only: stdout (the other ranks' stdout is /dev/null, so they print nothing there), the
    output directory, TensorBoard, checkpoints, validation (on the unwrapped model, the whole
    val loader as the real evaluate(): at most 50 batches of --batch-size, sample-weighted means),
    best_model.pth and the sample-inference child. Every rank writes a few "[rank R] ..." lines
    to stderr (flushed): start-up, rendezvous, resume, peer loss, shutdown.
  * resume: rank 0 resolves --resume and loads the file, then broadcasts it to every rank
    (broadcast_object_list), so the other ranks need no checkpoint on their disk.
  * peer loss: a collective on a dead/stuck peer raises (gloo: connection closed at once when the
    peer process dies; timeout after TTS_DDP_TIMEOUT_S when it hangs). The surviving rank then
    prints "[rank R] peer lost: <error>; exiting with 75" on stderr, flushes stdout and ends with
    os._exit(75) (EX_TEMPFAIL) without a final save (a background save in flight is abandoned
    and leaves at most a `<name>.tmp`). Any other error: traceback, exit 1, as the real trainer.
  * normal end: all ranks meet in a barrier after rank 0's final saves, then exit 0.

Deviations from the real trainer / the fixture:
  * A REAL tiny model is trained (so losses are computed, not formulas as in the fixture): a
    16->32 tanh encoder with two heads, text (8 classes) and mel (16 classes); text_loss and
    mel_loss are their cross-entropies, mel_top1 the mel head's top-1 accuracy, loss =
    --text-loss-weight x text_loss + --mel-loss-weight x mel_loss. Sample i's input and targets
    are generated from (split, i) with fixed seeds (a fixed random "teacher" labels them), so the
    data are the same on every rank and every run. Keys carry `_orig_mod.` as in the fixture
    (saved from the unwrapped model: no DDP `module.` prefix).
  * Epoch length: floor(records / (batch-size x world-size)) micro-batches (drop_last), where the
    real trainer and the fixture use ceil(records / batch-size). Needed for exact equivalence.
  * Exact resume: checkpoints carry an extra key `fixture_ddp` (the epoch's micro-batches done,
    batch-size x world-size, world size, the torch RNG state); on resume with the same
    batch-size x world-size the epoch continues after the last consumed micro-batch, so the run
    continues exactly as an uninterrupted one. The real trainer replays the epoch from its start;
    TTS_FIXTURE_REPLAY_EPOCH=1 restores that. (Accumulated gradients of an epoch's leftover
    micro-batches that carry into the next epoch are not saved, as in the real trainer: pick
    epoch lengths that are multiples of --grad-accumulation for exact resume.)
  * The checkpoint state is copied (deepcopy) before the background save, so latest*.pth holds
    exactly the saved step's weights; the real trainer serialises the live tensors while training
    continues.
  * No other fixture knobs (OOM, NaN, children, padding, slow best write) are implemented.
  * Needs the fixture's Python environment (Tests/Fixtures/trainer/trainer_env.sh: torch +
    tensorboardX): the fixture imports a SummaryWriter at module level. torch.set_num_threads(1).

Fixture-only knobs (environment; unset = defaults):
  TTS_DDP_TIMEOUT_S=F           process-group timeout in seconds (default 30)
  TTS_FIXTURE_STEP_SECONDS=F    sleep F seconds in every optimiser step (fixture's knob)
  TTS_FIXTURE_LIGHT_EVERY=N     latest.pth every N steps (default 100; fixture's knob)
  TTS_FIXTURE_FULL_EVERY=N      latest_full.pth every N steps (default 1000; fixture's knob)
  TTS_FIXTURE_HANG_AT_STEP=S    after step S stop progressing (fixture's knob; all ranks)
  TTS_FIXTURE_REPLAY_EPOCH=1    resume replays the epoch from its start (the real behaviour)
  TTS_DDP_METRICS_JSONL=P       rank 0 appends one JSON line per optimiser step with the
                                unrounded train metrics (for equivalence checks)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import functools
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Dict, Optional

import torch

torch.set_num_threads(1)

import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.optim import AdamW  # noqa: E402
from torch.optim.lr_scheduler import LambdaLR  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torch.utils.data.distributed import DistributedSampler  # noqa: E402

FIXTURE_PATH = Path(__file__).resolve().parent.parent / "indextts-fixture" / "trainers" / "train_gpt_v2.py"
EXIT_PEER_LOST = 75  # EX_TEMPFAIL: this rank was fine, the gang was not

IN_DIM, HIDDEN, TEXT_CLASSES, MEL_CLASSES = 16, 32, 8, 16


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


TIMEOUT_S = float(_env("TTS_DDP_TIMEOUT_S") or 30)
REPLAY_EPOCH = _env("TTS_FIXTURE_REPLAY_EPOCH") not in ("", "0")
METRICS_JSONL = _env("TTS_DDP_METRICS_JSONL")

# ----------------------------------------------------------------------------------------------
# Rank and world (flags win over torchrun's environment)


def pre_parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--rank", type=int)
    p.add_argument("--world-size", "--world_size", dest="world_size", type=int)
    p.add_argument("--local-rank", "--local_rank", dest="local_rank", type=int)
    p.add_argument("--master-addr", "--master_addr", dest="master_addr", type=str)
    p.add_argument("--master-port", "--master_port", dest="master_port", type=int)
    ns, rest = p.parse_known_args(sys.argv[1:])
    sys.argv = [sys.argv[0]] + rest
    env_int = lambda n, d: int(_env(n)) if _env(n) else d  # noqa: E731
    ns.rank = ns.rank if ns.rank is not None else env_int("RANK", 0)
    ns.world_size = ns.world_size if ns.world_size is not None else env_int("WORLD_SIZE", 1)
    ns.local_rank = ns.local_rank if ns.local_rank is not None else env_int("LOCAL_RANK", ns.rank)
    if ns.master_addr:
        os.environ["MASTER_ADDR"] = ns.master_addr
    if ns.master_port:
        os.environ["MASTER_PORT"] = str(ns.master_port)
    return ns


RANK_TAG = "[rank ?]"


def rlog(msg: str) -> None:
    sys.stderr.write(f"{RANK_TAG} {msg}\n")
    sys.stderr.flush()


def load_fixture():
    spec = importlib.util.spec_from_file_location("indextts_fixture_train_gpt_v2", FIXTURE_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------------
# The real tiny model and its deterministic data


class TinyGPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(IN_DIM, HIDDEN)
        self.text_head = nn.Linear(HIDDEN, TEXT_CLASSES)
        self.mel_head = nn.Linear(HIDDEN, MEL_CLASSES)

    def forward(self, x: torch.Tensor):
        h = torch.tanh(self.encoder(x))
        return self.text_head(h), self.mel_head(h)


def synthetic_tables(n: int, split_salt: int):
    """Inputs and labels of samples 0..n-1 of a split: fixed seeds, independent of rank/world."""
    g = torch.Generator().manual_seed(20251211 + split_salt)
    x = torch.randn(n, IN_DIM, generator=g)
    teacher = torch.Generator().manual_seed(7_0_0_7)
    w_text = torch.randn(IN_DIM, TEXT_CLASSES, generator=teacher)
    w_mel = torch.randn(IN_DIM, MEL_CLASSES, generator=teacher)
    text_y = (x @ w_text + 0.7 * torch.randn(n, TEXT_CLASSES, generator=g)).argmax(dim=1)
    mel_y = (torch.tanh(x) @ w_mel + 0.7 * torch.randn(n, MEL_CLASSES, generator=g)).argmax(dim=1)
    return x, text_y, mel_y


def compute_losses(model: nn.Module, table, idx: torch.Tensor):
    x, text_y, mel_y = table
    text_logits, mel_logits = model(x[idx])
    text_loss = F.cross_entropy(text_logits, text_y[idx])
    mel_loss = F.cross_entropy(mel_logits, mel_y[idx])
    top1 = (mel_logits.detach().argmax(dim=1) == mel_y[idx]).float().mean()
    return text_loss, mel_loss, top1


# ----------------------------------------------------------------------------------------------


def main() -> None:
    global RANK_TAG
    ddp = pre_parse()
    rank, world = ddp.rank, ddp.world_size
    RANK_TAG = f"[rank {rank}]"
    distributed = world > 1
    if rank != 0:
        sys.stdout = open(os.devnull, "w")  # only rank 0's stdout carries [Train]/[Val]/[Info]
    rlog(f"start pid={os.getpid()} world_size={world} local_rank={ddp.local_rank} "
         f"master={os.environ.get('MASTER_ADDR', '-')}:{os.environ.get('MASTER_PORT', '-')}")
    fx = load_fixture()
    args = fx.parse_args()

    if distributed:
        started = time.time()
        rlog(f"init_process_group(gloo, env://, timeout={TIMEOUT_S:g}s)")
        try:
            dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world,
                                    timeout=datetime.timedelta(seconds=TIMEOUT_S))
        except RuntimeError as exc:  # a peer never came, or the master is unreachable (bad env: ValueError, exit 1)
            peer_lost(exc)
        rlog(f"rendezvous complete in {time.time() - started:.3f}s")
    try:
        steps = train(fx, args, rank, world)
    except Exception as exc:
        if distributed and looks_like_peer_failure(exc):
            peer_lost(exc)
        raise
    if distributed:
        try:
            dist.barrier()
            dist.destroy_process_group()
        except Exception as exc:
            peer_lost(exc)
    rlog(f"finished at step {steps}")


def looks_like_peer_failure(exc: BaseException) -> bool:
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc).lower()
    return any(w in text for w in ("gloo", "connection", "timed out", "timeout", "broken pipe", "peer",
                                   "socket", "reset", "closed"))


def peer_lost(exc: BaseException) -> None:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    try:
        sys.stdout.flush()
    except Exception:
        pass
    rlog(f"peer lost: {type(exc).__name__}: {first}; exiting with {EXIT_PEER_LOST}")
    os._exit(EXIT_PEER_LOST)


def train(fx, args: argparse.Namespace, rank: int, world: int) -> int:
    distributed = world > 1
    is_main = rank == 0
    torch.manual_seed(args.seed)
    device = torch.device("cpu")

    output_dir = args.output_dir.resolve()
    writer = None
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "logs").mkdir(parents=True, exist_ok=True)
        run_name = os.environ.get("INDEXTTS_RUN_NAME")
        if run_name is None:
            run_name = "run_" + datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
        log_dir = output_dir / "logs" / run_name
        log_dir.mkdir(parents=True, exist_ok=True)
        writer = fx.SummaryWriter(log_dir=str(log_dir))

    def scalar(tag: str, value, step: int) -> None:
        if writer is not None:
            writer.add_scalar(tag, value, step)

    print("[Info] Aim not available. Install with: pip install aim")
    # Tokenizer, config, base checkpoint: the fixture's checks (nothing parsed).
    if not os.path.exists(str(args.tokenizer)):
        raise ValueError(f"vocab_file {args.tokenizer} does not exist")
    open(os.path.abspath(args.config), "r", encoding="utf-8").close()
    open(args.base_checkpoint, "rb").close()
    if args.base_tokenizer and not args.base_tokenizer.exists():
        raise FileNotFoundError(f"Base tokenizer not found: {args.base_tokenizer}")
    model = fx.CompiledStandIn(TinyGPT()).to(device)
    print("[Info] Compiling model with torch.compile (reduce-overhead mode)...")
    print("[Info] Model compilation complete - expect 15-30% speed boost")

    train_specs = fx.parse_manifest_specs(args.train_manifests, "--train-manifest")
    val_specs = fx.parse_manifest_specs(args.val_manifests, "--val-manifest")
    print("[Info] Loading training manifests...")
    train_set = fx.ManifestDataset(train_specs)
    print("[Info] Loading validation manifests...")
    val_set = fx.ManifestDataset(val_specs)
    manifests = {
        part: [{"path": str(s["path"]), "count": s["count"], "languages": list(s["languages"])} for s in ds.summaries]
        for part, ds in (("train", train_set), ("val", val_set))
    }
    train_table = synthetic_tables(len(train_set), 0)
    val_table = synthetic_tables(len(val_set), 1)

    fx.make_loader(train_set, args, shuffle=True)  # the real --num-workers 0 failure, verbatim
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=args.seed,
                                 drop_last=True)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler, num_workers=args.num_workers,
                              collate_fn=fx.collate_indices, pin_memory=False, drop_last=True,
                              persistent_workers=args.num_workers > 0, prefetch_factor=2,
                              multiprocessing_context="fork")
    val_loader = fx.make_loader(val_set, args, shuffle=False)
    if len(train_loader) == 0:
        raise RuntimeError(f"{len(train_set)} training records are fewer than one global micro-batch "
                           f"({args.batch_size} x {world} ranks)")

    lr = args.learning_rate
    if args.optimizer == "prodigy":
        print("[Info] Using Prodigy optimizer (parameter-free learning)")
        lr = 1.0
    elif args.optimizer == "mars":
        print(f"[Info] Using MARS optimizer (MARS-AdamW) with LR={args.learning_rate}")
    elif args.optimizer == "schedulefree":
        raise RuntimeError("schedulefree optimizer requested but not installed. Run: pip install schedulefree")
    else:
        print(f"[Info] Using AdamW optimizer with LR={args.learning_rate} fused=False")
    optimizer = AdamW(model.parameters(), lr=lr, weight_decay=args.weight_decay)

    if args.max_steps > 0:
        total_steps = args.max_steps
    else:
        total_steps = args.epochs * max(1, len(train_loader)) // max(1, args.grad_accumulation)
    total_steps = max(total_steps, 1)
    scheduler = None
    if args.scheduler == "wsd":
        remaining = total_steps - args.warmup_steps
        stable = int(remaining * args.wsd_stable_ratio)
        decay = remaining - stable
        print("[Info] Using WSD Scheduler")
        print(f"  - Warmup: {args.warmup_steps} steps")
        print(f"  - Stable: {stable} steps ({args.wsd_stable_ratio*100:.0f}%)")
        print(f"  - Decay: {decay} steps")
        print(f"  - Min LR Ratio: {args.wsd_min_lr_ratio}")
        scheduler = LambdaLR(optimizer, functools.partial(
            fx._wsd_factor, warmup=args.warmup_steps, stable=stable, decay=decay,
            min_ratio=args.wsd_min_lr_ratio, cycles=0.5))
    elif args.scheduler == "cosine":
        print("[Info] Using Cosine Scheduler")
        scheduler = LambdaLR(optimizer, functools.partial(
            fx._cosine_factor, warmup=args.warmup_steps, total=total_steps, cycles=0.5))
    scaler = None

    global_step = 0
    start_epoch = 0
    skip_batches = 0
    last_saved_step: Optional[int] = None
    light_thread = full_thread = None
    last_train_text = last_train_mel = last_val_text = last_val_mel = None
    global_micro = args.batch_size * world

    resume_path: Optional[str] = None
    ckpt = None
    if is_main:
        raw = (args.resume or "").strip()
        if raw in ("", '""', "''"):
            resume_path = None
        elif raw == "auto":
            for name in ("latest_full.pth", "latest.pth"):
                if (output_dir / name).exists():
                    resume_path = str(output_dir / name)
                    break
        else:
            resume_path = raw.strip("\"'")
        if resume_path:
            map_loc = device if not args.cpu_ckpt_load else "cpu"
            print(f"[Info] Loading checkpoint from {resume_path} to {map_loc} ...")
            ckpt = torch.load(resume_path, map_location="cpu")
    if distributed:
        box = [resume_path, ckpt]
        dist.broadcast_object_list(box, src=0)
        resume_path, ckpt = box
    if ckpt is not None:
        weights = dict(fx.align_prefix(model, ckpt["model"]))
        print("[Info] Loading model state_dict...")
        model.load_state_dict(weights)
        print("[Info] Model state loaded successfully")
        ckpt_type = ckpt.get("optimizer_type", "adamw")
        if args.optimizer == ckpt_type and ckpt.get("optimizer"):
            print(f"[Info] Loading {args.optimizer} optimizer state (matching checkpoint)")
            optimizer.load_state_dict(ckpt["optimizer"])
        else:
            print(f"[Info] Skipping optimizer state loading (checkpoint: {ckpt_type}, current: {args.optimizer})")
            print(f"[Info] Starting with fresh {args.optimizer} optimizer state")
        if scheduler and ckpt.get("scheduler"):
            scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch = ckpt.get("epoch", 0)
        global_step = ckpt.get("step", 0)
        last_saved_step = ckpt.get("step")
        extra = ckpt.get("fixture_ddp") or {}
        if not REPLAY_EPOCH and extra.get("global_micro_batch") == global_micro:
            skip_batches = int(extra.get("micro_batches_done", 0))
            if "torch_rng_state" in extra:
                torch.set_rng_state(extra["torch_rng_state"])
        rlog(f"resumed from {resume_path}: epoch {start_epoch}, step {global_step}, "
             f"skipping {skip_batches} micro-batches of the epoch")
        print(f"[Info] Resumed from {resume_path} at epoch {start_epoch}, step {global_step}.")
        ckpt = None

    ddp_model = nn.parallel.DistributedDataParallel(model) if distributed else model
    model.train()
    optimizer.zero_grad(set_to_none=True)
    best_val = math.inf
    last_log_step = global_step
    last_log_time = time.time()
    clip_rate = None
    if args.clipaware_enable:
        clip_rate = fx.ClipRateLR(optimizer, scheduler, args.clipaware_window, args.clipaware_threshold,
                                  args.clipaware_decay, args.clipaware_min_lr, args.clipaware_cooldown)
    data_time = compute_time = 0.0
    epoch_batches_done = skip_batches
    epoch = start_epoch

    if args.val_interval > 0 and global_step > 0:
        print("[Info] Skipping startup validation; will evaluate after next training interval.")

    metrics_file = open(METRICS_JSONL, "a", encoding="utf-8") if (METRICS_JSONL and is_main) else None

    def state(full: bool, epoch_idx: int, train_text, train_mel, val_text, val_mel) -> dict:
        s = {"model": model.state_dict()}
        if full:
            s.update({"optimizer": optimizer.state_dict(), "optimizer_type": args.optimizer,
                      "scheduler": scheduler.state_dict() if scheduler else None,
                      "scaler": scaler.state_dict() if scaler else None})
        s.update({"epoch": epoch_idx, "step": global_step, "recent_checkpoints": [], "manifests": manifests,
                  "train_text_loss": train_text, "train_mel_loss": train_mel,
                  "val_text_loss": val_text, "val_mel_loss": val_mel,
                  "fixture_ddp": {"micro_batches_done": epoch_batches_done, "global_micro_batch": global_micro,
                                  "world_size": world, "batch_size": args.batch_size,
                                  "grad_accumulation": args.grad_accumulation,
                                  "torch_rng_state": torch.get_rng_state()}})
        return copy.deepcopy(s)  # a snapshot: training goes on while the thread writes it

    def validate(epoch_idx: int) -> Dict[str, float]:
        started = time.time()
        model.eval()
        totals = {"text_loss": 0.0, "mel_loss": 0.0, "mel_top1": 0.0}
        count = 0
        with torch.no_grad():
            for i, batch in enumerate(val_loader):
                if i >= 50:
                    break
                tl, ml, top1 = compute_losses(model, val_table, batch)
                bsz = len(batch)
                totals["text_loss"] += tl.item() * bsz
                totals["mel_loss"] += ml.item() * bsz
                totals["mel_top1"] += top1.item() * bsz
                count += bsz
        model.train()
        vals = {k: (v / count if count else 0.0) for k, v in totals.items()}
        minutes = (time.time() - started) / 60
        for tag, value in (("val/text_loss", vals["text_loss"]), ("val/mel_loss", vals["mel_loss"]),
                           ("val/mel_top1", vals["mel_top1"]), ("val/time_minutes", minutes)):
            scalar(tag, value, global_step)
        print(f"[Val] epoch={epoch_idx + 1} step={global_step} text_loss={vals['text_loss']:.4f} "
              f"mel_loss={vals['mel_loss']:.4f} mel_top1={vals['mel_top1']:.4f} | val_time={minutes:.2f}min")
        return vals

    def on_new_best(vals, epoch_idx, train_text, train_mel, ref_audio: Path) -> None:
        nonlocal best_val
        best_val = vals["text_loss"]
        print(f"[Info] New best validation text_loss: {best_val:.4f}. Saving best_model.pth...")
        fx.save_best(state(True, epoch_idx, train_text, train_mel, vals["text_loss"], vals["mel_loss"]),
                     output_dir / "best_model.pth")
        sample_out = output_dir / f"best_val_{best_val:.4f}.wav"
        print(f"[Info] Triggering CPU inference for sample: {sample_out}")
        fx.start_sample_inference(output_dir, ref_audio, sample_out)

    rlog(f"training from step {global_step} (epoch {start_epoch}, per-rank batch {args.batch_size}, "
         f"accumulation {args.grad_accumulation}, {len(train_loader)} micro-batches per epoch)")
    done = False
    for epoch in range(start_epoch, args.epochs):
        sampler.set_epoch(epoch)
        first = skip_batches if epoch == start_epoch else 0
        epoch_batches_done = first
        batch_start = time.time()
        for batch_idx, batch in enumerate(train_loader):
            if batch_idx < first:
                continue
            now = time.time()
            data_time = now - batch_start
            compute_start = now
            boundary = (batch_idx + 1) % args.grad_accumulation == 0
            sync = ddp_model.no_sync() if (distributed and not boundary) else contextlib.nullcontext()
            with sync:
                text_loss, mel_loss, top1 = compute_losses(ddp_model, train_table, batch)
                loss = args.text_loss_weight * text_loss + args.mel_loss_weight * mel_loss
                (loss / args.grad_accumulation).backward()
            epoch_batches_done = batch_idx + 1
            if not boundary:
                continue

            total_norm = 0.0
            for p in model.parameters():
                if p.grad is not None:
                    total_norm += p.grad.data.norm(2).item() ** 2
            total_norm = total_norm ** 0.5
            clipped_norm = total_norm
            if args.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
                clipped_norm = min(total_norm, args.grad_clip)
                if clip_rate:
                    clip_rate.record(clipped=True)
            elif clip_rate:
                clip_rate.record(clipped=False)
            optimizer.step()
            if scheduler:
                scheduler.step()
            if clip_rate and clip_rate.maybe_decay():
                print(f"[ClipAware] High clip rate detected; decayed LR by {args.clipaware_decay} (min={args.clipaware_min_lr})")
            optimizer.zero_grad(set_to_none=True)

            reported = torch.stack([text_loss.detach(), mel_loss.detach(), top1]).double()
            if distributed:
                dist.all_reduce(reported)  # sum over ranks
                reported /= world
            text_v, mel_v, top1_v = (float(v) for v in reported)
            last_train_text, last_train_mel = text_v, mel_v
            if fx.STEP_SECONDS > 0:
                time.sleep(fx.STEP_SECONDS)
            compute_time = time.time() - compute_start
            global_step += 1
            current_lr = optimizer.param_groups[0].get("lr", 0.0)
            if metrics_file is not None:
                metrics_file.write(json.dumps({"step": global_step, "epoch": epoch + 1, "text_loss": text_v,
                                               "mel_loss": mel_v, "mel_top1": top1_v, "grad_norm": total_norm,
                                               "lr": current_lr}) + "\n")
                metrics_file.flush()

            if global_step % args.log_interval == 0:
                now = time.time()
                steps = global_step - last_log_step
                elapsed = now - last_log_time
                if elapsed > 0 and steps > 0:
                    steps_per_min = steps / elapsed * 60
                    time_per_step = elapsed / steps
                    samples_per_sec = steps * args.batch_size / elapsed
                    if args.max_steps > 0:
                        remaining = args.max_steps - global_step
                    else:
                        remaining = args.epochs * len(train_loader) // args.grad_accumulation - global_step
                    eta_hours = remaining * time_per_step / 3600
                else:
                    steps_per_min = time_per_step = samples_per_sec = eta_hours = 0
                for tag, value in (
                    ("train/text_loss", text_v), ("train/mel_loss", mel_v), ("train/mel_top1", top1_v),
                    ("train/lr", current_lr), ("train/lr_effective", current_lr),
                    ("train/steps_per_min", steps_per_min), ("train/samples_per_sec", samples_per_sec),
                    ("train/time_per_step", time_per_step), ("train/gradient_norm_preclip", total_norm),
                    ("train/gradient_norm_clipped", clipped_norm), ("train/data_load_time_ms", data_time * 1000),
                    ("train/compute_time_ms", compute_time * 1000), ("train/gpu_memory_allocated_gb", 0),
                    ("train/gpu_memory_reserved_gb", 0), ("train/gpu_utilization_pct", 0),
                ):
                    scalar(tag, value, global_step)
                ratio = data_time / (data_time + compute_time) if (data_time + compute_time) > 0 else 0
                # Same format as the fixture's [Train] print (= real lines 1514-1526).
                print(f"[Train] epoch={epoch + 1} step={global_step} text_loss={text_v:.4f} mel_loss={mel_v:.4f} "
                      f"mel_top1={top1_v:.4f} lr={current_lr:.2e} | {steps_per_min:.1f}steps/min "
                      f"{samples_per_sec:.1f}samples/s {time_per_step:.2f}s/step ETA:{eta_hours:.1f}h | "
                      f"grad_norm={total_norm:.2f} (clipped {clipped_norm:.2f}) lr_eff={current_lr:.3e} "
                      f"GPU={0:.1f}GB data={ratio*100:.1f}%")
                last_log_step, last_log_time = global_step, now

            if is_main and args.val_interval > 0 and global_step % args.val_interval == 0:
                vals = validate(epoch)
                last_val_text, last_val_mel = vals["text_loss"], vals["mel_loss"]
                if vals["text_loss"] < best_val:
                    ref_audio = Path(args.output_dir).parent.parent / "examples/voice_01.wav"
                    if not ref_audio.exists():
                        ref_audio = Path(fx.FALLBACK_REF_AUDIO)
                    on_new_best(vals, epoch, text_v, mel_v, ref_audio)

            if is_main and global_step % fx.LIGHT_EVERY == 0:
                light_thread = fx.save_in_background(
                    state(False, epoch, last_train_text, last_train_mel, last_val_text, last_val_mel),
                    output_dir / "latest.pth", light_thread)
            if global_step % fx.LIGHT_EVERY == 0:
                last_saved_step = global_step
            if is_main and global_step % fx.FULL_EVERY == 0:
                full_thread = fx.save_in_background(
                    state(True, epoch, last_train_text, last_train_mel, last_val_text, last_val_mel),
                    output_dir / "latest_full.pth", full_thread)

            if fx.HANG_AT_STEP and global_step == fx.HANG_AT_STEP:
                rlog(f"TTS_FIXTURE_HANG_AT_STEP: hanging after step {global_step}")
                while True:
                    time.sleep(60)

            batch_start = time.time()
            if args.max_steps and global_step >= args.max_steps:
                done = True
                break
        if done:
            break
        if is_main and args.val_interval == 0:
            vals = validate(epoch)
            if vals["text_loss"] < best_val:
                on_new_best(vals, epoch, last_train_text, last_train_mel, Path(fx.FALLBACK_REF_AUDIO))

    if is_main:
        if global_step > 0 and last_saved_step != global_step:
            light_thread = fx.save_in_background(
                state(False, epoch, last_train_text, last_train_mel, last_val_text, last_val_mel),
                output_dir / "latest.pth", light_thread)
            full_thread = fx.save_in_background(
                state(True, epoch, last_train_text, last_train_mel, last_val_text, last_val_mel),
                output_dir / "latest_full.pth", full_thread)
        for thread in (light_thread, full_thread):
            if thread is not None and thread.is_alive():
                thread.join()
        writer.close()
    if metrics_file is not None:
        metrics_file.close()
    print("Training complete.")
    sys.stdout.flush()
    return global_step


if __name__ == "__main__":
    main()
