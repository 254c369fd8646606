"""Resemblyzer oracle for SpeakerEncoderTests.swift (run with the venv of speaker_env.sh).

    speaker_embed_oracle.py OUT_DIR WAV [WAV ...]

For each 16 kHz mono WAV (read with soundfile as float32, i.e. libsndfile's int16 / 32768, as the
worker's AudioFile reads it):

* ``preprocess_wav(wav)`` (volume normalisation to -30 dBFS, increase only, then webrtcvad
  trimming of long silences) is written to OUT_DIR/<stem>.pre.f32 (raw float32, little endian);
* ``embedding``: ``VoiceEncoder().embed_utterance(preprocess_wav(wav))``, the reference SIM
  embedding;
* ``normalized_embedding``: ``embed_utterance(normalize_volume(wav, -30, increase_only=True))``,
  what the exported module computes from the untrimmed samples (no VAD).

Writes one JSON object to stdout: {"results": [{"wav", "preprocessed", "preprocessed_samples",
"embedding", "normalized_embedding"}, ...]}, floats as repr() strings (exact round trip).
"""
import json
import os
import sys

import numpy as np
import soundfile
from resemblyzer import VoiceEncoder, preprocess_wav
from resemblyzer.audio import normalize_volume
from resemblyzer.hparams import audio_norm_target_dBFS, sampling_rate


def main() -> int:
    if len(sys.argv) < 3:
        sys.exit("usage: speaker_embed_oracle.py OUT_DIR WAV [WAV ...]")
    out_dir, wavs = sys.argv[1], sys.argv[2:]
    os.makedirs(out_dir, exist_ok=True)
    encoder = VoiceEncoder("cpu", verbose=False)
    results = []
    for path in wavs:
        wav, rate = soundfile.read(path, dtype="float32")
        if wav.ndim != 1 or rate != sampling_rate:
            sys.exit(f"speaker_embed_oracle: {path} must be mono {sampling_rate} Hz (got {wav.shape}, {rate} Hz)")
        pre = preprocess_wav(wav).astype(np.float32)
        stem = os.path.splitext(os.path.basename(path))[0]
        pre_path = os.path.join(out_dir, stem + ".pre.f32")
        pre.astype("<f4").tofile(pre_path)
        embedding = encoder.embed_utterance(pre)
        normalized = encoder.embed_utterance(normalize_volume(wav, audio_norm_target_dBFS, increase_only=True))
        results.append({
            "wav": path,
            "preprocessed": pre_path,
            "preprocessed_samples": int(pre.size),
            "embedding": [repr(float(v)) for v in embedding],
            "normalized_embedding": [repr(float(v)) for v in normalized],
        })
    json.dump({"results": results}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
