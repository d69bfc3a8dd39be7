"""``--config FILE`` and ``--print-config`` on every stage (issue 22).

Every stage that ``audioret.cli.available_stages()`` lists is covered: a stage whose command line
does not use ``audioret.config.build_parser`` (or ``StageParser`` for a subcommand) fails here. The
stage's parser is caught as it returns (a spy on ``StageParser._resolve`` that stops the command
before it runs), so nothing is trained or written by the round-trip tests.
"""

from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path
from typing import Literal, Union, get_args, get_origin, get_type_hints

import pytest
import yaml

from audioret.cli import available_stages, main
from audioret.config import StageParser, config_from_namespace, load_config_file, to_dict

# stages with subcommands: each subcommand has its own config
SUBCOMMANDS = {"corpus": ("synth", "list"), "distill": ("teachers", "run")}
# stages without a config of their own
NO_CONFIG = {"store": "store info/verify PATH inspect a store (store/ imports nothing of ours)"}


def stage_argvs() -> list[list[str]]:
    out = []
    for name in available_stages():
        if name not in NO_CONFIG:
            out += [[name, sub] for sub in SUBCOMMANDS[name]] if name in SUBCOMMANDS else [[name]]
    return out


STAGE_ARGVS = stage_argvs()
IDS = [" ".join(a) for a in STAGE_ARGVS]


class Parsed(Exception):
    """Raised by the spy once a stage parser has resolved its namespace."""

    def __init__(self, parser: StageParser, ns) -> None:
        super().__init__(parser.prog)
        self.parser, self.ns = parser, ns


@pytest.fixture
def parse(monkeypatch):
    """``parse(argv)`` -> (parser, namespace) of the stage command ``audioret ARGV``, without running it."""
    real = StageParser._resolve

    def spy(self, ns, extra):
        ns, extra = real(self, ns, extra)
        assert not extra, f"{self.prog}: unrecognized arguments {extra}"  # parse_args would refuse them
        raise Parsed(self, ns)

    def run(argv: list[str]) -> tuple[StageParser, object]:
        with monkeypatch.context() as patch, pytest.raises(Parsed) as caught:
            patch.setattr(StageParser, "_resolve", spy)
            main(argv)
        return caught.value.parser, caught.value.ns

    return run


def resolved(parser: StageParser, ns) -> tuple[object, dict]:
    """(the config object the stage would run with, nested section configs)."""
    cfg = config_from_namespace(parser.config_cls, ns)
    sections = {name: config_from_namespace(cls, getattr(ns, name)) for name, cls in parser.sections.items()}
    return cfg, sections


def print_config(argv: list[str], capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main([*argv, "--print-config"])
    out, err = capsys.readouterr()
    assert done.value.code == 0, f"audioret {' '.join(argv)} --print-config: exit {done.value.code}: {err}"
    return out


def fails(argv: list[str], capsys) -> str:
    """The single stderr line of a command that must exit 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    assert done.value.code == 2, err
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------ values different from every default

def _unwrap(tp):
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _other(tp, default, name: str, tmp: Path):
    """A value of type ``tp`` that differs from ``default``."""
    if tp is bool:
        return not default
    if get_origin(tp) is Literal:
        return [c for c in get_args(tp) if c != default][-1]
    if get_origin(tp) in (list, tuple):
        inner = _unwrap(get_args(tp)[0])
        items = [_other(inner, None, f"{name}{i}", tmp) for i in range(2)]
        if get_origin(inner) is Literal:
            items = list(get_args(inner))[-2:][::-1]
        return tuple(items) if get_origin(tp) is tuple else items
    if tp is Path:
        return tmp / f"{name}.x"
    if tp is int:
        return (default or 0) + 3
    if tp is float:
        return (default or 0.0) + 0.25
    if tp is str:
        return f"x-{name}"
    raise AssertionError(f"no test value for {tp!r}")


def changed(cls, tmp: Path, exclude: frozenset = frozenset()) -> dict:
    hints = get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        out[f.name] = _other(_unwrap(hints[f.name]), default, f.name, tmp)
    return out


def flags(values: dict, cls=None) -> list[str]:
    """Command-line arguments for ``values``: positional fields of ``cls`` first, then flags."""
    positional = [f.name for f in dataclasses.fields(cls) if f.metadata.get("positional")] if cls else []
    out: list[str] = [str(x) for name in positional if name in values
                      for x in (values[name] if isinstance(values[name], (list, tuple)) else [values[name]])]
    for name, v in values.items():
        if name in positional:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(v, bool):
            out.append(flag if v else "--no-" + name.replace("_", "-"))
        elif isinstance(v, (list, tuple)):
            out += [flag, *map(str, v)]
        else:
            out += [flag, str(v)]
    return out


def changed_argv(argv: list[str], parse, tmp: Path) -> tuple[list[str], dict, dict]:
    """argv with every field of the stage's config (and sections) set away from its default."""
    parser, _ = parse([*argv, *required_flags(argv, parse, tmp)])
    main_values = changed(parser.config_cls, tmp)
    section_values = {name: changed(cls, tmp, exclude=frozenset(main_values)) for name, cls in parser.sections.items()}
    full = [*argv, *flags(main_values, parser.config_cls)]
    for name, values in section_values.items():
        full += flags(values, parser.sections[name])
    return full, main_values, section_values


def required_flags(argv: list[str], parse, tmp: Path) -> list[str]:
    """Arguments for the fields without a default (so the command parses); --print-config marks them."""
    missing = [line.split(":")[0] for line in _printed(argv).splitlines() if "# REQUIRED" in line]
    return [arg for k in missing for arg in (["--" + k.replace("_", "-")] if f"--{k.replace('_', '-')}" in
                                              _usage(argv) else []) + [str(tmp / f"{k}.req")]]


def _usage(argv: list[str]) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        main([*argv, "--help"])
    return buf.getvalue()


def _printed(argv: list[str]) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        main([*argv, "--print-config"])
    return buf.getvalue()


# ------------------------------------------------------------------ every stage

def test_every_stage_with_a_config_is_covered():
    names = {a[0] for a in STAGE_ARGVS}
    assert {"corpus", "extract", "train-heads", "finetune", "distill", "evaluate", "predict", "demo"} <= names


@pytest.mark.parametrize("argv", STAGE_ARGVS, ids=IDS)
def test_print_config_fed_back_gives_the_same_config(argv, parse, capsys, tmp_path):
    full, main_values, section_values = changed_argv(argv, parse, tmp_path)
    parser, ns = parse(full)
    cfg, sections = resolved(parser, ns)
    for name, value in main_values.items():  # the flags themselves parse to the intended values
        assert getattr(cfg, name) == value, name
    for sec, values in section_values.items():
        for name, value in values.items():
            assert getattr(sections[sec], name) == value, f"{sec}.{name}"
    printed = print_config(full, capsys)
    doc = yaml.safe_load(printed)
    assert doc["stage"] == " ".join(argv)
    saved = tmp_path / "printed.yaml"
    saved.write_text(printed)
    again = resolved(*parse([*argv, "--config", str(saved)]))
    assert again == (cfg, sections)
    assert print_config([*argv, "--config", str(saved)], capsys) == printed


@pytest.mark.parametrize("argv", STAGE_ARGVS, ids=IDS)
def test_saved_json_form_reads_back_and_names_its_stage(argv, parse, tmp_path):
    full, _, _ = changed_argv(argv, parse, tmp_path)
    parser, ns = parse(full)
    cfg, sections = resolved(parser, ns)
    record = to_dict(cfg, **sections)  # what the stages save (config.json, checkpoints, store attributes)
    assert record["stage"] == " ".join(argv), "give the config class STAGE = '<stage name>'"
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(record, indent=2))
    assert resolved(*parse([*argv, "--config", str(saved)])) == (cfg, sections)


@pytest.mark.parametrize("argv", STAGE_ARGVS, ids=IDS)
def test_flags_override_files_and_later_files_override_earlier(argv, parse, tmp_path):
    full, main_values, _ = changed_argv(argv, parse, tmp_path)
    parser, ns = parse(full)
    cfg, _ = resolved(parser, ns)
    record = to_dict(cfg)
    first = tmp_path / "first.json"
    first.write_text(json.dumps(record))
    # a field of each kind the config has: the flag's value wins over both files
    name = next(n for n, v in main_values.items() if isinstance(v, (int, float, str, Path)) and not isinstance(v, bool))
    b_value = _other(type(main_values[name]) if not isinstance(main_values[name], Path) else Path,
                     main_values[name], name, tmp_path / "b")
    second = tmp_path / "second.yaml"
    second.write_text(yaml.safe_dump({name: str(b_value) if isinstance(b_value, Path) else b_value}))
    later, _ = resolved(*parse([*argv, "--config", str(first), "--config", str(second)]))
    assert getattr(later, name) == b_value
    assert dataclasses.replace(later, **{name: getattr(cfg, name)}) == cfg  # everything else from the first file
    flag_value = _other(type(b_value) if not isinstance(b_value, Path) else Path, b_value, name, tmp_path / "c")
    given = flags({name: flag_value}, parser.config_cls)
    both, _ = resolved(*parse([*argv, "--config", str(first), "--config", str(second), *given]))
    assert getattr(both, name) == flag_value
    flag_first, _ = resolved(*parse([*argv, *given, "--config", str(first), "--config", str(second)]))
    assert getattr(flag_first, name) == flag_value  # a flag wins wherever it stands


@pytest.mark.parametrize("argv", STAGE_ARGVS, ids=IDS)
def test_bad_key_wrong_stage_and_malformed_files_are_one_line_exit_2(argv, capsys, tmp_path):
    prog = f"audioret {' '.join(argv)}: error:"
    bad_key = tmp_path / "bad_key.yaml"
    bad_key.write_text(f"stage: {' '.join(argv)}\nno_such_option: 3\n")
    line = fails([*argv, "--config", str(bad_key)], capsys)
    assert line.startswith(prog) and str(bad_key) in line and "no_such_option" in line
    other = "evaluate" if argv != ["evaluate"] else "train-heads"
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"stage": other}))
    line = fails([*argv, "--config", str(wrong)], capsys)
    assert line.startswith(prog) and str(wrong) in line and f"audioret {other}" in line
    assert f"audioret {' '.join(argv)}" in line.removeprefix(prog)
    for name, text, what in [("broken.yaml", "a: [1, 2\nb: 3\n", "YAML"), ("broken.json", '{"a": 1,}', "JSON"),
                             ("list.yaml", "- 1\n- 2\n", "mapping")]:
        path = tmp_path / name
        path.write_text(text)
        line = fails([*argv, "--config", str(path)], capsys)
        assert line.startswith(prog) and str(path) in line and what in line, line
    line = fails([*argv, "--config", str(tmp_path / "absent.yaml")], capsys)
    assert "no such file" in line


# ------------------------------------------------------------------ particular cases

def test_a_value_of_the_wrong_type_names_the_key(capsys, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("max_epochs: many\n")
    line = fails(["train-heads", "--config", str(path)], capsys)
    assert "max_epochs" in line and "'many'" in line and str(path) in line
    path.write_text("projection: cubic\n")
    assert "linear, mlp" in fails(["train-heads", "--config", str(path)], capsys)
    path.write_text("max_epoch: 3\n")
    assert "did you mean 'max_epochs'" in fails(["train-heads", "--config", str(path)], capsys)


def test_yaml_spellings_kebab_keys_and_numbers_for_text_fields(parse, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("max-lr: 3e-4\ndevices: 2\nval: null\nseeds: [1, 2]\n")  # YAML 1.1 reads 3e-4 as text
    cfg, _ = resolved(*parse(["train-heads", "--config", str(path)]))
    assert cfg.max_lr == 3e-4 and cfg.devices == "2" and cfg.val is None and cfg.seeds == [1, 2]


def test_required_fields_may_come_from_a_file_and_print_config_marks_them(parse, capsys, tmp_path):
    printed = print_config(["corpus", "synth"], capsys)
    assert "out: null  # REQUIRED" in printed
    with pytest.raises(SystemExit) as done:  # still missing: argparse's usage and its required-flag line
        main(["corpus", "synth", "--config", str(_write(tmp_path / "p.yaml", printed))])
    assert done.value.code == 2
    assert "required: --out" in capsys.readouterr().err.strip().splitlines()[-1]
    cfg, _ = resolved(*parse(["corpus", "synth", "--config", str(_write(tmp_path / "q.yaml", f"out: {tmp_path}\n"))]))
    assert cfg.out == tmp_path


def test_embedded_records_and_folders_are_read(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"mAP@10": 0.5, "config": {"stage": "evaluate", "ks": [10]}}))
    assert load_config_file(tmp_path / "metrics.json") == {"stage": "evaluate", "ks": [10]}
    (tmp_path / "config.json").write_text(json.dumps({"stage": "train-heads"}))
    assert load_config_file(tmp_path) == {"stage": "train-heads"}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="config.json"):
        load_config_file(empty)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------ saved configs of real runs

def test_train_heads_and_predict_runs_save_the_config_that_reruns_them(parse, tmp_path):
    import torch

    from audioret.models import load_heads
    from audioret.train_heads.store_reader import write_feature_split
    from audioret.train_heads.synthetic import synthetic_split

    store = tmp_path / "s.zarr"
    for name, n, seed in (("dev", 48, 1), ("val", 16, 2), ("eval", 16, 3)):
        write_feature_split(store, synthetic_split(name, n, seed=seed))
    out = tmp_path / "run"
    argv = ["train-heads", "--store", str(store), "--out", str(out), "--max-epochs", "1", "--embed-dim", "16",
            "--hidden-dim", "32", "--batch-size", "16", "--no-progress", "--logger", "none", "--floor", "none",
            "--max-lr", "3e-4"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    saved = json.loads((out / "config.json").read_text())
    assert saved["stage"] == "train-heads" and saved["max_lr"] == 3e-4
    assert load_heads(out / "heads.pt").checkpoint_info["train_config"] == saved  # the checkpoint: same form
    cfg, _ = resolved(*parse(argv))
    for source in (out / "config.json", out):  # the file, or the run folder
        assert resolved(*parse(["train-heads", "--config", str(source)]))[0] == cfg
    edited, _ = resolved(*parse(["train-heads", "--config", str(out), "--max-lr", "1e-3"]))
    assert edited == dataclasses.replace(cfg, max_lr=1e-3)
    # predict records its config in <name>_source.json, beside the submission files
    predict = ["predict", "--checkpoint", str(out / "heads.pt"), "--store", str(store), "--out",
               str(tmp_path / "pred"), "--top-k", "5", "--batch-size", "7"]
    assert main(predict) == 0
    again, _ = resolved(*parse(["predict", "--config", str(tmp_path / "pred" / "run_source.json")]))
    assert again == resolved(*parse(predict))[0]


def test_a_feature_store_gives_back_its_extract_config(synth_corpus, parse, tmp_path):
    store = tmp_path / "f.zarr"
    argv = ["extract", "--data-path", str(synth_corpus), "--store", str(store), "--splits", "val",
            "--passes", "text", "--text-model", "tiny-roberta", "--text-batch-size", "8", "--no-progress",
            "--num-workers", "0"]
    assert main(argv) == 0
    cfg, _ = resolved(*parse(argv))
    for source in (store, store / "zarr.json"):
        assert resolved(*parse(["extract", "--config", str(source)]))[0] == cfg



def test_a_store_config_is_refused_by_another_stage(capsys, tmp_path):
    store = tmp_path / "f.zarr"
    store.mkdir()
    (store / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {
        "audioret_store": {"metadata": {"extract_config": {"max_seconds": 10.0, "overwrite": True}}}}}))
    # old stores: no stage key; --overwrite is not replayed (it would delete the store the config came from)
    assert load_config_file(store) == {"stage": "extract", "max_seconds": 10.0}
    line = fails(["train-heads", "--config", str(store)], capsys)
    assert "audioret extract" in line and "audioret train-heads" in line


def test_a_sweep_runs_saved_config_reruns_that_run_alone(parse, tmp_path):
    """Each run of a train-heads sweep saves its own config (config.json, and heads.pt's train_config in the
    same form): --config RUN_DIR resolves to that one run, not to the whole sweep again below it."""
    import torch

    from audioret.models import load_heads
    from audioret.train_heads.config import TrainHeadsConfig
    from audioret.train_heads.run import Splits, expand_sweep, run
    from audioret.train_heads.synthetic import synthetic_split

    splits = Splits(synthetic_split("dev", 32, seed=1), {}, {"path": "memory"})
    cfg = TrainHeadsConfig(out=tmp_path / "sweep", seeds=[1, 2], max_epochs=1, rampdown_epochs=1, embed_dim=8,
                           hidden_dim=16, batch_size=16, progress=False, floor="none", logger="none", val=None,
                           test=None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(cfg, splits)
    finally:
        torch.set_num_threads(threads)
    for name in ("seed=1", "seed=2"):
        folder = cfg.out / name
        again, _ = resolved(*parse(["train-heads", "--config", str(folder)]))
        assert again == dataclasses.replace(cfg, seeds=[], seed=int(name[-1]), out=folder)
        assert expand_sweep(again) == [(name, again)]  # one run, into its own folder
        assert load_heads(folder / "heads.pt").checkpoint_info["train_config"] == json.loads(
            (folder / "config.json").read_text())
    whole, _ = resolved(*parse(["train-heads", "--config", str(cfg.out)]))
    assert whole == cfg  # the sweep folder's config.json: the whole sweep


def test_a_checkpoint_given_as_config_says_where_its_config_is(capsys, tmp_path):
    import torch

    ckpt = tmp_path / "run" / "heads.pt"
    ckpt.parent.mkdir()
    torch.save({"train_config": {"stage": "train-heads"}}, ckpt)
    line = fails(["train-heads", "--config", str(ckpt)], capsys)
    assert str(ckpt) in line and "checkpoint" in line and f"--config {ckpt.parent}" in line
    lightning = tmp_path / "ft" / "checkpoints" / "epoch=3.ckpt"  # finetune: checkpoints/ below the run folder
    lightning.parent.mkdir(parents=True)
    torch.save({"hyper_parameters": {}}, lightning)
    assert f"--config {tmp_path / 'ft'})" in fails(["finetune", "--config", str(lightning)], capsys)


def test_a_distill_run_file_with_a_train_heads_key_at_the_top_says_where_it_goes(parse, capsys, tmp_path):
    path = _write(tmp_path / "d.yaml", "teachers: 2\nmax-lr: 0.01\n")   # as the flags are given on the command line
    line = fails(["distill", "run", "--config", str(path)], capsys)
    assert str(path) in line and "'max-lr'" in line and "under `heads:`" in line
    _, ns = parse(["distill", "run", "--config", str(_write(tmp_path / "e.yaml", "teachers: 2\nheads:\n  max-lr: 0.01\n"))])
    assert ns.teachers == 2 and ns.heads.max_lr == 0.01
