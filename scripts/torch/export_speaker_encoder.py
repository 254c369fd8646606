#!/usr/bin/env python3
"""Export Resemblyzer's pretrained GE2E speaker encoder to TorchScript, features included.

    PYTHON scripts/torch/export_speaker_encoder.py --out PATH [--check]

PYTHON is an interpreter that has Debian's python3-torch and the ``resemblyzer`` package
(0.1.4, with librosa): the venv that Tests/Fixtures/eval/speaker_env.sh makes (created with
--system-site-packages over /usr/bin/python3, resemblyzer installed with --no-deps so that pip
never brings a torch of its own).

The weights are read at export time from the installed package (``resemblyzer/pretrained.pt``,
its ``model_state``); nothing of the package is copied into this repository. The written module
has one method the shim calls (``tts_shim_embed_waveform``, CONTRACT.md "Embeddings"):

    embed_waveform(wav: Tensor) -> Tensor
        wav: 1-D float waveform at 16 kHz (mono, samples in [-1, 1]).
        returns: the 256-d, L2-normalised utterance embedding (float32), computed as
        ``VoiceEncoder().embed_utterance(normalize_volume(wav, -30, increase_only=True))``:

        1. volume normalisation (resemblyzer.audio.normalize_volume, increase only): if the RMS of
           ``wav * 32767`` is below -30 dBFS the waveform is scaled up to -30 dBFS, else unchanged.
        2. partial utterances (VoiceEncoder.compute_partial_slices, rate 1.3, min_coverage 0.75):
           160-frame windows (1.6 s) every round(16000 / 1.3 / 160) = 77 frames; the last one is
           dropped when it covers less than 75 % of real samples (unless it is the only one); the
           waveform is zero-padded to the end of the last window.
        3. features (resemblyzer.audio.wav_to_mel_spectrogram = librosa.feature.melspectrogram
           with librosa 0.10's defaults): STFT with n_fft = win_length = 400 (25 ms), hop 160
           (10 ms), periodic Hann window, centred with zero padding of 200 samples each side
           (librosa >= 0.10's pad_mode "constant"), power 2, then a 40-band Slaney mel filterbank
           (librosa.filters.mel(sr=16000, n_fft=400, n_mels=40), fmin 0, fmax 8000, norm
           "slaney", htk False) stored as a buffer. Not a log: the encoder takes the power mel.
        4. each partial through the 3-layer LSTM (40 -> 256) -> last layer's final hidden state ->
           Linear(256, 256) -> ReLU -> L2 normalisation;
        5. mean of the partial embeddings, L2-normalised again.

    embedding_sample_rate() -> int     16000
    embedding_size() -> int            256

Not inside: Resemblyzer's ``trim_long_silences`` (webrtcvad voice activity detection, run by
``preprocess_wav`` after the volume normalisation). Callers that want exactly
``embed_utterance(preprocess_wav(wav))`` pass the output of ``preprocess_wav``; step 1 is then a
no-op as long as that output is at or above -30 dBFS (it is, unless the VAD removed loud
non-speech: trimming silence only raises the RMS). Resampling to 16 kHz is the caller's job too.

The STFT and the mel projection are computed in float64 and cast to float32 for the LSTM
(librosa computes the FFT in float64 and keeps float32 results): the embedding agrees with
Resemblyzer's to a cosine of ~1 - 1e-7. --check compares the saved module with VoiceEncoder on a
few deterministic signals and fails (exit 1) below a cosine of 0.9999.
"""

import argparse
import math
import os
import sys
from typing import List

import torch
from torch import Tensor, nn

SAMPLE_RATE = 16000
N_FFT = 400          # int(16000 * 25 / 1000): mel_window_length 25 ms
HOP = 160            # int(16000 * 10 / 1000): mel_window_step 10 ms
N_MELS = 40          # mel_n_channels
PARTIAL_FRAMES = 160  # partials_n_frames (1.6 s)
RATE = 1.3           # embed_utterance's default rate
MIN_COVERAGE = 0.75  # embed_utterance's default min_coverage
TARGET_DBFS = -30.0  # audio_norm_target_dBFS
INT16_MAX = 32767.0  # (2 ** 15) - 1


class SpeakerEncoder(nn.Module):
    def __init__(self, mel_basis: Tensor, hidden: int = 256, embedding: int = 256, layers: int = 3):
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, embedding)
        self.relu = nn.ReLU()
        self.register_buffer("mel_basis", mel_basis.to(torch.float64))  # [40, 201]
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True, dtype=torch.float64))
        self.frame_step = int(round((SAMPLE_RATE / RATE) / HOP))  # 77
        self.embedding_dim = embedding
        # The constants as attributes: TorchScript does not read module globals.
        self.hop = HOP
        self.n_fft = N_FFT
        self.partial_frames = PARTIAL_FRAMES
        self.sample_rate = SAMPLE_RATE
        self.min_coverage = MIN_COVERAGE
        self.target_dbfs = TARGET_DBFS
        self.int16_max = INT16_MAX

    @torch.jit.export
    def embedding_sample_rate(self) -> int:
        return self.sample_rate

    @torch.jit.export
    def embedding_size(self) -> int:
        return self.embedding_dim

    @torch.jit.export
    def partial_starts(self, n_samples: int) -> List[int]:
        """First mel frame of each partial utterance (compute_partial_slices)."""
        n_frames = (n_samples + 1 + self.hop - 1) // self.hop  # ceil((n_samples + 1) / self.hop)
        steps = max(1, n_frames - self.partial_frames + self.frame_step + 1)
        starts: List[int] = []
        i = 0
        while i < steps:
            starts.append(i)
            i += self.frame_step
        last = starts[-1] * self.hop
        coverage = float(n_samples - last) / float(self.partial_frames * self.hop)
        if coverage < self.min_coverage and len(starts) > 1:
            starts = starts[:-1]
        return starts

    @torch.jit.export
    def mel_frames(self, wav: Tensor) -> Tensor:
        """Power mel spectrogram [frames, 40] (float32) of a float64 waveform, as librosa's."""
        spec = torch.stft(wav, n_fft=self.n_fft, hop_length=self.hop, win_length=self.n_fft, window=self.window,
                          center=True, pad_mode="constant", normalized=False, onesided=True,
                          return_complex=True)  # [201, frames]
        power = spec.real * spec.real + spec.imag * spec.imag
        mel = torch.matmul(self.mel_basis, power)  # [40, frames]
        return mel.transpose(0, 1).to(torch.float32).contiguous()

    @torch.jit.export
    def normalize_volume(self, wav: Tensor) -> Tensor:
        rms = torch.sqrt(torch.mean((wav * self.int16_max) ** 2))
        if float(rms) <= 0.0:
            raise RuntimeError("invalid argument: the waveform is silent (RMS 0): it has no speaker embedding")
        change = self.target_dbfs - 20.0 * math.log10(float(rms) / self.int16_max)
        if change > 0.0:
            return wav * (10.0 ** (change / 20.0))
        return wav

    @torch.jit.export
    def embed_waveform(self, wav: Tensor) -> Tensor:
        if wav.dim() != 1:
            raise RuntimeError("shape mismatch: embed_waveform takes a 1-D waveform, got " + str(wav.dim()) + " dimensions")
        n = wav.size(0)
        if n == 0:
            raise RuntimeError("shape mismatch: embed_waveform got an empty waveform")
        x = self.normalize_volume(wav.to(torch.float64))
        starts = self.partial_starts(n)
        padded_length = (starts[-1] + self.partial_frames) * self.hop
        if padded_length >= n:
            x = torch.cat([x, torch.zeros(padded_length - n, dtype=x.dtype, device=x.device)])
        mel = self.mel_frames(x)
        partials = torch.stack([mel[s:s + self.partial_frames] for s in starts])  # [P, 160, 40]
        _, (hidden, _) = self.lstm(partials)
        raw = self.relu(self.linear(hidden[-1]))
        partial_embeds = raw / torch.norm(raw, dim=1, keepdim=True)
        mean = torch.mean(partial_embeds, dim=0)
        return mean / torch.norm(mean, p=2)

    def forward(self, wav: Tensor) -> Tensor:
        return self.embed_waveform(wav)


def build() -> SpeakerEncoder:
    import librosa
    import resemblyzer
    from resemblyzer import hparams

    # The constants above are Resemblyzer's: refuse to export if the installed package differs.
    expected = {
        "sampling_rate": SAMPLE_RATE, "mel_window_length": 25, "mel_window_step": 10,
        "mel_n_channels": N_MELS, "partials_n_frames": PARTIAL_FRAMES, "audio_norm_target_dBFS": TARGET_DBFS,
        "model_hidden_size": 256, "model_embedding_size": 256, "model_num_layers": 3,
    }
    for name, value in expected.items():
        if getattr(hparams, name) != value:
            sys.exit(f"export_speaker_encoder: resemblyzer.hparams.{name} is {getattr(hparams, name)}, expected {value}")

    weights = os.path.join(os.path.dirname(os.path.abspath(resemblyzer.__file__)), "pretrained.pt")
    if not os.path.isfile(weights):
        sys.exit(f"export_speaker_encoder: the resemblyzer package has no pretrained.pt at {weights}")
    state = torch.load(weights, map_location="cpu")["model_state"]
    mel_basis = torch.from_numpy(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS))
    model = SpeakerEncoder(mel_basis)
    # pretrained.pt also holds the GE2E loss's similarity_weight/bias (training only): those are
    # the only keys allowed to be left over, and every parameter of ours must be loaded.
    result = model.load_state_dict(state, strict=False)
    unexpected = [k for k in result.unexpected_keys if k not in ("similarity_weight", "similarity_bias")]
    missing = [k for k in result.missing_keys if k not in ("mel_basis", "window")]
    if missing or unexpected:
        sys.exit(f"export_speaker_encoder: pretrained.pt does not fit: missing {missing}, unexpected {unexpected}")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def check_signals() -> List:
    import numpy as np
    rng = np.random.default_rng(7)
    t = np.arange(int(3.3 * SAMPLE_RATE)) / SAMPLE_RATE
    voiced = 0.05 * np.sin(2 * np.pi * (120 + 40 * np.sin(2 * np.pi * 0.7 * t)) * t) * (1 + np.sin(2 * np.pi * 3 * t))
    signals = [
        (voiced + 0.003 * rng.standard_normal(t.size)).astype(np.float32),   # quiet: normalisation scales it up
        (0.3 * rng.standard_normal(int(0.9 * SAMPLE_RATE))).astype(np.float32),  # shorter than a partial
        (0.2 * np.sin(2 * np.pi * 220 * t[: int(2.0 * SAMPLE_RATE)])).astype(np.float32),  # loud: left as is
    ]
    return signals


def check(path: str) -> float:
    import numpy as np
    from resemblyzer import VoiceEncoder
    from resemblyzer.audio import normalize_volume

    loaded = torch.jit.load(path)
    reference = VoiceEncoder("cpu", verbose=False)
    for n in list(range(1, 40000, 97)) + [12159, 12160, 12161, 24479, 24480, 24481]:
        _, mel_slices = VoiceEncoder.compute_partial_slices(n, RATE, MIN_COVERAGE)
        if loaded.partial_starts(n) != [s.start for s in mel_slices]:
            sys.exit(f"export_speaker_encoder: partial_starts({n}) = {loaded.partial_starts(n)}, "
                     f"resemblyzer: {[s.start for s in mel_slices]}")
    worst = 1.0
    for wav in check_signals():
        ours = loaded.embed_waveform(torch.from_numpy(wav)).numpy()
        theirs = reference.embed_utterance(normalize_volume(wav, TARGET_DBFS, increase_only=True))
        cos = float(np.dot(ours, theirs) / (np.linalg.norm(ours) * np.linalg.norm(theirs)))
        print(f"export_speaker_encoder: check {wav.size} samples: cosine {cos:.9f}", file=sys.stderr)
        worst = min(worst, cos)
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output .pt path")
    ap.add_argument("--check", action="store_true", help="compare with resemblyzer's VoiceEncoder after saving")
    args = ap.parse_args()

    torch.set_grad_enabled(False)
    model = build()
    scripted = torch.jit.script(model)
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + ".tmp"
    torch.jit.save(scripted, tmp)
    os.replace(tmp, out)
    print(f"export_speaker_encoder: wrote {out}", file=sys.stderr)
    if args.check:
        worst = check(out)
        if worst < 0.9999:
            print(f"export_speaker_encoder: the exported module disagrees with VoiceEncoder (cosine {worst})", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
