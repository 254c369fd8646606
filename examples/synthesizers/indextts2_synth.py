#!/usr/bin/env python3
"""IndexTTS-2 as a `persistent` synthesizer for tts-cluster evaluations (docs/SYNTHESIZER.md).

The worker starts this once per eval shard; the model is loaded once, with the checkpoint under
evaluation swapped in as the GPT (the edu-ide/index-tts fork's `gpt_ckpt_override`), then every
utterance of the shard comes as one JSON line on stdin and is answered with one JSON line on
stdout:

    -> {"id": "u1", "text": "...", "prompt_audio": "/data/p.wav", "output": "/out/audio/u1.wav"}
    <- {"id": "u1", "ok": true, "output": "/out/audio/u1.wav", "seconds": 3.1}
    <- {"id": "u1", "ok": false, "error": "FileNotFoundError: ..."}

Only protocol lines go to stdout: everything else (IndexTTS prints a lot, and so do the
libraries it loads, some from C) is redirected to stderr, which the worker logs. End of stdin
means the shard is done: exit 0.

    python examples/synthesizers/indextts2_synth.py --checkpoint CKPT.pth \
        --model-dir /models/IndexTTS-2 [--config CFG.yaml] [--fp16] [--device cuda:0] \
        [--chdir /opt/index-tts] [--seed 1234]

Needs the fork (`pip install -e` of edu-ide/index-tts, or PYTHONPATH pointing at it) and a model
directory whose Hugging Face models are pre-staged (the constructor downloads them otherwise).
"""

import argparse
import inspect
import json
import os
import sys
import time
import traceback
import zlib

PROTOCOL_VERSION = 1
SAMPLE_RATE = 22050  # IndexTTS-2 writes 22050 Hz mono 16-bit WAV (hard-coded in infer_v2)


def protocol_stream():
    """Keeps the real stdout for protocol lines and points fd 1 and sys.stdout at stderr, so that
    prints from Python and from C libraries cannot corrupt the protocol."""
    sys.stdout.flush()
    real = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(real, "w", encoding="utf-8", buffering=1)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="the GPT checkpoint to evaluate (a training .pth)")
    p.add_argument("--model-dir", required=True, help="the IndexTTS-2 model directory (config.yaml, s2mel, bpe, ...)")
    p.add_argument("--config", help="the config (default: MODEL_DIR/config.yaml)")
    p.add_argument("--fp16", action="store_true", help="half precision on CUDA")
    p.add_argument("--device", help="cuda:0, cpu, ... (default: IndexTTS-2 picks)")
    p.add_argument("--chdir", help="directory to run in (the fork's infer_v2 sets HF_HUB_CACHE=./checkpoints/hf_cache at import)")
    p.add_argument("--seed", type=int, help="seed the RNGs before each utterance from this and the utterance id (reproducible samples)")
    p.add_argument("--max-text-tokens-per-segment", type=int, default=120)
    p.add_argument("--verbose", action="store_true", help="IndexTTS-2's verbose inference (to stderr)")
    return p.parse_args(argv)


def seed_everything(seed):
    import random
    random.seed(seed)
    try:
        import numpy
        numpy.random.seed(seed % (2 ** 32))
    except ImportError:
        pass
    try:
        import torch
        torch.manual_seed(seed)
    except ImportError:
        pass


def load(args):
    if args.chdir:
        os.chdir(args.chdir)
    from indextts.infer_v2 import IndexTTS2

    if "gpt_ckpt_override" not in inspect.signature(IndexTTS2.__init__).parameters:
        raise RuntimeError("this indextts has no IndexTTS2(gpt_ckpt_override=...): install the edu-ide/index-tts fork")
    if not os.path.isfile(args.checkpoint):
        raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
    return IndexTTS2(
        cfg_path=args.config or os.path.join(args.model_dir, "config.yaml"),
        model_dir=args.model_dir,
        use_fp16=args.fp16,
        device=args.device,
        gpt_ckpt_override=args.checkpoint,
    )


def synthesize(tts, request, args):
    uid = request.get("id")
    text = request.get("text")
    prompt = request.get("prompt_audio")
    out = request.get("output")
    if not isinstance(uid, str) or not isinstance(text, str) or not isinstance(out, str):
        raise ValueError("a request needs string id, text and output")
    if not prompt:
        raise ValueError("no prompt_audio: IndexTTS-2 clones a voice prompt (prompt_audio_path in the manifest)")
    if not os.path.isfile(prompt):
        raise FileNotFoundError(f"prompt audio not found: {prompt}")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    if os.path.exists(out):
        os.remove(out)
    if args.seed is not None:
        seed_everything((args.seed ^ zlib.crc32(uid.encode("utf-8"))) & 0x7FFFFFFF)
    tts.infer(spk_audio_prompt=prompt, text=text, output_path=out, verbose=args.verbose,
              max_text_tokens_per_segment=args.max_text_tokens_per_segment)
    if not os.path.isfile(out):
        raise RuntimeError(f"IndexTTS-2 returned without writing {out}")
    return out


def main(argv=None):
    proto = protocol_stream()
    sys.stdin.reconfigure(encoding="utf-8")

    def say(obj):
        proto.write(json.dumps(obj, ensure_ascii=False) + "\n")
        proto.flush()

    args = parse_args(argv)
    started = time.monotonic()
    try:
        tts = load(args)
    except BaseException as e:  # noqa: BLE001 - any failure to load is reported, then exit 1
        traceback.print_exc()
        say({"ready": False, "error": f"{type(e).__name__}: {e}", "version": PROTOCOL_VERSION})
        return 1
    print(f"[indextts2_synth] loaded in {time.monotonic() - started:.1f} s", file=sys.stderr)
    say({"ready": True, "sample_rate": SAMPLE_RATE, "name": "indextts2", "version": PROTOCOL_VERSION,
         "checkpoint": args.checkpoint})

    for line in iter(sys.stdin.readline, ""):
        line = line.strip()
        if not line:
            continue
        uid = None
        t0 = time.monotonic()
        try:
            request = json.loads(line)
            uid = request.get("id") if isinstance(request, dict) else None
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            out = synthesize(tts, request, args)
            say({"id": uid, "ok": True, "output": out, "seconds": round(time.monotonic() - t0, 3)})
        except Exception as e:  # noqa: BLE001 - one failed utterance must not end the shard
            traceback.print_exc()
            say({"id": uid, "ok": False, "error": f"{type(e).__name__}: {e}", "seconds": round(time.monotonic() - t0, 3)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
