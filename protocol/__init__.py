# The one wire contract between devices and the hub.
# Runs unchanged on CPython 3.11 and MicroPython: no typing, no dataclasses.
# protocol/SPEC.md is the human-readable form of the tables below.
import json

VERSION = 1
ROOT = "rfm/v1"
KINDS = ("table", "pager", "kds", "hub")
HUB_ID = "hub"
CALL_TYPES = ("waiter", "bill", "water", "napkins")
MAX_ID = 40


class ProtocolError(ValueError):
    """A message broke the contract; `field` names the culprit."""

    def __init__(self, field, reason):
        super().__init__("%s: %s" % (field, reason))
        self.field = field
        self.reason = reason


# --- field specs --------------------------------------------------------
# A spec is a tuple: (type, required, extra). extra by type:
#   "str":  (max_len, choices or None)     "int": (min, max)
#   "list": (max_items, item_schema or None)  "bool"/"dict": None
_seen = {}  # equal specs share one tuple (heap on the device); dropped after the tables


def _one(spec):
    return _seen.setdefault(spec, spec)


def _s(n, req=True, choices=None):
    return _one(("str", req, (n, choices)))


def _i(lo, hi, req=True):
    return _one(("int", req, (lo, hi)))


def _b(req=True):
    return _one(("bool", req, None))


def _l(n, item=None, req=True):
    return ("list", req, (n, item))


TASK = {
    "id": _s(MAX_ID),
    "kind": _s(8, True, ("call", "pickup", "device")),
    "table": _s(24),
    "type": _s(16),
    "prio": _i(0, 9),
    "age": _i(0, 86400),
    "state": _s(10, True, ("assigned", "acked")),
    "page": _i(0, 99),
    "note": _s(80, False),
}

LINE = {
    "name": _s(64),
    "qty": _i(1, 999),
    "mods": _l(8, None, False),
    "void": _b(False),
    "changed": _b(False),
}

TICKET = {
    "id": _s(MAX_ID),
    "order": _s(MAX_ID),
    "ch": _s(16),
    "num": _s(16, False),
    "table": _s(24, False),
    "items": _l(30, LINE),
    "note": _s(160, False),
    "allergy": _s(160, False),
    "allergy_ack": _b(False),
    "also": _l(8, None, False),
    "age": _i(0, 86400),
    "changed": _b(False),
}

# name: (device kinds in topic, direction, qos, retain, max bytes, schema)
MESSAGES = {
    "status": (("table", "pager", "kds"), "up", 1, True, 256, {
        "online": _b(),
        "fw": _s(24, False),
        "hb": _i(1, 3600, False),
        "battery": _i(0, 100, False),
        "rssi": _i(-127, 0, False),
        "uptime": _i(0, 2 ** 30, False),
        "heap": _i(0, 2 ** 30, False),
        "reason": _s(24, False),
    }),
    "call": (("table",), "up", 1, False, 256, {
        "id": _s(MAX_ID),
        "action": _s(8, True, ("raise", "cancel")),
        "type": _s(16, False),
    }),
    "feedback": (("table",), "down", 1, False, 256, {
        "id": _s(MAX_ID),
        "state": _s(12, True, ("seen", "on_the_way", "done", "cancelled")),
        "by": _s(24, False),
    }),
    "tasks": (("pager",), "down", 1, True, 4096, {
        "seq": _i(0, 2 ** 30),
        "tasks": _l(20, TASK),
    }),
    "act": (("pager",), "up", 1, False, 256, {
        "id": _s(MAX_ID),
        "action": _s(8, True, ("ack", "done", "cancel")),
    }),
    "tickets": (("kds",), "down", 1, True, 16384, {
        "seq": _i(0, 2 ** 30),
        "station": _s(24),
        "tickets": _l(24, TICKET),
        "more": _i(0, 9999, False),
        "warn": _i(0, 86400, False),
        "late": _i(0, 86400, False),
    }),
    "bump": (("kds",), "up", 1, False, 256, {
        "id": _s(MAX_ID),
        "action": _s(12, True, ("bump", "recall", "allergy_ack")),
    }),
    "cmd": (("table", "pager", "kds"), "down", 1, False, 512, {
        "op": _s(12, True, ("ota", "reboot", "identify")),
        "url": _s(200, False),
        "sha256": _s(64, False),
        "version": _s(24, False),
    }),
    "order": (("hub",), "down", 1, False, 512, {
        "order": _s(MAX_ID),
        "channel": _s(16),
        "ref": _s(64),
        "status": _s(12, True, ("received", "cooking", "ready", "picked_up", "void")),
    }),
    "error": (("hub",), "down", 0, False, 1024, {
        "topic": _s(200),
        "reason": _s(300),
    }),
}

del _seen

# Messages a device of each kind subscribes to (its own id only).
SUBSCRIBES = {
    "table": ("feedback", "cmd"),
    "pager": ("tasks", "cmd"),
    "kds": ("tickets", "cmd"),
}


# --- topics --------------------------------------------------------------
def _check_id(field, value):
    if not isinstance(value, str) or not value:
        raise ProtocolError(field, "must be a non-empty string")
    if len(value) > 24:
        raise ProtocolError(field, "longer than 24 characters")
    for ch in value:
        if not (("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9") or ch in "-_"):
            raise ProtocolError(field, "character %r not allowed (A-Z a-z 0-9 - _)" % ch)


def _check_route(site, kind, dev, msg):
    _check_id("site", site)
    if kind not in KINDS:
        raise ProtocolError("kind", "unknown device kind %r" % kind)
    _check_id("device", dev)
    spec = MESSAGES.get(msg)
    if spec is None:
        raise ProtocolError("message", "unknown message %r" % msg)
    if kind not in spec[0]:
        raise ProtocolError("message", "%r is not sent on %r topics" % (msg, kind))


def topic(site, kind, dev, msg):
    """rfm/v1/<site>/<kind>/<device id>/<message>"""
    _check_route(site, kind, dev, msg)
    return "%s/%s/%s/%s/%s" % (ROOT, site, kind, dev, msg)


def parse_topic(t):
    """Return (site, kind, device, message); raise ProtocolError otherwise."""
    parts = t.split("/")
    if len(parts) != 6 or parts[0] + "/" + parts[1] != ROOT:
        raise ProtocolError("topic", "not of the form %s/<site>/<kind>/<device>/<message>" % ROOT)
    _check_route(parts[2], parts[3], parts[4], parts[5])
    return parts[2], parts[3], parts[4], parts[5]


def wildcard(site, msg, kind="+"):
    """Subscription filter for one message from every device of a kind."""
    return "%s/%s/%s/+/%s" % (ROOT, site, kind, msg)


def qos(msg):
    return MESSAGES[msg][2]


def retain(msg):
    return MESSAGES[msg][3]


# --- payloads ------------------------------------------------------------
def _check(path, spec, value):
    typ, _req, extra = spec
    if typ == "str":
        if not isinstance(value, str):
            raise ProtocolError(path, "must be a string")
        if len(value) > extra[0]:
            raise ProtocolError(path, "longer than %d characters" % extra[0])
        if extra[1] is not None and value not in extra[1]:
            raise ProtocolError(path, "must be one of %s" % ", ".join(extra[1]))
    elif typ == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise ProtocolError(path, "must be an integer")
        if value < extra[0] or value > extra[1]:
            raise ProtocolError(path, "must be between %d and %d" % extra)
    elif typ == "bool":
        if not isinstance(value, bool):
            raise ProtocolError(path, "must be true or false")
    elif typ == "list":
        if not isinstance(value, list):
            raise ProtocolError(path, "must be a list")
        if len(value) > extra[0]:
            raise ProtocolError(path, "more than %d entries" % extra[0])
        for n, item in enumerate(value):
            sub = "%s[%d]" % (path, n)
            if extra[1] is None:
                if not isinstance(item, str) or len(item) > 64:
                    raise ProtocolError(sub, "must be a string of at most 64 characters")
            else:
                _check_obj(sub + ".", extra[1], item)


def _check_obj(prefix, schema, obj):
    if not isinstance(obj, dict):
        raise ProtocolError(prefix.rstrip(".") or "payload", "must be a JSON object")
    for key in obj:
        if key not in schema:
            raise ProtocolError(prefix + (str(key) or '""'), "unknown field")
    for key in schema:
        spec = schema[key]
        if key in obj and obj[key] is not None:
            _check(prefix + key, spec, obj[key])
        elif spec[1]:
            raise ProtocolError(prefix + key, "missing")


def validate(msg, obj):
    """Check a decoded payload against the contract; return it unchanged."""
    spec = MESSAGES.get(msg)
    if spec is None:
        raise ProtocolError("message", "unknown message %r" % msg)
    _check_obj("", spec[5], obj)
    if msg == "call" and obj["action"] == "raise" and not obj.get("type"):
        raise ProtocolError("type", "missing (a raise needs a call type)")
    if msg == "cmd" and obj["op"] == "ota":
        for key in ("url", "sha256", "version"):
            if not obj.get(key):
                raise ProtocolError(key, "missing (an ota command needs url, sha256 and version)")
    return obj


def encode(msg, obj):
    """Validate and serialise to compact UTF-8 JSON bytes."""
    validate(msg, obj)
    try:
        data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    except TypeError:  # MicroPython: no ensure_ascii, always raw UTF-8
        data = json.dumps(obj, separators=(",", ":"))
    data = data.encode("utf-8")
    if len(data) > MESSAGES[msg][4]:
        raise ProtocolError("payload", "%d bytes, over the %d byte limit" % (len(data), MESSAGES[msg][4]))
    return data


def decode(msg, data):
    """Parse UTF-8 JSON bytes and validate; raise ProtocolError naming the fault."""
    spec = MESSAGES.get(msg)
    if spec is None:
        raise ProtocolError("message", "unknown message %r" % msg)
    if len(data) > spec[4]:
        raise ProtocolError("payload", "%d bytes, over the %d byte limit" % (len(data), spec[4]))
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    except Exception:
        raise ProtocolError("payload", "not valid UTF-8")
    try:
        obj = json.loads(text)
    except Exception:
        raise ProtocolError("payload", "not valid JSON")
    return validate(msg, obj)
