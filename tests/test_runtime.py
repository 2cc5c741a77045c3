"""The runtime: span extraction, windowing of long sentences, model directories, the lexicon input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mambaner_cli.document import Token, make_document
from mambaner_cli.errors import MambanerError
from mambaner_cli.model.config import TaggerConfig
from mambaner_cli.model.features import Vocabulary
from mambaner_cli.model.lexicon import LexiconMatcher, Lexicons
from mambaner_cli.model.models.tagger import MambaTagger
from mambaner_cli.runtime.load import load_tagger
from mambaner_cli.runtime.model_dir import pack, resolve_model, write_scratch
from mambaner_cli.runtime.pipeline import RunSummary, tag_documents
from mambaner_cli.runtime.sentence_tagger import windows
from mambaner_cli.runtime.spans import repair_iob, spans_from_tags, split_unbalanced_brackets, tags_from_spans
from mambaner_cli.runtime.tagger import Tagger
from mambaner_cli.text.tokens import tokenize

pytestmark = pytest.mark.usefixtures("one_thread")


def test_spans_from_tags_offsets_and_scores():
    text = "Acute renal failure and gout."
    tokens = tokenize(text)
    tags = ["B-Disease", "I-Disease", "I-Disease", "O", "B-Disease", "O"]
    spans = spans_from_tags(text, tokens, tags, [0.9, 0.8, 0.7, 1.0, 0.5, 1.0], sentence_index=3)
    assert [(s.text, s.label, s.score, s.sentence_index) for s in spans] == [
        ("Acute renal failure", "Disease", 0.8, 3), ("gout", "Disease", 0.5, 3)]
    assert all(text[s.start:s.end] == s.text for s in spans)


def test_repair_and_round_trip():
    assert repair_iob(["I-Disease", "I-Disease", "O", "I-Chemical", "B-Disease", "I-Chemical"]) == [
        "B-Disease", "I-Disease", "O", "B-Chemical", "B-Disease", "B-Chemical"]
    text = "Breast cancer in BRCA1 carriers"
    tokens = tokenize(text)
    spans = spans_from_tags(text, tokens, ["B-Disease", "I-Disease", "O", "O", "O"], [1.0] * 5)
    assert tags_from_spans(tokens, spans) == ["B-Disease", "I-Disease", "O", "O", "O"]


@pytest.mark.parametrize(("tokens", "tags", "expected"), [
    # a long form run into its abbreviation's bracket: two mentions
    ("Crohn ' s disease ( CD ) is", "B-D I-D I-D I-D I-D I-D O O", "B-D I-D I-D I-D O B-D O O"),
    ("jaw of steel ) after", "B-D I-D I-D I-D O", "B-D I-D I-D O O"),
    ("( a [ b )", "B-X I-X I-X I-X I-X", "O B-X O B-X O"),
    ("( ( x", "B-X I-X I-X", "O O B-X"),
    # balanced brackets, brackets outside a mention and other mentions stay as they are
    ("Ras ( V12 ) and IL ( 6", "B-G I-G I-G I-G O B-G O O", "B-G I-G I-G I-G O B-G O O"),
    ("D5 ( CT ) ( x ] y", "B-G I-G I-G I-G O B-C I-C I-C", "B-G I-G I-G I-G O B-C O B-C"),
])
def test_mentions_are_cut_at_unmatched_brackets(tokens: str, tags: str, expected: str) -> None:
    def iob(text: str) -> list[str]:
        return [tag if tag == "O" else tag.replace("D", "Disease").replace("-X", "-Xx") for tag in text.split()]

    result = split_unbalanced_brackets(tokens.split(), iob(tags))
    assert result == iob(expected)
    assert repair_iob(result) == result


def test_a_loaded_tagger_cuts_mentions_at_unmatched_brackets_and_training_does_not(tiny_model_dir: Path) -> None:
    """``from_model_dir`` (what tag and evaluate load) switches the rule on; the Tagger that training scores
    devel with keeps the network's own tags."""
    loaded = load_tagger(tiny_model_dir, device="cpu")
    assert loaded.split_brackets
    plain = Tagger(loaded.model, loaded.words, loaded.chars, "plain", torch.device("cpu"), lexicon=loaded.lexicon)
    assert not plain.split_brackets
    assert not load_tagger(tiny_model_dir, device="cpu", rules=False).split_brackets  # --network-only
    sentences = [["the", "(", "disease", "cancer", "(", "x"] * 3, ["cancer", ")", "disease", "the"]]
    for (network, _), (ruled, _), tokens in zip(plain.tag(sentences), loaded.tag(sentences), sentences):
        assert ruled == split_unbalanced_brackets(tokens, network)


@pytest.mark.parametrize("length,size", [(1, 8), (8, 8), (9, 8), (25, 8), (100, 8), (1000, 256), (300, 7)])
def test_windows_keep_every_token_once(length, size):
    kept = []
    for start, end, keep_start, keep_end in windows(length, size):
        assert 0 <= start <= keep_start <= keep_end <= end <= length and end - start <= size
        kept.extend(range(keep_start, keep_end))
    assert kept == list(range(length))


def tiny_tagger(lexicon: LexiconMatcher | None = None, window: int = 256) -> Tagger:
    torch.manual_seed(1)
    words = Vocabulary.build({"gout": 2, "the": 3}, 1)
    chars = Vocabulary.build({c: 1 for c in "abcdefghijklmnopqrstuvwxyz"}, 1)
    config = TaggerConfig(labels=["O", "B-Disease", "I-Disease"], word_vocab_size=len(words),
                          char_vocab_size=len(chars), word_dim=8, char_dim=8, char_channels=8, case_dim=4,
                          hidden_size=16, num_layers=1, state_size=4, lexicon_dim=4 if lexicon else 0)
    return Tagger(MambaTagger(config), words, chars, "tiny", torch.device("cpu"), window, lexicon)


def test_long_sentences_are_windowed_not_cut():
    sentence = ["the", "gout", "of", "kings"] * 40  # 160 tokens
    tagger = tiny_tagger(window=32)
    tags, scores = tagger.tag([sentence, ["gout"]], batch_size=2)[0]
    assert len(tags) == len(scores) == 160
    assert repair_iob(tags) == tags
    # each token is tagged from the window that keeps it, exactly as if that window were a sentence
    for start, end, keep_start, keep_end in windows(160, 32):
        alone = tagger.tag([sentence[start:end]])[0][1]
        assert scores[keep_start:keep_end] == pytest.approx(alone[keep_start - start:keep_end - start], abs=1e-5)


def test_lexicon_changes_the_input_and_is_saved(tmp_path):
    lexicon = LexiconMatcher(["gout", "renal failure"])
    tagger = tiny_tagger(lexicon)
    with pytest.raises(MambanerError, match="lexicon"):
        Tagger(tagger.model, tagger.words, tagger.chars, "x", torch.device("cpu"))
    sentence = ["renal", "failure", "and", "gout"]
    with_matches = tagger.tag([sentence])[0][1]
    tagger.lexicon = LexiconMatcher(["something else"])
    assert tagger.tag([sentence])[0][1] != with_matches  # the codes reach the network
    write_scratch(tmp_path / "m", tagger.model, tagger.words, tagger.chars, "m", lexicon)
    loaded = load_tagger(tmp_path / "m", device="cpu")
    assert loaded.lexicon.match(sentence) == [1, 2, 0, 1]
    assert loaded.tag([sentence])[0][1] == pytest.approx(with_matches, abs=1e-5)


def test_typed_lexicons_are_one_input_saved_one_file_a_type(tmp_path):
    torch.manual_seed(1)
    words = Vocabulary.build({"gout": 2, "insulin": 3}, 1)
    chars = Vocabulary.build({c: 1 for c in "abcdefghijklmnopqrstuvwxyz"}, 1)
    config = TaggerConfig(labels=["O", "B-Disease", "I-Disease", "B-Gene", "I-Gene"], word_vocab_size=len(words),
                          char_vocab_size=len(chars), word_dim=8, char_dim=8, char_channels=8, case_dim=4,
                          hidden_size=16, num_layers=1, state_size=4, lexicon_dim=4,
                          lexicon_types=["Disease", "Gene"])
    network = MambaTagger(config)
    assert network.features.lexicon.num_embeddings == 1 + 9  # padding + 3 x 3 combined codes
    disease, gene = LexiconMatcher(["gout", "renal failure"]), LexiconMatcher(["insulin", "gout"])
    with pytest.raises(MambanerError, match="reads lexicons of Disease, Gene"):
        Tagger(network, words, chars, "x", torch.device("cpu"), lexicon=disease)  # one type's is not enough
    tagger = Tagger(network, words, chars, "x", torch.device("cpu"), lexicon=Lexicons({"Disease": disease,
                                                                                      "Gene": gene}))
    sentence = ["insulin", "and", "gout", "with", "renal", "failure"]
    assert tagger.input_codes([sentence])[0] == [[3, 0, 1 + 3, 0, 1, 2]]
    scores = tagger.tag([sentence])[0][1]
    tagger.lexicon = Lexicons({"Disease": disease, "Gene": LexiconMatcher(["other"])})
    assert tagger.tag([sentence])[0][1] != scores  # the gene codes reach the network
    write_scratch(tmp_path / "m", network, words, chars, "m", Lexicons({"Disease": disease, "Gene": gene}))
    assert sorted(path.name for path in (tmp_path / "m").glob("lexicon*")) == ["lexicon-gene.txt.gz", "lexicon.txt.gz"]
    pack(tmp_path / "m", tmp_path / "packed")
    for folder in ("m", "packed"):
        loaded = load_tagger(tmp_path / folder, device="cpu")
        assert loaded.lexicon.types == ["Disease", "Gene"]
        assert loaded.input_codes([sentence])[0] == [[3, 0, 4, 0, 1, 2]]
        assert loaded.tag([sentence])[0][1] == pytest.approx(scores, abs=1e-3)
    (tmp_path / "m" / "lexicon-gene.txt.gz").unlink()
    with pytest.raises(MambanerError, match="lexicon-gene.txt.gz"):
        load_tagger(tmp_path / "m", device="cpu")
    with pytest.raises(ValueError, match="lexicon_types"):
        TaggerConfig.from_dict({**config.to_dict(), "lexicon_types": ["Gene", "Gene"]})


def test_model_directory_errors(tmp_path, tiny_model_dir):
    with pytest.raises(MambanerError, match="shipped models"):
        resolve_model("no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MambanerError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))
    broken = tmp_path / "broken"
    broken.mkdir()
    config = json.loads((tiny_model_dir / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(MambanerError, match="vocab.json is missing"):
        load_tagger(broken)


def test_pipeline_accounts_for_every_document(tiny_model_dir):
    from mambaner_cli.errors import ReadError

    docs = [make_document(str(i), f"Title {i}.", "Gout and fever. Second sentence." if i % 2 else None)
            for i in range(7)]
    items = [docs[0], ReadError("bad.xml", "truncated", line=3), *docs[1:]]
    summary = RunSummary()
    out = list(tag_documents(items, load_tagger(tiny_model_dir, device="cpu"), summary, batch_size=2,
                             chunk_sentences=3))
    assert [d.id for d in out] == [str(i) for i in range(7)]
    assert summary.documents == 7 and [str(e) for e in summary.errors] == ["bad.xml:3: truncated"]
    assert summary.sentences == sum(len(d.sentences) for d in out) == 7 + 3 * 2
    for doc in out:
        for sentence in doc.sentences:
            assert len(sentence.tags) == len(sentence.tokens)
            assert all(isinstance(t, Token) and doc.text[t.start:t.end] == t.text for t in sentence.tokens)


def test_background_reading_gives_the_same_output_and_errors(tiny_model_dir):
    from mambaner_cli.errors import ReadError

    def items():
        for i in range(9):
            if i == 4:
                yield ReadError("bad.xml", "truncated", line=i)
            yield make_document(str(i), f"Title {i}.", "Gout and fever. Second sentence." if i % 2 else None)

    tagger = load_tagger(tiny_model_dir, device="cpu")
    runs = []
    for prefetch in (0, 2):
        summary = RunSummary()
        docs = list(tag_documents(items(), tagger, summary, batch_size=2, chunk_sentences=3, prefetch=prefetch))
        runs.append(([(d.id, [s.tags for s in d.sentences], [(a.start, a.end) for a in d.annotations])
                      for d in docs], [str(e) for e in summary.errors], summary.sentences))
    assert runs[0] == runs[1]
    assert [doc_id for doc_id, _, _ in runs[0][0]] == [str(i) for i in range(9)]
    assert runs[0][1] == ["bad.xml:4: truncated"]


def test_an_error_while_reading_in_the_background_reaches_the_caller(tiny_model_dir):
    from mambaner_cli.errors import InputError

    def items():
        yield make_document("1", "Gout.", None)
        raise InputError("broken.xml", "the rest of the file cannot be read", line=7)

    out = tag_documents(items(), load_tagger(tiny_model_dir, device="cpu"), RunSummary(), chunk_sentences=1)
    with pytest.raises(InputError, match=r"broken\.xml:7"):
        list(out)


def test_stopping_early_stops_the_background_reader(tiny_model_dir):
    import itertools
    import threading
    import time

    pulled = itertools.count()

    def endless():
        for i in itertools.count():
            next(pulled)
            yield make_document(str(i), "Gout.", None)

    out = tag_documents(endless(), load_tagger(tiny_model_dir, device="cpu"), RunSummary(), chunk_sentences=1,
                        prefetch=2)
    assert next(out).id == "0"
    out.close()  # as when --fail-fast or an exception ends the run
    deadline = time.monotonic() + 5
    while any(t.name == "mambaner-reader" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "mambaner-reader" for t in threading.enumerate())
    assert next(pulled) < 10  # the reader stopped a couple of chunks ahead, not at the end of the input


def copy_model(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def test_a_vocabulary_from_another_model_is_refused_at_load(tmp_path, tiny_model_dir):
    """Today's failure modes: a vocab.json of another model tagged with exit 0 (same size) or crashed
    mid-run (more entries); both are now refused when the model loads, naming the file."""
    vocab = json.loads((tiny_model_dir / "vocab.json").read_text())
    longer = copy_model(tiny_model_dir, tmp_path / "longer")
    (longer / "vocab.json").write_text(json.dumps({**vocab, "words": vocab["words"] + ["extra", "words"]}))
    with pytest.raises(MambanerError, match=r"words vocabulary \(vocab.json\) has 7 entries.*different models"):
        load_tagger(longer, device="cpu")
    shorter = copy_model(tiny_model_dir, tmp_path / "shorter")
    (shorter / "vocab.json").write_text(json.dumps({**vocab, "chars": vocab["chars"][:-1]}))
    with pytest.raises(MambanerError, match="chars vocabulary"):
        load_tagger(shorter, device="cpu")


def test_weights_that_do_not_match_the_config_are_refused(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file, save_file

    other = copy_model(tiny_model_dir, tmp_path / "other")
    state = load_file(str(other / "model.safetensors"))
    state["emissions.weight"] = torch.zeros(5, state["emissions.weight"].shape[1])
    save_file(state, str(other / "model.safetensors"))
    with pytest.raises(MambanerError, match=r"model.safetensors does not match config.json: .*emissions.weight"):
        load_tagger(other, device="cpu")
    config = json.loads((other / "config.json").read_text())
    config["format"] = "something-else"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(MambanerError, match="not a mambaner model"):
        load_tagger(other, device="cpu")
    config.update(format="mambaner-tagger", recipe="distilled")
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(MambanerError, match="unknown recipe 'distilled'"):
        load_tagger(other, device="cpu")


def test_the_loader_table_gives_each_recipe_its_tagger(tiny_model_dir):
    from mambaner_cli.runtime.load import LOADERS
    from mambaner_cli.runtime.model_dir import RECIPES
    from mambaner_cli.runtime.sentence_tagger import SentenceTagger

    assert set(LOADERS) == set(RECIPES) - {"pretrain"}  # an encoder is not a tagger
    tagger = load_tagger(tiny_model_dir, device="cpu")
    assert isinstance(tagger, Tagger) and tagger.convention is None and tagger.label == "tiny"
    for attribute in ("name", "convention", "label", "num_parameters", "tag"):
        assert hasattr(tagger, attribute), attribute
    assert SentenceTagger.__annotations__.keys() >= {"name", "convention"}


@pytest.mark.parametrize(("cores", "given", "expected"), [(2, 0, 1), (1, 0, 1), (16, 0, 15), (2, 2, 2), (16, 3, 3)])
def test_tagging_leaves_one_core_to_the_reading_thread(monkeypatch, cores, given, expected):
    from mambaner_cli.runtime import device

    monkeypatch.setattr(device, "physical_cores", lambda: cores)
    assert device.tagging_threads(given) == expected


def test_a_tag_run_sets_the_tagging_threads(monkeypatch, tiny_model_dir, tmp_path):
    from mambaner_cli.runtime import device
    from mambaner_cli.runtime.run import TagOptions, _load_tagger

    monkeypatch.setattr(device, "physical_cores", lambda: 3)
    before = torch.get_num_threads()
    try:
        _load_tagger(TagOptions(output="-", model=str(tiny_model_dir), device="cpu"))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("seed", range(4))
def test_length_batches_cover_every_piece_in_order_and_bound_the_padding(seed):
    import random

    from mambaner_cli.runtime.tagger import PADDING_SLACK, length_batches

    rng = random.Random(seed)
    lengths = sorted(rng.choice([rng.randint(1, 12), rng.randint(1, 120)]) for _ in range(rng.randint(0, 700)))
    batches = length_batches(lengths, 32)
    assert [i for first, last in batches for i in range(first, last)] == list(range(len(lengths)))
    for k, (first, last) in enumerate(batches):
        part = lengths[first:last]
        assert 1 <= len(part) <= 32
        assert len(part) == 1 or len(part) * part[-1] <= sum(part) * (1 + PADDING_SLACK)  # padding bounded
        if last < len(lengths) and len(part) < 32:  # it ended only because the next piece would break the bound
            grown = lengths[first:last + 1]
            assert len(grown) * grown[-1] > sum(grown) * (1 + PADDING_SLACK)
    # lengths that agree fill whole batches, as fixed batches would
    assert length_batches([7] * 70, 32) == [(0, 32), (32, 64), (64, 70)]


def test_a_tagger_gives_each_sentence_the_tags_it_gets_alone_whatever_its_batch(tiny_model_dir):
    tagger = load_tagger(tiny_model_dir, device="cpu")
    sentences = [tokenize(text) for text in ("Gout.", "Acute renal failure and gout were seen in the ward today .",
                                             "Asthma", "The patient had no fever and no asthma .")] * 9
    sentences = [[token.text for token in tokens] for tokens in sentences]
    together = tagger.tag(sentences, batch_size=8)
    for sentence, (tags, scores) in zip(sentences, together):
        alone_tags, alone_scores = tagger.tag([sentence])[0]
        assert tags == alone_tags and scores == pytest.approx(alone_scores, abs=1e-5)


def plain_spans(text: str, tokens: list[Token], tags: list[str], scores: list[float]) -> list[tuple]:
    """The plain reference of spans_from_tags: every token visited, over valid IOB2 tags."""
    spans, start, label = [], -1, ""
    for i, tag in enumerate([*tags, "O"]):
        continues = tag.startswith("I-") and tag[2:] == label and start >= 0
        if start >= 0 and not continues:
            begin, end = tokens[start].start, tokens[i - 1].end
            spans.append((begin, end, text[begin:end], label, round(sum(scores[start:i]) / (i - start), 4)))
            start = -1
        if tag.startswith("B-"):
            start, label = i, tag[2:]
    return spans


@pytest.mark.parametrize("seed", range(3))
def test_spans_from_tags_equal_the_plain_reference_on_random_sentences(seed):
    import random

    rng = random.Random(seed)
    labels = ["O"] * 6 + ["B-Disease", "I-Disease", "B-Gene", "I-Gene"]
    for _ in range(3000):
        words = [rng.choice(["ab", "c", "def"]) for _ in range(rng.randint(0, 12))]
        text = " ".join(words)
        tokens = tokenize(text)
        tags = [rng.choice(labels) for _ in words]
        scores = [rng.random() for _ in words]
        expected = plain_spans(text, tokens, repair_iob(tags), scores)  # a stray I- starts a mention
        for given in (tags, repair_iob(tags)):
            got = [(s.start, s.end, s.text, s.label, s.score) for s in spans_from_tags(text, tokens, given, scores)]
            assert got == expected, given


def tiny_pattern_tagger(window: int = 256) -> Tagger:
    torch.manual_seed(1)
    words = Vocabulary.build({"the": 3, "mutation": 2}, 1)
    chars = Vocabulary.build({c: 1 for c in "abcdefghijklmnopqrstuvwxyzACGT0123456789.>"}, 1)
    config = TaggerConfig(labels=["O", "B-Variant", "I-Variant"], word_vocab_size=len(words),
                          char_vocab_size=len(chars), word_dim=8, char_dim=8, char_channels=8, case_dim=4,
                          hidden_size=16, num_layers=1, state_size=4, pattern_dim=4)
    return Tagger(MambaTagger(config), words, chars, "tiny", torch.device("cpu"), window)


def test_variant_pattern_codes_reach_the_network_and_are_saved(tmp_path, monkeypatch):
    import mambaner_cli.runtime.tagger as runtime_tagger

    tagger = tiny_pattern_tagger()
    sentence = ["the", "c.", "671G", ">", "A", "mutation"]
    assert tagger.input_codes([sentence]) == (None, [[0, 1, 2, 2, 2, 0]])
    with_codes = tagger.tag([sentence])[0][1]
    monkeypatch.setattr(runtime_tagger, "pattern_codes", lambda tokens, matches=None: [0] * len(tokens))
    assert tagger.tag([sentence])[0][1] != pytest.approx(with_codes, abs=1e-4)  # the codes reach the network
    monkeypatch.undo()
    write_scratch(tmp_path / "m", tagger.model, tagger.words, tagger.chars, "m")
    loaded = load_tagger(tmp_path / "m", device="cpu", rules=False)
    assert loaded.model.config.pattern_dim == 4
    assert loaded.tag([sentence])[0][1] == pytest.approx(with_codes, abs=1e-5)


def test_variant_patterns_are_found_once_a_sentence_for_the_input_and_the_rule(monkeypatch):
    import mambaner_cli.runtime.tagger as runtime_tagger
    from mambaner_cli.model import patterns

    network = tiny_pattern_tagger()
    tagger = Tagger(network.model, network.words, network.chars, "tiny", torch.device("cpu"), rules=True)
    sentences = [["the", "c.", "671G", ">", "A", "mutation"], ["the", "mutation", "rs12345"], ["the"]]
    calls: list[tuple[str, ...]] = []
    original = patterns.variant_matches

    def counted(tokens):
        calls.append(tuple(tokens))
        return original(tokens)

    # wherever the matches are found: by the tagger, or inside pattern_codes / add_variant_mentions
    monkeypatch.setattr(runtime_tagger, "variant_matches", counted)
    monkeypatch.setattr(patterns, "variant_matches", counted)
    tagged = tagger.tag(sentences)
    assert sorted(calls) == sorted(tuple(tokens) for tokens in sentences)  # once each, not once per use
    # the shared matches reach both uses: the input codes and the rule's mentions
    assert tagger.input_codes(sentences)[1] == [[0, 1, 2, 2, 2, 0], [0, 0, 1], [0]]
    assert tagged[0][0][1:5] == ["B-Variant", "I-Variant", "I-Variant", "I-Variant"]
    assert tagged[1][0][2] == "B-Variant"


def test_variant_pattern_codes_come_from_the_whole_sentence_not_the_window():
    # a window edge inside "c. 671G > A" must not change its codes: each window reads the whole sentence's
    sentence = (["the", "mutation"] * 7 + ["c.", "671G", ">", "A"]) * 6  # 108 tokens
    tagger = tiny_pattern_tagger(window=32)
    codes = tagger.input_codes([sentence])[1][0]
    assert codes.count(1) == 6 and codes.count(2) == 18
    scores = tagger.tag([sentence])[0][1]
    for start, end, keep_start, keep_end in windows(len(sentence), 32):
        features = tagger.encode([sentence[start:end]], None, [codes[start:end]])
        alone = tagger.model.decode(**features)[1][0]
        assert scores[keep_start:keep_end] == pytest.approx(alone[keep_start - start:keep_end - start], abs=1e-5)
