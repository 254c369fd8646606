"""Stand-in for the `faster_whisper` package (faster-whisper 1.x), for tests of
examples/asr/whisper_large_v3_asr.py without Whisper weights. Used by
Tests/WorkerTests/PersistentASRTests and Tests/IntegrationTests/EvaluationTests.

The import surface the example uses, with the same keywords: `WhisperModel(model_size_or_path,
device, device_index, compute_type, cpu_threads, num_workers, download_root, local_files_only)`
and `WhisperModel.transcribe(audio, language, task, beam_size, ...)` returning a lazy generator
of `Segment`s (text with a leading space, as the real one gives) and a `TranscriptionInfo`.
Unknown keywords raise TypeError, as they would with the real package.

- The model directory must hold `model.bin` (CTranslate2 says "Unable to open file 'model.bin'"
  otherwise); a path that is not a directory with `local_files_only=False` would be downloaded
  from the Hub: that raises here, so the example must never ask for it.
- Each construction ("model load") appends `PID MODEL_DIR` to the file named by `STANDIN_LOADS`,
  then sleeps `STANDIN_LOAD_SECONDS` (default 0), and chatters on stdout (from Python and
  straight to fd 1), which the ASR must keep off its protocol stream.
- "Recognition": the audio must be a readable WAV (Python's `wave`); the transcript is the text of
  `AUDIO.txt` beside it, one segment per line. `PID AUDIO LANGUAGE BEAM` is appended to
  `STANDIN_CALLS`. A transcript containing `FAIL` raises, `HANG` sleeps for an hour, `CRASH` ends
  the process with status 3 (`os._exit`).
"""

import os
import sys
import time
import wave
from dataclasses import dataclass

__version__ = "1.0.3+standin"


def _append(var, text):
    path = os.environ.get(var)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text + "\n")


@dataclass
class Segment:
    id: int
    start: float
    end: float
    text: str


@dataclass
class TranscriptionInfo:
    language: str
    language_probability: float
    duration: float


class WhisperModel:
    def __init__(self, model_size_or_path, device="auto", device_index=0, compute_type="default", cpu_threads=0,
                 num_workers=1, download_root=None, local_files_only=False, files=None, **model_kwargs):
        _append("STANDIN_LOADS", f"{os.getpid()} {model_size_or_path}")
        if not os.path.isdir(model_size_or_path):
            if not local_files_only:
                raise RuntimeError(f"stand-in: would download {model_size_or_path!r} from the Hugging Face Hub")
            raise RuntimeError(f"Unable to open file 'model.bin' in model '{model_size_or_path}'")
        if not os.path.isfile(os.path.join(model_size_or_path, "model.bin")):
            raise RuntimeError(f"Unable to open file 'model.bin' in model '{model_size_or_path}'")
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"unsupported device {device}")
        print(f"[standin] loading {model_size_or_path} on {device}:{device_index} ({compute_type})")
        os.write(1, b"ctranslate2 chatter on fd 1\n")
        time.sleep(float(os.environ.get("STANDIN_LOAD_SECONDS", "0")))
        self.model_dir = model_size_or_path

    def transcribe(self, audio, language=None, task="transcribe", log_progress=False, beam_size=5, best_of=5, patience=1,
                   length_penalty=1, repetition_penalty=1, no_repeat_ngram_size=0,
                   temperature=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), compression_ratio_threshold=2.4, log_prob_threshold=-1.0,
                   no_speech_threshold=0.6, condition_on_previous_text=True, prompt_reset_on_temperature=0.5,
                   initial_prompt=None, prefix=None, suppress_blank=True, suppress_tokens=(-1,), without_timestamps=False,
                   max_initial_timestamp=1.0, word_timestamps=False, vad_filter=False, vad_parameters=None,
                   max_new_tokens=None, chunk_length=None, hotwords=None):
        if task != "transcribe":
            raise ValueError(f"stand-in: task {task!r}")
        with wave.open(audio, "rb") as w:  # a missing or broken file raises, as PyAV would
            duration = w.getnframes() / float(w.getframerate())
        with open(audio + ".txt", encoding="utf-8") as f:
            lines = [l.strip() for l in f.read().splitlines() if l.strip()]
        _append("STANDIN_CALLS", f"{os.getpid()} {audio} {language} {beam_size}")
        heard = " ".join(lines)
        if "FAIL" in heard:
            raise RuntimeError(f"stand-in failure on {audio}")
        if "HANG" in heard:
            time.sleep(3600)
        if "CRASH" in heard:
            sys.stderr.write("stand-in crashing\n")
            sys.stderr.flush()
            os._exit(3)

        def segments():
            for i, line in enumerate(lines):
                yield Segment(id=i + 1, start=0.0, end=duration, text=" " + line)

        return segments(), TranscriptionInfo(language=language or "ko", language_probability=1.0, duration=duration)
