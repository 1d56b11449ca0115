"""The call desk: a table's call from raise to done.

Hub logic only: it reads and writes the store and queues messages on the outbox;
it never touches MQTT. Calls are keyed by the id the table button made, so a
repeated message (a QoS 1 DUP, a retry after reboot) never makes a second task.
"""
import logging

from hub.pagers import Task, rank

log = logging.getLogger(__name__)

PRIORITY = {"bill": 6, "waiter": 5, "water": 4, "napkins": 3}
DEFAULT_PRIORITY = 4
LIVE = ("open", "assigned", "acked")
STATES = LIVE + ("done", "cancelled")
_LIVE_SQL = "('open', 'assigned', 'acked')"
# What a table is told about a call in each state.
TOLD = {"open": "seen", "assigned": "seen", "acked": "on_the_way", "done": "done", "cancelled": "cancelled"}


class CallDesk:
    def __init__(self, store, pagers, outbox):
        self.store = store
        self.pagers = pagers
        self.outbox = outbox
        pagers.sources.append(self.tasks_on)

    # --- queries ---------------------------------------------------------
    def get(self, call_id):
        return self.store.one("SELECT * FROM calls WHERE id = ?", (call_id,))

    def by_sent_id(self, sent_id):
        """The call a table's id belongs to: its own, or one it was a reminder of."""
        return self.store.one("SELECT calls.* FROM call_ids JOIN calls ON calls.id = call_ids.call_id"
                              " WHERE call_ids.id = ?", (sent_id,))

    def list(self, state=None, limit=100):
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        return self.store.query("SELECT * FROM calls %s ORDER BY raised_at DESC, id LIMIT ?" % where,
                                args + (limit,))

    def live_count(self):
        return self.store.one("SELECT COUNT(*) AS n FROM calls WHERE state IN %s" % _LIVE_SQL)["n"]

    def tasks_on(self, pager):
        rows = self.store.query("SELECT * FROM calls WHERE pager = ? AND state IN ('assigned', 'acked')",
                                (pager,))
        return [Task(id=row["id"], kind="call", table=row["table_id"], type=row["type"], prio=row["prio"],
                     raised_at=row["raised_at"], state=row["state"], page=row["page"]) for row in rows]

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
        if call["pager"] != pager:
            log.warning("pager %s: %s on %s ignored, the task is with %s", pager, action, task_id,
                        call["pager"] or "nobody")
            self.pagers.touch(pager)
            return
        if action == "ack":
            if call["state"] == "acked":
                log.info("pager %s: repeated ack on %s ignored", pager, task_id)
                return
            self._update(call, now, "acked", pager, state="acked", acked_at=now)
            self._feedback(call, "on_the_way", pager)
            self.pagers.touch(pager)
            log.info("call %s acked by pager %s", task_id, pager)
        elif action == "done":
            self._update(call, now, "done", pager, state="done", done_at=now)
            self._feedback(call, "done", pager)
            self.pagers.touch(pager)
            log.info("call %s done by pager %s", task_id, pager)
        else:
            self._cancel(call, now, "pager", pager)

    # --- presence --------------------------------------------------------
    def pager_online(self, pager, now):
        self.pagers.touch(pager)
        self.assign_open(now)

    def pager_offline(self, pager, now):
        """Move every task the pager held to the least-loaded online pager, or back to open."""
        self.pagers.touch(pager)
        for task in rank(self.tasks_on(pager)):
            call = self.get(task.id)
            target = self.pagers.pick()
            if target:
                self._assign(call, target, now, "moved")
                log.info("call %s moved from pager %s (offline) to %s", call["id"], pager, target)
            else:
                self._update(call, now, "unassigned", pager, state="open", pager=None)
                log.info("call %s open again: pager %s offline and no pager online", call["id"], pager)

    def assign_open(self, now):
        open_calls = self.store.query("SELECT * FROM calls WHERE state = 'open'")
        for call in sorted(open_calls, key=lambda c: (-c["prio"], c["raised_at"], c["id"])):
            target = self.pagers.pick()
            if target is None:
                return
            self._assign(call, target, now, "assigned")
            log.info("call %s (%s at %s) assigned to pager %s", call["id"], call["type"], call["table_id"],
                     target)

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
        live = self.store.one("SELECT * FROM calls WHERE table_id = ? AND type = ? AND state IN %s"
                              " ORDER BY raised_at LIMIT 1" % _LIVE_SQL, (table, call_type))
        if live is not None:
            self.store.insert("call_ids", {"id": call_id, "call_id": live["id"]})
            self.store.run("UPDATE calls SET reminders = reminders + 1 WHERE id = ?", (live["id"],))
            self._event(live["id"], now, "reminder", table)
            log.info("table %s asked again for %s: %s counted as a reminder on call %s", table, call_type,
                     call_id, live["id"])
            self._feedback_one(call_id, live)
            return
        call = {"id": call_id, "table_id": table, "type": call_type,
                "prio": PRIORITY.get(call_type, DEFAULT_PRIORITY), "state": "open", "raised_at": now}
        self.store.insert("calls", call)
        self.store.insert("call_ids", {"id": call_id, "call_id": call_id})
        self._event(call_id, now, "raised", table)
        self._feedback(call, "seen")
        target = self.pagers.pick()
        if target is None:
            log.info("call %s raised: %s at %s, open (no pager online)", call_id, call_type, table)
            return
        self._assign(self.get(call_id), target, now, "assigned")
        log.info("call %s raised: %s at %s, assigned to pager %s", call_id, call_type, table, target)

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
        self._update(call, now, "cancelled", device, state="cancelled", cancelled_at=now)
        self._feedback(call, "cancelled")
        if call["pager"]:
            self.pagers.touch(call["pager"])
        log.info("call %s cancelled by %s %s", call["id"], kind, device)

    def _assign(self, call, pager, now, event):
        self._update(call, now, event, pager, state="assigned", pager=pager, assigned_at=now,
                     page=call["page"] + 1)
        self.pagers.touch(pager)

    def _update(self, call, now, event, device, **fields):
        self.store.update("calls", {"id": call["id"]}, fields)
        self._event(call["id"], now, event, device)

    def _event(self, call_id, now, event, device):
        self.store.insert("call_events", {"call_id": call_id, "at": now, "event": event, "device": device})

    def _feedback(self, call, state, by=None):
        """Tell the table, under every id it used for this call."""
        payload = {"state": state}
        if by:
            payload["by"] = by
        ids = self.store.query("SELECT id FROM call_ids WHERE call_id = ? ORDER BY rowid", (call["id"],))
        for row in ids:
            self.outbox.send("table", call["table_id"], "feedback", dict(payload, id=row["id"]))

    def _feedback_one(self, sent_id, call):
        """Repeat the call's current state to the table under one of its ids."""
        payload = {"id": sent_id, "state": TOLD[call["state"]]}
        if call["state"] in ("acked", "done"):
            payload["by"] = call["pager"]
        self.outbox.send("table", call["table_id"], "feedback", payload)
