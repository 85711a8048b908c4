"""A throwaway PostgreSQL cluster on 127.0.0.1 for tests and benchmarks: initdb in a fresh folder, start, stop.

PostgreSQL refuses to run as root: started by root, the cluster belongs to an unprivileged user (`postgres`, as
Debian's package makes, else `nobody`) and its commands run as that user (`runuser`). Settings favour speed over
durability (fsync off): it holds nothing worth keeping.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from ssad.core.errors import SsadError

__all__ = ["LocalPostgres", "postgres_bin"]

#: where Debian's postgresql packages put initdb, pg_ctl and postgres (newest version first)
BIN_GLOB = "/usr/lib/postgresql/*/bin"


def postgres_bin() -> Path:
    """The folder of initdb and pg_ctl; SsadError saying how to install them when they are missing."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    folders = sorted(glob.glob(BIN_GLOB), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    if not folders:
        raise SsadError("PostgreSQL is not installed: `make setup` installs it as root with apt "
                        "(else: apt-get install postgresql / brew install postgresql)")
    return Path(folders[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unprivileged_user() -> str | None:
    """Who runs the cluster when we are root (None: we are not root, we run it)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise SsadError("running as root, and no unprivileged user (postgres, nobody) to run PostgreSQL as")


class LocalPostgres:
    """A PostgreSQL cluster listening on 127.0.0.1 only, in a fresh temporary folder removed on `stop`."""

    def __init__(self, *, port: int | None = None) -> None:
        self.bin = postgres_bin()
        self.port = port or _free_port()
        self.user = _unprivileged_user()
        self.folder = Path(tempfile.mkdtemp(prefix="ssad-postgres-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.started = False

    @property
    def url(self) -> str:
        """The `--history` URL of its database `postgres`."""
        return f"postgresql://{self.user or pwd.getpwuid(os.getuid()).pw_name}@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        result = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=timeout, cwd=self.folder)
        if result.returncode:
            raise SsadError(f"{Path(command[0]).name} failed: {(result.stderr or result.stdout).strip()[-500:]}")
        return result

    def start(self) -> LocalPostgres:
        """initdb, then start the server and wait until it accepts connections."""
        if self.user:
            shutil.chown(self.folder, self.user)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-E", "UTF8", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.folder} " \
                  "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "-t", "60", "start")
        self.started = True  # pg_ctl -w returned once the server accepts connections
        return self

    def stop(self) -> None:
        """Stop the server (fast) and remove its folder."""
        if self.started:
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
            except SsadError:
                pass
            self.started = False
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
