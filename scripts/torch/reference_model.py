"""A small GPT-style text-to-codes model with IndexTTS-2's GPT-stage losses.

This is the *reference model* of the TorchScript training contract
(Sources/TorchShim/CONTRACT.md). It is deliberately small (about 0.8 M parameters with the
defaults) so the libtorch shim can train it on CPU in tests, but its inputs, token layout and
losses follow IndexTTS-2's `UnifiedVoice` and the community trainer's `compute_losses`
(see ../shared/reference/indextts-and-eval.md, section 1.2):

Sequence layout (one row of the batch, before padding)::

    [start_text, t_1 .. t_n, start_mel, c_1 .. c_m]          inputs   (n = text_len, m = code_len)
    [t_1 .. t_n, stop_text,  c_1 .. c_m, stop_mel]           targets

* text ids are wrapped with ``start_text = 0`` / ``stop_text = 1`` (as in IndexTTS-2),
  codes with ``start_mel = number_mel_codes - 2`` / ``stop_mel = number_mel_codes - 1``
  (IndexTTS-2: 8192 / 8193 with ``number_mel_codes = 8194``; here 256 / 257 with 258).
* The text part is padded to the batch's longest text and the code part to the longest code
  sequence; padding positions are filled with the stop token (like ``set_text_padding`` /
  ``set_mel_padding``) whatever the caller put there, and are *masked out of attention* (keys)
  and out of the losses. Text and codes have separate learned position embeddings that start at
  0, so a sample's outputs do not depend on how much padding its batch has.
* ``text_loss``: cross-entropy of the next text token, masked to ``text_len + 1`` positions
  (the +1 is the stop token); ``sum(ce * mask) / sum(mask)``, a token-weighted mean over the
  batch.
* ``mel_loss``: the same over the codes, masked to ``code_len + 1`` positions.
* ``mel_top1``: argmax accuracy over the valid code positions including the stop token (0..1).
* ``loss = text_loss_weight * text_loss + mel_loss_weight * mel_loss`` with 0.2 / 0.8.

There is no dropout and no other randomness in ``forward``: the model is deterministic, which
the shim's tests rely on (gradient accumulation equivalence, exact resume).

Conditioning (IndexTTS-2's speaker prompt latents, emotion vector, duration embeddings) is not
modelled: the reference model is text -> codes only.
"""

import math
from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        assert d_model % n_heads == 0, "d_model must be a multiple of n_heads"
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        # x: [B, L, D]; mask: [B, 1, L, L] bool, True = may attend.
        b, l, d = x.size(0), x.size(1), x.size(2)
        qkv = self.qkv(x).view(b, l, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B, H, L, Dh]
        scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        scores = scores.masked_fill(torch.logical_not(mask), float("-inf"))
        att = torch.softmax(scores, dim=-1)
        y = torch.matmul(att, v).transpose(1, 2).reshape(b, l, d)
        return self.proj(y)


class Block(nn.Module):
    """A pre-LayerNorm GPT-2 block (no dropout)."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.out = nn.Linear(4 * d_model, d_model)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x), mask)
        x = x + self.out(F.gelu(self.fc(self.ln2(x))))
        return x


class ReferenceTTSGPT(nn.Module):
    def __init__(
        self,
        number_text_tokens: int = 128,
        number_mel_codes: int = 258,
        d_model: int = 96,
        n_layers: int = 3,
        n_heads: int = 4,
        max_text_tokens: int = 256,
        max_mel_tokens: int = 512,
        text_loss_weight: float = 0.2,
        mel_loss_weight: float = 0.8,
    ):
        super().__init__()
        self.number_text_tokens = number_text_tokens
        self.number_mel_codes = number_mel_codes
        self.start_text_token = 0
        self.stop_text_token = 1
        self.start_mel_token = number_mel_codes - 2
        self.stop_mel_token = number_mel_codes - 1
        self.max_text_tokens = max_text_tokens
        self.max_mel_tokens = max_mel_tokens
        self.text_loss_weight = text_loss_weight
        self.mel_loss_weight = mel_loss_weight

        self.text_embedding = nn.Embedding(number_text_tokens, d_model)
        self.mel_embedding = nn.Embedding(number_mel_codes, d_model)
        # +1: the start token occupies position 0 of each segment.
        self.text_pos_embedding = nn.Embedding(max_text_tokens + 1, d_model)
        self.mel_pos_embedding = nn.Embedding(max_mel_tokens + 1, d_model)
        self.blocks = nn.ModuleList([Block(d_model, n_heads) for _ in range(n_layers)])
        self.final_norm = nn.LayerNorm(d_model)
        self.text_head = nn.Linear(d_model, number_text_tokens)
        self.mel_head = nn.Linear(d_model, number_mel_codes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @torch.jit.export
    def contract_info(self) -> Dict[str, int]:
        """Token layout and limits, for callers that want to validate batches."""
        return {
            "number_text_tokens": self.number_text_tokens,
            "number_mel_codes": self.number_mel_codes,
            "start_text_token": self.start_text_token,
            "stop_text_token": self.stop_text_token,
            "start_mel_token": self.start_mel_token,
            "stop_mel_token": self.stop_mel_token,
            "max_text_tokens": self.max_text_tokens,
            "max_mel_tokens": self.max_mel_tokens,
        }

    def forward(
        self, text_ids: Tensor, text_lengths: Tensor, code_ids: Tensor, code_lengths: Tensor
    ) -> Dict[str, Tensor]:
        if text_ids.dim() != 2 or code_ids.dim() != 2:
            raise RuntimeError(
                "shape mismatch: text_ids and code_ids must be 2-D [B, T] / [B, C], got "
                + str(text_ids.dim()) + "-D and " + str(code_ids.dim()) + "-D"
            )
        b = text_ids.size(0)
        t = text_ids.size(1)
        c = code_ids.size(1)
        if text_lengths.dim() != 1 or text_lengths.size(0) != b:
            raise RuntimeError(
                "shape mismatch: text_lengths must have shape [" + str(b) + "], got "
                + str(text_lengths.size())
            )
        if code_ids.size(0) != b or code_lengths.dim() != 1 or code_lengths.size(0) != b:
            raise RuntimeError(
                "shape mismatch: code_ids must be [" + str(b) + ", C] and code_lengths ["
                + str(b) + "], got " + str(code_ids.size()) + " and " + str(code_lengths.size())
            )
        if t > self.max_text_tokens or c > self.max_mel_tokens:
            raise RuntimeError(
                "shape mismatch: text length " + str(t) + " / code length " + str(c)
                + " exceed the model's maximum " + str(self.max_text_tokens) + " / "
                + str(self.max_mel_tokens)
            )
        device = text_ids.device
        text = text_ids.long()
        codes = code_ids.long()
        tl = text_lengths.long().clamp(0, t)
        cl = code_lengths.long().clamp(0, c)

        # Positions 0..t of the text segment (0 = start token), 0..c of the code segment.
        tpos = torch.arange(t + 1, device=device).unsqueeze(0)  # [1, t+1]
        cpos = torch.arange(c + 1, device=device).unsqueeze(0)  # [1, c+1]
        text_valid = tpos <= tl.unsqueeze(1)  # [B, t+1]: start + text_len tokens
        code_valid = cpos <= cl.unsqueeze(1)  # [B, c+1]

        # Targets: the next token, the stop token at position len, stop padding after it.
        text_next = torch.cat([text, torch.full([b, 1], self.stop_text_token, dtype=torch.long, device=device)], 1)
        text_targets = torch.where(tpos < tl.unsqueeze(1), text_next, torch.full_like(text_next, self.stop_text_token))
        code_next = torch.cat([codes, torch.full([b, 1], self.stop_mel_token, dtype=torch.long, device=device)], 1)
        code_targets = torch.where(cpos < cl.unsqueeze(1), code_next, torch.full_like(code_next, self.stop_mel_token))
        # Inputs: start token, then the tokens; padding positions carry the stop token.
        text_inputs = torch.cat([torch.full([b, 1], self.start_text_token, dtype=torch.long, device=device), text_targets[:, :t]], 1)
        code_inputs = torch.cat([torch.full([b, 1], self.start_mel_token, dtype=torch.long, device=device), code_targets[:, :c]], 1)

        x = torch.cat(
            [
                self.text_embedding(text_inputs) + self.text_pos_embedding(tpos),
                self.mel_embedding(code_inputs) + self.mel_pos_embedding(cpos),
            ],
            1,
        )  # [B, L, D], L = t + c + 2
        length = t + c + 2
        key_valid = torch.cat([text_valid, code_valid], 1)  # [B, L]
        causal = torch.ones([length, length], dtype=torch.bool, device=device).tril()
        mask = torch.logical_and(causal.unsqueeze(0), key_valid.unsqueeze(1)).unsqueeze(1)  # [B,1,L,L]
        for block in self.blocks:
            x = block(x, mask)
        h = self.final_norm(x)
        text_logits = self.text_head(h[:, : t + 1]).float()  # [B, t+1, Vt]
        code_logits = self.mel_head(h[:, t + 1 :]).float()  # [B, c+1, Vm]

        text_mask = text_valid.to(text_logits.dtype)
        code_mask = code_valid.to(code_logits.dtype)
        text_ce = F.cross_entropy(text_logits.transpose(1, 2), text_targets, reduction="none")
        code_ce = F.cross_entropy(code_logits.transpose(1, 2), code_targets, reduction="none")
        text_loss = (text_ce * text_mask).sum() / text_mask.sum().clamp_min(1.0)
        mel_loss = (code_ce * code_mask).sum() / code_mask.sum().clamp_min(1.0)
        correct = (code_logits.argmax(-1) == code_targets).to(code_mask.dtype) * code_mask
        mel_top1 = correct.sum() / code_mask.sum().clamp_min(1.0)
        loss = self.text_loss_weight * text_loss + self.mel_loss_weight * mel_loss
        return {
            "loss": loss,
            "text_loss": text_loss.detach(),
            "mel_loss": mel_loss.detach(),
            "mel_top1": mel_top1.detach(),
        }

    # ---- synthesis (Sources/TorchShim/CONTRACT.md, "Synthesis") --------------------------------
    #
    # Greedy decoding of codes from the text, then a stand-in vocoder. The reference model has no
    # real vocoder (IndexTTS-2's is a separate BigVGAN stage), so each code is rendered as one
    # 40 ms frame (640 samples at 16 kHz, the dataset's 25 codes/s) of a tone whose pitch follows
    # the code, with a raised-cosine envelope so frames join without clicks. The result is audio
    # with the right timing, not speech: an untrained or tiny model scores CER near 1, which is
    # the honest number for it.

    @torch.jit.export
    def synthesis_sample_rate(self) -> int:
        return 16000

    @torch.jit.export
    def tokenize(self, text: str) -> Tensor:
        """The dataset's tokenizer (make_reference_dataset.py): Hangul syllables as jamo ids.
        TorchScript iterates a str by UTF-8 bytes (eager Python by code points), so bytes are decoded here."""
        points: List[int] = []
        pending = 0
        value = 0
        for ch in text:
            b = ord(ch)
            if b > 0xFF:  # eager Python iterates code points
                points.append(b)
                pending = 0
                continue
            if pending > 0 and (b & 0xC0) == 0x80:
                value = (value << 6) | (b & 0x3F)
                pending -= 1
                if pending == 0:
                    points.append(value)
                continue
            pending = 0
            if b < 0x80:
                points.append(b)
            elif (b & 0xE0) == 0xC0:
                value, pending = b & 0x1F, 1
            elif (b & 0xF0) == 0xE0:
                value, pending = b & 0x0F, 2
            elif (b & 0xF8) == 0xF0:
                value, pending = b & 0x07, 3
            else:
                points.append(0xFFFD)
        punct = ".,?!~-:;'\"()"
        ids: List[int] = []
        last_space = True
        for o in points:
            if o == 32 or o == 9 or o == 10 or o == 13:
                if not last_space:
                    ids.append(3)
                last_space = True
                continue
            last_space = False
            if 0xAC00 <= o and o <= 0xD7A3:
                s = o - 0xAC00
                ids.append(26 + s // 588)
                ids.append(45 + (s % 588) // 28)
                if s % 28 != 0:
                    ids.append(66 + s % 28 - 1)
            elif o < 128 and punct.find(chr(o)) >= 0:
                ids.append(4 + punct.find(chr(o)))
            elif 48 <= o and o <= 57:
                ids.append(16 + o - 48)
            else:
                ids.append(2)
        if len(ids) > 0 and ids[-1] == 3:
            ids = ids[:-1]
        ids = ids[: self.max_text_tokens]
        return torch.tensor(ids, dtype=torch.long)

    def _next_code_logits(self, text: Tensor, codes: List[int]) -> Tensor:
        device = self.text_embedding.weight.device
        t = text.size(0)
        c = len(codes)
        text_inputs = torch.cat([torch.zeros([1], dtype=torch.long, device=device), text.to(device)]).unsqueeze(0)
        code_inputs = torch.tensor([self.start_mel_token] + codes, dtype=torch.long, device=device).unsqueeze(0)
        tpos = torch.arange(t + 1, device=device).unsqueeze(0)
        cpos = torch.arange(c + 1, device=device).unsqueeze(0)
        x = torch.cat(
            [
                self.text_embedding(text_inputs) + self.text_pos_embedding(tpos),
                self.mel_embedding(code_inputs) + self.mel_pos_embedding(cpos),
            ],
            1,
        )
        length = t + c + 2
        mask = torch.ones([length, length], dtype=torch.bool, device=device).tril().unsqueeze(0).unsqueeze(0)
        for block in self.blocks:
            x = block(x, mask)
        h = self.final_norm(x[:, -1:])
        return self.mel_head(h)[0, 0].float()

    @torch.jit.export
    def synthesize(self, text: str, max_codes: int) -> Tensor:
        ids = self.tokenize(text)
        limit = min(max_codes, self.max_mel_tokens)
        codes: List[int] = []
        while len(codes) < limit:
            logits = self._next_code_logits(ids, codes)
            if len(codes) == 0:
                logits[self.stop_mel_token] = -1.0e9  # at least one frame
            logits[self.start_mel_token] = -1.0e9
            nxt = int(torch.argmax(logits).item())
            if nxt == self.stop_mel_token:
                break
            codes.append(nxt)
        frame = 640
        n = torch.arange(frame, dtype=torch.float32) / 16000.0
        envelope = 0.5 - 0.5 * torch.cos(2.0 * math.pi * torch.arange(frame, dtype=torch.float32) / frame)
        frames: List[Tensor] = []
        for code in codes:
            f = 110.0 + 12.0 * float(code)
            frames.append(0.3 * envelope * torch.sin(2.0 * math.pi * f * n))
        return torch.cat(frames)
