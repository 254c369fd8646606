#!/usr/bin/python3
"""Convert a tts-shim checkpoint (tts_shim_save_checkpoint) into a PyTorch ``.pth``.

    /usr/bin/python3 scripts/torch/checkpoint_to_pth.py --checkpoint run/latest.ckpt --out model.pth

The shim's checkpoint is a torch::serialize::OutputArchive, which ``torch.jit.load`` opens as a
module whose attributes are its keys (Sources/TorchShim/CONTRACT.md, section 3). The output is
``torch.save({"model": state_dict, "step": step, "extra": extra_json})``, the layout that
IndexTTS-2's ``load_checkpoint`` accepts (it takes ``ckpt["model"]`` when present). Optimizer state
is left out (like the trainer's ``export_inference_checkpoint.py``).
"""

import argparse
import sys

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    ck = torch.jit.load(args.checkpoint, map_location="cpu")
    if int(ck.tts_shim_format) != 1:
        print(f"{args.checkpoint}: unknown tts_shim_format {ck.tts_shim_format}", file=sys.stderr)
        return 1
    state = {}
    for i, name in enumerate(ck.param_names):
        state[name] = getattr(ck, f"p_{i}").detach().clone()
    for i, name in enumerate(ck.buffer_names):
        state[name] = getattr(ck, f"b_{i}").detach().clone()
    torch.save({"model": state, "step": int(ck.step), "extra": str(ck.extra_json)}, args.out)
    print(f"{args.out}: {len(state)} tensors, step {int(ck.step)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
