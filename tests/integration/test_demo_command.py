"""`tfops demo` and the example stacks in modules/: the first five minutes must work."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import git
import pytest

from tfops.demo.setup import MARKER, modules_source, prepare

pytestmark = pytest.mark.terraform

MODULES = Path(__file__).resolve().parents[2] / "modules"
EXAMPLE_STACKS = sorted(path.name for path in (MODULES / "stacks").iterdir() if path.is_dir())


def tfops(*args: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tfops.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_demo_once_tells_the_whole_story_and_exits_0(tmp_path, tf_env):
    result = tfops("demo", "--once", str(tmp_path / "demo"), env=tf_env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "6/6 steps passed" in result.stdout
    for step in (
        "initial apply",
        "reverted",
        "recorded, not reverted",
        "applied",
        "two callers",
        "broken HCL",
    ):
        assert step in result.stdout
    assert "[FAIL]" not in result.stdout


def test_demo_refuses_a_folder_that_holds_something_else(tmp_path, tf_env):
    precious = tmp_path / "notes.txt"
    precious.write_text("not yours")

    result = tfops("demo", "--once", str(tmp_path), env=tf_env)

    assert result.returncode == 1
    assert "did not create" in result.stderr
    assert precious.read_text() == "not yours"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_running_the_demo_again_on_its_folder_resumes_without_reseeding(tmp_path):
    layout, resumed = prepare(tmp_path / "demo")
    commits = len(list(git.Repo(layout.remote).iter_commits("main")))

    again, resumed_again = prepare(tmp_path / "demo")

    assert (resumed, resumed_again) == (False, True)
    assert (again.root / MARKER).exists()
    assert len(list(git.Repo(again.remote).iter_commits("main"))) == commits


def test_the_demo_seeds_from_this_checkouts_modules():
    assert modules_source() == MODULES


def test_example_code_is_formatted(terraform_bin, tf_env):
    result = subprocess.run(
        [str(terraform_bin), "fmt", "-check", "-recursive", "-diff", str(MODULES)],
        env=tf_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_every_example_stack_plans_cleanly(stack, tmp_path, terraform_bin, tf_env):
    tree = tmp_path / "modules"
    shutil.copytree(MODULES, tree, ignore=shutil.ignore_patterns(".terraform*"))
    workdir = tree / "stacks" / stack
    env = {**tf_env, "TFOPS_DEMO_CLOUD": str(tmp_path / "cloud"), "TF_DATA_DIR": str(tmp_path / "tfdata")}
    (tmp_path / "cloud").mkdir()

    def terraform(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(terraform_bin), *args, "-no-color"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    assert terraform("init", "-input=false").returncode == 0
    validated = terraform("validate")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    planned = terraform("plan", "-input=false", "-detailed-exitcode")
    assert planned.returncode == 2, planned.stdout + planned.stderr  # everything to create, nothing failed
    assert "Error" not in planned.stdout + planned.stderr
