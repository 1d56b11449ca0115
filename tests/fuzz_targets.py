"""Fuzz targets: hypothesis strategies and the checks each input must pass, for the wire
contract's decoder, each order channel's webhook path and the floor and menu loaders.

Every input either is accepted, or is rejected with the module's own validation error
whose message names the field at fault and the reason ("<field>: <reason>"); anything
else (a crash, a bare ValueError, an OverflowError) fails. tests/test_fuzz.py runs them;
`make fuzz` runs them with 100,000 inputs each."""
import base64
import copy
import hashlib
import hmac
import json
import math
import time

from hypothesis import strategies as st

import protocol
from hub import channels, floor, orders, stations
from tests import order_channels as ch

SECRET = "fuzz-secret"
KEYS = sorted({key for spec in protocol.MESSAGES.values() for key in spec[5]} | set(protocol.TASK)
              | set(protocol.TICKET) | set(protocol.LINE) | set(floor.DEMO) | {"prio", "to", "steps", "after", "do"}
              | {"id", "name", "role", "pager", "sections", "shifts", "active", "stations", "items", "categories",
                 "default", "label", "devices", "warn_min", "late_min", "expo", "max_tickets", "quantity",
                 "displayName", "selections", "checks", "guid", "timestamp", "eventType", "details", "order",
                 "body", "event", "line_items", "title", "modifiers", "status", "updated_at", "modifiedDate"})
WORDS = ["", " ", "T1", "T1-1", "P1", "hub", "water", "raise", "cancel", "ack", "bump", "wok", "expo", "宫保鸡丁",
         "过敏", "\x00", "\ud7ff", "9" * 80, "-1", "1e999", "NaN", "00:00-24:00", "25:61", "17:00-23:30",
         "2024-05-01T08:00:00Z", "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00", "server", "manager",
         "runner", "repage", "next", "orders/create", "order.new", "order_updated"]

scalars = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.sampled_from([0, 1, -1, 2 ** 31, 2 ** 62])
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from([math.nan, math.inf, -math.inf, 1e308, 0.5]) | st.text(max_size=24) | st.sampled_from(WORDS))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=4),
                      max_leaves=10)


def _paths(obj, at=()):
    yield at
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, at + (key,))
    elif isinstance(obj, list):
        for n, value in enumerate(obj):
            yield from _paths(value, at + (n,))


@st.composite
def mutated(draw, base):
    """A valid document with up to four places replaced, deleted or added to."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.sampled_from(list(_paths(doc))))
        if not at:
            return draw(values)
        parent = doc
        for key in at[:-1]:
            parent = parent[key]
        how = draw(st.sampled_from(("replace", "replace", "delete", "add")))
        if how == "replace":
            parent[at[-1]] = draw(values)
        elif how == "delete":
            del parent[at[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS) | st.text(max_size=8))] = draw(values)
        else:
            parent.append(draw(values))
    return doc


def dumps(doc):
    return json.dumps(doc, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


def names_reason(exc, field):
    """The error's message is "<field>: <reason>", both present."""
    text = str(exc)
    assert field and text.startswith("%s: " % field) and text[len(field) + 2:].strip(), repr(text)


# --- the wire contract ----------------------------------------------------------------
VALID = {v["msg"]: json.loads(v["data"]) for v in json.load(open(protocol.__file__.replace("__init__.py",
                                                                                            "vectors.json"),
                                                                 encoding="utf-8"))["payloads"]
         if "field" not in v}
MESSAGES = sorted(protocol.MESSAGES)


@st.composite
def wire_inputs(draw):
    msg = draw(st.sampled_from(MESSAGES))
    kind = draw(st.sampled_from(("bytes", "json", "mutated", "mutated")))
    if kind == "bytes":
        return msg, draw(st.binary(max_size=300))
    if kind == "json":
        return msg, dumps(draw(values))
    return msg, dumps(draw(mutated(VALID.get(msg, {}))))


def check_wire(msg, data):
    try:
        obj = protocol.decode(msg, data)
    except protocol.ProtocolError as exc:
        names_reason(exc, exc.field)
        assert exc.reason
        return False
    assert obj == json.loads(data)
    assert protocol.decode(msg, protocol.encode(msg, obj)) == obj  # what is accepted goes out again as is
    return True


def check_topic(text):
    try:
        parts = protocol.parse_topic(text)
    except protocol.ProtocolError as exc:
        names_reason(exc, exc.field)
        return False
    assert protocol.topic(*parts) == text
    return True


# --- order channels --------------------------------------------------------------------
BASE_NOW = time.time()  # the bases' timestamps; verify() is asked at this time, however long the run


def _base(name):
    now = BASE_NOW
    path, body, headers = {
        "toast": lambda: ch.toast(SECRET, "g-1", [("s1", "宫保鸡丁", 2, ["少辣"], False)], at=now),
        "deliveroo": lambda: ch.deliveroo(SECRET, "gb:1", [("宫保鸡丁", 1, ["加花生"])], notes="过敏"),
        "shopify": lambda: ch.shopify(SECRET, 450789469, [(111, "蛋挞", 6, "8寸", None)], note="n"),
    }[name]()
    return json.loads(body), headers


BASES = {name: _base(name) for name in channels.ADAPTERS}


@st.composite
def channel_inputs(draw, name):
    doc, headers = BASES[name]
    how = draw(st.sampled_from(("mutated", "mutated", "mutated", "json", "bytes")))
    if how == "bytes":
        body = draw(st.binary(max_size=400))
    else:
        body = dumps(draw(mutated(doc)) if how == "mutated" else draw(values))
    headers = dict(headers)
    if draw(st.integers(0, 9)) == 0:
        headers[draw(st.sampled_from(sorted(headers)))] = draw(st.text(max_size=30))
    return body, headers, draw(st.integers(0, 9)) > 0  # mostly signed, to get past verify()


def _mac(data):
    return hmac.new(SECRET.encode(), data, hashlib.sha256)


def _sign(name, body, headers):
    if name == "toast":
        try:
            stamp = json.loads(body).get("timestamp")
        except (ValueError, AttributeError):
            stamp = None
        if isinstance(stamp, str):
            data = body + stamp.encode("utf-8", "surrogatepass")
            headers["Toast-Signature"] = base64.b64encode(_mac(data).digest()).decode()
    elif name == "deliveroo":
        guid = headers.get("X-Deliveroo-Sequence-Guid", "")
        headers["X-Deliveroo-Hmac-Sha256"] = _mac(guid.encode("utf-8", "surrogatepass") + b" " + body).hexdigest()
    else:
        headers["X-Shopify-Hmac-Sha256"] = base64.b64encode(_mac(body).digest()).decode()


def check_channel(name, body, headers, signed):
    """The path POST /api/channels/<name> takes (hub/intake.py): verify, JSON, normalise, parse.
    Returns the outcome; raises AssertionError for anything but a named rejection."""
    adapter = channels.ADAPTERS[name]
    if signed:
        _sign(name, body, headers)
    try:
        adapter.verify(headers, body, SECRET, BASE_NOW)
    except channels.SignatureError as exc:  # 401
        assert ": " in str(exc) and str(exc).split(": ", 1)[1], str(exc)
        return "401"
    except channels.ChannelError as exc:
        names_reason(exc, exc.field)
        return "400"
    try:
        obj = json.loads(body.decode("utf-8"))
    except ValueError:  # 400 "body: not valid UTF-8 JSON"
        return "400"
    try:
        order = orders.parse(adapter.normalise(obj, headers))
    except channels.Ignored as exc:  # 200, with why
        assert str(exc)
        return "ignored"
    except (channels.ChannelError, orders.OrderError) as exc:
        names_reason(exc, exc.field)
        return "400"
    assert order["channel"] == name and order["ref"]
    return "accepted"


# --- floor and menu --------------------------------------------------------------------
@st.composite
def floor_docs(draw):
    return draw(mutated(floor.DEMO)) if draw(st.integers(0, 4)) else draw(values)


def check_floor(doc):
    try:
        out = floor.validate(doc)
    except floor.FloorError as exc:
        names_reason(exc, exc.path)
        assert exc.reason
        return False
    assert floor.validate(out) == out  # a normalised floor is valid as it is
    return True


@st.composite
def menu_docs(draw):
    return draw(mutated(stations.DEMO_MENU)) if draw(st.integers(0, 4)) else draw(values)


def check_menu(spec):
    try:
        menu = stations.Menu(spec)
    except stations.MenuError as exc:
        field = str(exc).split(": ", 1)[0]
        names_reason(exc, field)
        return False
    assert menu.default in menu.kitchen and all(menu.route(name) in menu.kitchen for name in menu.items)
    return True


def check_file(loader, error, path, data):
    """A loader given a file's bytes: loaded, or an error naming the file and the reason."""
    with open(path, "wb") as f:
        f.write(data)
    try:
        loader(str(path))
    except error as exc:
        assert str(exc).startswith(str(path) + ": ") and str(exc)[len(str(path)) + 2:], str(exc)
        return False
    return True
