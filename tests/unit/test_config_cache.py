"""The validated-configuration cache (tfops.readcache): the reading commands skip validation only
for a configuration that passed it, and say what `tfops check-config` says about one that fails.

Every scenario runs the real command line in child processes, with its own $XDG_CACHE_HOME. Whether
a command validated is read from `-X importtime`: validating imports tfops' config models
(tfops.config.settings), answering from the cache does not.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tfops.models import DriftState, RunKind, Trigger, TriggerSource
from tfops.readview import VIEW_FORMAT
from tfops.store import Store

POLL = Trigger(source=TriggerSource.POLL, actor="poll")
VALID = """\
data_dir: {data}
defaults:
  drift_interval: 0  # app's next check would be "now + interval": a time that moves
stacks:
  - path: stacks/network
    drift_interval: 1h
  - path: stacks/app
    on_merge: plan
"""


class Tfops:
    """`tfops --config <file>` in a child process, with a cache of its own and no TFOPS_* of ours."""

    def __init__(self, config: Path, cache: Path) -> None:
        self.config, self.cache = config, cache
        self.env = {key: value for key, value in os.environ.items() if not key.upper().startswith("TFOPS_")}
        self.env["XDG_CACHE_HOME"] = str(cache)

    def __call__(self, *args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return self._run([], args, extra)

    def validated(self, *args: str, extra: dict[str, str] | None = None) -> tuple[bool, str]:
        """Run a command that must succeed; (whether it validated the configuration, its output)."""
        result = self._run(["-X", "importtime"], args, extra)
        assert result.returncode == 0, result.stderr[-3000:]
        modules = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
        return "tfops.config.settings" in modules, result.stdout

    def _run(self, flags: list[str], args: tuple[str, ...], extra: dict[str, str] | None):
        return subprocess.run(
            [sys.executable, *flags, "-m", "tfops.cli", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=self.env | (extra or {}),
            cwd=self.config.parent,
        )

    def written(self) -> bytes:
        """Everything the cache holds; never empty here, every scenario having validated."""
        found = b"".join(entry.read_bytes() for entry in self.entries())
        assert found, "nothing cached"
        return found

    def entries(self) -> list[Path]:
        folder = self.cache / "tfops" / "config"
        return sorted(folder.glob("*.json")) if folder.exists() else []


def seeded_store(url: str) -> None:
    """Two stacks as the poller records them; network drift-checked, with one deploy (run 1)."""
    store = Store(url)
    store.upgrade()
    store.sync_stacks([("network", "stacks/network"), ("app", "stacks/app")])
    store.create_run("network", RunKind.DEPLOY, POLL, "a" * 40)
    store.set_drift("network", DriftState.IN_SYNC)
    store.close()


@pytest.fixture
def tfops(tmp_path: Path) -> Tfops:
    seeded_store(Store.sqlite_url(tmp_path / "data" / "tfops.db"))
    config = tmp_path / "tfops.yaml"
    config.write_text(VALID.format(data=tmp_path / "data"))
    return Tfops(config, tmp_path / "cache")


def test_a_reading_command_answers_from_the_cache_once_the_configuration_validated(tfops: Tfops) -> None:
    assert tfops.validated("status", "--json")[0], "the first run validates"
    assert [entry.stat().st_mode & 0o777 for entry in tfops.entries()] == [0o600]

    assert not tfops.validated("status", "--json")[0]
    assert not tfops.validated("runs")[0]
    assert not tfops.validated("show", "1")[0]


def test_a_cache_that_cannot_be_written_costs_a_validation_and_nothing_else(tfops: Tfops) -> None:
    tfops.cache.write_text("a file where the cache folder would be")

    assert tfops.validated("status", "--json")[0]
    assert tfops.validated("show", "1")[0]


def test_any_command_that_validates_fills_the_cache_for_the_readers(tfops: Tfops) -> None:
    tfops("check-config")  # whether terraform is installed here or not: validation came first

    assert not tfops.validated("status")[0]


@pytest.mark.parametrize(
    ("args", "as_json"),
    [
        *((("status",), False), (("status", "--json"), True), (("runs",), False), (("runs", "--json"), True)),
        *((("show", "1"), False), (("show", "1", "--json"), True)),
    ],
)
def test_the_reading_commands_print_the_same_from_the_cache_as_after_validating(
    tfops: Tfops, args: tuple[str, ...], as_json: bool
) -> None:
    missed, first = tfops.validated(*args)
    hit, second = tfops.validated(*args)

    assert (missed, hit) == (True, False)
    assert first == second
    assert "network" in first
    if as_json and args[0] == "status":
        rows = {row["name"]: row for row in json.loads(first)}
        assert rows["network"]["next_check"] is not None, "the drift interval came through"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("on_merge: plan", "on_merge: sometimes"),  # a value the models refuse
        ("on_merge: plan", "on_merge: plan\n    depends_on: [nowhere]"),  # a rule across entries
        ("stacks:\n", "stacks: [\n"),  # not YAML
        ("stacks:\n", "log_levl: debug\nstacks:\n"),  # an unknown key
    ],
)
def test_a_reading_command_after_an_edit_that_breaks_the_config_fails_as_check_config_does(
    tfops: Tfops, old: str, new: str
) -> None:
    tfops.validated("status")
    [entry] = tfops.entries()
    kept = entry.read_bytes()
    tfops.config.write_text(VALID.replace(old, new).format(data=tfops.config.parent / "data"))

    checked = tfops("check-config")
    assert checked.returncode == 1
    assert "error:" in checked.stderr
    for args in (("status",), ("status", "--json"), ("runs",), ("show", "1")):
        result = tfops(*args)
        assert (result.returncode, result.stderr) == (1, checked.stderr), args
    assert tfops.entries() == [entry] and entry.read_bytes() == kept, "a failed validation keeps nothing"


def test_an_edit_that_changes_a_stacks_policy_shows_at_once_in_status(tfops: Tfops) -> None:
    before = {row["name"]: row for row in json.loads(tfops.validated("status", "--json")[1])}
    assert before["app"]["depends_on"] == [] and before["network"]["next_check"] is not None
    edited = VALID.replace("drift_interval: 1h", "drift_interval: 0").replace(
        "on_merge: plan", "on_merge: plan\n    depends_on: [network]"
    )
    tfops.config.write_text(edited.format(data=tfops.config.parent / "data"))

    validated, output = tfops.validated("status", "--json")

    after = {row["name"]: row for row in json.loads(output)}
    assert validated
    assert after["app"]["depends_on"] == ["network"]
    assert after["network"]["next_check"] is None, "drift checks are off now"
    assert "after" in tfops.validated("status")[1], "the order column, from the cache too"


def test_a_changed_tfops_variable_misses_the_cache(tfops: Tfops, tmp_path: Path) -> None:
    other = tmp_path / "other"
    store = Store(Store.sqlite_url(other / "tfops.db"))
    store.upgrade()
    store.sync_stacks([("elsewhere", "stacks/elsewhere")])
    store.close()
    tfops.validated("runs")

    validated, output = tfops.validated("status", extra={"TFOPS_DATA_DIR": str(other)})

    assert validated and "elsewhere" in output
    refused = tfops("status", extra={"TFOPS_LOG_LEVEL": "loud"})
    assert refused.returncode == 1 and "environment TFOPS_LOG_LEVEL" in refused.stderr


def _truncate(entry: Path) -> None:
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])


def _garble(entry: Path) -> None:
    entry.write_bytes(b"\x00\xff not json")


def _other_key(entry: Path) -> None:
    data = json.loads(entry.read_text())
    entry.write_text(json.dumps(data | {"key": "0" * 64}))


def _other_format(entry: Path) -> None:
    data = json.loads(entry.read_text())
    entry.write_text(json.dumps(data | {"view": data["view"] | {"format": 999}}))


def _writable_by_others(entry: Path) -> None:
    """Another account could have put a store of its choosing there."""
    entry.chmod(0o666)


def _pointing_elsewhere_and_writable(entry: Path) -> None:
    data = json.loads(entry.read_text())
    data["view"]["store_url"] = "sqlite:////nonexistent/tfops.db"
    entry.write_text(json.dumps(data))
    entry.chmod(0o622)


@pytest.mark.parametrize(
    "spoil",
    [_truncate, _garble, _other_key, _other_format, _writable_by_others, _pointing_elsewhere_and_writable],
)
def test_a_corrupt_or_foreign_cache_file_falls_back_to_validation_and_is_rewritten(
    tfops: Tfops, spoil: Callable[[Path], None]
) -> None:
    expected = tfops.validated("status", "--json")[1]
    [entry] = tfops.entries()
    spoil(entry)

    validated, output = tfops.validated("status", "--json")

    assert validated and output == expected
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert json.loads(entry.read_text())["view"]["format"] == VIEW_FORMAT
    assert not tfops.validated("status", "--json")[0], "rewritten whole: a hit again"


CANARIES = {
    "in_file_env": "canary-stack-env-7Qx",
    "redact": "canary-redact-pattern-9Zt",
    "repo_token": "canary-repo-token-3Lm",
    "env_only": "canary-tfops-variable-5Kp",
}
PASSWORD = "canary-store-password-1Rw"


def on_postgres(tmp_path: Path, store_url: str, more_config: str) -> tuple[Tfops, str, str]:
    """A seeded store reached with a password (trust authentication ignores it); the command line,
    the URL and that password."""
    parsed = make_url(store_url)
    password = parsed.password or PASSWORD
    url = parsed.set(password=password).render_as_string(hide_password=False)
    seeded_store(url)
    config = tmp_path / "tfops.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n" + more_config.replace("URL", url))
    return Tfops(config, tmp_path / "cache"), url, password


def test_the_cache_holds_no_secret_and_a_store_password_is_read_at_use(
    tmp_path: Path, postgres_store_url: str
) -> None:
    tfops, _, password = on_postgres(
        tmp_path,
        postgres_store_url,
        "store:\n  url: 'URL'\n"
        f"redact_patterns: ['{CANARIES['redact']}']\n"
        "repo:\n  token_env: CANARY_TOKEN\n"
        f"stacks:\n  - path: stacks/network\n    env:\n      TF_VAR_secret: {CANARIES['in_file_env']}\n",
    )
    tfops.env["CANARY_TOKEN"] = CANARIES["repo_token"]
    tfops.env["TFOPS_REDACT_PATTERNS"] = json.dumps([CANARIES["env_only"]])

    assert tfops.validated("status", "--json")[0]
    validated, output = tfops.validated("status", "--json")

    assert not validated and "network" in output, "answered from the cache, password read from the file"
    written = tfops.written()
    assert b"***" in written
    for canary in [*CANARIES.values(), password]:
        assert canary.encode() not in written, canary


def test_a_store_password_from_the_environment_is_kept_as_its_variables_name(
    tmp_path: Path, postgres_store_url: str
) -> None:
    tfops, url, password = on_postgres(tmp_path, postgres_store_url, "")
    tfops.env["TFOPS_STORE__URL"] = url

    assert tfops.validated("runs")[0]
    assert not tfops.validated("runs")[0]
    tfops.env["TFOPS_STORE__URL"] = url.replace(password, "another-password")
    assert tfops.validated("runs")[0], "another password is another key"

    written = tfops.written()
    assert b"env:TFOPS_STORE__URL" in written and password.encode() not in written
