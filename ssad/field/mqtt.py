"""MQTT for the live monitor: `mqtt://HOST:PORT/TOPIC` addresses, topic-to-machine patterns, a paho v5 client."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ssad.core.errors import SsadError

__all__ = ["MqttAddress", "MqttPublisher", "close", "connect", "machine_from_topic", "parse_mqtt_url"]

log = logging.getLogger("ssad")

DEFAULT_PORT = 1883
CONNECT_TIMEOUT_S = 10.0
#: reconnection backoff after the broker went away: first wait, doubling up to the last (seconds)
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.25, 2.0


@dataclass(frozen=True)
class MqttAddress:
    """Where to connect and which topic (filter) to use."""

    host: str
    port: int
    topic: str


def parse_mqtt_url(url: str) -> MqttAddress:
    """`mqtt://HOST[:PORT]/TOPIC` -> address; the topic may hold `+` and `#` (not URL-escaped)."""
    if not url.startswith("mqtt://"):
        raise SsadError(f"{url!r}: an MQTT address looks like mqtt://HOST:PORT/TOPIC")
    netloc, _, topic = url[len("mqtt://"):].partition("/")
    host, _, port = netloc.rpartition(":") if ":" in netloc else (netloc, "", "")
    if not host:
        raise SsadError(f"{url!r}: no host (expected mqtt://HOST:PORT/TOPIC)")
    if port and not port.isdigit():
        raise SsadError(f"{url!r}: port {port!r} is not a number")
    return MqttAddress(host, int(port) if port else DEFAULT_PORT, topic)


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
            on_message: Callable[..., None] | None = None) -> mqtt.Client:
    """A connected MQTT v5 client with its network loop running in a background thread.

    It reconnects by itself when the broker goes away (backoff RECONNECT_MIN_S doubling to RECONNECT_MAX_S).
    With a `client_id` and `session_expiry` > 0 s the broker keeps the session (subscriptions, QoS 1 messages
    not yet acknowledged or not yet sent) that long after a disconnection, and a client of the same id resumes it.
    `will` = (topic, text) the broker publishes if the connection dies without a clean disconnect.
    `on_message` is in place before the connection: a resumed session's messages come right after it.
    Raises SsadError naming the broker when it cannot be reached or refuses the connection.
    """
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"{name}-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5, manual_ack=manual_ack)
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    if will is not None:
        client.will_set(will[0], will[1].encode(), qos=1)
    connected = threading.Event()
    outcome: dict[str, object] = {}

    def on_connect(client: mqtt.Client, userdata: object, flags: object, reason_code: object, properties: object) -> None:
        outcome["reason"] = reason_code
        connected.set()

    client.on_connect = on_connect
    client.on_message = on_message
    where = f"mqtt://{address.host}:{address.port}"
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = session_expiry
    try:
        # a stable id resumes its session; a fresh one starts clean
        client.connect(address.host, address.port, clean_start=not (client_id and session_expiry),
                       properties=properties)
    except OSError as error:
        raise SsadError(f"{where}: cannot reach the MQTT broker ({error.strerror or error}); "
                        "is mosquitto running there?") from None
    client.loop_start()
    if not connected.wait(CONNECT_TIMEOUT_S):
        client.loop_stop()
        raise SsadError(f"{where}: no answer from the MQTT broker within {CONNECT_TIMEOUT_S:g} s")
    reason = outcome["reason"]
    if getattr(reason, "is_failure", False):
        client.loop_stop()
        raise SsadError(f"{where}: the MQTT broker refused the connection ({reason})")
    return client


def close(client: mqtt.Client) -> None:
    """Disconnect and stop the network thread."""
    client.disconnect()
    client.loop_stop()


class MqttPublisher:
    """Publishes text messages (alerts) to one topic; `close` waits until they have left."""

    def __init__(self, url: str) -> None:
        self.address = parse_mqtt_url(url)
        if not self.address.topic or any(c in self.address.topic for c in "+#"):
            raise SsadError(f"{url!r}: alerts need one plain topic (no wildcards), e.g. mqtt://HOST:PORT/plant/alerts")
        self.client = connect(self.address, name="ssad-alerts")
        self._pending: list[mqtt.MQTTMessageInfo] = []

    def publish(self, text: str) -> None:
        """Queue one message (QoS 1: the broker acknowledges it)."""
        self._pending = [m for m in self._pending if not m.is_published()]
        self._pending.append(self.client.publish(self.address.topic, text.encode(), qos=1))

    def close(self, timeout: float = 5.0) -> None:
        """Wait (up to `timeout` s each) for queued messages, then disconnect."""
        for message in self._pending:
            try:
                message.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as error:  # paho raises these when the connection went away
                log.warning("alert not delivered to %s: %s", self.address.topic, error)
        close(self.client)
