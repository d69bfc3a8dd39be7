"""load_passt / the registry's passt: the release file, a baseline .ckpt's audio tower (plain and
compiled keys), and clear errors for files that are not PaSST weights."""

from __future__ import annotations

import pytest
import torch

from audioret.encoders import passt as P
from audioret.encoders.registry import build_audio_encoder


@pytest.fixture(scope="module")
def model():
    return P.randomize_(P.PaSST(P.tiny_passt_config(num_classes=527)), 4).eval()


def lightning_ckpt(model: P.PaSST, path, compiled: bool):
    prefix = "audio_embedding_model.model.model." + ("_orig_mod." if compiled else "")
    state = {prefix + k: v for k, v in model.state_dict().items()}
    state["audio_projection.weight"] = torch.zeros(1024, model.dim)
    state["tau"] = torch.tensor([0.05])
    torch.save({"state_dict": state, "hyper_parameters": {"s_patchout_t": 15}}, path)
    return path


def test_release_file_round_trip_keeps_architecture_weights_and_sha(model, tmp_path):
    path = P.save_passt_release(model, tmp_path / "release.pt")
    assert set(torch.load(path, weights_only=True)) == set(model.state_dict())
    enc = build_audio_encoder("passt", path)
    assert enc.model.cfg == model.cfg and enc.identity["checkpoint_sha256"] == P._sha256(path)
    for k, v in model.state_dict().items():
        assert torch.equal(enc.model.state_dict()[k], v), k
    with pytest.raises(P.PaSSTCheckpointError, match="sha256"):
        build_audio_encoder("passt", path, sha256="0" * 64)


@pytest.mark.parametrize("compiled", [False, True])
def test_baseline_checkpoint_gives_its_audio_tower(model, tmp_path, compiled):
    path = lightning_ckpt(model, tmp_path / "baseline.ckpt", compiled)
    loaded = P.load_passt(path)
    wave = torch.randn(1, P.WINDOW_SAMPLES) * 0.1
    with torch.no_grad():
        assert torch.equal(loaded.encode(wave)[1], model.encode(wave)[1])


def test_files_that_are_not_passt_weights_fail_clearly(tmp_path):
    from audioret.encoders.beats import BEATs, save_beats_checkpoint, tiny_beats_config

    beats = save_beats_checkpoint(BEATs(tiny_beats_config()), tmp_path / "beats.pt")
    with pytest.raises(P.PaSSTCheckpointError, match="not a PaSST state dict"):
        P.load_passt(beats)
    ckpt = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"text_projection.weight": torch.zeros(2, 2)}, "hyper_parameters": {}}, ckpt)
    with pytest.raises(P.PaSSTCheckpointError, match="without a PaSST audio tower"):
        P.load_passt(ckpt)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(P.PaSSTCheckpointError, match="cannot read"):
        P.load_passt(junk)
    with pytest.raises(FileNotFoundError, match="passt-s-f128-p16-s16-ap.468.pt"):
        P.load_passt(tmp_path / "missing.pt")


def test_extract_with_a_wrong_passt_file_is_one_line(tmp_path, synth_corpus, capsys):
    from audioret.extract.cli import main

    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(3)}, junk)
    assert main(["--corpus", "clotho", "--data-path", str(synth_corpus), "--store", str(tmp_path / "s.zarr"),
                 "--audio-encoder", "passt", "--audio-checkpoint", str(junk), "--passes", "audio",
                 "--splits", "eval", "--num-workers", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any("not a PaSST state dict" in line and str(junk) in line for line in err)
    assert "Traceback" not in "\n".join(err)


def test_weights_are_memory_mapped_and_legacy_files_still_load(model, tmp_path, monkeypatch):
    """A baseline .ckpt is GBs (RoBERTa-large, optimizer states) for a ~350 MB tower: it is mapped, not
    read whole; a legacy (non-zip) file, which cannot be mapped, still loads."""
    path = lightning_ckpt(model, tmp_path / "baseline.ckpt", compiled=True)
    legacy = tmp_path / "legacy.pt"
    torch.save(model.state_dict(), legacy, _use_new_zipfile_serialization=False)
    real, calls = torch.load, []

    def spy(*args, **kw):
        calls.append(kw.get("mmap", False))
        return real(*args, **kw)

    monkeypatch.setattr(torch, "load", spy)
    P.load_passt(path)
    assert calls == [True]
    wave = torch.randn(1, P.WINDOW_SAMPLES) * 0.1
    with torch.no_grad():
        assert torch.equal(P.load_passt(legacy).encode(wave)[1], model.encode(wave)[1])
