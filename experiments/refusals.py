"""The one-line messages `ssad monitor` ends with when a broker refuses it: a real mosquitto with TLS (certificates
made here), a password file and an ACL, and each wrong way in, run through the CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ssad.core.errors import SsadError
from ssad.field.broker import LocalBroker, make_certificates, make_password_file, tls_config

__all__ = ["broker_refusals"]

ACL = "user monitor\ntopic read plant/#\ntopic readwrite ssad/#\n"


def _stderr_line(args: list[str], env: dict[str, str]) -> tuple[str, str]:
    """The last line `ssad monitor ARGS` writes on stderr, and how it ended (exit code, whether with a traceback)."""
    run = subprocess.run([sys.executable, "-m", "ssad.cli", "monitor", *args], env=env, capture_output=True,
                         text=True, timeout=120)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "", f"exit {run.returncode}" + (", traceback" if "Traceback" in run.stderr else "")


def broker_refusals() -> list[tuple[str, str, str]]:
    """(case, message, ending) of each refusal: wrong password, no login, another CA, host mismatch, plain to TLS,
    TLS to plain, no client certificate, alerts where the user may not write."""
    from fuzz_targets import _detector_setup

    from ssad.field.connection import MqttCredentials
    from ssad.field.mqtt import MqttPublisher

    folder = Path(tempfile.mkdtemp(prefix="ssad-refusals-"))
    detector = str(_detector_setup(folder).folder)
    certs = make_certificates(folder / "certs")
    make_password_file(certs / "passwords", {"monitor": "monitor-secret"})
    (certs / "acl").write_text(ACL)
    secure = LocalBroker(folder / "secure", anonymous=False,
                         extra=tls_config(certs) + f"password_file {certs}/passwords\nacl_file {certs}/acl\n")
    plain = LocalBroker(folder / "plain")
    wants_cert = LocalBroker(folder / "cert", extra=tls_config(certs) + "require_certificate true\n")
    env = {**os.environ, "SSAD_MQTT_USERNAME": "monitor", "SSAD_MQTT_PASSWORD": "monitor-secret"}
    ca = ["--mqtt-ca", str(certs / "ca.pem")]
    found = []
    with secure, plain, wants_cert:
        tls = f"mqtts://127.0.0.1:{secure.port}/plant/fan00"
        cases = [("wrong password", [*ca, "--source", tls], {**env, "SSAD_MQTT_PASSWORD": "wrong"}),
                 ("no user name or password", [*ca, "--source", tls],
                  {k: v for k, v in env.items() if not k.startswith("SSAD_MQTT")}),
                 ("a CA that did not sign the broker's certificate",
                  ["--mqtt-ca", str(certs / "other-ca.pem"), "--source", tls], env),
                 ("the certificate does not match the host (localhost for 127.0.0.1)",
                  [*ca, "--source", tls.replace("127.0.0.1", "localhost")], env),
                 ("plain mqtt:// against the TLS port", ["--source", tls.replace("mqtts", "mqtt")], env),
                 ("mqtts:// against a plain port", [*ca, "--source", f"mqtts://127.0.0.1:{plain.port}/plant/fan00"], env),
                 ("no client certificate where the broker wants one",
                  [*ca, "--source", f"mqtts://127.0.0.1:{wants_cert.port}/plant/fan00"], env)]
        for case, args, environ in cases:
            found.append((case, *_stderr_line(["--detector", detector, "--max-windows", "1", *args], environ)))
        # an alert is refused when one is published: the publisher the monitor uses, with one alert
        publisher = MqttPublisher(f"mqtts://127.0.0.1:{secure.port}/plant/alerts",
                                  MqttCredentials(ca=str(certs / "ca.pem"), username="monitor",
                                                  password="monitor-secret"))
        publisher.publish("{}")
        publisher.close()
        try:
            publisher.check()
            found.append(("alerts on a topic the user may not write (--alerts)", "accepted", ""))
        except SsadError as error:
            found.append(("alerts on a topic the user may not write (--alerts)", f"ssad: error: {error}",
                          "SsadError: exit 2 in the CLI"))
    return found
