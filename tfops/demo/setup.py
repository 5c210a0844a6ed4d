"""Lay out a complete, offline GitOps setup for `tfops demo` in one folder.

DIR/
  .tfops-demo        marker: this folder was made by `tfops demo` (resume, never clobber)
  remote.git/        the bare "origin" tfops pulls from
  work/              a clone to edit, commit and push from (the engineer's side)
  cloud/             the demo provider's "cloud": one JSON file per object
  mirror/            provider mirror (demo provider, null provider when installed)
  plugin-cache/      Terraform's plugin cache
  terraformrc        Terraform CLI config pointing at the mirror
  tfops.yaml         the daemon's configuration (short intervals)
  data/              tfops' data dir: SQLite store, clone, run logs, per-stack state
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import git
import yaml

import tfops
from tfops.demo.mirror import build_mirror, terraform_binary, write_cli_config
from tfops.errors import ConfigError

MARKER = ".tfops-demo"
STACKS = ("web", "api", "jobs")


@dataclass(frozen=True)
class DemoLayout:
    root: Path

    @property
    def remote(self) -> Path:
        return self.root / "remote.git"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def cloud(self) -> Path:
        return self.root / "cloud"

    @property
    def config(self) -> Path:
        return self.root / "tfops.yaml"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "tfops.log"


def modules_source() -> Path:
    """The `modules/` folder of the tfops source tree the demo seeds its repository from."""
    candidate = Path(tfops.__file__).resolve().parent.parent / "modules"
    if (candidate / "stacks").is_dir():
        return candidate
    raise ConfigError(
        f"the example stacks (modules/) were not found next to the tfops package ({candidate})",
        hint="run the demo from a source checkout: pip install -e '.[demo]'",
    )


def prepare(root: Path) -> tuple[DemoLayout, bool]:
    """Create the demo in `root`, or find the one made there before. Returns (layout, resumed)."""
    layout = DemoLayout(root.resolve())
    resumed = _check_folder(layout)
    layout.root.mkdir(parents=True, exist_ok=True)
    if not resumed:
        _seed_repository(layout)
        layout.cloud.mkdir(exist_ok=True)
    mirror = build_mirror(layout.root / "mirror")
    cli_config = write_cli_config(
        layout.root / "terraformrc", mirror, plugin_cache_dir=build_mirror(layout.root / "plugin-cache")
    )
    _write_config(layout, cli_config)
    (layout.root / MARKER).write_text("made by `tfops demo`; safe to delete with the folder\n")
    return layout, resumed


def _check_folder(layout: DemoLayout) -> bool:
    if not layout.root.exists():
        return False
    if not layout.root.is_dir():
        raise ConfigError(
            f"{layout.root} exists and is not a folder", hint="pass another DIR to `tfops demo`"
        )
    if (layout.root / MARKER).exists():
        return True
    if any(layout.root.iterdir()):
        raise ConfigError(
            f"{layout.root} already holds files that `tfops demo` did not create; nothing was changed",
            hint="pass an empty or new folder: tfops demo ./another-dir",
        )
    return False


def _seed_repository(layout: DemoLayout) -> None:
    git.Repo.init(layout.remote, bare=True, initial_branch="main")
    work = git.Repo.init(layout.work, initial_branch="main")
    with work.config_writer() as config:
        # Commits in the demo must work on a machine without a global git identity.
        config.set_value("user", "name", "Demo Engineer")
        config.set_value("user", "email", "engineer@demo.invalid")
    source = modules_source()
    for entry in ("service", "stacks"):
        shutil.copytree(source / entry, layout.work / entry, ignore=shutil.ignore_patterns(".terraform*"))
    work.git.add("-A")
    work.index.commit("Example stacks: web, api, jobs and the shared service module")
    work.create_remote("origin", str(layout.remote))
    work.git.push("--set-upstream", "origin", "main")


def _write_config(layout: DemoLayout, cli_config: Path) -> None:
    env = {"TFOPS_DEMO_CLOUD": str(layout.cloud)}
    config = {
        "data_dir": str(layout.data),
        "repo": {"url": str(layout.remote), "branch": "main", "poll_interval": "3s"},
        "terraform": {
            "binary": str(terraform_binary()),
            "cli_config": str(cli_config),
            "plugin_cache_dir": str(layout.root / "plugin-cache"),
            "max_parallel": 2,
            "timeout": "5m",
            "stop_grace": "30s",
        },
        # The status page, on loopback only (no login needed there): `tfops demo` prints its URL.
        "http": {"listen": f"127.0.0.1:{_free_loopback_port()}"},
        "defaults": {"on_merge": "apply", "on_drift": "notify", "drift_interval": "15s"},
        "stacks": [
            {"name": "web", "path": "stacks/web", "on_drift": "remediate", "env": env},
            {"discover": "stacks/*", "env": env},
        ],
    }
    header = "# Written by `tfops demo`. Every option is explained in config/tfops.example.yaml.\n"
    layout.config.write_text(header + yaml.safe_dump(config, sort_keys=False))


def _free_loopback_port() -> int:
    """A port free on 127.0.0.1 now, for the demo's status page (picked again at each start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
