"""The manager's dashboard: the floor at a glance, live.

    GET /dashboard                 the page (manager)
    GET /api/dashboard             its live views at once: floor, staff, kitchen, devices
    GET /api/metrics/kitchen       prep times (bump minus open) by station, dish and daypart
    GET /export/calls.csv, /export/tickets.csv    ?since=&until= (default the last day)

Views carry timestamps (raised_at, opened_at, warn_at, late_at), never ages: the page's
timers tick and colour each call by urgency (warn at the call type's first escalation
step, late at its second) and each ticket by its station's warn/late minutes. The
charts read /api/metrics (calls) and /api/metrics/kitchen. CSV files are UTF-8 with a BOM,
so spreadsheet programs show Chinese dish names right.
"""
import csv
import io
import time

from flask import Blueprint, Response, abort, request

from hub import feed as _feed, web
from hub.floor_api import DAY_S, parse_time, summary
from hub.webhooks import iso

DAYPARTS = (("breakfast", 5, 11), ("lunch", 11, 15), ("afternoon", 15, 17), ("dinner", 17, 22), ("late", 22, 5))


def daypart(t):
    hour = time.localtime(t).tm_hour
    for name, start, end in DAYPARTS:
        if start <= hour < end or (start > end and (hour >= start or hour < end)):
            return name
    return DAYPARTS[-1][0]


def name_of(hub, pager):
    waiter = hub.floor.waiter_of(pager) if pager else None
    return waiter["name"] if waiter else pager


def floor_view(hub):
    tables = {}
    for c in hub.calls.live():
        afters = [s["after"] for s in hub.floor.call_type(c["type"])["escalation"]["steps"]] or [60]
        warn = c["raised_at"] + afters[0]
        late = warn + (afters[1] if len(afters) > 1 else afters[0])
        tables.setdefault(c["table_id"], {"calls": [], "orders": []})["calls"].append({
            "id": c["id"], "type": c["type"], "state": c["state"], "waiter": name_of(hub, c["pager"]),
            "raised_at": c["raised_at"], "warn_at": warn, "late_at": late, "reminders": c["reminders"],
            "escalated": bool(c["watcher"]) or (c["step"] or 0) >= 2})
    for o in hub.orders.live():
        if o["table_name"]:
            tables.setdefault(o["table_name"], {"calls": [], "orders": []})["orders"].append(
                {"id": o["id"], "number": o["number"], "status": o["status"]})
    sections = [{"name": name, "tables": list(ts)} for name, ts in hub.floor.doc["sections"].items()]
    placed = {t for s in sections for t in s["tables"]}
    return {"sections": sections, "tables": tables, "unplaced": sorted(set(tables) - placed)}


def staff_view(hub):
    on_duty = {w["id"] for w in hub.floor.on_duty()}
    online = set(hub.devices.online("pager"))
    rows = []
    for w in hub.floor.doc["waiters"]:
        tasks = [{"id": t.id, "kind": t.kind, "table": t.table, "type": t.type, "state": t.state, "prio": t.prio}
                 for t in hub.pagers.tasks(w["pager"])]
        rows.append({"id": w["id"], "name": w["name"], "role": w["role"], "pager": w["pager"],
                     "sections": w["sections"], "on_duty": w["id"] in on_duty, "online": w["pager"] in online,
                     "tasks": tasks})
    return {"max_tasks": hub.floor.max_tasks, "waiters": rows}


def kitchen_view(hub):
    now = hub.clock()
    stations = []
    for s in hub.stations.menu.stations.values():
        tickets = hub.stations.tickets(s.name, now)
        opened = {r["id"]: r["opened_at"] for r in hub.store.query(
            "SELECT id, opened_at FROM tickets WHERE station = ? AND state = 'open'", (s.name,))}
        rows = []
        for t in tickets:
            items = ", ".join("%s×%d" % (i["name"], i["qty"]) if i["qty"] > 1 else i["name"]
                              for i in t["items"] if not i.get("void"))
            rows.append({"id": t["id"], "order": t["order"], "num": t.get("num"), "table": t.get("table"),
                         "items": items, "allergy": t.get("allergy"), "allergy_ack": t.get("allergy_ack"),
                         "changed": bool(t.get("changed")), "also": t.get("also", []),
                         "opened_at": opened.get(t["id"], now - t["age"])})
        stations.append({"station": s.name, "label": s.label, "expo": s.expo, "warn": s.warn_s, "late": s.late_s,
                         "devices": s.devices, "tickets": rows})
    counts = {}
    for o in hub.orders.live():
        counts[o["status"]] = counts.get(o["status"], 0) + 1
    return {"stations": stations, "orders": counts}


def devices_view(hub):
    return {"low_battery": hub.fleet.low_battery, "devices": hub.fleet.view()}


VIEWS = {"floor": floor_view, "staff": staff_view, "kitchen": kitchen_view, "devices": devices_view}


def kitchen_metrics(store, since, until):
    """Prep times (open to bump, s) of the tickets opened in [since, until)."""
    tickets = store.query("SELECT station, opened_at, bumped_at - opened_at AS prep FROM tickets"
                          " WHERE bumped_at IS NOT NULL AND opened_at >= ? AND opened_at < ?", (since, until))
    lines = store.query("SELECT l.name, t.bumped_at - t.opened_at AS prep FROM tickets t JOIN order_lines l"
                        " ON l.order_id = t.order_id AND l.station = t.station WHERE t.bumped_at IS NOT NULL"
                        " AND l.void = 0 AND t.opened_at >= ? AND t.opened_at < ?", (since, until))
    groups = {"by_station": {}, "by_item": {}, "by_daypart": {}}
    for t in tickets:
        groups["by_station"].setdefault(t["station"], []).append(t["prep"])
        groups["by_daypart"].setdefault(daypart(t["opened_at"]), []).append(t["prep"])
    for line in lines:
        groups["by_item"].setdefault(line["name"], []).append(line["prep"])
    order = [d[0] for d in DAYPARTS]
    body = {"all": summary([t["prep"] for t in tickets])}
    for dim, g in groups.items():
        keys = sorted(g, key=order.index) if dim == "by_daypart" else sorted(g)
        body[dim] = {k: summary(g[k]) for k in keys}
    return body


def csv_response(name, header, rows):
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return Response(out.getvalue().encode("utf-8"), mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="%s"' % name})


def blueprint(hub):
    bp = Blueprint("dashboard", __name__)

    def window():
        until = parse_time("until", request.args.get("until"), hub.clock() + 1)
        since = parse_time("since", request.args.get("since"), until - DAY_S)
        if since >= until:
            raise ValueError("since: must be before until")
        return since, until

    @bp.get("/dashboard")
    @web.needs("manager")
    def page():
        return web.page("dashboard.html", web.t("dashboard"), script="dashboard.js")

    @bp.get("/api/dashboard")
    @web.needs("manager")
    def now():
        return {name: fn(hub) for name, fn in VIEWS.items()}

    @bp.get("/api/metrics/kitchen")
    def metrics():
        try:
            since, until = window()
        except ValueError as exc:
            return {"error": str(exc)}, 400
        return dict(kitchen_metrics(hub.store, since, until), since=iso(since), until=iso(until))

    @bp.get("/export/calls.csv")
    @web.needs("manager")
    def calls_csv():
        try:
            since, until = window()
        except ValueError as exc:
            abort(400, str(exc))
        rows = hub.store.query(
            "SELECT s.*, (SELECT COUNT(*) FROM call_escalations e WHERE e.call_id = s.call_id AND"
            " e.step != 'repage') AS escalations FROM call_stats s WHERE raised_at >= ? AND raised_at < ?"
            " ORDER BY raised_at", (since, until))
        return csv_response("calls.csv", ["call", "table", "type", "raised_at", "daypart", "raise_to_ack_s", "acked_by",
                                          "raise_to_done_s", "done_by", "outcome", "escalations"],
                            [[r["call_id"], r["table_id"], r["type"], iso(r["raised_at"]), daypart(r["raised_at"]),
                              _round(r["ack_s"]), r["acked_by"], _round(r["done_s"]), r["done_by"], r["outcome"],
                              r["escalations"]] for r in rows])

    @bp.get("/export/tickets.csv")
    @web.needs("manager")
    def tickets_csv():
        try:
            since, until = window()
        except ValueError as exc:
            abort(400, str(exc))
        rows = hub.store.query(
            "SELECT t.*, o.number, o.channel, o.table_name FROM tickets t JOIN orders o ON o.id = t.order_id"
            " WHERE t.opened_at >= ? AND t.opened_at < ? ORDER BY t.opened_at, t.id", (since, until))
        out = []
        for r in rows:
            items = hub.store.query("SELECT name, qty FROM order_lines WHERE order_id = ? AND station = ? AND void = 0"
                                    " ORDER BY pos", (r["order_id"], r["station"]))
            prep = r["bumped_at"] - r["opened_at"] if r["bumped_at"] else None
            out.append([r["id"], r["order_id"], r["number"], r["channel"], r["table_name"], r["station"], r["state"],
                        iso(r["opened_at"]), r["bumped_at"] and iso(r["bumped_at"]), _round(prep),
                        daypart(r["opened_at"]), "; ".join("%s×%d" % (i["name"], i["qty"]) for i in items)])
        return csv_response("tickets.csv", ["ticket", "order", "number", "channel", "table", "station", "state",
                                            "opened_at", "bumped_at", "prep_s", "daypart", "items"], out)

    def open_stream(args):
        u = web.user()
        if u is None:
            abort(401, "login: log in first")
        if u["role"] != "manager":
            abort(403, "role: this needs a manager login")
        demo = web.demo_mode(hub)
        return _feed.Stream({name: (lambda fn=fn: fn(hub)) for name, fn in VIEWS.items()},
                            alive=lambda: hub.accounts.current(u["name"], u["gen"], demo) is not None)

    hub.feed.pages["dashboard"] = open_stream
    return bp


def _round(v):
    return None if v is None else round(v, 1)
