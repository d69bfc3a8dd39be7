from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest

from audioret.config import build_parser, from_dict, option, parse_config, to_dict


@dataclasses.dataclass
class Demo:
    data_path: Path = option(Path("data"), "dataset root")
    max_lr: float = option(2e-5, "peak learning rate", unit="1/step")
    tau_trainable: bool = option(False, "learn the temperature")
    precision: Literal["32", "16-mixed", "bf16-mixed"] = option("16-mixed", "numeric precision")
    seed: int | None = option(None, "seed; none for no seeding")
    splits: tuple[str, ...] = option(("dev", "val"), "splits")


def test_both_spellings_and_bool_negation():
    a = parse_config(Demo, ["--data_path", "x", "--max-lr", "1e-4", "--tau_trainable"], "t")
    assert a.data_path == Path("x") and a.max_lr == 1e-4 and a.tau_trainable is True
    b = parse_config(Demo, ["--no-tau-trainable", "--seed", "3", "--splits", "eval"], "t")
    assert b.tau_trainable is False and b.seed == 3 and b.splits == ("eval",)  # a tuple field stays a tuple
    assert parse_config(Demo, [], "t") == Demo()


def test_choices_enforced():
    with pytest.raises(SystemExit):
        parse_config(Demo, ["--precision", "8"], "t")


def test_help_shows_defaults_and_units():
    text = build_parser(Demo, "t").format_help()
    assert "(default: 2e-05)" in text and "[1/step]" in text and "(default: data)" in text


def test_round_trip_and_unknown_key():
    cfg = Demo(data_path=Path("/d"), seed=5)
    assert from_dict(Demo, to_dict(cfg)) == cfg
    with pytest.raises(ValueError, match="unknown config keys"):
        from_dict(Demo, {**to_dict(cfg), "bogus": 1})
