"""The web kitchen display and the menu's routing.

A tablet at a station opens /kitchen/<device>, where <device> is one of the station's kds ids
in the menu: it is that kitchen display. While open it is online (heartbeats like a
display's), it shows the very `tickets` payload the hub last sent that display, and its
bump, recall and allergy_ack go to the hub as that display's `bump` (a refused one answers
409 with the hub's reason). A tablet either stands in for a station's display (use its id)
or joins it (list a new id under the station's devices).

    GET  /kitchen, /kitchen/<device>            the displays; one display
    POST /api/kitchen/<device>/bump             {id, action: bump|recall|allergy_ack}
    GET  /api/menu, PUT /api/menu               the menu (stations, dish and category routing)

PUT /api/menu takes the whole menu (protocol/ORDERS.md) and puts it in effect at once:
new lines are routed by it, every display gets its snapshot again. A station with open
tickets cannot be removed. The menu is kept in the database (and written back to the
--menu file if the hub has one); without --menu the hub starts with the stored menu.
"""
import json
import logging

from flask import Blueprint, abort, request

import protocol
from hub import feed as _feed, web
from hub.floor import write_file
from hub.floor_api import in_core
from hub.stations import Menu, MenuError

log = logging.getLogger(__name__)


def menu_spec(menu):
    """The menu as its JSON document."""
    def minutes(s):
        m = s / 60
        return int(m) if m == int(m) else round(m, 2)
    stations = {}
    for s in menu.stations.values():
        spec = {"label": s.label, "devices": list(s.devices), "warn_min": minutes(s.warn_s),
                "late_min": minutes(s.late_s), "max_tickets": s.max_tickets}
        if s.expo:
            spec["expo"] = True
        stations[s.name] = spec
    return {"stations": stations, "items": dict(menu.items), "categories": dict(menu.categories),
            "default": menu.default}


def stored_menu(store):
    """The menu last put over HTTP, or None."""
    row = store.one("SELECT value FROM meta WHERE key = 'menu'")
    if row is None:
        return None
    try:
        return Menu(json.loads(row["value"]))
    except (ValueError, MenuError) as exc:
        log.error("stored menu unusable (%s); using the demo menu", exc)
        return None


def set_menu(hub, now, spec):
    """Put a checked menu in effect (in the core); (body, HTTP status)."""
    menu = Menu(spec)
    for row in hub.store.query("SELECT station, COUNT(*) AS n FROM tickets WHERE state = 'open'"
                               " GROUP BY station ORDER BY station"):
        if row["station"] not in menu.stations and row["station"] in hub.stations.menu.stations:
            field = "stations.%s" % row["station"]
            return {"error": "%s: has %d open tickets; bump them before removing the station" % (field, row["n"]),
                    "field": field}, 400
    path = getattr(hub.stations.menu, "path", None)
    if path:
        write_file(path, spec)
        menu.path = path
    hub.store.run("INSERT OR REPLACE INTO meta (key, value) VALUES ('menu', ?)",
                  (json.dumps(spec, ensure_ascii=False),))
    hub.stations.menu = menu
    hub.stations.touch_all()
    log.info("menu changed: %d stations, %d dishes and %d categories routed", len(menu.stations),
             len(menu.items), len(menu.categories))
    return menu_spec(menu), 200


def view(hub, device):
    menu = hub.stations.menu
    name = menu.device_station.get(device)
    if name is None:
        return {"device": device, "station": None}
    station = menu.stations[name]
    shown = hub.feed.shown("kds", device) or {"sent_at": None, "payload": None}
    return {"device": device, "station": name, "label": station.label, "expo": station.expo,
            "online": device in hub.devices.online("kds"), "sent_at": shown["sent_at"],
            "snapshot": shown["payload"]}


def blueprint(hub):
    bp = Blueprint("kitchen", __name__)

    def displays():
        return [{"device": d, "station": s.name, "label": s.label, "expo": s.expo}
                for s in hub.stations.menu.stations.values() for d in s.devices]

    @bp.get("/kitchen")
    @web.needs()
    def index():
        return web.page("kitchen_index.html", web.t("kitchen"), displays=displays())

    @bp.get("/kitchen/<device>")
    @web.needs()
    def display(device):
        if device not in hub.stations.menu.device_station:
            return web.page("error.html", web.t("kitchen"), message=web.t("kds_unknown", device=device),
                            code=404), 404
        return web.page("kitchen.html", web.t("kitchen"), script="kitchen.js", boot={"device": device})

    @bp.post("/api/kitchen/<device>/bump")
    @web.needs()
    def bump(device):
        if device not in hub.stations.menu.device_station:
            abort(404, "device: %s shows no station in the menu" % device)
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return {"error": "body: must be a JSON object"}, 400
        msg = {"id": body.get("id"), "action": body.get("action")}
        try:
            protocol.validate("bump", msg)
        except protocol.ProtocolError as exc:
            return {"error": str(exc), "field": exc.field}, 400
        topic = protocol.topic(hub.site, "kds", device, "bump")

        def step(now):
            hub.uplink(now, "kds", device, "bump", msg)
            return [p["reason"] for _k, _d, m, p in hub.outbox.items if m == "error" and p["topic"] == topic]
        try:
            refused = in_core(hub, step)
        except RuntimeError as exc:
            return {"error": str(exc)}, 503
        if refused:
            return {"error": refused[0], "field": "id"}, 409
        return {"ok": True}

    @bp.get("/api/menu")
    def get_menu():
        return menu_spec(hub.stations.menu)

    @bp.put("/api/menu")
    def put_menu():
        try:
            spec = json.loads(request.get_data().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return {"error": "menu: not valid UTF-8 JSON: %s" % exc}, 400
        try:
            Menu(spec)
        except MenuError as exc:
            return {"error": str(exc), "field": str(exc).split(": ")[0]}, 400
        try:
            return in_core(hub, lambda now: set_menu(hub, now, spec))
        except OSError as exc:
            return {"error": "menu file could not be written: %s" % exc}, 500
        except RuntimeError as exc:
            return {"error": "menu not changed: %s" % exc}, 503

    def open_stream(args):
        if web.user() is None:
            abort(401, "login: log in first")
        device = args.get("device", "")
        if device not in hub.stations.menu.device_station:
            abort(404, "device: %s shows no station in the menu" % device)
        u, demo = web.user(), web.demo_mode(hub)
        return _feed.Stream({"kds": lambda: view(hub, device)}, device=("kds", device),
                            alive=lambda: hub.accounts.current(u["name"], u["gen"], demo) is not None
                            and device in hub.stations.menu.device_station)

    hub.feed.pages["kds"] = open_stream
    return bp
