"""Stand-in for `indextts.infer_v2` (edu-ide/index-tts fork): the same `IndexTTS2` constructor
keywords and `infer(...)` signature, no model. Used by Tests/WorkerTests/PersistentSynthesizerTests.

- Each construction ("model load") appends `PID CHECKPOINT` to the file named by
  `STANDIN_LOADS`, then sleeps `STANDIN_LOAD_SECONDS` (default 0).
- `infer` writes a short 22050 Hz mono 16-bit sine WAV with Python's `wave` and appends
  `PID TEXT` to `STANDIN_CALLS` (if set). Text containing `FAIL` raises, `HANG` sleeps for an
  hour, `CRASH` ends the process with status 3 (`os._exit`).
- `STANDIN_CHILD_PIDS`: when set, the load starts a `sleep 300` child (same process group, like a
  data-loader worker) and appends its pid to that file.
- Like the real thing it chatters on stdout, from Python and straight to fd 1, which the
  synthesizer must keep off its protocol stream.
"""

import math
import os
import struct
import subprocess
import sys
import time
import wave

SAMPLE_RATE = 22050


def _append(var, text):
    path = os.environ.get(var)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text + "\n")


class IndexTTS2:
    def __init__(self, cfg_path="checkpoints/config.yaml", model_dir="checkpoints", use_fp16=False, device=None,
                 use_cuda_kernel=None, use_deepspeed=False, use_accel=False, use_torch_compile=False,
                 gpt_ckpt_override=None):
        _append("STANDIN_LOADS", f"{os.getpid()} {gpt_ckpt_override}")
        if gpt_ckpt_override and not os.path.exists(gpt_ckpt_override):
            raise FileNotFoundError(f"Specified gpt checkpoint not found: {gpt_ckpt_override}")
        if not os.path.isfile(cfg_path):
            raise FileNotFoundError(f"config not found: {cfg_path}")
        print(">> GPT weights restored from:", gpt_ckpt_override)
        os.write(1, b"native library chatter on fd 1\n")
        if os.environ.get("STANDIN_CHILD_PIDS"):
            child = subprocess.Popen(["sleep", "300"])
            _append("STANDIN_CHILD_PIDS", str(child.pid))
        time.sleep(float(os.environ.get("STANDIN_LOAD_SECONDS", "0")))
        self.cfg_path = cfg_path
        self.model_dir = model_dir
        self.use_fp16 = use_fp16
        self.device = device or "cpu"
        self.gpt_path = gpt_ckpt_override

    def infer(self, spk_audio_prompt, text, output_path, emo_audio_prompt=None, emo_alpha=1.0, emo_vector=None,
              use_emo_text=False, emo_text=None, use_random=False, interval_silence=200, verbose=False,
              max_text_tokens_per_segment=120, stream_return=False, more_segment_before=0, **generation_kwargs):
        print(">> starting inference...")
        _append("STANDIN_CALLS", f"{os.getpid()} {text}")
        if "FAIL" in text:
            raise RuntimeError(f"stand-in failure for {text!r}")
        if "HANG" in text:
            time.sleep(3600)
        if "CRASH" in text:
            sys.stderr.write("stand-in crashing\n")
            sys.stderr.flush()
            os._exit(3)
        with wave.open(spk_audio_prompt, "rb") as prompt:  # a missing or broken prompt raises, as in librosa
            prompt.getnframes()
        seconds = 0.4 + 0.05 * len(text)
        frequency = 220.0 + 20.0 * (len(text) % 20)
        frames = b"".join(
            struct.pack("<h", int(12000 * math.sin(2 * math.pi * frequency * i / SAMPLE_RATE)))
            for i in range(int(seconds * SAMPLE_RATE)))
        with wave.open(output_path, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(frames)
        return output_path
