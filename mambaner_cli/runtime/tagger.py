"""The scratch recipe's tagger at run time: tag batches of tokenized sentences.

    tagger = load_tagger("default")          # runtime/load.py: any model directory, by its recipe
    tags, scores = tagger.tag([["Wilson", "disease", "is", "rare", "."]])[0]

Sentences are bucketed by length into batches (so padding costs little), and a sentence longer than
the model's window is tagged in overlapping windows, each token taking its tag from the window in
which it sits furthest from an edge — long sentences are windowed, never cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from mambaner_cli.document import Sentence
from mambaner_cli.errors import MambanerError
from mambaner_cli.model.features import Vocabulary, encode_batch
from mambaner_cli.model.lexicon import LexiconMatcher, Lexicons
from mambaner_cli.model.models.tagger import MambaTagger
from mambaner_cli.model.patterns import (
    VARIANT,
    VariantMatches,
    add_variant_mentions,
    pattern_codes,
    variant_matches,
)
from mambaner_cli.runtime.abbreviations import propagate_abbreviations
from mambaner_cli.runtime.device import pick_device
from mambaner_cli.runtime.model_dir import SCRATCH_WINDOW, load_scratch
from mambaner_cli.runtime.sentence_tagger import TaggedSentence, model_label, windows
from mambaner_cli.runtime.spans import repair_iob, split_unbalanced_brackets


class Tagger:
    """The scratch recipe's network as a :class:`~mambaner_cli.runtime.sentence_tagger.SentenceTagger`."""

    def __init__(self, model: MambaTagger, words: Vocabulary, chars: Vocabulary, name: str,
                 device: torch.device, window: int = SCRATCH_WINDOW, lexicon: Lexicons | LexiconMatcher | None = None,
                 convention: str | None = None, rules: bool = False) -> None:
        if model.config.lexicon_dim and lexicon is None:
            raise MambanerError(f"model {name} reads lexicon matches but has no lexicon (lexicon.txt.gz).")
        if isinstance(lexicon, LexiconMatcher):  # the lexicon of a network with one lexicon type
            lexicon = Lexicons(dict(zip(model.config.lexicon_types[:1], [lexicon])))
        if lexicon is not None and model.config.lexicon_dim and lexicon.types != model.config.lexicon_types:
            raise MambanerError(f"model {name} reads lexicons of {', '.join(model.config.lexicon_types)} but was given "
                                f"{', '.join(lexicon.types)}.")
        self.lexicon = lexicon
        self.model = model.to(device).eval()
        self.words = words
        self.chars = chars
        self.name = name
        self.device = device
        self.window = window
        self.labels: list[str] = list(model.config.labels)
        # The convention a loaded model was folded to (None: the model has no conventions).
        self.convention = convention
        # For a network with annotation conventions that is not folded (training scores one while it
        # learns): the index, into model.config.conventions, of the convention every sentence is read under.
        self.convention_id: int | None = None
        # The run-time rules beside the network, on for a loaded model (from_model_dir) and off for the
        # networks that training scores (an epoch is chosen on the network): mentions cut at an unmatched
        # bracket (runtime/spans.py), for a model that tags variants the variant mentions in standard
        # notation (model/patterns.py),
        self.split_brackets = rules
        self.variant_patterns = rules and f"B-{VARIANT}" in self.labels
        # and, once a document's sentences are tagged (finish_document), its defined short forms take the
        # type of their long forms (runtime/abbreviations.py)
        self.abbreviations = rules

    @classmethod
    def from_model_dir(cls, model_dir: Path, config: dict, device: str = "auto", convention: str | None = None,
                       rules: bool = True) -> Tagger:
        """A scratch model directory (``config``: its config.json), with ``convention`` folded in;
        ``rules``: the run-time rules beside the network (False: the network alone, ``--network-only``)."""
        loaded = load_scratch(model_dir, config, convention)
        return cls(loaded.network, loaded.words, loaded.chars, loaded.name, pick_device(device), loaded.window,
                   loaded.lexicon, loaded.convention, rules)

    @property
    def label(self) -> str:
        return model_label(self.name, self.convention)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @torch.inference_mode()
    def tag(self, sentences: Sequence[Sequence[str]], batch_size: int = 32) -> list[TaggedSentence]:
        """Tags and confidences for each sentence, in the order given."""
        # Cut long sentences into windows; every piece is tagged like a sentence of its own.
        pieces: list[tuple[int, int, int, int, int]] = []  # sentence, start, end, keep start, keep end
        for index, tokens in enumerate(sentences):
            for start, end, keep_start, keep_end in windows(len(tokens), self.window):
                pieces.append((index, start, end, keep_start, keep_end))
        order = sorted(range(len(pieces)), key=lambda i: pieces[i][2] - pieces[i][1])
        # the variant patterns, found once a sentence for the network's input and the run-time rule both
        matches = ([variant_matches(tokens) for tokens in sentences]
                   if self.variant_patterns or self.model.config.pattern_dim else None)
        codes, patterns = self.input_codes(sentences, matches)
        results: list[TaggedSentence] = [(["O"] * len(s), [1.0] * len(s)) for s in sentences]
        lengths = [pieces[i][2] - pieces[i][1] for i in order]
        for first, last in length_batches(lengths, batch_size):
            batch = [pieces[i] for i in order[first:last] if pieces[i][2] > pieces[i][1]]
            if not batch:
                continue
            tokens = [list(sentences[s][start:end]) for s, start, end, _, _ in batch]
            lexicon_codes = [codes[s][start:end] for s, start, end, _, _ in batch] if codes is not None else None
            window_patterns = [patterns[s][start:end] for s, start, end, _, _ in batch] if patterns is not None else None
            features = self.encode(tokens, lexicon_codes, window_patterns)
            features = {key: value.to(self.device) for key, value in features.items()}
            tag_ids, confidences = self.model.decode(**features)
            labels = self.labels
            for (s, start, _, keep_start, keep_end), ids, conf in zip(batch, tag_ids, confidences):
                tags, scores = results[s]
                kept = slice(keep_start - start, keep_end - start)  # the window's positions it keeps
                tags[keep_start:keep_end] = [labels[i] for i in ids[kept]]
                scores[keep_start:keep_end] = [float(c) for c in conf[kept]]
        tagged: list[TaggedSentence] = []
        for index, (tokens, (tags, scores)) in enumerate(zip(sentences, results)):
            tags = repair_iob(tags)
            if self.split_brackets:
                tags = split_unbalanced_brackets(tokens, tags)
            if self.variant_patterns:
                tags, scores = with_variant_patterns(tokens, tags, scores, matches[index] if matches else None)
            tagged.append((tags, scores))
        return tagged

    def input_codes(self, sentences: Sequence[Sequence[str]], matches: Sequence[VariantMatches] | None = None
                    ) -> tuple[list[list[int]] | None, list[list[int]] | None]:
        """The lexicon-match and variant-pattern codes of whole sentences, None for an input the network
        does not read; matched over whole sentences, so that a window never cuts a name in two (``matches``:
        the sentences' variant pattern matches, found here if not given)."""
        lexicon = [self.lexicon.match(tokens) for tokens in sentences] if self.lexicon is not None else None
        patterns = None
        if self.model.config.pattern_dim:
            patterns = [pattern_codes(tokens, matches[index] if matches is not None else None)
                        for index, tokens in enumerate(sentences)]
        return lexicon, patterns

    def encode(self, tokens: list[list[str]], lexicon_codes: list[list[int]] | None = None,
               patterns: list[list[int]] | None = None) -> dict[str, torch.Tensor]:
        """One batch's input tensors (on the CPU), with the codes of :meth:`input_codes` for these tokens."""
        features = encode_batch(tokens, self.words, self.chars, self.model.config.max_word_len, lexicon_codes,
                                patterns)
        if self.model.config.conventions:
            if self.convention_id is None:
                raise ValueError("this network has annotation conventions: set Tagger.convention_id first")
            features["convention_ids"] = torch.full((len(tokens),), self.convention_id, dtype=torch.long)
        return features

    def finish_document(self, text: str, sentences: list[Sentence], scores: list[list[float]]) -> None:
        """The document-level rule, run by the pipeline on each document once its sentences are tagged
        (tags and confidences changed in place): defined short forms take their long forms' type."""
        if self.abbreviations:
            propagate_abbreviations(text, sentences, scores)


def with_variant_patterns(tokens: Sequence[str], tags: list[str], scores: list[float],
                          matches: VariantMatches | None = None) -> TaggedSentence:
    """One sentence's tags with the pattern mentions added (model/patterns.py); a token that a pattern
    tagged has confidence 1.0 (a rule, not a probability)."""
    patterned = add_variant_mentions(tokens, tags, matches)
    if patterned == tags:
        return tags, scores
    return patterned, [1.0 if new != old else score for new, old, score in zip(patterned, tags, scores)]


# A batch stops growing before its padding would pass this share of its tokens (``length_batches``).
PADDING_SLACK = 0.1


def length_batches(lengths: Sequence[int], batch_size: int) -> list[tuple[int, int]]:
    """Batches over pieces sorted by length, as (first, last) index ranges: at most ``batch_size`` pieces
    each, and a batch ends early where the next piece would make its padding more than ``PADDING_SLACK`` of
    its tokens. Every padded position costs as much as a token in the projections, the convolution and
    the scan; fixed batches of 32 over chunks of 512 sentences padded 20 % of the tokens of BC5CDR-disease
    devel, these 5 % (with half as many batches again, smaller ones): the loop was about 10 % faster in an
    alternating timing (README, Performance), with the same tags (``python -m benchmarks.compare_tags``)."""
    batches: list[tuple[int, int]] = []
    first, total = 0, 0  # the open batch's first piece and its tokens
    for index, length in enumerate(lengths):
        count = index - first
        if count and (count >= batch_size or (count + 1) * length > (total + length) * (1 + PADDING_SLACK)):
            batches.append((first, index))
            first, total = index, 0
        total += length
    if first < len(lengths):
        batches.append((first, len(lengths)))
    return batches
