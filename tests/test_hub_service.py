"""The call desk on a busy floor, in-process with a fake clock: routing, fallback,
ranking, reminders, escalation, shifts, live floor changes, restarts and metrics."""
import pytest

from hub.floor_api import metrics
from tests.service import NOON, PAGERS, Dining, floor_doc


@pytest.fixture
def dining(tmp_path):
    d = Dining(tmp_path / "hub.sqlite3")
    yield d
    d.close()


def test_routing_by_section_and_call_type(dining):
    dining.online(*PAGERS)
    dining.press("T1", "T1-1", "waiter")
    dining.press("T5", "T5-1", "bill")
    dining.press("T2", "T2-1", "water")
    dining.press("T6", "T6-1", "napkins")
    assert [dining.holder(c) for c in ("T1-1", "T5-1", "T2-1", "T6-1")] == ["P1", "P2", "P3", "P3"]
    assert dining.tasks("P3") == ["T2-1", "T6-1"]  # water (4) above napkins (3)
    dining.offline("P3")  # the runner goes: his calls go to each table's server
    assert dining.holder("T2-1") == "P1" and dining.holder("T6-1") == "P2"
    dining.press("T3", "T3-1", "water")  # no runner on duty: the section's server
    assert dining.holder("T3-1") == "P1"
    assert dining.tasks("P4") == []  # the manager is no one's first choice


def test_fallback_to_least_loaded_colleague(dining):
    dining.online("P1", "P2", "P4", "P5")
    dining.press("T5", "T5-1", "waiter")  # Ben: 1 task
    dining.offline("P1")
    dining.press("T1", "T1-1", "bill")  # Ana offline: Eli (0 tasks) before Ben (1)
    assert dining.holder("T1-1") == "P5"
    dining.online("P1")
    assert dining.holder("T1-1") == "P5"  # nothing moves back when she returns
    for n in range(2, 5):  # max_tasks 3: Ana is overloaded after three
        dining.press("T%d" % n, "T%d-1" % n, "waiter")
    assert [dining.holder("T%d-1" % n) for n in range(2, 5)] == ["P1"] * 3
    dining.press("T1", "T1-2", "waiter")
    assert dining.holder("T1-2") == "P2"  # Ben and Eli hold one each: floor order
    for pager in ("P1", "P2", "P5"):  # every server offline: the manager, last
        dining.offline(pager)
    assert {dining.holder(c) for c in ("T1-1", "T1-2", "T2-1", "T5-1")} == {"P4"}


def test_nobody_at_work_keeps_calls_open_until_someone_is(dining):
    dining.press("T1", "T1-1", "waiter")
    assert dining.call("T1-1")["state"] == "open"
    assert dining.feedback("T1") == [("T1-1", "seen", None)]
    dining.online("P9")  # a pager no waiter carries gets nothing
    assert dining.call("T1-1")["state"] == "open" and dining.tasks("P9") == []
    dining.online("P3")
    assert dining.holder("T1-1") == "P3"


def test_ranking_and_reminders_raise_urgency(dining):
    dining.online("P1")
    dining.press("T1", "T1-1", "napkins")
    dining.now += 1
    dining.press("T2", "T2-1", "water")
    dining.now += 1
    dining.press("T3", "T3-1", "napkins")
    assert dining.tasks("P1") == ["T2-1", "T1-1", "T3-1"]  # priority, then age
    pages = dining.snapshot("P1")[2]["page"]
    dining.press("T3", "T3-2", "napkins")  # asked again: prio 3 -> 4, paged again
    dining.press("T3", "T3-2", "napkins")  # the reminder's DUP counts once
    assert dining.tasks("P1") == ["T2-1", "T3-1", "T1-1"]
    task = dining.snapshot("P1")[1]
    assert (task["prio"], task["page"]) == (4, pages + 1)
    dining.press("T3", "T3-3", "napkins")
    assert dining.tasks("P1") == ["T3-1", "T2-1", "T1-1"]
    call = dining.call("T3-1")
    assert (call["reminders"], call["prio"]) == (2, 5)
    assert len(dining.hub.calls.list()) == 3  # reminders are not tasks
    assert [e for e in dining.events("T3-1") if e[0] == "reminder"] == [("reminder", "T3")] * 2
    assert ("T3-2", "seen", None) in dining.feedback("T3")


def test_cancel_from_button_and_pager(dining):
    dining.online("P1", "P3")
    dining.press("T1", "T1-1", "waiter")
    dining.press("T1", "T1-2", "waiter")  # a reminder
    dining.press("T2", "T2-1", "bill")
    dining.cancel("T1", "T1-2")  # the button cancels with the id it knows last
    dining.act("P1", "T2-1", "cancel")
    assert dining.call("T1-1")["state"] == dining.call("T2-1")["state"] == "cancelled"
    assert dining.feedback("T1")[-1] == ("T1-2", "cancelled", None)  # the newest id the table used
    assert ("T2-1", "cancelled", None) in dining.feedback("T2")
    assert dining.tasks("P1") == []
    assert dining.store.one("SELECT due_at FROM call_timers WHERE call_id = 'T2-1'")["due_at"] is None
    dining.press("T1", "T1-3", "waiter")  # a new call after the cancelled one
    assert dining.call("T1-3")["state"] == "assigned"


def test_escalation_repage_next_manager_then_repeat(dining):
    dining.online(*PAGERS)
    dining.press("T5", "T5-1", "waiter")
    assert dining.holder("T5-1") == "P2"
    dining.tick(39)
    assert dining.snapshot("P2")[0]["page"] == 1
    dining.tick(1)  # 40 s unacked: Ben is paged again
    assert dining.snapshot("P2")[0]["page"] == 2
    dining.tick(40)  # 80 s: the next waiter (Cai, Ana and Eli hold nothing: Ana, floor order)
    assert dining.holder("T5-1") == "P1" and dining.tasks("P2") == []
    assert dining.snapshot("P1")[0]["page"] == 3
    dining.tick(40)  # 120 s: the manager too
    assert dining.tasks("P4") == ["T5-1"] and dining.tasks("P1") == ["T5-1"]
    assert dining.snapshot("P4")[0]["note"] == "escalated from Ana"
    dining.tick(40)  # after the last step: paged again every 40 s
    assert dining.snapshot("P1")[0]["page"] == 5
    assert [e for e in dining.events("T5-1") if e[0] not in ("raised",)] == [
        ("assigned", "P2"), ("repage", "P2"), ("next", "P1"), ("manager", "P4"), ("repage", "P1")]
    steps = dining.store.query("SELECT step, waiter, target FROM call_escalations ORDER BY n")
    assert [(s["step"], s["waiter"], s["target"]) for s in steps] == [
        ("repage", "ben", "P2"), ("next", "ben", "P1"), ("manager", "ana", "P4"), ("repage", "ana", "P1")]
    dining.act("P4", "T5-1", "ack")  # the manager takes it
    assert (dining.holder("T5-1"), dining.call("T5-1")["state"]) == ("P4", "acked")
    assert dining.tasks("P1") == [] and dining.tasks("P4") == ["T5-1"]
    assert dining.feedback("T5")[-1] == ("T5-1", "on_the_way", "P4")
    dining.tick(200)  # acked: no more escalation
    assert len(dining.store.query("SELECT * FROM call_escalations")) == 4


def test_escalation_per_call_type_and_nobody_to_turn_to(dining):
    types = dict(floor_doc()["call_types"], bill={"prio": 6, "to": "server", "escalation": {
        "steps": [{"after": 10, "do": "manager"}, {"after": 5, "do": "next"}]}})
    dining.set_floor(floor_doc(call_types=types))
    dining.online("P1")
    dining.press("T1", "T1-1", "bill")
    dining.tick(10)  # no manager online: Ana is paged again, the step still recorded
    dining.tick(5)  # nobody else for "next" either
    dining.tick(60)  # out of steps and no repeat: quiet
    assert dining.snapshot("P1")[0]["page"] == 3
    steps = dining.store.query("SELECT step, target FROM call_escalations ORDER BY n")
    assert [(s["step"], s["target"]) for s in steps] == [("manager", "P1"), ("next", "P1")]
    assert dining.store.one("SELECT due_at FROM call_timers")["due_at"] is None


def test_timers_survive_a_restart(dining):
    dining.online("P1", "P2")
    dining.press("T1", "T1-1", "waiter")
    dining.tick(30)
    before = dining.store.query("SELECT * FROM call_timers")
    dining.now += 600  # down for ten minutes
    dining.restart()
    assert dining.store.query("SELECT * FROM call_timers") == before
    dining.tick()  # overdue: fires at once, one step per tick
    assert dining.snapshot("P1")[0]["page"] == 2
    dining.tick()
    assert dining.call("T1-1")["pager"] == "P1"  # 40 s for each step, counted again
    dining.tick(40)
    assert dining.holder("T1-1") == "P2"


def test_restart_tells_tables_again_and_resends_snapshots(dining):
    dining.online("P1")
    dining.press("T1", "T1-1", "waiter")
    dining.act("P1", "T1-1", "ack")
    dining.press("T2", "T2-1", "bill")
    seq = dining.sent("tasks", "P1")[-1]["seq"]
    dining.bus.sent.clear()
    dining.restart()
    assert dining.feedback("T1") == [("T1-1", "on_the_way", "P1")]
    assert dining.feedback("T2") == [("T2-1", "seen", None)]
    assert dining.sent("tasks", "P1")[-1]["seq"] > seq
    assert dining.tasks("P1") == ["T1-1", "T2-1"]


def test_a_table_back_online_hears_what_happened_while_it_was_away(dining):
    dining.online("P1")
    dining.press("T1", "T1-0", "water")
    dining.act("P1", "T1-0", "done")
    dining.now += 20 * 60  # ended too long ago to repeat
    dining.press("T1", "T1-1", "waiter")
    dining.now += 60
    dining.press("T1", "T1-2", "waiter")  # a reminder: the table knows the call by both ids
    dining.press("T1", "T1-3", "bill")
    dining.up("table", "T1", "status", {"online": False})  # its last will
    dining.act("P1", "T1-1", "done")
    dining.act("P1", "T1-3", "ack")
    dining.bus.sent.clear()
    dining.up("table", "T1", "status", {"online": True, "hb": 3600})
    assert dining.feedback("T1") == [("T1-2", "done", "P1"), ("T1-3", "on_the_way", "P1")]
    dining.bus.sent.clear()
    dining.up("table", "T1", "status", {"online": True, "hb": 3600})  # a heartbeat: nothing new
    assert dining.feedback("T1") == []


def test_a_table_reconnecting_after_a_hub_crash_hears_its_call_is_done(dining):
    dining.online("P1")
    dining.press("T1", "T1-1", "waiter")
    dining.act("P1", "T1-1", "done")
    dining.restart()  # the done may never have left; the table reconnects after the hub's restore
    dining.bus.sent.clear()
    dining.up("table", "T1", "status", {"online": True, "hb": 3600})  # still online in the database
    assert dining.feedback("T1") == [("T1-1", "done", "P1")]
    dining.bus.sent.clear()
    dining.up("table", "T1", "status", {"online": True, "hb": 3600})
    assert dining.feedback("T1") == []


def test_shift_change_moves_open_tasks(dining):
    doc = floor_doc()
    doc["waiters"][0]["shifts"] = ["11:00-12:30"]  # Ana leaves at 12:30
    doc["waiters"].append({"id": "fay", "role": "server", "pager": "P6", "sections": ["A"],
                           "shifts": ["12:30-23:00"]})
    dining.set_floor(doc)
    dining.online("P1", "P2", "P6")
    dining.press("T1", "T1-1", "waiter")
    dining.press("T2", "T2-1", "bill")
    dining.act("P1", "T2-1", "ack")
    assert dining.tasks("P6") == []
    dining.now = NOON + 30 * 60 - 1
    dining.tick()
    assert dining.holder("T1-1") == "P1"
    dining.tick(1)  # 12:30: Ana off, Fay on
    assert dining.tasks("P1") == [] and dining.tasks("P6") == ["T1-1", "T2-1"]
    assert dining.call("T2-1")["state"] == "assigned"  # Fay has to ack it herself
    assert dining.feedback("T2")[-1] == ("T2-1", "seen", None)
    assert ("moved", "P6") in dining.events("T1-1")


def test_floor_change_moves_tasks_live(dining):
    dining.online(*PAGERS)
    dining.press("T1", "T1-1", "waiter")
    dining.press("T2", "T2-1", "bill")
    dining.act("P1", "T2-1", "ack")
    doc = floor_doc()
    doc["waiters"][0]["sections"] = []  # section A goes from Ana to Eli
    doc["waiters"][4]["sections"] = ["A"]
    dining.set_floor(doc)
    assert dining.holder("T1-1") == "P5"  # unacknowledged: moves to the new server
    assert dining.holder("T2-1") == "P1"  # Ana is already on her way with the bill
    doc["waiters"][0]["active"] = False  # Ana clocks out
    dining.set_floor(doc)
    assert dining.holder("T2-1") == "P5" and dining.tasks("P1") == []
    doc["waiters"][4]["pager"] = "P7"  # Eli swaps pagers: P5 is no longer on the floor
    dining.online("P7")
    dining.set_floor(doc)
    assert dining.tasks("P7") == ["T1-1", "T2-1"] and dining.tasks("P5") == []


def test_metrics_response_times_and_escalations(dining):
    dining.online("P1", "P2", "P4")
    dining.press("T1", "T1-1", "waiter")
    dining.press("T5", "T5-1", "water")  # no runner: Ben
    dining.tick(10)
    dining.act("P1", "T1-1", "ack")
    dining.tick(20)
    dining.act("P1", "T1-1", "done")
    dining.tick(30)  # T5-1 at 60 s: repaged once at 40 s
    dining.act("P2", "T5-1", "done")  # done without an ack: acknowledged when done
    dining.press("T2", "T2-1", "bill")
    dining.cancel("T2", "T2-1")
    m = metrics(dining.store, NOON - 1, NOON + 3600)
    assert (m["all"]["calls"], m["all"]["done"], m["all"]["cancelled"]) == (3, 2, 1)
    ana, ben = m["by_waiter"]["ana"], m["by_waiter"]["ben"]
    assert ana["raise_to_ack_s"]["mean"] == 10 and ana["raise_to_done_s"]["mean"] == 30
    assert ben["raise_to_ack_s"]["max"] == 60 and ben["raise_to_done_s"]["n"] == 1
    assert ben["escalations"] == {"repage": 1, "next": 0, "manager": 0, "total": 1}
    assert m["by_type"]["water"]["escalations"]["total"] == 1
    assert m["by_table"]["T1"]["raise_to_done_s"]["p50"] == 30
    assert list(m["by_hour"]) == ["12"] and m["by_hour"]["12"]["calls"] == 3
    assert m["all"]["raise_to_ack_s"] == {"n": 2, "mean": 35.0, "p50": 60, "p90": 60, "max": 60}
    assert metrics(dining.store, NOON + 1, NOON + 2)["all"]["calls"] == 0
