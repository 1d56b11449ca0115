"""The hub's logic without a broker: events applied in-process, publishes recorded."""
import pytest

from hub.core import Hub
from hub.store import Store

from tests.service import FakeBus


class Floor:
    def __init__(self, path):
        self.path = path
        self.now = 1_700_000_000.0
        self.start()

    def start(self):
        """(Re)open the hub on the same database, as after a restart."""
        self.store = Store(self.path)
        self.hub = Hub(self.store, "demo", clock=lambda: self.now)
        self.hub.bus = FakeBus()

    def restart(self):
        self.store.close()
        self.start()
        self.hub.apply(self.hub.restore)

    def up(self, kind, device, message, payload):
        self.hub.apply(self.hub.uplink, kind, device, message, payload)

    def online(self, kind, device, hb=30):
        self.up(kind, device, "status", {"online": True, "hb": hb})

    def raise_(self, table, call_id, call_type="water"):
        self.up("table", table, "call", {"id": call_id, "action": "raise", "type": call_type})

    def act(self, pager, task_id, action):
        self.up("pager", pager, "act", {"id": task_id, "action": action})

    def sent(self, message, device=None):
        return [p for _k, d, m, p in self.hub.bus.sent if m == message and device in (None, d)]

    def tasks(self, pager):
        """Task ids of the pager's newest snapshot."""
        return [t["id"] for t in self.sent("tasks", pager)[-1]["tasks"]]

    def feedback(self, table):
        return [(p["id"], p["state"], p.get("by")) for p in self.sent("feedback", table)]

    def call(self, call_id):
        return self.hub.calls.get(call_id)

    def tick(self, seconds):
        self.now += seconds
        self.hub.apply(self.hub.tick)


@pytest.fixture
def floor(tmp_path):
    f = Floor(tmp_path / "hub.sqlite3")
    yield f
    f.store.close()


def test_raise_ack_done(floor):
    floor.online("pager", "P1")
    floor.raise_("T1", "T1-1", "water")
    assert floor.call("T1-1")["state"] == "assigned"
    assert floor.feedback("T1") == [("T1-1", "seen", None)]
    snap = floor.sent("tasks", "P1")[-1]
    assert snap["tasks"] == [{"id": "T1-1", "kind": "call", "table": "T1", "type": "water", "prio": 4,
                              "age": 0, "state": "assigned", "page": 1}]
    floor.now += 12
    floor.act("P1", "T1-1", "ack")
    assert floor.feedback("T1")[-1] == ("T1-1", "on_the_way", "P1")
    last = floor.sent("tasks", "P1")[-1]
    assert last["seq"] > snap["seq"]
    assert last["tasks"][0]["state"] == "acked" and last["tasks"][0]["age"] == 12
    floor.act("P1", "T1-1", "done")
    assert floor.feedback("T1")[-1] == ("T1-1", "done", "P1")
    assert floor.tasks("P1") == []
    call = floor.call("T1-1")
    assert call["state"] == "done" and call["pager"] == "P1"
    assert call["acked_at"] == call["raised_at"] + 12 == call["done_at"]


def test_repeats_are_no_ops(floor):
    floor.online("pager", "P1")
    floor.raise_("T1", "T1-1")
    floor.raise_("T1", "T1-1")  # QoS 1 DUP
    assert floor.tasks("P1") == ["T1-1"]
    assert len(floor.hub.calls.list()) == 1
    floor.act("P1", "T1-1", "ack")
    sent = len(floor.hub.bus.sent)
    floor.act("P1", "T1-1", "ack")
    assert len(floor.hub.bus.sent) == sent
    floor.act("P1", "T1-1", "done")
    sent = len(floor.hub.bus.sent)
    floor.act("P1", "T1-1", "done")
    floor.act("P1", "T1-1", "ack")
    assert len(floor.hub.bus.sent) == sent
    assert floor.call("T1-1")["state"] == "done"


def test_second_raise_of_same_type_is_a_reminder(floor):
    floor.online("pager", "P1")
    floor.raise_("T1", "T1-1", "bill")
    floor.raise_("T1", "T1-2", "bill")
    floor.raise_("T1", "T1-2", "bill")  # a DUP of the reminder counts once
    floor.raise_("T1", "T1-3", "water")  # another type is another call
    assert floor.tasks("P1") == ["T1-1", "T1-3"]  # bill outranks water
    assert floor.call("T1-1")["reminders"] == 1
    assert floor.call("T1-2") is None
    floor.act("P1", "T1-1", "done")
    assert floor.feedback("T1")[-1] == ("T1-2", "done", "P1")  # under the newest id the table used
    floor.raise_("T1", "T1-4", "bill")  # the bill call is over: a new one
    assert floor.call("T1-4")["state"] == "assigned"


def test_section_server_least_loaded_and_ranking(floor):
    floor.online("pager", "P1")  # the demo floor: P1 serves section A (T1-T6), P2 section B
    floor.online("pager", "P2")
    floor.raise_("T1", "T1-1", "napkins")
    floor.now += 1
    floor.raise_("T7", "T7-1", "water")
    floor.now += 1
    floor.raise_("T20", "T20-1", "bill")  # in no section: the least loaded (a tie: floor order)
    assert floor.tasks("P1") == ["T20-1", "T1-1"]
    assert floor.tasks("P2") == ["T7-1"]


def test_open_until_a_pager_comes_online(floor):
    floor.raise_("T1", "T1-1")
    assert floor.call("T1-1")["state"] == "open"
    assert floor.feedback("T1") == [("T1-1", "seen", None)]
    floor.online("pager", "P1")
    assert floor.call("T1-1")["state"] == "assigned"
    assert floor.tasks("P1") == ["T1-1"]


def test_cancel_from_table_and_pager(floor):
    floor.online("pager", "P1")
    floor.raise_("T1", "T1-1", "water")
    floor.raise_("T1", "T1-2", "napkins")
    floor.up("table", "T1", "call", {"id": "T1-1", "action": "cancel"})
    floor.act("P1", "T1-2", "cancel")
    assert floor.call("T1-1")["state"] == floor.call("T1-2")["state"] == "cancelled"
    assert ("T1-1", "cancelled", None) in floor.feedback("T1")
    assert ("T1-2", "cancelled", None) in floor.feedback("T1")
    assert floor.tasks("P1") == []
    floor.up("table", "T2", "call", {"id": "T1-2", "action": "cancel"})  # not T2's call
    assert floor.feedback("T2") == []


def test_act_on_another_pagers_task_is_ignored(floor):
    floor.online("pager", "P1")
    floor.raise_("T1", "T1-1")
    floor.online("pager", "P2")
    floor.act("P2", "T1-1", "done")
    assert floor.call("T1-1")["state"] == "assigned"
    assert floor.tasks("P2") == []  # P2 is told its own (empty) list again


def test_silent_pager_goes_offline_and_its_tasks_move(floor):
    floor.online("pager", "P1", hb=1)
    floor.raise_("T1", "T1-1")
    floor.act("P1", "T1-1", "ack")
    floor.online("pager", "P2", hb=60)
    floor.tick(2)
    assert floor.hub.devices.get("pager", "P1")["online"] == 1
    floor.tick(1)
    dev = floor.hub.devices.get("pager", "P1")
    assert (dev["online"], dev["reason"]) == (0, "silent")
    assert {"online": False, "reason": "silent"} in floor.sent("status", "P1")
    assert floor.tasks("P1") == []
    assert floor.tasks("P2") == ["T1-1"]
    task = floor.sent("tasks", "P2")[-1]["tasks"][0]
    assert (task["state"], task["page"]) == ("assigned", 2)
    floor.online("pager", "P1", hb=1)  # back: heard again, nothing moves back
    assert floor.call("T1-1")["pager"] == "P2"


def test_tasks_go_back_to_open_with_no_pager_left(floor):
    floor.online("pager", "P1")
    floor.raise_("T1", "T1-1")
    floor.up("pager", "P1", "status", {"online": False})  # its last will
    assert (floor.call("T1-1")["state"], floor.call("T1-1")["pager"]) == ("open", None)
    floor.online("pager", "P2")
    assert floor.tasks("P2") == ["T1-1"]


def test_restart_reloads_calls_and_resends_snapshots(floor):
    floor.online("pager", "P1")
    floor.raise_("T1", "T1-1")
    floor.raise_("T2", "T2-1")
    floor.act("P1", "T2-1", "ack")
    seq = floor.sent("tasks", "P1")[-1]["seq"]
    floor.restart()
    snap = floor.sent("tasks", "P1")[-1]
    assert snap["seq"] > seq
    assert [(t["id"], t["state"]) for t in snap["tasks"]] == [("T1-1", "assigned"), ("T2-1", "acked")]
    floor.act("P1", "T1-1", "done")
    assert floor.call("T1-1")["state"] == "done"


def test_restart_gives_devices_a_fresh_grace_period(floor):
    floor.online("pager", "P1", hb=1)
    floor.now += 3600  # the hub was down for an hour
    floor.restart()
    floor.tick(1)
    assert floor.hub.devices.get("pager", "P1")["online"] == 1
    floor.tick(2)
    assert floor.hub.devices.get("pager", "P1")["online"] == 0


def test_a_failing_event_is_rolled_back_and_dropped(floor, monkeypatch):
    floor.online("pager", "P1")
    sent = len(floor.hub.bus.sent)

    def explode(*args):
        raise RuntimeError("boom")
    monkeypatch.setattr(floor.hub.pagers, "publish", explode)
    floor.raise_("T1", "T1-1")
    assert floor.call("T1-1") is None
    assert len(floor.hub.bus.sent) == sent
    monkeypatch.undo()
    floor.raise_("T1", "T1-1")
    assert floor.tasks("P1") == ["T1-1"]


def test_snapshot_shows_at_most_twenty_tasks(floor):
    floor.online("pager", "P1")
    for n in range(22):
        floor.raise_("T%d" % n, "T%d-1" % n)
    assert len(floor.tasks("P1")) == 20
