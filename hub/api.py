"""The hub's HTTP API (read-only for now): calls, devices, health. JSON, UTF-8 as is."""
import datetime
import threading

from flask import Flask, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler, make_server

from hub import fleet_http, floor_api, intake, screens, web
from hub.calls import STATES

MAX_LIMIT = 1000


def iso(t):
    if t is None:
        return None
    stamp = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def call_json(row):
    return {"id": row["id"], "table": row["table_id"], "type": row["type"], "state": row["state"],
            "waiter": row["pager"], "prio": row["prio"], "page": row["page"], "reminders": row["reminders"],
            "raised_at": iso(row["raised_at"]), "assigned_at": iso(row["assigned_at"]),
            "acked_at": iso(row["acked_at"]), "done_at": iso(row["done_at"]),
            "cancelled_at": iso(row["cancelled_at"])}


def device_json(row):
    return {"kind": row["kind"], "id": row["id"], "online": bool(row["online"]),
            "last_seen": iso(row["last_seen"]), "reason": row["reason"], "hb": row["hb"], "fw": row["fw"],
            "battery": row["battery"], "rssi": row["rssi"], "uptime": row["uptime"], "heap": row["heap"]}


def create_app(hub):
    app = Flask("hub")
    app.json.ensure_ascii = False
    app.json.sort_keys = False

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return {"error": exc.description}, exc.code

    app.register_blueprint(floor_api.blueprint(hub))
    app.register_blueprint(fleet_http.blueprint(hub))
    app.register_blueprint(intake.blueprint(hub))
    app.register_blueprint(screens.blueprint(hub))
    web.register(app, hub)  # the web pages: sessions, CSRF, live feed, page blueprints

    @app.get("/api/health")
    def health():
        connected = hub.bus is not None and hub.bus.connected
        online = sum(1 for row in hub.devices.list() if row["online"])
        body = {"ok": connected, "site": hub.site,
                "mqtt": {"broker": hub.bus.url if hub.bus else None, "connected": connected},
                "uptime_s": int(hub.clock() - hub.started), "live_calls": hub.calls.live_count(),
                "devices_online": online}
        return body, 200 if connected else 503

    @app.get("/api/calls")
    def calls():
        state = request.args.get("state") or None
        if state is not None and state not in STATES:
            return {"error": "state: must be one of %s" % ", ".join(STATES)}, 400
        limit = request.args.get("limit", "100")
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
            return {"error": "limit: must be an integer from 1 to %d" % MAX_LIMIT}, 400
        return {"calls": [call_json(row) for row in hub.calls.list(state, int(limit))]}

    @app.get("/api/devices")
    def devices():
        return {"devices": [dict(device_json(row), flags=hub.bouncer.flags(row["kind"], row["id"]))
                            for row in hub.devices.list(request.args.get("kind") or None)]}

    return app


class _Requests(WSGIRequestHandler):
    """Werkzeug's request log without query strings: a diner's link carries its table's token."""

    def log_request(self, code="-", size="-"):
        path = self.path
        if "?" in path:
            self.path = path.split("?", 1)[0] + "?…"
        try:
            super().log_request(code, size)
        finally:
            self.path = path


class HttpServer:
    """Werkzeug's threaded server in a thread of its own, so it can be shut down."""

    def __init__(self, app, host, port, ssl_context=None):
        """ssl_context: an ssl.SSLContext to serve HTTPS (hub --tls)."""
        self.url = "%s://%s:%d" % ("https" if ssl_context else "http", host, port)
        self._server = make_server(host, port, app, threaded=True, ssl_context=ssl_context, request_handler=_Requests)
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-http", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._server.shutdown()
        self._thread.join()
