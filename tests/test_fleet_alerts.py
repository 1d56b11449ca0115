"""Device alerts as pager tasks (silent devices, low batteries) and the fleet view,
applied in-process on the hub's core with a fake clock and a recording bus."""
import pytest

from hub.core import Hub
from hub.store import Store

from tests.service import FakeBus


class Site:
    def __init__(self, path):
        self.now = 1_700_000_000.0
        self.store = Store(path)
        self.hub = Hub(self.store, "demo", clock=lambda: self.now)
        self.hub.bus = FakeBus()

    def status(self, kind, device, **fields):
        payload = {"online": True, "hb": 30}
        payload.update(fields)
        self.hub.apply(self.hub.uplink, kind, device, "status", payload)

    def act(self, pager, task_id, action):
        self.hub.apply(self.hub.uplink, "pager", pager, "act", {"id": task_id, "action": action})

    def wait(self, seconds, alive=("P1", "P4")):
        """Let time pass in 5 s ticks; the listed pagers keep sending heartbeats."""
        for _ in range(int(seconds // 5)):
            self.now += 5
            for p in alive:
                self.status("pager", p)
            self.hub.apply(self.hub.tick)

    def device_tasks(self, pager):
        snaps = [p for _k, d, m, p in self.hub.bus.sent if m == "tasks" and d == pager]
        return [t for t in snaps[-1]["tasks"] if t["kind"] == "device"] if snaps else []


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path / "hub.sqlite3")
    s.status("pager", "P1")  # ana, a server on the demo floor
    s.status("pager", "P4")  # dora, the manager
    yield s
    s.store.close()


def test_silent_device_pages_the_manager_and_clears_when_heard(site):
    site.status("table", "T1", battery=80)
    site.wait(55)
    assert site.device_tasks("P4") == []  # under two heartbeats: nothing yet
    site.wait(10)
    tasks = site.device_tasks("P4")
    assert [(t["table"], t["type"], t["state"]) for t in tasks] == [("T1", "offline", "assigned")]
    assert "silent" in tasks[0]["note"] and tasks[0]["id"].startswith("fleet:")
    assert site.device_tasks("P1") == []  # the manager's, not the server's
    assert [r["alerts"] for r in site.hub.fleet.view("table")] == [["offline"]]
    site.status("table", "T1", battery=80)
    site.wait(5)
    assert site.device_tasks("P4") == []
    assert site.hub.fleet.view("table")[0]["alerts"] == []


def test_low_battery_task_ack_done_and_hysteresis(site):
    site.status("table", "T2", battery=15)
    site.wait(5)
    (task,) = site.device_tasks("P4")
    assert (task["table"], task["type"], task["note"]) == ("T2", "battery", "table T2: battery 15%")
    site.act("P4", task["id"], "ack")
    assert site.device_tasks("P4")[0]["state"] == "acked"
    site.act("P4", task["id"], "done")
    assert site.device_tasks("P4") == []
    for level in (12, 22):  # still low, then under the 5 point margin: no new task
        site.status("table", "T2", battery=level)
        site.wait(5)
        assert site.device_tasks("P4") == []
    site.status("table", "T2", battery=60)  # recharged: cleared
    site.wait(5)
    site.status("table", "T2", battery=10)
    site.wait(5)
    assert [t["type"] for t in site.device_tasks("P4")] == ["battery"]


def test_threshold_is_configurable_and_sleep_is_not_silence(site):
    site.hub.fleet.low_battery = 40
    site.status("table", "T3", battery=35)
    site.status("table", "T4", battery=90)
    site.status("table", "T4", online=False, reason="sleep")
    site.wait(100)
    assert [(t["table"], t["type"]) for t in site.device_tasks("P4")] == [("T3", "offline"), ("T3", "battery")]


def test_without_a_manager_any_pager_gets_it_and_acts_go_to_the_right_desk(site):
    site.status("table", "T5", battery=5)
    site.wait(5, alive=("P1",))
    site.status("pager", "P4", online=False)
    site.wait(5, alive=("P1",))
    (task,) = site.device_tasks("P1")  # moved off the offline manager's pager
    site.act("P4", task["id"], "done")  # not P4's any more: ignored
    assert site.device_tasks("P1")
    site.act("P1", task["id"], "done")
    assert site.device_tasks("P1") == []
    assert site.hub.calls.list() == []  # a device task is not a call


def test_fleet_view_fields(site):
    site.status("pager", "P1", battery=77, rssi=-61, fw="0.2.0", uptime=5, heap=30000)
    row = [r for r in site.hub.fleet.view() if r["id"] == "P1"][0]
    assert {k: row[k] for k in ("kind", "online", "battery", "rssi", "fw", "last_seen", "registered")} == {
        "kind": "pager", "online": True, "battery": 77, "rssi": -61, "fw": "0.2.0", "last_seen": site.now,
        "registered": False}
