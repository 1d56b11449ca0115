"""An in-process hub on a real SQLite store with a fake clock, for the call desk's tests:
events applied one by one, every publish recorded (and checked against the contract)."""
import copy
import threading
import time

import protocol
from hub.core import Hub
from hub.store import Store

# Section A: T1-T4 (Ana), B: T5-T8 (Ben); Cai runs, Dora manages, Eli floats.
FLOOR = {
    "call_types": {
        "waiter": {"prio": 6, "to": "server"},
        "bill": {"prio": 6, "to": "server"},
        "water": {"prio": 4, "to": "runner"},
        "napkins": {"prio": 3, "to": "runner"},
    },
    "sections": {"A": ["T1", "T2", "T3", "T4"], "B": ["T5", "T6", "T7", "T8"]},
    "waiters": [
        {"id": "ana", "name": "Ana", "role": "server", "pager": "P1", "sections": ["A"]},
        {"id": "ben", "name": "Ben", "role": "server", "pager": "P2", "sections": ["B"]},
        {"id": "cai", "name": "Cai", "role": "runner", "pager": "P3"},
        {"id": "dora", "name": "Dora", "role": "manager", "pager": "P4"},
        {"id": "eli", "name": "Eli", "role": "server", "pager": "P5"},
    ],
    "escalation": {"steps": [{"after": 40, "do": "repage"}, {"after": 40, "do": "next"},
                             {"after": 40, "do": "manager"}], "repeat": 40},
    "max_tasks": 3,
    "reminder_boost": 1,
}
PAGERS = ("P1", "P2", "P3", "P4", "P5")
# Friday 10 January 2025, 12:00 local time: shifts in tests are relative to this.
NOON = time.mktime((2025, 1, 10, 12, 0, 0, 0, 0, -1))


def floor_doc(**changes):
    doc = copy.deepcopy(FLOOR)
    doc.update(changes)
    return doc


class FakeBus:
    """Stands in for the MQTT link: records what the hub sends, checked against the contract."""
    connected = True
    url = "mqtt://fake"

    def __init__(self):
        self.sent = []
        self.lock = threading.Lock()

    def publish(self, kind, device, message, payload):
        protocol.encode(message, payload)  # everything the hub sends keeps the contract
        with self.lock:
            self.sent.append((kind, device, message, payload))


class Dining:
    """The hub on a database file; restart() reopens it as after a crash."""

    def __init__(self, path, doc=FLOOR, now=NOON):
        self.path = path
        self.now = now
        self.bus = FakeBus()
        self.tables = set()
        self.open()
        if doc is not None:
            self.set_floor(doc)

    def open(self):
        self.store = Store(self.path)
        self.hub = Hub(self.store, "demo", clock=lambda: self.now)
        self.hub.bus = self.bus

    def restart(self):
        self.store.close()
        self.open()
        self.hub.apply(self.hub.restore)

    def close(self):
        self.store.close()

    def apply(self, step, *args):
        assert self.hub.apply(step, *args), "the event failed; see the log"

    def set_floor(self, doc):
        self.apply(self.hub.calls.set_floor, doc)

    def up(self, kind, device, message, payload):
        self.apply(self.hub.uplink, kind, device, message, payload)

    def online(self, *pagers, hb=3600):
        for pager in pagers:
            self.up("pager", pager, "status", {"online": True, "hb": hb, "battery": 90})

    def offline(self, pager):
        self.up("pager", pager, "status", {"online": False})

    def press(self, table, call_id, call_type):
        if table not in self.tables:  # heard, with a heartbeat slow enough never to look silent
            self.tables.add(table)
            self.up("table", table, "status", {"online": True, "hb": 3600})
        self.up("table", table, "call", {"id": call_id, "action": "raise", "type": call_type})

    def cancel(self, table, call_id):
        self.up("table", table, "call", {"id": call_id, "action": "cancel"})

    def act(self, pager, task_id, action):
        self.up("pager", pager, "act", {"id": task_id, "action": action})

    def tick(self, seconds=0):
        self.now += seconds
        self.apply(self.hub.tick)

    # --- what the hub said and holds ----------------------------------------
    def sent(self, message, device=None):
        return [p for _k, d, m, p in self.bus.sent if m == message and device in (None, d)]

    def snapshot(self, pager):
        snaps = self.sent("tasks", pager)
        return snaps[-1]["tasks"] if snaps else []

    def tasks(self, pager):
        """Call task ids of the pager's newest snapshot, most urgent first."""
        return [t["id"] for t in self.snapshot(pager) if t["kind"] == "call"]

    def feedback(self, table):
        return [(p["id"], p["state"], p.get("by")) for p in self.sent("feedback", table)]

    def call(self, call_id):
        return self.hub.calls.get(call_id)

    def holder(self, call_id):
        return self.call(call_id)["pager"]

    def events(self, call_id):
        return [(e["event"], e["device"]) for e in
                self.store.query("SELECT event, device FROM call_events WHERE call_id = ? ORDER BY n", (call_id,))]
