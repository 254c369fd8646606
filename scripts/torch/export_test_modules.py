#!/usr/bin/python3
"""Write the broken TorchScript modules that the shim's error tests load.

    /usr/bin/python3 scripts/torch/export_test_modules.py --out-dir DIR

Each module takes the reference model's batch (text_ids [B,T], text_lengths [B], code_ids [B,C],
code_lengths [B]) and has one small trainable parameter, so a step would be possible if the
contract were kept:

* ``no_loss.pt``         forward returns Dict[str, Tensor] without a 'loss' entry
                         -> tts_shim_train_step / eval_step: TTS_ERR_CONTRACT
* ``plain_forward.pt``   forward returns a Tensor, not a Dict[str, Tensor]
                         -> tts_shim_model_load: TTS_ERR_CONTRACT (the schema is checked at load)
* ``no_forward.pt``      a scripted module with no forward method (only an exported helper)
                         -> tts_shim_model_load: TTS_ERR_CONTRACT
* ``vector_loss.pt``     forward returns {'loss': Tensor[B]} (not a scalar)
                         -> tts_shim_train_step: TTS_ERR_CONTRACT
* ``not_torchscript.pt`` a plain text file -> tts_shim_model_load: TTS_ERR_LOAD
* ``promptless_synth.pt`` keeps the contract and exports the ABI 2 synthesis
                         ``synthesize(text, max_codes)`` (no voice prompt): a 440 Hz tone of
                         ``max_codes`` x 640 samples at 16 kHz. tts_shim_synthesize works,
                         tts_shim_synthesize_accepts_prompt is 0 and a prompt is TTS_ERR_CONTRACT

The files are generated, not committed (Tests/Fixtures/torch/README.md).
"""

import argparse
import os
import sys
from typing import Dict

import torch
from torch import Tensor, nn


class NoLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, text_ids: Tensor, text_lengths: Tensor, code_ids: Tensor, code_lengths: Tensor) -> Dict[str, Tensor]:
        v = (text_ids.float().mean() * self.scale).sum()
        return {"text_loss": v, "mel_loss": v * 2.0}


class PlainForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, text_ids: Tensor, text_lengths: Tensor, code_ids: Tensor, code_lengths: Tensor) -> Tensor:
        return (text_ids.float().mean() * self.scale).sum()


class NoForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    @torch.jit.export
    def helper(self, x: Tensor) -> Tensor:
        return x * self.scale


class VectorLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, text_ids: Tensor, text_lengths: Tensor, code_ids: Tensor, code_lengths: Tensor) -> Dict[str, Tensor]:
        return {"loss": text_ids.float().mean(1) * self.scale}


class PromptlessSynth(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, text_ids: Tensor, text_lengths: Tensor, code_ids: Tensor, code_lengths: Tensor) -> Dict[str, Tensor]:
        return {"loss": (text_ids.float().mean() * self.scale).sum()}

    @torch.jit.export
    def synthesis_sample_rate(self) -> int:
        return 16000

    @torch.jit.export
    def synthesize(self, text: str, max_codes: int) -> Tensor:
        n = torch.arange(max_codes * 640, dtype=torch.float32)
        return 0.5 * torch.sin(2.0 * 3.141592653589793 * 440.0 * n / 16000.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()
    out = os.path.abspath(args.out_dir)
    os.makedirs(out, exist_ok=True)
    for name, cls in (("no_loss", NoLoss), ("plain_forward", PlainForward),
                      ("no_forward", NoForward), ("vector_loss", VectorLoss),
                      ("promptless_synth", PromptlessSynth)):
        torch.jit.save(torch.jit.script(cls()), os.path.join(out, name + ".pt"))
        print(os.path.join(out, name + ".pt"))
    with open(os.path.join(out, "not_torchscript.pt"), "w") as fh:
        fh.write("this is not a TorchScript archive\n")
    print(os.path.join(out, "not_torchscript.pt"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
