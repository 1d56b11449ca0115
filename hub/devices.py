"""The device registry and heartbeat supervision.

The hub does not trust last wills (the embedded broker never fires them for a
power-cut device): a device silent for more than SILENT_AFTER heartbeats is marked
offline here and its status topic is overwritten with {"online":false,"reason":"silent"}.
"""
import logging

log = logging.getLogger(__name__)

DEFAULT_HB_S = 30
SILENT_AFTER = 2.5
STATUS_FIELDS = ("hb", "fw", "battery", "rssi", "uptime", "heap")


class Devices:
    def __init__(self, store, outbox, started):
        """started: unix time the hub started; silence is counted from no earlier than this,
        so devices the hub could not hear while it was down get a fresh grace period."""
        self.store = store
        self.outbox = outbox
        self.started = started

    def get(self, kind, device):
        return self.store.one("SELECT * FROM devices WHERE kind = ? AND id = ?", (kind, device))

    def online(self, kind):
        rows = self.store.query("SELECT id FROM devices WHERE kind = ? AND online = 1 ORDER BY id", (kind,))
        return [row["id"] for row in rows]

    def list(self, kind=None):
        where, args = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        return self.store.query("SELECT * FROM devices %s ORDER BY kind, id" % where, args)

    def known(self, kind):
        rows = self.store.query("SELECT id FROM devices WHERE kind = ? ORDER BY id", (kind,))
        return [row["id"] for row in rows]

    def status(self, kind, device, payload, now):
        """Apply a status message; return "online", "offline" or None (no change)."""
        fields = {key: payload[key] for key in STATUS_FIELDS if payload.get(key) is not None}
        if payload["online"]:
            fields["last_seen"] = now
        return self._set(kind, device, payload["online"], payload.get("reason"), fields)

    def heard(self, kind, device, now):
        """Any other uplink proves the device is alive."""
        return self._set(kind, device, True, None, {"last_seen": now})

    def supervise(self, now):
        """Mark devices silent past their deadline offline; return their (kind, id)."""
        gone = []
        for dev in self.store.query("SELECT kind, id, hb, last_seen FROM devices WHERE online = 1"):
            heard = max(dev["last_seen"] or 0, self.started)
            limit = SILENT_AFTER * (dev["hb"] or DEFAULT_HB_S)
            if now - heard > limit:
                self._set(dev["kind"], dev["id"], False, "silent", {})
                self.outbox.send(dev["kind"], dev["id"], "status", {"online": False, "reason": "silent"})
                gone.append((dev["kind"], dev["id"]))
        return gone

    def _set(self, kind, device, online, reason, fields):
        row = self.get(kind, device)
        if row is None:
            self.store.insert("devices", dict(kind=kind, id=device, online=int(online),
                                              reason=None if online else reason, **fields))
            log.info("device %s/%s registered, %s", kind, device, "online" if online else "offline")
            return "online" if online else None
        was = bool(row["online"])
        if online == was:
            if fields:
                self.store.update("devices", {"kind": kind, "id": device}, fields)
            return None
        fields.update(online=int(online), reason=None if online else (reason or "offline"))
        self.store.update("devices", {"kind": kind, "id": device}, fields)
        if online:
            log.info("device %s/%s online", kind, device)
        else:
            log.info("device %s/%s offline (%s)", kind, device, fields["reason"])
        return "online" if online else "offline"
