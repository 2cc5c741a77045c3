"""`mambaner train`'s options come from the recipes' argument dataclasses: one source for each default."""

from __future__ import annotations

import dataclasses

import click
import pytest
from mambaner_cli.training.args import FinetuneArgs, ScratchArgs

from mambaner_cli.cli import cli
from mambaner_cli.cli.options import args_from


@pytest.mark.parametrize(("command", "cls"), [("scratch", ScratchArgs), ("finetune", FinetuneArgs)])
def test_every_option_default_is_the_dataclass_default(command, cls):
    params = {param.name: param for param in cli.commands["train"].commands[command].params}
    for field in dataclasses.fields(cls):
        if not field.metadata.get("cli", True):
            assert field.name not in params
            continue
        param = params[field.name]
        if field.metadata.get("invert") or field.type == "bool":
            assert param.is_flag and param.default is False, field.name
        elif field.default is not dataclasses.MISSING and not field.metadata.get("required"):
            assert param.default == field.default, field.name
        assert (param.help or "") == field.metadata.get("help", ""), field.name


def parse(*words: str) -> ScratchArgs:
    command = cli.commands["train"].commands["scratch"]
    context = command.make_context("scratch", list(words))
    options = {key: value for key, value in context.params.items() if key != "quiet"}
    return args_from(ScratchArgs, options)


def test_options_map_onto_the_dataclass(tmp_path):
    args = parse("-o", str(tmp_path), "--no-crf", "--unidirectional", "--dataset", "ncbi", "--dataset",
                 "bc5cdr-disease", "--repeat", "ncbi=2", "--epochs", "3", "--conventions")
    assert (args.use_crf, args.bidirectional, args.repeats, args.epochs) == (False, False, {"ncbi": 2}, 3)
    assert args.datasets == ["ncbi", "bc5cdr-disease"] and args.conventions
    plain = parse("-o", str(tmp_path))
    assert plain.datasets == ["ncbi"] and plain.use_crf and plain.bidirectional  # the dataclass defaults
    assert dataclasses.asdict(plain) == dataclasses.asdict(ScratchArgs(output=str(tmp_path)))
    with pytest.raises(click.BadParameter, match="not NAME=K"):
        parse("-o", str(tmp_path), "--repeat", "ncbi")
    with pytest.raises(click.BadParameter):
        parse("-o", str(tmp_path), "--epochs", "0")  # IntRange from the field's min


def test_unmarked_types_are_read_per_corpus(tmp_path):
    args = parse("-o", str(tmp_path), "--dataset", "tmvar3", "--dataset", "species800", "--unmarked",
                 "tmvar3=Species", "--unmarked", "tmvar3=CellLine")
    assert args.unmarked == {"tmvar3": ("Species", "CellLine")}
    with pytest.raises(click.BadParameter, match="not NAME=TYPE"):
        parse("-o", str(tmp_path), "--dataset", "tmvar3", "--unmarked", "tmvar3")
