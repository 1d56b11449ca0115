"""A dinner rush end to end on the real firmware (compiled .mpy under `micropython -X
heapsize=112000`): three table buttons and three pagers, the real hub with its embedded
broker and a floor file. Ranking and vibration by priority, a reminder acknowledged on the
button at once, ack and scroll, escalation to the manager, reassignment when a shift ends,
cancel by holding done, battery on the pager's screen, and the metrics that result."""
import json
import time
import urllib.request

from tests.brokers import free_port, start_hub, wait_until
from tests.simdev import SimDevice

WAIT = 20
REMIND_S = 10.5  # firmware/apps/table_button.py REMIND_MS: one reminder per 10 s at most
STEP_S = 3
FLOOR = {
    "call_types": {
        "waiter": {"prio": 6, "escalation": {"steps": [{"after": STEP_S, "do": "repage"},
                                                       {"after": STEP_S, "do": "next"},
                                                       {"after": STEP_S, "do": "manager"}]}},
        "bill": {"prio": 6},
        "water": {"prio": 4, "to": "runner"},
        "napkins": {"prio": 3, "to": "runner"},
    },
    "sections": {"A": ["T1", "T2"], "B": ["T3"]},
    "waiters": [
        {"id": "ana", "name": "Ana", "role": "server", "pager": "P1", "sections": ["A"]},
        {"id": "ben", "name": "Ben", "role": "server", "pager": "P2", "sections": ["B"]},
        {"id": "dora", "name": "Dora", "role": "manager", "pager": "P3"},
    ],
    "escalation": {"steps": [{"after": 600, "do": "repage"}]},  # only "waiter" escalates in this test
}


def put(hub, path, body):
    req = urllib.request.Request(hub.http + path, data=json.dumps(body).encode("utf-8"), method="PUT",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read().decode("utf-8"))


def api(hub, path):
    status, body = hub.get(path)
    assert status == 200, body
    return body


def call_of(table, call_type, state=None):
    """The id of the table's open call of a type (waiting until it has one, in a state)."""
    def find(s):
        c = s["app"]["calls"].get(call_type)
        return c and (state is None or c[1] == state)
    s = table.wait_for(find, WAIT, "%s %s call %s" % (table.id, call_type, state or ""))
    return s["app"]["calls"][call_type][0]


def press(dev, button):
    """A firm press (250 ms; the sim's default 80 ms can be missed on a loaded machine)."""
    assert dev.request({"press": button, "ms": 250}) == {"ok": True}


def rows(pager_state, table):
    return [line for line in pager_state["screen"] if line.startswith(table + " ")]


def test_dinner_rush_on_real_firmware(tmp_path):
    port, http = free_port(), free_port()
    floor_path = tmp_path / "floor.json"
    floor_path.write_text(json.dumps(FLOOR))
    hub = start_hub(tmp_path, port, http, extra=["--floor", str(floor_path)])
    devices = []
    try:
        p1, p2, p3 = [SimDevice("pager", p, port, tmp_path / "devices", hb=5).start() for p in ("P1", "P2", "P3")]
        t1, t2, t3 = [SimDevice("table", t, port, tmp_path / "devices", hb=5).start() for t in ("T1", "T2", "T3")]
        devices += [p1, p2, p3, t1, t2, t3]
        wait_until(lambda: all(s["online"] for s in api(hub, "/api/floor/staff")["staff"]), WAIT,
                   "all three pagers online at the hub")
        for t in (t1, t2, t3):
            t.wait_for(lambda s: s["connected"], WAIT)

        # --- ranking: priority, then age; vibration by priority ---------------------
        press(t1, "napkins")  # no runner on duty: Ana, the server of section A
        napkins = call_of(t1, "napkins", "seen")
        s = p1.wait_for(lambda s: s["app"]["ids"] == [napkins], WAIT, "napkins on P1")
        assert s["last_vibration"] == [300]
        press(t2, "bill")
        first_ask = time.monotonic()
        bill = call_of(t2, "bill", "seen")
        s = p1.wait_for(lambda s: s["app"]["ids"] == [bill, napkins], WAIT, "the bill ranked above the napkins")
        assert s["last_vibration"] == [250, 150, 250]
        assert s["screen"].index(rows(s, "T2")[0]) < s["screen"].index(rows(s, "T1")[0])
        assert t2.state()["leds"]["bill"] == "slow"  # seen

        # --- escalation: repage, the next waiter, then the manager -------------------
        press(t3, "waiter")
        waiter = call_of(t3, "waiter", "seen")
        p2.wait_for(lambda s: s["app"]["ids"] == [waiter], WAIT, "T3's call on Ben's pager")
        p2.wait_for(lambda s: rows(s, "T3") and "!" in rows(s, "T3")[0], WAIT, "Ben paged again")
        p1.wait_for(lambda s: waiter in s["app"]["ids"], WAIT, "the next waiter: Ana")
        p2.wait_for(lambda s: s["app"]["ids"] == [], WAIT, "gone from Ben's pager")
        s = p3.wait_for(lambda s: s["app"]["ids"] == [waiter], WAIT, "the manager paged too")
        assert rows(s, "T3") and s["vibrations"] >= 1
        press(p3, "ack")
        t3.wait_for(lambda s: s["leds"]["waiter"] == "on", WAIT, "T3 told the manager is on the way")
        p1.wait_for(lambda s: waiter not in s["app"]["ids"], WAIT, "the manager's ack takes it off Ana's pager")
        call = next(c for c in api(hub, "/api/calls")["calls"] if c["id"] == waiter)
        assert (call["state"], call["waiter"]) == ("acked", "P3")

        # --- a reminder: the button answers at once, the hub raises the urgency ------------
        time.sleep(max(0, first_ask + REMIND_S - time.monotonic()))  # the button's own rate limit
        press(t2, "bill")
        t2.wait_for(lambda s: s["leds"]["bill"] == "fast", 2, "the bill LED flashing at once")
        t2.wait_for(lambda s: s["leds"]["bill"] == "slow", 5, "the LED back to seen")
        s = p1.wait_for(lambda s: s["app"]["seq"] and rows(s, "T2") and "!" in rows(s, "T2")[0], WAIT,
                        "the bill paged again")
        assert s["last_vibration"] == [400, 150, 400, 150, 400]  # prio 7 now
        call = next(c for c in api(hub, "/api/calls")["calls"] if c["id"] == bill)
        assert (call["reminders"], call["prio"], call["state"]) == (1, 7, "assigned")
        assert len(api(hub, "/api/calls")["calls"]) == 3  # a reminder is not a second task

        # --- ack and scroll ---------------------------------------------------------
        assert p1.state()["app"]["selected"] == 1  # the cursor stayed on the napkins
        press(p1, "ack")
        t1.wait_for(lambda s: s["leds"]["napkins"] == "on", WAIT, "T1 told the waiter is on the way")
        press(p1, "next")
        p1.wait_for(lambda s: s["app"]["selected"] == 0, WAIT)
        press(p1, "ack")
        t2.wait_for(lambda s: s["leds"]["bill"] == "on", WAIT, "T2 told the waiter is on the way")
        p1.wait_for(lambda s: len([l for l in s["screen"] if "*" in l]) == 2, WAIT, "both acked on P1")

        # --- a shift ends: Ana's calls move to Ben, who takes section A ---------------
        now = time.localtime()
        ended = "%02d:%02d-%02d:%02d" % ((now.tm_hour + 21) % 24, now.tm_min, (now.tm_hour + 23) % 24, now.tm_min)
        doc = api(hub, "/api/floor")
        doc["waiters"][0]["shifts"] = [ended]
        doc["waiters"][1]["sections"] = ["A", "B"]
        assert put(hub, "/api/floor", doc)["moved"] == 2
        p2.wait_for(lambda s: s["app"]["ids"] == [bill, napkins], WAIT, "Ana's calls on Ben's pager")
        p1.wait_for(lambda s: s["app"]["ids"] == [], WAIT, "Ana's pager empty")
        t1.wait_for(lambda s: s["leds"]["napkins"] == "slow", WAIT, "T1 back to seen: Ana is not coming")
        assert json.loads(floor_path.read_text())["waiters"][0]["shifts"] == [ended]

        # --- cancel from the pager (hold done), done; battery on the screen ----------
        press(p2, "next")
        p2.wait_for(lambda s: s["app"]["selected"] == 1, WAIT)
        p2.request({"press": "done", "ms": 1500})
        t1.wait_for(lambda s: "napkins" not in s["app"]["calls"] and s["leds"]["napkins"] == "off", WAIT,
                    "T1's napkins cancelled from the pager")
        p2.wait_for(lambda s: s["app"]["ids"] == [bill], WAIT)
        press(p2, "done")
        t2.wait_for(lambda s: "bill" not in s["app"]["calls"], WAIT, "T2's bill done")
        states = {c["id"]: c["state"] for c in api(hub, "/api/calls")["calls"]}
        assert states == {napkins: "cancelled", bill: "done", waiter: "acked"}
        p2.request({"set": {"battery": 42}})
        p2.wait_for(lambda s: "42%" in s["screen"], WAIT, "battery on the pager's screen")
        wait_until(lambda: any(d["id"] == "P2" and d["battery"] == 42 for d in api(hub, "/api/devices")["devices"]),
                   WAIT, "the battery level reported to the hub")

        m = api(hub, "/api/metrics")
        assert m["all"]["escalations"] == {"repage": 1, "next": 1, "manager": 1, "total": 3}
        assert m["by_waiter"]["ben"]["escalations"]["total"] == 2  # repage and next while Ben held it
        assert m["by_waiter"]["dora"]["raise_to_ack_s"]["n"] == 1
        assert m["by_waiter"]["ben"]["done"] == 1 and m["all"]["cancelled"] == 1
        for p in (p1, p2, p3):
            assert p.state()["heap_free"] > 8000, p.state()["heap_free"]
    finally:
        for d in devices:
            d.stop()
        code = hub.stop()
    assert code == 0, hub.log()[-3000:]
