#!/usr/bin/python3
"""Write the torch checkpoints that Tests/WorkerTests/TorchCheckpointReaderTests.swift reads.

    /usr/bin/python3 Tests/Fixtures/torch/make_checkpoints.py --out-dir DIR [--sparse]

Run it with Debian's python (``/usr/bin/python3``, package python3-torch; Tests/Fixtures/torch/
torch_env.sh installs it). Every file except the hand-made ZIPs is written by ``torch.save``:

* ``light.pth``: {"model": state dict of a tiny module wrapped like torch.compile's OptimizedModule
  (keys ``_orig_mod.…``), "epoch": 3, "step": 1300, "recent_checkpoints": [], "manifests": {…}}
* ``full.pth``: the same plus a real AdamW state dict after two steps, a LambdaLR state dict,
  "optimizer_type": "adamw" and "scaler": None (step 2600, epoch 7)
* ``bigstep.pth``: "step": 2**40, "epoch": 2**31 + 5, "huge": 2**70, "negative": -2**40
* ``nested.pth``: top-level "step": 7 beside nested "step" keys (the optimizer's per-parameter
  'step' tensors, a "trainer" dict, a list of dicts)
* ``nested_nostep.pth``: only nested "step" keys, "scheduler": None
* ``list.pth``: a list, not a dict
* ``legacy.pth``: ``_use_new_zipfile_serialization=False`` (torch's pre-1.6, non-zip format)
* ``zip64_zipfile.pth``: light.pth's entries rewritten by Python's zipfile with
  ``force_zip64=True`` (ZIP64 extra fields in the local headers) and a 1,000-byte archive comment
* ``zip64_full.pth``: light.pth's entries, renamed under ``archive/`` (newer torch's prefix; 1.13
  uses the file's stem), in a hand-made ZIP64 archive: ZIP64 extra fields for both
  sizes and the offset in every central-directory entry, a ZIP64 end record and locator, and a
  classic end record saturated at 0xFFFF/0xFFFFFFFF; ``torch.load`` must read it back
* ``nopickle.pth``: a ZIP without any data.pkl; ``compressed.pth``: light.pth with data.pkl deflated
* ``sparse_zip64.pth`` (only with ``--sparse``): light.pth's entries plus a 4.5 GiB stored entry
  of zeros that is a hole in a sparse file, so the entries after it sit past 4 GiB (its CRC is
  left 0: nothing reads it)
* ``expected.json``: for each file read as a dict, what the reader must report (step, epoch, keys,
  optimizer, scheduler, size), computed from the objects saved

Prints the output directory as its last line.
"""

import argparse
import collections
import json
import os
import pickle
import struct
import sys
import zipfile
import zlib

import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.proj = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)

    def forward(self, ids):
        return self.norm(self.proj(self.embed(ids)))


class Compiled(nn.Module):
    """Stands in for torch.compile's OptimizedModule (torch 2), whose state dict keys start with
    ``_orig_mod.``; Debian's torch 1.13 has no torch.compile."""

    def __init__(self, inner):
        super().__init__()
        self._orig_mod = inner

    def forward(self, ids):
        return self._orig_mod(ids)


def trained():
    torch.manual_seed(0)
    model = Compiled(Tiny())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10))
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    for _ in range(2):
        optimizer.zero_grad()
        model(ids).pow(2).sum().backward()
        optimizer.step()
        scheduler.step()
    return model, optimizer, scheduler


def manifests():
    return {"train": "/data/ko/gpt_pairs_train.jsonl::ko", "val": ["/data/ko/gpt_pairs_val.jsonl::ko"], "weights": {"ko": 1.0}}


def expected(obj, path):
    def as_int(v):
        return v if type(v) is int and -(2 ** 63) <= v < 2 ** 63 else None

    return {
        "step": as_int(obj.get("step")),
        "epoch": as_int(obj.get("epoch")),
        "keys": [k if isinstance(k, str) else repr(k) for k in obj],
        "optimizer": obj.get("optimizer") is not None,
        "scheduler": obj.get("scheduler") is not None,
        "size": os.path.getsize(path),
    }


def write_zip64(path, entries):
    """A stored ZIP64 archive written by hand: every size and offset in a ZIP64 extra field, local
    data aligned to 64 bytes with torch's 'FB' padding field. ``entries`` are (name, bytes) or
    (name, int): an int is that many zero bytes left as a hole (sparse), with CRC 0."""
    central = []
    with open(path, "wb") as f:
        for name, data in entries:
            offset = f.tell()
            nb = name.encode()
            size = data if isinstance(data, int) else len(data)
            crc = 0 if isinstance(data, int) else zlib.crc32(data)
            z64 = struct.pack("<HHQQ", 1, 16, size, size)
            header = 30 + len(nb) + len(z64)
            pad = (-(offset + header + 4)) % 64
            extra = z64 + struct.pack("<HH", 0x4246, pad) + b"Z" * pad
            f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(nb), len(extra)))
            f.write(nb + extra)
            if isinstance(data, int):
                f.seek(size, os.SEEK_CUR)
            else:
                f.write(data)
            central.append((nb, crc, size, offset))
        cd_offset = f.tell()
        for nb, crc, size, offset in central:
            extra = struct.pack("<HHQQQ", 1, 24, size, size, offset)
            f.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                                len(nb), len(extra), 0, 0, 0, 0, 0xFFFFFFFF))
            f.write(nb + extra)
        cd_size = f.tell() - cd_offset
        record = f.tell()
        n = len(central)
        f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, cd_size, cd_offset))
        f.write(struct.pack("<IIQI", 0x07064B50, 0, record, 1))
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))


def members(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--sparse", action="store_true", help="also write the 4.5 GiB sparse ZIP64 file")
    args = ap.parse_args()
    out = args.out_dir
    os.makedirs(out, exist_ok=True)
    model, optimizer, scheduler = trained()
    state = model.state_dict()
    assert all(k.startswith("_orig_mod.") for k in state), list(state)
    results = {}

    def save(name, obj, **kwargs):
        path = os.path.join(out, name)
        torch.save(obj, path, **kwargs)
        if isinstance(obj, dict) and kwargs.get("_use_new_zipfile_serialization", True):
            results[name] = expected(obj, path)
        return path

    light_obj = {"model": state, "epoch": 3, "step": 1300, "recent_checkpoints": [], "manifests": manifests()}
    light = save("light.pth", light_obj)
    save("full.pth", {"model": state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                      "optimizer_type": "adamw", "scaler": None, "epoch": 7, "step": 2600,
                      "recent_checkpoints": ["model_step2000.pth"], "manifests": manifests()})
    save("bigstep.pth", {"step": 2 ** 40, "epoch": 2 ** 31 + 5, "huge": 2 ** 70, "negative": -(2 ** 40), "model": state})
    opt_state = optimizer.state_dict()
    assert all(torch.is_tensor(s["step"]) for s in opt_state["state"].values()), "per-parameter steps are tensors"
    save("nested.pth", {"trainer": {"step": 999, "epoch": 12}, "optimizer": opt_state, "step": 7,
                        "history": [{"step": 1}, {"step": 2}], "model": state})
    save("nested_nostep.pth", {"trainer": {"step": 999}, "optimizer": opt_state, "scheduler": None, "model": state})
    save("list.pth", [1, 2, 3])
    save("legacy.pth", light_obj, _use_new_zipfile_serialization=False)

    entries = members(light)
    pkl = next(name for name, _ in entries if name.endswith("/data.pkl"))

    path = os.path.join(out, "zip64_zipfile.pth")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries:
            with z.open(zipfile.ZipInfo(name), "w", force_zip64=True) as w:
                w.write(data)
        z.comment = b"c" * 1000
    results["zip64_zipfile.pth"] = dict(results["light.pth"], size=os.path.getsize(path))

    path = os.path.join(out, "zip64_full.pth")
    renamed = [("archive/" + name.split("/", 1)[1], data) for name, data in entries]  # torch >= 2's prefix
    write_zip64(path, renamed)
    assert members(path) == renamed, "Python's zipfile reads the hand-made ZIP64 archive back"
    back = torch.load(path)
    assert back["step"] == 1300 and list(back) == list(light_obj), "torch.load reads the hand-made ZIP64 archive"
    results["zip64_full.pth"] = dict(results["light.pth"], size=os.path.getsize(path))

    path = os.path.join(out, "nopickle.pth")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries:
            if name != pkl:
                z.writestr(name, data)

    path = os.path.join(out, "compressed.pth")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries:
            z.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if name == pkl else zipfile.ZIP_STORED)

    if args.sparse:
        path = os.path.join(out, "sparse_zip64.pth")
        prefix = pkl.split("/")[0]
        big = entries[:-1] + [(prefix + "/data/huge", 9 * 2 ** 29)] + entries[-1:]
        write_zip64(path, big)
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            assert infos[-1].header_offset > 0xFFFFFFFF, infos[-1]
            assert z.read(pkl) == dict(entries)[pkl]
        results["sparse_zip64.pth"] = dict(results["light.pth"], size=os.path.getsize(path))

    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps({"torch": torch.__version__, "pickle": pkl, "files": sorted(os.listdir(out))}), file=sys.stderr)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
