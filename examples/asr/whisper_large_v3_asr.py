#!/usr/bin/env python3
"""Whisper large-v3 (faster-whisper) as a `persistent` ASR for tts-cluster evaluations (docs/ASR.md).

The worker starts this once per eval shard; the model is loaded once, then every audio file of
the shard (the synthesized audio and the test set's own audio, the ASR floor) comes as one JSON
line on stdin and is answered with one JSON line on stdout:

    -> {"id": "u1", "audio": "/runs/ko/eval-step5000/audio/u1.wav", "language": "ko"}
    <- {"id": "u1", "text": "안녕하세요.", "seconds": 0.41}
    <- {"id": "u1", "error": "RuntimeError: ..."}

Only protocol lines go to stdout: everything else (CTranslate2 and PyAV may print, some from C)
is redirected to stderr, which the worker logs. End of stdin means the shard is done: exit 0.

    python examples/asr/whisper_large_v3_asr.py --model-dir /models/faster-whisper-large-v3 \
        [--device cuda] [--device-index 0] [--compute-type float16] [--beam-size 5] [--vad]

It uses faster-whisper (CTranslate2), `pip install faster-whisper`, and never downloads: the
weights are the user's to stage, as a CTranslate2 conversion of large-v3 (for example
`huggingface-cli download Systran/faster-whisper-large-v3 --local-dir /models/faster-whisper-large-v3`),
given by --model-dir or the WHISPER_MODEL_DIR environment variable. Without the package or the
weights it answers `{"ready": false, "error": ...}` saying which, and exits 1.
"""

import argparse
import json
import os
import sys
import time
import traceback

PROTOCOL_VERSION = 1
SAMPLE_RATE = 16000  # Whisper works at 16 kHz; faster-whisper decodes and resamples any file itself
# The files a CTranslate2 conversion of large-v3 holds. preprocessor_config.json matters: it
# tells faster-whisper that large-v3 takes 128 mel bins (without it, 80, and the model hears noise).
REQUIRED_FILES = ["model.bin", "config.json", "tokenizer.json", "preprocessor_config.json"]
STAGING_HINT = ("stage a CTranslate2 conversion of Whisper large-v3 (for example `huggingface-cli download "
                "Systran/faster-whisper-large-v3 --local-dir DIR`) and pass --model-dir DIR or set WHISPER_MODEL_DIR")


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
    p.add_argument("--model-dir", default=os.environ.get("WHISPER_MODEL_DIR"),
                   help="the staged CTranslate2 large-v3 directory (default: $WHISPER_MODEL_DIR)")
    p.add_argument("--device", default="cuda", help="cuda (default), cpu or auto")
    p.add_argument("--device-index", type=int, default=0, help="the GPU to use (default 0)")
    p.add_argument("--compute-type", default="float16",
                   help="float16 (default, GPU), int8_float16 (less GPU memory), int8 or float32 (CPU)")
    p.add_argument("--cpu-threads", type=int, default=0, help="CPU threads (0: CTranslate2 decides)")
    p.add_argument("--beam-size", type=int, default=5, help="beam search width (default 5, Whisper's own)")
    p.add_argument("--language", help="override the request's language (default: the request's, ko)")
    p.add_argument("--vad", action="store_true", help="Silero VAD before decoding (off: test utterances are short)")
    p.add_argument("--initial-prompt", help="text to condition the first window on (default none)")
    args = p.parse_args(argv)
    if args.beam_size < 1:
        p.error("--beam-size must be 1 or more")
    return args


def load(args):
    if not args.model_dir:
        raise FileNotFoundError(f"no Whisper large-v3 weights given: {STAGING_HINT}")
    if not os.path.isdir(args.model_dir):
        raise FileNotFoundError(f"no Whisper large-v3 weights at {args.model_dir} (no such directory): {STAGING_HINT}")
    missing = [f for f in REQUIRED_FILES if not os.path.isfile(os.path.join(args.model_dir, f))]
    if missing:
        raise FileNotFoundError(f"{args.model_dir} is not a CTranslate2 conversion of Whisper large-v3 "
                                f"(missing {', '.join(missing)}): {STAGING_HINT}")
    try:
        from faster_whisper import WhisperModel
    except ImportError as e:
        raise ImportError(f"faster-whisper is not installed for {sys.executable} ({e}): pip install faster-whisper") from e
    return WhisperModel(args.model_dir, device=args.device, device_index=args.device_index,
                        compute_type=args.compute_type, cpu_threads=args.cpu_threads, local_files_only=True)


def transcribe(model, request, args):
    audio = request.get("audio")
    if not isinstance(audio, str) or not audio:
        raise ValueError("a request needs a string audio path")
    if not os.path.isfile(audio):
        raise FileNotFoundError(f"audio not found: {audio}")
    language = args.language or request.get("language") or "ko"
    segments, _info = model.transcribe(
        audio,
        language=language,
        task="transcribe",
        beam_size=args.beam_size,
        temperature=0.0,                   # no sampling fallback: the same audio gives the same text
        condition_on_previous_text=False,  # one utterance; no carry-over between windows
        vad_filter=args.vad,
        without_timestamps=True,
        initial_prompt=args.initial_prompt,
    )
    # The segments are a generator: decoding happens here.
    return " ".join(s.text.strip() for s in segments if s.text.strip())


def main(argv=None):
    proto = protocol_stream()
    sys.stdin.reconfigure(encoding="utf-8")

    def say(obj):
        proto.write(json.dumps(obj, ensure_ascii=False) + "\n")
        proto.flush()

    args = parse_args(argv)
    started = time.monotonic()
    try:
        model = load(args)
    except BaseException as e:  # noqa: BLE001 - any failure to load is reported, then exit 1
        traceback.print_exc()
        say({"ready": False, "error": f"{type(e).__name__}: {e}", "version": PROTOCOL_VERSION})
        return 1
    print(f"[whisper_large_v3_asr] loaded {args.model_dir} in {time.monotonic() - started:.1f} s", file=sys.stderr)
    say({"ready": True, "sample_rate": SAMPLE_RATE, "name": "whisper-large-v3 (faster-whisper)", "version": PROTOCOL_VERSION})

    for line in iter(sys.stdin.readline, ""):
        line = line.strip()
        if not line:
            continue
        uid = None
        t0 = time.monotonic()
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            uid = request.get("id")
            text = transcribe(model, request, args)
            say({"id": uid, "text": text, "seconds": round(time.monotonic() - t0, 3)})
        except Exception as e:  # noqa: BLE001 - one bad file must not end the shard
            traceback.print_exc()
            say({"id": uid, "error": f"{type(e).__name__}: {e}", "seconds": round(time.monotonic() - t0, 3)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
