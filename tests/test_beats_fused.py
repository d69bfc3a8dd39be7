"""BEATs attention runs q/k/v and the gate as one fused projection: same outputs and gradients as
the separate official projections, checkpoint layout unchanged, cache follows weight updates."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from audioret.encoders.beats import BEATs, SelfAttention, randomize_, tiny_beats_config


def separate_attention(att: SelfAttention, x: torch.Tensor, pos_bias: torch.Tensor,
                       key_padding: torch.Tensor | None) -> torch.Tensor:
    """The official computation: three projections, the gate from each head's query."""
    b, n, d = x.shape
    h, dh = att.heads, att.head_dim
    split = lambda t: t.view(b, n, h, dh).transpose(1, 2)  # noqa: E731
    q, k, v = split(att.q_proj(x)), split(att.k_proj(x)), split(att.v_proj(x))
    u = att.grep_linear(q).view(b, h, n, 2, 4).sum(-1)
    gate_a, gate_b = torch.sigmoid(u).chunk(2, dim=-1)
    bias = (gate_a * (gate_b * att.grep_a - 1.0) + 2.0) * pos_bias
    if key_padding is not None:
        bias = bias.masked_fill(key_padding[:, None, None, :], float("-inf"))
    scores = (q @ k.transpose(-1, -2)) / dh ** 0.5 + bias
    out = scores.softmax(-1) @ v
    return att.out_proj(out.transpose(1, 2).reshape(b, n, d))


@pytest.fixture()
def layer():
    model = randomize_(BEATs(tiny_beats_config()), 3)
    return model, model.encoder.layers[0].self_attn


@pytest.mark.parametrize("padded", [False, True])
def test_fused_projection_matches_separate_projections_with_gradients(layer, padded):
    model, att = layer
    torch.manual_seed(0)
    x = torch.randn(2, 24, att.heads * att.head_dim, requires_grad=True)
    pos = model.encoder.position_bias(24, x.device)
    mask = torch.zeros(2, 24, dtype=torch.bool)
    if padded:
        mask[1, 17:] = True
    kp = mask if padded else None
    ours = att(x, pos, kp)
    ref = separate_attention(att, x, pos, kp)
    assert torch.allclose(ours, ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(ours)
    params = [att.q_proj.weight, att.k_proj.weight, att.v_proj.weight, att.grep_linear.weight, att.grep_linear.bias,
              att.q_proj.bias, att.grep_a]
    got = torch.autograd.grad((ours * g).sum(), params + [x])
    want = torch.autograd.grad((ref * g).sum(), params + [x])
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_official_keys_unchanged_and_cache_follows_loaded_weights(layer):
    model, att = layer
    keys = set(model.state_dict())
    assert {"encoder.layers.0.self_attn.q_proj.weight", "encoder.layers.0.self_attn.grep_linear.bias"} <= keys
    assert not any("qkv" in k or "fused" in k for k in keys)
    x = torch.randn(1, 16, att.heads * att.head_dim)
    pos = model.encoder.position_bias(16, x.device)
    with torch.no_grad():
        before = att(x, pos, None)
        other = randomize_(BEATs(tiny_beats_config()), 4)
        model.load_state_dict(other.state_dict())  # in-place copies: the cached fused weight must go
        after = att(x, pos, None)
        ref = separate_attention(att, x, pos, None)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, ref, atol=1e-5, rtol=1e-5)


def test_contiguous_bias_reaches_attention_without_a_copy(layer, monkeypatch):
    """The gated bias is built contiguous (SDPA copies a strided mask: 13% of a CPU forward)."""
    model, att = layer
    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        seen.append(attn_mask.is_contiguous())
        return sdpa(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    with torch.no_grad():
        model.eval().extract_features(torch.randn(2, 16000) * 0.1)
    assert seen and all(seen)


@pytest.mark.parametrize("dtype", [None, torch.float32, torch.bfloat16])
def test_position_bias_is_contiguous_in_every_dtype(layer, dtype):
    """The shared [H, N, N] bias is read by every layer's gate multiply: over the embedding's
    permuted [N, N, H] view that multiply ran 4x slower (a same-dtype ``.to`` does not copy)."""
    model, _ = layer
    pos = model.encoder.position_bias(24, torch.device("cpu"), dtype)
    assert pos.is_contiguous() and pos.shape == (model.cfg.encoder_attention_heads, 24, 24)
    assert pos.dtype == (dtype or torch.float32)


def test_inference_workspace_reuses_buffers_and_equals_the_autograd_path(layer, monkeypatch):
    """No-grad forwards write the q/k/v projection, gated bias and FFN hidden layer of every layer
    into three reused buffers (page faults on fresh 30-100 MB tensors cost ~13% of a CPU forward);
    the result equals the autograd path, and a returned output never aliases a buffer."""
    from audioret.encoders import beats as beats_mod

    model, _ = layer
    model.eval()
    assert model.cfg.encoder_layers >= 2 and model.cfg.gru_rel_pos
    wave = torch.randn(2, 16000) * 0.1
    ptrs: list[int] = []
    get = beats_mod.Workspace.get

    def spy(self, role, shape, like):
        t = get(self, role, shape, like)
        ptrs.append(t.data_ptr())
        return t

    monkeypatch.setattr(beats_mod.Workspace, "get", spy)
    with torch.no_grad():
        fast, _ = model.extract_features(wave)
    assert len(ptrs) == 3 * model.cfg.encoder_layers and len(set(ptrs)) == 3
    kept = fast.clone()
    with torch.no_grad():
        model.extract_features(wave * 0.5)  # a second forward must not touch the first's output
    assert torch.equal(fast, kept)
    ptrs.clear()
    model.extract_features(wave)  # autograd records: no workspace
    assert not ptrs
    monkeypatch.setattr(beats_mod.Workspace, "usable", staticmethod(lambda x: False))
    with torch.no_grad():
        ref, _ = model.extract_features(wave)
    # the in-place inference path (biases moved, residuals accumulated in place) differs from the
    # plain one by rounding only: max 4.8e-6 at full size (random weights, one clip padded); a
    # misused buffer would be off by O(1). (The autograd path: up to 4e-6, another SDPA kernel.)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    monkeypatch.undo()
    monkeypatch.setattr(beats_mod.Workspace, "get", spy)
    ptrs.clear()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low, _ = model.extract_features(wave)
    # out= matmuls are not autocast: only the gated bias (element-wise, already bf16) is buffered
    assert len(ptrs) == model.cfg.encoder_layers and len(set(ptrs)) == 1
    monkeypatch.setattr(beats_mod.Workspace, "for_forward", classmethod(lambda cls, x: None))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain, _ = model.extract_features(wave)
    assert low.dtype == torch.bfloat16 and torch.equal(low, plain)  # the same kernels: bit-equal


def test_a_training_mode_forward_without_grad_keeps_activation_dropout():
    """The inference workspace (no grad, no autocast) must not change what a training-mode forward
    computes: with the same seed, a no-grad forward equals the recorded one, activation dropout
    included (the workspace's FFN once skipped it)."""
    cfg = tiny_beats_config(activation_dropout=0.5, encoder_layerdrop=0.0)
    model = randomize_(BEATs(cfg), 3).train()
    wave = torch.randn(2, 16000) * 0.1
    torch.manual_seed(0)
    ref, _ = model.extract_features(wave)
    torch.manual_seed(0)
    with torch.no_grad():
        out, _ = model.extract_features(wave)
    torch.testing.assert_close(out, ref.detach(), atol=1e-5, rtol=1e-5)


def test_autocast_inference_gelu_in_place_equals_the_out_of_place_activation(layer, monkeypatch):
    """Under autocast (no workspace) a no-grad forward applies GELU in place on fc1's fresh output:
    bit-equal to the out-of-place activation, and an autograd forward still records."""
    from audioret.encoders import beats as beats_mod

    model, _ = layer
    model.eval()
    wave = torch.randn(2, 16000) * 0.1
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast, _ = model.extract_features(wave)
    for lay in model.encoder.layers:  # not the in-place branch: any other callable is out of place
        monkeypatch.setattr(lay, "act", lambda x: beats_mod._gelu_fp32(x))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref, _ = model.extract_features(wave)
    assert fast.dtype == torch.bfloat16 and torch.equal(fast, ref)
    monkeypatch.undo()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        grad_out, _ = model.extract_features(wave)
    grad_out.float().sum().backward()  # the in-place branch never runs where autograd records
    assert model.encoder.layers[0].fc1.weight.grad is not None


@pytest.mark.parametrize("autocast", [True, False])
def test_a_forward_hook_on_fc1_keeps_the_pre_activation_under_autocast_inference(layer, autocast):
    """The in-place GELU of inference must not reach a tensor a forward hook on ``fc1`` kept (an
    activation probe): under autocast it saw GELU(fc1(x)) instead of fc1(x); in fp32 the workspace
    path never called ``fc1``, so the hook did not fire at all."""
    import contextlib

    model, _ = layer
    model.eval()
    fc1 = model.encoder.layers[0].fc1
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    handle = fc1.register_forward_hook(lambda mod, args, out: seen.append((args[0], out)))
    wave = torch.randn(2, 16000) * 0.1
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with torch.no_grad(), cast:
        model.extract_features(wave)
        handle.remove()
        x, kept = seen[0]
        assert torch.equal(kept, fc1(x))


def test_fused_projection_cached_under_inference_mode_serves_a_recording_forward(layer):
    """Extraction runs under ``torch.inference_mode``; a cached fused weight built there was an
    inference tensor, and a later forward that records (a frozen encoder under a trainable front
    end) failed: "Inference tensors cannot be saved for backward"."""
    model, _ = layer
    model.eval().requires_grad_(False)
    wave = torch.randn(2, 16000) * 0.1
    with torch.inference_mode():
        ref, _ = model.extract_features(wave)
    model.patch_embedding.requires_grad_(True)
    out, _ = model.extract_features(wave)
    out.float().pow(2).sum().backward()
    assert model.patch_embedding.weight.grad is not None
    torch.testing.assert_close(out.detach(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padded", [False, True])
def test_in_place_inference_path_equals_the_plain_layer(layer, padded, monkeypatch):
    """Eval-mode fp32 inference takes ``residual_into`` / ``_ffn_residual_into`` (k's bias dropped,
    v's folded into out_proj's, q's added per key to the gated bias, residuals accumulated in
    place): equal to the plain layer up to rounding, with and without key padding; not taken in
    training mode, under autocast, or while a skipped module is hooked."""
    from audioret.encoders import beats as beats_mod

    model, _ = layer
    model.eval()
    for lay in model.encoder.layers:  # non-zero biases, so a dropped or misplaced one shows
        for lin in (lay.self_attn.q_proj, lay.self_attn.k_proj, lay.self_attn.v_proj, lay.self_attn.out_proj,
                    lay.fc2):
            torch.nn.init.normal_(lin.bias, std=0.5)
    wave = torch.randn(2, 16000) * 0.1
    pad = torch.zeros(2, 16000, dtype=torch.bool)
    if padded:
        pad[1, 9000:] = True
    calls: list[int] = []
    real = beats_mod.SelfAttention.residual_into
    monkeypatch.setattr(beats_mod.SelfAttention, "residual_into",
                        lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    with torch.no_grad():
        fast, mask = model.extract_features(wave, pad)
    assert len(calls) == model.cfg.encoder_layers
    with monkeypatch.context() as m:
        m.setattr(beats_mod.EncoderLayer, "_in_place_inference", lambda self, *a: False)
        with torch.no_grad():
            ref, _ = model.extract_features(wave, pad)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    calls.clear()
    with torch.no_grad():
        model.train().extract_features(wave, pad)                 # dropout: rows no longer sum to 1
        model.eval()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model.extract_features(wave, pad)
        handle = model.encoder.layers[0].fc2.register_forward_hook(lambda *a: None)
        model.extract_features(wave, pad)
        handle.remove()
        assert len(calls) == model.cfg.encoder_layers - 1        # the hooked layer took the plain path
        handle = model.encoder.layers[0].self_attn.out_proj.register_forward_pre_hook(lambda *a: None)
        model.extract_features(wave, pad)
        handle.remove()
    assert len(calls) == 2 * model.cfg.encoder_layers - 2        # a pre-hook counts too
