"""A node lost mid-run (issue 14, part 3): on a two-node local Ray cluster, the node that holds one of the
run's two actors is removed while the run goes on; the run still succeeds, with every document of every
input in the outputs exactly once, and a rerun finds nothing left to do. The run is a subprocess joining
the cluster through --ray-address, so that this process stays out of Ray (the cluster's nodes are its
children). Skipped without Ray."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mambaner_cli.runtime.corpus import MANIFEST_NAME
from tests.test_corpus_run import doc_ids, manifest, write_notes
from tests.test_signals import LAUNCH, REPO

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")]

INPUTS = 6
LINES = 150  # documents an input: long enough that an input is still being tagged when the node goes


def wait_for(condition, what: str, seconds: float = 180) -> None:
    """Poll ``condition`` until it holds; a guard against a hang, not a measurement."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def tag(inputs: list[Path], out: Path, model: Path, address: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "tag", *map(str, inputs), "-o", f"{out}/", "--format", "jsonl", "--lines",
         "--model", str(model), "--threads", "1", "--ray-address", address, "-q"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_node_lost_mid_run_costs_no_document_and_duplicates_none(tiny_model_dir, tmp_path):
    from ray.cluster_utils import Cluster

    folder = tmp_path / "in"
    folder.mkdir()
    inputs = [write_notes(folder, f"n{k}.txt", LINES) for k in range(INPUTS)]
    out = tmp_path / "tagged"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        second = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        run = tag(inputs, out, tiny_model_dir, cluster.address)
        # both actors are at work once an input is done (each takes a node: one CPU each)
        wait_for(lambda: (out / MANIFEST_NAME).is_file() and manifest(out), "the first input to be tagged")
        assert run.poll() is None, run.communicate()[0]
        cluster.remove_node(second)
        said, _ = run.communicate(timeout=300)
        # retries on: the actor lost with its node is restarted on the head and its input tried again, so
        # the loss costs a retry, not an input (Ray Data's defaults; the run would fail without them)
        assert run.returncode == 0, said
        written = {path.name: path.stat().st_mtime_ns for path in out.glob("n*.jsonl")}
        rerun = tag(inputs, out, tiny_model_dir, cluster.address)
        again, _ = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, again
        assert {path.name: path.stat().st_mtime_ns for path in out.glob("n*.jsonl")} == written  # all skipped
    finally:
        cluster.shutdown()
    ids = doc_ids(out)
    assert set(ids) == {f"n{k}:{line}" for k in range(INPUTS) for line in range(1, LINES + 1)}, said
    assert set(ids.values()) == {1}, said  # none twice
    assert {record["status"] for record in manifest(out).values()} == {"tagged"}
    assert not list(out.glob(".*.part")), "a temporary file left behind"
