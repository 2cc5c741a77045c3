"""Click options derived from an arguments dataclass (as transformers' ``HfArgumentParser`` does), so that a
recipe's defaults and help texts live once, in its dataclass (training/args.py documents the metadata)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

import click


def _option_names(field: dataclasses.Field) -> tuple[list[str], str]:
    """The option's spellings and its parameter name (the field's name, so kwargs map back one to one)."""
    spelled = field.metadata.get("option") or "--" + field.name.replace("_", "-")
    return spelled.split("/"), field.name


def _click_type(field: dataclasses.Field, base: type) -> Any:
    meta = field.metadata
    if "choices" in meta:
        return click.Choice(list(meta["choices"]))
    path = meta.get("path")
    if path == "file":
        return click.Path(exists=True, dir_okay=False)
    if path in ("dir", "dir-any"):
        return click.Path(file_okay=False)
    low, high = meta.get("min"), meta.get("max")
    if base is int and (low is not None or high is not None):
        return click.IntRange(low, high)
    if base is float and (low is not None or high is not None):
        return click.FloatRange(low, high, max_open=meta.get("max_open", False))
    return base


def _element_type(annotation: Any) -> type:
    """The scalar type of an annotation: ``int`` → int, ``str | None`` → str, ``list[str]`` → str."""
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        return typing.get_args(annotation)[0]
    if origin is dict:
        return str  # NAME=VALUE words, parsed by ``args_from``
    if origin in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def parse_name_counts(values: tuple[str, ...], option: str) -> dict[str, int]:
    """``("ncbi=2",)`` → ``{"ncbi": 2}``; a usage error names the value that is not NAME=K."""
    counts = {}
    for value in values:
        name, _, count = value.partition("=")
        if not count.isdigit():
            raise click.BadParameter(f"{value!r} is not NAME=K (e.g. ncbi=2)", param_hint=option)
        counts[name] = int(count)
    return counts


def parse_name_shares(values: tuple[str, ...], option: str) -> dict[str, float]:
    """``("bioid=0.25",)`` → ``{"bioid": 0.25}``; a usage error names the value that is not NAME=SHARE."""
    shares = {}
    for value in values:
        name, _, share = value.partition("=")
        try:
            shares[name] = float(share)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not NAME=SHARE (e.g. bioid=0.25)", param_hint=option) from None
    return shares


def parse_name_types(values: tuple[str, ...], option: str) -> dict[str, tuple[str, ...]]:
    """``("tmvar3=Species",)`` → ``{"tmvar3": ("Species",)}`` (a name may come more than once); a usage error
    names the value that is not NAME=TYPE."""
    named: dict[str, tuple[str, ...]] = {}
    for value in values:
        name, _, entity_type = value.partition("=")
        if not name or not entity_type:
            raise click.BadParameter(f"{value!r} is not NAME=TYPE (e.g. tmvar3=Species)", param_hint=option)
        named[name] = named.get(name, ()) + (entity_type,)
    return named


def options_from(cls: type, skip: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """A decorator adding one Click option per field of dataclass ``cls`` (but those with ``cli=False``
    and those in ``skip``), with the field's default, help text and range."""
    hints = typing.get_type_hints(cls)

    def decorate(function: Callable) -> Callable:
        for field in reversed(dataclasses.fields(cls)):
            meta = field.metadata
            if not meta.get("cli", True) or field.name in skip:
                continue
            names, parameter = _option_names(field)
            help_text = meta.get("help") or None
            annotation = hints[field.name]
            base = _element_type(annotation)
            kwargs: dict[str, Any] = {"help": help_text, "metavar": meta.get("metavar")}
            if base is bool:
                # a flag that turns the field on, or off with ``invert`` (e.g. --no-crf → use_crf=False)
                kwargs.update(is_flag=True, default=False)
            elif typing.get_origin(annotation) in (list, dict):
                kwargs.update(multiple=True, type=_click_type(field, base))
            else:
                kwargs.update(type=_click_type(field, base), required=meta.get("required", False))
                if not meta.get("required"):
                    kwargs.update(default=field.default, show_default=field.default not in (None, ""))
            function = click.option(*names, parameter, **kwargs)(function)
        return function

    return decorate


def args_from(cls: type, options: dict[str, Any], **extra: Any) -> Any:
    """The dataclass ``cls`` from the values of the options ``options_from(cls)`` added (and ``extra``)."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name not in options or options[field.name] == ():
            continue  # an option not given at all keeps the dataclass's default (e.g. --dataset: ncbi)
        value, meta = options[field.name], field.metadata
        if meta.get("invert"):
            value = not value
        elif meta.get("parse") == "name=count":
            value = parse_name_counts(value, meta.get("option", "--" + field.name))
        elif meta.get("parse") == "name=share":
            value = parse_name_shares(value, meta.get("option", "--" + field.name))
        elif meta.get("parse") == "name=type":
            value = parse_name_types(value, meta.get("option", "--" + field.name))
        elif isinstance(value, tuple):
            value = list(value)
        values[field.name] = value
    return cls(**values, **extra)
