"""How the monitor proves itself to a plant's MQTT broker: TLS (CA, client certificate) and a user name and password.

The password never comes from the command line, where the process list shows it: it comes from the environment
(`SSAD_MQTT_PASSWORD`) or from a file (`--mqtt-password-file`).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ssad.core.errors import SsadError

__all__ = ["PASSWORD_ENV", "USERNAME_ENV", "MqttCredentials", "tls_context", "tls_refusal"]

USERNAME_ENV = "SSAD_MQTT_USERNAME"
PASSWORD_ENV = "SSAD_MQTT_PASSWORD"
#: a password file holds one line; anything longer is not a password file
PASSWORD_FILE_MAX_BYTES = 4096


@dataclass(frozen=True)
class MqttCredentials:
    """TLS files and login of one monitor; empty fields are not used (repr hides the password)."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        hidden = "***" if self.password is not None else None
        return (f"MqttCredentials(ca={self.ca!r}, cert={self.cert!r}, key={self.key!r}, "
                f"username={self.username!r}, password={hidden!r})")

    @property
    def wants_tls(self) -> bool:
        """True when a TLS file is given (they mean nothing on a plain mqtt:// connection)."""
        return any((self.ca, self.cert, self.key))

    @classmethod
    def from_options(cls, *, ca: str | None = None, cert: str | None = None, key: str | None = None,
                     username: str | None = None, password_file: str | None = None,
                     environ: Mapping[str, str] | None = None) -> MqttCredentials:
        """Settings from the command line's files and name, the rest from the environment (`SSAD_MQTT_*`)."""
        environ = os.environ if environ is None else environ
        if key and not cert:
            raise SsadError("--mqtt-key needs --mqtt-cert (the client certificate it belongs to)")
        for option, path in (("--mqtt-ca", ca), ("--mqtt-cert", cert), ("--mqtt-key", key),
                             ("--mqtt-password-file", password_file)):
            if path is not None and not Path(path).is_file():
                raise SsadError(f"{option} {path}: no such file")
        password = _read_password(Path(password_file)) if password_file else environ.get(PASSWORD_ENV) or None
        username = username or environ.get(USERNAME_ENV) or None
        if password is not None and username is None:
            raise SsadError(f"an MQTT password needs a user name: set {USERNAME_ENV} or give --mqtt-username")
        return cls(ca, cert, key, username, password)


def _read_password(path: Path) -> str:
    """The first line of a password file, without its line end."""
    try:
        if path.stat().st_size > PASSWORD_FILE_MAX_BYTES:
            raise SsadError(f"--mqtt-password-file {path}: over {PASSWORD_FILE_MAX_BYTES} bytes, not a password file")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SsadError(f"--mqtt-password-file {path}: cannot read it ({error})") from None
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise SsadError(f"--mqtt-password-file {path}: empty (the password is its first line)")
    return lines[0]


def tls_context(credentials: MqttCredentials) -> ssl.SSLContext:
    """A client TLS context that checks the broker's certificate and host name (against --mqtt-ca, else the
    system's CAs) and presents the client certificate when one is given."""
    try:
        context = ssl.create_default_context(cafile=credentials.ca)
    except (OSError, ssl.SSLError) as error:
        raise SsadError(f"--mqtt-ca {credentials.ca}: not a CA certificate file ({_reason(error)})") from None
    if credentials.cert:
        try:
            context.load_cert_chain(credentials.cert, credentials.key)
        except (OSError, ssl.SSLError) as error:
            raise SsadError(f"--mqtt-cert {credentials.cert}"
                            f"{f' / --mqtt-key {credentials.key}' if credentials.key else ''}: "
                            f"not a client certificate and its key ({_reason(error)})") from None
    return context


def _reason(error: BaseException) -> str:
    """OpenSSL's short reason, else the error's text."""
    return str(getattr(error, "verify_message", None) or getattr(error, "reason", None) or error)


def tls_refusal(where: str, error: ssl.SSLError) -> SsadError:
    """The one-line error of a TLS handshake that failed: the certificate refused, or no TLS at that port."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return SsadError(f"{where}: the broker's certificate was refused ({_reason(error).rstrip('.')}); check "
                         "--mqtt-ca and that the address names the host its certificate is for")
    reason = _reason(error)
    if "WRONG_VERSION_NUMBER" in reason.upper() or "RECORD_LAYER" in reason.upper():
        return SsadError(f"{where}: no TLS at this port ({reason}); for a plain port use mqtt://")
    return SsadError(f"{where}: the TLS handshake failed ({reason}); check --mqtt-ca, --mqtt-cert and --mqtt-key")
