"""The read-only commands import only what they need, and never migrate a store behind a daemon.

`tfops status`, `runs` and `show` run as the real command line in a child process with
`-X importtime`, which lists every module the process imported. How long that takes is measured
in bench/bench_cli.py, not here. Once a command has validated the configuration, the reading
commands answer from the validated-configuration cache (tfops.readcache) without importing
pydantic's models or tfops' config models at all (tests/unit/test_config_cache.py: when they
validate anyway).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from tfops import cli_status, poller
from tfops.models import RunKind, Trigger, TriggerSource
from tfops.store import Store
from tfops.store.engine import MIGRATIONS_DIR
from tfops.store.revision import head_revisions

# What a daemon needs and a reading command does not (boto3 stays lazy: tfops.compose).
HEAVY = ("alembic", "fastapi", "uvicorn", "starlette", "slack_sdk", "git", "boto3", "apscheduler")
OLD_REVISION = "0003_gitproc_pgid"
# What validating the configuration needs and answering from the cache does not.
VALIDATION = (
    "pydantic.main",
    "pydantic.fields",
    "pydantic_settings",
    "tfops.config",
    "tfops.config.settings",
)
# Runs the command line as `python -m tfops.cli` does, then lists the modules it ended with.
LISTING = (
    "import atexit, sys; from tfops.cli import main; "
    "atexit.register(lambda: print(*sorted(sys.modules), sep='\\n', file=sys.stderr)); "
    "sys.argv[0] = 'tfops'; main()"
)


def tfops(config: Path, *args: str, importtime: bool = False) -> subprocess.CompletedProcess:
    flags = ["-X", "importtime"] if importtime else []
    return subprocess.run(
        [sys.executable, *flags, "-m", "tfops.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=os.environ | {"XDG_CACHE_HOME": str(config.parent / "cache")},  # a cache of its own
    )


def modules_at_exit(config: Path, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run the command line; the result and every module it had imported when it exited."""
    result = subprocess.run(
        [sys.executable, "-c", LISTING, "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=os.environ | {"XDG_CACHE_HOME": str(config.parent / "cache")},
        cwd=config.parent,  # not a checkout: its tfops would shadow the one under test
    )
    return result, set(result.stderr.split())


def imported(stderr: str) -> set[str]:
    """The top-level packages named by `-X importtime` lines (`import time: 12 | 34 | a.b`)."""
    names = (
        line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")
    )
    return {name.split(".")[0] for name in names}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A store the daemon has migrated, with one stack and one run (run 1)."""
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"))
    store.upgrade()
    store.sync_stacks([("network", "stacks/network")])
    store.create_run("network", RunKind.DEPLOY, Trigger(source=TriggerSource.POLL, actor="poll"), "a" * 40)
    store.close()
    path = tmp_path / "tfops.yaml"
    path.write_text(f"data_dir: {tmp_path}\n")
    return path


def set_revision(config: Path, revision: str) -> None:
    store = Store(Store.sqlite_url(config.parent / "tfops.db"))
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    store.close()


def recorded_revision(data_dir: Path) -> str:
    store = Store(Store.sqlite_url(data_dir / "tfops.db"))
    with store.engine.connect() as connection:
        found = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    store.close()
    return found


@pytest.mark.parametrize(
    "args",
    [
        ("status", "--json"),
        ("status",),
        ("runs",),
        ("runs", "--json"),
        ("show", "1"),
        ("show", "1", "--json"),
    ],
)
def test_reading_commands_import_none_of_the_daemons_machinery(config: Path, args: tuple[str, ...]) -> None:
    result = tfops(config, *args, importtime=True)

    assert result.returncode == 0, result.stderr[-2000:]
    assert "network" in result.stdout
    modules = imported(result.stderr)
    assert "sqlalchemy" in modules and "click" in modules, "the listing is read"
    assert sorted(modules.intersection(HEAVY)) == []
    assert "sqlalchemy.dialects.postgresql" not in modules, "a SQLite store needs no PostgreSQL dialect"
    if "--json" in args:
        assert "rich" not in modules, "JSON needs no console"


@pytest.mark.parametrize("args", [("status", "--json"), ("status",), ("runs",), ("show", "1", "--json")])
def test_from_the_cache_the_reading_commands_import_neither_pydantics_models_nor_the_config_models(
    config: Path, args: tuple[str, ...]
) -> None:
    first, validated = modules_at_exit(config, *args)  # validates, and keeps the view
    assert first.returncode == 0, first.stderr[-2000:]
    assert "pydantic.main" in validated and "tfops.config.settings" in validated, "the listing is read"

    result, modules = modules_at_exit(config, *args)

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == first.stdout and "network" in result.stdout
    assert sorted(modules.intersection(VALIDATION)) == []
    assert sorted({name.split(".")[0] for name in modules}.intersection(HEAVY)) == []


def test_a_store_at_an_older_schema_is_read_by_no_command_and_left_as_it_is(tmp_path: Path) -> None:
    config = tmp_path / "tfops.yaml"
    config.write_text(f"data_dir: {tmp_path}\n")
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"))  # as an older tfops left it
    with store.engine.begin() as connection:
        alembic_config = migrations()
        alembic_config.attributes["connection"] = connection
        command.upgrade(alembic_config, OLD_REVISION)
    store.close()

    result = tfops(config, "status")

    assert result.returncode == 1
    assert f"revision {OLD_REVISION}" in result.stderr
    assert "tfops db upgrade" in result.stderr
    assert recorded_revision(config.parent) == OLD_REVISION, "a reading command never migrates"
    upgraded = tfops(config, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert recorded_revision(config.parent) in head_revisions()
    assert tfops(config, "runs").returncode == 0


def test_a_store_migrated_by_a_newer_tfops_is_refused_with_what_to_do(config: Path) -> None:
    set_revision(config, "9999_from_the_future")

    result = tfops(config, "show", "1")

    assert result.returncode == 1
    assert "9999_from_the_future" in result.stderr and "newer tfops" in result.stderr


def test_status_on_a_store_never_created_creates_it_and_lists_nothing(tmp_path: Path) -> None:
    config = tmp_path / "tfops.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")

    result = tfops(config, "status", "--json")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert recorded_revision(tmp_path / "data") in head_revisions()


def migrations() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def test_the_schema_heads_read_without_alembic_are_alembics_own() -> None:
    assert head_revisions() == frozenset(ScriptDirectory.from_config(migrations()).get_heads())


def test_status_reads_the_meta_facts_under_the_names_the_poller_writes_them() -> None:
    assert cli_status.HEAD_CODE_APPLIED == poller.HEAD_CODE_APPLIED
    assert cli_status.REFUSED_STACKS_META == poller.REFUSED_STACKS_META
