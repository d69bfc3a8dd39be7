"""Loading official-format BEATs checkpoints: config from the file, strict keys, sha256."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from audioret.encoders.beats import (BEATs, CheckpointError, cpt2_config, load_beats,
                                     randomize_, save_beats_checkpoint, tiny_beats_config)


def _tiny(**over) -> BEATs:
    cfg = tiny_beats_config(encoder_embed_dim=64, encoder_ffn_embed_dim=128,
                            encoder_attention_heads=2, embed_dim=32, conv_pos=16, **over)
    return randomize_(BEATs(cfg), 3).eval()


def test_full_size_cpt2_keys_and_shapes_match_the_official_file():
    with torch.device("meta"):
        model = BEATs(cpt2_config())
    sd = model.official_state_dict()
    assert len(sd) == 252                                    # beats.md appendix
    assert sum(v.numel() for v in sd.values()) == 90_759_295
    assert sum(p.numel() for p in model.parameters()) == 90_717_055
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["patch_embedding.weight"] == (512, 1, 16, 16)
    assert shapes["encoder.pos_conv.0.weight_g"] == (1, 1, 128)
    assert shapes["encoder.pos_conv.0.weight_v"] == (768, 48, 128)
    assert shapes["encoder.layers.11.self_attn.grep_a"] == (1, 12, 1, 1)
    assert shapes["encoder.layers.7.self_attn.relative_attention_bias.weight"] == (320, 12)
    assert shapes["encoder.layers.3.self_attn.grep_linear.weight"] == (8, 64)
    assert shapes["predictor.weight"] == (527, 768)
    assert "patch_embedding.bias" not in shapes and "encoder.layer_norm.weight" in shapes
    assert model.encoder.layers[0].alpha == pytest.approx(24 ** 0.25)


def test_config_comes_from_the_file_not_defaults(tmp_path):
    model = _tiny(finetuned_model=True, predictor_class=7)
    path = save_beats_checkpoint(model, tmp_path / "ft.pt", label_dict={0: "/m/x"})
    loaded = load_beats(path)
    assert not loaded.training
    assert loaded.cfg.max_distance == 800 and loaded.cfg.deep_norm and loaded.cfg.gru_rel_pos
    assert loaded.cfg.encoder_layers == 2 and loaded.predictor.out_features == 7
    assert loaded.encoder.layers[0].alpha == pytest.approx(math.pow(4, 0.25))
    x = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        assert torch.equal(loaded.extract_features(x)[0], model.extract_features(x)[0])
    assert loaded.checkpoint_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_pretrained_checkpoint_without_predictor_loads(tmp_path):
    model = _tiny(finetuned_model=False)
    loaded = load_beats(save_beats_checkpoint(model, tmp_path / "pt.pt"))
    assert loaded.predictor is None
    with pytest.raises(RuntimeError, match="no predictor"):
        loaded.predict(torch.zeros(1, 8000))


def test_missing_and_unexpected_keys_are_named(tmp_path):
    model = _tiny(finetuned_model=True)
    ckpt = {"cfg": model.cfg.to_dict(), "model": model.official_state_dict()}
    del ckpt["model"]["encoder.layers.1.fc2.bias"]
    ckpt["model"]["encoder.layers.9.fc1.weight"] = torch.zeros(1)
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as err:
        load_beats(tmp_path / "bad.pt")
    msg = str(err.value)
    assert "encoder.layers.1.fc2.bias" in msg and "encoder.layers.9.fc1.weight" in msg
    assert "bad.pt" in msg
    # a fine-tuned file read with a pretrained cfg: the predictor keys are unexpected
    ckpt = {"cfg": dict(model.cfg.to_dict(), finetuned_model=False),
            "model": model.official_state_dict()}
    torch.save(ckpt, tmp_path / "wrongcfg.pt")
    with pytest.raises(CheckpointError, match="predictor.weight"):
        load_beats(tmp_path / "wrongcfg.pt")


def test_shape_mismatch_and_edited_shared_table_are_errors(tmp_path):
    model = _tiny()
    sd = model.official_state_dict()
    sd["encoder.layers.1.self_attn.relative_attention_bias.weight"] += 1.0
    torch.save({"cfg": model.cfg.to_dict(), "model": sd}, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="shared table"):
        load_beats(tmp_path / "edited.pt")
    cfg = dict(model.cfg.to_dict(), encoder_ffn_embed_dim=96)
    torch.save({"cfg": cfg, "model": model.official_state_dict()}, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="fc1.weight"):
        load_beats(tmp_path / "shape.pt")


def test_torch_compile_prefix_is_accepted(tmp_path):
    model = _tiny()
    sd = {"_orig_mod." + k: v for k, v in model.official_state_dict().items()}
    torch.save({"cfg": model.cfg.to_dict(), "model": sd}, tmp_path / "compiled.pt")
    loaded = load_beats(tmp_path / "compiled.pt")
    assert torch.equal(loaded.patch_embedding.weight, model.patch_embedding.weight)


def test_sha256_check_and_bad_files(tmp_path):
    path = save_beats_checkpoint(_tiny(), tmp_path / "a.pt")
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_beats(path, sha256=good.upper()).checkpoint_sha256 == good
    with pytest.raises(CheckpointError, match="sha256"):
        load_beats(path, sha256="0" * 64)
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load_beats(tmp_path / "nothere.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="'cfg'"):
        load_beats(tmp_path / "other.pt")
    torch.save({"cfg": dict(tiny_beats_config(), input_patch_size=-1), "model": {}},
               tmp_path / "nopatch.pt")
    with pytest.raises(CheckpointError, match="input_patch_size"):
        load_beats(tmp_path / "nopatch.pt")
