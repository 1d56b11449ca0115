"""Test helpers playing the order channels and the POS that receives status webhooks.

Each channel's delivery is signed the way its published documentation says, computed here
independently of hub/channels.py:
- Toast, "Message signing": base64 HMAC-SHA256(secret, raw body + the message's timestamp).
- Deliveroo, "Securing webhooks": hex HMAC-SHA256(secret, sequence guid + " " + raw body).
- Shopify, "Verify webhook deliveries": base64 HMAC-SHA256(secret, raw body).
"""
import base64
import datetime
import hashlib
import hmac
import http.server
import json
import threading
import time
import urllib.error
import urllib.request
import uuid

from tests.brokers import wait_until


def _json(obj):
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _stamp(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def toast(secret, guid, selections, at=None, voided=False, modified=None, number="12"):
    """(path, body, headers) of a Toast order_updated webhook. selections: (guid, name, qty,
    [modifier names], voided) tuples."""
    at = time.time() if at is None else at
    sels = [{"guid": g, "entityType": "MenuItemSelection", "displayName": name, "quantity": qty,
             "voided": void, "item": {"guid": "item-" + name, "entityType": "MenuItem"},
             "modifiers": [{"guid": "m%d-%s" % (n, g), "displayName": m, "quantity": 1} for n, m in enumerate(mods)]}
            for g, name, qty, mods, void in selections]
    message = {"timestamp": _stamp(at), "eventCategory": "order_updated", "eventType": "order_updated",
               "guid": str(uuid.uuid4()),
               "details": {"restaurantGuid": "0cd990c9-fd74-461d-8468-de2a0919ccbb",
                           "order": {"guid": guid, "entityType": "Order", "source": "In Store", "voided": voided,
                                     "deleted": False, "modifiedDate": _stamp(modified or at).replace("Z", "+0000"),
                                     "checks": [{"guid": "check-" + guid, "entityType": "Check",
                                                 "displayNumber": number, "voided": False, "deleted": False,
                                                 "selections": sels}]}}}
    body = _json(message)
    sig = base64.b64encode(hmac.new(secret.encode(), body + message["timestamp"].encode(), hashlib.sha256).digest())
    return "/api/channels/toast", body, {"Content-Type": "application/json", "Toast-Signature": sig.decode(),
                                         "Toast-Event-Type": "order_updated"}


def deliveroo(secret, order_id, items, event="order.new", status="placed", notes=None, display="7458",
              guid=None):
    """(path, body, headers) of a Deliveroo Order Events webhook. items: (name, qty, [modifiers])."""
    order = {"id": order_id, "order_number": "2840" + display, "location_id": "4163", "display_id": display,
             "status": status, "status_log": [{"at": _stamp(time.time()), "status": status}],
             "fulfillment_type": "deliveroo", "cutlery_notes": "NO CUTLERY", "asap": True,
             "items": [{"pos_item_id": "p-" + name, "quantity": qty, "name": name, "operational_name": name,
                        "modifiers": [{"pos_item_id": "m-" + m, "name": m, "quantity": 1} for m in mods]}
                       for name, qty, mods in items]}
    if notes:
        order["order_notes"] = notes
    body = _json({"event": event, "body": {"order": order}})
    guid = guid or str(int(time.time() * 1000))
    sig = hmac.new(secret.encode(), guid.encode() + b" " + body, hashlib.sha256).hexdigest()
    return "/api/channels/deliveroo", body, {"Content-Type": "application/json",
                                             "X-Deliveroo-Sequence-Guid": guid, "X-Deliveroo-Hmac-Sha256": sig,
                                             "x-deliveroo-payload-type": "event/" + event,
                                             "x-deliveroo-webhook-version": "1"}


def shopify(secret, order_id, lines, topic="orders/create", updated=None, note=None, allergy=None,
            cancelled=False, name="#1001"):
    """(path, body, headers) of a Shopify orders/* webhook. lines: (id, title, qty, variant, current_qty)."""
    stamp = datetime.datetime.fromtimestamp(updated or time.time(), datetime.timezone(datetime.timedelta(hours=8)))
    order = {"id": order_id, "name": name, "order_number": int(name.strip("#")), "note": note,
             "note_attributes": [{"name": "Allergy", "value": allergy}] if allergy else [],
             "cancelled_at": stamp.isoformat(timespec="seconds") if cancelled else None,
             "updated_at": stamp.isoformat(timespec="seconds"),
             "line_items": [{"id": lid, "title": title, "name": title, "quantity": qty, "variant_title": variant,
                             "current_quantity": current, "sku": "SKU-%d" % lid, "properties": []}
                            for lid, title, qty, variant, current in lines]}
    body = _json(order)
    sig = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return "/api/channels/shopify", body, {"Content-Type": "application/json", "X-Shopify-Topic": topic,
                                           "X-Shopify-Hmac-Sha256": sig, "X-Shopify-Webhook-Id": str(uuid.uuid4())}


def post(base, path, body, headers):
    """POST to a running hub; (status, JSON)."""
    request = urllib.request.Request(base + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read().decode("utf-8"))


def verify_status(secret, headers, body, window=300):
    """Check a status webhook the way protocol/ORDERS.md tells a receiver to; return its JSON."""
    stamp = headers["X-RFM-Timestamp"]
    assert abs(time.time() - int(stamp)) <= window, "stale timestamp %s" % stamp
    want = "sha256=" + hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(want, headers["X-RFM-Signature"]), "bad signature"
    return json.loads(body.decode("utf-8"))


class StatusServer:
    """An HTTP server on 127.0.0.1 playing the POS: records every status webhook POST as
    (headers, body, code answered) and answers with the next code in `codes` (then 200)."""

    def __init__(self, port=0, codes=()):
        self.received = []
        self.codes = list(codes)
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with owner._lock:
                    code = owner.codes.pop(0) if owner.codes else 200
                    owner.received.append((self.headers, body, code))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d/status" % self.port
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def statuses(self, secret, order_id=None):
        """Verified bodies of the deliveries answered 2xx, in order of arrival."""
        with self._lock:
            got = [(h, b) for h, b, code in self.received if code < 300]
        bodies = [verify_status(secret, h, b) for h, b in got]
        return [b for b in bodies if order_id in (None, b["order"])]

    def wait(self, secret, pred, what, timeout=20):
        """Until pred(statuses) holds; return those statuses."""
        def check():
            got = self.statuses(secret)
            return got if pred(got) else None
        return wait_until(check, timeout, what)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
