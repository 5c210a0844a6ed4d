"""The command line's shared options, and configuration words that YAML turns into booleans."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import click
import pytest
from click.testing import CliRunner

from tfops.cli import Context, cli
from tfops.config import LogFormat, LogLevel, load_settings
from tfops.errors import ConfigError


def _leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _leaf_commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tfops.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\nrepo:\n  url: {tmp_path / 'repo.git'}\n")
    return path


def test_every_command_takes_config_and_logging_options_after_its_name():
    commands = _leaf_commands(cli)
    assert ("db", "upgrade") in commands and ("serve",) in commands
    runner = CliRunner()
    for path in commands:
        args = [
            *path,
            "--config",
            "x.yaml",
            "-c",
            "y.yaml",
            "--log-level",
            "critical",
            "--log-format",
            "json",
        ]
        result = runner.invoke(cli, [*args, "--help"])
        assert result.exit_code == 0, f"tfops {' '.join(path)}: {result.output}"


def test_an_option_after_the_command_name_overrides_the_same_option_before_it(config, tmp_path):
    missing = tmp_path / "missing.yaml"
    runner = CliRunner()
    chosen = Context()

    result = runner.invoke(
        cli,
        [
            "-c",
            str(missing),
            "--log-level",
            "debug",
            "status",
            "--json",
            "-c",
            str(config),
            "--log-level",
            "critical",
        ],
        obj=chosen,
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == []
    assert (chosen.config_path, chosen.log_level, chosen.log_format) == (config, "critical", None)
    before_only = runner.invoke(
        cli, ["-c", str(config), "--log-format", "json", "db", "upgrade"], obj=Context()
    )
    assert before_only.exit_code == 0 and "up to date" in before_only.output
    wrong_after = runner.invoke(cli, ["-c", str(config), "db", "upgrade", "-c", str(missing)])
    assert wrong_after.exit_code != 0
    assert "missing.yaml: config file not found" in str(wrong_after.exception)


def test_the_command_line_accepts_every_log_level_and_format_the_config_accepts(config, tmp_path):
    runner = CliRunner()
    for level in get_args(LogLevel):
        assert load_settings(config, {"TFOPS_LOG_LEVEL": level}).log_level == level
        chosen = Context()
        result = runner.invoke(cli, ["status", "-c", str(config), "--log-level", level.upper()], obj=chosen)
        assert result.exit_code == 0, result.output
        assert chosen.log_level == level
    for log_format in get_args(LogFormat):
        result = runner.invoke(cli, ["--log-format", log_format, "status", "-c", str(config)])
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ("defaults:\n  on_merge: yes\n", "defaults.on_merge"),
        ("defaults:\n  on_drift: off\n", "defaults.on_drift"),
        ("stacks:\n  - path: app\n    on_merge: on\n", "stacks.0.on_merge"),
        ("log_level: no\n", "log_level"),
        ("repo:\n  branch: on\n", "repo.branch"),
    ],
)
def test_a_yaml_boolean_in_a_word_field_says_to_quote_it_or_use_a_word(tmp_path, yaml_text, field):
    path = tmp_path / "tfops.yaml"
    path.write_text(yaml_text)

    with pytest.raises(ConfigError) as raised:
        load_settings(path, {})

    message = str(raised.value)
    assert f"{field}: must be" in message
    assert "YAML boolean" in message and "unquoted yes, no, on, off" in message
    assert "quotes" in message or "one of the words" in message
    assert "got True" not in message and "got False" not in message
