"""Building the App: a configuration it refuses leaves no database behind, and a failure after the
store is open leaves nothing open."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from tfops.app import App
from tfops.config import load_settings
from tfops.errors import ConfigError
from tfops.store import Store

# resolve_binary only checks that the file is an executable: no Terraform runs in these tests.
SOME_EXECUTABLE = "/bin/sh"


def settings_for(tmp_path: Path, **top):
    config = {
        "data_dir": str(tmp_path / "data"),
        "repo": {"url": str(tmp_path / "remote.git"), "branch": "main"},
        "terraform": {"binary": SOME_EXECUTABLE},
        **top,
    }
    path = tmp_path / "tfops.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_settings(path, environ={})


def open_files_under(directory: Path) -> list[str]:
    """Files under `directory` that this process holds open (read from /proc, as lsof would)."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


def refused(tmp_path: Path, case: str):
    (tmp_path / "bot-token").write_text("xoxb-not-a-real-token\n")
    if case == "no repo.url":
        settings = settings_for(tmp_path, repo={"branch": "main"})
    elif case == "slack token without a channel":
        settings = settings_for(tmp_path, slack={"bot_token_file": str(tmp_path / "bot-token")})
    elif case == "git token file missing":
        settings = settings_for(
            tmp_path,
            repo={"url": "https://git.example.com/infra.git", "token_file": str(tmp_path / "no-such-token")},
        )
    else:
        settings = settings_for(tmp_path, terraform={"binary": str(tmp_path / "no-terraform-here")})
    return settings


@pytest.mark.parametrize(
    "case", ["no repo.url", "slack token without a channel", "git token file missing", "bad terraform binary"]
)
def test_a_refused_configuration_creates_no_database_and_leaves_nothing_open(tmp_path, case):
    settings = refused(tmp_path, case)

    with pytest.raises(ConfigError):
        App(settings, environ={"PATH": "/usr/bin:/bin"})

    assert not list(tmp_path.rglob("*.db*")), "the store was opened before the configuration was checked"
    assert open_files_under(tmp_path) == []


def test_a_failure_after_the_store_is_open_closes_it(tmp_path):
    settings = settings_for(tmp_path)
    # A database from a newer tfops: its schema revision is unknown here, so the upgrade fails.
    newer = Store(settings.store_url)
    newer.upgrade()
    with newer.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    newer.close()
    assert open_files_under(tmp_path) == []

    with pytest.raises(Exception, match="from_the_future"):
        App(settings, environ={"PATH": "/usr/bin:/bin"})

    assert open_files_under(tmp_path) == [], "the half-built App still holds the database open"
