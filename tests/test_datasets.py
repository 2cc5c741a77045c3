"""mambaner_cli/corpora.py and training/datasets.py: where the corpora are found, how CoNLL files are read (and refused, naming the
line), the real split sizes, and `download` against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest
from mambaner_cli.training.datasets import labels_of, load_corpora, load_sentences

from mambaner_cli import corpora
from mambaner_cli.corpora import (
    CORPORA,
    DATA_ENV,
    DOWNLOADS,
    download,
    iob_path,
    pubtator_path,
    read_conll,
    resolve_data_dir,
)
from mambaner_cli.errors import MambanerError


def make_data_dir(path: Path, iob: bool = True) -> Path:
    (path / "iob" if iob else path / "ncbi-disease").mkdir(parents=True)
    return path


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No $MAMBANER_DATA, and a user cache directory of our own (empty)."""
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "mambaner" / "data"


# --- resolve_data_dir ----------------------------------------------------------------------------------

def test_argument_wins_over_environment_and_cache(no_env, monkeypatch, tmp_path):
    chosen, env = make_data_dir(tmp_path / "chosen"), make_data_dir(tmp_path / "env")
    make_data_dir(no_env)
    monkeypatch.setenv(DATA_ENV, str(env))
    assert resolve_data_dir(chosen) == chosen
    assert resolve_data_dir(str(chosen)) == chosen


def test_environment_wins_over_cache(no_env, monkeypatch, tmp_path):
    env = make_data_dir(tmp_path / "env")
    make_data_dir(no_env)
    monkeypatch.setenv(DATA_ENV, str(env))
    assert resolve_data_dir() == env


def test_cache_is_the_last_resort(no_env):
    make_data_dir(no_env)
    assert resolve_data_dir() == no_env


def test_a_folder_with_only_pubtator_files_counts(no_env, tmp_path):
    only_documents = make_data_dir(tmp_path / "docs", iob=False)
    assert resolve_data_dir(only_documents) == only_documents


def test_a_wrong_argument_is_an_error_not_a_fallback(no_env, monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(make_data_dir(tmp_path / "env")))
    with pytest.raises(MambanerError) as caught:
        resolve_data_dir(tmp_path / "nowhere")
    message = str(caught.value)
    assert f"{tmp_path / 'nowhere'} (--data-dir)" in message
    assert "(--data-dir)" in message and "$MAMBANER_DATA)" not in message
    assert f"{DATA_ENV}=" in message


def test_a_wrong_environment_variable_is_an_error_not_a_fallback(no_env, monkeypatch, tmp_path):
    make_data_dir(no_env)  # a good cache is not used behind the user's back
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(MambanerError, match=r"looked in: .*nowhere \(\$MAMBANER_DATA\)\. Set MAMBANER_DATA="):
        resolve_data_dir()


def test_nothing_found_says_where_it_looked_and_how_to_fix_it(no_env):
    with pytest.raises(MambanerError) as caught:
        resolve_data_dir()
    message = str(caught.value)
    assert f"{no_env} (cache)" in message
    assert "MAMBANER_DATA=/path/to/data" in message and "--data-dir" in message
    assert corpora.DOWNLOAD_HINT in message


def test_paths_of_splits_and_their_errors(no_env, tmp_path):
    root = make_data_dir(tmp_path / "data")
    folder = root / "iob" / "NCBI-disease-IOB"
    folder.mkdir()
    (folder / "devel.tsv").write_text("Fever\tB-Disease\n", encoding="utf-8")
    assert iob_path("ncbi", "devel", root) == folder / "devel.tsv"
    with pytest.raises(MambanerError, match=r"test\.tsv is missing; run .* or set MAMBANER_DATA"):
        iob_path("ncbi", "test", root)
    with pytest.raises(MambanerError, match=r"Unknown split 'dev'; choose from train, devel, test"):
        iob_path("ncbi", "dev", root)
    with pytest.raises(MambanerError, match=r"Unknown dataset 'ncbi-disease'; choose from ncbi, bc5cdr-disease"):
        iob_path("ncbi-disease", "devel", root)
    with pytest.raises(MambanerError, match=r"NCBIdevelopset_corpus\.txt is missing"):
        pubtator_path("ncbi", "devel", root)


# --- read_conll ----------------------------------------------------------------------------------------

def write(tmp_path: Path, text: str | bytes, name: str = "gold.tsv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_read_conll_sentences_comments_and_separators(tmp_path):
    path = write(tmp_path, "\ufeff# a comment before the first sentence\n"
                           "-DOCSTART- -X- O O\n\n"
                           "#\tO\n"  # a '#' token, as in the NCBI corpus: not a comment
                           "Wilson\tB-Disease\r\n"
                           "disease\tI-Disease\n\n\n"
                           "Aspirin  NN  B-Chemical\n"  # space-separated, the tag is the last field
                           "helps O\n\n"
                           "# sent_id = 3\n"
                           "#1\tO")  # no final newline
    assert read_conll(path) == [(["#", "Wilson", "disease"], ["O", "B-Disease", "I-Disease"]),
                                (["Aspirin", "helps"], ["B-Chemical", "O"]),
                                (["#1"], ["O"])]


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("Fever\tB-Disease\nand\tO\nchills\tDisease\n", 3, "'Disease' is not an IOB2 tag"),
    ("Fever\tB-Disease\nchills\n", 2, "expected 'token<TAB>tag'"),
    ("Fever\tB-Disease\n\nhigh\tO\nfever\tI-Disease\n", 4, "'I-Disease' follows 'O'"),
    ("Fever\tI-Disease\n", 1, "'I-Disease' follows the start of a sentence"),
    ("Fever\tB-Chemical\nchills\tI-Disease\n", 2, "'I-Disease' follows 'B-Chemical'"),
    ("Fever\tB-\n", 1, "'B-' is not an IOB2 tag"),
])
def test_read_conll_names_file_and_line_of_a_bad_line(tmp_path, text, line, fragment):
    path = write(tmp_path, text)
    with pytest.raises(MambanerError) as caught:
        read_conll(path)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert fragment in str(caught.value)


def test_read_conll_refuses_text_that_is_not_utf8(tmp_path):
    path = write(tmp_path, b"Fever\tB-Disease\n" + "Sjögren\tO\n".encode("latin-1"))
    with pytest.raises(MambanerError, match=rf"^{path}:2: not UTF-8"):
        read_conll(path)


def test_read_conll_empty_and_missing_files(tmp_path):
    with pytest.raises(MambanerError, match=r"no sentences found"):
        read_conll(write(tmp_path, "# only a comment\n\n"))
    with pytest.raises(MambanerError, match=r"Cannot read .*absent\.tsv"):
        read_conll(tmp_path / "absent.tsv")


def test_labels_of_puts_o_first_then_each_type_sorted():
    data = [(["a", "b"], ["B-Disease", "O"]), (["c", "d", "e"], ["B-Chemical", "I-Chemical", "O"])]
    assert labels_of(data) == ["O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease"]
    assert labels_of([(["a"], ["O"])]) == ["O"]


# --- the real corpora ----------------------------------------------------------------------------------

def test_split_sizes_of_the_real_corpora(corpus_dir):
    assert [len(load_sentences(["ncbi"], split, corpus_dir)) for split in ("train", "devel", "test")] == \
        [5424, 923, 940]
    ncbi = load_sentences(["ncbi"], "devel", corpus_dir)
    both = load_sentences(["ncbi", "bc5cdr-disease"], "devel", corpus_dir)
    assert len(both) == 923 + 4581 and both[:923] == ncbi  # concatenated in the order given
    sentences, corpus_ids = load_corpora(["ncbi", "bc5cdr-disease"], "devel", corpus_dir)
    assert sentences == both and corpus_ids == [0] * 923 + [1] * 4581
    assert labels_of(ncbi) == ["O", "B-Disease", "I-Disease"]
    assert labels_of(load_sentences(["bc5cdr"], "devel", corpus_dir)) == \
        ["O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease"]


def test_shipped_checksums_are_those_of_the_shared_files(corpus_dir):
    assert set(corpora.CHECKSUMS) == set(DOWNLOADS)
    for relative, expected in corpora.CHECKSUMS.items():
        assert corpora.sha256(corpus_dir / relative) == expected, relative
    for c in CORPORA.values():
        for name in c.pubtator_files.values():
            assert (corpus_dir / c.pubtator_folder / name).is_file()


# --- download against a local HTTP server ----------------------------------------------------------------

class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


@pytest.fixture
def server(tmp_path):
    """A static file server on 127.0.0.1 over tmp_path/site, recording the paths asked for."""
    site = tmp_path / "site"
    site.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(_Handler, directory=str(site)))
    httpd.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield site, f"http://127.0.0.1:{httpd.server_address[1]}", httpd.requests  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


TRAIN = b"Fever\tB-Disease\n\nAspirin\tO\n"
DEVEL = b"Chills\tB-Disease\n"


def test_download_verifies_and_does_not_refetch(server, tmp_path, monkeypatch):
    site, url, requests = server
    (site / "train.tsv").write_bytes(TRAIN)
    (site / "devel.tsv").write_bytes(DEVEL)
    monkeypatch.setattr(corpora, "CHECKSUMS", {"iob/X-IOB/train.tsv": sha(TRAIN), "iob/X-IOB/devel.tsv": sha(DEVEL)})
    urls = {"iob/X-IOB/train.tsv": f"{url}/train.tsv", "iob/X-IOB/devel.tsv": f"{url}/devel.tsv"}
    target = tmp_path / "data"
    fetched = download(target, base_urls=urls)
    assert fetched == [target / "iob/X-IOB/train.tsv", target / "iob/X-IOB/devel.tsv"]
    assert (target / "iob/X-IOB/train.tsv").read_bytes() == TRAIN
    assert (target / "iob/X-IOB/devel.tsv").read_bytes() == DEVEL
    assert (target / "iob/X-IOB/train.tsv").stat().st_mode & 0o777 == 0o644
    assert sorted(requests) == ["/devel.tsv", "/train.tsv"]
    assert not list(target.rglob("*.part"))

    # Present with the right checksum: not fetched again. A stale copy is replaced.
    (target / "iob/X-IOB/devel.tsv").write_bytes(b"stale\tO\n")
    assert download(target, base_urls=urls) == [target / "iob/X-IOB/devel.tsv"]
    assert sorted(requests) == ["/devel.tsv", "/devel.tsv", "/train.tsv"]
    assert (target / "iob/X-IOB/devel.tsv").read_bytes() == DEVEL
    assert read_conll(target / "iob/X-IOB/train.tsv") == [(["Fever"], ["B-Disease"]), (["Aspirin"], ["O"])]


def test_download_with_a_wrong_checksum_keeps_nothing(server, tmp_path, monkeypatch):
    site, url, _ = server
    (site / "train.tsv").write_bytes(TRAIN + b"tampered\tO\n")
    monkeypatch.setattr(corpora, "CHECKSUMS", {"iob/X-IOB/train.tsv": sha(TRAIN)})
    target = tmp_path / "data"
    with pytest.raises(MambanerError, match=rf"Checksum mismatch for {url}/train\.tsv: expected {sha(TRAIN)}"):
        download(target, base_urls={"iob/X-IOB/train.tsv": f"{url}/train.tsv"})
    assert list((target / "iob" / "X-IOB").iterdir()) == []


def test_download_of_a_missing_file_is_an_error_that_keeps_nothing(server, tmp_path, monkeypatch):
    _, url, _ = server
    monkeypatch.setattr(corpora, "CHECKSUMS", {})
    target = tmp_path / "data"
    with pytest.raises(MambanerError, match=rf"Could not download {url}/absent\.tsv: HTTP Error 404"):
        download(target, base_urls={"iob/X-IOB/test.tsv": f"{url}/absent.tsv"})
    assert list((target / "iob" / "X-IOB").iterdir()) == []


def test_the_public_sources_cover_every_split_of_every_iob_corpus():
    for c in CORPORA.values():
        if c.iob_folder is None:  # the multi-type PubTator collection (AIONER's): no checked public copy yet
            continue
        for split in corpora.SPLITS:
            assert DOWNLOADS[f"iob/{c.iob_folder}/{split}.tsv"].endswith(f"/{c.iob_folder}/{split}.tsv")
