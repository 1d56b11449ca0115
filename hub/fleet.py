"""The fleet: registered devices and their MQTT credentials, the technician's view of
every device, device alerts as pager tasks, and firmware updates rolled out a few at a time.

Alerts: a device silent for more than two heartbeats and at least a minute (one that said
it went to deep sleep is not silent) or reporting a battery under the threshold raises one
task of kind "device" for the manager (the least-loaded pager when no manager is on duty).
It leaves the pager when done or cancelled there, or when the condition clears.

    python -m hub.fleet update --kind table --version 0.2.0    # roll out, with progress
"""
import argparse
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request

from hub import store as _store
from hub.firmware import Firmware
from hub.pagers import Task

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet (
    kind           TEXT NOT NULL,
    id             TEXT NOT NULL,
    model          TEXT,                   -- hardware model: hardware/pins/<model>.json
    amqtt_hash     TEXT NOT NULL,          -- argon2 of its MQTT password (amqtt password file)
    mosquitto_hash TEXT NOT NULL,          -- PBKDF2-SHA512 of the same ($7$, Mosquitto password_file)
    registered_at  REAL NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS fleet_alerts (
    n         INTEGER PRIMARY KEY AUTOINCREMENT,  -- task id "fleet:<n>"
    kind      TEXT NOT NULL,
    device    TEXT NOT NULL,
    type      TEXT NOT NULL,                      -- offline | battery
    state     TEXT NOT NULL,                      -- open | assigned | acked | done | cleared
    pager     TEXT,
    page      INTEGER NOT NULL DEFAULT 0,
    note      TEXT,
    raised_at REAL NOT NULL,
    closed_at REAL
);
CREATE INDEX IF NOT EXISTS fleet_alerts_live ON fleet_alerts (state, kind, device);
CREATE TABLE IF NOT EXISTS fleet_updates (
    n           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    version     TEXT NOT NULL,
    url         TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    batch       INTEGER NOT NULL,
    timeout     REAL NOT NULL,
    state       TEXT NOT NULL,                    -- running | finished
    started_at  REAL NOT NULL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS fleet_update_devices (
    n       INTEGER NOT NULL REFERENCES fleet_updates (n),
    id      TEXT NOT NULL,
    state   TEXT NOT NULL,                        -- pending | sent | done | failed
    sent_at REAL,
    note    TEXT,
    PRIMARY KEY (n, id)
);
"""
_store.EXTRA_SCHEMAS.append(SCHEMA)

TASK_PREFIX = "fleet:"
SILENT_HEARTBEATS = 2
MIN_SILENT_S = 60  # never page a manager over less than a minute of silence (short test heartbeats)
DEFAULT_HB_S = 30
LOW_BATTERY = 20
BATTERY_HYSTERESIS = 5
PRIO = {"offline": 2, "battery": 1}
LIVE = ("open", "assigned", "acked")
CHECK_EVERY_S = 2.0
UPDATE_STATES = ("pending", "sent", "done", "failed")


class Registry:
    """Registered devices and the hashes of their MQTT passwords (never the passwords)."""

    def __init__(self, store):
        self.store = store

    def register(self, kind, device, model, amqtt_hash, mosquitto_hash, now):
        """Add or re-register (new password) a device; return True if it is new."""
        new = self.get(kind, device) is None
        self.store.run("INSERT OR REPLACE INTO fleet (kind, id, model, amqtt_hash, mosquitto_hash,"
                       " registered_at) VALUES (?, ?, ?, ?, ?, ?)",
                       (kind, device, model, amqtt_hash, mosquitto_hash, now))
        log.info("device %s/%s %s (model %s)", kind, device, "registered" if new else "re-registered", model)
        return new

    def get(self, kind, device):
        return self.store.one("SELECT * FROM fleet WHERE kind = ? AND id = ?", (kind, device))

    def credentials(self):
        return self.store.query("SELECT kind, id, amqtt_hash, mosquitto_hash FROM fleet ORDER BY kind, id")


class Fleet:
    def __init__(self, store, devices, pagers, outbox, low_battery=LOW_BATTERY):
        self.store = store
        self.devices = devices
        self.pagers = pagers
        self.outbox = outbox
        self.low_battery = low_battery
        self.registry = Registry(store)
        self.access = None  # hub.access.Access when broker auth is on
        self.ca = None  # with --tls: the hub's CA certificate (PEM), which devices get in their config
        self.firmware = None
        self.mqtt_port = None
        self._checked = 0.0
        pagers.sources.append(self.tasks_on)

    def setup(self, data_dir, access, mqtt_port, low_battery=LOW_BATTERY):
        """Where bundles live, the auth files (None: anonymous demo mode), the port devices use."""
        self.firmware = Firmware(data_dir)
        self.access = access
        self.mqtt_port = mqtt_port
        self.low_battery = low_battery

    # --- the technician's view ---------------------------------------------
    def view(self, kind=None):
        where, args = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        heard = {(r["kind"], r["id"]): r for r in self.devices.list(kind)}
        registered = {(r["kind"], r["id"]): r for r in
                      self.store.query("SELECT kind, id, model, registered_at FROM fleet %s" % where, args)}
        alerts = {}
        for a in self.store.query("SELECT kind, device, type FROM fleet_alerts WHERE state IN %s" % _sql(LIVE)):
            alerts.setdefault((a["kind"], a["device"]), []).append(a["type"])
        out = []
        for key in sorted(set(heard) | set(registered)):
            dev, reg = heard.get(key, {}), registered.get(key)
            out.append({"kind": key[0], "id": key[1], "model": reg["model"] if reg else None,
                        "registered": reg is not None, "registered_at": reg["registered_at"] if reg else None,
                        "online": bool(dev.get("online")), "reason": dev.get("reason"),
                        "battery": dev.get("battery"), "rssi": dev.get("rssi"), "fw": dev.get("fw"),
                        "last_seen": dev.get("last_seen"), "hb": dev.get("hb"), "uptime": dev.get("uptime"),
                        "heap": dev.get("heap"), "alerts": sorted(alerts.get(key, []))})
        return out

    # --- alerts ------------------------------------------------------------
    def tick(self, now):
        if now - self._checked >= CHECK_EVERY_S:
            self._checked = now
            self._check(now)
            self._roll(now)
        self._place(now)

    def _check(self, now):
        live = {(a["kind"], a["device"], a["type"]): a for a in
                self.store.query("SELECT * FROM fleet_alerts WHERE state IN %s" % _sql(LIVE + ("done",)))}
        for dev in self.devices.list():
            hb = dev["hb"] or DEFAULT_HB_S
            heard = max(dev["last_seen"] or 0, self.devices.started)
            silent = dev["reason"] != "sleep" and now - heard > max(SILENT_HEARTBEATS * hb, MIN_SILENT_S)
            bat = dev["battery"]
            conditions = {
                "offline": (silent, "silent %ds (heartbeat %ds)" % (now - heard, hb)),
                "battery": (bat is not None and bat < self.low_battery, "battery %s%%" % bat),
                }
            for typ, (bad, note) in conditions.items():
                key = (dev["kind"], dev["id"], typ)
                alert = live.get(key)
                if typ == "battery" and alert and bat is not None and bat < self.low_battery + BATTERY_HYSTERESIS:
                    bad = True  # not cleared until clearly recharged
                if bad and alert is None:
                    self._raise(dev["kind"], dev["id"], typ, "%s %s: %s" % (dev["kind"], dev["id"], note), now)
                elif not bad and alert is not None:
                    self._close(alert, "cleared", now)
                    log.info("alert %s%d cleared: %s/%s %s ok again", TASK_PREFIX, alert["n"], dev["kind"],
                             dev["id"], typ)

    def _raise(self, kind, device, typ, note, now):
        self.store.insert("fleet_alerts", {"kind": kind, "device": device, "type": typ, "state": "open",
                                           "note": note[:80], "raised_at": now})
        log.warning("device alert: %s", note)

    def _close(self, alert, state, now):
        self.store.update("fleet_alerts", {"n": alert["n"]}, {"state": state, "closed_at": now})
        if alert["pager"] and alert["state"] in LIVE:
            self.pagers.touch(alert["pager"])

    def _place(self, now):
        """Give open alerts (and those whose pager went away) to the manager's pager."""
        rows = self.store.query("SELECT * FROM fleet_alerts WHERE state IN ('open', 'assigned', 'acked')")
        if not rows:
            return
        online = set(self.devices.online("pager"))
        for a in rows:
            if a["state"] != "open" and a["pager"] in online:
                continue
            target = self.manager_pager()
            if target is None:
                if a["state"] != "open":
                    self.store.update("fleet_alerts", {"n": a["n"]}, {"state": "open", "pager": None})
                continue
            if a["pager"] and a["pager"] != target:
                self.pagers.touch(a["pager"])
            self.store.update("fleet_alerts", {"n": a["n"]},
                              {"state": "assigned", "pager": target, "page": a["page"] + 1})
            self.pagers.touch(target)
            log.info("alert %s%d (%s) paged to %s", TASK_PREFIX, a["n"], a["note"], target)

    def manager_pager(self):
        """Where device alerts go: a manager on duty, else whoever is least loaded."""
        return self.pagers.pick(roles=("manager",)) or self.pagers.pick()

    def tasks_on(self, pager):
        rows = self.store.query("SELECT * FROM fleet_alerts WHERE pager = ? AND state IN ('assigned', 'acked')",
                                (pager,))
        return [Task(id="%s%d" % (TASK_PREFIX, r["n"]), kind="device", table=r["device"],
                     type=r["type"], prio=PRIO[r["type"]], raised_at=r["raised_at"], state=r["state"],
                     page=r["page"], note=r["note"]) for r in rows]

    def on_act(self, pager, msg, now):
        """A pager's act on a device task; False if the id is not one of ours."""
        task_id = msg["id"]
        if not task_id.startswith(TASK_PREFIX) or not task_id[len(TASK_PREFIX):].isdigit():
            return False
        alert = self.store.one("SELECT * FROM fleet_alerts WHERE n = ?", (int(task_id[len(TASK_PREFIX):]),))
        if alert is None or alert["state"] not in LIVE or alert["pager"] != pager:
            log.info("pager %s: %s on %s ignored (%s)", pager, msg["action"], task_id,
                     "unknown" if alert is None else alert["state"])
            self.pagers.touch(pager)
            return True
        if msg["action"] == "ack":
            self.store.update("fleet_alerts", {"n": alert["n"]}, {"state": "acked"})
            self.pagers.touch(pager)
        else:
            self._close(alert, "done", now)
        log.info("alert %s (%s) %s by pager %s", task_id, alert["note"], msg["action"], pager)
        return True

    # --- firmware updates --------------------------------------------------
    def start_update(self, kind, manifest, url, batch, timeout, now, devices=None):
        """Roll `manifest` out to every known device of `kind` (or the listed ids), `batch` at
        a time; a device is done when its status reports the new version. Returns the update."""
        ids = devices or [row["id"] for row in self.devices.list(kind)]
        if not ids:
            raise ValueError("kind: no %s devices known" % kind)
        running = self.store.one("SELECT n FROM fleet_updates WHERE kind = ? AND state = 'running'", (kind,))
        if running:
            raise ValueError("kind: update %d of %s devices is still running" % (running["n"], kind))
        self.store.insert("fleet_updates", {"kind": kind, "version": manifest["version"], "url": url,
                                            "sha256": manifest["sha256"], "batch": batch, "timeout": timeout,
                                            "state": "running", "started_at": now})
        n = self.store.one("SELECT max(n) AS n FROM fleet_updates")["n"]
        for dev in ids:
            self.store.insert("fleet_update_devices", {"n": n, "id": dev, "state": "pending"})
        log.info("update %d: %s devices %s to %s, %d at a time", n, kind, ",".join(ids), manifest["version"],
                 batch)
        self._roll(now)
        return self.update(n)

    def update(self, n):
        up = self.store.one("SELECT * FROM fleet_updates WHERE n = ?", (n,))
        if up is None:
            return None
        rows = self.store.query("SELECT id, state, note FROM fleet_update_devices WHERE n = ? ORDER BY id", (n,))
        up["devices"] = rows
        up["counts"] = {s: sum(1 for r in rows if r["state"] == s) for s in UPDATE_STATES}
        return up

    def updates(self):
        return [self.update(r["n"]) for r in self.store.query("SELECT n FROM fleet_updates ORDER BY n DESC LIMIT 20")]

    def _roll(self, now):
        for up in self.store.query("SELECT * FROM fleet_updates WHERE state = 'running'"):
            rows = self.store.query("SELECT * FROM fleet_update_devices WHERE n = ?", (up["n"],))
            sent = 0
            for r in rows:
                if r["state"] != "sent":
                    continue
                dev = self.devices.get(up["kind"], r["id"]) or {}
                if dev.get("fw") == up["version"] and dev.get("online"):
                    self._device(up, r, "done", None)
                elif dev.get("online") and dev.get("uptime") is not None and dev["last_seen"] > r["sent_at"] \
                        and dev["last_seen"] - dev["uptime"] >= r["sent_at"]:  # booted since: not on it
                    self._device(up, r, "failed", "restarted on %s (rolled back?)" % dev.get("fw"))
                elif now - r["sent_at"] > up["timeout"]:
                    self._device(up, r, "failed", "no new version after %ds" % up["timeout"])
                else:
                    sent += 1
            for r in rows:
                if sent >= up["batch"]:
                    break
                if r["state"] != "pending":
                    continue
                dev = self.devices.get(up["kind"], r["id"]) or {}
                if dev.get("fw") == up["version"]:
                    self._device(up, r, "done", "already on %s" % up["version"])
                elif dev.get("online"):
                    self.outbox.send(up["kind"], r["id"], "cmd", {"op": "ota", "url": up["url"],
                                                                  "sha256": up["sha256"], "version": up["version"]})
                    self.store.update("fleet_update_devices", {"n": up["n"], "id": r["id"]},
                                      {"state": "sent", "sent_at": now})
                    log.info("update %d: ota %s sent to %s/%s", up["n"], up["version"], up["kind"], r["id"])
                    sent += 1
            left = self.store.one("SELECT count(*) AS c FROM fleet_update_devices WHERE n = ? AND state IN"
                                  " ('pending', 'sent')", (up["n"],))["c"]
            if not left:
                self.store.update("fleet_updates", {"n": up["n"]}, {"state": "finished", "finished_at": now})
                log.info("update %d finished: %s", up["n"], self.update(up["n"])["counts"])

    def _device(self, up, row, state, note):
        self.store.update("fleet_update_devices", {"n": up["n"], "id": row["id"]}, {"state": state, "note": note})
        level = logging.INFO if state == "done" else logging.WARNING
        log.log(level, "update %d: %s/%s %s%s", up["n"], up["kind"], row["id"], state, ": " + note if note else "")


def _sql(states):
    return "(%s)" % ", ".join("'%s'" % s for s in states)


# --- CLI: fleet update over the hub's HTTP API --------------------------------
def bar(done, total, width=30):
    filled = width * done // total if total else width
    return "[%s%s] %d/%d" % ("#" * filled, "." * (width - filled), done, total)


class HubError(Exception):
    """A call to the hub's HTTP API failed; the message says how."""


def hub_request(method, url, body=None, token=None, timeout=10):
    """One JSON request to the hub's HTTP API (shared with firmware/flash.py)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as err:
        try:
            reason = json.loads(err.read().decode("utf-8")).get("error")
        except ValueError:
            reason = err.reason
        raise HubError("the hub refused %s %s: HTTP %d: %s" % (method, url, err.code, reason))
    except (urllib.error.URLError, OSError) as err:
        raise HubError("hub unreachable at %s: %s (is it running? is the address right?)"
                       % (url, getattr(err, "reason", err)))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m hub.fleet", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("update", help="update every device of a kind, a few at a time, showing progress")
    up.add_argument("--hub", default="http://127.0.0.1:8080", help="the hub's HTTP address (default %(default)s)")
    up.add_argument("--kind", required=True, choices=("table", "pager", "kds"))
    up.add_argument("--version", help="firmware version published on the hub (default: its newest)")
    up.add_argument("--devices", help="only these ids, comma-separated (default: every device of the kind)")
    up.add_argument("--batch", type=int, default=3, help="devices updating at once (default 3)")
    up.add_argument("--timeout", type=int, default=300, help="seconds a device may take (default 300)")
    up.add_argument("--token", help="the hub's admin token (with --auth; default: $RFM_HUB_TOKEN)")
    up.add_argument("--wait", type=int, default=3600, help="give up watching after this many seconds")
    show = sub.add_parser("show", help="print the fleet: kind, online, battery, RSSI, firmware, last seen")
    show.add_argument("--hub", default="http://127.0.0.1:8080")
    a = ap.parse_args(argv)
    try:
        return _run(a)
    except HubError as err:
        raise SystemExit(str(err))


def _run(a):
    base = a.hub.rstrip("/")
    if a.cmd == "show":
        rows = hub_request("GET", base + "/api/fleet")["devices"]
        print("%-6s %-10s %-7s %4s %5s %-10s %-20s %s" % ("kind", "id", "online", "bat", "rssi", "fw", "last seen",
                                                          "alerts"))
        for d in rows:
            print("%-6s %-10s %-7s %4s %5s %-10s %-20s %s" % (
                d["kind"], d["id"], "yes" if d["online"] else "no", _dash(d["battery"]), _dash(d["rssi"]),
                _dash(d["fw"]), _dash(d["last_seen"] and d["last_seen"][:19]), ",".join(d["alerts"])))
        return 0
    body = {"kind": a.kind, "batch": a.batch, "timeout": a.timeout}
    if a.version:
        body["version"] = a.version
    if a.devices:
        body["devices"] = a.devices.split(",")
    up = hub_request("POST", base + "/api/fleet/update", body, a.token or os.environ.get("RFM_HUB_TOKEN"))
    total = len(up["devices"])
    print("update %d: %s devices to %s, %d at a time" % (up["n"], a.kind, up["version"], a.batch))
    deadline = time.monotonic() + a.wait
    while True:
        c = up["counts"]
        sys.stdout.write("\r%s done %d, failed %d, updating %d " % (
            bar(c["done"] + c["failed"], total), c["done"], c["failed"], c["sent"]))
        sys.stdout.flush()
        if up["state"] == "finished" or time.monotonic() > deadline:
            break
        time.sleep(2)
        up = hub_request("GET", "%s/api/fleet/update/%d" % (base, up["n"]))
    print()
    for d in up["devices"]:
        if d["state"] != "done":
            print("  %s: %s %s" % (d["id"], d["state"], d["note"] or ""))
    return 0 if up["counts"]["failed"] == 0 and up["state"] == "finished" else 1


def _dash(v):
    return "-" if v is None else v


if __name__ == "__main__":
    sys.exit(main())
