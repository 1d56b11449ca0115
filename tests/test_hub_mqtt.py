"""The hub as a process (`python -m hub`), with paho clients playing the devices,
on its embedded amqtt broker and on an external Mosquitto."""
import pytest

import protocol
from tests.brokers import free_port, start_hub, start_mosquitto, stop_process, wait_until
from tests.fake_devices import SITE, WAIT_S, Client, Device

ERROR_TOPIC = protocol.topic(SITE, "hub", protocol.HUB_ID, "error")


class Floor:
    """A running hub (and Mosquitto, if asked) plus the devices a test made."""

    def __init__(self, tmp_path, broker):
        self.tmp_path = tmp_path
        self.mqtt_port = free_port()
        self.http_port = free_port()
        self.mosquitto = None
        self.broker_url = None
        if broker == "mosquitto":
            self.mosquitto = start_mosquitto(self.mqtt_port, str(tmp_path / "mosquitto"))
            self.broker_url = "mqtt://127.0.0.1:%d" % self.mqtt_port
        self.clients = []
        self.hub = None
        self.start_hub()

    def start_hub(self):
        self.hub = start_hub(self.tmp_path, self.mqtt_port, self.http_port, self.broker_url)

    def device(self, kind, dev_id, hb=30):
        dev = Device(self.mqtt_port, kind, dev_id, hb=hb)
        self.clients.append(dev)
        self.wait_device(kind, dev_id, online=True)
        return dev

    def observer(self, *subscriptions):
        client = Client(self.mqtt_port, "test-observer-%d" % len(self.clients), list(subscriptions))
        self.clients.append(client)
        return client

    def api(self, path):
        status, body = self.hub.get(path)
        assert status == 200, body
        return body

    def wait_device(self, kind, dev_id, online, reason=None):
        def matches():
            for dev in self.api("/api/devices?kind=" + kind)["devices"]:
                if dev["id"] == dev_id and dev["online"] == online and reason in (None, dev["reason"]):
                    return dev
        return wait_until(matches, WAIT_S, "%s/%s online=%s" % (kind, dev_id, online))

    def calls(self, **query):
        path = "/api/calls" + ("?" + "&".join("%s=%s" % kv for kv in query.items()) if query else "")
        return {c["id"]: c for c in self.api(path)["calls"]}

    def close(self):
        for client in self.clients:
            client.close()
        code = self.hub.stop()
        if self.mosquitto:
            stop_process(self.mosquitto)
        return code


@pytest.fixture(params=["amqtt", "mosquitto"])
def floor(request, tmp_path):
    f = Floor(tmp_path, request.param)
    try:
        yield f
    finally:
        code = f.close()
    assert code == 0, "the hub did not stop cleanly on SIGTERM:\n" + f.hub.log()[-3000:]


def test_call_loop_and_api(floor):
    pager = floor.device("pager", "P1")
    table = floor.device("table", "T1")
    table.send("call", {"id": "T1-1", "action": "raise", "type": "water"})
    assert table.expect("feedback", lambda p: p == {"id": "T1-1", "state": "seen"})
    snap = pager.tasks(lambda ids: ids == ["T1-1"])
    task = snap["tasks"][0]
    assert (task["kind"], task["table"], task["type"], task["state"], task["page"]) == \
        ("call", "T1", "water", "assigned", 1)
    assert 0 <= task["age"] <= 5

    pager.send("act", {"id": "T1-1", "action": "ack"})
    assert table.expect("feedback", lambda p: p == {"id": "T1-1", "state": "on_the_way", "by": "P1"})
    acked = pager.expect("tasks", lambda p: [t["state"] for t in p["tasks"]] == ["acked"], latest=True)
    assert acked["seq"] > snap["seq"]

    pager.send("act", {"id": "T1-1", "action": "done"})
    assert table.expect("feedback", lambda p: p == {"id": "T1-1", "state": "done", "by": "P1"})
    pager.tasks(lambda ids: ids == [])

    call = floor.calls()["T1-1"]
    assert (call["table"], call["type"], call["state"], call["waiter"]) == ("T1", "water", "done", "P1")
    for stamp in ("raised_at", "acked_at", "done_at"):
        assert call[stamp].endswith("Z") and call[stamp][10] == "T"
    assert call["cancelled_at"] is None
    assert list(floor.calls(state="done")) == ["T1-1"]
    assert floor.calls(state="open") == {}
    assert floor.hub.get("/api/calls?state=bogus")[0] == 400

    devices = {(d["kind"], d["id"]): d for d in floor.api("/api/devices")["devices"]}
    p1 = devices[("pager", "P1")]
    assert (p1["online"], p1["fw"], p1["battery"], p1["rssi"]) == (True, "test-1", 87, -60)
    assert p1["last_seen"].endswith("Z")
    health = floor.api("/api/health")
    assert health["ok"] and health["site"] == SITE and health["devices_online"] == 2

    table.send("call", {"id": "T1-2", "action": "raise", "type": "加水"})  # raw UTF-8 end to end
    assert pager.tasks(lambda ids: ids == ["T1-2"])["tasks"][0]["type"] == "加水"
    assert floor.calls()["T1-2"]["type"] == "加水"


def test_duplicate_raise_makes_one_task(floor):
    pager = floor.device("pager", "P1")
    table = floor.device("table", "T2")
    for _ in range(3):  # a QoS 1 DUP or a retry repeats the same id
        table.send("call", {"id": "T2-7", "action": "raise", "type": "bill"})
    table.send("call", {"id": "T2-8", "action": "raise", "type": "bill"})  # asked again: a reminder
    wait_until(lambda: floor.calls().get("T2-7", {}).get("reminders") == 1, WAIT_S, "the reminder")
    pager.tasks(lambda ids: ids == ["T2-7"])
    assert all([t["id"] for t in p["tasks"]] in ([], ["T2-7"]) for p in pager.snapshots())
    assert list(floor.calls()) == ["T2-7"]
    table.expect("feedback", lambda p: p == {"id": "T2-8", "state": "seen"})


def test_restart_keeps_open_calls(floor):
    pager = floor.device("pager", "P1")
    table = floor.device("table", "T3")
    table.send("call", {"id": "T3-1", "action": "raise", "type": "waiter"})
    table.send("call", {"id": "T3-2", "action": "raise", "type": "water"})
    seq = pager.tasks(lambda ids: ids == ["T3-1", "T3-2"])["seq"]
    pager.send("act", {"id": "T3-2", "action": "ack"})
    table.expect("feedback", lambda p: p["state"] == "on_the_way")

    assert floor.hub.stop() == 0
    floor.start_hub()  # same data dir and ports; the devices reconnect by themselves
    again = pager.expect("tasks", lambda p: p["seq"] > seq + 1, latest=True)
    assert [(t["id"], t["state"]) for t in again["tasks"]] == [("T3-1", "assigned"), ("T3-2", "acked")]
    calls = floor.calls()
    assert (calls["T3-1"]["state"], calls["T3-1"]["waiter"]) == ("assigned", "P1")
    assert calls["T3-2"]["state"] == "acked"

    pager.send("act", {"id": "T3-1", "action": "done"})
    assert table.expect("feedback", lambda p: p == {"id": "T3-1", "state": "done", "by": "P1"})


def test_silent_device_is_marked_offline(floor):
    table = floor.device("table", "T4", hb=1)
    dev = floor.wait_device("table", "T4", online=False, reason="silent")
    assert dev["last_seen"] is not None
    status = table.topic("status")
    late = floor.observer(status)  # the verdict is retained for newcomers
    assert late.wait_for(status) == {"online": False, "reason": "silent"}
    table.heartbeat()
    floor.wait_device("table", "T4", online=True)


def test_bad_input_is_rejected_and_the_hub_keeps_serving(floor):
    errors = floor.observer(ERROR_TOPIC)
    pager = floor.device("pager", "P1")
    table = floor.device("table", "T5")
    call_topic = table.topic("call")
    bad = [
        (call_topic, b"{not json", "payload: not valid JSON"),
        (call_topic, b'{"id":"T5-1","action":"shout","type":"water"}',
         "action: must be one of raise, cancel"),
        (call_topic, b'{"id":"T5-1","action":"raise"}', "type: missing (a raise needs a call type)"),
        ("rfm/v1/%s/table/T5/bogus" % SITE, b"{}", "message: unknown message 'bogus'"),
        ("rfm/v1/%s/toaster/X1/status" % SITE, b"{}", "kind: unknown device kind 'toaster'"),
        ("rfm/v1/other-site/table/T5/call", b'{"id":"T5-1","action":"raise","type":"water"}', "site: "),
        ("rfm/v1/%s/table/T5" % SITE, b"{}", "topic: not of the form"),
    ]
    for t, data, _reason in bad:
        table.publish_raw(t, data)
    for t, _data, reason in bad:
        got = errors.wait_for(ERROR_TOPIC,
                              lambda p, t=t, r=reason: p["topic"] == t and p["reason"].startswith(r))
        assert "rejected %s: %s" % (t, got["reason"]) in floor.hub.log()
    assert "WARNING rejected %s: payload: not valid JSON" % call_topic in floor.hub.log()

    table.send("call", {"id": "T5-2", "action": "raise", "type": "napkins"})
    assert table.expect("feedback", lambda p: p == {"id": "T5-2", "state": "seen"})
    pager.tasks(lambda ids: ids == ["T5-2"])
    assert floor.api("/api/health")["ok"]
    assert floor.hub.alive()


def test_offline_pager_tasks_move_to_another(floor):
    p1 = floor.device("pager", "P1", hb=1)
    p1.heartbeat()
    table = floor.device("table", "T6")
    table.send("call", {"id": "T6-1", "action": "raise", "type": "waiter"})
    p1.tasks(lambda ids: ids == ["T6-1"])
    p2 = floor.device("pager", "P2")

    p1.stop_heartbeat()  # hung: connected but silent
    floor.wait_device("pager", "P1", online=False, reason="silent")
    moved = p2.tasks(lambda ids: ids == ["T6-1"])
    assert moved["tasks"][0]["page"] == 2
    p1.tasks(lambda ids: ids == [])
    assert floor.calls()["T6-1"]["waiter"] == "P2"

    p2.send("act", {"id": "T6-1", "action": "ack"})
    assert table.expect("feedback", lambda p: p == {"id": "T6-1", "state": "on_the_way", "by": "P2"})
