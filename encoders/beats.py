"""BEATs audio encoder: our own implementation that loads the official checkpoint files.

Written from the BEATs design notes (no reference code copied) and checked against
Microsoft's reference on random weights (encoders/fixtures/README.md, tests/test_beats_*.py).

Public API (what BEATs users know, minus the AudioSet head in the feature path):

* ``load_beats(path, *, sha256=None, trust_pickle=False) -> BEATs`` (eval mode, fp32, CPU).
  The config is built from the file's ``cfg`` (never from defaults); missing or unexpected
  state-dict keys raise ``CheckpointError`` naming them; ``_orig_mod.`` prefixes (torch.compile)
  are stripped.
* ``BEATs.extract_features(source [B,S], padding_mask [B,S] bool | None)
  -> (tokens [B,N,D], token_padding_mask [B,N] | None)``: the reference's feature path
  (True = padded). The token mask is the reference's non-geometric "reshape and all()" rule
  (beats.md section 3), reproduced exactly.
* ``BEATs.frames(source, padding_mask) -> (frames [B,T',D], frame_padding_mask [B,T'])``:
  mean of the frequency patches (8 for cpt2) of each 160 ms time patch. Time-frame rule for
  the partly valid time patch at the end of a clip: **a time frame is valid if any of its
  tokens is valid under the reference token mask, and its value is the mean over its valid
  tokens only**; fully padded frames are zero and flagged True (padded). Without a mask every
  frame is the mean of all its tokens and the mask is all False.
* ``BEATs.predict(source, padding_mask) -> probs [B, classes]``: the fine-tuned AudioSet head,
  pooled like the reference (only for checking a checkpoint; never used for features).
* ``save_beats_checkpoint(model, path, label_dict=None)``: write the official file format.
* ``tiny_beats_config()``, ``cpt2_config()``: config dicts with the official field names.

Frozen use: call ``.eval()`` (``load_beats`` does). In training mode the model reproduces the
reference's layer drop and layer-wise gradient decay (for end-to-end fine-tuning).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .fbank import FBANK_MEAN, FBANK_STD, NUM_MEL_BINS, beats_fbank

log = logging.getLogger(__name__)

COMPILE_PREFIX = "_orig_mod."


class CheckpointError(ValueError):
    """A BEATs checkpoint file that cannot be loaded as asked (message names file and fix)."""


# ----------------------------------------------------------------------------------------
# config


@dataclasses.dataclass
class BEATsConfig:
    """BEATsConfig fields (official names). Defaults are the reference's, used only for keys a
    file lacks (logged); several are wrong for cpt2, which is why files always supply ``cfg``."""

    input_patch_size: int = -1
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_wise_gradient_decay_ratio: float = 1.0
    layer_norm_first: bool = False
    deep_norm: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.0
    dropout_input: float = 0.0
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = False
    num_buckets: int = 320
    max_distance: int = 1280
    gru_rel_pos: bool = False
    finetuned_model: bool = False
    predictor_dropout: float = 0.1
    predictor_class: int = 527
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # unknown keys, kept

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any], source: str = "cfg") -> "BEATsConfig":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        missing = sorted(names - set(cfg))
        if missing:
            log.warning("%s lacks BEATs config keys %s; using the reference defaults for them",
                        source, missing)
        known = {k: v for k, v in cfg.items() if k in names}
        extra = {k: v for k, v in cfg.items() if k not in names}
        out = cls(**known, extra=extra)
        out.validate(source)
        return out

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return d

    def validate(self, source: str = "cfg") -> None:
        problems = []
        if self.input_patch_size <= 0:
            problems.append(f"input_patch_size={self.input_patch_size} (must be > 0; cpt2 uses 16)")
        if self.encoder_embed_dim % self.encoder_attention_heads:
            problems.append("encoder_embed_dim not divisible by encoder_attention_heads")
        if self.deep_norm and self.layer_norm_first:
            problems.append("deep_norm and layer_norm_first are exclusive")
        if self.activation_fn not in _ACTIVATIONS:
            problems.append(f"activation_fn={self.activation_fn!r} (supported: {sorted(_ACTIVATIONS)})")
        if problems:
            raise CheckpointError(f"{source}: invalid BEATs config: " + "; ".join(problems))

    @property
    def freq_patches(self) -> int:
        """Frequency patches per time step (8 for 128 mel bins and 16x16 patches)."""
        return NUM_MEL_BINS // self.input_patch_size


def cpt2_config() -> dict[str, Any]:
    """The cfg dict of BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt (beats.md 1.1)."""
    return dict(
        input_patch_size=16, embed_dim=512, conv_bias=False, encoder_layers=12,
        encoder_embed_dim=768, encoder_ffn_embed_dim=3072, encoder_attention_heads=12,
        activation_fn="gelu", layer_wise_gradient_decay_ratio=0.6, layer_norm_first=False,
        deep_norm=True, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        encoder_layerdrop=0.05, dropout_input=0.0, conv_pos=128, conv_pos_groups=16,
        relative_position_embedding=True, num_buckets=320, max_distance=800, gru_rel_pos=True,
        finetuned_model=True, predictor_dropout=0.0, predictor_class=527)


def tiny_beats_config(**overrides: Any) -> dict[str, Any]:
    """Same architecture as cpt2, small: 2 layers x 192 wide (3 heads of 64), 512 -> 192."""
    cfg = cpt2_config()
    cfg.update(encoder_layers=2, encoder_embed_dim=192, encoder_ffn_embed_dim=768,
               encoder_attention_heads=3, finetuned_model=False)
    cfg.update(overrides)
    return cfg


# ----------------------------------------------------------------------------------------
# masks (pure)


def reduce_padding_mask(mask: torch.Tensor, n: int) -> torch.Tensor:
    """The reference's mask reduction: ``[B, L] -> [B, n]``, group g = L // n, trailing
    ``L % n`` columns dropped, an output is padded only if all g inputs are (beats.md 3)."""
    b, length = mask.shape
    g = length // n
    if g == 0:
        raise ValueError(f"cannot reduce a padding mask of length {length} to {n} steps")
    return mask[:, : n * g].reshape(b, n, g).all(dim=-1)


def valid_prefix_after_reduce(valid: int, length: int, n: int) -> int:
    """Valid count after ``reduce_padding_mask`` of a mask whose first ``valid`` of ``length``
    entries are valid (the rest padded): ``min(n, ceil(valid / (length // n)))``."""
    g = length // n
    return min(n, -(-max(valid, 0) // g))


def pool_time_frames(tokens: torch.Tensor, token_mask: torch.Tensor | None,
                     freq_patches: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``tokens [B, N, D]`` (time-major, frequency fastest) -> ``(frames [B, N//F, D],
    frame_padding_mask [B, N//F])``: mean over the valid tokens of each time patch; a frame is
    valid if any of its tokens is; fully padded frames are zero."""
    b, n, d = tokens.shape
    t = n // freq_patches
    grid = tokens[:, : t * freq_patches].reshape(b, t, freq_patches, d)
    if token_mask is None:
        return grid.mean(dim=2), torch.zeros(b, t, dtype=torch.bool, device=tokens.device)
    valid = (~token_mask[:, : t * freq_patches]).reshape(b, t, freq_patches, 1).to(grid.dtype)
    count = valid.sum(dim=2)                                          # [B, T', 1]
    frames = (grid * valid).sum(dim=2) / count.clamp_min(1)
    return frames, count.squeeze(-1) == 0


# ----------------------------------------------------------------------------------------
# modules


def _gelu_fp32(x: torch.Tensor) -> torch.Tensor:
    """GELU computed in fp32 like the reference's ``gelu(x.float()).type_as(x)``: PyTorch's bf16/fp16
    kernels already compute in float internally (bitwise the same on CPU bf16), without two copies."""
    return F.gelu(x)


_ACTIVATIONS = {"gelu": _gelu_fp32, "relu": F.relu}


class _GradScale(torch.autograd.Function):
    """Identity forward, gradient times ``scale`` backward (layer-wise gradient decay)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


class WeightNormConv1d(nn.Module):
    """Grouped Conv1d whose weight is ``g * v / ||v||`` per tap (legacy weight_norm, dim=2),
    holding the official ``weight_g`` / ``weight_v`` / ``bias`` parameters."""

    def __init__(self, channels: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.randn(channels, channels // groups, kernel) * 0.02)
        self.bias = nn.Parameter(torch.zeros(channels))
        self.groups = groups
        self.padding = kernel // 2

    def weight(self) -> torch.Tensor:
        v = self.weight_v
        norm = v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()
        return self.weight_g * v / norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:              # [B, C, N] -> [B, C, N(+1)]
        if _onednn_low_precision_hazard(x, self.weight_v.shape[1]):
            out_dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
            with torch.autocast("cpu", enabled=False):
                y = self._conv(x.float(), self.weight().float(), self.bias.float())
            return y.to(out_dtype)
        return self._conv(x, self.weight().to(x.dtype), self.bias.to(x.dtype))

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """On CPU as a channels-last conv2d over [B, C, 1, N]: oneDNN's grouped conv1d path ran this
        (16 groups, kernel 128) at half the speed (705 vs 340 ms, batch 8 x 10 s, 1 thread), and the
        encoder's ``x.transpose(1, 2)`` already is that layout, so no copy is made either way."""
        if x.device.type != "cpu":
            return F.conv1d(x, w, b, padding=self.padding, groups=self.groups)
        x4 = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)          # [B, C, 1, N]
        return F.conv2d(x4, w.unsqueeze(2), b, padding=(0, self.padding), groups=self.groups).squeeze(2)


# Measured on Xeons with AMX (torch 2.14, oneDNN's default ISA): a bf16 conv1d with fewer than 16
# input channels per group (kernel a multiple of 8, as the positional conv's 128) returns values
# with relative error ~1.1 instead of ~0.003; with ONEDNN_MAX_CPU_ISA=AVX2 or AVX512_CORE_BF16, or
# with >= 16 channels per group (full-size BEATs: 768 / 16 = 48), the same call is exact to bf16
# rounding. Such small groups exist only in tiny configs, where the fp32 detour costs nothing.
MIN_SAFE_LOW_PRECISION_GROUP = 16


def _onednn_low_precision_hazard(x: torch.Tensor, channels_per_group: int) -> bool:
    """True when this CPU conv would run in bf16/fp16 with a group too small for oneDNN's AMX kernels."""
    if x.device.type != "cpu" or channels_per_group >= MIN_SAFE_LOW_PRECISION_GROUP:
        return False
    low = (torch.bfloat16, torch.float16)
    return x.dtype in low or (torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") in low)


def relative_position_buckets(n: int, num_buckets: int, max_distance: int,
                              device: torch.device | None = None) -> torch.Tensor:
    """T5-style bidirectional bucket of ``r = j - i`` for an ``[n, n]`` grid (beats.md 4.3)."""
    pos = torch.arange(n, device=device)
    rel = pos[None, :] - pos[:, None]
    half = num_buckets // 2
    exact = half // 2
    base = (rel > 0).long() * half
    a = rel.abs()
    large = exact + (torch.log(a.float().clamp_min(1) / exact) / math.log(max_distance / exact)
                     * (half - exact)).long()
    large = large.clamp_max(half - 1)
    return base + torch.where(a < exact, a, large)


class Workspace:
    """Output tensors reused by every layer of one inference forward (no autograd).

    Why: glibc serves each allocation over 32 MB (the q/k/v projection, the FFN's hidden layer, the
    gated bias at batch 8 x 10 s) with a fresh mmap, and first-touching its pages cost ~13% of a CPU
    forward (400k page faults per batch of 8). Reusing one buffer per role pays that once per
    forward. A buffer is only handed out again after the layer that used it is done with it.
    ``gemm`` is False under autocast: ``out=`` matmuls are not autocast, so only the element-wise
    gated bias (already in the autocast dtype) gets a buffer there."""

    def __init__(self, gemm: bool = True) -> None:
        self._bufs: dict[str, torch.Tensor] = {}
        self.gemm = gemm

    @classmethod
    def for_forward(cls, x: torch.Tensor) -> "Workspace | None":
        """The workspace of one forward over ``x``: full where ``usable``, bias-only in autocast
        inference, none where autograd records or while compiling."""
        if cls.usable(x):
            return cls()
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return None
        return cls(gemm=False)

    @staticmethod
    def usable(x: torch.Tensor) -> bool:
        """Only where nothing keeps the outputs (autograd saves them) and the dtype is the
        tensors' own (``out=`` ops are not autocast)."""
        return not (torch.is_grad_enabled() or torch.compiler.is_compiling()
                    or torch.is_autocast_enabled(x.device.type))

    def get(self, role: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        t = self._bufs.get(role)
        if t is None or t.shape != shape or t.dtype != like.dtype or t.device != like.device:
            t = self._bufs[role] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return t


def linear_into(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, ws: Workspace | None,
                role: str) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` ([..., D_in] -> [..., D_out]), written into ``ws``'s buffer for
    ``role`` when one is given (same addmm kernel)."""
    if ws is None or not ws.gemm or not x.is_contiguous():
        return F.linear(x, weight, bias)
    out = ws.get(role, (*x.shape[:-1], weight.shape[0]), x)
    torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight.t(), out=out.view(-1, weight.shape[0]))
    return out


class SelfAttention(nn.Module):
    """Multi-head self-attention with the (optionally gated) shared relative position bias.

    Keeps the official q/k/v projections as parameters (checkpoint layout) but runs them as one
    fused matmul whose extra ``2 * H`` outputs are the gate's logits: ``grep_linear`` applied to each
    head's query, summed in groups of 4, is linear in ``x``, so it is folded into the weight
    (``fused_projection``). So ``q_proj``, ``k_proj``, ``v_proj`` and ``grep_linear`` are never
    called: forward hooks on them do not fire (hook this module instead).
    q, k, v stay strided views of that one output (scaled_dot_product_attention reads strides).
    """

    def __init__(self, cfg: BEATsConfig, with_bias_table: bool) -> None:
        super().__init__()
        d, h = cfg.encoder_embed_dim, cfg.encoder_attention_heads
        self.heads, self.head_dim = h, d // h
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.v_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.gated = cfg.gru_rel_pos
        if self.gated:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, h, 1, 1))
        if with_bias_table:
            self.relative_attention_bias = nn.Embedding(cfg.num_buckets, h)
        self.dropout = cfg.attention_dropout
        self._fused: tuple[tuple[Any, ...], torch.Tensor, torch.Tensor] | None = None
        self._infer: tuple[Any, ...] | None = None  # (key, *inference_params())

    def _projection_params(self) -> list[torch.Tensor]:
        ps = [self.q_proj.weight, self.q_proj.bias, self.k_proj.weight, self.k_proj.bias,
              self.v_proj.weight, self.v_proj.bias]
        return ps + ([self.grep_linear.weight, self.grep_linear.bias] if self.gated else [])

    def fused_projection(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight [3D (+ 2H), D], bias)``: q, k, v and (gated) the two gate logits of every head.

        Rebuilt whenever autograd records (training) or a parameter changed (in-place version
        counters); otherwise cached, so a frozen encoder concatenates once."""
        params = self._projection_params()
        recording = torch.is_grad_enabled() and any(p.requires_grad for p in params)
        if torch.compiler.is_compiling():  # traced once into the graph; no Python-side cache
            recording = True
        if recording:
            return self._fuse()
        key = tuple((p.data_ptr(), p._version, p.device, p.dtype) for p in params)
        if self._fused is None or self._fused[0] != key:
            # a normal tensor even when first built under inference_mode: a later forward that
            # records (a frozen encoder under a trainable front end) saves it for backward
            with torch.inference_mode(False), torch.no_grad():
                self._fused = (key, *self._fuse())
        return self._fused[1], self._fused[2]

    def _fuse(self) -> tuple[torch.Tensor, torch.Tensor]:
        h, dh = self.heads, self.head_dim
        ws = [self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]
        bs = [self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]
        if self.gated:  # the gate uses sums of 4 logits: sum the weights instead (2 outputs, not 8)
            g_w = self.grep_linear.weight.view(2, 4, dh).sum(1)                # [2, dh]
            g_b = self.grep_linear.bias.view(2, 4).sum(1)                      # [2]
            wq = self.q_proj.weight.view(h, dh, -1)                            # [H, dh, D]
            ws.append(torch.einsum("od,hdi->hoi", g_w, wq).reshape(h * 2, -1))  # [2H, D]
            bs.append((self.q_proj.bias.view(h, dh) @ g_w.T + g_b).reshape(h * 2))
        return torch.cat(ws), torch.cat(bs)

    def forward(self, x: torch.Tensor, pos_bias: torch.Tensor | None,
                key_padding: torch.Tensor | None, ws: Workspace | None = None) -> torch.Tensor:
        """``ws`` (optional, only where ``Workspace.usable``): buffers for the projection and the
        gated bias [B, H, N, N], reused by every layer."""
        b, n, d = x.shape
        h, dh = self.heads, self.head_dim
        w, bias_in = self.fused_projection()
        proj = linear_into(x, w, bias_in, ws, "qkv")                     # [B, N, 3D (+ 2H)]
        qkv = proj[..., : 3 * d].view(b, n, 3, h, dh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)                                          # [B, H, N, dh] views
        bias = None
        if pos_bias is not None:                                          # [H, N, N]
            if self.gated:
                gate = self._gate(proj[..., 3 * d:], pos_bias.dtype)     # [B, H, N, 1]
                bias_out = ws.get("bias", (b, *pos_bias.shape), pos_bias) if ws is not None else None
                bias = torch.mul(gate, pos_bias, out=bias_out) if bias_out is not None else gate * pos_bias
                # [B, H, N, N] contiguous (SDPA would copy it otherwise)
            else:
                bias = pos_bias.unsqueeze(0)
        if key_padding is not None:
            neg = _key_padding_bias(key_padding, q.dtype)
            if bias is None:
                bias = neg
            elif ws is not None and self.gated:
                bias.add_(neg)  # our buffer: no fresh [B, H, N, N] tensor per layer
            else:
                bias = bias + neg
        if bias is not None:
            bias = bias.to(q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))

    def _gate(self, logits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Gate logits [B, N, 2H] -> the per-row gate of the shared bias [B, H, N, 1] in ``dtype``.

        The logits are copied out in fp32 first: element-wise ops on the strided bf16 view ran
        ~10x slower (a quarter of a bf16 forward's non-GEMM time on 2 threads)."""
        b, n, h = logits.shape[0], logits.shape[1], self.heads
        gate_a, gate_b = torch.sigmoid(logits.float().view(b, n, h, 2)).unbind(-1)  # [B, N, H] each
        gate = gate_a * (gate_b * self.grep_a.view(h) - 1.0) + 2.0
        return gate.to(dtype).transpose(1, 2).unsqueeze(-1).contiguous()

    def inference_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """For ``residual_into``: (fused weight [3D + 2H, D], gate-logit bias [2H], q's bias times
        the attention scale [H, dh], out_proj's bias with v's bias folded in [D]). Cached like the
        fused projection (rebuilt when a parameter changes)."""
        params = self._projection_params() + [self.out_proj.weight, self.out_proj.bias]
        key = tuple((p.data_ptr(), p._version, p.device, p.dtype) for p in params)
        if self._infer is None or self._infer[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                w, bias = self.fused_projection()
                d = self.heads * self.head_dim
                q_bias = (bias[:d] * self.head_dim ** -0.5).view(self.heads, self.head_dim)
                out_bias = self.out_proj.bias + self.out_proj.weight @ bias[2 * d: 3 * d]
                self._infer = (key, w, bias[3 * d:].clone(), q_bias, out_bias)
        return self._infer[1:]

    def residual_into(self, x: torch.Tensor, pos_bias: torch.Tensor, key_padding: torch.Tensor | None,
                      ws: Workspace, alpha: float) -> torch.Tensor:
        """``alpha * x + forward(x)`` written into ``x`` (contiguous [B, N, D], which the caller
        gives up); eval-mode, no-grad, non-autocast inference with the gated bias only.

        Equal to ``forward`` up to rounding, with the three projection biases moved to where they
        cost no pass over the [B, N, 3D] output: k's bias adds ``q_i . b_k`` to every score of row
        i, which softmax ignores, so it is dropped; the attention rows sum to 1, so v's bias is
        folded into out_proj's; q's bias adds ``scale * b_q . k_j`` to every score of column j, a
        term added to the gated bias in the pass that builds it. So the q/k/v GEMM runs without a
        bias (no broadcast copy into its output), and out_proj accumulates into the residual
        (``addmm_`` with ``beta=alpha``) instead of writing a fresh output and then adding."""
        b, n, d = x.shape
        h, dh = self.heads, self.head_dim
        w, gate_bias, q_bias, out_bias = self.inference_params()
        proj = ws.get("qkv", (b, n, w.shape[0]), x)                        # [B, N, 3D + 2H]
        torch.mm(x.view(-1, d), w.t(), out=proj.view(-1, w.shape[0]))
        q, k, v = proj[..., : 3 * d].view(b, n, 3, h, dh).permute(2, 0, 3, 1, 4).unbind(0)
        gate = self._gate(proj[..., 3 * d:] + gate_bias, pos_bias.dtype)   # [B, H, N, 1]
        per_key = torch.einsum("bhnd,hd->bhn", k, q_bias).unsqueeze(2)     # [B, H, 1, N]
        bias = torch.addcmul(per_key, gate, pos_bias, out=ws.get("bias", (b, *pos_bias.shape), pos_bias))
        if key_padding is not None:
            bias.add_(_key_padding_bias(key_padding, bias.dtype))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)      # [B, H, N, dh]
        x.add_(out_bias, alpha=1.0 / alpha)
        x.view(-1, d).addmm_(out.transpose(1, 2).reshape(b * n, d), self.out_proj.weight.t(), beta=alpha)
        return x


def _key_padding_bias(key_padding: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, N] bool (True = padded) -> additive attention bias [B, 1, 1, N]: 0 or -inf."""
    b, n = key_padding.shape
    neg = torch.zeros(b, 1, 1, n, dtype=dtype, device=key_padding.device)
    return neg.masked_fill(key_padding[:, None, None, :], float("-inf"))


def _forward_hooked(*modules: nn.Module) -> bool:
    """True when a forward (pre-)hook is registered on one of ``modules`` (or globally): one that
    keeps the output (activation probes) would see it changed by an in-place op after the call,
    and a fast path that does not call the module would skip the hook."""
    glob = torch.nn.modules.module
    return bool(glob._global_forward_hooks or glob._global_forward_pre_hooks) or any(
        m._forward_hooks or m._forward_pre_hooks for m in modules)


class EncoderLayer(nn.Module):
    """Post-LN (DeepNorm residual scale alpha) or pre-LN transformer layer."""

    def __init__(self, cfg: BEATsConfig, with_bias_table: bool) -> None:
        super().__init__()
        d = cfg.encoder_embed_dim
        self.self_attn = SelfAttention(cfg, with_bias_table)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.act = _ACTIVATIONS[cfg.activation_fn]
        self.pre_ln = cfg.layer_norm_first
        self.alpha = (2 * cfg.encoder_layers) ** 0.25 if cfg.deep_norm else 1.0
        self.p_drop, self.p_act_drop = cfg.dropout, cfg.activation_dropout

    def _ffn(self, x: torch.Tensor, ws: Workspace | None = None) -> torch.Tensor:
        fast = self.act is _gelu_fp32 and not _forward_hooked(self.fc1)  # else fc1's hooks must see its output
        if ws is not None and ws.gemm and fast:   # inference: hidden layer in a reused buffer
            h = torch.ops.aten.gelu_(linear_into(x, self.fc1.weight, self.fc1.bias, ws, "ffn"))
            h = F.dropout(h, self.p_act_drop, self.training)  # a training-mode forward under no_grad
        elif fast and not torch.is_grad_enabled():
            h = torch.ops.aten.gelu_(self.fc1(x))  # autocast inference: in place, no second [B, N, F]
            h = F.dropout(h, self.p_act_drop, self.training)
        else:
            h = F.dropout(self.act(self.fc1(x)), self.p_act_drop, self.training)
        return F.dropout(self.fc2(h), self.p_drop, self.training)

    def _ffn_residual_into(self, x: torch.Tensor, ws: Workspace) -> torch.Tensor:
        """``alpha * x + ffn(x)`` written into ``x`` (eval-mode inference, GELU): fc2 accumulates into
        the residual (``addmm_`` with ``beta=alpha``; its bias added to ``x`` first, scaled)."""
        d = x.shape[-1]
        h = torch.ops.aten.gelu_(linear_into(x, self.fc1.weight, self.fc1.bias, ws, "ffn"))
        x.add_(self.fc2.bias, alpha=1.0 / self.alpha)
        x.view(-1, d).addmm_(h.view(-1, h.shape[-1]), self.fc2.weight.t(), beta=self.alpha)
        return x

    def _in_place_inference(self, x: torch.Tensor, pos_bias: torch.Tensor | None, ws: Workspace | None) -> bool:
        """Where ``forward`` may take the in-place inference path (post-LN, gated bias, eval mode,
        the workspace's no-grad non-autocast forwards, no forward hook on a module it skips)."""
        return (ws is not None and ws.gemm and pos_bias is not None and not self.training and not self.pre_ln
                and self.self_attn.gated and self.act is _gelu_fp32 and x.is_contiguous()
                and not _forward_hooked(self.self_attn, self.self_attn.out_proj, self.fc1, self.fc2))

    def forward(self, x: torch.Tensor, pos_bias: torch.Tensor | None,
                key_padding: torch.Tensor | None, ws: Workspace | None = None) -> torch.Tensor:
        """With ``ws`` (Encoder.forward's inference forwards) ``x`` may be overwritten: it is the
        encoder's own intermediate, and the residual sums accumulate in it."""
        if self._in_place_inference(x, pos_bias, ws):
            x = self.self_attn_layer_norm(self.self_attn.residual_into(x, pos_bias, key_padding, ws, self.alpha))
            return self.final_layer_norm(self._ffn_residual_into(x, ws))
        if self.pre_ln:
            x = x + F.dropout(self.self_attn(self.self_attn_layer_norm(x), pos_bias, key_padding, ws),
                              self.p_drop, self.training)
            return x + self._ffn(self.final_layer_norm(x), ws)
        att = F.dropout(self.self_attn(x, pos_bias, key_padding, ws), self.p_drop, self.training)
        x = self.self_attn_layer_norm(torch.add(att, x, alpha=self.alpha))  # alpha * x + att, one pass
        return self.final_layer_norm(torch.add(self._ffn(x, ws), x, alpha=self.alpha))


class Encoder(nn.Module):
    """Positional conv, LayerNorm, transformer layers sharing one relative-position table."""

    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        d = cfg.encoder_embed_dim
        self.pos_conv = nn.Sequential(WeightNormConv1d(d, cfg.conv_pos, cfg.conv_pos_groups))
        self.trim = 1 if cfg.conv_pos % 2 == 0 else 0
        self.layers = nn.ModuleList(
            EncoderLayer(cfg, with_bias_table=cfg.relative_position_embedding and i == 0)
            for i in range(cfg.encoder_layers))
        self.layer_norm = nn.LayerNorm(d)
        self.cfg = cfg

    def position_bias(self, n: int, device: torch.device,
                      dtype: torch.dtype | None = None) -> torch.Tensor | None:
        """Ungated relative bias ``[H, N, N]`` from layer 0's table (None if disabled), contiguous
        and in the attention's dtype: prepared once per batch, then only scaled per layer."""
        if not self.cfg.relative_position_embedding:
            return None
        buckets = relative_position_buckets(n, self.cfg.num_buckets, self.cfg.max_distance, device)
        table = self.layers[0].self_attn.relative_attention_bias
        bias = table(buckets).permute(2, 0, 1)
        # .contiguous() after .to(): a same-dtype .to(memory_format=...) returns the permuted view,
        # and the per-layer gate * bias over that view ran 4x slower (64 vs 15 ms per layer, batch 8)
        return bias.to(dtype or bias.dtype).contiguous()

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        if padding is not None:
            x = x.masked_fill(padding.unsqueeze(-1), 0.0)
        n = x.shape[1]
        conv = self.pos_conv(x.transpose(1, 2))
        conv = conv[:, :, : conv.shape[2] - self.trim] if self.trim else conv
        x = x + F.gelu(conv).transpose(1, 2)
        if not self.cfg.layer_norm_first:
            x = self.layer_norm(x)
        x = F.dropout(x, self.cfg.dropout, self.training)
        low = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else None
        pos_bias = self.position_bias(n, x.device, low if low in (torch.bfloat16, torch.float16) else x.dtype)
        decay = self.cfg.layer_wise_gradient_decay_ratio
        ws = Workspace.for_forward(x)  # buffers shared by the layers of this forward
        for layer in self.layers:
            if self.training and decay != 1.0:
                x = _GradScale.apply(x, decay)
            if self.training and self.cfg.encoder_layerdrop > 0 and (
                    torch.rand(()) <= self.cfg.encoder_layerdrop):
                continue                                              # layer drop (training only)
            x = layer(x, pos_bias, padding, ws)
        if self.cfg.layer_norm_first:
            x = self.layer_norm(x)
        return x


class BEATs(nn.Module):
    """BEATs with the official parameter names (see the module docstring for the API)."""

    def __init__(self, cfg: BEATsConfig | Mapping[str, Any]) -> None:
        super().__init__()
        if not isinstance(cfg, BEATsConfig):
            cfg = BEATsConfig.from_dict(cfg)
        cfg.validate()
        self.cfg = cfg
        p = cfg.input_patch_size
        self.patch_embedding = nn.Conv2d(1, cfg.embed_dim, kernel_size=p, stride=p,
                                         bias=cfg.conv_bias)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.post_extract_proj = (nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim)
                                  if cfg.embed_dim != cfg.encoder_embed_dim else None)
        self.encoder = Encoder(cfg)
        self.predictor = (nn.Linear(cfg.encoder_embed_dim, cfg.predictor_class)
                          if cfg.finetuned_model else None)
        self.checkpoint_path: str | None = None
        self.checkpoint_sha256: str | None = None

    @property
    def dim(self) -> int:
        return self.cfg.encoder_embed_dim

    def token_count(self, num_samples: int) -> int:
        """N for an unpadded clip of ``num_samples``: freq_patches * (T // patch)."""
        from .fbank import num_fbank_frames
        return self.cfg.freq_patches * (num_fbank_frames(num_samples) // self.cfg.input_patch_size)

    def extract_features(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None,
                         fbank_mean: float = FBANK_MEAN, fbank_std: float = FBANK_STD,
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``source [B, S]`` at 16 kHz in [-1, 1], ``padding_mask [B, S]`` (True = padded) ->
        ``(tokens [B, N, D], token_padding_mask [B, N] | None)`` as the reference's feature
        path (the predictor is never applied). The fbank runs in fp32 on ``source``'s device."""
        fbank = beats_fbank(source, fbank_mean, fbank_std)             # [B, T, 128] fp32
        w = self.patch_embedding.weight
        x = self.patch_embedding(fbank.unsqueeze(1).to(w.dtype))     # [B, E, T', F]
        x = x.flatten(2).transpose(1, 2)                             # [B, N, E] time-major
        x = self.layer_norm(x)
        token_mask = None
        if padding_mask is not None:
            padding_mask = padding_mask.to(device=x.device, dtype=torch.bool)
            frame_mask = reduce_padding_mask(padding_mask, fbank.shape[1])
            token_mask = reduce_padding_mask(frame_mask, x.shape[1])
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        x = F.dropout(x, self.cfg.dropout_input, self.training)
        return self.encoder(x, token_mask), token_mask

    def frames(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(frames [B, T', D], frame_padding_mask [B, T'])`` (True = padded): mean of each
        time patch's frequency tokens; rule for partly valid patches in the module docstring."""
        tokens, token_mask = self.extract_features(source, padding_mask)
        return pool_time_frames(tokens, token_mask, self.cfg.freq_patches)

    def predict(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None,
                ) -> torch.Tensor:
        """AudioSet probabilities ``[B, classes]`` of a fine-tuned checkpoint, pooled like the
        reference (mean of token logits over valid tokens, then sigmoid)."""
        if self.predictor is None:
            raise RuntimeError("this BEATs checkpoint has no predictor (finetuned_model=False)")
        x, mask = self.extract_features(source, padding_mask)
        logits = self.predictor(x)
        if mask is not None and bool(mask.any()):
            keep = (~mask).unsqueeze(-1).to(logits.dtype)
            logits = (logits * keep).sum(1) / keep.sum(1)
        else:
            logits = logits.mean(1)
        return torch.sigmoid(logits)

    # -- official state-dict layout ------------------------------------------------------

    def shared_bias_copies(self) -> list[str]:
        """Keys of the relative-position table the official file repeats for layers 1..L-1."""
        if not self.cfg.relative_position_embedding:
            return []
        return [f"encoder.layers.{i}.self_attn.relative_attention_bias.weight"
                for i in range(1, self.cfg.encoder_layers)]

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict exactly as the reference model writes it (shared table repeated)."""
        sd = {k: v.detach().clone() for k, v in self.state_dict().items()}
        if self.cfg.relative_position_embedding:
            table = sd["encoder.layers.0.self_attn.relative_attention_bias.weight"]
            for key in self.shared_bias_copies():
                sd[key] = table.clone()
        return sd

    def load_official_state_dict(self, state: Mapping[str, torch.Tensor],
                                 source: str = "state dict") -> None:
        """Strict load of an official state dict; errors name missing, unexpected and
        mis-shaped keys. The repeated relative-position tables must equal layer 0's."""
        state = {k.replace(COMPILE_PREFIX, ""): v for k, v in state.items()}
        own = self.state_dict()
        copies = set(self.shared_bias_copies())
        missing = sorted(set(own) - set(state)) + sorted(copies - set(state))
        unexpected = sorted(set(state) - set(own) - copies)
        if missing or unexpected:
            hint = ("; the file's cfg does not describe these weights (e.g. finetuned_model "
                    "vs a predictor, encoder_layers, relative_position_embedding)")
            raise CheckpointError(
                f"{source}: state dict does not match the BEATs config: "
                f"missing keys {_short(missing)}, unexpected keys {_short(unexpected)}{hint}")
        bad = [f"{k}: file {tuple(state[k].shape)} vs config {tuple(v.shape)}"
               for k, v in own.items() if tuple(state[k].shape) != tuple(v.shape)]
        if bad:
            raise CheckpointError(f"{source}: shape mismatch between cfg and weights: "
                                  + "; ".join(bad[:8]))
        if copies:
            table = state["encoder.layers.0.self_attn.relative_attention_bias.weight"]
            differ = [k for k in sorted(copies) if not torch.equal(state[k], table)]
            if differ:
                raise CheckpointError(
                    f"{source}: relative_attention_bias is one shared table in BEATs, but "
                    f"{_short(differ)} differ from layer 0's copy; the file is not an official "
                    "BEATs checkpoint (or was edited)")
        self.load_state_dict({k: state[k] for k in own}, strict=True)


def _short(keys: list[str], limit: int = 10) -> str:
    if not keys:
        return "[]"
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return "[" + ", ".join(keys[:limit]) + "]" + more


# ----------------------------------------------------------------------------------------
# files


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_failure(exc: BaseException) -> str:
    """The reason in ``torch.load``'s multi-paragraph error, as one line (the CLIs print one line).

    weights_only failures bury it after "WeightsUnpickler error:"; anything else leads with it.
    """
    text = str(exc) or type(exc).__name__
    marker = "WeightsUnpickler error:"
    if marker in text:
        rest = text.split(marker, 1)[1].strip()
        reason = rest.split(". ", 1)[0].splitlines()[0].strip().rstrip(".")
        return f"torch.load: {reason}"
    return " ".join(text.split("\n", 1)[0].split(". ", 1)[0].split()).rstrip(".")


def read_checkpoint(path: str | Path, *, trust_pickle: bool = False) -> dict[str, Any]:
    """``torch.load`` an official BEATs file (weights_only unless ``trust_pickle``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"BEATs checkpoint {path} does not exist; download e.g. "
            "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt (see microsoft/unilm beats README) "
            "and pass its path to --beats-ckpt (finetune: --beats_ckpt_path)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise CheckpointError(f"cannot read BEATs checkpoint {path} ({load_failure(exc)}); pass an "
                              "official BEATs .pt file (e.g. BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt) "
                              "to --beats-ckpt (finetune: --beats_ckpt_path)") from exc
    if not isinstance(ckpt, dict) or "cfg" not in ckpt or "model" not in ckpt:
        got = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path} is not an official BEATs checkpoint: expected a dict with 'cfg' (config "
            f"fields) and 'model' (state dict), got {got}")
    return ckpt


def load_beats(path: str | Path, *, sha256: str | None = None,
               trust_pickle: bool = False) -> BEATs:
    """Load an official BEATs checkpoint (pretrained or fine-tuned) -> ``BEATs`` in eval mode.

    The config comes from the file's ``cfg``; ``sha256`` (hex) is checked against the file if
    given; the file's digest is kept in ``model.checkpoint_sha256`` either way.
    """
    path = Path(path)
    digest = file_sha256(path) if path.is_file() else None
    if sha256 is not None and digest is not None and digest != sha256.lower():
        raise CheckpointError(f"{path}: sha256 {digest} does not match the expected {sha256}; "
                              "the file is corrupt or a different checkpoint")
    ckpt = read_checkpoint(path, trust_pickle=trust_pickle)
    cfg = BEATsConfig.from_dict(dict(ckpt["cfg"]), source=f"{path} cfg")
    model = BEATs(cfg)
    model.load_official_state_dict(ckpt["model"], source=str(path))
    model.checkpoint_path, model.checkpoint_sha256 = str(path), digest
    return model.eval()


def save_beats_checkpoint(model: BEATs, path: str | Path,
                          label_dict: Mapping[int, str] | None = None) -> Path:
    """Write ``model`` in the official format ``{'cfg': dict, 'model': state dict}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt: dict[str, Any] = {"cfg": model.cfg.to_dict(), "model": model.official_state_dict()}
    if label_dict is not None:
        ckpt["label_dict"] = dict(label_dict)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)
    return path


def randomize_(model: BEATs, seed: int, scale: float = 1.0) -> BEATs:
    """Seeded random weights with realistic magnitudes (LayerNorm gains near 1, fan-in scaled
    matrices, a gate scale near 1): what tiny test/demo encoders and fixtures use."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("layer_norm.weight") or name.endswith("grep_a") or name.endswith("weight_g"):
                p.copy_(1.0 + 0.1 * scale * noise)
            elif name.endswith("relative_attention_bias.weight"):
                p.copy_(scale * noise)
            elif p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(scale * noise / math.sqrt(fan_in))
            else:
                p.copy_(0.1 * scale * noise)
    return model
