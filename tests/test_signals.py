"""Ctrl-C and SIGTERM in the middle of `mambaner tag` (issue 13): the temporary output is removed, the
previous output stays as it was, the exit status is 130 / 143, and no traceback is printed.

The run is a real process, signalled while it is provably inside the tagging loop: its inputs are many
generated documents followed by a FIFO that the test opens for writing but never writes to, so the run
cannot finish on its own, and the test's non-blocking open of the FIFO succeeds only once the run is
reading it (long after the temporary output was created).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Python gives a child SIGINT as its parent had it: a test run started in the background (nohup, `&`)
# ignores it, and so would the child. Restore the handler that makes Ctrl-C a KeyboardInterrupt.
LAUNCH = ("import runpy, signal, sys\n"
          "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
          "sys.argv = ['mambaner', *sys.argv[1:]]\n"
          "runpy.run_module('mambaner_cli', run_name='__main__')\n")


def wait_until_reading(process: subprocess.Popen, fifo: Path) -> int:
    """Open ``fifo`` for writing once ``process`` has opened it for reading; the write end, held open
    (and never written to), keeps the run waiting inside its loop."""
    deadline = time.monotonic() + 120  # a guard against a hang, not a measurement
    while time.monotonic() < deadline:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            if process.poll() is not None:
                pytest.fail(f"the run ended early ({process.returncode}): {process.stderr.read()}")
            time.sleep(0.05)
    process.kill()
    pytest.fail("the run never started reading its inputs")


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_cleans_up_and_keeps_the_previous_output(tiny_model_dir, tmp_path, signum, status):
    """Into Parquet: pyarrow's writer, left open by the interruption, must not write into the closed file."""
    documents = tmp_path / "documents"
    documents.mkdir()
    for i in range(100):
        (documents / f"note{i:03}.txt").write_text(f"Patient {i} was treated for cystic fibrosis and gout. "
                                                   "Asthma was ruled out.\n", encoding="utf-8")
    fifo = tmp_path / "zz-still-coming.txt"
    os.mkfifo(fifo)
    out = tmp_path / "out.parquet"
    out.write_bytes(b"the previous run's output\n")
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "tag", str(documents), str(fifo), "--input-format", "text", "-o", str(out),
         "--model", str(tiny_model_dir), "--threads", "1", "-q"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    held = wait_until_reading(process, fifo)
    try:
        assert [n for n in os.listdir(tmp_path) if n.endswith(".part")]  # the run is writing
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        os.close(held)
        if process.poll() is None:
            process.kill()
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert ("Terminated (SIGTERM)." if signum == signal.SIGTERM else "Interrupted (Ctrl-C).") in stderr
    assert [n for n in os.listdir(tmp_path) if n.endswith(".part")] == []
    assert out.read_bytes() == b"the previous run's output\n"
