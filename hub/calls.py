"""The call desk: a table's call from raise to done.

Hub logic only: it reads and writes the store and queues messages on the outbox; it
never touches MQTT. Calls are keyed by the id the table button made, so a repeated
message (a QoS 1 DUP, a retry after reboot) never makes a second task. A table has one
live call per call type: asking again is a reminder that raises the call's priority and
pages its holder again.

Who gets a call (choose): by tier, 0 a runner on duty (types routed to runners), 1 the
server of the table's section, 2 any colleague, 3 a manager; the least-loaded pager of
the best tier that is not overloaded (max_tasks), else the least-loaded of everyone.
An unacknowledged call runs through the floor's escalation steps (repage, next, manager),
each recorded as a call event; its timer is a row in call_timers, so it survives restarts.
"""
import logging
import time

from hub import store as _store
from hub.pagers import Task

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS call_timers (
    call_id TEXT PRIMARY KEY REFERENCES calls (id),
    step    INTEGER NOT NULL DEFAULT 0,   -- the next escalation step (index into the steps)
    due_at  REAL,                         -- when it fires; NULL once acked, closed or out of steps
    watcher TEXT                          -- the manager's pager the call was escalated to
);
CREATE INDEX IF NOT EXISTS call_timers_due ON call_timers (due_at);
CREATE TABLE IF NOT EXISTS call_stats (
    call_id   TEXT PRIMARY KEY REFERENCES calls (id),
    table_id  TEXT NOT NULL,
    type      TEXT NOT NULL,
    hour      INTEGER NOT NULL,           -- local hour it was raised, 0-23
    raised_at REAL NOT NULL,
    ack_s     REAL,                       -- raise to ack (to done if never acked)
    acked_by  TEXT,                       -- waiter id (pager id if no waiter carries it)
    done_s    REAL,                       -- raise to done
    done_by   TEXT,
    outcome   TEXT                        -- done | cancelled; NULL while live
);
CREATE INDEX IF NOT EXISTS call_stats_by_time ON call_stats (raised_at);
CREATE TABLE IF NOT EXISTS call_escalations (
    n       INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL REFERENCES calls (id),
    at      REAL NOT NULL,
    step    TEXT NOT NULL,                -- repage | next | manager
    waiter  TEXT,                         -- who held the call unanswered (waiter id or pager id)
    target  TEXT                          -- the pager this step paged; NULL: nobody to page
);
CREATE INDEX IF NOT EXISTS call_escalations_by_time ON call_escalations (at);
CREATE INDEX IF NOT EXISTS calls_ended_by_table ON calls (table_id, COALESCE(done_at, cancelled_at));
"""
_store.EXTRA_SCHEMAS.append(SCHEMA)

MAX_PRIO = 9
LIVE = ("open", "assigned", "acked")
STATES = LIVE + ("done", "cancelled")
_LIVE_SQL = "('open', 'assigned', 'acked')"
TIERS = ("runner", "section", "colleague", "manager")
# What a table is told about a call in each state.
TOLD = {"open": "seen", "assigned": "seen", "acked": "on_the_way", "done": "done", "cancelled": "cancelled"}
RECENT_S, RECENT_MAX = 900, 20  # ended calls a table that comes back is told about again
_SELECT = ("SELECT calls.*, t.step, t.due_at, t.watcher FROM calls"
           " LEFT JOIN call_timers t ON t.call_id = calls.id")


def due(escalation, step, now):
    """When step `step` of an escalation fires if the call is still unacknowledged then."""
    steps = escalation["steps"]
    if step < len(steps):
        return now + steps[step]["after"]
    return now + escalation["repeat"] if escalation["repeat"] else None


class CallDesk:
    def __init__(self, store, pagers, outbox, floor):
        self.store = store
        self.pagers = pagers
        self.outbox = outbox
        self.floor = floor
        self._duty = None  # ids of the waiters on duty when last looked
        self._told = set()  # tables told where their calls stand since the last resume
        pagers.sources.append(self.tasks_on)

    # --- queries ---------------------------------------------------------
    def get(self, call_id):
        return self.store.one(_SELECT + " WHERE calls.id = ?", (call_id,))

    def by_sent_id(self, sent_id):
        """The call a table's id belongs to: its own, or one it was a reminder of."""
        row = self.store.one("SELECT call_id FROM call_ids WHERE id = ?", (sent_id,))
        return row and self.get(row["call_id"])

    def list(self, state=None, limit=100):
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        return self.store.query("SELECT * FROM calls %s ORDER BY raised_at DESC, id LIMIT ?" % where,
                                args + (limit,))

    def live(self):
        return self.store.query(_SELECT + " WHERE calls.state IN %s ORDER BY calls.prio DESC,"
                                " calls.raised_at, calls.id" % _LIVE_SQL)

    def live_count(self):
        return self.store.one("SELECT COUNT(*) AS n FROM calls WHERE state IN %s" % _LIVE_SQL)["n"]

    def tasks_on(self, pager):
        """The pager's calls: those it holds, and those escalated to it (its manager's copy)."""
        rows = self.store.query(_SELECT + " WHERE calls.state IN ('assigned', 'acked')"
                                " AND (calls.pager = ? OR t.watcher = ?)", (pager, pager))
        tasks = []
        for row in rows:
            note = None
            if row["pager"] != pager:
                note = "escalated from %s" % self._name(row["pager"])
            tasks.append(Task(id=row["id"], kind="call", table=row["table_id"], type=row["type"],
                              prio=row["prio"], raised_at=row["raised_at"], state=row["state"],
                              page=row["page"], note=note))
        return tasks

    def who(self, pager):
        """The waiter id behind a pager (the pager id if no waiter carries it)."""
        waiter = self.floor.waiter_of(pager)
        return waiter["id"] if waiter else pager

    def _name(self, pager):
        waiter = self.floor.waiter_of(pager)
        return waiter["name"] if waiter else pager

    # --- uplinks ---------------------------------------------------------
    def on_call(self, table, msg, now):
        if msg["action"] == "raise":
            self._raise(table, msg["id"], msg["type"], now)
        else:
            self._cancel_from_table(table, msg["id"], now)

    def on_act(self, pager, msg, now):
        task_id, action = msg["id"], msg["action"]
        call = self.get(task_id)
        if call is None:
            log.warning("pager %s: %s on unknown task %s ignored", pager, action, task_id)
            self.pagers.touch(pager)
            return
        if call["state"] not in LIVE:
            log.info("pager %s: %s on %s ignored, already %s", pager, action, task_id, call["state"])
            return
        if pager not in (call["pager"], call["watcher"]):
            log.warning("pager %s: %s on %s ignored, the task is with %s", pager, action, task_id,
                        call["pager"] or "nobody")
            self.pagers.touch(pager)
            return
        if action == "ack":
            if call["state"] == "acked":
                log.info("pager %s: repeated ack on %s ignored", pager, task_id)
                return
            self._stop(call)
            self._update(call, now, "acked", pager, state="acked", acked_at=now, pager=pager)
            self.store.run("UPDATE call_stats SET ack_s = ?, acked_by = ? WHERE call_id = ?",
                           (now - call["raised_at"], self.who(pager), call["id"]))
            self._feedback(call, "on_the_way", pager)
            log.info("call %s acked by pager %s", task_id, pager)
        elif action == "done":
            self._stop(call)
            self._update(call, now, "done", pager, state="done", done_at=now, pager=pager)
            self.store.run("UPDATE call_stats SET ack_s = COALESCE(ack_s, ?), acked_by = COALESCE(acked_by, ?),"
                           " done_s = ?, done_by = ?, outcome = 'done' WHERE call_id = ?",
                           (now - call["raised_at"], self.who(pager), now - call["raised_at"], self.who(pager),
                            call["id"]))
            self._feedback(call, "done", pager)
            log.info("call %s done by pager %s", task_id, pager)
        else:
            self._cancel(call, now, "pager", pager)
            return
        self.pagers.touch(pager)
        self.pagers.touch(call["pager"])

    # --- presence, duty and the floor -------------------------------------
    def pager_online(self, pager, now):
        self.pagers.touch(pager)
        if self.floor.waiter_of(pager) is None:
            log.warning("pager %s is no waiter's pager on the floor; it gets no calls", pager)
        self.assign_open(now)

    def pager_offline(self, pager, now):
        self.pagers.touch(pager)
        self.rebalance(now)

    def table_online(self, table, now, fresh):
        """A table's status: back (fresh), or first heard since the last resume. Its session is
        clean, so feedback sent while it was away is gone: repeat its live calls and those
        that ended in the last RECENT_S."""
        if not fresh and table in self._told:
            return
        self._told.add(table)
        ended = self.store.query("SELECT * FROM calls WHERE table_id = ? AND COALESCE(done_at, cancelled_at) >= ?"
                                 " ORDER BY COALESCE(done_at, cancelled_at) DESC LIMIT ?",
                                 (table, now - RECENT_S, RECENT_MAX))
        # +table_id: look among the few live calls (calls_by_state), not all of the table's
        rows = ended[::-1] + self.store.query("SELECT * FROM calls WHERE state IN %s AND +table_id = ?"
                                              " ORDER BY raised_at, id" % _LIVE_SQL, (table,))
        for call in rows:
            self._feedback_one(self._newest_id(call), call)
        if rows:
            log.info("table %s back: told again where %d calls stand", table, len(rows))

    def set_floor(self, now, doc):
        """Put a new floor in effect at once: tasks move off waiters no longer at work, and
        unacknowledged ones to a better-placed colleague (a section's new server)."""
        doc = self.floor.set(doc)
        self._duty = self._on_duty(now)
        for pager in self.pagers.devices.known("pager"):
            self.pagers.touch(pager)  # a pager's "escalated from" names may have changed
        moved = self.rebalance(now, strict=True)
        log.info("floor changed: %d waiters, %d sections; %d calls moved", len(doc["waiters"]),
                 len(doc["sections"]), moved)
        return moved

    def resume(self, now):
        """After a (re)start or reconnection: settle every call and tell every table again
        where its calls stand (feedback sent before a crash may never have left)."""
        self._duty = self._on_duty(now)
        self._told.clear()  # tables may reconnect after this: tell each again when it speaks
        self.rebalance(now)
        for call in self.live():
            self._feedback_one(self._newest_id(call), call)

    def tick(self, now):
        """Shift changes and escalation timers."""
        duty = self._on_duty(now)
        if duty != self._duty:
            if self._duty is not None:
                log.info("on duty now: %s", ", ".join(duty) or "nobody")
                self.rebalance(now, strict=True)
            self._duty = duty
        rows = self.store.query(_SELECT + " WHERE t.due_at <= ? AND calls.state IN ('open', 'assigned')"
                                " ORDER BY t.due_at, calls.id", (now,))
        for call in rows:
            self._escalate(self.get(call["id"]), now)

    def _on_duty(self, now):
        return tuple(w["id"] for w in self.floor.on_duty(now))

    # --- placing calls ----------------------------------------------------
    def tier(self, waiter, call):
        """How well placed a waiter is for a call: an index into TIERS, lower is better."""
        if waiter["role"] == "manager":
            return 3
        section = self.floor.section.get(call["table_id"])
        serves = section is not None and section in waiter["sections"]
        if waiter["role"] == "runner":
            if self.floor.call_type(call["type"])["to"] == "runner" and (serves or not waiter["sections"]):
                return 0
            return 2
        return 1 if serves else 2

    def choose(self, call, now, exclude=()):
        """(pager, tier) the call should go to, or (None, None) if nobody is at work."""
        staff = [(p, w) for p, w in self.pagers.eligible(now).items() if p not in exclude]
        cap = self.floor.max_tasks
        best = None
        for order, (pager, waiter) in enumerate(staff):
            n = self.tier(waiter, call)
            load = self.pagers.load(pager)
            over = load >= cap
            key = (over, int(n == 3) if over else n, load, order)
            if best is None or key < best[0]:
                best = (key, pager, n)
        return (best[1], best[2]) if best else (None, None)

    def assign_open(self, now):
        open_calls = self.store.query(_SELECT + " WHERE calls.state = 'open'")
        for call in sorted(open_calls, key=lambda c: (-c["prio"], c["raised_at"], c["id"])):
            target, tier = self.choose(call, now)
            if target is None:
                return
            self._assign(call, target, now, "assigned")
            log.info("call %s (%s at %s) assigned to pager %s (%s)", call["id"], call["type"], call["table_id"],
                     target, TIERS[tier])

    def rebalance(self, now, strict=False):
        """Move calls off pagers whose waiter is not at work (offline, off duty, off the floor);
        with strict, also unacknowledged, unescalated calls to a better tier. Then place open
        calls. Returns how many calls moved."""
        staff = self.pagers.eligible(now)
        moved = 0
        for call in self.live():
            holder = call["pager"]
            if holder is None:
                continue
            if holder not in staff:
                target, tier = self.choose(call, now, exclude={holder})
                moved += 1
                if target:
                    self._assign(call, target, now, "moved")
                    log.info("call %s moved from pager %s (not at work) to %s (%s)", call["id"], holder, target,
                             TIERS[tier])
                else:
                    self._update(call, now, "unassigned", holder, state="open", pager=None)
                    self.pagers.touch(holder)
                    if call["state"] == "acked":
                        self._restart_timer(call, now)
                        self._feedback(call, "seen")
                    log.info("call %s open again: pager %s not at work and nobody else is", call["id"], holder)
            elif strict and call["state"] == "assigned" and not self._escalated(call):
                target, tier = self.choose(call, now, exclude={holder})
                if target and tier < self.tier(staff[holder], call):
                    self._assign(call, target, now, "moved")
                    moved += 1
                    log.info("call %s moved from pager %s to %s (%s)", call["id"], holder, target, TIERS[tier])
        for row in self.store.query("SELECT t.call_id, t.watcher FROM call_timers t JOIN calls"
                                    " ON calls.id = t.call_id WHERE t.watcher IS NOT NULL"
                                    " AND calls.state IN %s" % _LIVE_SQL):
            if row["watcher"] not in staff:
                self.store.run("UPDATE call_timers SET watcher = NULL WHERE call_id = ?", (row["call_id"],))
                self.pagers.touch(row["watcher"])
        self.assign_open(now)
        return moved

    def _escalated(self, call):
        return call["watcher"] is not None or self.store.one(
            "SELECT 1 AS y FROM call_escalations WHERE call_id = ? AND step != 'repage' AND target IS NOT NULL"
            " LIMIT 1", (call["id"],)) is not None

    # --- escalation -------------------------------------------------------
    def _escalate(self, call, now):
        escalation = self.floor.call_type(call["type"])["escalation"]
        steps = escalation["steps"]
        n = call["step"]
        action = steps[n]["do"] if n < len(steps) else "repage"
        holder = call["pager"]
        target = None
        if holder is None:
            target, _ = self.choose(call, now)
            if target:
                self._assign(call, target, now, "assigned")
        elif action == "next":
            target, _ = self.choose(call, now, exclude={holder, call["watcher"]})
            if target:
                self._assign(call, target, now, "next")
        elif action == "manager":
            target = self.pagers.pick(roles=("manager",), exclude={holder}, now=now)
            if target:
                self.store.run("UPDATE call_timers SET watcher = ? WHERE call_id = ?", (target, call["id"]))
                self.store.run("UPDATE calls SET page = page + 1 WHERE id = ?", (call["id"],))
                self._event(call["id"], now, "manager", target)
                self.pagers.touch(target)
                self.pagers.touch(holder)
        if target is None and holder is not None:
            target = holder  # nobody (else) to turn to: page the holder again
            self.store.run("UPDATE calls SET page = page + 1 WHERE id = ?", (call["id"],))
            self._event(call["id"], now, "repage", holder)
            self.pagers.touch(holder)
            if call["watcher"]:
                self.pagers.touch(call["watcher"])
        elif target is None:
            self._event(call["id"], now, "repage", None)
        self.store.insert("call_escalations", {"call_id": call["id"], "at": now, "step": action,
                                               "waiter": holder and self.who(holder), "target": target})
        self.store.run("UPDATE call_timers SET step = ?, due_at = ? WHERE call_id = ?",
                       (n + 1, due(escalation, n + 1, now), call["id"]))
        log.info("call %s (%s at %s) unanswered: %s -> %s", call["id"], call["type"], call["table_id"], action,
                 target or "nobody at work")

    def _stop(self, call):
        """Acked or closed: no more escalation; the manager's copy goes."""
        self.store.run("UPDATE call_timers SET due_at = NULL, watcher = NULL WHERE call_id = ?", (call["id"],))
        if call["watcher"]:
            self.pagers.touch(call["watcher"])

    def _restart_timer(self, call, now):
        escalation = self.floor.call_type(call["type"])["escalation"]
        self.store.run("UPDATE call_timers SET step = 0, due_at = ? WHERE call_id = ?",
                       (due(escalation, 0, now), call["id"]))

    # --- steps -----------------------------------------------------------
    def _raise(self, table, call_id, call_type, now):
        known = self.by_sent_id(call_id)
        if known is not None:
            if known["table_id"] != table:
                log.warning("table %s: raise %s ignored, that id belongs to table %s", table, call_id,
                            known["table_id"])
                return
            log.info("table %s: repeated raise %s ignored (call %s is %s)", table, call_id, known["id"],
                     known["state"])
            self._feedback_one(call_id, known)
            return
        live = self.store.one(_SELECT + " WHERE calls.table_id = ? AND calls.type = ? AND calls.state IN %s"
                              " ORDER BY calls.raised_at LIMIT 1" % _LIVE_SQL, (table, call_type))
        if live is not None:
            self._remind(live, call_id, now)
            return
        spec = self.floor.call_type(call_type)
        if call_type not in self.floor.doc["call_types"]:
            log.info("table %s: call type %r is not on the floor; priority %d", table, call_type, spec["prio"])
        if table not in self.floor.section:
            log.warning("table %s is in no section of the floor; its calls go to whoever is least loaded", table)
        call = {"id": call_id, "table_id": table, "type": call_type, "prio": spec["prio"], "state": "open",
                "raised_at": now}
        self.store.insert("calls", call)
        self.store.insert("call_ids", {"id": call_id, "call_id": call_id})
        self.store.insert("call_timers", {"call_id": call_id, "step": 0, "due_at": due(spec["escalation"], 0, now)})
        self.store.insert("call_stats", {"call_id": call_id, "table_id": table, "type": call_type,
                                         "hour": time.localtime(now).tm_hour, "raised_at": now})
        self._event(call_id, now, "raised", table)
        self._feedback(call, "seen")
        call = self.get(call_id)
        target, tier = self.choose(call, now)
        if target is None:
            log.info("call %s raised: %s at %s, open (nobody at work with a pager online)", call_id, call_type,
                     table)
            return
        self._assign(call, target, now, "assigned")
        log.info("call %s raised: %s at %s, assigned to pager %s (%s)", call_id, call_type, table, target,
                 TIERS[tier])

    def _remind(self, live, sent_id, now):
        """The table asked again: count it, raise the priority, page the holder again."""
        table = live["table_id"]
        self.store.insert("call_ids", {"id": sent_id, "call_id": live["id"]})
        prio = min(MAX_PRIO, live["prio"] + self.floor.reminder_boost)
        repage = 1 if live["state"] == "assigned" else 0
        self.store.run("UPDATE calls SET reminders = reminders + 1, prio = ?, page = page + ? WHERE id = ?",
                       (prio, repage, live["id"]))
        self._event(live["id"], now, "reminder", table)
        log.info("table %s asked again for %s: %s is a reminder on call %s, priority %d", table, live["type"],
                 sent_id, live["id"], prio)
        self._feedback_one(sent_id, live)
        for pager in (live["pager"], live["watcher"]):
            if pager:
                self.pagers.touch(pager)
        if live["state"] == "open":
            self.assign_open(now)

    def _cancel_from_table(self, table, call_id, now):
        call = self.by_sent_id(call_id)
        if call is None:
            log.info("table %s: cancel of unknown call %s; confirming it anyway", table, call_id)
            self.outbox.send("table", table, "feedback", {"id": call_id, "state": "cancelled"})
            return
        if call["table_id"] != table:
            log.warning("table %s: cancel %s ignored, that call belongs to table %s", table, call_id,
                        call["table_id"])
            return
        if call["state"] not in LIVE:
            log.info("table %s: cancel %s ignored, call %s already %s", table, call_id, call["id"],
                     call["state"])
            self._feedback_one(call_id, call)
            return
        self._cancel(call, now, "table", table)

    def _cancel(self, call, now, kind, device):
        self._stop(call)
        self._update(call, now, "cancelled", device, state="cancelled", cancelled_at=now)
        self.store.run("UPDATE call_stats SET outcome = 'cancelled' WHERE call_id = ?", (call["id"],))
        self._feedback(call, "cancelled")
        if call["pager"]:
            self.pagers.touch(call["pager"])
        log.info("call %s cancelled by %s %s", call["id"], kind, device)

    def _assign(self, call, pager, now, event):
        self._update(call, now, event, pager, state="assigned", pager=pager, assigned_at=now,
                     page=call["page"] + 1)
        if call["watcher"] == pager:
            self.store.run("UPDATE call_timers SET watcher = NULL WHERE call_id = ?", (call["id"],))
        if call["state"] == "acked":  # whoever was on the way is not coming
            self._restart_timer(call, now)
            self._feedback(call, "seen")
        for old in (call["pager"], call["watcher"], pager):
            if old:
                self.pagers.touch(old)

    def _update(self, call, now, event, device, **fields):
        self.store.update("calls", {"id": call["id"]}, fields)
        self._event(call["id"], now, event, device)

    def _event(self, call_id, now, event, device):
        self.store.insert("call_events", {"call_id": call_id, "at": now, "event": event, "device": device})

    def _feedback(self, call, state, by=None):
        """Tell the table, under the newest id it used for this call (it knows them all)."""
        payload = {"id": self._newest_id(call), "state": state}
        if by:
            payload["by"] = by
        self.outbox.send("table", call["table_id"], "feedback", payload)

    def _newest_id(self, call):
        return self.store.one("SELECT id FROM call_ids WHERE call_id = ? ORDER BY rowid DESC LIMIT 1",
                              (call["id"],))["id"]

    def _feedback_one(self, sent_id, call):
        """Repeat the call's current state to the table under one of its ids."""
        payload = {"id": sent_id, "state": TOLD[call["state"]]}
        if call["state"] in ("acked", "done"):
            payload["by"] = call["pager"]
        self.outbox.send("table", call["table_id"], "feedback", payload)
