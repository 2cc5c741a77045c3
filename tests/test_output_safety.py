"""What `mambaner tag -o PATH` may do to PATH and to the inputs (issue 13): special files are written in
place, symbolic links followed, an input is never overwritten or read back, a run that tags nothing
keeps the previous output, and every refusal is one clear line with the README's exit status."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from mambaner_cli.cli import cli
from mambaner_cli.errors import MambanerError, MambanerUsageError
from mambaner_cli.readers import expand_inputs
from mambaner_cli.writers import OutputError, atomic_output, check_output, output_format, part_file_pattern

REPO = Path(__file__).resolve().parent.parent
NOTE = REPO / "examples" / "clinical_note.txt"


def run(*args: object, code: int | None = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if code is not None:
        assert result.exit_code == code, result.output
    return result


def part_files(*folders: Path) -> list[str]:
    return [name for folder in folders for name in os.listdir(folder) if name.endswith(".part")]


def read_jsonl(data: bytes | str) -> list[dict]:
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return [json.loads(line) for line in text.splitlines()]


# ----------------------------------------------------------------------------------------------------
# 1. devices, FIFOs, symbolic links, descriptors


def test_a_fifo_is_written_in_place_and_stays_a_fifo(tiny_model_dir, tmp_path):
    fifo = tmp_path / "out.jsonl"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read_all() -> None:
        with open(fifo, "rb") as pipe:  # waits for the writer, as `cat fifo` would
            received.append(pipe.read())

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    run("tag", NOTE, "-o", fifo, "--model", tiny_model_dir, "-q")
    reader.join(timeout=60)  # a guard against a hang only: the writer has closed the FIFO by now
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # not replaced by a regular file
    assert [record["id"] for record in read_jsonl(received[0])] == ["clinical_note"]
    assert part_files(tmp_path) == []
    # only now that a FIFO is known to be written in place: the machine's /dev/null must stay a device
    before = os.stat("/dev/null")
    run("tag", NOTE, "-o", "/dev/null", "--model", tiny_model_dir, "-q")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (after.st_mode, after.st_rdev) == (before.st_mode, before.st_rdev)


def test_a_device_is_written_in_place(tmp_path):
    device = tmp_path / "null"
    try:  # a private copy of /dev/null: replacing it would harm nothing
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        with open(device, "wb") as probe:
            probe.write(b"x")
    except OSError as error:
        pytest.skip(f"cannot make and open a device node here ({error.strerror})")
    assert output_format(str(device)) == "jsonl"  # no extension: written like standard output
    with atomic_output(str(device)) as stream:
        stream.write(b"discarded\n")
    assert stat.S_ISCHR(os.lstat(device).st_mode) and os.stat(device).st_rdev == os.makedev(1, 3)
    assert part_files(tmp_path) == []


def test_a_symbolic_link_is_followed_and_stays_a_link(tmp_path):
    (tmp_path / "links").mkdir()
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "real.jsonl"
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "links" / "out.jsonl"
    link.symlink_to(os.path.relpath(target, link.parent))
    seen_parts = []
    with atomic_output(str(link)) as stream:
        stream.write(b"new\n")
        seen_parts = part_files(tmp_path / "data") + [f"links/{n}" for n in part_files(tmp_path / "links")]
    assert len(seen_parts) == 1 and seen_parts[0].startswith(".real.jsonl.")  # made beside the target
    assert link.is_symlink() and target.read_text() == "new\n"
    assert target.stat().st_mode & 0o777 == 0o640
    assert part_files(tmp_path / "data", tmp_path / "links") == []
    dangling = tmp_path / "links" / "new.jsonl"
    dangling.symlink_to(tmp_path / "data" / "created.jsonl")
    with atomic_output(str(dangling)) as stream:
        stream.write(b"made\n")
    assert dangling.is_symlink() and (tmp_path / "data" / "created.jsonl").read_text() == "made\n"


def test_a_path_naming_an_open_descriptor_writes_to_it(tmp_path):
    """`-o /dev/stdout` (a link to /proc/self/fd/1, often a pipe) means this process's standard output."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("no /proc/self/fd")
    link = tmp_path / "stdout.jsonl"
    link.symlink_to("/proc/self/fd/1")  # our own link first: a wrong fix would replace this one only
    code = ("import sys\nfrom mambaner_cli.writers import atomic_output\n"
            "for path in sys.argv[1:]:\n"
            "    with atomic_output(path) as stream:\n"
            "        stream.write(path.encode() + b'\\n')\n")
    result = subprocess.run([sys.executable, "-c", code, str(link)], capture_output=True, cwd=REPO, check=True)
    assert result.stdout == f"{link}\n".encode() and link.is_symlink()
    assert part_files(tmp_path) == []
    result = subprocess.run([sys.executable, "-c", code, "/dev/stdout"], capture_output=True, cwd=REPO, check=True)
    assert result.stdout == b"/dev/stdout\n" and os.path.islink("/dev/stdout")


# ----------------------------------------------------------------------------------------------------
# 2. the output among the inputs


@pytest.mark.parametrize("spelling", ["same", "dot", "symlink", "hardlink"])
def test_an_output_that_is_an_input_is_refused_before_anything_is_read(tmp_path, monkeypatch, spelling):
    monkeypatch.chdir(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("Patients with gout.\n")
    output = {"same": "notes.txt", "dot": str(tmp_path / "." / "notes.txt")}.get(spelling, "other.txt")
    if spelling == "symlink":
        (tmp_path / "other.txt").symlink_to(notes)
    elif spelling == "hardlink":
        os.link(notes, tmp_path / "other.txt")
    # a model that does not exist: the refusal must come first, before any model or input is touched
    result = run("tag", "notes.txt", "-o", output, "--model", tmp_path / "no-model", code=2)
    assert "is also an input" in result.stderr and "no-model" not in result.stderr
    assert notes.read_text() == "Patients with gout.\n"


def test_an_output_inside_an_input_folder_is_not_read_back(tiny_model_dir, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("Patients with gout.\n")
    out = folder / "tagged.pubtator"  # .pubtator is also an input extension
    for _ in range(2):
        run("tag", folder, "-o", out, "--model", tiny_model_dir, "-q")
        text = out.read_text()  # only a.txt, once: the previous output was not read as an input
        assert text.startswith("a|t|") and text.count("|t|") == 1
    run("tag", f"{folder}/*", "-o", out, "--model", tiny_model_dir, "-q")  # a glob mambaner expands
    assert out.read_text().count("|t|") == 1


def test_expansion_leaves_out_the_output_and_its_temporary_files(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    for name in ("a.txt", "out.txt", ".out.txt.abcd1234.part", ".out.txt.abcd1234.part.txt"):
        (folder / name).write_text("x")
    (tmp_path / "via").symlink_to(folder)
    assert expand_inputs([str(folder)], exclude=[str(folder / "out.txt")]) == [str(folder / "a.txt")]
    # reached through a link to its folder, by a glob that also sees hidden files
    found = expand_inputs([str(tmp_path / "via" / "*.txt"), str(tmp_path / "via" / ".*")],
                          exclude=[str(folder / "out.txt")])
    assert found == [str(tmp_path / "via" / "a.txt"), str(tmp_path / "via" / ".out.txt.abcd1234.part.txt")]
    # a glob that matches only the output gives nothing, not a missing file; a named path is kept
    assert expand_inputs([str(folder / "out.*")], exclude=[str(folder / "out.txt")]) == []
    assert expand_inputs([str(folder / "out.txt")], exclude=[str(folder / "out.txt")]) == [str(folder / "out.txt")]
    # the pattern is the writers' own
    with atomic_output(str(folder / "out.txt")) as stream:
        stream.write(b"y")
        (part,) = part_files(folder)
        assert part_file_pattern("out.txt").fullmatch(part)
        # the live temporary file and the one named like it are left out; a name that only starts so is not
        assert expand_inputs([str(folder / ".*")], exclude=[str(folder / "out.txt")]) == [
            str(folder / ".out.txt.abcd1234.part.txt")]


# ----------------------------------------------------------------------------------------------------
# 3. nothing tagged


@pytest.mark.parametrize("name", ["out.jsonl", "out.parquet"])
def test_a_run_that_tags_nothing_keeps_the_previous_output(tiny_model_dir, tmp_path, monkeypatch, name):
    monkeypatch.setenv("COLUMNS", "1000")  # rich wraps stderr lines at the console's width
    out = tmp_path / name
    out.write_bytes(b"previous run\n")
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\t\n")  # whitespace only: an input error, reported by the reader
    result = run("tag", tmp_path / "missing.txt", blank, "-o", out, "--model", tiny_model_dir, code=1)
    assert out.read_bytes() == b"previous run\n"
    assert f"nothing tagged, so {out} was left as it was" in result.stderr
    assert "missing.txt: no such file" in result.stderr and "blank.txt" in result.stderr
    assert part_files(tmp_path) == []


def test_a_run_with_a_document_still_replaces_the_output(tiny_model_dir, tmp_path):
    out = tmp_path / "out.parquet"
    out.write_bytes(b"previous run\n")
    run("tag", tmp_path / "missing.txt", NOTE, "-o", out, "--model", tiny_model_dir, "-q", code=1)
    assert set(pq.read_table(out).column("doc_id").to_pylist()) == {"clinical_note"}


# ----------------------------------------------------------------------------------------------------
# 4. output errors: one line, the right exit status


def test_output_paths_that_cannot_be_are_usage_errors(tmp_path):
    (tmp_path / "afile").write_text("x")
    result = run("tag", NOTE, "-o", tmp_path / "afile" / "x.jsonl", code=2)
    assert f"'{tmp_path / 'afile'}' is not a directory" in result.stderr
    result = run("tag", NOTE, "-o", "/nonexistent-mambaner/dir/x.jsonl", code=2)
    assert ("directory '/nonexistent-mambaner/dir' does not exist (nor does '/nonexistent-mambaner')"
            in result.stderr)
    result = run("tag", NOTE, "-o", tmp_path / "gone" / "x.jsonl", code=2)
    assert f"directory '{tmp_path / 'gone'}' does not exist; create it first" in result.stderr
    # a directory asks for one output per input (tests/test_corpus_run.py); a path that cannot be one is refused
    result = run("tag", NOTE, "-o", f"{tmp_path / 'afile'}/", code=2)
    assert f"output '{tmp_path / 'afile'}/' is not a directory" in result.stderr
    result = run("tag", NOTE, "-o", f"{tmp_path / 'afile' / 'sub'}/", code=2)
    assert "a part of it is a file" in result.stderr


def test_a_folder_that_takes_no_files_is_named(tmp_path):
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc")
    result = run("tag", NOTE, "-o", "/proc/x.jsonl", code=1)
    assert "cannot write '/proc/x.jsonl': cannot create files in '/proc'" in result.stderr
    assert "does not exist" not in result.stderr


@pytest.mark.parametrize(("error", "message"), [
    (PermissionError(errno.EACCES, "Permission denied"), "permission denied creating files in"),
    (OSError(errno.EROFS, "Read-only file system"), "is on a read-only file system"),
])
def test_a_folder_the_system_refuses_is_one_line(tmp_path, monkeypatch, error, message):
    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    result = run("tag", NOTE, "-o", tmp_path / "out.jsonl", code=1)  # the system's refusal, before the model
    assert f"cannot write '{tmp_path / 'out.jsonl'}': " in result.stderr and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["out.jsonl", "out.parquet"])
def test_a_full_disk_is_one_line_and_keeps_the_previous_file(tiny_model_dir, tmp_path, monkeypatch, name):
    real = tempfile.NamedTemporaryFile

    def full_disk(*args, **kwargs):
        handle = real(*args, **kwargs)

        def write(data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        handle.write = write
        return handle

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", full_disk)
    out = tmp_path / name
    out.write_bytes(b"previous run\n")
    result = run("tag", NOTE, "-o", out, "--model", tiny_model_dir, "-q", code=1)
    assert f"no space left on device writing '{out}'; the previous file is untouched" in result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert out.read_bytes() == b"previous run\n" and part_files(tmp_path) == []
    result = run("tag", NOTE, "-o", tmp_path / f"new-{name}", "--model", tiny_model_dir, "-q", code=1)
    assert "; nothing was written" in result.stderr and not (tmp_path / f"new-{name}").exists()


def test_check_output_raises_the_right_errors(tmp_path):
    with pytest.raises(MambanerUsageError, match="is a directory"):
        check_output(str(tmp_path))
    with pytest.raises(MambanerUsageError, match="does not exist"):
        check_output(str(tmp_path / "no" / "x.jsonl"))
    assert not isinstance(OutputError("x"), MambanerUsageError) and isinstance(OutputError("x"), MambanerError)
    assert check_output(str(tmp_path / "x.jsonl")).exists is False and os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------------
# 5. stale temporary files


def test_stale_temporary_files_of_this_output_are_removed(tmp_path):
    import fcntl

    old = time.time() - 3600
    names = {
        "stale": ".out.jsonl.abcd1234.part",  # ours, old, nobody writing it: removed
        "locked": ".out.jsonl.efgh5678.part",  # ours and old, but a live run holds its lock: kept
        "other output": ".other.jsonl.abcd1234.part",
        "not our pattern": ".out.jsonl.abcd1234.part.keep",
        "not our pattern either": ".out.jsonl.ab.part",
    }
    for name in names.values():
        (tmp_path / name).write_text("partial")
        os.utime(tmp_path / name, (old, old))
    fresh = tmp_path / ".out.jsonl.ijkl9012.part"  # newer than the run: perhaps a run starting now
    fresh.write_text("partial")
    os.utime(fresh, (time.time() + 3600, time.time() + 3600))
    with open(tmp_path / names["locked"], "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with atomic_output(str(tmp_path / "out.jsonl")) as stream:
            stream.write(b"new\n")
    left = set(os.listdir(tmp_path))
    assert names["stale"] not in left
    assert left == {"out.jsonl", fresh.name} | set(names.values()) - {names["stale"]}


# ----------------------------------------------------------------------------------------------------
# 6. no inputs


def test_no_input_file_is_a_usage_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "pdfs").mkdir()
    (tmp_path / "pdfs" / "paper.pdf").write_bytes(b"%PDF")
    (tmp_path / "pdfs" / ".hidden.txt").write_text("hidden")
    for folder in ("empty", "pdfs"):
        result = run("tag", tmp_path / folder, "-o", tmp_path / "out.jsonl", code=2)
        assert f"no inputs: no input file in '{tmp_path / folder}'" in result.stderr
    out = tmp_path / "pdfs" / "out.pubtator"
    out.write_text("1|t|previous\n")
    result = run("tag", f"{tmp_path / 'pdfs'}/*.pubtator", "-o", out, code=2)  # matches only the output
    assert "no inputs" in result.stderr and out.read_text() == "1|t|previous\n"
    assert not (tmp_path / "out.jsonl").exists()


def test_an_empty_folder_beside_real_inputs_is_a_warning(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # rich wraps stderr lines at the console's width
    empty = tmp_path / "empty[b]"  # brackets: printed as they are, not taken for rich's bold
    empty.mkdir()
    result = run("tag", empty, NOTE, "-o", tmp_path / "out.jsonl", "--model", tiny_model_dir)
    assert f"warning: no input file in '{empty}'" in result.stderr
    assert [r["id"] for r in read_jsonl((tmp_path / "out.jsonl").read_text())] == ["clinical_note"]
