"""Channel adapters: verify a channel's signed order webhook and normalise it to the
canonical order (hub/orders.py), keeping the channel's own order id as `ref`.

Each follows the channel's published documentation:

- toast (a POS): Toast developer guide, "Orders webhook" (order_updated, the whole Order in
  details.order), "Message signing" (Toast-Signature = base64 HMAC-SHA256 of the raw body
  followed by the message's timestamp) and "Retry support" (retries 5 and 15 minutes later).
- deliveroo (a delivery platform): Deliveroo "Order Events webhook" (order.new and
  order.status_update), "Fulfillment Types" (example payloads), "Securing webhooks"
  (X-Deliveroo-Hmac-Sha256 = hex HMAC-SHA256 of "<X-Deliveroo-Sequence-Guid> <raw body>").
- shopify (an online shop): shopify.dev "Verify webhook deliveries" (X-Shopify-Hmac-SHA256 =
  base64 HMAC-SHA256 of the raw body; topic in X-Shopify-Topic), REST Order resource.

Only Toast signs a timestamp, so only Toast deliveries are held to a replay window; every
verify() returns the signature it checked, and hub/receipts.py applies each signed delivery
once (the replay protection of the channels without a timestamp).
"""
import base64
import datetime
import hashlib
import hmac
import json
import math

from hub.webhooks import sign

REPLAY_WINDOW_S = 1200  # Toast retries after 5 and then 10 more minutes
API_WINDOW_S = 300
VOID_STATUSES = ("rejected", "canceled", "cancelled", "failed")
ALLERGY_NAMES = ("allergy", "allergies", "allergen", "allergens", "过敏", "过敏原")


class SignatureError(Exception):
    """The delivery is not provably from the channel (HTTP 401)."""


class ChannelError(ValueError):
    """The body is not the channel's documented order format; `field` names where (HTTP 400)."""

    def __init__(self, field, reason):
        super().__init__("%s: %s" % (field, reason))
        self.field = field


class Ignored(Exception):
    """A genuine delivery that carries no order to cook (acknowledged with 200)."""


def _header(headers, name):
    value = headers.get(name)
    if not value:
        raise SignatureError("%s: missing header" % name)
    return value.strip()


def _same(expected, given, header):
    if not hmac.compare_digest(expected.encode("ascii"), given.encode("ascii", "replace")):
        raise SignatureError("%s: does not match the body (wrong secret, or the body was altered)" % header)


def _b64_hmac(secret, data):
    return base64.b64encode(hmac.new(secret.encode("utf-8"), data, hashlib.sha256).digest()).decode("ascii")


def _epoch(value, field):
    try:
        stamp = datetime.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ChannelError(field, "must be an ISO-8601 date and time")
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return stamp.timestamp()


def _window(sent, now, window, field):
    if abs(now - sent) > window:
        raise SignatureError("%s: %d s from the hub's clock, outside the %d s replay window"
                             % (field, now - sent, window))


def _get(obj, key, path, kind, required=True):
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None:
        if required:
            raise ChannelError(path, "missing")
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = {str: "a string", dict: "an object", list: "a list", bool: "true or false"}
        raise ChannelError(path, "must be %s" % names.get(kind, "a number"))
    return value


def _clip(text, n):
    text = text.strip()
    return text if len(text) <= n else text[:n - 1] + "…"


def _qty(value, path):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:  # NaN too
        raise ChannelError(path, "must be a number of at least 0")
    return min(max(int(math.ceil(value)), 1), 999)


def _mods(names):
    return [_clip(name, 64) for name in names if name and name.strip()][:8]


def _parse_json(body):
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ChannelError("body", "not valid UTF-8 JSON")


# --- toast ------------------------------------------------------------------
class Toast:
    name = "toast"

    def verify(self, headers, body, secret, now):
        given = _header(headers, "Toast-Signature")
        obj = _parse_json(body)
        stamp = obj.get("timestamp") if isinstance(obj, dict) else None
        if not isinstance(stamp, str):
            raise SignatureError("timestamp: missing; Toast signs the body followed by its timestamp")
        _same(_b64_hmac(secret, body + stamp.encode("utf-8")), given, "Toast-Signature")
        try:
            _window(_epoch(stamp, "timestamp"), now, REPLAY_WINDOW_S, "timestamp")
        except ChannelError as exc:
            raise SignatureError(str(exc))
        return given

    def normalise(self, obj, headers):
        if not isinstance(obj, dict):
            raise ChannelError("body", "must be a JSON object")
        event = obj.get("eventType")
        if event not in ("order_updated", "channel_order_updated"):
            raise Ignored("eventType %r is not an order update" % event)
        order = _get(_get(obj, "details", "details", dict), "order", "details.order", dict)
        path = "details.order"
        ref = _get(order, "guid", path + ".guid", str)
        checks = _get(order, "checks", path + ".checks", list)
        items, number = [], order.get("displayNumber")
        for c, check in enumerate(checks):
            cpath = "%s.checks[%d]" % (path, c)
            if not isinstance(check, dict):
                raise ChannelError(cpath, "must be an object")
            number = number or check.get("displayNumber")
            gone = bool(check.get("voided") or check.get("deleted"))
            for s, sel in enumerate(_get(check, "selections", cpath + ".selections", list)):
                spath = "%s.selections[%d]" % (cpath, s)
                if not isinstance(sel, dict):
                    raise ChannelError(spath, "must be an object")
                if sel.get("deferred"):  # gift card sales and the like: nothing to cook
                    continue
                mods = []
                for m, mod in enumerate(_get(sel, "modifiers", spath + ".modifiers", list, False) or []):
                    mpath = "%s.modifiers[%d]" % (spath, m)
                    if not isinstance(mod, dict):
                        raise ChannelError(mpath, "must be an object")
                    if not mod.get("voided"):
                        mods.append(_get(mod, "displayName", mpath + ".displayName", str))
                item = _get(sel, "item", spath + ".item", dict, False) or {}
                items.append({"id": _get(sel, "guid", spath + ".guid", str, False) or "%d.%d" % (c, s),
                              "name": _clip(_get(sel, "displayName", spath + ".displayName", str), 64),
                              "qty": _qty(_get(sel, "quantity", spath + ".quantity", (int, float)),
                                          spath + ".quantity"),
                              "mods": _mods(mods), "sku": item.get("guid"),
                              "void": gone or bool(sel.get("voided"))})
        void = bool(order.get("voided") or order.get("deleted"))
        if not items and not void:
            raise Ignored("order %s has no selections yet" % ref)
        modified = order.get("modifiedDate")
        canonical = {"channel": self.name, "ref": ref, "number": _clip(str(number or ref[-6:]), 16),
                     "status": "void" if void else "open", "items": items}
        if isinstance(modified, str):
            canonical["version"] = int(_epoch(modified, path + ".modifiedDate") * 1000)
        return canonical


# --- deliveroo --------------------------------------------------------------
class Deliveroo:
    name = "deliveroo"

    def verify(self, headers, body, secret, now):
        guid = _header(headers, "X-Deliveroo-Sequence-Guid")
        given = _header(headers, "X-Deliveroo-Hmac-Sha256").lower()
        mac = hmac.new(secret.encode("utf-8"), guid.encode("utf-8") + b" " + body, hashlib.sha256)
        _same(mac.hexdigest(), given, "X-Deliveroo-Hmac-Sha256")
        return given

    def normalise(self, obj, headers):
        if not isinstance(obj, dict):
            raise ChannelError("body", "must be a JSON object")
        event = obj.get("event")
        if event not in ("order.new", "order.status_update"):
            raise Ignored("event %r is not an order event" % event)
        order = _get(_get(obj, "body", "body", dict), "order", "body.order", dict)
        path = "body.order"
        ref = _get(order, "id", path + ".id", str)
        items = []
        for n, item in enumerate(_get(order, "items", path + ".items", list)):
            ipath = "%s.items[%d]" % (path, n)
            mods = []
            for m, mod in enumerate(_get(item, "modifiers", ipath + ".modifiers", list, False) or []):
                name = _get(mod, "name", "%s.modifiers[%d].name" % (ipath, m), str)
                qty = mod.get("quantity")
                mods.append("%s×%d" % (name, qty) if isinstance(qty, int) and qty > 1 else name)
            items.append({"id": str(n + 1), "name": _clip(_get(item, "name", ipath + ".name", str), 64),
                          "qty": _qty(_get(item, "quantity", ipath + ".quantity", int), ipath + ".quantity"),
                          "mods": _mods(mods), "sku": _get(item, "pos_item_id", ipath + ".pos_item_id", str, False)})
        status = _get(order, "status", path + ".status", str, False)
        number = order.get("display_id") or order.get("order_number") or ref[-6:]
        canonical = {"channel": self.name, "ref": ref, "number": _clip(str(number), 16),
                     "status": "void" if status in VOID_STATUSES else "open", "items": items}
        notes = _get(order, "order_notes", path + ".order_notes", str, False)
        if notes and notes.strip():
            canonical["allergy"] = _clip(notes, 160)  # the customer's allergy notes
        cutlery = _get(order, "cutlery_notes", path + ".cutlery_notes", str, False)
        if cutlery and cutlery.strip():
            canonical["note"] = _clip(cutlery, 160)
        return canonical


# --- shopify ----------------------------------------------------------------
class Shopify:
    name = "shopify"
    TOPICS = ("orders/create", "orders/updated", "orders/cancelled")

    def verify(self, headers, body, secret, now):
        given = _header(headers, "X-Shopify-Hmac-Sha256")
        _same(_b64_hmac(secret, body), given, "X-Shopify-Hmac-Sha256")
        return given

    def normalise(self, obj, headers):
        topic = headers.get("X-Shopify-Topic")
        if topic not in self.TOPICS:
            raise Ignored("topic %r is not an order topic" % topic)
        if not isinstance(obj, dict):
            raise ChannelError("body", "must be a JSON object")
        ref = obj.get("id")
        if isinstance(ref, bool) or not isinstance(ref, (int, str)) or ref == "":
            raise ChannelError("id", "missing")
        items = []
        for n, line in enumerate(_get(obj, "line_items", "line_items", list)):
            lpath = "line_items[%d]" % n
            if not isinstance(line, dict):
                raise ChannelError(lpath, "must be an object")
            qty = line.get("current_quantity")
            if qty is None:
                qty = _get(line, "quantity", lpath + ".quantity", int)
            mods = [_get(line, "variant_title", lpath + ".variant_title", str, False)]
            for p, prop in enumerate(_get(line, "properties", lpath + ".properties", list, False) or []):
                name = _get(prop, "name", "%s.properties[%d].name" % (lpath, p), str)
                if not name.startswith("_"):  # a leading underscore marks a private property
                    mods.append("%s: %s" % (name, prop.get("value")))
            line_id = line.get("id")
            items.append({"id": str(line_id) if line_id is not None else str(n + 1),
                          "name": _clip(_get(line, "title", lpath + ".title", str), 64),
                          "qty": _qty(qty, lpath + ".quantity"), "mods": _mods(mods),
                          "sku": _get(line, "sku", lpath + ".sku", str, False) or None, "void": qty == 0})
        number = _get(obj, "name", "name", str, False) or str(obj.get("order_number") or ref)
        void = topic == "orders/cancelled" or obj.get("cancelled_at") is not None
        canonical = {"channel": self.name, "ref": str(ref), "number": _clip(number, 16),
                     "status": "void" if void else "open", "items": items}
        note = _get(obj, "note", "note", str, False)
        if note and note.strip():
            canonical["note"] = _clip(note, 160)
        allergies = [str(a.get("value")) for a in _get(obj, "note_attributes", "note_attributes", list, False) or []
                     if isinstance(a, dict) and str(a.get("name", "")).strip().lower() in ALLERGY_NAMES]
        if allergies:
            canonical["allergy"] = _clip("; ".join(allergies), 160)
        updated = _get(obj, "updated_at", "updated_at", str, False)
        if updated:
            canonical["version"] = int(_epoch(updated, "updated_at") * 1000)
        return canonical


ADAPTERS = {adapter.name: adapter for adapter in (Toast(), Deliveroo(), Shopify())}


def verify_api(headers, body, secret, now):
    """POST /api/orders when a secret for `api` is set: the hub's own scheme (as its status webhook)."""
    stamp = _header(headers, "X-RFM-Timestamp")
    given = _header(headers, "X-RFM-Signature")
    if not (stamp.isascii() and stamp.isdigit()):
        raise SignatureError("X-RFM-Timestamp: must be unix seconds")
    _same(sign(secret, int(stamp), body), given, "X-RFM-Signature")
    _window(int(stamp), now, API_WINDOW_S, "X-RFM-Timestamp")
    return given
