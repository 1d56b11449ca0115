"""Crash safety: the hub (python -m hub --broker, an external Mosquitto that outlives it)
is killed with SIGKILL at random points while paho tables and pagers keep working. After
each restart: no call the broker accepted is lost, no task is duplicated, open tasks are
back on their pagers, tables hear where their calls stand, and escalation timers resume."""
import json
import os
import random
import sqlite3
import threading
import time

import protocol
from hub.calls import TOLD
from tests.brokers import free_port, start_hub, start_mosquitto, stop_process, wait_until
from tests.fake_devices import Device

KILLS = 22
MAX_ACTS = 200
WAIT_S = 15
STEP_S = 1.5
FLOOR = {
    "sections": {"A": ["T1", "T2"], "B": ["T5", "T6"]},
    "waiters": [
        {"id": "ana", "role": "server", "pager": "P1", "sections": ["A"]},
        {"id": "ben", "role": "server", "pager": "P2", "sections": ["B"]},
        {"id": "dora", "role": "manager", "pager": "P4"},
    ],
    "escalation": {"steps": [{"after": STEP_S, "do": "repage"}, {"after": STEP_S, "do": "next"},
                             {"after": STEP_S, "do": "manager"}], "repeat": 2 * STEP_S},
    "max_tasks": 4,
}
TYPES = ("waiter", "bill", "water", "napkins")
EXPECTED_STEPS = ["repage", "next", "manager"]


class Database:
    """Reads the hub's SQLite file (WAL: a reader never blocks the hub)."""

    def __init__(self, path):
        self.path = path

    def query(self, sql, args=()):
        db = sqlite3.connect(self.path, timeout=5)
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute(sql, args)]
        finally:
            db.close()


def snapshot_ids(pager):
    snaps = pager.snapshots()
    return sorted(t["id"] for t in snaps[-1]["tasks"] if t["kind"] == "call") if snaps else []


def test_sigkill_at_random_points(tmp_path):
    seed = int(os.environ.get("KILL_SEED", random.randrange(1 << 30)))
    rnd = random.Random(seed)
    port, http = free_port(), free_port()
    mosquitto = start_mosquitto(port, str(tmp_path / "mosquitto"))
    floor_path = tmp_path / "floor.json"
    floor_path.write_text(json.dumps(FLOOR))
    args = (tmp_path, port, http, "mqtt://127.0.0.1:%d" % port, ["--floor", str(floor_path)])
    hub = start_hub(*args)
    db = Database(str(tmp_path / "data" / "hub.sqlite3"))
    tables = {t: Device(port, "table", t, hb=600) for t in ("T1", "T2", "T5", "T6")}
    pagers = {p: Device(port, "pager", p, hb=600) for p in ("P1", "P2", "P4")}
    counter = {t: 0 for t in tables}
    raised = {}  # id -> (table, type): every raise the broker acknowledged
    try:
        wait_until(lambda: len(db.query("SELECT id FROM devices WHERE kind = 'pager' AND online = 1")) == 3,
                   WAIT_S, "the pagers online at the hub")
        for kill in range(KILLS):
            # tables and pagers keep going while the hub is killed somewhere in their stream
            stop = threading.Event()
            busy = threading.Thread(target=keep_acting, args=(random.Random(rnd.random()), stop, tables, pagers,
                                                              counter, raised))
            busy.start()
            time.sleep(rnd.uniform(0.05, 0.6))
            hub.proc.kill()  # SIGKILL: no cleanup at all
            hub.proc.wait(10)
            stop.set()
            busy.join(WAIT_S)
            hub = start_hub(*args)
            check_resumed(db, tables, pagers, raised, "after kill %d (seed %d)" % (kill + 1, seed))
        # the timers resume: an unanswered call climbs the steps across a last kill
        t5 = tables["T5"]
        counter["T5"] += 1
        call_id = "T5-%d" % counter["T5"]
        for row in db.query("SELECT id FROM calls WHERE table_id = 'T5' AND type = 'napkins'"
                            " AND state IN ('open', 'assigned', 'acked')"):
            t5.send("call", {"id": row["id"], "action": "cancel"})
        t5.send("call", {"id": call_id, "action": "raise", "type": "napkins"})
        raised[call_id] = ("T5", "napkins")
        wait_until(lambda: db.query("SELECT 1 FROM call_escalations WHERE call_id = ?", (call_id,)), WAIT_S,
                   "the first escalation step")
        hub.proc.kill()
        hub.proc.wait(10)
        time.sleep(2 * STEP_S)  # the next step falls due while the hub is down
        hub = start_hub(*args)
        wait_until(lambda: len(db.query("SELECT 1 FROM call_escalations WHERE call_id = ?", (call_id,))) >= 3,
                   WAIT_S, "escalation to the manager after the restart")
        steps = [r["step"] for r in db.query("SELECT step FROM call_escalations WHERE call_id = ? ORDER BY n",
                                             (call_id,))]
        assert steps[:3] == EXPECTED_STEPS
        wait_until(lambda: call_id in snapshot_ids(pagers["P4"]), WAIT_S, "the call on the manager's pager")
        check_resumed(db, tables, pagers, raised, "at the end (seed %d)" % seed)
        log = hub.log()
        assert log.count("hub up:") == KILLS + 2
        assert "Traceback" not in log, log[log.index("Traceback") - 500:][:3000]
    finally:
        for dev in list(tables.values()) + list(pagers.values()):
            dev.close()
        hub.stop()
        stop_process(mosquitto)


def keep_acting(rnd, stop, tables, pagers, counter, raised):
    for _ in range(MAX_ACTS):
        if stop.is_set():
            return
        act(rnd, tables, pagers, counter, raised)
        time.sleep(rnd.uniform(0, 0.03))


def act(rnd, tables, pagers, counter, raised):
    """One thing a table or a pager does, at random; returns once the broker has it."""
    what = rnd.choice(("raise", "raise", "burst", "dup", "ack", "ack", "done", "cancel"))
    if what == "burst":  # a rush: many presses in flight at once
        table = rnd.choice(sorted(tables))
        sent = []
        for _ in range(rnd.randint(5, 30)):
            counter[table] += 1
            call_id, call_type = "%s-%d" % (table, counter[table]), rnd.choice(TYPES)
            data = protocol.encode("call", {"id": call_id, "action": "raise", "type": call_type})
            sent.append((call_id, call_type, tables[table].client.publish(tables[table].topic("call"), data, 1)))
        for call_id, call_type, info in sent:
            info.wait_for_publish(WAIT_S)
            raised[call_id] = (table, call_type)
    elif what == "dup" and raised:
        call_id = rnd.choice(sorted(raised))
        table, call_type = raised[call_id]
        tables[table].send("call", {"id": call_id, "action": "raise", "type": call_type})
    elif what in ("ack", "done"):
        pager = pagers[rnd.choice(sorted(pagers))]
        shown = snapshot_ids(pager)
        if shown:
            pager.send("act", {"id": rnd.choice(shown), "action": what})
    elif what == "cancel" and raised:
        call_id = rnd.choice(sorted(raised))
        tables[raised[call_id][0]].send("call", {"id": call_id, "action": "cancel"})
    else:
        table = rnd.choice(sorted(tables))
        counter[table] += 1
        call_id = "%s-%d" % (table, counter[table])
        call_type = rnd.choice(TYPES)
        tables[table].send("call", {"id": call_id, "action": "raise", "type": call_type})  # waits for PUBACK
        raised[call_id] = (table, call_type)


def check_resumed(db, tables, pagers, raised, when):
    def all_known():
        return set(raised) <= {r["id"] for r in db.query("SELECT id FROM call_ids")}
    wait_until(all_known, WAIT_S, "every raised id at the hub %s" % when)
    doubles = db.query("SELECT table_id, type FROM calls WHERE state IN ('open', 'assigned', 'acked')"
                       " GROUP BY table_id, type HAVING COUNT(*) > 1")
    assert doubles == [], "two live calls for one table and type %s" % when

    def pagers_show_their_tasks():
        live = db.query("SELECT calls.id, calls.pager, t.watcher FROM calls JOIN call_timers t"
                        " ON t.call_id = calls.id WHERE calls.state IN ('assigned', 'acked')")
        for name, pager in pagers.items():
            held = sorted(r["id"] for r in live if name in (r["pager"], r["watcher"]))
            if snapshot_ids(pager) != held:
                return False
        return True
    wait_until(pagers_show_their_tasks, WAIT_S, "each pager's snapshot to match its open tasks %s" % when)

    def timers_running():
        now = time.time()
        rows = db.query("SELECT t.due_at FROM call_timers t JOIN calls ON calls.id = t.call_id"
                        " WHERE calls.state IN ('open', 'assigned')")
        return all(r["due_at"] is not None and r["due_at"] > now - STEP_S for r in rows)
    wait_until(timers_running, WAIT_S, "every unacknowledged call's timer running, none overdue %s" % when)

    def tables_told():
        for call in db.query("SELECT id, table_id, state FROM calls WHERE state IN ('open', 'assigned', 'acked')"):
            ids = {r["id"] for r in db.query("SELECT id FROM call_ids WHERE call_id = ?", (call["id"],))}
            heard = [p for t, p in tables[call["table_id"]].received
                     if t.endswith("/feedback") and p.get("id") in ids]
            if not heard or heard[-1]["state"] != TOLD[call["state"]]:
                return False
        return True
    wait_until(tables_told, WAIT_S, "every table told where its live calls stand %s" % when)
    for call_id in [r["call_id"] for r in db.query("SELECT DISTINCT call_id FROM call_escalations")]:
        steps = [r["step"] for r in db.query("SELECT step FROM call_escalations WHERE call_id = ? ORDER BY n",
                                             (call_id,))]
        assert steps == (EXPECTED_STEPS + ["repage"] * len(steps))[:len(steps)], (call_id, steps, when)
