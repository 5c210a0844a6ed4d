"""Benchmark of the status page (issue 14): the overview at 1,000 stacks and 100,000 runs.

The store (SQLite, migrated by tfops) is seeded in two ways: the stacks, their heads, applied
commits, drift states and drift incidents through tfops' Store API, as the daemon writes them;
the 100,000 runs (and their status events) by bulk `INSERT`s through SQLAlchemy on the store's own
tables (`tfops.store.schema`), since a million Store calls would take the benchmark's whole hour.
Runs are spread over the last 100 days, ~3% failed, so the chart's queries have work to do.

Cases, over real HTTP on a loopback uvicorn (the daemon's WebServer), with a read token:

    floor: a bare route on the same server
    GET /                         the overview: every stack, counts, the 14-day chart (page 1)
    GET /?state=failed&q=stack-0  filtered and searched
    GET /stacks/NAME              one stack: a page of runs, incidents, applied commits, durations
    GET /runs/ID                  one run with its plan, events and decisions
    render only                   the overview's Jinja2 render from ready view models, no HTTP

Commit subjects come from a fake source answering at once: the page caches every lookup, so after
the first view of a head the page asks Git nothing (the first view pays one `git log` per distinct
commit and one `git rev-list` per stack shown). Medians of interleaved repetitions. Usage:

    .venv/bin/python bench/bench_ui.py [--stacks 1000] [--runs 100000] [--reps 20]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from fastapi import APIRouter
from sqlalchemy import insert

from tfops.incidents import DriftedResource, DriftSeen
from tfops.models import DriftState, RunKind, RunStatus, Stack, TriggerSource
from tfops.store import Store, schema, ui_queries
from tfops.web import HttpOptions, WebServer, create_app
from tfops.web import ui_views as views
from tfops.web.api import ApiToken
from tfops.web.ui import UiContext, render, ui_router
from tfops.web.ui_auth import UiAccess
from tfops.web.ui_charts import trouble_chart
from tfops.web.ui_commits import CommitLookup

TOKEN = ApiToken(name="bench", token="bench-token-0123456789abcdef", scope="read")
HEAD, APPLIED = "b" * 40, "a" * 40
NOW = datetime.now(UTC)
STATUSES = [RunStatus.APPLIED] * 60 + [RunStatus.NO_CHANGES] * 30 + [RunStatus.PLANNED] * 7
STATUSES += [RunStatus.FAILED] * 3


@dataclass(frozen=True)
class Revision:
    sha: str
    subject: str = "Bump the module to v2.3 and tag every bucket"
    author: str = "Ada Lovelace"


class InstantCommits:
    def revision(self, rev: str) -> Revision:
        return Revision(rev)

    def commits_between(self, older: str, newer: str, path: str | None = None) -> int:
        return 2


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stacks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tfops-bench-ui-"))
    try:
        store = Store(Store.sqlite_url(root / "tfops.db"))
        store.upgrade()
        started = time.perf_counter()
        stacks = seed(store, args.stacks, args.runs)
        print(f"seeded {args.stacks} stacks and {args.runs} runs in {time.perf_counter() - started:.1f} s")
        measure(store, stacks, root, args.reps)
        store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def seed(store: Store, count: int, runs: int) -> dict[str, Stack]:
    names = [f"stack-{index:04d}" for index in range(count)]
    store.sync_stacks((name, f"stacks/{name}") for name in names)
    store.set_head_all(HEAD)
    for name in names:
        store.mark_stack_applied(name, APPLIED)
    _bulk_runs(store, names, runs)
    for index, name in enumerate(names[::20]):  # one stack in 20 drifted, with an open incident
        store.set_drift(name, DriftState.DRIFTED)
        seen = DriftSeen(
            index + 1, NOW - timedelta(days=index % 10), HEAD, (DriftedResource("aws_s3_bucket.logs"),)
        )
        store.track_drift(name, seen)
    for name in names[1::20]:
        store.set_drift(name, DriftState.IN_SYNC)
    return {name: Stack(name=name, path=f"stacks/{name}") for name in names}


def _bulk_runs(store: Store, names: list[str], count: int) -> None:
    """`count` finished runs, oldest first, each with its three status events (bulk INSERTs)."""
    rng = random.Random(14)
    trigger = {
        "source": TriggerSource.POLL.value,
        "actor": "poll",
        "previous_sha": None,
        "forced": False,
        "note": "",
    }
    summary = {"terraform_version": "1.9.0", "format_version": "1.2", "changes": [], "drift": []}
    with store.engine.begin() as connection:
        for start in range(0, count, 5000):
            rows, events = [], []
            for number in range(start, min(count, start + 5000)):
                created = NOW - timedelta(days=100) + timedelta(seconds=8640 * 100 * number / count)
                status = rng.choice(STATUSES)
                row = {
                    "id": number + 1, "stack": names[number % len(names)], "status": status.value,
                    "kind": (RunKind.DRIFT if number % 3 else RunKind.DEPLOY).value, "trigger": trigger,
                    "commit_sha": HEAD, "summary": summary, "created_at": created, "started_at": created,
                    "finished_at": created + timedelta(seconds=rng.uniform(5, 300)),
                }  # fmt: skip
                rows.append(row)
                for step, (old, new) in enumerate(
                    ((None, "queued"), ("queued", "planning"), ("planning", status))
                ):
                    events.append(
                        {"run_id": number + 1, "at": created + timedelta(seconds=step), "from_status": old,
                         "to_status": str(new), "message": str(new)}
                    )  # fmt: skip
            connection.execute(insert(schema.runs), rows)
            connection.execute(insert(schema.run_events), events)


def measure(store: Store, stacks: dict[str, Stack], root: Path, reps: int) -> None:
    context = UiContext(
        store=store,
        stacks=lambda: stacks,
        access=UiAccess([TOKEN], b"k" * 32, loopback=True),
        commits=CommitLookup(InstantCommits()),
        data_dir=root,
        next_check=lambda name: NOW + timedelta(minutes=15),
    )
    bare = APIRouter()
    bare.add_api_route("/bare", lambda: {"ok": True})
    server = WebServer(create_app([ui_router(context), bare]), HttpOptions(host="127.0.0.1", port=0))
    server.start()
    headers = {"Authorization": f"Bearer {TOKEN.token}", "Accept": "text/html"}
    some_stack = sorted(stacks)[len(stacks) // 2]
    newest = store.list_runs(limit=1)[0].id
    try:
        with httpx.Client(base_url=server.url, timeout=60.0, headers=headers) as client:

            def get(path: str) -> Callable[[], object]:
                return lambda: client.get(path).raise_for_status()

            cases = {
                "floor: bare route": get("/bare"),
                f"GET / ({len(stacks)} stacks)": get("/"),
                "GET /?state=failed&q=stack-0": get("/?state=failed&q=stack-0"),
                f"GET /stacks/{some_stack}": get(f"/stacks/{some_stack}"),
                f"GET /runs/{newest}": get(f"/runs/{newest}"),
                "render only: the overview's template": lambda: _render_overview(context),
            }
            for case in cases.values():  # warm: caches, compiled templates, the page cache of SQLite
                case()
            _report(cases, reps)
    finally:
        server.stop(timeout=10.0)


_PREPARED: dict[str, object] = {}


def _render_overview(context: UiContext) -> object:
    """The overview's template alone, from view models built once (the HTTP case builds them)."""
    if not _PREPARED:
        found = ui_queries.stack_overview(context.store)
        rows = views.stack_rows(found, context.stacks(), {}, context.next_check)
        shown = views.overview(rows, state=None, query="", page=1)
        _PREPARED.update(
            view=shown,
            rows=views.with_commits(shown.rows, context.commits.commit, context.commits.behind),
            chart=trouble_chart([]),
        )
    return render("overview.html", filters=views.FILTERS, **_PREPARED)


def _report(cases: dict[str, Callable[[], object]], reps: int) -> None:
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(reps):
        for name, case in cases.items():
            started = time.perf_counter()
            case()
            times[name].append(time.perf_counter() - started)
    floor = statistics.median(next(iter(times.values())))
    print(f"medians of {reps} (interleaved):")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"  {name:45} {median * 1000:8.1f} ms  {median / floor:7.1f}x the floor")


if __name__ == "__main__":
    main()
