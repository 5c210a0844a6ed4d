"""The demo Terraform provider: its "cloud" is a folder of JSON files.

Editing or deleting a file in that folder outside Terraform is real drift, which
``terraform plan`` reports in ``resource_drift`` like any cloud console change.
Built on PyPI ``tf`` (plugin protocol 6); ``python -m tfops.demo.provider`` serves it.

Resources: ``demo_object`` (one JSON file per object) and ``demo_wait`` (sleeps on
create, for slow applies). Data source: ``demo_wait`` (sleeps on read, for slow plans).
``read_latency`` (or $TFOPS_DEMO_READ_LATENCY) makes every read of a resource wait like a
real cloud API's round trip; by default reads do not wait.
"""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tf import runner
from tf.iface import (
    Config,
    CreateContext,
    DataSource,
    DeleteContext,
    ImportContext,
    Provider,
    ReadContext,
    ReadDataContext,
    Resource,
    State,
    UpdateContext,
)
from tf.schema import Attribute, Schema
from tf.types import Map, Number, String, Unknown
from tf.utils import Diagnostics

FULL_NAME = "registry.terraform.io/tfops/demo"
MODEL_PREFIX = "demo_"
CLOUD_ENV_VAR = "TFOPS_DEMO_CLOUD"
LATENCY_ENV_VAR = "TFOPS_DEMO_READ_LATENCY"
_LATENCY = re.compile(r"(\d+(?:\.\d+)?)(ms|s)?")
WAITS_DIR = ".waits"

# Set by SIGINT. Terraform (and tfops, which signals the whole process group) interrupt
# with SIGINT; like go-plugin providers we do not die on it, but we cut waits short so
# Terraform can finish gracefully and write its state.
_interrupted = threading.Event()


# ---------------------------------------------------------------- the "cloud" (pure-ish file helpers)


def name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be an object's file name, or None when it can."""
    if not isinstance(name, str):
        return None  # unknown or null: Terraform checks required-ness itself
    if not name.strip():
        return "must not be empty"
    if "/" in name or "\\" in name or "\0" in name:
        return "must not contain path separators"
    if name.startswith("."):
        return "must not start with a dot (dot files are reserved by the demo cloud)"
    return None


def object_path(root: Path, name: str) -> Path:
    return root / f"{name}.json"


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """The file's object, or None when the file is gone."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    data = json.loads(text)
    if not isinstance(data, dict):
        raise TypeError("the file does not hold a JSON object")
    return data


def interruptible_sleep(seconds: float) -> bool:
    """Sleep; True when the whole time passed, False when SIGINT cut it short."""
    return not _interrupted.wait(timeout=max(0.0, float(seconds)))


# ---------------------------------------------------------------- resources


class _DemoModel:
    def __init__(self, provider: DemoProvider) -> None:
        self.provider = provider

    @property
    def root(self) -> Path:
        return self.provider.cloud_root()

    def api_round_trip(self) -> None:
        # A real provider's read is an API call: dominated by its latency, not by CPU. A SIGINT
        # cuts the wait short; the read itself still answers, so Terraform can finish cleanly.
        interruptible_sleep(self.provider.read_latency)


class DemoObject(_DemoModel, Resource):
    """One JSON file, ``<root>/<name>.json``, holding the object's attributes."""

    STORED = ("name", "content", "tags", "secret", "id")

    @classmethod
    def get_name(cls) -> str:
        return "object"

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            version=0,
            description="An object in the demo cloud: a JSON file in the cloud folder.",
            attributes=[
                Attribute("name", String(), required=True, requires_replace=True, description="File name."),
                Attribute("content", String(), optional=True),
                Attribute("tags", Map(String()), optional=True),
                Attribute("secret", String(), optional=True, sensitive=True),
                Attribute("id", String(), computed=True),
            ],
        )

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        problem = name_problem(config.get("name"))
        if problem:
            diags.add_error(f"Invalid {type_name}.name", f"The object name {problem}.", path=["name"])

    def _stored(self, state: State) -> dict[str, Any]:
        return {key: state.get(key) for key in self.STORED}

    def _state_from_file(self, name: str, data: dict[str, Any]) -> State:
        # The file is the truth; the name is the object's identity, so it comes from the path.
        return {**{key: data.get(key) for key in self.STORED}, "name": name}

    def create(self, ctx: CreateContext, planned: State) -> State | None:
        path = object_path(self.root, planned["name"])
        if path.exists():
            ctx.diagnostics.add_error(
                "Object already exists",
                f"{path} exists already. Import it (terraform import {ctx.type_name}.<address> "
                f"{planned['name']}) or delete the file.",
                path=["name"],
            )
            return None
        state = {**planned, "id": uuid.uuid4().hex}
        write_json_atomically(path, self._stored(state))
        return state

    def read(self, ctx: ReadContext, current: State) -> State | None:
        self.api_round_trip()
        path = object_path(self.root, current["name"])
        try:
            data = read_json(path)
        except (OSError, ValueError, TypeError) as exc:
            ctx.diagnostics.add_error("Cannot read demo object", f"{path}: {exc}")
            return current
        return None if data is None else self._state_from_file(current["name"], data)

    def update(self, ctx: UpdateContext, current: State, planned: State) -> State | None:
        state = {**planned, "id": current.get("id") or uuid.uuid4().hex}
        write_json_atomically(object_path(self.root, planned["name"]), self._stored(state))
        return state

    def delete(self, ctx: DeleteContext, current: State) -> None:
        object_path(self.root, current["name"]).unlink(missing_ok=True)

    def import_(self, ctx: ImportContext, id: str) -> State | None:
        problem = name_problem(id)
        if problem:
            ctx.diagnostics.add_error(
                "Invalid import id", f"The import id is the object name, which {problem}."
            )
            return None
        try:
            data = read_json(object_path(self.root, id))
        except (OSError, ValueError, TypeError) as exc:
            ctx.diagnostics.add_error("Cannot read demo object", f"{object_path(self.root, id)}: {exc}")
            return None
        if data is None:
            ctx.diagnostics.add_error("Object not found", f"No object named {id!r} in {self.root}.")
            return None
        return self._state_from_file(id, data)


def _wait_schema(description: str, *, requires_replace: bool = False) -> Schema:
    return Schema(
        version=0,
        description=description,
        attributes=[
            Attribute("seconds", Number(), required=True, requires_replace=requires_replace),
            Attribute("id", String(), computed=True),
        ],
    )


def _check_seconds(diags: Diagnostics, config: Config) -> None:
    seconds = config.get("seconds")
    if isinstance(seconds, (int, float)) and seconds < 0:
        diags.add_error("Invalid seconds", "seconds must be zero or more.", path=["seconds"])


def _interrupted_error(diags: Diagnostics) -> None:
    diags.add_error("Interrupted", "The wait was interrupted (SIGINT) before it finished.")


class DemoWait(_DemoModel, Resource):
    """Sleeps ``seconds`` on create, then records itself under ``<root>/.waits/``."""

    @classmethod
    def get_name(cls) -> str:
        return "wait"

    @classmethod
    def get_schema(cls) -> Schema:
        return _wait_schema("Sleeps on create: a slow apply.", requires_replace=True)

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        _check_seconds(diags, config)

    def _record(self, wait_id: str) -> Path:
        return self.root / WAITS_DIR / f"{wait_id}.json"

    def create(self, ctx: CreateContext, planned: State) -> State | None:
        if not interruptible_sleep(planned["seconds"]):
            _interrupted_error(ctx.diagnostics)
            return None
        state = {**planned, "id": uuid.uuid4().hex}
        write_json_atomically(self._record(state["id"]), {"id": state["id"], "seconds": state["seconds"]})
        return state

    def read(self, ctx: ReadContext, current: State) -> State | None:
        self.api_round_trip()
        return current if self._record(current["id"]).exists() else None

    def update(self, ctx: UpdateContext, current: State, planned: State) -> State | None:
        return planned  # seconds requires replacement, so there is nothing to change in place

    def delete(self, ctx: DeleteContext, current: State) -> None:
        self._record(current["id"]).unlink(missing_ok=True)


class DemoWaitData(_DemoModel, DataSource):
    """Sleeps ``seconds`` on read: makes a plan hang for timeout tests."""

    @classmethod
    def get_name(cls) -> str:
        return "wait"

    @classmethod
    def get_schema(cls) -> Schema:
        return _wait_schema("Sleeps on read: a slow plan.")

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        _check_seconds(diags, config)

    def read(self, ctx: ReadDataContext, config: Config) -> State | None:
        if not interruptible_sleep(config["seconds"]):
            _interrupted_error(ctx.diagnostics)
            return None
        return {**config, "id": f"wait-{config['seconds']}"}


# ---------------------------------------------------------------- the provider


def resolve_root(configured: Any, environ: Mapping[str, str]) -> tuple[Path | None, str | None]:
    """The cloud folder from the provider's ``root`` or $TFOPS_DEMO_CLOUD: (path, None) or (None, problem)."""
    if configured is Unknown:
        return None, "The provider's root must be known at plan time, not computed from a resource."
    value = configured if isinstance(configured, str) and configured else environ.get(CLOUD_ENV_VAR, "")
    if not value:
        return None, (
            f'Set root = "<folder>" in the provider "demo" block, or the {CLOUD_ENV_VAR} environment '
            "variable, to the folder that holds the demo cloud's objects."
        )
    return Path(value).expanduser().absolute(), None


def resolve_read_latency(configured: Any, environ: Mapping[str, str]) -> tuple[float, str | None]:
    """Seconds each resource read waits, from ``read_latency`` or $TFOPS_DEMO_READ_LATENCY
    (``"300ms"``, ``"1.5s"``, ``"0.3"``; unset: 0): (seconds, None) or (0, problem)."""
    if configured is Unknown:
        return 0.0, "The provider's read_latency must be known at plan time."
    given = configured if isinstance(configured, str) and configured.strip() else None
    value = (given or environ.get(LATENCY_ENV_VAR, "")).strip()
    if not value:
        return 0.0, None
    match = _LATENCY.fullmatch(value)
    if match is None:
        source = "read_latency" if given else LATENCY_ENV_VAR
        return 0.0, f"{source} {value!r} is not a duration: use milliseconds or seconds, e.g. 300ms or 1.5s."
    number, unit = match.groups()
    return float(number) * (0.001 if unit == "ms" else 1.0), None


class DemoProvider(Provider):
    def __init__(self) -> None:
        self._root: Path | None = None
        self.read_latency = 0.0

    def full_name(self) -> str:
        return FULL_NAME

    def get_model_prefix(self) -> str:
        return MODEL_PREFIX

    def get_provider_schema(self, diags: Diagnostics) -> Schema:
        return Schema(
            version=0,
            attributes=[
                Attribute(
                    "root",
                    String(),
                    optional=True,
                    description=f"Folder of the demo cloud. Defaults to ${CLOUD_ENV_VAR}.",
                ),
                Attribute(
                    "read_latency",
                    String(),
                    optional=True,
                    description=f"Simulated API latency of each read (300ms). Default ${LATENCY_ENV_VAR}.",
                ),
            ],
        )

    def validate_config(self, diags: Diagnostics, config: Config) -> None:
        root = config.get("root")
        if isinstance(root, str) and not root.strip():
            diags.add_error("Invalid provider root", "root must not be empty.", path=["root"])

    def configure_provider(self, diags: Diagnostics, config: Config) -> None:
        root, problem = resolve_root(config.get("root"), os.environ)
        if problem:
            diags.add_error("The demo provider has no cloud folder", problem)
            return
        if root is not None and root.exists() and not root.is_dir():
            diags.add_error("The demo provider's cloud folder is not a folder", f"{root} is a file.")
            return
        latency, problem = resolve_read_latency(config.get("read_latency"), os.environ)
        if problem:
            diags.add_error("Invalid read_latency", problem, path=["read_latency"])
            return
        self._root, self.read_latency = root, latency

    def cloud_root(self) -> Path:
        if self._root is None:
            raise RuntimeError("the demo provider was used before it was configured")
        return self._root

    def get_data_sources(self) -> list[type[DataSource]]:
        return [DemoWaitData]

    def get_resources(self) -> list[type[Resource]]:
        return [DemoObject, DemoWait]


def _cache_is_writable(home: Path) -> bool:
    cache = home / ".cache" / "tf-python-provider"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(cache, os.W_OK)


def _private_fallback_home() -> Path:
    # One per user, reused, so nothing piles up in /tmp; refused if someone else made it.
    home = Path(tempfile.gettempdir()) / f"tfops-demo-home-{os.getuid()}"
    try:
        home.mkdir(mode=0o700, exist_ok=True)
        info = home.lstat()
        if info.st_uid == os.getuid() and not home.is_symlink() and info.st_mode & 0o077 == 0:
            return home
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="tfops-demo-home-"))


def _ensure_writable_home() -> None:
    # tf's runner caches its TLS certificate under ~/.cache and dies if it cannot create it:
    # a read-only or unusable HOME must not stop the provider.
    try:
        if _cache_is_writable(Path.home()):
            return
    except RuntimeError:  # no HOME and no passwd entry
        pass
    os.environ["HOME"] = str(_private_fallback_home())


def _exit_when_orphaned(poll_seconds: float = 0.5) -> None:
    # Terraform normally stops us over gRPC. If it is killed outright we would wait forever
    # (SIGINT only cuts waits short), so leave once our parent is gone.
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def _on_sigterm(_signum: int, _frame: object) -> None:
    # Unwind (so tf's runner removes its socket folder) instead of dying on the spot.
    _interrupted.set()
    raise SystemExit(128 + signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGINT, lambda _signum, _frame: _interrupted.set())
    signal.signal(signal.SIGTERM, _on_sigterm)
    _ensure_writable_home()
    _exit_when_orphaned()
    runner.run_provider(DemoProvider(), argv)


if __name__ == "__main__":
    main()
