#!/usr/bin/env python3
"""Test fixture: stand-in for IndexTTS-2's tools/infer_cpu_sample.py (the sample-inference child).

Mirrors edu-ide/index-tts at commit 7de3cca, where trainers/train_gpt_v2.py (last changed in
433a0ae) starts `python tools/infer_cpu_sample.py --ckpt best_model.pth --text ... --ref-audio ...
--output best_val_<loss>.wav` after every new best validation. Independent code: same arguments
(all four required), same "[InferCPU] ..." stdout lines, exit 0 and a WAV at --output on success.

Deviations: no model is loaded and nothing is synthesised (standard library only, starts in
milliseconds instead of minutes and GBs of RAM); the audio is a short 16-bit mono PCM sine
(22050 Hz, 0.5 s); a missing --ref-audio only prints the real warning (the real inference would
then fail); a missing --ckpt fails like the real one (error line, exit 1, no WAV).

Fixture-only knob: TTS_FIXTURE_INFER_SECONDS (default 0.5) — how long "inference" takes.
"""
import argparse
import math
import os
import struct
import sys
import time
import wave


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt", type=str, required=True, help="GPT checkpoint")
    parser.add_argument("--text", type=str, required=True, help="text to synthesise")
    parser.add_argument("--ref-audio", type=str, required=True, help="reference audio")
    parser.add_argument("--output", type=str, required=True, help="output wav")
    args = parser.parse_args()

    print(f"[InferCPU] Loading model from {args.ckpt} on CPU...")
    if not os.path.exists(args.ckpt):
        print(f"[InferCPU] Error: [Errno 2] No such file or directory: '{args.ckpt}'")
        sys.exit(1)
    print(f"[InferCPU] Synthesizing: {args.text}")
    if not os.path.exists(args.ref_audio):
        print(f"[InferCPU] Warning: Reference audio {args.ref_audio} not found.")
    time.sleep(float(os.environ.get("TTS_FIXTURE_INFER_SECONDS", "").strip() or 0.5))

    rate, seconds, freq = 22050, 0.5, 440.0
    frames = b"".join(struct.pack("<h", int(0.3 * 32767 * math.sin(2 * math.pi * freq * i / rate)))
                      for i in range(int(rate * seconds)))
    with wave.open(args.output, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    print(f"[InferCPU] Saved sample to {args.output}")


if __name__ == "__main__":
    main()
