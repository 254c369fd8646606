"""Deterministic synthetic batches for the reference model (same algorithm as shim_smoke.c).

The generator is specified exactly in Sources/TorchShim/CONTRACT.md ("Synthetic batches") so a
Swift, C or Python caller produces bit-identical batches from (seed, index):

    splitmix64(x): x += 0x9E3779B97F4A7C15; z = x
                   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
                   z = (z ^ (z >> 27)) * 0x94D049BB133111EB
                   return z ^ (z >> 31)                          (all mod 2**64)
    state = splitmix64(seed * 2**32 + index)
    next():  state = state * 6364136223846793005 + 1442695040888963407 (mod 2**64)
             return state >> 33
    for each row i < B:
        tl = T if full_length else T // 2 + next() % (T - T // 2 + 1)
        for j < T: v = 2 + next() % 60;  text[i][j] = v if j < tl else 0
        cl = min(C, 2 * tl)
        for j < C: code[i][j] = (text[i][j // 2] * 7 + (j % 2) * 3) % K if j < cl else 0
        text_lengths[i] = tl; code_lengths[i] = cl

The codes are a deterministic function of the text, so the model can learn them: mel_loss falls
quickly while text_loss (uniform random text over 60 ids) stays near ln(60) = 4.09 inside the
text and learns only the stop token.
"""

from typing import List, Tuple

M64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & M64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class LCG:
    def __init__(self, seed: int, index: int):
        self.state = splitmix64(((seed << 32) + index) & M64)

    def next(self) -> int:
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) & M64
        return self.state >> 33


def make_batch(seed: int, index: int, b: int, t: int, c: int, k: int = 256, full_length: bool = False
               ) -> Tuple[List[List[int]], List[int], List[List[int]], List[int]]:
    rng = LCG(seed, index)
    text, tls, codes, cls = [], [], [], []
    for _ in range(b):
        tl = t if full_length else t // 2 + rng.next() % (t - t // 2 + 1)
        row = []
        for j in range(t):
            v = 2 + rng.next() % 60
            row.append(v if j < tl else 0)
        cl = min(c, 2 * tl)
        crow = [((row[j // 2] * 7 + (j % 2) * 3) % k) if j < cl else 0 for j in range(c)]
        text.append(row)
        tls.append(tl)
        codes.append(crow)
        cls.append(cl)
    return text, tls, codes, cls


def make_torch_batch(seed: int, index: int, b: int, t: int, c: int, k: int = 256, full_length: bool = False):
    import torch

    text, tls, codes, cls = make_batch(seed, index, b, t, c, k, full_length)
    return (
        torch.tensor(text, dtype=torch.int64),
        torch.tensor(tls, dtype=torch.int64),
        torch.tensor(codes, dtype=torch.int64),
        torch.tensor(cls, dtype=torch.int64),
    )
