"""A local mosquitto on 127.0.0.1 for tests and benchmarks: start, stop (as a restart would) and start again; the
certificates and password file of one that wants TLS and a login."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from ssad.core.errors import SsadError

__all__ = ["LocalBroker", "free_port", "make_certificates", "make_password_file", "mosquitto_path", "tls_config"]

#: where Debian and source installs put the broker when /usr/sbin is not on PATH
BROKER_PLACES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def mosquitto_path() -> str:
    """The mosquitto executable; SsadError saying how to install it when it is missing."""
    found = shutil.which("mosquitto") or next((p for p in BROKER_PLACES if os.access(p, os.X_OK)), None)
    if found is None:
        raise SsadError("mosquitto is not installed: `make setup` installs it as root with apt "
                        "(else: apt-get install mosquitto / brew install mosquitto)")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalBroker:
    """mosquitto listening on 127.0.0.1 only, its config, log and (optional) database in `folder`.

    Args:
        persistence: keep sessions and queued messages across a restart (written on a clean stop).
        anonymous: let clients in without a user name (else: a `password_file` line in `extra`).
        extra: more mosquitto.conf lines, of the listener (TLS files, password file, ACL file, ...).
    """

    def __init__(self, folder: str | Path, *, port: int | None = None, persistence: bool = False,
                 anonymous: bool = True, extra: str = "") -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.config = self.folder / "mosquitto.conf"
        # started as root, mosquitto would switch to the user "mosquitto", who cannot read or write our folder
        lines = [f"user {getpass.getuser()}", f"listener {self.port} 127.0.0.1",
                 f"allow_anonymous {str(anonymous).lower()}"]
        if persistence:
            lines += ["persistence true", f"persistence_location {self.folder}/"]
        self.config.write_text("\n".join(lines) + "\n" + extra)
        self.log = self.folder / "broker.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> float:
        """Start and wait until it accepts connections; return that moment (time.time())."""
        with self.log.open("a") as log:
            self.process = subprocess.Popen([mosquitto_path(), "-c", str(self.config)], stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return time.time()
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SsadError(f"mosquitto did not start on port {self.port}: {self.log.read_text()[-500:]}") \
                        from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop it as a service manager would (SIGTERM: it saves its database), killing it if it hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)


def _ec_key(name: str) -> list[str]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key"]


def make_certificates(folder: str | Path) -> Path:
    """Test certificates made with openssl in `folder`: CA `ca`, server `server` for 127.0.0.1 only (so `localhost`
    does not match it), client `client` signed by the CA, and `other-ca`, which signed nothing (NAME.pem, NAME.key)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other-ca"):
        _openssl(folder, "req", "-x509", *_ec_key(ca), "-days", "2", "-subj", f"/CN={ca}", "-out", f"{ca}.pem")
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, subject, extra in (("server", "/CN=127.0.0.1", ["-extfile", "server.ext"]), ("client", "/CN=monitor", [])):
        _openssl(folder, "req", *_ec_key(name), "-subj", subject, "-out", f"{name}.csr")
        _openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-out", f"{name}.pem", *extra)
    return folder


def make_password_file(path: str | Path, users: dict[str, str]) -> Path:
    """A mosquitto password file of `users` (name -> password), hashed by mosquitto_passwd."""
    path = Path(path)
    path.write_text("")
    for user, password in users.items():
        subprocess.run(["mosquitto_passwd", "-b", str(path), user, password], check=True, capture_output=True)
    return path


def tls_config(certificates: Path) -> str:
    """mosquitto.conf lines of a TLS listener with `make_certificates`'s server certificate."""
    return f"cafile {certificates}/ca.pem\ncertfile {certificates}/server.pem\nkeyfile {certificates}/server.key\n"
