#!/usr/bin/python3
"""Make a small Korean dataset in the IndexTTS-2 trainer's pair-manifest + .npy format.

    /usr/bin/python3 scripts/torch/make_reference_dataset.py --out DIR [--sentences N]
        [--generated 400] [--generated-val 0] [--pairs-per-target 2] [--codebook-size 256] [--seed 0]

Needs espeak-ng and sox (apt-get install espeak-ng sox), numpy and, for the codec floor audio,
Debian's python3-torch. Runs in about 20-30 s (two espeak-ng processes).

Output (all paths inside the manifests are relative to the manifest's directory, DIR)::

    DIR/gpt_pairs_train.jsonl   pair manifest, one JSON object per line
    DIR/gpt_pairs_val.jsonl
    DIR/audio/<utt>.wav          16 kHz mono 16-bit PCM (espeak-ng, resampled by sox)
    DIR/text_ids/<utt>.npy       int32 [text_len]   text ids (tokenizer below)
    DIR/codes/<utt>.npy          int32 [code_len]   code ids 0..K-1 (codec below)
    DIR/condition/<utt>.npy      float32 [32, 32]   prompt condition stand-in
    DIR/emo_vec/<utt>.npy        float32 [32]       emotion vector stand-in
    DIR/codebook.npy             float32 [K, 32]    the codec's k-means code book
    DIR/codec_audio/<utt>.wav    16 kHz PCM16: a validation target's own codes, decoded (the codec floor)
    DIR/dataset.json             what was made: parameters, tokenizer table, counts

Utterances
----------
Each of the N sentences (the built-in list of short Korean sentences, cycled with a numbered
suffix when N exceeds it) is spoken by two espeak-ng voices, the two "speakers"
``espeak_m`` (voice ``ko``, 165 wpm) and ``espeak_f`` (voice ``ko+f2``, 150 wpm). Utterance
ids are ``<speaker>_<sentence index, 4 digits>``. Sentences whose index i has ``i % 10 == 9`` go
to validation (both speakers), the rest to training, so validation texts are unseen (with fewer
than 10 sentences, the last one is the validation sentence). A target whose split has no other
utterance of its speaker is paired with itself as the prompt.

Beside them, ``--generated N`` (default 400) training-only sentences are made from word lists
(``GEN_SUBJECTS x GEN_TIMES x GEN_PLACES x GEN_PHRASES``, e.g. "동생은 주말에 공원에서 사진을
찍어요.", N of the 16000 drawn by ``random.Random(seed).sample``), spoken by both voices, with ids
``<speaker>_g<j, 4 digits>``: with only the 56 training sentences the reference model memorised
them and did not speak unseen ones any better as it trained (Sources/TorchShim/CONTRACT.md §7).
``--generated-val M`` sends M further generated sentences to validation (default 0: validation
stays the held-out natural sentences; generated ones run longer than the demo's 60 codes).

Manifest records (fields of ``tools/build_gpt_prompt_pairs.py``)
----------------------------------------------------------------
Every target utterance gets ``--pairs-per-target`` records, each pairing it with a different
prompt utterance of the same speaker from the same split (chosen with ``random.Random(seed)``):
``id`` = "<target_id>__<prompt_id>", ``speaker``, ``prompt_id``, ``prompt_audio_path``,
``prompt_condition_path``, ``prompt_condition_len`` (32), ``prompt_emo_vec_path``,
``prompt_duration`` (seconds), ``target_id``, ``target_audio_path``, ``target_text``,
``target_text_ids_path``, ``target_text_len``, ``target_codes_path``, ``target_code_len``,
``target_emo_vec_path``; validation records also have ``target_codec_audio_path`` (the codec
floor below). The condition / emo_vec files are small stand-ins (IndexTTS-2's are
float32 [32, 1280] perceiver latents and an emotion vector): the prompt's log-mel frames
linearly resampled to 32 rows, and the mean log-mel frame.

Tokenizer (text ids)
--------------------
The text is NFC-normalised, whitespace collapsed to single spaces and stripped, then mapped
character by character. Each Hangul syllable (U+AC00..U+D7A3) is decomposed into its jamo:
``s = ord(ch) - 0xAC00; lead = s // 588; vowel = (s % 588) // 28; tail = s % 28`` and emits
``LEAD_BASE + lead``, ``VOWEL_BASE + vowel`` and, when ``tail > 0``, ``TAIL_BASE + tail - 1``.
Ids::

    0 start_text   1 stop_text   2 <unk>   3 space
    4..15   punctuation  . , ? ! ~ - : ; ' " ( )       (PUNCT[i] -> 4 + i)
    16..25  digits 0-9
    26..44  19 leading consonants  (LEAD_BASE  = 26)
    45..65  21 vowels              (VOWEL_BASE = 45)
    66..92  27 trailing consonants (TAIL_BASE  = 66)

Anything else maps to 2 (<unk>). The vocabulary has 93 ids, so the reference model's
``--text-vocab 128`` covers it. The files hold the ids without start/stop tokens (the model adds
them), like the trainer's text_ids files.

Codec (codes)
-------------
A deliberately simple stand-in for IndexTTS-2's semantic codes: quantised log-mel frames at
25 frames/s.

1. espeak-ng writes 22.05 kHz WAV; ``sox -D in.wav -r 16000 -c 1 -b 16 out.wav`` resamples it
   (``-D``: no dither; sox's default dither is random, which made every run's audio differ).
2. Samples are scaled to [-1, 1); the signal is padded with 512 zeros on both sides.
3. Frames: window 1024 samples (Hann, ``0.5 - 0.5 cos(2 pi n / 1024)``), hop 640 samples
   (25 frames/s at 16 kHz); ``n_frames = 1 + (len(padded) - 1024) // 640``.
4. Power spectrum ``|rfft(frame, 1024)|^2`` (513 bins), then 32 triangular mel filters
   (HTK mel scale ``2595 log10(1 + f / 700)``, 0 .. 8000 Hz, unnormalised triangles on the
   FFT bin frequencies), then ``log(mel + 1e-6)``.
5. The code book: k-means with K = ``--codebook-size`` (default 256; fewer if there are fewer
   frames) over all frames of all utterances (training and validation), initialised with K distinct frames drawn by
   ``numpy.random.RandomState(seed).choice``, 20 Lloyd iterations (an empty cluster keeps its
   centroid). Saved to codebook.npy.
6. Each frame's code is the index of its nearest centroid (squared Euclidean distance, ties to
   the lowest index), saved as int32 [n_frames].

Codec floor (``codec_audio``)
-----------------------------
The codec's decoder is ``reference_model.CodecDecoder`` over codebook.npy and the filterbank of
step 4 (code-book log-mel frames interpolated to a 160-sample hop -> mel power -> power spectrum by
the band-normalised transpose of the filterbank -> 32 rounds of fast Griffin-Lim with torch.stft /
torch.istft; see its docstring). ``export_reference_model.py --codebook DIR/codebook.npy`` puts the
same decoder, with the same buffers, into the reference model, whose ``synthesize`` and
``decode_codes`` use it. Here it is compiled with ``torch.jit.script`` and each validation target's
own codes are decoded with it, written as 16 kHz mono PCM16 (``round(x * 32767)``) to
``codec_audio/<utt>.wav`` and named by the validation records' ``target_codec_audio_path``: the
audio a model would produce if it predicted every code right, i.e. the best this codec allows
(a floor for MCD, SIM and CER beside the ASR's floor on the real target audio).
scripts/torch/check_reference_codec.py checks that the exported model's ``decode_codes`` gives
the same samples.

The whole pipeline is deterministic for a given espeak-ng / sox / numpy / torch build.
"""

import argparse
import io
import json
import os
import random
import re
import subprocess
import sys
import time
import unicodedata
import wave
from concurrent.futures import ThreadPoolExecutor

import numpy as np

SENTENCES = [
    "안녕하세요.",
    "반갑습니다.",
    "오늘 날씨가 참 좋네요.",
    "지금 몇 시예요?",
    "저는 학생입니다.",
    "이것은 무엇입니까?",
    "감사합니다.",
    "죄송합니다, 잘 모르겠어요.",
    "어디에 가세요?",
    "도서관에 갑니다.",
    "밥 먹었어요?",
    "네, 먹었어요.",
    "이름이 뭐예요?",
    "제 이름은 민수입니다.",
    "내일 만나요.",
    "주말에 뭐 해요?",
    "영화를 보러 갈 거예요.",
    "커피 한 잔 주세요.",
    "물 좀 주시겠어요?",
    "화장실이 어디예요?",
    "버스 정류장은 저쪽이에요.",
    "지하철을 타고 왔어요.",
    "비가 오고 있어요.",
    "우산을 가져가세요.",
    "오늘은 조금 피곤해요.",
    "일찍 자야겠어요.",
    "음악을 좋아해요.",
    "노래를 불러 주세요.",
    "한국어를 공부하고 있어요.",
    "발음이 어려워요.",
    "천천히 말해 주세요.",
    "다시 한 번 말해 주세요.",
    "전화번호가 어떻게 되세요?",
    "생일 축하합니다.",
    "새해 복 많이 받으세요.",
    "맛있게 드세요.",
    "잘 먹겠습니다.",
    "수고하셨습니다.",
    "조심히 가세요.",
    "안녕히 주무세요.",
    "시장에서 사과를 샀어요.",
    "가격이 얼마예요?",
    "너무 비싸요.",
    "조금 깎아 주세요.",
    "이 옷을 입어 봐도 돼요?",
    "창문을 열어 주세요.",
    "문을 닫아 주세요.",
    "불을 꺼 주세요.",
    "책을 읽고 있어요.",
    "편지를 썼어요.",
    "친구를 기다리고 있어요.",
    "공원에서 산책했어요.",
    "바다가 보고 싶어요.",
    "산에 올라갔어요.",
    "기차가 곧 출발합니다.",
    "회의는 세 시에 시작해요.",
    "숙제를 다 했어요.",
    "시험이 다음 주예요.",
    "병원에 가야 해요.",
    "약을 드셨어요?",
    "행복한 하루 보내세요.",
    "이것은 학습 중 생성된 샘플입니다.",
]

# Training-only sentences made combinatorially (``--generated N``): subject, time, place and
# an object-verb phrase, e.g. "동생은 주말에 공원에서 사진을 찍어요." (10 x 10 x 10 x 16 = 16000
# combinations; N of them drawn by random.Random(seed)). They give the model enough different text
# to speak sentences it has not seen; the validation sentences stay the held-out ones of SENTENCES.
GEN_SUBJECTS = ["저는", "친구는", "동생은", "선생님은", "어머니는", "아버지는", "우리는", "그 사람은", "언니는", "할머니는"]
GEN_TIMES = ["오늘", "내일", "어제", "아침에", "저녁에", "주말에", "지금", "가끔", "매일", "밤늦게"]
GEN_PLACES = ["학교에서", "집에서", "공원에서", "시장에서", "도서관에서", "회사에서", "식당에서", "카페에서",
              "바닷가에서", "병원 앞에서"]
GEN_PHRASES = ["책을 읽어요", "밥을 먹어요", "커피를 마셔요", "음악을 들어요", "친구를 만나요", "편지를 써요",
               "영화를 봐요", "운동을 해요", "사진을 찍어요", "노래를 불러요", "숙제를 해요", "빵을 샀어요",
               "전화를 했어요", "그림을 그려요", "손님을 기다려요", "한국어를 배워요"]


def generated_sentences(n: int, seed: int) -> list:
    combos = [f"{a} {b} {c} {d}." for a in GEN_SUBJECTS for b in GEN_TIMES for c in GEN_PLACES for d in GEN_PHRASES]
    return random.Random(seed).sample(combos, min(n, len(combos)))


SPEAKERS = [
    ("espeak_m", ["-v", "ko", "-s", "165"]),
    ("espeak_f", ["-v", "ko+f2", "-s", "150"]),
]

# ---- tokenizer -------------------------------------------------------------------------------
START_TEXT, STOP_TEXT, UNK, SPACE = 0, 1, 2, 3
PUNCT = ".,?!~-:;'\"()"
PUNCT_BASE, DIGIT_BASE, LEAD_BASE, VOWEL_BASE, TAIL_BASE = 4, 16, 26, 45, 66
TEXT_VOCAB = TAIL_BASE + 27  # 93


def normalize_text(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()


def tokenize(text: str) -> list:
    ids = []
    for ch in normalize_text(text):
        o = ord(ch)
        if 0xAC00 <= o <= 0xD7A3:
            s = o - 0xAC00
            ids.append(LEAD_BASE + s // 588)
            ids.append(VOWEL_BASE + (s % 588) // 28)
            if s % 28:
                ids.append(TAIL_BASE + s % 28 - 1)
        elif ch == " ":
            ids.append(SPACE)
        elif ch in PUNCT:
            ids.append(PUNCT_BASE + PUNCT.index(ch))
        elif "0" <= ch <= "9":
            ids.append(DIGIT_BASE + o - ord("0"))
        else:
            ids.append(UNK)
    return ids


# ---- codec -----------------------------------------------------------------------------------
SAMPLE_RATE, N_FFT, HOP, N_MELS, F_MAX = 16000, 1024, 640, 32, 8000.0
COND_ROWS = 32


def mel_filterbank() -> np.ndarray:
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    bins = np.arange(N_FFT // 2 + 1) * SAMPLE_RATE / N_FFT
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(F_MAX), N_MELS + 2))
    fb = np.zeros((N_MELS, bins.size), dtype=np.float64)
    for m in range(N_MELS):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        up = (bins - lo) / (mid - lo)
        down = (hi - bins) / (hi - mid)
        fb[m] = np.maximum(0.0, np.minimum(up, down))
    return fb


FILTERS = mel_filterbank()
WINDOW = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)


def log_mel(samples: np.ndarray) -> np.ndarray:
    x = np.pad(samples.astype(np.float64), (N_FFT // 2, N_FFT // 2))
    n_frames = 1 + (x.size - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n_frames)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * WINDOW[None, :], n=N_FFT, axis=1)) ** 2
    return np.log(spec @ FILTERS.T + 1e-6).astype(np.float32)  # [n_frames, N_MELS]


def kmeans(frames: np.ndarray, k: int, seed: int, iters: int = 20) -> np.ndarray:
    rs = np.random.RandomState(seed)
    k = min(k, frames.shape[0])
    cent = frames[rs.choice(frames.shape[0], size=k, replace=False)].astype(np.float64)
    data = frames.astype(np.float64)
    for _ in range(iters):
        assign = nearest(data, cent)
        for j in range(k):
            members = data[assign == j]
            if members.shape[0]:
                cent[j] = members.mean(axis=0)
    return cent.astype(np.float32)


def nearest(data: np.ndarray, cent: np.ndarray) -> np.ndarray:
    d = (data * data).sum(1)[:, None] - 2.0 * data @ cent.T + (cent * cent).sum(1)[None, :]
    return d.argmin(axis=1)


def read_wav(path: str) -> np.ndarray:
    with wave.open(path, "rb") as w:
        assert w.getframerate() == SAMPLE_RATE and w.getnchannels() == 1 and w.getsampwidth() == 2, path
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def synthesize(text: str, voice_args: list, out_wav: str) -> None:
    speech = subprocess.run(["espeak-ng", *voice_args, "--stdout", text], check=True, capture_output=True).stdout
    subprocess.run(["sox", "-q", "-D", "-t", "wav", "-", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", out_wav],
                   input=speech, check=True, capture_output=True)


def codec_decoder(codebook: np.ndarray):
    """The codec's decoder (reference_model.CodecDecoder, scripted as in the exported model):
    int codes -> float64 samples in [-1, 1]."""
    import torch
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from reference_model import CodecDecoder

    torch.set_num_threads(1)
    module = torch.jit.script(CodecDecoder(torch.from_numpy(codebook.astype(np.float32)),
                                           torch.from_numpy(FILTERS), sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop=HOP))

    def decode(codes: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module.decode(torch.from_numpy(codes.astype(np.int64))).double().numpy()

    return decode


def write_wav(path: str, samples: np.ndarray) -> None:
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())


def resample_rows(frames: np.ndarray, rows: int) -> np.ndarray:
    src = np.linspace(0.0, frames.shape[0] - 1, rows)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, frames.shape[0] - 1)
    w = (src - lo)[:, None]
    return ((1.0 - w) * frames[lo] + w * frames[hi]).astype(np.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--sentences", type=int, default=len(SENTENCES))
    ap.add_argument("--generated", type=int, default=400,
                    help="training-only sentences made from word lists (GEN_*), beside the N sentences")
    ap.add_argument("--generated-val", type=int, default=0,
                    help="further generated sentences (unseen combinations of the same words) for validation")
    ap.add_argument("--pairs-per-target", type=int, default=2)
    ap.add_argument("--codebook-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.sentences < 2:
        ap.error("--sentences must be at least 2")
    t0 = time.time()
    out = os.path.abspath(args.out)
    for sub in ("audio", "text_ids", "codes", "condition", "emo_vec", "codec_audio"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)

    utts = []  # dicts: id, speaker, text, split, rel paths
    for i in range(args.sentences):
        text = SENTENCES[i % len(SENTENCES)]
        if i >= len(SENTENCES):
            text = text.rstrip(".?!") + f" {i // len(SENTENCES) + 1}번."
        split = "val" if i % 10 == 9 or (args.sentences < 10 and i == args.sentences - 1) else "train"
        for spk, voice in SPEAKERS:
            uid = f"{spk}_{i:04d}"
            utts.append({"id": uid, "speaker": spk, "voice": voice, "text": normalize_text(text), "split": split})
    generated = generated_sentences(args.generated + args.generated_val, args.seed)
    for j, text in enumerate(generated):
        split = "val" if j >= args.generated else "train"
        for spk, voice in SPEAKERS:
            uid = f"{spk}_g{j:04d}"
            utts.append({"id": uid, "speaker": spk, "voice": voice, "text": normalize_text(text), "split": split})

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda u: synthesize(u["text"], u["voice"], os.path.join(out, "audio", u["id"] + ".wav")), utts))

    feats = {}
    for u in utts:
        samples = read_wav(os.path.join(out, "audio", u["id"] + ".wav"))
        u["duration"] = round(samples.size / SAMPLE_RATE, 4)
        feats[u["id"]] = log_mel(samples)
    all_frames = np.concatenate([feats[u["id"]] for u in utts], axis=0)
    codebook = kmeans(all_frames, args.codebook_size, args.seed)
    np.save(os.path.join(out, "codebook.npy"), codebook)

    for u in utts:
        f = feats[u["id"]]
        codes = nearest(f.astype(np.float64), codebook.astype(np.float64)).astype(np.int32)
        ids = np.asarray(tokenize(u["text"]), dtype=np.int32)
        u["text_len"], u["code_len"] = int(ids.size), int(codes.size)
        np.save(os.path.join(out, "text_ids", u["id"] + ".npy"), ids)
        np.save(os.path.join(out, "codes", u["id"] + ".npy"), codes)
        np.save(os.path.join(out, "condition", u["id"] + ".npy"), resample_rows(f, COND_ROWS))
        np.save(os.path.join(out, "emo_vec", u["id"] + ".npy"), f.mean(axis=0).astype(np.float32))

    decode = codec_decoder(codebook)
    for u in utts:
        if u["split"] == "val":
            codes = np.load(os.path.join(out, "codes", u["id"] + ".npy"))
            write_wav(os.path.join(out, "codec_audio", u["id"] + ".wav"), decode(codes))

    rng = random.Random(args.seed)
    counts = {}
    for split in ("train", "val"):
        records = []
        pool_by_spk = {}
        for u in utts:
            if u["split"] == split:
                pool_by_spk.setdefault(u["speaker"], []).append(u)
        for u in utts:
            if u["split"] != split:
                continue
            others = [p for p in pool_by_spk[u["speaker"]] if p["id"] != u["id"]]
            prompts = rng.sample(others, min(args.pairs_per_target, len(others))) if others else [u]
            for p in prompts:
                records.append({
                    "id": f"{u['id']}__{p['id']}",
                    "speaker": u["speaker"],
                    "prompt_id": p["id"],
                    "prompt_audio_path": f"audio/{p['id']}.wav",
                    "prompt_condition_path": f"condition/{p['id']}.npy",
                    "prompt_condition_len": COND_ROWS,
                    "prompt_emo_vec_path": f"emo_vec/{p['id']}.npy",
                    "prompt_duration": p["duration"],
                    "target_id": u["id"],
                    "target_audio_path": f"audio/{u['id']}.wav",
                    "target_text": u["text"],
                    "target_text_ids_path": f"text_ids/{u['id']}.npy",
                    "target_text_len": u["text_len"],
                    "target_codes_path": f"codes/{u['id']}.npy",
                    "target_code_len": u["code_len"],
                    "target_emo_vec_path": f"emo_vec/{u['id']}.npy",
                    **({"target_codec_audio_path": f"codec_audio/{u['id']}.wav"} if split == "val" else {}),
                })
        with open(os.path.join(out, f"gpt_pairs_{split}.jsonl"), "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        counts[split] = len(records)

    code_lens = [u["code_len"] for u in utts]
    text_lens = [u["text_len"] for u in utts]
    summary = {
        "utterances": len(utts),
        "records": counts,
        "sentences": args.sentences,
        "speakers": {s: v for s, v in SPEAKERS},
        "pairs_per_target": args.pairs_per_target,
        "seed": args.seed,
        "text_vocab": TEXT_VOCAB,
        "tokenizer": {"start_text": START_TEXT, "stop_text": STOP_TEXT, "unk": UNK, "space": SPACE,
                      "punct": PUNCT, "punct_base": PUNCT_BASE, "digit_base": DIGIT_BASE,
                      "lead_base": LEAD_BASE, "vowel_base": VOWEL_BASE, "tail_base": TAIL_BASE},
        "codec": {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP, "frames_per_second": SAMPLE_RATE / HOP,
                  "n_mels": N_MELS, "f_max": F_MAX, "codebook_size": int(codebook.shape[0])},
        "text_len": {"min": min(text_lens), "max": max(text_lens)},
        "code_len": {"min": min(code_lens), "max": max(code_lens)},
        "codec_floor": {"decoder": "reference_model.CodecDecoder (Griffin-Lim)", "dir": "codec_audio",
                        "utterances": sum(1 for u in utts if u["split"] == "val")},
        "seconds": round(time.time() - t0, 2),
    }
    with open(os.path.join(out, "dataset.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
    print(json.dumps({"out": out, "records": counts, "utterances": len(utts), "seconds": summary["seconds"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
