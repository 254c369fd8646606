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

Speaker conditioning (a stand-in for IndexTTS-2's prompt latents): ``forward`` takes an optional
fifth tensor ``condition`` float32 [B, R, 32], the voice prompt's log-mel frames resampled to R
rows (the dataset's ``condition/<utt>.npy``, ``prompt_condition_path``). The conditioning
encoder turns each row set into one latent token (the per-band mean and standard deviation over
the rows -> Linear -> GELU -> Linear) that is prepended to the sequence, before ``start_text``:
``[cond, start_text, t_1 .. t_n, start_mel, c_1 .. c_m]``; every position attends to it. Without
a condition (four tensors, as older batches have) the token is a learned ``null_condition``.
``synthesize(text, max_codes, prompt)`` computes the same condition from the prompt's 16 kHz
samples (``CodecDecoder.condition``: the dataset's log-mel analysis inside the module).
The emotion vector and duration embeddings are not modelled.
"""

import math
from typing import Dict, List, Optional

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


class CodecDecoder(nn.Module):
    """The decoder of the reference dataset's codec (make_reference_dataset.py, "Codec"): codes
    back to a waveform. Deterministic, no parameters (its tensors are buffers), TorchScript.

    ``decode(codes)``, codes a 1-D integer tensor of n values in 0..K-1, returns n * hop float32
    samples in [-1, 1] at ``sample_rate`` (16 kHz; hop = 640, so 40 ms per code):

    1. Each code is looked up in the code book: its k-means centroid, a 32-band log-mel frame
       (``log(mel power + 1e-6)``, HTK-mel triangles, Hann window 1024, hop 640).
    2. The frames, centred at samples ``640 t``, are linearly interpolated (in the log domain) to
       frames every ``gl_hop`` = 160 samples (centred at ``160 j``, j = 0 .. 4n), so that the
       spectrogram Griffin-Lim works on overlaps 84 % rather than 37.5 % and moves smoothly between codes.
    3. Mel power ``max(exp(frame), noise_floor)``, then to the 513-bin power spectrum by the transpose
       of the same filterbank with each band divided by its weight sum (``synthesis_basis``): the
       band's mean power per bin, spread back over the band's triangle. Adjacent triangles sum to 1
       between their centres, so each bin gets the interpolation of its two bands' mean powers;
       the result is non-negative. Magnitude = sqrt. ``noise_floor`` = 1e-4 (the dataset's log
       floor is 1e-6) makes the silence codes decode to a noise floor about 65 dB below speech
       peaks (peak ~5e-4) rather than digital zero: no real decoder outputs exact zeros, the
       evaluator rejects an all-but-zero file as a broken synthesis, and a model that only says
       "silence" should score as such (CER 1), not fail. MCD drops frames 40 dB down anyway.
    4. Griffin-Lim, ``iterations`` = 32 rounds of the fast variant (momentum 0.99), with
       torch.stft / torch.istft (n_fft 1024, periodic Hann window 1024, hop 160, centred),
       starting from a fixed phase ``2 pi frac(0.5 k^2 / 1024 + 0.381966 j)`` for bin k of frame j
       (no random numbers: the same codes give the same samples).
    5. The waveform (length n * 640) is scaled down if its peak exceeds 0.99.

    A module made without a code book (``codebook`` of shape [0, M]) keeps the training contract
    but cannot decode: ``decode`` raises, saying so.
    """

    def __init__(self, codebook: Tensor, filterbank: Tensor, sample_rate: int = 16000, n_fft: int = 1024,
                 hop: int = 640, gl_hop: int = 160, iterations: int = 32, momentum: float = 0.99,
                 noise_floor: float = 1.0e-4):
        super().__init__()
        if codebook.dim() != 2 or filterbank.dim() != 2 or codebook.size(1) != filterbank.size(0):
            raise ValueError("codebook [K, M] and filterbank [M, n_fft/2+1] must share M")
        if filterbank.size(1) != n_fft // 2 + 1 or hop % gl_hop != 0:
            raise ValueError("filterbank must have n_fft/2+1 columns and hop must be a multiple of gl_hop")
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop = hop
        self.gl_hop = gl_hop
        self.iterations = iterations
        self.momentum = momentum
        self.noise_floor = noise_floor
        fb = filterbank.double()
        basis = (fb / fb.sum(1, keepdim=True).clamp_min(1e-12)).t().contiguous()  # [bins, M]
        self.register_buffer("codebook", codebook.float().contiguous())
        self.register_buffer("synthesis_basis", basis.float())
        self.register_buffer("analysis_filterbank", fb.float().contiguous())  # [M, bins]
        n = torch.arange(n_fft, dtype=torch.float64)
        self.register_buffer("window", (0.5 - 0.5 * torch.cos(2.0 * math.pi * n / n_fft)).float())
        bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
        self.register_buffer("phase_bin", torch.remainder(0.5 * bins * bins / n_fft, 1.0).float())

    @torch.jit.export
    def codebook_size(self) -> int:
        return self.codebook.size(0)

    @torch.jit.export
    def log_mel(self, samples: Tensor) -> Tensor:
        """The dataset's analysis (make_reference_dataset.log_mel): 16 kHz samples -> [frames, M]
        ``log(mel power + 1e-6)``, Hann window n_fft, hop ``hop``, the signal padded with n_fft/2
        zeros on both sides (computed in float64 like numpy's)."""
        if samples.dim() != 1 or samples.size(0) == 0:
            raise RuntimeError("shape mismatch: the prompt must be a non-empty 1-D tensor of samples, got "
                               + str(samples.size()))
        half = self.n_fft // 2
        x = F.pad(samples.double().reshape(1, -1), [half, half]).reshape(-1)
        frames = x.unfold(0, self.n_fft, self.hop) * self.window.double().unsqueeze(0)  # [n, n_fft]
        power = torch.fft.rfft(frames, n=self.n_fft, dim=1).abs() ** 2
        mel = torch.matmul(power, self.analysis_filterbank.double().t())
        return torch.log(mel + 1.0e-6).float()

    @torch.jit.export
    def condition(self, samples: Tensor, rows: int) -> Tensor:
        """The voice prompt's condition (make_reference_dataset.py's ``condition/<utt>.npy``): its
        log-mel frames linearly resampled to ``rows`` rows, [rows, M] float32."""
        f = self.log_mel(samples)
        n = f.size(0)
        src = torch.linspace(0.0, float(n - 1), rows, dtype=torch.float64)
        lo = src.floor().long()
        hi = (lo + 1).clamp(max=n - 1)
        w = (src - lo.double()).unsqueeze(1)
        return ((1.0 - w) * f.index_select(0, lo).double() + w * f.index_select(0, hi).double()).float()

    @torch.jit.export
    def decode(self, codes: Tensor) -> Tensor:
        k = self.codebook.size(0)
        if k == 0:
            raise RuntimeError("this model was exported without a code book, so it cannot decode codes: "
                               + "export it with export_reference_model.py --codebook DATASET/codebook.npy")
        if codes.dim() != 1 or codes.size(0) == 0:
            raise RuntimeError("shape mismatch: codes must be a non-empty 1-D tensor, got " + str(codes.size()))
        idx = codes.long().to(self.codebook.device)
        if int(idx.min().item()) < 0 or int(idx.max().item()) >= k:
            raise RuntimeError("codes must be in 0.." + str(k - 1) + ", got " + str(int(idx.min().item()))
                               + ".." + str(int(idx.max().item())))
        frames = self.codebook.index_select(0, idx)  # [n, M] log mel power
        n = frames.size(0)
        up = self.hop // self.gl_hop
        length = n * self.hop
        m = n * up + 1  # stft frames of `length` samples, centred, hop gl_hop
        pos = (torch.arange(m, dtype=torch.float32, device=frames.device) / float(up)).clamp(max=float(n - 1))
        lo = pos.floor().long()
        hi = (lo + 1).clamp(max=n - 1)
        w = (pos - lo.float()).unsqueeze(1)
        logmel = (1.0 - w) * frames.index_select(0, lo) + w * frames.index_select(0, hi)  # [m, M]
        power = torch.exp(logmel).clamp_min(self.noise_floor)
        magnitude = torch.matmul(power, self.synthesis_basis.t()).clamp_min(0.0).sqrt().t()  # [bins, m]
        j = torch.arange(m, dtype=torch.float32, device=frames.device)
        phase = 2.0 * math.pi * torch.remainder(self.phase_bin.unsqueeze(1) + 0.381966 * j.unsqueeze(0), 1.0)
        angles = torch.polar(torch.ones_like(magnitude), phase)
        previous = torch.zeros_like(angles)
        for _ in range(self.iterations):
            wave = torch.istft(magnitude * angles, self.n_fft, hop_length=self.gl_hop, win_length=self.n_fft,
                               window=self.window, center=True, length=length)
            rebuilt = torch.stft(wave, self.n_fft, hop_length=self.gl_hop, win_length=self.n_fft,
                                 window=self.window, center=True, pad_mode="reflect", return_complex=True)
            accelerated = rebuilt - (self.momentum / (1.0 + self.momentum)) * previous
            previous = rebuilt
            angles = accelerated / accelerated.abs().clamp_min(1.0e-8)
        wave = torch.istft(magnitude * angles, self.n_fft, hop_length=self.gl_hop, win_length=self.n_fft,
                           window=self.window, center=True, length=length)
        peak = float(wave.abs().max().item())
        if peak > 0.99:
            wave = wave * (0.99 / peak)
        return wave.float()


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
        codec: Optional[CodecDecoder] = None,
        condition_dim: int = 32,
        condition_rows: int = 32,
    ):
        super().__init__()
        self.condition_dim = condition_dim
        self.condition_rows = condition_rows
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
        # The conditioning encoder: per-band mean and std of the prompt's rows -> one latent token.
        self.cond_in = nn.Linear(2 * condition_dim, d_model)
        self.cond_out = nn.Linear(d_model, d_model)
        self.null_condition = nn.Parameter(torch.zeros(d_model))
        self.blocks = nn.ModuleList([Block(d_model, n_heads) for _ in range(n_layers)])
        self.final_norm = nn.LayerNorm(d_model)
        self.text_head = nn.Linear(d_model, number_text_tokens)
        self.mel_head = nn.Linear(d_model, number_mel_codes)
        self.apply(self._init_weights)
        # The codec's decoder (no parameters, so the training contract is unchanged); without a
        # code book it cannot decode and synthesize says so.
        self.codec = codec if codec is not None else CodecDecoder(torch.zeros(0, 32), torch.ones(32, 513))

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
            "condition_rows": self.condition_rows,
            "condition_dim": self.condition_dim,
        }

    def _condition_token(self, condition: Optional[Tensor], b: int) -> Tensor:
        """[B, 1, D]: the conditioning latent of each row's prompt, or the null latent."""
        if condition is None:
            return self.null_condition.view(1, 1, -1).expand(b, 1, self.null_condition.size(0))
        if condition.dim() != 3 or condition.size(0) != b or condition.size(2) != self.condition_dim:
            raise RuntimeError("shape mismatch: condition must be [" + str(b) + ", R, " + str(self.condition_dim)
                               + "], got " + str(condition.size()))
        c = condition.to(self.null_condition.device).float()
        mean = c.mean(1)
        std = (c - mean.unsqueeze(1)).pow(2).mean(1).sqrt()
        z = self.cond_out(F.gelu(self.cond_in(torch.cat([mean, std], 1))))
        return z.unsqueeze(1)

    def forward(
        self, text_ids: Tensor, text_lengths: Tensor, code_ids: Tensor, code_lengths: Tensor,
        condition: Optional[Tensor] = None,
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
                self._condition_token(condition, b),
                self.text_embedding(text_inputs) + self.text_pos_embedding(tpos),
                self.mel_embedding(code_inputs) + self.mel_pos_embedding(cpos),
            ],
            1,
        )  # [B, L, D], L = 1 + t + c + 2
        length = t + c + 3
        key_valid = torch.cat([torch.ones([b, 1], dtype=torch.bool, device=device), text_valid, code_valid], 1)  # [B, L]
        causal = torch.ones([length, length], dtype=torch.bool, device=device).tril()
        mask = torch.logical_and(causal.unsqueeze(0), key_valid.unsqueeze(1)).unsqueeze(1)  # [B,1,L,L]
        for block in self.blocks:
            x = block(x, mask)
        h = self.final_norm(x)
        text_logits = self.text_head(h[:, 1 : t + 2]).float()  # [B, t+1, Vt]
        code_logits = self.mel_head(h[:, t + 2 :]).float()  # [B, c+1, Vm]

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
    # Greedy decoding of codes from the text, then the codec's decoder (CodecDecoder below): each
    # code becomes its code-book log-mel frame and the frames become audio by Griffin-Lim. The
    # reference model has no neural vocoder (IndexTTS-2's is a separate BigVGAN stage); the
    # decoder is the inverse of the dataset's k-means codec, as good as 256 log-mel frames allow.

    @torch.jit.export
    def synthesis_sample_rate(self) -> int:
        return self.codec.sample_rate

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

    def _next_code_logits(self, text: Tensor, codes: List[int], cond: Tensor) -> Tensor:
        device = self.text_embedding.weight.device
        t = text.size(0)
        c = len(codes)
        text_inputs = torch.cat([torch.zeros([1], dtype=torch.long, device=device), text.to(device)]).unsqueeze(0)
        code_inputs = torch.tensor([self.start_mel_token] + codes, dtype=torch.long, device=device).unsqueeze(0)
        tpos = torch.arange(t + 1, device=device).unsqueeze(0)
        cpos = torch.arange(c + 1, device=device).unsqueeze(0)
        x = torch.cat(
            [
                cond,
                self.text_embedding(text_inputs) + self.text_pos_embedding(tpos),
                self.mel_embedding(code_inputs) + self.mel_pos_embedding(cpos),
            ],
            1,
        )
        length = t + c + 3
        mask = torch.ones([length, length], dtype=torch.bool, device=device).tril().unsqueeze(0).unsqueeze(0)
        for block in self.blocks:
            x = block(x, mask)
        h = self.final_norm(x[:, -1:])
        return self.mel_head(h)[0, 0].float()

    @torch.jit.export
    def synthesize(self, text: str, max_codes: int, prompt: Optional[Tensor] = None) -> Tensor:
        """Greedy codes for ``text`` in the voice of ``prompt`` (1-D samples at
        ``synthesis_sample_rate()``; its condition as the dataset computes it), decoded to audio.
        Without a prompt the learned null condition is used."""
        ids = self.tokenize(text)
        limit = min(max_codes, self.max_mel_tokens)
        condition: Optional[Tensor] = None
        if prompt is not None:
            condition = self.codec.condition(prompt.reshape(-1), self.condition_rows).unsqueeze(0)
        cond = self._condition_token(condition, 1)
        codes: List[int] = []
        while len(codes) < limit:
            logits = self._next_code_logits(ids, codes, cond)
            if len(codes) == 0:
                logits[self.stop_mel_token] = -1.0e9  # at least one frame
            logits[self.start_mel_token] = -1.0e9
            nxt = int(torch.argmax(logits).item())
            if nxt == self.stop_mel_token:
                break
            codes.append(nxt)
        return self.codec.decode(torch.tensor(codes, dtype=torch.long))

    @torch.jit.export
    def decode_codes(self, codes: Tensor) -> Tensor:
        """Codes (1-D, 0..K-1) to a 16 kHz waveform, by the codec's decoder (CodecDecoder.decode)."""
        return self.codec.decode(codes)
