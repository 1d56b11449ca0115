"""Kitchen stations: the menu's routing, per-station tickets, bumps and display snapshots.

Each order is split into one ticket per station (id "<order>-<station>") holding that
station's lines; an expo station sees every order whole. A kitchen display (kds) shows
one station and always receives that station's whole list of open tickets (retained,
seq increasing), never a diff, so it never needs a manual refresh.
"""
import json
import logging
import re

import protocol
from hub import store as _store

log = logging.getLogger(__name__)

WARN_MIN = 5
LATE_MIN = 8
MAX_TICKETS = 10  # per snapshot by default: small enough for a device's heap
RECALL_DEPTH = 20  # bumps kept per station for recall
RECALL_LAST = "last"  # a recall of this id brings back the station's newest bump
MAX_LINES = 30
MAX_AGE_S = 86400
_ID = re.compile(r"^[A-Za-z0-9_-]{1,24}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    id          TEXT PRIMARY KEY,           -- <order>-<station>
    order_id    TEXT NOT NULL,
    station     TEXT NOT NULL,
    state       TEXT NOT NULL,              -- open | bumped | void
    opened_at   REAL NOT NULL,
    bumped_at   REAL,
    bumped_by   TEXT,                       -- the kds that bumped it
    allergy_ack INTEGER NOT NULL DEFAULT 0,
    changed     INTEGER NOT NULL DEFAULT 0  -- modified since the cook last bumped it
);
CREATE INDEX IF NOT EXISTS tickets_by_station ON tickets (station, state, opened_at);
CREATE INDEX IF NOT EXISTS tickets_by_order ON tickets (order_id);
-- The newest bumps of each station, for recall.
CREATE TABLE IF NOT EXISTS bumps (
    n         INTEGER PRIMARY KEY AUTOINCREMENT,
    station   TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    at        REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS bumps_by_station ON bumps (station, n);
-- The tickets payload last published to each kitchen display.
CREATE TABLE IF NOT EXISTS kds_snapshots (
    device  TEXT PRIMARY KEY,
    seq     INTEGER NOT NULL,
    payload TEXT NOT NULL
);
"""
_store.EXTRA_SCHEMAS.append(SCHEMA)

DEMO_MENU = {
    "stations": {
        "wok": {"label": "炒锅", "devices": ["wok"]},
        "cold": {"label": "凉菜", "devices": ["cold"]},
        "pastry": {"label": "面点", "devices": ["pastry"], "warn_min": 8, "late_min": 12},
        "expo": {"label": "出餐", "devices": ["expo"], "expo": True},
    },
    "items": {
        "宫保鸡丁": "wok", "麻婆豆腐": "wok", "鱼香肉丝": "wok", "扬州炒饭": "wok",
        "凉拌黄瓜": "cold", "口水鸡": "cold", "皮蛋豆腐": "cold",
        "小笼包": "pastry", "葱油饼": "pastry", "蛋挞": "pastry", "生日蛋糕": "pastry",
    },
    "categories": {"热菜": "wok", "凉菜": "cold", "饮品": "cold", "点心": "pastry", "面包": "pastry",
                   "蛋糕": "pastry"},
    "default": "wok",
}


class MenuError(ValueError):
    pass


class Station:
    def __init__(self, name, label, devices, warn_s, late_s, expo, max_tickets):
        self.name = name
        self.label = label
        self.devices = devices
        self.warn_s = warn_s
        self.late_s = late_s
        self.expo = expo
        self.max_tickets = max_tickets


def _number(path, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise MenuError("%s: must be a number from %g to %g" % (path, lo, hi))
    return value


def _station(name, spec):
    path = "stations.%s" % name
    if not _ID.match(name):
        raise MenuError("%s: a station name is 1-24 of A-Z a-z 0-9 - _" % path)
    if not isinstance(spec, dict):
        raise MenuError("%s: must be an object" % path)
    known = ("label", "devices", "warn_min", "late_min", "expo", "max_tickets")
    for key in spec:
        if key not in known:
            raise MenuError("%s.%s: unknown field (known: %s)" % (path, key or '""', ", ".join(known)))
    label = spec.get("label", name)
    if not isinstance(label, str) or not 0 < len(label) <= 24:
        raise MenuError("%s.label: must be a string of 1-24 characters" % path)
    devices = spec.get("devices", [])
    if not isinstance(devices, list):
        raise MenuError("%s.devices: must be a list of kds device ids" % path)
    for n, dev in enumerate(devices):
        if not isinstance(dev, str) or not _ID.match(dev):
            raise MenuError("%s.devices[%d]: a device id is 1-24 of A-Z a-z 0-9 - _" % (path, n))
    warn = _number(path + ".warn_min", spec.get("warn_min", WARN_MIN), 0.1, 600)
    late = _number(path + ".late_min", spec.get("late_min", max(LATE_MIN, warn)), warn, 600)
    expo = spec.get("expo", False)
    if not isinstance(expo, bool):
        raise MenuError("%s.expo: must be true or false" % path)
    most = spec.get("max_tickets", MAX_TICKETS)
    if isinstance(most, bool) or not isinstance(most, int) or not 1 <= most <= 24:
        raise MenuError("%s.max_tickets: must be an integer from 1 to 24" % path)
    return Station(name, label, list(devices), int(warn * 60), int(late * 60), expo, most)


class Menu:
    """Which station cooks what, and which kitchen displays show which station."""

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise MenuError("menu: must be a JSON object")
        for key in spec:
            if key not in ("stations", "items", "categories", "default"):
                raise MenuError("%s: unknown field (known: stations, items, categories, default)" % (key or '""'))
        stations = spec.get("stations")
        if not isinstance(stations, dict) or not stations:
            raise MenuError("stations: must be a non-empty object of station name -> settings")
        self.stations = {name: _station(name, s) for name, s in stations.items()}
        self.kitchen = [s.name for s in self.stations.values() if not s.expo]
        if not self.kitchen:
            raise MenuError("stations: at least one station must not be an expo")
        self.device_station = {}
        for station in self.stations.values():
            for dev in station.devices:
                if dev in self.device_station:
                    raise MenuError("stations.%s.devices: %s already shows station %s"
                                    % (station.name, dev, self.device_station[dev]))
                self.device_station[dev] = station.name
        self.items = self._routes(spec, "items")
        self.categories = self._routes(spec, "categories")
        self.default = spec.get("default", self.kitchen[0])
        if self.default not in self.kitchen:
            raise MenuError("default: must name a station that is not an expo (%s)" % ", ".join(self.kitchen))

    def _routes(self, spec, key):
        routes = spec.get(key, {})
        if not isinstance(routes, dict):
            raise MenuError("%s: must be an object of name -> station" % key)
        for name, station in routes.items():
            if station not in self.kitchen:
                raise MenuError("%s.%s: %r is not a kitchen station (%s)"
                                % (key, name, station, ", ".join(self.kitchen)))
        return dict(routes)

    def route(self, name, sku=None, category=None):
        """The station of an order line: by sku, then dish name, then category, else the default."""
        for table, key in ((self.items, sku), (self.items, name), (self.categories, category)):
            if key and key in table:
                return table[key]
        return self.default

    def expos(self):
        return [s.name for s in self.stations.values() if s.expo]

    def devices(self):
        return sorted(self.device_station)


def load_menu(path=None):
    """The menu in a JSON file, or the built-in demo menu."""
    if path is None:
        return Menu(DEMO_MENU)
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except OSError as exc:
        raise MenuError("%s: %s" % (path, exc.strerror))
    except ValueError as exc:
        raise MenuError("%s: not valid JSON (%s)" % (path, exc))
    try:
        return Menu(spec)
    except MenuError as exc:
        raise MenuError("%s: %s" % (path, exc))


def _clip(text, n):
    return text if len(text) <= n else text[:n - 1] + "…"


class Stations:
    """Tickets per station, kitchen display snapshots, and bump / recall / allergy_ack."""

    def __init__(self, store, devices, outbox, site, menu):
        self.store = store
        self.devices = devices
        self.outbox = outbox
        self.site = site
        self.menu = menu
        self.orders = None  # set by Orders: told when tickets are bumped or shown
        self._dirty = set()  # kds device ids whose snapshot must go out

    # --- queries ---------------------------------------------------------
    def ticket(self, ticket_id):
        return self.store.one("SELECT * FROM tickets WHERE id = ?", (ticket_id,))

    def of_order(self, order_id):
        return self.store.query("SELECT * FROM tickets WHERE order_id = ? ORDER BY id", (order_id,))

    def snapshot(self, device):
        """The tickets payload last published to a kitchen display, or None."""
        row = self.store.one("SELECT payload FROM kds_snapshots WHERE device = ?", (device,))
        return json.loads(row["payload"]) if row else None

    def tickets(self, station, now):
        """The station's open tickets as the display shows them, oldest first."""
        return [self._wire(row, now) for row in self._open(station)]

    def _open(self, station):
        return self.store.query("SELECT tickets.*, orders.channel, orders.number, orders.table_name,"
                                " orders.note, orders.allergy FROM tickets JOIN orders"
                                " ON orders.id = tickets.order_id WHERE tickets.station = ?"
                                " AND tickets.state = 'open' ORDER BY tickets.opened_at, orders.n",
                                (station,))

    def allergy(self, ticket):
        """The allergy banner of a ticket: the order's and its own lines' allergies."""
        order = self.store.one("SELECT allergy FROM orders WHERE id = ?", (ticket["order_id"],))
        return self._allergy(ticket, order["allergy"])

    def _lines(self, ticket):
        if self.menu.stations[ticket["station"]].expo:
            return self.store.query("SELECT * FROM order_lines WHERE order_id = ? ORDER BY pos",
                                    (ticket["order_id"],))
        return self.store.query("SELECT * FROM order_lines WHERE order_id = ? AND station = ? ORDER BY pos",
                                (ticket["order_id"], ticket["station"]))

    def _allergy(self, ticket, order_allergy, lines=None):
        parts = [order_allergy] if order_allergy else []
        for line in self._lines(ticket) if lines is None else lines:
            if line["allergy"] and not line["void"]:
                parts.append("%s: %s" % (line["name"], line["allergy"]))
        return "; ".join(parts)

    def _wire(self, row, now):
        station = self.menu.stations[row["station"]]
        lines = all_lines = self._lines(row)
        if len(lines) > MAX_LINES:
            lines = [line for line in lines if not line["void"]]
        hidden = len(lines) - MAX_LINES + 1 if len(lines) > MAX_LINES else 0
        items = []
        for line in lines[:len(lines) - hidden]:
            item = {"name": _clip(line["name"], 64), "qty": min(line["qty"], 999)}
            mods = [_clip(m, 64) for m in json.loads(line["mods"])]
            if line["note"]:
                mods.append(_clip(line["note"], 64))
            if mods:
                item["mods"] = mods[:8]
            if line["void"]:
                item["void"] = True
            if line["changed"]:
                item["changed"] = True
            items.append(item)
        if hidden:
            log.warning("ticket %s has %d lines; the display shows %d and a marker", row["id"], len(lines),
                        len(items))
            items.append({"name": "+%d more" % hidden, "qty": 1})
        ticket = {"id": row["id"], "order": row["order_id"], "ch": row["channel"][:16], "num": row["number"]}
        if row["table_name"]:
            ticket["table"] = row["table_name"]
        ticket["items"] = items
        if row["note"]:
            ticket["note"] = _clip(row["note"], 160)
        allergy = self._allergy(row, row["allergy"], all_lines)
        if allergy:
            ticket["allergy"] = _clip(allergy, 160)
            ticket["allergy_ack"] = bool(row["allergy_ack"])
        others = self.store.query("SELECT station, state FROM tickets WHERE order_id = ? AND id != ?"
                                  " AND state != 'void' ORDER BY station", (row["order_id"], row["id"]))
        if station.expo:  # expo: the stations still cooking
            also = [o["station"] for o in others if o["state"] == "open" and o["station"] in self.menu.kitchen]
        else:
            also = [o["station"] for o in others if o["station"] in self.menu.kitchen]
        if also:
            ticket["also"] = also[:8]
        ticket["age"] = min(max(int(now - row["opened_at"]), 0), MAX_AGE_S)
        if row["changed"]:
            ticket["changed"] = True
        return ticket

    # --- splitting orders into tickets ----------------------------------
    def sync(self, order, now, changed=(), cook=(), first=False):
        """Bring an order's tickets in line with its lines.

        changed: stations whose lines changed; cook: stations given something new to cook
        (a bumped ticket there opens again); first: the order is new."""
        lines = self.store.query("SELECT station, void FROM order_lines WHERE order_id = ?", (order["id"],))
        live = {line["station"] for line in lines if not line["void"]}
        for name in live.difference(self.menu.kitchen):
            log.warning("order %s has lines for station %s, which the menu no longer has", order["id"], name)
        live.intersection_update(self.menu.kitchen)
        tickets = {t["station"]: t for t in self.of_order(order["id"])}
        for name in sorted(live):
            ticket = tickets.get(name)
            if ticket is None:
                self.store.insert("tickets", {"id": "%s-%s" % (order["id"], name), "order_id": order["id"],
                                              "station": name, "state": "open", "opened_at": now,
                                              "changed": int(not first)})
            elif ticket["state"] == "void" or (ticket["state"] == "bumped" and name in cook):
                self.store.update("tickets", {"id": ticket["id"]},
                                  {"state": "open", "bumped_at": None, "bumped_by": None, "changed": 1})
                log.info("ticket %s open again: the order changed", ticket["id"])
            elif ticket["state"] == "open" and name in changed:
                self.store.update("tickets", {"id": ticket["id"]}, {"changed": 1})
        for name, ticket in tickets.items():
            if name in self.menu.kitchen and name not in live and ticket["state"] == "open":
                self.store.update("tickets", {"id": ticket["id"]}, {"state": "void"})
                log.info("ticket %s removed: nothing left to cook there", ticket["id"])
        for name in self.menu.expos():
            if name not in tickets:
                self.store.insert("tickets", {"id": "%s-%s" % (order["id"], name), "order_id": order["id"],
                                              "station": name, "state": "open", "opened_at": now,
                                              "changed": int(not first)})
            elif changed and tickets[name]["state"] == "open":
                self.store.update("tickets", {"id": tickets[name]["id"]}, {"changed": 1})
        online = set(self.devices.online("kds"))
        for name in sorted(live):
            if not online.intersection(self.menu.stations[name].devices):
                log.warning("station %s has no kitchen display online; ticket %s-%s waits for one", name,
                            order["id"], name)
        self.touch_order(order["id"])

    def reset_allergy(self, order_id):
        """The allergy changed: every ticket of the order needs a fresh acknowledgement."""
        self.store.run("UPDATE tickets SET allergy_ack = 0, changed = 1 WHERE order_id = ? AND state = 'open'",
                       (order_id,))

    def close(self, order_id, state):
        """The order is over (picked_up or void): its tickets leave every display."""
        self.store.run("UPDATE tickets SET state = ? WHERE order_id = ? AND state = 'open'", (state, order_id))
        self.touch_order(order_id)

    def touch_order(self, order_id):
        for ticket in self.of_order(order_id):
            self.touch(ticket["station"])
        for name in self.menu.expos():
            self.touch(name)

    # --- bump / recall / allergy_ack -------------------------------------
    def on_bump(self, device, msg, now):
        ticket_id, action = msg["id"], msg["action"]
        name = self.menu.device_station.get(device)
        if name is None:
            return self._refuse(device, "device: kds %s shows no station in the menu" % device)
        if action == "recall":
            return self._recall(device, name, ticket_id, now)
        ticket = self.ticket(ticket_id)
        if ticket is None:
            return self._refuse(device, "id: no ticket %s" % ticket_id)
        if ticket["station"] != name:
            return self._refuse(device, "id: ticket %s belongs to station %s, %s shows %s"
                                % (ticket_id, ticket["station"], device, name))
        if ticket["state"] != "open":
            log.info("kds %s: %s on %s ignored, the ticket is %s", device, action, ticket_id, ticket["state"])
            self._dirty.add(device)
            return
        allergy = self.allergy(ticket)
        if action == "allergy_ack":
            if not allergy:
                log.info("kds %s: allergy_ack on %s ignored, it has no allergy", device, ticket_id)
            elif not ticket["allergy_ack"]:
                self.store.update("tickets", {"id": ticket_id}, {"allergy_ack": 1})
                self.orders.event(ticket["order_id"], now, "allergy_ack", "%s at %s" % (allergy, device))
                log.info("kds %s: allergy on %s acknowledged (%s)", device, ticket_id, allergy)
                self.touch(name)
            return
        if allergy and not ticket["allergy_ack"]:
            return self._refuse(device, "allergy: acknowledge %s on %s before bumping it" % (allergy, ticket_id))
        if self.menu.stations[name].expo:
            reason = self.orders.hand_over(ticket["order_id"], device, now)
            if reason:
                return self._refuse(device, "id: %s" % reason)
            return
        self.store.update("tickets", {"id": ticket_id},
                          {"state": "bumped", "bumped_at": now, "bumped_by": device, "changed": 0})
        self.store.run("UPDATE order_lines SET changed = 0 WHERE order_id = ? AND station = ?",
                       (ticket["order_id"], name))
        self.store.insert("bumps", {"station": name, "ticket_id": ticket_id, "at": now})
        self.store.run("DELETE FROM bumps WHERE station = ? AND n NOT IN (SELECT n FROM bumps WHERE station = ?"
                       " ORDER BY n DESC LIMIT %d)" % RECALL_DEPTH, (name, name))
        log.info("ticket %s bumped at kds %s", ticket_id, device)
        self.orders.event(ticket["order_id"], now, "bump", ticket_id)
        self.touch_order(ticket["order_id"])
        self.orders.progress(ticket["order_id"], now)

    def _recall(self, device, name, ticket_id, now):
        if ticket_id == RECALL_LAST:
            row = self.store.one("SELECT * FROM bumps WHERE station = ? ORDER BY n DESC LIMIT 1", (name,))
        else:
            row = self.store.one("SELECT * FROM bumps WHERE station = ? AND ticket_id = ?"
                                 " ORDER BY n DESC LIMIT 1", (name, ticket_id))
        if row is None:
            return self._refuse(device, "id: %s is not among the last %d bumps of station %s"
                                % (ticket_id, RECALL_DEPTH, name))
        ticket = self.ticket(row["ticket_id"])
        reason = self.orders.reopen(ticket["order_id"], now)
        if reason:
            return self._refuse(device, "id: %s" % reason)
        self.store.run("DELETE FROM bumps WHERE n = ?", (row["n"],))
        self.store.update("tickets", {"id": ticket["id"]}, {"state": "open", "bumped_at": None, "bumped_by": None})
        log.info("ticket %s recalled at kds %s", ticket["id"], device)
        self.orders.event(ticket["order_id"], now, "recall", ticket["id"])
        self.touch_order(ticket["order_id"])

    def _refuse(self, device, reason):
        """Tell the display why (on the hub's error topic) and resend its snapshot."""
        log.warning("kds %s: bump refused: %s", device, reason)
        self.outbox.send("hub", protocol.HUB_ID, "error",
                         {"topic": protocol.topic(self.site, "kds", device, "bump"), "reason": reason[:300]})
        self.resend(device)

    # --- snapshots -------------------------------------------------------
    def touch(self, station):
        """Note that a station's list changed; its displays' snapshots go out at flush()."""
        if station in self.menu.stations:
            self._dirty.update(self.menu.stations[station].devices)

    def resend(self, device):
        """A display (re)connected, or its bump was refused: send its snapshot again."""
        if device in self.menu.device_station:
            self._dirty.add(device)
        else:
            log.warning("kds %s is not in the menu; it shows no station", device)

    def touch_all(self):
        self._dirty.update(self.menu.devices())

    def discard(self):
        self._dirty.clear()

    def flush(self, now):
        dirty, self._dirty = sorted(self._dirty), set()
        online = set(self.devices.online("kds"))
        shown, lists = set(), {}
        for device in dirty:
            payload = self.publish(device, now, lists)
            if device in online:
                shown.update(t["order"] for t in payload["tickets"])
        if shown and self.orders:
            self.orders.shown(sorted(shown), now)

    def publish(self, device, now, lists):
        """Send a display its station's list; lists caches, per station for this flush, the count
        of its open tickets and the first max_tickets of them rendered."""
        station = self.menu.stations[self.menu.device_station[device]]
        if station.name not in lists:
            rows = self._open(station.name)
            lists[station.name] = (len(rows), [self._wire(row, now) for row in rows[:station.max_tickets]])
        total, tickets = lists[station.name]
        row = self.store.one("SELECT seq FROM kds_snapshots WHERE device = ?", (device,))
        seq = (row["seq"] if row else 0) + 1
        shown = min(len(tickets), station.max_tickets)
        for shown in range(shown, -1, -1):  # drop tickets from the end until it fits the contract
            payload = {"seq": seq, "station": station.name, "warn": station.warn_s, "late": station.late_s,
                       "tickets": tickets[:shown]}
            if shown < total:
                payload["more"] = total - shown
            try:
                protocol.encode("tickets", payload)
                break
            except protocol.ProtocolError:
                if not shown:
                    raise
        if shown < total:
            log.info("kds %s shows %d of station %s's %d open tickets", device, len(payload["tickets"]),
                     station.name, total)
        self.store.run("INSERT OR REPLACE INTO kds_snapshots (device, seq, payload) VALUES (?, ?, ?)",
                       (device, seq, json.dumps(payload, ensure_ascii=False)))
        self.outbox.send("kds", device, "tickets", payload)
        log.debug("kds %s snapshot seq %d: %s", device, seq, " ".join(t["id"] for t in payload["tickets"]))
        return payload
