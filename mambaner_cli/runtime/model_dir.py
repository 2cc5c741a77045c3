"""Model directories: what a trained tagger is on disk, and how to find one by name.

A model directory is self-contained::

    config.json         {"format": "mambaner-tagger", "version": 1, "tagger": TaggerConfig fields, ...}
    vocab.json          {"words": [...], "chars": [...]}   (index = id; 0 is padding, 1 unknown)
    model.safetensors   the weights
    README.md           model card (command, data, seed, devel/test F1)
    metrics.json        devel/test scores of the training run
    training_args.json  every argument of the training run

The embedded default lives in the package (``mambaner_cli/shipped_models/default``); other shipped models sit
beside it and are chosen with ``--model NAME``; anything else is a path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mambaner_cli.errors import MambanerError

FORMAT = "mambaner-tagger"
MODELS_DIR = Path(__file__).resolve().parent.parent / "shipped_models"
DEFAULT_MODEL = "default"


def shipped_models() -> list[str]:
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / "config.json").is_file()) if MODELS_DIR.is_dir() else []


def resolve_model(name_or_path: str | None) -> Path:
    """A shipped model's short name (``default``, ``ncbi``…) or a path to a model directory."""
    name_or_path = name_or_path or DEFAULT_MODEL
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise MambanerError(f"{path} is not a model directory (no config.json).")
        return path
    shipped = MODELS_DIR / name_or_path
    if "/" not in name_or_path and (shipped / "config.json").is_file():
        return shipped
    choices = ", ".join(shipped_models()) or "none installed"
    raise MambanerError(f"No model {name_or_path!r}: give a model directory or one of the shipped models "
                        f"({choices}).")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MambanerError(f"{path} is missing: the model directory is incomplete.") from None
    except json.JSONDecodeError as error:
        raise MambanerError(f"{path}:{error.lineno}: not valid JSON ({error.msg}).") from None


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_config(model_dir: Path) -> dict[str, Any]:
    config = read_json(model_dir / "config.json")
    if config.get("format") != FORMAT:
        raise MambanerError(f"{model_dir / 'config.json'} is not a mambaner model (format "
                            f"{config.get('format')!r}, expected {FORMAT!r}).")
    return config


def model_conventions(name_or_path: str | Path | None) -> list[str]:
    """The annotation conventions a model can tag by (empty for a model without them)."""
    config = read_config(resolve_model(str(name_or_path) if name_or_path else None))
    return list(config.get("tagger", {}).get("conventions", []))
