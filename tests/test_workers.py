"""Worker processes for a one-output run (runtime/workers.py, issue 18): chunks of sentences tagged in other
processes, written in input order, the same bytes as one process; forked where safe, else from the fork
server. Inputs are generated here; the model is the tiny seeded one."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from mambaner_cli.cli import cli
from mambaner_cli.document import Document, Passage
from mambaner_cli.runtime import workers
from mambaner_cli.runtime.run import SilentObserver, TagOptions, _tag_into, run_tag_job
from mambaner_cli.runtime.sentence_tagger import TaggedSentence
from mambaner_cli.runtime.workers import SentenceWorkers, WorkerDied, worker_pool

REPO = Path(__file__).resolve().parent.parent

SENTENCES = ("Patient {i} was treated for cystic fibrosis and gout.", "Asthma was ruled out in case {i}.",
             "The cancer of subject {i} had spread; diabetes mellitus type {j} was stable.")


def write_inputs(folder: Path, documents: int) -> list[Path]:
    """Two plain-text files of ``documents`` lines each (one document a line, for --lines), long enough
    together to fill several chunks of 512 sentences."""
    paths = []
    for part in range(2):
        lines = [" ".join(s.format(i=f"{part}-{i}", j=i % 3) for s in SENTENCES) for i in range(documents)]
        path = folder / f"notes{part}.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def tag(*args: object, code: int = 0) -> str:
    result = CliRunner().invoke(cli, ["tag", *(str(arg) for arg in args)], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "conll"])
def test_two_workers_write_the_bytes_one_process_writes(tiny_model_dir, tmp_path, fmt):
    inputs = write_inputs(tmp_path, 400)  # 2,400 sentences: five chunks
    one, two = tmp_path / f"one.{fmt}", tmp_path / f"two.{fmt}"
    tag(*inputs, "--lines", "-o", one, "--model", tiny_model_dir, "--workers", 1, "-q")
    tag(*inputs, "--lines", "-o", two, "--model", tiny_model_dir, "--workers", 2, "-q")
    if fmt == "parquet":  # its metadata holds the writing time: compare the tables
        assert pq.read_table(one).equals(pq.read_table(two))
        assert pq.read_table(two).num_rows >= 800
    else:
        assert one.read_bytes() == two.read_bytes()


def test_a_bad_input_among_good_ones_costs_only_itself_with_workers(tiny_model_dir, tmp_path):
    inputs = write_inputs(tmp_path, 300)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xe9 au lait\n")  # not UTF-8
    out = tmp_path / "out.jsonl"
    said = tag(inputs[0], bad, inputs[1], "--lines", "-o", out, "--model", tiny_model_dir, "--workers", 2, code=1)
    assert "bad.txt" in said
    ids = [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert ids == [f"notes0:{i}" for i in range(1, 301)] + [f"notes1:{i}" for i in range(1, 301)]


class ProcessMarkingTagger:
    """A SentenceTagger that tags every token B-Disease when it runs in another process than ``parent``
    and O in the parent: the output shows where each chunk was tagged."""

    name, convention, labels, num_parameters = "marker", None, ["O", "B-Disease"], 0

    def __init__(self, parent: int) -> None:
        self.parent = parent

    @property
    def label(self) -> str:
        return self.name

    def tag(self, sentences: Sequence[Sequence[str]], batch_size: int = 32) -> list[TaggedSentence]:
        tag = "O" if os.getpid() == self.parent else "B-Disease"
        return [([tag] * len(tokens), [1.0] * len(tokens)) for tokens in sentences]


def marker_in_worker() -> ProcessMarkingTagger:  # the fork server's workers load this one
    return ProcessMarkingTagger(parent=-1)


def documents(count: int) -> list[Document]:
    return [Document(id=str(i), passages=[Passage(type="text", offset=0,
                                                  text=" ".join(s.format(i=i, j=1) for s in SENTENCES))])
            for i in range(count)]


def tag_in_workers(out: Path, start: str) -> None:
    """600 documents through two workers started by ``start`` with a :class:`ProcessMarkingTagger`; checks
    that every chunk was tagged in a worker and came back in order. Fork is only safe (and only chosen) in
    a process without other threads, which a long test session is not: that case runs in a fresh
    interpreter (``python -m tests.test_workers``)."""
    tagger = ProcessMarkingTagger(parent=os.getpid())
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)  # a live thread makes forking unsafe: the fork server starts them
    if start == "fork server":
        other.start()
    try:
        assert workers.can_fork("cpu") == (start == "fork")
        with worker_pool(2, 1, marker_in_worker, tagger=tagger, device="cpu") as pool:
            summary, written = _tag_into(iter(documents(600)), tagger, str(out), "jsonl", batch_size=32,
                                         fail_fast=False, on_error=None, on_progress=None,
                                         replace_output=lambda summary: True, workers=SentenceWorkers(pool, 2))
    finally:
        stop.set()
        if other.is_alive():
            other.join()
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert written and summary.documents == 600
    assert [record["id"] for record in records] == [str(i) for i in range(600)]
    # every token of every document was tagged B-Disease, i.e. in a worker, never in this process
    assert all(record["mentions"] and all(a["label"] == "Disease" for a in record["mentions"])
               for record in records)
    assert summary.mentions == sum(len(record["mentions"]) for record in records)


def test_every_chunk_is_tagged_in_a_forked_worker_and_comes_back_in_order(tmp_path):
    out = tmp_path / "out.jsonl"
    done = subprocess.run([sys.executable, "-m", "tests.test_workers", str(out)], check=False, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert out.is_file()


def test_every_chunk_is_tagged_in_a_fork_server_worker_and_comes_back_in_order(tmp_path):
    tag_in_workers(tmp_path / "out.jsonl", "fork server")


def test_the_workers_resolve_from_the_cores_and_the_device(monkeypatch):
    from mambaner_cli.runtime import device

    monkeypatch.setattr(device, "physical_cores", lambda: 4)
    assert device.tagging_workers(0, "cpu") == 4 and device.tagging_workers(3, "cpu") == 3
    assert device.worker_threads(0, 4) == 1 and device.worker_threads(0, 2) == 2 and device.worker_threads(3, 2) == 3
    monkeypatch.setattr(device, "pick_device", lambda name: type("D", (), {"type": "cuda"})())
    assert device.tagging_workers(0, "auto") == 1  # one-output run on a GPU: one process, one CUDA context
    assert device.tagging_workers(0, "auto", per_file=True) == device.GPU_CORPUS_WORKERS == 4  # a corpus run
    monkeypatch.setattr(device, "physical_cores", lambda: 2)
    assert device.tagging_workers(0, "auto", per_file=True) == 2 and device.tagging_workers(5, "auto", True) == 5


def test_the_batch_size_defaults_to_the_device(monkeypatch):
    from mambaner_cli.runtime import device

    assert device.default_batch_size("cpu") == device.CPU_BATCH_SIZE == 32
    assert device.default_batch_size("cpu", 7) == 7
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.default_batch_size("auto") == device.GPU_BATCH_SIZE == 512  # auto picks the GPU
    assert device.default_batch_size("cpu") == 32 and device.default_batch_size("auto", 64) == 64


def test_a_library_run_with_workers_tags_what_one_process_tags(tiny_model_dir, tmp_path):
    inputs = write_inputs(tmp_path, 200)
    results = {}
    for count in (1, 2):
        out = tmp_path / f"out{count}.jsonl"
        options = TagOptions(output=str(out), inputs=tuple(map(str, inputs)), lines=True, model=str(tiny_model_dir),
                             workers=count)
        result = run_tag_job(options, SilentObserver())
        assert result.summary.documents == 400 and not result.problems
        results[count] = out.read_bytes()
    assert results[1] == results[2]


def test_workers_stop_with_the_block(tmp_path):
    tagger = ProcessMarkingTagger(parent=os.getpid())
    load = functools.partial(ProcessMarkingTagger, -1)
    with pytest.raises(KeyboardInterrupt), worker_pool(2, 1, load, tagger=tagger, device="cpu") as pool:
        pids = [process.pid for process in pool._processes.values()]  # (private) to see that they are gone
        assert pids and all(Path(f"/proc/{pid}").exists() for pid in pids)
        raise KeyboardInterrupt
    # gone, not even a zombie: the pool reaped them (by pid: the pool's own thread may reap a process while
    # this one asks its Process object, which then still answers "alive")
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


@pytest.mark.parametrize("variable", ["MAMBANER_KERNELS", "MAMBANER_MATMUL"])
def test_an_unknown_kernel_setting_is_a_usage_error_before_anything_is_read(tiny_model_dir, tmp_path, monkeypatch,
                                                                             variable):
    monkeypatch.setenv(variable, "fastest")
    out = tmp_path / "out.jsonl"
    said = tag("-", "-o", out, "--model", tiny_model_dir, code=2)
    assert f"${variable} is 'fastest'" in " ".join(said.split()) and not out.exists()


class DyingTagger(ProcessMarkingTagger):
    """Killed (SIGKILL, as the out-of-memory killer does) when it tags in a worker process."""

    def tag(self, sentences: Sequence[Sequence[str]], batch_size: int = 32) -> list[TaggedSentence]:
        if os.getpid() != self.parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().tag(sentences, batch_size)


def a_dead_worker_fails_the_run(out: Path) -> None:
    """Tag through two forked workers that die on their first chunk: the run must end with WorkerDied (not
    wait forever for the dead worker's chunk), leaving no output file."""
    tagger = DyingTagger(parent=os.getpid())
    with pytest.raises(WorkerDied, match="worker process ended abruptly"), \
            worker_pool(2, 1, marker_in_worker, tagger=tagger, device="cpu") as pool:
        _tag_into(iter(documents(200)), tagger, str(out), "jsonl", batch_size=32, fail_fast=False,
                  on_error=None, on_progress=None, replace_output=lambda summary: True,
                  workers=SentenceWorkers(pool, 2))
    assert not out.exists() and not list(out.parent.glob(".*.part"))


def test_a_dead_worker_fails_the_run_instead_of_hanging_it(tmp_path):
    out = tmp_path / "out.jsonl"
    done = subprocess.run([sys.executable, "-m", "tests.test_workers", str(out), "dead worker"], check=False,
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


if __name__ == "__main__":  # cases that need a fresh interpreter (no other thread: forked workers)
    if sys.argv[2:] == ["dead worker"]:
        a_dead_worker_fails_the_run(Path(sys.argv[1]))
    else:
        tag_in_workers(Path(sys.argv[1]), "fork")


def test_auto_kernels_turn_to_numba_for_a_long_run_on_the_cpu_only(monkeypatch):
    from mambaner_cli.model.ops import numba_infer

    monkeypatch.delenv("MAMBANER_KERNELS", raising=False)  # auto, the default
    monkeypatch.setattr(numba_infer, "numba_installed", lambda: True)
    probe = numba_infer.AUTO_NUMBA_BYTES
    with numba_infer.kernels_for_run(probe, on_cpu=True) as chosen:
        assert chosen == "numba" and os.environ["MAMBANER_KERNELS"] == "numba"  # what its workers read
    assert "MAMBANER_KERNELS" not in os.environ  # restored: a later short run is auto again
    for size, on_cpu in ((probe - 1, True), (probe, False)):
        with numba_infer.kernels_for_run(size, on_cpu=on_cpu) as chosen:
            assert chosen == "torch" and os.environ["MAMBANER_KERNELS"] == "torch"
    monkeypatch.setattr(numba_infer, "numba_installed", lambda: False)  # not installed: PyTorch's, no error
    with numba_infer.kernels_for_run(probe, on_cpu=True) as chosen:
        assert chosen == "torch"
    monkeypatch.setattr(numba_infer, "numba_installed", lambda: True)
    monkeypatch.setenv("MAMBANER_KERNELS", "torch")  # a choice the user made stays
    with numba_infer.kernels_for_run(probe, on_cpu=True) as chosen:
        assert chosen == "torch"
    assert os.environ["MAMBANER_KERNELS"] == "torch"


@pytest.mark.skipif(not importlib.util.find_spec("numba"), reason="numba is not installed")
def test_a_long_run_tags_with_the_compiled_kernels_and_a_short_one_without(tiny_model_dir, tmp_path, monkeypatch):
    from mambaner_cli.model.ops import numba_infer, scan

    monkeypatch.delenv("MAMBANER_KERNELS", raising=False)
    calls = []
    compiled = scan.scan_time_major_numba
    monkeypatch.setattr(scan, "scan_time_major_numba", lambda *args: calls.append(1) or compiled(*args))
    inputs = write_inputs(tmp_path, 20)
    size = sum(path.stat().st_size for path in inputs)
    outputs = {}
    for name, threshold in (("short", size + 1), ("long", size)):
        monkeypatch.setattr(numba_infer, "AUTO_NUMBA_BYTES", threshold)
        calls.clear()
        out = tmp_path / f"{name}.jsonl"
        # --device cpu: the compiled kernels are the CPU's; on a machine with a GPU, auto would pick CUDA
        tag(*inputs, "--lines", "-o", out, "--model", tiny_model_dir, "--workers", "1", "--device", "cpu")
        assert bool(calls) == (name == "long"), name
        assert "MAMBANER_KERNELS" not in os.environ
        outputs[name] = [(m["start"], m["end"]) for line in out.read_text().splitlines()
                         for m in json.loads(line)["mentions"]]
    assert outputs["long"] == outputs["short"]


def test_a_worker_imports_the_compiled_kernels_at_its_start_when_the_run_chose_them(monkeypatch):
    from mambaner_cli.model.ops import numba_infer

    imported = []
    monkeypatch.setattr(numba_infer, "_kernels", lambda: imported.append(1))
    for setting, expected in (("torch", []), ("auto", []), ("numba", [1])):
        monkeypatch.setenv("MAMBANER_KERNELS", setting)
        imported.clear()
        workers.preload_kernels()
        assert imported == expected, setting
