"""Pseudo-labels for distillation: an ensemble of taggers tags unlabeled sentences, and the sentences it is
sure of become training data for one model (`mambaner train pseudo-label`, then `train scratch --pseudo`).

Averaging the CRF marginals of two train-only runs of the default recipe raised the nine-corpus devel macro
F1 by 0.7 over its members (`benchmarks/ensemble_devel.py`, README); a student trained on the ensemble's tags
of unlabeled text may keep part of that at one model's cost (issue 15, lever 3). The labels are hard: the
valid IOB2 path of highest summed log marginal, kept only for a sentence whose every token has an averaged
marginal of at least ``min_confidence`` for its tag. With ``partial`` the labels are partly soft: each token
also lists every tag whose averaged marginal reaches ``partial`` (a middle column, ``B-Gene|O``), and the
student learns such a token as any of them (partial labels: the CRF sums over the paths through them), so a
sentence the ensemble is unsure of in a few places can be kept without forcing its guess there. The
unlabeled text must hold no sentence of a test split (the data folder's does not).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from mambaner_cli.corpora import CORPORA
from mambaner_cli.corpora import sentences as corpus_sentences
from mambaner_cli.errors import MambanerError
from mambaner_cli.model.modules.crf import constrained_viterbi
from mambaner_cli.runtime.spans import repair_iob
from mambaner_cli.runtime.tagger import Tagger


@torch.inference_mode()
def marginals(tagger: Tagger, token_lists: Sequence[Sequence[str]], batch_size: int = 64) -> list[np.ndarray]:
    """Per sentence, the [length, tags] CRF marginals of ``tagger``'s network (whole sentences, no windows)."""
    model = tagger.model
    order = sorted(range(len(token_lists)), key=lambda i: len(token_lists[i]))
    out: list[np.ndarray] = [np.zeros((0, len(tagger.labels)))] * len(token_lists)
    for first in range(0, len(order), batch_size):
        batch = [i for i in order[first:first + batch_size] if token_lists[i]]
        if not batch:
            continue
        tokens = [list(token_lists[i]) for i in batch]
        features = tagger.encode(tokens, *tagger.input_codes(tokens))
        emissions = model.forward(**features, infer=True).float()
        probabilities = model.crf.marginals(emissions, features["mask"].bool()).numpy()
        for row, i in enumerate(batch):
            out[i] = probabilities[row, :len(token_lists[i])]
    return out


def posterior_tags(probabilities: Sequence[np.ndarray], labels: Sequence[str]) -> list[list[str]]:
    """The valid IOB2 path of highest summed log marginal, per sentence."""
    tags: list[list[str]] = []
    for p in probabilities:
        if len(p) == 0:
            tags.append([])
            continue
        log_p = torch.from_numpy(np.log(np.clip(p, 1e-12, 1.0))).float()[None]
        path = constrained_viterbi(log_p, torch.ones(1, len(p), dtype=torch.bool), list(labels))[0]
        tags.append(repair_iob([labels[i] for i in path]))
    return tags


def ensemble_marginals(taggers: Sequence[Tagger], token_lists: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """The members' marginals averaged per sentence; the members must share their labels, in order."""
    labels = list(taggers[0].labels)
    for tagger in taggers[1:]:
        if list(tagger.labels) != labels:
            raise MambanerError(f"model {tagger.name} tags {', '.join(tagger.labels)}; the first model tags "
                                f"{', '.join(labels)}: an ensemble needs the same labels")
    per_model = [marginals(tagger, token_lists) for tagger in taggers]
    return [np.mean([member[i] for member in per_model], axis=0) for i in range(len(token_lists))]


def pseudo_label(taggers: Sequence[Tagger], token_lists: Sequence[Sequence[str]], min_confidence: float
                 ) -> list[tuple[list[str], list[str]]]:
    """The sentences the ensemble is sure of (every token's averaged marginal of its tag ≥ ``min_confidence``),
    with the ensemble's tags, in the order given."""
    return [(tokens, tags) for tokens, tags, _ in partial_pseudo_label(taggers, token_lists, min_confidence, 1.0)]


def partial_pseudo_label(taggers: Sequence[Tagger], token_lists: Sequence[Sequence[str]], min_confidence: float,
                         partial: float) -> list[tuple[list[str], list[str], list[tuple[str, ...]]]]:
    """``pseudo_label``'s sentences, each with its alternatives: per token, its tag first, then every other
    tag whose averaged marginal is at least ``partial`` (most probable first)."""
    averaged = ensemble_marginals(taggers, token_lists)
    labels = list(taggers[0].labels)
    kept: list[tuple[list[str], list[str], list[tuple[str, ...]]]] = []
    for tokens, probabilities, tags in zip(token_lists, averaged, posterior_tags(averaged, labels), strict=True):
        if not tokens:
            continue
        chosen = probabilities[np.arange(len(tags)), [labels.index(tag) for tag in tags]]
        if float(chosen.min()) < min_confidence:
            continue
        alternatives = []
        for tag, row in zip(tags, probabilities):
            others = [labels[k] for k in np.argsort(-row, kind="stable") if row[k] >= partial and labels[k] != tag]
            alternatives.append((tag, *others))
        kept.append((list(tokens), tags, alternatives))
    return kept


def sentence_key(tokens: Sequence[str]) -> str:
    """A sentence's text without whitespace, lower-cased: the same sentence however it was tokenized."""
    return "".join(tokens).lower()


def held_out_keys(data_dir: str | Path | None) -> set[str]:
    """The :func:`sentence_key` of every devel and test sentence of the registry's corpora that the data
    folder has. The data folder's unlabeled sentences come from the train *and devel* splits of the corpora
    they were collected from: a student must not see a devel sentence, even machine-tagged, that devel then
    scores (nor, ever, a test sentence)."""
    keys: set[str] = set()
    for name in CORPORA:
        for split in ("devel", "test"):
            try:
                keys.update(sentence_key(tokens) for tokens, _ in corpus_sentences(name, split, data_dir))
            except MambanerError:  # a corpus or split this data folder does not have
                continue
    return keys


def read_unlabeled(paths: Iterable[str | Path], max_sentences: int, min_tokens: int = 5, max_tokens: int = 100,
                   exclude: set[str] | frozenset[str] = frozenset()) -> list[list[str]]:
    """Tokenized sentences, one a line, tokens separated by spaces, in file order: the first
    ``max_sentences`` of ``min_tokens`` to ``max_tokens`` tokens (headings such as "Figure 2" are not
    sentences, and a sentence this long is usually a table) whose :func:`sentence_key` is not in
    ``exclude``."""
    sentences: list[list[str]] = []
    for path in paths:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise MambanerError(f"Cannot read {path}: {error}") from None
        for line in lines:
            tokens = line.split()
            if min_tokens <= len(tokens) <= max_tokens and sentence_key(tokens) not in exclude:
                sentences.append(tokens)
                if len(sentences) == max_sentences:
                    return sentences
    return sentences


# The first line of a pseudo-label file says how it was made: a comment that `read_conll` skips and that a
# student's model card quotes, so that the card's command can be reproduced from the card alone.
PROVENANCE_PREFIX = "# pseudo-labels: "


#: Between a token's alternative tags in the middle column of a partial pseudo-label file.
ALTERNATIVES_SEPARATOR = "|"


def conll_text(sentences: Iterable[tuple[Sequence[str], Sequence[str]]], provenance: str | None = None,
               alternatives: Sequence[Sequence[Sequence[str]]] | None = None) -> str:
    """``token<TAB>tag`` lines, a blank line after each sentence: what `read_conll` reads; with
    ``provenance`` (one line, no tab), first a comment line that :func:`read_provenance` gives back. With
    ``alternatives`` (per sentence, per token, its tag first), ``token<TAB>alternatives<TAB>tag`` lines:
    `read_conll` still reads the token and the tag (first and last columns), :func:`read_alternatives` the
    middle one."""
    if provenance is not None and ("\t" in provenance or "\n" in provenance):
        raise ValueError("provenance must be one line without tabs")
    # the comment ends in a word that is no IOB2 tag, so that read_conll cannot read it as a token line
    header = f"{PROVENANCE_PREFIX}{provenance} (end)\n" if provenance is not None else ""
    sentences = list(sentences)
    if alternatives is None:
        return header + "".join("".join(f"{token}\t{tag}\n" for token, tag in zip(tokens, tags, strict=True))
                                + "\n" for tokens, tags in sentences)
    return header + "".join(
        "".join(f"{token}\t{ALTERNATIVES_SEPARATOR.join(options)}\t{tag}\n"
                for token, tag, options in zip(tokens, tags, choices, strict=True)) + "\n"
        for (tokens, tags), choices in zip(sentences, alternatives, strict=True))


def read_alternatives(path: str | Path) -> list[list[tuple[str, ...]]] | None:
    """The middle column of a partial pseudo-label file (:func:`conll_text` with ``alternatives``): per
    sentence, per token, its tags, as `read_conll` orders the sentences; None for a two-column file."""
    from mambaner_cli.corpora import is_iob_tag

    sentences: list[list[tuple[str, ...]]] = []
    current: list[tuple[str, ...]] = []
    three_columns = False
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            line = line.rstrip("\r\n")
            if not line.strip():
                if current:
                    sentences.append(current)
                    current = []
                continue
            parts = line.split("\t")
            if line.startswith("#") and (len(parts) < 2 or not is_iob_tag(parts[-1].strip())):
                continue  # a comment, as read_conll reads it
            if parts[0] == "-DOCSTART-":
                continue
            three_columns |= len(parts) == 3
            current.append(tuple(parts[1].split(ALTERNATIVES_SEPARATOR)) if len(parts) == 3 else (parts[-1],))
    if current:
        sentences.append(current)
    return sentences if three_columns else None


def read_provenance(path: str | Path) -> str | None:
    """How a pseudo-label file was made (its first line, written by :func:`conll_text`), or None."""
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            first = stream.readline().rstrip("\r\n")
    except OSError:
        return None
    if not first.startswith(PROVENANCE_PREFIX):
        return None
    return first[len(PROVENANCE_PREFIX):].removesuffix(" (end)")
