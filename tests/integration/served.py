"""A real `tfops serve` with its HTTP face on a free loopback port, for the status page's tests and
the docs' screenshots (scripts/screenshots.py).

The daemon is a child process in its own session (harness.start_daemon); `stop` ends it with
SIGTERM, as systemd does, and kills what is left of its process group if it does not stop in time.
Its API has a read token (the status page's login) and a write token (tests queue drift checks
through `POST /api/stacks/NAME/drift`, the way a person's tooling would).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from harness import processes_in_group, start_daemon, wait_for

READ_TOKEN = "ui-read-token-5d0c2b7e91"
WRITE_TOKEN = "ui-write-token-0a7f33c2d4"
WRITE_TOKEN_ENV = "TFOPS_TEST_UI_WRITE_TOKEN"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def add_http_and_tokens(config: Path, port: int) -> None:
    """Turn on the HTTP server on 127.0.0.1:`port` and the API's read and write tokens."""
    data = yaml.safe_load(config.read_text())
    token_file = config.parent / "read-token"
    token_file.write_text(READ_TOKEN + "\n")
    data["http"] = {"listen": f"127.0.0.1:{port}"}
    data["api"] = {
        "tokens": [
            {"name": "oncall", "token_file": str(token_file), "scope": "read"},
            {"name": "tooling", "token_env": WRITE_TOKEN_ENV, "scope": "write"},
        ]
    }
    config.write_text(yaml.safe_dump(data, sort_keys=False))


@dataclass
class ServedDaemon:
    config: Path
    env: dict[str, str]
    port: int
    log: Path
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def process_env(self) -> dict[str, str]:
        """The environment of the daemon and of `tfops` commands run beside it (same config)."""
        return {**self.env, WRITE_TOKEN_ENV: WRITE_TOKEN}

    def start(self, *, timeout: float = 60) -> ServedDaemon:
        self.process = start_daemon(self.config, env=self.process_env, log=self.log)
        wait_for(self._alive, timeout=timeout, what=f"the daemon's HTTP server (log: {self.log})")
        return self

    def _alive(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"tfops serve exited {self.process.returncode}:\n{self.log.read_text()}")
        try:
            return httpx.get(f"{self.base}/healthz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def api(self, path: str, *, token: str = READ_TOKEN) -> Any:
        answer = httpx.get(f"{self.base}{path}", headers=bearer(token), timeout=10)
        answer.raise_for_status()
        return answer.json()

    def runs(self, stack: str | None = None) -> list[dict[str, Any]]:
        query = f"?stack={stack}&limit=100" if stack else "?limit=100"
        return self.api(f"/api/runs{query}")

    def queue_drift_check(self, stack: str) -> int:
        answer = httpx.post(f"{self.base}/api/stacks/{stack}/drift", headers=bearer(WRITE_TOKEN), timeout=10)
        assert answer.status_code == 202, answer.text
        return int(answer.json()["run_id"])

    def wait_for_run(self, run_id: int, *, timeout: float = 120) -> dict[str, Any]:
        """The run once it has ended (terminal or waiting for a person)."""
        waiting = {"awaiting_approval", "awaiting_window"}

        def ended() -> dict[str, Any] | None:
            run = self.api(f"/api/runs/{run_id}")
            return run if run["finished_at"] or run["status"] in waiting else None

        return wait_for(ended, timeout=timeout, what=f"run {run_id} to end")

    def stop(self, *, grace: float = 60) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(grace)
        for pid in processes_in_group(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()


def bearer(token: str) -> Mapping[str, str]:
    return {"Authorization": f"Bearer {token}"}
