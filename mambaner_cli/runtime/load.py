"""Load any model directory as a :class:`~mambaner_cli.runtime.pipeline.SentenceTagger`."""

from __future__ import annotations

from pathlib import Path

from mambaner_cli.runtime.pipeline import SentenceTagger


def load_tagger(model: str | Path | None = None, device: str = "auto", convention: str | None = None
                ) -> SentenceTagger:
    """A shipped model's name or a model directory (None: the embedded default), ready to tag."""
    from mambaner_cli.runtime.tagger import Tagger

    return Tagger.load(model, device=device, convention=convention)
