"""The human-in-the-loop recipe survives a kill -9 while it waits for the user."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from pathlib import Path

from pocketflow_stream.persist.cli import main as runs_cli

RECIPE = Path(__file__).resolve().parent.parent / "cookbook" / "human-in-the-loop" / "main.py"


def read_until(stream, marker: str) -> str:
    """Read the child's output until `marker` (a prompt ends without a newline)."""
    seen = ""
    while not seen.endswith(marker):
        char = stream.read(1)
        assert char, f"the recipe ended before printing {marker!r}; it printed:\n{seen}"
        seen += char
    return seen


def start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-u", str(RECIPE), *args],
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_start_kill_while_it_waits_then_resume_by_id_to_the_end(tmp_path):
    first = start(cwd=tmp_path)
    shown = read_until(first.stdout, 'Allow read_file({"path": "notes.txt"})? [yes/no] ')
    run_id = shown.split("run id: ")[1].split()[0]
    first.send_signal(signal.SIGKILL)  # killed while it waits for the answer
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL

    out = io.StringIO()
    assert runs_cli(["--db", str(tmp_path / "human-in-the-loop.db"), "show", run_id], out) == 0
    assert "status:     paused" in out.getvalue() and '"tool": "read_file"' in out.getvalue()

    second = start("--run", run_id, "--answer", "yes", cwd=tmp_path)
    shown = read_until(second.stdout, 'Allow delete_file({"path": "old.txt"})? [yes/no] ')
    assert "First I read the notes." not in shown  # Plan's first turn did not run again
    rest, err = second.communicate("yes\n", timeout=60)
    assert second.returncode == 0, err
    assert "answer: Done. Read the notes; deleting old.txt: deleted." in rest
    assert "files left: ['notes.txt']" in rest

    third = start("--run", run_id, cwd=tmp_path)
    out, _ = third.communicate(timeout=60)
    assert out.startswith(f"run {run_id} is done: Done.")


def test_a_refusal_goes_back_to_the_model(tmp_path):
    run = start(cwd=tmp_path)
    out, err = run.communicate("yes\nno\n", timeout=60)
    assert run.returncode == 0, err
    assert "deleting old.txt: refused by the user." in out
    assert "files left: ['notes.txt', 'old.txt']" in out
