"""A hub with per-device credentials (--auth) on either broker, and paho clients that log
in as one device: shared by the identity, abuse and TLS tests."""
import contextlib
import json
import os
import shutil
import threading

import paho.mqtt.client as mqtt
import pytest

import protocol
from hub.access import Access
from tests.brokers import free_port, start_hub, stop_process, wait_until
from tests.test_fleet_auth import _mosquitto, register

WAIT_S = 10
ERRORS = protocol.topic("demo", "hub", protocol.HUB_ID, "error")
HAVE_MOSQUITTO = bool(shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto"))


def T(kind, dev, msg):
    return protocol.topic("demo", kind, dev, msg)


class Dev:
    """A paho client logging in with one device's credentials under a chosen client id;
    records CONNACK, SUBACK codes, disconnections and every message it receives."""

    def __init__(self, port, creds, client_id, password=None, subscribe=()):
        self.connack = None
        self.suback = None
        self.dropped = threading.Event()
        self.got = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self.c.username_pw_set(creds["username"], password or creds["password"])
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda *a: self.dropped.set() if self.connack == 0 else None
        self.c.on_subscribe = lambda c, u, mid, codes, p: setattr(self, "suback", [int(x.value) for x in codes])
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, json.loads(m.payload)))
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        wait_until(lambda: self.connack is not None, WAIT_S, "CONNACK")
        for t in subscribe:
            self.subscribe(t)

    def _on_connect(self, client, userdata, flags, rc, props):
        self.connack = rc.value
        if rc.is_failure:
            client.disconnect()

    def subscribe(self, topic):
        self.suback = None
        self.c.subscribe(topic, 1)
        return wait_until(lambda: self.suback, WAIT_S, "SUBACK")[0]

    def send(self, topic, payload):
        self.c.publish(topic, json.dumps(payload, separators=(",", ":")), qos=1).wait_for_publish(WAIT_S)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


BROKERS = ["amqtt", pytest.param("mosquitto", marks=pytest.mark.skipif(not HAVE_MOSQUITTO,
                                                                     reason="mosquitto not installed"))]


@contextlib.contextmanager
def secure_site(tmp_path, broker, devices=(("table", "T1"), ("table", "T2"), ("pager", "P1")), extra=()):
    """(hub, MQTT port, the admin's MQTT password, {id: credentials}) of a hub started with
    --auth on `broker` ("amqtt": embedded; "mosquitto": fed the files the hub writes),
    with `devices` registered."""
    mport, hport = free_port(), free_port()
    data, mosquitto = tmp_path / "data", None
    auth_dir = data / "auth"
    if broker == "mosquitto":
        Access(data, "demo", listener=("127.0.0.1", mport)).write([])
        mosquitto = _mosquitto(mport, str(tmp_path), str(auth_dir))
        hub = start_hub(tmp_path, mport, hport, broker_url="mqtt://127.0.0.1:%d" % mport,
                        extra=["--auth", "--broker-reload", "kill -HUP %d" % mosquitto.pid, *extra])
    else:
        hub = start_hub(tmp_path, mport, hport, extra=["--auth", *extra])
    try:
        token = (auth_dir / "admin.token").read_text().strip()
        creds = {dev: register(hub, token, kind, dev) for kind, dev in devices}
        if mosquitto:
            last = creds[devices[-1][1]]

            def probe():
                dev = Dev(mport, last, "probe")
                dev.close()
                return dev.connack == 0
            wait_until(probe, WAIT_S, "mosquitto to load the passwords")
        yield hub, mport, (auth_dir / "admin.secret").read_text().strip(), creds
    finally:
        assert hub.stop() == 0, hub.log()[-3000:]
        if mosquitto:
            stop_process(mosquitto)


def calls(hub):
    return {c["id"]: c for c in hub.get("/api/calls")[1]["calls"]}
