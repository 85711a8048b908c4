"""MQTT as a plant runs it, with a real mosquitto: TLS with certificates made here, a password file, an ACL,
a client certificate; every refusal one line naming the broker and the reason."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from conftest import mosquitto_path, tone
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from ssad.core.errors import SsadError
from ssad.field.broker import LocalBroker, make_certificates, make_password_file, tls_config
from ssad.field.connection import MqttCredentials
from ssad.field.mqtt import MqttPublisher, connect, parse_mqtt_url
from ssad.field.payloads import pcm_bytes_to_float
from ssad.field.sources import MqttSource

ACL = "user monitor\ntopic read plant/#\ntopic readwrite ssad/#\nuser mic\ntopic write plant/#\n"
USERS = {"monitor": "monitor-secret", "mic": "mic-secret"}


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 only (so `localhost` does not match), a client certificate,
    a second CA that signed nothing the broker has, a mosquitto password file and an ACL."""
    mosquitto_path()
    folder = make_certificates(tmp_path_factory.mktemp("tls"))
    make_password_file(folder / "passwords", USERS)
    (folder / "acl").write_text(ACL)
    return folder


@pytest.fixture
def secure_broker(tls_files: Path, tmp_path: Path) -> Iterator[int]:
    """mosquitto with TLS, a password file and an ACL, no anonymous clients; its port."""
    extra = tls_config(tls_files) + f"password_file {tls_files}/passwords\nacl_file {tls_files}/acl\n"
    with LocalBroker(tmp_path / "secure", anonymous=False, extra=extra) as broker:
        yield broker.port


@pytest.fixture
def cert_broker(tls_files: Path, tmp_path: Path) -> Iterator[int]:
    """mosquitto with TLS that wants a client certificate signed by its CA; its port."""
    with LocalBroker(tmp_path / "certs", extra=tls_config(tls_files) + "require_certificate true\n") as broker:
        yield broker.port


def _login(files: Path, user: str | None = "monitor", password: str | None = None, **tls: str) -> MqttCredentials:
    environ = {"SSAD_MQTT_USERNAME": user or "", "SSAD_MQTT_PASSWORD": password or USERS.get(user or "", "")}
    return MqttCredentials.from_options(ca=str(files / "ca.pem"), environ=environ, **tls)


def _mic(port: int, files: Path) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(files / "ca.pem"))
    client.username_pw_set("mic", USERS["mic"])
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def test_mqtts_source_with_a_password_takes_what_an_allowed_publisher_sends(secure_broker: int, tls_files: Path) -> None:
    source = MqttSource(f"mqtts://127.0.0.1:{secure_broker}/plant/fan00", machine="fan/id_00",
                        credentials=_login(tls_files))
    mic = _mic(secure_broker, tls_files)
    try:
        audio = tone(0.25).tobytes()
        mic.publish("plant/fan00", audio, qos=1).wait_for_publish(10)
        deadline = time.monotonic() + 10
        chunk = next(c for c in source if c is not None or time.monotonic() > deadline)
        assert chunk is not None and chunk.machine == "fan/id_00"
        np.testing.assert_array_equal(chunk.samples, pcm_bytes_to_float(audio))
        alerts = MqttPublisher(f"mqtts://127.0.0.1:{secure_broker}/ssad/alerts", _login(tls_files))
        alerts.publish('{"alert": true}')
        alerts.close()
        alerts.check()  # allowed: no refusal
    finally:
        source.close()
        mic.loop_stop()


@pytest.mark.parametrize("case, expected", [
    ("wrong password", r"refused the connection \((Not authorized|Bad user name or password)\); check the user name"),
    ("no login", r"refused the connection \(Not authorized\); check the credentials"),
    ("host mismatch", r"certificate was refused \(.*mismatch.*\)"),
    ("another CA", r"certificate was refused \(.*\)"),
    ("plain mqtt:// to TLS", r"closed the connection without accepting it; if this port speaks TLS, use mqtts://"),
])
def test_each_refusal_is_one_line_naming_the_broker(case: str, expected: str, secure_broker: int,
                                                    tls_files: Path) -> None:
    scheme, host, topic, login = "mqtts", "127.0.0.1", "plant/fan00", _login(tls_files)
    if case == "wrong password":
        login = _login(tls_files, password="wrong")
    elif case == "no login":
        login = MqttCredentials(ca=str(tls_files / "ca.pem"))
    elif case == "host mismatch":
        host = "localhost"
    elif case == "another CA":
        login = MqttCredentials(ca=str(tls_files / "other-ca.pem"))
    elif case == "plain mqtt:// to TLS":
        scheme, login = "mqtt", MqttCredentials(username="monitor", password=USERS["monitor"])
    with pytest.raises(SsadError) as refused:
        MqttSource(f"{scheme}://{host}:{secure_broker}/{topic}", machine="fan/id_00", credentials=login)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{scheme}://{host}:{secure_broker}: ")
    assert re.search(expected, message), message


def test_a_refused_subscription_ends_in_one_line(secure_broker: int, tls_files: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # mosquitto (2.0) grants any subscription and delivers only what the ACL lets a user read; other brokers
    # (and MQTT 5 allows it) answer SUBACK "Not authorized": that answer is played here
    answer = MqttSource._on_subscribe

    def not_authorized(self: MqttSource, client: object, userdata: object, mid: int, codes: list,
                       properties: object) -> None:
        answer(self, client, userdata, mid, [ReasonCode(PacketTypes.SUBACK, "Not authorized")], properties)

    monkeypatch.setattr(MqttSource, "_on_subscribe", not_authorized)
    with pytest.raises(SsadError) as refused:
        MqttSource(f"mqtts://127.0.0.1:{secure_broker}/secret/x", machine="fan/id_00", credentials=_login(tls_files))
    assert str(refused.value) == (f"mqtts://127.0.0.1:{secure_broker}: the MQTT broker refused the subscription to "
                                  "secret/x (Not authorized); does this user have the right to read it?")


def test_alerts_the_broker_refuses_end_in_one_line(secure_broker: int, tls_files: Path) -> None:
    alerts = MqttPublisher(f"mqtts://127.0.0.1:{secure_broker}/plant/alerts", _login(tls_files))  # read-only there
    alerts.publish('{"alert": true}')
    alerts.close()
    with pytest.raises(SsadError, match=r"refused the alerts published to plant/alerts \(Not authorized\)"):
        alerts.check()


def test_tls_to_a_plain_port_says_so(broker: int) -> None:
    with pytest.raises(SsadError, match=rf"^mqtts://127.0.0.1:{broker}: .*no TLS at this port.*use mqtt://\)?$"):
        connect(parse_mqtt_url(f"mqtts://127.0.0.1:{broker}/x"), credentials=MqttCredentials())


def test_a_broker_wanting_a_client_certificate(cert_broker: int, tls_files: Path) -> None:
    address = parse_mqtt_url(f"mqtts://127.0.0.1:{cert_broker}/plant/x")
    with pytest.raises(SsadError, match="does it want a client certificate"):
        connect(address, credentials=MqttCredentials(ca=str(tls_files / "ca.pem")), timeout=5)
    client = connect(address, credentials=MqttCredentials(ca=str(tls_files / "ca.pem"),
                                                          cert=str(tls_files / "client.pem"),
                                                          key=str(tls_files / "client.key")))
    client.disconnect()
    client.loop_stop()


def test_credentials_never_come_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-the-file\nignored\n")
    login = MqttCredentials.from_options(password_file=str(secret), environ={"SSAD_MQTT_USERNAME": "monitor",
                                                                             "SSAD_MQTT_PASSWORD": "from-env"})
    assert (login.username, login.password) == ("monitor", "from-the-file") and "from-the-file" not in repr(login)
    with pytest.raises(SsadError, match="needs a user name"):
        MqttCredentials.from_options(environ={"SSAD_MQTT_PASSWORD": "x"})
    with pytest.raises(SsadError, match="need an mqtts:// address"):
        connect(parse_mqtt_url("mqtt://127.0.0.1:1/x"), credentials=MqttCredentials(ca=str(secret)))
    from ssad.cli.main import main

    with pytest.raises(SystemExit):
        main(["monitor", "--help"])
    help_text = capsys.readouterr().out
    assert "--mqtt-password-file" in help_text and not re.search(r"--[a-z-]*password([ =,]|$)", help_text, re.M)


def test_the_cli_refuses_a_wrong_password_in_one_line(secure_broker: int, tls_files: Path, field_detector: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    from ssad.cli.main import main

    monkeypatch.setenv("SSAD_MQTT_USERNAME", "monitor")
    monkeypatch.setenv("SSAD_MQTT_PASSWORD", "wrong")
    code = main(["monitor", "--detector", str(field_detector), "--machine", "fan/id_00", "--source",
                 f"mqtts://127.0.0.1:{secure_broker}/plant/fan00", "--mqtt-ca", str(tls_files / "ca.pem")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"ssad: error: mqtts://127.0.0.1:{secure_broker}: the MQTT "
                                                   "broker refused the connection (")


def test_a_port_that_never_answers_ends_after_the_connect_timeout() -> None:
    # a TLS listener that waits for a hello which plain MQTT never sends: the connection must not hang
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(SsadError, match=rf"^mqtt://127.0.0.1:{port}: no answer from the MQTT broker within 1 s; "
                                            "if this port speaks TLS, use mqtts://"):
            connect(parse_mqtt_url(f"mqtt://127.0.0.1:{port}/x"), timeout=1)
        assert time.monotonic() - started < 5
