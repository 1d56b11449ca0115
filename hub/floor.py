"""The floor: call types and priorities, sections of tables, waiters and their shifts.

One JSON document (the --floor file, else the built-in DEMO) checked by validate(),
whose errors name the bad entry: "waiters[2].role: must be one of server, runner, manager".
The floor in effect is kept in the database (meta key "floor"), so a change made over
HTTP survives a restart; with --floor FILE it is also written back to FILE.
"""
import json
import logging
import os
import time

import protocol

log = logging.getLogger(__name__)

ROLES = ("server", "runner", "manager")
ROUTES = ("server", "runner")
STEPS = ("repage", "next", "manager")
UNLISTED_TYPE = {"prio": 4, "to": "server"}  # a call type the floor does not list
MAX_WAITERS = 200
MAX_AFTER_S = 3600

DEMO = {
    "call_types": {
        "waiter": {"prio": 6, "to": "server"},
        "bill": {"prio": 6, "to": "server"},
        "water": {"prio": 4, "to": "runner"},
        "napkins": {"prio": 3, "to": "runner"},
    },
    "sections": {"A": ["T%d" % n for n in range(1, 7)], "B": ["T%d" % n for n in range(7, 13)]},
    "waiters": [
        {"id": "ana", "name": "Ana", "role": "server", "pager": "P1", "sections": ["A"]},
        {"id": "ben", "name": "Ben", "role": "server", "pager": "P2", "sections": ["B"]},
        {"id": "cai", "name": "Cai", "role": "runner", "pager": "P3"},
        {"id": "dora", "name": "Dora", "role": "manager", "pager": "P4"},
    ],
    "escalation": {"steps": [{"after": 40, "do": "repage"}, {"after": 40, "do": "next"},
                             {"after": 40, "do": "manager"}], "repeat": 40},
    "max_tasks": 5,
    "reminder_boost": 1,
}


class FloorError(ValueError):
    """A floor document broke the rules; `path` names the bad entry."""

    def __init__(self, path, reason):
        super().__init__("%s: %s" % (path, reason))
        self.path = path
        self.reason = reason


# --- validation ----------------------------------------------------------
def _obj(path, value, fields, required=()):
    if not isinstance(value, dict):
        raise FloorError(path or "floor", "must be a JSON object")
    for key in value:
        if key not in fields:
            raise FloorError(_at(path, key or '""'), "unknown field (expected %s)" % ", ".join(fields))
    for key in required:
        if key not in value:
            raise FloorError(_at(path, key), "missing")


def _dict(path, value):
    if not isinstance(value, dict):
        raise FloorError(path, "must be a JSON object")
    return value


def _at(path, key):
    return "%s.%s" % (path, key) if path else key


def _list(path, value, most):
    if not isinstance(value, list):
        raise FloorError(path, "must be a list")
    if len(value) > most:
        raise FloorError(path, "more than %d entries" % most)
    return value


def _int(path, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise FloorError(path, "must be an integer from %d to %d" % (lo, hi))
    return value


def _seconds(path, value, lo):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= MAX_AFTER_S:
        raise FloorError(path, "must be a number of seconds from %g to %d" % (lo, MAX_AFTER_S))
    return value


def _text(path, value, most):
    if not isinstance(value, str) or not value.strip():
        raise FloorError(path, "must be a non-empty string")
    if len(value) > most:
        raise FloorError(path, "longer than %d characters" % most)
    return value


def _choice(path, value, choices):
    if value not in choices:
        raise FloorError(path, "must be one of %s" % ", ".join(choices))
    return value


def _device(path, value, kind):
    try:
        protocol.topic("floor", kind, value, "status")
    except protocol.ProtocolError as exc:
        raise FloorError(path, exc.reason)
    return value


def _clock(path, text):
    try:
        hh, mm = text.split(":")
        minute = int(hh) * 60 + int(mm)
        ok = len(hh) == 2 and len(mm) == 2 and int(mm) < 60 and 0 <= minute <= 24 * 60
    except ValueError:
        ok = False
    if not ok:
        raise FloorError(path, "%r is not a time HH:MM" % text)
    return minute


def shift_window(path, text):
    """'17:00-23:30' -> (1020, 1410) minutes of the day; the end may pass midnight."""
    if not isinstance(text, str) or text.count("-") != 1:
        raise FloorError(path, "must be a shift 'HH:MM-HH:MM', e.g. '17:00-23:30'")
    start, end = text.split("-")
    return _clock(path, start.strip()), _clock(path, end.strip())


def _escalation(path, value):
    _obj(path, value, ("steps", "repeat"), ("steps",))
    steps = []
    for n, step in enumerate(_list(_at(path, "steps"), value["steps"], 10)):
        p = "%s.steps[%d]" % (path, n)
        _obj(p, step, ("after", "do"), ("after", "do"))
        steps.append({"after": _seconds(_at(p, "after"), step["after"], 1),
                      "do": _choice(_at(p, "do"), step["do"], STEPS)})
    repeat = _seconds(_at(path, "repeat"), value.get("repeat", 0), 0)
    return {"steps": steps, "repeat": repeat}


def validate(doc):
    """Check a floor document; return it normalised (defaults filled in) or raise FloorError."""
    _obj("", doc, ("call_types", "sections", "waiters", "escalation", "max_tasks", "reminder_boost"),
         ("sections", "waiters"))
    out = {"call_types": {}, "sections": {}, "waiters": [],
           "escalation": _escalation("escalation", doc.get("escalation", DEMO["escalation"])),
           "max_tasks": _int("max_tasks", doc.get("max_tasks", 5), 1, 20),
           "reminder_boost": _int("reminder_boost", doc.get("reminder_boost", 1), 0, 9)}
    for name, spec in _dict("call_types", doc.get("call_types", DEMO["call_types"])).items():
        p = "call_types.%s" % name
        _text(p, name, 16)
        _obj(p, spec, ("prio", "to", "escalation"), ("prio",))
        entry = {"prio": _int(_at(p, "prio"), spec["prio"], 0, 9),
                 "to": _choice(_at(p, "to"), spec.get("to", "server"), ROUTES)}
        if "escalation" in spec:
            entry["escalation"] = _escalation(_at(p, "escalation"), spec["escalation"])
        out["call_types"][name] = entry
    sections = _dict("sections", doc["sections"])
    seen = {}
    for name, tables in sections.items():
        p = "sections.%s" % name
        _text(p, name, 24)
        for n, table in enumerate(_list(p, tables, 200)):
            _device("%s[%d]" % (p, n), table, "table")
            if table in seen:
                raise FloorError("%s[%d]" % (p, n), "table %s is already in section %s" % (table, seen[table]))
            seen[table] = name
        out["sections"][name] = list(tables)
    ids, pagers = set(), {}
    for n, waiter in enumerate(_list("waiters", doc["waiters"], MAX_WAITERS)):
        p = "waiters[%d]" % n
        _obj(p, waiter, ("id", "name", "role", "pager", "sections", "shifts", "active"),
             ("id", "role", "pager"))
        wid = _text(_at(p, "id"), waiter["id"], 24)
        if wid in ids:
            raise FloorError(_at(p, "id"), "waiter %s is listed twice" % wid)
        ids.add(wid)
        pager = _device(_at(p, "pager"), waiter["pager"], "pager")
        if pager in pagers:
            raise FloorError(_at(p, "pager"), "pager %s is already %s's" % (pager, pagers[pager]))
        pagers[pager] = wid
        own = _list(_at(p, "sections"), waiter.get("sections", []), 50)
        for k, section in enumerate(own):
            if not isinstance(section, str) or section not in sections:
                raise FloorError("%s.sections[%d]" % (p, k), "no section named %r" % (section,))
        shifts = _list(_at(p, "shifts"), waiter.get("shifts", []), 8)
        for k, shift in enumerate(shifts):
            shift_window("%s.shifts[%d]" % (p, k), shift)
        active = waiter.get("active", True)
        if not isinstance(active, bool):
            raise FloorError(_at(p, "active"), "must be true or false")
        out["waiters"].append({"id": wid, "name": _text(_at(p, "name"), waiter.get("name", wid), 40),
                               "role": _choice(_at(p, "role"), waiter["role"], ROLES), "pager": pager,
                               "sections": list(own), "shifts": list(shifts), "active": active})
    return out


def warnings(doc):
    """Legal but probably unintended: sections no server owns."""
    owned = {s for w in doc["waiters"] if w["role"] == "server" for s in w["sections"]}
    return ["section %s has no server; its calls go to whoever is least loaded" % s
            for s in doc["sections"] if s not in owned]


def read_file(path):
    """A floor file, validated; FloorError (naming the file) if it cannot be used."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise FloorError(str(path), "cannot read: %s" % exc.strerror)
    except ValueError as exc:
        raise FloorError(str(path), "not valid JSON: %s" % exc)
    try:
        return validate(doc)
    except FloorError as exc:
        raise FloorError("%s: %s" % (path, exc.path), exc.reason)


def write_file(path, doc):
    tmp = "%s.tmp" % path
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def on_shift(waiter, now):
    """Whether `now` (unix time) falls in one of the waiter's shifts, in the hub's local time.
    A waiter with no shifts is always on shift."""
    if not waiter["shifts"]:
        return True
    t = time.localtime(now)
    minute = t.tm_hour * 60 + t.tm_min
    for text in waiter["shifts"]:
        start, end = shift_window("shift", text)
        if start == end or (start < end and start <= minute < end) or \
                (start > end and (minute >= start or minute < end)):
            return True
    return False


class Floor:
    """The floor in effect, kept in the store; `path` is the --floor file, if any."""

    def __init__(self, store, clock=time.time):
        self.store = store
        self.clock = clock
        self.path = None
        row = store.one("SELECT value FROM meta WHERE key = 'floor'")
        doc = validate(DEMO)
        if row is not None:
            try:
                doc = validate(json.loads(row["value"]))
            except (ValueError, FloorError) as exc:
                log.error("stored floor unusable (%s); using the demo floor", exc)
        self._use(doc)

    def _use(self, doc):
        self.doc = doc
        self.section = {table: name for name, tables in doc["sections"].items() for table in tables}
        self.by_pager = {w["pager"]: w for w in doc["waiters"]}

    def set(self, doc, write=True):
        """Validate, keep in the store (inside the caller's transaction) and, with a --floor
        file, write it back there first. Returns the normalised document."""
        doc = validate(doc)
        if write and self.path:
            write_file(self.path, doc)
        self.store.run("INSERT OR REPLACE INTO meta (key, value) VALUES ('floor', ?)",
                       (json.dumps(doc, ensure_ascii=False),))
        self._use(doc)
        return doc

    # --- questions the call desk asks ---------------------------------------
    def call_type(self, name):
        spec = self.doc["call_types"].get(name, UNLISTED_TYPE)
        return {"prio": spec["prio"], "to": spec["to"],
                "escalation": spec.get("escalation", self.doc["escalation"])}

    def waiter_of(self, pager):
        return self.by_pager.get(pager)

    def on_duty(self, now=None):
        """Waiters at work now (active and on shift), in floor order."""
        now = self.clock() if now is None else now
        return [w for w in self.doc["waiters"] if w["active"] and on_shift(w, now)]

    @property
    def max_tasks(self):
        return self.doc["max_tasks"]

    @property
    def reminder_boost(self):
        return self.doc["reminder_boost"]
