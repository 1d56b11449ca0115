"""HTTP for orders: intake (canonical and per channel), the expo's view of orders, station
tickets, and the customer's pickup board.

POST /api/orders            a canonical order (protocol/ORDERS.md)
POST /api/channels/<name>   a channel's own signed webhook (hub/channels.py)
GET  /api/orders[?status=&limit=], /api/orders/<id>   whole orders, as the expo sees them
GET  /api/tickets?station=  a station's open tickets, as its display shows them
GET  /board, /board/events  the pickup board page and its live Server-Sent Events

An intake answers 201 (new order) or 200 with what happened, 400 naming the bad field,
401 when the signature does not hold; a rejected delivery writes nothing, an accepted one
is applied in one transaction, and a signed one only once (hub/receipts.py).
"""
import json
import time

from flask import Blueprint, Response, render_template, request

from hub import channels
from hub.floor_api import in_core
from hub.orders import STATUSES, OrderError, parse
from hub.receipts import Receipts
from hub.webhooks import iso

MAX_LIMIT = 1000
BOARD_POLL_S = 0.5
BOARD_PING_S = 15
BOARD_STREAM_S = 600  # then the browser reconnects by itself


def when(t):
    return None if t is None else iso(t)


def line_json(row):
    return {"id": row["line"], "name": row["name"], "qty": row["qty"], "mods": json.loads(row["mods"]),
            "note": row["note"], "allergy": row["allergy"], "station": row["station"], "void": bool(row["void"]),
            "changed": bool(row["changed"])}


def order_json(hub, row):
    tickets = [{"id": t["id"], "station": t["station"], "state": t["state"],
                "allergy_ack": bool(t["allergy_ack"]), "changed": bool(t["changed"])}
               for t in hub.stations.of_order(row["id"])]
    return {"id": row["id"], "channel": row["channel"], "ref": row["ref"], "number": row["number"],
            "table": row["table_name"], "status": row["status"], "note": row["note"], "allergy": row["allergy"],
            "version": row["version"], "runner": row["runner"], "created_at": when(row["created_at"]),
            "updated_at": when(row["updated_at"]), "ready_at": when(row["ready_at"]),
            "picked_at": when(row["picked_at"]), "voided_at": when(row["voided_at"]),
            "items": [line_json(line) for line in hub.orders.lines(row["id"])], "tickets": tickets}


def board_json(hub):
    live = hub.orders.live()
    return {"preparing": [o["number"] for o in live if o["status"] != "ready"],
            "ready": [o["number"] for o in live if o["status"] == "ready"]}


def blueprint(hub):
    bp = Blueprint("orders", __name__, template_folder="templates")

    receipts = Receipts(hub.store)

    def once(now, order, channel, signature):
        return receipts.once(now, channel, signature, lambda: hub.orders.intake(now, order))

    def take(order, signed=None):
        """signed: (channel, the delivery's verified signature), applied at most once."""
        try:
            result = in_core(hub, once, order, *signed) if signed else in_core(hub, hub.orders.intake, order)
        except RuntimeError as exc:
            return {"error": str(exc)}, 503
        except Exception as exc:
            return {"error": "the order could not be applied (%s); nothing was written" % exc}, 500
        return result, 201 if result["result"] == "created" else 200

    @bp.post("/api/orders")
    def post_order():
        body = request.get_data()
        secret = hub.channel_secrets.get("api")
        try:
            signed = ("api", channels.verify_api(request.headers, body, secret, hub.clock())) if secret else None
            obj = json.loads(body.decode("utf-8"))
        except channels.SignatureError as exc:
            return {"error": str(exc)}, 401
        except (UnicodeDecodeError, ValueError):
            return {"error": "body: not valid UTF-8 JSON"}, 400
        try:
            order = parse(obj)
        except OrderError as exc:
            return {"error": str(exc), "field": exc.field}, 400
        return take(order, signed)

    @bp.post("/api/channels/<name>")
    def post_channel(name):
        adapter = channels.ADAPTERS.get(name)
        if adapter is None:
            return {"error": "channel %r: not one of %s" % (name, ", ".join(sorted(channels.ADAPTERS)))}, 404
        secret = hub.channel_secrets.get(name)
        if not secret:
            return {"error": "channel %s: no signing secret on this hub (--channel-secret %s=SECRET)"
                    % (name, name)}, 403
        body = request.get_data()
        try:
            signature = adapter.verify(request.headers, body, secret, hub.clock())
            order = parse(adapter.normalise(json.loads(body.decode("utf-8")), request.headers))
        except channels.SignatureError as exc:
            return {"error": str(exc)}, 401
        except channels.Ignored as exc:
            return {"result": "ignored", "why": str(exc)}, 200
        except (channels.ChannelError, OrderError) as exc:
            return {"error": str(exc), "field": exc.field}, 400
        except (UnicodeDecodeError, ValueError):
            return {"error": "body: not valid UTF-8 JSON"}, 400
        return take(order, (name, signature))

    @bp.get("/api/orders")
    def orders():
        status = request.args.get("status") or None
        if status is not None and status not in STATUSES:
            return {"error": "status: must be one of %s" % ", ".join(STATUSES)}, 400
        limit = request.args.get("limit", "100")
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
            return {"error": "limit: must be an integer from 1 to %d" % MAX_LIMIT}, 400
        return {"orders": [order_json(hub, row) for row in hub.orders.list(status, int(limit))]}

    @bp.get("/api/orders/<order_id>")
    def one_order(order_id):
        row = hub.orders.get(order_id)
        if row is None:
            return {"error": "order %s: no such order" % order_id}, 404
        return order_json(hub, row)

    @bp.get("/api/tickets")
    def tickets():
        station = request.args.get("station") or ""
        menu = hub.stations.menu
        if station not in menu.stations:
            return {"error": "station: must be one of %s" % ", ".join(menu.stations)}, 400
        spec = menu.stations[station]
        return {"station": station, "label": spec.label, "devices": spec.devices, "warn": spec.warn_s,
                "late": spec.late_s, "tickets": hub.stations.tickets(station, hub.clock())}

    @bp.get("/board")
    def board():
        return render_template("board.html", site=hub.site)

    @bp.get("/api/board")
    def board_now():
        return board_json(hub)

    @bp.get("/board/events")
    def board_events():
        def stream():
            yield "retry: 2000\n\n"
            seen, pinged = None, time.monotonic()
            end = time.monotonic() + BOARD_STREAM_S
            while time.monotonic() < end:
                revision = hub.orders.revision()
                if revision != seen:
                    seen = revision
                    yield "event: board\ndata: %s\n\n" % json.dumps(board_json(hub), ensure_ascii=False)
                elif time.monotonic() - pinged > BOARD_PING_S:
                    pinged = time.monotonic()
                    yield ": ping\n\n"
                time.sleep(BOARD_POLL_S)
        return Response(stream(), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return bp
