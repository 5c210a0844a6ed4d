"""Benchmark of the reading commands and of GET /api/stacks, against baselines in the same run.

1. Start-up: `tfops status --json`, `tfops runs` and `tfops show 1` (each a fresh process, as a
   person or a script runs them) against the import floor
   `python -c "import sqlalchemy, yaml, pydantic, click"`, interleaved so that the machine's noise
   falls on all of them alike. The store holds one stack and one run. Target <= 1.3x the floor.
   The configuration is in the validated-configuration cache (tfops.readcache), as it is for a
   person once any command has validated it; the first run after an edit (a cache miss, which
   validates in full) is measured too, its entry removed before each repetition. Wall time and
   CPU time (user + system, which waiting for a core on a loaded machine does not inflate).
   With --before PYTHON, the same commands also run with another interpreter whose tfops is the
   version to compare with (e.g. a checkout of main with its own virtualenv).
2. `GET /api/stacks` at N stacks (default 1,000; the store seeded through tfops' Store API with
   a few runs per stack) over real HTTP, against the same listing assembled the way it was before
   (one `last_run` query per stack) on a route of the same server, and a bare route there as the
   floor. The query count of each listing is printed too.

Medians of several repetitions; these machines are noisy. Usage:

    .venv/bin/python bench/bench_cli.py [--reps 15] [--stacks 1000] [--api-reps 20] [--before PYTHON]
        [--startup-only]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi import APIRouter
from sqlalchemy import Engine, event

from tfops.models import RunKind, RunStatus, Stack, Trigger, TriggerSource
from tfops.store import Store
from tfops.web import HttpOptions, WebServer, create_app
from tfops.web.api import ApiToken, api_router
from tfops.web.api_models import StackView, stack_view

FLOOR = "import sqlalchemy, yaml, pydantic, click"
TOKEN = ApiToken(name="bench", token="bench-token-0123456789abcdef", scope="read")
POLL = Trigger(source=TriggerSource.POLL, actor="poll")


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--stacks", type=int, default=1000)
    parser.add_argument("--api-reps", type=int, default=20)
    parser.add_argument("--before", default=None, help="an interpreter whose tfops to compare with")
    parser.add_argument("--startup-only", action="store_true", help="skip GET /api/stacks")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tfops-bench-cli-"))
    try:
        startup(root / "startup", args.reps, args.before)
        if not args.startup_only:
            api(root / "api", args.stacks, args.api_reps)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- start-up


def startup(root: Path, reps: int, before: str | None) -> None:
    config = one_run_store(root / "now")
    tfops = [sys.executable, "-m", "tfops.cli", "--config", str(config)]
    hit_cache, miss_cache = root / "cache", root / "cache-miss"
    commands = {
        "floor: " + FLOOR: [sys.executable, "-c", FLOOR],
        "tfops status --json": [*tfops, "status", "--json"],
        "tfops runs": [*tfops, "runs"],
        "tfops show 1": [*tfops, "show", "1"],
        # The first run after an edit (or ever): validates in full, then keeps the view.
        "first run (cache miss): tfops status --json": [*tfops, "status", "--json"],
        "first run (cache miss): tfops runs": [*tfops, "runs"],
    }
    if before:  # its own store: an older or newer tfops may migrate it (or refuse to read it)
        old = [before, "-m", "tfops.cli", "--config", str(one_run_store(root / "before"))]
        commands |= {
            "before: tfops status --json": [*old, "status", "--json"],
            "before: tfops runs": [*old, "runs"],
            "before: tfops show 1": [*old, "show", "1"],
        }

    def run(name: str, command: list[str]) -> tuple[float, float]:
        """Wall and CPU (user + system) seconds of one run of `command`."""
        missing = name.startswith("first run")
        if missing:  # outside the timing: the entry a previous repetition kept
            shutil.rmtree(miss_cache, ignore_errors=True)
        environment = os.environ | {"XDG_CACHE_HOME": str(miss_cache if missing else hit_cache)}
        # The warm-up writes the .pyc files, as a person's first run does; with this variable set
        # (some shells and CI set it) every run would compile tfops' edited modules anew.
        environment.pop("PYTHONDONTWRITEBYTECODE", None)
        used = _children_cpu()
        started = time.perf_counter()
        # From the store's folder: `-m` puts the working directory first on sys.path, and a
        # tfops checkout there would shadow the one under test.
        subprocess.run(command, check=True, capture_output=True, cwd=root, env=environment)
        return time.perf_counter() - started, _children_cpu() - used

    for name, command in commands.items():  # warm the file cache, the .pyc files, the tfops cache
        run(name, command)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(reps):
        for name, command in commands.items():
            times[name].append(run(name, command))
    floor = next(iter(times.values()))
    floor_wall = statistics.median(wall for wall, _ in floor)
    floor_cpu = statistics.median(cpu for _, cpu in floor)
    print(f"\nstart-up, medians of {reps} (interleaved; the cache kept by the warm-up run unless 'miss'):")
    print(f"  {'':50} {'wall':>9}  {'x floor':>7}  {'CPU':>9}  {'x floor':>7}")
    for name, samples in times.items():
        wall = statistics.median(sample[0] for sample in samples)
        cpu = statistics.median(sample[1] for sample in samples)
        print(
            f"  {name:50} {wall * 1000:6.1f} ms  {wall / floor_wall:6.2f}x"
            f"  {cpu * 1000:6.1f} ms  {cpu / floor_cpu:6.2f}x"
        )


def _children_cpu() -> float:
    """CPU seconds used so far by this process's waited-for children (less noisy than wall time
    on a loaded machine: waiting for a core is not counted)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run_store(root: Path) -> Path:
    """A store with one stack and one run (run 1), and a tfops.yaml using it."""
    root.mkdir(parents=True)
    store = Store(Store.sqlite_url(root / "tfops.db"))
    store.upgrade()
    store.sync_stacks([("network", "stacks/network")])
    store.create_run("network", RunKind.DEPLOY, POLL, "a" * 40)
    store.close()
    config = root / "tfops.yaml"
    config.write_text(f"data_dir: {root}\n")
    return config


# --------------------------------------------------------------------------- GET /api/stacks


def seed(store: Store, count: int) -> dict[str, Stack]:
    """`count` stacks as a running daemon leaves them: a deploy each, applied, and drift checks."""
    names = [f"stack-{index:04d}" for index in range(count)]
    store.sync_stacks((name, f"stacks/{name}") for name in names)
    store.set_head_all("b" * 40)
    for name in names:
        run = store.create_run(name, RunKind.DEPLOY, POLL, "b" * 40)
        store.transition(run.id, RunStatus.PLANNING, message="planning")
        store.transition(run.id, RunStatus.APPLYING, message="applying")
        store.transition(run.id, RunStatus.APPLIED, message="applied")
        store.mark_stack_applied(name, "b" * 40)
        store.create_run(name, RunKind.DRIFT, POLL, "b" * 40)
    return {name: Stack(name=name, path=f"stacks/{name}") for name in names}


def api(root: Path, count: int, reps: int) -> None:
    root.mkdir(parents=True)
    store = Store(Store.sqlite_url(root / "tfops.db"))
    store.upgrade()
    started = time.perf_counter()
    stacks = seed(store, count)
    print(f"\nseeded {count} stacks in {time.perf_counter() - started:.1f} s")
    router = api_router(
        store=store, stacks=lambda: stacks, queue_run=_no_queue, tokens=[TOKEN], next_check=lambda _: None
    )
    bare = APIRouter()
    bare.add_api_route("/bare", lambda: {"ok": True})
    bare.add_api_route("/before", lambda: _per_stack(store, stacks), response_model=list[StackView])
    server = WebServer(create_app([router, bare]), HttpOptions(host="127.0.0.1", port=0))
    server.start()
    headers = {"Authorization": f"Bearer {TOKEN.token}"}
    try:
        with httpx.Client(base_url=server.url, timeout=60.0) as client:
            cases: dict[str, Callable[[], object]] = {
                "floor: bare route": lambda: client.get("/bare").raise_for_status(),
                "before: a last_run query per stack": lambda: client.get("/before").raise_for_status().json(),
                f"GET /api/stacks ({count} stacks)": lambda: (
                    client.get("/api/stacks", headers=headers).raise_for_status().json()
                ),
            }
            before = _count_queries(lambda: client.get("/before").raise_for_status())
            now = _count_queries(lambda: client.get("/api/stacks", headers=headers).raise_for_status())
            _report(cases, reps)
            print(f"  queries per listing: before {before}, GET /api/stacks {now}")
    finally:
        server.stop(timeout=10.0)
        store.close()


def _per_stack(store: Store, configured: dict[str, Stack]) -> list[StackView]:
    """The listing as GET /api/stacks assembled it before the overview query."""
    states = {state.name: state for state in store.list_stacks()}
    return [
        stack_view(name, states.get(name), configured.get(name), store.last_run(name), None)
        for name in sorted(configured.keys() | states.keys())
    ]


def _count_queries(call: Callable[[], object]) -> int:
    statements: list[str] = []

    def record(*_args: object) -> None:
        statements.append("")

    event.listen(Engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    return len(statements)


def _report(cases: dict[str, Callable[[], object]], reps: int) -> None:
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(reps):
        for name, case in cases.items():
            started = time.perf_counter()
            case()
            times[name].append(time.perf_counter() - started)
    print(f"medians of {reps} (interleaved):")
    for name, samples in times.items():
        print(f"  {name:55} {statistics.median(samples) * 1000:8.1f} ms")


def _no_queue(stack: str, kind: RunKind, actor: str) -> None:
    raise RuntimeError("the benchmark only reads")


if __name__ == "__main__":
    main()
