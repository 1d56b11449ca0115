"""The walking skeleton end to end: real firmware (compiled .mpy under
`micropython -X heapsize=112000`) for a table button and a pager, the real hub, and a
real broker: the hub's embedded amqtt, or a Mosquitto the test starts."""
import os
import socket
import sqlite3
import struct
import subprocess

import pytest

import protocol
from tests.brokers import free_port, start_hub, start_mosquitto, stop_process, wait_until
from tests.simdev import SimDevice

WAIT = 20


class Restaurant:
    def __init__(self, tmp_path, broker):
        self.tmp = tmp_path
        self.port = free_port()
        self.http = free_port()
        self.mosquitto = None
        self.url = None
        if broker == "mosquitto":
            self.mosquitto = start_mosquitto(self.port, str(tmp_path / "mosquitto"))
            self.url = "mqtt://127.0.0.1:%d" % self.port
        self.hub = start_hub(tmp_path, self.port, self.http, self.url)
        self.devices = []

    def device(self, kind, dev_id):
        dev = SimDevice(kind, dev_id, self.port, self.tmp / "devices", hb=5).start()
        self.devices.append(dev)
        self.wait_online(kind, dev_id)
        return dev

    def wait_online(self, kind, dev_id):
        def online():
            status, body = self.hub.get("/api/devices?kind=" + kind)
            return status == 200 and any(d["id"] == dev_id and d["online"] for d in body["devices"])
        wait_until(online, WAIT, "%s/%s online at the hub" % (kind, dev_id))

    def call(self, call_id):
        status, body = self.hub.get("/api/calls")
        assert status == 200, body
        return next((c for c in body["calls"] if c["id"] == call_id), None)

    def stored_state(self, call_id):
        db = sqlite3.connect(str(self.tmp / "data" / "hub.sqlite3"))
        try:
            row = db.execute("SELECT state FROM calls WHERE id = ?", (call_id,)).fetchone()
        finally:
            db.close()
        return row and row[0]

    def close(self):
        for dev in self.devices:
            dev.stop()
        code = self.hub.stop()
        if self.mosquitto:
            stop_process(self.mosquitto)
        return code


@pytest.fixture(params=["amqtt", "mosquitto"])
def restaurant(request, tmp_path):
    r = Restaurant(tmp_path, request.param)
    try:
        yield r
    finally:
        assert r.close() == 0, r.hub.log()[-3000:]


def open_call(table, call_type):
    def sent(state):
        c = state["app"]["calls"].get(call_type)
        return c if c else None
    return table.wait_for(sent, WAIT, "an open %s call on %s" % (call_type, table.id))["app"]["calls"][call_type]


def test_press_reaches_pager_ack_and_done_close_the_call(restaurant):
    pager = restaurant.device("pager", "P1")
    table = restaurant.device("table", "T1")

    table.press("water")
    screen = pager.wait_for(lambda s: any("T1" in line and "water" in line for line in s["screen"]),
                            WAIT, "the pager showing T1 water")
    assert screen["vibrations"] >= 1
    call_id = table.wait_for(lambda s: s["app"]["calls"].get("water", [0, ""])[1] == "seen", WAIT,
                             "the table LED showing seen")["app"]["calls"]["water"][0]
    assert restaurant.call(call_id)["state"] == "assigned"

    pager.press("ack")
    s = table.wait_for(lambda s: s["app"]["calls"].get("water", [0, ""])[1] == "on_the_way", WAIT,
                       "the table showing acknowledged")
    assert s["leds"]["water"] == "on"
    assert restaurant.call(call_id)["waiter"] == "P1"

    pager.press("done")
    wait_until(lambda: restaurant.stored_state(call_id) == "done", WAIT, "call closed in the store")
    api = restaurant.call(call_id)
    assert api["state"] == "done" and api["done_at"] and api["acked_at"] and api["raised_at"]
    pager.wait_for(lambda s: not any("T1" in line for line in s["screen"]), WAIT, "the task gone from the pager")
    table.wait_for(lambda s: "water" not in s["app"]["calls"], WAIT, "the call closed on the table")


def test_press_while_broker_down_is_delivered_after_it_returns(restaurant, tmp_path):
    pager = restaurant.device("pager", "P1")
    table = restaurant.device("table", "T1")
    if restaurant.mosquitto:
        stop_process(restaurant.mosquitto)
    else:
        assert restaurant.hub.stop() == 0  # the embedded broker goes down with the hub
    table.wait_for(lambda s: not s["connected"], WAIT, "the table noticing the broker is gone")

    table.press("bill")
    call_id = open_call(table, "bill")[0]
    assert table.state()["outbox"] >= 1

    if restaurant.mosquitto:
        restaurant.mosquitto = start_mosquitto(restaurant.port, str(tmp_path / "mosquitto"))
    else:
        restaurant.hub = start_hub(tmp_path, restaurant.port, restaurant.http)
    pager.wait_for(lambda s: any("T1" in line and "bill" in line for line in s["screen"]), 40,
                   "the pager showing the call made while the broker was down")
    wait_until(lambda: restaurant.call(call_id), WAIT, "the call in /api/calls")
    assert [c["id"] for c in restaurant.hub.get("/api/calls")[1]["calls"]].count(call_id) == 1


def raw_publish(topic, payload, pid, dup):
    """One QoS 1 PUBLISH with an explicit packet id and DUP flag, as a re-sending device sends it."""
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t + struct.pack("!H", pid) + payload
    return bytes([0x32 | (0x08 if dup else 0), len(body)]) + body


def test_qos1_duplicate_delivery_makes_one_task(restaurant):
    restaurant.device("pager", "P1")
    topic = protocol.topic("demo", "table", "T9", "call")
    payload = protocol.encode("call", {"id": "T9-1", "action": "raise", "type": "waiter"})
    cid = b"T9-raw"
    connect = (b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack("!H", len(cid)) + cid)
    with socket.create_connection(("127.0.0.1", restaurant.port), timeout=5) as s:
        s.sendall(bytes([0x10, len(connect)]) + connect)
        assert s.recv(4)[:1] == b"\x20"
        s.sendall(raw_publish(topic, payload, 7, False))
        s.sendall(raw_publish(topic, payload, 7, True))
        acks = b""
        while len(acks) < 8:
            chunk = s.recv(8 - len(acks))
            assert chunk, "broker closed the connection"
            acks += chunk
        assert acks == b"\x40\x02\x00\x07" * 2
    wait_until(lambda: restaurant.call("T9-1"), WAIT, "the call in /api/calls")
    calls = restaurant.hub.get("/api/calls")[1]["calls"]
    assert [c["table"] for c in calls] == ["T9"]


def test_malformed_and_unknown_topic_from_a_third_party_are_rejected(restaurant):
    pager = restaurant.device("pager", "P1")
    table = restaurant.device("table", "T1")
    error_topic = protocol.topic("demo", "hub", "hub", "error")
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(restaurant.port), "-t", error_topic,
                            "-C", "2", "-W", str(WAIT)], stdout=subprocess.PIPE, text=True)
    pub = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(restaurant.port), "-q", "1"]
    # mosquitto_sub needs a moment to subscribe; retry the bad publishes until both reasons arrive
    def reported():
        subprocess.run(pub + ["-t", protocol.topic("demo", "table", "T1", "call"), "-m", "{not json"], check=True)
        subprocess.run(pub + ["-t", "rfm/v1/demo/table/T1/hello", "-m", "{}"], check=True)
        log = restaurant.hub.log()
        return "payload: not valid JSON" in log and "unknown message 'hello'" in log
    wait_until(reported, WAIT, "both rejections in the hub log", interval=0.5)
    out, _ = sub.communicate(timeout=WAIT + 5)
    assert "not valid JSON" in out or "unknown message" in out, out

    table.press("napkins")  # the hub keeps serving
    pager.wait_for(lambda s: any("napkins" in line for line in s["screen"]), WAIT, "a good call after bad input")
    assert restaurant.hub.alive()
