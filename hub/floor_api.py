"""HTTP for the floor manager: the floor plan (GET/PUT /api/floor), who is at work
(GET /api/floor/staff) and service metrics (GET /api/metrics)."""
import datetime
import json
import math
import threading

from flask import Blueprint, request

from hub.floor import FloorError, validate, warnings

CORE_TIMEOUT_S = 10
DAY_S = 86400
YEAR_2100 = 4102444800
STEPS = ("repage", "next", "manager")


def in_core(hub, fn, *args):
    """Run fn(now, *args) as one event on the hub's worker thread; return its result once
    committed. Raises what fn raised, or RuntimeError if the event did not commit."""
    box = {}
    done = threading.Event()

    def step(now):
        try:
            box["result"] = fn(now, *args)
        except Exception as exc:
            box["error"] = exc
            raise
    step.__name__ = fn.__name__

    def after(ok):
        box["ok"] = ok
        done.set()
    hub.submit(step, after=after)
    if not done.wait(CORE_TIMEOUT_S):
        raise RuntimeError("the hub did not get to it within %d s" % CORE_TIMEOUT_S)
    if "error" in box:
        raise box["error"]
    if not box["ok"]:
        raise RuntimeError("the change was rolled back; see the hub log")
    return box["result"]


def parse_time(name, text, default):
    """Unix seconds or ISO 8601 (naive means UTC) -> unix seconds."""
    if text is None or text == "":
        return default
    try:
        value = float(text)
        if math.isfinite(value) and 0 <= value < YEAR_2100:
            return value
    except ValueError:
        pass
    try:
        stamp = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("%s: %r is not a time (unix seconds or ISO 8601)" % (name, text))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    if not 0 <= stamp.timestamp() < YEAR_2100:
        raise ValueError("%s: %r is out of range" % (name, text))
    return stamp.timestamp()


def summary(values):
    """n, mean, p50, p90, max of response times in seconds (None when there are none)."""
    values = sorted(values)
    n = len(values)
    if not n:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "max": None}

    def pct(q):
        return round(values[min(n - 1, int(q * n))], 1)
    return {"n": n, "mean": round(sum(values) / n, 1), "p50": pct(0.5), "p90": pct(0.9),
            "max": round(values[-1], 1)}


def metrics(store, since, until):
    """Response times and escalations of the calls raised in [since, until)."""
    calls = store.query("SELECT * FROM call_stats WHERE raised_at >= ? AND raised_at < ?", (since, until))
    escalations = store.query("SELECT e.step, e.waiter, s.table_id, s.type, s.hour FROM call_escalations e"
                              " JOIN call_stats s ON s.call_id = e.call_id"
                              " WHERE s.raised_at >= ? AND s.raised_at < ?", (since, until))
    groups = {}

    def group(dim, key):
        return groups.setdefault(dim, {}).setdefault(str(key), {"calls": set(), "done": 0, "cancelled": 0,
                                                                "ack": [], "fin": [],
                                                                "esc": dict.fromkeys(STEPS, 0)})

    for c in calls:
        for dim, key in (("all", "all"), ("by_table", c["table_id"]), ("by_type", c["type"]),
                         ("by_hour", c["hour"])):
            g = group(dim, key)
            g["calls"].add(c["call_id"])
            if c["outcome"] in ("done", "cancelled"):
                g[c["outcome"]] += 1
            if c["ack_s"] is not None:
                g["ack"].append(c["ack_s"])
            if c["done_s"] is not None:
                g["fin"].append(c["done_s"])
        if c["acked_by"] is not None:
            g = group("by_waiter", c["acked_by"])
            g["calls"].add(c["call_id"])
            g["ack"].append(c["ack_s"])
        if c["done_by"] is not None:
            g = group("by_waiter", c["done_by"])
            g["calls"].add(c["call_id"])
            g["done"] += 1
            g["fin"].append(c["done_s"])
    for e in escalations:
        keys = [("all", "all"), ("by_table", e["table_id"]), ("by_type", e["type"]), ("by_hour", e["hour"])]
        if e["waiter"]:
            keys.append(("by_waiter", e["waiter"]))
        for dim, key in keys:
            group(dim, key)["esc"][e["step"]] += 1

    def out(g):
        esc = dict(g["esc"], total=sum(g["esc"].values()))
        return {"calls": len(g["calls"]), "done": g["done"], "cancelled": g["cancelled"],
                "raise_to_ack_s": summary(g["ack"]), "raise_to_done_s": summary(g["fin"]), "escalations": esc}

    empty = out({"calls": (), "done": 0, "cancelled": 0, "ack": [], "fin": [], "esc": dict.fromkeys(STEPS, 0)})
    body = {"all": out(groups["all"]["all"]) if "all" in groups else empty}
    for dim in ("by_waiter", "by_table", "by_type", "by_hour"):
        keys = sorted(groups.get(dim, {}), key=lambda k: (int(k) if dim == "by_hour" else 0, k))
        body[dim] = {k: out(groups[dim][k]) for k in keys}
    return body


def blueprint(hub):
    bp = Blueprint("floor", __name__)

    @bp.get("/api/floor")
    def get_floor():
        return hub.floor.doc

    @bp.put("/api/floor")
    def put_floor():
        try:
            doc = json.loads(request.get_data().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return {"error": "floor: not valid UTF-8 JSON: %s" % exc}, 400
        try:
            doc = validate(doc)
        except FloorError as exc:
            return {"error": str(exc)}, 400
        try:
            moved = in_core(hub, hub.calls.set_floor, doc)
        except OSError as exc:
            return {"error": "floor file %s could not be written: %s" % (hub.floor.path, exc)}, 500
        except RuntimeError as exc:
            return {"error": "floor not changed: %s" % exc}, 503
        return {"floor": hub.floor.doc, "moved": moved, "warnings": warnings(hub.floor.doc)}

    @bp.get("/api/floor/staff")
    def staff():
        now = hub.clock()
        on_duty = {w["id"] for w in hub.floor.on_duty(now)}
        online = set(hub.devices.online("pager"))
        rows = []
        for w in hub.floor.doc["waiters"]:
            rows.append({"id": w["id"], "name": w["name"], "role": w["role"], "pager": w["pager"],
                         "on_duty": w["id"] in on_duty, "online": w["pager"] in online,
                         "tasks": [t.id for t in hub.pagers.tasks(w["pager"])]})
        return {"staff": rows}

    @bp.get("/api/metrics")
    def get_metrics():
        now = hub.clock()
        try:
            until = parse_time("until", request.args.get("until"), now + 1)
            since = parse_time("since", request.args.get("since"), until - DAY_S)
        except ValueError as exc:
            return {"error": str(exc)}, 400
        if since >= until:
            return {"error": "since: must be before until"}, 400
        body = {"since": _iso(since), "until": _iso(until)}
        body.update(metrics(hub.store, since, until))
        return body

    return bp


def _iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="seconds") \
        .replace("+00:00", "Z")
