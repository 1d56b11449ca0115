"""Orders, stations and the intake API in-process: the hub's core thread and Flask's test
client, with a bus that records what would be published (tests/test_orders_mqtt.py runs
the same paths through real brokers)."""
import json

import pytest

from hub.api import create_app
from hub.core import Hub
from hub.floor_api import in_core
from hub.stations import DEMO_MENU, Menu, MenuError, load_menu
from hub.store import Store

from tests.service import FakeBus

ALLERGY = "花生过敏"


class Kitchen:
    def __init__(self, path, menu=None, secrets=None, now=1_700_000_000.0):
        self.now = now
        self.store = Store(path)
        self.hub = Hub(self.store, "demo", clock=lambda: self.now, menu=menu, channel_secrets=secrets)
        self.hub.bus = FakeBus()
        self.hub.start()
        self.http = create_app(self.hub).test_client()

    def close(self):
        self.hub.stop()
        self.store.close()

    def up(self, kind, device, message, payload):
        in_core(self.hub, self.hub.uplink, kind, device, message, payload)

    def online(self, kind, *devices):
        for device in devices:
            self.up(kind, device, "status", {"online": True, "hb": 30})

    def bump(self, device, ticket, action="bump"):
        self.up("kds", device, "bump", {"id": ticket, "action": action})

    def order(self, body, code=None):
        resp = self.http.post("/api/orders", data=json.dumps(body, ensure_ascii=False).encode(),
                              content_type="application/json")
        if code is not None:
            assert resp.status_code == code, resp.json
        return resp.json

    def sent(self, message, device=None):
        with self.hub.bus.lock:
            return [p for _k, d, m, p in self.hub.bus.sent if m == message and device in (None, d)]

    def snap(self, device):
        """The newest tickets snapshot published to a kds, as {ticket id: ticket}, and the payload."""
        payload = self.sent("tickets", device)[-1]
        assert payload == self.hub.stations.snapshot(device)
        return {t["id"]: t for t in payload["tickets"]}, payload

    def statuses(self, order_id):
        return [p["status"] for p in self.sent("order") if p["order"] == order_id]

    def get(self, path):
        resp = self.http.get(path)
        assert resp.status_code == 200, resp.json
        return resp.json

    def tasks(self, pager):
        return [t["id"] for t in self.sent("tasks", pager)[-1]["tasks"]]


@pytest.fixture
def kitchen(tmp_path):
    k = Kitchen(tmp_path / "hub.sqlite3")
    k.online("kds", "wok", "cold", "pastry", "expo")
    yield k
    k.close()


def lunch(ref="A-1001", **extra):
    body = {"channel": "pos", "ref": ref, "number": "1001", "table": "T3", "allergy": ALLERGY,
            "items": [{"id": "1", "name": "宫保鸡丁", "qty": 2, "mods": ["少辣"]},
                      {"id": "2", "name": "凉拌黄瓜", "qty": 1},
                      {"id": "3", "name": "小笼包", "qty": 1, "note": "快一点"}]}
    body.update(extra)
    return body


def test_routing_splits_an_order_into_station_tickets(kitchen):
    body = lunch()
    body["items"] += [{"id": "4", "name": "绿茶", "qty": 1, "category": "饮品"},   # by category: cold
                      {"id": "5", "name": "今日特价", "qty": 1}]                    # unknown: the default, wok
    got = kitchen.order(body, 201)
    assert got["result"] == "created" and got["order"] == "O1"
    assert sorted(got["tickets"]) == ["O1-cold", "O1-expo", "O1-pastry", "O1-wok"]
    wok, payload = kitchen.snap("wok")
    assert (payload["station"], payload["warn"], payload["late"]) == ("wok", 300, 480)
    ticket = wok["O1-wok"]
    assert [(i["name"], i["qty"], i.get("mods")) for i in ticket["items"]] == [("宫保鸡丁", 2, ["少辣"]),
                                                                              ("今日特价", 1, None)]
    assert ticket["also"] == ["cold", "pastry"] and ticket["allergy"] == ALLERGY and not ticket["allergy_ack"]
    assert (ticket["num"], ticket["table"], ticket["ch"], ticket["order"]) == ("1001", "T3", "pos", "O1")
    assert "changed" not in ticket
    cold, _ = kitchen.snap("cold")
    assert [i["name"] for i in cold["O1-cold"]["items"]] == ["凉拌黄瓜", "绿茶"]
    assert cold["O1-cold"]["also"] == ["pastry", "wok"]
    pastry, payload = kitchen.snap("pastry")
    assert pastry["O1-pastry"]["items"] == [{"name": "小笼包", "qty": 1, "mods": ["快一点"]}]
    assert (payload["warn"], payload["late"]) == (480, 720)  # the demo menu's pastry thresholds
    expo, _ = kitchen.snap("expo")
    assert len(expo["O1-expo"]["items"]) == 5 and expo["O1-expo"]["also"] == ["cold", "pastry", "wok"]
    # on displays that are online: received, then cooking
    assert kitchen.statuses("O1") == ["received", "cooking"]
    assert kitchen.get("/api/tickets?station=cold")["tickets"] == [cold["O1-cold"]]
    assert kitchen.http.get("/api/tickets?station=grill").status_code == 400
    lines = kitchen.get("/api/orders/O1")["items"]
    assert [(line["name"], line["station"]) for line in lines] == [
        ("宫保鸡丁", "wok"), ("凉拌黄瓜", "cold"), ("小笼包", "pastry"), ("绿茶", "cold"), ("今日特价", "wok")]


def test_received_stays_until_a_display_is_online(tmp_path):
    k = Kitchen(tmp_path / "hub.sqlite3")
    try:
        k.order(lunch(), 201)
        assert k.statuses("O1") == ["received"]
        assert k.snap("wok")[0]["O1-wok"]  # retained for whenever it connects
        k.online("kds", "cold")
        assert k.statuses("O1") == ["received", "cooking"]
    finally:
        k.close()


@pytest.mark.parametrize("body, field", [
    ({"ref": "A1", "items": [{"name": "宫保鸡丁", "qty": 1}]}, "channel"),
    ({"channel": "POS!", "ref": "A1", "items": [{"name": "宫保鸡丁", "qty": 1}]}, "channel"),
    ({"channel": "pos", "items": [{"name": "宫保鸡丁", "qty": 1}]}, "ref"),
    ({"channel": "pos", "ref": "A1", "items": []}, "items"),
    ({"channel": "pos", "ref": "A1", "items": [{"name": "宫保鸡丁", "qty": 0}]}, "items[0].qty"),
    ({"channel": "pos", "ref": "A1", "items": [{"name": "宫保鸡丁", "qty": "2"}]}, "items[0].qty"),
    ({"channel": "pos", "ref": "A1", "items": [{"name": "宫保鸡丁", "qty": 1}, {"qty": 1}]}, "items[1].name"),
    ({"channel": "pos", "ref": "A1", "items": [{"name": "宫保鸡丁", "qty": 1, "mods": "少辣"}]}, "items[0].mods"),
    ({"channel": "pos", "ref": "A1", "items": [{"name": "宫保鸡丁", "qty": 1, "spicy": True}]}, "items[0].spicy"),
    ({"channel": "pos", "ref": "A1", "items": [{"id": "x", "name": "a", "qty": 1}, {"id": "x", "name": "b", "qty": 1}]},
     "items[1].id"),
    ({"channel": "pos", "ref": "A1", "status": "done", "items": [{"name": "宫保鸡丁", "qty": 1}]}, "status"),
    ({"channel": "pos", "ref": "A1", "allergy": "过" * 161, "items": [{"name": "宫保鸡丁", "qty": 1}]}, "allergy"),
    ({"channel": "pos", "ref": "A1", "items": [{"name": "宫保鸡丁", "qty": 1}], "tip": 3}, "tip"),
    ([1, 2], "body"),
])
def test_bad_bodies_are_400_naming_the_field_and_write_nothing(kitchen, body, field):
    got = kitchen.order(body, 400)
    assert got["field"] == field and got["error"].startswith(field + ": ")
    assert kitchen.get("/api/orders")["orders"] == []
    assert kitchen.sent("order") == [] and kitchen.sent("tickets", "wok")[-1]["tickets"] == []


def test_not_json_is_400(kitchen):
    resp = kitchen.http.post("/api/orders", data=b"\xff{", content_type="application/json")
    assert resp.status_code == 400 and resp.json["error"] == "body: not valid UTF-8 JSON"
    assert kitchen.get("/api/orders")["orders"] == []


def test_the_same_order_twice_is_one_order_and_one_ticket(kitchen):
    kitchen.order(lunch(), 201)
    seq = kitchen.snap("wok")[1]["seq"]
    again = kitchen.order(lunch(), 200)
    assert again["result"] == "duplicate" and again["order"] == "O1"
    assert len(kitchen.get("/api/orders")["orders"]) == 1
    assert list(kitchen.snap("wok")[0]) == ["O1-wok"] and kitchen.snap("wok")[1]["seq"] == seq
    assert kitchen.statuses("O1") == ["received", "cooking"]
    # another channel may reuse the same order id: a different order
    assert kitchen.order(lunch(channel="phone"), 201)["order"] == "O2"


def test_a_modification_updates_the_ticket_and_marks_what_changed(kitchen):
    kitchen.order(lunch(), 201)
    body = lunch()
    body["items"][0]["qty"] = 3                                       # more kung pao
    body["items"][1]["mods"] = ["不要蒜"]                              # cucumber changed
    body["items"].append({"id": "4", "name": "麻婆豆腐", "qty": 1})    # added to wok
    del body["items"][2]                                              # the buns removed
    got = kitchen.order(body, 200)
    assert got["result"] == "updated" and got["changed"] == ["1", "2", "4", "3"]
    wok = kitchen.snap("wok")[0]["O1-wok"]
    assert wok["changed"] is True
    assert [(i["name"], i["qty"], i.get("changed")) for i in wok["items"]] == [("宫保鸡丁", 3, True),
                                                                              ("麻婆豆腐", 1, True)]
    cold = kitchen.snap("cold")[0]["O1-cold"]
    assert cold["items"] == [{"name": "凉拌黄瓜", "qty": 1, "mods": ["不要蒜"], "changed": True}]
    # the only pastry line was removed: that ticket leaves the pastry display
    assert kitchen.snap("pastry")[0] == {}
    assert kitchen.snap("expo")[0]["O1-expo"]["changed"] is True
    assert "pastry" not in wok["also"]
    # bumping clears the marks; a change after the bump brings the ticket back, marked
    kitchen.bump("wok", "O1-wok", "allergy_ack")
    kitchen.bump("wok", "O1-wok")
    assert kitchen.snap("wok")[0] == {}
    body["items"][0]["qty"] = 4
    kitchen.order(body, 200)
    wok = kitchen.snap("wok")[0]["O1-wok"]
    assert [(i["name"], i["qty"], i.get("changed")) for i in wok["items"]] == [("宫保鸡丁", 4, True),
                                                                              ("麻婆豆腐", 1, None)]
    events = [e["event"] for e in kitchen.store.query("SELECT event FROM order_events WHERE order_id = 'O1'")]
    assert events.count("changed") == 2


def test_a_voided_line_is_marked_and_a_voided_order_leaves_every_display(kitchen):
    kitchen.order(lunch(), 201)
    body = lunch()
    body["items"][1]["void"] = True
    kitchen.order(body, 200)
    assert kitchen.snap("cold")[0] == {}  # nothing left to cook at cold
    body["items"].append({"id": "4", "name": "麻婆豆腐", "qty": 1})
    body["items"][0]["void"] = True
    kitchen.order(body, 200)
    wok = kitchen.snap("wok")[0]["O1-wok"]
    assert wok["items"] == [{"name": "宫保鸡丁", "qty": 2, "mods": ["少辣"], "void": True, "changed": True},
                            {"name": "麻婆豆腐", "qty": 1, "changed": True}]
    got = kitchen.order(lunch(status="void", items=[]), 200)
    assert got["result"] == "voided" and got["status"] == "void"
    for station in ("wok", "cold", "pastry", "expo"):
        assert kitchen.snap(station)[0] == {}
    assert kitchen.statuses("O1")[-1] == "void"
    assert kitchen.order(lunch(), 200)["result"] == "ignored"  # a late redelivery does not revive it
    assert kitchen.snap("wok")[0] == {}


def test_a_stale_version_is_ignored(kitchen):
    kitchen.order(lunch(version=5), 201)
    body = lunch(version=4)
    body["items"][0]["qty"] = 9
    assert kitchen.order(body, 200)["result"] == "stale"
    assert kitchen.snap("wok")[0]["O1-wok"]["items"][0]["qty"] == 2


def test_allergy_must_be_acknowledged_before_a_bump(kitchen):
    kitchen.order(lunch(), 201)
    kitchen.bump("wok", "O1-wok")
    error = kitchen.sent("error")[-1]
    assert error["topic"] == "rfm/v1/demo/kds/wok/bump"
    assert error["reason"] == "allergy: acknowledge %s on O1-wok before bumping it" % ALLERGY
    assert "O1-wok" in kitchen.snap("wok")[0]
    kitchen.bump("wok", "O1-wok", "allergy_ack")
    assert kitchen.snap("wok")[0]["O1-wok"]["allergy_ack"] is True
    kitchen.bump("wok", "O1-wok")
    assert kitchen.snap("wok")[0] == {}
    # a changed allergy must be acknowledged again
    kitchen.order(lunch(allergy="花生、虾过敏"), 200)
    cold = kitchen.snap("cold")[0]["O1-cold"]
    assert (cold["allergy"], cold["allergy_ack"], cold["changed"]) == ("花生、虾过敏", False, True)
    # a bump from the wrong station's display is refused too
    kitchen.bump("wok", "O1-cold", "allergy_ack")
    assert kitchen.sent("error")[-1]["reason"] == "id: ticket O1-cold belongs to station cold, wok shows wok"


def test_bumps_from_a_display_outside_the_menu_are_refused(kitchen):
    kitchen.order(lunch(), 201)
    kitchen.online("kds", "grill")
    kitchen.bump("grill", "O1-wok")
    assert kitchen.sent("error")[-1] == {"topic": "rfm/v1/demo/kds/grill/bump",
                                         "reason": "device: kds grill shows no station in the menu"}
    kitchen.bump("wok", "O9-wok")
    assert kitchen.sent("error")[-1]["reason"] == "id: no ticket O9-wok"
    assert kitchen.get("/api/orders/O1")["status"] == "cooking"


def test_line_allergies_reach_their_station_only(kitchen):
    body = {"channel": "pos", "ref": "B1", "items": [{"name": "宫保鸡丁", "qty": 1, "allergy": "花生"},
                                                    {"name": "凉拌黄瓜", "qty": 1}]}
    kitchen.order(body, 201)
    assert kitchen.snap("wok")[0]["O1-wok"]["allergy"] == "宫保鸡丁: 花生"
    assert "allergy" not in kitchen.snap("cold")[0]["O1-cold"]
    kitchen.bump("cold", "O1-cold")
    assert kitchen.snap("cold")[0] == {}


def test_recall_brings_back_the_last_bumps(kitchen):
    for n in range(1, 23):
        kitchen.order({"channel": "pos", "ref": "R%d" % n, "items": [{"name": "凉拌黄瓜", "qty": 1}]}, 201)
        kitchen.bump("cold", "O%d-cold" % n)
    assert kitchen.snap("cold")[0] == {}
    kitchen.bump("cold", "last", "recall")
    assert list(kitchen.snap("cold")[0]) == ["O22-cold"]
    kitchen.bump("cold", "O5-cold", "recall")
    assert list(kitchen.snap("cold")[0]) == ["O5-cold", "O22-cold"]
    kitchen.bump("cold", "O2-cold", "recall")  # 22 bumped; only the last 20 are kept
    assert kitchen.sent("error")[-1]["reason"] == "id: O2-cold is not among the last 20 bumps of station cold"
    assert kitchen.get("/api/orders/O5")["status"] == "cooking"


def test_ready_becomes_a_pickup_task_and_done_is_picked_up(kitchen):
    kitchen.online("pager", "P1", "P3")  # P1 a server, P3 the runner in the demo floor
    kitchen.order(lunch(), 201)
    for station in ("wok", "cold", "pastry"):
        kitchen.bump(station, "O1-" + station, "allergy_ack")
    kitchen.bump("wok", "O1-wok")
    kitchen.bump("cold", "O1-cold")
    assert kitchen.get("/api/orders/O1")["status"] == "cooking"
    assert kitchen.snap("expo")[0]["O1-expo"]["also"] == ["pastry"]
    kitchen.bump("pastry", "O1-pastry")
    assert kitchen.statuses("O1") == ["received", "cooking", "ready"]
    task = kitchen.sent("tasks", "P3")[-1]["tasks"][0]
    assert task == {"id": "pickup:O1", "kind": "pickup", "table": "T3", "type": "pickup", "prio": 7, "age": 0,
                    "state": "assigned", "page": 1, "note": "宫保鸡丁×2 凉拌黄瓜 小笼包"}
    assert kitchen.tasks("P1") == []
    assert kitchen.get("/api/board") == {"preparing": [], "ready": ["1001"]}
    kitchen.up("pager", "P3", "act", {"id": "pickup:O1", "action": "ack"})
    assert kitchen.sent("tasks", "P3")[-1]["tasks"][0]["state"] == "acked"
    kitchen.up("pager", "P3", "act", {"id": "pickup:O1", "action": "done"})
    assert kitchen.tasks("P3") == []
    assert kitchen.statuses("O1") == ["received", "cooking", "ready", "picked_up"]
    assert kitchen.snap("expo")[0] == {}
    assert kitchen.get("/api/board") == {"preparing": [], "ready": []}
    assert kitchen.order(lunch(), 200)["result"] == "ignored"


def test_pickups_rank_with_table_calls_and_follow_the_runner(kitchen):
    kitchen.online("pager", "P3")
    kitchen.up("table", "T1", "call", {"id": "T1-1", "action": "raise", "type": "water"})
    kitchen.order({"channel": "pos", "ref": "C1", "items": [{"name": "凉拌黄瓜", "qty": 1}]}, 201)
    kitchen.bump("cold", "O1-cold")
    assert kitchen.tasks("P3") == ["pickup:O1", "T1-1"]  # prio 7 before water's 4
    kitchen.online("pager", "P1")
    kitchen.up("pager", "P3", "status", {"online": False})
    assert kitchen.tasks("P1")[0] == "pickup:O1" and kitchen.tasks("P3") == []
    # a recall takes it back: the order is cooking again and the task leaves the pager
    kitchen.bump("cold", "last", "recall")
    assert "pickup:O1" not in kitchen.tasks("P1")
    assert kitchen.statuses("O1")[-2:] == ["ready", "cooking"]


def test_expo_hands_over_only_a_ready_order(kitchen):
    kitchen.order({"channel": "pos", "ref": "E1", "items": [{"name": "宫保鸡丁", "qty": 1},
                                                          {"name": "凉拌黄瓜", "qty": 1}]}, 201)
    kitchen.bump("expo", "O1-expo")
    assert kitchen.sent("error")[-1]["reason"] == "id: order O1 is still cooking at cold, wok"
    kitchen.bump("wok", "O1-wok")
    kitchen.bump("cold", "O1-cold")
    kitchen.bump("expo", "O1-expo")
    assert kitchen.statuses("O1")[-2:] == ["ready", "picked_up"]
    assert kitchen.snap("expo")[0] == {}


def test_a_display_that_comes_back_gets_its_snapshot_again(kitchen):
    kitchen.order(lunch(), 201)
    first = kitchen.snap("wok")[1]
    kitchen.up("kds", "wok", "status", {"online": False})
    kitchen.online("kds", "wok")
    again = kitchen.snap("wok")[1]
    assert again["seq"] > first["seq"] and again["tickets"] == first["tickets"]


def test_a_snapshot_keeps_to_its_limit_and_says_how_many_more(tmp_path):
    spec = json.loads(json.dumps(DEMO_MENU))
    spec["stations"]["cold"]["max_tickets"] = 2
    k = Kitchen(tmp_path / "hub.sqlite3", menu=Menu(spec))
    try:
        for n in range(5):
            k.order({"channel": "pos", "ref": "M%d" % n, "items": [{"name": "凉拌黄瓜", "qty": 1}]}, 201)
        tickets, payload = k.snap("cold")
        assert list(tickets) == ["O1-cold", "O2-cold"] and payload["more"] == 3
        k.bump("cold", "O1-cold")
        assert list(k.snap("cold")[0]) == ["O2-cold", "O3-cold"] and k.snap("cold")[1]["more"] == 2
    finally:
        k.close()


def test_ticket_age_counts_from_the_order(kitchen):
    kitchen.order(lunch(), 201)
    kitchen.now += 330
    kitchen.order(lunch(allergy="none"), 200)
    assert kitchen.snap("wok")[0]["O1-wok"]["age"] == 330


@pytest.mark.parametrize("spec, message", [
    ({}, "stations: must be a non-empty object"),
    ({"stations": {"wok": {"expo": True}}}, "stations: at least one station must not be an expo"),
    ({"stations": {"w k": {}}}, "stations.w k: a station name is"),
    ({"stations": {"wok": {"devices": "K1"}}}, "stations.wok.devices: must be a list"),
    ({"stations": {"wok": {"warn_min": 9, "late_min": 3}}}, "stations.wok.late_min: must be a number from 9"),
    ({"stations": {"wok": {"devices": ["K1"]}, "cold": {"devices": ["K1"]}}},
     "stations.cold.devices: K1 already shows station wok"),
    ({"stations": {"wok": {}}, "items": {"宫保鸡丁": "grill"}}, "items.宫保鸡丁: 'grill' is not a kitchen station"),
    ({"stations": {"wok": {"colour": "red"}}}, "stations.wok.colour: unknown field"),
])
def test_menu_errors_name_the_entry(spec, message):
    with pytest.raises(MenuError) as err:
        Menu(spec)
    assert str(err.value).startswith(message)


def test_menu_file(tmp_path):
    path = tmp_path / "menu.json"
    path.write_text(json.dumps({"stations": {"烤": {}}}, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(MenuError, match="menu.json: stations.烤: a station name"):
        load_menu(str(path))
    path.write_text(json.dumps({"stations": {"grill": {"devices": ["K1"], "warn_min": 4}},
                                "items": {"烤鸭": "grill"}}, ensure_ascii=False), encoding="utf-8")
    menu = load_menu(str(path))
    assert menu.route("烤鸭") == "grill" and menu.stations["grill"].late_s == 480
    assert menu.device_station == {"K1": "grill"}
