"""Orders end to end through a real hub process: signed channel webhooks over HTTP, paho
clients playing kitchen displays and a runner's pager on the embedded amqtt broker and on
Mosquitto, and a test HTTP server on 127.0.0.1 playing the POS that receives the signed
status webhook."""
import json
import urllib.request

import pytest

import protocol
from tests import order_channels as ch
from tests.brokers import free_port, start_hub, start_mosquitto, stop_process, wait_until
from tests.fake_devices import SITE, WAIT_S, Client, Device

SECRETS = {"toast": "toast-s3cret", "deliveroo": "roo-s3cret"}
HOOK_SECRET = "status-s3cret"
ORDER_TOPIC = protocol.topic(SITE, "hub", protocol.HUB_ID, "order")
ERROR_TOPIC = protocol.topic(SITE, "hub", protocol.HUB_ID, "error")


class Site:
    """A running hub (on amqtt or Mosquitto), the POS's status server and the test's clients."""

    def __init__(self, tmp_path, broker, hook_port=None, codes=()):
        self.tmp_path = tmp_path
        self.mqtt_port = free_port()
        self.http_port = free_port()
        self.mosquitto = None
        self.broker_url = None
        if broker == "mosquitto":
            self.mosquitto = start_mosquitto(self.mqtt_port, str(tmp_path / "mosquitto"))
            self.broker_url = "mqtt://127.0.0.1:%d" % self.mqtt_port
        self.hook_port = hook_port or free_port()
        self.pos = ch.StatusServer(codes=codes) if hook_port is None else None
        if self.pos:
            self.hook_port = self.pos.port
        self.clients = []
        self.hub = None
        self.start_hub()

    def start_hub(self):
        extra = ["--status-webhook", "http://127.0.0.1:%d/status" % self.hook_port, "--webhook-secret", HOOK_SECRET]
        for name, secret in SECRETS.items():
            extra += ["--channel-secret", "%s=%s" % (name, secret)]
        self.hub = start_hub(self.tmp_path, self.mqtt_port, self.http_port, self.broker_url, extra)

    def device(self, kind, dev_id):
        dev = Device(self.mqtt_port, kind, dev_id)
        self.clients.append(dev)
        wait_until(lambda: any(d["id"] == dev_id and d["online"] for d in self.api("/api/devices")["devices"]),
                   WAIT_S, "%s %s online" % (kind, dev_id))
        return dev

    def observer(self):
        client = Client(self.mqtt_port, "test-observer-%d" % len(self.clients), [ORDER_TOPIC, ERROR_TOPIC])
        self.clients.append(client)
        return client

    def api(self, path):
        status, body = self.hub.get(path)
        assert status == 200, body
        return body

    def post(self, delivery):
        return ch.post(self.hub.http, *delivery)

    def close(self):
        for client in self.clients:
            client.close()
        code = self.hub.stop()
        if self.mosquitto:
            stop_process(self.mosquitto)
        if self.pos:
            self.pos.close()
        return code


@pytest.fixture(params=["amqtt", "mosquitto"])
def site(request, tmp_path):
    s = Site(tmp_path, request.param)
    try:
        yield s
    finally:
        code = s.close()
    assert code == 0, "the hub did not stop cleanly:\n" + s.hub.log()[-3000:]


def tickets(kds, match):
    """Wait until the display's newest snapshot matches; return {ticket id: ticket}."""
    snap = kds.expect("tickets", lambda p: match({t["id"]: t for t in p["tickets"]}), latest=True)
    return {t["id"]: t for t in snap["tickets"]}


def observer_orders(observer, order_id):
    with observer._cond:
        return [p for t, p in observer.received if t == ORDER_TOPIC and p["order"] == order_id]


def wait_statuses(observer, order_id, want):
    wait_until(lambda: [p["status"] for p in observer_orders(observer, order_id)] == want, WAIT_S,
               "order %s statuses %s" % (order_id, want))


def test_webhook_to_stations_bumps_pickup_and_status_webhook(site):
    wok, cold = site.device("kds", "wok"), site.device("kds", "cold")
    runner = site.device("pager", "P3")
    seen = site.observer()
    roo = ch.deliveroo(SECRETS["deliveroo"], "gb:32498deb-d730-4dfb-b034-38f2d24f5bfd",
                       [("宫保鸡丁", 2, ["少辣"]), ("凉拌黄瓜", 1, [])], notes="花生过敏")
    status, got = site.post(roo)
    assert status == 201 and got["order"] == "O1"
    status, again = site.post(roo)
    assert (status, again["result"]) == (200, "duplicate")

    assert tickets(wok, lambda t: list(t) == ["O1-wok"])["O1-wok"]["items"] == [
        {"name": "宫保鸡丁", "qty": 2, "mods": ["少辣"]}]
    cold_ticket = tickets(cold, lambda t: list(t) == ["O1-cold"])["O1-cold"]
    assert (cold_ticket["also"], cold_ticket["allergy"], cold_ticket["allergy_ack"]) == (["wok"], "花生过敏", False)
    wait_statuses(seen, "O1", ["received", "cooking"])

    # a forged delivery is refused over real HTTP too
    forged = ch.deliveroo("guessed", "gb:forged", [("宫保鸡丁", 1, [])])
    status, body = site.post(forged)
    assert status == 401 and "does not match" in body["error"]

    wok.send("bump", {"id": "O1-wok", "action": "bump"})
    err = seen.wait_for(ERROR_TOPIC, lambda p: p["topic"] == wok.topic("bump"))
    assert err["reason"] == "allergy: acknowledge 花生过敏 on O1-wok before bumping it"
    wok.send("bump", {"id": "O1-wok", "action": "allergy_ack"})
    tickets(wok, lambda t: t.get("O1-wok", {}).get("allergy_ack") is True)
    wok.send("bump", {"id": "O1-wok", "action": "bump"})
    tickets(wok, lambda t: t == {})
    wok.send("bump", {"id": "last", "action": "recall"})
    tickets(wok, lambda t: list(t) == ["O1-wok"])
    wok.send("bump", {"id": "O1-wok", "action": "bump"})
    tickets(wok, lambda t: t == {})
    cold.send("bump", {"id": "O1-cold", "action": "allergy_ack"})
    cold.send("bump", {"id": "O1-cold", "action": "bump"})
    tickets(cold, lambda t: t == {})
    wait_statuses(seen, "O1", ["received", "cooking", "ready"])

    task = runner.tasks(lambda ids: ids == ["pickup:O1"])["tasks"][0]
    assert (task["kind"], task["prio"], task["note"]) == ("pickup", 7, "宫保鸡丁×2 凉拌黄瓜")
    assert site.api("/api/board") == {"preparing": [], "ready": ["7458"]}
    runner.send("act", {"id": "pickup:O1", "action": "done"})
    runner.tasks(lambda ids: ids == [])
    wait_statuses(seen, "O1", ["received", "cooking", "ready", "picked_up"])

    hooks = site.pos.wait(HOOK_SECRET, lambda s: [b["status"] for b in s] == ["received", "cooking", "ready",
                                                                              "picked_up"],
                          "status webhooks received, cooking, ready, picked_up")
    assert {(b["order"], b["channel"], b["ref"], b["event"]) for b in hooks} == {
        ("O1", "deliveroo", "gb:32498deb-d730-4dfb-b034-38f2d24f5bfd", "order.status")}
    assert len({b["id"] for b in hooks}) == 4
    order = site.api("/api/orders/O1")
    assert (order["status"], order["runner"], order["allergy"]) == ("picked_up", "P3", "花生过敏")
    assert [t["state"] for t in order["tickets"]] == ["bumped", "bumped", "bumped"]


def test_a_display_gets_its_tickets_whenever_it_connects(site):
    toast = ch.toast(SECRETS["toast"], "guid-7", [("s1", "凉拌黄瓜", 1, [], False), ("s2", "口水鸡", 1, ["多辣"], False)])
    assert site.post(toast)[0] == 201
    cold = site.device("kds", "cold")  # connects after the order: the retained snapshot
    assert [i["name"] for i in tickets(cold, lambda t: "O1-cold" in t)["O1-cold"]["items"]] == ["凉拌黄瓜", "口水鸡"]
    cold.close()
    site.hub.stop()
    site.start_hub()  # the embedded broker lost its retained messages; the hub sends them again
    again = site.device("kds", "cold")
    assert "O1-cold" in tickets(again, lambda t: "O1-cold" in t)
    assert site.api("/api/tickets?station=cold")["tickets"][0]["id"] == "O1-cold"


def test_status_webhook_is_retried_after_a_500(tmp_path):
    s = Site(tmp_path, "amqtt", codes=[500])
    try:
        s.device("kds", "cold")
        status, _ = s.post(ch.deliveroo(SECRETS["deliveroo"], "gb:retry", [("凉拌黄瓜", 1, [])]))
        assert status == 201
        s.pos.wait(HOOK_SECRET, lambda got: [b["status"] for b in got] == ["received", "cooking"],
                   "received and cooking after a retry")
        with s.pos._lock:
            first = [(json.loads(body)["status"], code) for _h, body, code in s.pos.received]
        assert first[:2] == [("received", 500), ("received", 200)]
        assert "attempt 1 failed (HTTP 500); retrying in 1 s" in s.hub.log()
    finally:
        assert s.close() == 0


def test_the_status_outbox_survives_a_restart(tmp_path):
    port = free_port()
    s = Site(tmp_path, "amqtt", hook_port=port)  # nothing listens on the POS's port yet
    try:
        s.device("kds", "wok")
        assert s.post(ch.deliveroo(SECRETS["deliveroo"], "gb:outbox", [("宫保鸡丁", 1, [])]))[0] == 201
        wait_until(lambda: "status webhook: event 1 attempt 2 failed" in s.hub.log(), 15, "two failed attempts")
        assert s.hub.stop() == 0
        s.pos = ch.StatusServer(port=port)
        s.start_hub()
        got = s.pos.wait(HOOK_SECRET, lambda b: [x["status"] for x in b] == ["received", "cooking"],
                         "the outbox delivered after the restart")
        assert [b["order"] for b in got] == ["O1", "O1"]
        assert "status webhook: 2 deliveries waiting in the outbox" in s.hub.log()
    finally:
        assert s.close() == 0


def test_pickup_board_is_live(tmp_path):
    s = Site(tmp_path, "amqtt")
    try:
        with urllib.request.urlopen(s.hub.http + "/board", timeout=5) as resp:
            page = resp.read().decode("utf-8")
        assert "EventSource" in page and "请取餐" in page
        stream = urllib.request.urlopen(s.hub.http + "/board/events", timeout=10)
        try:
            def event():
                lines = []
                for _ in range(50):
                    line = stream.readline().decode("utf-8").rstrip("\n")
                    if line.startswith("data: "):
                        return json.loads(line[6:])
                    lines.append(line)
                raise AssertionError("no event in %r" % lines)
            assert event() == {"preparing": [], "ready": []}
            s.post(ch.deliveroo(SECRETS["deliveroo"], "gb:board", [("凉拌黄瓜", 1, [])], display="4242"))
            assert event() == {"preparing": ["4242"], "ready": []}
            assert s.close() == 0  # a board left open does not hold the hub up
        finally:
            stream.close()
    finally:
        if s.hub.alive():
            s.close()
