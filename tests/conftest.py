"""Shared fixtures: the corpus folder and a tiny seeded model directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def data_dir() -> Path | None:
    path = Path(os.environ.get("MAMBANER_DATA", REPO.parent / "shared" / "data"))
    return path if (path / "iob").is_dir() else None


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    path = data_dir()
    if path is None:
        pytest.skip("benchmark corpora not found (set MAMBANER_DATA)")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny, seeded, untrained tagger saved as a complete model directory."""
    import torch

    from mambaner_cli.model.config import TaggerConfig
    from mambaner_cli.model.features import Vocabulary
    from mambaner_cli.model.models.tagger import MambaTagger
    from mambaner_cli.runtime.model_dir import write_scratch

    torch.manual_seed(0)
    words = Vocabulary.build({"disease": 3, "the": 5, "cancer": 2}, 1)
    chars = Vocabulary.build({c: 1 for c in "abcdefghijklmnopqrstuvwxyz0123456789.,-()"}, 1)
    config = TaggerConfig(labels=["O", "B-Disease", "I-Disease"], word_vocab_size=len(words),
                          char_vocab_size=len(chars), word_dim=8, char_dim=8, char_channels=8, case_dim=4,
                          hidden_size=16, num_layers=1, state_size=4)
    out = tmp_path_factory.mktemp("models") / "tiny"
    write_scratch(out, MambaTagger(config), words, chars, "tiny")
    return out


@pytest.fixture
def one_thread():
    """The CPU is shared (a training run may be going on): one torch thread is enough for tiny models,
    and two threads stall when the other core is busy."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def private_state_dir(tmp_path_factory):
    """The E-utilities rate-limit state (shared by a user's runs) goes to a temporary folder, not ~/.cache."""
    previous = os.environ.get("MAMBANER_STATE_DIR")
    os.environ["MAMBANER_STATE_DIR"] = str(tmp_path_factory.mktemp("state"))
    yield
    if previous is None:
        os.environ.pop("MAMBANER_STATE_DIR", None)
    else:
        os.environ["MAMBANER_STATE_DIR"] = previous
