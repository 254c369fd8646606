"""Mel-cepstrum oracle for MelCepstrumOracleTests.swift (numpy + librosa + scipy; the venv of
speaker_env.sh).

    mel_cepstrum_oracle.py SAMPLES.f32

Reads raw float32 little-endian mono samples at 16 kHz and writes, as JSON on stdout,
{"cepstra": [[c0 .. c12] per frame], "energies": [per frame]} with floats as repr() strings,
computed independently of the Swift code from the definition in docs/EVALUATION.md:
frames [160 t, 160 t + 400) times scipy's periodic Hann window, numpy's rfft at 512 points, power,
librosa.filters.mel(sr=16000, n_fft=512, n_mels=40) in float64 (Slaney scale and norm), the mel
energies' sum as the frame energy, ln(max(E, 1e-10)), scipy's DCT-II (unnormalised: 2 * sum)
divided by 2 M, the first 13 coefficients.
"""
import json
import sys

import librosa
import numpy as np
import scipy.fft
import scipy.signal


def main() -> int:
    x = np.fromfile(sys.argv[1], dtype="<f4").astype(np.float64)
    win, hop, n_fft, n_mels = 400, 160, 512, 40
    frames = 1 + (len(x) - win) // hop
    window = scipy.signal.get_window("hann", win, fftbins=True)
    basis = librosa.filters.mel(sr=16000, n_fft=n_fft, n_mels=n_mels, dtype=np.float64)
    stacked = np.stack([x[t * hop:t * hop + win] * window for t in range(frames)])
    power = np.abs(np.fft.rfft(stacked, n=n_fft, axis=1)) ** 2
    mel = power @ basis.T
    cepstra = scipy.fft.dct(np.log(np.maximum(mel, 1e-10)), type=2, axis=1)[:, :13] / (2 * n_mels)
    json.dump({"cepstra": [[repr(float(v)) for v in row] for row in cepstra],
               "energies": [repr(float(v)) for v in mel.sum(axis=1)]}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
