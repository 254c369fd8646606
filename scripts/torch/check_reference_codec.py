#!/usr/bin/python3
"""Does the reference model speak better as it trains? MCD of decoded codes against the targets.

    /usr/bin/python3 scripts/torch/check_reference_codec.py --model REF.pt --dataset DIR
        [--steps 300] [--eval-at 25,100,200,300] [--checkpoints CKPT ...] [--max-codes 60] [--seed 1]
        [--targets val|train] [--records] [--speaker-encoder speaker_encoder.pt] [--json OUT] [--expect]

For every validation target of DIR/gpt_pairs_val.jsonl (make_reference_dataset.py) it computes the
MCD (docs/EVALUATION.md, "MCD": 25 ms / 10 ms frames at 16 kHz, 40 Slaney mel bands, c1..c12,
frames 40 dB below the loudest dropped, DTW; reimplemented here in numpy) against the target audio
of:

* ``ground_truth``: the target's own codes decoded by the exported module's ``decode_codes`` (the
  codec floor: the best this codec allows; the dataset's ``codec_audio/<utt>.wav`` holds the
  same audio as 16-bit PCM, which is checked too);
* ``random``: as many codes drawn uniformly (numpy RandomState(seed)) and decoded the same way;
* ``step_N``: the model's greedy ``synthesize(text, max_codes, prompt)`` after N training steps,
  in the voice of the record's prompt (``prompt_audio_path``), as the worker's torch synthesizer
  calls it.

``--records`` measures every validation record (each target with each of its prompts: 24)
instead of one per target (12). ``--speaker-encoder`` also reports SIM as the worker measures it
(docs/EVALUATION.md): each synthesis (and the ground truth, and the recording: ``recording``)
against the record's voice prompt, both scaled to -30 dBFS, by the exported Resemblyzer encoder.

The training is the demo's (scripts/demo.sh): AdamW (betas 0.9 / 0.999, eps 1e-8, weight decay
0.01), gradient clipping at 1.0, lr 3e-3 with 20 warm-up steps then cosine to 0.1 x lr over
``--steps``, batches of 4 pair records of the training manifest x 2 accumulated (shuffled per
epoch by ``random.Random(seed)``; each with its prompt's ``prompt_condition_path`` as the fifth
tensor), in Python on the same TorchScript module (the shim does the
same in C++; its batching order differs). The evaluations are after the steps of ``--eval-at``
(the demo's eval_every 100, and step 25, before the model has learnt where speech stops).
``--targets train`` speaks the first 12 training targets instead (sentences the model learns;
there is no codec_audio for them). ``--checkpoints`` instead evaluates shim checkpoints (tts_shim_save_checkpoint files, e.g. a demo
run's model_step100.pt and model_step300.pt) without training.

``--expect`` makes it a test oracle of the codec (TorchShimTests runs it with ``--steps 0``):
the exit status is 1 unless the ground truth's mean MCD is at least 2 dB below random codes' and
the dataset's codec_audio files equal decode_codes of the targets' codes to 1 LSB. Whether the
trained model's MCD falls and SIM rises is reported here, not asserted (DemoTests asserts it on
the demo's own evaluations; the numbers are in Sources/TorchShim/CONTRACT.md, section 7). The last
line is JSON with the per-condition means (``mcd_db``, ``sim``); ``--json`` also writes the
per-utterance values (``per_utterance``, ``per_utterance_sim``).
"""

import argparse
import json
import math
import os
import random
import sys
import time
import wave

import numpy as np
import torch

# ---- MCD (docs/EVALUATION.md) ------------------------------------------------------------------
SR, WIN, HOP_MCD, NFFT_MCD, N_BANDS, N_CEP = 16000, 400, 160, 512, 40, 13


def slaney_mel_filters() -> np.ndarray:
    """40 triangles 0..8 kHz on the Slaney mel scale (linear below 1 kHz, 200/3 Hz per mel;
    logarithmic above, 27 mels per factor 6.4), each scaled to unit area (2 / (f_hi - f_lo))."""
    f_sp, brk = 200.0 / 3.0, 1000.0
    brk_mel, step = brk / f_sp, math.log(6.4) / 27.0

    def to_mel(f):
        return brk_mel + math.log(f / brk) / step if f >= brk else f / f_sp

    def to_hz(m):
        return np.where(m >= brk_mel, brk * np.exp(step * (m - brk_mel)), f_sp * m)

    pts = to_hz(np.linspace(to_mel(0.0), to_mel(SR / 2.0), N_BANDS + 2))
    freqs = np.arange(NFFT_MCD // 2 + 1) * SR / NFFT_MCD
    fb = np.zeros((N_BANDS, freqs.size))
    for m in range(N_BANDS):
        lo, c, hi = pts[m], pts[m + 1], pts[m + 2]
        fb[m] = np.maximum(0.0, np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c))) * 2.0 / (hi - lo)
    return fb


MCD_FILTERS = slaney_mel_filters()
MCD_WINDOW = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(WIN) / WIN)
M_IDX = np.arange(N_BANDS)
DCT = np.cos(np.pi * np.arange(N_CEP)[:, None] * (M_IDX[None, :] + 0.5) / N_BANDS) / N_BANDS  # [13, 40]


def voiced_cepstra(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = 1 + (x.size - WIN) // HOP_MCD
    if x.size < WIN:
        raise ValueError("shorter than one window")
    idx = np.arange(WIN)[None, :] + HOP_MCD * np.arange(n)[:, None]
    power = np.abs(np.fft.rfft(x[idx] * MCD_WINDOW, n=NFFT_MCD, axis=1)) ** 2
    mel = power @ MCD_FILTERS.T
    cep = np.log(np.maximum(mel, 1e-10)) @ DCT.T
    energy = mel.sum(1)
    loud = energy.max()
    return cep[energy >= loud * 1e-4] if loud > 0 else cep


def mcd(synth: np.ndarray, target: np.ndarray) -> float:
    a, b = voiced_cepstra(synth)[:, 1:], voiced_cepstra(target)[:, 1:]
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    n, m = d.shape
    acc = np.full((n, m), np.inf)
    move = np.zeros((n, m), dtype=np.int8)
    acc[0, 0] = d[0, 0]
    for i in range(n):
        for j in range(m):
            if i == 0 and j == 0:
                continue
            best, how = np.inf, 0
            if i > 0 and j > 0 and acc[i - 1, j - 1] < best:
                best, how = acc[i - 1, j - 1], 0
            if i > 0 and acc[i - 1, j] < best:
                best, how = acc[i - 1, j], 1
            if j > 0 and acc[i, j - 1] < best:
                best, how = acc[i, j - 1], 2
            acc[i, j], move[i, j] = best + d[i, j], how
    i, j, total, k = n - 1, m - 1, 0.0, 0
    while True:
        total += d[i, j]
        k += 1
        if i == 0 and j == 0:
            break
        how = move[i, j]
        i, j = (i - 1, j - 1) if how == 0 else (i - 1, j) if how == 1 else (i, j - 1)
    return (10.0 / math.log(10.0)) * math.sqrt(2.0) * total / k


# ---- data ------------------------------------------------------------------------------------
def read_wav(path: str) -> np.ndarray:
    with wave.open(path, "rb") as w:
        assert w.getframerate() == SR and w.getnchannels() == 1 and w.getsampwidth() == 2, path
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0


def load_manifest(path: str) -> list:
    base = os.path.dirname(path)
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            r["_base"] = base
            out.append(r)
    return out


def val_targets(dataset: str, split: str = "val", limit: int = 0) -> list:
    seen, out = set(), []
    for r in load_manifest(os.path.join(dataset, f"gpt_pairs_{split}.jsonl")):
        if limit and len(out) >= limit:
            break
        if r["target_id"] not in seen:
            seen.add(r["target_id"])
            out.append(r)
    return out


def lr_at(step: int, lr: float, warmup: int, total: int, min_ratio: float = 0.1) -> float:
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    m = min_ratio * lr
    p = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    return m + (lr - m) * 0.5 * (1.0 + math.cos(math.pi * p))


def batches(records: list, batch: int, seed: int):
    rng = random.Random(seed)
    while True:
        order = list(records)
        rng.shuffle(order)
        for i in range(0, len(order) - batch + 1, batch):
            rows = order[i:i + batch]
            texts = [np.load(os.path.join(r["_base"], r["target_text_ids_path"])) for r in rows]
            codes = [np.load(os.path.join(r["_base"], r["target_codes_path"])) for r in rows]
            cond = torch.from_numpy(np.stack([np.load(os.path.join(r["_base"], r["prompt_condition_path"])) for r in rows]))
            t, c = max(len(x) for x in texts), max(len(x) for x in codes)
            ti = torch.zeros(batch, t, dtype=torch.long)
            ci = torch.zeros(batch, c, dtype=torch.long)
            for k in range(batch):
                ti[k, :len(texts[k])] = torch.from_numpy(texts[k].astype(np.int64))
                ci[k, :len(codes[k])] = torch.from_numpy(codes[k].astype(np.int64))
            yield (ti, torch.tensor([len(x) for x in texts]), ci, torch.tensor([len(x) for x in codes]), cond)


def load_shim_checkpoint(model, path: str) -> int:
    ck = torch.jit.load(path, map_location="cpu")
    params = dict(model.named_parameters())
    bufs = dict(model.named_buffers())
    with torch.no_grad():
        for i, name in enumerate(ck.param_names):
            params[name].copy_(getattr(ck, f"p_{i}"))
        for i, name in enumerate(ck.buffer_names):
            bufs[name].copy_(getattr(ck, f"b_{i}"))
    return int(ck.step)


def speak(model, targets: list, max_codes: int) -> list:
    """Each record's text in the voice of its prompt (synthesize's third argument, as the
    worker's torch synthesizer passes prompt_audio_path)."""
    model.eval()
    with torch.no_grad():
        out = [model.synthesize(r["target_text"], max_codes,
                                torch.from_numpy(read_wav(os.path.join(r["_base"], r["prompt_audio_path"])).astype(np.float32)))
               .double().numpy() for r in targets]
    model.train()
    return out


def speaker_similarity(encoder_path: str):
    """SIM as the worker measures it (docs/EVALUATION.md): both sides scaled to an RMS of
    -30 dBFS, embedded by the exported Resemblyzer encoder (speaker_encoder.pt), cosine."""
    enc = torch.jit.load(encoder_path, map_location="cpu")

    def embed(x: np.ndarray) -> np.ndarray:
        rms = float(np.sqrt(np.mean(x * x)))
        y = x * (10.0 ** (-30.0 / 20.0) / rms) if rms > 0 else x
        with torch.no_grad():
            return enc.embed_waveform(torch.from_numpy(y.astype(np.float32))).double().numpy()

    def sim(a: np.ndarray, b_embedding: np.ndarray) -> float:
        e = embed(a)
        return float(e @ b_embedding / (np.linalg.norm(e) * np.linalg.norm(b_embedding)))

    return embed, sim


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-at", default="25,100,200,300", help="comma-separated steps to evaluate after")
    ap.add_argument("--checkpoints", nargs="*")
    ap.add_argument("--max-codes", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--targets", choices=["val", "train"], default="val",
                    help="whose texts to speak: the validation targets (unseen sentences), or the first 12 "
                         "training targets (sentences the model trains on; no codec_audio check)")
    ap.add_argument("--records", action="store_true",
                    help="with --targets val: every validation record (each target with each of its prompts) "
                         "instead of one record per target")
    ap.add_argument("--speaker-encoder", help="speaker_encoder.pt (Tests/Fixtures/eval/speaker_env.sh): also report "
                                              "SIM of each synthesis with its record's voice prompt")
    ap.add_argument("--json")
    ap.add_argument("--expect", action="store_true")
    args = ap.parse_args()
    eval_at = sorted({int(x) for x in args.eval_at.split(",") if x.strip()} & set(range(1, args.steps + 1)))
    torch.set_num_threads(args.threads)
    t0 = time.time()
    model = torch.jit.load(args.model, map_location="cpu")
    if args.records and args.targets == "val":
        targets = load_manifest(os.path.join(args.dataset, "gpt_pairs_val.jsonl"))
    else:
        targets = val_targets(args.dataset, args.targets, 12 if args.targets == "train" else 0)
    sims = {}
    if args.speaker_encoder:
        embed, sim = speaker_similarity(args.speaker_encoder)
        prompt_embeddings = [embed(read_wav(os.path.join(r["_base"], r["prompt_audio_path"]))) for r in targets]
    audio = [read_wav(os.path.join(r["_base"], r["target_audio_path"])) for r in targets]
    k = int(model.codec.codebook_size())
    problems = []

    results = {}
    with torch.no_grad():
        gt_codes = [np.load(os.path.join(r["_base"], r["target_codes_path"])) for r in targets]
        gt = [model.decode_codes(torch.from_numpy(c.astype(np.int64))).double().numpy() for c in gt_codes]
        rs = np.random.RandomState(args.seed)
        rnd = [model.decode_codes(torch.from_numpy(rs.randint(0, k, size=c.size).astype(np.int64))).double().numpy()
               for c in gt_codes]
    results["ground_truth"] = [mcd(g, a) for g, a in zip(gt, audio)]
    results["random"] = [mcd(g, a) for g, a in zip(rnd, audio)]
    for r, g in zip(targets, gt):
        rel = r.get("target_codec_audio_path")
        if args.targets == "train":
            continue
        if rel is None:
            problems.append(f"{r['id']}: no target_codec_audio_path in the manifest")
            continue
        stored = read_wav(os.path.join(r["_base"], rel))
        want = np.clip(np.round(g * 32767.0), -32768, 32767) / 32768.0
        if stored.size != g.size or np.abs(stored - want).max() > 1.5 / 32768.0:
            problems.append(f"{rel}: differs from decode_codes of the target's codes")

    order = []
    if args.checkpoints:
        for path in args.checkpoints:
            step = load_shim_checkpoint(model, path)
            spoken = speak(model, targets, args.max_codes)
            results[f"step_{step}"] = [mcd(s, a) for s, a in zip(spoken, audio)]
            if args.speaker_encoder:
                sims[f"step_{step}"] = [sim(s, e) for s, e in zip(spoken, prompt_embeddings)]
            order.append(f"step_{step}")
    else:
        records = load_manifest(os.path.join(args.dataset, "gpt_pairs_train.jsonl"))
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
        feed = batches(records, args.batch, args.seed)
        model.train()
        losses = []
        for step in range(args.steps):
            for g in opt.param_groups:
                g["lr"] = lr_at(step, args.lr, args.warmup, args.steps)
            total = 0.0
            for _ in range(args.grad_accum):
                out = model(*next(feed))
                (out["loss"] / args.grad_accum).backward()
                total += float(out["mel_loss"]) / args.grad_accum
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(total)
            if step + 1 in eval_at:
                key = f"step_{step + 1}"
                spoken = speak(model, targets, args.max_codes)
                results[key] = [mcd(s, a) for s, a in zip(spoken, audio)]
                if args.speaker_encoder:
                    sims[key] = [sim(s, e) for s, e in zip(spoken, prompt_embeddings)]
                order.append(key)
                print(f"step {step + 1}: mel_loss {np.mean(losses[-10:]):.3f}, MCD {np.mean(results[key]):.2f} dB"
                      + (f", SIM {np.mean(sims[key]):.3f}" if key in sims else "") + f" ({time.time() - t0:.0f} s)", file=sys.stderr)

    means = {key: round(float(np.mean(v)), 3) for key, v in results.items()}
    for r, i in zip(targets, range(len(targets))):
        print(r["target_id"], " ".join(f"{key}={results[key][i]:.2f}" for key in results), file=sys.stderr)
    if args.expect:
        if not means["ground_truth"] < means["random"] - 2.0:
            problems.append(f"ground truth {means['ground_truth']} dB is not 2 dB below random {means['random']} dB")
    if args.speaker_encoder:
        sims["ground_truth"] = [sim(g, e) for g, e in zip(gt, prompt_embeddings)]
        sims["recording"] = [sim(a, e) for a, e in zip(audio, prompt_embeddings)]
    summary = {"utterances": len(targets), "mcd_db": means, "sim": {k2: round(float(np.mean(v)), 3) for k2, v in sims.items()},
               "order": order, "problems": problems,
               "seconds": round(time.time() - t0, 1)}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({**summary, "per_utterance": {k2: [float(x) for x in v] for k2, v in results.items()},
                       "per_utterance_sim": {k2: [float(x) for x in v] for k2, v in sims.items()},
                       "ids": [r["target_id"] for r in targets]}, fh, indent=2)
    for p in problems:
        print("problem:", p, file=sys.stderr)
    print(json.dumps(summary))
    return 1 if (args.expect and problems) else 0


if __name__ == "__main__":
    sys.exit(main())
