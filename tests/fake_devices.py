"""paho-mqtt clients playing table buttons, pagers and observers in hub tests."""
import json
import threading
import time

import paho.mqtt.client as mqtt

import protocol

SITE = "demo"
WAIT_S = 10.0


class Client:
    """Records every message it receives; wait_for() blocks (bounded) for a matching one."""

    def __init__(self, port, client_id, subscriptions, will=None):
        self.subscriptions = subscriptions
        self.received = []  # (topic, payload: a dict, or bytes if not JSON)
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311, clean_session=True)
        self.client.reconnect_delay_set(1, 2)
        if will:
            self.client.will_set(*will)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=60)
        self.client.loop_start()
        if not self._subscribed.wait(WAIT_S):
            raise AssertionError("%s: no SUBACK within %.0f s" % (client_id, WAIT_S))

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        for sub in self.subscriptions:
            client.subscribe(sub, qos=1)

    def _on_message(self, client, userdata, msg):
        try:
            payload = json.loads(msg.payload.decode("utf-8"))
        except ValueError:
            payload = msg.payload
        with self._cond:
            self.received.append((msg.topic, payload))
            self._cond.notify_all()

    def wait_for(self, topic, match=lambda p: True, timeout=WAIT_S, latest=False):
        """A received payload on topic that matches: the first such one, or with latest=True
        the wait lasts until the newest one on that topic matches."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [p for t, p in self.received if t == topic]
                for payload in got[-1:] if latest else got:
                    if match(payload):
                        return payload
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("nothing matching on %s within %.0f s; got %r"
                                         % (topic, timeout, got))
                self._cond.wait(left)

    def publish_raw(self, topic, data, qos=1, retain=False):
        self.client.publish(topic, data, qos=qos, retain=retain).wait_for_publish(WAIT_S)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


class Device(Client):
    """One table button or pager: last will, status with heartbeat, its own down topics."""

    def __init__(self, port, kind, dev_id, hb=30, site=SITE):
        self.kind, self.id, self.site, self.hb = kind, dev_id, site, hb
        self._beat_thread = None
        downs = [protocol.topic(site, kind, dev_id, msg) for msg in protocol.SUBSCRIBES[kind]]
        will = (self.topic("status"), protocol.encode("status", {"online": False}), 1, True)
        super().__init__(port, "test-%s-%s" % (kind, dev_id), downs, will)

    def topic(self, message):
        return protocol.topic(self.site, self.kind, self.id, message)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        super()._on_connect(client, userdata, flags, reason_code, properties)
        client.publish(self.topic("status"), self._status(), qos=1, retain=True)

    def _status(self):
        return protocol.encode("status", {"online": True, "fw": "test-1", "hb": self.hb, "battery": 87,
                                          "rssi": -60})

    def send(self, message, payload):
        self.publish_raw(self.topic(message), protocol.encode(message, payload))

    def heartbeat(self):
        """Publish the status every hb seconds until stop_heartbeat()."""
        self._quiet = threading.Event()

        def beat():
            while not self._quiet.wait(self.hb):
                self.client.publish(self.topic("status"), self._status(), qos=1, retain=True)
        self._beat_thread = threading.Thread(target=beat, daemon=True)
        self._beat_thread.start()

    def stop_heartbeat(self):
        """Go silent without disconnecting, like a hung device."""
        if self._beat_thread:
            self._quiet.set()
            self._beat_thread.join(WAIT_S)
            self._beat_thread = None

    def expect(self, message, match=lambda p: True, timeout=WAIT_S, latest=False):
        """wait_for() on this device's own topic for message."""
        return self.wait_for(self.topic(message), match, timeout, latest)

    def tasks(self, match, timeout=WAIT_S):
        """Wait until the newest tasks snapshot's task ids match; return that snapshot."""
        return self.expect("tasks", lambda p: match([t["id"] for t in p["tasks"]]), timeout, latest=True)

    def snapshots(self):
        with self._cond:
            return [p for t, p in self.received if t == self.topic("tasks")]

    def close(self):
        self.stop_heartbeat()
        super().close()
