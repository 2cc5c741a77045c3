"""`mambaner tag INPUTS -o DIR/ --engine ray` (issue 14, part 2): the Ray engine writes what the local engine
writes, records a bad input as failed, and resumes like it. One embedded local Ray (two CPUs) serves the
module; the engine uses a Ray that is already running and leaves it up. Skipped without Ray."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from mambaner_cli.runtime.corpus import MANIFEST_NAME
from tests.test_corpus_run import manifest, run, tag_args, write_notes

# Ray Data's own DataContext warns about its deprecated fields when it is first made: not this code's; a
# deprecated argument that the engine passes (max_restarts in map_batches: gone in Ray 2.64) fails the test
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
              pytest.mark.filterwarnings("error::DeprecationWarning:mambaner_cli.runtime.ray_engine")]
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")


@pytest.fixture(scope="module")
def local_ray():
    """An embedded Ray of two CPUs for the module's tests, started once (seconds) and stopped at the end."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, count in (("a.txt", 12), ("b.txt", 5), ("c.txt", 1)):
        write_notes(folder, name, count)
    return folder


def without_times(directory: Path) -> dict[str, dict]:
    """The manifest's records, less what depends on the clock: how long each input took."""
    return {name: {key: value for key, value in record.items() if key != "seconds"}
            for name, record in manifest(directory).items()}


@needs_ray
@pytest.mark.slow
def test_ray_writes_what_the_local_engine_writes_and_records_a_bad_input(local_ray, tiny_model_dir, inputs,
                                                                          tmp_path):
    (inputs / "broken.xml").write_text("<PubmedArticleSet><PubmedArticle>", encoding="utf-8")
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    run(*tag_args(tiny_model_dir, inputs, "-o", f"{local}/", "--format", "jsonl", "--lines", "--workers", 1),
        code=1)
    said = run(*tag_args(tiny_model_dir, inputs, "-o", f"{on_ray}/", "--format", "jsonl", "--lines",
                         "--engine", "ray"), code=1)
    assert "4 input(s): 3 tagged, 0 skipped, 1 failed" in said.output
    assert "broken.xml" in said.output  # the error, named as the local engine names it
    names = sorted(os.listdir(local))
    assert names == sorted(os.listdir(on_ray)) == ["a.jsonl", "b.jsonl", "c.jsonl", MANIFEST_NAME]
    for name in names:
        if name != MANIFEST_NAME:
            assert (local / name).read_bytes() == (on_ray / name).read_bytes(), name
    assert without_times(local) == without_times(on_ray)
    broken = manifest(on_ray)["broken.xml"]
    assert broken["status"] == "failed" and broken["output"] is None and broken["errors"]
    assert [json.loads(line)["input"] for line in (on_ray / MANIFEST_NAME).read_text().splitlines()] == sorted(
        str(path) for path in inputs.iterdir())  # rewritten at the end, sorted, by the driver


@needs_ray
@pytest.mark.slow
def test_a_rerun_on_ray_skips_every_input_done(local_ray, tiny_model_dir, inputs, tmp_path):
    out = tmp_path / "tagged"
    args = tag_args(tiny_model_dir, inputs, "-o", f"{out}/", "--format", "jsonl", "--lines", "--engine", "ray")
    run(*args)
    first = {path.name: path.stat().st_mtime_ns for path in out.iterdir() if path.name != MANIFEST_NAME}
    again = run(*args)
    assert "3 input(s): 0 tagged, 3 skipped, 0 failed; 18 documents" in again.output
    assert {name: (out / name).stat().st_mtime_ns for name in first} == first  # not rewritten
    local = run(*tag_args(tiny_model_dir, inputs, "-o", out, "--format", "jsonl", "--lines"))
    assert "0 tagged, 3 skipped" in local.output  # the same settings, whichever engine tagged


def test_without_ray_the_engine_is_a_usage_error(tiny_model_dir, inputs, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    refused = run(*tag_args(tiny_model_dir, inputs, "-o", f"{tmp_path / 'out'}/", "--engine", "ray"), code=2)
    assert "To fix: pip install 'mambaner[ray]'" in refused.output
    assert not (tmp_path / "out").exists()  # refused before anything was made


def test_ray_options_need_a_directory_and_the_ray_engine(tiny_model_dir, inputs, tmp_path):
    assert "as do --engine and --ray-address" in run(
        "tag", inputs / "a.txt", "-o", tmp_path / "x.jsonl", "--engine", "ray", code=2).output
    assert "goes with --engine ray" in run(
        "tag", inputs, "-o", f"{tmp_path / 'out'}/", "--engine", "local", "--ray-address", "auto", code=2).output


@needs_ray
def test_an_input_whose_actor_keeps_dying_is_given_up_and_recorded_as_failed(local_ray, tiny_model_dir, inputs,
                                                                            tmp_path):
    """Ray Data retries a dead actor's input for ever; the engine's count across restarts stops at RETRIES
    retries. The actor's call is made here directly, after the count says the input was started that
    often already (each time killing its actor)."""
    from mambaner_cli.runtime.corpus import InputTask
    from mambaner_cli.runtime.ray_engine import RETRIES, _attempts_actor, _InputTagger
    from mambaner_cli.runtime.run import TagOptions

    attempts = _attempts_actor(local_ray)
    tagger = _InputTagger(TagOptions(output="-", model=str(tiny_model_dir), threads=1), 1, {"model": "m"},
                          os.getcwd(), attempts)
    task = InputTask(str(inputs / "a.txt"), str(tmp_path / "a.jsonl"), "jsonl", lines=True)
    try:
        for _ in range(RETRIES):  # the first try and RETRIES - 1 retries died
            local_ray.get(attempts.next.remote(task.input))
        assert tagger._tag(task).record.status == "tagged"  # the last retry is still made
        assert (tmp_path / "a.jsonl").is_file()
        (tmp_path / "a.jsonl").unlink()
        given_up = tagger._tag(task)
    finally:
        local_ray.kill(attempts)
    record = given_up.record
    assert (record.status, record.output, record.documents) == ("failed", None, 0)
    assert record.errors == [(f"{inputs / 'a.txt'}: not tagged: the process tagging it died {RETRIES + 1} times "
                              "(out of memory, or its node lost); a rerun tries it again")]
    assert record.size == (inputs / "a.txt").stat().st_size and record.settings == {"model": "m"}
    assert not (tmp_path / "a.jsonl").exists()  # not tagged at all


@needs_ray
@pytest.mark.slow
def test_ray_address_joins_a_two_node_cluster_and_leaves_it_up(local_ray, tiny_model_dir, inputs, tmp_path):
    """A head and a second node of one CPU each: the engine's two actors (one CPU each) take one node
    each, and the run joins through --ray-address, disconnects at the end and leaves the cluster up. Last
    in the module: it ends the module's embedded Ray first (one Ray per driver process)."""
    from ray.cluster_utils import Cluster

    local_ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        local, joined = tmp_path / "local", tmp_path / "joined"
        run(*tag_args(tiny_model_dir, inputs, "-o", f"{local}/", "--format", "jsonl", "--lines"))
        said = run(*tag_args(tiny_model_dir, inputs, "-o", f"{joined}/", "--format", "jsonl", "--lines",
                             "--ray-address", cluster.address))
        assert "3 input(s): 3 tagged, 0 skipped, 0 failed" in said.output
        for name in ("a.jsonl", "b.jsonl", "c.jsonl"):
            assert (local / name).read_bytes() == (joined / name).read_bytes(), name
        assert without_times(local) == without_times(joined)
        assert not local_ray.is_initialized()  # disconnected: the run did not leave this process attached
        local_ray.init(address=cluster.address)  # and the cluster is still there to join
        assert local_ray.cluster_resources().get("CPU") == 2
        local_ray.shutdown()
    finally:
        cluster.shutdown()
