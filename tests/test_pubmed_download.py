"""`mambaner pubmed download` against a local stand-in for NCBI's PubMed download server: listings,
md5 checks, resumed and restarted downloads, skips, subsets, the summary and the exit status."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from mambaner_cli.cli import cli
from mambaner_cli.errors import MambanerError, MambanerUsageError
from mambaner_cli.fetch import baseline as bl
from tests.ftp_server import Fault, PubmedFtpServer, make_file

NAMES = [f"pubmed25n{i:04d}.xml.gz" for i in range(1, 6)]
UPDATES = ["pubmed25n1275.xml.gz", "pubmed25n1276.xml.gz"]


@pytest.fixture
def server(monkeypatch):
    files = {"baseline": {name: make_file(name) for name in NAMES},
             "updatefiles": {name: make_file(name, 20_000) for name in UPDATES}}
    app = PubmedFtpServer(files)
    app.start()
    monkeypatch.setenv("NCBI_PUBMED_FTP_URL", app.base_url)
    monkeypatch.setenv("COLUMNS", "1000")  # rich wraps stderr lines at the console's width
    yield app
    app.stop()


def run(*args: object, code: int | None = 0):
    result = CliRunner().invoke(cli, ["pubmed", "download", *map(str, args)], catch_exceptions=False)
    if code is not None:
        assert result.exit_code == code, result.output + result.stderr
    return result


def settings(server: PubmedFtpServer, **options) -> bl.DownloadSettings:
    return bl.DownloadSettings(base_url=server.base_url, backoff=0.0, **options)


def content(server: PubmedFtpServer, name: str, folder: str = "baseline") -> bytes:
    return server.files[folder][name]


def gets(server: PubmedFtpServer, name: str, folder: str = "baseline") -> list:
    return server.requests(f"{folder}/{name}")


# -- checksums and listings -----------------------------------------------------------------------------

def test_md5_files_are_parsed_strictly():
    digest = "0123456789abcdef0123456789ABCDEF"
    name = "pubmed25n0001.xml.gz"
    assert bl.parse_md5(f"MD5({name})= {digest}\n", name) == digest.lower()  # NCBI's (OpenSSL's) format
    assert bl.parse_md5(f"{digest}  {name}\n", name) == digest.lower()  # md5sum, text mode
    assert bl.parse_md5(f"\n{digest} *pubmed/{name}\r\n", name) == digest.lower()  # binary mode, a path
    for bad in ("", f"MD5({name})= {digest[:-1]}", f"MD5({name})={digest}x", f"SHA1({name})= {digest}",
                f"MD5(pubmed25n0002.xml.gz)= {digest}", f"{digest}  {name}\n{digest}  {name}",
                f"<html>{digest}  {name}</html>", f"{digest} {name}"):
        with pytest.raises(ValueError):
            bl.parse_md5(bad, name)


def test_the_listing_gives_the_data_files_in_name_order(server):
    assert bl.list_files(settings(server), "baseline") == NAMES  # not README.txt, .md5 or the parent
    assert bl.list_files(settings(server), "updates") == UPDATES
    assert bl.select(NAMES, limit=2) == NAMES[:2]
    assert bl.select(NAMES, names=[NAMES[3], NAMES[1]], limit=1) == [NAMES[1]]
    with pytest.raises(MambanerUsageError, match="pubmed25n9999"):
        bl.select(NAMES, names=["pubmed25n9999.xml.gz"])


# -- the command ----------------------------------------------------------------------------------------

def test_limit_downloads_the_first_files_then_skips_them(server, tmp_path):
    result = run("--baseline", tmp_path / "pubmed", "--limit", 3)
    assert sorted(p.name for p in (tmp_path / "pubmed").iterdir()) == NAMES[:3]  # no .part left
    for name in NAMES[:3]:
        assert (tmp_path / "pubmed" / name).read_bytes() == content(server, name)
    assert not gets(server, NAMES[3])
    assert "3 downloaded" in result.stderr and "0 skipped" in result.stderr and "0 failed" in result.stderr

    again = run("--baseline", tmp_path / "pubmed", "--limit", 4)
    assert "1 downloaded" in again.stderr and "3 skipped (already there" in again.stderr
    assert all(len(gets(server, name)) == 1 for name in NAMES[:4])  # the skipped ones were not fetched again


def test_a_present_file_with_the_wrong_md5_is_replaced(server, tmp_path):
    (tmp_path / NAMES[0]).write_bytes(b"an old, damaged copy")
    result = run("--baseline", tmp_path, NAMES[0])
    assert (tmp_path / NAMES[0]).read_bytes() == content(server, NAMES[0])
    assert "1 downloaded" in result.stderr


def test_files_picks_a_subset_by_name(server, tmp_path):
    result = run("--baseline", tmp_path / "b", "--updates", tmp_path / "u", "--files", f"{NAMES[4]},{NAMES[1]}",
                 "--files", UPDATES[1], "-q")
    assert result.stderr == ""  # -q: nothing on success
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [NAMES[1], NAMES[4]]
    assert [p.name for p in (tmp_path / "u").iterdir()] == [UPDATES[1]]
    # --files NAME NAME…: the names after the option are taken too
    run("--baseline", tmp_path / "c", "--files", NAMES[0], NAMES[2], "-q")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [NAMES[0], NAMES[2]]


def test_usage_errors_exit_2(server, tmp_path):
    assert "--baseline DIR" in CliRunner().invoke(cli, ["pubmed", "download", "--help"]).output
    assert "--baseline DIR" in run(code=2).stderr
    assert "pubmed25n0099.xml.gz" in run("--baseline", tmp_path, "--files", "pubmed25n0099.xml.gz", code=2).stderr
    run("--baseline", tmp_path, "--connections", 5, code=2)
    run("--baseline", tmp_path, "--limit", 0, code=2)
    (tmp_path / "file").write_text("x")
    assert "not a directory" in run("--baseline", tmp_path / "file", code=2).stderr
    assert "http://" in run("--baseline", tmp_path, "--base-url", "ftp://ftp.ncbi.nlm.nih.gov/pubmed/", code=2).stderr
    assert not list(tmp_path.glob("pubmed*"))


def test_a_corrupt_file_is_fetched_twice_then_failed_while_the_others_arrive(server, tmp_path):
    server.faults.append(Fault(f"baseline/{NAMES[1]}", body=b"\x1f\x8b corrupt", times=None))
    server.faults.append(Fault(f"baseline/{NAMES[2]}", body=b"\x1f\x8b corrupt once"))  # then fine
    result = run("--baseline", tmp_path, "--limit", 4, "--connections", 3, code=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAMES[0], NAMES[2], NAMES[3]]  # no .part either
    assert len(gets(server, NAMES[1])) == 2 and len(gets(server, NAMES[2])) == 2
    assert "3 downloaded" in result.stderr and "1 failed" in result.stderr
    expected = hashlib.md5(content(server, NAMES[1])).hexdigest()
    assert f"failed: {NAMES[1]}: md5 mismatch: expected {expected}" in result.stderr


def test_a_wrong_or_missing_md5_file_fails_that_file(server, tmp_path):
    server.files["baseline"][NAMES[0] + ".md5"] = b"<html>not a checksum</html>"
    del server.files["baseline"][NAMES[1] + ".md5"]
    result = run("--baseline", tmp_path, "--limit", 3, "-q", code=1)
    assert [p.name for p in tmp_path.iterdir()] == [NAMES[2]]
    assert f"failed: {NAMES[0]}: cannot read {NAMES[0]}.md5: not an md5 line" in result.stderr
    assert f"failed: {NAMES[1]}: cannot fetch {NAMES[1]}.md5: HTTP 404" in result.stderr
    assert not gets(server, NAMES[0]) and not gets(server, NAMES[1])  # no checksum, no download


def test_a_dropped_connection_resumes_with_a_range_request(server, tmp_path):
    server.faults.append(Fault(f"baseline/{NAMES[0]}", drop_after=20_000))
    result = run("--baseline", tmp_path, NAMES[0])
    assert (tmp_path / NAMES[0]).read_bytes() == content(server, NAMES[0])
    assert [entry.range for entry in gets(server, NAMES[0])] == [None, "bytes=20000-"]
    assert "1 downloaded" in result.stderr and "1 resumed" in result.stderr


def test_a_part_left_by_an_earlier_run_is_resumed(server, tmp_path):
    data = content(server, NAMES[0])
    (tmp_path / (NAMES[0] + ".part")).write_bytes(data[:12_345])
    run("--baseline", tmp_path, NAMES[0])
    assert (tmp_path / NAMES[0]).read_bytes() == data and not (tmp_path / (NAMES[0] + ".part")).exists()
    assert [entry.range for entry in gets(server, NAMES[0])] == ["bytes=12345-"]


def test_a_server_that_ignores_range_gets_a_fresh_start(server, tmp_path):
    data = content(server, NAMES[0])
    (tmp_path / (NAMES[0] + ".part")).write_bytes(data[:10_000])
    server.faults.append(Fault(f"baseline/{NAMES[0]}", ignore_range=True))
    run("--baseline", tmp_path, NAMES[0])
    assert (tmp_path / NAMES[0]).read_bytes() == data  # not the first 10,000 bytes twice
    assert len(gets(server, NAMES[0])) == 1


def test_a_server_that_ignores_range_and_keeps_dropping_runs_out_of_retries(server, tmp_path):
    server.faults.append(Fault(f"baseline/{NAMES[0]}", drop_after=20_000, ignore_range=True, times=None))
    result = bl.download_file(settings(server, max_retries=2), "baseline", NAMES[0], tmp_path)
    assert result.status == "failed" and "gave up after 3 attempts" in result.reason, result
    assert len(gets(server, NAMES[0])) == 4  # the first attempt got the .part further; three did not
    assert (tmp_path / (NAMES[0] + ".part")).stat().st_size == 20_000 and not (tmp_path / NAMES[0]).exists()


def test_a_part_that_does_not_fit_or_is_wrong_starts_over(server, tmp_path):
    data = content(server, NAMES[0])
    (tmp_path / (NAMES[0] + ".part")).write_bytes(data + b"junk")  # longer than the file: 416
    (tmp_path / (NAMES[1] + ".part")).write_bytes(b"junk" + data[4:10_000])  # a wrong prefix: md5 fails
    run("--baseline", tmp_path, NAMES[0], NAMES[1])
    assert (tmp_path / NAMES[0]).read_bytes() == data
    assert (tmp_path / NAMES[1]).read_bytes() == content(server, NAMES[1])
    assert [entry.status for entry in gets(server, NAMES[0])] == [416, 200]
    assert [entry.range for entry in gets(server, NAMES[1])] == ["bytes=10000-", None]


def test_server_errors_are_retried_and_404_is_not(server, tmp_path):
    server.faults += [Fault("baseline/", status=503), Fault(f"baseline/{NAMES[0]}", status=500, times=2),
                      Fault(f"baseline/{NAMES[1]}", status=404, times=None),
                      Fault(f"baseline/{NAMES[2]}", status=503, times=None)]
    options = settings(server, max_retries=3)
    names = bl.list_files(options, "baseline")[:3]
    report = bl.download_files(options, "baseline", names, tmp_path)
    assert [result.status for result in report.results] == ["downloaded", "failed", "failed"]
    assert report.results[1].reason == "HTTP 404 Not Found" and len(gets(server, NAMES[1])) == 1
    assert "HTTP 503" in report.results[2].reason and "after 4 attempts" in report.results[2].reason
    assert len(gets(server, NAMES[2])) == 4 and len(gets(server, NAMES[0])) == 3
    assert "1 downloaded" in report.summary_lines()[0] and not report.ok


def test_an_unreachable_server_is_one_error_at_once(tmp_path):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed when the block ends: nothing listens there
    options = bl.DownloadSettings(base_url=f"http://127.0.0.1:{port}/pubmed/")
    with pytest.raises(MambanerError, match="cannot reach the PubMed download server"):
        bl.list_files(options, "baseline")
    result = CliRunner().invoke(cli, ["pubmed", "download", "--baseline", str(tmp_path), "--base-url",
                                      options.base_url])
    assert result.exit_code == 1 and "cannot reach" in result.stderr


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raising KeyboardInterrupt, as in a terminal: a test run started in the background (`&`, nohup)
    inherits SIGINT ignored, and then a real Ctrl-C in these tests would never arrive."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class _InterruptOnce:
    """An observer that presses Ctrl-C (a real SIGINT, which wakes the main thread) once a file is partly
    downloaded, then holds the worker until the main thread has told it to stop (a loaded machine may take a while)."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.pressed = threading.Event()
        self.stop = stop or threading.Event()

    def started(self, name: str, offset: int, total: int | None) -> None:
        pass

    def advanced(self, name: str, size: int) -> None:
        if not self.pressed.is_set():
            self.pressed.set()
            os.kill(os.getpid(), signal.SIGINT)
            self.stop.wait(30)  # the main thread sets it as soon as it sees the interrupt

    def restarted(self, name: str) -> None:
        pass

    def finished(self, result: bl.FileResult) -> None:
        pass


def test_ctrl_c_leaves_no_half_file_and_the_next_run_resumes(server, tmp_path, ctrl_c_raises):
    stop = threading.Event()
    with pytest.raises(KeyboardInterrupt):
        bl.download_files(settings(server, connections=1), "baseline", NAMES[:1], tmp_path,
                          observer=_InterruptOnce(stop), stop=stop)
    assert not (tmp_path / NAMES[0]).exists()
    part = tmp_path / (NAMES[0] + ".part")
    size = part.stat().st_size
    assert 0 < size < len(content(server, NAMES[0]))
    result = run("--baseline", tmp_path, NAMES[0])
    assert (tmp_path / NAMES[0]).read_bytes() == content(server, NAMES[0]) and not part.exists()
    assert gets(server, NAMES[0])[-1].range == f"bytes={size}-"
    assert "1 resumed" in result.stderr


def test_ctrl_c_in_the_command_exits_130_and_says_the_part_stays(server, tmp_path, monkeypatch, ctrl_c_raises):
    from mambaner_cli.cli import pubmed

    press = _InterruptOnce()
    monkeypatch.setattr(pubmed._ProgressObserver, "advanced", lambda self, name, size: press.advanced(name, size))
    download_files = bl.download_files
    # the command's workers stop on the event that the observer waits for
    monkeypatch.setattr(bl, "download_files", lambda *args, **kwargs: download_files(*args, **kwargs,
                                                                                     stop=press.stop))
    result = run("--baseline", tmp_path, NAMES[0], code=130)
    assert "NAME.part" in result.stderr and not (tmp_path / NAMES[0]).exists()


def test_the_environment_and_the_option_choose_the_server(monkeypatch):
    monkeypatch.setenv("NCBI_PUBMED_FTP_URL", "http://mirror.example/pubmed")
    assert bl.DownloadSettings.from_env().collection_url("updates") == "http://mirror.example/pubmed/updatefiles/"
    assert bl.DownloadSettings.from_env(base_url="https://x.example/p/").base_url == "https://x.example/p/"
    monkeypatch.delenv("NCBI_PUBMED_FTP_URL")
    assert bl.DownloadSettings.from_env().collection_url("baseline") == \
        "https://ftp.ncbi.nlm.nih.gov/pubmed/baseline/"


def test_a_folder_that_cannot_be_written_fails_each_file(server, tmp_path: Path):
    report = bl.download_files(settings(server), "updates", UPDATES, tmp_path / "new")
    assert [result.status for result in report.results] == ["failed", "failed"]  # the folder is not made here
    assert report.results[0].reason.startswith(f"local file error: {tmp_path / 'new' / UPDATES[0]}.part: ")
