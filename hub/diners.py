"""The diner's page: a QR code on each table opens /t/<table>?k=<token>, which raises the same
calls as the table button and shows "seen" and "on the way" live.

    GET  /t/<table>?k=           the diner page (403 once the token was rotated)
    GET  /api/diner/<table>      the table's recent calls    (X-Table-Token or ?k=)
    POST /api/diner/<table>/call {id, action: raise|cancel, type?}   as the button sends it
    GET  /tables                 manager: every table's QR code, printable
    GET  /api/tables             manager: every table's diner URL
    POST /api/tables/<table>/token   manager: a new token; the old QR code stops working
    GET  /tables/<table>/qr.svg  manager: the QR code (SVG, made here)

The page is not a device: its calls go straight to the call desk (no table button goes
online or silent because of it). A call id is made by the page as <table>-w<hex>.
"""
import hmac
import io
import re
import secrets

import segno
from flask import Blueprint, Response, abort, request, url_for
from werkzeug.exceptions import HTTPException

import protocol
from hub import feed as _feed, web
from hub import store as _store
from hub.calls import LIVE, TOLD
from hub.floor_api import in_core

SCHEMA = """
CREATE TABLE IF NOT EXISTS table_tokens (
    table_id  TEXT PRIMARY KEY,
    token     TEXT NOT NULL,
    issued_at REAL NOT NULL
);
"""
_store.EXTRA_SCHEMAS.append(SCHEMA)

RECENT_S = 120  # a closed call stays on the page this long
_WEB_ID = re.compile(r"^[A-Za-z0-9_-]{1,24}-w[0-9a-f]{6,12}$")


class Tokens:
    def __init__(self, store):
        self.store = store

    def get(self, table):
        row = self.store.one("SELECT token FROM table_tokens WHERE table_id = ?", (table,))
        return row and row["token"]

    def issue(self, now, table):
        """A new token for the table (run in the core); the old one stops working."""
        token = secrets.token_urlsafe(16)
        self.store.run("INSERT OR REPLACE INTO table_tokens (table_id, token, issued_at) VALUES (?, ?, ?)",
                       (table, token, now))
        return token

    def ensure(self, now, tables):
        """Tokens for the tables that have none yet (run in the core)."""
        for table in tables:
            if self.get(table) is None:
                self.issue(now, table)

    def check(self, table, given):
        want = self.get(table)
        return bool(want and given) and hmac.compare_digest(want.encode(), given.encode())


def tables_of(hub):
    """(section, table) of every table on the floor."""
    return [(section, table) for section, tables in hub.floor.doc["sections"].items() for table in tables]


def view(hub, table):
    """The table's live calls and those closed in the last RECENT_S, oldest first."""
    since = hub.clock() - RECENT_S
    rows = hub.store.query("SELECT * FROM calls WHERE table_id = ? AND (state IN (?, ?, ?)"
                           " OR COALESCE(done_at, cancelled_at) >= ?) ORDER BY raised_at, id",
                           (table,) + LIVE + (since,))
    calls = []
    for row in rows:
        by = None
        if row["state"] in ("acked", "done") and row["pager"]:
            waiter = hub.floor.waiter_of(row["pager"])
            by = waiter["name"] if waiter else None
        calls.append({"id": row["id"], "type": row["type"], "told": TOLD[row["state"]], "by": by,
                      "raised_at": row["raised_at"], "reminders": row["reminders"]})
    return {"table": table, "types": list(protocol.CALL_TYPES), "calls": calls}


def blueprint(hub):
    bp = Blueprint("diners", __name__)
    hub.tokens = Tokens(hub.store)

    def admit(table, given):
        if table not in dict((t, s) for s, t in tables_of(hub)):
            abort(404, "table: %s is not on the floor" % table)
        if not hub.tokens.check(table, given):
            abort(403, "token: this table code is not valid any more; scan the code on the table again")

    def token_arg():
        return request.headers.get("X-Table-Token") or request.args.get("k") or ""

    def diner_url(table, token):
        return url_for("diners.diner", table=table, k=token, _external=True)

    @bp.get("/t/<table>")
    def diner(table):
        try:
            admit(table, request.args.get("k", ""))
        except HTTPException as exc:
            code = exc.code
            return web.page("error.html", web.t("diner_title"), message=web.t("code_expired"), code=code), code
        return web.page("diner.html", web.t("diner_title"), script="diner.js", table=table,
                        boot={"table": table, "token": request.args["k"]})

    @bp.get("/api/diner/<table>")
    def state(table):
        admit(table, token_arg())
        return view(hub, table)

    @bp.post("/api/diner/<table>/call")
    def call(table):
        admit(table, token_arg())
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return {"error": "body: must be a JSON object"}, 400
        msg = {key: body[key] for key in ("id", "action", "type") if body.get(key) is not None}
        try:
            protocol.validate("call", msg)
        except protocol.ProtocolError as exc:
            return {"error": str(exc), "field": exc.field}, 400
        if not _WEB_ID.match(msg["id"]) or not msg["id"].startswith(table + "-w"):
            return {"error": "id: must be %s-w<6-12 hex digits>" % table, "field": "id"}, 400
        if msg["action"] == "raise" and msg["type"] not in protocol.CALL_TYPES:
            return {"error": "type: must be one of %s" % ", ".join(protocol.CALL_TYPES), "field": "type"}, 400
        try:
            in_core(hub, lambda now: hub.calls.on_call(table, msg, now))
        except RuntimeError as exc:
            return {"error": str(exc)}, 503
        return view(hub, table)

    def open_stream(args):
        table = args.get("table", "")
        given = args.get("k", "")
        admit(table, given)
        return _feed.Stream({"table": lambda: view(hub, table)}, alive=lambda: hub.tokens.check(table, given))

    hub.feed.pages["table"] = open_stream

    @bp.get("/tables")
    @web.needs("manager")
    def tables_page():
        return web.page("tables.html", web.t("tables"), script="tables.js")

    @bp.get("/api/tables")
    @web.needs("manager")
    def tables():
        listed = tables_of(hub)
        missing = [t for _, t in listed if hub.tokens.get(t) is None]
        if missing:
            in_core(hub, hub.tokens.ensure, missing)
        return {"tables": [{"table": t, "section": s, "url": diner_url(t, hub.tokens.get(t)),
                            "qr": url_for("diners.qr", table=t)} for s, t in listed]}

    @bp.post("/api/tables/<table>/token")
    @web.needs("manager")
    def rotate(table):
        if table not in [t for _, t in tables_of(hub)]:
            abort(404, "table: %s is not on the floor" % table)
        token = in_core(hub, hub.tokens.issue, table)
        return {"table": table, "url": diner_url(table, token), "qr": url_for("diners.qr", table=table)}

    @bp.get("/tables/<table>/qr.svg")
    @web.needs("manager")
    def qr(table):
        if table not in [t for _, t in tables_of(hub)]:
            abort(404, "table: %s is not on the floor" % table)
        token = hub.tokens.get(table) or in_core(hub, hub.tokens.issue, table)
        out = io.BytesIO()
        segno.make(diner_url(table, token), error="m").save(out, kind="svg", scale=6, border=2,
                                                             xmldecl=False, title="%s" % table)
        return Response(out.getvalue(), mimetype="image/svg+xml", headers={"Cache-Control": "no-store"})

    return bp
