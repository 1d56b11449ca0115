"""Property test: hypothesis drives the call desk (in-process, fake clock, the real SQLite
store in a temp dir) through random interleavings of presses, duplicate deliveries,
cancels, acks, timeouts, pagers coming and going, floor changes and hub restarts.

After every step: no call is lost (every id a table sent belongs to a call), no task is
duplicated (one live call per table and type, each on one pager, or two once escalated
to the manager), every live call has exactly one assignee at work (unless nobody is at
work: then it is open, its timer running), every pager's last snapshot is what it holds,
closed calls stay closed, and escalation timers are never overdue after a tick and come
back unchanged from a restart."""
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hub.calls import LIVE
from hub.floor import validate
from tests.service import Dining, floor_doc

TABLES = ("T1", "T2", "T5", "T9")  # sections A, A, B, none
TYPES = ("waiter", "bill", "water", "napkins")
PAGERS = ("P1", "P2", "P3", "P4", "P5", "P6")  # P6: no waiter's, until Cai swaps to it


class CallDeskMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="rfm-prop-")
        self.doc = validate(floor_doc())
        self.dining = Dining(self.dir + "/hub.sqlite3", self.doc)
        self.counter = {t: 0 for t in TABLES}
        self.raised = {}  # call id sent -> table
        self.cancels = []
        self.last = None  # the last call/act uplink, for a redelivery
        self.closed = {}  # call id -> done | cancelled

    def teardown(self):
        self.dining.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def uplink(self, kind, device, message, payload):
        self.dining.up(kind, device, message, payload)
        self.last = (kind, device, message, payload)

    def calls(self):
        return {c["id"]: c for c in self.dining.store.query("SELECT * FROM calls")}

    # --- tables ------------------------------------------------------------------
    @rule(table=st.sampled_from(TABLES), call_type=st.sampled_from(TYPES))
    def press(self, table, call_type):
        self.counter[table] += 1
        call_id = "%s-%d" % (table, self.counter[table])
        live = self.dining.store.one("SELECT * FROM calls WHERE table_id = ? AND type = ? AND state IN"
                                     " ('open', 'assigned', 'acked')", (table, call_type))
        before = len(self.calls())
        self.uplink("table", table, "call", {"id": call_id, "action": "raise", "type": call_type})
        self.raised[call_id] = table
        calls = self.calls()
        if live is None:  # a new call under the new id
            assert len(calls) == before + 1 and calls[call_id]["type"] == call_type
        else:  # a reminder on the live call
            assert len(calls) == before and calls[live["id"]]["reminders"] == live["reminders"] + 1
            assert calls[live["id"]]["prio"] == min(9, live["prio"] + 1)

    @precondition(lambda self: self.raised)
    @rule(data=st.data())
    def cancel_from_table(self, data):
        call_id = data.draw(st.sampled_from(sorted(self.raised)))
        msg = {"id": call_id, "action": "cancel"}
        self.uplink("table", self.raised[call_id], "call", msg)
        self.cancels.append((self.raised[call_id], msg))

    @precondition(lambda self: self.raised)
    @rule(data=st.data())
    def redeliver_raise(self, data):
        call_id = data.draw(st.sampled_from(sorted(self.raised)))
        call = self.dining.hub.calls.by_sent_id(call_id)
        before = self.calls()
        self.dining.press(self.raised[call_id], call_id, call["type"])
        assert self.calls() == before

    @precondition(lambda self: self.cancels)
    @rule(data=st.data())
    def redeliver_cancel(self, data):
        table, msg = data.draw(st.sampled_from(self.cancels))
        before = self.calls()
        self.dining.up("table", table, "call", msg)
        assert self.calls() == before

    @precondition(lambda self: self.last is not None)
    @rule()
    def redeliver_last(self):  # a QoS 1 DUP right behind the original
        before = self.calls()
        self.dining.up(*self.last)
        assert self.calls() == before

    # --- pagers ------------------------------------------------------------------
    @rule(pager=st.sampled_from(PAGERS), online=st.booleans())
    def pager_status(self, pager, online):
        self.last = None  # from here on a redelivery would not be a DUP but news
        self.dining.up("pager", pager, "status", {"online": online, "hb": 3600} if online else {"online": False})

    @rule(pager=st.sampled_from(PAGERS), action=st.sampled_from(("ack", "ack", "done", "cancel")),
          pick=st.integers(0, 19))
    def act(self, pager, action, pick):
        shown = self.dining.tasks(pager)
        if shown:  # what a waiter can press on: a task on the screen
            self.uplink("pager", pager, "act", {"id": shown[pick % len(shown)], "action": action})

    @precondition(lambda self: self.raised)
    @rule(pager=st.sampled_from(PAGERS), data=st.data())
    def act_on_any(self, pager, data):  # stale or foreign task ids
        call_id = data.draw(st.sampled_from(sorted(self.raised)))
        self.uplink("pager", pager, "act", {"id": call_id, "action": data.draw(st.sampled_from(("ack", "done")))})

    # --- time, staff, restarts ------------------------------------------------------
    @rule(seconds=st.sampled_from((1, 20, 40, 41, 130)))
    def time_passes(self, seconds):
        self.last = None
        self.dining.tick(seconds)
        overdue = self.dining.store.query(
            "SELECT t.* FROM call_timers t JOIN calls ON calls.id = t.call_id"
            " WHERE calls.state IN ('open', 'assigned') AND t.due_at <= ?", (self.dining.now,))
        assert overdue == [], "timers left overdue after a tick: %r" % overdue

    @rule(who=st.integers(0, 4), change=st.sampled_from(("active", "sections", "pager", "max_tasks")))
    def floor_change(self, who, change):
        self.last = None
        waiter = self.doc["waiters"][who]
        if change == "active":
            waiter["active"] = not waiter["active"]
        elif change == "sections":  # section A moves to this waiter from whoever had it
            for w in self.doc["waiters"]:
                w["sections"] = [s for s in w["sections"] if s != "A"]
            waiter["sections"].append("A")
        elif change == "pager":  # Cai swaps between P3 and P6
            cai = self.doc["waiters"][2]
            cai["pager"] = "P6" if cai["pager"] == "P3" else "P3"
        else:
            self.doc["max_tasks"] = 1 + who % 3
        self.dining.set_floor(self.doc)

    @rule()
    def restart(self):
        timers = self.dining.store.query("SELECT * FROM call_timers ORDER BY call_id")
        calls = self.calls()
        self.dining.store.close()
        self.dining.open()
        assert self.dining.store.query("SELECT * FROM call_timers ORDER BY call_id") == timers
        assert self.calls() == calls
        self.dining.apply(self.dining.hub.restore)

    # --- invariants --------------------------------------------------------------
    @invariant()
    def no_call_lost(self):
        for call_id in self.raised:
            assert self.dining.hub.calls.by_sent_id(call_id) is not None, call_id

    @invariant()
    def one_live_call_per_table_and_type(self):
        rows = self.dining.store.query("SELECT table_id, type, COUNT(*) AS n FROM calls WHERE state IN"
                                       " ('open', 'assigned', 'acked') GROUP BY table_id, type HAVING n > 1")
        assert rows == []

    @invariant()
    def every_live_call_has_one_assignee_at_work(self):
        hub = self.dining.hub
        staff = hub.pagers.eligible(self.dining.now)
        for call in hub.calls.live():
            if call["state"] == "open":
                assert call["pager"] is None and not staff, "open call %s while %s at work" % (call["id"], staff)
            else:
                assert call["pager"] in staff, call
            if call["watcher"] is not None:
                assert call["state"] == "assigned" and staff[call["watcher"]]["role"] == "manager"
                assert call["watcher"] != call["pager"]

    @invariant()
    def snapshots_show_each_task_once_on_its_pagers(self):
        hub = self.dining.hub
        seen = {}
        for pager in PAGERS:
            shown = [t for t in self.dining.snapshot(pager) if t["kind"] == "call"]
            ids = [t["id"] for t in shown]
            assert len(ids) == len(set(ids))
            held = {t.id: (t.state, t.prio, t.page) for t in hub.pagers.tasks(pager) if t.kind == "call"}
            if len(hub.pagers.tasks(pager)) <= 20:
                assert {t["id"]: (t["state"], t["prio"], t["page"]) for t in shown} == held, pager
            for task_id in ids:
                seen.setdefault(task_id, []).append(pager)
        for call in hub.calls.live():
            if call["state"] != "open":
                assert sorted(seen.get(call["id"], [])) == sorted(p for p in (call["pager"], call["watcher"]) if p)

    @invariant()
    def closed_calls_stay_closed_and_timers_follow_state(self):
        for call_id, call in self.calls().items():
            if call_id in self.closed:
                assert call["state"] == self.closed[call_id]
            elif call["state"] not in LIVE:
                self.closed[call_id] = call["state"]
        for timer in self.dining.store.query("SELECT t.*, calls.state FROM call_timers t JOIN calls"
                                             " ON calls.id = t.call_id"):
            if timer["state"] in ("open", "assigned"):
                assert timer["due_at"] is not None  # the test floor repeats its last step
            else:
                assert timer["due_at"] is None and timer["watcher"] is None


CallDeskMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=50, deadline=None,
                                             suppress_health_check=[HealthCheck.too_slow])
test_call_desk = CallDeskMachine.TestCase
