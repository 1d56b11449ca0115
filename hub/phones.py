"""The waiter's phone: a virtual pager. The phone acts as the pager of a floor waiter: a
login that stands for a waiter (accounts' `waiter`, or a demo login named after the waiter)
is that waiter; a manager or shared staff login picks one. While the page is open the pager
is online (heartbeats like a pager's); it shows the very task list the hub last sent that
pager, and its ack, done and pass-on go to the hub as that pager's `act`.

    GET  /waiter                 the phone page
    POST /api/waiter/as          {waiter}: which waiter this phone is (logins not tied to one)
    POST /api/waiter/act         {id, action: ack|done|cancel}
    POST /api/waiter/bye         the page is closing: the pager goes offline (no alert)
"""
from flask import Blueprint, abort, request, session

import protocol
from hub import feed as _feed, web
from hub.floor_api import in_core


def waiter_id(u):
    """The floor waiter a login acts as, or None."""
    return u["waiter"] or session.get("as_waiter")


def find(hub, wid):
    for w in hub.floor.doc["waiters"]:
        if w["id"] == wid:
            return w
    return None


def view(hub, wid):
    w = find(hub, wid)
    if w is None:
        return {"waiter": None}
    on_duty = any(x["id"] == wid for x in hub.floor.on_duty())
    shown = hub.feed.shown("pager", w["pager"]) or {"sent_at": None, "payload": {"seq": 0, "tasks": []}}
    return {"waiter": {"id": w["id"], "name": w["name"], "role": w["role"], "pager": w["pager"]},
            "on_duty": on_duty, "online": w["pager"] in hub.devices.online("pager"),
            "sent_at": shown["sent_at"], "seq": shown["payload"]["seq"], "tasks": shown["payload"]["tasks"]}


def blueprint(hub):
    bp = Blueprint("phones", __name__)

    def current():
        w = find(hub, waiter_id(web.user()) or "")
        if w is None:
            abort(409, "waiter: choose which waiter this phone is")
        return w

    @bp.get("/waiter")
    @web.needs()
    def page():
        u = web.user()
        staff = [{"id": w["id"], "name": w["name"], "role": w["role"], "pager": w["pager"]}
                 for w in hub.floor.doc["waiters"]]
        return web.page("waiter.html", web.t("waiter_title"), script="waiter.js",
                        boot={"waiter": waiter_id(u), "pinned": bool(u["waiter"]), "staff": staff})

    @bp.post("/api/waiter/as")
    @web.needs()
    def choose():
        if web.user()["waiter"]:
            abort(403, "waiter: this login is %s's" % web.user()["waiter"])
        wid = (request.get_json(silent=True) or {}).get("waiter")
        if find(hub, wid or "") is None:
            return {"error": "waiter: no waiter %r on the floor" % wid, "field": "waiter"}, 400
        session["as_waiter"] = wid
        return {"waiter": wid}

    @bp.post("/api/waiter/act")
    @web.needs()
    def act():
        pager = current()["pager"]
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return {"error": "body: must be a JSON object"}, 400
        msg = {"id": body.get("id"), "action": body.get("action")}
        try:
            protocol.validate("act", msg)
        except protocol.ProtocolError as exc:
            return {"error": str(exc), "field": exc.field}, 400

        def step(now):
            if not any(task.id == msg["id"] for task in hub.pagers.tasks(pager)):
                return "id: task %s is not on pager %s any more" % (msg["id"], pager)
            hub.uplink(now, "pager", pager, "act", msg)
            return None
        try:
            refused = in_core(hub, step)
        except RuntimeError as exc:
            return {"error": str(exc)}, 503
        if refused:
            return {"error": refused, "field": "id"}, 409
        return {"ok": True}

    @bp.post("/api/waiter/bye")
    @web.needs()
    def bye():
        _feed.bye(hub, "pager", current()["pager"])
        return {"ok": True}

    def open_stream(args):
        u = web.user()
        if u is None:
            abort(401, "login: log in first")
        wid = waiter_id(u)
        w = find(hub, wid or "")
        if w is None:
            abort(409, "waiter: choose which waiter this phone is")
        name, gen, demo, pager = u["name"], u["gen"], web.demo_mode(hub), w["pager"]
        return _feed.Stream({"queue": lambda: view(hub, wid)}, device=("pager", pager),
                            alive=lambda: hub.accounts.current(name, gen, demo) is not None
                            and (find(hub, wid) or {}).get("pager") == pager)

    hub.feed.pages["queue"] = open_stream
    return bp
