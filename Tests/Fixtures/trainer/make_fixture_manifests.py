#!/usr/bin/env python3
"""Writes synthetic inputs for the IndexTTS-2 trainer fixture (indextts-fixture/trainers/train_gpt_v2.py).

  make_fixture_manifests.py --out DIR [--train 40] [--val 8] [--lang ko]

writes, in DIR:
  train_pairs.jsonl, val_pairs.jsonl  N paired records with the field names of the real
                                      tools/build_gpt_prompt_pairs.py (edu-ide/index-tts 7de3cca);
                                      the .npy paths they name are not created (the fixture never
                                      loads them)
  tokenizer.model                     a dummy file (the fixture only checks it exists)
  config.yaml, gpt.pth                dummy model config and base checkpoint (likewise)
and prints the trainer arguments that use them, e.g.
  --train-manifest DIR/train_pairs.jsonl::ko --val-manifest DIR/val_pairs.jsonl::ko
  --tokenizer DIR/tokenizer.model --config DIR/config.yaml --base-checkpoint DIR/gpt.pth
Standard library only.
"""
import argparse
import json
import os


def pair(i: int, lang: str) -> dict:
    target, prompt = f"{lang}_spk{i % 3}_{i:05d}", f"{lang}_spk{i % 3}_{(i + 1):05d}"
    return {
        "id": f"{target}__{prompt}",
        "speaker": f"spk{i % 3}",
        "prompt_id": prompt,
        "prompt_audio_path": f"audio/{prompt}.wav",
        "prompt_condition_path": f"features/{prompt}_condition.npy",
        "prompt_condition_len": 32,
        "prompt_emo_vec_path": f"features/{prompt}_emo_vec.npy",
        "prompt_duration": 2.5,
        "target_id": target,
        "target_audio_path": f"audio/{target}.wav",
        "target_text": "안녕하세요",
        "target_text_ids_path": f"features/{target}_text_ids.npy",
        "target_text_len": 12 + i % 5,
        "target_codes_path": f"features/{target}_codes.npy",
        "target_code_len": 90 + i % 17,
        "target_emo_vec_path": f"features/{target}_emo_vec.npy",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--train", type=int, default=40, help="training records")
    p.add_argument("--val", type=int, default=8, help="validation records")
    p.add_argument("--lang", default="ko")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name, count, offset in (("train_pairs.jsonl", a.train, 0), ("val_pairs.jsonl", a.val, 100000)):
        with open(os.path.join(a.out, name), "w", encoding="utf-8") as fh:
            for i in range(count):
                fh.write(json.dumps(pair(offset + i, a.lang), ensure_ascii=False) + "\n")
    with open(os.path.join(a.out, "tokenizer.model"), "wb") as fh:
        fh.write(b"fixture tokenizer (not a SentencePiece model)\n")
    with open(os.path.join(a.out, "config.yaml"), "w", encoding="utf-8") as fh:
        fh.write("gpt:\n  layers: 2\n  model_dim: 64\n  heads: 4\n  number_text_tokens: 64\n")
    with open(os.path.join(a.out, "gpt.pth"), "wb") as fh:
        fh.write(b"fixture base checkpoint (not loaded)\n")
    d = os.path.abspath(a.out)
    print(f"--train-manifest {d}/train_pairs.jsonl::{a.lang} --val-manifest {d}/val_pairs.jsonl::{a.lang} "
          f"--tokenizer {d}/tokenizer.model --config {d}/config.yaml --base-checkpoint {d}/gpt.pth")


if __name__ == "__main__":
    main()
