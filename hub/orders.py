"""Orders: the canonical order, its intake from every channel, and its status lifecycle.

An order is keyed by (channel, the channel's own order id), so the same order delivered
twice is one order. A later delivery is diffed line by line against the live order: new,
changed and removed (void) lines are marked `changed` on the station tickets. Status runs
received -> cooking (on a kitchen display) -> ready (every station bumped) -> picked_up
(the runner's pickup task done, or the expo bumped it); `void` cancels it. Every status
goes out on the `order` topic and, when configured, to the outbound status webhook.

protocol/ORDERS.md documents the canonical format that parse() accepts.
"""
import json
import logging
import re

import protocol
from hub import store as _store
from hub.pagers import Task

log = logging.getLogger(__name__)

STATUSES = ("received", "cooking", "ready", "picked_up", "void")
LIVE = ("received", "cooking", "ready")
PICKUP_PRIO = 7  # food waiting at the pass outranks every table call
TASK_PREFIX = "pickup:"
MAX_ITEMS = 100
_CHANNEL = re.compile(r"^[a-z0-9_-]{1,16}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    n            INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,      -- O<n>
    channel      TEXT NOT NULL,
    ref          TEXT NOT NULL,             -- the channel's own order id
    number       TEXT NOT NULL,             -- what the customer is told, e.g. #1001
    table_name   TEXT,
    note         TEXT,
    allergy      TEXT,
    status       TEXT NOT NULL,             -- received | cooking | ready | picked_up | void
    version      INTEGER,                   -- the channel's version; older deliveries are stale
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    ready_at     REAL,
    picked_at    REAL,
    voided_at    REAL,
    runner       TEXT,                      -- pager holding the pickup task
    runner_state TEXT,                      -- open | assigned | acked while ready
    runner_page  INTEGER NOT NULL DEFAULT 0,
    UNIQUE (channel, ref)
);
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, created_at);
CREATE TABLE IF NOT EXISTS order_lines (
    order_id TEXT NOT NULL REFERENCES orders (id),
    line     TEXT NOT NULL,                 -- the channel's line id, or its position
    pos      INTEGER NOT NULL,
    name     TEXT NOT NULL,
    sku      TEXT,
    category TEXT,
    qty      INTEGER NOT NULL,
    mods     TEXT NOT NULL,                 -- JSON list of str
    note     TEXT,
    allergy  TEXT,
    station  TEXT NOT NULL,
    void     INTEGER NOT NULL DEFAULT 0,
    changed  INTEGER NOT NULL DEFAULT 0,    -- since its station last bumped
    PRIMARY KEY (order_id, line)
);
CREATE TABLE IF NOT EXISTS order_events (
    n        INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL REFERENCES orders (id),
    at       REAL NOT NULL,
    event    TEXT NOT NULL,                 -- a status, or changed bump recall allergy_ack pickup
    detail   TEXT
);
CREATE INDEX IF NOT EXISTS order_events_by_order ON order_events (order_id, n);
"""
_store.EXTRA_SCHEMAS.append(SCHEMA)


class OrderError(ValueError):
    """A canonical order broke the format; `field` names the culprit."""

    def __init__(self, field, reason):
        super().__init__("%s: %s" % (field, reason))
        self.field = field
        self.reason = reason


# --- the canonical format --------------------------------------------------
def _text(obj, key, path, most, required=False):
    value = obj.get(key)
    if value is None or value == "":
        if required:
            raise OrderError(path, "missing")
        return None
    if not isinstance(value, str):
        raise OrderError(path, "must be a string")
    if len(value) > most:
        raise OrderError(path, "longer than %d characters" % most)
    return value


def _int(obj, key, path, lo, hi, required=False):
    value = obj.get(key)
    if value is None:
        if required:
            raise OrderError(path, "missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise OrderError(path, "must be an integer from %d to %d" % (lo, hi))
    return value


def _fields(obj, path, known):
    if not isinstance(obj, dict):
        raise OrderError(path or "body", "must be a JSON object")
    for key in obj:
        if key not in known:
            raise OrderError(path + key, "unknown field")


ORDER_FIELDS = ("channel", "ref", "number", "version", "status", "table", "note", "allergy", "items")
ITEM_FIELDS = ("id", "name", "qty", "mods", "note", "allergy", "sku", "category", "void")


def _item(obj, n):
    path = "items[%d]" % n
    _fields(obj, path + ".", ITEM_FIELDS)
    mods = obj.get("mods") or []
    if not isinstance(mods, list) or len(mods) > 8:
        raise OrderError(path + ".mods", "must be a list of at most 8 strings")
    for k, mod in enumerate(mods):
        if not isinstance(mod, str) or not 0 < len(mod) <= 64:
            raise OrderError("%s.mods[%d]" % (path, k), "must be a string of 1-64 characters")
    void = obj.get("void", False)
    if not isinstance(void, bool):
        raise OrderError(path + ".void", "must be true or false")
    return {"id": _text(obj, "id", path + ".id", 64) or str(n + 1),
            "name": _text(obj, "name", path + ".name", 64, True),
            "qty": _int(obj, "qty", path + ".qty", 1, 999, True),
            "mods": mods, "note": _text(obj, "note", path + ".note", 64),
            "allergy": _text(obj, "allergy", path + ".allergy", 80),
            "sku": _text(obj, "sku", path + ".sku", 64),
            "category": _text(obj, "category", path + ".category", 64), "void": void}


def parse(obj):
    """Check a canonical order and return it with defaults filled in; raise OrderError."""
    _fields(obj, "", ORDER_FIELDS)
    channel = _text(obj, "channel", "channel", 16, True)
    if not _CHANNEL.match(channel):
        raise OrderError("channel", "must be 1-16 of a-z 0-9 - _")
    ref = _text(obj, "ref", "ref", 64, True)
    status = obj.get("status", "open")
    if status not in ("open", "void"):
        raise OrderError("status", "must be one of open, void")
    items = obj.get("items")
    if items is None and status == "void":
        items = []
    if not isinstance(items, list) or not (items or status == "void"):
        raise OrderError("items", "must be a non-empty list of order lines")
    if len(items) > MAX_ITEMS:
        raise OrderError("items", "more than %d lines" % MAX_ITEMS)
    lines = [_item(item, n) for n, item in enumerate(items)]
    ids = [line["id"] for line in lines]
    for n, line_id in enumerate(ids):
        if line_id in ids[:n]:
            raise OrderError("items[%d].id" % n, "%r repeats an earlier line's id" % line_id)
    return {"channel": channel, "ref": ref, "number": _text(obj, "number", "number", 16) or ref[-6:],
            "version": _int(obj, "version", "version", 0, 2 ** 62), "status": status,
            "table": _text(obj, "table", "table", 24), "note": _text(obj, "note", "note", 160),
            "allergy": _text(obj, "allergy", "allergy", 160), "items": lines}


def _summary(lines):
    parts = ["%s×%d" % (line["name"], line["qty"]) if line["qty"] > 1 else line["name"]
             for line in lines if not line["void"]]
    text = " ".join(parts)
    return text if len(text) <= 80 else text[:79] + "…"


class Orders:
    def __init__(self, store, stations, pagers, outbox, webhooks=None):
        self.store = store
        self.stations = stations
        self.pagers = pagers
        self.outbox = outbox
        self.webhooks = webhooks  # hub.webhooks.StatusWebhook or None
        stations.orders = self
        pagers.sources.append(self.tasks_on)

    # --- queries ---------------------------------------------------------
    def get(self, order_id):
        return self.store.one("SELECT * FROM orders WHERE id = ?", (order_id,))

    def find(self, channel, ref):
        return self.store.one("SELECT * FROM orders WHERE channel = ? AND ref = ?", (channel, ref))

    def lines(self, order_id):
        return self.store.query("SELECT * FROM order_lines WHERE order_id = ? ORDER BY pos, line", (order_id,))

    def list(self, status=None, limit=100):
        where, args = ("WHERE status = ?", (status,)) if status else ("", ())
        return self.store.query("SELECT * FROM orders %s ORDER BY n DESC LIMIT ?" % where, args + (limit,))

    def live(self):
        return self.store.query("SELECT * FROM orders WHERE status IN ('received', 'cooking', 'ready')"
                                " ORDER BY n")

    def revision(self):
        """Grows with every order event: the pickup board redraws when it moves."""
        return self.store.one("SELECT COALESCE(MAX(n), 0) AS n FROM order_events")["n"]

    # --- intake ----------------------------------------------------------
    def intake(self, now, order):
        """Apply one canonical order (already parse()d); return what happened."""
        row = self.find(order["channel"], order["ref"])
        if row is None:
            return self._create(order, now)
        if row["status"] == "void":
            return self._result(row, "ignored", "the order was voided")
        if order["version"] is not None and row["version"] is not None and order["version"] < row["version"]:
            log.info("order %s: stale delivery (version %d < %d) ignored", row["id"], order["version"],
                     row["version"])
            return self._result(row, "stale", "version %d is older than %d" % (order["version"], row["version"]))
        if row["status"] == "picked_up":
            return self._result(row, "ignored", "the order was already picked up")
        if order["status"] == "void":
            self._void(row, now, "voided by %s" % order["channel"])
            return self._result(self.get(row["id"]), "voided")
        changed = self._apply(row, order, now)
        row = self.get(row["id"])
        if not changed:
            return self._result(row, "duplicate")
        return self._result(row, "updated", changed=changed)

    def _result(self, row, result, why=None, **extra):
        body = {"result": result, "order": row["id"], "channel": row["channel"], "ref": row["ref"],
                "status": row["status"]}
        if why:
            body["why"] = why
        body.update(extra)
        return body

    def _create(self, order, now):
        void = order["status"] == "void" or all(item["void"] for item in order["items"])
        status = "void" if void else "received"
        self.store.insert("orders", {"id": "new", "channel": order["channel"], "ref": order["ref"],
                                     "number": order["number"], "table_name": order["table"],
                                     "note": order["note"], "allergy": order["allergy"], "status": status,
                                     "version": order["version"], "created_at": now, "updated_at": now})
        n = self.store.one("SELECT last_insert_rowid() AS n")["n"]
        order_id = "O%d" % n
        self.store.run("UPDATE orders SET id = ? WHERE n = ?", (order_id, n))
        row = self.get(order_id)
        if status == "void":
            log.info("order %s (%s %s) arrived already void", order_id, order["channel"], order["ref"])
            self._status(row, "void", now, voided_at=now)
            return self._result(self.get(order_id), "voided")
        for pos, item in enumerate(order["items"]):
            self._insert_line(order_id, pos, item, changed=False)
        self.stations.sync(row, now, first=True)
        self._status(row, "received", now)
        log.info("order %s received from %s (%s): %s", order_id, order["channel"], order["ref"],
                 _summary(self.lines(order_id)))
        return self._result(self.get(order_id), "created",
                            tickets=[t["id"] for t in self.stations.of_order(order_id)])

    def _insert_line(self, order_id, pos, item, changed):
        station = self.stations.menu.route(item["name"], item["sku"], item["category"])
        self.store.insert("order_lines", {"order_id": order_id, "line": item["id"], "pos": pos,
                                          "name": item["name"], "sku": item["sku"], "category": item["category"],
                                          "qty": item["qty"], "mods": json.dumps(item["mods"], ensure_ascii=False),
                                          "note": item["note"], "allergy": item["allergy"], "station": station,
                                          "void": int(item["void"]), "changed": int(changed)})
        return station

    def _apply(self, row, order, now):
        """Diff a new delivery against the live order; return what changed (line ids, fields)."""
        old = {line["line"]: line for line in self.lines(row["id"])}
        changed, stations, cook = [], set(), set()
        for pos, item in enumerate(order["items"]):
            cur = old.pop(item["id"], None)
            if cur is None:
                station = self._insert_line(row["id"], pos, item, changed=True)
                changed.append(item["id"])
                stations.add(station)
                if not item["void"]:
                    cook.add(station)
                continue
            want = {"name": item["name"], "sku": item["sku"], "category": item["category"], "qty": item["qty"],
                    "mods": json.dumps(item["mods"], ensure_ascii=False), "note": item["note"],
                    "allergy": item["allergy"], "void": int(item["void"])}
            if cur["pos"] != pos:
                self.store.update("order_lines", {"order_id": row["id"], "line": cur["line"]}, {"pos": pos})
            if all(cur[key] == value for key, value in want.items()):
                continue
            self.store.update("order_lines", {"order_id": row["id"], "line": cur["line"]}, dict(want, changed=1))
            changed.append(item["id"])
            stations.add(cur["station"])
            more = cur["void"] or want["qty"] > cur["qty"] or any(
                cur[key] != want[key] for key in ("name", "mods", "note"))
            if more and not want["void"]:
                cook.add(cur["station"])
        for cur in old.values():  # lines the channel dropped are void
            if not cur["void"]:
                self.store.update("order_lines", {"order_id": row["id"], "line": cur["line"]},
                                  {"void": 1, "changed": 1})
                changed.append(cur["line"])
                stations.add(cur["station"])
        fields = {"number": order["number"], "table_name": order["table"], "note": order["note"],
                  "allergy": order["allergy"]}
        touched = [key.replace("table_name", "table") for key, value in fields.items() if row[key] != value]
        if touched:
            everywhere = {t["station"] for t in self.stations.of_order(row["id"])}
            stations.update(s for s in everywhere if s in self.stations.menu.kitchen)
            changed.extend(touched)
        if "allergy" in touched:
            self.stations.reset_allergy(row["id"])
        version = row["version"] if order["version"] is None else order["version"]
        self.store.update("orders", {"id": row["id"]}, dict(fields, updated_at=now, version=version))
        if not changed:
            return changed
        log.info("order %s changed: %s", row["id"], ", ".join(changed))
        self.event(row["id"], now, "changed", ", ".join(changed))
        if all(line["void"] for line in self.lines(row["id"])):
            self._void(self.get(row["id"]), now, "every line voided")
            return changed
        self.stations.sync(self.get(row["id"]), now, changed=stations, cook=cook)
        self.progress(row["id"], now)
        return changed

    # --- lifecycle ---------------------------------------------------------
    def event(self, order_id, now, event, detail=None):
        self.store.insert("order_events", {"order_id": order_id, "at": now, "event": event, "detail": detail})
        return self.store.one("SELECT last_insert_rowid() AS n")["n"]

    def _status(self, row, status, now, **fields):
        self.store.update("orders", {"id": row["id"]}, dict(fields, status=status, updated_at=now))
        n = self.event(row["id"], now, status)
        message = {"order": row["id"], "channel": row["channel"], "ref": row["ref"], "status": status}
        self.outbox.send("hub", protocol.HUB_ID, "order", message)
        if self.webhooks:
            self.webhooks.enqueue(n, dict(message, number=row["number"]), now)
        log.info("order %s is %s", row["id"], status)

    def shown(self, order_ids, now):
        """These orders are on an online kitchen display: received -> cooking."""
        for order_id in order_ids:
            row = self.get(order_id)
            if row and row["status"] == "received":
                self._status(row, "cooking", now)

    def progress(self, order_id, now):
        """Ready once every kitchen ticket is bumped; back to cooking if one opens again."""
        row = self.get(order_id)
        if row is None or row["status"] not in LIVE:
            return
        kitchen = [t for t in self.stations.of_order(order_id)
                   if t["station"] in self.stations.menu.kitchen and t["state"] != "void"]
        done = bool(kitchen) and all(t["state"] == "bumped" for t in kitchen)
        if done and row["status"] != "ready":
            if row["status"] == "received":
                self._status(row, "cooking", now)
            self._status(row, "ready", now, ready_at=now, runner=None, runner_state="open", runner_page=0)
            self._assign(self.get(order_id), now)
        elif not done and row["status"] == "ready":
            self._drop_task(row)
            self._status(row, "cooking", now, ready_at=None, runner=None, runner_state=None)

    def hand_over(self, order_id, device, now):
        """The expo bumped the whole order: picked up if ready, else say why not."""
        row = self.get(order_id)
        if row["status"] in ("received", "cooking"):
            cooking = [t["station"] for t in self.stations.of_order(order_id)
                       if t["state"] == "open" and t["station"] in self.stations.menu.kitchen]
            return "order %s is still cooking at %s" % (order_id, ", ".join(cooking))
        if row["status"] != "ready":
            return "order %s is already %s" % (order_id, row["status"])
        self._picked_up(row, now, device)
        return None

    def reopen(self, order_id, now):
        """A station recalled a ticket of this order; None if allowed, else why not."""
        row = self.get(order_id)
        if row["status"] not in LIVE:
            return "order %s is already %s" % (order_id, row["status"])
        if row["status"] == "ready":
            self._drop_task(row)
            self._status(row, "cooking", now, ready_at=None, runner=None, runner_state=None)
        return None

    def _picked_up(self, row, now, by):
        self._drop_task(row)
        self._status(row, "picked_up", now, picked_at=now, runner_state=None)
        self.event(row["id"], now, "pickup", by)
        self.stations.close(row["id"], "bumped")

    def _void(self, row, now, why):
        self._drop_task(row)
        self._status(row, "void", now, voided_at=now, runner_state=None)
        self.stations.close(row["id"], "void")
        log.info("order %s void: %s", row["id"], why)

    # --- the runner's pickup task ------------------------------------------
    def tasks_on(self, pager):
        rows = self.store.query("SELECT * FROM orders WHERE runner = ? AND status = 'ready'"
                                " AND runner_state IN ('assigned', 'acked')", (pager,))
        return [Task(id=TASK_PREFIX + row["id"], kind="pickup", table=(row["table_name"] or "#" + row["number"])[:24],
                     type="pickup", prio=PICKUP_PRIO, raised_at=row["ready_at"], state=row["runner_state"],
                     page=row["runner_page"], note=_summary(self.lines(row["id"])) or None) for row in rows]

    def _assign(self, row, now, exclude=()):
        """To a runner on duty, else anyone at work with a pager; False if nobody is."""
        target = (self.pagers.pick(roles=("runner",), exclude=exclude, now=now)
                  or self.pagers.pick(exclude=exclude, now=now))
        if target is None:
            log.info("order %s ready at the pass; no pager at work to take it", row["id"])
            self.store.update("orders", {"id": row["id"]}, {"runner": None, "runner_state": "open"})
            return False
        self.store.update("orders", {"id": row["id"]}, {"runner": target, "runner_state": "assigned",
                                                          "runner_page": row["runner_page"] + 1})
        self.event(row["id"], now, "pickup", "assigned to " + target)
        self.pagers.touch(target)
        log.info("order %s ready: pickup task on pager %s", row["id"], target)
        return True

    def _drop_task(self, row):
        if row["runner"]:
            self.pagers.touch(row["runner"])

    def on_act(self, pager, msg, now):
        """A pager's act on a pickup task; False if the id is not one of ours."""
        if not msg["id"].startswith(TASK_PREFIX):
            return False
        order_id, action = msg["id"][len(TASK_PREFIX):], msg["action"]
        row = self.get(order_id)
        if row is None or row["status"] != "ready" or row["runner"] != pager:
            log.warning("pager %s: %s on %s ignored (order %s, runner %s)", pager, action, msg["id"],
                        row["status"] if row else "unknown", row["runner"] if row else None)
            self.pagers.touch(pager)
            return True
        if action == "ack":
            if row["runner_state"] != "acked":
                self.store.update("orders", {"id": order_id}, {"runner_state": "acked"})
                self.event(order_id, now, "pickup", "acked by " + pager)
            self.pagers.touch(pager)
        elif action == "done":
            self._picked_up(row, now, pager)
        else:
            self.pagers.touch(pager)
            if not self._assign(row, now, exclude={pager}):
                self.store.update("orders", {"id": order_id}, {"runner": pager, "runner_state": "assigned"})
                log.info("pager %s gave back pickup %s; nobody else is at work, it stays", pager, order_id)
        return True

    def presence(self, kind, device, change, now):
        """A device came online or went offline."""
        if kind == "kds" and change == "online":
            self.stations.resend(device)
        elif kind == "pager":
            self.rebalance(now)

    def rebalance(self, now):
        """Move pickups off pagers whose holder is not at work; place waiting ones."""
        rows = self.store.query("SELECT * FROM orders WHERE status = 'ready' ORDER BY ready_at, n")
        if not rows:
            return
        staff = self.pagers.eligible(now)
        for row in rows:
            if row["runner"] and row["runner"] not in staff:
                self.pagers.touch(row["runner"])
                log.info("pickup of order %s leaves pager %s (not at work)", row["id"], row["runner"])
                self._assign(row, now, exclude={row["runner"]})
        if not staff:
            return
        for row in self.store.query("SELECT * FROM orders WHERE status = 'ready' AND runner_state = 'open'"
                                    " ORDER BY ready_at, n"):
            if not self._assign(row, now):
                return

    def tick(self, now):
        """Shift changes and pagers gone silent: pickups follow whoever is at work."""
        self.rebalance(now)

    def restore(self, now):
        """After every (re)connection: every display's snapshot again, waiting pickups placed."""
        self.stations.touch_all()
        self.rebalance(now)
