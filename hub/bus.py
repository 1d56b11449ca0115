"""The hub's MQTT link: one paho client in its own thread.

Uplinks are checked against the wire contract and handed on; anything that breaks
the contract is logged and reported on the hub's error topic. Downlinks are encoded
(and so validated) here, so nothing malformed leaves the hub.
"""
import collections
import logging
import socket
import threading

import paho.mqtt.client as mqtt

import protocol

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 10
KEEPALIVE_S = 30
FLUSH_TIMEOUT_S = 2.0


class Outbox:
    """Messages produced while handling one event, sent only once it is committed."""

    def __init__(self):
        self.items = []

    def send(self, kind, device, message, payload):
        self.items.append((kind, device, message, payload))

    def drain(self):
        items, self.items = self.items, []
        return items


class Bus:
    def __init__(self, host, port, site, on_uplink, on_connect, auth=None, bouncer=None, tls=None):
        """on_uplink(kind, device, message, payload, ack) gets each valid uplink of this site
        and calls ack(ok) once it is handled (committed, or dropped as failing): until then the
        broker keeps the QoS 1 message in the hub's session and delivers it again after a crash.
        on_connect() runs after every (re)connection and subscription. auth: (username, password).
        bouncer: hub.bouncer.Bouncer (rate limits and payload claims). tls: CA file of the broker."""
        self.host = host
        self.port = port
        self.site = site
        self.on_uplink = on_uplink
        self.on_connect = on_connect
        self.bouncer = bouncer
        self.tls = tls
        self.connected = False
        self._echoes = collections.Counter()
        self._echo_lock = threading.Lock()
        self._last_sent = None
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rfm-hub-" + site,
                                   protocol=mqtt.MQTTv311, clean_session=False,
                                   manual_ack=True)
        if auth:
            self._client.username_pw_set(*auth)
        if tls:
            self._client.tls_set(ca_certs=str(tls))
        self._client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    @property
    def url(self):
        return "%s://%s:%d" % ("mqtts" if self.tls else "mqtt", self.host, self.port)

    def start(self):
        self._client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S)
        self._client.loop_start()

    def stop(self):
        """Wait briefly for the last QoS 1 publish to be acknowledged, then disconnect."""
        if self._last_sent is not None and self.connected:
            try:
                self._last_sent.wait_for_publish(FLUSH_TIMEOUT_S)
            except (RuntimeError, ValueError) as exc:
                log.warning("last publish not confirmed: %s", exc)
        self.connected = False
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, kind, device, message, payload):
        t = protocol.topic(self.site, kind, device, message)
        data = protocol.encode(message, payload)
        if protocol.MESSAGES[message][1] == "up":
            # The hub speaking on a device's own topic (e.g. marking it silent): drop the echo.
            with self._echo_lock:
                self._echoes[(t, data)] += 1
        self._last_sent = self._client.publish(t, data, qos=protocol.qos(message),
                                               retain=protocol.retain(message))
        log.debug("sent %s %s", t, data.decode("utf-8"))

    def reject(self, topic, reason):
        log.warning("rejected %s: %s", topic, reason)
        self.publish("hub", protocol.HUB_ID, "error", {"topic": topic[:200], "reason": reason[:300]})

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("broker %s refused the connection: %s", self.url, reason_code)
            return
        log.info("connected to broker %s", self.url)
        # Without this, Nagle holds a downlink behind the PUBACK paho just sent until the
        # broker's delayed ACK: press-to-pager p50 was ~44 ms on either broker (bench).
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.subscribe(protocol.ROOT.split("/")[0] + "/#", qos=1)
        self.connected = True
        self.on_connect()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.connected:
            log.warning("disconnected from broker %s: %s; reconnecting", self.url, reason_code)
        self.connected = False

    def _on_message(self, client, userdata, msg):
        def ack(ok=True):
            if msg.qos:
                client.ack(msg.mid, msg.qos)
        try:
            if self._receive(msg.topic, msg.payload, ack):
                return  # acknowledged once handled
        except Exception:
            log.exception("dropped a message that could not be handled")
        ack()

    def _is_echo(self, t, data):
        with self._echo_lock:
            key = (t, data)
            if self._echoes[key] <= 0:
                return False
            self._echoes[key] -= 1
            if not self._echoes[key]:
                del self._echoes[key]
            return True

    def _receive(self, t, data, ack):
        """True if the message was handed on (and ack with it)."""
        if self._is_echo(t, data):
            return False
        try:
            site, kind, device, message = protocol.parse_topic(t)
            if protocol.MESSAGES[message][1] == "down":
                return False  # the hub's own downlinks (or another hub's)
            if site != self.site:
                raise protocol.ProtocolError("site", "this hub serves site %r" % self.site)
            if not data:
                log.debug("retained message cleared on %s", t)
                return False
            if self.bouncer is not None:
                refused = self.bouncer.admit(kind, device)
                if refused is not None:
                    if refused:  # said once per flood, not per message
                        self.reject(t, refused)
                    return False
            payload = protocol.decode(message, data)
            if self.bouncer is not None:
                self.bouncer.claims(kind, device, message, payload)
        except protocol.ProtocolError as exc:
            self.reject(t, str(exc))
            return False
        log.debug("got %s %s", t, data.decode("utf-8"))
        self.on_uplink(kind, device, message, payload, ack)
        return True
