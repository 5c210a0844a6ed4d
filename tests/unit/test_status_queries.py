"""`tfops status` and `GET /api/stacks` read the whole estate in a fixed number of queries.

The store is a real one (SQLite, and PostgreSQL for the store read itself), filled through its own
methods the way the daemon fills it; queries are counted with SQLAlchemy's cursor events, so the
count covers every statement any engine in this process sends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, event

from tfops.cli import cli
from tfops.models import RunKind, RunStatus, Stack, Trigger, TriggerSource
from tfops.store import Store
from tfops.web import HttpOptions, WebServer, create_app
from tfops.web.api import ApiToken, api_router

SHA = "a" * 40
READ = ApiToken(name="dashboard", token="read-token-0123456789abcdef", scope="read")
POLL = Trigger(source=TriggerSource.POLL, actor="poll")


def fill(store: Store, count: int) -> dict[str, int | None]:
    """`count` stacks; most have one deploy, every fifth a drift check after it, every seventh none.
    Returns the id of each stack's newest run (None without one)."""
    names = [f"stack-{index:04d}" for index in range(count)]
    store.sync_stacks((name, f"stacks/{name}") for name in names)
    newest: dict[str, int | None] = {}
    for index, name in enumerate(names):
        newest[name] = None
        if index % 7 == 3:
            continue
        newest[name] = store.create_run(name, RunKind.DEPLOY, POLL, SHA).id
        if index % 5 == 0:
            newest[name] = store.create_run(name, RunKind.DRIFT, POLL, SHA).id
    return newest


@contextmanager
def counted_queries() -> Iterator[list[str]]:
    """Every statement sent to the database while inside, from any engine of this process."""
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", record)


@pytest.fixture(scope="module")
def estates(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Path, dict[str, int | None]]]:
    """A store with 10 stacks and one with 300 (filled once: the fill is most of the time)."""
    found = {}
    for count in (10, 300):
        root = tmp_path_factory.mktemp(f"estate-{count}")
        store = Store(Store.sqlite_url(root / "tfops.db"))
        store.upgrade()
        found[count] = (root, fill(store, count))
        store.close()
        (root / "tfops.yaml").write_text(f"data_dir: {root}\n")
    return found


# --------------------------------------------------------------------------- the store read


def test_the_overview_gives_every_stack_its_newest_run_in_two_queries(store_url: str) -> None:
    store = Store(store_url)
    store.upgrade()
    try:
        newest = fill(store, 12)
        with counted_queries() as statements:
            overview = store.stack_overview()
        selects = [statement for statement in statements if statement.lstrip().upper().startswith("SELECT")]
        assert len(selects) == 2, statements
        assert [item.state.name for item in overview] == sorted(newest)
        assert {item.state.name: item.last_run.id if item.last_run else None for item in overview} == newest
        drift = next(item for item in overview if item.state.name == "stack-0000").last_run
        assert drift is not None and drift.kind is RunKind.DRIFT and drift.status is RunStatus.QUEUED
    finally:
        store.close()


# --------------------------------------------------------------------------- tfops status


def status_queries(root: Path, newest: dict[str, int | None]) -> tuple[int, list[dict]]:
    with counted_queries() as statements:
        result = CliRunner().invoke(cli, ["--config", str(root / "tfops.yaml"), "status", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {row["name"]: row["last_run"]["id"] if row["last_run"] else None for row in rows} == newest
    return len(statements), rows


def test_tfops_status_issues_the_same_number_of_queries_at_10_and_300_stacks(estates) -> None:
    small, small_rows = status_queries(*estates[10])
    large, large_rows = status_queries(*estates[300])

    assert (len(small_rows), len(large_rows)) == (10, 300)
    assert small == large
    assert small <= 12, "a handful: the schema check, two meta facts and the overview"


# --------------------------------------------------------------------------- GET /api/stacks


def api_queries(root: Path, newest: dict[str, int | None]) -> tuple[int, list[dict]]:
    store = Store(Store.sqlite_url(root / "tfops.db"))
    # The configuration has one stack the store has not recorded yet, and lacks one it has.
    configured = {name: Stack(name=name, path=f"stacks/{name}") for name in list(newest)[1:]}
    configured["brand-new"] = Stack(name="brand-new", path="stacks/brand-new")
    router = api_router(
        store=store, stacks=lambda: configured, queue_run=_no_queue, tokens=[READ], next_check=lambda _: None
    )
    server = WebServer(create_app([router]), HttpOptions(host="127.0.0.1", port=0))
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client, counted_queries() as statements:
            response = client.get("/api/stacks", headers={"Authorization": f"Bearer {READ.token}"})
    finally:
        assert server.stop(timeout=10.0)
        store.close()
    assert response.status_code == 200
    stacks = response.json()
    expected = newest | {"brand-new": None}
    assert {item["name"]: item["last_run"]["id"] if item["last_run"] else None for item in stacks} == expected
    return len(statements), stacks


def _no_queue(stack: str, kind: RunKind, actor: str) -> None:
    raise AssertionError("listing stacks must not queue a run")


def test_api_stacks_issues_the_same_number_of_queries_at_10_and_300_stacks(estates) -> None:
    small, small_stacks = api_queries(*estates[10])
    large, large_stacks = api_queries(*estates[300])

    assert (len(small_stacks), len(large_stacks)) == (11, 301)
    assert small == large
    assert small <= 5, "the overview's two queries and its transaction, and the open incidents"


def test_status_gives_each_recorded_stack_its_policy_from_the_config_without_a_checkout(tmp_path) -> None:
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"))
    store.upgrade()
    store.sync_stacks([("network", "core/network"), ("app", "stacks/app"), ("gone", "old/gone")])
    store.close()
    (tmp_path / "tfops.yaml").write_text(
        f"data_dir: {tmp_path}\n"
        "stacks:\n"
        "  - {name: network, path: core/network, drift_interval: 1h}\n"
        "  - {discover: 'stacks/*', drift_interval: 10m, depends_on: [network]}\n"
    )
    assert not (tmp_path / "repo").exists(), "no checkout: the daemon never fetched here"

    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "tfops.yaml"), "status", "--json"])

    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["app"]["depends_on"] == ["network"] and rows["network"]["depends_on"] == []
    assert rows["app"]["next_check"] is not None and rows["network"]["next_check"] is not None
    assert rows["gone"]["next_check"] is None, "a stack no config entry gives has no policy"


def test_the_status_table_never_cuts_a_stack_name_or_path_on_an_80_column_terminal(tmp_path) -> None:
    name, path = "payments-eu-west-1-primary", "services/payments/eu-west-1/primary"
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"))
    store.upgrade()
    store.sync_stacks([("network", "core/network"), (name, path)])
    store.create_run(name, RunKind.DEPLOY, POLL, SHA)
    store.close()
    (tmp_path / "tfops.yaml").write_text(
        f"data_dir: {tmp_path}\n"
        "stacks:\n"
        "  - {name: network, path: core/network}\n"
        f"  - {{name: {name}, path: {path}, depends_on: [network]}}\n"
    )

    result = CliRunner().invoke(
        cli, ["--config", str(tmp_path / "tfops.yaml"), "status"], env={"COLUMNS": "80"}
    )

    assert result.exit_code == 0, result.output
    assert name in result.output and path in result.output, result.output
    assert "after" in result.output, "the order column is there when a stack has upstreams"
