"""MQTT for the live monitor: `mqtt[s]://HOST:PORT/TOPIC` addresses, topic-to-machine patterns, a paho v5 client."""

from __future__ import annotations

import logging
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ssad.core.errors import SsadError
from ssad.field.connection import MqttCredentials, tls_context, tls_refusal

__all__ = ["MqttAddress", "MqttPublisher", "close", "connect", "is_mqtt_url", "machine_from_topic", "parse_mqtt_url"]

log = logging.getLogger("ssad")

DEFAULT_PORT, DEFAULT_TLS_PORT = 1883, 8883
SCHEMES = ("mqtt://", "mqtts://")
CONNECT_TIMEOUT_S = 10.0
#: reconnection backoff after the broker went away: first wait, doubling up to the last (seconds)
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.25, 2.0


@dataclass(frozen=True)
class MqttAddress:
    """Where to connect and which topic (filter) to use."""

    host: str
    port: int
    topic: str
    tls: bool = False

    @property
    def where(self) -> str:
        """The broker as messages name it: `mqtt[s]://HOST:PORT`."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def is_mqtt_url(text: str) -> bool:
    """True for an `mqtt://` or `mqtts://` address."""
    return text.startswith(SCHEMES)


def parse_mqtt_url(url: str) -> MqttAddress:
    """`mqtt[s]://HOST[:PORT]/TOPIC` -> address (mqtts: TLS, port 8883 by default); the topic may hold `+`, `#`."""
    if not is_mqtt_url(url):
        raise SsadError(f"{url!r}: an MQTT address looks like mqtt://HOST:PORT/TOPIC (mqtts:// for TLS)")
    tls = url.startswith("mqtts://")
    netloc, _, topic = url.partition("://")[2].partition("/")
    host, _, port = netloc.rpartition(":") if ":" in netloc else (netloc, "", "")
    if not host:
        raise SsadError(f"{url!r}: no host (expected mqtt://HOST:PORT/TOPIC)")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise SsadError(f"{url!r}: port {port!r} is not a port number")
    return MqttAddress(host, int(port) if port else DEFAULT_TLS_PORT if tls else DEFAULT_PORT, topic, tls)


def machine_from_topic(pattern: str, topic: str) -> str | None:
    """The machine a topic names under `pattern`: its parts at the `+`/`#` wildcards joined by '/'; None if no match."""
    want, have = pattern.split("/"), topic.split("/")
    parts = []
    for i, level in enumerate(want):
        if level == "#":
            rest = have[i:]
            return "/".join(parts + rest) if rest or parts else None
        if i >= len(have):
            return None
        if level == "+":
            parts.append(have[i])
        elif level != have[i]:
            return None
    if len(have) != len(want):
        return None
    return "/".join(parts) if parts else topic


def connect(address: MqttAddress, *, name: str = "ssad-monitor", client_id: str | None = None,
            session_expiry: int = 0, manual_ack: bool = False, will: tuple[str, str] | None = None,
            on_message: Callable[..., None] | None = None, credentials: MqttCredentials | None = None,
            max_packet: int | None = None, timeout: float = CONNECT_TIMEOUT_S) -> mqtt.Client:
    """A connected MQTT v5 client with its network loop running in a background thread.

    It reconnects by itself when the broker goes away (backoff RECONNECT_MIN_S doubling to RECONNECT_MAX_S).
    With a `client_id` and `session_expiry` > 0 s the broker keeps the session (subscriptions, QoS 1 messages
    not yet acknowledged or not yet sent) that long after a disconnection, and a client of the same id resumes it.
    `will` = (topic, text) the broker publishes if the connection dies without a clean disconnect.
    `on_message` is in place before the connection: a resumed session's messages come right after it.
    `credentials`: TLS files (used on an mqtts:// address) and the user name and password to log in with.
    `max_packet`: the largest packet (bytes) the broker may send this client; larger messages it does not send.
    Raises SsadError, one line naming the broker and the reason, when it cannot be reached, refuses the
    connection, or does not answer within `timeout` seconds.
    """
    credentials = credentials or MqttCredentials()
    if credentials.wants_tls and not address.tls:
        raise SsadError(f"{address.where}: --mqtt-ca, --mqtt-cert and --mqtt-key need an mqtts:// address")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"{name}-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5, manual_ack=manual_ack)
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    if address.tls:
        client.tls_set_context(tls_context(credentials))
    if credentials.username is not None:
        client.username_pw_set(credentials.username, credentials.password)
    if will is not None:
        client.will_set(will[0], will[1].encode(), qos=1)
    answered = threading.Event()
    outcome: dict[str, object] = {}

    def on_connect(client: mqtt.Client, userdata: object, flags: object, reason_code: object, properties: object) -> None:
        outcome.setdefault("reason", reason_code)
        answered.set()

    def on_disconnect(client: mqtt.Client, userdata: object, flags: object, reason_code: object,
                      properties: object) -> None:
        outcome.setdefault("closed", reason_code)
        answered.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    where = address.where
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = session_expiry
    if max_packet is not None:
        properties.MaximumPacketSize = max_packet
    try:
        # a stable id resumes its session; a fresh one starts clean
        client.connect(address.host, address.port, clean_start=not (client_id and session_expiry),
                       properties=properties)
    except ssl.SSLError as error:
        raise tls_refusal(where, error) from None
    except ConnectionResetError:
        if address.tls:  # a plain MQTT listener drops a TLS hello
            raise SsadError(f"{where}: the broker reset the connection in the TLS handshake: no TLS at this port? "
                            "(for a plain port use mqtt://)") from None
        raise SsadError(f"{where}: the broker reset the connection") from None
    except OSError as error:
        raise SsadError(f"{where}: cannot reach the MQTT broker ({error.strerror or error}); "
                        "is mosquitto running there?") from None
    client.loop_start()
    answered.wait(timeout)
    client.on_disconnect = None
    refusal = _refusal(address, outcome, timeout, credentials)
    if refusal is not None:
        client.loop_stop()
        client.on_connect = None
        raise SsadError(refusal)
    return client


def _refusal(address: MqttAddress, outcome: dict[str, object], timeout: float,
             credentials: MqttCredentials) -> str | None:
    """Why the connection was not accepted, in one line, or None when the broker accepted it."""
    where = address.where
    reason = outcome.get("reason")
    if reason is not None and not getattr(reason, "is_failure", False):
        return None
    if reason is not None:
        hint = ""
        if str(reason) in ("Bad user name or password", "Not authorized"):
            hint = (f"; check {'the user name and password' if credentials.username else 'the credentials'} "
                    "(SSAD_MQTT_USERNAME, SSAD_MQTT_PASSWORD or --mqtt-password-file)")
        return f"{where}: the MQTT broker refused the connection ({reason}){hint}"
    if not address.tls:
        hint = "; if this port speaks TLS, use mqtts:// with --mqtt-ca"
    elif credentials.cert is None:
        hint = "; does it want a client certificate (--mqtt-cert, --mqtt-key)?"
    else:
        hint = "; check --mqtt-cert and --mqtt-key"
    if "closed" in outcome:
        return f"{where}: the MQTT broker closed the connection without accepting it{hint}"
    return f"{where}: no answer from the MQTT broker within {timeout:g} s{hint}"


def close(client: mqtt.Client) -> None:
    """Disconnect and stop the network thread."""
    client.disconnect()
    client.loop_stop()


class MqttPublisher:
    """Publishes text messages (alerts) to one topic; `close` waits until they have left.

    A message the broker refuses (no right on the topic) makes the next `publish` or `check` raise SsadError.
    """

    def __init__(self, url: str, credentials: MqttCredentials | None = None) -> None:
        self.address = parse_mqtt_url(url)
        if not self.address.topic or any(c in self.address.topic for c in "+#"):
            raise SsadError(f"{url!r}: alerts need one plain topic (no wildcards), e.g. mqtt://HOST:PORT/plant/alerts")
        self.client = connect(self.address, name="ssad-alerts", credentials=credentials)
        self.client.on_publish = self._on_publish
        self._pending: list[mqtt.MQTTMessageInfo] = []
        self.refused: str | None = None
        self._closed = False

    def _on_publish(self, client: object, userdata: object, mid: int, reason_code: object, properties: object) -> None:
        if getattr(reason_code, "is_failure", False) and self.refused is None:
            self.refused = str(reason_code)

    def check(self) -> None:
        """SsadError naming the broker and topic once the broker has refused a message."""
        if self.refused is not None:
            raise SsadError(f"{self.address.where}: the MQTT broker refused the alerts published to "
                            f"{self.address.topic} ({self.refused}); does this user have the right to write there?")

    def publish(self, text: str) -> None:
        """Queue one message (QoS 1: the broker acknowledges it)."""
        self.check()
        self._pending = [m for m in self._pending if not m.is_published()]
        self._pending.append(self.client.publish(self.address.topic, text.encode(), qos=1))

    def close(self, timeout: float = 5.0) -> None:
        """Wait (up to `timeout` s each) for queued messages, then disconnect; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        for message in self._pending:
            try:
                message.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as error:  # paho raises these when the connection went away
                log.warning("alert not delivered to %s: %s", self.address.topic, error)
        close(self.client)
