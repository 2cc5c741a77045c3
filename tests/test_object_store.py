"""Corpus runs on an object store (issue 14, part 2): `mambaner tag s3://bucket/pubmed/ -o s3://bucket/tagged/`
against a local S3-compatible server (moto's server mode on 127.0.0.1, a free port), with the local engine
and with Ray. The outputs are the local-path run's but for each document's `source` (the URI), the manifest
is on the store, and a rerun skips what is done and re-tags a changed input. Skipped without moto."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mambaner_cli.runtime import object_store
from mambaner_cli.runtime.corpus import MANIFEST_NAME
from tests.test_corpus_run import run, tag_args, write_notes

pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install -e '.[test]')")
boto3 = pytest.importorskip("boto3")

BUCKET = "bucket"
NOTES = (("a.txt", 4), ("b.txt", 2), ("c.txt", 1))
# what pyarrow (and boto3) read to reach the local server; the same in Ray's workers, which inherit them
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_EC2_METADATA_DISABLED": "true"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3() -> Iterator[object]:
    """A moto S3 server on 127.0.0.1 for the module, with the environment that points pyarrow at it;
    stopped, and the environment restored, at the end."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = {name: os.environ.get(name) for name in [*S3_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(S3_ENV, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    object_store._filesystem.cache_clear()  # file systems made before the endpoint was set
    try:
        yield boto3.client("s3")
    finally:
        object_store._filesystem.cache_clear()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


@pytest.fixture
def bucket(s3, tmp_path: Path) -> Iterator[str]:
    """A fresh bucket holding the notes under pubmed/; the same notes in tmp_path/in for a local run."""
    name = f"{BUCKET}-{tmp_path.name.lower().replace('_', '-')}"[:63]
    s3.create_bucket(Bucket=name)
    folder = tmp_path / "in"
    folder.mkdir()
    for note, count in NOTES:
        path = write_notes(folder, note, count)
        s3.put_object(Bucket=name, Key=f"pubmed/{note}", Body=path.read_bytes())
    yield name


def keys(s3, bucket: str, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(entry["Key"].removeprefix(prefix) for entry in listed)


def stored_lines(s3, bucket: str, key: str) -> list[dict]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    return [json.loads(line) for line in body.splitlines()]


def assert_same_as_local(s3, bucket: str, local: Path) -> None:
    """Every output equals the local run's but for `source`, which names the input's URI; the manifest's
    records are the local ones but for the key (the URI), the store's modification time and the clock."""
    for note, _ in NOTES:
        name = note.replace(".txt", ".jsonl")
        stored = stored_lines(s3, bucket, f"tagged/{name}")
        here = [json.loads(line) for line in (local / name).read_text(encoding="utf-8").splitlines()]
        assert {line.pop("source") for line in stored} == {f"s3://{bucket}/pubmed/{note}"}
        assert {line.pop("source") for line in here} == {str(local.parent / "in" / note)}
        assert stored == here, name
    ignored = ("input", "mtime_ns", "seconds")
    records = {Path(record["input"]).name: record for record in stored_lines(s3, bucket, f"tagged/{MANIFEST_NAME}")}
    mine = {Path(json.loads(line)["input"]).name: json.loads(line)
            for line in (local / MANIFEST_NAME).read_text(encoding="utf-8").splitlines()}
    assert {name: record["input"] for name, record in records.items()} == {
        note: f"s3://{bucket}/pubmed/{note}" for note, _ in NOTES}
    assert ({name: {k: v for k, v in record.items() if k not in ignored} for name, record in records.items()}
            == {name: {k: v for k, v in record.items() if k not in ignored} for name, record in mine.items()})


def test_a_store_to_store_run_writes_what_a_local_run_writes_and_resumes(s3, bucket, tiny_model_dir, tmp_path):
    local = tmp_path / "local"
    run(*tag_args(tiny_model_dir, tmp_path / "in", "-o", f"{local}/", "--format", "jsonl", "--lines"))
    args = tag_args(tiny_model_dir, f"s3://{bucket}/pubmed/", "-o", f"s3://{bucket}/tagged/", "--format", "jsonl",
                    "--lines")
    said = run(*args)
    assert "3 input(s): 3 tagged, 0 skipped, 0 failed; 7 documents" in said.output
    assert keys(s3, bucket, "tagged/") == ["a.jsonl", "b.jsonl", "c.jsonl", MANIFEST_NAME]  # no temporary object
    assert_same_as_local(s3, bucket, local)

    assert "0 tagged, 3 skipped, 0 failed; 7 documents" in run(*args).output
    changed = write_notes(tmp_path, "b.txt", 3)  # b changes on the store: only b is tagged again
    s3.put_object(Bucket=bucket, Key="pubmed/b.txt", Body=changed.read_bytes())
    # in a worker process this time: it reaches the store with the environment it inherits
    assert "1 tagged, 2 skipped, 0 failed; 8 documents" in run(*args, "--workers", 2).output
    assert [line["id"] for line in stored_lines(s3, bucket, "tagged/b.jsonl")] == ["b:1", "b:2", "b:3"]


def test_a_missing_input_on_the_store_is_recorded_as_failed(s3, bucket, tiny_model_dir, tmp_path):
    missing = f"s3://{bucket}/pubmed/gone.txt"
    said = run(*tag_args(tiny_model_dir, f"s3://{bucket}/pubmed/a.txt", missing, "-o", f"s3://{bucket}/tagged/",
                         "--format", "jsonl", "--lines"), code=1)
    assert f"{missing}: no such file" in said.output
    records = {record["input"]: record for record in stored_lines(s3, bucket, f"tagged/{MANIFEST_NAME}")}
    assert records[missing]["status"] == "failed" and records[missing]["output"] is None
    assert records[f"s3://{bucket}/pubmed/a.txt"]["status"] == "tagged"


def test_an_output_that_cannot_be_uploaded_fails_its_input_and_a_rerun_tags_it(s3, bucket, tiny_model_dir,
                                                                               tmp_path, monkeypatch):
    # --workers 1: the refusal below is patched into this process only
    args = tag_args(tiny_model_dir, f"s3://{bucket}/pubmed/a.txt", f"s3://{bucket}/pubmed/b.txt", "-o",
                    f"s3://{bucket}/tagged/", "--format", "jsonl", "--lines", "--workers", 1)
    real = object_store.upload

    def refuse_a(local: str, uri: str) -> None:
        if uri.endswith("/a.jsonl"):
            raise OSError("AWS Error ACCESS_DENIED")
        real(local, uri)

    monkeypatch.setattr(object_store, "upload", refuse_a)
    said = run(*args, code=1)
    assert f"s3://{bucket}/pubmed/a.txt: cannot write its output s3://{bucket}/tagged/a.jsonl" in said.output
    assert "2 input(s): 1 tagged, 0 skipped, 1 failed" in said.output
    records = {Path(record["input"]).name: record for record in stored_lines(s3, bucket, f"tagged/{MANIFEST_NAME}")}
    assert (records["a.txt"]["status"], records["a.txt"]["output"]) == ("failed", None)
    assert keys(s3, bucket, "tagged/") == ["b.jsonl", MANIFEST_NAME]
    monkeypatch.setattr(object_store, "upload", real)
    assert "1 tagged, 1 skipped, 0 failed" in run(*args).output


def test_a_glob_on_the_store_picks_its_matches(s3, bucket, tiny_model_dir):
    said = run(*tag_args(tiny_model_dir, f"s3://{bucket}/pubmed/[ab].txt", "-o", f"s3://{bucket}/tagged/",
                         "--format", "jsonl", "--lines"))
    assert "2 input(s): 2 tagged, 0 skipped, 0 failed; 6 documents" in said.output
    assert keys(s3, bucket, "tagged/") == ["a.jsonl", "b.jsonl", MANIFEST_NAME]


def test_an_output_bucket_that_is_not_there_is_a_usage_error(s3, bucket, tiny_model_dir):
    said = run(*tag_args(tiny_model_dir, f"s3://{bucket}/pubmed/", "-o", "s3://no-such-bucket/tagged/"), code=2)
    assert "cannot write the manifest 's3://no-such-bucket/tagged/manifest.jsonl'" in said.output


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
def test_ray_actors_read_and_write_the_store(s3, bucket, tiny_model_dir, tmp_path):
    import ray

    local = tmp_path / "local"
    run(*tag_args(tiny_model_dir, tmp_path / "in", "-o", f"{local}/", "--format", "jsonl", "--lines"))
    if ray.is_initialized():  # another module's Ray was started before the store's environment was set
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)  # inherits S3_ENV
    try:
        args = tag_args(tiny_model_dir, f"s3://{bucket}/pubmed/", "-o", f"s3://{bucket}/tagged/", "--format",
                        "jsonl", "--lines", "--engine", "ray")
        assert "3 input(s): 3 tagged, 0 skipped, 0 failed" in run(*args).output
        assert_same_as_local(s3, bucket, local)
        assert "0 tagged, 3 skipped" in run(*args).output
    finally:
        ray.shutdown()
