#!/usr/bin/python3
"""Export the reference model (reference_model.py) to TorchScript for the libtorch shim.

    /usr/bin/python3 scripts/torch/export_reference_model.py --out PATH [--seed 0]
        [--codebook DATASET/codebook.npy] [--text-vocab 128] [--mel-codes 256] [--d-model 96]
        [--layers 3] [--heads 4] [--max-text 256] [--max-codes 512]

* ``--codebook`` is the reference dataset's code book (make_reference_dataset.py writes
  DATASET/codebook.npy, float32 [K, 32]); it is stored in the module as a buffer of the codec's
  decoder (reference_model.CodecDecoder), with which ``synthesize`` and ``decode_codes`` turn
  codes into audio (log-mel frames -> power spectrum -> Griffin-Lim). Without it the module
  trains exactly the same but cannot synthesize (``synthesize`` raises, saying so).
* ``--mel-codes K`` is the size of the code book (the dataset's codes are 0..K-1); the model's
  code vocabulary is K + 2 (start_mel = K, stop_mel = K + 1), like IndexTTS-2's 8192 + 2. With
  ``--codebook`` it defaults to the code book's K and must equal it.
* ``--text-vocab`` is the text vocabulary including start_text = 0 and stop_text = 1.
* The weights are initialised from ``torch.manual_seed(seed)``: the same seed gives the same
  file contents' weights, bit for bit, on the same torch build.
* The module is compiled with ``torch.jit.script`` (the Dict[str, Tensor] output needs script,
  not trace) and saved with ``torch.jit.save``. A sidecar ``PATH.json`` records the
  hyper-parameters and the token layout (``contract_info()``).

Run it with Debian's python (``/usr/bin/python3``, package python3-torch), which matches the
libtorch the shim is built against here. TorchScript files are forward compatible: a file
written by torch 1.13 loads in newer libtorch builds (e.g. a CUDA libtorch on a GPU box).
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_model import ReferenceTTSGPT, CodecDecoder  # noqa: E402
from make_reference_dataset import mel_filterbank, SAMPLE_RATE, N_FFT, HOP  # noqa: E402


def make_codec(codebook_path):
    """The codec's decoder over a dataset's code book (or none: an empty code book)."""
    fb = torch.from_numpy(mel_filterbank())
    if codebook_path is None:
        book = torch.zeros(0, fb.size(0))
    else:
        import numpy as np
        book = torch.from_numpy(np.load(codebook_path).astype("float32"))
        if book.dim() != 2 or book.size(1) != fb.size(0) or book.size(0) == 0:
            raise SystemExit(f"{codebook_path}: expected a float32 [K, {fb.size(0)}] code book, got {tuple(book.shape)}")
    return CodecDecoder(book, fb, sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop=HOP)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output .pt path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--text-vocab", type=int, default=128)
    ap.add_argument("--codebook", help="the dataset's codebook.npy (float32 [K, 32]) for the codec's decoder")
    ap.add_argument("--mel-codes", type=int, default=None, help="code book size K (default: the code book's, else 256)")
    ap.add_argument("--d-model", type=int, default=96)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--max-text", type=int, default=256)
    ap.add_argument("--max-codes", type=int, default=512)
    args = ap.parse_args()

    codec = make_codec(args.codebook)
    k = codec.codebook_size()
    if args.mel_codes is None:
        args.mel_codes = k if k > 0 else 256
    elif k > 0 and args.mel_codes != k:
        ap.error(f"--mel-codes {args.mel_codes} differs from the code book's {k} codes")
    torch.manual_seed(args.seed)
    model = ReferenceTTSGPT(
        number_text_tokens=args.text_vocab,
        number_mel_codes=args.mel_codes + 2,
        d_model=args.d_model,
        n_layers=args.layers,
        n_heads=args.heads,
        max_text_tokens=args.max_text,
        max_mel_tokens=args.max_codes,
        codec=codec,
    )
    model.train()
    scripted = torch.jit.script(model)
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + ".tmp"
    torch.jit.save(scripted, tmp)
    os.replace(tmp, out)

    info = dict(scripted.contract_info())
    params = sum(p.numel() for p in model.parameters())
    sidecar = {
        "model": "ReferenceTTSGPT",
        "torch_version": torch.__version__,
        "seed": args.seed,
        "d_model": args.d_model,
        "layers": args.layers,
        "heads": args.heads,
        "parameters": params,
        "text_loss_weight": model.text_loss_weight,
        "mel_loss_weight": model.mel_loss_weight,
        "forward": ["text_ids", "text_lengths", "code_ids", "code_lengths"],
        "returns": ["loss", "text_loss", "mel_loss", "mel_top1"],
        "codebook": os.path.abspath(args.codebook) if args.codebook else None,
        "codebook_size": k,
        "decoder": {"kind": "codebook log-mel -> power spectrum -> Griffin-Lim", "iterations": codec.iterations,
                    "momentum": codec.momentum, "gl_hop": codec.gl_hop, "n_fft": codec.n_fft, "hop": codec.hop,
                    "sample_rate": codec.sample_rate},
        **info,
    }
    with open(out + ".json", "w") as f:
        json.dump(sidecar, f, indent=2, sort_keys=True)
        f.write("\n")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
