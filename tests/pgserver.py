"""A throwaway PostgreSQL server for the store tests: `initdb` + `pg_ctl` on a Unix socket.

The PostgreSQL variants of the store tests never skip in CI: `.ci/run` installs Debian's
`postgresql` package when it is missing, and this module starts a private cluster in a temp
folder (no TCP port, trust auth on the socket only). Outside CI, a machine without the server
binaries skips those variants with the reason; `TFOPS_TEST_POSTGRES_URL` points them at an
existing database instead (one the tests may wipe).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The server runs as this account when the tests run as root (initdb refuses root).
SERVER_ACCOUNT = "postgres"
START_TIMEOUT = 60.0


class PostgresUnavailable(RuntimeError):
    """No server binaries on this machine, or the cluster would not start."""


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    run_as: str | None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://tfops@/tfops_test?host={self.socket_dir}"

    def start(self) -> None:
        self.socket_dir.mkdir(mode=0o700)
        if self.run_as:
            shutil.chown(self.root, user=self.run_as)
            shutil.chown(self.socket_dir, user=self.run_as)
        self._run("initdb", "-D", str(self.data), "-U", "tfops", "--auth=trust", "--no-sync", "-E", "UTF8")
        self.resume()
        self._run("createdb", "-h", str(self.socket_dir), "-U", "tfops", "tfops_test")

    def halt(self) -> None:
        """Stop the server as a crash would (its data stays): what a database outage looks like."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def resume(self) -> None:
        """Start the server on its data (after `halt`, or the first time)."""
        options = f"-k {self.socket_dir} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "-l",
            str(self.root / "server.log"),
            "start",
        )

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        argv = [str(self.bindir / tool), *args]
        if self.run_as:
            argv = ["runuser", "-u", self.run_as, "--", *argv]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=START_TIMEOUT)
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresUnavailable(
                f"{' '.join(argv)} exited {result.returncode}: {result.stderr[-2000:]}{tail}"
            )


def find_bindir() -> Path | None:
    """`pg_config --bindir`, else Debian's versioned folders, newest first."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    for folder in reversed(folders):
        if (Path(folder) / "initdb").exists():
            return Path(folder)
    return None


def start_server() -> PostgresServer:
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable("no PostgreSQL server binaries (initdb) on this machine")
    run_as = SERVER_ACCOUNT if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="tfops-pg-"))
    server = PostgresServer(bindir=bindir, root=root, run_as=run_as)
    try:
        server.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


def start_or_skip() -> PostgresServer:
    """A server for a test fixture: without server binaries the test skips with the reason, except
    in CI (CI set), where that is a failure: CI never skips the PostgreSQL tests."""
    import pytest

    try:
        return start_server()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {exc}")
        pytest.skip(f"no PostgreSQL for these tests: {exc}")
