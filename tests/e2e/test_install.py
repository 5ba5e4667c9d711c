"""`make install` on a fresh machine: the project installs, and quietly."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from localkube.cluster import ROOT

pytestmark = pytest.mark.e2e


def test_make_install_prints_only_its_commands(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    result = subprocess.run(
        ["make", "--no-print-directory", "install", f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    commands = result.stdout.splitlines()
    assert len(commands) == 4, result.stdout  # venv, pip upgrade, the install, the stamp
    assert all(
        line.startswith(("python3 ", str(venv), "PYTHONWARNINGS=", "touch ")) for line in commands
    )
    check = [str(venv / "bin" / "python"), "-c", "import eval_operator, eval_runner.datasets"]
    subprocess.run(check, check=True, cwd=tmp_path)
