"""Device firmware (compiled .mpy bundle under MicroPython, 112 kB heap) against
a real Mosquitto, with paho-mqtt playing the hub."""
import base64
import json
import socket
import struct
import threading

import pytest

import protocol
from tests.brokers import Recorder, free_port, start_mosquitto, stop_process, wait_until
from tests.simdev import SimDevice

SITE = "demo"


def T(kind, dev, msg):
    return protocol.topic(SITE, kind, dev, msg)


def start(devices, *a, **kw):
    d = SimDevice(*a, **kw).start()
    devices.append(d)
    return d


def test_press_publishes_valid_call(tmp_path, devices):
    port = free_port()
    users = {"T12": "pw-T12", "hub": "hubpw"}
    proc = start_mosquitto(port, str(tmp_path / "mq"), users=users)
    try:
        hub = Recorder(port, [T("table", "T12", "call")], auth=("hub", "hubpw"))
        dev = start(devices, "table", "T12", port, tmp_path)
        dev.wait_for(lambda s: s["connected"], what="T12 connected with its credentials")
        dev.press("water")
        t, call, retain = hub.wait_msg(lambda t, p, r: True, what="call")
        assert protocol.validate("call", call) == call
        assert call["action"] == "raise" and call["type"] == "water"
        assert call["id"].startswith("T12-") and not retain
        s = dev.wait_for(lambda s: s["outbox"] == 0)
        assert s["leds"]["water"] == "fast"
        assert s["app"]["calls"]["water"] == [call["id"], "sent"]
        hub.close()
    finally:
        stop_process(proc)


def test_presses_while_broker_down_are_delivered_after_reconnect(tmp_path, devices):
    port = free_port()
    conf = str(tmp_path / "mq")
    proc = start_mosquitto(port, conf, persist=True)
    # a persistent session keeps the fake hub's subscription across the restart
    hub = Recorder(port, [T("table", "T3", "call")], client_id="fake-hub", clean=False)
    try:
        dev = start(devices, "table", "T3", port, tmp_path, outbox=3)
        dev.wait_for(lambda s: s["connected"] and s["outbox"] == 0)
        stop_process(proc)
        dev.wait_for(lambda s: not s["connected"], what="link loss noticed")
        for name in ("water", "bill", "napkins", "waiter"):  # 4 presses, outbox of 3
            dev.press(name)
            s = dev.wait_for(lambda s: name in s["app"]["calls"])
        assert s["outbox"] == 3
        dev.wait_log("outbox full (3), dropped oldest on rfm/v1/demo/table/T3/call")
        ids = dict((t, c[0]) for t, c in s["app"]["calls"].items())
        assert hub.matching("/call") == []
        proc = start_mosquitto(port, conf, persist=True)
        for name in ("bill", "napkins", "waiter"):
            _, call, _ = hub.wait_msg(lambda t, p, r: p.get("id") == ids[name], 30, "queued %s" % name)
            assert protocol.validate("call", call) == {"id": ids[name], "action": "raise", "type": name}
        dev.wait_for(lambda s: s["connected"] and s["outbox"] == 0, 15)
        assert [json.loads(m[1])["type"] for m in hub.matching("/call")] == ["bill", "napkins", "waiter"]
        # resubscribed after the reconnect: feedback reaches the device
        hub.publish(T("table", "T3", "feedback"), {"id": ids["bill"], "state": "on_the_way"})
        dev.wait_for(lambda s: s["leds"]["bill"] == "on")
    finally:
        hub.close()
        stop_process(proc)


def test_status_retained_heartbeat_and_last_will(broker, tmp_path, devices):
    dev = start(devices, "table", "T7", broker, tmp_path, hb=2)
    dev.wait_for(lambda s: s["connected"] and s["outbox"] == 0, what="status acked")
    status = T("table", "T7", "status")
    late = Recorder(broker, [status])  # subscribes after the device: gets the retained copy
    _, first, retain = late.wait_msg(lambda t, p, r: r, what="retained status")
    assert protocol.validate("status", first) == first
    assert first["online"] is True and first["hb"] == 2
    for key in ("fw", "battery", "rssi", "uptime", "heap"):
        assert key in first
    # heartbeat: the status is published again, with the (simulated) battery level
    assert dev.request({"set": {"battery": 42}}) == {"ok": True}
    late.wait_msg(lambda t, p, r: not r and p["online"] and p["uptime"] >= 2 and p["battery"] == 42,
                  10, "heartbeat")
    dev.stop(kill=True)  # power cut: no DISCONNECT, so the broker fires the will
    late.wait_msg(lambda t, p, r: p == {"online": False}, 10, "last will")
    late.close()
    fresh = Recorder(broker, [status])
    _, p, retain = fresh.wait_msg(lambda t, p, r: True, what="retained will")
    assert p == {"online": False} and retain
    fresh.close()


def test_feedback_drives_leds_and_cancel_cancels_open_calls(broker, tmp_path, devices):
    hub = Recorder(broker, [T("table", "T5", "call")])
    dev = start(devices, "table", "T5", broker, tmp_path)
    dev.wait_for(lambda s: s["connected"])
    dev.press("water")
    _, call, _ = hub.wait_msg(lambda t, p, r: p["type"] == "water", what="water call")
    fb = T("table", "T5", "feedback")
    for state, mode in (("seen", "slow"), ("on_the_way", "on"), ("done", "on")):
        hub.publish(fb, {"id": call["id"], "state": state, "by": "P1"})
        dev.wait_for(lambda s: s["leds"]["water"] == mode, what="water led %s" % mode)
    s = dev.wait_for(lambda s: s["leds"]["water"] == "off", 10, "led off after done")
    assert s["app"]["calls"] == {}
    hub.publish(fb, {"id": "T5-999", "state": "seen"})  # unknown id: ignored
    dev.wait_log("feedback for unknown call T5-999")
    dev.press("bill")
    dev.press("napkins")
    s = dev.wait_for(lambda s: len(s["app"]["calls"]) == 2)
    open_ids = sorted(c[0] for c in s["app"]["calls"].values())
    dev.press("cancel")
    hub.wait_msg(lambda t, p, r: p["action"] == "cancel" and p["id"] == open_ids[1], what="cancels")
    cancels = sorted(p["id"] for p in (json.loads(m[1]) for m in hub.matching("/call"))
                     if p["action"] == "cancel")
    assert cancels == open_ids
    s = dev.wait_for(lambda s: s["app"]["calls"] == {})
    assert s["leds"]["bill"] == "off" and s["leds"]["napkins"] == "off"
    # the call-id counter survives a reboot; no id is ever reused
    dev.stop()
    dev2 = start(devices, "table", "T5", broker, tmp_path)
    dev2.wait_for(lambda s: s["connected"])
    dev2.press("waiter")
    _, again, _ = hub.wait_msg(lambda t, p, r: p.get("type") == "waiter", what="call after reboot")
    used = [int(i.split("-")[1]) for i in [call["id"]] + open_ids]
    assert int(again["id"].split("-")[1]) > max(used)
    hub.close()


def _task(tid, table, typ, prio, age, page, state="assigned"):
    return {"id": tid, "kind": "call", "table": table, "type": typ, "prio": prio,
            "age": age, "state": state, "page": page}


def test_pager_shows_vibrates_and_acts(broker, tmp_path, devices):
    hub = Recorder(broker, [T("pager", "P3", "act")])
    dev = start(devices, "pager", "P3", broker, tmp_path)
    dev.wait_for(lambda s: s["connected"] and s["screen"], what="pager up and drawing")
    topic = T("pager", "P3", "tasks")
    tasks = [_task("T12-4", "T12", "water", 5, 59, 1), _task("T4-2", "T4", "bill", 8, 30, 0)]
    hub.publish(topic, protocol.encode("tasks", {"seq": 1, "tasks": tasks}), retain=True)
    s = dev.wait_for(lambda s: s["vibrations"] == 1 and any("T12" in l and "water" in l for l in s["screen"]),
                     what="task on screen")
    assert s["last_vibration"] == [400, 150, 400, 150, 400]  # a prio 8 task is new
    assert s["screen"][0] == "2 tasks"
    # age counts up locally from the hub's 59 s
    dev.wait_for(lambda s: any(l.startswith("T12") and l.endswith("1m") for l in s["screen"]), 5)
    pbm = base64.b64decode(dev.request({"get": "screen_pbm"})["pbm"])
    assert pbm.startswith(b"P4\n128 64\n") and len(pbm) == 10 + 1024 and any(pbm[10:])
    dev.press("ack")
    _, act, _ = hub.wait_msg(lambda t, p, r: True, what="act")
    assert protocol.validate("act", act) == {"id": "T12-4", "action": "ack"}
    dev.press("next")
    dev.wait_for(lambda s: s["app"]["selected"] == 1)
    dev.press("done")
    hub.wait_msg(lambda t, p, r: p == {"id": "T4-2", "action": "done"}, what="done act")
    # same tasks again: no buzz; a page count rising buzzes
    hub.publish(topic, protocol.encode("tasks", {"seq": 2, "tasks": tasks}), retain=True)
    s = dev.wait_for(lambda s: s["app"]["seq"] == 2)
    assert s["vibrations"] == 1
    tasks[0]["page"] = 2
    hub.publish(topic, protocol.encode("tasks", {"seq": 3, "tasks": tasks}), retain=True)
    s = dev.wait_for(lambda s: s["app"]["seq"] == 3)
    assert s["vibrations"] == 2 and s["last_vibration"] == [300]
    assert s["app"]["selected"] == 1  # the cursor stays on the same task
    # a payload that breaks the contract is logged and dropped
    hub.publish(topic, b'{"seq":4,"tasks":[{"id":"x"}]}')
    dev.wait_log("dropped tasks: tasks[0].")
    assert dev.state()["app"]["seq"] == 3
    hub.close()


def test_pager_gets_retained_tasks_on_boot(broker, tmp_path, devices):
    hub = Recorder(broker, [])
    tasks = {"seq": 7, "tasks": [_task("T2-1", "T2", "napkins", 3, 5, 0, "acked")]}
    hub.publish(T("pager", "P9", "tasks"), protocol.encode("tasks", tasks), retain=True)
    dev = start(devices, "pager", "P9", broker, tmp_path)
    s = dev.wait_for(lambda s: s["app"]["seq"] == 7 and any(l.startswith("T2") for l in s["screen"]))
    assert s["vibrations"] == 1
    assert [l for l in s["screen"] if l.startswith("T2")][0].startswith("T2   napkins*")
    hub.close()


# --- through a loopback proxy that can lose packets ------------------------------
def _read_packet(sock):
    """One MQTT packet as (first byte, body), or None at EOF."""
    head = sock.recv(1)
    if not head:
        return None
    n = 0
    for i in range(4):
        c = sock.recv(1)
        if not c:
            return None
        n |= (c[0] & 0x7F) << (7 * i)
        if not c[0] & 0x80:
            break
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return head[0], body


def _packet(first, body):
    n, out = len(body), bytearray([first])
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out) + body


class Publish:
    def __init__(self, first, body):
        tl = struct.unpack("!H", body[:2])[0]
        self.topic = body[2:2 + tl].decode()
        self.qos = (first >> 1) & 3
        self.dup = bool(first & 8)
        self.pid = struct.unpack("!H", body[2 + tl:4 + tl])[0] if self.qos else 0
        self.payload = body[2 + tl + (2 if self.qos else 0):]


class MqttProxy:
    """Loopback TCP proxy between devices and the broker that parses MQTT both
    ways. It records every packet as (direction "up"|"down", first byte, body);
    rule(direction, first, body) returns "pass", "drop" or "cut" (drop it and
    close that connection)."""

    def __init__(self, broker_port, rule=None):
        self.broker_port = broker_port
        self.rule = rule or (lambda d, f, b: "pass")
        self.packets = []
        self.lock = threading.Lock()
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                dev, _ = self.srv.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.broker_port))
            threading.Thread(target=self._pump, args=(dev, up, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, dev, "down"), daemon=True).start()

    def _pump(self, src, dst, direction):
        try:
            while True:
                pkt = _read_packet(src)
                if pkt is None:
                    break
                with self.lock:
                    self.packets.append((direction,) + pkt)
                    verdict = self.rule(direction, *pkt)
                if verdict == "cut":
                    break
                if verdict == "pass":
                    dst.sendall(_packet(*pkt))
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def count(self, direction, ptype):
        with self.lock:
            return len([p for p in self.packets if p[0] == direction and p[1] >> 4 == ptype])

    def publishes(self, suffix, direction="up"):
        with self.lock:
            pkts = [p for p in self.packets if p[0] == direction and p[1] >> 4 == 3]
        return [pub for pub in (Publish(f, b) for _, f, b in pkts) if pub.topic.endswith(suffix)]

    def close(self):
        self.srv.close()


class LoseFirstPuback:
    """Rule: lose the broker's first PUBACK for a PUBLISH on a topic ending with
    suffix; with then="cut" also drop the connection."""

    def __init__(self, suffix, then="drop"):
        self.suffix, self.then = suffix, then
        self.pid = None
        self.lost = []

    def __call__(self, direction, first, body):
        if direction == "up" and first >> 4 == 3 and self.pid is None:
            pub = Publish(first, body)
            if pub.topic.endswith(self.suffix):
                self.pid = pub.pid
        if direction == "down" and first >> 4 == 4 and not self.lost:
            if struct.unpack("!H", body)[0] == self.pid:
                self.lost.append(self.pid)
                return self.then
        return "pass"


def test_qos1_resend_with_dup_until_puback(broker, tmp_path, devices):
    rule = LoseFirstPuback("/call")
    proxy = MqttProxy(broker, rule)
    hub = Recorder(broker, [T("table", "T9", "call")])
    dev = start(devices, "table", "T9", proxy.port, tmp_path, retry=1, hb=2)
    dev.wait_for(lambda s: s["connected"])
    dev.press("waiter")
    wait_until(lambda: len(proxy.publishes("/call")) >= 2, 10, "re-sent call")
    first, second = proxy.publishes("/call")[:2]
    assert rule.lost == [first.pid]
    assert not first.dup and second.dup  # DUP only on the re-send
    assert (second.pid, second.payload) == (first.pid, first.payload)
    dev.wait_for(lambda s: s["outbox"] == 0, what="PUBACK of the re-send clears the outbox")
    # two more heartbeats (hb 2 s > retry 1 s) pass through: still no third copy
    n = len(proxy.publishes("/status"))
    wait_until(lambda: len(proxy.publishes("/status")) >= n + 2, 10, "two heartbeats")
    assert len(proxy.publishes("/call")) == 2
    _, call, _ = hub.wait_msg(lambda t, p, r: True, what="call at the hub")
    assert call["type"] == "waiter" and call["id"] == protocol.decode("call", first.payload)["id"]
    hub.close()
    proxy.close()


def test_qos1_resent_with_dup_after_reconnect_and_incoming_qos1_acked(broker, tmp_path, devices):
    rule = LoseFirstPuback("/call", then="cut")
    proxy = MqttProxy(broker, rule)
    hub = Recorder(broker, [T("table", "T8", "call")])
    dev = start(devices, "table", "T8", proxy.port, tmp_path, retry=600)
    dev.wait_for(lambda s: s["connected"])
    dev.press("bill")
    wait_until(lambda: len(proxy.publishes("/call")) >= 2, 15, "call re-sent on the new connection")
    first, second = proxy.publishes("/call")[:2]
    assert proxy.count("up", 1) == 2  # two CONNECTs: the re-send came after reconnecting
    assert not first.dup and second.dup and second.pid == first.pid
    s = dev.wait_for(lambda s: s["connected"] and s["outbox"] == 0)
    # resubscribed after the reconnect; a QoS 1 down message is PUBACKed
    call_id = s["app"]["calls"]["bill"][0]
    hub.publish(T("table", "T8", "feedback"), {"id": call_id, "state": "seen"})
    dev.wait_for(lambda s: s["leds"]["bill"] == "slow")
    fb = proxy.publishes("/feedback", "down")[0]
    wait_until(lambda: any(p[0] == "up" and p[1] >> 4 == 4 and struct.unpack("!H", p[2])[0] == fb.pid
                           for p in list(proxy.packets)), 5, "PUBACK for the feedback")
    hub.close()
    proxy.close()


def test_missing_pingresp_is_a_dead_link(broker, tmp_path, devices):
    proxy = MqttProxy(broker, lambda d, f, b: "drop" if f >> 4 == 13 else "pass")
    dev = start(devices, "table", "T6", proxy.port, tmp_path, keepalive=2)
    dev.wait_for(lambda s: s["connected"])
    dev.wait_log("no PINGRESP", 10)
    wait_until(lambda: proxy.count("up", 1) >= 2, 10, "reconnect after the dead link")
    dev.wait_for(lambda s: s["connected"])
    proxy.close()


def test_cmd_identify_and_reboot(broker, tmp_path, devices):
    hub = Recorder(broker, [])
    dev = start(devices, "table", "T11", broker, tmp_path)
    dev.wait_for(lambda s: s["connected"] and s["outbox"] == 0)
    cmd = T("table", "T11", "cmd")
    dev.press("water")
    dev.wait_for(lambda s: s["leds"]["water"] == "fast")
    hub.publish(T("table", "T11", "feedback"), {"id": "T11-1", "state": "seen"})
    dev.wait_for(lambda s: s["leds"]["water"] == "slow")
    hub.publish(cmd, {"op": "identify"})
    dev.wait_for(lambda s: set(s["leds"].values()) == {"fast"}, what="identify blinks every LED")
    s = dev.wait_for(lambda s: s["leds"]["bill"] == "off", 8, what="identify over")
    assert s["leds"]["water"] == "slow"  # back to the call's state
    hub.publish(cmd, {"op": "ota", "url": "http://127.0.0.1/fw", "sha256": "0" * 64, "version": "9"})
    dev.wait_log("ota 9 failed, staying on")  # nothing serves that url: the device carries on
    hub.publish(cmd, {"op": "reboot"})
    assert dev.proc.wait(10) == 3  # the sim board's reboot ends the process
    hub.close()
