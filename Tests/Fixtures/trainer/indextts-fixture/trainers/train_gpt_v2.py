#!/usr/bin/env python3
"""Test fixture: behaves like IndexTTS-2's GPT fine-tuning trainer, without a model.

Mirrors `trainers/train_gpt_v2.py` of edu-ide/index-tts at commit 7de3cca (2025-12-11; the
file last changed in 433a0ae, 2025-11-23) wherever a runner can observe it, as described in
/work/shared/reference/real-trainer.md. Independent code: only the behaviour is mirrored. It sits
in a directory laid out like that repository (trainers/train_gpt_v2.py, tools/infer_cpu_sample.py),
so a job spec written for the real trainer runs it unchanged apart from the working directory.

Mirrored (same as the real trainer on a CPU-only host):
  * every command-line flag with its type, default, `required` and `choices` (stage-2/3, Aim and
    clip-aware flags included); `--num-workers 0` (the default) dies before step 1 with torch 2's
    `ValueError: prefetch_factor option could only be specified in multiprocessing.let
    num_workers > 0 to enable multiprocessing, otherwise set prefetch_factor to None.`
    (exit 1), an empty number is an argparse error (exit 2), `--resume ""` means no resume;
  * start-up order and its [Info] lines: TensorBoard directory `OUT/logs/run_YYYYmmdd_HHMMSS`
    (or $INDEXTTS_RUN_NAME) made first, then the tokenizer, config and base checkpoint (each must
    exist; the same exception when not), the manifests (JSONL, `::lang`/`@`/`=` suffixes, paired
    records with the real field names, the real errors and progress lines), the data loaders,
    the optimizer and scheduler lines, the resume lines;
  * the epoch length: len(train_loader) = ceil(records / batch_size); an optimiser step every
    --grad-accumulation micro-batches (leftover micro-batches carry into the next epoch);
    `--max-steps 0` runs --epochs epochs;
  * a real torch.optim.AdamW stepped at every optimiser step and a real LambdaLR implementing
    transformers 4.52.1's get_wsd_schedule (linear warm-up, stable, cosine decay; stable =
    int((total - warmup) * --wsd-stable-ratio)) or get_cosine_schedule_with_warmup, or none;
    the printed lr is the optimizer's param-group lr; --clipaware-* behaves as the real one
    (every clipped step counts as clipped when --grad-clip > 0);
  * stdout lines byte for byte ([Train] every --log-interval steps, [Val] every --val-interval
    steps or at each epoch's end when 0, [Info] New best..., [Info] Triggering CPU inference...,
    [Info] Resumed from P at epoch E, step N., Training complete.), printed without flushing
    (line-buffered only with PYTHONUNBUFFERED=1);
  * TensorBoard: a real SummaryWriter (torch.utils.tensorboard when importable, else
    tensorboardX: the same event format) with the default flush_secs=120, the same tags at the
    same steps, closed at the end only;
  * checkpoints: latest.pth (light: no optimizer/scheduler) every 100 steps, latest_full.pth
    (full) every 1000 steps, both also at the end unless the last step already wrote latest.pth
    (the real condition: `last_saved_step != global_step`); each is torch.save'd to `<name>.tmp`
    in a background daemon thread and renamed; best_model.pth torch.save'd in place after a [Val]
    that lowers the val text_loss. Real PyTorch zip files with the real keys; model keys carry
    `_orig_mod.`;
  * resume (`--resume PATH|auto|""`, auto = latest_full.pth, else latest.pth): the model always,
    the optimizer when the file has one of the same --optimizer type, the scheduler when the file
    has one; the step and epoch from the file; the best record back at infinity; the epoch
    replayed from its start. From a light latest.pth the LR schedule therefore restarts;
  * after each new best validation, `subprocess.Popen(["python", <repo>/tools/infer_cpu_sample.py,
    --ckpt, --text, --ref-audio, --output], env=... CUDA_VISIBLE_DEVICES="")` in the trainer's
    process group, sharing stdout/stderr, never waited for (no `python` on PATH: the trainer
    dies there with FileNotFoundError, exit 1);
  * no signal handlers: SIGTERM kills it at once, without a final save.

Deviations (no real model, no GPU):
  * The model is a tiny two-layer stand-in (wrapped so its keys carry torch.compile's
    `_orig_mod.` prefix; torch.compile is not run). The tokenizer, config and base checkpoint
    are only checked to exist (not parsed); .npy features are never loaded (so the real
    "[Warn] Skipping sample ..." lines cannot occur); stage-2 speaker loss is not computed.
  * Losses are deterministic functions of the global step s (the step being completed, 1-based):
        text_loss = 0.9 + 1.6 * exp(-s / 50)
        mel_loss  = 3.5 + 2.4 * exp(-s / 80)
        mel_top1  = 0.05 + 0.12 * (1 - exp(-s / 60))
        val: text_loss + 0.05, mel_loss + 0.1, mel_top1 - 0.01 (at the validation's step)
        grad_norm (pre-clip) = 0.5 + 3.5 * exp(-s / 40); clipped = min(grad_norm, --grad-clip)
    (so val text_loss falls at every validation until exp() underflows against 0.9, s ~ 1900);
    steps/min, samples/s, s/step, ETA, data=% and val_time are measured for real.
  * The modelled Python environment: prodigyopt and MARS importable, schedulefree and aim not
    installed. So the two import-time "[Warning] ... not installed" lines and "[Info] Aim not
    available" are printed, `--optimizer schedulefree` fails as the real one would, and
    `--optimizer prodigy|mars` print the real lines but step an AdamW (lr 1.0 for prodigy).
  * CPU only: no CUDA [Info] lines, fused=False, GPU=0.0GB, --amp has no effect (as the real one
    on a CPU host). --help texts are not the real ones.
  * The DataLoader check is torch 2's, done by the fixture (the installed torch may be older);
    the traceback's frames differ, its last line does not.
  * With TTS_FIXTURE_SAVE_PAD_BYTES the model has one more buffer (`_orig_mod.fixture_pad`);
    it is not restored on resume (the running fixture's own size is kept).

Fixture-only knobs (environment variables; unset = the real behaviour):
  TTS_FIXTURE_STEP_SECONDS=F      sleep F seconds in every optimiser step (default 0)
  TTS_FIXTURE_LIGHT_EVERY=N       latest.pth every N steps (default 100)
  TTS_FIXTURE_FULL_EVERY=N        latest_full.pth every N steps (default 1000)
  TTS_FIXTURE_OOM_AT_BATCH=N      with --batch-size >= N, raise torch.OutOfMemoryError ("CUDA out
                                  of memory. Tried to allocate ...", traceback on stderr, exit 1)
                                  in the first training micro-batch (default 0: never)
  TTS_FIXTURE_OOM_AT_STEP=S       with the above: in the micro-batches of step S instead
  TTS_FIXTURE_HANG_AT_STEP=S      after step S (its log, validation and saves) stop progressing
  TTS_FIXTURE_SPAWN_CHILDREN=N    start N sleeping child processes (same process group) at
                                  start-up; their pids in OUT/children.pids
  TTS_FIXTURE_NAN_AT_STEP=S       the train mel_loss of step S is nan
  TTS_FIXTURE_SAVE_PAD_BYTES=N    an N-byte buffer in the model, so in every checkpoint
  TTS_FIXTURE_BEST_WRITE_SECONDS=F  write best_model.pth in place in two halves with F seconds
                                  between them (kill in between: a truncated file)
  The sample-inference stand-in reads TTS_FIXTURE_INFER_SECONDS (see tools/infer_cpu_sample.py).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import io
import json
import math
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from threading import Thread
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.optim import AdamW
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset

try:
    from torch.utils.tensorboard import SummaryWriter
except ImportError:  # torch without the `tensorboard` package: the same event files
    import logging

    from tensorboardX import SummaryWriter

    # torch's writer logs NaN scalars silently; tensorboardX would warn on stderr.
    logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)

# The real module prints these at import when the packages are missing (see the header).
print("[Warning] schedulefree not installed. Run: pip install schedulefree")
print("[Warning] aim not installed. Run: pip install aim")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


STEP_SECONDS = _env_float("TTS_FIXTURE_STEP_SECONDS", 0.0)
LIGHT_EVERY = _env_int("TTS_FIXTURE_LIGHT_EVERY", 100)
FULL_EVERY = _env_int("TTS_FIXTURE_FULL_EVERY", 1000)
OOM_AT_BATCH = _env_int("TTS_FIXTURE_OOM_AT_BATCH", 0)
OOM_AT_STEP = _env_int("TTS_FIXTURE_OOM_AT_STEP", 0)
HANG_AT_STEP = _env_int("TTS_FIXTURE_HANG_AT_STEP", 0)
SPAWN_CHILDREN = _env_int("TTS_FIXTURE_SPAWN_CHILDREN", 0)
NAN_AT_STEP = _env_int("TTS_FIXTURE_NAN_AT_STEP", 0)
SAVE_PAD_BYTES = _env_int("TTS_FIXTURE_SAVE_PAD_BYTES", 0)
BEST_WRITE_SECONDS = _env_float("TTS_FIXTURE_BEST_WRITE_SECONDS", 0.0)

SAMPLE_TEXT = "안녕하세요, 이것은 학습 중 생성된 샘플입니다."
FALLBACK_REF_AUDIO = "/mnt/sdc1/ws/workspace/monorepo/external/index-tts/examples/voice_01.wav"

# ----------------------------------------------------------------------------------------------
# Command line (names, types, defaults, required and choices as in the real trainer)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Finetune IndexTTS2 GPT on Japanese data.")
    add = p.add_argument
    add("--train-manifest", dest="train_manifests", action="append", type=str, required=True,
        help="training manifest (JSONL), repeatable; optional ::lang suffix")
    add("--val-manifest", dest="val_manifests", action="append", type=str, required=True,
        help="validation manifest (JSONL), repeatable; optional ::lang suffix")
    add("--tokenizer", type=Path, required=True, help="SentencePiece model")
    add("--base-tokenizer", type=Path, default=None, help="tokenizer of the base checkpoint")
    add("--config", type=Path, default=Path("checkpoints/config.yaml"), help="model config")
    add("--base-checkpoint", type=Path, default=Path("checkpoints/gpt.pth"), help="base GPT checkpoint")
    add("--output-dir", type=Path, default=Path("trained_ckpts"), help="checkpoints and logs")
    add("--batch-size", type=int, default=4)
    add("--grad-accumulation", type=int, default=1)
    add("--epochs", type=int, default=10)
    add("--learning-rate", type=float, default=1e-5)
    add("--weight-decay", type=float, default=0.01)
    add("--warmup-steps", type=int, default=1000)
    add("--max-steps", type=int, default=0, help="0 = run --epochs epochs")
    add("--log-interval", type=int, default=100)
    add("--val-interval", type=int, default=100, help="0 = at each epoch's end")
    add("--num-workers", type=int, default=0)
    add("--grad-clip", type=float, default=1.0)
    add("--text-loss-weight", type=float, default=0.2)
    add("--mel-loss-weight", type=float, default=0.8)
    add("--amp", action="store_true")
    add("--resume", type=str, default="", help="checkpoint path, 'auto' or empty")
    add("--seed", type=int, default=1234)
    add("--optimizer", type=str, default="adamw", choices=["adamw", "prodigy", "mars", "schedulefree"])
    add("--adamw-no-fused", action="store_true")
    add("--scheduler", type=str, default="wsd", choices=["cosine", "wsd", "none"])
    add("--wsd-stable-ratio", type=float, default=0.9)
    add("--wsd-min-lr-ratio", type=float, default=0.0)
    add("--cpu-ckpt-load", action="store_true")
    add("--clipaware-enable", dest="clipaware_enable", action="store_true", default=False)
    add("--clipaware-disable", dest="clipaware_enable", action="store_false")
    add("--clipaware-window", type=int, default=1000)
    add("--clipaware-threshold", type=float, default=0.5)
    add("--clipaware-decay", type=float, default=0.5)
    add("--clipaware-min-lr", type=float, default=1e-6)
    add("--clipaware-cooldown", type=int, default=500)
    add("--duration-conditioning", type=str, default="binary", choices=["binary", "length"])
    add("--aim-experiment", type=str, default="indextts-korean")
    add("--aim-run-name", type=str, default=None)
    add("--aim-repo", type=str, default=".aim")
    add("--no-aim", action="store_true")
    add("--enable-grl", action="store_true")
    add("--speaker-mapping", type=Path, default=None)
    add("--grl-lambda", type=float, default=1.0)
    add("--speaker-loss-weight", type=float, default=0.1)
    add("--grl-schedule", type=str, default="exponential", choices=["constant", "linear", "exponential"])
    add("--enable-stage2-realtime-emo", action="store_true")
    add("--freeze-conditioners", action="store_true")
    return p.parse_args()


# ----------------------------------------------------------------------------------------------
# Deterministic "training" values


def train_values(step: int):
    text = 0.9 + 1.6 * math.exp(-step / 50.0)
    mel = 3.5 + 2.4 * math.exp(-step / 80.0)
    top1 = 0.05 + 0.12 * (1.0 - math.exp(-step / 60.0))
    return text, mel, top1


def val_values(step: int):
    text, mel, top1 = train_values(step)
    return text + 0.05, mel + 0.1, top1 - 0.01


def grad_norm_at(step: int) -> float:
    return 0.5 + 3.5 * math.exp(-step / 40.0)


# ----------------------------------------------------------------------------------------------
# Manifests


@dataclass
class ManifestSpec:
    path: Path
    language: Optional[str] = None


def parse_manifest_specs(entries: Sequence[str], flag_name: str) -> List[ManifestSpec]:
    if not entries:
        raise ValueError(f"{flag_name} requires at least one manifest path.")
    specs = []
    for entry in entries:
        text = entry.strip()
        language = None
        for sep in ("::", "@", "="):
            if sep in text:
                head, tail = text.rsplit(sep, 1)
                text = head.strip()
                language = tail.strip().lower() or None
                break
        specs.append(ManifestSpec(path=Path(text).expanduser(), language=language))
    return specs


def _lang(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    value = value.strip()
    return value.lower() if value else None


def _check_path(base: Path, value: str) -> Path:
    if not value:
        raise ValueError("Empty path provided in manifest record.")
    p = Path(value)
    return p if p.is_absolute() else (base / p).expanduser()


class ManifestDataset(Dataset):
    """Reads the manifests like the real dataset; an item is just its index."""

    def __init__(self, specs: Sequence[ManifestSpec]):
        specs = list(specs)
        if not specs:
            raise ValueError("No manifest paths supplied.")
        self.count = 0
        self.kind = "unknown"
        self.summaries: List[Dict[str, object]] = []
        for spec in specs:
            self._read(spec)
        if not self.count:
            names = ", ".join(str(s.path) for s in specs)
            raise RuntimeError(f"No entries found in the provided manifests: {names}")
        if self.kind != "paired":
            raise RuntimeError(
                "The GPT trainer expects prompt/target pair manifests.\n"
                "Generate paired manifests with tools/build_gpt_prompt_pairs.py and retry."
            )

    def _read(self, spec: ManifestSpec) -> None:
        path = spec.path
        if not path.exists():
            raise FileNotFoundError(f"Manifest not found: {path}")
        print(f"[Info] Parsing manifest {path} ...")
        base = path.parent
        seen = kept = 0
        kind: Optional[str] = None
        languages = set()
        with path.open("r", encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                rec = json.loads(line)
                seen += 1
                if "prompt_condition_path" in rec and "target_codes_path" in rec:
                    emo = rec.get("prompt_emo_vec_path") or rec.get("target_emo_vec_path")
                    if not emo:
                        raise RuntimeError(f"Paired manifest entry {rec.get('id')} missing prompt_emo_vec_path.")
                    language = _lang(rec.get("target_language") or rec.get("language") or spec.language)
                    prompt_language = _lang(rec.get("prompt_language") or spec.language)
                    _ = rec["id"]
                    _check_path(base, rec["target_text_ids_path"])
                    _check_path(base, rec["target_codes_path"])
                    _check_path(base, rec["prompt_condition_path"])
                    _check_path(base, emo)
                    int(rec["target_text_len"]), int(rec["target_code_len"])
                    int(rec.get("prompt_condition_len", 32))
                    this_kind = "paired"
                else:
                    language = _lang(rec.get("language") or spec.language)
                    prompt_language = None
                    _ = rec["id"]
                    for key in ("text_ids_path", "codes_path", "condition_path", "emo_vec_path"):
                        _check_path(base, rec[key])
                    int(rec["text_len"]), int(rec["code_len"]), int(rec.get("condition_len", 32))
                    this_kind = "single"
                if kind is None:
                    kind = this_kind
                elif kind != this_kind:
                    raise RuntimeError(f"Manifest {path} mixes sample types ({kind} vs {this_kind}).")
                kept += 1
                self.count += 1
                for value in (language, prompt_language):
                    if value:
                        languages.add(value)
                if seen % 10000 == 0:
                    print(f"  • processed {seen:,} entries (kept {kept:,}) in {path.name}")
        if not kept:
            return
        if seen % 10000 != 0:
            print(f"  • processed {seen:,} entries (kept {kept:,}) in {path.name}")
        if kind and kind != "paired":
            raise RuntimeError(
                f"Manifest {path} contains '{kind}' entries. "
                "This trainer expects prompt/target pair manifests (see tools/build_gpt_prompt_pairs.py)."
            )
        if self.kind == "unknown":
            self.kind = kind or "unknown"
        elif kind and self.kind != kind:
            raise RuntimeError(f"Mixed sample types encountered across manifests: {self.kind} vs {kind} (from {path})")
        shown = sorted(languages)
        if not shown and spec.language:
            shown = [spec.language]
        print(f"[Info] Loaded {kept} samples ({kind}) from {path} (languages: {', '.join(shown) if shown else 'unspecified'})")
        self.summaries.append({"path": path, "count": kept, "languages": shown})

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, idx: int) -> int:
        return idx


def collate_indices(items: List[int]) -> torch.Tensor:
    return torch.tensor(items, dtype=torch.long)


def make_loader(dataset: Dataset, args: argparse.Namespace, shuffle: bool) -> DataLoader:
    kwargs = {"persistent_workers": args.num_workers > 0, "prefetch_factor": 2, "multiprocessing_context": "fork"}
    if args.num_workers == 0:
        # torch >= 2.0 refuses prefetch_factor without workers (1.x only refused a non-default one).
        raise ValueError("prefetch_factor option could only be specified in multiprocessing."
                         "let num_workers > 0 to enable multiprocessing, otherwise set prefetch_factor to None.")
    return DataLoader(dataset, batch_size=args.batch_size, shuffle=shuffle, num_workers=args.num_workers,
                      collate_fn=collate_indices, pin_memory=False, **kwargs)


# ----------------------------------------------------------------------------------------------
# The stand-in model, schedules, checkpoints

PAD_KEY = "_orig_mod.fixture_pad"


class TinyGPT(nn.Module):
    def __init__(self, pad_bytes: int):
        super().__init__()
        self.text_head = nn.Linear(16, 32)
        self.mel_head = nn.Linear(32, 16)
        if pad_bytes > 0:  # TTS_FIXTURE_SAVE_PAD_BYTES
            self.register_buffer("fixture_pad", torch.zeros(pad_bytes, dtype=torch.uint8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mel_head(torch.tanh(self.text_head(x)))


class CompiledStandIn(nn.Module):
    """Holds the model under `_orig_mod`, as torch.compile's wrapper does (same state-dict keys)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self._orig_mod = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._orig_mod(x)


def _wsd_factor(step: int, *, warmup: int, stable: int, decay: int, min_ratio: float, cycles: float) -> float:
    # transformers 4.52.1 get_wsd_schedule with warmup_type="linear", decay_type="cosine"
    if step < warmup:
        return max(0.0, (float(step) / float(max(1, warmup))) * (1.0 - min_ratio) + min_ratio)
    if step < warmup + stable:
        return 1.0
    if step < warmup + stable + decay:
        progress = float(step - warmup - stable) / float(max(1, decay))
        value = 0.5 * (1.0 + math.cos(math.pi * float(cycles) * 2.0 * progress))
        return max(0.0, value * (1.0 - min_ratio) + min_ratio)
    return min_ratio


def _cosine_factor(step: int, *, warmup: int, total: int, cycles: float) -> float:
    # transformers 4.52.1 get_cosine_schedule_with_warmup
    if step < warmup:
        return float(step) / float(max(1, warmup))
    progress = float(step - warmup) / float(max(1, total - warmup))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(cycles) * 2.0 * progress)))


class ClipRateLR:
    """The real --clipaware-enable controller: halve the LR when clipping is frequent."""

    def __init__(self, optimizer, scheduler, window, threshold, decay, min_lr, cooldown):
        self.optimizer, self.scheduler = optimizer, scheduler
        self.window, self.threshold, self.decay = max(1, window), threshold, decay
        self.min_lr, self.cooldown = min_lr, cooldown
        self.flags: List[bool] = []
        self.last_decay = -cooldown
        self.count = 0

    def record(self, clipped: bool) -> None:
        self.flags.append(bool(clipped))
        if len(self.flags) > self.window:
            del self.flags[0]
        self.count += 1

    def maybe_decay(self):
        if len(self.flags) < self.window or self.count - self.last_decay < self.cooldown:
            return None
        if sum(self.flags) / float(len(self.flags)) < self.threshold:
            return None
        for i, group in enumerate(self.optimizer.param_groups):
            group["lr"] = max(self.min_lr, group.get("lr", 0.0) * self.decay)
            if self.scheduler is not None and hasattr(self.scheduler, "base_lrs") and i < len(self.scheduler.base_lrs):
                self.scheduler.base_lrs[i] = group["lr"]
        self.last_decay = self.count
        return True


def save_in_background(state: dict, path: Path, previous: Optional[Thread]) -> Thread:
    if previous is not None and previous.is_alive():
        previous.join()

    def work():
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)

    thread = Thread(target=work, daemon=True)
    thread.start()
    return thread


def save_best(state: dict, path: Path) -> None:
    if BEST_WRITE_SECONDS <= 0:
        torch.save(state, path)
        return
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 2])
        fh.flush()
        time.sleep(BEST_WRITE_SECONDS)
        fh.write(data[len(data) // 2:])


def out_of_memory(batch_size: int) -> BaseException:
    cls = getattr(torch, "OutOfMemoryError", None)
    if cls is None:  # torch < 2.5 names it torch.cuda.OutOfMemoryError; print it as torch 2.5+ does
        cls = type("OutOfMemoryError", (RuntimeError,), {"__module__": "torch"})
    gib = 0.25 * batch_size
    return cls(
        f"CUDA out of memory. Tried to allocate {gib:.2f} GiB. GPU 0 has a total capacity of 23.65 GiB of which "
        "1.12 GiB is free. Including non-PyTorch memory, this process has 22.51 GiB memory in use. Of the "
        "allocated memory 20.91 GiB is allocated by PyTorch, and 1.15 GiB is reserved by PyTorch but unallocated. "
        "If reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True "
        "to avoid fragmentation.  See documentation for Memory Management  "
        "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"
    )


def align_prefix(model: nn.Module, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    want = any(k.startswith("_orig_mod.") for k in model.state_dict().keys())
    have = any(k.startswith("_orig_mod.") for k in state.keys())
    if want and not have:
        print("[Info] Compiled model detected; adding _orig_mod. prefix to checkpoint keys")
        return {f"_orig_mod.{k}": v for k, v in state.items()}
    if have and not want:
        print("[Info] Non-compiled model detected; stripping _orig_mod. prefix from checkpoint keys")
        return {k.replace("_orig_mod.", ""): v for k, v in state.items()}
    return state


def start_sample_inference(output_dir: Path, ref_audio: Path, sample_out: Path) -> None:
    script = Path(__file__).resolve().parent.parent / "tools/infer_cpu_sample.py"
    subprocess.Popen(
        ["python", str(script), "--ckpt", str(output_dir / "best_model.pth"), "--text", SAMPLE_TEXT,
         "--ref-audio", str(ref_audio), "--output", str(sample_out)],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )


# ----------------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    device = torch.device("cpu")

    output_dir = args.output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "logs").mkdir(parents=True, exist_ok=True)
    run_name = os.environ.get("INDEXTTS_RUN_NAME")
    if run_name is None:
        run_name = "run_" + datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
    log_dir = output_dir / "logs" / run_name
    log_dir.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(log_dir=str(log_dir))

    if SPAWN_CHILDREN > 0:
        kids = [subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(60)"])
                for _ in range(SPAWN_CHILDREN)]
        (output_dir / "children.pids").write_text("".join(f"{k.pid}\n" for k in kids))

    print("[Info] Aim not available. Install with: pip install aim")

    if args.enable_grl and args.speaker_mapping:
        if not args.speaker_mapping.exists():
            raise FileNotFoundError(f"Speaker mapping not found: {args.speaker_mapping}")
        with open(args.speaker_mapping, "r", encoding="utf-8") as fh:
            speakers = json.load(fh)
        print(f"[Stage 2] Loaded speaker mapping: {len(speakers)} speakers")

    # Tokenizer, config, base checkpoint: same checks and exceptions, nothing parsed.
    if not os.path.exists(str(args.tokenizer)):
        raise ValueError(f"vocab_file {args.tokenizer} does not exist")
    open(os.path.abspath(args.config), "r", encoding="utf-8").close()
    open(args.base_checkpoint, "rb").close()
    if args.base_tokenizer and not args.base_tokenizer.exists():
        raise FileNotFoundError(f"Base tokenizer not found: {args.base_tokenizer}")
    model = CompiledStandIn(TinyGPT(SAVE_PAD_BYTES)).to(device)

    print("[Info] Compiling model with torch.compile (reduce-overhead mode)...")
    print("[Info] Model compilation complete - expect 15-30% speed boost")
    if args.freeze_conditioners:
        print("[Stage 3] Freezing feature conditioners...")
        n = sum(p.numel() for p in model.parameters())
        print(f"[Stage 3] Trainable parameters: {n:,} / {n:,} (100.0%)")

    train_specs = parse_manifest_specs(args.train_manifests, "--train-manifest")
    val_specs = parse_manifest_specs(args.val_manifests, "--val-manifest")
    print("[Info] Loading training manifests...")
    train_set = ManifestDataset(train_specs)
    print("[Info] Loading validation manifests...")
    val_set = ManifestDataset(val_specs)
    manifests = {
        part: [{"path": str(s["path"]), "count": s["count"], "languages": list(s["languages"])} for s in ds.summaries]
        for part, ds in (("train", train_set), ("val", val_set))
    }

    train_loader = make_loader(train_set, args, shuffle=True)
    val_loader = make_loader(val_set, args, shuffle=False)

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
            _wsd_factor, warmup=args.warmup_steps, stable=stable, decay=decay,
            min_ratio=args.wsd_min_lr_ratio, cycles=0.5))
    elif args.scheduler == "cosine":
        print("[Info] Using Cosine Scheduler")
        scheduler = LambdaLR(optimizer, functools.partial(
            _cosine_factor, warmup=args.warmup_steps, total=total_steps, cycles=0.5))
    scaler = None  # AMP only on CUDA

    global_step = 0
    start_epoch = 0
    last_saved_step: Optional[int] = None
    light_thread: Optional[Thread] = None
    full_thread: Optional[Thread] = None
    last_train_text = last_train_mel = last_val_text = last_val_mel = None

    raw = (args.resume or "").strip()
    resume_path: Optional[str] = None
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
        ckpt = torch.load(resume_path, map_location=map_loc)
        weights = dict(align_prefix(model, ckpt["model"]))
        weights.pop(PAD_KEY, None)  # keep this run's padding, whatever the file's
        if SAVE_PAD_BYTES > 0:
            weights[PAD_KEY] = model._orig_mod.fixture_pad
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
        print(f"[Info] Resumed from {resume_path} at epoch {start_epoch}, step {global_step}.")

    model.train()
    optimizer.zero_grad(set_to_none=True)
    best_val = math.inf
    last_log_step = global_step
    last_log_time = time.time()
    clip_rate = None
    if args.clipaware_enable:
        clip_rate = ClipRateLR(optimizer, scheduler, args.clipaware_window, args.clipaware_threshold,
                               args.clipaware_decay, args.clipaware_min_lr, args.clipaware_cooldown)
    data_time = compute_time = 0.0
    batch_start = time.time()
    oom_pending = OOM_AT_BATCH > 0 and args.batch_size >= OOM_AT_BATCH

    if args.val_interval > 0 and global_step > 0:
        print("[Info] Skipping startup validation; will evaluate after next training interval.")

    def state(full: bool, epoch_idx: int, train_text, train_mel, val_text, val_mel) -> dict:
        s = {"model": model.state_dict()}
        if full:
            s.update({"optimizer": optimizer.state_dict(), "optimizer_type": args.optimizer,
                      "scheduler": scheduler.state_dict() if scheduler else None,
                      "scaler": scaler.state_dict() if scaler else None})
        s.update({"epoch": epoch_idx, "step": global_step, "recent_checkpoints": [], "manifests": manifests,
                  "train_text_loss": train_text, "train_mel_loss": train_mel,
                  "val_text_loss": val_text, "val_mel_loss": val_mel})
        return s

    def validate(epoch_idx: int) -> Dict[str, float]:
        started = time.time()
        model.eval()
        with torch.no_grad():
            for i, batch in enumerate(val_loader):
                if i >= 50:
                    break
                model(torch.ones(len(batch), 16))
        model.train()
        vt, vm, va = val_values(global_step)
        minutes = (time.time() - started) / 60
        for tag, value in (("val/text_loss", vt), ("val/mel_loss", vm), ("val/mel_top1", va),
                           ("val/time_minutes", minutes)):
            writer.add_scalar(tag, value, global_step)
        print(f"[Val] epoch={epoch_idx + 1} step={global_step} text_loss={vt:.4f} mel_loss={vm:.4f} "
              f"mel_top1={va:.4f} | val_time={minutes:.2f}min")
        return {"text_loss": vt, "mel_loss": vm}

    for epoch in range(start_epoch, args.epochs):
        for batch_idx, batch in enumerate(train_loader):
            now = time.time()
            data_time = now - batch_start
            compute_start = now
            step_of_batch = global_step + 1
            if oom_pending and (OOM_AT_STEP <= 0 or step_of_batch == OOM_AT_STEP):
                raise out_of_memory(args.batch_size)
            text_v, mel_v, top1 = train_values(step_of_batch)
            if step_of_batch == NAN_AT_STEP:
                mel_v = float("nan")
            last_train_text, last_train_mel = text_v, mel_v
            x = torch.full((len(batch), 16), 0.01) * (batch.float().unsqueeze(1) % 7 + 1)
            (model(x).pow(2).mean() / args.grad_accumulation).backward()

            if (batch_idx + 1) % args.grad_accumulation != 0:
                continue
            total_norm = grad_norm_at(step_of_batch)
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
            if STEP_SECONDS > 0:
                time.sleep(STEP_SECONDS)
            compute_time = time.time() - compute_start
            global_step += 1

            if global_step % args.log_interval == 0:
                now = time.time()
                steps = global_step - last_log_step
                elapsed = now - last_log_time
                current_lr = optimizer.param_groups[0].get("lr", 0.0)
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
                    ("train/text_loss", text_v), ("train/mel_loss", mel_v), ("train/mel_top1", top1),
                    ("train/lr", current_lr), ("train/lr_effective", current_lr),
                    ("train/steps_per_min", steps_per_min), ("train/samples_per_sec", samples_per_sec),
                    ("train/time_per_step", time_per_step), ("train/gradient_norm_preclip", total_norm),
                    ("train/gradient_norm_clipped", clipped_norm), ("train/data_load_time_ms", data_time * 1000),
                    ("train/compute_time_ms", compute_time * 1000), ("train/gpu_memory_allocated_gb", 0),
                    ("train/gpu_memory_reserved_gb", 0), ("train/gpu_utilization_pct", 0),
                ):
                    writer.add_scalar(tag, value, global_step)
                ratio = data_time / (data_time + compute_time) if (data_time + compute_time) > 0 else 0
                print(f"[Train] epoch={epoch + 1} step={global_step} text_loss={text_v:.4f} mel_loss={mel_v:.4f} "
                      f"mel_top1={top1:.4f} lr={current_lr:.2e} | {steps_per_min:.1f}steps/min "
                      f"{samples_per_sec:.1f}samples/s {time_per_step:.2f}s/step ETA:{eta_hours:.1f}h | "
                      f"grad_norm={total_norm:.2f} (clipped {clipped_norm:.2f}) lr_eff={current_lr:.3e} "
                      f"GPU={0:.1f}GB data={ratio*100:.1f}%")
                last_log_step, last_log_time = global_step, now

            if args.val_interval > 0 and global_step > 0 and global_step % args.val_interval == 0:
                metrics = validate(epoch)
                last_val_text, last_val_mel = metrics["text_loss"], metrics["mel_loss"]
                if metrics["text_loss"] < best_val:
                    best_val = metrics["text_loss"]
                    print(f"[Info] New best validation text_loss: {best_val:.4f}. Saving best_model.pth...")
                    save_best(state(True, epoch, text_v, mel_v, metrics["text_loss"], metrics["mel_loss"]),
                              output_dir / "best_model.pth")
                    ref_audio = Path(args.output_dir).parent.parent / "examples/voice_01.wav"
                    if not ref_audio.exists():
                        ref_audio = Path(FALLBACK_REF_AUDIO)
                    sample_out = output_dir / f"best_val_{best_val:.4f}.wav"
                    print(f"[Info] Triggering CPU inference for sample: {sample_out}")
                    start_sample_inference(output_dir, ref_audio, sample_out)

            if global_step % LIGHT_EVERY == 0:
                light_thread = save_in_background(
                    state(False, epoch, last_train_text, last_train_mel, last_val_text, last_val_mel),
                    output_dir / "latest.pth", light_thread)
                last_saved_step = global_step
            if global_step % FULL_EVERY == 0:
                full_thread = save_in_background(
                    state(True, epoch, last_train_text, last_train_mel, last_val_text, last_val_mel),
                    output_dir / "latest_full.pth", full_thread)

            if HANG_AT_STEP and global_step == HANG_AT_STEP:
                while True:
                    time.sleep(60)

            batch_start = time.time()
            if args.max_steps and global_step >= args.max_steps:
                break
        if args.max_steps and global_step >= args.max_steps:
            break

        if args.val_interval == 0:
            metrics = validate(epoch)
            if metrics["text_loss"] < best_val:
                best_val = metrics["text_loss"]
                print(f"[Info] New best validation text_loss: {best_val:.4f}. Saving best_model.pth...")
                save_best(state(True, epoch, last_train_text, last_train_mel, metrics["text_loss"], metrics["mel_loss"]),
                          output_dir / "best_model.pth")
                sample_out = output_dir / f"best_val_{best_val:.4f}.wav"
                print(f"[Info] Triggering CPU inference for sample: {sample_out}")
                start_sample_inference(output_dir, Path(FALLBACK_REF_AUDIO), sample_out)

    if global_step > 0 and last_saved_step != global_step:
        light_thread = save_in_background(
            state(False, epoch, last_train_text, last_train_mel, last_val_text, last_val_mel),
            output_dir / "latest.pth", light_thread)
        full_thread = save_in_background(
            state(True, epoch, last_train_text, last_train_mel, last_val_text, last_val_mel),
            output_dir / "latest_full.pth", full_thread)
    for thread in (light_thread, full_thread):
        if thread is not None and thread.is_alive():
            thread.join()
    writer.close()
    print("Training complete.")


if __name__ == "__main__":
    main()
