"""The code's own checks, run with the suite so CI keeps them: mypy on tfops/ and ruff on the tree.

Both read their settings from pyproject.toml. They run as subprocesses of the suite's own
interpreter, so the versions are the ones the test extra pins.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_mypy_finds_no_type_errors_in_tfops():
    result = _run("mypy", "--no-error-summary", "--cache-dir", str(ROOT / ".mypy_cache"))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_ruff_finds_no_lint_errors():
    result = _run("ruff", "check", "--no-cache", "tfops", "tests", "bench", "scripts")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
